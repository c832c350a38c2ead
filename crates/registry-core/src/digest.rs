//! Content digests (`algorithm:hex`) and a streaming hasher whose state can be saved.

use std::fmt;
use std::str::FromStr;

use digest::Digest as _;
use digest::common::hazmat::{SerializableState, SerializedState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A digest algorithm the registry can compute and verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the OCI default.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the `:` of a digest.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded digest value.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// Every supported algorithm.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other if is_algorithm_grammar(other) => Err(DigestError::UnsupportedAlgorithm {
                algorithm: other.to_owned(),
            }),
            _ => Err(DigestError::MalformedAlgorithm),
        }
    }
}

/// Why a string is not a valid digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `:` separates the algorithm from the encoded value.
    #[error("digest has no ':' between algorithm and value")]
    MissingSeparator,
    /// The algorithm part breaks the OCI grammar `[a-z0-9]+([+._-][a-z0-9]+)*`.
    #[error("digest algorithm is not in the OCI grammar")]
    MalformedAlgorithm,
    /// A well-formed algorithm this registry does not implement.
    #[error("digest algorithm {algorithm:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm {
        /// The algorithm as given.
        algorithm: String,
    },
    /// The encoded value has the wrong length for its algorithm.
    #[error("{algorithm} digest must have {expected} hex characters, found {found}")]
    WrongLength {
        /// The digest's algorithm.
        algorithm: Algorithm,
        /// The required number of hex characters.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// The encoded value holds a character other than lowercase hex.
    #[error("digest value must be lowercase hex")]
    NotLowercaseHex,
}

/// A validated content digest such as `sha256:e3b0…b855`.
///
/// Only sha256 and sha512 are accepted, each with its exact lowercase-hex length, so a
/// `Digest` is always safe to use as a file name component.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole `algorithm:hex` string.
    text: Box<str>,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (algorithm, hex) = s.split_once(':').ok_or(DigestError::MissingSeparator)?;
        let algorithm: Algorithm = algorithm.parse()?;
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hex_len(),
                found: hex.len(),
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::NotLowercaseHex);
        }
        Ok(Digest {
            algorithm,
            text: s.into(),
        })
    }

    /// Builds a digest from an algorithm and its raw output bytes.
    ///
    /// # Panics
    /// If `bytes` is not the algorithm's output length (a programming error).
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Self {
        assert_eq!(bytes.len() * 2, algorithm.hex_len(), "digest output length");
        Digest {
            algorithm,
            text: format!("{algorithm}:{}", hex::encode(bytes)).into(),
        }
    }

    /// Computes the digest of `data` in one call.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(data);
        hasher.finish()
    }

    /// Computes the sha256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self::compute(Algorithm::Sha256, data)
    }

    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex value after the `:`.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The whole `algorithm:hex` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`, the OCI image spec's algorithm grammar.
fn is_algorithm_grammar(s: &str) -> bool {
    let mut previous_was_separator = true;
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => previous_was_separator = false,
            b'+' | b'.' | b'_' | b'-' if !previous_was_separator => previous_was_separator = true,
            _ => return false,
        }
    }
    !previous_was_separator
}

/// An incremental hasher for one of the supported algorithms.
///
/// Its state can be saved with [`DigestHasher::state`] and restored with
/// [`DigestHasher::restore`], so a chunked upload can continue after a restart or on another
/// instance.
#[derive(Clone, Debug)]
pub enum DigestHasher {
    /// A SHA-256 hasher.
    Sha256(sha2::Sha256),
    /// A SHA-512 hasher.
    Sha512(sha2::Sha512),
}

/// The saved state of a [`DigestHasher`]; opaque bytes plus the algorithm they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HasherState {
    /// The hasher's algorithm.
    pub algorithm: Algorithm,
    /// The serialized internal state (stable across sha2 0.11.x releases).
    pub bytes: Vec<u8>,
}

/// A saved hasher state that cannot be restored (wrong length or corrupt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("saved {algorithm} hasher state is invalid")]
pub struct HasherStateError {
    /// The algorithm the state claimed.
    pub algorithm: Algorithm,
}

impl DigestHasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => DigestHasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => DigestHasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            DigestHasher::Sha256(_) => Algorithm::Sha256,
            DigestHasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes to the hasher.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(data),
            DigestHasher::Sha512(h) => h.update(data),
        }
    }

    /// Consumes the hasher and returns the digest of everything fed to it.
    pub fn finish(self) -> Digest {
        match self {
            DigestHasher::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            DigestHasher::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        }
    }

    /// The digest of everything fed so far, leaving the hasher usable.
    pub fn peek(&self) -> Digest {
        self.clone().finish()
    }

    /// Saves the hasher's internal state.
    pub fn state(&self) -> HasherState {
        let bytes = match self {
            DigestHasher::Sha256(h) => h.serialize().to_vec(),
            DigestHasher::Sha512(h) => h.serialize().to_vec(),
        };
        HasherState {
            algorithm: self.algorithm(),
            bytes,
        }
    }

    /// Restores a hasher from a state saved by [`DigestHasher::state`].
    pub fn restore(state: &HasherState) -> Result<Self, HasherStateError> {
        let error = HasherStateError {
            algorithm: state.algorithm,
        };
        match state.algorithm {
            Algorithm::Sha256 => {
                let saved = SerializedState::<sha2::Sha256>::try_from(state.bytes.as_slice())
                    .map_err(|_| error)?;
                sha2::Sha256::deserialize(&saved)
                    .map(DigestHasher::Sha256)
                    .map_err(|_| error)
            }
            Algorithm::Sha512 => {
                let saved = SerializedState::<sha2::Sha512>::try_from(state.bytes.as_slice())
                    .map_err(|_| error)?;
                sha2::Sha512::deserialize(&saved)
                    .map(DigestHasher::Sha512)
                    .map_err(|_| error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_computes() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d, Digest::sha256(b""));
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        let d512 = Digest::compute(Algorithm::Sha512, b"abc");
        assert_eq!(Digest::parse(d512.as_str()).unwrap(), d512);
    }

    #[test]
    fn rejects_each_malformation_specifically() {
        assert_eq!(Digest::parse("sha256"), Err(DigestError::MissingSeparator));
        assert_eq!(
            Digest::parse("SHA256:00"),
            Err(DigestError::MalformedAlgorithm)
        );
        assert!(matches!(
            Digest::parse("blake3:00"),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::WrongLength { found: 3, .. })
        ));
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        assert_eq!(Digest::parse(&upper), Err(DigestError::NotLowercaseHex));
        assert_eq!(Digest::parse(":00"), Err(DigestError::MalformedAlgorithm));
        assert_eq!(
            Digest::parse("sha+:00"),
            Err(DigestError::MalformedAlgorithm)
        );
    }

    #[test]
    fn hasher_state_survives_a_round_trip() {
        for algorithm in Algorithm::ALL {
            let mut hasher = DigestHasher::new(algorithm);
            hasher.update(&[7u8; 1000]);
            let saved = hasher.state();
            let mut restored = DigestHasher::restore(&saved).unwrap();
            hasher.update(b"tail");
            restored.update(b"tail");
            assert_eq!(hasher.finish(), restored.finish());
        }
        let bad = HasherState {
            algorithm: Algorithm::Sha256,
            bytes: vec![1, 2, 3],
        };
        assert!(DigestHasher::restore(&bad).is_err());
    }
}
