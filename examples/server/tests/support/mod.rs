//! Starting the example server for real-client tests, and running client commands.
// Each test binary uses part of this module, and `pub` items are shared between them.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use registry_core::Digest;
use serde_json::{Value, json};

/// A running `registry serve` on a free loopback port, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// Starts the server binary with an empty data directory and waits until `/v2/` answers.
    pub fn start(extra_args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let data = data_dir.path().join("data");
        Self::start_with_data(data_dir, &data, extra_args)
    }

    /// Starts the server keeping its data in `data` (its log stays in `log_dir`).
    pub fn start_with_data(log_dir: tempfile::TempDir, data: &Path, extra_args: &[&str]) -> Self {
        let data_dir = log_dir;
        let addr = free_port();
        let log = std::fs::File::create(data_dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data)
            .args(extra_args)
            .env("REGISTRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the registry binary");
        let server = Server {
            addr,
            data_dir,
            child,
        };
        server.wait_ready();
        server
    }

    /// Starts the server with an empty data directory and waits until it accepts connections
    /// (for servers that speak TLS, which the readiness probe does not).
    #[allow(dead_code)] // Not every test binary starts one.
    pub fn start_listening(extra_args: &[&str]) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let data = log_dir.path().join("data");
        let addr = free_port();
        let log = std::fs::File::create(log_dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(&data)
            .args(extra_args)
            .env("REGISTRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the registry binary");
        let server = Server {
            addr,
            data_dir: log_dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {addr} within 30 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // 200 when open, 401 when authentication is configured: either way it serves.
            if let Some((200 | 401, _)) = http_get(self.addr, "/v2/") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the registry did not answer on {} within 30 s: {}",
            self.addr,
            self.log()
        );
    }

    /// `host:port`, as clients name the registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap().success()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        // Only for failure messages: a log not written yet reads as empty.
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A minimal HTTP/1.1 GET: status and body, or `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    // A response without a header/body separator has no body.
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Sends one HTTP/1.1 request; returns the status, the raw header block and the body.
pub fn http_request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A server may answer (and close) before the whole request is sent: a refusal, a head over
    // its bound, a full disk. Its answer is what counts.
    let _ = write!(
        stream,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

/// Reads a whole `Connection: close` response.
pub fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut raw = Vec::new();
    // What arrived before a reset is the answer (a server closing on a body it did not read).
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// A header's value in a raw response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Runs a client command, failing the test with its output when it fails or is missing.
pub fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    let output = command(program, args, cwd);
    assert!(
        output.status.success(),
        "{program} {} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command and returns its output whatever its status; a missing program fails the test.
pub fn command(program: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed for this test (scripts/install-clients installs it): {e}")
        })
}

/// Writes `<dir>/auth.toml` configuring Basic auth: anonymous grants (TOML inline tables, may be
/// empty) and users, each `(name, grants)`, all with the password `s3cret`; returns its path.
pub fn basic_auth_config(dir: &Path, anonymous: &str, users: &[(&str, &str)]) -> PathBuf {
    let hash = registry_http::auth::hash_password("s3cret").unwrap();
    let mut text = format!("[auth]\nmode = \"basic\"\nanonymous = [{anonymous}]\n");
    for (name, grants) in users {
        text.push_str(&format!(
            "\n[auth.users.{name}]\npassword_hash = \"{hash}\"\ngrants = [{grants}]\n"
        ));
    }
    let path = dir.join("auth.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A scratch directory for a client's files.
pub fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}

const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An OCI image layout written by a test: images with one gzip layer each, optionally named,
/// and multi-arch indexes over them.
pub struct Layout {
    dir: std::path::PathBuf,
    index: Vec<Value>,
}

impl Layout {
    pub fn new(dir: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir,
            index: Vec::new(),
        }
    }

    pub fn blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        digest
    }

    /// Adds an image with one layer; returns its manifest descriptor.
    /// `layer` is the gzip-compressed tar; `diff_id` the digest of the tar inside.
    pub fn image(&mut self, name: Option<&str>, arch: &str, layer: &(Vec<u8>, Digest)) -> Value {
        self.annotated_image(name, arch, layer, json!({}))
    }

    /// Like [`Layout::image`], with the manifest's `annotations`.
    pub fn annotated_image(
        &mut self,
        name: Option<&str>,
        arch: &str,
        (layer, diff_id): &(Vec<u8>, Digest),
        annotations: Value,
    ) -> Value {
        let layer_digest = self.blob(layer);
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        })
        .to_string();
        let config_digest = self.blob(config.as_bytes());
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": LAYER_TAR_GZIP, "digest": layer_digest, "size": layer.len() }],
        });
        if annotations.as_object().is_some_and(|a| !a.is_empty()) {
            manifest["annotations"] = annotations;
        }
        let manifest = manifest.to_string();
        let digest = self.blob(manifest.as_bytes());
        let descriptor = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest.len(),
            "platform": { "architecture": arch, "os": "linux" },
        });
        if let Some(name) = name {
            let mut named = descriptor.clone();
            named["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
            self.index.push(named);
        }
        descriptor
    }

    pub fn multi_arch(&mut self, name: &str, children: Vec<Value>) {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        })
        .to_string();
        let digest = self.blob(index.as_bytes());
        self.index.push(json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
            "annotations": { "org.opencontainers.image.ref.name": name },
        }));
    }

    pub fn finish(self) {
        let index = json!({ "schemaVersion": 2, "manifests": self.index });
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// A gzip-compressed tar archive holding one file, and the digest of the tar (its diff id).
pub fn tar_layer(name: &str, contents: &[u8]) -> (Vec<u8>, Digest) {
    let tar = tar_archive(name, contents);
    let diff_id = Digest::sha256(&tar);
    // Stored blocks for big layers: valid gzip, fast to make.
    let level = if tar.len() > 1 << 20 {
        flate2::Compression::none()
    } else {
        flate2::Compression::fast()
    };
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), level);
    std::io::Write::write_all(&mut gzip, &tar).unwrap();
    (gzip.finish().unwrap(), diff_id)
}

fn tar_archive(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, contents).unwrap();
    builder.into_inner().unwrap()
}

/// The manifest digest a layout's index.json names `name`.
pub fn layout_digest(dir: &Path, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// podman's arguments for storage under `storage`, needing no system configuration or daemon.
pub fn podman_args(storage: &Path, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = [
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]
    .map(str::to_owned)
    .to_vec();
    all.extend([
        "--root".to_owned(),
        storage.join("root").display().to_string(),
    ]);
    all.extend([
        "--runroot".to_owned(),
        storage.join("run").display().to_string(),
    ]);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

/// Runs podman, failing the test when it fails.
pub fn podman(storage: &Path, args: &[&str], cwd: &Path) -> String {
    let all = podman_args(storage, args);
    run(
        "podman",
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
        cwd,
    )
}

/// The distribution registry, stopped when dropped.
pub struct Distribution {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Distribution {
    /// Starts distribution on a free port, storing under `<work>/distribution` (its
    /// filesystem driver's root directory), with deletes enabled.
    pub fn start(work: &Path) -> Distribution {
        let addr = free_port();
        let config = work.join("distribution.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                work.join("distribution").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed (scripts/install-clients installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(addr, "/v2/").is_none_or(|(status, _)| status != 200) {
            assert!(Instant::now() < deadline, "distribution did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Distribution { child, addr }
    }
}
