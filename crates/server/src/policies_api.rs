//! HTTP endpoints of the runtime collection policies (`docs/policies.md`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{json, Value};

use crate::api::{success, ApiError, Params};
use crate::app::AppState;
use crate::policies::{Policy, Settings};

const MAX_BODY: usize = 64 << 10;

fn now_ns(state: &AppState) -> i64 {
    state.clock.now_ms().saturating_mul(1_000_000)
}

fn effective_json(version: u64, s: &Settings) -> Value {
    let mut v = s.to_json();
    v["version"] = json!(version);
    v
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_data(format!(
            "body larger than {MAX_BODY} bytes"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_data(format!("invalid JSON: {e}")))
}

/// `GET /api/v1/policies`
pub async fn list(State(state): State<AppState>) -> Response {
    let data: Vec<Value> = state.policies.list().iter().map(Policy::json).collect();
    success(&Value::Array(data).to_string())
}

/// `PUT /api/v1/policies/{id}`
pub async fn put(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let result = json_body(&body)
        .and_then(|v| Policy::parse(&id, &v, now_ns(&state)).map_err(ApiError::bad_data));
    match result {
        Ok(policy) => {
            let stored = state.policies.put(policy);
            tracing::info!(policy = %stored.json(), "collection policy set");
            success(&stored.json().to_string())
        }
        Err(e) => e.into_response(),
    }
}

/// `DELETE /api/v1/policies/{id}`
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if state.policies.delete(&id) {
        tracing::info!(policy = %id, "collection policy deleted");
        success("null")
    } else {
        ApiError::new("not_found", format!("no policy {id:?}")).into_response()
    }
}

fn client_params(query: Option<String>) -> Result<Params, ApiError> {
    Params::parse(query, &HeaderMap::new(), &[])
}

/// `GET /api/v1/policies/effective?service=&host=`
pub async fn effective(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let p = match client_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (version, s) = state
        .policies
        .effective(p.get("service").unwrap_or(""), p.get("host").unwrap_or(""));
    success(&effective_json(version, &s).to_string())
}

/// Marks the client connected for as long as its stream lives.
struct Watching {
    state: AppState,
    client_id: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let now = now_ns(&self.state);
        self.state.policies.watching(&self.client_id, -1, now);
    }
}

struct Watch {
    guard: Watching,
    service: String,
    host: String,
    changed: tokio::sync::watch::Receiver<u64>,
    closing: tokio::sync::watch::Receiver<bool>,
    last_sent: Option<Settings>,
}

/// `GET /api/v1/policies/watch?service=&host=&client_id=&kind=`: the
/// client's effective policy now and at every change that affects it.
pub async fn watch(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let p = match client_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let client_id = match p
        .get("client_id")
        .filter(|c| !c.is_empty() && c.len() <= 256)
    {
        Some(c) => c.to_string(),
        None => return ApiError::bad_data("client_id is required").into_response(),
    };
    state.policies.watching(&client_id, 1, now_ns(&state));
    let w = Watch {
        service: p.get("service").unwrap_or("").to_string(),
        host: p.get("host").unwrap_or("").to_string(),
        changed: state.policies.subscribe(),
        closing: state.tail.closing(),
        guard: Watching {
            state: state.clone(),
            client_id,
        },
        last_sent: None,
    };
    let events = stream::unfold(w, |mut w| async move {
        loop {
            let (version, settings) = w.guard.state.policies.effective(&w.service, &w.host);
            if w.last_sent.as_ref() != Some(&settings) {
                let ev = Event::default()
                    .event("policy")
                    .data(effective_json(version, &settings).to_string());
                w.last_sent = Some(settings);
                return Some((Ok::<_, Infallible>(ev), w));
            }
            tokio::select! {
                changed = w.changed.changed() => if changed.is_err() { return None },
                _ = w.closing.wait_for(|c| *c) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `POST /api/v1/clients/status`
pub async fn report_status(State(state): State<AppState>, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|v| {
        state
            .policies
            .report_status(v, now_ns(&state))
            .map_err(ApiError::bad_data)
    });
    match result {
        Ok(()) => success("null"),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/clients`
pub async fn clients(State(state): State<AppState>) -> Response {
    success(&Value::Array(state.policies.clients()).to_string())
}
