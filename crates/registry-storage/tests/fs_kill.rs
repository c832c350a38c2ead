//! A process killed in the middle of a blob write and of an upload append leaves no visible
//! blob; the next start removes the stale staging file and the upload session resumes from its
//! last recorded size.
//!
//! The test runs its own binary again as the child that gets killed (SIGKILL: no destructor, no
//! flush, nothing runs).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use registry_core::{Algorithm, BlobStore, ByteStream, Digest, UploadId};
use registry_storage::conformance::{chunked, sample};
use registry_storage::fs::{FsBlobStore, FsOptions};

const CHILD_DIR: &str = "REGISTRY_KILL_TEST_DIR";
const BLOB_LEN: usize = 4 << 20;

fn stalling(data: bytes::Bytes) -> ByteStream {
    stream::once(async move { Ok(data) })
        .chain(stream::pending())
        .boxed()
}

/// The child: starts a write and an append that never finish, says so, and waits to be killed.
async fn child(dir: &str) {
    let store = FsBlobStore::open(dir).await.unwrap();
    let data = sample(11, BLOB_LEN);
    let digest = Digest::sha256(&data);
    let id = store.upload_start(Algorithm::Sha256).await.unwrap();
    store
        .upload_append(&id, 0, chunked(data.slice(..1 << 20), 65_536))
        .await
        .unwrap();
    let write = store.write(&digest, stalling(data.slice(..2 << 20)));
    let append = store.upload_append(&id, 1 << 20, stalling(data.slice(1 << 20..3 << 20)));
    let announce = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("STALLED {id}");
    };
    let _ = tokio::join!(write, append, announce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_leaves_nothing_visible() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        return child(&dir).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([
            "killed_process_leaves_nothing_visible",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(process.stdout.take().unwrap());
    let id = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("STALLED ").map(str::to_owned))
        .expect("the child reports its stalled upload");
    process.kill().unwrap();
    process.wait().unwrap();

    let data = sample(11, BLOB_LEN);
    let digest = Digest::sha256(&data);
    let staged = std::fs::read_dir(dir.path().join("staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 1, "the killed write left its staging file");

    let options = FsOptions {
        stale_staging_after: Duration::ZERO,
    };
    let store = FsBlobStore::open_with(dir.path(), options).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        None,
        "no blob became visible"
    );

    let id = UploadId::parse(&id).unwrap();
    assert_eq!(store.upload_status(&id).await.unwrap(), 1 << 20);
    store
        .upload_append(&id, 1 << 20, chunked(data.slice(1 << 20..), 1 << 20))
        .await
        .unwrap();
    assert_eq!(
        store.upload_finish(&id, &digest).await.unwrap(),
        BLOB_LEN as u64
    );
    let mut read = store.read(&digest, None).await.unwrap();
    let mut back = Vec::new();
    while let Some(chunk) = read.stream.next().await {
        back.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Digest::sha256(&back), digest);
}
