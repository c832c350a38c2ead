//! Proxy and virtual npm repositories in-process, over an upstream on loopback that behaves as
//! asked: tarballs fetched once and verified, concurrent misses coalesced, metadata revalidated
//! with its ETag, stale metadata served and said so when the upstream is down, 404s remembered,
//! upstreams that lie, drip, loop or break off refused with nothing cached, hosted packages
//! shadowing upstream ones in a virtual repository, publishes through it, the cache
//! administered, and a registry that proxies itself caught.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_body_util::BodyExt;
use registry_core::{
    MetadataStore, OciRegistry, Packages, RepositoryKind, RepositorySettings, UpstreamSettings,
};
use registry_formats::npm::Npm;
use registry_http::serve::{RunningRegistry, ServerSettings};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};
use tower::ServiceExt;

/// What the fake upstream has been asked, and how it behaves.
#[derive(Default)]
struct Upstream {
    /// Requests per path.
    hits: Mutex<HashMap<String, u32>>,
    /// `If-None-Match` requests answered 304.
    not_modified: Mutex<u32>,
    /// Tarballs are answered this much later.
    delay_ms: Mutex<u64>,
    /// Serve the packument of `pad` with version 1.2.0 too.
    newer: AtomicBool,
    /// The `Via` header of each request, by path.
    via: Mutex<HashMap<String, String>>,
}

