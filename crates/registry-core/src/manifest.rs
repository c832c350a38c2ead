//! The manifest model: OCI image manifests and indexes, Docker v2 schema 2 manifests and
//! manifest lists.
//!
//! Manifests are bytes first: [`Manifest::parse`] validates the uploaded bytes with `oci-spec`
//! and extracts what they reference, but the original bytes are what is stored, digested and
//! served. Nothing is ever re-serialized.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::digest::{Algorithm, Digest, DigestError};

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker image manifest, version 2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type this registry stores.
pub const SUPPORTED_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Legacy Docker schema 1 media types: recognised only to refuse them clearly.
const LEGACY_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Layer media types whose content may be absent from a registry (OCI non-distributable layers
/// and Docker's foreign layers): clients fetch them from the descriptor's `urls`.
pub const NON_DISTRIBUTABLE_LAYER_TYPES: [&str; 4] = [
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The default manifest size limit: 4 MiB, as in the OCI distribution specification.
pub const DEFAULT_MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Limits applied when parsing a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Largest accepted manifest, in bytes.
    pub max_size: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            max_size: DEFAULT_MAX_MANIFEST_SIZE,
        }
    }
}

/// Why manifest bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest is larger than the limit.
    #[error("manifest is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not well-formed JSON.
    #[error("manifest is not valid JSON: {message}")]
    Syntax {
        /// The parser's message, with line and column.
        message: String,
    },
    /// The JSON does not have the manifest's shape (a missing field, a wrong type).
    #[error("manifest does not match its schema: {message}")]
    Schema {
        /// What is wrong, with line and column.
        message: String,
    },
    /// A media type this registry does not store (including Docker schema 1).
    #[error("manifest media type {media_type:?} is not supported")]
    UnsupportedMediaType {
        /// The media type given.
        media_type: String,
    },
    /// The `mediaType` field contradicts the `Content-Type` the client sent.
    #[error("manifest mediaType {in_body:?} does not match Content-Type {content_type:?}")]
    MediaTypeMismatch {
        /// The `mediaType` in the document.
        in_body: String,
        /// The content type the client declared.
        content_type: String,
    },
    /// Neither the document nor the client says what kind of manifest this is.
    #[error("manifest has no mediaType and no manifest Content-Type, and its shape is ambiguous")]
    UnknownKind,
    /// The document has fields of the other kind (`manifests` in an image manifest, `config` or
    /// `layers` in an index).
    #[error("a {media_type} document must not contain {field:?}")]
    WrongShape {
        /// The media type in force.
        media_type: String,
        /// The field that does not belong.
        field: &'static str,
    },
    /// `schemaVersion` is not 2.
    #[error("schemaVersion must be 2, found {found}")]
    SchemaVersion {
        /// The version found.
        found: u32,
    },
    /// A descriptor's digest is malformed or uses an unsupported algorithm.
    #[error("{field}.digest is invalid: {source}")]
    DescriptorDigest {
        /// Where the descriptor is, e.g. `layers[2]`.
        field: String,
        /// What is wrong with it.
        source: DigestError,
    },
    /// A descriptor's size disagrees with the content stored under its digest.
    #[error(
        "{field} declares {digest} as {declared} bytes, but the stored content is {actual} bytes"
    )]
    DescriptorSize {
        /// Where the descriptor is, e.g. `layers[2]`.
        field: String,
        /// The digest it names.
        digest: Digest,
        /// The size it declares.
        declared: u64,
        /// The size of the stored content.
        actual: u64,
    },
}

/// The kind of a stored manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker v2 schema 2): a config and layers.
    Image,
    /// An index (OCI image index or Docker manifest list): child manifests.
    Index,
}

