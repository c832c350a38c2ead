//! The OCI registry service: push, pull, mount, tag, delete, list and referrers over a
//! [`BlobStore`] and a [`MetadataStore`].
//!
//! This is where OCI semantics live; the HTTP layer only translates requests and responses.
//! Authorization is the caller's job: every method assumes the caller may do what it asks.

use std::sync::Arc;

mod cache;
mod pull_through;
mod virtual_registry;

pub use cache::CacheSettings;
use cache::ReadCache;
use pull_through::PullState;
pub use pull_through::PullThrough;
pub use virtual_registry::OciVirtual;

use bytes::Bytes;
use futures::stream::StreamExt;

use crate::auth::NamePattern;
use crate::blob::{BlobRead, BlobStore, ByteRange, ByteStream, UploadId};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestLimits};
use crate::metadata::{
    BlobRecord, ManifestRecord, NewManifest, Page, PolicyKind, PolicySource, Referrer,
    StoredPolicy, Timestamp, UploadRecord,
};
use crate::name::{Reference, RepositoryName, Tag};
use crate::rules::{Actor, CleanupPolicy, DEFAULT_MAX_RULES, TagGuard, TagRule, check_set};
use crate::store::MetadataStore;

/// Size limits on what clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Manifest parsing limits (4 MiB by default).
    pub manifest: ManifestLimits,
    /// Largest blob accepted, in bytes (10 GiB by default).
    pub max_blob_size: u64,
    /// Largest page of a tag or repository listing.
    pub max_page_size: usize,
    /// Most tag rules, and most cleanup policies, a store holds.
    pub max_rules: usize,
    /// Most tags one manifest push sets (`?tag=` parameters plus a tag reference).
    pub max_tags_per_push: usize,
    /// Most bytes of manifest bodies held in memory at once, across requests (1 GiB by
    /// default): a push that would pass it is refused with a retry hint.
    pub max_buffered_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest: ManifestLimits::default(),
            max_blob_size: 10 << 30,
            max_page_size: 10_000,
            max_rules: DEFAULT_MAX_RULES,
            max_tags_per_push: 32,
            max_buffered_bytes: 1 << 30,
        }
    }
}

/// What a manifest push stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its subject, when it has one (the HTTP layer answers `OCI-Subject`).
    pub subject: Option<Digest>,
}

/// The OCI registry over a blob store and a metadata store.
#[derive(Clone, Debug)]
pub struct OciRegistry {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    limits: Limits,
    /// Repositories that accept sparse manifests.
    sparse: Vec<NamePattern>,
    /// Recent manifest and blob-link reads (shared by clones).
    cache: Arc<ReadCache>,
    /// Pull-through caches of upstream registries ([`PullThrough`]).
    pull_through: Arc<Vec<PullThrough>>,
    /// What fetches from their upstreams.
    upstream: Option<Arc<dyn crate::proxy::Upstream>>,
    /// What pulls share (shared by clones).
    pulls: Arc<PullState>,
    /// Virtual image registries ([`OciVirtual`]).
    virtuals: Arc<Vec<OciVirtual>>,
}

impl OciRegistry {
    /// A registry over the given stores, with default limits.
    pub fn new(blobs: Arc<dyn BlobStore>, metadata: Arc<dyn MetadataStore>) -> Self {
        OciRegistry {
            blobs,
            metadata,
            limits: Limits::default(),
            sparse: Vec::new(),
            cache: Arc::new(ReadCache::new(CacheSettings::default())),
            pull_through: Arc::default(),
            upstream: None,
            pulls: Arc::default(),
            virtuals: Arc::default(),
        }
    }

    /// Replaces the read cache's settings ([`CacheSettings::default`]: one second, 100,000
    /// entries). Changes made through this service are seen at once; changes made elsewhere
    /// (another instance, the CLI, the collector) within the time to live. A zero time to live
    /// reads the store every time.
    pub fn with_cache(mut self, settings: CacheSettings) -> Self {
        self.cache = Arc::new(ReadCache::new(settings));
        self
    }

