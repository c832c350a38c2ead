//! Small values every part of the domain uses: times and listing pages. A leaf: it depends on
//! nothing else in the crate, so the modules that use it do not depend on each other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(millis)
    }

    /// This time plus a duration (saturating).
    pub fn after(self, delay: Duration) -> Self {
        let millis = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }
}

/// One page of a listing: entries strictly after `last`, at most `limit` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The last entry of the previous page.
    pub last: Option<String>,
    /// How many entries at most.
    pub limit: usize,
}

impl Page {
    /// The first page of `limit` entries.
    pub fn first(limit: usize) -> Self {
        Page { last: None, limit }
    }

    /// The page of `limit` entries after `last`.
    pub fn after(last: impl Into<String>, limit: usize) -> Self {
        Page {
            last: Some(last.into()),
            limit,
        }
    }
}
