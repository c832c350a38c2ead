//! Tag rules and cleanup policies: the ones the visitor may manage, a dry run of a policy
//! listing what it would delete, and the run itself, only from the dry run's page.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use maud::{Markup, html};
use registry_core::{Action, Actor, CleanupPolicy, Digest, Error, Reference, RepositoryName, Tag};
use registry_gc::cleanup::{CleanupReport, Deletion};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{self, short_digest, time};
use super::session::{Form, Visitor, visitor};
use super::{PageResult, Ui, UiError, query};

/// The most deletions a run's page lists (its counts cover them all).
const MAX_LISTED: usize = 1_000;

#[derive(Default, Deserialize)]
struct CleanupQuery {
    dry_run: Option<String>,
}

fn may_manage(ui: &Ui, visitor: &Visitor, pattern: &registry_core::NamePattern) -> bool {
    crate::auth::may_manage_rules(ui.auth.as_ref(), &visitor.caller(), pattern)
}

fn crumbs() -> Vec<(&'static str, String)> {
    vec![("Cleanup", "/ui/cleanup".to_owned())]
}

/// `GET /ui/cleanup[?dry_run=<policy>]`.
pub(crate) async fn overview(
    State(ui): State<Arc<Ui>>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let q: CleanupQuery = query(raw)?;
    if let Some(name) = q.dry_run {
        let policy = policy(&ui, &visitor, &name).await?;
        let (report, listed) = run_policy(&ui, &policy, true).await?;
        let body = html! {
            (report_summary(&report, true))
            (deletions(&listed, report.deleted))
            @if !listed.is_empty() {
                form method="post" action=(layout::link("/ui/cleanup", &[("policy", Some(&policy.name))])) {
                    input type="hidden" name="csrf" value=(visitor.csrf);
                    @for deletion in &listed {
                        input type="hidden" name="tag" value={ (deletion.repository) ":" (deletion.tag) "@" (deletion.digest) };
                    }
                    p { "Deleting removes exactly the tags listed, each only if it still points at the manifest shown." }
                    button.danger type="submit" { "Delete these " (listed.len()) " tags" }
                    " "
                    a href="/ui/cleanup" { "Cancel" }
                }
            }
        };
        let title = format!("Dry run of {}", policy.name);
        return Ok(visitor.page(layout::page(&visitor, &title, &crumbs(), body)));
    }
    if visitor.user.is_none() && ui.auth.is_some() && !visitor.is_admin(&ui) {
        return Err(UiError::LoginNeeded);
    }
    let rules: Vec<_> = ui
        .registry
        .tag_rules()
        .await?
        .into_iter()
        .filter(|(rule, _)| may_manage(&ui, &visitor, &rule.repositories))
        .collect();
    let policies: Vec<_> = ui
        .registry
        .cleanup_policies()
        .await?
        .into_iter()
        .filter(|(policy, _)| may_manage(&ui, &visitor, &policy.repositories))
        .collect();
    let body = html! {
        p.muted { "Rules and policies are managed in the configuration file or through " code { "/api/v1/tag-rules" } " and " code { "/api/v1/cleanup-policies" } "; shown here are those you may manage." }
        h2 { "Tag rules" }
        @if rules.is_empty() {
            p.muted { "No tag rules to show." }
        } @else {
            table.tag-rules {
                thead { tr { th { "Rule" } th { "Repositories" } th { "Settings" } th { "Source" } } }
                tbody {
                    @for (rule, source) in &rules {
                        tr {
                            td { (rule.name) }
                            td { code { (rule.repositories.as_str()) } }
                            td { (settings(serde_json::to_value(rule))) }
                            td { (source.as_str()) }
                        }
                    }
                }
            }
        }
        h2 { "Cleanup policies" }
        @if policies.is_empty() {
            p.muted { "No cleanup policies to show." }
        } @else {
            table.cleanup-policies {
                thead { tr { th { "Policy" } th { "Repositories" } th { "Settings" } th { "Source" } th {} } }
                tbody {
                    @for (policy, source) in &policies {
                        tr {
                            td { (policy.name) }
                            td { code { (policy.repositories.as_str()) } }
                            td { (settings(serde_json::to_value(policy))) }
                            td { (source.as_str()) }
                            td { a.button href=(layout::link("/ui/cleanup", &[("dry_run", Some(&policy.name))])) { "Dry run" } }
                        }
                    }
                }
            }
        }
    };
    Ok(visitor.page(layout::page(&visitor, "Tag rules and cleanup", &[], body)))
}

