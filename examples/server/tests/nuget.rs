//! NuGet.exe 5.8 under mono against the example server, with Basic auth for reads (the feed's
//! credentials in a NuGet.Config) and the key in `-ApiKey` for pushes and deletes (an access
//! token, or `user:password`): pack, push (a 12 MiB package), a refused duplicate and
//! `-SkipDuplicate`, install with a dependency resolved from the feed, search, delete (unlist),
//! symbol packages, and refused keys. A fresh `HOME` per test keeps NuGet's HTTP cache out.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Server, http_request, workdir};

/// NuGet.exe as `scripts/install-clients` installs it.
fn nuget_exe() -> PathBuf {
    let exe = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv/nuget/node_modules/nuget-exe/nuget-5.8.0.exe");
    assert!(
        exe.exists(),
        "{} must be installed for this test (scripts/install-clients installs it)",
        exe.display()
    );
    exe
}

/// Runs NuGet.exe in `work` with `HOME` there; returns its output whatever its status.
fn nuget(work: &Path, args: &[&str]) -> Output {
    let started = std::time::Instant::now();
    let output = Command::new("mono")
        .arg(nuget_exe())
        .args(args)
        .arg("-NonInteractive")
        .current_dir(work)
        .env("HOME", work.join("home"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "mono must be installed for this test (scripts/install-clients installs it): {e}"
            )
        });
    println!("nuget {} ({:.1?})", args.join(" "), started.elapsed());
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", text(&output));
    text(&output)
}

/// Writes a nuspec and its files under `work/<id>-<version>/` and packs it (with a symbol
/// package when `symbols`); returns the directory holding the packages.
fn pack(
    work: &Path,
    id: &str,
    version: &str,
    dependency: Option<&str>,
    size: usize,
    symbols: bool,
) -> PathBuf {
    let dir = work.join(format!("{id}-{version}"));
    std::fs::create_dir_all(dir.join("lib/net45")).unwrap();
    let dll: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.join(format!("lib/net45/{id}.dll")), dll).unwrap();
    if symbols {
        std::fs::write(dir.join(format!("lib/net45/{id}.pdb")), vec![9u8; 5000]).unwrap();
    }
    let dependencies = dependency
        .map(|d| {
            format!(
                r#"<dependencies><group targetFramework="net45"><dependency id="{d}" version="[2.0.0, )" /></group></dependencies>"#
            )
        })
        .unwrap_or_default();
    std::fs::write(
        dir.join(format!("{id}.nuspec")),
        format!(
            r#"<?xml version="1.0"?>
<package>
  <metadata>
    <id>{id}</id>
    <version>{version}</version>
    <authors>Ada</authors>
    <description>{id} says hello.</description>
    {dependencies}
  </metadata>
  <files><file src="lib/net45/*.*" target="lib/net45" /></files>
</package>"#
        ),
    )
    .unwrap();
    let nuspec = format!("{id}.nuspec");
    let mut args = vec!["pack", nuspec.as_str()];
    if symbols {
        args.extend(["-Symbols", "-SymbolPackageFormat", "snupkg"]);
    }
    ok(nuget(&dir, &args), "nuget pack");
    dir
}

