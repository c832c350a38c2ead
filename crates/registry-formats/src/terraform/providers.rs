//! Terraform providers, as the provider registry protocol (`providers.v1`) serves them: a
//! provider `<namespace>/<type>` is the package `provider:<type>` of the namespace's
//! repository. A version is a release as providers publish them: one zip per platform
//! (`terraform-provider-<type>_<version>_<os>_<arch>.zip`), the `…_SHA256SUMS` listing them,
//! its detached OpenPGP signature `…_SHA256SUMS.sig`, the publisher's public key
//! (`signing-key.asc`, ASCII-armored), which clients check the signature with, and optionally
//! the registry manifest `…_manifest.json` naming the plugin protocols (5.0 without one).

use registry_core::{Error, Result};
use serde_json::{Value, json};

fn invalid(reason: impl Into<String>) -> Error {
    Error::PackageInvalid {
        reason: reason.into(),
    }
}

/// What provider packages are named with before their type.
pub const PROVIDER_PREFIX: &str = "provider:";

/// The largest `SHA256SUMS`, signature or key accepted.
pub const MAX_RELEASE_DOCUMENT: u64 = 64 << 10;

/// The name of a release's public key file.
pub const SIGNING_KEY: &str = "signing-key.asc";

/// Checks a provider type: 1 to 64 lowercase letters, digits and `-`, starting with a letter.
pub fn check_provider_type(kind: &str) -> Result<()> {
    let valid = !kind.is_empty()
        && kind.len() <= 64
        && kind.as_bytes()[0].is_ascii_lowercase()
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{kind:?} is not a provider type: 1 to 64 lowercase letters, digits or '-', \
             starting with a letter"
        )))
    }
}

/// The package a provider is stored as.
pub fn provider_package(kind: &str) -> String {
    format!("{PROVIDER_PREFIX}{kind}")
}

/// One file of a provider release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseFile {
    /// The zip for one platform.
    Archive {
        /// The operating system (`linux`).
        os: String,
        /// The architecture (`amd64`).
        arch: String,
    },
    /// `…_SHA256SUMS`.
    Sums,
    /// `…_SHA256SUMS.sig`.
    Signature,
    /// [`SIGNING_KEY`].
    SigningKey,
    /// `…_manifest.json`: the plugin protocols the provider speaks.
    Manifest,
}

fn platform_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 32
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Reads a release file name of provider `kind` at `version`.
///
/// Errors ([`Error::PackageInvalid`]): any other name, naming the ones accepted.
pub fn parse_release_file(name: &str, kind: &str, version: &str) -> Result<ReleaseFile> {
    if name == SIGNING_KEY {
        return Ok(ReleaseFile::SigningKey);
    }
    let base = format!("terraform-provider-{kind}_{version}_");
    let parsed = name.strip_prefix(&base).and_then(|rest| match rest {
        "SHA256SUMS" => Some(ReleaseFile::Sums),
        "SHA256SUMS.sig" => Some(ReleaseFile::Signature),
        "manifest.json" => Some(ReleaseFile::Manifest),
        _ => {
            let (os, arch) = rest.strip_suffix(".zip")?.split_once('_')?;
            (platform_part(os) && platform_part(arch)).then(|| ReleaseFile::Archive {
                os: os.to_owned(),
                arch: arch.to_owned(),
            })
        }
    });
    parsed.ok_or_else(|| {
        invalid(format!(
            "{name:?} is not a file of this release: upload {base}<os>_<arch>.zip, \
             {base}SHA256SUMS, {base}SHA256SUMS.sig and {SIGNING_KEY}"
        ))
    })
}

