//! Tag rules and cleanup policies: which tags are immutable, which need a higher role to push
//! or delete, and which old tags are cleaned up.
//!
//! Rules are data: they are stored in the metadata store as JSON documents
//! ([`crate::metadata::PolicyStore`]), come from a server's configuration, or arrive with a
//! request (an embedder's token claims, see [`Actor`]). A [`TagGuard`] is the set of rules that
//! applies to one repository and one caller; the metadata store consults it inside the
//! transaction that changes a tag, so a rule can never be raced.
//!
//! Tag patterns are regular expressions (RE2 syntax, as in the `regex` crate) matched against
//! the **whole** tag name: `v.*` matches `v1.2` but not `dev-v1`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{NamePattern, Role};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::name::{RepositoryName, Tag};

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 255;

/// The longest rule or policy name accepted, in bytes.
pub const MAX_RULE_NAME_LEN: usize = 64;

/// How many tag rules, and how many cleanup policies, a store holds at most by default.
pub const DEFAULT_MAX_RULES: usize = 200;

/// A regular expression matched against a whole name: a tag (tag rules, cleanup policies) or a
/// package name (protection rules, duplicate exceptions).
#[derive(Clone)]
pub struct NameRegex {
    source: String,
    regex: regex::Regex,
}

impl NameRegex {
    /// Parses a pattern. Errors: [`Error::PolicyInvalid`] when it is empty, longer than
    /// [`MAX_PATTERN_LEN`], or does not compile.
    pub fn parse(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Err(invalid("a name pattern must not be empty"));
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(invalid(format!(
                "the name pattern is {} bytes long; the limit is {MAX_PATTERN_LEN}",
                pattern.len()
            )));
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                invalid(format!(
                    "the name pattern {pattern:?} does not compile: {e}"
                ))
            })?;
        Ok(NameRegex {
            source: pattern.to_owned(),
            regex,
        })
    }

    /// Whether the pattern matches the whole name.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for NameRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameRegex({:?})", self.source)
    }
}

impl PartialEq for NameRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for NameRegex {}

impl TryFrom<String> for NameRegex {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        NameRegex::parse(&value)
    }
}

impl From<NameRegex> for String {
    fn from(pattern: NameRegex) -> Self {
        pattern.source
    }
}

impl Serialize for NameRegex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for NameRegex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NameRegex::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::PolicyInvalid {
        reason: reason.into(),
    }
}

/// Checks a rule or policy name: 1 to [`MAX_RULE_NAME_LEN`] bytes of lowercase letters, digits,
/// `.`, `_` and `-`.
pub fn check_rule_name(name: &str) -> Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if name.is_empty() || name.len() > MAX_RULE_NAME_LEN || !valid_chars {
        return Err(invalid(format!(
            "{name:?} is not a rule name: use 1 to {MAX_RULE_NAME_LEN} lowercase letters, digits, \
             '.', '_' or '-'"
        )));
    }
    Ok(())
}

/// What a tag rule does to the tags it matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TagRuleKind {
    /// A matching tag can be created but never moved to another manifest or deleted, by anyone;
    /// nor can a manifest such a tag points at be deleted.
    Immutable,
    /// Pushing a matching tag needs at least `push`; deleting it (or a manifest it points at)
    /// needs at least `delete`.
    Protected {
        /// The least role that may push.
        push: Role,
        /// The least role that may delete.
        delete: Role,
    },
}

/// A rule over the tags of the repositories a pattern covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRule {
    /// The rule's name, unique in its store ([`check_rule_name`]); refusals name it.
    pub name: String,
    /// The repositories it applies to.
    pub repositories: NamePattern,
    /// The tags it applies to.
    pub tags: NameRegex,
    /// What it does.
    #[serde(flatten)]
    pub kind: TagRuleKind,
}

impl TagRule {
    /// Checks the name (the patterns were checked when parsed).
    pub fn validate(&self) -> Result<()> {
        check_rule_name(&self.name)
    }

