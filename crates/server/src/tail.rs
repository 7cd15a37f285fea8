//! Live tail: spans, logs and events pushed to subscribers as Server-Sent
//! Events the moment they are stored.
//!
//! Ingest hands each stored batch (shared, behind an `Arc`) to every
//! subscriber's queue and never waits. Each queue is bounded in bytes
//! (`tail_subscriber_buffer`) and in subscribers (`max_tail_subscribers`),
//! so the memory live tail can pin is at most their product: a subscriber
//! whose queue would overflow (a stalled or slow client) has its queue
//! emptied at once, from the publishing side, even while its connection is
//! not being polled; it is told so in a final `dropped` event and
//! disconnected. One slow browser can never slow down ingest nor hold
//! memory.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use parking_lot::Mutex;
use serde_json::json;
use sonde_model::records::{LogRecord, SpanRecord};
use sonde_records::{EventFilter, LogQuery, TraceQuery};
use tokio::sync::Notify;

use crate::api::{ApiError, Params};
use crate::app::AppState;
use crate::records_api::{log_json, parse_log_query, parse_trace_query, span_json};

#[derive(Debug)]
pub enum TailBatch {
    Spans(Arc<[SpanRecord]>),
    Logs(Arc<[LogRecord]>),
}

impl TailBatch {
    /// An estimate of the heap bytes the batch holds.
    fn bytes(&self) -> usize {
        let attrs = |a: &sonde_model::records::Attributes| -> usize {
            a.iter()
                .map(|(k, v)| k.len() + v.as_text().len() + 48)
                .sum()
        };
        match self {
            TailBatch::Spans(spans) => spans
                .iter()
                .map(|s| {
                    std::mem::size_of::<SpanRecord>()
                        + s.name.len()
                        + s.status_message.len()
                        + attrs(&s.attributes)
                        + s.events
                            .iter()
                            .map(|e| 64 + attrs(&e.attributes))
                            .sum::<usize>()
                })
                .sum(),
            TailBatch::Logs(logs) => logs
                .iter()
                .map(|l| std::mem::size_of::<LogRecord>() + l.body.len() + attrs(&l.attributes))
                .sum(),
        }
    }
}

/// One subscriber's queue of batches not yet turned into events.
#[derive(Default)]
struct Queue {
    batches: VecDeque<(Arc<TailBatch>, usize)>,
    bytes: usize,
    /// Set when the queue overflowed: the batches missed.
    missed: Option<u64>,
}

struct Subscriber {
    queue: Mutex<Queue>,
    wake: Notify,
}

