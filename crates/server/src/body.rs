//! Request bodies: size limits, gzip, and the error responses every endpoint
//! shares. Errors are mapped to protocol status here, at the edge.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a request was refused; the `reason` label of
/// `sonde_rejected_requests_total`.
#[derive(Debug)]
pub enum RequestError {
    TooLarge(usize),
    UnsupportedMediaType(String),
    UnsupportedEncoding(String),
    BadRequest(String),
    Overloaded,
    /// The body did not arrive in time.
    Timeout,
    /// Storage failed (disk full, I/O error): retryable.
    Unavailable(String),
    Internal(String),
}

impl RequestError {
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::TooLarge(_) => "too_large",
            RequestError::UnsupportedMediaType(_) => "unsupported_media_type",
            RequestError::UnsupportedEncoding(_) => "unsupported_encoding",
            RequestError::BadRequest(_) => "bad_request",
            RequestError::Overloaded => "overloaded",
            RequestError::Timeout => "timeout",
            RequestError::Unavailable(_) => "unavailable",
            RequestError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::UnsupportedMediaType(_) | RequestError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            RequestError::Timeout => StatusCode::REQUEST_TIMEOUT,
            RequestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> String {
        match self {
            RequestError::TooLarge(limit) => {
                format!(
                    "request body is larger than the limit of {limit} bytes; send smaller batches"
                )
            }
            RequestError::UnsupportedMediaType(ct) => format!("unsupported content type {ct:?}"),
            RequestError::UnsupportedEncoding(enc) => {
                format!("unsupported content encoding {enc:?}; use gzip or none")
            }
            RequestError::BadRequest(m) | RequestError::Internal(m) => m.clone(),
            RequestError::Overloaded => {
                "server is handling too many writes; retry with backoff".into()
            }
            RequestError::Unavailable(m) => format!("storage is unavailable, retry later: {m}"),
            RequestError::Timeout => format!(
                "request body not received within {}s",
                BODY_TIMEOUT.as_secs()
            ),
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), self.message()).into_response();
        if self.is_retryable() {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

impl RequestError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RequestError::Overloaded | RequestError::Unavailable(_)
        )
    }
}

/// How long a client may take to send its body. Slow senders otherwise hold
/// a write permit and starve everybody else.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Past the limit, this much more of a body is read and discarded so the
/// client, still sending, can read the 413 instead of a broken pipe.
const DRAIN_MAX: usize = 64 << 20;

/// Reads a body of at most `limit` bytes, within [`BODY_TIMEOUT`].
pub async fn read_raw(body: Body, limit: usize) -> Result<bytes::Bytes, RequestError> {
    use futures_util::StreamExt;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        let mut drained = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| RequestError::BadRequest(format!("reading the body: {e}")))?;
            if drained > 0 || buf.len() + chunk.len() > limit {
                drained += chunk.len();
                if drained > DRAIN_MAX {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&chunk);
        }
        if drained > 0 {
            return Err(RequestError::TooLarge(limit));
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(RequestError::Timeout),
        Ok(r) => r,
    }
}

/// The request's `Content-Encoding`, lowercased.
pub fn content_encoding(headers: &HeaderMap) -> String {
    headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Undoes a gzip or identity `Content-Encoding` (CPU work: call it off the
/// async workers).
pub fn decode_content(raw: &[u8], encoding: &str, limit: usize) -> Result<Vec<u8>, RequestError> {
    match encoding {
        "" | "identity" => Ok(raw.to_vec()),
        "gzip" => gunzip(raw, limit),
        other => Err(RequestError::UnsupportedEncoding(other.to_string())),
    }
}

pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, RequestError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RequestError::BadRequest(format!("malformed gzip body: {e}")))?;
    if out.len() > limit {
        return Err(RequestError::TooLarge(limit));
    }
    Ok(out)
}

pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
