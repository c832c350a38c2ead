//! Generic packages over HTTP: files under a package name and version, for curl and anything
//! else that speaks HTTP.
//!
//! | request | does |
//! |---|---|
//! | `PUT /generic/<repo>/<name>/<version>/<path>` | stores the body as that file (201, JSON with its `sha256`) |
//! | `GET`, `HEAD` same path | the file (`Range` supported; `ETag` and `X-Checksum-Sha256` carry its SHA-256) |
//! | `DELETE` same path | deletes the file (the version goes with its last file) |
//! | `GET /generic/<repo>/<name>/<version>` | the version's files, as JSON |
//! | `DELETE /generic/<repo>/<name>/<version>` | deletes the version |
//! | `GET /generic/<repo>/<name>` | the package's versions, as JSON |
//!
//! A `PUT` may say what it sends with `X-Checksum-Sha256: <hex>`; a body that does not match is
//! refused and nothing is published. Publishing a file the version already has is refused
//! (`409`) unless the repository allows duplicates. Reads need pull access to the repository
//! name, uploads push, deletes delete; with no authentication configured, the first upload
//! creates the repository. Errors are `{"message": "…"}` with the status.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry_core::{
    Action, Error, FormatRules, NewPackageFile, PackageFile, Packages, Release, Role,
};
use registry_formats::generic::{self, Generic as Rules};
use serde_json::json;

use crate::auth::Auth;
use crate::package_error::{MessageJson, authorize};
use crate::transfer::{body_stream, file_response, requested_range};

const CHECKSUM: HeaderName = HeaderName::from_static("x-checksum-sha256");

/// The router serving `/generic/`, with authentication when `auth` is given.
///
/// ```
/// use std::sync::Arc;
/// use registry_core::Packages;
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
/// let app: axum::Router = registry_http::generic::router(packages, None);
/// ```
pub fn router(packages: Packages, auth: Option<Auth>) -> Router {
    Router::new()
        .route("/generic/{*path}", axum::routing::any(dispatch))
        .with_state(Arc::new(Generic { packages, auth }))
}

#[derive(Debug)]
struct Generic {
    packages: Packages,
    auth: Option<Auth>,
}

/// A failure as a Generic client sees it: `{"message": "…"}`.
type Failure = crate::package_error::Failure<MessageJson>;

/// What a path names.
enum Target {
    Package {
        name: String,
    },
    Version {
        name: String,
        version: String,
    },
    File {
        name: String,
        version: String,
        path: String,
    },
}

fn parse(rest: &str) -> Result<(String, Target), Failure> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut parts = rest.splitn(4, '/');
    let (Some(repository), Some(name)) = (parts.next(), parts.next()) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "use /generic/<repository>/<name>/<version>/<file path>",
        ));
    };
    registry_core::package::check_repository_name(repository)?;
    generic::check_name(name)?;
    let name = name.to_owned();
    let target = match (parts.next(), parts.next()) {
        (None, _) => Target::Package { name },
        (Some(version), path) => {
            generic::check_version(version)?;
            let version = version.to_owned();
            match path {
                None => Target::Version { name, version },
                Some(path) => {
                    generic::check_path(path)?;
                    Target::File {
                        name,
                        version,
                        path: path.to_owned(),
                    }
                }
            }
        }
    };
    Ok((repository.to_owned(), target))
}

