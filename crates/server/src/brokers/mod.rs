//! Telemetry that arrives through message brokers (Kafka, MQTT) rather than
//! by request. A transport hands each message to [`ingest`] and
//! acknowledges it to its broker (a committed offset, a PUBACK) only once
//! `ingest` has returned: by then the data is in the WAL, exactly as for an
//! HTTP write. A malformed message is counted, logged with where it came
//! from and skipped, so it never blocks its partition or subscription; a
//! refusal the store may lift (overload, a failing disk) is retried.

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod mqtt;
pub mod policies;
mod route;
#[cfg(any(feature = "kafka", test))]
pub mod stalls;

use sonde_ingest::otlp::collector::ExportMetricsServiceRequest;
use sonde_ingest::MetricsBatch;
use sonde_model::{Labels, LabelsBuilder};

pub use route::{Encoding, Route, RouteSignal};

use crate::app::{App, AppState};
use crate::body::RequestError;
use crate::write::append_batch;
use crate::write_records::{store_records_request, RecordsRequest, Signal};

/// Why a message was not stored.
#[derive(Debug)]
pub enum Failure {
    /// The message can never be stored: skip it (and dead-letter it).
    Malformed(String),
    /// The store refused for now: try the same message again later.
    Retry(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "malformed: {m}"),
            Failure::Retry(m) => write!(f, "store unavailable: {m}"),
        }
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Failure {
        if e.is_retryable() || matches!(e, RequestError::Internal(_)) {
            Failure::Retry(e.message())
        } else {
            Failure::Malformed(e.message())
        }
    }
}

/// What one stored message held.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Stored {
    /// Samples, spans or log records stored.
    pub accepted: u64,
    /// Points or records of the message dropped as invalid.
    pub rejected: u64,
}

/// One message off a broker.
pub struct Message {
    pub payload: Vec<u8>,
    /// Attributes the transport derived (topic levels, headers, the key);
    /// they never replace what the payload itself says.
    pub context: Vec<(String, String)>,
    /// The time that samples and records without a timestamp of their own
    /// get: fixed once per message (Kafka: the broker's timestamp of the
    /// message; MQTT: when it first arrived), so a retried or re-delivered
    /// message lands on the same time and is stored once.
    pub stamp_ms: i64,
}

/// Options of the payload decoders that have them.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    pub json: sonde_ingest::json_telemetry::JsonOptions,
    pub influx_precision: sonde_ingest::influx::Precision,
}

/// Decodes, converts and stores one message; returns once it is in the WAL.
/// Sparkplug B messages are stateful and go through [`ingest_metrics`]
/// after their transport's decoder.
pub async fn ingest(
    state: &AppState,
    transport: &'static str,
    route: &Route,
    options: &DecodeOptions,
    msg: Message,
) -> Result<Stored, Failure> {
    let Message {
        mut payload,
        context,
        stamp_ms,
    } = msg;
    // Device payloads are checked and inflated by `decode_device`.
    if !is_device(route.encoding) {
        check_size(state, &payload)?;
        payload = inflate(state, payload)?;
    }
    match route.encoding {
        Encoding::OtlpProto | Encoding::OtlpJson => {
            let json = route.encoding == Encoding::OtlpJson;
            match route.signal {
                RouteSignal::Metrics => {
                    let outcome = crate::write::store_otlp(state, transport, move || {
                        let mut req = if json {
                            sonde_ingest::otlp::decode_json(&payload)
                        } else {
                            sonde_ingest::otlp::decode_proto(&payload)
                        }
                        .map_err(|e| RequestError::BadRequest(e.to_string()))?;
                        enrich_metrics(&mut req, &context);
                        Ok(req)
                    })
                    .await?;
                    Ok(Stored {
                        accepted: outcome.report.accepted,
                        rejected: outcome.report.rejected + outcome.dropped,
                    })
                }
                RouteSignal::Traces | RouteSignal::Logs => {
                    let signal = if route.signal == RouteSignal::Traces {
                        Signal::Traces
                    } else {
                        Signal::Logs
                    };
                    let outcome =
                        store_records_request(state, transport, Some(stamp_ms), move || {
                            let mut req = RecordsRequest::decode(signal, json, &payload)?;
                            enrich_records(&mut req, &context);
                            Ok(req)
                        })
                        .await?;
                    Ok(Stored {
                        accepted: outcome.accepted,
                        rejected: outcome.rejected,
                    })
                }
            }
        }
        Encoding::RemoteWrite | Encoding::Influx | Encoding::Json => {
            let (st, route, options) = (state.clone(), route.clone(), options.clone());
            tokio::task::spawn_blocking(move || {
                let decoded = decode_device(&st, &route, &options, &payload, context, stamp_ms)?;
                store_decoded(&st, transport, vec![decoded])
            })
            .await
            .map_err(|e| Failure::Retry(format!("write task failed: {e}")))?
        }
        Encoding::Sparkplug => Err(Failure::Malformed(
            "Sparkplug B payloads are read from MQTT subscriptions only".into(),
        )),
    }
}

