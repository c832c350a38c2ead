//! npm: package names, the publish document `npm publish` sends, the tarball inside it, and
//! the packuments (full and abbreviated) `npm install` reads.
//!
//! A publish is checked completely before anything is stored: the document names the package
//! of the URL and exactly one version (a valid semver), carries exactly one attachment whose
//! base64 decodes to the announced length, whose SHA-1 and SHA-512 match `dist.shasum` and
//! `dist.integrity`, and which is a gzip tar (expanded size bounded, no absolute or `..` paths)
//! whose `package.json` names the same package and version.

mod audit;
mod upstream;

pub use audit::{
    MAX_AUDIT_PACKAGES, MAX_AUDIT_REQUEST, MAX_AUDIT_VERSIONS, bulk_response, read_bulk_request,
};
pub use upstream::{packument_path, read_packument};

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use registry_core::{Error, Package, Result, VersionStatus};
use serde_json::{Map, Value, json};
use sha1::Sha1;
use sha2::{Digest as _, Sha512};

/// The longest package name npm accepts.
pub const MAX_NAME_LEN: usize = 214;

/// Limits on what a publish may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpmLimits {
    /// The largest tarball (compressed), in bytes.
    pub max_tarball_size: u64,
    /// The largest expanded tarball, in bytes.
    pub max_unpacked_size: u64,
    /// The most entries in a tarball.
    pub max_entries: u64,
}

impl Default for NpmLimits {
    fn default() -> Self {
        NpmLimits {
            max_tarball_size: 256 << 20,
            max_unpacked_size: 1 << 30,
            max_entries: 100_000,
        }
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::PackageInvalid {
        reason: reason.into(),
    }
}

fn url_safe(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b))
}

/// Checks a name a package may be read by: a new package's name ([`check_name`]), or one the
/// public registry kept from before names had to be lowercase (`JSONStream`): uppercase
/// letters are allowed in the name, not in the scope. Publishes are held to [`check_name`].
pub fn check_read_name(name: &str) -> Result<()> {
    match check_name(&name.to_ascii_lowercase()) {
        Ok(())
            if name.strip_prefix('@').is_none_or(|s| {
                s.split_once('/')
                    .is_some_and(|(scope, _)| scope == scope.to_ascii_lowercase())
            }) =>
        {
            Ok(())
        }
        _ => check_name(name),
    }
}

/// Checks a package name as npm does for new packages: 1 to 214 bytes, lowercase, URL-safe,
/// not starting with `.` or `_`; scoped names are `@scope/name` with both parts so.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(invalid(format!(
            "{name:?} is not a valid npm package name: {why}"
        )))
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad(&format!("use 1 to {MAX_NAME_LEN} characters"));
    }
    let bare = match name.strip_prefix('@') {
        Some(scoped) => {
            let Some((scope, bare)) = scoped.split_once('/') else {
                return bad("a scoped name is @scope/name");
            };
            if !url_safe(scope) {
                return bad("the scope must be lowercase letters, digits, '-', '.', '_' or '~'");
            }
            bare
        }
        None => name,
    };
    if bare.starts_with('.') || bare.starts_with('_') {
        return bad("it must not start with '.' or '_'");
    }
    if !url_safe(bare) {
        return bad("use lowercase letters, digits, '-', '.', '_' and '~'");
    }
    Ok(())
}

/// The name of a package's tarballs: the name without its scope (`@demo/hello` → `hello`).
pub fn tarball_base(name: &str) -> &str {
    name.rsplit_once('/').map_or(name, |(_, bare)| bare)
}

/// The file name of a version's tarball (`hello-1.0.0.tgz`).
pub fn tarball_name(name: &str, version: &str) -> String {
    format!("{}-{version}.tgz", tarball_base(name))
}

