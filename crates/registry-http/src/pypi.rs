//! The Python package index under `/pypi/<repository>/`, for twine and pip.
//!
//! | request | does |
//! |---|---|
//! | `POST /pypi/<repo>/` (also `/legacy/`), multipart | twine upload: digests checked, metadata read from the file and compared with the form |
//! | `GET /pypi/<repo>/simple/` | the project index (PEP 503 HTML or PEP 691 JSON, by `Accept`) |
//! | `GET /pypi/<repo>/simple/<project>/` | a project's files, with `requires-python`, yanks, core-metadata hashes, PEP 700 fields |
//! | `GET /pypi/<repo>/files/<project>/<version>/<file>[.metadata]` | a file, or its core metadata (PEP 658/714) |
//! | `PUT`, `DELETE /pypi/<repo>/projects/<project>/<version>/yank` | yank (`{"reason": …}`), unyank (PEP 592) |
//! | `DELETE /pypi/<repo>/projects/<project>/<version>` | deletes a release |
//!
//! Point pip at `http://host/pypi/<repo>/simple/` and twine at `http://host/pypi/<repo>/`.
//! Credentials are Basic (a password, or an access token as the password, the user being
//! anything such as `__token__`). Errors are plain text with the status, which twine prints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use registry_core::{
    Action, BlobRef, Error, FormatRules, NewPackageFile, Packages, Page, Release, StoredFile,
    VersionStatus,
};
use registry_formats::pypi::{
    self, DistKind, Pypi as Rules, SimpleFile, SimpleFormat, SimpleProject,
};
use serde_json::json;

use crate::auth::Auth;
use crate::cache::RenderCache;
use crate::external_url::base_url;
use crate::package_error::PlainText;
use crate::transfer::{
    BufferBudget, FramingBound, declared_length, read_bounded, stored_file_response,
};

/// The largest text field of an upload form (a long description included).
const MAX_FIELD: usize = 4 << 20;

/// The most fields an upload form may have.
const MAX_FIELDS: usize = 200;

/// The most bytes of all text fields of an upload form together.
const MAX_FORM_TEXT: usize = 16 << 20;

/// The router serving `/pypi/<repository>/`, with authentication when `auth` is given.
///
/// ```
/// use std::sync::Arc;
/// use registry_core::Packages;
/// use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
///
/// let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
/// let app: axum::Router = registry_http::pypi::router(packages, None);
/// ```
pub fn router(packages: Packages, auth: Option<Auth>) -> Router {
    // The upload's body limit comes from the configured file size, never a framework default:
    // the file plus its form fields and multipart framing.
    let body_limit = usize::try_from(
        packages
            .limits()
            .max_file_size
            .saturating_add(MAX_FORM_TEXT as u64 + (1 << 20)),
    )
    .unwrap_or(usize::MAX);
    Router::new()
        .route("/pypi/{*path}", axum::routing::any(dispatch))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(Arc::new(Pypi {
            buffered: BufferBudget::new(packages.limits().max_buffered_bytes),
            packages,
            auth,
            cache: RenderCache::new(1024, 256 << 20),
        }))
}

