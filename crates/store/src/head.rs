//! The head: recent samples of every active series, in memory, as compressed
//! chunks, with an inverted index (label pair to postings) for selection.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sonde_model::{Labels, Matcher, Sample, METRIC_NAME};

use crate::chunk::{ChunkEncoder, ChunkIter};

/// Out-of-order samples are buffered raw up to this many before being sorted
/// and compressed into a chunk of their own.
const OOO_BUFFER: usize = 32;

#[derive(Debug)]
pub(crate) struct ClosedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub bytes: Box<[u8]>,
}

#[derive(Debug, Default)]
pub(crate) struct SeriesData {
    /// Set (under this lock) when the series is dropped from the index; a
    /// writer holding a stale handle sees it and re-resolves the series.
    pub removed: bool,
    closed: Vec<ClosedChunk>,
    open: ChunkEncoder,
    ooo_buf: Vec<Sample>,
    ooo_chunks: Vec<ClosedChunk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendOutcome {
    Appended,
    /// Same timestamp and value as an existing sample: idempotent.
    Duplicate,
    /// Same timestamp as the latest sample but another value: dropped.
    Conflict,
    /// Older than the out-of-order window allows.
    TooOld,
}

impl SeriesData {
    fn new() -> SeriesData {
        SeriesData {
            open: ChunkEncoder::new(),
            ..SeriesData::default()
        }
    }

    pub fn max_t(&self) -> Option<i64> {
        if self.open.count() > 0 {
            Some(self.open.max_t())
        } else {
            self.closed.last().map(|c| c.max_t)
        }
    }

    /// Appends a sample. `min_valid` is the head's lower bound (everything
    /// older is in blocks) and holds on every path; `window` is how far
    /// behind the newest sample an out-of-order one may be.
    pub fn append(&mut self, t: i64, v: f64, window: i64, min_valid: i64) -> AppendOutcome {
        if t < min_valid {
            return AppendOutcome::TooOld;
        }
        // The open chunk is only empty before the first in-order sample: a
        // full chunk is replaced by a new one holding the next sample.
        let last = (self.open.count() > 0).then(|| (self.open.max_t(), self.open.last_v()));
        let min_ooo_t = last.map_or(i64::MIN, |(max_t, _)| max_t.saturating_sub(window));
        match last {
            Some((max_t, last_v)) if t == max_t => {
                if last_v.to_bits() == v.to_bits() {
                    AppendOutcome::Duplicate
                } else {
                    AppendOutcome::Conflict
                }
            }
            Some((max_t, _)) if t < max_t => {
                if t < min_ooo_t {
                    return AppendOutcome::TooOld;
                }
                // Re-delivered batches (retries, Kafka replays) must not pile
                // up: an out-of-order sample is checked against stored ones.
                if let Some(existing) = self.find(t) {
                    return if existing.to_bits() == v.to_bits() {
                        AppendOutcome::Duplicate
                    } else {
                        AppendOutcome::Conflict
                    };
                }
                self.ooo_buf.push(Sample { t, v });
                if self.ooo_buf.len() >= OOO_BUFFER {
                    self.compress_ooo();
                }
                AppendOutcome::Appended
            }
            _ => {
                if self.open.is_full() {
                    let full = std::mem::replace(&mut self.open, ChunkEncoder::new());
                    self.closed.push(ClosedChunk {
                        min_t: full.min_t(),
                        max_t: full.max_t(),
                        bytes: full.bytes().into_boxed_slice(),
                    });
                }
                self.open.append(t, v);
                AppendOutcome::Appended
            }
        }
    }

