//! Quantiles and fractions over classic histograms (`le` buckets).

/// One cumulative bucket: observations `<= upper`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Sorts, merges duplicate bounds, and repairs non-monotonic counts, which
/// happen with float precision errors or inconsistent scrapes. Returns
/// `None` when the buckets cannot describe a histogram (no `+Inf` bucket).
fn normalize(buckets: &mut Vec<Bucket>) -> Option<()> {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if buckets.last()?.upper != f64::INFINITY {
        return None;
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(*b),
        }
    }
    *buckets = merged;
    // Counts within a relative 1e-12 of the previous one are float noise.
    let mut prev = buckets.first()?.count;
    for b in buckets.iter_mut().skip(1) {
        let delta = (b.count - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / b.count <= 1e-12 {
            b.count = prev;
        } else {
            prev = b.count;
        }
    }
    // Force monotonicity by taking the running maximum.
    let mut max = buckets.first()?.count;
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
    Some(())
}

/// Prometheus's `histogram_quantile` for classic buckets: linear
/// interpolation inside the bucket holding the rank; the lowest bucket
/// starts at 0 when its bound is positive; a rank in the `+Inf` bucket
/// returns the highest finite bound.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if normalize(buckets).is_none() || buckets.len() < 2 {
        return f64::NAN;
    }
    let n = buckets.len();
    let observations = buckets[n - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|b| b.count < rank);
    if b == n - 1 {
        return buckets[n - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Fraction of observations between `lower` and `upper`, interpolating
/// linearly inside finite buckets. Buckets of infinite width cannot be
/// interpolated: a bound inside one counts none of it (or all of it when
/// the bound is the infinite end itself).
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if lower.is_nan() || upper.is_nan() || normalize(buckets).is_none() {
        return f64::NAN;
    }
    let total = buckets.last().map_or(0.0, |b| b.count);
    if total == 0.0 || total.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let first_lower = match buckets.first() {
        Some(b) if b.upper > 0.0 => 0.0,
        _ => f64::NEG_INFINITY,
    };
    // Observations <= x.
    let rank = |x: f64| -> f64 {
        let mut below = 0.0;
        let mut lo = first_lower;
        for b in buckets.iter() {
            let in_bucket = b.count - below;
            if x >= b.upper {
                below = b.count;
                lo = b.upper;
                continue;
            }
            if x <= lo {
                return below;
            }
            if lo == f64::NEG_INFINITY {
                return b.count;
            }
            if b.upper == f64::INFINITY {
                return below;
            }
            return below + in_bucket * (x - lo) / (b.upper - lo);
        }
        below
    };
    (rank(upper) - rank(lower)) / total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    #[test]
    fn quantile_interpolates_within_bucket() {
        let mut h = b(&[
            (0.0, 0.0),
            (2.0, 10.0),
            (4.0, 20.0),
            (6.0, 30.0),
            (f64::INFINITY, 30.0),
        ]);
        assert!((bucket_quantile(0.5, &mut h) - 3.0).abs() < 1e-12);
        assert!((bucket_quantile(1.0 / 6.0, &mut h) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn quantile_needs_inf_bucket() {
        let mut h = b(&[(1.0, 1.0), (2.0, 2.0)]);
        assert!(bucket_quantile(0.5, &mut h).is_nan());
    }

    #[test]
    fn fraction_treats_infinite_buckets_conservatively() {
        let mut h = b(&[
            (-3.0, 10.0),
            (-2.0, 12.0),
            (-1.0, 15.0),
            (f64::INFINITY, 100.0),
        ]);
        assert!((bucket_fraction(-4.0, -2.0, &mut h) - 0.02).abs() < 1e-12);
        assert!((bucket_fraction(f64::NEG_INFINITY, -1.5, &mut h) - 0.135).abs() < 1e-12);
        let mut h = b(&[(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (f64::INFINITY, 100.0)]);
        assert!((bucket_fraction(400.0, f64::INFINITY, &mut h) - 0.94).abs() < 1e-12);
    }
}
