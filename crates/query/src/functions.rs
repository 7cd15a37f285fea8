//! The PromQL function library, evaluated at one step.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{Call, Expr};
use sonde_model::{Labels, METRIC_NAME};

use crate::engine::{check_unique, Evaluator};
use crate::histogram::{bucket_fraction, bucket_quantile, Bucket};
use crate::native;
use crate::over_time::{eval_range_function, unparen};
use crate::value::{exec_err, Elem, Result, StepValue};

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
        "start" => return Ok(StepValue::Scalar(ev.start as f64 / 1000.0)),
        "end" => return Ok(StepValue::Scalar(ev.end as f64 / 1000.0)),
        "step" => return Ok(StepValue::Scalar(ev.step as f64 / 1000.0)),
        "range" => {
            return Ok(StepValue::Scalar(
                ev.end.saturating_sub(ev.start) as f64 / 1000.0,
            ))
        }
        "min_of" => return Ok(StepValue::Scalar(go_min(scalar(0)?, scalar(1)?))),
        "max_of" => return Ok(StepValue::Scalar(go_max(scalar(0)?, scalar(1)?))),
        "pi" => return Ok(StepValue::Scalar(std::f64::consts::PI)),
        "scalar" => {
            // Histogram samples are ignored: one float among them counts.
            let v = floats_only(vec(0)?);
            return Ok(StepValue::Scalar(match v.as_slice() {
                [one] => one.v,
                _ => f64::NAN,
            }));
        }
        "vector" => vec![Elem {
            labels: Arc::new(Labels::empty()),
            t: ts,
            v: scalar(0)?,
            h: None,
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
            let direct = matches!(unparen(arg(0)?), Expr::VectorSelector(_));
            vec(0)?
                .into_iter()
                .map(|mut e| {
                    e.v = if direct {
                        e.t as f64 / 1000.0
                    } else {
                        ts as f64 / 1000.0
                    };
                    e.h = None;
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
                    h: None,
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
                    h: None,
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
            let mut v = floats_only(vec(0)?);
            // NaN sorts last in both directions.
            v.sort_by(|a, b| nan_last_cmp(a.v, b.v, false));
            v
        }
        "sort_desc" => {
            let mut v = floats_only(vec(0)?);
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
        "histogram_quantiles" => {
            let label = ev.eval_string(arg(1)?, ts)?;
            let mut qs = Vec::new();
            for i in 2..args.len() {
                qs.push(scalar(i)?);
            }
            let v = vec(0)?;
            let mut out = Vec::new();
            for q in qs {
                let q_str = openmetrics_float(q);
                for mut e in histogram_quantile(q, v.clone(), ts) {
                    let mut b = Labels::clone(&e.labels).into_builder();
                    b.set(label.clone(), q_str.clone());
                    e.labels = Arc::new(b.build());
                    out.push(e);
                }
            }
            out
        }
        "histogram_fraction" => histogram_fraction(scalar(0)?, scalar(1)?, vec(2)?, ts),
        // These read native histograms only; float samples are skipped.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => native::histogram_stat(name, vec(0)?, ts),
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

/// Drops native histogram samples, which float-only functions ignore.
fn floats_only(mut vec: Vec<Elem>) -> Vec<Elem> {
    vec.retain(|e| e.h.is_none());
    vec
}

/// Applies `f` to each float value (histograms are skipped); the result is
/// no longer the named metric.
fn map(vec: Vec<Elem>, ts: i64, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    floats_only(vec)
        .into_iter()
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
    map(vec, ts, |v| go_max(min, go_min(max, v)))
}

/// Go's math.Max: +Inf wins over NaN, otherwise NaN propagates.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's math.Min: -Inf wins over NaN, otherwise NaN propagates.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else if a < b {
        a
    } else {
        b
    }
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
pub(crate) fn absent_labels(e: &Expr) -> Labels {
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

/// Splits unix seconds into a civil UTC date and the second of the day.
fn civil(secs: i64) -> (i64, u32, u32, i64) {
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = sonde_model::time::civil_from_days(secs.div_euclid(86_400));
    (y, m as u32, d as u32, sod)
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
    if dst.is_empty() || ev.invalid_strings.contains_key(&dst) {
        return exec_err(format!(
            "invalid destination label name in label_replace(): {dst}"
        ));
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
    if dst.is_empty() || ev.invalid_strings.contains_key(&dst) {
        return exec_err(format!(
            "invalid destination label name in label_join(): {dst}"
        ));
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

/// Groups classic histogram buckets (`le` series) by their other labels,
/// and sets native histograms apart. A native histogram whose labels equal
/// a classic group's (without `le`) makes both ambiguous: both are
/// dropped, as in Prometheus.
fn classic_buckets(vec: &[Elem]) -> (Vec<(Labels, Vec<Bucket>)>, Vec<&Elem>) {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut natives = Vec::new();
    for e in vec {
        if e.h.is_some() {
            natives.push(e);
            continue;
        }
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
            g.1.push(Bucket { upper, count: e.v });
        }
    }
    let mut clashing = Vec::new();
    natives.retain(|e| match index.get(e.labels.as_ref()) {
        Some(&i) => {
            clashing.push(i);
            false
        }
        None => true,
    });
    for i in clashing {
        if let Some(g) = groups.get_mut(i) {
            g.1.clear();
        }
    }
    groups.retain(|g| !g.1.is_empty());
    (groups, natives)
}

/// OpenMetrics float text: like Prometheus's, integers keep a ".0".
fn openmetrics_float(v: f64) -> String {
    let s = crate::value::format_value(v);
    if v.is_finite() && v == v.floor() && !s.contains('.') {
        format!("{s}.0")
    } else {
        s
    }
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
    let (groups, natives) = classic_buckets(&vec);
    let mut out: Vec<Elem> = natives
        .into_iter()
        .filter_map(|e| {
            let h = e.h.as_ref()?;
            Some(Elem::float(
                e.labels.clone(),
                ts,
                native::quantile(q, h),
                true,
            ))
        })
        .collect();
    out.extend(groups.into_iter().map(|(labels, mut buckets)| Elem {
        labels: Arc::new(labels),
        t: ts,
        v: bucket_quantile(q, &mut buckets),
        h: None,
        drop_name: true,
    }));
    out
}

fn histogram_fraction(lower: f64, upper: f64, vec: Vec<Elem>, ts: i64) -> Vec<Elem> {
    let (groups, natives) = classic_buckets(&vec);
    let mut out: Vec<Elem> = natives
        .into_iter()
        .filter_map(|e| {
            let h = e.h.as_ref()?;
            let v = native::fraction(lower, upper, h);
            Some(Elem::float(e.labels.clone(), ts, v, true))
        })
        .collect();
    out.extend(groups.into_iter().map(|(labels, mut buckets)| Elem {
        labels: Arc::new(labels),
        t: ts,
        v: bucket_fraction(lower, upper, &mut buckets),
        h: None,
        drop_name: true,
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
