//! Memory stays flat with blob size: a 1 GiB blob streamed through the filesystem store, in and
//! out, raises peak RSS by well under 64 MiB. This binary holds one test so nothing else runs in
//! the process while RSS is measured.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use registry_core::{Algorithm, BlobStore, ByteStream, Digest, DigestHasher};
use registry_storage::conformance::sample;
use registry_storage::fs::FsBlobStore;

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 1024; // 1 GiB
const ALLOWANCE: u64 = 64 << 20;

/// Reads a field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// Resets the peak-RSS counter (VmHWM) to the current RSS.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// 1 GiB as a stream of 1 MiB chunks; each chunk differs so the content is not one repeated
/// block, but only one chunk is alive at a time.
fn gigabyte(base: Bytes) -> ByteStream {
    stream::iter(0..CHUNKS)
        .map(move |i| {
            let mut chunk = base.to_vec();
            chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Ok(Bytes::from(chunk))
        })
        .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_blob_streams_through_in_flat_memory() {
    let base = sample(42, CHUNK);
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut expected = gigabyte(base.clone());
    while let Some(chunk) = expected.next().await {
        hasher.update(&chunk.unwrap());
    }
    let digest = hasher.finish();

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
    // Warm up the runtime and the file paths so the baseline includes them.
    let warm = Bytes::from_static(b"warm");
    store
        .write(&Digest::sha256(&warm), stream::iter([Ok(warm)]).boxed())
        .await
        .unwrap();

    reset_peak();
    let baseline = status_bytes("VmRSS:");
    let size = store.write(&digest, gigabyte(base)).await.unwrap();
    assert_eq!(size, (CHUNK * CHUNKS) as u64);
    let after_write = status_bytes("VmHWM:");

    let mut read = store.read(&digest, None).await.unwrap();
    let mut check = DigestHasher::new(Algorithm::Sha256);
    let mut total = 0u64;
    while let Some(chunk) = read.stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len() as u64;
        check.update(&chunk);
    }
    assert_eq!(total, size);
    assert_eq!(check.finish(), digest, "the blob reads back intact");
    let after_read = status_bytes("VmHWM:");

    let grew = after_write.max(after_read).saturating_sub(baseline);
    println!(
        "baseline RSS {} MiB; peak after write {} MiB, after read {} MiB; growth {} MiB",
        baseline >> 20,
        after_write >> 20,
        after_read >> 20,
        grew >> 20
    );
    assert!(
        grew < ALLOWANCE,
        "peak RSS grew by {} MiB streaming 1 GiB (allowance {} MiB)",
        grew >> 20,
        ALLOWANCE >> 20
    );
}
