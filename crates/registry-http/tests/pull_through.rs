//! OCI pull-through caches in-process, over an upstream registry on loopback (this registry's
//! own OCI API, and a liar): manifests and blobs pulled on first use and then served from here,
//! a moved tag followed, the upstream stopped (held tags served and said stale, others a clear
//! error naming it), content that does not match its digest refused with nothing kept, pushes
//! refused.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::blob::once_stream;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{
    Actor, Digest, OciRegistry, Packages, PullThrough, Reference, RepositoryName, Tag,
    UpstreamSettings,
};
use registry_http::serve::{RunningRegistry, ServerSettings};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::json;
use tower::ServiceExt;

fn registry() -> OciRegistry {
    OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    )
}

/// Pushes an image of one layer under `tag`; answers the manifest's bytes and the layer.
async fn push(registry: &OciRegistry, repository: &str, tag: &str, seed: u8) -> (Bytes, Bytes) {
    let repo = RepositoryName::parse(repository).unwrap();
    let config = Bytes::from(format!("{{\"seed\":{seed}}}"));
    let layer = Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i as u8) ^ seed)
            .collect::<Vec<u8>>(),
    );
    for blob in [&config, &layer] {
        registry
            .put_blob(&repo, &Digest::sha256(blob), once_stream(blob.clone()))
            .await
            .unwrap();
    }
    let manifest = Bytes::from(
        json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": Digest::sha256(&config), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                         "digest": Digest::sha256(&layer), "size": layer.len() }] })
        .to_string(),
    );
    registry
        .put_manifest(
            &repo,
            &Reference::Tag(Tag::parse(tag).unwrap()),
            manifest.clone(),
            Some(OCI_MANIFEST),
            &Actor::trusted(),
        )
        .await
        .unwrap();
    (manifest, layer)
}

/// `registry`'s OCI API on a loopback port: an upstream.
async fn serve(registry: OciRegistry) -> RunningRegistry {
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let app = registry_http::app::Application::new(registry, packages).router();
    RunningRegistry::serve_app(app, ServerSettings::default())
        .await
        .unwrap()
}

/// A cache of `url` under `hub/` in `registry`.
fn proxy_over(registry: OciRegistry, url: &str, ttl: u64) -> Router {
    let mut upstream = UpstreamSettings::new(url);
    upstream.metadata_ttl_seconds = ttl;
    upstream.timeout_seconds = 5;
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    registry_http::app::Application::new(registry, packages)
        .pull_through(vec![PullThrough {
            prefix: "hub".into(),
            upstream,
        }])
        .unwrap()
        .router()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, method: Method, uri: &str, body: Bytes) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::ACCEPT, OCI_MANIFEST)
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, Bytes::new()).await
}

