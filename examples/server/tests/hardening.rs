//! The server binary under hostile clients and faults: password floods, anonymous and oversized
//! bodies, slow and idle connections, a full disk. Memory is read from `/proc/<pid>/status`
//! (`VmHWM`, the peak resident size), so the bounds hold over the whole run.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use support::{Server, header, http_request, workdir};

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A Basic-auth configuration with user alice (password `s3cret`, developer on `js` and
/// `team/*`) and the given extra TOML.
fn config(dir: &Path, extra: &str) -> String {
    let hash = registry_http::auth::hash_password("s3cret").unwrap();
    let text = format!(
        "{extra}\n[auth]\nmode = \"basic\"\n\n[auth.users.alice]\npassword_hash = \"{hash}\"\n\
         grants = [{{ pattern = \"js\", role = \"developer\" }}, {{ pattern = \"team/*\", role = \"developer\" }}]\n"
    );
    let path = dir.join("hardening.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Sends `request` on `connections` connections at once, each looping until `until` or until
/// `per_connection` requests; returns the count of each status.
fn flood(
    addr: SocketAddr,
    request: impl Fn(usize) -> String + Send + Sync + 'static,
    connections: usize,
    per_connection: usize,
    until: Instant,
) -> std::collections::BTreeMap<u16, usize> {
    let request = Arc::new(request);
    let counter = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let request = Arc::clone(&request);
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for _ in 0..per_connection {
                    if Instant::now() >= until {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut stream) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    if stream.write_all(request(n).as_bytes()).is_err() {
                        continue;
                    }
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                    let status = String::from_utf8_lossy(&answer)
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for thread in threads {
        for status in thread.join().unwrap() {
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    counts
}

fn get_with_basic(addr: SocketAddr, path: &str, credentials: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {credentials}\r\n\
         Connection: close\r\n\r\n"
    )
}

/// A flood of wrong passwords (300 connections, as `wrk -c300` sends them) keeps memory
/// bounded: argon2 runs at most once per core at a time, concurrent checks of the same
/// credentials share one run, and the excess is refused at once with 429 and Retry-After.
#[test]
fn password_floods_keep_memory_bounded() {
    let (_dir, work) = workdir();
    // The per-address throttle is set out of the way here, so the flood reaches the password
    // checks themselves (the next test shows the throttle).
    let config = config(&work, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[auth]\nmode = \"basic\"\n",
        "[auth]\nmode = \"basic\"\nfailures_per_address = 1000000\nfailures_per_user = 1000000\n",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&["--config", &config]);
    let addr = server.addr;
    let before = server.memory_kib("VmRSS");

    // Every request a different unknown user and password: nothing is shared, nothing cached.
    let until = Instant::now() + Duration::from_secs(8);
    let distinct = flood(
        addr,
        move |n| {
            get_with_basic(
                addr,
                "/v2/",
                &basic(&format!("user{n}"), &format!("guess{n}")),
            )
        },
        300,
        20,
        until,
    );
    // The same wrong password for alice, as the flood in the report sent it.
    let until = Instant::now() + Duration::from_secs(8);
    let same = flood(
        addr,
        move |_| get_with_basic(addr, "/v2/", &basic("alice", "wrong")),
        300,
        20,
        until,
    );
    let peak = server.memory_kib("VmHWM");
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "password flood: distinct {distinct:?}, same {same:?}; RSS {} MiB before, peak {} MiB \
         (growth {growth_mib} MiB)",
        before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 256,
        "RSS grew {growth_mib} MiB under the flood: {distinct:?} {same:?}"
    );
    assert!(
        distinct.get(&429).copied().unwrap_or(0) > 0,
        "the excess is refused: {distinct:?}"
    );
    assert!(
        distinct.keys().all(|s| [401, 429].contains(s)),
        "only refusals: {distinct:?}"
    );
    assert!(
        same.keys().all(|s| [401, 429].contains(s)),
        "only refusals: {same:?}"
    );
    // The server still answers, and alice's right password works once her failures are over
    // (her throttle is off in this configuration).
    let (status, head, _) = http_request(
        addr,
        &format!(
            "GET /v2/ HTTP/1.1\r\nAuthorization: Basic {}",
            basic("alice", "s3cret")
        ),
        b"",
    );
    assert_eq!(status, 200, "{head}");
}

/// Repeated failures are slowed down per client address and per user: after the free
/// failures, attempts get 429 with Retry-After without any password check.
#[test]
fn repeated_failures_are_throttled_per_address_and_user() {
    let (_dir, work) = workdir();
    let config = config(&work, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[auth]\nmode = \"basic\"\n",
        "[auth]\nmode = \"basic\"\nfailures_per_address = 4\nfailures_per_user = 1\n\
         failure_delay_seconds = 120\n",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&["--config", &config]);
    let addr = server.addr;
    let attempt = |user: &str, password: &str| {
        let (status, head, body) = http_request(
            addr,
            &format!(
                "GET /v2/ HTTP/1.1\r\nAuthorization: Basic {}",
                basic(user, password)
            ),
            b"",
        );
        (status, head, String::from_utf8_lossy(&body).into_owned())
    };
    // Per user: one free failure, then alice is closed for a while.
    assert_eq!(attempt("alice", "one").0, 401);
    assert_eq!(attempt("alice", "two").0, 401);
    let (status, head, body) = attempt("alice", "three");
    assert_eq!(status, 429, "{head}");
    assert!(header(&head, "retry-after").is_some(), "{head}");
    assert!(body.contains("TOOMANYREQUESTS"), "{body}");
    assert!(
        body.contains("wrong passwords for this user name"),
        "{body}"
    );
    // An unknown name is throttled the same way, so a 429 does not tell who exists.
    assert_eq!(attempt("ghost", "one").0, 401);
    assert_eq!(attempt("ghost", "two").0, 401);
    assert_eq!(attempt("ghost", "three").0, 429);
    // Per address: four free failures (alice's and ghost's two each count), then every
    // attempt with credentials from this address is refused before any check.
    assert_eq!(attempt("nobody", "x").0, 401);
    let (status, head, body) = attempt("nobody", "y");
    assert_eq!(status, 429, "{head}");
    assert!(body.contains("failed logins from 127.0.0.1"), "{body}");
    let (status, head, body) = http_request(
        addr,
        &format!(
            "GET /npm/js/left-pad HTTP/1.1\r\nAuthorization: Basic {}",
            basic("nobody", "x")
        ),
        b"",
    );
    assert_eq!(status, 429, "{head}");
    assert!(header(&head, "retry-after").is_some(), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("\"error\""),
        "npm's own error format: {}",
        String::from_utf8_lossy(&body)
    );
    // Requests without credentials are not throttled.
    assert_eq!(support::http_get(addr, "/v2/").unwrap().0, 401);
    // npm's login carries its password in the body: throttled all the same.
    let (status, head, _) = http_request(
        addr,
        "PUT /npm/js/-/user/org.couchdb.user:alice HTTP/1.1\r\nContent-Type: application/json",
        br#"{"name":"alice","password":"s3cret"}"#,
    );
    assert_eq!(status, 429, "{head}");
}

/// Writes a request head and then up to `body_bytes` bytes of body in 1 MiB writes, stopping
/// as soon as the server answers or closes; returns the status and how much was sent.
fn send_large_body(addr: SocketAddr, head: &str, body_bytes: u64) -> (u16, u64) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    write!(
        stream,
        "{head}\r\nHost: {addr}\r\nContent-Length: {body_bytes}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    let mut answer = Vec::new();
    while sent < body_bytes {
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        let n = chunk.len().min((body_bytes - sent) as usize);
        if stream.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    answer.extend_from_slice(&rest);
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, sent)
}

/// An anonymous 400 MB npm publish on a Basic-auth server is answered 401 before its body is
/// read; so is every other route that takes a body. Publish documents, which npm forces the
/// registry to buffer, are bounded across concurrent requests by `max_buffered_bytes`.
#[test]
fn bodies_are_refused_before_they_are_read_and_buffering_is_bounded() {
    let (_dir, work) = workdir();
    let config = config(&work, "[limits]\nmax_buffered_bytes = 67108864\n");
    let server = Server::start(&["--config", &config]);
    let addr = server.addr;
    let before = server.memory_kib("VmRSS");

    let (status, sent) = send_large_body(
        addr,
        "PUT /npm/js/x HTTP/1.1\r\nContent-Type: application/json",
        400_000_000,
    );
    assert_eq!(status, 401, "anonymous publish");
    assert!(
        sent < 400_000_000,
        "the server answered before the body was sent"
    );
    for head in [
        "POST /pypi/py/ HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x",
        "PUT /generic/files/tool/1.0/big.bin HTTP/1.1",
        "PUT /nuget/nu/api/v2/package HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x",
        "PUT /maven/mvn/com/example/a/1.0/a-1.0.jar HTTP/1.1",
        "POST /v2/team/app/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1",
        "PUT /api/v1/tag-rules/r HTTP/1.1\r\nContent-Type: application/json",
        "PUT /api/v1/package-repositories/js HTTP/1.1\r\nContent-Type: application/json",
        "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json",
    ] {
        let (status, sent) = send_large_body(addr, head, 200_000_000);
        assert_eq!(status, 401, "{head}");
        assert!(
            sent < 200_000_000,
            "{head}: answered before the body was sent"
        );
    }
    let anonymous_peak = server.memory_kib("VmHWM");

    // Authorized publishes of 40 MB each, six at once, within a 64 MiB budget: at most one is
    // buffered at a time; the others are refused at once with 429 (not queued in memory).
    let credentials = basic("alice", "s3cret");
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            let head = format!(
                "PUT /npm/js/big HTTP/1.1\r\nContent-Type: application/json\r\n\
                 Authorization: Basic {credentials}"
            );
            std::thread::spawn(move || send_large_body(addr, &head, 40_000_000).0)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let peak = server.memory_kib("VmHWM");
    println!(
        "bodies: RSS {} MiB before, peak {} MiB after the anonymous bodies, {} MiB after six \
         40 MB publishes in a 64 MiB budget (statuses {statuses:?})",
        before / 1024,
        anonymous_peak / 1024,
        peak / 1024
    );
    assert!(
        (anonymous_peak - before) / 1024 < 64,
        "anonymous bodies grew RSS by {} MiB",
        (anonymous_peak - before) / 1024
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [400, 429].contains(s)),
        "garbage documents are refused, the excess is told to retry: {statuses:?}"
    );
    assert!(
        (peak - before) / 1024 < 256,
        "buffered publishes grew RSS by {} MiB",
        (peak - before) / 1024
    );
}

/// Slowloris connections (a header line every half second), idle connections and stalled
/// bodies are closed by the timeouts; a slow but steady upload is not.
#[test]
fn slow_and_idle_connections_are_closed() {
    let (_dir, work) = workdir();
    let config_path = work.join("timeouts.toml");
    std::fs::write(
        &config_path,
        "[server]\nheader_read_timeout_seconds = 2\nidle_timeout_seconds = 3\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config_path.to_str().unwrap()]);
    let addr = server.addr;

    // 48 slowloris connections and 4 idle ones, all at once.
    let started = Instant::now();
    let slowloris: Vec<_> = (0..48)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let _ = write!(stream, "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n");
                // Bounded: 60 lines at most, one every half second.
                for line in 0..60 {
                    std::thread::sleep(Duration::from_millis(500));
                    if write!(stream, "X-Slow-{i}-{line}: 1\r\n").is_err() {
                        return true;
                    }
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
                    let mut byte = [0u8; 1];
                    match stream.read(&mut byte) {
                        Ok(0) => return true,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        _ => return true,
                    }
                }
                false
            })
        })
        .collect();
    let idle: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut byte = [0u8; 1];
                // Closed: end of stream or a reset, not the client's own read timeout.
                match stream.read(&mut byte) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                }
            })
        })
        .collect();
    // A body that stops after 10 of its 1,000 bytes.
    let stalled = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "PUT /generic/files/tool/1.0/stalled.bin HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Length: 1000\r\n\r\n0123456789"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the stalled connection was still open after 30 s")
            }
            _ => String::from_utf8_lossy(&answer).into_owned(),
        }
    });
    // A slow but steady upload: a byte every second for 6 s, longer than either timeout.
    let steady = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "PUT /generic/files/tool/1.0/steady.bin HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Length: 6\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        for byte in b"steady" {
            std::thread::sleep(Duration::from_secs(1));
            stream.write_all(&[*byte]).unwrap();
        }
        support::read_response(&mut stream).0
    });

    let closed = slowloris
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|c| *c)
        .count();
    let idle_closed = idle
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|c| *c)
        .count();
    let stalled = stalled.join().unwrap();
    let steady = steady.join().unwrap();
    println!(
        "timeouts: {closed}/48 slowloris and {idle_closed}/4 idle connections closed, stalled body \
         answered {:?}, steady upload {steady}, after {:.1} s",
        stalled.lines().next(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(closed, 48, "every slowloris connection is closed");
    assert_eq!(idle_closed, 4, "every idle connection is closed");
    assert!(
        !stalled.starts_with("HTTP/1.1 201"),
        "a stalled body publishes nothing: {stalled}"
    );
    assert_eq!(steady, 201, "a slow but steady upload passes");
    let (status, _) = support::http_get(addr, "/generic/files/tool/1.0/stalled.bin").unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        support::http_get(addr, "/v2/").unwrap().0,
        200,
        "still serving"
    );
    // A head over max_header_bytes (64 KiB by default) is refused, not buffered: 431, or a reset
    // when the refusal races the rest of the head; never served.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let mut answer = Vec::new();
    let ended = match stream.read_to_end(&mut answer) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(ended, "the connection is closed");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}
