//! Moving package files: storing a stream in the blob store while the digests a format needs
//! are computed, and reading a stored file as blocking `Read + Seek` for archive readers
//! (wheels, sdists, `.nupkg`, jars). Memory does not grow with the file either way.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::Digest as _;

use super::Packages;
use super::format::ExtraDigests;
use crate::blob::ByteRange;
use crate::digest::Algorithm;
use crate::error::{Error, Result};
use crate::package::{BlobRef, FileDigests};

type Blake2b256 = blake2::Blake2b<blake2::digest::consts::U32>;

/// A file stored in the blob store, with the extra digests its format asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The blob (SHA-256 and size).
    pub blob: BlobRef,
    /// The extra digests, hex; those not asked for are `None`.
    pub digests: FileDigests,
}

/// The hashers of [`ExtraDigests`], fed as the bytes pass.
#[derive(Default)]
struct Hashers {
    md5: Option<md5::Md5>,
    sha1: Option<sha1::Sha1>,
    sha512: Option<sha2::Sha512>,
    blake2_256: Option<Blake2b256>,
}

impl Hashers {
    fn new(wanted: ExtraDigests) -> Self {
        Hashers {
            md5: wanted.md5.then(md5::Md5::default),
            sha1: wanted.sha1.then(sha1::Sha1::default),
            sha512: wanted.sha512.then(sha2::Sha512::default),
            blake2_256: wanted.blake2_256.then(Blake2b256::default),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.md5 {
            md5::Digest::update(h, bytes);
        }
        if let Some(h) = &mut self.sha1 {
            sha1::Digest::update(h, bytes);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.blake2_256 {
            blake2::Digest::update(h, bytes);
        }
    }

    fn finish(self) -> FileDigests {
        FileDigests {
            md5: self.md5.map(|h| hex::encode(md5::Digest::finalize(h))),
            sha1: self.sha1.map(|h| hex::encode(sha1::Digest::finalize(h))),
            sha512: self.sha512.map(|h| hex::encode(h.finalize())),
            blake2_256: self
                .blake2_256
                .map(|h| hex::encode(blake2::Digest::finalize(h))),
        }
    }
}

impl Packages {
    /// Streams a file into the blob store while computing `extra` digests, and records the
    /// blob (collected after the review delay unless a publish references it).
    ///
    /// Errors: [`Error::SizeInvalid`] past the file size limit; [`Error::BlobUploadInvalid`]
    /// when the body breaks off. Either way nothing is kept.
    pub async fn store_file<E: std::fmt::Display>(
        &self,
        extra: ExtraDigests,
        mut body: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    ) -> Result<StoredFile> {
        let limit = self.limits.max_file_size;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<Bytes>>(4);
        let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed();
        let store = self.store_blob(stream);
        let feed = async {
            let mut hashers = Hashers::new(extra);
            let mut total = 0u64;
            let mut failure = None;
            while let Some(chunk) = body.next().await {
                let checked = match chunk {
                    Ok(chunk) => {
                        total = total.saturating_add(chunk.len() as u64);
                        if total > limit {
                            Err(Error::SizeInvalid {
                                what: "package file",
                                size: total,
                                limit,
                            })
                        } else {
                            Ok(chunk)
                        }
                    }
                    Err(e) => Err(Error::BlobUploadInvalid {
                        reason: format!("the upload broke off: {e}"),
                    }),
                };
                match checked {
                    Ok(chunk) => {
                        hashers.update(&chunk);
                        if sender.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        // Aborts the write; the caller gets `error` itself.
                        let abort = Error::BlobUploadInvalid {
                            reason: "the upload was refused".into(),
                        };
                        let _ = sender.send(Err(abort)).await;
                        failure = Some(error);
                        break;
                    }
                }
            }
            drop(sender);
            (hashers.finish(), failure)
        };
        let (stored, (digests, failure)) = futures::join!(store, feed);
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(StoredFile {
            blob: stored?,
            digests,
        })
    }

    /// Stores a file already in memory (see [`Packages::store_file`]).
    pub async fn store_bytes(&self, extra: ExtraDigests, bytes: Bytes) -> Result<StoredFile> {
        self.store_file(extra, crate::blob::once_stream(bytes))
            .await
    }

    /// Writes the bytes, records the blob, and checks a collector did not take it meanwhile.
    async fn store_blob(&self, body: crate::blob::ByteStream) -> Result<BlobRef> {
        let (digest, size) = self.blobs.write_computed(Algorithm::Sha256, body).await?;
        let blob = BlobRef { digest, size };
        self.metadata.record_package_blob(&blob).await?;
        // A collector may have claimed the digest and deleted the bytes between the write and
        // the record (the record waited for the claim): then fail cleanly.
        if self.blobs.stat(&blob.digest).await?.is_none() {
            return Err(Error::BlobUploadInvalid {
                reason: format!(
                    "blob {} was garbage-collected while it was being stored; upload again",
                    blob.digest
                ),
            });
        }
        Ok(blob)
    }

    /// Runs `read` on a blocking thread over a stored file as `Read + Seek` (fetching 256 KiB
    /// ranges as they are needed). Needs a Tokio runtime.
    pub async fn read_blocking<T: Send + 'static>(
        &self,
        blob: &BlobRef,
        read: impl FnOnce(BlobReader) -> T + Send + 'static,
    ) -> Result<T> {
        let reader = BlobReader {
            packages: self.clone(),
            blob: blob.clone(),
            position: 0,
            buffer: Bytes::new(),
            buffer_start: 0,
            runtime: tokio::runtime::Handle::current(),
        };
        tokio::task::spawn_blocking(move || read(reader))
            .await
            .map_err(|e| Error::backend(e.to_string()))
    }
}

/// Synchronous `Read + Seek` over a stored blob, fetching 256 KiB ranges as they are needed
/// (see [`Packages::read_blocking`]).
pub struct BlobReader {
    packages: Packages,
    blob: BlobRef,
    position: u64,
    buffer: Bytes,
    buffer_start: u64,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("blob", &self.blob)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

const READ_AHEAD: u64 = 256 << 10;

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.position >= self.blob.size || out.is_empty() {
            return Ok(0);
        }
        let buffered = self.buffer_start..self.buffer_start + self.buffer.len() as u64;
        if !buffered.contains(&self.position) {
            let end = (self.position + READ_AHEAD).min(self.blob.size);
            let range = ByteRange {
                start: self.position,
                end: Some(end),
            };
            let blobs = std::sync::Arc::clone(&self.packages.blobs);
            let digest = self.blob.digest.clone();
            let bytes = self.runtime.block_on(async move {
                let mut read = blobs.read(&digest, Some(range)).await?;
                let mut bytes = Vec::with_capacity((end - range.start) as usize);
                while let Some(chunk) = read.stream.next().await {
                    bytes.extend_from_slice(&chunk?);
                }
                Ok::<_, Error>(bytes)
            });
            self.buffer = Bytes::from(bytes.map_err(std::io::Error::other)?);
            self.buffer_start = self.position;
        }
        let offset = (self.position - self.buffer_start) as usize;
        let available = &self.buffer[offset..];
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => i128::from(at),
            SeekFrom::End(delta) => i128::from(self.blob.size) + i128::from(delta),
            SeekFrom::Current(delta) => i128::from(self.position) + i128::from(delta),
        };
        self.position = u64::try_from(target).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.position)
    }
}
