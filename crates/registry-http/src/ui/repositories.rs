//! The repository list and namespaces: names the visitor may see, searched and paged.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use maud::{Markup, html};
use registry_core::{Action, Page as StorePage, RepositoryName, UsageScope};
use serde::Deserialize;

use super::layout::{self, link, size};
use super::session::{Visitor, visitor};
use super::{PageResult, Ui, UiError, query};

/// Rows per page.
pub(super) const PAGE: usize = 50;
/// Repository names read from the store in one go while looking for visible ones.
const SCAN_BATCH: usize = 500;
/// The most repository names one page reads before it stops and offers to go on.
const SCAN_LIMIT: usize = 10_000;

#[derive(Default, Deserialize)]
struct ListQuery {
    q: Option<String>,
    after: Option<String>,
}

/// `GET /ui/`: image repositories and package repositories the visitor may read.
pub(crate) async fn home(
    State(ui): State<Arc<Ui>>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let q: ListQuery = query(raw)?;
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let Listing {
        names: repositories,
        next,
        stopped,
    } = visible_repositories(&ui, &visitor, search, None, q.after.clone()).await?;
    let mut packages = ui.packages.repositories(&StorePage::first(1000)).await?;
    packages.retain(|r| {
        visitor.may(&ui, &r.name, Action::Pull) && search.is_none_or(|s| r.name.contains(s))
    });
    let namespaces = visitor.granted_namespaces(&ui);
    let body = html! {
        @if !namespaces.is_empty() {
            p.namespaces {
                "Namespaces you may read: "
                @for (i, namespace) in namespaces.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href={ "/ui/ns/" (namespace) } { (namespace) }
                }
            }
        }
        form.filter method="get" action="/ui/" role="search" {
            input type="search" name="q" value=[search] placeholder="Search repositories" aria-label="Search repositories";
            button type="submit" { "Search" }
        }
        h2 { "Image repositories" }
        @if repositories.is_empty() {
            p.muted { "No image repositories to show." }
        } @else {
            table.repositories {
                thead { tr { th { "Repository" } th { "Namespace" } } }
                tbody {
                    @for name in &repositories {
                        tr {
                            td { a href={ "/ui/r/" (name) } { (name) } }
                            td {
                                @if let Some((namespace, _)) = name.as_str().rsplit_once('/') {
                                    a href={ "/ui/ns/" (namespace) } { (namespace) }
                                }
                            }
                        }
                    }
                }
            }
        }
        (more_repositories(next.as_deref(), stopped, |next| link("/ui/", &[("q", search), ("after", Some(next))])))
        h2 { "Package repositories" }
        @if packages.is_empty() {
            p.muted { "No package repositories to show." }
        } @else {
            table.package-repositories {
                thead { tr { th { "Repository" } th { "Format" } th { "Kind" } } }
                tbody {
                    @for repository in &packages {
                        tr {
                            td { a href={ "/ui/packages/" (repository.name) } { (repository.name) } }
                            td { (repository.format.as_str()) }
                            td { (repository.kind.as_str()) }
                        }
                    }
                }
            }
        }
    };
    Ok(visitor.page(layout::page(&visitor, "Repositories", &[], body)))
}

/// A page of repository names the visitor may see.
struct Listing {
    names: Vec<RepositoryName>,
    /// Where the next page starts: the last name shown (never one the visitor may not see).
    next: Option<String>,
    /// Whether the page stopped at [`SCAN_LIMIT`] names read.
    stopped: bool,
}

impl Listing {
    fn end(names: Vec<RepositoryName>) -> Self {
        Listing {
            names,
            next: None,
            stopped: false,
        }
    }

    fn more(names: Vec<RepositoryName>) -> Self {
        let next = names.last().map(ToString::to_string);
        Listing {
            names,
            next,
            stopped: false,
        }
    }
}

/// A page of repository names the visitor may pull, in name order after `after`, that
/// contain `search` and lie under `namespace`, and where the next page starts. At most
/// [`SCAN_LIMIT`] names are read, so a visitor who may see few of many repositories gets a
/// short page rather than a page that reads them all.
async fn visible_repositories(
    ui: &Ui,
    visitor: &Visitor,
    search: Option<&str>,
    namespace: Option<&RepositoryName>,
    after: Option<String>,
) -> Result<Listing, UiError> {
    // A page starts after a name the visitor may see (one the page before showed), never
    // after any text: where hidden names lie must not be probed.
    if let Some(after) = &after {
        let visible = RepositoryName::parse(after)
            .is_ok_and(|name| visitor.may(ui, name.as_str(), Action::Pull))
            && namespace.is_none_or(|n| after.starts_with(&format!("{n}/")));
        if !visible {
            return Err(UiError::BadRequest(format!(
                "{after:?} is not a page marker"
            )));
        }
    }
    let below = namespace.map(|n| format!("{n}/"));
    // Names below a namespace start right after `<namespace>/` in byte order.
    let mut last = match (&after, &below) {
        (Some(after), _) => Some(after.clone()),
        (None, Some(below)) => Some(below.clone()),
        (None, None) => None,
    };
    let mut found = Vec::new();
    let mut scanned = 0;
    loop {
        let page = StorePage {
            last: last.clone(),
            limit: SCAN_BATCH,
        };
        let names = ui.registry.metadata().list_repositories(&page).await?;
        let complete = names.len() < SCAN_BATCH;
        for name in names {
            scanned += 1;
            last = Some(name.to_string());
            if let Some(below) = &below
                && !name.as_str().starts_with(below.as_str())
            {
                return Ok(Listing::end(found));
            }
            if search.is_none_or(|s| name.as_str().contains(s))
                && visitor.may(ui, name.as_str(), Action::Pull)
            {
                found.push(name);
                if found.len() == PAGE {
                    return Ok(Listing::more(found));
                }
            }
        }
        if complete {
            return Ok(Listing::end(found));
        }
        if scanned >= SCAN_LIMIT {
            // Only a name the visitor may see is ever a marker: after a stretch of names they
            // may not see, the listing stops and says so.
            let mut listing = Listing::more(found);
            listing.stopped = true;
            return Ok(listing);
        }
    }
}