/// The plugin protocols a registry manifest names (`{"version": 1, "metadata":
/// {"protocol_versions": ["6.0"]}}`); `5.0` when it names none.
///
/// Errors ([`Error::PackageInvalid`]): not such a JSON document, or a protocol that is not
/// `<major>.<minor>`.
pub fn manifest_protocols(manifest: &[u8]) -> Result<Vec<String>> {
    if manifest.len() as u64 > MAX_RELEASE_DOCUMENT {
        return Err(invalid("the manifest is too large"));
    }
    let document: Value = serde_json::from_slice(manifest)
        .map_err(|e| invalid(format!("the manifest is not JSON: {e}")))?;
    let Some(listed) = document
        .get("metadata")
        .and_then(|m| m.get("protocol_versions"))
    else {
        return Ok(default_protocols());
    };
    let protocols: Vec<String> = listed
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        // Not a list of strings: no protocols, refused just below.
        .unwrap_or_default();
    let valid = |p: &String| {
        p.split_once('.').is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    if protocols.is_empty() || protocols.len() > 8 || !protocols.iter().all(valid) {
        return Err(invalid(
            "the manifest's metadata.protocol_versions must list versions such as \"6.0\"",
        ));
    }
    Ok(protocols)
}

/// The protocols of a provider without a manifest.
pub fn default_protocols() -> Vec<String> {
    vec!["5.0".to_owned()]
}

/// The lines of a `SHA256SUMS`: (hex digest, file name).
///
/// Errors ([`Error::PackageInvalid`]): over [`MAX_RELEASE_DOCUMENT`], not UTF-8, a line that is
/// not `<64 hex digits>  <file name>`, a file name listed twice.
pub fn parse_sums(text: &[u8]) -> Result<Vec<(String, String)>> {
    if text.len() as u64 > MAX_RELEASE_DOCUMENT {
        return Err(invalid("the SHA256SUMS is too large"));
    }
    let text = std::str::from_utf8(text).map_err(|_| invalid("the SHA256SUMS is not UTF-8"))?;
    let mut sums: Vec<(String, String)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (digest, name) = line
            .split_once(char::is_whitespace)
            .map(|(d, n)| (d, n.trim_start().trim_start_matches('*')))
            .filter(|(d, n)| {
                d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) && !n.is_empty()
            })
            .ok_or_else(|| {
                invalid(format!(
                    "the SHA256SUMS line {line:?} is not \"<sha256>  <file>\""
                ))
            })?;
        if sums.iter().any(|(_, n)| n == name) {
            return Err(invalid(format!("the SHA256SUMS lists {name} twice")));
        }
        sums.push((digest.to_ascii_lowercase(), name.to_owned()));
    }
    if sums.is_empty() {
        return Err(invalid("the SHA256SUMS lists no files"));
    }
    Ok(sums)
}

