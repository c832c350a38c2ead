//! The Terraform provider registry protocol (`providers.v1`), served with the module registry
//! by [`crate::terraform::router`].
//!
//! | request | does |
//! |---|---|
//! | `PUT /terraform/providers/v1/<namespace>/<type>/<version>/<file>` | uploads one file of a release: a platform's zip, the `SHA256SUMS`, its `.sig`, or `signing-key.asc` (201; 409 when the file is there) |
//! | `GET …/<namespace>/<type>/versions` | the versions whose release is complete, with their platforms |
//! | `GET …/<namespace>/<type>/<version>/download/<os>/<arch>` | where the platform's zip, the sums and the signature are, the zip's SHA-256 and the signing key |
//! | `GET`, `HEAD …/<namespace>/<type>/<version>/<file>` | a release file |
//! | `DELETE …/<namespace>/<type>/<version>` | deletes the version |
//!
//! Access is as for modules; the URLs a download document hands out carry a token signed for
//! their one file when authentication is on. A release is complete once it has at least one
//! zip, the sums, the signature and the key; the sums must list each zip with the digest
//! computed here, or its download is refused (terraform checks the signature itself, with
//! the key served).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry_core::{
    Action, Error, NewPackageFile, Package, PackageFile, Release, Role, VersionStatus,
};
use registry_formats::terraform::providers::{
    self, Download, MAX_RELEASE_DOCUMENT, ProviderVersion, ReleaseFile,
};
use registry_formats::terraform::{self, Terraform as Rules};

use crate::external_url::base_url;
use crate::terraform::{Failure, PROVIDERS_BASE, TerraformApi, json_response, query_token};
use crate::transfer::{body_stream, file_response, read_stored, requested_range};

/// A provider in a request.
struct Provider<'a> {
    repository: &'a str,
    kind: &'a str,
}

impl Provider<'_> {
    fn package(&self) -> String {
        providers::provider_package(self.kind)
    }

    fn missing(&self, what: &str) -> Failure {
        Failure::not_found(format!(
            "provider {}/{}{what} not found",
            self.repository, self.kind
        ))
    }

    /// The URL of one release file, signed for it when authentication is on.
    fn file_url(
        &self,
        api: &TerraformApi,
        base: &str,
        version: &str,
        file: &str,
    ) -> Result<String, Failure> {
        let mut url = format!(
            "{base}{PROVIDERS_BASE}{}/{}/{version}/{file}",
            self.repository, self.kind
        );
        if api.auth.is_some() {
            url.push_str("?token=");
            url.push_str(&api.signer.sign(&self.file_key(version, file))?);
        }
        Ok(url)
    }

    /// What a signed URL names.
    fn file_key(&self, version: &str, file: &str) -> String {
        format!("{}/{}/{version}/{file}", self.repository, self.package())
    }
}

pub(crate) async fn dispatch(State(api): State<Arc<TerraformApi>>, request: Request) -> Response {
    let result = async {
        let path = request.uri().path().to_owned();
        // The route is `/terraform/providers/v1/{*path}`: the prefix is always there.
        let rest = path.strip_prefix(PROVIDERS_BASE).unwrap_or_default();
        let parts: Vec<&str> = rest.split('/').collect();
        let [repository, kind, rest @ ..] = parts.as_slice() else {
            return Err(Failure::not_found("no such resource"));
        };
        registry_core::package::check_repository_name(repository)?;
        providers::check_provider_type(kind)?;
        let provider = Provider { repository, kind };
        let method = request.method().clone();
        let head = method == Method::HEAD;
        let read = matches!(method, Method::GET | Method::HEAD);
        match (rest, &method) {
            (["versions"], _) if read => {
                api.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                versions(&api, &provider, head).await
            }
            ([version, "download", os, arch], _) if read => {
                api.authorize(request.headers(), repository, Action::Pull)
                    .await?;
                let base = base_url(request.extensions(), request.headers());
                download(&api, &provider, version, os, arch, &base, head).await
            }
            ([version, file], &Method::PUT) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Push)
                    .await?;
                upload(&api, &provider, version, file, role, request).await
            }
            ([version, file], _) if read => {
                let signed = query_token(request.uri().query())
                    .is_some_and(|t| api.signer.allows(&t, &provider.file_key(version, file)));
                if !signed {
                    api.authorize(request.headers(), repository, Action::Pull)
                        .await?;
                }
                serve_file(&api, &provider, version, file, request.headers(), head).await
            }
            ([version], &Method::DELETE) => {
                let role = api
                    .authorize(request.headers(), repository, Action::Delete)
                    .await?;
                api.packages
                    .delete_version(&Rules, repository, &provider.package(), version, role)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ if read => Err(Failure::not_found("no such resource")),
            _ => Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on this path"),
            )),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// One version's release files, by kind.
