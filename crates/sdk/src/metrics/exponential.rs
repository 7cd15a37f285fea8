//! Base-2 exponential bucket histograms, as in the OpenTelemetry spec's
//! `base2_exponential_bucket_histogram`: at scale `s` bucket `i` holds the
//! values in `(2^(i/2^s), 2^((i+1)/2^s)]`. A histogram starts at the finest
//! scale (20) and halves its resolution whenever the values it holds would
//! need more than `max_size` buckets.
//!
//! Each stripe is written by one thread at a time under a sequence lock
//! (writers bump an odd sequence number around their update; the collector
//! retries a read that saw one), so the hot path has no atomic
//! read-modify-write and the collector never sees half an update.

use std::sync::atomic::{fence, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Default most buckets per sign.
pub const DEFAULT_MAX_SIZE: usize = 160;
/// Finest (and starting) scale.
pub const MAX_SCALE: i32 = 20;
/// Coarsest scale: bucket `i` is `(2^(1024 i), 2^(1024 (i+1))]`.
pub const MIN_SCALE: i32 = -10;
/// Most buckets a histogram may be configured with (storage is a ring of
/// this many slots, indexed by the low bits of the bucket index).
pub(crate) const SLOTS: usize = 256;

const MANTISSA_BITS: u32 = 52;
const MANTISSA_MASK: u64 = (1 << MANTISSA_BITS) - 1;
/// Up to this scale a bucket is found with a lookup table, beyond it with
/// a logarithm.
const TABLE_MAX_SCALE: i32 = 10;

/// The bucket of `|v|` (finite, non-zero) at `scale`.
#[inline]
pub(crate) fn map_to_index(v: f64, scale: i32) -> i32 {
    let bits = v.to_bits() & !(1u64 << 63);
    let exp_bits = (bits >> MANTISSA_BITS) as i32;
    let mant = bits & MANTISSA_MASK;
    let (exp, pow2) = if exp_bits == 0 {
        // Subnormal: v = mant * 2^-1074.
        (
            63 - mant.leading_zeros() as i32 - 1074,
            mant.is_power_of_two(),
        )
    } else {
        (exp_bits - 1023, mant == 0)
    };
    if scale <= 0 {
        // Powers of two close their bucket: 2^e is in (2^(e-1), 2^e].
        let e = if pow2 { exp - 1 } else { exp };
        return e >> -scale;
    }
    if pow2 {
        return (exp << scale) - 1;
    }
    if scale <= TABLE_MAX_SCALE && exp_bits != 0 {
        let t = table(scale);
        let cell = (mant >> (MANTISSA_BITS - scale as u32 - 1)) as usize;
        let mut j = usize::from(t.first[cell]);
        if mant > t.bounds[j + 1] {
            j += 1;
        }
        return (exp << scale) + j as i32;
    }
    (v.abs().log2() * f64::from(1u32 << scale)).ceil() as i32 - 1
}

/// For one scale `s`: `bounds[j]` is the mantissa of `2^(j/2^s)` (the lower
/// end of sub-bucket `j` of an octave; `bounds[2^s]` = 2^52 ends it);
/// `first[c]` is the sub-bucket of the lowest mantissa in cell `c` of the
/// octave cut into 2^(s+1) equal cells. Sub-buckets are wider than cells,
/// so a cell holds at most one bound: one comparison finishes the lookup.
struct Table {
    bounds: Vec<u64>,
    first: Vec<u16>,
}

static TABLES: [OnceLock<Table>; TABLE_MAX_SCALE as usize + 1] =
    [const { OnceLock::new() }; TABLE_MAX_SCALE as usize + 1];

#[inline(always)]
fn table(scale: i32) -> &'static Table {
    let slot = &TABLES[scale as usize];
    match slot.get() {
        Some(t) => t,
        None => make_table(slot, scale),
    }
}

#[cold]
#[inline(never)]
fn make_table(slot: &'static OnceLock<Table>, scale: i32) -> &'static Table {
    slot.get_or_init(|| {
        let n = 1usize << scale;
        let mut bounds: Vec<u64> = (0..n)
            .map(|j| (j as f64 / n as f64).exp2().to_bits() & MANTISSA_MASK)
            .collect();
        bounds.push(1 << MANTISSA_BITS);
        let shift = MANTISSA_BITS - scale as u32 - 1;
        let first = (0..2 * n as u64)
            .map(|c| {
                let start = c << shift;
                // Bounds 1.. strictly below the cell's start.
                bounds[1..n].iter().filter(|&&b| b < start).count() as u16
            })
            .collect();
        Table { bounds, first }
    })
}

/// How much coarser (in scale steps) buckets `lo..=hi` must get to fit.
pub(crate) fn scale_change(lo: i32, hi: i32, max_size: usize) -> i32 {
    let mut c = 0;
    while c < 31 && (i64::from(hi >> c) - i64::from(lo >> c) + 1) as usize > max_size {
        c += 1;
    }
    c
}

/// Buckets of one sign: `counts[k]` is bucket `offset + k`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<u64>,
}

