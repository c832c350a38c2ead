//! Moving bytes over HTTP, shared by every router: request bodies as byte streams, `Range`
//! requests, and file responses.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use registry_core::{BlobRead, ByteRange, ByteStream, Error};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Parses `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` (RFC 9110 §14.1.2). A last position
/// past the content is clamped to its end, whatever its size (`bytes=0-18446744073709551615`
/// asks for everything); a range whose last position is before its first is invalid and
/// answered 416. Other units and multiple ranges are ignored (the whole content is sent), as
/// HTTP allows.
pub(crate) fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<ByteRange>, Error> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = |start: u64, end: u64| Error::RangeNotSatisfiable { start, end, size };
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Err(unsatisfiable(0, 0));
    };
    // Digits only; a position beyond u64 means "past any end" and is clamped like one.
    let number = |text: &str| {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unsatisfiable(0, 0));
        }
        Ok(text.parse::<u64>().unwrap_or(u64::MAX))
    };
    if start.trim().is_empty() {
        let suffix = number(end)?;
        if suffix == 0 {
            return Err(unsatisfiable(size, size));
        }
        return Ok(Some(ByteRange {
            start: size.saturating_sub(suffix),
            end: Some(size),
        }));
    }
    let start = number(start)?;
    let end = if end.trim().is_empty() {
        None
    } else {
        let last = number(end)?;
        if last < start {
            return Err(unsatisfiable(start, last.saturating_add(1)));
        }
        // Clamped by `ByteRange::resolve`; saturating keeps u64::MAX meaning "to the end".
        Some(last.saturating_add(1))
    };
    Ok(Some(ByteRange { start, end }))
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

/// A document answered whole (`200`, its length and type); `HEAD` gets the headers only.
// The package APIs that answer small documents.
#[cfg_attr(
    not(any(feature = "maven", feature = "nuget", feature = "terraform")),
    allow(dead_code)
)]
pub(crate) fn document_response(
    body: impl Into<bytes::Bytes>,
    content_type: &'static str,
    head: bool,
) -> Response {
    let body: bytes::Bytes = body.into();
    let length = body.len();
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(body))
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// The first `limit + 1` bytes of a stored file at most: a parser given them sees a file over
/// `limit` as such (the formats' parsers check their own size bounds).
// The package APIs that read stored documents back.
#[cfg_attr(not(any(feature = "maven", feature = "terraform")), allow(dead_code))]
pub(crate) async fn read_stored(
    packages: &registry_core::Packages,
    blob: &registry_core::BlobRef,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    packages
        .read_blocking(blob, move |reader| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(reader, limit.saturating_add(1)),
                &mut bytes,
            )
            .map(|_| bytes)
        })
        .await?
        .map_err(|e| Error::backend(e.to_string()))
}

