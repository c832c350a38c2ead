//! The OCI distribution conformance scenarios — pull, push, content discovery and content
//! management — driven in-process through the router, on every metadata backend.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::manifest::{NON_DISTRIBUTABLE_LAYER_TYPES, OCI_INDEX, OCI_MANIFEST};
use registry_core::{Digest, Limits, ManifestLimits, MetadataStore, NamePattern, OciRegistry};
use registry_gc::{Collector, CollectorConfig, RunReport};
use registry_storage::memory::MemoryBlobStore;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Client {
    app: Router,
    registry: OciRegistry,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first OCI error code of the body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Client {
    fn new(metadata: Arc<dyn MetadataStore>) -> Self {
        let registry = OciRegistry::new(Arc::new(MemoryBlobStore::new()), metadata)
            .with_limits(Limits {
                manifest: ManifestLimits {
                    max_size: 64 * 1024,
                },
                max_blob_size: 8 << 20,
                max_page_size: 1000,
                ..Limits::default()
            })
            .with_sparse_manifests(vec![NamePattern::parse("mirror/*").unwrap()]);
        Client {
            app: registry_http::oci::router(registry.clone()),
            registry,
        }
    }

    /// Runs the online collector once over the registry's stores.
    async fn collect(&self) -> RunReport {
        Collector::new(
            Arc::clone(self.registry.blob_store()),
            Arc::clone(self.registry.metadata()),
            CollectorConfig::default(),
        )
        .run_once()
        .await
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        if uri.starts_with("/v2") {
            assert_eq!(
                headers
                    .get("docker-distribution-api-version")
                    .map(|v| v.to_str().unwrap()),
                Some("registry/2.0")
            );
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], Body::empty()).await
    }

    async fn head(&self, uri: &str) -> Reply {
        self.send(Method::HEAD, uri, &[], Body::empty()).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send(Method::DELETE, uri, &[], Body::empty()).await
    }

    /// Pushes a blob with POST + PUT and returns its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        let start = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(start.status, StatusCode::ACCEPTED);
        let location = start.header("location").to_owned();
        let put = self
            .send(
                Method::PUT,
                &format!("{location}?digest={digest}"),
                &[],
                Bytes::copy_from_slice(data),
            )
            .await;
        assert_eq!(
            put.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&put.body)
        );
        digest
    }

    async fn put_manifest(&self, repo: &str, reference: &str, manifest: &Value) -> Reply {
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_owned();
        self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", &media_type)],
            manifest.to_string(),
        )
        .await
    }

    /// Pushes a config and a layer and an image manifest for them; returns the manifest.
    async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> (Value, Digest) {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer {seed}");
        self.push_blob(repo, config.as_bytes()).await;
        self.push_blob(repo, layer.as_bytes()).await;
        let manifest = image_manifest(config.as_bytes(), &[layer.as_bytes()], None);
        let reply = self.put_manifest(repo, reference, &manifest).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let digest = Digest::sha256(manifest.to_string().as_bytes());
        assert_eq!(reply.header("docker-content-digest"), digest.as_str());
        (manifest, digest)
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An image manifest over the given config and layer contents, each described with its real
/// digest and size.
fn image_manifest(config: &[u8], layers: &[&[u8]], subject: Option<(&Digest, usize)>) -> Value {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &Digest::sha256(config), config.len()),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", &Digest::sha256(l), l.len())).collect::<Vec<_>>(),
    });
    if let Some((subject, size)) = subject {
        manifest["subject"] = descriptor(OCI_MANIFEST, subject, size);
        manifest["artifactType"] = json!("application/vnd.example.sig");
    }
    manifest
}

