//! Files of proxy repositories: fetched once per path (concurrent misses wait for the first),
//! streamed into the blob store while hashed with the algorithm the upstream declares (in its
//! metadata, or for a file addressed by path in the checksum file beside it), compared, and
//! only then recorded. A body that breaks off, drips slower than a KiB per timeout or 64 KiB/s
//! on average, or does not match leaves nothing but an unreferenced blob, which the collector
//! takes; the upstream's own error reaches the client, and every request for the same file in
//! the next seconds (the failure is remembered, so waiters do not ask again one by one).

use std::sync::{Arc, Mutex};

use super::{
    CacheEntry, CacheEntryKind, FormatRules, Packages, counted, kind_conflict, locked, new_entry,
    proxy_parts, record, unasked_304, upstream_error,
};
use crate::proxy::guarded_body;

use crate::error::{Error, Result};
use crate::package::{PackageFile, PackageRepository, PackageVersion, VersionStatus};
use crate::package_service::format::{DeferredFile, ExtraDigests, PathFile, UpstreamPackage};
use crate::proxy::{DeclaredDigest, Fetched, RemoteFile, UpstreamSettings, Validators};
use crate::values::Timestamp;

impl Packages {
    /// A file (package key, version, file name) of a proxy repository `member`, read through
    /// `repositories` (the proxy, and a virtual repository over it): the one its upstream's
    /// metadata (`package`) lists, else one the format addresses by path with a checksum file
    /// beside it ([`crate::UpstreamFormat::path_file`]); with its version. Checked against
    /// the firewall before anything is fetched. `None` when the upstream has no such file.
    pub(in crate::package_service) async fn proxied_file(
        &self,
        rules: &dyn FormatRules,
        repositories: &[&str],
        member: &PackageRepository,
        package: Option<&UpstreamPackage>,
        (key, version, file): (&str, Option<&str>, &str),
    ) -> Result<Option<(String, PackageFile)>> {
        let listed = package.and_then(|p| {
            p.files
                .iter()
                .find(|f| f.name == file && version.is_none_or(|v| f.version == v))
        });
        if let (Some(package), Some(remote)) = (package, listed) {
            // Checked before anything is fetched: a blocked version's file never is.
            self.guard_upstream(rules, repositories, package, &remote.version)
                .await?;
            let entry = self.upstream_file(rules, member, remote).await?;
            return Ok(Some((remote.version.clone(), served(&remote.name, entry))));
        }
        let (format, settings) = proxy_parts(rules, member)?;
        let deferred = package.and_then(|p| {
            p.deferred
                .iter()
                .find(|f| f.name == file && version.is_none_or(|v| f.version == v))
        });
        if let (Some(package), Some(deferred)) = (package, deferred) {
            self.guard_upstream(rules, repositories, package, &deferred.version)
                .await?;
            let entry = self
                .deferred_file(rules, member, format, settings, deferred)
                .await?;
            return Ok(Some((
                deferred.version.clone(),
                served(&deferred.name, entry),
            )));
        }
        let Some((version, path_file)) =
            version.and_then(|v| Some((v, format.path_file(key, v, file)?)))
        else {
            // A version the metadata lists whose file it gives no digest for (a NuGet entry
            // without `packageHash`): said, not a bare 404.
            if let (Some(package), Some(v)) = (package, version)
                && package.package.version(v).is_some()
                && !package.files.iter().any(|f| f.version == v)
                && !package.deferred.iter().any(|f| f.version == v)
            {
                return Err(upstream_error(
                    settings,
                    format!(
                        "its metadata lists {key} {v} without a digest for its files, so {file} \
                         is not fetched (it could not be verified)"
                    ),
                ));
            }
            return Ok(None);
        };
        // What depends on the name and version only, before anything is fetched; the
        // version's age once the file says when it was published (its `Last-Modified`).
        let listed_version = package.and_then(|p| p.package.version(version));
        let mut checked = listed_version.cloned().unwrap_or_else(|| PackageVersion {
            version: version.to_owned(),
            status: VersionStatus::Default,
            metadata: "{}".to_owned(),
            files: Vec::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        });
        self.check_version(rules, repositories, key, &checked, true, "download")
            .await?;
        let name = &member.name;
        let cached = self.metadata.cache_entry(name, &path_file.path).await?;
        let entry = match cached {
            Some(entry) if entry.kind != CacheEntryKind::File => {
                return Err(kind_conflict(settings, &path_file.path));
            }
            Some(entry) => {
                record(|r| r.hits += 1);
                self.count_download(name, &path_file.path);
                entry
            }
            None => {
                let Some(digest) = self.discover_checksum(member, settings, &path_file).await?
                else {
                    return Ok(None);
                };
                let remote = RemoteFile {
                    version: version.to_owned(),
                    name: file.to_owned(),
                    url: format!("{}/{}", settings.base(), path_file.path),
                    digest,
                };
                self.upstream_file(rules, member, &remote).await?
            }
        };
        checked.created_at = entry
            .validators
            .last_modified_time()
            .unwrap_or(entry.created_at);
        self.check_version(rules, repositories, key, &checked, true, "download")
            .await?;
        Ok(Some((version.to_owned(), served(file, entry))))
    }

