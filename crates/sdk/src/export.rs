//! Getting encoded telemetry out of the process.
//!
//! Producers (the metric reader, the span and log processors) encode OTLP
//! export requests and hand them to a [`Sink`]. A sink never blocks its
//! caller: it queues, and when the queue is full it drops the oldest batch
//! and counts it. [`Export`] picks the transport: OTLP/HTTP
//! ([`HttpSink`]), Kafka (`KafkaSink`, feature `kafka`) or MQTT
//! (`MqttSink`, feature `mqtt`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use prost::Message;

pub use crate::http::{HttpSink, HttpSinkConfig};
#[cfg(feature = "kafka")]
pub use crate::kafka::{KafkaCompression, KafkaSink, KafkaSinkConfig, KafkaTopics};
#[cfg(feature = "mqtt")]
pub use crate::mqtt::{MqttBroker, MqttProtocol, MqttQos, MqttSink, MqttSinkConfig};
use crate::queue::BatchQueue;
use crate::url::Url;
use crate::Result;

/// Where telemetry goes, and how.
#[derive(Debug, Clone)]
pub enum Export {
    /// OTLP/HTTP, protobuf bodies.
    Http(HttpSinkConfig),
    /// One Kafka message per batch, as the OpenTelemetry Collector's Kafka
    /// exporter writes them (`encoding: otlp_proto`).
    #[cfg(feature = "kafka")]
    Kafka(KafkaSinkConfig),
    /// One MQTT message per batch on `{prefix}/metrics`, `{prefix}/traces`,
    /// `{prefix}/logs`.
    #[cfg(feature = "mqtt")]
    Mqtt(MqttSinkConfig),
}

impl Default for Export {
    fn default() -> Export {
        Export::Http(HttpSinkConfig::default())
    }
}

impl Export {
    /// The exporter a URL names:
    ///
    /// - `http://host:4318` or `https://...`: OTLP/HTTP, the signal's path
    ///   (`/v1/metrics`, ...) appended;
    /// - `kafka://host:port[,host:port...]` (port 9092 by default), with
    ///   optional `?topic_prefix=otlp` (topics `{prefix}_metrics`,
    ///   `{prefix}_spans`, `{prefix}_logs`), `compression=lz4|gzip|snappy|none`
    ///   and `linger_ms=100`;
    /// - `mqtt://[user:password@]host[:port]` (port 1883 by default), with
    ///   optional `?topic_prefix=otlp`, `protocol=5|3.1.1`, `qos=1|0`,
    ///   `client_id=...` and `gzip_min_bytes=1024|never`.
    pub fn from_url(url: &str) -> Result<Export> {
        let u = Url::parse(url)?;
        match u.scheme.as_str() {
            "http" | "https" => Ok(Export::Http(HttpSinkConfig {
                endpoint: url.trim().trim_end_matches('/').to_string(),
                ..HttpSinkConfig::default()
            })),
            "kafka" => kafka_export(u, url),
            "mqtt" | "tcp" => mqtt_export(u, url),
            other => Err(u.bad(format!(
                "unknown scheme {other:?}; use http://, https://, kafka:// or mqtt://"
            ))),
        }
    }

    /// Fills in what depends on who exports, where not set: the MQTT client
    /// id (`{client_id}-otlp`), Kafka's `client.id` and a `service.name`
    /// message header.
    pub fn for_client(self, client_id: &str, service_name: &str) -> Export {
        let _ = (client_id, service_name);
        match self {
            Export::Http(c) => Export::Http(c),
            #[cfg(feature = "kafka")]
            Export::Kafka(mut c) => {
                if !c.properties.iter().any(|(k, _)| k == "client.id") {
                    c.properties
                        .push(("client.id".to_string(), client_id.to_string()));
                }
                if !c.headers.iter().any(|(k, _)| k == "service.name") {
                    c.headers
                        .push(("service.name".to_string(), service_name.to_string()));
                }
                Export::Kafka(c)
            }
            #[cfg(feature = "mqtt")]
            Export::Mqtt(mut c) => {
                if c.broker.client_id.is_empty() {
                    c.broker.client_id = format!("{client_id}-otlp");
                }
                Export::Mqtt(c)
            }
        }
    }

    /// Starts the sink (and its thread).
    pub fn start(self) -> Arc<dyn Sink> {
        match self {
            Export::Http(c) => HttpSink::new(c),
            #[cfg(feature = "kafka")]
            Export::Kafka(c) => KafkaSink::new(c),
            #[cfg(feature = "mqtt")]
            Export::Mqtt(c) => MqttSink::new(c),
        }
    }

    /// Where the batches go, for a log line.
    pub fn describe(&self) -> String {
        match self {
            Export::Http(c) => c.endpoint.clone(),
            #[cfg(feature = "kafka")]
            Export::Kafka(c) => format!("kafka {} ({})", c.brokers, c.topics.metrics),
            #[cfg(feature = "mqtt")]
            Export::Mqtt(c) => format!(
                "mqtt {}:{} ({}/...)",
                c.broker.host, c.broker.port, c.topic_prefix
            ),
        }
    }
}

