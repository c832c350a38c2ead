//! Reading an upstream Python package index: a project's Simple API page in JSON (PEP 691,
//! with PEP 700's `size` and `upload-time`) as the model holds it.
//!
//! A file is taken when its name is a wheel or sdist name of this project (its version from
//! the name, in PEP 440 normal form, without a local label), it declares a SHA-256 and a
//! size, and its URL is absolute or relative to the page. Versions gather their files; one
//! whose every file is yanked is yanked (PEP 592), else each yanked file carries its reason in
//! its `yanked` attribute. A version's publish time is its newest file's `upload-time` (a file
//! without one counts as uploaded when read), so an age gate holds back a release a file was
//! just added to. Core-metadata files (PEP 658) of proxied files are not offered: pip reads
//! the metadata from the file itself.

use std::collections::{BTreeMap, HashSet};

use registry_core::{
    BlobRef, DeclaredDigest, Digest, Error, Package, PackageFile, PackageVersion, RemoteFile,
    Result, Timestamp, UpstreamPackage, VersionStatus,
};
use serde_json::Value;

use super::{SIMPLE_JSON, normalize, normalize_version, parse_filename};

fn invalid(reason: String) -> Error {
    Error::PackageInvalid { reason }
}

/// The most files a project page may list (the largest projects on PyPI list about 20,000).
const MAX_FILES: usize = 200_000;

/// The path of a project's page below an index's base URL.
pub fn project_path(name: &str) -> String {
    format!("simple/{name}/")
}

/// Resolves a file URL against the page it was found on (RFC 3986, for the forms indexes use:
/// absolute, absolute-path, and relative with `..`); its fragment goes.
fn resolve(page: &str, url: &str) -> Option<String> {
    let url = url.split('#').next().unwrap_or_default();
    if url.starts_with("http://") || url.starts_with("https://") {
        return Some(url.to_owned());
    }
    let origin = registry_core::proxy::origin(page);
    if url.starts_with("//") {
        return None;
    }
    if let Some(path) = url.strip_prefix('/') {
        return Some(format!("{origin}/{path}"));
    }
    let directory = &page[origin.len()..page.rfind('/').unwrap_or(page.len()).max(origin.len())];
    let mut segments: Vec<&str> = directory.split('/').filter(|s| !s.is_empty()).collect();
    for segment in url.split('/') {
        match segment {
            ".." => {
                segments.pop()?;
            }
            "." | "" => {}
            other => segments.push(other),
        }
    }
    Some(format!("{origin}/{}", segments.join("/")))
}

