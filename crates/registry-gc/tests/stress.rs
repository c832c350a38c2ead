//! GC versus pushes, with review delay 0: concurrent tasks push images that share layers,
//! retag, delete tags and manifests and mount blobs while two collectors run. Afterwards every
//! tagged manifest pulls completely with every blob readable and its digest verified; after
//! quiescence no unreferenced blob remains.
//!
//! `REGISTRY_STRESS_ROUNDS` (default 12) sets each pusher's number of operations.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::StreamExt;
use registry_core::Actor;
use registry_core::blob::once_stream;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{
    BlobStore, Digest, Error, Manifest, ManifestLimits, MetadataStore, OciRegistry, Page,
    Reference, RepositoryName, Tag,
};
use registry_storage::fs::FsBlobStore;
use serde_json::json;
use support::{Collectors, Rng};

const PUSHERS: u64 = 6;
const REPOSITORIES: u64 = 3;
const SHARED_LAYERS: u64 = 5;

/// Lost races after which a push holds the collectors off.
const FAIR_ATTEMPTS: u32 = 20;

fn repository(n: u64) -> RepositoryName {
    RepositoryName::parse(&format!("stress/r{n}")).unwrap()
}

fn layer(n: u64) -> Bytes {
    Bytes::from(format!("shared layer {n} ").repeat(200))
}

#[derive(Default)]
struct Counts {
    pushes: AtomicU64,
    push_retries: AtomicU64,
    retags: AtomicU64,
    tag_deletes: AtomicU64,
    manifest_deletes: AtomicU64,
    mounts: AtomicU64,
}

/// Pushes an image (config + two shared layers + manifest under `tag`), retrying from the blobs
/// when a collection raced it. After [`FAIR_ATTEMPTS`] lost races the push holds the collectors'
/// gate for its attempts: with review delay 0, a loaded machine could otherwise starve it for
/// good (the races this test checks are the first ones). Returns the manifest bytes.
async fn push_image(
    registry: &OciRegistry,
    repo: &RepositoryName,
    tag: &Tag,
    seed: u64,
    rng: &mut Rng,
    counts: &Counts,
    gate: &tokio::sync::RwLock<()>,
) -> Bytes {
    let config = Bytes::from(format!("{{\"seed\":{seed}}}"));
    let layers = [
        layer(rng.next(SHARED_LAYERS)),
        layer(rng.next(SHARED_LAYERS)),
    ];
    let manifest = Bytes::from(
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256(&config), "size": config.len() },
            "layers": layers.iter().map(|l| json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256(l), "size": l.len() })).collect::<Vec<_>>(),
        })
        .to_string(),
    );
    for attempt in 0..200 {
        if attempt > 0 {
            counts.push_retries.fetch_add(1, Ordering::Relaxed);
        }
        let _starved = if attempt >= FAIR_ATTEMPTS {
            Some(gate.write().await)
        } else {
            None
        };
        let mut blobs_ok = true;
        for blob in std::iter::once(&config).chain(&layers) {
            match registry
                .put_blob(repo, &Digest::sha256(blob), once_stream(blob.clone()))
                .await
            {
                Ok(_) => {}
                Err(Error::BlobUploadInvalid { .. }) => blobs_ok = false,
                Err(e) => panic!("blob push failed unexpectedly: {e}"),
            }
        }
        if !blobs_ok {
            continue;
        }
        match registry
            .put_manifest(
                repo,
                &Reference::Tag(tag.clone()),
                manifest.clone(),
                Some(OCI_MANIFEST),
                &Actor::trusted(),
            )
            .await
        {
            Ok(_) => {
                counts.pushes.fetch_add(1, Ordering::Relaxed);
                return manifest;
            }
            // A collector took a blob between its upload and the manifest: push again.
            Err(Error::ManifestBlobUnknown { .. }) => continue,
            Err(e) => panic!("manifest push failed unexpectedly: {e}"),
        }
    }
    panic!("a push lost 200 races in a row");
}

