//! Cleanup policies: deleting old tags by the rules of [`CleanupPolicy`].
//!
//! A run reads the stored policies and tag rules, walks every repository a policy covers, and
//! deletes the tags the policy selects (see [`CleanupPolicy`] for the order of its checks).
//! `latest` and every tag an immutable or protected rule covers are always kept. A tag is
//! deleted only if it still points at the manifest it pointed at when listed, so a tag pushed
//! again during the run is kept. Manifests left untagged are then the collector's to review.
//!
//! ```no_run
//! # async fn demo(registry: registry_core::OciRegistry) -> registry_core::Result<()> {
//! let report = registry_gc::cleanup::run(&registry, true, |d| {
//!     println!("would delete {}:{} ({})", d.repository, d.tag, d.policy);
//! })
//! .await?;
//! println!("{} of {} tags", report.deleted, report.tags_seen);
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use registry_core::{
    CleanupPolicy, Digest, Error, OciRegistry, Page, RepositoryName, Result, Tag, TagGuard,
    TagOrder, TagQuery, Timestamp,
};

/// Tags read per page while walking a repository.
const PAGE: usize = 1000;

/// A tag a run deleted (or, in a dry run, would delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The policy that selected it.
    pub policy: String,
    /// Its repository.
    pub repository: RepositoryName,
    /// The tag.
    pub tag: Tag,
    /// The manifest it pointed at.
    pub digest: Digest,
    /// When it was last published.
    pub published_at: Timestamp,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Policies applied.
    pub policies: usize,
    /// Repositories at least one policy covered.
    pub repositories: u64,
    /// Tags in those repositories.
    pub tags_seen: u64,
    /// Tags deleted (or, in a dry run, that would be).
    pub deleted: u64,
    /// Selected tags kept because they changed during the run, or a rule added meanwhile
    /// covers them.
    pub skipped: u64,
}

/// Runs every stored cleanup policy once; `on_deletion` hears of each tag deleted (or, with
/// `dry_run`, each tag that would be).
pub async fn run(
    registry: &OciRegistry,
    dry_run: bool,
    on_deletion: impl FnMut(&Deletion),
) -> Result<CleanupReport> {
    let policies: Vec<CleanupPolicy> = registry
        .cleanup_policies()
        .await?
        .into_iter()
        .map(|(policy, _)| policy)
        .collect();
    run_policies(registry, &policies, dry_run, on_deletion).await
}

/// Runs the given cleanup policies once (stored or not), as [`run`] does.
pub async fn run_policies(
    registry: &OciRegistry,
    policies: &[CleanupPolicy],
    dry_run: bool,
    mut on_deletion: impl FnMut(&Deletion),
) -> Result<CleanupReport> {
    let rules: Vec<Arc<_>> = registry
        .tag_rules()
        .await?
        .into_iter()
        .map(|(rule, _)| Arc::new(rule))
        .collect();
    let mut report = CleanupReport {
        policies: policies.len(),
        ..CleanupReport::default()
    };
    let now = Timestamp::now();
    let metadata = registry.metadata();
    let mut page = Page::first(PAGE);
    loop {
        let repositories = metadata.list_repositories(&page).await?;
        for repository in &repositories {
            let covering: Vec<&CleanupPolicy> = policies
                .iter()
                .filter(|p| p.repositories.matches(repository))
                .collect();
            if covering.is_empty() {
                continue;
            }
            report.repositories += 1;
            let guard = TagGuard::new(repository, &rules, None);
            let tags = all_tags(registry, repository).await?;
            report.tags_seen += tags.len() as u64;
            let keys: Vec<(String, i64)> = tags
                .iter()
                .map(|(tag, _, published)| (tag.to_string(), published.0))
                .collect();
            let mut chosen = HashSet::new();
            for policy in covering {
                for index in policy.select(&keys, |name| guard.guards(name), now.0) {
                    if !chosen.insert(index) {
                        continue;
                    }
                    let (tag, digest, published_at) = &tags[index];
                    let deletion = Deletion {
                        policy: policy.name.clone(),
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                        published_at: *published_at,
                    };
                    if !dry_run {
                        let expecting = guard.clone().expecting(digest.clone());
                        let deleted = metadata.delete_tag(repository, tag, &expecting).await;
                        // Changed behind the service's back: it must not keep serving the tag.
                        registry.forget(repository);
                        match deleted {
                            Ok(_) => {}
                            // Pushed again, covered by a new rule, or deleted by someone else.
                            Err(Error::Denied { .. } | Error::ManifestUnknown { .. }) => {
                                report.skipped += 1;
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    report.deleted += 1;
                    on_deletion(&deletion);
                }
            }
        }
        match repositories.last() {
            Some(last) if repositories.len() == PAGE => page = Page::after(last.as_str(), PAGE),
            _ => break,
        }
    }
    metrics::counter!("registry_cleanup_runs_total", "dry_run" => dry_run.to_string()).increment(1);
    if !dry_run {
        metrics::counter!("registry_cleanup_tags_deleted_total").increment(report.deleted);
    }
    Ok(report)
}

/// Every tag of a repository with its manifest and publish time.
async fn all_tags(
    registry: &OciRegistry,
    repository: &RepositoryName,
) -> Result<Vec<(Tag, Digest, Timestamp)>> {
    let mut tags = Vec::new();
    let mut query = TagQuery {
        order: TagOrder::Name,
        limit: PAGE,
        ..TagQuery::default()
    };
    loop {
        let page = match registry.metadata().tag_details(repository, &query).await {
            Ok(page) => page,
            // Emptied and removed meanwhile.
            Err(Error::NameUnknown { .. }) => return Ok(tags),
            Err(e) => return Err(e),
        };
        let full = page.len() == PAGE;
        query.after = page.last().map(|t| t.marker());
        tags.extend(page.into_iter().map(|t| (t.name, t.digest, t.published_at)));
        if !full {
            return Ok(tags);
        }
    }
}

/// Runs the stored cleanup policies every `interval` until `stop` resolves (which also ends a
/// run in progress), the first time one interval after the start. A failed run is logged and
/// counted (`registry_cleanup_failures_total`), and the next one comes on schedule.
pub async fn run_every(
    registry: OciRegistry,
    interval: std::time::Duration,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let pass = run(&registry, false, |d| {
            tracing::info!(policy = %d.policy, repository = %d.repository, tag = %d.tag, "cleanup deleted a tag");
        });
        // Stopping mid-run is safe: each tag is deleted in its own transaction.
        let result = tokio::select! {
            () = &mut stop => return,
            result = pass => result,
        };
        match result {
            Ok(report) => tracing::info!(
                policies = report.policies,
                repositories = report.repositories,
                tags = report.tags_seen,
                deleted = report.deleted,
                skipped = report.skipped,
                "cleanup run finished"
            ),
            Err(error) => {
                metrics::counter!("registry_cleanup_failures_total").increment(1);
                tracing::error!(%error, "cleanup run failed");
            }
        }
    }
}
