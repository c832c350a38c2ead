//! Tag rules and cleanup policies from the configuration file, seen by real clients: skopeo and
//! oras are refused with `DENIED` naming the rule, `registry cleanup --dry-run` lists what the
//! run then deletes, the server's own cadence cleans up, and a bad rule stops the server from
//! starting.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Layout, Server, command, run, tar_layer, workdir};

const CONFIG: &str = r#"
[cleanup]
interval_seconds = 1

[[tag_rules]]
name = "releases"
repositories = "team/*"
tags = "v[0-9.]+"
kind = "immutable"

[[tag_rules]]
name = "prod"
repositories = "*"
tags = "prod"
kind = "immutable"

[[cleanup_policies]]
name = "builds"
repositories = "team/*"
keep_n = 1
name_regex = "build-.*"
"#;

/// Writes a layout with images `one` and `two` (different layers).
fn layout(work: &Path) {
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("one"), "amd64", &tar_layer("one", b"first image"));
    layout.image(Some("two"), "amd64", &tar_layer("two", b"second image"));
    layout.finish();
}

fn copy(work: &Path, image: &str, dest: &str) -> std::process::Output {
    command(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:layout:{image}"),
            dest,
        ],
        work,
    )
}

fn list_tags(work: &Path, host: &str, repo: &str) -> Vec<String> {
    let out = run(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/{repo}"),
        ],
        work,
    );
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut tags: Vec<String> = value["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

fn refused(output: &std::process::Output, rule: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the client succeeded");
    assert!(
        stderr.to_lowercase().contains("denied") && stderr.contains(rule),
        "the client shows the refusal and the rule: {stderr}"
    );
}

#[test]
fn immutable_tags_refuse_skopeo_and_oras() {
    let (_dir, work) = workdir();
    std::fs::write(work.join("registry.toml"), CONFIG).unwrap();
    layout(&work);
    let server = Server::start(&["--config", work.join("registry.toml").to_str().unwrap()]);
    let host = server.host();
    let v1 = format!("docker://{host}/team/app:v1.0");
    let out = copy(&work, "one", &v1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pushing the same image again is no change; another image is refused.
    assert!(copy(&work, "one", &v1).status.success());
    refused(&copy(&work, "two", &v1), "releases");
    refused(
        &command("skopeo", &["delete", "--tls-verify=false", &v1], &work),
        "releases",
    );
    // A repository the rule does not cover takes any push.
    let elsewhere = format!("docker://{host}/other/app:v1.0");
    assert!(copy(&work, "one", &elsewhere).status.success());
    assert!(copy(&work, "two", &elsewhere).status.success());

    // oras: an artifact pushed to `prod` once, then another is refused and the tag stays.
    let script = work.join("oras_immutable.py");
    std::fs::write(&script, ORAS_SCRIPT).unwrap();
    let python = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/clients/bin/python"
    );
    let out = run(
        python,
        &[script.to_str().unwrap(), &host, work.to_str().unwrap()],
        &work,
    );
    assert!(out.contains("oras refused"), "{out}\n{}", server.log());
}

const ORAS_SCRIPT: &str = r#"
import os, sys
import oras.client, oras.decorator

host = sys.argv[1]
os.chdir(sys.argv[2])
for name, text in [("a.txt", "first"), ("b.txt", "second")]:
    with open(name, "w") as f:
        f.write(text)
c = oras.client.OrasClient(hostname=host, insecure=True)
target = f"{host}/team/artifact:prod"
r = c.push(files=["a.txt"], target=target)
assert r.status_code == 201, r.text
# oras-py takes any 403 for an authentication challenge, and retries the request five times
# with sleeps adding up to two minutes; the test skips the sleeps, not the requests.
oras.decorator.time.sleep = lambda seconds: None
try:
    r = c.push(files=["b.txt"], target=target)
except Exception as e:
    said = str(e)
else:
    said = f"{r.status_code} {r.text}"
    assert r.status_code == 403, said
files = c.pull(target=target, outdir="out")
assert [open(f).read() for f in files if f.endswith("a.txt")] == ["first"], files
print("oras refused:", said)
"#;

#[test]
fn cleanup_by_command_and_on_the_servers_cadence() {
    let (_dir, work) = workdir();
    // The server does not run cleanup itself here; the command does.
    let config = CONFIG.replace("interval_seconds = 1", "enabled = false");
    std::fs::write(work.join("registry.toml"), &config).unwrap();
    layout(&work);
    let server = Server::start(&["--config", work.join("registry.toml").to_str().unwrap()]);
    let host = server.host();
    for (image, tag) in [
        ("one", "build-1"),
        ("two", "build-2"),
        ("one", "build-3"),
        ("one", "v2"),
    ] {
        let out = copy(&work, image, &format!("docker://{host}/team/app:{tag}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let data = server.data_dir.path().join("data");
    let cleanup = |extra: &[&str]| {
        let config = work.join("registry.toml");
        let mut args = vec![
            "cleanup",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(env!("CARGO_BIN_EXE_registry"), &args, &work)
    };
    let dry = cleanup(&["--dry-run"]);
    assert!(dry.contains("would delete team/app:build-2"), "{dry}");
    assert!(dry.contains("would delete team/app:build-1"), "{dry}");
    assert!(!dry.contains("build-3") && !dry.contains(":v2"), "{dry}");
    assert!(dry.contains("would delete 2"), "{dry}");
    assert_eq!(
        list_tags(&work, &host, "team/app"),
        ["build-1", "build-2", "build-3", "v2"]
    );
    let done = cleanup(&[]);
    assert!(done.contains("deleted 2"), "{done}");
    assert_eq!(list_tags(&work, &host, "team/app"), ["build-3", "v2"]);
    drop(server);

    // The server's cadence: a second server with cleanup every second.
    std::fs::write(work.join("cadence.toml"), CONFIG).unwrap();
    let server = Server::start(&["--config", work.join("cadence.toml").to_str().unwrap()]);
    let host = server.host();
    for tag in ["build-a", "build-b"] {
        let out = copy(&work, "one", &format!("docker://{host}/team/app:{tag}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while list_tags(&work, &host, "team/app") != ["build-b"] {
        assert!(
            Instant::now() < deadline,
            "the server did not clean up: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = support::http_get(server.addr, "/metrics").unwrap();
    assert!(metrics.contains("registry_cleanup_runs_total"), "{metrics}");
}

#[test]
fn a_bad_rule_in_the_configuration_stops_the_server() {
    let (_dir, work) = workdir();
    for (bad, expected) in [
        (
            "[[tag_rules]]\nname = \"x\"\nrepositories = \"*\"\ntags = \"(\"\nkind = \"immutable\"\n",
            "does not compile",
        ),
        (
            "[[cleanup_policies]]\nname = \"p\"\nrepositories = \"*\"\n",
            "would delete every tag",
        ),
        (
            "[[tag_rules]]\nname = \"x\"\nrepositories = \"*\"\ntags = \"a\"\nkind = \"immutable\"\n\
             [[tag_rules]]\nname = \"x\"\nrepositories = \"*\"\ntags = \"b\"\nkind = \"immutable\"\n",
            "used twice",
        ),
    ] {
        std::fs::write(work.join("bad.toml"), bad).unwrap();
        let data = work.join("data");
        let out = command(
            env!("CARGO_BIN_EXE_registry"),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
                "--config",
                work.join("bad.toml").to_str().unwrap(),
            ],
            &work,
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}
