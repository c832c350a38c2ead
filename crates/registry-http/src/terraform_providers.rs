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
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use registry_core::{
    Action, BlobRef, Error, NewPackageFile, Package, PackageFile, Release, Role, VersionStatus,
};
use registry_formats::terraform::providers::{
    self, Download, MAX_RELEASE_DOCUMENT, ProviderVersion, ReleaseFile,
};
use registry_formats::terraform::{self, Terraform as Rules};

use crate::external_url::base_url;
use crate::terraform::{Failure, PROVIDERS_BASE, TerraformApi, json_response, query_token};
use crate::transfer::{
    body_stream, declared_length, document_response, read_bounded, read_stored,
    stored_file_response,
};

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
        file: &PackageFile,
    ) -> Result<String, Failure> {
        let mut url = format!(
            "{base}{PROVIDERS_BASE}{}/{}/{version}/{}",
            self.repository, self.kind, file.name
        );
        if api.auth.is_some() {
            url.push_str("?token=");
            url.push_str(
                &api.signer
                    .sign(&self.file_key(version, &file.name), &file.blob.digest)?,
            );
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
                // A signed URL opens the file it was made for: the lookup comes first, its
                // answer (even a 404) only after the caller is let in.
                let found = api
                    .packages
                    .file(&Rules, repository, &provider.package(), Some(version), file)
                    .await?;
                let signed = match (query_token(request.uri().query()), &found) {
                    (Some(token), Some((_, stored))) => api.signer.allows(
                        &token,
                        &provider.file_key(version, file),
                        &stored.blob.digest,
                    ),
                    _ => false,
                };
                if !signed {
                    api.authorize(request.headers(), repository, Action::Pull)
                        .await?;
                }
                let (_, found) =
                    found.ok_or_else(|| provider.missing(&format!(" {version} {file}")))?;
                serve_file(&api, &provider, &found, request.headers(), head).await
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
    manifest: Option<&'a PackageFile>,
}

impl<'a> ReleaseFiles<'a> {
    fn of(kind: &str, version: &str, files: &'a [PackageFile]) -> Self {
        let mut release = ReleaseFiles {
            archives: Vec::new(),
            sums: None,
            signature: None,
            key: None,
            manifest: None,
        };
        for file in files {
            match providers::parse_release_file(&file.name, kind, version) {
                Ok(ReleaseFile::Archive { os, arch }) => release.archives.push((os, arch, file)),
                Ok(ReleaseFile::Sums) => release.sums = Some(file),
                Ok(ReleaseFile::Signature) => release.signature = Some(file),
                Ok(ReleaseFile::SigningKey) => release.key = Some(file),
                Ok(ReleaseFile::Manifest) => release.manifest = Some(file),
                Err(_) => {}
            }
        }
        release
    }

    /// The plugin protocols its manifest names (5.0 without one).
    async fn protocols(&self, api: &TerraformApi) -> Result<Vec<String>, Failure> {
        match self.manifest {
            None => Ok(providers::default_protocols()),
            Some(manifest) => Ok(providers::manifest_protocols(
                &read_stored(&api.packages, &manifest.blob, MAX_RELEASE_DOCUMENT).await?,
            )?),
        }
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
    // Rendered once per revision of the package (read from the store, so exact on every
    // instance).
    let revision = api
        .packages
        .package_revision(&Rules, provider.repository, &provider.package())
        .await?
        .ok_or_else(|| provider.missing(""))?;
    let key = format!("{}\0{}\0versions", provider.repository, provider.package());
    let body = api
        .cache
        .get_or_render(key, revision, async {
            let package = find(api, provider).await?;
            let mut listed = Vec::new();
            for version in package
                .versions
                .iter()
                .filter(|v| v.status != VersionStatus::Hidden)
            {
                let release = ReleaseFiles::of(provider.kind, &version.version, &version.files);
                if release.complete() {
                    listed.push(ProviderVersion {
                        version: version.version.clone(),
                        platforms: release
                            .archives
                            .iter()
                            .map(|(os, arch, _)| (os.clone(), arch.clone()))
                            .collect(),
                        protocols: release.protocols(api).await?,
                    });
                }
            }
            Ok::<_, Failure>(bytes::Bytes::from(
                providers::versions_document(&listed).to_string(),
            ))
        })
        .await?;
    Ok(document_response(body, "application/json", head))
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
            download_url: provider.file_url(api, base, &key, archive)?,
            shasums_url: provider.file_url(api, base, &key, sums)?,
            shasums_signature_url: provider.file_url(api, base, &key, signature)?,
            shasum,
            key_id: providers::key_id(&armored)?,
            ascii_armor: String::from_utf8_lossy(&armored).into_owned(),
            protocols: release.protocols(api).await?,
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
    let stored = match kind {
        ReleaseFile::Archive { .. } => {
            let stored = packages
                .store_file(Default::default(), body_stream(request.into_body()))
                .await?;
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
            stored
        }
        // The release's documents are small: read whole (bounded, before anything is
        // stored), checked, then kept.
        _ => {
            let declared = declared_length(request.headers());
            let bytes = read_bounded(
                request.into_body(),
                declared,
                MAX_RELEASE_DOCUMENT as usize,
                "a release document",
            )
            .await?;
            match kind {
                ReleaseFile::Sums => {
                    for (_, listed) in providers::parse_sums(&bytes)? {
                        if !matches!(
                            providers::parse_release_file(&listed, provider.kind, &key),
                            Ok(ReleaseFile::Archive { .. } | ReleaseFile::Manifest)
                        ) {
                            return Err(Failure::new(
                                StatusCode::BAD_REQUEST,
                                format!("the SHA256SUMS lists {listed}, no file of this release"),
                            ));
                        }
                    }
                }
                ReleaseFile::SigningKey => {
                    providers::key_id(&bytes)?;
                }
                ReleaseFile::Manifest => {
                    providers::manifest_protocols(&bytes)?;
                }
                _ => {}
            }
            packages.store_bytes(Default::default(), bytes).await?
        }
    };
    check_against_sums(api, provider, &key, file, &kind, &stored.blob).await?;
    let blob = stored.blob.clone();
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
    // One transaction adds the file, creating the version with the first one.
    packages
        .add_files(&Rules, provider.repository, role, release)
        .await
        .map_err(|e| match e {
            Error::PackageConflict { .. } => Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "{file} of {}/{} {key} already exists",
                    provider.repository, provider.kind
                ),
            ),
            other => other.into(),
        })?;
    // A zip and sums that disagree, uploaded at once, each passed the check before the other
    // landed: checked again now both are in, the file goes out again (both may) and the
    // release stays consistent.
    if let Err(refused) = check_against_sums(api, provider, &key, file, &kind, &blob).await {
        packages
            .delete_file(&Rules, provider.repository, &name, &key, file, None)
            .await?;
        return Err(refused);
    }
    Ok(StatusCode::CREATED.into_response())
}