    /// Forgets what this service remembers of a repository: for callers in the same process
    /// that change it through the metadata store directly (cleanup runs), so the change is seen
    /// at once.
    pub fn forget(&self, repository: &RepositoryName) {
        self.cache.forget(repository);
    }

    /// Forgets everything this service remembers (after a collection, for instance).
    pub fn forget_all(&self) {
        self.cache.forget_all();
    }

    /// Lets the repositories matching `patterns` hold sparse manifests (none by default): an
    /// index whose child manifests are absent, an image manifest whose config or layers are
    /// absent, as a mirror that copies part of an image pushes them. Absent pieces answer 404
    /// and are not recorded as references (nothing is there to keep); pieces present are
    /// checked and referenced as usual.
    pub fn with_sparse_manifests(mut self, patterns: Vec<NamePattern>) -> Self {
        self.sparse = patterns;
        self
    }

    /// Refuses a push into a pull-through cache's or a virtual registry's repository.
    fn refuse_push(&self, repository: &RepositoryName) -> Result<()> {
        self.refuse_pull_through(repository)?;
        self.refuse_virtual(repository)
    }

    /// Whether a repository may hold sparse manifests: a pull-through cache's always does
    /// (blobs and children come when asked for).
    fn accepts_sparse(&self, repository: &RepositoryName) -> bool {
        self.is_pulled(repository) || self.sparse.iter().any(|p| p.matches(repository))
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The blob store.
    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The metadata store.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// A blob linked to the repository (pulled from its upstream first when the repository is a
    /// pull-through cache's and it is not here). Errors: [`Error::BlobUnknown`].
    pub async fn blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<BlobRecord> {
        if self.is_virtual(repository) {
            return self.virtual_blob(repository, digest).await;
        }
        match self.stored_blob(repository, digest).await {
            Err(Error::BlobUnknown { .. }) if self.is_pulled(repository) => {
                self.pulled_blob(repository, digest).await
            }
            Ok(record) => {
                self.note_read(repository, digest).await;
                Ok(record)
            }
            other => other,
        }
    }

    async fn stored_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobRecord> {
        if let Some(record) = self.cache.blob(repository, digest) {
            return Ok(record);
        }
        let ticket = self.cache.ticket(repository);
        let record = self
            .metadata
            .linked_blob(repository, digest)
            .await?
            .ok_or_else(|| blob_unknown(digest))?;
        self.cache.keep_blob(repository, ticket, &record);
        Ok(record)
    }

    /// Opens a blob linked to the repository for reading.
    pub async fn read_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        self.blob(repository, digest).await?;
        self.blobs.read(digest, range).await
    }

    /// Where a client may fetch a hosted repository's blob itself (the blob store's presigned
    /// URL), after the same checks as [`OciRegistry::read_blob`]; `None` when the registry
    /// serves it, as it always does for pull-through caches and virtual registries (their
    /// bytes may still be on their way in).
    pub async fn blob_redirect(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        if self.is_virtual(repository) || self.is_pulled(repository) {
            return Ok(None);
        }
        // A store that serves blobs itself answers at once, without a second lookup of the
        // link; a URL is handed out only after the same checks as a read.
        let Some(url) = self.blobs.redirect_url(digest).await? else {
            return Ok(None);
        };
        self.blob(repository, digest).await?;
        Ok(Some(url))
    }

    /// Stores a whole blob in one request and links it to the repository.
    pub async fn put_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<BlobRecord> {
        self.refuse_push(repository)?;
        let body = self.limit_stream(body, 0);
        let size = self.blobs.write(digest, body).await?;
        self.link_written(repository, digest, size).await
    }

