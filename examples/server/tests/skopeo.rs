//! skopeo against the example server on 127.0.0.1: OCI layouts copied in and out, Docker
//! schema 2 conversion, inspect, list-tags, delete, copy by digest across repositories, a
//! multi-arch index with `--all`, and a 100 MiB layer. The layouts are written by the test.

mod support;

use std::path::Path;

use registry_core::Digest;
use serde_json::{Value, json};
use support::{Server, run, workdir};

const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Writes an OCI image layout holding the given images (`ref name → (arch, files)`), and an
/// index over all of them named `multi` when `with_index` is set.
struct Layout {
    dir: std::path::PathBuf,
    index: Vec<Value>,
}

impl Layout {
    fn new(dir: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir,
            index: Vec::new(),
        }
    }

    fn blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        digest
    }

    /// Adds an image with one layer; returns its manifest descriptor.
    /// `layer` is the gzip-compressed tar; `diff_id` the digest of the tar inside.
    fn image(
        &mut self,
        name: Option<&str>,
        arch: &str,
        (layer, diff_id): &(Vec<u8>, Digest),
    ) -> Value {
        let layer_digest = self.blob(layer);
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        })
        .to_string();
        let config_digest = self.blob(config.as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": LAYER_TAR_GZIP, "digest": layer_digest, "size": layer.len() }],
        })
        .to_string();
        let digest = self.blob(manifest.as_bytes());
        let descriptor = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest.len(),
            "platform": { "architecture": arch, "os": "linux" },
        });
        if let Some(name) = name {
            let mut named = descriptor.clone();
            named["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
            self.index.push(named);
        }
        descriptor
    }

    fn multi_arch(&mut self, name: &str, children: Vec<Value>) {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        })
        .to_string();
        let digest = self.blob(index.as_bytes());
        self.index.push(json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
            "annotations": { "org.opencontainers.image.ref.name": name },
        }));
    }

    fn finish(self) {
        let index = json!({ "schemaVersion": 2, "manifests": self.index });
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// A gzip-compressed tar archive holding one file, and the digest of the tar (its diff id).
fn tar_layer(name: &str, contents: &[u8]) -> (Vec<u8>, Digest) {
    let tar = tar_archive(name, contents);
    let diff_id = Digest::sha256(&tar);
    // Stored blocks for big layers: valid gzip, fast to make.
    let level = if tar.len() > 1 << 20 {
        flate2::Compression::none()
    } else {
        flate2::Compression::fast()
    };
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), level);
    std::io::Write::write_all(&mut gzip, &tar).unwrap();
    (gzip.finish().unwrap(), diff_id)
}

fn tar_archive(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, contents).unwrap();
    builder.into_inner().unwrap()
}

