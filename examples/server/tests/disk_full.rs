//! A full disk fails the requests that need space, and writes work again as soon as space
//! returns, without a restart; a chunk that failed gives its bytes back at once. The data
//! directory is a real 64 MiB tmpfs (mounting needs root, which CI has).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry_core::Digest;
use support::{Server, header, http_request};

/// Unmounts the tmpfs when the test ends, even when it fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a 64 MiB tmpfs at `dir`. A process that may not mount fails the test, unless
/// `REGISTRY_TEST_WITHOUT_ROOT=1` says to skip it (a developer machine without root).
fn tmpfs(dir: &Path) -> Option<Mounted> {
    std::fs::create_dir_all(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        return Some(Mounted(dir.to_owned()));
    }
    assert!(
        std::env::var("REGISTRY_TEST_WITHOUT_ROOT").is_ok_and(|v| v == "1"),
        "mounting a tmpfs needs root (set REGISTRY_TEST_WITHOUT_ROOT=1 to skip this test)"
    );
    eprintln!("skipped: mounting a tmpfs needs root");
    None
}

/// Fills the file system holding `path` with one file until no byte more fits.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    for size in [1 << 20, 4096, 1] {
        let chunk = vec![0u8; size];
        while file.write_all(&chunk).is_ok() {}
    }
    let _ = file.sync_all();
}

fn put_blob(server: &Server, repository: &str, bytes: &[u8]) -> (u16, Digest) {
    let digest = Digest::sha256(bytes);
    let (status, _, _) = http_request(
        server.addr,
        &format!("POST /v2/{repository}/blobs/uploads/?digest={digest} HTTP/1.1"),
        bytes,
    );
    (status, digest)
}

fn put_manifest(
    server: &Server,
    repository: &str,
    tag: &str,
    manifest: &[u8],
) -> (u16, String, Vec<u8>) {
    http_request(
        server.addr,
        &format!(
            "PUT /v2/{repository}/manifests/{tag} HTTP/1.1\r\n\
             Content-Type: application/vnd.oci.image.manifest.v1+json"
        ),
        manifest,
    )
}

#[test]
fn writes_recover_after_the_disk_fills() {
    let (_dir, work) = support::workdir();
    let Some(_mounted) = tmpfs(&work.join("tmpfs")) else {
        return;
    };
    let data = work.join("tmpfs/data");
    let server = Server::start_with_data(tempfile::tempdir().unwrap(), &data, &[]);

    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = vec![7u8; 1 << 20];
    let (status, config_digest) = put_blob(&server, "team/app", config);
    assert_eq!(status, 201);
    let (status, layer_digest) = put_blob(&server, "team/app", &layer);
    assert_eq!(status, 201);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest.to_string(), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": layer_digest.to_string(), "size": layer.len() }],
    })
    .to_string();
    assert_eq!(
        put_manifest(&server, "team/app", "v1", manifest.as_bytes()).0,
        201
    );
    // An upload session opened while there is space, for the chunk that will not fit.
    let (status, head, _) = http_request(
        server.addr,
        "POST /v2/team/app/blobs/uploads/ HTTP/1.1",
        b"",
    );
    assert_eq!(status, 202, "{head}");
    let location = header(&head, "location").unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();

    let filler = work.join("tmpfs/filler");
    fill(&filler);
    // The manifest's bytes are stored already, so tagging it again needs only the database:
    // the SQLite commit is what fails here.
    let (status, head, body) = put_manifest(&server, "team/app", "v2", manifest.as_bytes());
    assert!((500..600).contains(&status), "{status} {head}");
    let body = String::from_utf8_lossy(&body).into_owned();
    let reference = header(&head, "x-request-id")
        .unwrap_or_else(|| panic!("a 500 names its request id: {head}"))
        .to_owned();
    assert!(
        body.contains(&reference) && body.contains("\"message\""),
        "{body}"
    );
    assert!(
        !body.contains("\"code\""),
        "no code is made up for a server error: {body}"
    );
    assert!(
        server.log().contains(&reference),
        "the log line carries the request id: {}",
        server.log()
    );
    let (status, _, body) = http_request(
        server.addr,
        "PUT /generic/files/tool/1.0/full.bin HTTP/1.1",
        &vec![1u8; 2 << 20],
    );
    assert_eq!(
        status,
        507,
        "generic upload on a full disk: Insufficient Storage; {} {}",
        String::from_utf8_lossy(&body),
        server.log()
    );
    let (status, _, _) = http_request(
        server.addr,
        &format!("PATCH {location} HTTP/1.1\r\nContent-Type: application/octet-stream"),
        &vec![2u8; 4 << 20],
    );
    assert!(status >= 400, "a chunk that does not fit fails: {status}");
    let partial = data.join("blobs/uploads").join(&id).join("data");
    assert_eq!(
        std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0),
        0,
        "the failed chunk's bytes are given back at once"
    );

    std::fs::remove_file(&filler).unwrap();
    // Space is back: every write works again, on every pooled connection.
    for n in 0..8 {
        let (status, head, body) = put_manifest(
            &server,
            "team/app",
            &format!("after-{n}"),
            manifest.as_bytes(),
        );
        assert_eq!(status, 201, "{head} {}", String::from_utf8_lossy(&body));
    }
    let (status, _, body) = http_request(
        server.addr,
        "PUT /generic/files/tool/1.0/after.bin HTTP/1.1",
        &vec![3u8; 2 << 20],
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = http_request(
        server.addr,
        &format!("PATCH {location} HTTP/1.1\r\nContent-Type: application/octet-stream"),
        &vec![2u8; 1 << 20],
    );
    assert_eq!(status, 202, "the upload session goes on");
    let (status, _, got) = http_request(
        server.addr,
        "GET /v2/team/app/manifests/after-7 HTTP/1.1",
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(got, manifest.as_bytes());
}
