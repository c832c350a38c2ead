//! Pull-through caches of upstream registries ([`PullThrough`]): the repositories under a
//! cache's prefix (`hub/library/alpine`) are the upstream's repositories of the same name
//! without it (`library/alpine`), pulled on first use and kept as ordinary repositories here.
//!
//! - A **manifest by digest** missing here is fetched once, checked against the digest asked
//!   for, and stored (without its blobs and children: they come when asked for).
//! - A **tag** is asked of the upstream when this instance has not confirmed it within the
//!   upstream's `metadata_ttl_seconds`, conditionally (`If-None-Match` with the digest held
//!   here): a new manifest moves the tag here; the upstream down, slow or failing leaves the
//!   tag as it is here, served and said stale. A failed check is remembered for a few seconds.
//! - A **blob** missing here is asked of the upstream even when this registry holds the same
//!   bytes for another repository (whose content a client of the cache may not read): once
//!   the upstream answers with it, bytes already held are linked, others streamed into the
//!   blob store, which verifies the digest; a body that breaks off, drips, or does not match
//!   leaves nothing linked.
//! - Concurrent misses for one manifest or blob make one upstream request.
//!
//! Pushes into a cache's repositories are refused; deletes evict.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::OciRegistry;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::metadata::{BlobRecord, ManifestRecord};
use crate::name::{Reference, RepositoryName};
use crate::proxy::memory::Remembered;
use crate::proxy::report::{absorb, counted, mark_stale, record, report_failure};
use crate::proxy::{Fetched, UpstreamSettings, Validators, copy_upstream_error, guarded_body};
use crate::rules::Actor;

/// The manifest media types asked of an upstream, in order of preference.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json;q=0.9";

/// How long a failed tag check is remembered: requests meanwhile are answered from it.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

/// How often a read of one cached blob is written down, at most.
const READ_NOTED: Duration = Duration::from_secs(60);

/// Where a cache's entries are kept among the proxy cache's records: a name no package
/// repository can have, so a package proxy named like the prefix never shares them.
fn cache_key(prefix: &str) -> String {
    format!("pull-through:{prefix}")
}

/// A pull-through cache: the repositories under `prefix/` are pulled from `upstream`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullThrough {
    /// The first component(s) of the repositories it serves (`hub`: `hub/library/alpine`).
    pub prefix: String,
    /// The upstream registry: its base URL (`https://registry-1.docker.io`; `/v2/` follows),
    /// credentials, CA file and timeouts.
    pub upstream: UpstreamSettings,
}

impl PullThrough {
    /// Checks the prefix (a repository name) and the upstream's settings.
    ///
    /// Errors: [`Error::PolicyInvalid`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        RepositoryName::parse(&self.prefix).map_err(|e| Error::PolicyInvalid {
            reason: format!(
                "the pull-through prefix {:?} is not a repository name: {e}",
                self.prefix
            ),
        })?;
        self.upstream.validate()
    }
}

/// A repository and a reference or digest.
type PullKey = crate::proxy::locks::FetchKey;

/// What pulls share across requests of one service.
#[derive(Debug, Default)]
pub(super) struct PullState {
    /// One lock per (repository, reference or digest) being pulled.
    pulling: crate::proxy::locks::KeyedLocks,
    /// Tags confirmed with the upstream, and when.
    confirmed: Remembered<()>,
    /// Tags and blobs whose pull failed, when, and how.
    failed: Remembered<Error>,
    /// Manifests and blobs the upstream answered `404` for, and when.
    missing: Remembered<()>,
    /// Cache entries whose read was noted lately, and when.
    read: Remembered<()>,
}

impl PullState {
    /// Whether the upstream answered `404` for the key within `memory`.
    fn known_missing(&self, key: &PullKey, memory: Duration) -> bool {
        self.missing
            .read(key, |at, ()| (at.elapsed() < memory).then_some(()))
            .is_some()
    }

    /// Whether the tag was confirmed within `memory`, or since `since`.
    fn confirmed(&self, key: &PullKey, memory: Duration, since: Option<Instant>) -> bool {
        self.confirmed
            .read(key, |at, ()| {
                (at.elapsed() < memory || since.is_some_and(|s| *at >= s)).then_some(())
            })
            .is_some()
    }

    /// The key's last failure, when recent.
    fn recent_failure(&self, key: &PullKey) -> Option<Error> {
        self.failed.read(key, |at, error| {
            (at.elapsed() < FAILURE_MEMORY).then(|| copy_upstream_error(error))
        })
    }