async fn pull(client: Client) {
    assert_eq!(client.get("/v2/").await.status, StatusCode::OK);
    let (manifest, digest) = client.push_image("pull/app", "v1", "pull").await;
    let bytes = manifest.to_string();
    for reference in ["v1", digest.as_str()] {
        let uri = format!("/v2/pull/app/manifests/{reference}");
        for accept in [None, Some("*/*"), Some(OCI_MANIFEST)] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let got = client
                .send(Method::GET, &uri, &headers, Body::empty())
                .await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.body, bytes.as_bytes(), "served byte for byte");
            assert_eq!(got.header("content-type"), OCI_MANIFEST);
            assert_eq!(got.header("docker-content-digest"), digest.as_str());
        }
        let head = client.head(&uri).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), bytes.len().to_string());
        assert_eq!(head.header("docker-content-digest"), digest.as_str());
    }
    let missing = client.get("/v2/pull/app/manifests/nope").await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let missing = client.head("/v2/pull/app/manifests/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let layer = Digest::sha256(b"layer pull");
    let blob = client.get(&format!("/v2/pull/app/blobs/{layer}")).await;
    assert_eq!(
        (blob.status, blob.body.as_ref()),
        (StatusCode::OK, b"layer pull".as_ref())
    );
    assert_eq!(blob.header("docker-content-digest"), layer.as_str());
    let head = client.head(&format!("/v2/pull/app/blobs/{layer}")).await;
    assert_eq!(
        (head.status, head.header("content-length")),
        (StatusCode::OK, "10")
    );
    let ranged = client
        .send(
            Method::GET,
            &format!("/v2/pull/app/blobs/{layer}"),
            &[("range", "bytes=2-5")],
            Body::empty(),
        )
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body.as_ref(), b"yer ");
    assert_eq!(ranged.header("content-range"), "bytes 2-5/10");
    let suffix = client
        .send(
            Method::GET,
            &format!("/v2/pull/app/blobs/{layer}"),
            &[("range", "bytes=-4")],
            Body::empty(),
        )
        .await;
    assert_eq!(suffix.body.as_ref(), b"pull");
    let past = client
        .send(
            Method::GET,
            &format!("/v2/pull/app/blobs/{layer}"),
            &[("range", "bytes=50-")],
            Body::empty(),
        )
        .await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let unknown = client
        .get(&format!("/v2/pull/app/blobs/{}", Digest::sha256(b"none")))
        .await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    let elsewhere = client.get(&format!("/v2/other/repo/blobs/{layer}")).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::NOT_FOUND,
        "blobs are only served from repositories that hold them"
    );
    let bad = client.get("/v2/pull/app/blobs/sha256:1234").await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let bad_name = client.get("/v2/Pull/App/manifests/v1").await;
    assert_eq!(
        (bad_name.status, bad_name.code().as_str()),
        (StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
}

async fn push(client: Client) {
    let repo = "push/app";
    // Single POST with ?digest=.
    let data = b"monolithic single post";
    let digest = Digest::sha256(data);
    let post = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[],
            Bytes::from_static(data),
        )
        .await;
    assert_eq!(post.status, StatusCode::CREATED);
    assert_eq!(
        post.header("location"),
        format!("/v2/{repo}/blobs/{digest}")
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/blobs/{digest}"))
            .await
            .body
            .as_ref(),
        data
    );

    // Chunked: PATCH with Content-Range, status, out-of-order chunk, final PUT with the last chunk.
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256(&data);
    let start = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert_eq!(start.header("range"), "0-0");
    let location = start.header("location").to_owned();
    let patch = |range: &'static str, bytes: Vec<u8>| {
        let client = &client;
        let location = location.clone();
        async move {
            client
                .send(
                    Method::PATCH,
                    &location,
                    &[
                        ("content-range", range),
                        ("content-type", "application/octet-stream"),
                    ],
                    bytes,
                )
                .await
        }
    };
    let first = patch("0-9999", data[..10_000].to_vec()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.header("range"), "0-9999");
    let status = client.get(&location).await;
    assert_eq!(
        (status.status, status.header("range")),
        (StatusCode::NO_CONTENT, "0-9999")
    );
    assert_eq!(status.header("location"), location);
    let out_of_order = patch("20000-29999", data[20_000..].to_vec()).await;
    assert_eq!(out_of_order.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let lying = patch("10000-10099", data[10_000..10_050].to_vec()).await;
    assert_eq!(
        lying.status,
        StatusCode::BAD_REQUEST,
        "a body shorter than its Content-Range is refused"
    );
    assert_eq!(
        client.get(&location).await.header("range"),
        "0-9999",
        "and nothing of it kept"
    );
    assert_eq!(
        patch("10000-19999", data[10_000..20_000].to_vec())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let wrong = client
        .send(
            Method::PUT,
            &format!("{location}?digest={}", Digest::sha256(b"wrong")),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert_eq!(
        client
            .head(&format!("/v2/{repo}/blobs/{}", Digest::sha256(b"wrong")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let done = client
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-range", "20000-29999")],
            data[20_000..].to_vec(),
        )
        .await;
    assert_eq!(
        done.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    assert_eq!(done.header("docker-content-digest"), digest.as_str());
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/blobs/{digest}"))
            .await
            .body
            .as_ref(),
        data.as_slice()
    );
    let after = patch("30000-30009", vec![0; 10]).await;
    assert_eq!(
        (after.status, after.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );

    // Streamed: PATCH without Content-Range, then PUT.
    let streamed = b"streamed blob body";
    let digest = Digest::sha256(streamed);
    let start = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    let location = start.header("location").to_owned();
    let patched = client
        .send(Method::PATCH, &location, &[], Bytes::from_static(streamed))
        .await;
    assert_eq!(
        (patched.status, patched.header("range")),
        (StatusCode::ACCEPTED, "0-17")
    );
    let done = client
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED);

    // Cancel.
    let start = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    let location = start.header("location").to_owned();
    assert_eq!(
        client.delete(&location).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(client.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/blobs/uploads/nosuchid"))
            .await
            .code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/blobs/uploads/bad!id"))
            .await
            .code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    // An upload is bound to its repository.
    let start = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    let id = start.header("docker-upload-uuid").to_owned();
    assert_eq!(
        client
            .get(&format!("/v2/elsewhere/blobs/uploads/{id}"))
            .await
            .code(),
        "BLOB_UPLOAD_UNKNOWN"
    );

    // Blob over the size limit.
    let big = vec![0u8; (8 << 20) + 1];
    let too_big = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", Digest::sha256(&big)),
            &[],
            big,
        )
        .await;
    assert_eq!(
        (too_big.status, too_big.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
    );

    // Mounts: from a repository that has the blob, automatically, and a miss.
    let (_, _) = client.push_image("push/source", "v1", "mount").await;
    let layer = Digest::sha256(b"layer mount");
    let mounted = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?mount={layer}&from=push/source"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    assert_eq!(
        mounted.header("location"),
        format!("/v2/{repo}/blobs/{layer}")
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/blobs/{layer}"))
            .await
            .status,
        StatusCode::OK
    );
    let config = Digest::sha256(b"{\"seed\":\"mount\"}");
    let auto = client
        .send(
            Method::POST,
            &format!("/v2/push/auto/blobs/uploads/?mount={config}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        auto.status,
        StatusCode::CREATED,
        "a known blob mounts without from"
    );
    let miss = client
        .send(
            Method::POST,
            &format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from=push/source",
                Digest::sha256(b"absent")
            ),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        miss.status,
        StatusCode::ACCEPTED,
        "a failed mount starts an upload"
    );
    assert!(miss.header("location").contains("/blobs/uploads/"));
    let wrong_source = client
        .send(
            Method::POST,
            &format!("/v2/push/third/blobs/uploads/?mount={layer}&from=push/auto"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        wrong_source.status,
        StatusCode::ACCEPTED,
        "from must hold the blob"
    );

    // Manifests: by tag, by digest, missing blobs, subject, size limit, bad JSON.
    let (manifest, digest) = client.push_image(repo, "v1", "manifest").await;
    let by_digest = client.put_manifest(repo, digest.as_str(), &manifest).await;
    assert_eq!(by_digest.status, StatusCode::CREATED);
    assert_eq!(
        by_digest.header("location"),
        format!("/v2/{repo}/manifests/{digest}")
    );
    let mismatch = client
        .put_manifest(repo, Digest::sha256(b"other").as_str(), &manifest)
        .await;
    assert_eq!(mismatch.code(), "DIGEST_INVALID");

    let dangling = image_manifest(b"{\"seed\":\"manifest\"}", &[b"never pushed"], None);
    let refused = client.put_manifest(repo, "dangling", &dangling).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/manifests/dangling"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let absent_subject = Digest::sha256(b"subject pushed later");
    let config = b"{\"seed\":\"manifest\"}";
    let referrer = image_manifest(config, &[], Some((&absent_subject, 123)));
    let pushed = client
        .put_manifest(
            repo,
            Digest::sha256(referrer.to_string().as_bytes()).as_str(),
            &referrer,
        )
        .await;
    assert_eq!(
        pushed.status,
        StatusCode::CREATED,
        "a subject need not exist"
    );
    assert_eq!(pushed.header("oci-subject"), absent_subject.as_str());

    let huge = json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x".repeat(70_000) });
    let over = client.put_manifest(repo, "huge", &huge).await;
    assert_eq!(
        (over.status, over.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
    );
    let broken = client
        .send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/broken"),
            &[("content-type", OCI_MANIFEST)],
            "{not json",
        )
        .await;
    assert_eq!(
        (broken.status, broken.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    let bad_tag = client.put_manifest(repo, "-bad", &manifest).await;
    assert_eq!(bad_tag.status, StatusCode::BAD_REQUEST);

    // An index over pushed manifests.
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &digest, manifest.to_string().len())],
    });
    let pushed = client.put_manifest(repo, "multi", &index).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/manifests/multi"))
            .await
            .header("content-type"),
        OCI_INDEX
    );
    let orphan = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &Digest::sha256(b"no such manifest"), 3)],
    });
    assert_eq!(
        client.put_manifest(repo, "orphan", &orphan).await.code(),
        "MANIFEST_BLOB_UNKNOWN"
    );
}

