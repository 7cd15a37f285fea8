//! A `tracing` layer: spans of the `tracing` crate become Sonde spans, and
//! its events become log records (or OpenTelemetry events).
//!
//! - A span's fields become attributes; its parent is its parent in the
//!   `tracing` span tree (or, for a root, the Sonde span current on the
//!   thread). `otel.name` renames it, `otel.kind` (`server`, `client`,
//!   `producer`, `consumer`, `internal`) sets its kind, and `error`,
//!   `otel.status_code` (`OK`/`ERROR`) and `otel.status_message` its status.
//!   Entering a `tracing` span makes its Sonde span current, so spans and
//!   logs emitted through the Sonde API inside it join the trace.
//! - An event's level becomes the severity (TRACE 1, DEBUG 5, INFO 9, WARN 13,
//!   ERROR 17), its `message` the body, its other fields attributes, and the
//!   span it happens in gives the trace and span ids. An event with an
//!   `event.name` field is an OpenTelemetry event.
//!
//! Unsampled spans record no fields; events below the logger's minimum
//! severity are dropped before their fields are visited.

use std::borrow::Cow;
use std::fmt;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::attributes::{Key, KeyValue, Value};
use crate::logs::{LogRecord, Logger, LoggerProvider, Severity};
use crate::trace::{Span, SpanContext, SpanKind, Status, Tracer, TracerProvider};

/// Maps `tracing` spans and events to Sonde spans and log records.
#[derive(Debug, Clone)]
pub struct SondeLayer {
    tracer: Option<Tracer>,
    logger: Option<Logger>,
}

/// The Sonde span of a `tracing` span, kept in its extensions.
struct SondeSpan(Span);

impl SondeLayer {
    /// Spans to `traces`, events to `logs`.
    pub fn new(traces: &TracerProvider, logs: &LoggerProvider) -> SondeLayer {
        SondeLayer {
            tracer: Some(traces.tracer("tracing")),
            logger: Some(logs.logger("tracing")),
        }
    }

    /// Spans only; events are ignored.
    pub fn traces(traces: &TracerProvider) -> SondeLayer {
        SondeLayer {
            tracer: Some(traces.tracer("tracing")),
            logger: None,
        }
    }

    /// Events only; spans still give events their trace ids if another
    /// layer does not.
    pub fn logs(logs: &LoggerProvider) -> SondeLayer {
        SondeLayer {
            tracer: None,
            logger: Some(logs.logger("tracing")),
        }
    }
}

fn severity(level: &Level) -> Severity {
    match *level {
        Level::TRACE => Severity::TRACE,
        Level::DEBUG => Severity::DEBUG,
        Level::INFO => Severity::INFO,
        Level::WARN => Severity::WARN,
        _ => Severity::ERROR,
    }
}

fn context_of<S>(id: &Id, ctx: &Context<'_, S>) -> Option<SpanContext>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.span(id)?;
    let ext = span.extensions();
    ext.get::<SondeSpan>().map(|s| s.0.context().clone())
}

impl<S> Layer<S> for SondeLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(tracer) = &self.tracer else { return };
        let Some(span_ref) = ctx.span(id) else { return };
        let parent = span_ref.parent().and_then(|p| {
            p.extensions()
                .get::<SondeSpan>()
                .map(|s| s.0.context().clone())
        });
        let name = span_ref.metadata().name();
        let mut span = match &parent {
            Some(p) => tracer.start_with_parent(name, p),
            // `parent: None` in the macro: a new trace, whatever is current.
            None if attrs.is_root() => tracer.start_root(name),
            None => tracer.start(name),
        };
        if span.is_recording() {
            attrs.record(&mut SpanFields { span: &mut span });
        }
        span_ref.extensions_mut().insert(SondeSpan(span));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(SondeSpan(s)) = ext.get_mut::<SondeSpan>() {
            if s.is_recording() {
                values.record(&mut SpanFields { span: s });
            }
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let Some(other) = context_of(follows, &ctx) else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(SondeSpan(s)) = ext.get_mut::<SondeSpan>() {
            s.add_link(other, []);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(cx) = context_of(id, &ctx) {
            crate::trace::push(cx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let ext = span.extensions();
        if let Some(SondeSpan(s)) = ext.get::<SondeSpan>() {
            crate::trace::exit(s.context().span_id);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let taken = span.extensions_mut().remove::<SondeSpan>();
        if let Some(SondeSpan(s)) = taken {
            s.end();
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(logger) = &self.logger else { return };
        let meta = event.metadata();
        let severity = severity(meta.level());
        // An event with `event.name` passes whatever the minimum severity.
        let named = meta.fields().field("event.name").is_some();
        if !named && !logger.enabled(severity) {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let context = ctx.event_span(event).and_then(|s| {
            s.extensions()
                .get::<SondeSpan>()
                .map(|s| s.0.context().clone())
        });
        logger.emit_record(LogRecord {
            severity,
            severity_text: Some(Cow::Borrowed(meta.level().as_str())),
            body: fields.message.map(Value::from),
            attributes: fields.attributes,
            event_name: fields.event_name.map(Cow::Owned),
            context,
            ..LogRecord::default()
        });
    }
}

/// Fields of a recording span.
struct SpanFields<'a> {
    span: &'a mut Span,
}

impl SpanFields<'_> {
    fn set(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("otel.name", v) => self.span.set_name(v.as_str().into_owned()),
            ("otel.kind", v) => {
                if let Some(kind) = SpanKind::parse(&v.as_str()) {
                    self.span.set_kind(kind);
                }
            }
            ("otel.status_code", v) => match v.as_str().to_ascii_uppercase().as_str() {
                "OK" => self.span.set_status(Status::Ok),
                "ERROR" => self.span.set_status(Status::Error(Cow::Borrowed(""))),
                _ => {}
            },
            ("otel.status_message", v) => {
                self.span
                    .set_status(Status::Error(v.as_str().into_owned().into()));
            }
            ("error", Value::Bool(false)) => {}
            ("error", Value::Bool(true)) => self.span.set_status(Status::Error(Cow::Borrowed(""))),
            ("error", v) => {
                let message = v.as_str().into_owned();
                self.span
                    .set_attribute(KeyValue::new("error", message.clone()));
                self.span.set_status(Status::Error(message.into()));
            }
            (name, v) => self.span.set_attribute(KeyValue {
                key: Key::from_static(name),
                value: v,
            }),
        }
    }
}

impl Visit for SpanFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, u64_value(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }
}

/// A `u64` as an attribute: an integer when it fits, else a string.
fn u64_value(v: u64) -> Value {
    i64::try_from(v).map_or_else(|_| Value::from(v.to_string()), Value::I64)
}

/// Fields of an event.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    event_name: Option<String>,
    attributes: Vec<KeyValue>,
}

impl EventFields {
    fn set(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => self.message = Some(value.as_str().into_owned()),
            "event.name" => {
                let name = value.as_str().into_owned();
                self.event_name = Some(name);
            }
            name => self.attributes.push(KeyValue {
                key: Key::from_static(name),
                value,
            }),
        }
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, u64_value(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests;
