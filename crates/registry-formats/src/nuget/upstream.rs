//! Reading an upstream NuGet v3 feed: a package's registration index (from the feed's
//! `RegistrationsBaseUrl`, which is the proxy's upstream URL) as the model holds it — each
//! version's catalog entry as the nuspec the registry renders from, its publish time and
//! listing, and its `.nupkg` (`packageContent`) with the SHA-512 the entry declares
//! (`packageHash`, as NuGet's catalog writes it).
//!
//! An entry without `packageHash` (nuget.org's registrations keep it in the catalog leaf) names
//! its leaf (`catalogEntry`'s `@id`), which is read for the hash when the package is first
//! fetched ([`registry_core::DeferredFile`]); an entry with neither is listed but its package
//! is not fetched, since it could not be verified. Pages a registration index links instead of
//! inlining (above 128 versions on NuGet's servers) are fetched with it and inlined before it
//! is kept ([`registry_core::UpstreamFormat::linked_documents`]).

use base64::Engine as _;
use registry_core::{
    DeclaredDigest, DeferredFile, Error, FormatRules as _, Package, PackageVersion, RemoteFile,
    Result, Timestamp, UpstreamPackage, VersionStatus,
};
use serde_json::Value;

use super::documents::package_file_name;
use super::nuspec::{Dependency, DependencyGroup, MAX_DEPENDENCIES};
use super::{NuGetVersion, Nuget, Nuspec, lower_id};

/// The most versions a registration index may list (the largest packages on nuget.org have a
/// few thousand).
const MAX_VERSIONS: usize = 100_000;

fn invalid(reason: String) -> Error {
    Error::PackageInvalid { reason }
}

/// A string field, or the strings of an array field joined by `separator` (NuGet writes
/// `authors` and `tags` either way).
fn text(entry: &Value, field: &str, separator: &str) -> String {
    match entry.get(field) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(separator),
        _ => String::new(),
    }
}