/// Checks a version: semver 2.0 as npm reads it, written in its normal form.
pub fn check_version(version: &str) -> Result<()> {
    match nodejs_semver::Version::parse(version) {
        Ok(parsed) if parsed.to_string() == version => Ok(()),
        Ok(parsed) => Err(invalid(format!(
            "version {version:?} is not in its normal form ({parsed})"
        ))),
        Err(e) => Err(invalid(format!(
            "{version:?} is not a valid semver version: {e}"
        ))),
    }
}

/// Checks a dist-tag: not empty, not a valid semver range (npm's rule), URL-safe.
pub fn check_tag(tag: &str) -> Result<()> {
    let safe = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !safe || nodejs_semver::Range::parse(tag).is_ok() {
        return Err(invalid(format!(
            "{tag:?} is not a valid dist-tag: use letters, digits, '-', '.', '_' or '~', and \
             nothing that reads as a version range"
        )));
    }
    Ok(())
}

/// A checked publish of one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The package name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The version manifest as published, without `dist.tarball` (the registry renders its own).
    pub manifest: Value,
    /// The tarball's bytes.
    pub tarball: Vec<u8>,
    /// SHA-1 hex of the tarball.
    pub shasum: String,
    /// SHA-512 hex of the tarball.
    pub sha512: String,
    /// The dist-tags to point at this version.
    pub tags: Vec<String>,
}

/// What a `PUT` of the whole document without attachments asks (npm deprecate, and the first
/// half of unpublishing a version): the versions it still lists, each with its deprecation
/// message (`None` when not deprecated), and its dist-tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentUpdate {
    /// The package name.
    pub name: String,
    /// The versions listed, with their `deprecated` message.
    pub versions: BTreeMap<String, Option<String>>,
    /// The version manifests as sent.
    pub manifests: BTreeMap<String, Value>,
    /// The dist-tags.
    pub tags: BTreeMap<String, String>,
}

/// What a `PUT /<name>` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// A new version with its tarball.
    Publish(Box<Publication>),
    /// A change to the versions listed (deprecations, removals) and dist-tags.
    Update(DocumentUpdate),
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| invalid(format!("{what} must be a JSON object")))
}

fn string<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("the document has no string {field:?}")))
}

