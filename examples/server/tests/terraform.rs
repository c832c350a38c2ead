//! terraform against the example server's module registry, over plain HTTP with a CLI
//! configuration `host` block and an access token in its `credentials` block: modules uploaded
//! in three versions, `terraform init` choosing by a version constraint (`~> 1.0` → 1.1.0), the
//! archive fetched through the signed URL terraform's downloader gets (it sends no credentials),
//! and `terraform apply` showing the module's output. A wrong token fails `init`. Then over
//! HTTPS with a self-signed certificate the server is configured with: discovery through
//! `/.well-known/terraform.json`, the module addressed as `127.0.0.1:<port>/…`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Server, http_request, workdir};

/// terraform: on the PATH (`/usr/local/bin/terraform` where the machine has it), or as
/// `scripts/install-clients` installs it from PyPI.
fn terraform_bin() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/terraform/bin/terraform");
    if Command::new("terraform").arg("version").output().is_ok() {
        PathBuf::from("terraform")
    } else {
        assert!(
            local.exists(),
            "terraform must be installed for this test (scripts/install-clients installs it)"
        );
        local
    }
}

fn terraform(work: &Path, config: &Path, args: &[&str]) -> Output {
    terraform_with(work, config, args, None)
}

/// Runs terraform, trusting `ca` (a PEM file) when given.
fn terraform_with(work: &Path, config: &Path, args: &[&str], ca: Option<&Path>) -> Output {
    let mut command = Command::new(terraform_bin());
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    command
        .args(args)
        .current_dir(work)
        .env("HOME", work)
        .env("TF_CLI_CONFIG_FILE", config)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("terraform runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn basic(user: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:s3cret"))
}

/// Bytes gzip cannot shrink (a linear congruential sequence), so archives carry their size.
fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// The size of the data file every module and provider carries: bigger than any framework's
/// default body limit.
const PAYLOAD: usize = 6 << 20;

/// A module archive whose output names its version, with a data file of [`PAYLOAD`] bytes.
fn module(version: &str) -> Vec<u8> {
    let main = format!(
        "variable \"name\" {{\n  type = string\n}}\n\n\
         output \"greeting\" {{\n  value = \"hello ${{var.name}} from module {version}\"\n}}\n"
    );
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(main.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "main.tf", main.as_bytes())
        .unwrap();
    let data = payload(PAYLOAD);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "files/payload.bin", &data[..])
        .unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
    gzip.finish().unwrap()
}

