//! Cleanup policies end to end: a dry run lists, a run deletes exactly that, `latest`,
//! immutable and protected tags stay, and the collector then frees what the deleted tags held.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use registry_core::blob::once_stream;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{
    Actor, BlobStore, CleanupPolicy, Digest, MetadataStore, OciRegistry, Reference, RepositoryName,
    Tag, TagRule,
};
use registry_gc::cleanup::{self, Deletion};
use registry_gc::{Collector, CollectorConfig};
use registry_storage::memory::MemoryBlobStore;
use serde_json::json;

async fn push(registry: &OciRegistry, repo: &RepositoryName, tag: &str) -> Digest {
    let config = Bytes::from_static(b"{}");
    let layer = Bytes::from(format!("layer of {repo}:{tag}"));
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
    let digest = registry
        .put_manifest(
            repo,
            &Reference::Tag(Tag::parse(tag).unwrap()),
            Bytes::from(manifest),
            Some(OCI_MANIFEST),
            &Actor::trusted(),
        )
        .await
        .unwrap()
        .digest;
    // Publish times are in milliseconds: keep each push strictly newer than the last.
    tokio::time::sleep(Duration::from_millis(3)).await;
    digest
}

async fn tags(registry: &OciRegistry, repo: &RepositoryName) -> Vec<String> {
    let (tags, _) = registry.tags(repo, None, None).await.unwrap();
    tags.iter().map(ToString::to_string).collect()
}

async fn scenario(metadata: Arc<dyn MetadataStore>) {
    let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let registry = OciRegistry::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let app = RepositoryName::parse("team/app").unwrap();
    let other = RepositoryName::parse("other/app").unwrap();
    for tag in [
        "latest", "v1", "main", "dev-1", "dev-2", "dev-3", "keep-me", "dev-4", "dev-5",
    ] {
        push(&registry, &app, tag).await;
    }
    for tag in ["dev-1", "dev-2", "dev-3"] {
        push(&registry, &other, tag).await;
    }
    let rules: Vec<TagRule> = serde_json::from_value(json!([
        { "name": "frozen", "repositories": "*", "tags": "v[0-9]+", "kind": "immutable" },
        { "name": "main", "repositories": "team/*", "tags": "main", "kind": "protected",
          "push": "maintainer", "delete": "owner" },
    ]))
    .unwrap();
    for rule in &rules {
        registry.put_tag_rule(rule).await.unwrap();
    }
    // Every tag but the two newest dev tags is a candidate, and keep-me is spared by its regex.
    let policy: CleanupPolicy = serde_json::from_value(json!({
        "name": "dev-builds", "repositories": "team/*", "keep_n": 2,
        "name_regex": "dev-.*|keep-me|latest|v1|main", "name_regex_keep": "keep-.*",
    }))
    .unwrap();
    registry.put_cleanup_policy(&policy).await.unwrap();
    let before = tags(&registry, &app).await;

    let mut listed: Vec<Deletion> = Vec::new();
    let report = cleanup::run(&registry, true, |d| listed.push(d.clone()))
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|d| d.tag.as_str()).collect();
    assert_eq!(names, ["dev-3", "dev-2", "dev-1"], "newest first");
    assert!(
        listed
            .iter()
            .all(|d| d.repository == app && d.policy == "dev-builds")
    );
    assert_eq!(
        (report.repositories, report.tags_seen, report.deleted),
        (1, 9, 3)
    );
    assert_eq!(
        tags(&registry, &app).await,
        before,
        "a dry run deletes nothing"
    );

    let mut deleted = Vec::new();
    let report = cleanup::run(&registry, false, |d| deleted.push(d.clone()))
        .await
        .unwrap();
    assert_eq!(deleted, listed, "the run deletes what the dry run listed");
    assert_eq!(report.deleted, 3);
    assert_eq!(
        tags(&registry, &app).await,
        ["dev-4", "dev-5", "keep-me", "latest", "main", "v1"]
    );
    assert_eq!(
        tags(&registry, &other).await,
        ["dev-1", "dev-2", "dev-3"],
        "a repository no policy covers is left alone"
    );

    // The manifests the deleted tags held are now the collector's: they and their layers go.
    let collector = Collector::new(Arc::clone(&blobs), metadata, CollectorConfig::default());
    let gc = collector.run_once().await;
    assert_eq!(gc.manifests_deleted, 3);
    assert_eq!(gc.blobs_deleted, 3, "each deleted tag had its own layer");
    for d in &deleted {
        assert!(
            registry
                .manifest(&app, &Reference::Digest(d.digest.clone()))
                .await
                .is_err()
        );
    }

    // Age: only tags published longer ago than older_than go.
    let aged: CleanupPolicy = serde_json::from_value(json!({
        "name": "aged", "repositories": "other/*", "older_than": "1s",
    }))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push(&registry, &other, "fresh").await;
    let report = cleanup::run_policies(&registry, &[aged], false, |_| {})
        .await
        .unwrap();
    assert_eq!(report.deleted, 3);
    assert_eq!(tags(&registry, &other).await, ["fresh"]);
}

macro_rules! cleanup_on {
    ($backend:ident, $open:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $backend() {
            let (store, _cleanup) = $open().await;
            scenario(Arc::new(store.with_review_delay(Duration::ZERO))).await;
        }
    };
}

registry_storage::for_each_metadata_backend!(cleanup_on);
