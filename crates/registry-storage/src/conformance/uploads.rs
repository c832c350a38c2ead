//! Conformance of [`UploadMetadata`](registry_core::UploadMetadata) (upload session records)
//! and [`UploadSessions`](registry_core::UploadSessions) (blob stores' sessions).

use registry_core::{
    Algorithm, DigestHasher, Timestamp, UploadId, UploadRecord, UploadSegment, UploadSession,
};

use super::{SharedMetadataStore, far_future, name};

/// Upload session records: create, duplicate, read, list by age, delete.
pub async fn metadata_uploads(store: SharedMetadataStore) {
    let repo = name("uploads");
    let old = UploadRecord {
        id: UploadId::generate(),
        repository: repo.clone(),
        started_at: Timestamp(1_000),
    };
    let new = UploadRecord {
        id: UploadId::generate(),
        repository: repo.clone(),
        started_at: Timestamp::now(),
    };
    store.create_upload(&old).await.unwrap();
    store.create_upload(&new).await.unwrap();
    assert!(
        store.create_upload(&old).await.is_err(),
        "an id is created once"
    );
    assert_eq!(store.upload(&old.id).await.unwrap(), Some(old.clone()));
    assert_eq!(store.upload(&UploadId::generate()).await.unwrap(), None);
    assert_eq!(
        store
            .uploads_started_before(Timestamp(2_000), 10)
            .await
            .unwrap(),
        vec![old.clone()]
    );
    assert_eq!(
        store
            .uploads_started_before(far_future(), 10)
            .await
            .unwrap(),
        vec![old.clone(), new.clone()]
    );
    assert_eq!(
        store.uploads_started_before(far_future(), 1).await.unwrap(),
        vec![old.clone()]
    );
    assert!(store.delete_upload(&old.id).await.unwrap());
    assert!(!store.delete_upload(&old.id).await.unwrap());
    assert_eq!(store.upload(&old.id).await.unwrap(), None);
}

/// Blob stores' upload sessions: create, duplicate, read back exactly, compare-and-set on the
/// size (a stale size loses, racing advances: one wins), delete.
pub async fn metadata_upload_sessions(store: SharedMetadataStore) {
    let id = UploadId::generate();
    let mut hasher = DigestHasher::new(Algorithm::Sha512);
    let empty = UploadSession {
        size: 0,
        hasher: hasher.state(),
        segments: Vec::new(),
    };
    assert_eq!(store.upload_session(&id).await.unwrap(), None);
    store.create_upload_session(&id, &empty).await.unwrap();
    assert!(store.create_upload_session(&id, &empty).await.is_err());
    assert_eq!(
        store.upload_session(&id).await.unwrap(),
        Some(empty.clone())
    );

    hasher.update(b"0123456789");
    let one = UploadSession {
        size: 10,
        hasher: hasher.state(),
        segments: vec![UploadSegment {
            key: "uploads/x/00000000000000000000-a".to_owned(),
            size: 10,
        }],
    };
    assert!(store.advance_upload_session(&id, 0, &one).await.unwrap());
    assert!(
        !store.advance_upload_session(&id, 0, &one).await.unwrap(),
        "a stale size must not replace the session"
    );
    assert_eq!(store.upload_session(&id).await.unwrap(), Some(one.clone()));

    // Eight advances from the same size, at once: exactly one is recorded.
    let advances = (0..8u64).map(|n| {
        let store = std::sync::Arc::clone(&store);
        let id = id.clone();
        let mut next = one.clone();
        next.size = 10 + n + 1;
        next.segments.push(UploadSegment {
            key: format!("uploads/x/{n}"),
            size: n + 1,
        });
        async move {
            let won = store.advance_upload_session(&id, 10, &next).await.unwrap();
            (won, next)
        }
    });
    let results = futures::future::join_all(advances).await;
    let winners: Vec<_> = results.iter().filter(|(won, _)| *won).collect();
    assert_eq!(winners.len(), 1, "exactly one racing advance wins");
    assert_eq!(
        store.upload_session(&id).await.unwrap().as_ref(),
        Some(&winners[0].1)
    );

    assert!(store.delete_upload_session(&id).await.unwrap());
    assert!(!store.delete_upload_session(&id).await.unwrap());
    assert!(!store.advance_upload_session(&id, 0, &empty).await.unwrap());
    assert_eq!(store.upload_session(&id).await.unwrap(), None);
}
