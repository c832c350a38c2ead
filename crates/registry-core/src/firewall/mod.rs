//! The dependency firewall: rules that keep known-bad, unwanted and too-new package versions
//! out of repositories, decided the same way at publish, at download and in the metadata
//! clients read (a blocked version is left out, so a resolver picks an allowed one).
//!
//! A [`FirewallRule`] applies to the repositories its pattern names and checks one thing:
//! names and versions denied, or only some allowed ([`PackageMatch`]: a name pattern or a
//! package URL such as `pkg:npm/left-pad@1.3.1`), an age (versions an upstream published less
//! than N days ago are held back), advisories (versions an OSV advisory of at least a
//! severity affects, from [`Advisories`]), or licences. Its mode is `block` or `warn` (served,
//! recorded); exceptions by package URL pass it. Every decision that blocked or warned is
//! recorded in the audit log ([`FirewallAudit`]).

mod advisories;
mod audit;
mod purl;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::package::PackageFormat;
use crate::package_service::FormatRules;
use crate::rules::NameRegex;
use crate::values::Timestamp;

pub use advisories::{Advisories, Advisory, Severity};
pub use audit::{AuditEntry, FirewallAudit};
pub use purl::{PackageMatch, Purl};

/// The longest rule name.
pub const MAX_RULE_NAME_LEN: usize = 64;

/// The most entries a rule's lists hold.
pub const MAX_RULE_ENTRIES: usize = 1000;

/// What a rule does to a version it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refused (403), left out of metadata.
    #[default]
    Block,
    /// Served, and recorded.
    Warn,
}

impl Mode {
    /// The mode's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Warn => "warn",
        }
    }
}

/// A minimum age: a number and a unit (`d`, `h`, `m`, `s`), at most ten years.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinAge {
    text: String,
    seconds: u64,
}

impl MinAge {
    /// Parses `3d`, `12h`, `30m`, `45s`. Errors: [`Error::PolicyInvalid`].
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::PolicyInvalid {
            reason: format!(
                "{text:?} is not an age: write a number and a unit, d, h, m or s (3d, 12h)"
            ),
        };
        // The unit is the last character, whatever its width (`3é` is refused, not split
        // inside a character).
        let (split, _) = text.char_indices().last().ok_or_else(invalid)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let scale = match unit {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => return Err(invalid()),
        };
        let seconds = number
            .checked_mul(scale)
            .filter(|s| *s <= 10 * 366 * 86_400)
            .ok_or_else(invalid)?;
        Ok(MinAge {
            text: text.to_owned(),
            seconds,
        })
    }

    /// The age as a duration.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }
}

impl fmt::Display for MinAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for MinAge {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for MinAge {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MinAge::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Licence lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Licenses {
    /// Only these licences (SPDX identifiers, compared case-insensitively) pass; a version
    /// that declares none does not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// These licences do not pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// A firewall rule, as configured (`[[firewall_rules]]`) or sent to the admin API. It checks
/// exactly one of `deny`, `allow`, `min_age`, `advisories` and `licenses`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    /// Its name, said in every refusal (letters, digits, `.`, `_`, `-`; at most 64).
    pub name: String,
    /// The repositories it applies to (a whole-name regular expression; all by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<NameRegex>,
    /// `block` (default) or `warn`.
    #[serde(default)]
    pub mode: Mode,
    /// Versions refused: name patterns or package URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<PackageMatch>,
    /// Only these pass: name patterns or package URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<PackageMatch>,
    /// Versions an upstream published less than this long ago (`3d`, `12h`, `30m`, `45s`)
    /// are held back (versions published to hosted repositories are not: they are this
    /// registry's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<MinAge>,
    /// Versions an advisory of at least this severity affects are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisories: Option<Severity>,
    /// Licences allowed or denied, where the format declares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<Licenses>,
    /// Package URLs that pass this rule whatever it checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Purl>,
}

impl FirewallRule {
    /// Checks the name, that exactly one check is given, and the lists' sizes.
    ///
    /// Errors: [`Error::PolicyInvalid`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::PolicyInvalid { reason });
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_RULE_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return invalid(format!(
                "{:?} is not a firewall rule name: use 1 to {MAX_RULE_NAME_LEN} letters, digits, \
                 '.', '_' or '-'",
                self.name
            ));
        }
        let checks = [
            !self.deny.is_empty(),
            !self.allow.is_empty(),
            self.min_age.is_some(),
            self.advisories.is_some(),
            self.licenses.is_some(),
        ];
        if checks.iter().filter(|c| **c).count() != 1 {
            return invalid(format!(
                "firewall rule {} must check exactly one of deny, allow, min_age, \
                 advisories and licenses",
                self.name
            ));
        }
        if let Some(licenses) = &self.licenses
            && licenses.allow.is_empty()
            && licenses.deny.is_empty()
        {
            return invalid(format!(
                "firewall rule {}: licenses lists nothing",
                self.name
            ));
        }
        let longest = [
            self.deny.len(),
            self.allow.len(),
            self.exceptions.len(),
            self.licenses
                .as_ref()
                .map_or(0, |l| l.allow.len() + l.deny.len()),
        ];
        if longest.iter().any(|n| *n > MAX_RULE_ENTRIES) {
            return invalid(format!(
                "firewall rule {}: at most {MAX_RULE_ENTRIES} entries per list",
                self.name
            ));
        }
        Ok(())
    }

