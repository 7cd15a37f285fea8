//! The PromQL function library, evaluated at one step.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{Call, Expr};
use sonde_model::{Labels, Sample, METRIC_NAME};

use crate::engine::{check_unique, duration_ms, offset_ms, window, Evaluator};
use crate::histogram::{bucket_fraction, bucket_quantile, Bucket};
use crate::value::{exec_err, Elem, RangeSeries, Result, StepValue};

pub(crate) fn eval_call(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Result<StepValue> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    let arg = |i: usize| -> Result<&Expr> {
        match args.get(i) {
            Some(a) => Ok(*a),
            None => exec_err(format!("missing argument {} in call to {name}", i + 1)),
        }
    };
    if let Some(i) = args.iter().position(|a| is_range_arg(a)) {
        return eval_range_function(ev, name, &args, i, ts);
    }
    let vec = |i: usize| -> Result<Vec<Elem>> { ev.eval_vector(arg(i)?, ts) };
    let scalar = |i: usize| -> Result<f64> { ev.eval_scalar(arg(i)?, ts) };
    let out = match name {
        "time" => return Ok(StepValue::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(StepValue::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = vec(0)?;
            return Ok(StepValue::Scalar(match v.as_slice() {
                [one] => one.v,
                _ => f64::NAN,
            }));
        }
        "vector" => vec![Elem {
            labels: Arc::new(Labels::empty()),
            t: ts,
            v: scalar(0)?,
            drop_name: false,
        }],
        "abs" => map(vec(0)?, ts, f64::abs),
        "ceil" => map(vec(0)?, ts, f64::ceil),
        "floor" => map(vec(0)?, ts, f64::floor),
        "exp" => map(vec(0)?, ts, f64::exp),
        "sqrt" => map(vec(0)?, ts, f64::sqrt),
        "ln" => map(vec(0)?, ts, f64::ln),
        "log2" => map(vec(0)?, ts, f64::log2),
        "log10" => map(vec(0)?, ts, f64::log10),
        "sin" => map(vec(0)?, ts, f64::sin),
        "cos" => map(vec(0)?, ts, f64::cos),
        "tan" => map(vec(0)?, ts, f64::tan),
        "asin" => map(vec(0)?, ts, f64::asin),
        "acos" => map(vec(0)?, ts, f64::acos),
        "atan" => map(vec(0)?, ts, f64::atan),
        "sinh" => map(vec(0)?, ts, f64::sinh),
        "cosh" => map(vec(0)?, ts, f64::cosh),
        "tanh" => map(vec(0)?, ts, f64::tanh),
        "asinh" => map(vec(0)?, ts, f64::asinh),
        "acosh" => map(vec(0)?, ts, f64::acosh),
        "atanh" => map(vec(0)?, ts, f64::atanh),
        "rad" => map(vec(0)?, ts, |v| v * std::f64::consts::PI / 180.0),
        "deg" => map(vec(0)?, ts, |v| v * 180.0 / std::f64::consts::PI),
        "sgn" => map(vec(0)?, ts, |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "round" => {
            let to_nearest = if args.len() >= 2 { scalar(1)? } else { 1.0 };
            // Multiplying by the inverse gives fewer float surprises than
            // dividing, as Prometheus found.
            let inv = 1.0 / to_nearest;
            map(vec(0)?, ts, |v| (v * inv + 0.5).floor() / inv)
        }
        "clamp" => clamp(vec(0)?, scalar(1)?, scalar(2)?, ts),
        "clamp_min" => clamp(vec(0)?, scalar(1)?, f64::INFINITY, ts),
        "clamp_max" => clamp(vec(0)?, f64::NEG_INFINITY, scalar(1)?, ts),
        "timestamp" => {
            // A bare selector reports its samples' own timestamps; anything
            // computed is stamped with the evaluation time.
            let direct = matches!(arg(0)?, Expr::VectorSelector(_));
            vec(0)?
                .into_iter()
                .map(|mut e| {
                    e.v = if direct { e.t as f64 / 1000.0 } else { ts as f64 / 1000.0 };
                    e.t = ts;
                    e.drop_name = true;
                    e
                })
                .collect()
        }
        "absent" => {
            if vec(0)?.is_empty() {
                vec![Elem {
                    labels: Arc::new(absent_labels(arg(0)?)),
                    t: ts,
                    v: 1.0,
                    drop_name: true,
                }]
            } else {
                Vec::new()
            }
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            if args.is_empty() {
                vec![Elem {
                    labels: Arc::new(Labels::empty()),
                    t: ts,
                    v: date_part(name, ts.div_euclid(1000)),
                    drop_name: false,
                }]
            } else {
                map(vec(0)?, ts, |v| {
                    if v.is_finite() {
                        date_part(name, v as i64)
                    } else {
                        f64::NAN
                    }
                })
            }
        }
        "sort" => {
            let mut v = vec(0)?;
            // NaN sorts last in both directions.
            v.sort_by(|a, b| nan_last_cmp(a.v, b.v, false));
            v
        }
        "sort_desc" => {
            let mut v = vec(0)?;
            v.sort_by(|a, b| nan_last_cmp(a.v, b.v, true));
            v
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut names = Vec::new();
            for i in 1..args.len() {
                names.push(ev.eval_string(arg(i)?, ts)?);
            }
            let mut v = vec(0)?;
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for n in &names {
                    let x = a.labels.get(n).unwrap_or("");
                    let y = b.labels.get(n).unwrap_or("");
                    if x == y {
                        continue;
                    }
                    let less = natural_less(x, y);
                    return match (less, desc) {
                        (true, false) | (false, true) => std::cmp::Ordering::Less,
                        _ => std::cmp::Ordering::Greater,
                    };
                }
                let ord = a.labels.cmp(&b.labels);
                if desc {
                    ord.reverse()
                } else {
                    ord
                }
            });
            v
        }
        "label_replace" => label_replace(ev, &args, ts)?,
        "label_join" => label_join(ev, &args, ts)?,
        "histogram_quantile" => histogram_quantile(scalar(0)?, vec(1)?, ts),
        "histogram_fraction" => histogram_fraction(scalar(0)?, scalar(1)?, vec(2)?, ts),
        // These read native histograms only; float samples are skipped.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            vec(0)?;
            Vec::new()
        }
        other => return exec_err(format!("function {other}() is not supported")),
    };
    Ok(StepValue::Vector(out))
}

