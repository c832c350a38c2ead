//! Turning core errors into HTTP responses with OCI error bodies.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry_core::{Error, ManifestError};
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

/// Whether a backend failure is a full disk (507 tells the client it is not their request).
fn is_storage_full(source: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(source);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::StorageFull
        {
            return true;
        }
        cause = error.source();
    }
    false
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
        // Refused to protect the index that lists it. Not 403: clients read that as an
        // authentication failure; 400 is among the statuses the spec lists for a delete.
        Error::ManifestReferenced { .. } => StatusCode::BAD_REQUEST,
        Error::PackageConflict { .. } | Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::Backend { source } if is_storage_full(&**source) => StatusCode::INSUFFICIENT_STORAGE,
        Error::Upstream {
            timed_out: true, ..
        } => StatusCode::GATEWAY_TIMEOUT,
        Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
        Error::ProxyLoop { .. } => StatusCode::LOOP_DETECTED,
        _ => match oci_code(error) {
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

/// Headers that go with an error's status: `Retry-After` on 429, `Content-Range: bytes */size`
/// on a 416 for a range outside the content, the firewall rule on a block.
pub(crate) fn error_headers(error: &Error) -> Vec<(HeaderName, HeaderValue)> {
    match error {
        Error::TooManyRequests { retry_after, .. } => vec![(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs().max(1)),
        )],
        // Machine-readable: which firewall rule refused (rule names are checked ASCII, so the
        // header is always there; a value that could not be one would only drop the header).
        Error::Blocked { rule, .. } => HeaderValue::from_str(rule)
            .map(|rule| vec![(FIREWALL_HEADER, rule)])
            .unwrap_or_default(),
        Error::RangeNotSatisfiable { size, .. } => {
            vec![(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("digits"),
            )]
        }
        _ => Vec::new(),
    }
}

/// The header naming the firewall rule that refused a request (`403`).
pub const FIREWALL_HEADER: HeaderName = HeaderName::from_static("x-registry-firewall-rule");

/// The header that carries a server error's reference.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a client is told of a server error: where to find it.
pub(crate) fn server_error_message(reference: &str) -> String {
    format!("internal server error; the server log has it under request id {reference}")
}

/// Logs a server-side failure under a new reference and returns it: the client gets the
/// reference (not the detail, which may name internals), the operator finds the log line by it.
pub(crate) fn log_server_error(error: &Error) -> String {
    let reference = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(request_id = %reference, %error, "request failed");
    reference
}

fn body(status: StatusCode, code: Option<OciErrorCode>, message: String) -> Response {
    let errors = match code {
        Some(code) => json!([{ "code": code.as_str(), "message": message }]),
        None => json!([]),
    };
    json_response(status, json!({ "errors": errors }))
}

fn json_response(status: StatusCode, document: serde_json::Value) -> Response {
    let mut response = (status, document.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A server error's body: the spec has no code for it, so the one error carries a message and
/// the request id without a code (clients print the message; none is made up).
fn server_error(status: StatusCode, reference: &str) -> Response {
    let mut response = json_response(
        status,
        json!({ "errors": [{
            "message": server_error_message(reference),
            "detail": { "request_id": reference },
        }] }),
    );
    response
        .headers_mut()
        .insert(REQUEST_ID, HeaderValue::from_str(reference).expect("hex"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Core(error) => {
                let status = status_of(&error);
                // A pull-through cache's upstream failing is said, naming it (`UNKNOWN`, as
                // distribution answers what the specification has no code for).
                if matches!(error, Error::Upstream { .. } | Error::ProxyLoop { .. }) {
                    let message = error.to_string();
                    tracing::warn!(%message, "a pull-through cache's upstream failed");
                    return json_response(
                        status,
                        json!({ "errors": [{ "code": "UNKNOWN", "message": message }] }),
                    );
                }
                if status.is_server_error() {
                    return server_error(status, &log_server_error(&error));
                }
                let mut response = body(status, oci_code(&error), error.to_string());
                response.headers_mut().extend(error_headers(&error));
                response
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

/// The error codes of the OCI distribution specification, and only those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OciErrorCode {
    /// `BLOB_UNKNOWN`
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`
    BlobUploadUnknown,
    /// `DIGEST_INVALID`
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`
    ManifestUnknown,
    /// `NAME_INVALID`
    NameInvalid,
    /// `NAME_UNKNOWN`
    NameUnknown,
    /// `SIZE_INVALID`
    SizeInvalid,
    /// `UNAUTHORIZED`
    Unauthorized,
    /// `DENIED`
    Denied,
    /// `UNSUPPORTED`
    Unsupported,
    /// `TOOMANYREQUESTS`
    TooManyRequests,
}

impl OciErrorCode {
    /// The code as it appears in an OCI error body.
    pub const fn as_str(self) -> &'static str {
        match self {
            OciErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            OciErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            OciErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            OciErrorCode::DigestInvalid => "DIGEST_INVALID",
            OciErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            OciErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            OciErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            OciErrorCode::NameInvalid => "NAME_INVALID",
            OciErrorCode::NameUnknown => "NAME_UNKNOWN",
            OciErrorCode::SizeInvalid => "SIZE_INVALID",
            OciErrorCode::Unauthorized => "UNAUTHORIZED",
            OciErrorCode::Denied => "DENIED",
            OciErrorCode::Unsupported => "UNSUPPORTED",
            OciErrorCode::TooManyRequests => "TOOMANYREQUESTS",
        }
    }
}

/// The OCI distribution error code for a core error, or `None` for a server-side failure.
/// (Codes are the HTTP edge's business: the core names what went wrong, not how OCI says it.)
pub fn oci_code(error: &Error) -> Option<OciErrorCode> {
    use OciErrorCode as C;
    Some(match error {
        Error::DigestInvalid { .. } | Error::DigestMismatch { .. } => C::DigestInvalid,
        Error::NameInvalid { .. } => C::NameInvalid,
        Error::NameUnknown { .. } => C::NameUnknown,
        Error::ManifestInvalid {
            source: ManifestError::TooLarge { .. },
        } => C::SizeInvalid,
        Error::ManifestInvalid { .. } => C::ManifestInvalid,
        Error::ManifestUnknown { .. } => C::ManifestUnknown,
        Error::ManifestBlobUnknown { .. } => C::ManifestBlobUnknown,
        Error::ManifestReferenced { .. } | Error::Denied { .. } | Error::Blocked { .. } => {
            C::Denied
        }
        Error::BlobUnknown { .. } => C::BlobUnknown,
        Error::BlobUploadUnknown { .. } => C::BlobUploadUnknown,
        Error::UploadOffsetMismatch { .. } | Error::BlobUploadInvalid { .. } => {
            C::BlobUploadInvalid
        }
        Error::RangeNotSatisfiable { .. } | Error::SizeInvalid { .. } => C::SizeInvalid,
        Error::Unauthorized => C::Unauthorized,
        Error::TooManyRequests { .. } => C::TooManyRequests,
        Error::Unsupported { .. } | Error::PolicyInvalid { .. } | Error::PackageInvalid { .. } => {
            C::Unsupported
        }
        Error::PackageConflict { .. } | Error::Conflict { .. } => C::Denied,
        Error::PackageUnknown { .. } | Error::NotFound { .. } => C::NameUnknown,
        Error::Backend { .. } => return None,
        // A variant added to the core later is a server-side failure until it gets a code.
        _ => return None,
    })
}
