//! Batched background migrations ([`BackgroundMigrations`]) in the SQL metadata store.
//!
//! A schema migration enqueues one as a row of `background_migrations`; the batches are
//! written here, one function per migration, each running in the transaction that advances
//! the migration's cursor. On PostgreSQL the row is locked `FOR UPDATE SKIP LOCKED` for the
//! batch, so instances running batches at once never run the same one; SQLite's write lock
//! serializes them anyway.

use async_trait::async_trait;
use registry_core::{
    BackgroundMigration, BackgroundMigrations, BatchRun, Error, MigrationStatus, Result, Timestamp,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Dialect, MANIFEST_TOTAL_SIZE, SqlMetadataStore, corrupt, db_error, get, to_i64};

/// A background migration this version knows.
struct Known {
    name: &'static str,
    description: &'static str,
    /// The table whose rows it goes through (counted for its progress).
    table: &'static str,
}

/// The background migrations this version knows; their batches are dispatched by name in
/// `run_background_batch`.
const KNOWN: &[Known] = &[Known {
    name: "manifest_total_size",
    description: "fills in each manifest's size with its blobs (manifests.total_size), for tag listings",
    table: "manifests",
}];

fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

fn description(name: &str) -> String {
    known(name).map_or("", |k| k.description).to_owned()
}

fn migration(row: &AnyRow) -> Result<BackgroundMigration> {
    let name: String = get(row, "name")?;
    let status: String = get(row, "status")?;
    let count = |column: &str| -> Result<Option<u64>> {
        Ok(get::<Option<i64>>(row, column)?.map(|n| u64::try_from(n).unwrap_or(0)))
    };
    Ok(BackgroundMigration {
        description: description(&name),
        status: MigrationStatus::parse(&status)
            .ok_or_else(|| corrupt("background migration status", &status))?,
        done: count("done")?.unwrap_or(0),
        total: count("total")?,
        error: get(row, "error")?,
        updated_at: Timestamp(get(row, "updated_at")?),
        name,
    })
}

const COLUMNS: &str = "name, status, done, total, error, updated_at";

/// One batch of `manifest_total_size`: the next `limit` manifests after `cursor`
/// (`<repository id>/<digest>`) get their total size; returns how many were scanned and the
/// new cursor.
async fn manifest_total_size(
    tx: &mut Transaction<'static, Any>,
    cursor: Option<&str>,
    limit: u64,
) -> Result<(u64, Option<String>)> {
    let (after_id, after_digest) = match cursor {
        None => (-1i64, String::new()),
        Some(text) => {
            let (id, digest) = text
                .split_once('/')
                .ok_or_else(|| corrupt("background migration cursor", text))?;
            let id = id
                .parse::<i64>()
                .map_err(|_| corrupt("background migration cursor", text))?;
            (id, digest.to_owned())
        }
    };
    let rows = sqlx::query(
        "SELECT repository_id, digest FROM manifests WHERE (repository_id, digest) > ($1, $2) \
         ORDER BY repository_id, digest LIMIT $3",
    )
    .bind(after_id)
    .bind(after_digest.as_str())
    .bind(to_i64(limit)?)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    let Some(last) = rows.last() else {
        return Ok((0, cursor.map(str::to_owned)));
    };
    let last_id: i64 = get(last, "repository_id")?;
    let last_digest: String = get(last, "digest")?;
    sqlx::query(&format!(
        "UPDATE manifests AS m SET total_size = {MANIFEST_TOTAL_SIZE} \
         WHERE (m.repository_id, m.digest) > ($1, $2) AND (m.repository_id, m.digest) <= ($3, $4) \
         AND m.total_size IS NULL"
    ))
    .bind(after_id)
    .bind(after_digest.as_str())
    .bind(last_id)
    .bind(last_digest.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok((rows.len() as u64, Some(format!("{last_id}/{last_digest}"))))
}

/// The rows a migration goes through, counted when it starts.
async fn total_of(tx: &mut Transaction<'static, Any>, name: &str) -> Result<i64> {
    let table = known(name)
        .ok_or_else(|| Error::backend(format!("unknown background migration {name}")))?
        .table;
    let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
    get(&row, "n")
}

impl SqlMetadataStore {
    async fn background_migration(&self, name: &str) -> Result<Option<BackgroundMigration>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM background_migrations WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(migration)
        .transpose()
    }
}

#[async_trait]
impl BackgroundMigrations for SqlMetadataStore {
    async fn background_migrations(&self) -> Result<Vec<BackgroundMigration>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM background_migrations ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(migration).collect()
    }

    async fn pause_background_migration(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<BackgroundMigration> {
        let (to, from) = if paused {
            ("paused", "'active', 'failed'")
        } else {
            ("active", "'paused', 'failed'")
        };
        sqlx::query(&format!(
            "UPDATE background_migrations SET status = $1, updated_at = $2, \
             error = CASE WHEN $1 = 'active' THEN NULL ELSE error END \
             WHERE name = $3 AND status IN ({from})"
        ))
        .bind(to)
        .bind(Timestamp::now().0)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let current = self
            .background_migration(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("background migration {name}"),
            })?;
        if current.status == MigrationStatus::Finished {
            return Err(Error::Conflict {
                reason: format!("background migration {name} is finished"),
            });
        }
        Ok(current)
    }

    async fn run_background_batch(&self, batch_size: u64) -> Result<Option<BatchRun>> {
        let batch_size = batch_size.max(1);
        let names: Vec<String> = KNOWN.iter().map(|k| format!("'{}'", k.name)).collect();
        let mut tx = self.begin().await?;
        let skip_locked = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT name, cursor, total FROM background_migrations \
             WHERE status = 'active' AND name IN ({}) ORDER BY name LIMIT 1 {skip_locked}",
            names.join(", ")
        ))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_error)?;
            return Ok(None);
        };
        let name: String = get(&row, "name")?;
        let cursor: Option<String> = get(&row, "cursor")?;
        let total: Option<i64> = get(&row, "total")?;
        let counted = match total {
            Some(total) => Ok(total),
            None => total_of(&mut tx, &name).await,
        };
        let batch = match (counted, name.as_str()) {
            (Ok(total), "manifest_total_size") => {
                manifest_total_size(&mut tx, cursor.as_deref(), batch_size)
                    .await
                    .map(|outcome| (total, outcome))
            }
            (Ok(_), other) => Err(Error::backend(format!(
                "unknown background migration {other}"
            ))),
            (Err(e), _) => Err(e),
        };
        let (total, (rows, cursor)) = match batch {
            Ok(done) => done,
            Err(e) => {
                // Nothing of the batch stays; the migration waits for an operator.
                drop(tx);
                let failed = sqlx::query(
                    "UPDATE background_migrations SET status = 'failed', error = $1, \
                     updated_at = $2 WHERE name = $3 AND status = 'active'",
                )
                .bind(e.to_string())
                .bind(Timestamp::now().0)
                .bind(name.as_str())
                .execute(&self.pool)
                .await;
                if let Err(record) = failed {
                    tracing::warn!(migration = %name, error = %record, "recording a failed background migration");
                }
                return Err(e);
            }
        };
        let finished = rows < batch_size;
        sqlx::query(
            "UPDATE background_migrations SET cursor = $1, done = done + $2, total = $3, \
             status = $4, updated_at = $5 WHERE name = $6",
        )
        .bind(cursor)
        .bind(to_i64(rows)?)
        .bind(total)
        .bind(if finished { "finished" } else { "active" })
        .bind(Timestamp::now().0)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(BatchRun {
            name,
            rows,
            finished,
        }))
    }
}
