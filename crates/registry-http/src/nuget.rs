//! NuGet v3 feeds under `/nuget/<repository>/`, for NuGet clients (`nuget.exe`, `dotnet`).
//!
//! | request | does |
//! |---|---|
//! | `GET …/v3/index.json` | the service index: every resource below, under the `@type`s clients look for |
//! | `PUT …/api/v2/package` (multipart, or the bare `.nupkg`) | push: the `.nuspec` read from the package (bounded); 201, 409 for a version already there |
//! | `PUT …/api/v2/symbolpackage` | push a symbol package (`.snupkg`) of a version already pushed |
//! | `DELETE …/api/v2/package/<id>/<version>` | unlist (the version stays installable by version); with `?purge=true`, delete it and its files |
//! | `POST …/api/v2/package/<id>/<version>` | relist |
//! | `PUT`, `DELETE …/api/v2/package/<id>/<version>/deprecation` | deprecate (`{"reasons": […], "message"?, "alternatePackage"?}`), undeprecate |
//! | `GET …/v3/flatcontainer/<id>/index.json` | every version, lowercase normal form |
//! | `GET …/v3/flatcontainer/<id>/<version>/<id>.<version>.nupkg` (`.snupkg`), `…/<id>.nuspec` | the package, its symbols, its nuspec (`Range` supported) |
//! | `GET …/v3/registration[-semver2]/<id>/index.json`, `…/page/<lower>/<upper>.json`, `…/<version>.json` | registrations: SemVer 1.0.0 versions, or all |
//! | `GET …/v3/search?q=&skip=&take=&prerelease=&semVerLevel=` | packages whose id contains `q` (`packageid:<id>` for one id), listed versions only |
//!
//! Ids are case-insensitive and versions are compared in NuGet's normal form, so `1.0` and
//! `1.0.0.0` are one version; listing and deprecation are independent. Reads need pull on the
//! repository name, pushes push, unlisting, relisting and purging delete, deprecating push.
//! Changes send the key in `X-NuGet-ApiKey` (an access token, or `user:password`), which wins
//! over any `Authorization` sent along; reads use the feed's credentials (Basic, a password or
//! an access token as the password). Errors are a line of text, repeated in the status line,
//! which NuGet clients print.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use registry_core::{
    Action, Error, FormatRules, NewPackageFile, Package, PackageUpdate, PackageVersion, Packages,
    Page, Release, Role, StoredFile,
};
use registry_formats::nuget::documents::{
    self, Deprecation, Entry, Hit, Hive, Urls, VersionState, package_file_name,
};
use registry_formats::nuget::{self, NuGetVersion, Nuget as Rules, Nuspec};
use serde_json::Value;

use crate::auth::Auth;
use crate::cache::RenderCache;
use crate::external_url::base_url;
use crate::package_error::ReasonText;
use crate::transfer::{
    FramingBound, body_stream, declared_length, document_response, read_bounded,
    stored_file_response,
};

/// A failure as NuGet clients see it: a status line and a line of text.
type Failure = crate::package_error::Failure<ReasonText>;

/// The header NuGet clients send their key in.
const API_KEY: &str = "x-nuget-apikey";

/// The largest deprecation document accepted.
const MAX_DEPRECATION: usize = 64 << 10;

/// The most search results one page shows.
const MAX_TAKE: usize = 250;

/// The router serving `/nuget/`, with authentication when `auth` is given.
///
/// ```
/// use std::sync::Arc;
/// use registry_core::Packages;
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
/// let app: axum::Router = registry_http::nuget::router(packages, None);
/// ```
pub fn router(packages: Packages, auth: Option<Auth>) -> Router {
    // A push is the package plus multipart framing; the limit is the configured file size.
    let body_limit = usize::try_from(packages.limits().max_file_size.saturating_add(1 << 20))
        .unwrap_or(usize::MAX);
    Router::new()
        .route("/nuget/{*path}", axum::routing::any(dispatch))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(Arc::new(NugetApi {
            packages,
            auth,
            cache: RenderCache::new(1024, 256 << 20),
        }))
}

