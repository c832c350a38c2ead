//! Access tokens and package repository settings over HTTP.
//!
//! | request | does |
//! |---|---|
//! | `POST /api/v1/tokens` `{"label", "scopes": [{"repositories", "access"}], "expires_in"}` | creates a token for the caller (201, its secret shown once) |
//! | `GET /api/v1/tokens` | the caller's tokens (never their secrets) |
//! | `DELETE /api/v1/tokens/<id>` | revokes one of the caller's tokens (an admin: anyone's) |
//! | `GET /api/v1/package-repositories[/<name>]` | repositories with their format and settings |
//! | `PUT /api/v1/package-repositories/<name>` `{"format", "kind", "allow_duplicates", "duplicate_exceptions", "protection", "upstream", "members", "publish_to"}` | creates or reconfigures one (admin) |
//! | `POST /api/v1/package-repositories/<name>/test` | tries a proxy's upstream (admin) |
//! | `GET /api/v1/package-repositories/<name>/cache[?last=<path>&n=<count>]` | a proxy's cache entries by path (admin) |
//! | `DELETE /api/v1/package-repositories/<name>/cache[?unused_days=<n>]` | empties a proxy's cache, or cleans what was not used for n days (admin) |
//! | `DELETE /api/v1/package-repositories/<name>/cache/<path>` | deletes one cache entry (admin) |
//! | `GET /api/v1/firewall-rules` | the firewall rules, each with its `source` (admin) |
//! | `PUT /api/v1/firewall-rules/<name>` | creates (201) or replaces (200) a firewall rule (admin) |
//! | `DELETE /api/v1/firewall-rules/<name>` | deletes one (204; admin) |
//! | `GET /api/v1/firewall-audit[?repository=<name>&before=<id>&n=<count>]` | decisions that blocked or warned, newest first (admin) |
//!
//! A scope's `access` is `read`, `write` or `delete` (reader, developer, maintainer) on a
//! repository pattern (`*`, `ns/*`, a name); a token may only carry what its user has.
//! Tokens are created with the user's password (Basic), not with another token. Errors are
//! `{"message": "…"}` with the status.
//!
//! An upstream's password is never shown (`"password_set": true` instead); a `PUT` that leaves
//! it out keeps the one set for the same URL and user. An upstream URL that names this
//! registry (its external URL, or the host the request came in by) is refused.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use registry_core::{
    Action, Credentials, Grant, NamePattern, PackageRepository, Packages, Page, Principal,
    RepositoryConfig, RepositoryName, Role, Timestamp, TokenRecord,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Auth, Caller, authenticate_package_client, credentials, token_secret};
use crate::package_error::MessageJson;
use crate::transfer::{MAX_SMALL_DOCUMENT, declared_length, read_bounded};

mod cache;
mod firewall;

use cache::{clean_cache, delete_cache_entry, list_cache, test_upstream};
use firewall::{delete_firewall_rule, firewall_audit, list_firewall_rules, put_firewall_rule};

/// The router serving `/api/v1/tokens` and `/api/v1/package-repositories`.
pub fn router(packages: Packages, auth: Option<Auth>) -> Router {
    use axum::routing::{get, put};
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route("/api/v1/package-repositories", get(list_repositories))
        .route(
            "/api/v1/package-repositories/{name}",
            put(put_repository).get(get_repository),
        )
        .route(
            "/api/v1/package-repositories/{name}/test",
            axum::routing::post(test_upstream),
        )
        .route(
            "/api/v1/package-repositories/{name}/cache",
            get(list_cache).delete(clean_cache),
        )
        .route(
            "/api/v1/package-repositories/{name}/cache/{*path}",
            axum::routing::delete(delete_cache_entry),
        )
        .route("/api/v1/firewall-rules", get(list_firewall_rules))
        .route(
            "/api/v1/firewall-rules/{name}",
            put(put_firewall_rule).delete(delete_firewall_rule),
        )
        .route("/api/v1/firewall-audit", get(firewall_audit))
        .with_state(Arc::new(Admin { packages, auth }))
}