/// The key id (the last 8 bytes of its V4 fingerprint, hex) of the first public key in an
/// ASCII-armored OpenPGP key.
///
/// Errors ([`Error::PackageInvalid`]): not an armored public key block, or its first packet not
/// a version 4 public key.
pub fn key_id(armored: &[u8]) -> Result<String> {
    use base64::Engine;
    use sha1::Digest;
    let bad = |why: &str| {
        invalid(format!(
            "{SIGNING_KEY} is not an armored OpenPGP public key: {why}"
        ))
    };
    if armored.len() as u64 > MAX_RELEASE_DOCUMENT {
        return Err(bad("too large"));
    }
    let text = std::str::from_utf8(armored).map_err(|_| bad("not text"))?;
    let body = text
        .split_once("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        .and_then(|(_, rest)| rest.split_once("-----END PGP PUBLIC KEY BLOCK-----"))
        .map(|(body, _)| body)
        .ok_or_else(|| bad("no PUBLIC KEY BLOCK"))?;
    // Armor headers (`Key: value`) come first, then an empty line, the data, and a checksum
    // line starting with '='.
    let data: String = body
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty() || l.contains(": "))
        .take_while(|l| !l.starts_with('='))
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad("bad base64"))?;
    let tag = *bytes.first().ok_or_else(|| bad("empty"))?;
    if tag & 0x80 == 0 {
        return Err(bad("not a packet"));
    }
    let (kind, length, header): (u8, usize, usize) = if tag & 0x40 != 0 {
        // New format: one-, two- or five-octet lengths.
        let first = *bytes.get(1).ok_or_else(|| bad("truncated"))? as usize;
        match first {
            0..=191 => (tag & 0x3f, first, 2),
            192..=223 => {
                let second = *bytes.get(2).ok_or_else(|| bad("truncated"))? as usize;
                (tag & 0x3f, ((first - 192) << 8) + second + 192, 3)
            }
            255 => {
                let four = bytes.get(2..6).ok_or_else(|| bad("truncated"))?;
                (
                    tag & 0x3f,
                    u32::from_be_bytes([four[0], four[1], four[2], four[3]]) as usize,
                    6,
                )
            }
            _ => return Err(bad("partial lengths")),
        }
    } else {
        let kind = (tag >> 2) & 0x0f;
        match tag & 0x03 {
            0 => (
                kind,
                *bytes.get(1).ok_or_else(|| bad("truncated"))? as usize,
                2,
            ),
            1 => {
                let two = bytes.get(1..3).ok_or_else(|| bad("truncated"))?;
                (kind, u16::from_be_bytes([two[0], two[1]]) as usize, 3)
            }
            2 => {
                let four = bytes.get(1..5).ok_or_else(|| bad("truncated"))?;
                (
                    kind,
                    u32::from_be_bytes([four[0], four[1], four[2], four[3]]) as usize,
                    5,
                )
            }
            _ => return Err(bad("indeterminate length")),
        }
    };
    let packet = header
        .checked_add(length)
        .and_then(|end| bytes.get(header..end))
        .ok_or_else(|| bad("truncated"))?;
    // Version, creation time and algorithm come before the key material.
    if kind != 6 || packet.first() != Some(&4) || packet.len() < 7 {
        return Err(bad("the first packet is not a version 4 public key"));
    }
    let length = u16::try_from(packet.len()).map_err(|_| bad("too long a key packet"))?;
    let mut hasher = sha1::Sha1::new();
    hasher.update([0x99]);
    hasher.update(length.to_be_bytes());
    hasher.update(packet);
    let fingerprint = hasher.finalize();
    Ok(hex::encode_upper(&fingerprint[12..]))
}

/// A provider version as the versions list shows it.
#[derive(Clone, Debug)]
pub struct ProviderVersion {
    /// The version.
    pub version: String,
    /// Its platforms (os, arch).
    pub platforms: Vec<(String, String)>,
    /// The plugin protocols it speaks.
    pub protocols: Vec<String>,
}

/// The provider versions list (`GET …/versions`).
pub fn versions_document(versions: &[ProviderVersion]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let platforms: Vec<Value> = v
                .platforms
                .iter()
                .map(|(os, arch)| json!({ "os": os, "arch": arch }))
                .collect();
            json!({ "version": v.version, "protocols": v.protocols, "platforms": platforms })
        })
        .collect();
    json!({ "versions": versions })
}

/// Where a platform's package is and how to check it (`GET …/download/<os>/<arch>`).
#[derive(Clone, Debug)]
pub struct Download {
    /// The zip's file name.
    pub filename: String,
    /// The zip's URL.
    pub download_url: String,
    /// The `SHA256SUMS` URL.
    pub shasums_url: String,
    /// The signature's URL.
    pub shasums_signature_url: String,
    /// The zip's SHA-256, hex.
    pub shasum: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key, armored.
    pub ascii_armor: String,
    /// The plugin protocols.
    pub protocols: Vec<String>,
}

