//! The registry server an operator runs.
//!
//! ```text
//! registry serve --listen 127.0.0.1:5000 --data-dir ./data
//! registry serve --config registry.toml
//! ```
//!
//! By default it keeps blobs under `<data-dir>/blobs` and metadata in `<data-dir>/registry.db`
//! (SQLite). A configuration file (TOML) can point the metadata at PostgreSQL and set limits;
//! environment variables (`REGISTRY_LISTEN`, `REGISTRY_DATA_DIR`, `REGISTRY_DATABASE_URL`)
//! override it, and command-line flags override both.

mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use registry_core::{BlobStore, MetadataStore, OciRegistry};
use registry_storage::fs::FsBlobStore;
use registry_storage::object::{Driver, ObjectBlobStore, ObjectOptions};
use registry_storage::sql::SqlMetadataStore;

use crate::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(name = "registry", version, about = "An OCI registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the OCI distribution API.
    Serve(ServeArgs),
    /// Reads a password on standard input and prints its argon2 hash for `[auth.users.*]`.
    HashPassword,
    /// Sweeps the whole store once (mark-and-sweep); safe while servers run.
    Gc(GcArgs),
    /// Runs the cleanup policies once (the configuration's and the stored ones).
    Cleanup(CleanupArgs),
    /// Brings the metadata database's schema up to date (serve does it too) and prints its
    /// version.
    Migrate(ServeArgs),
    /// Imports a distribution registry's filesystem storage (repositories, tags, manifests,
    /// layer links, blobs). Run it once while the old registry serves (the bytes), then again
    /// with it stopped (what changed since, and the tags): each run is idempotent.
    Import(ImportArgs),
    /// Batched background migrations: their progress, pause, resume, or run them here.
    BackgroundMigrations(BackgroundArgs),
}

#[derive(clap::Args)]
struct BackgroundArgs {
    #[command(flatten)]
    store: ServeArgs,
    #[command(subcommand)]
    action: BackgroundAction,
}

#[derive(clap::Subcommand)]
enum BackgroundAction {
    /// Lists them with their progress.
    Status,
    /// Stops one from running batches (in every instance).
    Pause {
        /// The migration.
        name: String,
    },
    /// Lets a paused or failed one run again.
    Resume {
        /// The migration.
        name: String,
    },
    /// Runs the active ones to the end here, in the foreground.
    Run,
}

#[derive(clap::Args)]
struct ImportArgs {
    #[command(flatten)]
    store: ServeArgs,
    /// The distribution registry's `rootdirectory` (or its `docker/registry/v2`).
    #[arg(long)]
    from: std::path::PathBuf,
}

