//! skopeo and podman pulling through a virtual image registry over a hosted namespace and a
//! pull-through cache of the distribution registry 2.8.2 (Debian's `docker-registry`, on
//! loopback): a multi-arch image with `--all` and a 24 MiB layer copied byte for byte, podman's
//! pull, a hosted image shadowing the upstream's of the same name, then the pulls again with the
//! upstream stopped, from the cache.

mod support;

use support::{Distribution, Layout, Server, layout_digest, podman, run, tar_layer, workdir};

#[test]
fn skopeo_and_podman_pull_through_a_virtual_registry_over_a_cache_of_distribution_and_when_it_is_down()
 {
    let (_dir, work) = workdir();
    let upstream = Distribution::start(&work);
    let mut layout = Layout::new(work.join("layout"));
    let big: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let amd64 = layout.image(None, "amd64", &tar_layer("data.bin", &big));
    let arm64 = layout.image(None, "arm64", &tar_layer("arch", b"arm64"));
    layout.multi_arch("multi", vec![amd64, arm64]);
    layout.finish();
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "oci:layout:multi",
            &format!("docker://{}/library/hello:v1", upstream.addr),
        ],
        &work,
    );

    // Someone pushes the internal image's name upstream.
    let mut squatter = Layout::new(work.join("squatter"));
    squatter.image(Some("v1"), "amd64", &tar_layer("who", b"squatter"));
    squatter.finish();
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:squatter:v1",
            &format!("docker://{}/library/internal:v1", upstream.addr),
        ],
        &work,
    );

    let config = work.join("cache.toml");
    std::fs::write(
        &config,
        format!(
            "[[pull_through]]\nprefix = \"hub\"\n\
             upstream = {{ url = \"http://{}\", metadata_ttl_seconds = 0, timeout_seconds = 10 }}\n\
             [[oci_virtual]]\nprefix = \"all\"\nmembers = [\"corp\", \"hub\"]\n",
            upstream.addr
        ),
    )
    .unwrap();
    let cache = Server::start(&["--config", config.to_str().unwrap()]);
    // Through the virtual registry: hosted names first, the cache for the rest.
    let image = format!("{}/all/library/hello:v1", cache.host());
    let mut internal = Layout::new(work.join("internal"));
    internal.image(Some("v1"), "amd64", &tar_layer("who", b"internal"));
    internal.finish();
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:internal:v1",
            &format!("docker://{}/corp/library/internal:v1", cache.host()),
        ],
        &work,
    );
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/all/library/internal:v1", cache.host()),
            "oci:shadowed:v1",
        ],
        &work,
    );
    assert_eq!(
        layout_digest(&work.join("shadowed"), "v1"),
        layout_digest(&work.join("internal"), "v1"),
        "the hosted image shadows the upstream's of the same name"
    );
    let copy = |to: &str| {
        run(
            "skopeo",
            &[
                "copy",
                "--all",
                "--src-tls-verify=false",
                &format!("docker://{image}"),
                &format!("oci:{to}:v1"),
            ],
            &work,
        );
        assert_eq!(
            layout_digest(&work.join(to), "v1"),
            layout_digest(&work.join("layout"), "multi"),
            "the index is served byte for byte"
        );
    };
    copy("first");
    let pulled = podman(
        &work.join("podman1"),
        &["pull", "--tls-verify=false", &image],
        &work,
    );
    assert!(
        !pulled.trim().is_empty(),
        "podman names the image it pulled"
    );

    // The upstream stopped: the cache serves what it holds.
    drop(upstream);
    copy("second");
    podman(
        &work.join("podman2"),
        &["pull", "--tls-verify=false", &image],
        &work,
    );
}

/// A cache of a private registry (another instance, in Docker token mode) with the upstream's
/// credentials: an anonymous client pulls a private image through it; a cache without
/// credentials says why it failed. (The token challenge itself is followed in
/// `crates/registry-http/tests/pull_through.rs`.)
#[test]
fn a_cache_pulls_a_private_image_with_its_upstreams_credentials() {
    let (_dir, work) = workdir();
    let hash = registry_http::auth::hash_password("s3cret").unwrap();
    let auth = work.join("token.toml");
    std::fs::write(
        &auth,
        format!(
            "[auth]\nmode = \"token\"\nservice = \"upstream\"\n\
             token_secret = \"a test secret that is long enough for HS256\"\n\
             [auth.users.dev]\npassword_hash = \"{hash}\"\n\
             grants = [{{ pattern = \"team/*\", role = \"developer\" }}]\n"
        ),
    )
    .unwrap();
    let upstream = Server::start(&["--config", auth.to_str().unwrap()]);
    let mut layout = Layout::new(work.join("layout"));
    layout.image(
        Some("v1"),
        "amd64",
        &tar_layer("etc/secret.txt", b"private\n"),
    );
    layout.finish();
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "dev:s3cret",
            "oci:layout:v1",
            &format!("docker://{}/team/app:v1", upstream.host()),
        ],
        &work,
    );
    let config = work.join("cache.toml");
    std::fs::write(
        &config,
        format!(
            "[[pull_through]]\nprefix = \"private\"\n\
             upstream = {{ url = \"http://{0}\", username = \"dev\", password = \"s3cret\" }}\n\
             [[pull_through]]\nprefix = \"anonymous\"\nupstream = {{ url = \"http://{0}\" }}\n",
            upstream.host()
        ),
    )
    .unwrap();
    let cache = Server::start(&["--config", config.to_str().unwrap()]);
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/private/team/app:v1", cache.host()),
            "oci:pulled:v1",
        ],
        &work,
    );
    assert_eq!(
        layout_digest(&work.join("pulled"), "v1"),
        layout_digest(&work.join("layout"), "v1")
    );
    let refused = support::command(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/anonymous/team/app:v1", cache.host()),
        ],
        &work,
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("502") || said.contains("upstream"), "{said}");
}
