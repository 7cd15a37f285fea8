//! [`KafkaSink`]: OTLP to Kafka (feature `kafka`, librdkafka).
//!
//! Each batch is one message, as the OpenTelemetry Collector's Kafka
//! exporter writes them with `encoding: otlp_proto`: the serialized
//! `Export*ServiceRequest` on `otlp_metrics`, `otlp_spans` or `otlp_logs`
//! (configurable), no key, optional headers (`service.name`). librdkafka
//! batches (`linger.ms`, 100 ms) and compresses (`compression.type`, lz4 by
//! default) the messages it sends together.
//!
//! `send` only pushes into the bounded queue. The sink's thread hands
//! batches to librdkafka, at most `max_in_flight` not yet acknowledged, and
//! only while it believes a broker is reachable: at start, and after
//! librdkafka reports all brokers down, it asks for metadata until a
//! broker answers, waiting an exponential backoff with jitter between
//! tries. So while the brokers are down batches stay in the bounded queue,
//! whose oldest are dropped and counted; those already handed over are
//! delivered by librdkafka after it reconnects, or dropped and counted
//! after `delivery_timeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::export::{QueuedSink, Signal};
use crate::policy::next_backoff;
use crate::queue::{BatchQueue, Jitter, Take, DROP_FLUSH};
use crate::url::Url;
use crate::Result;

/// The client library, for its types (the integration tests consume with
/// it); not part of the SDK's API.
#[doc(hidden)]
pub use rdkafka;

/// The topic of each signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTopics {
    pub metrics: String,
    pub traces: String,
    pub logs: String,
}

impl Default for KafkaTopics {
    /// The OpenTelemetry Collector's: `otlp_metrics`, `otlp_spans`,
    /// `otlp_logs`.
    fn default() -> KafkaTopics {
        KafkaTopics::with_prefix("otlp")
    }
}

impl KafkaTopics {
    /// `{prefix}_metrics`, `{prefix}_spans`, `{prefix}_logs`.
    pub fn with_prefix(prefix: &str) -> KafkaTopics {
        KafkaTopics {
            metrics: format!("{prefix}_metrics"),
            traces: format!("{prefix}_spans"),
            logs: format!("{prefix}_logs"),
        }
    }

    pub fn get(&self, signal: Signal) -> &str {
        match signal {
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
        }
    }
}

/// How librdkafka compresses message batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
}

impl KafkaCompression {
    /// The `compression.type` value.
    pub fn name(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
        }
    }
}

/// Configuration of a [`KafkaSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: KafkaTopics,
    pub compression: KafkaCompression,
    /// How long librdkafka waits to fill a batch (`linger.ms`).
    pub linger: Duration,
    /// Headers on every message (`service.name`, ...).
    pub headers: Vec<(String, String)>,
    /// More librdkafka settings (`security.protocol`, `sasl.*`,
    /// `client.id`, ...); they override the ones the sink sets.
    pub properties: Vec<(String, String)>,
    /// Batches waiting to be handed to librdkafka; beyond it the oldest is
    /// dropped.
    pub max_queued_batches: usize,
    /// Batches handed to librdkafka and not yet acknowledged.
    pub max_in_flight: usize,
    /// A batch handed over and not delivered within this is dropped
    /// (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Wait before asking the brokers again after none answered; doubled
    /// at each further try. Also librdkafka's `reconnect.backoff.ms`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl KafkaSinkConfig {
    pub fn new(brokers: impl Into<String>) -> KafkaSinkConfig {
        KafkaSinkConfig {
            brokers: brokers.into(),
            topics: KafkaTopics::default(),
            compression: KafkaCompression::Lz4,
            linger: Duration::from_millis(100),
            headers: Vec::new(),
            properties: Vec::new(),
            max_queued_batches: 256,
            max_in_flight: 64,
            delivery_timeout: Duration::from_secs(300),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// See [`crate::export::Export::from_url`].
    pub(crate) fn from_url(mut u: Url) -> Result<KafkaSinkConfig> {
        let brokers = u
            .host_ports(9092)?
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = KafkaSinkConfig::new(brokers);
        if let Some(p) = u.take("topic_prefix") {
            c.topics = KafkaTopics::with_prefix(&p);
        }
        if let Some(z) = u.take("compression") {
            c.compression = match z.as_str() {
                "none" => KafkaCompression::None,
                "gzip" => KafkaCompression::Gzip,
                "snappy" => KafkaCompression::Snappy,
                "lz4" => KafkaCompression::Lz4,
                _ => {
                    return Err(u.bad(format!("compression={z:?}: give lz4, gzip, snappy or none")))
                }
            };
        }
        if let Some(ms) = u.take_parsed::<u64>("linger_ms", "milliseconds")? {
            c.linger = Duration::from_millis(ms);
        }
        u.finish("topic_prefix, compression, linger_ms")?;
        Ok(c)
    }

    fn client_config(&self) -> ClientConfig {
        let ms = |d: Duration| d.as_millis().max(1).to_string();
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("compression.type", self.compression.name())
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("message.timeout.ms", ms(self.delivery_timeout))
            .set("reconnect.backoff.ms", ms(self.initial_backoff))
            .set("reconnect.backoff.max.ms", ms(self.max_backoff))
            .set_log_level(RDKafkaLogLevel::Error);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// How long one metadata request may take when looking for a broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends OTLP export requests as Kafka messages from a background thread.
pub type KafkaSink = QueuedSink<KafkaSinkConfig>;

/// librdkafka's callbacks, on its own threads.
struct Context {
    queue: Arc<BatchQueue>,
    /// A broker answered since librdkafka last said all were down.
    up: Arc<AtomicBool>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.up.store(false, Ordering::SeqCst);
            self.queue.wake_worker();
        }
        self.queue.record_failure(None, format!("kafka: {reason}"));
    }

    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _message: &str) {
        // The errors that matter arrive through `error`; the SDK never
        // writes to the application's logs.
    }
}

