//! Event-time windows: counters that are stamped with the data's own time.
//!
//! A processor adds each observation at its event time (a span's end) into
//! the window of that time. A window closes once event time has passed its
//! end by the allowed lateness; its deltas are added to each key's running
//! total, and every key's total is emitted at the window's end, so a
//! counter's samples follow event time and `rate()` over any range sees the
//! data of that range, also when it arrives an hour late in a replay.
//!
//! Event time is the newest event time seen, advanced by the wall-clock
//! time since it was seen: live data closes windows as the clock moves, a
//! replay closes them as fast as its data moves, and a quiet source still
//! closes them (a service that stops sending shows a flat counter, a rate
//! of 0, not missing data). A timestamp in the future counts as now.
//! Data for a window already closed is counted in the oldest open window
//! and counted as late: a counter never goes back in time.
//!
//! State is bounded: keys are capped by the processor (it folds new keys
//! when [`Windows::len`] reaches its cap), keys idle for `idle_ms` of event
//! time are dropped with a stale marker, and open windows span at most the
//! lateness. Work is bounded too: quiet windows are emitted only while some
//! key is alive, at most `idle_ms` of them after the last data.

use std::collections::BTreeMap;
use std::hash::Hash;

use rustc_hash::FxHashMap;

/// What a window accumulates per key.
pub trait Delta: Default {
    fn merge(&mut self, other: &Self);
}

/// What a closing window emits for one key.
pub enum Emit<'a, K, D> {
    /// The key's total at time `t`.
    Total(&'a K, &'a D),
    /// The key went idle and is dropped: its series ends at `t`.
    Stale(&'a K),
}

/// Event time: the newest event time seen plus the wall-clock time since
/// it was seen. Timestamps in the future count as now.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventClock {
    newest: Option<(i64, i64)>,
}

impl EventClock {
    /// Notes an event at `t_ms`; returns it, clamped to now.
    pub fn observe(&mut self, t_ms: i64, now_ms: i64) -> i64 {
        let t = t_ms.min(now_ms);
        if self.now(now_ms).is_none_or(|c| t > c) {
            self.newest = Some((t, now_ms));
        }
        t
    }

    pub fn now(&self, now_ms: i64) -> Option<i64> {
        self.newest
            .map(|(event, wall)| event.saturating_add(now_ms.saturating_sub(wall).max(0)))
    }
}

struct Total<D> {
    value: D,
    /// The end of the last window that changed it.
    updated_ms: i64,
}

pub struct Windows<K, D> {
    width_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
    open: BTreeMap<i64, FxHashMap<K, D>>,
    totals: FxHashMap<K, Total<D>>,
    clock: EventClock,
    /// Windows starting before this are closed.
    closed_until: i64,
    late: u64,
}

impl<K: Eq + Hash + Clone, D: Delta> Windows<K, D> {
    pub fn new(width_ms: i64, lateness_ms: i64, idle_ms: i64) -> Windows<K, D> {
        Windows {
            width_ms: width_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            idle_ms: idle_ms.max(width_ms),
            open: BTreeMap::new(),
            totals: FxHashMap::default(),
            clock: EventClock::default(),
            closed_until: i64::MIN,
            late: 0,
        }
    }

    /// Keys held (each has a total, maybe zero so far).
    pub fn len(&self) -> usize {
        self.totals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    pub fn knows(&self, key: &K) -> bool {
        self.totals.contains_key(key)
    }

    /// Observations that came after their window had closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn event_now(&self, now_ms: i64) -> Option<i64> {
        self.clock.now(now_ms)
    }

    /// Moves event time on for an event that adds nothing yet (one half of
    /// a call); returns its time, clamped to now.
    pub fn observe(&mut self, t_ms: i64, now_ms: i64) -> i64 {
        self.clock.observe(t_ms, now_ms)
    }

    /// Adds to `key`'s delta in the window of event time `t_ms`.
    pub fn add(&mut self, key: K, t_ms: i64, now_ms: i64, update: impl FnOnce(&mut D)) {
        let t = self.clock.observe(t_ms, now_ms);
        let mut start = t.div_euclid(self.width_ms) * self.width_ms;
        if self.closed_until == i64::MIN {
            self.closed_until = start;
        }
        if start < self.closed_until {
            start = self.closed_until;
            self.late += 1;
        }
        if !self.totals.contains_key(&key) {
            self.totals.insert(
                key.clone(),
                Total {
                    value: D::default(),
                    updated_ms: start + self.width_ms,
                },
            );
        }
        update(self.open.entry(start).or_default().entry(key).or_default());
    }