/// `POST /ui/cleanup`: runs one policy for real (the button of its dry run's page).
pub(crate) async fn run(
    State(ui): State<Arc<Ui>>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let q: RunQuery = query(raw)?;
    let name = q
        .policy
        .ok_or_else(|| UiError::BadRequest("say which policy to run".into()))?;
    // Decided before the form is read.
    let policy = policy(&ui, &visitor, &name).await?;
    let form = Form::read(&visitor, request).await?;
    let chosen: Vec<(RepositoryName, Tag, Digest)> = form
        .values("tag")
        .take(MAX_LISTED + 1)
        .map(|entry| chosen_tag(&policy, entry))
        .collect::<Result<_, _>>()?;
    if chosen.len() > MAX_LISTED {
        return Err(UiError::BadRequest(format!(
            "at most {MAX_LISTED} tags are deleted at once"
        )));
    }
    // Only what the policy selects now: a hand-made form deletes nothing else.
    let mut selected = std::collections::HashSet::new();
    registry_gc::cleanup::run_policies(&ui.registry, std::slice::from_ref(&policy), true, |d| {
        let key = (d.repository.clone(), d.tag.clone(), d.digest.clone());
        if chosen.contains(&key) {
            selected.insert(key);
        }
    })
    .await?;
    let mut outcomes = Vec::with_capacity(chosen.len());
    for (repository, tag, digest) in chosen {
        let result = if !visitor.may(&ui, repository.as_str(), Action::Delete) {
            Err(Error::Denied {
                reason: format!("delete on {repository} is not granted"),
            })
        } else if !selected.contains(&(repository.clone(), tag.clone(), digest.clone())) {
            Err(Error::Conflict {
                reason: "kept: the policy does not select it (now)".into(),
            })
        } else {
            delete_if_unmoved(&ui, &visitor, &repository, &tag, &digest).await
        };
        outcomes.push((format!("{repository}:{tag}"), result));
    }
    let body = html! {
        (layout::outcomes(&outcomes))
        p { a href="/ui/cleanup" { "Back to cleanup" } }
    };
    let title = format!("Ran {}", policy.name);
    Ok(visitor.page(layout::page(&visitor, &title, &crumbs(), body)))
}

#[derive(Default, Deserialize)]
struct RunQuery {
    policy: Option<String>,
}

/// A `repository:tag@digest` of a dry run's form, in a repository the policy covers.
fn chosen_tag(
    policy: &CleanupPolicy,
    entry: &str,
) -> Result<(RepositoryName, Tag, Digest), UiError> {
    let bad = || UiError::BadRequest(format!("{entry:?} is not a tag of this policy's dry run"));
    let (reference, digest) = entry.split_once('@').ok_or_else(bad)?;
    let (repository, tag) = reference.rsplit_once(':').ok_or_else(bad)?;
    let repository = RepositoryName::parse(repository).map_err(|_| bad())?;
    if !policy.repositories.matches(&repository) {
        return Err(bad());
    }
    let tag = Tag::parse(tag).map_err(|_| bad())?;
    let digest = Digest::parse(digest).map_err(|_| bad())?;
    Ok((repository, tag, digest))
}