    /// Remembers what a pull answered: a `404` or an upstream failure.
    fn remember_answer<T>(&self, key: &PullKey, answer: &Result<T>) {
        match answer {
            Err(Error::ManifestUnknown { .. } | Error::BlobUnknown { .. }) => {
                self.missing.insert(key.clone(), Instant::now(), ());
            }
            Err(error @ Error::Upstream { .. }) => {
                self.failed
                    .insert(key.clone(), Instant::now(), copy_upstream_error(error));
            }
            _ => {}
        }
    }
}

/// The most children of an index pulled with it.
const MAX_CHILDREN: usize = 256;

/// The child manifests an index lists (none for an image manifest, or more than
/// [`MAX_CHILDREN`]: those come when asked for).
fn index_children(bytes: &[u8]) -> Vec<Digest> {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    // No `manifests` list: an image manifest, whose pieces come when asked for.
    let children = document
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if children.len() > MAX_CHILDREN {
        return Vec::new();
    }
    children
        .iter()
        .filter_map(|c| c.get("digest")?.as_str())
        .filter_map(|d| Digest::parse(d).ok())
        .collect()
}

/// A pull-through cache's repository: the cache and the upstream's repository name.
struct Pulled<'a> {
    cache: &'a PullThrough,
    name: &'a str,
}

impl Pulled<'_> {
    fn url(&self, what: &str) -> String {
        format!("{}/v2/{}/{what}", self.cache.upstream.base(), self.name)
    }

    fn failed(&self, reason: String) -> Error {
        Error::Upstream {
            upstream: self.cache.upstream.base().to_owned(),
            reason,
            timed_out: false,
        }
    }
}

impl OciRegistry {
    /// Makes the repositories under each cache's prefix pull-through caches of its upstream
    /// (none by default), fetched with `upstream`.
    ///
    /// Errors: [`Error::PolicyInvalid`] for a cache that does not validate, or two caches one
    /// of whose prefixes contains the other.
    pub fn with_pull_through(
        mut self,
        caches: Vec<PullThrough>,
        upstream: Arc<dyn crate::proxy::Upstream>,
    ) -> Result<Self> {
        for (i, cache) in caches.iter().enumerate() {
            cache.validate()?;
            let overlaps = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
            if let Some(other) = caches[..i]
                .iter()
                .find(|o| overlaps(&o.prefix, &cache.prefix) || overlaps(&cache.prefix, &o.prefix))
            {
                return Err(Error::PolicyInvalid {
                    reason: format!(
                        "pull-through prefixes {} and {} overlap",
                        other.prefix, cache.prefix
                    ),
                });
            }
        }
        self.pull_through = Arc::new(caches);
        self.upstream = Some(upstream);
        Ok(self)
    }

    /// The pull-through caches.
    pub fn pull_through(&self) -> &[PullThrough] {
        &self.pull_through
    }

    fn pulled<'a>(&'a self, repository: &'a RepositoryName) -> Option<Pulled<'a>> {
        self.pull_through.iter().find_map(|cache| {
            let name = repository
                .as_str()
                .strip_prefix(cache.prefix.as_str())?
                .strip_prefix('/')?;
            Some(Pulled { cache, name })
        })
    }

    /// A pull-through cache's entries (the blobs it pulled, as `<name>/blobs/<digest>`), by
    /// path, one page at a time.
    ///
    /// Errors: [`Error::NameUnknown`] when `prefix` is no cache's.
    pub async fn cache_entries(
        &self,
        prefix: &str,
        page: &crate::values::Page,
    ) -> Result<Vec<crate::proxy::CacheEntry>> {
        self.cache_named(prefix)?;
        self.metadata
            .list_cache_entries(&cache_key(prefix), page)
            .await
    }

    /// Deletes a pull-through cache's entries — all, or those neither pulled nor read for
    /// `unused_for` — and answers how many went; their blobs go to the collector unless a
    /// manifest holds them, and are pulled again when asked for.
    ///
    /// Errors: [`Error::NameUnknown`] when `prefix` is no cache's.
    pub async fn clean_cache(&self, prefix: &str, unused_for: Option<Duration>) -> Result<u64> {
        self.cache_named(prefix)?;
        let since = unused_for.map(|d| {
            let millis = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            crate::values::Timestamp(crate::values::Timestamp::now().0.saturating_sub(millis))
        });
        let key = cache_key(prefix);
        let deleted = self.metadata.delete_cache_entries(&key, since).await?;
        self.pulls.read.forget_repository(&key);
        Ok(deleted)
    }

    fn cache_named(&self, prefix: &str) -> Result<&PullThrough> {
        self.pull_through
            .iter()
            .find(|c| c.prefix == prefix)
            .ok_or_else(|| Error::NameUnknown {
                name: prefix.to_owned(),
            })
    }

