//! OTLP traces and logs, turned into Sonde's flat rows ([`SpanRecord`],
//! [`LogRecord`]).
//!
//! Unlike metrics, nothing is renamed: attribute keys and values are kept as
//! the producer sent them, because trace and log search shows them verbatim.
//! What this module does is bound and validate:
//! - every row is bounded by [`RecordLimits`] (attribute count, value size,
//!   log body size, events and links per span), so one hostile or buggy
//!   producer cannot make a row of unbounded size. Cutting is preferred to
//!   rejecting: a span with too many attributes is still worth keeping.
//!   Every other free-text field (span, event and scope names, trace state,
//!   status message, severity text) is bounded by the attribute value limit.
//! - a row that cannot be stored correctly (a span without usable ids, a span
//!   that ends before it starts, a log with a malformed trace id) is rejected,
//!   counted, and the first reason kept for the OTLP partial-success answer.
//!
//! JSON: `opentelemetry-proto`'s serde support implements the OTLP/JSON
//! mapping (hex ids in either case, int64 as string or number, enums as
//! integers, lowerCamelCase keys, unknown keys ignored, base64 `bytesValue`),
//! so the JSON is decoded as is, without pre-processing. As the
//! specification requires, enum names (`"SPAN_KIND_SERVER"`) and snake_case
//! keys are not accepted, and an id that is not hex fails the whole request,
//! as it does in the OpenTelemetry Collector.

use std::collections::HashSet;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1 as otlp_logs;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp_trace;
use prost::Message;
use sonde_model::records::{
    AttrValue, Attributes, LogRecord, Origin, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord,
    StatusCode, TraceId, TRUNCATION_MARKER, UNKNOWN_SERVICE,
};

use crate::{Error, Result};

pub use opentelemetry_proto::tonic::collector::logs::v1 as logs_collector;
pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1 as trace_collector;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// Bounds on what one span or log record may hold. Past a bound the excess is
/// cut (and counted in the batch's `truncated`), never the row rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLimits {
    /// Attributes kept per list (span, event, link, log, resource); the first
    /// ones in the order sent are kept.
    pub max_attributes: usize,
    /// Bytes of one attribute value (and of names and other short strings);
    /// a longer value is cut at a character boundary and ends with
    /// [`TRUNCATION_MARKER`], marker included in the bound.
    pub max_attribute_value_bytes: usize,
    /// Bytes of a log body, cut the same way.
    pub max_body_bytes: usize,
    pub max_events_per_span: usize,
    pub max_links_per_span: usize,
}

impl Default for RecordLimits {
    fn default() -> RecordLimits {
        RecordLimits {
            max_attributes: 128,
            max_attribute_value_bytes: 4096,
            max_body_bytes: 65536,
            max_events_per_span: 128,
            max_links_per_span: 128,
        }
    }
}

/// Decoded spans, ready for the store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TracesBatch {
    pub spans: Vec<SpanRecord>,
    /// Spans dropped as invalid.
    pub rejected: u64,
    /// Why the first of them was dropped.
    pub first_rejection: Option<String>,
    /// Cuts made by the limits in the spans kept: each value or string cut
    /// short, and each attribute, event or link left out (links also for
    /// invalid ids). Worth a counter: it means data was lost, silently for
    /// the producer, which OTLP gives no way to tell.
    pub truncated: u64,
}

impl TracesBatch {
    pub fn reject(&mut self, why: impl FnOnce() -> String) {
        note_rejection(&mut self.rejected, &mut self.first_rejection, why);
    }
}

/// Decoded log records, ready for the store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogsBatch {
    pub logs: Vec<LogRecord>,
    /// Records dropped as invalid.
    pub rejected: u64,
    /// Why the first of them was dropped.
    pub first_rejection: Option<String>,
    /// Cuts made by the limits in the records kept; see
    /// [`TracesBatch::truncated`].
    pub truncated: u64,
}

impl LogsBatch {
    pub fn reject(&mut self, why: impl FnOnce() -> String) {
        note_rejection(&mut self.rejected, &mut self.first_rejection, why);
    }
}

fn note_rejection(count: &mut u64, first: &mut Option<String>, why: impl FnOnce() -> String) {
    *count += 1;
    if first.is_none() {
        *first = Some(why());
    }
}

