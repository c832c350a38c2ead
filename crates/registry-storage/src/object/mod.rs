//! Blobs in an object store (S3-compatible, Google Cloud Storage, Azure Blob Storage, or the
//! in-memory and local-filesystem drivers) through `object_store` (feature `object-store`).
//!
//! [`ObjectBlobStore`] implements the blob semantics once, over any `object_store` driver:
//!
//! - **hashing while streaming, verification before visibility**: a body with a known digest
//!   streams straight to its final key, as one `PUT` when it fits a part or as a multipart
//!   upload that is completed only once the bytes hash to that digest (aborted otherwise); a
//!   body whose digest is computed goes to `staging/` and is copied into place;
//! - **bounded memory**: parts of [`ObjectOptions::part_size`] (at least 5 MiB, the object
//!   stores' minimum), at most [`ObjectOptions::parts_in_flight`] being sent;
//! - **upload sessions shared by every instance**: each append is written as an object of its
//!   own (a segment, `uploads/<id>/<offset>-<random>`) and then recorded in the metadata store
//!   with compare-and-set on the session's size ([`UploadSessions`]), so a chunked upload may
//!   go PATCH by PATCH through different instances, a restart loses nothing, and of two appends
//!   racing on one session one is recorded and the other's segment deleted. Finishing copies a
//!   single segment into place, or streams several into one multipart upload, verifying them
//!   again on the way;
//! - **presigned redirects** (optional, [`ObjectBlobStore::with_redirects`]): blob reads may
//!   be answered with a time-limited URL of the object itself.
//!
//! Layout under the store's root:
//!
//! ```text
//! blobs/<algorithm>/<first 2 hex>/<hex>   published blobs
//! staging/<random>                        computed-digest writes in progress
//! uploads/<id>/<offset>-<random>          upload sessions' segments
//! ```
//!
//! Incomplete multipart uploads of a process killed mid-write are invisible and cost storage
//! until aborted: give the bucket a lifecycle rule that aborts them after a day, as every
//! object store recommends. Stale `staging/` objects are removed by
//! [`ObjectBlobStore::purge_staging`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use registry_core::{
    Algorithm, BlobRead, BlobStore, ByteRange, ByteStream, Digest, DigestHasher, Error, Result,
    UploadId, UploadSegment, UploadSession, UploadSessions,
};

mod driver;
mod write;

pub use driver::{Driver, DriverError};

use crate::memory::unknown_upload;

/// The smallest part object stores accept (but for the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Options of an [`ObjectBlobStore`].
#[derive(Clone, Debug)]
pub struct ObjectOptions {
    /// Size of each part of a multipart upload, and the largest body sent in one `PUT`
    /// (raised to [`MIN_PART_SIZE`] if below). Default 8 MiB.
    pub part_size: usize,
    /// Parts of one upload sent at once. Default 2.
    pub parts_in_flight: usize,
    /// The largest object copied by the store itself (S3's `CopyObject` stops at 5 GiB);
    /// larger ones are streamed through this process. Default 5 GiB.
    pub copy_limit: u64,
    /// Appends one upload session may have (each is an object and a line of the session's
    /// record); more are refused, and the client must start over. Default 4,096.
    pub max_segments: usize,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            part_size: 8 * 1024 * 1024,
            parts_in_flight: 2,
            copy_limit: 5 * 1024 * 1024 * 1024,
            max_segments: 4096,
        }
    }
}

/// Presigned redirects for blob reads.
#[derive(Clone)]
struct Redirects {
    signer: Arc<dyn Signer>,
    expires_in: Duration,
}

/// A blob store in an object store, with its upload sessions in the metadata store.
#[derive(Clone)]
pub struct ObjectBlobStore {
    driver: Arc<dyn ObjectStore>,
    sessions: Arc<dyn UploadSessions>,
    root: Path,
    options: ObjectOptions,
    redirects: Option<Redirects>,
}

impl fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("driver", &self.driver.to_string())
            .field("root", &self.root.as_ref())
            .field("options", &self.options)
            .field("redirects", &self.redirects.as_ref().map(|r| r.expires_in))
            .finish()
    }
}

