//! A repository's pages: its tags (sorted, filtered and paged on the server), its storage,
//! and deleting tags.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use registry_core::{
    Action, Actor, Digest, Reference, RepositoryName, Tag, TagDetail, TagQuery, UsageScope,
};
use serde::Deserialize;

use super::layout::{self, copy_box, link, short_digest, size, time};
use super::manifest::{ROW_LOOKUPS, manifest_page, platforms_of};
use super::repositories::{PAGE, namespace_crumbs, repository_name, usage_table};
use super::session::{Form, Visitor, visitor};
use super::{PageResult, Ui, UiError, query};

/// The most tags deleted by one form.
const MAX_DELETE: usize = 1_000;

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
