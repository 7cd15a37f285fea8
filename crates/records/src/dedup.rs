//! Re-delivered spans and log records are stored once.
//!
//! Senders retry a request whose answer they did not see, and a broker
//! re-delivers the messages after the last committed offset when a consumer
//! restarts: the same records arrive twice. Each record has a key (a span
//! its trace and span id; a log record a hash of everything the producer
//! sent: time, severity, body, event name, trace context, attributes,
//! service and host), and the store remembers the keys of the last
//! `capacity` records it stored, the records replayed from the WAL at
//! startup included.
//!
//! Within one batch, identical records are all kept (a program may log the
//! same line twice in a nanosecond); a later batch adds only the copies
//! beyond the most any earlier batch had, so a retried batch adds nothing.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use rustc_hash::FxHashMap;
use sonde_model::records::{LogRecord, SpanRecord};

/// Each key of a filtered batch with its number of copies.
pub(crate) struct Admitted(Vec<(u64, u32)>);

pub(crate) struct Recent {
    copies: FxHashMap<u64, u32>,
    order: VecDeque<u64>,
    capacity: usize,
}

/// A fixed-key SipHash: keys never leave the process, but must not depend
/// on a random seed between a record and its re-delivery.
fn hasher() -> std::hash::DefaultHasher {
    std::hash::DefaultHasher::new()
}

pub(crate) fn span_key(s: &SpanRecord) -> u64 {
    let mut h = hasher();
    s.trace_id.0.hash(&mut h);
    s.span_id.0.hash(&mut h);
    h.finish()
}

pub(crate) fn log_key(l: &LogRecord) -> u64 {
    let mut h = hasher();
    l.time_ns.hash(&mut h);
    l.severity_number.hash(&mut h);
    l.severity_text.hash(&mut h);
    l.body.hash(&mut h);
    l.event_name.hash(&mut h);
    l.trace_id.map(|t| t.0).hash(&mut h);
    l.span_id.map(|s| s.0).hash(&mut h);
    l.origin.service.hash(&mut h);
    l.origin.host.hash(&mut h);
    for (k, v) in &l.attributes {
        k.hash(&mut h);
        v.as_text().hash(&mut h);
    }
    h.finish()
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            copies: FxHashMap::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// The records of `batch` not stored before, in order, and the keys
    /// to [`commit`](Self::commit) once they are stored: a batch the WAL
    /// refuses must be taken when it is sent again.
    pub fn filter<T>(&self, batch: Vec<T>, key: impl Fn(&T) -> u64) -> (Vec<T>, Admitted) {
        if self.capacity == 0 {
            return (batch, Admitted(Vec::new()));
        }
        // Index of each key in `counts`, which keeps the batch's order so
        // the oldest keys are forgotten first.
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        let mut counts: Vec<(u64, u32)> = Vec::new();
        let mut kept = Vec::with_capacity(batch.len());
        for rec in batch {
            let k = key(&rec);
            let i = *index.entry(k).or_insert_with(|| {
                counts.push((k, 0));
                counts.len() - 1
            });
            counts[i].1 += 1;
            if counts[i].1 > self.copies.get(&k).copied().unwrap_or(0) {
                kept.push(rec);
            }
        }
        (kept, Admitted(counts))
    }

    pub fn commit(&mut self, admitted: Admitted) {
        for (k, n) in admitted.0 {
            let before = self.copies.get(&k).copied().unwrap_or(0);
            if before == 0 {
                self.order.push_back(k);
            }
            self.copies.insert(k, before.max(n));
        }
        self.shrink();
    }

    fn shrink(&mut self) {
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.copies.remove(&old);
            }
        }
    }

    /// Remembers records that are stored already (replayed from the WAL).
    pub fn remember<T>(&mut self, batch: &[T], key: impl Fn(&T) -> u64) {
        let mut in_batch: FxHashMap<u64, u32> = FxHashMap::default();
        for rec in batch {
            let k = key(rec);
            let nth = in_batch.entry(k).or_insert(0);
            *nth += 1;
            let before = self.copies.get(&k).copied().unwrap_or(0);
            if before == 0 {
                self.order.push_back(k);
            }
            self.copies.insert(k, before.max(*nth));
        }
        self.shrink();
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(r: &mut Recent, batch: Vec<u64>) -> Vec<u64> {
        let (kept, admitted) = r.filter(batch, |k| *k);
        r.commit(admitted);
        kept
    }

    #[test]
    fn a_retried_batch_adds_nothing_but_copies_within_a_batch_stay() {
        let mut r = Recent::new(100);
        assert_eq!(admit(&mut r, vec![1u64, 2, 2, 3]), vec![1, 2, 2, 3]);
        assert_eq!(admit(&mut r, vec![1u64, 2, 2, 3]), Vec::<u64>::new());
        // A third copy of 2 in one batch is more than any batch had.
        assert_eq!(admit(&mut r, vec![2u64, 2, 2, 4]), vec![2, 4]);
    }

    #[test]
    fn the_window_is_bounded_and_forgets_the_oldest() {
        let mut r = Recent::new(3);
        admit(&mut r, vec![1u64, 2, 3, 4]);
        assert_eq!(r.len(), 3);
        // 1 was forgotten, 4 was not.
        assert_eq!(admit(&mut r, vec![1u64, 4]), vec![1]);
    }

    #[test]
    fn a_batch_not_committed_is_taken_when_sent_again() {
        let mut r = Recent::new(10);
        let (kept, _refused) = r.filter(vec![5u64], |k| *k);
        assert_eq!(kept, vec![5]);
        assert_eq!(admit(&mut r, vec![5]), vec![5]);
    }

    #[test]
    fn replayed_records_count_as_stored() {
        let mut r = Recent::new(10);
        r.remember(&[7u64, 7], |k| *k);
        assert_eq!(admit(&mut r, vec![7u64, 7, 7]), vec![7]);
    }
}
