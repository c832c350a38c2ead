//! Import from a CNCF distribution registry's filesystem storage (feature `fs`).
//!
//! [`import`] reads the layout distribution's `filesystem` driver writes under its root
//! directory:
//!
//! ```text
//! docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data                  every blob and manifest
//! docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link    a blob of the repository
//! docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//! ```
//!
//! and brings it into an [`OciRegistry`]: each blob a repository links is streamed into the blob
//! store (which verifies its digest) unless the store already has it, then linked; each manifest
//! revision is stored (image manifests before the indexes that list them) with the registry's
//! own validation; each tag is pointed where the source points it, and tags the source no longer
//! has are deleted. A run is idempotent, so it is made twice: a **pre-import** while the old
//! registry still serves (the long part: the bytes), then, with the old registry stopped or
//! read-only, a **final pass** that copies only what arrived since and moves the tags. Nothing
//! in the source is modified.
//!
//! What cannot be imported (a manifest naming a blob the repository does not hold, a name this
//! registry refuses, a blob whose bytes do not match its digest) is reported, item by item, and
//! the rest goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use registry_core::oci::OciRegistry;
use registry_core::rules::Actor;
use registry_core::{
    Digest, Error, Manifest, ManifestKind, Page, Reference, RepositoryName, Result, Tag,
};
use tokio::fs;
use tokio_util::io::ReaderStream;

/// Blobs copied at once.
const PARALLEL_COPIES: usize = 4;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Repositories found in the source.
    pub repositories: usize,
    /// Blobs streamed into the blob store.
    pub blobs_copied: usize,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Blobs the store already had (from a previous pass, or another repository).
    pub blobs_present: usize,
    /// Manifests stored by this pass.
    pub manifests_imported: usize,
    /// Manifests already there.
    pub manifests_present: usize,
    /// Tags created or moved.
    pub tags_set: usize,
    /// Tags deleted because the source no longer has them.
    pub tags_deleted: usize,
    /// What could not be imported, and why.
    pub problems: Vec<String>,
}

/// A distribution filesystem layout.
#[derive(Debug, Clone)]
pub struct DistributionLayout {
    /// `…/docker/registry/v2`.
    v2: PathBuf,
}

impl DistributionLayout {
    /// The layout under `root`: distribution's `rootdirectory`, or its `docker/registry/v2`.
    pub fn open(root: &Path) -> Result<Self> {
        let nested = root.join("docker/registry/v2");
        let v2 = if nested.is_dir() {
            nested
        } else {
            root.to_owned()
        };
        if !v2.join("repositories").is_dir() || !v2.join("blobs").is_dir() {
            return Err(Error::backend(format!(
                "{} is not a distribution filesystem layout (no docker/registry/v2/repositories \
                 and blobs)",
                root.display()
            )));
        }
        Ok(DistributionLayout { v2 })
    }

    fn blob_data(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.v2
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Every repository: each directory under `repositories/` holding `_manifests` or
    /// `_layers`, named by its path. Sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut pending = vec![(self.v2.join("repositories"), String::new())];
        while let Some((dir, name)) = pending.pop() {
            let mut entries = fs::read_dir(&dir).await.map_err(Error::backend)?;
            let mut is_repository = false;
            while let Some(entry) = entries.next_entry().await.map_err(Error::backend)? {
                if !entry.file_type().await.map_err(Error::backend)?.is_dir() {
                    continue;
                }
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if file_name == "_manifests" || file_name == "_layers" {
                    is_repository = true;
                } else if !file_name.starts_with('_') {
                    let child = if name.is_empty() {
                        file_name
                    } else {
                        format!("{name}/{file_name}")
                    };
                    pending.push((entry.path(), child));
                }
            }
            if is_repository {
                found.push(name);
            }
        }
        found.sort();
        Ok(found)
    }

