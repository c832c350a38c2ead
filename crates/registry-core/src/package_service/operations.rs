//! What package routers ask of the service: reads resolved by repository kind, and mutations
//! checked against the repository's format, kind and protection rules.

use super::format::FormatRules;
use super::{Packages, Source};
use crate::auth::{Action, Role};
use crate::blob::{BlobRead, ByteRange};
use crate::error::{Error, Result};
use crate::package::{
    BlobRef, NewPackageFile, Package, PackageFile, PackageRepository, PackageSummary,
    PackageUpdate, Publish, PublishMode, PublishOutcome, RepositoryKind, VersionStatus,
};
use crate::values::Page;

/// A version, or files added to one, as a client publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The package name as the client spells it (shown as such; stored under the format's
    /// [`FormatRules::package_key`]).
    pub name: String,
    /// The version as the client sends it (stored under [`FormatRules::version_key`]).
    pub version: String,
    /// The format's document for the version (JSON).
    pub metadata: String,
    /// The files, already stored ([`Packages::store_file`]).
    pub files: Vec<NewPackageFile>,
    /// Tags to point at the version (npm dist-tags).
    pub tags: Vec<String>,
}

impl Packages {
    /// A package with its versions (in the format's version order), files and tags; `None`
    /// when the repository or the package does not exist, or the name is not one the format
    /// allows. A proxy repository answers what its upstream has (cached); a virtual one its
    /// members' (see `virtual_repository`).
    pub async fn package(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
    ) -> Result<Option<Package>> {
        let Some((source, key)) = self.read_key(rules, repository, name).await? else {
            return Ok(None);
        };
        let Some((mut package, upstream)) =
            self.unscreened(rules, repository, source, &key).await?
        else {
            return Ok(None);
        };
        package = in_order(rules, package);
        self.screen(rules, repository, &mut package, upstream)
            .await?;
        Ok(Some(package))
    }

    /// A hosted package as stored — every version, whatever the firewall shows — for a change
    /// computed from it: its revision is the one [`Packages::update`] checks (the firewall's
    /// screening gives reads another). `None` when it does not exist; a repository of another
    /// kind takes no changes ([`Error::PackageConflict`]).
    pub async fn package_to_change(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
    ) -> Result<Option<Package>> {
        let Some((source, key)) = self.read_key(rules, repository, name).await? else {
            return Ok(None);
        };
        match source {
            Source::Hosted => {}
            Source::Proxy(found) | Source::Virtual(found) => {
                return Err(super::unchangeable(repository, found.kind));
            }
        }
        let package = self.metadata.package(repository, &key).await?;
        Ok(package.map(|p| in_order(rules, p)))
    }

    /// A package as its source has it, before the firewall, and whether it comes from an
    /// upstream.
    async fn unscreened(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        source: Source,
        key: &str,
    ) -> Result<Option<(Package, bool)>> {
        Ok(match source {
            Source::Hosted => self
                .metadata
                .package(repository, key)
                .await?
                .map(|p| (p, false)),
            Source::Proxy(found) => self
                .upstream_package(rules, &found, key)
                .await?
                .map(|p| (p.package.clone(), true)),
            Source::Virtual(found) => self.virtual_package(rules, &found, key).await?,
        })
    }

    /// A package's current revision (changed by every change to it); `None` as for
    /// [`Packages::package`].
    pub async fn package_revision(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
    ) -> Result<Option<String>> {
        let Some((source, key)) = self.read_key(rules, repository, name).await? else {
            return Ok(None);
        };
        let revision = match source {
            Source::Hosted => self.metadata.package_revision(repository, &key).await?,
            Source::Proxy(found) => self
                .upstream_package(rules, &found, &key)
                .await?
                .map(|p| p.package.revision.clone()),
            Source::Virtual(found) => self.virtual_package_revision(rules, &found, &key).await?,
        };
        match revision {
            Some(revision) => Ok(Some(self.screened_revision(repository, revision).await?)),
            None => Ok(None),
        }
    }

