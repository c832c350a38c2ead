//! The package model: package repositories, packages, versions and files, for every package
//! format (npm, PyPI, Generic, Maven; NuGet and Terraform modules to come).
//!
//! A **package repository** has a name, a format and a kind (hosted now; proxy and virtual are
//! reserved). A **package** in it has versions; a **version** has a status, the format's own
//! metadata document (JSON, e.g. an npm version manifest) and files. A **file** is a blob of the
//! shared content-addressed store — identical files are stored once, across formats and
//! repositories — with its size, SHA-256 and the digests its format also publishes. Packages
//! also carry named **tags** pointing at versions (npm dist-tags).
//!
//! What the metadata store keeps is described by [`PackageMetadata`]; the rules of each format
//! (names, versions, parsing uploads) live in `registry-formats`; the service that ties them to
//! the blob store is [`crate::Packages`].

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::values::{Page, Timestamp};

/// A package format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PackageFormat {
    /// npm packages.
    Npm,
    /// Python packages (PyPI).
    Pypi,
    /// Maven artifacts.
    Maven,
    /// NuGet packages.
    Nuget,
    /// Terraform modules.
    Terraform,
    /// Generic files under a name and version.
    Generic,
}

impl PackageFormat {
    /// The format's name (`npm`, `pypi`, …), as in URLs and storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            PackageFormat::Npm => "npm",
            PackageFormat::Pypi => "pypi",
            PackageFormat::Maven => "maven",
            PackageFormat::Nuget => "nuget",
            PackageFormat::Terraform => "terraform",
            PackageFormat::Generic => "generic",
        }
    }

    /// Parses a format's name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "npm" => PackageFormat::Npm,
            "pypi" => PackageFormat::Pypi,
            "maven" => PackageFormat::Maven,
            "nuget" => PackageFormat::Nuget,
            "terraform" => PackageFormat::Terraform,
            "generic" => PackageFormat::Generic,
            _ => return None,
        })
    }
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a package repository is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RepositoryKind {
    /// Clients publish to it.
    Hosted,
    /// A cache of one upstream registry.
    Proxy,
    /// An ordered list of member repositories read as one.
    Virtual,
}

impl RepositoryKind {
    /// The kind's name (`hosted`, `proxy`, `virtual`).
    pub const fn as_str(self) -> &'static str {
        match self {
            RepositoryKind::Hosted => "hosted",
            RepositoryKind::Proxy => "proxy",
            RepositoryKind::Virtual => "virtual",
        }
    }

    /// Parses a kind's name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "hosted" => RepositoryKind::Hosted,
            "proxy" => RepositoryKind::Proxy,
            "virtual" => RepositoryKind::Virtual,
            _ => return None,
        })
    }
}

/// The longest package repository name.
pub const MAX_REPOSITORY_NAME_LEN: usize = 64;

/// Checks a package repository name: 1 to 64 bytes of lowercase letters, digits, `.`, `_` and
/// `-`, starting with a letter or digit.
pub fn check_repository_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_REPOSITORY_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        // Authorization matches package repositories like OCI repositories: a name the OCI
        // grammar refuses (`a-`, `a.`, `a..b`) could never be granted to anyone.
        && crate::name::RepositoryName::parse(name).is_ok();
    if valid {
        Ok(())
    } else {
        Err(Error::PackageInvalid {
            reason: format!(
                "{name:?} is not a package repository name: use 1 to {MAX_REPOSITORY_NAME_LEN} \
                 lowercase letters and digits, separated by one '.', '_' or '__', or by dashes"
            ),
        })
    }
}

/// Per-repository settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    /// Whether publishing over an existing file (or npm version) replaces it. Off by default.
    #[serde(default)]
    pub allow_duplicates: bool,
    /// Package names (regular expression, whole name) for which the duplicates setting is
    /// reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_exceptions: Option<crate::rules::NameRegex>,
    /// Which roles may publish and delete which packages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protection: Vec<PackageProtection>,
    /// A proxy repository's upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::proxy::UpstreamSettings>,
    /// A virtual repository's members, in the order they are read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The hosted member a virtual repository's publishes go to (none: publishes are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_to: Option<String>,
}

