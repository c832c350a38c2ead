//! The collector's side ([`CollectionMetadata`]) of the memory metadata store: manifest
//! verdicts, listings and blob claims.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use registry_core::{
    BlobClaim, BlobRecord, CollectionMetadata, Digest, ManifestEntry, ManifestVerdict, Page,
    RepositoryName, Result, Timestamp,
};

use super::{Claimed, MemoryMetadataStore, MetaState, lock, remove_manifest};

#[async_trait]
impl CollectionMetadata for MemoryMetadataStore {
    async fn collect_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestVerdict> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(ManifestVerdict::Missing);
        };
        let Some(manifest) = repo.manifests.get(digest) else {
            return Ok(ManifestVerdict::Missing);
        };
        if repo.tags.values().any(|target| target == digest) {
            return Ok(ManifestVerdict::Tagged);
        }
        if repo.manifests.values().any(|m| m.children.contains(digest)) {
            return Ok(ManifestVerdict::Listed);
        }
        if manifest
            .record
            .subject
            .as_ref()
            .is_some_and(|subject| repo.manifests.contains_key(subject))
        {
            return Ok(ManifestVerdict::Referrer);
        }
        remove_manifest(&mut state, repository, digest, due);
        Ok(ManifestVerdict::Deleted)
    }

    async fn list_manifests(
        &self,
        repository: &RepositoryName,
        page: &Page,
    ) -> Result<Vec<ManifestEntry>> {
        let state = lock(&self.state);
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(Vec::new());
        };
        let mut entries: Vec<ManifestEntry> = repo
            .manifests
            .values()
            .filter(|m| {
                page.last
                    .as_deref()
                    .is_none_or(|last| m.record.digest.as_str() > last)
            })
            .map(|m| ManifestEntry {
                digest: m.record.digest.clone(),
                size: m.record.bytes.len() as u64,
                created_at: m.record.created_at,
                tagged: repo.tags.values().any(|t| *t == m.record.digest),
                subject: m.record.subject.clone(),
                blobs: m.blobs.clone(),
                children: m.children.clone(),
            })
            .collect();
        entries.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
        entries.truncate(page.limit);
        Ok(entries)
    }

    async fn list_blobs(&self, page: &Page) -> Result<Vec<BlobRecord>> {
        let state = lock(&self.state);
        let mut records: Vec<BlobRecord> = state
            .blobs
            .values()
            .filter(|b| {
                page.last
                    .as_deref()
                    .is_none_or(|last| b.digest.as_str() > last)
            })
            .cloned()
            .collect();
        records.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
        records.truncate(page.limit);
        Ok(records)
    }

    async fn claim_blob(&self, digest: &Digest) -> Result<Option<Box<dyn BlobClaim>>> {
        let mut state = lock(&self.state);
        let referenced = state
            .repositories
            .values()
            .any(|r| r.manifests.values().any(|m| m.blobs.contains(digest)))
            || state.held_beyond_manifests(digest);
        if referenced || state.claimed.contains_key(digest) {
            return Ok(None);
        }
        let Some(record) = state.blobs.remove(digest) else {
            return Ok(None);
        };
        let links = state
            .repositories
            .iter_mut()
            .filter_map(|(name, r)| r.linked_blobs.remove(digest).map(|at| (name.clone(), at)))
            .collect();
        let claimed = Claimed {
            record,
            links,
            ended: Arc::new(tokio::sync::Notify::new()),
        };
        state.claimed.insert(digest.clone(), claimed);
        Ok(Some(Box::new(MemoryBlobClaim {
            state: Arc::clone(&self.state),
            digest: digest.clone(),
        })))
    }
}

/// A claim on a blob of the memory store; dropping it without committing abandons it.
struct MemoryBlobClaim {
    state: Arc<Mutex<MetaState>>,
    digest: Digest,
}

impl MemoryBlobClaim {
    fn end(&self, restore: bool) {
        let mut state = lock(&self.state);
        if let Some(claimed) = state.claimed.remove(&self.digest) {
            if restore {
                for (name, at) in claimed.links {
                    state
                        .repositories
                        .entry(name)
                        .or_default()
                        .linked_blobs
                        .insert(self.digest.clone(), at);
                }
                state.blobs.insert(self.digest.clone(), claimed.record);
            }
            claimed.ended.notify_waiters();
        }
    }
}

#[async_trait]
impl BlobClaim for MemoryBlobClaim {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.end(false);
        Ok(())
    }

    async fn abandon(self: Box<Self>) -> Result<()> {
        self.end(true);
        Ok(())
    }
}

impl Drop for MemoryBlobClaim {
    fn drop(&mut self) {
        // A claim neither committed nor abandoned (its task was cancelled) is abandoned, as a
        // dropped SQL transaction rolls back.
        self.end(true);
    }
}
