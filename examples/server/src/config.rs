//! The server's configuration: a TOML file, environment variables and flags, in rising priority.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use registry_core::{
    CleanupPolicy, Grant, Limits, ManifestLimits, NamePattern, PackageLimits, RepositoryConfig,
    TagRule,
};
use registry_http::auth::{Auth, StaticUser, StaticUsers, TokenIssuer};
use registry_http::external_url::ExternalUrl;
use registry_http::throttle::ThrottleSettings;
use serde::Deserialize;

/// Flags of `registry serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for blobs and the SQLite database.
    #[arg(long, env = "REGISTRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Metadata database URL (`postgres://…` or `sqlite://…`); SQLite in the data directory by
    /// default.
    #[arg(long, env = "REGISTRY_DATABASE_URL")]
    database_url: Option<String>,
    /// A TOML configuration file.
    #[arg(long, env = "REGISTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Apply only the pre-deployment schema migrations at start, as a rolling upgrade needs
    /// while instances of the previous version still run; `registry migrate` applies the
    /// post-deployment ones once none is left.
    #[arg(long, env = "REGISTRY_SKIP_POST_DEPLOYMENT_MIGRATIONS")]
    skip_post_deployment_migrations: bool,
}

/// The configuration file's contents. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    allow_anonymous_on_network: Option<bool>,
    /// Repository patterns that accept sparse manifests (absent children or layers).
    #[serde(default)]
    sparse_manifests: Vec<NamePattern>,
    /// The URL clients reach the registry at, for every absolute URL it hands out.
    external_url: Option<String>,
    /// Whether a publish to an unknown package repository creates it (true by default).
    create_repositories_on_publish: Option<bool>,
    /// The secret signing the short-lived Terraform module archive URLs (at least 32
    /// characters); instances serving one registry need the same. Random per process by default.
    download_url_secret: Option<String>,
    /// How long manifest and blob-link reads are served from memory, in milliseconds (1000 by
    /// default; 0 reads the database every time): how stale a read may be after a change made
    /// by another instance or the CLI.
    read_cache_ttl_ms: Option<u64>,
    /// `[blob_store]`: blobs in an object store instead of `<data_dir>/blobs`.
    blob_store: Option<BlobStoreConfig>,
    /// PostgreSQL streaming replicas of `database_url` that image reads may go to.
    #[serde(default)]
    database_replicas: Vec<String>,
    /// A replica further behind the primary than this many bytes of WAL is not read from
    /// (16 MiB by default).
    replica_max_lag_bytes: Option<u64>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    server: FileServer,
    auth: Option<FileAuth>,
    /// `[tls]`: serve HTTPS with this certificate and key.
    tls: Option<FileTls>,
    #[serde(default)]
    gc: FileGc,
    #[serde(default)]
    background_migrations: FileBackgroundMigrations,
    #[serde(default)]
    cleanup: FileCleanup,
    /// `[[tag_rules]]`: immutable and protected tags.
    #[serde(default)]
    tag_rules: Vec<TagRule>,
    /// `[[cleanup_policies]]`: which old tags cleanup runs delete.
    #[serde(default)]
    cleanup_policies: Vec<CleanupPolicy>,
    /// `[[package_repositories]]`: package repositories created and configured at start.
    #[serde(default)]
    package_repositories: Vec<RepositoryConfig>,
    /// `[firewall]`: advisory data for the dependency firewall and npm audit.
    #[serde(default)]
    firewall: FileFirewall,
    /// `[[firewall_rules]]`: the dependency firewall's rules.
    #[serde(default)]
    firewall_rules: Vec<registry_core::FirewallRule>,
    /// `[[pull_through]]`: OCI pull-through caches (`prefix`, `upstream`).
    #[serde(default)]
    pull_through: Vec<registry_core::PullThrough>,
    /// `[[oci_virtual]]`: virtual image registries (`prefix`, `members`).
    #[serde(default)]
    oci_virtual: Vec<registry_core::OciVirtual>,
}

