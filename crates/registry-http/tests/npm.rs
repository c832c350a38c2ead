//! The npm router in-process: bad publishes get npm's error JSON and store nothing; packuments
//! full and abbreviated with ETag/304; duplicates per repository setting; a repository of
//! another format refuses npm.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use registry_core::{MetadataStore, Packages, RepositorySettings};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn tarball(name: &str, version: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let manifest = json!({ "name": name, "version": version }).to_string();
    let mut entries: Vec<(&str, &[u8])> = vec![("package/package.json", manifest.as_bytes())];
    entries.extend_from_slice(extra);
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let raw = path.as_bytes();
        header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
    gzip.finish().unwrap()
}

fn publish_body(name: &str, version: &str, tarball: &[u8]) -> Value {
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(tarball))
    );
    json!({
        "_id": name, "name": name, "dist-tags": { "latest": version },
        "versions": { version: { "name": name, "version": version, "description": format!("{name} {version}"),
                                 "dependencies": { "left-pad": "^1.0.0" }, "scripts": { "test": "x" },
                                 "dist": { "integrity": integrity } } },
        "_attachments": { format!("{name}-{version}.tgz"): {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len() } },
    })
}

fn setup() -> (Router, Arc<dyn MetadataStore>) {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::clone(&metadata));
    let app = registry_http::npm::router(packages.clone(), None)
        .merge(registry_http::generic::router(packages, None));
    (app, metadata)
}

