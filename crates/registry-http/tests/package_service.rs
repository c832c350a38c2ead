//! The package service over the memory stores, with the formats' rules: repositories resolved
//! by kind, the create-on-publish policy, protection checked inside every mutation, format
//! conflicts, version order, extra digests and blocking reads.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use registry_core::{
    Error, FormatRules, MetadataStore, NewPackageFile, PackageFormat, PackageProtection,
    PackageRepository, PackageUpdate, Packages, Release, RepositoryKind, RepositorySettings, Role,
    Timestamp, VersionStatus,
};
use registry_formats::generic::Generic;
use registry_formats::npm::Npm;
use registry_formats::pypi::Pypi;
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};

fn service() -> (Packages, Arc<dyn MetadataStore>) {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::clone(&metadata));
    (packages, metadata)
}

async fn release(
    packages: &Packages,
    rules: &dyn FormatRules,
    name: &str,
    version: &str,
    file: &str,
) -> Release {
    let stored = packages
        .store_bytes(
            rules.extra_digests(),
            Bytes::from(format!("{name} {version}")),
        )
        .await
        .unwrap();
    Release {
        name: name.into(),
        version: version.into(),
        metadata: "{}".into(),
        files: vec![NewPackageFile {
            name: file.into(),
            blob: stored.blob,
            digests: stored.digests,
            sidecar: None,
            attributes: Default::default(),
        }],
        tags: Vec::new(),
    }
}

/// Proxy and virtual repositories take no changes and say why; stored without what their kind
/// needs (written to the store directly, past the checks of `configure_repository`), reads say
/// what is missing; a proxy of a format without upstreams is 501.
#[tokio::test]
async fn proxy_and_virtual_repositories_take_no_changes_and_say_what_is_missing() {
    let (packages, metadata) = service();
    for (name, format, kind) in [
        ("cache", PackageFormat::Npm, RepositoryKind::Proxy),
        ("all", PackageFormat::Npm, RepositoryKind::Virtual),
        ("files", PackageFormat::Generic, RepositoryKind::Proxy),
    ] {
        metadata
            .ensure_package_repository(&PackageRepository {
                name: name.into(),
                format,
                kind,
                settings: RepositorySettings::default(),
                created_at: Timestamp::now(),
            })
            .await
            .unwrap();
    }
    let read = packages.package(&Npm, "cache", "left-pad").await;
    assert!(
        matches!(&read, Err(Error::PolicyInvalid { reason }) if reason.contains("no upstream")),
        "{read:?}"
    );
    let read = packages.package(&Npm, "all", "left-pad").await;
    assert!(
        matches!(read, Ok(None)),
        "no members, nothing found: {read:?}"
    );
    let read = packages
        .package(&registry_formats::generic::Generic, "files", "a")
        .await;
    assert!(matches!(read, Err(Error::Unsupported { .. })), "{read:?}");
    for name in ["cache", "all"] {
        let publish = release(&packages, &Npm, "left-pad", "1.0.0", "left-pad-1.0.0.tgz").await;
        let published = packages.publish(&Npm, name, None, publish).await;
        assert!(
            matches!(&published, Err(Error::PackageConflict { reason }) if reason.contains("takes no publishes")),
            "{published:?}"
        );
        let deleted = packages.delete_package(&Npm, name, "left-pad", None).await;
        assert!(
            matches!(&deleted, Err(Error::PackageConflict { reason }) if reason.contains("cannot be changed")),
            "{deleted:?}"
        );
    }
}

#[tokio::test]
async fn publishes_create_repositories_only_when_allowed() {
    let (packages, metadata) = service();
    let closed = packages.clone().with_create_on_publish(false);
    let refused = release(&closed, &Generic, "tool", "1.0", "tool.bin").await;
    let result = closed.publish(&Generic, "files", None, refused).await;
    assert!(
        matches!(result, Err(Error::PackageUnknown { .. })),
        "{result:?}"
    );
    assert!(
        metadata
            .package_repository("files")
            .await
            .unwrap()
            .is_none()
    );

    let accepted = release(&packages, &Generic, "tool", "1.0", "tool.bin").await;
    packages
        .publish(&Generic, "files", None, accepted)
        .await
        .unwrap();
    let created = metadata.package_repository("files").await.unwrap().unwrap();
    assert_eq!(
        (created.format, created.kind),
        (PackageFormat::Generic, RepositoryKind::Hosted)
    );
    // Now that it exists, the closed service publishes to it too.
    let second = release(&closed, &Generic, "tool", "1.1", "tool.bin").await;
    closed
        .publish(&Generic, "files", None, second)
        .await
        .unwrap();
}

