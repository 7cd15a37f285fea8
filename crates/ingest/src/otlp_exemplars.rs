//! OTLP exemplars, translated as Prometheus's OTLP endpoint does: the value,
//! the time, `trace_id` and `span_id` as lowercase hex, and the filtered
//! attributes as further labels, within OpenMetrics' 128-character cap.

use opentelemetry_proto::tonic::metrics::v1::{exemplar, Exemplar as OtlpExemplar};
use sonde_model::{Exemplar, Labels, EXEMPLAR_MAX_LABEL_RUNES};

use crate::otlp::{any_value_string, sanitize_label_name};

const TRACE_ID: &str = "trace_id";
const SPAN_ID: &str = "span_id";

/// Converts the exemplars of one data point. An exemplar without a value
/// is skipped; one without a time takes the data point's time `point_t`.
pub(crate) fn convert(exemplars: &[OtlpExemplar], point_t: i64) -> Vec<Exemplar> {
    exemplars
        .iter()
        .filter_map(|e| convert_one(e, point_t))
        .collect()
}

fn convert_one(e: &OtlpExemplar, point_t: i64) -> Option<Exemplar> {
    let value = match e.value? {
        exemplar::Value::AsDouble(d) => d,
        exemplar::Value::AsInt(i) => i as f64,
    };
    let t = if e.time_unix_nano == 0 {
        point_t
    } else {
        (e.time_unix_nano / 1_000_000) as i64
    };
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(2 + e.filtered_attributes.len());
    let mut runes = 0;
    for (name, id) in [(TRACE_ID, &e.trace_id), (SPAN_ID, &e.span_id)] {
        // An all-zero id is OTLP's "no id".
        if id.iter().any(|b| *b != 0) {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            runes += name.len() + hex.len();
            pairs.push((name.to_string(), hex));
        }
    }
    // The ids always fit (at most 63 characters); attributes are added in
    // order while they fit, and those that would overflow are dropped.
    for kv in &e.filtered_attributes {
        let name = sanitize_label_name(&kv.key);
        if name.is_empty() || pairs.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let value = kv.value.as_ref().map(any_value_string).unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        let r = name.chars().count() + value.chars().count();
        if runes + r > EXEMPLAR_MAX_LABEL_RUNES {
            continue;
        }
        runes += r;
        pairs.push((name, value));
    }
    Some(Exemplar {
        labels: Labels::from_pairs(pairs),
        value,
        t,
    })
}

/// The bucket an exemplar belongs to, as Prometheus's OTLP translator
/// picks it: the one with the smallest upper bound (`le`) at or above its
/// value. `None` for a NaN value or if no bound is that large.
pub(crate) fn bucket_for(value: f64, bounds: &[f64]) -> Option<usize> {
    bounds
        .iter()
        .enumerate()
        .filter(|(_, b)| value <= **b)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

    fn attr(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ids_are_hex_and_attributes_are_capped_at_128_characters() {
        let e = OtlpExemplar {
            filtered_attributes: vec![
                attr("http.route", "/api"),
                attr("long", &"x".repeat(100)),
                attr("user", "u1"),
            ],
            time_unix_nano: 1_700_000_000_123_456_789,
            span_id: vec![0xab; 8],
            trace_id: (0u8..16).collect(),
            value: Some(exemplar::Value::AsInt(3)),
        };
        let got = convert(std::slice::from_ref(&e), 0);
        assert_eq!(got.len(), 1);
        let x = &got[0];
        assert_eq!((x.t, x.value), (1_700_000_000_123, 3.0));
        assert_eq!(
            x.labels,
            Labels::from_pairs([
                ("trace_id", "000102030405060708090a0b0c0d0e0f"),
                ("span_id", "abababababababab"),
                ("http_route", "/api"),
                ("user", "u1"),
            ])
        );
        assert!(x.label_runes() <= EXEMPLAR_MAX_LABEL_RUNES);
        // No time: the point's; zero ids: no id labels; no value: skipped.
        let bare = OtlpExemplar {
            trace_id: vec![0; 16],
            value: Some(exemplar::Value::AsDouble(0.5)),
            ..Default::default()
        };
        let none = OtlpExemplar::default();
        let got = convert(&[bare, none], 42);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].t, got[0].labels.len()), (42, 0));
    }

    #[test]
    fn histogram_exemplars_go_to_their_le_bucket_and_counters_to_total() {
        use crate::otlp::collector::ExportMetricsServiceRequest;
        use crate::otlp::MetricsConverter;
        use opentelemetry_proto::tonic::metrics::v1::{
            metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint,
            Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let t = 1_700_000_000_000u64 * 1_000_000;
        let ex = |v: f64, trace: u8| OtlpExemplar {
            time_unix_nano: t + 123_000_000,
            trace_id: vec![trace; 16],
            span_id: vec![0x0b; 8],
            value: Some(exemplar::Value::AsDouble(v)),
            ..Default::default()
        };
        let histogram = Metric {
            name: "rpc.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: t,
                    count: 4,
                    sum: Some(1.5),
                    bucket_counts: vec![1, 2, 1],
                    explicit_bounds: vec![0.1, 0.5],
                    exemplars: vec![ex(0.25, 0xaa), ex(7.0, 0xbb), ex(0.1, 0xcc)],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let counter = Metric {
            name: "requests".into(),
            data: Some(metric::Data::Sum(Sum {
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
                data_points: vec![NumberDataPoint {
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsInt(9)),
                    exemplars: vec![ex(1.0, 0xdd)],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", "api")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![histogram, counter],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = MetricsConverter::new().convert(&req, 0);
        let got: Vec<(String, Option<&str>, f64, String)> = batch
            .exemplars
            .iter()
            .map(|(series, e)| {
                assert_eq!(e.t, 1_700_000_000_123);
                assert_eq!(e.labels.get("span_id"), Some("0b0b0b0b0b0b0b0b"));
                (
                    series.metric_name().unwrap_or("").to_string(),
                    series.get("le"),
                    e.value,
                    e.labels.get("trace_id").unwrap_or("")[..4].to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "rpc_duration_seconds_bucket".into(),
                    Some("0.5"),
                    0.25,
                    "aaaa".into()
                ),
                (
                    "rpc_duration_seconds_bucket".into(),
                    Some("+Inf"),
                    7.0,
                    "bbbb".into()
                ),
                (
                    "rpc_duration_seconds_bucket".into(),
                    Some("0.1"),
                    0.1,
                    "cccc".into()
                ),
                ("requests_total".into(), None, 1.0, "dddd".into()),
            ]
        );
        // The exemplar's series is one of the batch's series.
        for (series, _) in &batch.exemplars {
            assert!(batch.series.iter().any(|s| s.labels == *series));
        }
    }

    #[test]
    fn bucket_is_the_smallest_bound_at_or_above_the_value() {
        let bounds = [0.1, 0.5, 1.0, f64::INFINITY];
        assert_eq!(bucket_for(0.05, &bounds), Some(0));
        assert_eq!(bucket_for(0.5, &bounds), Some(1));
        assert_eq!(bucket_for(0.7, &bounds), Some(2));
        assert_eq!(bucket_for(1e9, &bounds), Some(3));
        assert_eq!(bucket_for(f64::NAN, &bounds), None);
        assert_eq!(bucket_for(2.0, &[1.0]), None);
    }
}
