//! Reading through a proxy repository: metadata cached with its validity and revalidated,
//! files fetched once and verified, concurrent misses coalesced, stale metadata served (and
//! said so) while the upstream fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::Packages;
use super::format::{ExtraDigests, FormatRules, UpstreamFormat, UpstreamPackage};
use crate::blob::{BlobStoreExt, ByteStream};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::package::{BlobRef, PackageFile, PackageRepository};
use crate::proxy::{
    CacheEntry, CacheEntryKind, DeclaredDigest, Fetched, RemoteFile, UpstreamSettings, Validators,
};
use crate::values::Timestamp;

/// Parsed metadata documents kept in memory, at most.
const MAX_PARSED: usize = 512;

/// How often download counts are written to the store, at most.
const COUNT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What proxy reads share across requests of one service.
#[derive(Debug, Default)]
pub(super) struct ProxyState {
    /// One lock per (repository, path) being fetched: concurrent misses wait for the first.
    fetching: Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>,
    /// Metadata documents parsed, by the digest of their bytes.
    parsed: Mutex<HashMap<Digest, Arc<UpstreamPackage>>>,
    /// Downloads not written yet, per (repository, path): count and last time.
    downloads: Mutex<PendingDownloads>,
}

#[derive(Debug)]
struct PendingDownloads {
    counts: HashMap<(String, String), (u64, Timestamp)>,
    flushed: Instant,
}

impl Default for PendingDownloads {
    fn default() -> Self {
        PendingDownloads {
            counts: HashMap::new(),
            flushed: Instant::now(),
        }
    }
}

/// Metadata a request was served from the cache although its upstream could not revalidate
/// it (down, too slow, failing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleServe {
    /// The upstream's base URL.
    pub upstream: String,
    /// Why it could not revalidate.
    pub reason: String,
}

/// What one request did through proxy repositories, for the HTTP edge to report (headers,
/// metrics, logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyReport {
    /// Metadata and files served from the cache without asking the upstream.
    pub hits: u32,
    /// Metadata and files asked of the upstream (fetched or revalidated).
    pub misses: u32,
    /// Upstream requests that failed.
    pub upstream_errors: u32,
    /// Metadata served stale.
    pub stale: Vec<StaleServe>,
}

tokio::task_local! {
    /// The proxy report of the current request.
    static REPORT: std::cell::RefCell<ProxyReport>;
}

/// Runs `request`, answering with its output what it did through proxy repositories
/// ([`ProxyReport`]).
pub async fn observe_proxy<F: std::future::Future>(request: F) -> (F::Output, ProxyReport) {
    REPORT
        .scope(std::cell::RefCell::new(ProxyReport::default()), async {
            let output = request.await;
            let report = REPORT.with(|r| r.take());
            (output, report)
        })
        .await
}

fn record(change: impl FnOnce(&mut ProxyReport)) {
    let _ = REPORT.try_with(|r| change(&mut r.borrow_mut()));
}

fn mark_stale(upstream: &str, reason: &Error) {
    record(|r| {
        if !r.stale.iter().any(|u| u.upstream == upstream) {
            r.stale.push(StaleServe {
                upstream: upstream.to_owned(),
                reason: reason.to_string(),
            });
        }
    });
}

/// Counts an upstream failure on its way out.
fn counted<T>(answer: Result<T>) -> Result<T> {
    if let Err(Error::Upstream { .. }) = &answer {
        record(|r| r.upstream_errors += 1);
    }
    answer
}

/// Releases a fetch lock, forgetting it when nobody else waits on it.
struct FetchGuard<'a> {
    state: &'a ProxyState,
    key: (String, String),
    lock: Arc<tokio::sync::Mutex<()>>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        let mut fetching = self
            .state
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else waits.
        if Arc::strong_count(&self.lock) <= 3 {
            fetching.remove(&self.key);
        }
    }
}

