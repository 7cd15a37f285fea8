//! Aggregated state to OTLP (`opentelemetry-proto` prost types).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    self as pb, exponential_histogram_data_point::Buckets as PbBuckets, metric::Data,
    number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exponential::{Buckets, ExpPoint};
use super::histogram::{ExplicitPoint, HistAgg, HistPoint};
use super::{Descriptor, GaugeState, HistState, Number, SumState};
use crate::attributes::{to_otlp, KeyValue};
use crate::export::{Signal, Sink};

/// The scope every metric of this SDK is reported under.
pub const SCOPE_NAME: &str = "sonde-sdk";

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// An instrument, as the reader sees it.
pub(crate) trait Collect: Send + Sync {
    /// The instrument's metric, `None` if it has no series yet.
    fn collect(&self, now: u64) -> Option<Metric>;
}

fn metric(desc: &Descriptor, data: Data) -> Metric {
    Metric {
        name: desc.name.clone(),
        description: desc.description.clone(),
        unit: desc.unit.clone(),
        metadata: Vec::new(),
        data: Some(data),
    }
}

fn number_point(
    attributes: &[KeyValue],
    start: u64,
    now: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: to_otlp(attributes),
        start_time_unix_nano: start,
        time_unix_nano: now,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    }
}

impl<T: Number> Collect for SumState<T> {
    fn collect(&self, now: u64) -> Option<Metric> {
        let sets = self.table.sets();
        if sets.is_empty() {
            return None;
        }
        let data_points = sets
            .iter()
            .map(|(attrs, sum)| number_point(attrs, self.desc.start, now, T::read(sum)))
            .collect();
        Some(metric(
            &self.desc,
            Data::Sum(pb::Sum {
                data_points,
                aggregation_temporality: CUMULATIVE,
                is_monotonic: self.monotonic,
            }),
        ))
    }
}

impl<T: Number> Collect for GaugeState<T> {
    fn collect(&self, now: u64) -> Option<Metric> {
        let sets = self.table.sets();
        if sets.is_empty() {
            return None;
        }
        let data_points = sets
            .iter()
            .map(|(attrs, cell)| {
                let bits = cell.load(std::sync::atomic::Ordering::Relaxed);
                number_point(attrs, self.desc.start, now, T::bits_value(bits))
            })
            .collect();
        Some(metric(&self.desc, Data::Gauge(pb::Gauge { data_points })))
    }
}

impl<T: Number> Collect for HistState<T> {
    fn collect(&self, now: u64) -> Option<Metric> {
        let sets = self.table.sets();
        let first = sets.first()?;
        let start = self.desc.start;
        Some(match &*first.1 {
            HistAgg::Exponential { .. } => {
                let data_points = sets
                    .iter()
                    .filter_map(|(attrs, h)| match h.collect() {
                        HistPoint::Exponential(p) => Some(exp_point(attrs, start, now, &p)),
                        HistPoint::Explicit(_) => None,
                    })
                    .collect();
                metric(
                    &self.desc,
                    Data::ExponentialHistogram(pb::ExponentialHistogram {
                        data_points,
                        aggregation_temporality: CUMULATIVE,
                    }),
                )
            }
            HistAgg::Explicit { bounds, .. } => {
                let data_points = sets
                    .iter()
                    .filter_map(|(attrs, h)| match h.collect() {
                        HistPoint::Explicit(p) => {
                            Some(explicit_point(attrs, start, now, bounds, &p))
                        }
                        HistPoint::Exponential(_) => None,
                    })
                    .collect();
                metric(
                    &self.desc,
                    Data::Histogram(pb::Histogram {
                        data_points,
                        aggregation_temporality: CUMULATIVE,
                    }),
                )
            }
        })
    }
}

fn min_max(count: u64, min: f64, max: f64) -> (Option<f64>, Option<f64>) {
    if count == 0 {
        (None, None)
    } else {
        (Some(min), Some(max))
    }
}

fn buckets(b: &Buckets) -> Option<PbBuckets> {
    (!b.counts.is_empty()).then(|| PbBuckets {
        offset: b.offset,
        bucket_counts: b.counts.clone(),
    })
}

pub(crate) fn exp_point(
    attributes: &[KeyValue],
    start: u64,
    now: u64,
    p: &ExpPoint,
) -> pb::ExponentialHistogramDataPoint {
    let (min, max) = min_max(p.count, p.min, p.max);
    pb::ExponentialHistogramDataPoint {
        attributes: to_otlp(attributes),
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: p.count,
        sum: Some(p.sum),
        scale: p.scale,
        zero_count: p.zero_count,
        positive: buckets(&p.positive),
        negative: buckets(&p.negative),
        flags: 0,
        exemplars: Vec::new(),
        min,
        max,
        zero_threshold: 0.0,
    }
}

fn explicit_point(
    attributes: &[KeyValue],
    start: u64,
    now: u64,
    bounds: &[f64],
    p: &ExplicitPoint,
) -> pb::HistogramDataPoint {
    let (min, max) = min_max(p.count, p.min, p.max);
    pb::HistogramDataPoint {
        attributes: to_otlp(attributes),
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: p.count,
        sum: Some(p.sum),
        bucket_counts: p.counts.clone(),
        explicit_bounds: bounds.to_vec(),
        exemplars: Vec::new(),
        flags: 0,
        min,
        max,
    }
}

/// `sonde_sdk_exported_batches` and `sonde_sdk_dropped_batches`, per
/// signal if the sink keeps them apart.
pub(crate) fn self_metrics(sink: &dyn Sink, start: u64, now: u64) -> Vec<Metric> {
    let mut rows: Vec<(Vec<KeyValue>, u64, u64)> = Vec::new();
    for s in Signal::ALL {
        if let Some(st) = sink.signal_stats(s) {
            rows.push((
                vec![KeyValue::new("signal", s.name())],
                st.sent_batches,
                st.dropped_batches,
            ));
        }
    }
    if rows.is_empty() {
        let st = sink.stats();
        rows.push((Vec::new(), st.sent_batches, st.dropped_batches));
    }
    let sum = |name: &str, description: &str, pick: fn(&(Vec<KeyValue>, u64, u64)) -> u64| {
        let desc = Descriptor {
            name: name.to_string(),
            description: description.to_string(),
            unit: "{batch}".to_string(),
            limit: 0,
            start,
        };
        let data_points = rows
            .iter()
            .map(|r| {
                number_point(
                    &r.0,
                    start,
                    now,
                    number_data_point::Value::AsInt(pick(r) as i64),
                )
            })
            .collect();
        metric(
            &desc,
            Data::Sum(pb::Sum {
                data_points,
                aggregation_temporality: CUMULATIVE,
                is_monotonic: true,
            }),
        )
    };
    vec![
        sum(
            "sonde_sdk_exported_batches",
            "Batches the SDK's sink delivered.",
            |r| r.1,
        ),
        sum(
            "sonde_sdk_dropped_batches",
            "Batches the SDK's sink dropped (queue full, retries exhausted, rejected).",
            |r| r.2,
        ),
    ]
}

/// One export request: the resource, one scope, the metrics.
pub(crate) fn request(resource: &[KeyValue], metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![pb::ResourceMetrics {
            resource: Some(Resource {
                attributes: to_otlp(resource),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_metrics: vec![pb::ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
