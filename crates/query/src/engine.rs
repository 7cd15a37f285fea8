//! The evaluator: parses a query, loads every selector's data once, then
//! evaluates the expression tree step by step.
//!
//! Evaluation is per step (one timestamp at a time) rather than Prometheus's
//! matrix-at-a-time, which keeps every operator a plain function of one
//! instant. Storage is still read once per selector for the whole query: a
//! pre-pass computes the time span each selector needs (accounting for
//! offsets, `@`, lookback, ranges and enclosing subqueries) and fetches it
//! up front; steps then binary-search those samples. Subquery results are
//! computed once over the union of their windows and sliced per step.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self as pp, AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};
use sonde_model::{
    is_stale_nan, CounterResetHint, HistogramSample, Labels, MatchOp, Matcher, Sample, Series,
    METRIC_NAME,
};

use crate::value::{
    exec_err, finish_labels, Elem, Error, HPoint, Hist, InstantSample, RangeSeries, Result,
    StepValue, Value,
};
use crate::Queryable;

/// Subqueries without an explicit step use this resolution, like
/// Prometheus's default global evaluation interval.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Prometheus's HTTP API refuses range queries with more points per series.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample.
    pub lookback_delta_ms: i64,
    /// Upper bound on samples one query may load and hold.
    pub max_samples: usize,
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 300_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates at one instant (ms).
    pub fn instant(&self, storage: &dyn Queryable, query: &str, at_ms: i64) -> Result<Value> {
        guard(|| self.instant_inner(storage, query, at_ms))
    }

    /// Evaluates over `[start, end]` with `step` (all ms) and returns a
    /// matrix sorted by labels, as Prometheus does for range queries.
    pub fn range(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value> {
        guard(|| self.range_inner(storage, query, start_ms, end_ms, step_ms))
    }

    fn instant_inner(&self, storage: &dyn Queryable, query: &str, at_ms: i64) -> Result<Value> {
        let expr = parse(query)?;
        let mut ev = Evaluator::prepare(&self.opts, storage, &expr, at_ms, at_ms, 0)?;
        ev.invalid_strings = crate::utf8::invalid_literals(query);
        let out = ev.eval(&expr, at_ms)?;
        match out {
            StepValue::Scalar(v) => Ok(Value::Scalar { t: at_ms, v }),
            StepValue::Str(v) => Ok(Value::String { t: at_ms, v }),
            StepValue::Vector(v) => {
                let samples: Vec<InstantSample> = v
                    .into_iter()
                    .map(|e| InstantSample {
                        labels: finish_labels(&e.labels, e.drop_name),
                        t: at_ms,
                        v: if e.h.is_some() { 0.0 } else { e.v },
                        h: e.h.map(|h| FloatHistogramOwned::clone(&h)),
                    })
                    .collect();
                check_unique(samples.iter().map(|s| &s.labels))?;
                Ok(Value::Vector(samples))
            }
            StepValue::Matrix(m) => {
                let series: Vec<Series> = m
                    .into_iter()
                    .map(|s| Series {
                        labels: finish_labels(&s.labels, s.drop_name),
                        samples: s.samples,
                        histograms: s
                            .histograms
                            .into_iter()
                            .map(|p| HistogramSample {
                                t: p.t,
                                h: FloatHistogramOwned::clone(&p.h),
                            })
                            .collect(),
                    })
                    .collect();
                check_unique(series.iter().map(|s| &s.labels))?;
                Ok(Value::Matrix(series))
            }
        }
    }

    fn range_inner(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value> {
        if step_ms <= 0 {
            return Err(Error::Parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(Error::Parse(
                "end timestamp must not be before start time".into(),
            ));
        }
        if end_ms.saturating_sub(start_ms) / step_ms >= MAX_POINTS_PER_SERIES {
            return Err(Error::Parse(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let expr = parse(query)?;
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(Error::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                documented_type(other)
            )))
            }
        }
        let mut ev = Evaluator::prepare(&self.opts, storage, &expr, start_ms, end_ms, step_ms)?;
        ev.invalid_strings = crate::utf8::invalid_literals(query);
        let mut out = RangeOutput::default();
        let mut points = 0usize;
        let mut ts = start_ms;
        while ts <= end_ms {
            ev.check_deadline()?;
            match ev.eval(&expr, ts)? {
                StepValue::Scalar(v) => {
                    out.push(&Arc::new(Labels::empty()), false, Sample { t: ts, v }, None)?;
                    points += 1;
                }
                StepValue::Vector(vec) => {
                    points += vec.len();
                    for e in &vec {
                        out.push(&e.labels, e.drop_name, Sample { t: ts, v: e.v }, e.h.clone())?;
                    }
                }
                other => {
                    return exec_err(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    ))
                }
            }
            if points.saturating_add(ev.loaded.get()) > self.opts.max_samples {
                return Err(Error::TooManySamples);
            }
            let Some(next) = ts.checked_add(step_ms) else {
                break;
            };
            ts = next;
        }
        Ok(Value::Matrix(out.finish()))
    }
}

