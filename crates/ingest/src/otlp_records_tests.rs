use std::path::PathBuf;

use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLog, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use sonde_model::records::attribute;

use super::*;

const T0: u64 = 1_700_000_000_000_000_000;

/// An official OTLP JSON example from shared/ (beside the work tree, or
/// `SONDE_SHARED`); a test fails when it is missing.
fn example(name: &str) -> Option<Vec<u8>> {
    let dir = match std::env::var_os("SONDE_SHARED") {
        Some(s) => PathBuf::from(s).join("data/otlp-examples"),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/otlp-examples")
        }
    };
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => panic!(
            "{}: {e}: the tests need the shared folder beside the work tree, or SONDE_SHARED",
            path.display()
        ),
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn int(i: i64) -> any_value::Value {
    any_value::Value::IntValue(i)
}

fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}

fn span(name: &str, trace: u8, id: u8, parent: Option<u8>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_000,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(vec![kv("service.name", s("checkout"))]),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(records: Vec<OtlpLog>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(vec![kv("host.id", s("i-123"))]),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn one_span_with_attrs(attrs: Vec<KeyValue>, limits: &RecordLimits) -> (SpanRecord, u64) {
    let mut sp = span("a", 1, 2, None);
    sp.attributes = attrs;
    let mut batch = convert_traces(&traces(vec![sp]), limits);
    assert_eq!(batch.rejected, 0, "{:?}", batch.first_rejection);
    (batch.spans.remove(0), batch.truncated)
}

#[test]
fn official_trace_example_decodes_and_converts() {
    let Some(body) = example("trace.json") else {
        return;
    };
    let req = decode_traces_json(&body).unwrap();
    let batch = convert_traces(&req, &RecordLimits::default());
    assert_eq!((batch.rejected, batch.spans.len()), (0, 1));
    let sp = &batch.spans[0];
    assert_eq!(sp.trace_id.to_hex(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(sp.span_id.to_hex(), "eee19b7ec3c1b174");
    assert_eq!(sp.parent_span_id.unwrap().to_hex(), "eee19b7ec3c1b173");
    assert_eq!(sp.name, "I'm a server span");
    assert_eq!(sp.start_ns, 1_544_712_660_000_000_000);
    assert_eq!(sp.duration_ns(), 1_000_000_000);
    assert_eq!(sp.kind, SpanKind::Server);
    assert_eq!(
        attribute(&sp.attributes, "my.span.attr"),
        Some(&AttrValue::Str("some value".into()))
    );
    assert_eq!(sp.origin.service, "my.service");
    assert_eq!(sp.origin.host, "");
    assert_eq!(
        (
            sp.origin.scope_name.as_str(),
            sp.origin.scope_version.as_str()
        ),
        ("my.library", "1.0.0")
    );
}

#[test]
fn official_logs_example_decodes_and_converts() {
    let Some(body) = example("logs.json") else {
        return;
    };
    let req = decode_logs_json(&body).unwrap();
    let batch = convert_logs(&req, &RecordLimits::default(), 42);
    assert_eq!((batch.rejected, batch.logs.len()), (0, 1));
    let l = &batch.logs[0];
    assert_eq!(
        (l.time_ns, l.observed_ns),
        (1_544_712_660_300_000_000, 1_544_712_660_300_000_000)
    );
    assert_eq!(
        (l.severity_number, l.severity_text.as_str()),
        (10, "Information")
    );
    assert_eq!(l.body, "Example log record");
    assert_eq!(l.event_name, "");
    assert_eq!(
        l.trace_id.unwrap().to_hex(),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(l.span_id.unwrap().to_hex(), "eee19b7ec3c1b174");
    let a = |k| attribute(&l.attributes, k).cloned();
    assert_eq!(
        a("string.attribute"),
        Some(AttrValue::Str("some string".into()))
    );
    assert_eq!(a("boolean.attribute"), Some(AttrValue::Bool(true)));
    assert_eq!(a("int.attribute"), Some(AttrValue::Int(10)));
    assert_eq!(a("double.attribute"), Some(AttrValue::Double(637.704)));
    assert_eq!(
        a("array.attribute"),
        Some(AttrValue::Json(r#"["many","values"]"#.into()))
    );
    assert_eq!(
        a("map.attribute"),
        Some(AttrValue::Json(r#"{"some.map.key":"some value"}"#.into()))
    );
    assert_eq!(l.origin.service, "my.service");
}

#[test]
fn official_events_example_decodes_and_converts() {
    let Some(body) = example("events.json") else {
        return;
    };
    let req = decode_logs_json(&body).unwrap();
    let batch = convert_logs(&req, &RecordLimits::default(), 42);
    assert_eq!((batch.rejected, batch.logs.len()), (0, 1));
    let l = &batch.logs[0];
    assert_eq!(l.event_name, "browser.page_view");
    assert_eq!((l.trace_id, l.span_id), (None, None));
    assert_eq!(
        l.body,
        r#"{"type":0,"url":"https://www.guidgenerator.com/online-guid-generator.aspx","referrer":"https://wwww.google.com","title":"Free Online GUID Generator"}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(&l.body).unwrap();
    assert_eq!(parsed["type"], 0);
}

#[test]
fn json_dialect_follows_the_otlp_mapping() {
    // Lower-case hex, int64 as a JSON number, an unknown key, enum as int.
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
        "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
        "name":"x","startTimeUnixNano":1000,"endTimeUnixNano":"2000","kind":3,
        "status":{"code":2,"message":"boom"},"someFutureField":{"a":1},
        "events":[{"timeUnixNano":"1500","name":"e"}],
        "attributes":[{"key":"b","value":{"bytesValue":"AAH/"}},{"key":"e","value":{}}]
    }]}]}]}"#;
    let batch = convert_traces(&decode_traces_json(body).unwrap(), &RecordLimits::default());
    assert_eq!(batch.rejected, 0, "{:?}", batch.first_rejection);
    let sp = &batch.spans[0];
    assert_eq!(sp.trace_id.to_hex(), "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(
        (sp.start_ns, sp.end_ns, sp.kind),
        (1000, 2000, SpanKind::Client)
    );
    assert_eq!(
        (sp.status, sp.status_message.as_str()),
        (StatusCode::Error, "boom")
    );
    assert_eq!(sp.events[0].time_ns, 1500);
    assert_eq!(
        sp.attributes,
        vec![("b".into(), AttrValue::Bytes(vec![0, 1, 255]))]
    );
    assert_eq!(sp.origin.service, UNKNOWN_SERVICE);
    // Not OTLP/JSON, so refused as a whole: enum names, non-hex ids.
    let named_kind =
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#;
    assert!(matches!(
        decode_traces_json(named_kind),
        Err(Error::Json(_))
    ));
    let bad_hex = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#;
    assert!(matches!(decode_traces_json(bad_hex), Err(Error::Json(_))));
}

#[test]
fn protobuf_round_trip_keeps_nested_spans_events_and_links() {
    let mut root = span("GET /cart", 7, 1, None);
    root.kind = 2;
    root.trace_state = "vendor=x".into();
    root.flags = 0x301;
    root.status = Some(Status {
        code: 1,
        message: String::new(),
    });
    let mut child = span("SELECT", 7, 2, Some(1));
    child.start_time_unix_nano = T0 + 10;
    child.end_time_unix_nano = T0 + 20;
    child.events = vec![span::Event {
        time_unix_nano: T0 + 15,
        name: "retry".into(),
        attributes: vec![kv("attempt", int(2))],
        ..Default::default()
    }];
    child.links = vec![
        span::Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "a=b".into(),
            attributes: vec![kv("link.kind", s("follows"))],
            ..Default::default()
        },
        // Invalid ids: the link goes, the span stays.
        span::Link {
            trace_id: vec![9; 3],
            span_id: vec![8; 8],
            ..Default::default()
        },
    ];
    let mut grandchild = span("fetch", 7, 3, Some(2));
    grandchild.parent_span_id = vec![2; 8];
    let mut req = traces(vec![root, child, grandchild]);
    req.resource_spans[0].scope_spans[0].scope = Some(InstrumentationScope {
        name: "lib".into(),
        version: "2".into(),
        ..Default::default()
    });
    let bytes = req.encode_to_vec();
    let decoded = decode_traces_proto(&bytes).unwrap();
    assert_eq!(decoded, req);
    let batch = convert_traces(&decoded, &RecordLimits::default());
    assert_eq!(
        (batch.rejected, batch.spans.len(), batch.truncated),
        (0, 3, 1)
    );
    let [root, child, grandchild] = &batch.spans[..] else {
        unreachable!()
    };
    assert_eq!(root.parent_span_id, None);
    assert_eq!(
        (root.kind, root.status, root.flags),
        (SpanKind::Server, StatusCode::Ok, 0x301)
    );
    assert_eq!(root.trace_state, "vendor=x");
    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert_eq!(grandchild.parent_span_id, Some(child.span_id));
    assert_eq!(child.events.len(), 1);
    assert_eq!(child.events[0].time_ns, (T0 + 15) as i64);
    assert_eq!(
        child.events[0].attributes,
        vec![("attempt".into(), AttrValue::Int(2))]
    );
    assert_eq!(child.links.len(), 1);
    assert_eq!(child.links[0].trace_id, TraceId([9; 16]));
    assert_eq!(child.links[0].trace_state, "a=b");
    // One origin per resource + scope, shared.
    assert!(Arc::ptr_eq(&root.origin, &grandchild.origin));
    assert_eq!(root.origin.service, "checkout");
    assert_eq!(root.origin.scope_name, "lib");
}

#[test]
fn spans_with_bad_ids_or_times_are_rejected_with_the_reason() {
    let mut short_trace = span("short", 1, 1, None);
    short_trace.trace_id = vec![1, 2, 3];
    let zero_span = span("zero", 1, 0, None);
    let mut no_trace = span("none", 1, 1, None);
    no_trace.trace_id.clear();
    let bad_parent = span("parent", 1, 1, None);
    let mut bad_parent = bad_parent;
    bad_parent.parent_span_id = vec![1; 4];
    let mut backwards = span("backwards", 1, 1, None);
    backwards.end_time_unix_nano = T0 - 1;
    let mut huge_time = span("future", 1, 1, None);
    huge_time.end_time_unix_nano = u64::MAX;
    let zero_parent = span("zero parent is root", 1, 5, Some(0));
    let ok = span("ok", 1, 6, Some(5));
    let spans = vec![
        short_trace,
        zero_span,
        no_trace,
        bad_parent,
        backwards,
        huge_time,
        zero_parent,
        ok,
    ];
    let batch = convert_traces(&traces(spans.clone()), &RecordLimits::default());
    assert_eq!(batch.rejected, 6);
    assert_eq!(batch.spans.len(), 2);
    assert_eq!(batch.spans[0].parent_span_id, None);
    assert_eq!(
        batch.first_rejection.as_deref(),
        Some("span 'short': invalid trace id (length 3)")
    );
    let reason = |i: usize| {
        convert_traces(&traces(vec![spans[i].clone()]), &RecordLimits::default())
            .first_rejection
            .unwrap()
    };
    assert_eq!(reason(1), "span 'zero': invalid span id (all zero)");
    assert_eq!(reason(2), "span 'none': missing trace id");
    assert_eq!(
        reason(3),
        "span 'parent': invalid parent span id (length 4)"
    );
    assert!(reason(4).contains("is before start time"), "{}", reason(4));
    assert!(reason(5).contains("out of range"), "{}", reason(5));
}

#[test]
fn long_values_are_cut_at_a_char_boundary_with_the_marker() {
    let limits = RecordLimits {
        max_attribute_value_bytes: 20,
        ..Default::default()
    };
    let attrs = vec![
        kv("short", s("fits")),
        kv("ascii", s(&"a".repeat(50))),
        // 'é' is 2 bytes: a cut at byte 6 would split one.
        kv("utf8", s(&"é".repeat(30))),
        kv("bytes", any_value::Value::BytesValue(vec![7; 50])),
        kv(
            "array",
            any_value::Value::ArrayValue(ArrayValue {
                values: (0..20)
                    .map(|i| AnyValue {
                        value: Some(int(i)),
                    })
                    .collect(),
            }),
        ),
    ];
    let (sp, truncated) = one_span_with_attrs(attrs, &limits);
    assert_eq!(truncated, 4);
    let text = |k| attribute(&sp.attributes, k).unwrap().as_text().into_owned();
    assert_eq!(text("short"), "fits");
    assert_eq!(
        text("ascii"),
        format!("{}{TRUNCATION_MARKER}", "a".repeat(6))
    );
    assert_eq!(
        text("utf8"),
        format!("{}{TRUNCATION_MARKER}", "é".repeat(3))
    );
    for k in ["ascii", "utf8", "array"] {
        assert!(
            text(k).len() <= 20 && text(k).ends_with(TRUNCATION_MARKER),
            "{k}"
        );
    }
    let Some(AttrValue::Bytes(b)) = attribute(&sp.attributes, "bytes") else {
        panic!("bytes kept as bytes")
    };
    assert_eq!(b.len(), 20);
    assert!(b.ends_with(TRUNCATION_MARKER.as_bytes()));
    // Cut JSON is not JSON any more, so it is kept as a string.
    assert!(matches!(
        attribute(&sp.attributes, "array"),
        Some(AttrValue::Str(_))
    ));
    // A limit below the marker's length: the marker alone.
    let tiny = RecordLimits {
        max_attribute_value_bytes: 3,
        ..Default::default()
    };
    let (sp, _) = one_span_with_attrs(vec![kv("k", s("abcdef"))], &tiny);
    assert_eq!(sp.attributes[0].1, AttrValue::Str(TRUNCATION_MARKER.into()));
}

#[test]
fn too_many_attributes_keep_the_first_ones() {
    let attrs: Vec<KeyValue> = (0..200).map(|i| kv(&format!("k{i}"), int(i))).collect();
    let (sp, truncated) = one_span_with_attrs(attrs, &RecordLimits::default());
    assert_eq!(sp.attributes.len(), 128);
    assert_eq!(truncated, 72);
    assert_eq!(sp.attributes[0], ("k0".into(), AttrValue::Int(0)));
    assert_eq!(sp.attributes[127], ("k127".into(), AttrValue::Int(127)));
    assert_eq!(
        attribute(&sp.attributes, "otel.dropped_attributes_count"),
        None
    );
}

#[test]
fn empty_values_and_repeated_keys_are_skipped() {
    let mut attrs = vec![
        KeyValue {
            key: "empty".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
        KeyValue {
            key: "absent".into(),
            value: None,
            ..Default::default()
        },
        kv("", s("no key")),
        kv("dup", s("first")),
        kv("dup", s("second")),
        kv("blank", s("")),
    ];
    // Enough to take the set-based path for repeated keys too.
    attrs.extend((0..20).map(|i| kv("many", int(i))));
    let (sp, truncated) = one_span_with_attrs(attrs, &RecordLimits::default());
    assert_eq!(truncated, 0);
    assert_eq!(
        sp.attributes,
        vec![
            ("dup".into(), AttrValue::Str("first".into())),
            ("blank".into(), AttrValue::Str(String::new())),
            ("many".into(), AttrValue::Int(0)),
        ]
    );
}

#[test]
fn arrays_and_kvlists_become_nested_json() {
    let nested = any_value::Value::KvlistValue(KeyValueList {
        values: vec![
            kv("z", int(1)),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a\"b")),
                        },
                        AnyValue {
                            value: Some(any_value::Value::DoubleValue(f64::NAN)),
                        },
                        AnyValue {
                            value: Some(any_value::Value::BoolValue(false)),
                        },
                        AnyValue { value: None },
                    ],
                }),
            ),
            kv("a", any_value::Value::BytesValue(vec![0xab])),
            kv("z", int(2)),
        ],
    });
    let (sp, _) = one_span_with_attrs(vec![kv("obj", nested)], &RecordLimits::default());
    let Some(AttrValue::Json(json)) = attribute(&sp.attributes, "obj") else {
        panic!("json expected: {:?}", sp.attributes)
    };
    assert_eq!(json, r#"{"z":1,"list":["a\"b","NaN",false,null],"a":"ab"}"#);
    assert!(serde_json::from_str::<serde_json::Value>(json).is_ok());
}