impl ProxyState {
    async fn lock(&self, repository: &str, path: &str) -> FetchGuard<'_> {
        let key = (repository.to_owned(), path.to_owned());
        let lock = Arc::clone(
            self.fetching
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let held = Arc::clone(&lock).lock_owned().await;
        FetchGuard {
            state: self,
            key,
            lock,
            _held: held,
        }
    }
}

fn fresh(entry: &CacheEntry, settings: &UpstreamSettings) -> bool {
    let validity = match entry.kind {
        CacheEntryKind::Missing => settings.not_found_ttl(),
        CacheEntryKind::Metadata => settings.metadata_ttl(),
        CacheEntryKind::File => return true,
    };
    Timestamp::now().0 < entry.checked_at.after(validity).0
}

fn upstream_error(settings: &UpstreamSettings, reason: impl Into<String>) -> Error {
    Error::Upstream {
        upstream: settings.base().to_owned(),
        reason: reason.into(),
        timed_out: false,
    }
}

fn timed_out(settings: &UpstreamSettings, what: &str) -> Error {
    Error::Upstream {
        upstream: settings.base().to_owned(),
        reason: format!("{what} took longer than {} s", settings.timeout_seconds),
        timed_out: true,
    }
}

/// A body that fails when no byte arrives within `idle`.
fn idle_bounded(body: ByteStream, idle: Duration, settings: &UpstreamSettings) -> ByteStream {
    let error = timed_out(settings, "waiting for the next byte of a file");
    let mut error = Some(error);
    futures::stream::unfold(Some(body), move |body| {
        let timeout = error.take();
        async move {
            let mut body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(body))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(timeout.unwrap_or_else(|| Error::Upstream {
                        upstream: String::new(),
                        reason: "timed out".into(),
                        timed_out: true,
                    })),
                    None,
                )),
            }
        }
    })
    .boxed()
}

impl Packages {
    fn upstream_client(&self) -> Result<&dyn crate::proxy::Upstream> {
        self.upstream.as_deref().ok_or_else(|| Error::Unsupported {
            what: "proxy repositories without an upstream client".into(),
        })
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
        let mut parsed = format.parse_metadata(key, &bytes, settings.base())?;
        parsed.package.revision = revision_of(&blob);
        let parsed = Arc::new(parsed);
        self.remember_parsed(blob.digest, Arc::clone(&parsed));
        Ok(Some(parsed))
    }

    fn parsed(&self, digest: &Digest) -> Option<Arc<UpstreamPackage>> {
        let parsed = self.proxy.parsed.lock().unwrap_or_else(|p| p.into_inner());
        parsed.get(digest).cloned()
    }

    fn remember_parsed(&self, digest: Digest, package: Arc<UpstreamPackage>) {
        let mut parsed = self.proxy.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if parsed.len() >= MAX_PARSED {
            parsed.clear();
        }
        parsed.insert(digest, package);
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
        let mut entry = self.metadata.cache_entry(name, path).await?;
        if entry.as_ref().is_none_or(|e| !fresh(e, settings)) {
            let _fetching = self.proxy.lock(name, path).await;
            // Whoever held the lock may have fetched it meanwhile.
            entry = self.metadata.cache_entry(name, path).await?;
            if entry.as_ref().is_none_or(|e| !fresh(e, settings)) {
                record(|r| r.misses += 1);
                let cached = entry.filter(|e| e.kind == CacheEntryKind::Metadata);
                let refreshed = self
                    .refresh_metadata(repository, settings, format, key, path, cached.as_ref())
                    .await;
                return match counted(refreshed) {
                    Ok(blob) => Ok(blob),
                    Err(error) => match cached {
                        Some(cached) => {
                            mark_stale(settings.base(), &error);
                            Ok(cached.blob)
                        }
                        None => Err(error),
                    },
                };
            }
        }
        record(|r| r.hits += 1);
        Ok(entry.and_then(|e| e.blob))
    }

