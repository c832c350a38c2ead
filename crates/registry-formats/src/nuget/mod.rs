//! NuGet: package ids and versions as NuGet reads, normalizes and orders them (no crate
//! implements NuGet's rules), a package's `.nuspec` ([`nuspec`]), the v3 protocol's documents
//! ([`documents`]), and [`Nuget`], the format's rules for the package service.
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

pub mod documents;
pub mod nuspec;
mod upstream;

pub use nuspec::{
    Dependency, DependencyGroup, MAX_DEPENDENCIES, MAX_NUSPEC_SIZE, Nuspec, parse_nuspec,
    read_nupkg,
};

pub(crate) fn invalid(reason: impl Into<String>) -> Error {
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
            // NuGet's numbers are 32-bit signed: larger ones break every client reading the id.
            *slot = piece
                .parse()
                .ok()
                .filter(|n| *n <= i32::MAX as u64)
                .ok_or_else(|| wrong("a number is over 2147483647"))?;
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

    /// The normal form with the build metadata, if any (`1.0.0+sha.5`): how SemVer 2.0.0
    /// documents show a version.
    pub fn full_normalized(&self) -> String {
        match &self.metadata {
            Some(metadata) => format!("{}+{metadata}", self.normalized()),
            None => self.normalized(),
        }
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

impl crate::pages::FormatPages for Nuget {
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        Some(format!(
            "nuget install {name} -Version {version} -Source {registry}/nuget/{repository}/v3/index.json"
        ))
    }

    /// The nuspec's `description` (the metadata document is the nuspec as JSON).
    fn description(&self, metadata: &str) -> Option<String> {
        crate::pages::text_field(metadata, "description")
    }

    /// NuGet calls a hidden version unlisted.
    fn status_label(&self, status: &registry_core::VersionStatus) -> Option<&'static str> {
        match status {
            registry_core::VersionStatus::Hidden => Some("unlisted"),
            other => crate::pages::default_status_label(other),
        }
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
            "4294967296.0.0",
            "1.2147483648",
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

/// NuGet's rules for the package service: ids stored
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

    /// A version with a release label (`1.0.0-beta`); build metadata is not one.
    fn is_prerelease(&self, version: &str) -> bool {
        version.split('+').next().is_some_and(|v| v.contains('-'))
    }

    fn compare_versions(&self, a: &str, b: &str) -> Ordering {
        crate::order_by(NuGetVersion::parse, a, b)
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::NewVersion
    }

    fn check_name_pattern(&self, pattern: &registry_core::NameRegex) -> Result<()> {
        crate::check_lowercase_pattern(pattern, "NuGet ids are compared and stored lowercase")
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests {
            sha512: true,
            ..registry_core::ExtraDigests::default()
        }
    }
    fn upstream(&self) -> Option<&dyn registry_core::UpstreamFormat> {
        Some(self)
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