#[test]
fn events_and_links_are_capped() {
    let limits = RecordLimits {
        max_events_per_span: 2,
        max_links_per_span: 1,
        ..Default::default()
    };
    let mut sp = span("busy", 1, 1, None);
    sp.events = (0..5)
        .map(|i| span::Event {
            name: format!("e{i}"),
            time_unix_nano: T0,
            ..Default::default()
        })
        .collect();
    sp.links = (1..4)
        .map(|i| span::Link {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            ..Default::default()
        })
        .collect();
    let batch = convert_traces(&traces(vec![sp]), &limits);
    let sp = &batch.spans[0];
    assert_eq!(
        sp.events
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["e0", "e1"]
    );
    assert_eq!(sp.links.len(), 1);
    assert_eq!(batch.truncated, 3 + 2);
}

#[test]
fn origins_follow_the_resource() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(vec![
                    kv("service.name", int(3)),
                    kv("host.id", s("i-1")),
                    kv("host.name", s("web-1")),
                ]),
                scope_spans: vec![
                    ScopeSpans {
                        spans: vec![span("a", 1, 1, None)],
                        ..Default::default()
                    },
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "other".into(),
                            ..Default::default()
                        }),
                        spans: vec![span("b", 1, 2, None)],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![span("c", 1, 3, None)],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    let batch = convert_traces(&req, &RecordLimits::default());
    let [a, b, c] = &batch.spans[..] else {
        panic!("{batch:?}")
    };
    // A service.name that is not a string does not count.
    assert_eq!(a.origin.service, UNKNOWN_SERVICE);
    assert_eq!(a.origin.host, "web-1");
    assert_eq!(a.origin.resource.len(), 3);
    assert!(!Arc::ptr_eq(&a.origin, &b.origin));
    assert_eq!(b.origin.scope_name, "other");
    assert_eq!(
        (c.origin.service.as_str(), c.origin.host.as_str()),
        (UNKNOWN_SERVICE, "")
    );
}

