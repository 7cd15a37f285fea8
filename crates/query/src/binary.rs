//! Binary operators: arithmetic, comparison, and set operators, with
//! Prometheus's vector matching rules (`on`/`ignoring`, `group_left`/
//! `group_right`) and its metric-name dropping rules.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::token::{
    TokenId, T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_MOD, T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};
use sonde_model::{FloatHistogram, Labels, LabelsBuilder, METRIC_NAME};

use crate::engine::{key, Evaluator};
use crate::value::{exec_err, labels_fnv, Elem, Fnv, Hist, Result, StepValue};

pub(crate) fn eval_binary(ev: &Evaluator<'_>, b: &BinaryExpr, ts: i64) -> Result<StepValue> {
    let op = b.op.id();
    let default_modifier = BinModifier::default();
    let modifier = b.modifier.as_ref().unwrap_or(&default_modifier);
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    match (lhs, rhs) {
        (StepValue::Scalar(l), StepValue::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            if is_comparison(op) {
                // Scalar comparisons always need `bool`; the parser enforces it.
                Ok(StepValue::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(StepValue::Scalar(v))
            }
        }
        (StepValue::Vector(l), StepValue::Scalar(r)) => {
            vector_scalar(op, l, r, false, modifier.return_bool, ts).map(StepValue::Vector)
        }
        (StepValue::Scalar(l), StepValue::Vector(r)) => {
            vector_scalar(op, r, l, true, modifier.return_bool, ts).map(StepValue::Vector)
        }
        (StepValue::Vector(l), StepValue::Vector(r)) => match op {
            T_LAND | T_LOR | T_LUNLESS => Ok(StepValue::Vector(set_op(op, l, r, modifier, ts))),
            _ => vector_vector(ev, b, op, l, r, modifier, ts).map(StepValue::Vector),
        },
        (l, r) => exec_err(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        )),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic operators change what a value means, so they drop `__name__`.
fn changes_metric_schema(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// Applies `op`; for comparisons returns the left value and whether it passes.
fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        // Rust's `%` on floats is C's fmod, the same as Go's math.Mod.
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return exec_err("operator not allowed between these operands"),
    })
}

/// A binary operation where at least one side is a native histogram.
/// `None` when Prometheus has no meaning for it (the element is dropped);
/// otherwise the result (a float or a histogram) and, for comparisons,
/// whether it passes.
fn apply_hist(
    op: TokenId,
    l: (f64, Option<&Hist>),
    r: (f64, Option<&Hist>),
) -> Option<(f64, Option<Hist>, bool)> {
    let done = |mut h: FloatHistogram| {
        h.compact();
        Some((0.0, Some(Arc::new(h)), true))
    };
    match (l, r) {
        ((f, None), (_, Some(h))) | ((_, Some(h)), (f, None)) if op == T_MUL => {
            let mut h = FloatHistogram::clone(h);
            h.mul(f);
            done(h)
        }
        ((_, Some(h)), (f, None)) if op == T_DIV => {
            let mut h = FloatHistogram::clone(h);
            h.div(f);
            done(h)
        }
        ((_, Some(a)), (_, Some(b))) => match op {
            T_ADD | T_SUB => {
                let mut h = FloatHistogram::clone(a);
                let r = if op == T_ADD { h.add(b) } else { h.sub(b) };
                r.ok()?;
                done(h)
            }
            T_EQLC => Some((0.0, Some(a.clone()), a.equals(b))),
            T_NEQ => Some((0.0, Some(a.clone()), !a.equals(b))),
            _ => None,
        },
        _ => None,
    }
}