#[cfg(feature = "kafka")]
fn kafka_export(u: Url, _url: &str) -> Result<Export> {
    KafkaSinkConfig::from_url(u).map(Export::Kafka)
}

#[cfg(not(feature = "kafka"))]
fn kafka_export(_u: Url, url: &str) -> Result<Export> {
    Err(not_built(url, "kafka"))
}

#[cfg(feature = "mqtt")]
fn mqtt_export(u: Url, _url: &str) -> Result<Export> {
    MqttSinkConfig::from_url(u).map(Export::Mqtt)
}

#[cfg(not(feature = "mqtt"))]
fn mqtt_export(_u: Url, url: &str) -> Result<Export> {
    Err(not_built(url, "mqtt"))
}

#[cfg(not(all(feature = "kafka", feature = "mqtt")))]
pub(crate) fn not_built(url: &str, feature: &'static str) -> crate::Error {
    crate::Error::NotBuilt {
        url: url.trim().to_string(),
        feature,
    }
}

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
    /// Batches the receiver (server, broker) acknowledged.
    pub sent_batches: u64,
    /// Batches given up: the queue was full (the oldest goes), retries ran
    /// out, or the receiver refused them.
    pub dropped_batches: u64,
    /// Failed tries, including broken broker connections.
    pub failed_attempts: u64,
    /// Batches waiting in the queue (not those being sent).
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

/// A sink that queues batches for its transport's own thread, which takes
/// them in order: [`HttpSink`], `KafkaSink` and `MqttSink` are this, each
/// with its configuration. `send` never blocks: a full queue drops its
/// oldest batch and counts it.
pub struct QueuedSink<C> {
    pub(crate) queue: Arc<BatchQueue>,
    cfg: C,
    /// How long dropping the sink waits for what is queued.
    drop_flush: std::time::Duration,
}

impl<C> QueuedSink<C> {
    pub(crate) fn with_queue(
        queue: Arc<BatchQueue>,
        cfg: C,
        drop_flush: std::time::Duration,
    ) -> Arc<QueuedSink<C>> {
        Arc::new(QueuedSink {
            queue,
            cfg,
            drop_flush,
        })
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &C {
        &self.cfg
    }
}

impl<C: Send + Sync> Sink for QueuedSink<C> {
    fn send(&self, signal: Signal, body: Vec<u8>) {
        self.queue.push(signal, body);
    }

    fn stats(&self) -> SinkStats {
        self.queue.stats(None)
    }

    fn signal_stats(&self, signal: Signal) -> Option<SinkStats> {
        Some(self.queue.stats(Some(signal)))
    }

    fn flush(&self, timeout: std::time::Duration) -> bool {
        self.queue.flush(timeout)
    }
}

impl<C> Drop for QueuedSink<C> {
    fn drop(&mut self) {
        // Best effort: queued batches get `drop_flush` to leave, then the
        // thread stops. It is not joined: a hung request or connection
        // must not hang the program's exit.
        self.queue.flush(self.drop_flush);
        self.queue.stop();
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

/// A sink that could not be set up (a bad URL, a transport this build
/// lacks): it drops every batch, counting it, and says why.
pub(crate) struct FailedSink {
    error: String,
    dropped: AtomicU64,
}

impl FailedSink {
    pub fn new(error: String) -> Arc<FailedSink> {
        Arc::new(FailedSink {
            error,
            dropped: AtomicU64::new(0),
        })
    }
}

impl Sink for FailedSink {
    fn send(&self, _signal: Signal, _body: Vec<u8>) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            dropped_batches: self.dropped.load(Ordering::Relaxed),
            last_error: Some(self.error.clone()),
            ..SinkStats::default()
        }
    }

    fn flush(&self, _timeout: std::time::Duration) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_transport() {
        match Export::from_url("http://h:4318/").unwrap() {
            Export::Http(c) => assert_eq!(c.endpoint, "http://h:4318"),
            #[allow(unreachable_patterns)]
            other => panic!("{other:?}"),
        }
        let e = Export::from_url("ftp://h").unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
        assert!(Export::from_url("h:4318").is_err());
        #[cfg(not(feature = "kafka"))]
        assert!(matches!(
            Export::from_url("kafka://h:9092"),
            Err(crate::Error::NotBuilt {
                feature: "kafka",
                ..
            })
        ));
    }

    #[test]
    fn a_failed_sink_counts_and_explains() {
        let sink = FailedSink::new("no kafka here".into());
        sink.send(Signal::Logs, vec![1]);
        let st = sink.stats();
        assert_eq!(st.dropped_batches, 1);
        assert_eq!(st.last_error.as_deref(), Some("no kafka here"));
    }
}
