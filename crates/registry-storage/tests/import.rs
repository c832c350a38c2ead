//! Importing distribution layouts with damage in them: each damaged item is reported and
//! skipped, the rest imported; an index of indexes is stored after its children.

use std::path::Path;
use std::sync::Arc;

use registry_core::oci::OciRegistry;
use registry_core::{Digest, Reference, RepositoryName};
use registry_storage::import::{DistributionLayout, import};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::json;

struct Source {
    v2: std::path::PathBuf,
}

impl Source {
    fn new(root: &Path) -> Source {
        let v2 = root.join("docker/registry/v2");
        std::fs::create_dir_all(v2.join("blobs")).unwrap();
        std::fs::create_dir_all(v2.join("repositories")).unwrap();
        Source { v2 }
    }

    /// Stores `data` as the blob `digest` (which may not be its digest).
    fn blob_as(&self, digest: &Digest, data: &[u8]) {
        let hex = digest.hex();
        let dir = self.v2.join("blobs/sha256").join(&hex[..2]).join(hex);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), data).unwrap();
    }

    fn blob(&self, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        self.blob_as(&digest, data);
        digest
    }

    fn link(&self, repo: &str, dir: &str, digest: &Digest) {
        let path = self
            .v2
            .join("repositories")
            .join(repo)
            .join(dir)
            .join("sha256")
            .join(digest.hex());
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("link"), digest.as_str()).unwrap();
    }

    fn tag(&self, repo: &str, tag: &str, digest: &Digest) {
        let path = self
            .v2
            .join("repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("link"), digest.as_str()).unwrap();
    }

    /// An image manifest over a config and one layer, all linked; returns its digest and size.
    fn image(&self, repo: &str, layer: &[u8]) -> (Digest, usize) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let config_digest = self.blob(config);
        let layer_digest = self.blob(layer);
        self.link(repo, "_layers", &config_digest);
        self.link(repo, "_layers", &layer_digest);
        self.manifest(
            repo,
            &json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
            }),
        )
    }

    fn manifest(&self, repo: &str, value: &serde_json::Value) -> (Digest, usize) {
        let bytes = value.to_string();
        let digest = self.blob(bytes.as_bytes());
        self.link(repo, "_manifests/revisions", &digest);
        (digest, bytes.len())
    }
}

fn index(children: &[(Digest, usize)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children.iter().map(|(d, size)| json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d, "size": size,
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_items_are_reported_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::new(dir.path());
    // A good image, tagged, and an index listing an index listing it (stored last).
    let image = source.image("team/app", b"layer bytes");
    let inner = index(std::slice::from_ref(&image));
    let inner_bytes = inner.to_string();
    let (inner_digest, _) = source.manifest("team/app", &inner);
    let outer = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": inner_digest, "size": inner_bytes.len()}],
    });
    let (outer_digest, _) = source.manifest("team/app", &outer);
    source.tag("team/app", "1", &image.0);
    source.tag("team/app", "all", &outer_digest);
    // A layer whose bytes are not its digest's: reported, and its manifest with it.
    let lying = Digest::sha256(b"what the link says");
    source.blob_as(&lying, b"something else");
    source.link("team/lying", "_layers", &lying);
    // A linked layer without data (collected by distribution's GC).
    source.link("team/app", "_layers", &Digest::sha256(b"collected"));
    // A tag whose link holds garbage, and a revision whose link distribution removed (a
    // deleted manifest: nothing to report).
    let garbage = source
        .v2
        .join("repositories/team/app/_manifests/tags/broken/current");
    std::fs::create_dir_all(&garbage).unwrap();
    std::fs::write(garbage.join("link"), "not a digest").unwrap();
    let deleted = Digest::sha256(b"deleted manifest");
    let revision = source
        .v2
        .join("repositories/team/app/_manifests/revisions/sha256")
        .join(deleted.hex());
    std::fs::create_dir_all(&revision).unwrap();
    // A stray file among the links, a FIFO as a tag's link (reading it would block), and a
    // layer whose data is a link to a device (reading it would never end).
    std::fs::write(
        source.v2.join("repositories/team/app/_layers/.DS_Store"),
        "x",
    )
    .unwrap();
    let fifo = source
        .v2
        .join("repositories/team/app/_manifests/tags/fifo/current");
    std::fs::create_dir_all(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(fifo.join("link"))
        .status()
        .unwrap();
    assert!(made.success());
    let endless = Digest::sha256(b"endless");
    let data = source
        .v2
        .join("blobs/sha256")
        .join(&endless.hex()[..2])
        .join(endless.hex());
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink("/dev/zero", data.join("data")).unwrap();
    source.link("team/app", "_layers", &endless);
    // A name this registry refuses.
    source.image("Bad_Name", b"other layer");

    let registry = OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let layout = DistributionLayout::open(dir.path()).unwrap();
    let report = import(&layout, &registry, |_| {}).await.unwrap();
    assert_eq!(report.repositories, 3, "{report:?}");
    assert_eq!(report.manifests_imported, 3, "{report:?}");
    assert_eq!(report.tags_set, 2, "{report:?}");
    let problems = report.problems.join("\n");
    assert!(
        problems.contains("Bad_Name: not a valid repository name"),
        "{problems}"
    );
    assert!(
        problems.contains(&format!("team/lying: blob {lying}")),
        "{problems}"
    );
    assert!(problems.contains("has no data"), "{problems}");
    assert!(
        problems.contains("tag broken's current link holds no digest"),
        "{problems}"
    );
    assert!(problems.contains("is not a directory"), "{problems}");
    assert!(problems.contains("is not a regular file"), "{problems}");
    assert_eq!(report.problems.len(), 7, "{problems}");
    let app = RepositoryName::parse("team/app").unwrap();
    let tagged = registry
        .metadata()
        .manifest(&app, &Reference::parse("all").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tagged.digest, outer_digest);
    assert_eq!(
        registry.blob_store().stat(&lying).await.unwrap(),
        None,
        "nothing unverified is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_whose_link_is_damaged_after_a_pass_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::new(dir.path());
    let image = source.image("team/app", b"layer bytes");
    source.tag("team/app", "stable", &image.0);
    let registry = OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let layout = DistributionLayout::open(dir.path()).unwrap();
    import(&layout, &registry, |_| {}).await.unwrap();
    let link = source
        .v2
        .join("repositories/team/app/_manifests/tags/stable/current/link");
    std::fs::write(&link, "sha256:12").unwrap();
    let report = import(&layout, &registry, |_| {}).await.unwrap();
    assert_eq!(report.tags_deleted, 0, "{report:?}");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let app = RepositoryName::parse("team/app").unwrap();
    let stable = registry
        .metadata()
        .manifest(&app, &Reference::parse("stable").unwrap())
        .await
        .unwrap();
    assert_eq!(stable.unwrap().digest, image.0);
}

#[test]
fn a_directory_that_is_not_a_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = DistributionLayout::open(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not a distribution filesystem layout"),
        "{error}"
    );
}
