//! Native histograms with float counts, the form PromQL computes with.
//!
//! Layout follows Prometheus's `FloatHistogram`: buckets are addressed by an
//! integer index and stored as spans (runs of consecutive indexes) plus one
//! count per bucket. With an exponential schema `s`, bucket `i` covers
//! `(2^((i-1)/2^s), 2^(i/2^s)]` on each side of the zero bucket. Schema -53
//! (NHCB) instead uses explicit `custom_values` as upper bounds, with a last
//! bucket up to +Inf.
//!
//! Arithmetic works on an expanded `(index, count)` list rather than merging
//! span lists in place: simpler to get right, and histograms in queries are
//! small.

use crate::TimestampMs;

/// The schema of native histograms with custom buckets (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// A run of `length` consecutive buckets; `offset` is the gap to the end of
/// the previous span (for the first span: the index of its first bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// What the producer says about counter resets, as in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

/// One histogram sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub t: TimestampMs,
    pub h: FloatHistogram,
}

/// Operations on histograms that cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    #[error("cannot combine histograms with exponential and custom bucket schemas")]
    MixedSchemas,
}

/// One bucket with its boundaries, as the bucket iterators yield it.
/// Negative buckets include their lower bound, positive (and custom) ones
/// their upper bound, the zero bucket both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_spans: Vec<Span>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the buckets when `schema` is -53; empty otherwise.
    pub custom_values: Vec<f64>,
}

/// Spans and counts expanded into `(absolute index, count)` pairs, sorted.
pub fn expand_buckets(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx: i32 = 0;
    let mut counts = buckets.iter();
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            match counts.next() {
                Some(c) => out.push((idx, *c)),
                None => return out,
            }
            idx = idx.saturating_add(1);
        }
    }
    out
}

/// The inverse of [`expand_buckets`]; `entries` must be sorted by index.
pub fn collapse_buckets(entries: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::with_capacity(entries.len());
    let mut next: Option<i32> = None;
    for &(i, c) in entries {
        match (next, spans.last_mut()) {
            (Some(n), Some(last)) if n == i => last.length += 1,
            (Some(n), _) => spans.push(Span {
                offset: i.saturating_sub(n),
                length: 1,
            }),
            (None, _) => spans.push(Span {
                offset: i,
                length: 1,
            }),
        }
        buckets.push(c);
        next = Some(i.saturating_add(1));
    }
    (spans, buckets)
}

/// Upper bound of bucket `idx` under exponential `schema`: 2^(idx / 2^schema).
pub fn exponential_bound(idx: i32, schema: i32) -> f64 {
    if schema <= 0 {
        let exp = i64::from(idx) << (-schema).clamp(0, 62);
        if exp >= 1024 {
            // The last bucket before the one for +Inf observations.
            return f64::MAX;
        }
        return 2f64.powi(exp.max(-1100) as i32);
    }
    let schema = schema.min(8);
    let per_power = 1i32 << schema;
    let whole = idx.div_euclid(per_power);
    let frac = idx.rem_euclid(per_power);
    let v = (f64::from(frac) / f64::from(per_power)).exp2() * 2f64.powi(whole);
    if v.is_infinite() {
        f64::MAX
    } else {
        v
    }
}

/// Maps a bucket index from one exponential schema to a lower one.
fn reduce_index(idx: i32, from: i32, to: i32) -> i32 {
    let shift = from.saturating_sub(to).clamp(0, 31);
    (idx.saturating_sub(1) >> shift).saturating_add(1)
}

/// Widens the smaller zero bucket of `a` and `b` until both agree. Each
/// widening can only grow a threshold to a bucket boundary, so this ends;
/// the bound on rounds guards against NaN thresholds in bad input.
fn reconcile_zero_buckets(a: &mut FloatHistogram, b: &mut FloatHistogram) {
    for _ in 0..64 {
        if a.zero_threshold > b.zero_threshold {
            b.widen_zero_bucket(a.zero_threshold);
        } else if b.zero_threshold > a.zero_threshold {
            a.widen_zero_bucket(b.zero_threshold);
        } else {
            return;
        }
    }
}

/// Merges sorted entries of equal index after a mapping.
fn merge_mapped(entries: Vec<(i32, f64)>, map: impl Fn(i32) -> i32) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(entries.len());
    for (i, c) in entries {
        let j = map(i);
        match out.last_mut() {
            Some(last) if last.0 == j => last.1 += c,
            _ => out.push((j, c)),
        }
    }
    out
}

