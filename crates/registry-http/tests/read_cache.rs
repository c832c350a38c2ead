//! The OCI service's read cache with two instances over one database: a change is seen at once
//! by the instance that made it, and by the other once its entries expire (the documented
//! bound, the cache's time to live); in-process writers that go around the service (cleanup)
//! make it forget.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use registry_core::blob::once_stream;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{
    Actor, BlobStore, CacheSettings, Digest, OciRegistry, Reference, RepositoryName, Tag, TagGuard,
};
use registry_storage::memory::MemoryBlobStore;

const TTL: Duration = Duration::from_millis(300);

/// Pushes a one-layer image whose layer holds `text`, tagged `tag`; answers its digest.
async fn push(
    registry: &OciRegistry,
    repository: &RepositoryName,
    tag: &str,
    text: &str,
) -> Digest {
    let mut digests = Vec::new();
    for data in ["{}", text] {
        let digest = Digest::sha256(data.as_bytes());
        registry
            .put_blob(
                repository,
                &digest,
                once_stream(Bytes::from(data.to_owned())),
            )
            .await
            .unwrap();
        digests.push((digest, data.len()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0].0.to_string(), "size": digests[0].1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1].0.to_string(), "size": digests[1].1}],
    });
    registry
        .put_manifest(
            repository,
            &Reference::Tag(Tag::parse(tag).unwrap()),
            Bytes::from(manifest.to_string()),
            Some(OCI_MANIFEST),
            &Actor::trusted(),
        )
        .await
        .unwrap()
        .digest
}

async fn tagged(registry: &OciRegistry, repository: &RepositoryName, tag: &str) -> Option<Digest> {
    registry
        .manifest(repository, &Reference::Tag(Tag::parse(tag).unwrap()))
        .await
        .ok()
        .map(|m| m.digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_seen_at_once_here_and_within_the_time_to_live_elsewhere() {
    let (store, _cleanup) = registry_storage::testing::sqlite().await;
    let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let settings = CacheSettings {
        ttl: TTL,
        ..CacheSettings::default()
    };
    let one = OciRegistry::new(Arc::clone(&blobs), Arc::clone(&store)).with_cache(settings);
    let two = OciRegistry::new(blobs, Arc::clone(&store)).with_cache(settings);
    let repository = RepositoryName::parse("cached/app").unwrap();

    let first = push(&one, &repository, "v1", "first").await;
    assert_eq!(tagged(&two, &repository, "v1").await, Some(first.clone()));
    assert_eq!(tagged(&one, &repository, "v1").await, Some(first.clone()));

    // Moved by instance one: seen there at once.
    let second = push(&one, &repository, "v1", "second").await;
    assert_eq!(tagged(&one, &repository, "v1").await, Some(second.clone()));
    // Instance two may still answer what it read, but not past the time to live.
    let seen = tagged(&two, &repository, "v1").await;
    assert!(seen == Some(first.clone()) || seen == Some(second.clone()));
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    assert_eq!(tagged(&two, &repository, "v1").await, Some(second.clone()));

    // Deleted by instance two: gone there at once, and on instance one within the bound.
    two.delete_manifest(
        &repository,
        &Reference::Tag(Tag::parse("v1").unwrap()),
        &Actor::trusted(),
    )
    .await
    .unwrap();
    assert_eq!(tagged(&two, &repository, "v1").await, None);
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    assert_eq!(tagged(&one, &repository, "v1").await, None);

    // A tag that was never read is found at once everywhere: misses are not remembered.
    let third = push(&one, &repository, "v2", "third").await;
    assert_eq!(tagged(&two, &repository, "v2").await, Some(third));
}

#[tokio::test]
async fn writers_around_the_service_are_seen_once_it_forgets() {
    let (store, _cleanup) = registry_storage::testing::sqlite().await;
    let registry = OciRegistry::new(Arc::new(MemoryBlobStore::new()), Arc::clone(&store))
        .with_cache(CacheSettings {
            ttl: Duration::from_secs(3600),
            ..CacheSettings::default()
        });
    let repository = RepositoryName::parse("cached/cli").unwrap();
    let digest = push(&registry, &repository, "v1", "layer").await;
    assert_eq!(tagged(&registry, &repository, "v1").await, Some(digest));
    let guard = TagGuard::new(&repository, &[], None);
    store
        .delete_tag(&repository, &Tag::parse("v1").unwrap(), &guard)
        .await
        .unwrap();
    assert!(
        tagged(&registry, &repository, "v1").await.is_some(),
        "remembered until the time to live or until told"
    );
    registry.forget(&repository);
    assert_eq!(tagged(&registry, &repository, "v1").await, None);

    // Without a time to live nothing is remembered.
    let uncached = registry.clone().with_cache(CacheSettings {
        ttl: Duration::ZERO,
        ..CacheSettings::default()
    });
    let digest = push(&uncached, &repository, "v2", "other").await;
    assert_eq!(tagged(&uncached, &repository, "v2").await, Some(digest));
    store
        .delete_tag(&repository, &Tag::parse("v2").unwrap(), &guard)
        .await
        .unwrap();
    assert_eq!(tagged(&uncached, &repository, "v2").await, None);
}
