//! What the stress tests share: a deterministic generator, the number of rounds, collectors
//! running beside the workload, quiescence, and the final check that only referenced blobs
//! remain.
// Each test binary uses part of this module.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use registry_core::{BlobStore, Digest, MetadataStore};
use registry_gc::{Collector, CollectorConfig, RunReport};

/// A tiny deterministic generator (xorshift), one per task.
pub struct Rng(pub u64);

impl Rng {
    /// The next number below `bound`.
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Operations per task: `REGISTRY_STRESS_ROUNDS`, 12 by default.
pub fn rounds() -> u64 {
    std::env::var("REGISTRY_STRESS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12)
}

/// A collector that retries failed reviews quickly.
pub fn collector(blobs: Arc<dyn BlobStore>, metadata: Arc<dyn MetadataStore>) -> Collector {
    let config = CollectorConfig {
        retry_after: Duration::from_millis(10),
        ..CollectorConfig::default()
    };
    Collector::new(blobs, metadata, config)
}

/// Collectors passing over the queue again and again until stopped. Each pass holds the
/// [`Collectors::gate`] for reading: a test that must make progress (a push starved by
/// collections, with review delay 0) holds it for writing, and no pass runs meanwhile.
pub struct Collectors {
    done: Arc<AtomicBool>,
    gate: Arc<tokio::sync::RwLock<()>>,
    totals: Arc<Mutex<RunReport>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Collectors {
    /// Starts `count` collectors.
    pub fn start(collector: &Collector, count: usize) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let totals = Arc::new(Mutex::new(RunReport::default()));
        let tasks = (0..count)
            .map(|_| {
                let (collector, done, totals, gate) = (
                    collector.clone(),
                    Arc::clone(&done),
                    Arc::clone(&totals),
                    Arc::clone(&gate),
                );
                tokio::spawn(async move {
                    while !done.load(Ordering::Relaxed) {
                        let report = {
                            let _pass = gate.read().await;
                            collector.run_once().await
                        };
                        {
                            let mut totals = totals.lock().unwrap();
                            totals.manifests_deleted += report.manifests_deleted;
                            totals.blobs_deleted += report.blobs_deleted;
                            totals.postponed += report.postponed;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Collectors {
            done,
            gate,
            totals,
            tasks,
        }
    }

    /// The gate every pass holds for reading (see [`Collectors`]).
    #[allow(dead_code)] // Not every test holds it.
    pub fn gate(&self) -> Arc<tokio::sync::RwLock<()>> {
        Arc::clone(&self.gate)
    }

    /// Stops them; returns what they did in total.
    pub async fn stop(self) -> RunReport {
        self.done.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.totals.lock().unwrap().clone()
    }
}

/// Collects until nothing is due; returns how many reviews were postponed on the way.
pub async fn quiesce(collector: &Collector) -> u64 {
    let mut postponed = 0;
    for _ in 0..50 {
        let report = collector.run_once().await;
        postponed += report.postponed;
        if report.reviewed == 0 {
            break;
        }
    }
    postponed
}

/// Asserts storage holds every referenced blob and nothing else; returns how many it holds.
pub async fn assert_only_referenced(blobs: &dyn BlobStore, referenced: &BTreeSet<Digest>) -> usize {
    let stored: BTreeSet<Digest> = blobs.list().map(|d| d.unwrap()).collect().await;
    let unreferenced: Vec<&Digest> = stored.difference(referenced).collect();
    assert!(
        unreferenced.is_empty(),
        "unreferenced blobs remain after quiescence: {unreferenced:?}"
    );
    assert!(referenced.is_subset(&stored));
    stored.len()
}
