//! Fixtures for tests: fresh metadata stores (in memory, SQLite, PostgreSQL) that clean up after
//! themselves (feature `testing`).
//!
//! [`for_each_metadata_backend!`](crate::for_each_metadata_backend) runs a test file's cases on
//! every metadata backend, from the fixtures here; a new backend is added there once.
//!
//! Object store tests use the S3-compatible server at `REGISTRY_TEST_S3_ENDPOINT`, by default
//! `http://127.0.0.1:9000` with the bucket `registry-test` (what `scripts/ensure-s3` starts);
//! each [`s3_driver`] lives under a prefix of its own.
//!
//! PostgreSQL tests use `REGISTRY_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`; each store lives in a schema of its own that is
//! dropped when its [`Cleanup`] is dropped, even when the test panics.

use std::sync::Arc;

use crate::memory::MemoryMetadataStore;
use crate::sql::SqlMetadataStore;
use registry_core::MetadataStore;

/// Invokes `$suite!(backend, fixture)` once per metadata backend, so that a test file running on
/// every backend names none of them, and a new backend is added here once.
///
/// `backend` is an identifier for the test (`in_memory`, `sqlite`, `postgres`); `fixture` is the
/// path of an `async fn() -> (Store, Cleanup)` giving a fresh store of the concrete type
/// ([`memory_store`], [`sqlite_store`], [`postgres_store`]), so a test can set its review delay
/// (`store.with_review_delay(…)`) before it shares it as an `Arc<dyn MetadataStore>`. Keep the
/// [`Cleanup`] alive for the whole test.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use registry_core::MetadataStore;
///
/// async fn scenario(store: Arc<dyn MetadataStore>) {
///     // …
/// }
///
/// macro_rules! on_backend {
///     ($backend:ident, $fixture:path) => {
///         #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///         async fn $backend() {
///             let (store, _cleanup) = $fixture().await;
///             scenario(Arc::new(store.with_review_delay(Duration::ZERO))).await;
///         }
///     };
/// }
///
/// registry_storage::for_each_metadata_backend!(on_backend);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! for_each_metadata_backend {
    ($suite:ident) => {
        $suite!(in_memory, $crate::testing::memory_store);
        $suite!(sqlite, $crate::testing::sqlite_store);
        $suite!(postgres, $crate::testing::postgres_store);
    };
}

/// The PostgreSQL server tests use; override with `REGISTRY_TEST_POSTGRES_URL`.
pub fn postgres_url() -> String {
    std::env::var("REGISTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Drops what a fixture created when the test ends, even when it panics.
pub struct Cleanup(Option<Box<dyn FnOnce() + Send>>);

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cleanup")
            .field(&self.0.as_ref().map(|_| "pending"))
            .finish()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(cleanup) = self.0.take() {
            cleanup();
        }
    }
}

/// A fresh memory metadata store; its [`Cleanup`] has nothing to do.
pub async fn memory() -> (Arc<dyn MetadataStore>, Cleanup) {
    let (store, cleanup) = memory_store().await;
    (Arc::new(store), cleanup)
}

/// Like [`memory`], as the concrete store (to set its review delay, say). Async, as every
/// fixture is, for [`for_each_metadata_backend!`](crate::for_each_metadata_backend).
pub async fn memory_store() -> (MemoryMetadataStore, Cleanup) {
    (MemoryMetadataStore::new(), Cleanup(None))
}

/// A fresh SQLite metadata store in a temporary directory.
pub async fn sqlite() -> (Arc<dyn MetadataStore>, Cleanup) {
    let (store, cleanup) = sqlite_store().await;
    (Arc::new(store), cleanup)
}

/// Like [`sqlite`], as the concrete store (to set its review delay, say).
pub async fn sqlite_store() -> (SqlMetadataStore, Cleanup) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqlMetadataStore::sqlite(&dir.path().join("registry.db"))
        .await
        .expect("open SQLite");
    (store, Cleanup(Some(Box::new(move || drop(dir)))))
}

async fn admin(sql: String) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url())
        .await
        .expect("PostgreSQL must be reachable for these tests (REGISTRY_TEST_POSTGRES_URL)");
    sqlx::query(&sql).execute(&mut conn).await.expect(&sql);
}

/// A fresh PostgreSQL metadata store in a schema of its own, dropped afterwards.
pub async fn postgres() -> (Arc<dyn MetadataStore>, Cleanup) {
    let (store, cleanup) = postgres_store().await;
    (Arc::new(store), cleanup)
}

