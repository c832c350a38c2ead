//! The NuGet router in-process: pushes as NuGet clients make them (multipart), the flat
//! container, registrations in both hives (inlined, then paged), search filters, unlist and
//! relist independent of deprecation, symbol packages, purges, keys with authentication on, and
//! bad packages refused with nothing published.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use registry_core::{MetadataStore, Packages};
use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
use serde_json::Value;
use tower::ServiceExt;

fn setup() -> (Router, Arc<dyn MetadataStore>) {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::new(MemoryBlobStore::new()), Arc::clone(&metadata));
    (registry_http::nuget::router(packages, None), metadata)
}

struct Answer {
    status: StatusCode,
    reason: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(
    app: &Router,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://feed.test/nuget/feed/{path}"))
        .header(header::HOST, "feed.test")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        reason,
        body: body.to_vec(),
    }
}

async fn get(app: &Router, path: &str) -> Answer {
    send(app, Method::GET, path, "text/plain", Vec::new()).await
}

fn nuspec(id: &str, version: &str, extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>{id}</id>
    <version>{version}</version>
    <authors>Ada</authors>
    <description>Says hello.</description>
    {extra}
  </metadata>
</package>"#
    )
}

fn nupkg(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut writer, data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn package(id: &str, version: &str, extra: &str) -> Vec<u8> {
    let spec = nuspec(id, version, extra);
    nupkg(&[
        (&format!("{id}.nuspec"), spec.as_bytes()),
        ("lib/net6.0/Hello.dll", &[7u8; 4096]),
    ])
}

/// A multipart body as NuGet.exe sends it (quoted boundary, one part).
fn multipart(bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "4c6f2e2a-8e2b-4d39-9c61-6f3c1b0a8d11";
    let mut body = format!(
        "--{boundary}\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: form-data; name=package; filename=package.nupkg; filename*=utf-8''package.nupkg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary=\"{boundary}\""),
        body,
    )
}

async fn push_to(app: &Router, endpoint: &str, bytes: &[u8]) -> Answer {
    let (content_type, body) = multipart(bytes);
    send(app, Method::PUT, endpoint, &content_type, body).await
}

async fn push(app: &Router, bytes: &[u8]) -> Answer {
    push_to(app, "api/v2/package/", bytes).await
}

const DEPENDENCIES: &str = r#"<dependencies>
      <group targetFramework="net6.0"><dependency id="Other.Lib" version="[1.0.0, )" /></group>
    </dependencies>"#;

