use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1 as otlp;

use super::*;
use crate::attributes::{KeyValue, Value};
use crate::export::MemorySink;

fn setup(ratio: f64) -> (TracerProvider, Arc<MemorySink>) {
    let sink = MemorySink::new();
    let provider = TracerProvider::new(
        sink.clone(),
        TraceConfig {
            resource: Resource::new("checkout", [KeyValue::new("host.name", "web-1")]),
            sampling_ratio: ratio,
            batch: BatchConfig {
                interval: Duration::from_secs(3600),
                ..BatchConfig::default()
            },
        },
    );
    (provider, sink)
}

fn exported(provider: &TracerProvider, sink: &MemorySink) -> Vec<ExportTraceServiceRequest> {
    assert!(provider.force_flush(Duration::from_secs(5)));
    let reqs = sink.traces();
    assert_eq!(reqs.len(), sink.batches().len(), "every batch decodes");
    sink.clear();
    reqs
}

fn spans(reqs: &[ExportTraceServiceRequest]) -> Vec<otlp::Span> {
    reqs.iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<Value> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let v = attrs
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        V::StringValue(s) => Value::from(s.clone()),
        V::IntValue(i) => Value::I64(*i),
        V::DoubleValue(f) => Value::F64(*f),
        V::BoolValue(b) => Value::Bool(*b),
        _ => return None,
    })
}

#[test]
fn exported_request_has_resource_scope_and_span_fields() {
    let (provider, sink) = setup(1.0);
    let tracer = provider.versioned_tracer("checkout.http", "1.2.3");
    let mut span = tracer.start("GET /cart");
    span.set_kind(SpanKind::Server);
    span.set_attribute(KeyValue::new("http.method", "GET"));
    span.set_attribute(KeyValue::new("http.status_code", 200i64));
    span.set_attribute(KeyValue::new("http.status_code", 500i64));
    span.add_event("cache.miss", [KeyValue::new("key", "cart:7")]);
    let linked = SpanContext {
        trace_id: [7; 16],
        span_id: [8; 8],
        flags: FLAG_SAMPLED,
        trace_state: TraceState::EMPTY,
        is_remote: true,
    };
    span.add_link(linked, [KeyValue::new("why", "batch")]);
    span.record_error(&std::io::Error::other("disk on fire"));
    let cx = span.context().clone();
    span.end();

    let reqs = exported(&provider, &sink);
    assert_eq!(reqs.len(), 1);
    let rs = &reqs[0].resource_spans[0];
    let res = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(attr(res, "service.name"), Some(Value::from("checkout")));
    assert_eq!(attr(res, "host.name"), Some(Value::from("web-1")));
    let scope = rs.scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("checkout.http", "1.2.3")
    );
    let s = &rs.scope_spans[0].spans[0];
    assert_eq!(s.name, "GET /cart");
    assert_eq!(s.trace_id, cx.trace_id.to_vec());
    assert_eq!(s.span_id, cx.span_id.to_vec());
    assert!(s.parent_span_id.is_empty());
    assert_eq!(s.kind, otlp::span::SpanKind::Server as i32);
    assert_eq!(s.trace_state, "ot=th:0");
    assert_eq!(s.flags, 0x100 | 0x03);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(s.start_time_unix_nano.abs_diff(now) < 60_000_000_000);
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    assert_eq!(s.attributes.len(), 2);
    assert_eq!(attr(&s.attributes, "http.method"), Some(Value::from("GET")));
    assert_eq!(
        attr(&s.attributes, "http.status_code"),
        Some(Value::I64(500))
    );
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.events[0].name, "cache.miss");
    assert_eq!(
        attr(&s.events[0].attributes, "key"),
        Some(Value::from("cart:7"))
    );
    assert_eq!(s.events[1].name, "exception");
    assert_eq!(
        attr(&s.events[1].attributes, "exception.message"),
        Some(Value::from("disk on fire"))
    );
    assert_eq!(s.links.len(), 1);
    assert_eq!(s.links[0].trace_id, vec![7; 16]);
    assert_eq!(s.links[0].flags, 0x301);
    let status = s.status.as_ref().unwrap();
    assert_eq!(status.code, otlp::status::StatusCode::Error as i32);
    assert_eq!(status.message, "disk on fire");
}

