//! What Maven reads and writes besides artifacts: the coordinates a pom declares, and the
//! `maven-metadata.xml` documents the registry owns and rebuilds from what is stored (so
//! concurrent deploys never lose a version and a client's upload of the file changes nothing).

use std::collections::BTreeMap;

use quick_xml::escape::escape;
use quick_xml::events::Event;
use registry_core::Result;

use super::version::MavenVersion;
use super::{SnapshotBuild, invalid};

/// The largest pom read.
pub const MAX_POM_SIZE: usize = 4 << 20;

/// The coordinates a pom declares (a missing group or version taken from its `<parent>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PomCoordinates {
    /// `groupId`.
    pub group: String,
    /// `artifactId`.
    pub artifact: String,
    /// `version`.
    pub version: String,
    /// `packaging` (`jar` when absent).
    pub packaging: String,
}

/// Walks an XML document of one root element, handing every element's path (local names,
/// the root first) and text (text, CDATA and character references together, trimmed) to
/// `element` as it closes. `what` names the document in errors.
///
/// Errors ([`registry_core::Error::PackageInvalid`]): not XML, nested over 64 deep, an
/// undefined entity, an empty root, content after the root, no complete root — or what
/// `element` refuses.
fn walk_elements(
    xml: &[u8],
    what: &str,
    mut element: impl FnMut(&[&str], &str) -> Result<()>,
) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| invalid(format!("{what} is not XML: {e}"));
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut closed = false;
    let mut buffer = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buffer).map_err(|e| bad(&e))?;
        match event {
            Event::Start(start) => {
                if path.len() > 64 {
                    return Err(invalid(format!("{what} nests too deeply")));
                }
                if closed {
                    return Err(invalid(format!(
                        "{what} has content after its root element"
                    )));
                }
                path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Text(part) => text.push_str(&part.decode().map_err(|e| bad(&e))?),
            Event::CData(part) => text.push_str(&part.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => c,
                    None => match reference.decode().map_err(|e| bad(&e))?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(invalid(format!(
                                "{what} refers to the undefined entity &{other};"
                            )));
                        }
                    },
                };
                text.push(resolved);
            }
            Event::End(_) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                element(&names, text.trim())?;
                text.clear();
                if names.len() == 1 {
                    closed = true;
                }
                path.pop();
            }
            Event::Empty(_) if path.is_empty() => {
                return Err(invalid(format!("{what}'s root element is empty")));
            }
            Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    if !closed {
        return Err(invalid(format!("{what} has no complete root element")));
    }
    Ok(())
}

/// Reads the coordinates of a pom: `<project>`'s own `groupId`, `artifactId`, `version` and
/// `packaging`, the group and version inherited from `<parent>` when absent.
///
/// Errors ([`registry_core::Error::PackageInvalid`]): over [`MAX_POM_SIZE`], not XML, no
/// `<project>`, or a coordinate missing.
pub fn pom_coordinates(pom: &[u8]) -> Result<PomCoordinates> {
    if pom.len() > MAX_POM_SIZE {
        return Err(invalid(format!("the pom is over {MAX_POM_SIZE} bytes")));
    }
    let mut own: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut parent: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut project = false;
    walk_elements(pom, "the pom", |names, text| {
        project |= names == ["project"];
        let (target, name) = match names {
            ["project", name] => (Some(&mut own), *name),
            ["project", "parent", name] => (Some(&mut parent), *name),
            _ => (None, ""),
        };
        let key = match name {
            "groupId" => Some("groupId"),
            "artifactId" => Some("artifactId"),
            "version" => Some("version"),
            "packaging" => Some("packaging"),
            _ => None,
        };
        if let (Some(target), Some(key)) = (target, key)
            && target.insert(key, text.to_owned()).is_some()
        {
            return Err(invalid(format!("the pom declares its {key} twice")));
        }
        Ok(())
    })?;
    if !project {
        return Err(invalid("the pom has no complete <project>"));
    }
    let take = |key: &'static str, inherit: bool| {
        own.get(key)
            .or_else(|| inherit.then(|| parent.get(key)).flatten())
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| invalid(format!("the pom declares no {key}")))
    };
    Ok(PomCoordinates {
        group: take("groupId", true)?,
        artifact: take("artifactId", false)?,
        version: take("version", true)?,
        packaging: own
            .get("packaging")
            .cloned()
            .unwrap_or_else(|| "jar".to_owned()),
    })
}

/// What an artifact-level `maven-metadata.xml` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactMetadata {
    /// `groupId`, when given.
    pub group: Option<String>,
    /// `artifactId`, when given.
    pub artifact: Option<String>,
    /// `versioning/versions/version`, in document order.
    pub versions: Vec<String>,
    /// `versioning/lastUpdated` (`yyyyMMddHHmmss`, UTC) in milliseconds since the epoch.
    pub last_updated_ms: Option<i64>,
}

/// The most versions an artifact-level `maven-metadata.xml` may list.
pub const MAX_LISTED_VERSIONS: usize = 100_000;

