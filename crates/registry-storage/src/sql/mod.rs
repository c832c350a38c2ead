//! The SQL metadata store: SQLite (the embedded default) and PostgreSQL (scale-out).
//!
//! One implementation serves both databases through `sqlx`'s `Any` driver; the schema is
//! versioned with embedded migrations, one set per dialect. Every mutation runs in one
//! transaction together with the review-queue entries it causes. On SQLite, write transactions
//! begin `IMMEDIATE` so concurrent writers queue on the database lock instead of failing; on
//! PostgreSQL, rows a mutation depends on are locked (`FOR SHARE` / `FOR UPDATE`) so that a
//! collector deleting a blob and a push referencing it serialize.
//!
//! `mod.rs` holds the store, its connection and the helpers its parts share; each metadata
//! trait is implemented in a file of its own (`content`, `uploads`, `review`, `collection`,
//! `policy`, `packages`, `tokens`); `balance` sends image reads to PostgreSQL replicas;
//! `background` runs batched background migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use registry_core::metadata::DEFAULT_REVIEW_DELAY;
use registry_core::{
    BlobRecord, Digest, Error, RepositoryName, Result, ReviewEvent, ReviewTarget, Tag, Timestamp,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, Executor, Pool, Row, Transaction};

mod background;
mod balance;
mod collection;
mod content;
mod firewall;
mod packages;
mod policy;
mod proxy;
mod review;
mod tokens;
mod uploads;

/// The SQL dialect a store speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A metadata store in SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlMetadataStore {
    pool: Pool<Any>,
    dialect: Dialect,
    review_delay: Duration,
    /// PostgreSQL read replicas, when configured ([`SqlMetadataStore::with_replicas`]).
    replicas: Option<Arc<balance::Replicas>>,
}

pub use balance::{ReplicaOptions, ReplicaStatus};

/// Which pending migrations [`SqlMetadataStore::connect_with`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrations {
    /// Pre- and post-deployment: one instance, or the last step of an upgrade.
    All,
    /// Pre-deployment only, while instances of the previous version still run (a rolling
    /// upgrade); the post-deployment ones follow with `registry migrate` once none is left.
    PreDeployment,
}

/// How often an upsert retries when a concurrent collection keeps removing the row it needs.
const MAX_UPSERT_ATTEMPTS: u32 = 5;

/// Whether a connection going back to the pool is outside any transaction, after the
/// rollback of a dropped transaction has run. A connection still inside one is closed instead
/// of being reused: when SQLite fails a `COMMIT` (a full disk) it rolls the transaction back
/// itself, the client's own `ROLLBACK` then fails, and the connection would otherwise stay
/// "in a transaction" forever, failing every later `BEGIN` until a restart.
async fn outside_transaction(conn: &mut AnyConnection) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    type Manager = <Any as sqlx::Database>::TransactionManager;
    let depth =
        |conn: &AnyConnection| <Manager as sqlx::TransactionManager>::get_transaction_depth(conn);
    if depth(conn) == 0 {
        return Ok(true);
    }
    // A dropped transaction's rollback is queued, not yet run: a round trip runs it.
    conn.ping().await?;
    Ok(depth(conn) == 0)
}

/// A manifest's size with the blobs it references, for a manifest row aliased `m`: what tag
/// listings show (`manifests.total_size` keeps it; the background migration and the
/// post-deployment migration 1001 compute it the same way).
pub(crate) const MANIFEST_TOTAL_SIZE: &str = "m.size + CAST(COALESCE((SELECT SUM(b.size) \
     FROM manifest_blobs mb JOIN blobs b ON b.digest = mb.blob_digest \
     WHERE mb.repository_id = m.repository_id AND mb.manifest_digest = m.digest), 0) AS BIGINT)";

/// Whether anything besides a manifest holds a blob (`$1`): package files and their sidecars,
/// proxy cache entries. The one place a new referencing table (a quarantine) joins: the
/// collector's claim and the sweep both ask it.
pub(crate) const HELD_BEYOND_MANIFESTS: &str = "SELECT 1 FROM package_files WHERE blob_digest = $1 OR sidecar_digest = $1 \
     UNION ALL SELECT 1 FROM proxy_cache WHERE blob_digest = $1";

