//! The package service: the [`crate::package`] model over a [`BlobStore`] and a
//! [`MetadataStore`]. It owns the package domain — which repository a request reaches and of
//! what kind, whether a publish may create it, protection rules, duplicates, storing files with
//! the digests a format needs, publishing, updates under a revision precondition — so that a
//! format's router only translates its protocol.
//!
//! What differs between formats reaches the service through [`FormatRules`] (implemented in
//! `registry-formats`). Every operation names the caller's role on the repository as
//! `Option<Role>`: `None` is a trusted caller (no authentication configured), for whom
//! protection rules do not apply; authorization itself (may this caller pull, push, delete
//! here) is decided before, at the edge, by the `Authorizer`.
//!
//! Repositories are resolved by kind, here and nowhere else: hosted repositories are read
//! from and written to the metadata store; proxy repositories are read through their upstream
//! and its cache (`proxy`); virtual repositories read their members in order and publish to
//! their designated hosted member (`virtual_repository`).

mod files;
mod firewall;
mod format;
mod operations;
mod proxy;
mod virtual_repository;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::blob::BlobStore;
use crate::error::{Error, Result};
use crate::package::{
    PackageFormat, PackageRepository, RepositoryKind, RepositorySettings, check_repository_name,
};
use crate::store::MetadataStore;
use crate::token::TokenStore;
use crate::values::{Page, Timestamp};

pub use crate::proxy::{ProxyReport, StaleServe, incoming_via, observe_proxy};
pub use files::{BlobReader, StoredFile};
pub use firewall::{DEFAULT_AUDIT_RETENTION, MAX_FIREWALL_RULES};
pub use format::{
    DeferredFile, ExtraDigests, FormatRules, PathFile, UpstreamFormat, UpstreamPackage,
};
pub use operations::Release;
pub use proxy::UpstreamCheck;

/// Limits on what package clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageLimits {
    /// The largest file accepted (1 GiB by default).
    pub max_file_size: u64,
    /// The most bytes of upload documents held in memory at once, across requests (2 GiB by
    /// default): documents a protocol forces the registry to buffer whole, such as npm publish
    /// documents, which carry their tarball in base64. An upload that would pass it is refused
    /// with a retry hint.
    pub max_buffered_bytes: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_file_size: 1 << 30,
            max_buffered_bytes: 2 << 30,
        }
    }
}

/// The package service.
#[derive(Clone, Debug)]
pub struct Packages {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    limits: PackageLimits,
    create_on_publish: bool,
    /// Format and kind of repositories seen, so reads resolve them without a query: neither
    /// ever changes and repositories are not deleted, so an entry is never stale.
    known: Arc<Mutex<HashMap<String, (PackageFormat, RepositoryKind)>>>,
    /// Proxy and virtual repositories and members with their settings (upstream, members),
    /// read again after [`SETTINGS_TTL`] so a change made through another instance is seen.
    configured: Arc<Mutex<HashMap<String, Configured>>>,
    /// Fetches from proxy repositories' upstreams (none: proxy reads fail).
    upstream: Option<Arc<dyn crate::proxy::Upstream>>,
    /// What proxy reads share: fetches in flight, parsed documents, download counts.
    proxy: Arc<proxy::ProxyState>,
    /// The firewall's advisories, rules in force and recorded decisions.
    firewall: Arc<firewall::FirewallState>,
}

/// A proxy or virtual repository and when it was read.
type Configured = (Instant, Arc<PackageRepository>);

/// How long the settings of a proxy or virtual repository are used before they are read again.
const SETTINGS_TTL: Duration = Duration::from_secs(2);

/// The most repositories remembered; past it, lookups go to the store.
const MAX_KNOWN_REPOSITORIES: usize = 10_000;

/// Where a request for a repository goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// A hosted repository (or none yet: reads find nothing).
    Hosted,
    /// A proxy repository.
    Proxy(Arc<PackageRepository>),
    /// A virtual repository.
    Virtual(Arc<PackageRepository>),
}

impl Packages {
    /// The service over the given stores, with default limits.
    pub fn new(blobs: Arc<dyn BlobStore>, metadata: Arc<dyn MetadataStore>) -> Self {
        Packages {
            blobs,
            metadata,
            limits: PackageLimits::default(),
            create_on_publish: true,
            known: Arc::default(),
            configured: Arc::default(),
            upstream: None,
            proxy: Arc::default(),
            firewall: Arc::default(),
        }
    }

    /// Whether something fetches from upstreams ([`Packages::with_upstream`]).
    pub fn has_upstream(&self) -> bool {
        self.upstream.is_some()
    }

