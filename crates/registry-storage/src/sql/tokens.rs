//! Personal access tokens ([`TokenStore`](registry_core::TokenStore)) in the SQL metadata store.

use async_trait::async_trait;
use registry_core::{Result, Timestamp};
use sqlx::any::AnyRow;

use super::{SqlMetadataStore, corrupt, db_error, get, json};

fn token_row(row: &AnyRow) -> Result<registry_core::TokenRecord> {
    let grants: String = get(row, "grants")?;
    Ok(registry_core::TokenRecord {
        id: get(row, "id")?,
        user: get(row, "user_name")?,
        label: get(row, "label")?,
        secret_hash: get(row, "secret_hash")?,
        grants: serde_json::from_str(&grants).map_err(|_| corrupt("grants", &grants))?,
        created_at: Timestamp(get(row, "created_at")?),
        expires_at: get::<Option<i64>>(row, "expires_at")?.map(Timestamp),
    })
}

const TOKEN_COLUMNS: &str = "id, user_name, label, secret_hash, grants, created_at, expires_at";

#[async_trait]
impl registry_core::TokenStore for SqlMetadataStore {
    async fn put_token(&self, token: &registry_core::TokenRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(token.id.as_str())
        .bind(token.user.as_str())
        .bind(token.label.as_str())
        .bind(token.secret_hash.as_str())
        .bind(json(&token.grants)?)
        .bind(token.created_at.0)
        .bind(token.expires_at.map(|t| t.0))
        .execute(&self.pool)
        .await
        .map_err(db_error)
        .map(drop)
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<registry_core::TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(token_row).transpose()
    }

    async fn list_tokens(&self, user: &str) -> Result<Vec<registry_core::TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_name = $1 ORDER BY created_at, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(token_row).collect()
    }

    async fn delete_token(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }
}
