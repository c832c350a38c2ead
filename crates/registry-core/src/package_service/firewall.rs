//! The firewall in the package service: rules read from the policy store (the same on every
//! instance), applied to the versions a client reads (blocked ones left out, tags moved off
//! them), to downloads and to publishes; decisions that blocked or warned recorded in the
//! audit log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use super::Packages;
use super::format::FormatRules;
use crate::error::{Error, Result};
use crate::firewall::{
    Advisories, AuditEntry, Candidate, Firewall, FirewallRule, Hit, Mode, PackageScreen,
};
use crate::metadata::{PolicyKind, PolicySource, StoredPolicy};
use crate::package::{Package, PackageVersion};
use crate::values::Timestamp;

/// How long the rules are used before they are read again.
const RULES_TTL: Duration = Duration::from_secs(2);

/// The most firewall rules stored.
pub const MAX_FIREWALL_RULES: usize = 200;

/// The most metadata decisions remembered as recorded before the memory is cleared.
const MAX_RECORDED: usize = 100_000;

/// The rules in force, their epoch (a digest of rules and advisories), and when they were read.
type Current = (Instant, Arc<Firewall>, Arc<str>);

/// A decision recorded: repository, package, version, action, rule.
type Recorded = (String, String, String, String, String);

/// What firewall decisions share across requests of one service.
#[derive(Debug)]
pub(super) struct FirewallState {
    advisories: Arc<Advisories>,
    /// The rules in force with their epoch (a digest of rules and advisories), and when read.
    current: Mutex<Option<Current>>,
    /// Read and download decisions recorded, so a packument read a thousand times is one
    /// audit entry per version and rule (cleared hourly).
    recorded: Mutex<(HashSet<Recorded>, Option<Instant>)>,
    /// How long audit entries are kept.
    retention: Duration,
    /// When this service last pruned the audit log.
    pruned: Mutex<Option<Instant>>,
}

/// How long audit entries are kept by default.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

impl Default for FirewallState {
    fn default() -> Self {
        FirewallState {
            advisories: Arc::default(),
            current: Mutex::default(),
            recorded: Mutex::default(),
            retention: DEFAULT_AUDIT_RETENTION,
            pruned: Mutex::default(),
        }
    }
}

/// The error of a blocked version.
fn blocked(hit: &Hit) -> Error {
    Error::Blocked {
        rule: hit.rule.clone(),
        reason: hit.reason.clone(),
    }
}

impl Packages {
    /// Loads OSV advisories for the firewall's `advisories` rules and npm's audit.
    pub fn with_advisories(mut self, advisories: Advisories) -> Self {
        self.firewall = Arc::new(FirewallState {
            advisories: Arc::new(advisories),
            retention: self.firewall.retention,
            ..FirewallState::default()
        });
        self
    }