fn token(server: &Server, user: &str) -> String {
    let (status, _, answer) = http_request(
        server.addr,
        &format!(
            "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Basic {}",
            basic(user)
        ),
        br#"{"label":"terraform","scopes":[{"repositories":"infra","access":"read"}]}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

fn cli_config(work: &Path, server: &Server, token: &str) -> PathBuf {
    let path = work.join(format!("terraform-{}.tfrc", &token[..token.len().min(12)]));
    std::fs::write(
        &path,
        format!(
            "host \"registry.test\" {{\n  services = {{\n    \"modules.v1\" = \"http://{}/terraform/modules/v1/\"\n  }}\n}}\n\
             credentials \"registry.test\" {{\n  token = \"{token}\"\n}}\n",
            server.host()
        ),
    )
    .unwrap();
    path
}

#[test]
fn terraform_installs_a_module_by_version_constraint() {
    let (_dir, work) = workdir();
    let auth = support::basic_auth_config(
        &work,
        "",
        &[("ops", r#"{ pattern = "infra", role = "maintainer" }"#)],
    );
    let server = Server::start(&["--config", auth.to_str().unwrap()]);
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        let (status, _, body) = http_request(
            server.addr,
            &format!(
                "PUT /terraform/modules/v1/infra/hello/local/{version}/file HTTP/1.1\r\nAuthorization: Basic {}",
                basic("ops")
            ),
            &module(version),
        );
        assert_eq!(status, 201, "{version}: {}", String::from_utf8_lossy(&body));
    }

    let project = work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("main.tf"),
        "module \"hello\" {\n  source  = \"registry.test/infra/hello/local\"\n  version = \"~> 1.0\"\n  name    = \"registry\"\n}\n\n\
         output \"greeting\" {\n  value = module.hello.greeting\n}\n",
    )
    .unwrap();

    // A token that is no token: init fails, naming the registry's refusal.
    let wrong = cli_config(
        &work,
        &server,
        "rgt_0000000000000000000000000000000000000000000000000000000000000000",
    );
    let refused = terraform(&project, &wrong, &["init", "-no-color", "-input=false"]);
    assert!(!refused.status.success(), "{}", text(&refused));

    let good = cli_config(&work, &server, &token(&server, "ops"));
    let init = terraform(&project, &good, &["init", "-no-color", "-input=false"]);
    assert!(init.status.success(), "init: {}", text(&init));
    assert!(
        text(&init).contains("registry.test/infra/hello/local 1.1.0"),
        "{}",
        text(&init)
    );
    let apply = terraform(
        &project,
        &good,
        &["apply", "-auto-approve", "-no-color", "-input=false"],
    );
    assert!(apply.status.success(), "apply: {}", text(&apply));
    let output = terraform(&project, &good, &["output", "-raw", "greeting"]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello registry from module 1.1.0"
    );
    let installed =
        std::fs::read(project.join(".terraform/modules/hello/files/payload.bin")).unwrap();
    assert_eq!(
        installed,
        payload(PAYLOAD),
        "the module's data file arrived whole"
    );
}

#[test]
fn terraform_installs_a_module_over_https() {
    let (_dir, work) = workdir();
    let (cert, key) = (work.join("cert.pem"), work.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed for this test (scripts/install-clients installs it)");
    assert!(made.status.success(), "{}", text(&made));
    let auth = support::basic_auth_config(
        &work,
        "",
        &[("ops", r#"{ pattern = "infra", role = "maintainer" }"#)],
    );
    let mut config = std::fs::read_to_string(&auth).unwrap();
    config = format!(
        "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n\n\
         [server]\ntls_handshake_timeout_seconds = 1\nheader_read_timeout_seconds = 600\n\n{config}",
        cert.display(),
        key.display()
    );
    std::fs::write(&auth, config).unwrap();
    let server = Server::start_listening(&["--config", auth.to_str().unwrap()]);
    let base = format!("https://{}", server.host());

    // A client that never finishes its handshake is let go on the handshake's own bound, long
    // before the header timeout would.
    let mut silent = std::net::TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let ended = std::io::Read::read(&mut silent, &mut [0u8; 16]);
    assert!(
        matches!(&ended, Ok(0))
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{ended:?}"
    );

    // Uploaded with curl over HTTPS, trusting the certificate.
    for version in ["1.0.0", "1.1.0"] {
        let archive = work.join(format!("hello-{version}.tar.gz"));
        std::fs::write(&archive, module(version)).unwrap();
        let upload = Command::new("curl")
            .args(["-sS", "-f", "--cacert"])
            .arg(&cert)
            .args(["-u", "ops:s3cret", "-T"])
            .arg(&archive)
            .arg(format!(
                "{base}/terraform/modules/v1/infra/hello/local/{version}/file"
            ))
            .output()
            .expect("curl must be installed for this test");
        assert!(upload.status.success(), "{}", text(&upload));
    }
    let token = {
        let minted = Command::new("curl")
            .args(["-sS", "-f", "--cacert"])
            .arg(&cert)
            .args([
                "-u",
                "ops:s3cret",
                "-H",
                "Content-Type: application/json",
                "-d",
            ])
            .arg(r#"{"label":"tf","scopes":[{"repositories":"infra","access":"read"}]}"#)
            .arg(format!("{base}/api/v1/tokens"))
            .output()
            .unwrap();
        assert!(minted.status.success(), "{}", text(&minted));
        let answer: serde_json::Value = serde_json::from_slice(&minted.stdout).unwrap();
        answer["token"].as_str().unwrap().to_owned()
    };
    let cli = work.join("https.tfrc");
    std::fs::write(
        &cli,
        format!(
            "credentials \"{}\" {{\n  token = \"{token}\"\n}}\n",
            server.host()
        ),
    )
    .unwrap();
    let project = work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("main.tf"),
        format!(
            "module \"hello\" {{\n  source  = \"{}/infra/hello/local\"\n  version = \">= 1.0.0\"\n  name    = \"tls\"\n}}\n\n\
             output \"greeting\" {{\n  value = module.hello.greeting\n}}\n",
            server.host()
        ),
    )
    .unwrap();
    // Without trusting the certificate, discovery fails on it.
    let untrusted = terraform_with(&project, &cli, &["init", "-no-color", "-input=false"], None);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    assert!(
        text(&untrusted).contains("certificate"),
        "{}",
        text(&untrusted)
    );
    let init = terraform_with(
        &project,
        &cli,
        &["init", "-no-color", "-input=false"],
        Some(&cert),
    );
    assert!(init.status.success(), "init: {}", text(&init));
    let apply = terraform_with(
        &project,
        &cli,
        &["apply", "-auto-approve", "-no-color", "-input=false"],
        Some(&cert),
    );
    assert!(apply.status.success(), "apply: {}", text(&apply));
    let output = terraform_with(&project, &cli, &["output", "-raw", "greeting"], Some(&cert));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello tls from module 1.1.0"
    );
}

/// Runs gpg in its own home; returns its standard output.
fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .output()
        .expect("gpg must be installed for this test (scripts/install-clients installs it)");
    assert!(output.status.success(), "gpg {args:?}: {}", text(&output));
    output.stdout
}

/// This machine's platform as Terraform names it.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// A provider release as providers publish it, in `dir`: this platform's zip, SHA256SUMS and
/// its detached signature by `key`; returns the files' names.
fn provider_release(
    dir: &Path,
    gnupg: &Path,
    key: &str,
    version: &str,
    sign_for: &str,
) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let zip_name = format!("terraform-provider-hello_{version}_{}.zip", platform());
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            format!("terraform-provider-hello_v{version}"),
            zip::write::SimpleFileOptions::default().unix_permissions(0o755),
        )
        .unwrap();
    std::io::Write::write_all(
        &mut writer,
        format!("#!/bin/sh\necho {version}\n").as_bytes(),
    )
    .unwrap();
    writer
        .start_file("payload.bin", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut writer, &payload(PAYLOAD)).unwrap();
    let zip = writer.finish().unwrap().into_inner();
    std::fs::write(dir.join(&zip_name), &zip).unwrap();
    let sums_name = format!("terraform-provider-hello_{version}_SHA256SUMS");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&zip));
    std::fs::write(dir.join(&sums_name), format!("{digest}  {zip_name}\n")).unwrap();
    // The signature is made over `sign_for`'s sums (another release's, to forge one).
    let signed = dir.join(format!("signed-{sign_for}"));
    std::fs::copy(dir.join(&sums_name), &signed).unwrap();
    if sign_for != version {
        std::fs::write(&signed, format!("{digest}  other.zip\n")).unwrap();
    }
    let signature = format!("{sums_name}.sig");
    gpg(
        gnupg,
        &[
            "--local-user",
            key,
            "--detach-sign",
            "--output",
            dir.join(&signature).to_str().unwrap(),
            signed.to_str().unwrap(),
        ],
    );
    std::fs::write(
        dir.join("signing-key.asc"),
        gpg(gnupg, &["--armor", "--export", key]),
    )
    .unwrap();
    vec![zip_name, sums_name, signature, "signing-key.asc".into()]
}