pub fn decode_traces_proto(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    ExportTraceServiceRequest::decode(body).map_err(|e| Error::Protobuf(e.to_string()))
}

pub fn decode_traces_json(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    serde_json::from_slice(body).map_err(|e| Error::Json(e.to_string()))
}

pub fn decode_logs_proto(body: &[u8]) -> Result<ExportLogsServiceRequest> {
    ExportLogsServiceRequest::decode(body).map_err(|e| Error::Protobuf(e.to_string()))
}

pub fn decode_logs_json(body: &[u8]) -> Result<ExportLogsServiceRequest> {
    serde_json::from_slice(body).map_err(|e| Error::Json(e.to_string()))
}

/// Converts an OTLP traces request; invalid spans are counted in `rejected`.
pub fn convert_traces(req: &ExportTraceServiceRequest, limits: &RecordLimits) -> TracesBatch {
    let mut batch = TracesBatch::default();
    let mut cx = Cx::new(limits);
    for rs in &req.resource_spans {
        let resource = cx.resource(rs.resource.as_ref());
        for ss in &rs.scope_spans {
            if ss.spans.is_empty() {
                continue;
            }
            let origin = Arc::new(cx.origin(&resource, ss.scope.as_ref()));
            for span in &ss.spans {
                match cx.span(span, &origin) {
                    Ok(s) => batch.spans.push(s),
                    Err(why) => batch.reject(|| format!("span '{}': {why}", label(&span.name))),
                }
            }
        }
    }
    batch.truncated = cx.truncated;
    batch
}

/// Converts an OTLP logs request; `now_ns` stands in for the observed time
/// of records that carry none (it is when this receiver observed them).
pub fn convert_logs(
    req: &ExportLogsServiceRequest,
    limits: &RecordLimits,
    now_ns: i64,
) -> LogsBatch {
    let mut batch = LogsBatch::default();
    let mut cx = Cx::new(limits);
    for rl in &req.resource_logs {
        let resource = cx.resource(rl.resource.as_ref());
        for sl in &rl.scope_logs {
            if sl.log_records.is_empty() {
                continue;
            }
            let origin = Arc::new(cx.origin(&resource, sl.scope.as_ref()));
            for rec in &sl.log_records {
                match cx.log(rec, &origin, now_ns) {
                    Ok(l) => batch.logs.push(l),
                    Err(why) => batch.reject(|| format!("log record: {why}")),
                }
            }
        }
    }
    batch.truncated = cx.truncated;
    batch
}

/// A span name fit for an error message: short, whatever was sent.
fn label(name: &str) -> String {
    const MAX_CHARS: usize = 100;
    let mut s: String = name.chars().take(MAX_CHARS).collect();
    if name.chars().nth(MAX_CHARS).is_some() {
        s.push('…');
    }
    s
}

/// An id that must be present: `Err` says what is wrong with it.
fn required_id<const N: usize>(bytes: &[u8], kind: &str) -> Result<[u8; N], String> {
    if bytes.is_empty() {
        return Err(format!("missing {kind}"));
    }
    let id: [u8; N] = bytes
        .try_into()
        .map_err(|_| format!("invalid {kind} (length {})", bytes.len()))?;
    if id == [0u8; N] {
        return Err(format!("invalid {kind} (all zero)"));
    }
    Ok(id)
}

/// An optional id: empty or all zero (OTLP's and the API's "no id") is
/// `None`; any other length is malformed, and storing the record without its
/// id would silently detach it from its trace, so it is an error.
fn optional_id<const N: usize>(bytes: &[u8], kind: &str) -> Result<Option<[u8; N]>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id: [u8; N] = bytes
        .try_into()
        .map_err(|_| format!("invalid {kind} (length {})", bytes.len()))?;
    Ok((id != [0u8; N]).then_some(id))
}

/// OTLP times are u64 nanoseconds; Sonde's are i64, which reach the year
/// 2262. A later time is garbage rather than data.
fn to_ns(t: u64, what: &str) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{what} {t} is out of range"))
}

/// What a resource contributes to every origin under it, converted once.
struct ResourceInfo {
    service: String,
    host: String,
    attributes: Attributes,
}

/// Conversion state: the limits, and the count of cuts they caused.
struct Cx<'a> {
    limits: &'a RecordLimits,
    truncated: u64,
}

