//! The NuGet v3 documents a repository serves, built from what is stored: the service index,
//! the flat container's versions list, registrations (index, pages, leaves) and search answers.
//!
//! Registrations come in two hives, as NuGet's own server lays them out: [`Hive::SemVer1`]
//! leaves out versions only SemVer 2.0.0 clients read ([`NuGetVersion::is_semver2`]);
//! [`Hive::SemVer2`] shows every version. A registration index inlines its pages while a
//! package has at most [`INLINE_LIMIT`] versions, and links pages of [`PAGE_SIZE`] above.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{NuGetVersion, Nuspec};

/// The most versions whose pages a registration index inlines.
pub const INLINE_LIMIT: usize = 128;

/// The most dependencies (over all versions) an index inlines; above, its pages are linked
/// whatever the number of versions, so no document grows past what a page holds.
pub const INLINE_DEPENDENCY_LIMIT: usize = 4096;

/// Versions per registration page.
pub const PAGE_SIZE: usize = 64;

/// Which versions a registration hive shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hive {
    /// Versions every client reads (no dotted prerelease, no build metadata).
    SemVer1,
    /// Every version.
    SemVer2,
}

impl Hive {
    /// The hive's path segment under `v3/`.
    pub fn segment(self) -> &'static str {
        match self {
            Hive::SemVer1 => "registration",
            Hive::SemVer2 => "registration-semver2",
        }
    }

    /// The hive a path segment names.
    pub fn from_segment(segment: &str) -> Option<Hive> {
        [Hive::SemVer1, Hive::SemVer2]
            .into_iter()
            .find(|h| h.segment() == segment)
    }

    /// Whether the hive shows a version.
    pub fn shows(self, version: &NuGetVersion) -> bool {
        self == Hive::SemVer2 || !version.is_semver2()
    }
}

/// The URLs of one repository's resources, under its base (`https://host/nuget/<repository>`).
#[derive(Clone, Debug)]
pub struct Urls {
    base: String,
}

impl Urls {
    /// The URLs under `base` (no trailing `/`).
    pub fn new(base: impl Into<String>) -> Urls {
        Urls { base: base.into() }
    }

    /// The service index.
    pub fn service_index(&self) -> String {
        format!("{}/v3/index.json", self.base)
    }

    /// Where packages are pushed (`PUT`) and unlisted (`DELETE …/<id>/<version>`).
    pub fn publish(&self) -> String {
        format!("{}/api/v2/package", self.base)
    }

    /// Where symbol packages are pushed.
    pub fn symbol_publish(&self) -> String {
        format!("{}/api/v2/symbolpackage", self.base)
    }

    /// The flat container's base (ends with `/`).
    pub fn flat_container(&self) -> String {
        format!("{}/v3/flatcontainer/", self.base)
    }

    /// The search service.
    pub fn search(&self) -> String {
        format!("{}/v3/search", self.base)
    }

    /// A registration hive's base (ends with `/`).
    pub fn registrations(&self, hive: Hive) -> String {
        format!("{}/v3/{}/", self.base, hive.segment())
    }

    /// A package's registration index.
    pub fn registration_index(&self, hive: Hive, id: &str) -> String {
        format!("{}{}/index.json", self.registrations(hive), lower(id))
    }

    /// A registration page holding the versions from `low` to `high`.
    pub fn registration_page(&self, hive: Hive, id: &str, low: &str, high: &str) -> String {
        format!(
            "{}{}/page/{low}/{high}.json",
            self.registrations(hive),
            lower(id)
        )
    }

    /// A version's registration leaf.
    pub fn registration_leaf(&self, hive: Hive, id: &str, version: &NuGetVersion) -> String {
        format!(
            "{}{}/{}.json",
            self.registrations(hive),
            lower(id),
            version.lower_normalized()
        )
    }

    /// A version's `.nupkg` in the flat container.
    pub fn package_content(&self, id: &str, version: &NuGetVersion) -> String {
        format!(
            "{}{}/{}/{}",
            self.flat_container(),
            lower(id),
            version.lower_normalized(),
            package_file_name(id, version, false)
        )
    }
}

