//! Write endpoints over HTTP: Prometheus remote write and OTLP/HTTP metrics.
//! Every write is acknowledged only after the store has it in the WAL.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use sonde_ingest::otlp::collector::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use sonde_ingest::MetricsBatch;
use sonde_store::AppendReport;

use crate::app::AppState;
use crate::body::{content_type, read_body, RequestError};

/// `google.rpc.Status`, the body of an OTLP error response.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Hands a decoded batch to the store; returns once it is durable.
pub async fn store_batch(
    state: &AppState,
    protocol: &'static str,
    batch: MetricsBatch,
) -> Result<AppendReport, RequestError> {
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || {
        for m in batch.metadata {
            store.set_metadata(m)?;
        }
        store.append(&batch.series)
    })
    .await
    .map_err(|e| RequestError::Internal(format!("write task failed: {e}")))?
    .map_err(|e| RequestError::Internal(format!("cannot persist the write: {e}")))?;
    state.metrics.samples(protocol, report.accepted);
    Ok(report)
}

fn finish(
    state: &AppState,
    protocol: &'static str,
    result: Result<Response, RequestError>,
) -> Response {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            state.metrics.rejected_request(protocol, e.reason());
            if matches!(e, RequestError::Internal(_)) {
                tracing::error!(protocol, "write failed: {}", e.message());
            }
            e.into_response()
        }
    };
    state.metrics.request(protocol, resp.status().as_u16());
    resp
}

/// Decodes and stores on a blocking thread: the decoded series borrow the
/// decompressed body, so both live in that one closure.
async fn store_remote_write(state: &AppState, body: Vec<u8>) -> Result<AppendReport, RequestError> {
    let store = state.store.clone();
    let limit = state.config.max_request_bytes.saturating_mul(8);
    let report = tokio::task::spawn_blocking(move || {
        use sonde_ingest::remote_write::{decode_views, decompress};
        let bad = |e: sonde_ingest::Error| RequestError::BadRequest(e.to_string());
        let raw = decompress(&body).map_err(bad)?;
        if raw.len() > limit {
            return Err(RequestError::TooLarge(limit));
        }
        let batch = decode_views(&raw).map_err(bad)?;
        let persist = |e: sonde_store::Error| {
            RequestError::Internal(format!("cannot persist the write: {e}"))
        };
        for m in batch.metadata {
            store.set_metadata(m).map_err(persist)?;
        }
        store.append_views(&batch.series).map_err(persist)
    })
    .await
    .map_err(|e| RequestError::Internal(format!("write task failed: {e}")))??;
    state.metrics.samples("remote_write", report.accepted);
    Ok(report)
}

pub async fn remote_write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let _permit = state
            .write_permits
            .try_acquire()
            .map_err(|_| RequestError::Overloaded)?;
        let ct = content_type(&headers);
        if !ct.is_empty() && ct != "application/x-protobuf" {
            return Err(RequestError::UnsupportedMediaType(format!(
                "{ct}; remote write expects application/x-protobuf"
            )));
        }
        // Remote write bodies are snappy-compressed by the protocol itself;
        // Prometheus says so with `Content-Encoding: snappy`.
        let encoding = headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !encoding.is_empty() && encoding != "snappy" {
            return Err(RequestError::UnsupportedEncoding(format!(
                "{encoding}; remote write bodies are snappy-compressed"
            )));
        }
        let limit = state.config.max_request_bytes;
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| RequestError::TooLarge(limit))?
            .to_vec();
        let report = store_remote_write(&state, body).await?;
        match report.first_error {
            // Prometheus drops a batch answered with 400 instead of retrying
            // it, which is right: resending cannot fix these samples.
            Some((reason, msg)) => Err(RequestError::BadRequest(format!(
                "{} of {} samples rejected ({}); first: {msg}",
                report.rejected,
                report.rejected + report.accepted + report.duplicates,
                reason.as_str()
            ))),
            None => Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
    .await;
    finish(&state, "remote_write", result)
}

#[derive(Clone, Copy, PartialEq)]
enum OtlpEncoding {
    Protobuf,
    Json,
}

fn otlp_encoding(headers: &HeaderMap) -> Result<OtlpEncoding, RequestError> {
    match content_type(headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(OtlpEncoding::Protobuf),
        "application/json" => Ok(OtlpEncoding::Json),
        other => Err(RequestError::UnsupportedMediaType(format!(
            "{other}; OTLP/HTTP accepts application/x-protobuf or application/json"
        ))),
    }
}

fn otlp_response(enc: OtlpEncoding, status: StatusCode, body: Vec<u8>) -> Response {
    let ct = match enc {
        OtlpEncoding::Protobuf => "application/x-protobuf",
        OtlpEncoding::Json => "application/json",
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static(ct));
    resp
}

/// OTLP/HTTP errors carry a `google.rpc.Status` in the request's encoding.
fn otlp_error(enc: OtlpEncoding, e: &RequestError) -> Response {
    // gRPC codes: 3 invalid argument, 8 resource exhausted, 13 internal.
    let code = match e {
        RequestError::Overloaded => 8,
        RequestError::Internal(_) => 13,
        _ => 3,
    };
    let status = RpcStatus {
        code,
        message: e.message(),
    };
    let body = match enc {
        OtlpEncoding::Protobuf => status.encode_to_vec(),
        OtlpEncoding::Json => serde_json::json!({"code": code, "message": status.message})
            .to_string()
            .into_bytes(),
    };
    let mut resp = otlp_response(enc, e.status(), body);
    if matches!(e, RequestError::Overloaded) {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

pub fn partial_success(report: &AppendReport) -> Option<ExportMetricsPartialSuccess> {
    report
        .first_error
        .as_ref()
        .map(|(reason, msg)| ExportMetricsPartialSuccess {
            rejected_data_points: report.rejected as i64,
            error_message: format!(
                "{} samples rejected ({}); first: {msg}",
                report.rejected,
                reason.as_str()
            ),
        })
}

pub async fn otlp_http_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let enc = match otlp_encoding(&headers) {
        Ok(enc) => enc,
        Err(e) => return finish(&state, "otlp_http", Err(e)),
    };
    let result: Result<Response, RequestError> = async {
        let _permit = state
            .write_permits
            .try_acquire()
            .map_err(|_| RequestError::Overloaded)?;
        let raw = read_body(&headers, body, state.config.max_request_bytes).await?;
        let req = match enc {
            OtlpEncoding::Protobuf => sonde_ingest::otlp::decode_proto(&raw),
            OtlpEncoding::Json => sonde_ingest::otlp::decode_json(&raw),
        }
        .map_err(|e| RequestError::BadRequest(e.to_string()))?;
        let batch = state.converter.convert(&req, state.clock.now_ms());
        let report = store_batch(&state, "otlp_http", batch).await?;
        let resp = ExportMetricsServiceResponse {
            partial_success: partial_success(&report),
        };
        let body = match enc {
            OtlpEncoding::Protobuf => resp.encode_to_vec(),
            // A success without partial_success is `{}`, not a null field.
            OtlpEncoding::Json if resp.partial_success.is_none() => b"{}".to_vec(),
            OtlpEncoding::Json => serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
        };
        Ok(otlp_response(enc, StatusCode::OK, body))
    }
    .await;
    let result = result.map_err(|e| {
        state.metrics.rejected_request("otlp_http", e.reason());
        otlp_error(enc, &e)
    });
    let resp = result.unwrap_or_else(|r| r);
    state.metrics.request("otlp_http", resp.status().as_u16());
    resp
}