#[tokio::test]
async fn images_are_pulled_once_followed_when_moved_and_served_when_the_upstream_is_down() {
    let upstream_registry = registry();
    let (manifest, layer) = push(&upstream_registry, "library/app", "1.0", 1).await;
    let upstream = serve(upstream_registry.clone()).await;
    let here = registry();
    let proxy = proxy_over(here.clone(), &format!("http://{}", upstream.host()), 0);

    let pulled = get(&proxy, "/v2/hub/library/app/manifests/1.0").await;
    assert_eq!(pulled.status, StatusCode::OK, "{}", pulled.text());
    assert_eq!(pulled.body, manifest);
    let digest = Digest::sha256(&manifest);
    assert_eq!(
        pulled.headers["docker-content-digest"].to_str().unwrap(),
        digest.as_str()
    );
    let by_digest = get(&proxy, &format!("/v2/hub/library/app/manifests/{digest}")).await;
    assert_eq!(by_digest.body, manifest);
    let layer_uri = format!("/v2/hub/library/app/blobs/{}", Digest::sha256(&layer));
    let blob = get(&proxy, &layer_uri).await;
    assert_eq!(blob.status, StatusCode::OK, "{}", blob.text());
    assert!(blob.body == layer, "the layer's bytes");
    // Held by a cache entry of the prefix: no manifest's reference keeps a pulled layer.
    let path = format!("library/app/blobs/{}", Digest::sha256(&layer));
    let held = here
        .metadata()
        .cache_entry("pull-through:hub", &path)
        .await
        .unwrap();
    assert!(held.is_some(), "{path} is held");
    // Listed through the admin API, cleaned by last use.
    let listed = get(&proxy, "/api/v1/pull-through/hub/cache").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(listed["entries"][0]["path"], path.as_str());
    assert!(listed["entries"][0]["upstream"].as_str().is_some());
    let kept = send(
        &proxy,
        Method::DELETE,
        "/api/v1/pull-through/hub/cache?unused_days=1",
        Bytes::new(),
    )
    .await;
    assert_eq!(kept.text(), r#"{"deleted":0}"#);
    let unknown = get(&proxy, "/api/v1/pull-through/nope/cache").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Outside the cache's prefix nothing is pulled.
    let outside = get(&proxy, "/v2/library/app/manifests/1.0").await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);

    // The tag moves upstream: followed (the validity here is 0 s).
    let (moved, _) = push(&upstream_registry, "library/app", "1.0", 2).await;
    let again = get(&proxy, "/v2/hub/library/app/manifests/1.0").await;
    assert_eq!(again.body, moved, "the moved tag is followed");

    // The upstream stopped: what is held is served, said stale; what is not, a clear error.
    upstream.stop().await.unwrap();
    let stale = get(&proxy, "/v2/hub/library/app/manifests/1.0").await;
    assert_eq!(stale.status, StatusCode::OK, "{}", stale.text());
    assert_eq!(stale.body, moved);
    assert!(stale.headers.contains_key("x-registry-stale"));
    let blob = get(&proxy, &layer_uri).await;
    assert!(blob.body == layer, "the layer from the cache");
    let missing = get(&proxy, "/v2/hub/library/other/manifests/1.0").await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        missing.text()
    );
    assert!(missing.text().contains("UNKNOWN") && missing.text().contains("upstream http://"));

    // Pushes into the cache are refused.
    let push = send(
        &proxy,
        Method::PUT,
        "/v2/hub/library/app/manifests/mine",
        manifest.clone(),
    )
    .await;
    assert_eq!(push.status, StatusCode::FORBIDDEN, "{}", push.text());
    assert!(
        push.text().contains("pull-through cache"),
        "{}",
        push.text()
    );
    let upload = send(
        &proxy,
        Method::POST,
        "/v2/hub/library/app/blobs/uploads/",
        Bytes::new(),
    )
    .await;
    assert_eq!(upload.status, StatusCode::FORBIDDEN, "{}", upload.text());
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused_and_nothing_is_kept() {
    let real = Bytes::from_static(b"the real layer");
    let wrong = Digest::sha256(b"what the client asked for");
    let liar = Router::new().fallback(move |request: Request<Body>| {
        let real = real.clone();
        async move {
            let path = request.uri().path().to_owned();
            if path.contains("/blobs/") || path.contains("/manifests/sha256:") {
                (StatusCode::OK, real)
            } else {
                (StatusCode::NOT_FOUND, Bytes::new())
            }
        }
    });
    let liar = RunningRegistry::serve_app(liar, ServerSettings::default())
        .await
        .unwrap();
    let here = registry();
    // A private blob of this registry, which the liar names and answers 200 for with other
    // bytes: the cache must not hand it out.
    let private = Bytes::from_static(b"private bytes of another repository");
    let secret = Digest::sha256(&private);
    here.put_blob(
        &RepositoryName::parse("private/x").unwrap(),
        &secret,
        once_stream(private),
    )
    .await
    .unwrap();
    let proxy = proxy_over(here.clone(), &format!("http://{}", liar.host()), 300);
    let leaked = get(&proxy, &format!("/v2/hub/x/blobs/{secret}")).await;
    assert_eq!(leaked.status, StatusCode::BAD_GATEWAY, "{}", leaked.text());
    let linked = here
        .metadata()
        .linked_blob(&RepositoryName::parse("hub/x").unwrap(), &secret)
        .await
        .unwrap();
    assert!(linked.is_none(), "nothing linked into the cache");
    for uri in [
        format!("/v2/hub/x/blobs/{wrong}"),
        format!("/v2/hub/x/manifests/{wrong}"),
    ] {
        for _ in 0..2 {
            let reply = get(&proxy, &uri).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_GATEWAY,
                "{uri}: {}",
                reply.text()
            );
            assert!(
                reply.text().contains("does not match") || reply.text().contains("hashes to"),
                "{uri}: {}",
                reply.text()
            );
        }
    }
}

