//! MQTT ingest (3.1.1 and 5) and policy publishing over one connection.
//!
//! The session is persistent (a stable client id, no clean start), the
//! subscriptions QoS 1 and acknowledgements manual: a PUBACK leaves only
//! once the message is in the WAL, so while Sonde is down the broker holds
//! what arrives for it. One worker stores messages in arrival order, which
//! is also the order MQTT requires PUBACKs in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use sonde_ingest::sparkplug::SparkplugDecoder;
use sonde_ingest::topic::TopicTemplate;
use tokio::sync::{mpsc, watch};

use super::{
    ingest, ingest_metrics, retry_delay, DecodeOptions, Encoding, Failure, Message, Route,
};
use crate::app::AppState;

/// QoS 0 messages received but not yet stored; beyond this they are shed
/// (and counted), as QoS 0 allows. QoS 1 messages are never shed: the
/// broker sends at most its in-flight window of them (MQTT 5's receive
/// maximum, which Sonde sets to this) before Sonde acknowledges, so the
/// broker, not Sonde's memory, holds the backlog. The event loop itself must
/// never wait on the worker: the worker's PUBACKs go out through it.
const QUEUE: usize = 256;

/// `mqtt://host[:port]` (or `tcp://`) to (host, port).
pub fn parse_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .with_context(|| format!("{url:?} is not mqtt://host:port"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .with_context(|| format!("{url:?}: port {p:?} is not a number"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        bail!("{url:?} has no host");
    }
    Ok((host.to_string(), port))
}

/// How to acknowledge one message once stored.
enum Ack {
    None,
    V4(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

#[derive(Clone)]
pub(super) enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    async fn subscribe(&self, filter: &str, qos1: bool) -> Result<(), String> {
        match self {
            Client::V4(c) => {
                let qos = if qos1 {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.subscribe(filter, qos).await.map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = if qos1 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                c.subscribe(filter, qos).await.map_err(|e| e.to_string())
            }
        }
    }

    pub(super) async fn publish_retained(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    payload,
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn ack(&self, ack: &Ack) -> Result<(), String> {
        match (self, ack) {
            (Client::V4(c), Ack::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Ack::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

enum Polled {
    Connected { session_present: bool },
    Publish(Box<Received>),
    Other,
    Failed(String),
}

struct Received {
    topic: String,
    payload: Bytes,
    /// When it first arrived: the time of what it carries without one, on
    /// every retry (set as it is queued).
    received_ms: i64,
    /// MQTT 5 user properties: context, like Kafka headers.
    properties: Vec<(String, String)>,
    ack: Ack,
}

impl EventLoop {
    async fn poll(&mut self) -> Polled {
        match self {
            EventLoop::V4(el) => {
                use rumqttc::{Event, Packet};
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Polled::Connected {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let ack = if p.qos == rumqttc::QoS::AtMostOnce {
                            Ack::None
                        } else {
                            Ack::V4(rumqttc::Publish {
                                payload: Bytes::new(),
                                ..p.clone()
                            })
                        };
                        Polled::Publish(Box::new(Received {
                            topic: p.topic,
                            payload: p.payload,
                            received_ms: 0,
                            properties: Vec::new(),
                            ack,
                        }))
                    }
                    Ok(_) => Polled::Other,
                    Err(e) => Polled::Failed(e.to_string()),
                }
            }
            EventLoop::V5(el) => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                use rumqttc::v5::Event;
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Polled::Connected {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let ack = if p.qos == rumqttc::v5::mqttbytes::QoS::AtMostOnce {
                            Ack::None
                        } else {
                            Ack::V5(rumqttc::v5::mqttbytes::v5::Publish {
                                payload: Bytes::new(),
                                ..p.clone()
                            })
                        };
                        Polled::Publish(Box::new(Received {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                            received_ms: 0,
                            properties: p
                                .properties
                                .map(|pr| pr.user_properties)
                                .unwrap_or_default(),
                            ack,
                        }))
                    }
                    Ok(_) => Polled::Other,
                    Err(e) => Polled::Failed(e.to_string()),
                }
            }
        }
    }
}

fn connect(state: &AppState) -> anyhow::Result<(Client, EventLoop)> {
    let cfg = &state.config;
    let (host, port) = parse_url(&cfg.mqtt_url)?;
    let max_packet = cfg.max_request_bytes.max(1 << 16);
    Ok(if cfg.mqtt_protocol == "3.1.1" {
        let mut o = rumqttc::MqttOptions::new(&cfg.mqtt_client_id, host, port);
        o.set_keep_alive(Duration::from_secs(15))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(max_packet, max_packet);
        let (c, el) = rumqttc::AsyncClient::new(o, QUEUE);
        (Client::V4(c), EventLoop::V4(Box::new(el)))
    } else {
        let mut o = rumqttc::v5::MqttOptions::new(&cfg.mqtt_client_id, host, port);
        o.set_keep_alive(Duration::from_secs(15))
            .set_clean_start(false)
            // A week: the broker keeps the session (and queues QoS 1
            // messages) across restarts and long outages.
            .set_session_expiry_interval(Some(7 * 24 * 3600))
            .set_manual_acks(true)
            .set_receive_maximum(Some(QUEUE as u16))
            .set_max_packet_size(Some(max_packet as u32));
        let (c, el) = rumqttc::v5::AsyncClient::new(o, QUEUE);
        (Client::V5(c), EventLoop::V5(Box::new(el)))
    })
}

/// A subscription: its route and the template that reads labels off topics.
struct Subscription {
    route: Route,
    template: TopicTemplate,
}

/// Starts MQTT ingest and policy publishing when `mqtt_url` is set.
pub fn spawn(
    state: AppState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if state.config.mqtt_url.is_empty() {
        return Ok(None);
    }
    let (_, routes) = state.config.broker_routes()?;
    let subs: Vec<Subscription> = routes
        .into_iter()
        .map(|route| {
            let template = TopicTemplate::parse(&route.topic)
                .map_err(|e| anyhow::anyhow!("setting mqtt_subscriptions: {}: {e}", route.topic))?;
            Ok(Subscription { route, template })
        })
        .collect::<anyhow::Result<_>>()?;
    let options = state.config.decode_options()?;
    let (client, eventloop) = connect(&state)?;
    let (tx, rx) = mpsc::unbounded_channel();
    // QoS 0 messages in the worker's queue.
    let queued_qos0 = std::sync::Arc::new(AtomicUsize::new(0));
    let (connected_tx, connected_rx) = watch::channel(0u64);
    let subs = std::sync::Arc::new(subs);
    let poller = tokio::spawn(poll_loop(
        state.clone(),
        client.clone(),
        eventloop,
        subs.clone(),
        WorkQueue {
            tx,
            queued_qos0: queued_qos0.clone(),
        },
        connected_tx,
        stop.clone(),
    ));
    let worker = tokio::spawn(work_loop(
        state.clone(),
        client.clone(),
        subs,
        options,
        rx,
        queued_qos0,
        stop.clone(),
    ));
    let publisher = (!state.config.mqtt_policy_topic.is_empty()).then(|| {
        tokio::spawn(super::policies::publish_loop(
            state.clone(),
            client.clone(),
            connected_rx,
            stop.clone(),
        ))
    });
    tracing::info!(url = %state.config.mqtt_url, "MQTT: connecting");
    Ok(Some(tokio::spawn(async move {
        let _ = worker.await;
        if let Some(p) = publisher {
            let _ = p.await;
        }
        client.disconnect().await;
        // Give the DISCONNECT a moment to leave; the session stays.
        let _ = tokio::time::timeout(Duration::from_millis(500), poller).await;
    })))
}

/// Where the event loop hands messages to the worker.
struct WorkQueue {
    tx: mpsc::UnboundedSender<(usize, Received)>,
    /// QoS 0 messages queued.
    queued_qos0: std::sync::Arc<AtomicUsize>,
}

/// Reads the connection; (re)subscribes when the broker lost the session.
async fn poll_loop(
    state: AppState,
    client: Client,
    mut eventloop: EventLoop,
    subs: std::sync::Arc<Vec<Subscription>>,
    queue: WorkQueue,
    connected: watch::Sender<u64>,
    stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let polled = tokio::select! {
            p = eventloop.poll() => p,
            _ = super::wait_stop(stop.clone()) => {
                // Keep polling briefly so the DISCONNECT is written.
                let _ = tokio::time::timeout(Duration::from_millis(300), eventloop.poll()).await;
                return;
            }
        };
        match polled {
            Polled::Connected { session_present } => {
                backoff = Duration::from_millis(200);
                tracing::info!(session_present, "MQTT: connected");
                state.metrics.broker_connected("mqtt", true);
                // Subscriptions go through the event loop, so they are sent
                // from a task while this one keeps polling.
                let (client, subs, qos1) =
                    (client.clone(), subs.clone(), state.config.mqtt_qos == 1);
                tokio::spawn(async move {
                    for s in subs.iter() {
                        if let Err(e) = client.subscribe(s.template.filter(), qos1).await {
                            tracing::error!(topic = %s.route.topic, "MQTT: cannot subscribe: {e}");
                        }
                    }
                });
                connected.send_modify(|n| *n += 1);
            }
            Polled::Publish(mut msg) => {
                msg.received_ms = state.clock.now_ms();
                let Some(i) = subs
                    .iter()
                    .position(|s| s.template.labels(&msg.topic).is_some())
                else {
                    // Retained policies we publish ourselves, or a topic no
                    // subscription names any more (the session kept it).
                    let _ = client.ack(&msg.ack).await;
                    continue;
                };
                if matches!(msg.ack, Ack::None) {
                    if queue.queued_qos0.load(Ordering::Relaxed) >= QUEUE {
                        state
                            .metrics
                            .broker_message("mqtt", &subs[i].route.topic, "shed");
                        continue;
                    }
                    queue.queued_qos0.fetch_add(1, Ordering::Relaxed);
                }
                if queue.tx.send((i, *msg)).is_err() {
                    return;
                }
            }
            Polled::Other => {}
            Polled::Failed(e) => {
                state.metrics.broker_connected("mqtt", false);
                tracing::warn!("MQTT: {e}; reconnecting in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = super::wait_stop(stop.clone()) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A device message to decode: its route, payload and context labels.
type DeviceItem = (Route, Bytes, Vec<(String, String)>, i64);

/// Device messages stored with one WAL append, at most.
const DEVICE_BATCH: usize = 256;

/// Stores messages in order and acknowledges each once it is in the WAL.
/// Device messages (JSON, line protocol, remote write) already waiting are
/// stored together: one blocking task and one WAL append for many small
/// messages is what keeps up with a broker's QoS 1 stream.
async fn work_loop(
    state: AppState,
    client: Client,
    subs: std::sync::Arc<Vec<Subscription>>,
    options: DecodeOptions,
    mut rx: mpsc::UnboundedReceiver<(usize, Received)>,
    queued_qos0: std::sync::Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
) {
    let mut sparkplug = SparkplugDecoder::new(Default::default());
    let mut next: Option<(usize, Received)> = None;
    let is_device = |i: usize| super::is_device(subs[i].route.encoding);
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = super::wait_stop(stop.clone()) => return,
            },
        };
        let mut group = vec![first];
        if is_device(group[0].0) {
            while group.len() < DEVICE_BATCH {
                match rx.try_recv() {
                    Ok(m) if is_device(m.0) => group.push(m),
                    Ok(m) => {
                        next = Some(m);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        for (_, msg) in &group {
            if matches!(msg.ack, Ack::None) {
                queued_qos0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let outcomes = if is_device(group[0].0) {
            store_devices(&state, &subs, &options, &group, &stop).await
        } else {
            let (i, msg) = &group[0];
            store_one(&state, &subs[*i], &options, msg, &mut sparkplug, &stop)
                .await
                .map(|o| vec![o])
        };
        // None: shutting down before storing; no PUBACK, so the broker
        // sends them again.
        let Some(outcomes) = outcomes else { return };
        for ((i, msg), outcome) in group.iter().zip(outcomes) {
            let route = &subs[*i].route.topic;
            match outcome {
                Ok(()) => state.metrics.broker_message("mqtt", route, "stored"),
                Err(e) => {
                    state.metrics.broker_message("mqtt", route, "malformed");
                    tracing::warn!(topic = %msg.topic, "MQTT: skipping a malformed message: {e}");
                }
            }
            if let Err(e) = client.ack(&msg.ack).await {
                tracing::warn!("MQTT: cannot acknowledge: {e}");
            }
        }
    }
}

/// Labels from the topic's levels and MQTT 5 user properties.
fn context_of(sub: &Subscription, msg: &Received) -> Vec<(String, String)> {
    let mut context = sub.template.labels(&msg.topic).unwrap_or_default();
    context.extend(msg.properties.iter().cloned());
    context
}

/// Stores device messages with one append, retrying while the store
/// refuses; each message's outcome, or `None` when stopping first.
async fn store_devices(
    state: &AppState,
    subs: &[Subscription],
    options: &DecodeOptions,
    group: &[(usize, Received)],
    stop: &watch::Receiver<bool>,
) -> Option<Vec<Result<(), String>>> {
    let items: Vec<DeviceItem> = group
        .iter()
        .map(|(i, m)| {
            (
                subs[*i].route.clone(),
                m.payload.clone(),
                context_of(&subs[*i], m),
                m.received_ms,
            )
        })
        .collect();
    let mut attempt = 0;
    loop {
        let (st, items, options) = (state.clone(), items.clone(), options.clone());
        let stored = tokio::task::spawn_blocking(move || {
            let mut outcomes = Vec::with_capacity(items.len());
            let mut decoded = Vec::with_capacity(items.len());
            for (route, payload, context, stamp_ms) in items {
                match super::decode_device(&st, &route, &options, &payload, context, stamp_ms) {
                    Ok(d) => {
                        outcomes.push(Ok(()));
                        decoded.push(d);
                    }
                    Err(Failure::Malformed(e)) => outcomes.push(Err(e)),
                    Err(Failure::Retry(e)) => return Err(e),
                }
            }
            if !decoded.is_empty() {
                super::store_decoded(&st, "mqtt", decoded).map_err(|f| f.to_string())?;
            }
            Ok(outcomes)
        })
        .await
        .unwrap_or_else(|e| Err(format!("write task failed: {e}")));
        match stored {
            Ok(outcomes) => return Some(outcomes),
            Err(_) if *stop.borrow() => return None,
            Err(e) => {
                tracing::warn!("MQTT: {e}; retrying");
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// Stores one OTLP or Sparkplug message, retrying while the store refuses.
async fn store_one(
    state: &AppState,
    sub: &Subscription,
    options: &DecodeOptions,
    msg: &Received,
    sparkplug: &mut SparkplugDecoder,
    stop: &watch::Receiver<bool>,
) -> Option<Result<(), String>> {
    let context = context_of(sub, msg);
    let mut attempt = 0;
    loop {
        let result = if sub.route.encoding == Encoding::Sparkplug {
            match sparkplug.decode(&msg.topic, &msg.payload, msg.received_ms) {
                Ok(decoded) => {
                    if decoded.rebirth.is_some() {
                        // Sonde is not necessarily the primary host
                        // application, which alone may ask for a rebirth.
                        tracing::info!(topic = %msg.topic, "Sparkplug: data with unknown aliases; waiting for the node's next birth");
                    }
                    let batch = decoded.metrics;
                    if batch.series.is_empty() && batch.rejected_points == 0 {
                        Ok(Default::default())
                    } else {
                        ingest_metrics(state, "mqtt", batch, context.clone()).await
                    }
                }
                Err(e) => Err(Failure::Malformed(e.to_string())),
            }
        } else {
            let m = Message {
                payload: msg.payload.to_vec(),
                context: context.clone(),
                stamp_ms: msg.received_ms,
            };
            ingest(state, "mqtt", &sub.route, options, m).await
        };
        match result {
            Ok(_) => return Some(Ok(())),
            Err(Failure::Malformed(e)) => return Some(Err(e)),
            Err(Failure::Retry(_)) if *stop.borrow() => return None,
            Err(Failure::Retry(e)) => {
                tracing::warn!(topic = %msg.topic, "MQTT: {e}; retrying");
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(parse_url("tcp://broker").unwrap(), ("broker".into(), 1883));
        for bad in ["127.0.0.1:1883", "mqtt://", "mqtt://h:x", "http://h:1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
