//! Proxy repositories' caches and upstreams through the admin API.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use registry_core::Page;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, Failure, ask, json_response, may_configure, served};

/// Checks that the asker may administer `name`.
async fn administer(admin: &Admin, headers: &HeaderMap, name: &str) -> Result<(), Failure> {
    let asker = ask(admin, headers).await?;
    if !may_configure(admin, &asker, name) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!("administering package repository {name} needs the admin role on it"),
        ));
    }
    Ok(())
}

pub(super) async fn test_upstream(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer(&admin, &headers, &name).await?;
        let repository = admin.packages.repository(&name).await?.ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                format!("no package repository {name}"),
            )
        })?;
        let check = admin
            .packages
            .test_upstream(served(repository.format)?, &name)
            .await?;
        Ok::<_, Failure>(json_response(
            StatusCode::OK,
            &json!({
                "url": check.url,
                "reachable": check.reachable,
                "detail": check.detail,
                "millis": check.millis,
            }),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The query of a cache listing or cleanup.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheQuery {
    #[serde(default)]
    last: Option<String>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    unused_days: Option<u32>,
}

/// The most cache entries listed per page.
pub(super) const MAX_CACHE_PAGE: usize = 1000;

fn cache_query(uri: &axum::http::Uri) -> Result<CacheQuery, Failure> {
    axum::extract::Query::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))
}

pub(super) async fn list_cache(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer(&admin, &headers, &name).await?;
        let query = cache_query(&uri)?;
        let limit = query.n.unwrap_or(100).clamp(1, MAX_CACHE_PAGE);
        let page = Page {
            last: query.last,
            limit,
        };
        let entries = admin.packages.cache_entries(&name, &page).await?;
        let upstream = admin
            .packages
            .repository(&name)
            .await?
            .and_then(|r| r.settings.upstream)
            .map(|u| u.url);
        let shown: Vec<Value> = entries
            .iter()
            .map(|e| crate::admin::cache_entry_json(e, upstream.as_deref()))
            .collect();
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.path.clone()))
            .flatten();
        Ok::<_, Failure>(json_response(
            StatusCode::OK,
            &json!({ "entries": shown, "next": next }),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn clean_cache(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer(&admin, &headers, &name).await?;
        let query = cache_query(&uri)?;
        let unused = query
            .unused_days
            .map(|days| std::time::Duration::from_secs(u64::from(days) * 86_400));
        let deleted = admin.packages.clean_cache(&name, unused).await?;
        Ok::<_, Failure>(json_response(
            StatusCode::OK,
            &json!({ "deleted": deleted }),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn delete_cache_entry(
    State(admin): State<Arc<Admin>>,
    Path((name, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer(&admin, &headers, &name).await?;
        if admin.packages.delete_cache_entry(&name, &path).await? {
            Ok::<_, Failure>(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no cache entry {path} in {name}"),
            ))
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
