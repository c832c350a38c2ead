//! The whole metadata store an application runs on: every sub-trait together. Its own module,
//! so the sub-traits' modules (content, packages, tokens) do not depend on each other.

use crate::background::BackgroundMigrations;
use crate::firewall::FirewallAudit;
use crate::metadata::{
    CollectionMetadata, ContentMetadata, PolicyStore, ReviewQueue, UploadMetadata,
};
use crate::package::PackageMetadata;
use crate::proxy::ProxyCache;
use crate::token::TokenStore;
use crate::upload_session::UploadSessions;

/// A complete metadata store: every part the registry needs.
pub trait MetadataStore:
    ContentMetadata
    + UploadMetadata
    + ReviewQueue
    + CollectionMetadata
    + PolicyStore
    + PackageMetadata
    + ProxyCache
    + FirewallAudit
    + TokenStore
    + UploadSessions
    + BackgroundMigrations
{
}

impl<
    T: ContentMetadata
        + UploadMetadata
        + ReviewQueue
        + CollectionMetadata
        + PolicyStore
        + PackageMetadata
        + ProxyCache
        + FirewallAudit
        + TokenStore
        + UploadSessions
        + BackgroundMigrations,
> MetadataStore for T
{
}
