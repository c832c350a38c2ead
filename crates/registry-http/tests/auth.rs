//! Basic and Docker token auth on the OCI router: challenges, roles per namespace, refusals,
//! tokens cut down to what the caller may do, and mounts that must not leak blobs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::{Digest, Grant, NamePattern, OciRegistry, Role};
use registry_http::auth::{Auth, StaticUser, StaticUsers, TokenIssuer, hash_password};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::Value;
use tower::ServiceExt;

fn grant(pattern: &str, role: Role) -> Grant {
    Grant {
        pattern: NamePattern::parse(pattern).unwrap(),
        role,
    }
}

fn users() -> Arc<StaticUsers> {
    let hash = hash_password("pw").unwrap();
    let user = |grants| StaticUser {
        password_hash: hash.clone(),
        grants,
    };
    let users = HashMap::from([
        (
            "dev".to_owned(),
            user(vec![
                grant("team/*", Role::Developer),
                grant("*", Role::Reader),
            ]),
        ),
        (
            "maint".to_owned(),
            user(vec![grant("team/*", Role::Maintainer)]),
        ),
        ("admin".to_owned(), user(vec![grant("*", Role::Admin)])),
        (
            "outsider".to_owned(),
            user(vec![grant("other/*", Role::Maintainer)]),
        ),
    ]);
    Arc::new(StaticUsers::new(users, Some(vec![grant("public/*", Role::Reader)])).unwrap())
}

fn registry() -> OciRegistry {
    OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    )
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: Bytes,
}

impl Reply {
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &'static [u8],
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.test:5000");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        challenge,
        body,
    }
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    )
}

const BLOB: &[u8] = b"layer bytes";

fn blob_uri(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/?digest={}", Digest::sha256(BLOB))
}