    /// Asks the upstream for a metadata document (conditionally when one is cached) and
    /// records the answer.
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
        let fetch = async {
            match self
                .upstream_client()?
                .fetch(settings, &url, format.metadata_accept(), &validators)
                .await?
            {
                Fetched::Found {
                    validators,
                    length,
                    body,
                } => {
                    let limit = format.max_metadata_size();
                    let bytes = read_bounded(body, length, limit, settings).await?;
                    Ok(Some((validators, bytes)))
                }
                Fetched::NotModified if cached.is_some() => Ok(None),
                Fetched::NotModified => Err(upstream_error(
                    settings,
                    format!("answered 304 Not Modified to an unconditional request for {path}"),
                )),
                Fetched::NotFound => Err(Error::PackageUnknown {
                    what: format!("{path} at {}", settings.base()),
                }),
            }
        };
        let now = Timestamp::now();
        let answer = match tokio::time::timeout(settings.timeout(), fetch).await {
            Ok(answer) => answer,
            Err(_) => Err(timed_out(settings, &format!("fetching {path}"))),
        };
        match answer {
            Ok(None) => {
                let cached = cached.expect("304 only answers a conditional request");
                self.metadata
                    .confirm_cache_entry(&repository.name, path, &cached.validators, now)
                    .await?;
                Ok(cached.blob.clone())
            }
            Ok(Some((validators, bytes))) => {
                // Only a document the format can read is kept.
                let mut parsed = format
                    .parse_metadata(key, &bytes, settings.base())
                    .map_err(|e| {
                        upstream_error(settings, format!("its metadata for {key} is unusable: {e}"))
                    })?;
                let stored = self.store_bytes(ExtraDigests::default(), bytes).await?;
                parsed.package.revision = revision_of(&stored.blob);
                self.remember_parsed(stored.blob.digest.clone(), Arc::new(parsed));
                self.metadata
                    .put_cache_entry(&CacheEntry {
                        repository: repository.name.clone(),
                        path: path.to_owned(),
                        kind: CacheEntryKind::Metadata,
                        blob: Some(stored.blob.clone()),
                        validators,
                        checked_at: now,
                        created_at: now,
                        downloads: 0,
                        last_download: None,
                    })
                    .await?;
                Ok(Some(stored.blob))
            }
            Err(Error::PackageUnknown { .. }) => {
                self.metadata
                    .put_cache_entry(&CacheEntry {
                        repository: repository.name.clone(),
                        path: path.to_owned(),
                        kind: CacheEntryKind::Missing,
                        blob: None,
                        validators: Validators::default(),
                        checked_at: now,
                        created_at: now,
                        downloads: 0,
                        last_download: None,
                    })
                    .await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// A file a proxy repository's upstream declares: the cached copy, or fetched now (one
    /// request per file at a time), verified against its declared digest, and kept.
    pub(super) async fn upstream_file(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        remote: &RemoteFile,
    ) -> Result<PackageFile> {
        let (_, settings) = proxy_parts(rules, repository)?;
        let path = remote_path(settings, &remote.url)?;
        let name = &repository.name;
        let mut entry = self.metadata.cache_entry(name, &path).await?;
        let mut fetched = false;
        if !cached_file(entry.as_ref()) {
            let _fetching = self.proxy.lock(name, &path).await;
            entry = self.metadata.cache_entry(name, &path).await?;
            if !cached_file(entry.as_ref()) {
                let answer = self.fetch_file(repository, settings, remote, &path).await;
                entry = Some(counted(answer)?);
                fetched = true;
            }
        }
        record(|r| match fetched {
            true => r.misses += 1,
            false => r.hits += 1,
        });
        let entry = entry.expect("a cached or fetched file");
        let blob = entry.blob.clone().expect("file entries hold a blob");
        self.count_download(name, &path);
        Ok(PackageFile {
            name: remote.name.clone(),
            blob,
            digests: Default::default(),
            sidecar: None,
            attributes: Default::default(),
            created_at: entry.created_at,
        })
    }

    async fn fetch_file(
        &self,
        repository: &PackageRepository,
        settings: &UpstreamSettings,
        remote: &RemoteFile,
        path: &str,
    ) -> Result<CacheEntry> {
        let fetched = tokio::time::timeout(
            settings.timeout(),
            self.upstream_client()?
                .fetch(settings, &remote.url, "*/*", &Validators::default()),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out(settings, &format!("fetching {path}"))))?;
        let (validators, body) = match fetched {
            Fetched::Found {
                validators, body, ..
            } => (validators, body),
            Fetched::NotFound => {
                return Err(upstream_error(
                    settings,
                    format!("its metadata lists {path}, but it answers 404 for it"),
                ));
            }
            Fetched::NotModified => {
                return Err(upstream_error(
                    settings,
                    format!("answered 304 Not Modified to an unconditional request for {path}"),
                ));
            }
        };
        let extra = ExtraDigests {
            sha512: matches!(remote.digest, DeclaredDigest::Sha512(_)),
            sha1: matches!(remote.digest, DeclaredDigest::Sha1(_)),
            ..ExtraDigests::default()
        };
        let body = idle_bounded(body, settings.timeout(), settings);
        let stored = self.store_file(extra, body).await.map_err(|e| match e {
            Error::BlobUploadInvalid { reason } => {
                upstream_error(settings, format!("{path} broke off: {reason}"))
            }
            other => other,
        })?;
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
                    "{path} does not match the {} digest its metadata declares ({}; it hashes \
                     to {})",
                    remote.digest.algorithm(),
                    remote.digest.hex(),
                    actual.unwrap_or_default()
                ),
            ));
        }
        let now = Timestamp::now();
        let entry = CacheEntry {
            repository: repository.name.clone(),
            path: path.to_owned(),
            kind: CacheEntryKind::File,
            blob: Some(stored.blob),
            validators,
            checked_at: now,
            created_at: now,
            downloads: 0,
            last_download: None,
        };
        self.metadata.put_cache_entry(&entry).await?;
        Ok(entry)
    }

    /// Counts a download, writing the counts out at most every few seconds.
    fn count_download(&self, repository: &str, path: &str) {
        let now = Timestamp::now();
        let due = {
            let mut pending = self
                .proxy
                .downloads
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let count = pending
                .counts
                .entry((repository.to_owned(), path.to_owned()))
                .or_insert((0, now));
            count.0 += 1;
            count.1 = now;
            if pending.flushed.elapsed() < COUNT_FLUSH_INTERVAL {
                return;
            }
            pending.flushed = Instant::now();
            std::mem::take(&mut pending.counts)
        };
        let metadata = Arc::clone(&self.metadata);
        tokio::spawn(async move {
            for ((repository, path), (count, at)) in due {
                // Counts are statistics: one that cannot be written is dropped.
                let _ = metadata
                    .count_cache_downloads(&repository, &path, count, at)
                    .await;
            }
        });
    }

    /// Writes out the download counts not written yet (tests, shutdown).
    pub async fn flush_download_counts(&self) -> Result<()> {
        let due = {
            let mut pending = self
                .proxy
                .downloads
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            pending.flushed = Instant::now();
            std::mem::take(&mut pending.counts)
        };
        for ((repository, path), (count, at)) in due {
            self.metadata
                .count_cache_downloads(&repository, &path, count, at)
                .await?;
        }
        Ok(())
    }
}

