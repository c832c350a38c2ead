//! The metadata store: repositories, blob links, manifests, tags, referrers, upload sessions
//! and the garbage collector's review queue.
//!
//! The metadata store is the registry's source of truth. Every mutation is one transaction,
//! and records the review-queue entries it causes in that same transaction.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::UploadId;
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::name::{Reference, RepositoryName, Tag};
use crate::rules::TagGuard;

/// The default delay before a review-queue entry is due: 24 hours.
pub const DEFAULT_REVIEW_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

pub use crate::values::{Page, Timestamp};

/// A stored blob, shared by every repository that links it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was first recorded.
    pub created_at: Timestamp,
}

/// A manifest to store: what [`ContentMetadata::put_manifest`] records.
#[derive(Clone, Debug)]
pub struct NewManifest {
    /// The repository it is pushed to.
    pub repository: RepositoryName,
    /// Digest of the bytes.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Artifact type as the referrers API reports it.
    pub artifact_type: Option<String>,
    /// The subject, if any; it need not exist.
    pub subject: Option<Digest>,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
    /// The original bytes.
    pub bytes: Bytes,
    /// Blobs it references (config and layers, except non-distributable layers the repository
    /// does not hold, which are external): each must be linked to the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index): each must exist in the repository.
    pub children: Vec<Digest>,
}

impl NewManifest {
    /// The record of a parsed manifest pushed to a repository.
    pub fn from_manifest(repository: RepositoryName, manifest: &Manifest) -> Self {
        NewManifest {
            repository,
            digest: manifest.digest().clone(),
            media_type: manifest.media_type().to_owned(),
            artifact_type: manifest.referrer_artifact_type().map(str::to_owned),
            subject: manifest.subject().map(|s| s.digest.clone()),
            annotations: manifest.annotations().clone(),
            bytes: manifest.bytes().clone(),
            blobs: manifest.blob_digests(),
            children: manifest.child_digests(),
        }
    }
}

/// A stored manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Its repository.
    pub repository: RepositoryName,
    /// Digest of the bytes.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Artifact type as the referrers API reports it.
    pub artifact_type: Option<String>,
    /// The subject, if any.
    pub subject: Option<Digest>,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
    /// The original bytes.
    pub bytes: Bytes,
    /// When it was first pushed.
    pub created_at: Timestamp,
}

impl Debug for ManifestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestRecord")
            .field("repository", &self.repository)
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .field("size", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// What a manifest push changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutManifestOutcome {
    /// Whether the manifest was new to the repository.
    pub created: bool,
    /// The manifests the tags pointed at before, each once, when the push moved them.
    pub previous_tag_targets: Vec<Digest>,
}

/// A manifest in a referrers listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// An upload session's record: which repository it belongs to and when it began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// The session id (shared with the blob store's session).
    pub id: UploadId,
    /// The repository the blob will be linked to.
    pub repository: RepositoryName,
    /// When it started.
    pub started_at: Timestamp,
}

/// What the garbage collector must review.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReviewTarget {
    /// A blob, which may have lost its last reference.
    Blob {
        /// The blob.
        digest: Digest,
    },
    /// A manifest in a repository, which may have become dangling.
    Manifest {
        /// Its repository.
        repository: RepositoryName,
        /// The manifest.
        digest: Digest,
    },
}

/// Why an entry was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReviewEvent {
    /// A blob was uploaded or linked to a repository.
    BlobUploaded,
    /// A blob was unlinked from a repository.
    BlobUnlinked,
    /// A manifest was pushed.
    ManifestUploaded,
    /// A tag moved away from the manifest.
    TagSwitched,
    /// A tag pointing at the manifest was deleted.
    TagDeleted,
    /// A manifest referencing the blob was deleted.
    ManifestDeleted,
    /// An index listing the manifest was deleted.
    IndexDeleted,
    /// The manifest's subject was deleted.
    SubjectDeleted,
    /// A package file (or its version or package) referencing the blob was deleted or
    /// replaced.
    PackageFileDeleted,
}

impl ReviewEvent {
    /// Every event.
    pub const ALL: [ReviewEvent; 9] = [
        ReviewEvent::BlobUploaded,
        ReviewEvent::BlobUnlinked,
        ReviewEvent::ManifestUploaded,
        ReviewEvent::TagSwitched,
        ReviewEvent::TagDeleted,
        ReviewEvent::ManifestDeleted,
        ReviewEvent::IndexDeleted,
        ReviewEvent::SubjectDeleted,
        ReviewEvent::PackageFileDeleted,
    ];

