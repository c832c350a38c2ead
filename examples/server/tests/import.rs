//! `registry import` from the storage of a real distribution registry (Debian's
//! `docker-registry` 2.8.2) written by skopeo: single images, a multi-arch index, layers shared
//! by two repositories, a 12 MiB layer; a pre-import while distribution serves, then changes
//! (a new image, a moved tag, a deleted image) and a final pass with it stopped; then skopeo
//! reads everything back from this registry byte for byte, and what was deleted is gone.

mod support;

use std::path::Path;

use support::{Distribution, Layout, Server, command, layout_digest, run, tar_layer, workdir};

fn skopeo_copy(work: &Path, args: &[&str], from: &str, to: &str) {
    let mut all = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[from, to]);
    run("skopeo", &all, work);
}

fn import(work: &Path, target: &Path) -> String {
    run(
        env!("CARGO_BIN_EXE_registry"),
        &[
            "import",
            "--from",
            work.join("distribution").to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ],
        work,
    )
}

/// The number before `what` in the import's report, e.g. `copied` in `blobs: 3 copied`.
fn figure(report: &str, line: &str, what: &str) -> u64 {
    let text = report
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("{line} in {report}"));
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == what)
        .unwrap_or_else(|| panic!("{what} in {text}"));
    words[at - 1].parse().unwrap()
}

#[test]
fn import_a_distribution_store_in_two_passes_and_read_it_back_with_skopeo() {
    let (_dir, work) = workdir();
    let distribution = Distribution::start(&work);
    let source = distribution.addr.to_string();

    let mut layout = Layout::new(work.join("layout"));
    layout.image(Some("one"), "amd64", &tar_layer("one", b"first image"));
    layout.image(Some("two"), "amd64", &tar_layer("two", b"second image"));
    let big: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(31) >> 7) as u8)
        .collect();
    layout.image(Some("big"), "amd64", &tar_layer("big", &big));
    layout.image(
        Some("late"),
        "amd64",
        &tar_layer("late", b"pushed after the pre-import"),
    );
    let amd64 = layout.image(None, "amd64", &tar_layer("a", b"amd64 build"));
    let arm64 = layout.image(None, "arm64", &tar_layer("b", b"arm64 build"));
    layout.multi_arch("multi", vec![amd64, arm64]);
    layout.finish();
    let dir = work.join("layout");
    let oci = |name: &str| format!("oci:{}:{name}", dir.display());
    let to_source = |repo: &str| format!("docker://{source}/{repo}");

    skopeo_copy(&work, &[], &oci("one"), &to_source("library/one:1"));
    // The same layers in a second repository.
    skopeo_copy(&work, &[], &oci("one"), &to_source("team/shared:1"));
    skopeo_copy(&work, &[], &oci("big"), &to_source("team/big:1"));
    skopeo_copy(
        &work,
        &["--all"],
        &oci("multi"),
        &to_source("team/multi:latest"),
    );
    skopeo_copy(&work, &[], &oci("one"), &to_source("team/moved:v"));
    skopeo_copy(&work, &[], &oci("two"), &to_source("team/gone:1"));

    // Pre-import, while distribution serves.
    let target = work.join("target");
    let first = import(&work, &target);
    assert!(first.contains("repositories: 6\n"), "{first}");
    assert_eq!(figure(&first, "tags:", "set"), 6, "{first}");
    assert!(!first.contains("not imported"), "{first}");
    let copied_first = figure(&first, "blobs:", "copied");
    assert!(copied_first >= 10, "{first}");

    // Meanwhile: a new image, a tag moved, an image deleted (its tag with it).
    skopeo_copy(&work, &[], &oci("late"), &to_source("team/late:1"));
    skopeo_copy(&work, &[], &oci("two"), &to_source("team/moved:v"));
    run(
        "skopeo",
        &["delete", "--tls-verify=false", &to_source("team/gone:1")],
        &work,
    );
    drop(distribution);

    // The final pass copies only the new image's blobs and moves the tags.
    let last = import(&work, &target);
    assert!(!last.contains("not imported"), "{last}");
    assert_eq!(
        figure(&last, "blobs:", "copied"),
        2,
        "the late image's layer and config: {last}"
    );
    assert_eq!(
        figure(&last, "tags:", "set"),
        2,
        "late:1 and moved:v: {last}"
    );
    assert_eq!(figure(&last, "tags:", "deleted"), 1, "gone:1: {last}");
    let again = import(&work, &target);
    assert_eq!(figure(&again, "blobs:", "copied"), 0, "{again}");
    assert_eq!(figure(&again, "tags:", "set"), 0, "{again}");
    assert_eq!(figure(&again, "manifests:", "imported"), 0, "{again}");

    // This registry now serves it all.
    let log_dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_data(log_dir, &target, &[]);
    let host = server.host();
    std::fs::create_dir_all(work.join("out")).unwrap();
    for (repo, image, args) in [
        ("library/one:1", "one", &[][..]),
        ("team/shared:1", "one", &[]),
        ("team/big:1", "big", &[]),
        ("team/multi:latest", "multi", &["--all"]),
        ("team/late:1", "late", &[]),
        ("team/moved:v", "two", &[]),
    ] {
        let out = work.join("out").join(repo.replace([':', '/'], "_"));
        skopeo_copy(
            &work,
            args,
            &format!("docker://{host}/{repo}"),
            &format!("oci:{}:x", out.display()),
        );
        assert_eq!(
            layout_digest(&out, "x"),
            layout_digest(&dir, image),
            "{repo} reads back as the image pushed to distribution"
        );
    }
    let gone = command(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/team/gone:1"),
        ],
        &work,
    );
    assert!(!gone.status.success(), "the deleted tag is gone");
    let big_layer = std::fs::read_dir(work.join("out/team_big_1/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(big_layer > 12 << 20, "the 12 MiB layer came through");
}
