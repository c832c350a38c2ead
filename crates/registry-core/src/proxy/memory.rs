//! What an instance remembers for a short while about upstreams, per key (a repository and a
//! path, reference or digest): 404s, failures, confirmations, fresh entries ([`Remembered`]).
//! Bounded: past [`MAX_REMEMBERED`] keys everything is forgotten at once (and asked again).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::locks::FetchKey;

/// Keys remembered at most, per memory.
pub(crate) const MAX_REMEMBERED: usize = 100_000;

/// Values remembered per key with an instant (when they were learned, or until when they
/// hold: the reader says which).
#[derive(Debug)]
pub(crate) struct Remembered<V> {
    entries: Mutex<HashMap<FetchKey, (Instant, V)>>,
}

impl<V> Default for Remembered<V> {
    fn default() -> Self {
        Remembered {
            entries: Mutex::default(),
        }
    }
}

impl<V> Remembered<V> {
    fn entries(&self) -> MutexGuard<'_, HashMap<FetchKey, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `value` for `key` with `at`.
    pub(crate) fn insert(&self, key: FetchKey, at: Instant, value: V) {
        let mut entries = self.entries();
        if entries.len() >= MAX_REMEMBERED {
            entries.clear();
        }
        entries.insert(key, (at, value));
    }

    /// What `read` makes of the key's instant and value, if the key is remembered.
    pub(crate) fn read<R>(
        &self,
        key: &FetchKey,
        read: impl FnOnce(&Instant, &V) -> Option<R>,
    ) -> Option<R> {
        self.entries()
            .get(key)
            .and_then(|(at, value)| read(at, value))
    }

    /// Forgets one key.
    pub(crate) fn remove(&self, key: &FetchKey) {
        self.entries().remove(key);
    }

    /// Forgets every key of a repository.
    pub(crate) fn forget_repository(&self, repository: &str) {
        self.entries().retain(|(r, _), _| r != repository);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.entries().clear();
    }
}
