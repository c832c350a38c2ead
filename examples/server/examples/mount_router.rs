//! Mounting the OCI router into an existing axum application, beside its own routes and
//! middleware, over stores the application chose.
//!
//! `cargo run -p registry-server --example mount_router`

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use registry_core::OciRegistry;
use registry_storage::fs::FsBlobStore;
use registry_storage::sql::SqlMetadataStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("registry-mount-example");
    let registry = OciRegistry::new(
        Arc::new(FsBlobStore::open(dir.join("blobs")).await?),
        Arc::new(SqlMetadataStore::sqlite(&dir.join("registry.db")).await?),
    );

    // The application's own routes live beside /v2/.
    let app = Router::new()
        .route(
            "/",
            get(|| async { "my service, with a registry under /v2/" }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .merge(registry_http::oci::router(registry));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:5001").await?;
    println!(
        "serving on http://{}/ (registry at /v2/)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