#[test]
fn children_of_the_current_span_and_of_explicit_parents() {
    let (provider, sink) = setup(1.0);
    let tracer = provider.tracer("t");
    let (root_cx, child_cx, grandchild_cx) = tracer.in_span("root", |root| {
        let root_cx = root.context().clone();
        let (child_cx, grandchild_cx) = tracer.in_span("child", |child| {
            let g = tracer.start("grandchild");
            (child.context().clone(), g.context().clone())
        });
        assert_eq!(current().unwrap().span_id, root_cx.span_id);
        (root_cx, child_cx, grandchild_cx)
    });
    assert!(current().is_none());
    // Across threads, by context.
    let t2 = tracer.clone();
    let rc = root_cx.clone();
    let other =
        std::thread::spawn(move || t2.start_with_parent("other thread", &rc).context().clone())
            .join()
            .unwrap();
    let fresh = tracer.start("fresh").context().clone();

    let all = spans(&exported(&provider, &sink));
    let by_id = |cx: &SpanContext| {
        all.iter()
            .find(|s| s.span_id == cx.span_id.to_vec())
            .unwrap()
    };
    assert_eq!(all.len(), 5);
    assert!(by_id(&root_cx).parent_span_id.is_empty());
    assert_eq!(by_id(&child_cx).parent_span_id, root_cx.span_id.to_vec());
    assert_eq!(
        by_id(&grandchild_cx).parent_span_id,
        child_cx.span_id.to_vec()
    );
    assert_eq!(by_id(&other).parent_span_id, root_cx.span_id.to_vec());
    for cx in [&child_cx, &grandchild_cx, &other] {
        assert_eq!(cx.trace_id, root_cx.trace_id);
        assert_eq!(by_id(cx).trace_id, root_cx.trace_id.to_vec());
    }
    assert_ne!(fresh.trace_id, root_cx.trace_id);
    assert!(by_id(&fresh).parent_span_id.is_empty());
}