    /// The repository's revision: it changes whenever one of its packages does, so pages that
    /// list its packages can be cached by it (exact on every instance: it is read from the
    /// store). `None` when the repository does not exist.
    pub async fn repository_revision(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
    ) -> Result<Option<u64>> {
        let revision = match self.source(repository, rules.format()).await? {
            Source::Hosted => self.metadata.repository_revision(repository).await?,
            // Proxies list nothing (upstreams are not enumerated).
            Source::Proxy(_) => Some(0),
            Source::Virtual(found) => Some(self.virtual_revision(&found).await?),
        };
        match revision {
            Some(revision) => Ok(Some(
                self.screened_repository_revision(repository, revision)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// One file of a package — of `version`, or of whichever version has it when `None` —
    /// with the version it belongs to. Through a proxy repository, a file not cached yet is
    /// fetched from the upstream and verified first.
    pub async fn file(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        version: Option<&str>,
        file: &str,
    ) -> Result<Option<(String, PackageFile)>> {
        let Some((source, key)) = self.read_key(rules, repository, name).await? else {
            return Ok(None);
        };
        let version = match version.map(|v| rules.version_key(v)).transpose() {
            Ok(version) => version,
            Err(_) => return Ok(None),
        };
        match source {
            Source::Hosted => {
                let found = self
                    .metadata
                    .package_file(repository, &key, version.as_deref(), file)
                    .await?;
                if let Some((version, _)) = &found {
                    self.guard_hosted(rules, &[repository], repository, &key, version)
                        .await?;
                }
                Ok(found)
            }
            Source::Proxy(found) => {
                let package = self.upstream_package(rules, &found, &key).await?;
                self.proxied_file(
                    rules,
                    &[repository],
                    &found,
                    package.as_deref(),
                    (&key, version.as_deref(), file),
                )
                .await
            }
            Source::Virtual(found) => {
                self.virtual_file(rules, repository, &found, &key, version.as_deref(), file)
                    .await
            }
        }
    }

    /// Packages whose name contains `contains` (all when `None`), by name, one page at a time.
    /// A proxy repository lists nothing (its upstream is not enumerated); a virtual one lists
    /// its hosted members' packages.
    pub async fn list_packages(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        contains: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PackageSummary>> {
        match self.source(repository, rules.format()).await? {
            Source::Hosted => {
                self.metadata
                    .list_packages(repository, contains, page)
                    .await
            }
            Source::Proxy(_) => Ok(Vec::new()),
            Source::Virtual(found) => self.virtual_list(&found, contains, page).await,
        }
    }

    /// The names packages are stored under, by name, one page at a time (see
    /// [`Packages::list_packages`] for proxy and virtual repositories).
    pub async fn package_names(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        page: &Page,
    ) -> Result<Vec<String>> {
        match self.source(repository, rules.format()).await? {
            Source::Hosted => self.metadata.list_package_names(repository, page).await,
            Source::Proxy(_) => Ok(Vec::new()),
            Source::Virtual(found) => Ok(self
                .virtual_list(&found, None, page)
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect()),
        }
    }

    /// Checks, before a request's body is read, that a caller of `role` may perform `action`
    /// on the package under the repository's protection rules (a repository that does not
    /// exist, or a name the format refuses, protects nothing: the change itself then finds
    /// nothing or refuses). Every mutation checks again inside.
    pub async fn check_protection(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        action: Action,
        role: Option<Role>,
    ) -> Result<()> {
        let Ok(key) = rules.package_key(name) else {
            return Ok(());
        };
        // A publish to a virtual repository is checked where it lands; one to a proxy is
        // refused as a publish.
        if action == Action::Push
            && let Some(found) = self.repository(repository).await?
            && found.kind != RepositoryKind::Hosted
            && found.format == rules.format()
        {
            let target = self.publish_repository(repository, rules.format()).await?;
            return protect(&target, &key, name, action, role);
        }
        match self.changed_repository(rules, repository, action).await? {
            Some(found) => protect(&found, &key, name, action, role),
            None => Ok(()),
        }
    }

    /// Checks, before a publish's files are stored, that it can land: the name is one the
    /// format allows, the repository exists or may be created (then it is), it holds this
    /// format, and its protection rules let `role` publish the package. [`Packages::publish`]
    /// checks again inside.
    pub async fn prepare_publish(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        role: Option<Role>,
    ) -> Result<()> {
        let key = rules.package_key(name)?;
        let found = self.publish_repository(repository, rules.format()).await?;
        protect(&found, &key, name, Action::Push, role)
    }

    /// Checks, before a publish whose package name is only known once its body is read (NuGet
    /// reads it from the package), that the repository can take a publish of this format: it
    /// holds this format, or it does not exist and may be created (by the publish, so a body
    /// that turns out bad leaves nothing behind). The package's protection rules are applied by
    /// [`Packages::publish`].
    pub async fn prepare_repository(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
    ) -> Result<()> {
        match self
            .hosted_repository(repository, rules.format(), false)
            .await
        {
            Err(Error::PackageUnknown { .. }) if self.create_on_publish => Ok(()),
            other => other.map(drop),
        }
    }

    /// Publishes a release to `repository` (created first when the service allows): a new
    /// version or files added to one, as the format's [`FormatRules::publish_mode`] says, with
    /// duplicates refused or replacing as the repository's settings say.
    ///
    /// Errors: those of [`Packages::publish_repository`]; [`Error::PackageInvalid`] for a name
    /// or version the format refuses; [`Error::Denied`] under protection rules;
    /// [`Error::PackageConflict`] for a refused duplicate. Nothing changes on error.
    pub async fn publish(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        role: Option<Role>,
        release: Release,
    ) -> Result<PublishOutcome> {
        self.publish_as(rules, repository, role, release, rules.publish_mode())
            .await
    }

    /// Adds files to a version that exists, keeping its metadata document (NuGet's symbol
    /// packages), with the checks of [`Packages::publish`]; `release.metadata` and
    /// `release.tags` are not used.
    ///
    /// Errors: as [`Packages::publish`]; [`Error::PackageUnknown`] when the version does not
    /// exist. Nothing changes on error.
    pub async fn attach_files(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        role: Option<Role>,
        release: Release,
    ) -> Result<PublishOutcome> {
        let release = Release {
            tags: Vec::new(),
            ..release
        };
        self.publish_as(rules, repository, role, release, PublishMode::AttachFiles)
            .await
    }

    /// Adds files to a version, creating it if needed, whatever the format's publish mode
    /// (Terraform provider releases, uploaded file by file), with the checks of
    /// [`Packages::publish`]; a file name the version has is a conflict unless duplicates may
    /// replace it. The version's metadata document becomes `release.metadata`.
    ///
    /// Errors: as [`Packages::publish`]. Nothing changes on error.
    pub async fn add_files(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        role: Option<Role>,
        release: Release,
    ) -> Result<PublishOutcome> {
        self.publish_as(rules, repository, role, release, PublishMode::AddFiles)
            .await
    }

    async fn publish_as(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        role: Option<Role>,
        release: Release,
        mode: PublishMode,
    ) -> Result<PublishOutcome> {
        let key = rules.package_key(&release.name)?;
        let version = rules.version_key(&release.version)?;
        let found = self.publish_repository(repository, rules.format()).await?;
        protect(&found, &key, &release.name, Action::Push, role)?;
        let published = crate::package::PackageVersion {
            version: version.clone(),
            status: VersionStatus::Default,
            metadata: release.metadata.clone(),
            files: Vec::new(),
            created_at: crate::values::Timestamp::now(),
            updated_at: crate::values::Timestamp::now(),
        };
        // Checked against the rules of the repository published to, and of the one named.
        self.check_version(
            rules,
            &[&found.name, repository],
            &key,
            &published,
            false,
            "publish",
        )
        .await?;
        // A name may now exist in a hosted member: virtual repositories ask again.
        self.proxy.forget_hosted_absence();
        self.metadata
            .publish(&Publish {
                duplicates: found.settings.duplicates_allowed(&key) || rules.replaceable(&version),
                repository: found.name,
                name: key,
                display_name: release.name,
                version,
                metadata: release.metadata,
                files: release.files,
                tags: release.tags,
                mode,
            })
            .await
    }

    /// Deletes a package with every version, file and tag; returns whether it existed.
    pub async fn delete_package(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        role: Option<Role>,
    ) -> Result<bool> {
        let Some(key) = self
            .allow(rules, repository, name, Action::Delete, role)
            .await?
        else {
            return Ok(false);
        };
        self.metadata.delete_package(repository, &key).await
    }

    /// Deletes a version with its files (the package goes with its last version).
    /// Errors: [`Error::PackageUnknown`] when it does not exist.
    pub async fn delete_version(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        version: &str,
        role: Option<Role>,
    ) -> Result<()> {
        let version = rules.version_key(version)?;
        let key = self
            .allow(rules, repository, name, Action::Delete, role)
            .await?
            .ok_or_else(|| unknown_version(name, &version))?;
        self.metadata
            .delete_version(repository, &key, &version)
            .await
    }

    /// Deletes one file of a version (the version goes with its last file).
    /// Errors: [`Error::PackageUnknown`] when it does not exist.
    pub async fn delete_file(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        version: &str,
        file: &str,
        role: Option<Role>,
    ) -> Result<()> {
        let version = rules.version_key(version)?;
        let key = self
            .allow(rules, repository, name, Action::Delete, role)
            .await?
            .ok_or_else(|| Error::PackageUnknown {
                what: format!("file {file} of {name} {version}"),
            })?;
        self.metadata
            .delete_package_file(repository, &key, &version, file)
            .await
    }

    /// Sets a version's status (yank, deprecate, restore), under the protection rules of what
    /// the status counts as ([`VersionStatus::action`]).
    /// Errors: [`Error::PackageInvalid`] for a version the format refuses;
    /// [`Error::PackageUnknown`] when the version does not exist.
    pub async fn set_version_status(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        version: &str,
        status: &VersionStatus,
        role: Option<Role>,
    ) -> Result<()> {
        let version = rules.version_key(version)?;
        let key = self
            .allow(rules, repository, name, status.action(), role)
            .await?
            .ok_or_else(|| unknown_version(name, &version))?;
        self.metadata
            .set_version_status(repository, &key, &version, status, None)
            .await
    }

    /// Applies an update in one transaction, its revision precondition checked inside it;
    /// deleting versions needs the delete protection, other changes the publish one.
    /// Errors: as [`crate::PackageMetadata::update_package`].
    pub async fn update(
        &self,
        rules: &dyn FormatRules,
        role: Option<Role>,
        update: &PackageUpdate,
    ) -> Result<()> {
        let key = self
            .allow(
                rules,
                &update.repository,
                &update.name,
                update.action(),
                role,
            )
            .await?
            .ok_or_else(|| Error::PackageUnknown {
                what: format!("package {}", update.name),
            })?;
        let update = PackageUpdate {
            name: key,
            ..update.clone()
        };
        self.metadata.update_package(&update).await
    }

    /// Points a tag at an existing version. Errors: [`Error::PackageUnknown`].
    pub async fn set_tag(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        tag: &str,
        version: &str,
        role: Option<Role>,
    ) -> Result<()> {
        let version = rules.version_key(version)?;
        let key = self
            .allow(rules, repository, name, Action::Push, role)
            .await?
            .ok_or_else(|| unknown_version(name, &version))?;
        self.metadata
            .set_package_tag(repository, &key, tag, &version)
            .await
    }

    /// Removes a tag; returns whether it existed.
    pub async fn delete_tag(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        tag: &str,
        role: Option<Role>,
    ) -> Result<bool> {
        match self
            .allow(rules, repository, name, Action::Delete, role)
            .await?
        {
            Some(key) => {
                self.metadata
                    .delete_package_tag(repository, &key, tag)
                    .await
            }
            None => Ok(false),
        }
    }

    /// The key a read of `name` in `repository` looks up, once the repository is resolved;
    /// `None` for a name the format refuses (it names nothing).
    async fn read_key(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
    ) -> Result<Option<(Source, String)>> {
        let source = self.source(repository, rules.format()).await?;
        Ok(rules.package_key(name).ok().map(|key| (source, key)))
    }

    /// The repository a change applies to: `None` when it does not exist. One of another
    /// format is a conflict for a publish ([`Error::PackageConflict`]) and absent for anything
    /// else ([`Error::PackageUnknown`], as for reads).
    async fn changed_repository(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        action: Action,
    ) -> Result<Option<PackageRepository>> {
        let Some(found) = self.repository(repository).await? else {
            return Ok(None);
        };
        let format = rules.format();
        if found.format != format {
            return Err(if action == Action::Push {
                Error::PackageConflict {
                    reason: format!(
                        "repository {repository} holds {} packages, not {format}",
                        found.format
                    ),
                }
            } else {
                Error::PackageUnknown {
                    what: format!("{format} repository {repository}"),
                }
            });
        }
        if found.kind != RepositoryKind::Hosted {
            return Err(super::unchangeable(repository, found.kind));
        }
        Ok(Some(found))
    }

    /// Checks a change to a package: the key it is stored under when the repository exists and
    /// the protection rules allow `role` to perform `action`; `None` when there is nothing to
    /// change (no such repository). A name the format refuses is [`Error::PackageInvalid`].
    async fn allow(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        name: &str,
        action: Action,
        role: Option<Role>,
    ) -> Result<Option<String>> {
        let key = rules.package_key(name)?;
        let Some(found) = self.changed_repository(rules, repository, action).await? else {
            return Ok(None);
        };
        protect(&found, &key, name, action, role)?;
        Ok(Some(key))
    }

    /// Opens a file of a repository ([`Packages::file`]) for reading (the whole file, or a
    /// range).
    pub async fn read(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        blob: &BlobRef,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        // Every kind keeps its files in the shared blob store.
        self.source(repository, rules.format()).await?;
        self.blobs.read(&blob.digest, range).await
    }
}

/// A package with its versions in the format's order.
fn in_order(rules: &dyn FormatRules, mut package: Package) -> Package {
    let versions = std::mem::take(&mut package.versions);
    package.versions = crate::values::tolerant_sort(versions, &|a, b| {
        rules.compare_versions(&a.version, &b.version)
    });
    package
}

/// Applies a repository's protection rules to a package, matched against the name it is stored
/// under and the name as the client sent it (a PyPI rule for `Django.*` protects `django`).
fn protect(
    repository: &PackageRepository,
    key: &str,
    sent: &str,
    action: Action,
    role: Option<Role>,
) -> Result<()> {
    repository.settings.check_protection(key, action, role)?;
    if sent != key {
        repository.settings.check_protection(sent, action, role)?;
    }
    Ok(())
}

fn unknown_version(name: &str, version: &str) -> Error {
    Error::PackageUnknown {
        what: format!("version {version} of {name}"),
    }
}