fn lower(id: &str) -> String {
    super::lower_id(id)
}

/// The file name of a version's package (`<id>.<version>.nupkg`) or symbol package
/// (`.snupkg`), lowercase: how it is stored and how the flat container names it.
pub fn package_file_name(id: &str, version: &NuGetVersion, symbols: bool) -> String {
    format!(
        "{}.{}.{}",
        lower(id),
        version.lower_normalized(),
        if symbols { "snupkg" } else { "nupkg" }
    )
}

/// The service index: every resource of the repository, under each `@type` NuGet clients look
/// for.
pub fn service_index(urls: &Urls) -> Value {
    let mut resources = Vec::new();
    let mut add = |id: String, types: &[&str], comment: &str| {
        for kind in types {
            resources.push(json!({ "@id": id, "@type": kind, "comment": comment }));
        }
    };
    add(
        urls.publish(),
        &["PackagePublish/2.0.0"],
        "Push, unlist (DELETE) and relist (POST) packages",
    );
    add(
        urls.symbol_publish(),
        &["SymbolPackagePublish/4.9.0"],
        "Push symbol packages (.snupkg)",
    );
    add(
        urls.flat_container(),
        &["PackageBaseAddress/3.0.0"],
        "Package contents: versions, .nupkg and .nuspec",
    );
    add(
        urls.registrations(Hive::SemVer1),
        &[
            "RegistrationsBaseUrl",
            "RegistrationsBaseUrl/3.0.0-beta",
            "RegistrationsBaseUrl/3.0.0-rc",
            "RegistrationsBaseUrl/3.4.0",
        ],
        "Package metadata, SemVer 1.0.0 versions",
    );
    add(
        urls.registrations(Hive::SemVer2),
        &[
            "RegistrationsBaseUrl/3.6.0",
            "RegistrationsBaseUrl/Versioned",
        ],
        "Package metadata, every version",
    );
    add(
        urls.search(),
        &[
            "SearchQueryService",
            "SearchQueryService/3.0.0-beta",
            "SearchQueryService/3.0.0-rc",
            "SearchQueryService/3.5.0",
        ],
        "Search packages by id",
    );
    json!({ "version": "3.0.0", "resources": resources })
}

/// A package's versions in the flat container: every stored version, lowest first, in lowercase
/// normal form.
pub fn flat_versions(versions: &[NuGetVersion]) -> Value {
    let versions: Vec<String> = versions
        .iter()
        .map(NuGetVersion::lower_normalized)
        .collect();
    json!({ "versions": versions })
}

/// A version's deprecation, as NuGet shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deprecation {
    /// `Legacy`, `CriticalBugs` and/or `Other`.
    pub reasons: Vec<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to use instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_package: Option<AlternatePackage>,
}

/// A package to use instead of a deprecated one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlternatePackage {
    /// Its id.
    pub id: String,
    /// A version range (`*` or absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

/// The reasons a deprecation may give.
pub const DEPRECATION_REASONS: [&str; 3] = ["Legacy", "CriticalBugs", "Other"];

impl Deprecation {
    /// Reads a deprecation a client sends (`{"reasons": […], "message"?, "alternatePackage"?}`)
    /// and checks it: at least one known reason, a message of at most 4,000 characters, an
    /// alternate package with a valid id.
    ///
    /// Errors ([`registry_core::Error::PackageInvalid`]): what is wrong.
    pub fn parse(body: &[u8]) -> registry_core::Result<Deprecation> {
        let deprecation: Deprecation = serde_json::from_slice(body).map_err(|e| {
            super::invalid(format!(
                "a deprecation is {{\"reasons\": [\"Legacy\"|\"CriticalBugs\"|\"Other\"], \
                 \"message\"?, \"alternatePackage\"?: {{\"id\", \"range\"?}}}}: {e}"
            ))
        })?;
        if deprecation.reasons.is_empty()
            || deprecation
                .reasons
                .iter()
                .any(|r| !DEPRECATION_REASONS.contains(&r.as_str()))
        {
            return Err(super::invalid(format!(
                "deprecation reasons are one or more of {DEPRECATION_REASONS:?}"
            )));
        }
        if deprecation
            .message
            .as_ref()
            .is_some_and(|m| m.chars().count() > 4000)
        {
            return Err(super::invalid(
                "a deprecation message is at most 4000 characters",
            ));
        }
        if let Some(alternate) = &deprecation.alternate_package {
            super::check_id(&alternate.id)?;
        }
        Ok(deprecation)
    }