/// Adds `b` (scaled by `sign`) into `a`; both sorted.
fn merge_add(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + sign * y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                out.push((y.0, sign * y.1));
                j += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    pub fn positive(&self) -> Vec<(i32, f64)> {
        expand_buckets(&self.positive_spans, &self.positive_buckets)
    }

    pub fn negative(&self) -> Vec<(i32, f64)> {
        expand_buckets(&self.negative_spans, &self.negative_buckets)
    }

    fn set_positive(&mut self, e: &[(i32, f64)]) {
        (self.positive_spans, self.positive_buckets) = collapse_buckets(e);
    }

    fn set_negative(&mut self, e: &[(i32, f64)]) {
        (self.negative_spans, self.negative_buckets) = collapse_buckets(e);
    }

    /// Bounds `(lower, upper]` of positive bucket `idx`.
    fn positive_bounds(&self, idx: i32) -> (f64, f64) {
        if self.uses_custom_buckets() {
            let n = self.custom_values.len();
            let i = usize::try_from(idx).unwrap_or(0);
            let upper = if i < n {
                self.custom_values[i]
            } else {
                f64::INFINITY
            };
            let lower = match i.checked_sub(1) {
                Some(j) => self.custom_values.get(j).copied().unwrap_or(f64::INFINITY),
                None => f64::NEG_INFINITY,
            };
            return (lower, upper);
        }
        (
            exponential_bound(idx.saturating_sub(1), self.schema),
            exponential_bound(idx, self.schema),
        )
    }

    /// All buckets, lowest first: negative buckets, the zero bucket (when
    /// populated), positive buckets. Buckets overlapping the zero bucket are
    /// cut at the zero threshold.
    pub fn all_buckets(&self) -> Vec<Bucket> {
        let zt = self.zero_threshold;
        let mut out = Vec::new();
        for (i, c) in self.negative().into_iter().rev() {
            let (l, u) = self.positive_bounds(i);
            let mut upper = -l;
            if upper > -zt && -u < -zt {
                upper = -zt;
            }
            out.push(Bucket {
                lower: -u,
                upper,
                count: c,
                lower_inclusive: true,
                upper_inclusive: false,
            });
        }
        if self.zero_count != 0.0 {
            out.push(Bucket {
                lower: -zt,
                upper: zt,
                count: self.zero_count,
                lower_inclusive: true,
                upper_inclusive: true,
            });
        }
        for (i, c) in self.positive() {
            let (mut l, u) = self.positive_bounds(i);
            if !self.uses_custom_buckets() && l < zt && u > zt {
                l = zt;
            }
            out.push(Bucket {
                lower: l,
                upper: u,
                count: c,
                lower_inclusive: false,
                upper_inclusive: true,
            });
        }
        out
    }

    /// Multiplies every count and the sum by `f`.
    pub fn mul(&mut self, f: f64) {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        self.positive_buckets.iter_mut().for_each(|b| *b *= f);
        self.negative_buckets.iter_mut().for_each(|b| *b *= f);
    }

    /// Divides every count and the sum by `f`. Division by zero leaves no
    /// buckets (their bounds mean nothing any more), as in Prometheus.
    pub fn div(&mut self, f: f64) {
        self.count /= f;
        self.sum /= f;
        self.zero_count /= f;
        if f == 0.0 {
            self.positive_spans.clear();
            self.positive_buckets.clear();
            self.negative_spans.clear();
            self.negative_buckets.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|b| *b /= f);
        self.negative_buckets.iter_mut().for_each(|b| *b /= f);
    }

    /// Whether any count or the sum is infinite.
    pub fn has_overflow(&self) -> bool {
        self.count.is_infinite()
            || self.sum.is_infinite()
            || self.zero_count.is_infinite()
            || self.positive_buckets.iter().any(|b| b.is_infinite())
            || self.negative_buckets.iter().any(|b| b.is_infinite())
    }

    /// Removes buckets with a count of zero.
    pub fn compact(&mut self) {
        let p: Vec<(i32, f64)> = self.positive().into_iter().filter(|b| b.1 != 0.0).collect();
        let n: Vec<(i32, f64)> = self.negative().into_iter().filter(|b| b.1 != 0.0).collect();
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// A copy reduced to a lower (or equal) exponential schema.
    pub fn to_schema(&self, schema: i32) -> FloatHistogram {
        let mut h = self.clone();
        if self.uses_custom_buckets() || schema >= self.schema {
            return h;
        }
        let from = self.schema;
        h.set_positive(&merge_mapped(self.positive(), |i| {
            reduce_index(i, from, schema)
        }));
        h.set_negative(&merge_mapped(self.negative(), |i| {
            reduce_index(i, from, schema)
        }));
        h.schema = schema;
        h
    }

    /// The zero count with a zero threshold of at least `larger`, and that
    /// threshold, widened to the upper end of a populated bucket it cuts.
    fn zero_count_for_threshold(&self, larger: f64) -> (f64, f64) {
        let mut threshold = larger;
        if threshold <= self.zero_threshold {
            return (self.zero_count, self.zero_threshold);
        }
        'outer: loop {
            let mut count = self.zero_count;
            for (i, c) in self.positive() {
                let (l, u) = self.positive_bounds(i);
                if l >= threshold {
                    break;
                }
                count += c;
                if u > threshold {
                    if c != 0.0 {
                        threshold = u;
                    }
                    break;
                }
            }
            for (i, c) in self.negative() {
                let (l, u) = self.positive_bounds(i);
                if l >= threshold {
                    break;
                }
                count += c;
                if u > threshold {
                    if c != 0.0 {
                        threshold = u;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (count, threshold);
        }
    }

    /// Widens the zero bucket to `threshold` (see `zero_count_for_threshold`),
    /// dropping the buckets it now covers.
    fn widen_zero_bucket(&mut self, threshold: f64) {
        let (count, t) = self.zero_count_for_threshold(threshold);
        let keep = |h: &FloatHistogram, e: Vec<(i32, f64)>| -> Vec<(i32, f64)> {
            e.into_iter()
                .filter(|(i, _)| h.positive_bounds(*i).0 >= t)
                .collect()
        };
        let p = keep(self, self.positive());
        let n = keep(self, self.negative());
        self.set_positive(&p);
        self.set_negative(&n);
        self.zero_count = count;
        self.zero_threshold = t;
    }

    /// Adds `other` into `self`. Returns whether mismatched custom bucket
    /// bounds had to be reconciled (to their common bounds).
    pub fn add(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        self.combine(other, 1.0)
    }

    /// Subtracts `other` from `self`; see [`FloatHistogram::add`]. A
    /// difference is a gauge, whatever its inputs were.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        let r = self.combine(other, -1.0);
        self.counter_reset_hint = CounterResetHint::Gauge;
        r
    }

    /// Adds `other` with Kahan-Neumaier compensation: `comp` carries the
    /// lost low-order parts (in `self`'s layout) and is returned updated.
    /// The accurate total is `self + comp` at the end.
    pub fn kahan_add(
        &mut self,
        other: &FloatHistogram,
        comp: Option<FloatHistogram>,
    ) -> Result<(FloatHistogram, bool), HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::MixedSchemas);
        }
        let mut comp = comp.unwrap_or_else(|| FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            custom_values: self.custom_values.clone(),
            ..FloatHistogram::default()
        });
        self.counter_reset_hint = combine_hints(self.counter_reset_hint, other.counter_reset_hint);
        let mut o = other.clone();
        let mut reconciled = false;
        if self.uses_custom_buckets() {
            if self.custom_values != other.custom_values {
                reconciled = true;
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|b| other.custom_values.contains(b))
                    .collect();
                for h in [&mut *self, &mut comp, &mut o] {
                    let e = remap_custom(h.positive(), &h.custom_values, &common);
                    h.set_positive(&e);
                    h.custom_values = common.clone();
                }
            }
        } else {
            let target = self.schema.min(other.schema);
            for h in [&mut *self, &mut comp, &mut o] {
                if h.schema != target {
                    *h = h.to_schema(target);
                }
            }
            reconcile_zero_buckets(self, &mut o);
            if comp.zero_threshold != self.zero_threshold {
                comp.widen_zero_bucket(self.zero_threshold);
            }
        }
        let k = |s: &mut f64, c: &mut f64, v: f64| {
            (*s, *c) = kahan_inc(v, *s, *c);
        };
        k(&mut self.count, &mut comp.count, o.count);
        k(&mut self.sum, &mut comp.sum, o.sum);
        k(&mut self.zero_count, &mut comp.zero_count, o.zero_count);
        let (p, pc) = kahan_merge(&self.positive(), &comp.positive(), &o.positive());
        let (n, nc) = kahan_merge(&self.negative(), &comp.negative(), &o.negative());
        self.set_positive(&p);
        self.set_negative(&n);
        comp.set_positive(&pc);
        comp.set_negative(&nc);
        Ok((comp, reconciled))
    }

    fn combine(&mut self, other: &FloatHistogram, sign: f64) -> Result<bool, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::MixedSchemas);
        }
        self.counter_reset_hint = combine_hints(self.counter_reset_hint, other.counter_reset_hint);
        let mut reconciled = false;
        if self.uses_custom_buckets() {
            let mut theirs = other.positive();
            if self.custom_values != other.custom_values {
                reconciled = true;
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|b| other.custom_values.contains(b))
                    .collect();
                let mine = remap_custom(self.positive(), &self.custom_values, &common);
                theirs = remap_custom(theirs, &other.custom_values, &common);
                self.set_positive(&mine);
                self.custom_values = common;
            }
            let merged = merge_add(&self.positive(), &theirs, sign);
            self.set_positive(&merged);
        } else {
            let target = self.schema.min(other.schema);
            let mut o = other.to_schema(target);
            if self.schema != target {
                *self = self.to_schema(target);
            }
            reconcile_zero_buckets(self, &mut o);
            self.zero_count += sign * o.zero_count;
            let p = merge_add(&self.positive(), &o.positive(), sign);
            let n = merge_add(&self.negative(), &o.negative(), sign);
            self.set_positive(&p);
            self.set_negative(&n);
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        Ok(reconciled)
    }

    /// Whether going from `previous` to `self` involved a counter reset:
    /// any count went down, a populated bucket vanished, or the bucket
    /// layout changed in a way only a reset allows.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() != previous.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() {
            let common: Vec<f64> = self
                .custom_values
                .iter()
                .copied()
                .filter(|b| previous.custom_values.contains(b))
                .collect();
            let cur = remap_custom(self.positive(), &self.custom_values, &common);
            let prev = remap_custom(previous.positive(), &previous.custom_values, &common);
            return buckets_decreased(&cur, &prev);
        }
        if self.schema > previous.schema || self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zero, t) = previous.zero_count_for_threshold(self.zero_threshold);
        if t != self.zero_threshold.max(previous.zero_threshold) || self.zero_count < prev_zero {
            return true;
        }
        let mut prev = previous.to_schema(self.schema);
        if prev.zero_threshold < self.zero_threshold {
            prev.widen_zero_bucket(self.zero_threshold);
        }
        buckets_decreased(&self.positive(), &prev.positive())
            || buckets_decreased(&self.negative(), &prev.negative())
    }

    /// Exact equality as PromQL's `==` sees it: same layout and values,
    /// ignoring empty buckets and the counter reset hint.
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        let nz = |e: Vec<(i32, f64)>| -> Vec<(i32, f64)> {
            e.into_iter().filter(|b| b.1 != 0.0).collect()
        };
        self.schema == other.schema
            && self.zero_threshold == other.zero_threshold
            && same(self.zero_count, other.zero_count)
            && same(self.count, other.count)
            && same(self.sum, other.sum)
            && self.custom_values == other.custom_values
            && nz(self.positive()) == nz(other.positive())
            && nz(self.negative()) == nz(other.negative())
    }
}

