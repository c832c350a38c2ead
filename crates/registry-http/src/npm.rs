//! The npm registry API under `/npm/<repository>/`, for the `npm` CLI.
//!
//! Point npm at `http://host/npm/<repository>/` (`--registry`, or `registry=` in `.npmrc`).
//!
//! | request | npm command |
//! |---|---|
//! | `GET /<name>` (full, or abbreviated with `Accept: application/vnd.npm.install-v1+json`; `ETag`/`304`) | install, view |
//! | `GET /<name>/-/<file>.tgz` | install |
//! | `PUT /<name>` with one version and its tarball | publish (`--tag`) |
//! | `PUT /<name>[/-rev/<rev>]` without tarball | deprecate; unpublish one version (the versions it no longer lists are deleted) |
//! | `DELETE /<name>/-rev/<rev>`, `DELETE /<name>/-/<file>.tgz/-rev/<rev>` | unpublish |
//! | `GET`, `PUT`, `DELETE /-/package/<name>/dist-tags[/<tag>]` | dist-tag ls, add, rm |
//! | `PUT /-/user/org.couchdb.user:<name>` | adduser / login (`--auth-type=legacy`): answers a token |
//! | `DELETE /-/user/token/<token>` | logout |
//! | `GET /-/whoami` | whoami |
//! | `GET /-/v1/search?text=…&size=…&from=…` | search |
//! | `GET /-/ping`, `POST /-/npm/v1/security/*` | ping; audit (answers no advisories) |
//!
//! Tokens are access tokens of the metadata store (`Authorization: Bearer rgt_…`). Errors are
//! `{"error": "…"}` with the status, which npm prints.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use registry_core::{
    Action, Error, FileDigests, FormatRules, NewPackageFile, PackageFormat, PackageUpdate,
    Packages, Release, TokenRecord, VersionStatus,
};
use registry_formats::npm::{self, Npm as Rules, NpmLimits, Put};
use serde_json::{Value, json};

use crate::auth::{Auth, Caller, access_token, authenticate_package_client, token_secret};
use crate::cache::RenderCache;
use crate::external_url::base_url;
use crate::package_error::ErrorJson;
use crate::transfer::{
    BufferBudget, BufferedBody, MAX_SMALL_DOCUMENT, declared_length, file_response, read_bounded,
};

/// The router serving `/npm/<repository>/`, with authentication when `auth` is given.
///
/// ```
/// use std::sync::Arc;
/// use registry_core::Packages;
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
/// let app: axum::Router = registry_http::npm::router(packages, None);
/// ```
pub fn router(packages: Packages, auth: Option<Auth>) -> Router {
    let limits = NpmLimits {
        max_tarball_size: packages.limits().max_file_size,
        ..NpmLimits::default()
    };
    let buffered = BufferBudget::new(packages.limits().max_buffered_bytes);
    Router::new()
        .route("/npm/{*path}", axum::routing::any(dispatch))
        .with_state(Arc::new(Npm {
            packages,
            auth,
            limits,
            buffered,
            cache: RenderCache::new(1024, 256 << 20),
        }))
}

#[derive(Debug)]
struct Npm {
    packages: Packages,
    auth: Option<Auth>,
    limits: NpmLimits,
    /// Bounds the publish documents held in memory at once.
    buffered: BufferBudget,
    /// Rendered packuments by package and revision.
    cache: RenderCache,
}

/// A failure as npm sees it: `{"error": "…"}`, which npm prints.
type Failure = crate::package_error::Failure<ErrorJson>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(status: StatusCode) -> Response {
    json_response(status, &json!({ "ok": true }))
}

/// Percent-decodes a path (npm sends scoped names as `@scope%2fname`).
fn decode(path: &str) -> Result<String, Failure> {
    crate::package_error::percent_decode(path)
}

/// What a path under the repository names.
enum Target {
    Special(String),
    Package { name: String, rev: Option<String> },
    Tarball { name: String, file: String },
}