    /// The event's stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewEvent::BlobUploaded => "blob_uploaded",
            ReviewEvent::BlobUnlinked => "blob_unlinked",
            ReviewEvent::ManifestUploaded => "manifest_uploaded",
            ReviewEvent::TagSwitched => "tag_switched",
            ReviewEvent::TagDeleted => "tag_deleted",
            ReviewEvent::ManifestDeleted => "manifest_deleted",
            ReviewEvent::IndexDeleted => "index_deleted",
            ReviewEvent::SubjectDeleted => "subject_deleted",
            ReviewEvent::PackageFileDeleted => "package_file_deleted",
        }
    }

    /// Parses a stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// A review-queue entry. The queue holds one entry per target: a new event for a target
/// already queued replaces its event and pushes its due time back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewTask {
    /// What to review.
    pub target: ReviewTarget,
    /// The latest event that queued it.
    pub event: ReviewEvent,
    /// When it becomes due.
    pub due_at: Timestamp,
    /// How many reviews of it were postponed.
    pub attempts: u32,
}

/// Repositories, blob links, manifests, tags and referrers.
#[async_trait]
pub trait ContentMetadata: Debug + Send + Sync + 'static {
    /// Whether a repository exists (has ever had content linked or pushed to it).
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool>;

    /// Repository names in lexical (byte) order, one page at a time.
    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepositoryName>>;

    /// Records a stored blob and links it to a repository, creating the repository if needed.
    ///
    /// Idempotent. Queues the blob for review ([`ReviewEvent::BlobUploaded`]) in the same
    /// transaction.
    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()>;

    /// The blob's record if it is linked to the repository, else `None`.
    async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>>;

    /// The blob's record if the store has recorded it (linked now or before, and not yet
    /// collected), else `None`.
    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>>;

    /// Removes a blob's link from a repository; returns whether it was linked. Queues the blob
    /// for review ([`ReviewEvent::BlobUnlinked`]).
    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool>;

    /// Stores a manifest and points each of `tags` (possibly none) at it, in one transaction.
    ///
    /// Every blob it needs must be linked to the repository and every child manifest must exist
    /// there, else [`crate::Error::ManifestBlobUnknown`] and nothing changes. Pushing an existing
    /// manifest again is not an error. Queues the manifest for review
    /// ([`ReviewEvent::ManifestUploaded`]) and, for each tag that moved, the manifest it left
    /// ([`ReviewEvent::TagSwitched`]).
    ///
    /// Each tag change is checked against `guard` in the transaction: one refusal
    /// ([`crate::Error::Denied`]) leaves nothing stored and no tag changed.
    async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tags: &[Tag],
        guard: &TagGuard,
    ) -> Result<PutManifestOutcome>;

    /// A manifest by tag or digest, or `None`.
    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>>;

    /// Deletes a manifest and every tag pointing at it; returns those tags.
    ///
    /// Errors: [`crate::Error::ManifestUnknown`]; [`crate::Error::ManifestReferenced`] while an
    /// index in the repository lists it. Queues, in the same transaction, its blobs
    /// ([`ReviewEvent::ManifestDeleted`]), its children ([`ReviewEvent::IndexDeleted`]) and its
    /// referrers ([`ReviewEvent::SubjectDeleted`]). Each tag's deletion is checked against
    /// `guard` in the transaction ([`crate::Error::Denied`], nothing deleted).
    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Vec<Tag>>;

    /// Points a tag at an existing manifest; returns the manifest it pointed at before.
    ///
    /// Errors: [`crate::Error::ManifestUnknown`]. Queues the previous target
    /// ([`ReviewEvent::TagSwitched`]) when the tag moved. The change is checked against `guard`
    /// in the transaction.
    async fn put_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Option<Digest>>;

    /// Deletes a tag, leaving its manifest; returns the manifest it pointed at.
    ///
    /// Errors: [`crate::Error::ManifestUnknown`]. Queues the manifest
    /// ([`ReviewEvent::TagDeleted`]). The deletion is checked against `guard` in the
    /// transaction.
    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        guard: &TagGuard,
    ) -> Result<Digest>;

    /// Tags of a repository in lexical (byte) order, one page at a time.
    ///
    /// Errors: [`crate::Error::NameUnknown`] when the repository does not exist.
    async fn list_tags(&self, repository: &RepositoryName, page: &Page) -> Result<Vec<Tag>>;

    /// A page of tags with details, filtered and ordered as asked, in the listing's order
    /// (also when paging backwards with [`TagQuery::before`]).
    ///
    /// Errors: [`crate::Error::NameUnknown`] when the repository does not exist.
    async fn tag_details(
        &self,
        repository: &RepositoryName,
        query: &TagQuery,
    ) -> Result<Vec<TagDetail>>;

    /// The storage a repository or namespace uses, shared blobs counted once.
    async fn storage_usage(&self, scope: &UsageScope) -> Result<StorageUsage>;

    /// Manifests in the repository whose subject is `subject`, optionally only those of one
    /// artifact type, ordered by digest. An unknown subject has no referrers.
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
}