async fn pusher(
    registry: OciRegistry,
    id: u64,
    rounds: u64,
    counts: Arc<Counts>,
    gate: Arc<tokio::sync::RwLock<()>>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut pushed: Vec<(RepositoryName, Tag, Bytes)> = Vec::new();
    for round in 0..rounds {
        let repo = repository(rng.next(REPOSITORIES));
        match rng.next(10) {
            0..=4 => {
                let tag = Tag::parse(&format!("p{id}-{}", rng.next(6))).unwrap();
                let manifest = push_image(
                    &registry,
                    &repo,
                    &tag,
                    id * 1000 + round,
                    &mut rng,
                    &counts,
                    &gate,
                )
                .await;
                pushed.push((repo, tag, manifest));
            }
            5 if !pushed.is_empty() => {
                // Retag an earlier image under a new tag (pushing the same bytes).
                let (repo, _, manifest) = pushed[rng.next(pushed.len() as u64) as usize].clone();
                let tag = Tag::parse(&format!("re{id}-{}", rng.next(6))).unwrap();
                match registry
                    .put_manifest(
                        &repo,
                        &Reference::Tag(tag),
                        manifest,
                        Some(OCI_MANIFEST),
                        &Actor::trusted(),
                    )
                    .await
                {
                    Ok(_) => counts.retags.fetch_add(1, Ordering::Relaxed),
                    Err(Error::ManifestBlobUnknown { .. }) => 0, // it was collected meanwhile
                    Err(e) => panic!("retag failed unexpectedly: {e}"),
                };
            }
            6 | 7 if !pushed.is_empty() => {
                let (repo, tag, _) = pushed[rng.next(pushed.len() as u64) as usize].clone();
                match registry
                    .delete_manifest(&repo, &Reference::Tag(tag), &Actor::trusted())
                    .await
                {
                    Ok(()) => counts.tag_deletes.fetch_add(1, Ordering::Relaxed),
                    Err(Error::ManifestUnknown { .. }) => 0,
                    Err(e) => panic!("tag delete failed unexpectedly: {e}"),
                };
            }
            8 if !pushed.is_empty() => {
                let (repo, _, manifest) = pushed[rng.next(pushed.len() as u64) as usize].clone();
                let digest = Digest::sha256(&manifest);
                match registry
                    .delete_manifest(&repo, &Reference::Digest(digest), &Actor::trusted())
                    .await
                {
                    Ok(()) => counts.manifest_deletes.fetch_add(1, Ordering::Relaxed),
                    Err(Error::ManifestUnknown { .. } | Error::ManifestReferenced { .. }) => 0,
                    Err(e) => panic!("manifest delete failed unexpectedly: {e}"),
                };
            }
            _ => {
                let from = repository(rng.next(REPOSITORIES));
                let digest = Digest::sha256(&layer(rng.next(SHARED_LAYERS)));
                if registry
                    .mount_blob(&repo, &digest, Some(&from))
                    .await
                    .expect("mount")
                    .is_some()
                {
                    counts.mounts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Every tagged manifest, with every blob readable and its digest verified; returns the blobs
/// they reference.
async fn verify_tagged(registry: &OciRegistry) -> BTreeSet<Digest> {
    let mut referenced = BTreeSet::new();
    for n in 0..REPOSITORIES {
        let repo = repository(n);
        let tags = match registry
            .metadata()
            .list_tags(&repo, &Page::first(10_000))
            .await
        {
            Ok(tags) => tags,
            Err(Error::NameUnknown { .. }) => continue,
            Err(e) => panic!("{e}"),
        };
        for tag in tags {
            let record = registry
                .manifest(&repo, &Reference::Tag(tag.clone()))
                .await
                .expect("tagged manifest");
            let manifest = Manifest::parse(
                record.bytes,
                Some(&record.media_type),
                &ManifestLimits::default(),
            )
            .unwrap();
            for digest in manifest.blob_digests() {
                let mut read = registry
                    .read_blob(&repo, &digest, None)
                    .await
                    .unwrap_or_else(|e| panic!("{repo}:{tag} needs {digest}: {e}"));
                let mut hasher = registry_core::DigestHasher::new(digest.algorithm());
                while let Some(chunk) = read.stream.next().await {
                    hasher.update(&chunk.unwrap());
                }
                assert_eq!(hasher.finish(), digest, "{repo}:{tag} blob intact");
                referenced.insert(digest);
            }
        }
    }
    referenced
}

async fn stress(metadata: Arc<dyn MetadataStore>) {
    let rounds = support::rounds();
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
    let registry = OciRegistry::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let collector = support::collector(Arc::clone(&blobs), Arc::clone(&metadata));
    let counts = Arc::new(Counts::default());
    let collectors = Collectors::start(&collector, 2);
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|id| {
            tokio::spawn(pusher(
                registry.clone(),
                id,
                rounds,
                Arc::clone(&counts),
                collectors.gate(),
            ))
        })
        .collect();
    for task in pushers {
        task.await.expect("pusher");
    }
    let totals = collectors.stop().await;

    // Every tagged manifest pulls completely.
    verify_tagged(&registry).await;

    // Quiescence: collect until nothing is due.
    assert_eq!(
        support::quiesce(&collector).await,
        0,
        "no review fails once pushes stop"
    );
    let referenced = verify_tagged(&registry).await;
    let stored = support::assert_only_referenced(&*blobs, &referenced).await;
    println!(
        "pushes {} (retried {}), retags {}, tag deletes {}, manifest deletes {}, mounts {}; \
         during the run GC deleted {} manifests and {} blobs ({} postponed); {} blobs remain, all referenced",
        counts.pushes.load(Ordering::Relaxed),
        counts.push_retries.load(Ordering::Relaxed),
        counts.retags.load(Ordering::Relaxed),
        counts.tag_deletes.load(Ordering::Relaxed),
        counts.manifest_deletes.load(Ordering::Relaxed),
        counts.mounts.load(Ordering::Relaxed),
        totals.manifests_deleted,
        totals.blobs_deleted,
        totals.postponed,
        stored,
    );
}

macro_rules! stress_on {
    ($backend:ident, $open:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $backend() {
            let (store, _cleanup) = $open().await;
            stress(Arc::new(store.with_review_delay(Duration::ZERO))).await;
        }
    };
}

registry_storage::for_each_metadata_backend!(stress_on);