impl<'a> Cx<'a> {
    fn new(limits: &'a RecordLimits) -> Cx<'a> {
        Cx {
            limits,
            truncated: 0,
        }
    }

    fn resource(&mut self, resource: Option<&Resource>) -> ResourceInfo {
        let attrs: &[KeyValue] = resource.map_or(&[], |r| r.attributes.as_slice());
        let service = match string_attr(attrs, "service.name") {
            Some(s) => self.text(s),
            None => UNKNOWN_SERVICE.to_string(),
        };
        let host = string_attr(attrs, "host.name")
            .or_else(|| string_attr(attrs, "host.id"))
            .map(|s| self.text(s))
            .unwrap_or_default();
        ResourceInfo {
            service,
            host,
            attributes: self.attributes(attrs),
        }
    }

    /// The origin of one resource + scope. Scope attributes are not kept:
    /// [`Origin`] has no place for them, and they are rare.
    fn origin(&mut self, r: &ResourceInfo, scope: Option<&InstrumentationScope>) -> Origin {
        let (scope_name, scope_version) = match scope {
            Some(s) => (self.text(&s.name), self.text(&s.version)),
            None => Default::default(),
        };
        Origin {
            service: r.service.clone(),
            host: r.host.clone(),
            resource: r.attributes.clone(),
            scope_name,
            scope_version,
        }
    }

    fn span(&mut self, s: &otlp_trace::Span, origin: &Arc<Origin>) -> Result<SpanRecord, String> {
        // Everything that can reject the span is checked before anything is
        // converted, so a rejected span costs little and cuts nothing.
        let trace_id = TraceId(required_id(&s.trace_id, "trace id")?);
        let span_id = SpanId(required_id(&s.span_id, "span id")?);
        // An all-zero parent is what some SDKs send for a root span.
        let parent_span_id = optional_id(&s.parent_span_id, "parent span id")?.map(SpanId);
        if s.start_time_unix_nano == 0 {
            return Err("missing start time".into());
        }
        let start_ns = to_ns(s.start_time_unix_nano, "start time")?;
        let end_ns = to_ns(s.end_time_unix_nano, "end time")?;
        if end_ns < start_ns {
            return Err(format!("end time {end_ns} is before start time {start_ns}"));
        }
        let (status, status_message) = match &s.status {
            Some(st) => (StatusCode::from_i32(st.code), self.text(&st.message)),
            None => (StatusCode::Unset, String::new()),
        };
        let events = self.capped(&s.events, self.limits.max_events_per_span, |cx, e| {
            Some(SpanEvent {
                // Saturating: an event is not worth rejecting its span for.
                time_ns: i64::try_from(e.time_unix_nano).unwrap_or(i64::MAX),
                name: cx.text(&e.name),
                attributes: cx.attributes(&e.attributes),
            })
        });
        let links = self.capped(&s.links, self.limits.max_links_per_span, |cx, l| {
            // A link to nothing is dropped, not the span that has it.
            let trace_id = TraceId(required_id(&l.trace_id, "").ok()?);
            let span_id = SpanId(required_id(&l.span_id, "").ok()?);
            Some(SpanLink {
                trace_id,
                span_id,
                trace_state: cx.text(&l.trace_state),
                attributes: cx.attributes(&l.attributes),
            })
        });
        Ok(SpanRecord {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: self.text(&s.trace_state),
            flags: s.flags,
            name: self.text(&s.name),
            kind: SpanKind::from_i32(s.kind),
            start_ns,
            end_ns,
            status,
            status_message,
            origin: origin.clone(),
            attributes: self.attributes(&s.attributes),
            events,
            links,
        })
    }

    /// Converts the first items that `f` accepts, up to `max`; the rest, and
    /// those it refuses, count as cuts.
    fn capped<T, U>(
        &mut self,
        items: &[T],
        max: usize,
        mut f: impl FnMut(&mut Self, &T) -> Option<U>,
    ) -> Vec<U> {
        let mut out = Vec::with_capacity(items.len().min(max));
        for (i, item) in items.iter().enumerate() {
            if out.len() >= max {
                self.truncated += (items.len() - i) as u64;
                break;
            }
            match f(self, item) {
                Some(u) => out.push(u),
                None => self.truncated += 1,
            }
        }
        out
    }

    fn log(
        &mut self,
        r: &otlp_logs::LogRecord,
        origin: &Arc<Origin>,
        now_ns: i64,
    ) -> Result<LogRecord, String> {
        let trace_id = optional_id(&r.trace_id, "trace id")?.map(TraceId);
        let span_id = optional_id(&r.span_id, "span id")?.map(SpanId);
        let observed_ns = match r.observed_time_unix_nano {
            0 => now_ns,
            t => to_ns(t, "observed time")?,
        };
        // The data model: the event time when known, else when observed.
        let time_ns = match r.time_unix_nano {
            0 => observed_ns,
            t => to_ns(t, "time")?,
        };
        // Out-of-range numbers mean "unspecified" rather than a guess.
        let severity_number = u8::try_from(r.severity_number)
            .ok()
            .filter(|n| *n <= 24)
            .unwrap_or(0);
        // `event_name` is the field since OTLP 1.5; older producers put the
        // name in the `event.name` attribute, which is kept either way.
        let event_name = if r.event_name.is_empty() {
            string_attr(&r.attributes, "event.name").unwrap_or_default()
        } else {
            &r.event_name
        };
        Ok(LogRecord {
            time_ns,
            observed_ns,
            severity_number,
            severity_text: self.text(&r.severity_text),
            body: self.body(r.body.as_ref()),
            event_name: self.text(event_name),
            trace_id,
            span_id,
            flags: r.flags,
            origin: origin.clone(),
            attributes: self.attributes(&r.attributes),
        })
    }

    /// A log body as text: a string as is, bytes as hex, anything else as
    /// its JSON text; cut to `max_body_bytes`.
    fn body(&mut self, body: Option<&AnyValue>) -> String {
        let max = self.limits.max_body_bytes;
        let text = match body.and_then(|b| b.value.as_ref()) {
            None | Some(any_value::Value::StringValueStrindex(_)) => return String::new(),
            Some(any_value::Value::StringValue(s)) => return self.cut(s, max),
            // Only as many bytes as the hex can show: a huge binary body is
            // not copied whole just to be cut.
            Some(any_value::Value::BytesValue(b)) => hex(&b[..b.len().min(max / 2 + 1)]),
            Some(_) => body.map(any_json).unwrap_or_default(),
        };
        self.cut(&text, max)
    }

    /// Converts attributes. Kept: the first `max_attributes` with a key and a
    /// value, in order. Skipped silently: empty values and empty keys (OTLP
    /// forbids both; neither can be searched for) and repeated keys (the
    /// first wins, as in the Collector's attribute maps). Cut, and counted:
    /// attributes past the cap, and keys longer than the value limit (a key
    /// cut short would be a different key). The count of attributes dropped
    /// is not added as an attribute: it would break the cap, could collide
    /// with a producer's key, and `truncated` in the batch already says it.
    fn attributes(&mut self, kvs: &[KeyValue]) -> Attributes {
        let max = self.limits.max_attributes;
        let mut out: Attributes = Vec::with_capacity(kvs.len().min(max));
        // Linear search is cheaper for the usual handful of attributes; a
        // set keeps many repeated keys from costing quadratic time.
        let mut seen: Option<HashSet<&str>> = (kvs.len() > 16).then(HashSet::new);
        for kv in kvs {
            let Some(value) = kv.value.as_ref().filter(|v| !is_empty(v)) else {
                continue;
            };
            if kv.key.is_empty() {
                continue;
            }
            let repeated = match &mut seen {
                Some(set) => !set.insert(kv.key.as_str()),
                None => out.iter().any(|(k, _)| *k == kv.key),
            };
            if repeated {
                continue;
            }
            if out.len() >= max || kv.key.len() > self.limits.max_attribute_value_bytes {
                self.truncated += 1;
                continue;
            }
            if let Some(v) = self.value(value) {
                out.push((kv.key.clone(), v));
            }
        }
        out
    }

    fn value(&mut self, v: &AnyValue) -> Option<AttrValue> {
        let max = self.limits.max_attribute_value_bytes;
        Some(match v.value.as_ref()? {
            any_value::Value::StringValue(s) => AttrValue::Str(self.text(s)),
            any_value::Value::BoolValue(b) => AttrValue::Bool(*b),
            any_value::Value::IntValue(i) => AttrValue::Int(*i),
            any_value::Value::DoubleValue(d) => AttrValue::Double(*d),
            any_value::Value::BytesValue(b) if b.len() > max => {
                self.truncated += 1;
                let keep = max.saturating_sub(TRUNCATION_MARKER.len());
                let mut cut = b[..keep].to_vec();
                cut.extend_from_slice(TRUNCATION_MARKER.as_bytes());
                AttrValue::Bytes(cut)
            }
            any_value::Value::BytesValue(b) => AttrValue::Bytes(b.clone()),
            any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
                let json = any_json(v);
                if json.len() > max {
                    // Cut JSON is no longer JSON: it becomes a string, so
                    // that a `Json` value always parses.
                    AttrValue::Str(self.cut(&json, max))
                } else {
                    AttrValue::Json(json)
                }
            }
            // Only used by the profiles signal, with a string table that
            // traces and logs do not have.
            any_value::Value::StringValueStrindex(_) => return None,
        })
    }