fn integrity(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

fn tarball_bytes(name: &str, version: &str) -> Vec<u8> {
    format!("tarball of {name}@{version} ")
        .repeat(2000)
        .into_bytes()
}

fn packument(base: &str, name: &str, versions: &[(&str, &[u8])]) -> Value {
    let mut all = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    time.insert("created".into(), json!("2020-01-01T00:00:00.000Z"));
    for (i, (version, bytes)) in versions.iter().enumerate() {
        all.insert(
            (*version).into(),
            json!({
                "name": name, "version": version,
                "dependencies": {},
                "dist": {
                    "tarball": format!("{base}/{name}/-/{name}-{version}.tgz"),
                    "integrity": integrity(bytes),
                }
            }),
        );
        // 1.2.0 is published just now; the others long ago.
        let published = if *version == "1.2.0" {
            registry_formats::npm::iso_time(registry_core::Timestamp::now().0)
        } else {
            format!("2020-0{}-01T00:00:00.000Z", i + 1)
        };
        time.insert((*version).into(), json!(published));
    }
    let latest = versions.last().map(|v| v.0).unwrap_or_default();
    json!({"name": name, "dist-tags": {"latest": latest}, "versions": all, "time": time})
}

fn json_reply(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn upstream_handler(State(state): State<Arc<Upstream>>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let base = format!("http://{host}");
    let path = request.uri().path().trim_start_matches('/').to_owned();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    if let Some(via) = request.headers().get(header::VIA) {
        let via = via.to_str().unwrap_or_default().to_owned();
        state.via.lock().unwrap().insert(path.clone(), via);
    }
    let good = tarball_bytes("pad", "1.0.0");
    let newer = tarball_bytes("pad", "1.2.0");
    match path.as_str() {
        "-/ping" => json_reply(json!({})).into_response(),
        "pad" => {
            let mut versions: Vec<(&str, &[u8])> = vec![
                ("1.0.0", &good),
                // Its tarball does not match: served as another version's bytes.
                ("1.1.0", b"what 1.1.0 declares"),
            ];
            if state.newer.load(Ordering::SeqCst) {
                versions.push(("1.2.0", &newer));
            }
            let etag = format!("\"pad-{}\"", versions.len());
            if request
                .headers()
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                *state.not_modified.lock().unwrap() += 1;
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            let document = packument(&base, "pad", &versions);
            ([(header::ETAG, etag)], json_reply(document)).into_response()
        }
        "pad/-/pad-1.0.0.tgz" => {
            let delay = *state.delay_ms.lock().unwrap();
            tokio::time::sleep(Duration::from_millis(delay)).await;
            good.into_response()
        }
        "pad/-/pad-1.1.0.tgz" => good.into_response(),
        "pad/-/pad-1.2.0.tgz" => newer.into_response(),
        "broken" => json_reply(packument(&base, "broken", &[("1.0.0", &good)])).into_response(),
        // Half the bytes, then the connection breaks.
        "broken/-/broken-1.0.0.tgz" => {
            let half = bytes::Bytes::from(good[..good.len() / 2].to_vec());
            let stream = futures::stream::unfold(Some(half), |half| async move {
                match half {
                    Some(half) => Some((Ok(half), None)),
                    None => {
                        // Headers and half the body are out before the connection breaks.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Some((Err(std::io::Error::other("connection reset")), None))
                    }
                }
            });
            (
                [(header::CONTENT_LENGTH, good.len().to_string())],
                Body::from_stream(stream),
            )
                .into_response()
        }
        // Points at pad's tarball, declaring other bytes.
        "twin" => json_reply(json!({
            "name": "twin",
            "versions": {"1.0.0": {"name": "twin", "version": "1.0.0", "dist": {
                "tarball": format!("{base}/pad/-/pad-1.0.0.tgz"),
                "integrity": integrity(b"other bytes")}}}
        })),
        "slowfile" => json_reply(packument(&base, "slowfile", &[("1.0.0", &good)])),
        // A byte every 700 ms: never idle for a whole second, never a KiB per second either.
        "slowfile/-/slowfile-1.0.0.tgz" => {
            let stream = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), ()))
            });
            Body::from_stream(stream).into_response()
        }
        "hangfile" => json_reply(packument(&base, "hangfile", &[("1.0.0", &good)])),
        "hangfile/-/hangfile-1.0.0.tgz" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            good.into_response()
        }
        "dripfile" => json_reply(packument(&base, "dripfile", &[("1.0.0", &good)])),
        // 1.5 KiB every 300 ms: over a KiB in every window, far below 64 KiB/s on average.
        "dripfile/-/dripfile-1.0.0.tgz" => {
            let stream = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1536])),
                    (),
                ))
            });
            Body::from_stream(stream).into_response()
        }
        // Its tarball "is" pad's packument (the bytes match): a file at a metadata path.
        "collide" => {
            let pad = packument(
                &base,
                "pad",
                &[("1.0.0", &good), ("1.1.0", b"what 1.1.0 declares")],
            );
            let mut document =
                packument(&base, "collide", &[("1.0.0", pad.to_string().as_bytes())]);
            document["versions"]["1.0.0"]["dist"]["tarball"] = json!(format!("{base}/pad"));
            json_reply(document)
        }
        "dotted" => {
            let mut document = packument(&base, "dotted", &[("1.0.0", &good)]);
            document["versions"]["1.0.0"]["dist"]["tarball"] =
                json!(format!("{base}/x/%2E%2e/pad/-/pad-1.0.0.tgz"));
            json_reply(document)
        }
        // Sent compressed, as nuget.org sends registrations.
        "gzipped" => {
            let document = packument(&base, "gzipped", &[("1.0.0", &good)]).to_string();
            let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gzip, document.as_bytes()).unwrap();
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                gzip.finish().unwrap(),
            )
                .into_response()
        }
        // Another registry saw this request come round a loop of proxies.
        "looped" => (StatusCode::LOOP_DETECTED, "loop").into_response(),
        // A name from before names had to be lowercase.
        "JSONStream" => json_reply(packument(&base, "JSONStream", &[("1.0.0", &good)])),
        "JSONStream/-/JSONStream-1.0.0.tgz" => good.into_response(),
        "malformed" => "this is not a packument".into_response(),
        "other-name" => json_reply(packument(&base, "pad", &[("1.0.0", &good)])).into_response(),
        "huge" => {
            // Declares nothing and never ends.
            let chunk = bytes::Bytes::from(vec![b' '; 1 << 20]);
            let stream =
                futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            Body::from_stream(stream).into_response()
        }
        "drip" => {
            let stream = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")), ()))
            });
            Body::from_stream(stream).into_response()
        }
        "loop" => (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response(),
        // Redirected within the origin, and away from it (another host name, same machine).
        "moved" => (StatusCode::FOUND, [(header::LOCATION, "/moved-here")]).into_response(),
        "moved-here" => json_reply(packument(&base, "moved", &[("1.0.0", &good)])),
        "away" => {
            let port = host.rsplit(':').next().unwrap_or_default();
            let location = format!("http://localhost:{port}/moved-here");
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        "offsite" => json_reply(json!({
            "name": "offsite",
            "versions": {"1.0.0": {"name": "offsite", "version": "1.0.0", "dist": {
                "tarball": "http://192.0.2.1/offsite/-/offsite-1.0.0.tgz",
                "integrity": integrity(&good)}}}
        }))
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_upstream() -> (RunningRegistry, Arc<Upstream>) {
    let state = Arc::new(Upstream::default());
    let app = Router::new()
        .fallback(upstream_handler)
        .with_state(Arc::clone(&state));
    let server = RunningRegistry::serve_app(app, ServerSettings::default())
        .await
        .unwrap();
    (server, state)
}

fn hits(state: &Upstream, path: &str) -> u32 {
    state.hits.lock().unwrap().get(path).copied().unwrap_or(0)
}

async fn put_json(app: &Router, uri: &str, body: Value) -> Reply {
    send(app, Method::PUT, uri, body.to_string().into_bytes()).await
}

struct Proxy {
    app: Router,
    packages: Packages,
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn registry_core::BlobStore>,
}

async fn proxy_of(upstream: &str, configure: impl FnOnce(&mut UpstreamSettings)) -> Proxy {
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> =
        Arc::new(MemoryMetadataStore::new().with_review_delay(Duration::ZERO));
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let mut settings = UpstreamSettings::new(upstream);
    settings.timeout_seconds = 2;
    configure(&mut settings);
    packages
        .configure_repository(
            "npmjs",
            &Npm,
            RepositoryKind::Proxy,
            &RepositorySettings {
                upstream: Some(settings),
                ..RepositorySettings::default()
            },
        )
        .await
        .unwrap();
    let app = registry_http::app::Application::new(
        OciRegistry::new(Arc::clone(&blobs), Arc::clone(&metadata)),
        packages.clone(),
    )
    .router();
    Proxy {
        app,
        packages,
        metadata,
        blobs,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn message(&self) -> String {
        let json = self.json();
        json["error"]
            .as_str()
            .or(json["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.bytes).into_owned())
    }
}

async fn send(app: &Router, method: Method, uri: &str, body: Vec<u8>) -> Reply {
    send_with(app, method, uri, &[], body).await
}

async fn send_with(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.test")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        bytes,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, Vec::new()).await
}

#[tokio::test]
async fn tarballs_are_fetched_once_verified_and_served_from_the_cache() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;

    let packument = get(&proxy.app, "/npm/npmjs/pad").await;
    assert_eq!(packument.status, StatusCode::OK, "{}", packument.message());
    let document = packument.json();
    assert_eq!(
        document["versions"]["1.0.0"]["dist"]["tarball"],
        "http://registry.test/npm/npmjs/pad/-/pad-1.0.0.tgz",
        "tarball URLs point at the proxy"
    );
    assert_eq!(document["dist-tags"]["latest"], "1.1.0");
    assert_eq!(document["time"]["1.0.0"], "2020-01-01T00:00:00.000Z");

    // Ten clients at once: one upstream request.
    *upstream.delay_ms.lock().unwrap() = 300;
    let downloads = (0..10).map(|_| get(&proxy.app, "/npm/npmjs/pad/-/pad-1.0.0.tgz"));
    for reply in futures::future::join_all(downloads).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.message());
        assert_eq!(reply.bytes, tarball_bytes("pad", "1.0.0"));
    }
    assert_eq!(
        hits(&upstream, "pad/-/pad-1.0.0.tgz"),
        1,
        "misses coalesced"
    );

    // The upstream gone, the cached tarball is still served.
    server.stop().await.unwrap();
    let again = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.bytes, tarball_bytes("pad", "1.0.0"));

    // The cache lists it with its downloads.
    let listed = get(&proxy.app, "/api/v1/package-repositories/npmjs/cache").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.message());
    let entries = listed.json()["entries"].as_array().unwrap().clone();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["pad", "pad/-/pad-1.0.0.tgz"]);
    assert_eq!(entries[1]["downloads"], 11);
    assert_eq!(entries[1]["kind"], "file");
    assert_eq!(entries[1]["size"], tarball_bytes("pad", "1.0.0").len());
}