/// A protection rule: packages whose name a pattern matches (whole name) need at least a role
/// to publish (new versions, files, tags, deprecations) and to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageProtection {
    /// The package names it covers (regular expression, whole name).
    pub packages: crate::rules::NameRegex,
    /// The least role that may publish.
    pub publish: crate::auth::Role,
    /// The least role that may delete.
    pub delete: crate::auth::Role,
}

/// The most protection rules a repository holds.
pub const MAX_PROTECTION_RULES: usize = 100;

/// The most members a virtual repository has.
pub const MAX_MEMBERS: usize = 32;

impl RepositorySettings {
    /// Checks the settings' limits, and that a repository of `kind` has what it needs and
    /// nothing another kind's: a proxy its upstream, a virtual repository its members (at
    /// most [`MAX_MEMBERS`], none twice, the hosted member it publishes to among them).
    pub fn validate(&self, kind: RepositoryKind) -> Result<()> {
        let invalid = |reason: String| Err(Error::PolicyInvalid { reason });
        match (kind, &self.upstream) {
            (RepositoryKind::Proxy, None) => {
                return invalid("a proxy repository needs an upstream".into());
            }
            (RepositoryKind::Proxy, Some(upstream)) => upstream.validate()?,
            (_, Some(_)) => {
                return invalid(format!(
                    "only proxy repositories have an upstream, not {} ones",
                    kind.as_str()
                ));
            }
            (_, None) => {}
        }
        if kind == RepositoryKind::Virtual {
            if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
                return invalid(format!(
                    "a virtual repository needs 1 to {MAX_MEMBERS} members, not {}",
                    self.members.len()
                ));
            }
            for (i, member) in self.members.iter().enumerate() {
                check_repository_name(member)?;
                if self.members[..i].contains(member) {
                    return invalid(format!("member {member} is listed twice"));
                }
            }
            if let Some(target) = &self.publish_to
                && !self.members.contains(target)
            {
                return invalid(format!(
                    "publish_to names {target}, which is not one of the members"
                ));
            }
        } else if !self.members.is_empty() || self.publish_to.is_some() {
            return invalid(format!(
                "only virtual repositories have members and publish_to, not {} ones",
                kind.as_str()
            ));
        }
        if self.protection.len() > MAX_PROTECTION_RULES {
            return Err(Error::PolicyInvalid {
                reason: format!(
                    "{} protection rules given; at most {MAX_PROTECTION_RULES} are accepted",
                    self.protection.len()
                ),
            });
        }
        Ok(())
    }

    /// Refuses `action` (push: publish; delete) on `package` for a caller with `role` (`None`:
    /// trusted) when a protection rule needs more; the refusal names the rule.
    pub fn check_protection(
        &self,
        package: &str,
        action: crate::auth::Action,
        role: Option<crate::auth::Role>,
    ) -> Result<()> {
        let Some(role) = role else {
            return Ok(());
        };
        for rule in self
            .protection
            .iter()
            .filter(|r| r.packages.matches(package))
        {
            let (needed, verb) = match action {
                crate::auth::Action::Delete => (rule.delete, "deleting"),
                _ => (rule.publish, "publishing"),
            };
            if role < needed {
                return Err(Error::Denied {
                    reason: format!(
                        "{verb} {package} needs the {} role (protection rule for packages {:?})",
                        needed.as_str(),
                        rule.packages.as_str()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether a duplicate of `package` may replace what is there.
    pub fn duplicates_allowed(&self, package: &str) -> bool {
        let excepted = self
            .duplicate_exceptions
            .as_ref()
            .is_some_and(|p| p.matches(package));
        self.allow_duplicates != excepted
    }
}

/// A repository as an operator describes it (the configuration's `[[package_repositories]]`,
/// the admin API's body): its format and settings, every field checked.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Its name (required in the configuration; the admin API takes it from the path).
    #[serde(default)]
    pub name: Option<String>,
    /// Its format.
    pub format: PackageFormat,
    /// Its kind (hosted by default).
    #[serde(default = "hosted")]
    pub kind: RepositoryKind,
    /// See [`RepositorySettings::allow_duplicates`].
    #[serde(default)]
    pub allow_duplicates: bool,
    /// See [`RepositorySettings::duplicate_exceptions`].
    #[serde(default)]
    pub duplicate_exceptions: Option<crate::rules::NameRegex>,
    /// See [`RepositorySettings::protection`].
    #[serde(default)]
    pub protection: Vec<PackageProtection>,
    /// See [`RepositorySettings::upstream`].
    #[serde(default)]
    pub upstream: Option<crate::proxy::UpstreamSettings>,
    /// See [`RepositorySettings::members`].
    #[serde(default)]
    pub members: Vec<String>,
    /// See [`RepositorySettings::publish_to`].
    #[serde(default)]
    pub publish_to: Option<String>,
}

fn hosted() -> RepositoryKind {
    RepositoryKind::Hosted
}

impl RepositoryConfig {
    /// The settings it describes.
    pub fn settings(&self) -> RepositorySettings {
        RepositorySettings {
            allow_duplicates: self.allow_duplicates,
            duplicate_exceptions: self.duplicate_exceptions.clone(),
            protection: self.protection.clone(),
            upstream: self.upstream.clone(),
            members: self.members.clone(),
            publish_to: self.publish_to.clone(),
        }
    }
}

/// A package repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRepository {
    /// Its name ([`check_repository_name`]).
    pub name: String,
    /// Its format.
    pub format: PackageFormat,
    /// Hosted, proxy or virtual.
    pub kind: RepositoryKind,
    /// Its settings.
    pub settings: RepositorySettings,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A version's visibility and standing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "message", rename_all = "lowercase")]
pub enum VersionStatus {
    /// Listed and installable.
    #[default]
    Default,
    /// Not listed; installable by exact name.
    Hidden,
    /// Listed with a deprecation message.
    Deprecated(String),
    /// Listed as yanked (PEP 592), with a reason; resolvers skip it unless pinned.
    Yanked(String),
}

/// Digests a format publishes besides SHA-256 (hex, except where the format says otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigests {
    /// SHA-1 hex (npm `shasum`, Maven `.sha1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    /// SHA-512 (npm `integrity` is its base64 form, `sha512-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// MD5 hex (Maven `.md5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// BLAKE2b-256 hex (PyPI uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake2_256: Option<String>,
}

/// A blob a record points at: its digest (the blob store's key) and size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// The SHA-256 digest.
    pub digest: Digest,
    /// The size in bytes.
    pub size: u64,
}

/// A file of a package version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// The file name (a path for Generic packages), unique within the version.
    pub name: String,
    /// The bytes.
    pub blob: BlobRef,
    /// The other digests its format publishes.
    pub digests: FileDigests,
    /// A file derived from it and served beside it (PyPI: the core metadata of PEP 658).
    pub sidecar: Option<BlobRef>,
    /// Format-specific facts about the file (PyPI: `requires_python`, `filetype`).
    pub attributes: BTreeMap<String, String>,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// A version of a package, with its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageVersion {
    /// The version, as the format writes it.
    pub version: String,
    /// Its status.
    pub status: VersionStatus,
    /// The format's metadata document (JSON).
    pub metadata: String,
    /// Its files, by name.
    pub files: Vec<PackageFile>,
    /// When it was published.
    pub created_at: Timestamp,
    /// When it last changed (a file added, its status or metadata changed).
    pub updated_at: Timestamp,
}

/// A package with every version and tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Its normalized name (the key).
    pub name: String,
    /// The name as first published.
    pub display_name: String,
    /// Versions, in the order they were published.
    pub versions: Vec<PackageVersion>,
    /// Tags (npm dist-tags) and the version each points at.
    pub tags: BTreeMap<String, String>,
    /// When it was first published.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Changes whenever anything of the package does (a random token, never reused), so a
    /// rendering cached under it is known fresh with [`PackageMetadata::package_revision`].
    pub revision: String,
}

