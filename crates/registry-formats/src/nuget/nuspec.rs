//! A package's `.nuspec`: read from the `.nupkg` (the one at its top level, bounded) and parsed
//! for what the registry serves (id, version, descriptions, dependency groups).

use std::fmt;

use registry_core::Result;
use serde::{Deserialize, Serialize};

use super::{NuGetVersion, check_id, invalid};

/// The largest `.nuspec` read.
pub const MAX_NUSPEC_SIZE: u64 = 1 << 20;

/// The most dependencies a nuspec may declare, over all its groups (every one is repeated in
/// each registration document that shows the version).
pub const MAX_DEPENDENCIES: usize = 1000;

/// The most dependency groups a nuspec may declare.
pub const MAX_DEPENDENCY_GROUPS: usize = 100;

/// A dependency a package declares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The package id.
    pub id: String,
    /// The version range, as written (`[1.0,2.0)`, `1.0`), when given.
    pub range: Option<String>,
}

/// Dependencies for one target framework (or for all, without one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyGroup {
    /// The target framework (`net6.0`), when the group names one.
    pub target_framework: Option<String>,
    /// The dependencies.
    pub dependencies: Vec<Dependency>,
}

/// What a package's `.nuspec` says of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Nuspec {
    /// The id, as written.
    pub id: String,
    /// The version, as written (checked with [`NuGetVersion::parse`]).
    pub version: String,
    /// `authors`.
    pub authors: String,
    /// `description`.
    pub description: String,
    /// `title`, when given.
    pub title: Option<String>,
    /// `summary`, when given.
    pub summary: Option<String>,
    /// `tags`, split on spaces.
    pub tags: Vec<String>,
    /// `projectUrl`, when given.
    pub project_url: Option<String>,
    /// `licenseUrl`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_url: Option<String>,
    /// `iconUrl`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// `requireLicenseAcceptance`.
    #[serde(default)]
    pub require_license_acceptance: bool,
    /// The dependency groups (flat dependencies make one group without a framework).
    pub dependency_groups: Vec<DependencyGroup>,
    /// The package types (`Dependency` when none is given; `SymbolsPackage` for a `.snupkg`).
    #[serde(default)]
    pub package_types: Vec<String>,
}

impl Nuspec {
    /// Whether this is a symbol package's nuspec.
    pub fn is_symbols(&self) -> bool {
        self.package_types.iter().any(|t| t == "SymbolsPackage")
    }
}

/// Reads the `.nuspec` of a `.nupkg` (a zip, opened with [`crate::archive::open_zip`]): the one
/// `*.nuspec` at the archive's top level, at most [`MAX_NUSPEC_SIZE`] bytes. Answers the parsed
/// nuspec and its bytes.
///
/// Errors ([`registry_core::Error::PackageInvalid`]): not a zip, no or several nuspecs, a bad nuspec.
pub fn read_nupkg(reader: impl std::io::Read + std::io::Seek) -> Result<(Nuspec, Vec<u8>)> {
    let mut archive =
        crate::archive::open_zip(reader, "the package", crate::archive::ZipLimits::default())?;
    let nuspecs: Vec<String> = archive
        .file_names()
        .filter(|name| !name.contains('/') && name.to_ascii_lowercase().ends_with(".nuspec"))
        .map(str::to_owned)
        .collect();
    let [name] = nuspecs.as_slice() else {
        return Err(invalid(format!(
            "the package must hold one .nuspec at its top level, not {}",
            nuspecs.len()
        )));
    };
    let bytes = crate::archive::read_zip_entry(&mut archive, name, "the package", MAX_NUSPEC_SIZE)?;
    Ok((parse_nuspec(&bytes)?, bytes))
}

