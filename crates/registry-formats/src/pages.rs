//! What pages show of a package version, per format: the command that installs it with the
//! format's own client, its one-line description, its README, and its status in the format's
//! words. Pages ([`pages`]) read these; nothing the registry decides depends on them.

use registry_core::{PackageFormat, VersionStatus};

/// A README as a format keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readme {
    /// The text.
    pub text: String,
    /// Whether it is Markdown (else it is shown as plain text).
    pub markdown: bool,
}

impl Readme {
    /// A Markdown README.
    pub fn markdown(text: impl Into<String>) -> Self {
        Readme {
            text: text.into(),
            markdown: true,
        }
    }
}

/// How a format's versions are shown.
pub trait FormatPages: Send + Sync {
    /// The command (or snippet) that installs `version` of the package `name` from
    /// `repository` with the format's client; `registry` is the registry's base URL
    /// (`https://registry.example`). `None` (the default) where the format has no client to
    /// name.
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        let _ = (registry, repository, name, version);
        None
    }

    /// A version's one-line description, read from its metadata document; `None` (the
    /// default) where the format keeps none there.
    fn description(&self, metadata: &str) -> Option<String> {
        let _ = metadata;
        None
    }

    /// Whether a version's README is in its files' sidecar (PyPI's core metadata) rather than
    /// in its metadata document. No by default.
    fn readme_in_sidecar(&self) -> bool {
        false
    }

    /// A version's README, read from its metadata document or, where
    /// [`FormatPages::readme_in_sidecar`], from the sidecar's bytes; `None` (the default) where
    /// it has none. Pages sanitise it before showing it.
    fn readme(&self, metadata: &str, sidecar: Option<&[u8]>) -> Option<Readme> {
        let _ = (metadata, sidecar);
        None
    }

    /// A version's status as the format's clients call it; `None` for a listed version.
    fn status_label(&self, status: &VersionStatus) -> Option<&'static str> {
        default_status_label(status)
    }
}

/// The status labels of most formats: hidden, deprecated, yanked.
pub fn default_status_label(status: &VersionStatus) -> Option<&'static str> {
    match status {
        VersionStatus::Default => None,
        VersionStatus::Hidden => Some("hidden"),
        VersionStatus::Deprecated(_) => Some("deprecated"),
        VersionStatus::Yanked(_) => Some("yanked"),
    }
}

/// A non-blank text field of a JSON metadata document (npm's `description`, PyPI's `summary`).
pub(crate) fn text_field(metadata: &str, field: &str) -> Option<String> {
    let document: serde_json::Value = serde_json::from_str(metadata).ok()?;
    let text = document.get(field)?.as_str()?;
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// How the versions of a format this registry serves are shown; `None` for formats not
/// served.
pub fn pages(format: PackageFormat) -> Option<&'static dyn FormatPages> {
    match format {
        PackageFormat::Generic => Some(&crate::generic::Generic),
        PackageFormat::Maven => Some(&crate::maven::Maven),
        PackageFormat::Npm => Some(&crate::npm::Npm),
        PackageFormat::Nuget => Some(&crate::nuget::Nuget),
        PackageFormat::Pypi => Some(&crate::pypi::Pypi),
        PackageFormat::Terraform => Some(&crate::terraform::Terraform),
        _ => None,
    }
}