struct ReleaseFiles<'a> {
    archives: Vec<(String, String, &'a PackageFile)>,
    sums: Option<&'a PackageFile>,
    signature: Option<&'a PackageFile>,
    key: Option<&'a PackageFile>,
}

impl<'a> ReleaseFiles<'a> {
    fn of(kind: &str, version: &str, files: &'a [PackageFile]) -> Self {
        let mut release = ReleaseFiles {
            archives: Vec::new(),
            sums: None,
            signature: None,
            key: None,
        };
        for file in files {
            match providers::parse_release_file(&file.name, kind, version) {
                Ok(ReleaseFile::Archive { os, arch }) => release.archives.push((os, arch, file)),
                Ok(ReleaseFile::Sums) => release.sums = Some(file),
                Ok(ReleaseFile::Signature) => release.signature = Some(file),
                Ok(ReleaseFile::SigningKey) => release.key = Some(file),
                Err(_) => {}
            }
        }
        release
    }

    fn complete(&self) -> bool {
        !self.archives.is_empty()
            && self.sums.is_some()
            && self.signature.is_some()
            && self.key.is_some()
    }
}

async fn find(api: &TerraformApi, provider: &Provider<'_>) -> Result<Package, Failure> {
    api.packages
        .package(&Rules, provider.repository, &provider.package())
        .await?
        .ok_or_else(|| provider.missing(""))
}

async fn versions(
    api: &TerraformApi,
    provider: &Provider<'_>,
    head: bool,
) -> Result<Response, Failure> {
    let package = find(api, provider).await?;
    let listed: Vec<ProviderVersion> = package
        .versions
        .iter()
        .filter(|v| v.status != VersionStatus::Hidden)
        .filter_map(|v| {
            let release = ReleaseFiles::of(provider.kind, &v.version, &v.files);
            release.complete().then(|| ProviderVersion {
                version: v.version.clone(),
                platforms: release
                    .archives
                    .iter()
                    .map(|(os, arch, _)| (os.clone(), arch.clone()))
                    .collect(),
            })
        })
        .collect();
    Ok(json_response(
        providers::versions_document(&listed).to_string(),
        head,
    ))
}

async fn download(
    api: &TerraformApi,
    provider: &Provider<'_>,
    version: &str,
    os: &str,
    arch: &str,
    base: &str,
    head: bool,
) -> Result<Response, Failure> {
    let key = terraform::parse_version(version)?.to_string();
    let package = find(api, provider).await?;
    let missing = || provider.missing(&format!(" {key} for {os}/{arch}"));
    let stored = package.version(&key).ok_or_else(missing)?;
    let release = ReleaseFiles::of(provider.kind, &key, &stored.files);
    let (Some(sums), Some(signature), Some(signing_key)) =
        (release.sums, release.signature, release.key)
    else {
        return Err(Failure::not_found(format!(
            "the release {key} is incomplete: it needs its SHA256SUMS, SHA256SUMS.sig and {}",
            providers::SIGNING_KEY
        )));
    };
    let (_, _, archive) = release
        .archives
        .iter()
        .find(|(o, a, _)| o == os && a == arch)
        .ok_or_else(missing)?;
    let listed = providers::parse_sums(
        &read_stored(&api.packages, &sums.blob, MAX_RELEASE_DOCUMENT).await?,
    )?;
    let shasum = archive.blob.digest.hex().to_owned();
    if !listed
        .iter()
        .any(|(digest, name)| name == &archive.name && digest == &shasum)
    {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            format!(
                "the release's SHA256SUMS does not list {} with its SHA-256 {shasum}",
                archive.name
            ),
        ));
    }
    let armored = read_stored(&api.packages, &signing_key.blob, MAX_RELEASE_DOCUMENT).await?;
    let document = providers::download_document(
        os,
        arch,
        &Download {
            filename: archive.name.clone(),
            download_url: provider.file_url(api, base, &key, &archive.name)?,
            shasums_url: provider.file_url(api, base, &key, &sums.name)?,
            shasums_signature_url: provider.file_url(api, base, &key, &signature.name)?,
            shasum,
            key_id: providers::key_id(&armored)?,
            ascii_armor: String::from_utf8_lossy(&armored).into_owned(),
        },
    );
    Ok(json_response(document.to_string(), head))
}

