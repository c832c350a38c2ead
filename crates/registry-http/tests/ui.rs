//! The web UI in-process: each page's status and values, escaping of hostile annotations and
//! READMEs, sorting and paging of tags on the server, login sessions, CSRF, and deletes only
//! where the visitor may.
#![cfg(all(feature = "ui", feature = "npm"))]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::blob::once_stream;
use registry_core::manifest::{OCI_INDEX, OCI_MANIFEST};
use registry_core::{
    Actor, Digest, Grant, MetadataStore, NamePattern, OciRegistry, Packages, Reference,
    RepositoryName, Role, Tag, VersionStatus,
};
use registry_http::app::Application;
use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};
use tower::ServiceExt;

const HOSTILE: &str = "<script>alert('annotation')</script>";

struct Stores {
    registry: OciRegistry,
    packages: Packages,
}

fn stores() -> Stores {
    let blobs = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    Stores {
        registry: OciRegistry::new(Arc::clone(&blobs) as _, Arc::clone(&metadata)),
        packages: Packages::new(blobs, metadata),
    }
}

fn grant(pattern: &str, role: Role) -> Grant {
    Grant {
        pattern: NamePattern::parse(pattern).unwrap(),
        role,
    }
}

fn users() -> Arc<StaticUsers> {
    let hash = hash_password("secret-pw").unwrap();
    let user = |grants| StaticUser {
        password_hash: hash.clone(),
        grants,
    };
    let users = HashMap::from([
        ("reader".to_owned(), user(vec![grant("*", Role::Reader)])),
        (
            "maint".to_owned(),
            user(vec![
                grant("team/*", Role::Maintainer),
                grant("js", Role::Maintainer),
            ]),
        ),
    ]);
    Arc::new(StaticUsers::new(users, Some(vec![grant("public/*", Role::Reader)])).unwrap())
}

fn open_app(stores: &Stores) -> Router {
    Application::new(stores.registry.clone(), stores.packages.clone()).router()
}

fn secured_app(stores: &Stores) -> Router {
    Application::new(stores.registry.clone(), stores.packages.clone())
        .auth(Auth::basic("registry", users()))
        .router()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn csrf(&self) -> String {
        let at = self.text.find("name=\"csrf\" value=\"").expect("a form") + 19;
        self.text[at..at + 64].to_owned()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookies: &str,
    form: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.test");
    if !cookies.is_empty() {
        request = request.header("cookie", cookies);
    }
    let body = if form.is_empty() {
        Body::empty()
    } else {
        request = request.header("content-type", "application/x-www-form-urlencoded");
        Body::from(serde_urlencoded::to_string(form).unwrap())
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str, cookies: &str) -> Reply {
    send(app, Method::GET, uri, cookies, &[]).await
}

/// Asserts the status of a page.
async fn expect_status(app: &Router, uri: &str, cookies: &str, status: StatusCode) {
    let reply = get(app, uri, cookies).await;
    assert_eq!(reply.status, status, "{uri}: {}", reply.text);
}

async fn blob(registry: &OciRegistry, repository: &RepositoryName, bytes: Bytes) -> Value {
    let digest = Digest::sha256(&bytes);
    registry
        .put_blob(repository, &digest, once_stream(bytes.clone()))
        .await
        .unwrap();
    json!({ "digest": digest, "size": bytes.len() })
}

async fn manifest(
    registry: &OciRegistry,
    repository: &RepositoryName,
    reference: &str,
    document: Value,
    media_type: &str,
) -> Digest {
    let bytes = Bytes::from(document.to_string());
    let digest = Digest::sha256(&bytes);
    let reference = match Tag::parse(reference) {
        Ok(tag) => Reference::Tag(tag),
        Err(_) => Reference::Digest(digest.clone()),
    };
    registry
        .put_manifest(
            repository,
            &reference,
            bytes,
            Some(media_type),
            &Actor::trusted(),
        )
        .await
        .unwrap();
    digest
}

/// An image for a platform, with a config that has history, pushed under `tag`.
async fn image(registry: &OciRegistry, repository: &str, tag: &str, arch: &str) -> Digest {
    let repository = RepositoryName::parse(repository).unwrap();
    let config = json!({
        "architecture": arch, "os": "linux", "created": "2026-01-02T03:04:05Z",
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": [
            { "created": "2026-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) ADD file:<b>rootfs</b> in /" },
            { "created": "2026-01-02T03:04:06Z", "created_by": "CMD [\"sh\"]", "empty_layer": true },
        ],
    });
    let config = blob(registry, &repository, Bytes::from(config.to_string())).await;
    let layer = blob(
        registry,
        &repository,
        Bytes::from(format!("layer of {tag} {arch}").repeat(100)),
    )
    .await;
    manifest(
        registry,
        &repository,
        tag,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config["digest"], "size": config["size"] },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer["digest"], "size": layer["size"] }],
            "annotations": { "org.opencontainers.image.description": HOSTILE },
        }),
        OCI_MANIFEST,
    )
    .await
}

/// A signature-like referrer of `subject`.
async fn referrer(registry: &OciRegistry, repository: &str, subject: &Digest) -> Digest {
    let repository = RepositoryName::parse(repository).unwrap();
    let empty = blob(registry, &repository, Bytes::from_static(b"{}")).await;
    let payload = blob(registry, &repository, Bytes::from_static(b"signature")).await;
    manifest(
        registry,
        &repository,
        "",
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty["digest"], "size": 2 },
            "layers": [{ "mediaType": "application/octet-stream", "digest": payload["digest"], "size": payload["size"] }],
            "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 1 },
            "annotations": { "org.opencontainers.image.created": "2026-02-03T04:05:06Z", "note": HOSTILE },
        }),
        OCI_MANIFEST,
    )
    .await
}

