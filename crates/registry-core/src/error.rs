//! The registry's one error type, and the OCI error codes it maps to.

use crate::digest::{Digest, DigestError, HasherStateError};
use crate::manifest::ManifestError;
use crate::name::NameError;

/// The registry's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the registry's core and stores.
///
/// Each variant carries the facts a client needs; the HTTP edge decides how each protocol says
/// it (OCI error codes, package clients' formats).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest in the request is malformed or uses an unsupported algorithm.
    #[error("invalid digest: {source}")]
    DigestInvalid {
        /// What is wrong with it.
        #[from]
        source: DigestError,
    },
    /// Content did not hash to the digest the client promised; nothing was stored.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the client gave.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A repository name, tag or reference breaks the grammar.
    #[error("invalid name or reference {value:?}: {source}")]
    NameInvalid {
        /// The text given.
        value: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// The repository does not exist.
    #[error("repository {name} is not known")]
    NameUnknown {
        /// The repository.
        name: String,
    },
    /// The manifest bytes were refused.
    #[error("invalid manifest: {source}")]
    ManifestInvalid {
        /// Why.
        #[from]
        source: ManifestError,
    },
    /// No manifest with this tag or digest in the repository.
    #[error("manifest {reference} is not known in {repository}")]
    ManifestUnknown {
        /// The repository.
        repository: String,
        /// The tag or digest asked for.
        reference: String,
    },
    /// A manifest references a blob or child manifest the repository does not have.
    #[error("manifest references {digest}, which is not in the repository")]
    ManifestBlobUnknown {
        /// The missing content.
        digest: Digest,
    },
    /// A manifest cannot be deleted while an index in the repository lists it.
    #[error("manifest {digest} is referenced by index {index}")]
    ManifestReferenced {
        /// The manifest asked to be deleted.
        digest: Digest,
        /// An index that lists it.
        index: Digest,
    },
    /// No such blob (in the store, or linked to the repository).
    #[error("blob {digest} is not known")]
    BlobUnknown {
        /// The blob.
        digest: Digest,
    },
    /// No such upload session.
    #[error("upload {id} is not known")]
    BlobUploadUnknown {
        /// The session id.
        id: String,
    },
    /// A chunk was sent for an offset other than the upload's current size.
    #[error("chunk starts at offset {found}, but the upload has {expected} bytes")]
    UploadOffsetMismatch {
        /// Bytes the upload holds.
        expected: u64,
        /// Offset the chunk claimed.
        found: u64,
    },
    /// An upload session's stored state is unusable, or the request breaks the upload protocol.
    #[error("upload is invalid: {reason}")]
    BlobUploadInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A requested byte range lies outside the content.
    #[error("range {start}..{end} is outside content of {size} bytes")]
    RangeNotSatisfiable {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The content's size.
        size: u64,
    },
    /// A size given by the client is over a limit or contradicts the content.
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    SizeInvalid {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The caller is not authenticated.
    #[error("authentication required")]
    Unauthorized,
    /// The caller may not do this; the reason names the rule.
    #[error("{reason}")]
    Denied {
        /// Why.
        reason: String,
    },
    /// A tag rule or cleanup policy is invalid (a pattern too long or not compiling, too many
    /// rules, an impossible value); nothing was applied.
    #[error("invalid rule: {reason}")]
    PolicyInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A package upload or request is invalid for its format (a bad name or version, a corrupt
    /// archive, metadata that disagrees with the upload); nothing was stored.
    #[error("{reason}")]
    PackageInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A package publish conflicts with what is stored (a duplicate file or version); nothing
    /// was stored.
    #[error("{reason}")]
    PackageConflict {
        /// What exists.
        reason: String,
    },
    /// No such thing of another kind (a background migration).
    #[error("{what} is not known")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The request conflicts with the state of what it acts on (pausing a finished background
    /// migration); nothing changed.
    #[error("{reason}")]
    Conflict {
        /// Why.
        reason: String,
    },
    /// No such package repository, package, version or file.
    #[error("{what} not found")]
    PackageUnknown {
        /// What was looked for.
        what: String,
    },
    /// Too many requests of this kind right now (password checks under a flood, repeated
    /// failures from one user or address); the caller may retry after `retry_after`.
    #[error("{reason}; retry in {} s", retry_after.as_secs().max(1))]
    TooManyRequests {
        /// What is limited.
        reason: String,
        /// When a retry may succeed.
        retry_after: std::time::Duration,
    },
    /// The dependency firewall blocked a version (a download or publish of it).
    #[error("blocked by firewall rule {rule}: {reason}")]
    Blocked {
        /// The rule's name.
        rule: String,
        /// Why.
        reason: String,
    },
    /// An upstream registry of a proxy repository failed (unreachable, too slow, an error
    /// status, content that does not match what it declared); nothing of it was kept.
    #[error("upstream {upstream}: {reason}")]
    Upstream {
        /// The upstream's base URL.
        upstream: String,
        /// What went wrong.
        reason: String,
        /// Whether it was too slow (a gateway timeout rather than a bad gateway).
        timed_out: bool,
    },
    /// An upstream answered `508 Loop Detected`: the request went round a loop of proxies
    /// (its `Via` hops name a registry twice, or too many). Caused by the request's path, not
    /// by the upstream's health, so never remembered as the upstream's failure.
    #[error("upstream {upstream}: {reason}")]
    ProxyLoop {
        /// The upstream's base URL.
        upstream: String,
        /// What it said.
        reason: String,
    },
    /// The operation is not supported by this registry or backend.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// A storage backend failed; the request may be retried.
    #[error("storage backend error: {source}")]
    Backend {
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Wraps a backend failure.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Backend {
            source: source.into(),
        }
    }
}

impl From<HasherStateError> for Error {
    fn from(e: HasherStateError) -> Self {
        Error::BlobUploadInvalid {
            reason: e.to_string(),
        }
    }
}
