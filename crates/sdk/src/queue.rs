//! The bounded batch queue behind every exporting sink (HTTP, Kafka, MQTT).
//!
//! `push` never blocks: a full queue drops its oldest batch and counts it.
//! One worker per sink takes batches in order, at most `max_in_flight` at
//! a time, and reports each one as sent or dropped; the counters become the
//! sink's [`SinkStats`]. A broker sink puts the batches it had out back at
//! the head when its connection breaks ([`BatchQueue::requeue`]), so while
//! the broker is down the queue fills and the oldest batches go first.

// Parts serve only the broker sinks, which are features.
#![cfg_attr(not(all(feature = "kafka", feature = "mqtt")), allow(dead_code))]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::export::{Signal, SinkStats};

/// Longest wait for queued batches when a sink is dropped.
pub(crate) const DROP_FLUSH: Duration = Duration::from_secs(5);

/// One encoded OTLP export request.
pub(crate) type Batch = (Signal, Vec<u8>);

/// Called after a push or a stop, for a worker that waits on something
/// other than the queue's condition variable (an async event loop).
pub(crate) type Wake = Box<dyn Fn() + Send + Sync>;

pub(crate) struct BatchQueue {
    max_queued: usize,
    state: Mutex<State>,
    /// Signalled when a batch is queued, the sink stops or the worker is
    /// woken for another reason.
    work: Condvar,
    /// Signalled when a batch is done with or the worker waits for work.
    done: Condvar,
    wake: Option<Wake>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Batch>,
    stop: bool,
    /// The worker has exited (or never started): a flush cannot finish.
    gone: bool,
    counts: [Counts; 3],
    /// Failures that belong to no batch (a broker connection).
    connection_failures: u64,
    last_error: Option<String>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    sent: u64,
    dropped: u64,
    failed_attempts: u64,
    in_flight: u64,
}

/// What [`BatchQueue::take`] found.
pub(crate) enum Take {
    Batch(Batch),
    /// Nothing to take before the wait ran out.
    Idle,
    Stopped,
}

impl BatchQueue {
    pub fn new(max_queued: usize, wake: Option<Wake>) -> BatchQueue {
        BatchQueue {
            max_queued: max_queued.max(1),
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            wake,
        }
    }

    /// Queues a batch, dropping the oldest if the queue is full.
    pub fn push(&self, signal: Signal, body: Vec<u8>) {
        let mut st = self.state.lock();
        if st.stop {
            st.counts[signal.index()].dropped += 1;
            return;
        }
        if st.queue.len() >= self.max_queued {
            if let Some((old, _)) = st.queue.pop_front() {
                st.counts[old.index()].dropped += 1;
            }
        }
        st.queue.push_back((signal, body));
        drop(st);
        self.work.notify_one();
        if let Some(wake) = &self.wake {
            wake();
        }
    }

    /// Takes the oldest batch once fewer than `max_in_flight` are out,
    /// waiting at most `wait` (`None`: until there is one or the sink
    /// stops).
    pub fn take(&self, max_in_flight: usize, wait: Option<Duration>) -> Take {
        let deadline = wait.map(later);
        let mut st = self.state.lock();
        loop {
            if st.stop {
                return Take::Stopped;
            }
            let out: u64 = st.counts.iter().map(|c| c.in_flight).sum();
            if out < max_in_flight as u64 {
                if let Some(batch) = st.queue.pop_front() {
                    st.counts[batch.0.index()].in_flight += 1;
                    return Take::Batch(batch);
                }
            }
            self.done.notify_all();
            match deadline {
                None => self.work.wait(&mut st),
                Some(d) => {
                    if self.work.wait_until(&mut st, d).timed_out() {
                        return Take::Idle;
                    }
                }
            }
        }
    }

    /// [`BatchQueue::take`] without waiting.
    pub fn try_take(&self, max_in_flight: usize) -> Option<Batch> {
        match self.take(max_in_flight, Some(Duration::ZERO)) {
            Take::Batch(b) => Some(b),
            Take::Idle | Take::Stopped => None,
        }
    }

    /// A batch taken is done with: sent, or given up and dropped.
    pub fn finish(&self, signal: Signal, sent: bool) {
        let mut st = self.state.lock();
        let c = &mut st.counts[signal.index()];
        c.in_flight = c.in_flight.saturating_sub(1);
        if sent {
            c.sent += 1;
        } else {
            c.dropped += 1;
        }
        drop(st);
        self.done.notify_all();
    }

    /// Puts taken batches (oldest first) back at the head of the queue;
    /// what no longer fits is dropped from the front, oldest first.
    pub fn requeue(&self, batches: Vec<Batch>) {
        let mut st = self.state.lock();
        for batch in batches.into_iter().rev() {
            let c = &mut st.counts[batch.0.index()];
            c.in_flight = c.in_flight.saturating_sub(1);
            st.queue.push_front(batch);
        }
        while st.queue.len() > self.max_queued {
            if let Some((old, _)) = st.queue.pop_front() {
                st.counts[old.index()].dropped += 1;
            }
        }
        drop(st);
        self.done.notify_all();
    }

    /// Counts a failed attempt of one signal's batch, or of the connection
    /// (`None`), and keeps its message as the last error.
    pub fn record_failure(&self, signal: Option<Signal>, error: String) {
        let mut st = self.state.lock();
        match signal {
            Some(s) => st.counts[s.index()].failed_attempts += 1,
            None => st.connection_failures += 1,
        }
        st.last_error = Some(error);
    }

