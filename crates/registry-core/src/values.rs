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

/// A stable merge sort that never fails whatever `compare` answers: the standard sorts may
/// panic on an order that is not total, and a format's version order need not be (Maven's has
/// cycles), while clients choose the versions.
pub fn tolerant_sort<T>(items: Vec<T>, compare: &dyn Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    if items.len() <= 1 {
        return items;
    }
    let mut left = items;
    let right = left.split_off(left.len() / 2);
    let (left, right) = (tolerant_sort(left, compare), tolerant_sort(right, compare));
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    while let (Some(l), Some(r)) = (left.peek(), right.peek()) {
        let next = if compare(r, l) == std::cmp::Ordering::Less {
            right.next()
        } else {
            left.next()
        };
        merged.extend(next);
    }
    merged.extend(left);
    merged.extend(right);
    merged
}

#[cfg(test)]
mod sort_tests {
    use std::cmp::Ordering;

    use super::tolerant_sort;

    #[test]
    fn tolerant_sort_is_stable_and_survives_orders_that_are_not_total() {
        let sorted = tolerant_sort(
            vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')],
            &|a, b| a.0.cmp(&b.0),
        );
        assert_eq!(sorted, [(1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]);
        // Rock, paper, scissors: no order at all; every item is still there once.
        let cyclic = |a: &u8, b: &u8| match (a % 3, b % 3) {
            (x, y) if x == y => Ordering::Equal,
            (0, 1) | (1, 2) | (2, 0) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let mut items: Vec<u8> = (0..200).map(|i| (i * 37 % 251) as u8).collect();
        let sorted = tolerant_sort(items.clone(), &cyclic);
        items.sort_unstable();
        let mut back = sorted;
        back.sort_unstable();
        assert_eq!(back, items);
    }
}
