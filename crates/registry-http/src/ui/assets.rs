//! The stylesheet and the one script, compiled in and served under a URL that changes with
//! the crate's version (cached for an hour, so a new release is picked up soon after).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::UiError;

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

/// The stylesheet's URL.
pub(crate) const STYLESHEET: &str = concat!("/ui/static/app.css?v=", env!("CARGO_PKG_VERSION"));
/// The script's URL.
pub(crate) const SCRIPT: &str = concat!("/ui/static/app.js?v=", env!("CARGO_PKG_VERSION"));

/// `GET /ui/static/<file>`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return UiError::NotFound(format!("no file {file:?}")).into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