pub struct Tail {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    count: Arc<AtomicUsize>,
    max_subscribers: usize,
    /// Bytes a subscriber may have queued before it counts as too slow.
    queue_bytes: usize,
    dropped: AtomicUsize,
    published: AtomicU64,
    /// Ends every stream at shutdown: a live tail never ends by itself and
    /// would otherwise hold the server's graceful shutdown open.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Tail {
    pub fn new(max_subscribers: usize, queue_bytes: usize) -> Tail {
        Tail {
            subscribers: Mutex::new(Vec::new()),
            count: Arc::new(AtomicUsize::new(0)),
            max_subscribers,
            queue_bytes: queue_bytes.max(64 << 10),
            dropped: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// Becomes true at shutdown; every long-lived stream ends on it.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends all live streams, now and for any subscriber that comes later.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn has_subscribers(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Queues the batch for every subscriber; never waits. A subscriber
    /// whose queue would pass its byte budget loses its queue at once and
    /// is disconnected.
    pub fn publish(&self, batch: TailBatch) {
        let bytes = batch.bytes();
        let batch = Arc::new(batch);
        self.published.fetch_add(1, Ordering::Relaxed);
        for sub in self.subscribers.lock().iter() {
            let mut q = sub.queue.lock();
            if q.missed.is_some() {
                continue;
            }
            if q.bytes + bytes > self.queue_bytes {
                let missed = q.batches.len() as u64 + 1;
                *q = Queue {
                    missed: Some(missed),
                    ..Queue::default()
                };
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                q.bytes += bytes;
                q.batches.push_back((batch.clone(), bytes));
            }
            drop(q);
            sub.wake.notify_one();
        }
    }

    pub fn subscribers(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Subscribers disconnected for being too slow, since start.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes queued for all subscribers (shared batches counted once per
    /// subscriber): at most `max_subscribers` times the per-subscriber
    /// budget.
    pub fn queued_bytes(&self) -> usize {
        self.subscribers
            .lock()
            .iter()
            .map(|s| s.queue.lock().bytes)
            .sum()
    }

    /// Registers a subscriber, or `None` past `max_subscribers`.
    fn subscribe(self: &Arc<Self>) -> Option<Registration> {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.max_subscribers {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let sub = Arc::new(Subscriber {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        });
        self.subscribers.lock().push(sub.clone());
        Some(Registration {
            tail: self.clone(),
            sub,
        })
    }
}

/// A subscriber for as long as its stream lives.
struct Registration {
    tail: Arc<Tail>,
    sub: Arc<Subscriber>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tail
            .subscribers
            .lock()
            .retain(|s| !Arc::ptr_eq(s, &self.sub));
        self.tail.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which signals a subscriber wants, with their filters.
struct Filter {
    spans: Option<TraceQuery>,
    logs: Option<LogQuery>,
}

impl Filter {
    fn events(&self, batch: &TailBatch) -> Vec<Event> {
        match batch {
            TailBatch::Spans(spans) => match &self.spans {
                Some(q) => spans
                    .iter()
                    .filter(|s| q.matches(s))
                    .map(|s| {
                        Event::default()
                            .event("span")
                            .data(span_json(s).to_string())
                    })
                    .collect(),
                None => Vec::new(),
            },
            TailBatch::Logs(logs) => match &self.logs {
                Some(q) => logs
                    .iter()
                    .filter(|l| q.matches(l))
                    .map(|l| {
                        let kind = if l.event_name.is_empty() {
                            "log"
                        } else {
                            "event"
                        };
                        Event::default().event(kind).data(log_json(l).to_string())
                    })
                    .collect(),
                None => Vec::new(),
            },
        }
    }
}

struct Subscription {
    reg: Registration,
    filter: Filter,
    pending: VecDeque<Event>,
    done: bool,
    closing: tokio::sync::watch::Receiver<bool>,
}

/// `GET /api/v1/tail?signal=logs|events|spans|all&service=…&severity=…&contains=…&attr=k=v`
pub async fn tail(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let p = match Params::parse(query, &HeaderMap::new(), &[]) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let signal = p.get("signal").unwrap_or("all").to_string();
    // A tail has no time window: everything from now on passes the range.
    let (lo, hi) = (i64::MIN, i64::MAX);
    let filter = (|| -> Result<Filter, String> {
        let spans = matches!(signal.as_str(), "spans" | "traces" | "all")
            .then(|| parse_trace_query(&p, lo, hi))
            .transpose()?;
        let logs = match signal.as_str() {
            "logs" | "all" => Some(parse_log_query(&p, lo, hi, EventFilter::Any)?),
            "events" => {
                let events = match p.get("name") {
                    Some(n) => EventFilter::Named(n.to_string()),
                    None => EventFilter::Events,
                };
                Some(parse_log_query(&p, lo, hi, events)?)
            }
            "spans" | "traces" => None,
            other => {
                return Err(format!(
                    "unknown signal {other:?}: use logs, events, spans or all"
                ))
            }
        };
        Ok(Filter { spans, logs })
    })();
    let filter = match filter {
        Ok(f) => f,
        Err(msg) => return ApiError::bad_data(msg).into_response(),
    };
    let tail = &state.tail;
    let Some(reg) = tail.subscribe() else {
        return ApiError::new(
            "too_many_requests",
            format!(
                "{} live-tail subscribers already connected (max_tail_subscribers)",
                tail.max_subscribers
            ),
        )
        .into_response();
    };
    let sub = Subscription {
        reg,
        filter,
        pending: VecDeque::new(),
        done: false,
        closing: tail.closing.subscribe(),
    };
    let opening = Event::default()
        .event("subscribed")
        .data(json!({"signal": signal}).to_string());
    let events = stream::once(async move { Ok::<_, Infallible>(opening) }).chain(events_of(sub));
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies must not buffer a live stream.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn events_of(sub: Subscription) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(sub, |mut sub| async move {
        loop {
            if let Some(ev) = sub.pending.pop_front() {
                return Some((Ok(ev), sub));
            }
            if sub.done {
                return None;
            }
            let next = {
                let mut q = sub.reg.sub.queue.lock();
                match q.batches.pop_front() {
                    Some((batch, bytes)) => {
                        q.bytes -= bytes;
                        Ok(Some(batch))
                    }
                    None => match q.missed {
                        Some(missed) => Err(missed),
                        None => Ok(None),
                    },
                }
            };
            match next {
                Ok(Some(batch)) => sub.pending.extend(sub.filter.events(&batch)),
                Ok(None) => {
                    tokio::select! {
                        _ = sub.reg.sub.wake.notified() => {}
                        _ = sub.closing.wait_for(|closing| *closing) => return None,
                    }
                }
                Err(missed) => {
                    sub.done = true;
                    sub.pending.push_back(
                        Event::default().event("dropped").data(
                            json!({
                                "reason": "subscriber too slow; reconnect to resume",
                                "missed_batches": missed,
                            })
                            .to_string(),
                        ),
                    );
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use sonde_model::records::Origin;

    use super::*;

    fn logs(n: usize, body_bytes: usize) -> TailBatch {
        let origin = Arc::new(Origin::default());
        TailBatch::Logs(
            (0..n)
                .map(|i| LogRecord {
                    time_ns: i as i64,
                    observed_ns: i as i64,
                    severity_number: 9,
                    severity_text: String::new(),
                    body: "x".repeat(body_bytes),
                    event_name: String::new(),
                    trace_id: None,
                    span_id: None,
                    flags: 0,
                    origin: origin.clone(),
                    attributes: vec![],
                })
                .collect::<Vec<_>>()
                .into(),
        )
    }

    fn pop(r: &Registration) -> Option<Arc<TailBatch>> {
        let mut q = r.sub.queue.lock();
        let (b, bytes) = q.batches.pop_front()?;
        q.bytes -= bytes;
        Some(b)
    }

    #[test]
    fn a_stalled_subscriber_is_cut_off_and_its_memory_released_at_once() {
        let budget = 1 << 20;
        let tail = Arc::new(Tail::new(2, budget));
        let reader = tail.subscribe().unwrap();
        let stalled = tail.subscribe().unwrap();
        assert!(tail.subscribe().is_none(), "max_tail_subscribers");
        // 100 KiB a batch: the stalled one never reads.
        for _ in 0..40 {
            tail.publish(logs(10, 10 << 10));
            assert!(pop(&reader).is_some());
            assert!(tail.queued_bytes() <= 2 * budget);
        }
        assert_eq!(tail.dropped(), 1);
        let q = stalled.sub.queue.lock();
        assert!(q.batches.is_empty() && q.bytes == 0, "nothing pinned");
        assert!(q.missed.is_some(), "told it missed batches");
        drop(q);
        drop(stalled);
        assert_eq!(tail.subscribers(), 1);
        assert!(tail.subscribe().is_some(), "a place freed");
    }
}