/// Reads the body of `PUT /<name>`: a publish when it carries `_attachments`, else an update.
pub fn parse_put(body: &[u8], path_name: &str, limits: &NpmLimits) -> Result<Put> {
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the publish document is not JSON: {e}")))?;
    let fields = object(&document, "the publish document")?;
    let name = string(&document, "name")?;
    if name != path_name {
        return Err(invalid(format!(
            "the document names {name:?}, the URL {path_name:?}"
        )));
    }
    check_name(name)?;
    let versions = object(
        fields
            .get("versions")
            .ok_or_else(|| invalid("the document has no \"versions\""))?,
        "\"versions\"",
    )?;
    let tags = match fields.get("dist-tags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(tags) => object(tags, "\"dist-tags\"")?
            .iter()
            .map(|(tag, version)| {
                check_tag(tag)?;
                let version = version
                    .as_str()
                    .ok_or_else(|| invalid(format!("dist-tag {tag:?} must name a version")))?;
                Ok((tag.clone(), version.to_owned()))
            })
            .collect::<Result<_>>()?,
    };
    let attachments = match fields.get("_attachments") {
        None | Some(Value::Null) => None,
        Some(value) => Some(object(value, "\"_attachments\"")?).filter(|a| !a.is_empty()),
    };
    let Some(attachments) = attachments else {
        let mut listed = BTreeMap::new();
        let mut manifests = BTreeMap::new();
        for (version, manifest) in versions {
            check_version(version)?;
            object(manifest, "a version manifest")?;
            let deprecated = match manifest.get("deprecated") {
                None | Some(Value::Null) => None,
                Some(Value::String(message)) => Some(message.clone()).filter(|m| !m.is_empty()),
                Some(_) => {
                    return Err(invalid(format!(
                        "\"deprecated\" of {version} must be a string (empty: not deprecated)"
                    )));
                }
            };
            listed.insert(version.clone(), deprecated);
            manifests.insert(version.clone(), manifest.clone());
        }
        return Ok(Put::Update(DocumentUpdate {
            name: name.to_owned(),
            versions: listed,
            manifests,
            tags,
        }));
    };
    if versions.len() != 1 || attachments.len() != 1 {
        return Err(invalid(format!(
            "a publish carries exactly one version and one tarball, not {} and {}",
            versions.len(),
            attachments.len()
        )));
    }
    let (version, manifest) = versions.iter().next().expect("one version");
    check_version(version)?;
    let mut manifest = manifest.clone();
    let manifest_fields = manifest
        .as_object_mut()
        .ok_or_else(|| invalid("the version manifest must be a JSON object"))?;
    if manifest_fields.get("name").and_then(Value::as_str) != Some(name)
        || manifest_fields.get("version").and_then(Value::as_str) != Some(version)
    {
        return Err(invalid(format!(
            "the manifest of {version} must name {name} and {version}"
        )));
    }
    let (file, attachment) = attachments.iter().next().expect("one attachment");
    let data = attachment
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("attachment {file:?} has no base64 \"data\"")))?;
    let encoded_limit = limits.max_tarball_size.saturating_mul(4) / 3 + 4;
    if data.len() as u64 > encoded_limit {
        return Err(Error::SizeInvalid {
            what: "npm tarball",
            size: data.len() as u64 * 3 / 4,
            limit: limits.max_tarball_size,
        });
    }
    let tarball = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| invalid(format!("attachment {file:?} is not base64: {e}")))?;
    if let Some(length) = attachment.get("length").and_then(Value::as_u64)
        && length != tarball.len() as u64
    {
        return Err(invalid(format!(
            "attachment {file:?} announces {length} bytes and holds {}",
            tarball.len()
        )));
    }
    let shasum = hex::encode(Sha1::digest(&tarball));
    let sha512 = Sha512::digest(&tarball);
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha512)
    );
    let dist = manifest_fields
        .get_mut("dist")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid(format!("the manifest of {version} has no \"dist\"")))?;
    if let Some(claimed) = dist.get("shasum").and_then(Value::as_str)
        && claimed != shasum
    {
        return Err(invalid(format!(
            "dist.shasum is {claimed}, the tarball's SHA-1 is {shasum}"
        )));
    }
    if let Some(claimed) = dist.get("integrity").and_then(Value::as_str)
        && !claimed
            .split_whitespace()
            .filter(|entry| entry.starts_with("sha512-"))
            .any(|entry| entry == integrity)
    {
        return Err(invalid(format!(
            "dist.integrity {claimed} does not match the tarball ({integrity})"
        )));
    }
    dist.insert("shasum".into(), json!(shasum));
    dist.insert("integrity".into(), json!(integrity));
    dist.remove("tarball");
    let (packaged_name, packaged_version) = read_tarball(&tarball, limits)?;
    if packaged_name != name || packaged_version != *version {
        return Err(invalid(format!(
            "the tarball's package.json is {packaged_name}@{packaged_version}, the document \
             publishes {name}@{version}"
        )));
    }
    let tags = if tags.is_empty() {
        vec!["latest".to_owned()]
    } else {
        tags.into_iter()
            .filter(|(_, v)| v == version)
            .map(|(tag, _)| tag)
            .collect()
    };
    Ok(Put::Publish(Box::new(Publication {
        name: name.to_owned(),
        version: version.clone(),
        manifest,
        tarball,
        shasum,
        sha512: hex::encode(sha512),
        tags,
    })))
}

