//! Reading through a virtual repository: its members, hosted and proxy, in the order they are
//! listed, read as one.
//!
//! Resolution, for a package name:
//!
//! 1. **Hosted members first.** When any hosted member has the package, the virtual
//!    repository's package is the hosted members' versions merged (an earlier member's
//!    version wins over a later one's) and nothing from an upstream is added: a name published
//!    here is never completed by an upstream's versions, so nobody can slip a version of an
//!    internal package in through a public registry (dependency confusion).
//! 2. **Otherwise the proxy members**, merged the same way, in order. A proxy member whose
//!    upstream fails (nothing cached) is skipped while another answers; when none answers,
//!    the first failure is the answer.
//!
//! A file is read from the member that provides its package by the same rule; among proxy
//! members, one that has the file cached already serves it before the others are asked (as a
//! peer's virtual registries do), then the members are walked in order.

use std::sync::Arc;

use sha2::Digest as _;

use super::Packages;
use super::format::FormatRules;
use crate::error::{Error, Result};
use crate::package::{Package, PackageFile, PackageRepository, PackageSummary, RepositoryKind};
use crate::proxy::CacheEntryKind;
use crate::values::Page;

/// A member as resolved for one read.
struct Member {
    repository: Arc<PackageRepository>,
}

impl Packages {
    async fn members(&self, repository: &PackageRepository) -> Result<Vec<Member>> {
        let mut members = Vec::with_capacity(repository.settings.members.len());
        for name in &repository.settings.members {
            // A member deleted or changed since is skipped, never followed elsewhere.
            match self.repository(name).await? {
                Some(found) if found.format == repository.format => members.push(Member {
                    repository: Arc::new(found),
                }),
                _ => {}
            }
        }
        Ok(members)
    }

