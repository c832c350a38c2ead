//! The registry's domain model, with no I/O of its own.
//!
//! - [`digest`]: sha256/sha512 [`Digest`]s and a [`DigestHasher`] whose state can be saved so an
//!   upload resumes after a restart or on another instance;
//! - [`name`]: [`RepositoryName`], [`Tag`] and [`Reference`] with the OCI distribution grammar;
//! - [`manifest`]: OCI image manifests and indexes, Docker v2 schema 2 manifests and manifest
//!   lists — validated, their references listed, their original bytes kept;
//! - [`background`]: batched background migrations ([`BackgroundMigrations`]) and the loop
//!   servers run them in;
//! - [`blob`]: the [`BlobStore`] trait (content-addressed, verified, resumable uploads);
//! - [`metadata`]: the content metadata traits (repositories, manifests, tags, referrers,
//!   upload records, the garbage collector's review queue);
//! - [`package`]: package repositories, packages, versions and files, and the
//!   [`PackageMetadata`] store trait;
//! - [`package_service`]: [`Packages`], the package service that owns the package domain
//!   over the two stores (repositories resolved by kind, create-on-publish, protection,
//!   duplicates, files stored with a format's extra digests and read as `Read + Seek`,
//!   publish, revision-checked updates), and [`FormatRules`], what each format decides;
//! - [`firewall`]: the dependency firewall's rules ([`FirewallRule`]), OSV advisories and
//!   audit log ([`FirewallAudit`]);
//! - [`proxy`]: proxy repositories' upstreams ([`UpstreamSettings`], the [`Upstream`]
//!   fetcher) and their caches' records ([`ProxyCache`]);
//! - [`oci`]: the OCI service ([`OciRegistry`]) over the two stores: push, pull, mount, tag,
//!   delete, list, referrers;
//! - [`rules`]: tag rules (immutable and protected tags) and cleanup policies, and the
//!   [`TagGuard`] metadata stores consult when a tag changes;
//! - [`store`]: [`MetadataStore`], every metadata trait together;
//! - [`upload_session`]: upload sessions kept in the metadata store ([`UploadSessions`]), with
//!   compare-and-set on their size, for blob stores shared by several instances;
//! - [`values`]: [`Timestamp`] and [`Page`], used everywhere;
//! - [`token`]: personal access tokens for package clients, stored hashed ([`TokenStore`]);
//! - [`auth`]: principals, roles per namespace, actions, and the [`Authenticator`] and
//!   [`Authorizer`] traits an embedder can implement;
//! - [`error`]: the one [`Error`] enum (the HTTP edge maps it to protocol codes).
//!
//! Implementations of the storage traits live in `registry-storage`. The one runtime
//! dependency is Tokio, for [`Packages::read_blocking`] (archive readers run on a blocking
//! thread over a stored file) and the channel that tees an upload through its hashers: the
//! package service must be used inside a Tokio runtime.
//!
//! ```
//! use bytes::Bytes;
//! use registry_core::{Digest, Manifest, ManifestLimits, Reference, RepositoryName};
//!
//! let name = RepositoryName::parse("library/alpine")?;
//! let reference = Reference::parse("3.20")?;
//! let empty = Digest::sha256(b"{}");
//! let bytes = Bytes::from(format!(
//!     r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},
//!        "layers":[]}}"#
//! ));
//! let manifest = Manifest::parse(bytes.clone(), None, &ManifestLimits::default())?;
//! assert_eq!(manifest.bytes(), &bytes); // served exactly as uploaded
//! assert_eq!(manifest.blob_digests(), vec![empty]);
//! # let _ = (name, reference);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(rustdoc::broken_intra_doc_links)]

pub mod auth;
pub mod background;
pub mod blob;
pub mod digest;
pub mod error;
pub mod firewall;
pub mod manifest;
pub mod metadata;
pub mod name;
pub mod oci;
pub mod package;
pub mod package_service;
pub mod proxy;
pub mod rules;
pub mod store;
pub mod token;
pub mod upload_session;
pub mod values;

pub use auth::{
    Action, Authenticator, Authorizer, Credentials, Grant, NamePattern, Principal, Role,
    RoleAuthorizer,
};
pub use background::{
    BackgroundMigration, BackgroundMigrations, BackgroundSettings, BatchRun, MigrationStatus,
};
pub use blob::{BlobRead, BlobStore, BlobStoreExt, ByteRange, ByteStream, UploadId};
pub use digest::{Algorithm, Digest, DigestError, DigestHasher, HasherState};
pub use error::{Error, Result};
pub use firewall::{AuditEntry, Firewall, FirewallAudit, FirewallRule};
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind, ManifestLimits};
pub use metadata::{
    BlobClaim, BlobRecord, CollectionMetadata, ContentMetadata, ManifestEntry, ManifestRecord,
    ManifestVerdict, NewManifest, PolicyKind, PolicySource, PolicyStore, PutManifestOutcome,
    Referrer, ReviewEvent, ReviewQueue, ReviewTarget, ReviewTask, StorageUsage, StoredPolicy,
    TagDetail, TagMarker, TagOrder, TagQuery, UploadMetadata, UploadRecord, UsageScope,
};
pub use name::{NameError, Reference, RepositoryName, Tag};
pub use oci::{CacheSettings, Limits, OciRegistry, OciVirtual, PullThrough, PushedManifest};
pub use package::{
    BlobRef, FileDigests, NewPackageFile, Package, PackageFile, PackageFormat, PackageMetadata,
    PackageProtection, PackageRepository, PackageSummary, PackageUpdate, PackageVersion, Publish,
    PublishMode, PublishOutcome, RepositoryConfig, RepositoryKind, RepositorySettings,
    VersionStatus,
};
pub use package_service::{
    BlobReader, DeferredFile, ExtraDigests, FormatRules, PackageLimits, Packages, PathFile,
    ProxyReport, Release, StaleServe, StoredFile, UpstreamCheck, UpstreamFormat, UpstreamPackage,
    incoming_via, observe_proxy,
};
pub use proxy::{
    CacheEntry, CacheEntryKind, DeclaredDigest, DigestAlgorithm, Fetched, ProxyCache, RemoteFile,
    Upstream, UpstreamSettings, Validators,
};
pub use rules::{Actor, CleanupPolicy, NameRegex, TagChange, TagGuard, TagRule, TagRuleKind};
pub use store::MetadataStore;
pub use token::{TokenRecord, TokenStore};
pub use upload_session::{UploadSegment, UploadSession, UploadSessions};
pub use values::{Page, Timestamp, tolerant_sort};