    /// A file whose digest another document declares: the cached copy, else the document read
    /// (bounded, on the upstream's origin) for the digest and the file fetched and verified.
    async fn deferred_file(
        &self,
        rules: &dyn FormatRules,
        member: &PackageRepository,
        format: &dyn crate::UpstreamFormat,
        settings: &UpstreamSettings,
        file: &DeferredFile,
    ) -> Result<CacheEntry> {
        let path = remote_path(settings, &file.url)?;
        match self.metadata.cache_entry(&member.name, &path).await? {
            Some(entry) if entry.kind == CacheEntryKind::File => {
                record(|r| r.hits += 1);
                self.count_download(&member.name, &path);
                return Ok(entry);
            }
            Some(_) => return Err(kind_conflict(settings, &path)),
            None => {}
        }
        // Only the upstream's own documents (not its file origins') declare digests.
        if !crate::proxy::origin(&file.declared_in).eq_ignore_ascii_case(settings.origin()) {
            return Err(upstream_error(
                settings,
                format!(
                    "{} would declare {}'s digest from outside the upstream's origin",
                    file.declared_in, file.name
                ),
            ));
        }
        remote_path(settings, &file.declared_in)?;
        let what = format!("fetching {}", file.declared_in);
        let read = async {
            match self
                .ask_upstream(
                    settings,
                    &file.declared_in,
                    "application/json",
                    &Validators::default(),
                    &what,
                )
                .await?
            {
                Fetched::Found { body, length, .. } => {
                    self.read_metadata_body(body, length, MAX_DECLARING_DOCUMENT, settings)
                        .await
                }
                Fetched::NotFound => Err(upstream_error(
                    settings,
                    format!(
                        "it answers 404 for {}, which declares {}'s digest",
                        file.declared_in, file.name
                    ),
                )),
                Fetched::NotModified => Err(unasked_304(settings, &file.declared_in)),
            }
        };
        let document = counted(
            tokio::time::timeout(settings.timeout(), read)
                .await
                .unwrap_or_else(|_| Err(settings.too_slow(&what))),
        )?;
        let digest = format.read_declared(&document).ok_or_else(|| {
            upstream_error(
                settings,
                format!("{} declares no digest for {}", file.declared_in, file.name),
            )
        })?;
        let remote = RemoteFile {
            version: file.version.clone(),
            name: file.name.clone(),
            url: file.url.clone(),
            digest,
        };
        self.upstream_file(rules, member, &remote).await
    }