    /// Sets what fetches from proxy repositories' upstreams.
    pub fn with_upstream(mut self, upstream: Arc<dyn crate::proxy::Upstream>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// Whether a publish to a repository that does not exist creates it (hosted, default
    /// settings, the publish's format). On by default; off, repositories are created by the
    /// configuration or the admin API only, and a publish to an unknown one is refused
    /// ([`Error::PackageUnknown`]). Either way the publisher needs push on the name.
    pub fn with_create_on_publish(mut self, create: bool) -> Self {
        self.create_on_publish = create;
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: PackageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &PackageLimits {
        &self.limits
    }

    /// The access tokens of package clients (created by `npm login` and the token API).
    pub fn tokens(&self) -> &dyn TokenStore {
        &*self.metadata
    }

    /// A repository by name, whatever its format.
    pub async fn repository(&self, name: &str) -> Result<Option<PackageRepository>> {
        let found = self.metadata.package_repository(name).await?;
        if let Some(repository) = &found {
            self.remember(repository);
        }
        Ok(found)
    }

    /// Every repository, by name, one page at a time.
    pub async fn repositories(&self, page: &Page) -> Result<Vec<PackageRepository>> {
        self.metadata.list_package_repositories(page).await
    }

    /// Creates a repository of the format `rules` describe and of `kind`, or replaces the
    /// settings of the one of that name; refuses name patterns the format cannot match
    /// ([`FormatRules::check_name_pattern`]), settings that do not fit the kind
    /// ([`RepositorySettings::validate`]), a proxy of a format without upstreams, members that
    /// do not exist, hold another format or are virtual themselves, a `publish_to` member that
    /// is not hosted ([`Error::PolicyInvalid`]), and a change of format or kind
    /// ([`Error::PackageConflict`]).
    pub async fn configure_repository(
        &self,
        name: &str,
        rules: &dyn FormatRules,
        kind: RepositoryKind,
        settings: &RepositorySettings,
    ) -> Result<PackageRepository> {
        check_repository_name(name)?;
        settings.validate(kind)?;
        for pattern in settings
            .protection
            .iter()
            .map(|p| &p.packages)
            .chain(&settings.duplicate_exceptions)
        {
            rules.check_name_pattern(pattern)?;
        }
        let format = rules.format();
        let invalid = |reason: String| Err(Error::PolicyInvalid { reason });
        if kind == RepositoryKind::Proxy && rules.upstream().is_none() {
            return invalid(format!("{format} repositories cannot be proxies"));
        }
        for member in &settings.members {
            let found = match self.repository(member).await? {
                Some(_) if member == name => {
                    return invalid(format!("{name} cannot be a member of itself"));
                }
                Some(found) => found,
                None => return invalid(format!("member {member} does not exist")),
            };
            if found.format != format {
                return invalid(format!(
                    "member {member} holds {} packages, not {format}",
                    found.format
                ));
            }
            if found.kind == RepositoryKind::Virtual {
                return invalid(format!(
                    "member {member} is virtual; members are hosted or proxy repositories"
                ));
            }
            if settings.publish_to.as_deref() == Some(member)
                && found.kind != RepositoryKind::Hosted
            {
                return invalid(format!(
                    "publish_to names {member}, a {} repository; publishes go to a hosted one",
                    found.kind.as_str()
                ));
            }
        }
        let mut repository = match self.repository(name).await? {
            Some(found) => found,
            None => {
                let created = self
                    .metadata
                    .ensure_package_repository(&PackageRepository {
                        name: name.to_owned(),
                        format,
                        kind,
                        settings: settings.clone(),
                        created_at: Timestamp::now(),
                    })
                    .await?;
                self.remember(&created);
                created
            }
        };
        if repository.format != format || repository.kind != kind {
            return Err(Error::PackageConflict {
                reason: format!(
                    "repository {name} is a {} {} repository; format and kind never change",
                    repository.kind.as_str(),
                    repository.format
                ),
            });
        }
        self.metadata
            .set_package_repository_settings(name, settings)
            .await?;
        // Read anew from now on: a fetch still running with the old settings keeps nothing.
        self.configured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        // Another upstream is another registry: what was cached from the old one (documents,
        // and files under its paths) is not this one's.
        let base = |s: &RepositorySettings| s.upstream.as_ref().map(|u| u.base().to_owned());
        if kind == RepositoryKind::Proxy && base(&repository.settings) != base(settings) {
            self.proxy.forget_repository(name);
            self.metadata.delete_cache_entries(name, None).await?;
        }
        // What this instance remembers of the old settings (404s, failures) goes too: a fixed
        // CA file or password is tried at once.
        self.proxy.forget_repository(name);
        repository.settings = settings.clone();
        Ok(repository)
    }

    /// The repository a publish of `format` goes to, created when
    /// [`Packages::with_create_on_publish`] allows.
    ///
    /// Errors: [`Error::PackageInvalid`] for a bad name; [`Error::PackageUnknown`] when absent
    /// and not created; [`Error::PackageConflict`] when it holds another format;
    /// [`Error::Unsupported`] for a repository of a kind that takes no publishes.
    async fn publish_repository(
        &self,
        name: &str,
        format: PackageFormat,
    ) -> Result<PackageRepository> {
        self.hosted_repository(name, format, self.create_on_publish)
            .await
    }

    /// A hosted repository of `format`; created with default settings when `create` and it
    /// does not exist.
    async fn hosted_repository(
        &self,
        name: &str,
        format: PackageFormat,
        create: bool,
    ) -> Result<PackageRepository> {
        check_repository_name(name)?;
        let repository = match self.repository(name).await? {
            Some(repository) => repository,
            None if create => {
                let created = self
                    .metadata
                    .ensure_package_repository(&PackageRepository {
                        name: name.to_owned(),
                        format,
                        kind: RepositoryKind::Hosted,
                        settings: RepositorySettings::default(),
                        created_at: Timestamp::now(),
                    })
                    .await?;
                self.remember(&created);
                created
            }
            None => {
                return Err(Error::PackageUnknown {
                    what: format!("{format} repository {name}"),
                });
            }
        };
        if repository.format != format {
            return Err(Error::PackageConflict {
                reason: format!(
                    "repository {name} holds {} packages, not {format}",
                    repository.format
                ),
            });
        }
        match repository.kind {
            RepositoryKind::Hosted => Ok(repository),
            RepositoryKind::Virtual => match &repository.settings.publish_to {
                Some(target) => Box::pin(self.hosted_repository(target, format, false)).await,
                None => Err(Error::PackageConflict {
                    reason: format!(
                        "virtual repository {name} takes no publishes: it names no publish_to \
                         member; publish to one of its hosted members"
                    ),
                }),
            },
            kind => Err(Error::PackageConflict {
                reason: format!(
                    "{} repository {name} takes no publishes: it is read from its upstream",
                    kind.as_str()
                ),
            }),
        }
    }

    /// Where reads of `name` as `format` go. A repository of another format reads as absent
    /// ([`Error::PackageUnknown`]); one that does not exist reads as an empty hosted one.
    async fn source(&self, name: &str, format: PackageFormat) -> Result<Source> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        let stored = match known {
            Some(known) => Some(known),
            None => self.repository(name).await?.map(|r| (r.format, r.kind)),
        };
        match stored {
            None => Ok(Source::Hosted),
            Some((stored, _)) if stored != format => Err(Error::PackageUnknown {
                what: format!("{format} repository {name}"),
            }),
            Some((_, RepositoryKind::Hosted)) => Ok(Source::Hosted),
            Some((_, kind)) => {
                let repository = self.configured(name).await?;
                Ok(match kind {
                    RepositoryKind::Proxy => Source::Proxy(repository),
                    _ => Source::Virtual(repository),
                })
            }
        }
    }

    /// A repository with its current settings (read again after [`SETTINGS_TTL`]): proxy and
    /// virtual repositories, and virtual repositories' members.
    async fn configured(&self, name: &str) -> Result<Arc<PackageRepository>> {
        let cached = self
            .configured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .filter(|(read, _)| read.elapsed() < SETTINGS_TTL)
            .map(|(_, repository)| Arc::clone(repository));
        if let Some(repository) = cached {
            return Ok(repository);
        }
        let repository =
            Arc::new(
                self.repository(name)
                    .await?
                    .ok_or_else(|| Error::PackageUnknown {
                        what: format!("repository {name}"),
                    })?,
            );
        let mut configured = self.configured.lock().unwrap_or_else(|p| p.into_inner());
        if configured.len() >= MAX_KNOWN_REPOSITORIES {
            configured.clear();
        }
        configured.insert(name.to_owned(), (Instant::now(), Arc::clone(&repository)));
        Ok(repository)
    }

    /// Checks that a repository read through a format's API is not another format's (see
    /// [`Packages::source`]): reading it as `format` finds nothing ([`Error::PackageUnknown`]).
    pub async fn check_read_format(&self, name: &str, format: PackageFormat) -> Result<()> {
        self.source(name, format).await.map(drop)
    }

    fn remember(&self, repository: &PackageRepository) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() < MAX_KNOWN_REPOSITORIES || known.contains_key(&repository.name) {
            known.insert(
                repository.name.clone(),
                (repository.format, repository.kind),
            );
        }
    }
}

/// The refusal of a change to a repository whose packages are not its own (proxy, virtual).
fn unchangeable(name: &str, kind: RepositoryKind) -> Error {
    Error::PackageConflict {
        reason: format!(
            "{} repository {name} cannot be changed through; change its packages where they are \
             published",
            kind.as_str()
        ),
    }
}
