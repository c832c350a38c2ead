//! The firewall's audit log ([`FirewallAudit`]) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::firewall::Mode;
use registry_core::{AuditEntry, FirewallAudit, Result, Timestamp};
use sqlx::any::AnyRow;

use super::{SqlMetadataStore, corrupt, db_error, get, to_i64};

fn entry_row(row: &AnyRow) -> Result<AuditEntry> {
    let mode: String = get(row, "mode")?;
    Ok(AuditEntry {
        id: u64::try_from(get::<i64>(row, "id")?).unwrap_or(0),
        at: Timestamp(get(row, "at")?),
        repository: get(row, "repository")?,
        package: get(row, "package")?,
        version: get(row, "version")?,
        action: get(row, "action")?,
        rule: get(row, "rule")?,
        mode: match mode.as_str() {
            "block" => Mode::Block,
            "warn" => Mode::Warn,
            _ => return Err(corrupt("firewall mode", &mode)),
        },
        reason: get(row, "reason")?,
    })
}

#[async_trait]
impl FirewallAudit for SqlMetadataStore {
    async fn record_decisions(&self, entries: &[AuditEntry]) -> Result<()> {
        let mut tx = self.begin().await?;
        for entry in entries {
            sqlx::query(
                "INSERT INTO firewall_audit (at, repository, package, version, action, rule, \
                 mode, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(entry.at.0)
            .bind(entry.repository.as_str())
            .bind(entry.package.as_str())
            .bind(entry.version.as_str())
            .bind(entry.action.as_str())
            .bind(entry.rule.as_str())
            .bind(entry.mode.as_str())
            .bind(entry.reason.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn audit_entries(
        &self,
        repository: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, repository, package, version, action, rule, mode, reason \
             FROM firewall_audit WHERE id < $1 AND ($2 = '' OR repository = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(to_i64(before.unwrap_or(i64::MAX as u64))?)
        .bind(repository.unwrap_or(""))
        .bind(to_i64(limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(entry_row).collect()
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM firewall_audit WHERE at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}
