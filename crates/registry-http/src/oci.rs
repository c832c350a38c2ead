//! The OCI distribution API (`/v2/`) as an axum router.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::StreamExt;
use registry_core::manifest::OCI_INDEX;
use registry_core::{
    Action, Actor, ByteStream, Credentials, Digest, Error, NamePattern, OciRegistry, Reference,
    RepositoryName, Tag, TagDetail, TagMarker, TagOrder, TagQuery, Timestamp, UploadId, UsageScope,
};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Auth, AuthMode, Caller, Scope};
use crate::error::ApiError;
use crate::path::{Route, parse_v2_path};
use crate::transfer::{BufferBudget, body_stream, declared_length, file_response, requested_range};

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

type ApiResult = Result<Response, ApiError>;

/// The router serving `/v2/` over an [`OciRegistry`], open to every caller (the example server only
/// allows this on loopback addresses).
///
/// ```
/// use std::sync::Arc;
/// use registry_core::OciRegistry;
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let registry = OciRegistry::new(
///     Arc::new(MemoryBlobStore::new()),
///     Arc::new(MemoryMetadataStore::new()),
/// );
/// let app: axum::Router = registry_http::oci::router(registry);
/// ```
pub fn router(registry: OciRegistry) -> Router {
    build(registry, None)
}

/// The router serving `/v2/` with authentication; in token mode it also serves `/token`.
pub fn router_with_auth(registry: OciRegistry, auth: Auth) -> Router {
    build(registry, Some(auth))
}

/// What the router shares between requests.
#[derive(Debug)]
pub(crate) struct Oci {
    pub(crate) registry: OciRegistry,
    pub(crate) auth: Option<Auth>,
    /// Bounds the manifest bodies held in memory at once.
    pub(crate) buffered: BufferBudget,
}

impl Oci {
    /// Whether the caller may act on a repository.
    fn may(&self, caller: &Caller, repository: &RepositoryName, action: Action) -> bool {
        match &self.auth {
            None => true,
            Some(auth) => caller.may(&*auth.authorizer, repository, action),
        }
    }

    /// Who the caller is to the tag rules of a repository.
    fn actor(&self, caller: &Caller, repository: &RepositoryName) -> Actor {
        match &self.auth {
            None => Actor::trusted(),
            Some(auth) => caller.actor(&*auth.authorizer, repository),
        }
    }

    /// Whether the caller may read every repository (and so mount any known blob).
    fn unrestricted(&self, caller: &Caller) -> bool {
        match &self.auth {
            None => true,
            Some(auth) => caller.is_admin(&*auth.authorizer),
        }
    }
}

fn build(registry: OciRegistry, auth: Option<Auth>) -> Router {
    let token = matches!(auth.as_ref().map(|a| &a.mode), Some(AuthMode::Token(_)));
    let buffered = BufferBudget::new(registry.limits().max_buffered_bytes);
    let state = Arc::new(Oci {
        registry,
        auth,
        buffered,
    });
    let mut router = Router::new()
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*path}", axum::routing::any(dispatch));
    if token {
        router = router.route("/token", axum::routing::get(issue_token));
    }
    router = router
        .merge(crate::admin::routes())
        .route(
            "/api/v1/repositories/{*path}",
            axum::routing::get(repository_extension),
        )
        .route(
            "/api/v1/namespaces/{*path}",
            axum::routing::get(namespace_usage),
        );
    router.with_state(state)
}

async fn dispatch(State(oci): State<Arc<Oci>>, request: Request) -> Response {
    let path = request.uri().path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest).to_owned();
    let result = match parse_v2_path(&rest) {
        None => Err(ApiError::NotFound),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(route)) => match authorize(
            &oci,
            &route,
            request.method(),
            (request.headers(), request.extensions()),
        )
        .await
        {
            Ok(caller) => handle(&oci, &caller, route, request).await,
            Err(refusal) => Ok(refusal),
        },
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