/// Collects a range query's per-step vectors into series.
#[derive(Default)]
struct RangeOutput {
    series: Vec<(Series, i64)>,
    by_labels: HashMap<Labels, usize>,
    /// Most elements carry the same `Arc` (from the loaded data) at every
    /// step; remembering it skips rebuilding and hashing their labels. The
    /// key holds the `Arc`, so its address cannot be reused meanwhile.
    by_arc: HashMap<(usize, bool), (Arc<Labels>, usize)>,
}

impl RangeOutput {
    fn push(
        &mut self,
        labels: &Arc<Labels>,
        drop_name: bool,
        s: Sample,
        h: Option<Hist>,
    ) -> Result<()> {
        let key = (Arc::as_ptr(labels) as usize, drop_name);
        let idx = match self.by_arc.get(&key) {
            Some((_, i)) => *i,
            None => {
                let finished = finish_labels(labels, drop_name);
                let i = match self.by_labels.get(&finished) {
                    Some(&i) => i,
                    None => {
                        self.series.push((
                            Series {
                                labels: finished.clone(),
                                samples: Vec::new(),
                                histograms: Vec::new(),
                            },
                            i64::MIN,
                        ));
                        self.by_labels.insert(finished, self.series.len() - 1);
                        self.series.len() - 1
                    }
                };
                // Elements built fresh at this step are not worth remembering.
                if Arc::strong_count(labels) > 1 {
                    self.by_arc.insert(key, (labels.clone(), i));
                }
                i
            }
        };
        let Some((series, last_t)) = self.series.get_mut(idx) else {
            return exec_err("internal error: lost output series");
        };
        // Two elements with the same final labels at one step.
        if *last_t == s.t {
            return exec_err("vector cannot contain metrics with the same labelset");
        }
        *last_t = s.t;
        match h {
            Some(h) => series.histograms.push(HistogramSample {
                t: s.t,
                h: FloatHistogramOwned::clone(&h),
            }),
            None => series.samples.push(s),
        }
        Ok(())
    }

    fn finish(self) -> Vec<Series> {
        let mut out: Vec<Series> = self.series.into_iter().map(|(s, _)| s).collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// Parses a series selector such as `up{job="x"}` into storage matchers,
/// for the metadata APIs (`/api/v1/series`, label values, ...).
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>> {
    let expr = parse(s)?;
    match expr {
        Expr::VectorSelector(vs) => {
            if vs.offset.is_some() || vs.at.is_some() {
                return Err(Error::Parse(format!(
                    "invalid series selector {s:?}: offset and @ are not allowed"
                )));
            }
            if !vs.matchers.or_matchers.is_empty() {
                return Err(Error::Parse(format!(
                    "invalid series selector {s:?}: \"or\" matchers are not supported here"
                )));
            }
            selector_matchers(&vs, &vs.matchers.matchers).map_err(|e| Error::Parse(e.to_string()))
        }
        _ => Err(Error::Parse(format!(
            "invalid series selector {s:?}: expected a vector selector such as up{{job=\"x\"}}"
        ))),
    }
}

pub(crate) fn parse(query: &str) -> Result<Expr> {
    // The parser is third-party; a panic in it must not reach the server.
    match std::panic::catch_unwind(|| pp::parse(query)) {
        Ok(r) => r.map_err(Error::Parse),
        Err(_) => Err(Error::Parse(format!("cannot parse query {query:?}"))),
    }
}

/// Runs a whole evaluation, turning any panic (a bug, never expected) into
/// an execution error so one bad query cannot take the server down.
fn guard(f: impl FnOnce() -> Result<Value>) -> Result<Value> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(Error::Execution(
            "unexpected error: query evaluation failed; please report this query".into(),
        )),
    }
}