    /// The worker cannot run: everything pushed is dropped, and flushes
    /// fail at once.
    pub fn fail(&self, error: String) {
        let mut st = self.state.lock();
        st.stop = true;
        st.gone = true;
        st.last_error = Some(error);
        drop(st);
        self.done.notify_all();
    }

    /// Asks the worker to stop; batches pushed from now on are dropped.
    pub fn stop(&self) {
        self.state.lock().stop = true;
        self.work.notify_all();
        self.done.notify_all();
        if let Some(wake) = &self.wake {
            wake();
        }
    }

    pub fn stopped(&self) -> bool {
        self.state.lock().stop
    }

    /// Wakes a worker waiting in [`BatchQueue::take`] or
    /// [`BatchQueue::sleep`] early, to look at its connection.
    pub fn wake_worker(&self) {
        self.work.notify_all();
    }

    /// Called by the worker as it exits: what it did not send (queued, or
    /// still out) is dropped and counted.
    pub fn drain(&self) {
        let mut st = self.state.lock();
        st.stop = true;
        st.gone = true;
        while let Some((s, _)) = st.queue.pop_front() {
            st.counts[s.index()].dropped += 1;
        }
        for c in &mut st.counts {
            c.dropped += c.in_flight;
            c.in_flight = 0;
        }
        drop(st);
        self.done.notify_all();
    }

    /// Waits `d`, or until the sink stops; false if it stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = later(d);
        let mut st = self.state.lock();
        while !st.stop {
            if self.work.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        !st.stop
    }

    /// Waits until nothing is queued or out, at most `timeout`; true if so.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = later(timeout);
        let mut st = self.state.lock();
        loop {
            let out: u64 = st.counts.iter().map(|c| c.in_flight).sum();
            if st.queue.is_empty() && out == 0 {
                return true;
            }
            if st.gone || self.done.wait_until(&mut st, deadline).timed_out() {
                let out: u64 = st.counts.iter().map(|c| c.in_flight).sum();
                return st.queue.is_empty() && out == 0;
            }
        }
    }

    /// The counters of one signal, or of all (`None`). `queued_batches`
    /// counts the batches waiting, not those out.
    pub fn stats(&self, signal: Option<Signal>) -> SinkStats {
        let st = self.state.lock();
        let mut out = SinkStats {
            last_error: st.last_error.clone(),
            ..SinkStats::default()
        };
        for s in Signal::ALL {
            if signal.is_some_and(|want| want != s) {
                continue;
            }
            let c = st.counts[s.index()];
            out.sent_batches += c.sent;
            out.dropped_batches += c.dropped;
            out.failed_attempts += c.failed_attempts;
        }
        if signal.is_none() {
            out.failed_attempts += st.connection_failures;
        }
        out.queued_batches = st
            .queue
            .iter()
            .filter(|(s, _)| signal.is_none_or(|want| want == *s))
            .count() as u64;
        out
    }

    /// The first byte of each waiting batch, in order: for tests.
    #[cfg(test)]
    pub fn first_bytes(&self) -> Vec<u8> {
        let st = self.state.lock();
        st.queue
            .iter()
            .filter_map(|(_, b)| b.first().copied())
            .collect()
    }
}

/// Now plus `d`, or far in the future if that overflows.
pub(crate) fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}

/// Full-ish jitter: a wait uniformly between half the backoff and all of it.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub fn new() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Jitter(t | 1)
    }

    pub fn jitter(&mut self, backoff: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let half = backoff / 2;
        let frac = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeued_batches_go_first_and_overflow_drops_the_oldest() {
        let q = BatchQueue::new(3, None);
        for i in 0..3u8 {
            q.push(Signal::Metrics, vec![i]);
        }
        let taken: Vec<Batch> = (0..2).filter_map(|_| q.try_take(8)).collect();
        assert_eq!(q.first_bytes(), vec![2]);
        q.push(Signal::Traces, vec![3]);
        // The connection broke: 0 and 1 come back ahead of 2 and 3, and
        // the oldest (0) no longer fits.
        q.requeue(taken);
        assert_eq!(q.first_bytes(), vec![1, 2, 3]);
        let st = q.stats(None);
        assert_eq!((st.dropped_batches, st.queued_batches), (1, 3));
        assert_eq!(q.stats(Some(Signal::Traces)).queued_batches, 1);
    }

    #[test]
    fn the_in_flight_limit_holds_batches_back() {
        let q = BatchQueue::new(8, None);
        q.push(Signal::Logs, vec![0]);
        q.push(Signal::Logs, vec![1]);
        assert!(q.try_take(1).is_some());
        assert!(q.try_take(1).is_none(), "one is out already");
        assert!(!q.flush(Duration::from_millis(10)));
        q.finish(Signal::Logs, true);
        assert!(q.try_take(1).is_some());
        q.finish(Signal::Logs, false);
        assert!(q.flush(Duration::from_millis(10)));
        let st = q.stats(Some(Signal::Logs));
        assert_eq!((st.sent_batches, st.dropped_batches), (1, 1));
    }

    #[test]
    fn draining_counts_what_was_left() {
        let q = BatchQueue::new(8, None);
        q.push(Signal::Metrics, vec![0]);
        q.push(Signal::Metrics, vec![1]);
        let _out = q.try_take(8);
        q.record_failure(None, "broker down".into());
        q.drain();
        let st = q.stats(None);
        assert_eq!((st.dropped_batches, st.failed_attempts), (2, 1));
        assert_eq!(st.last_error.as_deref(), Some("broker down"));
        assert!(q.flush(Duration::ZERO), "nothing is left to wait for");
        q.push(Signal::Metrics, vec![2]);
        assert_eq!(q.stats(None).dropped_batches, 3, "a stopped queue drops");
    }
}
