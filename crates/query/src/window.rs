//! Finding a step's window in a series' samples. Range queries step forward
//! in time, so each series keeps a cursor and the next window is reached by
//! a short forward walk (sequential, cache-friendly) instead of a binary
//! search over data that no longer fits in cache.

use sonde_model::Sample;

use crate::engine::LoadedSeries;

impl LoadedSeries {
    /// `window(&self.samples, lo, hi)`, found from the last position.
    pub fn float_window(&self, lo: i64, hi: i64) -> &[Sample] {
        let s = &self.samples;
        let (a, b) = self.cursor.get();
        let a = advance_to(s, a, lo);
        let b = advance_to(s, b.max(a), hi);
        self.cursor.set((a, b));
        s.get(a..b).unwrap_or(&[])
    }
}

/// The first index whose sample is after `t`, starting the search at
/// `hint`: a short forward walk when `t` moved a little ahead, a binary
/// search otherwise.
fn advance_to(s: &[Sample], hint: usize, t: i64) -> usize {
    const WALK: usize = 16;
    if hint > s.len() || (hint > 0 && s[hint - 1].t > t) {
        return s.partition_point(|p| p.t <= t);
    }
    let mut i = hint;
    let stop = (hint + WALK).min(s.len());
    while i < stop && s[i].t <= t {
        i += 1;
    }
    if i == stop && i < s.len() && s[i].t <= t {
        i + s[i..].partition_point(|p| p.t <= t)
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_agrees_with_binary_search_whatever_the_order_of_steps() {
        let s: Vec<Sample> = (0..500)
            .map(|i| Sample {
                t: i * 10 + (i % 3),
                v: i as f64,
            })
            .collect();
        let mut rng = 7u64;
        let mut hint = 0;
        for step in 0..5000i64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly forward by a little, sometimes far, sometimes backwards.
            let t = match rng % 10 {
                0 => (rng % 6000) as i64 - 500,
                _ => step,
            };
            let got = advance_to(&s, hint, t);
            assert_eq!(got, s.partition_point(|p| p.t <= t), "t={t} hint={hint}");
            hint = got;
        }
        assert_eq!(advance_to(&s, 10_000, 55), s.partition_point(|p| p.t <= 55));
        assert_eq!(advance_to(&[], 0, 5), 0);
    }
}