/// A stored file as a response: the part a `Range` asks for (`206`) or the whole, its
/// content type, and its digest as `ETag`; `HEAD` gets the headers only.
// The package APIs that serve stored files this way (Generic and npm add headers of their own).
#[cfg_attr(
    not(any(
        feature = "maven",
        feature = "nuget",
        feature = "pypi",
        feature = "terraform"
    )),
    allow(dead_code)
)]
pub(crate) async fn stored_file_response(
    packages: &registry_core::Packages,
    rules: &dyn registry_core::FormatRules,
    repository: &str,
    blob: &registry_core::BlobRef,
    (headers, content_type, head): (&HeaderMap, &'static str, bool),
) -> Result<Response, Error> {
    let range = requested_range(headers, blob.size)?;
    let read = packages.read(rules, repository, blob, range).await?;
    let mut response = file_response(read, range.is_some(), content_type, head);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", blob.digest.hex())) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// The most bytes of a small request document: admin API bodies, npm logins and dist-tags.
#[cfg_attr(not(feature = "packages"), allow(dead_code))] // only the package APIs read them
pub(crate) const MAX_SMALL_DOCUMENT: usize = 1 << 20;

/// The declared `Content-Length`, if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a whole request body of at most `limit` bytes. A body declared or found longer is
/// refused (`413`) as soon as that is known, without reading the rest.
pub(crate) async fn read_bounded(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    what: &'static str,
) -> Result<Bytes, Error> {
    collect(body, declared, limit, what, |_| Ok(())).await
}

/// The loop under [`read_bounded`] and [`BufferBudget::read`]: `grow` is told the buffer's
/// new capacity before it grows, and may refuse it. The buffer grows as bytes arrive (doubling,
/// up to the limit), never from a declared length alone: a client that announces a large body
/// and sends little holds little.
async fn collect(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    what: &'static str,
    mut grow: impl FnMut(u64) -> Result<(), Error>,
) -> Result<Bytes, Error> {
    let too_large = |size: u64| Error::SizeInvalid {
        what,
        size,
        limit: limit as u64,
    };
    if let Some(size) = declared.filter(|size| *size > limit as u64) {
        return Err(too_large(size));
    }
    let mut stream = body.into_data_stream();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BlobUploadInvalid {
            reason: format!("request body failed: {e}"),
        })?;
        let size = bytes.len() + chunk.len();
        if size > limit {
            return Err(too_large(size as u64));
        }
        if size > bytes.capacity() {
            let capacity = size.max(bytes.capacity().saturating_mul(2)).min(limit);
            grow(capacity as u64)?;
            bytes.reserve_exact(capacity - bytes.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// A bound on the bytes of request bodies held in memory at once, across requests: bodies a
/// protocol forces the registry to buffer whole (an npm publish document carries its tarball
/// in base64). A request that would pass the bound is refused with `429` and `Retry-After`
/// at once, not queued: a flood of large bodies cannot grow memory.
#[derive(Clone, Debug)]
pub(crate) struct BufferBudget {
    /// One permit per KiB.
    kib: Arc<Semaphore>,
    total_kib: usize,
}

/// Memory a buffered body holds from a [`BufferBudget`], given back on drop.
#[derive(Debug)]
pub(crate) struct BufferedBody {
    /// The body.
    pub(crate) bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

impl BufferBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub(crate) fn new(bytes: u64) -> Self {
        let total_kib = usize::try_from(bytes.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        BufferBudget {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Counts `bytes` more against the budget into `held` (given back when `held` drops);
    /// refused at once when the budget has no room.
    pub(crate) fn take(
        &self,
        bytes: u64,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), Error> {
        let kib = bytes.div_ceil(1024);
        let busy = || Error::TooManyRequests {
            reason: "too many large request bodies are being received".into(),
            retry_after: Duration::from_secs(5),
        };
        let kib = u32::try_from(kib).map_err(|_| busy())?;
        let permit = Arc::clone(&self.kib)
            .try_acquire_many_owned(kib)
            .map_err(|_| busy())?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }

    /// Reads a body of at most `limit` bytes within the budget (see [`read_bounded`]); the
    /// memory stays counted until the returned body is dropped. What is counted is the buffer
    /// as it grows with the bytes received, so a slow sender holds only what it sent.
    pub(crate) async fn read(
        &self,
        body: Body,
        declared: Option<u64>,
        limit: usize,
        what: &'static str,
    ) -> Result<BufferedBody, Error> {
        let limit = limit.min(self.total_kib.saturating_mul(1024));
        let mut held = None;
        let mut counted = 0u64;
        let bytes = collect(body, declared, limit, what, |capacity| {
            if capacity > counted {
                self.take(capacity - counted, &mut held)?;
                counted = capacity;
            }
            Ok(())
        })
        .await?;
        Ok(BufferedBody { bytes, _held: held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<ByteRange>, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        requested_range(&headers, size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let some = |start, end| Some(ByteRange { start, end });
        assert_eq!(range("bytes=0-9", 100).unwrap(), some(0, Some(10)));
        assert_eq!(range("bytes=90-", 100).unwrap(), some(90, None));
        assert_eq!(range("bytes=-10", 100).unwrap(), some(90, Some(100)));
        // A last position past the end is clamped later, whatever its size.
        assert_eq!(
            range("bytes=0-18446744073709551615", 100).unwrap(),
            some(0, Some(u64::MAX))
        );
        assert_eq!(
            range("bytes=0-99999999999999999999", 100).unwrap(),
            some(0, Some(u64::MAX))
        );
        assert_eq!(
            range("bytes=-99999999999999999999", 100).unwrap(),
            some(0, Some(100))
        );
        assert_eq!(
            ByteRange {
                start: 0,
                end: Some(u64::MAX)
            }
            .resolve(100)
            .unwrap(),
            0..100
        );
        for invalid in [
            "bytes=5-2",
            "bytes=x-3",
            "bytes=-",
            "bytes=3",
            "bytes=-0",
            "bytes=+1-2",
        ] {
            assert!(
                matches!(
                    range(invalid, 100),
                    Err(Error::RangeNotSatisfiable { size: 100, .. })
                ),
                "{invalid}"
            );
        }
        // Other units and multiple ranges: ignored, the whole content is sent.
        assert_eq!(range("items=0-1", 100).unwrap(), None);
        assert_eq!(range("bytes=0-1,5-6", 100).unwrap(), None);
    }

    #[tokio::test]
    async fn the_buffer_budget_refuses_what_would_pass_it() {
        let budget = BufferBudget::new(64 << 10);
        let held = budget
            .read(
                Body::from(vec![1u8; 40 << 10]),
                Some(40 << 10),
                1 << 20,
                "body",
            )
            .await
            .unwrap();
        assert_eq!(held.bytes.len(), 40 << 10);
        // Counted as it arrives: 30 KiB more does not fit beside the 40 KiB held.
        assert!(matches!(
            budget
                .read(
                    Body::from(vec![1u8; 30 << 10]),
                    Some(30 << 10),
                    1 << 20,
                    "body"
                )
                .await,
            Err(Error::TooManyRequests { .. })
        ));
        // Streamed without a length: refused once it passes the budget.
        let chunks = futures::stream::iter(
            (0..30).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![2u8; 1024]))),
        );
        assert!(matches!(
            budget
                .read(Body::from_stream(chunks), None, 1 << 20, "body")
                .await,
            Err(Error::TooManyRequests { .. })
        ));
        drop(held);
        let again = budget
            .read(Body::from(vec![1u8; 60 << 10]), None, 1 << 20, "body")
            .await
            .unwrap();
        assert_eq!(again.bytes.len(), 60 << 10);
        assert!(matches!(
            budget
                .read(Body::from(vec![1u8; 10]), Some(2 << 20), 1 << 20, "body")
                .await,
            Err(Error::SizeInvalid { .. })
        ));
    }
}

/// The most bytes of multipart framing outside the parts' data: before a part's data
/// (preamble, part headers) and after the last.
#[cfg_attr(not(any(feature = "nuget", feature = "pypi")), allow(dead_code))]
pub(crate) const MAX_MULTIPART_FRAMING: u64 = 64 << 10;

/// Bounds a multipart body's framing: a multipart parser buffers what precedes a part's data
/// while it looks for its end (and searches that buffer again as it grows), so a body that
/// never reaches a boundary would be held whole. The body may go [`MAX_MULTIPART_FRAMING`]
/// bytes past the point [`FramingBound::bound_from_here`] marks (where framing starts), any
/// length after [`FramingBound::lift`] (while a part's data streams).
#[cfg_attr(not(any(feature = "nuget", feature = "pypi")), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct FramingBound {
    position: std::sync::atomic::AtomicU64,
    limit: std::sync::atomic::AtomicU64,
}

#[cfg_attr(not(any(feature = "nuget", feature = "pypi")), allow(dead_code))]
impl FramingBound {
    /// The request with its body counted against a new bound, which starts bounded.
    pub(crate) fn wrap(
        request: axum::extract::Request,
    ) -> (axum::extract::Request, Arc<FramingBound>) {
        let framing = Arc::new(FramingBound {
            position: 0.into(),
            limit: MAX_MULTIPART_FRAMING.into(),
        });
        let (parts, body) = request.into_parts();
        let counted = {
            let framing = Arc::clone(&framing);
            body_stream(body).map(move |chunk| {
                let chunk = chunk?;
                framing.advance(chunk.len() as u64)?;
                Ok::<_, Error>(chunk)
            })
        };
        (
            axum::extract::Request::from_parts(parts, Body::from_stream(counted)),
            framing,
        )
    }

    fn advance(&self, bytes: u64) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let position = self
            .position
            .fetch_add(bytes, Ordering::SeqCst)
            .saturating_add(bytes);
        if position > self.limit.load(Ordering::SeqCst) {
            return Err(Error::BlobUploadInvalid {
                reason: format!("the multipart framing is over {MAX_MULTIPART_FRAMING} bytes"),
            });
        }
        Ok(())
    }

    /// A part's data streams: no bound.
    pub(crate) fn lift(&self) {
        self.limit
            .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    }

    /// Framing starts here (the next part's headers, or the end).
    pub(crate) fn bound_from_here(&self) {
        use std::sync::atomic::Ordering;
        let position = self.position.load(Ordering::SeqCst);
        self.limit.store(
            position.saturating_add(MAX_MULTIPART_FRAMING),
            Ordering::SeqCst,
        );
    }
}
