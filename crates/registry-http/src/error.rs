//! Turning core errors into HTTP responses with OCI error bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry_core::{Error, ManifestError, OciErrorCode};
use serde_json::json;

/// An error on its way to the client: a core error, or a problem with the request itself.
#[derive(Debug)]
pub enum ApiError {
    /// A core error; its code and status follow from the variant.
    Core(Error),
    /// The request is malformed in a way no core error describes (a bad query parameter, a
    /// malformed header), reported as `UNSUPPORTED` with status 400.
    BadRequest(String),
    /// The method is not allowed on this route.
    MethodNotAllowed,
    /// No such route.
    NotFound,
    /// A response already made (an authentication challenge).
    Response(Box<Response>),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Core(e)
    }
}

/// The HTTP status for a core error.
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::UploadOffsetMismatch { .. } | Error::RangeNotSatisfiable { .. } => {
            StatusCode::RANGE_NOT_SATISFIABLE
        }
        Error::ManifestInvalid {
            source: ManifestError::TooLarge { .. },
        }
        | Error::SizeInvalid { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::PolicyInvalid { .. } | Error::PackageInvalid { .. } => StatusCode::BAD_REQUEST,
        Error::PackageConflict { .. } => StatusCode::CONFLICT,
        _ => match error.code() {
            None => StatusCode::INTERNAL_SERVER_ERROR,
            Some(code) => match code {
                OciErrorCode::BlobUnknown
                | OciErrorCode::BlobUploadUnknown
                | OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown => StatusCode::NOT_FOUND,
                OciErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
                OciErrorCode::Denied => StatusCode::FORBIDDEN,
                OciErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
                OciErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
                _ => StatusCode::BAD_REQUEST,
            },
        },
    }
}

fn body(status: StatusCode, code: Option<OciErrorCode>, message: String) -> Response {
    let errors = match code {
        Some(code) => json!([{ "code": code.as_str(), "message": message }]),
        None => json!([]),
    };
    let mut response = (status, json!({ "errors": errors }).to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Core(error) => {
                let status = status_of(&error);
                if status.is_server_error() {
                    tracing::error!(%error, "request failed");
                    body(status, None, String::new())
                } else {
                    body(status, error.code(), error.to_string())
                }
            }
            ApiError::BadRequest(message) => body(
                StatusCode::BAD_REQUEST,
                Some(OciErrorCode::Unsupported),
                message,
            ),
            ApiError::MethodNotAllowed => body(
                StatusCode::METHOD_NOT_ALLOWED,
                Some(OciErrorCode::Unsupported),
                "method not allowed on this route".to_owned(),
            ),
            ApiError::NotFound => body(StatusCode::NOT_FOUND, None, String::new()),
            ApiError::Response(response) => *response,
        }
    }
}
