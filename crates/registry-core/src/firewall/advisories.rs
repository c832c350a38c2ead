//! Advisories in the OSV format (<https://ossf.github.io/osv-schema/>): which versions of which
//! packages they affect, and how severe they are.
//!
//! An advisory's `affected` entries name a package by ecosystem (`npm`, `PyPI`, `Maven`,
//! `NuGet`) and list versions explicitly (`versions`) or as ranges of events (`introduced`,
//! `fixed`, `last_affected`), compared with the format's own version order. Severity is the
//! advisory's `database_specific.severity` (`LOW`, `MODERATE`/`MEDIUM`, `HIGH`, `CRITICAL`,
//! as GitHub and others write it); malicious-package reports (`MAL-…`) are critical; an
//! advisory that says nothing is taken as moderate.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::package::PackageFormat;
use crate::package_service::FormatRules;

/// How severe an advisory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Low.
    Low,
    /// Moderate (also written medium).
    #[serde(alias = "medium")]
    Moderate,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The name npm and GitHub use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Moderate => "moderate",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn from_text(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "low" => Severity::Low,
            "moderate" | "medium" => Severity::Moderate,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// One range of affected versions: from `introduced` (none: from the first) up to `fixed`
/// (excluded) or `last_affected` (included), or open.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Range {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}

/// An advisory as it affects one package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advisory {
    /// Its id (`GHSA-…`, `MAL-…`, `CVE-…`).
    pub id: String,
    /// Its summary.
    pub summary: String,
    /// Its severity.
    pub severity: Severity,
    /// Versions listed one by one.
    versions: Vec<String>,
    /// The identities of `versions` ([`FormatRules::version_identity`]), worked out on first
    /// use (an advisory is about one package, so of one format).
    identities: std::sync::OnceLock<std::collections::HashSet<String>>,
    /// Ranges of versions.
    ranges: Vec<Range>,
}

impl Advisory {
    /// Whether it affects `version` in the version order of the format `rules` describe.
    pub fn affects(&self, version: &str, rules: &dyn FormatRules) -> bool {
        self.affects_release(version, &rules.version_identity(version), rules)
    }

    /// [`Advisory::affects`] for a version whose identity is known: a listed version is
    /// matched by identity (PyPI's `1.0` lists `1.0.0` too), ranges by the format's order.
    pub fn affects_release(&self, version: &str, identity: &str, rules: &dyn FormatRules) -> bool {
        use std::cmp::Ordering::*;
        let order = |a: &str, b: &str| rules.compare_versions(a, b);
        let listed = self.identities.get_or_init(|| {
            self.versions
                .iter()
                .map(|v| rules.version_identity(v))
                .collect()
        });
        listed.contains(identity)
            || self.ranges.iter().any(|r| {
                let from = r
                    .introduced
                    .as_deref()
                    .is_none_or(|i| i == "0" || order(version, i) != Less);
                let to = match (&r.fixed, &r.last_affected) {
                    (Some(fixed), _) => order(version, fixed) == Less,
                    (None, Some(last)) => order(version, last) != Greater,
                    (None, None) => true,
                };
                from && to
            })
    }

    /// The affected versions as an npm semver range (`>=1.0.0 <1.3.1 || 2.0.0`), as npm's
    /// audit reads `vulnerable_versions`.
    pub fn semver_range(&self) -> String {
        let mut parts: Vec<String> = self
            .ranges
            .iter()
            .map(|r| {
                let from = r
                    .introduced
                    .as_deref()
                    .filter(|i| *i != "0")
                    .map(|i| format!(">={i}"));
                let to = match (&r.fixed, &r.last_affected) {
                    (Some(fixed), _) => Some(format!("<{fixed}")),
                    (None, Some(last)) => Some(format!("<={last}")),
                    (None, None) => None,
                };
                match (from, to) {
                    (Some(from), Some(to)) => format!("{from} {to}"),
                    (Some(one), None) | (None, Some(one)) => one,
                    (None, None) => "*".to_owned(),
                }
            })
            .collect();
        parts.extend(self.versions.iter().cloned());
        parts.join(" || ")
    }
}

/// The advisories loaded, by format and package.
#[derive(Clone, Debug, Default)]
pub struct Advisories {
    by_package: HashMap<(PackageFormat, String), Vec<Advisory>>,
    /// How many advisory documents were read.
    documents: usize,
    /// A digest of every document read, in order.
    fingerprint: [u8; 32],
}

/// An OSV ecosystem's format.
fn ecosystem(name: &str) -> Option<PackageFormat> {
    Some(match name.split(':').next().unwrap_or(name) {
        "npm" => PackageFormat::Npm,
        "PyPI" => PackageFormat::Pypi,
        "Maven" => PackageFormat::Maven,
        "NuGet" => PackageFormat::Nuget,
        _ => return None,
    })
}

