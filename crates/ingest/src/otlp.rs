//! OTLP metrics, translated by the OpenTelemetry-to-Prometheus compatibility
//! rules so that PromQL sees what a Prometheus user expects:
//! - metric names: unit and `_total` suffixes (`http.server.duration` with unit
//!   `s` becomes `http_server_duration_seconds`), invalid characters to `_`;
//! - attribute keys sanitised into label names;
//! - `service.name` (with `service.namespace`) becomes `job`,
//!   `service.instance.id` becomes `instance`, and the other resource
//!   attributes are kept on a `target_info` series;
//! - the instrumentation scope becomes `otel_scope_name`/`otel_scope_version`;
//! - histograms become `_bucket{le}`/`_sum`/`_count`, summaries `{quantile}`;
//! - delta temporality is accumulated into cumulative counters, so `rate()`
//!   and `increase()` read delta and cumulative sources alike.
//! - exemplars (`otlp_exemplars.rs`) go to the series of a gauge or sum
//!   point, and for histograms to the `_bucket` whose `le` is the smallest
//!   bound at or above the exemplar's value.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric,
};
use parking_lot::Mutex;
use prost::Message;
use sonde_model::{
    stale_nan, Exemplar, Labels, LabelsBuilder, MetricMetadata, MetricType, Sample, Series,
};

use crate::otlp_exemplars;
use crate::{Error, MetricsBatch, Result};

pub use opentelemetry_proto::tonic::collector::metrics::v1 as collector;
pub use opentelemetry_proto::tonic::common::v1 as common;
pub use opentelemetry_proto::tonic::resource::v1 as resource;

/// `DataPointFlags.NO_RECORDED_VALUE`: the point marks the series stale.
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Delta accumulators kept before the map is reset; a reset looks like a
/// counter reset to `rate()`, which handles it, so memory stays bounded.
const MAX_DELTA_STATE: usize = 1_000_000;

/// Attributes of one data point (with its resource and scope) beyond which
/// the point is dropped: no series could hold that many labels, and this
/// bounds the work an adversarial request can cause.
pub const MAX_ATTRIBUTES: usize = 256;

pub fn decode_proto(body: &[u8]) -> Result<ExportMetricsServiceRequest> {
    ExportMetricsServiceRequest::decode(body).map_err(|e| Error::Protobuf(e.to_string()))
}

pub fn decode_json(body: &[u8]) -> Result<ExportMetricsServiceRequest> {
    serde_json::from_slice(body).map_err(|e| Error::Json(e.to_string()))
}

/// Converts OTLP metrics; holds the running sums for delta temporality.
#[derive(Default)]
pub struct MetricsConverter {
    /// Per delta stream: timestamp of the last point applied, running total.
    delta_sums: Mutex<HashMap<Labels, (i64, f64)>>,
}

struct Out<'a> {
    batch: &'a mut MetricsBatch,
    index: HashMap<Labels, usize>,
}

impl Out<'_> {
    fn push(&mut self, labels: Labels, t: i64, v: f64) {
        match self.index.get(&labels) {
            Some(&i) => self.batch.series[i].samples.push(Sample { t, v }),
            None => {
                self.index.insert(labels.clone(), self.batch.series.len());
                self.batch.series.push(Series {
                    labels,
                    samples: vec![Sample { t, v }],
                    histograms: Vec::new(),
                });
            }
        }
    }
}

impl MetricsConverter {
    pub fn new() -> MetricsConverter {
        MetricsConverter::default()
    }

