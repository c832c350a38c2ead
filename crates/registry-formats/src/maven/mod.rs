//! Maven: the repository layout's paths and Maven's version order.
//!
//! - [`parse_path`] reads a path under a repository: an artifact file
//!   (`group/as/path/artifact/version/artifact-version[-classifier].ext`, a SNAPSHOT's
//!   timestamped builds included), a checksum of one (`.md5`, `.sha1`, `.sha256`, `.sha512`), or
//!   a `maven-metadata.xml` (artifact level, or a SNAPSHOT version's) and its checksums;
//! - [`version`]: [`MavenVersion`], Maven's `ComparableVersion` order;
//! - [`metadata`]: the coordinates a pom declares, and the `maven-metadata.xml` documents
//!   (artifact level, SNAPSHOT version level) rebuilt from what is stored.

pub mod metadata;
mod upstream;
pub mod version;

use registry_core::{Error, Result};

pub use version::MavenVersion;

fn invalid(reason: impl Into<String>) -> Error {
    Error::PackageInvalid {
        reason: reason.into(),
    }
}

/// The longest path segment accepted.
const MAX_SEGMENT: usize = 200;

/// A checksum Maven reads beside a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// `.md5`
    Md5,
    /// `.sha1`
    Sha1,
    /// `.sha256`
    Sha256,
    /// `.sha512`
    Sha512,
}

impl Checksum {
    /// Every checksum, in the order clients try them.
    pub const ALL: [Checksum; 4] = [
        Checksum::Sha1,
        Checksum::Md5,
        Checksum::Sha256,
        Checksum::Sha512,
    ];

    /// The file-name suffix, without its dot.
    pub const fn extension(self) -> &'static str {
        match self {
            Checksum::Md5 => "md5",
            Checksum::Sha1 => "sha1",
            Checksum::Sha256 => "sha256",
            Checksum::Sha512 => "sha512",
        }
    }

    fn strip(name: &str) -> (&str, Option<Checksum>) {
        for checksum in Checksum::ALL {
            if let Some(base) = name
                .strip_suffix(checksum.extension())
                .and_then(|b| b.strip_suffix('.'))
            {
                return (base, Some(checksum));
            }
        }
        (name, None)
    }
}

/// A SNAPSHOT's timestamped build, as its file names carry it (`20261123.220931-2`). Builds
/// order by number first: deploys number them one after the other, while a timestamp is only
/// what the deploying client's clock said.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotBuild {
    /// The build number, from 1 (written without leading zeros).
    pub number: u32,
    /// `yyyyMMdd.HHmmss`, UTC.
    pub timestamp: String,
}

/// An artifact file's name, read against its coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactFile {
    /// The whole file name (without a checksum suffix).
    pub name: String,
    /// The timestamped build it belongs to, for a SNAPSHOT file named by its build.
    pub build: Option<SnapshotBuild>,
    /// The classifier (`sources`, `javadoc`, …).
    pub classifier: Option<String>,
    /// The extension (`jar`, `pom`, `tar.gz`, `jar.asc`).
    pub extension: String,
}

/// What a path under a Maven repository names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MavenPath {
    /// An artifact file (or one of its checksums).
    File {
        /// `com.example` for `com/example/…`.
        group: String,
        /// The artifact id.
        artifact: String,
        /// The version directory (`1.0`, `1.1-SNAPSHOT`).
        version: String,
        /// The file.
        file: ArtifactFile,
        /// Set when the path names the file's checksum.
        checksum: Option<Checksum>,
    },
    /// A `maven-metadata.xml` (or one of its checksums): of an artifact, or of a SNAPSHOT version.
    Metadata {
        /// The group.
        group: String,
        /// The artifact id.
        artifact: String,
        /// The SNAPSHOT version, for version-level metadata.
        version: Option<String>,
        /// Set when the path names the metadata's checksum.
        checksum: Option<Checksum>,
    },
}

/// The name of the metadata file.
pub const METADATA: &str = "maven-metadata.xml";

/// Checks one path segment: 1 to 200 of `A-Z a-z 0-9 . _ - +`, not `.` or `..`.
fn check_segment(segment: &str, what: &str) -> Result<()> {
    let valid = !segment.is_empty()
        && segment.len() <= MAX_SEGMENT
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {segment:?} is not valid: use 1 to {MAX_SEGMENT} letters, digits, '.', '_', '-' or '+'"
        )))
    }
}

