//! The firewall's audit log: every decision that blocked or warned, kept by the metadata
//! store so every instance writes to and reads from one log.

use async_trait::async_trait;

use super::Mode;
use crate::error::Result;
use crate::values::Timestamp;

/// One decision that blocked or warned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its sequence number (assigned by the store; newer entries have larger ones).
    pub id: u64,
    /// When.
    pub at: Timestamp,
    /// The repository read or published through.
    pub repository: String,
    /// The package (stored name).
    pub package: String,
    /// The version.
    pub version: String,
    /// What was asked: `download`, `publish` or `metadata` (left out of a listing).
    pub action: String,
    /// The rule that decided.
    pub rule: String,
    /// `block` or `warn`.
    pub mode: Mode,
    /// Why.
    pub reason: String,
}

/// The audit log's records (implemented by each metadata store).
#[async_trait]
pub trait FirewallAudit: std::fmt::Debug + Send + Sync + 'static {
    /// Appends entries (their `id` is assigned).
    async fn record_decisions(&self, entries: &[AuditEntry]) -> Result<()>;

    /// Entries newest first: of one repository or all, with ids below `before` when given, at
    /// most `limit`.
    async fn audit_entries(
        &self,
        repository: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;

    /// Deletes entries older than `before`; answers how many went.
    async fn prune_audit(&self, before: Timestamp) -> Result<u64>;
}
