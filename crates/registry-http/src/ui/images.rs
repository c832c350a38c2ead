//! Image pages: the repository list, namespaces, a repository's tags, a manifest, storage
//! usage, and deleting tags.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use registry_core::{
    Action, Actor, BlobStoreExt, Digest, NamePattern, Page as StorePage, Reference, RepositoryName,
    Tag, TagDetail, TagQuery, UsageScope,
};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{self, copy_box, link, short_digest, size, time};
use super::session::{Form, Visitor, visitor};
use super::{PageResult, Ui, UiError, query};

/// Rows per page.
const PAGE: usize = 50;
/// Repository names read from the store in one go while looking for visible ones.
const SCAN_BATCH: usize = 500;
/// The most repository names one page reads before it stops and offers to go on.
const SCAN_LIMIT: usize = 10_000;
/// The most tags deleted by one form.
const MAX_DELETE: usize = 1_000;
/// The largest image config read to show a manifest's platform and history.
const MAX_CONFIG: u64 = 1024 * 1024;
/// The largest manifest, and config, read for the platforms column of a tags page (larger ones
/// show none), and how many rows are looked up at once: a page holds at most
/// `ROW_LOOKUPS × (MAX_ROW_MANIFEST + MAX_ROW_CONFIG)` bytes whatever was pushed.
const MAX_ROW_MANIFEST: u64 = 256 * 1024;
const MAX_ROW_CONFIG: u64 = 64 * 1024;
const ROW_LOOKUPS: usize = 4;
/// The most referrers listed on a manifest's page.
const MAX_REFERRERS: usize = 500;

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
        // Reading a namespace's storage needs a grant over all of it, as in the API.
        let covered = match (&ui.auth, NamePattern::parse(&format!("{prefix}/*"))) {
            (None, _) => true,
            (Some(auth), Ok(pattern)) => visitor
                .caller()
                .role_over(&*auth.authorizer, &pattern)
                .is_some(),
            (Some(_), Err(_)) => false,
        };
        if !covered {
            return Err(match visitor.user {
                None => UiError::LoginNeeded,
                Some(_) => UiError::Forbidden(format!(
                    "reading every repository under {prefix} is not granted"
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

fn repository_name(text: &str) -> Result<RepositoryName, UiError> {
    RepositoryName::parse(text)
        .map_err(|e| UiError::NotFound(format!("{text:?} is not a repository name: {e}")))
}

/// Breadcrumbs to every namespace above a name (and the list of repositories).
fn namespace_crumbs(name: &RepositoryName) -> Vec<(&str, String)> {
    let text = name.as_str();
    let mut crumbs = vec![("Repositories", "/ui/".to_owned())];
    for (at, _) in text.match_indices('/') {
        let namespace = &text[..at];
        let label = namespace.rsplit('/').next().unwrap_or(namespace);
        crumbs.push((label, format!("/ui/ns/{namespace}")));
    }
    crumbs
}

fn usage_table(usage: &registry_core::StorageUsage) -> Markup {
    html! {
        dl.facts.usage {
            dt { "Total" } dd { (size(usage.manifest_bytes.saturating_add(usage.blob_bytes))) }
            dt { "Repositories" } dd { (usage.repositories) }
            dt { "Manifests" } dd { (usage.manifests) " (" (size(usage.manifest_bytes)) ")" }
            dt { "Blobs" } dd { (usage.blobs) " (" (size(usage.blob_bytes)) ", each counted once)" }
        }
    }
}

/// What a path under `/ui/r/` names.
enum Target {
    Tags(RepositoryName),
    Usage(RepositoryName),
    Manifest(RepositoryName, Digest),
    DeleteTags(RepositoryName),
}

fn target(path: &str) -> Result<Target, UiError> {
    let rest = path.trim_start_matches("/ui/r/");
    let (name, action) = match rest.split_once("/-/") {
        Some((name, action)) => (repository_name(name)?, Some(action)),
        None => (repository_name(rest)?, None),
    };
    Ok(match action {
        None => Target::Tags(name),
        Some("usage") => Target::Usage(name),
        Some("delete-tags") => Target::DeleteTags(name),
        Some(other) => match other.strip_prefix("manifests/") {
            Some(digest) => {
                let digest = Digest::parse(digest)
                    .map_err(|e| UiError::NotFound(format!("{digest:?} is not a digest: {e}")))?;
                Target::Manifest(name, digest)
            }
            None => return Err(UiError::NotFound(format!("no page {other:?}"))),
        },
    })
}

#[derive(Default, Deserialize)]
struct TagsQuery {
    contains: Option<String>,
    sort: Option<String>,
    after: Option<String>,
    before: Option<String>,
    tag: Option<String>,
}

/// `GET /ui/r/<name>`, `…/-/usage`, `…/-/manifests/<digest>`.
pub(crate) async fn repository(
    State(ui): State<Arc<Ui>>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let target = target(request.uri().path())?;
    match target {
        Target::Tags(name) => tags_page(&ui, &visitor, name, query(raw)?).await,
        Target::Usage(name) => {
            visitor.require(&ui, name.as_str(), Action::Pull)?;
            if !ui.registry.metadata().repository_exists(&name).await? {
                return Err(UiError::NotFound(format!("no repository {name}")));
            }
            let usage = ui
                .registry
                .metadata()
                .storage_usage(&UsageScope::Repository(name.clone()))
                .await?;
            let mut crumbs = namespace_crumbs(&name);
            crumbs.push((name.as_str(), format!("/ui/r/{name}")));
            let title = format!("Storage of {name}");
            Ok(visitor.page(layout::page(&visitor, &title, &crumbs, usage_table(&usage))))
        }
        Target::Manifest(name, digest) => {
            let q: TagsQuery = query(raw)?;
            manifest_page(&ui, &visitor, name, digest, q.tag).await
        }
        Target::DeleteTags(_) => Err(UiError::BadRequest("tags are deleted with a form".into())),
    }
}

async fn tags_page(ui: &Ui, visitor: &Visitor, name: RepositoryName, q: TagsQuery) -> PageResult {
    visitor.require(ui, name.as_str(), Action::Pull)?;
    let sort = q.sort.clone().unwrap_or_else(|| "-published".to_owned());
    let (order, descending) = crate::oci::tag_sort(&sort).ok_or_else(|| {
        UiError::BadRequest(format!(
            "sort {sort:?}: use name, -name, published or -published"
        ))
    })?;
    let marker = |text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                crate::oci::parse_marker(t)
                    .ok_or_else(|| UiError::BadRequest(format!("{t:?} is not a page marker")))
            })
            .transpose()
    };
    let contains = q.contains.clone().filter(|c| !c.is_empty());
    let tag_query = TagQuery {
        contains: contains.clone(),
        order,
        descending,
        after: marker(&q.after)?,
        before: marker(&q.before)?,
        limit: PAGE,
    };
    let details = match ui.registry.metadata().tag_details(&name, &tag_query).await {
        Err(registry_core::Error::NameUnknown { .. }) => {
            return Err(UiError::NotFound(format!("no repository {name}")));
        }
        other => other?,
    };
    // Tags often share a manifest (`latest`, `v1`, `v1.2`): each is looked up once.
    let mut distinct: Vec<&TagDetail> = Vec::new();
    for detail in &details {
        if !distinct.iter().any(|d| d.digest == detail.digest) {
            distinct.push(detail);
        }
    }
    let mut found = std::collections::HashMap::new();
    for rows in distinct.chunks(ROW_LOOKUPS) {
        let looked_up = futures::future::join_all(rows.iter().map(|d| platforms_of(ui, &name, d)));
        found.extend(rows.iter().map(|d| &d.digest).zip(looked_up.await));
    }
    let platforms: Vec<&[String]> = details
        .iter()
        .map(|d| found.get(&d.digest).map_or(&[][..], Vec::as_slice))
        .collect();
    let may_delete = visitor.may(ui, name.as_str(), Action::Delete);
    let here = format!("/ui/r/{name}");
    let (next, previous) = crate::oci::tag_page_markers(&details, &tag_query);
    let sort_link = |key: &str, label: &str| {
        let (ascending, descending) = (key.to_owned(), format!("-{key}"));
        let (target, arrow) = if sort == descending {
            (ascending, " ↓")
        } else if sort == ascending {
            (descending, " ↑")
        } else {
            (descending, "")
        };
        html! {
            a.current[!arrow.is_empty()] href=(link(&here, &[("sort", Some(&target)), ("contains", contains.as_deref())])) { (label) (arrow) }
        }
    };
    let host = layout::host(&visitor.base);
    let example = details.first().map_or("latest", |d| d.name.as_str());
    let table = html! {
        table.tags {
            thead {
                tr {
                    @if may_delete {
                        th { input type="checkbox" data-select-all="tag" aria-label="Select all tags" hidden; }
                    }
                    th.sort { (sort_link("name", "Tag")) }
                    th { "Digest" }
                    th { "Platforms" }
                    th.num { "Size" }
                    th.sort { (sort_link("published", "Pushed")) }
                    th { "Created" }
                }
            }
            tbody {
                @for (detail, platforms) in details.iter().zip(platforms.iter().copied()) {
                    (tag_row(&name, detail, platforms, may_delete))
                }
            }
        }
    };
    let body = html! {
        p { "Pull an image of this repository:" }
        (copy_box(&format!("podman pull {host}/{name}:{example}")))
        p { a href={ "/ui/r/" (name) "/-/usage" } { "Storage used by this repository" } }
        h2 { "Tags" }
        form.filter method="get" action=(here) role="search" {
            input type="hidden" name="sort" value=(sort);
            input type="search" name="contains" value=[contains.as_deref()] placeholder="Tags containing…" aria-label="Filter tags";
            button type="submit" { "Filter" }
        }
        @if details.is_empty() {
            p.muted { "No tags to show." }
        } @else if may_delete {
            form method="post" action={ "/ui/r/" (name) "/-/delete-tags" } {
                input type="hidden" name="csrf" value=(visitor.csrf);
                (table)
                button.danger type="submit" { "Delete selected tags…" }
            }
        } @else {
            (table)
        }
        nav.pager {
            @if let Some(previous) = &previous {
                a rel="prev" href=(link(&here, &[("sort", Some(&sort)), ("contains", contains.as_deref()), ("before", Some(previous))])) { "← Previous" }
            }
            @if let Some(next) = &next {
                a rel="next" href=(link(&here, &[("sort", Some(&sort)), ("contains", contains.as_deref()), ("after", Some(next))])) { "Next →" }
            }
        }
    };
    let crumbs = namespace_crumbs(&name);
    Ok(visitor.page(layout::page(visitor, name.as_str(), &crumbs, body)))
}

fn tag_row(
    name: &RepositoryName,
    detail: &TagDetail,
    platforms: &[String],
    may_delete: bool,
) -> Markup {
    let manifest = format!(
        "/ui/r/{name}/-/manifests/{}?tag={}",
        detail.digest, detail.name
    );
    html! {
        tr {
            @if may_delete {
                td { input type="checkbox" name="tag" value=(detail.name) aria-label={ "Select " (detail.name) }; }
            }
            td.tag { a href=(manifest) { (detail.name) } }
            td { (short_digest(detail.digest.as_str())) }
            td { (platforms.join(", ")) }
            td.num { (size(detail.size)) }
            td { (time(detail.published_at)) }
            td { (time(detail.created_at)) }
        }
    }
}

/// The platforms of a manifest: its children's for an index, its config's for an image
/// (nothing for other artifacts, or when it cannot be read).
async fn platforms_of(ui: &Ui, repository: &RepositoryName, detail: &TagDetail) -> Vec<String> {
    if detail.manifest_size > MAX_ROW_MANIFEST {
        return Vec::new();
    }
    let reference = Reference::Digest(detail.digest.clone());
    let Ok(Some(record)) = ui
        .registry
        .metadata()
        .manifest(repository, &reference)
        .await
    else {
        return Vec::new();
    };
    let Ok(document) = serde_json::from_slice::<Value>(&record.bytes) else {
        return Vec::new();
    };
    if let Some(children) = document.get("manifests").and_then(Value::as_array) {
        return children
            .iter()
            .filter_map(|child| platform_name(child.get("platform")?))
            .collect();
    }
    match image_config(ui, &document, MAX_ROW_CONFIG).await {
        Some(config) => platform_name(&config).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A descriptor's size as people read it (empty for a descriptor without one: the manifest
/// was validated when pushed, so only an odd upstream's could lack it).
fn descriptor_size(descriptor: &Value) -> String {
    descriptor
        .get("size")
        .and_then(Value::as_u64)
        .map(size)
        .unwrap_or_default()
}

/// `os/architecture[/variant]`, leaving out the `unknown/unknown` of attestation manifests.
fn platform_name(platform: &Value) -> Option<String> {
    let os = platform.get("os")?.as_str()?;
    let architecture = platform.get("architecture")?.as_str()?;
    if os == "unknown" && architecture == "unknown" {
        return None;
    }
    let mut name = format!("{os}/{architecture}");
    if let Some(variant) = platform.get("variant").and_then(Value::as_str) {
        name.push('/');
        name.push_str(variant);
    }
    Some(name)
}

/// An image manifest's config, when it is an image config (not another artifact's) of at
/// most `limit` bytes.
async fn image_config(ui: &Ui, manifest: &Value, limit: u64) -> Option<Value> {
    let config = manifest.get("config")?;
    let media_type = config.get("mediaType")?.as_str()?;
    if media_type != "application/vnd.oci.image.config.v1+json"
        && media_type != "application/vnd.docker.container.image.v1+json"
    {
        return None;
    }
    let digest = Digest::parse(config.get("digest")?.as_str()?).ok()?;
    let bytes = ui
        .registry
        .blob_store()
        .read_to_bytes(&digest, limit)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn manifest_page(
    ui: &Ui,
    visitor: &Visitor,
    name: RepositoryName,
    digest: Digest,
    tag: Option<String>,
) -> PageResult {
    visitor.require(ui, name.as_str(), Action::Pull)?;
    let record = match ui
        .registry
        .manifest(&name, &Reference::Digest(digest.clone()))
        .await
    {
        Err(
            registry_core::Error::ManifestUnknown { .. } | registry_core::Error::NameUnknown { .. },
        ) => {
            return Err(UiError::NotFound(format!("no manifest {digest} in {name}")));
        }
        other => other?,
    };
    let document: Value = serde_json::from_slice(&record.bytes).unwrap_or(Value::Null);
    let referrers = ui.registry.referrers(&name, &digest, None).await?;
    let config = image_config(ui, &document, MAX_CONFIG).await;
    let host = layout::host(&visitor.base);
    let tag = tag.filter(|t| Tag::parse(t).is_ok());
    // A manifest without layers (an index) or without children (an image) lists none.
    let descriptors = |field: &str| -> Vec<Value> {
        document
            .get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let layers = descriptors("layers");
    let children = descriptors("manifests");
    let total: u64 = layers
        .iter()
        .filter_map(|l| l.get("size").and_then(Value::as_u64))
        .fold(0, u64::saturating_add);
    let body = html! {
        dl.facts {
            dt { "Digest" } dd { code { (digest) } }
            dt { "Media type" } dd { (record.media_type) }
            @if let Some(artifact) = &record.artifact_type {
                dt { "Artifact type" } dd { (artifact) }
            }
            dt { "Manifest size" } dd { (size(record.bytes.len() as u64)) }
            @if !layers.is_empty() {
                dt { "Layers" } dd { (layers.len()) " (" (size(total)) ")" }
            }
            dt { "First pushed" } dd { (time(record.created_at)) }
            @if let Some(subject) = &record.subject {
                dt { "Subject" } dd { a href={ "/ui/r/" (name) "/-/manifests/" (subject) } { code { (subject) } } }
            }
            @if let Some(config) = &config {
                @if let Some(platform) = platform_name(config) {
                    dt { "Platform" } dd { (platform) }
                }
                @if let Some(created) = config.get("created").and_then(Value::as_str) {
                    dt { "Created" } dd { (created) }
                }
            }
        }
        h2 { "Pull" }
        @if let Some(tag) = &tag {
            (copy_box(&format!("podman pull {host}/{name}:{tag}")))
        }
        (copy_box(&format!("podman pull {host}/{name}@{digest}")))
        @if !record.annotations.is_empty() {
            h2 { "Annotations" }
            table.annotations {
                tbody {
                    @for (key, value) in &record.annotations {
                        tr { th { (key) } td { (value) } }
                    }
                }
            }
        }
        @if !children.is_empty() {
            h2 { "Platforms" }
            table.children {
                thead { tr { th { "Platform" } th { "Digest" } th { "Media type" } th.num { "Size" } } }
                tbody {
                    @for child in &children {
                        tr {
                            td { (child.get("platform").and_then(platform_name).unwrap_or_else(|| "—".into())) }
                            td {
                                @if let Some(child_digest) = child.get("digest").and_then(Value::as_str) {
                                    a href={ "/ui/r/" (name) "/-/manifests/" (child_digest) } { (short_digest(child_digest)) }
                                }
                            }
                            td { (child.get("mediaType").and_then(Value::as_str).unwrap_or("")) }
                            td.num { (descriptor_size(child)) }
                        }
                    }
                }
            }
        }
        @if let Some(config_descriptor) = document.get("config") {
            h2 { "Config" }
            p {
                (config_descriptor.get("mediaType").and_then(Value::as_str).unwrap_or("")) " "
                (short_digest(config_descriptor.get("digest").and_then(Value::as_str).unwrap_or("")))
                " (" (descriptor_size(config_descriptor)) ")"
            }
        }
        @if !layers.is_empty() {
            h2 { "Layers" }
            table.layers {
                thead { tr { th.num { "#" } th { "Digest" } th { "Media type" } th.num { "Size" } } }
                tbody {
                    @for (index, layer) in layers.iter().enumerate() {
                        tr {
                            td.num { (index + 1) }
                            td { (short_digest(layer.get("digest").and_then(Value::as_str).unwrap_or(""))) }
                            td { (layer.get("mediaType").and_then(Value::as_str).unwrap_or("")) }
                            td.num { (descriptor_size(layer)) }
                        }
                    }
                }
            }
        }
        @if let Some(history) = config.as_ref().and_then(|c| c.get("history")).and_then(Value::as_array) {
            h2 { "History" }
            table.history {
                thead { tr { th { "Created" } th { "Command" } th { "Comment" } } }
                tbody {
                    @for step in history {
                        tr {
                            td { (step.get("created").and_then(Value::as_str).unwrap_or("")) }
                            td {
                                code { (step.get("created_by").and_then(Value::as_str).unwrap_or("")) }
                                @if step.get("empty_layer").and_then(Value::as_bool) == Some(true) {
                                    span.badge { "no layer" }
                                }
                            }
                            td { (step.get("comment").and_then(Value::as_str).unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Referrers" }
        @if referrers.is_empty() {
            p.muted { "No signatures, SBOMs or attestations refer to this manifest." }
        } @else {
            table.referrers {
                thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } th { "Created" } } }
                tbody {
                    @for referrer in referrers.iter().take(MAX_REFERRERS) {
                        tr {
                            td { (referrer.artifact_type.as_deref().unwrap_or("")) }
                            td { a href={ "/ui/r/" (name) "/-/manifests/" (referrer.digest) } { (short_digest(referrer.digest.as_str())) } }
                            td.num { (size(referrer.size)) }
                            td { (referrer.annotations.get("org.opencontainers.image.created").map(String::as_str).unwrap_or("")) }
                        }
                    }
                }
            }
            @if referrers.len() > MAX_REFERRERS {
                p.muted { "… and " (referrers.len() - MAX_REFERRERS) " more (the referrers API lists them all)." }
            }
        }
    };
    let mut crumbs = namespace_crumbs(&name);
    crumbs.push((name.as_str(), format!("/ui/r/{name}")));
    let title = match &tag {
        Some(tag) => format!("{name}:{tag}"),
        None => format!(
            "{name}@{}",
            &digest.as_str()[..digest.as_str().len().min(19)]
        ),
    };
    Ok(visitor.page(layout::page(visitor, &title, &crumbs, body)))
}

/// `POST /ui/r/<name>/-/delete-tags`: asks to confirm, then deletes the tags chosen (each
/// under the tag rules, as a `DELETE` of the API would).
pub(crate) async fn post(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let Target::DeleteTags(name) = target(request.uri().path())? else {
        return Err(UiError::NotFound("nothing to post here".into()));
    };
    // Decided before the body is read.
    visitor.require(&ui, name.as_str(), Action::Delete)?;
    let form = Form::read(&visitor, request).await?;
    let tags: Vec<Tag> = form
        .values("tag")
        .take(MAX_DELETE + 1)
        .map(|t| Tag::parse(t).map_err(|e| UiError::BadRequest(format!("{t:?} is not a tag: {e}"))))
        .collect::<Result<_, _>>()?;
    if tags.is_empty() {
        return Ok(Redirect::to(&format!("/ui/r/{name}")).into_response());
    }
    if tags.len() > MAX_DELETE {
        return Err(UiError::BadRequest(format!(
            "at most {MAX_DELETE} tags are deleted at once"
        )));
    }
    let mut crumbs = namespace_crumbs(&name);
    crumbs.push((name.as_str(), format!("/ui/r/{name}")));
    if form.value("confirmed") != Some("yes") {
        let body = html! {
            p { "These tags will be deleted from " strong { (name) } ". Their images stay while other tags or digests refer to them." }
            ul.confirm { @for tag in &tags { li { code { (tag) } } } }
            form method="post" action={ "/ui/r/" (name) "/-/delete-tags" } {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="confirmed" value="yes";
                @for tag in &tags { input type="hidden" name="tag" value=(tag); }
                button.danger type="submit" { "Delete " (tags.len()) " tag" @if tags.len() != 1 { "s" } }
                " "
                a href={ "/ui/r/" (name) } { "Cancel" }
            }
        };
        return Ok(visitor.page(layout::page(&visitor, "Delete tags?", &crumbs, body)));
    }
    let actor = match &ui.auth {
        None => Actor::trusted(),
        Some(auth) => visitor.caller().actor(&*auth.authorizer, &name),
    };
    let mut outcomes = Vec::with_capacity(tags.len());
    for tag in tags {
        let result = ui
            .registry
            .delete_manifest(&name, &Reference::Tag(tag.clone()), &actor)
            .await;
        outcomes.push((tag, result));
    }
    let body = html! {
        (layout::outcomes(&outcomes))
        p { a href={ "/ui/r/" (name) } { "Back to " (name) } }
    };
    Ok(visitor.page(layout::page(&visitor, "Tags deleted", &crumbs, body)))
}