    /// The digests of `<repository>/<dir>/<algorithm>/<hex>/link` files (layers or manifest
    /// revisions). A link whose content is not its directory's digest goes to `problems`.
    async fn links(
        &self,
        repository: &str,
        dir: &str,
        problems: &mut Vec<String>,
    ) -> Result<Vec<Digest>> {
        let base = self.v2.join("repositories").join(repository).join(dir);
        let mut digests = Vec::new();
        let mut algorithms = match fs::read_dir(&base).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(digests),
            Err(e) => return Err(Error::backend(e)),
        };
        while let Some(algorithm) = algorithms.next_entry().await.map_err(Error::backend)? {
            if !is_directory(&algorithm, repository, problems).await? {
                continue;
            }
            let mut hexes = fs::read_dir(algorithm.path())
                .await
                .map_err(Error::backend)?;
            while let Some(hex) = hexes.next_entry().await.map_err(Error::backend)? {
                if !is_directory(&hex, repository, problems).await? {
                    continue;
                }
                let named = format!(
                    "{}:{}",
                    algorithm.file_name().to_string_lossy(),
                    hex.file_name().to_string_lossy()
                );
                match read_link(&hex.path().join("link")).await? {
                    Link::To(digest) if digest.as_str() == named => digests.push(digest),
                    Link::To(other) => problems.push(format!(
                        "{repository}: {dir} link {named} names {other}; skipped"
                    )),
                    Link::Absent => {}
                    Link::Garbage => problems.push(format!(
                        "{repository}: {dir} link {named} holds no digest; skipped"
                    )),
                }
            }
        }
        Ok(digests)
    }

    /// Each tag of a repository and the manifest it points at; `None` for a tag whose link
    /// cannot be read (reported in `problems`, and kept as it is here).
    async fn tags(
        &self,
        repository: &str,
        problems: &mut Vec<String>,
    ) -> Result<BTreeMap<String, Option<Digest>>> {
        let base = self
            .v2
            .join("repositories")
            .join(repository)
            .join("_manifests/tags");
        let mut tags = BTreeMap::new();
        let mut entries = match fs::read_dir(&base).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tags),
            Err(e) => return Err(Error::backend(e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(Error::backend)? {
            if !is_directory(&entry, repository, problems).await? {
                continue;
            }
            let tag = entry.file_name().to_string_lossy().into_owned();
            match read_link(&entry.path().join("current/link")).await? {
                Link::To(digest) => {
                    tags.insert(tag, Some(digest));
                }
                Link::Absent => {}
                Link::Garbage => {
                    problems.push(format!(
                        "{repository}: tag {tag}'s current link holds no digest; kept as it is"
                    ));
                    tags.insert(tag, None);
                }
            }
        }
        Ok(tags)
    }
}

/// What a link file holds.
enum Link {
    /// A digest.
    To(Digest),
    /// No file: distribution deletes a manifest by removing its revision's link file.
    Absent,
    /// Something else.
    Garbage,
}

/// The largest link file read: a digest and a newline fit many times over.
const MAX_LINK: u64 = 1024;

async fn read_link(path: &Path) -> Result<Link> {
    use tokio::io::AsyncReadExt;
    match regular_file(path).await? {
        None => return Ok(Link::Absent),
        Some(false) => return Ok(Link::Garbage),
        Some(true) => {}
    }
    let mut bytes = Vec::new();
    let file = fs::File::open(path).await.map_err(Error::backend)?;
    file.take(MAX_LINK + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(Error::backend)?;
    if bytes.len() as u64 > MAX_LINK {
        return Ok(Link::Garbage);
    }
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| Digest::parse(text.trim()).ok())
        .map_or(Link::Garbage, Link::To))
}

/// Whether `path` is a regular file (`None`: nothing there). Symbolic links, devices and
/// FIFOs are not: reading them could follow the layout out of itself, never end or block.
async fn regular_file(path: &Path) -> Result<Option<bool>> {
    match fs::symlink_metadata(path).await {
        Ok(meta) => Ok(Some(meta.file_type().is_file())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::backend(e)),
    }
}

/// Whether a directory entry is a directory; anything else is reported and skipped.
async fn is_directory(
    entry: &fs::DirEntry,
    repository: &str,
    problems: &mut Vec<String>,
) -> Result<bool> {
    if entry.file_type().await.map_err(Error::backend)?.is_dir() {
        return Ok(true);
    }
    problems.push(format!(
        "{repository}: {} is not a directory; skipped",
        entry.path().display()
    ));
    Ok(false)
}