fn check_size(state: &App, payload: &[u8]) -> Result<(), Failure> {
    let limit = state.config.max_request_bytes;
    if payload.len() > limit {
        return Err(Failure::Malformed(format!(
            "message of {} bytes is larger than max_request_bytes ({limit})",
            payload.len()
        )));
    }
    Ok(())
}

/// Producers without a content-encoding header (MQTT 3.1.1) gzip payloads
/// whole; no protobuf, JSON or line protocol starts as gzip does.
fn inflate(state: &App, payload: Vec<u8>) -> Result<Vec<u8>, Failure> {
    if payload.starts_with(&[0x1f, 0x8b]) {
        crate::body::decode_content(&payload, "gzip", state.config.max_request_bytes)
            .map_err(|e| Failure::Malformed(e.message()))
    } else {
        Ok(payload)
    }
}

/// Encodings of one message's worth of device data, cheap to decode and
/// stored in batches of messages (see [`decode_device`]).
pub fn is_device(encoding: Encoding) -> bool {
    matches!(
        encoding,
        Encoding::RemoteWrite | Encoding::Influx | Encoding::Json
    )
}

/// A device message decoded: samples (context applied) and log records.
pub struct Decoded {
    metrics: MetricsBatch,
    logs: Vec<sonde_model::records::LogRecord>,
}

/// Decodes a remote-write, line-protocol or JSON message; what has no
/// timestamp gets `stamp_ms` (the message's, see [`Message::stamp_ms`]).
/// Blocking.
pub fn decode_device(
    st: &App,
    route: &Route,
    options: &DecodeOptions,
    payload: &[u8],
    context: Vec<(String, String)>,
    stamp_ms: i64,
) -> Result<Decoded, Failure> {
    check_size(st, payload)?;
    let payload = inflate(st, payload.to_vec())?;
    let bad = |e: sonde_ingest::Error| Failure::Malformed(e.to_string());
    let now_ms = stamp_ms;
    let (mut metrics, logs) = match route.encoding {
        Encoding::RemoteWrite => {
            // Remote write is snappy-framed by its protocol; accept a bare
            // protobuf too, as some Kafka adapters write it so.
            let limit = st.config.max_request_bytes.saturating_mul(8);
            let raw =
                sonde_ingest::remote_write::decompress_limited(&payload, limit).unwrap_or(payload);
            let mut batch = sonde_ingest::remote_write::decode_uncompressed(&raw).map_err(bad)?;
            apply_context(&mut batch, &context);
            (batch, Vec::new())
        }
        Encoding::Influx => {
            let opts = sonde_ingest::influx::InfluxOptions {
                precision: options.influx_precision,
                extra_labels: context,
            };
            let batch = sonde_ingest::influx::parse_lines(&payload, &opts, now_ms).map_err(bad)?;
            (batch, Vec::new())
        }
        Encoding::Json => {
            let mut opts = options.json.clone();
            opts.extra_labels = context;
            opts.record_limits = st.record_limits.clone();
            let d = sonde_ingest::json_telemetry::decode(&payload, &opts, now_ms).map_err(bad)?;
            (d.metrics, d.logs.logs)
        }
        other => {
            return Err(Failure::Malformed(format!(
                "{other:?} is not a device encoding"
            )))
        }
    };
    if metrics.series.is_empty() && logs.is_empty() && metrics.rejected_points > 0 {
        return Err(Failure::Malformed(
            metrics.first_rejection.take().unwrap_or_default(),
        ));
    }
    Ok(Decoded { metrics, logs })
}