#[derive(Debug)]
struct Admin {
    packages: Packages,
    auth: Option<Auth>,
}

/// A failure as `{"message": "…"}`.
type Failure = crate::package_error::Failure<MessageJson>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads an API document (at most [`MAX_SMALL_DOCUMENT`] bytes), after authorization.
async fn read_document(body: Body, headers: &HeaderMap) -> Result<Bytes, Failure> {
    Ok(read_bounded(
        body,
        declared_length(headers),
        MAX_SMALL_DOCUMENT,
        "the request body",
    )
    .await?)
}

fn unauthorized() -> Failure {
    Failure::new(StatusCode::UNAUTHORIZED, "authentication required")
}

/// Who is asking: an identified user (with their grants), or anyone on an open registry.
struct Asker {
    /// The user's name.
    user: Option<String>,
    /// `None` on an open registry (everything is allowed).
    principal: Option<Principal>,
    /// Whether the credentials were an access token.
    by_token: bool,
}

impl Asker {
    /// Whether the asker administers the whole registry, as the configured authorizer decides
    /// (everyone does on an open registry).
    fn is_admin(&self, admin: &Admin) -> bool {
        match (&admin.auth, &self.principal) {
            (Some(auth), Some(principal)) => auth.authorizer.is_admin(principal),
            _ => true,
        }
    }
}

async fn ask(admin: &Admin, headers: &HeaderMap) -> Result<Asker, Failure> {
    let presented = credentials(headers);
    let by_token = presented.as_ref().and_then(token_secret).is_some();
    let tokens = admin.packages.tokens();
    let caller = authenticate_package_client(admin.auth.as_ref(), tokens, headers)
        .await?
        .ok_or_else(unauthorized)?;
    Ok(match caller {
        // An open registry takes the name a client gives, with any password.
        Caller::Open => Asker {
            user: match presented {
                Some(Credentials::Basic { user, .. }) => Some(user),
                _ => None,
            },
            principal: None,
            by_token,
        },
        Caller::Principal(principal) => Asker {
            user: principal.name.clone(),
            principal: Some(principal),
            by_token,
        },
        Caller::Token(_) => {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "use Basic credentials here",
            ));
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    label: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    expires_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scope {
    repositories: NamePattern,
    access: Access,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Access {
    Read,
    Write,
    Delete,
}

impl Access {
    fn role(self) -> Role {
        match self {
            Access::Read => Role::Reader,
            Access::Write => Role::Developer,
            Access::Delete => Role::Maintainer,
        }
    }
}

fn token_json(token: &TokenRecord) -> Value {
    let scopes: Vec<Value> = token
        .grants
        .iter()
        .map(|g| {
            let access = match g.role {
                Role::Reader => "read",
                Role::Developer => "write",
                _ => "delete",
            };
            json!({ "repositories": g.pattern.as_str(), "access": access })
        })
        .collect();
    json!({
        "id": token.id,
        "user": token.user,
        "label": token.label,
        "scopes": scopes,
        "createdAt": token.created_at.0,
        "expiresAt": token.expires_at.map(|t| t.0),
    })
}

async fn create_token(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let asker = ask(&admin, &headers).await?;
        refuse_tokens(&asker)?;
        let body = read_document(body, &headers).await?;
        let user = asker.user.clone().ok_or_else(unauthorized)?;
        crate::auth::check_token_quota(admin.packages.tokens(), &user).await?;
        let request: NewToken = serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not a token request: {e}"),
            )
        })?;
        if request.scopes.is_empty() || request.scopes.len() > 50 || request.label.len() > 200 {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "give 1 to 50 scopes and a label of at most 200 bytes",
            ));
        }
        let mut grants = Vec::new();
        for scope in &request.scopes {
            let role = scope.access.role();
            if let (Some(auth), Some(principal)) = (&admin.auth, &asker.principal) {
                let held = auth
                    .authorizer
                    .role_over(principal, &scope.repositories)
                    .is_some_and(|held| held >= role);
                if !held {
                    return Err(Failure::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "{user} does not have {} access to {}",
                            role.as_str(),
                            scope.repositories.as_str()
                        ),
                    ));
                }
            }
            grants.push(Grant {
                pattern: scope.repositories.clone(),
                role,
            });
        }
        if asker.principal.is_none() {
            // Minted on an open registry, where everything is allowed anyway: it must not
            // become a key once authentication is configured, so it carries no grants.
            grants.clear();
        }
        let expires_at = match &request.expires_in {
            None => None,
            Some(text) => {
                let age = registry_core::rules::parse_duration(text)
                    .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e))?;
                if age.is_zero() {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        "expires_in must be positive",
                    ));
                }
                Some(Timestamp::now().after(age))
            }
        };
        let (secret, hash) = registry_core::token::new_secret();
        let token = TokenRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            user,
            label: request.label,
            secret_hash: hash,
            grants,
            created_at: Timestamp::now(),
            expires_at,
        };
        admin.packages.tokens().put_token(&token).await?;
        let mut body = token_json(&token);
        body["token"] = json!(secret);
        Ok(json_response(StatusCode::CREATED, &body))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Tokens are managed with a password: a token, whatever its scopes, must not mint, list or
