//! Personal access tokens ([`TokenStore`](registry_core::TokenStore)) in the memory metadata
//! store.

use async_trait::async_trait;
use registry_core::Result;

use super::{MemoryMetadataStore, lock};

#[async_trait]
impl registry_core::TokenStore for MemoryMetadataStore {
    async fn put_token(&self, token: &registry_core::TokenRecord) -> Result<()> {
        lock(&self.state)
            .tokens
            .insert(token.id.clone(), token.clone());
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<registry_core::TokenRecord>> {
        Ok(lock(&self.state)
            .tokens
            .values()
            .find(|t| t.secret_hash == hash)
            .cloned())
    }

    async fn list_tokens(&self, user: &str) -> Result<Vec<registry_core::TokenRecord>> {
        let mut tokens: Vec<_> = lock(&self.state)
            .tokens
            .values()
            .filter(|t| t.user == user)
            .cloned()
            .collect();
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(tokens)
    }

    async fn delete_token(&self, id: &str) -> Result<bool> {
        Ok(lock(&self.state).tokens.remove(id).is_some())
    }
}
