//! Stored tag rules and cleanup policies ([`PolicyStore`]) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::{PolicyKind, PolicySource, PolicyStore, Result, StoredPolicy, Timestamp};
use sqlx::AnyConnection;

use super::{Dialect, SqlMetadataStore, corrupt, db_error, get};
use crate::policy::{check_count, check_owner};

#[async_trait]
impl PolicyStore for SqlMetadataStore {
    async fn policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(
            "SELECT name, source, document FROM policies WHERE kind = $1 ORDER BY name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let source: String = get(row, "source")?;
                Ok(StoredPolicy {
                    kind,
                    name: get(row, "name")?,
                    source: PolicySource::from_name(&source)
                        .ok_or_else(|| corrupt("policy source", &source))?,
                    document: get(row, "document")?,
                })
            })
            .collect()
    }

    async fn put_policy(&self, policy: &StoredPolicy, max: usize) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Serializes writers of one kind on PostgreSQL (SQLite's IMMEDIATE transaction already
        // does), so two creations cannot both pass the count check.
        lock_policies(&mut tx, self.dialect).await?;
        let created = match policy_source(&mut tx, policy.kind, &policy.name).await? {
            Some(owner) => {
                check_owner(policy.kind, &policy.name, owner, policy.source)?;
                false
            }
            None => {
                check_count(count_policies(&mut tx, policy.kind).await? + 1, max)?;
                true
            }
        };
        sqlx::query(
            "INSERT INTO policies (kind, name, source, document, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, name) \
             DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
        )
        .bind(policy.kind.as_str())
        .bind(policy.name.as_str())
        .bind(policy.source.as_str())
        .bind(policy.document.as_str())
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn delete_policy(
        &self,
        kind: PolicyKind,
        name: &str,
        source: PolicySource,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        lock_policies(&mut tx, self.dialect).await?;
        let Some(owner) = policy_source(&mut tx, kind, name).await? else {
            return Ok(false);
        };
        check_owner(kind, name, owner, source)?;
        sqlx::query("DELETE FROM policies WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn replace_policies(
        &self,
        kind: PolicyKind,
        source: PolicySource,
        policies: &[StoredPolicy],
        max: usize,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        lock_policies(&mut tx, self.dialect).await?;
        sqlx::query("DELETE FROM policies WHERE kind = $1 AND source = $2")
            .bind(kind.as_str())
            .bind(source.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for policy in policies {
            if let Some(owner) = policy_source(&mut tx, kind, &policy.name).await? {
                check_owner(kind, &policy.name, owner, source)?;
            }
        }
        check_count(count_policies(&mut tx, kind).await? + policies.len(), max)?;
        let now = Timestamp::now().0;
        for policy in policies {
            sqlx::query(
                "INSERT INTO policies (kind, name, source, document, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind.as_str())
            .bind(policy.name.as_str())
            .bind(source.as_str())
            .bind(policy.document.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }
}

/// Takes the policy table's write lock for the rest of the transaction (PostgreSQL; SQLite's
/// write transactions are serialized already).
async fn lock_policies(conn: &mut AnyConnection, dialect: Dialect) -> Result<()> {
    if dialect == Dialect::Postgres {
        sqlx::query("LOCK TABLE policies IN SHARE ROW EXCLUSIVE MODE")
            .execute(conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

async fn policy_source(
    conn: &mut AnyConnection,
    kind: PolicyKind,
    name: &str,
) -> Result<Option<PolicySource>> {
    let row = sqlx::query("SELECT source FROM policies WHERE kind = $1 AND name = $2")
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    row.map(|row| {
        let source: String = get(&row, "source")?;
        PolicySource::from_name(&source).ok_or_else(|| corrupt("policy source", &source))
    })
    .transpose()
}

async fn count_policies(conn: &mut AnyConnection, kind: PolicyKind) -> Result<usize> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM policies WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(conn)
        .await
        .map_err(db_error)?;
    let n: i64 = get(&row, "n")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
