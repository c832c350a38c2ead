//! The admin API for tag rules and cleanup policies, beside `/v2/` on the same router.
//!
//! | request | does |
//! |---|---|
//! | `GET /api/v1/tag-rules` | the rules the caller may manage, each with its `source` |
//! | `PUT /api/v1/tag-rules/<name>` | creates (201) or replaces (200) a rule |
//! | `DELETE /api/v1/tag-rules/<name>` | deletes a rule (204) |
//! | `GET`, `PUT`, `DELETE` `/api/v1/cleanup-policies[/<name>]` | the same for cleanup policies |
//! | `POST /api/v1/cleanup-runs?dry_run=true[&policy=<name>]` | runs the stored policies (or one) and lists the tags deleted, or that would be |
//! | `GET /api/v1/background-migrations` | the background migrations with their progress (administrators) |
//! | `POST /api/v1/background-migrations/<name>/pause`, `…/resume` | pauses or resumes one in every instance (administrators) |
//!
//! Bodies are the JSON of [`TagRule`] and [`CleanupPolicy`] (the `name` may be left out: the
//! path gives it). An administrator may manage every rule; an owner may manage the rules whose
//! repository pattern lies in a namespace or repository they own; an open registry (no auth)
//! lets anyone. Rules from the server's configuration are listed with `"source": "config"` and
//! can only be changed there. Errors are JSON in the OCI error format: a bad rule is `400
//! UNSUPPORTED` naming the problem, a refusal `403 DENIED`, an unknown name `404 NAME_UNKNOWN`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use registry_core::{
    CleanupPolicy, Error, NamePattern, OciRegistry, PolicyKind, PolicySource, Result, TagRule,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::oci::{Oci, authorize_known, json_response};
use crate::transfer::{declared_length, read_bounded};

/// The largest rule or policy document accepted.
const MAX_DOCUMENT: usize = 64 * 1024;

/// The most tags a cleanup run lists in its answer (the counts cover all of them).
const MAX_LISTED: usize = 10_000;

/// Whether the caller may manage rules over the repositories `pattern` covers: a registry
/// admin anything, an owner of what they own (a rule for every repository is for admins only),
/// as the configured authorizer decides.
fn may_manage(oci: &Oci, caller: &Caller, pattern: &NamePattern) -> bool {
    crate::auth::may_manage_rules(oci.auth.as_ref(), caller, pattern)
}

fn denied(what: &str) -> ApiError {
    ApiError::Core(Error::Denied {
        reason: format!(
            "{what} needs the admin role, or the owner role on every repository it covers"
        ),
    })
}

fn unknown(kind: PolicyKind, name: &str) -> Response {
    let what = match kind {
        PolicyKind::TagRule => "tag rule",
        PolicyKind::Cleanup => "cleanup policy",
        PolicyKind::FirewallRule => "firewall rule",
    };
    let body = json!({ "errors": [{
        "code": crate::error::OciErrorCode::NameUnknown.as_str(),
        "message": format!("no {what} named {name:?}"),
    }]});
    json_response(StatusCode::NOT_FOUND, body.to_string())
}

/// A rule or policy as the API speaks of it.
trait Document: DeserializeOwned + serde::Serialize + Send + Sync + Sized {
    const KIND: PolicyKind;
    fn name(&self) -> &str;
    fn repositories(&self) -> &NamePattern;
    /// Every stored one of this kind.
    fn stored(registry: &OciRegistry) -> BoxFuture<'_, Result<Vec<(Self, PolicySource)>>>;
    /// Creates or replaces one through the admin API; whether it was created.
    fn put<'a>(&'a self, registry: &'a OciRegistry) -> BoxFuture<'a, Result<bool>>;
}

impl Document for TagRule {
    const KIND: PolicyKind = PolicyKind::TagRule;
    fn name(&self) -> &str {
        &self.name
    }
    fn repositories(&self) -> &NamePattern {
        &self.repositories
    }
    fn stored(registry: &OciRegistry) -> BoxFuture<'_, Result<Vec<(Self, PolicySource)>>> {
        Box::pin(registry.tag_rules())
    }
    fn put<'a>(&'a self, registry: &'a OciRegistry) -> BoxFuture<'a, Result<bool>> {
        Box::pin(registry.put_tag_rule(self))
    }
}

