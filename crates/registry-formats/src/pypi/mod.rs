//! Python packages: project names (PEP 503 normalization), versions (PEP 440), distribution
//! file names, core metadata read from wheels and sdists, and the Simple repository API as
//! HTML (PEP 503) and JSON (PEP 691, with PEP 700's fields) — including the core-metadata
//! links of PEP 658/714, `requires-python` and yanking (PEP 592).
//!
//! An upload is accepted only when the form's name and version, the file name and the
//! metadata inside the file all agree.

mod upstream;

pub use upstream::{project_path, read_project_json};

use std::io::{Read, Seek};
use std::str::FromStr;

use registry_core::{Error, Result};
use serde_json::{Value, json};

/// The largest core-metadata file read from a distribution.
pub const MAX_METADATA_SIZE: u64 = 4 << 20;

fn invalid(reason: impl Into<String>) -> Error {
    Error::PackageInvalid {
        reason: reason.into(),
    }
}

/// A project name normalized as PEP 503 says: lowercase, runs of `-`, `_` and `.` made one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Checks a project name (PEP 508): ASCII letters and digits, with `.`, `_` and `-` inside.
pub fn check_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 200
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a valid project name: use ASCII letters and digits, with '.', '_' \
             or '-' between them"
        )))
    }
}

/// A version in its PEP 440 normal form (`1.0.0RC1` → `1.0.0rc1`).
pub fn normalize_version(version: &str) -> Result<String> {
    pep440_rs::Version::from_str(version)
        .map(|v| v.to_string())
        .map_err(|e| invalid(format!("{version:?} is not a valid PEP 440 version: {e}")))
}

/// The release a version is under PEP 440's equality: trailing zeros of the release dropped
/// and the local label ignored (`1.0.0+x` is `1`); an unparsable version is itself.
pub fn version_identity(version: &str) -> String {
    let Ok(parsed) = pep440_rs::Version::from_str(version) else {
        return version.to_owned();
    };
    let mut release = parsed.release().to_vec();
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    parsed.without_local().with_release(release).to_string()
}

/// Whether a version is a pre-release.
pub fn is_prerelease(version: &str) -> bool {
    pep440_rs::Version::from_str(version).is_ok_and(|v| v.any_prerelease())
}

/// Sorts versions in PEP 440 order (unparsable ones last, by text).
pub fn sort_versions(versions: &mut [String]) {
    versions.sort_by(|a, b| compare_versions(a, b));
}

/// Orders two versions by PEP 440 (unparsable ones after, by text).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    crate::order_by(pep440_rs::Version::from_str, a, b)
}

/// A kind of distribution file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistKind {
    /// A built wheel (`.whl`).
    Wheel,
    /// A source distribution (`.tar.gz`).
    Sdist,
}

impl DistKind {
    /// The upload form's `filetype`.
    pub const fn filetype(self) -> &'static str {
        match self {
            DistKind::Wheel => "bdist_wheel",
            DistKind::Sdist => "sdist",
        }
    }
}

/// What a distribution's file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistFile {
    /// Wheel or sdist.
    pub kind: DistKind,
    /// The project name as written in the file name.
    pub name: String,
    /// The version as written in the file name.
    pub version: String,
}

/// Reads a distribution file name: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`
/// or `{name}-{version}.tar.gz`.
pub fn parse_filename(filename: &str) -> Result<DistFile> {
    let bad = |why: &str| {
        Err(invalid(format!(
            "{filename:?} is not a distribution file name: {why}"
        )))
    };
    if filename.is_empty()
        || filename.len() > 255
        || !filename
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+!".contains(&b))
    {
        return bad("use ASCII letters, digits, '.', '_', '-', '+' and '!'");
    }
    if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        if !(5..=6).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return bad("a wheel is name-version[-build]-python-abi-platform.whl");
        }
        return Ok(DistFile {
            kind: DistKind::Wheel,
            name: parts[0].to_owned(),
            version: parts[1].to_owned(),
        });
    }
    if let Some(stem) = filename.strip_suffix(".tar.gz") {
        let Some((name, version)) = stem.rsplit_once('-') else {
            return bad("an sdist is name-version.tar.gz");
        };
        if name.is_empty() || version.is_empty() {
            return bad("an sdist is name-version.tar.gz");
        }
        return Ok(DistFile {
            kind: DistKind::Sdist,
            name: name.to_owned(),
            version: version.to_owned(),
        });
    }
    bad("only wheels (.whl) and sdists (.tar.gz) are accepted")
}

