//! `npm audit`'s bulk advisory request (`POST /-/npm/v1/security/advisories/bulk`): the
//! packages and versions installed, answered with the advisories that affect them.

use std::collections::BTreeMap;
use std::io::Read;

use registry_core::firewall::Advisories;
use registry_core::{Error, PackageFormat, Result};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The largest request accepted once decompressed.
pub const MAX_AUDIT_REQUEST: u64 = 16 << 20;

/// The most packages one request names.
pub const MAX_AUDIT_PACKAGES: usize = 100_000;

/// The most versions one request names, over all its packages (each package's versions are
/// counted once).
pub const MAX_AUDIT_VERSIONS: usize = 200_000;

fn invalid(reason: String) -> Error {
    Error::PackageInvalid { reason }
}

/// Reads a bulk request — `{"<name>": ["<version>", …], …}`, gzip-compressed when `gzipped`
/// (npm compresses it) — bounded in size and entries.
///
/// Errors: [`Error::PackageInvalid`] saying what is wrong.
pub fn read_bulk_request(body: &[u8], gzipped: bool) -> Result<BTreeMap<String, Vec<String>>> {
    let mut text = Vec::new();
    let read = if gzipped {
        flate2::read::GzDecoder::new(body)
            .take(MAX_AUDIT_REQUEST + 1)
            .read_to_end(&mut text)
    } else {
        body.take(MAX_AUDIT_REQUEST + 1).read_to_end(&mut text)
    };
    read.map_err(|e| invalid(format!("the audit request does not decompress: {e}")))?;
    if text.len() as u64 > MAX_AUDIT_REQUEST {
        return Err(invalid(format!(
            "the audit request is over {MAX_AUDIT_REQUEST} bytes"
        )));
    }
    let request: BTreeMap<String, Vec<String>> = serde_json::from_slice(&text).map_err(|e| {
        invalid(format!(
            "the audit request is not an object of package names to versions: {e}"
        ))
    })?;
    if request.len() > MAX_AUDIT_PACKAGES {
        return Err(invalid(format!(
            "the audit request names over {MAX_AUDIT_PACKAGES} packages"
        )));
    }
    // Each package's versions once; the total bounded, so the answer's cost is.
    let mut total = 0usize;
    let mut distinct = BTreeMap::new();
    for (name, mut versions) in request {
        versions.sort_unstable();
        versions.dedup();
        total += versions.len();
        if total > MAX_AUDIT_VERSIONS {
            return Err(invalid(format!(
                "the audit request names over {MAX_AUDIT_VERSIONS} versions"
            )));
        }
        distinct.insert(name, versions);
    }
    Ok(distinct)
}

/// A stable numeric id for an advisory (npm keys advisories by number).
fn numeric_id(id: &str) -> u64 {
    let digest = sha2::Sha256::digest(id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 12
}

/// The bulk answer: for each package, the advisories affecting any of its versions, as npm
/// reads them (`id`, `url`, `title`, `severity`, `vulnerable_versions`).
pub fn bulk_response(request: &BTreeMap<String, Vec<String>>, advisories: &Advisories) -> Value {
    let mut answer = serde_json::Map::new();
    for (name, versions) in request {
        let found: Vec<Value> = advisories
            .about(PackageFormat::Npm, name)
            .iter()
            .filter(|a| versions.iter().any(|v| a.affects(v, &super::Npm)))
            .map(|a| {
                json!({
                    "id": numeric_id(&a.id),
                    "url": format!("https://osv.dev/vulnerability/{}", a.id),
                    "title": if a.summary.is_empty() { a.id.clone() } else { format!("{} ({})", a.summary, a.id) },
                    "severity": a.severity.as_str(),
                    "vulnerable_versions": a.semver_range(),
                    "cwe": [],
                    "cvss": {"score": 0, "vectorString": null},
                })
            })
            .collect();
        if !found.is_empty() {
            answer.insert(name.clone(), Value::Array(found));
        }
    }
    Value::Object(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_advisories_affecting_the_versions_asked() {
        let mut advisories = Advisories::new();
        advisories
            .add_json(
                json!({"id": "GHSA-x", "summary": "bad", "database_specific": {"severity": "HIGH"},
                       "affected": [{"package": {"ecosystem": "npm", "name": "pad"},
                                     "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.3.1"}]}]}]})
                .to_string()
                .as_bytes(),
                &crate::package_key,
            )
            .unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gzip,
            br#"{"pad": ["1.0.0"], "safe": ["1.0.0"], "pad2": []}"#,
        )
        .unwrap();
        let request = read_bulk_request(&gzip.finish().unwrap(), true).unwrap();
        let answer = bulk_response(&request, &advisories);
        assert_eq!(answer.as_object().unwrap().len(), 1);
        assert_eq!(answer["pad"][0]["severity"], "high");
        assert_eq!(answer["pad"][0]["vulnerable_versions"], "<1.3.1");
        let later = read_bulk_request(br#"{"pad": ["1.3.1"]}"#, false).unwrap();
        assert_eq!(bulk_response(&later, &advisories), json!({}));
        assert!(read_bulk_request(b"[1]", false).is_err());
        assert!(read_bulk_request(b"not gzip", true).is_err());
    }
}
