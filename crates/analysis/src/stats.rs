//! Small numeric building blocks of the detectors: a robust exponentially
//! weighted location/scale pair and a histogram of deviations that answers
//! "how often was a deviation at least this large seen?".

/// A location and a scale tracked by exponential weighting, robust to
/// outliers: each observation is clipped to `location ± clip * scale`
/// before it moves the location, so one spike moves the baseline by a
/// bounded amount (a Huber-type M-estimator, updated online).
#[derive(Debug, Clone, Copy)]
pub struct RobustEw {
    /// The location (a robust mean).
    pub loc: f64,
    /// Mean absolute deviation around the location (single precision:
    /// a scale needs no more, and it keeps the detector's state small).
    pub mad: f32,
    /// Points seen; the first few use plain averages so the start is unbiased.
    pub n: u32,
}

impl RobustEw {
    pub const fn new() -> Self {
        RobustEw {
            loc: 0.0,
            mad: 0.0,
            n: 0,
        }
    }

    /// Moves the estimate toward `x` with weight `alpha` (at least `1/n`
    /// while few points have been seen); `clip` bounds the influence of one
    /// point in units of the current scale, `floor` is the smallest scale
    /// used for clipping.
    #[inline]
    pub fn update(&mut self, x: f64, alpha: f64, clip: f64, floor: f64) {
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.loc = x;
            self.mad = 0.0;
            return;
        }
        let a = alpha.max(1.0 / self.n as f64);
        let dev = x - self.loc;
        let mad = self.mad as f64;
        let lim = clip * mad.max(floor);
        let clipped = if self.n > 8 {
            dev.clamp(-lim, lim)
        } else {
            dev
        };
        self.loc += a * clipped;
        // The scale sees clipped deviations too, but with a looser clip so
        // it can grow when the series becomes noisier.
        let d = dev.abs().min(2.0 * lim.max(floor));
        let d = if self.n > 8 { d } else { dev.abs() };
        self.mad = (mad + a * (d - mad)) as f32;
    }
}

impl Default for RobustEw {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_location_ignores_one_spike() {
        let mut r = RobustEw::new();
        for i in 0..200 {
            r.update(10.0 + (i % 3) as f64 * 0.1, 0.05, 3.0, 1e-9);
        }
        let before = r.loc;
        r.update(1e6, 0.05, 3.0, 1e-9);
        assert!((r.loc - before).abs() < 0.05, "{} -> {}", before, r.loc);
    }
}

/// Bounds of a tail exponent estimated from a history: below 1 a Pareto
/// tail has no mean (one point would say nothing), above 8 its
/// continuation is a wall anyway.
pub const TAIL_GAMMA_MIN: f64 = 1.0;
pub const TAIL_GAMMA_MAX: f64 = 8.0;

/// Bins of the surprise histogram: half-octaves of the deviation, from 0.5
/// (the last, open, bin starts at about 720 error units).
pub const TAIL_BINS: usize = 22;

/// The distribution of a series' deviations, learnt online: how often
/// deviations at least this large have been seen, with old points
/// forgotten exponentially. Bins are half-octaves of the deviation from 0.5
/// up (the last bin is open), so heavy-tailed series (spiky counters) and
/// quiet ones (temperatures) are both described; beyond what the history
/// holds, a Pareto prior of one pseudo-point extrapolates the tail.
#[derive(Debug, Clone)]
pub struct TailHistogram<const N: usize = TAIL_BINS> {
    counts: [f32; N],
    total: f32,
    /// Weight of the next point; grows instead of decaying every bin.
    inc: f32,
}

impl<const N: usize> TailHistogram<N> {
    pub const fn new() -> Self {
        TailHistogram {
            counts: [0.0; N],
            total: 0.0,
            inc: 1.0,
        }
    }

    /// Judges a deviation `u`, given as `log2(u)`: returns `P(U >= u)`
    /// under the history plus a prior of `prior` pseudo-points spread as a
    /// Pareto tail `min(1, u^-gamma)`; then learns `u`, forgetting older
    /// deviations at rate `alpha`. Beyond the largest deviations seen, their
    /// own mass continues as a Pareto tail of exponent `tail_gamma` (or,
    /// with `tail_share > 0`, of the exponent estimated from their own
    /// largest deviations).
    #[inline]
    pub fn observe(
        &mut self,
        log2_u: f64,
        prior: f64,
        gamma: f64,
        tail_gamma: f64,
        tail_share: f64,
        alpha: f64,
    ) -> f64 {
        let p = self.tail(log2_u, prior, gamma, tail_gamma, tail_share);
        self.learn(Self::bin(log2_u), alpha);
        p
    }

    /// The bin a deviation `u` (given as `log2(u)`) falls in.
    #[inline]
    pub fn bin(log2_u: f64) -> usize {
        (2.0 * (log2_u + 1.0)).clamp(0.0, N as f64 - 1e-9) as usize
    }

