//! Aggregation operators (`sum`, `topk`, `count_values`, ...) at one step.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use sonde_model::{Labels, METRIC_NAME};

use crate::engine::Evaluator;
use crate::native::{histogram_string as native_string, HistAcc};
use crate::over_time::{kahan_inc, quantile};
use crate::value::{exec_err, format_value, Elem, Fnv, Hist, Result, StepValue};

/// `by`/`without` grouping of an aggregation.
struct Grouping<'g> {
    without: bool,
    names: Vec<&'g str>,
}

impl Grouping<'_> {
    fn key(&self, labels: &Labels) -> u64 {
        let mut key = Fnv::new();
        for l in labels.iter() {
            let included = if self.without {
                l.name != METRIC_NAME && !self.names.contains(&l.name.as_str())
            } else {
                self.names.contains(&l.name.as_str())
            };
            if included {
                key.label(&l.name, &l.value);
            }
        }
        key.finish()
    }

    fn labels(&self, labels: &Labels) -> Labels {
        if self.without {
            let mut drop = self.names.clone();
            drop.push(METRIC_NAME);
            labels.without(&drop)
        } else {
            labels.with_only(&self.names)
        }
    }
}

pub(crate) fn eval_aggregate(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<StepValue> {
    let op = a.op.id();
    let grouping = match &a.modifier {
        Some(LabelModifier::Include(l)) => Grouping {
            without: false,
            names: l.labels.iter().map(String::as_str).collect(),
        },
        Some(LabelModifier::Exclude(l)) => Grouping {
            without: true,
            names: l.labels.iter().map(String::as_str).collect(),
        },
        None => Grouping {
            without: false,
            names: Vec::new(),
        },
    };
    let param = a.param.as_deref();
    let input = ev.eval_vector(&a.expr, ts)?;
    let out = match op {
        T_COUNT_VALUES => {
            let Some(p) = param else {
                return exec_err("count_values needs a label name parameter");
            };
            let label = ev.eval_string(p, ts)?;
            if let Some(quoted) = ev.invalid_strings.get(&label) {
                return exec_err(format!("invalid label name {quoted}"));
            }
            count_values(input, &grouping, &label, ts)?
        }
        T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO => {
            let Some(p) = param else {
                return exec_err("aggregation needs a parameter");
            };
            let k = ev.eval_scalar(p, ts)?;
            aggregate_k(op, input, &grouping, k, ts)?
        }
        _ => {
            let q = match (op, param) {
                (T_QUANTILE, Some(p)) => ev.eval_scalar(p, ts)?,
                (T_QUANTILE, None) => return exec_err("quantile needs a parameter"),
                _ => 0.0,
            };
            let keys = group_keys(ev, a, &grouping, &input);
            aggregate(op, input, keys, &grouping, q, ts)?
        }
    };
    Ok(StepValue::Vector(out))
}

#[derive(Default)]
struct Group {
    labels: Option<Labels>,
    value: f64,
    kahan_c: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
    values: Vec<f64>,
    drop_name: bool,
    has_float: bool,
    /// Sum or mean of the group's native histograms (sum and avg only).
    hist: Option<HistAcc>,
}

impl Group {
    /// Takes one sample into the histogram sum, or notes a float one.
    fn note(&mut self, h: Option<&Hist>, mean: bool) {
        let Some(h) = h else {
            self.has_float = true;
            return;
        };
        match &mut self.hist {
            None => self.hist = Some(HistAcc::new(h)),
            Some(acc) => acc.add(h, mean),
        }
    }
}

/// The grouping key of each element, from the evaluator's cache when the
/// element's labels are shared across steps.
fn group_keys(ev: &Evaluator<'_>, a: &AggregateExpr, g: &Grouping<'_>, input: &[Elem]) -> Vec<u64> {
    let node = crate::engine::key(a);
    let mut cache = ev.group_key_cache.borrow_mut();
    input
        .iter()
        .map(|el| {
            // Labels built fresh at this step are not worth remembering.
            if Arc::strong_count(&el.labels) < 2 {
                return g.key(&el.labels);
            }
            let k = (node, Arc::as_ptr(&el.labels) as usize);
            match cache.get(&k) {
                Some((_, key)) => *key,
                None => {
                    let key = g.key(&el.labels);
                    cache.insert(k, (el.labels.clone(), key));
                    key
                }
            }
        })
        .collect()
}

fn aggregate(
    op: u16,
    mut input: Vec<Elem>,
    keys: Vec<u64>,
    g: &Grouping<'_>,
    q: f64,
    ts: i64,
) -> Result<Vec<Elem>> {
    let mut keys = keys;
    // These read floats only; histogram samples are ignored, and groups
    // without floats produce nothing.
    if matches!(op, T_MIN | T_MAX | T_STDDEV | T_STDVAR | T_QUANTILE) {
        (input, keys) = input
            .into_iter()
            .zip(keys)
            .filter(|(e, _)| e.h.is_none())
            .unzip();
    }
    let sums_histograms = matches!(op, T_SUM | T_AVG);
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (el, &key) in input.iter().zip(&keys) {
        let f = el.v;
        let gi = match index.get(&key) {
            Some(&i) => i,
            None => {
                index.insert(key, groups.len());
                let mut group = Group {
                    labels: Some(g.labels(&el.labels)),
                    value: f,
                    mean: f,
                    count: 1.0,
                    drop_name: el.drop_name,
                    ..Group::default()
                };
                if sums_histograms {
                    group.note(el.h.as_ref(), op == T_AVG);
                }
                match op {
                    T_STDDEV | T_STDVAR => {
                        group.value = if f.is_finite() { 0.0 } else { f64::NAN };
                    }
                    T_QUANTILE => group.values.push(f),
                    T_GROUP => group.value = 1.0,
                    _ => {}
                }
                groups.push(group);
                continue;
            }
        };
        let Some(group) = groups.get_mut(gi) else {
            continue;
        };
        group.drop_name |= el.drop_name;
        if sums_histograms {
            group.note(el.h.as_ref(), op == T_AVG);
        }
        match op {
            T_SUM => {
                (group.value, group.kahan_c) = kahan_inc(f, group.value, group.kahan_c);
            }
            T_AVG => {
                // Direct mean (sum / count) is the most accurate, but the sum
                // can overflow where the mean would not; switch to an
                // incremental mean only then, as Prometheus does.
                group.count += 1.0;
                if !group.incremental_mean {
                    let (s, c) = kahan_inc(f, group.value, group.kahan_c);
                    if !s.is_infinite() {
                        (group.value, group.kahan_c) = (s, c);
                        continue;
                    }
                    group.incremental_mean = true;
                    group.mean = group.value / (group.count - 1.0);
                    group.kahan_c /= group.count - 1.0;
                }
                let qf = (group.count - 1.0) / group.count;
                (group.mean, group.kahan_c) =
                    kahan_inc(f / group.count, qf * group.mean, qf * group.kahan_c);
            }
            T_GROUP => {}
            T_MAX => {
                if group.value < f || group.value.is_nan() {
                    group.value = f;
                }
            }
            T_MIN => {
                if group.value > f || group.value.is_nan() {
                    group.value = f;
                }
            }
            T_COUNT => group.count += 1.0,
            T_STDVAR | T_STDDEV => {
                group.count += 1.0;
                let delta = f - group.mean;
                group.mean += delta / group.count;
                group.value += delta * (f - group.mean);
            }
            T_QUANTILE => group.values.push(f),
            _ => return exec_err("unsupported aggregation operator"),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut group in groups {
        if let Some(acc) = group.hist.take() {
            // A mix of floats and histograms has no sum, nor have
            // exponential and custom buckets together.
            let result = if op == T_AVG { acc.mean() } else { acc.sum() };
            let (false, Some(h)) = (group.has_float, result) else {
                continue;
            };
            out.push(Elem {
                labels: Arc::new(group.labels.take().unwrap_or_default()),
                t: ts,
                v: 0.0,
                h: Some(Arc::new(h)),
                drop_name: group.drop_name,
            });
            continue;
        }
        let v = match op {
            T_AVG => {
                if group.incremental_mean {
                    group.mean + group.kahan_c
                } else {
                    group.value / group.count + group.kahan_c / group.count
                }
            }
            T_COUNT => group.count,
            T_STDVAR => group.value / group.count,
            T_STDDEV => (group.value / group.count).sqrt(),
            T_QUANTILE => quantile(q, &mut group.values),
            T_SUM => {
                if group.value.is_infinite() {
                    group.value
                } else {
                    group.value + group.kahan_c
                }
            }
            _ => group.value,
        };
        out.push(Elem {
            labels: Arc::new(group.labels.take().unwrap_or_default()),
            t: ts,
            v,
            h: None,
            drop_name: group.drop_name,
        });
    }
    Ok(out)
}

fn count_values(input: Vec<Elem>, g: &Grouping<'_>, label: &str, ts: i64) -> Result<Vec<Elem>> {
    if label.is_empty() {
        return exec_err("invalid label name \"\"");
    }
    let mut names = g.names.clone();
    if !g.without {
        names.push(label);
    }
    let g = Grouping {
        without: g.without,
        names,
    };
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<(Labels, f64)> = Vec::new();
    for el in input {
        let mut b = Labels::clone(&el.labels).into_builder();
        let value = match &el.h {
            Some(h) => native_string(h),
            None => format_value(el.v),
        };
        b.set(label, value);
        let labels = b.build();
        let key = g.key(&labels);
        match index.get(&key) {
            Some(&i) => {
                if let Some(e) = groups.get_mut(i) {
                    e.1 += 1.0;
                }
            }
            None => {
                index.insert(key, groups.len());
                groups.push((g.labels(&labels), 1.0));
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|(labels, v)| Elem {
            labels: Arc::new(labels),
            t: ts,
            v,
            h: None,
            drop_name: false,
        })
        .collect())
}

/// Go's `container/heap` over elements with a caller-given order, so that
/// topk/bottomk keep and order ties exactly as Prometheus does.
struct Heap {
    items: Vec<Elem>,
    less: fn(f64, f64) -> bool,
}

impl Heap {
    fn less(&self, i: usize, j: usize) -> bool {
        match (self.items.get(i), self.items.get(j)) {
            (Some(a), Some(b)) => (self.less)(a.v, b.v),
            _ => false,
        }
    }

    fn push(&mut self, e: Elem) {
        self.items.push(e);
        let mut j = self.items.len() - 1;
        while j > 0 {
            let i = (j - 1) / 2;
            if i == j || !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    /// Restores the heap after the root was replaced.
    fn fix_root(&mut self) {
        let n = self.items.len();
        let mut i = 0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && self.less(j2, j1) {
                j = j2;
            }
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }
}

/// Prometheus's heap order for topk: NaN sorts below everything.
fn nan_first_less(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

/// The reverse order, for bottomk.
fn nan_first_greater(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

fn aggregate_k(
    op: u16,
    mut input: Vec<Elem>,
    g: &Grouping<'_>,
    param: f64,
    ts: i64,
) -> Result<Vec<Elem>> {
    // topk/bottomk rank floats; histogram samples are ignored. limitk and
    // limit_ratio pass any sample through.
    if matches!(op, T_TOPK | T_BOTTOMK) {
        input.retain(|e| e.h.is_none());
    }
    let mut ratio = 0.0;
    let mut k: usize = 0;
    if op == T_LIMIT_RATIO {
        if param.is_nan() {
            return exec_err("Ratio value is NaN");
        }
        if param == 0.0 {
            return Ok(Vec::new());
        }
        ratio = param.clamp(-1.0, 1.0);
    } else {
        if param.is_nan() {
            return exec_err("Parameter value is NaN");
        }
        if param < 1.0 {
            return Ok(Vec::new());
        }
        if param >= i64::MAX as f64 {
            return exec_err(format!("Scalar value {param:e} overflows int64"));
        }
        // Truncation toward zero, as Go's int64 conversion does.
        k = (param as i64).max(0) as usize;
        k = k.min(input.len());
        if k == 0 {
            return Ok(Vec::new());
        }
    }

    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Vec<Elem>> = Vec::new();
    let mut top: Vec<Heap> = Vec::new();
    for mut el in input {
        el.t = ts;
        let key = g.key(&el.labels);
        let gi = *index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            let less: fn(f64, f64) -> bool = if op == T_BOTTOMK {
                nan_first_greater
            } else {
                nan_first_less
            };
            top.push(Heap {
                items: Vec::new(),
                less,
            });
            groups.len() - 1
        });
        match op {
            T_TOPK | T_BOTTOMK => {
                let Some(h) = top.get_mut(gi) else { continue };
                if h.items.len() < k {
                    h.push(el);
                } else if let Some(root) = h.items.first() {
                    let replace = if op == T_TOPK {
                        root.v < el.v || (root.v.is_nan() && !el.v.is_nan())
                    } else {
                        root.v > el.v || (root.v.is_nan() && !el.v.is_nan())
                    };
                    if replace {
                        h.items[0] = el;
                        if k > 1 {
                            h.fix_root();
                        }
                    }
                }
            }
            T_LIMITK => {
                if let Some(grp) = groups.get_mut(gi) {
                    if grp.len() < k {
                        grp.push(el);
                    }
                }
            }
            _ => {
                if ratio_keeps(ratio, &el.labels) {
                    if let Some(grp) = groups.get_mut(gi) {
                        grp.push(el);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    match op {
        T_TOPK | T_BOTTOMK => {
            for h in top {
                let mut items = h.items;
                // Go sorts small slices with a stable insertion sort; a
                // stable sort keeps ties in the same order.
                if op == T_TOPK {
                    items.sort_by(|a, b| order(nan_first_less(b.v, a.v), nan_first_less(a.v, b.v)));
                } else {
                    items.sort_by(|a, b| {
                        order(nan_first_greater(b.v, a.v), nan_first_greater(a.v, b.v))
                    });
                }
                out.extend(items);
            }
        }
        _ => {
            for grp in groups {
                out.extend(grp);
            }
        }
    }
    Ok(out)
}

fn order(less: bool, greater: bool) -> std::cmp::Ordering {
    if less {
        std::cmp::Ordering::Less
    } else if greater {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Equal
    }
}

/// limit_ratio's deterministic sampling: a series is kept when its label
/// hash, scaled to [0, 1), falls inside the ratio (from the top for a
/// negative ratio), so `limit_ratio(r, x)` and `limit_ratio(-(1-r), x)`
/// partition `x`.
fn ratio_keeps(ratio: f64, labels: &Labels) -> bool {
    let offset = labels_hash(labels) as f64 / u64::MAX as f64;
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

/// Prometheus's `labels.Hash()`: xxHash64 over `name\xffvalue\xff...`.
pub(crate) fn labels_hash(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(256);
    for l in labels.iter() {
        buf.extend_from_slice(l.name.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(l.value.as_bytes());
        buf.push(0xff);
    }
    xxhash64(&buf)
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn xx_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn xx_merge(acc: u64, val: u64) -> u64 {
    (acc ^ xx_round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u64::from_le_bytes(a)
}

fn read_u32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u64::from(u32::from_le_bytes(a))
}

/// xxHash64 with seed 0 (the variant Go's cespare/xxhash implements).
fn xxhash64(data: &[u8]) -> u64 {
    let len = data.len() as u64;
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v1 = P1.wrapping_add(P2);
        let mut v2 = P2;
        let mut v3 = 0u64;
        let mut v4 = 0u64.wrapping_sub(P1);
        while rest.len() >= 32 {
            v1 = xx_round(v1, read_u64(&rest[0..8]));
            v2 = xx_round(v2, read_u64(&rest[8..16]));
            v3 = xx_round(v3, read_u64(&rest[16..24]));
            v4 = xx_round(v4, read_u64(&rest[24..32]));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = xx_merge(h, v1);
        h = xx_merge(h, v2);
        h = xx_merge(h, v3);
        xx_merge(h, v4)
    } else {
        P5
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h ^= xx_round(0, read_u64(&rest[0..8]));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read_u32(&rest[0..4]).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_vectors() {
        assert_eq!(xxhash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxhash64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }
}
