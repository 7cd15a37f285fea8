//! Functions over range vectors (`rate`, `<agg>_over_time`, ...), called
//! per series on the samples inside its window at one step.

use std::sync::Arc;

use promql_parser::parser::Expr;
use sonde_model::{Labels, Sample};

use crate::engine::{duration_ms, hwindow, offset_ms, window, Evaluator};
use crate::functions::absent_labels;
use crate::native::{self, RangeOutcome};
use crate::value::{exec_err, Elem, HPoint, RangeSeries, Result, StepValue};

pub(crate) fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// Calls a function taking a range vector: per series, on the samples in
/// its window at this step.
pub(crate) fn eval_range_function(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    matrix_idx: usize,
    ts: i64,
) -> Result<StepValue> {
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != matrix_idx {
            scalars.push(ev.eval_scalar(a, ts)?);
        }
    }
    let Some(m) = args.get(matrix_idx).map(|a| unparen(a)) else {
        return exec_err("missing range vector argument");
    };
    // Range functions drop the metric name, except the two that just pick
    // a sample and so behave like an offset.
    let keeps_name = matches!(name, "last_over_time" | "first_over_time");
    let mut out = Vec::new();
    let mut any = false;
    let mut per_series = |labels: &Arc<Labels>,
                          w: &[Sample],
                          hw: &[HPoint],
                          drop: bool,
                          lo: i64,
                          hi: i64|
     -> Result<()> {
        any = true;
        let outcome = if hw.is_empty() {
            RangeOutcome::FloatsOnly
        } else {
            native::range_fn_mixed(name, w, hw, lo, hi)
        };
        let result = match outcome {
            RangeOutcome::Done(r) => r,
            RangeOutcome::FloatsOnly => range_fn(name, w, &scalars, ts, lo, hi)?.map(|v| (v, None)),
        };
        if let Some((v, h)) = result {
            out.push(Elem {
                labels: labels.clone(),
                t: ts,
                v,
                h,
                drop_name: !keeps_name || drop,
            });
        }
        Ok(())
    };
    match m {
        Expr::MatrixSelector(ms) => {
            let base = ev.at(&ms.vs.at).unwrap_or(ts);
            let hi = base.saturating_sub(offset_ms(&ms.vs.offset));
            let lo = hi.saturating_sub(duration_ms(&ms.range));
            for (labels, w, hw) in ev.range_selector_windows(ms, ts) {
                per_series(labels, w, hw, false, lo, hi)?;
            }
        }
        Expr::Subquery(sq) => {
            let (all, lo, hi) = ev.subquery(sq, ts)?;
            for s in all.iter() {
                let RangeSeries {
                    labels,
                    samples,
                    histograms,
                    drop_name,
                } = s;
                let w = window(samples, lo, hi);
                let hw = hwindow(histograms, lo, hi);
                if !w.is_empty() || !hw.is_empty() {
                    per_series(labels, w, hw, *drop_name, lo, hi)?;
                }
            }
        }
        _ => return exec_err(format!("expected range vector in call to {name}")),
    }
    if name == "absent_over_time" {
        return Ok(StepValue::Vector(if any {
            Vec::new()
        } else {
            vec![Elem {
                labels: Arc::new(absent_labels(m)),
                t: ts,
                v: 1.0,
                h: None,
                drop_name: true,
            }]
        }));
    }
    Ok(StepValue::Vector(out))
}

fn range_fn(
    name: &str,
    w: &[Sample],
    scalars: &[f64],
    ts: i64,
    lo: i64,
    hi: i64,
) -> Result<Option<f64>> {
    let first_scalar = || scalars.first().copied().unwrap_or(f64::NAN);
    let (Some(first), Some(last)) = (w.first(), w.last()) else {
        return Ok(None);
    };
    Ok(match name {
        "rate" => extrapolated_rate(w, lo, hi, true, true),
        "increase" => extrapolated_rate(w, lo, hi, true, false),
        "delta" => extrapolated_rate(w, lo, hi, false, false),
        "irate" => instant_value(w, true),
        "idelta" => instant_value(w, false),
        "changes" => Some(
            w.windows(2)
                .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
                .count() as f64,
        ),
        "resets" => Some(w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64),
        "deriv" => {
            if w.len() < 2 {
                None
            } else {
                Some(linear_regression(w, first.t).0)
            }
        }
        "predict_linear" => {
            if w.len() < 2 {
                None
            } else {
                let (slope, intercept) = linear_regression(w, ts);
                Some(slope * first_scalar() + intercept)
            }
        }
        "double_exponential_smoothing" => {
            let sf = first_scalar();
            let tf = scalars.get(1).copied().unwrap_or(f64::NAN);
            if !(sf > 0.0 && sf < 1.0) {
                return exec_err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                ));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return exec_err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                ));
            }
            double_exponential_smoothing(w, sf, tf)
        }
        "avg_over_time" => Some(avg_over_time(w)),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in w {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        "count_over_time" => Some(w.len() as f64),
        "min_over_time" => {
            Some(
                w.iter()
                    .fold(first.v, |m, p| if p.v < m || m.is_nan() { p.v } else { m }),
            )
        }
        "max_over_time" => {
            Some(
                w.iter()
                    .fold(first.v, |m, p| if p.v > m || m.is_nan() { p.v } else { m }),
            )
        }
        "last_over_time" => Some(last.v),
        "first_over_time" => Some(first.v),
        "present_over_time" | "absent_over_time" => Some(1.0),
        "ts_of_first_over_time" => Some(first.t as f64 / 1000.0),
        "ts_of_last_over_time" => Some(last.t as f64 / 1000.0),
        "ts_of_max_over_time" | "ts_of_min_over_time" => {
            let max = name == "ts_of_max_over_time";
            let (mut best, mut best_t) = (first.v, first.t);
            for p in w {
                let better = if max { p.v >= best } else { p.v <= best };
                if better || best.is_nan() {
                    best = p.v;
                    best_t = p.t;
                }
            }
            Some(best_t as f64 / 1000.0)
        }
        "quantile_over_time" => {
            let mut values: Vec<f64> = w.iter().map(|p| p.v).collect();
            Some(quantile(first_scalar(), &mut values))
        }
        "stddev_over_time" => Some(variance(w).sqrt()),
        "stdvar_over_time" => Some(variance(w)),
        "mad_over_time" if w.iter().any(|p| p.v.is_nan()) => Some(f64::NAN),
        "mad_over_time" => {
            let mut values: Vec<f64> = w.iter().map(|p| p.v).collect();
            let median = quantile(0.5, &mut values);
            let mut dev: Vec<f64> = w.iter().map(|p| (p.v - median).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }
        other => return exec_err(format!("function {other}() is not supported")),
    })
}

