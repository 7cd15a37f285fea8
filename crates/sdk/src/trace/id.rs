//! Trace and span ids from a per-thread wyrand generator.
//!
//! Ids need to be unique and their low 56 bits uniformly random (consistent
//! probability sampling reads them), not unpredictable: a 64-bit wyrand
//! state per thread, seeded once from the process's random hasher keys, the
//! clock, the thread and a stack address, costs about a nanosecond per id
//! and takes no lock.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

static SEEDS: AtomicU64 = AtomicU64::new(0);

#[cold]
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let local = 0u8;
    h.write_usize(std::ptr::addr_of!(local) as usize);
    h.write_u64(SEEDS.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    std::hash::Hash::hash(&std::thread::current().id(), &mut h);
    // Never zero: zero marks "not seeded yet".
    h.finish() | 1
}

/// The next 64 random bits of this thread's generator.
#[inline]
pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = seed();
        }
        x = x.wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    })
}

/// A new, non-zero trace id.
#[inline]
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let hi = next_u64();
        let lo = next_u64();
        if hi | lo != 0 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&hi.to_be_bytes());
            id[8..].copy_from_slice(&lo.to_be_bytes());
            return id;
        }
    }
}

/// A new, non-zero span id.
#[inline]
pub fn new_span_id() -> [u8; 8] {
    loop {
        let v = next_u64();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_non_zero() {
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = new_span_id();
            assert_ne!(id, [0; 8]);
            assert!(seen.insert(id));
        }
        assert_ne!(new_trace_id(), new_trace_id());
    }

    #[test]
    fn threads_get_different_streams() {
        let a = std::thread::spawn(new_trace_id).join().unwrap();
        let b = std::thread::spawn(new_trace_id).join().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn low_56_bits_are_uniform() {
        // Each of the 56 sampling bits is set about half the time.
        let n = 20_000;
        let mut ones = [0u32; 56];
        for _ in 0..n {
            let id = new_trace_id();
            let r = u64::from_be_bytes(id[8..].try_into().unwrap());
            for (b, c) in ones.iter_mut().enumerate() {
                *c += ((r >> b) & 1) as u32;
            }
        }
        for c in ones {
            assert!((9_400..10_600).contains(&c), "bit set {c} times of {n}");
        }
    }
}
