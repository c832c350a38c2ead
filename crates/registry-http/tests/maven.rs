//! The Maven router in-process: deploys as mvn makes them (file, checksums, metadata), checksums
//! computed here and uploaded ones verified, metadata rebuilt from what is stored (concurrent
//! deploys included), SNAPSHOT builds resolved to the newest, releases immutable, poms checked
//! against their path.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use registry_core::{MetadataStore, Packages};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use sha2::Digest as _;
use tower::ServiceExt;

fn setup() -> (Router, Arc<dyn MetadataStore>) {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::clone(&metadata));
    (registry_http::maven::router(packages, None), metadata)
}

async fn send(app: &Router, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(format!("/maven/releases/{path}"))
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

fn pom(group: &str, artifact: &str, version: &str) -> Vec<u8> {
    format!(
        "<project><modelVersion>4.0.0</modelVersion><groupId>{group}</groupId>\
         <artifactId>{artifact}</artifactId><version>{version}</version></project>"
    )
    .into_bytes()
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(<sha1::Sha1 as sha1::Digest>::digest(bytes))
}

/// Deploys a jar and its pom the way mvn does: each file, then its checksums; then metadata.
async fn deploy(app: &Router, dir: &str, file_base: &str, version: &str, jar: &[u8]) {
    let pom = pom("com.example", "hello", version);
    for (name, bytes) in [
        (format!("{file_base}.jar"), jar.to_vec()),
        (format!("{file_base}.pom"), pom),
    ] {
        let path = format!("{dir}/{name}");
        let (status, body) = send(app, Method::PUT, &path, bytes.clone()).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, _) = send(
            app,
            Method::PUT,
            &format!("{path}.sha1"),
            sha1_hex(&bytes).into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{path}.sha1");
    }
    let (status, _) = send(
        app,
        Method::PUT,
        "com/example/hello/maven-metadata.xml",
        b"<metadata/>".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_release_deploys_resolves_and_stays_immutable() {
    let (app, _) = setup();
    let jar = vec![42u8; 300_000];
    deploy(
        &app,
        "com/example/hello/1.0.0",
        "hello-1.0.0",
        "1.0.0",
        &jar,
    )
    .await;

    let (status, body) = send(
        &app,
        Method::GET,
        "com/example/hello/1.0.0/hello-1.0.0.jar",
        vec![],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, jar.len()));
    let (_, sha1) = send(
        &app,
        Method::GET,
        "com/example/hello/1.0.0/hello-1.0.0.jar.sha1",
        vec![],
    )
    .await;
    assert_eq!(String::from_utf8(sha1).unwrap(), sha1_hex(&jar));
    let (_, sha256) = send(
        &app,
        Method::GET,
        "com/example/hello/1.0.0/hello-1.0.0.jar.sha256",
        vec![],
    )
    .await;
    assert_eq!(
        String::from_utf8(sha256).unwrap(),
        hex::encode(sha2::Sha256::digest(&jar))
    );
    for checksum in ["md5", "sha512"] {
        let (status, body) = send(
            &app,
            Method::GET,
            &format!("com/example/hello/1.0.0/hello-1.0.0.jar.{checksum}"),
            vec![],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());
    }

    // An uploaded checksum is checked, never stored.
    let (status, _) = send(
        &app,
        Method::PUT,
        "com/example/hello/1.0.0/hello-1.0.0.jar.sha1",
        b"0000".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, sha1) = send(
        &app,
        Method::GET,
        "com/example/hello/1.0.0/hello-1.0.0.jar.sha1",
        vec![],
    )
    .await;
    assert_eq!(String::from_utf8(sha1).unwrap(), sha1_hex(&jar));

    // The client's metadata upload changed nothing: the registry's is served.
    let (status, xml) = send(
        &app,
        Method::GET,
        "com/example/hello/maven-metadata.xml",
        vec![],
    )
    .await;
    let xml = String::from_utf8(xml).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        xml.contains("<release>1.0.0</release>") && xml.contains("<version>1.0.0</version>"),
        "{xml}"
    );
    let (_, sha1) = send(
        &app,
        Method::GET,
        "com/example/hello/maven-metadata.xml.sha1",
        vec![],
    )
    .await;
    assert_eq!(String::from_utf8(sha1).unwrap(), sha1_hex(xml.as_bytes()));

    // Releases are immutable.
    let (status, _) = send(
        &app,
        Method::PUT,
        "com/example/hello/1.0.0/hello-1.0.0.jar",
        b"other".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, body) = send(
        &app,
        Method::GET,
        "com/example/hello/1.0.0/hello-1.0.0.jar",
        vec![],
    )
    .await;
    assert_eq!(body.len(), jar.len());
}

#[tokio::test]
async fn a_pom_must_declare_its_path_and_bad_paths_are_refused() {
    let (app, metadata) = setup();
    let (status, _) = send(
        &app,
        Method::PUT,
        "com/example/hello/1.0.0/hello-1.0.0.pom",
        pom("com.example", "other", "1.0.0"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        metadata
            .package("releases", "com.example:hello")
            .await
            .unwrap()
            .is_none()
    );
    for path in [
        "com/example/hello/1.0.0/other-1.0.0.jar",
        "hello/1.0.0/hello-1.0.0.jar",
        "com/../hello/1.0.0/hello-1.0.0.jar",
    ] {
        let (status, _) = send(&app, Method::PUT, path, b"x".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
    let (status, _) = send(
        &app,
        Method::GET,
        "com/example/hello/9.9/hello-9.9.jar",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn snapshots_take_new_builds_and_resolve_to_the_newest() {
    let (app, _) = setup();
    let dir = "com/example/hello/1.1.0-SNAPSHOT";
    deploy(
        &app,
        dir,
        "hello-1.1.0-20261123.220931-1",
        "1.1.0-SNAPSHOT",
        b"first build",
    )
    .await;
    deploy(
        &app,
        dir,
        "hello-1.1.0-20261124.101010-2",
        "1.1.0-SNAPSHOT",
        b"second build",
    )
    .await;
    let (status, body) = send(
        &app,
        Method::GET,
        &format!("{dir}/hello-1.1.0-SNAPSHOT.jar"),
        vec![],
    )
    .await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"second build"[..])
    );
    let (_, xml) = send(
        &app,
        Method::GET,
        &format!("{dir}/maven-metadata.xml"),
        vec![],
    )
    .await;
    let xml = String::from_utf8(xml).unwrap();
    assert!(xml.contains("<buildNumber>2</buildNumber>"), "{xml}");
    assert!(
        xml.contains("<value>1.1.0-20261124.101010-2</value>"),
        "{xml}"
    );
    let (_, xml) = send(
        &app,
        Method::GET,
        "com/example/hello/maven-metadata.xml",
        vec![],
    )
    .await;
    assert!(
        String::from_utf8(xml)
            .unwrap()
            .contains("<latest>1.1.0-SNAPSHOT</latest>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_deployed_in_parallel_all_reach_the_metadata() {
    let (app, _) = setup();
    let deploys: Vec<_> = (0..10)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let version = format!("1.{i}");
                let dir = format!("com/example/hello/{version}");
                deploy(
                    &app,
                    &dir,
                    &format!("hello-{version}"),
                    &version,
                    version.as_bytes(),
                )
                .await;
            })
        })
        .collect();
    for deploy in deploys {
        deploy.await.unwrap();
    }
    let (_, xml) = send(
        &app,
        Method::GET,
        "com/example/hello/maven-metadata.xml",
        vec![],
    )
    .await;
    let xml = String::from_utf8(xml).unwrap();
    for i in 0..10 {
        assert!(
            xml.contains(&format!("<version>1.{i}</version>")),
            "1.{i}: {xml}"
        );
    }
    assert!(xml.contains("<release>1.9</release>"), "{xml}");
}

#[tokio::test]
async fn what_mvn_never_sends_is_refused_and_versions_delete() {
    let (app, metadata) = setup();
    let cases: Vec<(String, Vec<u8>, StatusCode)> = vec![
        // A SNAPSHOT file must name its build.
        (
            "com/example/hello/2.0-SNAPSHOT/hello-2.0-SNAPSHOT.jar".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        // One spelling per build number, and real timestamps.
        (
            "com/example/hello/2.0-SNAPSHOT/hello-2.0-20261130.010101-01.jar".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "com/example/hello/2.0-SNAPSHOT/hello-2.0-99999999.999999-3.jar".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        // A group's dots are path separators.
        (
            "com.example/hello/1.0/hello-1.0.jar".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        // group:artifact within its bound.
        (
            format!(
                "{}/hello/1.0/hello-1.0.jar",
                vec!["g".repeat(150); 3].join("/")
            ),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, status) in cases {
        assert_eq!(
            send(&app, Method::PUT, &path, body).await.0,
            status,
            "{path}"
        );
    }
    assert!(
        metadata
            .list_package_names("releases", &Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    deploy(&app, "com/example/hello/1.0", "hello-1.0", "1.0", b"one").await;
    // A checksum is a line, not a document.
    let (status, _) = send(
        &app,
        Method::PUT,
        "com/example/hello/1.0/hello-1.0.jar.sha1",
        vec![b'a'; 5000],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = send(&app, Method::DELETE, "com/example/hello/1.0", vec![]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(
        &app,
        Method::GET,
        "com/example/hello/1.0/hello-1.0.jar",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A proxy of another Maven repository (here: this registry's hosted one, on loopback), read
/// through a virtual repository: metadata from the upstream's `maven-metadata.xml`, files by
/// path verified against the checksum beside each (kept with every digest mvn asks for), served
/// from the cache once the upstream is gone; a file that does not match its checksum is
/// refused and not kept; the firewall's rules apply to Maven coordinates.
#[tokio::test]
async fn a_proxy_of_a_maven_repository_verifies_files_by_their_checksums_and_keeps_them() {
    use registry_core::{OciRegistry, RepositoryKind, RepositorySettings, UpstreamSettings};
    use registry_formats::maven::Maven;
    use registry_http::serve::{RunningRegistry, ServerSettings};

    // The upstream: a hosted repository with a release of a jar bigger than any buffer.
    let (upstream_app, _) = setup();
    let jar: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    deploy(
        &upstream_app,
        "com/example/hello/1.0",
        "hello-1.0",
        "1.0",
        &jar,
    )
    .await;
    let upstream = RunningRegistry::serve_app(upstream_app, ServerSettings::default())
        .await
        .unwrap();
    // A liar: its checksum file does not match the jar.
    let liar = Router::new().fallback(|request: Request<Body>| async move {
        let path = request.uri().path().to_owned();
        match path.as_str() {
            "/com/example/liar/maven-metadata.xml" => (StatusCode::OK, {
                "<metadata><groupId>com.example</groupId><artifactId>liar</artifactId>\
                 <versioning><versions><version>1.0</version></versions></versioning></metadata>"
                    .as_bytes()
                    .to_vec()
            }),
            "/com/example/liar/1.0/liar-1.0.jar.sha1" => {
                (StatusCode::OK, sha1_hex(b"other bytes").into_bytes())
            }
            "/com/example/liar/1.0/liar-1.0.jar" => (StatusCode::OK, b"the jar".to_vec()),
            _ => (StatusCode::NOT_FOUND, Vec::new()),
        }
    });
    let liar = RunningRegistry::serve_app(liar, ServerSettings::default())
        .await
        .unwrap();

    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    for (name, url) in [
        (
            "central",
            format!("http://{}/maven/releases", upstream.host()),
        ),
        ("lies", format!("http://{}", liar.host())),
    ] {
        let settings = RepositorySettings {
            upstream: Some(UpstreamSettings::new(url)),
            ..RepositorySettings::default()
        };
        packages
            .configure_repository(name, &Maven, RepositoryKind::Proxy, &settings)
            .await
            .unwrap();
    }
    packages
        .configure_repository(
            "internal",
            &Maven,
            RepositoryKind::Hosted,
            &Default::default(),
        )
        .await
        .unwrap();
    let all = RepositorySettings {
        members: vec!["internal".into(), "central".into(), "lies".into()],
        ..RepositorySettings::default()
    };
    packages
        .configure_repository("all", &Maven, RepositoryKind::Virtual, &all)
        .await
        .unwrap();
    let app =
        registry_http::app::Application::new(OciRegistry::new(blobs, metadata), packages.clone())
            .router();
    let get = |path: String| {
        let app = app.clone();
        async move {
            let request = Request::get(format!("/maven/{path}"))
                .body(Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body.to_vec())
        }
    };
    let dir = "com/example/hello/1.0";
    let (status, xml) = get("all/com/example/hello/maven-metadata.xml".into()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&xml));
    assert!(String::from_utf8_lossy(&xml).contains("<version>1.0</version>"));
    let (status, body) = get(format!("all/{dir}/hello-1.0.jar")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(body == jar, "the jar's bytes");
    for (suffix, expected) in [
        ("sha1", sha1_hex(&jar)),
        ("md5", hex::encode(<md5::Md5 as md5::Digest>::digest(&jar))),
        ("sha256", hex::encode(sha2::Sha256::digest(&jar))),
        ("sha512", hex::encode(sha2::Sha512::digest(&jar))),
    ] {
        let (status, body) = get(format!("all/{dir}/hello-1.0.jar.{suffix}")).await;
        assert_eq!(status, StatusCode::OK, "{suffix}");
        assert_eq!(String::from_utf8_lossy(&body), expected, "{suffix}");
    }
    let (status, _) = get(format!("central/{dir}/hello-1.0.pom")).await;
    assert_eq!(status, StatusCode::OK);
    // An age gate dates a version by its file's Last-Modified (the upstream deployed it just
    // now), cached or not.
    let rule: registry_core::FirewallRule = serde_json::from_value(
        serde_json::json!({"name": "cool-off", "min_age": "1d", "repositories": "central"}),
    )
    .unwrap();
    packages.put_firewall_rule(&rule).await.unwrap();
    for file in ["hello-1.0.pom", "hello-1.0.jar"] {
        let (status, body) = get(format!("central/{dir}/{file}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{file}");
        assert!(String::from_utf8_lossy(&body).contains("cool-off"));
    }
    packages.delete_firewall_rule("cool-off").await.unwrap();
    let (status, _) = get(format!("central/{dir}/hello-1.0-sources.jar")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not upstream either");

    // The liar's jar does not match its checksum: refused, nothing kept.
    let (status, body) = get("lies/com/example/liar/1.0/liar-1.0.jar".into()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        String::from_utf8_lossy(&body).contains("does not match"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let kept = packages
        .cache_entries("lies", &registry_core::Page::first(10))
        .await
        .unwrap();
    assert!(kept.iter().all(|e| !e.path.ends_with(".jar")), "{kept:?}");

    // The upstream gone: what was fetched is served from the cache.
    upstream.stop().await.unwrap();
    let (status, body) = get(format!("all/{dir}/hello-1.0.jar")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == jar);
    let (status, _) = get(format!("all/{dir}/hello-1.0.jar.sha1")).await;
    assert_eq!(status, StatusCode::OK);

    // The firewall by Maven coordinates, through the virtual repository too.
    let rule: registry_core::FirewallRule =
        serde_json::from_value(serde_json::json!({"name": "no-hello",
            "deny": ["pkg:maven/com.example/hello@1.0"]}))
        .unwrap();
    packages.put_firewall_rule(&rule).await.unwrap();
    let (status, body) = get(format!("all/{dir}/hello-1.0.jar")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("no-hello"));
}

/// Misses of files addressed by path are looked up once at a time and remembered: ten clients
/// asking at once for an artifact the upstream lacks, and five after, cost one checksum lookup.
#[tokio::test]
async fn a_proxys_misses_are_asked_once_and_remembered() {
    use registry_core::{OciRegistry, RepositoryKind, RepositorySettings, UpstreamSettings};
    use registry_formats::maven::Maven;
    use registry_http::serve::{RunningRegistry, ServerSettings};
    use std::sync::atomic::{AtomicU32, Ordering};

    let asked = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&asked);
    let upstream = Router::new().fallback(move |request: Request<Body>| {
        let counter = Arc::clone(&counter);
        async move {
            if request.uri().path().ends_with(".sha512") {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            StatusCode::NOT_FOUND
        }
    });
    let upstream = RunningRegistry::serve_app(upstream, ServerSettings::default())
        .await
        .unwrap();
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let settings = RepositorySettings {
        upstream: Some(UpstreamSettings::new(format!("http://{}", upstream.host()))),
        ..RepositorySettings::default()
    };
    packages
        .configure_repository("central", &Maven, RepositoryKind::Proxy, &settings)
        .await
        .unwrap();
    let app =
        registry_http::app::Application::new(OciRegistry::new(blobs, metadata), packages).router();
    let get = || {
        let app = app.clone();
        async move {
            let request = Request::get("/maven/central/com/example/gone/1.0/gone-1.0.jar")
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    let statuses = futures::future::join_all((0..10).map(|_| get())).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    for _ in 0..5 {
        assert_eq!(get().await, StatusCode::NOT_FOUND);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
