//! Content-addressed blob storage: the [`BlobStore`] trait and its helpers.

use std::fmt::{self, Debug};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};

use crate::digest::{Algorithm, Digest, DigestHasher};
use crate::error::{Error, Result};

/// A stream of byte chunks, as read from or written to a store.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Makes a [`ByteStream`] of one chunk.
pub fn once_stream(bytes: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// A byte range as a client asks for it: `start..end` with `end` exclusive, or open-ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte; `None` reads to the end.
    pub end: Option<u64>,
}

impl ByteRange {
    /// Resolves the range against content of `size` bytes.
    ///
    /// An end past the content is clamped, as HTTP does; a start at or past the end of
    /// non-empty content, or an empty range, is [`Error::RangeNotSatisfiable`].
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        let end = self.end.map_or(size, |e| e.min(size));
        if self.start >= end {
            return Err(Error::RangeNotSatisfiable {
                start: self.start,
                end: self.end.unwrap_or(size),
                size,
            });
        }
        Ok(self.start..end)
    }
}

/// An open blob read.
pub struct BlobRead {
    /// Size of the whole blob.
    pub size: u64,
    /// The bytes this read yields (the whole blob when no range was asked for).
    pub range: Range<u64>,
    /// The bytes.
    pub stream: ByteStream,
}

impl Debug for BlobRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The id of a resumable upload session: 1 to 64 characters of `[A-Za-z0-9_-]`, so it is safe
/// in URLs and file names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(Box<str>);

impl UploadId {
    /// A new random id.
    pub fn generate() -> Self {
        UploadId(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// Validates an id a client sent back.
    pub fn parse(s: &str) -> Result<Self> {
        let valid = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(UploadId(s.into()))
        } else {
            Err(Error::BlobUploadUnknown { id: s.to_owned() })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Content-addressed blob storage.
///
/// Blobs are immutable: a blob becomes visible only once all its bytes are stored and they hash
/// to the expected digest; writing a digest that already exists succeeds without change.
/// Upload sessions keep their bytes and hasher state in the store, so they survive a restart of
/// the process and can be continued from another instance sharing the store.
#[async_trait]
pub trait BlobStore: Debug + Send + Sync + 'static {
    /// The size of a blob, or `None` when it does not exist.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Opens a blob for reading, optionally a byte range of it.
    ///
    /// Errors: [`Error::BlobUnknown`] when absent; [`Error::RangeNotSatisfiable`] for a range
    /// outside the blob.
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead>;

    /// Streams a whole blob in, verifying it hashes to `expected`; returns its size.
    ///
    /// Atomic: on [`Error::DigestMismatch`], a stream error or cancellation, nothing becomes
    /// visible. Writing an existing digest succeeds and leaves the stored blob as it was.
    async fn write(&self, expected: &Digest, body: ByteStream) -> Result<u64>;

    /// Streams a whole blob in whose digest is not known beforehand; returns the digest its
    /// bytes have under `algorithm`, and its size. Atomic, like [`BlobStore::write`].
    ///
    /// The default goes through an upload session and hashes the stream a second time beside
    /// the session's own hasher; stores that can name a staged file after the fact override it.
    async fn write_computed(
        &self,
        algorithm: Algorithm,
        body: ByteStream,
    ) -> Result<(Digest, u64)> {
        let id = self.upload_start(algorithm).await?;
        let hasher = Arc::new(Mutex::new(DigestHasher::new(algorithm)));
        let tee = {
            let hasher = Arc::clone(&hasher);
            body.map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    hasher
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .update(bytes);
                }
                chunk
            })
            .boxed()
        };
        let stored = async {
            let size = self.upload_append(&id, 0, tee).await?;
            let digest = hasher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .peek();
            self.upload_finish(&id, &digest).await?;
            Ok((digest, size))
        }
        .await;
        if stored.is_err() {
            let _ = self.upload_cancel(&id).await;
        }
        stored
    }

    /// A URL the client may fetch the blob from itself (an object store's presigned URL,
    /// valid for a while), or `None` when blobs are served through the registry (the default).
    /// The caller has checked the blob exists.
    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        let _ = digest;
        Ok(None)
    }

    /// Deletes a blob; returns whether it existed. Deleting an absent blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Lists every stored blob, in no particular order.
    fn list(&self) -> BoxStream<'_, Result<Digest>>;

    /// Starts an upload session that will hash its bytes with `algorithm`.
    async fn upload_start(&self, algorithm: Algorithm) -> Result<UploadId>;

    /// Appends a chunk that must start at `offset`, the session's current size; returns the new
    /// size.
    ///
    /// Atomic per chunk: if the chunk stream fails, the session keeps its previous size.
    /// Errors: [`Error::BlobUploadUnknown`], [`Error::UploadOffsetMismatch`].
    async fn upload_append(&self, id: &UploadId, offset: u64, chunk: ByteStream) -> Result<u64>;

    /// The number of bytes the session holds. Errors: [`Error::BlobUploadUnknown`].
    async fn upload_status(&self, id: &UploadId) -> Result<u64>;

    /// Completes a session: verifies its bytes hash to `expected`, publishes the blob and ends
    /// the session; returns the blob's size.
    ///
    /// On [`Error::DigestMismatch`] nothing is published and the session stays as it was.
    async fn upload_finish(&self, id: &UploadId, expected: &Digest) -> Result<u64>;

    /// Abandons a session and frees its bytes. Errors: [`Error::BlobUploadUnknown`].
    async fn upload_cancel(&self, id: &UploadId) -> Result<()>;
}

/// Conveniences over any [`BlobStore`].
#[async_trait]
pub trait BlobStoreExt: BlobStore {
    /// Stores bytes already in memory under their sha256 digest and returns it.
    async fn write_bytes(&self, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::sha256(&bytes);
        self.write(&digest, once_stream(bytes)).await?;
        Ok(digest)
    }

    /// Reads a whole blob into memory, refusing blobs over `limit` bytes.
    async fn read_to_bytes(&self, digest: &Digest, limit: u64) -> Result<Bytes> {
        let mut read = self.read(digest, None).await?;
        if read.size > limit {
            return Err(Error::SizeInvalid {
                what: "blob",
                size: read.size,
                limit,
            });
        }
        let mut buffer = BytesMut::with_capacity(read.size as usize);
        while let Some(chunk) = read.stream.next().await {
            buffer.extend_from_slice(&chunk?);
        }
        Ok(buffer.freeze())
    }
}

impl<T: BlobStore + ?Sized> BlobStoreExt for T {}