fn is_range_arg(e: &Expr) -> bool {
    match e {
        Expr::MatrixSelector(_) | Expr::Subquery(_) => true,
        Expr::Paren(p) => is_range_arg(&p.expr),
        _ => false,
    }
}

/// Applies `f` to each value; the result is no longer the named metric.
fn map(vec: Vec<Elem>, ts: i64, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    vec.into_iter()
        .map(|mut e| {
            e.v = f(e.v);
            e.t = ts;
            e.drop_name = true;
            e
        })
        .collect()
}

fn clamp(vec: Vec<Elem>, min: f64, max: f64, ts: i64) -> Vec<Elem> {
    if max < min {
        return Vec::new();
    }
    map(vec, ts, |v| min.max(max.min(v)))
}

/// NaN-aware ordering that places NaN last, ascending or descending.
fn nan_last_cmp(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

/// Natural order: digit runs compare as numbers, as facette/natsort does
/// for Prometheus's sort_by_label.
pub(crate) fn natural_less(a: &str, b: &str) -> bool {
    let ca = chunks(a);
    let cb = chunks(b);
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else {
            return false;
        };
        let nx: Option<u128> = x.parse().ok();
        let ny: Option<u128> = y.parse().ok();
        if let (Some(nx), Some(ny)) = (nx, ny) {
            if nx == ny {
                if i == ca.len() - 1 {
                    return true;
                } else if i == cb.len() - 1 {
                    return false;
                }
                continue;
            }
            return nx < ny;
        }
        if x == y {
            if i == ca.len() - 1 {
                return true;
            } else if i == cb.len() - 1 {
                return false;
            }
            continue;
        }
        return x < y;
    }
    false
}

fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_digit: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let d = c.is_ascii_digit();
        if prev_digit.is_some_and(|p| p != d) {
            out.push(&s[start..i]);
            start = i;
        }
        prev_digit = Some(d);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The labels `absent()` reports: those fixed by equality matchers.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = sonde_model::LabelsBuilder::new();
    let mut has: HashMap<&str, bool> = HashMap::new();
    for m in vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
    {
        if m.name == METRIC_NAME {
            continue;
        }
        let seen = has.get(m.name.as_str()).copied().unwrap_or(false);
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !seen {
            b.set(m.name.clone(), m.value.clone());
            has.insert(&m.name, true);
        } else {
            b.remove(&m.name);
        }
    }
    b.build()
}

/// Splits unix seconds into a civil UTC date (Howard Hinnant's algorithm).
fn civil(secs: i64) -> (i64, u32, u32, i64) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let mut y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    if m <= 2 {
        y += 1;
    }
    (y, m, d, sod)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

fn date_part(name: &str, secs: i64) -> f64 {
    let (y, m, d, sod) = civil(secs);
    match name {
        "day_of_month" => f64::from(d),
        // 1970-01-01 was a Thursday.
        "day_of_week" => (secs.div_euclid(86_400) + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let before: u32 = (1..m).map(|mm| days_in_month(y, mm)).sum();
            f64::from(before + d)
        }
        "days_in_month" => f64::from(days_in_month(y, m)),
        "hour" => (sod / 3600) as f64,
        "minute" => ((sod % 3600) / 60) as f64,
        "month" => f64::from(m),
        _ => y as f64,
    }
}

fn label_replace(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Vec<Elem>> {
    let [v, dst, repl, src, re] = args else {
        return exec_err("label_replace needs 5 arguments");
    };
    let dst = ev.eval_string(dst, ts)?;
    let repl = ev.eval_string(repl, ts)?;
    let src = ev.eval_string(src, ts)?;
    let re_str = ev.eval_string(re, ts)?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        crate::value::Error::Execution(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if dst.is_empty() {
        return exec_err(format!("invalid destination label name in label_replace(): {dst}"));
    }
    let mut out = ev.eval_vector(v, ts)?;
    for e in &mut out {
        let src_val = e.labels.get(&src).unwrap_or("");
        if let Some(caps) = re.captures(src_val) {
            let mut value = String::new();
            caps.expand(&repl, &mut value);
            let mut b = Labels::clone(&e.labels).into_builder();
            b.set(dst.clone(), value);
            e.labels = Arc::new(b.build());
            if dst == METRIC_NAME {
                e.drop_name = false;
            }
        }
    }
    check_unique(out.iter().map(|e| e.labels.as_ref()))?;
    Ok(out)
}

fn label_join(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Vec<Elem>> {
    let (Some(v), Some(dst), Some(sep)) = (args.first(), args.get(1), args.get(2)) else {
        return exec_err("label_join needs at least 3 arguments");
    };
    let dst = ev.eval_string(dst, ts)?;
    let sep = ev.eval_string(sep, ts)?;
    let mut srcs = Vec::new();
    for a in args.iter().skip(3) {
        let s = ev.eval_string(a, ts)?;
        if s.is_empty() {
            return exec_err(format!("invalid source label name in label_join(): {s}"));
        }
        srcs.push(s);
    }
    if dst.is_empty() {
        return exec_err(format!("invalid destination label name in label_join(): {dst}"));
    }
    let mut out = ev.eval_vector(v, ts)?;
    for e in &mut out {
        let joined = srcs
            .iter()
            .map(|s| e.labels.get(s).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        let mut b = Labels::clone(&e.labels).into_builder();
        b.set(dst.clone(), joined);
        e.labels = Arc::new(b.build());
        if dst == METRIC_NAME {
            e.drop_name = false;
        }
    }
    check_unique(out.iter().map(|e| e.labels.as_ref()))?;
    Ok(out)
}

/// Groups classic histogram buckets (`le` series) by their other labels.
fn classic_buckets(vec: &[Elem]) -> Vec<(Labels, Vec<Bucket>)> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    for e in vec {
        let Some(le) = e.labels.get("le") else {
            continue;
        };
        let Some(upper) = parse_go_float(le) else {
            continue;
        };
        let key = e.labels.without(&["le"]);
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key.without(&[METRIC_NAME]), Vec::new()));
            groups.len() - 1
        });
        if let Some(g) = groups.get_mut(i) {
            g.1.push(Bucket {
                upper,
                count: e.v,
            });
        }
    }
    groups
}