#[tokio::test]
async fn protection_is_checked_inside_every_mutation() {
    let (packages, _) = service();
    let settings = RepositorySettings {
        protection: vec![PackageProtection {
            packages: registry_core::NameRegex::parse("@core/.*").unwrap(),
            publish: Role::Maintainer,
            delete: Role::Owner,
        }],
        ..RepositorySettings::default()
    };
    packages
        .configure_repository("js", &Npm, RepositoryKind::Hosted, &settings)
        .await
        .unwrap();
    let developer = Some(Role::Developer);
    let maintainer = Some(Role::Maintainer);

    let publish = release(&packages, &Npm, "@core/lib", "1.0.0", "lib-1.0.0.tgz").await;
    let refused = packages
        .publish(&Npm, "js", developer, publish.clone())
        .await;
    assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
    packages
        .publish(&Npm, "js", maintainer, publish)
        .await
        .unwrap();

    let refused = packages
        .delete_version(&Npm, "js", "@core/lib", "1.0.0", maintainer)
        .await;
    assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
    let refused = packages
        .set_tag(&Npm, "js", "@core/lib", "beta", "1.0.0", developer)
        .await;
    assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
    let revision = packages
        .package_revision(&Npm, "js", "@core/lib")
        .await
        .unwrap();
    let removal = PackageUpdate {
        repository: "js".into(),
        name: "@core/lib".into(),
        expected_revision: revision,
        delete_versions: vec!["1.0.0".into()],
        ..PackageUpdate::default()
    };
    let refused = packages.update(&Npm, maintainer, &removal).await;
    assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
    assert!(
        packages
            .package(&Npm, "js", "@core/lib")
            .await
            .unwrap()
            .is_some(),
        "refused changes change nothing"
    );
    // Unprotected names, and trusted callers, are not held back.
    let other = release(&packages, &Npm, "other", "1.0.0", "other-1.0.0.tgz").await;
    packages
        .publish(&Npm, "js", developer, other)
        .await
        .unwrap();
    packages.update(&Npm, None, &removal).await.unwrap();
    assert!(
        packages
            .package(&Npm, "js", "@core/lib")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn another_formats_repository_conflicts_on_publish_and_is_absent_otherwise() {
    let (packages, _) = service();
    let npm = release(&packages, &Npm, "lib", "1.0.0", "lib-1.0.0.tgz").await;
    packages.publish(&Npm, "js", None, npm).await.unwrap();
    let generic = release(&packages, &Generic, "lib", "1.0.0", "lib.bin").await;
    let conflict = packages.publish(&Generic, "js", None, generic).await;
    assert!(
        matches!(conflict, Err(Error::PackageConflict { .. })),
        "{conflict:?}"
    );
    let read = packages.package(&Generic, "js", "lib").await;
    assert!(
        matches!(read, Err(Error::PackageUnknown { .. })),
        "{read:?}"
    );
    let delete = packages
        .delete_version(&Generic, "js", "lib", "1.0.0", None)
        .await;
    assert!(
        matches!(delete, Err(Error::PackageUnknown { .. })),
        "{delete:?}"
    );
    assert!(packages.package(&Npm, "js", "lib").await.unwrap().is_some());
}

#[tokio::test]
async fn names_and_versions_are_stored_under_the_formats_keys_and_ordered_by_its_rules() {
    let (packages, _) = service();
    for version in ["1.10.0", "1.9.0", "1.0.0rc1", "1.0.0"] {
        let file = format!("My_Project-{version}.tar.gz");
        let upload = release(&packages, &Pypi, "My_Project", version, &file).await;
        packages.publish(&Pypi, "py", None, upload).await.unwrap();
    }
    let package = packages
        .package(&Pypi, "py", "my.project")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(package.name, "my-project");
    assert_eq!(package.display_name, "My_Project");
    let order: Vec<&str> = package
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(order, ["1.0.0rc1", "1.0.0", "1.9.0", "1.10.0"]);
    // Versions are found by their normal form too.
    packages
        .set_version_status(
            &Pypi,
            "py",
            "MY-PROJECT",
            "1.0.0RC1",
            &VersionStatus::Yanked("broken".into()),
            None,
        )
        .await
        .unwrap();
    let found = packages
        .file(
            &Pypi,
            "py",
            "my_project",
            Some("1.10.0"),
            "My_Project-1.10.0.tar.gz",
        )
        .await
        .unwrap();
    assert_eq!(found.map(|(version, _)| version).as_deref(), Some("1.10.0"));
    // A name the format refuses names nothing.
    assert!(
        packages
            .package(&Pypi, "py", "-bad-")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn files_are_stored_with_the_formats_digests_and_read_back_as_read_and_seek() {
    let (packages, _) = service();
    let bytes = Bytes::from(vec![7u8; 700_000]);
    let stored = packages
        .store_bytes(Pypi.extra_digests(), bytes.clone())
        .await
        .unwrap();
    assert_eq!(stored.blob.size, 700_000);
    assert_eq!(
        stored.digests.md5.as_deref(),
        Some(hex::encode(md5_of(&bytes)).as_str())
    );
    assert_eq!(
        stored.digests.blake2_256.as_ref().map(String::len),
        Some(64)
    );
    assert_eq!((stored.digests.sha1, stored.digests.sha512), (None, None));
    let none = packages
        .store_bytes(Generic.extra_digests(), bytes.clone())
        .await
        .unwrap();
    assert_eq!(none.digests, Default::default());

    let (start, tail) = packages
        .read_blocking(&stored.blob, |mut reader| {
            let mut start = [0u8; 10];
            reader.read_exact(&mut start).unwrap();
            reader.seek(SeekFrom::End(-300_000)).unwrap();
            let mut tail = Vec::new();
            reader.read_to_end(&mut tail).unwrap();
            (start, tail)
        })
        .await
        .unwrap();
    assert_eq!(start, [7u8; 10]);
    assert_eq!(tail.len(), 300_000);
}

#[tokio::test]
async fn an_oversized_file_is_refused_and_nothing_published() {
    let (packages, _) = service();
    let packages = packages.with_limits(registry_core::PackageLimits {
        max_file_size: 1000,
        ..Default::default()
    });
    let result = packages
        .store_bytes(Generic.extra_digests(), Bytes::from(vec![0u8; 1001]))
        .await;
    assert!(
        matches!(result, Err(Error::SizeInvalid { .. })),
        "{result:?}"
    );
}

fn md5_of(bytes: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(bytes).to_vec()
}

/// A format whose `-SNAPSHOT` versions may be republished (as Maven's are), to show the seam
/// carries that decision.
#[derive(Debug)]
struct Snapshots;

impl FormatRules for Snapshots {
    fn format(&self) -> PackageFormat {
        PackageFormat::Generic
    }
    fn package_key(&self, name: &str) -> registry_core::Result<String> {
        Generic.package_key(name)
    }
    fn version_key(&self, version: &str) -> registry_core::Result<String> {
        Generic.version_key(version)
    }
    fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        Generic.compare_versions(a, b)
    }
    fn publish_mode(&self) -> registry_core::PublishMode {
        Generic.publish_mode()
    }
    fn extra_digests(&self) -> registry_core::ExtraDigests {
        Generic.extra_digests()
    }
    fn replaceable(&self, version: &str) -> bool {
        version.ends_with("-SNAPSHOT")
    }
}

#[tokio::test]
async fn a_format_may_make_some_versions_replaceable_whatever_the_repository_says() {
    let (packages, _) = service();
    for version in ["1.0", "1.1-SNAPSHOT"] {
        let first = release(&packages, &Snapshots, "lib", version, "lib.jar").await;
        packages
            .publish(&Snapshots, "m", None, first)
            .await
            .unwrap();
    }
    let again = release(&packages, &Snapshots, "lib", "1.1-SNAPSHOT", "lib.jar").await;
    let outcome = packages
        .publish(&Snapshots, "m", None, again)
        .await
        .unwrap();
    assert_eq!(outcome.replaced, ["lib.jar"]);
    let again = release(&packages, &Snapshots, "lib", "1.0", "lib.jar").await;
    let refused = packages.publish(&Snapshots, "m", None, again).await;
    assert!(
        matches!(refused, Err(Error::PackageConflict { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn protection_rules_hold_for_every_spelling_of_a_name() {
    let (packages, _) = service();
    let rule = |pattern: &str| RepositorySettings {
        protection: vec![PackageProtection {
            packages: registry_core::NameRegex::parse(pattern).unwrap(),
            publish: Role::Owner,
            delete: Role::Owner,
        }],
        ..RepositorySettings::default()
    };
    // PyPI compares names in their PEP 503 form: a pattern no stored name can match is refused.
    for unmatchable in ["Django.*", "django_rest.*", "zope\\.interface"] {
        let refused = packages
            .configure_repository("py", &Pypi, RepositoryKind::Hosted, &rule(unmatchable))
            .await;
        assert!(
            matches!(refused, Err(Error::PackageInvalid { .. })),
            "{unmatchable}: {refused:?}"
        );
    }
    packages
        .configure_repository("py", &Pypi, RepositoryKind::Hosted, &rule("django.*"))
        .await
        .unwrap();
    let maintainer = Some(Role::Maintainer);
    for spelling in ["Django", "DJANGO", "django", "Django_Rest", "django.rest"] {
        let sent = packages
            .prepare_publish(&Pypi, "py", spelling, maintainer)
            .await;
        assert!(
            matches!(sent, Err(Error::Denied { .. })),
            "{spelling}: {sent:?}"
        );
        let file = format!("{spelling}-5.0.tar.gz");
        let upload = release(&packages, &Pypi, spelling, "5.0", &file).await;
        let published = packages.publish(&Pypi, "py", maintainer, upload).await;
        assert!(
            matches!(published, Err(Error::Denied { .. })),
            "{spelling}: {published:?}"
        );
    }
    let upload = release(&packages, &Pypi, "Django", "5.0", "Django-5.0.tar.gz").await;
    packages.publish(&Pypi, "py", None, upload).await.unwrap();
    for spelling in ["DJANGO", "django"] {
        let refused = packages
            .delete_version(&Pypi, "py", spelling, "5.0", maintainer)
            .await;
        assert!(
            matches!(refused, Err(Error::Denied { .. })),
            "{spelling}: {refused:?}"
        );
    }
    // Invalid versions and names in changes are bad requests, not unknown ones.
    let bad = packages
        .delete_version(&Pypi, "py", "django", "not a version", None)
        .await;
    assert!(matches!(bad, Err(Error::PackageInvalid { .. })), "{bad:?}");
    let bad = packages
        .delete_version(&Pypi, "py", "-bad-", "1.0", None)
        .await;
    assert!(matches!(bad, Err(Error::PackageInvalid { .. })), "{bad:?}");
}

/// Two instances over one database: index-like pages one instance caches show what the other
/// publishes or deletes on the next request (the cache is keyed by the repository's revision,
/// read from the store on every request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_indexes_are_exact_across_instances() {
    let (store, _cleanup) = registry_storage::testing::sqlite().await;
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let writer = Packages::new(Arc::clone(&blobs), Arc::clone(&store));
    let reader = Packages::new(blobs, Arc::clone(&store));
    let pypi = registry_http::pypi::router(reader.clone(), None);
    let npm = registry_http::npm::router(reader, None);
    for project in ["alpha", "beta"] {
        let file = format!("{project}-1.0.tar.gz");
        let upload = release(&writer, &Pypi, project, "1.0", &file).await;
        writer.publish(&Pypi, "py", None, upload).await.unwrap();
        let index = get(pypi.clone(), "/pypi/py/simple/").await;
        assert!(index.contains(&format!(">{project}<")), "{index}");
        // Asked twice: the second answer is the cached one, and still exact.
        assert_eq!(get(pypi.clone(), "/pypi/py/simple/").await, index);
    }
    writer
        .delete_package(&Pypi, "py", "alpha", None)
        .await
        .unwrap();
    let index = get(pypi.clone(), "/pypi/py/simple/").await;
    assert!(
        !index.contains(">alpha<") && index.contains(">beta<"),
        "{index}"
    );

    let upload = release(&writer, &Npm, "left-pad", "1.0.0", "left-pad-1.0.0.tgz").await;
    writer.publish(&Npm, "js", None, upload).await.unwrap();
    let found = get(npm.clone(), "/npm/js/-/v1/search?size=20").await;
    assert!(
        found.contains("\"left-pad\"") && found.contains("\"time\""),
        "{found}"
    );
    let upload = release(&writer, &Npm, "right-pad", "1.0.0", "right-pad-1.0.0.tgz").await;
    writer.publish(&Npm, "js", None, upload).await.unwrap();
    let found: serde_json::Value =
        serde_json::from_str(&get(npm, "/npm/js/-/v1/search?size=20").await).unwrap();
    assert_eq!(found["total"], 2, "{found}");
}

async fn get(app: axum::Router, uri: &str) -> String {
    let request = axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK, "{uri}");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// pip percent-encodes what it reads in a link: a file with `+` in its name (a local version)
/// is asked for as `%2B` and served.
#[tokio::test]
async fn files_are_found_however_their_names_are_percent_encoded() {
    let (packages, _) = service();
    let file = "demo-1.0+cpu-py3-none-any.whl";
    let upload = release(&packages, &Pypi, "demo", "1.0+cpu", file).await;
    packages.publish(&Pypi, "py", None, upload).await.unwrap();
    let pypi = registry_http::pypi::router(packages, None);
    let page = get(pypi.clone(), "/pypi/py/simple/demo/").await;
    assert!(page.contains(file), "{page}");
    for uri in [
        "/pypi/py/files/demo/1.0+cpu/demo-1.0+cpu-py3-none-any.whl",
        "/pypi/py/files/demo/1.0%2Bcpu/demo-1.0%2Bcpu-py3-none-any.whl",
        "/pypi/py/files/demo/1.0%2bcpu/demo%2D1.0%2Bcpu-py3-none-any.whl",
    ] {
        assert_eq!(get(pypi.clone(), uri).await, "demo 1.0+cpu");
    }
}