/// Splits `<name>[/-rev/<rev>|/-/<file>[/-rev/<rev>]]`, a scoped name taking two segments.
fn target(rest: &str) -> Result<Target, Failure> {
    if let Some(special) = rest.strip_prefix("-/") {
        return Ok(Target::Special(special.to_owned()));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let take = if rest.starts_with('@') { 2 } else { 1 };
    if segments.len() < take {
        return Err(Failure::not_found("no such route"));
    }
    let name = segments[..take].join("/");
    let tail = &segments[take..];
    match tail {
        [] | [""] => Ok(Target::Package { name, rev: None }),
        ["-rev", rev] => Ok(Target::Package {
            name,
            rev: Some((*rev).to_owned()),
        }),
        ["-", file] | ["-", file, "-rev", _] => Ok(Target::Tarball {
            name,
            file: (*file).to_owned(),
        }),
        _ => Err(Failure::not_found("no such route")),
    }
}

async fn dispatch(State(npm): State<Arc<Npm>>, request: Request) -> Response {
    let result = async {
        // The route is `/npm/{*path}`: the prefix is always there.
        let raw = request
            .uri()
            .path()
            .strip_prefix("/npm/")
            .unwrap_or_default();
        let (repository, rest) = raw.split_once('/').unwrap_or((raw, ""));
        let repository = repository.to_owned();
        let rest = decode(rest)?;
        registry_core::package::check_repository_name(&repository)?;
        let method = request.method().clone();
        let base = format!(
            "{}/npm/{repository}",
            base_url(request.extensions(), request.headers())
        );
        let caller = authenticate(&npm, request.headers()).await?;
        if caller.is_some() {
            // Only those the registry knows learn that the name holds another format.
            npm.packages
                .check_read_format(&repository, PackageFormat::Npm)
                .await?;
        }
        let user = user_of(&npm, request.headers(), caller.as_ref()).await?;
        let role = match (&npm.auth, &caller) {
            (None, _) => None,
            (Some(auth), Some(caller)) => {
                crate::auth::package_role(Some(auth), caller, &repository)
            }
            // Unknown callers are refused before any change; they are never trusted.
            (Some(_), None) => Some(registry_core::Role::Reader),
        };
        let repo = Repo {
            npm: &npm,
            name: repository,
            caller,
            user,
            role,
            base,
        };
        match (target(&rest)?, method) {
            (Target::Special(path), method) => special(&repo, &path, method, request).await,
            (Target::Package { name, .. }, Method::GET | Method::HEAD) => {
                let write = request
                    .uri()
                    .query()
                    .is_some_and(|q| q.contains("write=true"));
                packument(&repo, &name, request.headers(), write).await
            }
            (Target::Package { name, rev }, Method::PUT) => {
                // Publishing and document updates (deprecate, unpublish of versions) both need
                // write access: checked before a byte of the body is read.
                repo.require_any_for(&[Action::Push, Action::Delete], &name)
                    .await?;
                let body = read_document(&npm, request).await?;
                put_package(&repo, &name, rev.as_deref(), &body.bytes).await
            }
            (Target::Package { name, rev }, Method::DELETE) => {
                repo.require_for(Action::Delete, &name).await?;
                delete_package(&repo, &name, rev.as_deref()).await
            }
            (Target::Tarball { name, file }, Method::GET | Method::HEAD) => {
                let head = request.method() == Method::HEAD;
                tarball(&repo, &name, &file, head).await
            }
            (Target::Tarball { name, file }, Method::DELETE) => {
                repo.require_for(Action::Delete, &name).await?;
                delete_tarball(&repo, &name, &file).await
            }
            (_, method) => Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported here"),
            )),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// One request's repository and caller.
struct Repo<'a> {
    npm: &'a Npm,
    name: String,
    caller: Option<Caller>,
    user: Option<String>,
    role: Option<registry_core::Role>,
    base: String,
}

impl Repo<'_> {
    /// Checks the caller may act on the repository, and on the package under its protection
    /// rules.
    async fn require_for(&self, action: Action, package: &str) -> Result<(), Failure> {
        self.require(action)?;
        self.npm
            .packages
            .check_protection(&Rules, &self.name, package, action, self.role)
            .await?;
        Ok(())
    }

    /// Checks the caller may perform at least one of `actions` on the repository and on the
    /// package under its protection rules; refused, the answer gives the first action's reason
    /// (the one the request most likely meant).
    async fn require_any_for(&self, actions: &[Action], package: &str) -> Result<(), Failure> {
        let mut refusal = None;
        for action in actions {
            match self.require_for(*action, package).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        refusal.map_or(Ok(()), Err)
    }

    fn require(&self, action: Action) -> Result<(), Failure> {
        crate::package_error::decide(
            self.npm.auth.as_ref(),
            self.caller.as_ref(),
            &self.name,
            action,
            "authentication required: npm login",
        )
        .map(drop)
    }
}

/// The name of the user making a request: the access token's user (also when no
/// authentication is configured), else the authenticated principal's.
async fn user_of(
    npm: &Npm,
    headers: &HeaderMap,
    caller: Option<&Caller>,
) -> Result<Option<String>, Failure> {
    // A token names its user only when it authenticated the caller (a removed user's token
    // does not).
    if let Some(secret) = crate::auth::credentials(headers)
        .as_ref()
        .and_then(token_secret)
        .filter(|_| caller.is_some())
    {
        return Ok(access_token(npm.packages.tokens(), secret)
            .await?
            .map(|t| t.user));
    }
    Ok(match caller {
        Some(Caller::Principal(principal)) => principal.name.clone(),
        Some(Caller::Token(access)) if !access.subject.is_empty() => Some(access.subject.clone()),
        _ => None,
    })
}

/// The caller, or `None` for credentials that prove nothing (refused once an action needs
/// them).
async fn authenticate(npm: &Npm, headers: &HeaderMap) -> Result<Option<Caller>, Failure> {
    Ok(authenticate_package_client(npm.auth.as_ref(), npm.packages.tokens(), headers).await?)
}

/// Reads a publish document: at most the largest tarball in base64 plus 16 MiB of JSON, within
/// the budget of documents buffered at once.
async fn read_document(npm: &Npm, request: Request) -> Result<BufferedBody, Failure> {
    let limit = usize::try_from(npm.limits.max_tarball_size.saturating_mul(4) / 3 + (16 << 20))
        .unwrap_or(usize::MAX);
    let declared = declared_length(request.headers());
    Ok(npm
        .buffered
        .read(request.into_body(), declared, limit, "the publish document")
        .await?)
}

/// Reads a small JSON body (a login, a dist-tag).
async fn read_small(request: Request) -> Result<Bytes, Failure> {
    let declared = declared_length(request.headers());
    Ok(read_bounded(
        request.into_body(),
        declared,
        MAX_SMALL_DOCUMENT,
        "the request body",
    )
    .await?)
}

async fn load(repo: &Repo<'_>, name: &str) -> Result<registry_core::Package, Failure> {
    repo.npm
        .packages
        .package(&Rules, &repo.name, name)
        .await?
        .ok_or_else(|| Failure::not_found(format!("package {name} not found")))
}

/// A package as stored, for a change computed from it (every version, whatever the firewall
/// shows; its revision is the one the change is checked against).
async fn load_to_change(repo: &Repo<'_>, name: &str) -> Result<registry_core::Package, Failure> {
    repo.npm
        .packages
        .package_to_change(&Rules, &repo.name, name)
        .await?
        .ok_or_else(|| Failure::not_found(format!("package {name} not found")))
}

/// Checks npm's `_rev` of a request against the package as loaded: a stale one is `409`.
fn check_rev(package: &registry_core::Package, rev: Option<&str>) -> Result<(), Failure> {
    match rev {
        Some(rev) if npm::revision(&package.revision) != rev => Err(Failure::new(
            StatusCode::CONFLICT,
            format!(
                "{} changed since revision {rev}; fetch it again",
                package.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Applies a document change in one transaction, its revision checked inside it.
async fn apply(repo: &Repo<'_>, change: &PackageUpdate) -> Result<(), Failure> {
    repo.npm
        .packages
        .update(&Rules, repo.role, change)
        .await
        .map_err(|e| match e {
            Error::PackageConflict { reason } => Failure::new(StatusCode::CONFLICT, reason),
            other => other.into(),
        })
}

/// `DELETE /<name>[/-rev/<rev>]`: unpublishes the package as the client was shown it. With a
/// revision, its versions go in one transaction that first checks the package is still at
/// that revision, so a version published meanwhile is never deleted unseen.
///
/// npm sends this too when `npm unpublish <name>@<version>` removes the last version it was
/// shown: versions the firewall hides from clients were never shown, and stay (the admin API
/// deletes a package whole).
async fn delete_package(
    repo: &Repo<'_>,
    name: &str,
    rev: Option<&str>,
) -> Result<Response, Failure> {
    let stored = load_to_change(repo, name).await?;
    let shown = load(repo, name).await?;
    check_rev(&shown, rev)?;
    apply(
        repo,
        &PackageUpdate {
            repository: repo.name.clone(),
            name: name.to_owned(),
            expected_revision: Some(stored.revision.clone()),
            delete_versions: shown.versions.iter().map(|v| v.version.clone()).collect(),
            ..PackageUpdate::default()
        },
    )
    .await?;
    Ok(ok(StatusCode::OK))
}

async fn packument(
    repo: &Repo<'_>,
    name: &str,
    headers: &HeaderMap,
    write: bool,
) -> Result<Response, Failure> {
    repo.require(Action::Pull)?;
    npm::check_read_name(name)
        .map_err(|_| Failure::not_found(format!("package {name} not found")))?;
    let abbreviated = !write
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/vnd.npm.install-v1+json"));
    let content_type = if abbreviated {
        "application/vnd.npm.install-v1+json"
    } else {
        "application/json"
    };
    let revision = repo
        .npm
        .packages
        .package_revision(&Rules, &repo.name, name)
        .await?
        .ok_or_else(|| Failure::not_found(format!("package {name} not found")))?;
    let variant = if abbreviated { 'a' } else { 'f' };
    let key = format!("{}\0{name}\0{variant}\0{}", repo.name, repo.base);
    let (body, revision) = match repo.npm.cache.get(&key, &revision) {
        Some(body) => (body, revision),
        None => {
            let package = load(repo, name).await?;
            let document = if abbreviated {
                npm::abbreviated(&package, &repo.base)
            } else {
                npm::packument(&package, &repo.base)
            };
            let body = Bytes::from(document.to_string());
            repo.npm
                .cache
                .put(key, package.revision.clone(), body.clone());
            (body, package.revision)
        }
    };
    let etag = format!("\"{revision}-{variant}\"");
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(response)
}

async fn tarball(repo: &Repo<'_>, name: &str, file: &str, head: bool) -> Result<Response, Failure> {
    repo.require(Action::Pull)?;
    let (_, found) = repo
        .npm
        .packages
        .file(&Rules, &repo.name, name, None, file)
        .await?
        .ok_or_else(|| Failure::not_found(format!("{name}/-/{file} not found")))?;
    let read = repo
        .npm
        .packages
        .read(&Rules, &repo.name, &found.blob, None)
        .await?;
    Ok(file_response(read, false, "application/octet-stream", head))
}

async fn delete_tarball(repo: &Repo<'_>, name: &str, file: &str) -> Result<Response, Failure> {
    // npm removes the version from the document first; the tarball went with it.
    let Some(package) = repo.npm.packages.package(&Rules, &repo.name, name).await? else {
        return Ok(ok(StatusCode::OK));
    };
    if let Some(version) = package
        .versions
        .iter()
        .find(|v| v.files.iter().any(|f| f.name == file))
    {
        repo.npm
            .packages
            .delete_version(&Rules, &repo.name, name, &version.version, repo.role)
            .await?;
    }
    Ok(ok(StatusCode::OK))
}

async fn put_package(
    repo: &Repo<'_>,
    name: &str,
    rev: Option<&str>,
    body: &[u8],
) -> Result<Response, Failure> {
    let put = npm::parse_put(body, name, &repo.npm.limits)?;
    match put {
        Put::Publish(publication) => {
            repo.require_for(Action::Push, name).await?;
            publish(repo, *publication).await
        }
        Put::Update(update) => {
            let rev = rev.map(str::to_owned).or_else(|| {
                serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|d| d.get("_rev").and_then(Value::as_str).map(str::to_owned))
            });
            update_package(repo, name, rev.as_deref(), update).await
        }
    }
}

async fn publish(repo: &Repo<'_>, publication: npm::Publication) -> Result<Response, Failure> {
    let packages = &repo.npm.packages;
    // Checked before the tarball is stored: a publish that cannot land stores nothing.
    packages
        .prepare_publish(&Rules, &repo.name, &publication.name, repo.role)
        .await?;
    let blob = packages
        .store_bytes(Rules.extra_digests(), Bytes::from(publication.tarball))
        .await?
        .blob;
    let mut manifest = publication.manifest;
    if let Some(user) = &repo.user
        && let Some(fields) = manifest.as_object_mut()
    {
        fields.insert("_npmUser".into(), json!({ "name": user }));
    }
    let file = npm::tarball_name(&publication.name, &publication.version);
    let release = Release {
        name: publication.name.clone(),
        version: publication.version.clone(),
        metadata: manifest.to_string(),
        files: vec![NewPackageFile {
            name: file,
            blob,
            digests: FileDigests {
                sha1: Some(publication.shasum),
                sha512: Some(publication.sha512),
                ..FileDigests::default()
            },
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: publication.tags,
    };
    let outcome = packages
        .publish(&Rules, &repo.name, repo.role, release)
        .await
        .map_err(|e| match e {
            Error::PackageConflict { .. } => Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "cannot publish over the previously published version {} of {}",
                    publication.version, publication.name
                ),
            ),
            other => other.into(),
        })?;
    tracing::debug!(name = %publication.name, version = %publication.version, created = outcome.version_created, "npm publish");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "ok": true, "id": publication.name }),
    ))
}

async fn update_package(
    repo: &Repo<'_>,
    name: &str,
    rev: Option<&str>,
    update: npm::DocumentUpdate,
) -> Result<Response, Failure> {
    // The change is computed from what the client was shown (the firewall may hide versions
    // and move tags) and checked against the package as stored.
    let stored = load_to_change(repo, name).await?;
    let package = load(repo, name).await?;
    let removed: Vec<&str> = package
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .filter(|v| !update.versions.contains_key(*v))
        .collect();
    // The whole document's changes in one transaction, checked against the revision they were
    // computed from: a concurrent change makes this one refuse, never half apply.
    let mut change = PackageUpdate {
        repository: repo.name.clone(),
        name: name.to_owned(),
        expected_revision: Some(stored.revision.clone()),
        delete_versions: removed.iter().map(|v| (*v).to_owned()).collect(),
        ..PackageUpdate::default()
    };
    for version in &package.versions {
        let Some(deprecated) = update.versions.get(&version.version) else {
            continue;
        };
        let wanted = match deprecated {
            Some(message) => VersionStatus::Deprecated(message.clone()),
            None if matches!(version.status, VersionStatus::Deprecated(_)) => {
                VersionStatus::Default
            }
            None => continue,
        };
        if wanted != version.status {
            change.statuses.push((version.version.clone(), wanted));
        }
    }
    let remaining: Vec<&str> = package
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .filter(|v| !removed.contains(v))
        .collect();
    if !remaining.is_empty() {
        for (tag, version) in &update.tags {
            if package.tags.get(tag) != Some(version) && remaining.contains(&version.as_str()) {
                change.set_tags.push((tag.clone(), version.clone()));
            }
        }
        for tag in package.tags.keys() {
            if !update.tags.contains_key(tag) {
                change.delete_tags.push(tag.clone());
            }
        }
    }
    repo.require_for(change.action(), name).await?;
    if rev.is_none() && !change.delete_versions.is_empty() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "a document that removes versions must carry the _rev it was read at",
        ));
    }
    check_rev(&package, rev)?;
    apply(repo, &change).await?;
    Ok(ok(StatusCode::OK))
}