#[derive(Debug)]
struct NugetApi {
    packages: Packages,
    auth: Option<Auth>,
    /// Rendered registrations and search answers by package (or repository) revision.
    cache: RenderCache,
}

/// One request's repository and where its resources are.
struct Feed<'a> {
    api: &'a NugetApi,
    repository: &'a str,
    urls: Urls,
    /// The base all URLs start with, as part of cache keys.
    base: String,
}

impl NugetApi {
    /// Authorizes `action` on the repository. Reads use `Authorization`; changes use the
    /// `X-NuGet-ApiKey` when one is sent (an access token, or `user:password`), since NuGet
    /// clients may send the feed's read credentials along with the key that may push.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        repository: &str,
        action: Action,
    ) -> Result<Option<Role>, Failure> {
        let with_key;
        let headers = match api_key_authorization(headers).filter(|_| action != Action::Pull) {
            Some(value) => {
                with_key = {
                    let mut copy = headers.clone();
                    copy.insert(header::AUTHORIZATION, value);
                    copy
                };
                &with_key
            }
            None => headers,
        };
        crate::package_error::authorize(
            self.auth.as_ref(),
            self.packages.tokens(),
            headers,
            repository,
            action,
        )
        .await
    }
}

/// The `Authorization` an `X-NuGet-ApiKey` stands for: Basic for `user:password`, Bearer (an
/// access token) otherwise.
fn api_key_authorization(headers: &HeaderMap) -> Option<HeaderValue> {
    use base64::Engine;
    let key = headers.get(API_KEY)?.to_str().ok()?.trim();
    if key.is_empty() {
        return None;
    }
    let value = if key.contains(':') {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    } else {
        format!("Bearer {key}")
    };
    HeaderValue::from_str(&value).ok()
}

async fn dispatch(State(api): State<Arc<NugetApi>>, request: Request) -> Response {
    let result = async {
        let path = request.uri().path().to_owned();
        let (repository, rest) = crate::package_error::repository_path(&path, "/nuget/")?;
        let base = format!(
            "{}/nuget/{repository}",
            base_url(request.extensions(), request.headers())
        );
        let feed = Feed {
            api: &api,
            repository,
            urls: Urls::new(base.clone()),
            base,
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let method = request.method().clone();
        let head = method == Method::HEAD;
        let read = matches!(method, Method::GET | Method::HEAD);
        let query = query_params(request.uri().query().unwrap_or(""))?;
        if read {
            api.authorize(request.headers(), repository, Action::Pull)
                .await?;
        }
        match (parts.as_slice(), &method) {
            (["v3", "index.json"], _) if read => {
                // Any name may become a feed on its first push; another format's is none.
                api.packages
                    .check_read_format(repository, Rules.format())
                    .await?;
                json_response(documents::service_index(&feed.urls).to_string(), head)
            }
            (["api", "v2", kind] | ["api", "v2", kind, ""], &Method::PUT)
                if *kind == "package" || *kind == "symbolpackage" =>
            {
                let role = api
                    .authorize(request.headers(), repository, Action::Push)
                    .await?;
                push(&feed, role, *kind == "symbolpackage", request).await
            }
            (["api", "v2", "package", id, version], &Method::DELETE) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Delete)
                    .await?;
                if query.get("purge").is_some_and(|v| v == "true") {
                    api.packages
                        .delete_version(&Rules, repository, id, version, role)
                        .await?;
                } else {
                    change_state(&feed, id, version, Action::Delete, role, |state| {
                        state.listed = false;
                    })
                    .await?;
                }
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (["api", "v2", "package", id, version], &Method::POST) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Delete)
                    .await?;
                change_state(&feed, id, version, Action::Delete, role, |state| {
                    state.listed = true;
                })
                .await?;
                Ok(StatusCode::OK.into_response())
            }
            (["api", "v2", "package", id, version, "deprecation"], &Method::PUT) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Push)
                    .await?;
                api.packages
                    .check_protection(&Rules, repository, id, Action::Push, role)
                    .await?;
                let declared = declared_length(request.headers());
                let body = read_bounded(
                    request.into_body(),
                    declared,
                    MAX_DEPRECATION,
                    "the deprecation",
                )
                .await?;
                let deprecation = Deprecation::parse(&body)?;
                change_state(&feed, id, version, Action::Push, role, |state| {
                    state.deprecation = Some(deprecation.clone());
                })
                .await?;
                Ok(StatusCode::OK.into_response())
            }
            (["api", "v2", "package", id, version, "deprecation"], &Method::DELETE) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Push)
                    .await?;
                change_state(&feed, id, version, Action::Push, role, |state| {
                    state.deprecation = None;
                })
                .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (["v3", "flatcontainer", id, "index.json"], _) if read => {
                flat_versions(&feed, id, head).await
            }
            (["v3", "flatcontainer", id, version, file], _) if read => {
                content(&feed, id, version, file, request.headers(), head).await
            }
            (["v3", hive, id, "index.json"], _) if read => {
                let hive = hive_of(hive)?;
                registration(&feed, hive, id, Document::Index, head).await
            }
            (["v3", hive, id, "page", lower, upper], _) if read => {
                let hive = hive_of(hive)?;
                let upper = upper.strip_suffix(".json").ok_or_else(no_route)?;
                let bounds = (version_of(lower)?, version_of(upper)?);
                registration(&feed, hive, id, Document::Page(bounds), head).await
            }
            (["v3", hive, id, leaf], _) if read => {
                let hive = hive_of(hive)?;
                let version = leaf.strip_suffix(".json").ok_or_else(no_route)?;
                let version = version_of(version)?;
                registration(&feed, hive, id, Document::Leaf(version), head).await
            }
            (["v3", "search"], _) if read => search(&feed, &query, head).await,
            _ if read => Err(no_route()),
            _ => Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on this path"),
            )),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn no_route() -> Failure {
    Failure::not_found("no such resource")
}