/// A proxied package's revision: its metadata document's digest, so every instance renders
/// the same document under the same revision.
fn revision_of(blob: &BlobRef) -> String {
    format!("u{}", &blob.digest.hex()[..32])
}

fn cached_file(entry: Option<&CacheEntry>) -> bool {
    entry.is_some_and(|e| e.kind == CacheEntryKind::File && e.blob.is_some())
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

/// The cache path of a file URL: below the upstream's base URL, or its path on the upstream's
/// origin. A URL elsewhere is refused: credentials and trust go to the upstream only.
pub(super) fn remote_path(settings: &UpstreamSettings, url: &str) -> Result<String> {
    if let Some(path) = url
        .strip_prefix(settings.base())
        .and_then(|p| p.strip_prefix('/'))
    {
        return Ok(path.to_owned());
    }
    let origin = settings.origin();
    match url.strip_prefix(origin).filter(|p| p.starts_with('/')) {
        Some(path) => Ok(path.to_owned()),
        None => Err(upstream_error(
            settings,
            format!("its metadata points at {url}, outside the upstream"),
        )),
    }
}

/// Reads a whole metadata body, refusing one over `limit` (declared or sent).
async fn read_bounded(
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
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| upstream_error(settings, format!("the body broke off: {e}")))?;
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large(bytes.len() as u64 + chunk.len() as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// What an upstream connection test found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamCheck {
    /// The URL asked.
    pub url: String,
    /// Whether it answered (any answer but a failure: `404` still proves the connection).
    pub reachable: bool,
    /// What it answered, or why it could not be reached.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

impl Packages {
    /// A proxy repository with its settings; anything else is [`Error::PackageUnknown`].
    async fn proxy_repository(&self, repository: &str) -> Result<PackageRepository> {
        match self.repository(repository).await? {
            Some(found) if found.kind == crate::package::RepositoryKind::Proxy => Ok(found),
            _ => Err(Error::PackageUnknown {
                what: format!("proxy repository {repository}"),
            }),
        }
    }

    /// A proxy repository's cache entries by path, one page at a time, with their download
    /// counts up to date.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn cache_entries(
        &self,
        repository: &str,
        page: &crate::values::Page,
    ) -> Result<Vec<CacheEntry>> {
        self.proxy_repository(repository).await?;
        self.flush_download_counts().await?;
        self.metadata.list_cache_entries(repository, page).await
    }

    /// Deletes one cache entry (its blob is collected once nothing else holds it); `false`
    /// when there was none.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn delete_cache_entry(&self, repository: &str, path: &str) -> Result<bool> {
        self.proxy_repository(repository).await?;
        self.metadata.delete_cache_entry(repository, path).await
    }

    /// Deletes a proxy repository's cache entries — all, or those neither stored nor
    /// downloaded for `unused_for` (a cleanup policy) — and answers how many went.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn clean_cache(&self, repository: &str, unused_for: Option<Duration>) -> Result<u64> {
        self.proxy_repository(repository).await?;
        self.flush_download_counts().await?;
        let since = unused_for.map(|d| {
            let millis = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            Timestamp(Timestamp::now().0.saturating_sub(millis))
        });
        self.metadata.delete_cache_entries(repository, since).await
    }

    /// Tries a proxy repository's upstream: asks it for the format's probe
    /// ([`UpstreamFormat::probe_path`]) and says what came back.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn test_upstream(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
    ) -> Result<UpstreamCheck> {
        let found = self.proxy_repository(repository).await?;
        let (format, _) = proxy_parts(rules, &found)?;
        let probe = format.probe_path();
        let settings = found
            .settings
            .upstream
            .as_ref()
            .ok_or_else(|| Error::PolicyInvalid {
                reason: format!("proxy repository {repository} has no upstream"),
            })?;
        let url = format!("{}/{probe}", settings.base());
        let started = Instant::now();
        let answer = tokio::time::timeout(
            settings.timeout(),
            self.upstream_client()?
                .fetch(settings, &url, "*/*", &Validators::default()),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out(settings, "the test request")));
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (reachable, detail) = match answer {
            Ok(Fetched::Found { .. }) => (true, "answered 200 OK".to_owned()),
            Ok(Fetched::NotModified) => (true, "answered 304 Not Modified".to_owned()),
            Ok(Fetched::NotFound) => (true, format!("answered 404 Not Found for {probe}")),
            Err(error) => (false, error.to_string()),
        };
        Ok(UpstreamCheck {
            url,
            reachable,
            detail,
            millis,
        })
    }
}