#[tokio::test]
async fn packages_with_old_uppercase_names_are_proxied_but_never_published() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let document = get(&proxy.app, "/npm/npmjs/JSONStream").await;
    assert_eq!(document.status, StatusCode::OK, "{}", document.message());
    let tarball = get(&proxy.app, "/npm/npmjs/JSONStream/-/JSONStream-1.0.0.tgz").await;
    assert_eq!(tarball.bytes, tarball_bytes("pad", "1.0.0"));
    let bytes = tarball_of("JSONStream", "1.0.0");
    let put = send(
        &proxy.app,
        Method::PUT,
        "/npm/internal/JSONStream",
        publish_body("JSONStream", "1.0.0", &bytes)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST, "{}", put.message());
}

#[tokio::test]
async fn content_that_does_not_match_its_declared_digest_is_refused_and_not_kept() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let reply = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.1.0.tgz").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let message = reply.message();
    assert!(
        message.contains(&server.host()) && message.contains("does not match the sha512"),
        "{message}"
    );
    assert!(
        proxy
            .metadata
            .cache_entry("npmjs", "pad/-/pad-1.1.0.tgz")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_download_broken_off_midway_stores_nothing() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    // The failure is remembered for a few seconds: the second attempt does not ask again.
    for _ in 1..=2 {
        let reply = get(&proxy.app, "/npm/npmjs/broken/-/broken-1.0.0.tgz").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.message());
        assert!(reply.message().contains("broke off"), "{}", reply.message());
        assert_eq!(hits(&upstream, "broken/-/broken-1.0.0.tgz"), 1);
    }
    assert!(
        proxy
            .metadata
            .cache_entry("npmjs", "broken/-/broken-1.0.0.tgz")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn metadata_is_revalidated_with_its_etag_and_served_stale_when_the_upstream_is_down() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |s| {
        s.metadata_ttl_seconds = 0;
    })
    .await;
    let first = get(&proxy.app, "/npm/npmjs/pad").await;
    assert_eq!(first.status, StatusCode::OK);
    let second = get(&proxy.app, "/npm/npmjs/pad").await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(*upstream.not_modified.lock().unwrap() >= 1, "revalidated");
    assert_eq!(first.bytes, second.bytes);
    // A change upstream is seen at the next revalidation.
    upstream.newer.store(true, Ordering::SeqCst);
    let newer = get(&proxy.app, "/npm/npmjs/pad").await;
    assert_eq!(newer.json()["dist-tags"]["latest"], "1.2.0");

    // Down: the cached document, said to be stale; an uncached package names the upstream.
    let host = server.host();
    server.stop().await.unwrap();
    let stale = get(&proxy.app, "/npm/npmjs/pad").await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.json()["dist-tags"]["latest"], "1.2.0");
    let named = stale
        .headers
        .get("x-registry-stale")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(named, format!("http://{host}"));
    assert!(stale.headers.get(header::WARNING).is_some());
    let missing = get(&proxy.app, "/npm/npmjs/never-seen").await;
    assert_eq!(missing.status, StatusCode::BAD_GATEWAY);
    assert!(missing.message().contains(&host), "{}", missing.message());
}

#[tokio::test]
async fn upstream_404s_are_remembered_for_a_while() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    for _ in 0..5 {
        let reply = get(&proxy.app, "/npm/npmjs/absent").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(hits(&upstream, "absent"), 1);
}

#[tokio::test]
async fn upstreams_that_lie_drip_loop_or_never_end_are_refused_and_nothing_is_cached() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |s| {
        s.timeout_seconds = 1;
    })
    .await;
    let cases = [
        ("malformed", StatusCode::BAD_GATEWAY, "unusable"),
        (
            "other-name",
            StatusCode::BAD_GATEWAY,
            "names another package",
        ),
        ("huge", StatusCode::BAD_GATEWAY, "over the limit"),
        ("drip", StatusCode::GATEWAY_TIMEOUT, "longer than 1 s"),
        ("loop", StatusCode::BAD_GATEWAY, "redirect"),
        (
            "away",
            StatusCode::BAD_GATEWAY,
            "away from the upstream's origin",
        ),
    ];
    for (name, status, says) in cases {
        let reply = get(&proxy.app, &format!("/npm/npmjs/{name}")).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.message());
        assert!(
            reply.message().contains(says),
            "{name}: {}",
            reply.message()
        );
        assert!(
            proxy
                .metadata
                .cache_entry("npmjs", name)
                .await
                .unwrap()
                .is_none(),
            "{name} cached"
        );
    }
    // Meanwhile other requests were answered: a good one still is, and one redirected
    // within the upstream's origin.
    assert_eq!(
        get(&proxy.app, "/npm/npmjs/pad").await.status,
        StatusCode::OK
    );
    let moved = get(&proxy.app, "/npm/npmjs/moved").await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.message());
    // A file the metadata places on another host is not fetched.
    let offsite = get(&proxy.app, "/npm/npmjs/offsite/-/offsite-1.0.0.tgz").await;
    assert_eq!(offsite.status, StatusCode::BAD_GATEWAY);
    assert!(
        offsite.message().contains("outside the upstream"),
        "{}",
        offsite.message()
    );
}