async fn content_discovery(client: Client) {
    let repo = "discover/app";
    let (manifest, digest) = client.push_image(repo, "v1", "discover").await;
    for tag in ["a", "b", "c", "d", "e"] {
        assert_eq!(
            client.put_manifest(repo, tag, &manifest).await.status,
            StatusCode::CREATED
        );
    }
    let all = client.get(&format!("/v2/{repo}/tags/list")).await;
    assert_eq!(
        all.json(),
        json!({ "name": repo, "tags": ["a", "b", "c", "d", "e", "v1"] })
    );
    assert!(all.headers.get("link").is_none());
    let page = client.get(&format!("/v2/{repo}/tags/list?n=2")).await;
    assert_eq!(page.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        format!("</v2/{repo}/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let next = client
        .get(&format!("/v2/{repo}/tags/list?n=2&last=b"))
        .await;
    assert_eq!(next.json()["tags"], json!(["c", "d"]));
    let last = client
        .get(&format!("/v2/{repo}/tags/list?n=2&last=e"))
        .await;
    assert_eq!(last.json()["tags"], json!(["v1"]));
    assert!(last.headers.get("link").is_none());
    let zero = client.get(&format!("/v2/{repo}/tags/list?n=0")).await;
    assert_eq!(zero.json()["tags"], json!([]));
    let bad = client.get(&format!("/v2/{repo}/tags/list?n=many")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = client.get("/v2/no/such/tags/list").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );

    client.push_image("discover/zeta", "v1", "z").await;
    let catalog = client.get("/v2/_catalog?n=1").await;
    assert_eq!(catalog.json(), json!({ "repositories": ["discover/app"] }));
    assert_eq!(
        catalog.header("link"),
        "</v2/_catalog?n=1&last=discover%2Fapp>; rel=\"next\""
    );
    let rest = client.get("/v2/_catalog?n=1&last=discover%2Fapp").await;
    assert_eq!(rest.json(), json!({ "repositories": ["discover/zeta"] }));

    // Referrers.
    let config = b"{\"seed\":\"discover\"}";
    let size = manifest.to_string().len();
    let sig = image_manifest(config, &[], Some((&digest, size)));
    let mut sbom = image_manifest(config, &[], Some((&digest, size)));
    sbom["artifactType"] = json!("application/vnd.example.sbom");
    sbom["annotations"] = json!({ "org.example.kind": "sbom" });
    for m in [&sig, &sbom] {
        let d = Digest::sha256(m.to_string().as_bytes());
        assert_eq!(
            client.put_manifest(repo, d.as_str(), m).await.status,
            StatusCode::CREATED
        );
    }
    let listed = client.get(&format!("/v2/{repo}/referrers/{digest}")).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.header("content-type"), OCI_INDEX);
    let index = listed.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert!(listed.headers.get("oci-filters-applied").is_none());
    let filtered = client
        .get(&format!(
            "/v2/{repo}/referrers/{digest}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(filtered.header("oci-filters-applied"), "artifactType");
    let manifests = filtered.json()["manifests"].clone();
    assert_eq!(manifests.as_array().unwrap().len(), 1);
    assert_eq!(manifests[0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(manifests[0]["annotations"]["org.example.kind"], "sbom");
    assert_eq!(
        manifests[0]["digest"],
        Digest::sha256(sbom.to_string().as_bytes()).as_str()
    );
    assert_eq!(manifests[0]["size"], sbom.to_string().len());
    let none = client
        .get(&format!(
            "/v2/{repo}/referrers/{}",
            Digest::sha256(b"unknown")
        ))
        .await;
    assert_eq!(
        (none.status, none.json()["manifests"].clone()),
        (StatusCode::OK, json!([]))
    );
    let bad = client.get(&format!("/v2/{repo}/referrers/sha256:zz")).await;
    assert_eq!(bad.code(), "DIGEST_INVALID");
}

async fn content_management(client: Client) {
    let repo = "manage/app";
    let (manifest, digest) = client.push_image(repo, "v1", "manage").await;
    assert_eq!(
        client.put_manifest(repo, "v2", &manifest).await.status,
        StatusCode::CREATED
    );

    // Deleting a tag leaves the manifest.
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/v2"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client.get(&format!("/v2/{repo}/manifests/v2")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/manifests/{digest}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/v2"))
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );

    // Deleting by digest removes the manifest and its remaining tags.
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/{digest}"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/manifests/{digest}"))
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        client.get(&format!("/v2/{repo}/manifests/v1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.get(&format!("/v2/{repo}/tags/list")).await.json()["tags"],
        json!([])
    );
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/{digest}"))
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );

    // Deleting a blob.
    let layer = Digest::sha256(b"layer manage");
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/blobs/{layer}"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client
            .get(&format!("/v2/{repo}/blobs/{layer}"))
            .await
            .code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/blobs/{layer}"))
            .await
            .code(),
        "BLOB_UNKNOWN"
    );

    // Methods a route does not take.
    let wrong = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/tags/list"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
    assert_eq!(
        client.get("/v2/x/unknown/route").await.status,
        StatusCode::NOT_FOUND
    );
}

