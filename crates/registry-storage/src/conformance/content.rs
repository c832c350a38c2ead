//! Conformance of [`ContentMetadata`](registry_core::ContentMetadata): blob links, manifests,
//! tags, referrers, listings, usage and tag rules.

use std::sync::Arc;
use std::time::Duration;

use registry_core::manifest::OCI_MANIFEST;
use registry_core::{Digest, Error, Page, Reference, ReviewEvent, Role, Tag, TagGuard, TagRule};

use super::{SharedMetadataStore, blob_target, manifest_target, name, new_manifest, queued, tag};

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