async fn special(
    repo: &Repo<'_>,
    path: &str,
    method: Method,
    request: Request,
) -> Result<Response, Failure> {
    let tokens = repo.npm.packages.tokens();
    match (path, &method) {
        ("ping", _) => Ok(json_response(StatusCode::OK, &json!({}))),
        ("whoami", &Method::GET) => whoami(repo).await,
        ("v1/search", &Method::GET) => search(repo, request.uri().query().unwrap_or("")).await,
        ("v1/login", _) => Err(Failure::not_found(
            "web login is not supported; use --auth-type=legacy",
        )),
        ("npm/v1/security/advisories/bulk", &Method::POST) => audit(repo, request).await,
        (p, &Method::POST) if p.starts_with("npm/v1/security/") => Err(Failure::not_found(
            "this registry answers npm audit at /-/npm/v1/security/advisories/bulk only",
        )),
        (p, &Method::PUT) if p.starts_with("user/org.couchdb.user:") => {
            let body = read_small(request).await?;
            login(repo, &body).await
        }
        (p, &Method::DELETE) if p.starts_with("user/token/") => {
            let secret = &p["user/token/".len()..];
            if let Some(token) = access_token(tokens, secret).await? {
                tokens.delete_token(&token.id).await?;
            }
            Ok(ok(StatusCode::OK))
        }
        (p, _) if p.starts_with("package/") => {
            let rest = &p["package/".len()..];
            let (name, tag) = match rest.rsplit_once("/dist-tags") {
                Some((name, "")) => (name, None),
                Some((name, tag)) => (name, tag.strip_prefix('/')),
                None => return Err(Failure::not_found("no such route")),
            };
            dist_tags(repo, name, tag, method, request).await
        }
        _ => Err(Failure::not_found("no such route")),
    }
}