#[tokio::test]
async fn a_virtual_repository_shadows_upstream_names_with_hosted_ones_and_publishes_to_its_member()
{
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let packages = &proxy.packages;
    packages
        .configure_repository(
            "internal",
            &Npm,
            RepositoryKind::Hosted,
            &Default::default(),
        )
        .await
        .unwrap();
    let virtual_settings = RepositorySettings {
        members: vec!["internal".into(), "npmjs".into()],
        publish_to: Some("internal".into()),
        ..RepositorySettings::default()
    };
    packages
        .configure_repository("all", &Npm, RepositoryKind::Virtual, &virtual_settings)
        .await
        .unwrap();

    // Only upstream: its versions.
    let pad = get(&proxy.app, "/npm/all/pad").await;
    assert_eq!(pad.status, StatusCode::OK, "{}", pad.message());
    assert_eq!(pad.json()["versions"].as_object().unwrap().len(), 2);
    let tarball = get(&proxy.app, "/npm/all/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(tarball.bytes, tarball_bytes("pad", "1.0.0"));

    // Publish through the virtual repository: it lands in `internal`, and from then on the
    // name is internal only — the upstream's versions are no longer merged in.
    let bytes = tarball_of("pad", "9.0.0");
    let publish = publish_body("pad", "9.0.0", &bytes);
    let put = send(
        &proxy.app,
        Method::PUT,
        "/npm/all/pad",
        publish.to_string().into_bytes(),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.message());
    assert!(
        packages
            .package(&Npm, "internal", "pad")
            .await
            .unwrap()
            .is_some()
    );
    let shadowed = get(&proxy.app, "/npm/all/pad").await.json();
    let versions: Vec<&String> = shadowed["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["9.0.0"]);
    assert_eq!(
        get(&proxy.app, "/npm/all/pad/-/pad-1.0.0.tgz").await.status,
        StatusCode::NOT_FOUND,
        "the upstream's files of an internal name are not served"
    );
    assert_eq!(
        get(&proxy.app, "/npm/all/pad/-/pad-9.0.0.tgz").await.bytes,
        bytes
    );
    let before = hits(&upstream, "pad");
    get(&proxy.app, "/npm/all/pad").await;
    assert_eq!(hits(&upstream, "pad"), before, "the upstream is not asked");

    // Proxy repositories take no publishes, nor does a virtual one without publish_to.
    let refused = send(
        &proxy.app,
        Method::PUT,
        "/npm/npmjs/pad",
        publish.to_string().into_bytes(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.message().contains("takes no publishes"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn repositories_are_administered_and_misconfigurations_refused() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |s| {
        s.username = Some("robot".into());
        s.password = Some("secret".into());
    })
    .await;
    let app = &proxy.app;
    // The password is never shown, and kept when a PUT leaves it out.
    let shown = get(app, "/api/v1/package-repositories/npmjs").await.json();
    let upstream_settings = &shown["settings"]["upstream"];
    assert_eq!(upstream_settings["password_set"], true);
    assert!(upstream_settings.get("password").is_none());
    let body = json!({"format": "npm", "kind": "proxy", "upstream": {
        "url": format!("http://{}", server.host()), "username": "robot", "metadata_ttl_seconds": 60}});
    let put = send(
        app,
        Method::PUT,
        "/api/v1/package-repositories/npmjs",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.message());
    let kept = proxy.packages.repository("npmjs").await.unwrap().unwrap();
    assert_eq!(
        kept.settings.upstream.unwrap().password.as_deref(),
        Some("secret")
    );

    // The connection test.
    let test = send(
        app,
        Method::POST,
        "/api/v1/package-repositories/npmjs/test",
        Vec::new(),
    )
    .await;
    assert_eq!(test.status, StatusCode::OK, "{}", test.message());
    assert_eq!(test.json()["reachable"], true);
    assert_eq!(hits(&upstream, "-/ping"), 1);

    // Refused: an upstream naming this registry, a change of kind, members that do not fit.
    let cases = [
        (
            "loop",
            json!({"format": "npm", "kind": "proxy", "upstream": {"url": "http://registry.test/npm/x"}}),
            "points at this registry",
        ),
        (
            "npmjs",
            json!({"format": "npm", "kind": "hosted"}),
            "never change",
        ),
        (
            "v",
            json!({"format": "npm", "kind": "virtual", "members": ["nope"]}),
            "does not exist",
        ),
        (
            "v",
            json!({"format": "npm", "kind": "virtual", "members": ["npmjs"], "publish_to": "npmjs"}),
            "publishes go to a hosted one",
        ),
        (
            "v",
            json!({"format": "npm", "kind": "virtual"}),
            "needs 1 to 32 members",
        ),
        (
            "p",
            json!({"format": "npm", "kind": "proxy", "upstream": {"url": "ftp://x"}}),
            "must start with http",
        ),
        (
            "p",
            json!({"format": "npm", "kind": "proxy", "upstream": {"url": "http://u:p@x/"}}),
            "no credentials",
        ),
        (
            "p",
            json!({"format": "generic", "kind": "proxy", "upstream": {"url": "http://x/"}}),
            "cannot be proxies",
        ),
        (
            "h",
            json!({"format": "npm", "kind": "hosted", "members": ["npmjs"]}),
            "only virtual repositories",
        ),
    ];
    for (name, body, says) in cases {
        let reply = send(
            app,
            Method::PUT,
            &format!("/api/v1/package-repositories/{name}"),
            body.to_string().into_bytes(),
        )
        .await;
        assert!(
            reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::CONFLICT,
            "{name} {body}: {} {}",
            reply.status,
            reply.message()
        );
        assert!(
            reply.message().contains(says),
            "{body}: {}",
            reply.message()
        );
    }

    // Cache entries deleted one by one and all; cleaning by last use keeps what is used.
    assert_eq!(
        get(app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await.status,
        StatusCode::OK
    );
    let keep = send(
        app,
        Method::DELETE,
        "/api/v1/package-repositories/npmjs/cache?unused_days=1",
        Vec::new(),
    )
    .await;
    assert_eq!(keep.json()["deleted"], 0);
    let one = send(
        app,
        Method::DELETE,
        "/api/v1/package-repositories/npmjs/cache/pad/-/pad-1.0.0.tgz",
        Vec::new(),
    )
    .await;
    assert_eq!(one.status, StatusCode::NO_CONTENT);
    let all = send(
        app,
        Method::DELETE,
        "/api/v1/package-repositories/npmjs/cache",
        Vec::new(),
    )
    .await;
    assert_eq!(all.json()["deleted"], 1);
    let empty = get(app, "/api/v1/package-repositories/npmjs/cache").await;
    assert_eq!(empty.json()["entries"], json!([]));
    // The tarball is fetched again.
    assert_eq!(
        get(app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await.status,
        StatusCode::OK
    );
    assert_eq!(hits(&upstream, "pad/-/pad-1.0.0.tgz"), 2);
}

#[tokio::test]
async fn a_registry_that_proxies_itself_is_stopped_by_the_loop_guard() {
    // Configured directly (the admin API refuses it), a proxy of itself asks itself once,
    // recognises its own request and answers with a clear error instead of recursing.
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let app = registry_http::app::Application::new(
        OciRegistry::new(blobs, Arc::clone(&metadata)),
        packages.clone(),
    )
    .router();
    let server = RunningRegistry::serve_app(app, ServerSettings::default())
        .await
        .unwrap();
    packages
        .configure_repository(
            "me",
            &Npm,
            RepositoryKind::Proxy,
            &RepositorySettings {
                upstream: Some(UpstreamSettings::new(format!(
                    "http://{}/npm/me",
                    server.host()
                ))),
                ..RepositorySettings::default()
            },
        )
        .await
        .unwrap();
    let client = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::builder()
                .uri("/npm/me/pad")
                .header("host", server.host())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::LOOP_DETECTED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("leads back to this registry"), "{text}");
    // Through the admin API, a loopback upstream on the port the request came in at is
    // refused however it is spelled, whatever `Host` the request names.
    let port = server.addr().port();
    for spelling in ["localhost.", "[::ffff:127.0.0.1]", "127.1"] {
        let body = json!({"format": "npm", "kind": "proxy",
            "upstream": {"url": format!("http://{spelling}:{port}/npm/x")}});
        // A refusal closes its connection: one each.
        let client = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(
                Request::builder()
                    .method(Method::PUT)
                    .uri("/api/v1/package-repositories/again")
                    .header("host", "registry.test")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{spelling}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("points at this registry"), "{text}");
    }
}

/// A file an upstream places at a metadata document's path does not stand for the document
/// (the document replaces it), and file URLs with dot segments are refused.
#[tokio::test]
async fn files_never_take_the_place_of_metadata_and_dot_segments_are_refused() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let app = &proxy.app;
    let collided = get(app, "/npm/npmjs/collide/-/collide-1.0.0.tgz").await;
    assert_eq!(collided.status, StatusCode::OK, "{}", collided.message());
    let pad = get(app, "/npm/npmjs/pad").await;
    assert_eq!(pad.status, StatusCode::OK, "{}", pad.message());
    assert_eq!(pad.json()["name"], "pad");
    let again = get(app, "/npm/npmjs/pad").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.message());
    let dotted = get(app, "/npm/npmjs/dotted/-/dotted-1.0.0.tgz").await;
    assert_eq!(dotted.status, StatusCode::BAD_GATEWAY);
    assert!(
        dotted.message().contains("not a plain path"),
        "{}",
        dotted.message()
    );
}

/// Metadata an upstream sends gzip-encoded is read.
#[tokio::test]
async fn compressed_metadata_is_read() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let reply = get(&proxy.app, "/npm/npmjs/gzipped").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.message());
    assert_eq!(reply.json()["name"], "gzipped");
}

/// A fetch still running when the proxy's upstream URL changes keeps nothing.
#[tokio::test]
async fn a_fetch_running_when_the_upstream_changes_keeps_nothing() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let (packages, app) = (&proxy.packages, &proxy.app);
    assert_eq!(get(app, "/npm/npmjs/pad").await.status, StatusCode::OK);
    *upstream.delay_ms.lock().unwrap() = 1500;
    let fetch = {
        let app = app.clone();
        tokio::spawn(async move { get(&app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await })
    };
    // Once the tarball was asked for, the URL changes.
    while hits(&upstream, "pad/-/pad-1.0.0.tgz") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut moved = packages
        .repository("npmjs")
        .await
        .unwrap()
        .unwrap()
        .settings;
    moved.upstream = Some(UpstreamSettings::new(format!(
        "http://{}/mirror",
        server.host()
    )));
    packages
        .configure_repository("npmjs", &Npm, RepositoryKind::Proxy, &moved)
        .await
        .unwrap();
    let reply = fetch.await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.message());
    assert!(reply.message().contains("changed"), "{}", reply.message());
    let kept = packages
        .cache_entries("npmjs", &registry_core::Page::first(10))
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
}