    /// Notes that a blob of a cache's repository was read (at most once a minute per blob on
    /// this instance), so cleaning by last use keeps what is used. A failure to note it fails
    /// nothing.
    pub(super) async fn note_read(&self, repository: &RepositoryName, digest: &Digest) {
        if let Some(pulled) = self.pulled(repository) {
            let _ = self.count_read(&pulled, digest).await;
        }
    }

    async fn count_read(&self, pulled: &Pulled<'_>, digest: &Digest) -> Result<()> {
        let key = (
            pulled.cache.prefix.clone(),
            format!("{}/blobs/{digest}", pulled.name),
        );
        let noted = self
            .pulls
            .read
            .read(&key, |at, ()| (at.elapsed() < READ_NOTED).then_some(()));
        if noted.is_some() {
            return Ok(());
        }
        self.pulls.read.insert(key.clone(), Instant::now(), ());
        self.metadata
            .count_cache_downloads(&key.0, &key.1, 1, crate::values::Timestamp::now())
            .await
    }

    /// Whether a repository belongs to a pull-through cache.
    pub(super) fn is_pulled(&self, repository: &RepositoryName) -> bool {
        self.pulled(repository).is_some()
    }

    /// Refuses a push into a pull-through cache's repository.
    pub(super) fn refuse_pull_through(&self, repository: &RepositoryName) -> Result<()> {
        match self.pulled(repository) {
            Some(pulled) => Err(Error::Denied {
                reason: format!(
                    "{repository} is a pull-through cache of {}; it takes no pushes",
                    pulled.cache.upstream.base()
                ),
            }),
            None => Ok(()),
        }
    }

    async fn ask(
        &self,
        pulled: &Pulled<'_>,
        url: &str,
        accept: &str,
        validators: &Validators,
    ) -> Result<Fetched> {
        let upstream = self.upstream.as_deref().ok_or_else(|| Error::Unsupported {
            what: "pull-through caches without an upstream client".into(),
        })?;
        let settings = &pulled.cache.upstream;
        tokio::time::timeout(
            settings.timeout(),
            upstream.fetch(settings, url, accept, validators),
        )
        .await
        .unwrap_or_else(|_| Err(settings.too_slow(url)))
    }