#[test]
fn log_bodies_events_times_and_ids() {
    let kvlist_body = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("user", s("ann")), kv("n", int(3))],
        })),
    };
    let records = vec![
        OtlpLog {
            time_unix_nano: 5,
            observed_time_unix_nano: 6,
            severity_number: 17,
            body: Some(kvlist_body),
            event_name: "app.login".into(),
            attributes: vec![kv("user.id", s("u1")), kv("session.id", s("s1"))],
            trace_id: vec![1; 16],
            span_id: vec![0; 8],
            flags: 1,
            ..Default::default()
        },
        OtlpLog {
            observed_time_unix_nano: 6,
            severity_number: 99,
            body: Some(AnyValue {
                value: Some(int(42)),
            }),
            attributes: vec![kv("event.name", s("legacy.event"))],
            ..Default::default()
        },
        OtlpLog {
            body: Some(AnyValue {
                value: Some(s(&"x".repeat(100))),
            }),
            ..Default::default()
        },
        OtlpLog {
            span_id: vec![1; 5],
            ..Default::default()
        },
    ];
    let limits = RecordLimits {
        max_body_bytes: 30,
        ..Default::default()
    };
    let batch = convert_logs(&logs(records), &limits, 1_000);
    assert_eq!(batch.rejected, 1);
    assert_eq!(
        batch.first_rejection.as_deref(),
        Some("log record: invalid span id (length 5)")
    );
    let [first, legacy, long] = &batch.logs[..] else {
        panic!("{batch:?}")
    };
    assert_eq!(first.body, r#"{"user":"ann","n":3}"#);
    assert_eq!(first.event_name, "app.login");
    assert_eq!((first.time_ns, first.observed_ns), (5, 6));
    assert_eq!(
        (first.trace_id, first.span_id),
        (Some(TraceId([1; 16])), None)
    );
    assert_eq!((first.severity_number, first.flags), (17, 1));
    assert_eq!(
        attribute(&first.attributes, "user.id"),
        Some(&AttrValue::Str("u1".into()))
    );
    assert!(attribute(&first.attributes, "session.id").is_some());
    assert_eq!(first.origin.host, "i-123");
    assert_eq!(legacy.body, "42");
    assert_eq!(legacy.event_name, "legacy.event");
    assert!(attribute(&legacy.attributes, "event.name").is_some());
    assert_eq!((legacy.time_ns, legacy.observed_ns), (6, 6));
    assert_eq!(legacy.severity_number, 0);
    assert_eq!((long.time_ns, long.observed_ns), (1_000, 1_000));
    assert_eq!(long.body.len(), 30);
    assert!(long.body.ends_with(TRUNCATION_MARKER));
    assert_eq!(batch.truncated, 1);
}

