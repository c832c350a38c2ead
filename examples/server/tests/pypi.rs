//! twine and pip against the example server: upload of a wheel and an sdist, a refused
//! duplicate, install, download (pip fetching the PEP 658 `.metadata` file first), the JSON and
//! HTML Simple API, yanking, `requires-python`, bad uploads by curl, and Basic auth.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::{Server, command, run, workdir};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/clients/bin");

/// Builds a wheel and an sdist with the standard library only (no network, no build backend).
const MAKE_DISTS: &str = r#"
import base64, hashlib, io, os, sys, tarfile, zipfile

out, name, version, requires_python = sys.argv[1:5]
payload_mib = int(sys.argv[5]) if len(sys.argv) > 5 else 0
dist = name.replace("-", "_")
metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: says hello\n"
            f"Requires-Python: {requires_python}\n\n")
code = f"GREETING = 'hello {version}'\n"
os.makedirs(out, exist_ok=True)
info = sys.argv[6] if len(sys.argv) > 6 else f"{dist}-{version}.dist-info"
files = {f"{dist}/__init__.py": code, f"{info}/METADATA": metadata,
         f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
if payload_mib:
    # Incompressible, so the wheel is as large as its payload.
    files[f"{dist}/payload.bin"] = os.urandom(payload_mib << 20)
record = []
with zipfile.ZipFile(os.path.join(out, f"{dist}-{version}-py3-none-any.whl"), "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        data = text if isinstance(text, bytes) else text.encode()
        z.writestr(path, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
root = f"{dist}-{version}"
pyproject = ("[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n"
             f"[project]\nname = \"{name}\"\nversion = \"{version}\"\nrequires-python = \"{requires_python}\"\n")
with tarfile.open(os.path.join(out, f"{root}.tar.gz"), "w:gz") as t:
    for path, text in {f"{root}/PKG-INFO": metadata, f"{root}/pyproject.toml": pyproject,
                       f"{root}/{dist}/__init__.py": code}.items():
        data = text.encode()
        member = tarfile.TarInfo(path)
        member.size = len(data)
        t.addfile(member, io.BytesIO(data))
"#;

fn tool(name: &str) -> String {
    format!("{CLIENTS}/{name}")
}

/// Builds `name` `version` into `<work>/<dir>`; returns that directory.
fn dists(work: &Path, dir: &str, name: &str, version: &str, requires_python: &str) -> PathBuf {
    dists_with(work, dir, &[name, version, requires_python])
}

/// Builds dists with the script's arguments after the output directory: name, version,
/// requires-python, then optionally a payload size in MiB and the wheel's `.dist-info` name.
fn dists_with(work: &Path, dir: &str, args: &[&str]) -> PathBuf {
    let script = work.join("make_dists.py");
    std::fs::write(&script, MAKE_DISTS).unwrap();
    let out = work.join(dir);
    let mut all = vec![script.to_str().unwrap(), out.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&tool("python"), &all, work);
    out
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    files.sort();
    files
}

fn twine(work: &Path, url: &str, user: &str, password: &str, files: &[String]) -> Output {
    let mut args = vec![
        "upload",
        "--repository-url",
        url,
        "-u",
        user,
        "-p",
        password,
        "--non-interactive",
        "--disable-progress-bar",
    ];
    args.extend(files.iter().map(String::as_str));
    command(&tool("twine"), &args, work)
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn pip(work: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--no-cache-dir", "--disable-pip-version-check"]);
    run(&tool("pip"), &all, work)
}

#[test]
fn twine_upload_and_pip_install_download() {
    let server = Server::start(&[]);
    let (_dir, work) = workdir();
    let upload_url = format!("http://{}/pypi/py/", server.host());
    let index = format!("http://{}/pypi/py/simple/", server.host());

    let v1 = dists(&work, "v1", "demo-hello", "1.0.0", ">=3.8");
    let out = twine(&work, &upload_url, "alice", "anything", &files_in(&v1));
    assert!(out.status.success(), "{}", said(&out));
    // The same file again is refused, clearly.
    let again = twine(&work, &upload_url, "alice", "anything", &files_in(&v1)[..1]);
    assert!(!again.status.success());
    assert!(said(&again).contains("409"), "{}", said(&again));
    let v2 = dists(&work, "v2", "demo-hello", "2.0.0", ">=3.8");
    let future = dists(&work, "v3", "demo-hello", "3.0.0", ">=4");
    for dir in [&v2, &future] {
        let out = twine(&work, &upload_url, "alice", "anything", &files_in(dir));
        assert!(out.status.success(), "{}", said(&out));
    }

    // pip skips 3.0.0 (it requires Python 4) and installs 2.0.0; the name is normalized.
    let target = work.join("site");
    pip(
        &work,
        &[
            "install",
            "--target",
            target.to_str().unwrap(),
            "--index-url",
            &index,
            "Demo_Hello",
        ],
    );
    let greeting = std::process::Command::new("python3")
        .args(["-c", "import demo_hello; print(demo_hello.GREETING)"])
        .env("PYTHONPATH", &target)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&greeting.stdout).trim(),
        "hello 2.0.0"
    );

    // Download: pip reads the JSON page, fetches the core metadata, then the wheel.
    let dl = work.join("dl");
    let log = pip(
        &work,
        &[
            "download",
            "--no-deps",
            "-v",
            "-d",
            dl.to_str().unwrap(),
            "--index-url",
            &index,
            "demo-hello==1.0.0",
        ],
    );
    assert!(
        log.contains("demo_hello-1.0.0-py3-none-any.whl.metadata"),
        "pip fetched the .metadata file: {log}"
    );
    assert!(dl.join("demo_hello-1.0.0-py3-none-any.whl").exists());
    let original = std::fs::read(v1.join("demo_hello-1.0.0-py3-none-any.whl")).unwrap();
    assert_eq!(
        std::fs::read(dl.join("demo_hello-1.0.0-py3-none-any.whl")).unwrap(),
        original
    );
    // The sdist's core metadata is its PKG-INFO (pip would build the sdist on top, which needs
    // a build backend, so curl reads it).
    let metadata = run(
        "curl",
        &[
            "-sSf",
            &format!(
                "http://{}/pypi/py/files/demo-hello/1.0.0/demo_hello-1.0.0.tar.gz.metadata",
                server.host()
            ),
        ],
        &work,
    );
    assert!(
        metadata.starts_with("Metadata-Version: 2.1\nName: demo-hello\nVersion: 1.0.0"),
        "{metadata}"
    );

    // The Simple API in both forms.
    let json = run(
        "curl",
        &[
            "-sSf",
            "-H",
            "Accept: application/vnd.pypi.simple.v1+json",
            &format!("{index}demo-hello/"),
        ],
        &work,
    );
    let page: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(page["meta"]["api-version"], "1.1");
    assert_eq!(
        page["versions"],
        serde_json::json!(["1.0.0", "2.0.0", "3.0.0"])
    );
    assert_eq!(page["files"].as_array().unwrap().len(), 6);
    assert_eq!(page["files"][4]["requires-python"], ">=4");
    let html = run("curl", &["-sSf", &format!("{index}demo-hello/")], &work);
    assert!(html.contains("data-requires-python=\"&gt;=4\""), "{html}");
    assert!(html.contains("data-core-metadata=\"sha256="), "{html}");
    let root = run("curl", &["-sSf", &index], &work);
    assert!(
        root.contains("<a href=\"demo-hello/\">demo-hello</a>"),
        "{root}"
    );

    // Yank 2.0.0: pip no longer picks it unless pinned.
    let yank = format!(
        "http://{}/pypi/py/projects/demo-hello/2.0.0/yank",
        server.host()
    );
    run(
        "curl",
        &[
            "-sSf",
            "-X",
            "PUT",
            "-d",
            r#"{"reason":"broken build"}"#,
            &yank,
        ],
        &work,
    );
    let html = run("curl", &["-sSf", &format!("{index}demo-hello/")], &work);
    assert!(html.contains("data-yanked=\"broken build\""), "{html}");
    let refused = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-d",
            "nonsense",
            &yank,
        ],
        &work,
    );
    assert_eq!(
        refused, "400",
        "a yank body that is not {{\"reason\"}} is refused"
    );
    let report = work.join("report.json");
    pip(
        &work,
        &[
            "install",
            "--dry-run",
            "--ignore-installed",
            "--report",
            report.to_str().unwrap(),
            "--index-url",
            &index,
            "demo-hello",
        ],
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        report["install"][0]["metadata"]["version"], "1.0.0",
        "{report}"
    );
    run("curl", &["-sSf", "-X", "DELETE", &yank], &work);
    let html = run("curl", &["-sSf", &format!("{index}demo-hello/")], &work);
    assert!(!html.contains("data-yanked"), "{html}");
}