/// An upstream that answers a token challenge (as Docker Hub does): the cache asks the realm
/// for a token with its credentials, then the upstream with the token; the token is reused.
#[tokio::test]
async fn a_token_challenge_is_followed_with_the_upstreams_credentials() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let (manifest, _) = push(&registry(), "library/app", "1.0", 3).await;
    let tokens_issued = Arc::new(AtomicU32::new(0));
    let issued = Arc::clone(&tokens_issued);
    // Rotated: the upstream takes only the realm's newest token.
    let rotated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotation = Arc::clone(&rotated);
    let upstream = Router::new().fallback(move |request: Request<Body>| {
        let (manifest, issued, rotation) =
            (manifest.clone(), Arc::clone(&issued), Arc::clone(&rotation));
        async move {
            let current = if rotation.load(Ordering::SeqCst) {
                "t1ken"
            } else {
                "t0ken"
            };
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let host = request.headers()[header::HOST].to_str().unwrap().to_owned();
            let uri = request.uri().to_string();
            if uri.starts_with("/token?") {
                // dev:s3cret, and the scope the challenge named.
                assert!(
                    uri.contains("service=hub") && uri.contains("scope=repository"),
                    "{uri}"
                );
                if authorization != "Basic ZGV2OnMzY3JldA==" {
                    return (StatusCode::UNAUTHORIZED, HeaderMap::new(), Bytes::new());
                }
                issued.fetch_add(1, Ordering::SeqCst);
                let answer = json!({"token": current, "expires_in": 300}).to_string();
                return (StatusCode::OK, HeaderMap::new(), Bytes::from(answer));
            }
            if authorization != format!("Bearer {current}") {
                let mut headers = HeaderMap::new();
                let challenge = format!(
                    "Bearer realm=\"http://{host}/token\",service=\"hub\",\
                     scope=\"repository:library/app:pull\""
                );
                headers.insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
                return (StatusCode::UNAUTHORIZED, headers, Bytes::new());
            }
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, OCI_MANIFEST.parse().unwrap());
            (StatusCode::OK, headers, manifest)
        }
    });
    let upstream = RunningRegistry::serve_app(upstream, ServerSettings::default())
        .await
        .unwrap();
    let mut settings = UpstreamSettings::new(format!("http://{}", upstream.host()));
    settings.username = Some("dev".into());
    settings.password = Some("s3cret".into());
    settings.metadata_ttl_seconds = 0;
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let proxy = registry_http::app::Application::new(registry(), packages)
        .pull_through(vec![PullThrough {
            prefix: "hub".into(),
            upstream: settings,
        }])
        .unwrap()
        .router();
    for _ in 0..3 {
        let pulled = get(&proxy, "/v2/hub/library/app/manifests/1.0").await;
        assert_eq!(pulled.status, StatusCode::OK, "{}", pulled.text());
    }
    assert_eq!(
        tokens_issued.load(Ordering::SeqCst),
        1,
        "the token is reused"
    );
    // A kept token the upstream no longer takes is dropped and a fresh one asked for.
    rotated.store(true, Ordering::SeqCst);
    let pulled = get(&proxy, "/v2/hub/library/app/manifests/1.0").await;
    assert_eq!(pulled.status, StatusCode::OK, "{}", pulled.text());
    assert!(!pulled.headers.contains_key("x-registry-stale"));
    assert_eq!(tokens_issued.load(Ordering::SeqCst), 2);
}