/// Buckets as sorted `(index, count)` pairs.
type Entries = Vec<(i32, f64)>;

/// Kahan-Neumaier step: the new sum and compensation after adding `inc`.
/// Shared with the query engine, whose float sums compensate the same way.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
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

/// Adds `add` into the sums `sum` with compensations `comp`, bucket by
/// bucket; all three sorted by index. Returns the new sums and compensations
/// in one layout.
fn kahan_merge(sum: &[(i32, f64)], comp: &[(i32, f64)], add: &[(i32, f64)]) -> (Entries, Entries) {
    let mut idx: Vec<i32> = sum.iter().chain(comp).chain(add).map(|b| b.0).collect();
    idx.sort_unstable();
    idx.dedup();
    let get = |v: &[(i32, f64)], i: i32| {
        v.binary_search_by_key(&i, |b| b.0)
            .ok()
            .and_then(|k| v.get(k))
            .map_or(0.0, |b| b.1)
    };
    let mut s_out = Vec::with_capacity(idx.len());
    let mut c_out = Vec::with_capacity(idx.len());
    for i in idx {
        let (s, c) = kahan_inc(get(add, i), get(sum, i), get(comp, i));
        s_out.push((i, s));
        c_out.push((i, c));
    }
    (s_out, c_out)
}