/// Imports every repository of `layout` into `registry`; `progress` hears of each repository as
/// it starts. Errors only when the source or the target cannot be read or written at all; a
/// problem with one item is in [`ImportReport::problems`].
pub async fn import(
    layout: &DistributionLayout,
    registry: &OciRegistry,
    mut progress: impl FnMut(&str),
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    for name in layout.repositories().await? {
        report.repositories += 1;
        progress(&name);
        let Ok(repository) = RepositoryName::parse(&name) else {
            report
                .problems
                .push(format!("{name}: not a valid repository name here; skipped"));
            continue;
        };
        import_repository(layout, registry, &name, &repository, &mut report).await?;
    }
    Ok(report)
}

async fn import_repository(
    layout: &DistributionLayout,
    registry: &OciRegistry,
    name: &str,
    repository: &RepositoryName,
    report: &mut ImportReport,
) -> Result<()> {
    // Blobs: streamed in, a few at a time, then linked.
    let layers = layout.links(name, "_layers", &mut report.problems).await?;
    let copied: Vec<(Digest, Result<Blob>)> = stream::iter(layers)
        .map(|digest| async move {
            let copied = copy_blob(layout, registry, &digest).await;
            (digest, copied)
        })
        .buffer_unordered(PARALLEL_COPIES)
        .collect()
        .await;
    for (digest, copied) in copied {
        match copied {
            Ok(Blob::Present(size)) => {
                report.blobs_present += 1;
                link(registry, repository, &digest, size, name, report).await?;
            }
            Ok(Blob::Copied(size)) => {
                report.blobs_copied += 1;
                report.bytes_copied += size;
                link(registry, repository, &digest, size, name, report).await?;
            }
            Ok(Blob::NotAFile) => report.problems.push(format!(
                "{name}: blob {digest}'s data is not a regular file; skipped"
            )),
            Ok(Blob::Missing) => report.problems.push(format!(
                "{name}: blob {digest} is linked but has no data; skipped"
            )),
            Err(e @ Error::DigestMismatch { .. }) => report
                .problems
                .push(format!("{name}: blob {digest}: {e}; skipped")),
            Err(e) => return Err(e),
        }
    }

    // Manifests: images first, then indexes once their children are in.
    let mut pending: Vec<(Digest, Bytes, ManifestKind)> = Vec::new();
    for digest in layout
        .links(name, "_manifests/revisions", &mut report.problems)
        .await?
    {
        if registry
            .metadata()
            .manifest(repository, &Reference::Digest(digest.clone()))
            .await?
            .is_some()
        {
            report.manifests_present += 1;
            continue;
        }
        let path = layout.blob_data(&digest);
        let limit = registry.limits().manifest.max_size as u64;
        if regular_file(&path).await? == Some(false) {
            report.problems.push(format!(
                "{name}: manifest {digest}'s data is not a regular file; skipped"
            ));
            continue;
        }
        let bytes = match fs::metadata(&path).await {
            Ok(meta) if meta.len() > limit => {
                report.problems.push(format!(
                    "{name}: manifest {digest} is {} bytes, over the {limit}-byte limit; skipped",
                    meta.len()
                ));
                continue;
            }
            Ok(_) => Bytes::from(fs::read(&path).await.map_err(Error::backend)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report
                    .problems
                    .push(format!("{name}: manifest {digest} has no data; skipped"));
                continue;
            }
            Err(e) => return Err(Error::backend(e)),
        };
        match Manifest::parse(bytes.clone(), None, &registry.limits().manifest) {
            Ok(manifest) => pending.push((digest, bytes, manifest.kind())),
            Err(e) => report
                .problems
                .push(format!("{name}: manifest {digest}: {e}; skipped")),
        }
    }
    // Indexes last, and again in later rounds while a round stores something: an index can
    // list another index.
    pending.sort_by_key(|(_, _, kind)| matches!(kind, ManifestKind::Index));
    loop {
        let before = pending.len();
        let mut retry = Vec::new();
        let mut last_errors = Vec::new();
        for (digest, bytes, kind) in pending {
            let reference = Reference::Digest(digest.clone());
            match registry
                .put_manifest(
                    repository,
                    &reference,
                    bytes.clone(),
                    None,
                    &Actor::trusted(),
                )
                .await
            {
                Ok(_) => report.manifests_imported += 1,
                Err(e) if kind == ManifestKind::Index && is_item_error(&e) => {
                    last_errors.push(format!("{name}: index {digest}: {e}; skipped"));
                    retry.push((digest, bytes, kind));
                }
                Err(e) if is_item_error(&e) => report
                    .problems
                    .push(format!("{name}: manifest {digest}: {e}; skipped")),
                Err(e) => return Err(e),
            }
        }
        if retry.is_empty() || retry.len() == before {
            report.problems.extend(last_errors);
            break;
        }
        pending = retry;
    }

    // Tags: where the source points them; the ones it no longer has, deleted.
    let source_tags = layout.tags(name, &mut report.problems).await?;
    let guard = registry.tag_guard(repository, &Actor::trusted()).await?;
    for (text, digest) in &source_tags {
        let Some(digest) = digest else {
            continue;
        };
        let Ok(tag) = Tag::parse(text) else {
            report
                .problems
                .push(format!("{name}: tag {text:?} is not valid here; skipped"));
            continue;
        };
        let current = registry
            .metadata()
            .manifest(repository, &Reference::Tag(tag.clone()))
            .await?;
        if current.as_ref().is_some_and(|m| &m.digest == digest) {
            continue;
        }
        match registry
            .metadata()
            .put_tag(repository, &tag, digest, &guard)
            .await
        {
            Ok(_) => report.tags_set += 1,
            Err(e) if is_item_error(&e) => report
                .problems
                .push(format!("{name}: tag {text} -> {digest}: {e}; skipped")),
            Err(e) => return Err(e),
        }
    }
    if registry.metadata().repository_exists(repository).await? {
        for tag in all_tags(registry, repository).await? {
            if source_tags.contains_key(tag.as_str()) {
                continue;
            }
            match registry
                .metadata()
                .delete_tag(repository, &tag, &guard)
                .await
            {
                Ok(_) => report.tags_deleted += 1,
                Err(e) if is_item_error(&e) => report
                    .problems
                    .push(format!("{name}: deleting tag {tag}: {e}; kept")),
                Err(e) => return Err(e),
            }
        }
    }
    registry.forget(repository);
    Ok(())
}

