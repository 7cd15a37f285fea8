//! Runtime collection policies (`docs/policies.md`): subscribe to the
//! server's effective policy for this client, apply each new version, and
//! report back what was applied and how the client is doing.
//!
//! [`PolicyWatcher::start`] runs two background threads. One holds
//! `GET /api/v1/policies/watch?...` open (Server-Sent Events) and calls
//! `on_change` for every `policy` event whose version differs from the one
//! last applied; when the stream breaks it keeps the last policy and
//! reconnects after 1 s, doubling up to 30 s, back to 1 s once connected.
//! The other POSTs `/api/v1/clients/status` right after each applied change
//! and every 10 s. Neither ever panics in the caller; a panicking callback
//! is caught and the policy counts as not applied.
//!
//! With the `mqtt` feature, [`mqtt::MqttPolicyWatcher`] follows the same
//! policies as retained MQTT messages instead. [`PolicySource`] names
//! either, and [`PolicySubscription`] runs either.

use std::io::{BufRead, BufReader};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value as Json};

/// Who this client is, as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIdentity {
    /// Unique per process, e.g. `checkout-7f3a`.
    pub client_id: String,
    /// `sdk` or `agent`.
    pub kind: String,
    pub service: String,
    pub host: String,
    /// The client's own version.
    pub version: String,
}

/// The merged policy for this client, and its settings: the protocol's
/// own types (`sonde-policy`), the same the server validates with.
pub use sonde_policy::{EffectivePolicy, Settings};

/// How the client is doing, reported with each status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    pub healthy: bool,
    pub exported_batches: u64,
    pub dropped_batches: u64,
    pub last_error: Option<String>,
}