fn documented_type(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

pub(crate) fn check_unique<'a>(labels: impl Iterator<Item = &'a Labels>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for l in labels {
        if !seen.insert(l) {
            return exec_err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

pub(crate) fn selector_matchers(vs: &VectorSelector, ms: &[PMatcher]) -> Result<Vec<Matcher>> {
    let mut out = Vec::with_capacity(ms.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    for m in ms {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        let matcher = Matcher::new(op, m.name.clone(), m.value.clone())
            .map_err(|e| Error::Parse(e.to_string()))?;
        out.push(matcher);
    }
    Ok(out)
}

/// Offset in ms; negative offsets look into the future.
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// A selector's series with the samples loaded for the whole query.
pub(crate) struct LoadedSeries {
    pub labels: Arc<Labels>,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HPoint>,
    /// Where the float window of the previous step began and ended: steps
    /// mostly move forward, so the next window is found by stepping from
    /// here (sequential, cache-friendly) rather than by binary search over
    /// data that no longer fits in cache.
    pub cursor: std::cell::Cell<(usize, usize)>,
}

/// `sonde_model::FloatHistogram`, named for the places that copy one out
/// of its shared `Arc`.
type FloatHistogramOwned = sonde_model::FloatHistogram;

pub(crate) struct Evaluator<'a> {
    pub opts: &'a EngineOptions,
    /// Query bounds, for `@ start()` / `@ end()`.
    pub start: i64,
    pub end: i64,
    /// Range query resolution (0 for instant queries), for `step()`.
    pub step: i64,
    deadline: Instant,
    /// Loaded data per selector, keyed by the address of its `VectorSelector`.
    data: HashMap<usize, Vec<LoadedSeries>>,
    /// Per subquery node: the span of evaluation times it will be asked for.
    subquery_spans: HashMap<usize, (i64, i64)>,
    subquery_cache: RefCell<HashMap<usize, Rc<Vec<RangeSeries>>>>,
    /// Result labels of vector matching per (operator node, left, right)
    /// label sets, so steps reuse them instead of rebuilding them. Keys are
    /// `Arc` addresses; the entry holds those `Arc`s so they stay unique.
    pub match_cache: RefCell<HashMap<(usize, usize, usize), MatchCacheEntry>>,
    /// Grouping keys per (aggregation node, element labels `Arc`): the same
    /// series meets the same aggregation at every step. The entry holds the
    /// `Arc`, so its address cannot be reused by another label set.
    pub group_key_cache: RefCell<HashMap<(usize, usize), GroupKeyEntry>>,
    /// Samples loaded or materialised so far, for `max_samples`.
    pub loaded: Cell<usize>,
    /// String literals of the query that are invalid UTF-8 in Go's reading
    /// (see `utf8.rs`), with their Go-quoted form.
    pub invalid_strings: HashMap<String, String>,
}

pub(crate) type MatchCacheEntry = (Arc<Labels>, Arc<Labels>, Arc<Labels>);

/// The labels (held so the address stays theirs) and their grouping key.
pub(crate) type GroupKeyEntry = (Arc<Labels>, u64);

pub(crate) fn key<T>(node: &T) -> usize {
    node as *const T as usize
}

/// Collects, per selector and subquery, the time span the query will need.
struct Planner<'a> {
    lookback: i64,
    start: i64,
    end: i64,
    /// (selector, mint, maxt, is the selector a range selector)
    selectors: Vec<(&'a VectorSelector, i64, i64, bool)>,
    subqueries: HashMap<usize, (i64, i64)>,
}

impl<'a> Planner<'a> {
    fn at(&self, at: &Option<AtModifier>) -> Option<i64> {
        resolve_at(at, self.start, self.end)
    }

    fn walk(&mut self, e: &'a Expr, lo: i64, hi: i64) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.at(&vs.at).map_or((lo, hi), |t| (t, t));
                let off = offset_ms(&vs.offset);
                let mint = a.saturating_sub(off).saturating_sub(self.lookback);
                self.selectors
                    .push((vs, mint, b.saturating_sub(off), false));
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.at(&ms.vs.at).map_or((lo, hi), |t| (t, t));
                let off = offset_ms(&ms.vs.offset);
                let range = duration_ms(&ms.range);
                let mint = a.saturating_sub(off).saturating_sub(range);
                self.selectors
                    .push((&ms.vs, mint, b.saturating_sub(off), true));
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.at(&sq.at).map_or((lo, hi), |t| (t, t));
                let off = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                let span = self.subqueries.entry(key(sq)).or_insert((a, b));
                span.0 = span.0.min(a);
                span.1 = span.1.max(b);
                self.walk(
                    &sq.expr,
                    a.saturating_sub(off).saturating_sub(range),
                    b.saturating_sub(off),
                );
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi);
                }
                self.walk(&a.expr, lo, hi);
            }
            Expr::Unary(u) => self.walk(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi);
                self.walk(&b.rhs, lo, hi);
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, lo, hi);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
}