/// Checks a group's path segments: no dots inside one (`com/example`, never `com.example`, so
/// one group has one path).
fn check_group(segments: &[&str]) -> Result<()> {
    for segment in segments {
        check_segment(segment, "group segment")?;
        if segment.contains('.') {
            return Err(invalid(format!(
                "the group segment {segment:?} holds a '.': a group's dots are path separators"
            )));
        }
    }
    Ok(())
}

/// Checks a version: a segment that starts with a letter or digit and is more than
/// `SNAPSHOT` alone.
fn check_version(version: &str) -> Result<()> {
    check_segment(version, "version")?;
    if !version.starts_with(|c: char| c.is_ascii_alphanumeric())
        || version.eq_ignore_ascii_case("SNAPSHOT")
    {
        return Err(invalid(format!(
            "{version:?} is not a version: start with a letter or digit"
        )));
    }
    Ok(())
}

/// The longest `group:artifact` accepted.
pub const MAX_PACKAGE_NAME: usize = 255;

/// Reads a version directory path (`group/as/path/artifact/version`), for deleting a version.
pub fn parse_version_dir(path: &str) -> Result<(String, String, String)> {
    let segments: Vec<&str> = path.split('/').collect();
    let [group @ .., artifact, version] = segments.as_slice() else {
        return Err(invalid(format!(
            "{path}: use group/as/path/artifact/version"
        )));
    };
    if group.is_empty() {
        return Err(invalid(format!("{path}: the group is missing")));
    }
    check_group(group)?;
    check_segment(artifact, "artifact id")?;
    check_version(version)?;
    Ok((
        group.join("."),
        (*artifact).to_owned(),
        (*version).to_owned(),
    ))
}

/// Reads a path under a repository (no leading `/`).
///
/// Errors ([`Error::PackageInvalid`]): a path too short for the layout, a bad segment, or a file
/// name that does not start with `artifact-version` (or, in a SNAPSHOT directory,
/// `artifact-base-timestamp-build`).
pub fn parse_path(path: &str) -> Result<MavenPath> {
    let segments: Vec<&str> = path.split('/').collect();
    let Some((&file, dirs)) = segments.split_last() else {
        return Err(invalid("an empty path"));
    };
    let (base, checksum) = Checksum::strip(file);
    if base == METADATA {
        let snapshot = dirs.last().is_some_and(|v| v.ends_with("-SNAPSHOT"));
        let (group, artifact, version) = match (snapshot, dirs) {
            (true, [group @ .., artifact, version]) if !group.is_empty() => {
                (group, *artifact, Some((*version).to_owned()))
            }
            (false, [group @ .., artifact]) if !group.is_empty() => (group, *artifact, None),
            _ => {
                return Err(invalid(format!(
                    "{path}: maven-metadata.xml belongs under group/artifact[/version-SNAPSHOT]"
                )));
            }
        };
        check_group(group)?;
        check_segment(artifact, "artifact id")?;
        if let Some(version) = &version {
            check_version(version)?;
        }
        return Ok(MavenPath::Metadata {
            group: group.join("."),
            artifact: artifact.to_owned(),
            version,
            checksum,
        });
    }
    let [group @ .., artifact, version] = dirs else {
        return Err(invalid(format!(
            "{path}: use group/as/path/artifact/version/artifact-version[-classifier].extension"
        )));
    };
    if group.is_empty() {
        return Err(invalid(format!("{path}: the group is missing")));
    }
    check_group(group)?;
    check_segment(artifact, "artifact id")?;
    check_version(version)?;
    check_segment(base, "file name")?;
    let file = parse_file_name(base, artifact, version)?;
    Ok(MavenPath::File {
        group: group.join("."),
        artifact: (*artifact).to_owned(),
        version: (*version).to_owned(),
        file,
        checksum,
    })
}