async fn dispatch(State(generic): State<Arc<Generic>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    // The route is `/generic/{*path}`: the prefix is always there.
    let rest = path.strip_prefix("/generic/").unwrap_or_default();
    let result = async {
        let (repository, target) = parse(rest)?;
        let method = request.method().clone();
        let action = crate::package_error::file_action(&method)?;
        let role: Option<Role> = authorize(
            generic.auth.as_ref(),
            generic.packages.tokens(),
            request.headers(),
            &repository,
            action,
        )
        .await?;
        let packages = &generic.packages;
        let name = match &target {
            Target::Package { name } | Target::Version { name, .. } | Target::File { name, .. } => {
                name.clone()
            }
        };
        // Checked before an upload's body is read, so a refused upload stores nothing.
        match action {
            Action::Push => {
                packages
                    .prepare_publish(&Rules, &repository, &name, role)
                    .await?
            }
            Action::Delete => {
                packages
                    .check_protection(&Rules, &repository, &name, action, role)
                    .await?
            }
            _ => {}
        }
        match (target, method) {
            (
                Target::File {
                    name,
                    version,
                    path,
                },
                Method::PUT,
            ) => upload(packages, &repository, role, name, version, path, request).await,
            (
                Target::File {
                    name,
                    version,
                    path,
                },
                Method::GET | Method::HEAD,
            ) => {
                let head = request.method() == Method::HEAD;
                download(
                    packages,
                    &repository,
                    &name,
                    &version,
                    &path,
                    request.headers(),
                    head,
                )
                .await
            }
            (
                Target::File {
                    name,
                    version,
                    path,
                },
                Method::DELETE,
            ) => {
                packages
                    .delete_file(&Rules, &repository, &name, &version, &path, role)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (Target::Version { name, version }, Method::GET) => {
                version_listing(packages, &repository, &name, &version).await
            }
            (Target::Version { name, version }, Method::DELETE) => {
                packages
                    .delete_version(&Rules, &repository, &name, &version, role)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (Target::Package { name }, Method::GET) => {
                package_listing(packages, &repository, &name).await
            }
            (Target::Package { name }, Method::DELETE) => {
                if packages
                    .delete_package(&Rules, &repository, &name, role)
                    .await?
                {
                    Ok(StatusCode::NO_CONTENT.into_response())
                } else {
                    Err(Error::PackageUnknown {
                        what: format!("package {name}"),
                    }
                    .into())
                }
            }
            _ => Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "upload to /generic/<repository>/<name>/<version>/<file path>",
            )),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn upload(
    packages: &Packages,
    repository: &str,
    role: Option<Role>,
    name: String,
    version: String,
    path: String,
    request: Request,
) -> Result<Response, Failure> {
    let expected = match request.headers().get(CHECKSUM) {
        None => None,
        Some(value) => {
            // A value that is not text reads as empty and fails the check below.
            let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
            if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "X-Checksum-Sha256 must be 64 hexadecimal digits",
                ));
            }
            Some(text)
        }
    };
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        let limit = packages.limits().max_file_size;
        if length > limit {
            return Err(Error::SizeInvalid {
                what: "package file",
                size: length,
                limit,
            }
            .into());
        }
    }
    let blob = packages
        .store_file(Rules.extra_digests(), body_stream(request.into_body()))
        .await?
        .blob;
    if let Some(expected) = expected
        && expected != blob.digest.hex()
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body's SHA-256 is {}, not the {expected} X-Checksum-Sha256 announced; \
                 nothing was published",
                blob.digest.hex()
            ),
        ));
    }
    let release = Release {
        name: name.clone(),
        version: version.clone(),
        metadata: "{}".into(),
        files: vec![NewPackageFile {
            name: path.clone(),
            blob: blob.clone(),
            digests: Default::default(),
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: Vec::new(),
    };
    packages.publish(&Rules, repository, role, release).await?;
    let body = json!({
        "package": name,
        "version": version,
        "file": path,
        "size": blob.size,
        "sha256": blob.digest.hex(),
    });
    let mut response = (StatusCode::CREATED, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn find_file(
    packages: &Packages,
    repository: &str,
    name: &str,
    version: &str,
    path: &str,
) -> Result<PackageFile, Failure> {
    packages
        .file(&Rules, repository, name, Some(version), path)
        .await?
        .map(|(_, file)| file)
        .ok_or_else(|| {
            Error::PackageUnknown {
                what: format!("file {path} of {name} {version}"),
            }
            .into()
        })
}

async fn download(
    packages: &Packages,
    repository: &str,
    name: &str,
    version: &str,
    path: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    let file = find_file(packages, repository, name, version, path).await?;
    let sha256 = file.blob.digest.hex().to_owned();
    let etag = format!("\"{sha256}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        return Ok(response);
    }
    let range = requested_range(headers, file.blob.size)?;
    let read = packages.read(&Rules, repository, &file.blob, range).await?;
    let mut response = file_response(read, range.is_some(), "application/octet-stream", head);
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(CHECKSUM, HeaderValue::from_str(&sha256).expect("hex"));
    let file_name = path.rsplit('/').next().unwrap_or(path);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn json_ok(body: serde_json::Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn version_listing(
    packages: &Packages,
    repository: &str,
    name: &str,
    version: &str,
) -> Result<Response, Failure> {
    let package = packages.package(&Rules, repository, name).await?;
    let Some(found) = package.as_ref().and_then(|p| p.version(version)) else {
        return Err(Error::PackageUnknown {
            what: format!("version {version} of {name}"),
        }
        .into());
    };
    let files: Vec<_> = found
        .files
        .iter()
        .map(|f| {
            json!({
                "path": f.name,
                "size": f.blob.size,
                "sha256": f.blob.digest.hex(),
                "createdAt": f.created_at.0,
            })
        })
        .collect();
    Ok(json_ok(json!({
        "package": name,
        "version": version,
        "createdAt": found.created_at.0,
        "files": files,
    })))
}

async fn package_listing(
    packages: &Packages,
    repository: &str,
    name: &str,
) -> Result<Response, Failure> {
    let package = packages
        .package(&Rules, repository, name)
        .await?
        .ok_or_else(|| Error::PackageUnknown {
            what: format!("package {name}"),
        })?;
    let versions: Vec<_> = package
        .versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "files": v.files.len(),
                "size": v.files.iter().map(|f| f.blob.size).sum::<u64>(),
                "createdAt": v.created_at.0,
            })
        })
        .collect();
    Ok(json_ok(json!({ "package": name, "versions": versions })))
}
