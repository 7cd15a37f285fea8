//! Native histogram support in PromQL functions: range functions over
//! windows that hold histogram samples, and the `histogram_*` functions.
//!
//! Prometheus reports misuse (mixing floats and histograms, exponential and
//! custom buckets, ...) as annotations and drops the affected element; we
//! drop it the same way. Annotations themselves are not reported yet.

use std::sync::Arc;

use sonde_model::{CounterResetHint, FloatHistogram, Sample};

use crate::over_time::kahan_inc;
use crate::value::{Elem, HPoint, Hist};

/// What a range function makes of a window holding histogram samples.
pub(crate) enum RangeOutcome {
    /// The result (or nothing) for this series.
    Done(Option<(f64, Option<Hist>)>),
    /// The function reads floats only: evaluate it on the float samples.
    FloatsOnly,
}

fn float(v: f64) -> RangeOutcome {
    RangeOutcome::Done(Some((v, None)))
}

fn hist(h: FloatHistogram) -> RangeOutcome {
    RangeOutcome::Done(Some((0.0, Some(Arc::new(h)))))
}

const NONE: RangeOutcome = RangeOutcome::Done(None);

/// A float or histogram sample, for functions that walk both in time order.
enum Point<'a> {
    F(f64),
    H(&'a FloatHistogram),
}

/// Float and histogram samples merged in time order.
fn merged<'a>(w: &'a [Sample], hw: &'a [HPoint]) -> Vec<(i64, Point<'a>)> {
    let mut out = Vec::with_capacity(w.len() + hw.len());
    let (mut i, mut j) = (0, 0);
    while i < w.len() || j < hw.len() {
        let take_float = match (w.get(i), hw.get(j)) {
            (Some(f), Some(h)) => f.t < h.t,
            (Some(_), None) => true,
            _ => false,
        };
        if take_float {
            if let Some(f) = w.get(i) {
                out.push((f.t, Point::F(f.v)));
            }
            i += 1;
        } else {
            if let Some(h) = hw.get(j) {
                out.push((h.t, Point::H(&h.h)));
            }
            j += 1;
        }
    }
    out
}

/// Range functions over a window with at least one histogram sample.
pub(crate) fn range_fn_mixed(
    name: &str,
    w: &[Sample],
    hw: &[HPoint],
    lo: i64,
    hi: i64,
) -> RangeOutcome {
    let (Some(hfirst), Some(hlast)) = (hw.first(), hw.last()) else {
        return RangeOutcome::FloatsOnly;
    };
    match name {
        "rate" | "increase" | "delta" => {
            if !w.is_empty() {
                return NONE;
            }
            let is_counter = name != "delta";
            match histogram_rate(hw, lo, hi, is_counter, name == "rate") {
                Some(h) => hist(h),
                None => NONE,
            }
        }
        "irate" | "idelta" => instant_value(w, hw, name == "irate"),
        "changes" | "resets" => {
            let points = merged(w, hw);
            let mut n = 0usize;
            for pair in points.windows(2) {
                let changed = match (&pair[0].1, &pair[1].1) {
                    (Point::F(a), Point::F(b)) => {
                        if name == "changes" {
                            a != b && !(a.is_nan() && b.is_nan())
                        } else {
                            b < a
                        }
                    }
                    (Point::H(a), Point::H(b)) => {
                        if name == "changes" {
                            !b.equals(a)
                        } else {
                            b.detect_reset(a)
                        }
                    }
                    // Switching between floats and histograms counts as
                    // both a change and a reset.
                    _ => true,
                };
                n += usize::from(changed);
            }
            float(n as f64)
        }
        "sum_over_time" | "avg_over_time" => {
            if !w.is_empty() {
                return NONE;
            }
            let mean = name == "avg_over_time";
            let mut acc = HistAcc::new(&hfirst.h);
            for p in hw.iter().skip(1) {
                acc.add(&p.h, mean);
            }
            let result = if mean { acc.mean() } else { acc.sum() };
            match result {
                Some(h) => hist(h),
                None => NONE,
            }
        }
        "count_over_time" => float((w.len() + hw.len()) as f64),
        "present_over_time" | "absent_over_time" => float(1.0),
        "last_over_time" => match w.last() {
            Some(f) if f.t > hlast.t => float(f.v),
            _ => hist(FloatHistogram::clone(&hlast.h)),
        },
        "first_over_time" => match w.first() {
            Some(f) if f.t < hfirst.t => float(f.v),
            _ => hist(FloatHistogram::clone(&hfirst.h)),
        },
        "ts_of_last_over_time" => {
            let t = w.last().map_or(hlast.t, |f| f.t.max(hlast.t));
            float(t as f64 / 1000.0)
        }
        "ts_of_first_over_time" => {
            let t = w.first().map_or(hfirst.t, |f| f.t.min(hfirst.t));
            float(t as f64 / 1000.0)
        }
        _ => RangeOutcome::FloatsOnly,
    }
}