/// `[blob_store]`: blobs in an object store, which every instance of one registry shares
/// (with one PostgreSQL `database_url`, where upload sessions are kept).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlobStoreConfig {
    /// `s3://bucket[/prefix]`, `gs://…`, `az://…`, `file:///dir` or `memory://`.
    pub(crate) url: String,
    /// The driver's own settings (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_allow_http`, …); its environment variables are read too.
    #[serde(default)]
    pub(crate) options: std::collections::BTreeMap<String, String>,
    /// Size of each part of a multipart upload, in MiB (8 by default, at least 5).
    pub(crate) part_size_mib: Option<usize>,
    /// Answer blob GETs with a presigned URL valid this long (S3, GCS, Azure; at most 604,800,
    /// a week, what S3 accepts); 0, the default, serves blobs through the registry.
    #[serde(default)]
    pub(crate) redirect_seconds: u64,
}

/// `[firewall]`: where advisories are read from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFirewall {
    /// OSV JSON files, or directories of them (`*.json`, read at start).
    #[serde(default)]
    advisories: Vec<PathBuf>,
}

/// `[tls]`: HTTPS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    /// The PEM certificate chain.
    certificate: PathBuf,
    /// The PEM private key.
    key: PathBuf,
}

/// `[server]`: bounds on connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    /// Seconds a request's headers may take to arrive (30 by default).
    header_read_timeout_seconds: Option<u64>,
    /// Seconds a connection may go without a byte moving either way (120 by default).
    idle_timeout_seconds: Option<u64>,
    /// Seconds a TLS handshake may take (10 by default).
    tls_handshake_timeout_seconds: Option<u64>,
    /// Connections served at once (1,024 by default).
    max_connections: Option<usize>,
    /// Bytes of a request's head buffered at most (65,536 by default).
    max_header_bytes: Option<usize>,
}

/// `[cleanup]`: running the cleanup policies inside the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCleanup {
    /// Run the stored cleanup policies on a cadence (true by default).
    enabled: Option<bool>,
    /// Time between runs, the first one this long after the start (86,400 s by default).
    interval_seconds: Option<u64>,
}

/// `[background_migrations]`: batched data migrations run inside the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackgroundMigrations {
    /// Run them in this server (true by default; several instances may all run them).
    enabled: Option<bool>,
    /// Rows per batch (1,000 by default).
    batch_size: Option<u64>,
    /// Pause after each batch, in milliseconds (100 by default): how hard they press on the
    /// database.
    pause_ms: Option<u64>,
}

/// `[gc]`: online garbage collection inside the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGc {
    /// Run the collector in this server (true by default; several instances may all run it).
    enabled: Option<bool>,
    /// How long after a change its review becomes due (86,400 s by default).
    review_delay_seconds: Option<u64>,
    /// Pause between passes when nothing is due (10 s by default).
    idle_seconds: Option<u64>,
    /// Upload sessions older than this are purged (86,400 s by default).
    abandoned_upload_seconds: Option<u64>,
}

/// The garbage-collection settings in force.
#[derive(Debug)]
pub(crate) struct GcSettings {
    pub(crate) enabled: bool,
    pub(crate) review_delay: Duration,
    pub(crate) collector: registry_gc::CollectorConfig,
}

/// `[auth]`: who may do what.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    /// `basic` or `token`.
    mode: AuthModeName,
    /// Basic: the realm in challenges. Token: the token endpoint's absolute URL (derived from
    /// the request's Host when absent).
    realm: Option<String>,
    /// Token: the service name clients ask tokens for.
    service: Option<String>,
    /// Token: the HMAC secret tokens are signed with (at least 32 bytes; share it between
    /// instances).
    token_secret: Option<String>,
    /// Token: lifetime in seconds (300 by default).
    token_ttl_seconds: Option<u64>,
    /// Grants for callers without credentials; none by default.
    #[serde(default)]
    anonymous: Vec<Grant>,
    /// Users by name.
    #[serde(default)]
    users: HashMap<String, StaticUser>,
    /// Wrong passwords a user may give before each further attempt is delayed (5 by default).
    failures_per_user: Option<u32>,
    /// Failed authentications a client address may have before each further attempt is
    /// delayed (20 by default).
    failures_per_address: Option<u32>,
    /// The first delay after the free failures, in seconds; each further failure doubles it,
    /// up to 300 (1 by default).
    failure_delay_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum AuthModeName {
    Basic,
    Token,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_manifest_size: Option<usize>,
    max_blob_size: Option<u64>,
    max_page_size: Option<usize>,
    max_rules: Option<usize>,
    max_tags_per_push: Option<usize>,
    max_package_file_size: Option<u64>,
    max_buffered_bytes: Option<u64>,
}

