//! The clock of spans and log records.
//!
//! Spans read a monotonic clock (a duration cannot go negative) and convert
//! to Unix time with an offset that the export threads re-read from the
//! wall clock every interval. The clock is `quanta`'s: the CPU's invariant
//! time-stamp counter where there is one (about 10 ns a read here, against
//! 25 ns for the vDSO's `clock_gettime`; a span reads it twice), else the
//! OS monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use quanta::Instant;

static ANCHOR: OnceLock<Instant> = OnceLock::new();
/// Unix time at `ANCHOR`, in nanoseconds.
static UNIX_AT_ANCHOR: AtomicU64 = AtomicU64::new(0);

fn anchor() -> Instant {
    *ANCHOR.get_or_init(|| {
        let now = Instant::now();
        UNIX_AT_ANCHOR.store(wall_unix_nano(), Ordering::Relaxed);
        now
    })
}

fn wall_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Nanoseconds on the monotonic clock since the process's anchor.
#[inline]
fn mono_nanos() -> u64 {
    Instant::now()
        .saturating_duration_since(anchor())
        .as_nanos() as u64
}

/// Unix time of a monotonic reading. Spans keep the `Instant`s they read
/// and the export thread converts them: the caller does no arithmetic.
#[inline]
pub(crate) fn to_unix_nano(t: Instant) -> u64 {
    let since = t.saturating_duration_since(anchor()).as_nanos() as u64;
    UNIX_AT_ANCHOR.load(Ordering::Relaxed).wrapping_add(since)
}

/// Nanoseconds since the Unix epoch.
#[inline]
pub(crate) fn now_unix_nano() -> u64 {
    // The reading first: it sets the anchor and its Unix time.
    let mono = mono_nanos();
    UNIX_AT_ANCHOR.load(Ordering::Relaxed).wrapping_add(mono)
}

/// The process's clock anchor: an `Instant` to start from.
pub(crate) fn anchor_instant() -> Instant {
    anchor()
}

/// Re-reads the wall clock, following adjustments to it (NTP, resume).
pub(crate) fn resync_clock() {
    let a = anchor();
    let wall = wall_unix_nano();
    let mono = Instant::now().saturating_duration_since(a).as_nanos() as u64;
    UNIX_AT_ANCHOR.store(wall.wrapping_sub(mono), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock() {
        let wall = wall_unix_nano();
        let ours = now_unix_nano();
        assert!(ours.abs_diff(wall) < 50_000_000, "{ours} vs {wall}");
        resync_clock();
        let a = Instant::now();
        let b = Instant::now();
        assert!(to_unix_nano(b) >= to_unix_nano(a));
        assert!(to_unix_nano(a).abs_diff(wall) < 50_000_000);
        assert!(now_unix_nano().abs_diff(wall_unix_nano()) < 5_000_000);
    }
}
