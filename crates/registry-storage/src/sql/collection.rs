//! The collector's side ([`CollectionMetadata`]) of the SQL metadata store: manifest verdicts,
//! listings and blob claims.

use async_trait::async_trait;
use registry_core::{
    BlobClaim, BlobRecord, CollectionMetadata, Digest, ManifestEntry, ManifestVerdict, Page,
    RepositoryName, Result, Timestamp,
};
use sqlx::{Any, Transaction};

use super::{
    HELD_BEYOND_MANIFESTS, SqlMetadataStore, blob_record, corrupt, db_error, digest_column, get,
    remove_manifest, repository_id, to_i64,
};

#[async_trait]
impl CollectionMetadata for SqlMetadataStore {
    async fn collect_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestVerdict> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(ManifestVerdict::Missing);
        };
        // FOR UPDATE: a concurrent tag or index push waits for this decision, then sees it.
        if !self
            .manifest_row(&mut tx, repository_id, digest, "FOR UPDATE")
            .await?
        {
            return Ok(ManifestVerdict::Missing);
        }
        let checks = [
            (
                ManifestVerdict::Tagged,
                "SELECT 1 FROM tags WHERE repository_id = $1 AND manifest_digest = $2 LIMIT 1",
            ),
            (
                ManifestVerdict::Listed,
                "SELECT 1 FROM manifest_children WHERE repository_id = $1 AND child_digest = $2 LIMIT 1",
            ),
            (
                ManifestVerdict::Referrer,
                "SELECT 1 FROM manifests m JOIN manifests s \
                 ON s.repository_id = m.repository_id AND s.digest = m.subject \
                 WHERE m.repository_id = $1 AND m.digest = $2",
            ),
        ];
        for (verdict, sql) in checks {
            let found = sqlx::query(sql)
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if found.is_some() {
                return Ok(verdict);
            }
        }
        remove_manifest(&mut tx, repository, repository_id, digest, due).await?;
        tx.commit().await.map_err(db_error)?;
        self.wrote(repository).await;
        Ok(ManifestVerdict::Deleted)
    }

    async fn list_manifests(
        &self,
        repository: &RepositoryName,
        page: &Page,
    ) -> Result<Vec<ManifestEntry>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let Some(repository_id) = repository_id(&mut conn, repository).await? else {
            return Ok(Vec::new());
        };
        // References come aggregated, one row per manifest (see `page_query`).
        let rows = sqlx::query(
            "SELECT m.digest, m.size, m.created_at, m.subject, \
             (SELECT COUNT(*) FROM tags t WHERE t.repository_id = m.repository_id \
              AND t.manifest_digest = m.digest) AS tags, \
             (SELECT string_agg(b.blob_digest, ',') FROM manifest_blobs b \
              WHERE b.repository_id = m.repository_id AND b.manifest_digest = m.digest) AS blobs, \
             (SELECT string_agg(c.child_digest, ',') FROM manifest_children c \
              WHERE c.repository_id = m.repository_id AND c.parent_digest = m.digest) AS children \
             FROM manifests m WHERE m.repository_id = $1 AND m.digest > $2 \
             ORDER BY m.digest LIMIT $3",
        )
        .bind(repository_id)
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let list = |column: &str| -> Result<Vec<Digest>> {
                    let text: Option<String> = get(row, column)?;
                    text.as_deref().map_or(Ok(Vec::new()), |t| {
                        t.split(',')
                            .map(|d| Digest::parse(d).map_err(|_| corrupt("digest", d)))
                            .collect()
                    })
                };
                let subject: Option<String> = get(row, "subject")?;
                Ok(ManifestEntry {
                    digest: digest_column(row, "digest")?,
                    size: u64::try_from(get::<i64>(row, "size")?).unwrap_or(0),
                    created_at: Timestamp(get(row, "created_at")?),
                    tagged: get::<i64>(row, "tags")? > 0,
                    subject: subject
                        .map(|s| Digest::parse(&s).map_err(|_| corrupt("subject", &s)))
                        .transpose()?,
                    blobs: list("blobs")?,
                    children: list("children")?,
                })
            })
            .collect()
    }

    async fn list_blobs(&self, page: &Page) -> Result<Vec<BlobRecord>> {
        let rows = sqlx::query(
            "SELECT digest, size, created_at FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
        )
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(blob_record).collect()
    }

    async fn claim_blob(&self, digest: &Digest) -> Result<Option<Box<dyn BlobClaim>>> {
        let mut tx = self.begin().await?;
        let record = sqlx::query(&format!(
            "SELECT 1 FROM blobs WHERE digest = $1 {}",
            self.lock("FOR UPDATE")
        ))
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if record.is_none() {
            return Ok(None);
        }
        let referenced = sqlx::query(&format!(
            "SELECT 1 FROM manifest_blobs WHERE blob_digest = $1 UNION ALL {HELD_BEYOND_MANIFESTS} \
             LIMIT 1"
        ))
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if referenced.is_some() {
            return Ok(None);
        }
        for sql in [
            "DELETE FROM repository_blobs WHERE digest = $1",
            "DELETE FROM blobs WHERE digest = $1",
        ] {
            sqlx::query(sql)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        Ok(Some(Box::new(SqlBlobClaim { tx })))
    }
}

/// A blob claim holding its transaction open (and with it the blob row's lock).
struct SqlBlobClaim {
    tx: Transaction<'static, Any>,
}

#[async_trait]
impl BlobClaim for SqlBlobClaim {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(db_error)
    }

    async fn abandon(self: Box<Self>) -> Result<()> {
        self.tx.rollback().await.map_err(db_error)
    }
}
