//! Write endpoints over HTTP: Prometheus remote write and OTLP/HTTP metrics.
//! Every write is acknowledged only after the store has it in the WAL.
//!
//! Decompression, decoding and conversion are CPU work proportional to the
//! request, so they run on blocking threads with the append, never on the
//! async workers that serve every other connection.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use sonde_ingest::otlp::collector::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sonde_ingest::MetricsBatch;
use sonde_store::AppendReport;

use crate::app::{App, AppState};
use crate::body::{content_encoding, content_type, decode_content, read_raw, RequestError};

/// `google.rpc.Status`, the body of an OTLP error response.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

fn storage_error(e: sonde_store::Error) -> RequestError {
    RequestError::Unavailable(e.to_string())
}

/// Runs `work` on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RequestError> + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RequestError::Internal(format!("write task failed: {e}")))?
}

/// What a converted OTLP request did: the store's report plus the points
/// dropped during conversion.
pub struct OtlpOutcome {
    pub report: AppendReport,
    pub dropped: u64,
    pub first_drop: Option<String>,
}

impl OtlpOutcome {
    pub fn partial_success(&self) -> Option<ExportMetricsPartialSuccess> {
        let rejected = self.report.rejected + self.dropped;
        if rejected == 0 {
            return None;
        }
        let first = match (&self.report.first_error, &self.first_drop) {
            (_, Some(drop)) => drop.clone(),
            (Some((reason, msg)), None) => format!("{} ({})", msg, reason.as_str()),
            (None, None) => String::new(),
        };
        Some(ExportMetricsPartialSuccess {
            rejected_data_points: rejected as i64,
            error_message: format!("{rejected} data points rejected; first: {first}"),
        })
    }
}

/// Stores a batch's exemplars, after its samples (which create their
/// series). As in Prometheus, exemplars that cannot be stored (out of
/// order, labels too long) do not fail the request; only a WAL failure does.
fn store_exemplars(
    store: &sonde_store::Store,
    exemplars: &[sonde_model::SeriesExemplar],
) -> Result<(), RequestError> {
    if exemplars.is_empty() {
        return Ok(());
    }
    let r = store.append_exemplars(exemplars).map_err(storage_error)?;
    if r.out_of_order + r.rejected > 0 {
        tracing::debug!(
            out_of_order = r.out_of_order,
            rejected = r.rejected,
            "exemplars dropped"
        );
    }
    Ok(())
}

/// Converts and stores an OTLP request on a blocking thread.
pub async fn store_otlp(
    state: &AppState,
    protocol: &'static str,
    decode: impl FnOnce() -> Result<ExportMetricsServiceRequest, RequestError> + Send + 'static,
) -> Result<OtlpOutcome, RequestError> {
    let st = state.clone();
    let outcome = blocking(move || {
        let req = decode()?;
        let batch: MetricsBatch = st.converter.convert(&req, st.clock.now_ms());
        append_batch(&st, batch)
    })
    .await?;
    state.metrics.samples(protocol, outcome.report.accepted);
    Ok(outcome)
}

/// Stores a decoded batch: metadata, samples, then exemplars. Blocking.
pub(crate) fn append_batch(st: &App, batch: MetricsBatch) -> Result<OtlpOutcome, RequestError> {
    for m in batch.metadata {
        st.store.set_metadata(m).map_err(storage_error)?;
    }
    let report = st.store.append(&batch.series).map_err(storage_error)?;
    store_exemplars(&st.store, &batch.exemplars)?;
    Ok(OtlpOutcome {
        report,
        dropped: batch.rejected_points,
        first_drop: batch.first_rejection,
    })
}

/// Decodes and stores a remote-write body on a blocking thread: the decoded
/// series borrow the decompressed body, so both live in that one closure.
async fn store_remote_write(
    state: &AppState,
    body: bytes::Bytes,
) -> Result<AppendReport, RequestError> {
    let store = state.store.clone();
    // Snappy inflates telemetry several-fold; allow that, not more.
    let limit = state.config.max_request_bytes.saturating_mul(8);
    let report = blocking(move || {
        use sonde_ingest::remote_write::{decode_views, decompress_limited};
        let raw = decompress_limited(&body, limit).map_err(|e| match e {
            sonde_ingest::Error::TooLarge(limit) => RequestError::TooLarge(limit),
            e => RequestError::BadRequest(e.to_string()),
        })?;
        let batch = decode_views(&raw).map_err(|e| RequestError::BadRequest(e.to_string()))?;
        for m in batch.metadata {
            store.set_metadata(m).map_err(storage_error)?;
        }
        let report = store.append_views(&batch.series).map_err(storage_error)?;
        store_exemplars(&store, &batch.exemplars)?;
        if batch.native_histograms > 0 {
            // Not acknowledged as if stored: the sender must know.
            return Err(RequestError::BadRequest(format!(
                "native histograms are not stored yet: {} histogram samples in this request were \
                 dropped ({} float samples were stored); send classic histograms \
                 (_bucket/_sum/_count) or turn off native histograms in remote_write",
                batch.native_histograms, report.accepted
            )));
        }
        Ok(report)
    })
    .await?;
    state.metrics.samples("remote_write", report.accepted);
    Ok(report)
}

