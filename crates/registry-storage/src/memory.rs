//! In-memory blob and metadata stores, for tests and embedders that need no persistence.
//!
//! Each store keeps its state behind one mutex that is never held across an `await`, so every
//! operation is atomic. Cloning a store gives another handle on the same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use registry_core::metadata::DEFAULT_REVIEW_DELAY;
use registry_core::{
    Algorithm, BlobClaim, BlobRead, BlobRecord, BlobStore, ByteRange, ByteStream,
    CollectionMetadata, ContentMetadata, Digest, DigestHasher, Error, ManifestEntry,
    ManifestRecord, ManifestVerdict, NewManifest, Page, PolicyKind, PolicySource, PolicyStore,
    PutManifestOutcome, Reference, Referrer, RepositoryName, Result, ReviewEvent, ReviewQueue,
    ReviewTarget, ReviewTask, StorageUsage, StoredPolicy, Tag, TagChange, TagDetail, TagGuard,
    TagMarker, TagOrder, TagQuery, Timestamp, UploadId, UploadMetadata, UploadRecord, UsageScope,
};

use crate::policy::{check_count, check_source};

mod packages;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way later calls
    // would misread (each operation validates before it mutates), so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A blob store in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryBlobStore {
    state: Arc<Mutex<BlobState>>,
}

#[derive(Debug, Default)]
struct BlobState {
    blobs: HashMap<Digest, Bytes>,
    uploads: HashMap<UploadId, MemoryUpload>,
}

