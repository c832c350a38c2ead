//! Reading through a proxy repository: metadata cached with its validity and revalidated,
//! files fetched once and verified (`files`), concurrent misses coalesced, stale metadata
//! served (and said so) while the upstream fails, the cache administered (`admin`).
//!
//! What requests share lives in [`ProxyState`]: a lock per path being fetched, parsed
//! documents (bounded by count and bytes), upstream `404`s and failures remembered for a short
//! while (so a flood of misses, or of requests while the upstream hangs, asks it once), and
//! download counts not written yet.

mod admin;
mod files;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::Packages;
use super::format::{ExtraDigests, FormatRules, UpstreamFormat, UpstreamPackage};
use crate::blob::{BlobStoreExt, ByteStream};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::package::{BlobRef, PackageRepository};
use crate::proxy::{CacheEntry, CacheEntryKind, Fetched, UpstreamSettings, Validators};
use crate::values::Timestamp;

use crate::proxy::copy_upstream_error;
use crate::proxy::memory::Remembered;
pub(crate) use crate::proxy::report::{counted, mark_stale, record};
pub use admin::UpstreamCheck;

/// Parsed metadata documents kept in memory, at most.
const MAX_PARSED: usize = 512;

/// Bytes of metadata documents parsed and kept in memory, at most.
const MAX_PARSED_BYTES: usize = 256 << 20;

/// Bytes of metadata bodies being received at once, across requests; more wait.
const MAX_METADATA_IN_FLIGHT: usize = 512 << 20;

/// Documents a metadata document may link to (NuGet registration pages of 64 versions: about
/// 64,000 versions).
const MAX_LINKED: usize = 1000;

/// How long a fresh metadata entry is used from memory before the store is asked again (so
/// an entry deleted or replaced through another instance is seen within it).
const FRESH_MEMORY: Duration = Duration::from_secs(2);

/// How long a failed revalidation is remembered: requests meanwhile are answered from it
/// (stale metadata, or the failure) instead of asking the upstream again.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

/// A repository and a path below its upstream.
type CachePath = (String, String);

/// Locks a standard mutex, whose data stays consistent whatever a panicking holder did (every
/// update here is a single insert or removal).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// What proxy reads share across requests of one service.
#[derive(Debug)]
pub(super) struct ProxyState {
    /// One lock per (repository, path) being fetched: concurrent misses wait for the first.
    fetching: crate::proxy::locks::KeyedLocks,
    /// Metadata documents parsed, by the digest of their bytes, with their sizes.
    parsed: Mutex<Parsed>,
    /// Paths the upstream answered `404` for, and when.
    missing: Remembered<()>,
    /// Paths whose refresh failed, when, and how.
    failed: Remembered<Error>,
    /// Fresh metadata entries read lately: until when they may be used without the store.
    fresh: Remembered<BlobRef>,
    /// Bytes of metadata bodies in flight, in KiB permits.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Reads not written yet, per (repository, path): count and last time.
    downloads: Mutex<admin::PendingDownloads>,
    /// Names no hosted member of a virtual repository had lately, per (virtual repository,
    /// name): until when that may be used without asking the members again.
    hosted_absent: Remembered<()>,
}

impl Default for ProxyState {
    fn default() -> Self {
        ProxyState {
            fetching: Default::default(),
            parsed: Mutex::default(),
            missing: Remembered::default(),
            failed: Remembered::default(),
            fresh: Remembered::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_METADATA_IN_FLIGHT >> 10)),
            downloads: Mutex::default(),
            hosted_absent: Remembered::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Parsed {
    documents: HashMap<Digest, (Arc<UpstreamPackage>, usize)>,
    bytes: usize,
}

impl ProxyState {
    async fn lock(&self, repository: &str, path: &str) -> crate::proxy::locks::KeyGuard<'_> {
        self.fetching
            .lock((repository.to_owned(), path.to_owned()))
            .await
    }

    /// Whether the upstream answered `404` for the path within `memory`.
    fn known_missing(&self, key: &CachePath, memory: Duration) -> bool {
        self.missing
            .read(key, |at, ()| (at.elapsed() < memory).then_some(()))
            .is_some()
    }

    fn remember_missing(&self, key: CachePath) {
        self.missing.insert(key, Instant::now(), ());
    }

