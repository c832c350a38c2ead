//! Manifest parsing: never panics on any bytes or content type, keeps the bytes it was given,
//! and only lists references with valid digests.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use registry_core::manifest::SUPPORTED_MEDIA_TYPES;
use registry_core::{Digest, Manifest, ManifestLimits};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the declared content type: none, or one of the supported ones.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = SUPPORTED_MEDIA_TYPES.get(usize::from(selector) % 5);
    let limits = ManifestLimits { max_size: 64 * 1024 };
    let bytes = Bytes::copy_from_slice(body);
    if let Ok(manifest) = Manifest::parse(bytes.clone(), content_type.copied(), &limits) {
        assert_eq!(manifest.bytes(), &bytes);
        assert_eq!(manifest.digest(), &Digest::sha256(body));
        for digest in manifest.blob_digests().iter().chain(&manifest.child_digests()) {
            assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(digest));
        }
    }
});
