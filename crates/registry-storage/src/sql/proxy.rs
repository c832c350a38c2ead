//! Proxy repositories' cache entries ([`ProxyCache`]) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::{
    BlobRef, CacheEntry, CacheEntryKind, Page, ProxyCache, Result, ReviewEvent, Timestamp,
    Validators,
};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{SqlMetadataStore, blob_review, corrupt, db_error, digest_column, get, queue, to_i64};

const ENTRY_COLUMNS: &str = "repository, path, kind, blob_digest, blob_size, declared, etag, \
                             last_modified, checked_at, created_at, downloads, last_download, \
                             digests";

fn entry_row(row: &AnyRow) -> Result<CacheEntry> {
    let kind: String = get(row, "kind")?;
    let blob = BlobRef {
        digest: digest_column(row, "blob_digest")?,
        size: u64::try_from(get::<i64>(row, "blob_size")?).unwrap_or(0),
    };
    Ok(CacheEntry {
        repository: get(row, "repository")?,
        path: get(row, "path")?,
        kind: CacheEntryKind::from_name(&kind).ok_or_else(|| corrupt("cache entry kind", &kind))?,
        blob,
        declared: get(row, "declared")?,
        validators: Validators {
            etag: get(row, "etag")?,
            last_modified: get(row, "last_modified")?,
        },
        digests: {
            let digests: String = get(row, "digests")?;
            serde_json::from_str(&digests).map_err(|_| corrupt("digests", &digests))?
        },
        checked_at: Timestamp(get(row, "checked_at")?),
        created_at: Timestamp(get(row, "created_at")?),
        downloads: u64::try_from(get::<i64>(row, "downloads")?).unwrap_or(0),
        last_download: get::<Option<i64>>(row, "last_download")?.map(Timestamp),
    })
}

/// Queues the blobs of the entries `filter` (over the table, binding `$1` and `$2`) selects,
/// then deletes them; answers how many went.
async fn delete_entries(
    conn: &mut AnyConnection,
    filter: &str,
    repository: &str,
    second: Option<&str>,
    since: Option<i64>,
    due: i64,
) -> Result<u64> {
    let select = format!("SELECT blob_digest FROM proxy_cache WHERE {filter}");
    let mut query = sqlx::query(&select).bind(repository);
    if let Some(second) = second {
        query = query.bind(second);
    }
    if let Some(since) = since {
        query = query.bind(since);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
    let delete = format!("DELETE FROM proxy_cache WHERE {filter}");
    let mut query = sqlx::query(&delete).bind(repository);
    if let Some(second) = second {
        query = query.bind(second);
    }
    if let Some(since) = since {
        query = query.bind(since);
    }
    let done = query.execute(&mut *conn).await.map_err(db_error)?;
    for row in &rows {
        let digest = digest_column(row, "blob_digest")?;
        queue(
            &mut *conn,
            &blob_review(digest),
            ReviewEvent::PackageFileDeleted,
            due,
        )
        .await?;
    }
    Ok(done.rows_affected())
}

#[async_trait]
impl ProxyCache for SqlMetadataStore {
    async fn cache_entry(&self, repository: &str, path: &str) -> Result<Option<CacheEntry>> {
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM proxy_cache WHERE repository = $1 AND path = $2"
        ))
        .bind(repository)
        .bind(path)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(entry_row).transpose()
    }

    async fn put_cache_entry(&self, entry: &CacheEntry) -> Result<()> {
        let mut tx = self.begin().await?;
        // Held like a published file's blob: a collector's claim waits for this row lock, and
        // a blob it already took is refused rather than recorded anew.
        let held = sqlx::query(&format!(
            "SELECT 1 FROM blobs WHERE digest = $1 {}",
            self.lock("FOR SHARE")
        ))
        .bind(entry.blob.digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if held.is_none() {
            return Err(registry_core::Error::BlobUnknown {
                digest: entry.blob.digest.clone(),
            });
        }
        let previous = sqlx::query(&format!(
            "SELECT blob_digest FROM proxy_cache WHERE repository = $1 AND path = $2 {}",
            self.lock("FOR UPDATE")
        ))
        .bind(entry.repository.as_str())
        .bind(entry.path.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(&format!(
            "INSERT INTO proxy_cache ({ENTRY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (repository, path) DO UPDATE SET kind = excluded.kind, \
             blob_digest = excluded.blob_digest, blob_size = excluded.blob_size, \
             declared = excluded.declared, etag = excluded.etag, digests = excluded.digests, \
             last_modified = excluded.last_modified, checked_at = excluded.checked_at, \
             created_at = excluded.created_at"
        ))
        .bind(entry.repository.as_str())
        .bind(entry.path.as_str())
        .bind(entry.kind.as_str())
        .bind(entry.blob.digest.as_str())
        .bind(to_i64(entry.blob.size)?)
        .bind(entry.declared.as_deref())
        .bind(entry.validators.etag.as_deref())
        .bind(entry.validators.last_modified.as_deref())
        .bind(entry.checked_at.0)
        .bind(entry.created_at.0)
        .bind(to_i64(entry.downloads)?)
        .bind(entry.last_download.map(|t| t.0))
        .bind(serde_json::to_string(&entry.digests).map_err(registry_core::Error::backend)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(row) = previous {
            let previous = digest_column(&row, "blob_digest")?;
            if previous != entry.blob.digest {
                queue(
                    &mut tx,
                    &blob_review(previous),
                    ReviewEvent::PackageFileDeleted,
                    self.due(),
                )
                .await?;
            }
        }
        tx.commit().await.map_err(db_error)
    }

    async fn confirm_cache_entry(
        &self,
        repository: &str,
        path: &str,
        validators: &Validators,
        checked_at: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE proxy_cache SET etag = $3, last_modified = $4, checked_at = $5 \
             WHERE repository = $1 AND path = $2",
        )
        .bind(repository)
        .bind(path)
        .bind(validators.etag.as_deref())
        .bind(validators.last_modified.as_deref())
        .bind(checked_at.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_cache_downloads(
        &self,
        repository: &str,
        path: &str,
        count: u64,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE proxy_cache SET downloads = downloads + $3, \
             last_download = CASE WHEN last_download IS NULL OR last_download < $4 \
                             THEN $4 ELSE last_download END \
             WHERE repository = $1 AND path = $2",
        )
        .bind(repository)
        .bind(path)
        .bind(to_i64(count)?)
        .bind(at.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)
        .map(drop)
    }

    async fn list_cache_entries(&self, repository: &str, page: &Page) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM proxy_cache WHERE repository = $1 AND path > $2 \
             ORDER BY path LIMIT $3"
        ))
        .bind(repository)
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(entry_row).collect()
    }

    async fn delete_cache_entry(&self, repository: &str, path: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let gone = delete_entries(
            &mut tx,
            "repository = $1 AND path = $2",
            repository,
            Some(path),
            None,
            self.due(),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(gone > 0)
    }

    async fn delete_cache_entries(
        &self,
        repository: &str,
        unused_since: Option<Timestamp>,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let gone = match unused_since {
            None => {
                delete_entries(
                    &mut tx,
                    "repository = $1",
                    repository,
                    None,
                    None,
                    self.due(),
                )
                .await?
            }
            Some(since) => {
                delete_entries(
                    &mut tx,
                    "repository = $1 AND created_at < $2 \
                     AND (last_download IS NULL OR last_download < $2)",
                    repository,
                    None,
                    Some(since.0),
                    self.due(),
                )
                .await?
            }
        };
        tx.commit().await.map_err(db_error)?;
        Ok(gone)
    }
}
