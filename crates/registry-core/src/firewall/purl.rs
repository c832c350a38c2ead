//! Package URLs (`pkg:npm/left-pad@1.3.1`) and the package matches of firewall rules.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Candidate;
use crate::error::{Error, Result};
use crate::package::PackageFormat;
use crate::package_service::FormatRules;
use crate::rules::NameRegex;

/// A package URL naming a package, or one version of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Purl {
    text: String,
    format: PackageFormat,
    /// The package as the format stores it.
    name: String,
    version: Option<String>,
}

fn invalid(text: &str, why: &str) -> Error {
    Error::PolicyInvalid {
        reason: format!("{text:?} is not a package URL: {why}"),
    }
}

fn percent_decode(segment: &str, text: &str) -> Result<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(text, "a bad percent-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(text, "not UTF-8"))
}

impl Purl {
    /// Parses `pkg:<type>/[<namespace>/]<name>[@<version>]` (qualifiers and subpath are not
    /// accepted: a rule names packages and versions). Types: `npm`, `pypi`, `maven`, `nuget`,
    /// `generic`, `terraform`.
    ///
    /// Errors: [`Error::PolicyInvalid`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > 1024 {
            return Err(invalid(text, "longer than 1024 bytes"));
        }
        let rest = text
            .strip_prefix("pkg:")
            .ok_or_else(|| invalid(text, "it does not start with pkg:"))?;
        if rest.contains(['?', '#']) {
            return Err(invalid(text, "qualifiers and subpaths are not accepted"));
        }
        let (kind, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid(text, "no name"))?;
        let format = PackageFormat::from_name(&kind.to_ascii_lowercase())
            .ok_or_else(|| invalid(text, "an unknown type"))?;
        let (path, version) = match path.rsplit_once('@') {
            // `@` of an npm scope starts a segment; a version's follows a name.
            Some((path, version)) if !path.is_empty() && !path.ends_with('/') => {
                (path, Some(percent_decode(version, text)?))
            }
            _ => (path, None),
        };
        let segments = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_decode(s, text))
            .collect::<Result<Vec<_>>>()?;
        if segments.iter().any(String::is_empty) || version.as_deref() == Some("") {
            return Err(invalid(text, "an empty name, namespace or version"));
        }
        let name = match (format, segments.as_slice()) {
            (PackageFormat::Npm, [name]) => name.clone(),
            (PackageFormat::Npm, [scope, name]) if scope.starts_with('@') => {
                format!("{scope}/{name}")
            }
            (PackageFormat::Npm, [scope, name]) => format!("@{scope}/{name}"),
            (PackageFormat::Maven, [group, artifact]) => format!("{group}:{artifact}"),
            (PackageFormat::Pypi | PackageFormat::Nuget, [name]) => name.clone(),
            (PackageFormat::Generic | PackageFormat::Terraform, segments) => segments.join("/"),
            _ => return Err(invalid(text, "the wrong number of namespace segments")),
        };
        Ok(Purl {
            text: text.to_owned(),
            format,
            name,
            version,
        })
    }

    /// Whether it names the candidate's package (and version, when it has one), both compared
    /// in the forms the candidate's format (`rules`) stores them (PyPI's normalized names,
    /// NuGet's lowercase ids and normal versions).
    pub fn matches(&self, candidate: &Candidate<'_>, rules: &dyn FormatRules) -> bool {
        self.names(candidate.format, candidate.name, rules)
            && self.version_matches(candidate.version, rules)
    }

    /// Whether it names the package stored as `name` in `format`.
    pub fn names(&self, format: PackageFormat, name: &str, rules: &dyn FormatRules) -> bool {
        self.format == format && rules.package_key(&self.name).ok().as_deref() == Some(name)
    }

    /// Whether its version (none: every version) is the release of `version` as stored
    /// (compared by [`FormatRules::version_identity`]).
    pub fn version_matches(&self, version: &str, rules: &dyn FormatRules) -> bool {
        self.version.as_deref().is_none_or(|v| {
            rules
                .version_key(v)
                .is_ok_and(|key| rules.version_identity(&key) == rules.version_identity(version))
        })
    }

    /// The version it names, if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The format it names.
    pub fn format(&self) -> PackageFormat {
        self.format
    }

    /// Checks that the format accepts its name and version as written (`pkg:npm/Left-Pad` or
    /// `pkg:npm/x@v1.0.0` could never match anything).
    ///
    /// Errors: [`Error::PolicyInvalid`] saying which part the format refuses.
    pub fn check_with(&self, rules: &dyn FormatRules) -> Result<()> {
        let refused = |what: &str, e: Error| Error::PolicyInvalid {
            reason: format!("{}: the {what} can never match: {e}", self.text),
        };
        rules
            .package_key(&self.name)
            .map_err(|e| refused("name", e))?;
        if let Some(version) = &self.version {
            rules
                .version_key(version)
                .map_err(|e| refused("version", e))?;
        }
        Ok(())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Purl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Purl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Purl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Purl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Purl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a rule's `deny` or `allow` entry names: a package URL (`pkg:…`), or a pattern over
/// package names in any format (a whole-name regular expression).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageMatch {
    /// A package, or one version.
    Purl(Purl),
    /// Names matching a pattern.
    Name(NameRegex),
}

impl PackageMatch {
    /// Parses an entry. Errors: [`Error::PolicyInvalid`].
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with("pkg:") {
            Purl::parse(text).map(PackageMatch::Purl)
        } else {
            NameRegex::parse(text).map(PackageMatch::Name)
        }
    }

    /// Whether it matches the candidate (of the format `rules` describe).
    pub fn matches(&self, candidate: &Candidate<'_>, rules: &dyn FormatRules) -> bool {
        match self {
            PackageMatch::Purl(purl) => purl.matches(candidate, rules),
            PackageMatch::Name(pattern) => pattern.matches(candidate.name),
        }
    }
}

impl fmt::Display for PackageMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageMatch::Purl(purl) => f.write_str(purl.as_str()),
            PackageMatch::Name(pattern) => write!(f, "name pattern {}", pattern.as_str()),
        }
    }
}

impl Serialize for PackageMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            PackageMatch::Purl(purl) => s.serialize_str(purl.as_str()),
            PackageMatch::Name(pattern) => s.serialize_str(pattern.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for PackageMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PackageMatch::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A candidate as a package URL, for messages (`pkg:npm/left-pad@1.3.1`).
pub(super) fn display(candidate: &Candidate<'_>) -> String {
    let name = match candidate.format {
        PackageFormat::Maven => candidate.name.replacen(':', "/", 1),
        PackageFormat::Npm => candidate.name.replacen('@', "%40", 1),
        _ => candidate.name.to_owned(),
    };
    format!("pkg:{}/{name}@{}", candidate.format, candidate.version)
}
