//! A daily profile: the expected value and spread for each time of day,
//! learned online in a fixed number of bins, read with linear interpolation
//! between bin centres.

const DAY_MS: i64 = 86_400_000;

/// A daily profile of `N` bins (at most 64). Means are kept as `f32`;
/// spreads need far less precision, so they are kept as the upper half of
/// an `f32` (a bfloat16: 8 exponent bits, 7 mantissa bits, ample for a
/// spread and cheap to convert), which lets the weekday profile have fine
/// bins within the state budget.
#[derive(Debug, Clone)]
pub struct DailyProfile<const N: usize> {
    mean: [f32; N],
    mad: [u16; N],
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

#[inline]
fn bf16_to_f64(b: u16) -> f64 {
    f32::from_bits((b as u32) << 16) as f64
}

#[inline]
fn f64_to_bf16(v: f64) -> u16 {
    // Round to nearest rather than truncate, so repeated small updates do
    // not drift downwards.
    let bits = (v as f32).to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

impl<const N: usize> DailyProfile<N> {
    const BIN_MS: f64 = DAY_MS as f64 / N as f64;

    pub fn new() -> Self {
        DailyProfile {
            mean: [0.0; N],
            mad: [0; N],
            seen: 0,
            first_t: i64::MIN,
        }
    }

    pub fn phase(t_ms: i64) -> Phase {
        let pos = t_ms.rem_euclid(DAY_MS) as f64 / Self::BIN_MS - 0.5;
        let pos = if pos < 0.0 { pos + N as f64 } else { pos };
        let lo = pos as usize % N;
        Phase {
            lo,
            hi: (lo + 1) % N,
            w: pos - pos.floor(),
        }
    }

    /// Points one bin receives per day at sampling interval `dt_ms`.
    pub fn points_per_bin(dt_ms: f64) -> f64 {
        if dt_ms > 0.0 {
            (Self::BIN_MS / dt_ms).max(1.0)
        } else {
            1.0
        }
    }

    /// Whether every bin has been seen and a full day has passed.
    pub fn ready(&self, t_ms: i64) -> bool {
        let all = if N >= 64 { u64::MAX } else { (1u64 << N) - 1 };
        self.seen == all && t_ms - self.first_t >= DAY_MS
    }

    /// The expected value and mean absolute deviation at this phase.
    #[inline]
    pub fn expect(&self, p: Phase) -> (f64, f64) {
        let m = (1.0 - p.w) * self.mean[p.lo] as f64 + p.w * self.mean[p.hi] as f64;
        let d = (1.0 - p.w) * bf16_to_f64(self.mad[p.lo]) + p.w * bf16_to_f64(self.mad[p.hi]);
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
                    self.mad[i] = 0;
                    self.seen |= bit;
                }
                continue;
            }
            let a = alpha * w;
            let m = self.mean[i] as f64;
            let d = bf16_to_f64(self.mad[i]);
            let dev = x - m;
            let lim = clip * d.max(floor);
            self.mean[i] = (m + a * dev.clamp(-lim, lim)) as f32;
            self.mad[i] = f64_to_bf16(d + a * (dev.abs() - d));
        }
    }
}

impl<const N: usize> Default for DailyProfile<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_survive_the_short_encoding() {
        for v in [0.0, 1e-9, 0.37, 1.0, 123.456, 9.9e7] {
            let back = bf16_to_f64(f64_to_bf16(v));
            assert!((back - v).abs() <= v * 4e-3, "{v} -> {back}");
        }
    }

    #[test]
    fn profile_learns_a_daily_curve() {
        let mut p = DailyProfile::<48>::new();
        let step = 300_000;
        for i in 0..(3 * 288) {
            let t = i as i64 * step;
            let v = if (t % DAY_MS) < DAY_MS / 2 {
                10.0
            } else {
                50.0
            };
            let alpha = 0.3 / DailyProfile::<48>::points_per_bin(step as f64);
            p.learn(t, DailyProfile::<48>::phase(t), v, alpha, 3.0, 1e-6);
        }
        assert!(p.ready(3 * DAY_MS));
        let (m, _) = p.expect(DailyProfile::<48>::phase(DAY_MS / 4));
        assert!((m - 10.0).abs() < 0.5, "{m}");
        let (m, _) = p.expect(DailyProfile::<48>::phase(3 * DAY_MS / 4));
        assert!((m - 50.0).abs() < 0.5, "{m}");
    }
}