fn db_error(e: sqlx::Error) -> Error {
    // A full disk is said as one (`io::ErrorKind::StorageFull`), whichever database reports
    // it: SQLite's SQLITE_FULL (13), PostgreSQL's disk_full (53100).
    let full = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "13" || code == "53100");
    if full {
        return Error::backend(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            e.to_string(),
        ));
    }
    Error::backend(e)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::backend)
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::backend(format!("stored {what} {value:?} is invalid"))
}

fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::backend(format!("{value} does not fit a database integer")))
}

/// An exclusive lock on `<database file>.lock`, held while a process sets up and migrates a
/// SQLite database (released when dropped); `None` for an in-memory database.
async fn sqlite_setup_lock(url: &str) -> Result<Option<std::fs::File>> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| Error::backend(e.to_string()))?
    .map(Some)
    .map_err(|e| Error::backend(format!("locking the database for its setup: {e}")))
}

impl SqlMetadataStore {
    /// Opens (creating if needed) a SQLite database file and migrates it.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(path: &std::path::Path) -> Result<Self> {
        Self::sqlite_with(path, Migrations::All).await
    }

    /// Like [`SqlMetadataStore::sqlite`], applying the pending migrations `migrations` names.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_with(path: &std::path::Path, migrations: Migrations) -> Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect_with(&url, migrations).await
    }

    /// Connects to a database by URL (`sqlite://…` or `postgres://…`) and applies every
    /// pending migration, pre- and post-deployment.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, Migrations::All).await
    }

    /// Connects to a database by URL and applies the pending migrations `migrations` names.
    pub async fn connect_with(url: &str, migrations: Migrations) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(Error::Unsupported {
                what: format!("metadata database URL scheme in {url:?}"),
            });
        };
        let options = AnyConnectOptions::from_str(url).map_err(db_error)?;
        let pool_options = match dialect {
            Dialect::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;")
                            .await
                            .map(drop)
                    })
                }),
            Dialect::Postgres => AnyPoolOptions::new().max_connections(16),
        }
        .after_release(|conn, _| Box::pin(outside_transaction(conn)));
        let pool = pool_options.connect_with(options).await.map_err(db_error)?;
        // Processes opening one SQLite file at once (several servers, the CLI) take turns to
        // prepare it; PostgreSQL migrations take an advisory lock of their own.
        let _turn = match dialect {
            Dialect::Sqlite => sqlite_setup_lock(url).await?,
            Dialect::Postgres => None,
        };
        if dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(db_error)?;
        }
        let store = SqlMetadataStore {
            pool,
            dialect,
            review_delay: DEFAULT_REVIEW_DELAY,
            replicas: None,
        };
        store.migrate_pre_deployment().await?;
        if migrations == Migrations::All {
            store.migrate_post_deployment().await?;
        }
        Ok(store)
    }

    /// Sets how long after an event its review-queue entry becomes due.
    pub fn with_review_delay(mut self, delay: Duration) -> Self {
        self.review_delay = delay;
        self
    }

    /// The dialect of the connected database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The version of the newest migration applied to the database (pre- or post-deployment).
    pub async fn schema_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(version) AS version FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(get::<Option<i64>>(&row, "version")?.unwrap_or(0))
    }

    /// The migrations of one phase, as compiled in; applying one leaves the other's alone.
    fn migrator(&self, post: bool) -> Result<sqlx::migrate::Migrator> {
        let mut migrator = match (self.dialect, post) {
            #[cfg(feature = "sqlite")]
            (Dialect::Sqlite, false) => sqlx::migrate!("migrations/sqlite"),
            #[cfg(feature = "sqlite")]
            (Dialect::Sqlite, true) => sqlx::migrate!("migrations/sqlite/post"),
            #[cfg(feature = "postgres")]
            (Dialect::Postgres, false) => sqlx::migrate!("migrations/postgres"),
            #[cfg(feature = "postgres")]
            (Dialect::Postgres, true) => sqlx::migrate!("migrations/postgres/post"),
            #[allow(unreachable_patterns)] // reachable only when a dialect's feature is off
            (other, _) => {
                return Err(Error::Unsupported {
                    what: format!("{other:?} support is not compiled in"),
                });
            }
        };
        // The two phases share one history table.
        migrator.set_ignore_missing(true);
        Ok(migrator)
    }

    /// Applies the pending pre-deployment migrations: additive changes the running older
    /// version keeps working with (new tables and columns, background migrations enqueued).
    pub async fn migrate_pre_deployment(&self) -> Result<()> {
        self.run_migrator(false).await
    }

    /// Runs one phase's migrator on a connection of its own. On PostgreSQL the migrator holds
    /// a session advisory lock, which it does not release when a migration fails: that
    /// connection is closed then, rather than returned to the pool still holding the lock
    /// (every later migration, of any instance, would wait for it forever).
    async fn run_migrator(&self, post: bool) -> Result<()> {
        use sqlx::Connection as _;
        let migrator = self.migrator(post)?;
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        match migrator.run_direct(&mut *conn).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(close) = conn.detach().close().await {
                    tracing::warn!(error = %close, "closing the connection of a failed migration");
                }
                Err(Error::backend(e))
            }
        }
    }

    /// Applies the pending post-deployment migrations: changes only the new version works
    /// with (constraints, removals), to run once every instance runs it. Each migration is
    /// one transaction: one that fails is reported and leaves nothing of itself applied.
    pub async fn migrate_post_deployment(&self) -> Result<()> {
        self.run_migrator(true).await
    }

    /// The post-deployment migrations not yet applied: each version and description.
    pub async fn pending_post_deployment(&self) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let applied: Vec<i64> = rows
            .iter()
            .map(|row| get::<i64>(row, "version"))
            .collect::<Result<_>>()?;
        Ok(self
            .migrator(true)?
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect())
    }

    /// Applies every pending migration, pre- then post-deployment (run by
    /// [`SqlMetadataStore::connect`]).
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_pre_deployment().await?;
        self.migrate_post_deployment().await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .map_err(db_error)
    }

    /// A row-locking clause, empty on SQLite where the transaction already holds the write lock.
    fn lock(&self, clause: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => clause,
        }
    }

    /// Whether a manifest exists in the repository, locking its row with `clause` on
    /// PostgreSQL (`FOR SHARE` to depend on it, `FOR UPDATE` to delete it).
    async fn manifest_row(
        &self,
        conn: &mut AnyConnection,
        repository_id: i64,
        digest: &Digest,
        clause: &'static str,
    ) -> Result<bool> {
        let sql = format!(
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 {}",
            self.lock(clause)
        );
        Ok(sqlx::query(&sql)
            .bind(repository_id)
            .bind(digest.as_str())
            .fetch_optional(conn)
            .await
            .map_err(db_error)?
            .is_some())
    }

    fn due(&self) -> i64 {
        Timestamp::now().after(self.review_delay).0
    }
}