/// Records of upload sessions.
#[async_trait]
pub trait UploadMetadata: Debug + Send + Sync + 'static {
    /// Records a new session. Creating an id twice is an error.
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()>;

    /// A session's record, or `None`.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>>;

    /// Removes a session's record; returns whether it existed.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;

    /// Sessions started before `before`, oldest first, at most `limit`.
    async fn uploads_started_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>>;
}

/// The garbage collector's review queue.
#[async_trait]
pub trait ReviewQueue: Debug + Send + Sync + 'static {
    /// Entries due at or before `now`, earliest first, at most `limit`.
    async fn due_reviews(&self, now: Timestamp, limit: usize) -> Result<Vec<ReviewTask>>;

    /// The entry queued for a target, if any.
    async fn review(&self, target: &ReviewTarget) -> Result<Option<ReviewTask>>;

    /// Pushes an entry's due time to `until` and counts an attempt; returns whether it existed.
    async fn postpone_review(&self, target: &ReviewTarget, until: Timestamp) -> Result<bool>;

    /// Removes an entry once reviewed, unless an event re-queued it (changed its event or due
    /// time) since `task` was read; returns whether it was removed.
    async fn complete_review(&self, task: &ReviewTask) -> Result<bool>;

    /// The number of entries queued.
    async fn review_queue_len(&self) -> Result<u64>;
}

/// How a detailed tag listing is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TagOrder {
    /// By name, in byte order.
    #[default]
    Name,
    /// By when the tag was last pointed at a manifest, then by name.
    Published,
}

/// Where a page of a detailed tag listing starts or ends: the sort key of a tag, exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagMarker {
    /// The publish time (ignored when ordering by name).
    pub published_at: Timestamp,
    /// The tag's name.
    pub name: String,
}

/// A detailed tag listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagQuery {
    /// Only tags whose name contains this (case-sensitive).
    pub contains: Option<String>,
    /// The order.
    pub order: TagOrder,
    /// Reverse the order.
    pub descending: bool,
    /// The page after this marker (in the listing's order)…
    pub after: Option<TagMarker>,
    /// …or the page before it (`after` wins when both are given).
    pub before: Option<TagMarker>,
    /// At most this many tags.
    pub limit: usize,
}

/// A tag with what it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagDetail {
    /// The tag.
    pub name: Tag,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// The manifest plus every blob it references (config and layers), in bytes.
    pub size: u64,
    /// When the tag was created.
    pub created_at: Timestamp,
    /// When the tag was last pointed at a manifest.
    pub published_at: Timestamp,
}

impl TagDetail {
    /// The marker of this tag, to page from it.
    pub fn marker(&self) -> TagMarker {
        TagMarker {
            published_at: self.published_at,
            name: self.name.to_string(),
        }
    }
}

/// Whose storage to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageScope {
    /// One repository.
    Repository(RepositoryName),
    /// A namespace: the repository of that name, if any, and every repository below it
    /// (`team` covers `team`, `team/app` and `team/app/sub`).
    Namespace(RepositoryName),
}

/// Storage a scope uses, each blob counted once however many manifests and repositories share it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Repositories in the scope.
    pub repositories: u64,
    /// Manifests in them.
    pub manifests: u64,
    /// Bytes of those manifests.
    pub manifest_bytes: u64,
    /// Distinct blobs their manifests reference.
    pub blobs: u64,
    /// Bytes of those blobs.
    pub blob_bytes: u64,
}

/// A manifest as a whole-store sweep sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was first pushed.
    pub created_at: Timestamp,
    /// Whether any tag points at it.
    pub tagged: bool,
    /// Its subject, if any.
    pub subject: Option<Digest>,
    /// Blobs it references.
    pub blobs: Vec<Digest>,
    /// Child manifests it lists.
    pub children: Vec<Digest>,
}

