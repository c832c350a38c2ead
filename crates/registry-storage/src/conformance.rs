//! The conformance suite every backend runs.
//!
//! Each function exercises one area of a [`BlobStore`] or [`MetadataStore`] and panics, with a
//! message saying what broke, when the backend misbehaves. A backend's tests call every function
//! on a fresh store. An embedder's own backend can do the same:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use registry_storage::{conformance, memory::MemoryBlobStore};
//!
//! conformance::blob_basics(Arc::new(MemoryBlobStore::new())).await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use registry_core::blob::once_stream;
use registry_core::manifest::{OCI_INDEX, OCI_MANIFEST};
use registry_core::{
    Algorithm, BlobRef, BlobStore, ByteRange, ByteStream, Digest, Error, FileDigests,
    MetadataStore, NewManifest, NewPackageFile, PackageFormat, PackageRepository, PackageUpdate,
    Page, PolicyKind, PolicySource, Publish, PublishMode, Reference, RepositoryKind,
    RepositoryName, RepositorySettings, ReviewEvent, ReviewTarget, Role, StoredPolicy, Tag,
    TagGuard, TagRule, Timestamp, TokenRecord, UploadId, UploadRecord, VersionStatus,
};

/// A shared blob store under test.
pub type SharedBlobStore = Arc<dyn BlobStore>;
/// A shared metadata store under test.
pub type SharedMetadataStore = Arc<dyn MetadataStore>;

/// Splits bytes into a stream of chunks of `chunk` bytes.
pub fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<registry_core::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|start| Ok(data.slice(start..(start + chunk).min(data.len()))))
        .collect();
    stream::iter(chunks).boxed()
}

/// A stream that yields `data` and then fails, as a client that disconnects mid-upload does.
pub fn failing_after(data: Bytes) -> ByteStream {
    let items: Vec<registry_core::Result<Bytes>> = vec![
        Ok(data),
        Err(Error::BlobUploadInvalid {
            reason: "client went away".into(),
        }),
    ];
    stream::iter(items).boxed()
}

/// Deterministic test content of `len` bytes, different for each `seed`.
pub fn sample(seed: u64, len: usize) -> Bytes {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as u8
        })
        .collect()
}

async fn read_all(store: &dyn BlobStore, digest: &Digest, range: Option<ByteRange>) -> Bytes {
    let read = store.read(digest, range).await.expect("read blob");
    let chunks: Vec<Bytes> = read.stream.try_collect().await.expect("read stream");
    chunks.concat().into()
}

fn name(s: &str) -> RepositoryName {
    RepositoryName::parse(s).expect("valid repository name")
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).expect("valid tag")
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

/// A manifest with the given references, for metadata tests.
pub fn new_manifest(
    repository: &RepositoryName,
    seed: &str,
    blobs: &[Digest],
    children: &[Digest],
    subject: Option<&Digest>,
    artifact_type: Option<&str>,
) -> NewManifest {
    let bytes = Bytes::from(format!("{{\"seed\":\"{seed}\"}}"));
    NewManifest {
        repository: repository.clone(),
        digest: Digest::sha256(&bytes),
        media_type: if children.is_empty() {
            OCI_MANIFEST
        } else {
            OCI_INDEX
        }
        .to_owned(),
        artifact_type: artifact_type.map(str::to_owned),
        subject: subject.cloned(),
        annotations: BTreeMap::from([("seed".to_owned(), seed.to_owned())]),
        bytes,
        blobs: blobs.to_vec(),
        children: children.to_vec(),
    }
}

fn far_future() -> Timestamp {
    Timestamp::now().after(Duration::from_secs(3 * 24 * 3600))
}

async fn queued(store: &dyn MetadataStore, target: &ReviewTarget) -> ReviewEvent {
    store
        .review(target)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{target:?} is queued for review"))
        .event
}

fn blob_target(digest: &Digest) -> ReviewTarget {
    ReviewTarget::Blob {
        digest: digest.clone(),
    }
}

fn manifest_target(repository: &RepositoryName, digest: &Digest) -> ReviewTarget {
    ReviewTarget::Manifest {
        repository: repository.clone(),
        digest: digest.clone(),
    }
}

/// Blob links: link (creating the repository), lookups per repository and global, unlink; each
/// with its review-queue entry.
pub async fn metadata_blob_links(store: SharedMetadataStore) {
    let a = name("links/a");
    let b = name("links/b");
    let digest = Digest::sha256(b"layer");
    assert!(!store.repository_exists(&a).await.unwrap());
    assert_eq!(store.blob(&digest).await.unwrap(), None);
    store.link_blob(&a, &digest, 5).await.unwrap();
    store.link_blob(&a, &digest, 5).await.unwrap();
    assert!(store.repository_exists(&a).await.unwrap());
    assert_eq!(
        queued(&*store, &blob_target(&digest)).await,
        ReviewEvent::BlobUploaded
    );
    let record = store
        .linked_blob(&a, &digest)
        .await
        .unwrap()
        .expect("linked");
    assert_eq!((record.digest.clone(), record.size), (digest.clone(), 5));
    assert_eq!(
        store.linked_blob(&b, &digest).await.unwrap(),
        None,
        "not linked to b"
    );
    assert_eq!(store.blob(&digest).await.unwrap().map(|r| r.size), Some(5));

    store.link_blob(&b, &digest, 5).await.unwrap();
    assert!(store.unlink_blob(&a, &digest).await.unwrap());
    assert!(!store.unlink_blob(&a, &digest).await.unwrap());
    assert_eq!(
        queued(&*store, &blob_target(&digest)).await,
        ReviewEvent::BlobUnlinked
    );
    assert_eq!(store.linked_blob(&a, &digest).await.unwrap(), None);
    assert!(store.linked_blob(&b, &digest).await.unwrap().is_some());
}

