//! The in-memory buffer of recent spans and logs: queryable at once, written
//! to Parquet when it is big or old enough.

use rustc_hash::FxHashMap;
use sonde_model::records::{Attributes, LogRecord, SpanRecord, TimestampNs, TraceId};

/// Spans and logs in arrival order, with a trace-id index over both.
#[derive(Default)]
pub(crate) struct Buffer {
    pub spans: Vec<SpanRecord>,
    pub logs: Vec<LogRecord>,
    span_index: FxHashMap<TraceId, Vec<u32>>,
    log_index: FxHashMap<TraceId, Vec<u32>>,
    /// An estimate of the heap bytes held, for the memory bound.
    pub bytes: usize,
    pub min_ns: TimestampNs,
    pub max_ns: TimestampNs,
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
        self.spans.is_empty() && self.logs.is_empty()
    }

    fn widen(&mut self, t: TimestampNs) {
        if self.is_empty() || t < self.min_ns {
            self.min_ns = t;
        }
        self.max_ns = self.max_ns.max(t);
    }

    pub fn add_spans(&mut self, spans: Vec<SpanRecord>) {
        for s in spans {
            self.widen(s.start_ns);
            self.bytes += span_bytes(&s);
            self.span_index
                .entry(s.trace_id)
                .or_default()
                .push(self.spans.len() as u32);
            self.spans.push(s);
        }
    }

    pub fn add_logs(&mut self, logs: Vec<LogRecord>) {
        for l in logs {
            self.widen(l.time_ns);
            self.bytes += log_bytes(&l);
            if let Some(t) = l.trace_id {
                self.log_index
                    .entry(t)
                    .or_default()
                    .push(self.logs.len() as u32);
            }
            self.logs.push(l);
        }
    }

    pub fn trace(&self, id: &TraceId) -> impl Iterator<Item = &SpanRecord> {
        self.span_index
            .get(id)
            .into_iter()
            .flatten()
            .map(|&i| &self.spans[i as usize])
    }

    pub fn trace_logs(&self, id: &TraceId) -> impl Iterator<Item = &LogRecord> {
        self.log_index
            .get(id)
            .into_iter()
            .flatten()
            .map(|&i| &self.logs[i as usize])
    }
}
