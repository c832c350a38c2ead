//! Conformance of the [`ReviewQueue`](registry_core::ReviewQueue).

use std::time::Duration;

use registry_core::{Digest, ReviewEvent, ReviewTarget, TagGuard, Timestamp};

use super::{
    SharedMetadataStore, blob_target, far_future, manifest_target, name, new_manifest, tag,
};

/// The review queue: one entry per target, due ordering, postponement and completion.
pub async fn metadata_review_queue(store: SharedMetadataStore) {
    let repo = name("queue");
    let blob = Digest::sha256(b"queued blob");
    assert_eq!(store.review_queue_len().await.unwrap(), 0);
    store.link_blob(&repo, &blob, 11).await.unwrap();
    let manifest = new_manifest(
        &repo,
        "queued",
        std::slice::from_ref(&blob),
        &[],
        None,
        None,
    );
    store
        .put_manifest(&manifest, &[tag("t")], &TagGuard::none())
        .await
        .unwrap();
    store
        .link_blob(&name("queue/other"), &blob, 11)
        .await
        .unwrap();
    assert_eq!(
        store.review_queue_len().await.unwrap(),
        2,
        "one entry per target"
    );

    let due = store.due_reviews(far_future(), 10).await.unwrap();
    let targets: Vec<ReviewTarget> = due.iter().map(|t| t.target.clone()).collect();
    assert!(targets.contains(&blob_target(&blob)));
    assert!(targets.contains(&manifest_target(&repo, &manifest.digest)));
    assert!(
        due.windows(2).all(|w| w[0].due_at <= w[1].due_at),
        "earliest first"
    );
    assert!(
        store
            .due_reviews(Timestamp(0), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is due in the past"
    );
    assert_eq!(store.due_reviews(far_future(), 1).await.unwrap().len(), 1);

    let later = far_future().after(Duration::from_secs(3600));
    assert!(
        store
            .postpone_review(&blob_target(&blob), later)
            .await
            .unwrap()
    );
    let task = store.review(&blob_target(&blob)).await.unwrap().unwrap();
    assert_eq!((task.due_at, task.attempts), (later, 1));
    assert!(
        !store
            .due_reviews(far_future(), 10)
            .await
            .unwrap()
            .iter()
            .any(|t| t.target == blob_target(&blob))
    );

    // A new event never makes an entry due earlier than it was.
    store.link_blob(&repo, &blob, 11).await.unwrap();
    assert_eq!(
        store
            .review(&blob_target(&blob))
            .await
            .unwrap()
            .unwrap()
            .due_at,
        later
    );

    let stale = store.review(&blob_target(&blob)).await.unwrap().unwrap();
    // An event since the collector read the entry keeps it queued.
    store.unlink_blob(&repo, &blob).await.unwrap();
    assert!(
        !store.complete_review(&stale).await.unwrap(),
        "re-queued since it was read"
    );
    let current = store.review(&blob_target(&blob)).await.unwrap().unwrap();
    assert_eq!(current.event, ReviewEvent::BlobUnlinked);
    assert!(store.complete_review(&current).await.unwrap());
    assert!(!store.complete_review(&current).await.unwrap());
    assert!(
        !store
            .postpone_review(&blob_target(&blob), later)
            .await
            .unwrap()
    );
    assert_eq!(store.review_queue_len().await.unwrap(), 1);
}
