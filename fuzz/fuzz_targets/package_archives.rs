//! Package archives clients upload: the npm tarball reader and the wheel and sdist
//! core-metadata readers never panic, never read past their limits, and whatever metadata they
//! return is within its size bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_formats::npm::{NpmLimits, read_tarball};
use registry_formats::pypi::{
    MAX_METADATA_SIZE, parse_core_metadata, parse_filename, sdist_metadata, wheel_metadata,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let limits = NpmLimits {
                max_tarball_size: 1 << 20,
                max_unpacked_size: 4 << 20,
                max_entries: 1000,
            };
            let _ = read_tarball(body, &limits);
        }
        1 => {
            let file = parse_filename("demo-1.0-py3-none-any.whl").expect("a wheel name");
            if let Ok(metadata) = wheel_metadata(std::io::Cursor::new(body), &file) {
                assert!(metadata.len() as u64 <= MAX_METADATA_SIZE);
            }
        }
        2 => {
            if let Ok(metadata) = sdist_metadata(body) {
                assert!(metadata.len() as u64 <= MAX_METADATA_SIZE);
            }
        }
        _ => {
            if let Ok(metadata) = parse_core_metadata(body) {
                assert!(!metadata.name.is_empty() && !metadata.version.is_empty());
            }
        }
    }
});
