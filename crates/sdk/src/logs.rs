//! Log records and events: a [`LoggerProvider`] hands out [`Logger`]s.
//!
//! A record carries the trace and span ids of the span current on the
//! emitting thread, so logs join their traces. Records below the minimum
//! severity (changeable at run time, by policy) cost one atomic load and
//! are not kept. Kept records go into a bounded queue that a background
//! thread exports every second, or at 512 records, as one OTLP
//! `ExportLogsServiceRequest`; when the queue is full a record is dropped
//! and counted.
//!
//! Events are log records with an OTLP `event_name` (and the attribute
//! `event.name`): things that happened to a user or a session, which
//! `user.id` and `session.id` attributes tie together. They are kept
//! whatever the minimum severity, which filters diagnostics only.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attributes::{KeyValue, Value};
use crate::export::{Signal, Sink};
use crate::trace::{
    intern_scope, now_unix_nano, wire, with_current, BatchConfig, BatchStats, Batcher, Resource,
    Scope, SpanContext,
};

/// Attributes kept per record; more are counted as dropped.
pub const MAX_ATTRIBUTES: usize = 128;

/// An OpenTelemetry severity number, 1 (TRACE) to 24 (FATAL4); 0 is
/// unspecified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Severity(pub u8);

impl Severity {
    pub const UNSPECIFIED: Severity = Severity(0);
    pub const TRACE: Severity = Severity(1);
    pub const DEBUG: Severity = Severity(5);
    pub const INFO: Severity = Severity(9);
    pub const WARN: Severity = Severity(13);
    pub const ERROR: Severity = Severity(17);
    pub const FATAL: Severity = Severity(21);

    /// `TRACE`, `DEBUG2`, `INFO`, `WARN3`, ... as the OpenTelemetry data
    /// model names them; empty when unspecified or out of range.
    pub fn text(self) -> &'static str {
        const NAMES: [&str; 24] = [
            "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
            "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2",
            "ERROR3", "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
        ];
        match self.0 {
            1..=24 => NAMES[usize::from(self.0) - 1],
            _ => "",
        }
    }
}

/// One record to emit, for full control over its fields; see
/// [`Logger::emit_record`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRecord {
    /// When it happened; now if `None`.
    pub time_unix_nano: Option<u64>,
    pub severity: Severity,
    /// The source's own level name; [`Severity::text`] if `None`.
    pub severity_text: Option<Cow<'static, str>>,
    pub body: Option<Value>,
    pub attributes: Vec<KeyValue>,
    /// Makes the record an event.
    pub event_name: Option<Cow<'static, str>>,
    /// The span it belongs to; the current span if `None`.
    pub context: Option<SpanContext>,
}

/// A record on its way to export.
struct LogData {
    scope: &'static Scope,
    time: u64,
    observed: u64,
    severity: Severity,
    severity_text: Cow<'static, str>,
    body: Option<Value>,
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    event_name: Cow<'static, str>,
}

/// How a [`LoggerProvider`] filters and batches.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub resource: Resource,
    /// Records below this severity number are not kept (default 0: all).
    pub min_severity: u8,
    pub batch: BatchConfig,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            resource: Resource::new("unknown_service", []),
            min_severity: 0,
            batch: BatchConfig::default(),
        }
    }
}

struct Shared {
    min_severity: AtomicU8,
    records: Batcher<Box<LogData>>,
    sink: Arc<dyn Sink>,
}

/// The source of loggers; cheap to clone. Records still queued are
/// exported when the last clone (and the last logger) is dropped, or at
/// [`LoggerProvider::shutdown`].
#[derive(Clone)]
pub struct LoggerProvider {
    shared: Arc<Shared>,
}

impl LoggerProvider {
    pub fn new(sink: Arc<dyn Sink>, config: LogConfig) -> LoggerProvider {
        let resource = prost::Message::encode_to_vec(&config.resource.to_otlp());
        let export_sink = Arc::clone(&sink);
        let records = Batcher::new(
            &config.batch,
            "sonde-logs",
            move |batch: &mut Vec<Box<LogData>>| {
                export_sink.send(Signal::Logs, encode_logs(&resource, batch));
            },
        );
        LoggerProvider {
            shared: Arc::new(Shared {
                min_severity: AtomicU8::new(config.min_severity),
                records,
                sink,
            }),
        }
    }

    /// A logger for the instrumentation scope `name`.
    pub fn logger(&self, name: &str) -> Logger {
        Logger {
            scope: intern_scope(name, ""),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Changes the minimum severity of kept records at once (0 keeps all).
    pub fn set_min_severity(&self, severity: u8) {
        self.shared
            .min_severity
            .store(severity.min(24), Ordering::Relaxed);
    }

    pub fn min_severity(&self) -> u8 {
        self.shared.min_severity.load(Ordering::Relaxed)
    }

    /// Queue and export counters of the record processor.
    pub fn stats(&self) -> BatchStats {
        self.shared.records.stats()
    }

    /// Exports every kept record and waits, at most `timeout`, until the
    /// sink has sent them.
    pub fn force_flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared.records.flush(timeout)
            && self
                .shared
                .sink
                .flush(deadline.saturating_duration_since(Instant::now()))
    }

    /// Exports what is queued, stops the processor (later records are
    /// dropped) and waits, at most `timeout`, for the sink to send it.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.shared.records.shutdown();
        self.shared.sink.flush(timeout)
    }
}

impl std::fmt::Debug for LoggerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggerProvider")
            .field("min_severity", &self.min_severity())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Emits records of one instrumentation scope; cheap to clone.
