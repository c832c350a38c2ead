//! Offline mark-and-sweep over a whole store, safe while servers run.
//!
//! **Mark**, per repository: tagged manifests are kept, and untagged ones too unless
//! `delete_untagged`; so is anything younger than the grace period; then, until nothing changes,
//! the children of kept indexes and the referrers of kept manifests; and every blob a package
//! file references. **Sweep**: every manifest not
//! kept goes through the same locked decision the online collector uses
//! ([`CollectionMetadata::collect_manifest`](registry_core::CollectionMetadata::collect_manifest)),
//! and every blob record older than the grace period that no kept manifest references is
//! claimed, deleted from storage, and its claim committed — the store re-checks references under
//! its lock, so a push racing the sweep is never broken. A dry run reports what the mark phase
//! would remove and changes nothing. Kept blobs are checked on the way: missing bytes or a size
//! that differs from the record (and, with [`SweepOptions::verify`], bytes that do not hash to
//! the digest) are reported in [`SweepReport::damaged`] and the sweep carries on.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use futures::StreamExt;

use registry_core::{
    BlobRecord, BlobStore, Digest, DigestHasher, ManifestEntry, ManifestVerdict, MetadataStore,
    Page, RepositoryName, Result, Timestamp,
};

const PAGE: usize = 1000;

/// How a sweep runs.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Do not keep untagged manifests (unless an index lists them or they refer to a kept one).
    pub delete_untagged: bool,
    /// Anything written less than this long ago is kept.
    pub grace: Duration,
    /// Also read every kept blob and check its bytes hash to its digest (kept blobs are always
    /// checked for presence and size).
    pub verify: bool,
}

/// What is wrong with a kept blob's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The metadata records the blob, a manifest needs it, and storage does not have it.
    Missing,
    /// Storage holds a different number of bytes than the record says.
    WrongSize {
        /// The recorded size.
        recorded: u64,
        /// The size in storage.
        stored: u64,
    },
    /// The bytes do not hash to the digest (found with [`SweepOptions::verify`]).
    WrongDigest {
        /// What they hash to.
        actual: Digest,
    },
    /// Reading the bytes failed.
    Unreadable {
        /// The storage error.
        error: String,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing => f.write_str("missing from storage"),
            Damage::WrongSize { recorded, stored } => {
                write!(f, "{stored} bytes in storage, {recorded} recorded")
            }
            Damage::WrongDigest { actual } => write!(f, "the bytes hash to {actual}"),
            Damage::Unreadable { error } => write!(f, "unreadable: {error}"),
        }
    }
}

/// What a sweep found and did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Repositories walked.
    pub repositories: u64,
    /// Manifests seen.
    pub manifests: u64,
    /// Manifests deleted (or that a dry run would delete).
    pub manifests_deleted: u64,
    /// Blob records seen.
    pub blobs: u64,
    /// Blobs deleted (or that a dry run would delete).
    pub blobs_deleted: u64,
    /// Bytes freed (or that a dry run would free).
    pub bytes_freed: u64,
    /// Blob records whose bytes were missing from storage.
    pub blobs_missing: u64,
    /// Files in blob storage with no record (reported, not deleted: their age is unknown).
    pub unrecorded_files: u64,
    /// Kept blobs whose bytes are missing or damaged (reported, left for an operator: a push
    /// of the same content repairs them).
    pub damaged: Vec<(Digest, Damage)>,
}

/// Where a sweep is, for progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A repository was marked (and swept).
    Repository {
        /// How many so far.
        done: u64,
        /// Which.
        name: RepositoryName,
    },
    /// Blob records examined so far.
    Blobs {
        /// How many so far.
        done: u64,
    },
}

/// The manifests of one repository to keep.
fn mark(entries: &[ManifestEntry], options: &SweepOptions, cutoff: Timestamp) -> HashSet<Digest> {
    let mut kept: HashSet<Digest> = entries
        .iter()
        .filter(|e| e.tagged || !options.delete_untagged || e.created_at > cutoff)
        .map(|e| e.digest.clone())
        .collect();
    loop {
        let before = kept.len();
        for entry in entries {
            if kept.contains(&entry.digest) {
                kept.extend(entry.children.iter().cloned());
            } else if entry.subject.as_ref().is_some_and(|s| kept.contains(s)) {
                kept.insert(entry.digest.clone());
            }
        }
        if kept.len() == before {
            return kept;
        }
    }
}

