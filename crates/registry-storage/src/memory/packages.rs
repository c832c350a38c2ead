//! Package repositories and packages ([`PackageMetadata`]) in the memory metadata store, under
//! the same lock as everything else.

use std::collections::BTreeMap;

use async_trait::async_trait;
use registry_core::{
    BlobRecord, BlobRef, Digest, Error, Package, PackageFile, PackageMetadata, PackageRepository,
    PackageSummary, PackageUpdate, PackageVersion, Page, Publish, PublishMode, PublishOutcome,
    RepositorySettings, Result, ReviewEvent, ReviewTarget, Timestamp, VersionStatus,
};

use super::{MemoryMetadataStore, MetaState, lock};
use crate::packages::{check_publish, unknown};

/// Package repositories and their packages.
#[derive(Debug, Default)]
pub(super) struct PackageState {
    repositories: BTreeMap<String, PackageRepository>,
    packages: BTreeMap<(String, String), Package>,
    /// Counts package mutations, in any repository: every repository's revision (exact enough:
    /// a revision may change more often than its repository does).
    changes: u64,
}

impl PackageState {
    /// Whether any package file or sidecar references the blob.
    /// Whether a package file (or its sidecar) holds the blob.
    pub(super) fn references(&self, digest: &Digest) -> bool {
        self.packages.values().any(|p| {
            p.versions
                .iter()
                .flat_map(|v| &v.files)
                .any(|f| file_blobs(f).any(|b| b == digest))
        })
    }
}

fn file_blobs(file: &PackageFile) -> impl Iterator<Item = &Digest> {
    std::iter::once(&file.blob.digest).chain(file.sidecar.as_ref().map(|s| &s.digest))
}

/// Queues the blobs of files that went away.
fn queue_files(state: &mut MetaState, files: &[PackageFile], due: Timestamp) {
    for file in files {
        for digest in file_blobs(file) {
            state.queue(
                ReviewTarget::Blob {
                    digest: digest.clone(),
                },
                ReviewEvent::PackageFileDeleted,
                due,
            );
        }
    }
}

/// Marks a package changed: its update time and revision.
fn touch(package: &mut Package) {
    package.updated_at = Timestamp::now();
    package.revision = registry_core::package::new_revision();
}

fn key(repository: &str, name: &str) -> (String, String) {
    (repository.to_owned(), name.to_owned())
}

#[async_trait]
impl PackageMetadata for MemoryMetadataStore {
    async fn ensure_package_repository(
        &self,
        repository: &PackageRepository,
    ) -> Result<PackageRepository> {
        let mut state = lock(&self.state);
        Ok(state
            .packages
            .repositories
            .entry(repository.name.clone())
            .or_insert_with(|| repository.clone())
            .clone())
    }

    async fn package_repository(&self, name: &str) -> Result<Option<PackageRepository>> {
        Ok(lock(&self.state).packages.repositories.get(name).cloned())
    }

    async fn set_package_repository_settings(
        &self,
        name: &str,
        settings: &RepositorySettings,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        let repository = state
            .packages
            .repositories
            .get_mut(name)
            .ok_or_else(|| unknown(format!("package repository {name}")))?;
        repository.settings = settings.clone();
        Ok(())
    }

    async fn list_package_repositories(&self, page: &Page) -> Result<Vec<PackageRepository>> {
        let state = lock(&self.state);
        Ok(state
            .packages
            .repositories
            .values()
            .filter(|r| {
                page.last
                    .as_deref()
                    .is_none_or(|last| r.name.as_str() > last)
            })
            .take(page.limit)
            .cloned()
            .collect())
    }

    async fn record_package_blob(&self, blob: &BlobRef) -> Result<()> {
        let mut state = self
            .lock_unclaimed(std::slice::from_ref(&blob.digest))
            .await;
        let now = Timestamp::now();
        state
            .blobs
            .entry(blob.digest.clone())
            .or_insert(BlobRecord {
                digest: blob.digest.clone(),
                size: blob.size,
                created_at: now,
            });
        state.queue(
            ReviewTarget::Blob {
                digest: blob.digest.clone(),
            },
            ReviewEvent::BlobUploaded,
            now.after(self.review_delay),
        );
        Ok(())
    }