/// One page of names (`name > $1`, at most `$2`, byte order) from `table` where `filter` holds,
/// as a single comma-separated row.
///
/// Aggregating in the database returns one row instead of thousands: the SQLite driver hands
/// each row from its worker thread separately, and a 10,000-tag page spent most of its time in
/// those handoffs. Names and tags cannot contain commas. `string_agg` with `ORDER BY` exists in
/// PostgreSQL and in SQLite since 3.44.
fn page_query(table: &str, filter: &str) -> String {
    format!(
        "SELECT string_agg(name, ',' ORDER BY name) AS names FROM \
         (SELECT name FROM {table} WHERE {filter} AND name > $1 ORDER BY name LIMIT $2) page"
    )
}

/// Splits the row [`page_query`] returns, parsing each name.
fn split_page<T>(row: &AnyRow, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    let names: Option<String> = get(row, "names")?;
    names.as_deref().map_or(Ok(Vec::new()), |names| {
        names.split(',').map(parse).collect()
    })
}

async fn repository_id(conn: &mut AnyConnection, name: &RepositoryName) -> Result<Option<i64>> {
    sqlx::query("SELECT id FROM repositories WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db_error)?
        .map(|row| row.try_get::<i64, _>(0).map_err(db_error))
        .transpose()
}

fn target_key(target: &ReviewTarget) -> (&'static str, &str, &Digest) {
    match target {
        ReviewTarget::Blob { digest } => ("blob", "", digest),
        ReviewTarget::Manifest { repository, digest } => ("manifest", repository.as_str(), digest),
    }
}

/// Records a blob (if it is not) and holds its row for the rest of the transaction.
///
/// DO NOTHING takes no lock on an existing row, so the row is held explicitly: a collector's
/// claim then waits for this transaction. If a claim removed it meanwhile, it is recorded anew.
async fn hold_blob(
    conn: &mut AnyConnection,
    store: &SqlMetadataStore,
    digest: &Digest,
    size: u64,
    now: i64,
) -> Result<()> {
    let hold = format!(
        "SELECT 1 FROM blobs WHERE digest = $1 {}",
        store.lock("FOR SHARE")
    );
    for _ in 0..MAX_UPSERT_ATTEMPTS {
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(to_i64(size)?)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        let held = sqlx::query(&hold)
            .bind(digest.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        if held.is_some() {
            return Ok(());
        }
    }
    Err(Error::backend(format!(
        "blob {digest} kept vanishing while recorded"
    )))
}

async fn queue(
    conn: &mut AnyConnection,
    target: &ReviewTarget,
    event: ReviewEvent,
    due_at: i64,
) -> Result<()> {
    let (kind, repository, digest) = target_key(target);
    sqlx::query(
        "INSERT INTO review_queue (kind, repository, digest, event, due_at, attempts) \
         VALUES ($1, $2, $3, $4, $5, 0) \
         ON CONFLICT (kind, repository, digest) DO UPDATE SET event = excluded.event, \
         due_at = CASE WHEN excluded.due_at > review_queue.due_at \
                  THEN excluded.due_at ELSE review_queue.due_at END",
    )
    .bind(kind)
    .bind(repository)
    .bind(digest.as_str())
    .bind(event.as_str())
    .bind(due_at)
    .execute(conn)
    .await
    .map_err(db_error)
    .map(drop)
}

fn blob_review(digest: Digest) -> ReviewTarget {
    ReviewTarget::Blob { digest }
}

fn manifest_review(repository: &RepositoryName, digest: Digest) -> ReviewTarget {
    ReviewTarget::Manifest {
        repository: repository.clone(),
        digest,
    }
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(db_error)
}

fn digest_column(row: &AnyRow, column: &str) -> Result<Digest> {
    let text: String = get(row, column)?;
    Digest::parse(&text).map_err(|_| corrupt("digest", &text))
}

fn digests(rows: &[AnyRow], column: &str) -> Result<Vec<Digest>> {
    rows.iter().map(|row| digest_column(row, column)).collect()
}

fn blob_record(row: &AnyRow) -> Result<BlobRecord> {
    Ok(BlobRecord {
        digest: digest_column(row, "digest")?,
        size: u64::try_from(get::<i64>(row, "size")?).unwrap_or(0),
        created_at: Timestamp(get(row, "created_at")?),
    })
}

/// Deletes a manifest row with its tags and references, and queues its blobs, children and
/// referrers for review; returns the tags it had. The caller holds the transaction and has
/// checked the manifest may go.
async fn remove_manifest(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    repository_id: i64,
    digest: &Digest,
    due: i64,
) -> Result<Vec<Tag>> {
    let rows_of = |sql: &'static str| sqlx::query(sql).bind(repository_id).bind(digest.as_str());
    let tag_rows = rows_of(
        "SELECT name FROM tags WHERE repository_id = $1 AND manifest_digest = $2 ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let blobs = rows_of(
        "SELECT blob_digest FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let children = rows_of("SELECT child_digest FROM manifest_children WHERE repository_id = $1 AND parent_digest = $2")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
    let referrers =
        rows_of("SELECT digest FROM manifests WHERE repository_id = $1 AND subject = $2")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
    for sql in [
        "DELETE FROM tags WHERE repository_id = $1 AND manifest_digest = $2",
        "DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2",
        "DELETE FROM manifest_children WHERE repository_id = $1 AND parent_digest = $2",
        "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
    ] {
        rows_of(sql).execute(&mut *conn).await.map_err(db_error)?;
    }
    let reviews = digests(&blobs, "blob_digest")?
        .into_iter()
        .map(|d| (blob_review(d), ReviewEvent::ManifestDeleted))
        .chain(
            digests(&children, "child_digest")?
                .into_iter()
                .map(|d| (manifest_review(repository, d), ReviewEvent::IndexDeleted)),
        )
        .chain(
            digests(&referrers, "digest")?
                .into_iter()
                .map(|d| (manifest_review(repository, d), ReviewEvent::SubjectDeleted)),
        );
    for (target, event) in reviews {
        queue(&mut *conn, &target, event, due).await?;
    }
    tag_rows.iter().map(tag_column).collect()
}

fn tag_column(row: &AnyRow) -> Result<Tag> {
    let name: String = get(row, "name")?;
    Tag::parse(&name).map_err(|_| corrupt("tag", &name))
}
