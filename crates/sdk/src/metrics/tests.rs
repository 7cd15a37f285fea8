use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point::Value as V, ExponentialHistogramDataPoint, HistogramDataPoint,
    Metric, NumberDataPoint,
};

use super::*;
use crate::export::{MemorySink, Signal};

fn provider() -> MeterProvider {
    MeterProvider::builder().with_service_name("test").build()
}

fn metric(req: &ExportMetricsServiceRequest, name: &str) -> Metric {
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn sum_points(p: &MeterProvider, name: &str) -> (Vec<NumberDataPoint>, bool) {
    match metric(&p.collect(), name).data {
        Some(Data::Sum(s)) => {
            assert_eq!(s.aggregation_temporality, CUMULATIVE_TEMPORALITY);
            (s.data_points, s.is_monotonic)
        }
        other => panic!("{name} is not a sum: {other:?}"),
    }
}

fn gauge_points(p: &MeterProvider, name: &str) -> Vec<NumberDataPoint> {
    match metric(&p.collect(), name).data {
        Some(Data::Gauge(g)) => g.data_points,
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

fn exp_points(p: &MeterProvider, name: &str) -> Vec<ExponentialHistogramDataPoint> {
    match metric(&p.collect(), name).data {
        Some(Data::ExponentialHistogram(h)) => h.data_points,
        other => panic!("{name} is not an exponential histogram: {other:?}"),
    }
}

fn explicit_points(p: &MeterProvider, name: &str) -> Vec<HistogramDataPoint> {
    match metric(&p.collect(), name).data {
        Some(Data::Histogram(h)) => h.data_points,
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

const CUMULATIVE_TEMPORALITY: i32 =
    opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::Cumulative as i32;

/// Attributes of a point as (key, value as text).
fn attrs(p: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<(String, String)> {
    p.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(any_value::Value::StringValue(s)) => s,
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn kv(k: &'static str, v: &'static str) -> KeyValue {
    KeyValue::new(k, v)
}

#[test]
fn counter_sums_are_cumulative_across_exports() {
    let p = provider();
    let c = p
        .meter()
        .u64_counter("requests")
        .with_unit("{request}")
        .build();
    c.add(2, &[kv("route", "/a")]);
    c.add(3, &[kv("route", "/a")]);
    c.add(1, &[kv("route", "/b")]);
    let (first, monotonic) = sum_points(&p, "requests");
    assert!(monotonic);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].value, Some(V::AsInt(5)));
    assert_eq!(
        attrs(&first[0].attributes),
        vec![("route".into(), "/a".into())]
    );
    assert_eq!(first[1].value, Some(V::AsInt(1)));
    c.add(10, &[kv("route", "/a")]);
    let (second, _) = sum_points(&p, "requests");
    assert_eq!(second[0].value, Some(V::AsInt(15)));
    assert_eq!(second[1].value, Some(V::AsInt(1)));
    assert_eq!(
        second[0].start_time_unix_nano,
        first[0].start_time_unix_nano
    );
    assert!(second[0].time_unix_nano >= first[0].time_unix_nano);
    assert!(first[0].start_time_unix_nano <= first[0].time_unix_nano);
    assert_eq!(metric(&p.collect(), "requests").unit, "{request}");
}

#[test]
fn float_counter_ignores_negative_and_nan() {
    let p = provider();
    let c = p.meter().f64_counter("bytes").build();
    c.add(1.5, &[]);
    c.add(-4.0, &[]);
    c.add(f64::NAN, &[]);
    c.bind(&[]).add(0.25);
    c.bind(&[]).add(-1.0);
    assert_eq!(sum_points(&p, "bytes").0[0].value, Some(V::AsDouble(1.75)));
}

#[test]
fn up_down_counters_go_down() {
    let p = provider();
    let m = p.meter();
    let c = m.i64_up_down_counter("inflight").build();
    c.add(5, &[]);
    c.add(-7, &[]);
    c.bind(&[]).add(1);
    let (points, monotonic) = sum_points(&p, "inflight");
    assert!(!monotonic);
    assert_eq!(points[0].value, Some(V::AsInt(-1)));
    let f = m.f64_up_down_counter("level").build();
    f.add(-0.5, &[kv("a", "b")]);
    assert_eq!(sum_points(&p, "level").0[0].value, Some(V::AsDouble(-0.5)));
}

#[test]
fn gauges_keep_the_last_value() {
    let p = provider();
    let m = p.meter();
    let g = m.f64_gauge("temperature").with_unit("Cel").build();
    g.record(20.5, &[kv("room", "a")]);
    g.record(21.0, &[kv("room", "a")]);
    g.bind(&[kv("room", "b")]).record(-3.0);
    let points = gauge_points(&p, "temperature");
    assert_eq!(points[0].value, Some(V::AsDouble(21.0)));
    assert_eq!(points[1].value, Some(V::AsDouble(-3.0)));
    let i = m.i64_gauge("queue").build();
    i.record(-2, &[]);
    assert_eq!(gauge_points(&p, "queue")[0].value, Some(V::AsInt(-2)));
}

#[test]
fn attribute_order_does_not_matter() {
    let p = provider();
    let c = p.meter().u64_counter("c").build();
    c.add(1, &[kv("a", "1"), kv("b", "2"), KeyValue::new("c", 3i64)]);
    c.add(1, &[KeyValue::new("c", 3i64), kv("b", "2"), kv("a", "1")]);
    c.add(1, &[kv("b", "2"), KeyValue::new("c", 3i64), kv("a", "1")]);
    c.add(
        1,
        &[
            KeyValue::new(String::from("b"), String::from("2")),
            kv("a", "1"),
            KeyValue::new("c", 3i64),
        ],
    );
    c.bind(&[kv("b", "2"), kv("a", "1"), KeyValue::new("c", 3i64)])
        .add(1);
    let (points, _) = sum_points(&p, "c");
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value, Some(V::AsInt(5)));
    let keys: Vec<_> = attrs(&points[0].attributes)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["a", "b", "c"], "canonical order");
}

#[test]
fn cardinality_overflow_goes_to_one_set() {
    let p = provider();
    let c = p.meter().u64_counter("c").with_cardinality_limit(4).build();
    for i in 0..10i64 {
        c.add(1, &[KeyValue::new("user", i)]);
    }
    let (points, _) = sum_points(&p, "c");
    assert_eq!(points.len(), 4);
    let values: Vec<_> = points.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        vec![
            Some(V::AsInt(1)),
            Some(V::AsInt(1)),
            Some(V::AsInt(1)),
            Some(V::AsInt(7))
        ]
    );
    assert_eq!(
        attrs(&points[3].attributes),
        vec![(OVERFLOW_KEY.into(), "true".into())]
    );
    // Sets seen before the limit keep their own series.
    c.add(5, &[KeyValue::new("user", 0i64)]);
    assert_eq!(sum_points(&p, "c").0[0].value, Some(V::AsInt(6)));
    // The provider's default limit is 2000.
    let d = p.meter().u64_counter("d").build();
    for i in 0..2500i64 {
        d.add(1, &[KeyValue::new("user", i)]);
    }
    let (points, _) = sum_points(&p, "d");
    assert_eq!(points.len(), DEFAULT_CARDINALITY_LIMIT);
    assert_eq!(
        points[DEFAULT_CARDINALITY_LIMIT - 1].value,
        Some(V::AsInt(501))
    );
}

#[test]
fn exponential_histogram_export() {
    let p = provider();
    let h = p.meter().f64_histogram("latency").with_unit("s").build();
    let a = [kv("op", "get")];
    for v in [1.0, 2.0] {
        h.record(v, &a);
    }
    let pt = &exp_points(&p, "latency")[0];
    // 1 and 2 need scale 7 (see exponential::tests::starts_at_scale_20).
    assert_eq!(
        (pt.count, pt.sum, pt.min, pt.max),
        (2, Some(3.0), Some(1.0), Some(2.0))
    );
    assert_eq!(pt.scale, 7);
    let pos = pt.positive.clone().unwrap_or_default();
    assert_eq!((pos.offset, pos.bucket_counts.len()), (-1, 129));
    assert_eq!((pos.bucket_counts[0], pos.bucket_counts[128]), (1, 1));
    assert!(pt.negative.is_none());
    // Cumulative; zero and negative values; non-finite ignored.
    for v in [0.0, -1.0, f64::NAN, f64::INFINITY, 4.0] {
        h.record(v, &a);
    }
    let pt = &exp_points(&p, "latency")[0];
    assert_eq!((pt.count, pt.zero_count, pt.sum), (5, 1, Some(6.0)));
    assert_eq!((pt.min, pt.max), (Some(-1.0), Some(4.0)));
    // 1, 2, 4 at scale 6: buckets -1, 63, 127.
    assert_eq!(pt.scale, 6);
    let pos = pt.positive.clone().unwrap_or_default();
    assert_eq!((pos.offset, pos.bucket_counts.len()), (-1, 129));
    assert_eq!(
        (
            pos.bucket_counts[0],
            pos.bucket_counts[64],
            pos.bucket_counts[128]
        ),
        (1, 1, 1)
    );
    let neg = pt.negative.clone().unwrap_or_default();
    assert_eq!((neg.offset, neg.bucket_counts.clone()), (-1, vec![1]));
}

#[test]
fn explicit_histogram_export() {
    let p = provider();
    let h = p
        .meter()
        .f64_histogram("size")
        .with_explicit_buckets(vec![10.0, 1.0, 100.0])
        .build();
    for v in [0.5, 1.0, 5.0, 10.0, 50.0, 1000.0, -3.0] {
        h.record(v, &[]);
    }
    let pt = &explicit_points(&p, "size")[0];
    assert_eq!(pt.explicit_bounds, vec![1.0, 10.0, 100.0]);
    assert_eq!(pt.bucket_counts, vec![3, 2, 1, 1]);
    assert_eq!((pt.count, pt.min, pt.max), (7, Some(-3.0), Some(1000.0)));
    assert_eq!(pt.sum, Some(1063.5));
}

#[test]
fn threads_merge_into_one_series() {
    let p = provider();
    let m = p.meter();
    let c = m.u64_counter("c").build();
    let h = m.f64_histogram("h").build();
    let threads = 20;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (c, h) = (c.clone(), h.clone());
            std::thread::spawn(move || {
                let bound = c.bind(&[kv("k", "v")]);
                for i in 0..1000 {
                    c.add(1, &[kv("k", "v")]);
                    bound.add(1);
                    h.record(f64::from(t * 1000 + i + 1), &[kv("k", "v")]);
                }
            })
        })
        .collect();
    for t in hs {
        assert!(t.join().is_ok());
    }
    assert_eq!(sum_points(&p, "c").0[0].value, Some(V::AsInt(2 * 20_000)));
    let pt = &exp_points(&p, "h")[0];
    assert_eq!(pt.count, 20_000);
    assert_eq!(pt.sum, Some(20_000.0 * 20_001.0 / 2.0));
    assert_eq!((pt.min, pt.max), (Some(1.0), Some(20_000.0)));
    let buckets = pt.positive.clone().unwrap_or_default().bucket_counts;
    assert!(buckets.len() <= DEFAULT_MAX_SIZE);
    assert_eq!(buckets.iter().sum::<u64>(), 20_000);
}

