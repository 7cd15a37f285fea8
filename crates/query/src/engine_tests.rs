//! Engine-level tests for the behaviour the conformance scripts cover only
//! indirectly: lookback, staleness, data loading, limits and robustness.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sonde_model::{
    collapse_buckets, stale_nan, FloatHistogram, HistogramSample, Labels, Matcher, Sample, Series,
};

use crate::{parse_selector, Engine, EngineOptions, Error, Queryable, Value};

#[derive(Default)]
struct Mem {
    series: Vec<Series>,
    selects: AtomicUsize,
}

impl Mem {
    fn with(mut self, labels: &[(&str, &str)], points: &[(i64, f64)]) -> Mem {
        self.series.push(Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: points.iter().map(|&(t, v)| Sample { t, v }).collect(),
            histograms: Vec::new(),
        });
        self
    }

    fn with_hist(mut self, labels: &[(&str, &str)], points: &[(i64, FloatHistogram)]) -> Mem {
        self.series.push(Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: Vec::new(),
            histograms: points
                .iter()
                .map(|(t, h)| HistogramSample {
                    t: *t,
                    h: h.clone(),
                })
                .collect(),
        });
        self
    }
}

/// A schema-0 histogram with `n` observations in (1, 2] and `n` in (2, 4].
fn hist(n: f64) -> FloatHistogram {
    let (positive_spans, positive_buckets) = collapse_buckets(&[(1, n), (2, n)]);
    FloatHistogram {
        count: 2.0 * n,
        sum: 5.0 * n,
        positive_spans,
        positive_buckets,
        ..FloatHistogram::default()
    }
}

impl Queryable for Mem {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        self.selects.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|p| p.t >= mint && p.t <= maxt)
                    .collect(),
                histograms: s
                    .histograms
                    .iter()
                    .filter(|p| p.t >= mint && p.t <= maxt)
                    .cloned()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
            .collect())
    }
}

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

fn values(v: &Value) -> Vec<f64> {
    match v {
        Value::Vector(s) => s.iter().map(|s| s.v).collect(),
        Value::Scalar { v, .. } => vec![*v],
        _ => Vec::new(),
    }
}

#[test]
fn lookback_window_is_left_open() {
    let m = Mem::default().with(&[("__name__", "up")], &[(0, 1.0)]);
    let e = engine();
    assert_eq!(values(&e.instant(&m, "up", 299_999).unwrap()), vec![1.0]);
    // Exactly lookback_delta later the sample no longer counts.
    assert!(values(&e.instant(&m, "up", 300_000).unwrap()).is_empty());
}

#[test]
fn stale_marker_ends_the_series() {
    let m = Mem::default().with(
        &[("__name__", "up")],
        &[(0, 1.0), (60_000, stale_nan()), (120_000, 2.0)],
    );
    let e = engine();
    assert_eq!(values(&e.instant(&m, "up", 30_000).unwrap()), vec![1.0]);
    assert!(values(&e.instant(&m, "up", 90_000).unwrap()).is_empty());
    assert_eq!(values(&e.instant(&m, "up", 130_000).unwrap()), vec![2.0]);
    // Range vectors never contain stale markers.
    assert_eq!(
        values(&e.instant(&m, "count_over_time(up[5m])", 130_000).unwrap()),
        vec![2.0]
    );
}

#[test]
fn offset_and_at_shift_the_evaluation_time() {
    let m = Mem::default().with(
        &[("__name__", "x")],
        &[(0, 1.0), (60_000, 2.0), (120_000, 3.0)],
    );
    let e = engine();
    assert_eq!(
        values(&e.instant(&m, "x offset 1m", 120_000).unwrap()),
        vec![2.0]
    );
    assert_eq!(values(&e.instant(&m, "x @ 0", 120_000).unwrap()), vec![1.0]);
    let r = e.range(&m, "x @ end()", 0, 120_000, 60_000).unwrap();
    let Value::Matrix(series) = r else {
        panic!("not a matrix")
    };
    let vals: Vec<f64> = series[0].samples.iter().map(|s| s.v).collect();
    assert_eq!(vals, vec![3.0, 3.0, 3.0]);
}

