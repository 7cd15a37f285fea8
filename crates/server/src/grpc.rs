//! OTLP over gRPC, served by hand on HTTP/2: a unary gRPC call is a POST
//! whose body is one length-prefixed message and whose response ends with
//! `grpc-status` trailers. This avoids a gRPC framework for three methods.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use prost::Message;
use sonde_ingest::otlp::collector::ExportMetricsServiceResponse;

use crate::app::AppState;
use crate::body::{gunzip, read_raw, RequestError};
use crate::write::store_otlp;
use crate::write_records::{store_records, Signal};

/// gRPC status codes used here.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

/// One data frame, then trailers.
struct UnaryBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for UnaryBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

fn grpc_ok_bytes(payload: Vec<u8>) -> Response {
    let mut framed = Vec::with_capacity(payload.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(OK));
    let mut resp = Response::new(Body::new(UnaryBody {
        data: Some(Bytes::from(framed)),
        trailers: Some(trailers),
    }));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}

/// A "trailers-only" response: the status travels in the headers.
fn grpc_error(code: u32, message: &str) -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    resp
}

/// gRPC requires grpc-message to be percent-encoded outside printable ASCII.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Extracts the single message of a unary request.
fn unframe(headers: &HeaderMap, body: &[u8], limit: usize) -> Result<Vec<u8>, RequestError> {
    if body.len() < 5 {
        return Err(RequestError::BadRequest(
            "request is not a length-prefixed gRPC message".into(),
        ));
    }
    let compressed = body[0] == 1;
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body.get(5..5usize.saturating_add(len)).ok_or_else(|| {
        RequestError::BadRequest("gRPC message is shorter than its length prefix".into())
    })?;
    if !compressed {
        return Ok(msg.to_vec());
    }
    match headers.get("grpc-encoding").and_then(|v| v.to_str().ok()) {
        Some("gzip") => gunzip(msg, limit),
        other => Err(RequestError::UnsupportedEncoding(format!(
            "grpc-encoding {other:?}"
        ))),
    }
}

/// The gRPC status for a refused request; UNAVAILABLE is what OTLP
/// exporters retry.
fn grpc_code(e: &RequestError) -> u32 {
    match e {
        RequestError::BadRequest(_) | RequestError::UnsupportedMediaType(_) => INVALID_ARGUMENT,
        RequestError::TooLarge(_) => RESOURCE_EXHAUSTED,
        RequestError::UnsupportedEncoding(_) => UNIMPLEMENTED,
        RequestError::Overloaded | RequestError::Unavailable(_) | RequestError::Timeout => {
            UNAVAILABLE
        }
        RequestError::Internal(_) => INTERNAL,
    }
}

/// The unary export every signal shares: a write permit, the framed body
/// within its limit, then `store` (given the raw frame; it returns the
/// encoded response message), and errors as gRPC status trailers.
async fn export<Fut>(
    state: &AppState,
    body: Body,
    store: impl FnOnce(bytes::Bytes) -> Fut,
) -> Response
where
    Fut: std::future::Future<Output = Result<Vec<u8>, RequestError>>,
{
    let result: Result<Response, RequestError> = async {
        let _permit = state
            .write_permits
            .try_acquire()
            .map_err(|_| RequestError::Overloaded)?;
        let raw = read_raw(body, state.config.max_request_bytes.saturating_add(5)).await?;
        Ok(grpc_ok_bytes(store(raw).await?))
    }
    .await;
    let resp = result.unwrap_or_else(|e| {
        state.metrics.rejected_request("otlp_grpc", e.reason());
        grpc_error(grpc_code(&e), &e.message())
    });
    state.metrics.request("otlp_grpc", resp.status().as_u16());
    resp
}

pub async fn export_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let st = state.clone();
    export(&state, body, |raw| async move {
        let limit = st.config.max_request_bytes;
        let outcome = store_otlp(&st, "otlp_grpc", move || {
            let msg = unframe(&headers, &raw, limit)?;
            sonde_ingest::otlp::decode_proto(&msg)
                .map_err(|e| RequestError::BadRequest(e.to_string()))
        })
        .await?;
        Ok(ExportMetricsServiceResponse {
            partial_success: outcome.partial_success(),
        }
        .encode_to_vec())
    })
    .await
}

async fn export_records(
    state: AppState,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let st = state.clone();
    export(&state, body, |raw| async move {
        let limit = st.config.max_request_bytes;
        let outcome = store_records(&st, signal, "otlp_grpc", false, move || {
            unframe(&headers, &raw, limit)
        })
        .await?;
        Ok(outcome.encode(false))
    })
    .await
}

pub async fn export_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export_records(state, Signal::Traces, headers, body).await
}

pub async fn export_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export_records(state, Signal::Logs, headers, body).await
}

pub async fn unimplemented() -> Response {
    grpc_error(
        UNIMPLEMENTED,
        "this service or method is not served here; Sonde serves OTLP metrics, trace and logs export",
    )
}