/// Manifests and tags: a push with missing content changes nothing (manifest and tag are one
/// transaction); lookups by tag and digest return the exact bytes; retagging; tag deletion;
/// manifest deletion with its tags; index children protect their manifests.
pub async fn metadata_manifests_and_tags(store: SharedMetadataStore) {
    let repo = name("library/app");
    let config = Digest::sha256(b"config");
    let layer = Digest::sha256(b"layer");
    store.link_blob(&repo, &config, 6).await.unwrap();
    let one = new_manifest(
        &repo,
        "one",
        &[config.clone(), layer.clone()],
        &[],
        None,
        None,
    );

    match store
        .put_manifest(&one, &[tag("v1")], &TagGuard::none())
        .await
    {
        Err(Error::ManifestBlobUnknown { digest }) => assert_eq!(digest, layer),
        other => panic!("expected MANIFEST_BLOB_UNKNOWN, got {other:?}"),
    }
    let by_digest = Reference::Digest(one.digest.clone());
    assert_eq!(
        store.manifest(&repo, &by_digest).await.unwrap(),
        None,
        "nothing stored"
    );
    assert_eq!(
        store.list_tags(&repo, &Page::first(10)).await.unwrap(),
        Vec::<Tag>::new()
    );

    store.link_blob(&repo, &layer, 5).await.unwrap();
    let outcome = store
        .put_manifest(&one, &[tag("v1")], &TagGuard::none())
        .await
        .unwrap();
    assert!(outcome.created);
    assert_eq!(outcome.previous_tag_targets, vec![]);
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &one.digest)).await,
        ReviewEvent::ManifestUploaded
    );
    let again = store
        .put_manifest(&one, &[tag("v1")], &TagGuard::none())
        .await
        .unwrap();
    assert!(
        !again.created,
        "pushing the same manifest again is idempotent"
    );

    for reference in [by_digest.clone(), Reference::Tag(tag("v1"))] {
        let record = store
            .manifest(&repo, &reference)
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(record.bytes, one.bytes, "bytes served exactly as pushed");
        assert_eq!(record.digest, one.digest);
        assert_eq!(record.media_type, OCI_MANIFEST);
        assert_eq!(record.annotations, one.annotations);
    }
    assert_eq!(
        store
            .manifest(&repo, &Reference::Tag(tag("nope")))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .manifest(&name("other/repo"), &by_digest)
            .await
            .unwrap(),
        None
    );

    let two = new_manifest(&repo, "two", std::slice::from_ref(&config), &[], None, None);
    let outcome = store
        .put_manifest(&two, &[tag("v1")], &TagGuard::none())
        .await
        .unwrap();
    assert_eq!(outcome.previous_tag_targets, vec![one.digest.clone()]);
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &one.digest)).await,
        ReviewEvent::TagSwitched
    );
    assert_eq!(
        store
            .put_tag(&repo, &tag("stable"), &one.digest, &TagGuard::none())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .put_tag(&repo, &tag("latest"), &two.digest, &TagGuard::none())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .put_tag(&repo, &tag("latest"), &one.digest, &TagGuard::none())
            .await
            .unwrap(),
        Some(two.digest.clone())
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &two.digest)).await,
        ReviewEvent::TagSwitched
    );
    assert!(matches!(
        store
            .put_tag(
                &repo,
                &tag("x"),
                &Digest::sha256(b"absent"),
                &TagGuard::none()
            )
            .await,
        Err(Error::ManifestUnknown { .. })
    ));

    assert_eq!(
        store
            .delete_tag(&repo, &tag("v1"), &TagGuard::none())
            .await
            .unwrap(),
        two.digest
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &two.digest)).await,
        ReviewEvent::TagDeleted
    );
    assert!(matches!(
        store.delete_tag(&repo, &tag("v1"), &TagGuard::none()).await,
        Err(Error::ManifestUnknown { .. })
    ));
    assert!(
        store
            .manifest(&repo, &Reference::Digest(two.digest.clone()))
            .await
            .unwrap()
            .is_some(),
        "tag delete keeps the manifest"
    );

    // An index protects its children.
    let index = new_manifest(
        &repo,
        "index",
        &[],
        &[one.digest.clone(), two.digest.clone()],
        None,
        None,
    );
    let orphan = new_manifest(
        &repo,
        "orphan-index",
        &[],
        &[Digest::sha256(b"no child")],
        None,
        None,
    );
    assert!(matches!(
        store.put_manifest(&orphan, &[], &TagGuard::none()).await,
        Err(Error::ManifestBlobUnknown { .. })
    ));
    store
        .put_manifest(&index, &[tag("multi")], &TagGuard::none())
        .await
        .unwrap();
    match store
        .delete_manifest(&repo, &one.digest, &TagGuard::none())
        .await
    {
        Err(Error::ManifestReferenced { digest, index: by }) => {
            assert_eq!((digest, by), (one.digest.clone(), index.digest.clone()));
        }
        other => panic!("expected the index to protect its child, got {other:?}"),
    }
    assert_eq!(
        store
            .delete_manifest(&repo, &index.digest, &TagGuard::none())
            .await
            .unwrap(),
        vec![tag("multi")]
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &one.digest)).await,
        ReviewEvent::IndexDeleted
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &two.digest)).await,
        ReviewEvent::IndexDeleted
    );

    let mut tags = store
        .delete_manifest(&repo, &one.digest, &TagGuard::none())
        .await
        .unwrap();
    tags.sort();
    assert_eq!(tags, vec![tag("latest"), tag("stable")]);
    assert_eq!(
        queued(&*store, &blob_target(&layer)).await,
        ReviewEvent::ManifestDeleted
    );
    assert_eq!(
        store
            .manifest(&repo, &Reference::Tag(tag("latest")))
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .delete_manifest(&repo, &one.digest, &TagGuard::none())
            .await,
        Err(Error::ManifestUnknown { .. })
    ));
    assert!(matches!(
        store
            .delete_manifest(&name("never/was"), &one.digest, &TagGuard::none())
            .await,
        Err(Error::ManifestUnknown { .. })
    ));
}

/// Referrers by subject and artifact type; a missing subject is allowed and has no referrers;
/// deleting a subject queues its referrers.
pub async fn metadata_referrers(store: SharedMetadataStore) {
    let repo = name("refs");
    let subject = new_manifest(&repo, "subject", &[], &[], None, None);
    // The subject does not exist yet: a referrer may still be pushed.
    let sig = new_manifest(
        &repo,
        "sig",
        &[],
        &[],
        Some(&subject.digest),
        Some("application/x.sig"),
    );
    let sbom = new_manifest(
        &repo,
        "sbom",
        &[],
        &[],
        Some(&subject.digest),
        Some("application/x.sbom"),
    );
    store
        .put_manifest(&sig, &[], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&sbom, &[], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&subject, &[tag("v1")], &TagGuard::none())
        .await
        .unwrap();

    let all = store.referrers(&repo, &subject.digest, None).await.unwrap();
    let mut expected = vec![sig.digest.clone(), sbom.digest.clone()];
    expected.sort();
    assert_eq!(
        all.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        expected
    );
    let only_sig = store
        .referrers(&repo, &subject.digest, Some("application/x.sig"))
        .await
        .unwrap();
    assert_eq!(only_sig.len(), 1);
    assert_eq!(only_sig[0].digest, sig.digest);
    assert_eq!(only_sig[0].size, sig.bytes.len() as u64);
    assert_eq!(only_sig[0].media_type, OCI_MANIFEST);
    assert_eq!(only_sig[0].annotations, sig.annotations);
    assert!(
        store
            .referrers(&repo, &subject.digest, Some("none/such"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .referrers(&repo, &Digest::sha256(b"unknown"), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .referrers(&name("no/repo"), &subject.digest, None)
            .await
            .unwrap()
            .is_empty()
    );

    store
        .delete_manifest(&repo, &subject.digest, &TagGuard::none())
        .await
        .unwrap();
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &sig.digest)).await,
        ReviewEvent::SubjectDeleted
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &sbom.digest)).await,
        ReviewEvent::SubjectDeleted
    );
}

/// Tag and repository listings in byte order with `n`/`last` pagination, at every boundary.
pub async fn metadata_pagination(store: SharedMetadataStore) {
    let repo = name("paged");
    let manifest = new_manifest(&repo, "paged", &[], &[], None, None);
    store
        .put_manifest(&manifest, &[], &TagGuard::none())
        .await
        .unwrap();
    // Byte order: upper case before '_' before lower case; "v10" before "v2".
    let names = ["B", "_x", "a", "a-1", "latest", "v10", "v2"];
    for t in names.iter().rev() {
        store
            .put_tag(&repo, &tag(t), &manifest.digest, &TagGuard::none())
            .await
            .unwrap();
    }
    let all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let list = |page: Page| {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        async move {
            store
                .list_tags(&repo, &page)
                .await
                .unwrap()
                .iter()
                .map(Tag::to_string)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Page::first(100)).await, all);
    assert_eq!(list(Page::first(0)).await, Vec::<String>::new());
    assert_eq!(list(Page::first(3)).await, all[..3]);
    assert_eq!(list(Page::after("a", 3)).await, all[3..6]);
    assert_eq!(list(Page::after("a-1", 10)).await, all[4..]);
    assert_eq!(list(Page::after("v2", 10)).await, Vec::<String>::new());
    assert_eq!(list(Page::after("zzz", 10)).await, Vec::<String>::new());
    assert_eq!(
        list(Page::after("b", 10)).await,
        all[4..],
        "last need not be an existing tag"
    );
    // Walking page by page visits each tag once.
    let mut walked = Vec::new();
    let mut page = Page::first(2);
    loop {
        let chunk = list(page.clone()).await;
        if chunk.is_empty() {
            break;
        }
        page = Page::after(chunk.last().unwrap().clone(), 2);
        walked.extend(chunk);
    }
    assert_eq!(walked, all);
    assert!(matches!(
        store.list_tags(&name("no/such"), &Page::first(10)).await,
        Err(Error::NameUnknown { .. })
    ));

    for r in ["z/last", "a/first", "m/middle", "a/first/nested", "a0"] {
        store
            .link_blob(&name(r), &Digest::sha256(b"x"), 1)
            .await
            .unwrap();
    }
    let repos = |page: Page| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_repositories(&page)
                .await
                .unwrap()
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
        }
    };
    let expected = [
        "a/first",
        "a/first/nested",
        "a0",
        "m/middle",
        "paged",
        "z/last",
    ];
    assert_eq!(repos(Page::first(100)).await, expected);
    assert_eq!(repos(Page::first(2)).await, expected[..2]);
    assert_eq!(
        repos(Page::after("a/first/nested", 2)).await,
        expected[2..4]
    );
    assert_eq!(repos(Page::after("z/last", 2)).await, Vec::<String>::new());
}