#[tokio::test]
async fn a_pushed_package_is_served_by_every_resource() {
    let (app, _) = setup();
    let index = get(&app, "v3/index.json").await.json();
    let resource = |kind: &str| {
        index["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["@type"] == kind)
            .map(|r| r["@id"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{kind} missing"))
    };
    assert_eq!(
        resource("PackagePublish/2.0.0"),
        "http://feed.test/nuget/feed/api/v2/package"
    );
    assert_eq!(
        resource("RegistrationsBaseUrl/Versioned"),
        "http://feed.test/nuget/feed/v3/registration-semver2/"
    );

    let bytes = package("Demo.Hello", "1.0", DEPENDENCIES);
    let pushed = push(&app, &bytes).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text());

    // The flat container: lowercase, normalized.
    let versions = get(&app, "v3/flatcontainer/demo.hello/index.json")
        .await
        .json();
    assert_eq!(versions["versions"], serde_json::json!(["1.0.0"]));
    let download = get(
        &app,
        "v3/flatcontainer/Demo.Hello/1.0.0/demo.hello.1.0.0.nupkg",
    )
    .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.body, bytes);
    let spec = get(&app, "v3/flatcontainer/demo.hello/1.0.0/demo.hello.nuspec").await;
    assert_eq!(spec.text(), nuspec("Demo.Hello", "1.0", DEPENDENCIES));
    assert_eq!(
        get(&app, "v3/flatcontainer/demo.hello/1.0.0/other.1.0.0.nupkg")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Registrations: the index inlines its page, with dependency groups.
    let registration = get(&app, "v3/registration-semver2/demo.hello/index.json")
        .await
        .json();
    let item = &registration["items"][0]["items"][0];
    assert_eq!(item["catalogEntry"]["id"], "Demo.Hello");
    assert_eq!(item["catalogEntry"]["version"], "1.0.0");
    assert_eq!(item["catalogEntry"]["listed"], true);
    assert_eq!(
        item["catalogEntry"]["dependencyGroups"][0]["dependencies"][0]["range"],
        "[1.0.0, )"
    );
    assert_eq!(
        item["packageContent"],
        "http://feed.test/nuget/feed/v3/flatcontainer/demo.hello/1.0.0/demo.hello.1.0.0.nupkg"
    );
    let leaf = get(&app, "v3/registration/demo.hello/1.0.0.json")
        .await
        .json();
    assert_eq!(leaf["listed"], true);

    // The same version again, however written, is a conflict NuGet clients print.
    for again in ["1.0", "1.0.0.0", "01.0.0"] {
        let duplicate = push(&app, &package("DEMO.hello", again, "")).await;
        assert_eq!(duplicate.status, StatusCode::CONFLICT, "{again}");
        let reason = duplicate.reason.unwrap_or_default();
        assert!(reason.starts_with("Conflict - "), "{reason}");
        assert!(reason.contains("already exists"), "{reason}");
    }

    // Unlist: still installable by version, no longer listed or found.
    let unlisted = send(
        &app,
        Method::DELETE,
        "api/v2/package/Demo.Hello/1.0.0",
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(
        unlisted.status,
        StatusCode::NO_CONTENT,
        "{}",
        unlisted.text()
    );
    let registration = get(&app, "v3/registration-semver2/demo.hello/index.json")
        .await
        .json();
    assert_eq!(
        registration["items"][0]["items"][0]["catalogEntry"]["listed"],
        false
    );
    let found = get(&app, "v3/search?q=demo&semVerLevel=2.0.0").await.json();
    assert_eq!(found["totalHits"], 0);
    assert_eq!(
        get(
            &app,
            "v3/flatcontainer/demo.hello/1.0.0/demo.hello.1.0.0.nupkg"
        )
        .await
        .status,
        StatusCode::OK
    );
    let relisted = send(
        &app,
        Method::POST,
        "api/v2/package/demo.hello/1.0",
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(relisted.status, StatusCode::OK);
    let found = get(&app, "v3/search?q=HELLO&semVerLevel=2.0.0")
        .await
        .json();
    assert_eq!(found["totalHits"], 1);
    assert_eq!(found["data"][0]["id"], "Demo.Hello");

    // Deprecation shows in the registration; a bad one is refused.
    let deprecated = send(
        &app,
        Method::PUT,
        "api/v2/package/demo.hello/1.0.0/deprecation",
        "application/json",
        br#"{"reasons":["Legacy"],"message":"use Demo.World","alternatePackage":{"id":"Demo.World","range":"[2.0.0, )"}}"#.to_vec(),
    )
    .await;
    assert_eq!(deprecated.status, StatusCode::OK, "{}", deprecated.text());
    let entry = &get(&app, "v3/registration/demo.hello/index.json")
        .await
        .json()["items"][0]["items"][0]["catalogEntry"];
    assert_eq!(
        entry["deprecation"]["reasons"],
        serde_json::json!(["Legacy"])
    );
    assert_eq!(entry["deprecation"]["alternatePackage"]["id"], "Demo.World");
    let refused = send(
        &app,
        Method::PUT,
        "api/v2/package/demo.hello/1.0.0/deprecation",
        "application/json",
        br#"{"reasons":["Because"]}"#.to_vec(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // Purge deletes the version and its files.
    let purged = send(
        &app,
        Method::DELETE,
        "api/v2/package/demo.hello/1.0.0?purge=true",
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&app, "v3/flatcontainer/demo.hello/index.json")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn hives_and_search_filter_prereleases_and_semver2() {
    let (app, _) = setup();
    for version in ["1.0.0", "1.1.0-beta1", "2.0.0-rc.1", "2.0.0+build.5"] {
        let pushed = push(&app, &package("Lib.A", version, "")).await;
        assert_eq!(
            pushed.status,
            StatusCode::CREATED,
            "{version}: {}",
            pushed.text()
        );
    }
    push(&app, &package("Other.B", "0.1.0-alpha", "")).await;
    let versions = |document: &Value| -> Vec<String> {
        document["items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|page| page["items"].as_array().unwrap().iter())
            .map(|item| item["catalogEntry"]["version"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        versions(&get(&app, "v3/registration/lib.a/index.json").await.json()),
        ["1.0.0", "1.1.0-beta1"]
    );
    assert_eq!(
        versions(
            &get(&app, "v3/registration-semver2/lib.a/index.json")
                .await
                .json()
        ),
        ["1.0.0", "1.1.0-beta1", "2.0.0-rc.1", "2.0.0+build.5"]
    );
    let search = |query: &'static str| {
        let app = app.clone();
        async move {
            let found = get(&app, &format!("v3/search?{query}")).await.json();
            let ids: Vec<(String, String)> = found["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["id"].as_str().unwrap().to_owned(),
                        d["version"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (found["totalHits"].as_u64().unwrap(), ids)
        }
    };
    assert_eq!(
        search("q=").await,
        (1, vec![("Lib.A".into(), "1.0.0".into())])
    );
    assert_eq!(
        search("q=&prerelease=true").await,
        (
            2,
            vec![
                ("Lib.A".into(), "1.1.0-beta1".into()),
                ("Other.B".into(), "0.1.0-alpha".into())
            ]
        )
    );
    assert_eq!(
        search("q=lib&prerelease=true&semVerLevel=2.0.0").await,
        (1, vec![("Lib.A".into(), "2.0.0+build.5".into())])
    );
    assert_eq!(search("q=packageid:other.b&prerelease=true").await.0, 1);
    assert_eq!(search("q=packageid:other&prerelease=true").await.0, 0);
    assert_eq!(
        search("q=&prerelease=true&skip=1&take=1").await,
        (2, vec![("Other.B".into(), "0.1.0-alpha".into())])
    );
    for bad in ["take=many", "skip=-1", "prerelease=maybe"] {
        assert_eq!(
            get(&app, &format!("v3/search?{bad}")).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn large_packages_page_their_registrations() {
    let (app, _) = setup();
    for patch in 0..130 {
        let pushed = push(&app, &package("Many.Versions", &format!("1.0.{patch}"), "")).await;
        assert_eq!(pushed.status, StatusCode::CREATED);
    }
    let index = get(&app, "v3/registration/many.versions/index.json")
        .await
        .json();
    assert_eq!(index["count"], 3);
    let pages = index["items"].as_array().unwrap();
    assert!(pages.iter().all(|p| p.get("items").is_none()));
    let mut seen = 0;
    for page in pages {
        let url = page["@id"].as_str().unwrap();
        let path = url.strip_prefix("http://feed.test/nuget/feed/").unwrap();
        let fetched = get(&app, path).await;
        assert_eq!(fetched.status, StatusCode::OK, "{path}");
        let fetched = fetched.json();
        assert_eq!(fetched["count"], page["count"]);
        seen += fetched["items"].as_array().unwrap().len();
    }
    assert_eq!(seen, 130);
}

#[tokio::test]
async fn symbol_packages_attach_to_pushed_versions() {
    let (app, _) = setup();
    let symbols_type = r#"<packageTypes><packageType name="SymbolsPackage" /></packageTypes>"#;
    let symbols = package("Demo.Sym", "1.0.0", symbols_type);
    let early = push_to(&app, "api/v2/symbolpackage", &symbols).await;
    assert_eq!(early.status, StatusCode::NOT_FOUND, "{}", early.text());
    assert_eq!(
        get(&app, "v3/flatcontainer/demo.sym/index.json")
            .await
            .status,
        StatusCode::NOT_FOUND,
        "a refused symbol push creates nothing"
    );
    let wrong_door = push(&app, &symbols).await;
    assert_eq!(wrong_door.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        push(&app, &package("Demo.Sym", "1.0.0", "")).await.status,
        StatusCode::CREATED
    );
    let attached = push_to(&app, "api/v2/symbolpackage", &symbols).await;
    assert_eq!(attached.status, StatusCode::CREATED, "{}", attached.text());
    assert_eq!(
        push_to(&app, "api/v2/symbolpackage", &symbols).await.status,
        StatusCode::CONFLICT
    );
    let download = get(
        &app,
        "v3/flatcontainer/demo.sym/1.0.0/demo.sym.1.0.0.snupkg",
    )
    .await;
    assert_eq!(download.body, symbols);
    // The package's own document is kept.
    let registration = get(&app, "v3/registration/demo.sym/index.json")
        .await
        .json();
    assert_eq!(
        registration["items"][0]["items"][0]["catalogEntry"]["description"],
        "Says hello."
    );
}

#[tokio::test]
async fn bad_packages_are_refused_and_publish_nothing() {
    let (app, _) = setup();
    let spec = nuspec("Bad.One", "1.0.0", "");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a zip", b"definitely not a zip".to_vec()),
        ("no nuspec", nupkg(&[("lib/a.dll", b"MZ")])),
        (
            "two nuspecs",
            nupkg(&[("a.nuspec", spec.as_bytes()), ("b.nuspec", spec.as_bytes())]),
        ),
        (
            "a traversal entry",
            nupkg(&[("Bad.One.nuspec", spec.as_bytes()), ("../evil.dll", b"MZ")]),
        ),
        (
            "an entity",
            nupkg(&[(
                "Bad.One.nuspec",
                spec.replace("Says hello.", "Says &xxe;").as_bytes(),
            )]),
        ),
        (
            "a billion laughs",
            nupkg(&[(
                "Bad.One.nuspec",
                format!(
                    "<?xml version=\"1.0\"?><!DOCTYPE package [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]>{}",
                    spec.replace("<?xml version=\"1.0\" encoding=\"utf-8\"?>", "").replace("Says hello.", "&b;")
                )
                .as_bytes(),
            )]),
        ),
        (
            "a bad version",
            nupkg(&[(
                "Bad.One.nuspec",
                nuspec("Bad.One", "1.0.0.0.0", "").as_bytes(),
            )]),
        ),
        (
            "a bad id",
            nupkg(&[("Bad.One.nuspec", nuspec("Bad One", "1.0.0", "").as_bytes())]),
        ),
        (
            "a deep nuspec",
            nupkg(&[(
                "Bad.One.nuspec",
                format!(
                    "<package>{}{}</package>",
                    "<a>".repeat(100),
                    "</a>".repeat(100)
                )
                .as_bytes(),
            )]),
        ),
    ];
    for (what, bytes) in cases {
        let refused = push(&app, &bytes).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            refused.text()
        );
    }
    // A body that is not the multipart it claims, and one with two packages.
    let garbled = send(
        &app,
        Method::PUT,
        "api/v2/package",
        "multipart/form-data; boundary=x",
        b"junk".to_vec(),
    )
    .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
    let good = package("Bad.One", "1.0.0", "");
    let (content_type, mut body) = multipart(&good);
    let second = multipart(&good).1;
    body.truncate(body.len() - "--\r\n".len());
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(&second[second.iter().position(|b| *b == b'\r').unwrap() + 2..]);
    let two = send(&app, Method::PUT, "api/v2/package", &content_type, body).await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST, "{}", two.text());
    // Multipart framing is bounded: a preamble that never reaches the boundary, part headers
    // that never end, and a long tail after the package are refused.
    let boundary = "multipart/form-data; boundary=\"b\"";
    for (what, framing) in [
        ("a preamble", vec![b'x'; 1 << 20]),
        ("part headers", {
            let mut body = b"--b\r\nX-Long: ".to_vec();
            body.extend(vec![b'y'; 1 << 20]);
            body
        }),
        ("a tail", {
            let (_, mut body) = multipart(&package("Tail.One", "1.0.0", ""));
            body.extend(vec![b'z'; 1 << 20]);
            body
        }),
    ] {
        let content_type = if what == "a tail" {
            content_type.as_str()
        } else {
            boundary
        };
        let refused = send(&app, Method::PUT, "api/v2/package", content_type, framing).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            refused.text()
        );
    }
    // A bare package body (no multipart) is a push too.
    let bare = send(
        &app,
        Method::PUT,
        "api/v2/package",
        "application/octet-stream",
        good,
    )
    .await;
    assert_eq!(bare.status, StatusCode::CREATED, "{}", bare.text());
    assert_eq!(
        get(&app, "v3/registration/bad.one/not-a-version.json")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    for path in [
        "v3/registration-semver3/bad.one/index.json",
        "v3/flatcontainer/bad.one/1.0.0/../../x",
        "v3/nothing",
    ] {
        assert_eq!(
            get(&app, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn another_formats_repository_is_no_feed() {
    let (app, metadata) = setup();
    metadata
        .ensure_package_repository(&registry_core::PackageRepository {
            name: "feed".into(),
            format: registry_core::PackageFormat::Pypi,
            kind: registry_core::RepositoryKind::Hosted,
            settings: Default::default(),
            created_at: registry_core::Timestamp::now(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&app, "v3/index.json").await.status,
        StatusCode::NOT_FOUND
    );
    let refused = push(&app, &package("Demo.Hello", "1.0.0", "")).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
}

#[tokio::test]
async fn listing_and_deprecation_do_not_undo_each_other() {
    let (app, _) = setup();
    push(&app, &package("Demo.State", "1.0.0", "")).await;
    let catalog_entry = |app: Router| async move {
        get(&app, "v3/registration/demo.state/index.json")
            .await
            .json()["items"][0]["items"][0]["catalogEntry"]
            .clone()
    };
    let search_hits = |app: Router| async move {
        get(&app, "v3/search?q=demo.state").await.json()["totalHits"].clone()
    };
    assert_eq!(search_hits(app.clone()).await, 1);
    let deprecate = send(
        &app,
        Method::PUT,
        "api/v2/package/demo.state/1.0.0/deprecation",
        "application/json",
        br#"{"reasons":["CriticalBugs"],"message":"broken"}"#.to_vec(),
    )
    .await;
    assert_eq!(deprecate.status, StatusCode::OK);
    // Unlisting a deprecated version keeps its deprecation, and the cached search sees it.
    send(
        &app,
        Method::DELETE,
        "api/v2/package/demo.state/1.0.0",
        "",
        Vec::new(),
    )
    .await;
    let entry = catalog_entry(app.clone()).await;
    assert_eq!(entry["listed"], false);
    assert_eq!(
        entry["deprecation"]["reasons"],
        serde_json::json!(["CriticalBugs"])
    );
    assert_eq!(search_hits(app.clone()).await, 0);
    // Undeprecating keeps it unlisted; relisting keeps no deprecation.
    send(
        &app,
        Method::DELETE,
        "api/v2/package/demo.state/1.0.0/deprecation",
        "",
        Vec::new(),
    )
    .await;
    let entry = catalog_entry(app.clone()).await;
    assert_eq!(entry["listed"], false);
    assert!(entry.get("deprecation").is_none(), "{entry}");
    send(
        &app,
        Method::POST,
        "api/v2/package/demo.state/1.0.0",
        "",
        Vec::new(),
    )
    .await;
    let entry = catalog_entry(app.clone()).await;
    assert_eq!(entry["listed"], true);
    assert_eq!(search_hits(app.clone()).await, 1);
    // A deprecated, relisted version stays deprecated.
    send(
        &app,
        Method::PUT,
        "api/v2/package/demo.state/1.0.0/deprecation",
        "application/json",
        br#"{"reasons":["Legacy"]}"#.to_vec(),
    )
    .await;
    send(
        &app,
        Method::DELETE,
        "api/v2/package/demo.state/1.0.0",
        "",
        Vec::new(),
    )
    .await;
    send(
        &app,
        Method::POST,
        "api/v2/package/demo.state/1.0.0",
        "",
        Vec::new(),
    )
    .await;
    let entry = catalog_entry(app.clone()).await;
    assert_eq!(
        (
            entry["listed"].clone(),
            entry["deprecation"]["reasons"][0].clone()
        ),
        (serde_json::json!(true), serde_json::json!("Legacy"))
    );
    assert_eq!(
        send(
            &app,
            Method::DELETE,
            "api/v2/package/demo.state/9.9.9",
            "",
            Vec::new()
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn search_filters_by_package_type() {
    let (app, _) = setup();
    push(&app, &package("Lib.Plain", "1.0.0", "")).await;
    push(
        &app,
        &package(
            "Tool.Thing",
            "1.0.0",
            r#"<packageTypes><packageType name="DotnetTool" /></packageTypes>"#,
        ),
    )
    .await;
    let ids = |query: &'static str| {
        let app = app.clone();
        async move {
            let found = get(&app, &format!("v3/search?{query}")).await.json();
            found["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("q=&packageType=dotnettool").await, ["Tool.Thing"]);
    assert_eq!(ids("q=&packageType=Dependency").await, ["Lib.Plain"]);
    assert_eq!(ids("q=").await.len(), 2);
}

#[tokio::test]
async fn the_api_key_decides_changes_when_authentication_is_on() {
    use base64::Engine;
    use registry_core::{Grant, NamePattern, Role};
    use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
    let hash = hash_password("pw").unwrap();
    let user = |role| StaticUser {
        password_hash: hash.clone(),
        grants: vec![Grant {
            pattern: NamePattern::parse("feed").unwrap(),
            role,
        }],
    };
    let users = StaticUsers::new(
        [
            ("reader".to_owned(), user(Role::Reader)),
            ("publisher".to_owned(), user(Role::Maintainer)),
        ]
        .into(),
        None,
    )
    .unwrap();
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let app = registry_http::nuget::router(packages, Some(Auth::basic("test", Arc::new(users))));
    let reader = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("reader:pw")
    );
    let (content_type, body) = multipart(&package("Demo.Key", "1.0.0", ""));
    let push_with = |authorization: Option<&str>, key: Option<&str>| {
        let mut request = Request::builder()
            .method(Method::PUT)
            .uri("/nuget/feed/api/v2/package")
            .header(header::CONTENT_TYPE, content_type.clone());
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        if let Some(value) = key {
            request = request.header("X-NuGet-ApiKey", value);
        }
        let app = app.clone();
        let request = request.body(Body::from(body.clone())).unwrap();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    assert_eq!(push_with(None, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(push_with(Some(&reader), None).await, StatusCode::FORBIDDEN);
    assert_eq!(
        push_with(None, Some("publisher:nope")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push_with(None, Some("rgt_unknown")).await,
        StatusCode::UNAUTHORIZED
    );
    // The key wins over read credentials sent along, both ways.
    assert_eq!(
        push_with(Some(&reader), Some("publisher:nope")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push_with(Some(&reader), Some("publisher:pw")).await,
        StatusCode::CREATED
    );
    // Reads use the feed's credentials.
    let read = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/nuget/feed/v3/flatcontainer/demo.key/index.json")
                .header(header::AUTHORIZATION, reader.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let unlist = app
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::DELETE)
                .uri("/nuget/feed/api/v2/package/demo.key/1.0.0")
                .header("X-NuGet-ApiKey", "reader:pw")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(unlist.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn repository_settings_apply_to_nuget_pushes() {
    use registry_core::{
        Grant, NamePattern, NameRegex, PackageProtection, RepositorySettings, Role,
    };
    use registry_http::auth::{Auth, StaticUser, StaticUsers, hash_password};
    let hash = hash_password("pw").unwrap();
    let user = |role| StaticUser {
        password_hash: hash.clone(),
        grants: vec![Grant {
            pattern: NamePattern::parse("feed").unwrap(),
            role,
        }],
    };
    let users = StaticUsers::new(
        [
            ("dev".to_owned(), user(Role::Developer)),
            ("lead".to_owned(), user(Role::Maintainer)),
        ]
        .into(),
        None,
    )
    .unwrap();
    let packages = Packages::new(
        Arc::new(MemoryBlobStore::new()),
        Arc::new(MemoryMetadataStore::new()),
    );
    let rules = registry_formats::nuget::Nuget;
    // Patterns are written as ids are stored: lowercase.
    let protected = |pattern: &str| RepositorySettings {
        allow_duplicates: true,
        protection: vec![PackageProtection {
            packages: NameRegex::parse(pattern).unwrap(),
            publish: Role::Maintainer,
            delete: Role::Maintainer,
        }],
        ..RepositorySettings::default()
    };
    assert!(
        packages
            .configure_repository(
                "feed",
                &rules,
                registry_core::RepositoryKind::Hosted,
                &protected("Corp\\..*")
            )
            .await
            .is_err()
    );
    packages
        .configure_repository(
            "feed",
            &rules,
            registry_core::RepositoryKind::Hosted,
            &protected("corp\\..*"),
        )
        .await
        .unwrap();
    let app = registry_http::nuget::router(packages, Some(Auth::basic("test", Arc::new(users))));
    let push_as = |user: &str, bytes: Vec<u8>| {
        let key = format!("{user}:pw");
        let (content_type, body) = multipart(&bytes);
        let app = app.clone();
        async move {
            let request = Request::builder()
                .method(Method::PUT)
                .uri("/nuget/feed/api/v2/package")
                .header(header::CONTENT_TYPE, content_type)
                .header("X-NuGet-ApiKey", key)
                .body(Body::from(body))
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    assert_eq!(
        push_as("dev", package("Corp.Lib", "1.0.0", "")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        push_as("dev", package("Open.Lib", "1.0.0", "")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_as("lead", package("Corp.Lib", "1.0.0", "")).await,
        StatusCode::CREATED
    );
    // Duplicates allowed: the same version again replaces it.
    assert_eq!(
        push_as("lead", package("CORP.lib", "1.0", "")).await,
        StatusCode::CREATED
    );
}

/// A proxy of a feed laid out as nuget.org's: registrations gzip-encoded, without
/// `packageHash`, whose catalog leaves declare it, pages linked above a size; a package is
/// verified against its leaf's hash, and a leaf that declares another hash gets nothing kept.
#[tokio::test]
async fn a_proxy_reads_package_hashes_from_catalog_leaves() {
    use base64::Engine as _;
    use registry_core::{OciRegistry, RepositoryKind, RepositorySettings, UpstreamSettings};
    use registry_formats::nuget::Nuget;
    use registry_http::serve::{RunningRegistry, ServerSettings};
    use sha2::Digest as _;

    let nupkg: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&nupkg));
    let lie = base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(b"other"));
    let upstream = Router::new().fallback(move |request: Request<Body>| {
        let (nupkg, hash, lie) = (nupkg.clone(), hash.clone(), lie.clone());
        async move {
            let host = request.headers()[header::HOST].to_str().unwrap().to_owned();
            let base = format!("http://{host}");
            let path = request.uri().path().to_owned();
            let index = |id: &str| {
                serde_json::json!({"items": [{"items": [{
                    "catalogEntry": {"@id": format!("{base}/catalog/{id}.1.0.0.json"),
                        "id": id, "version": "1.0.0", "published": "2020-01-01T00:00:00Z"},
                    "packageContent": format!("{base}/flat/{id}/1.0.0/{id}.1.0.0.nupkg")}]}]})
                .to_string()
            };
            let gzip = |text: String| {
                let mut gzip =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gzip, text.as_bytes()).unwrap();
                gzip.finish().unwrap()
            };
            let json = |body: Vec<u8>, encoding: &'static str| {
                let mut response = axum::response::IntoResponse::into_response(body);
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
                response
            };
            match path.as_str() {
                // More versions than an index inlines: its page is linked.
                "/reg/demo.paged/index.json" => json(
                    serde_json::json!({"items": [{"@id": format!("{base}/reg/demo.paged/page/1.json"),
                        "lower": "1.0.0", "upper": "1.0.0", "count": 1}]})
                    .to_string()
                    .into_bytes(),
                    "identity",
                ),
                "/reg/demo.paged/page/1.json" => json(
                    serde_json::json!({"items": [{
                        "catalogEntry": {"id": "demo.paged", "version": "1.0.0",
                            "packageHash": hash, "packageHashAlgorithm": "SHA512"},
                        "packageContent": format!("{base}/flat/demo.paged/1.0.0/demo.paged.1.0.0.nupkg")}]})
                    .to_string()
                    .into_bytes(),
                    "identity",
                ),
                "/reg/demo.leaf/index.json" => json(gzip(index("demo.leaf")), "gzip"),
                "/reg/demo.liar/index.json" => json(gzip(index("demo.liar")), "gzip"),
                "/catalog/demo.leaf.1.0.0.json" => json(
                    serde_json::json!({"packageHash": hash, "packageHashAlgorithm": "SHA512"})
                        .to_string()
                        .into_bytes(),
                    "identity",
                ),
                "/catalog/demo.liar.1.0.0.json" => json(
                    serde_json::json!({"packageHash": lie, "packageHashAlgorithm": "SHA512"})
                        .to_string()
                        .into_bytes(),
                    "identity",
                ),
                p if p.ends_with(".nupkg") => axum::response::IntoResponse::into_response(nupkg),
                _ => axum::response::IntoResponse::into_response(StatusCode::NOT_FOUND),
            }
        }
    });
    let upstream = RunningRegistry::serve_app(upstream, ServerSettings::default())
        .await
        .unwrap();
    let blobs: Arc<dyn registry_core::BlobStore> = Arc::new(MemoryBlobStore::new());
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let packages = Packages::new(Arc::clone(&blobs), Arc::clone(&metadata));
    let settings = RepositorySettings {
        upstream: Some(UpstreamSettings::new(format!(
            "http://{}/reg",
            upstream.host()
        ))),
        ..RepositorySettings::default()
    };
    packages
        .configure_repository("gallery", &Nuget, RepositoryKind::Proxy, &settings)
        .await
        .unwrap();
    let app =
        registry_http::app::Application::new(OciRegistry::new(blobs, metadata), packages.clone())
            .router();
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            let response = app
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    let (status, body) =
        get("/nuget/gallery/v3/flatcontainer/demo.leaf/1.0.0/demo.leaf.1.0.0.nupkg").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body.len(), 200_000);
    // A package whose registration links its pages: read with them.
    let (status, body) = get("/nuget/gallery/v3/flatcontainer/demo.paged/index.json").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("1.0.0"));
    let (status, _) =
        get("/nuget/gallery/v3/flatcontainer/demo.paged/1.0.0/demo.paged.1.0.0.nupkg").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get("/nuget/gallery/v3/flatcontainer/demo.leaf/1.0.0/demo.leaf.nuspec").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a proxy keeps no nuspec");
    let (status, body) =
        get("/nuget/gallery/v3/flatcontainer/demo.liar/1.0.0/demo.liar.1.0.0.nupkg").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("does not match"));
    let kept = packages
        .cache_entries("gallery", &registry_core::Page::first(10))
        .await
        .unwrap();
    let files: Vec<&str> = kept
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| p.ends_with(".nupkg"))
        .collect();
    assert_eq!(
        files,
        [
            "/flat/demo.leaf/1.0.0/demo.leaf.1.0.0.nupkg",
            "/flat/demo.paged/1.0.0/demo.paged.1.0.0.nupkg"
        ],
        "the liar's is not kept"
    );
}