    /// Links bytes just written, then checks they are still there: a collector may have claimed
    /// the digest and deleted the bytes between the write and the link (the link waited for its
    /// claim). Then the push fails cleanly instead of recording a blob without bytes.
    /// Links a blob already in the blob store (`size` bytes) to a repository, then checks the
    /// bytes are still there: a collector may have claimed the digest between the caller's
    /// look at the store and the link. Errors: [`Error::BlobUploadInvalid`] when it did.
    pub async fn link_stored_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobRecord> {
        self.refuse_push(repository)?;
        self.link_written(repository, digest, size).await
    }

    async fn link_written(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobRecord> {
        self.metadata.link_blob(repository, digest, size).await?;
        if self.blobs.stat(digest).await?.is_none() {
            self.metadata.unlink_blob(repository, digest).await?;
            self.cache.forget(repository);
            return Err(Error::BlobUploadInvalid {
                reason: format!(
                    "blob {digest} was garbage-collected while it was being uploaded; upload it again"
                ),
            });
        }
        // Not re-read from the store: a collector may already be reviewing the fresh, still
        // unreferenced blob, and the push itself has succeeded.
        Ok(BlobRecord {
            digest: digest.clone(),
            size,
            created_at: Timestamp::now(),
        })
    }

    /// Links a blob another repository holds into this one.
    ///
    /// With `from`, the blob must be linked there; without it, it must merely be stored (the
    /// caller has checked the client may read it). Returns `None` when the blob cannot be mounted,
    /// in which case the client uploads it instead.
    pub async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<BlobRecord>> {
        self.refuse_push(repository)?;
        self.link_stored(repository, digest, from).await
    }

    /// [`OciRegistry::mount_blob`] without the check that the repository takes pushes.
    async fn link_stored(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<BlobRecord>> {
        let source = match from {
            Some(from) => self.metadata.linked_blob(from, digest).await?,
            None => self.metadata.blob(digest).await?,
        };
        let Some(source) = source else {
            return Ok(None);
        };
        match self.link_written(repository, digest, source.size).await {
            Ok(record) => Ok(Some(record)),
            // Collected meanwhile: the client uploads it instead.
            Err(Error::BlobUploadInvalid { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Unlinks a blob from the repository. Errors: [`Error::BlobUnknown`].
    pub async fn delete_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<()> {
        let unlinked = self.metadata.unlink_blob(repository, digest).await;
        self.cache.forget(repository);
        if unlinked? {
            Ok(())
        } else {
            Err(blob_unknown(digest))
        }
    }

    /// Starts a resumable upload into the repository.
    pub async fn start_upload(&self, repository: &RepositoryName) -> Result<UploadId> {
        self.refuse_push(repository)?;
        let id = self.blobs.upload_start(Algorithm::Sha256).await?;
        let record = UploadRecord {
            id: id.clone(),
            repository: repository.clone(),
            started_at: Timestamp::now(),
        };
        if let Err(e) = self.metadata.create_upload(&record).await {
            let _ = self.blobs.upload_cancel(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    async fn check_upload(&self, repository: &RepositoryName, id: &UploadId) -> Result<()> {
        match self.metadata.upload(id).await? {
            Some(record) if record.repository == *repository => Ok(()),
            _ => Err(Error::BlobUploadUnknown { id: id.to_string() }),
        }
    }

    /// Bytes an upload holds so far.
    pub async fn upload_status(&self, repository: &RepositoryName, id: &UploadId) -> Result<u64> {
        self.check_upload(repository, id).await?;
        self.blobs.upload_status(id).await
    }

    /// Appends a chunk at `offset`, or at the current end when `offset` is `None` (a streamed
    /// upload); returns the new size.
    pub async fn append_upload(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.check_upload(repository, id).await?;
        let offset = match offset {
            Some(offset) => offset,
            None => self.blobs.upload_status(id).await?,
        };
        let body = self.limit_stream(body, offset);
        self.blobs.upload_append(id, offset, body).await
    }

    /// Completes an upload with its digest, after appending a last chunk if one is given, and
    /// links the blob to the repository.
    pub async fn finish_upload(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<BlobRecord> {
        if let Some((offset, body)) = last_chunk {
            self.append_upload(repository, id, offset, body).await?;
        } else {
            self.check_upload(repository, id).await?;
        }
        let size = self.blobs.upload_finish(id, digest).await?;
        self.metadata.delete_upload(id).await?;
        self.link_written(repository, digest, size).await
    }

    /// Abandons an upload.
    pub async fn cancel_upload(&self, repository: &RepositoryName, id: &UploadId) -> Result<()> {
        self.check_upload(repository, id).await?;
        self.blobs.upload_cancel(id).await?;
        self.metadata.delete_upload(id).await?;
        Ok(())
    }

    /// A manifest by tag or digest (pulled or revalidated first when the repository is a
    /// pull-through cache's, see [`PullThrough`]). Errors: [`Error::ManifestUnknown`].
    pub async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        if self.is_pulled(repository) {
            return self.pulled_manifest(repository, reference).await;
        }
        if self.is_virtual(repository) {
            return self.virtual_manifest(repository, reference).await;
        }
        self.stored_manifest(repository, reference).await
    }

    async fn stored_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        let key = reference.to_string();
        if let Some(record) = self.cache.manifest(repository, &key) {
            return Ok(record);
        }
        let ticket = self.cache.ticket(repository);
        let record = self
            .metadata
            .manifest(repository, reference)
            .await?
            .ok_or_else(|| Error::ManifestUnknown {
                repository: repository.to_string(),
                reference: key.clone(),
            })?;
        self.cache.keep_manifest(repository, ticket, key, &record);
        Ok(record)
    }

    /// Validates and stores a manifest under a tag or its digest.
    ///
    /// Pushed by digest, the bytes must hash to it ([`Error::DigestMismatch`]). Every blob and
    /// child it references must be in the repository ([`Error::ManifestBlobUnknown`]) with the
    /// size its descriptor declares ([`Error::ManifestInvalid`]), except a non-distributable
    /// layer, which may be absent; its subject need not exist. A tag push must pass the tag
    /// rules for `actor` ([`Error::Denied`] naming the rule).
    pub async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        bytes: Bytes,
        content_type: Option<&str>,
        actor: &Actor,
    ) -> Result<PushedManifest> {
        self.put_manifest_with_tags(repository, reference, &[], bytes, content_type, actor)
            .await
    }

    /// Like [`OciRegistry::put_manifest`], also pointing each of `tags` at the manifest, in the
    /// same transaction: a tag refused by a rule leaves nothing stored and nothing tagged.
    ///
    /// Errors as for [`OciRegistry::put_manifest`], and [`Error::SizeInvalid`] for more than
    /// [`Limits::max_tags_per_push`] tags.
    pub async fn put_manifest_with_tags(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        tags: &[Tag],
        bytes: Bytes,
        content_type: Option<&str>,
        actor: &Actor,
    ) -> Result<PushedManifest> {
        self.refuse_push(repository)?;
        let pushed = self
            .store_manifest(repository, reference, tags, bytes, content_type, actor)
            .await;
        // Tags may have moved: what this instance remembers of the repository goes.
        self.cache.forget(repository);
        pushed
    }

    /// [`OciRegistry::put_manifest_with_tags`] without the cache's part.
    async fn store_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        tags: &[Tag],
        bytes: Bytes,
        content_type: Option<&str>,
        actor: &Actor,
    ) -> Result<PushedManifest> {
        let tags = self.tags_to_set(reference, tags)?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let manifest = Manifest::parse_with(bytes, content_type, &self.limits.manifest, algorithm)?;
        if let Reference::Digest(expected) = reference
            && expected != manifest.digest()
        {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual: manifest.digest().clone(),
            });
        }
        let mut record = NewManifest::from_manifest(repository.clone(), &manifest);
        record.blobs = self.stored_blobs(repository, &manifest).await?;
        record.children = self.stored_children(repository, &manifest).await?;
        let guard = if tags.is_empty() {
            TagGuard::none()
        } else {
            self.tag_guard(repository, actor).await?
        };
        self.metadata.put_manifest(&record, &tags, &guard).await?;
        Ok(PushedManifest {
            digest: record.digest,
            subject: record.subject,
        })
    }

    /// The tags a push sets: the reference's tag, if any, then `extra`, each once.
    fn tags_to_set(&self, reference: &Reference, extra: &[Tag]) -> Result<Vec<Tag>> {
        let mut tags: Vec<Tag> = Vec::with_capacity(extra.len() + 1);
        let from_reference = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        for tag in from_reference.into_iter().chain(extra) {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let limit = self.limits.max_tags_per_push;
        if tags.len() > limit {
            return Err(Error::SizeInvalid {
                what: "tag list of a manifest push",
                size: tags.len() as u64,
                limit: limit as u64,
            });
        }
        Ok(tags)
    }

    /// Checks the config and layers against the blobs the repository holds, and returns the
    /// blobs the manifest references there, each once.
    ///
    /// A blob must be linked ([`Error::ManifestBlobUnknown`]) and have the declared size
    /// ([`Error::ManifestInvalid`]). A non-distributable layer the repository does not hold is
    /// external: it is left out, so no reference to it is recorded. The store checks presence
    /// again in its transaction; sizes need no second check, as a digest's content never changes.
    async fn stored_blobs(
        &self,
        repository: &RepositoryName,
        manifest: &Manifest,
    ) -> Result<Vec<Digest>> {
        let config = manifest.config().map(|d| ("config".to_owned(), d));
        let layers =
            (manifest.layers().iter().enumerate()).map(|(i, d)| (format!("layers[{i}]"), d));
        let mut blobs: Vec<Digest> = Vec::new();
        // One look-up per distinct digest, however often a manifest lists it.
        let mut sizes: std::collections::HashMap<Digest, Option<u64>> = Default::default();
        for (field, descriptor) in config.into_iter().chain(layers) {
            let first = !sizes.contains_key(&descriptor.digest);
            let size = match sizes.get(&descriptor.digest) {
                Some(size) => *size,
                None => {
                    let size = self
                        .metadata
                        .linked_blob(repository, &descriptor.digest)
                        .await?
                        .map(|stored| stored.size);
                    sizes.insert(descriptor.digest.clone(), size);
                    size
                }
            };
            match size {
                Some(size) => {
                    descriptor.check_size(&field, size)?;
                    if first {
                        blobs.push(descriptor.digest.clone());
                    }
                }
                None if descriptor.is_non_distributable() || self.accepts_sparse(repository) => {}
                None => {
                    return Err(Error::ManifestBlobUnknown {
                        digest: descriptor.digest.clone(),
                    });
                }
            }
        }
        Ok(blobs)
    }

    /// Checks an index's child manifests exist in the repository
    /// ([`Error::ManifestBlobUnknown`]) with the declared size ([`Error::ManifestInvalid`]), and
    /// returns those present, each once (in a repository that accepts sparse manifests, absent
    /// children are left out).
    async fn stored_children(
        &self,
        repository: &RepositoryName,
        manifest: &Manifest,
    ) -> Result<Vec<Digest>> {
        let mut children: Vec<Digest> = Vec::new();
        let mut sizes: std::collections::HashMap<Digest, Option<u64>> = Default::default();
        for (i, descriptor) in manifest.children().iter().enumerate() {
            let first = !sizes.contains_key(&descriptor.digest);
            let size = match sizes.get(&descriptor.digest) {
                Some(size) => *size,
                None => {
                    let reference = Reference::Digest(descriptor.digest.clone());
                    let size = self
                        .metadata
                        .manifest(repository, &reference)
                        .await?
                        .map(|stored| stored.bytes.len() as u64);
                    sizes.insert(descriptor.digest.clone(), size);
                    size
                }
            };
            match size {
                Some(size) => {
                    descriptor.check_size(&format!("manifests[{i}]"), size)?;
                    if first {
                        children.push(descriptor.digest.clone());
                    }
                }
                None if self.accepts_sparse(repository) => {}
                None => {
                    return Err(Error::ManifestBlobUnknown {
                        digest: descriptor.digest.clone(),
                    });
                }
            }
        }
        Ok(children)
    }

    /// Deletes a manifest by digest (with every tag pointing at it), or only a tag; each tag
    /// deleted must pass the tag rules for `actor` ([`Error::Denied`] naming the rule).
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        actor: &Actor,
    ) -> Result<()> {
        let guard = self.tag_guard(repository, actor).await?;
        let deleted = match reference {
            Reference::Digest(digest) => self
                .metadata
                .delete_manifest(repository, digest, &guard)
                .await
                .map(drop),
            Reference::Tag(tag) => self
                .metadata
                .delete_tag(repository, tag, &guard)
                .await
                .map(drop),
        };
        self.cache.forget(repository);
        deleted
    }

    /// The tag rules in force on a repository for an actor: the stored ones and the actor's.
    pub async fn tag_guard(&self, repository: &RepositoryName, actor: &Actor) -> Result<TagGuard> {
        let mut rules: Vec<Arc<TagRule>> = self
            .tag_rules()
            .await?
            .into_iter()
            .map(|(rule, _)| Arc::new(rule))
            .collect();
        rules.extend(actor.rules.iter().cloned().map(Arc::new));
        Ok(TagGuard::new(repository, &rules, actor.role))
    }

    /// Every stored tag rule with its source, by name.
    pub async fn tag_rules(&self) -> Result<Vec<(TagRule, PolicySource)>> {
        self.stored(PolicyKind::TagRule).await
    }

    /// Every stored cleanup policy with its source, by name.
    pub async fn cleanup_policies(&self) -> Result<Vec<(CleanupPolicy, PolicySource)>> {
        self.stored(PolicyKind::Cleanup).await
    }

    async fn stored<T: serde::de::DeserializeOwned>(
        &self,
        kind: PolicyKind,
    ) -> Result<Vec<(T, PolicySource)>> {
        self.metadata
            .policies(kind)
            .await?
            .into_iter()
            .map(|stored| {
                serde_json::from_str(&stored.document)
                    .map(|value| (value, stored.source))
                    .map_err(|e| {
                        Error::backend(format!(
                            "stored {} {:?} does not parse: {e}",
                            kind.as_str(),
                            stored.name
                        ))
                    })
            })
            .collect()
    }

    /// Creates or replaces a tag rule managed by the admin API; returns whether it was created.
    ///
    /// Errors: [`Error::PolicyInvalid`] (bad name, too many rules), [`Error::Denied`] when the
    /// configuration manages a rule of that name.
    pub async fn put_tag_rule(&self, rule: &TagRule) -> Result<bool> {
        rule.validate()?;
        self.metadata
            .put_policy(
                &stored(PolicyKind::TagRule, PolicySource::Api, &rule.name, rule)?,
                self.limits.max_rules,
            )
            .await
    }

    /// Creates or replaces a cleanup policy managed by the admin API; returns whether it was
    /// created. Errors as for [`OciRegistry::put_tag_rule`], and for impossible values.
    pub async fn put_cleanup_policy(&self, policy: &CleanupPolicy) -> Result<bool> {
        policy.validate()?;
        self.metadata
            .put_policy(
                &stored(PolicyKind::Cleanup, PolicySource::Api, &policy.name, policy)?,
                self.limits.max_rules,
            )
            .await
    }

    /// Deletes a tag rule or cleanup policy managed by the admin API; returns whether it existed.
    pub async fn delete_policy(&self, kind: PolicyKind, name: &str) -> Result<bool> {
        self.metadata
            .delete_policy(kind, name, PolicySource::Api)
            .await
    }

    /// Makes the configuration's tag rules and cleanup policies the stored ones of source
    /// [`PolicySource::Config`], replacing what an earlier configuration stored. Everything is
    /// validated first; on any error nothing changes.
    pub async fn apply_configured_policies(
        &self,
        rules: &[TagRule],
        policies: &[CleanupPolicy],
    ) -> Result<()> {
        check_set(rules.iter().map(|r| r.name.as_str()), self.limits.max_rules)?;
        check_set(
            policies.iter().map(|p| p.name.as_str()),
            self.limits.max_rules,
        )?;
        for policy in policies {
            policy.validate()?;
        }
        let rules = rules
            .iter()
            .map(|r| stored(PolicyKind::TagRule, PolicySource::Config, &r.name, r))
            .collect::<Result<Vec<_>>>()?;
        let policies = policies
            .iter()
            .map(|p| stored(PolicyKind::Cleanup, PolicySource::Config, &p.name, p))
            .collect::<Result<Vec<_>>>()?;
        let max = self.limits.max_rules;
        let store = &self.metadata;
        store
            .replace_policies(PolicyKind::TagRule, PolicySource::Config, &rules, max)
            .await?;
        store
            .replace_policies(PolicyKind::Cleanup, PolicySource::Config, &policies, max)
            .await
    }

    /// One page of a repository's tags, plus whether more follow.
    pub async fn tags(
        &self,
        repository: &RepositoryName,
        last: Option<String>,
        n: Option<usize>,
    ) -> Result<(Vec<Tag>, bool)> {
        let (page, limit) = self.page(last, n);
        let tags = self.metadata.list_tags(repository, &page).await?;
        Ok(split_extra(tags, limit))
    }

    /// One page of the repository catalog, plus whether more follow.
    pub async fn catalog(
        &self,
        last: Option<String>,
        n: Option<usize>,
    ) -> Result<(Vec<RepositoryName>, bool)> {
        let (page, limit) = self.page(last, n);
        let names = self.metadata.list_repositories(&page).await?;
        Ok(split_extra(names, limit))
    }

    /// The page to ask the store for: one entry more than the client's (capped) `n`, so the
    /// answer tells whether more follow.
    fn page(&self, last: Option<String>, n: Option<usize>) -> (Page, usize) {
        let limit = n
            .unwrap_or(self.limits.max_page_size)
            .min(self.limits.max_page_size);
        (
            Page {
                last,
                limit: limit + 1,
            },
            limit,
        )
    }

    /// Manifests whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        self.metadata
            .referrers(repository, subject, artifact_type)
            .await
    }

    /// Fails the stream once the blob would exceed the size limit.
    fn limit_stream(&self, body: ByteStream, already: u64) -> ByteStream {
        let limit = self.limits.max_blob_size;
        let mut total = already;
        body.map(move |chunk| {
            let chunk = chunk?;
            total += chunk.len() as u64;
            if total > limit {
                return Err(Error::SizeInvalid {
                    what: "blob",
                    size: total,
                    limit,
                });
            }
            Ok(chunk)
        })
        .boxed()
    }
}

fn stored(
    kind: PolicyKind,
    source: PolicySource,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<StoredPolicy> {
    Ok(StoredPolicy {
        kind,
        name: name.to_owned(),
        source,
        document: serde_json::to_string(value).map_err(Error::backend)?,
    })
}

/// Cuts a page fetched with one extra entry back to `limit`; says whether the extra was there.
fn split_extra<T>(mut items: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let more = items.len() > limit;
    items.truncate(limit);
    (items, more)
}

fn blob_unknown(digest: &Digest) -> Error {
    Error::BlobUnknown {
        digest: digest.clone(),
    }
}
