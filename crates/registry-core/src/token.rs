//! Personal access tokens: secrets a user hands to package clients (npm, twine) instead of a
//! password, each with its own grants, stored only as a SHA-256 hash.
//!
//! A token's secret is `rgt_` followed by 64 hexadecimal digits (256 random bits). It is shown
//! once, when created; the store keeps its hash, so a stolen database reveals no usable token.

use std::fmt;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use crate::auth::Grant;
use crate::error::Result;
use crate::values::Timestamp;

/// The prefix of every token secret.
pub const TOKEN_PREFIX: &str = "rgt_";

/// A stored token (never its secret).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its id (to list and revoke it).
    pub id: String,
    /// The user it acts for.
    pub user: String,
    /// A label saying what it is for.
    pub label: String,
    /// The SHA-256 hex of its secret.
    pub secret_hash: String,
    /// What it may do: read (reader), write (developer), delete (maintainer) per pattern.
    pub grants: Vec<Grant>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("label", &self.label)
            .field("grants", &self.grants)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A fresh secret and its hash: `(secret, hash)`.
pub fn new_secret() -> (String, String) {
    let secret = format!(
        "{TOKEN_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// The stored hash of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether text looks like a token secret (so it is looked up rather than tried as a password).
pub fn looks_like_secret(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where tokens are kept.
#[async_trait]
pub trait TokenStore: fmt::Debug + Send + Sync + 'static {
    /// Stores a new token.
    async fn put_token(&self, token: &TokenRecord) -> Result<()>;

    /// The token whose secret hashes to `hash`, if any (expired ones included: the caller
    /// checks [`TokenRecord::expired`]).
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// A user's tokens, oldest first.
    async fn list_tokens(&self, user: &str) -> Result<Vec<TokenRecord>>;

    /// Revokes a token; returns whether it existed.
    async fn delete_token(&self, id: &str) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hashed() {
        let (a, hash) = new_secret();
        let (b, _) = new_secret();
        assert_ne!(a, b);
        assert!(looks_like_secret(&a), "{a}");
        assert_eq!(hash, hash_secret(&a));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a[4..]));
        assert!(!looks_like_secret("rgt_short") && !looks_like_secret("password"));
    }
}
