//! The Terraform module registry protocol (`modules.v1`), for `terraform init`.
//!
//! | request | does |
//! |---|---|
//! | `GET /.well-known/terraform.json` | service discovery: `{"modules.v1": "/terraform/modules/v1/"}` |
//! | `GET /terraform/modules/v1/<namespace>/<name>/<system>/versions` | the module's versions |
//! | `GET …/<namespace>/<name>/<system>/<version>/download` | `204` with `X-Terraform-Get`: the archive's URL |
//! | `GET …/<namespace>/<name>/<system>/download` | `302` to the latest version's download |
//! | `PUT …/<namespace>/<name>/<system>/<version>/file` | uploads the module archive (`.tar.gz` or `.zip`), checked (201; 409 when the version exists) |
//! | `GET`, `HEAD …/<version>/module.tar.gz` (or `module.zip`) | the archive (`Range` supported) |
//! | `DELETE …/<namespace>/<name>/<system>/<version>` | deletes the version |
//!
//! The namespace is a package repository. Reads need pull on it, uploads push, deletes delete;
//! terraform sends the token of its CLI configuration's `credentials` block as `Bearer` (an
//! access token here; Basic works for other clients). Terraform fetches the archive with
//! another client that sends no credentials, so when authentication is configured the
//! `X-Terraform-Get` URL carries a short-lived token bound to that one file, signed by the
//! [`DownloadSigner`]. Errors are `{"errors": ["…"]}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use registry_core::{
    Action, Digest, Error, NewPackageFile, Package, Packages, Release, Role, VersionStatus,
};
use registry_formats::terraform::{self, ArchiveKind, ModuleArchive, Terraform as Rules};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::cache::RenderCache;
use crate::external_url::base_url;
use crate::package_error::ErrorList;
use crate::transfer::{body_stream, document_response, stored_file_response};

/// A failure as terraform reads it: `{"errors": ["…"]}`.
pub(crate) type Failure = crate::package_error::Failure<ErrorList>;

/// Where the module API is served (what discovery names).
const MODULES_BASE: &str = "/terraform/modules/v1/";

/// Where the provider API is served (what discovery names).
pub(crate) const PROVIDERS_BASE: &str = "/terraform/providers/v1/";

/// Signs and checks the archive URLs handed to terraform: an HS256 token naming one file and
/// expiring after the signer's lifetime. Instances serving the same registry need the same
/// secret ([`DownloadSigner::new`]); [`DownloadSigner::random`] suits one instance.
#[derive(Clone)]
pub struct DownloadSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for DownloadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct DownloadClaims {
    /// The file and its content: `<repository>/<package>/<version>/<file name>@<digest>`.
    sub: String,
    exp: u64,
}

impl DownloadSigner {
    /// A signer with a secret of its own (at least 32 bytes are advised) and a URL lifetime.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        DownloadSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A signer with a random secret (256 bits) and URLs valid for five minutes: enough for one
    /// instance, whose URLs no other instance accepts.
    pub fn random() -> Self {
        let secret = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .iter()
            .flat_map(|u| *u.as_bytes())
            .collect::<Vec<u8>>();
        DownloadSigner::new(&secret, Duration::from_secs(300))
    }

    /// A token for one stored file: its name and its content, so a file replaced under the same
    /// name is not what the token opens.
    pub(crate) fn sign(&self, file: &str, digest: &Digest) -> Result<String, Error> {
        // A clock before 1970 would sign tokens that expired long ago: refused, never open.
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs();
        let claims = DownloadClaims {
            sub: format!("{file}@{digest}"),
            exp,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::backend)
    }

    /// Whether `token` opens the stored file `file` with content `digest`, now.
    pub(crate) fn allows(&self, token: &str, file: &str, digest: &Digest) -> bool {
        let mut validation = Validation::new(Algorithm::HS256);
        // The issuer is this registry: no clock skew to allow for beyond the instances'.
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        jsonwebtoken::decode::<DownloadClaims>(token, &self.decoding, &validation)
            .is_ok_and(|data| data.claims.sub == format!("{file}@{digest}"))
    }
}

