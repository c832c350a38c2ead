//! Reading an upstream npm registry: a packument as the model holds it.
//!
//! A version is taken when its key is a semver version in normal form without build metadata,
//! its manifest says the same version (and package, when it names one), and its `dist` names an absolute tarball URL and a digest to check it by —
//! `integrity` (`sha512-…`) or, for packages published before it existed, `shasum` (SHA-1).
//! Anything else is left out rather than served unverifiable. Publish times come from `time`
//! (what an age gate reads; a version without one counts as published when read);
//! `deprecated` becomes the version's status.

use base64::Engine;
use registry_core::{
    DeclaredDigest, Error, Package, PackageVersion, RemoteFile, Result, Timestamp, UpstreamPackage,
    VersionStatus,
};
use serde_json::{Map, Value};

use super::{check_read_name, check_version, tarball_name};

/// The path of a package's packument below a registry's base URL: scoped names keep their `@`
/// and escape the `/` (`@scope%2fname`), as npm asks.
pub fn packument_path(name: &str) -> String {
    name.replacen('/', "%2f", 1)
}

fn invalid(reason: String) -> Error {
    Error::PackageInvalid { reason }
}

/// A time in `time` (RFC 3339) as a timestamp.
fn timestamp(value: Option<&Value>) -> Option<Timestamp> {
    crate::rfc3339(value?.as_str()?)
}

/// The digest a manifest's `dist` declares.
fn declared_digest(dist: &Map<String, Value>) -> Option<DeclaredDigest> {
    let sha512 = dist
        .get("integrity")
        .and_then(Value::as_str)
        .into_iter()
        .flat_map(|i| i.split_whitespace())
        .find_map(|i| i.strip_prefix("sha512-"))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|bytes| bytes.len() == 64);
    if let Some(bytes) = sha512 {
        return Some(DeclaredDigest::Sha512(hex::encode(bytes)));
    }
    dist.get("shasum")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(DeclaredDigest::Sha1)
}

/// Reads an upstream's packument of `name`.
///
/// Errors: [`Error::PackageInvalid`] when the document is not a JSON object with a `versions`
/// object, or names another package.
pub fn read_packument(name: &str, document: &[u8]) -> Result<UpstreamPackage> {
    check_read_name(name)?;
    let document: Value = serde_json::from_slice(document)
        .map_err(|e| invalid(format!("the packument is not JSON: {e}")))?;
    let Some(document) = document.as_object() else {
        return Err(invalid("the packument is not a JSON object".into()));
    };
    match document.get("name") {
        Some(named) if named.as_str() == Some(name) => {}
        Some(named) => {
            return Err(invalid(format!(
                "the packument of {name} names another package: {named}"
            )));
        }
        None => return Err(invalid(format!("the packument of {name} names no package"))),
    }
    let versions = document
        .get("versions")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("the packument of {name} has no versions object")))?;
    let empty = Map::new();
    let times = document
        .get("time")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let read_at = Timestamp::now();
    let created = timestamp(times.get("created")).unwrap_or(read_at);
    let modified = timestamp(times.get("modified")).unwrap_or(created);
    let mut package = Package {
        name: name.to_owned(),
        display_name: name.to_owned(),
        versions: Vec::new(),
        tags: Default::default(),
        created_at: created,
        updated_at: modified,
        revision: String::new(),
    };
    let mut files = Vec::new();
    for (version, manifest) in versions {
        let Some(fields) = manifest.as_object() else {
            continue;
        };
        // A version with build metadata (`1.3.1+evil`) would dodge every rule and advisory
        // naming 1.3.1; a manifest of another package or version is not this one.
        if check_version(version).is_err()
            || version.contains('+')
            || fields.get("version").and_then(Value::as_str) != Some(version)
            || fields.get("name").is_some_and(|n| n.as_str() != Some(name))
        {
            continue;
        }
        let Some(dist) = fields.get("dist").and_then(Value::as_object) else {
            continue;
        };
        let (Some(url), Some(digest)) = (
            dist.get("tarball")
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("http://") || u.starts_with("https://")),
            declared_digest(dist),
        ) else {
            continue;
        };
        // Without its own publish time a version counts as published when first read, so an
        // age gate never lets it through early.
        let published = timestamp(times.get(version)).unwrap_or(read_at);
        let status = match fields.get("deprecated").and_then(Value::as_str) {
            Some(message) if !message.is_empty() => VersionStatus::Deprecated(message.to_owned()),
            _ => VersionStatus::Default,
        };
        package.versions.push(PackageVersion {
            version: version.clone(),
            status,
            metadata: manifest.to_string(),
            files: Vec::new(),
            created_at: published,
            updated_at: published,
        });
        files.push(RemoteFile {
            version: version.clone(),
            name: tarball_name(name, version),
            url: url.to_owned(),
            digest,
        });
    }
    if let Some(tags) = document.get("dist-tags").and_then(Value::as_object) {
        for (tag, version) in tags {
            if let Some(version) = version.as_str()
                && package.version(version).is_some()
                && super::check_tag(tag).is_ok()
            {
                package.tags.insert(tag.clone(), version.to_owned());
            }
        }
    }
    Ok(UpstreamPackage {
        package,
        files,
        deferred: Vec::new(),
    })
}