    /// Converts a request; `now_ms` stamps points that carry no time.
    pub fn convert(&self, req: &ExportMetricsServiceRequest, now_ms: i64) -> MetricsBatch {
        let mut batch = MetricsBatch::default();
        let mut out = Out {
            batch: &mut batch,
            index: HashMap::new(),
        };
        for rm in &req.resource_metrics {
            let attrs: &[KeyValue] = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let mut base = LabelsBuilder::new();
            let service = attr_str(attrs, "service.name");
            let namespace = attr_str(attrs, "service.namespace");
            match (namespace, service) {
                (Some(ns), Some(svc)) => base.set("job", format!("{ns}/{svc}")),
                (None, Some(svc)) => base.set("job", svc),
                _ => &mut base,
            };
            if let Some(inst) = attr_str(attrs, "service.instance.id") {
                base.set("instance", inst);
            }
            let mut latest_t = None;
            for sm in &rm.scope_metrics {
                let mut scoped = base.clone();
                if let Some(scope) = &sm.scope {
                    scoped.set("otel_scope_name", scope.name.clone());
                    scoped.set("otel_scope_version", scope.version.clone());
                }
                for m in &sm.metrics {
                    if let Some(t) = self.convert_metric(m, &scoped, now_ms, &mut out) {
                        latest_t = Some(latest_t.map_or(t, |l: i64| l.max(t)));
                    }
                }
            }
            let extra: Vec<&KeyValue> = attrs
                .iter()
                .filter(|kv| {
                    !matches!(
                        kv.key.as_str(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                })
                .collect();
            if let (Some(t), false) = (latest_t, extra.is_empty()) {
                let mut info = base.clone();
                add_attributes(&mut info, extra.into_iter());
                info.set(sonde_model::METRIC_NAME, "target_info");
                out.push(info.build(), t, 1.0);
                out.batch.metadata.push(MetricMetadata {
                    metric: "target_info".into(),
                    kind: MetricType::Gauge,
                    help: "Target metadata".into(),
                    unit: String::new(),
                });
            }
        }
        batch
    }

    /// Converts one metric; returns the latest timestamp it carried.
    fn convert_metric(
        &self,
        m: &Metric,
        scoped: &LabelsBuilder,
        now_ms: i64,
        out: &mut Out<'_>,
    ) -> Option<i64> {
        let data = m.data.as_ref()?;
        let (kind, monotonic) = match data {
            metric::Data::Gauge(_) => (MetricType::Gauge, false),
            metric::Data::Sum(s) => (
                if s.is_monotonic {
                    MetricType::Counter
                } else {
                    MetricType::Gauge
                },
                s.is_monotonic,
            ),
            metric::Data::Histogram(_) | metric::Data::ExponentialHistogram(_) => {
                (MetricType::Histogram, false)
            }
            metric::Data::Summary(_) => (MetricType::Summary, false),
        };
        let name = prometheus_name(&m.name, &m.unit, kind, monotonic);
        if name.is_empty() {
            return None;
        }
        out.batch.metadata.push(MetricMetadata {
            metric: name.clone(),
            kind,
            help: m.description.clone(),
            unit: prometheus_unit(&m.unit),
        });
        let ts = |nanos: u64| {
            if nanos == 0 {
                now_ms
            } else {
                (nanos / 1_000_000) as i64
            }
        };
        let mut latest: Option<i64> = None;
        let is_delta = |temporality: i32| temporality == AggregationTemporality::Delta as i32;
        // The labels shared by every series of a data point, built once.
        let point_base = |attrs: &[KeyValue]| -> Option<LabelsBuilder> {
            if attrs.len() + scoped.len() > MAX_ATTRIBUTES {
                return None;
            }
            let mut b = scoped.clone();
            add_attributes(&mut b, attrs.iter());
            Some(b)
        };
        let too_many =
            || format!("a data point of {name} has more than {MAX_ATTRIBUTES} attributes; dropped");
        let mut points: Vec<Point> = Vec::new();
        match data {
            metric::Data::Gauge(g) => {
                for p in &g.data_points {
                    let Some(base) = point_base(&p.attributes) else {
                        out.batch.reject(too_many);
                        continue;
                    };
                    let Some(v) = number_value(p.value, p.flags) else {
                        out.batch
                            .reject(|| format!("a data point of {name} has no value; dropped"));
                        continue;
                    };
                    let t = ts(p.time_unix_nano);
                    let labels = with_name(&base, &name, None);
                    let ex = point_exemplars(&labels, v, &p.exemplars, t);
                    points.push((t, vec![(labels, v)], false, ex));
                }
            }
            metric::Data::Sum(s) => {
                let delta = is_delta(s.aggregation_temporality);
                if delta && !s.is_monotonic {
                    // A delta of a quantity that goes up and down has no
                    // cumulative form without its starting value.
                    out.batch.reject(|| format!("{name} is a non-monotonic sum with delta temporality, which cannot be stored cumulatively; dropped"));
                    return None;
                }
                for p in &s.data_points {
                    let Some(base) = point_base(&p.attributes) else {
                        out.batch.reject(too_many);
                        continue;
                    };
                    let Some(v) = number_value(p.value, p.flags) else {
                        out.batch
                            .reject(|| format!("a data point of {name} has no value; dropped"));
                        continue;
                    };
                    let stale = sonde_model::is_stale_nan(v);
                    let t = ts(p.time_unix_nano);
                    let labels = with_name(&base, &name, None);
                    let ex = point_exemplars(&labels, v, &p.exemplars, t);
                    points.push((t, vec![(labels, v)], delta && !stale, ex));
                }
            }
            metric::Data::Histogram(h) => {
                for p in &h.data_points {
                    let Some(base) = point_base(&p.attributes) else {
                        out.batch.reject(too_many);
                        continue;
                    };
                    let mut buckets = Vec::with_capacity(p.bucket_counts.len() + 1);
                    let mut cumulative = 0u64;
                    for (i, count) in p.bucket_counts.iter().enumerate() {
                        cumulative = cumulative.saturating_add(*count);
                        let le = p
                            .explicit_bounds
                            .get(i)
                            .map_or("+Inf".to_string(), |b| format_le(*b));
                        buckets.push((le, cumulative as f64));
                    }
                    if p.bucket_counts.is_empty() {
                        buckets.push(("+Inf".into(), p.count as f64));
                    }
                    let delta = is_delta(h.aggregation_temporality);
                    let t = ts(p.time_unix_nano);
                    let hp = HistogramPoint {
                        buckets,
                        sum: p.sum,
                        count: p.count,
                        flags: p.flags,
                        exemplars: otlp_exemplars::convert(&p.exemplars, t),
                    };
                    points.push(hp.into_point(&base, &name, t, delta));
                }
            }
            metric::Data::ExponentialHistogram(h) => {
                for p in &h.data_points {
                    let Some(base) = point_base(&p.attributes) else {
                        out.batch.reject(too_many);
                        continue;
                    };
                    let delta = is_delta(h.aggregation_temporality);
                    let t = ts(p.time_unix_nano);
                    let hp = HistogramPoint {
                        buckets: exponential_to_classic(p),
                        sum: p.sum,
                        count: p.count,
                        flags: p.flags,
                        exemplars: otlp_exemplars::convert(&p.exemplars, t),
                    };
                    points.push(hp.into_point(&base, &name, t, delta));
                }
            }
            metric::Data::Summary(s) => {
                for p in &s.data_points {
                    let Some(base) = point_base(&p.attributes) else {
                        out.batch.reject(too_many);
                        continue;
                    };
                    let mut series: Vec<(Labels, f64)> = p
                        .quantile_values
                        .iter()
                        .map(|q| {
                            (
                                with_name(&base, &name, Some(("quantile", format_le(q.quantile)))),
                                q.value,
                            )
                        })
                        .collect();
                    series.push((with_name(&base, &format!("{name}_sum"), None), p.sum));
                    series.push((
                        with_name(&base, &format!("{name}_count"), None),
                        p.count as f64,
                    ));
                    mark_stale(&mut series, p.flags & FLAG_NO_RECORDED_VALUE != 0);
                    points.push((ts(p.time_unix_nano), series, false, Vec::new()));
                }
            }
        }
        for (t, mut series, delta, exemplars) in points {
            if delta && !self.accumulate(&mut series, t) {
                out.batch.reject(|| format!("a delta point of {name} at {t} repeats or precedes one already applied; dropped"));
                continue;
            }
            latest = Some(latest.map_or(t, |l| l.max(t)));
            for (labels, v) in series {
                out.push(labels, t, v);
            }
            out.batch.exemplars.extend(exemplars);
        }
        latest
    }

    /// Turns the deltas of one point (all its series) into running totals.
    /// A point not newer than the last one applied to its stream is a retry
    /// or a reordering: applying it twice would double-count, so it is
    /// refused (returns false) and nothing changes.
    fn accumulate(&self, series: &mut [(Labels, f64)], t: i64) -> bool {
        let mut sums = self.delta_sums.lock();
        if series
            .iter()
            .any(|(l, _)| sums.get(l).is_some_and(|(last_t, _)| *last_t >= t))
        {
            return false;
        }
        if sums.len() + series.len() > MAX_DELTA_STATE {
            sums.clear();
        }
        for (labels, v) in series.iter_mut() {
            let entry = sums.entry(labels.clone()).or_insert((t, 0.0));
            entry.0 = t;
            entry.1 += *v;
            *v = entry.1;
        }
        true
    }
}

/// One data point turned into series: its time, each series with its value,
/// whether the values are deltas still to be accumulated, and the point's
/// exemplars with the series each belongs to.
type Point = (i64, Vec<(Labels, f64)>, bool, Vec<(Labels, Exemplar)>);

/// The exemplars of a gauge or sum point, all on its one series; none on a
/// point that marks the series stale.
fn point_exemplars(
    labels: &Labels,
    v: f64,
    exemplars: &[opentelemetry_proto::tonic::metrics::v1::Exemplar],
    t: i64,
) -> Vec<(Labels, Exemplar)> {
    if exemplars.is_empty() || sonde_model::is_stale_nan(v) {
        return Vec::new();
    }
    otlp_exemplars::convert(exemplars, t)
        .into_iter()
        .map(|e| (labels.clone(), e))
        .collect()
}

/// A histogram data point as classic cumulative buckets (`le`, count).
struct HistogramPoint {
    buckets: Vec<(String, f64)>,
    sum: Option<f64>,
    count: u64,
    flags: u32,
    exemplars: Vec<Exemplar>,
}

impl HistogramPoint {
    /// The `_bucket`, `_sum` and `_count` series of the point.
    fn into_point(self, base: &LabelsBuilder, name: &str, t: i64, delta: bool) -> Point {
        let bucket = format!("{name}_bucket");
        // Each exemplar goes to the bucket whose `le` is the smallest bound
        // at or above its value.
        let bounds: Vec<f64> = self
            .buckets
            .iter()
            .map(|(le, _)| le.parse().unwrap_or(f64::NAN))
            .collect();
        let mut series: Vec<(Labels, f64)> = self
            .buckets
            .into_iter()
            .map(|(le, count)| (with_name(base, &bucket, Some(("le", le))), count))
            .collect();
        let stale = self.flags & FLAG_NO_RECORDED_VALUE != 0;
        let exemplars: Vec<(Labels, Exemplar)> = if stale {
            Vec::new()
        } else {
            self.exemplars
                .into_iter()
                .filter_map(|e| {
                    let i = otlp_exemplars::bucket_for(e.value, &bounds)?;
                    Some((series[i].0.clone(), e))
                })
                .collect()
        };
        if let Some(sum) = self.sum {
            series.push((with_name(base, &format!("{name}_sum"), None), sum));
        }
        series.push((
            with_name(base, &format!("{name}_count"), None),
            self.count as f64,
        ));
        mark_stale(&mut series, stale);
        (t, series, delta && !stale, exemplars)
    }
}

fn with_name(base: &LabelsBuilder, metric: &str, extra: Option<(&str, String)>) -> Labels {
    let mut b = base.clone();
    if let Some((k, v)) = extra {
        b.set(k, v);
    }
    b.set(sonde_model::METRIC_NAME, metric);
    b.build()
}

fn mark_stale(series: &mut [(Labels, f64)], stale: bool) {
    if stale {
        for (_, v) in series {
            *v = stale_nan();
        }
    }
}

/// The point's value; a point flagged "no recorded value" marks the series
/// stale; a point without a value and without that flag is invalid.
fn number_value(v: Option<number_data_point::Value>, flags: u32) -> Option<f64> {
    if flags & FLAG_NO_RECORDED_VALUE != 0 {
        return Some(stale_nan());
    }
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    }
}

/// Exponential buckets re-bucketed at scale 0 (powers of two) into classic
/// cumulative `le` buckets, so `histogram_quantile` works on them. Only the
/// populated range is emitted, plus the zero bucket and `+Inf`.
fn exponential_to_classic(
    p: &opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let negative: u64 = p
        .negative
        .as_ref()
        .map_or(0, |b| b.bucket_counts.iter().sum());
    let mut cumulative = negative + p.zero_count;
    if p.zero_count > 0 || negative > 0 {
        out.push((format_le(p.zero_threshold), cumulative as f64));
    }
    if let Some(pos) = &p.positive {
        // Bucket i covers (base^(offset+i), base^(offset+i+1)] with
        // base = 2^(2^-scale); at scale 0 an index k is (2^k, 2^(k+1)].
        let mut by_pow2: std::collections::BTreeMap<i64, u64> = Default::default();
        for (i, c) in pos.bucket_counts.iter().enumerate() {
            let index = pos.offset as i64 + i as i64;
            // The spec bounds scale to -10..=20; clamping keeps hostile
            // values from overflowing the shifts.
            let scale = p.scale.clamp(-10, 20);
            let upper_pow2 = if scale >= 0 {
                // Several fine buckets share one power-of-two upper bound.
                (index + 1 + (1i64 << scale) - 1).div_euclid(1i64 << scale)
            } else {
                (index + 1).saturating_mul(1i64 << -scale)
            };
            let slot = by_pow2.entry(upper_pow2).or_default();
            *slot = slot.saturating_add(*c);
        }
        for (pow, c) in by_pow2 {
            cumulative = cumulative.saturating_add(c);
            out.push((
                format_le(2f64.powi(pow.clamp(-1074, 1023) as i32)),
                cumulative as f64,
            ));
        }
    }
    out.push(("+Inf".to_string(), p.count as f64));
    out
}

/// Prometheus formats `le` and `quantile` values as Go's `%g`-like shortest
/// float, with `+Inf`.
fn format_le(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v}");
    s
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
}

