//! Moving bytes over HTTP, shared by every router: request bodies as byte streams, `Range`
//! requests, and file responses.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use registry_core::{BlobRead, ByteRange, ByteStream, Error};

/// Parses `Range: bytes=a-b`, `bytes=a-` or `bytes=-n`. Anything else is ignored, as HTTP allows.
pub(crate) fn requested_range(headers: &HeaderMap, size: u64) -> Option<ByteRange> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.trim().split_once('-')?;
    if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        return Some(ByteRange {
            start: size.saturating_sub(suffix),
            end: Some(size),
        });
    }
    let start: u64 = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse::<u64>().ok()?.checked_add(1)?)
    };
    Some(ByteRange { start, end })
}

/// A request body as a byte stream; a failing body is an upload error.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    body.into_data_stream()
        .map(|chunk| {
            chunk.map_err(|e| Error::BlobUploadInvalid {
                reason: format!("request body failed: {e}"),
            })
        })
        .boxed()
}

/// A response carrying a stored file, or the part of it a `Range` asked for (`206` with
/// `Content-Range`); `head` leaves the body out. The caller adds its own headers (digests,
/// ETag).
pub(crate) fn file_response(
    read: BlobRead,
    partial: bool,
    content_type: &'static str,
    head: bool,
) -> Response {
    let length = read.range.end - read.range.start;
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from_stream(read.stream))
    };
    *response.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if partial {
        let range = format!(
            "bytes {}-{}/{}",
            read.range.start,
            read.range.end - 1,
            read.size
        );
        if let Ok(value) = HeaderValue::from_str(&range) {
            h.insert(header::CONTENT_RANGE, value);
        }
    }
    response
}
