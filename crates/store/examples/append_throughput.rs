//! Measures `Store::append` alone (no HTTP, no decoding): samples per second
//! for a TSBS-like batch shape. `cargo run --release -p sonde-store --example append_throughput`
use std::sync::Arc;
use std::time::Instant;

use sonde_model::{Labels, Sample, Series, SystemClock};
use sonde_store::{Store, StoreOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            retention_ms: 0,
            ..StoreOptions::default()
        },
        Arc::new(SystemClock),
    )
    .unwrap();
    let hosts = 1000;
    let metrics = 10;
    let labels: Vec<Labels> = (0..hosts * metrics)
        .map(|i| {
            Labels::from_pairs([
                ("__name__".to_string(), format!("cpu_usage_{}", i % metrics)),
                ("hostname".to_string(), format!("host_{}", i / metrics)),
                ("region".to_string(), format!("region_{}", i % 7)),
                ("datacenter".to_string(), format!("dc_{}", i % 13)),
                ("rack".to_string(), format!("{}", i % 101)),
                ("os".to_string(), "Ubuntu16.04LTS".to_string()),
                ("arch".to_string(), "x64".to_string()),
                ("team".to_string(), "SF".to_string()),
                ("service".to_string(), format!("{}", i % 19)),
                ("service_version".to_string(), "1".to_string()),
                ("service_environment".to_string(), "production".to_string()),
            ])
        })
        .collect();
    let t0 = SystemClockNow::now() - 6 * 3600 * 1000;
    let steps = 360;
    let started = Instant::now();
    let mut v = 50.0f64;
    let mut rng = 0x9e3779b97f4a7c15u64;
    for step in 0..steps {
        let t = t0 + step * 10_000;
        let batch: Vec<Series> = labels
            .iter()
            .map(|l| {
                // TSBS-like: a clamped random walk with full-precision steps.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Rounded to three decimals, as values that passed through
                // a text format (exposition, JSON, line protocol) are.
                v = ((v + (rng % 2001) as f64 / 1000.0 - 1.0).clamp(0.0, 100.0) * 1000.0).round()
                    / 1000.0;
                Series {
                    labels: l.clone(),
                    samples: vec![Sample { t, v }],
                    histograms: Vec::new(),
                }
            })
            .collect();
        store.append(&batch).unwrap();
    }
    let n = (steps as usize * labels.len()) as f64;
    let secs = started.elapsed().as_secs_f64();
    store.flush_head().unwrap();
    println!(
        "on disk after flush: {} block bytes, {:.2} bytes/sample",
        store.blocks_bytes(),
        store.blocks_bytes() as f64 / n
    );
    println!(
        "{n} samples in {secs:.2}s: {:.0} samples/s; head {} bytes ({:.1} B/series)",
        n / secs,
        store.head_bytes(),
        store.head_bytes() as f64 / labels.len() as f64
    );
}

struct SystemClockNow;
impl SystemClockNow {
    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }
}
