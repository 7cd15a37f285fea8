//! The MQTT sink against a real Mosquitto: what it publishes (topics,
//! payloads, gzip), reconnection when the broker starts late, and the queue
//! bound while the broker is down.

#![cfg(feature = "mqtt")]

mod brokers;

use std::path::Path;
use std::time::Duration;

use brokers::{
    free_port, gauge_of, gauge_request, gunzip_if_gzipped, have, mosquitto, Scratch, Subscriber,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sonde_sdk::export::{MqttBroker, MqttProtocol, MqttSink, MqttSinkConfig, Signal, Sink};

fn sink_config(port: u16, protocol: MqttProtocol) -> MqttSinkConfig {
    MqttSinkConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..MqttSinkConfig::new(MqttBroker {
            protocol,
            ..MqttBroker::new("127.0.0.1", port)
        })
    }
}

#[test]
fn mqtt_sink_publishes_each_batch_on_its_signals_topic() {
    if !have(&[Path::new(brokers::MOSQUITTO)]) {
        return;
    }
    let dir = Scratch::new("mqtt-publish");
    let port = free_port();
    let _broker = mosquitto(port, &dir.0);
    let mut sub = Subscriber::connect(port, "test-sub", false);
    sub.subscribe("otlp/#");

    for (protocol, value) in [(MqttProtocol::V5, 5.0), (MqttProtocol::V311, 3.0)] {
        let sink = MqttSink::new(sink_config(port, protocol));
        sink.send(Signal::Metrics, gauge_request("small", value));
        // Over 1 KiB: gzipped whole.
        sink.send(
            Signal::Logs,
            gauge_request(&"long".repeat(500), value + 0.5),
        );
        assert!(sink.flush(Duration::from_secs(10)), "{:?}", sink.stats());
        let st = sink.stats();
        assert_eq!(
            (st.sent_batches, st.dropped_batches),
            (2, 0),
            "{protocol:?}"
        );

        let got = sub.receive(2, Duration::from_secs(10));
        assert_eq!(got.len(), 2, "{protocol:?}");
        assert_eq!(got[0].0, "otlp/metrics");
        assert_ne!(&got[0].1[..2], &[0x1f, 0x8b], "small payloads stay plain");
        assert_eq!(gauge_of(&got[0].1), ("small".to_string(), value));
        assert_eq!(got[1].0, "otlp/logs");
        assert_eq!(&got[1].1[..2], &[0x1f, 0x8b], "large payloads are gzipped");
        let (name, v) = gauge_of(&gunzip_if_gzipped(&got[1].1));
        assert_eq!((name.len(), v), (2000, value + 0.5));
    }

    // The same through `init`, configured by URL alone.
    let sdk = sonde_sdk::init(sonde_sdk::Config {
        service_name: "checkout".into(),
        endpoint: format!("mqtt://127.0.0.1:{port}?protocol=3.1.1&topic_prefix=site/7"),
        api: None,
        ..sonde_sdk::Config::default()
    });
    sub.subscribe("site/7/traces");
    sdk.tracer("tests").start("pay").end();
    assert!(sdk.shutdown(Duration::from_secs(10)));
    let got = sub.receive(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "site/7/traces");
    let req = ExportTraceServiceRequest::decode(gunzip_if_gzipped(&got[0].1).as_slice())
        .expect("an OTLP trace request");
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans[0].name, "pay");
}

/// Starts Mosquitto once to register a persistent subscription to
/// `otlp/#` for `id`, then stops it: restarted on the same port and
/// folder, the broker keeps for `id` whatever is published.
fn register_subscriber(port: u16, dir: &Path, id: &str) {
    let broker = mosquitto(port, dir);
    let mut sub = Subscriber::connect(port, id, true);
    sub.subscribe("otlp/#");
    sub.disconnect();
    broker.stop();
}

#[test]
fn mqtt_sink_sends_what_it_queued_once_the_broker_starts() {
    if !have(&[Path::new(brokers::MOSQUITTO)]) {
        return;
    }
    let dir = Scratch::new("mqtt-late");
    let port = free_port();
    register_subscriber(port, &dir.0, "late-sub");

    let sink = MqttSink::new(sink_config(port, MqttProtocol::V5));
    brokers::send_while_down(sink.as_ref());

    let _broker = mosquitto(port, &dir.0);
    assert!(sink.flush(Duration::from_secs(20)), "{:?}", sink.stats());
    assert_eq!(sink.stats().sent_batches, 2);

    let mut sub = Subscriber::connect(port, "late-sub", true);
    let got = sub.receive(2, Duration::from_secs(10));
    let values: Vec<f64> = got.iter().map(|(_, p)| gauge_of(p).1).collect();
    assert_eq!(values, [1.0, 2.0]);
}

#[test]
fn mqtt_sink_drops_the_oldest_batches_while_the_broker_is_down() {
    if !have(&[Path::new(brokers::MOSQUITTO)]) {
        return;
    }
    let dir = Scratch::new("mqtt-bound");
    let port = free_port();
    register_subscriber(port, &dir.0, "bound-sub");

    let sink = MqttSink::new(MqttSinkConfig {
        max_queued_batches: 3,
        ..sink_config(port, MqttProtocol::V311)
    });
    for i in 0..8 {
        sink.send(Signal::Metrics, gauge_request("bounded", f64::from(i)));
    }
    let st = sink.stats();
    assert_eq!((st.dropped_batches, st.queued_batches), (5, 3), "{st:?}");

    let _broker = mosquitto(port, &dir.0);
    assert!(sink.flush(Duration::from_secs(20)), "{:?}", sink.stats());
    let st = sink.stats();
    assert_eq!((st.sent_batches, st.dropped_batches), (3, 5), "{st:?}");

    let mut sub = Subscriber::connect(port, "bound-sub", true);
    let got = sub.receive(3, Duration::from_secs(10));
    let values: Vec<f64> = got.iter().map(|(_, p)| gauge_of(p).1).collect();
    assert_eq!(values, [5.0, 6.0, 7.0], "the newest three");
}