/// Reads a package tarball: gzip, then tar, every path relative and without `..`, the expanded
/// size and entry count bounded; returns the name and version of its root `package.json`.
pub fn read_tarball(tarball: &[u8], limits: &NpmLimits) -> Result<(String, String)> {
    let bounds = crate::archive::TarLimits {
        max_entries: limits.max_entries,
        max_expanded: limits.max_unpacked_size,
        links: true,
    };
    // The whole archive is walked (every path checked, every byte counted); the first
    // `<dir>/package.json` is the manifest.
    let mut manifest: Option<Value> = None;
    crate::archive::walk_gzip_tar(tarball, "the tarball", bounds, |path, entry| {
        let is_manifest = crate::archive::depth(path) == 2
            && path.file_name().is_some_and(|f| f == "package.json");
        if is_manifest && manifest.is_none() {
            let mut text = Vec::new();
            entry
                .take(16 << 20)
                .read_to_end(&mut text)
                .map_err(|e| invalid(format!("the tarball is not a gzip tar archive: {e}")))?;
            manifest =
                Some(serde_json::from_slice(&text).map_err(|e| {
                    invalid(format!("the tarball's package.json is not JSON: {e}"))
                })?);
        }
        Ok(std::ops::ControlFlow::<()>::Continue(()))
    })?;
    let manifest = manifest.ok_or_else(|| invalid("the tarball has no package/package.json"))?;
    let field = |key: &str| {
        manifest
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("the tarball's package.json has no {key:?}")))
    };
    Ok((field("name")?, field("version")?))
}

/// The `_rev` npm sees for a package revision ([`Package::revision`]); it changes whenever the
/// package does.
pub fn revision(package_revision: &str) -> String {
    format!("1-{package_revision}")
}