/// `npm audit`: the advisories loaded that affect the packages and versions asked about
/// (hosted and proxied alike: advisories are keyed by package name). With none loaded it says
/// so (503) rather than answer "no vulnerabilities" for what was never checked.
async fn audit(repo: &Repo<'_>, request: Request) -> Result<Response, Failure> {
    repo.require(Action::Pull)?;
    let gzipped = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = read_small(request).await?;
    if repo.npm.packages.advisories().is_empty() {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no advisory data is loaded on this registry, so nothing was checked: configure \
             [firewall] advisories",
        ));
    }
    // Decompressing and matching are CPU work: off the request threads.
    let packages = repo.npm.packages.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let asked = npm::read_bulk_request(&body, gzipped)?;
        Ok::<_, registry_core::Error>(npm::bulk_response(&asked, packages.advisories()))
    })
    .await
    .map_err(|e| registry_core::Error::backend(format!("the audit task failed: {e}")))??;
    Ok(json_response(StatusCode::OK, &answer))
}

async fn whoami(repo: &Repo<'_>) -> Result<Response, Failure> {
    match &repo.user {
        Some(name) => Ok(json_response(StatusCode::OK, &json!({ "username": name }))),
        None => Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "not logged in: npm login",
        )),
    }
}

/// `PUT /-/user/org.couchdb.user:<name>` with `{name, password}`: checks the password (any is
/// accepted without authentication configured) and answers a new access token for the user.
async fn login(repo: &Repo<'_>, body: &[u8]) -> Result<Response, Failure> {
    let document: Value = serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let field = |key: &str| {
        document
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, format!("{key} is required")))
    };
    let (user, password) = (field("name")?, field("password")?);
    let grants = match &repo.npm.auth {
        // An open registry allows everything anyway; a token minted now must not become a key
        // to everything once authentication is configured, so it carries no grants.
        None => Vec::new(),
        Some(auth) => {
            let credentials = registry_core::Credentials::Basic {
                user: user.clone(),
                password,
            };
            match auth.authenticator.authenticate(&credentials).await? {
                // The token is for this repository only (the one npm keys it to in .npmrc),
                // with at most the user's role there.
                Some(principal) if principal.name.as_deref() == Some(user.as_str()) => {
                    match registry_core::NamePattern::parse(&repo.name) {
                        Ok(pattern) => registry_core::Grant::intersect(
                            &principal.grants,
                            &[registry_core::Grant {
                                pattern,
                                role: registry_core::Role::Maintainer,
                            }],
                        ),
                        Err(_) => Vec::new(),
                    }
                }
                _ => {
                    return Err(Failure::new(
                        StatusCode::UNAUTHORIZED,
                        "wrong user name or password",
                    ));
                }
            }
        }
    };
    crate::auth::check_token_quota(repo.npm.packages.tokens(), &user).await?;
    let (secret, hash) = registry_core::token::new_secret();
    let token = TokenRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        user: user.clone(),
        label: "npm login".into(),
        secret_hash: hash,
        grants,
        created_at: registry_core::Timestamp::now(),
        expires_at: None,
    };
    repo.npm.packages.tokens().put_token(&token).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "ok": true, "id": format!("org.couchdb.user:{user}"), "token": secret }),
    ))
}

