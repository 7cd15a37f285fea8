//! The in-memory buffer of recent spans and logs: queryable at once, written
//! to Parquet when it is big or old enough.
//!
//! Rows are kept as the batches they arrived in, each behind an `Arc` and
//! never changed after, so a search takes a [`Snapshot`] (a list of `Arc`s)
//! under the lock and scans it after releasing the lock: a long search never
//! holds up an append.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use sonde_model::records::{Attributes, LogRecord, SpanRecord, TimestampNs, TraceId};

/// Spans and logs in arrival order, with a trace-id index over both.
#[derive(Default)]
pub(crate) struct Buffer {
    span_batches: Vec<Arc<[SpanRecord]>>,
    log_batches: Vec<Arc<[LogRecord]>>,
    /// (batch, row) of each span of a trace.
    span_index: FxHashMap<TraceId, Vec<(u32, u32)>>,
    log_index: FxHashMap<TraceId, Vec<(u32, u32)>>,
    pub span_count: usize,
    pub log_count: usize,
    /// An estimate of the heap bytes held, for the memory bound.
    pub bytes: usize,
    pub min_ns: TimestampNs,
    pub max_ns: TimestampNs,
}

/// The rows of a buffer at one moment; scanned without any lock.
#[derive(Default, Clone)]
pub(crate) struct Snapshot {
    spans: Vec<Arc<[SpanRecord]>>,
    logs: Vec<Arc<[LogRecord]>>,
}

impl Snapshot {
    pub fn spans(&self) -> impl Iterator<Item = &SpanRecord> {
        self.spans.iter().flat_map(|b| b.iter())
    }

    pub fn logs(&self) -> impl Iterator<Item = &LogRecord> {
        self.logs.iter().flat_map(|b| b.iter())
    }
}

fn attrs_bytes(attrs: &Attributes) -> usize {
    attrs
        .iter()
        .map(|(k, v)| k.len() + v.as_text().len() + 48)
        .sum()
}

fn span_bytes(s: &SpanRecord) -> usize {
    std::mem::size_of::<SpanRecord>()
        + s.name.len()
        + s.status_message.len()
        + s.trace_state.len()
        + attrs_bytes(&s.attributes)
        + s.events
            .iter()
            .map(|e| 64 + e.name.len() + attrs_bytes(&e.attributes))
            .sum::<usize>()
        + s.links
            .iter()
            .map(|l| 64 + attrs_bytes(&l.attributes))
            .sum::<usize>()
        + 16
}

fn log_bytes(l: &LogRecord) -> usize {
    std::mem::size_of::<LogRecord>()
        + l.body.len()
        + l.severity_text.len()
        + l.event_name.len()
        + attrs_bytes(&l.attributes)
}

impl Buffer {
    pub fn is_empty(&self) -> bool {
        self.span_count == 0 && self.log_count == 0
    }

    fn widen(&mut self, t: TimestampNs) {
        if self.is_empty() || t < self.min_ns {
            self.min_ns = t;
        }
        self.max_ns = self.max_ns.max(t);
    }

    pub fn add_spans(&mut self, spans: Arc<[SpanRecord]>) {
        if spans.is_empty() {
            return;
        }
        let batch = self.span_batches.len() as u32;
        for (row, s) in spans.iter().enumerate() {
            self.widen(s.start_ns);
            self.span_count += 1;
            self.bytes += span_bytes(s);
            self.span_index
                .entry(s.trace_id)
                .or_default()
                .push((batch, row as u32));
        }
        self.span_batches.push(spans);
    }

    pub fn add_logs(&mut self, logs: Arc<[LogRecord]>) {
        if logs.is_empty() {
            return;
        }
        let batch = self.log_batches.len() as u32;
        for (row, l) in logs.iter().enumerate() {
            self.widen(l.time_ns);
            self.log_count += 1;
            self.bytes += log_bytes(l);
            if let Some(t) = l.trace_id {
                self.log_index
                    .entry(t)
                    .or_default()
                    .push((batch, row as u32));
            }
        }
        self.log_batches.push(logs);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            spans: self.span_batches.clone(),
            logs: self.log_batches.clone(),
        }
    }

    /// Every span, in arrival order (for writing a segment).
    pub fn spans(&self) -> impl Iterator<Item = &SpanRecord> {
        self.span_batches.iter().flat_map(|b| b.iter())
    }

    pub fn logs(&self) -> impl Iterator<Item = &LogRecord> {
        self.log_batches.iter().flat_map(|b| b.iter())
    }

    pub fn trace(&self, id: &TraceId) -> impl Iterator<Item = &SpanRecord> {
        self.span_index
            .get(id)
            .into_iter()
            .flatten()
            .map(|&(b, r)| &self.span_batches[b as usize][r as usize])
    }

    pub fn trace_logs(&self, id: &TraceId) -> impl Iterator<Item = &LogRecord> {
        self.log_index
            .get(id)
            .into_iter()
            .flatten()
            .map(|&(b, r)| &self.log_batches[b as usize][r as usize])
    }
}