    /// Checks its package URLs against their formats (`rules_of`: a served format's rules):
    /// one naming a format not served, or a name or version the format refuses, could never
    /// match.
    ///
    /// Errors: [`Error::PolicyInvalid`] naming the package URL.
    pub fn check_package_urls(
        &self,
        rules_of: &dyn Fn(PackageFormat) -> Option<&'static dyn FormatRules>,
    ) -> Result<()> {
        let purls = self
            .deny
            .iter()
            .chain(&self.allow)
            .filter_map(|m| match m {
                PackageMatch::Purl(purl) => Some(purl),
                PackageMatch::Name(_) => None,
            })
            .chain(&self.exceptions);
        for purl in purls {
            let rules = rules_of(purl.format()).ok_or_else(|| Error::PolicyInvalid {
                reason: format!("{purl}: {} packages are not served here", purl.format()),
            })?;
            purl.check_with(rules)?;
        }
        Ok(())
    }

    /// Whether the rule applies to a repository.
    pub fn covers(&self, repository: &str) -> bool {
        self.repositories
            .as_ref()
            .is_none_or(|p| p.matches(repository))
    }
}

/// A version as the firewall sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Its format.
    pub format: PackageFormat,
    /// The repository a client reads or publishes through.
    pub repository: &'a str,
    /// The package as stored (the format's key).
    pub name: &'a str,
    /// The version as stored.
    pub version: &'a str,
    /// When it was published (by the upstream, for proxied versions).
    pub published: Timestamp,
    /// Whether it comes from an upstream (the age gate applies only then).
    pub upstream: bool,
    /// The licence it declares.
    pub license: Option<&'a str>,
}

/// Why a rule matched a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The rule's name.
    pub rule: String,
    /// Its mode.
    pub mode: Mode,
    /// What it found.
    pub reason: String,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firewall rule {}: {}", self.rule, self.reason)
    }
}

/// The rules and advisories in force.
#[derive(Clone, Debug, Default)]
pub struct Firewall {
    rules: Vec<FirewallRule>,
    advisories: std::sync::Arc<Advisories>,
}

impl Firewall {
    /// A firewall of `rules` over `advisories`.
    pub fn new(rules: Vec<FirewallRule>, advisories: std::sync::Arc<Advisories>) -> Self {
        Firewall { rules, advisories }
    }

    /// The rules.
    pub fn rules(&self) -> &[FirewallRule] {
        &self.rules
    }

    /// Whether any rule applies to the repository.
    pub fn applies_to(&self, repository: &str) -> bool {
        self.rules.iter().any(|r| r.covers(repository))
    }

    /// How finely decisions for the repository change with time: a 24th of its shortest age
    /// gate, between a second and an hour; `None` without age gates.
    pub fn age_granularity(&self, repository: &str) -> Option<std::time::Duration> {
        self.rules
            .iter()
            .filter(|r| r.covers(repository))
            .filter_map(|r| r.min_age.as_ref())
            .map(|age| age.duration() / 24)
            .min()
            .map(|d| {
                d.clamp(
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(3600),
                )
            })
    }

    /// The rules that match a version of the format `rules` describe (its names, versions and
    /// their order), blocking ones first; empty when it passes. `now` is the time age gates
    /// count from. To check many versions of one package, [`Firewall::screen_package`] once.
    pub fn check(
        &self,
        candidate: &Candidate<'_>,
        rules: &dyn FormatRules,
        now: Timestamp,
    ) -> Vec<Hit> {
        self.screen_package(candidate.repository, candidate.name, rules)
            .check(candidate, rules, now)
    }