/// Parses a `.nuspec` document.
///
/// Errors ([`registry_core::Error::PackageInvalid`]): not XML, no `<package><metadata>`, a
/// missing `id` or `version`, a missing `authors` or `description` (except in a symbol
/// package's nuspec, which NuGet writes without them), a bad id or version, a field given
/// twice.
pub fn parse_nuspec(bytes: &[u8]) -> Result<Nuspec> {
    use quick_xml::events::Event;
    let bad = |e: &dyn fmt::Display| invalid(format!("the nuspec is not XML: {e}"));
    if bytes.len() as u64 > MAX_NUSPEC_SIZE {
        return Err(invalid(format!(
            "the nuspec is over {MAX_NUSPEC_SIZE} bytes"
        )));
    }
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut fields: std::collections::BTreeMap<String, String> = Default::default();
    let mut groups: Vec<DependencyGroup> = Vec::new();
    let mut package_types: Vec<String> = Vec::new();
    let mut closed = false;
    let mut buffer = Vec::new();
    let attribute =
        |element: &quick_xml::events::BytesStart<'_>, name: &str| -> Result<Option<String>> {
            for attribute in element.attributes() {
                let attribute = attribute.map_err(|e| bad(&e))?;
                if attribute.key.local_name().as_ref() == name.as_bytes() {
                    let value = attribute.unescape_value().map_err(|e| bad(&e))?;
                    return Ok(Some(value.into_owned()));
                }
            }
            Ok(None)
        };
    loop {
        let event = reader.read_event_into(&mut buffer).map_err(|e| bad(&e))?;
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e.clone()),
            _ => None,
        };
        if let Some(element) = element {
            if path.len() > 32 {
                return Err(invalid("the nuspec nests too deeply"));
            }
            let name = String::from_utf8_lossy(element.local_name().as_ref()).into_owned();
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            match (names.as_slice(), name.as_str()) {
                (["package", "metadata", "dependencies"], "group") => {
                    groups.push(DependencyGroup {
                        target_framework: attribute(&element, "targetFramework")?,
                        dependencies: Vec::new(),
                    });
                }
                (["package", "metadata", "packageTypes"], "packageType") => {
                    if let Some(name) = attribute(&element, "name")? {
                        package_types.push(name);
                    }
                }
                (["package", "metadata", "dependencies", ..], "dependency") => {
                    let id = attribute(&element, "id")?
                        .ok_or_else(|| invalid("a dependency has no id"))?;
                    check_id(&id)?;
                    let dependency = Dependency {
                        id,
                        range: attribute(&element, "version")?,
                    };
                    if names.len() == 3 {
                        // A flat dependency: the group without a framework.
                        match groups.iter_mut().find(|g| g.target_framework.is_none()) {
                            Some(group) => group.dependencies.push(dependency),
                            None => groups.push(DependencyGroup {
                                target_framework: None,
                                dependencies: vec![dependency],
                            }),
                        }
                    } else if let Some(group) = groups.last_mut() {
                        group.dependencies.push(dependency);
                    }
                }
                _ => {}
            }
            if matches!(event, Event::Start(_)) {
                path.push(name);
                text.clear();
            }
        }
        match event {
            Event::Text(part) => text.push_str(&part.decode().map_err(|e| bad(&e))?),
            Event::CData(part) => text.push_str(&part.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(reference) => {
                match reference.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => text.push(c),
                    None => text.push(match reference.decode().map_err(|e| bad(&e))?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(invalid(format!(
                                "the nuspec refers to the undefined entity &{other};"
                            )));
                        }
                    }),
                }
            }
            Event::End(_) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                if let ["package", "metadata", field] = names.as_slice()
                    && fields
                        .insert((*field).to_owned(), text.trim().to_owned())
                        .is_some()
                    && !["dependencies", "packageTypes"].contains(field)
                {
                    return Err(invalid(format!("the nuspec gives {field} twice")));
                }
                if names == ["package"] {
                    closed = true;
                }
                text.clear();
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    if !closed {
        return Err(invalid("the nuspec has no complete <package>"));
    }
    let dependencies: usize = groups.iter().map(|g| g.dependencies.len()).sum();
    if dependencies > MAX_DEPENDENCIES || groups.len() > MAX_DEPENDENCY_GROUPS {
        return Err(invalid(format!(
            "the nuspec declares {dependencies} dependencies in {} groups; at most \
             {MAX_DEPENDENCIES} in {MAX_DEPENDENCY_GROUPS} are accepted",
            groups.len()
        )));
    }
    let required = |key: &str| {
        fields
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| invalid(format!("the nuspec has no {key}")))
    };
    let optional = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
    let id = required("id")?;
    check_id(&id)?;
    let version = required("version")?;
    NuGetVersion::parse(&version)?;
    let symbols = package_types.iter().any(|t| t == "SymbolsPackage");
    Ok(Nuspec {
        id,
        version,
        // A symbol package's nuspec (NuGet writes it) names neither.
        authors: match symbols {
            true => optional("authors").unwrap_or_default(),
            false => required("authors")?,
        },
        description: match symbols {
            true => optional("description").unwrap_or_default(),
            false => required("description")?,
        },
        title: optional("title"),
        summary: optional("summary"),
        tags: optional("tags")
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        project_url: optional("projectUrl"),
        license_url: optional("licenseUrl"),
        icon_url: optional("iconUrl"),
        require_license_acceptance: optional("requireLicenseAcceptance")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        dependency_groups: groups,
        package_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUSPEC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Hello.World</id>
    <version>1.02.0-Beta.1</version>
    <authors>Ada &amp; Co</authors>
    <description>Says hello.</description>
    <tags>greeting demo</tags>
    <packageTypes><packageType name="Dependency" /></packageTypes>
    <dependencies>
      <group targetFramework="net6.0">
        <dependency id="Newtonsoft.Json" version="[13.0.1, )" exclude="Build" />
      </group>
      <group>
        <dependency id="Other" />
      </group>
    </dependencies>
  </metadata>
</package>"#;

    fn nupkg(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut writer, data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_nupkg_is_read_for_its_nuspec() {
        let package = nupkg(&[
            ("Hello.World.nuspec", NUSPEC.as_bytes()),
            ("lib/net6.0/Hello.dll", b"MZ"),
        ]);
        let (nuspec, raw) = read_nupkg(std::io::Cursor::new(package)).unwrap();
        assert_eq!(raw, NUSPEC.as_bytes());
        assert_eq!(nuspec.id, "Hello.World");
        assert_eq!(nuspec.version, "1.02.0-Beta.1");
        assert_eq!(nuspec.authors, "Ada & Co");
        assert_eq!(nuspec.tags, ["greeting", "demo"]);
        assert_eq!(nuspec.package_types, ["Dependency"]);
        assert!(!nuspec.is_symbols());
        // A symbol package's nuspec, as NuGet writes it: no authors.
        let symbols = parse_nuspec(
            br#"<package><metadata><id>A</id><version>1.0.0</version><description>d</description>
            <packageTypes><packageType name="SymbolsPackage" /></packageTypes></metadata></package>"#,
        )
        .unwrap();
        assert!(symbols.is_symbols());
        assert_eq!(symbols.authors, "");
        assert_eq!(
            nuspec.dependency_groups,
            [
                DependencyGroup {
                    target_framework: Some("net6.0".into()),
                    dependencies: vec![Dependency {
                        id: "Newtonsoft.Json".into(),
                        range: Some("[13.0.1, )".into())
                    }],
                },
                DependencyGroup {
                    target_framework: None,
                    dependencies: vec![Dependency {
                        id: "Other".into(),
                        range: None
                    }],
                },
            ]
        );
    }

    #[test]
    fn bad_packages_and_nuspecs_are_refused() {
        let two = nupkg(&[
            ("a.nuspec", NUSPEC.as_bytes()),
            ("b.nuspec", NUSPEC.as_bytes()),
        ]);
        assert!(read_nupkg(std::io::Cursor::new(two)).is_err());
        let none = nupkg(&[("lib/a.dll", b"MZ")]);
        assert!(read_nupkg(std::io::Cursor::new(none)).is_err());
        for bad in [
            NUSPEC.replace("<id>Hello.World</id>", ""),
            NUSPEC.replace("1.02.0-Beta.1", "one"),
            NUSPEC.replace("<id>Hello.World</id>", "<id>Hello World</id>"),
            NUSPEC.replace("<authors>", "<authors>x</authors><authors>"),
            NUSPEC.replace("</package>", ""),
            NUSPEC.replace("Says hello.", "&xxe;"),
            NUSPEC.replace(
                "<group>",
                &format!(
                    "<group>{}",
                    "<dependency id=\"X\" />".repeat(MAX_DEPENDENCIES)
                ),
            ),
        ] {
            assert!(parse_nuspec(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_as_a_nuspec(bytes in proptest::collection::vec(0u8..=255, 0..300)) {
            let _ = parse_nuspec(&bytes);
        }
    }
}
