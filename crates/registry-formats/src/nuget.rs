//! NuGet: package ids and versions as NuGet reads, normalizes and orders them (no crate
//! implements NuGet's rules), a package's `.nuspec`, and [`Nuget`], the format's rules for the
//! package service. The format is not served yet.
//!
//! A version is `Major[.Minor[.Patch[.Revision]]][-Prerelease][+Metadata]`: numbers without
//! sign, at most four; prerelease labels of letters, digits and `-`, separated by `.`. Its
//! **normal form** (what URLs and the flat container use) drops leading zeros, writes at least
//! three parts and the fourth only when it is not zero, keeps the prerelease and drops the
//! metadata: `1.01` → `1.1.0`, `1.0.0.0` → `1.0.0`, `1.0.0.1` → `1.0.0.1`, `2.0-RC.1+sha.5` →
//! `2.0.0-RC.1`. Versions **order** by their numbers, then a release after its prereleases,
//! prerelease labels one by one (numeric ones numerically and before alphanumeric ones, those
//! compared case-insensitively, more labels after fewer); metadata never counts.

use std::cmp::Ordering;
use std::fmt;

use registry_core::{Error, Result};

fn invalid(reason: impl Into<String>) -> Error {
    Error::PackageInvalid {
        reason: reason.into(),
    }
}

/// The longest package id NuGet accepts.
pub const MAX_ID_LEN: usize = 100;

/// Checks a package id: 1 to 100 of letters, digits, `.`, `_` and `-`, starting with a letter,
/// digit or `_`, with no `..`. Ids compare case-insensitively; [`lower_id`] is the stored form.
pub fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !id.ends_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{id:?} is not a valid package id: use 1 to {MAX_ID_LEN} letters, digits, '.', '_' \
             or '-', starting with a letter, digit or '_'"
        )))
    }
}

/// The form an id is stored and addressed under (the flat container's): lowercase.
pub fn lower_id(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// One prerelease label.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Label {
    /// Digits only, without leading zeros.
    Number(String),
    /// Anything else, as written.
    Text(String),
}

