//! Sending alerts: to webhooks in Alertmanager's webhook payload shape, and
//! to Alertmanagers through their API (`POST /api/v2/alerts`), as
//! Prometheus sends them.
//!
//! Each destination has a bounded queue and a task of its own: evaluation
//! only pushes (dropping the oldest item when full, counted and logged) and
//! never waits on the network; a failed request is retried with exponential
//! backoff, a bounded number of times, so one dead receiver cannot hold the
//! queue forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sonde_model::Labels;
use tokio::sync::{watch, Notify};

use super::{rfc3339, stopped};

/// Items a destination queues before dropping the oldest.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Alerts per request to an Alertmanager (Prometheus sends 64).
const AM_BATCH: usize = 64;
const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One alert to tell a receiver about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub starts_at: i64,
    /// When it resolved, or until when it is valid while firing.
    pub ends_at: i64,
    pub resolved: bool,
    pub generator_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Alertmanager,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Alertmanager => "alertmanager",
        }
    }
}

/// Alerts sent, failed (after every retry) and dropped (queue full).
#[derive(Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// One webhook or Alertmanager.
pub struct Destination {
    pub kind: Kind,
    /// Where requests go (for Alertmanager, its `/api/v2/alerts`).
    pub url: String,
    /// Webhook: whole payloads; Alertmanager: single alerts, batched on send.
    queue: Mutex<VecDeque<(Value, u64)>>,
    wake: Notify,
    pub counts: Counts,
}

impl Destination {
    pub fn new(kind: Kind, url: &str) -> Destination {
        let url = match kind {
            Kind::Webhook => url.to_string(),
            Kind::Alertmanager => format!("{}/api/v2/alerts", url.trim_end_matches('/')),
        };
        Destination {
            kind,
            url,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            counts: Counts::default(),
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    /// Queues `item` (worth `alerts` alerts); never blocks on the network.
    fn push(&self, item: Value, alerts: u64) {
        let dropped = {
            let mut q = self.queue.lock();
            q.push_back((item, alerts));
            if q.len() > QUEUE_CAPACITY {
                q.pop_front().map(|(_, n)| n)
            } else {
                None
            }
        };
        if let Some(n) = dropped {
            let before = self.counts.dropped.fetch_add(n, Ordering::Relaxed);
            if before == 0 || (before + n) / 1000 != before / 1000 {
                tracing::warn!(
                    url = %self.url,
                    dropped = before + n,
                    "alert notification queue full: dropping the oldest"
                );
            }
        }
        self.wake.notify_one();
    }

    /// The next request body and the number of alerts in it.
    fn next_request(&self) -> Option<(String, u64)> {
        let mut q = self.queue.lock();
        match self.kind {
            Kind::Webhook => q.pop_front().map(|(v, n)| (v.to_string(), n)),
            Kind::Alertmanager => {
                if q.is_empty() {
                    return None;
                }
                let n = q.len().min(AM_BATCH);
                let alerts: Vec<Value> = q.drain(..n).map(|(v, _)| v).collect();
                Some((Value::Array(alerts).to_string(), n as u64))
            }
        }
    }
}

/// Every destination, fed by evaluation.
pub struct Notifier {
    pub destinations: Vec<Arc<Destination>>,
    external_url: String,
}

impl Notifier {
    pub fn new(webhooks: &[String], alertmanagers: &[String], external_url: &str) -> Notifier {
        let mut destinations: Vec<Arc<Destination>> = webhooks
            .iter()
            .map(|u| Arc::new(Destination::new(Kind::Webhook, u)))
            .collect();
        destinations.extend(
            alertmanagers
                .iter()
                .map(|u| Arc::new(Destination::new(Kind::Alertmanager, u))),
        );
        Notifier {
            destinations,
            external_url: external_url.to_string(),
        }
    }

    /// Queues one rule's notices: one webhook payload per webhook, one
    /// item per alert per Alertmanager.
    pub fn send(&self, rule: &str, webhook: &[Notice], alertmanager: &[Notice]) {
        for d in &self.destinations {
            match d.kind {
                Kind::Webhook if !webhook.is_empty() => d.push(
                    webhook_payload(rule, webhook, &self.external_url),
                    webhook.len() as u64,
                ),
                Kind::Alertmanager => {
                    for n in alertmanager {
                        d.push(alertmanager_alert(n), 1);
                    }
                }
                Kind::Webhook => {}
            }
        }
    }

    /// Starts one sending task per destination, posting through
    /// `transport`; they end when `stop` turns true.
    pub fn spawn(
        &self,
        transport: Arc<dyn Transport>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.destinations
            .iter()
            .map(|d| tokio::spawn(deliver(d.clone(), transport.clone(), stop.clone())))
            .collect()
    }
}

/// How a notification reaches a receiver: the server posts JSON over HTTP
/// (with a timeout, `TIMEOUT`); tests record what would be sent.
pub trait Transport: Send + Sync {
    /// Posts `body` (JSON) to `url`, blocking; an error says whether a
    /// retry may help (a 5xx or 429, a connection error) and what happened.
    fn post(&self, url: &str, body: &str) -> Result<(), Failure>;
}

/// A failed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub retryable: bool,
    pub message: String,
}

/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

async fn deliver(
    d: Arc<Destination>,
    transport: Arc<dyn Transport>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some((body, alerts)) = d.next_request() else {
            tokio::select! {
                _ = d.wake.notified() => continue,
                _ = stopped(&mut stop) => return,
            }
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let (transport, url, body) = (transport.clone(), d.url.clone(), body.clone());
            let result = tokio::select! {
                r = tokio::task::spawn_blocking(move || transport.post(&url, &body)) => {
                    r.unwrap_or_else(|e| Err(Failure { retryable: false, message: e.to_string() }))
                }
                _ = stopped(&mut stop) => return,
            };
            match result {
                Ok(()) => {
                    d.counts.sent.fetch_add(alerts, Ordering::Relaxed);
                    break;
                }
                Err(f) if f.retryable && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(url = %d.url, attempt, "sending alerts failed, retrying: {}", f.message);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(f) => {
                    d.counts.failed.fetch_add(alerts, Ordering::Relaxed);
                    tracing::warn!(
                        url = %d.url,
                        kind = d.kind.as_str(),
                        alerts,
                        "sending alerts failed after {attempt} attempts: {}", f.message
                    );
                    break;
                }
            }
        }
    }
}