/// Adds attributes as labels; keys that sanitise to the same name have their
/// values joined with `;`, as the compatibility spec says.
fn add_attributes<'a>(b: &mut LabelsBuilder, attrs: impl Iterator<Item = &'a KeyValue>) {
    for kv in attrs {
        let name = sanitize_label_name(&kv.key);
        if name.is_empty() || name == sonde_model::METRIC_NAME {
            continue;
        }
        let value = kv.value.as_ref().map(any_value_string).unwrap_or_default();
        let joined = match b.get(&name) {
            Some(prev) if !prev.is_empty() && !value.is_empty() => format!("{prev};{value}"),
            _ => value,
        };
        b.set(name, joined);
    }
}

pub fn any_value_string(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<serde_json::Value> = a.values.iter().map(any_value_json).collect();
            serde_json::Value::Array(items).to_string()
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let map: serde_json::Map<String, serde_json::Value> = kv
                .values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .map_or(serde_json::Value::Null, any_value_json),
                    )
                })
                .collect();
            serde_json::Value::Object(map).to_string()
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}

fn any_value_json(v: &AnyValue) -> serde_json::Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => serde_json::Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Value::from(*d),
        _ => serde_json::Value::String(any_value_string(v)),
    }
}

/// `[^a-zA-Z0-9_]` to `_`; a leading digit gets a `key_` prefix.
pub fn sanitize_label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The unit as Prometheus metadata shows it (`seconds`, `bytes_per_second`).
fn prometheus_unit(unit: &str) -> String {
    unit_tokens(unit).join("_")
}