/// Registries send blobs from a CDN by redirect: followed to the upstream's file origins only.
#[tokio::test]
async fn blob_redirects_are_followed_to_file_origins_only() {
    let bytes = Bytes::from_static(b"a layer served by the CDN");
    let digest = Digest::sha256(&bytes);
    let cdn = Router::new().fallback(move || {
        let bytes = bytes.clone();
        async move { bytes }
    });
    let cdn = RunningRegistry::serve_app(cdn, ServerSettings::default())
        .await
        .unwrap();
    let cdn_origin = format!("http://{}", cdn.host());
    let to = cdn_origin.clone();
    let upstream = Router::new().fallback(move || {
        let location = format!("{to}/blob");
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
        }
    });
    let upstream = RunningRegistry::serve_app(upstream, ServerSettings::default())
        .await
        .unwrap();
    for (origins, expected) in [
        (vec![], StatusCode::BAD_GATEWAY),
        (vec![cdn_origin.clone()], StatusCode::OK),
    ] {
        let mut settings = UpstreamSettings::new(format!("http://{}", upstream.host()));
        settings.file_origins = origins;
        let packages = Packages::new(
            Arc::new(MemoryBlobStore::new()),
            Arc::new(MemoryMetadataStore::new()),
        );
        let proxy = registry_http::app::Application::new(registry(), packages)
            .pull_through(vec![PullThrough {
                prefix: "hub".into(),
                upstream: settings,
            }])
            .unwrap()
            .router();
        let reply = get(&proxy, &format!("/v2/hub/x/blobs/{digest}")).await;
        assert_eq!(reply.status, expected, "{}", reply.text());
    }
}

/// A virtual image registry over a hosted namespace and a cache: a name pushed here answers
/// alone (its upstream namesake's tags never complete it), other names come through the cache,
/// blobs from the member that has the name; pushes to it are refused.
#[tokio::test]
async fn a_virtual_registry_reads_hosted_names_first_and_the_cache_for_the_rest() {
    let upstream_registry = registry();
    push(&upstream_registry, "library/app", "1.0", 1).await;
    push(&upstream_registry, "library/app", "2.0", 2).await;
    let (other, other_layer) = push(&upstream_registry, "library/other", "1.0", 4).await;
    let upstream = serve(upstream_registry).await;
    let here = registry();
    let (internal, internal_layer) = push(&here, "corp/library/app", "1.0", 7).await;
    let mut settings = UpstreamSettings::new(format!("http://{}", upstream.host()));
    settings.timeout_seconds = 5;
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let proxy = registry_http::app::Application::new(here, packages)
        .pull_through(vec![PullThrough {
            prefix: "hub".into(),
            upstream: settings,
        }])
        .unwrap()
        .oci_virtual(vec![registry_core::OciVirtual {
            prefix: "all".into(),
            members: vec!["corp".into(), "hub".into()],
        }])
        .unwrap()
        .router();

    let hosted = get(&proxy, "/v2/all/library/app/manifests/1.0").await;
    assert_eq!(hosted.status, StatusCode::OK, "{}", hosted.text());
    assert_eq!(
        hosted.body, internal,
        "the hosted image, not the upstream's"
    );
    let not_completed = get(&proxy, "/v2/all/library/app/manifests/2.0").await;
    assert_eq!(
        not_completed.status,
        StatusCode::NOT_FOUND,
        "a hosted name never gets the upstream's tags"
    );
    let layer = get(
        &proxy,
        &format!(
            "/v2/all/library/app/blobs/{}",
            Digest::sha256(&internal_layer)
        ),
    )
    .await;
    assert!(layer.body == internal_layer);

    let cached = get(&proxy, "/v2/all/library/other/manifests/1.0").await;
    assert_eq!(cached.status, StatusCode::OK, "{}", cached.text());
    assert_eq!(cached.body, other);
    let layer = get(
        &proxy,
        &format!(
            "/v2/all/library/other/blobs/{}",
            Digest::sha256(&other_layer)
        ),
    )
    .await;
    assert_eq!(layer.status, StatusCode::OK, "{}", layer.text());
    assert!(layer.body == other_layer);

    let push = send(
        &proxy,
        Method::PUT,
        "/v2/all/library/new/manifests/1.0",
        internal.clone(),
    )
    .await;
    assert_eq!(push.status, StatusCode::FORBIDDEN, "{}", push.text());
}

