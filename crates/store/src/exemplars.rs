//! Exemplars in memory: one circular buffer of fixed capacity shared by all
//! series, as Prometheus keeps them. Each series' exemplars form a chain
//! through the buffer, oldest to newest, in time order; when the buffer is
//! full the oldest exemplar of all is overwritten.
//!
//! Exemplars are keyed by their series' labels, not by head series, so they
//! stay queryable after the series' samples move to blocks; what bounds
//! them is the capacity alone.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sonde_model::{Exemplar, Labels, Matcher, EXEMPLAR_MAX_LABEL_RUNES};

/// What happened to one exemplar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemplarOutcome {
    Added,
    /// The same as the series' newest exemplar: a retry, nothing changes.
    Duplicate,
    /// Not newer than the series' newest exemplar: dropped.
    OutOfOrder,
    /// Labels longer than OpenMetrics' 128 characters: dropped.
    LabelsTooLong,
    /// The exemplar's series does not exist (its samples were rejected).
    UnknownSeries,
    /// Exemplar storage is disabled (capacity 0).
    Disabled,
}

/// What happened to a batch of exemplars. Exemplars never fail a write, as
/// in Prometheus: the ones that cannot be stored are only counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExemplarReport {
    pub accepted: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Too long labels, unknown series, or storage disabled.
    pub rejected: u64,
}

impl ExemplarReport {
    pub(crate) fn count(&mut self, o: ExemplarOutcome) {
        match o {
            ExemplarOutcome::Added => self.accepted += 1,
            ExemplarOutcome::Duplicate => self.duplicates += 1,
            ExemplarOutcome::OutOfOrder => self.out_of_order += 1,
            _ => self.rejected += 1,
        }
    }
}

struct Slot {
    series: Arc<Labels>,
    exemplar: Exemplar,
    /// The slot of the series' next newer exemplar.
    next: Option<usize>,
}

#[derive(Clone, Copy)]
struct Chain {
    oldest: usize,
    newest: usize,
}

struct Ring {
    slots: Vec<Option<Slot>>,
    /// The slot written next (and so the oldest, once the buffer is full).
    next: usize,
    index: HashMap<Arc<Labels>, Chain>,
}

