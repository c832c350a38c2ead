//! Database load balancing: image reads on PostgreSQL streaming replicas, writes on the primary.
//!
//! - **Reads** of a repository's manifests, tags, blob links and referrers, and of the catalog,
//!   go to a healthy replica, round robin; everything else, and every write, to the primary.
//! - **Read-your-writes, across instances**: after a write to a repository commits, the
//!   primary's WAL insert position (LSN) is recorded for it in `repository_lsn`, on the primary,
//!   where every instance sees it. A read of that repository goes only to a replica known to
//!   have replayed at least that far, else to the primary. A replica's replayed position is the
//!   one its last health check saw, never newer than the real one, so a choice is always safe.
//! - **Health**: every [`ReplicaOptions::check_interval`] each replica is asked how far it has
//!   replayed; one that does not answer within [`ReplicaOptions::timeout`], is not a standby, or
//!   lags the primary by more than [`ReplicaOptions::max_lag_bytes`] is taken out until a check
//!   finds it well again; one that serves another cluster, database or schema than the primary
//!   is never read from. A read that fails on a replica takes it out at once and is answered
//!   by the primary. With no healthy replica, everything goes to the primary.
//!
//! Reads that could have gone to a replica are counted in `registry_db_balanced_reads_total`,
//! by `target` (`replica` or `primary`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use registry_core::{Error, RepositoryName, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, Pool, Row};

use super::{SqlMetadataStore, db_error};

/// How replicas are used and checked.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// A replica further behind the primary than this many bytes of WAL is taken out
    /// (16 MiB by default).
    pub max_lag_bytes: u64,
    /// Time between health checks (1 s by default).
    pub check_interval: Duration,
    /// How long a health check or a connection may take (2 s by default).
    pub timeout: Duration,
    /// How long a read on a replica may take before the replica is taken out and the read
    /// sent to the primary (30 s by default: a long tag listing is no sign of trouble).
    pub read_timeout: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            max_lag_bytes: 16 << 20,
            check_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// One replica as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `host:port` of the replica.
    pub name: String,
    /// Whether reads go to it.
    pub healthy: bool,
    /// Bytes of WAL it was behind the primary at the last check (`None`: it did not answer).
    pub lag_bytes: Option<u64>,
    /// Reads it has answered.
    pub reads: u64,
}

#[derive(Debug)]
struct Replica {
    name: String,
    pool: Pool<Any>,
    state: Mutex<ReplicaState>,
    reads: AtomicU64,
}

#[derive(Debug, Default)]
struct ReplicaState {
    /// Checks made so far.
    checked: u64,
    healthy: bool,
    /// WAL position replayed, at the last check.
    replayed: u64,
    lag: Option<u64>,
}

impl Replica {
    fn counted(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("registry_db_balanced_reads_total", "target" => "replica").increment(1);
    }
}

/// The replicas of one primary, shared by the store's clones.
#[derive(Debug)]
pub(super) struct Replicas {
    replicas: Vec<Replica>,
    options: ReplicaOptions,
    next: AtomicUsize,
    primary_reads: AtomicU64,
}

const LSN: &str = "CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS BIGINT)";

fn lock(state: &Mutex<ReplicaState>) -> std::sync::MutexGuard<'_, ReplicaState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `host:port` of a database URL, without credentials.
fn server_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

