//! The offline sweep: what marking keeps, dry runs that change nothing, and the grace period.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use registry_core::blob::once_stream;
use registry_core::manifest::{OCI_INDEX, OCI_MANIFEST};
use registry_core::{
    Actor, BlobStore, Digest, MetadataStore, OciRegistry, Reference, RepositoryName, Tag,
};
use registry_gc::sweep::{Damage, SweepOptions, SweepReport, sweep};
use serde_json::{Value, json};

struct Fixture {
    registry: OciRegistry,
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    repo: RepositoryName,
}

impl Fixture {
    async fn blob(&self, data: &str) -> Digest {
        let bytes = Bytes::copy_from_slice(data.as_bytes());
        let digest = Digest::sha256(&bytes);
        self.registry
            .put_blob(&self.repo, &digest, once_stream(bytes))
            .await
            .unwrap();
        digest
    }

    async fn manifest(&self, body: Value, tag: Option<&str>) -> Digest {
        let bytes = Bytes::from(body.to_string());
        let digest = Digest::sha256(&bytes);
        let reference = match tag {
            Some(tag) => Reference::Tag(Tag::parse(tag).unwrap()),
            None => Reference::Digest(digest.clone()),
        };
        let media_type = body["mediaType"].as_str().unwrap().to_owned();
        self.registry
            .put_manifest(
                &self.repo,
                &reference,
                bytes,
                Some(&media_type),
                &Actor::trusted(),
            )
            .await
            .unwrap();
        digest
    }

    async fn image(&self, layer: &str, tag: Option<&str>, subject: Option<&Digest>) -> Digest {
        let config = self.blob("{}").await;
        let layer_digest = self.blob(layer).await;
        let mut body = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len() }],
        });
        if let Some(subject) = subject {
            body["subject"] = json!({ "mediaType": OCI_MANIFEST, "digest": subject, "size": 1 });
        }
        self.manifest(body, tag).await
    }

    async fn exists(&self, digest: &Digest) -> bool {
        self.registry
            .manifest(&self.repo, &Reference::Digest(digest.clone()))
            .await
            .is_ok()
    }

    async fn stored(&self, data: &str) -> bool {
        self.blobs
            .stat(&Digest::sha256(data.as_bytes()))
            .await
            .unwrap()
            .is_some()
    }
}

async fn fixture(
    metadata: Arc<dyn MetadataStore>,
) -> (Fixture, Digest, Digest, Digest, Digest, Digest, Digest) {
    let blobs: Arc<dyn BlobStore> = Arc::new(registry_storage::memory::MemoryBlobStore::new());
    let f = Fixture {
        // The sweep changes the stores behind the service, as it does offline: the fixture
        // reads them afresh every time.
        registry: OciRegistry::new(Arc::clone(&blobs), Arc::clone(&metadata)).with_cache(
            registry_core::CacheSettings {
                ttl: Duration::ZERO,
                ..Default::default()
            },
        ),
        blobs,
        metadata,
        repo: RepositoryName::parse("sweep/app").unwrap(),
    };
    let tagged = f.image("tagged layer", Some("v1"), None).await;
    let untagged = f.image("untagged layer", None, None).await;
    let child = f.image("child layer", None, None).await;
    let child_size = f
        .registry
        .manifest(&f.repo, &Reference::Digest(child.clone()))
        .await
        .unwrap()
        .bytes
        .len();
    let index = f
        .manifest(json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{ "mediaType": OCI_MANIFEST, "digest": child, "size": child_size }] }), Some("multi"))
        .await;
    let kept_referrer = f.image("signature of tagged", None, Some(&tagged)).await;
    let doomed_referrer = f
        .image("signature of untagged", None, Some(&untagged))
        .await;
    f.blob("uploaded, never referenced").await;
    (
        f,
        tagged,
        untagged,
        child,
        index,
        kept_referrer,
        doomed_referrer,
    )
}

fn options(dry_run: bool, delete_untagged: bool, grace: Duration) -> SweepOptions {
    SweepOptions {
        dry_run,
        delete_untagged,
        grace,
        verify: false,
    }
}

async fn run(f: &Fixture, options: &SweepOptions) -> SweepReport {
    let mut seen = 0;
    let report = sweep(&*f.blobs, &*f.metadata, options, |_| seen += 1)
        .await
        .unwrap();
    assert!(seen > 0, "progress is reported");
    report
}

