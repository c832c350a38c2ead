//! Generic packages with curl against the example server: upload, download (whole, ranged,
//! conditional), checksums, duplicates, bad names and paths, listings, deletes freeing
//! storage, and Basic auth.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use registry_core::Digest;
use serde_json::Value;
use support::{Server, command, run, workdir};

/// `curl -sS` with the status code written after the body on its own line.
fn curl(work: &Path, args: &[&str]) -> (u16, String) {
    let mut all = vec!["-sS", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out: Output = command("curl", &all, work);
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn sample(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn curl_uploads_downloads_lists_and_deletes() {
    let (_dir, work) = workdir();
    let config = work.join("registry.toml");
    std::fs::write(
        &config,
        "[gc]\nreview_delay_seconds = 0\nidle_seconds = 1\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let base = format!("http://{}/generic/tools", server.host());

    let small = sample(100_000);
    std::fs::write(work.join("tool.tar.gz"), &small).unwrap();
    let url = format!("{base}/cli/1.0.0/linux/amd64/tool.tar.gz");
    let (code, body) = curl(&work, &["-X", "PUT", "--data-binary", "@tool.tar.gz", &url]);
    assert_eq!(code, 201, "{body}");
    let uploaded = json(&body);
    let sha256 = Digest::sha256(&small).hex().to_owned();
    assert_eq!(uploaded["sha256"], sha256.as_str());
    assert_eq!(uploaded["size"], 100_000);

    // The file back, byte for byte, and its checksum as sha256sum sees it.
    run("curl", &["-sSf", "-o", "back.tar.gz", &url], &work);
    assert_eq!(std::fs::read(work.join("back.tar.gz")).unwrap(), small);
    let summed = run("sha256sum", &["back.tar.gz"], &work);
    assert!(summed.starts_with(&sha256), "{summed}");
    let head = run("curl", &["-sSfI", &url], &work).to_ascii_lowercase();
    assert!(head.contains("content-length: 100000"), "{head}");
    assert!(
        head.contains(&format!("x-checksum-sha256: {sha256}")),
        "{head}"
    );
    assert!(head.contains(&format!("etag: \"{sha256}\"")), "{head}");
    // A range, and a conditional GET.
    let (code, part) = curl(&work, &["-r", "0-9", "-o", "part", &url]);
    assert_eq!(code, 206, "{part}");
    assert_eq!(std::fs::read(work.join("part")).unwrap(), &small[..10]);
    let etag = format!("If-None-Match: \"{sha256}\"");
    assert_eq!(curl(&work, &["-H", &etag, &url]).0, 304);

    // A duplicate is refused with a clear message; so is a body that is not what its checksum
    // header announced — and neither publishes anything.
    let (code, body) = curl(&work, &["-X", "PUT", "--data-binary", "@tool.tar.gz", &url]);
    assert_eq!(code, 409);
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{body}"
    );
    let other = format!("{base}/cli/1.0.0/checksums.txt");
    let wrong = format!("X-Checksum-Sha256: {}", "0".repeat(64));
    let (code, body) = curl(
        &work,
        &[
            "-X",
            "PUT",
            "-H",
            &wrong,
            "--data-binary",
            "not what was announced",
            &other,
        ],
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(curl(&work, &[&other]).0, 404);
    let right = format!("X-Checksum-Sha256: {}", Digest::sha256(b"checked").hex());
    let (code, _) = curl(
        &work,
        &[
            "-X",
            "PUT",
            "-H",
            &right,
            "--data-binary",
            "checked",
            &other,
        ],
    );
    assert_eq!(code, 201);

    // Bad names, versions and paths: 400, nothing stored.
    for bad in [
        format!("{base}/cli/1.0.0/../../escape"),
        format!("{base}/cli/1.0.0/a//b"),
        format!("{base}/.cli/1.0.0/f"),
        format!("{base}/cli/1..0/f"),
        format!("http://{}/generic/Bad_Repo/cli/1.0.0/f", server.host()),
    ] {
        let (code, body) = curl(
            &work,
            &["--path-as-is", "-X", "PUT", "--data-binary", "x", &bad],
        );
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(json(&body)["message"].as_str().is_some(), "{body}");
    }

    // A bigger file streams through.
    let big = sample(48 << 20);
    std::fs::write(work.join("big.bin"), &big).unwrap();
    let big_url = format!("{base}/cli/2.0.0/big.bin");
    let (code, body) = curl(&work, &["-X", "PUT", "-T", "big.bin", &big_url]);
    assert_eq!(code, 201, "{body}");
    run("curl", &["-sSf", "-o", "big.back", &big_url], &work);
    assert!(std::fs::read(work.join("big.back")).unwrap() == big);

    // Listings.
    let (code, body) = curl(&work, &[&format!("{base}/cli/1.0.0")]);
    assert_eq!(code, 200);
    let files: Vec<String> = json(&body)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files, ["linux/amd64/tool.tar.gz", "checksums.txt"]);
    let (_, body) = curl(&work, &[&format!("{base}/cli")]);
    let versions: Vec<String> = json(&body)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);

    // Deleting frees the storage once the collector has looked.
    let big_blob = Digest::sha256(&big).hex().to_owned();
    let blob_path = server
        .data_dir
        .path()
        .join("data/blobs/blobs/sha256")
        .join(&big_blob[..2])
        .join(&big_blob);
    assert!(blob_path.exists());
    assert_eq!(
        curl(&work, &["-X", "DELETE", &format!("{base}/cli/2.0.0")]).0,
        204
    );
    assert_eq!(curl(&work, &[&big_url]).0, 404);
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_path.exists() {
        assert!(Instant::now() < deadline, "not collected: {}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(curl(&work, &["-X", "DELETE", &url]).0, 204);
    assert_eq!(curl(&work, &[&url]).0, 404);
    assert_eq!(
        curl(
            &work,
            &[
                "-sSf",
                "-o",
                "/dev/null",
                &format!("{base}/cli/1.0.0/checksums.txt")
            ]
        )
        .0,
        200
    );
}

#[test]
fn curl_with_basic_auth() {
    let (_dir, work) = workdir();
    let config = support::basic_auth_config(
        &work,
        r#"{ pattern = "public", role = "reader" }"#,
        &[
            (
                "ci",
                r#"{ pattern = "tools", role = "developer" }, { pattern = "public", role = "maintainer" }"#,
            ),
            ("viewer", r#"{ pattern = "tools", role = "reader" }"#),
        ],
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let url = format!("http://{}/generic/tools/cli/1.0.0/tool", server.host());
    let (code, _) = curl(&work, &["-X", "PUT", "--data-binary", "x", &url]);
    assert_eq!(code, 401);
    let challenge = run("curl", &["-sSI", &url], &work).to_ascii_lowercase();
    assert!(challenge.contains("www-authenticate: basic"), "{challenge}");
    let (code, _) = curl(
        &work,
        &["-u", "ci:wrong", "-X", "PUT", "--data-binary", "x", &url],
    );
    assert_eq!(code, 401);
    let (code, body) = curl(
        &work,
        &[
            "-u",
            "viewer:s3cret",
            "-X",
            "PUT",
            "--data-binary",
            "x",
            &url,
        ],
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = curl(
        &work,
        &["-u", "ci:s3cret", "-X", "PUT", "--data-binary", "x", &url],
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(curl(&work, &["-u", "viewer:s3cret", &url]).0, 200);
    let (code, _) = curl(&work, &["-u", "ci:s3cret", "-X", "DELETE", &url]);
    assert_eq!(code, 403, "a developer may not delete");
    // Anonymous reads where anonymous grants allow them.
    let public = format!("http://{}/generic/public/docs/1/readme.txt", server.host());
    let (code, _) = curl(
        &work,
        &[
            "-u",
            "ci:s3cret",
            "-X",
            "PUT",
            "--data-binary",
            "hello",
            &public,
        ],
    );
    assert_eq!(code, 201);
    let (code, body) = curl(&work, &[&public]);
    assert_eq!((code, body.as_str()), (200, "hello"));
}
