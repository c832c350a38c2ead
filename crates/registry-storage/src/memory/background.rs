//! Background migrations ([`BackgroundMigrations`]) in the memory metadata store: it has no
//! schema, so none.

use async_trait::async_trait;
use registry_core::{BackgroundMigration, BackgroundMigrations, BatchRun, Error, Result};

use super::MemoryMetadataStore;

#[async_trait]
impl BackgroundMigrations for MemoryMetadataStore {
    async fn background_migrations(&self) -> Result<Vec<BackgroundMigration>> {
        Ok(Vec::new())
    }

    async fn pause_background_migration(
        &self,
        name: &str,
        _paused: bool,
    ) -> Result<BackgroundMigration> {
        Err(Error::NotFound {
            what: format!("background migration {name}"),
        })
    }

    async fn run_background_batch(&self, _batch_size: u64) -> Result<Option<BatchRun>> {
        Ok(None)
    }
}