/// Upload session records: create, duplicate, read, list by age, delete.
pub async fn metadata_uploads(store: SharedMetadataStore) {
    let repo = name("uploads");
    let old = UploadRecord {
        id: UploadId::generate(),
        repository: repo.clone(),
        started_at: Timestamp(1_000),
    };
    let new = UploadRecord {
        id: UploadId::generate(),
        repository: repo.clone(),
        started_at: Timestamp::now(),
    };
    store.create_upload(&old).await.unwrap();
    store.create_upload(&new).await.unwrap();
    assert!(
        store.create_upload(&old).await.is_err(),
        "an id is created once"
    );
    assert_eq!(store.upload(&old.id).await.unwrap(), Some(old.clone()));
    assert_eq!(store.upload(&UploadId::generate()).await.unwrap(), None);
    assert_eq!(
        store
            .uploads_started_before(Timestamp(2_000), 10)
            .await
            .unwrap(),
        vec![old.clone()]
    );
    assert_eq!(
        store
            .uploads_started_before(far_future(), 10)
            .await
            .unwrap(),
        vec![old.clone(), new.clone()]
    );
    assert_eq!(
        store.uploads_started_before(far_future(), 1).await.unwrap(),
        vec![old.clone()]
    );
    assert!(store.delete_upload(&old.id).await.unwrap());
    assert!(!store.delete_upload(&old.id).await.unwrap());
    assert_eq!(store.upload(&old.id).await.unwrap(), None);
}

/// The review queue: one entry per target, due ordering, postponement and completion.
pub async fn metadata_review_queue(store: SharedMetadataStore) {
    let repo = name("queue");
    let blob = Digest::sha256(b"queued blob");
    assert_eq!(store.review_queue_len().await.unwrap(), 0);
    store.link_blob(&repo, &blob, 11).await.unwrap();
    let manifest = new_manifest(
        &repo,
        "queued",
        std::slice::from_ref(&blob),
        &[],
        None,
        None,
    );
    store
        .put_manifest(&manifest, &[tag("t")], &TagGuard::none())
        .await
        .unwrap();
    store
        .link_blob(&name("queue/other"), &blob, 11)
        .await
        .unwrap();
    assert_eq!(
        store.review_queue_len().await.unwrap(),
        2,
        "one entry per target"
    );

    let due = store.due_reviews(far_future(), 10).await.unwrap();
    let targets: Vec<ReviewTarget> = due.iter().map(|t| t.target.clone()).collect();
    assert!(targets.contains(&blob_target(&blob)));
    assert!(targets.contains(&manifest_target(&repo, &manifest.digest)));
    assert!(
        due.windows(2).all(|w| w[0].due_at <= w[1].due_at),
        "earliest first"
    );
    assert!(
        store
            .due_reviews(Timestamp(0), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is due in the past"
    );
    assert_eq!(store.due_reviews(far_future(), 1).await.unwrap().len(), 1);

    let later = far_future().after(Duration::from_secs(3600));
    assert!(
        store
            .postpone_review(&blob_target(&blob), later)
            .await
            .unwrap()
    );
    let task = store.review(&blob_target(&blob)).await.unwrap().unwrap();
    assert_eq!((task.due_at, task.attempts), (later, 1));
    assert!(
        !store
            .due_reviews(far_future(), 10)
            .await
            .unwrap()
            .iter()
            .any(|t| t.target == blob_target(&blob))
    );

    // A new event never makes an entry due earlier than it was.
    store.link_blob(&repo, &blob, 11).await.unwrap();
    assert_eq!(
        store
            .review(&blob_target(&blob))
            .await
            .unwrap()
            .unwrap()
            .due_at,
        later
    );

    let stale = store.review(&blob_target(&blob)).await.unwrap().unwrap();
    // An event since the collector read the entry keeps it queued.
    store.unlink_blob(&repo, &blob).await.unwrap();
    assert!(
        !store.complete_review(&stale).await.unwrap(),
        "re-queued since it was read"
    );
    let current = store.review(&blob_target(&blob)).await.unwrap().unwrap();
    assert_eq!(current.event, ReviewEvent::BlobUnlinked);
    assert!(store.complete_review(&current).await.unwrap());
    assert!(!store.complete_review(&current).await.unwrap());
    assert!(
        !store
            .postpone_review(&blob_target(&blob), later)
            .await
            .unwrap()
    );
    assert_eq!(store.review_queue_len().await.unwrap(), 1);
}

/// 8 tasks linking the same blob and 8 linking different ones all succeed and record each blob
/// once; concurrent pushes moving one tag leave it on one of the pushed manifests.
pub async fn metadata_concurrency(store: SharedMetadataStore) {
    let repo = name("busy");
    let shared = Digest::sha256(b"shared layer");
    let mut tasks: Vec<tokio::task::JoinHandle<registry_core::Result<Digest>>> = Vec::new();
    for i in 0..16u32 {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let digest = if i < 8 {
                shared
            } else {
                Digest::sha256(format!("layer {i}").as_bytes())
            };
            store.link_blob(&repo, &digest, 12).await?;
            let manifest = new_manifest(&repo, &format!("m{i}"), &[digest], &[], None, None);
            store
                .put_manifest(
                    &manifest,
                    &[Tag::parse("race").expect("tag")],
                    &TagGuard::none(),
                )
                .await?;
            Ok(manifest.digest)
        }));
    }
    let mut pushed = Vec::new();
    for task in tasks {
        pushed.push(task.await.expect("task").expect("concurrent push succeeds"));
    }
    assert!(store.blob(&shared).await.unwrap().is_some());
    for digest in &pushed {
        assert!(
            store
                .manifest(&repo, &Reference::Digest(digest.clone()))
                .await
                .unwrap()
                .is_some()
        );
    }
    let winner = store
        .manifest(&repo, &Reference::Tag(tag("race")))
        .await
        .unwrap()
        .expect("tagged");
    assert!(pushed.contains(&winner.digest));
    assert_eq!(
        store.list_tags(&repo, &Page::first(10)).await.unwrap(),
        vec![tag("race")]
    );
    // 9 blob entries plus 16 manifest entries.
    assert_eq!(store.review_queue_len().await.unwrap(), 25);
}

