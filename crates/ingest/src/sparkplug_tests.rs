use sonde_model::{is_stale_nan, is_valid_label_name, is_valid_metric_name};

use super::*;
use crate::influx::tests::Rng;

const NOW: i64 = 1_700_000_000_000;
const NODE: &str = "spBv1.0/plant/NBIRTH/edge1";

fn m(
    name: Option<&str>,
    alias: Option<u64>,
    dt: Option<DataType>,
    v: Option<Value>,
) -> proto::Metric {
    proto::Metric {
        name: name.map(str::to_string),
        alias,
        datatype: dt.map(|d| d as u32),
        value: v,
        ..Default::default()
    }
}

/// A birth metric: name, alias, datatype, value.
fn born(name: &str, alias: u64, dt: DataType, v: Value) -> proto::Metric {
    m(Some(name), Some(alias), Some(dt), Some(v))
}

/// A data metric carrying only its alias, as the specification prefers.
fn aliased(alias: u64, v: Value) -> proto::Metric {
    m(None, Some(alias), None, Some(v))
}

fn payload(ts: Option<u64>, metrics: Vec<proto::Metric>) -> Vec<u8> {
    proto::Payload {
        timestamp: ts,
        metrics,
        seq: Some(0),
        ..Default::default()
    }
    .encode_to_vec()
}

fn topic(kind: &str, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("spBv1.0/plant/{kind}/edge1/{d}"),
        None => format!("spBv1.0/plant/{kind}/edge1"),
    }
}

