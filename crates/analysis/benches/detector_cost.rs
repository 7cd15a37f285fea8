//! Cost of the anomaly detector per point and per series, printed as a
//! table: one hot series, then many series fed round-robin (the realistic
//! case: each update touches a cold detector), against a peer: an
//! exponentially weighted Gaussian z-score (the "windowed Gaussian" of
//! NAB's baselines), the cheapest detector worth the name.
//!
//!     cargo bench -p sonde-analysis --bench detector_cost

use std::hint::black_box;
use std::time::Instant;

use sonde_analysis::{Detector, DetectorConfig};

/// The peer: z-score against an exponentially weighted mean and variance.
#[derive(Clone)]
struct EwGaussian {
    mean: f64,
    var: f64,
}

impl EwGaussian {
    fn update(&mut self, x: f64) -> f64 {
        let z = (x - self.mean) / self.var.sqrt().max(1e-9);
        let d = x - self.mean;
        self.mean += 0.01 * d;
        self.var = 0.99 * (self.var + 0.01 * d * d);
        1.0 - (-0.5 * z * z).exp()
    }
}

/// A value for series `s` at step `i`: a daily curve, noise, now and then a spike.
fn value(s: usize, i: usize) -> f64 {
    let mut h = (s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    let noise = (h % 1000) as f64 / 1000.0;
    let spike = if h.is_multiple_of(997) { 50.0 } else { 0.0 };
    100.0 + 30.0 * (i as f64 * 2.0 * std::f64::consts::PI / 288.0).sin() + 5.0 * noise + spike
}

fn time<F: FnMut(usize, usize, i64, f64) -> f64>(series: usize, steps: usize, mut f: F) -> f64 {
    // Precompute the inputs so only the detector is timed.
    let inputs: Vec<f64> = (0..steps)
        .flat_map(|i| (0..series).map(move |s| value(s, i)))
        .collect();
    let start = Instant::now();
    let mut acc = 0.0;
    for i in 0..steps {
        let t = 1_700_000_000_000 + i as i64 * 300_000;
        for s in 0..series {
            acc += f(s, i, t, inputs[i * series + s]);
        }
    }
    black_box(acc);
    start.elapsed().as_nanos() as f64 / (series * steps) as f64
}

fn main() {
    let cfg = std::sync::Arc::new(DetectorConfig::default());
    println!(
        "state per series: Detector {} bytes (plus one shared configuration), peer {} bytes",
        std::mem::size_of::<Detector>(),
        std::mem::size_of::<EwGaussian>()
    );
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "workload", "sonde ns/pt", "peer ns/pt", "ratio"
    );
    for (name, series, steps) in [
        ("1 series x 2,000,000 points", 1usize, 2_000_000usize),
        ("10,000 series x 200 points", 10_000, 200),
        ("100,000 series x 20 points", 100_000, 20),
    ] {
        // Warm the detectors past their learning period first, so the
        // timed points take the full scoring path.
        let mut dets = vec![Detector::shared(cfg.clone()); series];
        let warm = 2_000 / series.min(2_000) + 600;
        time(series, warm.min(700), |s, _, t, v| {
            dets[s].update(t - 1_000_000_000, v).score
        });
        let ours = time(series, steps, |s, _, t, v| dets[s].update(t, v).score);
        let mut peers = vec![
            EwGaussian {
                mean: 0.0,
                var: 1.0
            };
            series
        ];
        let peer = time(series, steps, |s, _, _, v| peers[s].update(v));
        println!("{name:<34} {ours:>12.1} {peer:>12.1} {:>8.1}", ours / peer);
    }
}
