//! Terraform modules and providers ([`providers`]). Modules, as the module registry protocol
//! (`modules.v1`) addresses them:
//! `<namespace>/<name>/<system>` at a version. The namespace is the package repository; a
//! package is `<name>/<system>`, stored lowercase (registry addresses compare without case);
//! versions are strict SemVer (`1.2.0`, `2.0.0-rc.1`; no `v`), ordered by SemVer.
//!
//! A module archive (`.tar.gz` or `.zip`, told apart by its first bytes) is checked before it is
//! kept: bounded in entries and expanded bytes, every path relative and inside, no links, and a
//! root module — a `.tf` or `.tf.json` file at the archive's root, or at the root of its one
//! top-level directory (as tarballs of a source tree have it), which downloads then name with
//! go-getter's `//<directory>` suffix.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::ops::ControlFlow;
use std::path::{Component, Path};

use registry_core::{Error, Result};
use serde_json::{Value, json};

pub mod providers;

fn invalid(reason: impl Into<String>) -> Error {
    Error::PackageInvalid {
        reason: reason.into(),
    }
}

/// Checks a module name as the registry protocol allows it: 1 to 64 letters, digits, `-` and
/// `_`, starting and ending with a letter or digit.
pub fn check_module_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a module name: 1 to 64 letters, digits, '-' or '_', starting and \
             ending with a letter or digit"
        )))
    }
}

/// Checks a module's target system (`aws`, `local`): 1 to 64 lowercase letters and digits.
pub fn check_system(system: &str) -> Result<()> {
    let valid = !system.is_empty()
        && system.len() <= 64
        && system
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{system:?} is not a target system: 1 to 64 lowercase letters and digits"
        )))
    }
}

/// The package a module is stored as: `<name>/<system>`, lowercase.
pub fn package_name(name: &str, system: &str) -> String {
    format!("{}/{system}", name.to_ascii_lowercase())
}

/// Parses a strict SemVer version (what Terraform's registry serves).
///
/// Errors ([`Error::PackageInvalid`]): anything else (`v1.0.0`, `1.0`, leading zeros).
pub fn parse_version(version: &str) -> Result<nodejs_semver::Version> {
    let wrong = || {
        invalid(format!(
            "{version:?} is not a version Terraform's registries serve: use SemVer, such as \
             1.2.0 or 2.0.0-rc.1"
        ))
    };
    if version.len() > 128 {
        return Err(wrong());
    }
    let parsed = nodejs_semver::Version::parse(version).map_err(|_| wrong())?;
    // The parser is lenient (`v1.0.0`, `=1.0.0`, spaces): only its own spelling is accepted.
    if parsed.to_string() != version {
        return Err(wrong());
    }
    // Versions that differ only in build metadata are one version to terraform.
    if !parsed.build.is_empty() {
        return Err(invalid(format!(
            "{version:?} has build metadata, which terraform ignores: use a version without '+'"
        )));
    }
    Ok(parsed)
}

/// The kinds of module archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A gzip tar.
    TarGz,
    /// A zip.
    Zip,
}

impl ArchiveKind {
    /// The kind of an archive by its first bytes; `None` for neither.
    pub fn sniff(start: &[u8]) -> Option<ArchiveKind> {
        if start.starts_with(&[0x1f, 0x8b]) {
            Some(ArchiveKind::TarGz)
        } else if start.starts_with(b"PK\x03\x04") {
            Some(ArchiveKind::Zip)
        } else {
            None
        }
    }

    /// The file name downloads use (go-getter reads the archive type from it).
    pub fn file_name(self) -> &'static str {
        match self {
            ArchiveKind::TarGz => "module.tar.gz",
            ArchiveKind::Zip => "module.zip",
        }
    }

    /// The kind a download file name names.
    pub fn from_file_name(name: &str) -> Option<ArchiveKind> {
        [ArchiveKind::TarGz, ArchiveKind::Zip]
            .into_iter()
            .find(|k| k.file_name() == name)
    }
}

