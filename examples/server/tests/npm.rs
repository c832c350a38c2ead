//! The npm CLI against the example server: token login, whoami, publish (scoped and unscoped,
//! `--tag`), install into a fresh directory with a cold cache (dependencies resolved from the
//! registry), view, dist-tag ls/add/rm, deprecate, search, a refused republish, unpublish of a
//! version and of a package; and with authentication, who may do what.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use support::{Server, command, run, workdir};

/// A scratch npm environment: a userconfig holding the registry and token, and a cache.
struct Npm {
    userconfig: String,
    cache: String,
}

impl Npm {
    fn new(work: &Path, server: &Server, repository: &str, token: Option<&str>) -> Self {
        let registry = format!("http://{}/npm/{repository}/", server.host());
        let userconfig = work.join(format!("npmrc-{}", token.map_or("anonymous", |_| "token")));
        let mut text =
            format!("registry={registry}\naudit=false\nfund=false\nupdate-notifier=false\n");
        if let Some(token) = token {
            text.push_str(&format!(
                "//{}/npm/{repository}/:_authToken={token}\n",
                server.host()
            ));
        }
        std::fs::write(&userconfig, text).unwrap();
        Npm {
            userconfig: userconfig.to_str().unwrap().to_owned(),
            cache: work.join("cache").to_str().unwrap().to_owned(),
        }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        if !args.contains(&"--cache") {
            all.extend(["--cache", self.cache.as_str()]);
        }
        all.extend(["--userconfig", self.userconfig.as_str()]);
        all
    }

    /// Runs npm in `dir`, failing the test if it fails.
    fn run(&self, dir: &Path, args: &[&str]) -> String {
        run("npm", &self.args(args), dir)
    }

    /// Runs npm in `dir`, whatever its status.
    fn try_run(&self, dir: &Path, args: &[&str]) -> Output {
        command("npm", &self.args(args), dir)
    }
}

