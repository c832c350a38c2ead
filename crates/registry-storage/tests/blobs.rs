//! The blob conformance suite on every blob backend, and the filesystem store's crash behaviour.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use registry_core::{Algorithm, BlobStore, ByteStream, Digest};
use registry_storage::conformance::{self, SharedBlobStore, chunked, sample};
use registry_storage::fs::{FsBlobStore, FsOptions};
use registry_storage::memory::MemoryBlobStore;

async fn memory() -> (SharedBlobStore, ()) {
    (Arc::new(MemoryBlobStore::new()), ())
}

async fn filesystem() -> (SharedBlobStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(FsBlobStore::open(dir.path()).await.unwrap()), dir)
}

macro_rules! blob_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let (store, _cleanup) = $open().await;
                        conformance::$name(store).await;
                    }
                };
            }

            case!(blob_basics);
            case!(blob_rejects_bad_writes);
            case!(blob_concurrent_writers);
            case!(blob_upload_sessions);
            case!(blob_computed_digest);
        }
    };
}

blob_suite!(in_memory, memory);
blob_suite!(fs, filesystem);

#[tokio::test]
async fn memory_upload_continues_on_another_handle() {
    // The memory store is not durable: its "restart" is a second handle on the same state.
    let store = MemoryBlobStore::new();
    let again = store.clone();
    conformance::blob_upload_survives_restart(Arc::new(store), || async move {
        Arc::new(again) as SharedBlobStore
    })
    .await;
}

#[tokio::test]
async fn fs_upload_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    let root = dir.path().to_owned();
    conformance::blob_upload_survives_restart(Arc::new(store), || async move {
        Arc::new(FsBlobStore::open(root).await.unwrap()) as SharedBlobStore
    })
    .await;
}

/// A stream that yields `data` and then never ends, like a client that stalls.
fn stalling(data: Bytes) -> ByteStream {
    stream::once(async move { Ok(data) })
        .chain(stream::pending())
        .boxed()
}

fn staging_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("staging")).unwrap().count()
}

#[tokio::test]
async fn fs_aborted_write_leaves_no_blob_and_no_staging() {
    let (store, dir) = filesystem().await;
    let data = sample(7, 1 << 20);
    let digest = Digest::sha256(&data);
    let writer = {
        let store = Arc::clone(&store);
        let digest = digest.clone();
        tokio::spawn(async move { store.write(&digest, stalling(data.slice(..500_000))).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(staging_files(dir.path()), 1, "the write is staged");
    writer.abort();
    assert!(writer.await.unwrap_err().is_cancelled());
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_eq!(
        staging_files(dir.path()),
        0,
        "an aborted write removes its staging file"
    );
}

#[tokio::test]
async fn fs_open_removes_only_stale_staging_files() {
    // What a killed process leaves behind (tests/fs_kill.rs produces it with a real SIGKILL):
    // a partial file in staging/, and nothing in blobs/.
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    let data = sample(8, 1 << 20);
    let digest = Digest::sha256(&data);
    std::fs::write(
        dir.path().join("staging/left-by-a-killed-write"),
        &data[..300_000],
    )
    .unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None, "nothing visible");

    // A start that sees the staging file as possibly in use by another process keeps it…
    let reopened = FsBlobStore::open(dir.path()).await.unwrap();
    assert_eq!(staging_files(dir.path()), 1);
    // …and one that sees it as stale removes it.
    let options = FsOptions {
        stale_staging_after: Duration::ZERO,
    };
    let reopened_later = FsBlobStore::open_with(dir.path(), options).await.unwrap();
    assert_eq!(staging_files(dir.path()), 0);
    assert_eq!(reopened_later.stat(&digest).await.unwrap(), None);
    reopened
        .write(&digest, chunked(data.clone(), 65_536))
        .await
        .unwrap();
    assert_eq!(
        reopened_later.stat(&digest).await.unwrap(),
        Some(data.len() as u64)
    );
}

#[tokio::test]
async fn fs_bytes_past_the_recorded_size_are_discarded() {
    // A process killed mid-append leaves bytes in the data file that the state never recorded.
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    let data = sample(9, 400_000);
    let digest = Digest::sha256(&data);
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    store
        .upload_append(&id, 0, chunked(data.slice(..100_000), 8192))
        .await
        .unwrap();
    let data_file = dir.path().join("uploads").join(id.as_str()).join("data");
    let mut garbage = std::fs::OpenOptions::new()
        .append(true)
        .open(&data_file)
        .unwrap();
    std::io::Write::write_all(&mut garbage, &[0xAA; 77_777]).unwrap();

    let restarted = FsBlobStore::open(dir.path()).await.unwrap();
    assert_eq!(restarted.upload_status(&id).await.unwrap(), 100_000);
    restarted
        .upload_append(&id, 100_000, chunked(data.slice(100_000..), 50_000))
        .await
        .unwrap();
    restarted.upload_finish(&id, &digest).await.unwrap();
    let stored = tokio::fs::read(
        dir.path()
            .join("blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex()),
    )
    .await
    .unwrap();
    assert_eq!(
        Digest::sha256(&stored),
        digest,
        "the blob holds exactly the recorded bytes"
    );
}

#[tokio::test]
async fn fs_layout_is_content_addressed() {
    let (store, dir) = filesystem().await;
    let data = Bytes::from_static(b"layout");
    let digest = Digest::sha256(&data);
    store.write(&digest, chunked(data, 2)).await.unwrap();
    let path = dir
        .path()
        .join("blobs")
        .join("sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    assert_eq!(std::fs::read(path).unwrap(), b"layout");
    // Stray files in the blob tree are not reported as blobs.
    std::fs::write(
        dir.path()
            .join("blobs/sha256")
            .join(&digest.hex()[..2])
            .join("junk"),
        b"x",
    )
    .unwrap();
    let listed: Vec<Digest> = store.list().map(|d| d.unwrap()).collect().await;
    assert_eq!(listed, vec![digest]);
}