    /// The deprecation a version's stored status text holds: the document [`Deprecation::parse`]
    /// accepted, or, for a status set some other way, its text as the message of an `Other`
    /// deprecation.
    pub fn from_status(text: &str) -> Deprecation {
        serde_json::from_str(text).unwrap_or_else(|_| Deprecation {
            reasons: vec!["Other".into()],
            message: (!text.is_empty()).then(|| text.to_owned()),
            alternate_package: None,
        })
    }
}

/// A version's state as NuGet sees it: listed or not, deprecated or not, independently. It is
/// kept as the version's status: `Default` (listed), `Hidden` (unlisted), or `Deprecated` with
/// the deprecation's JSON, which says `"unlisted": true` when the version is also unlisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionState {
    /// Whether the version is listed.
    pub listed: bool,
    /// Its deprecation, if any.
    pub deprecation: Option<Deprecation>,
}

impl VersionState {
    /// The state a stored status holds (a yanked version, which NuGet does not know, reads as
    /// unlisted).
    pub fn from_status(status: &registry_core::VersionStatus) -> VersionState {
        use registry_core::VersionStatus;
        match status {
            VersionStatus::Default => VersionState {
                listed: true,
                deprecation: None,
            },
            VersionStatus::Hidden | VersionStatus::Yanked(_) => VersionState {
                listed: false,
                deprecation: None,
            },
            VersionStatus::Deprecated(text) => {
                let mut document: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                let unlisted = document
                    .as_object_mut()
                    .and_then(|o| o.remove("unlisted"))
                    .is_some_and(|v| v == Value::Bool(true));
                let deprecation = serde_json::from_value(document)
                    .unwrap_or_else(|_| Deprecation::from_status(text));
                VersionState {
                    listed: !unlisted,
                    deprecation: Some(deprecation),
                }
            }
        }
    }

    /// The status that keeps this state.
    pub fn to_status(&self) -> registry_core::VersionStatus {
        use registry_core::VersionStatus;
        match (&self.deprecation, self.listed) {
            (None, true) => VersionStatus::Default,
            (None, false) => VersionStatus::Hidden,
            (Some(deprecation), listed) => {
                let mut document = serde_json::to_value(deprecation).unwrap_or(Value::Null);
                if let (false, Some(object)) = (listed, document.as_object_mut()) {
                    object.insert("unlisted".into(), Value::Bool(true));
                }
                VersionStatus::Deprecated(document.to_string())
            }
        }
    }
}

/// One stored version as the documents show it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its nuspec (the version's stored document).
    pub nuspec: Nuspec,
    /// The version.
    pub version: NuGetVersion,
    /// Whether it is listed (unlisted versions install only when asked for by version).
    pub listed: bool,
    /// When it was published (milliseconds since the epoch).
    pub published_ms: i64,
    /// Its deprecation, if any.
    pub deprecation: Option<Deprecation>,
    /// The `.nupkg`'s SHA-512 (hex) and size, when known: shown as the catalog's
    /// `packageHash` (base64) and `packageSize`, which a proxy of this feed verifies against.
    pub package: Option<(String, u64)>,
}

/// When NuGet shows an unlisted version as published: the year 1900, which older clients read
/// as unlisted.
const UNLISTED_PUBLISHED: &str = "1900-01-01T00:00:00+00:00";

fn published(entry: &Entry) -> String {
    if entry.listed {
        crate::npm::iso_time(entry.published_ms)
    } else {
        UNLISTED_PUBLISHED.to_owned()
    }
}

