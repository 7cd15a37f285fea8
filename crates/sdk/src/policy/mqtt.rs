//! Collection policies over MQTT (feature `mqtt`), for clients that speak
//! only MQTT.
//!
//! The server keeps one retained message per scope: `{prefix}/all`,
//! `{prefix}/service/{service.name}` and `{prefix}/host/{host.name}`
//! (prefix `sonde/policies`; `/`, `+` and `#` in a name become `_`). Each
//! holds the JSON of the watch stream's `policy` event; an empty message
//! clears its scope. [`MqttPolicyWatcher`] subscribes to this client's three
//! topics, overlays host over service over all, field by field (a field a
//! narrower scope leaves unset does not override), and applies the result
//! through the same callback as the SSE watcher as soon as it changes.
//!
//! It keeps the last policy while disconnected and reconnects after an
//! exponential backoff with jitter. After each (re)connection it applies
//! once the retained messages of all three scopes came, or [`SETTLE`] after
//! subscribing, not message by message; and since sessions are clean, a
//! scope cleared while this client was away has no message to say so: one
//! whose retained message did not come again by then is taken as cleared.
//! Status reports are not sent over MQTT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{call_on_change, ClientIdentity, EffectivePolicy, OnChange};
use crate::mqtt::{connect, runtime, topic_prefix, Event, MqttBroker};
use crate::url::Url;
use crate::Result;

/// How long after subscribing the retained messages are waited for before
/// a scope that sent none is taken as cleared.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Where the policies are and how to follow them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttPolicyConfig {
    pub broker: MqttBroker,
    /// `sonde/policies` by default.
    pub topic_prefix: String,
    /// First reconnect delay (1 s), doubled after each failure...
    pub initial_backoff: Duration,
    /// ... up to this (30 s).
    pub max_backoff: Duration,
}