/// The first error message of a reply's body.
fn message(reply: &Reply) -> String {
    reply.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Asserts a push was refused as MANIFEST_INVALID naming the descriptor's digest and both sizes.
fn assert_size_refused(reply: &Reply, digest: &Digest, declared: u64, actual: usize) {
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let message = message(reply);
    for part in [
        digest.to_string(),
        format!("{declared} bytes"),
        format!("{actual} bytes"),
    ] {
        assert!(message.contains(&part), "{part:?} not in {message:?}");
    }
}

/// Descriptor sizes are checked against what is stored: a config's or layer's blob, an index
/// child's manifest bytes. A wrong size stores nothing.
async fn descriptor_sizes(client: Client) {
    let repo = "sizes/app";
    let config = client.push_blob(repo, b"{}").await;
    let layer = client.push_blob(repo, b"abc").await;
    let mut wrong_layer = image_manifest(b"{}", &[b"abc"], None);
    wrong_layer["layers"][0]["size"] = json!(999);
    let mut wrong_config = image_manifest(b"{}", &[b"abc"], None);
    wrong_config["config"]["size"] = json!(999);
    for (manifest, digest, actual) in [(&wrong_layer, &layer, 3), (&wrong_config, &config, 2)] {
        let refused = client.put_manifest(repo, "v1", manifest).await;
        assert_size_refused(&refused, digest, 999, actual);
        let stored = Digest::sha256(manifest.to_string().as_bytes());
        for reference in ["v1".to_owned(), stored.to_string()] {
            let uri = format!("/v2/{repo}/manifests/{reference}");
            assert_eq!(client.get(&uri).await.status, StatusCode::NOT_FOUND);
        }
    }

    let (child, child_digest) = client.push_image(repo, "child", "sizes").await;
    let child_size = child.to_string().len();
    let wrong_index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child_digest, 999)],
    });
    let refused = client.put_manifest(repo, "multi", &wrong_index).await;
    assert_size_refused(&refused, &child_digest, 999, child_size);
    let uri = format!("/v2/{repo}/manifests/multi");
    assert_eq!(client.get(&uri).await.status, StatusCode::NOT_FOUND);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child_digest, child_size)],
    });
    let pushed = client.put_manifest(repo, "multi", &index).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
}