#[test]
fn remote_parent_sets_the_remote_flag_and_inherits_trace_state() {
    let (provider, sink) = setup(1.0);
    let parent = crate::propagation::extract(|k| match k {
        "traceparent" => Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "tracestate" => Some("ot=th:8,rojo=1"),
        _ => None,
    })
    .unwrap();
    let span = provider.tracer("t").start_with_parent("handle", &parent);
    assert_eq!(span.context().trace_state.as_str(), "ot=th:8,rojo=1");
    drop(span);
    let s = &spans(&exported(&provider, &sink))[0];
    assert_eq!(hex(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&s.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(s.flags, 0x301);
    assert_eq!(s.trace_state, "ot=th:8,rojo=1");
}

#[test]
fn unsampled_spans_propagate_but_record_nothing() {
    let (provider, sink) = setup(0.0);
    let tracer = provider.tracer("t");
    let mut span = tracer.start("dropped");
    assert!(!span.is_recording());
    assert!(span.context().is_valid());
    assert!(!span.context().is_sampled());
    span.set_attribute(KeyValue::new("a", 1i64));
    let child = {
        let _g = span.enter();
        tracer.start("child")
    };
    assert!(!child.is_recording());
    assert_eq!(child.context().trace_id, span.context().trace_id);
    let mut headers = Vec::new();
    crate::propagation::inject(child.context(), &mut |k: &str, v: &str| {
        headers.push((k.to_string(), v.to_string()))
    });
    assert_eq!(headers.len(), 1);
    assert!(headers[0].1.ends_with("-02"));
    // A sampled remote parent is followed even at ratio 0.
    let sampled_parent = SpanContext {
        trace_id: [1; 16],
        span_id: [2; 8],
        flags: FLAG_SAMPLED,
        trace_state: TraceState::EMPTY,
        is_remote: true,
    };
    assert!(tracer
        .start_with_parent("x", &sampled_parent)
        .is_recording());
    drop((span, child));
    assert_eq!(spans(&exported(&provider, &sink)).len(), 1);
}

#[test]
fn sampling_ratio_changes_at_run_time() {
    let (provider, sink) = setup(1.0);
    let tracer = provider.tracer("t");
    provider.set_sampling_ratio(0.25);
    assert!((provider.sampling_ratio() - 0.25).abs() < 1e-12);
    let n = 20_000;
    let mut recorded = 0;
    for _ in 0..n {
        let span = tracer.start("s");
        if span.is_recording() {
            recorded += 1;
            assert_eq!(span.context().trace_state.as_str(), "ot=th:c");
        }
    }
    let frac = f64::from(recorded) / f64::from(n);
    assert!((frac - 0.25).abs() < 0.02, "{frac}");
    let all = spans(&exported(&provider, &sink));
    assert_eq!(all.len(), recorded as usize);
    provider.set_sampling_ratio(0.0);
    assert!(!tracer.start("s").is_recording());
}

#[test]
fn full_queue_drops_and_counts() {
    let sink = MemorySink::new();
    let provider = TracerProvider::new(
        sink.clone(),
        TraceConfig {
            batch: BatchConfig {
                queue_capacity: 4,
                max_batch: 1000,
                interval: Duration::from_secs(3600),
            },
            ..TraceConfig::default()
        },
    );
    let tracer = provider.tracer("t");
    for _ in 0..10 {
        tracer.start("s").end();
    }
    let st = provider.stats();
    assert_eq!((st.queued, st.dropped), (4, 6));
    assert_eq!(spans(&exported(&provider, &sink)).len(), 4);
}

#[test]
fn batches_are_at_most_512_spans_and_shutdown_exports_the_rest() {
    let (provider, sink) = setup(1.0);
    let tracer = provider.tracer("t");
    for i in 0..1100 {
        let mut s = tracer.start("s");
        s.set_attribute(KeyValue::new("i", i64::from(i)));
    }
    let reqs = exported(&provider, &sink);
    let sizes: Vec<usize> = reqs
        .iter()
        .map(|r| r.resource_spans[0].scope_spans[0].spans.len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 1100);
    assert!(sizes.iter().all(|&n| n <= 512), "{sizes:?}");
    tracer.start("last").end();
    assert!(provider.shutdown(Duration::from_secs(5)));
    assert_eq!(sink.batches().len(), 1);
    tracer.start("after").end();
    assert_eq!(provider.stats().dropped, 1);
}

#[test]
fn status_ok_is_final_and_limits_hold() {
    let (provider, sink) = setup(1.0);
    let mut span = provider.tracer("t").start("s");
    span.set_status(Status::Ok);
    span.set_status(Status::Error("late".into()));
    for i in 0..(MAX_ATTRIBUTES as i64 + 5) {
        span.set_attribute(KeyValue::new(format!("k{i}"), i));
    }
    for _ in 0..(MAX_EVENTS + 3) {
        span.add_event("e", []);
    }
    drop(span);
    let s = &spans(&exported(&provider, &sink))[0];
    assert_eq!(
        s.status.as_ref().unwrap().code,
        otlp::status::StatusCode::Ok as i32
    );
    assert_eq!(s.attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(s.dropped_attributes_count, 5);
    assert_eq!(s.dropped_events_count, 3);
}

#[test]
fn scopes_are_interned() {
    assert!(std::ptr::eq(intern_scope("a", "1"), intern_scope("a", "1")));
    assert!(!std::ptr::eq(
        intern_scope("a", "1"),
        intern_scope("a", "2")
    ));
}
