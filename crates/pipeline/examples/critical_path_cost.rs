//! The critical path's cost (issue 14's yardsticks): one 1,000-span trace
//! (a tree ten wide, with overlapping siblings), and the streaming
//! processor fed traces of 20 spans, in spans per second of this thread.
//!
//!     cargo run --release -p sonde-pipeline --example critical_path_cost

use std::sync::Arc;
use std::time::Instant;

use sonde_model::records::{Origin, SpanId, SpanKind, SpanRecord, StatusCode, TraceId};
use sonde_pipeline::critical_path::{critical_path, CriticalPath, PathSpan};
use sonde_pipeline::{Collect, Options, Processor};

fn id(n: u32) -> [u8; 8] {
    let mut id = [0u8; 8];
    id[..4].copy_from_slice(&(n + 1).to_be_bytes());
    id
}

fn main() {
    // One trace: a root and 999 spans, each parent with ten children that
    // overlap in time.
    let svc: Arc<str> = Arc::from("svc");
    let op: Arc<str> = Arc::from("op");
    let mut spans = vec![PathSpan {
        id: id(0),
        parent: None,
        start_ns: 0,
        end_ns: 1_000_000_000,
        service: svc.clone(),
        operation: op.clone(),
    }];
    for i in 1..1000u32 {
        let start = (i as i64 % 97) * 1_000_000;
        spans.push(PathSpan {
            id: id(i),
            parent: Some(id((i - 1) / 10)),
            start_ns: start,
            end_ns: start + (1 + i as i64 % 13) * 1_000_000,
            service: svc.clone(),
            operation: op.clone(),
        });
    }
    let runs = 2_000;
    let t = Instant::now();
    let mut stretches = 0;
    for _ in 0..runs {
        stretches += critical_path(&spans).unwrap().1.len();
    }
    let per = t.elapsed().as_secs_f64() / runs as f64;
    println!(
        "critical path of a 1,000-span trace: {:.1} µs ({} stretches)",
        per * 1e6,
        stretches / runs
    );

    // The processor: 20-span traces (a root and 19 children), fed in
    // batches of 1,000 spans, finalised by ticks.
    let origin = Arc::new(Origin {
        service: "api".into(),
        ..Origin::default()
    });
    let mut p = CriticalPath::new(&Options::default());
    let mut sink = Collect::default();
    let total_traces = 20_000u32;
    let now = 1_700_000_000_000i64;
    let mut batch = Vec::with_capacity(1000);
    let t = Instant::now();
    for tr in 0..total_traces {
        let mut tid = [0u8; 16];
        tid[..4].copy_from_slice(&tr.to_be_bytes());
        let t0 = (now - 60_000 + tr as i64) * 1_000_000;
        for s in 0..20u32 {
            batch.push(SpanRecord {
                trace_id: TraceId(tid),
                span_id: SpanId(id(s)),
                parent_span_id: (s > 0).then(|| SpanId(id(0))),
                trace_state: String::new(),
                flags: 1,
                name: if s == 0 {
                    "GET /".into()
                } else {
                    format!("call-{}", s % 5)
                },
                kind: if s == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                start_ns: t0 + s as i64 * 1_000_000,
                end_ns: t0 + (s as i64 + 3) * 1_000_000 + if s == 0 { 30_000_000 } else { 0 },
                status: StatusCode::Unset,
                status_message: String::new(),
                origin: origin.clone(),
                attributes: vec![],
                events: vec![],
                links: vec![],
            });
        }
        if batch.len() >= 1000 {
            p.on_spans(&batch, now);
            batch.clear();
        }
    }
    p.on_spans(&batch, now);
    p.tick(now + 60_000, &mut sink);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "processor: {:.0} spans/s on one thread ({} traces, {} finalised, {} series samples)",
        (total_traces * 20) as f64 / secs,
        total_traces,
        p.finalised(),
        sink.series.len()
    );
}