/// A content descriptor: what a manifest points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size of the referenced content in bytes.
    pub size: u64,
    /// Artifact type of the referenced content, if given.
    pub artifact_type: Option<String>,
    /// Annotations on the descriptor.
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Whether this is a non-distributable layer (see [`NON_DISTRIBUTABLE_LAYER_TYPES`]), which a
    /// manifest may reference without the registry holding it.
    pub fn is_non_distributable(&self) -> bool {
        NON_DISTRIBUTABLE_LAYER_TYPES.contains(&self.media_type.as_str())
    }

    /// Checks the declared size against the size of the content stored under the digest;
    /// `field` names the descriptor in the error.
    pub fn check_size(&self, field: &str, actual: u64) -> Result<(), ManifestError> {
        if self.size == actual {
            return Ok(());
        }
        Err(ManifestError::DescriptorSize {
            field: field.to_owned(),
            digest: self.digest.clone(),
            declared: self.size,
            actual,
        })
    }
}

/// A validated manifest: its original bytes, their digest, and what it references.
#[derive(Clone, Debug)]
pub struct Manifest {
    bytes: Bytes,
    digest: Digest,
    media_type: String,
    kind: ManifestKind,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    children: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
}

/// Just enough of a manifest to tell its kind before parsing it whole.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
}

impl Manifest {
    /// Validates manifest bytes and extracts their references, digesting them with sha256.
    ///
    /// `content_type` is the media type the client declared (the HTTP `Content-Type`); when it
    /// names a manifest type it must agree with the document's `mediaType`. Generic types such
    /// as `application/json` are ignored.
    pub fn parse(
        bytes: Bytes,
        content_type: Option<&str>,
        limits: &ManifestLimits,
    ) -> Result<Self, ManifestError> {
        Self::parse_with(bytes, content_type, limits, Algorithm::Sha256)
    }

    /// Like [`Manifest::parse`], digesting with the given algorithm.
    pub fn parse_with(
        bytes: Bytes,
        content_type: Option<&str>,
        limits: &ManifestLimits,
        algorithm: Algorithm,
    ) -> Result<Self, ManifestError> {
        if bytes.len() > limits.max_size {
            return Err(ManifestError::TooLarge {
                size: bytes.len(),
                limit: limits.max_size,
            });
        }
        let shape: Shape = serde_json::from_slice(&bytes).map_err(json_error)?;
        let media_type = resolve_media_type(&shape, content_type)?;
        let manifest = match kind_of(&media_type)? {
            ManifestKind::Image => {
                if shape.manifests.is_some() {
                    return Err(ManifestError::WrongShape {
                        media_type,
                        field: "manifests",
                    });
                }
                let m: oci_spec::image::ImageManifest =
                    serde_json::from_slice(&bytes).map_err(json_error)?;
                check_schema_version(m.schema_version())?;
                let config = descriptor(m.config(), "config")?;
                let artifact_type = m.artifact_type().as_ref().map(ToString::to_string);
                Manifest {
                    digest: Digest::compute(algorithm, &bytes),
                    kind: ManifestKind::Image,
                    layers: m
                        .layers()
                        .iter()
                        .enumerate()
                        .map(|(i, d)| descriptor(d, &format!("layers[{i}]")))
                        .collect::<Result<_, _>>()?,
                    children: Vec::new(),
                    subject: m
                        .subject()
                        .as_ref()
                        .map(|d| descriptor(d, "subject"))
                        .transpose()?,
                    annotations: sorted(m.annotations()),
                    config: Some(config),
                    artifact_type,
                    media_type,
                    bytes,
                }
            }
            ManifestKind::Index => {
                for (present, field) in [
                    (shape.config.is_some(), "config"),
                    (shape.layers.is_some(), "layers"),
                ] {
                    if present {
                        return Err(ManifestError::WrongShape { media_type, field });
                    }
                }
                let m: oci_spec::image::ImageIndex =
                    serde_json::from_slice(&bytes).map_err(json_error)?;
                check_schema_version(m.schema_version())?;
                Manifest {
                    digest: Digest::compute(algorithm, &bytes),
                    kind: ManifestKind::Index,
                    config: None,
                    layers: Vec::new(),
                    children: m
                        .manifests()
                        .iter()
                        .enumerate()
                        .map(|(i, d)| descriptor(d, &format!("manifests[{i}]")))
                        .collect::<Result<_, _>>()?,
                    subject: m
                        .subject()
                        .as_ref()
                        .map(|d| descriptor(d, "subject"))
                        .transpose()?,
                    annotations: sorted(m.annotations()),
                    artifact_type: m.artifact_type().as_ref().map(ToString::to_string),
                    media_type,
                    bytes,
                }
            }
        };
        Ok(manifest)
    }