/// The configuration in force.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) blob_store: Option<BlobStoreConfig>,
    pub(crate) database_replicas: Vec<String>,
    pub(crate) replica_options: registry_storage::sql::ReplicaOptions,
    pub(crate) allow_anonymous_on_network: bool,
    pub(crate) sparse_manifests: Vec<NamePattern>,
    external_url: Option<String>,
    pub(crate) create_repositories_on_publish: bool,
    download_url_secret: Option<String>,
    pub(crate) read_cache: registry_core::CacheSettings,
    limits: FileLimits,
    server: FileServer,
    auth: Option<FileAuth>,
    tls: Option<FileTls>,
    gc: FileGc,
    background_migrations: FileBackgroundMigrations,
    /// Which pending schema migrations opening the database applies.
    pub(crate) migrations: registry_storage::sql::Migrations,
    cleanup: FileCleanup,
    pub(crate) tag_rules: Vec<TagRule>,
    pub(crate) cleanup_policies: Vec<CleanupPolicy>,
    pub(crate) package_repositories: Vec<RepositoryConfig>,
    firewall: FileFirewall,
    pub(crate) firewall_rules: Vec<registry_core::FirewallRule>,
    pub(crate) pull_through: Vec<registry_core::PullThrough>,
    pub(crate) oci_virtual: Vec<registry_core::OciVirtual>,
}