fn hive_of(segment: &str) -> Result<Hive, Failure> {
    Hive::from_segment(segment).ok_or_else(no_route)
}

fn version_of(text: &str) -> Result<NuGetVersion, Failure> {
    Ok(NuGetVersion::parse(text)?)
}

/// The query's parameters, percent-decoded.
fn query_params(query: &str) -> Result<BTreeMap<String, String>, Failure> {
    let parsed: axum::extract::Query<BTreeMap<String, String>> =
        axum::extract::Query::try_from_uri(
            &format!("/?{query}")
                .parse()
                .map_err(|_| Failure::new(StatusCode::BAD_REQUEST, "the query is malformed"))?,
        )
        .map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the query is malformed: {e}"),
            )
        })?;
    Ok(parsed.0)
}

fn json_response(body: impl Into<Bytes>, head: bool) -> Result<Response, Failure> {
    Ok(document_response(body, "application/json", head))
}

/// Streams the pushed package into the store: the one file part of a multipart body, or the
/// body itself.
async fn receive(feed: &Feed<'_>, request: Request) -> Result<StoredFile, Failure> {
    let packages = &feed.api.packages;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/"));
    if !multipart {
        return Ok(packages
            .store_file(Rules.extra_digests(), body_stream(request.into_body()))
            .await?);
    }
    let malformed = |e: &dyn std::fmt::Display| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the push is not a well-formed multipart body: {e}"),
        )
    };
    // Preamble and part headers bounded; the package's data is not.
    let (request, framing) = FramingBound::wrap(request);
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| malformed(&e))?;
    let mut field = form
        .next_field()
        .await
        .map_err(|e| malformed(&e))?
        .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "the push holds no package"))?;
    framing.lift();
    let stored = packages
        .store_file(Rules.extra_digests(), &mut field)
        .await?;
    drop(field);
    framing.bound_from_here();
    if form
        .next_field()
        .await
        .map_err(|e| malformed(&e))?
        .is_some()
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "push one package per request",
        ));
    }
    Ok(stored)
}