    /// Whether the rule covers this tag of this repository.
    pub fn applies(&self, repository: &RepositoryName, tag: &str) -> bool {
        self.repositories.matches(repository) && self.tags.matches(tag)
    }
}

/// Who asks for a change, as far as tag rules care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// The caller's role on the repository; `None` for a trusted caller (an open registry, the
    /// embedder itself), whom protected-tag rules do not restrict. Immutable tags bind everyone.
    pub role: Option<Role>,
    /// Rules that come with this request, applied in addition to the stored ones.
    pub rules: Vec<TagRule>,
}

impl Actor {
    /// A trusted caller with no rules of its own.
    pub fn trusted() -> Self {
        Actor::default()
    }

    /// A caller with a role.
    pub fn with_role(role: Role) -> Self {
        Actor {
            role: Some(role),
            rules: Vec::new(),
        }
    }
}

/// A change to a tag, as the metadata store is about to make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagChange<'a> {
    /// Point the tag at a manifest. `moved` is true when it exists and pointed elsewhere.
    Push {
        /// Whether the tag existed and pointed at another manifest.
        moved: bool,
    },
    /// Remove the tag (alone, or with the manifest it points at).
    Delete {
        /// The manifest the tag points at now.
        current: &'a Digest,
    },
}

/// The tag rules in force for one repository and one caller; metadata stores call
/// [`TagGuard::check`] inside the transaction that changes a tag.
#[derive(Clone, Debug, Default)]
pub struct TagGuard {
    repository: Option<RepositoryName>,
    rules: Vec<Arc<TagRule>>,
    role: Option<Role>,
    expect: Option<Digest>,
}

impl TagGuard {
    /// No rules: every change is allowed.
    pub fn none() -> Self {
        TagGuard::default()
    }

    /// The rules among `rules` that cover the repository, for a caller with `role` (`None`:
    /// trusted, see [`Actor::role`]).
    pub fn new<'a>(
        repository: &RepositoryName,
        rules: impl IntoIterator<Item = &'a Arc<TagRule>>,
        role: Option<Role>,
    ) -> Self {
        TagGuard {
            repository: Some(repository.clone()),
            rules: rules
                .into_iter()
                .filter(|rule| rule.repositories.matches(repository))
                .cloned()
                .collect(),
            role,
            expect: None,
        }
    }

    /// Also refuses to delete a tag that no longer points at `digest` (a cleanup deleting what
    /// it listed, and not a tag pushed again since).
    pub fn expecting(mut self, digest: Digest) -> Self {
        self.expect = Some(digest);
        self
    }

    /// Whether any rule makes the tag immutable or protected (cleanup keeps such tags).
    pub fn guards(&self, tag: &str) -> bool {
        self.rules.iter().any(|rule| rule.tags.matches(tag))
    }

    /// Allows or refuses a change; a refusal is [`Error::Denied`] naming the rule.
    pub fn check(&self, tag: &Tag, change: TagChange<'_>) -> Result<()> {
        if let (TagChange::Delete { current }, Some(expected)) = (change, &self.expect)
            && current != expected
        {
            return Err(Error::Denied {
                reason: format!("tag {tag} was pushed again since it was listed; it is kept"),
            });
        }
        let repository = self
            .repository
            .as_ref()
            .map_or(String::new(), |r| format!(" in {r}"));
        for rule in self.rules.iter().filter(|r| r.tags.matches(tag.as_str())) {
            let refusal = match (&rule.kind, change) {
                (TagRuleKind::Immutable, TagChange::Push { moved: false }) => None,
                (TagRuleKind::Immutable, TagChange::Push { moved: true }) => {
                    Some("is immutable: it cannot be pushed to another manifest".to_owned())
                }
                (TagRuleKind::Immutable, TagChange::Delete { .. }) => {
                    Some("is immutable: it and its manifest cannot be deleted".to_owned())
                }
                (TagRuleKind::Protected { push, .. }, TagChange::Push { .. }) => self
                    .below(*push)
                    .then(|| format!("is protected: pushing it needs the {} role", push.as_str())),
                (TagRuleKind::Protected { delete, .. }, TagChange::Delete { .. }) => {
                    self.below(*delete).then(|| {
                        format!(
                            "is protected: deleting it needs the {} role",
                            delete.as_str()
                        )
                    })
                }
            };
            if let Some(what) = refusal {
                return Err(Error::Denied {
                    reason: format!(
                        "tag {tag}{repository} {what} (tag rule {:?}, tags {:?})",
                        rule.name,
                        rule.tags.as_str()
                    ),
                });
            }
        }
        Ok(())
    }

    fn below(&self, needed: Role) -> bool {
        self.role.is_some_and(|role| role < needed)
    }
}

