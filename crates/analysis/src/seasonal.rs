//! A daily profile: the expected value and spread for each time of day,
//! learned online in a fixed number of bins, read with linear interpolation
//! between bin centres.

/// Bins per day (an hour each, read with interpolation): fine enough for a
/// smooth daily curve, small enough (2 × 24 × 4 bytes) for the state budget.
pub const BINS: usize = 24;
const DAY_MS: i64 = 86_400_000;
const BIN_MS: f64 = DAY_MS as f64 / BINS as f64;

#[derive(Debug, Clone)]
pub struct DailyProfile {
    mean: [f32; BINS],
    mad: [f32; BINS],
    /// Bit i set once bin i has seen a point.
    seen: u64,
    /// When the profile saw its first point.
    first_t: i64,
}

/// Where a time falls: the two neighbouring bins and the weight of the second.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    lo: usize,
    hi: usize,
    w: f64,
}

impl DailyProfile {
    pub fn new() -> Self {
        DailyProfile {
            mean: [0.0; BINS],
            mad: [0.0; BINS],
            seen: 0,
            first_t: i64::MIN,
        }
    }

    pub fn phase(t_ms: i64) -> Phase {
        let pos = t_ms.rem_euclid(DAY_MS) as f64 / BIN_MS - 0.5;
        let pos = if pos < 0.0 { pos + BINS as f64 } else { pos };
        let lo = pos as usize % BINS;
        Phase {
            lo,
            hi: (lo + 1) % BINS,
            w: pos - pos.floor(),
        }
    }

    /// Whether every bin has been seen and a full day has passed.
    pub fn ready(&self, t_ms: i64) -> bool {
        self.seen == (1u64 << BINS) - 1 && t_ms - self.first_t >= DAY_MS
    }

    /// The expected value and mean absolute deviation at this phase.
    #[inline]
    pub fn expect(&self, p: Phase) -> (f64, f64) {
        let m = (1.0 - p.w) * self.mean[p.lo] as f64 + p.w * self.mean[p.hi] as f64;
        let d = (1.0 - p.w) * self.mad[p.lo] as f64 + p.w * self.mad[p.hi] as f64;
        (m, d)
    }

    /// Learns `x` at phase `p`; `alpha` is the weight of one point in a bin
    /// (the caller scales it by how many points a bin receives per day).
    #[inline]
    pub fn learn(&mut self, t_ms: i64, p: Phase, x: f64, alpha: f64, clip: f64, floor: f64) {
        if self.first_t == i64::MIN {
            self.first_t = t_ms;
        }
        for (i, w) in [(p.lo, 1.0 - p.w), (p.hi, p.w)] {
            let bit = 1u64 << i;
            if self.seen & bit == 0 {
                if w >= 0.5 {
                    self.mean[i] = x as f32;
                    self.mad[i] = 0.0;
                    self.seen |= bit;
                }
                continue;
            }
            let a = alpha * w;
            let m = self.mean[i] as f64;
            let d = self.mad[i] as f64;
            let dev = x - m;
            let lim = clip * d.max(floor);
            self.mean[i] = (m + a * dev.clamp(-lim, lim)) as f32;
            self.mad[i] = (d + a * (dev.abs() - d)) as f32;
        }
    }
}

impl Default for DailyProfile {
    fn default() -> Self {
        Self::new()
    }
}
