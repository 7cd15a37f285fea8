use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::KeyValue as OtlpKv;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLog;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::export::MemorySink;
use crate::logs::LogConfig;
use crate::trace::{BatchConfig, TraceConfig};

struct Setup {
    traces: TracerProvider,
    logs: LoggerProvider,
    trace_sink: Arc<MemorySink>,
    log_sink: Arc<MemorySink>,
}

fn setup() -> Setup {
    let batch = BatchConfig {
        interval: Duration::from_secs(3600),
        ..BatchConfig::default()
    };
    let trace_sink = MemorySink::new();
    let log_sink = MemorySink::new();
    Setup {
        traces: TracerProvider::new(
            trace_sink.clone(),
            TraceConfig {
                batch: batch.clone(),
                ..TraceConfig::default()
            },
        ),
        logs: LoggerProvider::new(
            log_sink.clone(),
            LogConfig {
                batch,
                ..LogConfig::default()
            },
        ),
        trace_sink,
        log_sink,
    }
}

impl Setup {
    fn run(&self, f: impl FnOnce()) {
        let subscriber =
            tracing_subscriber::registry().with(SondeLayer::new(&self.traces, &self.logs));
        tracing::subscriber::with_default(subscriber, f);
        assert!(self.traces.force_flush(Duration::from_secs(5)));
        assert!(self.logs.force_flush(Duration::from_secs(5)));
    }

    fn spans(&self) -> Vec<OtlpSpan> {
        self.trace_sink
            .traces()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    fn logs(&self) -> Vec<OtlpLog> {
        self.log_sink
            .logs()
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| s.log_records.clone())
            .collect()
    }
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

fn s(v: &str) -> V {
    V::StringValue(v.to_string())
}

#[test]
fn spans_fields_parents_kind_and_status() {
    let t = setup();
    t.run(|| {
        let outer = tracing::info_span!(
            "request",
            otel.kind = "server",
            http.method = "GET",
            user = 7u64
        );
        let _o = outer.enter();
        let inner = tracing::debug_span!("db", rows = tracing::field::Empty, ok = true);
        inner.record("rows", 12i64);
        inner.in_scope(|| {
            let failing = tracing::info_span!("call", otel.name = "GET /stock", error = "timeout");
            drop(failing);
        });
        let ok = tracing::info_span!("fine", otel.status_code = "OK", ratio = 0.5);
        drop(ok);
    });
    let spans = t.spans();
    assert_eq!(spans.len(), 4);
    let by_name = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let (request, db, call, fine) = (
        by_name("request"),
        by_name("db"),
        by_name("GET /stock"),
        by_name("fine"),
    );
    assert!(request.parent_span_id.is_empty());
    assert_eq!(request.kind, 2);
    assert_eq!(attr(&request.attributes, "http.method"), Some(&s("GET")));
    assert_eq!(attr(&request.attributes, "user"), Some(&V::IntValue(7)));
    assert!(attr(&request.attributes, "otel.kind").is_none());
    assert_eq!(db.parent_span_id, request.span_id);
    assert_eq!(db.trace_id, request.trace_id);
    assert_eq!(attr(&db.attributes, "rows"), Some(&V::IntValue(12)));
    assert_eq!(attr(&db.attributes, "ok"), Some(&V::BoolValue(true)));
    assert_eq!(call.parent_span_id, db.span_id);
    assert_eq!(call.kind, 1);
    let st = call.status.as_ref().unwrap();
    assert_eq!((st.code, st.message.as_str()), (2, "timeout"));
    assert_eq!(fine.parent_span_id, request.span_id);
    assert_eq!(fine.status.as_ref().unwrap().code, 1);
    assert_eq!(attr(&fine.attributes, "ratio"), Some(&V::DoubleValue(0.5)));
}

#[test]
fn events_become_logs_with_span_ids() {
    let t = setup();
    t.run(|| {
        tracing::warn!(retries = 3, "outside any span");
        let span = tracing::info_span!("checkout");
        let _g = span.enter();
        tracing::info!(order = "o-1", "placed {}", 42);
        tracing::info!(
            event.name = "cart.add",
            user.id = "u-1",
            session.id = "s-9",
            sku = "A"
        );
        tracing::error!(err = %std::io::Error::other("boom"), "failed");
    });
    let spans = t.spans();
    let logs = t.logs();
    assert_eq!(logs.len(), 4);
    let body = |l: &OtlpLog| l.body.as_ref().and_then(|b| b.value.clone());

    assert_eq!(logs[0].severity_number, 13);
    assert_eq!(logs[0].severity_text, "WARN");
    assert_eq!(body(&logs[0]), Some(s("outside any span")));
    assert_eq!(attr(&logs[0].attributes, "retries"), Some(&V::IntValue(3)));
    assert!(logs[0].trace_id.is_empty());

    assert_eq!(logs[1].severity_number, 9);
    assert_eq!(body(&logs[1]), Some(s("placed 42")));
    assert_eq!(attr(&logs[1].attributes, "order"), Some(&s("o-1")));
    assert_eq!(logs[1].trace_id, spans[0].trace_id);
    assert_eq!(logs[1].span_id, spans[0].span_id);

    assert_eq!(logs[2].event_name, "cart.add");
    assert_eq!(
        attr(&logs[2].attributes, "event.name"),
        Some(&s("cart.add"))
    );
    assert_eq!(attr(&logs[2].attributes, "user.id"), Some(&s("u-1")));
    assert_eq!(attr(&logs[2].attributes, "session.id"), Some(&s("s-9")));
    assert_eq!(logs[2].span_id, spans[0].span_id);

    assert_eq!(logs[3].severity_number, 17);
    assert_eq!(attr(&logs[3].attributes, "err"), Some(&s("boom")));
}

#[test]
fn min_severity_filters_events_but_not_named_ones() {
    let t = setup();
    t.logs.set_min_severity(Severity::WARN.0);
    t.run(|| {
        tracing::info!("dropped");
        tracing::info!(event.name = "signup", "kept");
        tracing::warn!("kept too");
    });
    let logs = t.logs();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].event_name, "signup");
    assert_eq!(logs[1].severity_number, 13);
}