    /// Keeps audit entries for `retention` ([`DEFAULT_AUDIT_RETENTION`] by default).
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.firewall = Arc::new(FirewallState {
            advisories: Arc::clone(&self.firewall.advisories),
            retention,
            ..FirewallState::default()
        });
        self
    }

    /// The advisories loaded.
    pub fn advisories(&self) -> &Advisories {
        &self.firewall.advisories
    }

    /// The firewall in force and its epoch.
    async fn firewall(&self) -> Result<(Arc<Firewall>, Arc<str>)> {
        if let Some((read, firewall, epoch)) = &*self
            .firewall
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            && read.elapsed() < RULES_TTL
        {
            return Ok((Arc::clone(firewall), Arc::clone(epoch)));
        }
        self.prune_audit_log().await?;
        let stored = self.metadata.policies(PolicyKind::FirewallRule).await?;
        let mut hasher = sha2::Sha256::new();
        for policy in &stored {
            hasher.update(policy.name.as_bytes());
            hasher.update([0]);
            hasher.update(policy.document.as_bytes());
            hasher.update([0]);
        }
        hasher.update(self.firewall.advisories.fingerprint());
        let epoch: Arc<str> = hex::encode(&hasher.finalize()[..8]).into();
        // Unchanged rules keep their compiled patterns.
        let unchanged = self
            .firewall
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(_, _, current)| *current == epoch)
            .map(|(_, firewall, _)| Arc::clone(firewall));
        let firewall = match unchanged {
            Some(firewall) => firewall,
            None => Arc::new(Firewall::new(
                parse_rules(stored)?,
                Arc::clone(&self.firewall.advisories),
            )),
        };
        *self
            .firewall
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), Arc::clone(&firewall), Arc::clone(&epoch)));
        Ok((firewall, epoch))
    }

    /// Every stored firewall rule with its source, by name.
    pub async fn firewall_rules(&self) -> Result<Vec<(FirewallRule, PolicySource)>> {
        self.metadata
            .policies(PolicyKind::FirewallRule)
            .await?
            .into_iter()
            .map(|stored| parse_rule(&stored).map(|rule| (rule, stored.source)))
            .collect()
    }

    /// Creates or replaces a firewall rule managed by the admin API; returns whether it was
    /// created.
    ///
    /// Errors: [`Error::PolicyInvalid`] for a bad rule or too many; [`Error::Denied`] when
    /// the configuration manages a rule of that name.
    pub async fn put_firewall_rule(&self, rule: &FirewallRule) -> Result<bool> {
        rule.validate()?;
        let created = self
            .metadata
            .put_policy(&stored(PolicySource::Api, rule)?, MAX_FIREWALL_RULES)
            .await?;
        self.forget_rules();
        Ok(created)
    }

    /// Deletes a firewall rule managed by the admin API; returns whether it existed.
    pub async fn delete_firewall_rule(&self, name: &str) -> Result<bool> {
        let deleted = self
            .metadata
            .delete_policy(PolicyKind::FirewallRule, name, PolicySource::Api)
            .await?;
        self.forget_rules();
        Ok(deleted)
    }

    /// Makes the configuration's firewall rules the stored ones of source
    /// [`PolicySource::Config`]; every rule is validated first, and on error nothing changes.
    pub async fn apply_configured_firewall_rules(&self, rules: &[FirewallRule]) -> Result<()> {
        let mut names = HashSet::new();
        for rule in rules {
            rule.validate()?;
            if !names.insert(rule.name.as_str()) {
                return Err(Error::PolicyInvalid {
                    reason: format!("firewall rule {} is configured twice", rule.name),
                });
            }
        }
        let stored = rules
            .iter()
            .map(|r| stored(PolicySource::Config, r))
            .collect::<Result<Vec<_>>>()?;
        self.metadata
            .replace_policies(
                PolicyKind::FirewallRule,
                PolicySource::Config,
                &stored,
                MAX_FIREWALL_RULES,
            )
            .await?;
        self.forget_rules();
        Ok(())
    }

    fn forget_rules(&self) {
        *self
            .firewall
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The audit log, newest first (see [`crate::FirewallAudit::audit_entries`]).
    pub async fn firewall_audit(
        &self,
        repository: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.metadata.audit_entries(repository, before, limit).await
    }

    /// A revision that also changes with the firewall: its rules, its advisories, and — while
    /// an age gate applies — the time, as finely as the gate needs.
    pub(super) async fn screened_revision(
        &self,
        repository: &str,
        revision: String,
    ) -> Result<String> {
        let (firewall, epoch) = self.firewall().await?;
        if !firewall.applies_to(repository) {
            return Ok(revision);
        }
        let period = match firewall.age_granularity(repository) {
            Some(step) => Timestamp::now().0 / i64::try_from(step.as_millis()).unwrap_or(1).max(1),
            None => 0,
        };
        Ok(format!("{revision}-f{epoch}{period:x}"))
    }

    /// Leaves out of a package the versions the firewall blocks for `repository` (moving tags
    /// off them), records what it blocked or warned about, and gives the package the
    /// firewall's revision.
    pub(super) async fn screen(
        &self,
        rules: &dyn FormatRules,
        repository: &str,
        package: &mut Package,
        upstream: bool,
    ) -> Result<()> {
        let (firewall, _) = self.firewall().await?;
        if !firewall.applies_to(repository) {
            return Ok(());
        }
        let now = Timestamp::now();
        let mut decisions = Vec::new();
        let mut removed = Vec::new();
        let view = firewall.screen_package(repository, &package.name, rules);
        let name = package.name.clone();
        package.versions.retain(|version| {
            let hits = check(&view, rules, repository, &name, version, upstream, now);
            let Some(first) = hits.first() else {
                return true;
            };
            decisions.push(entry(
                repository,
                &package.name,
                &version.version,
                "metadata",
                first,
            ));
            if first.mode == Mode::Block {
                removed.push(version.version.clone());
                false
            } else {
                true
            }
        });
        if !removed.is_empty() {
            let blocked_latest = package
                .tags
                .get("latest")
                .filter(|v| removed.contains(v))
                .cloned();
            package.tags.retain(|_, version| !removed.contains(version));
            if let Some(next) =
                blocked_latest.and_then(|blocked| standing_in(rules, &package.versions, &blocked))
            {
                package.tags.insert("latest".to_owned(), next);
            }
        }
        package.revision = self
            .screened_revision(repository, std::mem::take(&mut package.revision))
            .await?;
        self.record_once(decisions).await
    }

    /// Checks one version a client downloads or publishes under the rules of each of
    /// `repositories` (a virtual repository's and its member's): a block is
    /// [`Error::Blocked`] naming the rule; blocks and warnings are recorded (downloads once per
    /// version and rule per hour, publishes every time).
    pub(super) async fn check_version(
        &self,
        rules: &dyn FormatRules,
        repositories: &[&str],
        package: &str,
        version: &PackageVersion,
        upstream: bool,
        action: &str,
    ) -> Result<()> {
        let (firewall, _) = self.firewall().await?;
        let now = Timestamp::now();
        let mut block = None;
        let mut decisions = Vec::new();
        for (i, repository) in repositories.iter().enumerate() {
            if repositories[..i].contains(repository) || !firewall.applies_to(repository) {
                continue;
            }
            let view = firewall.screen_package(repository, package, rules);
            let hits = check(&view, rules, repository, package, version, upstream, now);
            if let Some(first) = hits.first() {
                decisions.push(entry(repository, package, &version.version, action, first));
                if first.mode == Mode::Block && block.is_none() {
                    block = Some(blocked(first));
                }
            }
        }
        if action == "publish" {
            if !decisions.is_empty() {
                self.metadata.record_decisions(&decisions).await?;
            }
        } else {
            self.record_once(decisions).await?;
        }
        match block {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Checks the download of a hosted version (of `member`) under the rules of each of
    /// `repositories`.
    pub(super) async fn guard_hosted(
        &self,
        rules: &dyn FormatRules,
        repositories: &[&str],
        member: &str,
        key: &str,
        version: &str,
    ) -> Result<()> {
        let (firewall, _) = self.firewall().await?;
        if !repositories.iter().any(|r| firewall.applies_to(r)) {
            return Ok(());
        }
        let Some(package) = self.metadata.package(member, key).await? else {
            return Ok(());
        };
        match package.version(version) {
            Some(found) => {
                self.check_version(rules, repositories, key, found, false, "download")
                    .await
            }
            None => Ok(()),
        }
    }

    /// Checks the download of a version an upstream declares, before it is fetched, under
    /// the rules of each of `repositories`.
    pub(super) async fn guard_upstream(
        &self,
        rules: &dyn FormatRules,
        repositories: &[&str],
        package: &super::format::UpstreamPackage,
        version: &str,
    ) -> Result<()> {
        match package.package.version(version) {
            Some(found) => {
                let key = &package.package.name;
                self.check_version(rules, repositories, key, found, true, "download")
                    .await
            }
            None => Ok(()),
        }
    }

    /// A repository revision (of pages listing packages) that also changes with the firewall.
    pub(super) async fn screened_repository_revision(
        &self,
        repository: &str,
        revision: u64,
    ) -> Result<u64> {
        let screened = self
            .screened_revision(repository, revision.to_string())
            .await?;
        if screened == revision.to_string() {
            return Ok(revision);
        }
        let digest = sha2::Sha256::digest(screened.as_bytes());
        Ok(u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")))
    }

    /// Records decisions not recorded within the hour (per version, action and rule).
    async fn record_once(&self, decisions: Vec<AuditEntry>) -> Result<()> {
        if decisions.is_empty() {
            return Ok(());
        }
        let fresh: Vec<AuditEntry> = {
            let mut recorded = self
                .firewall
                .recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (seen, since) = &mut *recorded;
            if since.is_none_or(|s| s.elapsed() > Duration::from_secs(3600))
                || seen.len() > MAX_RECORDED
            {
                seen.clear();
                *since = Some(Instant::now());
            }
            decisions
                .into_iter()
                .filter(|d| {
                    seen.insert((
                        d.repository.clone(),
                        d.package.clone(),
                        d.version.clone(),
                        d.action.clone(),
                        d.rule.clone(),
                    ))
                })
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        self.metadata.record_decisions(&fresh).await
    }

    /// Deletes audit entries older than the retention, at most hourly (any instance may).
    async fn prune_audit_log(&self) -> Result<()> {
        let due = {
            let mut pruned = self
                .firewall
                .pruned
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = pruned.is_none_or(|at| at.elapsed() > Duration::from_secs(3600));
            if due {
                *pruned = Some(Instant::now());
            }
            due
        };
        if due {
            let millis = i64::try_from(self.firewall.retention.as_millis()).unwrap_or(i64::MAX);
            let before = Timestamp(Timestamp::now().0.saturating_sub(millis));
            self.metadata.prune_audit(before).await?;
        }
        Ok(())
    }
}

fn check(
    view: &PackageScreen<'_>,
    rules: &dyn FormatRules,
    repository: &str,
    package: &str,
    version: &PackageVersion,
    upstream: bool,
    now: Timestamp,
) -> Vec<Hit> {
    if view.is_empty() {
        return Vec::new();
    }
    let license = rules.license(&version.metadata);
    view.check(
        &Candidate {
            format: rules.format(),
            repository,
            name: package,
            version: &version.version,
            published: version.created_at,
            upstream,
            license: license.as_deref(),
        },
        rules,
        now,
    )
}

fn entry(repository: &str, package: &str, version: &str, action: &str, hit: &Hit) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: Timestamp::now(),
        repository: repository.to_owned(),
        package: package.to_owned(),
        version: version.to_owned(),
        action: action.to_owned(),
        rule: hit.rule.clone(),
        mode: hit.mode,
        reason: hit.reason.clone(),
    }
}

fn parse_rule(stored: &StoredPolicy) -> Result<FirewallRule> {
    serde_json::from_str(&stored.document).map_err(|e| {
        Error::backend(format!(
            "stored firewall rule {:?} does not parse: {e}",
            stored.name
        ))
    })
}

fn parse_rules(stored: Vec<StoredPolicy>) -> Result<Vec<FirewallRule>> {
    stored.iter().map(parse_rule).collect()
}

fn stored(source: PolicySource, rule: &FirewallRule) -> Result<StoredPolicy> {
    Ok(StoredPolicy {
        kind: PolicyKind::FirewallRule,
        name: rule.name.clone(),
        source,
        document: serde_json::to_string(rule).map_err(Error::backend)?,
    })
}

/// The version `latest` moves to when the firewall blocks the one it named: the highest
/// release not above it, else the lowest release above it, else the highest pre-release — a
/// blocked `1.0.0` never sends clients to `2.0.0-beta` or to a newer major while `0.9.0` is
/// there.
fn standing_in(
    rules: &dyn FormatRules,
    versions: &[crate::package::PackageVersion],
    blocked: &str,
) -> Option<String> {
    use std::cmp::Ordering::Greater;
    let listed: Vec<&str> = versions
        .iter()
        .filter(|v| v.status == crate::package::VersionStatus::Default)
        .map(|v| v.version.as_str())
        .collect();
    // Orders need not be total (Maven's): a sort that never fails.
    let listed = crate::values::tolerant_sort(listed, &|a, b| rules.compare_versions(a, b));
    let releases = || listed.iter().filter(|v| !rules.is_prerelease(v));
    let above = |v: &&&str| rules.compare_versions(v, blocked) == Greater;
    releases()
        .rfind(|v| !above(v))
        .or_else(|| releases().find(above))
        .or(listed.last())
        .map(|v| (*v).to_owned())
}
