//! skopeo against the example server on 127.0.0.1: OCI layouts copied in and out, Docker
//! schema 2 conversion, inspect, list-tags, delete, copy by digest across repositories, a
//! multi-arch index with `--all`, and a 100 MiB layer. The layouts are written by the test.

mod support;

use std::path::Path;

use registry_core::Digest;
use serde_json::{Value, json};
use support::{Layout, Server, layout_digest, run, tar_layer, workdir};

fn skopeo(args: &[&str], cwd: &Path) -> String {
    run("skopeo", args, cwd)
}

/// `skopeo list-tags` of a repository, parsed.
fn list_tags(repository: &str, cwd: &Path) -> Value {
    serde_json::from_str(&skopeo(
        &["list-tags", "--tls-verify=false", repository],
        cwd,
    ))
    .unwrap()
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

    let tags = list_tags(&format!("docker://{host}/test/hello"), &work);
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
    let tags = list_tags(&format!("docker://{host}/test/hello"), &work);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_harness_serves_a_real_client() {
    let registry = registry_http::serve::RunningRegistry::in_memory()
        .await
        .unwrap();
    let host = registry.host();
    let result = tokio::task::spawn_blocking(move || {
        let (_dir, work) = workdir();
        let mut layout = Layout::new(work.join("layout"));
        layout.image(Some("v1"), "amd64", &tar_layer("f", b"in memory"));
        layout.finish();
        let target = format!("docker://{host}/harness/app:v1");
        skopeo(
            &["copy", "--dest-tls-verify=false", "oci:layout:v1", &target],
            &work,
        );
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &target], &work);
        assert_eq!(
            Digest::sha256(raw.as_bytes()).to_string(),
            layout_digest(&work.join("layout"), "v1")
        );
    })
    .await;
    registry.stop().await.unwrap();
    result.unwrap();
}

#[test]
fn metrics_count_what_clients_did() {
    let server = Server::start(&[]);
    let host = server.host();
    let (_dir, work) = workdir();
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("v1"), "amd64", &tar_layer("m", b"metrics"));
    layout.finish();
    skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:layout:v1",
            &format!("docker://{host}/m/app:v1"),
        ],
        &work,
    );
    let (status, body) = support::http_get(server.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    for expected in [
        r#"registry_http_requests_total{method="PUT",route="manifest",status="201"} 1"#,
        r#"registry_http_request_duration_seconds_count{method="PUT",route="manifest"} 1"#,
        r#"registry_http_requests_total{method="GET",route="base",status="200"}"#,
        r#"registry_http_request_bytes_total{route="upload"}"#,
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }
}