impl Replicas {
    /// Pools for `urls` (connected lazily: a replica that is down at start is only unhealthy).
    pub(super) fn new(urls: &[String], options: ReplicaOptions) -> Result<Self> {
        let replicas = urls
            .iter()
            .map(|url| {
                if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
                    return Err(Error::Unsupported {
                        what: format!("a replica that is not PostgreSQL: {}", server_name(url)),
                    });
                }
                let connect = url.parse::<AnyConnectOptions>().map_err(db_error)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(options.timeout)
                    .connect_lazy_with(connect);
                Ok(Replica {
                    name: server_name(url),
                    pool,
                    state: Mutex::default(),
                    reads: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Replicas {
            replicas,
            options,
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
        })
    }

    /// Checks every replica now, against the primary's current position.
    async fn check(&self, primary: &Pool<Any>) {
        let current = sqlx::query(&format!("SELECT {LSN} AS lsn"))
            .fetch_one(primary)
            .await
            .and_then(|row| row.try_get::<i64, _>("lsn"));
        let (Ok(current), Ok(primary_identity)) = (current, identity(primary).await) else {
            // The primary is what fails: nothing to compare against; keep the last verdicts.
            return;
        };
        for replica in &self.replicas {
            let replayed = tokio::time::timeout(self.options.timeout, async {
                let same = identity(&replica.pool).await? == primary_identity;
                let row = sqlx::query(
                    "SELECT CAST(pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS BIGINT) AS lsn",
                )
                .fetch_one(&replica.pool)
                .await?;
                Ok::<_, sqlx::Error>((same, row.try_get::<Option<i64>, _>("lsn")?))
            })
            .await;
            let mut state = lock(&replica.state);
            let was = state.healthy;
            let replayed = match replayed {
                Ok(Ok((false, _))) => {
                    state.healthy = false;
                    state.lag = None;
                    if was || state.checked == 0 {
                        tracing::warn!(replica = %replica.name, "database replica serves another database, schema or cluster than the primary: not read from");
                    }
                    state.checked += 1;
                    continue;
                }
                Ok(Ok((true, lsn))) => Ok(Ok(lsn)),
                Ok(Err(e)) => Ok(Err(e)),
                Err(elapsed) => Err(elapsed),
            };
            state.checked += 1;
            match replayed {
                Ok(Ok(Some(replayed))) => {
                    let replayed = u64::try_from(replayed).unwrap_or(0);
                    let lag = u64::try_from(current).unwrap_or(0).saturating_sub(replayed);
                    state.replayed = replayed;
                    state.lag = Some(lag);
                    state.healthy = lag <= self.options.max_lag_bytes;
                    if !state.healthy && was {
                        tracing::warn!(replica = %replica.name, lag_bytes = lag, "database replica lags: reads go elsewhere");
                    }
                }
                Ok(Ok(None)) => {
                    state.healthy = false;
                    state.lag = None;
                    if was {
                        tracing::warn!(replica = %replica.name, "database replica is not a standby: not read from");
                    }
                }
                Ok(Err(e)) => {
                    state.healthy = false;
                    state.lag = None;
                    if was {
                        tracing::warn!(replica = %replica.name, error = %e, "database replica failed: reads go elsewhere");
                    }
                }
                Err(_) => {
                    state.healthy = false;
                    state.lag = None;
                    if was {
                        tracing::warn!(replica = %replica.name, "database replica does not answer: reads go elsewhere");
                    }
                }
            }
            if state.healthy && !was {
                tracing::info!(replica = %replica.name, "database replica back in use");
            }
        }
    }

    /// A healthy replica that has replayed at least `needed`, round robin.
    fn pick(&self, needed: u64) -> Option<&Replica> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.replicas.len();
        (0..count)
            .map(|i| &self.replicas[(start + i) % count])
            .find(|replica| {
                let state = lock(&replica.state);
                state.healthy && state.replayed >= needed
            })
    }

    fn primary_counted(&self) {
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("registry_db_balanced_reads_total", "target" => "primary").increment(1);
    }

    fn any_healthy(&self) -> bool {
        self.replicas.iter().any(|r| lock(&r.state).healthy)
    }
}

/// What a replica must share with its primary: the cluster (its system identifier, where the
/// user may read it), the database and the schema its queries land in.
async fn identity(pool: &Pool<Any>) -> Result<String, sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(current_database() AS TEXT) AS db, CAST(current_schema() AS TEXT) AS schema",
    )
    .fetch_one(pool)
    .await?;
    // Only superusers and pg_monitor may read the system identifier: without it (empty on both
    // sides) the comparison rests on the database and the schema.
    let system =
        sqlx::query("SELECT CAST(system_identifier AS TEXT) AS id FROM pg_control_system()")
            .fetch_one(pool)
            .await
            .and_then(|row| row.try_get::<String, _>("id"))
            .unwrap_or_default();
    Ok(format!(
        "{system}/{}/{}",
        row.try_get::<String, _>("db")?,
        // No schema on the search path (NULL) compares as empty.
        row.try_get::<Option<String>, _>("schema")?
            .unwrap_or_default()
    ))
}

/// Runs the health checks until the store is dropped.
fn spawn_checks(replicas: Weak<Replicas>, primary: Pool<Any>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            let Some(replicas) = replicas.upgrade() else {
                return;
            };
            replicas.check(&primary).await;
            drop(replicas);
            tokio::time::sleep(interval).await;
        }
    });
}

