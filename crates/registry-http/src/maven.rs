//! Maven repositories under `/maven/<repository>/`, in the standard repository layout, for mvn.
//!
//! | request | does |
//! |---|---|
//! | `PUT …/group/as/path/artifact/version/artifact-version[-classifier].ext` | stores the file (201); a pom must declare the path's coordinates |
//! | `GET`, `HEAD` same path | the file (`Range` supported); `artifact-X-SNAPSHOT[-classifier].ext` is the newest build's |
//! | `GET …file.{md5,sha1,sha256,sha512}` | the file's checksum, computed here |
//! | `PUT …file.{md5,sha1,sha256,sha512}` | checked against the one computed here (201, or 400 and nothing changes) |
//! | `GET …/artifact/maven-metadata.xml`, `…/version-SNAPSHOT/maven-metadata.xml` (and checksums) | rebuilt from what is stored |
//! | `PUT` of a `maven-metadata.xml` or its checksums | accepted and ignored: the registry owns the file |
//! | `DELETE` a file, or a version directory (`…/artifact/version`) | deletes it |
//!
//! Release versions are immutable unless the repository allows duplicates; `-SNAPSHOT` versions
//! take new builds. Reads need pull on the repository name, uploads push, deletes delete; mvn
//! sends the `<server>` credentials matching the repository id (Basic: a password, or an access
//! token as the password). Errors are plain text, repeated in the reason phrase, which mvn
//! prints.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use registry_core::{Error, FormatRules, NewPackageFile, PackageFile, Packages, Release, Role};
use registry_formats::maven::metadata::{self, SnapshotFile};
use registry_formats::maven::{self, ArtifactFile, Checksum, Maven as Rules, MavenPath};

use crate::auth::Auth;
use crate::cache::RenderCache;
use crate::package_error::{ReasonText, authorize};
use crate::transfer::{
    body_stream, declared_length, document_response, read_bounded, read_stored,
    stored_file_response,
};

/// A failure as mvn sees it: a status and a line of text, repeated in the reason phrase (mvn
/// prints the status line, not the body: `status code: 403, reason phrase: Forbidden - blocked
/// by firewall rule …`).
type Failure = crate::package_error::Failure<ReasonText>;

/// The largest checksum file accepted (a hex digest, perhaps followed by a file name).
const MAX_CHECKSUM: usize = 1024;

/// The largest `maven-metadata.xml` a client may send (it is read and dropped).
const MAX_METADATA: u64 = 4 << 20;

/// Reads a body to its end without holding it, refusing more than `limit` bytes.
async fn drain(request: Request, limit: u64) -> Result<(), Failure> {
    use futures::StreamExt;
    let too_large = |size| Error::SizeInvalid {
        what: "maven-metadata.xml",
        size,
        limit,
    };
    if let Some(length) = declared_length(request.headers()).filter(|l| *l > limit) {
        return Err(too_large(length).into());
    }
    let mut body = body_stream(request.into_body());
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        total = total.saturating_add(chunk?.len() as u64);
        if total > limit {
            return Err(too_large(total).into());
        }
    }
    Ok(())
}

/// The router serving `/maven/`, with authentication when `auth` is given.
///
/// ```
/// use std::sync::Arc;
/// use registry_core::Packages;
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
/// let app: axum::Router = registry_http::maven::router(packages, None);
/// ```
pub fn router(packages: Packages, auth: Option<Auth>) -> Router {
    Router::new()
        .route("/maven/{*path}", axum::routing::any(dispatch))
        .with_state(Arc::new(MavenApi {
            packages,
            auth,
            cache: RenderCache::new(1024, 64 << 20),
        }))
}

#[derive(Debug)]
struct MavenApi {
    packages: Packages,
    auth: Option<Auth>,
    /// Rendered `maven-metadata.xml` by package revision.
    cache: RenderCache,
}