/// A proxy pointed at another upstream forgets what it cached from the old one.
#[tokio::test]
async fn a_new_upstream_url_starts_with_an_empty_cache() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let (packages, app) = (&proxy.packages, &proxy.app);
    let tarball = "/npm/npmjs/pad/-/pad-1.0.0.tgz";
    assert_eq!(get(app, tarball).await.status, StatusCode::OK);
    let cached = packages
        .cache_entries("npmjs", &registry_core::Page::first(10))
        .await
        .unwrap();
    assert_eq!(cached.len(), 2, "the packument and the tarball");
    // Same settings: the cache stays.
    let same = packages
        .repository("npmjs")
        .await
        .unwrap()
        .unwrap()
        .settings;
    packages
        .configure_repository("npmjs", &Npm, RepositoryKind::Proxy, &same)
        .await
        .unwrap();
    assert_eq!(get(app, tarball).await.status, StatusCode::OK);
    assert_eq!(hits(&upstream, "pad/-/pad-1.0.0.tgz"), 1);
    // Another upstream (where nothing is): nothing of the old one is served.
    let mut moved = same.clone();
    moved.upstream = Some(UpstreamSettings::new(format!(
        "http://{}/mirror",
        server.host()
    )));
    packages
        .configure_repository("npmjs", &Npm, RepositoryKind::Proxy, &moved)
        .await
        .unwrap();
    assert!(
        packages
            .cache_entries("npmjs", &registry_core::Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        get(app, "/npm/npmjs/pad").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(app, tarball).await.status, StatusCode::NOT_FOUND);
}

/// Of two hosted members with the same version, the first's copy is the version: its
/// metadata and its file, and when the firewall blocks it there, the version is blocked —
/// never replaced by the second member's copy.
#[tokio::test]
async fn a_version_of_two_hosted_members_is_the_first_members_even_when_blocked_there() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let (packages, app) = (&proxy.packages, &proxy.app);
    for name in ["corp", "corp2"] {
        packages
            .configure_repository(name, &Npm, RepositoryKind::Hosted, &Default::default())
            .await
            .unwrap();
    }
    let both = RepositorySettings {
        members: vec!["corp".into(), "corp2".into()],
        ..RepositorySettings::default()
    };
    packages
        .configure_repository("both", &Npm, RepositoryKind::Virtual, &both)
        .await
        .unwrap();
    let first = tarball_of("shared", "1.0.0");
    // The same content, another gzip header time: other bytes.
    let mut second = first.clone();
    second[4] ^= 1;
    for (repository, bytes) in [("corp", &first), ("corp2", &second)] {
        let body = publish_body("shared", "1.0.0", bytes);
        let put = put_json(app, &format!("/npm/{repository}/shared"), body).await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.message());
    }
    let tarball = "/npm/both/shared/-/shared-1.0.0.tgz";
    assert_eq!(get(app, tarball).await.bytes, first);
    let packument = get(app, "/npm/both/shared").await.json();
    assert_eq!(
        packument["versions"]["1.0.0"]["dist"]["integrity"],
        integrity(&first)
    );

    let rule = json!({"deny": ["pkg:npm/shared@1.0.0"], "repositories": "corp"});
    let put = put_json(app, "/api/v1/firewall-rules/corp-no-shared", rule).await;
    assert!(put.status.is_success(), "{}", put.message());
    let packument = get(app, "/npm/both/shared").await;
    assert!(
        packument.json()["versions"].get("1.0.0").is_none(),
        "corp2's copy does not stand in: {}",
        String::from_utf8_lossy(&packument.bytes)
    );
    assert!(
        packument.json()["dist-tags"].get("latest").is_none(),
        "corp2's latest names a version not provided: {}",
        String::from_utf8_lossy(&packument.bytes)
    );
    let blocked = get(app, tarball).await;
    assert_eq!(
        blocked.status,
        StatusCode::FORBIDDEN,
        "{}",
        blocked.message()
    );
    // corp2 itself still serves its own copy.
    assert_eq!(
        get(app, "/npm/corp2/shared/-/shared-1.0.0.tgz").await.bytes,
        second
    );
}