impl Label {
    fn compare(&self, other: &Label) -> Ordering {
        match (self, other) {
            (Label::Number(a), Label::Number(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Label::Number(_), Label::Text(_)) => Ordering::Less,
            (Label::Text(_), Label::Number(_)) => Ordering::Greater,
            (Label::Text(a), Label::Text(b)) => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
        }
    }
}

/// A NuGet version.
#[derive(Clone)]
pub struct NuGetVersion {
    parts: [u64; 4],
    prerelease: Vec<Label>,
    metadata: Option<String>,
    original: String,
}

impl NuGetVersion {
    /// Parses a version as NuGet accepts it (surrounding spaces are not).
    ///
    /// Errors ([`Error::PackageInvalid`]): anything else, naming the part that is wrong.
    pub fn parse(text: &str) -> Result<NuGetVersion> {
        let wrong = |why: &str| invalid(format!("{text:?} is not a NuGet version: {why}"));
        if text.is_empty() || text.len() > 256 {
            return Err(wrong("it must be 1 to 256 characters"));
        }
        let (rest, metadata) = match text.split_once('+') {
            Some((rest, metadata)) => {
                if metadata.is_empty()
                    || metadata.split('.').any(|l| {
                        l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                {
                    return Err(wrong("bad build metadata"));
                }
                (rest, Some(metadata.to_owned()))
            }
            None => (text, None),
        };
        let (numbers, prerelease) = match rest.split_once('-') {
            Some((numbers, prerelease)) => (numbers, Some(prerelease)),
            None => (rest, None),
        };
        let pieces: Vec<&str> = numbers.split('.').collect();
        if pieces.len() > 4 {
            return Err(wrong("at most four numbers"));
        }
        let mut parts = [0u64; 4];
        for (slot, piece) in parts.iter_mut().zip(&pieces) {
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(wrong("each number is digits only"));
            }
            *slot = piece.parse().map_err(|_| wrong("a number is too large"))?;
        }
        let prerelease = match prerelease {
            None => Vec::new(),
            Some(labels) => labels
                .split('.')
                .map(|label| {
                    if label.is_empty()
                        || !label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        return Err(wrong("prerelease labels are letters, digits and '-'"));
                    }
                    Ok(if label.bytes().all(|b| b.is_ascii_digit()) {
                        let trimmed = label.trim_start_matches('0');
                        Label::Number(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
                    } else {
                        Label::Text(label.to_owned())
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(NuGetVersion {
            parts,
            prerelease,
            metadata,
            original: text.to_owned(),
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Whether it is a prerelease.
    pub fn is_prerelease(&self) -> bool {
        !self.prerelease.is_empty()
    }

    /// Whether it needs SemVer 2.0.0 to be read (dotted prerelease labels, or build metadata):
    /// clients that do not say `semVerLevel=2.0.0` are not shown such versions.
    pub fn is_semver2(&self) -> bool {
        self.prerelease.len() > 1 || self.metadata.is_some()
    }

    /// The normal form (see the module docs).
    pub fn normalized(&self) -> String {
        let [major, minor, patch, revision] = self.parts;
        let mut text = format!("{major}.{minor}.{patch}");
        if revision != 0 {
            text.push_str(&format!(".{revision}"));
        }
        if !self.prerelease.is_empty() {
            let labels: Vec<&str> = self
                .prerelease
                .iter()
                .map(|l| match l {
                    Label::Number(n) | Label::Text(n) => n.as_str(),
                })
                .collect();
            text.push('-');
            text.push_str(&labels.join("."));
        }
        text
    }

    /// The normal form, lowercase: what the flat container's paths use.
    pub fn lower_normalized(&self) -> String {
        self.normalized().to_ascii_lowercase()
    }
}

impl fmt::Debug for NuGetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NuGetVersion({:?})", self.original)
    }
}

impl fmt::Display for NuGetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl PartialEq for NuGetVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for NuGetVersion {}

impl PartialOrd for NuGetVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NuGetVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts.cmp(&other.parts).then_with(|| {
            match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.prerelease.iter().zip(&other.prerelease) {
                        let ordering = a.compare(b);
                        if ordering != Ordering::Equal {
                            return ordering;
                        }
                    }
                    self.prerelease.len().cmp(&other.prerelease.len())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_normalize_as_nuget_documents() {
        for (written, normal) in [
            ("1", "1.0.0"),
            ("1.00", "1.0.0"),
            ("1.01.1", "1.1.1"),
            ("1.00.0.1", "1.0.0.1"),
            ("1.0.0.0", "1.0.0"),
            ("1.0.01.0", "1.0.1"),
            ("1.0.7+r3456", "1.0.7"),
            ("2.0-RC.01+sha.5", "2.0.0-RC.1"),
            ("1.0.0-beta-2", "1.0.0-beta-2"),
        ] {
            assert_eq!(
                NuGetVersion::parse(written).unwrap().normalized(),
                normal,
                "{written}"
            );
        }
        assert_eq!(
            NuGetVersion::parse("2.0-RC.1").unwrap().lower_normalized(),
            "2.0.0-rc.1"
        );
        for bad in [
            "",
            "1.",
            ".1",
            "1..2",
            "1.2.3.4.5",
            "a.b",
            "1.0-",
            "1.0-beta..1",
            "1.0+",
            "1.0-b_1",
            "-1.0",
            "1.0 ",
            "99999999999999999999.0",
        ] {
            assert!(NuGetVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_order_as_nuget_orders_them() {
        let ordered = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-BETA",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.0.1",
            "1.0.1",
            "1.10",
            "2.0.0-1",
            "2.0.0-a",
            "2.0.0",
        ];
        for (i, low) in ordered.iter().enumerate() {
            for high in &ordered[i + 1..] {
                let (a, b) = (
                    NuGetVersion::parse(low).unwrap(),
                    NuGetVersion::parse(high).unwrap(),
                );
                assert_eq!(a.cmp(&b), Ordering::Less, "{low} < {high}");
            }
        }
        for (a, b) in [
            ("1.0", "1.0.0.0"),
            ("1.0.0-Beta", "1.0.0-beta"),
            ("1.0+a", "1.0+b"),
        ] {
            assert_eq!(
                NuGetVersion::parse(a).unwrap(),
                NuGetVersion::parse(b).unwrap()
            );
        }
        assert!(NuGetVersion::parse("1.0.0-rc.1").unwrap().is_semver2());
        assert!(NuGetVersion::parse("1.0.0+git").unwrap().is_semver2());
        assert!(!NuGetVersion::parse("1.0.0-rc1").unwrap().is_semver2());
    }

    #[test]
    fn ids_follow_nugets_rules() {
        for good in ["Newtonsoft.Json", "_private", "a", "My-Lib_2"] {
            check_id(good).unwrap();
        }
        for bad in [
            "",
            ".lead",
            "trail.",
            "a..b",
            "sp ace",
            "semi;colon",
            &"x".repeat(101),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(lower_id("Newtonsoft.Json"), "newtonsoft.json");
    }

    fn version() -> impl Strategy<Value = String> {
        proptest::string::string_regex(
            "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-[0-9A-Za-z-]{1,4}(\\.[0-9A-Za-z-]{1,4}){0,2})?(\\+[0-9a-z]{1,3})?",
        )
        .expect("a regex")
    }

    proptest! {
        #[test]
        fn the_order_is_total_and_normal_forms_keep_it(a in version(), b in version(), c in version()) {
            let (a, b, c) = (
                NuGetVersion::parse(&a).unwrap(),
                NuGetVersion::parse(&b).unwrap(),
                NuGetVersion::parse(&c).unwrap(),
            );
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
            // A normal form is a version equal to the one it came from, and its own normal form.
            let normal = NuGetVersion::parse(&a.normalized()).unwrap();
            prop_assert_eq!(&normal, &a);
            prop_assert_eq!(normal.normalized(), a.normalized());
        }

        #[test]
        fn any_text_is_read_or_refused(text in ".{0,40}") {
            let _ = NuGetVersion::parse(&text);
            let _ = check_id(&text);
        }
    }
}

/// The largest `.nuspec` read.
pub const MAX_NUSPEC_SIZE: u64 = 1 << 20;

/// A dependency a package declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The package id.
    pub id: String,
    /// The version range, as written (`[1.0,2.0)`, `1.0`), when given.
    pub range: Option<String>,
}

/// Dependencies for one target framework (or for all, without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyGroup {
    /// The target framework (`net6.0`), when the group names one.
    pub target_framework: Option<String>,
    /// The dependencies.
    pub dependencies: Vec<Dependency>,
}

/// What a package's `.nuspec` says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nuspec {
    /// The id, as written.
    pub id: String,
    /// The version, as written (checked with [`NuGetVersion::parse`]).
    pub version: String,
    /// `authors`.
    pub authors: String,
    /// `description`.
    pub description: String,
    /// `title`, when given.
    pub title: Option<String>,
    /// `summary`, when given.
    pub summary: Option<String>,
    /// `tags`, split on spaces.
    pub tags: Vec<String>,
    /// `projectUrl`, when given.
    pub project_url: Option<String>,
    /// The dependency groups (flat dependencies make one group without a framework).
    pub dependency_groups: Vec<DependencyGroup>,
}

/// Reads the `.nuspec` of a `.nupkg` (a zip, opened with [`crate::archive::open_zip`]): the one
/// `*.nuspec` at the archive's top level, at most [`MAX_NUSPEC_SIZE`] bytes. Answers the parsed
/// nuspec and its bytes.
///
/// Errors ([`Error::PackageInvalid`]): not a zip, no or several nuspecs, a bad nuspec.
pub fn read_nupkg(reader: impl std::io::Read + std::io::Seek) -> Result<(Nuspec, Vec<u8>)> {
    let mut archive =
        crate::archive::open_zip(reader, "the package", crate::archive::ZipLimits::default())?;
    let nuspecs: Vec<String> = archive
        .file_names()
        .filter(|name| !name.contains('/') && name.to_ascii_lowercase().ends_with(".nuspec"))
        .map(str::to_owned)
        .collect();
    let [name] = nuspecs.as_slice() else {
        return Err(invalid(format!(
            "the package must hold one .nuspec at its top level, not {}",
            nuspecs.len()
        )));
    };
    let bytes = crate::archive::read_zip_entry(&mut archive, name, "the package", MAX_NUSPEC_SIZE)?;
    Ok((parse_nuspec(&bytes)?, bytes))
}

/// Parses a `.nuspec` document.
///
/// Errors ([`Error::PackageInvalid`]): not XML, no `<package><metadata>`, a missing `id`,
/// `version`, `authors` or `description`, a bad id or version, a field given twice.
pub fn parse_nuspec(bytes: &[u8]) -> Result<Nuspec> {
    use quick_xml::events::Event;
    let bad = |e: &dyn fmt::Display| invalid(format!("the nuspec is not XML: {e}"));
    if bytes.len() as u64 > MAX_NUSPEC_SIZE {
        return Err(invalid(format!(
            "the nuspec is over {MAX_NUSPEC_SIZE} bytes"
        )));
    }
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut fields: std::collections::BTreeMap<String, String> = Default::default();
    let mut groups: Vec<DependencyGroup> = Vec::new();
    let mut closed = false;
    let mut buffer = Vec::new();
    let attribute =
        |element: &quick_xml::events::BytesStart<'_>, name: &str| -> Result<Option<String>> {
            for attribute in element.attributes() {
                let attribute = attribute.map_err(|e| bad(&e))?;
                if attribute.key.local_name().as_ref() == name.as_bytes() {
                    let value = attribute.unescape_value().map_err(|e| bad(&e))?;
                    return Ok(Some(value.into_owned()));
                }
            }
            Ok(None)
        };
    loop {
        let event = reader.read_event_into(&mut buffer).map_err(|e| bad(&e))?;
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e.clone()),
            _ => None,
        };
        if let Some(element) = element {
            if path.len() > 32 {
                return Err(invalid("the nuspec nests too deeply"));
            }
            let name = String::from_utf8_lossy(element.local_name().as_ref()).into_owned();
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            match (names.as_slice(), name.as_str()) {
                (["package", "metadata", "dependencies"], "group") => {
                    groups.push(DependencyGroup {
                        target_framework: attribute(&element, "targetFramework")?,
                        dependencies: Vec::new(),
                    });
                }
                (["package", "metadata", "dependencies", ..], "dependency") => {
                    let id = attribute(&element, "id")?
                        .ok_or_else(|| invalid("a dependency has no id"))?;
                    check_id(&id)?;
                    let dependency = Dependency {
                        id,
                        range: attribute(&element, "version")?,
                    };
                    if names.len() == 3 {
                        // A flat dependency: the group without a framework.
                        match groups.iter_mut().find(|g| g.target_framework.is_none()) {
                            Some(group) => group.dependencies.push(dependency),
                            None => groups.push(DependencyGroup {
                                target_framework: None,
                                dependencies: vec![dependency],
                            }),
                        }
                    } else if let Some(group) = groups.last_mut() {
                        group.dependencies.push(dependency);
                    }
                }
                _ => {}
            }
            if matches!(event, Event::Start(_)) {
                path.push(name);
                text.clear();
            }
        }
        match event {
            Event::Text(part) => text.push_str(&part.decode().map_err(|e| bad(&e))?),
            Event::CData(part) => text.push_str(&part.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(reference) => {
                match reference.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => text.push(c),
                    None => text.push(match reference.decode().map_err(|e| bad(&e))?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(invalid(format!(
                                "the nuspec refers to the undefined entity &{other};"
                            )));
                        }
                    }),
                }
            }
            Event::End(_) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                if let ["package", "metadata", field] = names.as_slice()
                    && fields
                        .insert((*field).to_owned(), text.trim().to_owned())
                        .is_some()
                    && *field != "dependencies"
                {
                    return Err(invalid(format!("the nuspec gives {field} twice")));
                }
                if names == ["package"] {
                    closed = true;
                }
                text.clear();
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    if !closed {
        return Err(invalid("the nuspec has no complete <package>"));
    }
    let required = |key: &str| {
        fields
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| invalid(format!("the nuspec has no {key}")))
    };
    let optional = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
    let id = required("id")?;
    check_id(&id)?;
    let version = required("version")?;
    NuGetVersion::parse(&version)?;
    Ok(Nuspec {
        id,
        version,
        authors: required("authors")?,
        description: required("description")?,
        title: optional("title"),
        summary: optional("summary"),
        tags: optional("tags")
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        project_url: optional("projectUrl"),
        dependency_groups: groups,
    })
}

/// NuGet's rules for the package service (the format is not served yet): ids stored
/// lowercase, versions under their lowercase normal form (so `1.0.0-Beta` and `1.0.0-beta`, one
/// version to NuGet, are one here; the version as written stays in the version's document),
/// NuGet's order, a whole version per push, SHA-512 computed (NuGet's package hash).
#[derive(Clone, Copy, Debug, Default)]
pub struct Nuget;

impl registry_core::FormatRules for Nuget {
    fn format(&self) -> registry_core::PackageFormat {
        registry_core::PackageFormat::Nuget
    }

    fn package_key(&self, name: &str) -> Result<String> {
        check_id(name).map(|()| lower_id(name))
    }

    fn version_key(&self, version: &str) -> Result<String> {
        NuGetVersion::parse(version).map(|v| v.lower_normalized())
    }

    fn compare_versions(&self, a: &str, b: &str) -> Ordering {
        match (NuGetVersion::parse(a), NuGetVersion::parse(b)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            // Stored versions always parse; anything else sorts after, by text.
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        }
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::NewVersion
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests {
            sha512: true,
            ..registry_core::ExtraDigests::default()
        }
    }
}

#[cfg(test)]
mod rules_tests {
    use super::*;
    use registry_core::FormatRules;

    #[test]
    fn ids_and_versions_are_stored_as_nuget_compares_them() {
        assert_eq!(
            Nuget.package_key("Newtonsoft.Json").unwrap(),
            "newtonsoft.json"
        );
        assert!(Nuget.package_key("bad id").is_err());
        for (written, key) in [
            ("1.0.0-Beta", "1.0.0-beta"),
            ("1.0.0-beta", "1.0.0-beta"),
            ("01.2", "1.2.0"),
            ("1.0.0.0+sha", "1.0.0"),
        ] {
            assert_eq!(Nuget.version_key(written).unwrap(), key, "{written}");
        }
        assert!(Nuget.version_key("one").is_err());
        assert_eq!(
            Nuget.compare_versions("1.0.0-rc.1", "1.0.0"),
            Ordering::Less
        );
        assert_eq!(Nuget.compare_versions("1.10.0", "1.9.0"), Ordering::Greater);
    }
}

#[cfg(test)]
mod nuspec_tests {
    use super::*;

    const NUSPEC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Hello.World</id>
    <version>1.02.0-Beta.1</version>
    <authors>Ada &amp; Co</authors>
    <description>Says hello.</description>
    <tags>greeting demo</tags>
    <dependencies>
      <group targetFramework="net6.0">
        <dependency id="Newtonsoft.Json" version="[13.0.1, )" exclude="Build" />
      </group>
      <group>
        <dependency id="Other" />
      </group>
    </dependencies>
  </metadata>
</package>"#;

    fn nupkg(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut writer, data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_nupkg_is_read_for_its_nuspec() {
        let package = nupkg(&[
            ("Hello.World.nuspec", NUSPEC.as_bytes()),
            ("lib/net6.0/Hello.dll", b"MZ"),
        ]);
        let (nuspec, raw) = read_nupkg(std::io::Cursor::new(package)).unwrap();
        assert_eq!(raw, NUSPEC.as_bytes());
        assert_eq!(nuspec.id, "Hello.World");
        assert_eq!(nuspec.version, "1.02.0-Beta.1");
        assert_eq!(nuspec.authors, "Ada & Co");
        assert_eq!(nuspec.tags, ["greeting", "demo"]);
        assert_eq!(
            nuspec.dependency_groups,
            [
                DependencyGroup {
                    target_framework: Some("net6.0".into()),
                    dependencies: vec![Dependency {
                        id: "Newtonsoft.Json".into(),
                        range: Some("[13.0.1, )".into())
                    }],
                },
                DependencyGroup {
                    target_framework: None,
                    dependencies: vec![Dependency {
                        id: "Other".into(),
                        range: None
                    }],
                },
            ]
        );
    }

    #[test]
    fn bad_packages_and_nuspecs_are_refused() {
        let two = nupkg(&[
            ("a.nuspec", NUSPEC.as_bytes()),
            ("b.nuspec", NUSPEC.as_bytes()),
        ]);
        assert!(read_nupkg(std::io::Cursor::new(two)).is_err());
        let none = nupkg(&[("lib/a.dll", b"MZ")]);
        assert!(read_nupkg(std::io::Cursor::new(none)).is_err());
        for bad in [
            NUSPEC.replace("<id>Hello.World</id>", ""),
            NUSPEC.replace("1.02.0-Beta.1", "one"),
            NUSPEC.replace("<id>Hello.World</id>", "<id>Hello World</id>"),
            NUSPEC.replace("<authors>", "<authors>x</authors><authors>"),
            NUSPEC.replace("</package>", ""),
            NUSPEC.replace("Says hello.", "&xxe;"),
        ] {
            assert!(parse_nuspec(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_as_a_nuspec(bytes in proptest::collection::vec(0u8..=255, 0..300)) {
            let _ = parse_nuspec(&bytes);
        }
    }
}