async fn dispatch(State(api): State<Arc<MavenApi>>, request: Request) -> Response {
    let result = async {
        let path = request.uri().path().to_owned();
        let (repository, rest) = crate::package_error::repository_path(&path, "/maven/")?;
        let method = request.method().clone();
        let action = crate::package_error::file_action(&method)?;
        let role = authorize(
            api.auth.as_ref(),
            api.packages.tokens(),
            request.headers(),
            repository,
            action,
        )
        .await?;
        let rest = rest.trim_end_matches('/');
        if method == Method::DELETE
            && maven::parse_path(rest).is_err()
            && let Ok((group, artifact, version)) = maven::parse_version_dir(rest)
        {
            let name = maven::package_name(&group, &artifact);
            api.packages
                .delete_version(&Rules, repository, &name, &version, role)
                .await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let target = maven::parse_path(rest)?;
        let head = method == Method::HEAD;
        match (target, method) {
            (
                MavenPath::File {
                    group,
                    artifact,
                    version,
                    file,
                    checksum: None,
                },
                Method::PUT,
            ) => {
                let name = maven::package_name(&group, &artifact);
                api.packages
                    .prepare_publish(&Rules, repository, &name, role)
                    .await?;
                upload(
                    &api.packages,
                    repository,
                    role,
                    &name,
                    &version,
                    file,
                    request,
                )
                .await
            }
            (
                MavenPath::File {
                    group,
                    artifact,
                    version,
                    file,
                    checksum: Some(checksum),
                },
                Method::PUT,
            ) => {
                let name = maven::package_name(&group, &artifact);
                let stored = find(&api.packages, repository, &name, &version, &file).await?;
                let declared = declared_length(request.headers());
                let sent =
                    read_bounded(request.into_body(), declared, MAX_CHECKSUM, "the checksum")
                        .await?;
                check_checksum(&stored, checksum, &sent)?;
                Ok(StatusCode::CREATED.into_response())
            }
            (
                MavenPath::Metadata {
                    group, artifact, ..
                },
                Method::PUT,
            ) => {
                // The registry rebuilds the file from what is stored; the client's copy is
                // drained (bounded, never held) once the upload could have landed.
                let name = maven::package_name(&group, &artifact);
                api.packages
                    .prepare_publish(&Rules, repository, &name, role)
                    .await?;
                drain(request, MAX_METADATA).await?;
                Ok(StatusCode::CREATED.into_response())
            }
            (
                MavenPath::File {
                    group,
                    artifact,
                    version,
                    file,
                    checksum,
                },
                Method::GET | Method::HEAD,
            ) => {
                let name = maven::package_name(&group, &artifact);
                let stored = find(&api.packages, repository, &name, &version, &file).await?;
                match checksum {
                    Some(checksum) => text(checksum_of(&stored, checksum)?, head),
                    None => {
                        let mut response = stored_file_response(
                            &api.packages,
                            &Rules,
                            repository,
                            &stored.blob,
                            (request.headers(), content_type(&file), head),
                        )
                        .await?;
                        // When it was deployed: a proxy of this repository dates the version
                        // by it (age gates).
                        if let Some(modified) = http_date(stored.created_at) {
                            response
                                .headers_mut()
                                .insert(axum::http::header::LAST_MODIFIED, modified);
                        }
                        Ok(response)
                    }
                }
            }
            (
                MavenPath::Metadata {
                    group,
                    artifact,
                    version,
                    checksum,
                },
                Method::GET | Method::HEAD,
            ) => {
                // Rendered once per revision of the package (read from the store, so exact on
                // every instance).
                let name = maven::package_name(&group, &artifact);
                let revision = api
                    .packages
                    .package_revision(&Rules, repository, &name)
                    .await?
                    .ok_or_else(|| Failure::not_found(format!("no metadata for {name}")))?;
                let xml = api
                    .cache
                    .get_or_render(
                        format!("{repository}\0{name}\0{version:?}"),
                        revision,
                        async {
                            metadata_document(
                                &api.packages,
                                repository,
                                &group,
                                &artifact,
                                version.as_deref(),
                            )
                            .await
                            .map(Bytes::from)
                        },
                    )
                    .await?;
                match checksum {
                    None => Ok(document_response(xml, "application/xml", head)),
                    Some(checksum) => text(digest_hex(checksum, &xml), head),
                }
            }
            (
                MavenPath::File {
                    group,
                    artifact,
                    version,
                    file,
                    checksum: None,
                },
                Method::DELETE,
            ) => {
                let name = maven::package_name(&group, &artifact);
                api.packages
                    .delete_file(&Rules, repository, &name, &version, &file.name, role)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "not supported on this path",
            )),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A time as an HTTP date (`Last-Modified`).
fn http_date(time: registry_core::Timestamp) -> Option<axum::http::HeaderValue> {
    let millis = u64::try_from(time.0).ok()?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    axum::http::HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
}

fn content_type(file: &ArtifactFile) -> &'static str {
    match file.extension.as_str() {
        "pom" | "xml" => "application/xml",
        "jar" | "war" | "ear" => "application/java-archive",
        _ => "application/octet-stream",
    }
}

/// A small text answer (checksums, metadata); `HEAD` gets its headers only.
fn text(body: String, head: bool) -> Result<Response, Failure> {
    Ok(document_response(body, "text/plain; charset=utf-8", head))
}

async fn upload(
    packages: &Packages,
    repository: &str,
    role: Option<Role>,
    name: &str,
    version: &str,
    file: ArtifactFile,
    request: Request,
) -> Result<Response, Failure> {
    if version.ends_with("-SNAPSHOT") && file.build.is_none() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: deploy a SNAPSHOT as timestamped builds \
                 (artifact-base-yyyyMMdd.HHmmss-N), as mvn does",
                file.name
            ),
        ));
    }
    let stored = packages
        .store_file(Rules.extra_digests(), body_stream(request.into_body()))
        .await?;
    if file.extension == "pom" && file.classifier.is_none() {
        let pom = read_stored(packages, &stored.blob, metadata::MAX_POM_SIZE as u64).await?;
        let declared = metadata::pom_coordinates(&pom)?;
        let (group, artifact) = name.split_once(':').unwrap_or((name, ""));
        if declared.group != group || declared.artifact != artifact || declared.version != version {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the pom declares {}:{}:{}, the path {name}:{version}",
                    declared.group, declared.artifact, declared.version
                ),
            ));
        }
    }
    let release = Release {
        name: name.to_owned(),
        version: version.to_owned(),
        metadata: "{}".into(),
        files: vec![NewPackageFile {
            name: file.name.clone(),
            blob: stored.blob,
            digests: stored.digests,
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: Vec::new(),
    };
    packages
        .publish(&Rules, repository, role, release)
        .await
        .map_err(|e| match e {
            Error::PackageConflict { .. } => Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "{} of {name} {version} is already deployed; releases are immutable in {repository}",
                    file.name
                ),
            ),
            other => other.into(),
        })?;
    Ok(StatusCode::CREATED.into_response())
}