fn vector_scalar(
    op: TokenId,
    vec: Vec<Elem>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Elem>> {
    let mut out = Vec::with_capacity(vec.len());
    for mut el in vec {
        if let Some(h) = el.h.take() {
            let (l, r) = if scalar_on_left {
                ((scalar, None), (0.0, Some(&h)))
            } else {
                ((0.0, Some(&h)), (scalar, None))
            };
            // Comparisons between a histogram and a scalar are undefined.
            let Some((_, Some(res), _)) = apply_hist(op, l, r) else {
                continue;
            };
            el.h = Some(res);
            el.t = ts;
            el.drop_name = true;
            out.push(el);
            continue;
        }
        let (l, r) = if scalar_on_left {
            (scalar, el.v)
        } else {
            (el.v, scalar)
        };
        let (mut v, mut keep) = apply(op, l, r)?;
        // A comparison filters the vector; the vector's value is kept even
        // when the scalar is on the left.
        if is_comparison(op) && scalar_on_left {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            el.v = v;
            el.t = ts;
            if changes_metric_schema(op) || return_bool {
                el.drop_name = true;
            }
            out.push(el);
        }
    }
    Ok(out)
}

/// How series are matched across the two sides.
struct Matching<'m> {
    on: bool,
    names: Vec<&'m str>,
}

impl<'m> Matching<'m> {
    fn new(modifier: &'m BinModifier) -> Matching<'m> {
        match &modifier.matching {
            Some(LabelModifier::Include(l)) => {
                let mut names: Vec<&str> = l.labels.iter().map(String::as_str).collect();
                names.sort_unstable();
                Matching { on: true, names }
            }
            Some(LabelModifier::Exclude(l)) => Matching {
                on: false,
                names: l.labels.iter().map(String::as_str).collect(),
            },
            None => Matching {
                on: false,
                names: Vec::new(),
            },
        }
    }

    /// The join key: the `on` labels, or every label except the ignored
    /// ones and the metric name.
    fn signature(&self, labels: &Labels) -> u64 {
        let mut sig = Fnv::new();
        if self.on {
            for n in &self.names {
                sig.label(n, labels.get(n).unwrap_or(""));
            }
        } else {
            for l in labels.iter() {
                if l.name == METRIC_NAME || self.names.contains(&l.name.as_str()) {
                    continue;
                }
                sig.label(&l.name, &l.value);
            }
        }
        sig.finish()
    }

    /// The labels that took part in matching, for error messages.
    fn matched_labels(&self, labels: &Labels) -> Labels {
        if self.on {
            labels.with_only(&self.names)
        } else {
            let mut drop = self.names.clone();
            drop.push(METRIC_NAME);
            labels.without(&drop)
        }
    }
}

fn set_op(
    op: TokenId,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    modifier: &BinModifier,
    ts: i64,
) -> Vec<Elem> {
    let m = Matching::new(modifier);
    let mut out = match op {
        T_LAND => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: HashSet<u64> = rhs.iter().map(|e| m.signature(&e.labels)).collect();
            lhs.into_iter()
                .filter(|e| right.contains(&m.signature(&e.labels)))
                .collect::<Vec<_>>()
        }
        T_LOR => {
            if lhs.is_empty() {
                rhs
            } else if rhs.is_empty() {
                lhs
            } else {
                let left: HashSet<u64> = lhs.iter().map(|e| m.signature(&e.labels)).collect();
                let mut out = lhs;
                out.extend(
                    rhs.into_iter()
                        .filter(|e| !left.contains(&m.signature(&e.labels))),
                );
                out
            }
        }
        _ => {
            if lhs.is_empty() || rhs.is_empty() {
                lhs
            } else {
                let right: HashSet<u64> = rhs.iter().map(|e| m.signature(&e.labels)).collect();
                lhs.into_iter()
                    .filter(|e| !right.contains(&m.signature(&e.labels)))
                    .collect()
            }
        }
    };
    for e in &mut out {
        e.t = ts;
    }
    out
}