/// Deletes a tag the dry run showed, under the tag rules as the visitor, unless it has been
/// moved to another manifest since (then it is kept, saying why).
async fn delete_if_unmoved(
    ui: &Ui,
    visitor: &Visitor,
    repository: &RepositoryName,
    tag: &Tag,
    digest: &Digest,
) -> Result<(), Error> {
    let reference = Reference::Tag(tag.clone());
    let current = ui
        .registry
        .metadata()
        .manifest(repository, &reference)
        .await?;
    if current.as_ref().map(|m| &m.digest) != Some(digest) {
        return Err(Error::Conflict {
            reason: "kept: it was moved or deleted since the dry run".into(),
        });
    }
    let actor = match &ui.auth {
        None => Actor::trusted(),
        Some(auth) => visitor.caller().actor(&*auth.authorizer, repository),
    };
    ui.registry
        .delete_manifest(repository, &reference, &actor)
        .await
}

/// A stored policy the visitor may manage.
///
/// One who may not manage it learns nothing of whether it exists: only administrators hear
/// of an unknown name.
async fn policy(ui: &Ui, visitor: &Visitor, name: &str) -> Result<CleanupPolicy, UiError> {
    let policy = ui
        .registry
        .cleanup_policies()
        .await?
        .into_iter()
        .map(|(policy, _)| policy)
        .find(|p| p.name == name);
    match policy {
        Some(policy) if may_manage(ui, visitor, &policy.repositories) => Ok(policy),
        None if visitor.is_admin(ui) => Err(UiError::NotFound(format!(
            "no cleanup policy named {name:?}"
        ))),
        _ if visitor.user.is_none() && ui.auth.is_some() => Err(UiError::LoginNeeded),
        _ => Err(UiError::Forbidden(format!(
            "running {name:?} needs the admin role, or the owner role on every repository it covers"
        ))),
    }
}

async fn run_policy(
    ui: &Ui,
    policy: &CleanupPolicy,
    dry_run: bool,
) -> Result<(CleanupReport, Vec<Deletion>), UiError> {
    let mut listed = Vec::new();
    let report = registry_gc::cleanup::run_policies(
        &ui.registry,
        std::slice::from_ref(policy),
        dry_run,
        |deletion| {
            if listed.len() < MAX_LISTED {
                listed.push(deletion.clone());
            }
        },
    )
    .await?;
    Ok((report, listed))
}

fn report_summary(report: &CleanupReport, dry_run: bool) -> Markup {
    html! {
        p.notice role="status" {
            @if dry_run { "Would delete " } @else { "Deleted " }
            strong { (report.deleted) } " of " (report.tags_seen) " tags in " (report.repositories) " repositories"
            @if report.skipped > 0 { " (" (report.skipped) " kept because they changed or a rule now covers them)" }
            "."
        }
    }
}

fn deletions(listed: &[Deletion], total: u64) -> Markup {
    html! {
        @if !listed.is_empty() {
            table.deletions {
                thead { tr { th { "Repository" } th { "Tag" } th { "Digest" } th { "Pushed" } } }
                tbody {
                    @for deletion in listed {
                        tr {
                            td { a href={ "/ui/r/" (deletion.repository) } { (deletion.repository) } }
                            td { (deletion.tag) }
                            td { (short_digest(deletion.digest.as_str())) }
                            td { (time(deletion.published_at)) }
                        }
                    }
                }
            }
            @if total > listed.len() as u64 {
                p.muted { "… and " (total - listed.len() as u64) " more." }
            }
        }
    }
}

/// A rule's or policy's settings besides its name and repositories, as `key: value` lines.
fn settings(document: serde_json::Result<Value>) -> Markup {
    // Rules and policies always serialize (their fields are strings, numbers and enums).
    let Ok(Value::Object(fields)) = document else {
        return html! {};
    };
    html! {
        @for (key, value) in fields.iter().filter(|(k, _)| *k != "name" && *k != "repositories") {
            div { span.muted { (key) ": " } code { (match value { Value::String(s) => s.clone(), other => other.to_string() }) } }
        }
    }
}