/// The router serving discovery and `/terraform/modules/v1/`, with authentication when `auth`
/// is given and archive URLs signed by `signer`.
///
/// ```
/// use std::sync::Arc;
/// use registry_core::Packages;
/// use registry_http::terraform::{self, DownloadSigner};
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
/// let app: axum::Router = terraform::router(packages, None, DownloadSigner::random());
/// ```
pub fn router(packages: Packages, auth: Option<Auth>, signer: DownloadSigner) -> Router {
    let body_limit = usize::try_from(packages.limits().max_file_size).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/.well-known/terraform.json",
            axum::routing::get(|| async {
                let mut response = terraform::discovery(MODULES_BASE, PROVIDERS_BASE)
                    .to_string()
                    .into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }),
        )
        .route(
            "/terraform/modules/v1/{*path}",
            axum::routing::any(dispatch),
        )
        .route(
            "/terraform/providers/v1/{*path}",
            axum::routing::any(crate::terraform_providers::dispatch),
        )
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(Arc::new(TerraformApi {
            packages,
            auth,
            signer,
            cache: RenderCache::new(1024, 64 << 20),
        }))
}

#[derive(Debug)]
pub(crate) struct TerraformApi {
    pub(crate) packages: Packages,
    pub(crate) auth: Option<Auth>,
    pub(crate) signer: DownloadSigner,
    /// Rendered versions lists by package revision.
    pub(crate) cache: RenderCache,
}

impl TerraformApi {
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        repository: &str,
        action: Action,
    ) -> Result<Option<Role>, Failure> {
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

/// A module version's address in a request.
struct Module<'a> {
    repository: &'a str,
    name: &'a str,
    system: &'a str,
}

impl Module<'_> {
    fn package(&self) -> String {
        terraform::package_name(self.name, self.system)
    }

    /// `404` naming the module (and a version).
    fn missing(&self, version: Option<&str>) -> Failure {
        Failure::not_found(format!(
            "module {}/{}/{}{} not found",
            self.repository,
            self.name,
            self.system,
            version.map(|v| format!(" {v}")).unwrap_or_default()
        ))
    }

    fn path(&self) -> String {
        format!(
            "{MODULES_BASE}{}/{}/{}",
            self.repository, self.name, self.system
        )
    }
}

async fn dispatch(State(api): State<Arc<TerraformApi>>, request: Request) -> Response {
    let result = async {
        let path = request.uri().path().to_owned();
        // The route is `/terraform/modules/v1/{*path}`: the prefix is always there.
        let rest = path.strip_prefix(MODULES_BASE).unwrap_or_default();
        let parts: Vec<&str> = rest.split('/').collect();
        let [repository, name, system, rest @ ..] = parts.as_slice() else {
            return Err(Failure::not_found("no such resource"));
        };
        registry_core::package::check_repository_name(repository)?;
        terraform::check_module_name(name)?;
        terraform::check_system(system)?;
        let module = Module {
            repository,
            name,
            system,
        };
        let method = request.method().clone();
        let head = method == Method::HEAD;
        let base = base_url(request.extensions(), request.headers());
        match (rest, &method) {
            (["versions"], &Method::GET | &Method::HEAD) => {
                api.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                versions(&api, &module, head).await
            }
            (["download"], &Method::GET | &Method::HEAD) => {
                api.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                latest(&api, &module).await
            }
            ([version, "download"], &Method::GET | &Method::HEAD) => {
                api.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                download(&api, &module, version, &base).await
            }
            ([version, "file"], &Method::PUT) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Push)
                    .await?;
                upload(&api, &module, version, role, request).await
            }
            ([version, file], &Method::GET | &Method::HEAD) => {
                let kind = ArchiveKind::from_file_name(file)
                    .ok_or_else(|| Failure::not_found(format!("{file} is not a module archive")))?;
                // A signed URL opens the file it was made for: the lookup comes first, its
                // answer (even a 404) only after the caller is let in.
                let found = stored_archive(&api, &module, version).await;
                let signed = match (query_token(request.uri().query()), &found) {
                    (Some(token), Ok((stored, _))) => api.signer.allows(
                        &token,
                        &file_key(&module, version, kind),
                        &stored.blob.digest,
                    ),
                    _ => false,
                };
                if !signed {
                    api.authorize(request.headers(), repository, Action::Pull)
                        .await?;
                }
                archive(&api, &module, found?, kind, request.headers(), head).await
            }
            ([version], &Method::DELETE) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Delete)
                    .await?;
                api.packages
                    .delete_version(&Rules, repository, &module.package(), version, role)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (["versions"] | ["download"] | [_, "download"] | [_, _], _) | ([_], _) => {
                Err(Failure::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not supported on this path"),
                ))
            }
            _ => Err(Failure::not_found("no such resource")),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The `token` parameter of a query, if any.
