//! Sonde's metrics hot paths against opentelemetry_sdk 0.33 and the
//! `metrics` crate, in one run on one machine.
//!
//!     cargo bench -p sonde-sdk --bench metrics --features metrics -- --warm-up-time 1 --measurement-time 3
//!
//! Without `--features metrics` the `metrics` crate rows are skipped. The
//! `metrics` crate has no aggregation of its own: its rows go through
//! Sonde's recorder (`sonde_sdk::recorder`), labelled as such. A summary
//! table (median ns/op of criterion's samples, and ratios) is printed at the
//! end, then the two-thread scaling of one counter.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use sonde_sdk::attributes::KeyValue;
use sonde_sdk::export::NoopSink;
use sonde_sdk::metrics::MeterProvider;

/// Median ns/op of each benchmark's samples, for the summary.
static RESULTS: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn timed(c: &mut Criterion, name: &str, mut op: impl FnMut()) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            let took = start.elapsed();
            if let Ok(mut r) = RESULTS.lock() {
                r.entry(name.to_string())
                    .or_default()
                    .push(took.as_nanos() as f64 / iters as f64);
            }
            took
        })
    });
}

fn median(name: &str) -> Option<f64> {
    let r = RESULTS.lock().ok()?;
    let mut v = r.get(name)?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// An exporter that discards, so the OpenTelemetry provider has a reader.
struct NoopExporter;

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for NoopExporter {
    async fn export(
        &self,
        _metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

fn sonde_provider() -> MeterProvider {
    MeterProvider::builder()
        .with_sink(Arc::new(NoopSink::default()))
        .with_interval(Duration::from_secs(3600))
        .build()
}

fn otel_provider() -> SdkMeterProvider {
    let reader = PeriodicReader::builder(NoopExporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    SdkMeterProvider::builder().with_reader(reader).build()
}

macro_rules! sonde_attrs {
    () => {
        [
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.route", "/api/cart"),
            KeyValue::new("http.status_code", 200i64),
        ]
    };
}

macro_rules! otel_attrs {
    () => {
        [
            opentelemetry::KeyValue::new("http.method", "GET"),
            opentelemetry::KeyValue::new("http.route", "/api/cart"),
            opentelemetry::KeyValue::new("http.status_code", 200i64),
        ]
    };
}

fn benches(c: &mut Criterion) {
    let sonde = sonde_provider();
    let meter = sonde.meter();
    let otel = otel_provider();
    let ometer = otel.meter("bench");

    // Counter add, 3 attributes given at each call.
    let counter = meter.u64_counter("sonde.counter").build();
    timed(c, "counter_add_3attrs/sonde", || {
        counter.add(black_box(1), &sonde_attrs!())
    });
    // The same with an attribute slice the compiler cannot see through
    // (with literals at the call site, much of the hashing folds away).
    let prebuilt = sonde_attrs!();
    timed(c, "counter_add_3attrs/sonde-opaque-slice", || {
        counter.add(black_box(1), black_box(&prebuilt))
    });
    let ocounter = ometer.u64_counter("otel.counter").build();
    timed(c, "counter_add_3attrs/otel", || {
        ocounter.add(black_box(1), &otel_attrs!())
    });
    #[cfg(feature = "metrics")]
    let recorder = sonde_sdk::recorder::SondeRecorder::new(&sonde);
    #[cfg(feature = "metrics")]
    metrics::with_local_recorder(&recorder, || {
        timed(c, "counter_add_3attrs/metrics-via-sonde", || {
            metrics::counter!("metrics.counter", "http.method" => "GET", "http.route" => "/api/cart", "http.status_code" => "200")
                .increment(black_box(1))
        });
    });

    // Bound counter: attributes resolved once.
    let bound = counter.bind(&sonde_attrs!());
    timed(c, "counter_bound_add/sonde", || bound.add(black_box(1)));
    // OpenTelemetry 0.33 binds only behind an experimental feature; its
    // cheapest stable path is an add without attributes.
    timed(c, "counter_bound_add/otel-no-attrs", || {
        ocounter.add(black_box(1), &[])
    });
    #[cfg(feature = "metrics")]
    {
        let handle = metrics::with_local_recorder(
            &recorder,
            || metrics::counter!("metrics.counter", "http.method" => "GET", "http.route" => "/api/cart", "http.status_code" => "200"),
        );
        timed(c, "counter_bound_add/metrics-handle-via-sonde", || {
            handle.increment(black_box(1))
        });
    }

    // Histogram record, 3 attributes, each SDK's default buckets
    // (Sonde: base-2 exponential; OpenTelemetry: 15 explicit bounds).
    let hist = meter.f64_histogram("sonde.hist").build();
    let hist_explicit = meter
        .f64_histogram("sonde.hist.explicit")
        .with_explicit_buckets(sonde_sdk::metrics::DEFAULT_BOUNDS.to_vec())
        .build();
    let ohist = ometer.f64_histogram("otel.hist").build();
    let mut x = 0u64;
    let mut next_value = move || {
        // Latency-like values spread over 3 decades.
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        0.1 + (x >> 40) as f64 / (1u64 << 24) as f64 * 900.0
    };
    timed(c, "histogram_record_3attrs/sonde-exponential", || {
        hist.record(next_value(), &sonde_attrs!())
    });
    timed(c, "histogram_record_3attrs/sonde-explicit", || {
        hist_explicit.record(next_value(), &sonde_attrs!())
    });
    timed(c, "histogram_record_3attrs/otel", || {
        ohist.record(next_value(), &otel_attrs!())
    });
    #[cfg(feature = "metrics")]
    metrics::with_local_recorder(&recorder, || {
        timed(c, "histogram_record_3attrs/metrics-via-sonde", || {
            metrics::histogram!("metrics.hist", "http.method" => "GET", "http.route" => "/api/cart", "http.status_code" => "200")
                .record(next_value())
        });
    });
    drop(otel);
}

/// Adds per second of `threads` threads each running `op` `n` times.
fn throughput(threads: usize, n: u64, op: &(dyn Fn() + Sync)) -> f64 {
    let barrier = std::sync::Barrier::new(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..n {
                    op();
                }
            });
        }
    });
    (threads as u64 * n) as f64 / start.elapsed().as_secs_f64()
}