/// What a request needs to be allowed.
enum Need {
    /// Any caller the registry knows (the `/v2/` check).
    Known,
    /// Listing the catalog.
    Catalog,
    /// An action on a repository.
    Repository(RepositoryName, Action),
}

fn need(route: &Route, method: &Method) -> Need {
    let action = match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    match route {
        Route::Base => Need::Known,
        Route::Catalog => Need::Catalog,
        Route::Upload { name, .. } | Route::UploadStart { name } => {
            // Every upload request, status checks and cancels included, is part of a push.
            Need::Repository(name.clone(), Action::Push)
        }
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::Referrers { name, .. } => Need::Repository(name.clone(), action),
    }
}

/// Authenticates the caller and checks the route's need; on refusal, the response to send.
async fn authorize(
    oci: &Oci,
    route: &Route,
    method: &Method,
    (headers, extensions): (&HeaderMap, &axum::http::Extensions),
) -> Result<Caller, Response> {
    let Some(auth) = &oci.auth else {
        return Ok(Caller::Open);
    };
    let need = need(route, method);
    let base = crate::external_url::base_url(extensions, headers);
    let scope = match &need {
        Need::Repository(name, Action::Push) => Some(format!("repository:{name}:pull,push")),
        Need::Repository(name, action) => Some(format!("repository:{name}:{}", action.as_str())),
        Need::Catalog => Some("registry:catalog:*".to_owned()),
        Need::Known => None,
    };
    let unauthorized = |insufficient: bool| {
        let mut response = ApiError::Core(Error::Unauthorized).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            auth::challenge(&auth.mode, &base, scope.as_deref(), insufficient),
        );
        response
    };
    let caller = match (auth::credentials(headers), &auth.mode) {
        (None, _) => return Err(unauthorized(false)),
        (Some(Credentials::Bearer(token)), AuthMode::Token(issuer)) => {
            match issuer.verify(&token) {
                Some(access) => Caller::Token(access),
                None => return Err(unauthorized(false)),
            }
        }
        (Some(Credentials::Bearer(_)), AuthMode::Basic { .. }) => return Err(unauthorized(false)),
        // Token mode sends anonymous callers to the token endpoint.
        (Some(Credentials::None), AuthMode::Token(_)) => return Err(unauthorized(false)),
        (Some(credentials), _) => match auth.authenticator.authenticate(&credentials).await {
            Ok(Some(principal)) => Caller::Principal(principal),
            Ok(None) => return Err(unauthorized(false)),
            Err(e) => return Err(ApiError::Core(e).into_response()),
        },
    };
    let allowed = match &need {
        // The version check challenges callers without credentials even when anonymous access
        // is granted somewhere: clients decide from this answer whether to send credentials at
        // all.
        Need::Known => caller.is_identified(),
        Need::Catalog => caller.may_list_catalog(&*auth.authorizer),
        Need::Repository(name, action) => caller.may(&*auth.authorizer, name, *action),
    };
    if allowed {
        Ok(caller)
    } else if matches!(caller, Caller::Token(_)) {
        Err(unauthorized(true))
    } else if caller.is_identified() {
        let what = match &need {
            Need::Repository(name, action) => format!("{} on {name}", action.as_str()),
            Need::Catalog => "listing the catalog".to_owned(),
            Need::Known => "access".to_owned(),
        };
        Err(ApiError::Core(Error::Denied {
            reason: format!("{what} is not granted to this user"),
        })
        .into_response())
    } else {
        Err(unauthorized(false))
    }
}

/// Authenticates the caller as the version check does (any caller the registry knows), for the
/// API extensions that are not about one repository; on refusal, the response to send (its
/// token realm built from `Host` as `http://`, since these routes are not reached by OCI
/// clients; configure `external_url` for another).
pub(crate) async fn authorize_known(
    oci: &Oci,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    authorize(
        oci,
        &Route::Base,
        method,
        (headers, &axum::http::Extensions::new()),
    )
    .await
    .map_err(|response| ApiError::Response(Box::new(response)))
}