/// A fresh package revision token.
pub fn new_revision() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Package {
    /// A version by its exact text.
    pub fn version(&self, version: &str) -> Option<&PackageVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// A package in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSummary {
    /// Its normalized name.
    pub name: String,
    /// The name as first published.
    pub display_name: String,
    /// How many versions it has.
    pub versions: u64,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// How a publish treats what is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishMode {
    /// The version must be new (npm): an existing version is a conflict, or, with duplicates
    /// allowed, is replaced with this one (its files too).
    NewVersion,
    /// Files are added to the version, created if needed (PyPI, Generic): a file name the
    /// version already has is a conflict, or, with duplicates allowed, is replaced.
    AddFiles,
    /// Files are added to a version that must exist, its metadata document kept (NuGet's
    /// symbol packages): a missing version is unknown; a file name it already has is a
    /// conflict, or, with duplicates allowed, is replaced.
    AttachFiles,
}

/// A file to publish: its blob must be recorded ([`PackageMetadata::record_package_blob`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPackageFile {
    /// The file name (unique within the version).
    pub name: String,
    /// The bytes.
    pub blob: BlobRef,
    /// Other digests.
    pub digests: FileDigests,
    /// A derived file served beside it.
    pub sidecar: Option<BlobRef>,
    /// Format-specific facts about the file.
    pub attributes: BTreeMap<String, String>,
}