#[test]
fn sonde_spans_inside_tracing_spans_join_the_trace() {
    let t = setup();
    let tracer = t.traces.tracer("direct");
    t.run(|| {
        let span = tracing::info_span!("outer");
        let _g = span.enter();
        tracer.start("inner").end();
        crate::trace::current().expect("the tracing span is current");
        drop(tracing::info_span!(parent: None, "detached"));
    });
    assert!(crate::trace::current().is_none());
    let spans = t.spans();
    let outer = spans.iter().find(|s| s.name == "outer").unwrap();
    let inner = spans.iter().find(|s| s.name == "inner").unwrap();
    assert_eq!(inner.parent_span_id, outer.span_id);
    assert_eq!(inner.trace_id, outer.trace_id);
    let detached = spans.iter().find(|s| s.name == "detached").unwrap();
    assert!(detached.parent_span_id.is_empty());
    assert_ne!(detached.trace_id, outer.trace_id);
}

#[test]
fn unsampled_spans_still_give_ids_and_follows_from_links() {
    let t = setup();
    t.run(|| {
        let a = tracing::info_span!("a");
        let b = tracing::info_span!("b");
        b.follows_from(&a);
        drop((a, b));
    });
    let spans = t.spans();
    let a = spans.iter().find(|s| s.name == "a").unwrap();
    let b = spans.iter().find(|s| s.name == "b").unwrap();
    assert_eq!(b.links.len(), 1);
    assert_eq!(b.links[0].span_id, a.span_id);

    let t = setup();
    t.traces.set_sampling_ratio(0.0);
    t.run(|| {
        let span = tracing::info_span!("unsampled", field = 1);
        let _g = span.enter();
        tracing::info!("in unsampled span");
    });
    assert!(t.spans().is_empty());
    let logs = t.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        logs[0].trace_id.len(),
        16,
        "ids of an unsampled span still join logs"
    );
    assert_eq!(logs[0].flags & 1, 0);
}