#[tokio::test]
async fn image_pages_show_tags_platforms_layers_history_and_referrers() {
    let stores = stores();
    let registry = &stores.registry;
    let amd = image(registry, "team/app", "v1", "amd64").await;
    let arm = image(registry, "team/app", "v1-arm", "arm64").await;
    let repository = RepositoryName::parse("team/app").unwrap();
    let size = |digest: &Digest| {
        let digest = digest.clone();
        let registry = registry.clone();
        let repository = repository.clone();
        async move {
            registry
                .manifest(&repository, &Reference::Digest(digest))
                .await
                .unwrap()
                .bytes
                .len()
        }
    };
    let (amd_size, arm_size) = (size(&amd).await, size(&arm).await);
    // Pushed later than the images, to the millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let index = manifest(
        registry,
        &repository,
        "multi",
        json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                { "mediaType": OCI_MANIFEST, "digest": amd, "size": amd_size, "platform": { "os": "linux", "architecture": "amd64" } },
                { "mediaType": OCI_MANIFEST, "digest": arm, "size": arm_size, "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
            ],
        }),
        OCI_INDEX,
    )
    .await;
    let signature = referrer(registry, "team/app", &amd).await;
    let app = open_app(&stores);

    let root = get(&app, "/", "").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.headers["location"], "/ui/");

    let home = get(&app, "/ui/", "").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.text.contains("href=\"/ui/r/team/app\""),
        "{}",
        home.text
    );
    assert!(home.text.contains("href=\"/ui/ns/team\""), "{}", home.text);
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(home.headers["x-frame-options"], "DENY");

    let tags = get(&app, "/ui/r/team/app", "").await;
    assert_eq!(tags.status, StatusCode::OK);
    for shown in [
        "v1-arm",
        "multi",
        "linux/amd64",
        "linux/arm64",
        "linux/arm64/v8",
        "podman pull registry.test/team/app:",
    ] {
        assert!(tags.text.contains(shown), "{shown}: {}", tags.text);
    }
    // Newest first by default: the index was pushed last.
    let first = tags.text.find(">multi<").unwrap();
    assert!(first < tags.text.find(">v1<").unwrap());
    // An open registry lets anyone delete: the boxes are there.
    assert!(tags.text.contains("name=\"tag\" value=\"v1\""));

    let page = get(
        &app,
        &format!("/ui/r/team/app/-/manifests/{amd}?tag=v1"),
        "",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "linux/amd64",
        "CMD [&quot;sh&quot;]",
        "no layer",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "2026-02-03T04:05:06Z",
        &format!("podman pull registry.test/team/app@{amd}"),
        "podman pull registry.test/team/app:v1",
        &signature.as_str()[..19],
    ] {
        assert!(page.text.contains(shown), "{shown}: {}", page.text);
    }
    // An image shows no artifact type (its config type is what the referrers API reports).
    assert!(
        !page.text.contains("<dt>Artifact type</dt>"),
        "{}",
        page.text
    );
    // Hostile values are text.
    assert!(!page.text.contains("<script>alert"), "{}", page.text);
    assert!(
        page.text
            .contains("&lt;script&gt;alert('annotation')&lt;/script&gt;")
    );
    assert!(
        page.text.contains("ADD file:&lt;b&gt;rootfs&lt;/b&gt;"),
        "{}",
        page.text
    );

    let page = get(&app, &format!("/ui/r/team/app/-/manifests/{index}"), "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("linux/arm64/v8"));
    assert!(
        page.text
            .contains(&format!("/ui/r/team/app/-/manifests/{arm}"))
    );

    let referrer_page = get(&app, &format!("/ui/r/team/app/-/manifests/{signature}"), "").await;
    assert!(
        referrer_page.text.contains("Artifact type"),
        "an artifact shows its type"
    );
    assert!(
        referrer_page
            .text
            .contains(&format!("/ui/r/team/app/-/manifests/{amd}")),
        "subject link"
    );
    assert!(!referrer_page.text.contains("<script>alert"));

    let usage = get(&app, "/ui/r/team/app/-/usage", "").await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(usage.text.contains("Manifests"));
    let namespace = get(&app, "/ui/ns/team", "").await;
    assert!(namespace.text.contains("href=\"/ui/r/team/app\""));
    expect_status(&app, "/ui/ns/team/-/usage", "", StatusCode::OK).await;

    for (uri, status) in [
        ("/ui/r/nothing/here", StatusCode::NOT_FOUND),
        ("/ui/r/Bad_Name", StatusCode::NOT_FOUND),
        (
            "/ui/r/team/app/-/manifests/sha256:abc",
            StatusCode::NOT_FOUND,
        ),
        (
            &format!("/ui/r/team/other/-/manifests/{amd}"),
            StatusCode::NOT_FOUND,
        ),
        ("/ui/r/team/app?sort=size", StatusCode::BAD_REQUEST),
        ("/ui/r/team/app?after=nonsense", StatusCode::BAD_REQUEST),
        ("/ui/nowhere", StatusCode::NOT_FOUND),
        ("/ui/static/secret.txt", StatusCode::NOT_FOUND),
    ] {
        let reply = get(&app, uri, "").await;
        assert_eq!(reply.status, status, "{uri}: {}", reply.text);
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{uri}"
        );
    }
    // The API's 404s stay the API's.
    let api = get(&app, "/v2/nothing/manifests/latest", "").await;
    assert!(
        api.text.contains("MANIFEST_UNKNOWN") || api.text.contains("NAME_UNKNOWN"),
        "{}",
        api.text
    );
}

