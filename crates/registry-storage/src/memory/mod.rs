//! In-memory blob and metadata stores, for tests and embedders that need no persistence.
//!
//! Each store keeps its state behind one mutex that is never held across an `await`, so every
//! operation is atomic. Cloning a store gives another handle on the same state.
//!
//! `mod.rs` holds the metadata store and the state its parts share; each metadata trait is
//! implemented in a file of its own (`content`, `uploads`, `review`, `collection`, `policy`,
//! `packages`, `proxy`, `firewall`, `tokens`), and the blob store lives in `blobs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use registry_core::metadata::DEFAULT_REVIEW_DELAY;
use registry_core::{
    BlobRecord, Digest, Error, ManifestRecord, RepositoryName, Result, ReviewEvent, ReviewTarget,
    ReviewTask, StoredPolicy, Tag, TagChange, TagGuard, Timestamp, UploadId, UploadRecord,
};

mod background;
mod blobs;
mod collection;
mod content;
mod firewall;
mod packages;
mod policy;
mod proxy;
mod review;
mod tokens;
mod uploads;

pub use blobs::MemoryBlobStore;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way later calls
    // would misread (each operation validates before it mutates), so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn unknown_upload(id: &UploadId) -> Error {
    Error::BlobUploadUnknown { id: id.to_string() }
}

/// A metadata store in memory.
#[derive(Clone, Debug)]
pub struct MemoryMetadataStore {
    state: Arc<Mutex<MetaState>>,
    review_delay: Duration,
}

impl Default for MemoryMetadataStore {
    fn default() -> Self {
        MemoryMetadataStore {
            state: Arc::default(),
            review_delay: DEFAULT_REVIEW_DELAY,
        }
    }
}

impl MemoryMetadataStore {
    /// An empty store with the default review delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long after an event its review-queue entry becomes due.
    pub fn with_review_delay(mut self, delay: Duration) -> Self {
        self.review_delay = delay;
        self
    }
}

#[derive(Debug, Default)]
struct MetaState {
    repositories: BTreeMap<RepositoryName, Repository>,
    blobs: HashMap<Digest, BlobRecord>,
    uploads: HashMap<UploadId, UploadRecord>,
    /// Upload sessions of blob stores that keep theirs here.
    upload_sessions: HashMap<UploadId, registry_core::UploadSession>,
    reviews: HashMap<ReviewTarget, ReviewTask>,
    /// Blobs claimed by the collector, with what the claim removed (to restore on abandon) and
    /// a signal for links waiting for the claim to end.
    claimed: HashMap<Digest, Claimed>,
    /// Tag rules and cleanup policies by kind and name.
    policies: BTreeMap<(&'static str, String), StoredPolicy>,
    /// Package repositories and packages.
    packages: packages::PackageState,
    /// Personal access tokens by id.
    tokens: HashMap<String, registry_core::TokenRecord>,
    /// Proxy repositories' cache entries.
    proxy: proxy::ProxyState,
    /// The firewall's audit log.
    audit: firewall::AuditState,
}

#[derive(Debug)]
struct Claimed {
    record: BlobRecord,
    links: Vec<(RepositoryName, Timestamp)>,
    ended: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Repository {
    linked_blobs: HashMap<Digest, Timestamp>,
    manifests: HashMap<Digest, StoredManifest>,
    tags: BTreeMap<Tag, Digest>,
    /// When each tag was created and last published.
    tag_times: HashMap<Tag, (Timestamp, Timestamp)>,
    /// The tags by publish time, then name: listings in that order read a page from here.
    by_published: BTreeSet<(Timestamp, Tag)>,
}

impl MemoryMetadataStore {
    /// Locks the state once none of `digests` is claimed by a collector — like a row lock: a
    /// write that needs a blob being collected waits until the claim ends.
    async fn lock_unclaimed(&self, digests: &[Digest]) -> MutexGuard<'_, MetaState> {
        loop {
            let ended = {
                let state = lock(&self.state);
                match digests.iter().find_map(|d| state.claimed.get(d)) {
                    Some(claim) => Arc::clone(&claim.ended).notified_owned(),
                    None => return state,
                }
            };
            ended.await;
        }
    }
}

impl Repository {
    /// Points a tag at a manifest; returns its previous target.
    fn set_tag(&mut self, tag: &Tag, digest: &Digest, now: Timestamp) -> Option<Digest> {
        let previous = self.tags.insert(tag.clone(), digest.clone());
        let times = self.tag_times.entry(tag.clone()).or_insert((now, now));
        if previous.as_ref() != Some(digest) {
            self.by_published.remove(&(times.1, tag.clone()));
            times.1 = now;
        }
        self.by_published.insert((times.1, tag.clone()));
        previous
    }

