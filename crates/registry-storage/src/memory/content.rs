//! Repositories, blob links, manifests, tags and referrers ([`ContentMetadata`]) in the memory
//! metadata store.

use async_trait::async_trait;
use registry_core::{
    BlobRecord, ContentMetadata, Digest, Error, ManifestRecord, NewManifest, Page,
    PutManifestOutcome, Reference, Referrer, RepositoryName, Result, ReviewEvent, ReviewTarget,
    StorageUsage, Tag, TagChange, TagDetail, TagGuard, TagOrder, TagQuery, Timestamp, UsageScope,
};

use super::{
    MemoryMetadataStore, Repository, StoredManifest, lock, manifest_review, remove_manifest,
};

fn manifest_unknown(repository: &RepositoryName, reference: impl ToString) -> Error {
    Error::ManifestUnknown {
        repository: repository.to_string(),
        reference: reference.to_string(),
    }
}

/// The tags of one page of a detailed listing, in the listing's order: walked from the
/// marker through the repository's ordered tags (by name, or by publish time then name), so a
/// page costs its size, not the repository's.
fn page_of_tags<'a>(repo: &'a Repository, query: &TagQuery) -> Vec<&'a Tag> {
    use std::ops::Bound::{Excluded, Unbounded};
    let (marker, forward) = match (&query.after, &query.before) {
        (Some(after), _) => (Some(after), true),
        (None, Some(before)) => (Some(before), false),
        (None, None) => (None, true),
    };
    // Walking forward in an ascending listing (or backward in a descending one) goes up.
    let upward = forward != query.descending;
    let contains = |tag: &Tag| {
        query
            .contains
            .as_deref()
            .is_none_or(|c| tag.as_str().contains(c))
    };
    let walk: Box<dyn Iterator<Item = &Tag>> = match (query.order, marker) {
        (TagOrder::Name, None) if upward => Box::new(repo.tags.keys()),
        (TagOrder::Name, None) => Box::new(repo.tags.keys().rev()),
        (TagOrder::Name, Some(marker)) => match Tag::parse(&marker.name) {
            Ok(at) if upward => {
                Box::new(repo.tags.range((Excluded(at), Unbounded)).map(|(t, _)| t))
            }
            Ok(at) => Box::new(
                repo.tags
                    .range((Unbounded, Excluded(at)))
                    .rev()
                    .map(|(t, _)| t),
            ),
            // No tag has that name: compare as text.
            Err(_) if upward => Box::new(
                repo.tags
                    .keys()
                    .filter(move |t| t.as_str() > marker.name.as_str()),
            ),
            Err(_) => Box::new(
                repo.tags
                    .keys()
                    .rev()
                    .filter(move |t| t.as_str() < marker.name.as_str()),
            ),
        },
        (TagOrder::Published, None) if upward => Box::new(repo.by_published.iter().map(|(_, t)| t)),
        (TagOrder::Published, None) => Box::new(repo.by_published.iter().rev().map(|(_, t)| t)),
        (TagOrder::Published, Some(marker)) => {
            let at = marker.published_at;
            match Tag::parse(&marker.name) {
                Ok(name) if upward => Box::new(
                    repo.by_published
                        .range((Excluded((at, name)), Unbounded))
                        .map(|(_, t)| t),
                ),
                Ok(name) => Box::new(
                    repo.by_published
                        .range((Unbounded, Excluded((at, name))))
                        .rev()
                        .map(|(_, t)| t),
                ),
                Err(_) if upward => Box::new(
                    repo.by_published
                        .iter()
                        .filter(move |(p, t)| (*p, t.as_str()) > (at, marker.name.as_str()))
                        .map(|(_, t)| t),
                ),
                Err(_) => Box::new(
                    repo.by_published
                        .iter()
                        .rev()
                        .filter(move |(p, t)| (*p, t.as_str()) < (at, marker.name.as_str()))
                        .map(|(_, t)| t),
                ),
            }
        }
    };
    let mut page: Vec<&Tag> = walk.filter(|t| contains(t)).take(query.limit).collect();
    if !forward {
        // Fetched nearest-first going backwards; the page reads in the listing's order.
        page.reverse();
    }
    page
}

/// Entries of `items` strictly after `page.last`, at most `page.limit`.
fn paginate<'a, T: 'a + Clone>(
    items: impl Iterator<Item = (&'a str, &'a T)>,
    page: &Page,
) -> Vec<T> {
    items
        .filter(|(name, _)| page.last.as_deref().is_none_or(|last| *name > last))
        .take(page.limit)
        .map(|(_, item)| item.clone())
        .collect()
}

