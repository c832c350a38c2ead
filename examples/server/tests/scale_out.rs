//! Three `registry serve` processes on one PostgreSQL schema and one S3 bucket prefix (the test
//! server `scripts/ensure-s3` starts): pushes through one and pulls through another, a chunked
//! upload whose PATCHes alternate between them (and two racing on one offset), a package
//! published on one and read on the others, cleanup run by three processes at once, and the
//! online collectors of all three plus three `registry gc --queue` runs deleting exactly what
//! died, once.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_core::{BlobStore, Digest};
use registry_storage::object::{ObjectBlobStore, ObjectOptions};
use registry_storage::testing;
use support::{Layout, Server, header, http_get, http_request, run, tar_layer, workdir};

fn config(
    dir: &Path,
    database_url: &str,
    replica_url: Option<&str>,
    bucket_url: &str,
) -> std::path::PathBuf {
    let replicas = replica_url.map_or(String::new(), |url| {
        format!("database_replicas = [\"{url}\"]\n")
    });
    let options: String = testing::s3_options()
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    let text = format!(
        r#"database_url = "{database_url}"
{replicas}read_cache_ttl_ms = 0

[blob_store]
url = "{bucket_url}"
part_size_mib = 5

[blob_store.options]
{options}
[gc]
review_delay_seconds = 3
idle_seconds = 1

[[cleanup_policies]]
name = "builds"
repositories = "team/app"
keep_n = 1
name_regex = "build-.*"
"#
    );
    let path = dir.join("registry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn copy(work: &Path, from: &str, to: &str) {
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ],
        work,
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    Digest::sha256(bytes).hex().to_owned()
}

/// A blob read through `server`, checked against its digest.
fn get_blob(server: SocketAddr, repo: &str, digest: &str) -> Vec<u8> {
    let (status, head, body) = http_request(
        server,
        &format!("GET /v2/{repo}/blobs/{digest} HTTP/1.1"),
        b"",
    );
    assert_eq!(status, 200, "GET {digest} from {server}: {head}");
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), digest);
    body
}

/// The sum of a counter over the servers' `/metrics`.
fn counter(servers: &[&Server], line_prefix: &str) -> u64 {
    servers
        .iter()
        .map(|s| {
            let (_, text) = http_get(s.addr, "/metrics").expect("metrics");
            text.lines()
                .find_map(|l| l.strip_prefix(line_prefix))
                .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
        })
        .sum()
}