    /// The rules as they apply to one package read through `repository`: what depends only on
    /// the name (name patterns, which package URLs name it, its advisories) decided once.
    pub fn screen_package<'a>(
        &'a self,
        repository: &str,
        name: &str,
        rules: &dyn FormatRules,
    ) -> PackageScreen<'a> {
        let format = rules.format();
        let names = |purl: &Purl| purl.names(format, name, rules);
        // Each package URL's version worked out once, to look up: as a release identity for
        // what blocks (`deny` of PyPI's `1.0` covers `1.0.0` and `1.0+local`), as the stored
        // version exactly for what lets through (`allow`, exceptions).
        let releases =
            |purls: &[&'a Purl], exact: bool| -> (Option<&'a Purl>, HashMap<String, &'a Purl>) {
                let mut all = None;
                let mut versions = HashMap::new();
                for &purl in purls {
                    match purl.version() {
                        None => all = all.or(Some(purl)),
                        Some(version) => {
                            // A version the format refuses names nothing.
                            if let Ok(key) = rules.version_key(version) {
                                let key = match exact {
                                    true => key,
                                    false => rules.version_identity(&key),
                                };
                                versions.entry(key).or_insert(purl);
                            }
                        }
                    }
                }
                (all, versions)
            };
        let views = self
            .rules
            .iter()
            .filter(|r| r.covers(repository))
            .map(|rule| {
                let by_name =
                    |m: &&PackageMatch| matches!(m, PackageMatch::Name(p) if p.matches(name));
                let purls = |list: &'a [PackageMatch]| -> Vec<&'a Purl> {
                    list.iter()
                        .filter_map(|m| match m {
                            PackageMatch::Purl(purl) if names(purl) => Some(purl),
                            _ => None,
                        })
                        .collect()
                };
                let (deny_all, deny_versions) = releases(&purls(&rule.deny), false);
                let (allow_all, allow_versions) = releases(&purls(&rule.allow), true);
                let exceptions: Vec<&Purl> = rule.exceptions.iter().filter(|p| names(p)).collect();
                let (except_all, except_versions) = releases(&exceptions, true);
                RuleView {
                    rule,
                    denied_by_name: rule.deny.iter().find(by_name),
                    deny_all,
                    deny_versions,
                    allowed_all: rule.allow.iter().any(|m| by_name(&m)) || allow_all.is_some(),
                    allow_versions,
                    excepted_all: except_all.is_some(),
                    except_versions,
                }
            })
            .collect();
        PackageScreen {
            rules: views,
            advisories: self.advisories.about(format, name),
        }
    }

    /// The advisories loaded.
    pub fn advisories(&self) -> &Advisories {
        &self.advisories
    }
}

/// One rule as it applies to one package: its `deny` package URLs' versions as release
/// identities ([`FormatRules::version_identity`]), the others' as stored versions.
#[derive(Debug)]
struct RuleView<'a> {
    rule: &'a FirewallRule,
    /// A `deny` name pattern the name matches.
    denied_by_name: Option<&'a PackageMatch>,
    /// A `deny` package URL naming the package without a version.
    deny_all: Option<&'a Purl>,
    /// `deny` package URLs naming versions of the package.
    deny_versions: HashMap<String, &'a Purl>,
    /// Whether `allow` admits every version (a name pattern, or a package URL without one).
    allowed_all: bool,
    /// `allow` package URLs naming versions of the package (by stored version).
    allow_versions: HashMap<String, &'a Purl>,
    /// Whether an exception names the package without a version.
    excepted_all: bool,
    /// Exceptions naming versions of the package (by stored version).
    except_versions: HashMap<String, &'a Purl>,
}

/// The firewall's rules as they apply to one package ([`Firewall::screen_package`]).
#[derive(Debug)]
pub struct PackageScreen<'a> {
    rules: Vec<RuleView<'a>>,
    advisories: &'a [Advisory],
}

