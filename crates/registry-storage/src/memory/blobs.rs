//! The blob store in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use registry_core::{
    Algorithm, BlobRead, BlobStore, ByteRange, ByteStream, Digest, DigestHasher, Error, Result,
    UploadId,
};

use super::{lock, unknown_upload};

/// A blob store in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryBlobStore {
    state: Arc<Mutex<BlobState>>,
}

#[derive(Debug, Default)]
struct BlobState {
    blobs: HashMap<Digest, Bytes>,
    uploads: HashMap<UploadId, MemoryUpload>,
}

#[derive(Debug)]
struct MemoryUpload {
    data: BytesMut,
    hasher: DigestHasher,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Drains a stream into memory, hashing as it goes.
async fn collect(
    mut body: ByteStream,
    hasher: &mut DigestHasher,
    into: &mut BytesMut,
) -> Result<()> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        into.extend_from_slice(&chunk);
    }
    Ok(())
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(lock(&self.state).blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let bytes = lock(&self.state)
            .blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::BlobUnknown {
                digest: digest.clone(),
            })?;
        let size = bytes.len() as u64;
        let range = match range {
            Some(r) => r.resolve(size)?,
            None => 0..size,
        };
        let part = bytes.slice(range.start as usize..range.end as usize);
        Ok(BlobRead {
            size,
            range,
            stream: registry_core::blob::once_stream(part),
        })
    }

    async fn write(&self, expected: &Digest, body: ByteStream) -> Result<u64> {
        let mut hasher = DigestHasher::new(expected.algorithm());
        let mut data = BytesMut::new();
        collect(body, &mut hasher, &mut data).await?;
        let actual = hasher.finish();
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let size = data.len() as u64;
        lock(&self.state)
            .blobs
            .entry(actual)
            .or_insert_with(|| data.freeze());
        Ok(size)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(lock(&self.state).blobs.remove(digest).is_some())
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        let digests: Vec<Digest> = lock(&self.state).blobs.keys().cloned().collect();
        stream::iter(digests.into_iter().map(Ok)).boxed()
    }

    async fn upload_start(&self, algorithm: Algorithm) -> Result<UploadId> {
        let id = UploadId::generate();
        let upload = MemoryUpload {
            data: BytesMut::new(),
            hasher: DigestHasher::new(algorithm),
        };
        lock(&self.state).uploads.insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, chunk: ByteStream) -> Result<u64> {
        let (mut hasher, start) = {
            let state = lock(&self.state);
            let upload = state.uploads.get(id).ok_or_else(|| unknown_upload(id))?;
            (upload.hasher.clone(), upload.data.len() as u64)
        };
        if offset != start {
            return Err(Error::UploadOffsetMismatch {
                expected: start,
                found: offset,
            });
        }
        let mut data = BytesMut::new();
        collect(chunk, &mut hasher, &mut data).await?;
        let mut state = lock(&self.state);
        let upload = state
            .uploads
            .get_mut(id)
            .ok_or_else(|| unknown_upload(id))?;
        // Another append may have landed while this chunk streamed in.
        if upload.data.len() as u64 != start {
            return Err(Error::UploadOffsetMismatch {
                expected: upload.data.len() as u64,
                found: offset,
            });
        }
        upload.data.extend_from_slice(&data);
        upload.hasher = hasher;
        Ok(upload.data.len() as u64)
    }

    async fn upload_status(&self, id: &UploadId) -> Result<u64> {
        let state = lock(&self.state);
        let upload = state.uploads.get(id).ok_or_else(|| unknown_upload(id))?;
        Ok(upload.data.len() as u64)
    }

    async fn upload_finish(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        let mut state = lock(&self.state);
        let upload = state.uploads.get(id).ok_or_else(|| unknown_upload(id))?;
        let actual = if upload.hasher.algorithm() == expected.algorithm() {
            upload.hasher.peek()
        } else {
            Digest::compute(expected.algorithm(), &upload.data)
        };
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let upload = state.uploads.remove(id).ok_or_else(|| unknown_upload(id))?;
        let size = upload.data.len() as u64;
        state
            .blobs
            .entry(actual)
            .or_insert_with(|| upload.data.freeze());
        Ok(size)
    }

    async fn upload_cancel(&self, id: &UploadId) -> Result<()> {
        lock(&self.state)
            .uploads
            .remove(id)
            .map(drop)
            .ok_or_else(|| unknown_upload(id))
    }
}
