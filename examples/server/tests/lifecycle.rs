//! The server over real sockets: graceful shutdown lets an in-flight upload finish, and a client
//! that disconnects mid-upload leaves nothing half-written while the server keeps serving.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use registry_core::Digest;
use support::{Server, header, http_get, http_request, read_response};

const CHUNK: usize = 2 << 20;

fn start_upload(server: &Server, repository: &str) -> String {
    let (status, head, _) = http_request(
        server.addr,
        &format!("POST /v2/{repository}/blobs/uploads/ HTTP/1.1"),
        b"",
    );
    assert_eq!(status, 202, "{head}");
    header(&head, "location").unwrap().to_owned()
}

/// Opens a PATCH of `CHUNK` bytes and sends only the first half.
fn half_sent_patch(server: &Server, location: &str, data: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 0-{}\r\nContent-Length: {CHUNK}\r\nConnection: close\r\n\r\n",
        server.addr,
        CHUNK - 1
    )
    .unwrap();
    stream.write_all(&data[..CHUNK / 2]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream
}

#[test]
fn shutdown_lets_an_in_flight_upload_finish() {
    let mut server = Server::start(&[]);
    let data: Vec<u8> = (0..CHUNK).map(|i| (i % 253) as u8).collect();
    let location = start_upload(&server, "lifecycle/app");
    let mut stream = half_sent_patch(&server, &location, &data);

    let addr = server.addr;
    let terminating = std::thread::spawn(move || server.terminate());
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&data[CHUNK / 2..]).unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 202, "the chunk in flight completes: {head}");
    assert_eq!(header(&head, "range"), Some(&*format!("0-{}", CHUNK - 1)));
    assert!(
        terminating.join().unwrap(),
        "the server exits cleanly after finishing"
    );
    assert!(
        http_get(addr, "/v2/").is_none(),
        "and then accepts no more connections"
    );
}

#[test]
fn a_client_disconnecting_mid_upload_leaves_nothing() {
    let server = Server::start(&[]);
    let data: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();

    // A chunk cut short: the session keeps nothing of it.
    let location = start_upload(&server, "lifecycle/cut");
    drop(half_sent_patch(&server, &location, &data));
    std::thread::sleep(Duration::from_millis(300));
    let (status, head, _) = http_request(server.addr, &format!("GET {location} HTTP/1.1"), b"");
    assert_eq!(status, 204, "{head}");
    assert_eq!(
        header(&head, "range"),
        Some("0-0"),
        "nothing of the cut chunk was kept"
    );

    // A monolithic upload cut short: no blob appears.
    let digest = Digest::sha256(&data);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST /v2/lifecycle/cut/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {}\r\n\
         Content-Length: {CHUNK}\r\n\r\n",
        server.addr
    )
    .unwrap();
    stream.write_all(&data[..1000]).unwrap();
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, _) = http_request(
        server.addr,
        &format!("HEAD /v2/lifecycle/cut/blobs/{digest} HTTP/1.1"),
        b"",
    );
    assert_eq!(status, 404);

    // The server still serves, and the same upload then succeeds.
    let (status, _, _) = http_request(server.addr, &format!("PATCH {location} HTTP/1.1"), &data);
    assert_eq!(status, 202);
    let (status, head, _) = http_request(
        server.addr,
        &format!("PUT {location}?digest={digest} HTTP/1.1"),
        b"",
    );
    assert_eq!(status, 201, "{head}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn migrate_brings_a_new_database_up_to_date_and_is_idempotent() {
    let (_dir, work) = support::workdir();
    let data = work.join("fresh");
    let args = ["migrate", "--data-dir", data.to_str().unwrap()];
    let first = support::run(env!("CARGO_BIN_EXE_registry"), &args, &work);
    // The newest migration of either phase (post-deployment ones are numbered from 1001).
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crates/registry-storage/migrations/sqlite"
    );
    let newest = [dir.to_owned(), format!("{dir}/post")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.split('_').next()?.parse::<u32>().ok()
        })
        .max()
        .unwrap();
    assert_eq!(
        first.lines().next().unwrap(),
        format!("metadata database schema is at migration {newest}")
    );
    assert!(!first.contains("pending"), "{first}");
    assert!(
        first.contains("background migration manifest_total_size: finished"),
        "{first}"
    );
    assert!(data.join("registry.db").exists());
    let again = support::run(env!("CARGO_BIN_EXE_registry"), &args, &work);
    assert_eq!(again, first);
}
