//! The Jaeger query HTTP API (`/api/services`, `/api/traces`, …) in
//! Jaeger's JSON shapes, so Grafana's Jaeger data source and Jaeger's own
//! tooling read Sonde's traces.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use sonde_model::records::{AttrValue, Attributes, SpanRecord, StatusCode as SpanStatus, TraceId};
use sonde_records::TraceQuery;

use crate::api::{json_response, off_thread, ApiError, Params};
use crate::app::AppState;
use crate::records_api::parse_duration_ns;

/// Jaeger's envelope: `{"data": …, "total": n, "limit": 0, "offset": 0, "errors": null}`.
fn envelope(data: Value, total: usize) -> Response {
    let body = json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null});
    json_response(StatusCode::OK, body.to_string())
}

fn jaeger_error(status: StatusCode, msg: &str) -> Response {
    let body = json!({
        "data": null, "total": 0, "limit": 0, "offset": 0,
        "errors": [{"code": status.as_u16(), "msg": msg}],
    });
    json_response(status, body.to_string())
}

/// Lets handlers return early with a Jaeger-shaped error.
fn jaeger_result(r: Result<Response, (StatusCode, String)>) -> Result<Response, ApiError> {
    Ok(r.unwrap_or_else(|(status, msg)| jaeger_error(status, &msg)))
}

fn tag(key: &str, v: &AttrValue) -> Value {
    let (ty, value) = match v {
        AttrValue::Str(s) | AttrValue::Json(s) => ("string", json!(s)),
        AttrValue::Bool(b) => ("bool", json!(b)),
        AttrValue::Int(i) => ("int64", json!(i)),
        AttrValue::Double(d) => ("float64", json!(d)),
        AttrValue::Bytes(_) => ("binary", json!(v.as_text())),
    };
    json!({"key": key, "type": ty, "value": value})
}

fn tags(attrs: &Attributes) -> Vec<Value> {
    attrs.iter().map(|(k, v)| tag(k, v)).collect()
}

fn str_tag(key: &str, value: &str) -> Value {
    json!({"key": key, "type": "string", "value": value})
}

/// Jaeger wants microseconds.
fn micros(ns: i64) -> i64 {
    ns.div_euclid(1000)
}

/// One trace in Jaeger's JSON model: spans with references, tags and logs,
/// and a process table keyed by service and resource.
fn trace_json(id: &TraceId, spans: &[SpanRecord]) -> Value {
    let mut processes: BTreeMap<String, Value> = BTreeMap::new();
    let mut process_ids: Vec<(*const sonde_model::records::Origin, String)> = Vec::new();
    let mut out = Vec::with_capacity(spans.len());
    for s in spans {
        let key = std::sync::Arc::as_ptr(&s.origin);
        let pid = match process_ids.iter().find(|(p, _)| *p == key) {
            Some((_, pid)) => pid.clone(),
            None => {
                // Distinct origins with equal content share one process.
                let content = json!({
                    "serviceName": s.origin.service,
                    "tags": tags(&s.origin.resource),
                });
                let pid = match processes.iter().find(|(_, v)| **v == content) {
                    Some((pid, _)) => pid.clone(),
                    None => {
                        let pid = format!("p{}", processes.len() + 1);
                        processes.insert(pid.clone(), content);
                        pid
                    }
                };
                process_ids.push((key, pid.clone()));
                pid
            }
        };
        let mut span_tags = tags(&s.attributes);
        if s.kind != sonde_model::records::SpanKind::Unspecified {
            span_tags.push(str_tag("span.kind", s.kind.as_str()));
        }
        match s.status {
            SpanStatus::Error => {
                span_tags.push(json!({"key": "error", "type": "bool", "value": true}));
                span_tags.push(str_tag("otel.status_code", "ERROR"));
            }
            SpanStatus::Ok => span_tags.push(str_tag("otel.status_code", "OK")),
            SpanStatus::Unset => {}
        }
        if !s.status_message.is_empty() {
            span_tags.push(str_tag("otel.status_description", &s.status_message));
        }
        if !s.origin.scope_name.is_empty() {
            span_tags.push(str_tag("otel.scope.name", &s.origin.scope_name));
        }
        if !s.origin.scope_version.is_empty() {
            span_tags.push(str_tag("otel.scope.version", &s.origin.scope_version));
        }
        let mut references: Vec<Value> = Vec::new();
        if let Some(parent) = s.parent_span_id {
            references.push(
                json!({"refType": "CHILD_OF", "traceID": id.to_hex(), "spanID": parent.to_hex()}),
            );
        }
        for l in &s.links {
            references.push(json!({"refType": "FOLLOWS_FROM", "traceID": l.trace_id.to_hex(), "spanID": l.span_id.to_hex()}));
        }
        let logs: Vec<Value> = s
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![str_tag("event", &e.name)];
                fields.extend(tags(&e.attributes));
                json!({"timestamp": micros(e.time_ns), "fields": fields})
            })
            .collect();
        out.push(json!({
            "traceID": id.to_hex(),
            "spanID": s.span_id.to_hex(),
            "operationName": s.name,
            "references": references,
            "flags": s.flags,
            "startTime": micros(s.start_ns),
            "duration": micros(s.duration_ns()),
            "tags": span_tags,
            "logs": logs,
            "processID": pid,
            "warnings": null,
        }));
    }
    json!({"traceID": id.to_hex(), "spans": out, "processes": processes, "warnings": null})
}