    /// A manifest of a pull-through cache's repository (see the module).
    pub(super) async fn pulled_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        let pulled = self.pulled(repository).expect("a pulled repository");
        let key = (repository.to_string(), reference.to_string());
        let held = self.stored_manifest(repository, reference).await;
        match (reference, &held) {
            (Reference::Digest(_), Ok(_)) => {
                record(|r| r.hits += 1);
                return held;
            }
            (Reference::Tag(_), Ok(_))
                if self
                    .pulls
                    .confirmed(&key, pulled.cache.upstream.metadata_ttl(), None) =>
            {
                record(|r| r.hits += 1);
                return held;
            }
            (_, Err(Error::ManifestUnknown { .. }) | Ok(_)) => {}
            (_, Err(_)) => return held,
        }
        let waited_from = Instant::now();
        let _pulling = self.pulls.pulling.lock(key.clone()).await;
        // Whoever held the lock may have pulled it meanwhile: a check that finished after this
        // request began waiting answers it too (even with a validity of 0 s).
        let held = self.stored_manifest(repository, reference).await;
        let confirmed = self.pulls.confirmed(
            &key,
            pulled.cache.upstream.metadata_ttl(),
            Some(waited_from),
        );
        if held.is_ok() && (confirmed || matches!(reference, Reference::Digest(_))) {
            return held;
        }
        if self
            .pulls
            .known_missing(&key, pulled.cache.upstream.not_found_ttl())
        {
            return Err(Error::ManifestUnknown {
                repository: repository.to_string(),
                reference: reference.to_string(),
            });
        }
        let pulled_now = match self.pulls.recent_failure(&key) {
            Some(failure) => Err(failure),
            None => {
                record(|r| r.misses += 1);
                let answer = self
                    .pull_manifest(&pulled, repository, reference, held.as_ref().ok())
                    .await;
                self.pulls.remember_answer(&key, &answer);
                counted(answer)
            }
        };
        match (pulled_now, held) {
            (Ok(()), _) => {
                self.pulls.failed.remove(&key);
                self.pulls.confirmed.insert(key, Instant::now(), ());
                self.cache.forget(repository);
                self.stored_manifest(repository, reference).await
            }
            // Gone upstream: gone here too (a tag withdrawn upstream never comes back from
            // here while it is down).
            (Err(error @ Error::ManifestUnknown { .. }), held) => {
                if let (Reference::Tag(_), Ok(_)) = (reference, held) {
                    let _ = self
                        .delete_manifest(repository, reference, &Actor::trusted())
                        .await;
                }
                Err(error)
            }
            // The upstream failing: what is held here is served, said stale.
            (Err(error @ Error::Upstream { .. }), Ok(held)) => {
                mark_stale(pulled.cache.upstream.base(), &error);
                Ok(held)
            }
            // The new manifest not taken here (a tag rule, a fault): the held one is served,
            // and not asked again until the tag's validity has passed.
            (Err(error), Ok(held)) => {
                self.pulls.confirmed.insert(key, Instant::now(), ());
                report_failure(format!(
                    "the manifest pulled for {repository}:{reference} was not stored: {error}"
                ));
                Ok(held)
            }
            (Err(error), Err(_)) => Err(error),
        }
    }

    /// Asks the upstream for a manifest (conditionally when `held`) and stores a new one.
    async fn pull_manifest(
        &self,
        pulled: &Pulled<'_>,
        repository: &RepositoryName,
        reference: &Reference,
        held: Option<&ManifestRecord>,
    ) -> Result<()> {
        let url = pulled.url(&format!("manifests/{reference}"));
        let validators = Validators {
            etag: held.map(|h| format!("\"{}\"", h.digest)),
            last_modified: None,
        };
        let settings = &pulled.cache.upstream;
        let limit = self.limits.manifest.max_size as u64;
        let fetch = async {
            let (length, content_type, mut body) =
                match self.ask(pulled, &url, MANIFEST_ACCEPT, &validators).await? {
                    Fetched::NotModified if held.is_some() => return Ok(None),
                    Fetched::NotModified => {
                        return Err(pulled.failed(format!(
                            "answered 304 Not Modified to an unconditional request for {url}"
                        )));
                    }
                    Fetched::NotFound => {
                        return Err(Error::ManifestUnknown {
                            repository: repository.to_string(),
                            reference: reference.to_string(),
                        });
                    }
                    Fetched::Found {
                        length,
                        content_type,
                        body,
                        ..
                    } => (length, content_type, body),
                };
            let too_large = |size: u64| {
                pulled.failed(format!(
                    "its manifest {url} is {size} bytes or more, over {limit}"
                ))
            };
            if let Some(length) = length.filter(|l| *l > limit) {
                return Err(too_large(length));
            }
            let mut bytes = BytesMut::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return Err(too_large((bytes.len() + chunk.len()) as u64));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some((content_type, bytes.freeze())))
        };
        let answer = tokio::time::timeout(settings.timeout(), fetch)
            .await
            .unwrap_or_else(|_| Err(settings.too_slow(&url)))?;
        let Some((content_type, bytes)) = answer else {
            return Ok(());
        };
        if let Reference::Digest(digest) = reference {
            let actual = Digest::compute(digest.algorithm(), &bytes);
            if &actual != digest {
                return Err(pulled.failed(format!(
                    "{url} hashes to {actual}, not the digest asked for"
                )));
            }
        }
        if held.is_some_and(|h| h.bytes == bytes) {
            return Ok(());
        }
        // An index's children are pulled first, so it is stored with its references to them:
        // they are then kept as long as it is (an untagged child is otherwise the collector's).
        for child in index_children(&bytes) {
            let child = Reference::Digest(child);
            if self.stored_manifest(repository, &child).await.is_err() {
                Box::pin(self.pull_manifest(pulled, repository, &child, None)).await?;
            }
        }
        self.store_manifest(
            repository,
            reference,
            &[],
            bytes,
            content_type.as_deref(),
            &Actor::trusted(),
        )
        .await
        .map_err(|e| match e {
            // What the upstream sent is not a manifest this registry takes.
            Error::ManifestInvalid { source } => {
                pulled.failed(format!("its manifest {url} is invalid: {source}"))
            }
            other => other,
        })?;
        Ok(())
    }

    /// A blob of a pull-through cache's repository, pulled when missing here (see the module).
    pub(super) async fn pulled_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobRecord> {
        // Pulled by a task of its own, which finishes (and keeps the blob) even when the
        // client gives up first; its upstream requests carry the client's `Via` hops.
        let task = {
            let (this, repository, digest) = (self.clone(), repository.clone(), digest.clone());
            let pull = async move { this.pull_blob_once(&repository, &digest).await };
            tokio::spawn(crate::proxy::observe_proxy(
                crate::proxy::incoming_via(),
                pull,
            ))
        };
        let (answer, report) = task
            .await
            .map_err(|e| Error::backend(format!("the pull of {digest} failed: {e}")))?;
        absorb(report);
        answer
    }

    /// One pull of a blob at a time per repository and digest; a miss remembered.
    async fn pull_blob_once(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobRecord> {
        let pulled = self.pulled(repository).expect("a pulled repository");
        let _pulling = self
            .pulls
            .pulling
            .lock((repository.to_string(), digest.to_string()))
            .await;
        match self.stored_blob(repository, digest).await {
            Err(Error::BlobUnknown { .. }) => {}
            held => return held,
        }
        let key = (repository.to_string(), digest.to_string());
        if self
            .pulls
            .known_missing(&key, pulled.cache.upstream.not_found_ttl())
        {
            return Err(Error::BlobUnknown {
                digest: digest.clone(),
            });
        }
        if let Some(failure) = self.pulls.recent_failure(&key) {
            return Err(failure);
        }
        record(|r| r.misses += 1);
        let answer = self.pull_blob(&pulled, repository, digest).await;
        // Its waiters get a failure rather than asking again one after another.
        self.pulls.remember_answer(&key, &answer);
        counted(answer)
    }

    async fn pull_blob(
        &self,
        pulled: &Pulled<'_>,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobRecord> {
        let url = pulled.url(&format!("blobs/{digest}"));
        let body = match self
            .ask(pulled, &url, "*/*", &Validators::default())
            .await?
        {
            Fetched::Found { length, body, .. } => {
                if let Some(length) = length.filter(|l| *l > self.limits.max_blob_size) {
                    return Err(pulled.failed(format!(
                        "{url} is {length} bytes, over the blob limit of {}",
                        self.limits.max_blob_size
                    )));
                }
                body
            }
            Fetched::NotFound => {
                return Err(Error::BlobUnknown {
                    digest: digest.clone(),
                });
            }
            Fetched::NotModified => {
                return Err(pulled.failed(format!(
                    "answered 304 Not Modified to an unconditional request for {url}"
                )));
            }
        };
        let failure = Arc::new(Mutex::new(None));
        let body = guarded_body(body, &pulled.cache.upstream, &url, Arc::clone(&failure));
        let body = self.limit_stream(body, 0);
        let upstream_failure = |error: Error| {
            if let Some(upstream) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return upstream;
            }
            match error {
                Error::DigestMismatch { .. } => {
                    pulled.failed(format!("{url} does not match its digest"))
                }
                Error::SizeInvalid { size, limit, .. } => pulled.failed(format!(
                    "{url} is {size} bytes or more, over the blob limit of {limit}"
                )),
                other => other,
            }
        };
        // Bytes already held here (for another repository, which a client of the cache may
        // not read) are linked only once the upstream has sent the same bytes: its body is
        // hashed as it streams, not kept.
        let record = if self.metadata.blob(digest).await?.is_some() {
            let mut hasher = crate::digest::DigestHasher::new(digest.algorithm());
            let mut body = body;
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(upstream_failure)?;
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            if &hasher.finish() != digest {
                return Err(pulled.failed(format!("{url} does not match its digest")));
            }
            match self.link_stored(repository, digest, None).await? {
                Some(linked) => linked,
                // Collected meanwhile: kept from what was just hashed is nothing; said so.
                None => {
                    return Err(pulled.failed(format!(
                        "{digest} was collected here while it was pulled; pull it again ({size} bytes)"
                    )));
                }
            }
        } else {
            let size = self
                .blobs
                .write(digest, body)
                .await
                .map_err(upstream_failure)?;
            self.link_written(repository, digest, size).await?
        };
        self.hold(pulled, &format!("blobs/{digest}"), digest, record.size)
            .await?;
        Ok(record)
    }

    /// Records what a cache pulled as a cache entry of its prefix, which keeps the blob from
    /// the collector (pulled pieces arrive after the manifests that list them, so no
    /// manifest's reference keeps them) and lists it with the package proxies' cache.
    async fn hold(
        &self,
        pulled: &Pulled<'_>,
        what: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let now = crate::values::Timestamp::now();
        let entry = crate::proxy::CacheEntry {
            repository: cache_key(&pulled.cache.prefix),
            path: format!("{}/{what}", pulled.name),
            kind: crate::proxy::CacheEntryKind::File,
            blob: crate::package::BlobRef {
                digest: digest.clone(),
                size,
            },
            declared: Some(digest.to_string()),
            validators: Validators::default(),
            digests: Default::default(),
            checked_at: now,
            created_at: now,
            downloads: 0,
            last_download: None,
        };
        self.metadata.put_cache_entry(&entry).await
    }
}