/// An optional nuspec field as NuGet's documents write it: an absent one is an empty string
/// (clients read `""` as "not given"; nuget.org writes it so).
fn or_empty(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

/// A version's catalog entry, inlined in registration pages.
fn catalog_entry(urls: &Urls, hive: Hive, entry: &Entry) -> Value {
    let nuspec = &entry.nuspec;
    let groups: Vec<Value> = nuspec
        .dependency_groups
        .iter()
        .map(|group| {
            let dependencies: Vec<Value> = group
                .dependencies
                .iter()
                .map(|d| {
                    json!({
                        "@id": format!("{}#dependency/{}", urls.registration_leaf(hive, &nuspec.id, &entry.version), lower(&d.id)),
                        "@type": "PackageDependency",
                        "id": d.id,
                        "range": d.range.clone().unwrap_or_else(|| "(, )".into()),
                        "registration": urls.registration_index(hive, &d.id),
                    })
                })
                .collect();
            let mut value = json!({
                "@type": "PackageDependencyGroup",
                "dependencies": dependencies,
            });
            if let Some(framework) = &group.target_framework {
                value["targetFramework"] = json!(framework);
            }
            value
        })
        .collect();
    let mut value = json!({
        "@id": urls.registration_leaf(hive, &nuspec.id, &entry.version),
        "@type": "PackageDetails",
        "id": nuspec.id,
        "version": entry.version.full_normalized(),
        "authors": nuspec.authors,
        "description": nuspec.description,
        "title": or_empty(&nuspec.title),
        "summary": or_empty(&nuspec.summary),
        "tags": nuspec.tags,
        "projectUrl": or_empty(&nuspec.project_url),
        "licenseUrl": or_empty(&nuspec.license_url),
        "iconUrl": or_empty(&nuspec.icon_url),
        "requireLicenseAcceptance": nuspec.require_license_acceptance,
        "listed": entry.listed,
        "published": published(entry),
        "packageContent": urls.package_content(&nuspec.id, &entry.version),
        "dependencyGroups": groups,
    });
    if let Some((hash, size)) = &entry.package
        && let Ok(bytes) = hex::decode(hash)
    {
        use base64::Engine as _;
        value["packageHash"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        value["packageHashAlgorithm"] = json!("SHA512");
        value["packageSize"] = json!(size);
    }
    if let Some(deprecation) = &entry.deprecation {
        value["deprecation"] = json!({
            "@id": format!("{}#deprecation", urls.registration_leaf(hive, &nuspec.id, &entry.version)),
            "reasons": deprecation.reasons,
            "message": deprecation.message,
            "alternatePackage": deprecation.alternate_package.as_ref().map(|a| json!({
                "id": a.id,
                "range": a.range.clone().unwrap_or_else(|| "*".into()),
            })),
        });
    }
    value
}

/// The entries of a registration page, as items.
fn page_items(urls: &Urls, hive: Hive, id: &str, entries: &[Entry]) -> Vec<Value> {
    entries
        .iter()
        .map(|entry| {
            json!({
                "@id": urls.registration_leaf(hive, id, &entry.version),
                "@type": "Package",
                "catalogEntry": catalog_entry(urls, hive, entry),
                "packageContent": urls.package_content(id, &entry.version),
                "registration": urls.registration_index(hive, id),
            })
        })
        .collect()
}

fn page(urls: &Urls, hive: Hive, id: &str, entries: &[Entry], inline: bool) -> Value {
    let (first, last) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => (
            first.version.lower_normalized(),
            last.version.lower_normalized(),
        ),
        _ => (String::new(), String::new()),
    };
    let mut value = json!({
        "@id": urls.registration_page(hive, id, &first, &last),
        "@type": "catalog:CatalogPage",
        "count": entries.len(),
        "lower": first,
        "upper": last,
    });
    if inline {
        value["items"] = json!(page_items(urls, hive, id, entries));
        value["parent"] = json!(urls.registration_index(hive, id));
    }
    value
}

/// A package's registration index. `entries` are the versions the hive shows, lowest first.
/// Pages are inlined while there are at most [`INLINE_LIMIT`] versions and
/// [`INLINE_DEPENDENCY_LIMIT`] dependencies; above, each page is linked with its bounds and read
/// with [`registration_page`].
pub fn registration_index(urls: &Urls, hive: Hive, id: &str, entries: &[Entry]) -> Value {
    let dependencies: usize = entries
        .iter()
        .flat_map(|e| &e.nuspec.dependency_groups)
        .map(|g| g.dependencies.len())
        .sum();
    let inline = entries.len() <= INLINE_LIMIT && dependencies <= INLINE_DEPENDENCY_LIMIT;
    let pages: Vec<Value> = entries
        .chunks(PAGE_SIZE)
        .map(|chunk| page(urls, hive, id, chunk, inline))
        .collect();
    json!({
        "@id": urls.registration_index(hive, id),
        "@type": ["catalog:CatalogRoot", "PackageRegistration", "catalog:Permalink"],
        "count": pages.len(),
        "items": pages,
    })
}

/// One registration page with its items: the page of `entries` (the versions the hive shows,
/// lowest first, paged as [`registration_index`] pages them) whose bounds are `lower` and
/// `upper`; `None` when no page has those bounds.
pub fn registration_page(
    urls: &Urls,
    hive: Hive,
    id: &str,
    entries: &[Entry],
    lower: &NuGetVersion,
    upper: &NuGetVersion,
) -> Option<Value> {
    entries
        .chunks(PAGE_SIZE)
        .find(|chunk| {
            chunk.first().is_some_and(|e| &e.version == lower)
                && chunk.last().is_some_and(|e| &e.version == upper)
        })
        .map(|chunk| page(urls, hive, id, chunk, true))
}

/// A version's registration leaf.
pub fn registration_leaf(urls: &Urls, hive: Hive, id: &str, entry: &Entry) -> Value {
    json!({
        "@id": urls.registration_leaf(hive, id, &entry.version),
        "@type": ["Package", "http://schema.nuget.org/catalog#Permalink"],
        "listed": entry.listed,
        "published": published(entry),
        "packageContent": urls.package_content(id, &entry.version),
        "registration": urls.registration_index(hive, id),
    })
}

/// A package found by search: its listed versions the query admits, lowest first (never
/// empty).
#[derive(Clone, Debug)]
pub struct Hit {
    /// The versions; the last one is shown as the package's.
    pub entries: Vec<Entry>,
}

/// A search answer: `total` matches, of which `hits` are the asked window.
pub fn search_results(urls: &Urls, hive: Hive, total: usize, hits: &[Hit]) -> Value {
    let data: Vec<Value> = hits
        .iter()
        .filter_map(|hit| {
            let latest = hit.entries.last()?;
            let nuspec = &latest.nuspec;
            let versions: Vec<Value> = hit
                .entries
                .iter()
                .map(|e| {
                    json!({
                        "version": e.version.full_normalized(),
                        "downloads": 0,
                        "@id": urls.registration_leaf(hive, &nuspec.id, &e.version),
                    })
                })
                .collect();
            let package_types: Vec<Value> = if nuspec.package_types.is_empty() {
                vec![json!({ "name": "Dependency" })]
            } else {
                nuspec
                    .package_types
                    .iter()
                    .map(|t| json!({ "name": t }))
                    .collect()
            };
            Some(json!({
                "@id": urls.registration_index(hive, &nuspec.id),
                "@type": "Package",
                "registration": urls.registration_index(hive, &nuspec.id),
                "id": nuspec.id,
                "version": latest.version.full_normalized(),
                "description": nuspec.description,
                "summary": or_empty(&nuspec.summary),
                "title": or_empty(&nuspec.title),
                "authors": [nuspec.authors],
                "tags": nuspec.tags,
                "projectUrl": or_empty(&nuspec.project_url),
                "iconUrl": or_empty(&nuspec.icon_url),
                "licenseUrl": or_empty(&nuspec.license_url),
                "totalDownloads": 0,
                "verified": false,
                "packageTypes": package_types,
                "versions": versions,
            }))
        })
        .collect();
    json!({ "totalHits": total, "data": data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, listed: bool) -> Entry {
        let nuspec = crate::nuget::parse_nuspec(
            format!(
                "<package><metadata><id>Demo.Hello</id><version>{version}</version>\
                 <authors>Ada</authors><description>Hi.</description><dependencies>\
                 <group targetFramework=\"net6.0\"><dependency id=\"Other.Lib\" version=\"[1.0, )\"/></group>\
                 </dependencies></metadata></package>"
            )
            .as_bytes(),
        )
        .unwrap();
        Entry {
            version: NuGetVersion::parse(version).unwrap(),
            nuspec,
            listed,
            published_ms: 0,
            deprecation: None,
            package: None,
        }
    }

    #[test]
    fn the_service_index_names_every_resource_clients_look_for() {
        let index = service_index(&Urls::new("http://h/nuget/r"));
        let types: Vec<&str> = index["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["@type"].as_str().unwrap())
            .collect();
        for wanted in [
            "PackagePublish/2.0.0",
            "PackageBaseAddress/3.0.0",
            "RegistrationsBaseUrl/3.0.0-rc",
            "RegistrationsBaseUrl/3.4.0",
            "RegistrationsBaseUrl/3.6.0",
            "RegistrationsBaseUrl/Versioned",
            "SearchQueryService/3.0.0-rc",
            "SearchQueryService/3.5.0",
            "SymbolPackagePublish/4.9.0",
        ] {
            assert!(types.contains(&wanted), "{wanted}");
        }
    }

    #[test]
    fn registrations_inline_small_packages_and_page_large_ones() {
        let urls = Urls::new("http://h/nuget/r");
        let mut small: Vec<Entry> = (0..3).map(|i| entry(&format!("1.{i}.0"), i != 1)).collect();
        small[0].package = Some(("ab".repeat(64), 1234));
        let index = registration_index(&urls, Hive::SemVer2, "Demo.Hello", &small);
        assert_eq!(index["count"], 1);
        let page = &index["items"][0];
        assert_eq!(
            (page["lower"].as_str(), page["upper"].as_str()),
            (Some("1.0.0"), Some("1.2.0"))
        );
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        // The package's hash as NuGet's catalog writes it, which a proxy verifies against.
        let entry0 = &items[0]["catalogEntry"];
        assert_eq!(entry0["packageHashAlgorithm"], "SHA512");
        assert_eq!(entry0["packageSize"], 1234);
        assert_eq!(
            entry0["packageHash"].as_str().map(str::len),
            Some(88),
            "64 bytes in base64"
        );
        assert!(items[1]["catalogEntry"].get("packageHash").is_none());
        let entry1 = &items[1]["catalogEntry"];
        assert_eq!(entry1["listed"], false);
        assert_eq!(entry1["published"], UNLISTED_PUBLISHED);
        assert_eq!(
            items[0]["packageContent"],
            "http://h/nuget/r/v3/flatcontainer/demo.hello/1.0.0/demo.hello.1.0.0.nupkg"
        );
        let dependency = &entry1["dependencyGroups"][0]["dependencies"][0];
        assert_eq!(dependency["id"], "Other.Lib");
        assert_eq!(dependency["range"], "[1.0, )");
        assert_eq!(
            dependency["registration"],
            "http://h/nuget/r/v3/registration-semver2/other.lib/index.json"
        );

        let large: Vec<Entry> = (0..1000)
            .map(|i| entry(&format!("1.0.{i}"), true))
            .collect();
        let index = registration_index(&urls, Hive::SemVer2, "Demo.Hello", &large);
        assert_eq!(index["count"], 16);
        assert!(index["items"][0].get("items").is_none());
        assert_eq!(
            index["items"][15]["@id"],
            "http://h/nuget/r/v3/registration-semver2/demo.hello/page/1.0.960/1.0.999.json"
        );
        assert_eq!(index["items"][15]["count"], 40);
        let bound = |v: &str| NuGetVersion::parse(v).unwrap();
        let last = registration_page(
            &urls,
            Hive::SemVer2,
            "Demo.Hello",
            &large,
            &bound("1.0.960"),
            &bound("1.0.999"),
        )
        .unwrap();
        assert_eq!(last["items"].as_array().unwrap().len(), 40);
        // Only real pages: bounds spanning everything are no page.
        assert!(
            registration_page(
                &urls,
                Hive::SemVer2,
                "Demo.Hello",
                &large,
                &bound("1.0.0"),
                &bound("1.0.999")
            )
            .is_none()
        );
        // Many dependencies page an index whatever its number of versions.
        let heavy: Vec<Entry> = (0..5)
            .map(|i| {
                let mut e = entry(&format!("2.0.{i}"), true);
                let dependency = e.nuspec.dependency_groups[0].dependencies[0].clone();
                e.nuspec.dependency_groups[0].dependencies = vec![dependency; 1000];
                e
            })
            .collect();
        let index = registration_index(&urls, Hive::SemVer2, "Demo.Hello", &heavy);
        assert!(index["items"][0].get("items").is_none());
    }

    #[test]
    fn the_semver1_hive_hides_semver2_versions() {
        assert!(Hive::SemVer1.shows(&NuGetVersion::parse("1.0.0-beta1").unwrap()));
        assert!(!Hive::SemVer1.shows(&NuGetVersion::parse("1.0.0-beta.1").unwrap()));
        assert!(!Hive::SemVer1.shows(&NuGetVersion::parse("1.0.0+git").unwrap()));
        assert!(Hive::SemVer2.shows(&NuGetVersion::parse("1.0.0+git").unwrap()));
        assert_eq!(
            Hive::from_segment("registration-semver2"),
            Some(Hive::SemVer2)
        );
        assert_eq!(Hive::from_segment("nope"), None);
    }

    #[test]
    fn listing_and_deprecation_are_independent() {
        use registry_core::VersionStatus;
        let deprecation = Deprecation::parse(br#"{"reasons":["Legacy"]}"#).unwrap();
        for listed in [true, false] {
            for deprecation in [None, Some(deprecation.clone())] {
                let state = VersionState {
                    listed,
                    deprecation,
                };
                assert_eq!(VersionState::from_status(&state.to_status()), state);
            }
        }
        assert_eq!(
            VersionState::from_status(&VersionStatus::Deprecated("old words".into())),
            VersionState {
                listed: true,
                deprecation: Some(Deprecation::from_status("old words"))
            }
        );
    }

    #[test]
    fn deprecations_are_checked() {
        let parsed = Deprecation::parse(
            br#"{"reasons":["Legacy"],"message":"use Other","alternatePackage":{"id":"Other"}}"#,
        )
        .unwrap();
        assert_eq!(parsed.reasons, ["Legacy"]);
        for bad in [
            &br#"{"reasons":[]}"#[..],
            br#"{"reasons":["Old"]}"#,
            br#"{"reasons":["Other"],"alternatePackage":{"id":"bad id"}}"#,
            br#"{"reasons":["Other"],"extra":1}"#,
            b"nope",
        ] {
            assert!(Deprecation::parse(bad).is_err());
        }
        let stored = serde_json::to_string(&parsed).unwrap();
        assert_eq!(Deprecation::from_status(&stored), parsed);
        assert_eq!(
            Deprecation::from_status("just words").message.as_deref(),
            Some("just words")
        );
    }

    #[test]
    fn search_shows_the_latest_version_and_all_admitted() {
        let urls = Urls::new("http://h/nuget/r");
        let hit = Hit {
            entries: vec![entry("1.0.0", true), entry("2.0.0", true)],
        };
        let results = search_results(&urls, Hive::SemVer2, 7, &[hit]);
        assert_eq!(results["totalHits"], 7);
        assert_eq!(results["data"][0]["version"], "2.0.0");
        assert_eq!(results["data"][0]["versions"].as_array().unwrap().len(), 2);
    }
}