fn optional(entry: &Value, field: &str) -> Option<String> {
    entry
        .get(field)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The dependency groups of a catalog entry; `None` when it declares more dependencies than a
/// nuspec may.
fn dependency_groups(entry: &Value) -> Option<Vec<DependencyGroup>> {
    let mut count = 0;
    // Absent lists are empty ones: NuGet writes no `dependencyGroups` for a package without
    // dependencies, and no `dependencies` for a framework group without any.
    let groups = entry
        .get("dependencyGroups")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut read = Vec::with_capacity(groups.len());
    for group in groups {
        let dependencies = group
            .get("dependencies")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        count += dependencies.len();
        if count > MAX_DEPENDENCIES {
            return None;
        }
        read.push(DependencyGroup {
            target_framework: optional(group, "targetFramework"),
            dependencies: dependencies
                .iter()
                .filter_map(|d| {
                    Some(Dependency {
                        id: optional(d, "id")?,
                        range: optional(d, "range"),
                    })
                })
                .collect(),
        });
    }
    Some(read)
}

/// The SHA-512 a catalog entry declares for its package, as hex.
fn package_hash(entry: &Value) -> Option<String> {
    let algorithm = entry
        .get("packageHashAlgorithm")
        .and_then(Value::as_str)
        .unwrap_or("SHA512");
    if !algorithm.eq_ignore_ascii_case("SHA512") {
        return None;
    }
    let hash = entry.get("packageHash").and_then(Value::as_str)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(hash)
        .ok()
        .filter(|b| b.len() == 64)?;
    Some(hex::encode(bytes))
}

impl registry_core::UpstreamFormat for Nuget {
    fn metadata_path(&self, key: &str) -> String {
        format!("{key}/index.json")
    }

    fn parse_metadata(&self, key: &str, document: &[u8], _base: &str) -> Result<UpstreamPackage> {
        let document: Value = serde_json::from_slice(document)
            .map_err(|e| invalid(format!("the registration index is not JSON: {e}")))?;
        let pages = document
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("the registration index of {key} has no pages")))?;
        let read_at = Timestamp::now();
        let mut versions: Vec<PackageVersion> = Vec::new();
        let mut files = Vec::new();
        let mut deferred = Vec::new();
        let mut display = None;
        let mut seen = std::collections::HashSet::new();
        for page in pages {
            let Some(leaves) = page.get("items").and_then(Value::as_array) else {
                return Err(invalid(format!(
                    "the registration index of {key} links its pages instead of inlining them; \
                     linked pages are not read"
                )));
            };
            for leaf in leaves {
                let Some(entry) = leaf.get("catalogEntry") else {
                    continue;
                };
                let id = text(entry, "id", "");
                if lower_id(&id) != key {
                    return Err(invalid(format!(
                        "the registration index of {key} lists a version of {id}"
                    )));
                }
                let written = text(entry, "version", "");
                let (Ok(parsed), Ok(version)) =
                    (NuGetVersion::parse(&written), self.version_key(&written))
                else {
                    continue;
                };
                let Some(groups) = dependency_groups(entry) else {
                    continue;
                };
                if !seen.insert(version.clone()) {
                    continue;
                }
                if versions.len() >= MAX_VERSIONS {
                    return Err(invalid(format!(
                        "the registration index of {key} lists over {MAX_VERSIONS} versions"
                    )));
                }
                let published_text = entry.get("published").and_then(Value::as_str);
                // NuGet shows an unlisted version as published in 1900 (older feeds say so
                // only that way).
                let unlisted = entry.get("listed").and_then(Value::as_bool) == Some(false)
                    || published_text.is_some_and(|t| t.starts_with("1900-"));
                // Without its own time a version counts as published when read, so an age
                // gate never lets it through early.
                let published = published_text
                    .filter(|_| !unlisted)
                    .and_then(crate::rfc3339)
                    .unwrap_or(read_at);
                let nuspec = Nuspec {
                    id: id.clone(),
                    version: written,
                    authors: text(entry, "authors", ", "),
                    description: text(entry, "description", ""),
                    title: optional(entry, "title"),
                    summary: optional(entry, "summary"),
                    tags: text(entry, "tags", " ")
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                    project_url: optional(entry, "projectUrl"),
                    license_url: optional(entry, "licenseUrl"),
                    icon_url: optional(entry, "iconUrl"),
                    require_license_acceptance: entry
                        .get("requireLicenseAcceptance")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    dependency_groups: groups,
                    package_types: Vec::new(),
                };
                let content = optional(leaf, "packageContent")
                    .or_else(|| optional(entry, "packageContent"))
                    .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
                // The hash in the entry (this registry's feeds), else in its catalog leaf
                // (nuget.org's), read when the package is first fetched.
                let leaf = optional(entry, "@id")
                    .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
                let name = package_file_name(&id, &parsed, false);
                match (content, package_hash(entry), leaf) {
                    (Some(url), Some(hash), _) => files.push(RemoteFile {
                        version: version.clone(),
                        name,
                        url,
                        digest: DeclaredDigest::Sha512(hash),
                    }),
                    (Some(url), None, Some(leaf)) => deferred.push(DeferredFile {
                        version: version.clone(),
                        name,
                        url,
                        declared_in: leaf,
                    }),
                    _ => {}
                }
                display.get_or_insert(id);
                versions.push(PackageVersion {
                    version,
                    status: match unlisted {
                        true => VersionStatus::Hidden,
                        false => VersionStatus::Default,
                    },
                    metadata: serde_json::to_string(&nuspec)
                        .map_err(|e| invalid(format!("a catalog entry does not read: {e}")))?,
                    files: Vec::new(),
                    created_at: published,
                    updated_at: published,
                });
            }
        }
        let created = versions.iter().map(|v| v.created_at).min();
        let updated = versions.iter().map(|v| v.created_at).max();
        Ok(UpstreamPackage {
            package: Package {
                name: key.to_owned(),
                display_name: display.unwrap_or_else(|| key.to_owned()),
                versions,
                tags: Default::default(),
                created_at: created.unwrap_or(read_at),
                updated_at: updated.unwrap_or(read_at),
                revision: String::new(),
            },
            files,
            deferred,
        })
    }

    /// The pages a registration index links instead of inlining (`@id` of pages without
    /// `items`).
    fn linked_documents(&self, document: &[u8]) -> Vec<String> {
        let Ok(index) = serde_json::from_slice::<Value>(document) else {
            return Vec::new();
        };
        // An index without pages links none (and is refused when read).
        index
            .get("items")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|page| page.get("items").is_none())
            .filter_map(|page| optional(page, "@id"))
            .collect()
    }

    /// The registration index with each linked page's `items` inlined.
    fn include_linked(
        &self,
        document: &[u8],
        linked: Vec<(String, bytes::Bytes)>,
    ) -> Result<bytes::Bytes> {
        let mut index: Value = serde_json::from_slice(document)
            .map_err(|e| invalid(format!("the registration index is not JSON: {e}")))?;
        let mut pages: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
        for (url, body) in linked {
            let page: Value = serde_json::from_slice(&body)
                .map_err(|e| invalid(format!("the registration page {url} is not JSON: {e}")))?;
            pages.insert(url, page);
        }
        if let Some(items) = index.get_mut("items").and_then(Value::as_array_mut) {
            for page in items.iter_mut().filter(|p| p.get("items").is_none()) {
                let Some(url) = optional(page, "@id") else {
                    continue;
                };
                let leaves = pages
                    .remove(&url)
                    .and_then(|mut p| p.get_mut("items").map(Value::take))
                    .filter(Value::is_array)
                    .ok_or_else(|| {
                        invalid(format!("the registration page {url} lists no versions"))
                    })?;
                page["items"] = leaves;
            }
        }
        serde_json::to_vec(&index)
            .map(bytes::Bytes::from)
            .map_err(|e| invalid(format!("the registration index does not write: {e}")))
    }

    /// A catalog leaf's `packageHash` (SHA-512, base64), as nuget.org's catalog writes it.
    fn read_declared(&self, document: &[u8]) -> Option<DeclaredDigest> {
        let leaf: Value = serde_json::from_slice(document).ok()?;
        package_hash(&leaf).map(DeclaredDigest::Sha512)
    }
}

