//! Getting encoded telemetry out of the process.
//!
//! Producers (the metric reader, the span and log processors) encode OTLP
//! export requests and hand them to a [`Sink`]. A sink never blocks its
//! caller: it queues, and when the queue is full it drops the oldest batch
//! and counts it. Transports other than OTLP/HTTP (Kafka, MQTT) are further
//! sinks.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use prost::Message;

pub use crate::http::{HttpSink, HttpSinkConfig};

/// Which OTLP signal a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Metrics,
    Traces,
    Logs,
}

impl Signal {
    /// The OTLP/HTTP path of this signal.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
        }
    }

    /// The signal's name as used in the SDK's own metrics: `metrics`,
    /// `traces`, `logs`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
            Signal::Logs => "logs",
        }
    }

    pub const ALL: [Signal; 3] = [Signal::Metrics, Signal::Traces, Signal::Logs];

    pub(crate) fn index(self) -> usize {
        match self {
            Signal::Metrics => 0,
            Signal::Traces => 1,
            Signal::Logs => 2,
        }
    }
}

/// Counters of a sink, reported as the SDK's own health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub sent_batches: u64,
    pub dropped_batches: u64,
    pub failed_attempts: u64,
    pub queued_batches: u64,
    pub last_error: Option<String>,
}

/// Where encoded batches go. `send` must return at once.
pub trait Sink: Send + Sync {
    /// Queues one encoded (uncompressed) OTLP export request.
    fn send(&self, signal: Signal, body: Vec<u8>);
    fn stats(&self) -> SinkStats;
    /// Sends what is queued, waiting at most `timeout`; for shutdown.
    fn flush(&self, timeout: std::time::Duration) -> bool;
    /// The counters of one signal's batches, if the sink keeps them apart.
    fn signal_stats(&self, signal: Signal) -> Option<SinkStats> {
        let _ = signal;
        None
    }
}

/// A sink that keeps every batch in memory, decoded: for tests.
#[derive(Default)]
pub struct MemorySink {
    batches: Mutex<Vec<(Signal, Vec<u8>)>>,
}

impl MemorySink {
    pub fn new() -> Arc<MemorySink> {
        Arc::new(MemorySink::default())
    }

    /// Every batch received, encoded, in order.
    pub fn batches(&self) -> Vec<(Signal, Vec<u8>)> {
        self.batches.lock().clone()
    }

    /// The metric export requests received, in order.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.decoded(Signal::Metrics)
    }

    /// The trace export requests received, in order.
    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.decoded(Signal::Traces)
    }

    /// The log export requests received, in order.
    pub fn logs(&self) -> Vec<ExportLogsServiceRequest> {
        self.decoded(Signal::Logs)
    }

    pub fn clear(&self) {
        self.batches.lock().clear();
    }

    fn decoded<M: Message + Default>(&self, signal: Signal) -> Vec<M> {
        let batches = self.batches.lock();
        batches
            .iter()
            .filter(|(s, _)| *s == signal)
            .filter_map(|(_, body)| M::decode(body.as_slice()).ok())
            .collect()
    }
}

impl Sink for MemorySink {
    fn send(&self, signal: Signal, body: Vec<u8>) {
        self.batches.lock().push((signal, body));
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            sent_batches: self.batches.lock().len() as u64,
            ..SinkStats::default()
        }
    }

    fn flush(&self, _timeout: std::time::Duration) -> bool {
        true
    }

    fn signal_stats(&self, signal: Signal) -> Option<SinkStats> {
        let sent = self
            .batches
            .lock()
            .iter()
            .filter(|(s, _)| *s == signal)
            .count();
        Some(SinkStats {
            sent_batches: sent as u64,
            ..SinkStats::default()
        })
    }
}

/// A sink that discards everything (counting it as sent).
#[derive(Default)]
pub struct NoopSink {
    sent: std::sync::atomic::AtomicU64,
}

impl Sink for NoopSink {
    fn send(&self, _signal: Signal, _body: Vec<u8>) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            sent_batches: self.sent.load(std::sync::atomic::Ordering::Relaxed),
            ..SinkStats::default()
        }
    }

    fn flush(&self, _timeout: std::time::Duration) -> bool {
        true
    }
}