/// Keeps a release consistent with its `SHA256SUMS` as files arrive: an archive or manifest
/// must have the digest the stored sums list for it; new sums must list every archive stored
/// with its digest.
async fn check_against_sums(
    api: &TerraformApi,
    provider: &Provider<'_>,
    version: &str,
    file: &str,
    kind: &ReleaseFile,
    blob: &BlobRef,
) -> Result<(), Failure> {
    let Some(package) = api
        .packages
        .package(&Rules, provider.repository, &provider.package())
        .await?
    else {
        return Ok(());
    };
    let Some(stored) = package.version(version) else {
        return Ok(());
    };
    let release = ReleaseFiles::of(provider.kind, version, &stored.files);
    let disagree = |name: &str, listed: Option<&str>, digest: &str| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            match listed {
                Some(listed) => format!(
                    "the release's SHA256SUMS lists {name} with {listed}, not its SHA-256 {digest}"
                ),
                None => format!("the release's SHA256SUMS does not list {name}"),
            },
        )
    };
    match kind {
        ReleaseFile::Archive { .. } | ReleaseFile::Manifest => {
            let Some(sums) = release.sums else {
                return Ok(());
            };
            let listed = providers::parse_sums(
                &read_stored(&api.packages, &sums.blob, MAX_RELEASE_DOCUMENT).await?,
            )?;
            let found = listed
                .iter()
                .find(|(_, n)| n == file)
                .map(|(d, _)| d.as_str());
            if found != Some(blob.digest.hex()) {
                return Err(disagree(file, found, blob.digest.hex()));
            }
        }
        ReleaseFile::Sums => {
            let listed = providers::parse_sums(
                &read_stored(&api.packages, blob, MAX_RELEASE_DOCUMENT).await?,
            )?;
            let archives = release.archives.iter().map(|(_, _, f)| *f);
            for stored in archives.chain(release.manifest) {
                let found = listed
                    .iter()
                    .find(|(_, n)| *n == stored.name)
                    .map(|(d, _)| d.as_str());
                if found != Some(stored.blob.digest.hex()) {
                    return Err(disagree(&stored.name, found, stored.blob.digest.hex()));
                }
            }
        }
        ReleaseFile::Signature | ReleaseFile::SigningKey => {}
    }
    Ok(())
}

async fn serve_file(
    api: &TerraformApi,
    provider: &Provider<'_>,
    found: &PackageFile,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    let content_type = if found.name.ends_with(".zip") {
        "application/zip"
    } else {
        "application/octet-stream"
    };
    Ok(stored_file_response(
        &api.packages,
        &Rules,
        provider.repository,
        &found.blob,
        (headers, content_type, head),
    )
    .await?)
}