/// An ISO 8601 time as npm writes them.
pub fn iso_time(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// A version's manifest as served: the stored one with its `dist.tarball` URL and the
/// deprecation of its status.
fn served_manifest(
    package: &Package,
    version: &registry_core::PackageVersion,
    tarballs: &str,
) -> Value {
    let mut manifest: Value = serde_json::from_str(&version.metadata).unwrap_or_else(|_| json!({}));
    if let Some(fields) = manifest.as_object_mut() {
        let file = tarball_name(&package.name, &version.version);
        let dist = fields.entry("dist").or_insert_with(|| json!({}));
        if let Some(dist) = dist.as_object_mut() {
            dist.insert(
                "tarball".into(),
                json!(format!("{tarballs}/{}/-/{file}", package.name)),
            );
        }
        match &version.status {
            VersionStatus::Deprecated(message) => {
                fields.insert("deprecated".into(), json!(message));
            }
            _ => {
                fields.remove("deprecated");
            }
        }
    }
    manifest
}

fn visible(version: &registry_core::PackageVersion) -> bool {
    version.status != VersionStatus::Hidden
}

/// The full packument (`application/json`). `tarballs` is the base URL tarballs are served
/// under (`http://host/npm/<repository>`).
pub fn packument(package: &Package, tarballs: &str) -> Value {
    let versions: Map<String, Value> = package
        .versions
        .iter()
        .filter(|v| visible(v))
        .map(|v| (v.version.clone(), served_manifest(package, v, tarballs)))
        .collect();
    let mut time = Map::new();
    time.insert("created".into(), json!(iso_time(package.created_at.0)));
    time.insert("modified".into(), json!(iso_time(package.updated_at.0)));
    for version in package.versions.iter().filter(|v| visible(v)) {
        time.insert(
            version.version.clone(),
            json!(iso_time(version.created_at.0)),
        );
    }
    let latest = package
        .tags
        .get("latest")
        .and_then(|v| versions.get(v))
        .cloned()
        .unwrap_or(Value::Null);
    let mut document = json!({
        "_id": package.name,
        "_rev": revision(&package.revision),
        "name": package.name,
        "dist-tags": package.tags,
        "versions": versions,
        "time": time,
    });
    for field in [
        "description",
        "readme",
        "license",
        "homepage",
        "repository",
        "keywords",
    ] {
        if let Some(value) = latest.get(field) {
            document[field] = value.clone();
        }
    }
    document
}

/// The abbreviated packument (`application/vnd.npm.install-v1+json`): what installs need.
pub fn abbreviated(package: &Package, tarballs: &str) -> Value {
    const KEPT: &[&str] = &[
        "name",
        "version",
        "deprecated",
        "dependencies",
        "optionalDependencies",
        "devDependencies",
        "bundleDependencies",
        "peerDependencies",
        "peerDependenciesMeta",
        "acceptDependencies",
        "bin",
        "directories",
        "dist",
        "engines",
        "cpu",
        "os",
        "libc",
        "funding",
        "license",
        "_hasShrinkwrap",
        "hasInstallScript",
    ];
    let versions: Map<String, Value> = package
        .versions
        .iter()
        .filter(|v| visible(v))
        .map(|v| {
            let full = served_manifest(package, v, tarballs);
            let kept: Map<String, Value> = KEPT
                .iter()
                .filter_map(|k| full.get(*k).map(|value| ((*k).to_owned(), value.clone())))
                .collect();
            (v.version.clone(), Value::Object(kept))
        })
        .collect();
    json!({
        "name": package.name,
        "modified": iso_time(package.updated_at.0),
        "dist-tags": package.tags,
        "versions": versions,
    })
}

impl crate::pages::FormatPages for Npm {
    fn install_command(
        &self,
        registry: &str,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Option<String> {
        Some(format!(
            "npm install --registry {registry}/npm/{repository}/ {name}@{version}"
        ))
    }

    /// The `readme` npm sends with each version it publishes.
    fn readme(&self, metadata: &str, _sidecar: Option<&[u8]>) -> Option<crate::pages::Readme> {
        let manifest: Value = serde_json::from_str(metadata).ok()?;
        let readme = manifest.get("readme")?.as_str()?;
        (!readme.trim().is_empty()).then(|| crate::pages::Readme::markdown(readme))
    }

    fn description(&self, metadata: &str) -> Option<String> {
        crate::pages::text_field(metadata, "description")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip tar holding `entries` (path, bytes).
    pub(crate) fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Written raw, so tests can build archives tar::Builder would refuse.
            let name = path.as_bytes();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &tar).unwrap();
        gzip.finish().unwrap()
    }

    fn document(name: &str, version: &str, tarball: &[u8]) -> Value {
        let integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(tarball))
        );
        json!({
            "_id": name, "name": name, "description": "demo",
            "dist-tags": { "latest": version },
            "versions": { version: {
                "name": name, "version": version, "description": "demo",
                "dist": { "shasum": hex::encode(Sha1::digest(tarball)), "integrity": integrity,
                          "tarball": format!("http://elsewhere/{name}/-/x.tgz") },
            }},
            "access": null,
            "_attachments": { format!("{name}-{version}.tgz"): {
                "content_type": "application/octet-stream",
                "data": base64::engine::general_purpose::STANDARD.encode(tarball),
                "length": tarball.len(),
            }},
        })
    }

    fn good_tarball(name: &str, version: &str) -> Vec<u8> {
        let manifest = json!({ "name": name, "version": version }).to_string();
        archive(&[
            ("package/package.json", manifest.as_bytes()),
            ("package/index.js", b"module.exports = 1;\n"),
        ])
    }

    fn parse(document: &Value, name: &str) -> Result<Put> {
        parse_put(document.to_string().as_bytes(), name, &NpmLimits::default())
    }

    #[test]
    fn names_versions_and_tags() {
        for good in ["hello", "@demo/hello", "a.b-c_d~e", "@d/x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Hello",
            ".x",
            "_x",
            "@demo",
            "@/x",
            "@demo/",
            "a b",
            "a/b",
            &"a".repeat(215),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(tarball_name("@demo/hello", "1.0.0"), "hello-1.0.0.tgz");
        assert!(check_version("1.2.3-beta.1+build").is_ok());
        for bad in ["1.2", "v1.2.3", "01.2.3", "x"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert!(check_tag("beta").is_ok() && check_tag("next-2").is_ok());
        assert!(check_tag("1.0.0").is_err() && check_tag("^1").is_err() && check_tag("").is_err());
        // Old names are read, never published.
        assert!(check_read_name("JSONStream").is_ok());
        assert!(check_name("JSONStream").is_err());
        assert!(check_read_name("@scope/JSONStream").is_ok());
        for bad in ["@Scope/x", "Bad Name", ".Hidden", ""] {
            assert!(check_read_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_good_publish_is_read_completely() {
        let tarball = good_tarball("@demo/hello", "1.0.0");
        let Put::Publish(publication) =
            parse(&document("@demo/hello", "1.0.0", &tarball), "@demo/hello").unwrap()
        else {
            panic!("a publish");
        };
        assert_eq!(publication.tarball, tarball);
        assert_eq!(publication.tags, ["latest"]);
        assert!(publication.manifest["dist"].get("tarball").is_none());
        assert_eq!(publication.shasum, hex::encode(Sha1::digest(&tarball)));
    }

    #[test]
    fn bad_publishes_are_refused_with_the_reason() {
        let name = "hello";
        let tarball = good_tarball(name, "1.0.0");
        let refused = |document: Value, expected: &str| {
            let error = parse(&document, name).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected:?} in {error:?}");
        };
        refused(document("other", "1.0.0", &tarball), "the URL");
        let mut doc = document(name, "1.0.0", &tarball);
        doc["versions"]["1.0.0"]["dist"]["shasum"] = json!("0".repeat(40));
        refused(doc, "dist.shasum");
        let mut doc = document(name, "1.0.0", &tarball);
        doc["versions"]["1.0.0"]["dist"]["integrity"] = json!("sha512-AAAA");
        refused(doc, "dist.integrity");
        let mut doc = document(name, "1.0.0", &tarball);
        doc["_attachments"]["hello-1.0.0.tgz"]["length"] = json!(1);
        refused(doc, "announces 1 bytes");
        let mut doc = document(name, "1.0.0", &tarball);
        doc["_attachments"]["hello-1.0.0.tgz"]["data"] = json!("%%%");
        refused(doc, "not base64");
        refused(
            document(name, "1.0.0", &good_tarball(name, "2.0.0")),
            "package.json is hello@2.0.0",
        );
        refused(document(name, "1.0.0", b"not a tarball"), "not a gzip tar");
        let traversal = archive(&[
            ("package/../../etc/x", &b"x"[..]),
            (
                "package/package.json",
                &br#"{"name":"hello","version":"1.0.0"}"#[..],
            ),
        ]);
        refused(document(name, "1.0.0", &traversal), "unsafe path");
        let absolute = archive(&[("/etc/passwd", &b"x"[..])]);
        refused(document(name, "1.0.0", &absolute), "unsafe path");
        refused(
            document(name, "1.0.0", &archive(&[("package/index.js", &b"x"[..])])),
            "no package/package.json",
        );
        refused(document(name, "1.0", &tarball), "semver");
        let mut doc = document(name, "1.0.0", &tarball);
        doc["versions"]["1.0.0"]["name"] = json!("else");
        refused(doc, "must name hello");
        let mut doc = document(name, "1.0.0", &tarball);
        doc["versions"]["1.0.1"] = doc["versions"]["1.0.0"].clone();
        refused(doc, "exactly one version");
        assert!(
            parse_put(b"{", name, &NpmLimits::default())
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
        // A tarball that expands beyond the limit.
        let zeros = vec![0u8; 2 << 20];
        let bomb = archive(&[
            (
                "package/package.json",
                &br#"{"name":"hello","version":"1.0.0"}"#[..],
            ),
            ("package/zeros", &zeros[..]),
        ]);
        let limits = NpmLimits {
            max_unpacked_size: 1 << 20,
            ..NpmLimits::default()
        };
        let error = parse_put(
            document(name, "1.0.0", &bomb).to_string().as_bytes(),
            name,
            &limits,
        )
        .unwrap_err();
        assert!(error.to_string().contains("expands beyond"), "{error}");
    }

    #[test]
    fn a_document_without_attachments_is_an_update() {
        let doc = json!({
            "name": "hello", "dist-tags": { "latest": "1.0.0" },
            "versions": { "1.0.0": { "name": "hello", "version": "1.0.0", "deprecated": "old" },
                          "1.1.0": { "name": "hello", "version": "1.1.0" } },
        });
        let Put::Update(update) = parse(&doc, "hello").unwrap() else {
            panic!("an update")
        };
        assert_eq!(update.versions.get("1.0.0"), Some(&Some("old".to_owned())));
        assert_eq!(update.versions.get("1.1.0"), Some(&None));
        assert_eq!(update.tags.get("latest").map(String::as_str), Some("1.0.0"));

        // Versions that cannot exist, and deprecations that are not text, are refused rather
        // than read as versions to remove.
        for doc in [
            json!({ "name": "hello", "versions": { "bad..v": {} } }),
            json!({ "name": "hello", "versions": { "1.0.0": { "deprecated": 5 } } }),
        ] {
            assert!(
                matches!(parse(&doc, "hello"), Err(Error::PackageInvalid { .. })),
                "{doc}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_documents_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_put(&body, "hello", &NpmLimits::default());
        }

        #[test]
        fn arbitrary_tarballs_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = read_tarball(&body, &NpmLimits::default());
        }
    }
}

/// npm's rules for the package service: npm names, semver versions in normal form ordered by
/// semver precedence, one whole version per publish (its SHA-1 and SHA-512 come verified in the
/// publish document, so none is computed again).
#[derive(Clone, Copy, Debug, Default)]
pub struct Npm;

impl registry_core::FormatRules for Npm {
    fn format(&self) -> registry_core::PackageFormat {
        registry_core::PackageFormat::Npm
    }

    /// Names as they are read (legacy uppercase names too, for proxied packages); publishes
    /// check new-package names when the document is read.
    fn package_key(&self, name: &str) -> Result<String> {
        check_read_name(name).map(|()| name.to_owned())
    }

    fn version_key(&self, version: &str) -> Result<String> {
        check_version(version).map(|()| version.to_owned())
    }

    fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        crate::order_by(|v| nodejs_semver::Version::parse(v), a, b)
    }

    fn is_prerelease(&self, version: &str) -> bool {
        nodejs_semver::Version::parse(version).is_ok_and(|v| v.is_prerelease())
    }

    fn publish_mode(&self) -> registry_core::PublishMode {
        registry_core::PublishMode::NewVersion
    }

    fn extra_digests(&self) -> registry_core::ExtraDigests {
        registry_core::ExtraDigests::default()
    }

    fn upstream(&self) -> Option<&dyn registry_core::UpstreamFormat> {
        Some(self)
    }

    /// `license` as an SPDX expression, or the old forms: `{"type": …}`, and a `licenses`
    /// list (or a `license` list), read as alternatives.
    fn license(&self, metadata: &str) -> Option<String> {
        let manifest: Value = serde_json::from_str(metadata).ok()?;
        let one = |value: &Value| match value {
            Value::String(license) => Some(license.clone()),
            Value::Object(fields) => fields.get("type")?.as_str().map(str::to_owned),
            _ => None,
        };
        let all: Vec<String> = ["license", "licenses"]
            .iter()
            .filter_map(|field| manifest.get(*field))
            .flat_map(|value| match value {
                Value::Array(items) => items.iter().filter_map(one).collect(),
                other => one(other).into_iter().collect::<Vec<_>>(),
            })
            .collect();
        match all.len() {
            0 => None,
            1 => all.into_iter().next(),
            _ => Some(format!("({})", all.join(" OR "))),
        }
    }
}