pub(crate) struct ExemplarStore {
    capacity: usize,
    ring: Mutex<Ring>,
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> ExemplarStore {
        ExemplarStore {
            capacity,
            ring: Mutex::new(Ring {
                slots: Vec::new(),
                next: 0,
                index: HashMap::new(),
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Would `add` store this exemplar? (Read-only: the write path checks
    /// first, logs what passes to the WAL, then adds.)
    pub fn check(&self, series: &Labels, e: &Exemplar) -> ExemplarOutcome {
        if self.capacity == 0 {
            return ExemplarOutcome::Disabled;
        }
        if e.label_runes() > EXEMPLAR_MAX_LABEL_RUNES {
            return ExemplarOutcome::LabelsTooLong;
        }
        let ring = self.ring.lock();
        ring.check(series, e)
    }

    pub fn add(&self, series: &Labels, e: Exemplar) -> ExemplarOutcome {
        let outcome = self.check(series, &e);
        if outcome != ExemplarOutcome::Added {
            return outcome;
        }
        let mut ring = self.ring.lock();
        // Checked again under the lock that the insert holds.
        let outcome = ring.check(series, &e);
        if outcome == ExemplarOutcome::Added {
            ring.insert(self.capacity, series, e);
        }
        outcome
    }

    /// Exemplars in `[mint, maxt]` of the series matching any matcher set,
    /// sorted by series labels, each series' exemplars in time order.
    pub fn select(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let ring = self.ring.lock();
        let mut out = Vec::new();
        for (series, chain) in &ring.index {
            if !matcher_sets
                .iter()
                .any(|ms| ms.iter().all(|m| m.matches(series)))
            {
                continue;
            }
            let (Some(oldest), Some(newest)) = (ring.slot(chain.oldest), ring.slot(chain.newest))
            else {
                continue;
            };
            if oldest.exemplar.t > maxt || newest.exemplar.t < mint {
                continue;
            }
            let mut found = Vec::new();
            let mut at = Some(chain.oldest);
            while let Some(s) = at.and_then(|i| ring.slot(i)) {
                if s.exemplar.t > maxt {
                    break;
                }
                if s.exemplar.t >= mint {
                    found.push(s.exemplar.clone());
                }
                at = s.next;
            }
            if !found.is_empty() {
                out.push((Labels::clone(series), found));
            }
        }
        drop(ring);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Exemplars held. Slots are filled in order and never emptied, only
    /// overwritten.
    pub fn len(&self) -> usize {
        self.ring.lock().slots.len()
    }
}

impl Ring {
    /// Chains only ever point at filled slots.
    fn slot(&self, i: usize) -> Option<&Slot> {
        self.slots.get(i)?.as_ref()
    }

    fn check(&self, series: &Labels, e: &Exemplar) -> ExemplarOutcome {
        let Some(newest) = self
            .index
            .get(series)
            .and_then(|c| self.slot(c.newest))
            .map(|s| &s.exemplar)
        else {
            return ExemplarOutcome::Added;
        };
        if newest.same_as(e) {
            ExemplarOutcome::Duplicate
        } else if e.t <= newest.t {
            // As Prometheus: a series' exemplars strictly increase in time.
            ExemplarOutcome::OutOfOrder
        } else {
            ExemplarOutcome::Added
        }
    }

    fn insert(&mut self, capacity: usize, series: &Labels, e: Exemplar) {
        let at = self.next;
        self.next = (at + 1) % capacity;
        if at == self.slots.len() {
            self.slots.push(None);
        }
        // Overwriting the oldest exemplar of all: it is the oldest of its
        // series too, so its chain now starts at its successor.
        if let Some(old) = self.slots[at].take() {
            match old.next {
                Some(n) => {
                    if let Some(c) = self.index.get_mut(&old.series) {
                        c.oldest = n;
                    }
                }
                None => {
                    self.index.remove(&old.series);
                }
            }
        }
        let key = match self.index.get_key_value(series) {
            Some((k, _)) => k.clone(),
            None => Arc::new(series.clone()),
        };
        match self.index.get_mut(series) {
            Some(chain) => {
                let newest = chain.newest;
                chain.newest = at;
                if let Some(s) = self.slots[newest].as_mut() {
                    s.next = Some(at);
                }
            }
            None => {
                self.index.insert(
                    key.clone(),
                    Chain {
                        oldest: at,
                        newest: at,
                    },
                );
            }
        }
        self.slots[at] = Some(Slot {
            series: key,
            exemplar: e,
            next: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: i64, v: f64, trace: &str) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: v,
            t,
        }
    }

    fn all(s: &ExemplarStore) -> Vec<(Labels, Vec<Exemplar>)> {
        s.select(&[vec![]], i64::MIN, i64::MAX)
    }

    #[test]
    fn full_buffer_evicts_the_oldest_exemplar_of_all() {
        let s = ExemplarStore::new(3);
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        assert_eq!(s.add(&a, ex(1, 1.0, "a1")), ExemplarOutcome::Added);
        assert_eq!(s.add(&b, ex(2, 2.0, "b1")), ExemplarOutcome::Added);
        assert_eq!(s.add(&a, ex(3, 3.0, "a2")), ExemplarOutcome::Added);
        assert_eq!(s.len(), 3);
        // Evicts a1, then b1 (b's only exemplar: b disappears).
        s.add(&a, ex(4, 4.0, "a3"));
        s.add(&a, ex(5, 5.0, "a4"));
        assert_eq!(s.len(), 3);
        assert_eq!(
            all(&s),
            vec![(
                a.clone(),
                vec![ex(3, 3.0, "a2"), ex(4, 4.0, "a3"), ex(5, 5.0, "a4")]
            )]
        );
        // b comes back, evicting a2.
        s.add(&b, ex(6, 6.0, "b2"));
        assert_eq!(
            all(&s),
            vec![
                (a.clone(), vec![ex(4, 4.0, "a3"), ex(5, 5.0, "a4")]),
                (b.clone(), vec![ex(6, 6.0, "b2")]),
            ]
        );
        // Time bounds and matchers.
        assert_eq!(
            s.select(&[vec![Matcher::equal("__name__", "a")]], 5, 6),
            vec![(a, vec![ex(5, 5.0, "a4")])]
        );
    }

    #[test]
    fn retries_are_no_ops_and_older_exemplars_are_dropped() {
        let s = ExemplarStore::new(10);
        let a = Labels::from_pairs([("__name__", "a")]);
        assert_eq!(s.add(&a, ex(10, 1.0, "x")), ExemplarOutcome::Added);
        assert_eq!(s.add(&a, ex(10, 1.0, "x")), ExemplarOutcome::Duplicate);
        assert_eq!(s.add(&a, ex(9, 1.0, "y")), ExemplarOutcome::OutOfOrder);
        assert_eq!(s.add(&a, ex(10, 2.0, "y")), ExemplarOutcome::OutOfOrder);
        assert_eq!(s.len(), 1);
        let long = ex(11, 1.0, &"f".repeat(121));
        assert_eq!(s.add(&a, long), ExemplarOutcome::LabelsTooLong);
        assert_eq!(
            ExemplarStore::new(0).add(&a, ex(1, 1.0, "x")),
            ExemplarOutcome::Disabled
        );
    }
}
