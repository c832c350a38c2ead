//! Errors of the package routers, each in its client's own format, and the authorization they
//! share.
//!
//! A router names its format with a [`Style`] and uses `Failure<ItsStyle>`: core errors convert
//! with `?` (their status from [`status_of`], `404` for unknown packages, `409` for conflicts,
//! `501` for what is not served yet;
//! server errors are logged and answered without detail), and a `401` always carries a Basic
//! challenge, which every package client understands.
// Shared by the package routers; with only some of them compiled in, parts go unused.
#![cfg_attr(
    not(all(
        feature = "generic",
        feature = "npm",
        feature = "nuget",
        feature = "pypi",
        feature = "terraform"
    )),
    allow(dead_code)
)]

use std::marker::PhantomData;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry_core::{Action, Error, Role, TokenStore};
use serde_json::json;

use crate::auth::{Auth, Caller, authenticate_package_client};
use crate::error::{REQUEST_ID, error_headers, log_server_error, server_error_message, status_of};

/// How a package format writes an error body.
pub(crate) trait Style {
    /// The body and its content type.
    fn render(message: &str) -> (String, &'static str);

    /// Anything else the format's clients read a failure from (nothing by default).
    fn decorate(response: &mut Response, message: &str) {
        let _ = (response, message);
    }
}

/// `{"message": "…"}` (Generic packages, the admin APIs).
pub(crate) struct MessageJson;

impl Style for MessageJson {
    fn render(message: &str) -> (String, &'static str) {
        (
            json!({ "message": message }).to_string(),
            "application/json",
        )
    }
}

/// `{"error": "…"}` (npm, which prints it).
pub(crate) struct ErrorJson;

impl Style for ErrorJson {
    fn render(message: &str) -> (String, &'static str) {
        (json!({ "error": message }).to_string(), "application/json")
    }
}

/// `{"errors": ["…"]}` (the Terraform registry protocol's errors).
pub(crate) struct ErrorList;

impl Style for ErrorList {
    fn render(message: &str) -> (String, &'static str) {
        (
            json!({ "errors": [message] }).to_string(),
            "application/json",
        )
    }
}

/// A line of plain text (PyPI: twine prints it).
pub(crate) struct PlainText;

impl Style for PlainText {
    fn render(message: &str) -> (String, &'static str) {
        (format!("{message}\n"), "text/plain; charset=utf-8")
    }
}

/// A line of plain text, repeated in the HTTP/1 reason phrase (`409 Conflict - …`): NuGet
/// clients print the status line, not the body.
pub(crate) struct ReasonText;

impl Style for ReasonText {
    fn render(message: &str) -> (String, &'static str) {
        PlainText::render(message)
    }

    fn decorate(response: &mut Response, message: &str) {
        let canonical = response.status().canonical_reason().unwrap_or("Error");
        // Visible ASCII only, and short: a reason phrase is one header-like line.
        let text: String = format!("{canonical} - {message}")
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(400)
            .collect();
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(text) {
            response.extensions_mut().insert(reason);
        }
    }
}

/// A refusal or failure, answered in the style `S`.
pub(crate) struct Failure<S> {
    status: StatusCode,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    style: PhantomData<S>,
}

impl<S> Failure<S> {
    /// A failure with a status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            headers: Vec::new(),
            style: PhantomData,
        }
    }

    /// `404` with a message.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, message)
    }
}

impl<S> From<Error> for Failure<S> {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::PackageUnknown { .. } => StatusCode::NOT_FOUND,
            Error::PackageConflict { .. } => StatusCode::CONFLICT,
            // A repository kind or feature this registry does not serve yet.
            Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            other => status_of(other),
        };
        // A 501 says what is not served, a 502 or 504 which upstream failed and how; only
        // real failures are logged and hidden.
        let said = matches!(
            error,
            Error::Unsupported { .. } | Error::Upstream { .. } | Error::ProxyLoop { .. }
        );
        if status.is_server_error() && !said {
            let reference = log_server_error(&error);
            let mut failure = Failure::new(status, server_error_message(&reference));
            failure.headers = vec![(REQUEST_ID, HeaderValue::from_str(&reference).expect("hex"))];
            return failure;
        }
        let mut failure = Failure::new(status, error.to_string());
        failure.headers = error_headers(&error);
        failure
    }
}