impl MqttPolicyConfig {
    pub fn new(broker: MqttBroker) -> MqttPolicyConfig {
        MqttPolicyConfig {
            broker,
            topic_prefix: "sonde/policies".to_string(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// `mqtt://[user:password@]host[:port]` with optional `topic_prefix`,
    /// `protocol` (5 or 3.1.1) and `client_id` parameters.
    pub(crate) fn from_url(mut u: Url) -> Result<MqttPolicyConfig> {
        let mut c = MqttPolicyConfig::new(MqttBroker::from_url(&mut u)?);
        if let Some(p) = u.take("topic_prefix") {
            c.topic_prefix = topic_prefix(&u, &p)?;
        }
        u.finish("topic_prefix, protocol, client_id")?;
        Ok(c)
    }

    /// The topics of a client's scopes, widest first: all, service, host.
    pub fn topics(&self, service: &str, host: &str) -> [String; 3] {
        let p = &self.topic_prefix;
        [
            format!("{p}/all"),
            format!("{p}/service/{}", topic_level(service)),
            format!("{p}/host/{}", topic_level(host)),
        ]
    }
}

/// A name as one topic level: `/` would split it, `+` and `#` are
/// wildcards.
pub fn topic_level(name: &str) -> String {
    name.replace(['/', '+', '#'], "_")
}

pub use sonde_policy::overlay;

#[derive(Default)]
struct State {
    applied: Option<EffectivePolicy>,
    connected: bool,
}

struct Shared {
    state: Mutex<State>,
    stop: Notify,
    stopped: AtomicBool,
}

/// Follows a client's policies over MQTT until stopped or dropped.
pub struct MqttPolicyWatcher {
    shared: Arc<Shared>,
    topics: [String; 3],
    thread: Option<JoinHandle<()>>,
}

impl MqttPolicyWatcher {
    /// Starts following the scopes of `identity` (its service and host).
    pub fn start(
        config: MqttPolicyConfig,
        identity: &ClientIdentity,
        on_change: OnChange,
    ) -> MqttPolicyWatcher {
        let topics = config.topics(&identity.service, &identity.host);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        let (s, t) = (Arc::clone(&shared), topics.clone());
        let thread = std::thread::Builder::new()
            .name("sonde-policy-mqtt".into())
            .spawn(move || {
                if let Ok(rt) = runtime() {
                    rt.block_on(watch(&s, &config, &t, &on_change));
                }
            })
            .ok();
        MqttPolicyWatcher {
            shared,
            topics,
            thread,
        }
    }

    /// The topics followed: all, service, host.
    pub fn topics(&self) -> &[String; 3] {
        &self.topics
    }

    /// The policy last applied, kept while disconnected.
    pub fn current(&self) -> Option<EffectivePolicy> {
        self.shared.state.lock().applied.clone()
    }

    /// Whether the broker connection is up now.
    pub fn connected(&self) -> bool {
        self.shared.state.lock().connected
    }

    pub fn stop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MqttPolicyWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for MqttPolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttPolicyWatcher")
            .field("topics", &self.topics)
            .field("current", &self.current())
            .field("connected", &self.connected())
            .finish()
    }
}

async fn watch(s: &Shared, cfg: &MqttPolicyConfig, topics: &[String; 3], on_change: &OnChange) {
    let (client, mut events) = connect(&cfg.broker, 16, (cfg.initial_backoff, cfg.max_backoff));
    let mut scopes: [Option<EffectivePolicy>; 3] = Default::default();
    // Which scopes heard from the broker since the last subscription.
    let mut fresh = [true; 3];
    // From a (re)connection until every scope was heard from or SETTLE
    // passed: the retained messages arrive one by one, and applying each
    // would apply half-merged policies on the way.
    let mut syncing = false;
    let mut awaited_subacks = 0usize;
    let mut settle: Option<tokio::time::Instant> = None;
    while !s.stopped.load(Ordering::SeqCst) {
        let settled = async move {
            match settle {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            () = s.stop.notified() => break,
            () = settled => {
                settle = None;
                syncing = false;
                for (scope, fresh) in scopes.iter_mut().zip(fresh) {
                    if !fresh {
                        *scope = None;
                    }
                }
                update(s, &scopes, on_change);
                continue;
            }
            event = events.recv() => event,
        };
        match event {
            None => break,
            Some(Event::Connected) => {
                s.state.lock().connected = true;
                fresh = [false; 3];
                syncing = true;
                settle = None;
                awaited_subacks = topics
                    .iter()
                    .filter(|t| client.subscribe(t).is_ok())
                    .count();
            }
            Some(Event::Subscribed) => {
                awaited_subacks = awaited_subacks.saturating_sub(1);
                if awaited_subacks == 0 && syncing {
                    settle = Some(tokio::time::Instant::now() + SETTLE);
                }
            }
            Some(Event::Message { topic, payload }) => {
                let Some(i) = topics.iter().position(|t| *t == topic) else {
                    continue;
                };
                scopes[i] = if payload.is_empty() {
                    None
                } else {
                    match EffectivePolicy::parse(&String::from_utf8_lossy(&payload)) {
                        Some(p) => Some(p),
                        // Not a policy: the scope keeps what it had.
                        None => continue,
                    }
                };
                fresh[i] = true;
                if syncing && fresh.contains(&false) {
                    continue;
                }
                syncing = false;
                settle = None;
                update(s, &scopes, on_change);
            }
            Some(Event::Down(_)) => {
                s.state.lock().connected = false;
                syncing = false;
                settle = None;
            }
            Some(Event::Published(_) | Event::Acked { .. }) => {}
        }
    }
    client.disconnect();
}

/// Applies the merged scopes if they differ from what was applied.
fn update(s: &Shared, scopes: &[Option<EffectivePolicy>; 3], on_change: &OnChange) {
    let applied = s.state.lock().applied.clone();
    if applied.is_none() && scopes.iter().all(Option::is_none) {
        // Never had a policy: the configured defaults are in force.
        return;
    }
    let merged = overlay(scopes);
    if applied.as_ref() == Some(&merged) {
        return;
    }
    if call_on_change(on_change, &merged) {
        s.state.lock().applied = Some(merged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrower_scopes_override_field_by_field() {
        let all = EffectivePolicy::parse(
            r#"{"version":3,"trace_sampling_ratio":0.5,"metric_interval_ms":10000,"min_log_severity":9,"collectors":null}"#,
        );
        let service = EffectivePolicy::parse(r#"{"version":3,"trace_sampling_ratio":0.1}"#);
        let host = EffectivePolicy::parse(r#"{"version":4,"collectors":["cpu"]}"#);
        let p = overlay(&[all.clone(), service, host]);
        assert_eq!(p.version, 4);
        assert_eq!(p.trace_sampling_ratio, Some(0.1));
        assert_eq!(p.metric_interval_ms, Some(10_000));
        assert_eq!(p.min_log_severity, Some(9));
        assert_eq!(p.collectors, Some(vec!["cpu".to_string()]));
        assert_eq!(overlay(&[all.clone(), None, None]), all.unwrap());
        assert_eq!(overlay(&[None, None, None]), EffectivePolicy::default());
    }

    #[test]
    fn topics_escape_names() {
        let c = MqttPolicyConfig::new(MqttBroker::new("h", 1883));
        assert_eq!(
            c.topics("shop/checkout", "node+1#"),
            [
                "sonde/policies/all",
                "sonde/policies/service/shop_checkout",
                "sonde/policies/host/node_1_"
            ]
        );
        let c = MqttPolicyConfig::from_url(
            Url::parse("mqtt://h:1884?topic_prefix=fleet/policies/&protocol=3.1.1").unwrap(),
        )
        .unwrap();
        assert_eq!(c.topics("s", "h")[0], "fleet/policies/all");
        assert!(MqttPolicyConfig::from_url(Url::parse("mqtt://h?qos=1").unwrap()).is_err());
    }
}
