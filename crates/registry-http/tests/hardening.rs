//! Hostile requests in-process: tokens that must not outlive their user's grants, package
//! repository settings shown only to who may see them, client numbers that must not wrap,
//! ranges per RFC 9110, and bodies that must not be read before the caller is authorized.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::{Digest, Grant, NamePattern, OciRegistry, Packages, Role};
use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::{Value, json};
use tower::ServiceExt;

fn grant(pattern: &str, role: Role) -> Grant {
    Grant {
        pattern: NamePattern::parse(pattern).unwrap(),
        role,
    }
}

/// Users with password `pw` and the given grants, plus `boss`, an admin.
fn users(list: &[(&str, Vec<Grant>)]) -> Arc<StaticUsers> {
    let hash = hash_password("pw").unwrap();
    let mut users: HashMap<String, StaticUser> = list
        .iter()
        .map(|(name, grants)| {
            (
                (*name).to_owned(),
                StaticUser {
                    password_hash: hash.clone(),
                    grants: grants.clone(),
                },
            )
        })
        .collect();
    users.insert(
        "boss".into(),
        StaticUser {
            password_hash: hash,
            grants: vec![grant("*", Role::Admin)],
        },
    );
    Arc::new(StaticUsers::new(users, None).unwrap())
}

fn packages() -> Packages {
    Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    )
}

/// The package APIs over `packages` with these users.
fn package_app(packages: &Packages, users: Arc<StaticUsers>) -> Router {
    let auth = Auth::basic("test", users);
    registry_http::package_admin::router(packages.clone(), Some(auth.clone()))
        .merge(registry_http::generic::router(
            packages.clone(),
            Some(auth.clone()),
        ))
        .merge(registry_http::npm::router(
            packages.clone(),
            Some(auth.clone()),
        ))
        .merge(registry_http::maven::router(
            packages.clone(),
            Some(auth.clone()),
        ))
        .merge(registry_http::nuget::router(
            packages.clone(),
            Some(auth.clone()),
        ))
        .merge(registry_http::terraform::router(
            packages.clone(),
            Some(auth.clone()),
            registry_http::terraform::DownloadSigner::random(),
        ))
        .merge(registry_http::pypi::router(packages.clone(), Some(auth)))
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Mints a token for `user` with `access` on `repositories`.
async fn mint(app: &Router, user: &str, access: &str, repositories: &str) -> String {
    let reply = send(
        app,
        Method::POST,
        "/api/v1/tokens",
        &[("authorization", &basic(user))],
        Body::from(
            json!({ "label": "t", "scopes": [{ "repositories": repositories, "access": access }] })
                .to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.json());
    reply.json()["token"].as_str().unwrap().to_owned()
}

async fn put_file(app: &Router, token: &str, path: &str) -> StatusCode {
    send(
        app,
        Method::PUT,
        &format!("/generic/files/{path}"),
        &[("authorization", &format!("Bearer {token}"))],
        Body::from("bytes"),
    )
    .await
    .status
}

/// A token's access is its scopes intersected with its user's grants as they are now: removing
/// a user, or lowering a grant, takes effect on their tokens at once.
#[tokio::test]
async fn tokens_never_outlive_their_users_grants() {
    let packages = packages();
    let before = package_app(
        &packages,
        users(&[("alice", vec![grant("files", Role::Maintainer)])]),
    );
    let token = mint(&before, "alice", "write", "files").await;
    assert_eq!(
        put_file(&before, &token, "tool/1.0/a").await,
        StatusCode::CREATED
    );

    // alice is now only a reader: her write token writes nothing.
    let demoted = package_app(
        &packages,
        users(&[("alice", vec![grant("files", Role::Reader)])]),
    );
    assert_eq!(
        put_file(&demoted, &token, "tool/1.0/b").await,
        StatusCode::FORBIDDEN
    );
    let read = send(
        &demoted,
        Method::GET,
        "/generic/files/tool/1.0/a",
        &[("authorization", &format!("Bearer {token}"))],
        Body::empty(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "reading is still within both");

    // alice is removed: her token is refused outright, for reads too.
    let removed = package_app(&packages, users(&[]));
    assert_eq!(
        put_file(&removed, &token, "tool/1.0/c").await,
        StatusCode::UNAUTHORIZED
    );
    let read = send(
        &removed,
        Method::GET,
        "/generic/files/tool/1.0/a",
        &[("authorization", &format!("Bearer {token}"))],
        Body::empty(),
    )
    .await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED);
    // The same token as a twine-style Basic password is refused too.
    let twine = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("__token__:{token}"))
    );
    let read = send(
        &removed,
        Method::GET,
        "/pypi/files/simple/",
        &[("authorization", &twine)],
        Body::empty(),
    )
    .await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED);
    let whoami = send(
        &removed,
        Method::GET,
        "/npm/files/-/whoami",
        &[("authorization", &format!("Bearer {token}"))],
        Body::empty(),
    )
    .await;
    assert_eq!(
        whoami.status,
        StatusCode::UNAUTHORIZED,
        "whoami names no removed user"
    );
}