#[test]
fn three_instances_share_one_database_and_one_object_store() {
    let (_work_dir, work) = workdir();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (database_url, _schema) = runtime.block_on(testing::postgres_schema());
    // Image reads go to a streaming replica, once it has replayed the repository's writes.
    let replica = testing::Replica::start();
    let replica_url = replica.url_like(&database_url);
    let bucket_url = testing::s3_url();
    let config_path = config(&work, &database_url, Some(&replica_url), &bucket_url);
    let config_arg = config_path.to_str().unwrap().to_owned();
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&["--config", &config_arg]))
        .collect();
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    // What the instances share, seen from outside: the bucket itself.
    let bucket = ObjectBlobStore::from_driver(
        testing::s3_driver(&bucket_url),
        Arc::new(registry_storage::memory::MemoryMetadataStore::new()),
        ObjectOptions::default(),
    );
    let in_bucket = |digest: &str| {
        runtime
            .block_on(bucket.stat(&Digest::parse(digest).unwrap()))
            .unwrap()
            .is_some()
    };

    // Images: a 24 MiB layer (multipart on the way in) and a small one.
    let mut layout = Layout::new(work.join("layout"));
    let big: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let app_manifest = layout.image(Some("app"), "amd64", &tar_layer("big", &big));
    let other_manifest = layout.image(Some("other"), "amd64", &tar_layer("o", b"other"));
    layout.finish();
    let oci = |name: &str| format!("oci:{}:{name}", work.join("layout").display());

    // Pushed through A (and a second repository through B, and another image through C)…
    copy(
        &work,
        &oci("app"),
        &format!("docker://{}/team/app:1", a.host()),
    );
    copy(
        &work,
        &oci("app"),
        &format!("docker://{}/team/copy:1", b.host()),
    );
    copy(
        &work,
        &oci("other"),
        &format!("docker://{}/team/other:1", c.host()),
    );
    // …pulled through B, byte for byte.
    let pulled = work.join("pulled");
    copy(
        &work,
        &format!("docker://{}/team/app:1", b.host()),
        &format!("oci:{}:app", pulled.display()),
    );
    assert_eq!(
        support::layout_digest(&pulled, "app"),
        app_manifest["digest"].as_str().unwrap()
    );
    let app_digests =
        manifest_digests(c.addr, "team/app", app_manifest["digest"].as_str().unwrap());
    let other_digests = manifest_digests(
        a.addr,
        "team/other",
        other_manifest["digest"].as_str().unwrap(),
    );
    for digest in &app_digests {
        get_blob(c.addr, "team/app", digest);
    }

    // A chunked upload, PATCH by PATCH through A, B and C, with two PATCHes racing.
    let chunked: Vec<u8> = (0..13u32 << 20).map(|i| (i % 251) as u8).collect();
    let chunked_digest = format!("sha256:{}", sha256_hex(&chunked));
    let (status, head, _) =
        http_request(a.addr, "POST /v2/team/chunked/blobs/uploads/ HTTP/1.1", b"");
    assert_eq!(status, 202, "{head}");
    let location = header(&head, "Location").unwrap().to_owned();
    let path = location
        .strip_prefix("http://")
        .map_or(location.as_str(), |rest| &rest[rest.find('/').unwrap()..])
        .to_owned();
    let patch = |server: SocketAddr, from: usize, to: usize| {
        http_request(
            server,
            &format!(
                "PATCH {path} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Range: {from}-{}",
                to - 1
            ),
            &chunked[from..to],
        )
    };
    let mb = 1 << 20;
    let (status, head, _) = patch(b.addr, 0, 6 * mb);
    assert_eq!(status, 202, "{head}");
    let (status, head, _) = patch(c.addr, 6 * mb, 6 * mb + 100);
    assert_eq!(status, 202, "{head}");
    assert_eq!(header(&head, "Range"), Some(&*format!("0-{}", 6 * mb + 99)));
    // Two instances get the same next chunk at once: one takes it, the other answers 416.
    let (first, second) = std::thread::scope(|scope| {
        let one = scope.spawn(|| patch(a.addr, 6 * mb + 100, 10 * mb));
        let two = scope.spawn(|| patch(b.addr, 6 * mb + 100, 10 * mb));
        (one.join().unwrap(), two.join().unwrap())
    });
    let statuses: BTreeSet<u16> = [first.0, second.0].into();
    assert_eq!(
        statuses,
        BTreeSet::from([202, 416]),
        "{}\n{}",
        first.1,
        second.1
    );
    let (status, head, _) = patch(c.addr, 10 * mb, chunked.len());
    assert_eq!(status, 202, "{head}");
    let (status, head, _) = http_request(
        a.addr,
        &format!(
            "PUT {path}{}digest={chunked_digest} HTTP/1.1",
            if path.contains('?') { '&' } else { '?' }
        ),
        b"",
    );
    assert_eq!(status, 201, "{head}");
    assert_eq!(get_blob(b.addr, "team/chunked", &chunked_digest), chunked);
    // The blob becomes a layer of an image, so the collectors keep it.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = format!("sha256:{}", sha256_hex(config));
    let (status, head, _) = http_request(
        c.addr,
        &format!(
            "POST /v2/team/chunked/blobs/uploads/?digest={config_digest} HTTP/1.1\r\nContent-Type: application/octet-stream"
        ),
        config,
    );
    assert_eq!(status, 201, "{head}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": chunked_digest, "size": chunked.len()}],
    })
    .to_string();
    let (status, _, body) = http_request(
        b.addr,
        "PUT /v2/team/chunked/manifests/1 HTTP/1.1\r\nContent-Type: application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    // A package published through A, read through B and C.
    let file: Vec<u8> = (0..9u32 << 20).map(|i| (i % 241) as u8).collect();
    let (status, head, _) = http_request(
        a.addr,
        "PUT /generic/tools/cli/1.0.0/cli.bin HTTP/1.1",
        &file,
    );
    assert!(matches!(status, 200 | 201), "{head}");
    for server in [b, c] {
        let (status, head, body) = http_request(
            server.addr,
            "GET /generic/tools/cli/1.0.0/cli.bin HTTP/1.1",
            b"",
        );
        assert_eq!(status, 200, "{head}");
        assert_eq!(sha256_hex(&body), sha256_hex(&file));
    }

    // Cleanup from three processes at once: two old build tags go, once.
    for tag in ["build-1", "build-2", "build-3"] {
        copy(
            &work,
            &oci("app"),
            &format!("docker://{}/team/app:{tag}", b.host()),
        );
        std::thread::sleep(Duration::from_millis(1100));
    }
    let outputs: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    run(
                        env!("CARGO_BIN_EXE_registry"),
                        &["cleanup", "--config", &config_arg],
                        &work,
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let deleted: usize = outputs
        .iter()
        .map(|out| {
            out.lines()
                .filter(|l| l.starts_with("deleted team/app:build-"))
                .count()
        })
        .sum();
    assert_eq!(
        deleted, 2,
        "each old tag deleted by exactly one run: {outputs:?}"
    );
    assert_eq!(tags(c.addr, "team/app"), ["1", "build-3"]);

    // The collectors: team/other dies, team/copy goes but its blobs live on in team/app.
    let dying: Vec<String> = other_digests
        .iter()
        .filter(|d| in_bucket(d))
        .cloned()
        .collect();
    assert!(
        dying.len() >= 2,
        "the layer and the config are in the bucket"
    );
    for (server, repo, digest) in [
        (a, "team/other", other_manifest["digest"].as_str().unwrap()),
        (c, "team/copy", app_manifest["digest"].as_str().unwrap()),
    ] {
        let (status, head, _) = http_request(
            server.addr,
            &format!("DELETE /v2/{repo}/manifests/{digest} HTTP/1.1"),
            b"",
        );
        assert_eq!(status, 202, "{head}");
    }
    // The reviews fall due after the delay; then three command-line passes race the servers'.
    std::thread::sleep(Duration::from_millis(3200));
    let cli_runs: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    run(
                        env!("CARGO_BIN_EXE_registry"),
                        &["gc", "--queue", "--config", &config_arg],
                        &work,
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while dying.iter().any(|d| in_bucket(d)) {
        assert!(
            Instant::now() < deadline,
            "the collectors did not delete {dying:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let every collector finish its pass, then count what all six deleted.
    std::thread::sleep(Duration::from_secs(3));
    let by_cli: u64 = cli_runs
        .iter()
        .map(|out| {
            out.split("blobs deleted: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a gc report: {out}"))
        })
        .sum();
    let by_servers = counter(&[a, b, c], "registry_gc_deleted_total{kind=\"blob\"}");
    assert_eq!(
        by_cli + by_servers,
        dying.len() as u64,
        "each dead blob collected exactly once (cli {cli_runs:?}, servers {by_servers})"
    );

    // The replica answered image reads (the pulls, the tag lists), the primary the rest.
    let replica_reads = counter(
        &[a, b, c],
        "registry_db_balanced_reads_total{target=\"replica\"}",
    );
    assert!(replica_reads > 0, "no read went to the replica");
    drop(replica);
    // Everything live reads back verified, through every instance, the replica gone.
    for server in [a, b, c] {
        for digest in &app_digests {
            assert!(in_bucket(digest), "{digest} of team/app was collected");
            get_blob(server.addr, "team/app", digest);
        }
        assert_eq!(
            get_blob(server.addr, "team/chunked", &chunked_digest),
            chunked
        );
        let (status, _, _) = http_request(
            server.addr,
            &format!(
                "GET /v2/team/other/manifests/{} HTTP/1.1",
                other_manifest["digest"].as_str().unwrap()
            ),
            b"",
        );
        assert_eq!(status, 404);
    }
    let again = work.join("again");
    copy(
        &work,
        &format!("docker://{}/team/app:1", c.host()),
        &format!("oci:{}:app", again.display()),
    );
    assert_eq!(
        support::layout_digest(&again, "app"),
        app_manifest["digest"].as_str().unwrap()
    );
}

/// The digests a manifest holds (config and layers), read through `server`.
fn manifest_digests(server: SocketAddr, repo: &str, digest: &str) -> Vec<String> {
    let (status, head, body) = http_request(
        server,
        &format!(
            "GET /v2/{repo}/manifests/{digest} HTTP/1.1\r\nAccept: application/vnd.oci.image.manifest.v1+json"
        ),
        b"",
    );
    assert_eq!(status, 200, "{head}");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    digests
}

fn tags(server: SocketAddr, repo: &str) -> Vec<String> {
    let (status, head, body) =
        http_request(server, &format!("GET /v2/{repo}/tags/list HTTP/1.1"), b"");
    assert_eq!(status, 200, "{head}");
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    value["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn blob_reads_redirect_to_presigned_urls_that_skopeo_follows() {
    let (_work_dir, work) = workdir();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (database_url, _schema) = runtime.block_on(testing::postgres_schema());
    let path = config(&work, &database_url, None, &testing::s3_url());
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "part_size_mib = 5\n",
        "part_size_mib = 5\nredirect_seconds = 300\n",
    );
    std::fs::write(&path, text).unwrap();
    // Longer than S3 lets a presigned URL live: refused at start.
    let too_long = work.join("too-long.toml");
    std::fs::write(
        &too_long,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("redirect_seconds = 300", "redirect_seconds = 604801"),
    )
    .unwrap();
    let refused = support::command(
        env!("CARGO_BIN_EXE_registry"),
        &[
            "serve",
            "--config",
            too_long.to_str().unwrap(),
            "--data-dir",
            work.join("x").to_str().unwrap(),
        ],
        &work,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a week at most"),
        "{refused:?}"
    );
    let server = Server::start(&["--config", path.to_str().unwrap()]);

    let mut layout = Layout::new(work.join("layout"));
    let manifest = layout.image(Some("app"), "amd64", &tar_layer("f", &[7u8; 3 << 20]));
    layout.finish();
    copy(
        &work,
        &format!("oci:{}:app", work.join("layout").display()),
        &format!("docker://{}/team/app:1", server.host()),
    );
    let digests = manifest_digests(
        server.addr,
        "team/app",
        manifest["digest"].as_str().unwrap(),
    );
    let (status, head, body) = http_request(
        server.addr,
        &format!("GET /v2/team/app/blobs/{} HTTP/1.1", digests[1]),
        b"",
    );
    assert_eq!(status, 307, "{head}");
    assert!(body.is_empty());
    let location = header(&head, "Location").unwrap();
    assert!(
        location.starts_with(&testing::s3_endpoint()) && location.contains("X-Amz-Signature"),
        "{location}"
    );
    // HEAD still answers from the registry, with the size.
    let (status, head, _) = http_request(
        server.addr,
        &format!("HEAD /v2/team/app/blobs/{} HTTP/1.1", digests[1]),
        b"",
    );
    assert_eq!(status, 200, "{head}");
    // A blob of another repository is not handed out.
    let (status, _, _) = http_request(
        server.addr,
        &format!("GET /v2/team/other/blobs/{} HTTP/1.1", digests[1]),
        b"",
    );
    assert_eq!(status, 404);

    let pulled = work.join("pulled");
    copy(
        &work,
        &format!("docker://{}/team/app:1", server.host()),
        &format!("oci:{}:app", pulled.display()),
    );
    assert_eq!(
        support::layout_digest(&pulled, "app"),
        manifest["digest"].as_str().unwrap()
    );
    let layer = std::fs::read(
        pulled
            .join("blobs/sha256")
            .join(&digests[1]["sha256:".len()..]),
    )
    .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&layer)), digests[1]);
}
