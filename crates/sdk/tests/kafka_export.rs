//! The Kafka sink against a real Kafka-compatible broker (tansu): the
//! OpenTelemetry Collector's topics and protobuf payloads, reconnection
//! when the broker starts late, and the queue bound while it is down.

#![cfg(feature = "kafka")]

mod brokers;

use std::time::{Duration, Instant};

use brokers::{free_port, gauge_of, gauge_request, have, tansu, tansu_bin};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use sonde_sdk::export::{KafkaSink, KafkaSinkConfig, Signal, Sink};
use sonde_sdk::kafka::rdkafka::config::ClientConfig;
use sonde_sdk::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use sonde_sdk::kafka::rdkafka::message::{Headers, Message};
use sonde_sdk::kafka::rdkafka::{Offset, TopicPartitionList};

const TOPICS: [&str; 3] = ["otlp_metrics", "otlp_spans", "otlp_logs"];

/// A consumed message: payload and headers.
struct Consumed {
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
}

/// Reads `topic` from the start until `n` messages came or `timeout`
/// passed.
fn consume(port: u16, topic: &str, n: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", "sonde-sdk-tests")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_string(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

fn sink_config(port: u16) -> KafkaSinkConfig {
    KafkaSinkConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..KafkaSinkConfig::new(format!("127.0.0.1:{port}"))
    }
}

#[test]
fn kafka_sink_writes_the_collectors_topics_and_payloads() {
    if !have(&[&tansu_bin()]) {
        return;
    }
    let port = free_port();
    let _broker = tansu(port, &TOPICS);

    let sink = KafkaSink::new(KafkaSinkConfig {
        headers: vec![("service.name".into(), "checkout".into())],
        ..sink_config(port)
    });
    sink.send(Signal::Metrics, gauge_request("cpu", 0.25));
    sink.send(Signal::Metrics, gauge_request("cpu", 0.5));
    assert!(sink.flush(Duration::from_secs(30)), "{:?}", sink.stats());
    let st = sink.stats();
    assert_eq!((st.sent_batches, st.dropped_batches), (2, 0), "{st:?}");
    let got = consume(port, "otlp_metrics", 2, Duration::from_secs(20));
    let values: Vec<(String, f64)> = got.iter().map(|m| gauge_of(&m.payload)).collect();
    assert_eq!(values, [("cpu".into(), 0.25), ("cpu".into(), 0.5)]);
    assert_eq!(got[0].headers, [("service.name".into(), "checkout".into())]);

    // Spans and logs through `init`, configured by URL alone.
    let sdk = sonde_sdk::init(sonde_sdk::Config {
        service_name: "cart".into(),
        endpoint: format!("kafka://127.0.0.1:{port}?compression=gzip&linger_ms=5"),
        api: None,
        ..sonde_sdk::Config::default()
    });
    sdk.tracer("tests").start("add-item").end();
    sdk.logger("tests").event("cart.updated", []);
    assert!(sdk.shutdown(Duration::from_secs(30)));

    let spans = consume(port, "otlp_spans", 1, Duration::from_secs(20));
    assert_eq!(spans.len(), 1);
    let req = ExportTraceServiceRequest::decode(spans[0].payload.as_slice()).expect("spans");
    assert_eq!(
        req.resource_spans[0].scope_spans[0].spans[0].name,
        "add-item"
    );
    assert!(spans[0]
        .headers
        .contains(&("service.name".into(), "cart".into())));

    let logs = consume(port, "otlp_logs", 1, Duration::from_secs(20));
    assert_eq!(logs.len(), 1);
    let req = ExportLogsServiceRequest::decode(logs[0].payload.as_slice()).expect("logs");
    let record = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.event_name, "cart.updated");
}

#[test]
fn kafka_sink_sends_what_it_queued_once_the_broker_starts() {
    if !have(&[&tansu_bin()]) {
        return;
    }
    let port = free_port();
    let sink = KafkaSink::new(sink_config(port));
    brokers::send_while_down(sink.as_ref());

    let _broker = tansu(port, &TOPICS);
    assert!(sink.flush(Duration::from_secs(60)), "{:?}", sink.stats());
    assert_eq!(sink.stats().sent_batches, 2);
    let got = consume(port, "otlp_metrics", 2, Duration::from_secs(20));
    let values: Vec<f64> = got.iter().map(|m| gauge_of(&m.payload).1).collect();
    assert_eq!(values, [1.0, 2.0]);
}

#[test]
fn kafka_sink_drops_the_oldest_batches_while_the_broker_is_down() {
    if !have(&[&tansu_bin()]) {
        return;
    }
    let port = free_port();
    let sink = KafkaSink::new(KafkaSinkConfig {
        max_queued_batches: 3,
        ..sink_config(port)
    });
    for i in 0..8 {
        sink.send(Signal::Metrics, gauge_request("bounded", f64::from(i)));
    }
    let st = sink.stats();
    assert_eq!((st.dropped_batches, st.queued_batches), (5, 3), "{st:?}");

    let _broker = tansu(port, &TOPICS);
    assert!(sink.flush(Duration::from_secs(60)), "{:?}", sink.stats());
    let st = sink.stats();
    assert_eq!((st.sent_batches, st.dropped_batches), (3, 5), "{st:?}");
    let got = consume(port, "otlp_metrics", 3, Duration::from_secs(20));
    let values: Vec<f64> = got.iter().map(|m| gauge_of(&m.payload).1).collect();
    assert_eq!(values, [5.0, 6.0, 7.0], "the newest three");
}