/// Samples as `labels -> [(t, v)]`, sorted, stale markers shown as -0.5
/// (a NaN never equals itself).
fn dump(d: &SparkplugDecoded) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut out: Vec<_> = d
        .metrics
        .series
        .iter()
        .map(|s| {
            let samples = s
                .samples
                .iter()
                .map(|x| (x.t, if is_stale_nan(x.v) { -0.5 } else { x.v }))
                .collect::<Vec<_>>();
            (s.labels.to_string(), samples)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn series(pairs: &[(&str, &[(i64, f64)])]) -> Vec<(String, Vec<(i64, f64)>)> {
    pairs
        .iter()
        .map(|(l, s)| (l.to_string(), s.to_vec()))
        .collect()
}

const L: &str = "sparkplug_group=\"plant\", sparkplug_node=\"edge1\"";

/// A decoder that has seen the node's birth: bdSeq 7, Temperature (alias 1,
/// Float), Counter (alias 2, UInt64), Name (alias 3, String).
fn born_node() -> SparkplugDecoder {
    let mut dec = SparkplugDecoder::new(SparkplugOptions::default());
    let birth = payload(
        Some(1_000),
        vec![
            m(
                Some("bdSeq"),
                None,
                Some(DataType::Int64),
                Some(Value::LongValue(7)),
            ),
            born("Temperature", 1, DataType::Float, Value::FloatValue(21.5)),
            born("Counter", 2, DataType::UInt64, Value::LongValue(42)),
            born("Name", 3, DataType::String, Value::StringValue("x".into())),
            m(
                Some("Node Control/Rebirth"),
                None,
                Some(DataType::Boolean),
                Some(Value::BooleanValue(false)),
            ),
        ],
    );
    let d = dec.decode(NODE, &birth, NOW).unwrap();
    assert_eq!(d.message_type, MessageType::NBirth);
    assert_eq!(
        d.metrics.rejected_points, 0,
        "{:?}",
        d.metrics.first_rejection
    );
    assert_eq!(
        dump(&d),
        series(&[
            (&format!("Counter{{{L}}}"), &[(1_000, 42.0)]),
            (&format!("Node_Control_Rebirth{{{L}}}"), &[(1_000, 0.0)]),
            (&format!("Temperature{{{L}}}"), &[(1_000, 21.5)]),
        ])
    );
    dec
}

#[test]
fn a_birth_gives_samples_and_its_aliases_resolve_data() {
    let mut dec = born_node();
    let mut counter = aliased(2, Value::LongValue(43));
    counter.timestamp = Some(2_500);
    let data = payload(
        Some(2_000),
        vec![aliased(1, Value::FloatValue(22.0)), counter],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(d.message_type, MessageType::NData);
    assert_eq!(d.rebirth, None);
    assert_eq!(
        dump(&d),
        series(&[
            (&format!("Counter{{{L}}}"), &[(2_500, 43.0)]),
            (&format!("Temperature{{{L}}}"), &[(2_000, 22.0)]),
        ])
    );
    // Without any timestamp: now.
    let d = dec
        .decode(
            &topic("NDATA", None),
            &payload(None, vec![aliased(1, Value::FloatValue(1.0))]),
            NOW,
        )
        .unwrap();
    assert_eq!(d.metrics.series[0].samples[0].t, NOW);
}

#[test]
fn devices_have_their_own_aliases_and_label() {
    let mut dec = born_node();
    let birth = payload(
        Some(3_000),
        vec![born(
            "Pressure",
            1,
            DataType::Double,
            Value::DoubleValue(1.5),
        )],
    );
    let d = dec
        .decode(&topic("DBIRTH", Some("press")), &birth, NOW)
        .unwrap();
    let dl = "sparkplug_device=\"press\", sparkplug_group=\"plant\", sparkplug_node=\"edge1\"";
    assert_eq!(
        dump(&d),
        series(&[(&format!("Pressure{{{dl}}}"), &[(3_000, 1.5)])])
    );
    // Alias 1 is Pressure for the device and still Temperature for the node.
    let data = payload(Some(4_000), vec![aliased(1, Value::DoubleValue(2.5))]);
    let d = dec
        .decode(&topic("DDATA", Some("press")), &data, NOW)
        .unwrap();
    assert_eq!(
        dump(&d),
        series(&[(&format!("Pressure{{{dl}}}"), &[(4_000, 2.5)])])
    );
    let data = payload(Some(4_000), vec![aliased(1, Value::FloatValue(20.0))]);
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(
        dump(&d),
        series(&[(&format!("Temperature{{{L}}}"), &[(4_000, 20.0)])])
    );
}

#[test]
fn unknown_aliases_are_rejected_and_ask_for_a_rebirth_now_and_then() {
    let mut dec = SparkplugDecoder::new(SparkplugOptions::default());
    let data = payload(
        Some(1),
        vec![
            aliased(5, Value::FloatValue(1.0)),
            aliased(6, Value::FloatValue(2.0)),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(d.metrics.num_samples(), 0);
    assert_eq!(d.metrics.rejected_points, 2);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some("unknown alias 5: the node's birth was not seen")
    );
    let req = d.rebirth.expect("a rebirth request");
    assert_eq!(req.topic(), "spBv1.0/plant/NCMD/edge1");
    let cmd = proto::Payload::decode(req.payload(NOW).as_slice()).unwrap();
    assert_eq!(cmd.timestamp, Some(NOW as u64));
    assert_eq!(cmd.metrics.len(), 1);
    assert_eq!(cmd.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
    assert_eq!(cmd.metrics[0].datatype, Some(DataType::Boolean as u32));
    assert_eq!(cmd.metrics[0].value, Some(Value::BooleanValue(true)));
    // Not again within the interval, but again after it.
    let d = dec
        .decode(&topic("NDATA", None), &data, NOW + 59_999)
        .unwrap();
    assert_eq!(d.rebirth, None);
    let d = dec
        .decode(&topic("DDATA", Some("x")), &data, NOW + 60_000)
        .unwrap();
    assert!(d.rebirth.is_some());
}

#[test]
fn data_with_names_needs_no_birth() {
    let mut dec = SparkplugDecoder::new(SparkplugOptions::default());
    let data = payload(
        Some(5),
        vec![
            m(
                Some("a/b"),
                None,
                Some(DataType::Int32),
                Some(Value::IntValue(u32::MAX)),
            ),
            m(Some("c"), None, None, Some(Value::IntValue(7))),
            m(Some("d"), None, None, Some(Value::BooleanValue(true))),
            m(Some("e"), None, None, Some(Value::StringValue("s".into()))),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(d.metrics.rejected_points, 0);
    assert_eq!(d.rebirth, None);
    assert_eq!(
        dump(&d),
        series(&[
            (&format!("a_b{{{L}}}"), &[(5, -1.0)]),
            (&format!("c{{{L}}}"), &[(5, 7.0)]),
            (&format!("d{{{L}}}"), &[(5, 1.0)]),
        ])
    );
}

#[test]
fn integers_are_read_per_datatype_width_and_sign() {
    use DataType::*;
    let cases: Vec<(DataType, Value, Option<f64>)> = vec![
        (Int8, Value::IntValue(u32::MAX), Some(-1.0)),
        (Int8, Value::IntValue(255), Some(-1.0)),
        (Int8, Value::IntValue(127), Some(127.0)),
        (Int16, Value::IntValue(0xFFFE), Some(-2.0)),
        (Int16, Value::IntValue(-2i32 as u32), Some(-2.0)),
        (Int32, Value::IntValue(-3i32 as u32), Some(-3.0)),
        (Int64, Value::LongValue(-4i64 as u64), Some(-4.0)),
        (Int32, Value::LongValue(-5i64 as u64), Some(-5.0)),
        (UInt8, Value::IntValue(200), Some(200.0)),
        (UInt16, Value::IntValue(65_535), Some(65_535.0)),
        (UInt32, Value::IntValue(4_000_000_000), Some(4e9)),
        (UInt32, Value::LongValue(4_000_000_000), Some(4e9)),
        (UInt64, Value::LongValue(u64::MAX), Some(u64::MAX as f64)),
        (Float, Value::FloatValue(0.5), Some(0.5)),
        (Double, Value::DoubleValue(-0.25), Some(-0.25)),
        (Double, Value::FloatValue(1.5), Some(1.5)),
        (Int32, Value::DoubleValue(2.0), Some(2.0)),
        (Boolean, Value::BooleanValue(true), Some(1.0)),
        (Boolean, Value::IntValue(5), Some(1.0)),
        (Boolean, Value::BooleanValue(false), Some(0.0)),
        (DateTime, Value::LongValue(1_700_000_000_000), None),
        (String, Value::StringValue("x".into()), None),
        (Unknown, Value::LongValue(9), Some(9.0)),
    ];
    for (dt, v, want) in cases {
        let got = numeric(dt as u32, Some(&v)).unwrap();
        assert_eq!(got, want, "{dt:?} {v:?}");
    }
    assert_eq!(numeric(Double as u32, None), Ok(None));
    assert_eq!(numeric(99, Some(&Value::IntValue(1))), Ok(None));
    assert_eq!(
        numeric(Double as u32, Some(&Value::StringValue("1".into()))),
        Err("a string value for datatype 10".into())
    );
    assert_eq!(
        numeric(Boolean as u32, Some(&Value::BytesValue(vec![1]))),
        Err("a bytes value for datatype 11".into())
    );
}

#[test]
fn null_transient_and_unusable_metrics() {
    let mut dec = born_node();
    let mut null = aliased(1, Value::FloatValue(9.0));
    null.is_null = Some(true);
    let mut transient = aliased(2, Value::LongValue(9));
    transient.is_transient = Some(true);
    let mut historical = aliased(1, Value::FloatValue(19.0));
    historical.is_historical = Some(true);
    historical.timestamp = Some(500);
    let mut far = aliased(1, Value::FloatValue(1.0));
    far.timestamp = Some(u64::MAX);
    let data = payload(
        Some(2_000),
        vec![
            null,
            transient,
            historical,
            aliased(1, Value::FloatValue(f32::NAN)),
            aliased(1, Value::StringValue("hot".into())),
            m(None, Some(2), None, None),
            far,
            m(None, None, None, Some(Value::FloatValue(1.0))),
            aliased(1, Value::FloatValue(20.0)),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    // Historical samples are kept, in time order with the others.
    assert_eq!(
        dump(&d),
        series(&[(
            &format!("Temperature{{{L}}}"),
            &[(500, 19.0), (2_000, 20.0)]
        )])
    );
    assert_eq!(d.metrics.rejected_points, 4);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some("metric \"Temperature\": the value is not finite")
    );
}

#[test]
fn a_node_death_marks_its_series_and_devices_stale_and_forgets_them() {
    let mut dec = born_node();
    let birth = payload(
        Some(NOW as u64 + 5_000),
        vec![born("P", 1, DataType::Double, Value::DoubleValue(1.0))],
    );
    dec.decode(&topic("DBIRTH", Some("d")), &birth, NOW)
        .unwrap();
    assert_eq!(dec.entries(), 1 + 5 + 1 + 1);
    let death = payload(
        None,
        vec![m(
            Some("bdSeq"),
            None,
            Some(DataType::Int64),
            Some(Value::LongValue(7)),
        )],
    );
    let d = dec.decode(&topic("NDEATH", None), &death, NOW).unwrap();
    assert_eq!(d.message_type, MessageType::NDeath);
    let dl = "sparkplug_device=\"d\", sparkplug_group=\"plant\", sparkplug_node=\"edge1\"";
    assert_eq!(
        dump(&d),
        series(&[
            (&format!("Counter{{{L}}}"), &[(NOW, -0.5)]),
            (&format!("Node_Control_Rebirth{{{L}}}"), &[(NOW, -0.5)]),
            // After the device's last sample, which was ahead of `now`.
            (&format!("P{{{dl}}}"), &[(NOW + 5_001, -0.5)]),
            (&format!("Temperature{{{L}}}"), &[(NOW, -0.5)]),
        ])
    );
    assert_eq!(dec.entries(), 0);
    let data = payload(Some(1), vec![aliased(1, Value::FloatValue(1.0))]);
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(d.metrics.rejected_points, 1);
}

#[test]
fn a_death_from_an_old_session_is_ignored() {
    let mut dec = born_node();
    let death = payload(
        None,
        vec![m(
            Some("bdSeq"),
            None,
            Some(DataType::Int64),
            Some(Value::LongValue(6)),
        )],
    );
    let d = dec.decode(&topic("NDEATH", None), &death, NOW).unwrap();
    assert!(d.metrics.series.is_empty());
    assert_eq!(dec.entries(), 6);
    let data = payload(Some(1), vec![aliased(1, Value::FloatValue(1.0))]);
    assert_eq!(
        dec.decode(&topic("NDATA", None), &data, NOW)
            .unwrap()
            .metrics
            .num_samples(),
        1
    );
}

#[test]
fn a_device_death_marks_only_the_device() {
    let mut dec = born_node();
    let birth = payload(
        Some(1),
        vec![born("P", 1, DataType::Double, Value::DoubleValue(1.0))],
    );
    dec.decode(&topic("DBIRTH", Some("d")), &birth, NOW)
        .unwrap();
    let d = dec
        .decode(&topic("DDEATH", Some("d")), &payload(None, vec![]), NOW)
        .unwrap();
    let dl = "sparkplug_device=\"d\", sparkplug_group=\"plant\", sparkplug_node=\"edge1\"";
    assert_eq!(dump(&d), series(&[(&format!("P{{{dl}}}"), &[(NOW, -0.5)])]));
    assert_eq!(dec.entries(), 6);
    // A second death of the same device has nothing left to mark.
    let d = dec
        .decode(&topic("DDEATH", Some("d")), &payload(None, vec![]), NOW)
        .unwrap();
    assert!(d.metrics.series.is_empty());
}

#[test]
fn a_new_birth_replaces_the_table() {
    let mut dec = born_node();
    let birth = payload(
        Some(1),
        vec![born("Humidity", 1, DataType::Float, Value::FloatValue(0.5))],
    );
    dec.decode(NODE, &birth, NOW).unwrap();
    assert_eq!(dec.entries(), 2);
    let data = payload(
        Some(2),
        vec![
            aliased(1, Value::FloatValue(0.6)),
            aliased(2, Value::LongValue(1)),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(
        dump(&d),
        series(&[(&format!("Humidity{{{L}}}"), &[(2, 0.6f32 as f64)])])
    );
    assert_eq!(
        d.metrics.rejected_points, 1,
        "alias 2 died with the old birth"
    );
}

#[test]
fn the_birth_table_is_bounded() {
    let mut dec = SparkplugDecoder::new(SparkplugOptions {
        max_entries: 3,
        ..Default::default()
    });
    let metrics = (0..5)
        .map(|i| {
            born(
                &format!("m{i}"),
                i,
                DataType::Double,
                Value::DoubleValue(i as f64),
            )
        })
        .collect();
    let d = dec.decode(NODE, &payload(Some(1), metrics), NOW).unwrap();
    assert_eq!(d.metrics.num_samples(), 5, "birth values are kept");
    assert_eq!(d.metrics.rejected_points, 3);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some(
            "metric \"m2\" not remembered: the birth table is full (3 entries); raise max_entries"
        )
    );
    assert_eq!(dec.entries(), 3);
    // A device does not fit either, but its values are still decoded.
    let birth = payload(
        Some(1),
        vec![born("p", 1, DataType::Double, Value::DoubleValue(1.0))],
    );
    let d = dec
        .decode(&topic("DBIRTH", Some("d")), &birth, NOW)
        .unwrap();
    assert_eq!((d.metrics.num_samples(), d.metrics.rejected_points), (1, 1));
    assert_eq!(dec.entries(), 3);
    let data = payload(
        Some(2),
        vec![
            aliased(1, Value::DoubleValue(1.0)),
            aliased(4, Value::DoubleValue(1.0)),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!((d.metrics.num_samples(), d.metrics.rejected_points), (1, 1));
}

#[test]
fn repeated_names_and_aliases_in_a_birth_keep_one_mapping_each() {
    let mut dec = SparkplugDecoder::default();
    let mut metrics: Vec<proto::Metric> = (0..1000)
        .map(|i| born("x", i, DataType::Double, Value::DoubleValue(1.0)))
        .collect();
    // Alias 2000 first names y, then z.
    metrics.push(born("y", 2000, DataType::Double, Value::DoubleValue(2.0)));
    metrics.push(born("z", 2000, DataType::Double, Value::DoubleValue(3.0)));
    dec.decode(NODE, &payload(Some(1), metrics), NOW).unwrap();
    assert_eq!(dec.entries(), 1 + 3);
    let data = payload(
        Some(2),
        vec![
            aliased(999, Value::DoubleValue(4.0)),
            aliased(0, Value::DoubleValue(5.0)),
            aliased(2000, Value::DoubleValue(6.0)),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(
        dump(&d),
        series(&[
            (&format!("x{{{L}}}"), &[(2, 4.0)]),
            (&format!("z{{{L}}}"), &[(2, 6.0)]),
        ])
    );
    assert_eq!(d.metrics.rejected_points, 1, "alias 0 was replaced by 999");
}

#[test]
fn names_prefix_and_extra_labels() {
    let mut dec = SparkplugDecoder::new(SparkplugOptions {
        metric_prefix: "sp".into(),
        extra_labels: vec![
            ("site".into(), "lyon".into()),
            ("sparkplug_node".into(), "ignored".into()),
        ],
        ..Default::default()
    });
    let data = payload(
        Some(1),
        vec![
            m(
                Some("Line 1/Motor.Speed"),
                None,
                Some(DataType::Float),
                Some(Value::FloatValue(3.0)),
            ),
            m(
                Some("温度"),
                None,
                Some(DataType::Float),
                Some(Value::FloatValue(3.0)),
            ),
        ],
    );
    let d = dec.decode(&topic("NDATA", None), &data, NOW).unwrap();
    assert_eq!(
        dump(&d),
        series(&[(
            &format!("sp_Line_1_Motor_Speed{{site=\"lyon\", {L}}}"),
            &[(1, 3.0)]
        )])
    );
    // A prefix does not make an unusable name usable.
    assert_eq!(d.metrics.rejected_points, 1);
    assert_eq!(
        d.metrics.first_rejection.as_deref(),
        Some("metric \"温度\" makes no metric name")
    );
}

#[test]
fn topics_are_validated() {
    let mut dec = SparkplugDecoder::default();
    let ok = payload(None, vec![]);
    for t in [
        "spBv1.0/g/NBIRTH/n",
        "spBv1.0/g/DDATA/n/d",
        "spBv1.0/g/NDEATH/n",
    ] {
        assert!(dec.decode(t, &ok, NOW).is_ok(), "{t}");
    }
    let cases = [
        ("spAv1.0/g/NDATA/n", "not a Sparkplug B topic"),
        ("plant/x", "not a Sparkplug B topic"),
        ("", "not a Sparkplug B topic"),
        ("spBv1.0/g/NDATA", "expected spBv1.0/{group}"),
        ("spBv1.0/g/DDATA/n/d/x", "expected spBv1.0/{group}"),
        ("spBv1.0/g/NDATA/n/d", "node message type with a device id"),
        (
            "spBv1.0/g/DBIRTH/n",
            "device message type without a device id",
        ),
        ("spBv1.0/g/NFOO/n", "unknown message type"),
        ("spBv1.0/g/STATE/n", "unknown message type"),
        ("spBv1.0//NDATA/n", "empty group"),
        ("spBv1.0/g/DDATA/n/", "empty group, node or device"),
    ];
    for (t, why) in cases {
        match dec.decode(t, &ok, NOW) {
            Err(Error::Sparkplug(m)) => assert!(m.contains(why), "{t}: {m}"),
            other => panic!("{t}: {other:?}"),
        }
    }
}

#[test]
fn commands_and_host_state_are_ignored_unread() {
    let mut dec = SparkplugDecoder::default();
    for (t, kind) in [
        ("spBv1.0/STATE/scada-1", MessageType::State),
        ("spBv1.0/g/NCMD/n", MessageType::NCmd),
        ("spBv1.0/g/DCMD/n/d", MessageType::DCmd),
    ] {
        let d = dec.decode(t, b"{\"online\": true}", NOW).unwrap();
        assert_eq!(d.message_type, kind);
        assert_eq!(d.metrics, MetricsBatch::default());
    }
}

#[test]
fn a_payload_that_is_not_protobuf_is_an_error() {
    let mut dec = SparkplugDecoder::default();
    let e = dec
        .decode(&topic("NDATA", None), b"\xff\xff\xff\xff", NOW)
        .unwrap_err();
    assert!(matches!(e, Error::Protobuf(_)), "{e:?}");
    let e = dec
        .decode(&topic("NDATA", None), b"{\"json\": 1}", NOW)
        .unwrap_err();
    assert!(matches!(e, Error::Protobuf(_)), "{e:?}");
}

#[test]
fn random_input_never_panics_and_yields_valid_series() {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let mut dec = SparkplugDecoder::new(SparkplugOptions {
        max_entries: 50,
        ..Default::default()
    });
    let kinds = ["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"];
    let valid = payload(
        Some(7),
        vec![
            born("a", 1, DataType::Int8, Value::IntValue(3)),
            born("b/c", 2, DataType::Double, Value::DoubleValue(1.0)),
            aliased(3, Value::LongValue(1)),
        ],
    );
    for round in 0..20_000 {
        let kind = kinds[rng.below(kinds.len())];
        let t = if kind.starts_with('D') {
            format!("spBv1.0/g/{kind}/n{}/d{}", rng.below(3), rng.below(3))
        } else {
            format!("spBv1.0/g/{kind}/n{}", rng.below(3))
        };
        let body = if round % 2 == 0 {
            rng.bytes(40, &[])
        } else {
            let mut b = valid.clone();
            for _ in 0..2 {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            b
        };
        match dec.decode(&t, &body, NOW) {
            Ok(d) => {
                for s in &d.metrics.series {
                    assert!(is_valid_metric_name(s.labels.metric_name().unwrap()));
                    assert!(s.labels.iter().all(|l| is_valid_label_name(&l.name)));
                }
            }
            Err(Error::Protobuf(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
        assert!(dec.entries() <= 50);
    }
}