impl registry_core::UpstreamFormat for super::Npm {
    fn metadata_path(&self, key: &str) -> String {
        packument_path(key)
    }

    fn probe_path(&self) -> &'static str {
        "-/ping"
    }

    fn parse_metadata(&self, key: &str, document: &[u8], _base: &str) -> Result<UpstreamPackage> {
        read_packument(key, document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn integrity(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(bytes))
        )
    }

    #[test]
    fn reads_versions_times_tags_and_digests() {
        let document = json!({
            "name": "@demo/pad",
            "dist-tags": {"latest": "1.1.0", "beta": "9.9.9", "next": "1.0.0"},
            "time": {
                "created": "2020-01-01T00:00:00.000Z",
                "modified": "2021-01-01T00:00:00.000Z",
                "1.0.0": "2020-01-01T00:00:00.000Z",
                "1.1.0": "2021-01-01T00:00:00.000Z"
            },
            "versions": {
                "1.0.0": {"name": "@demo/pad", "version": "1.0.0", "deprecated": "use 1.1",
                          "dist": {"tarball": "https://up.example/@demo/pad/-/pad-1.0.0.tgz",
                                   "shasum": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
                "1.1.0": {"name": "@demo/pad", "version": "1.1.0",
                          "dist": {"tarball": "https://up.example/@demo/pad/-/pad-1.1.0.tgz",
                                   "integrity": integrity(b"tarball"), "shasum": "ignored"}},
                "01.2.0": {"version": "01.2.0", "dist": {}},
                "1.3.0": {"version": "1.3.0", "dist": {"tarball": "https://up.example/x.tgz"}},
                "1.4.0": {"version": "1.4.1", "dist": {"tarball": "https://up.example/y.tgz",
                                                       "shasum": "a".repeat(40)}},
                "1.5.0": {"version": "1.5.0", "dist": {"tarball": "/relative.tgz",
                                                       "shasum": "a".repeat(40)}},
                "1.6.0+evil": {"version": "1.6.0+evil", "dist": {"tarball": "https://up.example/z.tgz",
                                                                 "shasum": "a".repeat(40)}},
                "1.7.0": {"name": "left-pad", "version": "1.7.0",
                          "dist": {"tarball": "https://up.example/w.tgz", "shasum": "a".repeat(40)}}
            }
        });
        let read = read_packument("@demo/pad", document.to_string().as_bytes()).unwrap();
        let versions: Vec<&str> = read
            .package
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        assert_eq!(versions, ["1.0.0", "1.1.0"]);
        assert_eq!(
            read.package.versions[0].status,
            VersionStatus::Deprecated("use 1.1".into())
        );
        assert_eq!(
            read.package.versions[1].created_at,
            Timestamp(1_609_459_200_000)
        );
        assert_eq!(
            read.package.tags,
            [
                ("latest".into(), "1.1.0".into()),
                ("next".into(), "1.0.0".into())
            ]
            .into()
        );
        assert_eq!(read.files[0].name, "pad-1.0.0.tgz");
        assert_eq!(read.files[0].digest, DeclaredDigest::Sha1("a".repeat(40)));
        use sha2::Digest as _;
        assert_eq!(
            read.files[1].digest,
            DeclaredDigest::Sha512(hex::encode(sha2::Sha512::digest(b"tarball")))
        );
        assert_eq!(packument_path("@demo/pad"), "@demo%2fpad");
    }

    #[test]
    fn refuses_what_is_not_a_packument_of_the_name() {
        for document in [
            json!({"versions": {}}).to_string(),
            "not json".to_owned(),
            "[]".to_owned(),
            json!({"name": "other", "versions": {}}).to_string(),
            json!({"name": "pad"}).to_string(),
        ] {
            assert!(matches!(
                read_packument("pad", document.as_bytes()),
                Err(Error::PackageInvalid { .. })
            ));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_packuments_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = read_packument("pad", &body);
        }
    }
}
