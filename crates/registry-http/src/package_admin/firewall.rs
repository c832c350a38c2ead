//! The dependency firewall through the admin API: rules and the audit log.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::cache::MAX_CACHE_PAGE;
use super::{Admin, Failure, ask, json_response, read_document};

/// Checks that the asker administers the registry.
async fn administer_registry(admin: &Admin, headers: &HeaderMap) -> Result<(), Failure> {
    let asker = ask(admin, headers).await?;
    if !asker.is_admin(admin) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "the firewall is administered with the admin role",
        ));
    }
    Ok(())
}

pub(super) async fn list_firewall_rules(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer_registry(&admin, &headers).await?;
        let rules: Vec<Value> = admin
            .packages
            .firewall_rules()
            .await?
            .into_iter()
            .map(|(rule, source)| {
                let mut shown = json!(rule);
                shown["source"] = json!(source);
                shown
            })
            .collect();
        Ok::<_, Failure>(json_response(StatusCode::OK, &json!({ "rules": rules })))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn put_firewall_rule(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        administer_registry(&admin, &headers).await?;
        let body = read_document(body, &headers).await?;
        let mut value: Value = serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        })?;
        match value.get("name") {
            None if value.is_object() => value["name"] = json!(name),
            Some(given) if *given == json!(name) => {}
            _ => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "the body must be a JSON object naming the rule of the path, or none",
                ));
            }
        }
        let rule: registry_core::FirewallRule = serde_json::from_value(value).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not a firewall rule: {e}"),
            )
        })?;
        rule.check_package_urls(&registry_formats::rules)?;
        let created = admin.packages.put_firewall_rule(&rule).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok::<_, Failure>(json_response(status, &json!(rule)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn delete_firewall_rule(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer_registry(&admin, &headers).await?;
        if admin.packages.delete_firewall_rule(&name).await? {
            Ok::<_, Failure>(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no firewall rule {name}"),
            ))
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The query of an audit listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    n: Option<usize>,
}

pub(super) async fn firewall_audit(
    State(admin): State<Arc<Admin>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        administer_registry(&admin, &headers).await?;
        let query: AuditQuery = axum::extract::Query::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
        let limit = query.n.unwrap_or(100).clamp(1, MAX_CACHE_PAGE);
        let entries = admin
            .packages
            .firewall_audit(query.repository.as_deref(), query.before, limit)
            .await?;
        let shown: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "at": e.at.0,
                    "repository": e.repository,
                    "package": e.package,
                    "version": e.version,
                    "action": e.action,
                    "rule": e.rule,
                    "mode": e.mode.as_str(),
                    "reason": e.reason,
                })
            })
            .collect();
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok::<_, Failure>(json_response(
            StatusCode::OK,
            &json!({ "entries": shown, "next": next }),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