/// Reads an upstream's JSON project page of the project stored as `key`, fetched from `page`
/// (its URL, which relative file URLs are resolved against).
///
/// Errors: [`Error::PackageInvalid`] when it is not a JSON project page, or of another project.
pub fn read_project_json(key: &str, document: &[u8], page: &str) -> Result<UpstreamPackage> {
    let document: Value = serde_json::from_slice(document)
        .map_err(|e| invalid(format!("the project page is not JSON: {e}")))?;
    let named = document.get("name").and_then(Value::as_str);
    if named.map(normalize).as_deref() != Some(key) {
        return Err(invalid(format!(
            "the project page of {key} names {}",
            named.unwrap_or("no project")
        )));
    }
    let files = document
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("the project page of {key} has no files list")))?;
    if files.len() > MAX_FILES {
        return Err(invalid(format!(
            "the project page of {key} lists {} files; at most {MAX_FILES} are read",
            files.len()
        )));
    }
    let read_at = Timestamp::now();
    let mut versions: BTreeMap<String, (Vec<PackageFile>, Vec<Option<String>>)> = BTreeMap::new();
    let mut remote = Vec::new();
    let mut seen = HashSet::new();
    for file in files {
        let Some(filename) = file.get("filename").and_then(Value::as_str) else {
            continue;
        };
        let Ok(dist) = parse_filename(filename) else {
            continue;
        };
        let (Ok(version), true) = (
            normalize_version(&dist.version),
            normalize(&dist.name) == key,
        ) else {
            continue;
        };
        // A local version (`1.0+build`) is not for an index (PyPI refuses them), and would
        // read as the release it labels to a resolver.
        if version.contains('+') {
            continue;
        }
        let sha256 = file
            .pointer("/hashes/sha256")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let size = file.get("size").and_then(Value::as_u64);
        let url = file
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| resolve(page, u));
        let (Some(sha256), Some(size), Some(url)) = (sha256, size, url) else {
            continue;
        };
        let Ok(digest) = Digest::parse(&format!("sha256:{sha256}")) else {
            continue;
        };
        // The first usable listing of a name counts; an unusable one hides nothing.
        if !seen.insert(filename) {
            continue;
        }
        // Without its own upload time a file counts as uploaded when first read, so an age
        // gate never lets it through early.
        let uploaded = file
            .get("upload-time")
            .and_then(Value::as_str)
            .and_then(crate::rfc3339)
            .unwrap_or(read_at);
        let mut attributes = BTreeMap::new();
        attributes.insert("filetype".to_owned(), dist.kind.filetype().to_owned());
        if let Some(requires) = file.get("requires-python").and_then(Value::as_str) {
            attributes.insert("requires_python".to_owned(), requires.to_owned());
        }
        let yanked = match file.get("yanked") {
            Some(Value::Bool(true)) => Some(String::new()),
            Some(Value::String(reason)) => Some(reason.clone()),
            _ => None,
        };
        let entry = versions.entry(version.clone()).or_default();
        entry.0.push(PackageFile {
            name: filename.to_owned(),
            blob: BlobRef { digest, size },
            digests: Default::default(),
            sidecar: None,
            attributes,
            created_at: uploaded,
        });
        entry.1.push(yanked);
        remote.push(RemoteFile {
            version,
            name: filename.to_owned(),
            url,
            digest: DeclaredDigest::Sha256(sha256),
        });
    }
    let versions: Vec<PackageVersion> = versions
        .into_iter()
        .map(|(version, (mut files, yanks))| {
            // The newest file's time: a file added to an old release is as young as it is.
            let published = files.iter().map(|f| f.created_at).max().unwrap_or(read_at);
            let status = match yanks.iter().all(Option::is_some) {
                true => {
                    // Yanked without a reason reads as an empty one (PEP 592's `true`).
                    VersionStatus::Yanked(yanks.into_iter().flatten().next().unwrap_or_default())
                }
                false => {
                    // Some files yanked: each says so itself (PEP 592 yanks files).
                    for (file, yanked) in files.iter_mut().zip(&yanks) {
                        if let Some(reason) = yanked {
                            file.attributes.insert("yanked".to_owned(), reason.clone());
                        }
                    }
                    VersionStatus::Default
                }
            };
            PackageVersion {
                version,
                status,
                metadata: "{}".to_owned(),
                files,
                created_at: published,
                updated_at: published,
            }
        })
        .collect();
    let created = versions
        .iter()
        .map(|v| v.created_at)
        .min()
        .unwrap_or(Timestamp(0));
    let updated = versions
        .iter()
        .map(|v| v.created_at)
        .max()
        .unwrap_or(created);
    Ok(UpstreamPackage {
        package: Package {
            name: key.to_owned(),
            display_name: named.unwrap_or(key).to_owned(),
            versions,
            tags: Default::default(),
            created_at: created,
            updated_at: updated,
            revision: String::new(),
        },
        files: remote,
        deferred: Vec::new(),
    })
}

impl registry_core::UpstreamFormat for super::Pypi {
    fn metadata_path(&self, key: &str) -> String {
        project_path(key)
    }

