//! A manifest's page: layers, config history, an index's platforms, referrers, the pull
//! commands; and the platforms a tags page shows per row.

use maud::html;
use registry_core::{Action, BlobStoreExt, Digest, Reference, RepositoryName, Tag, TagDetail};
use serde_json::Value;

use super::layout::{self, copy_box, short_digest, size, time};
use super::repositories::namespace_crumbs;
use super::session::Visitor;
use super::{PageResult, Ui, UiError};

/// The largest image config read to show a manifest's platform and history.
const MAX_CONFIG: u64 = 1024 * 1024;
/// The largest manifest, and config, read for the platforms column of a tags page (larger ones
/// show none), and how many rows are looked up at once: a page holds at most
/// `ROW_LOOKUPS × (MAX_ROW_MANIFEST + MAX_ROW_CONFIG)` bytes whatever was pushed.
const MAX_ROW_MANIFEST: u64 = 256 * 1024;
const MAX_ROW_CONFIG: u64 = 64 * 1024;
pub(super) const ROW_LOOKUPS: usize = 4;
/// The most referrers listed on a manifest's page.
const MAX_REFERRERS: usize = 500;

/// The platforms of a manifest: its children's for an index, its config's for an image
/// (nothing for other artifacts, or when it cannot be read).
pub(super) async fn platforms_of(
    ui: &Ui,
    repository: &RepositoryName,
    detail: &TagDetail,
) -> Vec<String> {
    if detail.manifest_size > MAX_ROW_MANIFEST {
        return Vec::new();
    }
    let reference = Reference::Digest(detail.digest.clone());
    let Ok(Some(record)) = ui
        .registry
        .metadata()
        .manifest(repository, &reference)
        .await
    else {
        return Vec::new();
    };
    let Ok(document) = serde_json::from_slice::<Value>(&record.bytes) else {
        return Vec::new();
    };
    if let Some(children) = document.get("manifests").and_then(Value::as_array) {
        return children
            .iter()
            .filter_map(|child| platform_name(child.get("platform")?))
            .collect();
    }
    match image_config(ui, &document, MAX_ROW_CONFIG).await {
        Some(config) => platform_name(&config).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A descriptor's size as people read it (empty for a descriptor without one: the manifest
/// was validated when pushed, so only an odd upstream's could lack it).
fn descriptor_size(descriptor: &Value) -> String {
    descriptor
        .get("size")
        .and_then(Value::as_u64)
        .map(size)
        .unwrap_or_default()
}

/// `os/architecture[/variant]`, leaving out the `unknown/unknown` of attestation manifests.
fn platform_name(platform: &Value) -> Option<String> {
    let os = platform.get("os")?.as_str()?;
    let architecture = platform.get("architecture")?.as_str()?;
    if os == "unknown" && architecture == "unknown" {
        return None;
    }
    let mut name = format!("{os}/{architecture}");
    if let Some(variant) = platform.get("variant").and_then(Value::as_str) {
        name.push('/');
        name.push_str(variant);
    }
    Some(name)
}

/// The config media types of images (a manifest with another config is an artifact).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// An image manifest's config, when it is an image config (not another artifact's) of at
/// most `limit` bytes.
async fn image_config(ui: &Ui, manifest: &Value, limit: u64) -> Option<Value> {
    let config = manifest.get("config")?;
    let media_type = config.get("mediaType")?.as_str()?;
    if !IMAGE_CONFIGS.contains(&media_type) {
        return None;
    }
    let digest = Digest::parse(config.get("digest")?.as_str()?).ok()?;
    let bytes = ui
        .registry
        .blob_store()
        .read_to_bytes(&digest, limit)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(super) async fn manifest_page(
    ui: &Ui,
    visitor: &Visitor,
    name: RepositoryName,
    digest: Digest,
    tag: Option<String>,
) -> PageResult {
    visitor.require(ui, name.as_str(), Action::Pull)?;
    let record = match ui
        .registry
        .manifest(&name, &Reference::Digest(digest.clone()))
        .await
    {
        Err(
            registry_core::Error::ManifestUnknown { .. } | registry_core::Error::NameUnknown { .. },
        ) => {
            return Err(UiError::NotFound(format!("no manifest {digest} in {name}")));
        }
        other => other?,
    };
    let document: Value = serde_json::from_slice(&record.bytes).unwrap_or(Value::Null);
    let referrers = ui.registry.referrers(&name, &digest, None).await?;
    let config = image_config(ui, &document, MAX_CONFIG).await;
    let host = layout::host(&visitor.base);
    let tag = tag.filter(|t| Tag::parse(t).is_ok());
    // A manifest without layers (an index) or without children (an image) lists none.
    let descriptors = |field: &str| -> Vec<Value> {
        document
            .get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let layers = descriptors("layers");
    let children = descriptors("manifests");
    let total: u64 = layers
        .iter()
        .filter_map(|l| l.get("size").and_then(Value::as_u64))
        .fold(0, u64::saturating_add);
    let body = html! {
        dl.facts {
            dt { "Digest" } dd { code { (digest) } }
            dt { "Media type" } dd { (record.media_type) }
            // An image's config type is what the referrers API reports as its artifact type;
            // only an artifact's is worth showing.
            @if let Some(artifact) = record.artifact_type.as_deref().filter(|t| !IMAGE_CONFIGS.contains(t)) {
                dt { "Artifact type" } dd { (artifact) }
            }
            dt { "Manifest size" } dd { (size(record.bytes.len() as u64)) }
            @if !layers.is_empty() {
                dt { "Layers" } dd { (layers.len()) " (" (size(total)) ")" }
            }
            dt { "First pushed" } dd { (time(record.created_at)) }
            @if let Some(subject) = &record.subject {
                dt { "Subject" } dd { a href={ "/ui/r/" (name) "/-/manifests/" (subject) } { code { (subject) } } }
            }
            @if let Some(config) = &config {
                @if let Some(platform) = platform_name(config) {
                    dt { "Platform" } dd { (platform) }
                }
                @if let Some(created) = config.get("created").and_then(Value::as_str) {
                    dt { "Created" } dd { (created) }
                }
            }
        }
        h2 { "Pull" }
        @if let Some(tag) = &tag {
            (copy_box(&format!("podman pull {host}/{name}:{tag}")))
        }
        (copy_box(&format!("podman pull {host}/{name}@{digest}")))
        @if !record.annotations.is_empty() {
            h2 { "Annotations" }
            table.annotations {
                tbody {
                    @for (key, value) in &record.annotations {
                        tr { th { (key) } td { (value) } }
                    }
                }
            }
        }
        @if !children.is_empty() {
            h2 { "Platforms" }
            table.children {
                thead { tr { th { "Platform" } th { "Digest" } th { "Media type" } th.num { "Size" } } }
                tbody {
                    @for child in &children {
                        tr {
                            td { (child.get("platform").and_then(platform_name).unwrap_or_else(|| "—".into())) }
                            td {
                                @if let Some(child_digest) = child.get("digest").and_then(Value::as_str) {
                                    a href={ "/ui/r/" (name) "/-/manifests/" (child_digest) } { (short_digest(child_digest)) }
                                }
                            }
                            td { (child.get("mediaType").and_then(Value::as_str).unwrap_or("")) }
                            td.num { (descriptor_size(child)) }
                        }
                    }
                }
            }
        }
        @if let Some(config_descriptor) = document.get("config") {
            h2 { "Config" }
            p {
                (config_descriptor.get("mediaType").and_then(Value::as_str).unwrap_or("")) " "
                (short_digest(config_descriptor.get("digest").and_then(Value::as_str).unwrap_or("")))
                " (" (descriptor_size(config_descriptor)) ")"
            }
        }
        @if !layers.is_empty() {
            h2 { "Layers" }
            table.layers {
                thead { tr { th.num { "#" } th { "Digest" } th { "Media type" } th.num { "Size" } } }
                tbody {
                    @for (index, layer) in layers.iter().enumerate() {
                        tr {
                            td.num { (index + 1) }
                            td { (short_digest(layer.get("digest").and_then(Value::as_str).unwrap_or(""))) }
                            td { (layer.get("mediaType").and_then(Value::as_str).unwrap_or("")) }
                            td.num { (descriptor_size(layer)) }
                        }
                    }
                }
            }
        }
        @if let Some(history) = config.as_ref().and_then(|c| c.get("history")).and_then(Value::as_array) {
            h2 { "History" }
            table.history {
                thead { tr { th { "Created" } th { "Command" } th { "Comment" } } }
                tbody {
                    @for step in history {
                        tr {
                            td { (step.get("created").and_then(Value::as_str).unwrap_or("")) }
                            td {
                                code { (step.get("created_by").and_then(Value::as_str).unwrap_or("")) }
                                @if step.get("empty_layer").and_then(Value::as_bool) == Some(true) {
                                    span.badge { "no layer" }
                                }
                            }
                            td { (step.get("comment").and_then(Value::as_str).unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Referrers" }
        @if referrers.is_empty() {
            p.muted { "No signatures, SBOMs or attestations refer to this manifest." }
        } @else {
            table.referrers {
                thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } th { "Created" } } }
                tbody {
                    @for referrer in referrers.iter().take(MAX_REFERRERS) {
                        tr {
                            td { (referrer.artifact_type.as_deref().unwrap_or("")) }
                            td { a href={ "/ui/r/" (name) "/-/manifests/" (referrer.digest) } { (short_digest(referrer.digest.as_str())) } }
                            td.num { (size(referrer.size)) }
                            td { (referrer.annotations.get("org.opencontainers.image.created").map(String::as_str).unwrap_or("")) }
                        }
                    }
                }
            }
            @if referrers.len() > MAX_REFERRERS {
                p.muted { "… and " (referrers.len() - MAX_REFERRERS) " more (the referrers API lists them all)." }
            }
        }
    };
    let mut crumbs = namespace_crumbs(&name);
    crumbs.push((name.as_str(), format!("/ui/r/{name}")));
    let title = match &tag {
        Some(tag) => format!("{name}:{tag}"),
        None => format!(
            "{name}@{}",
            &digest.as_str()[..digest.as_str().len().min(19)]
        ),
    };
    Ok(visitor.page(layout::page(visitor, &title, &crumbs, body)))
}