/// What the registry reads from a distribution's core metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreMetadata {
    /// `Metadata-Version`.
    pub metadata_version: String,
    /// `Name`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Requires-Python`, if any.
    pub requires_python: Option<String>,
    /// `Summary`, if any.
    pub summary: Option<String>,
    /// The long description: the body after the headers (metadata 2.1 and later), or else the
    /// `Description` field with its continuation lines unfolded (the `        |` prefix older
    /// tools write removed).
    pub description: Option<String>,
    /// `Description-Content-Type`, if any.
    pub description_content_type: Option<String>,
}

/// Parses core metadata (`METADATA` / `PKG-INFO`): RFC 822 style headers up to the first blank
/// line, then the description as the body.
pub fn parse_core_metadata(text: &[u8]) -> Result<CoreMetadata> {
    let text = std::str::from_utf8(text).map_err(|_| invalid("the core metadata is not UTF-8"))?;
    let mut metadata = CoreMetadata::default();
    let mut last: Option<String> = None;
    let mut lines = text.split_inclusive('\n');
    for raw in lines.by_ref() {
        let line = raw.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation of the previous header: `Summary` is kept on one line, the
            // `Description` field line by line.
            match (
                last.as_deref(),
                &mut metadata.summary,
                &mut metadata.description,
            ) {
                (Some("summary"), Some(summary), _) => {
                    summary.push(' ');
                    summary.push_str(line.trim());
                }
                (Some("description"), _, Some(description)) => {
                    description.push('\n');
                    description
                        .push_str(line.strip_prefix("        |").unwrap_or(line.trim_start()));
                }
                _ => {}
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(invalid(format!(
                "the core metadata has a malformed line: {line:?}"
            )));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().to_owned();
        match key.as_str() {
            "metadata-version" => metadata.metadata_version = value,
            "name" => metadata.name = value,
            "version" => metadata.version = value,
            "requires-python" if !value.is_empty() => {
                pep440_rs::VersionSpecifiers::from_str(&value).map_err(|e| {
                    invalid(format!(
                        "Requires-Python {value:?} is not a version specifier: {e}"
                    ))
                })?;
                metadata.requires_python = Some(value);
            }
            "summary" => metadata.summary = Some(value),
            "description" => metadata.description = Some(value),
            "description-content-type" => metadata.description_content_type = Some(value),
            _ => {}
        }
        last = Some(key);
    }
    let body: String = lines.collect();
    if !body.trim().is_empty() {
        metadata.description = Some(body.replace("\r\n", "\n"));
    }
    if metadata.metadata_version.is_empty()
        || metadata.name.is_empty()
        || metadata.version.is_empty()
    {
        return Err(invalid(
            "the core metadata lacks Metadata-Version, Name or Version",
        ));
    }
    Ok(metadata)
}

fn read_limited(reader: impl Read, what: &str) -> Result<Vec<u8>> {
    crate::archive::read_bounded(reader, what, MAX_METADATA_SIZE)
}

/// The `METADATA` file of a wheel: `{name}-{version}.dist-info/METADATA` at the top level,
/// where name and version are the wheel file name's (PEP 427; compared normalized, as pip
/// does). A wheel whose metadata directory names another project or version, or that has more
/// than one, is refused. Only that entry is decompressed (with a size bound), whatever else the
/// archive holds.
pub fn wheel_metadata(reader: impl Read + Seek, file: &DistFile) -> Result<Vec<u8>> {
    let mut archive =
        crate::archive::open_zip(reader, "the wheel", crate::archive::ZipLimits::default())?;
    let mut directories: Vec<&str> = archive
        .file_names()
        .filter_map(|n| n.split_once('/').map(|(dir, _)| dir))
        .filter(|dir| dir.ends_with(".dist-info"))
        .collect();
    directories.sort_unstable();
    directories.dedup();
    let directory = match directories.as_slice() {
        [] => return Err(invalid("the wheel has no .dist-info/METADATA")),
        [one] => (*one).to_owned(),
        more => {
            return Err(invalid(format!(
                "the wheel has {} .dist-info directories; PEP 427 allows one",
                more.len()
            )));
        }
    };
    let expected = format!("{}-{}.dist-info", file.name, file.version);
    let matches = directory
        .strip_suffix(".dist-info")
        .and_then(|stem| stem.rsplit_once('-'))
        .is_some_and(|(name, version)| {
            let versions = (normalize_version(version), normalize_version(&file.version));
            normalize(name) == normalize(&file.name) && matches!(versions, (Ok(a), Ok(b)) if a == b)
        });
    if !matches {
        return Err(invalid(format!(
            "the wheel's metadata directory is {directory}, not {expected} (PEP 427)"
        )));
    }
    let name = format!("{directory}/METADATA");
    crate::archive::read_zip_entry(&mut archive, &name, "the wheel", MAX_METADATA_SIZE)
}

/// How much of an sdist's expanded tar is read looking for `PKG-INFO` (it is normally the
/// first entry or close to it).
pub const MAX_SDIST_SCAN: u64 = 256 << 20;

/// How many entries of an sdist are walked looking for `PKG-INFO`.
pub const MAX_SDIST_ENTRIES: u64 = 100_000;

/// The `PKG-INFO` file of a gzip tar sdist: `{name}-{version}/PKG-INFO`. Every path is checked
/// on the way (no absolute paths, no `..`), and no more than [`MAX_SDIST_SCAN`] expanded bytes
/// are read.
pub fn sdist_metadata(reader: impl Read) -> Result<Vec<u8>> {
    let bounds = crate::archive::TarLimits {
        max_entries: MAX_SDIST_ENTRIES,
        max_expanded: MAX_SDIST_SCAN,
        links: true,
    };
    crate::archive::walk_gzip_tar(reader, "the sdist", bounds, |path, entry| {
        if path.components().count() == 2 && path.file_name().is_some_and(|f| f == "PKG-INFO") {
            return read_limited(entry, "the sdist's PKG-INFO").map(std::ops::ControlFlow::Break);
        }
        Ok(std::ops::ControlFlow::Continue(()))
    })?
    .ok_or_else(|| invalid("the sdist has no {name}-{version}/PKG-INFO"))
}

/// Checks that the upload form, the file name and the file's metadata name one project and
/// version. Returns the normalized project name and version.
pub fn check_upload(
    form_name: &str,
    form_version: &str,
    file: &DistFile,
    metadata: &CoreMetadata,
) -> Result<(String, String)> {
    check_name(form_name)?;
    let project = normalize(form_name);
    let version = normalize_version(form_version)?;
    for (what, name) in [
        ("file name", file.name.as_str()),
        ("metadata", metadata.name.as_str()),
    ] {
        if normalize(name) != project {
            return Err(invalid(format!(
                "the {what} names project {name:?}, the upload form {form_name:?}"
            )));
        }
    }
    for (what, other) in [
        ("file name", file.version.as_str()),
        ("metadata", metadata.version.as_str()),
    ] {
        if normalize_version(other)? != version {
            return Err(invalid(format!(
                "the {what} says version {other}, the upload form {form_version}"
            )));
        }
    }
    Ok((project, version))
}

/// A file on a project page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleFile {
    /// The file name.
    pub filename: String,
    /// Its URL.
    pub url: String,
    /// Its SHA-256 hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Upload time, in ms since the epoch.
    pub upload_time: i64,
    /// `Requires-Python` of the file.
    pub requires_python: Option<String>,
    /// The yank reason (empty for none given) when yanked.
    pub yanked: Option<String>,
    /// SHA-256 hex of its core-metadata file, when one is served (at `url` + `.metadata`).
    pub core_metadata: Option<String>,
}