/// A token, whatever its scopes, does not list, mint or revoke its user's tokens.
#[tokio::test]
async fn tokens_do_not_manage_tokens() {
    let packages = packages();
    let app = package_app(
        &packages,
        users(&[("alice", vec![grant("files", Role::Maintainer)])]),
    );
    let reader = mint(&app, "alice", "read", "files").await;
    let writer = mint(&app, "alice", "write", "files").await;
    let bearer = format!("Bearer {reader}");
    let listed = send(
        &app,
        Method::GET,
        "/api/v1/tokens",
        &[("authorization", &bearer)],
        Body::empty(),
    )
    .await;
    assert_eq!(listed.status, StatusCode::FORBIDDEN);
    let own = send(
        &app,
        Method::GET,
        "/api/v1/tokens",
        &[("authorization", &basic("alice"))],
        Body::empty(),
    )
    .await
    .json();
    let id = own["tokens"][1]["id"].as_str().unwrap().to_owned();
    let revoked = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        &[("authorization", &bearer)],
        Body::empty(),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::FORBIDDEN);
    assert_eq!(
        put_file(&app, &writer, "tool/1.0/x").await,
        StatusCode::CREATED,
        "still valid"
    );
}

/// A user holds at most 100 live tokens; an npm login's token is for its repository only.
#[tokio::test]
async fn tokens_are_counted_and_npm_logins_scoped() {
    let packages = packages();
    let app = package_app(
        &packages,
        users(&[("alice", vec![grant("*", Role::Maintainer)])]),
    );
    for _ in 0..100 {
        mint(&app, "alice", "read", "files").await;
    }
    let refused = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        &[("authorization", &basic("alice"))],
        Body::from(
            json!({ "scopes": [{ "repositories": "files", "access": "read" }] }).to_string(),
        ),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.json()
    );

    let app = package_app(
        &packages,
        users(&[("bob", vec![grant("*", Role::Maintainer)])]),
    );
    let login = send(
        &app,
        Method::PUT,
        "/npm/js/-/user/org.couchdb.user:bob",
        &[("content-type", "application/json")],
        Body::from(json!({ "name": "bob", "password": "pw" }).to_string()),
    )
    .await;
    assert_eq!(login.status, StatusCode::CREATED, "{:?}", login.json());
    let token = login.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        put_file(&app, &token, "tool/1.0/x").await,
        StatusCode::FORBIDDEN,
        "a token from npm login for js writes nothing to files"
    );
}

