//! The batch processor shared by spans and log records: producers push
//! finished items into a bounded queue and return; one background thread
//! takes them out every interval, or as soon as a batch is full, and hands
//! them to an exporter in batches.
//!
//! Pushing takes one uncontended mutex and never blocks on export: when
//! the queue is full the item is dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Sizes and timing of a batch processor.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Finished items held at most; more are dropped (default 8192).
    pub queue_capacity: usize,
    /// Items per export request, and the queue length that triggers an
    /// export before the interval is up (default 512).
    pub max_batch: usize,
    /// Export at least this often (default 1 s).
    pub interval: Duration,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig {
            queue_capacity: 8192,
            max_batch: 512,
            interval: Duration::from_secs(1),
        }
    }
}

/// Counters of a batch processor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Items waiting in the queue.
    pub queued: u64,
    /// Items dropped because the queue was full.
    pub dropped: u64,
    /// Items handed to the exporter.
    pub exported: u64,
    /// Export requests handed to the exporter.
    pub batches: u64,
}

struct State<T> {
    items: Vec<T>,
    flush_requested: u64,
    flush_done: u64,
    shutdown: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    flushed: Condvar,
    capacity: usize,
    max_batch: usize,
    dropped: AtomicU64,
    exported: AtomicU64,
    batches: AtomicU64,
}

