//! Span start+end: Sonde's SDK against opentelemetry_sdk 0.33, same run.
//!
//! - `sampled`: a root span, three attributes, end. Timed in chunks of
//!   2048 spans; between chunks (untimed) both SDKs flush, so the queue is
//!   never full and nothing is dropped: this is the caller's cost.
//! - `sampled+export`: the same, with the flush timed: the caller's cost
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
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use parking_lot::Mutex;
use sonde_sdk::attributes::KeyValue;
use sonde_sdk::export::{Signal, Sink, SinkStats};
use sonde_sdk::trace::{TraceConfig, TracerProvider};

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

fn sonde(ratio: f64) -> TracerProvider {
    TracerProvider::new(
        Arc::new(NullSink),
        TraceConfig {
            sampling_ratio: ratio,
            ..TraceConfig::default()
        },
    )
}

fn otel(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(NullExporter)
        .build()
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

    let sp = sonde(1.0);
    let st = sp.tracer("bench");
    let sonde_sampled = || {
        let mut s = st.start("GET /cart");
        s.set_attribute(KeyValue::new("http.method", "GET"));
        s.set_attribute(KeyValue::new("http.status_code", 200i64));
        s.set_attribute(KeyValue::new("net.peer.name", "cart.internal"));
        s.end();
    };
    let sonde_flush = || {
        sp.force_flush(Duration::from_secs(30));
    };
    g.bench_function("sonde/sampled", |b| {
        b.iter_custom(|n| {
            record(
                "sonde/sampled",
                n,
                chunked(n, false, sonde_sampled, sonde_flush),
            )
        })
    });
    g.bench_function("sonde/sampled+export", |b| {
        b.iter_custom(|n| {
            record(
                "sonde/sampled+export",
                n,
                chunked(n, true, sonde_sampled, sonde_flush),
            )
        })
    });

    let op = otel(Sampler::AlwaysOn);
    let ot = op.tracer("bench");
    let otel_sampled = || {
        let mut s = ot.start("GET /cart");
        s.set_attribute(opentelemetry::KeyValue::new("http.method", "GET"));
        s.set_attribute(opentelemetry::KeyValue::new("http.status_code", 200i64));
        s.set_attribute(opentelemetry::KeyValue::new(
            "net.peer.name",
            "cart.internal",
        ));
        s.end();
    };
    let otel_flush = || {
        let _ = op.force_flush();
    };
    g.bench_function("otel/sampled", |b| {
        b.iter_custom(|n| {
            record(
                "otel/sampled",
                n,
                chunked(n, false, otel_sampled, otel_flush),
            )
        })
    });
    g.bench_function("otel/sampled+export", |b| {
        b.iter_custom(|n| {
            record(
                "otel/sampled+export",
                n,
                chunked(n, true, otel_sampled, otel_flush),
            )
        })
    });

    let su = sonde(0.0);
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
    let ou = otel(Sampler::AlwaysOff);
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
        "sonde dropped spans: sampled provider {}, unsampled provider {}",
        sp.stats().dropped,
        su.stats().dropped
    );
    let _ = op.shutdown();
    let _ = ou.shutdown();
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
    for case in ["sampled", "sampled+export", "unsampled"] {
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