fn unit_tokens(unit: &str) -> Vec<String> {
    // `{packets}` and other curly-brace annotations carry no unit.
    let unit = strip_annotations(unit);
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let mut tokens = Vec::new();
    if !main.is_empty() && main != "1" {
        tokens.push(
            unit_word(main)
                .map(str::to_string)
                .unwrap_or_else(|| clean_token(main)),
        );
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        tokens.push("per".into());
        tokens.push(
            per_unit_word(per)
                .map(str::to_string)
                .unwrap_or_else(|| clean_token(per)),
        );
    }
    tokens.retain(|t| !t.is_empty());
    tokens
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn clean_token(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}

/// The Prometheus metric name of an OTLP metric.
pub fn prometheus_name(name: &str, unit: &str, kind: MetricType, monotonic: bool) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if monotonic {
        tokens.retain(|t| t != "total");
    }
    for t in unit_tokens(unit) {
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    if kind == MetricType::Gauge
        && strip_annotations(unit).trim() == "1"
        && !tokens.iter().any(|t| t == "ratio")
    {
        tokens.push("ratio".into());
    }
    if monotonic {
        tokens.push("total".into());
    }
    let mut s = tokens.join("_");
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_compatibility_rules() {
        let n = |name, unit, kind, mono| prometheus_name(name, unit, kind, mono);
        assert_eq!(
            n("http.server.duration", "s", MetricType::Histogram, false),
            "http_server_duration_seconds"
        );
        assert_eq!(
            n("requests", "{request}", MetricType::Counter, true),
            "requests_total"
        );
        assert_eq!(
            n("requests.total", "1", MetricType::Counter, true),
            "requests_total"
        );
        assert_eq!(
            n("cpu.utilization", "1", MetricType::Gauge, false),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            n("net.io", "By/s", MetricType::Gauge, false),
            "net_io_bytes_per_second"
        );
        assert_eq!(
            n("queue_size_bytes", "By", MetricType::Gauge, false),
            "queue_size_bytes"
        );
        assert_eq!(n("2xx", "", MetricType::Gauge, false), "_2xx");
        assert_eq!(sanitize_label_name("http.method"), "http_method");
        assert_eq!(sanitize_label_name("0abc"), "key_0abc");
    }

    #[test]
    fn exponential_buckets_become_cumulative_powers_of_two() {
        use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
        use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;
        // Scale 1: base sqrt(2). Index 0 = (1, 1.41], 1 = (1.41, 2], 2 = (2, 2.83].
        let p = ExponentialHistogramDataPoint {
            scale: 1,
            count: 7,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 3, 1],
            }),
            ..Default::default()
        };
        let got = exponential_to_classic(&p);
        assert_eq!(
            got,
            vec![
                ("0".to_string(), 1.0),
                ("2".to_string(), 6.0),
                ("4".to_string(), 7.0),
                ("+Inf".to_string(), 7.0)
            ]
        );
    }
}
