//! Running a registry on a loopback port: the one-line harness for tests.

use std::net::SocketAddr;
use std::sync::Arc;

use registry_core::Registry;
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A registry serving `/v2/` on a random loopback port until dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let registry = registry_http::serve::RunningRegistry::in_memory().await?;
/// // Point a client at registry.host(), e.g. `skopeo copy … docker://{host}/repo:tag`.
/// assert!(registry.host().starts_with("127.0.0.1:"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RunningRegistry {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningRegistry {
    /// Serves a fresh in-memory registry (memory blobs and metadata, review delay 0).
    pub async fn in_memory() -> std::io::Result<Self> {
        let metadata = MemoryMetadataStore::new().with_review_delay(std::time::Duration::ZERO);
        Self::start(Registry::new(
            Arc::new(MemoryBlobStore::new()),
            Arc::new(metadata),
        ))
        .await
    }

    /// Serves `registry` on a random port of 127.0.0.1.
    pub async fn start(registry: Registry) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let app = crate::oci::router(registry);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
        });
        Ok(RunningRegistry {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, as clients name a registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Stops serving and waits for in-flight requests to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningRegistry {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