/// The bounds a module archive is checked within.
#[derive(Clone, Copy, Debug)]
pub struct ModuleLimits {
    /// The most entries.
    pub max_entries: u64,
    /// The most bytes it expands to.
    pub max_expanded: u64,
}

impl Default for ModuleLimits {
    /// 10,000 entries, 512 MiB expanded.
    fn default() -> Self {
        ModuleLimits {
            max_entries: 10_000,
            max_expanded: 512 << 20,
        }
    }
}

/// What checking a module archive found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleArchive {
    /// Its kind.
    pub kind: ArchiveKind,
    /// The directory holding the root module, when it is not the archive's root.
    pub root: Option<String>,
}

/// Checks a module archive (see the module docs); `start` holds its first bytes.
///
/// Errors ([`Error::PackageInvalid`]): neither a gzip tar nor a zip, over the limits, an unsafe
/// path or a link, no root module.
pub fn check_module_archive(
    mut reader: impl Read + Seek,
    limits: ModuleLimits,
) -> Result<ModuleArchive> {
    let mut start = [0u8; 4];
    let read = read_start(&mut reader, &mut start)?;
    let kind = ArchiveKind::sniff(&start[..read])
        .ok_or_else(|| invalid("the module archive is neither a .tar.gz nor a .zip"))?;
    reader
        .seek(std::io::SeekFrom::Start(0))
        .map_err(|e| Error::backend(e.to_string()))?;
    let mut files: Vec<String> = Vec::new();
    match kind {
        ArchiveKind::TarGz => {
            let bounds = crate::archive::TarLimits {
                max_entries: limits.max_entries,
                max_expanded: limits.max_expanded,
                links: false,
            };
            crate::archive::walk_gzip_tar(reader, "the module archive", bounds, |path, _| {
                files.push(path_text(path));
                Ok(ControlFlow::<()>::Continue(()))
            })?;
        }
        ArchiveKind::Zip => {
            let zip_limits = crate::archive::ZipLimits {
                max_entries: limits.max_entries,
                ..crate::archive::ZipLimits::default()
            };
            let mut archive = crate::archive::open_zip(reader, "the module archive", zip_limits)?;
            let mut expanded = 0u64;
            for index in 0..archive.len() {
                let entry = archive
                    .by_index_raw(index)
                    .map_err(|e| invalid(format!("the module archive is not a zip: {e}")))?;
                if entry.is_symlink() {
                    return Err(invalid(format!(
                        "the module archive holds a link: {}",
                        entry.name()
                    )));
                }
                expanded = expanded.saturating_add(entry.size());
                if expanded > limits.max_expanded {
                    return Err(invalid(format!(
                        "the module archive expands beyond {} bytes",
                        limits.max_expanded
                    )));
                }
                files.push(entry.name().to_owned());
            }
        }
    }
    Ok(ModuleArchive {
        kind,
        root: root_module(&files)?,
    })
}

fn read_start(reader: &mut impl Read, start: &mut [u8]) -> Result<usize> {
    let mut read = 0;
    while read < start.len() {
        match reader.read(&mut start[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Error::backend(e.to_string())),
        }
    }
    Ok(read)
}

