//! Reading through a virtual repository: its members, hosted and proxy, in the order they are
//! listed, read as one.
//!
//! Resolution, for a package name:
//!
//! 1. **Hosted members first.** When any hosted member has the package, the virtual
//!    repository's package is the hosted members' versions merged (an earlier member's
//!    version wins over a later one's) and no upstream is asked: a name published here is never
//!    completed by an upstream's versions, so nobody can slip a version of an internal package
//!    in through a public registry (dependency confusion).
//! 2. **Otherwise the first proxy member whose upstream has the package** provides it, alone:
//!    proxies are never merged, so a later, public upstream cannot add versions to a name an
//!    earlier (private) upstream serves. A member whose upstream fails with nothing cached
//!    fails the read rather than letting a later member answer for it.
//!
//! Among hosted members a version belongs to the first member that has it (blocked there by
//! the firewall or not), and its files come from that member only. A file comes from the
//! member that provides its package. This differs from a peer's virtual
//! registries, which serve any member's cached copy first and walk the members only on a
//! miss: that lets whichever member was read first decide a name for good, and lets a public
//! upstream answer for a private one that is briefly down.
//!
//! The firewall applies each member's rules to what the member provides, then the virtual
//! repository's own rules to the whole.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::Digest as _;

use super::Packages;
use super::format::{FormatRules, UpstreamPackage};
use crate::error::Result;
use crate::package::{Package, PackageFile, PackageRepository, PackageSummary, RepositoryKind};
use crate::values::Page;

/// Who provides a package read through a virtual repository.
enum Provider {
    /// Hosted members that have it, in member order.
    Hosted(Vec<(String, Package)>),
    /// The first proxy member whose upstream has it.
    Proxy(Arc<PackageRepository>, Arc<UpstreamPackage>),
}

