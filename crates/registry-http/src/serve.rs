//! Serving an application on a socket with the bounds a public server needs, and the one-line
//! harness for tests.
//!
//! [`serve`] accepts connections itself (instead of `axum::serve`) so that every connection is
//! bounded: at most [`ServerSettings::max_connections`] at once (further ones wait in the
//! listen backlog), request headers must arrive within
//! [`ServerSettings::header_read_timeout`] (this also closes idle keep-alive connections), and
//! a connection on which no byte moves in either direction for
//! [`ServerSettings::idle_timeout`] is closed (a stalled request body or a client that stopped
//! reading). A slow but honest client is never cut off: any progress restarts the idle clock.
//! Each request carries the client's address as `ConnectInfo<SocketAddr>`, and the address it
//! came in at as [`LocalAddr`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use registry_core::OciRegistry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

/// The address of this registry a request came in at (its listening socket's), as a request
/// extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// Bounds on connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// Time allowed for a request's headers to arrive, from the moment the connection waits
    /// for them (30 s by default).
    pub header_read_timeout: Duration,
    /// Time a connection may go without a byte read or written (120 s by default).
    pub idle_timeout: Duration,
    /// Connections served at once (1,024 by default).
    pub max_connections: usize,
    /// The most bytes of a request's head (request line and headers) a connection buffers
    /// (64 KiB by default; at least 8 KiB). Longer heads are refused with 431.
    pub max_header_bytes: usize,
    /// Time a TLS handshake may take (10 s by default), before the request's headers are
    /// awaited.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            max_header_bytes: 64 << 10,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
///
/// Errors only when the listener fails for good; a failing connection ends that connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_connections(listener, app, settings, None, shutdown).await
}

/// Serves `app` over TLS (HTTP/1.1) on `listener`, as [`serve`] does in the clear; the TLS
/// handshake must finish within [`ServerSettings::tls_handshake_timeout`].
#[cfg(feature = "tls")]
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    settings: ServerSettings,
    tls: Arc<TlsServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    serve_connections(listener, app, settings, Some(acceptor), shutdown).await
}

/// A TLS server configuration (rustls'), as [`serve_tls`] takes it.
#[cfg(feature = "tls")]
pub type TlsServerConfig = tokio_rustls::rustls::ServerConfig;

/// A TLS server configuration from a PEM certificate chain and its PEM private key.
///
/// The cryptography is aws-lc-rs's, named here rather than left to whichever providers the
/// embedding build enables.
///
/// Errors: unreadable PEM, no certificate or key, a key that does not match.
#[cfg(feature = "tls")]
pub fn tls_config(certificate_pem: &[u8], key_pem: &[u8]) -> io::Result<Arc<TlsServerConfig>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("the certificate", &e))?;
    if chain.is_empty() {
        return Err(invalid("the certificate", &"no certificate in the PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("the key", &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = TlsServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("the TLS protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("the certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor when the server speaks TLS (the type is empty without the `tls` feature).
#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Acceptor = std::convert::Infallible;

async fn serve_connections(
    listener: TcpListener,
    app: Router,
    settings: ServerSettings,
    tls: Option<Acceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // A head still arriving is otherwise bounded only by hyper's read buffer (400 KiB:
        // half-sent heads on a thousand connections held 0.4 GiB). The buffer itself keeps its
        // size: made smaller, it slowed a 256 MiB upload by a quarter.
        .max_header_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, and the next accept may work.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(LocalAddr);
        let app = app.clone();
        let secure = tls.is_some();
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(local) = local {
                request.extensions_mut().insert(local);
            }
            if secure {
                request
                    .extensions_mut()
                    .insert(crate::external_url::ServedOverTls);
            }
            let has_body = carries_body(request.headers());
            let answer = tower::ServiceExt::oneshot(app.clone(), request);
            async move {
                let mut response = answer.await?;
                // A refusal may come before the body was read; the connection then cannot
                // carry another request, and saying so lets clients retry on a fresh one.
                if has_body && response.status().as_u16() >= 400 {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let stream = IdleTimeout::new(stream, settings.idle_timeout);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let ended = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                #[cfg(feature = "tls")]
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        settings.tls_handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
                #[cfg(not(feature = "tls"))]
                Some(never) => match never {},
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Whether a request has a body (a length above zero, or chunked).
fn carries_body(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header;
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A stream that fails with `TimedOut` once no byte has moved either way for a while.
struct IdleTimeout {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(stream: TcpStream, idle: Duration) -> Self {
        IdleTimeout {
            stream,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// After the stream answered `Pending`: an error once the deadline has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "no byte moved on the connection within the idle timeout",
        ))
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.expired(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A registry serving every protocol on a random loopback port until dropped.
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
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningRegistry {
    /// Serves a fresh in-memory registry (memory blobs and metadata, review delay 0): the OCI
    /// API and every package API, without authentication.
    #[cfg(feature = "harness")]
    pub async fn in_memory() -> io::Result<Self> {
        use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
        let metadata = MemoryMetadataStore::new().with_review_delay(Duration::ZERO);
        Self::start(OciRegistry::new(
            Arc::new(MemoryBlobStore::new()),
            Arc::new(metadata),
        ))
        .await
    }

    /// Serves `registry`, and the package APIs over the same stores, on a random port of
    /// 127.0.0.1.
    pub async fn start(registry: OciRegistry) -> io::Result<Self> {
        let packages = registry_core::Packages::new(
            Arc::clone(registry.blob_store()),
            Arc::clone(registry.metadata()),
        );
        Self::serve_app(
            crate::app::Application::new(registry, packages).router(),
            ServerSettings::default(),
        )
        .await
    }

    /// Serves any application on a random port of 127.0.0.1 with these connection bounds.
    pub async fn serve_app(app: Router, settings: ServerSettings) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, settings, async {
            let _ = stop.await;
        }));
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
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
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
