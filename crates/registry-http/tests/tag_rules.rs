//! Tag rules and cleanup policies over HTTP: the admin API (who may manage what, bad rules
//! refused with nothing applied), immutable and protected tags refused on `/v2/` with `DENIED`
//! naming the rule, rules carried in an embedder's token, and cleanup runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{Digest, Grant, Limits, NamePattern, OciRegistry, Role};
use registry_http::auth::{
    Auth, ResourceAccess, StaticUser, StaticUsers, TokenIssuer, hash_password,
};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or("")
    }
    fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: impl Into<Vec<u8>>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.test");
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
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

const CONFIG: &[u8] = b"{}";

/// A distinct manifest per `n` (its annotation differs), over the empty config.
fn manifest(n: u32) -> Vec<u8> {
    json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": Digest::sha256(CONFIG), "size": 2 },
        "layers": [],
        "annotations": { "n": n.to_string() },
    })
    .to_string()
    .into_bytes()
}

/// Uploads the config blob, then pushes manifest `n` under `reference`.
async fn push(app: &Router, auth: Option<&str>, repo: &str, reference: &str, n: u32) -> Reply {
    let upload = format!(
        "/v2/{repo}/blobs/uploads/?digest={}",
        Digest::sha256(CONFIG)
    );
    let reply = send(app, Method::POST, &upload, auth, CONFIG).await;
    assert_eq!(reply.status, StatusCode::CREATED, "config upload");
    let uri = format!("/v2/{repo}/manifests/{reference}");
    let request = Request::builder()
        .method(Method::PUT)
        .uri(&uri)
        .header("content-type", OCI_MANIFEST);
    let request = match auth {
        Some(auth) => request.header("authorization", auth),
        None => request,
    };
    let response = app
        .clone()
        .oneshot(request.body(Body::from(manifest(n))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn digest_of(n: u32) -> Digest {
    Digest::sha256(&manifest(n))
}

fn assert_denied(reply: &Reply, rule: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert_eq!(reply.code(), "DENIED");
    assert!(
        reply.message().contains(&format!("\"{rule}\"")),
        "names the rule: {}",
        reply.message()
    );
}

fn registry(max_rules: usize) -> OciRegistry {
    OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    )
    .with_limits(Limits {
        max_rules,
        ..Limits::default()
    })
}

#[tokio::test]
async fn immutable_tags_on_an_open_registry() {
    let app = registry_http::oci::router(registry(3));
    let rule = json!({ "repositories": "*", "tags": "v[0-9.]+", "kind": "immutable" });
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/tag-rules/releases",
        None,
        rule.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["name"], "releases");
    assert_eq!(reply.body["source"], "api");

    assert_eq!(
        push(&app, None, "team/app", "v1.0", 1).await.status,
        StatusCode::CREATED
    );
    // The same manifest again is no change; another one is refused, and so are deletions.
    assert_eq!(
        push(&app, None, "team/app", "v1.0", 1).await.status,
        StatusCode::CREATED
    );
    assert_denied(&push(&app, None, "team/app", "v1.0", 2).await, "releases");
    let tagged = send(&app, Method::GET, "/v2/team/app/manifests/v1.0", None, "").await;
    assert_eq!(tagged.body["annotations"]["n"], "1", "the tag did not move");
    assert_denied(
        &send(
            &app,
            Method::DELETE,
            "/v2/team/app/manifests/v1.0",
            None,
            "",
        )
        .await,
        "releases",
    );
    let by_digest = format!("/v2/team/app/manifests/{}", digest_of(1));
    assert_denied(
        &send(&app, Method::DELETE, &by_digest, None, "").await,
        "releases",
    );
    // Tags the pattern does not match (whole-name match) behave as usual.
    assert_eq!(
        push(&app, None, "team/app", "dev-v1.0", 3).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        push(&app, None, "team/app", "dev-v1.0", 4).await.status,
        StatusCode::CREATED
    );

    // Bad rules: clear errors, nothing applied.
    let bad = [
        (
            json!({ "repositories": "*", "tags": "(", "kind": "immutable" }),
            "does not compile",
        ),
        (
            json!({ "repositories": "*", "tags": "a".repeat(256), "kind": "immutable" }),
            "limit is 255",
        ),
        (
            json!({ "repositories": "Bad/*", "tags": "x", "kind": "immutable" }),
            "repository pattern",
        ),
        (
            json!({ "repositories": "*", "tags": "x", "kind": "frozen" }),
            "unknown variant `frozen`",
        ),
        (
            json!({ "repositories": "*", "tags": "x", "kind": "protected", "push": "god", "delete": "owner" }),
            "god",
        ),
        (
            json!({ "name": "other", "repositories": "*", "tags": "x", "kind": "immutable" }),
            "the path",
        ),
    ];
    for (rule, expected) in bad {
        let reply = send(
            &app,
            Method::PUT,
            "/api/v1/tag-rules/bad",
            None,
            rule.to_string(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{rule}");
        assert!(
            reply.message().contains(expected),
            "{rule}: {}",
            reply.message()
        );
    }
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/tag-rules/Bad%20Name",
        None,
        json!({ "repositories": "*", "tags": "x", "kind": "immutable" }).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(&app, Method::PUT, "/api/v1/tag-rules/bad", None, "not json").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // The count limit (3 here).
    for name in ["two", "three"] {
        let rule = json!({ "repositories": "x/*", "tags": name, "kind": "immutable" });
        let reply = send(
            &app,
            Method::PUT,
            &format!("/api/v1/tag-rules/{name}"),
            None,
            rule.to_string(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let rule = json!({ "repositories": "x/*", "tags": "four", "kind": "immutable" });
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/tag-rules/four",
        None,
        rule.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.message().contains("at most 3"), "{}", reply.message());
    let listed = send(&app, Method::GET, "/api/v1/tag-rules", None, "").await;
    let names: Vec<&str> = listed.body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["releases", "three", "two"]);

    // Replacing answers 200; deleting the rule frees the tag.
    let rule = json!({ "repositories": "other/*", "tags": "v[0-9.]+", "kind": "immutable" });
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/tag-rules/releases",
        None,
        rule.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        push(&app, None, "team/app", "v1.0", 2).await.status,
        StatusCode::CREATED
    );
    let reply = send(&app, Method::DELETE, "/api/v1/tag-rules/releases", None, "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = send(&app, Method::DELETE, "/api/v1/tag-rules/releases", None, "").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
}

fn grant(pattern: &str, role: Role) -> Grant {
    Grant {
        pattern: NamePattern::parse(pattern).unwrap(),
        role,
    }
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    )
}

fn users() -> Arc<StaticUsers> {
    let hash = hash_password("pw").unwrap();
    let user = |grants| StaticUser {
        password_hash: hash.clone(),
        grants,
    };
    Arc::new(
        StaticUsers::new(
            HashMap::from([
                (
                    "dev".to_owned(),
                    user(vec![grant("team/*", Role::Developer)]),
                ),
                (
                    "maint".to_owned(),
                    user(vec![grant("team/*", Role::Maintainer)]),
                ),
                ("owner".to_owned(), user(vec![grant("team/*", Role::Owner)])),
                ("admin".to_owned(), user(vec![grant("*", Role::Admin)])),
            ]),
            None,
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn protected_tags_and_who_manages_rules() {
    let app = registry_http::oci::router_with_auth(registry(10), Auth::basic("test", users()));
    let (dev, maint, owner, admin) = (basic("dev"), basic("maint"), basic("owner"), basic("admin"));
    let protected = json!({ "repositories": "team/*", "tags": "main|release-.*",
                            "kind": "protected", "push": "maintainer", "delete": "owner" });
    // Who may manage: not anonymous, not a developer; an owner within the namespace; an admin
    // anywhere.
    let put = |auth: Option<String>, name: &'static str, rule: Value| {
        let app = app.clone();
        async move {
            send(
                &app,
                Method::PUT,
                &format!("/api/v1/tag-rules/{name}"),
                auth.as_deref(),
                rule.to_string(),
            )
            .await
        }
    };
    assert_eq!(
        put(None, "main", protected.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        put(Some(dev.clone()), "main", protected.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(Some(owner.clone()), "main", protected.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let everywhere = json!({ "repositories": "*", "tags": "x", "kind": "immutable" });
    assert_eq!(
        put(Some(owner.clone()), "everywhere", everywhere.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(Some(admin.clone()), "everywhere", everywhere)
            .await
            .status,
        StatusCode::CREATED
    );
    // An owner sees the rules they manage; an admin sees all.
    let count = |reply: Reply| reply.body["rules"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(send(&app, Method::GET, "/api/v1/tag-rules", Some(&owner), "").await),
        1
    );
    assert_eq!(
        count(send(&app, Method::GET, "/api/v1/tag-rules", Some(&admin), "").await),
        2
    );
    assert_eq!(
        send(
            &app,
            Method::DELETE,
            "/api/v1/tag-rules/everywhere",
            Some(&owner),
            ""
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    // Protected: a developer pushes other tags but not main; a maintainer pushes main but may
    // not delete it; an owner may.
    assert_eq!(
        push(&app, Some(&dev), "team/app", "feature", 1)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_denied(&push(&app, Some(&dev), "team/app", "main", 1).await, "main");
    assert_eq!(
        push(&app, Some(&maint), "team/app", "main", 1).await.status,
        StatusCode::CREATED
    );
    assert_denied(&push(&app, Some(&dev), "team/app", "main", 2).await, "main");
    assert_denied(
        &send(
            &app,
            Method::DELETE,
            "/v2/team/app/manifests/main",
            Some(&maint),
            "",
        )
        .await,
        "main",
    );
    let by_digest = format!("/v2/team/app/manifests/{}", digest_of(1));
    assert_denied(
        &send(&app, Method::DELETE, &by_digest, Some(&maint), "").await,
        "main",
    );
    let reply = send(
        &app,
        Method::DELETE,
        "/v2/team/app/manifests/main",
        Some(&owner),
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn rules_from_an_embedders_token() {
    let secret = b"a secret shared with the embedder, 32+ bytes";
    let issuer = TokenIssuer::new("registry", secret, Duration::from_secs(300));
    let embedder = TokenIssuer::new("registry", secret, Duration::from_secs(300));
    let app = registry_http::oci::router_with_auth(registry(10), Auth::token(issuer, users()));
    let access = |role: Option<Role>, rules: Value| {
        vec![ResourceAccess {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into(), "push".into(), "delete".into()],
            role,
            tag_rules: serde_json::from_value(rules).unwrap(),
        }]
    };
    let rules = json!([{ "name": "embedder-frozen", "repositories": "team/*",
                         "tags": "stable", "kind": "immutable" }]);
    let token = embedder
        .sign("ci", access(Some(Role::Maintainer), rules))
        .unwrap();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        push(&app, Some(&bearer), "team/app", "stable", 1)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_denied(
        &push(&app, Some(&bearer), "team/app", "stable", 2).await,
        "embedder-frozen",
    );
    // The rule travels with that token only: another token may move the tag.
    let plain = embedder.sign("ci", access(None, json!([]))).unwrap();
    let reply = push(
        &app,
        Some(&format!("Bearer {plain}")),
        "team/app",
        "stable",
        2,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn cleanup_policies_over_http() {
    let app = registry_http::oci::router(registry(10));
    for (n, tag) in ["latest", "dev-1", "dev-2", "dev-3"].iter().enumerate() {
        assert_eq!(
            push(&app, None, "team/app", tag, n as u32).await.status,
            StatusCode::CREATED
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let impossible = json!({ "repositories": "team/*" });
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/cleanup-policies/p",
        None,
        impossible.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.message().contains("would delete every tag"),
        "{}",
        reply.message()
    );
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/cleanup-policies/p",
        None,
        json!({ "repositories": "*", "older_than": "tomorrow" }).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let policy = json!({ "repositories": "team/*", "keep_n": 1, "name_regex": "dev-.*" });
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/cleanup-policies/dev",
        None,
        policy.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let listed = send(&app, Method::GET, "/api/v1/cleanup-policies", None, "").await;
    assert_eq!(listed.body["policies"][0]["keep_n"], 1);

    let reply = send(&app, Method::POST, "/api/v1/cleanup-runs", None, "").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "dry_run must be said"
    );
    let dry = send(
        &app,
        Method::POST,
        "/api/v1/cleanup-runs?dry_run=true",
        None,
        "",
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK);
    let tags: Vec<&str> = dry.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["dev-2", "dev-1"]);
    assert_eq!(dry.body["deleted"], 2);
    let list = send(&app, Method::GET, "/v2/team/app/tags/list", None, "").await;
    assert_eq!(list.body["tags"].as_array().unwrap().len(), 4);
    let reply = send(
        &app,
        Method::POST,
        "/api/v1/cleanup-runs?dry_run=false&policy=nope",
        None,
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let run = send(
        &app,
        Method::POST,
        "/api/v1/cleanup-runs?dry_run=false&policy=dev",
        None,
        "",
    )
    .await;
    assert_eq!(run.body["deleted"], 2);
    let list = send(&app, Method::GET, "/v2/team/app/tags/list", None, "").await;
    assert_eq!(list.body["tags"], json!(["dev-3", "latest"]));
}
