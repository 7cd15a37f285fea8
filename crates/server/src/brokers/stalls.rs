//! Partitions held back by a refusal of the store.
//!
//! When the store refuses a message for now (buffers full, a disk error it
//! may recover from), that message must be stored before any later one of
//! its partition, or an offset commit would skip it. Only its partition
//! waits: the message and whatever of that partition was already read
//! after it are held here in order, retried with backoff, while every
//! other partition goes on. Held messages are only what the consumer had
//! fetched before the partition was paused, so this is bounded by the
//! consumer's prefetch budget.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::retry_delay;

/// A topic and partition.
pub type PartitionKey = (String, i32);

struct Stall<M> {
    held: VecDeque<M>,
    attempt: u32,
    next_try: Instant,
}

pub struct Stalls<M> {
    parts: HashMap<PartitionKey, Stall<M>>,
}

impl<M> Default for Stalls<M> {
    fn default() -> Self {
        Stalls {
            parts: HashMap::new(),
        }
    }
}

impl<M> Stalls<M> {
    pub fn is_stalled(&self, key: &PartitionKey) -> bool {
        self.parts.contains_key(key)
    }

    /// Holds back a message read after its partition stalled.
    pub fn hold(&mut self, key: &PartitionKey, msg: M) {
        if let Some(s) = self.parts.get_mut(key) {
            s.held.push_back(msg);
        }
    }

    /// The store refused `msg`: its partition waits from here.
    pub fn stall(&mut self, key: PartitionKey, msg: M, now: Instant) {
        self.parts.insert(
            key,
            Stall {
                held: VecDeque::from([msg]),
                attempt: 0,
                next_try: now + retry_delay(0),
            },
        );
    }

    /// When the next held message is due for another try.
    pub fn next_due(&self) -> Option<Instant> {
        self.parts.values().map(|s| s.next_try).min()
    }

    /// The partitions due now, earliest first.
    pub fn due(&self, now: Instant) -> Vec<PartitionKey> {
        let mut due: Vec<(Instant, PartitionKey)> = self
            .parts
            .iter()
            .filter(|(_, s)| s.next_try <= now)
            .map(|(k, s)| (s.next_try, k.clone()))
            .collect();
        due.sort();
        due.into_iter().map(|(_, k)| k).collect()
    }

    /// The oldest held message of a partition.
    pub fn front(&self, key: &PartitionKey) -> Option<&M> {
        self.parts.get(key).and_then(|s| s.held.front())
    }

    /// The front message was stored (or skipped as malformed); true when
    /// the partition has nothing held any more and may be resumed.
    pub fn done_front(&mut self, key: &PartitionKey) -> bool {
        let Some(s) = self.parts.get_mut(key) else {
            return true;
        };
        s.held.pop_front();
        s.attempt = 0;
        if s.held.is_empty() {
            self.parts.remove(key);
            true
        } else {
            false
        }
    }

    /// The front message was refused again: back off.
    pub fn refused_again(&mut self, key: &PartitionKey, now: Instant) {
        if let Some(s) = self.parts.get_mut(key) {
            s.attempt += 1;
            s.next_try = now + retry_delay(s.attempt);
        }
    }

    /// Drops everything held: after a rebalance the consumer reads the
    /// partitions again from their committed offsets, which are at or
    /// before every held message.
    pub fn clear(&mut self) -> Vec<PartitionKey> {
        self.parts.drain().map(|(k, _)| k).collect()
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.parts.values().map(|s| s.held.len()).sum()
    }
}

/// How long to wait for the next due retry (a long sleep when none is).
pub fn until(next: Option<Instant>, now: Instant) -> Duration {
    next.map_or(Duration::from_secs(3600), |t| {
        t.saturating_duration_since(now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        ("t".into(), p)
    }

    /// Plays the consumer: partition 0's first message is refused twice;
    /// partition 1 flows meanwhile and partition 0 keeps its order.
    #[test]
    fn a_refused_message_holds_back_only_its_own_partition() {
        let mut stalls: Stalls<(i32, i64)> = Stalls::default();
        let mut stored: Vec<(i32, i64)> = Vec::new();
        let mut refusals = 2;
        let t0 = Instant::now();
        let arrivals = [(0, 1), (1, 1), (0, 2), (1, 2), (1, 3), (0, 3)];
        for (i, &(p, off)) in arrivals.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64);
            if stalls.is_stalled(&key(p)) {
                stalls.hold(&key(p), (p, off));
            } else if p == 0 && refusals > 0 {
                refusals -= 1;
                stalls.stall(key(p), (p, off), now);
            } else {
                stored.push((p, off));
            }
        }
        assert_eq!(
            stored,
            vec![(1, 1), (1, 2), (1, 3)],
            "partition 1 never waited"
        );
        assert_eq!(stalls.held(), 3);
        // Retries, as the loop runs them when due.
        let mut now = t0;
        while let Some(next) = stalls.next_due() {
            now = now.max(next);
            for k in stalls.due(now) {
                while let Some(&m) = stalls.front(&k) {
                    if refusals > 0 {
                        refusals -= 1;
                        stalls.refused_again(&k, now);
                        break;
                    }
                    stored.push(m);
                    if stalls.done_front(&k) {
                        break;
                    }
                }
            }
        }
        assert_eq!(
            &stored[3..],
            &[(0, 1), (0, 2), (0, 3)],
            "partition 0 in order"
        );
        assert!(!stalls.is_stalled(&key(0)));
    }

    #[test]
    fn a_rebalance_drops_what_is_held() {
        let mut stalls: Stalls<u8> = Stalls::default();
        stalls.stall(key(3), 1, Instant::now());
        stalls.hold(&key(3), 2);
        assert_eq!(stalls.clear(), vec![key(3)]);
        assert_eq!(stalls.held(), 0);
        assert_eq!(until(None, Instant::now()), Duration::from_secs(3600));
    }
}
