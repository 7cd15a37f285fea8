//! Histogram aggregators: base-2 exponential (the default, see
//! `exponential`) or explicit bucket bounds, one stripe per thread.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::exponential::{bump, ExpPoint, ExpStripe};
use super::stripe::{current, Striped, OWNED};

/// The explicit bounds OpenTelemetry uses by default.
pub const DEFAULT_BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

pub(crate) enum HistAgg {
    Exponential {
        cells: Striped<ExpStripe>,
        max_size: usize,
        max_scale: i32,
    },
    Explicit {
        cells: Striped<ExplicitStripe>,
        bounds: Arc<[f64]>,
    },
}

/// A histogram's cumulative state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HistPoint {
    Exponential(ExpPoint),
    Explicit(ExplicitPoint),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExplicitPoint {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// One more than the bounds: `counts[i]` is `(bounds[i-1], bounds[i]]`.
    pub counts: Vec<u64>,
}

impl HistAgg {
    pub(crate) fn exponential(max_size: usize, max_scale: i32) -> HistAgg {
        HistAgg::Exponential {
            cells: Striped::with_stripes(),
            max_size,
            max_scale,
        }
    }

    pub(crate) fn explicit(bounds: Arc<[f64]>) -> HistAgg {
        HistAgg::Explicit {
            cells: Striped::with_stripes(),
            bounds,
        }
    }

    /// Records `v`; NaN and infinities are ignored.
    #[inline]
    pub(crate) fn record(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let w = current();
        match self {
            HistAgg::Exponential {
                cells,
                max_size,
                max_scale,
            } => {
                let s = cells.cell_or(w, || ExpStripe::new(*max_scale));
                if w & OWNED != 0 {
                    s.record(v, *max_size);
                } else {
                    let _writer = s.lock.lock();
                    s.record(v, *max_size);
                }
            }
            HistAgg::Explicit { cells, bounds } => {
                let s = cells.cell_or(w, || ExplicitStripe::new(bounds.len() + 1));
                let i = bounds.partition_point(|b| *b < v);
                if w & OWNED != 0 {
                    s.record(v, i);
                } else {
                    let _writer = s.lock.lock();
                    s.record(v, i);
                }
            }
        }
    }

    pub(crate) fn collect(&self) -> HistPoint {
        match self {
            HistAgg::Exponential {
                cells, max_size, ..
            } => {
                let mut p = ExpPoint::default();
                for s in cells.cells() {
                    p.merge(&s.read(), *max_size);
                }
                HistPoint::Exponential(p)
            }
            HistAgg::Explicit { cells, bounds } => {
                let mut p = ExplicitPoint {
                    count: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    counts: vec![0; bounds.len() + 1],
                };
                for s in cells.cells() {
                    let q = s.read();
                    p.count += q.count;
                    p.sum += q.sum;
                    p.min = p.min.min(q.min);
                    p.max = p.max.max(q.max);
                    for (a, b) in p.counts.iter_mut().zip(&q.counts) {
                        *a += b;
                    }
                }
                HistPoint::Explicit(p)
            }
        }
    }
}

/// One stripe of an explicit-bucket histogram, under a sequence lock like
/// `ExpStripe`.
pub(crate) struct ExplicitStripe {
    seq: AtomicU64,
    pub(crate) lock: Mutex<()>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    counts: Box<[AtomicU64]>,
}

impl ExplicitStripe {
    fn new(buckets: usize) -> ExplicitStripe {
        ExplicitStripe {
            seq: AtomicU64::new(0),
            lock: Mutex::new(()),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            counts: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    fn record(&self, v: f64, bucket: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        bump(&self.count, 1);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + v;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
        if v < f64::from_bits(self.min.load(Ordering::Relaxed)) {
            self.min.store(v.to_bits(), Ordering::Relaxed);
        }
        if v > f64::from_bits(self.max.load(Ordering::Relaxed)) {
            self.max.store(v.to_bits(), Ordering::Relaxed);
        }
        if let Some(c) = self.counts.get(bucket) {
            bump(c, 1);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    fn read(&self) -> ExplicitPoint {
        let mut spins = 0u32;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let p = ExplicitPoint {
                    count: self.count.load(Ordering::Relaxed),
                    sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
                    min: f64::from_bits(self.min.load(Ordering::Relaxed)),
                    max: f64::from_bits(self.max.load(Ordering::Relaxed)),
                    counts: self
                        .counts
                        .iter()
                        .map(|c| c.load(Ordering::Relaxed))
                        .collect(),
                };
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return p;
                }
            }
            spins += 1;
            if spins > 64 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}