async fn push(
    feed: &Feed<'_>,
    role: Option<Role>,
    symbols: bool,
    request: Request,
) -> Result<Response, Failure> {
    let packages = &feed.api.packages;
    // The package's name is inside the package: the repository is checked before the body is
    // read, the package's protection rules when it is published.
    packages.prepare_repository(&Rules, feed.repository).await?;
    let stored = receive(feed, request).await?;
    let (nuspec, raw) = packages
        .read_blocking(&stored.blob, nuget::read_nupkg)
        .await??;
    let version = NuGetVersion::parse(&nuspec.version)?;
    if nuspec.is_symbols() != symbols {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            if symbols {
                format!(
                    "{} {} is not a symbol package (its nuspec has no SymbolsPackage type)",
                    nuspec.id, nuspec.version
                )
            } else {
                format!(
                    "{} {} is a symbol package: push it to {}",
                    nuspec.id,
                    nuspec.version,
                    feed.urls.symbol_publish()
                )
            },
        ));
    }
    let name = nuspec.id.clone();
    let shown = format!("{name} {}", version.normalized());
    let file_name = package_file_name(&name, &version, symbols);
    let mut release = Release {
        name: name.clone(),
        version: nuspec.version.clone(),
        metadata: String::new(),
        files: vec![NewPackageFile {
            name: file_name,
            blob: stored.blob,
            digests: stored.digests,
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: Vec::new(),
    };
    let outcome = if symbols {
        packages
            .attach_files(&Rules, feed.repository, role, release)
            .await
    } else {
        packages
            .prepare_publish(&Rules, feed.repository, &name, role)
            .await?;
        release.metadata =
            serde_json::to_string(&nuspec).map_err(|e| Error::backend(e.to_string()))?;
        release.files[0].sidecar = Some(
            packages
                .store_bytes(Default::default(), Bytes::from(raw))
                .await?
                .blob,
        );
        packages
            .publish(&Rules, feed.repository, role, release)
            .await
    };
    outcome.map_err(|e| match e {
        Error::PackageConflict { .. } => Failure::new(
            StatusCode::CONFLICT,
            format!(
                "{shown}{} already exists in {}; push a new version",
                if symbols { " has symbols that" } else { "" },
                feed.repository
            ),
        ),
        Error::PackageUnknown { .. } if symbols => Failure::not_found(format!(
            "{shown} is not in {}: push the package before its symbols",
            feed.repository
        )),
        other => other.into(),
    })?;
    Ok(StatusCode::CREATED.into_response())
}

/// Changes a version's listing or deprecation, keeping the other (see [`VersionState`]), in one
/// update checked against the package's revision (retried when another change came first).
/// `action` is what the change counts as under protection rules: unlisting and relisting
/// change what installs, like a delete; deprecating is a publish.
async fn change_state(
    feed: &Feed<'_>,
    id: &str,
    version: &str,
    action: Action,
    role: Option<Role>,
    change: impl Fn(&mut VersionState),
) -> Result<(), Failure> {
    let packages = &feed.api.packages;
    let missing = || Failure::not_found(format!("{id} {version} is not in {}", feed.repository));
    packages
        .check_protection(&Rules, feed.repository, id, action, role)
        .await?;
    let key = Rules.version_key(version)?;
    for _ in 0..3 {
        let package = feed
            .api
            .packages
            .package_to_change(&Rules, feed.repository, id)
            .await?
            .ok_or_else(|| Failure::not_found(format!("{id} is not in {}", feed.repository)))?;
        let stored = package.version(&key).ok_or_else(missing)?;
        let mut state = VersionState::from_status(&stored.status);
        change(&mut state);
        let status = state.to_status();
        if status == stored.status {
            return Ok(());
        }
        let update = PackageUpdate {
            repository: feed.repository.to_owned(),
            name: package.name.clone(),
            expected_revision: Some(package.revision.clone()),
            statuses: vec![(key.clone(), status)],
            ..PackageUpdate::default()
        };
        match packages.update(&Rules, role, &update).await {
            Err(Error::PackageConflict { .. }) => continue,
            other => return Ok(other?),
        }
    }
    Err(Failure::new(
        StatusCode::CONFLICT,
        format!("{id} {version} kept changing; try again"),
    ))
}

/// A stored package, or `404` naming it.
async fn find_package(feed: &Feed<'_>, id: &str) -> Result<Package, Failure> {
    feed.api
        .packages
        .package(&Rules, feed.repository, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("{id} is not in {}", feed.repository)))
}