/// An image manifest whose only layer, `layer`, has a non-distributable media type.
fn foreign_manifest(media_type: &str, layer: &[u8]) -> Value {
    let mut manifest = image_manifest(b"{}", &[layer], None);
    manifest["layers"][0]["mediaType"] = json!(media_type);
    manifest["layers"][0]["urls"] = json!(["https://example.com/layer.tar"]);
    manifest
}

/// Non-distributable layers may be absent (external, not counted, not referenced); when pushed
/// they are checked, served, counted and kept by the collector like any other layer.
async fn non_distributable_layers(client: Client) {
    let repo = "foreign/app";
    client.push_blob(repo, b"{}").await;
    for (i, media_type) in NON_DISTRIBUTABLE_LAYER_TYPES.iter().enumerate() {
        let manifest = foreign_manifest(media_type, format!("external layer {i}").as_bytes());
        let tag = format!("absent{i}");
        let pushed = client.put_manifest(repo, &tag, &manifest).await;
        assert_eq!(
            pushed.status,
            StatusCode::CREATED,
            "{media_type}: {}",
            String::from_utf8_lossy(&pushed.body)
        );
        let got = client.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(got.body, manifest.to_string().as_bytes(), "byte-identical");
    }

    let layer = b"a non-distributable layer pushed anyway";
    let digest = client.push_blob(repo, layer).await;
    let mut wrong = foreign_manifest(NON_DISTRIBUTABLE_LAYER_TYPES[0], layer);
    wrong["layers"][0]["size"] = json!(999);
    let refused = client.put_manifest(repo, "present", &wrong).await;
    assert_size_refused(&refused, &digest, 999, layer.len());
    let manifest = foreign_manifest(NON_DISTRIBUTABLE_LAYER_TYPES[0], layer);
    let pushed = client.put_manifest(repo, "present", &manifest).await;
    assert_eq!(pushed.status, StatusCode::CREATED);

    let usage = client
        .get(&format!("/api/v1/repositories/{repo}/usage"))
        .await
        .json();
    assert_eq!(
        (usage["blobs"].clone(), usage["blobBytes"].clone()),
        (json!(2), json!(2 + layer.len())),
        "the config and the pushed layer; absent layers are external"
    );
    let report = client.collect().await;
    assert_eq!(
        (report.blobs_deleted, report.postponed),
        (0, 0),
        "{report:?}"
    );
    let served = client.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_eq!(
        (served.status, served.body.as_ref()),
        (StatusCode::OK, layer.as_ref()),
        "kept by the collector"
    );
}