    /// The original bytes, exactly as uploaded.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The digest of the original bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The manifest's media type (from the document, or the client when the document has none).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// Image manifest or index.
    pub fn kind(&self) -> ManifestKind {
        self.kind
    }

    /// The `artifactType` field, if present.
    pub fn artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref()
    }

    /// The artifact type the referrers API reports: `artifactType`, or else the config's media
    /// type for an image manifest.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or(self.config.as_ref().map(|c| c.media_type.as_str()))
    }

    /// The config descriptor of an image manifest.
    pub fn config(&self) -> Option<&Descriptor> {
        self.config.as_ref()
    }

    /// The layers of an image manifest.
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// The child manifests of an index.
    pub fn children(&self) -> &[Descriptor] {
        &self.children
    }

    /// The `subject` this manifest refers to, if any.
    pub fn subject(&self) -> Option<&Descriptor> {
        self.subject.as_ref()
    }

    /// Top-level annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// Every blob this manifest needs (config then layers), each digest once.
    pub fn blob_digests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = Vec::with_capacity(self.layers.len() + 1);
        for d in self.config.iter().chain(&self.layers) {
            if !digests.contains(&d.digest) {
                digests.push(d.digest.clone());
            }
        }
        digests
    }

    /// Every child manifest of an index, each digest once.
    pub fn child_digests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = Vec::with_capacity(self.children.len());
        for d in &self.children {
            if !digests.contains(&d.digest) {
                digests.push(d.digest.clone());
            }
        }
        digests
    }
}

fn json_error(e: serde_json::Error) -> ManifestError {
    let message = e.to_string();
    match e.classify() {
        serde_json::error::Category::Data => ManifestError::Schema { message },
        _ => ManifestError::Syntax { message },
    }
}

fn resolve_media_type(shape: &Shape, content_type: Option<&str>) -> Result<String, ManifestError> {
    let declared = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| {
            SUPPORTED_MEDIA_TYPES.contains(&ct.as_str())
                || LEGACY_MEDIA_TYPES.contains(&ct.as_str())
        });
    match (&shape.media_type, declared) {
        (Some(in_body), Some(content_type)) if *in_body != content_type => {
            Err(ManifestError::MediaTypeMismatch {
                in_body: in_body.clone(),
                content_type,
            })
        }
        (Some(in_body), _) => Ok(in_body.clone()),
        (None, Some(content_type)) => Ok(content_type),
        (None, None) => match (shape.manifests.is_some(), shape.config.is_some()) {
            (true, false) => Ok(OCI_INDEX.to_owned()),
            (false, true) => Ok(OCI_MANIFEST.to_owned()),
            _ => Err(ManifestError::UnknownKind),
        },
    }
}

fn kind_of(media_type: &str) -> Result<ManifestKind, ManifestError> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
        other => Err(ManifestError::UnsupportedMediaType {
            media_type: other.to_owned(),
        }),
    }
}

fn check_schema_version(found: u32) -> Result<(), ManifestError> {
    if found == 2 {
        Ok(())
    } else {
        Err(ManifestError::SchemaVersion { found })
    }
}

fn descriptor(d: &oci_spec::image::Descriptor, field: &str) -> Result<Descriptor, ManifestError> {
    let digest =
        Digest::parse(d.digest().as_ref()).map_err(|source| ManifestError::DescriptorDigest {
            field: field.to_owned(),
            source,
        })?;
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
        artifact_type: d.artifact_type().as_ref().map(ToString::to_string),
        annotations: sorted(d.annotations()),
    })
}