#[derive(Default, Deserialize)]
struct TagDetailsQuery {
    contains: Option<String>,
    sort: Option<String>,
    n: Option<usize>,
    after: Option<String>,
    before: Option<String>,
}

/// A tag listing's order as clients name it: `name`, `-name`, `published` or `-published`
/// (`-`: descending).
pub(crate) fn tag_sort(text: &str) -> Option<(TagOrder, bool)> {
    match text {
        "name" => Some((TagOrder::Name, false)),
        "-name" => Some((TagOrder::Name, true)),
        "published" => Some((TagOrder::Published, false)),
        "-published" => Some((TagOrder::Published, true)),
        _ => None,
    }
}

/// The markers of the pages beside one of a detailed tag listing: `next` after its last tag,
/// `previous` before its first. Going forward, a full page may have a next one and always has
/// a previous one; going back, it always has a next one, and a previous one while it is full.
pub(crate) fn tag_page_markers(
    details: &[TagDetail],
    query: &TagQuery,
) -> (Option<String>, Option<String>) {
    let full = details.len() == query.limit;
    let forward = query.after.is_some();
    let backward = !forward && query.before.is_some();
    let next = (full || backward)
        .then(|| details.last())
        .flatten()
        .map(|d| encode_marker(&d.marker()));
    let previous = (forward || (backward && full))
        .then(|| details.first())
        .flatten()
        .map(|d| encode_marker(&d.marker()));
    (next, previous)
}

/// A page marker as clients see it: `<publish time in ms>.<tag>`.
pub(crate) fn encode_marker(marker: &TagMarker) -> String {
    format!("{}.{}", marker.published_at.0, marker.name)
}

fn decode_marker(text: &str) -> Result<TagMarker, ApiError> {
    parse_marker(text).ok_or_else(|| ApiError::BadRequest(format!("{text:?} is not a page marker")))
}

/// Reads a page marker written by [`encode_marker`].
pub(crate) fn parse_marker(text: &str) -> Option<TagMarker> {
    let (time, name) = text.split_once('.')?;
    Some(TagMarker {
        published_at: Timestamp(time.parse().ok()?),
        name: name.to_owned(),
    })
}

/// `GET /api/v1/repositories/<name>/{tags,usage}`: extensions on one repository, with the
/// access of a pull.
async fn repository_extension(State(oci): State<Arc<Oci>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/api/v1/repositories/") else {
        return ApiError::NotFound.into_response();
    };
    let (name, extension) = match rest.rsplit_once('/') {
        Some((name, extension @ ("tags" | "usage"))) => (name, extension),
        _ => return ApiError::NotFound.into_response(),
    };
    let name = match RepositoryName::parse(name) {
        Ok(name) => name,
        Err(source) => {
            return ApiError::Core(Error::NameInvalid {
                value: name.to_owned(),
                source,
            })
            .into_response();
        }
    };
    let route = Route::Tags { name: name.clone() };
    if let Err(refusal) = authorize(
        &oci,
        &route,
        request.method(),
        (request.headers(), request.extensions()),
    )
    .await
    {
        return refusal;
    }
    if extension == "usage" {
        if !oci
            .registry
            .metadata()
            .repository_exists(&name)
            .await
            .unwrap_or(false)
        {
            return ApiError::Core(Error::NameUnknown {
                name: name.to_string(),
            })
            .into_response();
        }
        return usage_response(&oci, UsageScope::Repository(name)).await;
    }
    tag_details(&oci, name, request.uri().query().map(str::to_owned)).await
}