/// Jaeger trace ids may be given without leading zeros.
fn parse_jaeger_trace_id(s: &str) -> Option<TraceId> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    TraceId::parse(&format!("{s:0>32}")).ok()
}

/// `GET /api/services`
pub async fn services(State(state): State<AppState>) -> Response {
    off_thread(&state, "jaeger", |st| {
        let names: Vec<String> = st
            .records
            .catalog()
            .services
            .into_iter()
            .filter(|(_, seen)| seen.spans > 0)
            .map(|(name, _)| name)
            .collect();
        let n = names.len();
        Ok(envelope(json!(names), n))
    })
    .await
}

/// `GET /api/services/{service}/operations`
pub async fn service_operations(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Response {
    off_thread(&state, "jaeger", move |st| {
        let catalog = st.records.catalog();
        let names: Vec<&String> = catalog
            .operations
            .get(&service)
            .map(|ops| ops.keys().collect())
            .unwrap_or_default();
        let n = names.len();
        Ok(envelope(json!(names), n))
    })
    .await
}

/// `GET /api/operations?service=…&spanKind=…` (what Grafana asks).
pub async fn operations(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    off_thread(&state, "jaeger", move |st| {
        let p = Params::parse(query, &HeaderMap::new(), &[])?;
        let service = p.get("service").unwrap_or("").to_string();
        let kind = p
            .get("spanKind")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        let catalog = st.records.catalog();
        let ops: Vec<Value> = catalog
            .operations
            .get(&service)
            .map(|ops| {
                ops.iter()
                    .filter(|(_, k)| kind.as_deref().is_none_or(|want| k.as_str() == want))
                    .map(|(name, k)| json!({"name": name, "spanKind": k.as_str()}))
                    .collect()
            })
            .unwrap_or_default();
        let n = ops.len();
        Ok(envelope(Value::Array(ops), n))
    })
    .await
}

/// `GET /api/traces/{traceID}`
pub async fn trace(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    off_thread(&state, "jaeger", move |st| {
        jaeger_result((|| {
            let id = parse_jaeger_trace_id(&id).ok_or((
                StatusCode::BAD_REQUEST,
                format!("malformed trace id {id:?}"),
            ))?;
            let spans = st
                .records
                .trace(&id)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if spans.is_empty() {
                return Err((StatusCode::NOT_FOUND, "trace not found".to_string()));
            }
            Ok(envelope(json!([trace_json(&id, &spans)]), 1))
        })())
    })
    .await
}

/// The search of `GET /api/traces`, from Jaeger's parameters.
fn jaeger_query(p: &Params, now_ns: i64) -> Result<TraceQuery, String> {
    let service = p
        .get("service")
        .filter(|s| !s.is_empty())
        .ok_or("parameter 'service' is required")?;
    let micros_param = |key: &str| -> Result<Option<i64>, String> {
        p.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map(|us| us.saturating_mul(1000))
                    .map_err(|_| {
                        format!("invalid {key} {v:?}: expected microseconds since the epoch")
                    })
            })
            .transpose()
    };
    let end = micros_param("end")?.unwrap_or(now_ns);
    let lookback = match p
        .get("lookback")
        .filter(|v| !v.is_empty() && *v != "custom")
    {
        Some(v) => parse_duration_ns(v).ok_or(format!("invalid lookback {v:?}"))?,
        None => 3600 * 1_000_000_000,
    };
    let start = micros_param("start")?.unwrap_or(end - lookback);
    let mut q = TraceQuery::new(start, end);
    q.service = Some(service.to_string());
    q.name = p
        .get("operation")
        .filter(|s| !s.is_empty() && *s != "all")
        .map(str::to_string);
    let dur = |key: &str| -> Result<Option<i64>, String> {
        p.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| parse_duration_ns(v).ok_or(format!("invalid {key} {v:?}")))
            .transpose()
    };
    q.min_duration_ns = dur("minDuration")?;
    q.max_duration_ns = dur("maxDuration")?;
    // Tags come as JSON (`tags={"k":"v"}`) or repeated `tag=k:v`.
    if let Some(t) = p.get("tags").filter(|t| !t.is_empty()) {
        let map: BTreeMap<String, Value> =
            serde_json::from_str(t).map_err(|e| format!("invalid tags {t:?}: {e}"))?;
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            push_tag(&mut q, k, v);
        }
    }
    for t in p.all("tag") {
        let (k, v) = t
            .split_once(':')
            .ok_or(format!("invalid tag {t:?}: expected key:value"))?;
        push_tag(&mut q, k.to_string(), v.to_string());
    }
    q.limit = match p.get("limit").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("invalid limit {v:?}"))?
            .clamp(1, 1500),
        None => 20,
    };
    Ok(q)
}