fn sorted(map: &Option<std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    map.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::sha256(&[n]).to_string()
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":2}},
                      {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":2}}]{extra}}}"#,
            d(1),
            d(2),
            d(1)
        )
    }

    fn parse(text: &str, ct: Option<&str>) -> Result<Manifest, ManifestError> {
        Manifest::parse(
            Bytes::copy_from_slice(text.as_bytes()),
            ct,
            &ManifestLimits::default(),
        )
    }

    #[test]
    fn image_manifest_keeps_bytes_and_lists_references() {
        let subject = format!(
            r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}},"artifactType":"application/x.sig""#,
            d(9)
        );
        let text = image(&subject);
        let m = parse(&text, Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.bytes().as_ref(), text.as_bytes());
        assert_eq!(m.digest(), &Digest::sha256(text.as_bytes()));
        assert_eq!(m.kind(), ManifestKind::Image);
        assert_eq!(
            m.blob_digests().len(),
            2,
            "config digest repeated as a layer counts once"
        );
        assert_eq!(m.subject().unwrap().digest.to_string(), d(9));
        assert_eq!(m.referrer_artifact_type(), Some("application/x.sig"));
    }

    #[test]
    fn index_lists_children() {
        let text = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d(3)
        );
        let m = parse(&text, Some(OCI_INDEX)).unwrap();
        assert_eq!(m.kind(), ManifestKind::Index);
        assert_eq!(m.child_digests(), vec![Digest::parse(&d(3)).unwrap()]);
        // Without a mediaType or Content-Type, the shape decides.
        assert_eq!(parse(&text, None).unwrap().media_type(), OCI_INDEX);
    }

    #[test]
    fn each_bad_manifest_gets_a_specific_error() {
        assert!(matches!(
            parse("{", None),
            Err(ManifestError::Syntax { .. })
        ));
        assert!(matches!(
            parse(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#,
                None
            ),
            Err(ManifestError::Schema { .. })
        ));
        assert!(matches!(
            parse(&image(""), Some(OCI_INDEX)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            parse(r#"{"schemaVersion":1}"#, Some(LEGACY_MEDIA_TYPES[1])),
            Err(ManifestError::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            parse(r#"{"schemaVersion":2}"#, None),
            Err(ManifestError::UnknownKind)
        ));
        let v3 = image("").replace("\"schemaVersion\":2", "\"schemaVersion\":3");
        assert_eq!(
            parse(&v3, None).unwrap_err(),
            ManifestError::SchemaVersion { found: 3 }
        );
        let wrong = image(r#","manifests":[]"#);
        assert!(matches!(
            parse(&wrong, None),
            Err(ManifestError::WrongShape {
                field: "manifests",
                ..
            })
        ));
        let bad_digest = image("").replace(&d(2)[7..], "zz");
        assert!(matches!(
            parse(&bad_digest, None),
            Err(ManifestError::Schema { .. } | ManifestError::DescriptorDigest { .. })
        ));
        let blake = image("").replace(&d(2), &format!("blake3:{}", &d(2)[7..]));
        assert!(matches!(
            parse(&blake, None),
            Err(ManifestError::DescriptorDigest { ref field, .. }) if field == "layers[0]"
        ));
        let big = Manifest::parse(
            Bytes::from(image("")),
            None,
            &ManifestLimits { max_size: 10 },
        );
        assert!(matches!(
            big,
            Err(ManifestError::TooLarge { limit: 10, .. })
        ));
    }

    #[test]
    fn descriptors_know_their_kind_and_check_sizes() {
        let m = parse(&image(""), None).unwrap();
        let layer = &m.layers()[0];
        assert!(!layer.is_non_distributable());
        assert_eq!(layer.check_size("layers[0]", 2), Ok(()));
        let wrong = layer.check_size("layers[0]", 3).unwrap_err();
        assert!(matches!(
            &wrong,
            ManifestError::DescriptorSize {
                declared: 2,
                actual: 3,
                ..
            }
        ));
        assert!(wrong.to_string().contains(&d(2)), "{wrong}");
        for media_type in NON_DISTRIBUTABLE_LAYER_TYPES {
            let foreign = Descriptor {
                media_type: media_type.to_owned(),
                ..layer.clone()
            };
            assert!(foreign.is_non_distributable(), "{media_type}");
        }
    }

    #[test]
    fn docker_types_are_accepted() {
        let text = image("").replace(OCI_MANIFEST, DOCKER_MANIFEST);
        let m = parse(&text, Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type(), DOCKER_MANIFEST);
        assert_eq!(m.kind(), ManifestKind::Image);
    }
}
