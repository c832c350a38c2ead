//! The SQL metadata store: SQLite (the embedded default) and PostgreSQL (scale-out).
//!
//! One implementation serves both databases through `sqlx`'s `Any` driver; the schema is
//! versioned with embedded migrations, one set per dialect. Every mutation runs in one
//! transaction together with the review-queue entries it causes. On SQLite, write transactions
//! begin `IMMEDIATE` so concurrent writers queue on the database lock instead of failing; on
//! PostgreSQL, rows a mutation depends on are locked (`FOR SHARE` / `FOR UPDATE`) so that a
//! collector deleting a blob and a push referencing it serialize.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use registry_core::metadata::DEFAULT_REVIEW_DELAY;
use registry_core::{
    BlobClaim, BlobRecord, CollectionMetadata, ContentMetadata, Digest, Error, ManifestEntry,
    ManifestRecord, ManifestVerdict, NewManifest, Page, PolicyKind, PolicySource, PolicyStore,
    PutManifestOutcome, Reference, Referrer, RepositoryName, Result, ReviewEvent, ReviewQueue,
    ReviewTarget, ReviewTask, StorageUsage, StoredPolicy, Tag, TagChange, TagDetail, TagGuard,
    TagOrder, TagQuery, Timestamp, UploadId, UploadMetadata, UploadRecord, UsageScope,
};

use crate::policy::{check_count, check_owner};

mod packages;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, Executor, Pool, Row, Transaction};

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

/// Whether anything besides a manifest holds a blob (`$1`): package files and their sidecars.
/// The one place a new referencing table (a proxy cache, a quarantine) joins: the collector's
/// claim and the sweep both ask it.
pub(crate) const HELD_BEYOND_MANIFESTS: &str =
    "SELECT 1 FROM package_files WHERE blob_digest = $1 OR sidecar_digest = $1";

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

fn corrupt(what: &str, value: &str) -> Error {
    Error::backend(format!("stored {what} {value:?} is invalid"))
}

fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::backend(format!("{value} does not fit a database integer")))
}

impl SqlMetadataStore {
    /// Opens (creating if needed) a SQLite database file and migrates it.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(path: &std::path::Path) -> Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url).await
    }

    /// Connects to a database by URL (`sqlite://…` or `postgres://…`) and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
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
        };
        store.migrate().await?;
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

    /// The version of the newest migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(version) AS version FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(get::<Option<i64>>(&row, "version")?.unwrap_or(0))
    }

    /// Applies every pending migration (run by [`SqlMetadataStore::connect`]).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.dialect {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
            #[allow(unreachable_patterns)] // reachable only when a dialect's feature is off
            other => {
                return Err(Error::Unsupported {
                    what: format!("{other:?} support is not compiled in"),
                });
            }
        };
        migrator.run(&self.pool).await.map_err(Error::backend)
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

/// The id of a repository, created when missing.
async fn ensure_repository(conn: &mut AnyConnection, name: &RepositoryName) -> Result<i64> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.as_str())
    .bind(Timestamp::now().0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    repository_id(conn, name)
        .await?
        .ok_or_else(|| Error::backend("repository vanished while being created"))
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

fn annotations_from(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|_| corrupt("annotations", text))
}

fn digests(rows: &[AnyRow], column: &str) -> Result<Vec<Digest>> {
    rows.iter().map(|row| digest_column(row, column)).collect()
}

fn review_task(row: &AnyRow) -> Result<ReviewTask> {
    let kind: String = get(row, "kind")?;
    let digest = digest_column(row, "digest")?;
    let target = match kind.as_str() {
        "blob" => ReviewTarget::Blob { digest },
        "manifest" => {
            let repository: String = get(row, "repository")?;
            ReviewTarget::Manifest {
                repository: RepositoryName::parse(&repository)
                    .map_err(|_| corrupt("repository name", &repository))?,
                digest,
            }
        }
        other => return Err(corrupt("review kind", other)),
    };
    let event: String = get(row, "event")?;
    Ok(ReviewTask {
        target,
        event: ReviewEvent::from_name(&event).ok_or_else(|| corrupt("review event", &event))?,
        due_at: Timestamp(get(row, "due_at")?),
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
    })
}

