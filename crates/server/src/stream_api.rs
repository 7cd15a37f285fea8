//! Live PromQL: a range query whose newest points are pushed as they
//! become computable, for charts that stream instead of polling.
//!
//! `GET /api/v1/stream/query_range?query=EXPR&range=15m&step=1s` answers with
//! Server-Sent Events: `event: snapshot` carries the whole window (the
//! `data` of a Prometheus `query_range` response), then every second an
//! `event: points` carries the steps computed since, in the same shape.
//! Each `points` event repeats the last step already sent, recomputed, so a
//! sample that arrived late for it is not lost: clients replace points by
//! timestamp, append newer ones, and drop those older than the window.
//!
//! Several `query` parameters (up to 20: a page of sparklines) share one
//! stream, since a browser opens only six connections to a server; each
//! event's data is then `{"results": [data of query 1, data of query 2, …]}`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use crate::api::{parse_step, query_error, render_value, ApiError, Params, StoreQueryable};
use crate::app::AppState;
use crate::records_api::parse_duration_ns;

/// Points per series per window, as for `query_range`.
const MAX_POINTS: i64 = 11_000;
const MAX_QUERIES: usize = 20;
/// How long after a step boundary its value is computed: samples stamped
/// just before the boundary are still arriving.
const BOUNDARY_SLACK_MS: i64 = 50;

/// Holds one of the `max_live_queries` places while its stream lives.
struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    fn take(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

struct Live {
    _slot: Slot,
    state: AppState,
    exprs: Vec<String>,
    step_ms: i64,
    /// The last step time already sent.
    last_ms: i64,
    range_ms: i64,
    closing: tokio::sync::watch::Receiver<bool>,
}

fn align(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

/// The window's results: one query's `query_range` data, or several in
/// `{"results": [...]}`.
async fn evaluate(live: &Live, start: i64, end: i64) -> Result<String, ApiError> {
    let _permit = live
        .state
        .query_permits
        .acquire()
        .await
        .map_err(|_| ApiError::new("unavailable", "server is shutting down"))?;
    let st = live.state.clone();
    let (exprs, step) = (live.exprs.clone(), live.step_ms);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(exprs.len());
        for expr in &exprs {
            let v = st
                .engine
                .range(&StoreQueryable(st.store.clone()), expr, start, end, step)
                .map_err(query_error)?;
            out.push(render_value(&v));
        }
        Ok(match out.len() {
            1 => out.remove(0),
            _ => format!(r#"{{"results":[{}]}}"#, out.join(",")),
        })
    })
    .await
    .map_err(|e| ApiError::new("internal", format!("query task failed: {e}")))?
}

pub async fn query_range(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let setup = (|| -> Result<Live, ApiError> {
        let p = Params::parse(q, &HeaderMap::new(), &[])?;
        let exprs: Vec<String> = p
            .all("query")
            .into_iter()
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if exprs.is_empty() {
            return Err(ApiError::bad_data(
                "invalid parameter \"query\": missing query",
            ));
        }
        if exprs.len() > MAX_QUERIES {
            return Err(ApiError::bad_data(format!(
                "at most {MAX_QUERIES} queries share one stream"
            )));
        }
        let step_ms = match p.get("step") {
            Some(s) => parse_step(s)
                .filter(|s| *s > 0)
                .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"step\": {s:?}")))?,
            None => 1000,
        };
        let range_ms = match p.get("range") {
            Some(r) => parse_duration_ns(r)
                .map(|ns| ns / 1_000_000)
                .filter(|ms| *ms > 0)
                .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"range\": {r:?}")))?,
            None => 15 * 60 * 1000,
        };
        if range_ms / step_ms > MAX_POINTS {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries; use a larger step",
            ));
        }
        // Each stream holds at most one window's result at a time, and a
        // stalled client stops its evaluations (the stream is not polled):
        // the cap on streams bounds what live queries can hold.
        let slot = Slot::take(&state.live_queries, state.config.max_live_queries.max(1))
            .ok_or_else(|| {
                ApiError::new(
                    "too_many_requests",
                    format!(
                        "{} live queries already streaming (max_live_queries)",
                        state.config.max_live_queries
                    ),
                )
            })?;
        Ok(Live {
            _slot: slot,
            closing: state.tail.closing(),
            state: state.clone(),
            exprs,
            step_ms,
            last_ms: 0,
            range_ms,
        })
    })();
    let mut live = match setup {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    // A query that cannot run is an ordinary error response, not a stream.
    let now = state.clock.now_ms();
    let end = align(now, live.step_ms);
    let snapshot = match evaluate(&live, end - live.range_ms, end).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    live.last_ms = end;
    let first = Event::default().event("snapshot").data(snapshot);
    let events = stream::unfold((live, Some(first)), |(mut live, first)| async move {
        if let Some(ev) = first {
            return Some((Ok::<_, Infallible>(ev), (live, None)));
        }
        loop {
            // Wake just after the next step boundary (at most a second
            // away), so a new step is computed as soon as it exists.
            let now = live.state.clock.now_ms();
            let next = align(now, live.step_ms) + live.step_ms;
            let wait = (next - now + BOUNDARY_SLACK_MS).clamp(10, 1000) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = live.closing.wait_for(|c| *c) => return None,
            }
            let end = align(live.state.clock.now_ms(), live.step_ms);
            if end <= live.last_ms {
                continue;
            }
            // From the last step already sent: late samples may change it.
            let start = live.last_ms.max(end - live.range_ms);
            let ev = match evaluate(&live, start, end).await {
                Ok(data) => {
                    live.last_ms = end;
                    Event::default().event("points").data(data)
                }
                Err(e) => Event::default().event("error").data(e.message),
            };
            return Some((Ok(ev), (live, None)));
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
