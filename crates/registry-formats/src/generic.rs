//! Generic packages: any files, stored under a package name and a version.
//!
//! - a **name** is 1 to 255 bytes of ASCII letters, digits, `.`, `_` and `-`, starting with a
//!   letter or digit;
//! - a **version** is 1 to 255 bytes of ASCII letters, digits, `.`, `_`, `+` and `-`, starting
//!   with a letter or digit, with no `..`;
//! - a **file path** is 1 to 1,024 bytes of `/`-separated segments, each 1 to 255 bytes of ASCII
//!   letters, digits, `.`, `_`, `~`, `+`, `@` and `-`, none of them `.` or `..`.
//!
//! ```
//! use registry_formats::generic;
//! assert!(generic::check_path("linux/amd64/tool.tar.gz").is_ok());
//! assert!(generic::check_path("../etc/passwd").is_err());
//! ```

use registry_core::{Error, Result};

/// The longest name or version.
pub const MAX_NAME_LEN: usize = 255;

/// The longest file path.
pub const MAX_PATH_LEN: usize = 1024;

fn invalid(reason: String) -> Error {
    Error::PackageInvalid { reason }
}

fn check_text(what: &str, text: &str, extra: &[u8]) -> Result<()> {
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let chars_ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if text.is_empty() || text.len() > MAX_NAME_LEN || !first_ok || !chars_ok {
        let allowed: String = extra.iter().map(|&b| format!("'{}' ", b as char)).collect();
        return Err(invalid(format!(
            "{text:?} is not a valid generic package {what}: use 1 to {MAX_NAME_LEN} ASCII \
             letters, digits or {}starting with a letter or digit",
            allowed
        )));
    }
    Ok(())
}

/// Checks a package name.
pub fn check_name(name: &str) -> Result<()> {
    check_text("name", name, b"._-")
}

/// Checks a version.
pub fn check_version(version: &str) -> Result<()> {
    check_text("version", version, b"._+-")?;
    if version.contains("..") {
        return Err(invalid(format!(
            "{version:?} is not a valid generic package version: it contains '..'"
        )));
    }
    Ok(())
}

/// Checks a file path within a version.
pub fn check_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(invalid(format!(
            "{path:?} is not a valid generic package file path: {why}"
        )))
    };
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return bad(&format!("use 1 to {MAX_PATH_LEN} bytes"));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return bad("it has an empty segment (a leading, trailing or double '/')");
        }
        if segment == "." || segment == ".." {
            return bad("'.' and '..' segments are not allowed");
        }
        if segment.len() > MAX_NAME_LEN {
            return bad(&format!("a segment is longer than {MAX_NAME_LEN} bytes"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~+@-".contains(&b))
        {
            return bad("use ASCII letters, digits, '.', '_', '~', '+', '@' and '-' between '/'");
        }
    }
    Ok(())
}

impl crate::pages::FormatPages for Generic {
    /// Lists the version's files (each is then fetched by its own URL).
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        Some(format!(
            "curl {registry}/generic/{repository}/{name}/{version}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_versions_and_paths() {
        for good in ["tool", "my-tool_2.0", "A1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "ü", &"a".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for good in ["1.0.0", "1.0.0-rc.1+build.5", "v2", "2024_01"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "1..0", ".1", "1/2", "1 0"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        for good in ["a.txt", "linux/amd64/tool", "x@1~2+3"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", "a//b", "a/", "../x", "a/./b", "a/../b", "a\\b", "a b", "%2e%2e",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn accepted_paths_never_escape(path in "[a-z./@~+_-]{1,40}") {
            if check_path(&path).is_ok() {
                prop_assert!(!path.starts_with('/'));
                prop_assert!(path.split('/').all(|s| s != ".." && s != "." && !s.is_empty()));
            }
        }
    }
}

/// Generic packages' rules for the package service: names and versions as checked here,
/// versions in publication order, files added to a version one by one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Generic;

impl registry_core::FormatRules for Generic {
    fn format(&self) -> registry_core::PackageFormat {
        registry_core::PackageFormat::Generic
    }

    fn package_key(&self, name: &str) -> Result<String> {
        check_name(name).map(|()| name.to_owned())
    }

    fn version_key(&self, version: &str) -> Result<String> {
        check_version(version).map(|()| version.to_owned())
    }

    fn compare_versions(&self, _: &str, _: &str) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::AddFiles
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests::default()
    }
}
