//! The review queue ([`ReviewQueue`]) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::{
    RepositoryName, Result, ReviewEvent, ReviewQueue, ReviewTarget, ReviewTask, Timestamp,
};
use sqlx::any::AnyRow;

use super::{SqlMetadataStore, corrupt, db_error, digest_column, get, target_key, to_i64};

fn review_task(row: &AnyRow) -> Result<ReviewTask> {
    let kind: String = get(row, "kind")?;
    let digest = digest_column(row, "digest")?;
    let target = match kind.as_str() {
        "blob" => ReviewTarget::Blob { digest },
        "manifest" => {
            let repository: String = get(row, "repository")?;
            ReviewTarget::Manifest {
                repository: RepositoryName::parse(&repository)
                    .map_err(|_| corrupt("repository name", &repository))?,
                digest,
            }
        }
        other => return Err(corrupt("review kind", other)),
    };
    let event: String = get(row, "event")?;
    Ok(ReviewTask {
        target,
        event: ReviewEvent::from_name(&event).ok_or_else(|| corrupt("review event", &event))?,
        due_at: Timestamp(get(row, "due_at")?),
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
    })
}

#[async_trait]
impl ReviewQueue for SqlMetadataStore {
    async fn due_reviews(&self, now: Timestamp, limit: usize) -> Result<Vec<ReviewTask>> {
        let rows = sqlx::query("SELECT kind, repository, digest, event, due_at, attempts FROM review_queue WHERE due_at <= $1 ORDER BY due_at, kind, repository, digest LIMIT $2")
            .bind(now.0)
            .bind(to_i64(limit as u64)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(review_task).collect()
    }

    async fn review(&self, target: &ReviewTarget) -> Result<Option<ReviewTask>> {
        let (kind, repository, digest) = target_key(target);
        sqlx::query("SELECT kind, repository, digest, event, due_at, attempts FROM review_queue WHERE kind = $1 AND repository = $2 AND digest = $3")
            .bind(kind)
            .bind(repository)
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(review_task)
            .transpose()
    }

    async fn postpone_review(&self, target: &ReviewTarget, until: Timestamp) -> Result<bool> {
        let (kind, repository, digest) = target_key(target);
        Ok(sqlx::query("UPDATE review_queue SET due_at = $4, attempts = attempts + 1 WHERE kind = $1 AND repository = $2 AND digest = $3")
            .bind(kind)
            .bind(repository)
            .bind(digest.as_str())
            .bind(until.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected()
            > 0)
    }

    async fn complete_review(&self, task: &ReviewTask) -> Result<bool> {
        let (kind, repository, digest) = target_key(&task.target);
        Ok(sqlx::query(
            "DELETE FROM review_queue WHERE kind = $1 AND repository = $2 AND digest = $3 \
             AND event = $4 AND due_at = $5",
        )
        .bind(kind)
        .bind(repository)
        .bind(digest.as_str())
        .bind(task.event.as_str())
        .bind(task.due_at.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0)
    }

    async fn review_queue_len(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM review_queue")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(get::<i64>(&row, "n")?).unwrap_or(0))
    }
}
