//! One OTLP `ExportMetricsServiceRequest`, rewritten in place every tick.
//!
//! Collectors emit the same metrics and data points in the same order tick
//! after tick, so the batch keeps last tick's message and overwrites it:
//! a metric slot whose name matches is reused, a data point whose attributes
//! match keeps its strings and only gets a new value and timestamp. In the
//! steady state a tick allocates only the encoded body. Slots left unwritten
//! at the end of a tick (a device gone, a collector disabled) are dropped.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// How a metric's points are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic cumulative sum (Prometheus counter, `_total`).
    Counter,
    /// A non-monotonic cumulative sum: a quantity that goes up and down
    /// (the OpenTelemetry hostmetrics conventions use it for usages).
    UpDown,
    /// A gauge: a value sampled now (utilization, load average).
    Gauge,
}

/// A metric's identity: OpenTelemetry name, unit and kind.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

/// An attribute value of a data point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attr<'a> {
    Str(&'a str),
    Int(i64),
}

impl<'a> From<&'a str> for Attr<'a> {
    fn from(s: &'a str) -> Self {
        Attr::Str(s)
    }
}

/// A data point value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    F64(f64),
    I64(i64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::I64(v.min(i64::MAX as u64) as i64)
    }
}

/// The request being rewritten, with write cursors.
pub struct Batch {
    request: ExportMetricsServiceRequest,
    next_metric: usize,
    now_ns: u64,
}

impl Batch {
    /// A batch whose one resource has `resource` attributes and whose one
    /// scope is `scope`@`version`.
    pub fn new(resource: &[(&str, String)], scope: &str, version: &str) -> Self {
        let attributes = resource
            .iter()
            .map(|(k, v)| key_value(k, Attr::Str(v)))
            .collect();
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: scope.into(),
                        version: version.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Batch {
            request,
            next_metric: 0,
            now_ns: 0,
        }
    }

    /// Starts a tick: points written from now on carry `now_ns`.
    pub fn begin(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        self.next_metric = 0;
    }

    /// The time of the tick being written.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn metrics(&mut self) -> &mut Vec<Metric> {
        &mut self.request.resource_metrics[0].scope_metrics[0].metrics
    }

    /// The metrics of the request, as written so far (all of them after
    /// `finish`).
    pub fn written(&self) -> &[Metric] {
        &self.request.resource_metrics[0].scope_metrics[0].metrics
    }

    /// Opens the next metric slot for writing `desc`'s points.
    pub fn metric(&mut self, desc: &Desc) -> MetricWriter<'_> {
        let i = self.next_metric;
        let now_ns = self.now_ns;
        self.next_metric += 1;
        let metrics = self.metrics();
        let reusable = metrics.get(i).is_some_and(|m| {
            m.name == desc.name
                && m.unit == desc.unit
                && match (&m.data, desc.kind) {
                    (Some(metric::Data::Sum(s)), Kind::Counter) => s.is_monotonic,
                    (Some(metric::Data::Sum(s)), Kind::UpDown) => !s.is_monotonic,
                    (Some(metric::Data::Gauge(_)), Kind::Gauge) => true,
                    _ => false,
                }
        });
        if !reusable {
            metrics.insert(i, new_metric(desc));
        }
        let points = match &mut metrics[i].data {
            Some(metric::Data::Sum(s)) => &mut s.data_points,
            Some(metric::Data::Gauge(g)) => &mut g.data_points,
            _ => unreachable!("new_metric makes sums and gauges only"),
        };
        MetricWriter {
            points,
            used: 0,
            now_ns,
        }
    }

    /// Ends a tick: drops the slots not written this time, and the metrics
    /// that got no point.
    pub fn finish(&mut self) {
        let n = self.next_metric;
        let metrics = self.metrics();
        metrics.truncate(n);
        metrics.retain(|m| point_count(m) > 0);
    }

    /// The request, for encoding.
    pub fn request(&self) -> &ExportMetricsServiceRequest {
        &self.request
    }

    /// The number of data points written.
    pub fn point_count(&self) -> usize {
        self.written().iter().map(point_count).sum()
    }

    /// Text for people: the resource, then one line per data point,
    /// `name{attr="value",...} value unit`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.request.resource_metrics[0].resource {
            for kv in &r.attributes {
                let _ = writeln!(out, "# resource {}={}", kv.key, attr_text(kv));
            }
        }
        for m in self.written() {
            let points = match &m.data {
                Some(metric::Data::Sum(s)) => &s.data_points,
                Some(metric::Data::Gauge(g)) => &g.data_points,
                _ => continue,
            };
            for p in points {
                out.push_str(&m.name);
                if !p.attributes.is_empty() {
                    out.push('{');
                    for (i, kv) in p.attributes.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{}=\"{}\"", kv.key, attr_text(kv));
                    }
                    out.push('}');
                }
                match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => {
                        let _ = write!(out, " {v}");
                    }
                    Some(number_data_point::Value::AsInt(v)) => {
                        let _ = write!(out, " {v}");
                    }
                    None => out.push_str(" NaN"),
                }
                if !m.unit.is_empty() {
                    let _ = write!(out, " {}", m.unit);
                }
                out.push('\n');
            }
        }
        out
    }
}

fn attr_text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn point_count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        _ => 0,
    }
}