/// Several changes to one package's document, made together or not at all (npm's deprecate,
/// dist-tag and unpublish-of-versions requests arrive as one document).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageUpdate {
    /// The package repository.
    pub repository: String,
    /// The package's normalized name.
    pub name: String,
    /// The revision the changes were computed from: when the package's revision is another,
    /// nothing changes ([`crate::Error::PackageConflict`]). `None` applies the changes whatever
    /// the revision.
    pub expected_revision: Option<String>,
    /// New statuses, by version.
    pub statuses: Vec<(String, VersionStatus)>,
    /// Tags to point at versions (tag, version).
    pub set_tags: Vec<(String, String)>,
    /// Tags to remove.
    pub delete_tags: Vec<String>,
    /// Versions to delete with their files (last: the package goes with its last version).
    pub delete_versions: Vec<String>,
}

impl PackageUpdate {
    /// What the update counts as, for authorization and protection rules: deleting versions is
    /// a delete; anything else (statuses, tags) a publish.
    pub fn action(&self) -> crate::auth::Action {
        if self.delete_versions.is_empty() {
            crate::auth::Action::Push
        } else {
            crate::auth::Action::Delete
        }
    }
}

impl VersionStatus {
    /// What setting this status counts as under protection rules: deprecating is a publish;
    /// yanking, hiding or restoring a version changes what resolvers install, like a delete.
    pub fn action(&self) -> crate::auth::Action {
        match self {
            VersionStatus::Deprecated(_) => crate::auth::Action::Push,
            _ => crate::auth::Action::Delete,
        }
    }
}

/// One publish: a version (new or existing) and files, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The package repository (it must exist).
    pub repository: String,
    /// The package's normalized name.
    pub name: String,
    /// The name as the client wrote it (kept from the first publish).
    pub display_name: String,
    /// The version.
    pub version: String,
    /// The version's metadata document (JSON); replaces the stored one when the version exists
    /// (unless the mode is [`PublishMode::AttachFiles`]).
    pub metadata: String,
    /// The files.
    pub files: Vec<NewPackageFile>,
    /// Tags to point at this version (npm: `latest`, or the `--tag`).
    pub tags: Vec<String>,
    /// New version or added files.
    pub mode: PublishMode,
    /// Whether duplicates replace what is there (else they are a conflict).
    pub duplicates: bool,
}

/// What a publish did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Whether the version was created.
    pub version_created: bool,
    /// Files replaced (their blobs are queued for review).
    pub replaced: Vec<String>,
}

