//! [`MqttSink`]: OTLP over MQTT (feature `mqtt`), and the connection that
//! the MQTT policy watcher shares.
//!
//! Each batch is one message on `{prefix}/metrics`, `{prefix}/traces` or
//! `{prefix}/logs` (prefix `otlp` by default): the serialized OTLP
//! `Export*ServiceRequest`, gzipped whole when it is at least
//! `gzip_min_bytes` (1 KiB) long. A receiver tells the two apart by the
//! gzip magic bytes `1f 8b`, which no OTLP request starts with. QoS 1 by
//! default (a batch is sent when the broker acknowledges it), MQTT 5 by
//! default, 3.1.1 selectable; clean sessions.
//!
//! `send` only pushes into the bounded queue. The sink's own thread runs a
//! current-thread tokio runtime with the client's event loop. While
//! connected, at most `max_in_flight` batches are out; when the connection
//! breaks they go back to the head of the queue, in order, and are sent
//! again once reconnected (at least once: a batch whose acknowledgement was
//! lost arrives twice). Reconnection waits an exponential backoff with
//! jitter. While the broker is down the queue fills, and its oldest batches
//! are dropped and counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::export::{QueuedSink, Signal};
use crate::policy::next_backoff;
use crate::queue::{BatchQueue, Jitter, DROP_FLUSH};
use crate::url::Url;
use crate::Result;

/// The client library, for its types (the integration tests subscribe
/// with it); not part of the SDK's API.
#[doc(hidden)]
pub use rumqttc;

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttProtocol {
    #[default]
    V5,
    V311,
}

/// The quality of service of published batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttQos {
    /// Fire and forget: sent once written to the connection.
    AtMostOnce,
    /// Sent once the broker acknowledges it; resent after a reconnection.
    #[default]
    AtLeastOnce,
}

/// A broker and how to connect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttBroker {
    pub host: String,
    pub port: u16,
    pub protocol: MqttProtocol,
    /// Unique per connection (a broker disconnects the older of two
    /// clients with one id); empty: `sonde-<random>`.
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
}

impl MqttBroker {
    pub fn new(host: impl Into<String>, port: u16) -> MqttBroker {
        MqttBroker {
            host: host.into(),
            port,
            protocol: MqttProtocol::V5,
            client_id: String::new(),
            credentials: None,
            keep_alive: Duration::from_secs(30),
        }
    }

    /// The broker of `mqtt://[user:password@]host[:port]`, taking the
    /// `protocol` and `client_id` parameters.
    pub(crate) fn from_url(u: &mut Url) -> Result<MqttBroker> {
        let mut hosts = u.host_ports(1883)?;
        if hosts.len() != 1 {
            return Err(u.bad("give one MQTT broker"));
        }
        let (host, port) = hosts.remove(0);
        let mut b = MqttBroker::new(host.trim_start_matches('[').trim_end_matches(']'), port);
        b.credentials = u.credentials.clone();
        if let Some(p) = u.take("protocol") {
            b.protocol = match p.trim_start_matches(['v', 'V']) {
                "5" | "5.0" => MqttProtocol::V5,
                "3.1.1" | "311" | "4" => MqttProtocol::V311,
                _ => return Err(u.bad(format!("protocol={p:?}: give 5 or 3.1.1"))),
            };
        }
        if let Some(id) = u.take("client_id") {
            b.client_id = id;
        }
        Ok(b)
    }

    fn client_id(&self) -> String {
        if self.client_id.is_empty() {
            let r = u64::from_be_bytes(crate::trace::new_span_id());
            format!("sonde-{:08x}", r as u32)
        } else {
            self.client_id.clone()
        }
    }
}

