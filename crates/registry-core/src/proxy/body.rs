//! Upstream bodies bounded in time ([`guarded_body`]): a file's body must keep coming, and
//! fast enough on average, or it is cut off with the upstream's error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::UpstreamSettings;
use crate::blob::ByteStream;
use crate::error::Error;

/// The least a file's body must bring per timeout window once it has started.
const MIN_BYTES_PER_WINDOW: u64 = 1024;

/// The least average rate of a file's body after its first timeout window, in bytes per
/// second: a body dripping just above [`MIN_BYTES_PER_WINDOW`] cannot hold its path's fetch
/// (and everyone waiting for it) for longer than its size at this rate.
const MIN_AVERAGE_RATE: u64 = 64 << 10;

/// Where a file's body is: what came since when, and in all.
struct Progress {
    started: Instant,
    window_start: Instant,
    in_window: u64,
    total: u64,
    done: bool,
}

impl Progress {
    /// How long the next chunk may take: the rest of this window, and no longer than the
    /// average rate allows.
    fn wait(&self, window: Duration) -> (Duration, bool) {
        let in_window = window.saturating_sub(self.window_start.elapsed());
        let average = (window
            + Duration::from_secs_f64(self.total as f64 / MIN_AVERAGE_RATE as f64))
        .saturating_sub(self.started.elapsed());
        let wait = in_window.min(average).max(Duration::from_millis(1));
        (wait, average < in_window)
    }
}

/// An upstream body bounded in time — no byte within the timeout, less than
/// [`MIN_BYTES_PER_WINDOW`] per timeout window, or less than [`MIN_AVERAGE_RATE`] on average
/// after the first window fails it — whose first failure is kept in `failure` (the blob
/// store only learns that the body broke off).
pub(crate) fn guarded_body(
    body: ByteStream,
    settings: &UpstreamSettings,
    path: &str,
    failure: Arc<Mutex<Option<Error>>>,
) -> ByteStream {
    let window = settings.timeout();
    let upstream = settings.base().to_owned();
    let path = path.to_owned();
    let too_slow = Arc::new(move |progress: &Progress, average: bool| Error::Upstream {
        upstream: upstream.clone(),
        reason: if average {
            format!(
                "it sent {} bytes of {path} in {} s; at least {} KiB/s on average are expected",
                progress.total,
                progress.started.elapsed().as_secs(),
                MIN_AVERAGE_RATE >> 10
            )
        } else {
            format!(
                "it sent {} bytes of {path} in {} s; at least {MIN_BYTES_PER_WINDOW} are expected",
                progress.in_window,
                window.as_secs()
            )
        },
        timed_out: true,
    });
    let now = Instant::now();
    let progress = Progress {
        started: now,
        window_start: now,
        in_window: 0,
        total: 0,
        done: false,
    };
    futures::stream::unfold((body, progress), move |(mut body, mut progress)| {
        let failure = Arc::clone(&failure);
        let too_slow = Arc::clone(&too_slow);
        async move {
            if progress.done {
                return None;
            }
            let (wait, average) = progress.wait(window);
            let next = tokio::time::timeout(wait, body.next()).await;
            let failed = |error: Error, progress: &mut Progress| {
                progress.done = true;
                let shown = super::copy_upstream_error(&error);
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(error);
                shown
            };
            match next {
                Ok(Some(Ok(chunk))) => {
                    progress.total += chunk.len() as u64;
                    progress.in_window += chunk.len() as u64;
                    // A new window starts once this one brought enough.
                    if progress.in_window >= MIN_BYTES_PER_WINDOW {
                        progress.window_start = Instant::now();
                        progress.in_window = 0;
                    }
                    Some((Ok(chunk), (body, progress)))
                }
                Ok(Some(Err(error))) => {
                    let shown = failed(error, &mut progress);
                    Some((Err(shown), (body, progress)))
                }
                Ok(None) => None,
                Err(_) => {
                    let error = too_slow(&progress, average);
                    let shown = failed(error, &mut progress);
                    Some((Err(shown), (body, progress)))
                }
            }
        }
    })
    .boxed()
}
