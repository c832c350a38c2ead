//! Access tokens with scopes (created with a password, no more than the user holds, accepted as
//! Bearer or as a Basic password, revoked) and package repository settings (admin only,
//! protection rules enforced with the rule named, one format per repository).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use registry_core::{Grant, NamePattern, Packages, Role};
use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use tower::ServiceExt;

fn users() -> Arc<StaticUsers> {
    let hash = hash_password("pw").unwrap();
    let user = |pattern: &str, role| StaticUser {
        password_hash: hash.clone(),
        grants: vec![Grant {
            pattern: NamePattern::parse(pattern).unwrap(),
            role,
        }],
    };
    Arc::new(
        StaticUsers::new(
            HashMap::from([
                ("dev".to_owned(), user("files", Role::Developer)),
                ("boss".to_owned(), user("*", Role::Admin)),
            ]),
            None,
        )
        .unwrap(),
    )
}

fn app() -> Router {
    let auth = Auth::basic("test", users());
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    registry_http::package_admin::router(packages.clone(), Some(auth.clone()))
        .merge(registry_http::generic::router(packages, Some(auth)))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: impl Into<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.into())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn token_request(access: &str, repositories: &str) -> String {
    json!({ "label": "ci", "scopes": [{ "repositories": repositories, "access": access }], "expires_in": "30d" }).to_string()
}

#[tokio::test]
async fn tokens_carry_no_more_than_their_user() {
    let app = app();
    let dev = basic("dev", "pw");
    let (status, _) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        None,
        token_request("write", "files"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (access, repositories) in [("delete", "files"), ("read", "other"), ("read", "*")] {
        let (status, body) = send(
            &app,
            Method::POST,
            "/api/v1/tokens",
            Some(&dev),
            token_request(access, repositories),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{access} on {repositories}: {body}"
        );
    }
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(&dev),
        "{\"scopes\": []}",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(&dev),
        token_request("write", "files"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["token"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rgt_"));
    assert!(body["expiresAt"].as_i64().is_some());
    let (_, read_body) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(&dev),
        token_request("read", "files"),
    )
    .await;
    let read_only = read_body["token"].as_str().unwrap().to_owned();

    // The token works as Bearer and as a Basic password; a read token cannot write.
    let bearer = format!("Bearer {secret}");
    let (status, body) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/a.txt",
        Some(&bearer),
        "a",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/b.txt",
        Some(&basic("__token__", &secret)),
        "b",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/c.txt",
        Some(&format!("Bearer {read_only}")),
        "c",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        &app,
        Method::GET,
        "/generic/files/tool/1.0/a.txt",
        Some(&format!("Bearer {read_only}")),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A token cannot make tokens.
    let (status, _) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(&bearer),
        token_request("read", "files"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Listed without secrets; revoked, it stops working.
    let (_, listed) = send(&app, Method::GET, "/api/v1/tokens", Some(&dev), "").await;
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(!listed.to_string().contains(&secret));
    let written = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(
        written["scopes"][0],
        json!({ "repositories": "files", "access": "write" })
    );
    let (status, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Some(&basic("boss", "pw")),
        "",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "an admin may revoke anyone's token"
    );
    let (status, _) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/d.txt",
        Some(&bearer),
        "d",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repository_settings_and_protection() {
    let app = app();
    let (dev, boss) = (basic("dev", "pw"), basic("boss", "pw"));
    let settings = json!({
        "format": "generic",
        "protection": [{ "packages": "release-.*", "publish": "maintainer", "delete": "admin" }],
    })
    .to_string();
    let (status, _) = send(
        &app,
        Method::PUT,
        "/api/v1/package-repositories/files",
        Some(&dev),
        settings.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = send(
        &app,
        Method::PUT,
        "/api/v1/package-repositories/files",
        Some(&boss),
        settings,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settings"]["protection"][0]["publish"], "maintainer");
    for bad in [
        json!({ "format": "generic", "surprise": true }),
        json!({ "format": "generic", "protection": [{ "packages": "(", "publish": "owner", "delete": "owner" }] }),
        json!({ "format": "cobol" }),
    ] {
        let (status, body) = send(
            &app,
            Method::PUT,
            "/api/v1/package-repositories/files",
            Some(&boss),
            bad.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = send(
        &app,
        Method::PUT,
        "/api/v1/package-repositories/files",
        Some(&boss),
        json!({ "format": "npm" }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, body) = send(
        &app,
        Method::PUT,
        "/generic/files/release-tool/1.0/x",
        Some(&dev),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"release-.*\""),
        "{body}"
    );
    let (status, _) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/x",
        Some(&dev),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(
        &app,
        Method::PUT,
        "/generic/files/release-tool/1.0/x",
        Some(&boss),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = send(
        &app,
        Method::GET,
        "/api/v1/package-repositories",
        Some(&dev),
        "",
    )
    .await;
    assert_eq!(listed["repositories"][0]["name"], "files");
}

#[tokio::test]
async fn tokens_minted_while_open_grant_nothing_once_auth_is_on() {
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let open = registry_http::package_admin::router(packages.clone(), None);
    let (status, body) = send(
        &open,
        Method::POST,
        "/api/v1/tokens",
        Some(&basic("mallory", "anything")),
        token_request("delete", "*"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scopes"], json!([]), "{body}");
    let secret = body["token"].as_str().unwrap().to_owned();
    let guarded = registry_http::generic::router(packages, Some(Auth::basic("test", users())));
    let (status, _) = send(
        &guarded,
        Method::PUT,
        "/generic/files/tool/1.0/x",
        Some(&format!("Bearer {secret}")),
        "x",
    )
    .await;
    // mallory is no configured user: her token proves nothing.
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_format_is_served_and_names_no_one_could_be_granted_are_refused() {
    let app = app();
    let admin = basic("boss", "pw");
    for format in ["generic", "maven", "npm", "nuget", "pypi", "terraform"] {
        let (status, body) = send(
            &app,
            Method::PUT,
            &format!("/api/v1/package-repositories/{format}-repo"),
            Some(&admin),
            json!({ "format": format }).to_string(),
        )
        .await;
        assert!(status.is_success(), "{format}: {status} {body}");
    }
    for name in ["a-", "a.", "a..b"] {
        let (status, body) = send(
            &app,
            Method::PUT,
            &format!("/api/v1/package-repositories/{name}"),
            Some(&admin),
            json!({ "format": "generic" }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
    }
}

#[tokio::test]
async fn repositories_are_created_on_publish_only_when_allowed() {
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    )
    .with_create_on_publish(false);
    let auth = Auth::basic("test", users());
    let app = registry_http::package_admin::router(packages.clone(), Some(auth.clone()))
        .merge(registry_http::generic::router(packages, Some(auth)));
    let admin = basic("boss", "pw");
    let (status, body) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/x",
        Some(&admin),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("generic repository files"),
        "{body}"
    );
    let (status, body) = send(
        &app,
        Method::PUT,
        "/api/v1/package-repositories/files",
        Some(&admin),
        json!({ "format": "generic" }).to_string(),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = send(
        &app,
        Method::PUT,
        "/generic/files/tool/1.0/x",
        Some(&admin),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