/// A project page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleProject {
    /// The normalized name.
    pub name: String,
    /// Every version (PEP 700), in PEP 440 order.
    pub versions: Vec<String>,
    /// Every file.
    pub files: Vec<SimpleFile>,
}

/// The Simple API's two forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimpleFormat {
    /// PEP 503 HTML.
    Html,
    /// PEP 691 JSON.
    Json,
}

/// The JSON content type.
pub const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";
/// The versioned HTML content type.
pub const SIMPLE_HTML: &str = "application/vnd.pypi.simple.v1+html";

/// Picks the form an `Accept` header prefers (PEP 691): the highest `q` among the JSON and
/// HTML types (`text/html` and `*/*` count as HTML); no header means HTML. `None` when the
/// client accepts neither (answer 406).
pub fn negotiate(accept: Option<&str>) -> Option<(SimpleFormat, &'static str)> {
    let Some(accept) = accept else {
        return Some((SimpleFormat::Html, "text/html"));
    };
    let mut best: Option<(f32, SimpleFormat, &'static str)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let choice = match media.as_str() {
            SIMPLE_JSON | "application/vnd.pypi.simple.latest+json" => {
                (SimpleFormat::Json, SIMPLE_JSON)
            }
            SIMPLE_HTML | "application/vnd.pypi.simple.latest+html" => {
                (SimpleFormat::Html, SIMPLE_HTML)
            }
            "text/html" | "*/*" | "text/*" => (SimpleFormat::Html, "text/html"),
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _, _)| q > b) {
            best = Some((q, choice.0, choice.1));
        }
    }
    best.map(|(_, format, content_type)| (format, content_type))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The project page as PEP 503 HTML.
