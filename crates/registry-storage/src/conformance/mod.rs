//! The conformance suite every backend runs.
//!
//! Each function exercises one area of a [`BlobStore`] or [`MetadataStore`] and panics, with a
//! message saying what broke, when the backend misbehaves. A backend's tests call every function
//! on a fresh store. An embedder's own backend can do the same:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use registry_storage::{conformance, memory::MemoryBlobStore};
//!
//! conformance::blob_basics(Arc::new(MemoryBlobStore::new())).await;
//! # }
//! ```
//!
//! The functions are grouped by the trait they test: `blobs` for [`BlobStore`], and one file per
//! metadata trait (`content`, `uploads`, `review`, `collection`, `policy`, `packages`,
//! `tokens`); `mod.rs` holds the helpers they share and the two suite runners.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use registry_core::manifest::{OCI_INDEX, OCI_MANIFEST};
use registry_core::{
    BlobStore, ByteStream, Digest, Error, MetadataStore, NewManifest, RepositoryName, ReviewEvent,
    ReviewTarget, Tag, Timestamp,
};

mod blobs;
mod collection;
mod content;
mod packages;
mod policy;
mod proxy;
mod review;
mod tokens;
mod uploads;

pub use blobs::{
    blob_basics, blob_computed_digest, blob_concurrent_writers, blob_large,
    blob_rejects_bad_writes, blob_upload_racing_appends, blob_upload_sessions,
    blob_upload_survives_restart,
};
pub use collection::metadata_collection;
pub use content::{
    metadata_blob_links, metadata_concurrency, metadata_manifest_with_tags,
    metadata_manifests_and_tags, metadata_pagination, metadata_referrers, metadata_storage_usage,
    metadata_tag_details, metadata_tag_rules,
};
pub use packages::{
    metadata_attach_files, metadata_package_update, metadata_packages, metadata_repository_revision,
};
pub use policy::metadata_policies;
pub use proxy::{metadata_firewall_audit, metadata_proxy_cache};
pub use review::metadata_review_queue;
pub use tokens::metadata_tokens;
pub use uploads::{metadata_upload_sessions, metadata_uploads};

/// A shared blob store under test.
pub type SharedBlobStore = Arc<dyn BlobStore>;
/// A shared metadata store under test.
pub type SharedMetadataStore = Arc<dyn MetadataStore>;

/// Splits bytes into a stream of chunks of `chunk` bytes.
pub fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<registry_core::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|start| Ok(data.slice(start..(start + chunk).min(data.len()))))
        .collect();
    stream::iter(chunks).boxed()
}

/// A stream that yields `data` and then fails, as a client that disconnects mid-upload does.
pub fn failing_after(data: Bytes) -> ByteStream {
    let items: Vec<registry_core::Result<Bytes>> = vec![
        Ok(data),
        Err(Error::BlobUploadInvalid {
            reason: "client went away".into(),
        }),
    ];
    stream::iter(items).boxed()
}

/// Deterministic test content of `len` bytes, different for each `seed`.
pub fn sample(seed: u64, len: usize) -> Bytes {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as u8
        })
        .collect()
}

fn name(s: &str) -> RepositoryName {
    RepositoryName::parse(s).expect("valid repository name")
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).expect("valid tag")
}

/// A manifest with the given references, for metadata tests.
pub fn new_manifest(
    repository: &RepositoryName,
    seed: &str,
    blobs: &[Digest],
    children: &[Digest],
    subject: Option<&Digest>,
    artifact_type: Option<&str>,
) -> NewManifest {
    let bytes = Bytes::from(format!("{{\"seed\":\"{seed}\"}}"));
    NewManifest {
        repository: repository.clone(),
        digest: Digest::sha256(&bytes),
        media_type: if children.is_empty() {
            OCI_MANIFEST
        } else {
            OCI_INDEX
        }
        .to_owned(),
        artifact_type: artifact_type.map(str::to_owned),
        subject: subject.cloned(),
        annotations: BTreeMap::from([("seed".to_owned(), seed.to_owned())]),
        bytes,
        blobs: blobs.to_vec(),
        children: children.to_vec(),
    }
}

fn far_future() -> Timestamp {
    Timestamp::now().after(Duration::from_secs(3 * 24 * 3600))
}

async fn queued(store: &dyn MetadataStore, target: &ReviewTarget) -> ReviewEvent {
    store
        .review(target)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{target:?} is queued for review"))
        .event
}

fn blob_target(digest: &Digest) -> ReviewTarget {
    ReviewTarget::Blob {
        digest: digest.clone(),
    }
}

fn manifest_target(repository: &RepositoryName, digest: &Digest) -> ReviewTarget {
    ReviewTarget::Manifest {
        repository: repository.clone(),
        digest: digest.clone(),
    }
}

/// Runs every blob-store function except the restart test, each on a fresh store from `fresh`.
pub async fn blob_store_suite<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedBlobStore>,
{
    blob_basics(fresh().await).await;
    blob_rejects_bad_writes(fresh().await).await;
    blob_concurrent_writers(fresh().await).await;
    blob_upload_sessions(fresh().await).await;
    blob_computed_digest(fresh().await).await;
    blob_large(fresh().await).await;
    let store = fresh().await;
    blob_upload_racing_appends(Arc::clone(&store), store).await;
}

/// Runs every metadata-store function, each on a fresh store from `fresh`.
pub async fn metadata_store_suite<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedMetadataStore>,
{
    metadata_blob_links(fresh().await).await;
    metadata_manifests_and_tags(fresh().await).await;
    metadata_referrers(fresh().await).await;
    metadata_pagination(fresh().await).await;
    metadata_uploads(fresh().await).await;
    metadata_upload_sessions(fresh().await).await;
    metadata_review_queue(fresh().await).await;
    metadata_concurrency(fresh().await).await;
    metadata_collection(fresh().await).await;
    metadata_tag_details(fresh().await).await;
    metadata_storage_usage(fresh().await).await;
    metadata_tag_rules(fresh().await).await;
    metadata_manifest_with_tags(fresh().await).await;
    metadata_policies(fresh().await).await;
    metadata_packages(fresh().await).await;
    metadata_package_update(fresh().await).await;
    metadata_repository_revision(fresh().await).await;
    metadata_attach_files(fresh().await).await;
    metadata_tokens(fresh().await).await;
    metadata_proxy_cache(fresh().await).await;
    metadata_firewall_audit(fresh().await).await;
}