    /// The stored value at exactly `t`, if any, wherever it is kept.
    fn find(&self, t: i64) -> Option<f64> {
        let in_chunk = |c: &ClosedChunk| {
            if c.min_t <= t && t <= c.max_t {
                ChunkIter::new(&c.bytes).find(|s| s.t == t).map(|s| s.v)
            } else {
                None
            }
        };
        let in_open = || {
            (self.open.count() > 0 && self.open.min_t() <= t)
                .then(|| self.open.iter().find(|s| s.t == t).map(|s| s.v))
                .flatten()
        };
        let i = self.closed.partition_point(|c| c.max_t < t);
        in_open()
            .or_else(|| self.closed.get(i).and_then(in_chunk))
            .or_else(|| self.ooo_buf.iter().find(|s| s.t == t).map(|s| s.v))
            .or_else(|| self.ooo_chunks.iter().find_map(in_chunk))
    }

    fn compress_ooo(&mut self) {
        self.ooo_buf.sort_by_key(|s| s.t);
        self.ooo_buf.dedup_by_key(|s| s.t);
        let mut enc = ChunkEncoder::new();
        for s in self.ooo_buf.drain(..) {
            enc.append(s.t, s.v);
        }
        self.ooo_chunks.push(ClosedChunk {
            min_t: enc.min_t(),
            max_t: enc.max_t(),
            bytes: enc.bytes().into_boxed_slice(),
        });
    }

    /// Samples in `[mint, maxt]`, sorted, one per timestamp (in-order data
    /// wins over an out-of-order duplicate).
    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let in_range = |s: &Sample| s.t >= mint && s.t <= maxt;
        let mut out: Vec<Sample> = Vec::new();
        for c in self
            .closed
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
        {
            out.extend(ChunkIter::new(&c.bytes).filter(in_range));
        }
        if self.open.count() > 0 && self.open.max_t() >= mint && self.open.min_t() <= maxt {
            out.extend(self.open.iter().filter(in_range));
        }
        let has_ooo = !self.ooo_buf.is_empty() || !self.ooo_chunks.is_empty();
        if has_ooo {
            let mut ooo: Vec<Sample> = self.ooo_buf.iter().copied().filter(in_range).collect();
            for c in self
                .ooo_chunks
                .iter()
                .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            {
                ooo.extend(ChunkIter::new(&c.bytes).filter(in_range));
            }
            if !ooo.is_empty() {
                out.extend(ooo);
                // Stable: in-order samples come first and win the dedup.
                out.sort_by_key(|s| s.t);
                out.dedup_by_key(|s| s.t);
            }
        }
        out
    }

    /// Removes and returns every sample before `t`, re-encoding the rest.
    pub fn split_off_before(&mut self, t: i64) -> Vec<Sample> {
        let all = self.samples(i64::MIN, i64::MAX);
        let idx = all.partition_point(|s| s.t < t);
        *self = SeriesData::new();
        for s in &all[idx..] {
            self.append(s.t, s.v, i64::MAX, i64::MIN);
        }
        let mut all = all;
        all.truncate(idx);
        all
    }

    pub fn is_empty(&self) -> bool {
        self.open.count() == 0
            && self.closed.is_empty()
            && self.ooo_buf.is_empty()
            && self.ooo_chunks.is_empty()
    }

    pub fn min_t(&self) -> Option<i64> {
        let in_order = self
            .closed
            .first()
            .map(|c| c.min_t)
            .or((self.open.count() > 0).then(|| self.open.min_t()));
        let ooo = self
            .ooo_chunks
            .iter()
            .map(|c| c.min_t)
            .chain(self.ooo_buf.iter().map(|s| s.t))
            .min();
        match (in_order, ooo) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn heap_size(&self) -> usize {
        self.closed
            .iter()
            .map(|c| c.bytes.len() + 24)
            .sum::<usize>()
            + self.open.heap_size()
            + self.ooo_buf.capacity() * 16
            + self
                .ooo_chunks
                .iter()
                .map(|c| c.bytes.len() + 24)
                .sum::<usize>()
    }
}

/// A label set in two allocations (all strings back to back, and where each
/// ends) instead of two per label: for a typical series with ten labels this
/// cuts the head's label memory about fourfold.
#[derive(Debug)]
pub(crate) struct CompactLabels {
    text: Box<str>,
    /// End offset in `text` of each name and value, alternating.
    ends: Box<[u32]>,
}

impl CompactLabels {
    fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> CompactLabels {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (n, v) in pairs {
            text.push_str(n);
            ends.push(text.len() as u32);
            text.push_str(v);
            ends.push(text.len() as u32);
        }
        CompactLabels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.ends.chunks_exact(2).scan(0usize, |start, pair| {
            let (n_end, v_end) = (pair[0] as usize, pair[1] as usize);
            let name = self.text.get(*start..n_end).unwrap_or("");
            let value = self.text.get(n_end..v_end).unwrap_or("");
            *start = v_end;
            Some((name, value))
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.iter())
    }

    fn eq_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        self.len() == pairs.len() && self.iter().zip(pairs).all(|(a, b)| a == *b)
    }

