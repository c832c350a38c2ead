//! The web UI end to end in Debian's Chromium, driven by playwright-core: log in, browse to an
//! image pushed by skopeo and an npm package published by npm, sort tags by time, copy the pull
//! command, delete a tag with confirmation; an anonymous browser sees only what its grants
//! allow; a hostile annotation and README render inert. Screenshots of the main pages are kept
//! in `target/tmp/ui-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::json;
use support::{Layout, Server, run, tar_layer, workdir};

const HOSTILE_ANNOTATION: &str = "<img src=x onerror=\"document.title='pwned'\">";

const README: &str = "# Hello UI\n\nA package with a hostile README.\n\n\
<script>document.title='pwned'</script>\n\n\
<img src=x onerror=\"document.title='pwned'\">\n\n\
[click me](javascript:document.title='pwned')\n";

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// playwright-core as `scripts/install-clients` installs it.
fn playwright() -> PathBuf {
    let path = project_root().join(".venv/browser/node_modules/playwright-core/index.mjs");
    assert!(
        path.is_file(),
        "playwright-core must be installed for this test (scripts/install-clients installs it): {}",
        path.display()
    );
    path.canonicalize().unwrap()
}

fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(
        Path::new(path).exists(),
        "Chromium must be installed for this test (scripts/install-clients installs it)"
    );
    path
}

/// Pushes `team/app:v1`, `team/app:v2` (with a hostile annotation) and `public/base:v1` with
/// skopeo.
fn push_images(server: &Server, work: &Path) {
    let layout_dir = work.join("layout");
    let mut layout = Layout::new(layout_dir.clone());
    layout.image(Some("v1"), "amd64", &tar_layer("v1.txt", b"one"));
    layout.annotated_image(
        Some("v2"),
        "amd64",
        &tar_layer("v2.txt", &b"two".repeat(1000)),
        json!({ "org.opencontainers.image.description": HOSTILE_ANNOTATION }),
    );
    layout.image(Some("base"), "arm64", &tar_layer("base.txt", b"base"));
    layout.finish();
    let copy = |name: &str, target: &str| {
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                "admin:s3cret",
                &format!("oci:{}:{name}", layout_dir.display()),
                &format!("docker://{}/{target}", server.host()),
            ],
            work,
        );
    };
    copy("v1", "team/app:v1");
    // Pushed later, to the millisecond, so sorting by time has an order to show.
    std::thread::sleep(std::time::Duration::from_millis(20));
    copy("v2", "team/app:v2");
    copy("base", "public/base:v1");
}

/// Publishes `hello-ui@1.0.0` with the hostile README, as npm does.
fn publish_package(server: &Server, work: &Path) {
    let package = work.join("hello-ui");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("package.json"),
        json!({ "name": "hello-ui", "version": "1.0.0", "main": "index.js", "description": HOSTILE_ANNOTATION })
            .to_string(),
    )
    .unwrap();
    std::fs::write(package.join("index.js"), "module.exports = 1;\n").unwrap();
    std::fs::write(package.join("README.md"), README).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
    let npmrc = work.join("npmrc");
    std::fs::write(
        &npmrc,
        format!(
            "registry=http://{host}/npm/js/\n//{host}/npm/js/:_auth={auth}\naudit=false\nfund=false\nupdate-notifier=false\n",
            host = server.host()
        ),
    )
    .unwrap();
    run(
        "npm",
        &[
            "publish",
            "--userconfig",
            npmrc.to_str().unwrap(),
            "--cache",
            work.join("npm-cache").to_str().unwrap(),
        ],
        &package,
    );
}

#[test]
fn the_web_ui_in_chromium() {
    let playwright = playwright();
    let chromium = chromium();
    let (_dir, work) = workdir();
    let config = support::basic_auth_config(
        &work,
        r#"{ pattern = "public/*", role = "reader" }"#,
        &[
            ("admin", r#"{ pattern = "*", role = "admin" }"#),
            (
                "maint",
                r#"{ pattern = "team/*", role = "maintainer" }, { pattern = "js", role = "reader" }"#,
            ),
        ],
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    push_images(&server, &work);
    publish_package(&server, &work);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/ui.mjs");
    let output = Command::new("node")
        .arg(&script)
        .env("PLAYWRIGHT", &playwright)
        .env("CHROMIUM", chromium)
        .env("REGISTRY", format!("http://{}", server.host()))
        .env("UI_USER", "maint")
        .env("UI_PASSWORD", "s3cret")
        .env("SHOTS", &shots)
        .env("PACKAGE", "hello-ui")
        .current_dir(&work)
        .output()
        .expect("node must be installed for this test (scripts/install-clients installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser checks failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(
        stdout.contains("web UI checks passed"),
        "{stdout}\n{stderr}"
    );
    for shot in [
        "anonymous",
        "login",
        "repositories",
        "tags",
        "manifest",
        "delete-confirmation",
        "package",
    ] {
        let path = shots.join(format!("{shot}.png"));
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        assert!(size > 1000, "screenshot {} ({size} bytes)", path.display());
    }
}
