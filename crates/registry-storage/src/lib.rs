//! Implementations of the registry's storage traits, and the conformance suite they all pass.
//!
//! | store | type | feature |
//! |---|---|---|
//! | blobs in memory | [`memory::MemoryBlobStore`] | always |
//! | blobs on the local filesystem | [`fs::FsBlobStore`] | `fs` (default) |
//! | blobs in an object store (S3, GCS, Azure, or `object_store`'s own memory and file drivers) | [`object::ObjectBlobStore`] | `object-store`, `s3`, `gcs`, `azure` |
//! | import from a distribution registry's filesystem storage | [`import`] | `fs` |
//! | metadata in memory | [`memory::MemoryMetadataStore`] | always |
//! | metadata in SQLite (the embedded default) | [`sql::SqlMetadataStore`] | `sqlite` (default) |
//! | metadata in PostgreSQL | [`sql::SqlMetadataStore`] | `postgres` |
//!
//! | the conformance suite every backend passes | `conformance` | `conformance` |
//! | fixtures: a fresh store per metadata backend, `for_each_metadata_backend!` | `testing` | `testing` |
//!
//! Every backend runs the same `conformance` suite in its tests (a backend of another crate can
//! too, with the feature); the `testing` feature adds fixtures for the tests of crates built on
//! these.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use registry_core::{BlobStore, BlobStoreExt, MetadataStore, RepositoryName};
//! use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
//!
//! let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
//! let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
//! let digest = blobs.write_bytes(Bytes::from_static(b"layer")).await?;
//! metadata.link_blob(&RepositoryName::parse("demo/app")?, &digest, 5).await?;
//! assert!(metadata.blob(&digest).await?.is_some());
//! # Ok(())
//! # }
//! ```
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "fs")]
pub mod fs;
#[cfg(feature = "fs")]
pub mod import;
pub mod memory;
#[cfg(feature = "object-store")]
pub mod object;
mod packages;
mod policy;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;