    /// The failure of the path's last refresh, when recent.
    fn recent_failure(&self, key: &CachePath) -> Option<Error> {
        self.failed.read(key, |at, error| {
            (at.elapsed() < FAILURE_MEMORY).then(|| copy_upstream_error(error))
        })
    }

    fn remember_failure(&self, key: CachePath, error: &Error) {
        self.failed
            .insert(key, Instant::now(), copy_upstream_error(error));
    }

    fn forget_failure(&self, key: &CachePath) {
        self.failed.remove(key);
    }

    /// A fresh metadata entry's blob remembered within [`FRESH_MEMORY`].
    fn remembered_fresh(&self, key: &CachePath) -> Option<BlobRef> {
        self.fresh.read(key, |until, blob| {
            (Instant::now() < *until).then(|| blob.clone())
        })
    }

    /// Remembers a fresh metadata entry until it expires, or [`FRESH_MEMORY`] at most.
    fn remember_fresh(&self, key: CachePath, entry: &CacheEntry, settings: &UpstreamSettings) {
        let left = entry.checked_at.after(settings.metadata_ttl()).0 - Timestamp::now().0;
        let Ok(left) = u64::try_from(left) else {
            return;
        };
        let until = Instant::now() + Duration::from_millis(left).min(FRESH_MEMORY);
        self.fresh.insert(key, until, entry.blob.clone());
    }

    /// Whether no hosted member of the virtual repository had the name within
    /// [`FRESH_MEMORY`].
    pub(super) fn hosted_absent(&self, key: &CachePath) -> bool {
        self.hosted_absent
            .read(key, |until, ()| (Instant::now() < *until).then_some(()))
            .is_some()
    }

    /// Remembers that no hosted member of the virtual repository has the name.
    pub(super) fn remember_hosted_absent(&self, key: CachePath) {
        self.hosted_absent
            .insert(key, Instant::now() + FRESH_MEMORY, ());
    }

    /// Forgets every remembered absence (a publish here may have added the name).
    pub(super) fn forget_hosted_absence(&self) {
        self.hosted_absent.clear();
    }

    /// Forgets what this instance remembers of a repository's cache (after deletions).
    pub(super) fn forget_repository(&self, repository: &str) {
        self.fresh.forget_repository(repository);
        self.missing.forget_repository(repository);
        self.failed.forget_repository(repository);
    }
}

fn fresh(entry: &CacheEntry, settings: &UpstreamSettings) -> bool {
    match entry.kind {
        CacheEntryKind::Metadata => {
            Timestamp::now().0 < entry.checked_at.after(settings.metadata_ttl()).0
        }
        CacheEntryKind::File => true,
    }
}

fn upstream_error(settings: &UpstreamSettings, reason: impl Into<String>) -> Error {
    Error::Upstream {
        upstream: settings.base().to_owned(),
        reason: reason.into(),
        timed_out: false,
    }
}

/// One cache entry as fetched now.
fn new_entry(
    repository: &str,
    path: &str,
    kind: CacheEntryKind,
    blob: BlobRef,
    declared: Option<String>,
    validators: Validators,
) -> CacheEntry {
    let now = Timestamp::now();
    CacheEntry {
        repository: repository.to_owned(),
        path: path.to_owned(),
        kind,
        blob,
        declared,
        validators,
        digests: Default::default(),
        checked_at: now,
        created_at: now,
        downloads: 0,
        last_download: None,
    }
}

/// The refusal of a `304` to a request that sent no validators.
fn unasked_304(settings: &UpstreamSettings, path: &str) -> Error {
    upstream_error(
        settings,
        format!("answered 304 Not Modified to an unconditional request for {path}"),
    )
}

/// The refusal of a path the upstream uses both for a metadata document and for a file.
fn kind_conflict(settings: &UpstreamSettings, path: &str) -> Error {
    upstream_error(
        settings,
        format!("it serves {path} both as a package's metadata and as a file"),
    )
}

impl Packages {
    fn upstream_client(&self) -> Result<&dyn crate::proxy::Upstream> {
        self.upstream.as_deref().ok_or_else(|| Error::Unsupported {
            what: "proxy repositories without an upstream client".into(),
        })
    }

