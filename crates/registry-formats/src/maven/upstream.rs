//! Reading an upstream Maven repository (the standard layout: Maven Central, or another
//! registry): a package's versions from its artifact-level `maven-metadata.xml`, and its files
//! by path, each verified against the checksum file beside it (`.sha512`, else `.sha256`, else
//! `.sha1`) — the layout lists no files.
//!
//! The metadata gives no publish time per version: the highest version is taken as published
//! at `lastUpdated` (when the document last changed, normally that version's deploy), the
//! others long ago; a file's own `Last-Modified` is its version's publish time when it is
//! downloaded, so an age gate holds a young release back at download whatever the metadata
//! says. Files of a SNAPSHOT version without a build number change upstream and are not
//! proxied.

use registry_core::{
    DigestAlgorithm, Error, FormatRules as _, Package, PackageVersion, PathFile, Result, Timestamp,
    UpstreamPackage, VersionStatus,
};

use super::metadata::read_artifact_metadata;
use super::{Maven, MavenVersion, parse_file_name};

fn invalid(reason: String) -> Error {
    Error::PackageInvalid { reason }
}

/// The directory of the package stored as `group:artifact`, below a repository's root.
fn artifact_dir(key: &str) -> Option<String> {
    let (group, artifact) = key.split_once(':')?;
    Some(format!("{}/{artifact}", group.replace('.', "/")))
}

impl registry_core::UpstreamFormat for Maven {
    fn metadata_path(&self, key: &str) -> String {
        // Keys are checked as group:artifact before they get here (the default, an empty
        // directory, is never taken).
        format!(
            "{}/maven-metadata.xml",
            artifact_dir(key).unwrap_or_default()
        )
    }

    fn metadata_accept(&self) -> &'static str {
        "application/xml, text/xml;q=0.9, */*;q=0.1"
    }

    fn max_metadata_size(&self) -> u64 {
        8 << 20
    }

    fn parse_metadata(&self, key: &str, document: &[u8], _base: &str) -> Result<UpstreamPackage> {
        let read = read_artifact_metadata(document)?;
        let (group, artifact) = key.split_once(':').unwrap_or((key, ""));
        for (declared, expected, what) in [
            (&read.group, group, "groupId"),
            (&read.artifact, artifact, "artifactId"),
        ] {
            if let Some(declared) = declared
                && declared != expected
            {
                return Err(invalid(format!(
                    "the maven-metadata.xml of {key} declares the {what} {declared}"
                )));
            }
        }
        // Maven's order is not total: a sort that never fails, each version parsed once,
        // duplicates dropped by text.
        let mut seen = std::collections::HashSet::new();
        let parsed: Vec<MavenVersion> = read
            .versions
            .into_iter()
            .filter(|v| self.version_key(v).is_ok() && seen.insert(v.clone()))
            .map(|v| MavenVersion::parse(&v))
            .collect();
        let versions: Vec<String> = registry_core::tolerant_sort(parsed, &|a, b| a.compare(b))
            .into_iter()
            .map(|v| v.as_str().to_owned())
            .collect();
        let updated = Timestamp(read.last_updated_ms.unwrap_or(0));
        let newest = versions.last().cloned();
        let versions = versions
            .into_iter()
            .map(|version| {
                let published = match Some(&version) == newest.as_ref() {
                    true => updated,
                    false => Timestamp(0),
                };
                PackageVersion {
                    version,
                    status: VersionStatus::Default,
                    metadata: "{}".to_owned(),
                    files: Vec::new(),
                    created_at: published,
                    updated_at: published,
                }
            })
            .collect();
        Ok(UpstreamPackage {
            package: Package {
                name: key.to_owned(),
                display_name: key.to_owned(),
                versions,
                tags: Default::default(),
                created_at: Timestamp(0),
                updated_at: updated,
                revision: String::new(),
            },
            files: Vec::new(),
            deferred: Vec::new(),
        })
    }

    fn path_file(&self, key: &str, version: &str, file: &str) -> Option<PathFile> {
        let (_, artifact) = key.split_once(':')?;
        let named = parse_file_name(file, artifact, version).ok()?;
        if version.ends_with("-SNAPSHOT") && named.build.is_none() {
            return None;
        }
        let path = format!("{}/{version}/{file}", artifact_dir(key)?);
        let checksums = [
            (DigestAlgorithm::Sha512, "sha512"),
            (DigestAlgorithm::Sha256, "sha256"),
            (DigestAlgorithm::Sha1, "sha1"),
        ]
        .into_iter()
        .map(|(algorithm, extension)| (algorithm, format!("{path}.{extension}")))
        .collect();
        Some(PathFile { path, checksums })
    }
}

#[cfg(test)]
mod tests {
    use registry_core::UpstreamFormat as _;

    use super::*;

    #[test]
    fn metadata_gives_versions_in_order_and_the_newest_its_time() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<metadata>
  <groupId>com.example</groupId>
  <artifactId>hello</artifactId>
  <versioning>
    <latest>1.10</latest><release>1.10</release>
    <versions><version>1.10</version><version>1.2</version><version>bad/version</version><version>1.2</version></versions>
    <lastUpdated>20261130080000</lastUpdated>
  </versioning>
</metadata>"#;
        let read = Maven
            .parse_metadata("com.example:hello", xml, "http://up")
            .unwrap();
        let versions: Vec<(&str, i64)> = read
            .package
            .versions
            .iter()
            .map(|v| (v.version.as_str(), v.created_at.0))
            .collect();
        assert_eq!(versions, [("1.2", 0), ("1.10", 1_796_025_600_000)]);
        assert_eq!(
            Maven.metadata_path("com.example:hello"),
            "com/example/hello/maven-metadata.xml"
        );
        let other = Maven.parse_metadata("com.example:other", xml, "http://up");
        assert!(other.is_err(), "another artifact's document");
        assert!(Maven.parse_metadata("a:b", b"<project/>", "x").is_err());
    }

    #[test]
    fn files_are_addressed_by_path_with_their_checksum_files() {
        let file = Maven
            .path_file("com.example:hello", "1.0", "hello-1.0-sources.jar")
            .unwrap();
        assert_eq!(file.path, "com/example/hello/1.0/hello-1.0-sources.jar");
        assert_eq!(
            file.checksums[0],
            (
                DigestAlgorithm::Sha512,
                "com/example/hello/1.0/hello-1.0-sources.jar.sha512".to_owned()
            )
        );
        assert!(
            Maven
                .path_file("com.example:hello", "1.0", "other-1.0.jar")
                .is_none()
        );
        assert!(
            Maven
                .path_file(
                    "com.example:hello",
                    "1.0-SNAPSHOT",
                    "hello-1.0-SNAPSHOT.jar"
                )
                .is_none(),
            "a SNAPSHOT's file without a build changes upstream"
        );
        assert!(
            Maven
                .path_file(
                    "com.example:hello",
                    "1.0-SNAPSHOT",
                    "hello-1.0-20261130.080000-1.jar"
                )
                .is_some()
        );
    }
}