impl ProducerContext for Context {
    /// The signal's index.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let signal = Signal::ALL[index.min(2)];
        if let Err((e, _)) = result {
            self.queue
                .record_failure(Some(signal), format!("kafka: {e}"));
        }
        self.queue.finish(signal, result.is_ok());
    }
}

impl QueuedSink<KafkaSinkConfig> {
    /// Starts the sink and its thread, which connects in the background.
    /// If librdkafka rejects the configuration or the thread cannot be
    /// started, every batch is dropped and `last_error` says why.
    pub fn new(cfg: KafkaSinkConfig) -> Arc<KafkaSink> {
        let queue = Arc::new(BatchQueue::new(cfg.max_queued_batches, None));
        let up = Arc::new(AtomicBool::new(false));
        let context = Context {
            queue: Arc::clone(&queue),
            up: Arc::clone(&up),
        };
        match cfg
            .client_config()
            .create_with_context::<_, ThreadedProducer<Context>>(context)
        {
            Ok(producer) => {
                let (q, c) = (Arc::clone(&queue), cfg.clone());
                let started = std::thread::Builder::new()
                    .name("sonde-sdk-kafka".into())
                    .spawn(move || run(&q, &c, producer, &up));
                if let Err(e) = started {
                    queue.fail(format!("cannot start the Kafka export thread: {e}"));
                }
            }
            Err(e) => queue.fail(format!("kafka: {e}")),
        }
        QueuedSink::with_queue(queue, cfg, DROP_FLUSH)
    }
}

fn run(
    queue: &BatchQueue,
    cfg: &KafkaSinkConfig,
    producer: ThreadedProducer<Context>,
    up: &AtomicBool,
) {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &cfg.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut backoff = cfg.initial_backoff;
    let mut jitter = Jitter::new();
    loop {
        if !up.load(Ordering::SeqCst) {
            if queue.stopped() {
                break;
            }
            match producer.client().fetch_metadata(None, PROBE_TIMEOUT) {
                Ok(_) => {
                    up.store(true, Ordering::SeqCst);
                    backoff = cfg.initial_backoff;
                }
                Err(e) => {
                    queue.record_failure(None, format!("kafka {}: {e}", cfg.brokers));
                    if !queue.sleep(jitter.jitter(backoff)) {
                        break;
                    }
                    backoff = next_backoff(backoff, cfg.max_backoff);
                    continue;
                }
            }
        }
        // Wakes now and then to notice the brokers went down.
        let (signal, body) = match queue.take(cfg.max_in_flight, Some(Duration::from_millis(500))) {
            Take::Batch(batch) => batch,
            Take::Idle => continue,
            Take::Stopped => break,
        };
        let record: BaseRecord<'_, (), Vec<u8>, usize> =
            BaseRecord::with_opaque_to(cfg.topics.get(signal), signal.index())
                .payload(&body)
                .headers(headers.clone());
        if let Err((e, _)) = producer.send(record) {
            queue.record_failure(Some(signal), format!("kafka: {e}"));
            queue.finish(signal, false);
        }
    }
    // The flush before stopping had its chance: what librdkafka still
    // holds is purged, and its delivery reports count it as dropped,
    // before the queue counts what it kept.
    drop(producer);
    queue.drain();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Sink;

    fn parse(url: &str) -> Result<KafkaSinkConfig> {
        KafkaSinkConfig::from_url(Url::parse(url)?)
    }

    #[test]
    fn urls() {
        let c = parse("kafka://k1,k2:9093").unwrap();
        assert_eq!(c.brokers, "k1:9092,k2:9093");
        assert_eq!(c.topics.get(Signal::Traces), "otlp_spans");
        assert_eq!(c.compression, KafkaCompression::Lz4);
        let c = parse("kafka://k?topic_prefix=edge&compression=gzip&linger_ms=5").unwrap();
        assert_eq!(c.topics.get(Signal::Metrics), "edge_metrics");
        assert_eq!(c.topics.get(Signal::Logs), "edge_logs");
        assert_eq!(c.compression, KafkaCompression::Gzip);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert!(parse("kafka://k?compression=zstd").is_err());
        assert!(parse("kafka://k?acks=0").is_err());
    }

    #[test]
    fn a_bad_setting_fails_without_panicking() {
        let mut cfg = KafkaSinkConfig::new("127.0.0.1:1");
        cfg.properties.push(("no.such.setting".into(), "1".into()));
        let sink = KafkaSink::new(cfg);
        sink.send(Signal::Metrics, vec![1]);
        let st = sink.stats();
        assert_eq!(st.dropped_batches, 1);
        assert!(st
            .last_error
            .unwrap_or_default()
            .contains("no.such.setting"));
        assert!(sink.flush(Duration::from_millis(10)), "nothing waits");
    }
}