/// A stored version as the documents show it; `None` (logged) for one whose document does not
/// read, which only a fault leaves.
fn entry(version: &PackageVersion) -> Option<Entry> {
    let nuspec: Nuspec = match serde_json::from_str(&version.metadata) {
        Ok(nuspec) => nuspec,
        Err(e) => {
            tracing::warn!(version = %version.version, error = %e, "a NuGet version's document does not read");
            return None;
        }
    };
    let state = VersionState::from_status(&version.status);
    Some(Entry {
        version: NuGetVersion::parse(&nuspec.version)
            .or_else(|_| NuGetVersion::parse(&version.version))
            .ok()?,
        nuspec,
        listed: state.listed,
        published_ms: version.created_at.0,
        deprecation: state.deprecation,
        package: version
            .files
            .iter()
            .find(|f| f.name.ends_with(".nupkg"))
            .and_then(|f| Some((f.digests.sha512.clone()?, f.blob.size))),
    })
}

/// Every version of a package as the documents show it, lowest first (the service's order).
fn entries(package: &Package) -> Vec<Entry> {
    package.versions.iter().filter_map(entry).collect()
}

async fn flat_versions(feed: &Feed<'_>, id: &str, head: bool) -> Result<Response, Failure> {
    let revision = feed
        .api
        .packages
        .package_revision(&Rules, feed.repository, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("{id} is not in {}", feed.repository)))?;
    let key = format!("{}\0{}\0flat", feed.repository, nuget::lower_id(id));
    let body = feed
        .api
        .cache
        .get_or_render(key, revision, async {
            let package = find_package(feed, id).await?;
            let versions: Vec<NuGetVersion> =
                entries(&package).into_iter().map(|e| e.version).collect();
            Ok::<_, Failure>(Bytes::from(documents::flat_versions(&versions).to_string()))
        })
        .await?;
    json_response(body, head)
}

/// `<id>.<version>.nupkg`, `<id>.<version>.snupkg` or `<id>.nuspec` of a version.
async fn content(
    feed: &Feed<'_>,
    id: &str,
    version: &str,
    file: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    let parsed = version_of(version)?;
    let file = file.to_ascii_lowercase();
    let (stored_name, nuspec) = if file == format!("{}.nuspec", nuget::lower_id(id)) {
        (package_file_name(id, &parsed, false), true)
    } else if file == package_file_name(id, &parsed, false)
        || file == package_file_name(id, &parsed, true)
    {
        (file.clone(), false)
    } else {
        return Err(Failure::not_found(format!(
            "{file} is not a file of {id} {version}"
        )));
    };
    // A proxy keeps the package only (its nuspec is inside): nothing is fetched for a nuspec.
    if nuspec
        && feed
            .api
            .packages
            .repository(feed.repository)
            .await?
            .is_some_and(|r| r.kind == registry_core::RepositoryKind::Proxy)
    {
        return Err(Failure::not_found(format!(
            "{file}: a proxy repository serves the package, whose nuspec is inside it"
        )));
    }
    let (_, found) = feed
        .api
        .packages
        .file(&Rules, feed.repository, id, Some(version), &stored_name)
        .await?
        .ok_or_else(|| Failure::not_found(format!("{file} is not in {}", feed.repository)))?;
    let (blob, content_type) = if nuspec {
        let blob = found
            .sidecar
            .clone()
            .ok_or_else(|| Failure::not_found(format!("{file} is not stored")))?;
        (blob, "application/xml")
    } else {
        (found.blob.clone(), "application/octet-stream")
    };
    Ok(stored_file_response(
        &feed.api.packages,
        &Rules,
        feed.repository,
        &blob,
        (headers, content_type, head),
    )
    .await?)
}