/// The collector's decisions: dangling manifests go, tagged, listed and referring ones stay;
/// blob claims exclude referenced blobs, make racing links wait and racing pushes fail, and
/// abandoning restores what a claim removed.
pub async fn metadata_collection(store: SharedMetadataStore) {
    let repo = name("gc/app");
    let layer = Digest::sha256(b"gc layer");
    let spare = Digest::sha256(b"gc spare");
    store.link_blob(&repo, &layer, 8).await.unwrap();
    store.link_blob(&repo, &spare, 8).await.unwrap();
    let image = new_manifest(
        &repo,
        "image",
        std::slice::from_ref(&layer),
        &[],
        None,
        None,
    );
    let child = new_manifest(&repo, "child", &[], &[], None, None);
    let index = new_manifest(
        &repo,
        "index",
        &[],
        std::slice::from_ref(&child.digest),
        None,
        None,
    );
    let sig = new_manifest(
        &repo,
        "sig",
        &[],
        &[],
        Some(&image.digest),
        Some("application/x.sig"),
    );
    store
        .put_manifest(&image, &[tag("v1")], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&child, &[], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&index, &[tag("multi")], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&sig, &[], &TagGuard::none())
        .await
        .unwrap();

    // Enumeration for whole-store sweeps, in digest order, paged.
    let entries = store
        .list_manifests(&repo, &Page::first(100))
        .await
        .unwrap();
    let mut expected: Vec<&Digest> = vec![&image.digest, &child.digest, &index.digest, &sig.digest];
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        entries.iter().map(|e| &e.digest).collect::<Vec<_>>(),
        expected
    );
    let entry = |d: &Digest| entries.iter().find(|e| &e.digest == d).unwrap().clone();
    assert!(entry(&image.digest).tagged && !entry(&child.digest).tagged);
    assert_eq!(entry(&image.digest).blobs, vec![layer.clone()]);
    assert_eq!(entry(&index.digest).children, vec![child.digest.clone()]);
    assert_eq!(entry(&sig.digest).subject.as_ref(), Some(&image.digest));
    assert_eq!(entry(&sig.digest).size, sig.bytes.len() as u64);
    let first = store.list_manifests(&repo, &Page::first(2)).await.unwrap();
    let rest = store
        .list_manifests(&repo, &Page::after(first[1].digest.to_string(), 10))
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 4);
    assert!(
        store
            .list_manifests(&name("no/repo"), &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    let blobs = store.list_blobs(&Page::first(10)).await.unwrap();
    let mut both = vec![layer.clone(), spare.clone()];
    both.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(),
        both
    );
    assert_eq!(
        store
            .list_blobs(&Page::after(both[0].to_string(), 10))
            .await
            .unwrap()
            .len(),
        1
    );

    use registry_core::ManifestVerdict as V;
    let verdict = |digest: Digest| {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        async move { store.collect_manifest(&repo, &digest).await.unwrap() }
    };
    assert_eq!(verdict(image.digest.clone()).await, V::Tagged);
    assert_eq!(verdict(child.digest.clone()).await, V::Listed);
    assert_eq!(verdict(sig.digest.clone()).await, V::Referrer);
    assert_eq!(verdict(Digest::sha256(b"none")).await, V::Missing);
    assert_eq!(
        store
            .collect_manifest(&name("no/repo"), &image.digest)
            .await
            .unwrap(),
        V::Missing
    );

    store
        .delete_tag(&repo, &tag("v1"), &TagGuard::none())
        .await
        .unwrap();
    assert_eq!(verdict(image.digest.clone()).await, V::Deleted);
    assert_eq!(
        queued(&*store, &blob_target(&layer)).await,
        ReviewEvent::ManifestDeleted
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &sig.digest)).await,
        ReviewEvent::SubjectDeleted
    );
    assert_eq!(
        verdict(sig.digest.clone()).await,
        V::Deleted,
        "its subject is gone"
    );
    assert_eq!(verdict(image.digest.clone()).await, V::Missing);

    // Claims: never a blob a manifest references.
    store
        .put_manifest(
            &new_manifest(
                &repo,
                "keeps",
                std::slice::from_ref(&spare),
                &[],
                None,
                None,
            ),
            &[tag("keeps")],
            &TagGuard::none(),
        )
        .await
        .unwrap();
    assert!(
        store.claim_blob(&spare).await.unwrap().is_none(),
        "referenced"
    );
    assert!(
        store
            .claim_blob(&Digest::sha256(b"unknown"))
            .await
            .unwrap()
            .is_none()
    );

    // Abandoning restores the record and the links.
    let claim = store
        .claim_blob(&layer)
        .await
        .unwrap()
        .expect("unreferenced layer is claimable");
    claim.abandon().await.unwrap();
    assert!(store.linked_blob(&repo, &layer).await.unwrap().is_some());

    // While claimed, a push referencing the blob and a new link wait; after the commit the push
    // fails cleanly and the link records the blob anew.
    let claim = store
        .claim_blob(&layer)
        .await
        .unwrap()
        .expect("claimable again");
    let racing_push = {
        let store = Arc::clone(&store);
        let manifest = new_manifest(
            &repo,
            "racing",
            std::slice::from_ref(&layer),
            &[],
            None,
            None,
        );
        tokio::spawn(async move {
            store
                .put_manifest(
                    &manifest,
                    &[Tag::parse("racing").expect("tag")],
                    &TagGuard::none(),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    claim.commit().await.unwrap();
    match racing_push.await.unwrap() {
        Err(Error::ManifestBlobUnknown { digest }) => assert_eq!(digest, layer),
        other => panic!("a push racing a claim must fail cleanly, got {other:?}"),
    }
    assert_eq!(store.blob(&layer).await.unwrap(), None);
    assert_eq!(store.linked_blob(&repo, &layer).await.unwrap(), None);

    store.link_blob(&repo, &layer, 8).await.unwrap();
    let claim = store.claim_blob(&layer).await.unwrap().expect("claimable");
    let racing_link = {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        let layer = layer.clone();
        tokio::spawn(async move { store.link_blob(&repo, &layer, 8).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !racing_link.is_finished(),
        "a link waits while the blob is claimed"
    );
    claim.commit().await.unwrap();
    racing_link.await.unwrap().unwrap();
    assert!(
        store.linked_blob(&repo, &layer).await.unwrap().is_some(),
        "linked anew after the claim"
    );
}

/// Detailed tag listings: digest, sizes and times per tag; substring filter; order by name or
/// publish time, either way; page markers forwards and backwards.
pub async fn metadata_tag_details(store: SharedMetadataStore) {
    use registry_core::{TagOrder, TagQuery};
    let repo = name("details/app");
    let layer = Digest::sha256(b"details layer");
    store.link_blob(&repo, &layer, 1000).await.unwrap();
    let big = new_manifest(&repo, "big", std::slice::from_ref(&layer), &[], None, None);
    let small = new_manifest(&repo, "small", &[], &[], None, None);
    store
        .put_manifest(&big, &[], &TagGuard::none())
        .await
        .unwrap();
    store
        .put_manifest(&small, &[], &TagGuard::none())
        .await
        .unwrap();
    // Published in this order, a few milliseconds apart.
    for (t, m) in [("a1", &big), ("b2", &small), ("a3", &small), ("c4", &big)] {
        store
            .put_tag(&repo, &tag(t), &m.digest, &TagGuard::none())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let list = |query: TagQuery| {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        async move {
            let details = store.tag_details(&repo, &query).await.unwrap();
            details
                .iter()
                .map(|d| d.name.to_string())
                .collect::<Vec<_>>()
        }
    };
    let query = |order, descending, limit| TagQuery {
        order,
        descending,
        limit,
        ..TagQuery::default()
    };

    let all = store
        .tag_details(&repo, &query(TagOrder::Name, false, 10))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["a1", "a3", "b2", "c4"]
    );
    let a1 = &all[0];
    assert_eq!(a1.digest, big.digest);
    assert_eq!(a1.manifest_size, big.bytes.len() as u64);
    assert_eq!(
        a1.size,
        big.bytes.len() as u64 + 1000,
        "manifest plus its blobs"
    );
    assert_eq!(all[1].media_type, OCI_MANIFEST);
    assert!(all[1].published_at > a1.published_at);
    assert!(a1.created_at <= a1.published_at);

    let filtered = TagQuery {
        contains: Some("a".into()),
        ..query(TagOrder::Name, false, 10)
    };
    assert_eq!(list(filtered).await, ["a1", "a3"]);
    let nothing = TagQuery {
        contains: Some("_".into()),
        ..query(TagOrder::Name, false, 10)
    };
    assert!(
        list(nothing).await.is_empty(),
        "the filter is a substring, not a pattern"
    );

    // By name, both ways, paged both ways.
    let marker = |i: usize| all[i].marker();
    assert_eq!(list(query(TagOrder::Name, false, 2)).await, ["a1", "a3"]);
    assert_eq!(
        list(TagQuery {
            after: Some(marker(1)),
            ..query(TagOrder::Name, false, 2)
        })
        .await,
        ["b2", "c4"]
    );
    assert_eq!(
        list(TagQuery {
            before: Some(marker(2)),
            ..query(TagOrder::Name, false, 2)
        })
        .await,
        ["a1", "a3"]
    );
    assert_eq!(
        list(TagQuery {
            before: Some(marker(2)),
            ..query(TagOrder::Name, false, 1)
        })
        .await,
        ["a3"]
    );
    assert_eq!(
        list(query(TagOrder::Name, true, 10)).await,
        ["c4", "b2", "a3", "a1"]
    );
    assert_eq!(
        list(TagQuery {
            after: Some(marker(3)),
            ..query(TagOrder::Name, true, 2)
        })
        .await,
        ["b2", "a3"]
    );
    assert_eq!(
        list(TagQuery {
            before: Some(marker(1)),
            ..query(TagOrder::Name, true, 1)
        })
        .await,
        ["b2"]
    );

    // By publish time; retagging republishes.
    assert_eq!(
        list(query(TagOrder::Published, false, 10)).await,
        ["a1", "b2", "a3", "c4"]
    );
    let by_time = store
        .tag_details(&repo, &query(TagOrder::Published, false, 10))
        .await
        .unwrap();
    assert_eq!(
        list(TagQuery {
            after: Some(by_time[1].marker()),
            ..query(TagOrder::Published, false, 10)
        })
        .await,
        ["a3", "c4"]
    );
    assert_eq!(
        list(TagQuery {
            before: Some(by_time[2].marker()),
            ..query(TagOrder::Published, false, 10)
        })
        .await,
        ["a1", "b2"]
    );
    store
        .put_tag(&repo, &tag("a1"), &small.digest, &TagGuard::none())
        .await
        .unwrap();
    assert_eq!(
        list(query(TagOrder::Published, false, 10)).await,
        ["b2", "a3", "c4", "a1"]
    );
    assert_eq!(
        list(query(TagOrder::Published, true, 2)).await,
        ["a1", "c4"]
    );

    assert!(matches!(
        store
            .tag_details(&name("no/such"), &query(TagOrder::Name, false, 10))
            .await,
        Err(Error::NameUnknown { .. })
    ));
}

/// Storage usage of a repository and of a namespace, shared blobs counted once.
pub async fn metadata_storage_usage(store: SharedMetadataStore) {
    use registry_core::{StorageUsage, UsageScope};
    let shared = Digest::sha256(b"usage shared");
    let own = Digest::sha256(b"usage own");
    let elsewhere = Digest::sha256(b"usage elsewhere");
    let unused = Digest::sha256(b"usage unused");
    for (repo, blobs) in [
        ("team", vec![]),
        ("team/a", vec![(&shared, 100)]),
        ("team/b", vec![(&shared, 100), (&own, 50), (&unused, 1000)]),
        ("teamx", vec![(&elsewhere, 70)]),
    ] {
        for (digest, size) in &blobs {
            store.link_blob(&name(repo), digest, *size).await.unwrap();
        }
        let used: Vec<Digest> = blobs
            .iter()
            .map(|(d, _)| (*d).clone())
            .filter(|d| *d != unused)
            .collect();
        let manifest = new_manifest(&name(repo), repo, &used, &[], None, None);
        store
            .put_manifest(&manifest, &[tag("v1")], &TagGuard::none())
            .await
            .unwrap();
    }
    let manifest_bytes = |repos: &[&str]| -> u64 {
        repos
            .iter()
            .map(|r| new_manifest(&name(r), r, &[], &[], None, None).bytes.len() as u64)
            .sum()
    };
    let usage = |scope: UsageScope| {
        let store = Arc::clone(&store);
        async move { store.storage_usage(&scope).await.unwrap() }
    };
    assert_eq!(
        usage(UsageScope::Repository(name("team/b"))).await,
        StorageUsage {
            repositories: 1,
            manifests: 1,
            manifest_bytes: manifest_bytes(&["team/b"]),
            blobs: 2,
            blob_bytes: 150
        },
        "an uploaded but unreferenced blob does not count"
    );
    assert_eq!(
        usage(UsageScope::Namespace(name("team"))).await,
        StorageUsage {
            repositories: 3,
            manifests: 3,
            manifest_bytes: manifest_bytes(&["team", "team/a", "team/b"]),
            blobs: 2,
            blob_bytes: 150,
        },
        "the shared layer counts once; teamx is not under team"
    );
    assert_eq!(
        usage(UsageScope::Namespace(name("teamx"))).await.blob_bytes,
        70
    );
    assert_eq!(
        usage(UsageScope::Namespace(name("nobody"))).await,
        StorageUsage::default()
    );
    assert_eq!(
        usage(UsageScope::Repository(name("team/a")))
            .await
            .blob_bytes,
        100
    );
}

fn denied<T>(result: registry_core::Result<T>, rule_name: &str) {
    match result {
        Err(Error::Denied { reason }) => assert!(reason.contains(rule_name), "{reason}"),
        Err(other) => panic!("expected DENIED by {rule_name}, got {other}"),
        Ok(_) => panic!("expected DENIED by {rule_name}, got success"),
    }
}

fn rule(json: &str) -> std::sync::Arc<TagRule> {
    std::sync::Arc::new(serde_json::from_str(json).expect("rule"))
}

/// Several tags set with one manifest push, in its transaction: every tag points at it, each
/// manifest a tag left is reported and queued once, and one tag refused by a rule leaves
/// nothing stored and no tag changed.
pub async fn metadata_manifest_with_tags(store: SharedMetadataStore) {
    let repo = name("team/multi");
    let layer = Digest::sha256(b"layer");
    store.link_blob(&repo, &layer, 5).await.unwrap();
    let one = new_manifest(&repo, "one", std::slice::from_ref(&layer), &[], None, None);
    let two = new_manifest(&repo, "two", std::slice::from_ref(&layer), &[], None, None);
    let tagged = async |t: &str| {
        store
            .manifest(&repo, &Reference::Tag(tag(t)))
            .await
            .unwrap()
            .map(|m| m.digest)
    };

    let outcome = store
        .put_manifest(&one, &[tag("a"), tag("b"), tag("v1")], &TagGuard::none())
        .await
        .unwrap();
    assert!(outcome.created);
    assert_eq!(outcome.previous_tag_targets, vec![]);
    for t in ["a", "b", "v1"] {
        assert_eq!(tagged(t).await, Some(one.digest.clone()), "tag {t}");
    }
    let outcome = store
        .put_manifest(&two, &[tag("b"), tag("a"), tag("c")], &TagGuard::none())
        .await
        .unwrap();
    assert_eq!(
        outcome.previous_tag_targets,
        vec![one.digest.clone()],
        "the manifest two tags left, once"
    );
    assert_eq!(
        queued(&*store, &manifest_target(&repo, &one.digest)).await,
        ReviewEvent::TagSwitched
    );

    let three = new_manifest(
        &repo,
        "three",
        std::slice::from_ref(&layer),
        &[],
        None,
        None,
    );
    let rules = [rule(
        r#"{"name":"frozen","repositories":"team/*","tags":"v[0-9]+","kind":"immutable"}"#,
    )];
    let guard = TagGuard::new(&repo, &rules, None);
    denied(
        store
            .put_manifest(&three, &[tag("d"), tag("v1"), tag("e")], &guard)
            .await,
        "frozen",
    );
    assert_eq!(
        store
            .manifest(&repo, &Reference::Digest(three.digest.clone()))
            .await
            .unwrap(),
        None,
        "nothing stored"
    );
    for t in ["d", "e"] {
        assert_eq!(tagged(t).await, None, "tag {t} not set");
    }
    assert_eq!(tagged("v1").await, Some(one.digest.clone()));
}

/// Tag rules inside the store's transactions: an immutable tag is created once and then never
/// moved or deleted (nor its manifest), even by racing pushes; a protected tag needs its roles;
/// a refusal changes nothing.
pub async fn metadata_tag_rules(store: SharedMetadataStore) {
    let repo = name("team/app");
    let layer = Digest::sha256(b"layer");
    store.link_blob(&repo, &layer, 5).await.unwrap();
    let one = new_manifest(&repo, "one", std::slice::from_ref(&layer), &[], None, None);
    let two = new_manifest(&repo, "two", std::slice::from_ref(&layer), &[], None, None);
    let rules = [
        rule(r#"{"name":"frozen","repositories":"team/*","tags":"v[0-9]+","kind":"immutable"}"#),
        rule(
            r#"{"name":"main","repositories":"*","tags":"main","kind":"protected","push":"maintainer","delete":"owner"}"#,
        ),
    ];
    let trusted = TagGuard::new(&repo, &rules, None);
    let developer = TagGuard::new(&repo, &rules, Some(Role::Developer));
    let maintainer = TagGuard::new(&repo, &rules, Some(Role::Maintainer));
    let v1 = tag("v1");
    let at = |digest: &Digest| Reference::Digest(digest.clone());
    let tagged = async |t: &Tag| {
        store
            .manifest(&repo, &Reference::Tag(t.clone()))
            .await
            .unwrap()
            .map(|m| m.digest)
    };

    // Created once; pushing the same manifest again is not a change.
    store
        .put_manifest(&one, std::slice::from_ref(&v1), &developer)
        .await
        .unwrap();
    store
        .put_manifest(&one, std::slice::from_ref(&v1), &developer)
        .await
        .unwrap();
    // Moving it is refused, by manifest push or tag push, for everyone; nothing changes.
    denied(
        store
            .put_manifest(&two, std::slice::from_ref(&v1), &trusted)
            .await,
        "frozen",
    );
    assert!(
        store
            .manifest(&repo, &at(&two.digest))
            .await
            .unwrap()
            .is_none()
    );
    store
        .put_manifest(&two, &[], &TagGuard::none())
        .await
        .unwrap();
    denied(
        store.put_tag(&repo, &v1, &two.digest, &trusted).await,
        "frozen",
    );
    assert_eq!(tagged(&v1).await, Some(one.digest.clone()));
    // Deleting it, or the manifest it points at, is refused.
    denied(store.delete_tag(&repo, &v1, &trusted).await, "frozen");
    denied(
        store.delete_manifest(&repo, &one.digest, &trusted).await,
        "frozen",
    );
    assert_eq!(tagged(&v1).await, Some(one.digest.clone()));
    // Another repository is not covered.
    let other = name("other/app");
    store.link_blob(&other, &layer, 5).await.unwrap();
    let elsewhere = new_manifest(&other, "one", std::slice::from_ref(&layer), &[], None, None);
    let other_guard = TagGuard::new(&other, &rules, None);
    store
        .put_manifest(&elsewhere, std::slice::from_ref(&v1), &other_guard)
        .await
        .unwrap();
    store.delete_tag(&other, &v1, &other_guard).await.unwrap();

    // Protected: a developer may not push or delete `main`; a maintainer may push but not
    // delete; a trusted caller may do both.
    let main = tag("main");
    denied(
        store.put_tag(&repo, &main, &two.digest, &developer).await,
        "main",
    );
    assert_eq!(tagged(&main).await, None);
    store
        .put_tag(&repo, &main, &two.digest, &maintainer)
        .await
        .unwrap();
    denied(store.delete_tag(&repo, &main, &maintainer).await, "main");
    denied(
        store.delete_manifest(&repo, &two.digest, &maintainer).await,
        "main",
    );
    assert_eq!(tagged(&main).await, Some(two.digest.clone()));
    // A guard expecting another manifest refuses the deletion.
    denied(
        store
            .delete_tag(
                &repo,
                &main,
                &TagGuard::none().expecting(one.digest.clone()),
            )
            .await,
        "pushed again",
    );
    store.delete_tag(&repo, &main, &trusted).await.unwrap();
    store
        .delete_manifest(&repo, &two.digest, &trusted)
        .await
        .unwrap();

    // Racing first pushes of one immutable tag: exactly one wins, the others are refused.
    let race = tag("v9");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let repo = repo.clone();
        let layer = layer.clone();
        let race = race.clone();
        let guard = trusted.clone();
        tasks.push(tokio::spawn(async move {
            let manifest = new_manifest(&repo, &format!("race {i}"), &[layer], &[], None, None);
            store
                .put_manifest(&manifest, std::slice::from_ref(&race), &guard)
                .await
                .map(|_| manifest.digest)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(digest) => winners.push(digest),
            Err(Error::Denied { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "one push creates the immutable tag");
    assert_eq!(tagged(&race).await.as_ref(), winners.first());
}

/// Stored tag rules and cleanup policies: create, replace, list by name, delete; a source
/// manages only its own; the count limit holds; a replacement from the configuration swaps
/// its whole set at once, or changes nothing.
pub async fn metadata_policies(store: SharedMetadataStore) {
    let policy = |kind, name: &str, source, document: &str| StoredPolicy {
        kind,
        name: name.to_owned(),
        source,
        document: document.to_owned(),
    };
    let api = |name: &str, doc: &str| policy(PolicyKind::TagRule, name, PolicySource::Api, doc);
    let config =
        |name: &str, doc: &str| policy(PolicyKind::TagRule, name, PolicySource::Config, doc);
    assert!(store.put_policy(&api("b", "1"), 3).await.unwrap());
    assert!(store.put_policy(&api("a", "2"), 3).await.unwrap());
    assert!(
        !store.put_policy(&api("a", "3"), 3).await.unwrap(),
        "replaced"
    );
    let cleanup = policy(PolicyKind::Cleanup, "a", PolicySource::Api, "c");
    assert!(
        store.put_policy(&cleanup, 3).await.unwrap(),
        "kinds are apart"
    );
    let listed = store.policies(PolicyKind::TagRule).await.unwrap();
    assert_eq!(listed, vec![api("a", "3"), api("b", "1")]);
    assert_eq!(
        store.policies(PolicyKind::Cleanup).await.unwrap(),
        vec![cleanup]
    );

    // The configuration's set replaces only the configuration's.
    store
        .replace_policies(
            PolicyKind::TagRule,
            PolicySource::Config,
            &[config("c", "4")],
            3,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.put_policy(&api("d", "5"), 3).await,
        Err(Error::PolicyInvalid { .. })
    ));
    assert!(matches!(
        store.put_policy(&api("c", "6"), 3).await,
        Err(Error::Denied { .. })
    ));
    assert!(matches!(
        store
            .delete_policy(PolicyKind::TagRule, "c", PolicySource::Api)
            .await,
        Err(Error::Denied { .. })
    ));
    // A configuration naming an API rule, or too many, changes nothing.
    for bad in [
        vec![config("a", "7")],
        vec![config("x", "8"), config("y", "9")],
    ] {
        assert!(
            store
                .replace_policies(PolicyKind::TagRule, PolicySource::Config, &bad, 3)
                .await
                .is_err()
        );
        assert_eq!(store.policies(PolicyKind::TagRule).await.unwrap().len(), 3);
    }
    store
        .replace_policies(
            PolicyKind::TagRule,
            PolicySource::Config,
            &[config("e", "10")],
            3,
        )
        .await
        .unwrap();
    let names: Vec<String> = store
        .policies(PolicyKind::TagRule)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a", "b", "e"]);
    assert!(
        store
            .delete_policy(PolicyKind::TagRule, "a", PolicySource::Api)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_policy(PolicyKind::TagRule, "a", PolicySource::Api)
            .await
            .unwrap()
    );
}

fn package_repository(name: &str, format: PackageFormat) -> PackageRepository {
    PackageRepository {
        name: name.to_owned(),
        format,
        kind: RepositoryKind::Hosted,
        settings: RepositorySettings::default(),
        created_at: Timestamp::now(),
    }
}

fn package_file(name: &str, blob: &BlobRef) -> NewPackageFile {
    NewPackageFile {
        name: name.to_owned(),
        blob: blob.clone(),
        digests: FileDigests {
            sha1: Some(format!("sha1 of {name}")),
            ..FileDigests::default()
        },
        sidecar: None,
        attributes: [("kind".to_owned(), name.to_owned())].into(),
    }
}

fn publish_of(repository: &str, name: &str, version: &str, files: Vec<NewPackageFile>) -> Publish {
    Publish {
        repository: repository.to_owned(),
        name: name.to_lowercase(),
        display_name: name.to_owned(),
        version: version.to_owned(),
        metadata: format!(r#"{{"version":"{version}"}}"#),
        files,
        tags: Vec::new(),
        mode: PublishMode::NewVersion,
        duplicates: false,
    }
}

/// Packages: repositories, publishes (new versions and added files), duplicates refused or
/// replacing, tags, statuses, deletions that queue their blobs, listings, and blobs that
/// package files keep from the collector.
pub async fn metadata_packages(store: SharedMetadataStore) {
    let npm = package_repository("npm-hosted", PackageFormat::Npm);
    assert_eq!(store.ensure_package_repository(&npm).await.unwrap(), npm);
    let other = package_repository("npm-hosted", PackageFormat::Pypi);
    assert_eq!(
        store
            .ensure_package_repository(&other)
            .await
            .unwrap()
            .format,
        PackageFormat::Npm,
        "an existing repository is returned as it is"
    );
    let pypi = package_repository("pypi-hosted", PackageFormat::Pypi);
    store.ensure_package_repository(&pypi).await.unwrap();
    let names: Vec<String> = store
        .list_package_repositories(&Page::first(10))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["npm-hosted", "pypi-hosted"]);
    let settings = RepositorySettings {
        allow_duplicates: true,
        duplicate_exceptions: None,
        protection: Vec::new(),
    };
    store
        .set_package_repository_settings("pypi-hosted", &settings)
        .await
        .unwrap();
    assert!(
        store
            .package_repository("pypi-hosted")
            .await
            .unwrap()
            .unwrap()
            .settings
            .allow_duplicates
    );

    let blob = |data: &str| BlobRef {
        digest: Digest::sha256(data.as_bytes()),
        size: data.len() as u64,
    };
    let (a, b, c, d) = (blob("a"), blob("b"), blob("c"), blob("d"));
    for recorded in [&a, &b, &c] {
        store.record_package_blob(recorded).await.unwrap();
    }
    assert_eq!(
        queued(&*store, &blob_target(&a.digest)).await,
        ReviewEvent::BlobUploaded
    );

    // A new version, then the same again: a conflict that changes nothing.
    let mut first = publish_of(
        "npm-hosted",
        "@Demo/Hello",
        "1.0.0",
        vec![package_file("hello-1.0.0.tgz", &a)],
    );
    first.tags = vec!["latest".into()];
    let outcome = store.publish(&first).await.unwrap();
    assert!(outcome.version_created);
    let mut again = first.clone();
    again.metadata = "{}".into();
    again.files = vec![package_file("hello-1.0.0.tgz", &b)];
    assert!(matches!(
        store.publish(&again).await,
        Err(Error::PackageConflict { .. })
    ));
    let mut second = publish_of(
        "npm-hosted",
        "@Demo/Hello",
        "1.1.0",
        vec![package_file("hello-1.1.0.tgz", &b)],
    );
    second.tags = vec!["latest".into()];
    store.publish(&second).await.unwrap();
    // An unrecorded blob or an unknown repository: refused, nothing stored.
    let unrecorded = publish_of(
        "npm-hosted",
        "@Demo/Hello",
        "2.0.0",
        vec![package_file("x.tgz", &d)],
    );
    assert!(matches!(
        store.publish(&unrecorded).await,
        Err(Error::BlobUnknown { .. })
    ));
    let nowhere = publish_of("missing", "x", "1", vec![package_file("x", &a)]);
    assert!(matches!(
        store.publish(&nowhere).await,
        Err(Error::PackageUnknown { .. })
    ));

    let package = store
        .package("npm-hosted", "@demo/hello")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(package.display_name, "@Demo/Hello");
    let versions: Vec<&str> = package
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"], "in publish order");
    let v1 = package.version("1.0.0").unwrap();
    assert_eq!(
        v1.metadata, r#"{"version":"1.0.0"}"#,
        "the refused publish changed nothing"
    );
    assert_eq!(v1.files.len(), 1);
    assert_eq!(v1.files[0].blob, a);
    assert_eq!(
        v1.files[0].digests.sha1.as_deref(),
        Some("sha1 of hello-1.0.0.tgz")
    );
    assert_eq!(
        package.tags.get("latest").map(String::as_str),
        Some("1.1.0")
    );
    assert!(store.package("npm-hosted", "nope").await.unwrap().is_none());

    // Every change gives the package a new revision.
    let revision = |store: SharedMetadataStore| async move {
        let current = store
            .package_revision("npm-hosted", "@demo/hello")
            .await
            .unwrap()
            .expect("a revision");
        let loaded = store
            .package("npm-hosted", "@demo/hello")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.revision, current);
        current
    };
    assert_eq!(
        store.package_revision("npm-hosted", "nope").await.unwrap(),
        None
    );
    let mut seen = vec![revision(Arc::clone(&store)).await];

    // Tags and statuses.
    store
        .set_package_tag("npm-hosted", "@demo/hello", "beta", "1.0.0")
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_package_tag("npm-hosted", "@demo/hello", "beta", "9.9.9")
            .await,
        Err(Error::PackageUnknown { .. })
    ));
    assert!(
        store
            .delete_package_tag("npm-hosted", "@demo/hello", "beta")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_package_tag("npm-hosted", "@demo/hello", "beta")
            .await
            .unwrap()
    );
    let after_tags = revision(Arc::clone(&store)).await;
    assert!(
        !seen.contains(&after_tags),
        "tag changes change the revision"
    );
    seen.push(after_tags);
    let deprecated = VersionStatus::Deprecated("use 1.1".into());
    store
        .set_version_status(
            "npm-hosted",
            "@demo/hello",
            "1.0.0",
            &deprecated,
            Some(r#"{"deprecated":"use 1.1"}"#),
        )
        .await
        .unwrap();
    let package = store
        .package("npm-hosted", "@demo/hello")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(package.version("1.0.0").unwrap().status, deprecated);
    let after_status = revision(Arc::clone(&store)).await;
    assert!(
        !seen.contains(&after_status),
        "a status change changes the revision"
    );
    assert_eq!(
        package.version("1.0.0").unwrap().metadata,
        r#"{"deprecated":"use 1.1"}"#
    );
    assert!(matches!(
        store
            .set_version_status("npm-hosted", "@demo/hello", "3.0.0", &deprecated, None)
            .await,
        Err(Error::PackageUnknown { .. })
    ));

    // Files added to one version (PyPI), a duplicate refused, then replacing when allowed.
    let mut wheel = publish_of(
        "pypi-hosted",
        "Demo_Hello",
        "1.0",
        vec![package_file("demo_hello-1.0-py3-none-any.whl", &a)],
    );
    wheel.mode = PublishMode::AddFiles;
    wheel.files[0].sidecar = Some(c.clone());
    assert!(store.publish(&wheel).await.unwrap().version_created);
    let mut sdist = wheel.clone();
    sdist.files = vec![package_file("demo_hello-1.0.tar.gz", &b)];
    assert!(!store.publish(&sdist).await.unwrap().version_created);
    assert!(matches!(
        store.publish(&sdist).await,
        Err(Error::PackageConflict { .. })
    ));
    let mut replace = sdist.clone();
    replace.duplicates = true;
    replace.files = vec![package_file("demo_hello-1.0.tar.gz", &c)];
    assert_eq!(
        store.publish(&replace).await.unwrap().replaced,
        ["demo_hello-1.0.tar.gz"]
    );
    assert_eq!(
        queued(&*store, &blob_target(&b.digest)).await,
        ReviewEvent::PackageFileDeleted
    );
    let package = store
        .package("pypi-hosted", "demo_hello")
        .await
        .unwrap()
        .unwrap();
    let files: Vec<(&str, &BlobRef)> = package.versions[0]
        .files
        .iter()
        .map(|f| (f.name.as_str(), &f.blob))
        .collect();
    assert_eq!(
        files,
        [
            ("demo_hello-1.0-py3-none-any.whl", &a),
            ("demo_hello-1.0.tar.gz", &c)
        ]
    );
    assert_eq!(package.versions[0].files[0].sidecar.as_ref(), Some(&c));
    assert_eq!(
        package.versions[0].files[0]
            .attributes
            .get("kind")
            .map(String::as_str),
        Some("demo_hello-1.0-py3-none-any.whl")
    );

    // One file found directly, in a given version or in any.
    let (version, found) = store
        .package_file("pypi-hosted", "demo_hello", None, "demo_hello-1.0.tar.gz")
        .await
        .unwrap()
        .expect("found");
    assert_eq!((version.as_str(), &found.blob), ("1.0", &c));
    assert!(
        store
            .package_file(
                "pypi-hosted",
                "demo_hello",
                Some("1.0"),
                "demo_hello-1.0-py3-none-any.whl"
            )
            .await
            .unwrap()
            .is_some_and(|(_, f)| f.sidecar.as_ref() == Some(&c))
    );
    for (version, file) in [(Some("2.0"), "demo_hello-1.0.tar.gz"), (None, "nope.whl")] {
        assert!(
            store
                .package_file("pypi-hosted", "demo_hello", version, file)
                .await
                .unwrap()
                .is_none()
        );
    }

    // Package blobs are kept from the collector.
    for kept in [&a, &b, &c] {
        assert!(
            store.blob_in_packages(&kept.digest).await.unwrap(),
            "{kept:?}"
        );
        assert!(
            store.claim_blob(&kept.digest).await.unwrap().is_none(),
            "{kept:?}"
        );
    }

    // Listings.
    for name in ["alpha", "beta", "gamma"] {
        let blob = blob(name);
        store.record_package_blob(&blob).await.unwrap();
        store
            .publish(&publish_of(
                "npm-hosted",
                name,
                "1.0.0",
                vec![package_file("f.tgz", &blob)],
            ))
            .await
            .unwrap();
    }
    let listed = |contains: Option<&'static str>, page: Page| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_packages("npm-hosted", contains, &page)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(None, Page::first(2)).await, ["@demo/hello", "alpha"]);
    assert_eq!(
        listed(None, Page::after("alpha", 5)).await,
        ["beta", "gamma"]
    );
    assert_eq!(listed(Some("mm"), Page::first(5)).await, ["gamma"]);
    assert_eq!(
        store
            .list_package_names("npm-hosted", &Page::after("alpha", 2))
            .await
            .unwrap(),
        ["beta", "gamma"]
    );
    assert!(
        store
            .list_package_names("missing", &Page::first(2))
            .await
            .unwrap()
            .is_empty()
    );
    let summary = store
        .list_packages("npm-hosted", Some("hello"), &Page::first(5))
        .await
        .unwrap();
    assert_eq!(summary[0].versions, 2);
    assert_eq!(summary[0].display_name, "@Demo/Hello");

    // Deletions: one file (the version goes with its last), a version (its tags go), a package.
    store
        .delete_package_file("pypi-hosted", "demo_hello", "1.0", "demo_hello-1.0.tar.gz")
        .await
        .unwrap();
    assert_eq!(
        queued(&*store, &blob_target(&c.digest)).await,
        ReviewEvent::PackageFileDeleted
    );
    assert!(matches!(
        store
            .delete_package_file("pypi-hosted", "demo_hello", "1.0", "nope")
            .await,
        Err(Error::PackageUnknown { .. })
    ));
    store
        .delete_package_file(
            "pypi-hosted",
            "demo_hello",
            "1.0",
            "demo_hello-1.0-py3-none-any.whl",
        )
        .await
        .unwrap();
    assert!(
        store
            .package("pypi-hosted", "demo_hello")
            .await
            .unwrap()
            .is_none(),
        "the last file took the package with it"
    );
    store
        .delete_version("npm-hosted", "@demo/hello", "1.1.0")
        .await
        .unwrap();
    let package = store
        .package("npm-hosted", "@demo/hello")
        .await
        .unwrap()
        .unwrap();
    assert!(
        package.tags.is_empty(),
        "latest pointed at the deleted version"
    );
    assert!(matches!(
        store
            .delete_version("npm-hosted", "@demo/hello", "1.1.0")
            .await,
        Err(Error::PackageUnknown { .. })
    ));
    assert!(
        store
            .delete_package("npm-hosted", "@demo/hello")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_package("npm-hosted", "@demo/hello")
            .await
            .unwrap()
    );
    assert!(!store.blob_in_packages(&a.digest).await.unwrap());
    assert_eq!(
        queued(&*store, &blob_target(&a.digest)).await,
        ReviewEvent::PackageFileDeleted
    );
    assert!(
        store.claim_blob(&a.digest).await.unwrap().is_some(),
        "unreferenced now"
    );
}

/// Access tokens: stored by the hash of their secret, found by it, listed per user, revoked.
pub async fn metadata_tokens(store: SharedMetadataStore) {
    use registry_core::token::{hash_secret, new_secret};
    let token = |user: &str, at: i64| {
        let (secret, hash) = new_secret();
        let record = TokenRecord {
            id: format!("{user}-{at}"),
            user: user.to_owned(),
            label: "npm login".to_owned(),
            secret_hash: hash,
            grants: vec![registry_core::Grant {
                pattern: registry_core::NamePattern::parse("team/*").unwrap(),
                role: Role::Developer,
            }],
            created_at: Timestamp(at),
            expires_at: (at == 2).then_some(Timestamp(10)),
        };
        (secret, record)
    };
    let (first_secret, first) = token("alice", 1);
    let (_, second) = token("alice", 2);
    let (_, other) = token("bob", 3);
    for record in [&second, &first, &other] {
        store.put_token(record).await.unwrap();
    }
    assert_eq!(
        store
            .token_by_hash(&hash_secret(&first_secret))
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.token_by_hash(&hash_secret("rgt_nope")).await.unwrap(),
        None
    );
    let listed = store.list_tokens("alice").await.unwrap();
    assert_eq!(listed, vec![first.clone(), second.clone()]);
    assert!(listed[1].expired(Timestamp(10)) && !listed[1].expired(Timestamp(9)));
    assert!(store.delete_token(&first.id).await.unwrap());
    assert!(!store.delete_token(&first.id).await.unwrap());
    assert_eq!(store.token_by_hash(&first.secret_hash).await.unwrap(), None);
    assert_eq!(store.list_tokens("bob").await.unwrap(), vec![other]);
}

/// Runs every blob-store function except the restart test, each on a fresh store from `fresh`.
pub async fn blob_store_suite<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedBlobStore>,
{
    blob_basics(fresh().await).await;
    blob_rejects_bad_writes(fresh().await).await;
    blob_concurrent_writers(fresh().await).await;
    blob_upload_sessions(fresh().await).await;
    blob_computed_digest(fresh().await).await;
}

/// Runs every metadata-store function, each on a fresh store from `fresh`.
pub async fn metadata_store_suite<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedMetadataStore>,
{
    metadata_blob_links(fresh().await).await;
    metadata_manifests_and_tags(fresh().await).await;
    metadata_referrers(fresh().await).await;
    metadata_pagination(fresh().await).await;
    metadata_uploads(fresh().await).await;
    metadata_review_queue(fresh().await).await;
    metadata_concurrency(fresh().await).await;
    metadata_collection(fresh().await).await;
    metadata_tag_details(fresh().await).await;
    metadata_storage_usage(fresh().await).await;
    metadata_tag_rules(fresh().await).await;
    metadata_manifest_with_tags(fresh().await).await;
    metadata_policies(fresh().await).await;
    metadata_packages(fresh().await).await;
    metadata_tokens(fresh().await).await;
}

/// A package update is one transaction with its revision precondition inside: a stale revision
/// or an unknown version changes nothing; a good one applies statuses, tags and version
/// deletions together, and a new revision follows.
pub async fn metadata_package_update(store: SharedMetadataStore) {
    store
        .ensure_package_repository(&package_repository("js", PackageFormat::Npm))
        .await
        .unwrap();
    let blob = |data: &str| BlobRef {
        digest: Digest::sha256(data.as_bytes()),
        size: data.len() as u64,
    };
    for (version, data) in [("1.0.0", "one"), ("1.1.0", "two")] {
        store.record_package_blob(&blob(data)).await.unwrap();
        let mut publish = publish_of(
            "js",
            "pad",
            version,
            vec![package_file(&format!("pad-{version}.tgz"), &blob(data))],
        );
        publish.tags = vec!["latest".into()];
        store.publish(&publish).await.unwrap();
    }
    store
        .set_package_tag("js", "pad", "beta", "1.0.0")
        .await
        .unwrap();
    let before = store.package("js", "pad").await.unwrap().unwrap();
    let change = PackageUpdate {
        repository: "js".into(),
        name: "pad".into(),
        expected_revision: Some(before.revision.clone()),
        statuses: vec![("1.0.0".into(), VersionStatus::Deprecated("use 2".into()))],
        set_tags: vec![("latest".into(), "1.0.0".into())],
        delete_tags: vec!["beta".into()],
        delete_versions: vec!["1.1.0".into()],
    };

    let stale = PackageUpdate {
        expected_revision: Some("not-the-revision".into()),
        ..change.clone()
    };
    assert!(matches!(
        store.update_package(&stale).await,
        Err(Error::PackageConflict { .. })
    ));
    let unknown_version = PackageUpdate {
        delete_versions: vec!["1.1.0".into(), "9.9.9".into()],
        ..change.clone()
    };
    assert!(matches!(
        store.update_package(&unknown_version).await,
        Err(Error::PackageUnknown { .. })
    ));
    assert_eq!(
        store.package("js", "pad").await.unwrap().unwrap(),
        before,
        "refused updates change nothing"
    );

    store.update_package(&change).await.unwrap();
    let after = store.package("js", "pad").await.unwrap().unwrap();
    assert_ne!(after.revision, before.revision);
    assert_eq!(after.versions.len(), 1);
    assert_eq!(
        after.versions[0].status,
        VersionStatus::Deprecated("use 2".into())
    );
    assert_eq!(
        after.tags,
        [("latest".to_owned(), "1.0.0".to_owned())].into()
    );
    // The same change again, from the old revision: refused.
    assert!(matches!(
        store.update_package(&change).await,
        Err(Error::PackageConflict { .. })
    ));
    // Deleting the last version deletes the package.
    let last = PackageUpdate {
        repository: "js".into(),
        name: "pad".into(),
        delete_versions: vec!["1.0.0".into()],
        ..PackageUpdate::default()
    };
    store.update_package(&last).await.unwrap();
    assert!(store.package("js", "pad").await.unwrap().is_none());
}