/// Sweeps the whole store. `progress` is told as repositories and blobs are done.
pub async fn sweep(
    blobs: &dyn BlobStore,
    metadata: &dyn MetadataStore,
    options: &SweepOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<SweepReport> {
    let cutoff = Timestamp(
        Timestamp::now().0 - i64::try_from(options.grace.as_millis()).unwrap_or(i64::MAX),
    );
    let mut report = SweepReport::default();
    let mut marked_blobs: HashSet<Digest> = HashSet::new();
    let mut page = Page::first(PAGE);
    loop {
        let repositories = metadata.list_repositories(&page).await?;
        for repository in &repositories {
            sweep_repository(
                metadata,
                repository,
                options,
                cutoff,
                &mut marked_blobs,
                &mut report,
            )
            .await?;
            report.repositories += 1;
            progress(&Progress::Repository {
                done: report.repositories,
                name: repository.clone(),
            });
        }
        match repositories.last() {
            Some(last) if repositories.len() == PAGE => page = Page::after(last.to_string(), PAGE),
            _ => break,
        }
    }

    let mut recorded: BTreeSet<Digest> = BTreeSet::new();
    let mut page = Page::first(PAGE);
    loop {
        let records = metadata.list_blobs(&page).await?;
        for record in &records {
            report.blobs += 1;
            recorded.insert(record.digest.clone());
            let kept = marked_blobs.contains(&record.digest)
                || record.created_at > cutoff
                || metadata.blob_in_packages(&record.digest).await?;
            if kept {
                if let Some(damage) = inspect(blobs, record, options.verify).await {
                    tracing::warn!(digest = %record.digest, %damage, "a kept blob is damaged");
                    report.damaged.push((record.digest.clone(), damage));
                }
                continue;
            }
            if options.dry_run {
                report.blobs_deleted += 1;
                report.bytes_freed += record.size;
                continue;
            }
            let Some(claim) = metadata.claim_blob(&record.digest).await? else {
                continue;
            };
            let size = blobs.stat(&record.digest).await;
            let deleted = match size {
                Ok(size) => blobs.delete(&record.digest).await.map(|_| size),
                Err(e) => Err(e),
            };
            match deleted {
                Ok(size) => {
                    claim.commit().await?;
                    report.blobs_deleted += 1;
                    report.bytes_freed += size.unwrap_or(0);
                    report.blobs_missing += u64::from(size.is_none());
                }
                Err(error) => {
                    claim.abandon().await?;
                    tracing::warn!(%error, digest = %record.digest, "deleting a blob failed; kept");
                }
            }
        }
        progress(&Progress::Blobs { done: report.blobs });
        match records.last() {
            Some(last) if records.len() == PAGE => {
                page = Page::after(last.digest.to_string(), PAGE)
            }
            _ => break,
        }
    }

    let mut files = blobs.list();
    while let Some(digest) = files.next().await {
        if !recorded.contains(&digest?) {
            report.unrecorded_files += 1;
        }
    }
    Ok(report)
}

/// Checks a kept blob's bytes: present, of the recorded size, and (with `verify`) hashing to
/// its digest.
async fn inspect(blobs: &dyn BlobStore, record: &BlobRecord, verify: bool) -> Option<Damage> {
    let unreadable = |error: registry_core::Error| Damage::Unreadable {
        error: error.to_string(),
    };
    match blobs.stat(&record.digest).await {
        Err(error) => return Some(unreadable(error)),
        Ok(None) => return Some(Damage::Missing),
        Ok(Some(stored)) if stored != record.size => {
            return Some(Damage::WrongSize {
                recorded: record.size,
                stored,
            });
        }
        Ok(Some(_)) => {}
    }
    if !verify {
        return None;
    }
    let mut read = match blobs.read(&record.digest, None).await {
        Ok(read) => read,
        Err(error) => return Some(unreadable(error)),
    };
    let mut hasher = DigestHasher::new(record.digest.algorithm());
    while let Some(chunk) = read.stream.next().await {
        match chunk {
            Ok(chunk) => hasher.update(&chunk),
            Err(error) => return Some(unreadable(error)),
        }
    }
    let actual = hasher.finish();
    (actual != record.digest).then_some(Damage::WrongDigest { actual })
}

async fn sweep_repository(
    metadata: &dyn MetadataStore,
    repository: &RepositoryName,
    options: &SweepOptions,
    cutoff: Timestamp,
    marked_blobs: &mut HashSet<Digest>,
    report: &mut SweepReport,
) -> Result<()> {
    let mut entries = Vec::new();
    let mut page = Page::first(PAGE);
    loop {
        let batch = metadata.list_manifests(repository, &page).await?;
        let full = batch.len() == PAGE;
        if let Some(last) = batch.last() {
            page = Page::after(last.digest.to_string(), PAGE);
        }
        entries.extend(batch);
        if !full {
            break;
        }
    }
    report.manifests += entries.len() as u64;
    let kept = mark(&entries, options, cutoff);
    let (keep, mut doomed): (Vec<&ManifestEntry>, Vec<&ManifestEntry>) =
        entries.iter().partition(|e| kept.contains(&e.digest));
    for entry in keep {
        marked_blobs.extend(entry.blobs.iter().cloned());
    }
    if options.dry_run {
        report.manifests_deleted += doomed.len() as u64;
        return Ok(());
    }
    // Indexes before their children; rounds repeat while they delete something (a referrer goes
    // once its subject has). What the store still refuses to delete stays, with its blobs.
    doomed.sort_by_key(|e| e.children.is_empty());
    loop {
        let mut remaining = Vec::new();
        let mut deleted = 0;
        for entry in doomed {
            match metadata.collect_manifest(repository, &entry.digest).await? {
                ManifestVerdict::Deleted => deleted += 1,
                ManifestVerdict::Missing => {}
                _ => remaining.push(entry),
            }
        }
        report.manifests_deleted += deleted;
        if remaining.is_empty() || deleted == 0 {
            for entry in remaining {
                marked_blobs.extend(entry.blobs.iter().cloned());
            }
            return Ok(());
        }
        doomed = remaining;
    }
}
