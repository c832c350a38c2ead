//! Rendered documents (npm packuments, PyPI project pages) kept in memory under the package's
//! revision: a request checks the revision with one small query and, when it is unchanged,
//! answers the bytes rendered before. Any change to a package gives it a new revision, on every
//! instance sharing the store, so a cached document is never stale.
// Shared by the package routers; with only some of them compiled in, parts go unused.
#![cfg_attr(
    not(all(
        feature = "generic",
        feature = "npm",
        feature = "nuget",
        feature = "pypi",
        feature = "terraform"
    )),
    allow(dead_code)
)]

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// A bounded cache of rendered documents by key and revision; oldest entries go first.
#[derive(Debug)]
pub(crate) struct RenderCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (String, Bytes)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl RenderCache {
    /// A cache of at most `max_entries` documents and `max_bytes` bytes.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        RenderCache {
            inner: Mutex::new(Inner::default()),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The document rendered for `key` at `revision`, if it is cached.
    pub(crate) fn get(&self, key: &str, revision: &str) -> Option<Bytes> {
        let inner = self.lock();
        inner
            .entries
            .get(key)
            .filter(|(cached, _)| cached == revision)
            .map(|(_, body)| body.clone())
    }

    /// The document for `key` at `revision`: the cached one, else `render`'s, then kept. The
    /// revision must be read before rendering: a change meanwhile leaves the entry stale at
    /// once, never wrongly fresh.
    pub(crate) async fn get_or_render<E>(
        &self,
        key: String,
        revision: String,
        render: impl std::future::Future<Output = Result<Bytes, E>>,
    ) -> Result<Bytes, E> {
        if let Some(cached) = self.get(&key, &revision) {
            return Ok(cached);
        }
        let rendered = render.await?;
        self.put(key, revision, rendered.clone());
        Ok(rendered)
    }

    /// Keeps a document rendered for `key` at `revision`, replacing an older one.
    pub(crate) fn put(&self, key: String, revision: String, body: Bytes) {
        if body.len() > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some((_, old)) = inner.entries.remove(&key) {
            inner.bytes -= old.len();
            inner.order.retain(|k| *k != key);
        }
        while !inner.order.is_empty()
            && (inner.entries.len() >= self.max_entries
                || inner.bytes + body.len() > self.max_bytes)
        {
            if let Some(oldest) = inner.order.pop_front()
                && let Some((_, old)) = inner.entries.remove(&oldest)
            {
                inner.bytes -= old.len();
            }
        }
        inner.bytes += body.len();
        inner.order.push_back(key.clone());
        inner.entries.insert(key, (revision, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_fresh_only_at_their_revision_and_bounded() {
        let cache = RenderCache::new(2, 10);
        cache.put("a".into(), "r1".into(), Bytes::from_static(b"1234"));
        assert_eq!(cache.get("a", "r1").as_deref(), Some(&b"1234"[..]));
        assert_eq!(cache.get("a", "r2"), None, "another revision is a miss");
        cache.put("b".into(), "r1".into(), Bytes::from_static(b"5678"));
        cache.put("c".into(), "r1".into(), Bytes::from_static(b"9"));
        assert_eq!(cache.get("a", "r1"), None, "the oldest went");
        cache.put("d".into(), "r1".into(), Bytes::from_static(b"0123456"));
        assert_eq!(cache.get("b", "r1"), None, "bytes are bounded too");
        cache.put("big".into(), "r1".into(), Bytes::from(vec![0; 11]));
        assert_eq!(cache.get("big", "r1"), None, "too big to keep");
        cache.put("d".into(), "r2".into(), Bytes::from_static(b"x"));
        assert_eq!(cache.get("d", "r2").as_deref(), Some(&b"x"[..]));
    }
}
