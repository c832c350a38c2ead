//! Conformance of the [`TokenStore`](registry_core::TokenStore): personal access tokens.

use registry_core::{Role, Timestamp, TokenRecord};

use super::SharedMetadataStore;

/// Access tokens: stored by the hash of their secret, found by it, listed per user, revoked.
pub async fn metadata_tokens(store: SharedMetadataStore) {
    use registry_core::token::{hash_secret, new_secret};
    let token = |user: &str, at: i64| {
        let (secret, hash) = new_secret();
        let record = TokenRecord {
            id: format!("{user}-{at}"),
            user: user.to_owned(),
            label: "npm login".to_owned(),
            secret_hash: hash,
            grants: vec![registry_core::Grant {
                pattern: registry_core::NamePattern::parse("team/*").unwrap(),
                role: Role::Developer,
            }],
            created_at: Timestamp(at),
            expires_at: (at == 2).then_some(Timestamp(10)),
        };
        (secret, record)
    };
    let (first_secret, first) = token("alice", 1);
    let (_, second) = token("alice", 2);
    let (_, other) = token("bob", 3);
    for record in [&second, &first, &other] {
        store.put_token(record).await.unwrap();
    }
    assert_eq!(
        store
            .token_by_hash(&hash_secret(&first_secret))
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.token_by_hash(&hash_secret("rgt_nope")).await.unwrap(),
        None
    );
    let listed = store.list_tokens("alice").await.unwrap();
    assert_eq!(listed, vec![first.clone(), second.clone()]);
    assert!(listed[1].expired(Timestamp(10)) && !listed[1].expired(Timestamp(9)));
    assert!(store.delete_token(&first.id).await.unwrap());
    assert!(!store.delete_token(&first.id).await.unwrap());
    assert_eq!(store.token_by_hash(&first.secret_hash).await.unwrap(), None);
    assert_eq!(store.list_tokens("bob").await.unwrap(), vec![other]);
}