/// revoke its user's other tokens.
fn refuse_tokens(asker: &Asker) -> Result<(), Failure> {
    if asker.by_token {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "manage tokens with your password, not with a token",
        ));
    }
    Ok(())
}

async fn list_tokens(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let result = async {
        let asker = ask(&admin, &headers).await?;
        refuse_tokens(&asker)?;
        let user = asker.user.ok_or_else(unauthorized)?;
        let tokens = admin.packages.tokens().list_tokens(&user).await?;
        let tokens: Vec<Value> = tokens.iter().map(token_json).collect();
        Ok::<_, Failure>(json_response(StatusCode::OK, &json!({ "tokens": tokens })))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn delete_token(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let asker = ask(&admin, &headers).await?;
        refuse_tokens(&asker)?;
        let user = asker.user.clone().ok_or_else(unauthorized)?;
        let tokens = admin.packages.tokens();
        let own = tokens.list_tokens(&user).await?.iter().any(|t| t.id == id);
        let admin_of_a_registry_with_users = asker.principal.is_some() && asker.is_admin(&admin);
        if !own && !admin_of_a_registry_with_users {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no token {id} of {user}"),
            ));
        }
        if tokens.delete_token(&id).await? {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no token {id}"),
            ))
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A repository as the API shows it; its settings only to those who may change them.
fn repository_json(repository: &PackageRepository, settings: bool) -> Value {
    let mut shown = json!({
        "name": repository.name,
        "format": repository.format,
        "kind": repository.kind.as_str(),
        "createdAt": repository.created_at.0,
    });
    if settings {
        shown["settings"] = json!(repository.settings);
        if let Some(upstream) = shown["settings"]
            .get_mut("upstream")
            .and_then(Value::as_object_mut)
        {
            let set = upstream.remove("password").is_some();
            upstream.insert("password_set".into(), json!(set));
        }
    }
    shown
}

/// Whether the asker may read the package repository (pull on its name), as the configured
/// authorizer decides.
fn may_read(admin: &Admin, asker: &Asker, repository: &str) -> bool {
    let (Some(auth), Some(principal)) = (&admin.auth, &asker.principal) else {
        return true;
    };
    RepositoryName::parse(repository)
        .is_ok_and(|name| auth.authorizer.authorize(principal, &name, Action::Pull))
}

/// Whether the asker may see the repository's settings: those who may change them (the admin
/// role on it, as the configured authorizer decides).
fn may_configure(admin: &Admin, asker: &Asker, repository: &str) -> bool {
    let (Some(auth), Some(principal)) = (&admin.auth, &asker.principal) else {
        return true;
    };
    RepositoryName::parse(repository).is_ok_and(|name| {
        auth.authorizer
            .role(principal, &name)
            .is_some_and(|role| role >= Role::Admin)
    })
}