    /// The tail exponent of this history, estimated from its largest
    /// deviations: a Hill estimate over the top `share` of the mass (the
    /// bins from `top` down until they hold that share, each point taken
    /// at its bin's middle), clamped to `[TAIL_GAMMA_MIN, TAIL_GAMMA_MAX]`.
    /// A spiky series, whose large deviations thin out slowly, gets a low
    /// exponent; a quiet one, whose largest deviations are close together,
    /// a high one.
    fn hill_gamma(&self, top: usize, share: f64) -> f64 {
        let want = share as f32 * self.total;
        let (mut mass, mut lo) = (0.0f32, top);
        loop {
            mass += self.counts[lo];
            if mass >= want || lo == 0 {
                break;
            }
            lo -= 1;
        }
        // Mean excess of log2(u) over the threshold (the start of bin
        // `lo`), in half-octave steps of 0.5 from a bin's middle at 0.25.
        let excess: f64 = (lo..=top)
            .map(|j| self.counts[j] as f64 * (0.5 * (j - lo) as f64 + 0.25))
            .sum();
        let h = mass as f64 / (excess * std::f64::consts::LN_2).max(1e-12);
        h.clamp(TAIL_GAMMA_MIN, TAIL_GAMMA_MAX)
    }

    /// `P(U >= u)` (see [`TailHistogram::observe`]), without learning.
    /// With `tail_share > 0`, the continuation beyond the largest
    /// deviations seen uses the exponent estimated from this history's
    /// own top `tail_share` of deviations instead of `tail_gamma`.
    #[inline]
    pub fn tail(
        &self,
        log2_u: f64,
        prior: f64,
        gamma: f64,
        tail_gamma: f64,
        tail_share: f64,
    ) -> f64 {
        // Half-octave bins from u = 0.5.
        let pos = (2.0 * (log2_u + 1.0)).clamp(0.0, N as f64 - 1e-9);
        let k = pos as usize;
        let frac = pos - pos.floor();
        // The weight at or above u (within u's own bin, a linear share).
        // Small deviations are the common case: sum the few bins below
        // them; the tail is summed directly, so rare events stay exact.
        let share = (1.0 - frac as f32) * self.counts[k];
        let mut above = if k < N / 2 {
            let below: f32 = self.counts[..k].iter().sum();
            (self.total - below - self.counts[k] + share).max(0.0)
        } else {
            self.counts[k + 1..].iter().sum::<f32>() + share
        };
        if tail_gamma > 0.0 {
            // Beyond the largest deviations seen, their own mass continues
            // as a Pareto tail: a spike a little larger than the usual
            // spikes is not a new kind of event.
            if let Some(m) = (0..=k).rev().find(|&j| self.counts[j] > 0.0) {
                let edge_log2 = (m + 1) as f64 / 2.0 - 1.0;
                let cont = if log2_u <= edge_log2 {
                    1.0
                } else {
                    // Only a point beyond the largest deviations seen below
                    // its own bin gets here (rare), so the estimate is
                    // made only then.
                    let g = if tail_share > 0.0 {
                        self.hill_gamma(m, tail_share)
                    } else {
                        tail_gamma
                    };
                    (g * (edge_log2 - log2_u)).exp2()
                };
                above = above.max(self.counts[m] * cont as f32);
            }
        }
        let scale = 1.0 / self.inc as f64;
        let p_prior = if log2_u <= 0.0 {
            1.0
        } else {
            (-gamma * log2_u).exp2()
        };
        (above as f64 * scale + prior * p_prior) / (self.total as f64 * scale + prior)
    }

    /// Learns one point in bin `k` (see [`TailHistogram::bin`]),
    /// forgetting older points at rate `alpha`.
    #[inline]
    pub fn learn(&mut self, k: usize, alpha: f64) {
        self.counts[k] += self.inc;
        self.total += self.inc;
        self.inc /= (1.0 - alpha) as f32;
        if self.inc > 1e12 {
            let s = 1.0 / self.inc;
            self.counts.iter_mut().for_each(|c| *c *= s);
            self.total *= s;
            self.inc = 1.0;
        }
    }
}

/// A delay line of up to 32 small values (0 to 14), four bits each: what
/// went in `d` points ago comes out.
#[derive(Debug, Clone, Copy)]
pub struct NibbleDelay {
    lo: u64,
    hi: u64,
}

impl NibbleDelay {
    pub const fn new() -> Self {
        NibbleDelay {
            lo: u64::MAX,
            hi: u64::MAX,
        }
    }

    /// Pushes `v` (at most 14); returns the value pushed `d` (1 to 32)
    /// points ago, if there was one, or `v` itself when `d` is 0.
    #[inline]
    pub fn push(&mut self, v: u8, d: u32) -> Option<u8> {
        if d == 0 {
            return Some(v);
        }
        let all = ((self.hi as u128) << 64) | self.lo as u128;
        let old = ((all >> (4 * (d.clamp(1, 32) - 1))) & 0xf) as u8;
        let all = (all << 4) | (v.min(14) as u128);
        self.lo = all as u64;
        self.hi = (all >> 64) as u64;
        (old != 0xf).then_some(old)
    }
}

impl Default for NibbleDelay {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Default for TailHistogram<N> {
    fn default() -> Self {
        Self::new()
    }
}