#[test]
fn request_has_resource_scope_and_self_metrics() {
    let sink = MemorySink::new();
    sink.send(Signal::Traces, vec![]);
    let p = MeterProvider::builder()
        .with_service_name("checkout")
        .with_resource([KeyValue::new("host.name", "web-1")])
        .with_sink(sink.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    p.meter().u64_counter("c").build().add(1, &[]);
    p.force_flush();
    let reqs = sink.metrics();
    assert_eq!(reqs.len(), 1);
    let rm = &reqs[0].resource_metrics[0];
    let res = attrs(&rm.resource.clone().unwrap_or_default().attributes);
    assert!(res.contains(&("service.name".into(), "checkout".into())));
    assert!(res.contains(&("host.name".into(), "web-1".into())));
    assert!(res.contains(&("telemetry.sdk.name".into(), "sonde-sdk".into())));
    assert_eq!(res.iter().filter(|(k, _)| k == "service.name").count(), 1);
    let scope = rm.scope_metrics[0].scope.clone().unwrap_or_default();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("sonde-sdk", env!("CARGO_PKG_VERSION"))
    );
    let exported = match metric(&reqs[0], "sonde_sdk_exported_batches").data {
        Some(Data::Sum(s)) => s.data_points,
        other => panic!("{other:?}"),
    };
    let by_signal: Vec<_> = exported
        .iter()
        .map(|p| (attrs(&p.attributes)[0].1.clone(), p.value))
        .collect();
    assert_eq!(
        by_signal,
        vec![
            ("metrics".to_string(), Some(V::AsInt(0))),
            ("traces".to_string(), Some(V::AsInt(1))),
            ("logs".to_string(), Some(V::AsInt(0))),
        ]
    );
    metric(&reqs[0], "sonde_sdk_dropped_batches");
    let quiet = MeterProvider::builder()
        .with_self_metrics(false)
        .with_sink(sink)
        .build();
    let req = quiet.collect();
    assert!(req.resource_metrics[0].scope_metrics[0].metrics.is_empty());
}