#[derive(clap::Args)]
struct CleanupArgs {
    #[command(flatten)]
    store: ServeArgs,
    /// List the tags that would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    store: ServeArgs,
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also delete untagged manifests that no index lists and that refer to nothing kept.
    #[arg(long)]
    delete_untagged: bool,
    /// Keep anything written less than this long ago (e.g. 30s, 15m, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = registry_core::rules::parse_duration)]
    grace: Duration,
    /// Also read every kept blob and check it hashes to its digest.
    #[arg(long)]
    verify: bool,
    /// Instead of sweeping, process the review queue once, as the server's collector does
    /// (every entry due now, and upload sessions past `abandoned_upload_seconds`).
    #[arg(long, conflicts_with_all = ["dry_run", "delete_untagged", "verify"])]
    queue: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        // Logs go to standard error; standard output carries what commands print.
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REGISTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::HashPassword => hash_password(),
        Command::Gc(args) => gc(args).await,
        Command::Cleanup(args) => cleanup(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Import(args) => import(args).await,
        Command::BackgroundMigrations(args) => background_migrations(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("registry: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn hash_password() -> Result<(), String> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| format!("reading the password: {e}"))?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let hash = registry_http::auth::hash_password(password).map_err(|e| e.to_string())?;
    println!("{hash}");
    Ok(())
}

type Stores = (Arc<dyn BlobStore>, Arc<dyn MetadataStore>);

/// Opens (and migrates) the configured metadata database: `database_url`, or SQLite in the
/// data directory, which is created if needed; with its read replicas, if any.
async fn open_metadata(config: &Config) -> Result<SqlMetadataStore, String> {
    let store = match &config.database_url {
        Some(url) => SqlMetadataStore::connect_with(url, config.migrations).await,
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
            SqlMetadataStore::sqlite_with(&config.data_dir.join("registry.db"), config.migrations)
                .await
        }
    }
    .map_err(|e| format!("opening the metadata database: {e}"))?;
    store
        .with_replicas(&config.database_replicas, config.replica_options.clone())
        .await
        .map_err(|e| format!("database_replicas: {e}"))
}

/// Opens the configured blob and metadata stores.
async fn open_stores(config: &Config, review_delay: Duration) -> Result<Stores, String> {
    let metadata = Arc::new(open_metadata(config).await?.with_review_delay(review_delay));
    let blobs: Arc<dyn BlobStore> = match &config.blob_store {
        None => Arc::new(
            FsBlobStore::open(config.data_dir.join("blobs"))
                .await
                .map_err(|e| format!("opening blob storage: {e}"))?,
        ),
        Some(settings) => {
            if settings.redirect_seconds > 604_800 {
                return Err(format!(
                    "[blob_store] redirect_seconds = {}: presigned URLs live a week at most \
                     (604800)",
                    settings.redirect_seconds
                ));
            }
            let driver = Driver::from_url(&settings.url, &settings.options)
                .map_err(|e| format!("[blob_store] {e}"))?;
            let options = ObjectOptions {
                part_size: settings
                    .part_size_mib
                    .map_or(ObjectOptions::default().part_size, |mib| {
                        mib.saturating_mul(1024 * 1024)
                    }),
                ..ObjectOptions::default()
            };
            let store = ObjectBlobStore::from_driver(driver, Arc::clone(&metadata) as _, options)
                .redirect_for(Duration::from_secs(settings.redirect_seconds));
            // Computed-digest writes a killed instance left in staging/; younger ones may be
            // another instance's, still being written.
            store
                .purge_staging(Duration::from_secs(60 * 60))
                .await
                .map_err(|e| format!("[blob_store] {}: {e}", settings.url))?;
            Arc::new(store)
        }
    };
    Ok((blobs, metadata))
}

async fn gc(args: GcArgs) -> Result<(), String> {
    use std::io::{IsTerminal, Write};
    let mut config = Config::load(&args.store)?;
    // Post-deployment migrations are `registry migrate`'s (or a server's) to apply.
    config.migrations = registry_storage::sql::Migrations::PreDeployment;
    let settings = config.gc();
    let (blobs, metadata) = open_stores(&config, settings.review_delay).await?;
    if args.queue {
        let collector = registry_gc::Collector::new(blobs, metadata, settings.collector);
        let report = collector.run_once().await;
        println!(
            "reviewed: {}, manifests deleted: {}, blobs deleted: {} ({} bytes), postponed: {}, \
             abandoned uploads purged: {}",
            report.reviewed,
            report.manifests_deleted,
            report.blobs_deleted,
            report.bytes_freed,
            report.postponed,
            report.uploads_purged
        );
        return Ok(());
    }
    let options = registry_gc::sweep::SweepOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: args.grace,
        verify: args.verify,
    };
    let terminal = std::io::stderr().is_terminal();
    let report = registry_gc::sweep::sweep(&*blobs, &*metadata, &options, |progress| {
        if terminal {
            let line = match progress {
                registry_gc::sweep::Progress::Repository { done, name } => {
                    format!("marking: {done} repositories ({name})")
                }
                registry_gc::sweep::Progress::Blobs { done } => format!("sweeping: {done} blobs"),
            };
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        }
    })
    .await
    .map_err(|e| format!("sweeping: {e}"))?;
    if terminal {
        eprintln!();
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    println!("repositories: {}", report.repositories);
    println!(
        "manifests: {} seen, {verb} {}",
        report.manifests, report.manifests_deleted
    );
    println!(
        "blobs: {} seen, {verb} {} ({} bytes)",
        report.blobs, report.blobs_deleted, report.bytes_freed
    );
    if report.blobs_missing > 0 {
        println!(
            "blob records without bytes in storage: {} (records removed)",
            report.blobs_missing
        );
    }
    for (digest, damage) in &report.damaged {
        println!("damaged: {digest}: {damage}");
    }
    if report.unrecorded_files > 0 {
        println!(
            "files in blob storage without a record: {} (left in place)",
            report.unrecorded_files
        );
    }
    Ok(())
}

/// Opens the stores and makes the configuration's tag rules and cleanup policies the stored
/// ones of source `config`.
async fn open_registry(config: &Config, review_delay: Duration) -> Result<OciRegistry, String> {
    let (blobs, metadata) = open_stores(config, review_delay).await?;
    let registry = OciRegistry::new(blobs, metadata)
        .with_limits(config.limits())
        .with_sparse_manifests(config.sparse_manifests.clone())
        .with_cache(config.read_cache);
    registry
        .apply_configured_policies(&config.tag_rules, &config.cleanup_policies)
        .await
        .map_err(|e| format!("applying [[tag_rules]] and [[cleanup_policies]]: {e}"))?;
    Ok(registry)
}

async fn cleanup(args: CleanupArgs) -> Result<(), String> {
    let mut config = Config::load(&args.store)?;
    // Post-deployment migrations are `registry migrate`'s (or a server's) to apply.
    config.migrations = registry_storage::sql::Migrations::PreDeployment;
    let registry = open_registry(&config, config.gc().review_delay).await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let now = registry_core::Timestamp::now().0;
    let report = registry_gc::cleanup::run(&registry, args.dry_run, |d| {
        println!(
            "{verb} {}:{} ({}, published {} ago, policy {})",
            d.repository,
            d.tag,
            d.digest,
            approximate_age(now.saturating_sub(d.published_at.0)),
            d.policy
        );
    })
    .await
    .map_err(|e| format!("cleaning up: {e}"))?;
    println!(
        "policies: {}, repositories: {}, tags: {} seen, {verb} {}",
        report.policies, report.repositories, report.tags_seen, report.deleted
    );
    if report.skipped > 0 {
        println!(
            "kept because they changed during the run: {}",
            report.skipped
        );
    }
    Ok(())
}

async fn import(args: ImportArgs) -> Result<(), String> {
    use std::io::{IsTerminal, Write};
    let mut config = Config::load(&args.store)?;
    // Post-deployment migrations are `registry migrate`'s (or a server's) to apply.
    config.migrations = registry_storage::sql::Migrations::PreDeployment;
    let layout = registry_storage::import::DistributionLayout::open(&args.from)
        .map_err(|e| e.to_string())?;
    let registry = open_registry(&config, config.gc().review_delay).await?;
    let terminal = std::io::stderr().is_terminal();
    let report = registry_storage::import::import(&layout, &registry, |name| {
        if terminal {
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "\r\x1b[2Kimporting {name}");
            let _ = stderr.flush();
        }
    })
    .await
    .map_err(|e| format!("importing: {e}"))?;
    if terminal {
        eprintln!();
    }
    println!("repositories: {}", report.repositories);
    println!(
        "blobs: {} copied ({} bytes), {} already present",
        report.blobs_copied, report.bytes_copied, report.blobs_present
    );
    println!(
        "manifests: {} imported, {} already present",
        report.manifests_imported, report.manifests_present
    );
    println!(
        "tags: {} set, {} deleted",
        report.tags_set, report.tags_deleted
    );
    for problem in &report.problems {
        println!("not imported: {problem}");
    }
    Ok(())
}

async fn migrate(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(&args)?;
    let store = open_metadata(&config).await?;
    let version = store
        .schema_version()
        .await
        .map_err(|e| format!("reading the schema version: {e}"))?;
    println!("metadata database schema is at migration {version}");
    let pending = store
        .pending_post_deployment()
        .await
        .map_err(|e| format!("reading the migrations: {e}"))?;
    for (version, description) in &pending {
        println!("post-deployment migration pending: {version} {description}");
    }
    print_background_migrations(&store).await
}

/// One line per background migration: name, status, progress, error.
async fn print_background_migrations(
    store: &dyn registry_core::BackgroundMigrations,
) -> Result<(), String> {
    let migrations = store
        .background_migrations()
        .await
        .map_err(|e| format!("reading the background migrations: {e}"))?;
    for m in migrations {
        let total = m.total.map_or_else(|| "?".to_owned(), |t| t.to_string());
        // Nothing after the progress when the migration has no error.
        let error = m.error.map(|e| format!(" ({e})")).unwrap_or_default();
        println!(
            "background migration {}: {}, {}/{total}{error}",
            m.name,
            m.status.as_str(),
            m.done
        );
    }
    Ok(())
}

async fn background_migrations(args: BackgroundArgs) -> Result<(), String> {
    use registry_core::BackgroundMigrations;
    let mut config = Config::load(&args.store)?;
    // Post-deployment migrations are `registry migrate`'s (or a server's) to apply.
    config.migrations = registry_storage::sql::Migrations::PreDeployment;
    let store = open_metadata(&config).await?;
    match args.action {
        BackgroundAction::Status => {}
        BackgroundAction::Pause { name } => {
            store
                .pause_background_migration(&name, true)
                .await
                .map_err(|e| format!("pausing {name}: {e}"))?;
        }
        BackgroundAction::Resume { name } => {
            store
                .pause_background_migration(&name, false)
                .await
                .map_err(|e| format!("resuming {name}: {e}"))?;
        }
        BackgroundAction::Run => {
            // `None` means this configuration's servers do not run them; asked to here, the
            // command runs them at the default pace.
            let settings = config.background_migrations().unwrap_or_default();
            while let Some(run) = store
                .run_background_batch(settings.batch_size)
                .await
                .map_err(|e| format!("running a batch: {e}"))?
            {
                if run.finished {
                    println!("{} finished", run.name);
                }
                tokio::time::sleep(settings.pause).await;
            }
        }
    }
    print_background_migrations(&store).await
}

/// An age in milliseconds, rounded down to its largest unit (`3d`, `5h`, `12m`, `40s`).
fn approximate_age(ms: i64) -> String {
    let seconds = ms / 1000;
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(&args)?;
    let listen: SocketAddr = config.listen;
    let auth = config.auth()?;
    if auth.is_none() && !listen.ip().is_loopback() && !config.allow_anonymous_on_network {
        return Err(format!(
            "refusing to serve without authentication on {listen}: it is not a loopback address. \
             Configure [auth], listen on 127.0.0.1, or set allow_anonymous_on_network = true if \
             the registry must be open to the network without authentication"
        ));
    }
    let gc = config.gc();
    let cleanup_interval = config.cleanup_interval()?;
    let server = config.server()?;
    let registry = open_registry(&config, gc.review_delay).await?;
    let (blobs, metadata) = (
        Arc::clone(registry.blob_store()),
        Arc::clone(registry.metadata()),
    );
    // Online garbage collection runs beside the server; several instances may all run it.
    let (stop_collector, collector_stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = gc.enabled.then(|| {
        let collector = registry_gc::Collector::new(blobs, metadata, gc.collector);
        tokio::spawn(async move {
            collector
                .run(async {
                    let _ = collector_stopped.await;
                })
                .await;
        })
    });
    // Background migrations run beside the server, a batch at a time; several instances may
    // all run them (each batch is taken by one).
    let migrations = config.background_migrations().map(|settings| {
        let store: Arc<dyn registry_core::BackgroundMigrations> =
            Arc::clone(registry.metadata()) as _;
        tokio::spawn(registry_core::background::run_background_migrations(
            store, settings,
        ))
    });
    // Cleanup policies run on a cadence; several instances may all run them.
    let (stop_cleanup, cleanup_stopped) = tokio::sync::oneshot::channel::<()>();
    let cleanup = cleanup_interval.map(|interval| {
        let registry = registry.clone();
        tokio::spawn(registry_gc::cleanup::run_every(registry, interval, async {
            let _ = cleanup_stopped.await;
        }))
    });
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    let packages = registry_core::Packages::new(
        Arc::clone(registry.blob_store()),
        Arc::clone(registry.metadata()),
    )
    .with_limits(config.package_limits())
    .with_create_on_publish(config.create_repositories_on_publish)
    .with_advisories(config.advisories()?);
    for rule in &config.firewall_rules {
        rule.check_package_urls(&registry_formats::rules)
            .map_err(|e| format!("[[firewall_rules]] {}: {e}", rule.name))?;
    }
    packages
        .apply_configured_firewall_rules(&config.firewall_rules)
        .await
        .map_err(|e| format!("applying [[firewall_rules]]: {e}"))?;
    let external = config.external_url()?;
    // Virtual repositories last: their members must exist first.
    let mut configured_repositories: Vec<_> = config.package_repositories.iter().collect();
    configured_repositories.sort_by_key(|r| r.kind == registry_core::RepositoryKind::Virtual);
    for configured in configured_repositories {
        let name = configured
            .name
            .as_deref()
            .ok_or("[[package_repositories]] entries need a name")?;
        let settings = configured.settings();
        if let Some(upstream) = &settings.upstream {
            let own: Vec<&str> = external.iter().map(|u| u.as_str()).collect();
            if registry_http::upstream::points_at(upstream, &own, Some(listen.port())) {
                return Err(format!(
                    "[[package_repositories]] {name}: upstream {} points at this registry \
                     itself",
                    upstream.url
                ));
            }
        }
        packages
            .configure_repository(
                name,
                registry_formats::rules(configured.format).ok_or_else(|| {
                    format!(
                        "[[package_repositories]] {name}: {} repositories are not served by \
                         this registry",
                        configured.format
                    )
                })?,
                configured.kind,
                &settings,
            )
            .await
            .map_err(|e| format!("[[package_repositories]] {name}: {e}"))?;
    }
    let counts = packages.clone();
    let mut application = registry_http::app::Application::new(registry, packages)
        .login_throttle(config.address_throttle());
    if let Some(auth) = auth {
        application = application.auth(auth);
    }
    for cache in &config.pull_through {
        let own: Vec<&str> = external.iter().map(|u| u.as_str()).collect();
        if registry_http::upstream::points_at(&cache.upstream, &own, Some(listen.port())) {
            return Err(format!(
                "[[pull_through]] {}: upstream {} points at this registry itself",
                cache.prefix, cache.upstream.url
            ));
        }
    }
    if !config.pull_through.is_empty() {
        application = application
            .pull_through(config.pull_through.clone())
            .map_err(|e| format!("[[pull_through]]: {e}"))?;
    }
    if !config.oci_virtual.is_empty() {
        application = application
            .oci_virtual(config.oci_virtual.clone())
            .map_err(|e| format!("[[oci_virtual]]: {e}"))?;
    }
    if let Some(url) = external {
        application = application.external_url(url);
    }
    if let Some(signer) = config.download_signer()? {
        application = application.download_signer(signer);
    }

    let app = application.router().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(prometheus.render())),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    match config.tls()? {
        Some(tls) => {
            tracing::info!(%listen, data_dir = %config.data_dir.display(), "registry serving HTTPS");
            registry_http::serve::serve_tls(listener, app, server, tls, shutdown_signal()).await
        }
        None => {
            tracing::info!(%listen, data_dir = %config.data_dir.display(), "registry serving");
            registry_http::serve::serve(listener, app, server, shutdown_signal()).await
        }
    }
    .map_err(|e| format!("serving: {e}"))?;
    let _ = stop_collector.send(());
    let _ = stop_cleanup.send(());
    // A batch cut off here is rolled back, and done again by the next run.
    if let Some(migrations) = migrations {
        migrations.abort();
    }
    if let Some(collector) = collector {
        let _ = collector.await;
    }
    if let Some(cleanup) = cleanup {
        let _ = cleanup.await;
    }
    // Proxy cache read counts not written yet.
    if let Err(e) = counts.flush_download_counts().await {
        tracing::warn!(error = %e, "writing proxy cache read counts");
    }
    tracing::info!("registry stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then finish before the server exits.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