/// `PUT /-/user/org.couchdb.user:<name>` as npm's legacy login sends it; returns the token.
fn login(server: &Server, repository: &str, user: &str, password: &str) -> (u16, Value) {
    let body = json!({
        "_id": format!("org.couchdb.user:{user}"), "name": user, "password": password,
        "type": "user", "roles": [], "date": "2026-01-01T00:00:00.000Z",
    })
    .to_string();
    let head = format!(
        "PUT /npm/{repository}/-/user/org.couchdb.user:{user} HTTP/1.1\r\n\
         Content-Type: application/json"
    );
    let (status, _, body) = support::http_request(server.addr, &head, body.as_bytes());
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Writes a package directory.
fn package(dir: &Path, manifest: Value, main: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("package.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("index.js"), main).unwrap();
    std::fs::write(dir.join("README.md"), "# demo\n").unwrap();
}

fn set_version(dir: &Path, version: &str) {
    let path = dir.join("package.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["version"] = json!(version);
    std::fs::write(&path, manifest.to_string()).unwrap();
    std::fs::write(
        dir.join("index.js"),
        format!("module.exports = \"hello {version}\";\n"),
    )
    .unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn npm_publish_install_view_tags_deprecate_unpublish() {
    let server = Server::start(&[]);
    let (_dir, work) = workdir();
    let (status, answer) = login(&server, "js", "alice", "any password works without auth");
    assert_eq!(status, 201, "{answer}");
    let token = answer["token"].as_str().unwrap().to_owned();
    let npm = Npm::new(&work, &server, "js", Some(&token));
    assert_eq!(npm.run(&work, &["whoami"]).trim(), "alice");

    // Publish three versions of a scoped package, one under a tag.
    let hello = work.join("hello");
    package(
        &hello,
        json!({ "name": "@demo/hello", "version": "1.0.0", "description": "says hello",
                "main": "index.js", "keywords": ["demo"] }),
        "module.exports = \"hello 1.0.0\";\n",
    );
    let out = npm.run(&hello, &["publish"]);
    assert!(out.contains("+ @demo/hello@1.0.0"), "{out}");
    set_version(&hello, "1.1.0");
    let out = npm.try_run(&hello, &["publish", "--tag", "beta"]);
    assert!(stderr(&out).contains("with tag beta"), "{}", stderr(&out));
    set_version(&hello, "1.2.0");
    npm.run(&hello, &["publish"]);
    // The same version again is refused.
    let again = npm.try_run(&hello, &["publish"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("cannot publish over the previously published version"),
        "{}",
        stderr(&again)
    );

    // An unscoped package that depends on the scoped one.
    let greeter = work.join("greeter");
    package(
        &greeter,
        json!({ "name": "greeter", "version": "0.1.0", "main": "index.js",
                "dependencies": { "@demo/hello": "^1.0.0" } }),
        "module.exports = require(\"@demo/hello\") + \" via greeter\";\n",
    );
    npm.run(&greeter, &["publish"]);

    let view: Value =
        serde_json::from_str(&npm.run(&work, &["view", "@demo/hello", "--json"])).unwrap();
    assert_eq!(view["versions"], json!(["1.0.0", "1.1.0", "1.2.0"]));
    assert_eq!(
        view["dist-tags"],
        json!({ "latest": "1.2.0", "beta": "1.1.0" })
    );
    assert_eq!(view["description"], "says hello");
    let tarball = view["dist"]["tarball"].as_str().unwrap();
    assert!(
        tarball.ends_with("/npm/js/@demo/hello/-/hello-1.2.0.tgz"),
        "{tarball}"
    );

    // Install into a fresh directory with a cold cache, anonymously: the dependency resolves
    // from the registry too.
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name":"app","version":"1.0.0"}"#,
    )
    .unwrap();
    let anonymous = Npm::new(&work, &server, "js", None);
    anonymous.run(
        &app,
        &[
            "install",
            "greeter",
            "--cache",
            app.join("cold").to_str().unwrap(),
        ],
    );
    let said = run("node", &["-e", "console.log(require('greeter'))"], &app);
    assert_eq!(said.trim(), "hello 1.2.0 via greeter");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(app.join("package-lock.json")).unwrap()).unwrap();
    let integrity = lock["packages"]["node_modules/@demo/hello"]["integrity"]
        .as_str()
        .unwrap();
    assert!(integrity.starts_with("sha512-"), "{integrity}");
    // A pinned older version installs too.
    anonymous.run(&app, &["install", "@demo/hello@1.0.0"]);
    let said = run("node", &["-e", "console.log(require('@demo/hello'))"], &app);
    assert_eq!(said.trim(), "hello 1.0.0");

    // dist-tags.
    let tags = npm.run(&work, &["dist-tag", "ls", "@demo/hello"]);
    assert!(
        tags.contains("beta: 1.1.0") && tags.contains("latest: 1.2.0"),
        "{tags}"
    );
    npm.run(&work, &["dist-tag", "add", "@demo/hello@1.0.0", "stable"]);
    npm.run(&work, &["dist-tag", "rm", "@demo/hello", "beta"]);
    let tags = npm.run(&work, &["dist-tag", "ls", "@demo/hello"]);
    assert!(
        tags.contains("stable: 1.0.0") && !tags.contains("beta"),
        "{tags}"
    );

    // deprecate, then search.
    npm.run(
        &work,
        &["deprecate", "@demo/hello@1.0.0", "use 1.2 instead"],
    );
    let deprecated = npm.run(&work, &["view", "@demo/hello@1.0.0", "deprecated"]);
    assert_eq!(deprecated.trim(), "use 1.2 instead");
    let found = npm.run(&work, &["search", "hello", "--json"]);
    let found: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found[0]["name"], "@demo/hello", "{found}");
    assert_eq!(found[0]["version"], "1.2.0");

    // Unpublish one version, then the whole package.
    npm.run(&work, &["unpublish", "@demo/hello@1.2.0"]);
    let view: Value =
        serde_json::from_str(&npm.run(&work, &["view", "@demo/hello", "--json"])).unwrap();
    assert_eq!(view["versions"], json!(["1.0.0", "1.1.0"]));
    assert_eq!(view["dist-tags"]["latest"], "1.1.0");
    let refused = npm.try_run(&work, &["unpublish", "greeter"]);
    assert!(
        !refused.status.success(),
        "npm wants --force for a whole package"
    );
    npm.run(&work, &["unpublish", "greeter", "--force"]);
    let gone = npm.try_run(&work, &["view", "greeter"]);
    assert!(stderr(&gone).contains("E404"), "{}", stderr(&gone));
}

#[test]
fn npm_with_authentication() {
    let (_dir, work) = workdir();
    let config = support::basic_auth_config(
        &work,
        "",
        &[
            ("dev", r#"{ pattern = "js", role = "developer" }"#),
            ("viewer", r#"{ pattern = "js", role = "reader" }"#),
        ],
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let (status, _) = login(&server, "js", "dev", "wrong");
    assert_eq!(status, 401);
    let (_, dev) = login(&server, "js", "dev", "s3cret");
    let (_, viewer) = login(&server, "js", "viewer", "s3cret");
    std::fs::create_dir_all(work.join("dev")).unwrap();
    let dev = Npm::new(&work.join("dev"), &server, "js", dev["token"].as_str());
    let viewer_dir = work.join("viewer");
    std::fs::create_dir_all(&viewer_dir).unwrap();
    let viewer = Npm::new(&viewer_dir, &server, "js", viewer["token"].as_str());
    assert_eq!(viewer.run(&work, &["whoami"]).trim(), "viewer");

    let pkg = work.join("pkg");
    package(
        &pkg,
        json!({ "name": "guarded", "version": "1.0.0", "main": "index.js" }),
        "module.exports = 1;\n",
    );
    let refused = viewer.try_run(&pkg, &["publish"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("403"), "{}", stderr(&refused));
    dev.run(&pkg, &["publish"]);
    assert!(
        viewer
            .run(&work, &["view", "guarded", "version"])
            .contains("1.0.0")
    );
    // Without a token nothing is readable here.
    let anonymous_dir = work.join("anonymous");
    std::fs::create_dir_all(&anonymous_dir).unwrap();
    let anonymous = Npm::new(&anonymous_dir, &server, "js", None);
    let out = anonymous.try_run(&work, &["view", "guarded"]);
    assert!(stderr(&out).contains("E401"), "{}", stderr(&out));
    // A developer may not unpublish.
    let out = dev.try_run(&work, &["unpublish", "guarded", "--force"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert!(dev.run(&work, &["whoami"]).contains("dev"));
}

/// Real sizes: a package whose tarball is over 20 MiB (incompressible), a publish document far
/// over any framework's default body limit, publishes and installs byte for byte.
#[test]
fn a_20_mib_package_publishes_and_installs() {
    let server = Server::start(&[]);
    let (_dir, work) = workdir();
    let (status, answer) = login(&server, "js", "alice", "pw");
    assert_eq!(status, 201, "{answer}");
    let npm = Npm::new(&work, &server, "js", answer["token"].as_str());
    let big = work.join("big");
    package(
        &big,
        json!({ "name": "big-payload", "version": "1.0.0", "main": "index.js" }),
        "module.exports = require(\"fs\").statSync(__dirname + \"/payload.bin\").size;\n",
    );
    // Incompressible bytes without a random-number crate: SHA-256 in counter mode.
    let mut payload = Vec::with_capacity(21 << 20);
    let mut block = [0u8; 32];
    let mut counter = 0u64;
    while payload.len() < 21 << 20 {
        use sha2::Digest as _;
        block = sha2::Sha256::new()
            .chain_update(block)
            .chain_update(counter.to_le_bytes())
            .finalize()
            .into();
        payload.extend_from_slice(&block);
        counter += 1;
    }
    std::fs::write(big.join("payload.bin"), &payload).unwrap();
    let out = npm.run(&big, &["publish"]);
    assert!(out.contains("+ big-payload@1.0.0"), "{out}");

    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name":"app","version":"1.0.0"}"#,
    )
    .unwrap();
    let anonymous = Npm::new(&work, &server, "js", None);
    anonymous.run(
        &app,
        &[
            "install",
            "big-payload",
            "--cache",
            work.join("cold").to_str().unwrap(),
        ],
    );
    let installed = std::fs::read(app.join("node_modules/big-payload/payload.bin")).unwrap();
    assert!(installed == payload, "the installed payload differs");
}

/// Incompressible bytes (SHA-256 in counter mode), for realistic package sizes.
fn incompressible(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block = [0u8; 32];
    let mut counter = 0u64;
    while bytes.len() < len {
        use sha2::Digest as _;
        block = sha2::Sha256::new()
            .chain_update(block)
            .chain_update(counter.to_le_bytes())
            .finalize()
            .into();
        bytes.extend_from_slice(&block);
        counter += 1;
    }
    bytes.truncate(len);
    bytes
}

/// npm through a virtual repository whose members are a hosted repository and a proxy of
/// another registry instance: packages and their dependencies install from the upstream
/// through the proxy (a 6 MiB package among them), a name published here shadows the
/// upstream's package of that name (dependency confusion), a publish through the virtual
/// repository lands in its hosted member, and with the upstream stopped the same install
/// succeeds from the cache — the metadata served stale and said so.
#[test]
fn npm_installs_through_a_virtual_repository_and_from_the_cache_when_the_upstream_is_down() {
    let upstream = Server::start(&[]);
    let (_dir, work) = workdir();
    let (status, answer) = login(&upstream, "public", "alice", "pw");
    assert_eq!(status, 201, "{answer}");
    std::fs::create_dir_all(work.join("up")).unwrap();
    let publisher = Npm::new(
        &work.join("up"),
        &upstream,
        "public",
        answer["token"].as_str(),
    );
    let lib_b = work.join("lib-b");
    package(
        &lib_b,
        json!({ "name": "lib-b", "version": "1.0.0", "main": "index.js" }),
        "module.exports = require(\"fs\").statSync(__dirname + \"/data.bin\").size;\n",
    );
    let data = incompressible(6 << 20);
    std::fs::write(lib_b.join("data.bin"), &data).unwrap();
    publisher.run(&lib_b, &["publish"]);
    let lib_a = work.join("lib-a");
    package(
        &lib_a,
        json!({ "name": "lib-a", "version": "1.0.0", "main": "index.js",
                "dependencies": { "lib-b": "^1.0.0" } }),
        "module.exports = \"a with \" + require(\"lib-b\");\n",
    );
    publisher.run(&lib_a, &["publish"]);
    // Someone publishes the internal package's name upstream, with a higher version.
    let squatter = work.join("squatter");
    package(
        &squatter,
        json!({ "name": "@corp/internal", "version": "99.0.0", "main": "index.js" }),
        "module.exports = \"squatted\";\n",
    );
    publisher.run(&squatter, &["publish"]);

    let config = work.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[package_repositories]]
name = "all"
format = "npm"
kind = "virtual"
members = ["corp", "npmjs"]
publish_to = "corp"

[[package_repositories]]
name = "corp"
format = "npm"

[[package_repositories]]
name = "npmjs"
format = "npm"
kind = "proxy"
upstream = {{ url = "http://{}/npm/public", metadata_ttl_seconds = 0, timeout_seconds = 5 }}
"#,
            upstream.host()
        ),
    )
    .unwrap();
    let proxy = Server::start(&["--config", config.to_str().unwrap()]);
    let (status, answer) = login(&proxy, "all", "bob", "pw");
    assert_eq!(status, 201, "{answer}");
    let npm = Npm::new(&work, &proxy, "all", answer["token"].as_str());
    let internal = work.join("internal");
    package(
        &internal,
        json!({ "name": "@corp/internal", "version": "1.0.0", "main": "index.js" }),
        "module.exports = \"internal\";\n",
    );
    // Before its first publish the name is not internal yet, so npm sees the squatter's 99.0.0
    // through the virtual repository and wants the tag said explicitly.
    let out = npm.run(&internal, &["publish", "--tag", "latest"]);
    assert!(out.contains("+ @corp/internal@1.0.0"), "{out}");

    let install = |dir: &str, cache: &str| {
        let app = work.join(dir);
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(
            app.join("package.json"),
            r#"{"name":"app","version":"1.0.0"}"#,
        )
        .unwrap();
        let anonymous = Npm::new(&app, &proxy, "all", None);
        let out = anonymous.try_run(
            &app,
            &[
                "install",
                "lib-a",
                "@corp/internal",
                "--cache",
                work.join(cache).to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "npm install failed: {}\n{}",
            stderr(&out),
            proxy.log()
        );
        let said = run(
            "node",
            &[
                "-e",
                "console.log(require('lib-a') + ' ' + require('@corp/internal'))",
            ],
            &app,
        );
        assert_eq!(said.trim(), format!("a with {} internal", data.len()));
        let installed = std::fs::read(app.join("node_modules/lib-b/data.bin")).unwrap();
        assert!(installed == data, "the installed data differs");
    };
    install("app1", "cache1");
    let (status, _, body) = support::http_request(
        proxy.addr,
        "GET /api/v1/package-repositories/npmjs/cache HTTP/1.1",
        b"",
    );
    assert_eq!(status, 200);
    let cached: Value = serde_json::from_slice(&body).unwrap();
    let paths: Vec<&str> = cached["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    // The squatter's packument was read while the name was not internal yet (the first
    // publish); its tarball never was.
    assert_eq!(
        paths,
        [
            "@corp%2finternal",
            "lib-a",
            "lib-a/-/lib-a-1.0.0.tgz",
            "lib-b",
            "lib-b/-/lib-b-1.0.0.tgz"
        ],
    );

    // The upstream stopped: a fresh install with a cold npm cache still succeeds.
    drop(upstream);
    install("app2", "cache2");
    let (status, head, _) = support::http_request(proxy.addr, "GET /npm/all/lib-a HTTP/1.1", b"");
    assert_eq!(status, 200);
    assert!(
        support::header(&head, "x-registry-stale").is_some(),
        "stale metadata is said so: {head}"
    );
}

/// The firewall with the real client, through a proxy of another registry instance: a version
/// younger than the age gate is skipped and the previous one installed; a version denied after
/// a lockfile pinned it is refused with the rule named in npm's output; `npm audit` reports the
/// loaded advisory's vulnerability — and, against a registry with no advisories loaded, says
/// nothing was checked instead of reporting none.
#[test]
fn npm_through_the_firewall_age_gate_denial_and_audit() {
    let upstream = Server::start(&[]);
    let (_dir, work) = workdir();
    let (status, answer) = login(&upstream, "public", "alice", "pw");
    assert_eq!(status, 201, "{answer}");
    std::fs::create_dir_all(work.join("up")).unwrap();
    let publisher = Npm::new(
        &work.join("up"),
        &upstream,
        "public",
        answer["token"].as_str(),
    );
    let gate = work.join("gate");
    package(
        &gate,
        json!({ "name": "gate", "version": "1.0.0", "main": "index.js" }),
        "module.exports = \"gate 1.0.0\";\n",
    );
    publisher.run(&gate, &["publish"]);
    let pinned = work.join("pinned");
    package(
        &pinned,
        json!({ "name": "pinned", "version": "1.0.0", "main": "index.js" }),
        "module.exports = \"pinned\";\n",
    );
    publisher.run(&pinned, &["publish"]);
    // The age gate is 20 s: 1.0.0 ripens while we wait, 1.1.0 stays young through the install.
    std::thread::sleep(std::time::Duration::from_secs(22));
    set_version(&gate, "1.1.0");
    publisher.run(&gate, &["publish"]);

    let advisories = work.join("advisories");
    std::fs::create_dir_all(&advisories).unwrap();
    std::fs::write(
        advisories.join("GHSA-test-pinned.json"),
        json!({"id": "GHSA-test-pinned", "summary": "pinned leaks secrets",
               "database_specific": {"severity": "HIGH"},
               "affected": [{"package": {"ecosystem": "npm", "name": "pinned"},
                             "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]}]})
        .to_string(),
    )
    .unwrap();
    let config = work.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[package_repositories]]
name = "npmjs"
format = "npm"
kind = "proxy"
upstream = {{ url = "http://{}/npm/public" }}

[firewall]
advisories = ["{}"]

[[firewall_rules]]
name = "cool-off"
min_age = "20s"
"#,
            upstream.host(),
            advisories.display()
        ),
    )
    .unwrap();
    let proxy = Server::start(&["--config", config.to_str().unwrap()]);
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name":"app","version":"1.0.0"}"#,
    )
    .unwrap();
    let npm = Npm::new(&app, &proxy, "npmjs", None);
    let cold = work.join("cold");
    npm.run(
        &app,
        &[
            "install",
            "gate",
            "pinned",
            "--cache",
            cold.to_str().unwrap(),
        ],
    );
    let said = run("node", &["-e", "console.log(require('gate'))"], &app);
    assert_eq!(said.trim(), "gate 1.0.0", "the young 1.1.0 is held back");

    // npm audit reports the advisory from the loaded data.
    let audit = npm.try_run(&app, &["audit", "--json", "--audit=true"]);
    let report: Value = serde_json::from_slice(&audit.stdout)
        .unwrap_or_else(|e| panic!("npm audit --json: {e}: {}", stderr(&audit)));
    assert_eq!(report["metadata"]["vulnerabilities"]["high"], 1, "{report}");
    assert!(
        report.to_string().contains("pinned leaks secrets"),
        "{report}"
    );

    // Deny the pinned version now: a clean install from the lockfile is refused, naming the rule.
    let rule = json!({"deny": ["pkg:npm/pinned@1.0.0"]}).to_string();
    let (status, _, body) = support::http_request(
        proxy.addr,
        "PUT /api/v1/firewall-rules/no-pinned HTTP/1.1\r\nContent-Type: application/json",
        rule.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    std::fs::remove_dir_all(app.join("node_modules")).unwrap();
    let refused = npm.try_run(
        &app,
        &["ci", "--cache", work.join("cold2").to_str().unwrap()],
    );
    assert!(
        !refused.status.success(),
        "npm ci installed a denied version"
    );
    let output = stderr(&refused);
    assert!(
        output.contains("403") && output.contains("no-pinned"),
        "npm's output names the rule: {output}"
    );

    // The upstream has no advisories: its audit says nothing was checked.
    let upstream_npm = Npm::new(&work.join("up"), &upstream, "public", None);
    let unchecked = upstream_npm.try_run(&app, &["audit", "--audit=true"]);
    assert!(
        !unchecked.status.success(),
        "an audit that checked nothing passed"
    );
    let said = format!(
        "{}{}",
        stderr(&unchecked),
        String::from_utf8_lossy(&unchecked.stdout)
    );
    assert!(said.contains("no advisory data is loaded"), "{said}");
}