#[test]
fn range_query_reads_each_selector_once() {
    let points: Vec<(i64, f64)> = (0..100).map(|i| (i * 15_000, i as f64)).collect();
    let m = Mem::default()
        .with(&[("__name__", "c"), ("job", "a")], &points)
        .with(&[("__name__", "c"), ("job", "b")], &points);
    let e = engine();
    let r = e
        .range(
            &m,
            "sum(rate(c[1m])) + sum(max_over_time(c[2m:30s]))",
            0,
            1_500_000,
            15_000,
        )
        .unwrap();
    assert!(matches!(r, Value::Matrix(ref s) if s.len() == 1));
    assert_eq!(m.selects.load(Ordering::Relaxed), 2);
}

#[test]
fn range_query_result_is_sorted_and_names_dropped() {
    let m = Mem::default()
        .with(&[("__name__", "x"), ("job", "b")], &[(0, 1.0)])
        .with(&[("__name__", "x"), ("job", "a")], &[(0, 2.0)]);
    let r = engine().range(&m, "x * 2", 0, 60_000, 30_000).unwrap();
    let Value::Matrix(series) = r else {
        panic!("not a matrix")
    };
    let labels: Vec<String> = series.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(labels, vec![r#"{job="a"}"#, r#"{job="b"}"#]);
    assert_eq!(series[0].samples.len(), 3);
}

#[test]
fn too_many_samples_is_reported() {
    let points: Vec<(i64, f64)> = (0..1000).map(|i| (i * 1000, 1.0)).collect();
    let m = Mem::default().with(&[("__name__", "x")], &points);
    let e = Engine::new(EngineOptions {
        max_samples: 100,
        ..EngineOptions::default()
    });
    assert_eq!(
        e.instant(&m, "sum_over_time(x[1000s])", 1_000_000),
        Err(Error::TooManySamples)
    );
}

#[test]
fn timeout_is_reported() {
    let m = Mem::default().with(&[("__name__", "x")], &[(0, 1.0)]);
    let e = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let err = e.range(&m, "x", 0, 3_600_000, 1000).unwrap_err();
    assert_eq!(err, Error::Timeout);
    assert_eq!(err.error_type(), "timeout");
}

#[test]
fn errors_carry_prometheus_types() {
    let m = Mem::default()
        .with(&[("__name__", "a"), ("x", "1")], &[(0, 1.0)])
        .with(&[("__name__", "b"), ("x", "1")], &[(0, 1.0)]);
    let e = engine();
    let err = e.instant(&m, "sum(", 0).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e.instant(&m, "ceil({x=\"1\"})", 0).unwrap_err();
    assert_eq!(
        err,
        Error::Execution("vector cannot contain metrics with the same labelset".into())
    );
    let err = e.range(&m, "a[5m]", 0, 60_000, 1000).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e.range(&m, "a", 0, 60_000, 0).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
}

#[test]
fn parse_selector_accepts_only_plain_selectors() {
    let ms = parse_selector(r#"up{job="x", env=~"p.*"}"#).unwrap();
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[0].name, "__name__");
    assert!(parse_selector("rate(up[5m])").is_err());
    assert!(parse_selector("up[5m]").is_err());
    assert!(parse_selector("{").is_err());
}

#[test]
fn odd_queries_never_panic() {
    let m = Mem::default().with(
        &[("__name__", "x"), ("le", "1")],
        &[(0, 1.0), (60_000, 2.0)],
    );
    // Absurd subquery resolutions run into the timeout rather than hang.
    let e = Engine::new(EngineOptions {
        timeout: Duration::from_millis(200),
        ..EngineOptions::default()
    });
    let queries = [
        "topk(1e30, x)",
        "topk(-1e30, x)",
        "topk(NaN, x)",
        "limit_ratio(NaN, x)",
        "quantile(NaN, x)",
        "x @ 1e15",
        "x @ -1e15",
        "x offset 10000y",
        "x offset -10000y",
        "rate(x[1ms])",
        "x[100000y:1ms] offset 1s",
        "histogram_quantile(0.5, x)",
        "histogram_fraction(-Inf, NaN, x)",
        "label_replace(x, \"a\", \"$99\", \"le\", \"(.*)\")",
        "label_replace(x, \"a\", \"b\", \"le\", \"(\")",
        "count_values(\"\", x)",
        "day_of_week(vector(1e300))",
        "round(x, 0)",
        "predict_linear(x[1m], 1e308)",
        "double_exponential_smoothing(x[5m], 2, 0.5)",
        "sort_by_label(x, \"le\", \"nope\")",
        "1 / 0 % 0 ^ -1",
        "x and on() x or ignoring(le) x unless x",
        "x * on(le) group_left(foo) x",
    ];
    for q in queries {
        let _ = e.instant(&m, q, 60_000);
        let _ = e.range(&m, q, 0, 120_000, 7_000);
    }
    // Extreme ranges must not overflow.
    let _ = e.range(&m, "x", i64::MIN, i64::MAX, i64::MAX);
    let _ = e.range(&m, "x", i64::MAX - 10, i64::MAX, 3);
    let _ = e.instant(&m, "x", i64::MIN);
}

fn only_hist(v: &Value) -> FloatHistogram {
    match v {
        Value::Vector(s) => match s.as_slice() {
            [one] => one.h.clone().unwrap_or_default(),
            _ => panic!("expected one sample, got {v:?}"),
        },
        _ => panic!("expected a vector, got {v:?}"),
    }
}

#[test]
fn histograms_flow_through_selectors_rate_and_sum() {
    let pts: Vec<(i64, FloatHistogram)> = (0..=4)
        .map(|i| (i * 60_000, hist(i as f64 * 6.0)))
        .collect();
    let m = Mem::default()
        .with_hist(&[("__name__", "h"), ("i", "a")], &pts)
        .with_hist(&[("__name__", "h"), ("i", "b")], &pts);
    let e = engine();
    let latest = only_hist(&e.instant(&m, "h{i=\"a\"}", 250_000).unwrap());
    assert_eq!(latest.count, 48.0);
    // 6 observations a minute per bucket: 0.1/s, samples cover the window.
    let r = only_hist(&e.instant(&m, "rate(h{i=\"a\"}[4m])", 240_000).unwrap());
    assert!((r.count - 0.2).abs() < 1e-9, "{r:?}");
    let s = only_hist(&e.instant(&m, "sum(h)", 240_000).unwrap());
    assert_eq!(s.count, 96.0);
    assert_eq!(
        values(&e.instant(&m, "histogram_count(sum(h))", 240_000).unwrap()),
        vec![96.0]
    );
    // The median lies at the (1, 2] / (2, 4] boundary.
    let q = values(
        &e.instant(&m, "histogram_quantile(0.5, h{i=\"a\"})", 240_000)
            .unwrap(),
    );
    assert!((q[0] - 2.0).abs() < 1e-9, "{q:?}");
    // Floats only: histograms are ignored by float functions and max.
    assert!(values(&e.instant(&m, "abs(h)", 240_000).unwrap()).is_empty());
    assert!(values(&e.instant(&m, "max(h)", 240_000).unwrap()).is_empty());
}

#[test]
fn histogram_arithmetic_follows_prometheus() {
    let m = Mem::default()
        .with_hist(&[("__name__", "h")], &[(0, hist(2.0))])
        .with(&[("__name__", "f")], &[(0, 3.0)]);
    let e = engine();
    assert_eq!(only_hist(&e.instant(&m, "h * 2", 0).unwrap()).count, 8.0);
    assert_eq!(only_hist(&e.instant(&m, "h / 2", 0).unwrap()).count, 2.0);
    assert_eq!(only_hist(&e.instant(&m, "-h", 0).unwrap()).count, -4.0);
    assert_eq!(only_hist(&e.instant(&m, "h - h", 0).unwrap()).count, 0.0);
    // No meaning, so no result: histogram plus scalar, scalar over histogram.
    assert!(values(&e.instant(&m, "h + 1", 0).unwrap()).is_empty());
    assert!(values(&e.instant(&m, "2 / h", 0).unwrap()).is_empty());
    assert!(values(&e.instant(&m, "h > 1", 0).unwrap()).is_empty());
    // Mixed floats and histograms do not sum.
    assert!(values(&e.instant(&m, "sum({__name__=~\"h|f\"})", 0).unwrap()).is_empty());
    assert_eq!(
        values(&e.instant(&m, "count({__name__=~\"h|f\"})", 0).unwrap()),
        vec![2.0]
    );
}