    /// The package stored as `key` in a virtual repository, resolved as the module says, with
    /// a revision made of its members' revisions.
    /// Whether the package came from proxy members is said beside it.
    pub(super) async fn virtual_package(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        key: &str,
    ) -> Result<Option<(Package, bool)>> {
        let members = self.members(repository).await?;
        let mut hosted = Vec::new();
        for member in members
            .iter()
            .filter(|m| m.repository.kind == RepositoryKind::Hosted)
        {
            if let Some(package) = self.metadata.package(&member.repository.name, key).await? {
                hosted.push(package);
            }
        }
        if !hosted.is_empty() {
            return Ok(Some((merge(hosted), false)));
        }
        let mut found = Vec::new();
        let mut failure = None;
        for member in members
            .iter()
            .filter(|m| m.repository.kind == RepositoryKind::Proxy)
        {
            match self.upstream_package(rules, &member.repository, key).await {
                Ok(Some(package)) => found.push(package.package.clone()),
                Ok(None) => {}
                Err(error @ Error::Upstream { .. }) => {
                    failure.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        match (found.is_empty(), failure) {
            (true, Some(failure)) => Err(failure),
            (true, None) => Ok(None),
            (false, _) => Ok(Some((merge(found), true))),
        }
    }

    /// A file of the package stored as `key` in a virtual repository, with its version.
    pub(super) async fn virtual_file(
        &self,
        rules: &dyn FormatRules,
        read_as: &str,
        repository: &PackageRepository,
        key: &str,
        version: Option<&str>,
        file: &str,
    ) -> Result<Option<(String, PackageFile)>> {
        let members = self.members(repository).await?;
        let mut in_hosted = false;
        for member in members
            .iter()
            .filter(|m| m.repository.kind == RepositoryKind::Hosted)
        {
            let name = &member.repository.name;
            if let Some(found) = self.metadata.package_file(name, key, version, file).await? {
                self.guard_hosted(rules, read_as, name, key, &found.0)
                    .await?;
                return Ok(Some(found));
            }
            in_hosted = in_hosted || self.metadata.package_revision(name, key).await?.is_some();
        }
        if in_hosted {
            // The package is published here: upstreams are not asked for its files.
            return Ok(None);
        }
        let proxies: Vec<&Member> = members
            .iter()
            .filter(|m| m.repository.kind == RepositoryKind::Proxy)
            .collect();
        // A member that has the file cached serves it first.
        let mut declared = Vec::new();
        let mut failure = None;
        for member in &proxies {
            let package = match self.upstream_package(rules, &member.repository, key).await {
                Ok(Some(package)) => package,
                Ok(None) => continue,
                Err(error @ Error::Upstream { .. }) => {
                    failure.get_or_insert(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Some(remote) = package
                .files
                .iter()
                .find(|f| f.name == file && version.is_none_or(|v| f.version == v))
                .cloned()
            else {
                continue;
            };
            self.guard_upstream(rules, read_as, &package, &remote.version)
                .await?;
            if self.is_cached(&member.repository, &remote.url).await? {
                let found = self
                    .upstream_file(rules, &member.repository, &remote)
                    .await?;
                return Ok(Some((remote.version, found)));
            }
            declared.push((Arc::clone(&member.repository), remote));
        }
        for (member, remote) in declared {
            match self.upstream_file(rules, &member, &remote).await {
                Ok(found) => return Ok(Some((remote.version, found))),
                Err(error @ Error::Upstream { .. }) => {
                    failure.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        match failure {
            Some(failure) => Err(failure),
            None => Ok(None),
        }
    }

    async fn is_cached(&self, repository: &PackageRepository, url: &str) -> Result<bool> {
        let Some(settings) = &repository.settings.upstream else {
            return Ok(false);
        };
        let Ok(path) = super::proxy::remote_path(settings, url) else {
            return Ok(false);
        };
        Ok(self
            .metadata
            .cache_entry(&repository.name, &path)
            .await?
            .is_some_and(|e| e.kind == CacheEntryKind::File))
    }

    /// The packages of a virtual repository's hosted members, by name, one page at a time
    /// (proxy members list nothing: their upstreams are not enumerated).
    pub(super) async fn virtual_list(
        &self,
        repository: &PackageRepository,
        contains: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PackageSummary>> {
        let mut all: Vec<PackageSummary> = Vec::new();
        for member in self.members(repository).await? {
            if member.repository.kind != RepositoryKind::Hosted {
                continue;
            }
            // Each member's page starts after the same name, so the merged first `limit`
            // names are the page.
            let listed = self
                .metadata
                .list_packages(&member.repository.name, contains, page)
                .await?;
            for summary in listed {
                if !all.iter().any(|s| s.name == summary.name) {
                    all.push(summary);
                }
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.truncate(page.limit);
        Ok(all)
    }

    /// A virtual repository's revision: changes whenever a hosted member's does.
    pub(super) async fn virtual_revision(&self, repository: &PackageRepository) -> Result<u64> {
        let mut revision = 0u64;
        for member in self.members(repository).await? {
            if member.repository.kind == RepositoryKind::Hosted {
                let member_revision = self
                    .metadata
                    .repository_revision(&member.repository.name)
                    .await?
                    .unwrap_or(0);
                revision = revision
                    .wrapping_mul(1_000_003)
                    .wrapping_add(member_revision);
            }
        }
        Ok(revision)
    }

    /// The revision of the package stored as `key` in a virtual repository, as
    /// [`Packages::virtual_package`] would give it, from the members' revisions alone.
    pub(super) async fn virtual_package_revision(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        key: &str,
    ) -> Result<Option<String>> {
        let members = self.members(repository).await?;
        let mut revisions = Vec::new();
        for member in members
            .iter()
            .filter(|m| m.repository.kind == RepositoryKind::Hosted)
        {
            let name = &member.repository.name;
            revisions.extend(self.metadata.package_revision(name, key).await?);
        }
        if revisions.is_empty() {
            let mut failure = None;
            for member in members
                .iter()
                .filter(|m| m.repository.kind == RepositoryKind::Proxy)
            {
                match self.upstream_package(rules, &member.repository, key).await {
                    Ok(Some(package)) => revisions.push(package.package.revision.clone()),
                    Ok(None) => {}
                    Err(error @ Error::Upstream { .. }) => {
                        failure.get_or_insert(error);
                    }
                    Err(error) => return Err(error),
                }
            }
            if let (true, Some(failure)) = (revisions.is_empty(), failure) {
                return Err(failure);
            }
        }
        Ok((!revisions.is_empty()).then(|| combined(revisions.iter().map(String::as_str))))
    }
}

/// Merges the same package from several members, the first given first: versions an earlier
/// member has win, tags an earlier member sets win; the revision is made of every member's.
fn merge(mut packages: Vec<Package>) -> Package {
    let mut merged = packages.remove(0);
    let mut revisions = vec![merged.revision.clone()];
    for package in packages {
        revisions.push(package.revision);
        for version in package.versions {
            if merged.version(&version.version).is_none() {
                merged.versions.push(version);
            }
        }
        for (tag, version) in package.tags {
            merged.tags.entry(tag).or_insert(version);
        }
        merged.created_at = merged.created_at.min(package.created_at);
        merged.updated_at = merged.updated_at.max(package.updated_at);
    }
    merged.revision = combined(revisions.iter().map(String::as_str));
    merged
}

fn combined<'a>(revisions: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = sha2::Sha256::new();
    for revision in revisions {
        hasher.update(revision.as_bytes());
        hasher.update([0]);
    }
    format!("v{}", &hex::encode(hasher.finalize())[..32])
}
