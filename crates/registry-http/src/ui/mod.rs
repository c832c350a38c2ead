//! The web UI under `/ui/`: server-rendered pages to browse and manage images and packages,
//! served from the same stores and decided by the same authorization as the APIs.
//!
//! | page | shows |
//! |---|---|
//! | `/ui/` | image repositories (search, paged) and package repositories |
//! | `/ui/ns/<prefix>` | a namespace: its repositories and storage |
//! | `/ui/r/<name>` | a repository's tags (sort by name or time, either way; filter; paged) and storage |
//! | `/ui/r/<name>/-/manifests/<digest>` | a manifest: layers, config history, platforms, referrers |
//! | `/ui/packages/<repository>[?name=<package>[&version=<version>]]` | packages, versions, files, README |
//! | `/ui/cleanup` | tag rules and cleanup policies, with dry runs |
//! | `/ui/login` | login with a configured user |
//!
//! Pages work without JavaScript; the one script (`/ui/static/app.js`) only adds copy
//! buttons and a select-all box. Every page is sent with a Content-Security-Policy allowing
//! scripts, styles and images from this origin only (no inline script), and every value from
//! a client is escaped by the templates (maud) or, for READMEs, rendered from Markdown with
//! raw HTML shown as text and only `http`, `https`, `mailto` and relative links kept.
//!
//! A visitor is whoever its session cookie names (`registry_session`, an access token labelled
//! `web session`, HttpOnly, SameSite=Strict, Secure over TLS), or the anonymous caller, who
//! sees exactly what the anonymous grants allow. Every form carries a CSRF token bound to the
//! session (or, before login, to a cookie of its own) and is refused from another origin.
//! Each page does work bounded by its page size, whatever the size of the data.

mod assets;
mod cleanup;
mod images;
mod layout;
mod manifest;
mod markdown;
mod packages;
mod repositories;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use registry_core::{Error, OciRegistry, Packages};

use crate::auth::Auth;

/// What every page handler shares.
#[derive(Debug)]
pub(crate) struct Ui {
    registry: OciRegistry,
    packages: Packages,
    auth: Option<Auth>,
}

/// The UI's router, under `/ui/`. Mount it beside the API routers (the
/// [`crate::app::Application`] does, with the `ui` feature, and redirects `/` to it).
pub fn router(registry: OciRegistry, packages: Packages, auth: Option<Auth>) -> Router {
    let ui = Arc::new(Ui {
        registry,
        packages,
        auth,
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(repositories::home))
        .route("/ui/ns/{*prefix}", get(repositories::namespace))
        .route("/ui/r/{*path}", get(images::repository).post(images::post))
        .route(
            "/ui/packages/{repository}",
            get(packages::repository).post(packages::post),
        )
        .route("/ui/cleanup", get(cleanup::overview).post(cleanup::run))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/static/{file}", get(assets::serve))
        .route("/ui/{*rest}", get(not_found))
        .with_state(ui)
        .layer(axum::middleware::map_response(|response| async {
            security_headers(response)
        }))
}

/// A refusal made in front of the UI's router (the login throttle's 429), as a UI page with
/// the UI's headers and, for a 429, `Retry-After`.
pub(crate) fn refusal(error: Error) -> Response {
    let retry_after = match &error {
        Error::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs().max(1)),
        _ => None,
    };
    let mut response = security_headers(UiError::Core(error).into_response());
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn not_found() -> Response {
    UiError::NotFound("no such page".into()).into_response()
}

/// The headers of every UI response: no inline script, no framing, no sniffing, no caching
/// of pages that depend on who asks.
fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Why a page could not be shown (an HTML page saying so).
#[derive(Debug)]
pub(crate) enum UiError {
    /// The visitor must log in to see it (anonymous access does not reach it).
    LoginNeeded,
    /// The visitor may not do this.
    Forbidden(String),
    /// Nothing of that name (or nothing the visitor may see).
    NotFound(String),
    /// The request itself is wrong.
    BadRequest(String),
    /// A store failed, or refused the change.
    Core(Error),
}

impl From<Error> for UiError {
    fn from(error: Error) -> Self {
        UiError::Core(error)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::LoginNeeded => {
                return layout::login_needed().into_response();
            }
            UiError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            UiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            UiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            UiError::Core(error) => (crate::error::status_of(&error), public_message(&error)),
        };
        (status, layout::error_page(status, &message)).into_response()
    }
}

/// What a page handler answers.
type PageResult = Result<Response, UiError>;

/// What a page says of a failure: the error itself when it is the client's, a generic message
/// when it is the registry's (the details — paths, database errors — go to the log).
pub(crate) fn public_message(error: &Error) -> String {
    if crate::error::status_of(error).is_server_error() {
        tracing::error!(%error, "web UI request failed");
        "the registry could not complete this request".to_owned()
    } else {
        error.to_string()
    }
}

/// Parses a page's query string, refusing a malformed one with a page saying so.
pub(crate) fn query<T: serde::de::DeserializeOwned + Default>(
    raw: Option<String>,
) -> Result<T, UiError> {
    match raw {
        None => Ok(T::default()),
        Some(raw) => serde_urlencoded::from_str(&raw)
            .map_err(|e| UiError::BadRequest(format!("the query string is not understood: {e}"))),
    }
}
