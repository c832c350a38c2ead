//! Package pages, for every format: a repository's packages, a package's versions, a
//! version's files, README and install command; deleting a version.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Redirect};
use futures::StreamExt;
use maud::{Markup, html};
use registry_core::{
    Action, FormatRules, Package, PackageRepository, PackageVersion, Page as StorePage,
    RepositoryKind, VersionStatus,
};
use serde::Deserialize;

use super::layout::{self, copy_box, link, short_digest, size, time};
use super::session::{Form, Visitor, visitor};
use super::{PageResult, Ui, UiError, markdown, query};
use registry_formats::pages::{FormatPages, Readme, default_status_label};

/// Packages or versions per page.
const PAGE: usize = 50;
/// The largest sidecar read for a README (PyPI's core metadata).
const MAX_SIDECAR: usize = 1024 * 1024;

#[derive(Default, Deserialize)]
struct PackagesQuery {
    name: Option<String>,
    version: Option<String>,
    q: Option<String>,
    after: Option<String>,
    from: Option<usize>,
}

/// The repository, once the visitor may read it, with its format's rules.
async fn readable(
    ui: &Ui,
    visitor: &Visitor,
    repository: &str,
    action: Action,
) -> Result<(PackageRepository, &'static dyn FormatRules), UiError> {
    visitor.require(ui, repository, action)?;
    let found = ui
        .packages
        .repository(repository)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no package repository {repository}")))?;
    let rules = registry_formats::rules(found.format).ok_or_else(|| {
        UiError::NotFound(format!(
            "{repository} is a {} repository, which this registry does not serve",
            found.format.as_str()
        ))
    })?;
    Ok((found, rules))
}

/// `GET /ui/packages/<repository>[?name=…[&version=…]]`.
pub(crate) async fn repository(
    State(ui): State<Arc<Ui>>,
    Path(repository): Path<String>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let q: PackagesQuery = query(raw)?;
    let (found, rules) = readable(&ui, &visitor, &repository, Action::Pull).await?;
    match (&q.name, &q.version) {
        (None, _) => packages_page(&ui, &visitor, &found, rules, &q).await,
        (Some(name), None) => package_page(&ui, &visitor, &found, rules, name, q.from).await,
        (Some(name), Some(version)) => {
            version_page(&ui, &visitor, &found, rules, name, version).await
        }
    }
}

fn crumbs(repository: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Repositories", "/ui/".to_owned()),
        ("Packages", format!("/ui/packages/{repository}")),
    ]
}