/// The manifest digest a layout's index.json names `name`.
fn layout_digest(dir: &Path, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn skopeo(args: &[&str], cwd: &Path) -> String {
    run("skopeo", args, cwd)
}

#[test]
fn push_pull_inspect_convert_list_and_delete() {
    let server = Server::start(&[]);
    let host = server.host();
    let (_dir, work) = workdir();
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("v1"), "amd64", &tar_layer("etc/hello.txt", b"hello\n"));
    layout.finish();
    let target = |tag: &str| format!("docker://{host}/test/hello:{tag}");

    skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:layout:v1",
            &target("v1"),
        ],
        &work,
    );
    let raw = skopeo(
        &["inspect", "--tls-verify=false", "--raw", &target("v1")],
        &work,
    );
    assert_eq!(
        format!("{}", Digest::sha256(raw.as_bytes())),
        layout_digest(&work.join("layout"), "v1"),
        "the manifest is served byte for byte"
    );
    let inspected: Value = serde_json::from_str(&skopeo(
        &["inspect", "--tls-verify=false", &target("v1")],
        &work,
    ))
    .unwrap();
    assert_eq!(inspected["Architecture"], "amd64");
    let config: Value = serde_json::from_str(&skopeo(
        &["inspect", "--tls-verify=false", "--config", &target("v1")],
        &work,
    ))
    .unwrap();
    assert_eq!(config["os"], "linux");

    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &target("v1"),
            "oci:pulled:v1",
        ],
        &work,
    );
    assert_eq!(
        layout_digest(&work.join("pulled"), "v1"),
        layout_digest(&work.join("layout"), "v1")
    );

    skopeo(
        &[
            "copy",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            "oci:layout:v1",
            &target("v2s2"),
        ],
        &work,
    );
    let converted: Value = serde_json::from_str(&skopeo(
        &["inspect", "--tls-verify=false", "--raw", &target("v2s2")],
        &work,
    ))
    .unwrap();
    assert_eq!(
        converted["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &target("v2s2"),
            "dir:v2s2-dir",
        ],
        &work,
    );

    let tags: Value = serde_json::from_str(&skopeo(
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/test/hello"),
        ],
        &work,
    ))
    .unwrap();
    assert_eq!(tags["Tags"], json!(["v1", "v2s2"]));

    let digest = layout_digest(&work.join("layout"), "v1");
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{host}/test/hello@{digest}"),
            &format!("docker://{host}/other/hello:copied"),
        ],
        &work,
    );
    let copied = skopeo(
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{host}/other/hello:copied"),
        ],
        &work,
    );
    assert_eq!(Digest::sha256(copied.as_bytes()).to_string(), digest);

    skopeo(&["delete", "--tls-verify=false", &target("v2s2")], &work);
    let tags: Value = serde_json::from_str(&skopeo(
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/test/hello"),
        ],
        &work,
    ))
    .unwrap();
    assert_eq!(tags["Tags"], json!(["v1"]));
    let gone = support::command(
        "skopeo",
        &["inspect", "--tls-verify=false", &target("v2s2")],
        &work,
    );
    assert!(!gone.status.success(), "a deleted tag no longer resolves");
}

#[test]
fn multi_arch_index_with_all() {
    let server = Server::start(&[]);
    let host = server.host();
    let (_dir, work) = workdir();
    let mut layout = Layout::new(work.join("multi"));
    let amd64 = layout.image(None, "amd64", &tar_layer("arch", b"amd64"));
    let arm64 = layout.image(None, "arm64", &tar_layer("arch", b"arm64"));
    layout.multi_arch("multi", vec![amd64, arm64]);
    layout.finish();
    let target = format!("docker://{host}/test/multi:latest");

    let out = skopeo(
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "oci:multi:multi",
            &target,
        ],
        &work,
    );
    assert!(out.contains("2 of 2") || out.contains("Copying"), "{out}");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &target], &work);
    assert_eq!(
        Digest::sha256(raw.as_bytes()).to_string(),
        layout_digest(&work.join("multi"), "multi")
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let arm: Value = serde_json::from_str(&skopeo(
        &[
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            &target,
        ],
        &work,
    ))
    .unwrap();
    assert_eq!(arm["Architecture"], "arm64");

    skopeo(
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &target,
            "oci:pulled:multi",
        ],
        &work,
    );
    assert_eq!(
        layout_digest(&work.join("pulled"), "multi"),
        layout_digest(&work.join("multi"), "multi")
    );
}

#[test]
fn hundred_mebibyte_layer() {
    let server = Server::start(&[]);
    let host = server.host();
    let (_dir, work) = workdir();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let content: Vec<u8> = (0..100 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let layer = tar_layer("big.bin", &content);
    let layer_digest = Digest::sha256(&layer.0);
    let mut layout = Layout::new(work.join("big"));
    layout.image(Some("big"), "amd64", &layer);
    layout.finish();
    let target = format!("docker://{host}/bench/big:v1");

    skopeo(
        &["copy", "--dest-tls-verify=false", "oci:big:big", &target],
        &work,
    );
    skopeo(
        &["copy", "--src-tls-verify=false", &target, "oci:pulled:big"],
        &work,
    );
    let pulled = std::fs::read(work.join("pulled/blobs/sha256").join(layer_digest.hex())).unwrap();
    assert_eq!(
        Digest::sha256(&pulled),
        layer_digest,
        "the layer came back intact"
    );
}
