//! OTLP traces and logs, over HTTP (this module) and gRPC (`grpc.rs`): the
//! same guarantees as metrics, acknowledged only once in the record WAL.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use prost::Message;
use sonde_ingest::otlp_records::{self as otlp, logs_collector, trace_collector};

use crate::app::AppState;
use crate::body::{decode_content, RequestError};
use crate::tail::TailBatch;
use crate::write::{blocking, otlp_http, OtlpEncoding};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Signal {
    Traces,
    Logs,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log_records",
        }
    }
}

/// What storing one request did.
pub(crate) struct RecordsOutcome {
    signal: Signal,
    pub accepted: u64,
    pub rejected: u64,
    first_rejection: Option<String>,
}

impl RecordsOutcome {
    fn message(&self) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        format!(
            "{} {} rejected; first: {}",
            self.rejected,
            self.signal.as_str().replace('_', " "),
            self.first_rejection.as_deref().unwrap_or("")
        )
    }

    /// The OTLP export response, with partial success when anything was
    /// rejected.
    pub fn encode(&self, json: bool) -> Vec<u8> {
        let rejected = self.rejected as i64;
        let message = self.message();
        macro_rules! respond {
            ($resp:expr) => {{
                let resp = $resp;
                if !json {
                    resp.encode_to_vec()
                } else if rejected == 0 {
                    b"{}".to_vec()
                } else {
                    serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec())
                }
            }};
        }
        match self.signal {
            Signal::Traces => respond!(trace_collector::ExportTraceServiceResponse {
                partial_success: (rejected > 0).then_some({
                    trace_collector::ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: message,
                    }
                }),
            }),
            Signal::Logs => respond!(logs_collector::ExportLogsServiceResponse {
                partial_success: (rejected > 0).then_some(
                    logs_collector::ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: message,
                    }
                ),
            }),
        }
    }
}

fn storage_error(e: sonde_records::Error) -> RequestError {
    match e {
        sonde_records::Error::Overloaded => RequestError::Overloaded,
        e => RequestError::Unavailable(e.to_string()),
    }
}

/// A decoded OTLP traces or logs request.
pub(crate) enum RecordsRequest {
    Traces(otlp::ExportTraceServiceRequest),
    Logs(otlp::ExportLogsServiceRequest),
}

impl RecordsRequest {
    /// Decodes an uncompressed OTLP message of `signal`.
    pub fn decode(signal: Signal, json: bool, body: &[u8]) -> Result<Self, RequestError> {
        let bad = |e: sonde_ingest::Error| RequestError::BadRequest(e.to_string());
        Ok(match (signal, json) {
            (Signal::Traces, false) => Self::Traces(otlp::decode_traces_proto(body).map_err(bad)?),
            (Signal::Traces, true) => Self::Traces(otlp::decode_traces_json(body).map_err(bad)?),
            (Signal::Logs, false) => Self::Logs(otlp::decode_logs_proto(body).map_err(bad)?),
            (Signal::Logs, true) => Self::Logs(otlp::decode_logs_json(body).map_err(bad)?),
        })
    }
}

/// Decodes, converts, stores and publishes to live tail, on a blocking
/// thread. `body` is the uncompressed OTLP message.
pub(crate) async fn store_records(
    state: &AppState,
    signal: Signal,
    protocol: &'static str,
    json: bool,
    decode_body: impl FnOnce() -> Result<Vec<u8>, RequestError> + Send + 'static,
) -> Result<RecordsOutcome, RequestError> {
    store_records_request(state, protocol, None, move || {
        RecordsRequest::decode(signal, json, &decode_body()?)
    })
    .await
}

/// Converts, stores and publishes to live tail what `decode` returns, on a
/// blocking thread. Log records without any timestamp get `stamp_ms` (a
/// broker message's own time, the same on re-delivery), or now.
pub(crate) async fn store_records_request(
    state: &AppState,
    protocol: &'static str,
    stamp_ms: Option<i64>,
    decode: impl FnOnce() -> Result<RecordsRequest, RequestError> + Send + 'static,
) -> Result<RecordsOutcome, RequestError> {
    let st = state.clone();
    let outcome = blocking(move || {
        let limits = st.record_limits.clone();
        match decode()? {
            RecordsRequest::Traces(req) => {
                let batch = otlp::convert_traces(&req, &limits);
                let accepted = batch.spans.len() as u64;
                store_spans(&st, batch.spans)?;
                Ok(RecordsOutcome {
                    signal: Signal::Traces,
                    accepted,
                    rejected: batch.rejected,
                    first_rejection: batch.first_rejection,
                })
            }
            RecordsRequest::Logs(req) => {
                let now_ns = stamp_ms
                    .unwrap_or_else(|| st.clock.now_ms())
                    .saturating_mul(1_000_000);
                let batch = otlp::convert_logs(&req, &limits, now_ns);
                let accepted = batch.logs.len() as u64;
                store_logs(&st, batch.logs)?;
                Ok(RecordsOutcome {
                    signal: Signal::Logs,
                    accepted,
                    rejected: batch.rejected,
                    first_rejection: batch.first_rejection,
                })
            }
        }
    })
    .await?;
    state.metrics.records(
        outcome.signal.as_str(),
        protocol,
        outcome.accepted,
        outcome.rejected,
    );
    Ok(outcome)
}

/// Stores converted spans, then shows the new ones (re-deliveries are
/// dropped by the store) to the pipeline and live tail. Blocking.
pub(crate) fn store_spans(
    st: &crate::app::App,
    spans: Vec<sonde_model::records::SpanRecord>,
) -> Result<(), RequestError> {
    let stored = st.records.append_spans(spans).map_err(storage_error)?;
    st.pipeline.on_spans(&stored, st.clock.now_ms());
    if st.tail.has_subscribers() && !stored.is_empty() {
        st.tail.publish(TailBatch::Spans(stored));
    }
    Ok(())
}

/// Stores converted log records, then shows the new ones to the pipeline
/// and live tail. Blocking.
pub(crate) fn store_logs(
    st: &crate::app::App,
    logs: Vec<sonde_model::records::LogRecord>,
) -> Result<(), RequestError> {
    let stored = st.records.append_logs(logs).map_err(storage_error)?;
    st.pipeline.on_logs(&stored, st.clock.now_ms());
    if st.tail.has_subscribers() && !stored.is_empty() {
        st.tail.publish(TailBatch::Logs(stored));
    }
    Ok(())
}

async fn otlp_http_records(
    state: AppState,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let st = state.clone();
    otlp_http(&state, &headers, body, |enc, encoding, raw| async move {
        let json = enc == OtlpEncoding::Json;
        let limit = st.config.max_request_bytes;
        let outcome = store_records(&st, signal, "otlp_http", json, move || {
            decode_content(&raw, &encoding, limit)
        })
        .await?;
        Ok(outcome.encode(json))
    })
    .await
}

pub async fn otlp_http_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    otlp_http_records(state, Signal::Traces, headers, body).await
}

pub async fn otlp_http_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    otlp_http_records(state, Signal::Logs, headers, body).await
}