pub(crate) fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

/// What a signed URL names: one archive of one version.
fn file_key(module: &Module<'_>, version: &str, kind: ArchiveKind) -> String {
    format!(
        "{}/{}/{version}/{}",
        module.repository,
        module.package(),
        kind.file_name()
    )
}

pub(crate) fn json_response(body: String, head: bool) -> Response {
    document_response(body, "application/json", head)
}

/// A stored module, or `404` naming it.
async fn find_module(api: &TerraformApi, module: &Module<'_>) -> Result<Package, Failure> {
    api.packages
        .package(&Rules, module.repository, &module.package())
        .await?
        .ok_or_else(|| module.missing(None))
}

/// A module's listed versions, lowest first (the service's order); `404` when there are none.
async fn listed_versions(api: &TerraformApi, module: &Module<'_>) -> Result<Vec<String>, Failure> {
    let versions: Vec<String> = find_module(api, module)
        .await?
        .versions
        .iter()
        .filter(|v| v.status != VersionStatus::Hidden)
        .map(|v| v.version.clone())
        .collect();
    if versions.is_empty() {
        return Err(module.missing(None));
    }
    Ok(versions)
}

async fn versions(
    api: &TerraformApi,
    module: &Module<'_>,
    head: bool,
) -> Result<Response, Failure> {
    // Rendered once per revision of the package (read from the store, so exact on every
    // instance).
    let revision = api
        .packages
        .package_revision(&Rules, module.repository, &module.package())
        .await?
        .ok_or_else(|| module.missing(None))?;
    let key = format!("{}\0{}\0versions", module.repository, module.package());
    let body = api
        .cache
        .get_or_render(key, revision, async {
            let versions = listed_versions(api, module).await?;
            Ok::<_, Failure>(bytes::Bytes::from(
                terraform::versions_document(&versions).to_string(),
            ))
        })
        .await?;
    Ok(document_response(body, "application/json", head))
}

