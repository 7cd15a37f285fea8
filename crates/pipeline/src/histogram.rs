//! Classic (explicit-bucket) histograms as Prometheus series.

use sonde_model::{Labels, Sample, Series, METRIC_NAME};

/// The Collector connectors' default buckets, in seconds.
pub const BUCKETS: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

#[derive(Default, Clone, Debug, PartialEq)]
pub struct Histo {
    pub count: f64,
    pub sum: f64,
    pub buckets: [f64; BUCKETS.len()],
}

impl Histo {
    pub fn observe(&mut self, seconds: f64, weight: f64) {
        self.count += weight;
        self.sum += seconds * weight;
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *b += weight;
            }
        }
    }

    pub fn add(&mut self, other: &Histo) {
        self.count += other.count;
        self.sum += other.sum;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }

    /// `{name}_bucket` per bound and `+Inf`, `{name}_sum`, `{name}_count`.
    pub fn series(&self, name: &str, labels: &[(&str, &str)], t: i64, out: &mut Vec<Series>) {
        let bucket = format!("{name}_bucket");
        for (i, le) in BUCKETS.iter().enumerate() {
            out.push(point(
                &bucket,
                labels,
                Some(&le_text(*le)),
                t,
                self.buckets[i],
            ));
        }
        out.push(point(&bucket, labels, Some("+Inf"), t, self.count));
        out.push(point(&format!("{name}_sum"), labels, None, t, self.sum));
        out.push(point(&format!("{name}_count"), labels, None, t, self.count));
    }
}

/// Prometheus formats `le` like Go's `strconv.FormatFloat(f, 'f', -1, 64)`,
/// which for these bounds is Rust's shortest `Display`.
pub fn le_text(v: f64) -> String {
    format!("{v}")
}

/// One sample of the series `name{labels, le}`.
pub fn point(name: &str, labels: &[(&str, &str)], le: Option<&str>, t: i64, v: f64) -> Series {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 2);
    pairs.push((METRIC_NAME, name));
    pairs.extend_from_slice(labels);
    if let Some(le) = le {
        pairs.push(("le", le));
    }
    Series {
        labels: Labels::from_pairs(pairs),
        samples: vec![Sample { t, v }],
        histograms: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_print_as_prometheus_does() {
        assert_eq!(le_text(0.002), "0.002");
        assert_eq!(le_text(1.0), "1");
        assert_eq!(le_text(15.0), "15");
    }
}