/// Links a blob through the service (which checks a collector did not take it meanwhile); a
/// blob taken is reported.
async fn link(
    registry: &OciRegistry,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
    name: &str,
    report: &mut ImportReport,
) -> Result<()> {
    match registry.link_stored_blob(repository, digest, size).await {
        Ok(_) => Ok(()),
        Err(e) if is_item_error(&e) => {
            report
                .problems
                .push(format!("{name}: blob {digest}: {e}; skipped"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Errors about one item (reported, the import goes on), as opposed to the stores failing.
fn is_item_error(e: &Error) -> bool {
    !matches!(e, Error::Backend { .. })
}

async fn all_tags(registry: &OciRegistry, repository: &RepositoryName) -> Result<Vec<Tag>> {
    let mut tags = Vec::new();
    let mut page = Page::first(1000);
    loop {
        let batch = registry.metadata().list_tags(repository, &page).await?;
        let done = batch.len() < page.limit;
        page.last = batch.last().map(|t| t.as_str().to_owned());
        tags.extend(batch);
        if done {
            return Ok(tags);
        }
    }
}

/// What became of one blob.
enum Blob {
    Present(u64),
    Copied(u64),
    Missing,
    NotAFile,
}

/// Streams one blob into the store unless it is there already.
async fn copy_blob(
    layout: &DistributionLayout,
    registry: &OciRegistry,
    digest: &Digest,
) -> Result<Blob> {
    if let Some(size) = registry.blob_store().stat(digest).await? {
        return Ok(Blob::Present(size));
    }
    let path = layout.blob_data(digest);
    match regular_file(&path).await? {
        None => return Ok(Blob::Missing),
        Some(false) => return Ok(Blob::NotAFile),
        Some(true) => {}
    }
    let file = match fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Blob::Missing),
        Err(e) => return Err(Error::backend(e)),
    };
    let body = ReaderStream::with_capacity(file, 1 << 20)
        .map_err(Error::backend)
        .boxed();
    let size = registry.blob_store().write(digest, body).await?;
    Ok(Blob::Copied(size))
}
