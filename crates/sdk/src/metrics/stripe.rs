//! Per-thread stripes: how two threads adding to the same counter avoid
//! sharing a cache line.
//!
//! Every aggregator keeps one cell per stripe, allocated when a thread first
//! writes to it and summed at collection. The first threads to record claim
//! an *owned* stripe each (released when the thread exits): its only writer
//! updates it with a plain load and store, no read-modify-write instruction.
//! Threads beyond that share a few stripes, updated with `fetch_add`.
//! A claim is taken with `Acquire` and released with `Release`, so a thread
//! that inherits a stripe sees its predecessor's last value.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most owned stripes, whatever the number of CPUs.
const MAX_OWNED: usize = 64;
/// Stripes shared (with atomic read-modify-write) by the other threads.
const SHARED: usize = 4;
/// Set in a stripe word when the thread owns the stripe.
pub(crate) const OWNED: usize = 1 << 31;
const UNSET: usize = usize::MAX;

static CLAIMS: [AtomicBool; MAX_OWNED] = [const { AtomicBool::new(false) }; MAX_OWNED];
static NEXT_SHARED: AtomicUsize = AtomicUsize::new(0);
static OWNED_COUNT: OnceLock<usize> = OnceLock::new();

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(UNSET) };
    static GUARD: RefCell<Option<Claim>> = const { RefCell::new(None) };
}

/// Releases an owned stripe when its thread exits.
struct Claim(usize);

impl Drop for Claim {
    fn drop(&mut self) {
        // Measurements from later thread-local destructors go to a shared
        // stripe.
        let _ = STRIPE.try_with(|s| s.set(shared_stripe()));
        if let Some(c) = CLAIMS.get(self.0) {
            c.store(false, Ordering::Release);
        }
    }
}

fn owned_count() -> usize {
    *OWNED_COUNT.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cpus * 2).clamp(8, MAX_OWNED)
    })
}

/// Number of stripes an aggregator has.
pub(crate) fn stripes() -> usize {
    owned_count() + SHARED
}

fn shared_stripe() -> usize {
    owned_count() + NEXT_SHARED.fetch_add(1, Ordering::Relaxed) % SHARED
}

/// The calling thread's stripe word: the stripe index, with [`OWNED`] set
/// if the thread is its only writer.
#[inline(always)]
pub(crate) fn current() -> usize {
    let s = STRIPE.try_with(Cell::get).unwrap_or(UNSET);
    if s != UNSET {
        s
    } else {
        claim()
    }
}

#[cold]
#[inline(never)]
fn claim() -> usize {
    let n = owned_count();
    let mut word = None;
    for (i, c) in CLAIMS.iter().enumerate().take(n) {
        if c.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let registered = GUARD
                .try_with(|g| {
                    if let Ok(mut g) = g.try_borrow_mut() {
                        *g = Some(Claim(i));
                        true
                    } else {
                        false
                    }
                })
                .unwrap_or(false);
            if registered {
                word = Some(i | OWNED);
            } else {
                c.store(false, Ordering::Release);
            }
            break;
        }
    }
    let word = word.unwrap_or_else(shared_stripe);
    let _ = STRIPE.try_with(|s| s.set(word));
    word
}

/// A value alone on its cache lines (128 bytes: adjacent-line prefetch
/// pairs lines).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

/// One lazily allocated cell per stripe.
pub(crate) struct Striped<C> {
    cells: Box<[OnceLock<Box<Padded<C>>>]>,
}

impl<C: Default> Striped<C> {
    pub(crate) fn new() -> Self {
        Self::with_stripes()
    }

    /// The cell of the stripe in `word` (from [`current`]).
    #[inline(always)]
    pub(crate) fn cell(&self, word: usize) -> &C {
        self.cell_or(word, C::default)
    }
}

impl<C> Striped<C> {
    pub(crate) fn with_stripes() -> Self {
        Striped {
            cells: (0..stripes()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The cell of the stripe in `word`, made by `init` if it is new.
    #[inline(always)]
    pub(crate) fn cell_or(&self, word: usize, init: impl FnOnce() -> C) -> &C {
        let i = word & !OWNED;
        let slot = match self.cells.get(i) {
            Some(slot) => slot,
            // Unreachable: words index below `stripes()`.
            None => &self.cells[self.cells.len() - 1],
        };
        &slot.get_or_init(|| Box::new(Padded(init()))).0
    }

    /// The cells written so far.
    pub(crate) fn cells(&self) -> impl Iterator<Item = &C> {
        self.cells.iter().filter_map(|c| c.get().map(|p| &p.0))
    }
}

/// (`pub` only so that the sealed `Number` trait may name it.)
/// A striped sum of `u64`, `i64` (two's complement) or `f64` (bits).
pub struct Sum {
    cells: Striped<AtomicU64>,
}

impl Sum {
    pub(crate) fn new() -> Sum {
        Sum {
            cells: Striped::new(),
        }
    }

    /// Adds an integer (wrapping; an `i64` as its two's complement).
    #[inline(always)]
    pub(crate) fn add_int(&self, v: u64) {
        let w = current();
        let c = self.cells.cell(w);
        if w & OWNED != 0 {
            c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
        } else {
            c.fetch_add(v, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    pub(crate) fn add_float(&self, v: f64) {
        let w = current();
        let c = self.cells.cell(w);
        if w & OWNED != 0 {
            let sum = f64::from_bits(c.load(Ordering::Relaxed)) + v;
            c.store(sum.to_bits(), Ordering::Relaxed);
        } else {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
        }
    }

    pub(crate) fn total_int(&self) -> u64 {
        self.cells
            .cells()
            .fold(0u64, |a, c| a.wrapping_add(c.load(Ordering::Relaxed)))
    }

    pub(crate) fn total_float(&self) -> f64 {
        self.cells
            .cells()
            .map(|c| f64::from_bits(c.load(Ordering::Relaxed)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_own_distinct_stripes_and_release_them() {
        let a = std::thread::spawn(current).join().unwrap_or(0);
        assert_ne!(a & OWNED, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let b = std::thread::spawn(move || {
            let mine = current();
            let other = std::thread::spawn(current).join().unwrap_or(0);
            let _ = tx.send(());
            (mine, other)
        })
        .join()
        .unwrap_or((0, 0));
        assert!(rx.recv().is_ok());
        assert_ne!(b.0 & !OWNED, b.1 & !OWNED, "live threads share a stripe");
    }

    #[test]
    fn sums_across_threads() {
        let ints = std::sync::Arc::new(Sum::new());
        let floats = std::sync::Arc::new(Sum::new());
        let hs: Vec<_> = (0..(stripes() + 3))
            .map(|_| {
                let (i, f) = (ints.clone(), floats.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        i.add_int(1);
                        f.add_float(0.5);
                    }
                })
            })
            .collect();
        for h in hs {
            let _ = h.join();
        }
        let n = (stripes() + 3) as u64 * 1000;
        assert_eq!(ints.total_int(), n);
        assert_eq!(floats.total_float(), n as f64 / 2.0);
    }
}
