//! Virtual image registries ([`OciVirtual`]): the repositories under a virtual prefix
//! (`all/library/alpine`) read the same name under each member prefix in order — hosted
//! namespaces (`corp`: `corp/library/alpine`) and pull-through caches (`hub`).
//!
//! Resolution, for a repository name:
//!
//! 1. **Hosted members first.** The first hosted member where the repository exists answers
//!    alone, for its manifests and blobs: a name pushed here is never completed from an
//!    upstream (dependency confusion), even for a tag it lacks.
//! 2. **Otherwise the caches in order**: the first whose upstream has the manifest answers; a
//!    cache whose upstream fails fails the read (no fall-through to a later, public one). A
//!    blob comes from the first cache holding it, else from the first whose upstream has it.
//!
//! Nothing is stored under the virtual prefix itself; pushes to it are refused.

use serde::{Deserialize, Serialize};

use super::OciRegistry;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::metadata::{BlobRecord, ManifestRecord};
use crate::name::{Reference, RepositoryName};

/// A virtual image registry: the repositories under `prefix/` read the same name under each of
/// `members` (hosted namespaces and pull-through caches' prefixes), in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciVirtual {
    /// The first component(s) of the repositories it serves (`all`: `all/library/alpine`).
    pub prefix: String,
    /// Member prefixes, in order.
    pub members: Vec<String>,
}

/// What a virtual repository's name resolves to.
enum Member {
    /// A hosted member's repository of that name.
    Hosted(RepositoryName),
    /// The caches' repositories of that name, in order.
    Caches(Vec<RepositoryName>),
}

impl OciRegistry {
    /// Serves the repositories under each virtual registry's prefix from its members (none by
    /// default). Pull-through caches named as members must be configured first
    /// ([`OciRegistry::with_pull_through`]).
    ///
    /// Errors: [`Error::PolicyInvalid`] for a prefix that is not a repository name, no
    /// members, a member that is itself virtual or overlaps the prefix, or prefixes of
    /// virtual registries or caches that overlap.
    pub fn with_virtual(mut self, virtuals: Vec<OciVirtual>) -> Result<Self> {
        let invalid = |reason: String| Err(Error::PolicyInvalid { reason });
        let overlaps = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        let overlap = |a: &str, b: &str| overlaps(a, b) || overlaps(b, a);
        for (i, virtual_registry) in virtuals.iter().enumerate() {
            let prefix = &virtual_registry.prefix;
            if RepositoryName::parse(prefix).is_err() {
                return invalid(format!(
                    "the virtual prefix {prefix:?} is not a repository name"
                ));
            }
            if virtual_registry.members.is_empty() {
                return invalid(format!("the virtual registry {prefix} has no members"));
            }
            for member in &virtual_registry.members {
                if RepositoryName::parse(member).is_err() {
                    return invalid(format!(
                        "member {member:?} of {prefix} is not a repository name"
                    ));
                }
                if overlap(member, prefix) || virtuals.iter().any(|v| overlap(&v.prefix, member)) {
                    return invalid(format!(
                        "member {member} of {prefix} overlaps a virtual registry's prefix"
                    ));
                }
            }
            let taken = virtuals[..i].iter().map(|v| v.prefix.as_str());
            let caches = self.pull_through.iter().map(|c| c.prefix.as_str());
            if let Some(other) = taken.chain(caches).find(|o| overlap(o, prefix)) {
                return invalid(format!("the virtual prefix {prefix} overlaps {other}"));
            }
        }
        self.virtuals = std::sync::Arc::new(virtuals);
        Ok(self)
    }

    /// The virtual registries.
    pub fn virtual_registries(&self) -> &[OciVirtual] {
        &self.virtuals
    }

    /// The virtual registry a repository is under, and the name below its prefix.
    fn virtual_of<'a>(
        &'a self,
        repository: &'a RepositoryName,
    ) -> Option<(&'a OciVirtual, &'a str)> {
        self.virtuals.iter().find_map(|v| {
            let name = repository
                .as_str()
                .strip_prefix(v.prefix.as_str())?
                .strip_prefix('/')?;
            Some((v, name))
        })
    }

    /// Whether a repository is under a virtual registry.
    pub(super) fn is_virtual(&self, repository: &RepositoryName) -> bool {
        self.virtual_of(repository).is_some()
    }

    /// Refuses a push into a virtual registry's repository.
    pub(super) fn refuse_virtual(&self, repository: &RepositoryName) -> Result<()> {
        match self.virtual_of(repository) {
            Some((v, _)) => Err(Error::Denied {
                reason: format!(
                    "{repository} is read from {}; push to one of its members instead",
                    v.members.join(", ")
                ),
            }),
            None => Ok(()),
        }
    }

    /// Where a virtual repository's name resolves (see the module).
    async fn resolve(&self, repository: &RepositoryName) -> Result<Member> {
        let (virtual_registry, name) = self.virtual_of(repository).expect("a virtual repository");
        let mut caches = Vec::new();
        for member in &virtual_registry.members {
            let Ok(target) = RepositoryName::parse(&format!("{member}/{name}")) else {
                continue;
            };
            if self.is_pulled(&target) {
                caches.push(target);
                continue;
            }
            if self.metadata.repository_exists(&target).await? {
                return Ok(Member::Hosted(target));
            }
        }
        Ok(Member::Caches(caches))
    }

    /// A manifest of a virtual repository (see the module).
    pub(super) async fn virtual_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        let unknown = || Error::ManifestUnknown {
            repository: repository.to_string(),
            reference: reference.to_string(),
        };
        match self.resolve(repository).await? {
            Member::Hosted(target) => {
                self.stored_manifest(&target, reference)
                    .await
                    .map_err(|e| match e {
                        Error::ManifestUnknown { .. } => unknown(),
                        other => other,
                    })
            }
            Member::Caches(caches) => {
                for cache in caches {
                    match self.pulled_manifest(&cache, reference).await {
                        Err(Error::ManifestUnknown { .. }) => continue,
                        other => return other,
                    }
                }
                Err(unknown())
            }
        }
    }

    /// A blob of a virtual repository (see the module).
    pub(super) async fn virtual_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobRecord> {
        match self.resolve(repository).await? {
            Member::Hosted(target) => self.stored_blob(&target, digest).await,
            Member::Caches(caches) => {
                for cache in &caches {
                    if let Ok(held) = self.stored_blob(cache, digest).await {
                        return Ok(held);
                    }
                }
                for cache in &caches {
                    match self.pulled_blob(cache, digest).await {
                        Err(Error::BlobUnknown { .. }) => continue,
                        other => return other,
                    }
                }
                Err(Error::BlobUnknown {
                    digest: digest.clone(),
                })
            }
        }
    }
}