pub(crate) fn resolve_at(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

impl<'a> Evaluator<'a> {
    fn prepare(
        opts: &'a EngineOptions,
        storage: &dyn Queryable,
        expr: &'a Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Evaluator<'a>> {
        let deadline = Instant::now() + opts.timeout;
        let mut planner = Planner {
            lookback: opts.lookback_delta_ms,
            start,
            end,
            selectors: Vec::new(),
            subqueries: HashMap::new(),
        };
        planner.walk(expr, start, end);

        let mut data = HashMap::new();
        let mut loaded = 0usize;
        for (vs, mint, maxt, is_range) in planner.selectors {
            if Instant::now() > deadline {
                return Err(Error::Timeout);
            }
            let series = load_selector(storage, vs, mint, maxt, is_range)?;
            loaded = loaded.saturating_add(
                series
                    .iter()
                    .map(|s| s.samples.len() + s.histograms.len())
                    .sum(),
            );
            if loaded > opts.max_samples {
                return Err(Error::TooManySamples);
            }
            data.insert(key(vs), series);
        }
        Ok(Evaluator {
            opts,
            start,
            end,
            step,
            deadline,
            data,
            subquery_spans: planner.subqueries,
            subquery_cache: RefCell::new(HashMap::new()),
            match_cache: RefCell::new(HashMap::new()),
            group_key_cache: RefCell::new(HashMap::new()),
            loaded: Cell::new(loaded),
            invalid_strings: HashMap::new(),
        })
    }

    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            Err(Error::Timeout)
        } else {
            Ok(())
        }
    }

    fn account(&self, n: usize) -> Result<()> {
        let total = self.loaded.get().saturating_add(n);
        self.loaded.set(total);
        if total > self.opts.max_samples {
            Err(Error::TooManySamples)
        } else {
            Ok(())
        }
    }

    pub fn at(&self, at: &Option<AtModifier>) -> Option<i64> {
        resolve_at(at, self.start, self.end)
    }

    pub fn eval(&self, e: &Expr, ts: i64) -> Result<StepValue> {
        match e {
            Expr::NumberLiteral(n) => Ok(StepValue::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(StepValue::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                StepValue::Scalar(v) => Ok(StepValue::Scalar(-v)),
                StepValue::Vector(mut vec) => {
                    for el in &mut vec {
                        if let Some(h) = &mut el.h {
                            // A negated histogram is no counter any more.
                            let h = Arc::make_mut(h);
                            h.mul(-1.0);
                            h.counter_reset_hint = CounterResetHint::Gauge;
                        }
                        el.v = -el.v;
                        el.t = ts;
                        el.drop_name = true;
                    }
                    Ok(StepValue::Vector(vec))
                }
                other => exec_err(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                )),
            },
            Expr::VectorSelector(vs) => Ok(StepValue::Vector(self.instant_selector(vs, ts))),
            Expr::MatrixSelector(ms) => Ok(StepValue::Matrix(self.range_selector(ms, ts))),
            Expr::Subquery(sq) => {
                let (all, lo, hi) = self.subquery(sq, ts)?;
                let out = all
                    .iter()
                    .filter_map(|s| {
                        let w = window(&s.samples, lo, hi);
                        let hw = hwindow(&s.histograms, lo, hi);
                        (!w.is_empty() || !hw.is_empty()).then(|| RangeSeries {
                            labels: s.labels.clone(),
                            samples: w.to_vec(),
                            histograms: hw.to_vec(),
                            drop_name: s.drop_name,
                        })
                    })
                    .collect();
                Ok(StepValue::Matrix(out))
            }
            Expr::Binary(b) => crate::binary::eval_binary(self, b, ts),
            Expr::Aggregate(a) => crate::aggregate::eval_aggregate(self, a, ts),
            Expr::Call(c) => crate::functions::eval_call(self, c, ts),
            Expr::Extension(_) => exec_err("unsupported expression extension"),
        }
    }

    /// Evaluates `e` and requires an instant vector.
    pub fn eval_vector(&self, e: &Expr, ts: i64) -> Result<Vec<Elem>> {
        match self.eval(e, ts)? {
            StepValue::Vector(v) => Ok(v),
            other => exec_err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    /// Evaluates `e` and requires a scalar.
    pub fn eval_scalar(&self, e: &Expr, ts: i64) -> Result<f64> {
        match self.eval(e, ts)? {
            StepValue::Scalar(v) => Ok(v),
            other => exec_err(format!("expected scalar, got {}", other.type_name())),
        }
    }

    pub fn eval_string(&self, e: &Expr, ts: i64) -> Result<String> {
        match self.eval(e, ts)? {
            StepValue::Str(v) => Ok(v),
            other => exec_err(format!("expected string, got {}", other.type_name())),
        }
    }

    fn loaded_series(&self, vs: &VectorSelector) -> &[LoadedSeries] {
        self.data.get(&key(vs)).map_or(&[], |v| v.as_slice())
    }

    /// The latest sample of each series within the lookback window.
    pub fn instant_selector(&self, vs: &VectorSelector, ts: i64) -> Vec<Elem> {
        let base = self.at(&vs.at).unwrap_or(ts);
        let eff = base.saturating_sub(offset_ms(&vs.offset));
        let lookback_start = eff.saturating_sub(self.opts.lookback_delta_ms);
        let mut out = Vec::new();
        for s in self.loaded_series(vs) {
            // Only the lookback window can hold the sample we want.
            let f = s.float_window(lookback_start, eff).last();
            let hidx = s.histograms.partition_point(|p| p.t <= eff);
            let h = hidx.checked_sub(1).and_then(|i| s.histograms.get(i));
            // The newer of the latest float and the latest histogram.
            let elem = match (f, h) {
                (Some(p), Some(hp)) if hp.t > p.t => (hp.t, 0.0, Some(hp.h.clone())),
                (Some(p), _) => (p.t, p.v, None),
                (None, Some(hp)) => (hp.t, 0.0, Some(hp.h.clone())),
                (None, None) => continue,
            };
            // A stale marker ends the series: nothing older counts either.
            let stale = match &elem.2 {
                Some(h) => is_stale_nan(h.sum),
                None => is_stale_nan(elem.1),
            };
            if elem.0 <= lookback_start || stale {
                continue;
            }
            out.push(Elem {
                labels: s.labels.clone(),
                t: elem.0,
                v: elem.1,
                h: elem.2,
                drop_name: false,
            });
        }
        out
    }

    /// The window `(eff - range, eff]` of a matrix selector at `ts`, per
    /// series, borrowed from the loaded data.
    pub fn range_selector_windows<'s>(
        &'s self,
        ms: &MatrixSelector,
        ts: i64,
    ) -> impl Iterator<Item = (&'s Arc<Labels>, &'s [Sample], &'s [HPoint])> + 's {
        let base = self.at(&ms.vs.at).unwrap_or(ts);
        let hi = base.saturating_sub(offset_ms(&ms.vs.offset));
        let lo = hi.saturating_sub(duration_ms(&ms.range));
        self.loaded_series(&ms.vs)
            .iter()
            .map(move |s| {
                (
                    &s.labels,
                    s.float_window(lo, hi),
                    hwindow(&s.histograms, lo, hi),
                )
            })
            .filter(|(_, w, hw)| !w.is_empty() || !hw.is_empty())
    }

    fn range_selector(&self, ms: &MatrixSelector, ts: i64) -> Vec<RangeSeries> {
        self.range_selector_windows(ms, ts)
            .map(|(labels, w, hw)| RangeSeries {
                labels: labels.clone(),
                samples: w.to_vec(),
                histograms: hw.to_vec(),
                drop_name: false,
            })
            .collect()
    }

    /// A subquery's full result (all its inner steps) and the window
    /// `(lo, hi]` that applies at `ts`.
    pub fn subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<(Rc<Vec<RangeSeries>>, i64, i64)> {
        let base = self.at(&sq.at).unwrap_or(ts);
        let off = offset_ms(&sq.offset);
        let range = duration_ms(&sq.range);
        let hi = base.saturating_sub(off);
        let lo = hi.saturating_sub(range);
        let k = key(sq);
        if let Some(hit) = self.subquery_cache.borrow().get(&k) {
            return Ok((hit.clone(), lo, hi));
        }
        let (a, b) = self.subquery_spans.get(&k).copied().unwrap_or((base, base));
        let step = sq
            .step
            .as_ref()
            .map(duration_ms)
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let first_lo = a.saturating_sub(off).saturating_sub(range);
        let last_hi = b.saturating_sub(off);
        // Inner steps are aligned to absolute multiples of the step, first
        // one strictly after the window start, as in Prometheus.
        let mut t = first_lo.div_euclid(step) * step;
        if t <= first_lo {
            t += step;
        }
        let mut series: HashMap<Arc<Labels>, RangeSeries> = HashMap::new();
        let mut order: Vec<Arc<Labels>> = Vec::new();
        while t <= last_hi {
            self.check_deadline()?;
            type Point = (Arc<Labels>, f64, Option<Hist>, bool);
            let points: Vec<Point> = match self.eval(&sq.expr, t)? {
                StepValue::Vector(v) => v
                    .into_iter()
                    .map(|e| (e.labels, e.v, e.h, e.drop_name))
                    .collect(),
                StepValue::Scalar(v) => vec![(Arc::new(Labels::empty()), v, None, false)],
                other => {
                    return exec_err(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    ))
                }
            };
            self.account(points.len())?;
            for (labels, v, h, drop_name) in points {
                let entry = series.entry(labels.clone()).or_insert_with(|| {
                    order.push(labels.clone());
                    RangeSeries {
                        labels,
                        samples: Vec::new(),
                        histograms: Vec::new(),
                        drop_name,
                    }
                });
                match h {
                    Some(mut h) => {
                        // A subquery may return one stored sample at several
                        // steps; its reset hint would then count the reset
                        // more than once, so only gauge hints survive (as in
                        // Prometheus).
                        if matches!(
                            h.counter_reset_hint,
                            CounterResetHint::Reset | CounterResetHint::NotReset
                        ) {
                            Arc::make_mut(&mut h).counter_reset_hint = CounterResetHint::Unknown;
                        }
                        entry.histograms.push(HPoint { t, h })
                    }
                    None => entry.samples.push(Sample { t, v }),
                }
            }
            let Some(next) = t.checked_add(step) else {
                break;
            };
            t = next;
        }
        let all: Vec<RangeSeries> = order
            .into_iter()
            .filter_map(|l| series.remove(&l))
            .collect();
        let all = Rc::new(all);
        self.subquery_cache.borrow_mut().insert(k, all.clone());
        Ok((all, lo, hi))
    }
}

/// Histogram points with `lo < t <= hi`.
pub(crate) fn hwindow(points: &[HPoint], lo: i64, hi: i64) -> &[HPoint] {
    let a = points.partition_point(|p| p.t <= lo);
    let b = points.partition_point(|p| p.t <= hi);
    points.get(a..b).unwrap_or(&[])
}

/// Samples with `lo < t <= hi` (range selectors are left-open).
pub(crate) fn window(samples: &[Sample], lo: i64, hi: i64) -> &[Sample] {
    let a = samples.partition_point(|p| p.t <= lo);
    let b = samples.partition_point(|p| p.t <= hi);
    samples.get(a..b).unwrap_or(&[])
}

fn load_selector(
    storage: &dyn Queryable,
    vs: &VectorSelector,
    mint: i64,
    maxt: i64,
    is_range: bool,
) -> Result<Vec<LoadedSeries>> {
    // `{a="1" or b="2"}` is a union of plain selections.
    let mut groups: Vec<&[PMatcher]> = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        groups.push(&vs.matchers.matchers);
    } else {
        for g in &vs.matchers.or_matchers {
            groups.push(g);
        }
    }
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    for g in groups {
        let matchers = selector_matchers(vs, g)?;
        let series = storage
            .select(&matchers, mint, maxt)
            .map_err(Error::Storage)?;
        for s in series {
            if seen.insert(s.labels.clone(), ()).is_some() {
                continue;
            }
            let mut samples = s.samples;
            // Range vectors never contain stale markers; instant selectors
            // need them to end the lookback.
            let mut histograms: Vec<HPoint> = s
                .histograms
                .into_iter()
                .map(|p| HPoint {
                    t: p.t,
                    h: Arc::new(p.h),
                })
                .collect();
            if is_range {
                samples.retain(|p| !is_stale_nan(p.v));
                histograms.retain(|p| !is_stale_nan(p.h.sum));
            }
            if !histograms.windows(2).all(|w| w[0].t <= w[1].t) {
                histograms.sort_by_key(|p| p.t);
            }
            // Storage promises sorted samples; sorting again is cheap when
            // true and keeps binary searches correct when not.
            if !samples.windows(2).all(|w| w[0].t <= w[1].t) {
                samples.sort_by_key(|p| p.t);
            }
            out.push(LoadedSeries {
                labels: Arc::new(s.labels),
                samples,
                histograms,
                cursor: Default::default(),
            });
        }
    }
    Ok(out)
}