fn tarball_of(name: &str, version: &str) -> Vec<u8> {
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
}

fn publish_body(name: &str, version: &str, tarball: &[u8]) -> Value {
    json!({
        "_id": name, "name": name, "dist-tags": { "latest": version },
        "versions": { version: { "name": name, "version": version,
                                 "dist": { "integrity": integrity(tarball) } } },
        "_attachments": { format!("{name}-{version}.tgz"): {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len() } },
    })
}

#[tokio::test]
async fn the_firewall_filters_metadata_refuses_downloads_and_publishes_and_records_it() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let app = &proxy.app;
    upstream.newer.store(true, Ordering::SeqCst);
    for (name, rule) in [
        ("no-pad-100", json!({"deny": ["pkg:npm/pad@1.0.0"]})),
        (
            "cool-off",
            json!({"min_age": "1d", "repositories": "npmjs|all"}),
        ),
        (
            "watch-pad",
            json!({"mode": "warn", "deny": ["pkg:npm/pad@1.1.0"]}),
        ),
        ("no-evil", json!({"deny": ["evil-.*"]})),
    ] {
        let put = put_json(app, &format!("/api/v1/firewall-rules/{name}"), rule).await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.message());
    }
    for never in [
        "pkg:npm/has%20space",
        "pkg:npm/pad@v1.0.0",
        "pkg:pypi/not%20a%20name",
    ] {
        let refused = put_json(
            app,
            "/api/v1/firewall-rules/never",
            json!({"deny": [never]}),
        )
        .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{never}");
        assert!(
            refused.message().contains("never match") || refused.message().contains("not served"),
            "{never}: {}",
            refused.message()
        );
    }
    let listed = get(app, "/api/v1/firewall-rules").await.json();
    assert_eq!(listed["rules"].as_array().unwrap().len(), 4);
    assert_eq!(listed["rules"][0]["source"], "api");

    // Metadata: the denied and the too-new versions are left out, latest moved off 1.2.0.
    let pad = get(app, "/npm/npmjs/pad").await;
    assert_eq!(pad.status, StatusCode::OK, "{}", pad.message());
    let document = pad.json();
    let versions: Vec<&String> = document["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1.1.0"]);
    assert_eq!(document["dist-tags"]["latest"], "1.1.0");

    // Downloads: 403 naming the rule, in npm's error format, before anything is fetched.
    for uri in [
        "/npm/npmjs/pad/-/pad-1.0.0.tgz",
        "/npm/npmjs/pad/-/pad-1.2.0.tgz",
    ] {
        let refused = get(app, uri).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{uri}");
        let rule = refused.headers.get("x-registry-firewall-rule").unwrap();
        let message = refused.message();
        assert!(
            message.starts_with("blocked by firewall rule "),
            "{message}"
        );
        assert!(message.contains(rule.to_str().unwrap()), "{message}");
    }
    assert_eq!(hits(&upstream, "pad/-/pad-1.0.0.tgz"), 0);
    assert_eq!(hits(&upstream, "pad/-/pad-1.2.0.tgz"), 0);

    // Through a virtual repository: 403 too, not a misleading 404.
    proxy
        .packages
        .configure_repository(
            "internal",
            &Npm,
            RepositoryKind::Hosted,
            &Default::default(),
        )
        .await
        .unwrap();
    proxy
        .packages
        .configure_repository(
            "all",
            &Npm,
            RepositoryKind::Virtual,
            &RepositorySettings {
                members: vec!["internal".into(), "npmjs".into()],
                publish_to: Some("internal".into()),
                ..RepositorySettings::default()
            },
        )
        .await
        .unwrap();
    let refused = get(app, "/npm/all/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Warned: served.
    let warned = get(app, "/npm/all/pad/-/pad-1.1.0.tgz").await;
    assert_eq!(
        warned.status,
        StatusCode::BAD_GATEWAY,
        "its bytes lie, but it was not blocked"
    );

    // Publishes: refused with the rule named, nothing published.
    let bytes = tarball_of("evil-thing", "1.0.0");
    let put = send(
        app,
        Method::PUT,
        "/npm/all/evil-thing",
        publish_body("evil-thing", "1.0.0", &bytes)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(put.status, StatusCode::FORBIDDEN, "{}", put.message());
    assert!(put.message().contains("no-evil"), "{}", put.message());
    assert!(
        proxy
            .packages
            .package(&Npm, "internal", "evil-thing")
            .await
            .unwrap()
            .is_none()
    );

    // The audit log: every decision that blocked or warned, newest first.
    let audit = get(app, "/api/v1/firewall-audit?n=100").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.message());
    let entries = audit.json()["entries"].as_array().unwrap().clone();
    let seen = |action: &str, rule: &str, mode: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["rule"] == rule && e["mode"] == mode)
    };
    assert!(seen("publish", "no-evil", "block"), "{entries:?}");
    assert!(seen("download", "no-pad-100", "block"), "{entries:?}");
    assert!(seen("download", "cool-off", "block"), "{entries:?}");
    assert!(seen("download", "watch-pad", "warn"), "{entries:?}");
    assert!(seen("metadata", "no-pad-100", "block"), "{entries:?}");
    let only_all = get(app, "/api/v1/firewall-audit?repository=all")
        .await
        .json();
    assert!(
        only_all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["repository"] == "all")
    );

    // Rules go, and what they held back comes back.
    for name in ["no-pad-100", "cool-off", "watch-pad", "no-evil"] {
        let deleted = send(
            app,
            Method::DELETE,
            &format!("/api/v1/firewall-rules/{name}"),
            Vec::new(),
        )
        .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    }
    let document = get(app, "/npm/npmjs/pad").await.json();
    assert_eq!(document["versions"].as_object().unwrap().len(), 3);
    assert_eq!(document["dist-tags"]["latest"], "1.2.0");
}