    /// [`Packages::declared_checksum`] once per path at a time (concurrent misses wait for the
    /// first), its answer remembered: a missing file for the upstream's `not_found_ttl`, a
    /// failure for a few seconds — a flood of requests for missing or failing artifacts does
    /// not become a flood of checksum requests upstream.
    async fn discover_checksum(
        &self,
        member: &PackageRepository,
        settings: &UpstreamSettings,
        file: &PathFile,
    ) -> Result<Option<DeclaredDigest>> {
        let key = (member.name.clone(), format!("{}#checksum", file.path));
        let remembered = |this: &Self| -> Option<Result<Option<DeclaredDigest>>> {
            if this.proxy.known_missing(&key, settings.not_found_ttl()) {
                return Some(Ok(None));
            }
            this.proxy.recent_failure(&key).map(Err)
        };
        if let Some(answer) = remembered(self) {
            record(|r| r.hits += 1);
            return answer;
        }
        let _discovering = self.proxy.lock(&key.0, &key.1).await;
        if let Some(answer) = remembered(self) {
            return answer;
        }
        record(|r| r.misses += 1);
        match counted(self.declared_checksum(settings, file).await) {
            Ok(None) => {
                self.proxy.remember_missing(key);
                Ok(None)
            }
            Ok(found) => Ok(found),
            Err(error) => {
                if let Error::Upstream { .. } = error {
                    self.proxy.remember_failure(key, &error);
                }
                Err(error)
            }
        }
    }

    /// The digest a path file's checksum files declare: the first of them the upstream has;
    /// `None` when the file itself is missing (no checksum file either).
    async fn declared_checksum(
        &self,
        settings: &UpstreamSettings,
        file: &PathFile,
    ) -> Result<Option<DeclaredDigest>> {
        for (algorithm, path) in &file.checksums {
            let url = format!("{}/{path}", settings.base());
            let what = format!("fetching {path}");
            let answer = self
                .ask_upstream(settings, &url, "*/*", &Validators::default(), &what)
                .await;
            let body = match answer? {
                Fetched::Found { body, length, .. } => {
                    let read = self.read_metadata_body(body, length, MAX_CHECKSUM, settings);
                    tokio::time::timeout(settings.timeout(), read)
                        .await
                        .unwrap_or_else(|_| Err(settings.too_slow(&what)))
                        .map_err(|e| match e {
                            Error::Upstream { reason, .. } if reason.contains("over the limit") => {
                                upstream_error(
                                    settings,
                                    format!(
                                        "its checksum file {path} is over {MAX_CHECKSUM} bytes"
                                    ),
                                )
                            }
                            other => other,
                        })?
                }
                Fetched::NotFound => continue,
                Fetched::NotModified => return Err(unasked_304(settings, path)),
            };
            let text = String::from_utf8_lossy(&body);
            return match algorithm.read_checksum(&text) {
                Some(digest) => Ok(Some(digest)),
                None => Err(upstream_error(
                    settings,
                    format!("{path} holds no {} checksum", algorithm.name()),
                )),
            };
        }
        // No checksum: is the file there at all? Without a declared digest it is not taken.
        let url = format!("{}/{}", settings.base(), file.path);
        let what = format!("fetching {}", file.path);
        match self
            .ask_upstream(settings, &url, "*/*", &Validators::default(), &what)
            .await?
        {
            Fetched::NotFound => Ok(None),
            _ => Err(upstream_error(
                settings,
                format!(
                    "it serves {} without a checksum file beside it, so it cannot be verified",
                    file.path
                ),
            )),
        }
    }