#[cfg(test)]
mod tests {
    use registry_core::UpstreamFormat as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn registration_indexes_read_as_versions_with_their_packages_and_hashes() {
        let hash = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let index = json!({"items": [{"items": [
            {"catalogEntry": {"id": "Demo.Hello", "version": "1.0.0", "authors": ["Ada", "Bo"],
                "description": "Hi.", "tags": "a b", "published": "2020-01-01T00:00:00+00:00",
                "packageHash": hash, "packageHashAlgorithm": "SHA512",
                "dependencyGroups": [{"targetFramework": "net6.0",
                    "dependencies": [{"id": "Other.Lib", "range": "[1.0, )"}]}]},
             "packageContent": "https://up.example/flat/demo.hello/1.0.0/demo.hello.1.0.0.nupkg"},
            {"catalogEntry": {"id": "Demo.Hello", "version": "1.1.0-Beta",
                "published": "1900-01-01T00:00:00+00:00"},
             "packageContent": "https://up.example/flat/demo.hello/1.1.0-beta/demo.hello.1.1.0-beta.nupkg"},
            {"catalogEntry": {"id": "Demo.Hello", "version": "not a version"}}
        ]}]});
        let read = Nuget
            .parse_metadata("demo.hello", index.to_string().as_bytes(), "https://up")
            .unwrap();
        let versions: Vec<(&str, &VersionStatus)> = read
            .package
            .versions
            .iter()
            .map(|v| (v.version.as_str(), &v.status))
            .collect();
        assert_eq!(
            versions,
            [
                ("1.0.0", &VersionStatus::Default),
                ("1.1.0-beta", &VersionStatus::Hidden)
            ]
        );
        assert_eq!(read.package.display_name, "Demo.Hello");
        let nuspec: Nuspec = serde_json::from_str(&read.package.versions[0].metadata).unwrap();
        assert_eq!(nuspec.authors, "Ada, Bo");
        assert_eq!(nuspec.tags, ["a", "b"]);
        assert_eq!(nuspec.dependency_groups[0].dependencies[0].id, "Other.Lib");
        assert_eq!(read.package.versions[0].created_at.0, 1_577_836_800_000);
        // Only the version that declares its hash has a file to fetch.
        assert_eq!(read.files.len(), 1);
        assert_eq!(read.files[0].name, "demo.hello.1.0.0.nupkg");
        assert_eq!(
            read.files[0].digest,
            DeclaredDigest::Sha512("07".repeat(64))
        );

        for bad in [
            json!({"items": [{"@id": "https://up/page/1.json", "lower": "1.0.0", "upper": "2.0.0"}]}),
            json!({"items": [{"items": [{"catalogEntry": {"id": "Other", "version": "1.0.0"}}]}]}),
            json!({"count": 0}),
        ] {
            assert!(
                Nuget
                    .parse_metadata("demo.hello", bad.to_string().as_bytes(), "x")
                    .is_err(),
                "{bad}"
            );
        }
    }
}
