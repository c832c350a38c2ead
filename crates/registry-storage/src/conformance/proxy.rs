//! Conformance of [`ProxyCache`](registry_core::ProxyCache): proxy repositories' cache
//! entries, the blobs they hold, listing, confirmation, download counts and deletion.

use registry_core::{
    BlobRef, CacheEntry, CacheEntryKind, Digest, Page, ReviewEvent, Timestamp, Validators,
};

use super::{SharedMetadataStore, blob_target, queued};

fn entry(path: &str, kind: CacheEntryKind, blob: &BlobRef, at: i64) -> CacheEntry {
    CacheEntry {
        repository: "npm-proxy".into(),
        path: path.into(),
        kind,
        blob: blob.clone(),
        declared: (kind == CacheEntryKind::File).then(|| format!("sha512:{path}")),
        validators: Validators {
            etag: Some(format!("\"{path}\"")),
            last_modified: None,
        },
        digests: match kind {
            CacheEntryKind::File => registry_core::FileDigests {
                sha1: Some(format!("sha1 of {path}")),
                md5: Some(format!("md5 of {path}")),
                ..Default::default()
            },
            CacheEntryKind::Metadata => Default::default(),
        },
        checked_at: Timestamp(at),
        created_at: Timestamp(at),
        downloads: 0,
        last_download: None,
    }
}

/// Entries are stored (with the digest a file was verified against), replaced (the old blob
/// queued), confirmed, counted, listed by path a
/// page at a time, and deleted one by one, all, or by last use; their blobs are kept from the
/// collector while held.
pub async fn metadata_proxy_cache(store: SharedMetadataStore) {
    let blob = |data: &str| BlobRef {
        digest: Digest::sha256(data.as_bytes()),
        size: data.len() as u64,
    };
    let (doc1, doc2, tarball) = (blob("doc one"), blob("doc two"), blob("tarball"));
    for b in [&doc1, &doc2, &tarball] {
        store.record_package_blob(b).await.unwrap();
    }
    // A blob that was never recorded cannot be held.
    let ghost = blob("ghost");
    assert!(
        store
            .put_cache_entry(&entry("ghost", CacheEntryKind::File, &ghost, 1))
            .await
            .is_err()
    );
    assert!(
        store
            .cache_entry("npm-proxy", "ghost")
            .await
            .unwrap()
            .is_none()
    );

    let meta = entry("pad", CacheEntryKind::Metadata, &doc1, 1_000);
    store.put_cache_entry(&meta).await.unwrap();
    assert_eq!(
        store.cache_entry("npm-proxy", "pad").await.unwrap(),
        Some(meta.clone())
    );
    assert!(store.blob_in_packages(&doc1.digest).await.unwrap());
    // Replaced: the old document's blob is released and queued.
    store
        .put_cache_entry(&entry("pad", CacheEntryKind::Metadata, &doc2, 2_000))
        .await
        .unwrap();
    assert!(!store.blob_in_packages(&doc1.digest).await.unwrap());
    assert_eq!(
        queued(&*store, &blob_target(&doc1.digest)).await,
        ReviewEvent::PackageFileDeleted
    );
    // Confirmed by a 304.
    let validators = Validators {
        etag: Some("\"v2\"".into()),
        last_modified: Some("Mon, 30 Nov 2026 08:00:00 GMT".into()),
    };
    assert!(
        store
            .confirm_cache_entry("npm-proxy", "pad", &validators, Timestamp(3_000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .confirm_cache_entry("npm-proxy", "nope", &validators, Timestamp(3_000))
            .await
            .unwrap()
    );
    let confirmed = store
        .cache_entry("npm-proxy", "pad")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            confirmed.validators,
            confirmed.checked_at,
            confirmed.created_at
        ),
        (validators, Timestamp(3_000), Timestamp(2_000))
    );

    // A file, downloaded; a remembered 404 holding nothing.
    store
        .put_cache_entry(&entry(
            "pad/-/pad-1.0.0.tgz",
            CacheEntryKind::File,
            &tarball,
            1_000,
        ))
        .await
        .unwrap();
    store
        .count_cache_downloads("npm-proxy", "pad/-/pad-1.0.0.tgz", 3, Timestamp(5_000))
        .await
        .unwrap();
    store
        .count_cache_downloads("npm-proxy", "pad/-/pad-1.0.0.tgz", 2, Timestamp(4_000))
        .await
        .unwrap();
    let file = store
        .cache_entry("npm-proxy", "pad/-/pad-1.0.0.tgz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (file.downloads, file.last_download),
        (5, Some(Timestamp(5_000)))
    );
    assert_eq!(
        file.digests,
        entry("pad/-/pad-1.0.0.tgz", CacheEntryKind::File, &tarball, 0).digests,
        "the digests computed while it was stored"
    );
    store
        .put_cache_entry(&entry("zzz", CacheEntryKind::Metadata, &doc1, 1_000))
        .await
        .unwrap();
    let mut other = entry("pad", CacheEntryKind::Metadata, &doc2, 1_000);
    other.repository = "other-proxy".into();
    store.put_cache_entry(&other).await.unwrap();

    // Listed by path, a page at a time, one repository only.
    let first = store
        .list_cache_entries("npm-proxy", &Page::first(2))
        .await
        .unwrap();
    let paths: Vec<&str> = first.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["pad", "pad/-/pad-1.0.0.tgz"]);
    let next = store
        .list_cache_entries(
            "npm-proxy",
            &Page {
                last: Some("pad/-/pad-1.0.0.tgz".into()),
                limit: 2,
            },
        )
        .await
        .unwrap();
    let paths: Vec<&str> = next.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["zzz"]);

    // Cleaned by last use: the file was downloaded at 5 000, the rest never since 3 000.
    assert_eq!(
        store
            .delete_cache_entries("npm-proxy", Some(Timestamp(4_500)))
            .await
            .unwrap(),
        2
    );
    let left = store
        .list_cache_entries("npm-proxy", &Page::first(10))
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].path, "pad/-/pad-1.0.0.tgz");
    assert!(
        store.blob_in_packages(&doc2.digest).await.unwrap(),
        "other-proxy holds it"
    );
    assert!(
        store
            .delete_cache_entry("npm-proxy", "pad/-/pad-1.0.0.tgz")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_cache_entry("npm-proxy", "pad/-/pad-1.0.0.tgz")
            .await
            .unwrap()
    );
    assert!(!store.blob_in_packages(&tarball.digest).await.unwrap());
    assert_eq!(
        queued(&*store, &blob_target(&tarball.digest)).await,
        ReviewEvent::PackageFileDeleted
    );
    assert_eq!(
        store
            .delete_cache_entries("other-proxy", None)
            .await
            .unwrap(),
        1
    );
    assert!(!store.blob_in_packages(&doc2.digest).await.unwrap());
}

