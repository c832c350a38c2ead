//! Upload sessions kept in the metadata store, for blob stores whose instances share nothing
//! but the database and the object store.
//!
//! A blob store over an object store writes each appended chunk as an object of its own (a
//! *segment*) and records it here: the session's size, its hasher's saved state and its
//! segments in order. [`UploadSessions::advance_upload_session`] replaces that record only when
//! the session still has the size the append started from, so of two appends racing on one
//! session (from two instances, or two requests to one), exactly one is recorded; the other's
//! segment is deleted and its client told the offset moved.

use async_trait::async_trait;

use crate::blob::UploadId;
use crate::digest::HasherState;
use crate::error::Result;

/// One appended chunk of an upload session, stored as an object of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSegment {
    /// The object's key in the blob store (the store's own naming; unique per append).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The durable state of an upload session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSession {
    /// Bytes received so far: the sum of the segments' sizes.
    pub size: u64,
    /// The hasher's state after those bytes.
    pub hasher: HasherState,
    /// The segments, in the order their bytes come.
    pub segments: Vec<UploadSegment>,
}

/// Where upload sessions are kept, with compare-and-set on their size.
#[async_trait]
pub trait UploadSessions: Send + Sync {
    /// Records a new session. Errors: [`crate::Error::BlobUploadInvalid`] when the id exists.
    async fn create_upload_session(&self, id: &UploadId, session: &UploadSession) -> Result<()>;

    /// The session's state, or `None` when there is no such session.
    async fn upload_session(&self, id: &UploadId) -> Result<Option<UploadSession>>;

    /// Replaces the session's state if it still holds `expected_size` bytes; returns whether it
    /// did (`false` also when the session is gone).
    async fn advance_upload_session(
        &self,
        id: &UploadId,
        expected_size: u64,
        session: &UploadSession,
    ) -> Result<bool>;

    /// Forgets a session; returns whether it existed.
    async fn delete_upload_session(&self, id: &UploadId) -> Result<bool>;
}