/// `302` to the latest version's download: the highest release, or the highest version when
/// there are only prereleases.
async fn latest(api: &TerraformApi, module: &Module<'_>) -> Result<Response, Failure> {
    let versions = listed_versions(api, module).await?;
    let latest = versions
        .iter()
        .rev()
        .find(|v| terraform::parse_version(v).is_ok_and(|v| v.pre_release.is_empty()))
        .or(versions.last())
        .ok_or_else(|| Failure::not_found("no versions"))?;
    let mut response = StatusCode::FOUND.into_response();
    let location = format!("{}/{latest}/download", module.path());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The stored archive of a version and where its root module is.
async fn stored_archive(
    api: &TerraformApi,
    module: &Module<'_>,
    version: &str,
) -> Result<(registry_core::PackageFile, ModuleArchive), Failure> {
    let missing = || module.missing(Some(version));
    let package = find_module(api, module).await?;
    let key = terraform::parse_version(version)?.to_string();
    let stored = package.version(&key).ok_or_else(missing)?;
    let stored_module: StoredModule = serde_json::from_str(&stored.metadata)
        .map_err(|e| Error::backend(format!("a stored module document: {e}")))?;
    let kind = ArchiveKind::from_file_name(&stored_module.file).ok_or_else(missing)?;
    let file = stored
        .files
        .iter()
        .find(|f| f.name == stored_module.file)
        .cloned()
        .ok_or_else(missing)?;
    Ok((
        file,
        ModuleArchive {
            kind,
            root: stored_module.root,
        },
    ))
}

/// What is kept of a module version: its archive's file name and root module directory.
#[derive(Serialize, Deserialize)]
struct StoredModule {
    file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<String>,
}

async fn download(
    api: &TerraformApi,
    module: &Module<'_>,
    version: &str,
    base: &str,
) -> Result<Response, Failure> {
    let (stored, archive) = stored_archive(api, module, version).await?;
    let key = terraform::parse_version(version)?.to_string();
    let mut url = format!("{base}{}/{key}/{}", module.path(), archive.kind.file_name());
    if let Some(root) = &archive.root {
        url.push_str("//");
        url.push_str(root);
    }
    if api.auth.is_some() {
        let token = api
            .signer
            .sign(&file_key(module, &key, archive.kind), &stored.blob.digest)?;
        url.push_str("?token=");
        url.push_str(&token);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let value = HeaderValue::from_str(&url)
        .map_err(|_| Error::backend("an archive URL that is no header value"))?;
    response.headers_mut().insert("x-terraform-get", value);
    Ok(response)
}

async fn archive(
    api: &TerraformApi,
    module: &Module<'_>,
    (file, stored): (registry_core::PackageFile, ModuleArchive),
    kind: ArchiveKind,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    if stored.kind != kind {
        return Err(Failure::not_found(format!(
            "this version's archive is {}",
            stored.kind.file_name()
        )));
    }
    let content_type = match kind {
        ArchiveKind::TarGz => "application/gzip",
        ArchiveKind::Zip => "application/zip",
    };
    Ok(stored_file_response(
        &api.packages,
        &Rules,
        module.repository,
        &file.blob,
        (headers, content_type, head),
    )
    .await?)
}

async fn upload(
    api: &TerraformApi,
    module: &Module<'_>,
    version: &str,
    role: Option<Role>,
    request: Request,
) -> Result<Response, Failure> {
    let key = terraform::parse_version(version)?.to_string();
    let name = module.package();
    api.packages
        .prepare_publish(&Rules, module.repository, &name, role)
        .await?;
    let stored = api
        .packages
        .store_file(Default::default(), body_stream(request.into_body()))
        .await?;
    let checked = api
        .packages
        .read_blocking(&stored.blob, |reader| {
            terraform::check_module_archive(reader, terraform::ModuleLimits::default())
        })
        .await??;
    let file = checked.kind.file_name().to_owned();
    let document = serde_json::to_string(&StoredModule {
        file: file.clone(),
        root: checked.root,
    })
    .map_err(|e| Error::backend(e.to_string()))?;
    let release = Release {
        name: name.clone(),
        version: key.clone(),
        metadata: document,
        files: vec![NewPackageFile {
            name: file,
            blob: stored.blob,
            digests: stored.digests,
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: Vec::new(),
    };
    api.packages
        .publish(&Rules, module.repository, role, release)
        .await
        .map_err(|e| match e {
            Error::PackageConflict { .. } => Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "{}/{}/{} {key} already exists; upload a new version",
                    module.repository, module.name, module.system
                ),
            ),
            other => other.into(),
        })?;
    Ok(StatusCode::CREATED.into_response())
}
