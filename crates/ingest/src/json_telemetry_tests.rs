use serde_json::json;
use sonde_model::records::attribute;
use sonde_model::{is_valid_label_name, is_valid_metric_name};

use super::*;
use crate::influx::tests::{dump, Rng};

const NOW: i64 = 1_700_000_000_000;
/// 2023-11-14T22:13:20Z.
const T: i64 = 1_700_000_000;

fn run(body: &str, opts: &JsonOptions) -> JsonDecoded {
    decode(body.as_bytes(), opts, NOW).unwrap()
}

fn check_with(body: &str, opts: &JsonOptions, expected: &[(&str, &[(i64, f64)])]) {
    let d = run(body, opts);
    assert_eq!(
        d.metrics.rejected_points, 0,
        "{:?}",
        d.metrics.first_rejection
    );
    let expected: Vec<(String, Vec<(i64, f64)>)> = expected
        .iter()
        .map(|(l, s)| (l.to_string(), s.to_vec()))
        .collect();
    assert_eq!(dump(&d.metrics), expected, "{body}");
}

fn check(body: &str, expected: &[(&str, &[(i64, f64)])]) {
    check_with(body, &JsonOptions::default(), expected);
}

/// The rejections of a body: count and first reason.
fn rejected(body: &str, opts: &JsonOptions) -> (u64, String) {
    let d = run(body, opts);
    (
        d.metrics.rejected_points,
        d.metrics.first_rejection.unwrap_or_default(),
    )
}

#[test]
fn numbers_are_samples_named_by_their_path() {
    check(
        r#"{"temp": 21.5, "motor": {"rpm": 1200, "on": true, "fault": false},
            "temps": [20, {"x": 3}], "gone": null, "empty": {}}"#,
        &[
            ("motor_fault", &[(NOW, 0.0)]),
            ("motor_on", &[(NOW, 1.0)]),
            ("motor_rpm", &[(NOW, 1200.0)]),
            ("temp", &[(NOW, 21.5)]),
            ("temps_0", &[(NOW, 20.0)]),
            ("temps_1_x", &[(NOW, 3.0)]),
        ],
    );
}

