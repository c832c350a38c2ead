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
            case!(blob_large);

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn blob_upload_racing_appends() {
                let (store, _cleanup) = $open().await;
                conformance::blob_upload_racing_appends(Arc::clone(&store), store).await;
            }
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

/// The object store content layer over each driver: `object_store`'s own memory and
/// local-filesystem drivers with sessions in memory and in SQLite, and the S3-compatible test
/// server with sessions in PostgreSQL (`scripts/ensure-s3` starts it; a missing server fails).
mod object {
    use super::*;
    use registry_core::UploadSessions;
    use registry_storage::object::{Driver, ObjectBlobStore, ObjectOptions};
    use registry_storage::testing::{self, Cleanup};

    fn store(driver: Driver, sessions: Arc<dyn UploadSessions>) -> SharedBlobStore {
        Arc::new(ObjectBlobStore::from_driver(
            driver,
            sessions,
            ObjectOptions::default(),
        ))
    }

    pub(super) async fn memory() -> (SharedBlobStore, Cleanup) {
        let (sessions, cleanup) = testing::memory().await;
        let driver = Driver::from_url("memory://", &Default::default()).unwrap();
        (store(driver, sessions), cleanup)
    }

    pub(super) async fn file() -> (SharedBlobStore, (Cleanup, tempfile::TempDir)) {
        let (sessions, cleanup) = testing::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let driver = Driver::from_url(&url, &Default::default()).unwrap();
        (store(driver, sessions), (cleanup, dir))
    }

    pub(super) async fn s3() -> (SharedBlobStore, Cleanup) {
        let (sessions, cleanup) = testing::postgres().await;
        (
            store(testing::s3_driver(&testing::s3_url()), sessions),
            cleanup,
        )
    }

    /// Two instances: two stores on the same bucket prefix and the same PostgreSQL sessions.
    async fn s3_pair() -> (SharedBlobStore, SharedBlobStore, Cleanup) {
        let (sessions, cleanup) = testing::postgres().await;
        let url = testing::s3_url();
        let one = store(testing::s3_driver(&url), Arc::clone(&sessions) as _);
        let two = store(testing::s3_driver(&url), sessions);
        (one, two, cleanup)
    }

    #[tokio::test]
    async fn objects_over_the_copy_limit_are_streamed_into_place_and_staging_is_purged() {
        use object_store::ObjectStoreExt;
        let (sessions, _cleanup) = testing::memory().await;
        let driver: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let store = ObjectBlobStore::new(
            Arc::clone(&driver),
            object_store::path::Path::from("root"),
            sessions,
            ObjectOptions {
                copy_limit: 1 << 20,
                ..ObjectOptions::default()
            },
        );
        // A computed write past one part is staged, then (over the copy limit) streamed.
        let data = sample(60, 9 << 20);
        let (digest, size) = store
            .write_computed(Algorithm::Sha256, chunked(data.clone(), 1 << 20))
            .await
            .unwrap();
        assert_eq!(
            (digest.clone(), size),
            (Digest::sha256(&data), data.len() as u64)
        );
        let read = store.read(&digest, None).await.unwrap();
        let chunks: Vec<Bytes> = futures::TryStreamExt::try_collect(read.stream)
            .await
            .unwrap();
        assert_eq!(chunks.concat(), data);
        // A staging object left by a killed instance goes; the blob stays.
        driver
            .put(
                &"root/staging/left-behind".into(),
                Bytes::from_static(b"x").into(),
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .purge_staging(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.purge_staging(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
        let left: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(driver.list(Some(&"root/staging".into())))
                .await
                .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn an_upload_takes_a_bounded_number_of_chunks() {
        let (sessions, _cleanup) = testing::memory().await;
        let store = ObjectBlobStore::from_driver(
            Driver::from_url("memory://", &Default::default()).unwrap(),
            sessions,
            ObjectOptions {
                max_segments: 3,
                ..ObjectOptions::default()
            },
        );
        let data = sample(50, 4000);
        let id = store.upload_start(Algorithm::Sha256).await.unwrap();
        for n in 0..3u64 {
            let chunk = data.slice(n as usize * 1000..(n as usize + 1) * 1000);
            store
                .upload_append(&id, n * 1000, stream::once(async { Ok(chunk) }).boxed())
                .await
                .unwrap();
        }
        let refused = store
            .upload_append(
                &id,
                3000,
                stream::once(async { Ok(Bytes::from_static(b"x")) }).boxed(),
            )
            .await;
        assert!(
            matches!(refused, Err(registry_core::Error::BlobUploadInvalid { .. })),
            "{refused:?}"
        );
        assert_eq!(store.upload_status(&id).await.unwrap(), 3000);
        let digest = Digest::sha256(&data[..3000]);
        assert_eq!(store.upload_finish(&id, &digest).await.unwrap(), 3000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn s3_appends_racing_from_two_instances_one_wins() {
        let (one, two, _cleanup) = s3_pair().await;
        conformance::blob_upload_racing_appends(one, two).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn s3_upload_continues_on_another_instance() {
        let (one, two, _cleanup) = s3_pair().await;
        conformance::blob_upload_survives_restart(one, || async move { two }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn s3_redirects_to_a_presigned_url_that_serves_the_blob() {
        let (sessions, _cleanup) = testing::postgres().await;
        let store = ObjectBlobStore::from_driver(
            testing::s3_driver(&testing::s3_url()),
            sessions,
            ObjectOptions::default(),
        );
        let data = sample(40, 100_000);
        let digest = registry_core::BlobStoreExt::write_bytes(&store, data.clone())
            .await
            .unwrap();
        assert_eq!(
            store.redirect_url(&digest).await.unwrap(),
            None,
            "off by default"
        );
        let store = store.redirect_for(Duration::from_secs(60));
        let url = store
            .redirect_url(&digest)
            .await
            .unwrap()
            .expect("a signed URL");
        assert!(url.contains("X-Amz-Signature"), "{url}");
        let fetched = http_get_bytes(&url).await;
        assert_eq!(fetched, data);
    }

    /// A plain HTTP GET, so the test depends on nothing but the standard library.
    async fn http_get_bytes(url: &str) -> Bytes {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let rest = url.strip_prefix("http://").expect("http URL");
            let (host, path) = rest.split_once('/').expect("a path");
            let mut conn = std::net::TcpStream::connect(host).unwrap();
            write!(conn, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
            let mut response = Vec::new();
            conn.read_to_end(&mut response).unwrap();
            let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&response[..split]).to_string();
            assert!(
                head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
                "{head}"
            );
            Bytes::copy_from_slice(&response[split + 4..])
        })
        .await
        .unwrap()
    }
}

blob_suite!(object_memory, object::memory);
blob_suite!(object_file, object::file);
blob_suite!(s3, object::s3);