/// A manifest with an annotation of its own, and its digest.
fn annotated(manifest: &Value, n: u32) -> (Value, Digest) {
    let mut manifest = manifest.clone();
    manifest["annotations"] = json!({ "n": n.to_string() });
    let digest = Digest::sha256(manifest.to_string().as_bytes());
    (manifest, digest)
}

/// `PUT /v2/<name>/manifests/<digest>?tag=…` sets every tag with the manifest, answering one
/// `OCI-Tag` per tag; a bad tag or one refused by a rule stores nothing and tags nothing.
async fn tags_on_push(client: Client) {
    let repo = "tagged/app";
    let (base, _) = client.push_image(repo, "base", "tagged").await;
    let resolves = async |tag: &str| {
        let got = client.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        (got.status == StatusCode::OK).then(|| got.header("docker-content-digest").to_owned())
    };

    let (manifest, digest) = annotated(&base, 1);
    let pushed = client
        .put_manifest(repo, &format!("{digest}?tag=a&tag=b"), &manifest)
        .await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let echoed: Vec<&str> = pushed
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(echoed, ["a", "b"]);
    for tag in ["a", "b"] {
        assert_eq!(resolves(tag).await.as_deref(), Some(digest.as_str()));
    }

    let (manifest, digest) = annotated(&base, 2);
    let bad = client
        .put_manifest(repo, &format!("{digest}?tag=fine&tag=-bad"), &manifest)
        .await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
    assert_eq!(resolves(digest.as_str()).await, None, "nothing stored");
    assert_eq!(resolves("fine").await, None, "nothing tagged");

    let rule = json!({ "repositories": "*", "tags": "v[0-9]+", "kind": "immutable" });
    let created = client
        .send(
            Method::PUT,
            "/api/v1/tag-rules/frozen",
            &[("content-type", "application/json")],
            rule.to_string(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let (manifest, first) = annotated(&base, 3);
    let pushed = client
        .put_manifest(repo, &format!("{first}?tag=v1"), &manifest)
        .await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let (manifest, digest) = annotated(&base, 4);
    let refused = client
        .put_manifest(repo, &format!("{digest}?tag=c&tag=v1&tag=d"), &manifest)
        .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(
        message(&refused).contains("frozen"),
        "{}",
        message(&refused)
    );
    assert_eq!(resolves(digest.as_str()).await, None, "nothing stored");
    for tag in ["c", "d"] {
        assert_eq!(resolves(tag).await, None, "{tag} not tagged");
    }
    assert_eq!(resolves("v1").await.as_deref(), Some(first.as_str()));
}

/// Deleting a manifest an index lists is refused with 400 DENIED naming the index.
async fn delete_listed_manifest(client: Client) {
    let repo = "listed/app";
    let (manifest, digest) = client.push_image(repo, "v1", "listed").await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &digest, manifest.to_string().len())],
    });
    let pushed = client.put_manifest(repo, "multi", &index).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let index_digest = Digest::sha256(index.to_string().as_bytes());
    let refused = client
        .delete(&format!("/v2/{repo}/manifests/{digest}"))
        .await;
    assert_eq!(refused.code(), "DENIED");
    assert!(
        message(&refused).contains(index_digest.as_str()),
        "{}",
        message(&refused)
    );
    let uri = format!("/v2/{repo}/manifests/{digest}");
    assert_eq!(client.get(&uri).await.status, StatusCode::OK, "still there");
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