/// A cleanup policy: which tags of the repositories a pattern covers are deleted when it runs.
///
/// For each repository, a run takes every tag, then in this order: keeps `latest` and every
/// tag an immutable or protected rule covers; keeps tags `name_regex` does not match (when
/// given); keeps tags `name_regex_keep` matches; orders what is left newest first (by publish
/// time) and keeps the first `keep_n`; keeps those published less than `older_than` ago; and
/// deletes the rest. Deleting a tag leaves its manifest to garbage collection once untagged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupPolicy {
    /// The policy's name, unique in its store ([`check_rule_name`]).
    pub name: String,
    /// The repositories it applies to.
    pub repositories: NamePattern,
    /// Keep this many of the newest candidate tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_n: Option<u32>,
    /// Delete only tags published longer ago than this (`30s`, `15m`, `12h`, `90d`, `2w`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub older_than: Option<Duration>,
    /// Delete only tags this matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_regex: Option<NameRegex>,
    /// Never delete tags this matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_regex_keep: Option<NameRegex>,
}

/// The largest `keep_n` accepted.
pub const MAX_KEEP_N: u32 = 100_000;

/// The longest `older_than` accepted: 100 years.
pub const MAX_OLDER_THAN: Duration = Duration::from_secs(100 * 365 * 86_400);

impl CleanupPolicy {
    /// Checks the name and that the values are possible: at least one of `keep_n`,
    /// `older_than` and `name_regex` (a policy with none would delete every tag but `latest`),
    /// `keep_n` at most [`MAX_KEEP_N`], `older_than` positive and at most [`MAX_OLDER_THAN`].
    pub fn validate(&self) -> Result<()> {
        check_rule_name(&self.name)?;
        if self.keep_n.is_none() && self.older_than.is_none() && self.name_regex.is_none() {
            return Err(invalid(format!(
                "cleanup policy {:?} sets none of keep_n, older_than and name_regex: it would \
                 delete every tag but latest",
                self.name
            )));
        }
        if let Some(n) = self.keep_n
            && n > MAX_KEEP_N
        {
            return Err(invalid(format!(
                "keep_n is {n}; the largest accepted is {MAX_KEEP_N}"
            )));
        }
        if let Some(age) = self.older_than
            && (age.is_zero() || age > MAX_OLDER_THAN)
        {
            return Err(invalid(format!(
                "older_than must be between 1s and 36500d, not {}s",
                age.as_secs()
            )));
        }
        Ok(())
    }

