//! Sans-IO rules of each package format: what names, versions and file names are valid, how
//! uploads are read and what clients are served. No I/O: callers hand in bytes and get values
//! or a [`registry_core::Error::PackageInvalid`] naming what is wrong.
//!
//! - [`archive`]: the bounded, path-safe gzip tar walk every tarball format uses;
//! - [`generic`]: Generic packages — files under a name and version;
//! - [`maven`]: Maven — the repository layout's paths, Maven's version order, poms'
//!   coordinates and `maven-metadata.xml`;
//! - [`npm`]: npm — names, the publish document and its tarball, packuments;
//! - [`nuget`]: NuGet — package ids, versions as NuGet normalizes and orders them, nuspecs and
//!   the v3 protocol's documents;
//! - [`terraform`]: Terraform modules — module addresses, SemVer versions, module archives
//!   checked for a root module, the registry protocol's documents;
//! - [`pypi`]: Python packages — names, versions, distribution files and their core metadata,
//!   the Simple API in HTML and JSON.
#![deny(rustdoc::broken_intra_doc_links)]

pub mod archive;
pub mod generic;
pub mod maven;
pub mod npm;
pub mod nuget;
pub mod pages;
pub mod pypi;
pub mod terraform;

use std::cmp::Ordering;

use registry_core::{FormatRules, PackageFormat};

/// Refuses a package-name pattern with uppercase letters for a format that stores names
/// lowercase (`stored` says how, in the error): it could only match spellings never stored.
pub(crate) fn check_lowercase_pattern(
    pattern: &registry_core::NameRegex,
    stored: &str,
) -> registry_core::Result<()> {
    let source = pattern.as_str();
    if source.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(registry_core::Error::PackageInvalid {
            reason: format!(
                "the pattern {source:?} cannot match a name as stored: {stored} (write {:?})",
                source.to_ascii_lowercase()
            ),
        });
    }
    Ok(())
}

/// Orders two versions by a format's parser: parsed ones by their order, lowest first;
/// text the parser refuses (stored versions always parse) after them, by text, so the order
/// stays total.
pub(crate) fn order_by<V: Ord, E>(
    parse: impl Fn(&str) -> Result<V, E>,
    a: &str,
    b: &str,
) -> Ordering {
    match (parse(a), parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// A time as RFC 3339 writes it (`2020-01-01T00:00:00.000Z`, any fraction of a second), as a
/// timestamp; `None` when it is not one.
pub(crate) fn rfc3339(text: &str) -> Option<registry_core::Timestamp> {
    let time = humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339_weak(text.trim_end_matches('Z')))
        .ok()?;
    let millis = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(registry_core::Timestamp(i64::try_from(millis).ok()?))
}

/// The name a package of `format` is stored under (`None`: a format not served, or a name it
/// refuses) — what advisories are filed under ([`registry_core::firewall::Advisories::add_json`]).
pub fn package_key(format: PackageFormat, name: &str) -> Option<String> {
    rules(format)?.package_key(name).ok()
}

/// The rules of a format this registry serves; `None` for formats not served yet (their
/// repositories are refused).
pub fn rules(format: PackageFormat) -> Option<&'static dyn FormatRules> {
    match format {
        PackageFormat::Generic => Some(&generic::Generic),
        PackageFormat::Maven => Some(&maven::Maven),
        PackageFormat::Npm => Some(&npm::Npm),
        PackageFormat::Nuget => Some(&nuget::Nuget),
        PackageFormat::Pypi => Some(&pypi::Pypi),
        PackageFormat::Terraform => Some(&terraform::Terraform),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_names_the_command_that_installs_a_version() {
        let base = "https://registry.example";
        let cases = [
            (
                PackageFormat::Npm,
                "@scope/pkg",
                "npm install --registry https://registry.example/npm/repo/ @scope/pkg@1.0.0",
            ),
            (
                PackageFormat::Pypi,
                "Demo",
                "pip install --index-url https://registry.example/pypi/repo/simple/ Demo==1.0.0",
            ),
            (
                PackageFormat::Maven,
                "org.example:lib",
                "mvn dependency:get -Dartifact=org.example:lib:1.0.0 -DremoteRepositories=https://registry.example/maven/repo/",
            ),
            (
                PackageFormat::Nuget,
                "Demo.Lib",
                "nuget install Demo.Lib -Version 1.0.0 -Source https://registry.example/nuget/repo/v3/index.json",
            ),
            (
                PackageFormat::Generic,
                "tool",
                "curl https://registry.example/generic/repo/tool/1.0.0",
            ),
            (
                PackageFormat::Terraform,
                "vpc/aws",
                "module \"vpc\" {\n  source  = \"registry.example/repo/vpc/aws\"\n  version = \"1.0.0\"\n}",
            ),
            (
                PackageFormat::Terraform,
                "provider:random",
                "random = {\n  source  = \"registry.example/repo/random\"\n  version = \"1.0.0\"\n}",
            ),
        ];
        for (format, name, command) in cases {
            let pages = pages::pages(format).unwrap();
            assert_eq!(
                pages
                    .install_command(base, "repo", name, "1.0.0")
                    .as_deref(),
                Some(command)
            );
        }
    }

    #[test]
    fn readmes_come_from_the_document_or_the_core_metadata() {
        use pages::Readme;
        let npm = pages::pages(PackageFormat::Npm).unwrap();
        assert!(!npm.readme_in_sidecar());
        assert_eq!(
            npm.readme(r##"{"readme": "# Hi"}"##, None),
            Some(Readme::markdown("# Hi"))
        );
        assert_eq!(npm.readme(r#"{"readme": "  "}"#, None), None);
        assert_eq!(npm.readme("not json", None), None);
        assert_eq!(
            npm.description(r#"{"description": "says hi"}"#).as_deref(),
            Some("says hi")
        );

        let pypi = pages::pages(PackageFormat::Pypi).unwrap();
        assert!(pypi.readme_in_sidecar());
        let body = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nDescription-Content-Type: text/markdown; charset=UTF-8\n\n# Demo\n\nText.\n";
        assert_eq!(
            pypi.readme("{}", Some(body)),
            Some(Readme::markdown("# Demo\n\nText.\n"))
        );
        let field = b"Metadata-Version: 1.2\r\nName: demo\r\nVersion: 1.0\r\nDescription: Old\r\n        |\r\n        |style\r\nKeywords: x\r\n";
        assert_eq!(
            pypi.readme("{}", Some(field)),
            Some(Readme {
                text: "Old\n\nstyle".into(),
                markdown: false
            })
        );
        assert_eq!(
            pypi.readme(
                "{}",
                Some(b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
            ),
            None
        );
        assert_eq!(pypi.readme("{}", Some(b"not metadata")), None);
        assert_eq!(pypi.readme("{}", None), None);
        assert_eq!(
            pypi.description(r#"{"summary": "a demo"}"#).as_deref(),
            Some("a demo")
        );

        let nuget = pages::pages(PackageFormat::Nuget).unwrap();
        assert_eq!(
            nuget
                .description(r#"{"description": "Says hello."}"#)
                .as_deref(),
            Some("Says hello.")
        );
        assert_eq!(npm.description(r#"{"description": " "}"#), None);
        assert_eq!(
            nuget.status_label(&registry_core::VersionStatus::Hidden),
            Some("unlisted")
        );
        assert_eq!(
            npm.status_label(&registry_core::VersionStatus::Hidden),
            Some("hidden")
        );
        assert_eq!(
            npm.status_label(&registry_core::VersionStatus::Default),
            None
        );
    }
}