/// Configuration of an [`MqttSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSinkConfig {
    pub broker: MqttBroker,
    /// Topics are `{prefix}/metrics`, `{prefix}/traces`, `{prefix}/logs`.
    pub topic_prefix: String,
    pub qos: MqttQos,
    /// Payloads at least this long are gzipped whole; `None`: never.
    pub gzip_min_bytes: Option<usize>,
    /// Batches waiting to be sent; beyond it the oldest is dropped.
    pub max_queued_batches: usize,
    /// Batches published and not yet acknowledged.
    pub max_in_flight: usize,
    /// Wait before the first reconnection; doubled at each further one.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl MqttSinkConfig {
    pub fn new(broker: MqttBroker) -> MqttSinkConfig {
        MqttSinkConfig {
            broker,
            topic_prefix: "otlp".to_string(),
            qos: MqttQos::AtLeastOnce,
            gzip_min_bytes: Some(1024),
            max_queued_batches: 256,
            max_in_flight: 32,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The topic of a signal's batches.
    pub fn topic(&self, signal: Signal) -> String {
        format!("{}/{}", self.topic_prefix, signal.name())
    }

    /// See [`crate::export::Export::from_url`].
    pub(crate) fn from_url(mut u: Url) -> Result<MqttSinkConfig> {
        let mut c = MqttSinkConfig::new(MqttBroker::from_url(&mut u)?);
        if let Some(p) = u.take("topic_prefix") {
            c.topic_prefix = topic_prefix(&u, &p)?;
        }
        if let Some(q) = u.take("qos") {
            c.qos = match q.as_str() {
                "0" => MqttQos::AtMostOnce,
                "1" => MqttQos::AtLeastOnce,
                _ => return Err(u.bad(format!("qos={q:?}: give 0 or 1"))),
            };
        }
        if let Some(g) = u.take("gzip_min_bytes") {
            c.gzip_min_bytes = match g.as_str() {
                "never" => None,
                n => Some(n.parse().map_err(|_| {
                    u.bad(format!(
                        "gzip_min_bytes={g:?}: give a size in bytes or never"
                    ))
                })?),
            };
        }
        u.finish("topic_prefix, protocol, qos, client_id, gzip_min_bytes")?;
        Ok(c)
    }

    fn payload(&self, body: &[u8]) -> Vec<u8> {
        match self.gzip_min_bytes {
            Some(min) if body.len() >= min => {
                crate::http::gzip(body).unwrap_or_else(|_| body.to_vec())
            }
            _ => body.to_vec(),
        }
    }
}

/// A topic prefix as given, checked: no wildcards, no trailing `/`.
pub(crate) fn topic_prefix(u: &Url, p: &str) -> Result<String> {
    let p = p.trim_end_matches('/');
    if p.is_empty() || p.contains(['+', '#']) {
        return Err(u.bad(format!(
            "topic_prefix={p:?}: give topic levels without + or #"
        )));
    }
    Ok(p.to_string())
}

/// Sends OTLP export requests as MQTT messages from a background thread.
pub type MqttSink = QueuedSink<MqttSinkConfig>;

impl QueuedSink<MqttSinkConfig> {
    /// Starts the sink and its thread, which connects in the background.
    /// If the thread cannot be started, every batch is dropped and
    /// `last_error` says why.
    pub fn new(cfg: MqttSinkConfig) -> Arc<MqttSink> {
        let work = Arc::new(Notify::new());
        let wake = Arc::clone(&work);
        let queue = Arc::new(BatchQueue::new(
            cfg.max_queued_batches,
            Some(Box::new(move || wake.notify_one())),
        ));
        let (q, c) = (Arc::clone(&queue), cfg.clone());
        let started = std::thread::Builder::new()
            .name("sonde-sdk-mqtt".into())
            .spawn(move || run(&q, &c, &work));
        if let Err(e) = started {
            queue.fail(format!("cannot start the MQTT export thread: {e}"));
        }
        QueuedSink::with_queue(queue, cfg, DROP_FLUSH)
    }
}

/// A batch published and not yet acknowledged.
struct Out {
    /// Known once the client has written it.
    pkid: Option<u16>,
    signal: Signal,
    body: Vec<u8>,
}

fn run(queue: &BatchQueue, cfg: &MqttSinkConfig, work: &Notify) {
    match runtime() {
        Ok(rt) => rt.block_on(pump(queue, cfg, work)),
        Err(e) => queue.record_failure(None, format!("cannot start the MQTT runtime: {e}")),
    }
    queue.drain();
}

pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn pump(queue: &BatchQueue, cfg: &MqttSinkConfig, work: &Notify) {
    let (client, mut events) = connect(
        &cfg.broker,
        cfg.max_in_flight + 8,
        (cfg.initial_backoff, cfg.max_backoff),
    );
    let topics = Signal::ALL.map(|s| cfg.topic(s));
    let broker = format!("mqtt://{}:{}", cfg.broker.host, cfg.broker.port);
    let mut connected = false;
    let mut out: VecDeque<Out> = VecDeque::new();
    while !queue.stopped() {
        while connected && out.len() < cfg.max_in_flight {
            let Some((signal, body)) = queue.try_take(usize::MAX) else {
                break;
            };
            match client.publish(&topics[signal.index()], cfg.qos, cfg.payload(&body)) {
                Ok(()) => out.push_back(Out {
                    pkid: None,
                    signal,
                    body,
                }),
                Err(e) => {
                    queue.record_failure(Some(signal), format!("{broker}: {e}"));
                    queue.finish(signal, false);
                }
            }
        }
        let event = tokio::select! {
            ev = events.recv() => ev,
            () = work.notified() => continue,
        };
        match event {
            None => break,
            Some(Event::Connected) => connected = true,
            Some(Event::Published(pkid)) => {
                // Requests are written in the order they were made.
                if let Some(i) = out.iter().position(|o| o.pkid.is_none()) {
                    if cfg.qos == MqttQos::AtMostOnce {
                        if let Some(o) = out.remove(i) {
                            queue.finish(o.signal, true);
                        }
                    } else {
                        out[i].pkid = Some(pkid);
                    }
                }
            }
            Some(Event::Acked { pkid, ok }) => {
                if let Some(o) = out
                    .iter()
                    .position(|o| o.pkid == Some(pkid))
                    .and_then(|i| out.remove(i))
                {
                    if !ok {
                        queue.record_failure(
                            Some(o.signal),
                            format!("{broker}: the broker refused a batch"),
                        );
                    }
                    queue.finish(o.signal, ok);
                }
            }
            Some(Event::Down(e)) => {
                connected = false;
                queue.record_failure(None, format!("{broker}: {e}"));
                // A clean session forgets what it had not acknowledged.
                queue.requeue(out.drain(..).map(|o| (o.signal, o.body)).collect());
            }
            Some(Event::Subscribed | Event::Message { .. }) => {}
        }
    }
    client.disconnect();
    for o in out {
        queue.finish(o.signal, false);
    }
}

/// What the connection reports, in order.
pub(crate) enum Event {
    Connected,
    /// A publish was written, with its packet id (0 at QoS 0).
    Published(u16),
    /// The broker acknowledged a QoS 1 publish (`ok`: it took it).
    Acked {
        pkid: u16,
        ok: bool,
    },
    Subscribed,
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// The connection broke or could not be made; a reconnection follows.
    Down(String),
}

/// Sends requests to the connection; never waits.
pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    pub fn publish(&self, topic: &str, qos: MqttQos, payload: Vec<u8>) -> Result<(), String> {
        let at_least_once = qos == MqttQos::AtLeastOnce;
        match self {
            Client::V4(c) => {
                let qos = if at_least_once {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.try_publish(topic, qos, false, payload)
                    .map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = if at_least_once {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                c.try_publish(topic, qos, false, payload)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Subscribes at QoS 1.
    pub fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// Boxed: one per connection, and the two differ much in size.
enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// Incoming packets up to this size: policies and acknowledgements.
const MAX_INCOMING: usize = 1 << 20;
/// MQTT's own limit on a packet.
const MAX_OUTGOING: usize = 268_435_455;

/// Connects to `broker` from a task on the current runtime, which
/// reconnects after each failure, waiting an exponential backoff with
/// jitter. `requests` bounds the requests not yet taken by the connection.
pub(crate) fn connect(
    broker: &MqttBroker,
    requests: usize,
    (initial_backoff, max_backoff): (Duration, Duration),
) -> (Client, mpsc::Receiver<Event>) {
    let id = broker.client_id();
    let keep_alive = broker.keep_alive.max(Duration::from_secs(5));
    let (client, event_loop) = match broker.protocol {
        MqttProtocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(id, &broker.host, broker.port);
            o.set_keep_alive(keep_alive)
                .set_clean_session(true)
                .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
            if let Some((user, password)) = &broker.credentials {
                o.set_credentials(user, password);
            }
            let (c, l) = rumqttc::AsyncClient::new(o, requests);
            (Client::V4(c), EventLoop::V4(Box::new(l)))
        }
        MqttProtocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(id, &broker.host, broker.port);
            o.set_keep_alive(keep_alive)
                .set_clean_start(true)
                .set_max_packet_size(Some(MAX_INCOMING as u32));
            if let Some((user, password)) = &broker.credentials {
                o.set_credentials(user, password);
            }
            let (c, l) = rumqttc::v5::AsyncClient::new(o, requests);
            (Client::V5(c), EventLoop::V5(Box::new(l)))
        }
    };
    let (tx, rx) = mpsc::channel(64);
    // The event loop runs in a task of its own so that the caller's select
    // never cancels it halfway through a read or a write.
    tokio::spawn(drive(event_loop, tx, initial_backoff, max_backoff));
    (client, rx)
}

async fn drive(
    mut event_loop: EventLoop,
    tx: mpsc::Sender<Event>,
    initial: Duration,
    max: Duration,
) {
    let mut backoff = initial;
    let mut jitter = Jitter::new();
    loop {
        match event_loop.next().await {
            Ok(None) => {}
            Ok(Some(event)) => {
                if matches!(event, Event::Connected) {
                    backoff = initial;
                }
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if tx.send(Event::Down(e)).await.is_err() {
                    return;
                }
                tokio::time::sleep(jitter.jitter(backoff)).await;
                backoff = next_backoff(backoff, max);
            }
        }
    }
}

impl EventLoop {
    async fn next(&mut self) -> Result<Option<Event>, String> {
        match self {
            EventLoop::V4(l) => {
                use rumqttc::{Event as E, Incoming as In, Outgoing};
                Ok(match l.poll().await.map_err(|e| e.to_string())? {
                    E::Incoming(In::ConnAck(_)) => Some(Event::Connected),
                    E::Incoming(In::PubAck(a)) => Some(Event::Acked {
                        pkid: a.pkid,
                        ok: true,
                    }),
                    E::Incoming(In::SubAck(_)) => Some(Event::Subscribed),
                    E::Incoming(In::Publish(p)) => Some(Event::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    }),
                    E::Outgoing(Outgoing::Publish(pkid)) => Some(Event::Published(pkid)),
                    _ => None,
                })
            }
            EventLoop::V5(l) => {
                use rumqttc::v5::mqttbytes::v5::PubAckReason;
                use rumqttc::v5::{Event as E, Incoming as In};
                Ok(match l.poll().await.map_err(|e| e.to_string())? {
                    E::Incoming(In::ConnAck(_)) => Some(Event::Connected),
                    E::Incoming(In::PubAck(a)) => Some(Event::Acked {
                        pkid: a.pkid,
                        ok: matches!(
                            a.reason,
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                        ),
                    }),
                    E::Incoming(In::SubAck(_)) => Some(Event::Subscribed),
                    E::Incoming(In::Publish(p)) => Some(Event::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    }),
                    E::Outgoing(rumqttc::Outgoing::Publish(pkid)) => Some(Event::Published(pkid)),
                    _ => None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<MqttSinkConfig> {
        MqttSinkConfig::from_url(Url::parse(url)?)
    }

    #[test]
    fn urls() {
        let c = parse("mqtt://broker").unwrap();
        assert_eq!((c.broker.host.as_str(), c.broker.port), ("broker", 1883));
        assert_eq!(c.broker.protocol, MqttProtocol::V5);
        assert_eq!(c.qos, MqttQos::AtLeastOnce);
        assert_eq!(c.topic(Signal::Traces), "otlp/traces");
        assert_eq!(c.gzip_min_bytes, Some(1024));
        let c = parse(
            "mqtt://u:p@broker:1884?protocol=3.1.1&qos=0&topic_prefix=site/7/&gzip_min_bytes=never&client_id=dev1",
        )
        .unwrap();
        assert_eq!(c.broker.port, 1884);
        assert_eq!(c.broker.protocol, MqttProtocol::V311);
        assert_eq!(c.broker.credentials, Some(("u".into(), "p".into())));
        assert_eq!(c.broker.client_id, "dev1");
        assert_eq!(c.qos, MqttQos::AtMostOnce);
        assert_eq!(c.topic(Signal::Metrics), "site/7/metrics");
        assert_eq!(c.gzip_min_bytes, None);
        for bad in [
            "mqtt://a,b",
            "mqtt://h?qos=2",
            "mqtt://h?protocol=3",
            "mqtt://h?topic_prefix=a/%23",
            "mqtt://h?retain=true",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_large_payloads_are_gzipped() {
        let c = MqttSinkConfig::new(MqttBroker::new("h", 1883));
        let small = vec![0x0a; 100];
        assert_eq!(c.payload(&small), small);
        let large = vec![0x0a; 4096];
        let z = c.payload(&large);
        assert_eq!(&z[..2], &[0x1f, 0x8b]);
        assert!(z.len() < large.len());
    }
}
