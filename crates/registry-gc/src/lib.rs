//! Garbage collection: online workers that consume the metadata store's review queue, an
//! offline [`sweep`] over a whole store, and [`cleanup`] policies that delete old tags.
//!
//! Every change that may orphan something (a tag moved or deleted, a manifest deleted, a blob
//! uploaded or unlinked) queues a review of it in the same transaction, due after the review
//! delay. A [`Collector`] takes due entries and decides, in the metadata store's own
//! transactions:
//!
//! - a **manifest** is deleted when no tag points at it, no index in its repository lists it,
//!   and it is not a referrer of a manifest that exists there (so referrers of a deleted subject
//!   go too); deleting it queues its blobs, children and referrers;
//! - a **blob** is deleted when no manifest references it: the store *claims* it (its records
//!   removed in a transaction still open, so racing links wait and racing pushes fail), the
//!   collector deletes the bytes, then commits. Metadata decides first and storage goes after,
//!   and a pusher that linked the digest meanwhile finds the bytes gone and fails cleanly
//!   (`OciRegistry` checks after every link) — a manifest never points at a deleted blob.
//!
//! A failed review is postponed with exponential backoff. Several collectors, in one process or
//! many, can run at once: the store's locks make each decision once.
//!
//! ```no_run
//! # async fn demo(blobs: std::sync::Arc<dyn registry_core::BlobStore>,
//! #               metadata: std::sync::Arc<dyn registry_core::MetadataStore>) {
//! use registry_gc::{Collector, CollectorConfig};
//!
//! let collector = Collector::new(blobs, metadata, CollectorConfig::default());
//! let report = collector.run_once().await; // everything due now
//! println!("{} blobs, {} bytes freed", report.blobs_deleted, report.bytes_freed);
//! # }
//! ```
#![deny(rustdoc::broken_intra_doc_links)]

pub mod cleanup;
pub mod sweep;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use registry_core::{
    BlobStore, Digest, ManifestVerdict, MetadataStore, RepositoryName, Result, ReviewTarget,
    ReviewTask, Timestamp,
};

/// How a [`Collector`] works.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Entries taken from the queue per batch.
    pub batch: usize,
    /// First postponement after a failed review; doubles with each attempt.
    pub retry_after: Duration,
    /// Longest postponement.
    pub max_retry_after: Duration,
    /// Pause between passes when nothing was due.
    pub idle: Duration,
    /// Upload sessions started longer ago than this are abandoned and purged.
    pub abandoned_upload_age: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            batch: 100,
            retry_after: Duration::from_secs(5 * 60),
            max_retry_after: Duration::from_secs(24 * 60 * 60),
            idle: Duration::from_secs(10),
            abandoned_upload_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Entries reviewed.
    pub reviewed: u64,
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Blobs deleted.
    pub blobs_deleted: u64,
    /// Bytes of blob storage freed.
    pub bytes_freed: u64,
    /// Blob records whose bytes were already missing from storage (reported, then removed).
    pub blobs_missing: u64,
    /// Reviews that failed and were postponed.
    pub postponed: u64,
    /// Abandoned upload sessions purged.
    pub uploads_purged: u64,
}

/// Consumes the review queue and deletes what nothing references.
#[derive(Clone, Debug)]
pub struct Collector {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    config: CollectorConfig,
}

/// One review's outcome.
enum Outcome {
    Kept,
    ManifestDeleted,
    BlobDeleted { bytes: u64, missing: bool },
}

