//! Moving package files, shared by the package routers: storing a stream in the blob store
//! while computing the extra digests a format publishes, and reading a stored file as blocking
//! `Read + Seek` for the archive readers of `registry-formats` (wheels, sdists; `.nupkg` and
//! jars next). Memory does not grow with the file either way.
// Shared by the package routers; with only some of them compiled in, parts go unused.
#![cfg_attr(
    not(all(feature = "generic", feature = "npm", feature = "pypi")),
    allow(dead_code)
)]

use std::io::{Read, Seek, SeekFrom};

use blake2::Digest as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use registry_core::{BlobRef, ByteRange, Error, Packages, Result};

type Blake2b256 = blake2::Blake2b<blake2::digest::consts::U32>;

/// The digests computed while a file streams in, besides the SHA-256 the blob store computes:
/// what PyPI publishes (BLAKE2b-256) and checks (MD5); Maven's and NuGet's join when they come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamDigests {
    /// BLAKE2b-256, hex.
    pub(crate) blake2_256: String,
    /// MD5, hex.
    pub(crate) md5: String,
}

/// Streams `body` into the blob store while computing [`StreamDigests`]. A body that fails
/// stores nothing and is [`Error::BlobUploadInvalid`] ("the upload broke off").
pub(crate) async fn store_with_digests<E: std::fmt::Display>(
    packages: &Packages,
    mut body: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin,
) -> Result<(BlobRef, StreamDigests)> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<Bytes>>(4);
    let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed();
    let store = packages.store_file(stream);
    let feed = async {
        let mut blake2 = Blake2b256::new();
        let mut md5 = md5::Md5::new();
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    blake2.update(&chunk);
                    md5.update(&chunk);
                    if sender.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let error = || Error::BlobUploadInvalid {
                        reason: format!("the upload broke off: {e}"),
                    };
                    failure = Some(error());
                    let _ = sender.send(Err(error())).await;
                    break;
                }
            }
        }
        drop(sender);
        let digests = StreamDigests {
            blake2_256: hex::encode(blake2.finalize()),
            md5: hex::encode(md5.finalize()),
        };
        (digests, failure)
    };
    let (stored, (digests, failure)) = futures::join!(store, feed);
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok((stored?, digests))
}

/// Runs `read` on a blocking thread over the stored file as `Read + Seek` (fetching 256 KiB
/// ranges as they are needed).
pub(crate) async fn read_blocking<T: Send + 'static>(
    packages: &Packages,
    blob: &BlobRef,
    read: impl FnOnce(BlobReader) -> T + Send + 'static,
) -> Result<T> {
    let reader = BlobReader {
        packages: packages.clone(),
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

/// Synchronous `Read + Seek` over a stored blob, fetching 256 KiB ranges as they are needed.
pub(crate) struct BlobReader {
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
            let packages = self.packages.clone();
            let blob = self.blob.clone();
            let bytes = self.runtime.block_on(async move {
                let mut read = packages.read(&blob, Some(range)).await?;
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
