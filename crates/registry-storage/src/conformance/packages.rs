//! Conformance of [`PackageMetadata`](registry_core::PackageMetadata): package repositories,
//! publishes, updates and deletions.

use std::sync::Arc;

use registry_core::{
    BlobRef, Digest, Error, FileDigests, NewPackageFile, PackageFormat, PackageRepository,
    PackageUpdate, Page, Publish, PublishMode, RepositoryKind, RepositorySettings, ReviewEvent,
    Timestamp, VersionStatus,
};

use super::{SharedMetadataStore, blob_target, queued};

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
        ..RepositorySettings::default()
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

/// A repository's revision changes with every change to its packages — a new package, a
/// version, a status, a tag, a deletion — and not with reads; an unknown repository has none.
pub async fn metadata_repository_revision(store: SharedMetadataStore) {
    assert_eq!(store.repository_revision("none").await.unwrap(), None);
    let repository = package_repository("revised", PackageFormat::Npm);
    store.ensure_package_repository(&repository).await.unwrap();
    let blob = BlobRef {
        digest: Digest::sha256(b"revised"),
        size: 7,
    };
    store.record_package_blob(&blob).await.unwrap();
    let mut seen = vec![store.repository_revision("revised").await.unwrap().unwrap()];
    fn changed(seen: &mut Vec<u64>, revision: Option<u64>, what: &str) {
        let revision = revision.expect("the repository exists");
        assert!(
            !seen.contains(&revision),
            "{what} left the repository's revision at {revision} (seen {seen:?})"
        );
        seen.push(revision);
    }
    for version in ["1.0.0", "1.1.0"] {
        let publish = publish_of("revised", "pkg", version, vec![package_file("f", &blob)]);
        store.publish(&publish).await.unwrap();
        changed(
            &mut seen,
            store.repository_revision("revised").await.unwrap(),
            "a publish",
        );
    }
    store.package("revised", "pkg").await.unwrap();
    store
        .list_package_names("revised", &Page::first(10))
        .await
        .unwrap();
    assert_eq!(
        store.repository_revision("revised").await.unwrap(),
        seen.last().copied(),
        "reads change nothing"
    );
    store
        .set_version_status(
            "revised",
            "pkg",
            "1.0.0",
            &VersionStatus::Deprecated("old".into()),
            None,
        )
        .await
        .unwrap();
    changed(
        &mut seen,
        store.repository_revision("revised").await.unwrap(),
        "a status",
    );
    store
        .set_package_tag("revised", "pkg", "beta", "1.1.0")
        .await
        .unwrap();
    changed(
        &mut seen,
        store.repository_revision("revised").await.unwrap(),
        "a tag",
    );
    store
        .delete_version("revised", "pkg", "1.0.0")
        .await
        .unwrap();
    changed(
        &mut seen,
        store.repository_revision("revised").await.unwrap(),
        "a version deletion",
    );
    assert!(store.delete_package("revised", "pkg").await.unwrap());
    changed(
        &mut seen,
        store.repository_revision("revised").await.unwrap(),
        "a package deletion",
    );
}

/// Files attached to a version (NuGet's symbol packages): a missing version is unknown and
/// nothing is created; an existing one gains the file and keeps its document; attaching the
/// same file name again is a conflict unless duplicates may replace.
pub async fn metadata_attach_files(store: SharedMetadataStore) {
    let repository = package_repository("nuget-hosted", PackageFormat::Nuget);
    store.ensure_package_repository(&repository).await.unwrap();
    let (package, symbols) = (
        BlobRef {
            digest: Digest::sha256(b"nupkg"),
            size: 5,
        },
        BlobRef {
            digest: Digest::sha256(b"snupkg"),
            size: 6,
        },
    );
    for blob in [&package, &symbols] {
        store.record_package_blob(blob).await.unwrap();
    }
    let mut attach = publish_of(
        "nuget-hosted",
        "Demo.Hello",
        "1.0.0",
        vec![package_file("demo.hello.1.0.0.snupkg", &symbols)],
    );
    attach.mode = PublishMode::AttachFiles;
    attach.metadata = r#"{"from":"symbols"}"#.into();
    assert!(matches!(
        store.publish(&attach).await,
        Err(Error::PackageUnknown { .. })
    ));
    assert_eq!(
        store.package("nuget-hosted", "demo.hello").await.unwrap(),
        None
    );

    let mut first = publish_of(
        "nuget-hosted",
        "Demo.Hello",
        "1.0.0",
        vec![package_file("demo.hello.1.0.0.nupkg", &package)],
    );
    first.metadata = r#"{"from":"package"}"#.into();
    store.publish(&first).await.unwrap();
    let outcome = store.publish(&attach).await.unwrap();
    assert!(!outcome.version_created);
    let stored = store
        .package("nuget-hosted", "demo.hello")
        .await
        .unwrap()
        .expect("published");
    let version = stored.version("1.0.0").expect("the version");
    assert_eq!(version.metadata, r#"{"from":"package"}"#);
    let names: Vec<&str> = version.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["demo.hello.1.0.0.nupkg", "demo.hello.1.0.0.snupkg"]);
    assert!(matches!(
        store.publish(&attach).await,
        Err(Error::PackageConflict { .. })
    ));
    attach.duplicates = true;
    assert_eq!(
        store.publish(&attach).await.unwrap().replaced,
        ["demo.hello.1.0.0.snupkg"]
    );
    let stored = store
        .package("nuget-hosted", "demo.hello")
        .await
        .unwrap()
        .expect("published");
    assert_eq!(stored.versions[0].metadata, r#"{"from":"package"}"#);
}