/// The firewall's audit log: entries appended with increasing ids, listed newest first (all,
/// or one repository's) a page at a time, pruned by age.
pub async fn metadata_firewall_audit(store: SharedMetadataStore) {
    use registry_core::AuditEntry;
    use registry_core::firewall::Mode;
    let entry = |repository: &str, version: &str, at: i64| AuditEntry {
        id: 0,
        at: Timestamp(at),
        repository: repository.into(),
        package: "left-pad".into(),
        version: version.into(),
        action: "download".into(),
        rule: "no-left-pad".into(),
        mode: if at % 2 == 0 { Mode::Block } else { Mode::Warn },
        reason: "pkg:npm/left-pad@1.3.1 is denied".into(),
    };
    store
        .record_decisions(&[entry("a", "1.0.0", 10), entry("b", "1.0.1", 21)])
        .await
        .unwrap();
    store
        .record_decisions(&[entry("a", "1.0.2", 30)])
        .await
        .unwrap();
    let all = store.audit_entries(None, None, 10).await.unwrap();
    let versions: Vec<&str> = all.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["1.0.2", "1.0.1", "1.0.0"]);
    assert!(all[0].id > all[1].id && all[1].id > all[2].id);
    assert_eq!(all[1].mode, Mode::Warn);
    assert_eq!(all[2].reason, "pkg:npm/left-pad@1.3.1 is denied");
    let a = store.audit_entries(Some("a"), None, 1).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].version, "1.0.2");
    let older = store
        .audit_entries(Some("a"), Some(a[0].id), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].version, "1.0.0");
    assert_eq!(store.prune_audit(Timestamp(25)).await.unwrap(), 2);
    assert_eq!(store.audit_entries(None, None, 10).await.unwrap().len(), 1);
}
