//! What upstream registries and package clients send to proxies and the firewall: npm
//! packuments, PyPI JSON project pages, OSV advisories and npm audit requests never panic; what
//! they accept keeps its invariants (every declared file belongs to a version of the package,
//! every version is the format's normal form, every advisory is filed under a stored name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_core::firewall::Advisories;
use registry_core::FormatRules;
use registry_formats::{npm, pypi};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(read) = npm::read_packument("pad", body) {
                for file in &read.files {
                    assert!(read.package.version(&file.version).is_some());
                }
                for version in &read.package.versions {
                    assert!(npm::check_version(&version.version).is_ok());
                    assert!(!version.version.contains('+'));
                }
            }
        }
        1 => {
            if let Ok(read) = pypi::read_project_json("demo", body, "http://up.example/simple/demo/") {
                for file in &read.files {
                    assert!(read.package.version(&file.version).is_some());
                    assert!(file.url.starts_with("http"));
                }
                for version in &read.package.versions {
                    assert_eq!(pypi::normalize_version(&version.version).ok().as_deref(), Some(version.version.as_str()));
                }
            }
        }
        2 => {
            let mut advisories = Advisories::new();
            let _ = advisories.add_json(body, &registry_formats::package_key);
            let _ = advisories.about(registry_core::PackageFormat::Npm, "pad");
            for advisory in advisories.about(registry_core::PackageFormat::Npm, "pad") {
                let _ = advisory.semver_range();
                let _ = advisory.affects("1.0.0", &npm::Npm);
            }
        }
        _ => {
            if let Ok(request) = npm::read_bulk_request(body, selector & 0x80 != 0) {
                let total: usize = request.values().map(Vec::len).sum();
                assert!(total <= npm::MAX_AUDIT_VERSIONS);
                let _ = npm::bulk_response(&request, &Advisories::new());
                let _ = npm::Npm.format();
            }
        }
    }
});