impl SqlMetadataStore {
    /// Sends image reads to these PostgreSQL streaming replicas of the primary (see the module
    /// `balance`); checks them now, then every [`ReplicaOptions::check_interval`] in the
    /// background (so call this inside a Tokio runtime). Errors: the primary is not PostgreSQL,
    /// or a URL is not a PostgreSQL one.
    pub async fn with_replicas(mut self, urls: &[String], options: ReplicaOptions) -> Result<Self> {
        if urls.is_empty() {
            return Ok(self);
        }
        if self.dialect != super::Dialect::Postgres {
            return Err(Error::Unsupported {
                what: "database replicas for a primary that is not PostgreSQL".to_owned(),
            });
        }
        let interval = options.check_interval;
        let replicas = Arc::new(Replicas::new(urls, options)?);
        replicas.check(&self.pool).await;
        spawn_checks(Arc::downgrade(&replicas), self.pool.clone(), interval);
        self.replicas = Some(replicas);
        Ok(self)
    }

    /// The replicas and how they fare, and the reads the primary answered (for probes and
    /// tests); empty without replicas.
    pub fn replica_status(&self) -> (Vec<ReplicaStatus>, u64) {
        let Some(replicas) = &self.replicas else {
            return (Vec::new(), 0);
        };
        let status = replicas
            .replicas
            .iter()
            .map(|r| {
                let state = lock(&r.state);
                ReplicaStatus {
                    name: r.name.clone(),
                    healthy: state.healthy,
                    lag_bytes: state.lag,
                    reads: r.reads.load(Ordering::Relaxed),
                }
            })
            .collect();
        (status, replicas.primary_reads.load(Ordering::Relaxed))
    }

    /// Checks the replicas now rather than at the next interval.
    pub async fn check_replicas(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.check(&self.pool).await;
        }
    }

    /// Records, after a write to `repository` committed, the WAL position replicas must have
    /// replayed before they answer reads of it. A failure is logged: the write stands, and
    /// reads of the repository may be served stale by a replica until it catches up.
    pub(super) async fn wrote(&self, repository: &RepositoryName) {
        if self.replicas.is_none() {
            return;
        }
        let recorded = sqlx::query(&format!(
            "INSERT INTO repository_lsn (repository, lsn) VALUES ($1, {LSN}) \
             ON CONFLICT (repository) DO UPDATE SET lsn = GREATEST(repository_lsn.lsn, EXCLUDED.lsn)"
        ))
        .bind(repository.as_str())
        .execute(&self.pool)
        .await;
        if let Err(e) = recorded {
            tracing::warn!(%repository, error = %e, "recording a write's position for the replicas");
        }
    }

    /// Runs a read on a replica that has seen every write to `repository` (any healthy one
    /// for `None`), or on the primary; a replica that fails is taken out and the read is run
    /// again on the primary.
    pub(super) async fn read<T, F, Fut>(
        &self,
        repository: Option<&RepositoryName>,
        query: F,
    ) -> Result<T>
    where
        F: Fn(Pool<Any>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(replicas) = self.replicas.as_ref().filter(|r| r.any_healthy()) else {
            if let Some(replicas) = &self.replicas {
                replicas.primary_counted();
            }
            return query(self.pool.clone()).await;
        };
        let needed = match repository {
            None => 0,
            Some(repository) => {
                let row = sqlx::query("SELECT lsn FROM repository_lsn WHERE repository = $1")
                    .bind(repository.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
                match row {
                    Some(row) => u64::try_from(row.try_get::<i64, _>("lsn").map_err(db_error)?)
                        .unwrap_or(u64::MAX),
                    None => 0,
                }
            }
        };
        if let Some(replica) = replicas.pick(needed) {
            match tokio::time::timeout(replicas.options.read_timeout, query(replica.pool.clone()))
                .await
            {
                Ok(Ok(value)) => {
                    replica.counted();
                    return Ok(value);
                }
                Ok(Err(Error::Backend { source })) => {
                    lock(&replica.state).healthy = false;
                    tracing::warn!(replica = %replica.name, error = %source, "database replica failed a read: taken out, read from the primary");
                }
                // Not found, invalid…: the replica's answer stands.
                Ok(Err(e)) => {
                    replica.counted();
                    return Err(e);
                }
                Err(_) => {
                    lock(&replica.state).healthy = false;
                    tracing::warn!(replica = %replica.name, "database replica too slow for a read: taken out, read from the primary");
                }
            }
        }
        replicas.primary_counted();
        query(self.pool.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::server_name;

    #[test]
    fn replica_names_carry_no_credentials() {
        assert_eq!(
            server_name("postgres://user:secret@db-replica:5433/registry?sslmode=require"),
            "db-replica:5433"
        );
        assert_eq!(
            server_name("postgres://127.0.0.1:5433/test"),
            "127.0.0.1:5433"
        );
    }
}
