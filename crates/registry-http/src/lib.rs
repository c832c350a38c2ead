//! The registry's HTTP protocols as axum routers.
//!
//! - [`app`]: [`app::Application`], every protocol composed once with auth, metrics and the
//!   external URL;
//! - [`oci`]: the OCI distribution API under `/v2/` (pull, push — monolithic, chunked and
//!   streamed —, cross-repository mount, tags, catalog, referrers, deletes);
//! - `/api/v1/tag-rules`, `/api/v1/cleanup-policies`, `/api/v1/cleanup-runs`: the admin API
//!   for tag rules and cleanup policies (served by the same routers);
//! - [`generic`]: Generic packages under `/generic/` (files under a name and version);
//! - [`maven`]: Maven repositories under `/maven/` (the standard layout, for mvn);
//! - [`npm`]: the npm registry API under `/npm/<repository>/`;
//! - [`nuget`]: NuGet v3 feeds under `/nuget/<repository>/` (push, flat container,
//!   registrations, search, unlist and relist, deprecation, symbol packages);
//! - [`pypi`]: the Python package index under `/pypi/<repository>/` (twine uploads, the Simple
//!   API for pip);
//! - [`terraform`]: the Terraform module and provider registry protocols
//!   (`/.well-known/terraform.json`, `/terraform/modules/v1/`, `/terraform/providers/v1/`), with
//!   signed download URLs;
//! - [`package_admin`]: access tokens with scopes and package repository settings under
//!   `/api/v1/`;
//! - `ui` (feature `ui`): the web UI under `/ui/`, server-rendered pages over the same
//!   stores and authorization;
//! - [`auth`]: HTTP Basic and Docker token auth, and [`auth::StaticUsers`] (configured users
//!   with argon2 password hashes);
//! - `upstream` (feature `proxy`): fetching from proxy repositories' upstreams, the loop
//!   guard, and the stale and cache metrics of proxied reads;
//! - [`observe`]: request metrics (through the `metrics` facade) and tracing, as a middleware;
//! - [`path`]: the pure parser that turns a `/v2/` path into a [`path::Route`];
//! - [`error`]: how core errors become statuses and OCI error bodies (spec codes only);
//! - [`throttle`]: slowing down repeated authentication failures, per user and per client
//!   address;
//! - [`external_url`]: the configured URL every absolute URL starts with;
//! - [`serve`]: [`serve::RunningRegistry`], a registry on a random loopback port in one line.
//!
//! Mount the router into any axum app:
//!
//! ```
//! use std::sync::Arc;
//! use registry_core::OciRegistry;
//! use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
//!
//! let registry = OciRegistry::new(Arc::new(MemoryBlobStore::new()), Arc::new(MemoryMetadataStore::new()));
//! let app = axum::Router::new()
//!     .route("/healthz", axum::routing::get(|| async { "ok" }))
//!     .merge(registry_http::oci::router(registry));
//! # let _: axum::Router = app;
//! ```
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `generic` | yes | Generic packages under `/generic/` |
//! | `maven` | yes | Maven repositories under `/maven/` |
//! | `npm` | yes | the npm registry API under `/npm/` |
//! | `nuget` | yes | NuGet v3 feeds under `/nuget/` |
//! | `pypi` | yes | the Python package index under `/pypi/` |
//! | `terraform` | yes | the Terraform module registry under `/terraform/modules/v1/` |
//! | `proxy` | yes | proxy and virtual package repositories: `upstream::HttpUpstream` (reqwest) |
//! | `harness` | yes | [`serve::RunningRegistry`], a registry in memory for tests |
//! | `ui` | no (on in the example server) | the web UI under `/ui/` (maud, pulldown-cmark) |
//!
//! With none of them, an OCI-only embedder compiles neither the package formats nor the
//! in-memory stores.
#![deny(rustdoc::broken_intra_doc_links)]

mod admin;
pub mod app;
pub mod auth;
#[cfg(feature = "packages")]
mod cache;
pub mod error;
pub mod external_url;
#[cfg(feature = "generic")]
pub mod generic;
pub mod health;
#[cfg(feature = "maven")]
pub mod maven;
#[cfg(feature = "npm")]
pub mod npm;
#[cfg(feature = "nuget")]
pub mod nuget;
pub mod observe;
pub mod oci;
#[cfg(feature = "packages")]
pub mod package_admin;
#[cfg(feature = "packages")]
mod package_error;
pub mod path;
#[cfg(feature = "pypi")]
pub mod pypi;
pub mod serve;
#[cfg(feature = "terraform")]
pub mod terraform;
#[cfg(feature = "terraform")]
mod terraform_providers;
pub mod throttle;
mod transfer;
#[cfg(feature = "ui")]
pub mod ui;
#[cfg(feature = "proxy")]
pub mod upstream;
