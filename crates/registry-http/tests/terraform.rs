//! The Terraform module registry in-process: discovery, uploads checked for a root module,
//! versions in SemVer order, downloads pointing at the archive (with a root directory as
//! go-getter's `//dir`), signed archive URLs when authentication is on (bound to one file,
//! refused with another secret), the latest-version redirect, conflicts and deletes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use registry_core::{Grant, NamePattern, Packages, Role};
use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
use registry_http::terraform::DownloadSigner;
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use tower::ServiceExt;

fn packages() -> Packages {
    Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    )
}

fn with_auth() -> Auth {
    let hash = hash_password("pw").unwrap();
    let users: HashMap<String, StaticUser> = [(
        "dev".to_owned(),
        StaticUser {
            password_hash: hash,
            grants: vec![Grant {
                pattern: NamePattern::parse("infra").unwrap(),
                role: Role::Maintainer,
            }],
        },
    )]
    .into();
    Auth::basic("test", Arc::new(StaticUsers::new(users, None).unwrap()))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    user: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "tf.test");
    if let Some(user) = user {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        request = request.header(header::AUTHORIZATION, format!("Basic {basic}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: body.to_vec(),
    }
}

fn tar_gz(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_bytes())
            .unwrap();
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
    gzip.finish().unwrap()
}

const MODULE: &str = "/terraform/modules/v1/infra/hello/local";
const MAIN: &str = "output \"greeting\" { value = \"hello\" }";