/// Sum or mean of histograms with Kahan compensation, like Prometheus's
/// `sum`/`avg` and `sum_over_time`/`avg_over_time`. For the mean, the sum
/// is used until it overflows; from then on an incremental mean.
pub(crate) struct HistAcc {
    /// The running sum, or the running mean once `incremental`.
    acc: FloatHistogram,
    comp: Option<FloatHistogram>,
    count: f64,
    incremental: bool,
    /// Exponential and custom buckets were mixed: there is no result.
    failed: bool,
}

impl HistAcc {
    pub fn new(first: &FloatHistogram) -> HistAcc {
        HistAcc {
            acc: first.clone(),
            comp: None,
            count: 1.0,
            incremental: false,
            failed: false,
        }
    }

    /// Adds `h`; `for_mean` allows switching to an incremental mean when
    /// the sum overflows.
    pub fn add(&mut self, h: &FloatHistogram, for_mean: bool) {
        if self.failed {
            return;
        }
        self.count += 1.0;
        if !self.incremental {
            let mut sum = self.acc.clone();
            match sum.kahan_add(h, self.comp.clone()) {
                Err(_) => {
                    self.failed = true;
                    return;
                }
                Ok((comp, _)) if !for_mean || !sum.has_overflow() => {
                    self.acc = sum;
                    self.comp = Some(comp);
                    return;
                }
                Ok(_) => {}
            }
            self.incremental = true;
            self.acc.div(self.count - 1.0);
            if let Some(c) = &mut self.comp {
                c.div(self.count - 1.0);
            }
        }
        let q = (self.count - 1.0) / self.count;
        if let Some(c) = &mut self.comp {
            c.mul(q);
        }
        self.acc.mul(q);
        let mut add = h.clone();
        add.div(self.count);
        match self.acc.kahan_add(&add, self.comp.take()) {
            Ok((comp, _)) => self.comp = Some(comp),
            Err(_) => self.failed = true,
        }
    }

    pub fn sum(self) -> Option<FloatHistogram> {
        self.finish(false)
    }

    pub fn mean(self) -> Option<FloatHistogram> {
        self.finish(true)
    }

    fn finish(mut self, mean: bool) -> Option<FloatHistogram> {
        if self.failed {
            return None;
        }
        if mean && !self.incremental {
            self.acc.div(self.count);
            if let Some(c) = &mut self.comp {
                c.div(self.count);
            }
        }
        if let Some(c) = &self.comp {
            let hint = self.acc.counter_reset_hint;
            self.acc.add(c).ok()?;
            self.acc.counter_reset_hint = hint;
        }
        self.acc.compact();
        Some(self.acc)
    }
}

