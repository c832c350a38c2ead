//! The detailed tag listing extension: `GET /api/v1/repositories/<name>/tags`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::Actor;
use registry_core::blob::once_stream;
use registry_core::manifest::OCI_MANIFEST;
use registry_core::{
    Digest, Grant, NamePattern, OciRegistry, Reference, RepositoryName, Role, Tag,
};
use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn registry_with_tags() -> OciRegistry {
    let registry = OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let repo = RepositoryName::parse("team/app").unwrap();
    let config = Bytes::from_static(b"{}");
    registry
        .put_blob(&repo, &Digest::sha256(&config), once_stream(config.clone()))
        .await
        .unwrap();
    let manifest = Bytes::from(
        json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256(&config), "size": 2 },
                "layers": [] })
        .to_string(),
    );
    for tag in ["v1.0", "v1.1", "latest", "v2.0"] {
        let reference = Reference::Tag(Tag::parse(tag).unwrap());
        registry
            .put_manifest(
                &repo,
                &reference,
                manifest.clone(),
                Some(OCI_MANIFEST),
                &Actor::trusted(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    registry
}

async fn get(app: &Router, uri: &str, auth: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().uri(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn names(body: &Value) -> Vec<String> {
    body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_sorts_and_pages_both_ways() {
    let app = registry_http::oci::router(registry_with_tags().await);
    let base = "/api/v1/repositories/team/app/tags";

    let (status, all) = get(&app, base, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&all), ["latest", "v1.0", "v1.1", "v2.0"]);
    let first = &all["tags"][0];
    assert_eq!(first["mediaType"], OCI_MANIFEST);
    assert!(first["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        first["size"].as_u64().unwrap(),
        first["manifestSize"].as_u64().unwrap() + 2
    );
    assert!(first["publishedAt"].as_i64().unwrap() >= first["createdAt"].as_i64().unwrap());

    let (_, filtered) = get(&app, &format!("{base}?contains=v1."), None).await;
    assert_eq!(names(&filtered), ["v1.0", "v1.1"]);
    let (_, newest) = get(&app, &format!("{base}?sort=-published&n=2"), None).await;
    assert_eq!(names(&newest), ["v2.0", "latest"]);
    let next = newest["next"].as_str().unwrap();
    let (_, older) = get(
        &app,
        &format!("{base}?sort=-published&n=2&after={next}"),
        None,
    )
    .await;
    assert_eq!(names(&older), ["v1.1", "v1.0"]);
    let previous = older["previous"].as_str().unwrap();
    let (_, back) = get(
        &app,
        &format!("{base}?sort=-published&n=2&before={previous}"),
        None,
    )
    .await;
    assert_eq!(
        names(&back),
        ["v2.0", "latest"],
        "paging back returns the first page"
    );
    // Going back to a short first page: it has a next page and no previous one.
    let (_, second) = get(&app, &format!("{base}?sort=name&n=3&after=0.latest"), None).await;
    assert_eq!(names(&second), ["v1.0", "v1.1", "v2.0"]);
    let previous = second["previous"].as_str().unwrap();
    let (_, first) = get(
        &app,
        &format!("{base}?sort=name&n=3&before={previous}"),
        None,
    )
    .await;
    assert_eq!(names(&first), ["latest"]);
    assert!(first["next"].is_string(), "{first}");
    assert!(first.get("previous").is_none(), "{first}");

    assert_eq!(
        get(&app, &format!("{base}?sort=size"), None).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&app, &format!("{base}?after=nonsense"), None).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&app, "/api/v1/repositories/no/such/tags", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/v1/repositories/Bad/tags", None).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// A user with the reader role over `pattern`, password "pw".
fn reader(pattern: &str) -> StaticUser {
    StaticUser {
        password_hash: hash_password("pw").unwrap(),
        grants: vec![Grant {
            pattern: NamePattern::parse(pattern).unwrap(),
            role: Role::Reader,
        }],
    }
}

#[tokio::test]
async fn needs_pull_access() {
    let users = HashMap::from([
        ("team".to_owned(), reader("team/*")),
        ("other".to_owned(), reader("other/*")),
    ]);
    let auth = Auth::basic("r", Arc::new(StaticUsers::new(users, None).unwrap()));
    let app = registry_http::oci::router_with_auth(registry_with_tags().await, auth);
    let uri = "/api/v1/repositories/team/app/tags";
    assert_eq!(get(&app, uri, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, uri, Some("Basic b3RoZXI6cHc=")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&app, uri, Some("Basic dGVhbTpwdw==")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn storage_usage_of_a_repository_and_a_namespace() {
    let registry = registry_with_tags().await;
    let other = RepositoryName::parse("team/other").unwrap();
    let config = Bytes::from_static(b"{}");
    registry
        .put_blob(&other, &Digest::sha256(&config), once_stream(config))
        .await
        .unwrap();
    let manifest = registry
        .manifest(
            &RepositoryName::parse("team/app").unwrap(),
            &Reference::Tag(Tag::parse("latest").unwrap()),
        )
        .await
        .unwrap();
    registry
        .put_manifest(
            &other,
            &Reference::Tag(Tag::parse("v1").unwrap()),
            manifest.bytes.clone(),
            Some(OCI_MANIFEST),
            &Actor::trusted(),
        )
        .await
        .unwrap();
    let app = registry_http::oci::router(registry);

    let (status, repo) = get(&app, "/api/v1/repositories/team/app/usage", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            repo["repositories"].as_u64(),
            repo["blobs"].as_u64(),
            repo["blobBytes"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
    let (_, namespace) = get(&app, "/api/v1/namespaces/team/usage", None).await;
    assert_eq!(namespace["repositories"], 2);
    assert_eq!(namespace["manifests"], 2);
    assert_eq!(
        namespace["blobs"], 1,
        "the config both repositories share counts once"
    );
    assert_eq!(
        namespace["size"],
        namespace["manifestBytes"].as_u64().unwrap() + 2
    );
    assert_eq!(
        get(&app, "/api/v1/repositories/team/none/usage", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/v1/namespaces/nobody/usage", None).await.1["repositories"],
        0
    );
}

#[tokio::test]
async fn namespace_usage_needs_a_grant_over_the_whole_namespace() {
    // "team": reader on team/*; "other": reader on team/app only.
    let users = HashMap::from([
        ("team".to_owned(), reader("team/*")),
        ("other".to_owned(), reader("team/app")),
    ]);
    let auth = Auth::basic("r", Arc::new(StaticUsers::new(users, None).unwrap()));
    let app = registry_http::oci::router_with_auth(registry_with_tags().await, auth);
    let uri = "/api/v1/namespaces/team/usage";
    assert_eq!(get(&app, uri, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, uri, Some("Basic b3RoZXI6cHc=")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&app, uri, Some("Basic dGVhbTpwdw==")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(
            &app,
            "/api/v1/repositories/team/app/usage",
            Some("Basic b3RoZXI6cHc=")
        )
        .await
        .0,
        StatusCode::OK
    );
}
