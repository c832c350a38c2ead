//! podman against the example server: pull, tag, push, and a manifest list pushed with `--all`.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Layout, Server, run, tar_layer, workdir};

/// Runs podman with its storage under `storage`, needing no system configuration or daemon.
fn podman(storage: &Path, args: &[&str], cwd: &Path) -> String {
    let root = storage.join("root");
    let runroot = storage.join("run");
    let mut all = vec![
        "--storage-driver",
        "vfs",
        "--root",
        root.to_str().unwrap(),
        "--runroot",
        runroot.to_str().unwrap(),
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ];
    all.extend_from_slice(args);
    run("podman", &all, cwd)
}

#[test]
fn pull_tag_push_and_manifest_list() {
    let server = Server::start(&[]);
    let host = server.host();
    let (_dir, work) = workdir();
    let storage = work.join("storage");
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("v1"), "amd64", &tar_layer("etc/hello.txt", b"hello\n"));
    layout.finish();
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:layout:v1",
            &format!("docker://{host}/test/hello:v1"),
        ],
        &work,
    );

    let source = format!("{host}/test/hello:v1");
    podman(&storage, &["pull", "--tls-verify=false", &source], &work);
    let pushed = format!("{host}/podman/hello:pushed");
    podman(&storage, &["tag", &source, &pushed], &work);
    podman(&storage, &["push", "--tls-verify=false", &pushed], &work);
    podman(&storage, &["rmi", &pushed], &work);
    podman(&storage, &["pull", "--tls-verify=false", &pushed], &work);

    let list = format!("{host}/podman/list:v1");
    podman(&storage, &["manifest", "create", &list], &work);
    podman(
        &storage,
        &[
            "manifest",
            "add",
            "--tls-verify=false",
            &list,
            &format!("docker://{source}"),
        ],
        &work,
    );
    podman(
        &storage,
        &[
            "manifest",
            "push",
            "--tls-verify=false",
            "--all",
            &list,
            &format!("docker://{list}"),
        ],
        &work,
    );
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{list}"),
        ],
        &work,
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(1),
        "{raw}"
    );

    let tags = podman(
        &storage,
        &[
            "search",
            "--list-tags",
            "--tls-verify=false",
            &format!("{host}/podman/hello"),
        ],
        &work,
    );
    assert!(tags.contains("pushed"), "{tags}");
}