/// Real sizes: a 50 MiB wheel (far over any framework's default body limit) uploads with
/// twine, and pip installs it byte for byte.
#[test]
fn a_50_mib_wheel_uploads_and_installs() {
    let (_dir, work) = workdir();
    let server = Server::start(&[]);
    let big = dists_with(&work, "big", &["big-wheel", "1.0.0", ">=3.8", "50"]);
    let wheel = big.join("big_wheel-1.0.0-py3-none-any.whl");
    assert!(std::fs::metadata(&wheel).unwrap().len() > 50 << 20);
    let upload = twine(
        &work,
        &format!("http://{}/pypi/py/", server.host()),
        "me",
        "pw",
        &[wheel.to_str().unwrap().to_owned()],
    );
    assert!(upload.status.success(), "{}", said(&upload));
    let target = work.join("site");
    pip(
        &work,
        &[
            "install",
            "--target",
            target.to_str().unwrap(),
            "--index-url",
            &format!("http://{}/pypi/py/simple/", server.host()),
            "big-wheel",
        ],
    );
    assert_eq!(
        std::fs::metadata(target.join("big_wheel/payload.bin"))
            .unwrap()
            .len(),
        50 << 20
    );
}

#[test]
fn bad_uploads_are_refused_and_auth_is_enforced() {
    let (_dir, work) = workdir();
    let config = support::basic_auth_config(
        &work,
        r#"{ pattern = "py", role = "reader" }"#,
        &[("uploader", r#"{ pattern = "py", role = "developer" }"#)],
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let upload_url = format!("http://{}/pypi/py/", server.host());
    let v1 = dists(&work, "v1", "demo-hello", "1.0.0", ">=3.8");
    let wheel = v1.join("demo_hello-1.0.0-py3-none-any.whl");

    let refused = twine(&work, &upload_url, "uploader", "wrong", &files_in(&v1));
    assert!(
        said(&refused).contains("403") || said(&refused).contains("401"),
        "{}",
        said(&refused)
    );
    let ok = twine(&work, &upload_url, "uploader", "s3cret", &files_in(&v1));
    assert!(ok.status.success(), "{}", said(&ok));

    // Hand-made uploads that disagree with themselves.
    let file = format!(
        "content=@{};filename=demo_hello-2.0.0-py3-none-any.whl",
        wheel.display()
    );
    let curl_upload = |extra: &[&str]| {
        let mut args = vec![
            "-sS",
            "-u",
            "uploader:s3cret",
            "-w",
            "\n%{http_code}",
            "-F",
            ":action=file_upload",
        ];
        args.extend_from_slice(extra);
        args.push(&upload_url);
        let out = run("curl", &args, &work);
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    let (code, body) = curl_upload(&["-F", "name=demo-hello", "-F", "version=2.0.0", "-F", &file]);
    assert_eq!(code, "400", "{body}");
    assert!(
        body.contains("demo_hello-1.0.0.dist-info, not demo_hello-2.0.0.dist-info (PEP 427)"),
        "{body}"
    );
    let file = format!("content=@{}", wheel.display());
    let (code, body) = curl_upload(&[
        "-F",
        "name=demo-hello",
        "-F",
        "version=1.0.0",
        "-F",
        &format!("sha256_digest={}", "0".repeat(64)),
        "-F",
        &file,
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("sha256_digest"), "{body}");
    let (code, body) = curl_upload(&[
        "-F",
        "name=demo-hello",
        "-F",
        "version=1.0.0",
        "-F",
        &format!("blake2_256_digest={}", "0".repeat(64)),
        "-F",
        &file,
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("blake2_256_digest"), "{body}");
    let (code, body) = curl_upload(&[
        "-F",
        "name=demo-hello",
        "-F",
        "version=1.0.0",
        "-F",
        &format!("md5_digest={}", "0".repeat(32)),
        "-F",
        &file,
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("md5_digest"), "{body}");
    // PEP 427: the metadata directory must be the wheel's own.
    let foreign = dists_with(
        &work,
        "foreign",
        &[
            "demo-hello",
            "1.0.1",
            ">=3.8",
            "0",
            "other_project-1.0.1.dist-info",
        ],
    );
    let (code, body) = curl_upload(&[
        "-F",
        "name=demo-hello",
        "-F",
        "version=1.0.1",
        "-F",
        &format!(
            "content=@{}",
            foreign.join("demo_hello-1.0.1-py3-none-any.whl").display()
        ),
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("PEP 427"), "{body}");
    let not_a_wheel = work.join("fake-1.0-py3-none-any.whl");
    std::fs::write(&not_a_wheel, b"not a zip").unwrap();
    let (code, body) = curl_upload(&[
        "-F",
        "name=fake",
        "-F",
        "version=1.0",
        "-F",
        &format!("content=@{}", not_a_wheel.display()),
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("not a zip archive"), "{body}");
    let (code, body) = curl_upload(&[
        "-F",
        "name=evil",
        "-F",
        "version=1.0",
        "-F",
        &format!("content=@{};filename=../evil-1.0.tar.gz", wheel.display()),
    ]);
    assert_eq!(code, "400", "{body}");

    // Anonymous reads are granted here; installs work without credentials.
    let index = format!("http://{}/pypi/py/simple/", server.host());
    let target = work.join("site");
    pip(
        &work,
        &[
            "install",
            "--target",
            target.to_str().unwrap(),
            "--index-url",
            &index,
            "demo-hello",
        ],
    );
    assert!(target.join("demo_hello/__init__.py").exists());
    let listed = run(
        "curl",
        &[
            "-sSf",
            "-H",
            "Accept: application/vnd.pypi.simple.v1+json",
            &format!("{index}demo-hello/"),
        ],
        &work,
    );
    let page: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        page["versions"],
        serde_json::json!(["1.0.0"]),
        "nothing of the bad uploads was published"
    );
}

/// pip through a virtual repository whose members are a hosted index and a proxy of another
/// registry instance: a project from the upstream installs through the proxy (a 12 MiB wheel
/// among its files), a project published here shadows the upstream's of the same name, a
/// denied version is skipped for the previous one, and with the upstream stopped the same
/// install succeeds from the cache.
#[test]
fn pip_installs_through_a_virtual_repository_and_from_the_cache_when_the_upstream_is_down() {
    let (_dir, work) = workdir();
    let upstream = Server::start(&[]);
    let up = format!("http://{}/pypi/public/", upstream.host());
    for (dir, name, version, payload) in [
        ("a1", "proxied-lib", "1.0.0", "12"),
        ("a2", "proxied-lib", "1.1.0", "0"),
        ("s1", "corp-internal", "99.0.0", "0"),
    ] {
        let built = dists_with(&work, dir, &[name, version, ">=3.8", payload]);
        let out = twine(&work, &up, "alice", "pw", &files_in(&built));
        assert!(out.status.success(), "{}", said(&out));
    }
    let config = work.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[package_repositories]]
name = "corp"
format = "pypi"

[[package_repositories]]
name = "pypi-proxy"
format = "pypi"
kind = "proxy"
upstream = {{ url = "http://{}/pypi/public", metadata_ttl_seconds = 0, timeout_seconds = 5 }}

[[package_repositories]]
name = "all"
format = "pypi"
kind = "virtual"
members = ["corp", "pypi-proxy"]
publish_to = "corp"

[[firewall_rules]]
name = "no-1-1"
deny = ["pkg:pypi/proxied-lib@1.1.0"]
"#,
            upstream.host()
        ),
    )
    .unwrap();
    let proxy = Server::start(&["--config", config.to_str().unwrap()]);
    let internal = dists(&work, "c1", "corp-internal", "1.0.0", ">=3.8");
    let out = twine(
        &work,
        &format!("http://{}/pypi/all/", proxy.host()),
        "bob",
        "pw",
        &files_in(&internal),
    );
    assert!(out.status.success(), "{}", said(&out));

    let index = format!("http://{}/pypi/all/simple/", proxy.host());
    let install = |site: &str| {
        let target = work.join(site);
        pip(
            &work,
            &[
                "install",
                "--target",
                target.to_str().unwrap(),
                "--index-url",
                &index,
                "proxied-lib",
                "corp-internal",
            ],
        );
        let read = |path: &str| std::fs::read_to_string(target.join(path)).unwrap();
        assert!(
            read("proxied_lib/__init__.py").contains("hello 1.0.0"),
            "1.1.0 is denied"
        );
        assert!(
            read("corp_internal/__init__.py").contains("hello 1.0.0"),
            "not the squatter's"
        );
        assert_eq!(
            std::fs::metadata(target.join("proxied_lib/payload.bin"))
                .unwrap()
                .len(),
            12 << 20
        );
    };
    install("site1");
    drop(upstream);
    install("site2");
    let (status, head, _) = support::http_request(
        proxy.addr,
        "GET /pypi/all/simple/proxied-lib/ HTTP/1.1",
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        support::header(&head, "x-registry-stale").is_some(),
        "{head}"
    );
}
