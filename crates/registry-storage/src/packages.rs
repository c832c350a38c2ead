//! Package rules every metadata store applies the same way.

use registry_core::{Error, Publish, PublishMode};

/// What a publish will do, decided before anything changes.
pub(crate) struct Plan {
    /// Whether the version is new.
    pub(crate) version_created: bool,
    /// Files it replaces.
    pub(crate) replaced: Vec<String>,
}

/// Decides a publish against the stored version's file names (`None`: no such version).
/// Errors: [`Error::PackageConflict`] for a duplicate when duplicates may not replace.
pub(crate) fn check_publish(
    existing: Option<&[String]>,
    publish: &Publish,
) -> registry_core::Result<Plan> {
    let Some(files) = existing else {
        if publish.mode == PublishMode::AttachFiles {
            return Err(unknown(format!(
                "{} {} in {}",
                publish.display_name, publish.version, publish.repository
            )));
        }
        return Ok(Plan {
            version_created: true,
            replaced: Vec::new(),
        });
    };
    let replaced: Vec<String> = match publish.mode {
        PublishMode::NewVersion => files.to_vec(),
        PublishMode::AddFiles | PublishMode::AttachFiles => publish
            .files
            .iter()
            .filter(|f| files.contains(&f.name))
            .map(|f| f.name.clone())
            .collect(),
    };
    if !publish.duplicates {
        match publish.mode {
            PublishMode::NewVersion => {
                return Err(Error::PackageConflict {
                    reason: format!(
                        "{} {} already exists in {}; publish a new version",
                        publish.display_name, publish.version, publish.repository
                    ),
                });
            }
            PublishMode::AddFiles | PublishMode::AttachFiles if !replaced.is_empty() => {
                return Err(Error::PackageConflict {
                    reason: format!(
                        "{} already exists in {} {} ({}); duplicates are not allowed",
                        replaced.join(", "),
                        publish.display_name,
                        publish.version,
                        publish.repository
                    ),
                });
            }
            PublishMode::AddFiles | PublishMode::AttachFiles => {}
        }
    }
    Ok(Plan {
        version_created: false,
        replaced,
    })
}

/// The error for something missing.
pub(crate) fn unknown(what: String) -> Error {
    Error::PackageUnknown { what }
}