async fn dist_tags(
    repo: &Repo<'_>,
    name: &str,
    tag: Option<&str>,
    method: Method,
    request: Request,
) -> Result<Response, Failure> {
    let packages = &repo.npm.packages;
    match (tag, method) {
        (None, Method::GET) | (Some(""), Method::GET) => {
            repo.require(Action::Pull)?;
            let package = load(repo, name).await?;
            Ok(json_response(StatusCode::OK, &json!(package.tags)))
        }
        (Some(tag), Method::PUT | Method::POST) => {
            repo.require_for(Action::Push, name).await?;
            npm::check_tag(tag)?;
            let body = read_small(request).await?;
            let version: String = serde_json::from_slice(&body).map_err(|_| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "the body must be a JSON string naming a version",
                )
            })?;
            packages
                .set_tag(&Rules, &repo.name, name, tag, &version, repo.role)
                .await?;
            Ok(ok(StatusCode::CREATED))
        }
        (Some(tag), Method::DELETE) => {
            repo.require_for(Action::Delete, name).await?;
            if tag == "latest" {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "the latest tag cannot be removed",
                ));
            }
            if packages
                .delete_tag(&Rules, &repo.name, name, tag, repo.role)
                .await?
            {
                Ok(ok(StatusCode::OK))
            } else {
                Err(Failure::not_found(format!("{name} has no dist-tag {tag}")))
            }
        }
        _ => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not supported here",
        )),
    }
}