impl Pypi {
    async fn authorize(
        &self,
        headers: &HeaderMap,
        repository: &str,
        action: Action,
    ) -> Result<Option<registry_core::Role>, Failure> {
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

#[derive(Debug)]
struct Pypi {
    packages: Packages,
    auth: Option<Auth>,
    /// Bounds the upload forms' text fields held in memory at once.
    buffered: BufferBudget,
    /// Rendered project pages by project and revision.
    cache: RenderCache,
}

/// A failure as pip and twine see it: a status and a line of text.
type Failure = crate::package_error::Failure<PlainText>;

async fn dispatch(State(pypi): State<Arc<Pypi>>, request: Request) -> Response {
    let result = async {
        let path = request.uri().path().to_owned();
        let (repository, rest) = crate::package_error::repository_path(&path, "/pypi/")?;
        let base = format!(
            "{}/pypi/{repository}",
            base_url(request.extensions(), request.headers())
        );
        // Segments decoded one by one: pip asks for `pkg-1.0+local.whl` as `pkg-1.0%2Blocal.whl`.
        let parts = rest
            .split('/')
            .map(crate::package_error::percent_decode)
            .collect::<Result<Vec<String>, Failure>>()?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let method = request.method().clone();
        match (parts.as_slice(), &method) {
            ([""] | ["legacy", ""] | ["legacy"], &Method::POST) => {
                let role = pypi
                    .authorize(request.headers(), repository, Action::Push)
                    .await?;
                upload(&pypi, repository, role, request).await
            }
            (["simple", ""] | ["simple"], &Method::GET | &Method::HEAD) => {
                pypi.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                index(&pypi, repository, request.headers()).await
            }
            (["simple", project, ""] | ["simple", project], &Method::GET | &Method::HEAD) => {
                pypi.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                project_page(&pypi, repository, &base, project, request.headers()).await
            }
            (["files", project, version, file], &Method::GET | &Method::HEAD) => {
                pypi.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                let head = method == Method::HEAD;
                download(
                    &pypi,
                    repository,
                    project,
                    version,
                    file,
                    request.headers(),
                    head,
                )
                .await
            }
            (["projects", project, version, "yank"], &Method::PUT | &Method::DELETE) => {
                let role = pypi
                    .authorize(request.headers(), repository, Action::Delete)
                    .await?;
                pypi.packages
                    .check_protection(&Rules, repository, project, Action::Delete, role)
                    .await?;
                let reason = if method == Method::PUT {
                    let declared = declared_length(request.headers());
                    let body =
                        read_bounded(request.into_body(), declared, 64 << 10, "the yank reason")
                            .await?;
                    Some(yank_reason(&body)?)
                } else {
                    None
                };
                yank(&pypi, repository, project, version, reason, role).await
            }
            (["projects", project, version], &Method::DELETE) => {
                let role = pypi
                    .authorize(request.headers(), repository, Action::Delete)
                    .await?;
                pypi.packages
                    .delete_version(&Rules, repository, project, version, role)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => Err(Failure::new(StatusCode::NOT_FOUND, "no such route")),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The reason of a yank: an empty body gives none (PEP 592 allows that), else
/// `{"reason": "…"}`.
fn yank_reason(body: &[u8]) -> Result<String, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Yank {
        #[serde(default)]
        reason: String,
    }
    serde_json::from_slice::<Yank>(body)
        .map(|yank| yank.reason)
        .map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"reason\": \"…\"}}: {e}"),
            )
        })
}

/// What a stored upload's `content` part turned out to be.
struct Received {
    filename: String,
    stored: StoredFile,
}

async fn upload(
    pypi: &Pypi,
    repository: &str,
    role: Option<registry_core::Role>,
    request: Request,
) -> Result<Response, Failure> {
    // Preamble and part headers bounded; the fields' data is bounded below.
    let (request, framing) = FramingBound::wrap(request);
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the upload is not multipart/form-data: {e}"),
        )
    })?;
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut form_text = 0;
    let mut form_held = None;
    let mut received: Option<Received> = None;
    let mut count = 0;
    while let Some(mut field) = {
        framing.bound_from_here();
        multipart.next_field().await.map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the upload form is malformed: {e}"),
            )
        })?
    } {
        framing.lift();
        count += 1;
        if count > MAX_FIELDS {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "the upload form has too many fields",
            ));
        }
        // A part without a name is no field twine sends; kept under "" and never read.
        let name = field.name().unwrap_or_default().to_owned();
        if name == "content" {
            if received.is_some() {
                return Err(Failure::new(StatusCode::BAD_REQUEST, "one file per upload"));
            }
            let filename = field.file_name().map(str::to_owned).ok_or_else(|| {
                Failure::new(StatusCode::BAD_REQUEST, "the content part has no file name")
            })?;
            pypi::parse_filename(&filename)?;
            // The part streams into the blob store while it is hashed with BLAKE2b-256 and MD5.
            let stored = pypi
                .packages
                .store_file(Rules.extra_digests(), &mut field)
                .await?;
            received = Some(Received { filename, stored });
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("the upload form is malformed: {e}"),
                )
            })? {
                if text.len() + chunk.len() > MAX_FIELD {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        format!("field {name} is over {MAX_FIELD} bytes"),
                    ));
                }
                form_text += chunk.len();
                if form_text > MAX_FORM_TEXT {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        format!("the upload form's fields are over {MAX_FORM_TEXT} bytes"),
                    ));
                }
                pypi.buffered.take(chunk.len() as u64, &mut form_held)?;
                text.extend_from_slice(&chunk);
            }
            fields.insert(name, String::from_utf8_lossy(&text).into_owned());
        }
    }
    let field = |key: &str| {
        fields
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    match field(":action") {
        Some("file_upload") => {}
        other => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("unsupported :action {other:?}; only file_upload is"),
            ));
        }
    }
    let received = received
        .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "the upload has no content file"))?;
    let sha256 = received.stored.blob.digest.hex().to_owned();
    // Both are computed for every PyPI file (`Pypi::extra_digests`); were one missing, it would
    // read as "" and any claimed digest would be refused below, never accepted.
    let blake2_256 = received
        .stored
        .digests
        .blake2_256
        .as_deref()
        .unwrap_or_default();
    let md5 = received.stored.digests.md5.as_deref().unwrap_or_default();
    if let Some(claimed) = field("sha256_digest")
        && !claimed.eq_ignore_ascii_case(&sha256)
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("sha256_digest {claimed} does not match the file's SHA-256 {sha256}"),
        ));
    }
    if let Some(claimed) = field("blake2_256_digest")
        && !claimed.eq_ignore_ascii_case(blake2_256)
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "blake2_256_digest {claimed} does not match the file's BLAKE2b-256 {blake2_256}"
            ),
        ));
    }
    if let Some(claimed) = field("md5_digest")
        && !claimed.eq_ignore_ascii_case(md5)
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("md5_digest {claimed} does not match the file's MD5 {md5}"),
        ));
    }
    let form_name = field("name")
        .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "the form has no name"))?;
    let form_version = field("version")
        .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "the form has no version"))?;
    let file = pypi::parse_filename(&received.filename)?;
    if let Some(filetype) = field("filetype")
        && filetype != file.kind.filetype()
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "filetype {filetype} does not match {} ({})",
                received.filename,
                file.kind.filetype()
            ),
        ));
    }
    let raw_metadata = read_metadata(&pypi.packages, &received.stored.blob, &file).await?;
    let metadata = pypi::parse_core_metadata(&raw_metadata)?;
    let (project, version) = pypi::check_upload(form_name, form_version, &file, &metadata)?;
    // Checked before the metadata is stored: a publish that cannot land stores nothing more.
    pypi.packages
        .prepare_publish(&Rules, repository, &metadata.name, role)
        .await?;
    let sidecar = pypi
        .packages
        .store_bytes(Default::default(), Bytes::from(raw_metadata))
        .await?
        .blob;
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("filetype".to_owned(), file.kind.filetype().to_owned());
    if let Some(requires) = &metadata.requires_python {
        attributes.insert("requires_python".to_owned(), requires.clone());
    }
    if let Some(python) = field("pyversion") {
        attributes.insert("python_version".to_owned(), python.to_owned());
    }
    let version_metadata = json!({
        "summary": metadata.summary,
        "metadata_version": metadata.metadata_version,
    });
    let release = Release {
        name: metadata.name.clone(),
        version: version.clone(),
        metadata: version_metadata.to_string(),
        files: vec![NewPackageFile {
            name: received.filename.clone(),
            blob: received.stored.blob,
            digests: received.stored.digests,
            sidecar: Some(sidecar),
            attributes,
        }],
        tags: Vec::new(),
    };
    pypi.packages
        .publish(&Rules, repository, role, release)
        .await
        .map_err(|e| match e {
            Error::PackageConflict { .. } => Failure::new(
                StatusCode::CONFLICT,
                format!("File already exists: {} ({project} {version}); duplicates are not allowed in {repository}", received.filename),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::OK, "OK\n").into_response())
}