impl Buckets {
    fn range(&self) -> Option<(i32, i32)> {
        (!self.counts.is_empty()).then(|| (self.offset, self.offset + self.counts.len() as i32 - 1))
    }

    fn downscale(&mut self, c: i32) {
        if c <= 0 || self.counts.is_empty() {
            return;
        }
        let Some((lo, hi)) = self.range() else { return };
        let new_lo = lo >> c;
        let mut out = vec![0u64; ((hi >> c) - new_lo + 1) as usize];
        for (k, n) in self.counts.iter().enumerate() {
            out[(((lo + k as i32) >> c) - new_lo) as usize] += n;
        }
        self.offset = new_lo;
        self.counts = out;
    }

    fn add(&mut self, other: &Buckets) {
        let Some((olo, ohi)) = other.range() else {
            return;
        };
        let (lo, hi) = match self.range() {
            Some((lo, hi)) => (lo.min(olo), hi.max(ohi)),
            None => (olo, ohi),
        };
        let mut out = vec![0u64; (hi - lo + 1) as usize];
        for b in [&*self, other] {
            for (k, n) in b.counts.iter().enumerate() {
                out[(b.offset - lo) as usize + k] += n;
            }
        }
        self.offset = lo;
        self.counts = out;
    }
}

/// A histogram's state, read from one stripe or merged from all.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpPoint {
    pub scale: i32,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub zero_count: u64,
    pub positive: Buckets,
    pub negative: Buckets,
}

impl Default for ExpPoint {
    fn default() -> Self {
        ExpPoint {
            scale: MAX_SCALE,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero_count: 0,
            positive: Buckets::default(),
            negative: Buckets::default(),
        }
    }
}