/// A path's plain names joined by `/` (`./main.tf` is `main.tf`).
fn path_text(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn is_configuration(name: &str) -> bool {
    name.ends_with(".tf") || name.ends_with(".tf.json")
}

/// Where the root module is: `None` for the archive's root, or its one top-level directory.
fn root_module(files: &[String]) -> Result<Option<String>> {
    let files: Vec<&str> = files
        .iter()
        .map(|f| f.trim_start_matches("./").trim_end_matches('/'))
        .filter(|f| !f.is_empty())
        .collect();
    if files
        .iter()
        .any(|f| !f.contains('/') && is_configuration(f))
    {
        return Ok(None);
    }
    let tops: BTreeSet<&str> = files
        .iter()
        .map(|f| f.split('/').next().unwrap_or(f))
        .collect();
    // go-getter reads the directory from the download URL (`//<dir>`), where only plain names
    // are safe.
    let plain = |name: &str| {
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if let [top] = tops.into_iter().collect::<Vec<_>>().as_slice()
        && plain(top)
    {
        let inside = |f: &&str| {
            f.strip_prefix(top)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.contains('/') && is_configuration(rest))
        };
        if files.iter().any(inside) {
            return Ok(Some((*top).to_owned()));
        }
    }
    Err(invalid(
        "the module archive has no root module: put a .tf file at its root (or at the root of \
         its one top-level directory, named with letters, digits, '.', '_' and '-')",
    ))
}

/// The service discovery document (`/.well-known/terraform.json`), naming the module and
/// provider APIs' base paths.
pub fn discovery(modules_base: &str, providers_base: &str) -> Value {
    json!({ "modules.v1": modules_base, "providers.v1": providers_base })
}

/// A module's versions list, as `terraform init` reads it.
pub fn versions_document(versions: &[String]) -> Value {
    let versions: Vec<Value> = versions.iter().map(|v| json!({ "version": v })).collect();
    json!({ "modules": [{ "versions": versions }] })
}

/// Terraform's rules for the package service: modules `<name>/<system>` stored lowercase,
/// providers `provider:<type>`, strict SemVer versions in SemVer order, a whole version per
/// upload (a provider release's further files are attached to it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Terraform;

impl registry_core::FormatRules for Terraform {
    fn format(&self) -> registry_core::PackageFormat {
        registry_core::PackageFormat::Terraform
    }

    fn package_key(&self, name: &str) -> Result<String> {
        if let Some(kind) = name.strip_prefix(providers::PROVIDER_PREFIX) {
            providers::check_provider_type(kind)?;
            return Ok(name.to_owned());
        }
        let (module, system) = name
            .split_once('/')
            .ok_or_else(|| invalid(format!("{name:?} is not <module>/<system>")))?;
        check_module_name(module)?;
        check_system(system)?;
        Ok(package_name(module, system))
    }

    fn version_key(&self, version: &str) -> Result<String> {
        parse_version(version).map(|v| v.to_string())
    }

    fn compare_versions(&self, a: &str, b: &str) -> Ordering {
        crate::order_by(parse_version, a, b)
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::NewVersion
    }

    fn check_name_pattern(&self, pattern: &registry_core::NameRegex) -> Result<()> {
        crate::check_lowercase_pattern(pattern, "module names are stored lowercase")
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests::default()
    }
}

impl crate::pages::FormatPages for Terraform {
    /// A `module` block for modules (`<name>/<system>`), a `required_providers` entry for
    /// providers; Terraform addresses both by host, without the scheme.
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        let host = registry
            .split_once("://")
            .map_or(registry, |(_, host)| host);
        Some(match name.strip_prefix(providers::PROVIDER_PREFIX) {
            Some(kind) => format!(
                "{kind} = {{\n  source  = \"{host}/{repository}/{kind}\"\n  version = \"{version}\"\n}}"
            ),
            None => {
                let (module, _) = name.split_once('/')?;
                format!(
                    "module \"{module}\" {{\n  source  = \"{host}/{repository}/{name}\"\n  version = \"{version}\"\n}}"
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_core::FormatRules;

    fn tar_gz(entries: &[(&str, &[u8])], link: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Written raw: the builder refuses the unsafe names these tests need.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        if let Some(name) = link {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, name, "/etc/passwd")
                .unwrap();
        }
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
        gzip.finish().unwrap()
    }

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut writer, data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn check(bytes: Vec<u8>) -> Result<ModuleArchive> {
        check_module_archive(std::io::Cursor::new(bytes), ModuleLimits::default())
    }

    #[test]
    fn archives_with_a_root_module_are_accepted() {
        let main: &[u8] = b"output \"x\" { value = 1 }";
        assert_eq!(
            check(tar_gz(&[("main.tf", main), ("modules/a/x.tf", main)], None)).unwrap(),
            ModuleArchive {
                kind: ArchiveKind::TarGz,
                root: None
            }
        );
        assert_eq!(
            check(tar_gz(&[("./hello-1.0/main.tf.json", b"{}")], None))
                .unwrap()
                .root
                .as_deref(),
            Some("hello-1.0")
        );
        assert_eq!(
            check(zip(&[("main.tf", main)])).unwrap().kind,
            ArchiveKind::Zip
        );
        // `git archive` starts with a PAX global header: no entry of the module.
        let mut builder = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XGlobalHeader);
        let record = b"52 comment=0123456789012345678901234567890123456789\n";
        pax.set_size(record.len() as u64);
        pax.as_old_mut().name[..17].copy_from_slice(b"pax_global_header");
        pax.set_cksum();
        builder.append(&pax, &record[..]).unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_size(main.len() as u64);
        file.set_mode(0o644);
        file.set_cksum();
        builder
            .append_data(&mut file, "hello-1.0/main.tf", main)
            .unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
        assert_eq!(
            check(gzip.finish().unwrap()).unwrap().root.as_deref(),
            Some("hello-1.0")
        );
    }

    #[test]
    fn bad_archives_are_refused() {
        let main: &[u8] = b"";
        for (what, bytes) in [
            ("not an archive", b"hello".to_vec()),
            ("no module", tar_gz(&[("README.md", main)], None)),
            ("nested too deep", tar_gz(&[("a/b/main.tf", main)], None)),
            (
                "two tops",
                tar_gz(&[("a/main.tf", main), ("b/x", main)], None),
            ),
            ("a link", tar_gz(&[("main.tf", main)], Some("evil"))),
            (
                "traversal",
                tar_gz(&[("main.tf", main), ("../x.tf", main)], None),
            ),
            (
                "zip traversal",
                zip(&[("main.tf", main), ("../x.tf", main)]),
            ),
        ] {
            assert!(check(bytes).is_err(), "{what}");
        }
        // A second gzip member is read as every client reads it: when the first ends without
        // the tar's end blocks, the second's link is an entry of the archive, and refused.
        let gunzip = |bytes: Vec<u8>| {
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut tar)
                .unwrap();
            tar
        };
        let mut open_tar = gunzip(tar_gz(&[("main.tf", main)], None));
        open_tar.truncate(open_tar.len() - 1024);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &open_tar).unwrap();
        let first = gzip.finish().unwrap();
        let second = tar_gz(&[], Some("leak.tf"));
        assert!(check([first.clone(), second].concat()).is_err());
        assert!(check([first, b"trailing garbage".to_vec()].concat()).is_err());
        let bomb = tar_gz(&[("main.tf", &vec![0u8; 4 << 20])], None);
        let small = ModuleLimits {
            max_entries: 10,
            max_expanded: 1 << 20,
        };
        assert!(check_module_archive(std::io::Cursor::new(bomb), small).is_err());
    }

    #[test]
    fn names_and_versions_follow_the_registry_protocol() {
        assert_eq!(Terraform.package_key("Hello/aws").unwrap(), "hello/aws");
        for bad in ["hello", "hello/AWS", "-x/aws", "a/b/c", "x_/aws", "h e/aws"] {
            assert!(Terraform.package_key(bad).is_err(), "{bad}");
        }
        for good in ["1.0.0", "0.1.2-rc.1"] {
            assert!(parse_version(good).is_ok(), "{good}");
        }
        for bad in [
            "v1.0.0",
            "1.0",
            "01.0.0",
            "=1.0.0",
            " 1.0.0",
            "",
            "2.0.0+build",
        ] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Terraform.compare_versions("1.10.0", "1.9.0"),
            Ordering::Greater
        );
        assert_eq!(
            Terraform.compare_versions("1.0.0-rc.1", "1.0.0"),
            Ordering::Less
        );
        assert_eq!(
            versions_document(&["1.0.0".into()]),
            json!({"modules": [{"versions": [{"version": "1.0.0"}]}]})
        );
    }
}