/// Prometheus's rate/increase/delta: the change across the window,
/// extrapolated towards the window's edges when the samples suggest the
/// series covers them, and never extrapolated below zero for counters.
pub(crate) fn extrapolated_rate(
    w: &[Sample],
    lo: i64,
    hi: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let first = w.first()?;
    let last = w.last()?;
    let mut result = last.v - first.v;
    if is_counter {
        for p in w.windows(2) {
            if p[1].v < p[0].v {
                result += p[0].v;
            }
        }
    }
    let mut to_start = first.t.saturating_sub(lo) as f64 / 1000.0;
    let mut to_end = hi.saturating_sub(last.t) as f64 / 1000.0;
    let sampled = last.t.saturating_sub(first.t) as f64 / 1000.0;
    let avg_step = sampled / (w.len() - 1) as f64;
    // Samples within 110% of the average spacing from an edge are taken to
    // mean the series continues to that edge; otherwise assume it starts or
    // ends half a step beyond the outermost sample.
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= hi.saturating_sub(lo) as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(w: &[Sample], is_rate: bool) -> Option<f64> {
    let n = w.len();
    if n < 2 {
        return None;
    }
    let (a, b) = (w.get(n - 2)?, w.get(n - 1)?);
    let interval = b.t.saturating_sub(a.t);
    if interval == 0 {
        return None;
    }
    let mut v = b.v;
    // A counter that went down was reset; its new value is the increase.
    if !is_rate || b.v >= a.v || b.v.is_nan() || a.v.is_nan() {
        v = b.v - a.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares fit; returns the slope and the value at `intercept_t`.
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = w.first().map_or(0.0, |p| p.v);
    let mut const_y = true;
    for (i, p) in w.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = p.t.saturating_sub(intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn double_exponential_smoothing(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = w.first()?.v;
    let mut b = w.get(1)?.v - s1;
    for (i, p) in w.iter().enumerate().skip(1) {
        let x = sf * p.v;
        // The trend at step i-1; the first trend is the raw difference.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn avg_over_time(w: &[Sample]) -> f64 {
    let Some(first) = w.first() else {
        return f64::NAN;
    };
    let (mut sum, mut count, mut mean, mut c) = (first.v, 1.0, 0.0, 0.0);
    let mut incremental = false;
    for (i, p) in w.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (s, nc) = kahan_inc(p.v, sum, c);
            if !s.is_infinite() {
                (sum, c) = (s, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(w: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in w {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

pub(crate) use sonde_model::kahan_inc;

/// The q-quantile of `values` by linear interpolation between closest ranks
/// (NaN sorts first, as in Prometheus).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let lv = values.get(lower as usize).copied().unwrap_or(f64::NAN);
    let uv = values.get(upper as usize).copied().unwrap_or(f64::NAN);
    lv * (1.0 - weight) + uv * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // A counter sampled every 15s across a 60s window starting at 0:
        // samples at 15..60 cover the window, so the 45s of observed
        // increase is extrapolated to the full 60s.
        let w = s(&[(15_000, 1.0), (30_000, 2.0), (45_000, 3.0), (60_000, 4.0)]);
        let r = extrapolated_rate(&w, 0, 60_000, true, true).unwrap_or(f64::NAN);
        // Extrapolation to the start stops where the counter would hit zero
        // (15s before the first sample), which here is the window start.
        assert!((r - 4.0 / 60.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn rate_handles_counter_resets() {
        let w = s(&[(0, 5.0), (10_000, 10.0), (20_000, 2.0), (30_000, 4.0)]);
        let inc = extrapolated_rate(&w, 0, 30_000, true, false).unwrap_or(f64::NAN);
        // 5 before the reset, plus 2 + 2 after: 9, no extrapolation needed.
        assert!((inc - 9.0).abs() < 1e-12, "{inc}");
    }

    #[test]
    fn rate_needs_two_samples() {
        assert_eq!(
            extrapolated_rate(&s(&[(0, 1.0)]), 0, 60_000, true, true),
            None
        );
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }
}
