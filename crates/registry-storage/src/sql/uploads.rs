//! Upload session records ([`UploadMetadata`]) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::{
    Error, RepositoryName, Result, Timestamp, UploadId, UploadMetadata, UploadRecord,
};
use sqlx::any::AnyRow;

use super::{SqlMetadataStore, corrupt, db_error, get, to_i64};

fn upload_record(row: &AnyRow) -> Result<UploadRecord> {
    let id: String = get(row, "id")?;
    let repository: String = get(row, "repository")?;
    Ok(UploadRecord {
        id: UploadId::parse(&id).map_err(|_| corrupt("upload id", &id))?,
        repository: RepositoryName::parse(&repository)
            .map_err(|_| corrupt("repository name", &repository))?,
        started_at: Timestamp(get(row, "started_at")?),
    })
}

#[async_trait]
impl UploadMetadata for SqlMetadataStore {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()> {
        let inserted = sqlx::query("INSERT INTO uploads (id, repository, started_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(upload.id.as_str())
            .bind(upload.repository.as_str())
            .bind(upload.started_at.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected();
        if inserted == 0 {
            return Err(Error::BlobUploadInvalid {
                reason: format!("upload {} already exists", upload.id),
            });
        }
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        sqlx::query("SELECT id, repository, started_at FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(upload_record)
            .transpose()
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected()
            > 0)
    }

    async fn uploads_started_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query("SELECT id, repository, started_at FROM uploads WHERE started_at < $1 ORDER BY started_at, id LIMIT $2")
            .bind(before.0)
            .bind(to_i64(limit as u64)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(upload_record).collect()
    }
}