async fn usage_response(oci: &Oci, scope: UsageScope) -> Response {
    match oci.registry.metadata().storage_usage(&scope).await {
        Ok(usage) => json_response(
            StatusCode::OK,
            json!({
                "repositories": usage.repositories,
                "manifests": usage.manifests,
                "manifestBytes": usage.manifest_bytes,
                "blobs": usage.blobs,
                "blobBytes": usage.blob_bytes,
                "size": usage.manifest_bytes + usage.blob_bytes,
            })
            .to_string(),
        ),
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// `GET /api/v1/namespaces/<prefix>/usage`: the storage of every repository in a namespace,
/// shared blobs counted once. Needs a grant covering the whole namespace (or an open registry).
async fn namespace_usage(State(oci): State<Arc<Oci>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(prefix) = path
        .strip_prefix("/api/v1/namespaces/")
        .and_then(|rest| rest.strip_suffix("/usage"))
    else {
        return ApiError::NotFound.into_response();
    };
    let prefix = match RepositoryName::parse(prefix) {
        Ok(prefix) => prefix,
        Err(source) => {
            return ApiError::Core(Error::NameInvalid {
                value: prefix.to_owned(),
                source,
            })
            .into_response();
        }
    };
    // Authenticate as for the version check (any known caller), then require a grant that
    // covers all of the namespace: reading one repository is not reading the namespace.
    let caller = match authorize(
        &oci,
        &Route::Base,
        request.method(),
        (request.headers(), request.extensions()),
    )
    .await
    {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let metadata = oci.registry.metadata();
    match may_read_namespace_usage(oci.auth.as_ref(), &caller, &**metadata, &prefix).await {
        Ok(true) => usage_response(&oci, UsageScope::Namespace(prefix)).await,
        Ok(false) => ApiError::Core(Error::Denied {
            reason: format!(
                "reading every repository under {prefix}, and {prefix} itself, is not granted"
            ),
        })
        .into_response(),
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// Whether the caller may read a namespace's storage: a grant covering all of `<prefix>/*`,
/// and pull on the repository named `<prefix>` itself when there is one (the usage counts it);
/// anyone when no authentication is configured. Reading one repository is not reading the
/// namespace.
pub(crate) async fn may_read_namespace_usage(
    auth: Option<&Auth>,
    caller: &Caller,
    metadata: &dyn registry_core::MetadataStore,
    prefix: &RepositoryName,
) -> Result<bool, Error> {
    let Some(auth) = auth else {
        return Ok(true);
    };
    let covered = NamePattern::parse(&format!("{prefix}/*"))
        .is_ok_and(|pattern| caller.role_over(&*auth.authorizer, &pattern).is_some());
    if !covered {
        return Ok(false);
    }
    Ok(caller.may(&*auth.authorizer, prefix, Action::Pull)
        || !metadata.repository_exists(prefix).await?)
}

/// `GET /api/v1/repositories/<name>/tags`: tags with digest, sizes and times; `contains`
/// filters by substring; `sort` is `name`, `-name`, `published` or `-published`; `n` limits;
/// `after`/`before` take the `next`/`previous` markers of an earlier answer.
async fn tag_details(oci: &Oci, name: RepositoryName, query_string: Option<String>) -> Response {
    let result = async {
        let q: TagDetailsQuery = query(query_string.as_deref())?;
        let sort = q.sort.as_deref().unwrap_or("name");
        let (order, descending) = tag_sort(sort).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "sort {sort:?}: use name, -name, published or -published"
            ))
        })?;
        let limit = q.n.unwrap_or(100).min(oci.registry.limits().max_page_size);
        let tag_query = TagQuery {
            contains: q.contains.filter(|c| !c.is_empty()),
            order,
            descending,
            after: q.after.as_deref().map(decode_marker).transpose()?,
            before: q.before.as_deref().map(decode_marker).transpose()?,
            limit,
        };
        let details = oci
            .registry
            .metadata()
            .tag_details(&name, &tag_query)
            .await?;
        let tags: Vec<serde_json::Value> = details
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "digest": d.digest,
                    "mediaType": d.media_type,
                    "size": d.size,
                    "manifestSize": d.manifest_size,
                    "createdAt": d.created_at.0,
                    "publishedAt": d.published_at.0,
                })
            })
            .collect();
        let mut body = json!({ "name": name, "tags": tags });
        let (next, previous) = tag_page_markers(&details, &tag_query);
        if let Some(next) = next {
            body["next"] = json!(next);
        }
        if let Some(previous) = previous {
            body["previous"] = json!(previous);
        }
        Ok::<_, ApiError>(json_response(StatusCode::OK, body.to_string()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /token`: Docker token auth. Authenticates the caller (Basic, or anonymous), and issues a
/// token for the requested scopes cut down to what the caller may do.
async fn issue_token(State(oci): State<Arc<Oci>>, request: Request) -> Response {
    let Some(auth) = &oci.auth else {
        return ApiError::NotFound.into_response();
    };
    let AuthMode::Token(issuer) = &auth.mode else {
        return ApiError::NotFound.into_response();
    };
    let pairs: Vec<(String, String)> = match request.uri().query() {
        Some(q) => match serde_urlencoded_from(q) {
            Ok(pairs) => pairs,
            Err(e) => return e.into_response(),
        },
        None => Vec::new(),
    };
    let scopes: Vec<Scope> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
        .collect();
    let credentials = match auth::credentials(request.headers()) {
        Some(Credentials::Bearer(_)) | None => {
            return ApiError::Core(Error::Unauthorized).into_response();
        }
        Some(credentials) => credentials,
    };
    let principal = match auth.authenticator.authenticate(&credentials).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            let mut response = ApiError::Core(Error::Unauthorized).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"registry token\""),
            );
            return response;
        }
        Err(e) => return ApiError::Core(e).into_response(),
    };
    match issuer.issue(&principal, &*auth.authorizer, &scopes) {
        Ok((token, _)) => {
            let body = json!({
                "token": token,
                "access_token": token,
                "expires_in": issuer.ttl.as_secs(),
            });
            json_response(StatusCode::OK, body.to_string())
        }
        Err(e) => ApiError::Core(e).into_response(),
    }
}

async fn handle(oci: &Oci, caller: &Caller, route: Route, request: Request) -> ApiResult {
    let registry = &oci.registry;
    let method = request.method().clone();
    let query_string = request.uri().query().map(str::to_owned);
    let query_string = query_string.as_deref();
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, "{}".into())),
        (Route::Catalog, Method::GET) => catalog(registry, query_string).await,
        (Route::Tags { name }, Method::GET) => tags(registry, &name, query_string).await,
        (Route::Manifest { name, reference }, Method::GET) => {
            get_manifest(registry, &name, &reference, false).await
        }
        (Route::Manifest { name, reference }, Method::HEAD) => {
            get_manifest(registry, &name, &reference, true).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            let actor = oci.actor(caller, &name);
            put_manifest(oci, &name, &reference, request, &actor).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            let reference = parse_reference(&reference)?;
            let actor = oci.actor(caller, &name);
            registry.delete_manifest(&name, &reference, &actor).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Blob { name, digest }, Method::GET) => {
            get_blob(registry, &name, &digest, request.headers(), false).await
        }
        (Route::Blob { name, digest }, Method::HEAD) => {
            get_blob(registry, &name, &digest, request.headers(), true).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => {
            registry.delete_blob(&name, &parse_digest(&digest)?).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::UploadStart { name }, Method::POST) => {
            start_upload(oci, caller, &name, request).await
        }
        (Route::Upload { name, id }, Method::GET) => {
            let id = UploadId::parse(&id)?;
            let size = registry.upload_status(&name, &id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &name, &id, size))
        }
        (Route::Upload { name, id }, Method::PATCH) => {
            let id = UploadId::parse(&id)?;
            let (offset, body) = chunk(request)?;
            let size = registry.append_upload(&name, &id, offset, body).await?;
            Ok(upload_response(StatusCode::ACCEPTED, &name, &id, size))
        }
        (Route::Upload { name, id }, Method::PUT) => {
            finish_upload(registry, &name, &id, request).await
        }
        (Route::Upload { name, id }, Method::DELETE) => {
            registry
                .cancel_upload(&name, &UploadId::parse(&id)?)
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Route::Referrers { name, digest }, Method::GET) => {
            referrers(registry, &name, &digest, query_string).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    Digest::parse(text).map_err(|source| Error::DigestInvalid { source }.into())
}

fn parse_reference(text: &str) -> Result<Reference, ApiError> {
    Reference::parse(text).map_err(|source| {
        match source {
            registry_core::NameError::Digest(source) => Error::DigestInvalid { source },
            source => Error::NameInvalid {
                value: text.to_owned(),
                source,
            },
        }
        .into()
    })
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn header_value(text: &str) -> HeaderValue {
    // Every value here is built from validated names, digests and numbers, all visible ASCII.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn query<T: for<'de> Deserialize<'de> + Default>(query: Option<&str>) -> Result<T, ApiError> {
    match query {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded_from(q),
    }
}

fn serde_urlencoded_from<T: for<'de> Deserialize<'de>>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::BadRequest("malformed query string".into()))?,
    )
    .map(|axum::extract::Query(value)| value)
    .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))
}

#[derive(Default, Deserialize)]
struct PageQuery {
    n: Option<usize>,
    last: Option<String>,
}

fn next_link(path: &str, n: Option<usize>, last: Option<&str>) -> Option<HeaderValue> {
    let last = last?;
    let n = match n {
        Some(n) => format!("n={n}&"),
        None => String::new(),
    };
    Some(header_value(&format!(
        "<{path}?{n}last={}>; rel=\"next\"",
        encode_query(last)
    )))
}

/// Percent-encodes the few characters a tag or repository name can hold that need it.
fn encode_query(text: &str) -> String {
    text.replace('%', "%25").replace('/', "%2F")
}

async fn catalog(registry: &OciRegistry, query_string: Option<&str>) -> ApiResult {
    let page: PageQuery = query(query_string)?;
    let (names, more) = registry.catalog(page.last, page.n).await?;
    let body = json!({ "repositories": names }).to_string();
    let mut response = json_response(StatusCode::OK, body);
    if more
        && let Some(link) = next_link(
            "/v2/_catalog",
            page.n,
            names.last().map(RepositoryName::as_str),
        )
    {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn tags(
    registry: &OciRegistry,
    name: &RepositoryName,
    query_string: Option<&str>,
) -> ApiResult {
    let page: PageQuery = query(query_string)?;
    let (tags, more) = registry.tags(name, page.last, page.n).await?;
    let body = json!({ "name": name, "tags": tags }).to_string();
    let mut response = json_response(StatusCode::OK, body);
    let path = format!("/v2/{name}/tags/list");
    if more && let Some(link) = next_link(&path, page.n, tags.last().map(|t| t.as_str())) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn get_manifest(
    registry: &OciRegistry,
    name: &RepositoryName,
    reference: &str,
    head: bool,
) -> ApiResult {
    let reference = parse_reference(reference)?;
    let manifest = registry.manifest(name, &reference).await?;
    let size = manifest.bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.bytes)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&manifest.media_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(CONTENT_DIGEST, header_value(manifest.digest.as_str()));
    headers.insert(
        header::ETAG,
        header_value(&format!("\"{}\"", manifest.digest)),
    );
    Ok(response)
}

async fn put_manifest(
    oci: &Oci,
    name: &RepositoryName,
    reference: &str,
    request: Request,
    actor: &Actor,
) -> ApiResult {
    let registry = &oci.registry;
    let reference = parse_reference(reference)?;
    let tags = query_tags(request.uri().query(), registry.limits().max_tags_per_push)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = registry.limits().manifest.max_size;
    let declared = declared_length(request.headers());
    let body = oci
        .buffered
        .read(request.into_body(), declared, limit, "manifest")
        .await
        .map_err(|e| match e {
            Error::SizeInvalid { size, .. } => {
                Error::from(registry_core::ManifestError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    limit,
                })
            }
            other => other,
        })?;
    let bytes = body.bytes.clone();
    let pushed = registry
        .put_manifest_with_tags(
            name,
            &reference,
            &tags,
            bytes,
            content_type.as_deref(),
            actor,
        )
        .await?;
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/manifests/{}", pushed.digest)),
    );
    headers.insert(CONTENT_DIGEST, header_value(pushed.digest.as_str()));
    if let Some(subject) = pushed.subject {
        headers.insert(OCI_SUBJECT, header_value(subject.as_str()));
    }
    for tag in tags {
        headers.append(OCI_TAG, header_value(tag.as_str()));
    }
    Ok(response)
}

/// The `?tag=` parameters of a manifest push (distribution spec 1.1), each once, in order;
/// each must be a valid tag ([`Error::NameInvalid`]), and there may be at most `limit`
/// ([`Error::SizeInvalid`], said as soon as the limit is passed).
fn query_tags(query_string: Option<&str>, limit: usize) -> Result<Vec<Tag>, ApiError> {
    let pairs: Vec<(String, String)> = match query_string {
        Some(q) => serde_urlencoded_from(q)?,
        None => return Ok(Vec::new()),
    };
    let mut seen = std::collections::HashSet::new();
    let mut tags: Vec<Tag> = Vec::new();
    for (_, value) in pairs.into_iter().filter(|(key, _)| key == "tag") {
        let tag = Tag::parse(&value).map_err(|source| Error::NameInvalid { value, source })?;
        if seen.insert(tag.clone()) {
            if tags.len() == limit {
                return Err(Error::SizeInvalid {
                    what: "tag list of a manifest push",
                    size: limit as u64 + 1,
                    limit: limit as u64,
                }
                .into());
            }
            tags.push(tag);
        }
    }
    Ok(tags)
}

async fn get_blob(
    registry: &OciRegistry,
    name: &RepositoryName,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let digest = parse_digest(digest)?;
    let record = registry.blob(name, &digest).await?;
    if head {
        let mut response = Response::new(Body::empty());
        let h = response.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(record.size));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(CONTENT_DIGEST, header_value(digest.as_str()));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(response);
    }
    if let Some(url) = registry.blob_redirect(name, &digest).await? {
        // The object store serves the bytes (and any range) itself.
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let h = response.headers_mut();
        h.insert(header::LOCATION, header_value(&url));
        h.insert(CONTENT_DIGEST, header_value(digest.as_str()));
        return Ok(response);
    }
    let range = requested_range(headers, record.size)?;
    let read = registry.read_blob(name, &digest, range).await?;
    let mut response = file_response(read, range.is_some(), "application/octet-stream", false);
    response
        .headers_mut()
        .insert(CONTENT_DIGEST, header_value(digest.as_str()));
    Ok(response)
}

#[derive(Default, Deserialize)]
struct UploadQuery {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
}

/// A body that must be exactly `expected` bytes long; it fails otherwise, so the store keeps
/// nothing of it.
fn exact_length(mut body: ByteStream, expected: u64) -> ByteStream {
    use std::task::Poll;
    let mut seen = 0u64;
    let mut finished = false;
    futures::stream::poll_fn(move |cx| {
        if finished {
            return Poll::Ready(None);
        }
        let item = match futures::ready!(body.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                seen += chunk.len() as u64;
                if seen > expected {
                    Err(format!(
                        "the body is longer than the {expected} bytes Content-Range announced"
                    ))
                } else {
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            None if seen == expected => return Poll::Ready(None),
            None => Err(format!(
                "Content-Range announced {expected} bytes, the body had {seen}"
            )),
        };
        finished = true;
        Poll::Ready(Some(
            item.map_err(|reason| Error::BlobUploadInvalid { reason }),
        ))
    })
    .boxed()
}

/// The offset and body of a chunk: `Content-Range: <start>-<end>` fixes both; without it the
/// chunk is streamed at the upload's current end.
fn chunk(request: Request) -> Result<(Option<u64>, ByteStream), ApiError> {
    let range = request
        .headers()
        .get(header::CONTENT_RANGE)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    ApiError::Core(Error::BlobUploadInvalid {
                        reason: format!("malformed Content-Range {v:?}; expected <start>-<end>"),
                    })
                })
        })
        .transpose()?;
    let body = body_stream(request.into_body());
    Ok(match range {
        Some((start, end)) => {
            // Client numbers: `0-18446744073709551615` must not wrap into a small length.
            let length =
                (end - start)
                    .checked_add(1)
                    .ok_or(ApiError::Core(Error::RangeNotSatisfiable {
                        start,
                        end,
                        size: 0,
                    }))?;
            (Some(start), exact_length(body, length))
        }
        None => (None, body),
    })
}

fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let text = text.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let text = text.split('/').next()?;
    let (start, end) = text.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some((start, end))
}

fn upload_response(
    status: StatusCode,
    name: &RepositoryName,
    id: &UploadId,
    size: u64,
) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/uploads/{id}")),
    );
    h.insert(
        header::RANGE,
        header_value(&format!("0-{}", size.saturating_sub(1))),
    );
    h.insert(UPLOAD_UUID, header_value(id.as_str()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

fn blob_created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/{digest}")),
    );
    h.insert(CONTENT_DIGEST, header_value(digest.as_str()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

async fn start_upload(
    oci: &Oci,
    caller: &Caller,
    name: &RepositoryName,
    request: Request,
) -> ApiResult {
    let registry = &oci.registry;
    let q: UploadQuery = query(request.uri().query())?;
    if let Some(mount) = &q.mount {
        let digest = parse_digest(mount)?;
        let from = q
            .from
            .as_deref()
            .map(|from| {
                RepositoryName::parse(from).map_err(|source| Error::NameInvalid {
                    value: from.to_owned(),
                    source,
                })
            })
            .transpose()?;
        // A mount must not reveal a blob the caller cannot read: from a named repository it
        // needs pull there; without one, only an unrestricted caller may mount.
        let readable = match &from {
            Some(from) => oci.may(caller, from, Action::Pull),
            None => oci.unrestricted(caller),
        };
        if readable
            && registry
                .mount_blob(name, &digest, from.as_ref())
                .await?
                .is_some()
        {
            return Ok(blob_created(name, &digest));
        }
    } else if let Some(digest) = &q.digest {
        let digest = parse_digest(digest)?;
        registry
            .put_blob(name, &digest, body_stream(request.into_body()))
            .await?;
        return Ok(blob_created(name, &digest));
    }
    let id = registry.start_upload(name).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

async fn finish_upload(
    registry: &OciRegistry,
    name: &RepositoryName,
    id: &str,
    request: Request,
) -> ApiResult {
    let id = UploadId::parse(id)?;
    let q: UploadQuery = query(request.uri().query())?;
    let digest = q
        .digest
        .as_deref()
        .ok_or_else(|| Error::BlobUploadInvalid {
            reason: "the final PUT needs ?digest=".into(),
        })
        .map_err(ApiError::Core)
        .and_then(parse_digest)?;
    let empty = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    let last_chunk = if empty { None } else { Some(chunk(request)?) };
    registry
        .finish_upload(name, &id, &digest, last_chunk)
        .await?;
    Ok(blob_created(name, &digest))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersQuery {
    artifact_type: Option<String>,
}

async fn referrers(
    registry: &OciRegistry,
    name: &RepositoryName,
    digest: &str,
    query_string: Option<&str>,
) -> ApiResult {
    let subject = parse_digest(digest)?;
    let q: ReferrersQuery = query(query_string)?;
    let artifact_type = q.artifact_type.filter(|t| !t.is_empty());
    let found = registry
        .referrers(name, &subject, artifact_type.as_deref())
        .await?;
    let manifests: Vec<serde_json::Value> = found
        .iter()
        .map(|r| {
            let mut d = json!({
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": r.size,
            });
            if let Some(t) = &r.artifact_type {
                d["artifactType"] = json!(t);
            }
            if !r.annotations.is_empty() {
                d["annotations"] = json!(r.annotations);
            }
            d
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut response = Response::new(Body::from(Bytes::from(body.to_string())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if artifact_type.is_some() {
        response
            .headers_mut()
            .insert(FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
    }
    Ok(response)
}
