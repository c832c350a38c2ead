//! The package service: the [`crate::package`] model over a [`BlobStore`] and a
//! [`MetadataStore`] — storing files in the shared blob store, publishing, reading.
//!
//! Format rules (names, versions, archives) are the caller's: the HTTP routers check them with
//! `registry-formats` before they call this service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use crate::blob::{BlobRead, BlobStore, ByteRange, ByteStream, once_stream};
use crate::digest::Algorithm;
use crate::error::{Error, Result};
use crate::package::{
    BlobRef, PackageFormat, PackageRepository, Publish, PublishOutcome, RepositoryKind,
    RepositorySettings, check_repository_name,
};
use crate::store::MetadataStore;
use crate::values::Timestamp;

/// Limits on what package clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageLimits {
    /// The largest file accepted (1 GiB by default).
    pub max_file_size: u64,
    /// The most bytes of upload documents held in memory at once, across requests (2 GiB by
    /// default): documents a protocol forces the registry to buffer whole, such as npm publish
    /// documents, which carry their tarball in base64. An upload that would pass it is refused
    /// with a retry hint.
    pub max_buffered_bytes: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_file_size: 1 << 30,
            max_buffered_bytes: 2 << 30,
        }
    }
}

/// The package service.
#[derive(Clone, Debug)]
pub struct Packages {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    limits: PackageLimits,
    create_on_publish: bool,
    /// Formats of repositories seen, so reads check them without a query: a repository's
    /// format never changes and repositories are not deleted, so an entry is never stale.
    formats: Arc<Mutex<HashMap<String, PackageFormat>>>,
}

/// The most repository formats remembered; past it, lookups go to the store.
const MAX_KNOWN_FORMATS: usize = 10_000;

impl Packages {
    /// The service over the given stores, with default limits.
    pub fn new(blobs: Arc<dyn BlobStore>, metadata: Arc<dyn MetadataStore>) -> Self {
        Packages {
            blobs,
            metadata,
            limits: PackageLimits::default(),
            create_on_publish: true,
            formats: Arc::default(),
        }
    }

    /// Whether a publish to a repository that does not exist creates it (hosted, default
    /// settings, the publish's format). On by default; off, repositories are created by the
    /// configuration or the admin API only, and a publish to an unknown one is refused
    /// ([`Error::PackageUnknown`]). Either way the publisher needs push on the name.
    pub fn with_create_on_publish(mut self, create: bool) -> Self {
        self.create_on_publish = create;
        self
    }

    /// The hosted repository a publish goes to: [`Packages::hosted_repository`], created when
    /// [`Packages::with_create_on_publish`] allows.
    pub async fn publish_repository(
        &self,
        name: &str,
        format: PackageFormat,
    ) -> Result<PackageRepository> {
        self.hosted_repository(name, format, self.create_on_publish)
            .await
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: PackageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &PackageLimits {
        &self.limits
    }

    /// The metadata store (for reads: packages, versions, listings).
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// Checks that a repository read through a format's API is not another format's: reading
    /// `name` as `format` finds nothing ([`Error::PackageUnknown`]) when the repository holds
    /// other packages. A repository that does not exist passes (its reads find nothing anyway).
    pub async fn check_read_format(&self, name: &str, format: PackageFormat) -> Result<()> {
        let known = self
            .formats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        let stored = match known {
            Some(stored) => Some(stored),
            None => {
                let stored = self
                    .metadata
                    .package_repository(name)
                    .await?
                    .map(|r| r.format);
                if let Some(stored) = stored {
                    let mut formats = self.formats.lock().unwrap_or_else(|p| p.into_inner());
                    if formats.len() < MAX_KNOWN_FORMATS {
                        formats.insert(name.to_owned(), stored);
                    }
                }
                stored
            }
        };
        match stored {
            Some(stored) if stored != format => Err(Error::PackageUnknown {
                what: format!("{format} repository {name}"),
            }),
            _ => Ok(()),
        }
    }

    /// A hosted repository of `format`; created with default settings when `create` and it
    /// does not exist.
    ///
    /// Errors: [`Error::PackageInvalid`] for a bad name; [`Error::PackageUnknown`] when absent
    /// and not created; [`Error::PackageConflict`] when it holds another format.
    pub async fn hosted_repository(
        &self,
        name: &str,
        format: PackageFormat,
        create: bool,
    ) -> Result<PackageRepository> {
        check_repository_name(name)?;
        let repository = match self.metadata.package_repository(name).await? {
            Some(repository) => repository,
            None if create => {
                self.metadata
                    .ensure_package_repository(&PackageRepository {
                        name: name.to_owned(),
                        format,
                        kind: RepositoryKind::Hosted,
                        settings: RepositorySettings::default(),
                        created_at: Timestamp::now(),
                    })
                    .await?
            }
            None => {
                return Err(Error::PackageUnknown {
                    what: format!("{format} repository {name}"),
                });
            }
        };
        if repository.format != format {
            return Err(Error::PackageConflict {
                reason: format!(
                    "repository {name} holds {} packages, not {format}",
                    repository.format
                ),
            });
        }
        Ok(repository)
    }

    /// Refuses `action` on `package` when the repository's protection rules need more than
    /// `role` (`None`: trusted); a repository that does not exist protects nothing.
    pub async fn check_protection(
        &self,
        repository: &str,
        package: &str,
        action: crate::auth::Action,
        role: Option<crate::auth::Role>,
    ) -> Result<()> {
        match self.metadata.package_repository(repository).await? {
            Some(found) => found.settings.check_protection(package, action, role),
            None => Ok(()),
        }
    }

    /// Stores a file's bytes in the blob store and records the blob (collected after the
    /// review delay unless a publish references it). Refuses files over the size limit
    /// ([`Error::SizeInvalid`]), storing nothing.
    pub async fn store_file(&self, body: ByteStream) -> Result<BlobRef> {
        let limit = self.limits.max_file_size;
        let mut total = 0u64;
        let limited = body
            .map(move |chunk| {
                let chunk = chunk?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(Error::SizeInvalid {
                        what: "package file",
                        size: total,
                        limit,
                    });
                }
                Ok(chunk)
            })
            .boxed();
        let (digest, size) = self
            .blobs
            .write_computed(Algorithm::Sha256, limited)
            .await?;
        let blob = BlobRef { digest, size };
        self.metadata.record_package_blob(&blob).await?;
        // A collector may have claimed the digest and deleted the bytes between the write and
        // the record (the record waited for the claim): then fail cleanly.
        if self.blobs.stat(&blob.digest).await?.is_none() {
            return Err(Error::BlobUploadInvalid {
                reason: format!(
                    "blob {} was garbage-collected while it was being stored; upload again",
                    blob.digest
                ),
            });
        }
        Ok(blob)
    }

    /// Stores a file already in memory.
    pub async fn store_bytes(&self, bytes: Bytes) -> Result<BlobRef> {
        self.store_file(once_stream(bytes)).await
    }

    /// Publishes a version or files (see [`crate::PackageMetadata::publish`]).
    pub async fn publish(&self, publish: &Publish) -> Result<PublishOutcome> {
        self.metadata.publish(publish).await
    }

    /// Opens a stored file for reading.
    pub async fn read(&self, blob: &BlobRef, range: Option<ByteRange>) -> Result<BlobRead> {
        self.blobs.read(&blob.digest, range).await
    }
}