/// The counter reset hint of a sum or difference, as Prometheus decides it.
fn combine_hints(a: CounterResetHint, b: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::*;
    match (a, b) {
        _ if a == b => a,
        (Gauge, _) | (_, Gauge) => Gauge,
        _ => Unknown,
    }
}

/// Maps custom-bucket entries onto a subset of their bounds: each bucket
/// goes to the first remaining bucket whose upper bound is at least its own.
fn remap_custom(entries: Vec<(i32, f64)>, from: &[f64], to: &[f64]) -> Vec<(i32, f64)> {
    merge_mapped(entries, |i| {
        let upper = usize::try_from(i)
            .ok()
            .and_then(|i| from.get(i))
            .copied()
            .unwrap_or(f64::INFINITY);
        to.partition_point(|b| *b < upper) as i32
    })
}

/// Whether any bucket of `prev` has a larger count than the same bucket in
/// `cur` (a missing bucket counts as zero).
fn buckets_decreased(cur: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    prev.iter().any(|(i, c)| {
        let now = cur
            .binary_search_by_key(i, |b| b.0)
            .ok()
            .and_then(|k| cur.get(k))
            .map_or(0.0, |b| b.1);
        now < *c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, buckets: &[(i32, f64)]) -> FloatHistogram {
        let (positive_spans, positive_buckets) = collapse_buckets(buckets);
        FloatHistogram {
            schema,
            count: buckets.iter().map(|b| b.1).sum(),
            positive_spans,
            positive_buckets,
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn spans_round_trip() {
        let e = vec![(-2, 1.0), (-1, 2.0), (3, 4.0)];
        let (s, b) = collapse_buckets(&e);
        assert_eq!(
            s,
            vec![
                Span {
                    offset: -2,
                    length: 2
                },
                Span {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(expand_buckets(&s, &b), e);
    }

    #[test]
    fn bounds_follow_schema() {
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert!((exponential_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(exponential_bound(1, -1), 4.0);
    }

    #[test]
    fn add_reduces_to_the_lower_schema() {
        let mut a = h(1, &[(1, 1.0), (2, 1.0)]);
        let b = h(0, &[(1, 3.0)]);
        assert_eq!(a.add(&b), Ok(false));
        assert_eq!(a.schema, 0);
        assert_eq!(a.positive(), vec![(1, 5.0)]);
        assert_eq!(a.count, 5.0);
    }

    #[test]
    fn custom_bounds_are_reconciled() {
        let mut a = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            custom_values: vec![1.0],
            ..h(CUSTOM_BUCKETS_SCHEMA, &[(0, 2.0)])
        };
        let b = FloatHistogram {
            custom_values: vec![1.0, 10.0],
            ..h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0), (1, 1.0)])
        };
        assert_eq!(a.sub(&b), Ok(true));
        assert_eq!(a.custom_values, vec![1.0]);
        assert_eq!(a.positive(), vec![(0, 1.0), (1, -1.0)]);
    }

    #[test]
    fn kahan_add_keeps_small_parts() {
        let mut sum = FloatHistogram {
            sum: 1.0,
            ..h(0, &[])
        };
        let mut comp = None;
        for v in [1e100, 1.0, -1e100] {
            let x = FloatHistogram {
                sum: v,
                ..h(0, &[])
            };
            comp = sum.kahan_add(&x, comp).ok().map(|(c, _)| c);
        }
        let comp = comp.unwrap_or_default();
        assert_eq!(sum.sum + comp.sum, 2.0);
    }

    #[test]
    fn division_by_zero_drops_buckets() {
        let mut a = h(0, &[(1, 2.0)]);
        a.div(0.0);
        assert!(a.positive_buckets.is_empty());
        assert_eq!(a.count, f64::INFINITY);
    }

    #[test]
    fn resets_are_detected() {
        let a = h(0, &[(1, 3.0)]);
        let b = h(0, &[(1, 2.0), (2, 1.0)]);
        assert!(b.detect_reset(&a));
        assert!(!a.detect_reset(&h(0, &[(1, 1.0)])));
    }
}