/// Reads a stored distribution's core metadata without loading the file: a blocking task reads
/// the ranges the archive reader asks for.
async fn read_metadata(
    packages: &Packages,
    blob: &BlobRef,
    file: &pypi::DistFile,
) -> Result<Vec<u8>, Failure> {
    let file = file.clone();
    let extracted = packages
        .read_blocking(blob, move |reader| match file.kind {
            DistKind::Wheel => pypi::wheel_metadata(reader, &file),
            DistKind::Sdist => pypi::sdist_metadata(reader),
        })
        .await?;
    Ok(extracted?)
}

fn negotiate(headers: &HeaderMap) -> Result<(SimpleFormat, &'static str), Failure> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    pypi::negotiate(accept).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("ask for {} or {}", pypi::SIMPLE_JSON, pypi::SIMPLE_HTML),
        )
    })
}

fn page(body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

async fn index(pypi: &Pypi, repository: &str, headers: &HeaderMap) -> Result<Response, Failure> {
    let (format, content_type) = negotiate(headers)?;
    // Rendered once per revision of the repository (read from the store, so exact on every
    // instance): a request costs one indexed read, not a walk of every project.
    let revision = pypi
        .packages
        .repository_revision(&Rules, repository)
        .await?
        .map(|r| r.to_string());
    let key = format!("{repository}\0/simple/\0{content_type}");
    if let Some(revision) = &revision
        && let Some(cached) = pypi.cache.get(&key, revision)
    {
        return Ok(page(cached, content_type));
    }
    let mut names = Vec::new();
    let mut page_of = Page::first(5000);
    loop {
        let batch = pypi
            .packages
            .package_names(&Rules, repository, &page_of)
            .await?;
        let full = batch.len() == page_of.limit;
        names.extend(batch);
        match (full, names.last()) {
            (true, Some(last)) => page_of = Page::after(last.clone(), 5000),
            _ => break,
        }
    }
    let rendered = Bytes::from(match format {
        SimpleFormat::Html => pypi::index_html(&names),
        SimpleFormat::Json => pypi::index_json(&names).to_string(),
    });
    // Cached under the revision read before the walk: a change during it makes the entry
    // stale at once, never wrongly fresh.
    if let Some(revision) = revision {
        pypi.cache.put(key, revision, rendered.clone());
    }
    Ok(page(rendered, content_type))
}

async fn project_page(
    pypi: &Pypi,
    repository: &str,
    base: &str,
    project: &str,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let normalized = pypi::normalize(project);
    if normalized != project {
        let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
        let location = format!("{base}/simple/{normalized}/");
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    let (format, content_type) = negotiate(headers)?;
    let missing = || {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("project {normalized} not found"),
        )
    };
    let revision = pypi
        .packages
        .package_revision(&Rules, repository, &normalized)
        .await?
        .ok_or_else(missing)?;
    let key = format!("{repository}\0{normalized}\0{content_type}\0{base}");
    if let Some(cached) = pypi.cache.get(&key, &revision) {
        return Ok(page(cached, content_type));
    }
    let package = pypi
        .packages
        .package(&Rules, repository, &normalized)
        .await?
        .ok_or_else(missing)?;
    let rendered = Bytes::from(render_project(&package, base, format));
    pypi.cache
        .put(key, package.revision.clone(), rendered.clone());
    Ok(page(rendered, content_type))
}

/// A project page in the asked form.
fn render_project(package: &registry_core::Package, base: &str, format: SimpleFormat) -> String {
    let normalized = package.name.clone();
    // The service gives versions in PEP 440 order.
    let versions: Vec<String> = package
        .versions
        .iter()
        .filter(|v| v.status != VersionStatus::Hidden)
        .map(|v| v.version.clone())
        .collect();
    let mut files = Vec::new();
    for version in package
        .versions
        .iter()
        .filter(|v| v.status != VersionStatus::Hidden)
    {
        let yanked = match &version.status {
            VersionStatus::Yanked(reason) => Some(reason.clone()),
            _ => None,
        };
        for file in &version.files {
            files.push(SimpleFile {
                filename: file.name.clone(),
                url: format!(
                    "{base}/files/{normalized}/{}/{}",
                    version.version, file.name
                ),
                sha256: file.blob.digest.hex().to_owned(),
                size: file.blob.size,
                upload_time: file.created_at.0,
                requires_python: file.attributes.get("requires_python").cloned(),
                // A proxied file yanked on its own carries the reason (PEP 592 yanks files).
                yanked: yanked
                    .clone()
                    .or_else(|| file.attributes.get("yanked").cloned()),
                core_metadata: file.sidecar.as_ref().map(|s| s.digest.hex().to_owned()),
            });
        }
    }
    let project = SimpleProject {
        name: normalized,
        versions,
        files,
    };
    match format {
        SimpleFormat::Html => pypi::project_html(&project),
        SimpleFormat::Json => pypi::project_json(&project).to_string(),
    }
}

async fn download(
    pypi: &Pypi,
    repository: &str,
    project: &str,
    version: &str,
    file: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    let (file, want_metadata) = match file.strip_suffix(".metadata") {
        Some(dist) => (dist, true),
        None => (file, false),
    };
    let (_, found) = pypi
        .packages
        .file(&Rules, repository, project, Some(version), file)
        .await?
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("{file} not found")))?;
    let blob = if want_metadata {
        found.sidecar.clone().ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                format!("{file} has no metadata file"),
            )
        })?
    } else {
        found.blob.clone()
    };
    let content_type = if want_metadata {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    Ok(stored_file_response(
        &pypi.packages,
        &Rules,
        repository,
        &blob,
        (headers, content_type, head),
    )
    .await?)
}

async fn yank(
    pypi: &Pypi,
    repository: &str,
    project: &str,
    version: &str,
    reason: Option<String>,
    role: Option<registry_core::Role>,
) -> Result<Response, Failure> {
    let status = match reason {
        Some(reason) => VersionStatus::Yanked(reason),
        None => VersionStatus::Default,
    };
    pypi.packages
        .set_version_status(&Rules, repository, project, version, &status, role)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
