//! Live tail: spans, logs and events pushed to subscribers as Server-Sent
//! Events the moment they are stored.
//!
//! Ingest publishes each stored batch to a bounded broadcast channel and
//! never waits: a subscriber that falls more than the channel behind misses
//! batches, is told so in a final `dropped` event, and is disconnected. One
//! slow browser can never slow down ingest.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use sonde_model::records::{LogRecord, SpanRecord};
use sonde_records::{EventFilter, LogQuery, TraceQuery};
use tokio::sync::broadcast;

use crate::api::{ApiError, Params};
use crate::app::AppState;
use crate::records_api::{log_json, parse_log_query, parse_trace_query, span_json};

/// Batches buffered per subscriber before it counts as too slow.
const CHANNEL_BATCHES: usize = 1024;

#[derive(Debug)]
pub enum TailBatch {
    Spans(Arc<[SpanRecord]>),
    Logs(Arc<[LogRecord]>),
}

pub struct Tail {
    tx: broadcast::Sender<Arc<TailBatch>>,
    subscribers: Arc<AtomicUsize>,
    max_subscribers: usize,
    dropped: AtomicUsize,
    /// Ends every stream at shutdown: a live tail never ends by itself and
    /// would otherwise hold the server's graceful shutdown open.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Tail {
    pub fn new(max_subscribers: usize) -> Tail {
        Tail {
            tx: broadcast::channel(CHANNEL_BATCHES).0,
            subscribers: Arc::new(AtomicUsize::new(0)),
            max_subscribers,
            dropped: AtomicUsize::new(0),
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
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, batch: TailBatch) {
        // An error only means nobody listens any more.
        let _ = self.tx.send(Arc::new(batch));
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Subscribers disconnected for being too slow, since start.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
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

/// Counts a subscriber for as long as its stream lives.
struct Subscription {
    rx: broadcast::Receiver<Arc<TailBatch>>,
    count: Arc<AtomicUsize>,
    filter: Filter,
    pending: std::collections::VecDeque<Event>,
    done: bool,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
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
    if tail.subscribers.fetch_add(1, Ordering::Relaxed) >= tail.max_subscribers {
        tail.subscribers.fetch_sub(1, Ordering::Relaxed);
        return ApiError::new(
            "too_many_requests",
            format!(
                "{} live-tail subscribers already connected (max_tail_subscribers)",
                tail.max_subscribers
            ),
        )
        .into_response();
    }
    let sub = Subscription {
        rx: tail.tx.subscribe(),
        count: tail.subscribers.clone(),
        filter,
        pending: std::collections::VecDeque::new(),
        done: false,
        closing: tail.closing.subscribe(),
    };
    let opening = Event::default()
        .event("subscribed")
        .data(json!({"signal": signal}).to_string());
    let state2 = state.clone();
    let events =
        stream::once(async move { Ok::<_, Infallible>(opening) }).chain(events_of(sub, state2));
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies must not buffer a live stream.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn events_of(sub: Subscription, state: AppState) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold((sub, state), |(mut sub, state)| async move {
        loop {
            if let Some(ev) = sub.pending.pop_front() {
                return Some((Ok(ev), (sub, state)));
            }
            if sub.done {
                return None;
            }
            let received = tokio::select! {
                r = sub.rx.recv() => r,
                _ = sub.closing.wait_for(|closing| *closing) => return None,
            };
            match received {
                Ok(batch) => sub.pending.extend(sub.filter.events(&batch)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    state.tail.dropped.fetch_add(1, Ordering::Relaxed);
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
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