async fn scenario(metadata: Arc<dyn MetadataStore>) {
    let (f, tagged, untagged, child, index, kept_referrer, doomed_referrer) =
        fixture(metadata).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let grace = Duration::from_millis(10);

    let dry = run(&f, &options(true, false, grace)).await;
    assert_eq!(
        (dry.manifests, dry.manifests_deleted),
        (6, 0),
        "untagged manifests are kept by default"
    );
    assert_eq!(dry.blobs_deleted, 1, "only the never-referenced upload");
    let dry = run(&f, &options(true, true, grace)).await;
    assert_eq!(
        dry.manifests_deleted, 2,
        "the untagged image and its referrer"
    );
    assert_eq!(dry.blobs_deleted, 3);
    assert!(
        f.exists(&untagged).await && f.stored("uploaded, never referenced").await,
        "a dry run changes nothing"
    );

    let protected = run(&f, &options(false, true, Duration::from_secs(3600))).await;
    assert_eq!(
        (protected.manifests_deleted, protected.blobs_deleted),
        (0, 0),
        "all younger than the grace period"
    );

    let real = run(&f, &options(false, true, grace)).await;
    assert_eq!(
        (
            real.repositories,
            real.manifests_deleted,
            real.blobs_deleted
        ),
        (1, 2, 3)
    );
    assert_eq!(
        real.bytes_freed,
        ("untagged layer".len()
            + "signature of untagged".len()
            + "uploaded, never referenced".len()) as u64
    );
    for kept in [&tagged, &child, &index, &kept_referrer] {
        assert!(f.exists(kept).await, "{kept} kept");
    }
    for gone in [&untagged, &doomed_referrer] {
        assert!(!f.exists(gone).await, "{gone} swept");
    }
    for layer in ["tagged layer", "child layer", "signature of tagged", "{}"] {
        assert!(f.stored(layer).await, "{layer} kept");
    }
    for layer in [
        "untagged layer",
        "signature of untagged",
        "uploaded, never referenced",
    ] {
        assert!(!f.stored(layer).await, "{layer} swept");
    }
    let again = run(&f, &options(false, true, grace)).await;
    assert_eq!(
        (
            again.manifests_deleted,
            again.blobs_deleted,
            again.unrecorded_files
        ),
        (0, 0, 0)
    );
}

macro_rules! scenario_on {
    ($backend:ident, $open:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $backend() {
            let (store, _cleanup) = $open().await;
            scenario(Arc::new(store)).await;
        }
    };
}

registry_storage::for_each_metadata_backend!(scenario_on);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_kept_blobs_are_reported_and_the_sweep_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(
        registry_storage::fs::FsBlobStore::open(dir.path())
            .await
            .unwrap(),
    );
    let metadata: Arc<dyn MetadataStore> =
        Arc::new(registry_storage::memory::MemoryMetadataStore::new());
    let f = Fixture {
        // The sweep changes the stores behind the service, as it does offline: the fixture
        // reads them afresh every time.
        registry: OciRegistry::new(Arc::clone(&blobs), Arc::clone(&metadata)).with_cache(
            registry_core::CacheSettings {
                ttl: Duration::ZERO,
                ..Default::default()
            },
        ),
        blobs,
        metadata,
        repo: RepositoryName::parse("damaged/app").unwrap(),
    };
    for name in ["truncated", "flipped", "removed", "intact"] {
        f.image(&format!("{name} layer"), Some(name), None).await;
    }
    f.blob("garbage").await;
    let file = |data: &str| {
        let digest = Digest::sha256(data.as_bytes());
        let hex = digest.hex().to_owned();
        (
            digest,
            dir.path().join("blobs/sha256").join(&hex[..2]).join(hex),
        )
    };
    let (truncated, path) = file("truncated layer");
    std::fs::write(&path, "truncated").unwrap();
    let (flipped, path) = file("flipped layer");
    std::fs::write(&path, "FLIPPED layer").unwrap();
    let (removed, path) = file("removed layer");
    std::fs::remove_file(&path).unwrap();

    let mut verify = options(false, false, Duration::ZERO);
    verify.dry_run = true;
    let cheap = run(&f, &verify).await;
    assert_eq!(
        cheap
            .damaged
            .iter()
            .map(|(d, _)| d)
            .collect::<Vec<_>>()
            .len(),
        2,
        "without verify, a wrong size and a missing file are found: {:?}",
        cheap.damaged
    );
    verify.verify = true;
    verify.dry_run = false;
    let report = run(&f, &verify).await;
    let mut damaged = report.damaged.clone();
    damaged.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (
            truncated,
            Damage::WrongSize {
                recorded: "truncated layer".len() as u64,
                stored: "truncated".len() as u64,
            },
        ),
        (
            flipped,
            Damage::WrongDigest {
                actual: Digest::sha256(b"FLIPPED layer"),
            },
        ),
        (removed, Damage::Missing),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(damaged, expected);
    assert_eq!(report.blobs_deleted, 1, "the garbage blob still goes");
    assert!(!f.stored("garbage").await);
    assert!(f.stored("intact layer").await);
}
