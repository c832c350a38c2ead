//! Digest, repository name, tag and reference parsing: never panics, and whatever parses
//! round-trips through its text form unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_core::{Digest, Reference, RepositoryName, Tag};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(digest.as_str(), text);
        assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
    }
    if let Ok(name) = RepositoryName::parse(text) {
        assert_eq!(name.as_str(), text);
        assert!(text.len() <= 255);
        assert!(!text.contains("..") && !text.starts_with('/') && !text.ends_with('/'));
    }
    if let Ok(tag) = Tag::parse(text) {
        assert_eq!(tag.as_str(), text);
    }
    if let Ok(reference) = Reference::parse(text) {
        assert_eq!(reference.to_string(), text);
    }
});
