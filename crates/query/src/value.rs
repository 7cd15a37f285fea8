//! Query results, errors, and the evaluator's internal per-step values.

use std::sync::Arc;

use sonde_model::{FloatHistogram, Labels, Sample, Series, METRIC_NAME};

/// The result of a query, shaped like the Prometheus HTTP API's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The Prometheus `resultType` of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// One element of an instant vector: a float `v`, or a native histogram
/// `h` (then `v` is 0 and meaningless).
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
    pub h: Option<FloatHistogram>,
}

/// A native histogram shared between steps without copying.
pub(crate) type Hist = Arc<FloatHistogram>;

/// One histogram point of a range vector during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct HPoint {
    pub t: i64,
    pub h: Hist,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The query text is not valid PromQL.
    #[error("{0}")]
    Parse(String),
    /// The query is valid but cannot be evaluated (e.g. many-to-many matching).
    #[error("{0}")]
    Execution(String),
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    #[error("query timed out in query execution")]
    Timeout,
    /// Storage failed while answering a select.
    #[error("{0}")]
    Storage(String),
}

impl Error {
    /// The `errorType` the Prometheus HTTP API reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples => "execution",
            Error::Timeout => "timeout",
            Error::Storage(_) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn exec_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Execution(msg.into()))
}

/// Formats a float as Prometheus's HTTP API does: `+Inf`, `-Inf`, `NaN`, or
/// the shortest decimal that round-trips, never in exponent notation (Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's `Display` for f64 already prints the shortest round-trip
        // digits and never switches to exponent notation, exactly like 'f', -1.
        format!("{v}")
    }
}

/// One element of an instant vector during evaluation.
///
/// `drop_name` implements Prometheus's delayed name removal: operations that
/// change a value's meaning mark the element instead of deleting `__name__`
/// at once, so later `label_replace`/`by (__name__)` still see the name; the
/// name is removed when the query's result is assembled.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub labels: Arc<Labels>,
    /// Timestamp of the underlying sample; only `timestamp()` looks at it.
    pub t: i64,
    pub v: f64,
    /// A native histogram sample; `v` is unused then.
    pub h: Option<Hist>,
    pub drop_name: bool,
}

impl Elem {
    pub fn float(labels: Arc<Labels>, t: i64, v: f64, drop_name: bool) -> Elem {
        Elem {
            labels,
            t,
            v,
            h: None,
            drop_name,
        }
    }
}

/// One series of a range vector during evaluation: float and histogram
/// points, each sorted by time.
#[derive(Debug, Clone)]
pub(crate) struct RangeSeries {
    pub labels: Arc<Labels>,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HPoint>,
    pub drop_name: bool,
}

/// What an expression evaluates to at one step.
#[derive(Debug, Clone)]
pub(crate) enum StepValue {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(Vec<RangeSeries>),
}

impl StepValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            StepValue::Scalar(_) => "scalar",
            StepValue::Str(_) => "string",
            StepValue::Vector(_) => "instant vector",
            StepValue::Matrix(_) => "range vector",
        }
    }
}

/// FNV-1a, for the join and grouping signatures computed per element and
/// step: allocation-free and fast on short label strings. Like Prometheus's
/// own 64-bit signatures, collisions are possible in theory only.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds a label; the 0xff separators cannot occur in UTF-8 text, so
    /// different label sets cannot produce the same byte stream.
    pub fn label(&mut self, name: &str, value: &str) {
        self.write(name.as_bytes());
        self.write(&[0xff]);
        self.write(value.as_bytes());
        self.write(&[0xff]);
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) fn labels_fnv(l: &Labels) -> u64 {
    let mut h = Fnv::new();
    for l in l.iter() {
        h.label(&l.name, &l.value);
    }
    h.finish()
}

/// Removes `__name__` when the element was marked for it.
pub(crate) fn finish_labels(labels: &Arc<Labels>, drop_name: bool) -> Labels {
    if drop_name && labels.metric_name().is_some() {
        labels.without(&[METRIC_NAME])
    } else {
        Labels::clone(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_strconv() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(-2.5), "-2.5");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(1.0 / 3.0), "0.3333333333333333");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(sonde_model::stale_nan()), "NaN");
        assert_eq!(format_value(12340000.0), "12340000");
    }

    #[test]
    fn error_types_match_prometheus_api() {
        assert_eq!(Error::Parse("x".into()).error_type(), "bad_data");
        assert_eq!(Error::Execution("x".into()).error_type(), "execution");
        assert_eq!(Error::TooManySamples.error_type(), "execution");
        assert_eq!(Error::Timeout.error_type(), "timeout");
        assert_eq!(Error::Storage("x".into()).error_type(), "internal");
        assert_eq!(
            Error::TooManySamples.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
    }
}