/// Reads an artifact-level `maven-metadata.xml` (as an upstream repository serves it).
///
/// Errors ([`registry_core::Error::PackageInvalid`]): not XML, not `<metadata>`, or more than
/// [`MAX_LISTED_VERSIONS`] versions.
pub fn read_artifact_metadata(xml: &[u8]) -> Result<ArtifactMetadata> {
    let mut read = ArtifactMetadata::default();
    let mut root = None;
    walk_elements(xml, "maven-metadata.xml", |names, text| {
        root.get_or_insert_with(|| names[0].to_owned());
        match names {
            ["metadata", "groupId"] => read.group = Some(text.to_owned()),
            ["metadata", "artifactId"] => read.artifact = Some(text.to_owned()),
            ["metadata", "versioning", "versions", "version"] => {
                if read.versions.len() >= MAX_LISTED_VERSIONS {
                    return Err(invalid(format!(
                        "maven-metadata.xml lists over {MAX_LISTED_VERSIONS} versions"
                    )));
                }
                read.versions.push(text.to_owned());
            }
            ["metadata", "versioning", "lastUpdated"] => {
                read.last_updated_ms = parse_last_updated(text);
            }
            _ => {}
        }
        Ok(())
    })?;
    if root.as_deref() != Some("metadata") {
        return Err(invalid("maven-metadata.xml is not a <metadata> document"));
    }
    Ok(read)
}

/// `yyyyMMddHHmmss` (UTC) in milliseconds since the epoch.
fn parse_last_updated(text: &str) -> Option<i64> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[..4],
        &text[4..6],
        &text[6..8],
        &text[8..10],
        &text[10..12],
        &text[12..14]
    );
    crate::rfc3339(&rfc3339).map(|t| t.0)
}

/// `lastUpdated`'s form, `yyyyMMddHHmmss` (UTC), of a time in milliseconds since the epoch.
pub fn last_updated(ms: i64) -> String {
    crate::npm::iso_time(ms)
        .bytes()
        .take(19)
        .filter(u8::is_ascii_digit)
        .map(char::from)
        .collect()
}

/// The artifact-level `maven-metadata.xml` of versions given lowest first (the package
/// service's order): `latest` the last, `release` the last that is not a SNAPSHOT.
pub fn artifact_metadata(
    group: &str,
    artifact: &str,
    versions: &[String],
    updated_ms: i64,
) -> String {
    let sorted: Vec<MavenVersion> = versions.iter().map(|v| MavenVersion::parse(v)).collect();
    let latest = sorted.last();
    let release = sorted.iter().rev().find(|v| !v.is_snapshot());
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata>\n");
    xml.push_str(&format!("  <groupId>{}</groupId>\n", escape(group)));
    xml.push_str(&format!(
        "  <artifactId>{}</artifactId>\n",
        escape(artifact)
    ));
    xml.push_str("  <versioning>\n");
    if let Some(latest) = latest {
        xml.push_str(&format!(
            "    <latest>{}</latest>\n",
            escape(latest.as_str())
        ));
    }
    if let Some(release) = release {
        xml.push_str(&format!(
            "    <release>{}</release>\n",
            escape(release.as_str())
        ));
    }
    xml.push_str("    <versions>\n");
    for version in &sorted {
        xml.push_str(&format!(
            "      <version>{}</version>\n",
            escape(version.as_str())
        ));
    }
    xml.push_str("    </versions>\n");
    xml.push_str(&format!(
        "    <lastUpdated>{}</lastUpdated>\n  </versioning>\n</metadata>\n",
        last_updated(updated_ms)
    ));
    xml
}

/// One stored file of a SNAPSHOT version, as the version-level metadata lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The timestamped build.
    pub build: SnapshotBuild,
    /// Its classifier.
    pub classifier: Option<String>,
    /// Its extension.
    pub extension: String,
    /// When it was stored, in milliseconds since the epoch.
    pub updated_ms: i64,
}

