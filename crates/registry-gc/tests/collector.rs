//! The collector on its own: what it deletes, what it keeps, abandoned uploads, and a store
//! whose blob file went missing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use registry_core::Actor;
use registry_core::blob::once_stream;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{
    BlobStore, Digest, MetadataStore, OciRegistry, Reference, RepositoryName, Tag,
};
use registry_gc::{Collector, CollectorConfig};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::json;

fn setup() -> (OciRegistry, Collector, Arc<dyn BlobStore>) {
    let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> =
        Arc::new(MemoryMetadataStore::new().with_review_delay(Duration::ZERO));
    let collector = Collector::new(
        Arc::clone(&blobs),
        Arc::clone(&metadata),
        CollectorConfig::default(),
    );
    (
        OciRegistry::new(Arc::clone(&blobs), metadata),
        collector,
        blobs,
    )
}

async fn push(registry: &OciRegistry, repo: &RepositoryName, tag: &str, layer: &[u8]) -> Digest {
    let config = Bytes::from_static(b"{}");
    let layer = Bytes::copy_from_slice(layer);
    for blob in [&config, &layer] {
        registry
            .put_blob(repo, &Digest::sha256(blob), once_stream(blob.clone()))
            .await
            .unwrap();
    }
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256(&config), "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256(&layer), "size": layer.len() }],
    })
    .to_string();
    let reference = Reference::Tag(Tag::parse(tag).unwrap());
    registry
        .put_manifest(
            repo,
            &reference,
            Bytes::from(manifest),
            Some(OCI_MANIFEST),
            &Actor::trusted(),
        )
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn collects_what_an_untag_orphans_and_keeps_the_rest() {
    let (registry, collector, blobs) = setup();
    let repo = RepositoryName::parse("gc/app").unwrap();
    push(&registry, &repo, "keep", b"kept layer").await;
    let dropped = push(&registry, &repo, "drop", b"dropped layer").await;
    let report = collector.run_once().await;
    assert_eq!(
        (report.manifests_deleted, report.blobs_deleted),
        (0, 0),
        "everything is tagged"
    );

    registry
        .delete_manifest(
            &repo,
            &Reference::Tag(Tag::parse("drop").unwrap()),
            &Actor::trusted(),
        )
        .await
        .unwrap();
    let report = collector.run_once().await;
    assert_eq!(report.manifests_deleted, 1);
    assert_eq!(
        report.blobs_deleted, 1,
        "only the layer no other manifest uses"
    );
    assert_eq!(report.bytes_freed, b"dropped layer".len() as u64);
    assert!(
        registry
            .manifest(&repo, &Reference::Digest(dropped))
            .await
            .is_err()
    );
    assert_eq!(
        blobs.stat(&Digest::sha256(b"dropped layer")).await.unwrap(),
        None
    );
    assert!(
        blobs
            .stat(&Digest::sha256(b"kept layer"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        blobs.stat(&Digest::sha256(b"{}")).await.unwrap().is_some(),
        "shared config kept"
    );
    assert_eq!(registry.metadata().review_queue_len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_missing_blob_file_is_reported_and_collection_carries_on() {
    let (registry, collector, blobs) = setup();
    let repo = RepositoryName::parse("gc/broken").unwrap();
    push(&registry, &repo, "v1", b"lost layer").await;
    push(&registry, &repo, "v2", b"other layer").await;
    blobs.delete(&Digest::sha256(b"lost layer")).await.unwrap(); // the file vanished
    for tag in ["v1", "v2"] {
        registry
            .delete_manifest(
                &repo,
                &Reference::Tag(Tag::parse(tag).unwrap()),
                &Actor::trusted(),
            )
            .await
            .unwrap();
    }
    let report = collector.run_once().await;
    assert_eq!(report.blobs_missing, 1);
    assert_eq!(report.blobs_deleted, 3, "the config, both layers' records");
    assert_eq!(report.postponed, 0);
    assert_eq!(
        registry
            .metadata()
            .blob(&Digest::sha256(b"lost layer"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn abandoned_uploads_are_purged() {
    let (registry, collector, blobs) = setup();
    let repo = RepositoryName::parse("gc/uploads").unwrap();
    let old = registry.start_upload(&repo).await.unwrap();
    registry
        .append_upload(
            &repo,
            &old,
            None,
            once_stream(Bytes::from_static(b"partial")),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let young = registry.start_upload(&repo).await.unwrap();
    assert_eq!(collector.purge_uploads(Duration::from_millis(10)).await, 1);
    assert!(registry.upload_status(&repo, &old).await.is_err());
    assert!(
        blobs.upload_status(&old).await.is_err(),
        "its bytes are gone too"
    );
    assert_eq!(
        registry.upload_status(&repo, &young).await.unwrap(),
        0,
        "a young upload stays"
    );
}