/// Sparse manifests, accepted only where configured (`mirror/*` here): an index whose children
/// are absent, an image manifest whose layers are absent. Absent pieces answer 404; present
/// ones are referenced and kept by the collector.
async fn sparse_manifests(client: Client) {
    let absent_child = Digest::sha256(b"a child never pushed");
    let absent_layer = Digest::sha256(b"a layer never pushed");
    let (child, child_digest) = client.push_image("mirror/app", "child", "sparse").await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(OCI_MANIFEST, &child_digest, child.to_string().len()),
            descriptor(OCI_MANIFEST, &absent_child, 1234),
        ],
    });
    // Elsewhere the absent child is refused.
    let refused = client.put_manifest("other/app", "multi", &index).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.code(), "MANIFEST_BLOB_UNKNOWN");
    let pushed = client.put_manifest("mirror/app", "multi", &index).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", message(&pushed));
    let absent = client
        .get(&format!("/v2/mirror/app/manifests/{absent_child}"))
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);

    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = client.push_blob("mirror/app", config).await;
    let image = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config.len()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &absent_layer, 99)],
    });
    let refused = client.put_manifest("other/app", "partial", &image).await;
    assert_eq!(refused.code(), "MANIFEST_BLOB_UNKNOWN");
    let pushed = client.put_manifest("mirror/app", "partial", &image).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", message(&pushed));
    let layer = client
        .get(&format!("/v2/mirror/app/blobs/{absent_layer}"))
        .await;
    assert_eq!(layer.status, StatusCode::NOT_FOUND);

    // The child and the config are referenced: a collection keeps them.
    client.delete("/v2/mirror/app/manifests/child").await;
    client.collect().await;
    let kept = client
        .get(&format!("/v2/mirror/app/manifests/{child_digest}"))
        .await;
    assert_eq!(
        kept.status,
        StatusCode::OK,
        "the index keeps its present child"
    );
    let kept = client
        .get(&format!("/v2/mirror/app/blobs/{config_digest}"))
        .await;
    assert_eq!(kept.status, StatusCode::OK);
    assert_eq!(&kept.body[..], config);
}

macro_rules! backend {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;

            macro_rules! scenario {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        // Reviews are due at once, so a collector run sees everything the
                        // scenario did.
                        let (store, _cleanup) = $open().await;
                        let metadata = Arc::new(store.with_review_delay(Duration::ZERO));
                        super::$name(Client::new(metadata)).await;
                    }
                };
            }

            scenario!(pull);
            scenario!(push);
            scenario!(content_discovery);
            scenario!(content_management);
            scenario!(descriptor_sizes);
            scenario!(non_distributable_layers);
            scenario!(tags_on_push);
            scenario!(delete_listed_manifest);
            scenario!(sparse_manifests);
        }
    };
}

registry_storage::for_each_metadata_backend!(backend);