#[async_trait]
impl ContentMetadata for MemoryMetadataStore {
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        Ok(lock(&self.state).repositories.contains_key(repository))
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepositoryName>> {
        let state = lock(&self.state);
        Ok(paginate(
            state.repositories.keys().map(|name| (name.as_str(), name)),
            page,
        ))
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let mut state = self.lock_unclaimed(std::slice::from_ref(digest)).await;
        let now = Timestamp::now();
        state.blobs.entry(digest.clone()).or_insert(BlobRecord {
            digest: digest.clone(),
            size,
            created_at: now,
        });
        state
            .repositories
            .entry(repository.clone())
            .or_default()
            .linked_blobs
            .entry(digest.clone())
            .or_insert(now);
        let target = ReviewTarget::Blob {
            digest: digest.clone(),
        };
        state.queue(
            target,
            ReviewEvent::BlobUploaded,
            now.after(self.review_delay),
        );
        Ok(())
    }

    async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let state = lock(&self.state);
        let linked = state
            .repositories
            .get(repository)
            .is_some_and(|r| r.linked_blobs.contains_key(digest));
        Ok(linked.then(|| state.blobs.get(digest).cloned()).flatten())
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        Ok(lock(&self.state).blobs.get(digest).cloned())
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let now = Timestamp::now();
        let mut state = lock(&self.state);
        let removed = state
            .repositories
            .get_mut(repository)
            .is_some_and(|r| r.linked_blobs.remove(digest).is_some());
        if removed {
            let target = ReviewTarget::Blob {
                digest: digest.clone(),
            };
            state.queue(
                target,
                ReviewEvent::BlobUnlinked,
                now.after(self.review_delay),
            );
        }
        Ok(removed)
    }

    async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tags: &[Tag],
        guard: &TagGuard,
    ) -> Result<PutManifestOutcome> {
        let now = Timestamp::now();
        let due = now.after(self.review_delay);
        let mut state = lock(&self.state);
        let empty = Repository::default();
        let existing = state
            .repositories
            .get(&manifest.repository)
            .unwrap_or(&empty);
        if let Some(missing) = manifest
            .blobs
            .iter()
            .find(|d| !existing.linked_blobs.contains_key(*d))
            .or_else(|| {
                manifest
                    .children
                    .iter()
                    .find(|d| !existing.manifests.contains_key(*d))
            })
        {
            return Err(Error::ManifestBlobUnknown {
                digest: missing.clone(),
            });
        }
        for tag in tags {
            existing.check_push(tag, &manifest.digest, guard)?;
        }
        let repository = state
            .repositories
            .entry(manifest.repository.clone())
            .or_default();
        let created = !repository.manifests.contains_key(&manifest.digest);
        if created {
            let record = ManifestRecord {
                repository: manifest.repository.clone(),
                digest: manifest.digest.clone(),
                media_type: manifest.media_type.clone(),
                artifact_type: manifest.artifact_type.clone(),
                subject: manifest.subject.clone(),
                annotations: manifest.annotations.clone(),
                bytes: manifest.bytes.clone(),
                created_at: now,
            };
            let stored = StoredManifest {
                record,
                blobs: manifest.blobs.clone(),
                children: manifest.children.clone(),
            };
            repository.manifests.insert(manifest.digest.clone(), stored);
        }
        let mut previous: Vec<Digest> = Vec::new();
        for tag in tags {
            if let Some(left) = repository.set_tag(tag, &manifest.digest, now)
                && left != manifest.digest
                && !previous.contains(&left)
            {
                previous.push(left);
            }
        }
        let review = manifest_review(&manifest.repository, &manifest.digest);
        state.queue(review, ReviewEvent::ManifestUploaded, due);
        for left in &previous {
            let review = manifest_review(&manifest.repository, left);
            state.queue(review, ReviewEvent::TagSwitched, due);
        }
        Ok(PutManifestOutcome {
            created,
            previous_tag_targets: previous,
        })
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let state = lock(&self.state);
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(None);
        };
        let digest = match reference {
            Reference::Digest(digest) => Some(digest),
            Reference::Tag(tag) => repo.tags.get(tag),
        };
        Ok(digest
            .and_then(|d| repo.manifests.get(d))
            .map(|m| m.record.clone()))
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Vec<Tag>> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let repo = state
            .repositories
            .get_mut(repository)
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        if !repo.manifests.contains_key(digest) {
            return Err(manifest_unknown(repository, digest));
        }
        if let Some((index, _)) = repo
            .manifests
            .iter()
            .find(|(_, m)| m.children.contains(digest))
        {
            return Err(Error::ManifestReferenced {
                digest: digest.clone(),
                index: index.clone(),
            });
        }
        for (tag, _) in repo.tags.iter().filter(|(_, d)| *d == digest) {
            guard.check(tag, TagChange::Delete { current: digest })?;
        }
        Ok(remove_manifest(&mut state, repository, digest, due))
    }

    async fn put_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Option<Digest>> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let repo = state
            .repositories
            .get_mut(repository)
            .filter(|r| r.manifests.contains_key(digest))
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        repo.check_push(tag, digest, guard)?;
        let previous = repo.set_tag(tag, digest, Timestamp::now());
        if let Some(previous) = previous.as_ref().filter(|p| *p != digest) {
            state.queue(
                manifest_review(repository, previous),
                ReviewEvent::TagSwitched,
                due,
            );
        }
        Ok(previous)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        guard: &TagGuard,
    ) -> Result<Digest> {
        let due = Timestamp::now().after(self.review_delay);
        let mut state = lock(&self.state);
        let repo = state
            .repositories
            .get_mut(repository)
            .filter(|r| r.tags.contains_key(tag))
            .ok_or_else(|| manifest_unknown(repository, tag))?;
        if let Some(current) = repo.tags.get(tag) {
            guard.check(tag, TagChange::Delete { current })?;
        }
        let digest = repo
            .remove_tag(tag)
            .ok_or_else(|| manifest_unknown(repository, tag))?;
        state.queue(
            manifest_review(repository, &digest),
            ReviewEvent::TagDeleted,
            due,
        );
        Ok(digest)
    }

    async fn list_tags(&self, repository: &RepositoryName, page: &Page) -> Result<Vec<Tag>> {
        let state = lock(&self.state);
        let repo = state.repository(repository)?;
        Ok(paginate(repo.tags.keys().map(|t| (t.as_str(), t)), page))
    }

    async fn storage_usage(&self, scope: &UsageScope) -> Result<StorageUsage> {
        let state = lock(&self.state);
        let covered = |name: &RepositoryName| match scope {
            UsageScope::Repository(repository) => name == repository,
            UsageScope::Namespace(prefix) => {
                name == prefix
                    || name
                        .as_str()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        };
        let mut usage = StorageUsage::default();
        let mut blobs = std::collections::HashSet::new();
        for (_, repo) in state.repositories.iter().filter(|(name, _)| covered(name)) {
            usage.repositories += 1;
            for manifest in repo.manifests.values() {
                usage.manifests += 1;
                usage.manifest_bytes += manifest.record.bytes.len() as u64;
                blobs.extend(manifest.blobs.iter());
            }
        }
        usage.blobs = blobs.len() as u64;
        usage.blob_bytes = blobs
            .iter()
            .filter_map(|d| state.blobs.get(*d).map(|b| b.size))
            .sum();
        Ok(usage)
    }

    async fn tag_details(
        &self,
        repository: &RepositoryName,
        query: &TagQuery,
    ) -> Result<Vec<TagDetail>> {
        let state = lock(&self.state);
        let repo = state.repository(repository)?;
        let details = page_of_tags(repo, query)
            .into_iter()
            .filter_map(|tag| {
                let digest = repo.tags.get(tag)?;
                let manifest = repo.manifests.get(digest)?;
                let (created_at, published_at) = repo.tag_times.get(tag).copied()?;
                let blobs: u64 = manifest
                    .blobs
                    .iter()
                    .filter_map(|b| state.blobs.get(b).map(|r| r.size))
                    .sum();
                let manifest_size = manifest.record.bytes.len() as u64;
                Some(TagDetail {
                    name: tag.clone(),
                    digest: digest.clone(),
                    media_type: manifest.record.media_type.clone(),
                    manifest_size,
                    size: manifest_size + blobs,
                    created_at,
                    published_at,
                })
            })
            .collect();
        Ok(details)
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let state = lock(&self.state);
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(Vec::new());
        };
        let mut referrers: Vec<Referrer> = repo
            .manifests
            .values()
            .map(|m| &m.record)
            .filter(|m| m.subject.as_ref() == Some(subject))
            .filter(|m| artifact_type.is_none() || m.artifact_type.as_deref() == artifact_type)
            .map(|m| Referrer {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.bytes.len() as u64,
                artifact_type: m.artifact_type.clone(),
                annotations: m.annotations.clone(),
            })
            .collect();
        referrers.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(referrers)
    }
}