async fn upload(
    api: &TerraformApi,
    provider: &Provider<'_>,
    version: &str,
    file: &str,
    role: Option<Role>,
    request: Request,
) -> Result<Response, Failure> {
    let key = terraform::parse_version(version)?.to_string();
    let kind = providers::parse_release_file(file, provider.kind, &key)?;
    let name = provider.package();
    let packages = &api.packages;
    packages
        .prepare_publish(&Rules, provider.repository, &name, role)
        .await?;
    let stored = packages
        .store_file(Default::default(), body_stream(request.into_body()))
        .await?;
    match kind {
        ReleaseFile::Archive { .. } => {
            packages
                .read_blocking(&stored.blob, |reader| {
                    registry_formats::archive::open_zip(
                        reader,
                        "the provider archive",
                        registry_formats::archive::ZipLimits::default(),
                    )
                    .map(drop)
                })
                .await??;
        }
        ReleaseFile::Sums => {
            let sums = providers::parse_sums(
                &read_stored(packages, &stored.blob, MAX_RELEASE_DOCUMENT).await?,
            )?;
            for (_, listed) in &sums {
                if !matches!(
                    providers::parse_release_file(listed, provider.kind, &key),
                    Ok(ReleaseFile::Archive { .. })
                ) {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        format!("the SHA256SUMS lists {listed}, no archive of this release"),
                    ));
                }
            }
        }
        ReleaseFile::Signature => {
            if stored.blob.size > MAX_RELEASE_DOCUMENT {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "the signature is too large",
                ));
            }
        }
        ReleaseFile::SigningKey => {
            providers::key_id(&read_stored(packages, &stored.blob, MAX_RELEASE_DOCUMENT).await?)?;
        }
    }
    let release = Release {
        name: name.clone(),
        version: key.clone(),
        metadata: "{}".into(),
        files: vec![NewPackageFile {
            name: file.to_owned(),
            blob: stored.blob,
            digests: stored.digests,
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: Vec::new(),
    };
    // The first file creates the version; the others are attached to it (a race between two
    // first files makes the loser attach).
    let mut outcome = packages
        .attach_files(&Rules, provider.repository, role, release.clone())
        .await;
    if matches!(outcome, Err(Error::PackageUnknown { .. })) {
        outcome = match packages
            .publish(&Rules, provider.repository, role, release.clone())
            .await
        {
            Err(Error::PackageConflict { .. }) => {
                packages
                    .attach_files(&Rules, provider.repository, role, release)
                    .await
            }
            other => other,
        };
    }
    outcome.map_err(|e| match e {
        Error::PackageConflict { .. } => Failure::new(
            StatusCode::CONFLICT,
            format!(
                "{file} of {}/{} {key} already exists",
                provider.repository, provider.kind
            ),
        ),
        other => other.into(),
    })?;
    Ok(StatusCode::CREATED.into_response())
}

async fn serve_file(
    api: &TerraformApi,
    provider: &Provider<'_>,
    version: &str,
    file: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    let (_, found) = api
        .packages
        .file(
            &Rules,
            provider.repository,
            &provider.package(),
            Some(version),
            file,
        )
        .await?
        .ok_or_else(|| provider.missing(&format!(" {version} {file}")))?;
    let range = requested_range(headers, found.blob.size)?;
    let read = api
        .packages
        .read(&Rules, provider.repository, &found.blob, range)
        .await?;
    let content_type = if file.ends_with(".zip") {
        "application/zip"
    } else {
        "application/octet-stream"
    };
    let mut response = file_response(read, range.is_some(), content_type, head);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", found.blob.digest.hex())) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
