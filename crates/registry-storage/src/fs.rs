//! A blob store on the local filesystem.
//!
//! Layout under the root directory:
//!
//! ```text
//! blobs/<algorithm>/<first 2 hex>/<hex>   published blobs, never modified
//! staging/<random>                        whole-blob writes in progress
//! uploads/<id>/data                       an upload session's bytes
//! uploads/<id>/state                      its size and saved hasher state
//! ```
//!
//! Writes stream through the hasher into a staging file, are fsynced, and are published by an
//! atomic rename only when the digest matches, so a blob is either absent or complete. Every path
//! is built from a validated [`Digest`] or [`UploadId`], so nothing a client sends can name a
//! path outside the root. Staging files left by a killed process are removed when the store is
//! next opened.

use std::collections::HashMap;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use registry_core::{
    Algorithm, BlobRead, BlobStore, ByteRange, ByteStream, Digest, DigestHasher, Error,
    HasherState, Result, UploadId,
};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::memory::unknown_upload;

/// Read buffer size for blob streams.
const READ_CHUNK: usize = 1024 * 1024;
/// Version byte of the upload state file format.
const STATE_VERSION: u8 = 1;

/// Options of a [`FsBlobStore`].
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Staging files older than this are removed when the store opens. Another process sharing
    /// the directory may still be writing younger ones.
    pub stale_staging_after: Duration,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            stale_staging_after: Duration::from_secs(60 * 60),
        }
    }
}

/// A blob store in a local directory.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: Arc<PathBuf>,
    /// Serializes operations on one upload session within this process.
    upload_locks: Arc<Mutex<HashMap<UploadId, Weak<tokio::sync::Mutex<()>>>>>,
}