fn new_metric(desc: &Desc) -> Metric {
    let data = match desc.kind {
        Kind::Counter | Kind::UpDown => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: desc.kind == Kind::Counter,
        }),
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: Vec::new(),
        }),
    };
    Metric {
        name: desc.name.into(),
        description: desc.description.into(),
        unit: desc.unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn key_value(key: &str, value: Attr<'_>) -> KeyValue {
    let mut kv = KeyValue {
        key: key.into(),
        ..Default::default()
    };
    set_value(&mut kv, value);
    kv
}

fn set_value(kv: &mut KeyValue, value: Attr<'_>) {
    let slot = kv.value.get_or_insert_with(AnyValue::default);
    match (value, &mut slot.value) {
        (Attr::Str(s), Some(any_value::Value::StringValue(old))) => {
            old.clear();
            old.push_str(s);
        }
        (Attr::Str(s), v) => *v = Some(any_value::Value::StringValue(s.into())),
        (Attr::Int(i), v) => *v = Some(any_value::Value::IntValue(i)),
    }
}

fn same_value(kv: &KeyValue, value: Attr<'_>) -> bool {
    match (kv.value.as_ref().and_then(|v| v.value.as_ref()), value) {
        (Some(any_value::Value::StringValue(s)), Attr::Str(v)) => s == v,
        (Some(any_value::Value::IntValue(i)), Attr::Int(v)) => *i == v,
        _ => false,
    }
}

/// Writes the points of one metric; unwritten old points are dropped when
/// it goes out of scope.
pub struct MetricWriter<'a> {
    points: &'a mut Vec<NumberDataPoint>,
    used: usize,
    now_ns: u64,
}

impl MetricWriter<'_> {
    /// Writes one point. `start_ns` is the start of a cumulative sum (0 for
    /// gauges).
    pub fn point(&mut self, attrs: &[(&str, Attr<'_>)], value: impl Into<Value>, start_ns: u64) {
        let i = self.used;
        self.used += 1;
        if i == self.points.len() {
            self.points.push(NumberDataPoint::default());
        }
        let p = &mut self.points[i];
        let same = p.attributes.len() == attrs.len()
            && p.attributes
                .iter()
                .zip(attrs)
                .all(|(kv, (k, v))| kv.key == *k && same_value(kv, *v));
        if !same {
            p.attributes.truncate(attrs.len());
            for (j, (k, v)) in attrs.iter().enumerate() {
                match p.attributes.get_mut(j) {
                    Some(kv) => {
                        if kv.key != *k {
                            kv.key.clear();
                            kv.key.push_str(k);
                        }
                        set_value(kv, *v);
                    }
                    None => p.attributes.push(key_value(k, *v)),
                }
            }
        }
        p.start_time_unix_nano = start_ns;
        p.time_unix_nano = self.now_ns;
        p.value = Some(match value.into() {
            Value::F64(v) => number_data_point::Value::AsDouble(v),
            Value::I64(v) => number_data_point::Value::AsInt(v),
        });
    }
}

impl Drop for MetricWriter<'_> {
    fn drop(&mut self) {
        self.points.truncate(self.used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: Desc = Desc {
        name: "system.cpu.time",
        unit: "s",
        kind: Kind::Counter,
        description: "",
    };
    const LOAD: Desc = Desc {
        name: "system.cpu.load_average.1m",
        unit: "{thread}",
        kind: Kind::Gauge,
        description: "",
    };

    fn tick(b: &mut Batch, now: u64, cpus: &[&str], with_load: bool) {
        b.begin(now);
        {
            let mut m = b.metric(&CPU);
            for (i, cpu) in cpus.iter().enumerate() {
                m.point(
                    &[("cpu", Attr::Str(cpu)), ("state", "user".into())],
                    i as f64,
                    7,
                );
            }
        }
        if with_load {
            b.metric(&LOAD).point(&[], 0.5, 0);
        }
        b.finish();
    }

    #[test]
    fn rewrites_in_place_and_drops_what_was_not_written() {
        let mut b = Batch::new(&[("host.name", "h".into())], "sonde.agent", "0.1.0");
        tick(&mut b, 1, &["cpu0", "cpu1"], true);
        assert_eq!(b.point_count(), 3);
        let ptr = b.written()[0].name.as_ptr();
        tick(&mut b, 2, &["cpu0"], true);
        assert_eq!(b.point_count(), 2);
        assert_eq!(b.written()[0].name.as_ptr(), ptr, "the slot was reused");
        tick(&mut b, 3, &["cpu9", "cpu0"], false);
        assert_eq!(b.written().len(), 1);
        let text = b.to_text();
        assert_eq!(
            text,
            "# resource host.name=h\n\
             system.cpu.time{cpu=\"cpu9\",state=\"user\"} 0 s\n\
             system.cpu.time{cpu=\"cpu0\",state=\"user\"} 1 s\n"
        );
        let Some(metric::Data::Sum(s)) = &b.written()[0].data else {
            panic!("a sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(s.data_points[1].time_unix_nano, 3);
        assert_eq!(s.data_points[1].start_time_unix_nano, 7);
    }

    #[test]
    fn a_metric_with_no_points_is_left_out() {
        let mut b = Batch::new(&[], "s", "v");
        b.begin(1);
        drop(b.metric(&CPU));
        b.metric(&LOAD).point(&[], 1.0, 0);
        b.finish();
        assert_eq!(b.written().len(), 1);
        assert_eq!(b.written()[0].name, LOAD.name);
        // And it comes back when it has points again.
        tick(&mut b, 2, &["cpu0"], true);
        assert_eq!(b.written().len(), 2);
    }

    #[test]
    fn int_attributes_and_values() {
        let mut b = Batch::new(&[], "s", "v");
        b.begin(1);
        b.metric(&LOAD)
            .point(&[("process.pid", Attr::Int(42))], 5u64, 0);
        b.finish();
        assert_eq!(
            b.to_text(),
            "system.cpu.load_average.1m{process.pid=\"42\"} 5 {thread}\n"
        );
    }
}