    /// A file a proxy repository's upstream declares: the cached copy when it was verified
    /// against the same declaration, else fetched now (one request per file at a time),
    /// verified, and kept.
    async fn upstream_file(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        remote: &RemoteFile,
    ) -> Result<CacheEntry> {
        let (_, settings) = proxy_parts(rules, repository)?;
        let path = remote_path(settings, &remote.url)?;
        let declared = remote.digest.as_text();
        let name = &repository.name;
        let usable = |entry: Option<&CacheEntry>| -> Result<bool> {
            match entry {
                Some(e) if e.kind != CacheEntryKind::File => Err(kind_conflict(settings, &path)),
                Some(e) => Ok(e.declared.as_deref() == Some(declared.as_str())),
                None => Ok(false),
            }
        };
        let mut entry = self.metadata.cache_entry(name, &path).await?;
        let mut fetched = false;
        if !usable(entry.as_ref())? {
            // The declared algorithm's digest, and those the format serves beside its files.
            let extra = ExtraDigests {
                sha512: rules.extra_digests().sha512
                    || matches!(remote.digest, DeclaredDigest::Sha512(_)),
                sha1: rules.extra_digests().sha1
                    || matches!(remote.digest, DeclaredDigest::Sha1(_)),
                ..rules.extra_digests()
            };
            // Fetched by a task of its own, which finishes (and keeps the file) even when the
            // client gives up first: a large file on a slow link is cached for the retry.
            let task = {
                let (this, repository, remote, path) = (
                    self.clone(),
                    repository.clone(),
                    remote.clone(),
                    path.clone(),
                );
                let declared = declared.clone();
                // Its upstream requests carry the client's `Via` hops, as the client's own do.
                let fetch = async move {
                    let settings = repository.settings.upstream.as_ref().expect("a proxy");
                    let name = &repository.name;
                    let _fetching = this.proxy.lock(name, &path).await;
                    let entry = this.metadata.cache_entry(name, &path).await?;
                    if let Some(entry) = entry
                        && entry.kind == CacheEntryKind::File
                        && entry.declared.as_deref() == Some(declared.as_str())
                    {
                        return Ok((entry, false));
                    }
                    // Whoever held the lock failed just now: its waiters get that failure
                    // rather than asking again, one after another.
                    let key = (name.clone(), path.clone());
                    if let Some(failure) = this.proxy.recent_failure(&key) {
                        return Err(failure);
                    }
                    let fetched = this
                        .fetch_file(&repository, settings, (&remote, extra), &path)
                        .await;
                    match fetched {
                        Ok(fetched) => {
                            this.proxy.forget_failure(&key);
                            Ok((fetched, true))
                        }
                        Err(error) => {
                            if let Error::Upstream { .. } = error {
                                this.proxy.remember_failure(key, &error);
                            }
                            Err(error)
                        }
                    }
                };
                tokio::spawn(crate::proxy::observe_proxy(
                    crate::proxy::incoming_via(),
                    fetch,
                ))
            };
            let (answer, report) = task
                .await
                .map_err(|e| Error::backend(format!("the fetch of {path} failed: {e}")))?;
            crate::proxy::report::absorb(report);
            let (found, by_us) = counted(answer)?;
            entry = Some(found);
            fetched = by_us;
        }
        record(|r| match fetched {
            true => r.misses += 1,
            false => r.hits += 1,
        });
        self.count_download(name, &path);
        Ok(entry.expect("a cached or fetched file"))
    }