/// `error=true` is how Jaeger users ask for failed spans.
fn push_tag(q: &mut TraceQuery, k: String, v: String) {
    if k == "error" && v == "true" {
        q.errors_only = true;
    } else {
        q.attributes.push((k, v));
    }
}

/// `GET /api/traces?service=…&operation=…&tags=…&start=…&end=…&minDuration=…&maxDuration=…&limit=…`
pub async fn find_traces(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    off_thread(&state, "jaeger", move |st| {
        jaeger_result((|| {
            let p = Params::parse(query, &HeaderMap::new(), &[])
                .map_err(|e| (StatusCode::BAD_REQUEST, e.message))?;
            let now_ns = st.clock.now_ms().saturating_mul(1_000_000);
            let q = jaeger_query(&p, now_ns).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
            let internal =
                |e: sonde_records::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            let found = st.records.search_traces(&q).map_err(internal)?;
            let mut traces = Vec::with_capacity(found.len());
            for s in &found {
                let spans = st.records.trace(&s.trace_id).map_err(internal)?;
                traces.push(trace_json(&s.trace_id, &spans));
            }
            let n = traces.len();
            Ok(envelope(Value::Array(traces), n))
        })())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jaeger_ids_are_zero_padded() {
        let id = parse_jaeger_trace_id("abc").unwrap();
        assert_eq!(id.to_hex(), format!("{:0>32}", "abc"));
        assert!(parse_jaeger_trace_id("").is_none());
        assert!(parse_jaeger_trace_id(&"f".repeat(33)).is_none());
    }
}
