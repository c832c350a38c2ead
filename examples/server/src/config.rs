//! The server's configuration: a TOML file, environment variables and flags, in rising priority.

use std::net::SocketAddr;
use std::path::PathBuf;

use registry_core::{Limits, ManifestLimits};
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
}

/// The configuration file's contents. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    allow_anonymous_on_network: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_manifest_size: Option<usize>,
    max_blob_size: Option<u64>,
    max_page_size: Option<usize>,
}

/// The configuration in force.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) allow_anonymous_on_network: bool,
    limits: FileLimits,
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
            allow_anonymous_on_network: file.allow_anonymous_on_network.unwrap_or(false),
            limits: file.limits,
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
        }
    }
}
