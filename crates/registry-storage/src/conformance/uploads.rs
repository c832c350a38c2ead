//! Conformance of [`UploadMetadata`](registry_core::UploadMetadata): upload session records.

use registry_core::{Timestamp, UploadId, UploadRecord};

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
