//! Synthetic ramp check: a noisy series (mean 0.18, 15% noise) ramps
//! linearly to 0.74 over 60 points and stays there. Prints, per sampling
//! interval, the highest score in the first 30 points from the ramp start,
//! the first point (from the ramp start) scoring above 0.25, and the
//! highest score on the quiet part (after the learning period).
//!
//!     cargo run --release --example ramp [-- field=value ...]

use sonde_analysis::{Detector, DetectorConfig};

#[path = "shared/set.rs"]
mod set;

struct Rng(u64);
impl Rng {
    fn uni(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        let (u, v) = (self.uni(), self.uni());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn main() {
    let mut cfg = DetectorConfig::default();
    for kv in std::env::args().skip(1) {
        let (k, v) = kv.split_once('=').expect("field=value");
        set::set(&mut cfg, k, v);
    }
    let start = 400usize;
    for (label, step) in [("1 s", 1_000i64), ("5 min", 300_000)] {
        for mult in [true, false] {
            let mut worst_q = 0.0f64;
            let mut rows = Vec::new();
            for seed in 1..=10u64 {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed * 0x1234_5678_9abc));
                let mut d = Detector::new(cfg.clone());
                let (mut max_ramp, mut first) = (0.0f64, None);
                for i in 0..600usize {
                    let level = if i < start {
                        0.18
                    } else if i < start + 60 {
                        0.18 + (0.74 - 0.18) * (i - start + 1) as f64 / 60.0
                    } else {
                        0.74
                    };
                    let noise = if mult { 0.15 * level } else { 0.15 * 0.18 };
                    let v = level + noise * rng.gauss();
                    let s = d.update(1_700_006_400_000 + i as i64 * step, v).score;
                    if seed == 1
                        && mult
                        && std::env::var("TRACE").is_ok()
                        && i + 5 >= start
                        && i < start + 70
                    {
                        print!("{}:{:.2} ", i as i64 - start as i64, s);
                    }
                    if i < start && i >= 150 {
                        worst_q = worst_q.max(s);
                    }
                    if i >= start && i < start + 30 {
                        max_ramp = max_ramp.max(s);
                    }
                    if i >= start && first.is_none() && s > 0.25 {
                        first = Some(i - start);
                    }
                }
                if seed == 1 && mult && std::env::var("TRACE").is_ok() {
                    println!();
                }
                rows.push((max_ramp, first));
            }
            let mean: f64 = rows.iter().map(|r| r.0).sum::<f64>() / rows.len() as f64;
            let firsts: Vec<String> = rows
                .iter()
                .map(|r| r.1.map_or("-".into(), |f| f.to_string()))
                .collect();
            println!(
                "{label:6} noise {}: max score in 30 pts of ramp, mean {mean:.3} (min {:.3}); first >0.25 at [{}]; quiet max {worst_q:.3}",
                if mult { "15% of level" } else { "0.027 fixed " },
                rows.iter().map(|r| r.0).fold(1.0, f64::min),
                firsts.join(" ")
            );
        }
    }
}