/// What reviewing a manifest decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestVerdict {
    /// It was dangling and is deleted; its blobs, children and referrers are queued for review.
    Deleted,
    /// A tag points at it.
    Tagged,
    /// An index in the repository lists it.
    Listed,
    /// It refers to a subject that exists in the repository.
    Referrer,
    /// It no longer exists.
    Missing,
}

/// A blob's records, removed in a transaction that is still open: new links of the digest wait
/// until it ends. The collector deletes the bytes, then commits; or abandons, which restores the
/// records.
#[async_trait]
pub trait BlobClaim: Send {
    /// Makes the removal final.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Restores the records as they were.
    async fn abandon(self: Box<Self>) -> Result<()>;
}

/// The garbage collector's decisions, each taken in one transaction.
#[async_trait]
pub trait CollectionMetadata: Debug + Send + Sync + 'static {
    /// Deletes a manifest if it is dangling: no tag points at it, no index in the repository
    /// lists it, and it is not a referrer of a manifest that exists there. Deleting queues what
    /// it referenced, as [`ContentMetadata::delete_manifest`] does.
    async fn collect_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestVerdict>;

    /// Every manifest of a repository in digest order, one page at a time.
    async fn list_manifests(
        &self,
        repository: &RepositoryName,
        page: &Page,
    ) -> Result<Vec<ManifestEntry>>;

    /// Every blob record in digest order, one page at a time.
    async fn list_blobs(&self, page: &Page) -> Result<Vec<BlobRecord>>;

    /// Claims a blob no manifest references: removes its record and every repository's link in
    /// a transaction left open in the returned claim, so concurrent links of the digest and
    /// manifests referencing it wait for the claim to end (and then see it gone). `None` when a
    /// manifest references the blob or it has no record.
    async fn claim_blob(&self, digest: &Digest) -> Result<Option<Box<dyn BlobClaim>>>;
}

/// Which kind of policy document a [`StoredPolicy`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// A [`crate::rules::TagRule`].
    TagRule,
    /// A [`crate::rules::CleanupPolicy`].
    Cleanup,
    /// A [`crate::firewall::FirewallRule`].
    FirewallRule,
}

impl PolicyKind {
    /// The kind's name in storage (`tag_rule`, `cleanup`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyKind::TagRule => "tag_rule",
            PolicyKind::Cleanup => "cleanup",
            PolicyKind::FirewallRule => "firewall_rule",
        }
    }
}

/// Where a stored policy came from; each source manages only its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    /// A server's configuration file, replaced as a whole when a server starts.
    Config,
    /// The admin API, one at a time.
    Api,
}

impl PolicySource {
    /// The source's name in storage (`config`, `api`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicySource::Config => "config",
            PolicySource::Api => "api",
        }
    }

    /// Parses a stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "config" => Some(PolicySource::Config),
            "api" => Some(PolicySource::Api),
            _ => None,
        }
    }
}

/// A tag rule or cleanup policy as stored: its name, source and JSON document (validated by
/// [`crate::rules`] before it is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    /// What it is.
    pub kind: PolicyKind,
    /// Its name, unique per kind.
    pub name: String,
    /// Who manages it.
    pub source: PolicySource,
    /// The JSON document.
    pub document: String,
}

/// Tag rules and cleanup policies, stored so every instance sharing the store applies the same.
#[async_trait]
pub trait PolicyStore: Debug + Send + Sync + 'static {
    /// Every stored policy of a kind, by name.
    async fn policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>>;

    /// Creates or replaces one policy; returns whether it was created.
    ///
    /// Errors: [`crate::Error::Denied`] when a policy of that name comes from another source;
    /// [`crate::Error::PolicyInvalid`] when creating it would make more than `max` of its kind.
    async fn put_policy(&self, policy: &StoredPolicy, max: usize) -> Result<bool>;

    /// Deletes one policy of a source; returns whether it existed.
    ///
    /// Errors: [`crate::Error::Denied`] when the policy of that name comes from another source.
    async fn delete_policy(
        &self,
        kind: PolicyKind,
        name: &str,
        source: PolicySource,
    ) -> Result<bool>;

    /// Replaces every policy of a kind from a source with `policies` (all of that kind and
    /// source), in one transaction.
    ///
    /// Errors: [`crate::Error::Denied`] when a name is taken by another source;
    /// [`crate::Error::PolicyInvalid`] when the kind would exceed `max`.
    async fn replace_policies(
        &self,
        kind: PolicyKind,
        source: PolicySource,
        policies: &[StoredPolicy],
        max: usize,
    ) -> Result<()>;
}
