//! Filesystem blob ingest throughput beside raw SHA-256 throughput over the same data, and the
//! object store content layer (`ObjectBlobStore`) over `object_store`'s local-filesystem and
//! memory drivers beside the filesystem store's own pipeline.
//!
//! Ingest streams 1 MiB chunks through `BlobStore::write`: for `FsBlobStore`, hashing, writing
//! to a staging file, fsync and the atomic rename. The raw figure hashes the same chunks and
//! nothing else; the target is ingest at 80% or more of it. Reads stream the whole blob back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::stream::{self, StreamExt};
use registry_core::{Algorithm, BlobStore, ByteStream, Digest, DigestHasher};
use registry_storage::fs::FsBlobStore;
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use registry_storage::object::{Driver, ObjectBlobStore, ObjectOptions};

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
    let object_dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let object_store = |url: &str| -> Arc<dyn BlobStore> {
        Arc::new(ObjectBlobStore::from_driver(
            Driver::from_url(url, &Default::default()).unwrap(),
            Arc::new(MemoryMetadataStore::new()),
            ObjectOptions::default(),
        ))
    };
    let object_file = object_store(&format!("file://{}", object_dir.path().display()));
    let object_memory = object_store("memory://");

    let mut group = c.benchmark_group("blob_ingest_256MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    group.bench_function("raw_sha256", |b| {
        b.iter(|| digest_of(&chunks));
    });
    for (name, store) in [
        ("fs_write", &fs_store),
        ("memory_write", &memory_store),
        ("object_file_write", &object_file),
        ("object_memory_write", &object_memory),
    ] {
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
    for (name, store) in [
        ("fs_upload_4_chunks", &fs_store),
        ("object_file_upload_4_chunks", &object_file),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let start = Instant::now();
                        let id = store.upload_start(Algorithm::Sha256).await.unwrap();
                        let mut offset = 0;
                        for part in chunks.chunks(chunks.len() / 4) {
                            offset = store
                                .upload_append(&id, offset, as_stream(part))
                                .await
                                .unwrap();
                        }
                        store.upload_finish(&id, &digest).await.unwrap();
                        elapsed += start.elapsed();
                        store.delete(&digest).await.unwrap();
                    }
                    elapsed
                })
            });
        });
    }
    for (name, store) in [("fs_read", &fs_store), ("object_file_read", &object_file)] {
        runtime
            .block_on(store.write(&digest, as_stream(&chunks)))
            .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let mut read = store.read(&digest, None).await.unwrap();
                    let mut total = 0;
                    while let Some(chunk) = read.stream.next().await {
                        total += chunk.unwrap().len();
                    }
                    assert_eq!(total, SIZE);
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
