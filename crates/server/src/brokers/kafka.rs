//! Kafka ingest: one consumer group per Sonde deployment.
//!
//! At least once: a message's offset is stored for commit only after the
//! message is in the WAL (a message the store refuses for now holds back
//! its own partition, paused, and no other: `stalls.rs`) (or, if malformed, counted, logged and copied to
//! the dead-letter topic). librdkafka commits stored offsets every second
//! and when partitions are revoked, so a crash re-delivers at most the
//! last second; the store keeps one sample per series and timestamp and
//! one span per id, so re-delivery does not double count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::stalls::{self, PartitionKey, Stalls};
use super::{ingest, retry_delay, DecodeOptions, Failure, Message, Route};
use crate::app::AppState;

struct GroupContext;

/// Rebalances since start: the consume loop drops what it holds back when
/// this moves (the partitions are read again from their committed offsets).
static REBALANCES: AtomicU64 = AtomicU64::new(0);

impl ClientContext for GroupContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!("Kafka: {error}: {reason}");
    }
}

/// How long the brokers may be unreachable before the consumer is rebuilt.
/// librdkafka 2.12 can crash on the metadata of a restarted broker whose
/// topics came back under new ids; a consumer built after the outage has
/// no stale metadata to trip on.
const REBUILD_AFTER: Duration = Duration::from_millis(500);

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        REBALANCES.fetch_add(1, Ordering::SeqCst);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Hand over exactly what is stored: the next owner starts
                // after the last message in our WAL.
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
                tracing::info!(partitions = tpl.count(), "Kafka: partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = %parts.join(","), "Kafka: partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!("Kafka: rebalance failed: {e}"),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        if let Err(e) = result {
            // No new offsets since the last commit is not a failure.
            if !e.to_string().contains("No offset stored") {
                tracing::warn!("Kafka: offset commit failed: {e}");
            }
        }
    }
}

fn client_config(state: &AppState) -> anyhow::Result<ClientConfig> {
    let cfg = &state.config;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka_brokers)
        .set("group.id", &cfg.kafka_group_id)
        .set("client.id", "sonde")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Freshness: a fetch returns within 50 ms even when small.
        .set("fetch.wait.max.ms", "50")
        // Subscribed topics created (or come back) after start are
        // assigned within seconds, not at librdkafka's 5-minute refresh.
        .set("topic.metadata.refresh.interval.ms", "5000")
        // A dead node's partitions move to the others within 10 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        // Bounds what librdkafka prefetches while the store is refusing.
        .set("queued.max.messages.kbytes", "32768");
    // Static membership: a node restarted after a crash rejoins as the
    // member it was and gets its partitions back at once, instead of
    // waiting out the dead member's session.
    if let Some(id) = cfg.kafka_member_id() {
        c.set("group.instance.id", id);
    }
    for opt in &cfg.kafka_options {
        let (k, v) = opt
            .split_once('=')
            .with_context(|| format!("setting kafka_options: {opt:?} is not name=value"))?;
        c.set(k.trim(), v.trim());
    }
    Ok(c)
}

