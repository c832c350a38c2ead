//! The npm publish document: `parse_put` never panics on any bytes; whatever it accepts as a
//! publish is self-consistent (one version, digests of the tarball it carries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_formats::npm::{NpmLimits, Put, check_name, check_version, parse_put};

fuzz_target!(|data: &[u8]| {
    let limits = NpmLimits {
        max_tarball_size: 1 << 20,
        max_unpacked_size: 4 << 20,
        max_entries: 1000,
    };
    if let Ok(Put::Publish(publication)) = parse_put(data, "pkg", &limits) {
        assert_eq!(publication.name, "pkg");
        assert!(check_name(&publication.name).is_ok());
        assert!(check_version(&publication.version).is_ok());
        assert_eq!(publication.shasum.len(), 40);
        assert_eq!(publication.sha512.len(), 128);
    }
});
