//! podman against the example server: pull, tag, push, and a manifest list pushed with `--all`.

mod support;

use serde_json::Value;
use support::{Layout, Server, podman, podman_args, run, tar_layer, workdir};

#[test]
fn pull_tag_push_and_manifest_list() {
    let server = Server::start(&[]);
    let host = server.host();
    let (_dir, work) = workdir();
    let storage = work.join("storage");
    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("v1"), "amd64", &tar_layer("etc/hello.txt", b"hello\n"));
    layout.finish();
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:layout:v1",
            &format!("docker://{host}/test/hello:v1"),
        ],
        &work,
    );

    let source = format!("{host}/test/hello:v1");
    podman(&storage, &["pull", "--tls-verify=false", &source], &work);
    let pushed = format!("{host}/podman/hello:pushed");
    podman(&storage, &["tag", &source, &pushed], &work);
    podman(&storage, &["push", "--tls-verify=false", &pushed], &work);
    podman(&storage, &["rmi", &pushed], &work);
    podman(&storage, &["pull", "--tls-verify=false", &pushed], &work);

    let list = format!("{host}/podman/list:v1");
    podman(&storage, &["manifest", "create", &list], &work);
    podman(
        &storage,
        &[
            "manifest",
            "add",
            "--tls-verify=false",
            &list,
            &format!("docker://{source}"),
        ],
        &work,
    );
    podman(
        &storage,
        &[
            "manifest",
            "push",
            "--tls-verify=false",
            "--all",
            &list,
            &format!("docker://{list}"),
        ],
        &work,
    );
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{list}"),
        ],
        &work,
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(1),
        "{raw}"
    );

    let tags = podman(
        &storage,
        &[
            "search",
            "--list-tags",
            "--tls-verify=false",
            &format!("{host}/podman/hello"),
        ],
        &work,
    );
    assert!(tags.contains("pushed"), "{tags}");
}

#[test]
fn login_push_and_pull_with_token_auth() {
    let (_dir, work) = workdir();
    let config = work.join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"token\"\ntoken_secret = \"a test secret that is long enough for HS256\"\n\n\
             [auth.users.pod]\npassword_hash = \"{}\"\ngrants = [{{ pattern = \"pod/*\", role = \"developer\" }}]\n",
            registry_http::auth::hash_password("pw").unwrap()
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let host = server.host();
    let storage = work.join("storage");
    let authfile = work.join("auth.json");
    let authfile = authfile.to_str().unwrap();
    let mut layout = Layout::new(work.join("layout"));
    layout.image(
        Some("v1"),
        "amd64",
        &tar_layer("pod", b"pushed by podman with a token"),
    );
    layout.finish();

    let image = format!("{host}/pod/app:v1");
    // `pull` prints the local image's id last (a relative layout path keeps its name valid).
    let pulled = podman(&storage, &["pull", "oci:layout:v1"], &work);
    let id = pulled
        .lines()
        .last()
        .expect("the image id")
        .trim()
        .to_owned();
    podman(&storage, &["tag", &id, &image], &work);
    let push = podman_args(
        &storage,
        &["push", "--tls-verify=false", "--authfile", authfile, &image],
    );
    let refused = support::command(
        "podman",
        &push.iter().map(String::as_str).collect::<Vec<_>>(),
        &work,
    );
    assert!(
        !refused.status.success(),
        "a push without credentials is refused"
    );
    podman(
        &storage,
        &[
            "login",
            "--tls-verify=false",
            "--authfile",
            authfile,
            "-u",
            "pod",
            "-p",
            "pw",
            &host,
        ],
        &work,
    );
    podman(
        &storage,
        &["push", "--tls-verify=false", "--authfile", authfile, &image],
        &work,
    );
    podman(&storage, &["rmi", "-f", &image], &work);
    podman(
        &storage,
        &["pull", "--tls-verify=false", "--authfile", authfile, &image],
        &work,
    );
}