/// Starts Kafka ingest when `kafka_brokers` is set.
pub fn spawn(
    state: AppState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if state.config.kafka_brokers.is_empty() {
        return Ok(None);
    }
    let (routes, _) = state.config.broker_routes()?;
    let options = state.config.decode_options()?;
    let config = client_config(&state)?;
    let topics: Vec<String> = routes.iter().map(|r| r.topic.clone()).collect();
    let consumer = new_consumer(&config, &topics)?;
    let dead_letter = if state.config.kafka_dead_letter_topic.is_empty() {
        None
    } else {
        let p: FutureProducer = config
            .clone()
            .set("message.timeout.ms", "30000")
            .create()
            .context("cannot create the Kafka dead-letter producer")?;
        Some(p)
    };
    tracing::info!(
        brokers = %state.config.kafka_brokers,
        group = %state.config.kafka_group_id,
        topics = %topics.join(","),
        "Kafka: consuming"
    );
    Ok(Some(tokio::spawn(async move {
        let mut consumer = consumer;
        loop {
            match consume_loop(&state, &consumer, &routes, &options, &dead_letter, &stop).await {
                Ended::Stopped => return finish(&consumer),
                Ended::BrokersLost => {
                    tracing::warn!("Kafka: every broker is unreachable; rebuilding the consumer");
                    // Closing may wait on the unreachable group coordinator.
                    let old = consumer.clone();
                    let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                }
            }
            consumer = loop {
                match new_consumer(&config, &topics) {
                    Ok(c) => break c,
                    Err(e) => tracing::error!("Kafka: {e:#}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = super::wait_stop(stop.clone()) => return,
                }
            };
        }
    })))
}

fn new_consumer(
    config: &ClientConfig,
    topics: &[String],
) -> anyhow::Result<Arc<StreamConsumer<GroupContext>>> {
    let consumer: StreamConsumer<GroupContext> = config
        .create_with_context(GroupContext)
        .context("cannot create the Kafka consumer")?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to the Kafka topics")?;
    Ok(Arc::new(consumer))
}

enum Ended {
    Stopped,
    BrokersLost,
}

/// A message read off a partition, owned, so it can wait its turn.
struct Pending {
    route: usize,
    offset: i64,
    /// The broker's timestamp of the message, the same on re-delivery.
    stamp_ms: i64,
    payload: Vec<u8>,
    context: Vec<(String, String)>,
    headers: Option<OwnedHeaders>,
}

enum Handled {
    /// Stored, or malformed and skipped: its offset is stored.
    Done,
    /// The store refused it for now.
    Refused,
    Stopped,
}

async fn consume_loop(
    state: &AppState,
    consumer: &StreamConsumer<GroupContext>,
    routes: &[Route],
    options: &DecodeOptions,
    dead_letter: &Option<FutureProducer>,
    stop: &watch::Receiver<bool>,
) -> Ended {
    let headers_wanted = &state.config.kafka_header_attributes;
    let key_attribute = &state.config.kafka_key_attribute;
    let mut connected = false;
    let mut failing_since: Option<std::time::Instant> = None;
    // A refused message holds back its own partition only (`stalls.rs`).
    let mut stalls: Stalls<Pending> = Stalls::default();
    let mut rebalances = REBALANCES.load(Ordering::SeqCst);
    loop {
        let now = REBALANCES.load(Ordering::SeqCst);
        if now != rebalances {
            rebalances = now;
            stalls.clear();
        }
        let wait = stalls::until(stalls.next_due(), Instant::now());
        let received = tokio::select! {
            m = consumer.recv() => m,
            _ = tokio::time::sleep(wait) => {
                if let Some(end) = retry_held(state, consumer, routes, options, dead_letter, stop, &mut stalls).await {
                    return end;
                }
                continue;
            }
            _ = super::wait_stop(stop.clone()) => return Ended::Stopped,
        };
        let msg = match received {
            Ok(m) => m,
            Err(e) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if connected {
                    state.metrics.broker_connected("kafka", false);
                    if since.elapsed() > REBUILD_AFTER {
                        return Ended::BrokersLost;
                    }
                }
                tracing::warn!("Kafka: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        failing_since = None;
        if !connected {
            state.metrics.broker_connected("kafka", true);
            connected = true;
        }
        let key: PartitionKey = (msg.topic().to_string(), msg.partition());
        let Some(route) = routes.iter().position(|r| r.topic == key.0) else {
            continue;
        };
        let mut context = Vec::new();
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                if headers_wanted.iter().any(|w| w == header.key) {
                    if let Some(v) = header.value.and_then(|v| std::str::from_utf8(v).ok()) {
                        context.push((header.key.to_string(), v.to_string()));
                    }
                }
            }
        }
        if !key_attribute.is_empty() {
            if let Some(k) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) {
                context.push((key_attribute.clone(), k.to_string()));
            }
        }
        let pending = Pending {
            route,
            offset: msg.offset(),
            stamp_ms: msg
                .timestamp()
                .to_millis()
                .filter(|t| *t > 0)
                .unwrap_or_else(|| state.clock.now_ms()),
            payload: msg.payload().unwrap_or_default().to_vec(),
            context,
            headers: msg.headers().map(|h| h.detach()),
        };
        drop(msg);
        if stalls.is_stalled(&key) {
            stalls.hold(&key, pending);
            continue;
        }
        match handle(
            state,
            consumer,
            routes,
            options,
            dead_letter,
            stop,
            &key,
            &pending,
        )
        .await
        {
            Handled::Done => {}
            Handled::Stopped => return Ended::Stopped,
            Handled::Refused => {
                set_paused(consumer, &key, true);
                stalls.stall(key, pending, Instant::now());
            }
        }
    }
}