/// Formats labels as Prometheus's `labels.String()` does in error messages.
pub(crate) fn prom_labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn vector_vector(
    ev: &Evaluator<'_>,
    node: &BinaryExpr,
    op: TokenId,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    modifier: &BinModifier,
    ts: i64,
) -> Result<Vec<Elem>> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let m = Matching::new(modifier);
    let (card_one_to_one, include, swapped) = match &modifier.card {
        VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {
            (true, Vec::new(), false)
        }
        VectorMatchCardinality::ManyToOne(l) => (false, l.labels.clone(), false),
        VectorMatchCardinality::OneToMany(l) => (false, l.labels.clone(), true),
    };
    // Match from the "many" side; group_right swaps the operands and swaps
    // them back when computing values.
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };

    let mut one_by_sig: HashMap<u64, &Elem> = HashMap::with_capacity(one.len());
    for r in &one {
        let sig = m.signature(&r.labels);
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            // Report the pair in a stable, sorted order.
            let (a, b) = if r.labels <= dup.labels {
                (&r.labels, &dup.labels)
            } else {
                (&dup.labels, &r.labels)
            };
            return exec_err(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                prom_labels_string(&m.matched_labels(&r.labels)),
                side,
                prom_labels_string(a),
                prom_labels_string(b),
            ));
        }
        one_by_sig.insert(sig, r);
    }

    let return_bool = modifier.return_bool;
    let mut matched: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut out = Vec::new();
    for l in &many {
        let sig = m.signature(&l.labels);
        let Some(r) = one_by_sig.get(&sig) else {
            continue;
        };
        let (lv, rv) = if swapped { (r.v, l.v) } else { (l.v, r.v) };
        let mut h = None;
        let (mut v, keep) = if l.h.is_some() || r.h.is_some() {
            let (lh, rh) = if swapped {
                (r.h.as_ref(), l.h.as_ref())
            } else {
                (l.h.as_ref(), r.h.as_ref())
            };
            match apply_hist(op, (lv, lh), (rv, rh)) {
                Some((v, res, keep)) => {
                    h = res;
                    (v, keep)
                }
                None => continue,
            }
        } else {
            apply(op, lv, rv)?
        };
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            h = None;
        }
        let cache_key = (
            key(node),
            Arc::as_ptr(&l.labels) as usize,
            Arc::as_ptr(&r.labels) as usize,
        );
        let cached = ev.match_cache.borrow().get(&cache_key).map(|e| e.2.clone());
        let metric = match cached {
            Some(m) => m,
            None => {
                let metric = Arc::new(result_metric(
                    &l.labels,
                    &r.labels,
                    op,
                    &m,
                    card_one_to_one,
                    &include,
                ));
                // Only label sets that outlive this step (loaded series) can
                // recur at the next one.
                if Arc::strong_count(&l.labels) > 1 && Arc::strong_count(&r.labels) > 1 {
                    ev.match_cache.borrow_mut().insert(
                        cache_key,
                        (l.labels.clone(), r.labels.clone(), metric.clone()),
                    );
                }
                metric
            }
        };
        match matched.get_mut(&sig) {
            Some(_) if card_one_to_one => {
                return exec_err(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                );
            }
            Some(set) => {
                if !set.insert(labels_fnv(&metric)) {
                    return exec_err(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    );
                }
            }
            None => {
                let mut set = HashSet::new();
                if !card_one_to_one {
                    set.insert(labels_fnv(&metric));
                }
                matched.insert(sig, set);
            }
        }
        if !keep && !return_bool {
            continue;
        }
        // A comparison result keeps the left side's pending name removal,
        // so `rate(x[5m]) > 0` loses the name just like `rate(x[5m])`.
        let drop_name = return_bool || (!changes_metric_schema(op) && l.drop_name);
        out.push(Elem {
            labels: metric,
            t: ts,
            v,
            h,
            drop_name,
        });
    }
    Ok(out)
}

fn result_metric(
    many: &Labels,
    one: &Labels,
    op: TokenId,
    m: &Matching<'_>,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut b: LabelsBuilder = many.clone().into_builder();
    if changes_metric_schema(op) {
        b.remove(METRIC_NAME);
    }
    if one_to_one {
        if m.on {
            let keep: Vec<String> = many
                .iter()
                .filter(|l| !m.names.contains(&l.name.as_str()))
                .map(|l| l.name.clone())
                .collect();
            for n in keep {
                b.remove(&n);
            }
        } else {
            for n in &m.names {
                b.remove(n);
            }
        }
    }
    for n in include {
        match one.get(n) {
            Some(v) => {
                b.set(n.clone(), v);
            }
            None => {
                b.remove(n);
            }
        }
    }
    b.build()
}