/// Prometheus's rate/increase/delta for histogram samples: the difference
/// between last and first (plus what counter resets lost), extrapolated
/// like the float version.
fn histogram_rate(
    points: &[HPoint],
    lo: i64,
    hi: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<FloatHistogram> {
    if points.len() < 2 {
        return None;
    }
    let first = points.first()?;
    let last = points.last()?;
    let mut prev: FloatHistogram = FloatHistogram::clone(&first.h);
    let custom = |h: &FloatHistogram| h.uses_custom_buckets();
    // A reset right after the first sample makes its layout irrelevant.
    if is_counter {
        let second = &points.get(1)?.h;
        if second.detect_reset(&prev) {
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..FloatHistogram::default()
            };
        }
    }
    if custom(&last.h) != custom(&prev) {
        return None;
    }
    let mut min_schema = last.h.schema.min(prev.schema);
    for p in points.get(1..points.len() - 1).unwrap_or(&[]) {
        if is_counter {
            min_schema = min_schema.min(p.h.schema);
            if custom(&p.h) != custom(&prev) {
                return None;
            }
        }
    }
    let mut h = last.h.to_schema(min_schema);
    h.sub(&prev).ok()?;
    if is_counter {
        let mut before: &FloatHistogram = &prev;
        for p in points.get(1..).unwrap_or(&[]) {
            if p.h.detect_reset(before) {
                h.add(before).ok()?;
            }
            before = &p.h;
        }
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();

    let mut to_start = first.t.saturating_sub(lo) as f64 / 1000.0;
    let mut to_end = hi.saturating_sub(last.t) as f64 / 1000.0;
    let sampled = last.t.saturating_sub(first.t) as f64 / 1000.0;
    let avg_step = sampled / (points.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter && h.count > 0.0 && first.h.count >= 0.0 {
        let to_zero = sampled * (first.h.count / h.count);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= hi.saturating_sub(lo) as f64 / 1000.0;
    }
    h.mul(factor);
    Some(h)
}

/// irate/idelta over the last two samples, which must both be histograms
/// (or both floats, handled by the float code).
fn instant_value(w: &[Sample], hw: &[HPoint], is_rate: bool) -> RangeOutcome {
    let points = merged(w, hw);
    let n = points.len();
    if n < 2 {
        return NONE;
    }
    let (Some((t0, a)), Some((t1, b))) = (points.get(n - 2), points.get(n - 1)) else {
        return NONE;
    };
    let interval = t1.saturating_sub(*t0);
    if interval == 0 {
        return NONE;
    }
    match (a, b) {
        (Point::H(a), Point::H(b)) => {
            let mut out = FloatHistogram::clone(b);
            if (!is_rate || !b.detect_reset(a)) && out.sub(a).is_err() {
                return NONE;
            }
            out.counter_reset_hint = CounterResetHint::Gauge;
            out.compact();
            if is_rate {
                out.div(interval as f64 / 1000.0);
            }
            hist(out)
        }
        (Point::F(a), Point::F(b)) => {
            let mut v = *b;
            if !is_rate || b >= a || b.is_nan() || a.is_nan() {
                v = b - a;
            }
            if is_rate {
                v /= interval as f64 / 1000.0;
            }
            float(v)
        }
        _ => NONE,
    }
}

/// The instant-vector functions that read native histograms:
/// `histogram_count`, `_sum`, `_avg`, `_stddev` and `_stdvar`. Float
/// samples are skipped.
pub(crate) fn histogram_stat(name: &str, vec: Vec<Elem>, ts: i64) -> Vec<Elem> {
    vec.into_iter()
        .filter_map(|e| {
            let h = e.h.as_ref()?;
            let v = match name {
                "histogram_count" => h.count,
                "histogram_sum" => h.sum,
                "histogram_avg" => h.sum / h.count,
                "histogram_stddev" => variance(h).sqrt(),
                _ => variance(h),
            };
            Some(Elem::float(e.labels.clone(), ts, v, true))
        })
        .collect()
}

/// Estimated variance of the observations: each bucket's population sits
/// at its (geometric, for exponential buckets) mean.
fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let m = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -m
            } else {
                m
            }
        };
        let delta = val - mean;
        (var, c) = kahan_inc(b.count * delta * delta, var, c);
    }
    (var + c) / h.count
}

