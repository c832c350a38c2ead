//! The per-format seam: what the package service needs to know about a format, implemented in
//! `registry-formats` by one value per format.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;

use crate::error::Result;
use crate::package::{Package, PackageFormat, PublishMode};
use crate::proxy::RemoteFile;
use crate::rules::NameRegex;

/// The digests computed as a file streams in, besides the SHA-256 the blob store keys it by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraDigests {
    /// MD5 (PyPI checks an uploaded `md5_digest`; Maven serves `.md5`).
    pub md5: bool,
    /// SHA-1 (Maven `.sha1`).
    pub sha1: bool,
    /// SHA-512 (Maven `.sha512`, NuGet's package hash).
    pub sha512: bool,
    /// BLAKE2b-256 (PyPI publishes it).
    pub blake2_256: bool,
}

/// What differs between package formats, as the package service needs it: name and version
/// rules, version order, publish mode and the extra digests of stored files.
///
/// Protocols (documents, routes, archive contents) stay with each format's parser and router;
/// this is only what the domain decides by. A format that must show a version as the client
/// wrote it while storing its normal form (NuGet) keeps the original in its metadata document.
pub trait FormatRules: fmt::Debug + Send + Sync + 'static {
    /// The format.
    fn format(&self) -> PackageFormat;

    /// Checks a package name as a client sends it and answers the name it is stored under
    /// (PyPI's normalized form; the name itself elsewhere).
    ///
    /// Errors: [`crate::Error::PackageInvalid`] naming the rule broken.
    fn package_key(&self, name: &str) -> Result<String>;

    /// Checks a version as a client sends it and answers the form it is stored under.
    ///
    /// Errors: [`crate::Error::PackageInvalid`] naming the rule broken.
    fn version_key(&self, version: &str) -> Result<String>;

    /// What a stored version is the same release as, for matching it against versions a
    /// rule or an advisory names (which compare by identity, not text): PyPI's `1.0` and
    /// `1.0.0` are one release, and a local label (`1.0+build`) is the release it labels.
    /// The stored form by default.
    fn version_identity(&self, version: &str) -> String {
        version.to_owned()
    }

    /// Orders two stored versions, lowest first, by the format's rules ([`Ordering::Equal`]
    /// keeps publication order). It need not be a total order (Maven's is not); the service
    /// sorts with it in a way that never fails.
    fn compare_versions(&self, a: &str, b: &str) -> Ordering;

    /// Whether a stored version is a pre-release (`1.0.0-beta.1`, `1.0rc1`), which a tag the
    /// firewall moves off a blocked version never lands on while a release is left. None by
    /// default.
    fn is_prerelease(&self, version: &str) -> bool {
        let _ = version;
        false
    }

    /// How a publish adds to a version: a whole new version (npm), or files added to one
    /// (PyPI, Generic).
    fn publish_mode(&self) -> PublishMode;

    /// Whether a version's files may be replaced whatever the repository's duplicate settings
    /// (Maven's `-SNAPSHOT` versions). None by default.
    fn replaceable(&self, version: &str) -> bool {
        let _ = version;
        false
    }

    /// Checks a package-name pattern of a repository's settings (protection rules, duplicate
    /// exceptions): a format that stores names normalized refuses patterns that could only
    /// match a spelling it never stores, since every spelling a client sends is checked as the
    /// stored one. Any pattern by default.
    ///
    /// Errors: [`crate::Error::PackageInvalid`] saying how to write the pattern.
    fn check_name_pattern(&self, pattern: &NameRegex) -> Result<()> {
        let _ = pattern;
        Ok(())
    }

    /// The digests to compute while a file is stored.
    fn extra_digests(&self) -> ExtraDigests;

    /// The licence a version's metadata document declares (an SPDX expression), for the
    /// firewall's licence rules; `None` (the default) where the format declares none.
    fn license(&self, metadata: &str) -> Option<String> {
        let _ = metadata;
        None
    }

    /// How the format reads an upstream registry, for proxy repositories; `None` (the
    /// default) when it has none.
    fn upstream(&self) -> Option<&dyn UpstreamFormat> {
        None
    }
}