    /// `GET url` at the upstream within its timeout (to the response's headers).
    async fn ask_upstream(
        &self,
        settings: &UpstreamSettings,
        url: &str,
        accept: &str,
        validators: &Validators,
        what: &str,
    ) -> Result<Fetched> {
        let fetch = self
            .upstream_client()?
            .fetch(settings, url, accept, validators);
        tokio::time::timeout(settings.timeout(), fetch)
            .await
            .unwrap_or_else(|_| Err(settings.too_slow(what)))
    }

    /// What a proxy repository's upstream says about the package stored as `key`; `None` when
    /// the upstream does not have it.
    pub(super) async fn upstream_package(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        key: &str,
    ) -> Result<Option<Arc<UpstreamPackage>>> {
        let (format, settings) = proxy_parts(rules, repository)?;
        let path = format.metadata_path(key);
        let Some(blob) = self
            .cached_metadata(repository, settings, format, key, &path)
            .await?
        else {
            return Ok(None);
        };
        if let Some(parsed) = self.parsed(&blob.digest) {
            return Ok(Some(parsed));
        }
        let bytes = self
            .blobs
            .read_to_bytes(&blob.digest, format.max_metadata_size())
            .await?;
        // It was read once before it was kept: failing now is this registry's fault.
        let parsed =
            crate::proxy::cpu_bound(|| format.parse_metadata(key, &bytes, settings.base()))
                .map_err(|e| {
                    Error::backend(format!("cached metadata {path} no longer reads: {e}"))
                })?;
        Ok(Some(self.remember_parsed(&blob, parsed, bytes.len())))
    }

    fn parsed(&self, digest: &Digest) -> Option<Arc<UpstreamPackage>> {
        locked(&self.proxy.parsed)
            .documents
            .get(digest)
            .map(|(package, _)| Arc::clone(package))
    }

    fn remember_parsed(
        &self,
        blob: &BlobRef,
        mut package: UpstreamPackage,
        size: usize,
    ) -> Arc<UpstreamPackage> {
        package.package.revision = revision_of(blob);
        let package = Arc::new(package);
        let mut parsed = locked(&self.proxy.parsed);
        if parsed.documents.len() >= MAX_PARSED || parsed.bytes + size > MAX_PARSED_BYTES {
            parsed.documents.clear();
            parsed.bytes = 0;
        }
        if size <= MAX_PARSED_BYTES {
            parsed.bytes += size;
            parsed
                .documents
                .insert(blob.digest.clone(), (Arc::clone(&package), size));
        }
        package
    }

    /// The blob of a package's metadata document: the cached one while fresh, else
    /// revalidated or fetched (one request per path at a time), else — the upstream failing —
    /// the cached one, stale. `None` when the upstream does not have it.
    async fn cached_metadata(
        &self,
        repository: &PackageRepository,
        settings: &UpstreamSettings,
        format: &dyn UpstreamFormat,
        key: &str,
        path: &str,
    ) -> Result<Option<BlobRef>> {
        let name = &repository.name;
        let cache_path = (name.clone(), path.to_owned());
        if self
            .proxy
            .known_missing(&cache_path, settings.not_found_ttl())
        {
            record(|r| r.hits += 1);
            return Ok(None);
        }
        if let Some(blob) = self.proxy.remembered_fresh(&cache_path) {
            record(|r| r.hits += 1);
            self.count_download(name, path);
            return Ok(Some(blob));
        }
        // A file kept at a metadata document's path (a file URL an upstream made up to
        // collide with it) does not stand for the document: it is replaced when fetched.
        let metadata_entry =
            |e: Option<CacheEntry>| e.filter(|e| e.kind == CacheEntryKind::Metadata);
        let mut entry = metadata_entry(self.metadata.cache_entry(name, path).await?);
        if entry.as_ref().is_none_or(|e| !fresh(e, settings)) {
            let _fetching = self.proxy.lock(name, path).await;
            // Whoever held the lock may have fetched it, or failed to, meanwhile.
            if self
                .proxy
                .known_missing(&cache_path, settings.not_found_ttl())
            {
                return Ok(None);
            }
            entry = metadata_entry(self.metadata.cache_entry(name, path).await?);
            if entry.as_ref().is_none_or(|e| !fresh(e, settings)) {
                let refreshed = match self.proxy.recent_failure(&cache_path) {
                    Some(failure) => Err(failure),
                    None => {
                        record(|r| r.misses += 1);
                        let answer = self
                            .refresh_metadata(
                                repository,
                                settings,
                                format,
                                key,
                                path,
                                entry.as_ref(),
                            )
                            .await;
                        if let Err(error @ Error::Upstream { .. }) = &answer {
                            self.proxy.remember_failure(cache_path.clone(), error);
                        }
                        counted(answer)
                    }
                };
                return match (refreshed, entry) {
                    (Ok(blob), _) => {
                        self.proxy.forget_failure(&cache_path);
                        self.count_download(name, path);
                        Ok(blob)
                    }
                    // Only an upstream's failure is covered by the cached copy.
                    (Err(error @ Error::Upstream { .. }), Some(cached)) => {
                        mark_stale(settings.base(), &error);
                        self.count_download(name, path);
                        Ok(Some(cached.blob))
                    }
                    (Err(error), _) => Err(error),
                };
            }
        }
        record(|r| r.hits += 1);
        self.count_download(name, path);
        if let Some(entry) = &entry {
            self.proxy.remember_fresh(cache_path, entry, settings);
        }
        Ok(entry.map(|e| e.blob))
    }

