//! Proxy and virtual package repositories: what an upstream is, what is cached from it, and
//! the two traits behind them — [`Upstream`] (fetching, implemented at the HTTP edge) and
//! [`ProxyCache`] (the cache's records, implemented by each metadata store).
//!
//! A proxy repository caches one upstream registry. Its **metadata** (an npm packument, a
//! simple page…) is mutable: it is kept as a blob with the upstream's validators (`ETag`,
//! `Last-Modified`) and revalidated once its validity has passed. Its **files** are immutable:
//! each is fetched once, verified against the digest the upstream's metadata declares, and
//! kept in the shared blob store. An upstream that answers `404` is remembered for a short
//! while by each instance, so a flood of misses does not become a flood upstream.

mod body;
pub(crate) mod locks;
pub(crate) mod memory;
pub(crate) mod report;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::blob::ByteStream;
use crate::error::{Error, Result};
use crate::package::BlobRef;
use crate::values::{Page, Timestamp};

pub(crate) use body::guarded_body;
pub use report::{ProxyReport, StaleServe, incoming_via, observe_proxy};

/// How a proxy repository reaches its upstream.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// The upstream's base URL (`https://registry.npmjs.org`, `http://127.0.0.1:4873/npm/x`):
    /// `http` or `https`, no query, no fragment, no credentials in it.
    pub url: String,
    /// A user name for Basic authentication at the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (with `username`) or bearer token (without) for the upstream. Never shown
    /// by the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A PEM file of certificates to trust for the upstream's TLS, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Other origins (`https://files.pythonhosted.org`) the upstream's metadata may place
    /// files on; they get no credentials. Files anywhere else are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_origins: Vec<String>,
    /// How long fetched metadata is used before it is revalidated (default 300 s).
    #[serde(default = "default_metadata_ttl")]
    pub metadata_ttl_seconds: u64,
    /// How long an upstream's `404` is remembered (default 60 s).
    #[serde(default = "default_not_found_ttl")]
    pub not_found_ttl_seconds: u64,
    /// How long one upstream request may take, from connecting to the last byte of metadata,
    /// or between two bytes of a file (default 30 s).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_metadata_ttl() -> u64 {
    300
}

fn default_not_found_ttl() -> u64 {
    60
}

fn default_timeout() -> u64 {
    30
}

/// The longest validity or timeout accepted (a year).
const MAX_SECONDS: u64 = 365 * 24 * 3600;

impl fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_file", &self.ca_file)
            .field("file_origins", &self.file_origins)
            .field("metadata_ttl_seconds", &self.metadata_ttl_seconds)
            .field("not_found_ttl_seconds", &self.not_found_ttl_seconds)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