/// A format's API does not read another format's repository.
#[tokio::test]
async fn formats_do_not_read_each_others_repositories() {
    let packages = packages();
    let app = package_app(&packages, users(&[]));
    let admin = [("authorization", basic("boss"))];
    let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let put = send(
        &app,
        Method::PUT,
        "/generic/gen/tool/1.0/x.bin",
        &admin,
        Body::from("x"),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    for uri in [
        "/pypi/gen/simple/",
        "/pypi/gen/simple/tool/",
        "/npm/gen/tool",
    ] {
        let reply = send(&app, Method::GET, uri, &admin, Body::empty()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let deleted = send(
        &app,
        Method::DELETE,
        "/pypi/gen/projects/tool/1.0",
        &admin,
        Body::empty(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    let still = send(
        &app,
        Method::GET,
        "/generic/gen/tool/1.0/x.bin",
        &admin,
        Body::empty(),
    )
    .await;
    assert_eq!(still.status, StatusCode::OK);
}

/// Package repositories are listed only to those who may read them, and their settings only
/// to those who may change them (admins).
#[tokio::test]
async fn package_repository_settings_are_not_public() {
    let packages = packages();
    let app = package_app(
        &packages,
        users(&[("dev", vec![grant("files", Role::Developer)])]),
    );
    for name in ["files", "secret"] {
        let reply = send(
            &app,
            Method::PUT,
            &format!("/api/v1/package-repositories/{name}"),
            &[("authorization", &basic("boss"))],
            Body::from(json!({ "format": "generic", "allow_duplicates": true }).to_string()),
        )
        .await;
        assert!(reply.status.is_success(), "{:?}", reply.json());
    }
    let listed = send(
        &app,
        Method::GET,
        "/api/v1/package-repositories",
        &[("authorization", &basic("dev"))],
        Body::empty(),
    )
    .await
    .json();
    let repositories = listed["repositories"].as_array().unwrap();
    assert_eq!(repositories.len(), 1, "{listed}");
    assert_eq!(repositories[0]["name"], "files");
    assert!(repositories[0].get("settings").is_none(), "{listed}");
    let hidden = send(
        &app,
        Method::GET,
        "/api/v1/package-repositories/secret",
        &[("authorization", &basic("dev"))],
        Body::empty(),
    )
    .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let all = send(
        &app,
        Method::GET,
        "/api/v1/package-repositories",
        &[("authorization", &basic("boss"))],
        Body::empty(),
    )
    .await
    .json();
    assert_eq!(all["repositories"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(
        all["repositories"][1]["settings"]["allow_duplicates"], true,
        "{all}"
    );
    let anonymous = send(
        &app,
        Method::GET,
        "/api/v1/package-repositories",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

/// A body whose every poll is counted: the proof that nothing of it was read.
fn counted_body(polls: &Arc<AtomicUsize>) -> Body {
    let polls = Arc::clone(polls);
    Body::from_stream(futures::stream::repeat_with(move || {
        polls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from_static(&[b'x'; 1024]))
    }))
}

/// Requests without credentials are refused before a byte of their body is read, on every
/// route that takes a body.
#[tokio::test]
async fn bodies_are_not_read_before_authorization() {
    let packages = packages();
    let users = users(&[("dev", vec![grant("js", Role::Developer)])]);
    let oci = registry_http::oci::router_with_auth(
        OciRegistry::new(
            Arc::new(MemoryBlobStore::new()),
            Arc::new(MemoryMetadataStore::new()),
        ),
        Auth::basic("test", Arc::clone(&users) as _),
    );
    let app = package_app(&packages, users).merge(oci);
    for (method, uri) in [
        (Method::PUT, "/npm/js/left-pad"),
        (Method::PUT, "/npm/js/-/user/org.couchdb.user:dev"),
        (Method::POST, "/pypi/py/"),
        (Method::PUT, "/generic/files/tool/1.0/x"),
        (Method::PUT, "/maven/mvn/com/example/a/1.0/a-1.0.jar"),
        (Method::PUT, "/nuget/nu/api/v2/package"),
        (Method::PUT, "/nuget/nu/api/v2/symbolpackage"),
        (Method::PUT, "/nuget/nu/api/v2/package/a/1.0.0/deprecation"),
        (
            Method::PUT,
            "/terraform/modules/v1/tf/hello/local/1.0.0/file",
        ),
        (Method::POST, "/v2/team/app/blobs/uploads/"),
        (Method::PUT, "/v2/team/app/manifests/v1"),
        (Method::PUT, "/api/v1/tag-rules/r"),
        (Method::PUT, "/api/v1/package-repositories/js"),
        (Method::POST, "/api/v1/tokens"),
    ] {
        let polls = Arc::new(AtomicUsize::new(0));
        let reply = send(&app, method.clone(), uri, &[], counted_body(&polls)).await;
        let login = uri.contains("org.couchdb.user");
        if login {
            // A login carries its credentials in the body: it is read, within a small bound.
            assert_eq!(
                reply.status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "{method} {uri}"
            );
            assert!(
                polls.load(Ordering::SeqCst) <= 1025,
                "{method} {uri}: read past the bound"
            );
        } else {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            assert_eq!(
                polls.load(Ordering::SeqCst),
                0,
                "{method} {uri}: the body was read"
            );
        }
    }
}

fn oci_app() -> Router {
    registry_http::oci::router(OciRegistry::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    ))
}

/// `Content-Range: 0-18446744073709551615` would wrap `end - start + 1` to 0: refused as an
/// invalid upload, nothing appended.
#[tokio::test]
async fn content_range_numbers_do_not_wrap() {
    let app = oci_app();
    let started = send(
        &app,
        Method::POST,
        "/v2/a/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.headers["location"].to_str().unwrap().to_owned();
    let reply = send(
        &app,
        Method::PATCH,
        &location,
        &[("content-range", "0-18446744073709551615")],
        Body::from("abc"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "{:?}",
        reply.body
    );
    let status = send(&app, Method::GET, &location, &[], Body::empty()).await;
    assert_eq!(status.headers["range"], "0-0", "nothing was appended");
}

/// Blob ranges per RFC 9110 §14: a last position past the end is clamped (206), a range whose
/// last position is before its first is answered 416 with `Content-Range: bytes */<size>`.
#[tokio::test]
async fn blob_ranges_follow_rfc_9110() {
    let app = oci_app();
    let content = b"0123456789";
    let digest = Digest::sha256(content);
    let pushed = send(
        &app,
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={digest}"),
        &[],
        Body::from(&content[..]),
    )
    .await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let uri = format!("/v2/a/blobs/{digest}");
    let whole = send(
        &app,
        Method::GET,
        &uri,
        &[("range", "bytes=0-18446744073709551615")],
        Body::empty(),
    )
    .await;
    assert_eq!(whole.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(whole.headers["content-range"], "bytes 0-9/10");
    assert_eq!(&whole.body[..], content);
    let tail = send(
        &app,
        Method::GET,
        &uri,
        &[("range", "bytes=7-100")],
        Body::empty(),
    )
    .await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&tail.body[..], b"789");
    for bad in ["bytes=5-2", "bytes=10-", "bytes=abc"] {
        let reply = send(&app, Method::GET, &uri, &[("range", bad)], Body::empty()).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(reply.headers["content-range"], "bytes */10", "{bad}");
    }
}

/// Multipart framing is bounded for every router that reads multipart bodies: a preamble that
/// never reaches its boundary is refused after 64 KiB, not buffered whole (and searched again
/// as it grows); so are part headers that never end.
#[tokio::test]
async fn multipart_framing_is_bounded() {
    let packages = packages();
    let users = users(&[(
        "dev",
        vec![grant("py", Role::Developer), grant("nu", Role::Developer)],
    )]);
    let app = package_app(&packages, users);
    let credentials = basic("dev");
    for (method, uri) in [
        (Method::POST, "/pypi/py/"),
        (Method::PUT, "/nuget/nu/api/v2/package"),
    ] {
        let polls = Arc::new(AtomicUsize::new(0));
        let reply = send(
            &app,
            method.clone(),
            uri,
            &[
                ("Authorization", &credentials),
                ("Content-Type", "multipart/form-data; boundary=b"),
            ],
            counted_body(&polls),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        let read = polls.load(Ordering::SeqCst);
        assert!(read <= 100, "{uri}: {read} KiB of framing read");
        let mut headers_without_end =
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\nX-Pad: ".to_vec();
        headers_without_end.extend(vec![b'y'; 4 << 20]);
        let reply = send(
            &app,
            method,
            uri,
            &[
                ("Authorization", &credentials),
                ("Content-Type", "multipart/form-data; boundary=b"),
            ],
            Body::from(headers_without_end),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
    }
}
