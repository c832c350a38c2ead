//! The probes: `/-/live` while the process serves, `/-/ready` while both stores answer — and
//! `503` saying which does not (here: a blob store whose directory was replaced by a file).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use registry_core::{OciRegistry, Packages};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use tower::ServiceExt;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn app(blobs: Arc<dyn registry_core::BlobStore>) -> axum::Router {
    let metadata: Arc<dyn registry_core::MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    registry_http::app::Application::new(OciRegistry::new(blobs, metadata), packages).router()
}

#[tokio::test]
async fn probes_say_whether_the_stores_answer() {
    let healthy = app(Arc::new(MemoryBlobStore::new()));
    assert_eq!(get(&healthy, "/-/live").await.0, StatusCode::OK);
    assert_eq!(get(&healthy, "/-/ready").await.0, StatusCode::OK);

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let blobs = registry_storage::fs::FsBlobStore::open(&root)
        .await
        .unwrap();
    // The store's directory replaced by a file: every read of it fails.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let broken = app(Arc::new(blobs));
    assert_eq!(get(&broken, "/-/live").await.0, StatusCode::OK);
    let (status, said) = get(&broken, "/-/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{said}");
    assert!(said.contains("blob store"), "{said}");
    // The error itself (a path here; a bucket or host for an object store) is only logged.
    assert!(!said.contains(dir.path().to_str().unwrap()), "{said}");
    assert!(!said.contains("directory"), "{said}");
}