impl<S: Style> IntoResponse for Failure<S> {
    fn into_response(self) -> Response {
        let (body, content_type) = S::render(&self.message);
        let mut response = (self.status, body).into_response();
        S::decorate(&mut response, &self.message);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.extend(self.headers);
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"registry\""),
            );
        }
        response
    }
}

/// Splits a package API path (`/<api>/<repository>/<rest>`, as its `/<api>/{*path}` route
/// matched it) into the checked repository name and the rest.
///
/// Errors: [`Error::PackageInvalid`] for a repository name packages cannot have.
pub(crate) fn repository_path<'a>(
    path: &'a str,
    prefix: &str,
) -> Result<(&'a str, &'a str), Error> {
    // The route matched the prefix: it is always there.
    let rest = path.strip_prefix(prefix).unwrap_or_default();
    let (repository, rest) = rest.split_once('/').unwrap_or((rest, ""));
    registry_core::package::check_repository_name(repository)?;
    Ok((repository, rest))
}

/// Percent-decodes a path or one of its segments: a `400` in the client's format for a
/// malformed escape or bytes that are not UTF-8.
pub(crate) fn percent_decode<S>(path: &str) -> Result<String, Failure<S>> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Failure::new(StatusCode::BAD_REQUEST, "malformed percent-encoding")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Failure::new(StatusCode::BAD_REQUEST, "the path is not UTF-8"))
}

/// What a request on a file-like route asks, by its method: `GET`/`HEAD` pull, `PUT` push,
/// `DELETE` delete; any other method is `405`.
pub(crate) fn file_action<S>(method: &axum::http::Method) -> Result<Action, Failure<S>> {
    use axum::http::Method;
    match *method {
        Method::GET | Method::HEAD => Ok(Action::Pull),
        Method::PUT => Ok(Action::Push),
        Method::DELETE => Ok(Action::Delete),
        _ => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported here"),
        )),
    }
}

/// Authenticates a package client and checks it may perform `action` on the package
/// repository (its name is matched like a repository name); returns its role there, for
/// protection rules (`None`: trusted, when no authentication is configured).
pub(crate) async fn authorize<S>(
    auth: Option<&Auth>,
    tokens: &dyn TokenStore,
    headers: &HeaderMap,
    repository: &str,
    action: Action,
) -> Result<Option<Role>, Failure<S>> {
    let caller = authenticate_package_client(auth, tokens, headers).await?;
    decide(
        auth,
        caller.as_ref(),
        repository,
        action,
        "authentication required",
    )
}

/// The one decision of every package route, for a caller already authenticated (`None`: the
/// credentials proved nothing): allowed with the caller's role on the repository (`None` when
/// no authentication is configured); `401` with `unauthenticated` as the message for unknown
/// callers; `403` naming the action for known ones. The configured authorizer decides.
pub(crate) fn decide<S>(
    auth: Option<&Auth>,
    caller: Option<&Caller>,
    repository: &str,
    action: Action,
    unauthenticated: &str,
) -> Result<Option<Role>, Failure<S>> {
    match crate::auth::decide(auth, caller, repository, action) {
        crate::auth::Decision::Allowed(role) => Ok(role),
        crate::auth::Decision::Unauthenticated => {
            Err(Failure::new(StatusCode::UNAUTHORIZED, unauthenticated))
        }
        crate::auth::Decision::Forbidden => Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} on {repository} is not granted to this user",
                action.as_str()
            ),
        )),
    }
}