fn upload_record(row: &AnyRow) -> Result<UploadRecord> {
    let id: String = get(row, "id")?;
    let repository: String = get(row, "repository")?;
    Ok(UploadRecord {
        id: UploadId::parse(&id).map_err(|_| corrupt("upload id", &id))?,
        repository: RepositoryName::parse(&repository)
            .map_err(|_| corrupt("repository name", &repository))?,
        started_at: Timestamp(get(row, "started_at")?),
    })
}

fn blob_record(row: &AnyRow) -> Result<BlobRecord> {
    Ok(BlobRecord {
        digest: digest_column(row, "digest")?,
        size: u64::try_from(get::<i64>(row, "size")?).unwrap_or(0),
        created_at: Timestamp(get(row, "created_at")?),
    })
}

fn manifest_unknown(repository: &RepositoryName, reference: impl ToString) -> Error {
    Error::ManifestUnknown {
        repository: repository.to_string(),
        reference: reference.to_string(),
    }
}

#[async_trait]
impl ContentMetadata for SqlMetadataStore {
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        Ok(repository_id(&mut conn, repository).await?.is_some())
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepositoryName>> {
        let names = sqlx::query(&page_query("repositories", "TRUE"))
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(to_i64(page.limit as u64)?)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        split_page(&names, |name| {
            RepositoryName::parse(name).map_err(|_| corrupt("repository name", name))
        })
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let now = Timestamp::now().0;
        let mut tx = self.begin().await?;
        hold_blob(&mut tx, self, digest, size, now).await?;
        let repository_id = ensure_repository(&mut tx, repository).await?;
        sqlx::query("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT (repository_id, digest) DO NOTHING")
            .bind(repository_id)
            .bind(digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        queue(
            &mut tx,
            &blob_review(digest.clone()),
            ReviewEvent::BlobUploaded,
            self.due(),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        sqlx::query(
            "SELECT b.digest, b.size, b.created_at FROM blobs b \
             JOIN repository_blobs rb ON rb.digest = b.digest \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(blob_record)
        .transpose()
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        sqlx::query("SELECT digest, size, created_at FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(blob_record)
            .transpose()
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        let removed =
            sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2")
                .bind(repository_id)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected()
                > 0;
        if removed {
            queue(
                &mut tx,
                &blob_review(digest.clone()),
                ReviewEvent::BlobUnlinked,
                self.due(),
            )
            .await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(removed)
    }

    async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tags: &[Tag],
        guard: &TagGuard,
    ) -> Result<PutManifestOutcome> {
        let now = Timestamp::now().0;
        let due = self.due();
        let mut tx = self.begin().await?;
        let repository_id = ensure_repository(&mut tx, &manifest.repository).await?;
        let blob_check = format!(
            "SELECT 1 FROM blobs WHERE digest = $2 AND EXISTS \
             (SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2) {}",
            self.lock("FOR SHARE")
        );
        for digest in &manifest.blobs {
            let found = sqlx::query(&blob_check)
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if found.is_none() {
                return Err(Error::ManifestBlobUnknown {
                    digest: digest.clone(),
                });
            }
        }
        for digest in &manifest.children {
            if !self
                .manifest_row(&mut tx, repository_id, digest, "FOR SHARE")
                .await?
            {
                return Err(Error::ManifestBlobUnknown {
                    digest: digest.clone(),
                });
            }
        }
        let annotations = serde_json::to_string(&manifest.annotations).map_err(Error::backend)?;
        let mut created = false;
        for attempt in 1.. {
            created = sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, \
                 annotations, size, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (repository_id, digest) DO NOTHING",
            )
            .bind(repository_id)
            .bind(manifest.digest.as_str())
            .bind(manifest.media_type.as_str())
            .bind(manifest.artifact_type.as_deref())
            .bind(manifest.subject.as_ref().map(Digest::as_str))
            .bind(annotations.as_str())
            .bind(to_i64(manifest.bytes.len() as u64)?)
            .bind(manifest.bytes.to_vec())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected()
                > 0;
            // An existing row was not locked by DO NOTHING: hold it so a collector deciding on
            // it waits and then sees the tag; if one deleted it meanwhile, insert it anew.
            if created
                || self
                    .manifest_row(&mut tx, repository_id, &manifest.digest, "FOR SHARE")
                    .await?
            {
                break;
            }
            if attempt == MAX_UPSERT_ATTEMPTS {
                return Err(Error::backend(format!(
                    "manifest {} kept vanishing while pushed",
                    manifest.digest
                )));
            }
        }
        if created {
            for blob in &manifest.blobs {
                sqlx::query("INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repository_id)
                    .bind(manifest.digest.as_str())
                    .bind(blob.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            for child in &manifest.children {
                sqlx::query("INSERT INTO manifest_children (repository_id, parent_digest, child_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repository_id)
                    .bind(manifest.digest.as_str())
                    .bind(child.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
        }
        // Tags are locked in one order, so pushes of overlapping tag sets cannot deadlock.
        // Dropping the transaction on a refused tag rolls the manifest and earlier tags back.
        let mut ordered: Vec<&Tag> = tags.iter().collect();
        ordered.sort();
        ordered.dedup();
        let mut previous: Vec<Digest> = Vec::new();
        for tag in ordered {
            let target = (tag, &manifest.digest);
            if let Some(left) = upsert_tag(&mut tx, self, repository_id, target, now, guard).await?
                && !previous.contains(&left)
            {
                previous.push(left);
            }
        }
        let review = manifest_review(&manifest.repository, manifest.digest.clone());
        queue(&mut tx, &review, ReviewEvent::ManifestUploaded, due).await?;
        for left in &previous {
            let review = manifest_review(&manifest.repository, left.clone());
            queue(&mut tx, &review, ReviewEvent::TagSwitched, due).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(PutManifestOutcome {
            created,
            previous_tag_targets: previous,
        })
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        const BY_DIGEST: &str = "SELECT m.digest, m.media_type, m.artifact_type, m.subject, \
            m.annotations, m.payload, m.created_at \
            FROM manifests m JOIN repositories r ON r.id = m.repository_id \
            WHERE r.name = $1 AND m.digest = $2";
        const BY_TAG: &str = "SELECT m.digest, m.media_type, m.artifact_type, m.subject, \
            m.annotations, m.payload, m.created_at \
            FROM manifests m JOIN repositories r ON r.id = m.repository_id \
            JOIN tags t ON t.repository_id = m.repository_id AND t.manifest_digest = m.digest \
            WHERE r.name = $1 AND t.name = $2";
        let (sql, key) = match reference {
            Reference::Digest(digest) => (BY_DIGEST, digest.as_str()),
            Reference::Tag(tag) => (BY_TAG, tag.as_str()),
        };
        let row = sqlx::query(sql)
            .bind(repository.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let annotations: String = get(&row, "annotations")?;
        let subject: Option<String> = get(&row, "subject")?;
        Ok(Some(ManifestRecord {
            repository: repository.clone(),
            digest: digest_column(&row, "digest")?,
            media_type: get(&row, "media_type")?,
            artifact_type: get(&row, "artifact_type")?,
            subject: subject
                .map(|s| Digest::parse(&s).map_err(|_| corrupt("subject", &s)))
                .transpose()?,
            annotations: annotations_from(&annotations)?,
            bytes: Bytes::from(get::<Vec<u8>>(&row, "payload")?),
            created_at: Timestamp(get(&row, "created_at")?),
        }))
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Vec<Tag>> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let repository_id = repository_id(&mut tx, repository)
            .await?
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        if !self
            .manifest_row(&mut tx, repository_id, digest, "FOR UPDATE")
            .await?
        {
            return Err(manifest_unknown(repository, digest));
        }
        let rows_of =
            |sql: &'static str| sqlx::query(sql).bind(repository_id).bind(digest.as_str());
        let parent = rows_of("SELECT parent_digest FROM manifest_children WHERE repository_id = $1 AND child_digest = $2 LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if let Some(parent) = parent {
            return Err(Error::ManifestReferenced {
                digest: digest.clone(),
                index: digest_column(&parent, "parent_digest")?,
            });
        }
        let tag_rows = rows_of(
            "SELECT name FROM tags WHERE repository_id = $1 AND manifest_digest = $2 ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        for row in &tag_rows {
            guard.check(&tag_column(row)?, TagChange::Delete { current: digest })?;
        }
        let tags = remove_manifest(&mut tx, repository, repository_id, digest, due).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(tags)
    }

    async fn put_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Option<Digest>> {
        let mut tx = self.begin().await?;
        let repository_id = repository_id(&mut tx, repository)
            .await?
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        if !self
            .manifest_row(&mut tx, repository_id, digest, "FOR SHARE")
            .await?
        {
            return Err(manifest_unknown(repository, digest));
        }
        let previous = upsert_tag(
            &mut tx,
            self,
            repository_id,
            (tag, digest),
            Timestamp::now().0,
            guard,
        )
        .await?;
        if let Some(previous) = &previous {
            let review = manifest_review(repository, previous.clone());
            queue(&mut tx, &review, ReviewEvent::TagSwitched, self.due()).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(previous)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        guard: &TagGuard,
    ) -> Result<Digest> {
        let mut tx = self.begin().await?;
        let repository_id = repository_id(&mut tx, repository)
            .await?
            .ok_or_else(|| manifest_unknown(repository, tag))?;
        let row = sqlx::query(&format!(
            "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2 {}",
            self.lock("FOR UPDATE")
        ))
        .bind(repository_id)
        .bind(tag.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| manifest_unknown(repository, tag))?;
        let digest = digest_column(&row, "manifest_digest")?;
        guard.check(tag, TagChange::Delete { current: &digest })?;
        sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2")
            .bind(repository_id)
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let review = manifest_review(repository, digest.clone());
        queue(&mut tx, &review, ReviewEvent::TagDeleted, self.due()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(digest)
    }

    async fn list_tags(&self, repository: &RepositoryName, page: &Page) -> Result<Vec<Tag>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let repository_id =
            repository_id(&mut conn, repository)
                .await?
                .ok_or_else(|| Error::NameUnknown {
                    name: repository.to_string(),
                })?;
        let names = sqlx::query(&page_query("tags", "repository_id = $3"))
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(to_i64(page.limit as u64)?)
            .bind(repository_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        split_page(&names, |name| {
            Tag::parse(name).map_err(|_| corrupt("tag", name))
        })
    }

    async fn storage_usage(&self, scope: &UsageScope) -> Result<StorageUsage> {
        // A namespace `p` covers `p` and the byte range ["p/", "p0"): '0' follows '/'.
        let (name, low, high) = match scope {
            UsageScope::Repository(name) => (name.as_str(), String::new(), String::new()),
            UsageScope::Namespace(prefix) => {
                (prefix.as_str(), format!("{prefix}/"), format!("{prefix}0"))
            }
        };
        let row = sqlx::query(
            "WITH scope AS (SELECT id FROM repositories \
               WHERE name = $1 OR (name >= $2 AND name < $3)), \
             used AS (SELECT DISTINCT blob_digest FROM manifest_blobs \
               WHERE repository_id IN (SELECT id FROM scope)) \
             SELECT (SELECT COUNT(*) FROM scope) AS repositories, \
               (SELECT COUNT(*) FROM manifests WHERE repository_id IN (SELECT id FROM scope)) \
                 AS manifests, \
               (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM manifests \
                 WHERE repository_id IN (SELECT id FROM scope)) AS manifest_bytes, \
               (SELECT COUNT(*) FROM used) AS blobs, \
               (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b \
                 WHERE b.digest IN (SELECT blob_digest FROM used)) AS blob_bytes",
        )
        .bind(name)
        .bind(low)
        .bind(high)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        let count = |column: &str| -> Result<u64> {
            Ok(u64::try_from(get::<i64>(&row, column)?).unwrap_or(0))
        };
        Ok(StorageUsage {
            repositories: count("repositories")?,
            manifests: count("manifests")?,
            manifest_bytes: count("manifest_bytes")?,
            blobs: count("blobs")?,
            blob_bytes: count("blob_bytes")?,
        })
    }

    async fn tag_details(
        &self,
        repository: &RepositoryName,
        query: &TagQuery,
    ) -> Result<Vec<TagDetail>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let repository_id =
            repository_id(&mut conn, repository)
                .await?
                .ok_or_else(|| Error::NameUnknown {
                    name: repository.to_string(),
                })?;
        let mut sql = String::from(
            "SELECT t.name, t.manifest_digest, t.created_at, t.updated_at, m.media_type, m.size, \
             m.size + CAST(COALESCE((SELECT SUM(b.size) FROM manifest_blobs mb \
               JOIN blobs b ON b.digest = mb.blob_digest \
               WHERE mb.repository_id = m.repository_id AND mb.manifest_digest = m.digest), 0) \
               AS BIGINT) AS total \
             FROM tags t JOIN manifests m \
               ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest \
             WHERE t.repository_id = $1",
        );
        let mut texts: Vec<String> = Vec::new();
        let mut times: Vec<i64> = Vec::new();
        // Placeholders are numbered in order: $2… texts first, then times.
        if let Some(contains) = &query.contains {
            texts.push(contains.clone());
            sql.push_str(&match self.dialect {
                Dialect::Sqlite => " AND instr(t.name, $2) > 0".to_owned(),
                Dialect::Postgres => " AND strpos(t.name, $2) > 0".to_owned(),
            });
        }
        let (marker, forward) = match (&query.after, &query.before) {
            (Some(after), _) => (Some(after), true),
            (None, Some(before)) => (Some(before), false),
            (None, None) => (None, true),
        };
        // Walking forward in an ascending listing (or backward in a descending one) goes up.
        let upward = forward != query.descending;
        let name_slot = texts.len() + 2;
        if let Some(marker) = marker {
            texts.push(marker.name.clone());
            let op = if upward { ">" } else { "<" };
            match query.order {
                TagOrder::Name => sql.push_str(&format!(" AND t.name {op} ${name_slot}")),
                TagOrder::Published => {
                    times.push(marker.published_at.0);
                    let time_slot = name_slot + 1;
                    sql.push_str(&format!(
                        " AND (t.updated_at, t.name) {op} (${time_slot}, ${name_slot})"
                    ));
                }
            }
        }
        let direction = if upward { "ASC" } else { "DESC" };
        sql.push_str(&match query.order {
            TagOrder::Name => format!(" ORDER BY t.name {direction}"),
            TagOrder::Published => {
                format!(" ORDER BY t.updated_at {direction}, t.name {direction}")
            }
        });
        sql.push_str(&format!(" LIMIT {}", query.limit));
        let mut statement = sqlx::query(&sql).bind(repository_id);
        for text in texts {
            statement = statement.bind(text);
        }
        for time in times {
            statement = statement.bind(time);
        }
        let rows = statement.fetch_all(&mut *conn).await.map_err(db_error)?;
        let mut details = rows
            .iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                Ok(TagDetail {
                    name: Tag::parse(&name).map_err(|_| corrupt("tag", &name))?,
                    digest: digest_column(row, "manifest_digest")?,
                    media_type: get(row, "media_type")?,
                    manifest_size: u64::try_from(get::<i64>(row, "size")?).unwrap_or(0),
                    size: u64::try_from(get::<i64>(row, "total")?).unwrap_or(0),
                    created_at: Timestamp(get(row, "created_at")?),
                    published_at: Timestamp(get(row, "updated_at")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !forward {
            // Fetched nearest-first going backwards; the page reads in the listing's order.
            details.reverse();
        }
        Ok(details)
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let filter = if artifact_type.is_some() {
            "AND m.artifact_type = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 {filter} ORDER BY m.digest"
        );
        let mut query = sqlx::query_as::<_, ReferrerRow>(&sql)
            .bind(repository.as_str())
            .bind(subject.as_str());
        if let Some(artifact_type) = artifact_type {
            query = query.bind(artifact_type);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db_error)?;
        rows.into_iter().map(ReferrerRow::into_referrer).collect()
    }
}

/// A referrers query row, decoded before validation.
#[derive(sqlx::FromRow)]
struct ReferrerRow {
    digest: String,
    media_type: String,
    size: i64,
    artifact_type: Option<String>,
    annotations: String,
}

impl ReferrerRow {
    fn into_referrer(self) -> Result<Referrer> {
        Ok(Referrer {
            digest: Digest::parse(&self.digest).map_err(|_| corrupt("digest", &self.digest))?,
            media_type: self.media_type,
            size: u64::try_from(self.size).unwrap_or(0),
            artifact_type: self.artifact_type,
            annotations: annotations_from(&self.annotations)?,
        })
    }
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

/// Points a tag at a manifest, if the guard allows; returns the manifest it pointed at before,
/// if different.
///
/// A tag that does not exist yet is inserted without overwriting: when a concurrent transaction
/// creates it first, the insert does nothing, the row is read again and the push is judged as
/// a move (an immutable tag is never overwritten by a racing push).
async fn upsert_tag(
    conn: &mut AnyConnection,
    store: &SqlMetadataStore,
    repository_id: i64,
    (tag, digest): (&Tag, &Digest),
    now: i64,
    guard: &TagGuard,
) -> Result<Option<Digest>> {
    let select = format!(
        "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2 {}",
        store.lock("FOR UPDATE")
    );
    for _ in 0..MAX_UPSERT_ATTEMPTS {
        let previous = sqlx::query(&select)
            .bind(repository_id)
            .bind(tag.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?
            .map(|row| digest_column(&row, "manifest_digest"))
            .transpose()?;
        let moved = previous.as_ref().is_some_and(|p| p != digest);
        guard.check(tag, TagChange::Push { moved })?;
        let written = match previous {
            Some(_) => sqlx::query(
                "UPDATE tags SET manifest_digest = $3, updated_at = $4 \
                 WHERE repository_id = $1 AND name = $2",
            ),
            None => sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (repository_id, name) DO NOTHING",
            ),
        }
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        if written.rows_affected() == 1 {
            return Ok(previous.filter(|p| p != digest));
        }
    }
    Err(Error::backend(format!(
        "tag {tag} kept changing under concurrent pushes; try again"
    )))
}

#[async_trait]
impl PolicyStore for SqlMetadataStore {
    async fn policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(
            "SELECT name, source, document FROM policies WHERE kind = $1 ORDER BY name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let source: String = get(row, "source")?;
                Ok(StoredPolicy {
                    kind,
                    name: get(row, "name")?,
                    source: PolicySource::from_name(&source)
                        .ok_or_else(|| corrupt("policy source", &source))?,
                    document: get(row, "document")?,
                })
            })
            .collect()
    }

    async fn put_policy(&self, policy: &StoredPolicy, max: usize) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Serializes writers of one kind on PostgreSQL (SQLite's IMMEDIATE transaction already
        // does), so two creations cannot both pass the count check.
        lock_policies(&mut tx, self.dialect).await?;
        let created = match policy_source(&mut tx, policy.kind, &policy.name).await? {
            Some(owner) => {
                check_owner(policy.kind, &policy.name, owner, policy.source)?;
                false
            }
            None => {
                check_count(count_policies(&mut tx, policy.kind).await? + 1, max)?;
                true
            }
        };
        sqlx::query(
            "INSERT INTO policies (kind, name, source, document, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, name) \
             DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
        )
        .bind(policy.kind.as_str())
        .bind(policy.name.as_str())
        .bind(policy.source.as_str())
        .bind(policy.document.as_str())
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn delete_policy(
        &self,
        kind: PolicyKind,
        name: &str,
        source: PolicySource,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        lock_policies(&mut tx, self.dialect).await?;
        let Some(owner) = policy_source(&mut tx, kind, name).await? else {
            return Ok(false);
        };
        check_owner(kind, name, owner, source)?;
        sqlx::query("DELETE FROM policies WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn replace_policies(
        &self,
        kind: PolicyKind,
        source: PolicySource,
        policies: &[StoredPolicy],
        max: usize,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        lock_policies(&mut tx, self.dialect).await?;
        sqlx::query("DELETE FROM policies WHERE kind = $1 AND source = $2")
            .bind(kind.as_str())
            .bind(source.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for policy in policies {
            if let Some(owner) = policy_source(&mut tx, kind, &policy.name).await? {
                check_owner(kind, &policy.name, owner, source)?;
            }
        }
        check_count(count_policies(&mut tx, kind).await? + policies.len(), max)?;
        let now = Timestamp::now().0;
        for policy in policies {
            sqlx::query(
                "INSERT INTO policies (kind, name, source, document, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind.as_str())
            .bind(policy.name.as_str())
            .bind(source.as_str())
            .bind(policy.document.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }
}

/// Takes the policy table's write lock for the rest of the transaction (PostgreSQL; SQLite's
/// write transactions are serialized already).
async fn lock_policies(conn: &mut AnyConnection, dialect: Dialect) -> Result<()> {
    if dialect == Dialect::Postgres {
        sqlx::query("LOCK TABLE policies IN SHARE ROW EXCLUSIVE MODE")
            .execute(conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

async fn policy_source(
    conn: &mut AnyConnection,
    kind: PolicyKind,
    name: &str,
) -> Result<Option<PolicySource>> {
    let row = sqlx::query("SELECT source FROM policies WHERE kind = $1 AND name = $2")
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    row.map(|row| {
        let source: String = get(&row, "source")?;
        PolicySource::from_name(&source).ok_or_else(|| corrupt("policy source", &source))
    })
    .transpose()
}

async fn count_policies(conn: &mut AnyConnection, kind: PolicyKind) -> Result<usize> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM policies WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(conn)
        .await
        .map_err(db_error)?;
    let n: i64 = get(&row, "n")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

#[async_trait]
impl UploadMetadata for SqlMetadataStore {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()> {
        let inserted = sqlx::query("INSERT INTO uploads (id, repository, started_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(upload.id.as_str())
            .bind(upload.repository.as_str())
            .bind(upload.started_at.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected();
        if inserted == 0 {
            return Err(Error::BlobUploadInvalid {
                reason: format!("upload {} already exists", upload.id),
            });
        }
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        sqlx::query("SELECT id, repository, started_at FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(upload_record)
            .transpose()
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected()
            > 0)
    }

    async fn uploads_started_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query("SELECT id, repository, started_at FROM uploads WHERE started_at < $1 ORDER BY started_at, id LIMIT $2")
            .bind(before.0)
            .bind(to_i64(limit as u64)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(upload_record).collect()
    }
}

#[async_trait]
impl ReviewQueue for SqlMetadataStore {
    async fn due_reviews(&self, now: Timestamp, limit: usize) -> Result<Vec<ReviewTask>> {
        let rows = sqlx::query("SELECT kind, repository, digest, event, due_at, attempts FROM review_queue WHERE due_at <= $1 ORDER BY due_at, kind, repository, digest LIMIT $2")
            .bind(now.0)
            .bind(to_i64(limit as u64)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(review_task).collect()
    }

    async fn review(&self, target: &ReviewTarget) -> Result<Option<ReviewTask>> {
        let (kind, repository, digest) = target_key(target);
        sqlx::query("SELECT kind, repository, digest, event, due_at, attempts FROM review_queue WHERE kind = $1 AND repository = $2 AND digest = $3")
            .bind(kind)
            .bind(repository)
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(review_task)
            .transpose()
    }

    async fn postpone_review(&self, target: &ReviewTarget, until: Timestamp) -> Result<bool> {
        let (kind, repository, digest) = target_key(target);
        Ok(sqlx::query("UPDATE review_queue SET due_at = $4, attempts = attempts + 1 WHERE kind = $1 AND repository = $2 AND digest = $3")
            .bind(kind)
            .bind(repository)
            .bind(digest.as_str())
            .bind(until.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected()
            > 0)
    }

    async fn complete_review(&self, task: &ReviewTask) -> Result<bool> {
        let (kind, repository, digest) = target_key(&task.target);
        Ok(sqlx::query(
            "DELETE FROM review_queue WHERE kind = $1 AND repository = $2 AND digest = $3 \
             AND event = $4 AND due_at = $5",
        )
        .bind(kind)
        .bind(repository)
        .bind(digest.as_str())
        .bind(task.event.as_str())
        .bind(task.due_at.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0)
    }

    async fn review_queue_len(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM review_queue")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(get::<i64>(&row, "n")?).unwrap_or(0))
    }
}

#[async_trait]
impl CollectionMetadata for SqlMetadataStore {
    async fn collect_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestVerdict> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(ManifestVerdict::Missing);
        };
        // FOR UPDATE: a concurrent tag or index push waits for this decision, then sees it.
        if !self
            .manifest_row(&mut tx, repository_id, digest, "FOR UPDATE")
            .await?
        {
            return Ok(ManifestVerdict::Missing);
        }
        let checks = [
            (
                ManifestVerdict::Tagged,
                "SELECT 1 FROM tags WHERE repository_id = $1 AND manifest_digest = $2 LIMIT 1",
            ),
            (
                ManifestVerdict::Listed,
                "SELECT 1 FROM manifest_children WHERE repository_id = $1 AND child_digest = $2 LIMIT 1",
            ),
            (
                ManifestVerdict::Referrer,
                "SELECT 1 FROM manifests m JOIN manifests s \
                 ON s.repository_id = m.repository_id AND s.digest = m.subject \
                 WHERE m.repository_id = $1 AND m.digest = $2",
            ),
        ];
        for (verdict, sql) in checks {
            let found = sqlx::query(sql)
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if found.is_some() {
                return Ok(verdict);
            }
        }
        remove_manifest(&mut tx, repository, repository_id, digest, due).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(ManifestVerdict::Deleted)
    }

    async fn list_manifests(
        &self,
        repository: &RepositoryName,
        page: &Page,
    ) -> Result<Vec<ManifestEntry>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let Some(repository_id) = repository_id(&mut conn, repository).await? else {
            return Ok(Vec::new());
        };
        // References come aggregated, one row per manifest (see `page_query`).
        let rows = sqlx::query(
            "SELECT m.digest, m.size, m.created_at, m.subject, \
             (SELECT COUNT(*) FROM tags t WHERE t.repository_id = m.repository_id \
              AND t.manifest_digest = m.digest) AS tags, \
             (SELECT string_agg(b.blob_digest, ',') FROM manifest_blobs b \
              WHERE b.repository_id = m.repository_id AND b.manifest_digest = m.digest) AS blobs, \
             (SELECT string_agg(c.child_digest, ',') FROM manifest_children c \
              WHERE c.repository_id = m.repository_id AND c.parent_digest = m.digest) AS children \
             FROM manifests m WHERE m.repository_id = $1 AND m.digest > $2 \
             ORDER BY m.digest LIMIT $3",
        )
        .bind(repository_id)
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let list = |column: &str| -> Result<Vec<Digest>> {
                    let text: Option<String> = get(row, column)?;
                    text.as_deref().map_or(Ok(Vec::new()), |t| {
                        t.split(',')
                            .map(|d| Digest::parse(d).map_err(|_| corrupt("digest", d)))
                            .collect()
                    })
                };
                let subject: Option<String> = get(row, "subject")?;
                Ok(ManifestEntry {
                    digest: digest_column(row, "digest")?,
                    size: u64::try_from(get::<i64>(row, "size")?).unwrap_or(0),
                    created_at: Timestamp(get(row, "created_at")?),
                    tagged: get::<i64>(row, "tags")? > 0,
                    subject: subject
                        .map(|s| Digest::parse(&s).map_err(|_| corrupt("subject", &s)))
                        .transpose()?,
                    blobs: list("blobs")?,
                    children: list("children")?,
                })
            })
            .collect()
    }

    async fn list_blobs(&self, page: &Page) -> Result<Vec<BlobRecord>> {
        let rows = sqlx::query(
            "SELECT digest, size, created_at FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
        )
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(blob_record).collect()
    }

    async fn claim_blob(&self, digest: &Digest) -> Result<Option<Box<dyn BlobClaim>>> {
        let mut tx = self.begin().await?;
        let record = sqlx::query(&format!(
            "SELECT 1 FROM blobs WHERE digest = $1 {}",
            self.lock("FOR UPDATE")
        ))
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if record.is_none() {
            return Ok(None);
        }
        let referenced = sqlx::query(&format!(
            "SELECT 1 FROM manifest_blobs WHERE blob_digest = $1 UNION ALL {HELD_BEYOND_MANIFESTS} \
             LIMIT 1"
        ))
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if referenced.is_some() {
            return Ok(None);
        }
        for sql in [
            "DELETE FROM repository_blobs WHERE digest = $1",
            "DELETE FROM blobs WHERE digest = $1",
        ] {
            sqlx::query(sql)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        Ok(Some(Box::new(SqlBlobClaim { tx })))
    }
}

/// A blob claim holding its transaction open (and with it the blob row's lock).
struct SqlBlobClaim {
    tx: Transaction<'static, Any>,
}

#[async_trait]
impl BlobClaim for SqlBlobClaim {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(db_error)
    }

    async fn abandon(self: Box<Self>) -> Result<()> {
        self.tx.rollback().await.map_err(db_error)
    }
}