    /// A short string (name, value) bounded by the attribute value limit.
    fn text(&mut self, s: &str) -> String {
        self.cut(s, self.limits.max_attribute_value_bytes)
    }

    /// `s`, or when longer than `max` bytes its start ending with the
    /// marker, `max` bytes in all (the marker alone if `max` is smaller).
    fn cut(&mut self, s: &str, max: usize) -> String {
        if s.len() <= max {
            return s.to_string();
        }
        self.truncated += 1;
        let mut keep = max.saturating_sub(TRUNCATION_MARKER.len());
        while !s.is_char_boundary(keep) {
            keep -= 1;
        }
        let mut out = String::with_capacity(keep + TRUNCATION_MARKER.len());
        out.push_str(&s[..keep]);
        out.push_str(TRUNCATION_MARKER);
        out
    }
}

fn is_empty(v: &AnyValue) -> bool {
    matches!(
        v.value,
        None | Some(any_value::Value::StringValueStrindex(_))
    )
}

/// The first value of `key` if it is a non-empty string.
fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Nesting past which a value is written as `null`. Decoders already bound
/// it (prost at 100 messages, serde_json at 128 levels); this keeps a request
/// built in memory from overflowing the stack.
const MAX_JSON_DEPTH: usize = 64;

/// An `AnyValue` as JSON text: arrays and key-value lists nest as JSON arrays
/// and objects, in the order sent (a repeated key keeps its first value);
/// bytes are a hex string, as Sonde shows bytes elsewhere; non-finite doubles
/// are the strings OTLP/JSON uses ("NaN", "Infinity", "-Infinity"); an empty
/// value is `null`. Written by hand rather than through `serde_json::Value`,
/// whose objects would sort the keys.
fn any_json(v: &AnyValue) -> String {
    let mut out = String::new();
    write_json(&mut out, v, 0);
    out
}