#[tokio::test]
async fn npm_audit_answers_from_loaded_advisories_and_says_when_none_are() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let asked = json!({"pad": ["1.0.0"], "other": ["2.0.0"]}).to_string();
    let none = send(
        &proxy.app,
        Method::POST,
        "/npm/npmjs/-/npm/v1/security/advisories/bulk",
        asked.clone().into_bytes(),
    )
    .await;
    assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        none.message().contains("no advisory data"),
        "{}",
        none.message()
    );

    let mut advisories = registry_core::firewall::Advisories::new();
    advisories
        .add_json(
            json!({"id": "GHSA-pad", "summary": "pad pads too much",
                   "database_specific": {"severity": "CRITICAL"},
                   "affected": [{"package": {"ecosystem": "npm", "name": "pad"},
                                 "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.1.0"}]}]}]})
            .to_string()
            .as_bytes(),
            &registry_formats::package_key,
        )
        .unwrap();
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages =
        Packages::new(Arc::clone(&blobs), Arc::clone(&metadata)).with_advisories(advisories);
    let app =
        registry_http::app::Application::new(OciRegistry::new(blobs, metadata), packages).router();
    let advisories_app = app.clone();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, asked.as_bytes()).unwrap();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/npm/anything/-/npm/v1/security/advisories/bulk")
        .header("content-encoding", "gzip")
        .body(Body::from(gzip.finish().unwrap()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["pad"][0]["severity"], "critical");
    assert_eq!(answer["pad"][0]["vulnerable_versions"], "<1.1.0");
    assert!(answer.get("other").is_none());

    // A small request naming a huge number of versions is refused, not matched for minutes.
    let versions: Vec<String> = (0..250_000).map(|i| format!("1.0.{i}")).collect();
    let flood = json!({ "pad": versions }).to_string();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gzip, flood.as_bytes()).unwrap();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/npm/anything/-/npm/v1/security/advisories/bulk")
        .header("content-encoding", "gzip")
        .body(Body::from(gzip.finish().unwrap()))
        .unwrap();
    let response = advisories_app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_cached_file_serves_only_the_declaration_it_was_verified_against() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let good = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(good.status, StatusCode::OK);
    // Another package's metadata points at the same URL with another digest: the cached bytes
    // are not served for it; fetched again they do not match, and nothing changes.
    let twin = get(&proxy.app, "/npm/npmjs/twin/-/twin-1.0.0.tgz").await;
    assert_eq!(twin.status, StatusCode::BAD_GATEWAY, "{}", twin.message());
    assert!(
        twin.message().contains("does not match"),
        "{}",
        twin.message()
    );
    let again = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(again.bytes, tarball_bytes("pad", "1.0.0"));
}

#[tokio::test]
async fn a_file_that_drips_too_slowly_times_out_and_a_hanging_upstream_is_asked_once() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |s| {
        s.timeout_seconds = 1;
    })
    .await;
    let slow = get(&proxy.app, "/npm/npmjs/slowfile/-/slowfile-1.0.0.tgz").await;
    assert_eq!(
        slow.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        slow.message()
    );
    assert!(
        slow.message().contains("at least 1024"),
        "{}",
        slow.message()
    );
    // Five clients at once for metadata that never finishes: the upstream is asked once; the
    // others are answered with that failure instead of each waiting a timeout of their own.
    let requests = (0..5).map(|_| get(&proxy.app, "/npm/npmjs/drip"));
    for reply in futures::future::join_all(requests).await {
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            reply.message()
        );
    }
    assert_eq!(hits(&upstream, "drip"), 1);
}

#[tokio::test]
async fn a_file_fetch_that_fails_answers_its_waiters_and_a_slow_average_is_cut_off() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |s| {
        s.timeout_seconds = 1;
    })
    .await;
    // Four clients while the tarball hangs: one upstream request, and the waiters get its
    // failure when it fails rather than asking again one after another.
    let requests = (0..4).map(|_| get(&proxy.app, "/npm/npmjs/hangfile/-/hangfile-1.0.0.tgz"));
    for reply in futures::future::join_all(requests).await {
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            reply.message()
        );
    }
    assert_eq!(hits(&upstream, "hangfile/-/hangfile-1.0.0.tgz"), 1);
    // A body that brings over a KiB per window but drips on: cut off by the average rate.
    let drip = get(&proxy.app, "/npm/npmjs/dripfile/-/dripfile-1.0.0.tgz").await;
    assert_eq!(
        drip.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        drip.message()
    );
    assert!(drip.message().contains("on average"), "{}", drip.message());
    assert!(
        proxy
            .packages
            .cache_entries("npmjs", &registry_core::Page::first(100))
            .await
            .unwrap()
            .iter()
            .all(|e| !e.path.ends_with(".tgz")),
        "nothing of the failed files is cached"
    );
}

#[tokio::test]
async fn file_fetches_carry_the_clients_via_hops_and_a_loop_is_not_remembered_as_a_failure() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let via = [("via", "1.1 other-registry")];
    let tarball = "/npm/npmjs/pad/-/pad-1.0.0.tgz";
    let reply = send_with(&proxy.app, Method::GET, tarball, &via, Vec::new()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.message());
    let seen = upstream
        .via
        .lock()
        .unwrap()
        .get("pad/-/pad-1.0.0.tgz")
        .cloned();
    let seen = seen.expect("the tarball request carries Via");
    assert!(
        seen.starts_with("1.1 other-registry, 1.1 registry-"),
        "the detached fetch carries the client's hops: {seen}"
    );
    // An upstream that saw a loop answers 508: so do we, and the next request asks again
    // (the loop was that request's path, not the upstream's health).
    for _ in 0..2 {
        let looped = get(&proxy.app, "/npm/npmjs/looped").await;
        assert_eq!(
            looped.status,
            StatusCode::LOOP_DETECTED,
            "{}",
            looped.message()
        );
    }
    assert_eq!(hits(&upstream, "looped"), 2);
}

