//! The agent over MQTT against a real Mosquitto: host metrics published on
//! `otlp/metrics`, and the collectors narrowed by a retained policy on
//! `sonde/policies/all`.

#![cfg(feature = "mqtt")]

// The SDK's broker helpers: one copy of how to run Mosquitto in a test.
#[path = "../../sdk/tests/brokers/mod.rs"]
mod brokers;

use std::path::Path;
use std::time::{Duration, Instant};

use brokers::{
    free_port, gunzip_if_gzipped, have, mosquitto, publish_retained, Scratch, Subscriber,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

/// The metric names of one published batch.
fn names(payload: &[u8]) -> Vec<String> {
    let req = ExportMetricsServiceRequest::decode(gunzip_if_gzipped(payload).as_slice())
        .expect("an OTLP metrics request");
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.clone())
        .collect()
}

#[test]
fn the_agent_exports_over_mqtt_and_follows_policies_from_mqtt() {
    if !have(&[
        Path::new(brokers::MOSQUITTO),
        Path::new(brokers::MOSQUITTO_PUB),
    ]) {
        return;
    }
    let dir = Scratch::new("agent-mqtt");
    let port = free_port();
    let _broker = mosquitto(port, &dir.0);
    let mut sub = Subscriber::connect(port, "agent-test-sub", false);
    sub.subscribe("otlp/metrics");

    let handle = sonde_agent::spawn(sonde_agent::Config {
        endpoint: format!("mqtt://127.0.0.1:{port}"),
        api: Some(format!("mqtt://127.0.0.1:{port}?protocol=3.1.1")),
        interval: Duration::from_millis(200),
        ..sonde_agent::Config::default()
    })
    .expect("the agent starts");

    let first = sub.receive(1, Duration::from_secs(10));
    assert_eq!(first.len(), 1, "no batch on otlp/metrics");
    let all = names(&first[0].1);
    assert!(all.iter().any(|n| n == "system.cpu.time"), "{all:?}");
    assert!(
        all.iter().any(|n| n.starts_with("system.memory.")),
        "{all:?}"
    );

    publish_retained(
        port,
        "sonde/policies/all",
        Some(
            r#"{"trace_sampling_ratio":null,"metric_interval_ms":null,"min_log_severity":null,"collectors":["memory"],"version":2}"#,
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut narrowed = false;
    while !narrowed && Instant::now() < deadline {
        for (_, payload) in sub.receive(1, Duration::from_secs(2)) {
            let n = names(&payload);
            narrowed = !n.is_empty() && n.iter().all(|n| n.contains("memory"));
        }
    }
    assert!(narrowed, "the policy's collectors were not applied");
    handle.stop();
}
