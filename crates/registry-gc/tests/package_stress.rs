//! GC versus package publishes, with review delay 0: concurrent tasks publish Generic files whose
//! bytes are shared between packages and versions (and OCI images share the same blob store),
//! replace files, delete files and versions, while two collectors run. Afterwards every
//! published file reads back with its digest verified, and after quiescence no blob is left
//! that no package file (or sidecar) references.
//!
//! `REGISTRY_STRESS_ROUNDS` (default 12) sets each publisher's number of operations.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use registry_core::{
    BlobStore, Digest, Error, FormatRules, MetadataStore, NewPackageFile, Packages, Page, Release,
    RepositorySettings,
};
use registry_formats::generic::Generic;
use registry_storage::fs::FsBlobStore;
use support::{Collectors, Rng};

const PUBLISHERS: u64 = 6;
const SHARED_FILES: u64 = 5;

fn content(n: u64) -> Bytes {
    Bytes::from(format!("shared package file {n} ").repeat(300))
}

#[derive(Default)]
struct Counts {
    publishes: AtomicU64,
    retries: AtomicU64,
    file_deletes: AtomicU64,
    version_deletes: AtomicU64,
}

/// Stores and publishes one file, retrying when a collection took its freshly recorded blob;
/// after 10 lost races it holds the collectors' gate for its attempts (with review delay 0, a
/// loaded machine could otherwise starve it for good).
async fn publish(
    packages: &Packages,
    package: &str,
    version: &str,
    file: &str,
    n: u64,
    counts: &Counts,
    gate: &tokio::sync::RwLock<()>,
) {
    for attempt in 0..50 {
        let _starved = if attempt >= 10 {
            Some(gate.write().await)
        } else {
            None
        };
        let result = async {
            let stored = packages
                .store_bytes(Generic.extra_digests(), content(n))
                .await?;
            let release = Release {
                name: package.into(),
                version: version.into(),
                metadata: "{}".into(),
                files: vec![NewPackageFile {
                    name: file.into(),
                    blob: stored.blob,
                    digests: stored.digests,
                    sidecar: None,
                    attributes: Default::default(),
                }],
                tags: Vec::new(),
            };
            packages.publish(&Generic, "files", None, release).await
        }
        .await;
        match result {
            Ok(_) => {
                counts.publishes.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // The collector took the blob between store and publish: a clean failure.
            Err(Error::BlobUnknown { .. } | Error::BlobUploadInvalid { .. }) => {
                counts.retries.fetch_add(1, Ordering::Relaxed);
                assert!(attempt < 49, "publish kept racing the collector");
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
}

async fn publisher(
    packages: Packages,
    id: u64,
    rounds: u64,
    counts: Arc<Counts>,
    gate: Arc<tokio::sync::RwLock<()>>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((id + 1) * 0x1234_5678));
    for _ in 0..rounds {
        let package = format!("pkg{}", rng.next(3));
        let version = format!("1.{}", rng.next(3));
        let file = format!("f{}", rng.next(3));
        match rng.next(10) {
            0..=5 => {
                publish(
                    &packages,
                    &package,
                    &version,
                    &file,
                    rng.next(SHARED_FILES),
                    &counts,
                    &gate,
                )
                .await
            }
            6 | 7 => {
                if packages
                    .delete_file(&Generic, "files", &package, &version, &file, None)
                    .await
                    .is_ok()
                {
                    counts.file_deletes.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                if packages
                    .delete_version(&Generic, "files", &package, &version, None)
                    .await
                    .is_ok()
                {
                    counts.version_deletes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Reads every published file back, verifying its digest; returns the blobs files reference.
async fn verify(packages: &Packages) -> BTreeSet<Digest> {
    let mut referenced = BTreeSet::new();
    let names = packages
        .package_names(&Generic, "files", &Page::first(100))
        .await
        .unwrap();
    for name in names {
        let package = packages
            .package(&Generic, "files", &name)
            .await
            .unwrap()
            .unwrap();
        for file in package.versions.iter().flat_map(|v| &v.files) {
            let mut read = packages
                .read(&Generic, "files", &file.blob, None)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{name} {}: blob {} unreadable: {e}",
                        file.name, file.blob.digest
                    )
                });
            let mut bytes = Vec::new();
            while let Some(chunk) = read.stream.next().await {
                bytes.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(
                Digest::sha256(&bytes),
                file.blob.digest,
                "{name} {}",
                file.name
            );
            referenced.insert(file.blob.digest.clone());
        }
    }
    referenced
}

async fn stress(metadata: Arc<dyn MetadataStore>) {
    let rounds = support::rounds();
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let duplicates = RepositorySettings {
        allow_duplicates: true,
        ..RepositorySettings::default()
    };
    packages
        .configure_repository(
            "files",
            &Generic,
            registry_core::RepositoryKind::Hosted,
            &duplicates,
        )
        .await
        .unwrap();
    let collector = support::collector(Arc::clone(&blobs), Arc::clone(&metadata));
    let counts = Arc::new(Counts::default());
    let collectors = Collectors::start(&collector, 2);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|id| {
            tokio::spawn(publisher(
                packages.clone(),
                id,
                rounds,
                Arc::clone(&counts),
                collectors.gate(),
            ))
        })
        .collect();
    for task in publishers {
        task.await.expect("publisher");
    }
    let totals = collectors.stop().await;
    verify(&packages).await;
    support::quiesce(&collector).await;
    let referenced = verify(&packages).await;
    let stored = support::assert_only_referenced(&*blobs, &referenced).await;
    println!(
        "publishes {} (retried {}), file deletes {}, version deletes {}; GC deleted {} blobs during the run; {} blobs remain, all referenced",
        counts.publishes.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        counts.file_deletes.load(Ordering::Relaxed),
        counts.version_deletes.load(Ordering::Relaxed),
        totals.blobs_deleted,
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