async fn put(app: &Router, name: &str, body: &Value) -> Reply {
    let uri = format!("/npm/js/{}", name.replace('/', "%2f"));
    send(
        app,
        Method::PUT,
        &uri,
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await
}

#[tokio::test]
async fn bad_publishes_are_refused_and_store_nothing() {
    let (app, metadata) = setup();
    let good = tarball("pkg", "1.0.0", &[]);
    let cases = [
        (
            publish_body("pkg", "1.0.0", &tarball("pkg", "2.0.0", &[])),
            "package.json is pkg@2.0.0",
        ),
        (
            publish_body(
                "pkg",
                "1.0.0",
                &tarball("pkg", "1.0.0", &[("package/../../../etc/cron.d/x", b"x")]),
            ),
            "unsafe path",
        ),
        (
            publish_body("pkg", "1.0.0", b"\x1f\x8b\x08garbage"),
            "not a gzip tar",
        ),
        (publish_body("pkg", "1.0", &good), "semver"),
        (publish_body("Pkg", "1.0.0", &good), "the URL"),
        (
            {
                let mut body = publish_body("pkg", "1.0.0", &good);
                body["versions"]["1.0.0"]["dist"]["integrity"] = json!("sha512-AAAA");
                body
            },
            "dist.integrity",
        ),
    ];
    for (body, expected) in cases {
        let reply = put(&app, "pkg", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{expected}: {:?}",
            reply.body
        );
        let error = reply.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{expected:?} in {error:?}");
    }
    let reply = send(&app, Method::PUT, "/npm/js/pkg", &[], b"{not json".to_vec()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        metadata.package("js", "pkg").await.unwrap().is_none(),
        "nothing stored"
    );
    let reply = send(&app, Method::GET, "/npm/js/pkg", &[], vec![]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body["error"].as_str().unwrap().contains("not found"));
}

#[tokio::test]
async fn packuments_duplicates_and_formats() {
    let (app, metadata) = setup();
    let first = tarball("@demo/pkg", "1.0.0", &[]);
    let reply = put(
        &app,
        "@demo/pkg",
        &publish_body("@demo/pkg", "1.0.0", &first),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);

    let full = send(&app, Method::GET, "/npm/js/@demo%2fpkg", &[], vec![]).await;
    assert_eq!(full.status, StatusCode::OK);
    let manifest = &full.body["versions"]["1.0.0"];
    assert_eq!(
        manifest["scripts"]["test"], "x",
        "the full document keeps every field"
    );
    assert_eq!(
        manifest["dist"]["tarball"],
        "http://registry.test/npm/js/@demo/pkg/-/pkg-1.0.0.tgz"
    );
    assert_eq!(manifest["dist"]["shasum"].as_str().unwrap().len(), 40);
    assert!(full.body["_rev"].as_str().is_some() && full.body["time"]["1.0.0"].as_str().is_some());
    let abbreviated = send(
        &app,
        Method::GET,
        "/npm/js/@demo%2fpkg",
        &[(
            "accept",
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*",
        )],
        vec![],
    )
    .await;
    assert_eq!(
        abbreviated.headers["content-type"],
        "application/vnd.npm.install-v1+json"
    );
    let version = &abbreviated.body["versions"]["1.0.0"];
    assert_eq!(version["dependencies"]["left-pad"], "^1.0.0");
    assert!(version.get("scripts").is_none() && version.get("description").is_none());
    let etag = abbreviated.headers["etag"].to_str().unwrap().to_owned();
    let cached = send(
        &app,
        Method::GET,
        "/npm/js/@demo%2fpkg",
        &[
            ("accept", "application/vnd.npm.install-v1+json"),
            ("if-none-match", &etag),
        ],
        vec![],
    )
    .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    let tgz = app
        .clone()
        .oneshot(
            Request::get("/npm/js/@demo/pkg/-/pkg-1.0.0.tgz")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(tgz.status(), StatusCode::OK);
    assert_eq!(tgz.into_body().collect().await.unwrap().to_bytes(), first);

    // The same version again: 409; allowed once the repository takes duplicates.
    let second = tarball("@demo/pkg", "1.0.0", &[("package/extra.js", b"1")]);
    let reply = put(
        &app,
        "@demo/pkg",
        &publish_body("@demo/pkg", "1.0.0", &second),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap()
            .contains("previously published")
    );
    metadata
        .set_package_repository_settings(
            "js",
            &RepositorySettings {
                allow_duplicates: true,
                ..RepositorySettings::default()
            },
        )
        .await
        .unwrap();
    let reply = put(
        &app,
        "@demo/pkg",
        &publish_body("@demo/pkg", "1.0.0", &second),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let package = metadata.package("js", "@demo/pkg").await.unwrap().unwrap();
    assert_eq!(package.versions.len(), 1);
    assert_eq!(package.versions[0].files[0].blob.size, second.len() as u64);

    // A repository holds one format: generic uploads to "js" are refused.
    let reply = send(
        &app,
        Method::PUT,
        "/generic/js/tool/1.0.0/file",
        &[],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("holds npm packages")
    );

    // dist-tags over the API, and a tag that reads as a version is refused.
    let reply = send(
        &app,
        Method::PUT,
        "/npm/js/-/package/@demo%2fpkg/dist-tags/1.0.0",
        &[],
        b"\"1.0.0\"".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(
        &app,
        Method::PUT,
        "/npm/js/-/package/@demo%2fpkg/dist-tags/next",
        &[],
        b"\"9.9.9\"".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "no such version");
}

/// Behind a TLS proxy the request's `Host` does not say `https`: the configured external URL
/// decides every absolute URL — npm tarballs and the token realm alike — and `X-Forwarded-*`
/// headers a client sends decide nothing.
#[tokio::test]
async fn the_external_url_decides_absolute_urls() {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let users = registry_http::auth::StaticUsers::new(
        std::collections::HashMap::new(),
        Some(vec![registry_core::Grant {
            pattern: registry_core::NamePattern::parse("*").unwrap(),
            role: registry_core::Role::Developer,
        }]),
    )
    .unwrap();
    let issuer = registry_http::auth::TokenIssuer::new(
        "registry",
        b"a secret of at least thirty-two bytes",
        std::time::Duration::from_secs(60),
    );
    let app = registry_http::app::Application::new(
        registry_core::OciRegistry::new(blobs, metadata),
        packages.clone(),
    )
    .external_url(
        registry_http::external_url::ExternalUrl::parse("https://registry.example/").unwrap(),
    )
    .router();
    let open = registry_http::app::Application::new(
        registry_core::OciRegistry::new(
            Arc::new(MemoryBlobStore::new()),
            Arc::new(MemoryMetadataStore::new()),
        ),
        Packages::new(
            Arc::new(MemoryBlobStore::new()),
            Arc::new(MemoryMetadataStore::new()),
        ),
    )
    .auth(registry_http::auth::Auth::token(issuer, Arc::new(users)))
    .external_url(
        registry_http::external_url::ExternalUrl::parse("https://registry.example").unwrap(),
    )
    .router();

    let tgz = tarball("left-pad", "1.0.0", &[]);
    assert_eq!(
        put(&app, "left-pad", &publish_body("left-pad", "1.0.0", &tgz))
            .await
            .status,
        StatusCode::CREATED
    );
    let request = Request::builder()
        .uri("/npm/js/left-pad")
        .header("host", "internal:5000")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.example")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["versions"]["1.0.0"]["dist"]["tarball"],
        "https://registry.example/npm/js/left-pad/-/left-pad-1.0.0.tgz"
    );

    let request = Request::builder()
        .uri("/v2/")
        .header("host", "internal:5000")
        .body(Body::empty())
        .unwrap();
    let response = open.clone().oneshot(request).await.unwrap();
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("realm=\"https://registry.example/token\""),
        "{challenge}"
    );
}

/// The one-line harness serves the package APIs too.
#[tokio::test]
async fn the_harness_serves_every_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let registry = registry_http::serve::RunningRegistry::in_memory()
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(registry.addr())
        .await
        .unwrap();
    stream
        .write_all(
            b"PUT /generic/files/tool/1.0/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    registry.stop().await.unwrap();
}

#[tokio::test]
async fn removing_versions_needs_the_revision_and_real_versions() {
    let (app, metadata) = setup();
    for version in ["1.0.0", "1.1.0"] {
        let reply = put(
            &app,
            "kept",
            &publish_body("kept", version, &tarball("kept", version, &[])),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    for (document, status) in [
        // Lists no real version: read as removing every version without saying from where.
        (
            json!({ "name": "kept", "versions": { "bad..v": {} } }),
            StatusCode::BAD_REQUEST,
        ),
        // Removes 1.0.0, but without the _rev it was read at.
        (
            json!({ "name": "kept", "versions": { "1.1.0": {} } }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "kept", "versions": { "1.0.0": { "deprecated": 5 }, "1.1.0": {} } }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let reply = put(&app, "kept", &document).await;
        assert_eq!(reply.status, status, "{document}: {:?}", reply.body);
    }
    let package = metadata.package("js", "kept").await.unwrap().unwrap();
    assert_eq!(package.versions.len(), 2, "nothing was removed");
}

#[tokio::test]
async fn search_counts_every_match_and_refuses_what_it_cannot_read() {
    let (app, _) = setup();
    for name in ["alpha", "beta", "gamma"] {
        let reply = put(
            &app,
            name,
            &publish_body(name, "1.0.0", &tarball(name, "1.0.0", &[])),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let search = |query: &str| {
        let uri = format!("/npm/js/-/v1/search?{query}");
        let app = app.clone();
        async move { send(&app, Method::GET, &uri, &[], Vec::new()).await }
    };
    for (query, objects, total) in [
        ("text=&size=1", 1, 3),
        ("text=&size=20&from=100", 0, 3),
        ("text=a&size=20", 3, 3),
        ("text=mm&size=20", 1, 1),
        ("size=99999999999999999999999999", 3, 3),
    ] {
        let reply = search(query).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
        assert_eq!(
            reply.body["objects"].as_array().map(Vec::len),
            Some(objects),
            "{query}: {}",
            reply.body
        );
        assert_eq!(reply.body["total"], total, "{query}: {}", reply.body);
    }
    for query in ["text=%zz", "text=%E9", "size=abc", "from=-1"] {
        assert_eq!(
            search(query).await.status,
            StatusCode::BAD_REQUEST,
            "{query}"
        );
    }
}