async fn list_repositories(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let result = async {
        let asker = ask(&admin, &headers).await?;
        let mut all = Vec::new();
        let mut page = Page::first(1000);
        loop {
            let batch = admin.packages.repositories(&page).await?;
            let full = batch.len() == page.limit;
            let next = batch.last().map(|last| last.name.clone());
            all.extend(
                batch
                    .into_iter()
                    .filter(|r| may_read(&admin, &asker, &r.name)),
            );
            match (full, next) {
                (true, Some(last)) => page = Page::after(last, 1000),
                _ => break,
            }
        }
        let repositories: Vec<Value> = all
            .iter()
            .map(|r| repository_json(r, may_configure(&admin, &asker, &r.name)))
            .collect();
        Ok::<_, Failure>(json_response(
            StatusCode::OK,
            &json!({ "repositories": repositories }),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn get_repository(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let asker = ask(&admin, &headers).await?;
        let repository = admin
            .packages
            .repository(&name)
            .await?
            .filter(|_| may_read(&admin, &asker, &name))
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("no package repository {name}"),
                )
            })?;
        Ok::<_, Failure>(json_response(
            StatusCode::OK,
            &repository_json(&repository, may_configure(&admin, &asker, &name)),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn put_repository(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let asker = ask(&admin, &headers).await?;
        let body = read_document(body, &headers).await?;
        if !asker.is_admin(&admin) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "configuring package repositories needs the admin role",
            ));
        }
        let request: RepositoryConfig = serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not a repository: {e}"),
            )
        })?;
        if request.name.as_ref().is_some_and(|n| *n != name) {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "the body names another repository than the path",
            ));
        }
        let mut settings = request.settings();
        if let Some(upstream) = &mut settings.upstream {
            refuse_self(upstream, &extensions, &headers)?;
            keep_password(&admin.packages, &name, upstream).await?;
        }
        let repository = admin
            .packages
            .configure_repository(&name, served(request.format)?, request.kind, &settings)
            .await?;
        Ok(json_response(
            StatusCode::OK,
            &repository_json(&repository, true),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The rules of a format this registry serves; others are refused (400).
fn served(
    format: registry_core::PackageFormat,
) -> Result<&'static dyn registry_core::FormatRules, Failure> {
    registry_formats::rules(format).ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("{format} repositories are not served by this registry"),
        )
    })
}

/// Refuses an upstream that names this registry: its external URL, the host this request
/// came in by, or a loopback address on the port it came in at.
#[cfg(feature = "proxy")]
fn refuse_self(
    upstream: &registry_core::UpstreamSettings,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
) -> Result<(), Failure> {
    let base = crate::external_url::base_url(extensions, headers);
    // No (readable) Host: only the external URL names this registry.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let own: Vec<&str> = [base.as_str(), host]
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    // A loopback upstream on the port this request came in at is this registry too.
    let port = extensions
        .get::<crate::serve::LocalAddr>()
        .map(|local| local.0.port());
    if crate::upstream::points_at(upstream, &own, port) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "upstream {} points at this registry itself; a proxy would ask itself forever",
                upstream.url
            ),
        ));
    }
    Ok(())
}

#[cfg(not(feature = "proxy"))]
fn refuse_self(
    _: &registry_core::UpstreamSettings,
    _: &axum::http::Extensions,
    _: &HeaderMap,
) -> Result<(), Failure> {
    Ok(())
}

/// Keeps the password set for the same upstream URL and user when a `PUT` leaves it out (it is
/// never shown, so a client that reads and writes back settings cannot send it).
async fn keep_password(
    packages: &Packages,
    name: &str,
    upstream: &mut registry_core::UpstreamSettings,
) -> Result<(), Failure> {
    if upstream.password.is_some() {
        return Ok(());
    }
    if let Some(existing) = packages
        .repository(name)
        .await?
        .and_then(|r| r.settings.upstream)
        && existing.url == upstream.url
        && existing.username == upstream.username
    {
        upstream.password = existing.password;
    }
    Ok(())
}