/// Parses a float the way Go's strconv.ParseFloat accepts `le` values.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.parse().ok(),
    }
}

fn histogram_quantile(q: f64, vec: Vec<Elem>, ts: i64) -> Vec<Elem> {
    classic_buckets(&vec)
        .into_iter()
        .map(|(labels, mut buckets)| Elem {
            labels: Arc::new(labels),
            t: ts,
            v: bucket_quantile(q, &mut buckets),
            drop_name: true,
        })
        .collect()
}

fn histogram_fraction(lower: f64, upper: f64, vec: Vec<Elem>, ts: i64) -> Vec<Elem> {
    classic_buckets(&vec)
        .into_iter()
        .map(|(labels, mut buckets)| Elem {
            labels: Arc::new(labels),
            t: ts,
            v: bucket_fraction(lower, upper, &mut buckets),
            drop_name: true,
        })
        .collect()
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// Calls a function taking a range vector: per series, on the samples in
/// its window at this step.
fn eval_range_function(
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
    let mut per_series = |labels: &Arc<Labels>, w: &[Sample], drop: bool, lo: i64, hi: i64| -> Result<()> {
        any = true;
        if let Some(v) = range_fn(name, w, &scalars, ts, lo, hi)? {
            out.push(Elem {
                labels: labels.clone(),
                t: ts,
                v,
                drop_name: !keeps_name || drop,
            });
        }
        Ok(())
    };
    match m {
        Expr::MatrixSelector(ms) => {
            let base = ev.at(&ms.vs.at).unwrap_or(ts);
            let hi = base - offset_ms(&ms.vs.offset);
            let lo = hi - duration_ms(&ms.range);
            for (labels, w) in ev.range_selector_windows(ms, ts) {
                per_series(labels, w, false, lo, hi)?;
            }
        }
        Expr::Subquery(sq) => {
            let (all, lo, hi) = ev.subquery(sq, ts)?;
            for s in all.iter() {
                let RangeSeries {
                    labels,
                    samples,
                    drop_name,
                } = s;
                let w = window(samples, lo, hi);
                if !w.is_empty() {
                    per_series(labels, w, *drop_name, lo, hi)?;
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
                drop_name: true,
            }]
        }));
    }
    Ok(StepValue::Vector(out))
}

fn range_fn(name: &str, w: &[Sample], scalars: &[f64], ts: i64, lo: i64, hi: i64) -> Result<Option<f64>> {
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
        "min_over_time" => Some(w.iter().fold(first.v, |m, p| {
            if p.v < m || m.is_nan() {
                p.v
            } else {
                m
            }
        })),
        "max_over_time" => Some(w.iter().fold(first.v, |m, p| {
            if p.v > m || m.is_nan() {
                p.v
            } else {
                m
            }
        })),
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
pub(crate) fn extrapolated_rate(w: &[Sample], lo: i64, hi: i64, is_counter: bool, is_rate: bool) -> Option<f64> {
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
    let mut to_start = (first.t - lo) as f64 / 1000.0;
    let mut to_end = (hi - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
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
        factor /= (hi - lo) as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(w: &[Sample], is_rate: bool) -> Option<f64> {
    let n = w.len();
    if n < 2 {
        return None;
    }
    let (a, b) = (w.get(n - 2)?, w.get(n - 1)?);
    let interval = b.t - a.t;
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
        let x = (p.t - intercept_t) as f64 / 1e3;
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

/// Kahan-Neumaier compensated summation step: returns the new sum and the
/// new compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

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
        assert_eq!(extrapolated_rate(&s(&[(0, 1.0)]), 0, 60_000, true, true), None);
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
    }

    #[test]
    fn civil_dates() {
        // 2016-02-29 12:34:56 UTC
        let t = 1_456_749_296;
        assert_eq!(date_part("year", t), 2016.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 1.0);
        assert_eq!(date_part("hour", t), 12.0);
        assert_eq!(date_part("minute", t), 34.0);
        assert_eq!(date_part("year", -1), 1969.0);
    }
}