impl ExpPoint {
    /// Adds `other` in, at the coarser of the two scales, coarser still if
    /// the union of their buckets needs it.
    pub(crate) fn merge(&mut self, other: &ExpPoint, max_size: usize) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let mut scale = self.scale.min(other.scale);
        let mut change = 0;
        for (a, b) in [
            (&self.positive, &other.positive),
            (&self.negative, &other.negative),
        ] {
            let ranges = [(a.range(), self.scale), (b.range(), other.scale)];
            let mut union: Option<(i32, i32)> = None;
            for (r, s) in ranges {
                if let Some((lo, hi)) = r {
                    let (lo, hi) = (lo >> (s - scale), hi >> (s - scale));
                    union = Some(union.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
                }
            }
            if let Some((lo, hi)) = union {
                change = change.max(scale_change(lo, hi, max_size));
            }
        }
        scale -= change;
        let mut o = other.clone();
        self.downscale_to(scale);
        o.downscale_to(scale);
        self.positive.add(&o.positive);
        self.negative.add(&o.negative);
        self.count += o.count;
        self.sum += o.sum;
        self.zero_count += o.zero_count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn downscale_to(&mut self, scale: i32) {
        let c = self.scale - scale;
        self.positive.downscale(c);
        self.negative.downscale(c);
        self.scale = scale;
    }
}

/// One sign's buckets in a stripe: a ring of [`SLOTS`] counters holding
/// buckets `lo..=hi` at slot `index % SLOTS`.
struct Ring {
    lo: AtomicI32,
    hi: AtomicI32,
    counts: [AtomicU64; SLOTS],
}

impl Ring {
    fn new() -> Ring {
        Ring {
            lo: AtomicI32::new(i32::MAX),
            hi: AtomicI32::new(i32::MIN),
            counts: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    fn bounds(&self) -> Option<(i32, i32)> {
        let (lo, hi) = (
            self.lo.load(Ordering::Relaxed),
            self.hi.load(Ordering::Relaxed),
        );
        (lo <= hi).then_some((lo, hi))
    }

    #[inline(always)]
    fn slot(&self, index: i32) -> &AtomicU64 {
        &self.counts[index as u32 as usize % SLOTS]
    }

    fn downscale(&self, c: i32) {
        let Some((lo, hi)) = self.bounds() else {
            return;
        };
        let mut moved = [0u64; SLOTS];
        for i in lo..=hi {
            moved[i as u32 as usize % SLOTS] = self.slot(i).swap(0, Ordering::Relaxed);
        }
        for i in lo..=hi {
            let s = self.slot(i >> c);
            let n = s.load(Ordering::Relaxed) + moved[i as u32 as usize % SLOTS];
            s.store(n, Ordering::Relaxed);
        }
        self.lo.store(lo >> c, Ordering::Relaxed);
        self.hi.store(hi >> c, Ordering::Relaxed);
    }

    fn read(&self) -> Buckets {
        match self.bounds() {
            Some((lo, hi)) => Buckets {
                offset: lo,
                counts: (lo..=hi)
                    .map(|i| self.slot(i).load(Ordering::Relaxed))
                    .collect(),
            },
            None => Buckets::default(),
        }
    }
}

/// One stripe of an exponential histogram.
pub(crate) struct ExpStripe {
    seq: AtomicU64,
    /// Serialises writers of a stripe shared by several threads.
    pub(crate) lock: Mutex<()>,
    scale: AtomicI32,
    // No count: it is the zero count plus the buckets'.
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    zero: AtomicU64,
    positive: Ring,
    negative: OnceLock<Box<Ring>>,
}

impl ExpStripe {
    pub(crate) fn new(max_scale: i32) -> ExpStripe {
        ExpStripe {
            seq: AtomicU64::new(0),
            lock: Mutex::new(()),
            scale: AtomicI32::new(max_scale.clamp(MIN_SCALE, MAX_SCALE)),
            sum: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            zero: AtomicU64::new(0),
            positive: Ring::new(),
            negative: OnceLock::new(),
        }
    }

    /// Records a finite `v`. The caller is the stripe's only writer (it
    /// owns the stripe or holds `lock`).
    #[inline]
    pub(crate) fn record(&self, v: f64, max_size: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);

        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + v;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
        if v < f64::from_bits(self.min.load(Ordering::Relaxed)) {
            self.min.store(v.to_bits(), Ordering::Relaxed);
        }
        if v > f64::from_bits(self.max.load(Ordering::Relaxed)) {
            self.max.store(v.to_bits(), Ordering::Relaxed);
        }
        if v == 0.0 {
            bump(&self.zero, 1);
        } else {
            let ring = if v > 0.0 {
                &self.positive
            } else {
                &**self.negative.get_or_init(|| Box::new(Ring::new()))
            };
            self.bucket(ring, v, max_size);
        }

        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    #[inline]
    fn bucket(&self, ring: &Ring, v: f64, max_size: usize) {
        let scale = self.scale.load(Ordering::Relaxed);
        let mut index = map_to_index(v, scale);
        let (lo, hi) = (
            ring.lo.load(Ordering::Relaxed),
            ring.hi.load(Ordering::Relaxed),
        );
        if index < lo || index > hi {
            let (new_lo, new_hi) = if lo > hi {
                (index, index)
            } else {
                (lo.min(index), hi.max(index))
            };
            let c = scale_change(new_lo, new_hi, max_size).min(scale - MIN_SCALE);
            if c > 0 {
                self.positive.downscale(c);
                if let Some(n) = self.negative.get() {
                    n.downscale(c);
                }
                self.scale.store(scale - c, Ordering::Relaxed);
                index >>= c;
            }
            ring.lo.store(new_lo >> c, Ordering::Relaxed);
            ring.hi.store(new_hi >> c, Ordering::Relaxed);
        }
        bump(ring.slot(index), 1);
    }

    /// A consistent copy of the stripe.
    pub(crate) fn read(&self) -> ExpPoint {
        let mut spins = 0u32;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let mut p = ExpPoint {
                    scale: self.scale.load(Ordering::Relaxed),
                    count: 0,
                    sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
                    min: f64::from_bits(self.min.load(Ordering::Relaxed)),
                    max: f64::from_bits(self.max.load(Ordering::Relaxed)),
                    zero_count: self.zero.load(Ordering::Relaxed),
                    positive: self.positive.read(),
                    negative: self.negative.get().map(|n| n.read()).unwrap_or_default(),
                };
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    p.count = p.zero_count
                        + p.positive.counts.iter().sum::<u64>()
                        + p.negative.counts.iter().sum::<u64>();
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

/// Adds to a counter that only the calling thread writes.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