pub(crate) fn finish(
    state: &AppState,
    protocol: &'static str,
    result: Result<Response, RequestError>,
) -> Response {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            state.metrics.rejected_request(protocol, e.reason());
            if matches!(e, RequestError::Internal(_) | RequestError::Unavailable(_)) {
                tracing::error!(protocol, "write failed: {}", e.message());
            }
            e.into_response()
        }
    };
    state.metrics.request(protocol, resp.status().as_u16());
    resp
}

/// Remote write v1 only: a request for another protobuf message (remote
/// write 2.0) gets 415, which tells Prometheus to fall back to v1.
fn check_remote_write_headers(headers: &HeaderMap) -> Result<(), RequestError> {
    let raw_ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = content_type(headers);
    if !ct.is_empty() && ct != "application/x-protobuf" {
        return Err(RequestError::UnsupportedMediaType(format!(
            "{ct}; remote write expects application/x-protobuf"
        )));
    }
    if let Some(proto) = raw_ct
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("proto="))
        .next()
    {
        if proto != "prometheus.WriteRequest" {
            return Err(RequestError::UnsupportedMediaType(format!(
                "{raw_ct}; Sonde speaks remote write 1.0 (prometheus.WriteRequest)"
            )));
        }
    }
    // Remote write bodies are snappy-compressed by the protocol itself;
    // Prometheus says so with `Content-Encoding: snappy`.
    let encoding = content_encoding(headers);
    if !encoding.is_empty() && encoding != "snappy" {
        return Err(RequestError::UnsupportedEncoding(format!(
            "{encoding}; remote write bodies are snappy-compressed"
        )));
    }
    Ok(())
}

pub async fn remote_write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        check_remote_write_headers(&headers)?;
        let _permit = state
            .write_permits
            .try_acquire()
            .map_err(|_| RequestError::Overloaded)?;
        let body = read_raw(body, state.config.max_request_bytes).await?;
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
pub(crate) enum OtlpEncoding {
    Protobuf,
    Json,
}

pub(crate) fn otlp_encoding(headers: &HeaderMap) -> Result<OtlpEncoding, RequestError> {
    match content_type(headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(OtlpEncoding::Protobuf),
        "application/json" => Ok(OtlpEncoding::Json),
        other => Err(RequestError::UnsupportedMediaType(format!(
            "{other}; OTLP/HTTP accepts application/x-protobuf or application/json"
        ))),
    }
}

pub(crate) fn otlp_response(enc: OtlpEncoding, status: StatusCode, body: Vec<u8>) -> Response {
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
pub(crate) fn otlp_error(enc: OtlpEncoding, e: &RequestError) -> Response {
    // gRPC codes: 3 invalid argument, 8 resource exhausted, 13 internal,
    // 14 unavailable.
    let code = match e {
        RequestError::Overloaded => 8,
        RequestError::Unavailable(_) => 14,
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
    if e.is_retryable() {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

/// The OTLP/HTTP exchange every signal shares: content type and encoding
/// checks, a write permit, the body within its limit, then `store` (given
/// the encoding and the still-compressed body; it returns the encoded export
/// response), and errors as `google.rpc.Status` in the request's encoding.
pub(crate) async fn otlp_http<Fut>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    store: impl FnOnce(OtlpEncoding, String, bytes::Bytes) -> Fut,
) -> Response
where
    Fut: std::future::Future<Output = Result<Vec<u8>, RequestError>>,
{
    let enc = match otlp_encoding(headers) {
        Ok(enc) => enc,
        Err(e) => return finish(state, "otlp_http", Err(e)),
    };
    let result: Result<Response, RequestError> = async {
        let encoding = content_encoding(headers);
        if !matches!(encoding.as_str(), "" | "identity" | "gzip") {
            return Err(RequestError::UnsupportedEncoding(encoding));
        }
        let _permit = state
            .write_permits
            .try_acquire()
            .map_err(|_| RequestError::Overloaded)?;
        let raw = read_raw(body, state.config.max_request_bytes).await?;
        let answer = store(enc, encoding, raw).await?;
        Ok(otlp_response(enc, StatusCode::OK, answer))
    }
    .await;
    let resp = result.unwrap_or_else(|e| {
        state.metrics.rejected_request("otlp_http", e.reason());
        otlp_error(enc, &e)
    });
    state.metrics.request("otlp_http", resp.status().as_u16());
    resp
}

pub async fn otlp_http_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let st = state.clone();
    otlp_http(&state, &headers, body, |enc, encoding, raw| async move {
        let limit = st.config.max_request_bytes;
        let outcome = store_otlp(&st, "otlp_http", move || {
            let body = decode_content(&raw, &encoding, limit)?;
            match enc {
                OtlpEncoding::Protobuf => sonde_ingest::otlp::decode_proto(&body),
                OtlpEncoding::Json => sonde_ingest::otlp::decode_json(&body),
            }
            .map_err(|e| RequestError::BadRequest(e.to_string()))
        })
        .await?;
        let resp = ExportMetricsServiceResponse {
            partial_success: outcome.partial_success(),
        };
        Ok(match enc {
            OtlpEncoding::Protobuf => resp.encode_to_vec(),
            // A success without partial_success is `{}`, not a null field.
            OtlpEncoding::Json if resp.partial_success.is_none() => b"{}".to_vec(),
            OtlpEncoding::Json => serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
        })
    })
    .await
}