/// `GET /-/v1/search?text=…&size=…&from=…`: packages whose name contains the text.
async fn search(repo: &Repo<'_>, query: &str) -> Result<Response, Failure> {
    repo.require(Action::Pull)?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        let value = decode(&value.replace('+', " ")).map_err(|_| {
            Failure::new(StatusCode::BAD_REQUEST, format!("{key} is not UTF-8 text"))
        })?;
        params.insert(key.to_owned(), value);
    }
    // No text lists every package, as npm's registry does.
    let text = params
        .get("text")
        .map(|t| t.trim().to_lowercase())
        .unwrap_or_default();
    let number = |key: &str, default: usize| -> Result<usize, Failure> {
        match params.get(key).map(|v| v.trim()) {
            None | Some("") => Ok(default),
            // Past usize, a count is as large as it can be (then capped).
            Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(v.parse().unwrap_or(usize::MAX)),
            Some(v) => Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("{key}={v:?} is not a count"),
            )),
        }
    };
    let size = number("size", 20)?.clamp(1, 250);
    let from = number("from", 0)?.min(10_000);
    let packages = &repo.npm.packages;
    // Answers are rendered once per revision of the repository (read from the store, so exact
    // on every instance); only the search time is added per request.
    let revision = packages
        .repository_revision(&Rules, &repo.name)
        .await?
        .map(|r| r.to_string());
    let key = format!(
        "{}\0search\0{text}\0{size}\0{from}\0{}",
        repo.name, repo.base
    );
    let cached = match &revision {
        Some(revision) => repo.npm.cache.get(&key, revision),
        None => None,
    };
    let body = match cached {
        Some(body) => body,
        None => {
            let body = Bytes::from(search_results(repo, &text, size, from).await?);
            if let Some(revision) = revision {
                repo.npm.cache.put(key, revision, body.clone());
            }
            body
        }
    };
    // The cached document is an object; the time joins it as its last member.
    let time = npm::iso_time(registry_core::Timestamp::now().0);
    let mut document = Vec::with_capacity(body.len() + 40);
    document.extend_from_slice(&body[..body.len() - 1]);
    document.extend_from_slice(format!(",\"time\":\"{time}\"}}").as_bytes());
    let mut response = (StatusCode::OK, document).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The search answer without its time: `{"objects": […], "total": n}`.