/// Timing of a [`PolicyWatcher`]; the defaults are the protocol's.
#[derive(Debug, Clone)]
pub struct WatcherOptions {
    /// Status reports at least this often (10 s).
    pub status_interval: Duration,
    /// First reconnect delay (1 s), doubled after each failure...
    pub initial_backoff: Duration,
    /// ... up to this (30 s).
    pub max_backoff: Duration,
    /// A stream silent this long is dead (the server comments every 15 s).
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for WatcherOptions {
    fn default() -> WatcherOptions {
        WatcherOptions {
            status_interval: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            read_timeout: Duration::from_secs(45),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The delay after `current` when reconnecting fails again.
pub fn next_backoff(current: Duration, max: Duration) -> Duration {
    current.saturating_mul(2).min(max)
}

/// Applies a policy; called on the watcher's thread.
pub type OnChange = Box<dyn Fn(&EffectivePolicy) + Send + Sync>;
/// The client's health, for status reports.
pub type HealthFn = Box<dyn Fn() -> Health + Send + Sync>;

/// Calls `on_change`; false if it panicked (the policy is not applied).
fn call_on_change(on_change: &OnChange, policy: &EffectivePolicy) -> bool {
    catch_unwind(AssertUnwindSafe(|| on_change(policy))).is_ok()
}

/// Where a client's policies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Server-Sent Events from Sonde's API (`http://host:7070`), with
    /// status reports back.
    Api(String),
    /// Retained messages per scope on an MQTT broker.
    #[cfg(feature = "mqtt")]
    Mqtt(mqtt::MqttPolicyConfig),
}

impl PolicySource {
    /// `http(s)://host:port`: Sonde's API; `mqtt://host[:port]` (feature
    /// `mqtt`), with optional `?topic_prefix=sonde/policies`,
    /// `protocol=5|3.1.1` and `client_id=...`: a broker.
    pub fn from_url(url: &str) -> crate::Result<PolicySource> {
        let u = crate::url::Url::parse(url)?;
        match u.scheme.as_str() {
            "http" | "https" => Ok(PolicySource::Api(
                url.trim().trim_end_matches('/').to_string(),
            )),
            "mqtt" | "tcp" => mqtt_source(u, url),
            other => Err(u.bad(format!(
                "unknown scheme {other:?}; use http://, https:// or mqtt://"
            ))),
        }
    }
}

#[cfg(feature = "mqtt")]
fn mqtt_source(u: crate::url::Url, _url: &str) -> crate::Result<PolicySource> {
    mqtt::MqttPolicyConfig::from_url(u).map(PolicySource::Mqtt)
}

#[cfg(not(feature = "mqtt"))]
fn mqtt_source(_u: crate::url::Url, url: &str) -> crate::Result<PolicySource> {
    Err(crate::export::not_built(url, "mqtt"))
}

/// A running watcher of either source.
#[derive(Debug)]
pub enum PolicySubscription {
    Sse(PolicyWatcher),
    #[cfg(feature = "mqtt")]
    Mqtt(mqtt::MqttPolicyWatcher),
}

impl PolicySubscription {
    /// Starts following `source`. `health` feeds the status reports, which
    /// only the API source sends. An MQTT source without a client id uses
    /// `{identity.client_id}-policies`.
    pub fn start(
        source: &PolicySource,
        identity: ClientIdentity,
        on_change: OnChange,
        health: HealthFn,
    ) -> PolicySubscription {
        match source {
            PolicySource::Api(api) => {
                PolicySubscription::Sse(PolicyWatcher::start(api, identity, on_change, health))
            }
            #[cfg(feature = "mqtt")]
            PolicySource::Mqtt(config) => {
                let mut config = config.clone();
                if config.broker.client_id.is_empty() {
                    config.broker.client_id = format!("{}-policies", identity.client_id);
                }
                PolicySubscription::Mqtt(mqtt::MqttPolicyWatcher::start(
                    config, &identity, on_change,
                ))
            }
        }
    }

    /// The policy last applied, kept while disconnected.
    pub fn current(&self) -> Option<EffectivePolicy> {
        match self {
            PolicySubscription::Sse(w) => w.current(),
            #[cfg(feature = "mqtt")]
            PolicySubscription::Mqtt(w) => w.current(),
        }
    }

    /// Whether the policy stream or broker connection is open now.
    pub fn connected(&self) -> bool {
        match self {
            PolicySubscription::Sse(w) => w.connected(),
            #[cfg(feature = "mqtt")]
            PolicySubscription::Mqtt(w) => w.connected(),
        }
    }

    pub fn stop(&mut self) {
        match self {
            PolicySubscription::Sse(w) => w.stop(),
            #[cfg(feature = "mqtt")]
            PolicySubscription::Mqtt(w) => w.stop(),
        }
    }
}

struct State {
    applied: Option<EffectivePolicy>,
    connected: bool,
    /// A status report is due now (a change was applied).
    report_now: bool,
    stop: bool,
}

struct Shared {
    base: String,
    identity: ClientIdentity,
    options: WatcherOptions,
    on_change: OnChange,
    health: HealthFn,
    state: Mutex<State>,
    wake: Condvar,
    stopped: AtomicBool,
    agent: ureq::Agent,
}

/// Follows the server's policies for one client until stopped or dropped.
pub struct PolicyWatcher {
    shared: Arc<Shared>,
    status_thread: Option<JoinHandle<()>>,
}

impl PolicyWatcher {
    /// Starts watching `api_base_url` (`http://127.0.0.1:7070`) with the
    /// protocol's timing.
    pub fn start(
        api_base_url: &str,
        identity: ClientIdentity,
        on_change: OnChange,
        health: HealthFn,
    ) -> PolicyWatcher {
        PolicyWatcher::start_with(
            api_base_url,
            identity,
            on_change,
            health,
            WatcherOptions::default(),
        )
    }

    /// [`PolicyWatcher::start`] with other timing.
    pub fn start_with(
        api_base_url: &str,
        identity: ClientIdentity,
        on_change: OnChange,
        health: HealthFn,
        options: WatcherOptions,
    ) -> PolicyWatcher {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.connect_timeout)
            .timeout_read(options.read_timeout)
            .timeout_write(options.connect_timeout)
            .build();
        let shared = Arc::new(Shared {
            base: api_base_url.trim_end_matches('/').to_string(),
            identity,
            options,
            on_change,
            health,
            state: Mutex::new(State {
                applied: None,
                connected: false,
                report_now: false,
                stop: false,
            }),
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
            agent,
        });
        // The watch thread may sit in a blocking read: it is not joined, and
        // leaves at its next line, timeout or reconnect.
        let s = Arc::clone(&shared);
        let _ = std::thread::Builder::new()
            .name("sonde-policy-watch".into())
            .spawn(move || watch_loop(&s));
        let s = Arc::clone(&shared);
        let status_thread = std::thread::Builder::new()
            .name("sonde-policy-status".into())
            .spawn(move || status_loop(&s))
            .ok();
        PolicyWatcher {
            shared,
            status_thread,
        }
    }

    /// The policy last applied, kept while disconnected.
    pub fn current(&self) -> Option<EffectivePolicy> {
        self.shared.state.lock().applied.clone()
    }

    /// Whether the policy stream is open now.
    pub fn connected(&self) -> bool {
        self.shared.state.lock().connected
    }

    /// Stops both threads (the watch thread at its next read).
    pub fn stop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.status_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWatcher")
            .field("base", &self.shared.base)
            .field("current", &self.current())
            .field("connected", &self.connected())
            .finish()
    }
}

/// Waits `d` or until stopped; false when stopped.
fn sleep_unless_stopped(s: &Shared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut st = s.state.lock();
    while !st.stop {
        if s.wake.wait_until(&mut st, deadline).timed_out() {
            break;
        }
    }
    !st.stop
}

fn watch_loop(s: &Shared) {
    let mut backoff = s.options.initial_backoff;
    while !s.stopped.load(Ordering::Relaxed) {
        let id = &s.identity;
        let response = s
            .agent
            .get(&format!("{}/api/v1/policies/watch", s.base))
            .query("service", &id.service)
            .query("host", &id.host)
            .query("client_id", &id.client_id)
            .query("kind", &id.kind)
            .set("Accept", "text/event-stream")
            .call();
        if let Ok(response) = response {
            s.state.lock().connected = true;
            backoff = s.options.initial_backoff;
            read_events(s, BufReader::new(response.into_reader()));
            s.state.lock().connected = false;
        }
        if !sleep_unless_stopped(s, backoff) {
            return;
        }
        backoff = next_backoff(backoff, s.options.max_backoff);
    }
}

/// The longest event data kept; a longer event is skipped.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Reads Server-Sent Events until the stream ends, fails or we stop.
fn read_events(s: &Shared, mut reader: impl BufRead) {
    let mut event = String::new();
    let mut data = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::Read::take(&mut reader, MAX_EVENT_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if s.stopped.load(Ordering::Relaxed) {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            if event == "policy" {
                if let Some(p) = EffectivePolicy::parse(&data) {
                    apply(s, p);
                }
            }
            event.clear();
            data.clear();
            continue;
        }
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text, ""),
        };
        match field {
            "" => {} // a comment (keep-alive)
            "event" => value.clone_into(&mut event),
            "data" => {
                if data.len() + value.len() < MAX_EVENT_BYTES {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                } else {
                    event.clear();
                }
            }
            _ => {}
        }
    }
}