#[test]
fn logs_round_trip_through_protobuf() {
    let req = logs(vec![OtlpLog {
        time_unix_nano: T0,
        body: Some(AnyValue {
            value: Some(s("hi")),
        }),
        event_name: "e".into(),
        ..Default::default()
    }]);
    let decoded = decode_logs_proto(&req.encode_to_vec()).unwrap();
    assert_eq!(decoded, req);
    let batch = convert_logs(&decoded, &RecordLimits::default(), 0);
    assert_eq!(
        (
            batch.logs[0].body.as_str(),
            batch.logs[0].event_name.as_str()
        ),
        ("hi", "e")
    );
}

#[test]
fn garbage_is_an_error_and_never_a_panic() {
    let garbage: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02];
    assert!(matches!(
        decode_traces_proto(garbage),
        Err(Error::Protobuf(_))
    ));
    assert!(matches!(
        decode_logs_proto(garbage),
        Err(Error::Protobuf(_))
    ));
    assert!(matches!(
        decode_traces_json(b"{not json"),
        Err(Error::Json(_))
    ));
    assert!(matches!(decode_logs_json(b"[1,2]"), Err(Error::Json(_))));
    // Random bytes: whatever decodes must convert without panicking.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let limits = RecordLimits {
        max_attribute_value_bytes: 1,
        max_body_bytes: 0,
        ..Default::default()
    };
    for _ in 0..2_000 {
        let len = (x % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if let Ok(r) = decode_traces_proto(&bytes) {
            convert_traces(&r, &limits);
        }
        if let Ok(r) = decode_logs_proto(&bytes) {
            convert_logs(&r, &limits, 0);
        }
    }
}