/// Retries the held messages that are due, in their partitions' order.
async fn retry_held(
    state: &AppState,
    consumer: &StreamConsumer<GroupContext>,
    routes: &[Route],
    options: &DecodeOptions,
    dead_letter: &Option<FutureProducer>,
    stop: &watch::Receiver<bool>,
    stalls: &mut Stalls<Pending>,
) -> Option<Ended> {
    for key in stalls.due(Instant::now()) {
        while let Some(pending) = stalls.front(&key) {
            match handle(
                state,
                consumer,
                routes,
                options,
                dead_letter,
                stop,
                &key,
                pending,
            )
            .await
            {
                Handled::Stopped => return Some(Ended::Stopped),
                Handled::Refused => {
                    stalls.refused_again(&key, Instant::now());
                    break;
                }
                Handled::Done => {
                    if stalls.done_front(&key) {
                        set_paused(consumer, &key, false);
                        break;
                    }
                }
            }
        }
    }
    None
}

fn set_paused(
    consumer: &StreamConsumer<GroupContext>,
    (topic, partition): &PartitionKey,
    pause: bool,
) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, *partition, Offset::Invalid)
        .is_err()
    {
        return;
    }
    let done = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = done {
        // A partition revoked meanwhile is no longer ours to pause.
        tracing::debug!(%topic, partition, pause, "Kafka: {e}");
    }
}

/// Ingests one message once; on success (or a malformed message dealt
/// with) stores its offset for commit.
#[allow(clippy::too_many_arguments)]
async fn handle(
    state: &AppState,
    consumer: &StreamConsumer<GroupContext>,
    routes: &[Route],
    options: &DecodeOptions,
    dead_letter: &Option<FutureProducer>,
    stop: &watch::Receiver<bool>,
    (topic, partition): &PartitionKey,
    p: &Pending,
) -> Handled {
    let (topic, partition, offset) = (topic.as_str(), *partition, p.offset);
    let m = Message {
        payload: p.payload.clone(),
        context: p.context.clone(),
        stamp_ms: p.stamp_ms,
    };
    match ingest(state, "kafka", &routes[p.route], options, m).await {
        Ok(_) => state.metrics.broker_message("kafka", topic, "stored"),
        Err(Failure::Retry(e)) => {
            if *stop.borrow() {
                // Shutting down with the message unstored: its offset stays.
                return Handled::Stopped;
            }
            tracing::warn!(%topic, partition, offset, "Kafka: {e}; this partition waits and retries");
            return Handled::Refused;
        }
        Err(Failure::Malformed(why)) => {
            state.metrics.broker_message("kafka", topic, "malformed");
            tracing::warn!(%topic, partition, offset, "Kafka: skipping a malformed message: {why}");
            if let Some(producer) = dead_letter {
                // Until the copy is at the broker the offset must not
                // move past it.
                let mut attempt = 0;
                while !dead_letter_copy(
                    state,
                    producer,
                    (topic, partition, offset),
                    &p.payload,
                    p.headers.clone(),
                    &why,
                )
                .await
                {
                    if *stop.borrow() {
                        return Handled::Stopped;
                    }
                    tokio::time::sleep(retry_delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        tracing::warn!(%topic, partition, offset, "Kafka: cannot store the offset: {e}");
    }
    Handled::Done
}

/// Commits what is stored before leaving the group.
fn finish(consumer: &StreamConsumer<GroupContext>) {
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    consumer.unsubscribe();
}

/// Copies a malformed message to the dead-letter topic with where it came
/// from and why; true once the broker has it.
async fn dead_letter_copy(
    state: &AppState,
    producer: &FutureProducer,
    (topic, partition, offset): (&str, i32, i64),
    payload: &[u8],
    headers: Option<OwnedHeaders>,
    why: &str,
) -> bool {
    use rdkafka::message::Header;
    let (p, o) = (partition.to_string(), offset.to_string());
    let headers = headers
        .unwrap_or_default()
        .insert(Header {
            key: "sonde.source.topic",
            value: Some(topic),
        })
        .insert(Header {
            key: "sonde.source.partition",
            value: Some(&p),
        })
        .insert(Header {
            key: "sonde.source.offset",
            value: Some(&o),
        })
        .insert(Header {
            key: "sonde.error",
            value: Some(why),
        });
    let record: FutureRecord<'_, (), [u8]> =
        FutureRecord::to(&state.config.kafka_dead_letter_topic)
            .payload(payload)
            .headers(headers);
    match producer.send(record, Duration::from_secs(30)).await {
        Ok(_) => {
            state
                .metrics
                .broker_message("kafka", topic, "dead_lettered");
            true
        }
        Err((e, _)) => {
            tracing::error!(%topic, partition, offset, "Kafka: cannot write to the dead-letter topic: {e}");
            false
        }
    }
}