    /// Checks a push of `tag` to `digest` against the guard.
    fn check_push(&self, tag: &Tag, digest: &Digest, guard: &TagGuard) -> Result<()> {
        let moved = self.tags.get(tag).is_some_and(|current| current != digest);
        guard.check(tag, TagChange::Push { moved })
    }

    /// Removes a tag; returns its target.
    fn remove_tag(&mut self, tag: &Tag) -> Option<Digest> {
        if let Some((_, published)) = self.tag_times.remove(tag) {
            self.by_published.remove(&(published, tag.clone()));
        }
        self.tags.remove(tag)
    }
}

#[derive(Debug)]
struct StoredManifest {
    record: ManifestRecord,
    blobs: Vec<Digest>,
    children: Vec<Digest>,
}

impl MetaState {
    /// Whether anything besides a manifest holds a blob: package files and their sidecars,
    /// proxy cache entries. The one place a new holder (a quarantine) joins, as in the SQL
    /// stores; the collector's claim and the sweep both ask it.
    fn held_beyond_manifests(&self, digest: &Digest) -> bool {
        self.packages.references(digest) || self.proxy.references(digest)
    }

    fn queue(&mut self, target: ReviewTarget, event: ReviewEvent, due_at: Timestamp) {
        self.reviews
            .entry(target.clone())
            .and_modify(|task| {
                task.event = event;
                task.due_at = task.due_at.max(due_at);
            })
            .or_insert(ReviewTask {
                target,
                event,
                due_at,
                attempts: 0,
            });
    }

    fn repository(&self, name: &RepositoryName) -> Result<&Repository> {
        self.repositories
            .get(name)
            .ok_or_else(|| Error::NameUnknown {
                name: name.to_string(),
            })
    }
}

fn manifest_review(repository: &RepositoryName, digest: &Digest) -> ReviewTarget {
    ReviewTarget::Manifest {
        repository: repository.clone(),
        digest: digest.clone(),
    }
}

/// Deletes a manifest with its tags, and queues its blobs, children and referrers for review;
/// returns the tags it had. The caller has checked the manifest may go.
fn remove_manifest(
    state: &mut MetaState,
    repository: &RepositoryName,
    digest: &Digest,
    due: Timestamp,
) -> Vec<Tag> {
    let Some(repo) = state.repositories.get_mut(repository) else {
        return Vec::new();
    };
    let Some(removed) = repo.manifests.remove(digest) else {
        return Vec::new();
    };
    let tags: Vec<Tag> = repo
        .tags
        .iter()
        .filter(|(_, target)| *target == digest)
        .map(|(tag, _)| tag.clone())
        .collect();
    for tag in &tags {
        repo.remove_tag(tag);
    }
    let referrers: Vec<Digest> = repo
        .manifests
        .values()
        .filter(|m| m.record.subject.as_ref() == Some(digest))
        .map(|m| m.record.digest.clone())
        .collect();
    for blob in removed.blobs {
        state.queue(
            ReviewTarget::Blob { digest: blob },
            ReviewEvent::ManifestDeleted,
            due,
        );
    }
    for child in removed.children {
        state.queue(
            manifest_review(repository, &child),
            ReviewEvent::IndexDeleted,
            due,
        );
    }
    for referrer in referrers {
        state.queue(
            manifest_review(repository, &referrer),
            ReviewEvent::SubjectDeleted,
            due,
        );
    }
    tags
}