async fn search_results(
    repo: &Repo<'_>,
    text: &str,
    size: usize,
    from: usize,
) -> Result<String, Failure> {
    let packages = &repo.npm.packages;
    let contains = (!text.is_empty()).then_some(text);
    // Every match is counted (the answer's total) and the asked window kept: a walk of the
    // listing, paid once per revision of the repository (the answer is cached).
    let mut found = Vec::new();
    let mut total = 0usize;
    let mut page = registry_core::Page::first(1000);
    loop {
        let batch = packages
            .list_packages(&Rules, &repo.name, contains, &page)
            .await?;
        let full = batch.len() == page.limit;
        let last = batch.last().map(|p| p.name.clone());
        for summary in batch {
            if (from..from + size).contains(&total) {
                found.push(summary);
            }
            total += 1;
        }
        match (full, last) {
            (true, Some(last)) => page = registry_core::Page::after(last, 1000),
            _ => break,
        }
    }
    let mut objects = Vec::new();
    for summary in &found {
        let Some(package) = packages.package(&Rules, &repo.name, &summary.name).await? else {
            continue;
        };
        let latest = package
            .tags
            .get("latest")
            .and_then(|v| package.version(v))
            .or(package.versions.last());
        let manifest: Value = latest
            .and_then(|v| serde_json::from_str(&v.metadata).ok())
            .unwrap_or_else(|| json!({}));
        let publisher = manifest
            .get("_npmUser")
            .and_then(|u| u.get("name"))
            .map(|name| json!({ "username": name }));
        let maintainers: Vec<Value> = publisher.iter().cloned().collect();
        let scope = package
            .name
            .strip_prefix('@')
            .and_then(|s| s.split_once('/'))
            .map_or("unscoped", |(scope, _)| scope);
        objects.push(json!({
            "package": {
                "name": package.name,
                "scope": scope,
                "version": latest.map(|v| v.version.as_str()),
                "description": manifest.get("description"),
                "keywords": manifest.get("keywords").filter(|k| k.is_array()).cloned().unwrap_or_else(|| json!([])),
                "maintainers": maintainers,
                "publisher": publisher,
                "date": npm::iso_time(package.updated_at.0),
                "links": {},
            },
            "score": { "final": 1.0, "detail": { "quality": 1.0, "popularity": 1.0, "maintenance": 1.0 } },
            "searchScore": 1.0,
        }));
    }
    Ok(json!({ "objects": objects, "total": total }).to_string())
}