#[derive(Debug)]
struct MemoryUpload {
    data: BytesMut,
    hasher: DigestHasher,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Drains a stream into memory, hashing as it goes.
async fn collect(
    mut body: ByteStream,
    hasher: &mut DigestHasher,
    into: &mut BytesMut,
) -> Result<()> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        into.extend_from_slice(&chunk);
    }
    Ok(())
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(lock(&self.state).blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let bytes = lock(&self.state)
            .blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::BlobUnknown {
                digest: digest.clone(),
            })?;
        let size = bytes.len() as u64;
        let range = match range {
            Some(r) => r.resolve(size)?,
            None => 0..size,
        };
        let part = bytes.slice(range.start as usize..range.end as usize);
        Ok(BlobRead {
            size,
            range,
            stream: registry_core::blob::once_stream(part),
        })
    }

    async fn write(&self, expected: &Digest, body: ByteStream) -> Result<u64> {
        let mut hasher = DigestHasher::new(expected.algorithm());
        let mut data = BytesMut::new();
        collect(body, &mut hasher, &mut data).await?;
        let actual = hasher.finish();
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let size = data.len() as u64;
        lock(&self.state)
            .blobs
            .entry(actual)
            .or_insert_with(|| data.freeze());
        Ok(size)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(lock(&self.state).blobs.remove(digest).is_some())
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        let digests: Vec<Digest> = lock(&self.state).blobs.keys().cloned().collect();
        stream::iter(digests.into_iter().map(Ok)).boxed()
    }

    async fn upload_start(&self, algorithm: Algorithm) -> Result<UploadId> {
        let id = UploadId::generate();
        let upload = MemoryUpload {
            data: BytesMut::new(),
            hasher: DigestHasher::new(algorithm),
        };
        lock(&self.state).uploads.insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, chunk: ByteStream) -> Result<u64> {
        let (mut hasher, start) = {
            let state = lock(&self.state);
            let upload = state.uploads.get(id).ok_or_else(|| unknown_upload(id))?;
            (upload.hasher.clone(), upload.data.len() as u64)
        };
        if offset != start {
            return Err(Error::UploadOffsetMismatch {
                expected: start,
                found: offset,
            });
        }
        let mut data = BytesMut::new();
        collect(chunk, &mut hasher, &mut data).await?;
        let mut state = lock(&self.state);
        let upload = state
            .uploads
            .get_mut(id)
            .ok_or_else(|| unknown_upload(id))?;
        // Another append may have landed while this chunk streamed in.
        if upload.data.len() as u64 != start {
            return Err(Error::UploadOffsetMismatch {
                expected: upload.data.len() as u64,
                found: offset,
            });
        }
        upload.data.extend_from_slice(&data);
        upload.hasher = hasher;
        Ok(upload.data.len() as u64)
    }

    async fn upload_status(&self, id: &UploadId) -> Result<u64> {
        let state = lock(&self.state);
        let upload = state.uploads.get(id).ok_or_else(|| unknown_upload(id))?;
        Ok(upload.data.len() as u64)
    }

    async fn upload_finish(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        let mut state = lock(&self.state);
        let upload = state.uploads.get(id).ok_or_else(|| unknown_upload(id))?;
        let actual = if upload.hasher.algorithm() == expected.algorithm() {
            upload.hasher.peek()
        } else {
            Digest::compute(expected.algorithm(), &upload.data)
        };
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let upload = state.uploads.remove(id).ok_or_else(|| unknown_upload(id))?;
        let size = upload.data.len() as u64;
        state
            .blobs
            .entry(actual)
            .or_insert_with(|| upload.data.freeze());
        Ok(size)
    }

    async fn upload_cancel(&self, id: &UploadId) -> Result<()> {
        lock(&self.state)
            .uploads
            .remove(id)
            .map(drop)
            .ok_or_else(|| unknown_upload(id))
    }
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
            times.1 = now;
        }
        previous
    }

    /// Checks a push of `tag` to `digest` against the guard.
    fn check_push(&self, tag: &Tag, digest: &Digest, guard: &TagGuard) -> Result<()> {
        let moved = self.tags.get(tag).is_some_and(|current| current != digest);
        guard.check(tag, TagChange::Push { moved })
    }

    /// Removes a tag; returns its target.
    fn remove_tag(&mut self, tag: &Tag) -> Option<Digest> {
        self.tag_times.remove(tag);
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
    /// Whether anything besides a manifest holds a blob: package files and their sidecars. The
    /// one place a new holder (a proxy cache, a quarantine) joins, as in the SQL stores; the
    /// collector's claim and the sweep both ask it.
    fn held_beyond_manifests(&self, digest: &Digest) -> bool {
        self.packages.references(digest)
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

fn manifest_unknown(repository: &RepositoryName, reference: impl ToString) -> Error {
    Error::ManifestUnknown {
        repository: repository.to_string(),
        reference: reference.to_string(),
    }
}

fn manifest_review(repository: &RepositoryName, digest: &Digest) -> ReviewTarget {
    ReviewTarget::Manifest {
        repository: repository.clone(),
        digest: digest.clone(),
    }
}

/// The sort key of a tag detail in a listing's order.
fn tag_key(detail: &TagDetail, order: TagOrder) -> (Timestamp, &str) {
    match order {
        TagOrder::Name => (Timestamp(0), detail.name.as_str()),
        TagOrder::Published => (detail.published_at, detail.name.as_str()),
    }
}

/// Orders, pages and cuts tag details as a query asks, in memory.
fn page_of_tags(details: &mut [TagDetail], query: &TagQuery) -> Vec<TagDetail> {
    let order = query.order;
    details.sort_by(|a, b| tag_key(a, order).cmp(&tag_key(b, order)));
    if query.descending {
        details.reverse();
    }
    let marker_key = |m: &TagMarker| match order {
        TagOrder::Name => (Timestamp(0), m.name.clone()),
        TagOrder::Published => (m.published_at, m.name.clone()),
    };
    // "After" in the listing's order is "greater" ascending and "smaller" descending.
    let beyond = |d: &TagDetail, m: &TagMarker, forward: bool| {
        let (t, n) = tag_key(d, order);
        let key = (t, n.to_owned());
        let cmp = key.cmp(&marker_key(m));
        let greater = cmp == std::cmp::Ordering::Greater;
        let smaller = cmp == std::cmp::Ordering::Less;
        if forward != query.descending {
            greater
        } else {
            smaller
        }
    };
    if let Some(after) = &query.after {
        details
            .iter()
            .filter(|d| beyond(d, after, true))
            .take(query.limit)
            .cloned()
            .collect()
    } else if let Some(before) = &query.before {
        let earlier: Vec<TagDetail> = details
            .iter()
            .filter(|d| beyond(d, before, false))
            .cloned()
            .collect();
        let skip = earlier.len().saturating_sub(query.limit);
        earlier.into_iter().skip(skip).collect()
    } else {
        details.iter().take(query.limit).cloned().collect()
    }
}

/// Entries of `items` strictly after `page.last`, at most `page.limit`.
fn paginate<'a, T: 'a + Clone>(
    items: impl Iterator<Item = (&'a str, &'a T)>,
    page: &Page,
) -> Vec<T> {
    items
        .filter(|(name, _)| page.last.as_deref().is_none_or(|last| *name > last))
        .take(page.limit)
        .map(|(_, item)| item.clone())
        .collect()
}

#[async_trait]
impl ContentMetadata for MemoryMetadataStore {
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        Ok(lock(&self.state).repositories.contains_key(repository))
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepositoryName>> {
        let state = lock(&self.state);
        Ok(paginate(
            state.repositories.keys().map(|name| (name.as_str(), name)),
            page,
        ))
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let mut state = self.lock_unclaimed(std::slice::from_ref(digest)).await;
        let now = Timestamp::now();
        state.blobs.entry(digest.clone()).or_insert(BlobRecord {
            digest: digest.clone(),
            size,
            created_at: now,
        });
        state
            .repositories
            .entry(repository.clone())
            .or_default()
            .linked_blobs
            .entry(digest.clone())
            .or_insert(now);
        let target = ReviewTarget::Blob {
            digest: digest.clone(),
        };
        state.queue(
            target,
            ReviewEvent::BlobUploaded,
            now.after(self.review_delay),
        );
        Ok(())
    }

    async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let state = lock(&self.state);
        let linked = state
            .repositories
            .get(repository)
            .is_some_and(|r| r.linked_blobs.contains_key(digest));
        Ok(linked.then(|| state.blobs.get(digest).cloned()).flatten())
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        Ok(lock(&self.state).blobs.get(digest).cloned())
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let now = Timestamp::now();
        let mut state = lock(&self.state);
        let removed = state
            .repositories
            .get_mut(repository)
            .is_some_and(|r| r.linked_blobs.remove(digest).is_some());
        if removed {
            let target = ReviewTarget::Blob {
                digest: digest.clone(),
            };
            state.queue(
                target,
                ReviewEvent::BlobUnlinked,
                now.after(self.review_delay),
            );
        }
        Ok(removed)
    }

    async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tags: &[Tag],
        guard: &TagGuard,
    ) -> Result<PutManifestOutcome> {
        let now = Timestamp::now();
        let due = now.after(self.review_delay);
        let mut state = lock(&self.state);
        let empty = Repository::default();
        let existing = state
            .repositories
            .get(&manifest.repository)
            .unwrap_or(&empty);
        if let Some(missing) = manifest
            .blobs
            .iter()
            .find(|d| !existing.linked_blobs.contains_key(*d))
            .or_else(|| {
                manifest
                    .children
                    .iter()
                    .find(|d| !existing.manifests.contains_key(*d))
            })
        {
            return Err(Error::ManifestBlobUnknown {
                digest: missing.clone(),
            });
        }
        for tag in tags {
            existing.check_push(tag, &manifest.digest, guard)?;
        }
        let repository = state
            .repositories
            .entry(manifest.repository.clone())
            .or_default();
        let created = !repository.manifests.contains_key(&manifest.digest);
        if created {
            let record = ManifestRecord {
                repository: manifest.repository.clone(),
                digest: manifest.digest.clone(),
                media_type: manifest.media_type.clone(),
                artifact_type: manifest.artifact_type.clone(),
                subject: manifest.subject.clone(),
                annotations: manifest.annotations.clone(),
                bytes: manifest.bytes.clone(),
                created_at: now,
            };
            let stored = StoredManifest {
                record,
                blobs: manifest.blobs.clone(),
                children: manifest.children.clone(),
            };
            repository.manifests.insert(manifest.digest.clone(), stored);
        }
        let mut previous: Vec<Digest> = Vec::new();
        for tag in tags {
            if let Some(left) = repository.set_tag(tag, &manifest.digest, now)
                && left != manifest.digest
                && !previous.contains(&left)
            {
                previous.push(left);
            }
        }
        let review = manifest_review(&manifest.repository, &manifest.digest);
        state.queue(review, ReviewEvent::ManifestUploaded, due);
        for left in &previous {
            let review = manifest_review(&manifest.repository, left);
            state.queue(review, ReviewEvent::TagSwitched, due);
        }
        Ok(PutManifestOutcome {
            created,
            previous_tag_targets: previous,
        })
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let state = lock(&self.state);
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(None);
        };
        let digest = match reference {
            Reference::Digest(digest) => Some(digest),
            Reference::Tag(tag) => repo.tags.get(tag),
        };
        Ok(digest
            .and_then(|d| repo.manifests.get(d))
            .map(|m| m.record.clone()))
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Vec<Tag>> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let repo = state
            .repositories
            .get_mut(repository)
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        if !repo.manifests.contains_key(digest) {
            return Err(manifest_unknown(repository, digest));
        }
        if let Some((index, _)) = repo
            .manifests
            .iter()
            .find(|(_, m)| m.children.contains(digest))
        {
            return Err(Error::ManifestReferenced {
                digest: digest.clone(),
                index: index.clone(),
            });
        }
        for (tag, _) in repo.tags.iter().filter(|(_, d)| *d == digest) {
            guard.check(tag, TagChange::Delete { current: digest })?;
        }
        Ok(remove_manifest(&mut state, repository, digest, due))
    }

    async fn put_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Option<Digest>> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let repo = state
            .repositories
            .get_mut(repository)
            .filter(|r| r.manifests.contains_key(digest))
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        repo.check_push(tag, digest, guard)?;
        let previous = repo.set_tag(tag, digest, Timestamp::now());
        if let Some(previous) = previous.as_ref().filter(|p| *p != digest) {
            state.queue(
                manifest_review(repository, previous),
                ReviewEvent::TagSwitched,
                due,
            );
        }
        Ok(previous)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        guard: &TagGuard,
    ) -> Result<Digest> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let repo = state
            .repositories
            .get_mut(repository)
            .filter(|r| r.tags.contains_key(tag))
            .ok_or_else(|| manifest_unknown(repository, tag))?;
        if let Some(current) = repo.tags.get(tag) {
            guard.check(tag, TagChange::Delete { current })?;
        }
        let digest = repo
            .remove_tag(tag)
            .ok_or_else(|| manifest_unknown(repository, tag))?;
        state.queue(
            manifest_review(repository, &digest),
            ReviewEvent::TagDeleted,
            due,
        );
        Ok(digest)
    }

    async fn list_tags(&self, repository: &RepositoryName, page: &Page) -> Result<Vec<Tag>> {
        let state = lock(&self.state);
        let repo = state.repository(repository)?;
        Ok(paginate(repo.tags.keys().map(|t| (t.as_str(), t)), page))
    }

    async fn storage_usage(&self, scope: &UsageScope) -> Result<StorageUsage> {
        let state = lock(&self.state);
        let covered = |name: &RepositoryName| match scope {
            UsageScope::Repository(repository) => name == repository,
            UsageScope::Namespace(prefix) => {
                name == prefix
                    || name
                        .as_str()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        };
        let mut usage = StorageUsage::default();
        let mut blobs = std::collections::HashSet::new();
        for (_, repo) in state.repositories.iter().filter(|(name, _)| covered(name)) {
            usage.repositories += 1;
            for manifest in repo.manifests.values() {
                usage.manifests += 1;
                usage.manifest_bytes += manifest.record.bytes.len() as u64;
                blobs.extend(manifest.blobs.iter());
            }
        }
        usage.blobs = blobs.len() as u64;
        usage.blob_bytes = blobs
            .iter()
            .filter_map(|d| state.blobs.get(*d).map(|b| b.size))
            .sum();
        Ok(usage)
    }

    async fn tag_details(
        &self,
        repository: &RepositoryName,
        query: &TagQuery,
    ) -> Result<Vec<TagDetail>> {
        let state = lock(&self.state);
        let repo = state.repository(repository)?;
        let mut details: Vec<TagDetail> = repo
            .tags
            .iter()
            .filter(|(tag, _)| {
                query
                    .contains
                    .as_deref()
                    .is_none_or(|c| tag.as_str().contains(c))
            })
            .filter_map(|(tag, digest)| {
                let manifest = repo.manifests.get(digest)?;
                let (created_at, published_at) = repo.tag_times.get(tag).copied()?;
                let blobs: u64 = manifest
                    .blobs
                    .iter()
                    .filter_map(|b| state.blobs.get(b).map(|r| r.size))
                    .sum();
                let manifest_size = manifest.record.bytes.len() as u64;
                Some(TagDetail {
                    name: tag.clone(),
                    digest: digest.clone(),
                    media_type: manifest.record.media_type.clone(),
                    manifest_size,
                    size: manifest_size + blobs,
                    created_at,
                    published_at,
                })
            })
            .collect();
        Ok(page_of_tags(&mut details, query))
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let state = lock(&self.state);
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(Vec::new());
        };
        let mut referrers: Vec<Referrer> = repo
            .manifests
            .values()
            .map(|m| &m.record)
            .filter(|m| m.subject.as_ref() == Some(subject))
            .filter(|m| artifact_type.is_none() || m.artifact_type.as_deref() == artifact_type)
            .map(|m| Referrer {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.bytes.len() as u64,
                artifact_type: m.artifact_type.clone(),
                annotations: m.annotations.clone(),
            })
            .collect();
        referrers.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(referrers)
    }
}