impl UpstreamSettings {
    /// Settings for an upstream at `url` with the default validity and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        UpstreamSettings {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            file_origins: Vec::new(),
            metadata_ttl_seconds: default_metadata_ttl(),
            not_found_ttl_seconds: default_not_found_ttl(),
            timeout_seconds: default_timeout(),
        }
    }

    /// Checks the URL and the durations.
    ///
    /// Errors: [`Error::PolicyInvalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::PolicyInvalid { reason });
        let url = self.url.as_str();
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return invalid(format!(
                "upstream URL {url:?} must start with http:// or https://"
            ));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty()
            || authority.contains('@')
            || url.contains(['?', '#'])
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
            || url.len() > 2048
        {
            return invalid(format!(
                "upstream URL {url:?} must name a host, with no credentials, query or fragment \
                 (credentials go in username and password)"
            ));
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if url.starts_with("http://") && !is_local_host(host, false) && self.password.is_some() {
            return invalid(format!(
                "upstream {url} is plain http: its credentials would cross the network in clear \
                 text; use https"
            ));
        }
        if self.file_origins.len() > 16 {
            return invalid("at most 16 file_origins are accepted".into());
        }
        for extra in &self.file_origins {
            let scheme = extra.starts_with("http://") || extra.starts_with("https://");
            if !scheme || origin(extra) != extra.trim_end_matches('/') || extra.contains('@') {
                return invalid(format!(
                    "file origin {extra:?} must be a scheme and host (https://files.example)"
                ));
            }
        }
        for (field, value) in [
            ("metadata_ttl_seconds", self.metadata_ttl_seconds),
            ("not_found_ttl_seconds", self.not_found_ttl_seconds),
            ("timeout_seconds", self.timeout_seconds),
        ] {
            if value > MAX_SECONDS {
                return invalid(format!(
                    "{field} is {value}; at most {MAX_SECONDS} is accepted"
                ));
            }
        }
        if self.timeout_seconds == 0 {
            return invalid("timeout_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// The base URL without its trailing `/`.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The scheme, host and port of the base URL (`http://127.0.0.1:4873`).
    pub fn origin(&self) -> &str {
        origin(self.base())
    }

    /// How long fetched metadata is fresh.
    pub fn metadata_ttl(&self) -> Duration {
        Duration::from_secs(self.metadata_ttl_seconds)
    }

    /// How long a `404` is remembered.
    pub fn not_found_ttl(&self) -> Duration {
        Duration::from_secs(self.not_found_ttl_seconds)
    }

    /// How long one request may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    /// The failure of `what` (`fetching left-pad`) when it took longer than the timeout.
    pub fn too_slow(&self, what: &str) -> Error {
        Error::Upstream {
            upstream: self.base().to_owned(),
            reason: format!("{what} took longer than {} s", self.timeout_seconds),
            timed_out: true,
        }
    }
}

/// A copy of an upstream error (errors are not `Clone`: backend errors carry sources).
pub(crate) fn copy_upstream_error(error: &Error) -> Error {
    match error {
        Error::Upstream {
            upstream,
            reason,
            timed_out,
        } => Error::Upstream {
            upstream: upstream.clone(),
            reason: reason.clone(),
            timed_out: *timed_out,
        },
        Error::ProxyLoop { upstream, reason } => Error::ProxyLoop {
            upstream: upstream.clone(),
            reason: reason.clone(),
        },
        other => Error::backend(other.to_string()),
    }
}

/// Runs CPU-heavy work (reading a large upstream document) without holding up the other tasks
/// of a multi-threaded runtime (`block_in_place`); inline on a current-thread runtime, where
/// that is not possible.
pub(crate) fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Whether a URL's host names this machine: `localhost` (`localhost.`, `*.localhost`) or a
/// loopback address (`[::1]`, `[::ffff:127.0.0.1]` too), or with `unspecified` also `0.0.0.0`
/// and `[::]`.
pub fn is_local_host(host: &str, unspecified: bool) -> bool {
    // `localhost.` is the same name, fully qualified; `*.localhost` resolves to loopback too.
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let local = |ip: std::net::IpAddr| ip.is_loopback() || (unspecified && ip.is_unspecified());
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| match ip {
            // `::ffff:127.0.0.1` connects to 127.0.0.1.
            std::net::IpAddr::V6(v6) => {
                local(ip) || v6.to_ipv4_mapped().is_some_and(|v4| local(v4.into()))
            }
            std::net::IpAddr::V4(_) => local(ip),
        })
}

/// The scheme, host and port of an absolute URL (the URL itself when it has no path).
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

/// An algorithm an upstream declares file digests with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// SHA-1.
    Sha1,
}

impl DigestAlgorithm {
    /// Its name (`sha512`).
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
            DigestAlgorithm::Sha1 => "sha1",
        }
    }

    /// A declaration of `text`, a checksum file's content (`<hex>` and perhaps a file name
    /// after it), when it holds a digest of this algorithm.
    pub fn read_checksum(self, text: &str) -> Option<DeclaredDigest> {
        let hex = text.split_whitespace().next()?.to_ascii_lowercase();
        let length = match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
            DigestAlgorithm::Sha1 => 40,
        };
        if hex.len() != length || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(match self {
            DigestAlgorithm::Sha256 => DeclaredDigest::Sha256(hex),
            DigestAlgorithm::Sha512 => DeclaredDigest::Sha512(hex),
            DigestAlgorithm::Sha1 => DeclaredDigest::Sha1(hex),
        })
    }
}