pub fn project_html(project: &SimpleProject) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\">\
         <title>Links for {0}</title></head>\n<body>\n<h1>Links for {0}</h1>\n",
        escape(&project.name)
    );
    for file in &project.files {
        let mut attributes = format!("href=\"{}#sha256={}\"", escape(&file.url), file.sha256);
        if let Some(requires) = &file.requires_python {
            attributes.push_str(&format!(" data-requires-python=\"{}\"", escape(requires)));
        }
        if let Some(reason) = &file.yanked {
            attributes.push_str(&format!(" data-yanked=\"{}\"", escape(reason)));
        }
        if let Some(metadata) = &file.core_metadata {
            attributes.push_str(&format!(
                " data-core-metadata=\"sha256={metadata}\" data-dist-info-metadata=\"sha256={metadata}\""
            ));
        }
        html.push_str(&format!(
            "<a {attributes}>{}</a><br/>\n",
            escape(&file.filename)
        ));
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// The project page as PEP 691 JSON (API version 1.1: `versions`, `size`, `upload-time`).
pub fn project_json(project: &SimpleProject) -> Value {
    let files: Vec<Value> = project
        .files
        .iter()
        .map(|file| {
            let mut entry = json!({
                "filename": file.filename,
                "url": file.url,
                "hashes": { "sha256": file.sha256 },
                "size": file.size,
                "upload-time": crate::npm::iso_time(file.upload_time),
            });
            if let Some(requires) = &file.requires_python {
                entry["requires-python"] = json!(requires);
            }
            if let Some(reason) = &file.yanked {
                entry["yanked"] = if reason.is_empty() {
                    json!(true)
                } else {
                    json!(reason)
                };
            }
            if let Some(metadata) = &file.core_metadata {
                entry["core-metadata"] = json!({ "sha256": metadata });
                entry["dist-info-metadata"] = json!({ "sha256": metadata });
            }
            entry
        })
        .collect();
    json!({
        "meta": { "api-version": "1.1" },
        "name": project.name,
        "versions": project.versions,
        "files": files,
    })
}

/// The root index as PEP 503 HTML: one link per project.
pub fn index_html(projects: &[String]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\">\
         <title>Simple index</title></head>\n<body>\n",
    );
    for name in projects {
        let name = escape(name);
        html.push_str(&format!("<a href=\"{name}/\">{name}</a><br/>\n"));
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// The root index as PEP 691 JSON.
pub fn index_json(projects: &[String]) -> Value {
    let projects: Vec<Value> = projects
        .iter()
        .map(|name| json!({ "name": name }))
        .collect();
    json!({ "meta": { "api-version": "1.1" }, "projects": projects })
}

impl crate::pages::FormatPages for Pypi {
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        Some(format!(
            "pip install --index-url {registry}/pypi/{repository}/simple/ {name}=={version}"
        ))
    }

    fn readme_in_sidecar(&self) -> bool {
        true
    }

    /// The core metadata's description (the sidecar), Markdown when its
    /// `Description-Content-Type` says so, else shown as text (reStructuredText, plain).
    fn readme(&self, _metadata: &str, sidecar: Option<&[u8]>) -> Option<crate::pages::Readme> {
        let metadata = parse_core_metadata(sidecar?).ok()?;
        let text = metadata.description.filter(|d| !d.trim().is_empty())?;
        let markdown = metadata.description_content_type.is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/markdown")
        });
        Some(crate::pages::Readme { text, markdown })
    }

    /// The `summary` stored with each version.
    fn description(&self, metadata: &str) -> Option<String> {
        crate::pages::text_field(metadata, "summary")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(normalize("Demo_Hello.World--x"), "demo-hello-world-x");
        assert_eq!(normalize("a"), "a");
        assert!(check_name("demo-hello").is_ok() && check_name("A.b_c").is_ok());
        for bad in ["", "-x", "x-", "a b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_version("1.0.0RC1").unwrap(), "1.0.0rc1");
        assert!(normalize_version("one").is_err());
        let mut versions = vec![
            "1.10".to_owned(),
            "1.2".into(),
            "1.2rc1".into(),
            "0.9".into(),
        ];
        sort_versions(&mut versions);
        assert_eq!(versions, ["0.9", "1.2rc1", "1.2", "1.10"]);
        assert!(is_prerelease("1.0b1") && !is_prerelease("1.0"));
    }

    #[test]
    fn file_names() {
        let wheel = parse_filename("demo_hello-1.0.0-py3-none-any.whl").unwrap();
        assert_eq!(
            (wheel.kind, wheel.name.as_str(), wheel.version.as_str()),
            (DistKind::Wheel, "demo_hello", "1.0.0")
        );
        let built = parse_filename("demo-1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl").unwrap();
        assert_eq!(built.version, "1.0");
        let sdist = parse_filename("demo_hello-1.0.0.tar.gz").unwrap();
        assert_eq!(
            (sdist.kind, sdist.name.as_str()),
            (DistKind::Sdist, "demo_hello")
        );
        for bad in [
            "x.exe",
            "../x-1.0.tar.gz",
            "a/b-1.whl",
            "x-1-py3.whl",
            "nover.tar.gz",
            "",
        ] {
            assert!(parse_filename(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn core_metadata_and_agreement() {
        let text = b"Metadata-Version: 2.1\nName: Demo_Hello\nVersion: 1.0.0\nSummary: says\n  hello\nRequires-Python: >=3.8\n\nbody: ignored\n";
        let metadata = parse_core_metadata(text).unwrap();
        assert_eq!(metadata.summary.as_deref(), Some("says hello"));
        assert_eq!(metadata.requires_python.as_deref(), Some(">=3.8"));
        let file = parse_filename("demo_hello-1.0.0-py3-none-any.whl").unwrap();
        assert_eq!(
            check_upload("demo-hello", "1.0.0", &file, &metadata).unwrap(),
            ("demo-hello".to_owned(), "1.0.0".to_owned())
        );
        assert!(check_upload("other", "1.0.0", &file, &metadata).is_err());
        assert!(check_upload("demo-hello", "2.0", &file, &metadata).is_err());
        assert!(parse_core_metadata(b"Name: x\n").is_err());
        assert!(
            parse_core_metadata(
                b"Metadata-Version: 2.1\nName: x\nVersion: 1\nRequires-Python: >>>3\n"
            )
            .is_err()
        );
        assert!(parse_core_metadata(b"no colon here\n").is_err());
    }

    #[test]
    fn content_negotiation_follows_pep_691() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        assert_eq!(negotiate(Some(pip)).unwrap().0, SimpleFormat::Json);
        assert_eq!(negotiate(None).unwrap(), (SimpleFormat::Html, "text/html"));
        assert_eq!(negotiate(Some("text/html")).unwrap().0, SimpleFormat::Html);
        assert_eq!(
            negotiate(Some(
                "application/vnd.pypi.simple.v1+json;q=0.2, text/html;q=0.9"
            ))
            .unwrap()
            .0,
            SimpleFormat::Html
        );
        assert!(negotiate(Some("application/xml")).is_none());
    }

    #[test]
    fn firewall_rules_and_advisories_match_pypi_versions_by_pep_440_equality() {
        use registry_core::firewall::{Advisories, Candidate};
        use registry_core::{Firewall, FirewallRule, FormatRules as _};
        assert_eq!(Pypi.version_identity("1.0.0"), "1");
        assert_eq!(Pypi.version_identity("1.0+evil"), "1");
        assert_eq!(Pypi.version_identity("1.0rc1"), "1rc1");
        assert_eq!(Pypi.version_identity("1.10"), "1.10");
        let rule =
            |json: serde_json::Value| -> FirewallRule { serde_json::from_value(json).unwrap() };
        let mut advisories = Advisories::new();
        advisories
            .add_json(
                serde_json::json!({"id": "MAL-1", "summary": "malware",
                    "affected": [{"package": {"ecosystem": "PyPI", "name": "Demo"}, "versions": ["2.0"]}]})
                .to_string()
                .as_bytes(),
                &|_, name| Some(normalize(name)),
            )
            .unwrap();
        let firewall = Firewall::new(
            vec![
                rule(serde_json::json!({"name": "no-one", "deny": ["pkg:pypi/demo@1.0"]})),
                rule(
                    serde_json::json!({"name": "only-two", "allow": ["pkg:pypi/demo@2.0"],
                    "exceptions": ["pkg:pypi/demo@3.0"]}),
                ),
                rule(serde_json::json!({"name": "advised", "advisories": "low"})),
            ],
            std::sync::Arc::new(advisories),
        );
        let hits = |version: &str| -> Vec<String> {
            let candidate = Candidate {
                format: registry_core::PackageFormat::Pypi,
                repository: "pypi",
                name: "demo",
                version,
                published: registry_core::Timestamp(0),
                upstream: true,
                license: None,
            };
            firewall
                .check(&candidate, &Pypi, registry_core::Timestamp(0))
                .into_iter()
                .map(|h| h.rule)
                .collect()
        };
        // What blocks covers every spelling of the release, and local labels.
        assert_eq!(hits("1.0.0"), ["no-one", "only-two"]);
        assert_eq!(hits("1"), ["no-one", "only-two"]);
        assert_eq!(hits("1.0+evil"), ["no-one", "only-two"]);
        assert_eq!(hits("2.0.0"), ["only-two", "advised"]);
        // What lets through is exact: never widened to other spellings or local labels.
        assert_eq!(hits("2.0"), ["advised"]);
        assert_eq!(hits("2.0+evil"), ["only-two", "advised"]);
        assert_eq!(hits("3.0"), Vec::<String>::new());
        assert_eq!(hits("3"), ["only-two"]);
    }

    #[test]
    fn pages_carry_every_pep_field() {
        let project = SimpleProject {
            name: "demo".into(),
            versions: vec!["1.0".into()],
            files: vec![SimpleFile {
                filename: "demo-1.0-py3-none-any.whl".into(),
                url: "http://h/f/demo-1.0-py3-none-any.whl".into(),
                sha256: "ab".into(),
                size: 3,
                upload_time: 0,
                requires_python: Some(">=3.8,<4".into()),
                yanked: Some("broken".into()),
                core_metadata: Some("cd".into()),
            }],
        };
        let html = project_html(&project);
        assert!(
            html.contains("data-requires-python=\"&gt;=3.8,&lt;4\""),
            "{html}"
        );
        assert!(
            html.contains("data-yanked=\"broken\"")
                && html.contains("data-core-metadata=\"sha256=cd\"")
        );
        let json = project_json(&project);
        assert_eq!(json["files"][0]["core-metadata"]["sha256"], "cd");
        assert_eq!(json["files"][0]["yanked"], "broken");
        assert_eq!(json["versions"][0], "1.0");
        assert_eq!(json["files"][0]["upload-time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn metadata_is_read_from_wheels_and_sdists() {
        let metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n";
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("demo/__init__.py", options).unwrap();
        std::io::Write::write_all(&mut zip, b"x = 1\n").unwrap();
        zip.start_file("demo-1.0.dist-info/METADATA", options)
            .unwrap();
        std::io::Write::write_all(&mut zip, metadata).unwrap();
        let wheel = zip.finish().unwrap().into_inner();
        let file = parse_filename("demo-1.0-py3-none-any.whl").unwrap();
        assert_eq!(
            wheel_metadata(std::io::Cursor::new(wheel.clone()), &file).unwrap(),
            metadata
        );
        // PEP 427: the directory is the file name's project and version (normalized).
        let named = |f: &str| parse_filename(f).unwrap();
        assert!(
            wheel_metadata(
                std::io::Cursor::new(wheel.clone()),
                &named("Demo-1.0-py3-none-any.whl")
            )
            .is_ok()
        );
        for other in ["other-1.0-py3-none-any.whl", "demo-2.0-py3-none-any.whl"] {
            let error = wheel_metadata(std::io::Cursor::new(wheel.clone()), &named(other))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("metadata directory is demo-1.0.dist-info"),
                "{other}: {error}"
            );
        }
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for dir in ["demo-1.0.dist-info", "evil-1.0.dist-info"] {
            zip.start_file(format!("{dir}/METADATA"), options).unwrap();
            std::io::Write::write_all(&mut zip, metadata).unwrap();
        }
        let two = zip.finish().unwrap().into_inner();
        assert!(
            wheel_metadata(std::io::Cursor::new(two), &file)
                .unwrap_err()
                .to_string()
                .contains("2 .dist-info directories")
        );

        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("demo-1.0/setup.py", &b"setup()"[..]),
            ("demo-1.0/PKG-INFO", &metadata[..]),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, data).unwrap();
        }
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
        let sdist = gzip.finish().unwrap();
        assert_eq!(sdist_metadata(&sdist[..]).unwrap(), metadata);
        let empty = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()))
            .finish()
            .unwrap()
            .into_inner();
        assert!(
            wheel_metadata(std::io::Cursor::new(empty), &file)
                .unwrap_err()
                .to_string()
                .contains("no .dist-info/METADATA")
        );
    }

    proptest::proptest! {
        #[test]
        fn metadata_readers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
            let _ = parse_core_metadata(&bytes);
            let file = parse_filename("demo-1.0-py3-none-any.whl").unwrap();
            let _ = wheel_metadata(std::io::Cursor::new(bytes.clone()), &file);
            let _ = sdist_metadata(&bytes[..]);
        }
    }
}