fn object(pairs: impl IntoIterator<Item = (String, String)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<_, _>>(),
    )
}

fn labels_object(labels: &Labels) -> Value {
    object(labels.iter().map(|l| (l.name.clone(), l.value.clone())))
}

/// An alert as Alertmanager's API v2 takes it (`postableAlert`).
pub fn alertmanager_alert(n: &Notice) -> Value {
    json!({
        "labels": labels_object(&n.labels),
        "annotations": object(n.annotations.iter().cloned()),
        "startsAt": rfc3339(n.starts_at),
        "endsAt": rfc3339(n.ends_at),
        "generatorURL": n.generator_url,
    })
}

/// Alertmanager's fingerprint of a label set (FNV-1a over names and values).
pub fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for l in labels.iter() {
        add(l.name.as_bytes());
        add(&[0xff]);
        add(l.value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// Alertmanager's webhook payload (version 4) for one rule's alerts,
/// grouped by `alertname` as a default Alertmanager route would group them.
pub fn webhook_payload(rule: &str, notices: &[Notice], external_url: &str) -> Value {
    let firing = notices.iter().any(|n| !n.resolved);
    let common = |all: Vec<Vec<(String, String)>>| -> Value {
        let mut iter = all.into_iter();
        let mut common = iter.next().unwrap_or_default();
        for other in iter {
            common.retain(|kv| other.contains(kv));
        }
        object(common)
    };
    let alerts: Vec<Value> = notices
        .iter()
        .map(|n| {
            json!({
                "status": if n.resolved { "resolved" } else { "firing" },
                "labels": labels_object(&n.labels),
                "annotations": object(n.annotations.iter().cloned()),
                "startsAt": rfc3339(n.starts_at),
                "endsAt": if n.resolved { rfc3339(n.ends_at) } else { "0001-01-01T00:00:00Z".into() },
                "generatorURL": n.generator_url,
                "fingerprint": fingerprint(&n.labels),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={}}}", Value::String(rule.to_string())),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "sonde",
        "groupLabels": {"alertname": rule},
        "commonLabels": common(notices.iter().map(|n| n.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()).collect()),
        "commonAnnotations": common(notices.iter().map(|n| n.annotations.clone()).collect()),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(instance: &str, resolved: bool) -> Notice {
        Notice {
            labels: Labels::from_pairs([
                ("alertname", "High"),
                ("instance", instance),
                ("severity", "page"),
            ]),
            annotations: vec![
                ("summary".into(), format!("{instance} is high")),
                ("team".into(), "db".into()),
            ],
            starts_at: 1_700_000_000_000,
            ends_at: 1_700_000_060_500,
            resolved,
            generator_url: "http://s/graph".into(),
        }
    }

    #[test]
    fn webhook_payload_has_alertmanagers_shape() {
        let p = webhook_payload("High", &[notice("a", false), notice("b", true)], "http://s");
        assert_eq!(p["version"], "4");
        assert_eq!(p["groupKey"], "{}:{alertname=\"High\"}");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["groupLabels"], json!({"alertname": "High"}));
        assert_eq!(
            p["commonLabels"],
            json!({"alertname": "High", "severity": "page"})
        );
        assert_eq!(p["commonAnnotations"], json!({"team": "db"}));
        let a = &p["alerts"][0];
        assert_eq!(a["status"], "firing");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["alerts"][1]["endsAt"], "2023-11-14T22:14:20.5Z");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn fingerprints_match_prometheus() {
        // model.LabelSet{}.Fingerprint() is the FNV-1a offset basis.
        assert_eq!(fingerprint(&Labels::empty()), "cbf29ce484222325");
        assert_ne!(
            fingerprint(&Labels::from_pairs([("a", "bc")])),
            fingerprint(&Labels::from_pairs([("ab", "c")]))
        );
    }

    /// Fails the first `failures` posts (retryably), then records them.
    struct Flaky {
        failures: Mutex<u32>,
        retryable: bool,
        posted: Mutex<Vec<(String, String)>>,
    }

    impl Transport for Flaky {
        fn post(&self, url: &str, body: &str) -> Result<(), Failure> {
            let mut f = self.failures.lock();
            if *f > 0 {
                *f -= 1;
                return Err(Failure {
                    retryable: self.retryable,
                    message: "HTTP 503: busy".into(),
                });
            }
            self.posted.lock().push((url.into(), body.into()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn delivery_goes_through_the_transport_with_retries() {
        let n = Notifier::new(&["http://hook".to_string()], &[], "http://sonde");
        let flaky = Arc::new(Flaky {
            failures: Mutex::new(2),
            retryable: true,
            posted: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop) = watch::channel(false);
        let tasks = n.spawn(flaky.clone(), stop);
        n.send("High", &[notice("a", false)], &[]);
        let d = &n.destinations[0];
        for _ in 0..200 {
            if d.counts.sent.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(d.counts.sent.load(Ordering::Relaxed), 1);
        let posted = flaky.posted.lock().clone();
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].0, "http://hook");
        assert!(posted[0].1.contains("\"alertname\":\"High\""));

        // A refusal that no retry can help is counted as failed at once.
        *flaky.failures.lock() = 1;
        let refused = Arc::new(Flaky {
            failures: Mutex::new(1),
            retryable: false,
            posted: Mutex::new(Vec::new()),
        });
        stop_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let (_stop_tx, stop) = watch::channel(false);
        let _tasks = n.spawn(refused.clone(), stop);
        n.send("High", &[notice("b", false)], &[]);
        for _ in 0..200 {
            if d.counts.failed.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(d.counts.failed.load(Ordering::Relaxed), 1);
        assert!(refused.posted.lock().is_empty());
    }

    #[test]
    fn full_queues_drop_the_oldest() {
        let d = Destination::new(Kind::Alertmanager, "http://am:9093/");
        assert_eq!(d.url, "http://am:9093/api/v2/alerts");
        for i in 0..QUEUE_CAPACITY + 5 {
            d.push(json!(i), 1);
        }
        assert_eq!(d.counts.dropped.load(Ordering::Relaxed), 5);
        let (body, n) = d.next_request().unwrap();
        assert_eq!(n, AM_BATCH as u64);
        assert!(body.starts_with("[5,6,"));
    }
}