/// The stored file a path names; `artifact-X-SNAPSHOT[-classifier].ext` names the newest
/// build's file of that classifier and extension.
async fn find(
    packages: &Packages,
    repository: &str,
    name: &str,
    version: &str,
    file: &ArtifactFile,
) -> Result<PackageFile, Failure> {
    let missing = || Failure::not_found(format!("{} not found", file.name));
    if version.ends_with("-SNAPSHOT") && file.build.is_none() {
        let package = packages
            .package(&Rules, repository, name)
            .await?
            .ok_or_else(missing)?;
        let stored = package.version(version).ok_or_else(missing)?;
        let (_, artifact) = name.split_once(':').unwrap_or((name, name));
        let newest = stored
            .files
            .iter()
            .filter_map(|f| {
                let parsed = maven::parse_file_name(&f.name, artifact, version).ok()?;
                let same =
                    parsed.classifier == file.classifier && parsed.extension == file.extension;
                same.then_some((parsed.build, f))
            })
            .max_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.created_at.cmp(&b.1.created_at))
            });
        return newest.map(|(_, f)| f.clone()).ok_or_else(missing);
    }
    packages
        .file(&Rules, repository, name, Some(version), &file.name)
        .await?
        .map(|(_, f)| f)
        .ok_or_else(missing)
}

