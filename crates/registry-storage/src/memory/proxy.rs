//! Proxy repositories' cache entries ([`ProxyCache`]) in the memory metadata store, under the
//! same lock as everything else.

use std::collections::BTreeMap;

use async_trait::async_trait;
use registry_core::{
    CacheEntry, Digest, Error, Page, ProxyCache, Result, ReviewEvent, ReviewTarget, Timestamp,
    Validators,
};

use super::{MemoryMetadataStore, MetaState, lock};

/// Cache entries by (repository, path).
#[derive(Debug, Default)]
pub(super) struct ProxyState {
    entries: BTreeMap<(String, String), CacheEntry>,
}

impl ProxyState {
    /// Whether an entry holds the blob.
    pub(super) fn references(&self, digest: &Digest) -> bool {
        self.entries.values().any(|e| e.blob.digest == *digest)
    }
}

/// Queues the blob of an entry that went away.
fn queue_entry(state: &mut MetaState, entry: &CacheEntry, due: Timestamp) {
    state.queue(
        ReviewTarget::Blob {
            digest: entry.blob.digest.clone(),
        },
        ReviewEvent::PackageFileDeleted,
        due,
    );
}

#[async_trait]
impl ProxyCache for MemoryMetadataStore {
    async fn cache_entry(&self, repository: &str, path: &str) -> Result<Option<CacheEntry>> {
        let state = lock(&self.state);
        Ok(state
            .proxy
            .entries
            .get(&(repository.to_owned(), path.to_owned()))
            .cloned())
    }

    async fn put_cache_entry(&self, entry: &CacheEntry) -> Result<()> {
        let digest = entry.blob.digest.clone();
        let mut state = self.lock_unclaimed(std::slice::from_ref(&digest)).await;
        if !state.blobs.contains_key(&digest) {
            return Err(Error::BlobUnknown { digest });
        }
        let due = Timestamp::now().after(self.review_delay);
        let key = (entry.repository.clone(), entry.path.clone());
        let previous = state.proxy.entries.insert(key, entry.clone());
        if let Some(previous) = previous
            && previous.blob.digest != entry.blob.digest
        {
            queue_entry(&mut state, &previous, due);
        }
        Ok(())
    }

    async fn confirm_cache_entry(
        &self,
        repository: &str,
        path: &str,
        validators: &Validators,
        checked_at: Timestamp,
    ) -> Result<bool> {
        let mut state = lock(&self.state);
        let key = (repository.to_owned(), path.to_owned());
        Ok(match state.proxy.entries.get_mut(&key) {
            Some(entry) => {
                entry.validators = validators.clone();
                entry.checked_at = checked_at;
                true
            }
            None => false,
        })
    }

    async fn count_cache_downloads(
        &self,
        repository: &str,
        path: &str,
        count: u64,
        at: Timestamp,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        let key = (repository.to_owned(), path.to_owned());
        if let Some(entry) = state.proxy.entries.get_mut(&key) {
            entry.downloads = entry.downloads.saturating_add(count);
            entry.last_download = Some(entry.last_download.map_or(at, |last| last.max(at)));
        }
        Ok(())
    }

    async fn list_cache_entries(&self, repository: &str, page: &Page) -> Result<Vec<CacheEntry>> {
        let state = lock(&self.state);
        let start = (repository.to_owned(), page.last.clone().unwrap_or_default());
        Ok(state
            .proxy
            .entries
            .range(start..)
            .filter(|((r, p), _)| r == repository && page.last.as_ref() != Some(p))
            .take_while(|((r, _), _)| r == repository)
            .take(page.limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn delete_cache_entry(&self, repository: &str, path: &str) -> Result<bool> {
        let mut state = lock(&self.state);
        let due = Timestamp::now().after(self.review_delay);
        let key = (repository.to_owned(), path.to_owned());
        Ok(match state.proxy.entries.remove(&key) {
            Some(entry) => {
                queue_entry(&mut state, &entry, due);
                true
            }
            None => false,
        })
    }

    async fn delete_cache_entries(
        &self,
        repository: &str,
        unused_since: Option<Timestamp>,
    ) -> Result<u64> {
        let mut state = lock(&self.state);
        let due = Timestamp::now().after(self.review_delay);
        let gone: Vec<(String, String)> = state
            .proxy
            .entries
            .iter()
            .filter(|((r, _), e)| {
                r == repository
                    && unused_since.is_none_or(|since| {
                        e.created_at < since && e.last_download.is_none_or(|last| last < since)
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            if let Some(entry) = state.proxy.entries.remove(key) {
                queue_entry(&mut state, &entry, due);
            }
        }
        Ok(gone.len() as u64)
    }
}
