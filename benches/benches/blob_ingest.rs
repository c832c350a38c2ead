//! Filesystem blob ingest throughput beside raw SHA-256 throughput over the same data.
//!
//! Ingest streams 1 MiB chunks through `FsBlobStore::write`: hashing, writing to a staging file,
//! fsync and the atomic rename. The raw figure hashes the same chunks and nothing else; the
//! target is ingest at 80% or more of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::stream::{self, StreamExt};
use registry_core::{Algorithm, BlobStore, ByteStream, Digest, DigestHasher};
use registry_storage::fs::FsBlobStore;
use registry_storage::memory::MemoryBlobStore;

const CHUNK: usize = 1 << 20;
const SIZE: usize = 256 << 20;

fn data() -> Vec<Bytes> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..SIZE / CHUNK)
        .map(|_| {
            (0..CHUNK)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        })
        .collect()
}

fn as_stream(chunks: &[Bytes]) -> ByteStream {
    let owned: Vec<registry_core::Result<Bytes>> = chunks.iter().cloned().map(Ok).collect();
    stream::iter(owned).boxed()
}

fn digest_of(chunks: &[Bytes]) -> Digest {
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    chunks.iter().for_each(|c| hasher.update(c));
    hasher.finish()
}

fn ingest(c: &mut Criterion) {
    let chunks = data();
    let digest = digest_of(&chunks);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let fs_store: Arc<dyn BlobStore> =
        Arc::new(runtime.block_on(FsBlobStore::open(dir.path())).unwrap());
    let memory_store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());

    let mut group = c.benchmark_group("blob_ingest_256MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    group.bench_function("raw_sha256", |b| {
        b.iter(|| digest_of(&chunks));
    });
    for (name, store) in [("fs_write", &fs_store), ("memory_write", &memory_store)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let body = as_stream(&chunks);
                        let start = Instant::now();
                        store.write(&digest, body).await.unwrap();
                        elapsed += start.elapsed();
                        store.delete(&digest).await.unwrap();
                    }
                    elapsed
                })
            });
        });
    }
    group.bench_function("fs_upload_4_chunks", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let start = Instant::now();
                    let id = fs_store.upload_start(Algorithm::Sha256).await.unwrap();
                    let mut offset = 0;
                    for part in chunks.chunks(chunks.len() / 4) {
                        offset = fs_store
                            .upload_append(&id, offset, as_stream(part))
                            .await
                            .unwrap();
                    }
                    fs_store.upload_finish(&id, &digest).await.unwrap();
                    elapsed += start.elapsed();
                    fs_store.delete(&digest).await.unwrap();
                }
                elapsed
            })
        });
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
