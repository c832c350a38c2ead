//! Conformance of a [`BlobStore`]: content, ranges, writes and upload sessions.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::TryStreamExt;
use registry_core::blob::once_stream;
use registry_core::{Algorithm, BlobStore, ByteRange, Digest, Error, UploadId};

use super::{SharedBlobStore, chunked, failing_after, sample};

async fn read_all(store: &dyn BlobStore, digest: &Digest, range: Option<ByteRange>) -> Bytes {
    let read = store.read(digest, range).await.expect("read blob");
    let chunks: Vec<Bytes> = read.stream.try_collect().await.expect("read stream");
    chunks.concat().into()
}

/// Put, stat, read (whole and ranges), list and delete.
pub async fn blob_basics(store: SharedBlobStore) {
    let data = sample(1, 300_000);
    let digest = Digest::sha256(&data);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(
        store.read(&digest, None).await,
        Err(Error::BlobUnknown { .. })
    ));
    let size = store
        .write(&digest, chunked(data.clone(), 7_000))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_all(&*store, &digest, None).await, data);

    let range = ByteRange {
        start: 1000,
        end: Some(2000),
    };
    let read = store.read(&digest, Some(range)).await.unwrap();
    assert_eq!(
        (read.size, read.range.clone()),
        (data.len() as u64, 1000..2000)
    );
    assert_eq!(
        read_all(&*store, &digest, Some(range)).await,
        data.slice(1000..2000)
    );
    let open = ByteRange {
        start: 299_990,
        end: None,
    };
    assert_eq!(
        read_all(&*store, &digest, Some(open)).await,
        data.slice(299_990..)
    );
    let clamped = ByteRange {
        start: 299_000,
        end: Some(10_000_000),
    };
    assert_eq!(
        read_all(&*store, &digest, Some(clamped)).await,
        data.slice(299_000..)
    );
    let past = ByteRange {
        start: 300_000,
        end: None,
    };
    assert!(matches!(
        store.read(&digest, Some(past)).await,
        Err(Error::RangeNotSatisfiable { .. })
    ));

    let empty = Digest::sha256(b"");
    assert_eq!(
        store
            .write(&empty, once_stream(Bytes::new()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(read_all(&*store, &empty, None).await, Bytes::new());

    let sha512 = Digest::compute(Algorithm::Sha512, &data);
    store
        .write(&sha512, chunked(data.clone(), 65_536))
        .await
        .unwrap();
    assert_eq!(read_all(&*store, &sha512, None).await, data);

    let mut listed: Vec<Digest> = store.list().try_collect().await.unwrap();
    listed.sort();
    let mut expected = vec![digest.clone(), empty.clone(), sha512.clone()];
    expected.sort();
    assert_eq!(listed, expected, "list shows every blob once");

    assert!(store.delete(&digest).await.unwrap());
    assert!(
        !store.delete(&digest).await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

/// A digest mismatch, or a stream that fails midway, leaves nothing visible; writing an existing
/// digest succeeds and keeps the stored bytes.
pub async fn blob_rejects_bad_writes(store: SharedBlobStore) {
    let data = sample(2, 100_000);
    let digest = Digest::sha256(&data);
    let wrong = Digest::sha256(b"something else");
    match store.write(&wrong, chunked(data.clone(), 10_000)).await {
        Err(Error::DigestMismatch { expected, actual }) => {
            assert_eq!((expected, actual), (wrong.clone(), digest.clone()));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), None);

    assert!(
        store
            .write(&digest, failing_after(data.slice(..50_000)))
            .await
            .is_err()
    );
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        None,
        "failed stream published nothing"
    );
    assert_eq!(
        store.list().try_collect::<Vec<_>>().await.unwrap(),
        Vec::<Digest>::new()
    );

    store
        .write(&digest, once_stream(data.clone()))
        .await
        .unwrap();
    // The same digest again, even while another client claims it, is success.
    store
        .write(&digest, chunked(data.clone(), 333))
        .await
        .unwrap();
    // A claim of an existing digest with other bytes is still verified and refused.
    assert!(matches!(
        store
            .write(&digest, once_stream(Bytes::from_static(b"forged")))
            .await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(read_all(&*store, &digest, None).await, data);
}

/// A blob whose digest the writer does not know is stored under the digest computed from its
/// bytes; a stream failing midway leaves nothing, not even an upload session's bytes.
pub async fn blob_computed_digest(store: SharedBlobStore) {
    let data = sample(4, 300_000);
    let (digest, size) = store
        .write_computed(Algorithm::Sha256, chunked(data.clone(), 7_000))
        .await
        .unwrap();
    assert_eq!((digest.clone(), size), (Digest::sha256(&data), 300_000));
    assert_eq!(read_all(&*store, &digest, None).await, data);
    let (sha512, _) = store
        .write_computed(Algorithm::Sha512, once_stream(data.clone()))
        .await
        .unwrap();
    assert_eq!(sha512, Digest::compute(Algorithm::Sha512, &data));
    // The same bytes again: the same digest, still one blob.
    let (again, _) = store
        .write_computed(Algorithm::Sha256, once_stream(data.clone()))
        .await
        .unwrap();
    assert_eq!(again, digest);
    let other = sample(5, 10_000);
    assert!(
        store
            .write_computed(Algorithm::Sha256, failing_after(other.slice(..5_000)))
            .await
            .is_err()
    );
    let mut listed = store.list().try_collect::<Vec<_>>().await.unwrap();
    listed.sort();
    let mut expected = vec![digest, sha512];
    expected.sort();
    assert_eq!(listed, expected, "the failed write left nothing");
}

/// 8 tasks writing the same digest and 8 writing different ones all succeed; each blob is
/// stored once and reads back intact.
pub async fn blob_concurrent_writers(store: SharedBlobStore) {
    let shared = sample(3, 1 << 20);
    let shared_digest = Digest::sha256(&shared);
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = Arc::clone(&store);
        let data = if i < 8 {
            shared.clone()
        } else {
            sample(100 + i, 512 * 1024)
        };
        tasks.push(tokio::spawn(async move {
            let digest = Digest::sha256(&data);
            store
                .write(&digest, chunked(data.clone(), 64 * 1024))
                .await
                .map(|_| (digest, data))
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.push(
            task.await
                .expect("task")
                .expect("concurrent write succeeds"),
        );
    }
    for (digest, data) in &written {
        assert_eq!(
            &read_all(&*store, digest, None).await,
            data,
            "{digest} intact"
        );
    }
    let listed: Vec<Digest> = store.list().try_collect().await.unwrap();
    assert_eq!(
        listed.len(),
        9,
        "one shared blob and eight distinct ones, each stored once"
    );
    assert_eq!(listed.iter().filter(|d| **d == shared_digest).count(), 1);
}

/// Upload sessions: append at offsets, status, wrong offsets, failed chunks, finish with a
/// mismatch and then the right digest, another algorithm at finish, cancel, unknown ids.
pub async fn blob_upload_sessions(store: SharedBlobStore) {
    let data = sample(4, 250_000);
    let digest = Digest::sha256(&data);
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    assert_eq!(store.upload_status(&id).await.unwrap(), 0);
    assert_eq!(
        store
            .upload_append(&id, 0, chunked(data.slice(..100_000), 4096))
            .await
            .unwrap(),
        100_000
    );
    match store
        .upload_append(&id, 50_000, once_stream(data.slice(50_000..60_000)))
        .await
    {
        Err(Error::UploadOffsetMismatch { expected, found }) => {
            assert_eq!((expected, found), (100_000, 50_000));
        }
        other => panic!("expected an offset mismatch, got {other:?}"),
    }
    assert!(
        store
            .upload_append(&id, 100_000, failing_after(data.slice(100_000..150_000)))
            .await
            .is_err()
    );
    assert_eq!(
        store.upload_status(&id).await.unwrap(),
        100_000,
        "failed chunk left the session as it was"
    );
    assert_eq!(
        store
            .upload_append(&id, 100_000, once_stream(data.slice(100_000..)))
            .await
            .unwrap(),
        250_000
    );

    let wrong = Digest::sha256(b"nope");
    assert!(matches!(
        store.upload_finish(&id, &wrong).await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(
        store.upload_status(&id).await.unwrap(),
        250_000,
        "session survives a mismatch"
    );
    assert_eq!(store.upload_finish(&id, &digest).await.unwrap(), 250_000);
    assert_eq!(read_all(&*store, &digest, None).await, data);
    assert!(matches!(
        store.upload_status(&id).await,
        Err(Error::BlobUploadUnknown { .. })
    ));

    // A session hashed with sha256 can still be finished with a sha512 digest.
    let other = sample(5, 70_000);
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    store
        .upload_append(&id, 0, once_stream(other.clone()))
        .await
        .unwrap();
    let sha512 = Digest::compute(Algorithm::Sha512, &other);
    store.upload_finish(&id, &sha512).await.unwrap();
    assert_eq!(read_all(&*store, &sha512, None).await, other);

    // Empty uploads are blobs too.
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    assert_eq!(
        store
            .upload_finish(&id, &Digest::sha256(b""))
            .await
            .unwrap(),
        0
    );

    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    store
        .upload_append(&id, 0, once_stream(data.slice(..10)))
        .await
        .unwrap();
    store.upload_cancel(&id).await.unwrap();
    assert!(matches!(
        store.upload_status(&id).await,
        Err(Error::BlobUploadUnknown { .. })
    ));
    assert!(matches!(
        store.upload_cancel(&id).await,
        Err(Error::BlobUploadUnknown { .. })
    ));

    let unknown = UploadId::generate();
    assert!(matches!(
        store.upload_status(&unknown).await,
        Err(Error::BlobUploadUnknown { .. })
    ));
    assert!(matches!(
        store
            .upload_append(&unknown, 0, once_stream(Bytes::from_static(b"x")))
            .await,
        Err(Error::BlobUploadUnknown { .. })
    ));
    assert!(matches!(
        store.upload_finish(&unknown, &digest).await,
        Err(Error::BlobUploadUnknown { .. })
    ));
}

/// An upload begun on one handle continues on another opened by `reopen` (for a durable store, a
/// fresh instance on the same storage, as after a process restart).
pub async fn blob_upload_survives_restart<F, Fut>(store: SharedBlobStore, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = SharedBlobStore>,
{
    let data = sample(6, 200_000);
    let digest = Digest::sha256(&data);
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    store
        .upload_append(&id, 0, once_stream(data.slice(..123_457)))
        .await
        .unwrap();
    drop(store);
    let store = reopen().await;
    assert_eq!(store.upload_status(&id).await.unwrap(), 123_457);
    store
        .upload_append(&id, 123_457, chunked(data.slice(123_457..), 10_000))
        .await
        .unwrap();
    store.upload_finish(&id, &digest).await.unwrap();
    assert_eq!(read_all(&*store, &digest, None).await, data);
}

/// Blobs larger than any store's buffers (20 MiB, more than two 8 MiB parts of a multipart
/// upload): a whole write, a computed write, a mismatched write that leaves nothing, and a
/// session of three appends (12 MiB, 1 byte, the rest), read back whole and in a range that
/// spans the appends.
pub async fn blob_large(store: SharedBlobStore) {
    let data = sample(7, 20 * 1024 * 1024 + 12_345);
    let digest = Digest::sha256(&data);
    assert_eq!(
        store
            .write(&digest, chunked(data.clone(), 256 * 1024))
            .await
            .unwrap(),
        data.len() as u64
    );
    assert_eq!(read_all(&*store, &digest, None).await, data);
    assert!(store.delete(&digest).await.unwrap());

    let wrong = Digest::sha256(b"not these bytes");
    assert!(matches!(
        store
            .write(&wrong, chunked(data.clone(), 1024 * 1024))
            .await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), None);

    let (computed, size) = store
        .write_computed(Algorithm::Sha256, chunked(data.clone(), 1024 * 1024))
        .await
        .unwrap();
    assert_eq!(
        (computed.clone(), size),
        (digest.clone(), data.len() as u64)
    );
    assert_eq!(read_all(&*store, &digest, None).await, data);
    assert!(store.delete(&digest).await.unwrap());

    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    let first = 12 * 1024 * 1024;
    store
        .upload_append(&id, 0, chunked(data.slice(..first), 64 * 1024))
        .await
        .unwrap();
    store
        .upload_append(&id, first as u64, once_stream(data.slice(first..first + 1)))
        .await
        .unwrap();
    assert_eq!(
        store
            .upload_append(
                &id,
                first as u64 + 1,
                chunked(data.slice(first + 1..), 1024 * 1024)
            )
            .await
            .unwrap(),
        data.len() as u64
    );
    assert_eq!(
        store.upload_finish(&id, &digest).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    let span = ByteRange {
        start: first as u64 - 10,
        end: Some(first as u64 + 10),
    };
    assert_eq!(
        read_all(&*store, &digest, Some(span)).await,
        data.slice(first - 10..first + 10)
    );
    assert_eq!(read_all(&*store, &digest, None).await, data);
}

/// Two appends racing at the same offset of one session (from `store` and from `other`, which
/// may be the same handle or another instance on the same storage): exactly one is recorded,
/// the other is told the offset moved, and the session finishes with the winner's bytes.
pub async fn blob_upload_racing_appends(store: SharedBlobStore, other: SharedBlobStore) {
    let head = sample(8, 1000);
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    store
        .upload_append(&id, 0, once_stream(head.clone()))
        .await
        .unwrap();
    let mut expected = head.to_vec();
    for round in 0..5u64 {
        let a = sample(10 + round, 300_000);
        let b = sample(20 + round, 200_000);
        let offset = other.upload_status(&id).await.unwrap();
        let (first, second) = tokio::join!(
            store.upload_append(&id, offset, chunked(a.clone(), 8192)),
            other.upload_append(&id, offset, chunked(b.clone(), 8192)),
        );
        let won = match (first, second) {
            (Ok(size), Err(Error::UploadOffsetMismatch { found, .. })) => {
                assert_eq!((size, found), (offset + a.len() as u64, offset));
                a
            }
            (Err(Error::UploadOffsetMismatch { found, .. }), Ok(size)) => {
                assert_eq!((size, found), (offset + b.len() as u64, offset));
                b
            }
            other => panic!("exactly one of two racing appends must win, got {other:?}"),
        };
        assert_eq!(
            store.upload_status(&id).await.unwrap(),
            offset + won.len() as u64
        );
        expected.extend_from_slice(&won);
    }
    let expected = Bytes::from(expected);
    let digest = Digest::sha256(&expected);
    other.upload_finish(&id, &digest).await.unwrap();
    assert_eq!(read_all(&*store, &digest, None).await, expected);
}