    async fn fetch_file(
        &self,
        repository: &PackageRepository,
        settings: &UpstreamSettings,
        (remote, extra): (&RemoteFile, ExtraDigests),
        path: &str,
    ) -> Result<CacheEntry> {
        let fetched = self
            .ask_upstream(
                settings,
                &remote.url,
                "*/*",
                &Validators::default(),
                &format!("fetching {path}"),
            )
            .await?;
        let limit = self.limits.max_file_size;
        let (validators, body) = match fetched {
            Fetched::Found {
                length: Some(length),
                ..
            } if length > limit => {
                return Err(upstream_error(
                    settings,
                    format!("{path} is {length} bytes, over the file limit of {limit}"),
                ));
            }
            Fetched::Found {
                validators, body, ..
            } => (validators, body),
            Fetched::NotFound => {
                return Err(upstream_error(
                    settings,
                    format!("its metadata lists {path}, but it answers 404 for it"),
                ));
            }
            Fetched::NotModified => return Err(unasked_304(settings, path)),
        };
        let failure = Arc::new(Mutex::new(None));
        let body = guarded_body(body, settings, path, Arc::clone(&failure));
        let stored = match self.store_file(extra, body).await {
            Ok(stored) => stored,
            Err(error) => {
                // The upstream's own failure (with whether it was too slow), else ours.
                if let Some(upstream) = locked(&failure).take() {
                    return Err(upstream);
                }
                return Err(match error {
                    Error::SizeInvalid { size, limit, .. } => upstream_error(
                        settings,
                        format!("{path} is {size} bytes or more, over the file limit of {limit}"),
                    ),
                    other => other,
                });
            }
        };
        let actual = match remote.digest {
            DeclaredDigest::Sha256(_) => Some(stored.blob.digest.hex().to_owned()),
            DeclaredDigest::Sha512(_) => stored.digests.sha512.clone(),
            DeclaredDigest::Sha1(_) => stored.digests.sha1.clone(),
        };
        if actual.as_deref() != Some(remote.digest.hex()) {
            // The stored bytes stay unreferenced: the collector takes them.
            return Err(upstream_error(
                settings,
                format!(
                    "{path} does not match the {} digest the upstream declares ({}; it hashes \
                     to {})",
                    remote.digest.algorithm(),
                    remote.digest.hex(),
                    // The declared algorithm's hasher always runs; empty cannot happen.
                    actual.unwrap_or_default()
                ),
            ));
        }
        if let Some(existing) = self.metadata.cache_entry(&repository.name, path).await?
            && existing.kind != CacheEntryKind::File
        {
            return Err(kind_conflict(settings, path));
        }
        let mut entry = new_entry(
            &repository.name,
            path,
            CacheEntryKind::File,
            stored.blob,
            Some(remote.digest.as_text()),
            validators,
        );
        entry.digests = stored.digests;
        self.keep(&entry, settings).await?;
        Ok(entry)
    }
}

/// The largest checksum file read (a hex digest, perhaps a file name after it).
const MAX_CHECKSUM: u64 = 1024;

/// The largest document read for a deferred file's digest (a NuGet catalog leaf).
const MAX_DECLARING_DOCUMENT: u64 = 1 << 20;

/// A cached file as the routers serve it, under the name it is read by.
fn served(name: &str, entry: CacheEntry) -> PackageFile {
    PackageFile {
        name: name.to_owned(),
        blob: entry.blob,
        digests: entry.digests,
        sidecar: None,
        attributes: Default::default(),
        created_at: entry.created_at,
    }
}

/// The cache path of a file URL: below the upstream's base URL, or its path on the upstream's
/// origin, or `<host>/<path>` on one of its file origins. A URL elsewhere, or with dot
/// segments, is refused: requests and trust go to the upstream only, and a path names what is
/// fetched.
fn remote_path(settings: &UpstreamSettings, url: &str) -> Result<String> {
    // `.` and `..` segments (spelled out or escaped) would name one path in the cache and
    // fetch another.
    // `split` always yields a first part; the default is never taken.
    let path_part = url.split(['?', '#']).next().unwrap_or_default();
    let dotted = path_part.split('/').skip(3).any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    });
    if dotted {
        return Err(upstream_error(
            settings,
            format!("its metadata points at {url}, which is not a plain path"),
        ));
    }
    if let Some(path) = url
        .strip_prefix(settings.base())
        .and_then(|p| p.strip_prefix('/'))
    {
        return Ok(path.to_owned());
    }
    let origin = settings.origin();
    if let Some(path) = url.strip_prefix(origin).filter(|p| p.starts_with('/')) {
        return Ok(path.to_owned());
    }
    for extra in &settings.file_origins {
        let extra = extra.trim_end_matches('/');
        if let Some(path) = url.strip_prefix(extra).filter(|p| p.starts_with('/')) {
            let host = extra.split_once("://").map_or(extra, |(_, host)| host);
            return Ok(format!("{host}{path}"));
        }
    }
    Err(upstream_error(
        settings,
        format!("its metadata points at {url}, outside the upstream and its file origins"),
    ))
}