    /// Which of a repository's tags the policy deletes. `tags` are `(name, published_at in
    /// ms)`; `kept` says which tags rules protect; `now` is in ms. Returns indexes into `tags`.
    pub fn select(
        &self,
        tags: &[(String, i64)],
        kept: impl Fn(&str) -> bool,
        now: i64,
    ) -> Vec<usize> {
        let mut candidates: Vec<usize> = (0..tags.len())
            .filter(|&i| {
                let name = tags[i].0.as_str();
                name != "latest"
                    && !kept(name)
                    && self.name_regex.as_ref().is_none_or(|re| re.matches(name))
                    && !self
                        .name_regex_keep
                        .as_ref()
                        .is_some_and(|re| re.matches(name))
            })
            .collect();
        // Newest first; ties by name so a run is deterministic.
        candidates.sort_by(|&a, &b| tags[b].1.cmp(&tags[a].1).then(tags[a].0.cmp(&tags[b].0)));
        let skip = self.keep_n.map_or(0, |n| n as usize);
        let cutoff = self
            .older_than
            .map(|age| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        candidates
            .into_iter()
            .skip(skip)
            .filter(|&i| cutoff.is_none_or(|cutoff| tags[i].1 < cutoff))
            .collect()
    }
}

/// Parses `<number><unit>` with unit `s`, `m`, `h`, `d` or `w`, or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 15m, 1h, 2d or 1w"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// Formats a duration as [`parse_duration`] reads it, in the largest exact unit.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds > 0 && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_str(&super::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Checks a set of rules or policies: each valid, names unique, at most `max`.
pub fn check_set<'a>(names: impl IntoIterator<Item = &'a str>, max: usize) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        check_rule_name(name)?;
        if !seen.insert(name) {
            return Err(invalid(format!("the name {name:?} is used twice")));
        }
    }
    if seen.len() > max {
        return Err(invalid(format!(
            "{} rules given; at most {max} are accepted",
            seen.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> TagRule {
        serde_json::from_str(json).unwrap()
    }

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_whole_names_and_refuse_bad_input() {
        let p = NameRegex::parse("v.*").unwrap();
        assert!(p.matches("v1.2") && !p.matches("dev-v1"));
        assert!(NameRegex::parse("a|b").unwrap().matches("b"));
        assert!(!NameRegex::parse("a|b").unwrap().matches("ab"));
        for bad in ["", "(", "[z-a]"] {
            assert!(matches!(
                NameRegex::parse(bad),
                Err(Error::PolicyInvalid { .. })
            ));
        }
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(NameRegex::parse(&long).is_err());
        // A pattern whose compiled program exceeds the size limit is refused, not built.
        assert!(NameRegex::parse("(\\w{100}){100}").is_err());
    }

    #[test]
    fn rules_round_trip_as_json() {
        let protected = rule(
            r#"{"name":"release","repositories":"team/*","tags":"v.*","kind":"protected","push":"maintainer","delete":"owner"}"#,
        );
        assert_eq!(
            protected.kind,
            TagRuleKind::Protected {
                push: Role::Maintainer,
                delete: Role::Owner
            }
        );
        let text = serde_json::to_string(&protected).unwrap();
        assert_eq!(serde_json::from_str::<TagRule>(&text).unwrap(), protected);
        assert!(
            serde_json::from_str::<TagRule>(
                r#"{"name":"x","repositories":"*","tags":"(","kind":"immutable"}"#
            )
            .is_err()
        );
        assert!(
            rule(r#"{"name":"Bad Name","repositories":"*","tags":"x","kind":"immutable"}"#)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn guards_refuse_with_the_rule_name() {
        let repo = RepositoryName::parse("team/app").unwrap();
        let rules = [
            Arc::new(rule(
                r#"{"name":"frozen","repositories":"team/*","tags":"v[0-9].*","kind":"immutable"}"#,
            )),
            Arc::new(rule(
                r#"{"name":"main","repositories":"*","tags":"main","kind":"protected","push":"maintainer","delete":"owner"}"#,
            )),
            Arc::new(rule(
                r#"{"name":"elsewhere","repositories":"other/*","tags":".*","kind":"immutable"}"#,
            )),
        ];
        let developer = TagGuard::new(&repo, &rules, Some(Role::Developer));
        assert!(
            developer
                .check(&tag("v1"), TagChange::Push { moved: false })
                .is_ok()
        );
        let e = developer
            .check(&tag("v1"), TagChange::Push { moved: true })
            .unwrap_err();
        assert!(
            matches!(&e, Error::Denied { reason } if reason.contains("\"frozen\"")),
            "{e}"
        );
        let d = Digest::sha256(b"x");
        assert!(
            developer
                .check(&tag("v1"), TagChange::Delete { current: &d })
                .is_err()
        );
        assert!(
            developer
                .check(&tag("main"), TagChange::Push { moved: false })
                .is_err()
        );
        assert!(
            developer
                .check(&tag("other"), TagChange::Delete { current: &d })
                .is_ok()
        );
        let maintainer = TagGuard::new(&repo, &rules, Some(Role::Maintainer));
        assert!(
            maintainer
                .check(&tag("main"), TagChange::Push { moved: true })
                .is_ok()
        );
        assert!(
            maintainer
                .check(&tag("main"), TagChange::Delete { current: &d })
                .is_err()
        );
        // Trusted callers pass protection but not immutability.
        let trusted = TagGuard::new(&repo, &rules, None);
        assert!(
            trusted
                .check(&tag("main"), TagChange::Delete { current: &d })
                .is_ok()
        );
        assert!(
            trusted
                .check(&tag("v2"), TagChange::Delete { current: &d })
                .is_err()
        );
        assert!(trusted.guards("v2") && !trusted.guards("dev"));
        let expecting = TagGuard::none().expecting(Digest::sha256(b"y"));
        assert!(
            expecting
                .check(&tag("a"), TagChange::Delete { current: &d })
                .is_err()
        );
    }

    #[test]
    fn cleanup_selection_follows_the_documented_order() {
        let policy: CleanupPolicy = serde_json::from_str(
            r#"{"name":"p","repositories":"*","keep_n":1,"older_than":"1h","name_regex":"dev-.*","name_regex_keep":"dev-keep.*"}"#,
        )
        .unwrap();
        policy.validate().unwrap();
        let hour = 3_600_000;
        let now = 10 * hour;
        let tags: Vec<(String, i64)> = [
            ("latest", 0),
            ("dev-a", now - 5 * hour),      // old: deleted
            ("dev-b", now - 6 * hour),      // old: deleted
            ("dev-newest", now - 2 * hour), // kept by keep_n
            ("dev-recent", now - hour / 2), // newest overall: kept by keep_n…
            ("dev-keep-1", 0),              // kept by name_regex_keep
            ("release", 0),                 // not matched by name_regex
            ("dev-protected", 0),           // kept by a rule
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .collect();
        let selected: Vec<&str> = policy
            .select(&tags, |name| name == "dev-protected", now)
            .into_iter()
            .map(|i| tags[i].0.as_str())
            .collect();
        // dev-recent is the newest (kept by keep_n); dev-newest is younger than 1h? no, 2h old,
        // so it is deleted; dev-a and dev-b are older still.
        assert_eq!(selected, vec!["dev-newest", "dev-a", "dev-b"]);
        let json = serde_json::to_string(&policy).unwrap();
        assert!(json.contains(r#""older_than":"1h""#), "{json}");
    }

    #[test]
    fn impossible_policies_are_refused() {
        let parse = |json: &str| serde_json::from_str::<CleanupPolicy>(json);
        assert!(
            parse(r#"{"name":"p","repositories":"*"}"#)
                .unwrap()
                .validate()
                .is_err()
        );
        assert!(
            parse(r#"{"name":"p","repositories":"*","keep_n":1000001}"#)
                .unwrap()
                .validate()
                .is_err()
        );
        assert!(
            parse(r#"{"name":"p","repositories":"*","older_than":"0s"}"#)
                .unwrap()
                .validate()
                .is_err()
        );
        assert!(parse(r#"{"name":"p","repositories":"*","older_than":"soon"}"#).is_err());
        assert!(parse(r#"{"name":"p","repositories":"*","keep_n":-1}"#).is_err());
        assert!(parse(r#"{"name":"p","repositories":"*","keep_n":1,"extra":1}"#).is_err());
        assert!(check_set(["a", "a"], 10).is_err());
        assert!(check_set(["a", "b", "c"], 2).is_err());
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }
}
