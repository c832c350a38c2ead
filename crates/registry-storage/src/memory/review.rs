//! The review queue ([`ReviewQueue`]) in the memory metadata store.

use async_trait::async_trait;
use registry_core::{Result, ReviewQueue, ReviewTarget, ReviewTask, Timestamp};

use super::{MemoryMetadataStore, lock};

#[async_trait]
impl ReviewQueue for MemoryMetadataStore {
    async fn due_reviews(&self, now: Timestamp, limit: usize) -> Result<Vec<ReviewTask>> {
        let state = lock(&self.state);
        let mut due: Vec<ReviewTask> = state
            .reviews
            .values()
            .filter(|t| t.due_at <= now)
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.due_at, &a.target).cmp(&(b.due_at, &b.target)));
        due.truncate(limit);
        Ok(due)
    }

    async fn review(&self, target: &ReviewTarget) -> Result<Option<ReviewTask>> {
        Ok(lock(&self.state).reviews.get(target).cloned())
    }

    async fn postpone_review(&self, target: &ReviewTarget, until: Timestamp) -> Result<bool> {
        let mut state = lock(&self.state);
        Ok(state
            .reviews
            .get_mut(target)
            .map(|task| {
                task.due_at = until;
                task.attempts += 1;
            })
            .is_some())
    }

    async fn complete_review(&self, task: &ReviewTask) -> Result<bool> {
        let mut state = lock(&self.state);
        let unchanged = state
            .reviews
            .get(&task.target)
            .is_some_and(|queued| queued.event == task.event && queued.due_at == task.due_at);
        if unchanged {
            state.reviews.remove(&task.target);
        }
        Ok(unchanged)
    }

    async fn review_queue_len(&self) -> Result<u64> {
        Ok(lock(&self.state).reviews.len() as u64)
    }
}