/// An `object_store` error as the registry's: a backend failure.
fn store_error(e: object_store::Error) -> Error {
    Error::backend(e)
}

impl ObjectBlobStore {
    /// A store over `driver`, under `root` (empty for the whole bucket), keeping upload
    /// sessions in `sessions` (the metadata store every instance shares).
    pub fn new(
        driver: Arc<dyn ObjectStore>,
        root: Path,
        sessions: Arc<dyn UploadSessions>,
        mut options: ObjectOptions,
    ) -> Self {
        options.part_size = options.part_size.max(MIN_PART_SIZE);
        options.parts_in_flight = options.parts_in_flight.max(1);
        ObjectBlobStore {
            driver,
            sessions,
            root,
            options,
            redirects: None,
        }
    }

    /// A store over a [`Driver`] (which knows its root and, for S3, how to sign URLs).
    pub fn from_driver(
        driver: Driver,
        sessions: Arc<dyn UploadSessions>,
        options: ObjectOptions,
    ) -> Self {
        let mut store = Self::new(driver.store, driver.root, sessions, options);
        store.redirects = driver.signer.map(|signer| Redirects {
            signer,
            expires_in: Duration::ZERO,
        });
        store
    }

    /// Answers blob reads with presigned URLs valid for `expires_in`, when the driver can sign
    /// them (S3, GCS, Azure); [`BlobStore::redirect_url`] is `None` otherwise, or when
    /// `expires_in` is zero.
    pub fn with_redirects(mut self, signer: Arc<dyn Signer>, expires_in: Duration) -> Self {
        self.redirects = Some(Redirects { signer, expires_in });
        self
    }

    /// Sets how long presigned URLs stay valid, for a store made [`ObjectBlobStore::from_driver`]
    /// with a signing driver; zero turns redirects off (the default).
    pub fn redirect_for(mut self, expires_in: Duration) -> Self {
        if let Some(redirects) = &mut self.redirects {
            redirects.expires_in = expires_in;
        }
        self
    }