/// Reads `artifact-version[-classifier].extension` (a SNAPSHOT's file may name its build in
/// place of `-SNAPSHOT`): how [`parse_path`] reads a file name, and how stored files' names are
/// read back.
pub fn parse_file_name(name: &str, artifact: &str, version: &str) -> Result<ArtifactFile> {
    let wrong = || {
        invalid(format!(
            "the file {name} is not named {artifact}-{version}[-classifier].extension"
        ))
    };
    let rest = name
        .strip_prefix(artifact)
        .and_then(|r| r.strip_prefix('-'))
        .ok_or_else(wrong)?;
    let (rest, build) = match rest.strip_prefix(version) {
        Some(rest) => (rest, None),
        None => {
            let base = version.strip_suffix("-SNAPSHOT").ok_or_else(wrong)?;
            let rest = rest
                .strip_prefix(base)
                .and_then(|r| r.strip_prefix('-'))
                .ok_or_else(wrong)?;
            let (build, rest) = snapshot_build(rest).ok_or_else(wrong)?;
            (rest, Some(build))
        }
    };
    let (classifier, extension) = if let Some(extension) = rest.strip_prefix('.') {
        (None, extension)
    } else if let Some(rest) = rest.strip_prefix('-') {
        let (classifier, extension) = rest.split_once('.').ok_or_else(wrong)?;
        (Some(classifier.to_owned()), extension)
    } else {
        return Err(wrong());
    };
    if extension.is_empty()
        || extension.starts_with('.')
        || extension.ends_with('.')
        || classifier.as_deref() == Some("")
    {
        return Err(wrong());
    }
    Ok(ArtifactFile {
        name: name.to_owned(),
        build,
        classifier,
        extension: extension.to_owned(),
    })
}