/// Packages, versions, files and tags, as the metadata store keeps them.
///
/// Every mutation is one transaction. Deleting or replacing a file queues its blobs for the
/// garbage collector's review ([`crate::ReviewEvent::PackageFileDeleted`]); a blob a package
/// file references is never collected.
#[async_trait]
pub trait PackageMetadata: fmt::Debug + Send + Sync + 'static {
    /// Creates a repository unless one of that name exists; returns the stored one (whose
    /// format may differ from the one asked for: the caller checks).
    async fn ensure_package_repository(
        &self,
        repository: &PackageRepository,
    ) -> Result<PackageRepository>;

    /// A repository by name.
    async fn package_repository(&self, name: &str) -> Result<Option<PackageRepository>>;

    /// Replaces a repository's settings. Errors: [`Error::PackageUnknown`].
    async fn set_package_repository_settings(
        &self,
        name: &str,
        settings: &RepositorySettings,
    ) -> Result<()>;

    /// Every repository, by name, one page at a time.
    async fn list_package_repositories(&self, page: &Page) -> Result<Vec<PackageRepository>>;

    /// Records a blob written for a package file (no-op when recorded), queued for review
    /// ([`crate::ReviewEvent::BlobUploaded`]) so that it is collected if no file ever
    /// references it.
    async fn record_package_blob(&self, blob: &BlobRef) -> Result<()>;

    /// Publishes a version or files, and points tags at the version, in one transaction.
    ///
    /// Errors: [`Error::PackageUnknown`] when the repository does not exist;
    /// [`Error::PackageConflict`] for a duplicate that may not replace;
    /// [`Error::BlobUnknown`] when a file's blob is not recorded. Nothing changes on error.
    async fn publish(&self, publish: &Publish) -> Result<PublishOutcome>;

    /// A package with its versions, files and tags.
    async fn package(&self, repository: &str, name: &str) -> Result<Option<Package>>;

    /// One file of a package by name — in `version`, or in whichever version has it when
    /// `None` — with the version it belongs to; what downloads need, without loading the package.
    async fn package_file(
        &self,
        repository: &str,
        name: &str,
        version: Option<&str>,
        file: &str,
    ) -> Result<Option<(String, PackageFile)>>;

    /// A package's current revision ([`Package::revision`]), or `None` when it does not exist.
    async fn package_revision(&self, repository: &str, name: &str) -> Result<Option<String>>;

    /// A repository's revision: it changes whenever one of its packages changes (created,
    /// changed in any way, deleted) — and may change more often — so pages listing the
    /// repository's packages can be cached by it. `None` when the repository does not exist.
    async fn repository_revision(&self, repository: &str) -> Result<Option<u64>>;

    /// Packages whose name contains `contains` (all when `None`), by name, one page at a time.
    async fn list_packages(
        &self,
        repository: &str,
        contains: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PackageSummary>>;

    /// Only the names of a repository's packages, by name, one page at a time (for indexes of
    /// thousands of packages).
    async fn list_package_names(&self, repository: &str, page: &Page) -> Result<Vec<String>>;

    /// Sets a version's status (and, when given, its metadata document).
    /// Errors: [`Error::PackageUnknown`].
    async fn set_version_status(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        status: &VersionStatus,
        metadata: Option<&str>,
    ) -> Result<()>;

    /// Deletes a version with its files, and the tags pointing at it (the package goes with
    /// its last version). Errors: [`Error::PackageUnknown`].
    async fn delete_version(&self, repository: &str, name: &str, version: &str) -> Result<()>;

    /// Deletes one file of a version (the version goes with its last file, the package with
    /// its last version). Errors: [`Error::PackageUnknown`].
    async fn delete_package_file(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        file: &str,
    ) -> Result<()>;

    /// Deletes a package with every version, file and tag; returns whether it existed.
    async fn delete_package(&self, repository: &str, name: &str) -> Result<bool>;

    /// Applies an update in one transaction, its revision precondition checked inside it.
    ///
    /// Errors: [`crate::Error::PackageUnknown`] when the package or a named version does not
    /// exist; [`crate::Error::PackageConflict`] when the package's revision is not the expected
    /// one. Either way nothing changes.
    async fn update_package(&self, update: &PackageUpdate) -> Result<()>;

    /// Points a tag at an existing version. Errors: [`Error::PackageUnknown`].
    async fn set_package_tag(
        &self,
        repository: &str,
        name: &str,
        tag: &str,
        version: &str,
    ) -> Result<()>;

    /// Removes a tag; returns whether it existed.
    async fn delete_package_tag(&self, repository: &str, name: &str, tag: &str) -> Result<bool>;

    /// Whether any package file (or its sidecar) references the blob.
    async fn blob_in_packages(&self, digest: &Digest) -> Result<bool>;
}