/// Stores decoded device messages with one WAL append. Blocking.
pub fn store_decoded(
    st: &App,
    transport: &'static str,
    decoded: Vec<Decoded>,
) -> Result<Stored, Failure> {
    let mut batch = MetricsBatch::default();
    let mut logs = Vec::new();
    for d in decoded {
        batch.series.extend(d.metrics.series);
        batch.metadata.extend(d.metrics.metadata);
        batch.exemplars.extend(d.metrics.exemplars);
        batch.rejected_points += d.metrics.rejected_points;
        if batch.first_rejection.is_none() {
            batch.first_rejection = d.metrics.first_rejection;
        }
        logs.extend(d.logs);
    }
    let outcome = append_batch(st, batch)?;
    st.metrics.samples(transport, outcome.report.accepted);
    let n = logs.len() as u64;
    if n > 0 {
        crate::write_records::store_logs(st, logs)?;
        st.metrics.records("log_records", transport, n, 0);
    }
    Ok(Stored {
        accepted: outcome.report.accepted + n,
        rejected: outcome.report.rejected + outcome.dropped,
    })
}

/// Stores decoded metrics, adding the context labels each series lacks.
pub async fn ingest_metrics(
    state: &AppState,
    transport: &'static str,
    mut metrics: MetricsBatch,
    context: Vec<(String, String)>,
) -> Result<Stored, Failure> {
    if metrics.series.is_empty() && metrics.rejected_points > 0 {
        return Err(Failure::Malformed(
            metrics.first_rejection.unwrap_or_default(),
        ));
    }
    apply_context(&mut metrics, &context);
    let st = state.clone();
    let decoded = Decoded {
        metrics,
        logs: Vec::new(),
    };
    tokio::task::spawn_blocking(move || store_decoded(&st, transport, vec![decoded]))
        .await
        .map_err(|e| Failure::Retry(format!("write task failed: {e}")))?
}

/// Adds the context labels each series lacks.
fn apply_context(batch: &mut MetricsBatch, context: &[(String, String)]) {
    if context.is_empty() {
        return;
    }
    for s in &mut batch.series {
        s.labels = with_context(&s.labels, context);
    }
}

fn with_context(labels: &Labels, context: &[(String, String)]) -> Labels {
    let mut b: LabelsBuilder = labels.clone().into_builder();
    for (k, v) in context {
        let name = sonde_ingest::otlp::sanitize_label_name(k);
        if b.get(&name).is_none() && !v.is_empty() {
            b.set(name, v.clone());
        }
    }
    b.build()
}

fn add_attributes(
    resource: &mut Option<sonde_ingest::otlp::resource::Resource>,
    context: &[(String, String)],
) {
    use sonde_ingest::otlp::common::{any_value, AnyValue, KeyValue};
    let r = resource.get_or_insert_with(Default::default);
    for (k, v) in context {
        if !r.attributes.iter().any(|a| &a.key == k) {
            r.attributes.push(KeyValue {
                key: k.clone(),
                key_strindex: 0,
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v.clone())),
                }),
            });
        }
    }
}

fn enrich_metrics(req: &mut ExportMetricsServiceRequest, context: &[(String, String)]) {
    if context.is_empty() {
        return;
    }
    for rm in &mut req.resource_metrics {
        add_attributes(&mut rm.resource, context);
    }
}

fn enrich_records(req: &mut RecordsRequest, context: &[(String, String)]) {
    if context.is_empty() {
        return;
    }
    match req {
        RecordsRequest::Traces(r) => {
            for rs in &mut r.resource_spans {
                add_attributes(&mut rs.resource, context);
            }
        }
        RecordsRequest::Logs(r) => {
            for rl in &mut r.resource_logs {
                add_attributes(&mut rl.resource, context);
            }
        }
    }
}

/// How long to wait before retrying a message the store refused: doubling
/// from 100 ms to 5 s.
pub fn retry_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6)).min(5_000))
}

/// Resolves once the server is stopping.
pub async fn wait_stop(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