/// `GET /ui/ns/<prefix>[/-/usage]`: the repositories of a namespace, or its storage.
pub(crate) async fn namespace(
    State(ui): State<Arc<Ui>>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let path = request
        .uri()
        .path()
        .trim_start_matches("/ui/ns/")
        .to_owned();
    let (prefix, usage) = match path.strip_suffix("/-/usage") {
        Some(prefix) => (prefix.to_owned(), true),
        None => (path, false),
    };
    let prefix = repository_name(&prefix)?;
    let crumbs = namespace_crumbs(&prefix);
    if usage {
        let metadata = ui.registry.metadata();
        let covered = crate::oci::may_read_namespace_usage(
            ui.auth.as_ref(),
            &visitor.caller(),
            &**metadata,
            &prefix,
        )
        .await?;
        if !covered {
            return Err(match visitor.user {
                None => UiError::LoginNeeded,
                Some(_) => UiError::Forbidden(format!(
                    "reading every repository under {prefix}, and {prefix} itself, is not granted"
                )),
            });
        }
        let usage = ui
            .registry
            .metadata()
            .storage_usage(&UsageScope::Namespace(prefix.clone()))
            .await?;
        let title = format!("Storage of {prefix}");
        return Ok(visitor.page(layout::page(&visitor, &title, &crumbs, usage_table(&usage))));
    }
    let q: ListQuery = query(raw)?;
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let Listing {
        names: repositories,
        next,
        stopped,
    } = visible_repositories(&ui, &visitor, search, Some(&prefix), q.after.clone()).await?;
    let own = visitor.may(&ui, prefix.as_str(), Action::Pull)
        && q.after.is_none()
        && ui.registry.metadata().repository_exists(&prefix).await?;
    let body = html! {
        p { a href={ "/ui/ns/" (prefix) "/-/usage" } { "Storage used by this namespace" } }
        form.filter method="get" action={ "/ui/ns/" (prefix) } role="search" {
            input type="search" name="q" value=[search] placeholder="Search this namespace" aria-label="Search this namespace";
            button type="submit" { "Search" }
        }
        @if own {
            p { "Also a repository: " a href={ "/ui/r/" (prefix) } { (prefix) } }
        }
        @if repositories.is_empty() {
            p.muted { "No repositories to show in this namespace." }
        } @else {
            table.repositories {
                thead { tr { th { "Repository" } } }
                tbody {
                    @for name in &repositories {
                        tr { td { a href={ "/ui/r/" (name) } { (name) } } }
                    }
                }
            }
        }
        (more_repositories(next.as_deref(), stopped, |next| link(&format!("/ui/ns/{prefix}"), &[("q", search), ("after", Some(next))])))
    };
    let title = format!("Namespace {prefix}");
    Ok(visitor.page(layout::page(&visitor, &title, &crumbs, body)))
}

/// The link to the next page of repositories, and a note when a page stopped reading.
fn more_repositories(next: Option<&str>, stopped: bool, link: impl Fn(&str) -> String) -> Markup {
    html! {
        @if let Some(next) = next {
            nav.pager { a rel="next" href=(link(next)) { "More repositories →" } }
        }
        @if stopped {
            p.muted { "This page stopped after reading " (SCAN_LIMIT) " repository names. Search, or open a namespace, to find others." }
        }
    }
}

pub(super) fn repository_name(text: &str) -> Result<RepositoryName, UiError> {
    RepositoryName::parse(text)
        .map_err(|e| UiError::NotFound(format!("{text:?} is not a repository name: {e}")))
}

/// Breadcrumbs to every namespace above a name (and the list of repositories).
pub(super) fn namespace_crumbs(name: &RepositoryName) -> Vec<(&str, String)> {
    let text = name.as_str();
    let mut crumbs = vec![("Repositories", "/ui/".to_owned())];
    for (at, _) in text.match_indices('/') {
        let namespace = &text[..at];
        let label = namespace.rsplit('/').next().unwrap_or(namespace);
        crumbs.push((label, format!("/ui/ns/{namespace}")));
    }
    crumbs
}

pub(super) fn usage_table(usage: &registry_core::StorageUsage) -> Markup {
    html! {
        dl.facts.usage {
            dt { "Total" } dd { (size(usage.manifest_bytes.saturating_add(usage.blob_bytes))) }
            dt { "Repositories" } dd { (usage.repositories) }
            dt { "Manifests" } dd { (usage.manifests) " (" (size(usage.manifest_bytes)) ")" }
            dt { "Blobs" } dd { (usage.blobs) " (" (size(usage.blob_bytes)) ", each counted once)" }
        }
    }
}