    fn heap_size(&self) -> usize {
        self.text.len() + self.ends.len() * 4
    }
}

impl std::fmt::Display for CompactLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_labels().fmt(f)
    }
}

pub(crate) struct MemSeries {
    pub series_ref: u64,
    pub labels: CompactLabels,
    pub data: Mutex<SeriesData>,
}

#[derive(Default)]
struct Index {
    // Fx, not SipHash: hashing label sets is on the hot path of every write,
    // and the keys are not attacker-chosen in a way that matters behind the
    // series limits.
    // A table of the series themselves, found by their labels' hash: the
    // label set is stored once, in the series, not again as a map key.
    by_labels: hashbrown::HashTable<Arc<MemSeries>>,
    by_ref: FxHashMap<u64, Arc<MemSeries>>,
    /// label name -> value -> refs, sorted ascending.
    postings: HashMap<String, BTreeMap<String, Vec<u64>>>,
    per_metric: FxHashMap<String, usize>,
}

impl Index {
    fn find_pairs(&self, hash: u64, pairs: &[(&str, &str)]) -> Option<&Arc<MemSeries>> {
        self.by_labels.find(hash, |s| s.labels.eq_pairs(pairs))
    }
}

/// One hash for owned and borrowed label sets alike.
fn pairs_hash<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for (n, v) in pairs {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

fn label_hash(labels: &CompactLabels) -> u64 {
    pairs_hash(labels.iter())
}

/// Why a new series was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesLimit {
    Total,
    PerMetric,
}

pub(crate) struct Head {
    index: RwLock<Index>,
    next_ref: AtomicU64,
    /// Smallest timestamp the head still accepts: everything older is in blocks.
    min_valid_t: AtomicI64,
}

impl Head {
    pub fn new() -> Head {
        Head {
            index: RwLock::new(Index::default()),
            next_ref: AtomicU64::new(1),
            min_valid_t: AtomicI64::new(i64::MIN),
        }
    }

    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    pub fn set_min_valid_t(&self, t: i64) {
        self.min_valid_t.fetch_max(t, Ordering::AcqRel);
    }

    pub fn get_by_ref(&self, series_ref: u64) -> Option<Arc<MemSeries>> {
        self.index.read().by_ref.get(&series_ref).cloned()
    }

    /// The series with these label pairs (sorted, unique), if it exists.
    pub fn get(&self, pairs: &[(&str, &str)]) -> Option<Arc<MemSeries>> {
        let hash = pairs_hash(pairs.iter().copied());
        self.index.read().find_pairs(hash, pairs).cloned()
    }

