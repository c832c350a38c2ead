//! An embedder's own `Authorizer` decides on every route: the OCI API, the package APIs and the
//! admin APIs alike. A principal's grants mean nothing the authorizer does not say.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use registry_core::{
    Action, Authorizer, Grant, NamePattern, OciRegistry, Packages, Principal, RepositoryName, Role,
};
use registry_http::auth::{Auth, AuthMode, StaticUser, StaticUsers, hash_password};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::json;
use tower::ServiceExt;

/// Refuses everything, whatever the grants.
#[derive(Debug)]
struct Nobody;

impl Authorizer for Nobody {
    fn authorize(&self, _: &Principal, _: &RepositoryName, _: Action) -> bool {
        false
    }
    fn role(&self, _: &Principal, _: &RepositoryName) -> Option<Role> {
        None
    }
    fn role_over(&self, _: &Principal, _: &NamePattern) -> Option<Role> {
        None
    }
}

/// Allows everything to anyone authenticated, whatever the grants.
#[derive(Debug)]
struct Everybody;

impl Authorizer for Everybody {
    fn authorize(&self, _: &Principal, _: &RepositoryName, _: Action) -> bool {
        true
    }
    fn role(&self, _: &Principal, _: &RepositoryName) -> Option<Role> {
        Some(Role::Admin)
    }
    fn role_over(&self, _: &Principal, _: &NamePattern) -> Option<Role> {
        Some(Role::Admin)
    }
}

/// `boss` holds admin on `*`; `nobody` holds no grant at all.
fn app(authorizer: Arc<dyn Authorizer>) -> Router {
    let hash = hash_password("pw").unwrap();
    let users = HashMap::from([
        (
            "boss".to_owned(),
            StaticUser {
                password_hash: hash.clone(),
                grants: vec![Grant {
                    pattern: NamePattern::parse("*").unwrap(),
                    role: Role::Admin,
                }],
            },
        ),
        (
            "nobody".to_owned(),
            StaticUser {
                password_hash: hash,
                grants: vec![],
            },
        ),
    ]);
    let auth = Auth {
        mode: AuthMode::Basic {
            realm: "test".into(),
        },
        authenticator: Arc::new(StaticUsers::new(users, None).unwrap()),
        authorizer,
    };
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn registry_core::MetadataStore> = Arc::new(MemoryMetadataStore::new());
    registry_http::app::Application::new(
        OciRegistry::new(Arc::clone(&blobs), Arc::clone(&metadata)),
        Packages::new(blobs, metadata),
    )
    .auth(auth)
    .router()
}

async fn status(app: &Router, user: &str, method: Method, uri: &str, body: &str) -> StatusCode {
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Basic {credentials}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

/// Every kind of route: repository reads and writes in each protocol, the catalog, namespace
/// usage, tag rules, package repository settings, tokens.
fn routes() -> Vec<(Method, &'static str, String)> {
    let rule = json!({ "repositories": "team/*", "tags": "v.*", "kind": "immutable" }).to_string();
    vec![
        (Method::GET, "/v2/_catalog", String::new()),
        (Method::POST, "/v2/team/app/blobs/uploads/", String::new()),
        (Method::GET, "/api/v1/namespaces/team/usage", String::new()),
        (Method::PUT, "/api/v1/tag-rules/releases", rule),
        (Method::PUT, "/generic/files/tool/1.0/a.txt", "bytes".into()),
        (
            Method::PUT,
            "/api/v1/package-repositories/files",
            json!({ "format": "generic" }).to_string(),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            json!({ "scopes": [{ "repositories": "files", "access": "read" }] }).to_string(),
        ),
        (Method::GET, "/pypi/py/simple/", String::new()),
        (Method::GET, "/npm/js/-/v1/search?text=pad", String::new()),
    ]
}

#[tokio::test]
async fn an_authorizer_that_refuses_everything_binds_even_a_registry_admin() {
    let app = app(Arc::new(Nobody));
    for (method, uri, body) in routes() {
        let got = status(&app, "boss", method.clone(), uri, &body).await;
        assert_eq!(got, StatusCode::FORBIDDEN, "{method} {uri}");
    }
}

#[tokio::test]
async fn an_authorizer_that_allows_everything_needs_no_grants() {
    let app = app(Arc::new(Everybody));
    for (method, uri, body) in routes() {
        let got = status(&app, "nobody", method.clone(), uri, &body).await;
        assert!(got.is_success(), "{method} {uri}: {got}");
    }
}