/// A scaling case: name, adds per thread, the add.
type Case<'a> = (&'static str, u64, Box<dyn Fn() + Sync + 'a>);

fn scaling() -> Vec<(String, f64, f64)> {
    let sonde = sonde_provider();
    let meter = sonde.meter();
    let otel = otel_provider();
    let ometer = otel.meter("bench");
    let counter = meter.u64_counter("scaling").build();
    let bound = counter.bind(&sonde_attrs!());
    let ocounter = ometer.u64_counter("scaling").build();
    thread_local! {
        static LOCAL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let cases: Vec<Case> = vec![
        // What the machine gives two threads that share nothing.
        (
            "control: thread-local",
            20_000_000,
            Box::new(|| LOCAL.with(|c| c.set(black_box(c.get()) + 1))),
        ),
        (
            "sonde bound add",
            50_000_000,
            Box::new(|| bound.add(black_box(1))),
        ),
        (
            "sonde add, 3 attrs",
            4_000_000,
            Box::new(|| counter.add(black_box(1), &sonde_attrs!())),
        ),
        (
            "otel add, 3 attrs",
            1_000_000,
            Box::new(|| ocounter.add(black_box(1), &otel_attrs!())),
        ),
    ];
    // Rounds interleave the cases, and each keeps its best: the machine
    // may be shared, and a busy neighbour should cost every case alike.
    let mut best = vec![(0f64, 0f64); cases.len()];
    for _ in 0..15 {
        for ((_, n, op), b) in cases.iter().zip(best.iter_mut()) {
            b.0 = b.0.max(throughput(1, *n, &**op));
            b.1 = b.1.max(throughput(2, *n, &**op));
        }
    }
    cases
        .iter()
        .zip(best)
        .map(|((name, _, _), (one, two))| (name.to_string(), one, two))
        .collect()
}

fn summary(scaling: &[(String, f64, f64)]) {
    eprintln!("\n== metrics hot paths (median ns/op; lower is better) ==");
    eprintln!("{:<48} {:>10} {:>14}", "benchmark", "ns/op", "vs otel");
    let groups = [
        ("counter_add_3attrs", "counter_add_3attrs/otel"),
        ("counter_bound_add", "counter_bound_add/otel-no-attrs"),
        ("histogram_record_3attrs", "histogram_record_3attrs/otel"),
    ];
    let names: Vec<String> = RESULTS
        .lock()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    for (group, peer) in groups {
        let peer_ns = median(peer);
        for name in names.iter().filter(|n| n.starts_with(group)) {
            let Some(ns) = median(name) else { continue };
            let ratio = peer_ns.map_or("-".to_string(), |p| format!("{:.2}x", ns / p));
            eprintln!("{name:<48} {ns:>10.2} {ratio:>14}");
        }
    }
    eprintln!(
        "\n== one counter, one attribute set: 2 threads vs 1 ({} CPUs) ==",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    eprintln!(
        "{:<24} {:>14} {:>14} {:>8}",
        "case", "1 thread M/s", "2 threads M/s", "ratio"
    );
    for (name, one, two) in scaling {
        eprintln!(
            "{name:<24} {:>14.1} {:>14.1} {:>7.2}x",
            one / 1e6,
            two / 1e6,
            two / one
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    // SONDE_BENCH_SCALING=0 skips the thread scaling runs (for profiling).
    let scaling = if std::env::var("SONDE_BENCH_SCALING").as_deref() == Ok("0") {
        Vec::new()
    } else {
        scaling()
    };
    c.final_summary();
    summary(&scaling);
}
