//! Native histograms in promqltest scripts: the `{{...}}` literal syntax,
//! `load_with_nhcb` (classic `_bucket`/`_count`/`_sum` series converted to
//! native histograms with custom buckets), and Prometheus's tolerant
//! comparison of expected and actual histograms.

use std::collections::BTreeMap;

use sonde_model::{
    collapse_buckets, CounterResetHint, FloatHistogram, HistogramSample, Labels, LabelsBuilder,
    Sample, Span, CUSTOM_BUCKETS_SCHEMA,
};

/// A histogram point of a script; `hint_given` says whether the literal
/// spelled out `counter_reset_hint` (only then is it compared).
#[derive(Debug, Clone, PartialEq)]
pub struct HistPoint {
    pub h: FloatHistogram,
    pub hint_given: bool,
}

fn number(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses the inside of `{{ ... }}`.
fn parse_literal(body: &str) -> Option<HistPoint> {
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let colon = rest.find(':')?;
        let key = rest[..colon].trim().to_string();
        rest = rest[colon + 1..].trim_start();
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let items = r[..end].split_whitespace().map(str::to_string).collect();
            fields.insert(key, items);
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.insert(key, vec![rest[..end].to_string()]);
            rest = rest[end..].trim_start();
        }
    }
    let one = |k: &str| -> Option<Option<f64>> {
        match fields.get(k) {
            None => Some(None),
            Some(v) => Some(Some(number(v.first()?)?)),
        }
    };
    let list = |k: &str| -> Option<Vec<f64>> {
        fields
            .get(k)
            .map_or(Some(Vec::new()), |v| v.iter().map(|x| number(x)).collect())
    };
    let mut h = FloatHistogram {
        schema: one("schema")?.unwrap_or(0.0) as i32,
        sum: one("sum")?.unwrap_or(0.0),
        count: one("count")?.unwrap_or(0.0),
        zero_count: one("z_bucket")?.unwrap_or(0.0),
        zero_threshold: one("z_bucket_w")?.unwrap_or(0.0),
        custom_values: list("custom_values")?,
        ..FloatHistogram::default()
    };
    let spans = |offset: Option<f64>, buckets: &[f64]| -> Vec<Span> {
        if buckets.is_empty() {
            return Vec::new();
        }
        vec![Span {
            offset: offset.unwrap_or(0.0) as i32,
            length: buckets.len() as u32,
        }]
    };
    h.positive_buckets = list("buckets")?;
    h.positive_spans = spans(one("offset")?, &h.positive_buckets);
    h.negative_buckets = list("n_buckets")?;
    h.negative_spans = spans(one("n_offset")?, &h.negative_buckets);
    let hint = fields.get("counter_reset_hint").and_then(|v| v.first());
    if let Some(hint) = hint {
        h.counter_reset_hint = match hint.as_str() {
            "unknown" => CounterResetHint::Unknown,
            "reset" => CounterResetHint::Reset,
            "not_reset" => CounterResetHint::NotReset,
            "gauge" => CounterResetHint::Gauge,
            _ => return None,
        };
    }
    Some(HistPoint {
        h,
        hint_given: hint.is_some(),
    })
}