/// PyPI's rules for the package service: projects stored under their PEP 503 normalized name,
/// versions under their PEP 440 normal form and in PEP 440 order, files added to a release one
/// upload at a time, each hashed with BLAKE2b-256 (published) and MD5 (checked against the
/// upload form).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pypi;

impl registry_core::FormatRules for Pypi {
    fn format(&self) -> registry_core::PackageFormat {
        registry_core::PackageFormat::Pypi
    }

    fn package_key(&self, name: &str) -> Result<String> {
        check_name(name).map(|()| normalize(name))
    }

    fn version_key(&self, version: &str) -> Result<String> {
        normalize_version(version)
    }

    /// PEP 440's equality: the release without trailing zeros, and without a local label
    /// (`==1.0` admits `1.0.0` and `1.0+anything`).
    fn version_identity(&self, version: &str) -> String {
        version_identity(version)
    }

    fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        compare_versions(a, b)
    }

    fn is_prerelease(&self, version: &str) -> bool {
        is_prerelease(version)
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::AddFiles
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests {
            md5: true,
            blake2_256: true,
            ..registry_core::ExtraDigests::default()
        }
    }

    /// Projects are stored under their PEP 503 name (lowercase, `-` between words) and every
    /// spelling a client sends is checked as that name: a pattern with an uppercase letter or
    /// `_` (or a literal `\.`) could only match spellings never checked, so it is refused.
    fn upstream(&self) -> Option<&dyn registry_core::UpstreamFormat> {
        Some(self)
    }

    fn check_name_pattern(&self, pattern: &registry_core::NameRegex) -> Result<()> {
        let source = pattern.as_str();
        if source.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') || source.contains("\\.") {
            return Err(invalid(format!(
                "the pattern {source:?} cannot match a project name as stored: PyPI names are                  compared in their PEP 503 form, lowercase with '-' between words (write                  {:?})",
                source.to_ascii_lowercase().replace('_', "-")
            )));
        }
        Ok(())
    }
}
