//! Administering proxy repositories: cache entries listed, deleted and cleaned by last use,
//! download counts written out, the upstream tried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CachePath, FormatRules, Packages, locked, proxy_parts};
use crate::error::{Error, Result};
use crate::package::{PackageRepository, RepositoryKind};
use crate::proxy::{CacheEntry, Fetched, Validators};
use crate::values::{Page, Timestamp};

/// How often download counts are written to the store, at most.
const COUNT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Reads not written yet.
#[derive(Debug)]
pub(super) struct PendingDownloads {
    counts: HashMap<CachePath, (u64, Timestamp)>,
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
    /// Counts a read of a cache entry, writing the counts out at most every few seconds.
    pub(super) fn count_download(&self, repository: &str, path: &str) {
        let now = Timestamp::now();
        let due = {
            let mut pending = locked(&self.proxy.downloads);
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

    /// Writes out the download counts not written yet (before listings and cleanups; an
    /// embedder calls it before shutting down).
    pub async fn flush_download_counts(&self) -> Result<()> {
        let due = {
            let mut pending = locked(&self.proxy.downloads);
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

    /// A proxy repository with its settings; anything else is [`Error::PackageUnknown`].
    async fn proxy_repository(&self, repository: &str) -> Result<PackageRepository> {
        match self.repository(repository).await? {
            Some(found) if found.kind == RepositoryKind::Proxy => Ok(found),
            _ => Err(Error::PackageUnknown {
                what: format!("proxy repository {repository}"),
            }),
        }
    }

    /// A proxy repository's cache entries by path, one page at a time, with their download
    /// counts up to date.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn cache_entries(&self, repository: &str, page: &Page) -> Result<Vec<CacheEntry>> {
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
        self.proxy.forget_repository(repository);
        let deleted = self.metadata.delete_cache_entry(repository, path).await?;
        // Again: a request meanwhile may have remembered what was being deleted.
        self.proxy.forget_repository(repository);
        Ok(deleted)
    }

    /// Deletes a proxy repository's cache entries — all, or those neither stored nor read
    /// for `unused_for` (a cleanup policy) — and answers how many went.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn clean_cache(&self, repository: &str, unused_for: Option<Duration>) -> Result<u64> {
        self.proxy_repository(repository).await?;
        self.flush_download_counts().await?;
        let since = unused_for.map(|d| {
            let millis = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            Timestamp(Timestamp::now().0.saturating_sub(millis))
        });
        self.proxy.forget_repository(repository);
        let deleted = self
            .metadata
            .delete_cache_entries(repository, since)
            .await?;
        // Again: a request meanwhile may have remembered what was being deleted.
        self.proxy.forget_repository(repository);
        Ok(deleted)
    }

    /// Tries a proxy repository's upstream: asks it for the format's probe
    /// ([`crate::UpstreamFormat::probe_path`]) and says what came back.
    ///
    /// Errors: [`Error::PackageUnknown`] when `repository` is not a proxy repository.
    pub async fn test_upstream(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
    ) -> Result<UpstreamCheck> {
        let found = self.proxy_repository(repository).await?;
        let (format, settings) = proxy_parts(rules, &found)?;
        let probe = format.probe_path();
        let url = format!("{}/{probe}", settings.base());
        let started = Instant::now();
        let answer = self
            .ask_upstream(
                settings,
                &url,
                "*/*",
                &Validators::default(),
                "the test request",
            )
            .await;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (reachable, detail) = match answer {
            Ok(Fetched::Found { .. }) => (true, "answered 200 OK".to_owned()),
            Ok(Fetched::NotModified) => (true, "answered 304 Not Modified".to_owned()),
            Ok(Fetched::NotFound) => (true, format!("answered 404 Not Found for {url}")),
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
