//! Span start+end: Sonde's SDK against opentelemetry_sdk 0.33, same run.
//!
//! - `sampled`: a root span, three attributes, end. Timed in chunks of
//!   2048 spans; between chunks (untimed) both SDKs flush, so the queue is
//!   never full and nothing is dropped: this is the caller's cost.
//! - `sampled, quiet`: the same with both SDKs batching 4096 spans, so
//!   their export threads stay asleep during a timed chunk: the caller's
//!   cost alone, without the other core's export work competing (on a
//!   two-core machine that work shares caches and cores with the caller).
//! - `sampled+export`: the default batching, with the flush timed: the caller's cost
//!   plus the background work (Sonde encodes OTLP protobuf; the
//!   opentelemetry_sdk exporter here is a no-op, so it does less).
//! - `unsampled`: ratio 0 / `AlwaysOff`, start+end of a root span (kept
//!   observable with `black_box(&span)`, for both SDKs).
//!
//! Prints a ns/op and ratio table at the end.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use parking_lot::Mutex;
use sonde_sdk::attributes::KeyValue;
use sonde_sdk::export::{Signal, Sink, SinkStats};
use sonde_sdk::trace::{BatchConfig, TraceConfig, TracerProvider};

const CHUNK: u64 = 2048;

/// Discards batches (after the processor has encoded them).
struct NullSink;

impl Sink for NullSink {
    fn send(&self, _signal: Signal, body: Vec<u8>) {
        black_box(body);
    }
    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
    fn flush(&self, _timeout: Duration) -> bool {
        true
    }
}

#[derive(Debug)]
struct NullExporter;

impl SpanExporter for NullExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        black_box(batch);
        std::future::ready(Ok(()))
    }
}

/// Median ns/op of each benchmark's samples, for the summary.
static RESULTS: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn record(name: &str, iters: u64, elapsed: Duration) -> Duration {
    if iters > 0 {
        let per = elapsed.as_nanos() as f64 / iters as f64;
        RESULTS
            .lock()
            .entry(name.to_string())
            .or_default()
            .push(per);
    }
    elapsed
}

/// Batch size of the `quiet` variants.
const QUIET_BATCH: usize = 4096;

fn sonde(ratio: f64, max_batch: Option<usize>) -> TracerProvider {
    let mut batch = BatchConfig::default();
    if let Some(n) = max_batch {
        batch.max_batch = n;
    }
    TracerProvider::new(
        Arc::new(NullSink),
        TraceConfig {
            sampling_ratio: ratio,
            batch,
            ..TraceConfig::default()
        },
    )
}

fn otel(sampler: Sampler, max_batch: Option<usize>) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_sampler(sampler);
    match max_batch {
        None => builder.with_batch_exporter(NullExporter).build(),
        Some(n) => builder
            .with_span_processor(
                BatchSpanProcessor::builder(NullExporter)
                    .with_batch_config(
                        BatchConfigBuilder::default()
                            .with_max_queue_size(2 * n)
                            .with_max_export_batch_size(n)
                            .build(),
                    )
                    .build(),
            )
            .build(),
    }
}

/// Runs `op` `iters` times in chunks, flushing between chunks; the flush
/// is timed only when `time_flush`.
fn chunked(iters: u64, time_flush: bool, mut op: impl FnMut(), flush: impl Fn()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        if time_flush {
            flush();
            total += start.elapsed();
        } else {
            total += start.elapsed();
            flush();
        }
        left -= n;
    }
    total
}

fn spans(c: &mut Criterion) {
    let mut g = c.benchmark_group("span");

    let sp = sonde(1.0, None);
    let sq = sonde(1.0, Some(QUIET_BATCH));
    let op = otel(Sampler::AlwaysOn, None);
    let oq = otel(Sampler::AlwaysOn, Some(QUIET_BATCH));
    for (case, quiet, time_flush) in [
        ("sampled", false, false),
        ("sampled, quiet", true, false),
        ("sampled+export", false, true),
    ] {
        let provider = if quiet { &sq } else { &sp };
        let tracer = provider.tracer("bench");
        let name = format!("sonde/{case}");
        g.bench_function(name.as_str(), |b| {
            b.iter_custom(|n| {
                let op = || {
                    let mut s = tracer.start("GET /cart");
                    s.set_attribute(KeyValue::new("http.method", "GET"));
                    s.set_attribute(KeyValue::new("http.status_code", 200i64));
                    s.set_attribute(KeyValue::new("net.peer.name", "cart.internal"));
                    s.end();
                };
                let flush = || {
                    provider.force_flush(Duration::from_secs(30));
                };
                record(&name, n, chunked(n, time_flush, op, flush))
            })
        });
        let provider = if quiet { &oq } else { &op };
        let tracer = provider.tracer("bench");
        let name = format!("otel/{case}");
        g.bench_function(name.as_str(), |b| {
            b.iter_custom(|n| {
                let op = || {
                    let mut s = tracer.start("GET /cart");
                    s.set_attribute(opentelemetry::KeyValue::new("http.method", "GET"));
                    s.set_attribute(opentelemetry::KeyValue::new("http.status_code", 200i64));
                    s.set_attribute(opentelemetry::KeyValue::new(
                        "net.peer.name",
                        "cart.internal",
                    ));
                    s.end();
                };
                let flush = || {
                    let _ = provider.force_flush();
                };
                record(&name, n, chunked(n, time_flush, op, flush))
            })
        });
    }

    let su = sonde(0.0, None);
    let sut = su.tracer("bench");
    g.bench_function("sonde/unsampled", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                let span = sut.start("GET /cart");
                black_box(&span);
                span.end();
            }
            record("sonde/unsampled", n, start.elapsed())
        })
    });
    let ou = otel(Sampler::AlwaysOff, None);
    let out = ou.tracer("bench");
    g.bench_function("otel/unsampled", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                let mut span = out.start("GET /cart");
                black_box(&span);
                span.end();
            }
            record("otel/unsampled", n, start.elapsed())
        })
    });
    g.finish();
    eprintln!(
        "sonde dropped spans: {} (sampled), {} (quiet), {} (unsampled)",
        sp.stats().dropped,
        sq.stats().dropped,
        su.stats().dropped
    );
    for p in [&op, &oq, &ou] {
        let _ = p.shutdown();
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn summary() {
    let r = RESULTS.lock();
    let get = |k: &str| r.get(k).map_or(f64::NAN, |v| median(v));
    eprintln!();
    eprintln!(
        "{:<16} {:>12} {:>12} {:>14}",
        "span", "sonde ns/op", "otel ns/op", "sonde / otel"
    );
    for case in ["sampled", "sampled, quiet", "sampled+export", "unsampled"] {
        let (s, o) = (get(&format!("sonde/{case}")), get(&format!("otel/{case}")));
        eprintln!("{case:<16} {s:>12.1} {o:>12.1} {:>14.3}", s / o);
    }
    let (s, o) = (get("sonde/sampled"), get("otel/sampled"));
    eprintln!(
        "targets: sampled <= 1/3 of otel: {}; unsampled < 10 ns: {}",
        if s <= o / 3.0 { "met" } else { "MISSED" },
        if get("sonde/unsampled") < 10.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}

criterion_group!(benches, spans);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