    fn key(&self, rest: &str) -> Path {
        if self.root.as_ref().is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.root.as_ref()))
        }
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn segment_key(&self, id: &UploadId, offset: u64) -> Path {
        self.key(&format!(
            "uploads/{id}/{offset:020}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    fn staging_key(&self) -> Path {
        self.key(&format!("staging/{}", uuid::Uuid::new_v4().simple()))
    }

    /// Deletes every object under `prefix`, best effort (what remains is logged).
    async fn delete_prefix(&self, prefix: &Path) {
        let keys = self.driver.list(Some(prefix)).map_ok(|meta| meta.location);
        let mut deleted = self.driver.delete_stream(keys.boxed());
        while let Some(result) = deleted.next().await {
            if let Err(e) = result {
                tracing::warn!(prefix = %prefix, error = %e, "deleting an upload's segments");
            }
        }
    }

    /// Removes `staging/` objects (computed-digest writes interrupted by a killed process) last
    /// modified more than `older_than` ago; returns how many were removed. Younger ones may
    /// still be written by another instance.
    pub async fn purge_staging(&self, older_than: Duration) -> Result<usize> {
        let cutoff = epoch_seconds_ago(older_than);
        let stale: Vec<Path> = self
            .driver
            .list(Some(&self.key("staging")))
            .try_filter(|meta| futures::future::ready(meta.last_modified.timestamp() <= cutoff))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(store_error)?;
        let count = stale.len();
        for key in stale {
            match self.driver.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(count)
    }

    /// Publishes the object at `from` (`size` bytes, already verified as `digest`) as that
    /// blob: copied by the store when it allows, streamed otherwise.
    async fn publish_copy(&self, from: &Path, size: u64, digest: &Digest) -> Result<()> {
        let to = self.blob_key(digest);
        if size <= self.options.copy_limit {
            return self.driver.copy(from, &to).await.map_err(store_error);
        }
        let expected = digest.clone();
        self.concatenate(
            std::slice::from_ref(from),
            size,
            &to,
            DigestHasher::new(digest.algorithm()),
            |hasher| verified(hasher, &expected),
        )
        .await
    }

    async fn session(&self, id: &UploadId) -> Result<UploadSession> {
        self.sessions
            .upload_session(id)
            .await?
            .ok_or_else(|| unknown_upload(id))
    }

    fn segment_paths(session: &UploadSession) -> Vec<Path> {
        session
            .segments
            .iter()
            .map(|s| Path::from(s.key.as_str()))
            .collect()
    }
}

/// Seconds since the epoch `older_than` ago.
fn epoch_seconds_ago(older_than: Duration) -> i64 {
    // A clock set before 1970 reads as the epoch itself: the cutoff is then at or before every
    // object's time, and nothing is purged.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.saturating_sub(older_than).as_secs()).unwrap_or(i64::MAX)
}

/// Checks a hasher's digest against the one expected.
fn verified(hasher: DigestHasher, expected: &Digest) -> Result<()> {
    let actual = hasher.finish();
    if &actual == expected {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.driver.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let key = self.blob_key(digest);
        let unknown = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => Error::BlobUnknown {
                digest: digest.clone(),
            },
            e => store_error(e),
        };
        let options = match range {
            None => GetOptions::default(),
            Some(range) => {
                let size = self.driver.head(&key).await.map_err(unknown)?.size;
                let resolved = range.resolve(size)?;
                GetOptions {
                    range: Some(GetRange::Bounded(resolved)),
                    ..GetOptions::default()
                }
            }
        };
        let got = self.driver.get_opts(&key, options).await.map_err(unknown)?;
        let size = got.meta.size;
        let range = got.range.clone();
        let stream = got.into_stream().map(|c| c.map_err(store_error)).boxed();
        Ok(BlobRead {
            size,
            range,
            stream,
        })
    }

    async fn write(&self, expected: &Digest, body: ByteStream) -> Result<u64> {
        let key = self.blob_key(expected);
        let mut hasher = DigestHasher::new(expected.algorithm());
        let (size, streamed) = self.stream_in(&key, body, &mut hasher).await?;
        // A mismatch drops `streamed`: held bytes are never sent, a multipart upload is aborted.
        verified(hasher, expected)?;
        streamed.commit(self.driver.as_ref(), &key).await?;
        Ok(size)
    }

    async fn write_computed(
        &self,
        algorithm: Algorithm,
        body: ByteStream,
    ) -> Result<(Digest, u64)> {
        let staging = self.staging_key();
        let mut hasher = DigestHasher::new(algorithm);
        let (size, streamed) = self.stream_in(&staging, body, &mut hasher).await?;
        let digest = hasher.finish();
        if !streamed.is_multipart() {
            streamed
                .commit(self.driver.as_ref(), &self.blob_key(&digest))
                .await?;
            return Ok((digest, size));
        }
        streamed.commit(self.driver.as_ref(), &staging).await?;
        let published = self.publish_copy(&staging, size, &digest).await;
        if let Err(e) = self.driver.delete(&staging).await {
            tracing::warn!(key = %staging, error = %e, "deleting a staged blob");
        }
        published.map(|()| (digest, size))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let key = self.blob_key(digest);
        match self.driver.head(&key).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(store_error(e)),
        }
        match self.driver.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(store_error(e)),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        self.driver
            .list(Some(&self.key("blobs")))
            .map_err(store_error)
            .try_filter_map(|meta| {
                // `…/blobs/<algorithm>/<2 hex>/<hex>`; anything else is not a blob.
                let parts: Vec<_> = meta.location.parts().collect();
                let digest = match parts.as_slice() {
                    [.., algorithm, prefix, hex] if hex.as_ref().starts_with(prefix.as_ref()) => {
                        Digest::parse(&format!("{}:{}", algorithm.as_ref(), hex.as_ref())).ok()
                    }
                    _ => None,
                };
                futures::future::ready(Ok(digest))
            })
            .boxed()
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        let Some(redirects) = &self.redirects else {
            return Ok(None);
        };
        if redirects.expires_in.is_zero() {
            return Ok(None);
        }
        let url = redirects
            .signer
            .signed_url(Method::GET, &self.blob_key(digest), redirects.expires_in)
            .await
            .map_err(store_error)?;
        Ok(Some(url.to_string()))
    }

    async fn upload_start(&self, algorithm: Algorithm) -> Result<UploadId> {
        let id = UploadId::generate();
        let session = UploadSession {
            size: 0,
            hasher: DigestHasher::new(algorithm).state(),
            segments: Vec::new(),
        };
        self.sessions.create_upload_session(&id, &session).await?;
        Ok(id)
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, chunk: ByteStream) -> Result<u64> {
        let session = self.session(id).await?;
        if offset != session.size {
            return Err(Error::UploadOffsetMismatch {
                expected: session.size,
                found: offset,
            });
        }
        if session.segments.len() >= self.options.max_segments {
            return Err(Error::BlobUploadInvalid {
                reason: format!(
                    "an upload takes at most {} chunks; send larger ones",
                    self.options.max_segments
                ),
            });
        }
        let key = self.segment_key(id, offset);
        let mut hasher = DigestHasher::restore(&session.hasher)?;
        let (written, streamed) = self.stream_in(&key, chunk, &mut hasher).await?;
        if written == 0 {
            return Ok(session.size);
        }
        streamed.commit(self.driver.as_ref(), &key).await?;
        let size = session
            .size
            .checked_add(written)
            .ok_or_else(|| Error::BlobUploadInvalid {
                reason: "upload size overflows".to_owned(),
            })?;
        let mut segments = session.segments.clone();
        segments.push(UploadSegment {
            key: key.to_string(),
            size: written,
        });
        let advanced = UploadSession {
            size,
            hasher: hasher.state(),
            segments,
        };
        let recorded = self
            .sessions
            .advance_upload_session(id, session.size, &advanced)
            .await;
        // On an error the record may still have committed: the segment stays (finish and cancel
        // remove every object of the session).
        if !recorded? {
            // Another append won the race, or the session ended: the segment is no part of it.
            if let Err(e) = self.driver.delete(&key).await {
                tracing::warn!(key = %key, error = %e, "deleting an unrecorded segment");
            }
            let now = self.session(id).await?;
            return Err(Error::UploadOffsetMismatch {
                expected: now.size,
                found: offset,
            });
        }
        Ok(size)
    }

    async fn upload_status(&self, id: &UploadId) -> Result<u64> {
        Ok(self.session(id).await?.size)
    }

    async fn upload_finish(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        let session = self.session(id).await?;
        let segments = Self::segment_paths(&session);
        let to = self.blob_key(expected);
        let same_algorithm = session.hasher.algorithm == expected.algorithm();
        if same_algorithm {
            // Nothing is published unless the saved hasher says the bytes are the ones expected.
            verified(DigestHasher::restore(&session.hasher)?, expected)?;
        }
        match segments.as_slice() {
            [] if same_algorithm => {
                let empty = bytes::Bytes::new();
                self.driver
                    .put(&to, empty.into())
                    .await
                    .map_err(store_error)?;
            }
            [single] if same_algorithm && session.size <= self.options.copy_limit => {
                self.driver.copy(single, &to).await.map_err(store_error)?;
            }
            _ => {
                // Several segments (or a digest of another algorithm): the bytes are hashed on
                // their way into one object, so what is published is what was verified.
                let want = expected.clone();
                self.concatenate(
                    &segments,
                    session.size,
                    &to,
                    DigestHasher::new(expected.algorithm()),
                    |hasher| verified(hasher, &want),
                )
                .await?;
            }
        }
        self.sessions.delete_upload_session(id).await?;
        self.delete_prefix(&self.key(&format!("uploads/{id}")))
            .await;
        Ok(session.size)
    }

    async fn upload_cancel(&self, id: &UploadId) -> Result<()> {
        let existed = self.sessions.delete_upload_session(id).await?;
        self.delete_prefix(&self.key(&format!("uploads/{id}")))
            .await;
        if existed {
            Ok(())
        } else {
            Err(unknown_upload(id))
        }
    }
}