    /// Closes every window that event time has passed by the lateness, in
    /// time order, calling `emit(t, ..)` for every key at each closed
    /// window's end `t`.
    pub fn close(&mut self, now_ms: i64, mut emit: impl FnMut(i64, Emit<'_, K, D>)) {
        let Some(event_now) = self.event_now(now_ms) else {
            return;
        };
        let horizon = event_now.saturating_sub(self.lateness_ms);
        while self.closed_until.saturating_add(self.width_ms) <= horizon {
            let mut start = self.closed_until;
            if self.totals.is_empty() {
                // Nothing to emit until the next window with data: skip
                // the quiet ones (a jump in event time costs nothing).
                let next = self.open.first_key_value().map_or(i64::MAX, |(s, _)| *s);
                let last = horizon.div_euclid(self.width_ms) * self.width_ms;
                start = start.max(next.min(last));
            }
            let end = start + self.width_ms;
            if end > horizon {
                self.closed_until = start;
                break;
            }
            if let Some(deltas) = self.open.remove(&start) {
                for (k, d) in deltas {
                    if let Some(total) = self.totals.get_mut(&k) {
                        total.value.merge(&d);
                        total.updated_ms = end;
                    }
                }
            }
            let idle_before = end - self.idle_ms;
            self.totals.retain(|k, total| {
                if total.updated_ms <= idle_before {
                    emit(end, Emit::Stale(k));
                    false
                } else {
                    emit(end, Emit::Total(k, &total.value));
                    true
                }
            });
            self.closed_until = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Count(f64);

    impl Delta for Count {
        fn merge(&mut self, other: &Self) {
            self.0 += other.0;
        }
    }

    fn closed(
        w: &mut Windows<&'static str, Count>,
        now: i64,
    ) -> Vec<(i64, &'static str, Option<f64>)> {
        let mut out = Vec::new();
        w.close(now, |t, e| match e {
            Emit::Total(k, d) => out.push((t, *k, Some(d.0))),
            Emit::Stale(k) => out.push((t, *k, None)),
        });
        out
    }

    #[test]
    fn totals_are_stamped_with_event_time_also_in_a_replay() {
        let mut w = Windows::new(1_000, 2_000, 60_000);
        // An hour-old burst arrives at wall time 10_000_000.
        let now = 10_000_000;
        let old = now - 3_600_000;
        for i in 0..10 {
            w.add("a", old + i * 1_000 + 500, now, |c: &mut Count| c.0 += 1.0);
        }
        let out = closed(&mut w, now);
        // Windows up to event time - lateness are closed, each at its own end.
        assert_eq!(out.first(), Some(&(old + 1_000, "a", Some(1.0))));
        assert_eq!(out.last(), Some(&(old + 7_000, "a", Some(7.0))));
        // The rest closes as the wall clock moves on with nothing new.
        let out = closed(&mut w, now + 5_000);
        assert_eq!(out.last().map(|x| x.2), Some(Some(10.0)));
        assert_eq!(w.late(), 0);
    }

    #[test]
    fn late_data_goes_to_the_oldest_open_window_and_never_back_in_time() {
        let mut w = Windows::new(1_000, 0, 60_000);
        w.add("a", 5_500, 5_500, |c: &mut Count| c.0 += 1.0);
        let out = closed(&mut w, 7_000);
        assert_eq!(out, vec![(6_000, "a", Some(1.0)), (7_000, "a", Some(1.0))]);
        w.add("a", 3_000, 7_000, |c: &mut Count| c.0 += 1.0);
        assert_eq!(w.late(), 1);
        let out = closed(&mut w, 8_000);
        assert_eq!(out, vec![(8_000, "a", Some(2.0))]);
    }

    #[test]
    fn a_quiet_key_emits_a_flat_total_then_a_stale_marker() {
        let mut w = Windows::new(1_000, 0, 3_000);
        w.add("a", 500, 500, |c: &mut Count| c.0 += 2.0);
        let out = closed(&mut w, 10_000);
        assert_eq!(
            out,
            vec![
                (1_000, "a", Some(2.0)),
                (2_000, "a", Some(2.0)),
                (3_000, "a", Some(2.0)),
                (4_000, "a", None)
            ]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn future_timestamps_count_as_now() {
        let mut w = Windows::new(1_000, 0, 60_000);
        w.add("a", 1_000_000_000, 5_000, |c: &mut Count| c.0 += 1.0);
        let out = closed(&mut w, 6_000);
        assert_eq!(out, vec![(6_000, "a", Some(1.0))]);
    }
}
