//! Streaming bytes into objects: small bodies in one `PUT`, large ones as a multipart upload
//! whose parts are sent while the rest streams in, with a bounded number in flight.

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use registry_core::{ByteStream, DigestHasher, Result};

use super::{ObjectBlobStore, store_error};

/// Parts one multipart upload may have at most (S3 allows 10,000; some room is kept).
const MAX_PARTS: u64 = 9_000;

/// Bytes streamed toward an object and not yet visible: held in memory while they fit in one
/// part, or already sent as the parts of a multipart upload that is not yet completed.
pub(super) enum Streamed {
    /// Fewer bytes than one part: put in one request by [`Streamed::commit`].
    Held(Vec<Bytes>),
    /// A multipart upload to the key given to [`ObjectBlobStore::stream_in`].
    Multipart(Multipart),
}

impl Streamed {
    /// Makes the bytes visible: held bytes at `key`, a multipart upload at the key it was
    /// started for.
    pub(super) async fn commit(self, driver: &dyn ObjectStore, key: &Path) -> Result<()> {
        match self {
            Streamed::Held(chunks) => {
                let payload: PutPayload = chunks.into_iter().collect();
                driver.put(key, payload).await.map_err(store_error)?;
                Ok(())
            }
            Streamed::Multipart(multipart) => multipart.finish().await,
        }
    }

    /// Whether the bytes went to a multipart upload (and so are bound to its key).
    pub(super) fn is_multipart(&self) -> bool {
        matches!(self, Streamed::Multipart(_))
    }
}

/// A multipart upload in progress, aborted in the background if dropped before it completes
/// (an error, a digest mismatch, a client gone), so no parts are left behind.
pub(super) struct Multipart {
    writer: Option<WriteMultipart>,
}

impl Multipart {
    fn writer(&mut self) -> &mut WriteMultipart {
        self.writer
            .as_mut()
            .expect("the writer is taken only by finish or drop")
    }

    async fn finish(mut self) -> Result<()> {
        let writer = self
            .writer
            .take()
            .expect("the writer is taken only by finish or drop");
        writer.finish().await.map_err(store_error)?;
        Ok(())
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, "aborting a multipart upload");
                }
            });
        }
    }
}

impl ObjectBlobStore {
    /// Streams `body` through `hasher`, toward `large_key` once it outgrows one part; returns
    /// the bytes' count and where they are. Memory stays within about
    /// `part_size × (parts_in_flight + 1)` whatever the size of the body.
    pub(super) async fn stream_in(
        &self,
        large_key: &Path,
        body: ByteStream,
        hasher: &mut DigestHasher,
    ) -> Result<(u64, Streamed)> {
        self.stream_in_parts(large_key, body, hasher, self.options.part_size)
            .await
    }

    /// [`ObjectBlobStore::stream_in`] with parts of `part_size` bytes.
    async fn stream_in_parts(
        &self,
        large_key: &Path,
        mut body: ByteStream,
        hasher: &mut DigestHasher,
        part_size: usize,
    ) -> Result<(u64, Streamed)> {
        let mut held = Vec::new();
        let mut held_bytes = 0usize;
        let mut multipart: Option<Multipart> = None;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let Some(multipart) = &mut multipart {
                let writer = multipart.writer();
                writer
                    .wait_for_capacity(self.options.parts_in_flight)
                    .await
                    .map_err(store_error)?;
                writer.put(chunk);
                continue;
            }
            held_bytes += chunk.len();
            held.push(chunk);
            if held_bytes >= part_size {
                let upload = self
                    .driver
                    .put_multipart(large_key)
                    .await
                    .map_err(store_error)?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
                for chunk in held.drain(..) {
                    writer.put(chunk);
                }
                multipart = Some(Multipart {
                    writer: Some(writer),
                });
            }
        }
        Ok(match multipart {
            Some(multipart) => (size, Streamed::Multipart(multipart)),
            None => (size, Streamed::Held(held)),
        })
    }

    /// Writes the objects `sources` (`size` bytes in all), in order, as one object at `to`
    /// (streamed, not held), hashing them with `hasher`; completes it only if `accept` approves
    /// the hasher's digest. Parts grow with `size` so that no upload needs more than
    /// [`MAX_PARTS`] of them.
    pub(super) async fn concatenate(
        &self,
        sources: &[Path],
        size: u64,
        to: &Path,
        mut hasher: DigestHasher,
        accept: impl FnOnce(DigestHasher) -> Result<()>,
    ) -> Result<()> {
        let needed = usize::try_from(size.div_ceil(MAX_PARTS)).unwrap_or(usize::MAX);
        let part_size = self.options.part_size.max(needed);
        let driver = std::sync::Arc::clone(&self.driver);
        let sources = sources.to_vec();
        let body = futures::stream::iter(sources)
            .then(move |key| {
                let driver = std::sync::Arc::clone(&driver);
                async move {
                    let got = driver.get(&key).await.map_err(store_error)?;
                    Ok::<_, registry_core::Error>(got.into_stream().map(|c| c.map_err(store_error)))
                }
            })
            .map(|opened| match opened {
                Ok(stream) => stream.boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed();
        let (_, streamed) = self
            .stream_in_parts(to, body, &mut hasher, part_size)
            .await?;
        accept(hasher)?;
        streamed.commit(self.driver.as_ref(), to).await
    }
}