/// Applies a policy whose version differs from the applied one.
fn apply(s: &Shared, policy: EffectivePolicy) {
    if s.state.lock().applied.as_ref().map(|p| p.version) == Some(policy.version) {
        return;
    }
    if call_on_change(&s.on_change, &policy) {
        let mut st = s.state.lock();
        st.applied = Some(policy);
        st.report_now = true;
        drop(st);
        s.wake.notify_all();
    }
}

/// The body of a status report.
fn status_json(id: &ClientIdentity, applied: Option<&EffectivePolicy>, health: &Health) -> Json {
    json!({
        "client_id": id.client_id,
        "kind": id.kind,
        "service": id.service,
        "host": id.host,
        "version": id.version,
        "policy_version": applied.map(|p| p.version),
        "effective": applied.cloned().unwrap_or_default().settings.to_json(),
        "health": {
            "healthy": health.healthy,
            "exported_batches": health.exported_batches,
            "dropped_batches": health.dropped_batches,
            "last_error": health.last_error,
        },
    })
}

fn status_loop(s: &Shared) {
    let url = format!("{}/api/v1/clients/status", s.base);
    let mut next = Instant::now() + s.options.status_interval;
    loop {
        let applied = {
            let mut st = s.state.lock();
            while !st.stop && !st.report_now && Instant::now() < next {
                if s.wake.wait_until(&mut st, next).timed_out() {
                    break;
                }
            }
            if st.stop {
                return;
            }
            st.report_now = false;
            st.applied.clone()
        };
        next = Instant::now() + s.options.status_interval;
        let health = catch_unwind(AssertUnwindSafe(|| (s.health)())).unwrap_or_default();
        let body = status_json(&s.identity, applied.as_ref(), &health).to_string();
        let _ = s
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body);
    }
}

#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "mqtt")]
pub use mqtt::{MqttPolicyConfig, MqttPolicyWatcher};
#[cfg(test)]
mod tests;
