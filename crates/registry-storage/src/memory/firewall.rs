//! The firewall's audit log ([`FirewallAudit`]) in the memory metadata store.

use async_trait::async_trait;
use registry_core::{AuditEntry, FirewallAudit, Result, Timestamp};

use super::{MemoryMetadataStore, lock};

/// The most entries kept in memory; the oldest go first.
const MAX_ENTRIES: usize = 100_000;

/// Entries, oldest first.
#[derive(Debug, Default)]
pub(super) struct AuditState {
    entries: std::collections::VecDeque<AuditEntry>,
    next_id: u64,
}

#[async_trait]
impl FirewallAudit for MemoryMetadataStore {
    async fn record_decisions(&self, entries: &[AuditEntry]) -> Result<()> {
        let mut state = lock(&self.state);
        let audit = &mut state.audit;
        for entry in entries {
            audit.next_id += 1;
            let mut entry = entry.clone();
            entry.id = audit.next_id;
            audit.entries.push_back(entry);
            if audit.entries.len() > MAX_ENTRIES {
                audit.entries.pop_front();
            }
        }
        Ok(())
    }

    async fn audit_entries(
        &self,
        repository: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let state = lock(&self.state);
        Ok(state
            .audit
            .entries
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b))
            .filter(|e| repository.is_none_or(|r| e.repository == r))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        let mut state = lock(&self.state);
        let kept = state.audit.entries.len();
        state.audit.entries.retain(|e| e.at >= before);
        Ok((kept - state.audit.entries.len()) as u64)
    }
}