    /// Finds or creates the series with these label pairs (sorted, unique),
    /// enforcing the limits; an existing series costs no allocation.
    /// `on_create` runs under the index lock, so a series is logged to the
    /// WAL before any sample that refers to it can be.
    pub fn get_or_create(
        &self,
        pairs: &[(&str, &str)],
        max_series: usize,
        max_per_metric: usize,
        on_create: impl FnOnce(u64, &Labels) -> crate::Result<()>,
    ) -> crate::Result<Result<Arc<MemSeries>, SeriesLimit>> {
        let hash = pairs_hash(pairs.iter().copied());
        if let Some(s) = self.index.read().find_pairs(hash, pairs) {
            return Ok(Ok(s.clone()));
        }
        let mut index = self.index.write();
        if let Some(s) = index.find_pairs(hash, pairs) {
            return Ok(Ok(s.clone()));
        }
        if index.by_labels.len() >= max_series {
            return Ok(Err(SeriesLimit::Total));
        }
        let metric = pairs
            .iter()
            .find(|p| p.0 == METRIC_NAME)
            .map_or("", |p| p.1);
        if index.per_metric.get(metric).copied().unwrap_or(0) >= max_per_metric {
            return Ok(Err(SeriesLimit::PerMetric));
        }
        let series_ref = self.next_ref.fetch_add(1, Ordering::Relaxed);
        on_create(series_ref, &Labels::from_pairs(pairs.iter().copied()))?;
        let labels = CompactLabels::from_pairs(pairs.iter().copied());
        Ok(Ok(Self::insert(&mut index, series_ref, labels)))
    }

    /// Recreates a series with a known ref during WAL replay. Returns the
    /// ref of an existing series with the same labels, if there is one.
    pub fn restore(&self, series_ref: u64, labels: Labels) -> Option<u64> {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let mut index = self.index.write();
        if let Some(existing) = index.find_pairs(pairs_hash(pairs.iter().copied()), &pairs) {
            return (existing.series_ref != series_ref).then_some(existing.series_ref);
        }
        if index.by_ref.contains_key(&series_ref) {
            return None;
        }
        self.next_ref.fetch_max(series_ref + 1, Ordering::Relaxed);
        Self::insert(
            &mut index,
            series_ref,
            CompactLabels::from_pairs(pairs.iter().copied()),
        );
        None
    }

    fn insert(index: &mut Index, series_ref: u64, labels: CompactLabels) -> Arc<MemSeries> {
        for (name, value) in labels.iter() {
            let values = match index.postings.get_mut(name) {
                Some(v) => v,
                None => index.postings.entry(name.to_string()).or_default(),
            };
            match values.get_mut(value) {
                Some(refs) => refs.push(series_ref),
                None => {
                    values.insert(value.to_string(), vec![series_ref]);
                }
            }
        }
        *index
            .per_metric
            .entry(labels.get(METRIC_NAME).unwrap_or("").to_string())
            .or_default() += 1;
        let s = Arc::new(MemSeries {
            series_ref,
            labels,
            data: Mutex::new(SeriesData::new()),
        });
        index
            .by_labels
            .insert_unique(label_hash(&s.labels), s.clone(), |x| label_hash(&x.labels));
        index.by_ref.insert(series_ref, s.clone());
        s
    }

