//! What one request did through proxies ([`ProxyReport`]): recorded by the services into a
//! task-local report while the request runs ([`observe_proxy`]), turned into headers, metrics
//! and logs by the HTTP edge; it also carries the `Via` hops the request arrived through, which
//! its upstream requests carry on.

use crate::error::{Error, Result};

/// Metadata a request was served from the cache although its upstream could not revalidate
/// it (down, too slow, failing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleServe {
    /// The upstream's base URL.
    pub upstream: String,
    /// Why it could not revalidate.
    pub reason: String,
}

/// What one request did through proxy repositories, for the HTTP edge to report (headers,
/// metrics, logs) — and the `Via` hops it arrived through, which its upstream requests carry on
/// (so a chain of proxies that leads back to one of them is recognised).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyReport {
    /// The `Via` hops of the client's request.
    pub via: Vec<String>,
    /// Metadata and files served from the cache without asking the upstream.
    pub hits: u32,
    /// Metadata and files asked of the upstream (fetched or revalidated).
    pub misses: u32,
    /// Upstream requests that failed.
    pub upstream_errors: u32,
    /// Metadata served stale.
    pub stale: Vec<StaleServe>,
    /// How upstream requests failed (the first few).
    pub failures: Vec<String>,
}

/// The most upstream failures one report keeps.
const MAX_REPORTED_FAILURES: usize = 8;

tokio::task_local! {
    /// The proxy report of the current request.
    static REPORT: std::cell::RefCell<ProxyReport>;
}

/// Runs `request`, which arrived through the `Via` hops `via`, answering with its output what
/// it did through proxy repositories ([`ProxyReport`]).
pub async fn observe_proxy<F: std::future::Future>(
    via: Vec<String>,
    request: F,
) -> (F::Output, ProxyReport) {
    let report = ProxyReport {
        via,
        ..ProxyReport::default()
    };
    REPORT
        .scope(std::cell::RefCell::new(report), async {
            let output = request.await;
            let report = REPORT.with(|r| r.take());
            (output, report)
        })
        .await
}

/// The `Via` hops of the request being served (empty outside [`observe_proxy`]).
pub fn incoming_via() -> Vec<String> {
    REPORT
        .try_with(|r| r.borrow().via.clone())
        .unwrap_or_default()
}

pub(crate) fn record(change: impl FnOnce(&mut ProxyReport)) {
    let _ = REPORT.try_with(|r| change(&mut r.borrow_mut()));
}

pub(crate) fn mark_stale(upstream: &str, reason: &Error) {
    record(|r| {
        if !r.stale.iter().any(|u| u.upstream == upstream) {
            r.stale.push(StaleServe {
                upstream: upstream.to_owned(),
                reason: reason.to_string(),
            });
        }
    });
}

/// Adds to the current request's report what a task it waited for did (a detached fetch).
pub(crate) fn absorb(done: ProxyReport) {
    record(|r| {
        r.hits += done.hits;
        r.misses += done.misses;
        r.upstream_errors += done.upstream_errors;
        for stale in done.stale {
            if !r.stale.iter().any(|s| s.upstream == stale.upstream) {
                r.stale.push(stale);
            }
        }
        for failure in done.failures {
            if r.failures.len() < MAX_REPORTED_FAILURES {
                r.failures.push(failure);
            }
        }
    });
}

/// Records a failure the request got past (the edge logs it).
pub(crate) fn report_failure(text: String) {
    record(|r| {
        if r.failures.len() < MAX_REPORTED_FAILURES {
            r.failures.push(text);
        }
    });
}

/// Counts an upstream failure on its way out.
pub(crate) fn counted<T>(answer: Result<T>) -> Result<T> {
    if let Err(error @ Error::Upstream { .. }) = &answer {
        record(|r| {
            r.upstream_errors += 1;
            if r.failures.len() < MAX_REPORTED_FAILURES {
                r.failures.push(error.to_string());
            }
        });
    }
    answer
}