#[derive(Clone)]
pub struct Logger {
    scope: &'static Scope,
    shared: Arc<Shared>,
}

impl Logger {
    /// Whether a record of this severity would be kept.
    #[inline]
    pub fn enabled(&self, severity: Severity) -> bool {
        severity.0 >= self.shared.min_severity.load(Ordering::Relaxed)
    }

    /// Emits a log record in the current span.
    pub fn emit(
        &self,
        severity: Severity,
        body: impl Into<Value>,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) {
        if !self.enabled(severity) {
            return;
        }
        self.push(LogRecord {
            severity,
            body: Some(body.into()),
            attributes: attributes.into_iter().collect(),
            ..LogRecord::default()
        });
    }

    /// Emits an event (severity INFO): a record with `event_name` and the
    /// attribute `event.name` set to `name`. Kept whatever the minimum
    /// severity.
    pub fn event(
        &self,
        name: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) {
        self.push(event_record(name.into(), attributes.into_iter().collect()));
    }

    /// Emits an event for a user and session: [`Logger::event`] with the
    /// attributes `user.id` and `session.id` when given.
    pub fn user_event(
        &self,
        name: impl Into<Cow<'static, str>>,
        user_id: Option<&str>,
        session_id: Option<&str>,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) {
        let mut attrs: Vec<KeyValue> = Vec::new();
        if let Some(u) = user_id {
            attrs.push(KeyValue::new("user.id", u.to_string()));
        }
        if let Some(s) = session_id {
            attrs.push(KeyValue::new("session.id", s.to_string()));
        }
        attrs.extend(attributes);
        self.push(event_record(name.into(), attrs));
    }

    /// Emits a record as given; one without an `event_name` is subject to
    /// the minimum severity.
    pub fn emit_record(&self, record: LogRecord) {
        if record.event_name.is_none() && !self.enabled(record.severity) {
            return;
        }
        self.push(record);
    }

    fn push(&self, r: LogRecord) {
        let observed = now_unix_nano();
        let (trace_id, span_id, flags) = match &r.context {
            Some(cx) => ids(Some(cx)),
            None => with_current(ids),
        };
        let mut attributes = r.attributes;
        let mut dropped_attributes = 0;
        if attributes.len() > MAX_ATTRIBUTES {
            dropped_attributes = (attributes.len() - MAX_ATTRIBUTES) as u32;
            attributes.truncate(MAX_ATTRIBUTES);
        }
        let event_name = r.event_name.unwrap_or(Cow::Borrowed(""));
        if !event_name.is_empty() && !attributes.iter().any(|a| a.key.as_str() == "event.name") {
            attributes.push(KeyValue::new("event.name", event_name.clone()));
        }
        self.shared.records.push(Box::new(LogData {
            scope: self.scope,
            time: r.time_unix_nano.unwrap_or(observed),
            observed,
            severity: r.severity,
            severity_text: r.severity_text.unwrap_or(Cow::Borrowed(r.severity.text())),
            body: r.body,
            attributes,
            dropped_attributes,
            trace_id,
            span_id,
            flags,
            event_name,
        }));
    }
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("scope", &self.scope)
            .finish()
    }
}

fn event_record(name: Cow<'static, str>, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        severity: Severity::INFO,
        attributes,
        event_name: Some(name),
        ..LogRecord::default()
    }
}

fn ids(cx: Option<&SpanContext>) -> ([u8; 16], [u8; 8], u8) {
    match cx {
        Some(cx) if cx.is_valid() => (cx.trace_id, cx.span_id, cx.flags),
        _ => ([0; 16], [0; 8], 0),
    }
}

/// Encodes a batch as an `ExportLogsServiceRequest` body.
fn encode_logs(resource: &[u8], records: &[Box<LogData>]) -> Vec<u8> {
    let mut scopes: Vec<&'static Scope> = Vec::new();
    for r in records {
        if !scopes.iter().any(|s| std::ptr::eq(*s, r.scope)) {
            scopes.push(r.scope);
        }
    }
    let mut buf = Vec::with_capacity(200 * records.len() + resource.len() + 64);
    // ExportLogsServiceRequest.resource_logs
    wire::message(&mut buf, 1, |b| {
        wire::message(b, 1, |b| b.extend_from_slice(resource));
        for scope in scopes {
            // ResourceLogs.scope_logs
            wire::message(b, 2, |b| {
                crate::trace::encode_scope(b, scope);
                for r in records.iter().filter(|r| std::ptr::eq(r.scope, scope)) {
                    // ScopeLogs.log_records
                    wire::message(b, 2, |b| encode_record(b, r));
                }
            });
        }
    });
    buf
}

fn encode_record(b: &mut Vec<u8>, r: &LogData) {
    wire::fixed64(b, 1, r.time);
    wire::uint(b, 2, u64::from(r.severity.0));
    wire::string(b, 3, &r.severity_text);
    if let Some(body) = &r.body {
        wire::message(b, 5, |b| wire::any_value(b, body));
    }
    wire::attributes(b, 6, &r.attributes);
    wire::uint(b, 7, u64::from(r.dropped_attributes));
    wire::fixed32(b, 8, u32::from(r.flags));
    if r.trace_id != [0; 16] {
        wire::bytes(b, 9, &r.trace_id);
        wire::bytes(b, 10, &r.span_id);
    }
    wire::fixed64(b, 11, r.observed);
    wire::string(b, 12, &r.event_name);
}

#[cfg(test)]
mod tests;