fn write_json(out: &mut String, v: &AnyValue, depth: usize) {
    use std::fmt::Write;
    if depth > MAX_JSON_DEPTH {
        out.push_str("null");
        return;
    }
    match &v.value {
        Some(any_value::Value::StringValue(s)) => write_json_str(out, s),
        Some(any_value::Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None if d.is_nan() => out.push_str("\"NaN\""),
            None if *d > 0.0 => out.push_str("\"Infinity\""),
            None => out.push_str("\"-Infinity\""),
        },
        Some(any_value::Value::BytesValue(b)) => {
            out.push('"');
            out.push_str(&hex(b));
            out.push('"');
        }
        Some(any_value::Value::ArrayValue(a)) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, x, depth + 1);
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(kvs)) => {
            out.push('{');
            let mut seen = HashSet::new();
            for kv in &kvs.values {
                if !seen.insert(kv.key.as_str()) {
                    continue;
                }
                if seen.len() > 1 {
                    out.push(',');
                }
                write_json_str(out, &kv.key);
                out.push(':');
                match &kv.value {
                    Some(x) => write_json(out, x, depth + 1),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => out.push_str("null"),
    }
}

fn write_json_str(out: &mut String, s: &str) {
    // Serialising a string cannot fail; the fallback only avoids a panic path.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "null".into()));
}

#[cfg(test)]
#[path = "otlp_records_tests.rs"]
mod tests;