#[test]
fn terraform_installs_a_provider_we_serve() {
    let (_dir, work) = workdir();
    let auth = support::basic_auth_config(
        &work,
        "",
        &[("ops", r#"{ pattern = "infra", role = "maintainer" }"#)],
    );
    let server = Server::start(&["--config", auth.to_str().unwrap()]);

    // The publisher's key: RSA, which every terraform reads.
    let gnupg = work.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg(
        &gnupg,
        &[
            "--quick-generate-key",
            "Provider Publisher <publisher@example.test>",
            "rsa2048",
            "sign",
            "never",
        ],
    );
    let listing = String::from_utf8(gpg(&gnupg, &["--with-colons", "--list-keys"])).unwrap();
    let key_id = listing
        .lines()
        .find(|l| l.starts_with("pub:"))
        .and_then(|l| l.split(':').nth(4))
        .unwrap()
        .to_owned();

    // 1.0.0 signed properly; 1.1.0 carrying a signature over other sums.
    for (version, sign_for) in [("1.0.0", "1.0.0"), ("1.1.0", "forged")] {
        let dir = work.join(format!("release-{version}"));
        for file in provider_release(&dir, &gnupg, &key_id, version, sign_for) {
            let (status, _, body) = http_request(
                server.addr,
                &format!(
                    "PUT /terraform/providers/v1/infra/hello/{version}/{file} HTTP/1.1\r\nAuthorization: Basic {}",
                    basic("ops")
                ),
                &std::fs::read(dir.join(&file)).unwrap(),
            );
            assert_eq!(status, 201, "{file}: {}", String::from_utf8_lossy(&body));
        }
    }
    // The download document names the key gpg made.
    let (status, _, body) = http_request(
        server.addr,
        &format!(
            "GET /terraform/providers/v1/infra/hello/1.0.0/download/{} HTTP/1.1\r\nAuthorization: Basic {}",
            platform().replace('_', "/"),
            basic("ops")
        ),
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let document: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        document["signing_keys"]["gpg_public_keys"][0]["key_id"],
        key_id
    );

    let cli = work.join("providers.tfrc");
    std::fs::write(
        &cli,
        format!(
            "host \"registry.test\" {{\n  services = {{\n    \"providers.v1\" = \"http://{}/terraform/providers/v1/\"\n  }}\n}}\n\
             credentials \"registry.test\" {{\n  token = \"{}\"\n}}\n",
            server.host(),
            token(&server, "ops")
        ),
    )
    .unwrap();
    let project = work.join("provider-project");
    std::fs::create_dir_all(&project).unwrap();
    let write_main = |constraint: &str| {
        std::fs::write(
            project.join("main.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    hello = {{\n      source  = \"registry.test/infra/hello\"\n      version = \"{constraint}\"\n    }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
    };
    write_main("~> 1.0.0");
    let init = terraform(&project, &cli, &["init", "-no-color", "-input=false"]);
    assert!(init.status.success(), "init: {}", text(&init));
    assert!(
        text(&init).contains("Installed registry.test/infra/hello v1.0.0")
            && text(&init).contains(&key_id),
        "{}",
        text(&init)
    );
    let lock = std::fs::read_to_string(project.join(".terraform.lock.hcl")).unwrap();
    assert!(lock.contains("registry.test/infra/hello"), "{lock}");
    assert!(
        project
            .join(format!(".terraform/providers/registry.test/infra/hello/1.0.0/{}/terraform-provider-hello_v1.0.0", platform()))
            .exists()
    );
    let installed = std::fs::read(project.join(format!(
        ".terraform/providers/registry.test/infra/hello/1.0.0/{}/payload.bin",
        platform()
    )))
    .unwrap();
    assert_eq!(installed.len(), PAYLOAD, "the provider's zip arrived whole");

    // The forged release is served as uploaded, and terraform refuses it.
    write_main("1.1.0");
    let refused = terraform(
        &project,
        &cli,
        &["init", "-upgrade", "-no-color", "-input=false"],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).to_lowercase().contains("signature"),
        "{}",
        text(&refused)
    );
}