/// Which registration document is asked for.
enum Document {
    Index,
    Page((NuGetVersion, NuGetVersion)),
    Leaf(NuGetVersion),
}

async fn registration(
    feed: &Feed<'_>,
    hive: Hive,
    id: &str,
    document: Document,
    head: bool,
) -> Result<Response, Failure> {
    let missing = || Failure::not_found(format!("{id} is not in {}", feed.repository));
    let revision = feed
        .api
        .packages
        .package_revision(&Rules, feed.repository, id)
        .await?
        .ok_or_else(missing)?;
    let which = match &document {
        Document::Index => "index".to_owned(),
        Document::Page((lower, upper)) => {
            format!(
                "page {} {}",
                lower.lower_normalized(),
                upper.lower_normalized()
            )
        }
        Document::Leaf(version) => format!("leaf {}", version.lower_normalized()),
    };
    let key = format!(
        "{}\0{}\0{}\0{which}\0{}",
        feed.repository,
        nuget::lower_id(id),
        hive.segment(),
        feed.base
    );
    if let Some(cached) = feed.api.cache.get(&key, &revision) {
        return json_response(cached, head);
    }
    let package = find_package(feed, id).await?;
    let shown: Vec<Entry> = entries(&package)
        .into_iter()
        .filter(|e| hive.shows(&e.version))
        .collect();
    let id = &package.display_name;
    let rendered: Value = match document {
        Document::Index if shown.is_empty() => return Err(missing()),
        Document::Index => documents::registration_index(&feed.urls, hive, id, &shown),
        Document::Page((lower, upper)) => {
            documents::registration_page(&feed.urls, hive, id, &shown, &lower, &upper)
                .ok_or_else(|| Failure::not_found("no such registration page"))?
        }
        Document::Leaf(version) => {
            let entry = shown
                .iter()
                .find(|e| e.version == version)
                .ok_or_else(|| Failure::not_found(format!("{id} {version} not found")))?;
            documents::registration_leaf(&feed.urls, hive, id, entry)
        }
    };
    let rendered = Bytes::from(rendered.to_string());
    feed.api
        .cache
        .put(key, package.revision.clone(), rendered.clone());
    json_response(rendered, head)
}

/// What a search asks for.
struct Query {
    /// Lowercase text the id must contain (empty: any).
    contains: String,
    /// An exact id (`packageid:`), lowercase.
    exact: Option<String>,
    skip: usize,
    take: usize,
    prerelease: bool,
    hive: Hive,
    /// A package type the package must have (`Dependency` when its nuspec names none).
    package_type: Option<String>,
}