    /// Asks the upstream for a metadata document (conditionally when one is cached) and
    /// records the answer: a new document, a confirmation, or a `404` (remembered here).
    async fn refresh_metadata(
        &self,
        repository: &PackageRepository,
        settings: &UpstreamSettings,
        format: &dyn UpstreamFormat,
        key: &str,
        path: &str,
        cached: Option<&CacheEntry>,
    ) -> Result<Option<BlobRef>> {
        let url = format!("{}/{path}", settings.base());
        let validators = cached.map(|c| c.validators.clone()).unwrap_or_default();
        let what = format!("fetching {path}");
        let fetch = async {
            let answer = self
                .ask_upstream(settings, &url, format.metadata_accept(), &validators, &what)
                .await?;
            match answer {
                Fetched::Found {
                    validators,
                    length,
                    body,
                    ..
                } => {
                    let limit = format.max_metadata_size();
                    let bytes = self
                        .read_metadata_body(body, length, limit, settings)
                        .await?;
                    let bytes = self.with_linked(format, settings, bytes).await?;
                    Ok(Some((validators, bytes)))
                }
                Fetched::NotModified if cached.is_some() => Ok(None),
                Fetched::NotModified => Err(unasked_304(settings, path)),
                Fetched::NotFound => Err(Error::PackageUnknown {
                    what: format!("{path} at {}", settings.base()),
                }),
            }
        };
        // The timeout covers the whole document, however slowly it drips.
        let answer = tokio::time::timeout(settings.timeout(), fetch)
            .await
            .unwrap_or_else(|_| Err(settings.too_slow(&what)));
        match answer {
            Ok(None) => {
                let cached = cached.expect("304 only answers a conditional request");
                // A 304 may carry new validators; without them the old ones stay.
                self.metadata
                    .confirm_cache_entry(
                        &repository.name,
                        path,
                        &cached.validators,
                        Timestamp::now(),
                    )
                    .await?;
                Ok(Some(cached.blob.clone()))
            }
            Ok(Some((validators, bytes))) => {
                // Only a document the format can read is kept.
                let parsed =
                    crate::proxy::cpu_bound(|| format.parse_metadata(key, &bytes, settings.base()))
                        .map_err(|e| {
                            upstream_error(
                                settings,
                                format!("its metadata for {key} is unusable: {e}"),
                            )
                        })?;
                let size = bytes.len();
                let stored = self.store_bytes(ExtraDigests::default(), bytes).await?;
                self.remember_parsed(&stored.blob, parsed, size);
                let entry = new_entry(
                    &repository.name,
                    path,
                    CacheEntryKind::Metadata,
                    stored.blob.clone(),
                    None,
                    validators,
                );
                self.keep(&entry, settings).await?;
                Ok(Some(stored.blob))
            }
            Err(Error::PackageUnknown { .. }) => {
                self.proxy
                    .remember_missing((repository.name.clone(), path.to_owned()));
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// A metadata document with the documents it links to included
    /// ([`UpstreamFormat::linked_documents`]): each on the upstream's origin, at most
    /// [`MAX_LINKED`], all of them within the document size limit together.
    async fn with_linked(
        &self,
        format: &dyn UpstreamFormat,
        settings: &UpstreamSettings,
        document: Bytes,
    ) -> Result<Bytes> {
        let links = crate::proxy::cpu_bound(|| format.linked_documents(&document));
        if links.is_empty() {
            return Ok(document);
        }
        if links.len() > MAX_LINKED {
            return Err(upstream_error(
                settings,
                format!(
                    "its metadata links {} documents; at most {MAX_LINKED} are read",
                    links.len()
                ),
            ));
        }
        let mut left = format
            .max_metadata_size()
            .saturating_sub(document.len() as u64);
        let mut linked = Vec::with_capacity(links.len());
        for link in links {
            if !crate::proxy::origin(&link).eq_ignore_ascii_case(settings.origin()) {
                return Err(upstream_error(
                    settings,
                    format!("its metadata links {link}, outside the upstream's origin"),
                ));
            }
            let what = format!("fetching {link}");
            let body = match self
                .ask_upstream(
                    settings,
                    &link,
                    format.metadata_accept(),
                    &Validators::default(),
                    &what,
                )
                .await?
            {
                Fetched::Found { length, body, .. } => {
                    self.read_metadata_body(body, length, left, settings)
                        .await?
                }
                _ => {
                    return Err(upstream_error(
                        settings,
                        format!("its metadata links {link}, which it does not serve"),
                    ));
                }
            };
            left = left.saturating_sub(body.len() as u64);
            linked.push((link, body));
        }
        crate::proxy::cpu_bound(|| format.include_linked(&document, linked))
            .map_err(|e| upstream_error(settings, format!("its linked metadata is unusable: {e}")))
    }

    /// Records a cache entry fetched with `settings`, unless the repository's upstream has
    /// changed meanwhile (its cache was cleared; what the old one sent is not kept).
    async fn keep(&self, entry: &CacheEntry, settings: &UpstreamSettings) -> Result<()> {
        let current = self.configured(&entry.repository).await?;
        let same = current
            .settings
            .upstream
            .as_ref()
            .is_some_and(|u| u.base() == settings.base());
        if !same {
            return Err(upstream_error(
                settings,
                format!(
                    "the proxy's upstream changed while {} was fetched; nothing was kept",
                    entry.path
                ),
            ));
        }
        self.metadata.put_cache_entry(entry).await
    }

    /// Reads a whole metadata body, refusing one over `limit` (declared or sent), holding
    /// its bytes against the budget of metadata in flight as they arrive.
    async fn read_metadata_body(
        &self,
        mut body: ByteStream,
        length: Option<u64>,
        limit: u64,
        settings: &UpstreamSettings,
    ) -> Result<Bytes> {
        let too_large = |size: u64| {
            upstream_error(
                settings,
                format!("a metadata document of {size} bytes or more is over the limit of {limit}"),
            )
        };
        if let Some(length) = length.filter(|l| *l > limit) {
            return Err(too_large(length));
        }
        let mut bytes = BytesMut::new();
        let mut permits = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| match e {
                error @ Error::Upstream { .. } => error,
                other => upstream_error(settings, format!("the body broke off: {other}")),
            })?;
            let total = bytes.len() as u64 + chunk.len() as u64;
            if total > limit {
                return Err(too_large(total));
            }
            let kib = u32::try_from(chunk.len().div_ceil(1024)).unwrap_or(u32::MAX);
            let permit = Arc::clone(&self.proxy.in_flight)
                .acquire_many_owned(kib)
                .await
                .map_err(|_| Error::backend("the metadata budget is closed"))?;
            permits.push(permit);
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }
}

/// A proxied package's revision: its metadata document's digest, so every instance renders
/// the same document under the same revision.
fn revision_of(blob: &BlobRef) -> String {
    format!("u{}", &blob.digest.hex()[..32])
}

/// The format's upstream rules and the repository's upstream.
fn proxy_parts<'a>(
    rules: &'a dyn FormatRules,
    repository: &'a PackageRepository,
) -> Result<(&'a dyn UpstreamFormat, &'a UpstreamSettings)> {
    let format = rules.upstream().ok_or_else(|| Error::Unsupported {
        what: format!("{} proxy repositories", rules.format()),
    })?;
    let settings = repository
        .settings
        .upstream
        .as_ref()
        .ok_or_else(|| Error::PolicyInvalid {
            reason: format!("proxy repository {} has no upstream", repository.name),
        })?;
    Ok((format, settings))
}
