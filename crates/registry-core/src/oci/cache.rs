//! What the OCI service remembers of recent reads: manifests by tag and digest and blob links,
//! each for a short time to live, so the hottest requests (a manifest GET, a blob HEAD) skip
//! the metadata store.
//!
//! Correctness across writers: a change made through this [`super::OciRegistry`] forgets the
//! repository's entries at once; a change made elsewhere (another instance, the CLI, the
//! collector or cleanup working on the store directly) is seen once the entry expires, within
//! the time to live. Only what was found is kept: a miss always asks the store. A read takes a
//! [`Ticket`] before it asks the store and keeps its answer only if nothing was forgotten
//! meanwhile, so an answer read before a change never outlives it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::metadata::{BlobRecord, ManifestRecord};
use crate::name::RepositoryName;

/// How long an entry is served and how many are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a read is served from memory; zero turns the cache off. One second by
    /// default: the bound on how stale a read can be after a change made elsewhere.
    pub ttl: Duration,
    /// The most entries kept (manifests and blob links together); past it the cache starts
    /// afresh. 100,000 by default.
    pub max_entries: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(1),
            max_entries: 100_000,
        }
    }
}

/// One repository's remembered reads.
#[derive(Default)]
struct Remembered {
    /// By the reference asked for (a tag, or a digest in its text form).
    manifests: HashMap<String, (Instant, ManifestRecord)>,
    blobs: HashMap<Digest, (Instant, BlobRecord)>,
}

/// The cache of one service (cloned services share it).
pub(super) struct ReadCache {
    settings: CacheSettings,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    repositories: HashMap<RepositoryName, Remembered>,
    entries: usize,
    /// Bumped each time a repository is forgotten (absent: zero).
    generations: HashMap<RepositoryName, u64>,
    /// Bumped each time everything is forgotten.
    epoch: u64,
}

impl State {
    fn ticket(&self, repository: &RepositoryName) -> Ticket {
        Ticket {
            epoch: self.epoch,
            generation: self.generations.get(repository).copied().unwrap_or(0),
        }
    }

    /// Forgets everything; tickets taken before are void.
    fn reset(&mut self) {
        let epoch = self.epoch + 1;
        *self = State {
            epoch,
            ..State::default()
        };
    }
}

/// Where a repository's cache stood when a read began: its answer is kept only if it still
/// stands there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticket {
    epoch: u64,
    generation: u64,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("settings", &self.settings)
            .field("entries", &self.lock().entries)
            .finish()
    }
}

impl ReadCache {
    pub(super) fn new(settings: CacheSettings) -> Self {
        ReadCache {
            settings,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enabled(&self) -> bool {
        !self.settings.ttl.is_zero() && self.settings.max_entries > 0
    }

    fn fresh(&self, stored: Instant) -> bool {
        stored.elapsed() < self.settings.ttl
    }

    pub(super) fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &str,
    ) -> Option<ManifestRecord> {
        if !self.enabled() {
            return None;
        }
        let state = self.lock();
        let (stored, record) = state
            .repositories
            .get(repository)?
            .manifests
            .get(reference)?;
        self.fresh(*stored).then(|| record.clone())
    }

    pub(super) fn blob(&self, repository: &RepositoryName, digest: &Digest) -> Option<BlobRecord> {
        if !self.enabled() {
            return None;
        }
        let state = self.lock();
        let (stored, record) = state.repositories.get(repository)?.blobs.get(digest)?;
        self.fresh(*stored).then(|| record.clone())
    }

    /// What a read must show to keep its answer (taken before it asks the store).
    pub(super) fn ticket(&self, repository: &RepositoryName) -> Ticket {
        self.lock().ticket(repository)
    }

    pub(super) fn keep_manifest(
        &self,
        repository: &RepositoryName,
        ticket: Ticket,
        reference: String,
        record: &ManifestRecord,
    ) {
        self.keep(repository, ticket, |remembered| {
            remembered
                .manifests
                .insert(reference, (Instant::now(), record.clone()))
                .is_none()
        });
    }

    pub(super) fn keep_blob(
        &self,
        repository: &RepositoryName,
        ticket: Ticket,
        record: &BlobRecord,
    ) {
        self.keep(repository, ticket, |remembered| {
            remembered
                .blobs
                .insert(record.digest.clone(), (Instant::now(), record.clone()))
                .is_none()
        });
    }

    /// Adds an entry (`insert` answers whether it is a new one) unless the repository was
    /// forgotten since `ticket` was taken; starts afresh when full.
    fn keep(
        &self,
        repository: &RepositoryName,
        ticket: Ticket,
        insert: impl FnOnce(&mut Remembered) -> bool,
    ) {
        if !self.enabled() {
            return;
        }
        let mut state = self.lock();
        if state.ticket(repository) != ticket {
            return;
        }
        if state.entries >= self.settings.max_entries {
            state.reset();
            return;
        }
        let remembered = state.repositories.entry(repository.clone()).or_default();
        if insert(remembered) {
            state.entries += 1;
        }
    }

    /// Forgets everything remembered of a repository; reads under way keep nothing.
    pub(super) fn forget(&self, repository: &RepositoryName) {
        let mut state = self.lock();
        if state.generations.len() >= self.settings.max_entries {
            state.reset();
            return;
        }
        *state.generations.entry(repository.clone()).or_insert(0) += 1;
        if let Some(gone) = state.repositories.remove(repository) {
            state.entries -= gone.manifests.len() + gone.blobs.len();
        }
    }

    /// Forgets everything; reads under way keep nothing.
    pub(super) fn forget_all(&self) {
        self.lock().reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn record(size: u64) -> BlobRecord {
        BlobRecord {
            digest: Digest::sha256(b"x"),
            size,
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn an_answer_read_before_a_change_is_not_kept_after_it() {
        let cache = ReadCache::new(CacheSettings::default());
        let repository = RepositoryName::parse("race/app").unwrap();
        let digest = Digest::sha256(b"x");
        // A read begins, a change forgets the repository, then the read's answer arrives.
        let ticket = cache.ticket(&repository);
        cache.forget(&repository);
        cache.keep_blob(&repository, ticket, &record(1));
        assert_eq!(cache.blob(&repository, &digest), None);
        // The same after forgetting everything.
        let ticket = cache.ticket(&repository);
        cache.forget_all();
        cache.keep_blob(&repository, ticket, &record(1));
        assert_eq!(cache.blob(&repository, &digest), None);
        // A read with nothing in between is kept.
        let ticket = cache.ticket(&repository);
        cache.keep_blob(&repository, ticket, &record(2));
        assert_eq!(cache.blob(&repository, &digest).map(|r| r.size), Some(2));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ReadCache::new(CacheSettings {
            max_entries: 3,
            ..CacheSettings::default()
        });
        for i in 0..10 {
            let repository = RepositoryName::parse(&format!("bounded/r{i}")).unwrap();
            let ticket = cache.ticket(&repository);
            cache.keep_blob(&repository, ticket, &record(i));
            cache.forget(&repository);
            assert!(cache.lock().entries <= 3 && cache.lock().generations.len() <= 3);
        }
    }
}
