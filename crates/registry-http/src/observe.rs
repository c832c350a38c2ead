//! Request metrics and tracing, as one middleware for any of the routers.
//!
//! Metrics go through the `metrics` facade, so an embedder chooses the recorder (the example
//! server installs a Prometheus one and serves it on `/metrics`):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `registry_http_requests_total` | counter | `method`, `route`, `status` |
//! | `registry_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `registry_http_request_bytes_total` | counter | `route` (declared request bodies) |
//! | `registry_http_response_bytes_total` | counter | `route` (declared response bodies) |
//!
//! `route` is the kind of OCI route (`manifest`, `blob`, `upload`, `tags`, `catalog`,
//! `referrers`, `base`), `token`, a package format's API (`generic`, `maven`, `npm`, `nuget`,
//! `pypi`, `terraform`), `admin` (`/api/v1/`), or `other`: never the raw path, so label sets
//! stay bounded.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::path::{Route, parse_v2_path};

/// The bounded route label of a request path.
pub fn route_label(path: &str) -> &'static str {
    if path == "/token" {
        return "token";
    }
    const PACKAGE_APIS: [(&str, &str); 8] = [
        ("/generic/", "generic"),
        ("/maven/", "maven"),
        ("/npm/", "npm"),
        ("/nuget/", "nuget"),
        ("/pypi/", "pypi"),
        ("/terraform/", "terraform"),
        ("/.well-known/terraform.json", "terraform"),
        ("/api/v1/", "admin"),
    ];
    if let Some((_, label)) = PACKAGE_APIS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
    {
        return label;
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return "other";
    };
    match parse_v2_path(rest.strip_prefix('/').unwrap_or(rest)) {
        Some(Ok(route)) => match route {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
        },
        _ => "other",
    }
}

fn declared_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The middleware: `router.layer(axum::middleware::from_fn(registry_http::observe::record))`.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = route_label(request.uri().path());
    let request_bytes = declared_length(request.headers());
    let span = tracing::info_span!("request", %method, path = %request.uri().path());
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16().to_string();
    metrics::counter!("registry_http_requests_total", "method" => method.clone(), "route" => route, "status" => status.clone())
        .increment(1);
    metrics::histogram!("registry_http_request_duration_seconds", "method" => method.clone(), "route" => route)
        .record(elapsed.as_secs_f64());
    metrics::counter!("registry_http_request_bytes_total", "route" => route)
        .increment(request_bytes);
    metrics::counter!("registry_http_response_bytes_total", "route" => route)
        .increment(declared_length(response.headers()));
    span.in_scope(|| {
        tracing::debug!(%status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "served");
    });
    response
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(route_label("/v2/"), "base");
        assert_eq!(route_label("/v2/a/b/manifests/latest"), "manifest");
        assert_eq!(route_label("/v2/a/blobs/uploads/123"), "upload");
        assert_eq!(route_label("/v2/a/blobs/sha256:00"), "blob");
        assert_eq!(route_label("/token"), "token");
        assert_eq!(route_label("/v2/Bad/manifests/x"), "other");
        assert_eq!(route_label("/metrics"), "other");
        assert_eq!(route_label("/nuget/feed/v3/index.json"), "nuget");
        assert_eq!(route_label("/maven/releases/a/b/1/b-1.jar"), "maven");
        assert_eq!(route_label("/api/v1/tokens"), "admin");
        assert_eq!(route_label("/mavenx"), "other");
    }
}
