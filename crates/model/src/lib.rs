//! Sonde's data model: the types every other crate speaks.
//!
//! Wire formats (OTLP, remote write, JSON) are converted to these types at the
//! edges, in `sonde-ingest`; storage and query only ever see these.

mod exemplar;
mod histogram;
mod labels;
mod matcher;
pub mod records;
pub mod time;

pub use exemplar::{label_runes, Exemplar, SeriesExemplar, EXEMPLAR_MAX_LABEL_RUNES};
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};

pub use histogram::{
    collapse_buckets, expand_buckets, exponential_bound, kahan_inc, Bucket, CounterResetHint,
    FloatHistogram, HistogramError, HistogramSample, Span, CUSTOM_BUCKETS_SCHEMA,
};
pub use matcher::{MatchOp, Matcher};

/// Milliseconds since the Unix epoch: the Prometheus time unit, used for every
/// metric sample so PromQL and the HTTP API need no conversion.
pub type TimestampMs = i64;

/// One float sample of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: TimestampMs,
    pub v: f64,
}

/// The bit pattern Prometheus uses to mark a series stale. It is a NaN, so it
/// must be compared by bits, never by value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A series with its samples, as written by ingest and read by query.
///
/// Float and native histogram samples are kept apart, each sorted by time
/// (a series may switch between the two, never holding both at one time).
/// The store does not persist histograms yet, so only in-memory sources
/// fill `histograms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}

/// A series borrowed from a decode buffer: label pairs sorted by name with
/// unique names and no empty values, and its samples. The write path takes
/// this so that series already known cost no string allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesView<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub samples: Vec<Sample>,
}

impl<'a> SeriesView<'a> {
    /// Sorts and deduplicates pairs as [`Labels::from_pairs`] does.
    pub fn new(mut labels: Vec<(&'a str, &'a str)>, samples: Vec<Sample>) -> SeriesView<'a> {
        labels.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(prev) if prev.0 == l.0 => *prev = l,
                _ => out.push(l),
            }
        }
        out.retain(|l| !l.1.is_empty());
        SeriesView {
            labels: out,
            samples,
        }
    }

    pub fn of(series: &'a Series) -> SeriesView<'a> {
        SeriesView {
            labels: series
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect(),
            samples: series.samples.clone(),
        }
    }

    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.labels.iter().copied())
    }
}

/// The type of a metric family, as the Prometheus metadata API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> MetricType {
        match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            _ => MetricType::Unknown,
        }
    }
}

/// Metadata of a metric family (`/api/v1/metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricMetadata {
    pub metric: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("invalid regex in matcher for label {label:?}: {reason}")]
    InvalidRegex { label: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Is `name` a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`)?
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Is `name` a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`)?
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_nan_told_apart_by_bits() {
        assert!(stale_nan().is_nan());
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }

    #[test]
    fn names_follow_prometheus_rules() {
        assert!(is_valid_metric_name("http_requests_total"));
        assert!(is_valid_metric_name("job:rate5m"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name("a-b"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("_x1"));
        assert!(!is_valid_label_name("a:b"));
    }
}

/// Wall-clock time, injected wherever time matters (retention, validation
/// windows) so tests control it instead of sleeping.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> TimestampMs;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}