/// Parses one item of a series description that holds `{{`: a literal,
/// `{{a}}xN` (N+1 copies), or `{{a}}+{{b}}xN` / `{{a}}-{{b}}xN` (a, a±b, ...).
pub fn parse_item(item: &str) -> Option<Vec<HistPoint>> {
    let first_end = item.find("}}")?;
    let base = parse_literal(item.strip_prefix("{{")?.get(..first_end - 2)?)?;
    let rest = &item[first_end + 2..];
    if rest.is_empty() {
        return Some(vec![base]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().ok()?;
        return Some(vec![base; n + 1]);
    }
    let sign = rest.chars().next()?;
    let inc_part = rest[1..].strip_prefix("{{")?;
    let inc_end = inc_part.find("}}")?;
    let inc = parse_literal(&inc_part[..inc_end])?;
    let n: usize = inc_part[inc_end + 2..].strip_prefix('x')?.parse().ok()?;
    let mut out = Vec::with_capacity(n + 1);
    let mut cur = base;
    for i in 0..=n {
        out.push(cur.clone());
        if i < n {
            let r = match sign {
                '+' => cur.h.add(&inc.h),
                '-' => cur.h.sub(&inc.h),
                _ => return None,
            };
            r.ok()?;
        }
    }
    Some(out)
}

/// Converts classic histogram series (`_bucket` with `le`, `_count`,
/// `_sum`) of one `load_with_nhcb` into NHCB series, as Prometheus's test
/// loader does: per base series and timestamp, one histogram.
pub fn convert_nhcb(
    series: &[(Labels, Vec<(i64, f64)>)],
) -> Vec<(Labels, Vec<(i64, FloatHistogram)>)> {
    #[derive(Default)]
    struct Temp {
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
    }
    let mut by_base: BTreeMap<Labels, BTreeMap<i64, Temp>> = BTreeMap::new();
    for (labels, points) in series {
        let Some(name) = labels.metric_name() else {
            continue;
        };
        let (kind, base) = if let Some(b) = name.strip_suffix("_bucket") {
            (0, b)
        } else if let Some(b) = name.strip_suffix("_count") {
            (1, b)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (2, b)
        } else {
            continue;
        };
        let le = match labels.get("le").map(parse_le) {
            Some(Some(le)) if !le.is_nan() => Some(le),
            _ if kind == 0 => continue,
            _ => None,
        };
        let mut b = LabelsBuilder::new();
        for l in labels.iter() {
            if l.name != "le" {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        b.set("__name__", base);
        let entry = by_base.entry(b.build()).or_default();
        for &(t, v) in points {
            let temp = entry.entry(t).or_default();
            match (kind, le) {
                (0, Some(le)) => temp.buckets.push((le, v)),
                (1, _) => temp.count = Some(v),
                (2, _) => temp.sum = v,
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for (labels, temps) in by_base {
        let mut points = Vec::new();
        for (t, mut temp) in temps {
            temp.buckets
                .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            temp.buckets.dedup_by(|a, b| a.0 == b.0);
            let Some(count) = temp.count.or_else(|| temp.buckets.last().map(|b| b.1)) else {
                continue;
            };
            if temp.buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
                temp.buckets.push((f64::INFINITY, count));
            }
            let cumulative = temp.buckets.windows(2).all(|w| w[1].1 >= w[0].1);
            let last = temp.buckets.last().map_or(0.0, |b| b.1);
            if !cumulative || last != count {
                continue;
            }
            let mut prev = 0.0;
            let mut entries = Vec::new();
            for (i, (_, c)) in temp.buckets.iter().enumerate() {
                entries.push((i as i32, c - prev));
                prev = *c;
            }
            let (positive_spans, positive_buckets) = collapse_buckets(&entries);
            let mut h = FloatHistogram {
                schema: CUSTOM_BUCKETS_SCHEMA,
                count,
                sum: temp.sum,
                positive_spans,
                positive_buckets,
                custom_values: temp
                    .buckets
                    .iter()
                    .map(|b| b.0)
                    .filter(|b| b.is_finite())
                    .collect(),
                ..FloatHistogram::default()
            };
            h.compact();
            points.push((t, h));
        }
        if !points.is_empty() {
            out.push((labels, points));
        }
    }
    out
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Prometheus's comparison: both compacted, floats within `eq`, the counter
/// reset hint only when the expectation names one.
pub fn histograms_match(exp: &HistPoint, got: &FloatHistogram, eq: fn(f64, f64) -> bool) -> bool {
    let mut a = exp.h.clone();
    let mut b = got.clone();
    a.compact();
    b.compact();
    if exp.hint_given && a.counter_reset_hint != b.counter_reset_hint {
        return false;
    }
    let buckets = |x: Vec<(i32, f64)>, y: Vec<(i32, f64)>| {
        x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| p.0 == q.0 && eq(p.1, q.1))
    };
    a.schema == b.schema
        && eq(a.count, b.count)
        && eq(a.sum, b.sum)
        && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
        && a.zero_threshold == b.zero_threshold
        && eq(a.zero_count, b.zero_count)
        && buckets(a.positive(), b.positive())
        && buckets(a.negative(), b.negative())
}

/// A compact text form for failure messages.
pub fn describe(h: &FloatHistogram) -> String {
    let mut s = format!("{{{{schema:{} count:{} sum:{}", h.schema, h.count, h.sum);
    if h.zero_count != 0.0 || h.zero_threshold != 0.0 {
        s.push_str(&format!(
            " z_bucket:{} z_bucket_w:{}",
            h.zero_count, h.zero_threshold
        ));
    }
    if !h.custom_values.is_empty() {
        s.push_str(&format!(" custom_values:{:?}", h.custom_values));
    }
    s.push_str(&format!(
        " pos:{:?} neg:{:?} hint:{:?}}}}}",
        h.positive(),
        h.negative(),
        h.counter_reset_hint
    ));
    s
}

/// Sets counter reset hints the way Prometheus's TSDB reports them on
/// read: a histogram directly following another one (no float in between)
/// is `NotReset`, or `Reset` when it is one (explicitly or detected); the
/// first of a run keeps `Unknown`. Gauge histograms keep their hint.
pub fn storage_hints(floats: &[Sample], hs: &mut [HistogramSample]) {
    for i in 1..hs.len() {
        let (before, rest) = hs.split_at_mut(i);
        let (Some(prev), Some(cur)) = (before.last(), rest.first_mut()) else {
            continue;
        };
        let float_between = floats.iter().any(|f| f.t > prev.t && f.t < cur.t);
        if float_between || cur.h.counter_reset_hint == CounterResetHint::Gauge {
            continue;
        }
        cur.h.counter_reset_hint = if cur.h.detect_reset(&prev.h) {
            CounterResetHint::Reset
        } else {
            CounterResetHint::NotReset
        };
    }
}