fn text(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl Advisories {
    /// No advisories.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any advisory is loaded.
    pub fn is_empty(&self) -> bool {
        self.documents == 0
    }

    /// How many advisory documents were loaded.
    pub fn len(&self) -> usize {
        self.documents
    }

    /// A digest of everything loaded: two sets of advisories read from the same documents
    /// have the same one, and any other difference changes it.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Adds the advisories of one OSV JSON document — an advisory, or an array of them —
    /// under the names `key` gives each package as its format stores it (`None`: a name the
    /// format refuses, skipped). Entries of ecosystems this registry has no format for are
    /// skipped.
    ///
    /// Errors: [`Error::PolicyInvalid`] when it is not OSV JSON.
    pub fn add_json(
        &mut self,
        document: &[u8],
        key: &dyn Fn(PackageFormat, &str) -> Option<String>,
    ) -> Result<()> {
        use sha2::Digest as _;
        self.fingerprint = sha2::Sha256::new()
            .chain_update(self.fingerprint)
            .chain_update(document)
            .finalize()
            .into();
        let value: Value = serde_json::from_slice(document).map_err(|e| Error::PolicyInvalid {
            reason: format!("an advisory file is not JSON: {e}"),
        })?;
        match value {
            Value::Array(items) => {
                for item in &items {
                    self.add_one(item, key)?;
                }
                Ok(())
            }
            item => self.add_one(&item, key),
        }
    }

    fn add_one(
        &mut self,
        advisory: &Value,
        key: &dyn Fn(PackageFormat, &str) -> Option<String>,
    ) -> Result<()> {
        let Some(id) = text(advisory, "id") else {
            return Err(Error::PolicyInvalid {
                reason: "an OSV advisory has no id".into(),
            });
        };
        if advisory.get("withdrawn").and_then(Value::as_str).is_some() {
            return Ok(());
        }
        // Without a summary or details the id alone names it (the summary stays empty).
        let summary = text(advisory, "summary")
            .or_else(|| text(advisory, "details").map(|d| d.chars().take(200).collect()))
            .unwrap_or_default();
        let declared = advisory
            .pointer("/database_specific/severity")
            .and_then(Value::as_str)
            .and_then(Severity::from_text);
        let severity = match declared {
            Some(severity) => severity,
            None if id.starts_with("MAL-") => Severity::Critical,
            None => Severity::Moderate,
        };
        self.documents += 1;
        for affected in advisory
            .get("affected")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(ecosystem_name), Some(name)) = (
                affected
                    .pointer("/package/ecosystem")
                    .and_then(Value::as_str),
                affected.pointer("/package/name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Some(format) = ecosystem(ecosystem_name) else {
                continue;
            };
            let Some(stored) = key(format, name) else {
                continue;
            };
            let severity = affected
                .pointer("/ecosystem_specific/severity")
                .and_then(Value::as_str)
                .and_then(Severity::from_text)
                .unwrap_or(severity);
            let versions = affected
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            let mut ranges = Vec::new();
            for range in affected
                .get("ranges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| {
                    matches!(
                        r.get("type").and_then(Value::as_str),
                        Some("SEMVER" | "ECOSYSTEM")
                    )
                })
            {
                let mut current: Option<Range> = None;
                for event in range
                    .get("events")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(introduced) = text(event, "introduced") {
                        if let Some(open) = current.take() {
                            ranges.push(open);
                        }
                        current = Some(Range {
                            introduced: Some(introduced),
                            fixed: None,
                            last_affected: None,
                        });
                    } else if let Some(fixed) = text(event, "fixed") {
                        let mut closed = current.take().unwrap_or(Range {
                            introduced: None,
                            fixed: None,
                            last_affected: None,
                        });
                        closed.fixed = Some(fixed);
                        ranges.push(closed);
                    } else if let Some(last) = text(event, "last_affected") {
                        let mut closed = current.take().unwrap_or(Range {
                            introduced: None,
                            fixed: None,
                            last_affected: None,
                        });
                        closed.last_affected = Some(last);
                        ranges.push(closed);
                    }
                }
                ranges.extend(current);
            }
            self.by_package
                .entry((format, stored))
                .or_default()
                .push(Advisory {
                    id: id.clone(),
                    summary: summary.clone(),
                    severity,
                    versions,
                    identities: std::sync::OnceLock::new(),
                    ranges,
                });
        }
        Ok(())
    }

    /// Every advisory about a package (its stored name).
    pub fn about(&self, format: PackageFormat, name: &str) -> &[Advisory] {
        self.by_package
            .get(&(format, name.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// The advisories that affect one version of a package of the format `rules` describe.
    pub fn affecting(&self, name: &str, version: &str, rules: &dyn FormatRules) -> Vec<&Advisory> {
        self.about(rules.format(), name)
            .iter()
            .filter(|a| a.affects(version, rules))
            .collect()
    }
}
