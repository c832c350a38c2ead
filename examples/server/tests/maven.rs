//! Debian's mvn 3.8.7 with Debian's plugins against the example server, offline (plugins from
//! `/usr/share/maven-repo`, the registry on loopback), with Basic auth as mvn sends it: a jar
//! with its pom and a sources classifier deployed and resolved with strict checksums, a refused
//! re-deploy of the release, a SNAPSHOT deployed twice resolving to the newer build, ten
//! versions deployed in parallel all in the metadata, a version range resolved by
//! `copy-dependencies`, and a project's `mvn deploy`.

mod support;

use std::path::Path;

use support::{Server, command, run, workdir};

const DEPLOY: &str = "org.apache.maven.plugins:maven-deploy-plugin:3.0.0:deploy-file";
const GET: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.5.0:get";
const COPY: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.5.0:copy";

/// The settings the interop notes describe: Debian's repository as the mirror of everything
/// external, a local repository of the test's own, and the deployer's credentials.
fn settings(work: &Path) -> String {
    let path = work.join("settings.xml");
    std::fs::write(
        &path,
        format!(
            r#"<settings xmlns="http://maven.apache.org/SETTINGS/1.2.0">
  <localRepository>{}</localRepository>
  <mirrors>
    <mirror><id>debian</id><mirrorOf>external:*</mirrorOf><url>file:///usr/share/maven-repo</url></mirror>
  </mirrors>
  <servers>
    <server><id>registry</id><username>deployer</username><password>s3cret</password></server>
  </servers>
</settings>"#,
            work.join("m2").display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// The settings of `base`, with a local repository under `dir`.
fn settings_in(dir: &Path, base: &str) -> String {
    let text = std::fs::read_to_string(base).unwrap();
    let start = text.find("<localRepository>").unwrap() + "<localRepository>".len();
    let end = text.find("</localRepository>").unwrap();
    let path = dir.join("settings.xml");
    let local = dir.join("m2");
    std::fs::write(
        &path,
        format!("{}{}{}", &text[..start], local.display(), &text[end..]),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn pom(version: &str) -> String {
    format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId>
  <artifactId>hello</artifactId>
  <version>{version}</version>
  <packaging>jar</packaging>
</project>"#
    )
}

/// A jar-shaped file of `size` bytes whose content names `label`.
fn jar(work: &Path, name: &str, label: &str, size: usize) -> String {
    let mut bytes = label.as_bytes().to_vec();
    bytes.extend((0..size).map(|i| (i * 31 % 251) as u8));
    std::fs::write(work.join(name), bytes).unwrap();
    name.to_owned()
}

fn mvn(work: &Path, settings: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["-B", "-s", settings];
    all.extend_from_slice(args);
    command("mvn", &all, work)
}

fn ok(output: std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn mvn_deploys_resolves_and_keeps_releases_immutable() {
    let (_dir, work) = workdir();
    let config = support::basic_auth_config(
        &work,
        "",
        &[(
            "deployer",
            r#"{ pattern = "releases", role = "developer" }"#,
        )],
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let url = format!("http://{}/maven/releases", server.host());
    let settings = settings(&work);
    let repository = format!("-Durl={url}");

    // A release: jar (bigger than any framework default), pom, sources classifier.
    std::fs::write(work.join("hello-1.0.0.pom"), pom("1.0.0")).unwrap();
    let main = jar(&work, "hello-1.0.0.jar", "release", 12 << 20);
    let sources = jar(&work, "hello-1.0.0-sources.jar", "sources", 1000);
    ok(
        mvn(
            &work,
            &settings,
            &[
                DEPLOY,
                &format!("-Dfile={main}"),
                "-DpomFile=hello-1.0.0.pom",
                &format!("-Dsources={sources}"),
                "-DrepositoryId=registry",
                &repository,
            ],
        ),
        "deploy-file of the release",
    );

    // Resolved with strict checksums. Debian's plugin repository has no checksums at all, so a
    // first run fetches the plugins (and the artifact) leniently; then the artifact is fetched
    // again, strictly, from the registry alone.
    let remote = format!("-DremoteRepositories=registry::default::{url}");
    ok(
        mvn(
            &work,
            &settings,
            &[GET, "-Dartifact=com.example:hello:1.0.0", &remote],
        ),
        "dependency:get of the release (fetching the plugins)",
    );
    std::fs::remove_dir_all(work.join("m2/com/example")).unwrap();
    ok(
        mvn(
            &work,
            &settings,
            &[
                "-C",
                "-U",
                GET,
                "-Dartifact=com.example:hello:1.0.0",
                &remote,
            ],
        ),
        "dependency:get of the release with strict checksums",
    );
    let fetched = work.join("m2/com/example/hello/1.0.0/hello-1.0.0.jar");
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(work.join(&main)).unwrap()
    );
    ok(
        mvn(
            &work,
            &settings,
            &[
                "-C",
                GET,
                "-Dartifact=com.example:hello:1.0.0:jar:sources",
                &remote,
            ],
        ),
        "dependency:get of the sources",
    );

    // A release cannot be deployed again.
    let other = jar(&work, "other.jar", "other", 100);
    let again = mvn(
        &work,
        &settings,
        &[
            DEPLOY,
            &format!("-Dfile={other}"),
            "-DpomFile=hello-1.0.0.pom",
            "-DrepositoryId=registry",
            &repository,
        ],
    );
    assert!(!again.status.success(), "a release re-deploy must fail");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("409"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // A SNAPSHOT deployed twice resolves to the newer build.
    std::fs::write(work.join("hello-1.1.0-SNAPSHOT.pom"), pom("1.1.0-SNAPSHOT")).unwrap();
    for build in ["first snapshot", "second snapshot"] {
        let file = jar(&work, "snapshot.jar", build, 5000);
        ok(
            mvn(
                &work,
                &settings,
                &[
                    DEPLOY,
                    &format!("-Dfile={file}"),
                    "-DpomFile=hello-1.1.0-SNAPSHOT.pom",
                    "-DrepositoryId=registry",
                    &repository,
                ],
            ),
            "deploy-file of the snapshot",
        );
        // Snapshots' timestamps have a one-second resolution.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    std::fs::write(
        work.join("pom.xml"),
        format!(
            r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId><artifactId>consumer</artifactId><version>1</version>
  <packaging>pom</packaging>
  <repositories>
    <repository><id>registry</id><url>{url}</url><snapshots><enabled>true</enabled></snapshots></repository>
  </repositories>
</project>"#
        ),
    )
    .unwrap();
    ok(
        mvn(
            &work,
            &settings,
            &[
                "-C",
                "-U",
                COPY,
                "-Dartifact=com.example:hello:1.1.0-SNAPSHOT",
                "-DoutputDirectory=out",
                "-Dmdep.useBaseVersion=true",
            ],
        ),
        "dependency:copy of the snapshot",
    );
    let copied = std::fs::read(work.join("out/hello-1.1.0-SNAPSHOT.jar")).unwrap();
    assert!(copied.starts_with(b"second snapshot"), "the newer build");

    // Ten versions deployed in parallel all reach the metadata, which a version range then
    // resolves against: [1.0,2.0) picks the highest release below 2.0.
    let deploys: Vec<_> = (1..=10)
        .map(|i| {
            let (work, settings, repository) = (work.clone(), settings.clone(), repository.clone());
            std::thread::spawn(move || {
                let version = format!("1.{i}");
                let dir = work.join(format!("v{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                // A local repository each: mvn processes do not share one safely.
                let settings = settings_in(&dir, &settings);
                std::fs::write(dir.join("pom.xml"), pom(&version)).unwrap();
                let file = jar(&dir, "hello.jar", &format!("version {version}"), 2000);
                ok(
                    mvn(
                        &dir,
                        &settings,
                        &[
                            DEPLOY,
                            &format!("-Dfile={file}"),
                            "-DpomFile=pom.xml",
                            "-DrepositoryId=registry",
                            &repository,
                        ],
                    ),
                    &format!("parallel deploy of {version}"),
                );
            })
        })
        .collect();
    for deploy in deploys {
        deploy.join().unwrap();
    }
    let ranged = work.join("ranged");
    std::fs::create_dir_all(&ranged).unwrap();
    std::fs::write(
        ranged.join("pom.xml"),
        format!(
            r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId><artifactId>ranged</artifactId><version>1</version>
  <packaging>pom</packaging>
  <repositories><repository><id>registry</id><url>{url}</url></repository></repositories>
  <dependencies>
    <dependency><groupId>com.example</groupId><artifactId>hello</artifactId><version>[1.0,2.0)</version></dependency>
  </dependencies>
  <distributionManagement>
    <repository><id>registry</id><url>{url}</url></repository>
  </distributionManagement>
</project>"#
        ),
    )
    .unwrap();
    ok(
        mvn(
            &ranged,
            &settings,
            &[
                "-U",
                "org.apache.maven.plugins:maven-dependency-plugin:3.5.0:copy-dependencies",
                "-DoutputDirectory=deps",
            ],
        ),
        "copy-dependencies with a version range",
    );
    assert!(
        ranged.join("deps/hello-1.10.jar").exists(),
        "1.10 is the highest in [1.0,2.0): {:?}",
        std::fs::read_dir(ranged.join("deps")).map(|d| d.count())
    );
    // And the project itself deploys.
    ok(
        mvn(&ranged, &settings, &["deploy"]),
        "mvn deploy of a project",
    );

    let metadata = run(
        "curl",
        &[
            "-sf",
            "-u",
            "deployer:s3cret",
            &format!("{url}/com/example/hello/maven-metadata.xml"),
        ],
        &work,
    );
    assert!(
        metadata.contains("<release>1.10</release>")
            && metadata.contains("<version>1.0.0</version>")
            && metadata.contains("<version>1.1.0-SNAPSHOT</version>"),
        "{metadata}"
    );
    for i in 1..=10 {
        assert!(
            metadata.contains(&format!("<version>1.{i}</version>")),
            "1.{i}: {metadata}"
        );
    }
    let consumer = run(
        "curl",
        &[
            "-sf",
            "-u",
            "deployer:s3cret",
            &format!("{url}/com/example/ranged/maven-metadata.xml"),
        ],
        &work,
    );
    assert!(consumer.contains("<version>1</version>"), "{consumer}");
}

/// The registry orders versions as Maven 3.8.7 itself does: its `ComparableVersion` (in
/// Debian's maven-artifact jar, which prints how it compares its arguments) judges 600
/// neighbouring pairs of generated versions, and ours must agree with every judgement.
#[test]
fn versions_order_as_mavens_own_comparable_version() {
    let (_dir, work) = workdir();
    let atoms = [
        "0", "1", "2", "10", "01", "a", "b", "m", "alpha", "beta", "rc", "cr", "snapshot",
        "SNAPSHOT", "ga", "final", "sp", "x", "abc", "M1", "RC2", "1a", "b2",
    ];
    let separators = [".", "-", ""];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let versions: Vec<String> = (0..600)
        .map(|_| {
            let mut version = ["", "", "", "-", ".", "-."][next(6)].to_owned();
            for i in 0..1 + next(5) {
                if i > 0 {
                    version.push_str(separators[next(3)]);
                }
                version.push_str(atoms[next(atoms.len())]);
            }
            version
        })
        .collect();
    let mut args = vec![
        "-cp",
        "/usr/share/java/maven-artifact-3.x.jar",
        "org.apache.maven.artifact.versioning.ComparableVersion",
    ];
    args.extend(versions.iter().map(String::as_str));
    let judged = run("java", &args, &work);
    let verdicts: Vec<&str> = judged
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some(_), Some(verdict @ ("<" | ">" | "==")), Some(_), None) => Some(verdict),
                _ => None,
            }
        })
        .collect();
    assert_eq!(verdicts.len(), versions.len() - 1, "{judged}");
    for (pair, verdict) in versions.windows(2).zip(verdicts) {
        let ours = match registry_formats::maven::version::compare(&pair[0], &pair[1]) {
            std::cmp::Ordering::Less => "<",
            std::cmp::Ordering::Equal => "==",
            std::cmp::Ordering::Greater => ">",
        };
        assert_eq!(ours, verdict, "{} vs {}", pair[0], pair[1]);
    }
}

/// mvn through a virtual repository whose members are a hosted repository and a proxy of
/// another registry instance (its hosted Maven repository): a release resolved from the
/// upstream with strict checksums, then again with the upstream stopped (from the cache); an
/// internal artifact shadows a squatter's higher version upstream; a denied version is
/// refused with the rule named in mvn's output.
#[test]
fn mvn_resolves_through_a_virtual_repository_and_from_the_cache_when_the_upstream_is_down() {
    let (_dir, work) = workdir();
    let upstream = Server::start(&[]);
    let upstream_url = format!("http://{}/maven/releases", upstream.host());
    let settings = settings(&work);
    let deploy = |group: &str, artifact: &str, version: &str, size: usize, url: &str| {
        let pom = format!(
            r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>{group}</groupId>
  <artifactId>{artifact}</artifactId>
  <version>{version}</version>
</project>"#
        );
        let pom_file = format!("{artifact}-{version}.pom");
        std::fs::write(work.join(&pom_file), pom).unwrap();
        let file = jar(&work, &format!("{artifact}-{version}.jar"), artifact, size);
        ok(
            mvn(
                &work,
                &settings,
                &[
                    DEPLOY,
                    &format!("-Dfile={file}"),
                    &format!("-DpomFile={pom_file}"),
                    "-DrepositoryId=registry",
                    &format!("-Durl={url}"),
                ],
            ),
            &format!("deploy-file of {artifact} {version}"),
        );
        file
    };
    let main = deploy("com.example", "hello", "1.0.0", 12 << 20, &upstream_url);
    deploy("com.example", "bad", "2.0", 1000, &upstream_url);
    // Someone deploys the internal artifact's coordinates upstream, with a higher version.
    deploy("com.corp", "internal", "99.0", 1000, &upstream_url);

    let config = work.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[package_repositories]]
name = "all"
format = "maven"
kind = "virtual"
members = ["corp", "central"]
publish_to = "corp"

[[package_repositories]]
name = "corp"
format = "maven"

[[package_repositories]]
name = "central"
format = "maven"
kind = "proxy"
upstream = {{ url = "{upstream_url}", timeout_seconds = 10 }}

[[firewall_rules]]
name = "no-bad"
deny = ["pkg:maven/com.example/bad@2.0"]
"#
        ),
    )
    .unwrap();
    let proxy = Server::start(&["--config", config.to_str().unwrap()]);
    let all = format!("http://{}/maven/all", proxy.host());
    // Deployed through the virtual repository: it lands in `corp`.
    deploy("com.corp", "internal", "1.0", 1000, &all);
    let remote = format!("-DremoteRepositories=all::default::{all}");
    let get = |artifact: &str, local: &str| {
        let settings = settings_in(&work.join(local), &settings);
        mvn(
            &work,
            &settings,
            &["-C", GET, &format!("-Dartifact={artifact}"), &remote],
        )
    };
    std::fs::create_dir_all(work.join("first")).unwrap();
    // The first run also fetches the plugins (from Debian's repository, which has no
    // checksums), so it is lenient; the artifact is then fetched again, strictly.
    let settings_first = settings_in(&work.join("first"), &settings);
    ok(
        mvn(
            &work,
            &settings_first,
            &[GET, "-Dartifact=com.example:hello:1.0.0", &remote],
        ),
        "dependency:get through the virtual repository (fetching the plugins)",
    );
    std::fs::remove_dir_all(work.join("first/m2/com/example")).unwrap();
    ok(
        get("com.example:hello:1.0.0", "first"),
        "dependency:get with strict checksums",
    );
    let fetched = work.join("first/m2/com/example/hello/1.0.0/hello-1.0.0.jar");
    assert!(
        std::fs::read(&fetched).unwrap() == std::fs::read(work.join(&main)).unwrap(),
        "the jar's bytes"
    );
    ok(
        get("com.corp:internal:1.0", "first"),
        "the internal artifact",
    );
    let squatted = get("com.corp:internal:99.0", "first");
    let said = String::from_utf8_lossy(&squatted.stdout);
    assert!(
        !squatted.status.success() && said.contains("Could not find artifact com.corp:internal"),
        "the upstream's version of an internal name is not served: {said}"
    );
    let denied = get("com.example:bad:2.0", "first");
    let said = String::from_utf8_lossy(&denied.stdout);
    assert!(!denied.status.success(), "{said}");
    assert!(said.contains("403") && said.contains("no-bad"), "{said}");

    // The upstream stopped: a fresh local repository resolves the release from the cache.
    drop(upstream);
    std::fs::create_dir_all(work.join("second")).unwrap();
    let settings_second = settings_in(&work.join("second"), &settings);
    // The plugins come from Debian's repository again (a fresh local repository).
    ok(
        mvn(
            &work,
            &settings_second,
            &[GET, "-Dartifact=com.example:hello:1.0.0", &remote],
        ),
        "dependency:get with the upstream stopped",
    );
    let again = work.join("second/m2/com/example/hello/1.0.0/hello-1.0.0.jar");
    assert!(std::fs::read(again).unwrap() == std::fs::read(work.join(&main)).unwrap());
}
