//! Repository names, tags and manifest references, with the OCI distribution grammar.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted, in bytes (the grammar allows 128 characters).
pub const MAX_TAG_LEN: usize = 128;

/// Why a repository name, tag or reference is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path component (between slashes) is empty.
    #[error("name has an empty path component")]
    EmptyComponent,
    /// A character outside `[a-z0-9._/-]`.
    #[error(
        "name contains {found:?}; only lowercase letters, digits, '.', '_', '-' and '/' are allowed"
    )]
    InvalidCharacter {
        /// The character found.
        found: char,
    },
    /// A component starts or ends with a separator, or uses a separator sequence the grammar
    /// forbids (only `.`, `_`, `__` and runs of `-` may join alphanumerics).
    #[error("name component {component:?} has a misplaced separator")]
    BadSeparator {
        /// The offending component.
        component: String,
    },
    /// The tag is longer than 128 characters.
    #[error("tag is {len} characters long; the limit is {MAX_TAG_LEN}")]
    TagTooLong {
        /// Its length.
        len: usize,
    },
    /// A tag character outside `[A-Za-z0-9_.-]`, or a leading `.` or `-`.
    #[error(
        "tag contains or starts with {found:?}; tags match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
    )]
    InvalidTagCharacter {
        /// The character found.
        found: char,
    },
    /// A reference that looks like a digest but is not a valid one.
    #[error("reference is not a valid digest: {0}")]
    Digest(#[from] DigestError),
}

/// A repository name such as `library/alpine`, validated against the OCI grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(Box<str>);

impl RepositoryName {
    /// Parses and validates a repository name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                len: s.len(),
                max: MAX_NAME_LEN,
            });
        }
        for component in s.split('/') {
            validate_component(component)?;
        }
        Ok(RepositoryName(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_component(component: &str) -> Result<(), NameError> {
    if component.is_empty() {
        return Err(NameError::EmptyComponent);
    }
    let bad_separator = || NameError::BadSeparator {
        component: component.to_owned(),
    };
    // The run of separator characters seen since the last alphanumeric.
    let mut run_start: Option<usize> = Some(0);
    let bytes = component.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => {
                if let Some(start) = run_start.take() {
                    if i == 0 {
                        continue;
                    }
                    if start == 0 || !is_valid_separator(&bytes[start..i]) {
                        return Err(bad_separator());
                    }
                }
            }
            b'.' | b'_' | b'-' => {
                if i == 0 {
                    return Err(bad_separator());
                }
                run_start.get_or_insert(i);
            }
            _ => {
                return Err(NameError::InvalidCharacter {
                    found: component[i..].chars().next().unwrap_or('?'),
                });
            }
        }
    }
    if run_start.is_some() {
        return Err(bad_separator());
    }
    Ok(())
}

fn is_valid_separator(run: &[u8]) -> bool {
    matches!(run, b"." | b"_" | b"__") || run.iter().all(|&b| b == b'-')
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({})", self.0)
    }
}

/// A tag such as `v1.2.3` or `latest`: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Box<str>);

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let Some(first) = s.chars().next() else {
            return Err(NameError::Empty);
        };
        if !(first.is_ascii_alphanumeric() || first == '_') {
            return Err(NameError::InvalidTagCharacter { found: first });
        }
        if let Some(found) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(NameError::InvalidTagCharacter { found });
        }
        if s.len() > MAX_TAG_LEN {
            return Err(NameError::TagTooLong { len: s.len() });
        }
        Ok(Tag(s.into()))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a `:` must be a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

macro_rules! text_impls {
    ($($ty:ty),*) => {$(
        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

text_impls!(RepositoryName, Tag, Reference);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_grammar_examples() {
        for ok in [
            "a",
            "library/alpine",
            "a.b/c_d/e__f/g---h",
            "0/1/2",
            "my-org/my.app",
        ] {
            RepositoryName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_names_with_specific_errors() {
        assert_eq!(RepositoryName::parse(""), Err(NameError::Empty));
        assert_eq!(
            RepositoryName::parse("a//b"),
            Err(NameError::EmptyComponent)
        );
        assert_eq!(RepositoryName::parse("a/"), Err(NameError::EmptyComponent));
        assert_eq!(
            RepositoryName::parse("Alpine"),
            Err(NameError::InvalidCharacter { found: 'A' })
        );
        for bad in ["-a", "a-", "a..b", "a___b", "a._b", "a.-b", "_a", "a/.b"] {
            assert!(
                matches!(
                    RepositoryName::parse(bad),
                    Err(NameError::BadSeparator { .. })
                ),
                "{bad}"
            );
        }
        let long = "a".repeat(256);
        assert!(matches!(
            RepositoryName::parse(&long),
            Err(NameError::TooLong { len: 256, .. })
        ));
        assert!(RepositoryName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags_and_references() {
        assert!(Tag::parse("v1.0_rc-1").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert_eq!(
            Tag::parse(".x"),
            Err(NameError::InvalidTagCharacter { found: '.' })
        );
        assert_eq!(
            Tag::parse("a/b"),
            Err(NameError::InvalidTagCharacter { found: '/' })
        );
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            Tag::parse(&"a".repeat(129)),
            Err(NameError::TagTooLong { len: 129 })
        );
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::Digest(_))
        ));
    }
}
