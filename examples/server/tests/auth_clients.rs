//! Real clients against the server with Basic auth and with Docker token auth, configured
//! through `--config`.

mod support;

use std::path::Path;

use support::{Layout, Server, command, layout_digest, run, tar_layer, workdir};

fn config(dir: &Path, mode: &str) -> String {
    let hash = registry_http::auth::hash_password("s3cret").unwrap();
    let text = format!(
        r#"
[auth]
mode = "{mode}"
service = "registry-test"
token_secret = "a test secret that is long enough for HS256"
anonymous = [{{ pattern = "public/*", role = "reader" }}]

[auth.users.dev]
password_hash = "{hash}"
grants = [{{ pattern = "team/*", role = "developer" }}, {{ pattern = "public/*", role = "maintainer" }}]
"#
    );
    let path = dir.join(format!("{mode}.toml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn image(work: &Path) {
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("v1"), "amd64", &tar_layer("etc/auth.txt", b"auth\n"));
    layout.finish();
}

/// Pushes the test layout's image to `target` with the developer's credentials.
fn push_as_dev(target: &str, work: &Path) {
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "dev:s3cret",
            "oci:layout:v1",
            target,
        ],
        work,
    );
}

fn skopeo_with_auth(mode: &str) {
    let (_dir, work) = workdir();
    let server = Server::start(&["--config", &config(&work, mode)]);
    let host = server.host();
    image(&work);
    let team = format!("docker://{host}/team/app:v1");

    let anonymous = command(
        "skopeo",
        &["copy", "--dest-tls-verify=false", "oci:layout:v1", &team],
        &work,
    );
    assert!(
        !anonymous.status.success(),
        "{mode}: anonymous push must fail"
    );
    let wrong = command(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "dev:wrong",
            "oci:layout:v1",
            &team,
        ],
        &work,
    );
    assert!(
        !wrong.status.success(),
        "{mode}: a wrong password must fail"
    );

    push_as_dev(&team, &work);
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "dev:s3cret",
            "--raw",
            &team,
        ],
        &work,
    );
    assert_eq!(
        registry_core::Digest::sha256(raw.as_bytes()).to_string(),
        layout_digest(&work.join("layout"), "v1")
    );
    let delete = command(
        "skopeo",
        &[
            "delete",
            "--tls-verify=false",
            "--creds",
            "dev:s3cret",
            &team,
        ],
        &work,
    );
    assert!(
        !delete.status.success(),
        "{mode}: a developer may not delete"
    );

    // Public images: pushed by a maintainer, pulled anonymously.
    let public = format!("docker://{host}/public/app:v1");
    push_as_dev(&public, &work);
    run(
        "skopeo",
        &["inspect", "--tls-verify=false", "--no-creds", &public],
        &work,
    );
    let private = command(
        "skopeo",
        &["inspect", "--tls-verify=false", "--no-creds", &team],
        &work,
    );
    assert!(!private.status.success(), "{mode}: team/* is not public");
}

#[test]
fn skopeo_with_basic_auth() {
    skopeo_with_auth("basic");
}

#[test]
fn skopeo_with_token_auth() {
    skopeo_with_auth("token");
}

#[test]
fn oras_with_basic_auth() {
    let (_dir, work) = workdir();
    let server = Server::start(&["--config", &config(&work, "basic")]);
    let script = r#"
import os, sys
import oras.client
host = sys.argv[1]
os.chdir(sys.argv[2])
open("a.txt", "w").write("authenticated artifact\n")
c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
c.auth.set_basic_auth("dev", "s3cret")
r = c.push(files=["a.txt"], target=f"{host}/team/oras:v1")
assert r.status_code == 201, r.text
assert c.get_tags(f"{host}/team/oras") == ["v1"]
import requests
anonymous = requests.post(f"http://{host}/v2/team/oras/blobs/uploads/")
assert anonymous.status_code == 401, anonymous.status_code
assert anonymous.headers["WWW-Authenticate"].startswith("Basic"), anonymous.headers
print("oras auth ok")
"#;
    let path = work.join("oras_auth.py");
    std::fs::write(&path, script).unwrap();
    let python = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/clients/bin/python"
    );
    let out = run(
        python,
        &[
            path.to_str().unwrap(),
            &server.host(),
            work.to_str().unwrap(),
        ],
        &work,
    );
    assert!(out.contains("oras auth ok"), "{out}\n{}", server.log());
}

#[test]
fn refuses_an_open_registry_on_a_network_address() {
    let (_dir, work) = workdir();
    let output = command(
        env!("CARGO_BIN_EXE_registry"),
        &[
            "serve",
            "--listen",
            "0.0.0.0:5999",
            "--data-dir",
            work.join("data").to_str().unwrap(),
        ],
        &work,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve without authentication"),
        "{stderr}"
    );
}