impl Config {
    pub(crate) fn load(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                toml::from_str::<File>(&text).map_err(|e| format!("in {}: {e}", path.display()))?
            }
            None => File::default(),
        };
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            database_url: args.database_url.clone().or(file.database_url),
            blob_store: file.blob_store,
            database_replicas: file.database_replicas,
            replica_options: registry_storage::sql::ReplicaOptions {
                max_lag_bytes: file
                    .replica_max_lag_bytes
                    .unwrap_or(registry_storage::sql::ReplicaOptions::default().max_lag_bytes),
                ..registry_storage::sql::ReplicaOptions::default()
            },
            allow_anonymous_on_network: file.allow_anonymous_on_network.unwrap_or(false),
            sparse_manifests: file.sparse_manifests,
            external_url: file.external_url,
            create_repositories_on_publish: file.create_repositories_on_publish.unwrap_or(true),
            download_url_secret: file.download_url_secret,
            read_cache: registry_core::CacheSettings {
                ttl: file.read_cache_ttl_ms.map_or(
                    registry_core::CacheSettings::default().ttl,
                    Duration::from_millis,
                ),
                ..registry_core::CacheSettings::default()
            },
            limits: file.limits,
            server: file.server,
            auth: file.auth,
            tls: file.tls,
            gc: file.gc,
            background_migrations: file.background_migrations,
            migrations: if args.skip_post_deployment_migrations {
                registry_storage::sql::Migrations::PreDeployment
            } else {
                registry_storage::sql::Migrations::All
            },
            cleanup: file.cleanup,
            tag_rules: file.tag_rules,
            cleanup_policies: file.cleanup_policies,
            package_repositories: file.package_repositories,
            firewall: file.firewall,
            firewall_rules: file.firewall_rules,
            pull_through: file.pull_through,
            oci_virtual: file.oci_virtual,
        })
    }

    /// The advisories of `[firewall] advisories`: each file, and each `*.json` file of each
    /// directory, read as OSV JSON.
    pub(crate) fn advisories(&self) -> Result<registry_core::firewall::Advisories, String> {
        let mut advisories = registry_core::firewall::Advisories::new();
        let mut add = |path: &std::path::Path| {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("[firewall] reading {}: {e}", path.display()))?;
            advisories
                .add_json(&bytes, &registry_formats::package_key)
                .map_err(|e| format!("[firewall] {}: {e}", path.display()))
        };
        for path in &self.firewall.advisories {
            if path.is_dir() {
                let entries = std::fs::read_dir(path)
                    .map_err(|e| format!("[firewall] reading {}: {e}", path.display()))?;
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                files.sort();
                for file in files {
                    add(&file)?;
                }
            } else {
                add(path)?;
            }
        }
        Ok(advisories)
    }

    /// The TLS configuration, when `[tls]` is given.
    pub(crate) fn tls(&self) -> Result<Option<Arc<registry_http::serve::TlsServerConfig>>, String> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("[tls] reading {}: {e}", path.display()))
        };
        registry_http::serve::tls_config(&read(&tls.certificate)?, &read(&tls.key)?)
            .map(Some)
            .map_err(|e| format!("[tls] {e}"))
    }

    /// The signer of Terraform module archive URLs, when a secret is configured.
    pub(crate) fn download_signer(
        &self,
    ) -> Result<Option<registry_http::terraform::DownloadSigner>, String> {
        match &self.download_url_secret {
            None => Ok(None),
            Some(secret) if secret.len() < 32 => {
                Err("download_url_secret must be at least 32 characters".into())
            }
            Some(secret) => Ok(Some(registry_http::terraform::DownloadSigner::new(
                secret.as_bytes(),
                Duration::from_secs(300),
            ))),
        }
    }

    /// How often the server runs the cleanup policies; `None` when it does not.
    pub(crate) fn cleanup_interval(&self) -> Result<Option<Duration>, String> {
        if !self.cleanup.enabled.unwrap_or(true) {
            return Ok(None);
        }
        match self.cleanup.interval_seconds {
            Some(0) => Err("[cleanup] interval_seconds must be at least 1".into()),
            Some(seconds) => Ok(Some(Duration::from_secs(seconds))),
            None => Ok(Some(Duration::from_secs(86_400))),
        }
    }

    /// Garbage-collection settings.
    /// The background migrations' pace, or `None` when this server does not run them.
    pub(crate) fn background_migrations(&self) -> Option<registry_core::BackgroundSettings> {
        let file = &self.background_migrations;
        file.enabled.unwrap_or(true).then(|| {
            let default = registry_core::BackgroundSettings::default();
            registry_core::BackgroundSettings {
                batch_size: file.batch_size.unwrap_or(default.batch_size),
                pause: file.pause_ms.map_or(default.pause, Duration::from_millis),
                ..default
            }
        })
    }

    pub(crate) fn gc(&self) -> GcSettings {
        let mut collector = registry_gc::CollectorConfig::default();
        if let Some(idle) = self.gc.idle_seconds {
            collector.idle = Duration::from_secs(idle);
        }
        if let Some(age) = self.gc.abandoned_upload_seconds {
            collector.abandoned_upload_age = Duration::from_secs(age);
        }
        GcSettings {
            enabled: self.gc.enabled.unwrap_or(true),
            review_delay: self.gc.review_delay_seconds.map_or(
                registry_core::metadata::DEFAULT_REVIEW_DELAY,
                Duration::from_secs,
            ),
            collector,
        }
    }

    /// The authentication configured, if any.
    pub(crate) fn auth(&self) -> Result<Option<Auth>, String> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let anonymous = (!auth.anonymous.is_empty()).then(|| auth.anonymous.clone());
        let mut per_user = self.throttle(ThrottleSettings::default());
        if let Some(free) = auth.failures_per_user {
            per_user.free_failures = free;
        }
        let users = Arc::new(
            StaticUsers::new(auth.users.clone(), anonymous)
                .map_err(|e| format!("[auth] {e}"))?
                .with_throttle(per_user),
        );
        Ok(Some(match auth.mode {
            AuthModeName::Basic => Auth::basic(
                auth.realm.clone().unwrap_or_else(|| "registry".to_owned()),
                users,
            ),
            AuthModeName::Token => {
                let secret = auth
                    .token_secret
                    .as_deref()
                    .filter(|s| s.len() >= 32)
                    .ok_or("[auth] token mode needs token_secret of at least 32 bytes")?;
                let mut issuer = TokenIssuer::new(
                    auth.service
                        .clone()
                        .unwrap_or_else(|| "registry".to_owned()),
                    secret.as_bytes(),
                    Duration::from_secs(auth.token_ttl_seconds.unwrap_or(300)),
                );
                if let Some(realm) = &auth.realm {
                    issuer = issuer.with_realm(realm.clone());
                }
                Auth::token(issuer, users)
            }
        }))
    }

    /// `settings` with the configured first delay.
    fn throttle(&self, mut settings: ThrottleSettings) -> ThrottleSettings {
        if let Some(seconds) = self.auth.as_ref().and_then(|a| a.failure_delay_seconds) {
            settings.base_delay = Duration::from_secs(seconds);
            settings.max_delay = settings.max_delay.max(settings.base_delay);
        }
        settings
    }

    /// The external URL, checked.
    pub(crate) fn external_url(&self) -> Result<Option<ExternalUrl>, String> {
        self.external_url
            .as_deref()
            .map(ExternalUrl::parse)
            .transpose()
    }

    /// How failed authentications are slowed down per client address.
    pub(crate) fn address_throttle(&self) -> ThrottleSettings {
        let mut settings = self.throttle(ThrottleSettings::per_address());
        if let Some(free) = self.auth.as_ref().and_then(|a| a.failures_per_address) {
            settings.free_failures = free;
        }
        settings
    }

    pub(crate) fn package_limits(&self) -> PackageLimits {
        let default = PackageLimits::default();
        PackageLimits {
            max_file_size: self
                .limits
                .max_package_file_size
                .unwrap_or(default.max_file_size),
            max_buffered_bytes: self
                .limits
                .max_buffered_bytes
                .unwrap_or(default.max_buffered_bytes),
        }
    }

    /// Bounds on connections (`[server]`).
    pub(crate) fn server(&self) -> Result<registry_http::serve::ServerSettings, String> {
        let default = registry_http::serve::ServerSettings::default();
        let seconds = |value: Option<u64>, name: &str, default: Duration| match value {
            Some(0) => Err(format!("[server] {name} must be at least 1")),
            Some(seconds) => Ok(Duration::from_secs(seconds)),
            None => Ok(default),
        };
        Ok(registry_http::serve::ServerSettings {
            header_read_timeout: seconds(
                self.server.header_read_timeout_seconds,
                "header_read_timeout_seconds",
                default.header_read_timeout,
            )?,
            idle_timeout: seconds(
                self.server.idle_timeout_seconds,
                "idle_timeout_seconds",
                default.idle_timeout,
            )?,
            max_connections: match self.server.max_connections {
                Some(0) => return Err("[server] max_connections must be at least 1".into()),
                Some(n) => n,
                None => default.max_connections,
            },
            max_header_bytes: self
                .server
                .max_header_bytes
                .unwrap_or(default.max_header_bytes),
            tls_handshake_timeout: seconds(
                self.server.tls_handshake_timeout_seconds,
                "tls_handshake_timeout_seconds",
                default.tls_handshake_timeout,
            )?,
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        let default = Limits::default();
        Limits {
            manifest: ManifestLimits {
                max_size: self
                    .limits
                    .max_manifest_size
                    .unwrap_or(default.manifest.max_size),
            },
            max_blob_size: self.limits.max_blob_size.unwrap_or(default.max_blob_size),
            max_page_size: self.limits.max_page_size.unwrap_or(default.max_page_size),
            max_rules: self.limits.max_rules.unwrap_or(default.max_rules),
            max_tags_per_push: self
                .limits
                .max_tags_per_push
                .unwrap_or(default.max_tags_per_push),
            max_buffered_bytes: self
                .limits
                .max_buffered_bytes
                .unwrap_or(default.max_buffered_bytes),
        }
    }
}