#[tokio::test]
async fn tags_are_sorted_filtered_and_paged_on_the_server() {
    let stores = stores();
    let repository = RepositoryName::parse("big/app").unwrap();
    let digest = image(&stores.registry, "big/app", "t000", "amd64").await;
    for i in 1..120 {
        let tag = Tag::parse(&format!("t{i:03}")).unwrap();
        let guard = stores
            .registry
            .tag_guard(&repository, &Actor::trusted())
            .await
            .unwrap();
        stores
            .registry
            .metadata()
            .put_tag(&repository, &tag, &digest, &guard)
            .await
            .unwrap();
        if i % 40 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let app = open_app(&stores);
    let rows = |text: &str| -> Vec<String> {
        text.match_indices("name=\"tag\" value=\"")
            .map(|(at, m)| text[at + m.len()..].split('"').next().unwrap().to_owned())
            .collect()
    };
    let by_name = get(&app, "/ui/r/big/app?sort=name", "").await;
    let first = rows(&by_name.text);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "t000");
    assert_eq!(first[49], "t049");
    let next = by_name
        .text
        .split("rel=\"next\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let second = get(&app, &next, "").await;
    assert_eq!(rows(&second.text)[0], "t050");
    let previous = second
        .text
        .split("rel=\"prev\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert_eq!(rows(&get(&app, &previous, "").await.text), first);

    let descending = get(&app, "/ui/r/big/app?sort=-name", "").await;
    assert_eq!(rows(&descending.text)[0], "t119");
    let newest = get(&app, "/ui/r/big/app?sort=-published", "").await;
    assert_eq!(rows(&newest.text)[0], "t119");
    let oldest = get(&app, "/ui/r/big/app?sort=published", "").await;
    assert_eq!(rows(&oldest.text)[0], "t000");

    let filtered = get(&app, "/ui/r/big/app?sort=name&contains=11", "").await;
    assert_eq!(
        rows(&filtered.text),
        [
            "t011", "t110", "t111", "t112", "t113", "t114", "t115", "t116", "t117", "t118", "t119"
        ]
    );
    assert!(!filtered.text.contains("rel=\"next\""));
}

fn npm_publish(name: &str, version: &str, readme: &str) -> Value {
    let tarball = {
        let mut builder = tar::Builder::new(Vec::new());
        let manifest = json!({ "name": name, "version": version }).to_string();
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        header.set_path("package/package.json").unwrap();
        header.set_cksum();
        builder.append(&header, manifest.as_bytes()).unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
        gzip.finish().unwrap()
    };
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tarball))
    );
    json!({
        "_id": name, "name": name, "dist-tags": { "latest": version },
        "versions": { version: { "name": name, "version": version, "description": HOSTILE,
                                 "readme": readme, "dist": { "integrity": integrity } } },
        "_attachments": { format!("{name}-{version}.tgz"): {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(&tarball),
            "length": tarball.len() } },
    })
}