#[async_trait]
impl PolicyStore for MemoryMetadataStore {
    async fn policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        let state = lock(&self.state);
        Ok(state
            .policies
            .range((kind.as_str(), String::new())..)
            .take_while(|((k, _), _)| *k == kind.as_str())
            .map(|(_, policy)| policy.clone())
            .collect())
    }

    async fn put_policy(&self, policy: &StoredPolicy, max: usize) -> Result<bool> {
        let mut state = lock(&self.state);
        let key = (policy.kind.as_str(), policy.name.clone());
        let created = match state.policies.get(&key) {
            Some(existing) => {
                check_source(existing, policy.source)?;
                false
            }
            None => {
                check_count(count_of(&state.policies, policy.kind) + 1, max)?;
                true
            }
        };
        state.policies.insert(key, policy.clone());
        Ok(created)
    }

    async fn delete_policy(
        &self,
        kind: PolicyKind,
        name: &str,
        source: PolicySource,
    ) -> Result<bool> {
        let mut state = lock(&self.state);
        let key = (kind.as_str(), name.to_owned());
        match state.policies.get(&key) {
            None => Ok(false),
            Some(existing) => {
                check_source(existing, source)?;
                state.policies.remove(&key);
                Ok(true)
            }
        }
    }

    async fn replace_policies(
        &self,
        kind: PolicyKind,
        source: PolicySource,
        policies: &[StoredPolicy],
        max: usize,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        let others: Vec<&StoredPolicy> = state
            .policies
            .values()
            .filter(|p| p.kind == kind && p.source != source)
            .collect();
        for policy in policies {
            if let Some(other) = others.iter().find(|o| o.name == policy.name) {
                check_source(other, source)?;
            }
        }
        check_count(others.len() + policies.len(), max)?;
        state
            .policies
            .retain(|_, p| !(p.kind == kind && p.source == source));
        for policy in policies {
            state
                .policies
                .insert((kind.as_str(), policy.name.clone()), policy.clone());
        }
        Ok(())
    }
}

