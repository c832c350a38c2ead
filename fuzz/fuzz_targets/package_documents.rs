//! Package documents and names clients send: Maven paths and poms, NuGet packages, nuspecs,
//! versions and deprecations, Terraform module archives, provider sums and signing keys never
//! panic; what they accept keeps its invariants (a NuGet version's normal form is a version
//! equal to it; a nuspec's id and version are valid; a key id is 16 hex digits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_formats::maven;
use registry_formats::nuget::{self, NuGetVersion};
use registry_formats::terraform::{self, providers};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 9 {
        0 => {
            let _ = maven::metadata::pom_coordinates(body);
        }
        1 => {
            if let Ok(path) = std::str::from_utf8(body) {
                let _ = maven::parse_path(path);
                let _ = maven::parse_version_dir(path);
            }
        }
        2 => {
            if let Ok((nuspec, raw)) = nuget::read_nupkg(std::io::Cursor::new(body)) {
                assert!(raw.len() as u64 <= nuget::MAX_NUSPEC_SIZE);
                assert!(nuget::check_id(&nuspec.id).is_ok());
            }
        }
        3 => {
            if let Ok(nuspec) = nuget::parse_nuspec(body) {
                assert!(nuget::check_id(&nuspec.id).is_ok());
                assert!(NuGetVersion::parse(&nuspec.version).is_ok());
            }
        }
        5 => {
            let _ = nuget::documents::Deprecation::parse(body);
        }
        6 => {
            let limits = terraform::ModuleLimits {
                max_entries: 1000,
                max_expanded: 4 << 20,
            };
            let _ = terraform::check_module_archive(std::io::Cursor::new(body), limits);
        }
        7 => {
            let _ = providers::parse_sums(body);
        }
        8 => {
            if let Ok(id) = providers::key_id(body) {
                assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body)
                && let Ok(version) = NuGetVersion::parse(text)
            {
                let normal = NuGetVersion::parse(&version.normalized()).expect("a normal form parses");
                assert_eq!(normal, version);
            }
        }
    }
});