/// A NuGet.Config naming the feed with a user's credentials (none for `""`).
fn config(work: &Path, source: &str, user: &str) -> String {
    let path = work.join(format!("NuGet.{user}.Config"));
    let credentials = if user.is_empty() {
        String::new()
    } else {
        format!(
            r#"<packageSourceCredentials>
    <feed>
      <add key="Username" value="{user}" />
      <add key="ClearTextPassword" value="s3cret" />
    </feed>
  </packageSourceCredentials>"#
        )
    };
    std::fs::write(
        &path,
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources><clear /><add key="feed" value="{source}" /></packageSources>
  {credentials}
</configuration>"#
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// An access token of `user` for the repository (the secret).
fn token(server: &Server, user: &str, access: &str) -> String {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:s3cret"));
    let body =
        format!(r#"{{"label":"nuget","scopes":[{{"repositories":"feed","access":"{access}"}}]}}"#);
    let (status, _, answer) = http_request(
        server.addr,
        &format!(
            "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Basic {basic}"
        ),
        body.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

#[test]
fn nuget_exe_packs_pushes_installs_searches_and_deletes() {
    let (_dir, work) = workdir();
    let auth = support::basic_auth_config(
        &work,
        "",
        &[
            ("publisher", r#"{ pattern = "feed", role = "maintainer" }"#),
            ("reader", r#"{ pattern = "feed", role = "reader" }"#),
        ],
    );
    let server = Server::start(&["--config", auth.to_str().unwrap()]);
    let source = format!("http://{}/nuget/feed/v3/index.json", server.host());
    let publisher = config(&work, &source, "publisher");
    let key = token(&server, "publisher", "delete");
    // Pushes read the service index as the publisher, then send the key.
    let push_as = |config: &str, dir: &Path, file: &str, key: &str, extra: &[&str]| {
        let mut args = vec![
            "push",
            file,
            "-Source",
            &source,
            "-ApiKey",
            key,
            "-ConfigFile",
            config,
        ];
        args.extend_from_slice(extra);
        nuget(dir, &args)
    };
    let push = |dir: &Path, file: &str, key: &str, extra: &[&str]| {
        push_as(&publisher, dir, file, key, extra)
    };

    // Packages: a dependency in two versions, and one 12 MiB package depending on it.
    let base_old = pack(&work, "Demo.Base", "2.0.0", None, 1000, false);
    let base_new = pack(&work, "Demo.Base", "2.1.0", None, 1000, false);
    let hello = pack(
        &work,
        "Demo.Hello",
        "1.0.0",
        Some("Demo.Base"),
        12 << 20,
        false,
    );
    let pushed = ok(
        push(&hello, "Demo.Hello.1.0.0.nupkg", &key, &[]),
        "push with a token",
    );
    assert!(pushed.contains("Your package was pushed."), "{pushed}");
    ok(
        push(&base_old, "Demo.Base.2.0.0.nupkg", "publisher:s3cret", &[]),
        "push with user:password",
    );
    ok(push(&base_new, "Demo.Base.2.1.0.nupkg", &key, &[]), "push");

    // A duplicate is refused with a reason NuGet prints; -SkipDuplicate passes over it.
    let duplicate = push(&hello, "Demo.Hello.1.0.0.nupkg", &key, &[]);
    assert!(!duplicate.status.success());
    assert!(
        text(&duplicate).contains("409 (Conflict - Demo.Hello 1.0.0 already exists"),
        "{}",
        text(&duplicate)
    );
    let skipped = ok(
        push(&hello, "Demo.Hello.1.0.0.nupkg", &key, &["-SkipDuplicate"]),
        "push -SkipDuplicate",
    );
    assert!(skipped.contains("already exists at feed"), "{skipped}");

    // Wrong keys: refused, nothing stored. (Given a 401, NuGet.exe retries with the feed's
    // credentials when its config has some: these configs have none.)
    let other = pack(&work, "Demo.Other", "1.0.0", None, 100, false);
    let anonymous = config(&work, &source, "");
    let reader = config(&work, &source, "reader");
    for (bad, status) in [("publisher:wrong", "401"), ("rt_notatoken", "401")] {
        let refused = push_as(&anonymous, &other, "Demo.Other.1.0.0.nupkg", bad, &[]);
        assert!(!refused.status.success(), "{bad}");
        assert!(text(&refused).contains(status), "{bad}: {}", text(&refused));
    }
    let reader_key = "reader:s3cret";
    let refused = push_as(&reader, &other, "Demo.Other.1.0.0.nupkg", reader_key, &[]);
    assert!(text(&refused).contains("403"), "{}", text(&refused));

    // Install, as a reader, with the dependency resolved from the feed (lowest applicable).
    let out = work.join("out");
    let installed = ok(
        nuget(
            &work,
            &[
                "install",
                "Demo.Hello",
                "-Version",
                "1.0.0",
                "-Source",
                &source,
                "-ConfigFile",
                &reader,
                "-OutputDirectory",
                out.to_str().unwrap(),
                "-Framework",
                "net45",
            ],
        ),
        "install",
    );
    assert!(
        installed.contains("Successfully installed 'Demo.Base 2.0.0'"),
        "{installed}"
    );
    let dll = std::fs::read(out.join("Demo.Hello.1.0.0/lib/net45/Demo.Hello.dll")).unwrap();
    assert_eq!(
        dll,
        std::fs::read(hello.join("lib/net45/Demo.Hello.dll")).unwrap()
    );
    assert!(out.join("Demo.Base.2.0.0/Demo.Base.2.0.0.nupkg").exists());

    // Search shows each package's latest listed version. (`search` takes no -ConfigFile: it
    // reads the NuGet.Config of its directory.)
    let searcher = work.join("searcher");
    std::fs::create_dir_all(&searcher).unwrap();
    std::fs::copy(&reader, searcher.join("NuGet.Config")).unwrap();
    let search = |query: &str| {
        ok(
            nuget(&searcher, &["search", query, "-Source", &source]),
            "search",
        )
    };
    let found = search("Demo");
    assert!(found.contains("> Demo.Base | 2.1.0"), "{found}");
    assert!(found.contains("> Demo.Hello | 1.0.0"), "{found}");
    assert!(!found.contains("Demo.Other"), "{found}");

    // Delete unlists: search no longer shows the version, which stays installable by version.
    let deleted = ok(
        nuget(
            &work,
            &[
                "delete",
                "Demo.Base",
                "2.1.0",
                "-Source",
                &source,
                "-ApiKey",
                &key,
                "-ConfigFile",
                &publisher,
            ],
        ),
        "delete",
    );
    assert!(
        deleted.contains("Demo.Base 2.1.0 was deleted successfully."),
        "{deleted}"
    );
    std::fs::remove_dir_all(searcher.join("home")).unwrap();
    let found = search("Demo.Base");
    assert!(found.contains("> Demo.Base | 2.0.0"), "{found}");
    let pinned = work.join("pinned");
    ok(
        nuget(
            &work,
            &[
                "install",
                "Demo.Base",
                "-Version",
                "2.1.0",
                "-Source",
                &source,
                "-ConfigFile",
                &reader,
                "-OutputDirectory",
                pinned.to_str().unwrap(),
            ],
        ),
        "install of an unlisted version",
    );
    assert!(pinned.join("Demo.Base.2.1.0").exists());
    let refused = nuget(
        &work,
        &[
            "delete",
            "Demo.Base",
            "2.0.0",
            "-Source",
            &source,
            "-ApiKey",
            reader_key,
            "-ConfigFile",
            &reader,
        ],
    );
    assert!(text(&refused).contains("403"), "{}", text(&refused));

    // A symbol package goes with its package, to the symbol publish resource.
    let symbols = pack(&work, "Demo.Sym", "1.0.0", None, 2000, true);
    let pushed = ok(
        push(&symbols, "Demo.Sym.1.0.0.nupkg", &key, &[]),
        "push with symbols",
    );
    assert!(pushed.contains("api/v2/symbolpackage"), "{pushed}");
    let (status, _, body) = http_request(
        server.addr,
        &format!(
            "GET /nuget/feed/v3/flatcontainer/demo.sym/1.0.0/demo.sym.1.0.0.snupkg HTTP/1.1\r\nAuthorization: Basic {}",
            {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode("reader:s3cret")
            }
        ),
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        std::fs::read(symbols.join("Demo.Sym.1.0.0.snupkg")).unwrap()
    );
}

/// NuGet.exe through a virtual repository whose members are a hosted feed and a proxy of
/// another registry instance's feed: a package and its dependency installed from the upstream
/// (each `.nupkg` verified against the `packageHash` its registration declares), an internal
/// package shadowing a squatter's higher version upstream, a denied version refused with the
/// rule named in NuGet's output, and the same install with the upstream stopped.
#[test]
fn nuget_exe_installs_through_a_virtual_repository_and_from_the_cache_when_the_upstream_is_down() {
    let (_dir, work) = workdir();
    let upstream = Server::start(&[]);
    let upstream_source = format!("http://{}/nuget/public/v3/index.json", upstream.host());
    let up_config = config(&work, &upstream_source, "");
    let push = |source: &str, config: &str, dir: &Path, file: &str| {
        ok(
            nuget(
                dir,
                &[
                    "push",
                    file,
                    "-Source",
                    source,
                    "-ApiKey",
                    "key",
                    "-ConfigFile",
                    config,
                ],
            ),
            &format!("push of {file}"),
        )
    };
    let base = pack(&work, "Demo.Base", "2.0.0", None, 1000, false);
    let hello = pack(
        &work,
        "Demo.Hello",
        "1.0.0",
        Some("Demo.Base"),
        12 << 20,
        false,
    );
    let bad = pack(&work, "Demo.Bad", "1.0.0", None, 100, false);
    let squatter = pack(&work, "Corp.Internal", "99.0.0", None, 100, false);
    push(&upstream_source, &up_config, &base, "Demo.Base.2.0.0.nupkg");
    push(
        &upstream_source,
        &up_config,
        &hello,
        "Demo.Hello.1.0.0.nupkg",
    );
    push(&upstream_source, &up_config, &bad, "Demo.Bad.1.0.0.nupkg");
    push(
        &upstream_source,
        &up_config,
        &squatter,
        "Corp.Internal.99.0.0.nupkg",
    );

    let proxy_config = work.join("proxy.toml");
    std::fs::write(
        &proxy_config,
        format!(
            r#"
[[package_repositories]]
name = "all"
format = "nuget"
kind = "virtual"
members = ["corp", "gallery"]
publish_to = "corp"

[[package_repositories]]
name = "corp"
format = "nuget"

[[package_repositories]]
name = "gallery"
format = "nuget"
kind = "proxy"
upstream = {{ url = "http://{}/nuget/public/v3/registration-semver2", timeout_seconds = 10 }}

[[firewall_rules]]
name = "no-bad"
deny = ["pkg:nuget/Demo.Bad@1.0.0"]
"#,
            upstream.host()
        ),
    )
    .unwrap();
    let proxy = Server::start(&["--config", proxy_config.to_str().unwrap()]);
    let source = format!("http://{}/nuget/all/v3/index.json", proxy.host());
    let feed = config(&work, &source, "");
    // Pushed through the virtual repository: it lands in `corp`.
    let internal = pack(&work, "Corp.Internal", "1.0.0", None, 100, false);
    push(&source, &feed, &internal, "Corp.Internal.1.0.0.nupkg");

    let install = |dir: &Path, id: &str, version: Option<&str>| {
        std::fs::create_dir_all(dir).unwrap();
        let out = dir.join("out");
        let mut args = vec!["install", id, "-Source", &source, "-ConfigFile", &feed];
        if let Some(version) = version {
            args.extend(["-Version", version]);
        }
        args.extend([
            "-OutputDirectory",
            out.to_str().unwrap(),
            "-Framework",
            "net45",
        ]);
        nuget(dir, &args)
    };
    let first = work.join("first");
    let installed = ok(
        install(&first, "Demo.Hello", Some("1.0.0")),
        "install through the virtual repository",
    );
    assert!(
        installed.contains("Successfully installed 'Demo.Base 2.0.0'"),
        "{installed}"
    );
    let dll = |dir: &Path| {
        std::fs::read(dir.join("out/Demo.Hello.1.0.0/lib/net45/Demo.Hello.dll")).unwrap()
    };
    let expected = std::fs::read(hello.join("lib/net45/Demo.Hello.dll")).unwrap();
    assert!(dll(&first) == expected, "the package's bytes");
    let internal_installed = ok(
        install(&first, "Corp.Internal", None),
        "install of the internal package",
    );
    assert!(
        internal_installed.contains("Corp.Internal 1.0.0"),
        "the hosted package shadows the upstream's 99.0.0: {internal_installed}"
    );
    // A denied version is left out of the registrations NuGet resolves from (so a range picks
    // an allowed one); asked for by version, NuGet finds none. Its package, asked for
    // directly, is refused naming the rule.
    let denied = install(&first, "Demo.Bad", Some("1.0.0"));
    assert!(!denied.status.success(), "{}", text(&denied));
    assert!(text(&denied).contains("is not found"), "{}", text(&denied));
    let (status, head, _) = http_request(
        proxy.addr,
        "GET /nuget/all/v3/flatcontainer/demo.bad/1.0.0/demo.bad.1.0.0.nupkg HTTP/1.1",
        b"",
    );
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("no-bad"), "{head}");

    // The upstream stopped: a fresh client (its own HTTP cache) installs from the cache.
    drop(upstream);
    let second = work.join("second");
    ok(
        install(&second, "Demo.Hello", Some("1.0.0")),
        "install with the upstream stopped",
    );
    assert!(dll(&second) == expected);
}