    /// Series matching every matcher.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let index = self.index.read();
        let refs = select_postings(&index.postings, matchers, || {
            let mut all: Vec<u64> = index.by_ref.keys().copied().collect();
            all.sort_unstable();
            all
        });
        refs.into_iter()
            .filter_map(|r| index.by_ref.get(&r))
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.matches_value(s.labels.get(&m.name).unwrap_or("")))
            })
            .cloned()
            .collect()
    }

    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        self.index.read().by_ref.values().cloned().collect()
    }

    pub fn num_series(&self) -> usize {
        self.index.read().by_ref.len()
    }

    pub fn contains_ref(&self, series_ref: u64) -> bool {
        self.index.read().by_ref.contains_key(&series_ref)
    }

    /// Drops series that hold no samples any more. Each is marked removed
    /// under its own lock, so a writer that still holds it notices.
    pub fn gc_empty(&self) -> usize {
        let mut index = self.index.write();
        let mut dead: Vec<Arc<MemSeries>> = Vec::new();
        for s in index.by_ref.values() {
            let mut d = s.data.lock();
            if d.is_empty() {
                d.removed = true;
                dead.push(s.clone());
            }
        }
        if dead.is_empty() {
            return 0;
        }
        let dead_refs: rustc_hash::FxHashSet<u64> = dead.iter().map(|s| s.series_ref).collect();
        let mut touched: rustc_hash::FxHashSet<(&str, &str)> = Default::default();
        for s in &dead {
            touched.extend(s.labels.iter());
        }
        // One pass over each affected posting list, not one per dead series.
        for (name, value) in touched {
            if let Some(values) = index.postings.get_mut(name) {
                if let Some(refs) = values.get_mut(value) {
                    refs.retain(|r| !dead_refs.contains(r));
                    if refs.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    index.postings.remove(name);
                }
            }
        }
        for s in &dead {
            index.by_ref.remove(&s.series_ref);
            if let Ok(entry) = index
                .by_labels
                .find_entry(label_hash(&s.labels), |x| x.series_ref == s.series_ref)
            {
                entry.remove();
            }
            if let Some(n) = index
                .per_metric
                .get_mut(s.labels.get(METRIC_NAME).unwrap_or(""))
            {
                *n = n.saturating_sub(1);
            }
        }
        dead.len()
    }

    /// Bytes held by series data and the index, approximately.
    pub fn heap_size(&self) -> usize {
        let index = self.index.read();
        index
            .by_ref
            .values()
            .map(|s| s.labels.heap_size() + s.labels.len() * 8 + s.data.lock().heap_size() + 160)
            .sum()
    }

    pub fn time_range(&self) -> Option<(i64, i64)> {
        let index = self.index.read();
        let mut range: Option<(i64, i64)> = None;
        for s in index.by_ref.values() {
            let d = s.data.lock();
            if let (Some(a), Some(b)) = (d.min_t(), d.max_t()) {
                range = Some(match range {
                    Some((x, y)) => (x.min(a), y.max(b)),
                    None => (a, b),
                });
            }
        }
        range
    }
}