impl PackageScreen<'_> {
    /// Whether no rule applies.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that match a version of the package, blocking ones first; empty when it
    /// passes.
    pub fn check(
        &self,
        candidate: &Candidate<'_>,
        rules: &dyn FormatRules,
        now: Timestamp,
    ) -> Vec<Hit> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let release = rules.version_identity(candidate.version);
        let mut hits: Vec<Hit> = self
            .rules
            .iter()
            .filter(|view| {
                !view.excepted_all && !view.except_versions.contains_key(candidate.version)
            })
            .filter_map(|view| {
                self.reason(view, candidate, &release, rules, now)
                    .map(|reason| Hit {
                        rule: view.rule.name.clone(),
                        mode: view.rule.mode,
                        reason,
                    })
            })
            .collect();
        hits.sort_by_key(|h| h.mode != Mode::Block);
        hits
    }

    fn reason(
        &self,
        view: &RuleView<'_>,
        candidate: &Candidate<'_>,
        release: &str,
        rules: &dyn FormatRules,
        now: Timestamp,
    ) -> Option<String> {
        let rule = view.rule;
        let id = purl::display(candidate);
        let version = candidate.version;
        if let Some(found) = view.denied_by_name {
            return Some(format!("{id} is denied ({found})"));
        }
        if let Some(found) = view.deny_all.or(view.deny_versions.get(release).copied()) {
            return Some(format!("{id} is denied ({found})"));
        }
        if !rule.allow.is_empty() && !view.allowed_all && !view.allow_versions.contains_key(version)
        {
            return Some(format!("{id} is not on the allow list"));
        }
        if let Some(age) = &rule.min_age
            && candidate.upstream
        {
            let ripe = candidate.published.after(age.duration());
            if now < ripe {
                let until = u64::try_from(ripe.0).map_or_else(
                    |_| "later".to_owned(),
                    |ms| {
                        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                        httpdate::fmt_http_date(at)
                    },
                );
                return Some(format!(
                    "{id} was published less than {age} ago; it is held back until {until}"
                ));
            }
        }
        if let Some(threshold) = rule.advisories {
            let found = self
                .advisories
                .iter()
                .filter(|a| a.severity >= threshold && a.affects_release(version, release, rules))
                .max_by_key(|a| a.severity);
            if let Some(advisory) = found {
                return Some(format!(
                    "{id} is affected by {} ({}, {})",
                    advisory.id,
                    advisory.severity.as_str(),
                    advisory.summary
                ));
            }
        }
        if let Some(licenses) = &rule.licenses {
            return licenses.refusal(&id, candidate.license);
        }
        None
    }
}

impl Licenses {
    /// Why a version declaring `license` (an SPDX expression) does not pass: one of its
    /// licences is denied, or — with an allow list — one is not allowed or none is declared.
    /// Licences compare case-insensitively and without their `-only`, `-or-later` or `+`
    /// suffix (`GPL-3.0` covers `GPL-3.0-only` and `GPL-3.0-or-later`).
    fn refusal(&self, id: &str, license: Option<&str>) -> Option<String> {
        let ids = license.map(spdx_ids).unwrap_or_default();
        let listed = |list: &[String], license: &str| {
            let license = base_license(license);
            list.iter().any(|l| base_license(l) == license)
        };
        if let Some(denied) = ids.iter().find(|l| listed(&self.deny, l)) {
            return Some(format!("{id} is licensed {denied}, which is denied"));
        }
        if self.allow.is_empty() {
            return None;
        }
        if ids.is_empty() {
            return Some(format!("{id} declares no licence"));
        }
        ids.iter()
            .find(|l| !listed(&self.allow, l))
            .map(|other| format!("{id} is licensed {other}, which is not allowed"))
    }
}

/// The licence identifiers of an SPDX expression (`(MIT OR GPL-3.0-only)` → `MIT`,
/// `GPL-3.0-only`); the operators and the exception after `WITH` are not licences.
fn spdx_ids(expression: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after_with = false;
    for token in expression
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|t| !t.is_empty())
    {
        match token.to_ascii_uppercase().as_str() {
            "AND" | "OR" => after_with = false,
            "WITH" => after_with = true,
            _ if after_with => after_with = false,
            _ => ids.push(token.to_owned()),
        }
    }
    ids
}

/// A licence identifier without its version-range suffix, uppercase.
fn base_license(license: &str) -> String {
    let upper = license.trim().to_ascii_uppercase();
    let trimmed = upper
        .strip_suffix("-ONLY")
        .or_else(|| upper.strip_suffix("-OR-LATER"))
        .or_else(|| upper.strip_suffix('+'))
        .unwrap_or(&upper);
    trimmed.to_owned()
}

#[cfg(test)]
mod tests;