impl Document for CleanupPolicy {
    const KIND: PolicyKind = PolicyKind::Cleanup;
    fn name(&self) -> &str {
        &self.name
    }
    fn repositories(&self) -> &NamePattern {
        &self.repositories
    }
    fn stored(registry: &OciRegistry) -> BoxFuture<'_, Result<Vec<(Self, PolicySource)>>> {
        Box::pin(registry.cleanup_policies())
    }
    fn put<'a>(&'a self, registry: &'a OciRegistry) -> BoxFuture<'a, Result<bool>> {
        Box::pin(registry.put_cleanup_policy(self))
    }
}

async fn stored<T: Document>(oci: &Oci) -> std::result::Result<Vec<(T, PolicySource)>, ApiError> {
    Ok(T::stored(&oci.registry).await?)
}

fn with_source(document: &impl serde::Serialize, source: PolicySource) -> Value {
    let mut value = json!(document);
    if let Value::Object(map) = &mut value {
        map.insert("source".into(), json!(source));
    }
    value
}

/// `GET /api/v1/tag-rules` and `GET /api/v1/cleanup-policies`.
async fn list<T: Document>(oci: Arc<Oci>, method: Method, headers: HeaderMap) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        let documents: Vec<Value> = stored::<T>(&oci)
            .await?
            .iter()
            .filter(|(doc, _)| may_manage(&oci, &caller, doc.repositories()))
            .map(|(doc, source)| with_source(doc, *source))
            .collect();
        let key = match T::KIND {
            PolicyKind::TagRule | PolicyKind::FirewallRule => "rules",
            PolicyKind::Cleanup => "policies",
        };
        Ok(json_response(
            StatusCode::OK,
            json!({ key: documents }).to_string(),
        ))
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

/// Parses a document whose name the path gives.
fn parse_document<T: Document>(name: &str, body: &[u8]) -> std::result::Result<T, ApiError> {
    if body.len() > MAX_DOCUMENT {
        return Err(ApiError::Core(Error::PolicyInvalid {
            reason: format!("the document is over {MAX_DOCUMENT} bytes"),
        }));
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::Core(Error::PolicyInvalid {
            reason: format!("the body is not JSON: {e}"),
        })
    })?;
    let Value::Object(map) = &mut value else {
        return Err(ApiError::Core(Error::PolicyInvalid {
            reason: "the body must be a JSON object".into(),
        }));
    };
    match map.get("name") {
        None => {
            map.insert("name".into(), json!(name));
        }
        Some(given) if given == name => {}
        Some(given) => {
            return Err(ApiError::Core(Error::PolicyInvalid {
                reason: format!("the body names {given}, the path {name:?}"),
            }));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::Core(Error::PolicyInvalid {
            reason: e.to_string(),
        })
    })
}

/// `PUT /api/v1/tag-rules/<name>` and `PUT /api/v1/cleanup-policies/<name>`.
async fn put<T: Document>(
    oci: Arc<Oci>,
    name: String,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        let body = read_bounded(
            body,
            declared_length(&headers),
            MAX_DOCUMENT,
            "the document",
        )
        .await?;
        let document: T = parse_document(&name, &body)?;
        let existing = stored::<T>(&oci)
            .await?
            .into_iter()
            .find(|(doc, _)| doc.name() == name);
        let allowed = may_manage(&oci, &caller, document.repositories())
            && existing
                .as_ref()
                .is_none_or(|(doc, _)| may_manage(&oci, &caller, doc.repositories()));
        if !allowed {
            return Err(denied(&format!("managing {name:?}")));
        }
        let created = document.put(&oci.registry).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            with_source(&document, PolicySource::Api).to_string(),
        ))
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

