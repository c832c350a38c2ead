//! Conformance of [`CollectionMetadata`](registry_core::CollectionMetadata): the collector's
//! verdicts and blob claims.

use std::sync::Arc;
use std::time::Duration;

use registry_core::{Digest, Error, Page, ReviewEvent, Tag, TagGuard};

use super::{SharedMetadataStore, blob_target, manifest_target, name, new_manifest, queued, tag};

/// The collector's decisions: dangling manifests go, tagged, listed and referring ones stay;
/// blob claims exclude referenced blobs, make racing links wait and racing pushes fail, and
/// abandoning restores what a claim removed.
pub async fn metadata_collection(store: SharedMetadataStore) {
    let repo = name("gc/app");
    let layer = Digest::sha256(b"gc layer");
    let spare = Digest::sha256(b"gc spare");
    store.link_blob(&repo, &layer, 8).await.unwrap();
    store.link_blob(&repo, &spare, 8).await.unwrap();
    let image = new_manifest(
        &repo,
        "image",
        std::slice::from_ref(&layer),
        &[],
        None,
        None,
    );
    let child = new_manifest(&repo, "child", &[], &[], None, None);
    let index = new_manifest(
        &repo,
        "index",
        &[],
        std::slice::from_ref(&child.digest),
        None,
        None,
    );
    let sig = new_manifest(
        &repo,
        "sig",
        &[],
        &[],
        Some(&image.digest),
        Some("application/x.sig"),
    );
    store
        .put_manifest(&image, &[tag("v1")], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&child, &[], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&index, &[tag("multi")], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&sig, &[], &TagGuard::none())
        .await
        .unwrap();

    // Enumeration for whole-store sweeps, in digest order, paged.
    let entries = store
        .list_manifests(&repo, &Page::first(100))
        .await
        .unwrap();
    let mut expected: Vec<&Digest> = vec![&image.digest, &child.digest, &index.digest, &sig.digest];
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        entries.iter().map(|e| &e.digest).collect::<Vec<_>>(),
        expected
    );
    let entry = |d: &Digest| entries.iter().find(|e| &e.digest == d).unwrap().clone();
    assert!(entry(&image.digest).tagged && !entry(&child.digest).tagged);
    assert_eq!(entry(&image.digest).blobs, vec![layer.clone()]);
    assert_eq!(entry(&index.digest).children, vec![child.digest.clone()]);
    assert_eq!(entry(&sig.digest).subject.as_ref(), Some(&image.digest));
    assert_eq!(entry(&sig.digest).size, sig.bytes.len() as u64);
    let first = store.list_manifests(&repo, &Page::first(2)).await.unwrap();
    let rest = store
        .list_manifests(&repo, &Page::after(first[1].digest.to_string(), 10))
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 4);
    assert!(
        store
            .list_manifests(&name("no/repo"), &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    let blobs = store.list_blobs(&Page::first(10)).await.unwrap();
    let mut both = vec![layer.clone(), spare.clone()];
    both.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(),
        both
    );
    assert_eq!(
        store
            .list_blobs(&Page::after(both[0].to_string(), 10))
            .await
            .unwrap()
            .len(),
        1
    );

    use registry_core::ManifestVerdict as V;
    let verdict = |digest: Digest| {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        async move { store.collect_manifest(&repo, &digest).await.unwrap() }
    };
    assert_eq!(verdict(image.digest.clone()).await, V::Tagged);
    assert_eq!(verdict(child.digest.clone()).await, V::Listed);
    assert_eq!(verdict(sig.digest.clone()).await, V::Referrer);
    assert_eq!(verdict(Digest::sha256(b"none")).await, V::Missing);
    assert_eq!(
        store
            .collect_manifest(&name("no/repo"), &image.digest)
            .await
            .unwrap(),
        V::Missing
    );

    store
        .delete_tag(&repo, &tag("v1"), &TagGuard::none())
        .await
        .unwrap();
    assert_eq!(verdict(image.digest.clone()).await, V::Deleted);
    assert_eq!(
        queued(&*store, &blob_target(&layer)).await,
        ReviewEvent::ManifestDeleted
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &sig.digest)).await,
        ReviewEvent::SubjectDeleted
    );
    assert_eq!(
        verdict(sig.digest.clone()).await,
        V::Deleted,
        "its subject is gone"
    );
    assert_eq!(verdict(image.digest.clone()).await, V::Missing);

    // Claims: never a blob a manifest references.
    store
        .put_manifest(
            &new_manifest(
                &repo,
                "keeps",
                std::slice::from_ref(&spare),
                &[],
                None,
                None,
            ),
            &[tag("keeps")],
            &TagGuard::none(),
        )
        .await
        .unwrap();
    assert!(
        store.claim_blob(&spare).await.unwrap().is_none(),
        "referenced"
    );
    assert!(
        store
            .claim_blob(&Digest::sha256(b"unknown"))
            .await
            .unwrap()
            .is_none()
    );

    // Abandoning restores the record and the links.
    let claim = store
        .claim_blob(&layer)
        .await
        .unwrap()
        .expect("unreferenced layer is claimable");
    claim.abandon().await.unwrap();
    assert!(store.linked_blob(&repo, &layer).await.unwrap().is_some());

    // While claimed, a push referencing the blob and a new link wait; after the commit the push
    // fails cleanly and the link records the blob anew.
    let claim = store
        .claim_blob(&layer)
        .await
        .unwrap()
        .expect("claimable again");
    let racing_push = {
        let store = Arc::clone(&store);
        let manifest = new_manifest(
            &repo,
            "racing",
            std::slice::from_ref(&layer),
            &[],
            None,
            None,
        );
        tokio::spawn(async move {
            store
                .put_manifest(
                    &manifest,
                    &[Tag::parse("racing").expect("tag")],
                    &TagGuard::none(),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    claim.commit().await.unwrap();
    match racing_push.await.unwrap() {
        Err(Error::ManifestBlobUnknown { digest }) => assert_eq!(digest, layer),
        other => panic!("a push racing a claim must fail cleanly, got {other:?}"),
    }
    assert_eq!(store.blob(&layer).await.unwrap(), None);
    assert_eq!(store.linked_blob(&repo, &layer).await.unwrap(), None);

    store.link_blob(&repo, &layer, 8).await.unwrap();
    let claim = store.claim_blob(&layer).await.unwrap().expect("claimable");
    let racing_link = {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        let layer = layer.clone();
        tokio::spawn(async move { store.link_blob(&repo, &layer, 8).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !racing_link.is_finished(),
        "a link waits while the blob is claimed"
    );
    claim.commit().await.unwrap();
    racing_link.await.unwrap().unwrap();
    assert!(
        store.linked_blob(&repo, &layer).await.unwrap().is_some(),
        "linked anew after the claim"
    );
}