#[test]
fn interval_changes_apply_within_a_second() {
    let sink = MemorySink::new();
    let p = MeterProvider::builder()
        .with_sink(sink.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    p.meter().u64_counter("c").build().add(1, &[]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(sink.metrics().is_empty());
    let start = Instant::now();
    p.set_interval(Duration::from_millis(100));
    assert_eq!(p.interval(), Duration::from_millis(100));
    while sink.metrics().len() < 3 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sink.metrics().len() >= 3, "exports every 100 ms");
    assert!(start.elapsed() < Duration::from_secs(1));
    p.set_interval(Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(150));
    let n = sink.metrics().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.metrics().len(), n, "back to hourly");
}

#[test]
fn shutdown_and_drop_export_a_last_time() {
    let sink = MemorySink::new();
    let p = MeterProvider::builder().with_sink(sink.clone()).build();
    let c = p.meter().u64_counter("c").build();
    c.add(1, &[]);
    assert!(p.shutdown(Duration::from_secs(1)));
    assert_eq!(sink.metrics().len(), 1);
    drop(p);
    assert_eq!(sink.metrics().len(), 1, "no second export after shutdown");
    let p = MeterProvider::builder().with_sink(sink.clone()).build();
    let p2 = p.clone();
    drop(p);
    assert_eq!(sink.metrics().len(), 1, "a clone still lives");
    drop(p2);
    assert_eq!(sink.metrics().len(), 2);
    c.add(1, &[]); // instruments outlive the provider harmlessly
}

#[test]
fn same_name_same_instrument() {
    let p = provider();
    let m = p.meter();
    m.u64_counter("c").build().add(1, &[]);
    m.u64_counter("c").build().add(1, &[]);
    assert_eq!(sum_points(&p, "c").0[0].value, Some(V::AsInt(2)));
    let n = p.collect().resource_metrics[0].scope_metrics[0]
        .metrics
        .len();
    assert_eq!(n, 1);
}
