//! Probes for load balancers and orchestrators, unauthenticated (they reveal nothing):
//! `GET /-/live` answers `200` while the process serves requests; `GET /-/ready` answers `200`
//! when the metadata store and the blob store both answer a cheap read within
//! [`READY_TIMEOUT`], else `503` saying which did not — an instance whose database is gone is
//! taken out of rotation instead of failing every request.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use registry_core::{BlobStore, Digest, MetadataStore, RepositoryName};

/// How long each store has to answer the readiness probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an instance is not ready: which store, and the error (logged, never answered: it may
/// name hosts, buckets or paths).
#[derive(Debug)]
pub struct NotReady {
    /// `the metadata store fails`, `the blob store does not answer`…
    pub reason: &'static str,
    /// The store's error, when it gave one.
    pub detail: Option<String>,
}

/// Whether both stores answer: `Ok` or why they do not.
pub async fn ready(metadata: &dyn MetadataStore, blobs: &dyn BlobStore) -> Result<(), NotReady> {
    let probe = RepositoryName::parse("readiness/probe").expect("a valid name");
    let failed = |reason, error: registry_core::Error| NotReady {
        reason,
        detail: Some(error.to_string()),
    };
    let silent = |reason| NotReady {
        reason,
        detail: None,
    };
    match tokio::time::timeout(READY_TIMEOUT, metadata.repository_exists(&probe)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(failed("the metadata store fails", error)),
        Err(_) => return Err(silent("the metadata store does not answer")),
    }
    match tokio::time::timeout(READY_TIMEOUT, blobs.stat(&Digest::sha256(b""))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(failed("the blob store fails", error)),
        Err(_) => Err(silent("the blob store does not answer")),
    }
}

/// The probe routes over the registry's stores.
pub(crate) fn routes(metadata: Arc<dyn MetadataStore>, blobs: Arc<dyn BlobStore>) -> Router {
    Router::new()
        .route("/-/live", axum::routing::get(|| async { "live\n" }))
        .route(
            "/-/ready",
            axum::routing::get(move || {
                let (metadata, blobs) = (Arc::clone(&metadata), Arc::clone(&blobs));
                async move {
                    match ready(&*metadata, &*blobs).await {
                        Ok(()) => "ready\n".into_response(),
                        Err(not) => {
                            tracing::warn!(reason = not.reason, detail = ?not.detail, "not ready");
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("not ready: {}\n", not.reason),
                            )
                                .into_response()
                        }
                    }
                }
            }),
        )
}