/// Like [`postgres`], as the concrete store (to set its review delay, say).
pub async fn postgres_store() -> (SqlMetadataStore, Cleanup) {
    let (url, schema) = postgres_schema_url().await;
    let store = SqlMetadataStore::connect(&url)
        .await
        .expect("open PostgreSQL");
    let pool_owner = store.clone();
    let cleanup = move || {
        drop_schema(schema, Some(pool_owner));
    };
    (store, Cleanup(Some(Box::new(cleanup))))
}

/// A fresh PostgreSQL schema, as a database URL whose connections use it (for servers several
/// processes share), dropped when the [`Cleanup`] is.
pub async fn postgres_schema() -> (String, Cleanup) {
    let (url, schema) = postgres_schema_url().await;
    (
        url,
        Cleanup(Some(Box::new(move || drop_schema(schema, None)))),
    )
}

async fn postgres_schema_url() -> (String, String) {
    let schema = format!("regtest_{}", uuid::Uuid::new_v4().simple());
    admin(format!("CREATE SCHEMA {schema}")).await;
    let separator = if postgres_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}options=-c%20search_path%3D{schema}",
        postgres_url()
    );
    (url, schema)
}

/// Closes `pool_owner`'s connections, then drops `schema`.
fn drop_schema(schema: String, pool_owner: Option<SqlMetadataStore>) {
    // Runs from Drop, possibly inside the test's runtime: use a thread with its own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if let Some(store) = pool_owner {
                store.close().await;
            }
            admin(format!("DROP SCHEMA {schema} CASCADE")).await;
        });
    })
    .join()
    .expect("schema cleanup");
}

/// The S3-compatible server tests use; override with `REGISTRY_TEST_S3_ENDPOINT`.
pub fn s3_endpoint() -> String {
    std::env::var("REGISTRY_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:9000".to_owned())
}

/// The bucket tests use on [`s3_endpoint`].
pub const S3_BUCKET: &str = "registry-test";

/// The driver options for the test server (its endpoint over plain HTTP, a region, any
/// credentials), as an operator writes them.
pub fn s3_options() -> std::collections::BTreeMap<String, String> {
    [
        ("aws_endpoint", s3_endpoint()),
        ("aws_region", "us-east-1".to_owned()),
        ("aws_access_key_id", "test".to_owned()),
        ("aws_secret_access_key", "test".to_owned()),
        ("aws_allow_http", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// An `s3://` URL of the test bucket under a fresh prefix, so tests never see each other's
/// objects.
pub fn s3_url() -> String {
    format!("s3://{S3_BUCKET}/test-{}", uuid::Uuid::new_v4().simple())
}

/// A driver on the test bucket under `url` (from [`s3_url`]).
pub fn s3_driver(url: &str) -> crate::object::Driver {
    crate::object::Driver::from_url(url, &s3_options()).expect("S3 driver for the test server")
}

/// A hot standby of the test PostgreSQL server on a free loopback port, started by
/// `scripts/postgres-replica` (pg_basebackup, then streaming replication), removed when dropped.
/// Needs root (the standby runs as the postgres user).
#[derive(Debug)]
pub struct Replica {
    dir: std::path::PathBuf,
    /// The port it listens on.
    pub port: u16,
}

fn replica_script(args: &[&str]) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/postgres-replica"
    );
    let status = std::process::Command::new(path)
        .args(args)
        .status()
        .expect("run scripts/postgres-replica");
    assert!(status.success(), "scripts/postgres-replica {args:?} failed");
}

impl Replica {
    /// Copies the primary and starts streaming from it.
    pub fn start() -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "registry-replica-{}",
            uuid::Uuid::new_v4().simple()
        ));
        replica_script(&["start", &dir.to_string_lossy(), &port.to_string()]);
        Replica { dir, port }
    }

    /// Stops it at once, as a crash would.
    pub fn stop(&self) {
        replica_script(&["stop", &self.dir.to_string_lossy()]);
    }

    /// Starts it again after [`Replica::stop`].
    pub fn restart(&self) {
        replica_script(&["restart", &self.dir.to_string_lossy()]);
    }

    /// `url` (a URL of the primary on 127.0.0.1:5432, from [`postgres_url`] or
    /// [`postgres_schema`]) pointed at this replica instead.
    pub fn url_like(&self, url: &str) -> String {
        assert!(
            url.contains("127.0.0.1:5432"),
            "{url} is not the test server"
        );
        url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port))
    }

    /// Runs one statement on the replica (`SELECT pg_wal_replay_pause()`…).
    pub async fn execute(&self, statement: &str) {
        use sqlx::Connection;
        let url = format!("postgres://postgres@127.0.0.1:{}/test", self.port);
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect to the replica");
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect(statement);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        replica_script(&["remove", &self.dir.to_string_lossy()]);
    }
}