fn count_of(policies: &BTreeMap<(&'static str, String), StoredPolicy>, kind: PolicyKind) -> usize {
    policies.values().filter(|p| p.kind == kind).count()
}

#[async_trait]
impl UploadMetadata for MemoryMetadataStore {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()> {
        let mut state = lock(&self.state);
        if state.uploads.contains_key(&upload.id) {
            return Err(Error::BlobUploadInvalid {
                reason: format!("upload {} already exists", upload.id),
            });
        }
        state.uploads.insert(upload.id.clone(), upload.clone());
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        Ok(lock(&self.state).uploads.get(id).cloned())
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        Ok(lock(&self.state).uploads.remove(id).is_some())
    }

    async fn uploads_started_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let state = lock(&self.state);
        let mut uploads: Vec<UploadRecord> = state
            .uploads
            .values()
            .filter(|u| u.started_at < before)
            .cloned()
            .collect();
        uploads.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        uploads.truncate(limit);
        Ok(uploads)
    }
}

#[async_trait]
impl ReviewQueue for MemoryMetadataStore {
    async fn due_reviews(&self, now: Timestamp, limit: usize) -> Result<Vec<ReviewTask>> {
        let state = lock(&self.state);
        let mut due: Vec<ReviewTask> = state
            .reviews
            .values()
            .filter(|t| t.due_at <= now)
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.due_at, &a.target).cmp(&(b.due_at, &b.target)));
        due.truncate(limit);
        Ok(due)
    }

    async fn review(&self, target: &ReviewTarget) -> Result<Option<ReviewTask>> {
        Ok(lock(&self.state).reviews.get(target).cloned())
    }

    async fn postpone_review(&self, target: &ReviewTarget, until: Timestamp) -> Result<bool> {
        let mut state = lock(&self.state);
        Ok(state
            .reviews
            .get_mut(target)
            .map(|task| {
                task.due_at = until;
                task.attempts += 1;
            })
            .is_some())
    }

    async fn complete_review(&self, task: &ReviewTask) -> Result<bool> {
        let mut state = lock(&self.state);
        let unchanged = state
            .reviews
            .get(&task.target)
            .is_some_and(|queued| queued.event == task.event && queued.due_at == task.due_at);
        if unchanged {
            state.reviews.remove(&task.target);
        }
        Ok(unchanged)
    }

    async fn review_queue_len(&self) -> Result<u64> {
        Ok(lock(&self.state).reviews.len() as u64)
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