/// Reads `yyyyMMdd.HHmmss-N` at the start of `text`; answers the build and what follows.
fn snapshot_build(text: &str) -> Option<(SnapshotBuild, &str)> {
    let timestamp = text.get(..15)?;
    let (date, time) = timestamp.split_once('.')?;
    if date.len() != 8
        || time.len() != 6
        || !date.bytes().chain(time.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let field = |text: &str, at: usize| text[at..at + 2].parse::<u32>().ok();
    let (month, day) = (field(date, 4)?, field(date, 6)?);
    let (hour, minute, second) = (field(time, 0)?, field(time, 2)?, field(time, 4)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let rest = text[15..].strip_prefix('-')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    // One spelling per build: no leading zeros.
    if rest.starts_with('0') {
        return None;
    }
    // mvn reads build numbers as a Java int: a larger one it cannot follow.
    let number: u32 = rest[..digits]
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= i32::MAX as u32)?;
    Some((
        SnapshotBuild {
            timestamp: timestamp.to_owned(),
            number,
        },
        &rest[digits..],
    ))
}

impl crate::pages::FormatPages for Maven {
    /// `name` is `group:artifact`.
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        Some(format!(
            "mvn dependency:get -Dartifact={name}:{version} -DremoteRepositories={registry}/maven/{repository}/"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> (String, String, String, ArtifactFile, Option<Checksum>) {
        match parse_path(path).unwrap() {
            MavenPath::File {
                group,
                artifact,
                version,
                file,
                checksum,
            } => (group, artifact, version, file, checksum),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn artifact_files_are_read_against_their_coordinates() {
        let (group, artifact, version, f, checksum) =
            file("com/example/hello/1.0.0/hello-1.0.0.jar");
        assert_eq!(
            (group.as_str(), artifact.as_str(), version.as_str()),
            ("com.example", "hello", "1.0.0")
        );
        assert_eq!(
            (f.classifier, f.extension.as_str(), f.build, checksum),
            (None, "jar", None, None)
        );

        let (_, _, _, f, checksum) = file("com/example/hello/1.0.0/hello-1.0.0-sources.jar.sha1");
        assert_eq!(f.classifier.as_deref(), Some("sources"));
        assert_eq!(
            (f.extension.as_str(), checksum),
            ("jar", Some(Checksum::Sha1))
        );
        assert_eq!(f.name, "hello-1.0.0-sources.jar");

        let (_, _, _, f, _) = file("org/x/dist/2.1/dist-2.1-bin.tar.gz");
        assert_eq!(
            (f.classifier.as_deref(), f.extension.as_str()),
            (Some("bin"), "tar.gz")
        );
        let (_, _, _, f, _) = file("org/x/lib/2.1/lib-2.1.jar.asc");
        assert_eq!(f.extension, "jar.asc");

        let (_, _, version, f, checksum) =
            file("com/example/hello/1.1.0-SNAPSHOT/hello-1.1.0-20261123.220931-2-tests.jar.md5");
        assert_eq!(version, "1.1.0-SNAPSHOT");
        assert_eq!(
            f.build,
            Some(SnapshotBuild {
                number: 2,
                timestamp: "20261123.220931".into(),
            })
        );
        assert_eq!(
            (f.classifier.as_deref(), checksum),
            (Some("tests"), Some(Checksum::Md5))
        );
        let (_, _, _, f, _) = file("com/example/hello/1.1.0-SNAPSHOT/hello-1.1.0-SNAPSHOT.pom");
        assert_eq!((f.build, f.extension.as_str()), (None, "pom"));
    }

    #[test]
    fn metadata_is_found_at_both_levels() {
        assert_eq!(
            parse_path("com/example/hello/maven-metadata.xml").unwrap(),
            MavenPath::Metadata {
                group: "com.example".into(),
                artifact: "hello".into(),
                version: None,
                checksum: None
            }
        );
        assert_eq!(
            parse_path("com/example/hello/1.1.0-SNAPSHOT/maven-metadata.xml.sha512").unwrap(),
            MavenPath::Metadata {
                group: "com.example".into(),
                artifact: "hello".into(),
                version: Some("1.1.0-SNAPSHOT".into()),
                checksum: Some(Checksum::Sha512)
            }
        );
    }

    #[test]
    fn paths_that_break_the_layout_are_refused() {
        for path in [
            "",
            "hello-1.0.jar",
            "hello/1.0/hello-1.0.jar",
            "com/example/hello/1.0/other-1.0.jar",
            "com/example/hello/1.0/hello-1.1.jar",
            "com/example/hello/1.0/hello-1.0",
            "com/example/hello/1.0/hello-1.0-.jar",
            "com/example/hello/1.0/hello-1.0.",
            "com/../hello/1.0/hello-1.0.jar",
            "com//hello/1.0/hello-1.0.jar",
            "com/ex ample/hello/1.0/hello-1.0.jar",
            "com/example/hello/1.0-SNAPSHOT/hello-1.0-2026112.220931-1.jar",
            "com/example/hello/1.0-SNAPSHOT/hello-1.0-20261123.220931-0.jar",
            "com/example/hello/1.0-SNAPSHOT/hello-1.0-20261123.220931-01.jar",
            "com/example/hello/1.0-SNAPSHOT/hello-1.0-20261123.220931-2147483648.jar",
            "com/example/hello/1.0-SNAPSHOT/hello-1.0-99999999.999999-3.jar",
            "com/example/hello/1.0-SNAPSHOT/hello-1.0-20261323.220931-3.jar",
            "com.example/hello/1.0/hello-1.0.jar",
            "com/example/hello/-SNAPSHOT/hello--SNAPSHOT.jar",
            "com/example/hello/SNAPSHOT/hello-SNAPSHOT.jar",
            "maven-metadata.xml",
            "hello/maven-metadata.xml",
        ] {
            assert!(
                matches!(parse_path(path), Err(Error::PackageInvalid { .. })),
                "{path}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_path_is_read_or_refused(path in "[a-z0-9./_-]{0,80}") {
            let _ = parse_path(&path);
        }
    }
}

/// Maven's rules for the package service: a package is `group:artifact` (each part checked as
/// path segments are), versions are checked segments in Maven's order, files are added to a
/// version one by one, `-SNAPSHOT` versions take new builds whatever the repository's duplicate
/// settings, and every file is hashed with MD5, SHA-1 and SHA-512 (served as `.md5`, `.sha1`,
/// `.sha512`; `.sha256` is the blob's digest).
#[derive(Clone, Copy, Debug, Default)]
pub struct Maven;

/// The package name of an artifact: `group:artifact`.
pub fn package_name(group: &str, artifact: &str) -> String {
    format!("{group}:{artifact}")
}

impl registry_core::FormatRules for Maven {
    fn format(&self) -> registry_core::PackageFormat {
        registry_core::PackageFormat::Maven
    }

    fn package_key(&self, name: &str) -> Result<String> {
        if name.len() > MAX_PACKAGE_NAME {
            return Err(invalid(format!(
                "group:artifact is {} bytes; at most {MAX_PACKAGE_NAME} are accepted",
                name.len()
            )));
        }
        let (group, artifact) = name
            .split_once(':')
            .ok_or_else(|| invalid(format!("{name:?} is not group:artifact")))?;
        check_group(&group.split('.').collect::<Vec<_>>())?;
        check_segment(artifact, "artifact id")?;
        Ok(name.to_owned())
    }

    fn version_key(&self, version: &str) -> Result<String> {
        check_version(version).map(|()| version.to_owned())
    }

    fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        version::compare(a, b)
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::AddFiles
    }

    fn replaceable(&self, version: &str) -> bool {
        version.ends_with("-SNAPSHOT")
    }

    fn is_prerelease(&self, version: &str) -> bool {
        version.ends_with("-SNAPSHOT")
    }

    fn upstream(&self) -> Option<&dyn registry_core::UpstreamFormat> {
        Some(self)
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests {
            md5: true,
            sha1: true,
            sha512: true,
            ..registry_core::ExtraDigests::default()
        }
    }
}
