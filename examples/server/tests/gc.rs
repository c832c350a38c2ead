//! Online garbage collection inside the server: what skopeo deletes is collected from disk,
//! what is still tagged is untouched.

mod support;

use std::time::{Duration, Instant};

use registry_core::Digest;
use support::{Layout, Server, http_get, layout_digest, run, tar_layer, workdir};

fn blob_files(server: &Server) -> Vec<String> {
    let root = server.data_dir.path().join("data/blobs/blobs/sha256");
    let mut files = Vec::new();
    for prefix in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push(file.file_name().to_string_lossy().into_owned());
        }
    }
    files.sort();
    files
}

#[test]
fn deleted_images_are_collected_and_tagged_ones_kept() {
    let (_dir, work) = workdir();
    let config = work.join("registry.toml");
    std::fs::write(
        &config,
        "[gc]\nreview_delay_seconds = 0\nidle_seconds = 1\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let host = server.host();

    let shared = tar_layer("shared", b"a layer both images use");
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("keep"), "amd64", &shared);
    layout.finish();
    let mut other = Layout::new(work.join("other"));
    let only_dropped = tar_layer("own", b"a layer only the deleted image has");
    other.image(Some("drop2"), "arm64", &only_dropped);
    other.finish();

    let keep = format!("docker://{host}/gc/app:keep");
    let dropped = format!("docker://{host}/gc/app:drop");
    run(
        "skopeo",
        &["copy", "--dest-tls-verify=false", "oci:layout:keep", &keep],
        &work,
    );
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:other:drop2",
            &dropped,
        ],
        &work,
    );
    let own_layer = Digest::sha256(&only_dropped.0).hex().to_owned();
    assert!(blob_files(&server).contains(&own_layer));

    run("skopeo", &["delete", "--tls-verify=false", &dropped], &work);
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_files(&server).contains(&own_layer) {
        assert!(
            Instant::now() < deadline,
            "the deleted image's layer was not collected: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The image still tagged pulls completely, shared layer included.
    run(
        "skopeo",
        &["copy", "--src-tls-verify=false", &keep, "oci:pulled:keep"],
        &work,
    );
    assert_eq!(
        layout_digest(&work.join("pulled"), "keep"),
        layout_digest(&work.join("layout"), "keep")
    );
    let shared_layer = Digest::sha256(&shared.0).hex().to_owned();
    assert!(blob_files(&server).contains(&shared_layer));
    let (_, metrics) = http_get(server.addr, "/metrics").unwrap();
    assert!(
        metrics.contains("registry_gc_deleted_total{kind=\"blob\"}"),
        "{metrics}"
    );
}

fn registry_gc(server: &Server, args: &[&str]) -> String {
    let data = server.data_dir.path().join("data");
    let mut all = vec!["gc", "--data-dir", data.to_str().unwrap()];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_registry"), &all, server.data_dir.path())
}

#[test]
fn the_gc_command_sweeps_while_the_server_runs() {
    let (_dir, work) = workdir();
    let server = Server::start(&[]); // online GC at its default 24 h delay: only the sweep acts
    let host = server.host();
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("keep"), "amd64", &tar_layer("keep", b"kept layer"));
    let doomed = tar_layer("doomed", b"layer of a deleted image");
    layout.image(Some("drop"), "arm64", &doomed);
    layout.finish();
    for tag in ["keep", "drop"] {
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:layout:{tag}"),
                &format!("docker://{host}/gc/cli:{tag}"),
            ],
            &work,
        );
    }
    run(
        "skopeo",
        &[
            "delete",
            "--tls-verify=false",
            &format!("docker://{host}/gc/cli:drop"),
        ],
        &work,
    );
    let doomed_layer = Digest::sha256(&doomed.0).hex().to_owned();

    let protected = registry_gc(&server, &[]);
    assert!(
        protected.contains("blobs: 4 seen, deleted 0"),
        "the default 1 h grace keeps new blobs:\n{protected}"
    );
    let dry = registry_gc(&server, &["--dry-run", "--grace", "0s"]);
    assert!(dry.contains("would delete 2 ("), "{dry}");
    assert!(
        blob_files(&server).contains(&doomed_layer),
        "a dry run deletes nothing"
    );
    let real = registry_gc(&server, &["--grace", "0s"]);
    assert!(real.contains("blobs: 4 seen, deleted 2 ("), "{real}");
    assert!(!blob_files(&server).contains(&doomed_layer));

    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/gc/cli:keep"),
            "oci:pulled:keep",
        ],
        &work,
    );
    assert_eq!(
        layout_digest(&work.join("pulled"), "keep"),
        layout_digest(&work.join("layout"), "keep")
    );
}

#[test]
fn the_gc_command_processes_the_queue_once_and_verifies_blobs() {
    let (_dir, work) = workdir();
    // The server collects nothing itself; reviews are due at once.
    let config = work.join("registry.toml");
    std::fs::write(&config, "[gc]\nenabled = false\nreview_delay_seconds = 0\n").unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let host = server.host();
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("keep"), "amd64", &tar_layer("keep", b"kept layer"));
    let doomed = tar_layer("doomed", b"layer of a deleted image");
    layout.image(Some("drop"), "arm64", &doomed);
    layout.finish();
    for tag in ["keep", "drop"] {
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:layout:{tag}"),
                &format!("docker://{host}/gc/queue:{tag}"),
            ],
            &work,
        );
    }
    run(
        "skopeo",
        &[
            "delete",
            "--tls-verify=false",
            &format!("docker://{host}/gc/queue:drop"),
        ],
        &work,
    );
    let doomed_layer = Digest::sha256(&doomed.0).hex().to_owned();
    assert!(blob_files(&server).contains(&doomed_layer));
    let config_arg = ["--config", config.to_str().unwrap()];
    let queue = registry_gc(&server, &[&config_arg[..], &["--queue"]].concat());
    assert!(
        queue.contains("blobs deleted: 2 ("),
        "skopeo deleted the manifest; its config and layer go: {queue}"
    );
    assert!(!blob_files(&server).contains(&doomed_layer));

    // A kept layer damaged on disk is reported by a verifying sweep, which carries on.
    let kept_layer = Digest::sha256(&tar_layer("keep", b"kept layer").0)
        .hex()
        .to_owned();
    let path = server
        .data_dir
        .path()
        .join("data/blobs/blobs/sha256")
        .join(&kept_layer[..2])
        .join(&kept_layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let swept = registry_gc(&server, &["--verify", "--grace", "0s"]);
    assert!(
        swept.contains(&format!("damaged: sha256:{kept_layer}: the bytes hash to")),
        "{swept}"
    );
}