/// An index is pulled with its child manifests (so it keeps them from the collector as any
/// index does), and a tag withdrawn upstream is withdrawn here.
#[tokio::test]
async fn an_index_comes_with_its_children_and_a_withdrawn_tag_goes() {
    let upstream_registry = registry();
    let (amd, _) = push(&upstream_registry, "library/multi", "amd64", 5).await;
    let (arm, _) = push(&upstream_registry, "library/multi", "arm64", 6).await;
    let index = Bytes::from(
        json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                { "mediaType": OCI_MANIFEST, "digest": Digest::sha256(&amd), "size": amd.len() },
                { "mediaType": OCI_MANIFEST, "digest": Digest::sha256(&arm), "size": arm.len() }
            ] })
        .to_string(),
    );
    let repo = RepositoryName::parse("library/multi").unwrap();
    upstream_registry
        .put_manifest(
            &repo,
            &Reference::Tag(Tag::parse("v1").unwrap()),
            index.clone(),
            Some("application/vnd.oci.image.index.v1+json"),
            &Actor::trusted(),
        )
        .await
        .unwrap();
    let upstream = serve(upstream_registry.clone()).await;
    let here = registry();
    let proxy = proxy_over(here.clone(), &format!("http://{}", upstream.host()), 0);
    let pulled = get(&proxy, "/v2/hub/library/multi/manifests/v1").await;
    assert_eq!(pulled.status, StatusCode::OK, "{}", pulled.text());
    assert_eq!(pulled.body, index);
    let cached = RepositoryName::parse("hub/library/multi").unwrap();
    for child in [&amd, &arm] {
        let stored = here
            .metadata()
            .manifest(&cached, &Reference::Digest(Digest::sha256(child)))
            .await
            .unwrap();
        assert!(stored.is_some(), "the children came with the index");
    }
    // Withdrawn upstream: gone here too, and not served stale later.
    upstream_registry
        .delete_manifest(
            &repo,
            &Reference::Tag(Tag::parse("v1").unwrap()),
            &Actor::trusted(),
        )
        .await
        .unwrap();
    let gone = get(&proxy, "/v2/hub/library/multi/manifests/v1").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text());
    let tags = here.tags(&cached, None, None).await.unwrap().0;
    assert!(tags.is_empty(), "{tags:?}");
}

/// Concurrent misses share the upstream's answer: clients waiting on a blob whose fetch fails
/// get that failure instead of asking again one by one, and clients waiting on a tag check
/// (validity 0 s) take the check that finished while they waited.
#[tokio::test]
async fn waiters_share_a_failed_blob_fetch_and_a_finished_tag_check() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let (manifest, _) = push(&registry(), "library/app", "1.0", 8).await;
    let blob_asks = Arc::new(AtomicU32::new(0));
    let tag_asks = Arc::new(AtomicU32::new(0));
    let (blobs, tags) = (Arc::clone(&blob_asks), Arc::clone(&tag_asks));
    let upstream = Router::new().fallback(move |request: Request<Body>| {
        let (manifest, blobs, tags) = (manifest.clone(), Arc::clone(&blobs), Arc::clone(&tags));
        async move {
            if request.uri().path().contains("/blobs/") {
                blobs.fetch_add(1, Ordering::SeqCst);
                // Never answers within the timeout.
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                return (StatusCode::OK, HeaderMap::new(), Bytes::new());
            }
            tags.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, OCI_MANIFEST.parse().unwrap());
            (StatusCode::OK, headers, manifest)
        }
    });
    let upstream = RunningRegistry::serve_app(upstream, ServerSettings::default())
        .await
        .unwrap();
    let mut settings = UpstreamSettings::new(format!("http://{}", upstream.host()));
    settings.timeout_seconds = 1;
    settings.metadata_ttl_seconds = 0;
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let proxy = registry_http::app::Application::new(registry(), packages)
        .pull_through(vec![PullThrough {
            prefix: "hub".into(),
            upstream: settings,
        }])
        .unwrap()
        .router();
    let blob = format!("/v2/hub/library/app/blobs/{}", Digest::sha256(b"never"));
    let replies = futures::future::join_all((0..4).map(|_| get(&proxy, &blob))).await;
    for reply in &replies {
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            reply.text()
        );
    }
    assert_eq!(blob_asks.load(Ordering::SeqCst), 1, "one upstream request");
    let tag = "/v2/hub/library/app/manifests/1.0";
    let replies = futures::future::join_all((0..8).map(|_| get(&proxy, tag))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert!(
        tag_asks.load(Ordering::SeqCst) <= 2,
        "{} checks for 8 waiting clients",
        tag_asks.load(Ordering::SeqCst)
    );
}