#[tokio::test]
async fn a_virtual_repository_takes_a_package_from_the_first_proxy_that_has_it_alone() {
    let (server, upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let packages = &proxy.packages;
    let proxy_at = |url: String| RepositorySettings {
        upstream: Some(UpstreamSettings::new(url)),
        ..RepositorySettings::default()
    };
    // A proxy whose upstream has nothing, and one whose upstream is down.
    packages
        .configure_repository(
            "empty",
            &Npm,
            RepositoryKind::Proxy,
            &proxy_at(format!("http://{}/mirror", server.host())),
        )
        .await
        .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    packages
        .configure_repository("down", &Npm, RepositoryKind::Proxy, &proxy_at(down.clone()))
        .await
        .unwrap();
    for (name, members) in [("first", ["empty", "npmjs"]), ("broken", ["down", "npmjs"])] {
        packages
            .configure_repository(
                name,
                &Npm,
                RepositoryKind::Virtual,
                &RepositorySettings {
                    members: members.map(str::to_owned).to_vec(),
                    ..RepositorySettings::default()
                },
            )
            .await
            .unwrap();
    }
    let found = get(&proxy.app, "/npm/first/pad").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.message());
    assert_eq!(
        hits(&upstream, "mirror/pad"),
        1,
        "the first member was asked first"
    );
    // A member that fails does not let the next one answer for it.
    let failed = get(&proxy.app, "/npm/broken/pad").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert!(failed.message().contains(&down), "{}", failed.message());
}

#[tokio::test]
async fn firewall_rules_of_a_member_apply_through_a_virtual_repository_and_changes_still_work() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let app = &proxy.app;
    proxy
        .packages
        .configure_repository(
            "internal",
            &Npm,
            RepositoryKind::Hosted,
            &Default::default(),
        )
        .await
        .unwrap();
    proxy
        .packages
        .configure_repository(
            "all",
            &Npm,
            RepositoryKind::Virtual,
            &RepositorySettings {
                members: vec!["internal".into(), "npmjs".into()],
                ..RepositorySettings::default()
            },
        )
        .await
        .unwrap();
    for version in ["1.0.0", "3.0.0-beta.1", "2.0.0"] {
        let bytes = tarball_of("tool", version);
        let put = send(
            app,
            Method::PUT,
            "/npm/internal/tool",
            publish_body("tool", version, &bytes)
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.message());
    }
    for (name, rule) in [
        (
            "upstream-pad",
            json!({"repositories": "npmjs", "deny": ["pkg:npm/pad@1.0.0"]}),
        ),
        (
            "internal-tool",
            json!({"repositories": "internal", "deny": ["pkg:npm/tool@2.0.0"]}),
        ),
    ] {
        let put = put_json(app, &format!("/api/v1/firewall-rules/{name}"), rule).await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.message());
    }
    let pad = get(app, "/npm/all/pad").await.json();
    assert!(
        pad["versions"].get("1.0.0").is_none(),
        "the member's rule applies"
    );
    assert_eq!(
        get(app, "/npm/all/pad/-/pad-1.0.0.tgz").await.status,
        StatusCode::FORBIDDEN
    );
    let tool = get(app, "/npm/all/tool").await.json();
    assert!(tool["versions"].get("2.0.0").is_none());
    assert_eq!(
        tool["dist-tags"]["latest"], "1.0.0",
        "latest moves to the release below, not to a pre-release above"
    );
    assert_eq!(
        get(app, "/npm/all/tool/-/tool-2.0.0.tgz").await.status,
        StatusCode::FORBIDDEN
    );

    // A change computed from what the firewall shows still applies: npm unpublishes the
    // package with the revision it was shown (as it does when its last shown version is
    // unpublished); the version it was never shown stays.
    let shown = get(app, "/npm/internal/tool").await.json();
    let rev = shown["_rev"].as_str().unwrap().to_owned();
    let deleted = send(
        app,
        Method::DELETE,
        &format!("/npm/internal/tool/-rev/{rev}"),
        Vec::new(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.message());
    let left = proxy
        .packages
        .package_to_change(&Npm, "internal", "tool")
        .await
        .unwrap()
        .expect("the hidden version stays");
    let left: Vec<&str> = left.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(left, ["2.0.0"]);
    assert_eq!(
        left_latest(&proxy.packages).await.as_deref(),
        Some("2.0.0"),
        "its tag stays too"
    );
}

async fn left_latest(packages: &Packages) -> Option<String> {
    let package = packages.package_to_change(&Npm, "internal", "tool").await;
    package.unwrap()?.tags.get("latest").cloned()
}

/// The collector and the proxy cache: a fetched file and its metadata are never collected while
/// their cache entries hold them (review delay 0, so everything is due at once); a file that
/// failed verification, and entries deleted through the admin API, are collected.
#[tokio::test]
async fn the_collector_keeps_what_cache_entries_hold_and_takes_the_rest() {
    let (server, _upstream) = start_upstream().await;
    let proxy = proxy_of(&format!("http://{}", server.host()), |_| {}).await;
    let blobs = Arc::clone(&proxy.blobs);
    let collector = registry_gc::Collector::new(
        Arc::clone(&blobs),
        Arc::clone(&proxy.metadata),
        registry_gc::CollectorConfig::default(),
    );
    let good = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(good.status, StatusCode::OK);
    // Refused for not matching: its bytes were stored, then left unreferenced.
    let lying = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.1.0.tgz").await;
    assert_eq!(lying.status, StatusCode::BAD_GATEWAY);
    collector.run_once().await;
    let entries = get(&proxy.app, "/api/v1/package-repositories/npmjs/cache")
        .await
        .json();
    let digests: Vec<String> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(digests.len(), 2);
    for digest in &digests {
        let digest = registry_core::Digest::parse(digest).unwrap();
        assert!(
            blobs.stat(&digest).await.unwrap().is_some(),
            "{digest} was collected"
        );
    }
    let lied = registry_core::Digest::sha256(&tarball_bytes("pad", "1.0.0"));
    assert!(
        blobs.stat(&lied).await.unwrap().is_some(),
        "the same bytes, held by 1.0.0"
    );
    // Served again from the cache after the pass.
    let again = get(&proxy.app, "/npm/npmjs/pad/-/pad-1.0.0.tgz").await;
    assert_eq!(again.bytes, tarball_bytes("pad", "1.0.0"));

    let emptied = send(
        &proxy.app,
        Method::DELETE,
        "/api/v1/package-repositories/npmjs/cache",
        Vec::new(),
    )
    .await;
    assert_eq!(emptied.json()["deleted"], 2);
    collector.run_once().await;
    for digest in &digests {
        let digest = registry_core::Digest::parse(digest).unwrap();
        assert!(
            blobs.stat(&digest).await.unwrap().is_none(),
            "{digest} was kept"
        );
    }
}