    fn metadata_accept(&self) -> &'static str {
        SIMPLE_JSON
    }

    fn probe_path(&self) -> &'static str {
        "simple/pip/"
    }

    fn parse_metadata(&self, key: &str, document: &[u8], base: &str) -> Result<UpstreamPackage> {
        read_project_json(key, document, &format!("{base}/{}", project_path(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_files_versions_and_yanks() {
        let sha = |c: char| c.to_string().repeat(64);
        let page = json!({
            "meta": {"api-version": "1.1"},
            "name": "Demo_Pkg",
            "files": [
                {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "../../files/demo_pkg-1.0-py3-none-any.whl#sha256=x",
                 "hashes": {"sha256": sha('a')}, "size": 10, "upload-time": "2020-01-01T00:00:00.000000Z",
                 "requires-python": ">=3.8"},
                {"filename": "demo_pkg-1.0.tar.gz", "url": "https://files.example/demo_pkg-1.0.tar.gz",
                 "hashes": {"sha256": sha('b')}, "size": 20, "upload-time": "2019-06-01T00:00:00Z",
                 "yanked": "bad sdist"},
                {"filename": "demo_pkg-1.0.tar.gz", "url": "/again", "hashes": {"sha256": sha('f')}, "size": 2},
                {"filename": "demo_pkg-5.0+evil.tar.gz", "url": "/x", "hashes": {"sha256": sha('e')}, "size": 1},
                {"filename": "demo_pkg-2.0.tar.gz", "url": "/files/demo_pkg-2.0.tar.gz",
                 "hashes": {"sha256": sha('c')}, "size": 30, "yanked": "broken"},
                {"filename": "demo_pkg-3.0.tar.gz", "url": "/x", "hashes": {"md5": "00"}, "size": 1},
                {"filename": "other-1.0.tar.gz", "url": "/x", "hashes": {"sha256": sha('d')}, "size": 1},
                {"filename": "demo_pkg-4.0.tar.gz", "url": "/x", "hashes": {"sha256": sha('e')}}
            ]
        });
        let read = read_project_json(
            "demo-pkg",
            page.to_string().as_bytes(),
            "http://up.example/pypi/x/simple/demo-pkg/",
        )
        .unwrap();
        let versions: Vec<&str> = read
            .package
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        assert_eq!(versions, ["1.0", "2.0"]);
        let one = &read.package.versions[0];
        assert_eq!(one.files.len(), 2);
        assert_eq!(
            one.created_at,
            Timestamp(1_577_836_800_000),
            "the newest upload"
        );
        assert_eq!(one.files[0].attributes["requires_python"], ">=3.8");
        // One file of a release yanked: the release stands, the file says so; a name listed
        // twice is read once; a local version is left out.
        assert_eq!(one.status, VersionStatus::Default);
        assert_eq!(one.files[1].attributes["yanked"], "bad sdist");
        assert!(!one.files[0].attributes.contains_key("yanked"));
        assert_eq!(one.files[1].blob.size, 20);
        assert_eq!(
            read.package.versions[1].status,
            VersionStatus::Yanked("broken".into())
        );
        let urls: Vec<&str> = read.files.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://up.example/pypi/x/files/demo_pkg-1.0-py3-none-any.whl",
                "https://files.example/demo_pkg-1.0.tar.gz",
                "http://up.example/files/demo_pkg-2.0.tar.gz"
            ]
        );
        assert_eq!(read.files[0].digest, DeclaredDigest::Sha256(sha('a')));
        for bad in [
            json!({"name": "other", "files": []}),
            json!({"name": "demo-pkg"}),
            json!([]),
        ] {
            assert!(
                read_project_json("demo-pkg", bad.to_string().as_bytes(), "http://x/").is_err()
            );
        }
        assert_eq!(resolve("http://h/a/b/", "../../../../x"), None);
    }

    #[test]
    fn a_page_listing_more_files_than_any_project_has_is_refused() {
        let file = json!({"filename": "a-1.0.tar.gz", "url": "/x", "hashes": {"sha256": "a".repeat(64)}, "size": 1});
        let page = json!({"name": "a", "files": vec![file; MAX_FILES + 1]});
        let error = read_project_json("a", page.to_string().as_bytes(), "http://x/")
            .unwrap_err()
            .to_string();
        assert!(error.contains("at most"), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_pages_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), url in ".{0,40}") {
            let _ = read_project_json("demo", &body, "http://h/simple/demo/");
            let _ = resolve("http://h/simple/demo/", &url);
        }
    }
}