impl Packages {
    /// A virtual repository's members, in order, as read within the last seconds (a member
    /// deleted or of another format since is skipped, never followed elsewhere).
    async fn members(&self, repository: &PackageRepository) -> Result<Vec<Arc<PackageRepository>>> {
        let mut members = Vec::with_capacity(repository.settings.members.len());
        for name in &repository.settings.members {
            match self.configured(name).await {
                Ok(found) if found.format == repository.format => members.push(found),
                Ok(_) | Err(crate::error::Error::PackageUnknown { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(members)
    }

    /// Who provides the package stored as `key`, as the module says.
    async fn provider(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        key: &str,
    ) -> Result<Option<Provider>> {
        let members = self.members(repository).await?;
        // That no hosted member has the name is remembered for 2 s (a publish on this
        // instance forgets it at once; on another, it is seen within that time).
        let absent_key = (repository.name.clone(), key.to_owned());
        if !self.proxy.hosted_absent(&absent_key) {
            let mut hosted = Vec::new();
            for member in members.iter().filter(|m| m.kind == RepositoryKind::Hosted) {
                if let Some(package) = self.metadata.package(&member.name, key).await? {
                    hosted.push((member.name.clone(), package));
                }
            }
            if !hosted.is_empty() {
                return Ok(Some(Provider::Hosted(hosted)));
            }
            self.proxy.remember_hosted_absent(absent_key);
        }
        for member in members.iter().filter(|m| m.kind == RepositoryKind::Proxy) {
            if let Some(package) = self.upstream_package(rules, member, key).await? {
                return Ok(Some(Provider::Proxy(Arc::clone(member), package)));
            }
        }
        Ok(None)
    }

    /// The package stored as `key` in a virtual repository, screened by its members' rules,
    /// and whether it came from an upstream.
    pub(super) async fn virtual_package(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        key: &str,
    ) -> Result<Option<(Package, bool)>> {
        Ok(match self.provider(rules, repository, key).await? {
            None => None,
            Some(Provider::Hosted(found)) => {
                // A version an earlier member has is that member's, blocked there or not: a
                // later member's same version never stands in for it.
                let mut earlier = HashSet::new();
                let mut screened = Vec::with_capacity(found.len());
                for (member, mut package) in found {
                    let here: Vec<String> =
                        package.versions.iter().map(|v| v.version.clone()).collect();
                    package.versions.retain(|v| !earlier.contains(&v.version));
                    earlier.extend(here);
                    self.screen(rules, &member, &mut package, false).await?;
                    screened.push(package);
                }
                Some((merge(screened), false))
            }
            Some(Provider::Proxy(member, package)) => {
                let mut package = package.package.clone();
                self.screen(rules, &member.name, &mut package, true).await?;
                package.revision = combined([package.revision.as_str()]);
                Some((package, true))
            }
        })
    }

    /// The revision [`Packages::virtual_package`] would give, from the members' revisions
    /// alone.
    pub(super) async fn virtual_package_revision(
        &self,
        rules: &dyn FormatRules,
        repository: &PackageRepository,
        key: &str,
    ) -> Result<Option<String>> {
        let members = self.members(repository).await?;
        let mut revisions = Vec::new();
        // The same memory as `provider`, so a revision always names what is rendered.
        let absent_key = (repository.name.clone(), key.to_owned());
        let hosted = members
            .iter()
            .filter(|m| m.kind == RepositoryKind::Hosted && !self.proxy.hosted_absent(&absent_key));
        for member in hosted {
            if let Some(revision) = self.metadata.package_revision(&member.name, key).await? {
                revisions.push(self.screened_revision(&member.name, revision).await?);
            }
        }
        if revisions.is_empty() {
            for member in members.iter().filter(|m| m.kind == RepositoryKind::Proxy) {
                if let Some(package) = self.upstream_package(rules, member, key).await? {
                    let revision = package.package.revision.clone();
                    revisions.push(self.screened_revision(&member.name, revision).await?);
                    break;
                }
            }
        }
        Ok((!revisions.is_empty()).then(|| combined(revisions.iter().map(String::as_str))))
    }

    /// A file of the package stored as `key` in a virtual repository read as `read_as`, with
    /// its version, from the member that provides the package; checked against the member's
    /// rules and the virtual repository's before anything is fetched.
    pub(super) async fn virtual_file(
        &self,
        rules: &dyn FormatRules,
        read_as: &str,
        repository: &PackageRepository,
        key: &str,
        version: Option<&str>,
        file: &str,
    ) -> Result<Option<(String, PackageFile)>> {
        match self.provider(rules, repository, key).await? {
            None => Ok(None),
            Some(Provider::Hosted(found)) => {
                for (i, (member, _)) in found.iter().enumerate() {
                    if let Some(hit) = self
                        .metadata
                        .package_file(member, key, version, file)
                        .await?
                    {
                        // Its version is an earlier member's: that member's files are the
                        // version's, and this one is not among them.
                        if found[..i].iter().any(|(_, p)| p.version(&hit.0).is_some()) {
                            continue;
                        }
                        self.guard_hosted(rules, &[member, read_as], member, key, &hit.0)
                            .await?;
                        return Ok(Some(hit));
                    }
                }
                Ok(None)
            }
            Some(Provider::Proxy(member, package)) => {
                self.proxied_file(
                    rules,
                    &[&member.name, read_as],
                    &member,
                    Some(&package),
                    (key, version, file),
                )
                .await
            }
        }
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
            if member.kind != RepositoryKind::Hosted {
                continue;
            }
            // Each member's page starts after the same name, so the merged first `limit`
            // names are the page.
            let listed = self
                .metadata
                .list_packages(&member.name, contains, page)
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
        let mut revisions = Vec::new();
        for member in self.members(repository).await? {
            if member.kind == RepositoryKind::Hosted {
                let revision = self.metadata.repository_revision(&member.name).await?;
                revisions.push(format!("{}:{}", member.name, revision.unwrap_or(0)));
            }
        }
        let digest = sha2::Sha256::digest(revisions.join("\0").as_bytes());
        Ok(u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")))
    }
}

/// Merges the same package from several hosted members, the first given first: versions an
/// earlier member has win, tags an earlier member sets win; the revision is made of every
/// member's.
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
    // A later member's tag naming a version it does not provide (an earlier member's, or
    // one the firewall left out) names nothing here.
    let kept: std::collections::HashSet<String> =
        merged.versions.iter().map(|v| v.version.clone()).collect();
    merged.tags.retain(|_, version| kept.contains(version));
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