    async fn publish(&self, publish: &Publish) -> Result<PublishOutcome> {
        let digests: Vec<Digest> = publish
            .files
            .iter()
            .flat_map(|f| std::iter::once(&f.blob).chain(&f.sidecar))
            .map(|b| b.digest.clone())
            .collect();
        let mut state = self.lock_unclaimed(&digests).await;
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        if !state
            .packages
            .repositories
            .contains_key(&publish.repository)
        {
            return Err(unknown(format!(
                "package repository {}",
                publish.repository
            )));
        }
        if let Some(missing) = digests.iter().find(|d| !state.blobs.contains_key(*d)) {
            return Err(Error::BlobUnknown {
                digest: missing.clone(),
            });
        }
        let now = Timestamp::now();
        let due = now.after(self.review_delay);
        let key = key(&publish.repository, &publish.name);
        let existing: Option<Vec<String>> = state
            .packages
            .packages
            .get(&key)
            .and_then(|p| p.version(&publish.version))
            .map(|v| v.files.iter().map(|f| f.name.clone()).collect());
        let plan = check_publish(existing.as_deref(), publish)?;
        let package = state
            .packages
            .packages
            .entry(key)
            .or_insert_with(|| Package {
                name: publish.name.clone(),
                display_name: publish.display_name.clone(),
                versions: Vec::new(),
                tags: BTreeMap::new(),
                created_at: now,
                updated_at: now,
                revision: String::new(),
            });
        touch(package);
        let index = match package
            .versions
            .iter()
            .position(|v| v.version == publish.version)
        {
            Some(index) => index,
            None => {
                package.versions.push(PackageVersion {
                    version: publish.version.clone(),
                    status: VersionStatus::Default,
                    metadata: publish.metadata.clone(),
                    files: Vec::new(),
                    created_at: now,
                    updated_at: now,
                });
                package.versions.len() - 1
            }
        };
        let version = &mut package.versions[index];
        if publish.mode != PublishMode::AttachFiles {
            version.metadata = publish.metadata.clone();
        }
        version.updated_at = now;
        let mut gone = Vec::new();
        if publish.mode == PublishMode::NewVersion && !plan.version_created {
            gone.append(&mut version.files);
        }
        for file in &publish.files {
            if let Some(at) = version.files.iter().position(|f| f.name == file.name) {
                gone.push(version.files.remove(at));
            }
            version.files.push(PackageFile {
                name: file.name.clone(),
                blob: file.blob.clone(),
                digests: file.digests.clone(),
                sidecar: file.sidecar.clone(),
                attributes: file.attributes.clone(),
                created_at: now,
            });
        }
        for tag in &publish.tags {
            package.tags.insert(tag.clone(), publish.version.clone());
        }
        // Files replaced by the same content are not gone.
        gone.retain(|old| {
            !publish
                .files
                .iter()
                .any(|new| new.blob == old.blob && new.sidecar == old.sidecar)
        });
        queue_files(&mut state, &gone, due);
        Ok(PublishOutcome {
            version_created: plan.version_created,
            replaced: plan.replaced,
        })
    }

    async fn package(&self, repository: &str, name: &str) -> Result<Option<Package>> {
        Ok(lock(&self.state)
            .packages
            .packages
            .get(&key(repository, name))
            .cloned())
    }

    async fn package_file(
        &self,
        repository: &str,
        name: &str,
        version: Option<&str>,
        file: &str,
    ) -> Result<Option<(String, PackageFile)>> {
        let state = lock(&self.state);
        let Some(package) = state.packages.packages.get(&key(repository, name)) else {
            return Ok(None);
        };
        Ok(package
            .versions
            .iter()
            .filter(|v| version.is_none_or(|wanted| v.version == wanted))
            .find_map(|v| {
                v.files
                    .iter()
                    .find(|f| f.name == file)
                    .map(|f| (v.version.clone(), f.clone()))
            }))
    }

    async fn repository_revision(&self, repository: &str) -> Result<Option<u64>> {
        let state = lock(&self.state);
        Ok(state
            .packages
            .repositories
            .contains_key(repository)
            .then_some(state.packages.changes))
    }

    async fn package_revision(&self, repository: &str, name: &str) -> Result<Option<String>> {
        Ok(lock(&self.state)
            .packages
            .packages
            .get(&key(repository, name))
            .map(|p| p.revision.clone()))
    }