/// How a format reads an upstream registry: where a package's metadata document is, and what
/// it says — the versions as this registry's model holds them (so every format's renderers,
/// virtual repositories and filters work on proxied packages unchanged) and the files with
/// the digests they must have.
pub trait UpstreamFormat: Send + Sync {
    /// The path, below the upstream's base URL, of the metadata document of the package
    /// stored as `key` (percent-encoded where the protocol asks).
    fn metadata_path(&self, key: &str) -> String;

    /// A path below the upstream's base URL that it answers cheaply, for connection tests
    /// (its base URL itself by default).
    fn probe_path(&self) -> &'static str {
        ""
    }

    /// The `Accept` header metadata requests send.
    fn metadata_accept(&self) -> &'static str {
        "application/json"
    }

    /// The largest metadata document accepted (64 MiB by default: the largest npm packuments
    /// are tens of megabytes).
    fn max_metadata_size(&self) -> u64 {
        64 << 20
    }

    /// Where the upstream serves a file of version `version` of the package stored as `key`
    /// that its metadata document does not list, and the checksum files beside it that
    /// declare its digest (Maven: `<file>.sha512`, `.sha256`, `.sha1`); `None` (the default)
    /// where every file must be listed, or for a file that may change upstream (a Maven
    /// SNAPSHOT's file without a build number).
    fn path_file(&self, key: &str, version: &str, file: &str) -> Option<PathFile> {
        let _ = (key, version, file);
        None
    }

    /// Documents the metadata document links to instead of including them (NuGet's
    /// registration pages above 128 versions): absolute URLs on the upstream's origin, fetched
    /// with it and handed to [`UpstreamFormat::include_linked`]. None by default.
    fn linked_documents(&self, document: &[u8]) -> Vec<String> {
        let _ = document;
        Vec::new()
    }

    /// The metadata document with the documents it links to (`linked`: URL and body, in the
    /// order [`UpstreamFormat::linked_documents`] gave) included, as it is then kept and read.
    ///
    /// Errors: [`crate::Error::PackageInvalid`] when a linked document is not what the
    /// metadata says.
    fn include_linked(&self, document: &[u8], linked: Vec<(String, Bytes)>) -> Result<Bytes> {
        let _ = linked;
        Ok(Bytes::copy_from_slice(document))
    }

    /// The digest a document named by a [`DeferredFile`] declares; `None` (the default) when
    /// it declares none the format reads.
    fn read_declared(&self, document: &[u8]) -> Option<crate::proxy::DeclaredDigest> {
        let _ = document;
        None
    }

    /// Reads the metadata document of the package stored as `key`, fetched from the upstream
    /// at `base` (its URL without a trailing `/`). Versions and tags the document holds but
    /// the format refuses are left out; a document that is not one at all, or names another
    /// package, is refused.
    ///
    /// Errors: [`crate::Error::PackageInvalid`] saying what is wrong with the document.
    fn parse_metadata(&self, key: &str, document: &[u8], base: &str) -> Result<UpstreamPackage>;
}

/// A file an upstream serves by path, whose digest a checksum file beside it declares
/// ([`UpstreamFormat::path_file`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathFile {
    /// Its path below the upstream's base URL.
    pub path: String,
    /// The checksum files that may declare its digest, strongest first: the algorithm and
    /// the path below the upstream's base URL.
    pub checksums: Vec<(crate::proxy::DigestAlgorithm, String)>,
}

/// What an upstream's metadata document says about a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamPackage {
    /// The package as the model holds it: versions with their documents and the upstream's
    /// publish times, tags. Files appear where the document gives their SHA-256 and size.
    pub package: Package,
    /// Every file the document declares, with where to fetch it and its digest.
    pub files: Vec<RemoteFile>,
    /// Files the document declares whose digest another document holds (a NuGet catalog
    /// leaf), read with [`UpstreamFormat::read_declared`] when the file is first fetched.
    pub deferred: Vec<DeferredFile>,
}

/// A file whose digest is declared in another upstream document ([`UpstreamPackage::deferred`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferredFile {
    /// The file, as [`RemoteFile`] without its digest.
    pub version: String,
    /// Its name as this registry serves it.
    pub name: String,
    /// Where the upstream serves it.
    pub url: String,
    /// The absolute URL of the document that declares its digest (on the upstream's origin).
    pub declared_in: String,
}