/// Intersects the postings of every matcher that cannot match an absent
/// label; the caller still checks all matchers on the candidates.
pub(crate) fn select_postings(
    postings: &HashMap<String, BTreeMap<String, Vec<u64>>>,
    matchers: &[Matcher],
    all: impl FnOnce() -> Vec<u64>,
) -> Vec<u64> {
    let mut result: Option<Vec<u64>> = None;
    // Cheapest first: equality on the metric name usually narrows the most.
    let mut ordered: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
    ordered.sort_by_key(|m| (m.op != sonde_model::MatchOp::Equal, m.name != METRIC_NAME));
    for m in ordered {
        let Some(values) = postings.get(&m.name) else {
            return Vec::new();
        };
        let mut refs: Vec<u64> = if m.op == sonde_model::MatchOp::Equal {
            values.get(&m.value).cloned().unwrap_or_default()
        } else {
            let mut u: Vec<u64> = values
                .iter()
                .filter(|(v, _)| m.matches_value(v))
                .flat_map(|(_, r)| r.iter().copied())
                .collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        if let Some(prev) = result {
            refs = intersect(&prev, &refs);
        }
        if refs.is_empty() {
            return refs;
        }
        result = Some(refs);
    }
    result.unwrap_or_else(all)
}

fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_conflicts_and_out_of_order() {
        let mut d = SeriesData::new();
        for t in 0..300 {
            assert_eq!(
                d.append(t * 10, t as f64, i64::MAX, i64::MIN),
                AppendOutcome::Appended
            );
        }
        assert_eq!(d.append(2990, 299.0, i64::MAX, 0), AppendOutcome::Duplicate);
        assert_eq!(d.append(2990, 1.0, i64::MAX, 0), AppendOutcome::Conflict);
        assert_eq!(d.append(5, 0.5, i64::MAX, 0), AppendOutcome::Appended);
        assert_eq!(d.append(-5, 0.5, i64::MAX, 0), AppendOutcome::TooOld);
        assert_eq!(d.append(10, 99.0, i64::MAX, 0), AppendOutcome::Conflict);
        assert_eq!(d.append(10, 1.0, i64::MAX, 0), AppendOutcome::Duplicate);
        assert_eq!(d.append(5, 0.5, i64::MAX, 0), AppendOutcome::Duplicate);
        // The out-of-order buffer is searched too: retries do not pile up.
        assert_eq!(d.append(7, 0.7, i64::MAX, 0), AppendOutcome::Appended);
        assert_eq!(d.append(7, 0.7, i64::MAX, 0), AppendOutcome::Duplicate);
        assert_eq!(d.append(7, 0.8, i64::MAX, 0), AppendOutcome::Conflict);
        // The head's lower bound holds even for an empty series.
        let mut fresh = SeriesData::new();
        assert_eq!(fresh.append(5, 1.0, i64::MAX, 10), AppendOutcome::TooOld);
        // And the window bounds how far back out-of-order samples go.
        assert_eq!(d.append(2000, 1.0, 500, 0), AppendOutcome::TooOld);
        let got = d.samples(0, 20);
        assert_eq!(
            got,
            vec![
                Sample { t: 0, v: 0.0 },
                Sample { t: 5, v: 0.5 },
                Sample { t: 7, v: 0.7 },
                Sample { t: 10, v: 1.0 },
                Sample { t: 20, v: 2.0 }
            ]
        );
        assert_eq!(d.samples(i64::MIN, i64::MAX).len(), 302);
    }

    #[test]
    fn split_keeps_later_samples() {
        let mut d = SeriesData::new();
        for t in 0..500 {
            d.append(t, t as f64, i64::MAX, i64::MIN);
        }
        let before = d.split_off_before(250);
        assert_eq!(before.len(), 250);
        assert_eq!(
            d.samples(i64::MIN, i64::MAX).first().map(|s| s.t),
            Some(250)
        );
        assert_eq!(d.min_t(), Some(250));
    }

    #[test]
    fn compact_labels_roundtrip() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("x", "ü")]);
        let pairs: Vec<(&str, &str)> = l
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let c = CompactLabels::from_pairs(pairs.iter().copied());
        assert_eq!(c.to_labels(), l);
        assert_eq!(c.get("x"), Some("ü"));
        assert_eq!(c.get("nope"), None);
        assert!(c.eq_pairs(&pairs));
        assert!(!c.eq_pairs(&pairs[..2]));
        assert_eq!(label_hash(&c), pairs_hash(pairs.iter().copied()));
    }

    #[test]
    fn postings_select_by_equality_regex_and_negation() {
        let head = Head::new();
        let mk = |job: &str, inst: &str| {
            Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", inst)])
        };
        let create = |l: &Labels, max_series, max_per_metric| {
            let pairs: Vec<(&str, &str)> = l
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            head.get_or_create(&pairs, max_series, max_per_metric, |_, _| Ok(()))
                .unwrap()
        };
        for (j, i) in [("api", "a"), ("api", "b"), ("web", "a")] {
            create(&mk(j, i), 100, 100).unwrap();
        }
        let sel = |ms: Vec<Matcher>| {
            let mut v: Vec<String> = head
                .matching(&ms)
                .iter()
                .map(|s| s.labels.to_labels().to_string())
                .collect();
            v.sort();
            v
        };
        use sonde_model::MatchOp::*;
        assert_eq!(sel(vec![Matcher::equal("job", "api")]).len(), 2);
        assert_eq!(
            sel(vec![Matcher::new(RegexMatch, "job", "w.*").unwrap()]).len(),
            1
        );
        assert_eq!(
            sel(vec![
                Matcher::equal("__name__", "up"),
                Matcher::new(NotEqual, "instance", "a").unwrap()
            ])
            .len(),
            1
        );
        assert_eq!(
            sel(vec![Matcher::new(NotEqual, "job", "x").unwrap()]).len(),
            3
        );
        assert_eq!(sel(vec![Matcher::equal("job", "nope")]).len(), 0);
        assert_eq!(
            create(&mk("x", "y"), 3, 100).err(),
            Some(SeriesLimit::Total)
        );
        assert_eq!(
            create(&mk("x", "y"), 100, 3).err(),
            Some(SeriesLimit::PerMetric)
        );
        let existing = create(&mk("api", "a"), 3, 3).ok().map(|s| s.series_ref);
        assert_eq!(existing, Some(1), "existing series are found, not limited");
    }
}
