//! Batched background migrations: long data changes a schema migration enqueues and the
//! servers carry out a batch at a time, while they serve.
//!
//! Each batch runs in one transaction together with the advance of its migration's cursor and
//! progress, so a crash loses at most the batch in flight and the next run resumes after the
//! last batch committed; a batch that fails leaves its rows as they were and marks the
//! migration failed, with the error, until an operator resumes it. Several instances may run
//! [`run_background_migrations`] at once: a batch holds its migration's row, and the others
//! pass it by. Operators watch, pause and resume them through [`BackgroundMigrations`] (the
//! CLI and the admin API).

use std::time::Duration;

use crate::error::Result;
use crate::values::Timestamp;
use async_trait::async_trait;

/// Where a background migration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationStatus {
    /// Batches run.
    Active,
    /// An operator paused it; no batch runs until resumed.
    Paused,
    /// Every row is done.
    Finished,
    /// A batch failed (see the error); resuming retries it.
    Failed,
}

impl MigrationStatus {
    /// Its name as stored and shown: `active`, `paused`, `finished`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Active => "active",
            MigrationStatus::Paused => "paused",
            MigrationStatus::Finished => "finished",
            MigrationStatus::Failed => "failed",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [
            MigrationStatus::Active,
            MigrationStatus::Paused,
            MigrationStatus::Finished,
            MigrationStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A background migration as operators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackgroundMigration {
    /// Its name (`manifest_total_size`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// Where it stands.
    pub status: MigrationStatus,
    /// Rows done so far.
    pub done: u64,
    /// Rows in all, as counted when it started (rows added since may make `done` pass it).
    pub total: Option<u64>,
    /// Why the last batch failed.
    pub error: Option<String>,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// What one batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRun {
    /// The migration it belongs to.
    pub name: String,
    /// Rows it did.
    pub rows: u64,
    /// Whether that was the last batch.
    pub finished: bool,
}

/// The background migrations of a metadata store.
#[async_trait]
pub trait BackgroundMigrations: Send + Sync {
    /// Every background migration, by name.
    async fn background_migrations(&self) -> Result<Vec<BackgroundMigration>>;

    /// Pauses (`true`) or resumes (`false`) one; resuming a failed one retries its batch.
    /// Errors: [`crate::Error::NotFound`]; [`crate::Error::Conflict`] for a finished one.
    async fn pause_background_migration(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<BackgroundMigration>;

    /// Runs one batch of at most `batch_size` rows of an active migration no other instance
    /// is running; `None` when there is none.
    async fn run_background_batch(&self, batch_size: u64) -> Result<Option<BatchRun>>;
}

/// How [`run_background_migrations`] paces itself.
#[derive(Clone, Copy, Debug)]
pub struct BackgroundSettings {
    /// Rows per batch (1,000 by default).
    pub batch_size: u64,
    /// Pause after each batch, so the database keeps serving (100 ms by default).
    pub pause: Duration,
    /// Wait when nothing is to be done, or after an error (30 s by default).
    pub idle: Duration,
}

impl Default for BackgroundSettings {
    fn default() -> Self {
        BackgroundSettings {
            batch_size: 1000,
            pause: Duration::from_millis(100),
            idle: Duration::from_secs(30),
        }
    }
}

/// Runs batches for as long as the future is polled (a server spawns it and drops it at
/// shutdown: a batch cut off is rolled back and done again).
pub async fn run_background_migrations(
    store: std::sync::Arc<dyn BackgroundMigrations>,
    settings: BackgroundSettings,
) {
    loop {
        let wait = match store.run_background_batch(settings.batch_size).await {
            Ok(Some(run)) => {
                if run.finished {
                    tracing::info!(migration = %run.name, "background migration finished");
                }
                settings.pause
            }
            Ok(None) => settings.idle,
            Err(e) => {
                tracing::warn!(error = %e, "background migration batch");
                settings.idle
            }
        };
        tokio::time::sleep(wait).await;
    }
}