    async fn list_packages(
        &self,
        repository: &str,
        contains: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PackageSummary>> {
        let state = lock(&self.state);
        let start = key(repository, page.last.as_deref().unwrap_or(""));
        Ok(state
            .packages
            .packages
            .range(start..)
            .take_while(|((r, _), _)| r == repository)
            .filter(|((_, name), _)| page.last.as_deref() != Some(name.as_str()))
            .filter(|((_, name), _)| contains.is_none_or(|c| name.contains(c)))
            .take(page.limit)
            .map(|(_, p)| PackageSummary {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                versions: p.versions.len() as u64,
                updated_at: p.updated_at,
            })
            .collect())
    }

    async fn list_package_names(&self, repository: &str, page: &Page) -> Result<Vec<String>> {
        Ok(self
            .list_packages(repository, None, page)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    async fn set_version_status(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        status: &VersionStatus,
        metadata: Option<&str>,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let found = state
            .packages
            .packages
            .get_mut(&key(repository, name))
            .and_then(|p| p.versions.iter_mut().find(|v| v.version == version))
            .ok_or_else(|| unknown(format!("version {version} of {name}")))?;
        found.status = status.clone();
        if let Some(metadata) = metadata {
            found.metadata = metadata.to_owned();
        }
        found.updated_at = Timestamp::now();
        if let Some(package) = state.packages.packages.get_mut(&key(repository, name)) {
            touch(package);
        }
        Ok(())
    }

    async fn delete_version(&self, repository: &str, name: &str, version: &str) -> Result<()> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let key = key(repository, name);
        let package = state
            .packages
            .packages
            .get_mut(&key)
            .ok_or_else(|| unknown(format!("package {name}")))?;
        let at = package
            .versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(|| unknown(format!("version {version} of {name}")))?;
        let removed = package.versions.remove(at);
        package.tags.retain(|_, v| v != version);
        touch(package);
        if package.versions.is_empty() {
            state.packages.packages.remove(&key);
        }
        queue_files(&mut state, &removed.files, due);
        Ok(())
    }

    async fn delete_package_file(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        file: &str,
    ) -> Result<()> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let key = key(repository, name);
        let missing = || unknown(format!("file {file} of {name} {version}"));
        let package = state.packages.packages.get_mut(&key).ok_or_else(missing)?;
        let at = package
            .versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(missing)?;
        let files = &mut package.versions[at].files;
        let removed = files.remove(
            files
                .iter()
                .position(|f| f.name == file)
                .ok_or_else(missing)?,
        );
        if files.is_empty() {
            package.versions.remove(at);
            package.tags.retain(|_, v| v != version);
        }
        touch(package);
        if package.versions.is_empty() {
            state.packages.packages.remove(&key);
        }
        queue_files(&mut state, &[removed], due);
        Ok(())
    }

    async fn delete_package(&self, repository: &str, name: &str) -> Result<bool> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let Some(package) = state.packages.packages.remove(&key(repository, name)) else {
            return Ok(false);
        };
        let files: Vec<PackageFile> = package.versions.into_iter().flat_map(|v| v.files).collect();
        queue_files(&mut state, &files, due);
        Ok(true)
    }

    async fn update_package(&self, update: &PackageUpdate) -> Result<()> {
        let due = Timestamp::now().after(self.review_delay);
        let name = &update.name;
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let key = key(&update.repository, name);
        let package = state
            .packages
            .packages
            .get_mut(&key)
            .ok_or_else(|| unknown(format!("package {name}")))?;
        if let Some(expected) = &update.expected_revision
            && package.revision != *expected
        {
            return Err(Error::PackageConflict {
                reason: format!("{name} changed since revision {expected}; fetch it again"),
            });
        }
        // Everything is checked before anything changes: the update is whole or nothing.
        let named = update
            .statuses
            .iter()
            .map(|(v, _)| v)
            .chain(update.set_tags.iter().map(|(_, v)| v))
            .chain(&update.delete_versions);
        for version in named {
            if !package.versions.iter().any(|v| v.version == *version) {
                return Err(unknown(format!("version {version} of {name}")));
            }
        }
        let now = Timestamp::now();
        for (version, status) in &update.statuses {
            if let Some(found) = package.versions.iter_mut().find(|v| v.version == *version) {
                found.status = status.clone();
                found.updated_at = now;
            }
        }
        for tag in &update.delete_tags {
            package.tags.remove(tag);
        }
        for (tag, version) in &update.set_tags {
            package.tags.insert(tag.clone(), version.clone());
        }
        let mut removed = Vec::new();
        for version in &update.delete_versions {
            if let Some(at) = package.versions.iter().position(|v| v.version == *version) {
                removed.extend(package.versions.remove(at).files);
                package.tags.retain(|_, v| v != version);
            }
        }
        touch(package);
        if package.versions.is_empty() {
            state.packages.packages.remove(&key);
        }
        queue_files(&mut state, &removed, due);
        Ok(())
    }

    async fn set_package_tag(
        &self,
        repository: &str,
        name: &str,
        tag: &str,
        version: &str,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let package = state
            .packages
            .packages
            .get_mut(&key(repository, name))
            .filter(|p| p.version(version).is_some())
            .ok_or_else(|| unknown(format!("version {version} of {name}")))?;
        package.tags.insert(tag.to_owned(), version.to_owned());
        touch(package);
        Ok(())
    }

    async fn delete_package_tag(&self, repository: &str, name: &str, tag: &str) -> Result<bool> {
        let mut state = lock(&self.state);
        // Any mutation may change the repository's packages (a failed one only costs a cache).
        state.packages.changes += 1;
        let Some(package) = state.packages.packages.get_mut(&key(repository, name)) else {
            return Ok(false);
        };
        let removed = package.tags.remove(tag).is_some();
        if removed {
            touch(package);
        }
        Ok(removed)
    }

    async fn blob_in_packages(&self, digest: &Digest) -> Result<bool> {
        Ok(lock(&self.state).held_beyond_manifests(digest))
    }
}