impl Query {
    fn parse(params: &BTreeMap<String, String>) -> Result<Query, Failure> {
        let number = |key: &str, default: usize| -> Result<usize, Failure> {
            match params.get(key).map(|v| v.trim()) {
                None | Some("") => Ok(default),
                // Past usize, a count is as large as it can be (then capped).
                Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(v.parse().unwrap_or(usize::MAX))
                }
                Some(v) => Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("{key}={v:?} is not a count"),
                )),
            }
        };
        let flag = |key: &str| -> Result<bool, Failure> {
            match params.get(key).map(|v| v.trim().to_ascii_lowercase()) {
                None => Ok(false),
                Some(v) if v.is_empty() || v == "false" => Ok(false),
                Some(v) if v == "true" => Ok(true),
                Some(v) => Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("{key}={v:?} is not true or false"),
                )),
            }
        };
        // No `q` lists every package, as NuGet's own search does.
        let text = params
            .get("q")
            .map(|q| q.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let (contains, exact) = match text.split_once(':') {
            Some(("packageid", id)) => (String::new(), Some(id.trim().to_owned())),
            Some(("id", id)) => (id.trim().to_owned(), None),
            _ => (text, None),
        };
        let hive = match params.get("semVerLevel").map(|v| v.trim()) {
            Some(level) if level.starts_with('2') => Hive::SemVer2,
            _ => Hive::SemVer1,
        };
        Ok(Query {
            contains,
            exact,
            skip: number("skip", 0)?.min(100_000),
            take: number("take", 20)?.min(MAX_TAKE),
            prerelease: flag("prerelease")?,
            hive,
            package_type: params
                .get("packageType")
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty()),
        })
    }

    /// The versions of a package the query admits: listed, in the hive, released unless
    /// prereleases are asked for.
    fn admitted(&self, package: &Package) -> Vec<Entry> {
        let typed = |e: &Entry| match &self.package_type {
            None => true,
            Some(wanted) if e.nuspec.package_types.is_empty() => wanted == "dependency",
            Some(wanted) => e
                .nuspec
                .package_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(wanted)),
        };
        entries(package)
            .into_iter()
            .filter(|e| {
                e.listed
                    && self.hive.shows(&e.version)
                    && (self.prerelease || !e.version.is_prerelease())
                    && typed(e)
            })
            .collect()
    }
}

async fn search(
    feed: &Feed<'_>,
    params: &BTreeMap<String, String>,
    head: bool,
) -> Result<Response, Failure> {
    let query = Query::parse(params)?;
    let packages = &feed.api.packages;
    // Answers are rendered once per revision of the repository (read from the store, so exact
    // on every instance).
    let revision = packages
        .repository_revision(&Rules, feed.repository)
        .await?
        .map(|r| r.to_string());
    let key = format!(
        "{}\0search\0{}\0{:?}\0{}\0{}\0{}\0{:?}\0{:?}\0{}",
        feed.repository,
        query.contains,
        query.exact,
        query.skip,
        query.take,
        query.prerelease,
        query.hive,
        query.package_type,
        feed.base
    );
    if let Some(revision) = &revision
        && let Some(cached) = feed.api.cache.get(&key, revision)
    {
        return json_response(cached, head);
    }
    // Packages are loaded (to filter their versions) only until the asked window is full;
    // past it, the remaining packages whose id matches are counted by name, so the total is
    // exact up to the window and an upper bound beyond, and a query costs one listing walk plus
    // at most `skip + take` loads of packages that match.
    let window = query.skip.saturating_add(query.take);
    let mut hits = Vec::new();
    let mut total = 0usize;
    let consider = |package: Option<Package>, hits: &mut Vec<Hit>, total: &mut usize| {
        let Some(package) = package else { return };
        let entries = query.admitted(&package);
        if entries.is_empty() {
            return;
        }
        if (query.skip..window).contains(total) {
            hits.push(Hit { entries });
        }
        *total += 1;
    };
    match &query.exact {
        Some(id) => consider(
            packages.package(&Rules, feed.repository, id).await?,
            &mut hits,
            &mut total,
        ),
        None => {
            let contains = (!query.contains.is_empty()).then_some(query.contains.as_str());
            let mut page = Page::first(500);
            let mut counted = 0usize;
            loop {
                let batch = packages
                    .list_packages(&Rules, feed.repository, contains, &page)
                    .await?;
                let full = batch.len() == page.limit;
                let last = batch.last().map(|p| p.name.clone());
                for summary in batch {
                    if total < window {
                        let package = packages
                            .package(&Rules, feed.repository, &summary.name)
                            .await?;
                        consider(package, &mut hits, &mut total);
                    } else {
                        counted += 1;
                    }
                }
                match (full, last) {
                    (true, Some(last)) => page = Page::after(last, 500),
                    _ => break,
                }
            }
            total += counted;
        }
    }
    let rendered =
        Bytes::from(documents::search_results(&feed.urls, query.hive, total, &hits).to_string());
    if let Some(revision) = revision {
        feed.api.cache.put(key, revision, rendered.clone());
    }
    json_response(rendered, head)
}