fn io_error(e: std::io::Error) -> Error {
    Error::backend(e)
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`, with default options.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(root, FsOptions::default()).await
    }

    /// Opens (creating if needed) a store rooted at `root`.
    ///
    /// Removes staging files older than [`FsOptions::stale_staging_after`].
    pub async fn open_with(root: impl Into<PathBuf>, options: FsOptions) -> Result<Self> {
        let root = root.into();
        for dir in ["blobs", "staging", "uploads"] {
            fs::create_dir_all(root.join(dir)).await.map_err(io_error)?;
        }
        let store = FsBlobStore {
            root: Arc::new(root),
            upload_locks: Arc::default(),
        };
        store.purge_staging(options.stale_staging_after).await?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes staging files (interrupted whole-blob writes) last modified more than
    /// `older_than` ago; returns how many were removed.
    pub async fn purge_staging(&self, older_than: Duration) -> Result<usize> {
        let mut removed = 0;
        let mut entries = fs::read_dir(self.root.join("staging"))
            .await
            .map_err(io_error)?;
        let now = SystemTime::now();
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let modified = entry.metadata().await.and_then(|m| m.modified());
            let age = modified
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or(Duration::ZERO);
            if age >= older_than {
                match fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(e)),
                }
            }
        }
        Ok(removed)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    fn upload_lock(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .upload_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = locks.get(id).and_then(Weak::upgrade) {
            return existing;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(id.clone(), Arc::downgrade(&lock));
        lock
    }

    /// Moves a complete, verified file into place as `digest`.
    async fn publish(&self, from: &Path, digest: &Digest) -> Result<()> {
        let to = self.blob_path(digest);
        let parent = to.parent().expect("blob paths have a parent");
        fs::create_dir_all(parent).await.map_err(io_error)?;
        // Replacing an existing blob is harmless: both files hold the same verified bytes.
        fs::rename(from, &to).await.map_err(io_error)?;
        sync_dir(parent).await
    }

    async fn read_state(&self, id: &UploadId) -> Result<UploadState> {
        let bytes = match fs::read(self.upload_dir(id).join("state")).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(unknown_upload(id)),
            Err(e) => return Err(io_error(e)),
        };
        UploadState::decode(&bytes).ok_or_else(|| Error::BlobUploadInvalid {
            reason: format!("state of upload {id} is corrupt"),
        })
    }

    async fn write_state(&self, id: &UploadId, state: &UploadState) -> Result<()> {
        let dir = self.upload_dir(id);
        let temporary = dir.join("state.new");
        let mut file = File::create(&temporary).await.map_err(io_error)?;
        file.write_all(&state.encode()).await.map_err(io_error)?;
        file.sync_all().await.map_err(io_error)?;
        fs::rename(&temporary, dir.join("state"))
            .await
            .map_err(io_error)
    }

    /// Opens an upload's data file positioned at `size`, discarding any bytes past it (left by
    /// a chunk that failed or a process that died mid-append).
    async fn open_data_at(&self, id: &UploadId, size: u64) -> Result<File> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(self.upload_dir(id).join("data"))
            .await
            .map_err(io_error)?;
        file.set_len(size).await.map_err(io_error)?;
        file.seek(SeekFrom::Start(size)).await.map_err(io_error)?;
        Ok(file)
    }
}

impl FsBlobStore {
    /// Cuts an upload's data file back to `size` bytes, best effort (the next append does it
    /// too).
    async fn discard_past(&self, id: &UploadId, size: u64) {
        let data = self.upload_dir(id).join("data");
        let cut = async {
            let file = OpenOptions::new().write(true).open(&data).await?;
            file.set_len(size).await
        };
        if let Err(e) = cut.await {
            tracing::warn!(upload = %id, error = %e, "cutting a failed chunk from an upload");
        }
    }

    /// Streams a blob into `staging/`, hashing it, then publishes it under its digest if it is
    /// the one expected (or any, when none is).
    async fn write_staged(
        &self,
        algorithm: Algorithm,
        expected: Option<&Digest>,
        body: ByteStream,
    ) -> Result<(Digest, u64)> {
        let mut staging = Staging {
            path: self
                .root
                .join("staging")
                .join(uuid::Uuid::new_v4().simple().to_string()),
            keep: false,
        };
        let file = File::create(&staging.path).await.map_err(io_error)?;
        let mut hasher = DigestHasher::new(algorithm);
        let size = stream_to_file(file.into_std().await, body, &mut hasher).await?;
        let actual = hasher.finish();
        if let Some(expected) = expected
            && &actual != expected
        {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.publish(&staging.path, &actual).await?;
        staging.keep = true;
        Ok((actual, size))
    }
}

async fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .await
        .map_err(io_error)?
        .sync_all()
        .await
        .map_err(io_error)
}

/// Flush to disk in the background every this many bytes, so the final fsync has little left.
const BACKGROUND_SYNC_EVERY: u64 = 8 << 20;

/// Writes a stream to a file, hashing as it goes, and leaves it flushed to disk.
///
/// A blocking thread writes the received buffers as they are (no copy), while this task hashes
/// them: hashing and writing proceed in parallel, with at most a few chunks queued between them.
/// Every [`BACKGROUND_SYNC_EVERY`] bytes an fsync of what is written so far starts in the
/// background, so the disk works while the rest streams in and the final fsync has little left.
async fn stream_to_file(
    file: std::fs::File,
    mut body: ByteStream,
    hasher: &mut DigestHasher,
) -> Result<u64> {
    use std::io::Write;
    let syncer = file.try_clone().map_err(io_error)?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = file;
        while let Some(chunk) = receiver.blocking_recv() {
            file.write_all(&chunk)?;
        }
        Ok::<_, std::io::Error>(file)
    });
    let mut written = 0u64;
    let mut unsynced = 0u64;
    let mut background: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if sender.send(chunk.clone()).await.is_err() {
            // The writer stopped: its error says why.
            break;
        }
        hasher.update(&chunk);
        written += chunk.len() as u64;
        unsynced += chunk.len() as u64;
        if unsynced >= BACKGROUND_SYNC_EVERY && background.as_ref().is_none_or(|b| b.is_finished())
        {
            if let Some(previous) = background.take() {
                previous.await.map_err(Error::backend)?.map_err(io_error)?;
            }
            let handle = syncer.try_clone().map_err(io_error)?;
            background = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
            unsynced = 0;
        }
    }
    drop(sender);
    let file = writer.await.map_err(Error::backend)?.map_err(io_error)?;
    if let Some(previous) = background.take() {
        previous.await.map_err(Error::backend)?.map_err(io_error)?;
    }
    tokio::task::spawn_blocking(move || file.sync_data())
        .await
        .map_err(Error::backend)?
        .map_err(io_error)?;
    Ok(written)
}

/// Streams a byte range of a file in 1 MiB chunks.
///
/// Each chunk is read by a short blocking task straight into a fresh buffer (`read_to_end` on a
/// `Take`: no zeroing, no copy through tokio's file buffer), which hands the file back when done,
/// so no thread waits on a slow client. The next chunk's read starts as soon as the previous one
/// is handed over (one chunk of read-ahead); dropping the stream lets the pending read finish and
/// frees everything.
fn read_in_background(file: std::fs::File, range: std::ops::Range<u64>) -> ByteStream {
    use std::io::{Read, Seek};
    type Pending = tokio::task::JoinHandle<std::io::Result<(std::fs::File, bytes::Bytes)>>;

    fn spawn_read(mut file: std::fs::File, seek: Option<u64>, want: u64) -> Pending {
        tokio::task::spawn_blocking(move || {
            if let Some(start) = seek {
                file.seek(SeekFrom::Start(start))?;
            }
            let mut buffer = Vec::with_capacity(want as usize);
            let read = (&mut file).take(want).read_to_end(&mut buffer)?;
            if read as u64 != want {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("blob file ended {} bytes early", want - read as u64),
                ));
            }
            Ok((file, bytes::Bytes::from(buffer)))
        })
    }

    let total = range.end - range.start;
    let first = total.min(READ_CHUNK as u64);
    let pending = (total > 0).then(|| spawn_read(file, Some(range.start), first));
    let state = (pending, total - first);
    futures::stream::unfold(state, |(pending, left)| async move {
        let pending = pending?;
        match pending.await {
            Ok(Ok((file, chunk))) => {
                let want = left.min(READ_CHUNK as u64);
                let next = (want > 0).then(|| spawn_read(file, None, want));
                Some((Ok(chunk), (next, left - want)))
            }
            Ok(Err(e)) => Some((Err(io_error(e)), (None, 0))),
            Err(e) => Some((Err(Error::backend(e)), (None, 0))),
        }
    })
    .boxed()
}

/// Hashes a file's first `len` bytes.
async fn hash_file(path: &Path, algorithm: Algorithm, len: u64) -> Result<Digest> {
    let file = File::open(path).await.map_err(io_error)?;
    let mut stream = ReaderStream::with_capacity(file.take(len), READ_CHUNK);
    let mut hasher = DigestHasher::new(algorithm);
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk.map_err(io_error)?);
    }
    Ok(hasher.finish())
}

/// A staging file that is removed unless it was published, so an error or a cancelled write
/// leaves nothing behind.
struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: a file that cannot be removed now is purged at the next open.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An upload session's durable state.
struct UploadState {
    size: u64,
    hasher: HasherState,
}

impl UploadState {
    fn encode(&self) -> Vec<u8> {
        let algorithm = match self.hasher.algorithm {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        };
        let mut out = vec![STATE_VERSION, algorithm];
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.hasher.bytes);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let [STATE_VERSION, algorithm, rest @ ..] = bytes else {
            return None;
        };
        let algorithm = match algorithm {
            1 => Algorithm::Sha256,
            2 => Algorithm::Sha512,
            _ => return None,
        };
        let (size, state) = rest.split_first_chunk::<8>()?;
        Some(UploadState {
            size: u64::from_le_bytes(*size),
            hasher: HasherState {
                algorithm,
                bytes: state.to_vec(),
            },
        })
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let file = match File::open(self.blob_path(digest)).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::BlobUnknown {
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(io_error(e)),
        };
        let size = file.metadata().await.map_err(io_error)?.len();
        let range = match range {
            Some(r) => r.resolve(size)?,
            None => 0..size,
        };
        let stream = read_in_background(file.into_std().await, range.clone());
        Ok(BlobRead {
            size,
            range,
            stream,
        })
    }

    async fn write(&self, expected: &Digest, body: ByteStream) -> Result<u64> {
        self.write_staged(expected.algorithm(), Some(expected), body)
            .await
            .map(|(_, size)| size)
    }

    async fn write_computed(
        &self,
        algorithm: Algorithm,
        body: ByteStream,
    ) -> Result<(Digest, u64)> {
        self.write_staged(algorithm, None, body).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        // One two-hex-digit directory at a time, so memory holds about 1/256 of the names.
        let root = self.root.join("blobs");
        stream::iter(Algorithm::ALL)
            .then(move |algorithm| {
                let dir = root.join(algorithm.as_str());
                async move { prefix_dirs(&dir).await.map(|dirs| (algorithm, dirs)) }
            })
            .map_ok(|(algorithm, dirs)| {
                stream::iter(dirs)
                    .then(move |dir| list_prefix(dir, algorithm))
                    .map_ok(|digests| stream::iter(digests.into_iter().map(Ok)))
                    .try_flatten()
            })
            .try_flatten()
            .boxed()
    }

    async fn upload_start(&self, algorithm: Algorithm) -> Result<UploadId> {
        let id = UploadId::generate();
        let dir = self.upload_dir(&id);
        fs::create_dir(&dir).await.map_err(io_error)?;
        File::create(dir.join("data")).await.map_err(io_error)?;
        let state = UploadState {
            size: 0,
            hasher: DigestHasher::new(algorithm).state(),
        };
        self.write_state(&id, &state).await?;
        sync_dir(&dir).await?;
        Ok(id)
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, chunk: ByteStream) -> Result<u64> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let state = self.read_state(id).await?;
        if offset != state.size {
            return Err(Error::UploadOffsetMismatch {
                expected: state.size,
                found: offset,
            });
        }
        let mut hasher = DigestHasher::restore(&state.hasher)?;
        let file = self.open_data_at(id, state.size).await?;
        let appended = async {
            let written = stream_to_file(file.into_std().await, chunk, &mut hasher).await?;
            let size = state.size + written;
            self.write_state(
                id,
                &UploadState {
                    size,
                    hasher: hasher.state(),
                },
            )
            .await?;
            Ok(size)
        }
        .await;
        if appended.is_err() {
            // The chunk failed (a full disk, a broken body): give its bytes back now rather
            // than when the session is retried or purged, so a full disk frees up at once.
            self.discard_past(id, state.size).await;
        }
        appended
    }

    async fn upload_status(&self, id: &UploadId) -> Result<u64> {
        Ok(self.read_state(id).await?.size)
    }

    async fn upload_finish(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let state = self.read_state(id).await?;
        let data = self.upload_dir(id).join("data");
        let file = self.open_data_at(id, state.size).await?;
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        let actual = if state.hasher.algorithm == expected.algorithm() {
            DigestHasher::restore(&state.hasher)?.finish()
        } else {
            hash_file(&data, expected.algorithm(), state.size).await?
        };
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.publish(&data, expected).await?;
        fs::remove_dir_all(self.upload_dir(id))
            .await
            .map_err(io_error)?;
        Ok(state.size)
    }

    async fn upload_cancel(&self, id: &UploadId) -> Result<()> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        match fs::remove_dir_all(self.upload_dir(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(unknown_upload(id)),
            Err(e) => Err(io_error(e)),
        }
    }
}

/// Every blob of one algorithm: `<dir>/<2 hex>/<hex>`. Stray files are skipped.
/// The prefix directories under an algorithm's directory (none when it does not exist).
async fn prefix_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let mut entries = match fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(dirs),
        Err(e) => return Err(io_error(e)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
        if entry.file_type().await.map_err(io_error)?.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// The blobs in one prefix directory.
async fn list_prefix(dir: PathBuf, algorithm: Algorithm) -> Result<Vec<Digest>> {
    let mut digests = Vec::new();
    let mut files = match fs::read_dir(&dir).await {
        Ok(files) => files,
        // Emptied and removed meanwhile.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(digests),
        Err(e) => return Err(io_error(e)),
    };
    while let Some(file) = files.next_entry().await.map_err(io_error)? {
        let name = file.file_name();
        let text = format!("{algorithm}:{}", name.to_string_lossy());
        if let Ok(digest) = Digest::parse(&text) {
            digests.push(digest);
        }
    }
    Ok(digests)
}
