//! One async lock per key (a repository and a path, reference or digest) being fetched, so
//! concurrent misses wait for the first instead of each asking the upstream ([`KeyedLocks`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A repository and what in it is fetched.
pub(crate) type FetchKey = (String, String);

/// The locks of the keys being fetched; a key's lock is forgotten when nobody holds or waits
/// for it.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<FetchKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for the key's lock.
    pub(crate) async fn lock(&self, key: FetchKey) -> KeyGuard<'_> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let held = Arc::clone(&lock).lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            lock,
            _held: held,
        }
    }
}

/// A key's lock, held; released (and forgotten when nobody else waits) when dropped.
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: FetchKey,
    lock: Arc<tokio::sync::Mutex<()>>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference, ours and the held guard's: nobody else waits.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.key);
        }
    }
}