/// A handle for pushing into a batcher's queue; cheap to clone.
pub(crate) struct Queue<T>(Arc<Shared<T>>);

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Queue<T> {
        Queue(Arc::clone(&self.0))
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl<T> Queue<T> {
    /// Queues one finished item; drops it (and counts it) when the queue is
    /// full or shut down.
    #[inline]
    pub(crate) fn push(&self, item: T) {
        let s = &*self.0;
        let mut st = s.state.lock();
        if st.items.len() >= s.capacity || st.shutdown {
            drop(st);
            s.dropped.fetch_add(1, Ordering::Relaxed);
            drop(item);
            return;
        }
        st.items.push(item);
        let full = st.items.len() == s.max_batch;
        drop(st);
        if full {
            s.wake.notify_one();
        }
    }

    /// Whether both handles are on the same queue.
    #[inline]
    pub(crate) fn same(&self, other: &Queue<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A bounded queue drained by a background thread.
pub(crate) struct Batcher<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    queue: Queue<T>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the worker thread `name`, which calls `export` with batches of
    /// at most `max_batch` items; `export` takes what it needs out of the
    /// vector (what it leaves is dropped).
    pub(crate) fn new(
        config: &BatchConfig,
        name: &str,
        mut export: impl FnMut(&mut Vec<T>) + Send + 'static,
    ) -> Batcher<T> {
        let max_batch = config.max_batch.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: Vec::with_capacity(max_batch),
                flush_requested: 0,
                flush_done: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            capacity: config.queue_capacity.max(1),
            max_batch,
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let interval = config.interval.max(Duration::from_millis(1));
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || run(&shared, interval, &mut export))
                .ok()
        };
        Batcher {
            queue: Queue(Arc::clone(&shared)),
            shared,
            worker: Mutex::new(worker),
        }
    }

    /// Queues one finished item (see [`Queue::push`]).
    #[inline]
    pub(crate) fn push(&self, item: T) {
        self.queue.push(item);
    }

    /// A handle for pushing.
    pub(crate) fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    pub(crate) fn stats(&self) -> BatchStats {
        let s = &*self.shared;
        BatchStats {
            queued: s.state.lock().items.len() as u64,
            dropped: s.dropped.load(Ordering::Relaxed),
            exported: s.exported.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
        }
    }

    /// Exports everything queued now; waits at most `timeout` for the
    /// worker to have handed it to the exporter.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let s = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = s.state.lock();
        if st.shutdown {
            return st.flush_done >= st.flush_requested;
        }
        st.flush_requested += 1;
        let target = st.flush_requested;
        s.wake.notify_one();
        while st.flush_done < target {
            if s.flushed.wait_until(&mut st, deadline).timed_out() {
                return st.flush_done >= target;
            }
        }
        true
    }

    /// Exports what is queued and stops the worker. Later pushes are
    /// dropped.
    pub(crate) fn shutdown(&self) {
        self.shared.state.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self.worker.lock().take() {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl<T: Send + 'static> Drop for Batcher<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run<T>(s: &Shared<T>, interval: Duration, export: &mut impl FnMut(&mut Vec<T>)) {
    let mut spare: Vec<T> = Vec::with_capacity(s.max_batch);
    let mut chunk: Vec<T> = Vec::with_capacity(s.max_batch);
    let mut deadline = Instant::now() + interval;
    loop {
        let mut st = s.state.lock();
        while st.items.len() < s.max_batch && !st.shutdown && st.flush_done >= st.flush_requested {
            if s.wake.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let mut taken = std::mem::replace(&mut st.items, spare);
        let (flush_target, shutdown) = (st.flush_requested, st.shutdown);
        drop(st);

        if Instant::now() >= deadline {
            deadline = Instant::now() + interval;
            super::clock::resync_clock();
        }
        while !taken.is_empty() {
            let n = taken.len().min(s.max_batch);
            let batch = if n == taken.len() {
                &mut taken
            } else {
                chunk.extend(taken.drain(..n));
                &mut chunk
            };
            export(batch);
            batch.clear();
            s.exported.fetch_add(n as u64, Ordering::Relaxed);
            s.batches.fetch_add(1, Ordering::Relaxed);
        }
        if taken.capacity() > 4 * s.max_batch {
            // After a burst, give the memory back.
            taken.shrink_to(2 * s.max_batch);
        }
        spare = taken;

        let mut st = s.state.lock();
        st.flush_done = st.flush_done.max(flush_target);
        drop(st);
        s.flushed.notify_all();
        if shutdown {
            // Whatever was pushed between the swap and the shutdown flag.
            let mut st = s.state.lock();
            let rest = std::mem::take(&mut st.items);
            st.flush_done = st.flush_requested;
            drop(st);
            for mut batch in chunked(rest, s.max_batch) {
                let n = batch.len() as u64;
                export(&mut batch);
                s.exported.fetch_add(n, Ordering::Relaxed);
                s.batches.fetch_add(1, Ordering::Relaxed);
            }
            s.flushed.notify_all();
            return;
        }
    }
}

fn chunked<T>(mut items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    fn collector(config: BatchConfig) -> (Batcher<u32>, Batches) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = Arc::clone(&got);
        let b = Batcher::new(&config, "test-batch", move |batch: &mut Vec<u32>| {
            g.lock().push(std::mem::take(batch));
        });
        (b, got)
    }

    #[test]
    fn full_batch_exports_before_the_interval() {
        let (b, got) = collector(BatchConfig {
            queue_capacity: 100,
            max_batch: 4,
            interval: Duration::from_secs(3600),
        });
        for i in 0..4 {
            b.push(i);
        }
        let start = Instant::now();
        while got.lock().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.lock()[0], vec![0, 1, 2, 3]);
    }

    #[test]
    fn interval_exports_partial_batches() {
        let (b, got) = collector(BatchConfig {
            queue_capacity: 100,
            max_batch: 512,
            interval: Duration::from_millis(20),
        });
        b.push(7);
        let start = Instant::now();
        while got.lock().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.lock()[0], vec![7]);
    }

    #[test]
    fn full_queue_drops_and_counts_and_flush_splits_batches() {
        // The exporter blocks on a gate, so the queue fills behind it.
        let gate = Arc::new(Mutex::new(()));
        let entered = Arc::new(AtomicU64::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g, e, out) = (Arc::clone(&gate), Arc::clone(&entered), Arc::clone(&got));
        let b = Batcher::new(
            &BatchConfig {
                queue_capacity: 10,
                max_batch: 4,
                interval: Duration::from_secs(3600),
            },
            "test-batch",
            move |batch: &mut Vec<u32>| {
                e.fetch_add(1, Ordering::SeqCst);
                let _open = g.lock();
                out.lock().push(std::mem::take(batch));
            },
        );
        let closed = gate.lock();
        for i in 0..4 {
            b.push(i);
        }
        let start = Instant::now();
        while entered.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 4..16 {
            b.push(i);
        }
        assert_eq!(b.stats().dropped, 2);
        assert_eq!(b.stats().queued, 10);
        drop(closed);
        assert!(b.flush(Duration::from_secs(5)));
        let batches = got.lock().clone();
        assert_eq!(batches.concat(), (0..14).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.len() <= 4));
        let st = b.stats();
        assert_eq!((st.exported, st.batches, st.queued), (14, 4, 0));
    }

    #[test]
    fn shutdown_exports_the_rest_and_refuses_more() {
        let (b, got) = collector(BatchConfig {
            queue_capacity: 100,
            max_batch: 50,
            interval: Duration::from_secs(3600),
        });
        b.push(1);
        b.push(2);
        b.shutdown();
        assert_eq!(got.lock().concat(), vec![1, 2]);
        b.push(3);
        assert_eq!(b.stats().dropped, 1);
        assert!(b.flush(Duration::from_millis(10)));
    }
}