#[tokio::test]
async fn modules_are_uploaded_listed_and_downloaded() {
    let app = registry_http::terraform::router(packages(), None, DownloadSigner::random());
    let discovery = send(
        &app,
        Method::GET,
        "/.well-known/terraform.json",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        discovery.json(),
        json!({"modules.v1": "/terraform/modules/v1/", "providers.v1": "/terraform/providers/v1/"})
    );

    for version in ["1.10.0", "1.2.0", "2.0.0-rc.1"] {
        let archive = tar_gz(&[("main.tf", MAIN)]);
        let uploaded = send(
            &app,
            Method::PUT,
            &format!("{MODULE}/{version}/file"),
            None,
            archive,
        )
        .await;
        assert_eq!(
            uploaded.status,
            StatusCode::CREATED,
            "{version}: {:?}",
            uploaded.json()
        );
    }
    let nested = tar_gz(&[
        ("hello-3.0.0/main.tf", MAIN),
        ("hello-3.0.0/README.md", "hi"),
    ]);
    assert_eq!(
        send(
            &app,
            Method::PUT,
            &format!("{MODULE}/3.0.0/file"),
            None,
            nested.clone()
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let versions = send(
        &app,
        Method::GET,
        &format!("{MODULE}/versions"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        versions.json(),
        json!({"modules": [{"versions": [
            {"version": "1.2.0"}, {"version": "1.10.0"}, {"version": "2.0.0-rc.1"}, {"version": "3.0.0"}
        ]}]})
    );

    let download = send(
        &app,
        Method::GET,
        &format!("{MODULE}/1.2.0/download"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(download.status, StatusCode::NO_CONTENT);
    let url = download.header("x-terraform-get");
    assert_eq!(url, format!("http://tf.test{MODULE}/1.2.0/module.tar.gz"));
    let fetched = send(
        &app,
        Method::GET,
        url.strip_prefix("http://tf.test").unwrap(),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(fetched.body, tar_gz(&[("main.tf", MAIN)]));
    let rooted = send(
        &app,
        Method::GET,
        &format!("{MODULE}/3.0.0/download"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        rooted.header("x-terraform-get"),
        format!("http://tf.test{MODULE}/3.0.0/module.tar.gz//hello-3.0.0")
    );
    let latest = send(
        &app,
        Method::GET,
        &format!("{MODULE}/download"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(latest.status, StatusCode::FOUND);
    assert_eq!(
        latest.header("location"),
        format!("{MODULE}/3.0.0/download")
    );

    // The same version again is a conflict; a version Terraform would not read is refused.
    let again = send(
        &app,
        Method::PUT,
        &format!("{MODULE}/1.2.0/file"),
        None,
        tar_gz(&[("main.tf", MAIN)]),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    for (uri, status) in [
        (format!("{MODULE}/v1.0.0/file"), StatusCode::BAD_REQUEST),
        (
            "/terraform/modules/v1/infra/hello/AWS/1.0.0/file".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/terraform/modules/v1/infra/-x/local/1.0.0/file".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = send(&app, Method::PUT, &uri, None, tar_gz(&[("main.tf", MAIN)])).await;
        assert_eq!(refused.status, status, "{uri}");
    }
    // Archives without a root module, links or traversal: refused, nothing stored.
    for archive in [
        b"plain text".to_vec(),
        tar_gz(&[("README.md", "no module")]),
        tar_gz(&[("a/b/main.tf", MAIN)]),
    ] {
        let refused = send(
            &app,
            Method::PUT,
            &format!("{MODULE}/9.0.0/file"),
            None,
            archive,
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            refused.json()
        );
    }
    assert_eq!(
        send(
            &app,
            Method::GET,
            &format!("{MODULE}/9.0.0/download"),
            None,
            Vec::new()
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    let deleted = send(
        &app,
        Method::DELETE,
        &format!("{MODULE}/3.0.0"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let latest = send(
        &app,
        Method::GET,
        &format!("{MODULE}/download"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        latest.header("location"),
        format!("{MODULE}/1.10.0/download")
    );
}

#[tokio::test]
async fn archive_urls_are_signed_for_one_file_when_auth_is_on() {
    let store = packages();
    let app = registry_http::terraform::router(
        store.clone(),
        Some(with_auth()),
        DownloadSigner::random(),
    );
    let archive = tar_gz(&[("main.tf", MAIN)]);
    assert_eq!(
        send(
            &app,
            Method::PUT,
            &format!("{MODULE}/1.0.0/file"),
            None,
            archive.clone()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    for version in ["1.0.0", "1.1.0"] {
        assert_eq!(
            send(
                &app,
                Method::PUT,
                &format!("{MODULE}/{version}/file"),
                Some("dev"),
                archive.clone()
            )
            .await
            .status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        send(
            &app,
            Method::GET,
            &format!("{MODULE}/versions"),
            None,
            Vec::new()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let download = send(
        &app,
        Method::GET,
        &format!("{MODULE}/1.0.0/download"),
        Some("dev"),
        Vec::new(),
    )
    .await;
    let url = download.header("x-terraform-get");
    let path = url.strip_prefix("http://tf.test").unwrap().to_owned();
    assert!(path.contains("?token="), "{url}");
    // The signed URL needs no credentials…
    let fetched = send(&app, Method::GET, &path, None, Vec::new()).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, archive);
    // …but names one file: another version's, or a tampered token, needs credentials.
    let other = path.replace("/1.0.0/", "/1.1.0/");
    assert_eq!(
        send(&app, Method::GET, &other, None, Vec::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let tampered = format!("{path}x");
    assert_eq!(
        send(&app, Method::GET, &tampered, None, Vec::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A URL opens the content it was made for: the version deleted and uploaded again with
    // other bytes, the old URL opens nothing.
    let deleted = send(
        &app,
        Method::DELETE,
        &format!("{MODULE}/1.0.0"),
        Some("dev"),
        Vec::new(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let replaced = tar_gz(&[("main.tf", "output \"other\" { value = 2 }")]);
    assert_eq!(
        send(
            &app,
            Method::PUT,
            &format!("{MODULE}/1.0.0/file"),
            Some("dev"),
            replaced
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        send(&app, Method::GET, &path, None, Vec::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let path = send(
        &app,
        Method::GET,
        &format!("{MODULE}/1.0.0/download"),
        Some("dev"),
        Vec::new(),
    )
    .await
    .header("x-terraform-get")
    .strip_prefix("http://tf.test")
    .unwrap()
    .to_owned();
    assert_eq!(
        send(&app, Method::GET, &path, None, Vec::new())
            .await
            .status,
        StatusCode::OK
    );
    // An expired URL is refused (a signer whose URLs live no time at all; the expiry is whole
    // seconds, so the test waits past the next one).
    let instant = DownloadSigner::new(
        b"0123456789abcdef0123456789abcdef",
        std::time::Duration::ZERO,
    );
    let short = registry_http::terraform::router(store.clone(), Some(with_auth()), instant);
    let download = send(
        &short,
        Method::GET,
        &format!("{MODULE}/1.0.0/download"),
        Some("dev"),
        Vec::new(),
    )
    .await;
    let stale = download
        .header("x-terraform-get")
        .strip_prefix("http://tf.test")
        .unwrap()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        send(&short, Method::GET, &stale, None, Vec::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Another instance with another secret does not accept it.
    let elsewhere =
        registry_http::terraform::router(store, Some(with_auth()), DownloadSigner::random());
    assert_eq!(
        send(&elsewhere, Method::GET, &path, None, Vec::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

const PROVIDER: &str = "/terraform/providers/v1/infra/hello";

/// A made-up version 4 public key, armored (its fingerprint is what the registry computes; the
/// signature is terraform's to check).
fn armored_key() -> Vec<u8> {
    let mut body = vec![4u8, 0x67, 0x45, 0x14, 0x1e, 22];
    body.extend([7u8; 40]);
    let mut packet = vec![0x98, body.len() as u8];
    packet.extend(&body);
    format!(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{}\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n",
        base64::engine::general_purpose::STANDARD.encode(&packet)
    )
    .into_bytes()
}

fn provider_zip() -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "terraform-provider-hello_v1.0.0",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    std::io::Write::write_all(&mut writer, b"binary").unwrap();
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn provider_releases_are_listed_once_complete_and_checked() {
    let app = registry_http::terraform::router(packages(), None, DownloadSigner::random());
    let discovery = send(
        &app,
        Method::GET,
        "/.well-known/terraform.json",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(discovery.json()["providers.v1"], "/terraform/providers/v1/");
    let zip = provider_zip();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&zip));
    let base = "terraform-provider-hello_1.0.0";
    let put = |file: String, body: Vec<u8>| {
        let app = app.clone();
        async move {
            send(
                &app,
                Method::PUT,
                &format!("{PROVIDER}/1.0.0/{file}"),
                None,
                body,
            )
            .await
        }
    };
    assert_eq!(
        put(format!("{base}_linux_amd64.zip"), zip.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    // Incomplete: not listed, no download.
    let versions = send(
        &app,
        Method::GET,
        &format!("{PROVIDER}/versions"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(versions.json(), json!({"versions": []}));
    // Refused files: a name of no release file, sums naming other files, a key that is none,
    // a zip that is none; the same file twice.
    for (file, body, status) in [
        (
            format!("{base}_linux.zip"),
            zip.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "terraform-provider-hello_1.0.1_linux_amd64.zip".to_owned(),
            zip.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}_SHA256SUMS"),
            format!("{digest}  evil.zip\n").into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "signing-key.asc".to_owned(),
            b"not a key".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}_darwin_arm64.zip"),
            b"not a zip".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}_linux_amd64.zip"),
            zip.clone(),
            StatusCode::CONFLICT,
        ),
    ] {
        let answer = put(file.clone(), body).await;
        assert_eq!(answer.status, status, "{file}: {:?}", answer.json());
    }
    // SHA256SUMS that lists the zip with another digest is refused; so is a zip the stored sums
    // list with another digest. The release stays incomplete, unlisted.
    let wrong = format!("{}  {base}_linux_amd64.zip\n", "0".repeat(64));
    let refused = put(format!("{base}_SHA256SUMS"), wrong.into_bytes()).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.json()
    );
    let manifest = br#"{"version":1,"metadata":{"protocol_versions":["6.0"]}}"#.to_vec();
    let manifest_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest));
    let sums = format!(
        "{digest}  {base}_linux_amd64.zip\n{digest}  {base}_darwin_arm64.zip\n{manifest_digest}  {base}_manifest.json\n"
    );
    assert_eq!(
        put(format!("{base}_SHA256SUMS"), sums.into_bytes())
            .await
            .status,
        StatusCode::CREATED
    );
    let mismatch = put(format!("{base}_linux_arm64.zip"), zip.clone()).await;
    assert_eq!(
        mismatch.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        mismatch.json()
    );
    for (file, body) in [
        (format!("{base}_SHA256SUMS.sig"), vec![1u8; 300]),
        ("signing-key.asc".to_owned(), armored_key()),
        (format!("{base}_manifest.json"), manifest.clone()),
    ] {
        assert_eq!(
            put(file.clone(), body).await.status,
            StatusCode::CREATED,
            "{file}"
        );
    }
    // A document over its bound is refused before it is stored.
    assert_eq!(
        put(format!("{base}_SHA256SUMS.sig"), vec![1u8; 70_000])
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let versions = send(
        &app,
        Method::GET,
        &format!("{PROVIDER}/versions"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        versions.json(),
        json!({"versions": [{"version": "1.0.0", "protocols": ["6.0"], "platforms": [{"os": "linux", "arch": "amd64"}]}]})
    );
    // Corrected sums (a new version: files are immutable) give a download document.
    let other = "terraform-provider-hello_1.0.1";
    for (file, body) in [
        (format!("{other}_linux_amd64.zip"), zip.clone()),
        (
            format!("{other}_SHA256SUMS"),
            format!("{digest}  {other}_linux_amd64.zip\n").into_bytes(),
        ),
        (format!("{other}_SHA256SUMS.sig"), vec![1u8; 300]),
        ("signing-key.asc".to_owned(), armored_key()),
    ] {
        let answer = send(
            &app,
            Method::PUT,
            &format!("{PROVIDER}/1.0.1/{file}"),
            None,
            body,
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{file}");
    }
    let download = send(
        &app,
        Method::GET,
        &format!("{PROVIDER}/1.0.1/download/linux/amd64"),
        None,
        Vec::new(),
    )
    .await;
    let document = download.json();
    assert_eq!(document["shasum"], digest);
    assert_eq!(document["filename"], format!("{other}_linux_amd64.zip"));
    assert_eq!(
        document["signing_keys"]["gpg_public_keys"][0]["key_id"]
            .as_str()
            .unwrap()
            .len(),
        16
    );
    let url = document["download_url"]
        .as_str()
        .unwrap()
        .strip_prefix("http://tf.test")
        .unwrap()
        .to_owned();
    assert_eq!(
        send(&app, Method::GET, &url, None, Vec::new()).await.body,
        zip
    );
    assert_eq!(
        send(
            &app,
            Method::GET,
            &format!("{PROVIDER}/1.0.1/download/darwin/arm64"),
            None,
            Vec::new()
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}
