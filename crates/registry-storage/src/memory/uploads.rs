//! Upload session records ([`UploadMetadata`]) and blob stores' upload sessions
//! ([`UploadSessions`]) in the memory metadata store.

use async_trait::async_trait;
use registry_core::{
    Error, Result, Timestamp, UploadId, UploadMetadata, UploadRecord, UploadSession, UploadSessions,
};

use super::{MemoryMetadataStore, lock};

#[async_trait]
impl UploadMetadata for MemoryMetadataStore {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()> {
        let mut state = lock(&self.state);
        if state.uploads.contains_key(&upload.id) {
            return Err(Error::BlobUploadInvalid {
                reason: format!("upload {} already exists", upload.id),
            });
        }
        state.uploads.insert(upload.id.clone(), upload.clone());
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        Ok(lock(&self.state).uploads.get(id).cloned())
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        Ok(lock(&self.state).uploads.remove(id).is_some())
    }

    async fn uploads_started_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let state = lock(&self.state);
        let mut uploads: Vec<UploadRecord> = state
            .uploads
            .values()
            .filter(|u| u.started_at < before)
            .cloned()
            .collect();
        uploads.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        uploads.truncate(limit);
        Ok(uploads)
    }
}

#[async_trait]
impl UploadSessions for MemoryMetadataStore {
    async fn create_upload_session(&self, id: &UploadId, session: &UploadSession) -> Result<()> {
        let mut state = lock(&self.state);
        if state.upload_sessions.contains_key(id) {
            return Err(Error::BlobUploadInvalid {
                reason: format!("upload session {id} already exists"),
            });
        }
        state.upload_sessions.insert(id.clone(), session.clone());
        Ok(())
    }

    async fn upload_session(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        Ok(lock(&self.state).upload_sessions.get(id).cloned())
    }

    async fn advance_upload_session(
        &self,
        id: &UploadId,
        expected_size: u64,
        session: &UploadSession,
    ) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.upload_sessions.get_mut(id) {
            Some(current) if current.size == expected_size => {
                *current = session.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_upload_session(&self, id: &UploadId) -> Result<bool> {
        Ok(lock(&self.state).upload_sessions.remove(id).is_some())
    }
}
