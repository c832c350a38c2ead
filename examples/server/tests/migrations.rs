//! A rolling upgrade with the real binary: the schema migrated pre-deployment only, images
//! pushed by skopeo whose manifests an older version would have left without their total size,
//! the background migration watched, paused and resumed through the admin API and the CLI and
//! run to the end (the CLI applying no post-deployment migration meanwhile), then the
//! post-deployment migration applied by `registry migrate`.

mod support;

use std::path::Path;

use support::{Layout, Server, http_request, run, tar_layer, workdir};

fn registry(args: &[&str], cwd: &Path) -> String {
    run(env!("CARGO_BIN_EXE_registry"), args, cwd)
}

fn api(server: &Server, request: &str) -> (u16, serde_json::Value) {
    let (status, head, body) = http_request(server.addr, request, b"");
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{head}"));
    (status, value)
}

#[test]
fn a_rolling_upgrade_runs_its_background_and_post_deployment_migrations() {
    let (_dir, work) = workdir();
    let data = work.join("data");
    let data_arg = data.to_str().unwrap();
    let skip = "--skip-post-deployment-migrations";
    let out = registry(&["migrate", "--data-dir", data_arg, skip], &work);
    assert!(
        out.contains("post-deployment migration pending: 1001"),
        "{out}"
    );
    assert!(
        out.contains("background migration manifest_total_size: active"),
        "{out}"
    );

    let config = work.join("registry.toml");
    std::fs::write(&config, "[background_migrations]\nenabled = false\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_data(log_dir, &data, &["--config", config_arg, skip]);
    let mut layout = Layout::new(work.join("layout"));
    for n in 0..3 {
        layout.image(
            Some(&format!("i{n}")),
            "amd64",
            &tar_layer("f", format!("image {n}").as_bytes()),
        );
    }
    layout.finish();
    for n in 0..3 {
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:i{n}", work.join("layout").display()),
                &format!("docker://{}/team/app:{n}", server.host()),
            ],
            &work,
        );
    }
    // As the older version wrote them: without their total size.
    run(
        "python3",
        &[
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('UPDATE manifests SET total_size = NULL'); c.commit()",
            data.join("registry.db").to_str().unwrap(),
        ],
        &work,
    );

    let (status, listed) = api(&server, "GET /api/v1/background-migrations HTTP/1.1");
    assert_eq!(status, 200, "{listed}");
    let migration = &listed["migrations"][0];
    assert_eq!(migration["name"], "manifest_total_size");
    assert_eq!(migration["status"], "active");
    assert_eq!(migration["done"], 0);

    let (status, paused) = api(
        &server,
        "POST /api/v1/background-migrations/manifest_total_size/pause HTTP/1.1",
    );
    assert_eq!(
        (status, &paused["status"]),
        (200, &"paused".into()),
        "{paused}"
    );
    let out = registry(
        &["background-migrations", "--data-dir", data_arg, "run"],
        &work,
    );
    assert!(
        out.contains("manifest_total_size: paused, 0/"),
        "paused runs nothing: {out}"
    );
    let (status, unknown) = api(
        &server,
        "POST /api/v1/background-migrations/nope/pause HTTP/1.1",
    );
    assert_eq!(status, 404);
    assert_eq!(
        unknown["errors"][0]["message"],
        "background migration nope is not known"
    );
    let (status, _) = api(
        &server,
        "POST /api/v1/background-migrations/manifest_total_size/explode HTTP/1.1",
    );
    assert_eq!(status, 400);

    registry(
        &[
            "background-migrations",
            "--data-dir",
            data_arg,
            "resume",
            "manifest_total_size",
        ],
        &work,
    );
    // Resumed, it is the servers' to run (the default): a second instance, started as a
    // rolling upgrade starts it, finishes it in the background.
    let log_dir = tempfile::tempdir().unwrap();
    let runner = Server::start_with_data(log_dir, &data, &[skip]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let finished = loop {
        let (_, listed) = api(&runner, "GET /api/v1/background-migrations HTTP/1.1");
        let migration = listed["migrations"][0].clone();
        if migration["status"] == "finished" {
            break migration;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not run it: {migration}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        (&finished["done"], &finished["total"]),
        (&3.into(), &3.into())
    );
    let out = registry(
        &["background-migrations", "--data-dir", data_arg, "status"],
        &work,
    );
    assert!(out.contains("manifest_total_size: finished, 3/3"), "{out}");
    let (status, refused) = api(
        &server,
        "POST /api/v1/background-migrations/manifest_total_size/pause HTTP/1.1",
    );
    assert_eq!(status, 409, "a finished migration is a conflict: {refused}");
    drop(server);
    drop(runner);
    // None of those commands applied the post-deployment migration (only `migrate` does).
    let out = registry(&["migrate", "--data-dir", data_arg, skip], &work);
    assert!(
        out.contains("post-deployment migration pending: 1001"),
        "{out}"
    );

    // Every instance upgraded: the post-deployment migration.
    let out = registry(&["migrate", "--data-dir", data_arg], &work);
    assert!(out.contains("schema is at migration 1001"), "{out}");
    assert!(!out.contains("pending"), "{out}");
    // Served again, with the schema complete: the images are all there.
    let log_dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_data(log_dir, &data, &[]);
    let (status, tags) = api(&server, "GET /v2/team/app/tags/list HTTP/1.1");
    assert_eq!(status, 200);
    assert_eq!(tags["tags"], serde_json::json!(["0", "1", "2"]));
}
