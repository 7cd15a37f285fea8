//! Collection policies over MQTT against a real Mosquitto: retained
//! messages per scope published with `mosquitto_pub -r`, overlaid host over
//! service over all, followed as they change and clear, kept while the
//! broker is away, and applied to the SDK's providers through `init`.

#![cfg(feature = "mqtt")]

mod brokers;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use brokers::{free_port, have, mosquitto, publish_retained, wait_for, Scratch};
use parking_lot::Mutex;
use sonde_sdk::export::MqttBroker;
use sonde_sdk::policy::{ClientIdentity, EffectivePolicy, MqttPolicyConfig, MqttPolicyWatcher};

const ALL: &str = "sonde/policies/all";
/// The service `shop/checkout` as one topic level.
const SERVICE: &str = "sonde/policies/service/shop_checkout";
const HOST: &str = "sonde/policies/host/node-1";

fn identity() -> ClientIdentity {
    ClientIdentity {
        client_id: "checkout-1".into(),
        kind: "sdk".into(),
        service: "shop/checkout".into(),
        host: "node-1".into(),
        version: "test".into(),
    }
}

fn policy(json: &str) -> EffectivePolicy {
    EffectivePolicy::parse(json).expect("a policy")
}

fn bins() -> bool {
    have(&[
        Path::new(brokers::MOSQUITTO),
        Path::new(brokers::MOSQUITTO_PUB),
    ])
}

#[test]
fn mqtt_policies_overlay_the_scopes_and_follow_changes_and_clears() {
    if !bins() {
        return;
    }
    let dir = Scratch::new("mqtt-policies");
    let port = free_port();
    let broker = mosquitto(port, &dir.0);
    publish_retained(
        port,
        ALL,
        Some(
            r#"{"trace_sampling_ratio":0.5,"metric_interval_ms":5000,"min_log_severity":9,"collectors":null,"version":3}"#,
        ),
    );
    publish_retained(
        port,
        SERVICE,
        Some(
            r#"{"trace_sampling_ratio":0.25,"metric_interval_ms":null,"min_log_severity":null,"collectors":null,"version":3}"#,
        ),
    );
    publish_retained(
        port,
        HOST,
        Some(
            r#"{"trace_sampling_ratio":null,"metric_interval_ms":null,"min_log_severity":null,"collectors":["cpu"],"version":3}"#,
        ),
    );

    let applied: Arc<Mutex<Vec<EffectivePolicy>>> = Arc::default();
    let log = Arc::clone(&applied);
    let mut config = MqttPolicyConfig::new(MqttBroker::new("127.0.0.1", port));
    config.initial_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_millis(500);
    let watcher = MqttPolicyWatcher::start(
        config,
        &identity(),
        Box::new(move |p| log.lock().push(p.clone())),
    );
    assert_eq!(watcher.topics(), &[ALL, SERVICE, HOST]);
    let wait = |want: &EffectivePolicy| {
        let ok = wait_for(Duration::from_secs(10), || {
            watcher.current().as_ref() == Some(want)
        });
        assert!(ok, "wanted {want:?}, have {:?}", watcher.current());
    };

    // Host over service over all, field by field.
    wait(&policy(
        r#"{"version":3,"trace_sampling_ratio":0.25,"metric_interval_ms":5000,"min_log_severity":9,"collectors":["cpu"]}"#,
    ));
    assert!(watcher.connected());

    // A change in one scope applies at once.
    publish_retained(
        port,
        HOST,
        Some(
            r#"{"trace_sampling_ratio":0.1,"metric_interval_ms":null,"min_log_severity":null,"collectors":null,"version":4}"#,
        ),
    );
    wait(&policy(
        r#"{"version":4,"trace_sampling_ratio":0.1,"metric_interval_ms":5000,"min_log_severity":9}"#,
    ));

    // An empty retained message clears its scope: the service's ratio is
    // back.
    publish_retained(port, HOST, None);
    wait(&policy(
        r#"{"version":3,"trace_sampling_ratio":0.25,"metric_interval_ms":5000,"min_log_severity":9}"#,
    ));

    // The broker goes away: the last policy stays.
    let before = watcher.current();
    drop(broker);
    assert!(wait_for(Duration::from_secs(10), || !watcher.connected()));
    assert_eq!(watcher.current(), before);

    // A broker that lost its retained messages comes up: the watcher
    // reconnects, and the scopes that did not come again are taken as
    // cleared, which brings every configured default back.
    let fresh = Scratch::new("mqtt-policies-fresh");
    let broker = mosquitto(port, &fresh.0);
    wait(&EffectivePolicy::default());
    assert!(watcher.connected());

    publish_retained(
        port,
        ALL,
        Some(
            r#"{"trace_sampling_ratio":0.5,"metric_interval_ms":null,"min_log_severity":null,"collectors":null,"version":5}"#,
        ),
    );
    wait(&policy(r#"{"version":5,"trace_sampling_ratio":0.5}"#));
    publish_retained(port, ALL, None);
    wait(&EffectivePolicy::default());
    drop(broker);

    // Each distinct result was applied once, in order.
    let ratios: Vec<Option<f64>> = applied
        .lock()
        .iter()
        .map(|p| p.trace_sampling_ratio)
        .collect();
    assert_eq!(
        ratios,
        [Some(0.25), Some(0.1), Some(0.25), None, Some(0.5), None]
    );
}

#[test]
fn mqtt_policies_retune_the_sdk_through_init() {
    if !bins() {
        return;
    }
    let dir = Scratch::new("mqtt-policies-sdk");
    let port = free_port();
    let _broker = mosquitto(port, &dir.0);
    publish_retained(
        port,
        "fleet/all",
        Some(
            r#"{"trace_sampling_ratio":0.2,"metric_interval_ms":2500,"min_log_severity":13,"collectors":null,"version":7}"#,
        ),
    );
    let sdk = sonde_sdk::init(sonde_sdk::Config {
        service_name: "edge".into(),
        endpoint: format!("mqtt://127.0.0.1:{port}"),
        api: Some(format!(
            "mqtt://127.0.0.1:{port}?topic_prefix=fleet&protocol=3.1.1"
        )),
        ..sonde_sdk::Config::default()
    });
    assert!(wait_for(Duration::from_secs(10), || sdk
        .policy()
        .is_some_and(|p| p.version == 7)));
    assert_eq!(sdk.tracer_provider().sampling_ratio(), 0.2);
    assert_eq!(sdk.meter_provider().interval(), Duration::from_millis(2500));
    assert_eq!(sdk.logger_provider().min_severity(), 13);

    publish_retained(port, "fleet/all", None);
    assert!(wait_for(Duration::from_secs(10), || sdk
        .meter_provider()
        .interval()
        != Duration::from_millis(2500)));
    assert_eq!(sdk.tracer_provider().sampling_ratio(), 1.0, "the default");
    assert_eq!(sdk.logger_provider().min_severity(), 0);
    sdk.shutdown(Duration::from_millis(100));
}