/// A digest the upstream's metadata declares for a file, checked when the file arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclaredDigest {
    /// SHA-256, hex (PyPI, NuGet via catalog, OCI).
    Sha256(String),
    /// SHA-512, hex (npm `integrity`, NuGet `packageHash`).
    Sha512(String),
    /// SHA-1, hex (npm `shasum` of old packages, Maven `.sha1`): weak, used only when the
    /// upstream declares nothing stronger.
    Sha1(String),
}

impl DeclaredDigest {
    /// The algorithm's name.
    pub fn algorithm(&self) -> &'static str {
        self.kind().name()
    }

    /// Its algorithm.
    pub fn kind(&self) -> DigestAlgorithm {
        match self {
            DeclaredDigest::Sha256(_) => DigestAlgorithm::Sha256,
            DeclaredDigest::Sha512(_) => DigestAlgorithm::Sha512,
            DeclaredDigest::Sha1(_) => DigestAlgorithm::Sha1,
        }
    }

    /// `algorithm:hex`, as a cache entry records it.
    pub fn as_text(&self) -> String {
        format!("{}:{}", self.algorithm(), self.hex())
    }

    /// The declared value (lowercase hex).
    pub fn hex(&self) -> &str {
        match self {
            DeclaredDigest::Sha256(h) | DeclaredDigest::Sha512(h) | DeclaredDigest::Sha1(h) => h,
        }
    }
}

/// A file an upstream's metadata declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// The version it belongs to (as stored: the format's version key).
    pub version: String,
    /// Its name as this registry serves it.
    pub name: String,
    /// Where the upstream serves it: an absolute URL on the upstream's origin.
    pub url: String,
    /// The digest it must have.
    pub digest: DeclaredDigest,
}

/// What a fetch sends to let the upstream answer "not modified".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` last received.
    pub etag: Option<String>,
    /// The `Last-Modified` last received.
    pub last_modified: Option<String>,
}

impl Validators {
    /// The `Last-Modified` time, when it reads as an HTTP date.
    pub fn last_modified_time(&self) -> Option<Timestamp> {
        let time = httpdate::parse_http_date(self.last_modified.as_deref()?).ok()?;
        let millis = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        Some(Timestamp(i64::try_from(millis).ok()?))
    }
}

/// An upstream's answer.
pub enum Fetched {
    /// `304`: what is cached is still current.
    NotModified,
    /// `404` or `410`.
    NotFound,
    /// `200`, with the body still to be read.
    Found {
        /// Its validators, to revalidate with later.
        validators: Validators,
        /// The declared length, when given.
        length: Option<u64>,
        /// Its `Content-Type`, when given (an OCI manifest's media type).
        content_type: Option<String>,
        /// The body.
        body: ByteStream,
    },
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fetched::NotModified => f.write_str("NotModified"),
            Fetched::NotFound => f.write_str("NotFound"),
            Fetched::Found {
                validators, length, ..
            } => f
                .debug_struct("Found")
                .field("validators", validators)
                .field("length", length)
                .finish_non_exhaustive(),
        }
    }
}

/// Fetches from upstream registries (implemented at the HTTP edge).
///
/// An implementation follows at most a few redirects within bounds, sends the settings'
/// credentials only to the upstream's own origin, applies the settings' timeout to connecting
/// and to the headers, and fails with [`Error::Upstream`] saying what went wrong (a refused
/// connection, a timeout, an unexpected status, an upstream that turns out to be this
/// registry). The body's own bounds (size, time between bytes) are the caller's to apply.
#[async_trait]
pub trait Upstream: fmt::Debug + Send + Sync + 'static {
    /// `GET url` (absolute, on the upstream's origin) accepting `accept`, with `validators`.
    async fn fetch(
        &self,
        upstream: &UpstreamSettings,
        url: &str,
        accept: &str,
        validators: &Validators,
    ) -> Result<Fetched>;
}

/// What a cache entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheEntryKind {
    /// A metadata document, revalidated after its validity.
    Metadata,
    /// An immutable file, fetched once.
    File,
}

impl CacheEntryKind {
    /// The kind's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheEntryKind::Metadata => "metadata",
            CacheEntryKind::File => "file",
        }
    }

    /// Parses a kind's name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "metadata" => CacheEntryKind::Metadata,
            "file" => CacheEntryKind::File,
            _ => return None,
        })
    }
}