/// `DELETE /api/v1/tag-rules/<name>` and `DELETE /api/v1/cleanup-policies/<name>`.
async fn delete<T: Document>(
    oci: Arc<Oci>,
    name: String,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        let Some((existing, _)) = stored::<T>(&oci)
            .await?
            .into_iter()
            .find(|(doc, _)| doc.name() == name)
        else {
            return Ok(unknown(T::KIND, &name));
        };
        if !may_manage(&oci, &caller, existing.repositories()) {
            return Err(denied(&format!("managing {name:?}")));
        }
        if oci.registry.delete_policy(T::KIND, &name).await? {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Ok(unknown(T::KIND, &name))
        }
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

#[derive(Deserialize)]
struct RunQuery {
    dry_run: Option<bool>,
    policy: Option<String>,
}

/// `POST /api/v1/cleanup-runs?dry_run=<bool>&policy=<name>`: runs the stored cleanup policies
/// (all, which needs the admin role, or one) now.
async fn run_cleanup(
    State(oci): State<Arc<Oci>>,
    method: Method,
    headers: HeaderMap,
    query: std::result::Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let dry_run = query.dry_run.ok_or_else(|| {
            ApiError::BadRequest("say dry_run=true to list, dry_run=false to delete".into())
        })?;
        let policies: Vec<CleanupPolicy> = stored::<CleanupPolicy>(&oci)
            .await?
            .into_iter()
            .map(|(policy, _)| policy)
            .filter(|p| query.policy.as_ref().is_none_or(|name| p.name == *name))
            .collect();
        match &query.policy {
            Some(name) if policies.is_empty() => return Ok(unknown(PolicyKind::Cleanup, name)),
            Some(name)
                if !policies
                    .iter()
                    .all(|p| may_manage(&oci, &caller, &p.repositories)) =>
            {
                return Err(denied(&format!("running {name:?}")));
            }
            None if !may_manage(&oci, &caller, &NamePattern::parse("*").expect("valid")) => {
                return Err(denied("running every cleanup policy"));
            }
            _ => {}
        }
        let mut listed = Vec::new();
        let report = registry_gc::cleanup::run_policies(&oci.registry, &policies, dry_run, |d| {
            if listed.len() < MAX_LISTED {
                listed.push(json!({
                    "policy": d.policy,
                    "repository": d.repository.as_str(),
                    "tag": d.tag.as_str(),
                    "digest": d.digest.as_str(),
                    "publishedAt": d.published_at.0,
                }));
            }
        })
        .await?;
        Ok(json_response(
            StatusCode::OK,
            json!({
                "dryRun": dry_run,
                "policies": report.policies,
                "repositories": report.repositories,
                "tagsSeen": report.tags_seen,
                "deleted": report.deleted,
                "skipped": report.skipped,
                "truncated": report.deleted > listed.len() as u64,
                "tags": listed,
            })
            .to_string(),
        ))
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

/// A cache entry as the admin APIs list it (package proxies' and pull-through caches').
pub(crate) fn cache_entry_json(entry: &registry_core::CacheEntry, upstream: Option<&str>) -> Value {
    json!({
        "path": entry.path,
        "kind": entry.kind.as_str(),
        "size": entry.blob.size,
        "digest": entry.blob.digest.as_str(),
        "declared": entry.declared,
        "upstream": upstream,
        "etag": entry.validators.etag,
        "lastModified": entry.validators.last_modified,
        "checkedAt": entry.checked_at.0,
        "createdAt": entry.created_at.0,
        "downloads": entry.downloads,
        "lastDownload": entry.last_download.map(|t| t.0),
    })
}

/// The query of a pull-through cache's listing or cleanup.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheQuery {
    last: Option<String>,
    n: Option<usize>,
    unused_days: Option<u32>,
}

/// `GET /api/v1/pull-through/<prefix>/cache[?last=&n=]` lists what a pull-through cache pulled;
/// `DELETE` with `?unused_days=N` deletes what was neither pulled nor read for N days, without
/// it everything (pulled again when asked for). Admins, or owners of every repository under
/// the prefix.
fn background_json(m: &registry_core::BackgroundMigration) -> Value {
    json!({
        "name": m.name,
        "description": m.description,
        "status": m.status.as_str(),
        "done": m.done,
        "total": m.total,
        "error": m.error,
        "updatedAt": m.updated_at.0,
    })
}

/// Refuses anyone but an administrator (anyone, on an open registry).
fn administrators_only(
    oci: &Oci,
    caller: &Caller,
    what: &str,
) -> std::result::Result<(), ApiError> {
    if may_manage(oci, caller, &NamePattern::parse("*").expect("valid")) {
        Ok(())
    } else {
        Err(denied(what))
    }
}

async fn list_background_migrations(
    State(oci): State<Arc<Oci>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        administrators_only(&oci, &caller, "the background migrations")?;
        let migrations = oci.registry.metadata().background_migrations().await?;
        let shown: Vec<Value> = migrations.iter().map(background_json).collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "migrations": shown }).to_string(),
        ))
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

