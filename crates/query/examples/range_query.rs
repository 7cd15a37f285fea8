//! Times range queries over an in-memory node_exporter-like data set, to
//! find where the engine spends its time without storage in the way.
//! `cargo run --release -p sonde-query --example range_query`
use std::time::Instant;

use sonde_model::{Labels, Matcher, Sample, Series};
use sonde_query::{Engine, EngineOptions, Queryable};

struct Mem(Vec<Series>);

impl Queryable for Mem {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        Ok(self
            .0
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .collect(),
                histograms: Vec::new(),
            })
            .collect())
    }
}

fn main() {
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let end = 6 * 3600 * 1000i64;
    let mut series = Vec::new();
    for host in 0..100 {
        for cpu in 0..8 {
            for (m, mode) in modes.iter().enumerate() {
                let labels = Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_string()),
                    ("instance", format!("host-{host}:9100")),
                    ("job", "node".to_string()),
                    ("cpu", cpu.to_string()),
                    ("mode", mode.to_string()),
                ]);
                let mut v = 0.0;
                let samples = (0..end / 15_000)
                    .map(|i| {
                        v += ((i * 7 + m as i64 * 13 + host) % 10) as f64 * 0.01;
                        Sample { t: i * 15_000, v }
                    })
                    .collect();
                series.push(Series {
                    labels,
                    samples,
                    histograms: Vec::new(),
                });
            }
        }
    }
    let db = Mem(series);
    let engine = Engine::new(EngineOptions::default());
    for q in [
        r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
        r#"rate(node_cpu_seconds_total{mode!="idle"}[5m])"#,
        r#"node_cpu_seconds_total{mode!="idle"}"#,
    ] {
        let started = Instant::now();
        let runs = 3;
        for _ in 0..runs {
            engine
                .range(&db, q, end - 3600 * 1000, end, 15_000)
                .unwrap();
        }
        println!(
            "{:>8.1} ms  {q}",
            started.elapsed().as_secs_f64() * 1000.0 / runs as f64
        );
    }
}