#[tokio::test]
async fn package_pages_show_versions_files_readme_and_install_command() {
    let stores = stores();
    let app = open_app(&stores);
    let readme = "# Demo\n\nUse it.\n\n<img src=x onerror=alert('readme')>\n\n[click](javascript:alert('link'))\n\n<script>alert('readme')</script>\n";
    for version in ["1.0.0", "1.1.0"] {
        let reply = send_json(
            &app,
            "/npm/js/demo-pkg",
            &npm_publish("demo-pkg", version, readme),
        )
        .await;
        assert!(reply.is_success(), "{reply}");
    }
    stores
        .packages
        .set_version_status(
            registry_formats::rules(registry_core::PackageFormat::Npm).unwrap(),
            "js",
            "demo-pkg",
            "1.0.0",
            &VersionStatus::Deprecated("use 1.1.0 <b>now</b>".into()),
            None,
        )
        .await
        .unwrap();

    let home = get(&app, "/ui/", "").await;
    assert!(
        home.text.contains("href=\"/ui/packages/js\""),
        "{}",
        home.text
    );
    let repository = get(&app, "/ui/packages/js", "").await;
    assert_eq!(repository.status, StatusCode::OK);
    assert!(
        repository
            .text
            .contains("href=\"/ui/packages/js?name=demo-pkg\""),
        "{}",
        repository.text
    );
    let package = get(&app, "/ui/packages/js?name=demo-pkg", "").await;
    assert_eq!(package.status, StatusCode::OK);
    assert!(package.text.contains("deprecated"), "{}", package.text);
    assert!(package.text.contains("latest"));
    // The description is text.
    assert!(
        package
            .text
            .contains("&lt;script&gt;alert('annotation')&lt;/script&gt;"),
        "{}",
        package.text
    );
    assert!(!package.text.contains("<script>alert"));
    assert!(
        package.text.find(">1.1.0<").unwrap() < package.text.find(">1.0.0<").unwrap(),
        "newest first"
    );

    let version = get(&app, "/ui/packages/js?name=demo-pkg&version=1.0.0", "").await;
    assert_eq!(version.status, StatusCode::OK);
    for shown in [
        "npm install --registry http://registry.test/npm/js/ demo-pkg@1.0.0",
        "demo-pkg-1.0.0.tgz",
        "<h1>Demo</h1>",
        "use 1.1.0 &lt;b&gt;now&lt;/b&gt;",
        "Delete version 1.0.0",
    ] {
        assert!(version.text.contains(shown), "{shown}: {}", version.text);
    }
    let lowered = version.text.to_ascii_lowercase();
    assert!(!lowered.contains("<img"), "{}", version.text);
    assert!(!lowered.contains("javascript:"), "{}", version.text);
    assert!(!lowered.contains("<script>alert"), "{}", version.text);
    assert!(
        version
            .text
            .contains("&lt;script&gt;alert('readme')&lt;/script&gt;")
    );

    // Deleting a version: confirmation first, then gone.
    let cookie = version.cookie("registry_browser").unwrap();
    let cookie = cookie.split(';').next().unwrap();
    let csrf = version.csrf();
    let confirm = send(
        &app,
        Method::POST,
        "/ui/packages/js",
        cookie,
        &[("csrf", &csrf), ("name", "demo-pkg"), ("version", "1.0.0")],
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.text.contains("name=\"confirmed\" value=\"yes\""));
    let done = send(
        &app,
        Method::POST,
        "/ui/packages/js",
        cookie,
        &[
            ("csrf", &csrf),
            ("name", "demo-pkg"),
            ("version", "1.0.0"),
            ("confirmed", "yes"),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let after = get(&app, "/ui/packages/js?name=demo-pkg", "").await;
    assert!(
        !after.text.contains(">1.0.0<") && after.text.contains(">1.1.0<"),
        "{}",
        after.text
    );
    expect_status(
        &app,
        "/ui/packages/js?name=demo-pkg&version=1.0.0",
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_status(&app, "/ui/packages/nothing", "", StatusCode::NOT_FOUND).await;
    expect_status(
        &app,
        "/ui/packages/js?name=absent",
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
}

struct JsonReply(StatusCode, String);

impl JsonReply {
    fn is_success(&self) -> bool {
        self.0.is_success()
    }
}

impl std::fmt::Display for JsonReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

async fn send_json(app: &Router, uri: &str, body: &Value) -> JsonReply {
    let request = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("host", "registry.test")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    JsonReply(status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Logs in through the form; answers the session cookie (`name=value`).
async fn log_in(app: &Router, user: &str, password: &str) -> Result<String, Reply> {
    let form = get(app, "/ui/login", "").await;
    let browser = form.cookie("registry_browser").unwrap();
    let browser = browser.split(';').next().unwrap().to_owned();
    let reply = send(
        app,
        Method::POST,
        "/ui/login",
        &browser,
        &[
            ("csrf", &form.csrf()),
            ("user", user),
            ("password", password),
            ("next", "/ui/r/team/app"),
        ],
    )
    .await;
    match reply.cookie("registry_session") {
        Some(cookie) if reply.status == StatusCode::SEE_OTHER => {
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
            assert_eq!(reply.headers["location"], "/ui/r/team/app");
            Ok(cookie.split(';').next().unwrap().to_owned())
        }
        _ => Err(reply),
    }
}

#[tokio::test]
async fn visitors_see_what_their_grants_allow_and_forms_need_csrf() {
    let stores = stores();
    image(&stores.registry, "team/app", "v1", "amd64").await;
    image(&stores.registry, "team/app", "v2", "amd64").await;
    image(&stores.registry, "public/base", "v1", "amd64").await;
    let app = secured_app(&stores);

    // Anonymous: only what the anonymous grants reach.
    let home = get(&app, "/ui/", "").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.text.contains("public/base") && !home.text.contains("team/app"),
        "{}",
        home.text
    );
    let private = get(&app, "/ui/r/team/app", "").await;
    assert_eq!(private.status, StatusCode::UNAUTHORIZED);
    assert!(!private.text.contains("v1"));
    let public = get(&app, "/ui/r/public/base", "").await;
    assert_eq!(public.status, StatusCode::OK);
    assert!(
        !public.text.contains("name=\"tag\""),
        "no delete for anonymous readers"
    );
    expect_status(&app, "/ui/cleanup", "", StatusCode::UNAUTHORIZED).await;
    expect_status(&app, "/ui/ns/public/-/usage", "", StatusCode::OK).await;
    expect_status(&app, "/ui/ns/team/-/usage", "", StatusCode::UNAUTHORIZED).await;

    // Wrong passwords, missing and forged CSRF tokens.
    let refused = log_in(&app, "maint", "wrong").await.unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.text.contains("user name or password is wrong"));
    let form = get(&app, "/ui/login", "").await;
    let browser = form.cookie("registry_browser").unwrap();
    let browser = browser.split(';').next().unwrap();
    for (cookie, csrf) in [
        ("", form.csrf()),
        (browser, "0".repeat(64)),
        (browser, String::new()),
    ] {
        let reply = send(
            &app,
            Method::POST,
            "/ui/login",
            cookie,
            &[
                ("csrf", &csrf),
                ("user", "maint"),
                ("password", "secret-pw"),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{cookie:?} {csrf:?}");
        assert!(reply.cookie("registry_session").is_none());
    }

    // A reader sees everything and may delete nothing.
    let reader = log_in(&app, "reader", "secret-pw")
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let page = get(&app, "/ui/r/team/app", &reader).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(">v1<") && !page.text.contains("name=\"tag\""));
    assert!(page.text.contains(">reader<"), "the user is shown");
    let csrf = page.csrf();
    let refused = send(
        &app,
        Method::POST,
        "/ui/r/team/app/-/delete-tags",
        &reader,
        &[("csrf", &csrf), ("tag", "v1"), ("confirmed", "yes")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        get(&app, "/ui/r/team/app", &reader)
            .await
            .text
            .contains(">v1<")
    );

    // A maintainer deletes after confirming, with the session's CSRF token only.
    let maint = log_in(&app, "maint", "secret-pw")
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let page = get(&app, "/ui/r/team/app", &maint).await;
    assert!(page.text.contains("name=\"tag\" value=\"v1\""));
    let csrf = page.csrf();
    let cross = send(
        &app,
        Method::POST,
        "/ui/r/team/app/-/delete-tags",
        &maint,
        &[("csrf", &csrf), ("tag", "v1"), ("confirmed", "yes")],
    )
    .await;
    assert_eq!(
        cross.status,
        StatusCode::OK,
        "same origin without Origin header is fine: {}",
        cross.text
    );
    assert!(cross.text.contains("Deleted 1 of 1"), "{}", cross.text);
    let stolen = send(
        &app,
        Method::POST,
        "/ui/r/team/app/-/delete-tags",
        &maint,
        &[
            ("csrf", &get(&app, "/ui/", &reader).await.csrf()),
            ("tag", "v2"),
            ("confirmed", "yes"),
        ],
    )
    .await;
    assert_eq!(
        stolen.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    let confirm = send(
        &app,
        Method::POST,
        "/ui/r/team/app/-/delete-tags",
        &maint,
        &[("csrf", &csrf), ("tag", "v2")],
    )
    .await;
    assert!(confirm.text.contains("Delete 1 tag"), "{}", confirm.text);
    assert!(
        get(&app, "/ui/r/team/app", &maint)
            .await
            .text
            .contains(">v2<"),
        "not deleted before confirming"
    );
    let page = get(&app, "/ui/r/team/app", &maint).await;
    assert!(!page.text.contains(">v1<"));

    // A form from another origin is refused.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/ui/r/team/app/-/delete-tags")
        .header("host", "registry.test")
        .header("origin", "http://evil.test")
        .header("cookie", &maint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}&tag=v2&confirmed=yes")))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert!(
        get(&app, "/ui/r/team/app", &maint)
            .await
            .text
            .contains(">v2<")
    );

    // Logging out revokes the session everywhere.
    let reply = send(&app, Method::POST, "/ui/logout", &maint, &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(
        reply
            .cookie("registry_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    expect_status(&app, "/ui/r/team/app", &maint, StatusCode::UNAUTHORIZED).await;
    // The session is an access token of the user's, listed with the others (then revoked).
    let tokens = stores.packages.tokens().list_tokens("maint").await.unwrap();
    assert!(tokens.is_empty(), "{tokens:?}");
    assert_eq!(
        stores
            .packages
            .tokens()
            .list_tokens("reader")
            .await
            .unwrap()[0]
            .label,
        "web session"
    );
    // A made-up session is nobody.
    let forged = format!("registry_session=rgt_{}", "a".repeat(64));
    expect_status(&app, "/ui/r/team/app", &forged, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn sessions_are_secure_cookies_behind_tls_and_pages_hold_no_secret() {
    let stores = stores();
    let app = Application::new(stores.registry.clone(), stores.packages.clone())
        .auth(Auth::basic("registry", users()))
        .external_url(
            registry_http::external_url::ExternalUrl::parse("https://registry.example").unwrap(),
        )
        .router();
    let form = get(&app, "/ui/login", "").await;
    assert!(
        form.cookie("__Host-registry_browser")
            .unwrap()
            .contains("; Secure")
    );
    let browser = form.cookie("__Host-registry_browser").unwrap();
    let browser = browser.split(';').next().unwrap().to_owned();
    let reply = send(
        &app,
        Method::POST,
        "/ui/login",
        &browser,
        &[
            ("csrf", &form.csrf()),
            ("user", "maint"),
            ("password", "secret-pw"),
        ],
    )
    .await;
    let session = reply.cookie("__Host-registry_session").unwrap();
    assert!(
        session.contains("; Secure") && session.contains("HttpOnly"),
        "{session}"
    );
    let cookie = session.split(';').next().unwrap();
    let secret = cookie.trim_start_matches("__Host-registry_session=");
    // Forms from the https origin pass; the page never shows the session's secret.
    let page = get(&app, "/ui/", cookie).await;
    assert!(!page.text.contains(secret));
    assert!(page.text.contains(">maint<"), "logged in: {}", page.text);
    // Over https only the prefixed cookie counts: one planted without the prefix is nobody.
    let planted = format!("registry_session={secret}");
    assert!(!get(&app, "/ui/", &planted).await.text.contains(">maint<"));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/ui/logout")
        .header("origin", "https://registry.example")
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={}", page.csrf())))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn cleanup_policies_are_dry_run_before_they_delete() {
    let stores = stores();
    for tag in ["keep-1", "old-1", "old-2"] {
        image(&stores.registry, "team/app", tag, "amd64").await;
    }
    let policy: registry_core::CleanupPolicy = serde_json::from_value(json!({
        "name": "drop-old", "repositories": "team/*", "name_regex": "old-.*"
    }))
    .unwrap();
    stores.registry.put_cleanup_policy(&policy).await.unwrap();
    let app = open_app(&stores);
    let overview = get(&app, "/ui/cleanup", "").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview.text.contains("drop-old") && overview.text.contains("old-.*"),
        "{}",
        overview.text
    );
    let dry = get(&app, "/ui/cleanup?dry_run=drop-old", "").await;
    assert_eq!(dry.status, StatusCode::OK);
    assert!(
        dry.text.contains("Would delete <strong>2</strong>"),
        "{}",
        dry.text
    );
    assert!(dry.text.contains(">old-1<") && !dry.text.contains(">keep-1<"));
    assert!(
        get(&app, "/ui/r/team/app", "")
            .await
            .text
            .contains(">old-1<"),
        "a dry run deletes nothing"
    );
    let cookie = dry.cookie("registry_browser").unwrap();
    let cookie = cookie.split(';').next().unwrap();
    let csrf = dry.csrf();
    let listed: Vec<String> = dry
        .text
        .match_indices("name=\"tag\" value=\"")
        .map(|(at, m)| {
            dry.text[at + m.len()..]
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(listed.len(), 2, "{}", dry.text);
    // A tag of a repository the policy does not cover, or without its digest, is refused.
    for forged in [
        "other/app:keep-1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "team/app:keep-1",
    ] {
        let reply = send(
            &app,
            Method::POST,
            "/ui/cleanup?policy=drop-old",
            cookie,
            &[("csrf", &csrf), ("tag", forged)],
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{forged}: {}",
            reply.text
        );
    }
    // old-2 moves after the dry run: it is kept.
    let moved = image(&stores.registry, "team/app", "old-2-new", "arm64").await;
    let repository = RepositoryName::parse("team/app").unwrap();
    let guard = stores
        .registry
        .tag_guard(&repository, &Actor::trusted())
        .await
        .unwrap();
    stores
        .registry
        .metadata()
        .put_tag(&repository, &Tag::parse("old-2").unwrap(), &moved, &guard)
        .await
        .unwrap();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(listed.iter().map(|t| ("tag", t.as_str())));
    let ran = send(
        &app,
        Method::POST,
        "/ui/cleanup?policy=drop-old",
        cookie,
        &form,
    )
    .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text);
    assert!(ran.text.contains("Deleted 1 of 2 tags"), "{}", ran.text);
    assert!(
        ran.text.contains("kept: the policy does not select it"),
        "{}",
        ran.text
    );
    let tags = get(&app, "/ui/r/team/app", "").await;
    assert!(
        !tags.text.contains(">old-1<")
            && tags.text.contains(">keep-1<")
            && tags.text.contains(">old-2<")
    );
    // Without the policy, or with one that does not exist, nothing runs.
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/ui/cleanup",
            cookie,
            &[("csrf", &csrf)]
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/ui/cleanup?policy=nothing",
            cookie,
            &[("csrf", &csrf)]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    expect_status(
        &app,
        "/ui/cleanup?dry_run=nothing",
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_tags_page_reads_no_large_config_for_its_platform_column() {
    let stores = stores();
    let registry = &stores.registry;
    let repository = RepositoryName::parse("team/big-config").unwrap();
    let config = json!({
        "architecture": "s390x", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [] },
        "padding": "x".repeat(100 * 1024),
    });
    let config = blob(registry, &repository, Bytes::from(config.to_string())).await;
    let layer = blob(registry, &repository, Bytes::from_static(b"layer")).await;
    let digest = manifest(
        registry,
        &repository,
        "v1",
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config["digest"], "size": config["size"] },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer["digest"], "size": layer["size"] }],
        }),
        OCI_MANIFEST,
    )
    .await;
    let app = open_app(&stores);
    let tags = get(&app, "/ui/r/team/big-config", "").await;
    assert_eq!(tags.status, StatusCode::OK);
    assert!(
        tags.text.contains(">v1<") && !tags.text.contains("linux/s390x"),
        "{}",
        tags.text
    );
    let page = get(
        &app,
        &format!("/ui/r/team/big-config/-/manifests/{digest}"),
        "",
    )
    .await;
    assert!(
        page.text.contains("linux/s390x"),
        "the manifest's own page reads it"
    );
}

#[tokio::test]
async fn logins_behind_a_tls_proxy_and_again_and_again() {
    let stores = stores();
    let app = secured_app(&stores);
    // A proxy ends TLS: the browser's Origin is https, the registry sees http. The form passes.
    let form = get(&app, "/ui/login", "").await;
    let browser = form.cookie("registry_browser").unwrap();
    let browser = browser.split(';').next().unwrap().to_owned();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/ui/login")
        .header("host", "registry.test")
        .header("origin", "https://registry.test")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", &browser)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf={}&user=maint&password=secret-pw&next=%2Fui%2Fr%2Fteam%2Fapp%0D%0ASet-Cookie%3A%20x%3Dy",
            form.csrf()
        )))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // A `next` with control characters leads home.
    assert_eq!(response.headers()["location"], "/ui/");
    let first = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("registry_session="))
        .unwrap();
    expect_status(&app, "/ui/r/team/app", &first, StatusCode::NOT_FOUND).await;

    // Twelve more logins: the oldest sessions end, the token quota is never reached.
    let mut latest = String::new();
    for _ in 0..12 {
        latest = log_in(&app, "maint", "secret-pw")
            .await
            .unwrap_or_else(|r| panic!("{}", r.text));
    }
    let tokens = stores.packages.tokens().list_tokens("maint").await.unwrap();
    assert_eq!(tokens.len(), 10, "{tokens:?}");
    assert!(
        !get(&app, "/ui/", &first).await.text.contains(">maint<"),
        "the first session ended"
    );
    assert!(get(&app, "/ui/", &latest).await.text.contains(">maint<"));
}

/// Publishes a version through the package service, as a format's router would.
async fn publish(
    packages: &Packages,
    format: registry_core::PackageFormat,
    repository: &str,
    (name, version): (&str, &str),
    metadata: Value,
    sidecar: Option<&[u8]>,
) {
    let rules = registry_formats::rules(format).unwrap();
    let file = packages
        .store_bytes(Default::default(), Bytes::from(format!("{name} {version}")))
        .await
        .unwrap();
    let sidecar = match sidecar {
        Some(bytes) => Some(
            packages
                .store_bytes(Default::default(), Bytes::copy_from_slice(bytes))
                .await
                .unwrap()
                .blob,
        ),
        None => None,
    };
    packages
        .publish(
            rules,
            repository,
            None,
            registry_core::Release {
                name: name.to_owned(),
                version: version.to_owned(),
                metadata: metadata.to_string(),
                files: vec![registry_core::NewPackageFile {
                    name: format!("{name}-{version}.bin"),
                    blob: file.blob,
                    digests: file.digests,
                    sidecar,
                    attributes: Default::default(),
                }],
                tags: Vec::new(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn pypi_and_nuget_versions_show_their_readme_and_status_in_their_words() {
    let stores = stores();
    let packages = &stores.packages;
    let pypi = registry_core::PackageFormat::Pypi;
    let metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nSummary: <b>demo</b> summary\nDescription-Content-Type: text/markdown\n\n# Demo from PyPI\n\n<script>alert(1)</script>\n";
    publish(
        packages,
        pypi,
        "py",
        ("demo", "1.0"),
        json!({ "summary": "<b>demo</b> summary" }),
        Some(metadata),
    )
    .await;
    let rst = b"Metadata-Version: 2.1\nName: demo\nVersion: 2.0\nDescription-Content-Type: text/x-rst\n\nDemo\n====\n\n*emphasis*\n";
    publish(packages, pypi, "py", ("demo", "2.0"), json!({}), Some(rst)).await;
    packages
        .set_version_status(
            registry_formats::rules(pypi).unwrap(),
            "py",
            "demo",
            "1.0",
            &VersionStatus::Yanked("broken".into()),
            None,
        )
        .await
        .unwrap();
    let nuget = registry_core::PackageFormat::Nuget;
    publish(
        packages,
        nuget,
        "nu",
        ("Demo.Lib", "1.0.0"),
        json!({}),
        None,
    )
    .await;
    packages
        .set_version_status(
            registry_formats::rules(nuget).unwrap(),
            "nu",
            "Demo.Lib",
            "1.0.0",
            &VersionStatus::Hidden,
            None,
        )
        .await
        .unwrap();
    let app = open_app(&stores);

    let page = get(&app, "/ui/packages/py?name=demo&version=1.0", "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for shown in [
        "<h1>Demo from PyPI</h1>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;b&gt;demo&lt;/b&gt; summary",
        "yanked",
        "broken",
        "pip install --index-url http://registry.test/pypi/py/simple/ demo==1.0",
    ] {
        assert!(page.text.contains(shown), "{shown}: {}", page.text);
    }
    assert!(!page.text.contains("<script>alert"));
    // reStructuredText is shown as the text it is.
    let page = get(&app, "/ui/packages/py?name=demo&version=2.0", "").await;
    assert!(
        page.text.contains("<pre>Demo\n====\n\n*emphasis*\n</pre>"),
        "{}",
        page.text
    );

    let page = get(&app, "/ui/packages/nu?name=Demo.Lib", "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(">unlisted<"), "{}", page.text);
    let page = get(&app, "/ui/packages/nu?name=Demo.Lib&version=1.0.0", "").await;
    assert!(page.text.contains("nuget install Demo.Lib -Version 1.0.0 -Source http://registry.test/nuget/nu/v3/index.json"), "{}", page.text);
}

#[tokio::test]
async fn pages_name_no_repository_the_visitor_may_not_see() {
    let stores = stores();
    image(&stores.registry, "public/base", "v1", "amd64").await;
    let digest = Digest::sha256(b"x");
    for i in 0..10_050 {
        let name = RepositoryName::parse(&format!("hidden/r{i:05}")).unwrap();
        stores
            .registry
            .metadata()
            .link_blob(&name, &digest, 1)
            .await
            .unwrap();
    }
    image(&stores.registry, "zz/public-too", "v1", "amd64").await;
    let app = Application::new(stores.registry.clone(), stores.packages.clone())
        .auth(Auth::basic(
            "registry",
            Arc::new(
                StaticUsers::new(
                    HashMap::new(),
                    Some(vec![
                        grant("public/*", Role::Reader),
                        grant("zz/*", Role::Reader),
                    ]),
                )
                .unwrap(),
            ),
        ))
        .router();
    let home = get(&app, "/ui/", "").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(!home.text.contains("hidden"), "{}", home.text);
    // Ten thousand names the visitor may not see come first: the page stops, saying so, and
    // links the namespaces the visitor's grants name, where their repositories are listed.
    assert!(
        home.text
            .contains("stopped after reading 10000 repository names"),
        "{}",
        home.text
    );
    assert!(
        home.text.contains("href=\"/ui/ns/public\""),
        "{}",
        home.text
    );
    assert!(
        get(&app, "/ui/ns/public", "")
            .await
            .text
            .contains("public/base")
    );
    // Searching goes on from the last name shown, still naming nothing hidden.
    let search = get(&app, "/ui/?q=r0", "").await;
    assert!(!search.text.contains("hidden"), "{}", search.text);
    let namespace = get(&app, "/ui/ns/hidden", "").await;
    assert!(!namespace.text.contains("hidden/r"), "{}", namespace.text);
    // The namespace that is visible is listed from where it starts.
    assert!(
        get(&app, "/ui/ns/zz", "")
            .await
            .text
            .contains("zz/public-too")
    );
    assert!(
        get(&app, "/ui/ns/zz?q=public", "")
            .await
            .text
            .contains("zz/public-too")
    );
    assert!(
        !get(&app, "/ui/ns/zz?q=nothing", "")
            .await
            .text
            .contains("zz/public-too")
    );
}

#[tokio::test]
async fn ui_pages_never_count_as_failed_logins_and_hosts_are_checked() {
    use axum::extract::ConnectInfo;
    let stores = stores();
    image(&stores.registry, "team/app", "v1", "amd64").await;
    let app = secured_app(&stores);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("maint:secret-pw")
    );
    let from = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    let send_from = |uri: &str, host: &str| {
        let mut request = Request::builder()
            .uri(uri)
            .header("host", host)
            .header("authorization", &basic)
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(from));
        app.clone().oneshot(request)
    };
    // The UI ignores Authorization: its 401 pages are no failed password checks.
    for _ in 0..30 {
        let response = send_from("/ui/r/team/app", "registry.test").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let api = send_from("/v2/team/app/tags/list", "registry.test")
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK, "the address is not closed");

    // A Host that is no host name is not used in the commands a page offers.
    let mut request = Request::builder()
        .uri("/ui/r/team/app")
        .header("host", "evil$(id)`x`;|&")
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(from));
    let anonymous = secured_app(&stores);
    let _ = anonymous;
    let open = open_app(&stores);
    let reply = open.clone().oneshot(request).await.unwrap();
    let text = String::from_utf8_lossy(&reply.into_body().collect().await.unwrap().to_bytes())
        .into_owned();
    assert!(text.contains("podman pull 127.0.0.1/team/app:v1"), "{text}");
    assert!(!text.contains("evil"));
}

#[tokio::test]
async fn cleanup_policies_are_not_told_apart_by_those_who_may_not_run_them() {
    let stores = stores();
    image(&stores.registry, "team/app", "keep-1", "amd64").await;
    image(&stores.registry, "team/app", "old-1", "amd64").await;
    let policy: registry_core::CleanupPolicy = serde_json::from_value(json!({
        "name": "drop-old", "repositories": "team/*", "name_regex": "old-.*"
    }))
    .unwrap();
    stores.registry.put_cleanup_policy(&policy).await.unwrap();
    let app = secured_app(&stores);
    for name in ["drop-old", "nothing"] {
        let uri = format!("/ui/cleanup?dry_run={name}");
        expect_status(&app, &uri, "", StatusCode::UNAUTHORIZED).await;
    }
    let reader = log_in(&app, "reader", "secret-pw")
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    for name in ["drop-old", "nothing"] {
        let uri = format!("/ui/cleanup?dry_run={name}");
        expect_status(&app, &uri, &reader, StatusCode::FORBIDDEN).await;
    }
    expect_status(
        &app,
        "/ui/packages/Bad_Name",
        &reader,
        StatusCode::NOT_FOUND,
    )
    .await;

    // An open registry runs it; a hand-made form naming a tag the policy keeps deletes nothing.
    let app = open_app(&stores);
    let dry = get(&app, "/ui/cleanup?dry_run=drop-old", "").await;
    let cookie = dry.cookie("registry_browser").unwrap();
    let cookie = cookie.split(';').next().unwrap();
    let repository = RepositoryName::parse("team/app").unwrap();
    let kept = stores
        .registry
        .manifest(&repository, &Reference::Tag(Tag::parse("keep-1").unwrap()))
        .await
        .unwrap()
        .digest;
    let entry = format!("team/app:keep-1@{kept}");
    let ran = send(
        &app,
        Method::POST,
        "/ui/cleanup?policy=drop-old",
        cookie,
        &[("csrf", &dry.csrf()), ("tag", &entry)],
    )
    .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text);
    assert!(
        ran.text.contains("Deleted 0 of 1 tags") && ran.text.contains("does not select it"),
        "{}",
        ran.text
    );
    assert!(
        get(&app, "/ui/r/team/app", "")
            .await
            .text
            .contains(">keep-1<")
    );
}

#[tokio::test]
async fn page_markers_must_be_names_the_visitor_may_see() {
    let stores = stores();
    image(&stores.registry, "public/base", "v1", "amd64").await;
    image(&stores.registry, "team/app", "v1", "amd64").await;
    let app = secured_app(&stores);
    for uri in [
        "/ui/?after=team/app",
        "/ui/?after=team/a",
        "/ui/?after=Not%20a%20name",
        "/ui/ns/public?after=team/app",
        "/ui/ns/team?after=public/base",
    ] {
        expect_status(&app, uri, "", StatusCode::BAD_REQUEST).await;
    }
    expect_status(&app, "/ui/?after=public/base", "", StatusCode::OK).await;
}

#[tokio::test]
async fn a_namespace_s_storage_counts_the_repository_of_its_name_only_for_its_readers() {
    let stores = stores();
    image(&stores.registry, "team/app", "v1", "amd64").await;
    let app = secured_app(&stores);
    let maint = log_in(&app, "maint", "secret-pw")
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    // maint holds team/*, which does not cover a repository named `team`.
    expect_status(&app, "/ui/ns/team/-/usage", &maint, StatusCode::OK).await;
    image(&stores.registry, "team", "v1", "amd64").await;
    let refused = get(&app, "/ui/ns/team/-/usage", &maint).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("maint:secret-pw")
    );
    let request = Request::builder()
        .uri("/api/v1/namespaces/team/usage")
        .header("authorization", basic)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_throttled_login_form_gets_a_page_with_the_ui_headers_and_retry_after() {
    use axum::extract::ConnectInfo;
    let stores = stores();
    let app = secured_app(&stores);
    let form = get(&app, "/ui/login", "").await;
    let browser = form.cookie("registry_browser").unwrap();
    let browser = browser.split(';').next().unwrap().to_owned();
    let csrf = form.csrf();
    let from = std::net::SocketAddr::from(([127, 0, 0, 2], 40000));
    let mut last = None;
    for i in 0..30 {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/ui/login")
            .header("host", "registry.test")
            .header("cookie", &browser)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "csrf={csrf}&user=nobody{i}&password=wrong"
            )))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(from));
        let response = app.clone().oneshot(request).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            last = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = last.expect("the address is closed after repeated failures");
    let headers = response.headers();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(headers.contains_key("content-security-policy"));
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["cache-control"], "no-store");
}