impl Collector {
    /// A collector over the registry's stores.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn MetadataStore>,
        config: CollectorConfig,
    ) -> Self {
        Collector {
            blobs,
            metadata,
            config,
        }
    }

    /// Purges upload sessions started before `older_than` ago: their bytes in the blob store
    /// and their records. Returns how many went; a session that fails to go is logged and left
    /// for the next pass.
    pub async fn purge_uploads(&self, older_than: Duration) -> u64 {
        let before = Timestamp(
            Timestamp::now().0 - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX),
        );
        let mut purged = 0;
        loop {
            let stale = match self
                .metadata
                .uploads_started_before(before, self.config.batch)
                .await
            {
                Ok(stale) => stale,
                Err(error) => {
                    tracing::warn!(%error, "listing abandoned uploads failed");
                    break;
                }
            };
            let mut progressed = false;
            for upload in &stale {
                match self.blobs.upload_cancel(&upload.id).await {
                    Ok(()) | Err(registry_core::Error::BlobUploadUnknown { .. }) => {}
                    Err(error) => {
                        tracing::warn!(%error, id = %upload.id, "purging an upload's bytes failed");
                        continue;
                    }
                }
                if let Err(error) = self.metadata.delete_upload(&upload.id).await {
                    tracing::warn!(%error, id = %upload.id, "purging an upload's record failed");
                    continue;
                }
                progressed = true;
                purged += 1;
            }
            if stale.len() < self.config.batch || !progressed {
                break;
            }
        }
        metrics::counter!("registry_gc_uploads_purged_total").increment(purged);
        purged
    }

    /// Reviews every entry due now, batch after batch, until none is due, and purges abandoned
    /// uploads; returns what it did. A review that fails is postponed and counted, never fatal.
    pub async fn run_once(&self) -> RunReport {
        let mut report = RunReport {
            uploads_purged: self.purge_uploads(self.config.abandoned_upload_age).await,
            ..RunReport::default()
        };
        loop {
            let due = match self
                .metadata
                .due_reviews(Timestamp::now(), self.config.batch)
                .await
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "reading the review queue failed");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let before = report.reviewed + report.postponed;
            for task in due {
                self.review_one(&task, &mut report).await;
            }
            if report.reviewed + report.postponed == before {
                break;
            }
        }
        metrics::counter!("registry_gc_runs_total").increment(1);
        if let Ok(depth) = self.metadata.review_queue_len().await {
            metrics::gauge!("registry_gc_queue_depth").set(depth as f64);
        }
        report
    }

    /// Runs passes until `shutdown` resolves, pausing [`CollectorConfig::idle`] between them.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let report = self.run_once().await;
            if report.reviewed > 0 || report.postponed > 0 || report.uploads_purged > 0 {
                tracing::info!(?report, "garbage collection pass");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.idle) => {}
            }
        }
    }

    async fn review_one(&self, task: &ReviewTask, report: &mut RunReport) {
        let outcome = match &task.target {
            ReviewTarget::Manifest { repository, digest } => {
                self.review_manifest(repository, digest).await
            }
            ReviewTarget::Blob { digest } => self.review_blob(digest).await,
        };
        match outcome {
            Ok(outcome) => {
                report.reviewed += 1;
                match outcome {
                    Outcome::Kept => {}
                    Outcome::ManifestDeleted => {
                        report.manifests_deleted += 1;
                        metrics::counter!("registry_gc_deleted_total", "kind" => "manifest")
                            .increment(1);
                    }
                    Outcome::BlobDeleted { bytes, missing } => {
                        report.blobs_deleted += 1;
                        report.bytes_freed += bytes;
                        report.blobs_missing += u64::from(missing);
                        metrics::counter!("registry_gc_deleted_total", "kind" => "blob")
                            .increment(1);
                        metrics::counter!("registry_gc_bytes_freed_total").increment(bytes);
                    }
                }
                if let Err(error) = self.metadata.complete_review(task).await {
                    tracing::warn!(%error, target = ?task.target, "completing a review failed");
                }
            }
            Err(error) => {
                report.postponed += 1;
                metrics::counter!("registry_gc_postponed_total").increment(1);
                let factor = 2u32.saturating_pow(task.attempts.min(20));
                let delay = self
                    .config
                    .retry_after
                    .saturating_mul(factor)
                    .min(self.config.max_retry_after);
                tracing::warn!(%error, target = ?task.target, ?delay, "review failed; postponed");
                if let Err(error) = self
                    .metadata
                    .postpone_review(&task.target, Timestamp::now().after(delay))
                    .await
                {
                    tracing::warn!(%error, "postponing a review failed");
                }
            }
        }
    }

    async fn review_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Outcome> {
        Ok(
            match self.metadata.collect_manifest(repository, digest).await? {
                ManifestVerdict::Deleted => Outcome::ManifestDeleted,
                _ => Outcome::Kept,
            },
        )
    }

    async fn review_blob(&self, digest: &Digest) -> Result<Outcome> {
        let Some(claim) = self.metadata.claim_blob(digest).await? else {
            return Ok(Outcome::Kept);
        };
        // The claim is held: no link of this digest can complete until it ends.
        let size = match self.blobs.stat(digest).await {
            Ok(size) => size,
            Err(error) => {
                claim.abandon().await?;
                return Err(error);
            }
        };
        if let Err(error) = self.blobs.delete(digest).await {
            claim.abandon().await?;
            return Err(error);
        }
        claim.commit().await?;
        if size.is_none() {
            tracing::warn!(%digest, "blob record without bytes in storage; record removed");
        }
        Ok(Outcome::BlobDeleted {
            bytes: size.unwrap_or(0),
            missing: size.is_none(),
        })
    }
}