/// The version-level `maven-metadata.xml` of a SNAPSHOT: the newest build, and for each
/// classifier and extension the newest file — what clients resolve `-SNAPSHOT` to.
pub fn snapshot_metadata(
    group: &str,
    artifact: &str,
    version: &str,
    files: &[SnapshotFile],
    updated_ms: i64,
) -> String {
    let base = version.strip_suffix("-SNAPSHOT").unwrap_or(version);
    let mut newest: BTreeMap<(Option<&str>, &str), &SnapshotFile> = BTreeMap::new();
    for file in files {
        let key = (file.classifier.as_deref(), file.extension.as_str());
        if newest.get(&key).is_none_or(|seen| seen.build < file.build) {
            newest.insert(key, file);
        }
    }
    let latest = files.iter().map(|f| &f.build).max();
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata modelVersion=\"1.1.0\">\n",
    );
    xml.push_str(&format!("  <groupId>{}</groupId>\n", escape(group)));
    xml.push_str(&format!(
        "  <artifactId>{}</artifactId>\n",
        escape(artifact)
    ));
    xml.push_str(&format!("  <version>{}</version>\n", escape(version)));
    xml.push_str("  <versioning>\n");
    if let Some(latest) = latest {
        xml.push_str(&format!(
            "    <snapshot>\n      <timestamp>{}</timestamp>\n      <buildNumber>{}</buildNumber>\n    </snapshot>\n",
            latest.timestamp, latest.number
        ));
    }
    xml.push_str(&format!(
        "    <lastUpdated>{}</lastUpdated>\n",
        last_updated(updated_ms)
    ));
    xml.push_str("    <snapshotVersions>\n");
    for ((classifier, extension), file) in &newest {
        xml.push_str("      <snapshotVersion>\n");
        if let Some(classifier) = classifier {
            xml.push_str(&format!(
                "        <classifier>{}</classifier>\n",
                escape(*classifier)
            ));
        }
        xml.push_str(&format!(
            "        <extension>{}</extension>\n",
            escape(*extension)
        ));
        xml.push_str(&format!(
            "        <value>{}-{}-{}</value>\n",
            escape(base),
            file.build.timestamp,
            file.build.number
        ));
        xml.push_str(&format!(
            "        <updated>{}</updated>\n      </snapshotVersion>\n",
            last_updated(file.updated_ms)
        ));
    }
    xml.push_str("    </snapshotVersions>\n  </versioning>\n</metadata>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pom_coordinates_are_read_with_inheritance() {
        let pom = br#"<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <parent><groupId>com.example</groupId><artifactId>parent</artifactId><version>2.0</version></parent>
  <artifactId>child</artifactId>
  <packaging>pom</packaging>
  <dependencies><dependency><groupId>other</groupId><artifactId>dep</artifactId><version>9</version></dependency></dependencies>
</project>"#;
        assert_eq!(
            pom_coordinates(pom).unwrap(),
            PomCoordinates {
                group: "com.example".into(),
                artifact: "child".into(),
                version: "2.0".into(),
                packaging: "pom".into(),
            }
        );
        let own = br#"<project><groupId>g</groupId><artifactId>a</artifactId><version>1.0</version></project>"#;
        assert_eq!(pom_coordinates(own).unwrap().packaging, "jar");
        // Comments, character references and CDATA are part of a value.
        let spelled = br#"<project><groupId>g</groupId><artifactId>a</artifactId><version>1<!-- c -->.&#56;<![CDATA[.1]]></version></project>"#;
        assert_eq!(pom_coordinates(spelled).unwrap().version, "1.8.1");
        for bad in [
            &b"not xml <"[..],
            b"<project><groupId>g</groupId><version>1</version></project>",
            b"<project><artifactId>a</artifactId></project>",
            b"",
            b"<project><groupId>g</groupId><artifactId>a</artifactId><version>1.14</version>",
            b"<project><groupId>g</groupId><artifactId>a</artifactId><version>9.9</version><version>1.5</version></project>",
            b"<project><groupId>g</groupId><artifactId>a</artifactId><version>&foo;</version></project>",
        ] {
            assert!(
                pom_coordinates(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn artifact_metadata_lists_versions_and_names_latest_and_release() {
        let versions = ["1.0-alpha-1", "1.9", "1.10", "2.0-SNAPSHOT"].map(String::from);
        let xml = artifact_metadata("com.example", "hello", &versions, 1_795_000_000_000);
        assert!(xml.contains("<latest>2.0-SNAPSHOT</latest>"), "{xml}");
        assert!(xml.contains("<release>1.10</release>"), "{xml}");
        let order: Vec<&str> = xml
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("<version>")?
                    .strip_suffix("</version>")
            })
            .collect();
        assert_eq!(order, ["1.0-alpha-1", "1.9", "1.10", "2.0-SNAPSHOT"]);
        assert!(xml.contains("<lastUpdated>20261118"), "{xml}");
    }

    #[test]
    fn snapshot_metadata_names_the_newest_build_of_each_file() {
        let file = |ts: &str, n, classifier: Option<&str>, extension: &str| SnapshotFile {
            build: SnapshotBuild {
                timestamp: ts.into(),
                number: n,
            },
            classifier: classifier.map(str::to_owned),
            extension: extension.into(),
            updated_ms: 0,
        };
        let files = [
            file("20261123.220931", 1, None, "jar"),
            file("20261123.220931", 1, None, "pom"),
            file("20261124.101010", 2, None, "jar"),
            file("20261124.101010", 2, None, "pom"),
            file("20261123.220931", 1, Some("sources"), "jar"),
        ];
        let xml = snapshot_metadata("g", "a", "1.1.0-SNAPSHOT", &files, 0);
        assert!(
            xml.contains("<timestamp>20261124.101010</timestamp>"),
            "{xml}"
        );
        assert!(xml.contains("<buildNumber>2</buildNumber>"), "{xml}");
        assert!(
            xml.contains("<value>1.1.0-20261124.101010-2</value>"),
            "{xml}"
        );
        assert!(xml.contains("<classifier>sources</classifier>"), "{xml}");
        assert!(
            xml.contains("<value>1.1.0-20261123.220931-1</value>"),
            "{xml}"
        );
        assert_eq!(xml.matches("<snapshotVersion>").count(), 3, "{xml}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_as_a_pom(bytes in proptest::collection::vec(0u8..=255, 0..300)) {
            let _ = pom_coordinates(&bytes);
        }
    }
}
