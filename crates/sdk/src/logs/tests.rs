use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::KeyValue as OtlpKv;
use opentelemetry_proto::tonic::logs::v1 as otlp;

use super::*;
use crate::export::MemorySink;
use crate::trace::{TraceConfig, TracerProvider};

fn setup(min: u8) -> (LoggerProvider, Arc<MemorySink>) {
    let sink = MemorySink::new();
    let provider = LoggerProvider::new(
        sink.clone(),
        LogConfig {
            resource: Resource::new("checkout", [KeyValue::new("host.name", "web-1")]),
            min_severity: min,
            batch: BatchConfig {
                interval: Duration::from_secs(3600),
                ..BatchConfig::default()
            },
        },
    );
    (provider, sink)
}

fn records(provider: &LoggerProvider, sink: &MemorySink) -> Vec<otlp::LogRecord> {
    assert!(provider.force_flush(Duration::from_secs(5)));
    let reqs = sink.logs();
    assert_eq!(reqs.len(), sink.batches().len(), "every batch decodes");
    sink.clear();
    reqs.iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| s.log_records.clone())
        .collect()
}

fn attr<'a>(attrs: &'a [OtlpKv], key: &str) -> Option<&'a V> {
    attrs
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn text(v: Option<&V>) -> Option<&str> {
    match v {
        Some(V::StringValue(s)) => Some(s),
        _ => None,
    }
}

#[test]
fn emit_exports_severity_body_attributes_resource_and_scope() {
    let (provider, sink) = setup(0);
    let logger = provider.logger("checkout.db");
    logger.emit(
        Severity::WARN,
        "slow query",
        [KeyValue::new("db.rows", 1200i64)],
    );
    assert!(provider.force_flush(Duration::from_secs(5)));
    let req = &sink.logs()[0];
    let rl = &req.resource_logs[0];
    let res = &rl.resource.as_ref().unwrap().attributes;
    assert_eq!(text(attr(res, "service.name")), Some("checkout"));
    assert_eq!(text(attr(res, "host.name")), Some("web-1"));
    assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "checkout.db");
    let r = &rl.scope_logs[0].log_records[0];
    assert_eq!(r.severity_number, 13);
    assert_eq!(r.severity_text, "WARN");
    assert_eq!(
        r.body.as_ref().unwrap().value,
        Some(V::StringValue("slow query".into()))
    );
    assert_eq!(attr(&r.attributes, "db.rows"), Some(&V::IntValue(1200)));
    assert!(r.trace_id.is_empty() && r.span_id.is_empty());
    assert!(r.event_name.is_empty());
    assert!(r.time_unix_nano > 0 && r.observed_time_unix_nano >= r.time_unix_nano);
}

#[test]
fn records_carry_the_current_span_ids() {
    let (provider, sink) = setup(0);
    let tracing = TracerProvider::new(MemorySink::new(), TraceConfig::default());
    let tracer = tracing.tracer("t");
    let logger = provider.logger("l");
    let cx = tracer.in_span("request", |span| {
        logger.emit(Severity::INFO, "inside", []);
        span.context().clone()
    });
    logger.emit(Severity::INFO, "outside", []);
    // An explicit context wins over the current span.
    let other = SpanContext {
        trace_id: [9; 16],
        span_id: [8; 8],
        flags: 1,
        ..SpanContext::default()
    };
    logger.emit_record(LogRecord {
        severity: Severity::ERROR,
        body: Some("explicit".into()),
        context: Some(other),
        ..LogRecord::default()
    });
    let rs = records(&provider, &sink);
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[0].trace_id, cx.trace_id.to_vec());
    assert_eq!(rs[0].span_id, cx.span_id.to_vec());
    assert_eq!(rs[0].flags & 1, 1);
    assert!(rs[1].trace_id.is_empty());
    assert_eq!(rs[2].trace_id, vec![9; 16]);
    assert_eq!(rs[2].span_id, vec![8; 8]);
}

#[test]
fn events_set_event_name_and_user_and_session() {
    let (provider, sink) = setup(Severity::ERROR.0);
    let logger = provider.logger("web");
    logger.event("cart.add", [KeyValue::new("sku", "A-1")]);
    logger.user_event("checkout.start", Some("u-42"), Some("s-7"), []);
    logger.emit(Severity::INFO, "filtered out", []);
    let rs = records(&provider, &sink);
    assert_eq!(rs.len(), 2, "events pass the severity filter, logs do not");
    assert_eq!(rs[0].event_name, "cart.add");
    assert_eq!(
        text(attr(&rs[0].attributes, "event.name")),
        Some("cart.add")
    );
    assert_eq!(text(attr(&rs[0].attributes, "sku")), Some("A-1"));
    assert_eq!(rs[0].severity_number, 9);
    assert_eq!(rs[1].event_name, "checkout.start");
    assert_eq!(text(attr(&rs[1].attributes, "user.id")), Some("u-42"));
    assert_eq!(text(attr(&rs[1].attributes, "session.id")), Some("s-7"));
    assert_eq!(
        text(attr(&rs[1].attributes, "event.name")),
        Some("checkout.start")
    );
}

#[test]
fn min_severity_changes_at_run_time() {
    let (provider, sink) = setup(0);
    let logger = provider.logger("l");
    logger.emit(Severity::DEBUG, "debug 1", []);
    provider.set_min_severity(Severity::WARN.0);
    assert_eq!(provider.min_severity(), 13);
    assert!(!logger.enabled(Severity::INFO));
    assert!(logger.enabled(Severity::WARN));
    logger.emit(Severity::DEBUG, "debug 2", []);
    logger.emit(Severity::INFO, "info", []);
    logger.emit(Severity::ERROR, "error", []);
    provider.set_min_severity(0);
    logger.emit(Severity::TRACE, "trace", []);
    let bodies: Vec<String> = records(&provider, &sink)
        .iter()
        .filter_map(|r| match r.body.as_ref()?.value.as_ref()? {
            V::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, ["debug 1", "error", "trace"]);
}

#[test]
fn severity_names() {
    assert_eq!(Severity::TRACE.text(), "TRACE");
    assert_eq!(Severity(6).text(), "DEBUG2");
    assert_eq!(Severity::INFO.text(), "INFO");
    assert_eq!(Severity(16).text(), "WARN4");
    assert_eq!(Severity::FATAL.text(), "FATAL");
    assert_eq!(Severity(0).text(), "");
    assert_eq!(Severity(25).text(), "");
}

#[test]
fn full_queue_drops_and_attributes_are_capped() {
    let sink = MemorySink::new();
    let provider = LoggerProvider::new(
        sink.clone(),
        LogConfig {
            batch: BatchConfig {
                queue_capacity: 3,
                max_batch: 100,
                interval: Duration::from_secs(3600),
            },
            ..LogConfig::default()
        },
    );
    let logger = provider.logger("l");
    let many: Vec<KeyValue> = (0..200)
        .map(|i| KeyValue::new(format!("k{i}"), i64::from(i)))
        .collect();
    logger.emit(Severity::INFO, "many", many);
    for _ in 0..5 {
        logger.emit(Severity::INFO, "x", []);
    }
    assert_eq!(provider.stats().dropped, 3);
    let rs = records(&provider, &sink);
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[0].attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(rs[0].dropped_attributes_count, 72);
}