#[tokio::test]
async fn basic_auth_enforces_roles_per_namespace() {
    let app = registry_http::oci::router_with_auth(registry(), Auth::basic("test realm", users()));

    let anonymous = send(&app, Method::GET, "/v2/", None, b"").await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "the version check asks for credentials"
    );
    let wrong = send(&app, Method::GET, "/v2/", Some("Basic ZGV2Ondyb25n"), b"").await;
    assert_eq!(
        (wrong.status, wrong.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!(
        wrong.challenge.as_deref(),
        Some("Basic realm=\"test realm\"")
    );
    assert_eq!(
        send(&app, Method::GET, "/v2/", Some(&basic("dev")), b"")
            .await
            .status,
        StatusCode::OK
    );

    // dev: developer on team/*, reader elsewhere.
    let pushed = send(
        &app,
        Method::POST,
        &blob_uri("team/app"),
        Some(&basic("dev")),
        BLOB,
    )
    .await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let blob = format!("/v2/team/app/blobs/{}", Digest::sha256(BLOB));
    assert_eq!(
        send(&app, Method::GET, &blob, Some(&basic("dev")), b"")
            .await
            .status,
        StatusCode::OK
    );
    let delete = send(&app, Method::DELETE, &blob, Some(&basic("dev")), b"").await;
    assert_eq!(
        (delete.status, delete.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let elsewhere = send(
        &app,
        Method::POST,
        &blob_uri("other/app"),
        Some(&basic("dev")),
        BLOB,
    )
    .await;
    assert_eq!(elsewhere.code(), "DENIED", "reader outside team/*");
    let outsider = send(&app, Method::GET, &blob, Some(&basic("outsider")), b"").await;
    assert_eq!(outsider.code(), "DENIED");

    // Anonymous: may read public/*, nothing else, and is challenged rather than denied.
    let anonymous_push = send(&app, Method::POST, &blob_uri("public/app"), None, BLOB).await;
    assert_eq!(anonymous_push.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous_push.challenge.is_some());
    assert_eq!(
        send(&app, Method::GET, &blob, None, b"").await.status,
        StatusCode::UNAUTHORIZED
    );
    send(
        &app,
        Method::POST,
        &blob_uri("public/app"),
        Some(&basic("admin")),
        BLOB,
    )
    .await;
    let public = format!("/v2/public/app/blobs/{}", Digest::sha256(BLOB));
    assert_eq!(
        send(&app, Method::GET, &public, None, b"").await.status,
        StatusCode::OK
    );

    // Maintainers delete; only admins list the catalog.
    assert_eq!(
        send(&app, Method::DELETE, &blob, Some(&basic("maint")), b"")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        send(&app, Method::GET, "/v2/_catalog", Some(&basic("dev")), b"")
            .await
            .code(),
        "DENIED"
    );
    assert_eq!(
        send(
            &app,
            Method::GET,
            "/v2/_catalog",
            Some(&basic("admin")),
            b""
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn mounts_need_read_access_to_the_source() {
    let app = registry_http::oci::router_with_auth(registry(), Auth::basic("r", users()));
    send(
        &app,
        Method::POST,
        &blob_uri("other/secret"),
        Some(&basic("outsider")),
        BLOB,
    )
    .await;
    let digest = Digest::sha256(BLOB);
    let dev = Some(basic("dev"));
    // dev may read other/* (reader on *), so the mount works…
    let mounted = send(
        &app,
        Method::POST,
        &format!("/v2/team/a/blobs/uploads/?mount={digest}&from=other/secret"),
        dev.as_deref(),
        b"",
    )
    .await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    // …maint may not read other/*: it gets an upload session instead, and learns nothing.
    let maint = Some(basic("maint"));
    let refused = send(
        &app,
        Method::POST,
        &format!("/v2/team/b/blobs/uploads/?mount={digest}&from=other/secret"),
        maint.as_deref(),
        b"",
    )
    .await;
    assert_eq!(refused.status, StatusCode::ACCEPTED);
    let automatic = send(
        &app,
        Method::POST,
        &format!("/v2/team/b/blobs/uploads/?mount={digest}"),
        maint.as_deref(),
        b"",
    )
    .await;
    assert_eq!(
        automatic.status,
        StatusCode::ACCEPTED,
        "no automatic mount for a restricted caller"
    );
    let blob = format!("/v2/team/b/blobs/{digest}");
    assert_eq!(
        send(&app, Method::HEAD, &blob, maint.as_deref(), b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn token_auth_issues_scoped_tokens() {
    let issuer = TokenIssuer::new(
        "test-registry",
        b"0123456789abcdef0123456789abcdef",
        Duration::from_secs(300),
    );
    let app = registry_http::oci::router_with_auth(registry(), Auth::token(issuer, users()));

    let ping = send(&app, Method::GET, "/v2/", None, b"").await;
    assert_eq!(ping.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ping.challenge.as_deref(),
        Some("Bearer realm=\"http://registry.test:5000/token\",service=\"test-registry\"")
    );
    // Over TLS the realm built from Host is an https URL.
    let mut over_tls = axum::http::Request::builder()
        .uri("/v2/")
        .header("host", "registry.test:5000")
        .body(axum::body::Body::empty())
        .unwrap();
    over_tls
        .extensions_mut()
        .insert(registry_http::external_url::ServedOverTls);
    let answer = tower::ServiceExt::oneshot(app.clone(), over_tls)
        .await
        .unwrap();
    assert_eq!(
        answer.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"https://registry.test:5000/token\",service=\"test-registry\""
    );
    let push = send(&app, Method::POST, &blob_uri("team/app"), None, BLOB).await;
    assert_eq!(
        push.challenge.as_deref(),
        Some(
            "Bearer realm=\"http://registry.test:5000/token\",service=\"test-registry\",scope=\"repository:team/app:pull,push\""
        )
    );

    let token = |user: Option<&'static str>, scope: &'static str| {
        let app = app.clone();
        async move {
            let auth = user.map(basic);
            let reply = send(
                &app,
                Method::GET,
                &format!("/token?service=test-registry&scope={scope}"),
                auth.as_deref(),
                b"",
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            let body: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["token"], body["access_token"]);
            format!("Bearer {}", body["token"].as_str().unwrap())
        }
    };
    let dev = token(Some("dev"), "repository:team/app:pull,push,delete").await;
    assert_eq!(
        send(&app, Method::GET, "/v2/", Some(&dev), b"")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::POST, &blob_uri("team/app"), Some(&dev), BLOB)
            .await
            .status,
        StatusCode::CREATED
    );
    let blob = format!("/v2/team/app/blobs/{}", Digest::sha256(BLOB));
    let delete = send(&app, Method::DELETE, &blob, Some(&dev), b"").await;
    assert_eq!(
        delete.status,
        StatusCode::UNAUTHORIZED,
        "the token was cut down to pull,push"
    );
    assert!(
        delete
            .challenge
            .unwrap()
            .ends_with(",error=\"insufficient_scope\"")
    );
    let other = send(
        &app,
        Method::GET,
        "/v2/team/other/tags/list",
        Some(&dev),
        b"",
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::UNAUTHORIZED,
        "a token covers only its scopes"
    );

    let anonymous = token(None, "repository:public/app:pull").await;
    assert_eq!(
        send(
            &app,
            Method::GET,
            "/v2/public/app/tags/list",
            Some(&anonymous),
            b""
        )
        .await
        .code(),
        "NAME_UNKNOWN"
    );
    let anonymous_team = token(None, "repository:team/app:pull").await;
    assert_eq!(
        send(&app, Method::GET, &blob, Some(&anonymous_team), b"")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let wrong = send(
        &app,
        Method::GET,
        "/token?scope=repository:team/app:pull",
        Some("Basic ZGV2Ondyb25n"),
        b"",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let forged = send(
        &app,
        Method::GET,
        "/v2/",
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"),
        b"",
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    // Basic credentials are also accepted directly.
    assert_eq!(
        send(&app, Method::GET, &blob, Some(&basic("dev")), b"")
            .await
            .status,
        StatusCode::OK
    );
}