/// A stored file's checksum in hex: SHA-256 is its blob's digest, the others were computed
/// when it was stored.
fn checksum_of(file: &PackageFile, checksum: Checksum) -> Result<String, Failure> {
    let digest = match checksum {
        Checksum::Sha256 => Some(file.blob.digest.hex().to_owned()),
        Checksum::Md5 => file.digests.md5.clone(),
        Checksum::Sha1 => file.digests.sha1.clone(),
        Checksum::Sha512 => file.digests.sha512.clone(),
    };
    digest.ok_or_else(|| {
        Failure::not_found(format!(
            "{} has no {} checksum",
            file.name,
            checksum.extension()
        ))
    })
}

/// Checks a checksum a client uploads against the one computed here; it is never stored.
fn check_checksum(file: &PackageFile, checksum: Checksum, sent: &[u8]) -> Result<(), Failure> {
    let expected = checksum_of(file, checksum)?;
    // Files hold the hex digest, sometimes followed by the file name; an empty one reads as ""
    // and fails the comparison below.
    let sent = String::from_utf8_lossy(sent);
    let given = sent.split_whitespace().next().unwrap_or_default();
    if given.eq_ignore_ascii_case(&expected) {
        Ok(())
    } else {
        let given: String = given.chars().take(130).collect();
        Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the {} sent for {} is {given:?}, not the {expected} computed here",
                checksum.extension(),
                file.name
            ),
        ))
    }
}

fn digest_hex(checksum: Checksum, bytes: &[u8]) -> String {
    match checksum {
        Checksum::Md5 => hex::encode(<md5::Md5 as md5::Digest>::digest(bytes)),
        Checksum::Sha1 => hex::encode(<sha1::Sha1 as sha1::Digest>::digest(bytes)),
        Checksum::Sha256 => hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
        Checksum::Sha512 => hex::encode(<sha2::Sha512 as sha2::Digest>::digest(bytes)),
    }
}

/// A `maven-metadata.xml` rebuilt from what is stored.
async fn metadata_document(
    packages: &Packages,
    repository: &str,
    group: &str,
    artifact: &str,
    version: Option<&str>,
) -> Result<String, Failure> {
    let name = maven::package_name(group, artifact);
    let missing = || Failure::not_found(format!("no metadata for {name}"));
    let package = packages
        .package(&Rules, repository, &name)
        .await?
        .ok_or_else(missing)?;
    match version {
        None => {
            let versions: Vec<String> =
                package.versions.iter().map(|v| v.version.clone()).collect();
            Ok(metadata::artifact_metadata(
                group,
                artifact,
                &versions,
                package.updated_at.0,
            ))
        }
        Some(version) => {
            let stored = package.version(version).ok_or_else(missing)?;
            let files: Vec<SnapshotFile> = stored
                .files
                .iter()
                .filter_map(|f| {
                    let file = maven::parse_file_name(&f.name, artifact, version).ok()?;
                    Some(SnapshotFile {
                        build: file.build?,
                        classifier: file.classifier,
                        extension: file.extension,
                        updated_ms: f.created_at.0,
                    })
                })
                .collect();
            Ok(metadata::snapshot_metadata(
                group,
                artifact,
                version,
                &files,
                stored.updated_at.0,
            ))
        }
    }
}