async fn pause_background_migration(
    State(oci): State<Arc<Oci>>,
    Path((name, action)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        administrators_only(&oci, &caller, "the background migrations")?;
        let paused = match action.as_str() {
            "pause" => true,
            "resume" => false,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other:?}: the actions are pause and resume"
                )));
            }
        };
        let migration = oci
            .registry
            .metadata()
            .pause_background_migration(&name, paused)
            .await?;
        Ok(json_response(
            StatusCode::OK,
            background_json(&migration).to_string(),
        ))
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

async fn pull_through_cache(
    State(oci): State<Arc<Oci>>,
    Path(prefix): Path<String>,
    method: Method,
    headers: HeaderMap,
    query: std::result::Result<Query<CacheQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let caller = authorize_known(&oci, &method, &headers).await?;
        let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let pattern = NamePattern::parse(&format!("{prefix}/*"))
            .map_err(|e| ApiError::BadRequest(format!("{prefix:?}: {e}")))?;
        if !may_manage(&oci, &caller, &pattern) {
            return Err(denied(&format!("the cache {prefix}")));
        }
        if method == Method::DELETE {
            let unused = query
                .unused_days
                .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400));
            let deleted = oci.registry.clean_cache(&prefix, unused).await?;
            return Ok(json_response(
                StatusCode::OK,
                json!({ "deleted": deleted }).to_string(),
            ));
        }
        let limit = query.n.unwrap_or(100).clamp(1, 1000);
        let page = registry_core::Page {
            last: query.last,
            limit,
        };
        let entries = oci.registry.cache_entries(&prefix, &page).await?;
        let upstream = oci
            .registry
            .pull_through()
            .iter()
            .find(|c| c.prefix == prefix)
            .map(|c| c.upstream.url.clone());
        let shown: Vec<Value> = entries
            .iter()
            .map(|e| cache_entry_json(e, upstream.as_deref()))
            .collect();
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.path.clone()))
            .flatten();
        Ok(json_response(
            StatusCode::OK,
            json!({ "entries": shown, "next": next }).to_string(),
        ))
    };
    result.await.unwrap_or_else(|e: ApiError| e.into_response())
}

/// The admin routes, merged into the OCI router's state.
pub(crate) fn routes() -> axum::Router<Arc<Oci>> {
    use axum::routing::{get, post};
    fn collection<T: Document + 'static>() -> axum::routing::MethodRouter<Arc<Oci>> {
        get(
            |State(oci): State<Arc<Oci>>, method: Method, headers: HeaderMap| {
                list::<T>(oci, method, headers)
            },
        )
    }
    fn item<T: Document + 'static>() -> axum::routing::MethodRouter<Arc<Oci>> {
        axum::routing::put(
            |State(oci): State<Arc<Oci>>,
             Path(name): Path<String>,
             method: Method,
             headers: HeaderMap,
             body: Body| put::<T>(oci, name, method, headers, body),
        )
        .delete(
            |State(oci): State<Arc<Oci>>,
             Path(name): Path<String>,
             method: Method,
             headers: HeaderMap| delete::<T>(oci, name, method, headers),
        )
    }
    axum::Router::new()
        .route("/api/v1/tag-rules", collection::<TagRule>())
        .route("/api/v1/tag-rules/{name}", item::<TagRule>())
        .route("/api/v1/cleanup-policies", collection::<CleanupPolicy>())
        .route("/api/v1/cleanup-policies/{name}", item::<CleanupPolicy>())
        .route("/api/v1/cleanup-runs", post(run_cleanup))
        .route(
            "/api/v1/background-migrations",
            get(list_background_migrations),
        )
        .route(
            "/api/v1/background-migrations/{name}/{action}",
            post(pause_background_migration),
        )
        .route(
            "/api/v1/pull-through/{prefix}/cache",
            get(pull_through_cache).delete(pull_through_cache),
        )
}