/// The download document of one platform.
pub fn download_document(os: &str, arch: &str, download: &Download) -> Value {
    json!({
        "protocols": download.protocols,
        "os": os,
        "arch": arch,
        "filename": download.filename,
        "download_url": download.download_url,
        "shasums_url": download.shasums_url,
        "shasums_signature_url": download.shasums_signature_url,
        "shasum": download.shasum,
        "signing_keys": {
            "gpg_public_keys": [{
                "key_id": download.key_id,
                "ascii_armor": download.ascii_armor,
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_files_are_named_as_providers_publish_them() {
        let parse = |name: &str| parse_release_file(name, "hello", "1.2.0");
        assert_eq!(
            parse("terraform-provider-hello_1.2.0_linux_amd64.zip").unwrap(),
            ReleaseFile::Archive {
                os: "linux".into(),
                arch: "amd64".into()
            }
        );
        assert_eq!(
            parse("terraform-provider-hello_1.2.0_SHA256SUMS").unwrap(),
            ReleaseFile::Sums
        );
        assert_eq!(
            parse("terraform-provider-hello_1.2.0_SHA256SUMS.sig").unwrap(),
            ReleaseFile::Signature
        );
        assert_eq!(parse("signing-key.asc").unwrap(), ReleaseFile::SigningKey);
        assert_eq!(
            parse("terraform-provider-hello_1.2.0_manifest.json").unwrap(),
            ReleaseFile::Manifest
        );
        assert_eq!(
            manifest_protocols(br#"{"version":1,"metadata":{"protocol_versions":["6.0"]}}"#)
                .unwrap(),
            ["6.0"]
        );
        assert_eq!(manifest_protocols(br#"{"version":1}"#).unwrap(), ["5.0"]);
        for bad in [
            &br#"{"metadata":{"protocol_versions":["six"]}}"#[..],
            b"[",
            br#"{"metadata":{"protocol_versions":[]}}"#,
            br#"{"metadata":{"protocol_versions":["6.0", 6]}}"#,
        ] {
            assert!(manifest_protocols(bad).is_err());
        }
        for bad in [
            "terraform-provider-hello_1.2.1_linux_amd64.zip",
            "terraform-provider-other_1.2.0_linux_amd64.zip",
            "terraform-provider-hello_1.2.0_linux.zip",
            "terraform-provider-hello_1.2.0_Linux_amd64.zip",
            "terraform-provider-hello_1.2.0_linux_amd64.tar.gz",
            "../signing-key.asc",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(check_provider_type("hello-world").is_ok());
        for bad in ["", "Hello", "1x", "a_b", &"a".repeat(65)] {
            assert!(check_provider_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sums_are_read_strictly() {
        let digest = "ab".repeat(32);
        let sums = parse_sums(format!("{digest}  a.zip\n{digest} *b.zip\n").as_bytes()).unwrap();
        assert_eq!(sums[1], (digest.clone(), "b.zip".into()));
        for bad in [
            format!("{digest}a.zip"),
            format!("{}  a.zip", "ab".repeat(31)),
            format!("{digest}  a.zip\n{digest}  a.zip"),
            "zz".repeat(32) + "  a.zip",
            "\n\n".into(),
        ] {
            assert!(parse_sums(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids_come_from_the_fingerprint() {
        use base64::Engine;
        use sha1::Digest;
        // A version 4 public key packet (old format, tag 6): version, time, algorithm, key.
        let mut body = vec![4u8, 0x67, 0x45, 0x14, 0x1e, 22];
        body.extend([7u8; 40]);
        let mut packet = vec![0x98, body.len() as u8];
        packet.extend(&body);
        let armored = format!(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n{}\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n",
            base64::engine::general_purpose::STANDARD.encode(&packet)
        );
        let mut hasher = sha1::Sha1::new();
        hasher.update([0x99, 0, body.len() as u8]);
        hasher.update(&body);
        let expected = hex::encode_upper(&hasher.finalize()[12..]);
        assert_eq!(key_id(armored.as_bytes()).unwrap(), expected);
        for bad in [
            String::new(),
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----"
                .into(),
            armored.replace(
                &base64::engine::general_purpose::STANDARD.encode(&packet),
                "mAQ=",
            ),
        ] {
            assert!(key_id(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