#[test]
fn names_are_made_valid_like_otlp_names() {
    let opts = JsonOptions {
        metric_prefix: "plant".into(),
        ..Default::default()
    };
    check_with(
        r#"{"Motor Speed/rpm": 1, "1st": 2, "a::b": 3}"#,
        &opts,
        &[
            ("plant_1st", &[(NOW, 2.0)]),
            ("plant_Motor_Speed_rpm", &[(NOW, 1.0)]),
            ("plant_a::b", &[(NOW, 3.0)]),
        ],
    );
    check(r#"{"1st": 2}"#, &[("_1st", &[(NOW, 2.0)])]);
    assert_eq!(
        rejected(r#"{"é": 1, "ok": 2}"#, &JsonOptions::default()),
        (1, r#"field "é" makes no metric name"#.into())
    );
}

#[test]
fn strings_become_labels_of_the_object_samples() {
    check(
        r#"{"device": "d-1", "fw": {"version": "1.2"}, "tags": ["a"], "temp": 20}"#,
        &[(
            "temp{device=\"d-1\", fw_version=\"1.2\", tags_0=\"a\"}",
            &[(NOW, 20.0)],
        )],
    );
    assert_eq!(
        rejected(r#"{"__name__": "x", "v": 1}"#, &JsonOptions::default()),
        (1, r#"field "__name__": the label name is reserved"#.into())
    );
}

#[test]
fn extra_labels_win_over_string_fields() {
    let opts = JsonOptions {
        extra_labels: vec![
            ("device".into(), "from-topic".into()),
            ("kafka.topic".into(), "t".into()),
        ],
        ..Default::default()
    };
    check_with(
        r#"{"device": "from-payload", "v": 1}"#,
        &opts,
        &[("v{device=\"from-topic\", kafka_topic=\"t\"}", &[(NOW, 1.0)])],
    );
}

#[test]
fn an_array_holds_one_point_per_object() {
    let body = r#"[{"v": 2, "timestamp": 1700000002}, 7, {"v": 1, "timestamp": 1700000001}]"#;
    let d = run(body, &JsonOptions::default());
    assert_eq!(
        dump(&d.metrics),
        vec![(
            "v".to_string(),
            vec![(1_700_000_001_000, 1.0), (1_700_000_002_000, 2.0)]
        )]
    );
    assert_eq!(d.metrics.rejected_points, 1);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some("element 1: not an object")
    );
    assert_eq!(run("[]", &JsonOptions::default()), JsonDecoded::default());
    assert_eq!(run("{}", &JsonOptions::default()), JsonDecoded::default());
}

#[test]
fn timestamp_units_are_told_apart_by_magnitude() {
    let cases = [
        (json!(T), T * 1000),
        (json!(1_700_000_000.25), T * 1000 + 250),
        (json!(T * 1000 + 123), T * 1000 + 123),
        (json!(T * 1_000_000 + 123_456), T * 1000 + 123),
        (json!(T * 1_000_000_000 + 123_456_789), T * 1000 + 123),
        (json!(1.700000000123e18), T * 1000 + 123),
        (json!("1700000000"), T * 1000),
        (json!(" 1700000000123 "), T * 1000 + 123),
        (json!(0), 0),
        (json!(-1), -1000),
        (json!("2023-11-14T22:13:20Z"), T * 1000),
        (json!("2023-11-15T00:13:20.25+02:00"), T * 1000 + 250),
        (
            json!("2023-11-14t19:43:20.999999999999-02:30"),
            T * 1000 + 999,
        ),
        (json!("2023-11-14 22:13:20z"), T * 1000),
    ];
    for (ts, ms) in cases {
        let body = json!({"v": 1, "timestamp": ts}).to_string();
        let d = run(&body, &JsonOptions::default());
        assert_eq!(
            dump(&d.metrics),
            vec![("v".into(), vec![(ms, 1.0)])],
            "{ts}"
        );
    }
}

#[test]
fn the_timestamp_field_is_configurable_and_not_a_metric() {
    let opts = JsonOptions {
        timestamp_field: "ts".into(),
        ..Default::default()
    };
    check_with(
        r#"{"ts": 1700000000, "timestamp": 5, "v": 1}"#,
        &opts,
        &[("timestamp", &[(T * 1000, 5.0)]), ("v", &[(T * 1000, 1.0)])],
    );
    check(r#"{"timestamp": null, "v": 1}"#, &[("v", &[(NOW, 1.0)])]);
}

#[test]
fn an_unusable_timestamp_rejects_its_object() {
    let cases = [
        (json!("yesterday"), "is not an RFC 3339 time"),
        (json!(true), "is not a number or an RFC 3339 string"),
        (json!({"s": 1}), "is not a number or an RFC 3339 string"),
        (json!("2023-13-01T00:00:00Z"), "RFC 3339"),
        (json!("2023-02-29T00:00:00Z"), "RFC 3339"),
        (json!("2023-11-14T24:00:00Z"), "RFC 3339"),
        (json!("2023-11-14T22:13:20"), "RFC 3339"),
        (json!("2023-11-14T22:13:20+0200"), "RFC 3339"),
        (json!("2023-11-14T22:13:20.Z"), "RFC 3339"),
        (json!(u64::MAX), "out of range"),
        (json!(-9.3e18), "out of range"),
        (json!(1e300), "out of range"),
        (json!("1e300"), "out of range"),
    ];
    for (ts, why) in cases {
        let body = json!([{"v": 1, "timestamp": ts}, {"v": 2}]).to_string();
        let (n, first) = rejected(&body, &JsonOptions::default());
        assert_eq!(n, 1, "{ts}");
        assert!(
            first.starts_with("element 0: \"timestamp\": ") && first.contains(why),
            "{ts}: {first}"
        );
    }
}

#[test]
fn rfc3339_dates_are_exact() {
    let p = parse_rfc3339;
    assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(p("1969-12-31T23:59:59.5Z"), Some(-500_000_000));
    assert_eq!(p("2024-02-29T12:00:00Z"), Some(1_709_208_000_000_000_000));
    assert_eq!(
        p("2000-03-01T00:00:00+00:00"),
        Some(951_868_800_000_000_000)
    );
    assert_eq!(p("2016-12-31T23:59:60Z"), Some(1_483_228_800_000_000_000));
    assert_eq!(p("2262-04-12T00:00:00Z"), None, "past i64 nanoseconds");
    assert_eq!(p("2023-11-14T22:13:20+24:00"), None);
    assert_eq!(p("2023-11-14T22:13:2Z"), None);
    assert_eq!(p("2023-11-14T22:13:20Zjunk"), None);
    assert_eq!(p("２０２３-11-14T22:13:20Z"), None);
    assert_eq!(p(""), None);
}

#[test]
fn an_explicit_sample_names_its_metric() {
    check(
        r#"[{"metric": "room.temp", "value": 21, "timestamp": 1700000000,
             "labels": {"room": "a", "floor": 2, "ok": true, "none": null}, "other": 5},
            {"name": "door", "value": true},
            {"name": "skipped", "value": null}]"#,
        &[
            ("door", &[(NOW, 1.0)]),
            (
                "room_temp{floor=\"2\", ok=\"true\", room=\"a\"}",
                &[(T * 1000, 21.0)],
            ),
        ],
    );
    // `value` without a string name is an ordinary object.
    check(
        r#"{"name": 3, "value": 4}"#,
        &[("name", &[(NOW, 3.0)]), ("value", &[(NOW, 4.0)])],
    );
}

#[test]
fn a_bad_explicit_sample_is_rejected_with_a_reason() {
    let cases = [
        (
            json!({"metric": "m", "value": "high"}),
            "value \"high\" is not a number",
        ),
        (
            json!({"metric": "m", "value": 1, "labels": [1]}),
            "labels must be an object",
        ),
        (
            json!({"metric": "m", "value": 1, "labels": {"a": {}}}),
            "label \"a\" is not a string",
        ),
        (
            json!({"metric": "m", "value": 1, "labels": {"__name__": "x"}}),
            "is reserved",
        ),
        (json!({"metric": "%%", "value": 1}), "makes no metric name"),
    ];
    for (body, why) in cases {
        let (n, first) = rejected(&body.to_string(), &JsonOptions::default());
        assert_eq!(n, 1, "{body}");
        assert!(first.contains(why), "{body}: {first}");
    }
}

fn nested(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

#[test]
fn deep_nesting_is_cut_at_the_depth_limit() {
    // 32 objects around the leaf: kept.
    let d = run(&nested(32), &JsonOptions::default());
    assert_eq!(d.metrics.series.len(), 1);
    assert_eq!(
        d.metrics.series[0].labels.metric_name(),
        Some(vec!["a"; 32].join("_").as_str())
    );
    // 33: the innermost object is dropped, and said to be.
    let (n, first) = rejected(&nested(33), &JsonOptions::default());
    assert_eq!(n, 1);
    assert!(first.contains("is nested deeper than 32 levels"), "{first}");
    // Far deeper than the parser allows: an error, not a stack overflow.
    let e = decode(nested(1_000).as_bytes(), &JsonOptions::default(), NOW).unwrap_err();
    assert!(
        matches!(e, Error::Json(ref m) if m.contains("recursion limit")),
        "{e}"
    );
}

#[test]
fn fields_past_the_limit_are_counted() {
    let opts = JsonOptions {
        max_fields: 3,
        ..Default::default()
    };
    let d = run(r#"{"a": 1, "b": "x", "c": 3, "d": 4, "e": [5, 6]}"#, &opts);
    assert_eq!(
        dump(&d.metrics),
        vec![
            ("a{b=\"x\"}".to_string(), vec![(NOW, 1.0)]),
            ("c{b=\"x\"}".to_string(), vec![(NOW, 3.0)]),
        ]
    );
    assert_eq!(d.metrics.rejected_points, 3);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some("field \"d\": more than 3 fields in one object")
    );
}

#[test]
fn fields_with_the_same_sanitised_name_keep_the_first() {
    // Keys in sorted order, so the test holds with serde_json's
    // `preserve_order` feature too.
    let d = run(r#"{"a-b": 3, "a.b": 1, "a_b": 2}"#, &JsonOptions::default());
    assert_eq!(
        dump(&d.metrics),
        vec![("a_b".to_string(), vec![(NOW, 3.0)])]
    );
    assert_eq!(d.metrics.rejected_points, 2);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some("field \"a.b\": another field is also named a_b")
    );
}

fn log_opts() -> JsonOptions {
    JsonOptions {
        string_fields: StringFields::Log,
        extra_labels: vec![
            ("service.name".into(), "plant-a".into()),
            ("site".into(), "lyon".into()),
        ],
        ..Default::default()
    }
}

#[test]
fn in_log_mode_strings_make_a_log_record_and_no_labels() {
    let body = r#" {"device": "d1", "level": "warn", "msg": "door opened",
        "temp": 20, "timestamp": 1700000000.5} "#;
    let d = run(body, &log_opts());
    assert_eq!(
        dump(&d.metrics),
        vec![(
            "temp{service_name=\"plant-a\", site=\"lyon\"}".to_string(),
            vec![(T * 1000 + 500, 20.0)]
        )]
    );
    assert_eq!(d.logs.logs.len(), 1);
    let log = &d.logs.logs[0];
    assert_eq!(log.body, body.trim());
    assert_eq!(log.time_ns, (T * 1000 + 500) * 1_000_000);
    assert_eq!(log.observed_ns, NOW * 1_000_000);
    assert_eq!(
        (log.severity_number, log.severity_text.as_str()),
        (13, "warn")
    );
    assert_eq!(
        log.attributes,
        vec![
            ("device".to_string(), AttrValue::Str("d1".into())),
            ("level".to_string(), AttrValue::Str("warn".into())),
            ("msg".to_string(), AttrValue::Str("door opened".into())),
        ]
    );
    assert_eq!(log.origin.service, "plant-a");
    assert_eq!(
        log.origin.resource,
        vec![
            ("service.name".to_string(), AttrValue::Str("plant-a".into())),
            ("site".to_string(), AttrValue::Str("lyon".into())),
        ]
    );
    assert_eq!(d.logs.truncated, 0);
}

#[test]
fn in_log_mode_objects_without_strings_make_no_log() {
    let d = run(r#"{"temp": 20}"#, &log_opts());
    assert_eq!(d.metrics.num_samples(), 1);
    assert!(d.logs.logs.is_empty());
}

#[test]
fn log_records_of_an_array_have_each_object_as_body() {
    let opts = JsonOptions {
        string_fields: StringFields::Log,
        ..Default::default()
    };
    let d = run(
        r#"[{"host": "h1", "service": "pump", "state": "on", "x": {"nested": "y"}},
            {"service": "pump", "host": "h1", "state": "off"},
            {"state": "idle", "severity": "nonsense"}]"#,
        &opts,
    );
    let logs = &d.logs.logs;
    assert_eq!(logs.len(), 3);
    assert_eq!(
        logs[0].body,
        r#"{"host":"h1","service":"pump","state":"on","x":{"nested":"y"}}"#
    );
    assert_eq!(
        attribute(&logs[0].attributes, "x.nested"),
        Some(&AttrValue::Str("y".into()))
    );
    assert_eq!(
        (
            logs[0].origin.service.as_str(),
            logs[0].origin.host.as_str()
        ),
        ("pump", "h1")
    );
    assert!(
        Arc::ptr_eq(&logs[0].origin, &logs[1].origin),
        "one origin for equal ones"
    );
    assert_eq!(logs[2].origin.service, UNKNOWN_SERVICE);
    assert_eq!(logs[2].origin.host, "");
    assert_eq!(
        (logs[2].severity_number, logs[2].severity_text.as_str()),
        (0, "nonsense")
    );
    assert_eq!(logs[0].time_ns, NOW * 1_000_000);
}

#[test]
fn log_records_are_bounded_by_the_record_limits() {
    let mut opts = log_opts();
    opts.record_limits.max_body_bytes = 40;
    opts.record_limits.max_attributes = 1;
    opts.record_limits.max_attribute_value_bytes = 20;
    let long = "é".repeat(30);
    let body = json!({"a": long, "b": "x"}).to_string();
    let d = run(&body, &opts);
    let log = &d.logs.logs[0];
    assert!(
        log.body.len() <= 40 && log.body.ends_with(TRUNCATION_MARKER),
        "{}",
        log.body
    );
    assert_eq!(log.attributes.len(), 1);
    let AttrValue::Str(a) = &log.attributes[0].1 else {
        panic!()
    };
    assert!(a.len() <= 20 && a.ends_with(TRUNCATION_MARKER), "{a}");
    // Body, the one value, the attribute left out.
    assert_eq!(d.logs.truncated, 3);
}

#[test]
fn a_body_that_is_not_an_object_or_array_is_an_error() {
    let cases: [&[u8]; 6] = [
        b"",
        b"{",
        b"42",
        b"\"s\"",
        b"{\"a\": 1} x",
        b"{\"a\": \"\xff\"}",
    ];
    for body in cases {
        let e = decode(body, &JsonOptions::default(), NOW).unwrap_err();
        assert!(matches!(e, Error::Json(_)), "{body:?}: {e:?}");
    }
    assert_eq!(
        decode(b"42", &JsonOptions::default(), NOW)
            .unwrap_err()
            .to_string(),
        "malformed json: expected an object or an array of objects"
    );
}

fn assert_valid(d: &JsonDecoded) {
    for s in &d.metrics.series {
        assert!(is_valid_metric_name(s.labels.metric_name().unwrap()));
        for l in s.labels.iter() {
            assert!(is_valid_label_name(&l.name), "{}", l.name);
        }
        assert!(s.samples.iter().all(|x| x.v.is_finite()));
    }
}

/// A random JSON value of at most `depth` levels.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let keys = [
        "a",
        "b.c",
        "timestamp",
        "metric",
        "name",
        "value",
        "labels",
        "é",
        "__name__",
    ];
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!((rng.next() as i64) >> rng.below(64)),
        3 => json!(f64::from_bits(rng.next())),
        4 => json!(["x", "2023-11-14T22:13:20Z", "1700000000", ""][rng.below(4)]),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| {
                    (
                        keys[rng.below(keys.len())].to_string(),
                        random_value(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

#[test]
fn random_input_never_panics_and_yields_valid_series() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let alphabet = b"{}[]\":,0123456789.eE-+ truefalsn\\a";
    for round in 0..5_000 {
        let opts = JsonOptions {
            string_fields: if round % 2 == 0 {
                StringFields::Labels
            } else {
                StringFields::Log
            },
            max_depth: 1 + rng.below(6),
            max_fields: rng.below(8),
            ..Default::default()
        };
        let body = match round % 3 {
            0 => rng.bytes(48, &[]),
            1 => rng.bytes(48, alphabet),
            _ => random_value(&mut rng, 6).to_string().into_bytes(),
        };
        match decode(&body, &opts, NOW) {
            Ok(d) => assert_valid(&d),
            Err(Error::Json(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}
