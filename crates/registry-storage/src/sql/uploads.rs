//! Upload session records ([`UploadMetadata`]) and blob stores' upload sessions
//! ([`UploadSessions`]) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::{
    Algorithm, Error, HasherState, RepositoryName, Result, Timestamp, UploadId, UploadMetadata,
    UploadRecord, UploadSegment, UploadSession, UploadSessions,
};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use std::str::FromStr;

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

/// How an [`UploadSession`] is kept in `upload_sessions.state`.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    algorithm: String,
    /// The hasher's state, in hex.
    hasher: String,
    /// Each segment's key and size.
    segments: Vec<(String, u64)>,
}

fn encode_session(session: &UploadSession) -> Result<String> {
    let stored = StoredSession {
        algorithm: session.hasher.algorithm.as_str().to_owned(),
        hasher: hex::encode(&session.hasher.bytes),
        segments: session
            .segments
            .iter()
            .map(|s| (s.key.clone(), s.size))
            .collect(),
    };
    serde_json::to_string(&stored).map_err(Error::backend)
}

fn decode_session(size: i64, state: &str) -> Result<UploadSession> {
    let stored: StoredSession =
        serde_json::from_str(state).map_err(|_| corrupt("upload session", state))?;
    let algorithm = Algorithm::from_str(&stored.algorithm)
        .map_err(|_| corrupt("upload session algorithm", &stored.algorithm))?;
    let bytes = hex::decode(&stored.hasher).map_err(|_| corrupt("upload session hasher", state))?;
    Ok(UploadSession {
        size: u64::try_from(size).map_err(|_| corrupt("upload session size", &size.to_string()))?,
        hasher: HasherState { algorithm, bytes },
        segments: stored
            .segments
            .into_iter()
            .map(|(key, size)| UploadSegment { key, size })
            .collect(),
    })
}

#[async_trait]
impl UploadSessions for SqlMetadataStore {
    async fn create_upload_session(&self, id: &UploadId, session: &UploadSession) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO upload_sessions (id, size, state) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(to_i64(session.size)?)
        .bind(encode_session(session)?)
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::BlobUploadInvalid {
                reason: format!("upload session {id} already exists"),
            });
        }
        Ok(())
    }

    async fn upload_session(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let row = sqlx::query("SELECT size, state FROM upload_sessions WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(|row| {
            let state: String = get(&row, "state")?;
            decode_session(get(&row, "size")?, &state)
        })
        .transpose()
    }

    async fn advance_upload_session(
        &self,
        id: &UploadId,
        expected_size: u64,
        session: &UploadSession,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE upload_sessions SET size = $1, state = $2 WHERE id = $3 AND size = $4",
        )
        .bind(to_i64(session.size)?)
        .bind(encode_session(session)?)
        .bind(id.as_str())
        .bind(to_i64(expected_size)?)
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0)
    }

    async fn delete_upload_session(&self, id: &UploadId) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected()
            > 0)
    }
}
