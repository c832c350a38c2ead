//! Property tests: the hand-written parsers accept exactly what the OCI grammars accept, values
//! round-trip through their text form, and saved hasher states resume exactly.

use std::sync::LazyLock;

use bytes::Bytes;
use proptest::prelude::*;
use regex::Regex;
use registry_core::{
    Algorithm, Digest, DigestHasher, Manifest, ManifestLimits, Reference, RepositoryName, Tag,
};

const NAME: &str =
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*";
const TAG: &str = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}";
/// [`NAME`] with bounded repetitions, for generating names of reasonable length.
const BOUNDED_NAME: &str = r"[a-z0-9]{1,8}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}(?:/[a-z0-9]{1,8}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}){0,12}";

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| full(NAME));
static TAG_RE: LazyLock<Regex> = LazyLock::new(|| full(TAG));

fn full(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn names_from_the_grammar_are_accepted(name in BOUNDED_NAME) {
        prop_assert_eq!(RepositoryName::parse(&name).is_ok(), name.len() <= 255);
    }

    #[test]
    fn name_parser_agrees_with_the_grammar(name in "[a-z0-9._/A-Z-]{0,24}") {
        let expected = NAME_RE.is_match(&name);
        prop_assert_eq!(RepositoryName::parse(&name).is_ok(), expected, "{:?}", name);
    }

    #[test]
    fn tag_parser_agrees_with_the_grammar(tag in "[a-zA-Z0-9._/:-]{0,130}|[a-z.]{1,3}") {
        prop_assert_eq!(Tag::parse(&tag).is_ok(), TAG_RE.is_match(&tag), "{:?}", tag);
    }

    #[test]
    fn names_and_tags_round_trip(name in BOUNDED_NAME, tag in TAG) {
        prop_assume!(name.len() <= 255);
        let parsed = RepositoryName::parse(&name).unwrap();
        prop_assert_eq!(parsed.as_str(), name.as_str());
        let reference = Reference::parse(&tag).unwrap();
        prop_assert_eq!(Reference::parse(&reference.to_string()).unwrap(), reference);
    }

    #[test]
    fn digests_round_trip(data in proptest::collection::vec(any::<u8>(), 0..256), sha512 in any::<bool>()) {
        let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
        let digest = Digest::compute(algorithm, &data);
        prop_assert_eq!(Digest::parse(digest.as_str()).unwrap(), digest.clone());
        prop_assert_eq!(Reference::parse(digest.as_str()).unwrap(), Reference::Digest(digest));
    }

    #[test]
    fn digest_parser_accepts_exactly_valid_digests(text in "(sha256|sha512|sha384|SHA256|sha_256)?:?[0-9a-fA-F]{0,130}") {
        let valid = match text.split_once(':') {
            Some(("sha256", hex)) => hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            Some(("sha512", hex)) => hex.len() == 128 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            _ => false,
        };
        prop_assert_eq!(Digest::parse(&text).is_ok(), valid);
    }

    #[test]
    fn saved_hasher_state_resumes_exactly(data in proptest::collection::vec(any::<u8>(), 0..4096), split in any::<prop::sample::Index>(), sha512 in any::<bool>()) {
        let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
        let at = split.index(data.len() + 1);
        let mut first = DigestHasher::new(algorithm);
        first.update(&data[..at]);
        let mut resumed = DigestHasher::restore(&first.state()).unwrap();
        resumed.update(&data[at..]);
        prop_assert_eq!(resumed.finish(), Digest::compute(algorithm, &data));
    }

    #[test]
    fn manifests_keep_their_bytes_and_list_their_references(
        layers in proptest::collection::vec(any::<u64>(), 0..20),
        spaces in 0usize..4,
    ) {
        let pad = " ".repeat(spaces);
        let descriptor = |seed: u64| format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{seed}}}"#,
            Digest::sha256(&seed.to_le_bytes())
        );
        let text = format!(
            r#"{{{pad}"schemaVersion":2,"config":{},{pad}"layers":[{}]}}"#,
            descriptor(u64::MAX),
            layers.iter().map(|s| descriptor(*s)).collect::<Vec<_>>().join(",")
        );
        let bytes = Bytes::from(text);
        let manifest = Manifest::parse(bytes.clone(), None, &ManifestLimits::default()).unwrap();
        prop_assert_eq!(manifest.bytes(), &bytes);
        prop_assert_eq!(manifest.digest(), &Digest::sha256(&bytes));
        let mut expected = vec![Digest::sha256(&u64::MAX.to_le_bytes())];
        for seed in &layers {
            let d = Digest::sha256(&seed.to_le_bytes());
            if !expected.contains(&d) {
                expected.push(d);
            }
        }
        prop_assert_eq!(manifest.blob_digests(), expected);
    }

    #[test]
    fn manifest_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), ct in proptest::option::of("[a-z/.+-]{0,60}")) {
        let _ = Manifest::parse(Bytes::from(data), ct.as_deref(), &ManifestLimits::default());
    }
}

/// A package repository name is authorized like a repository name, so its grammar is a subset
/// of the OCI one: a single component of it.
const PACKAGE_REPOSITORY: &str = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";

static PACKAGE_REPOSITORY_RE: LazyLock<Regex> = LazyLock::new(|| full(PACKAGE_REPOSITORY));

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn package_repository_names_are_one_oci_component(name in "[a-z0-9._-]{1,12}") {
        let accepted = registry_core::package::check_repository_name(&name).is_ok();
        prop_assert_eq!(accepted, PACKAGE_REPOSITORY_RE.is_match(&name), "{}", name);
        if accepted {
            prop_assert!(RepositoryName::parse(&name).is_ok());
        }
    }
}

#[test]
fn package_repository_names_the_oci_grammar_refuses_are_refused() {
    for bad in ["a-", "a.", "a..b", "-a", "a._b", "A", "a/b", ""] {
        assert!(
            registry_core::package::check_repository_name(bad).is_err(),
            "{bad:?}"
        );
    }
    for good in ["a", "js", "py-internal", "a.b", "a__b", "a---b", "team_x"] {
        assert!(
            registry_core::package::check_repository_name(good).is_ok(),
            "{good:?}"
        );
    }
}