/// One cached upstream path of a proxy repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// The proxy repository.
    pub repository: String,
    /// The path below the upstream's base URL (`left-pad`, `left-pad/-/left-pad-1.3.0.tgz`).
    pub path: String,
    /// What it holds.
    pub kind: CacheEntryKind,
    /// The bytes.
    pub blob: BlobRef,
    /// The digest a file was verified against (`sha512:<hex>`), so a cached file serves only
    /// a declaration it matches; none for metadata.
    pub declared: Option<String>,
    /// The validators the upstream sent with it.
    pub validators: Validators,
    /// The digests computed while a file was stored, besides its SHA-256 (those of the
    /// format's [`crate::ExtraDigests`]), which clients ask for beside it.
    pub digests: crate::package::FileDigests,
    /// When the upstream last confirmed it (fetched, or answered `304`).
    pub checked_at: Timestamp,
    /// When it was stored (fetched anew).
    pub created_at: Timestamp,
    /// How many times clients read it (files downloaded, metadata read).
    pub downloads: u64,
    /// When a client last downloaded it.
    pub last_download: Option<Timestamp>,
}

/// The records of proxy repositories' caches (implemented by each metadata store).
///
/// A cache entry holds its blob like a package file does: the garbage collector never takes a
/// blob an entry points at, and an entry replaced or deleted queues its blob for review.
#[async_trait]
pub trait ProxyCache: fmt::Debug + Send + Sync + 'static {
    /// The entry for a path.
    async fn cache_entry(&self, repository: &str, path: &str) -> Result<Option<CacheEntry>>;

    /// Stores an entry (replacing one for the same path, whose blob is then queued for
    /// review when it differs). The blob must exist: it is held like a published file's.
    async fn put_cache_entry(&self, entry: &CacheEntry) -> Result<()>;

    /// Records that the upstream confirmed an entry at `checked_at` (a `304`), with the
    /// validators it sent; `false` when there is no such entry.
    async fn confirm_cache_entry(
        &self,
        repository: &str,
        path: &str,
        validators: &Validators,
        checked_at: Timestamp,
    ) -> Result<bool>;

    /// Adds `count` downloads to an entry, the last at `at`.
    async fn count_cache_downloads(
        &self,
        repository: &str,
        path: &str,
        count: u64,
        at: Timestamp,
    ) -> Result<()>;

    /// A repository's entries by path, one page at a time.
    async fn list_cache_entries(&self, repository: &str, page: &Page) -> Result<Vec<CacheEntry>>;

    /// Deletes one entry; `false` when there was none.
    async fn delete_cache_entry(&self, repository: &str, path: &str) -> Result<bool>;

    /// Deletes a repository's entries — all, or those neither downloaded nor stored since
    /// `unused_since` — and answers how many went.
    async fn delete_cache_entries(
        &self,
        repository: &str,
        unused_since: Option<Timestamp>,
    ) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_settings_refuse_what_cannot_work_safely() {
        let with_password = |url: &str| UpstreamSettings {
            password: Some("secret".into()),
            ..UpstreamSettings::new(url)
        };
        assert!(with_password("https://registry.example").validate().is_ok());
        assert!(
            with_password("http://127.0.0.1:4873/npm/x")
                .validate()
                .is_ok()
        );
        assert!(with_password("http://localhost:4873").validate().is_ok());
        let clear = with_password("http://registry.example").validate();
        assert!(
            matches!(clear, Err(Error::PolicyInvalid { reason }) if reason.contains("clear text"))
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@x",
            "http://x/?q",
            "http://x/#f",
        ] {
            assert!(UpstreamSettings::new(bad).validate().is_err(), "{bad}");
        }
        let mut zero = UpstreamSettings::new("https://x");
        zero.timeout_seconds = 0;
        assert!(zero.validate().is_err());
        let mut origins = UpstreamSettings::new("https://x");
        origins.file_origins = vec!["https://files.example/path".into()];
        assert!(origins.validate().is_err(), "an origin has no path");
        assert_eq!(
            origin("https://x.example:8443/a/b"),
            "https://x.example:8443"
        );
        assert!(is_local_host("[::1]", false) && is_local_host("0.0.0.0", true));
        assert!(!is_local_host("0.0.0.0", false));
    }
}