async fn packages_page(
    ui: &Ui,
    visitor: &Visitor,
    repository: &PackageRepository,
    rules: &dyn FormatRules,
    q: &PackagesQuery,
) -> PageResult {
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let page = StorePage {
        last: q.after.clone(),
        limit: PAGE,
    };
    let listed = ui
        .packages
        .list_packages(rules, &repository.name, search, &page)
        .await?;
    let here = format!("/ui/packages/{}", repository.name);
    let next = (listed.len() == PAGE)
        .then(|| listed.last().map(|p| p.name.clone()))
        .flatten();
    let body = html! {
        dl.facts {
            dt { "Format" } dd { (repository.format.as_str()) }
            dt { "Kind" } dd { (repository.kind.as_str()) }
            @if !repository.settings.members.is_empty() {
                dt { "Members" } dd { (repository.settings.members.join(", ")) }
            }
        }
        form.filter method="get" action=(here) role="search" {
            input type="search" name="q" value=[search] placeholder="Packages containing…" aria-label="Search packages";
            button type="submit" { "Search" }
        }
        form.filter method="get" action=(here) {
            input type="search" name="name" placeholder="Exact package name" aria-label="Package name" required;
            button.plain type="submit" { "Open package" }
        }
        @if repository.kind == RepositoryKind::Proxy {
            p.muted { "A proxy repository lists nothing: open a package by its name." }
        }
        @if listed.is_empty() {
            p.muted { "No packages to show." }
        } @else {
            table.packages {
                thead { tr { th { "Package" } th.num { "Versions" } th { "Updated" } } }
                tbody {
                    @for summary in &listed {
                        tr {
                            td { a href=(link(&here, &[("name", Some(&summary.display_name))])) { (summary.display_name) } }
                            td.num { (summary.versions) }
                            td { (time(summary.updated_at)) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &next {
            nav.pager { a rel="next" href=(link(&here, &[("q", search), ("after", Some(next))])) { "More packages →" } }
        }
    };
    let title = format!("Package repository {}", repository.name);
    Ok(visitor.page(layout::page(
        visitor,
        &title,
        &crumbs(&repository.name)[..1],
        body,
    )))
}

async fn package(
    ui: &Ui,
    repository: &PackageRepository,
    rules: &dyn FormatRules,
    name: &str,
) -> Result<Package, UiError> {
    ui.packages
        .package(rules, &repository.name, name)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no package {name} in {}", repository.name)))
}

/// A version's status as its format's clients call it (nothing for a listed version).
fn status(format: registry_core::PackageFormat, status: &VersionStatus) -> Markup {
    let label = registry_formats::pages::pages(format).map_or_else(
        || default_status_label(status),
        |pages| pages.status_label(status),
    );
    match label {
        None => html! {},
        Some(label) => html! { span.badge.(label) title=(status_message(status)) { (label) } },
    }
}

async fn package_page(
    ui: &Ui,
    visitor: &Visitor,
    repository: &PackageRepository,
    rules: &dyn FormatRules,
    name: &str,
    from: Option<usize>,
) -> PageResult {
    let package = package(ui, repository, rules, name).await?;
    let here = format!("/ui/packages/{}", repository.name);
    let from = from.unwrap_or(0);
    // Newest first.
    let versions: Vec<&PackageVersion> = package
        .versions
        .iter()
        .rev()
        .skip(from)
        .take(PAGE)
        .collect();
    let more = package.versions.len() > from.saturating_add(PAGE);
    let description = package
        .versions
        .last()
        .and_then(|latest| pages(repository).description(&latest.metadata));
    let body = html! {
        @if let Some(description) = &description {
            p.description { (description) }
        }
        @if !package.tags.is_empty() {
            h2 { "Tags" }
            table.dist-tags {
                tbody {
                    @for (tag, version) in &package.tags {
                        tr { th { (tag) } td { a href=(link(&here, &[("name", Some(&package.display_name)), ("version", Some(version))])) { (version) } } }
                    }
                }
            }
        }
        h2 { "Versions (" (package.versions.len()) ")" }
        table.versions {
            thead { tr { th { "Version" } th.num { "Files" } th { "Published" } } }
            tbody {
                @for version in &versions {
                    tr {
                        td {
                            a href=(link(&here, &[("name", Some(&package.display_name)), ("version", Some(&version.version))])) { (version.version) }
                            (status(repository.format, &version.status))
                        }
                        td.num { (version.files.len()) }
                        td { (time(version.created_at)) }
                    }
                }
            }
        }
        nav.pager {
            @if from > 0 {
                a rel="prev" href=(link(&here, &[("name", Some(&package.display_name)), ("from", Some(&from.saturating_sub(PAGE).to_string()))])) { "← Newer" }
            }
            @if more {
                a rel="next" href=(link(&here, &[("name", Some(&package.display_name)), ("from", Some(&(from + PAGE).to_string()))])) { "Older →" }
            }
        }
    };
    Ok(visitor.page(layout::page(
        visitor,
        &package.display_name,
        &crumbs(&repository.name),
        body,
    )))
}

async fn version_page(
    ui: &Ui,
    visitor: &Visitor,
    repository: &PackageRepository,
    rules: &dyn FormatRules,
    name: &str,
    version: &str,
) -> PageResult {
    let package = package(ui, repository, rules, name).await?;
    let key = rules.version_key(version).ok();
    let found = package
        .versions
        .iter()
        .find(|v| v.version == version || Some(&v.version) == key.as_ref())
        .ok_or_else(|| UiError::NotFound(format!("no version {version} of {name}")))?;
    let readme = readme(ui, repository, rules, found).await;
    let install = pages(repository).install_command(
        &visitor.base,
        &repository.name,
        &package.display_name,
        &found.version,
    );
    let may_delete = repository.kind == RepositoryKind::Hosted
        && visitor.may(ui, &repository.name, Action::Delete);
    let here = format!("/ui/packages/{}", repository.name);
    let description = pages(repository).description(&found.metadata);
    let body = html! {
        @if let Some(description) = &description {
            p.description { (description) }
        }
        dl.facts {
            dt { "Package" } dd { a href=(link(&here, &[("name", Some(&package.display_name))])) { (package.display_name) } }
            dt { "Status" } dd {
                @match &found.status {
                    VersionStatus::Default => { "listed" }
                    other => { (status(repository.format, other)) " " (status_message(other)) }
                }
            }
            dt { "Published" } dd { (time(found.created_at)) }
            dt { "Updated" } dd { (time(found.updated_at)) }
        }
        @if let Some(install) = &install {
            h2 { "Install" }
            (copy_box(install))
        }
        h2 { "Files" }
        table.files {
            thead { tr { th { "File" } th.num { "Size" } th { "Digests" } th { "Uploaded" } } }
            tbody {
                @for file in &found.files {
                    tr {
                        td { (file.name) }
                        td.num { (size(file.blob.size)) }
                        td.digests {
                            (short_digest(file.blob.digest.as_str()))
                            @if let Some(sha512) = &file.digests.sha512 { br; span.muted { "sha512 " } code { (sha512) } }
                            @if let Some(sha1) = &file.digests.sha1 { br; span.muted { "sha1 " } code { (sha1) } }
                            @if let Some(md5) = &file.digests.md5 { br; span.muted { "md5 " } code { (md5) } }
                            @if let Some(blake2) = &file.digests.blake2_256 { br; span.muted { "blake2b-256 " } code { (blake2) } }
                        }
                        td { (time(file.created_at)) }
                    }
                }
            }
        }
        @if let Some(readme) = &readme {
            h2 { "README" }
            div.readme {
                @if readme.markdown { (markdown::render(&readme.text)) } @else { pre { (readme.text) } }
            }
        }
        @if may_delete {
            h2 { "Delete" }
            form method="post" action=(here) {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="name" value=(package.display_name);
                input type="hidden" name="version" value=(found.version);
                button.danger type="submit" { "Delete version " (found.version) "…" }
            }
        }
    };
    let title = format!("{} {}", package.display_name, found.version);
    Ok(visitor.page(layout::page(
        visitor,
        &title,
        &crumbs(&repository.name),
        body,
    )))
}

/// How versions of the repository's format are shown (a format without pages of its own
/// shows none of the extras).
fn pages(repository: &PackageRepository) -> &'static dyn FormatPages {
    registry_formats::pages::pages(repository.format).unwrap_or(&NoPages)
}

/// The pages of a format that has none of its own.
struct NoPages;

impl FormatPages for NoPages {}

fn status_message(status: &VersionStatus) -> &str {
    match status {
        VersionStatus::Deprecated(message) | VersionStatus::Yanked(message) => message,
        VersionStatus::Default | VersionStatus::Hidden => "",
    }
}

/// A version's README, from its document or its first sidecar (bounded); `None` when it has
/// none or it cannot be read.
async fn readme(
    ui: &Ui,
    repository: &PackageRepository,
    rules: &dyn FormatRules,
    version: &PackageVersion,
) -> Option<Readme> {
    let pages = pages(repository);
    let sidecar = match pages.readme_in_sidecar() {
        false => None,
        true => {
            let blob = version.files.iter().find_map(|f| f.sidecar.as_ref())?;
            let read = ui
                .packages
                .read(rules, &repository.name, blob, None)
                .await
                .ok()?;
            let mut bytes = Vec::new();
            let mut stream = read.stream;
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.ok()?);
                if bytes.len() > MAX_SIDECAR {
                    return None;
                }
            }
            Some(bytes)
        }
    };
    pages.readme(&version.metadata, sidecar.as_deref())
}

/// `POST /ui/packages/<repository>`: deletes a version, after a confirmation, under the
/// repository's protection rules.
pub(crate) async fn post(
    State(ui): State<Arc<Ui>>,
    Path(repository): Path<String>,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    // Decided before the body is read.
    let (found, rules) = readable(&ui, &visitor, &repository, Action::Delete).await?;
    let form = Form::read(&visitor, request).await?;
    let (Some(name), Some(version)) = (form.value("name"), form.value("version")) else {
        return Err(UiError::BadRequest(
            "say which package version to delete".into(),
        ));
    };
    let here = format!("/ui/packages/{}", found.name);
    let back = link(&here, &[("name", Some(name)), ("version", Some(version))]);
    if form.value("confirmed") != Some("yes") {
        let body = html! {
            p { "Version " strong { (version) } " of " strong { (name) } " and its files will be deleted from " (found.name) ". This cannot be undone." }
            form method="post" action=(here) {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="confirmed" value="yes";
                input type="hidden" name="name" value=(name);
                input type="hidden" name="version" value=(version);
                button.danger type="submit" { "Delete " (name) " " (version) }
                " "
                a href=(back) { "Cancel" }
            }
        };
        return Ok(visitor.page(layout::page(
            &visitor,
            "Delete version?",
            &crumbs(&found.name),
            body,
        )));
    }
    let role = visitor.package_role(&ui, &found.name);
    ui.packages
        .delete_version(rules, &found.name, name, version, role)
        .await?;
    Ok(Redirect::to(&here).into_response())
}