/// Prometheus's `histogram_quantile` for a native histogram: exponential
/// interpolation inside exponential buckets, linear inside the zero bucket
/// and inside custom buckets.
pub(crate) fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let forward = h.sum.is_nan() || q < 0.5;
    let mut buckets = h.all_buckets();
    let mut rank = if forward {
        q * h.count
    } else {
        buckets.reverse();
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket = None;
    for b in &buckets {
        bucket = Some(*b);
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        if count >= rank {
            break;
        }
    }
    let Some(mut b) = bucket else {
        return f64::NAN;
    };
    let custom = h.uses_custom_buckets();
    if !custom && b.lower < 0.0 && b.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    } else if custom {
        if b.lower == f64::NEG_INFINITY {
            if b.upper <= 0.0 {
                return b.upper;
            }
            b.lower = 0.0;
        } else if b.upper == f64::INFINITY {
            return b.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    // Only NaN observations lie beyond the buckets: the quantile is NaN.
    if count < rank {
        return f64::NAN;
    }
    if forward {
        rank -= count - b.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / b.count;
    if custom || (b.lower <= 0.0 && b.upper >= 0.0) {
        return b.lower + (b.upper - b.lower) * fraction;
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    if b.lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }
}

/// Prometheus's `histogram_fraction` for a native histogram: the share of
/// observations between `lower` and `upper`, interpolating like
/// [`quantile`].
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let custom = h.uses_custom_buckets();
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for mut b in h.all_buckets() {
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        // A bucket of infinite width cannot be interpolated: a bound inside
        // it counts none of it towards the fraction, like classic buckets.
        let linear = |v: f64| {
            if b.lower == f64::NEG_INFINITY {
                rank + b.count
            } else if b.upper == f64::INFINITY {
                rank
            } else {
                rank + b.count * (v - b.lower) / (b.upper - b.lower)
            }
        };
        let exponential = |v: f64| {
            let log_lower = b.lower.abs().log2();
            let log_upper = b.upper.abs().log2();
            let log_v = v.abs().log2();
            let f = if v > 0.0 {
                (log_v - log_lower) / (log_upper - log_lower)
            } else {
                1.0 - ((log_v - log_upper) / (log_lower - log_upper))
            };
            rank + b.count * f
        };
        let interpolate = |v: f64| {
            if custom || zero_bucket {
                linear(v)
            } else {
                exponential(v)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    // Bounds beyond all buckets take everything in them; NaN observations
    // (counted in `count` but in no bucket) are in no fraction.
    let total = h
        .all_buckets()
        .iter()
        .map(|b| b.count)
        .sum::<f64>()
        .min(h.count);
    if !lower_set || lower_rank > total {
        lower_rank = total;
    }
    if !upper_set || upper_rank > total {
        upper_rank = total;
    }
    (upper_rank - lower_rank) / h.count
}

/// Go's `%g` formatting of a float (shortest digits, exponent form below
/// 1e-4 and from 1e6 up), as histogram strings use it.
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Prometheus's `FloatHistogram.String()`, used as a label value by
/// `count_values`.
pub(crate) fn histogram_string(h: &FloatHistogram) -> String {
    let mut s = format!("{{count:{}, sum:{}", go_g(h.count), go_g(h.sum));
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let open = if b.lower_inclusive { '[' } else { '(' };
        let close = if b.upper_inclusive { ']' } else { ')' };
        s.push_str(&format!(
            ", {open}{},{}{close}:{}",
            go_g(b.lower),
            go_g(b.upper),
            go_g(b.count)
        ));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_model::collapse_buckets;

    fn h(schema: i32, pos: &[(i32, f64)], neg: &[(i32, f64)], zero: f64) -> FloatHistogram {
        let (positive_spans, positive_buckets) = collapse_buckets(pos);
        let (negative_spans, negative_buckets) = collapse_buckets(neg);
        let count = pos.iter().chain(neg).map(|b| b.1).sum::<f64>() + zero;
        FloatHistogram {
            schema,
            count,
            sum: 10.0,
            zero_count: zero,
            zero_threshold: 0.001,
            positive_spans,
            positive_buckets,
            negative_spans,
            negative_buckets,
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn string_matches_prometheus() {
        let x = h(0, &[(0, 1.0), (1, 2.0)], &[(0, 1.0), (1, 2.0)], 2.0);
        assert_eq!(
            histogram_string(&x),
            "{count:8, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}"
        );
    }

    #[test]
    fn quantile_interpolates_exponentially() {
        let x = h(0, &[(1, 4.0)], &[], 0.0);
        // The middle of (1, 2] on a log scale.
        assert!((quantile(0.5, &x) - 2f64.sqrt()).abs() < 1e-12);
        assert!((fraction(0.0, 2f64.sqrt(), &x) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn go_g_switches_to_exponents() {
        assert_eq!(go_g(1e-5), "1e-05");
        assert_eq!(go_g(0.001), "0.001");
        assert_eq!(go_g(20.0), "20");
        assert_eq!(go_g(1.5e6), "1.5e+06");
        assert_eq!(go_g(123456.0), "123456");
    }
}
