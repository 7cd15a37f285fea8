//! Sonde's API for traces, logs, events, and the services and hosts seen
//! across all signals. Responses use the Prometheus envelope
//! (`{"status":"success","data":…}`) so one client handles every endpoint.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};
use sonde_model::records::{
    parse_severity, AttrValue, Attributes, LogRecord, SpanId, SpanRecord, TraceId,
};
use sonde_model::{Matcher, METRIC_NAME};
use sonde_records::{Cursor, EventFilter, LogQuery, TraceQuery, TraceSummary};

use crate::api::{off_thread, success, ApiError, Params};
use crate::app::AppState;

/// Searches look back this far when no `start` is given.
const DEFAULT_LOOKBACK_NS: i64 = 3600 * 1_000_000_000;
const MAX_TRACE_LIMIT: usize = 1000;
const MAX_LOG_LIMIT: usize = 5000;

pub(crate) fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!(s),
        AttrValue::Bool(b) => json!(b),
        AttrValue::Int(i) => json!(i),
        // JSON has no NaN or infinities; their names keep the value visible.
        AttrValue::Double(d) if !d.is_finite() => json!(v.as_text()),
        AttrValue::Double(d) => json!(d),
        AttrValue::Bytes(_) => json!(v.as_text()),
        AttrValue::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
    }
}

pub(crate) fn attrs_json(attrs: &Attributes) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), attr_json(v)))
            .collect::<Map<_, _>>(),
    )
}

pub(crate) fn span_json(s: &SpanRecord) -> Value {
    json!({
        "traceId": s.trace_id.to_hex(),
        "spanId": s.span_id.to_hex(),
        "parentSpanId": s.parent_span_id.map(|p| p.to_hex()).unwrap_or_default(),
        "traceState": s.trace_state,
        "flags": s.flags,
        "name": s.name,
        "kind": s.kind.as_str(),
        "service": s.origin.service,
        "host": s.origin.host,
        "startTimeUnixNano": s.start_ns.to_string(),
        "endTimeUnixNano": s.end_ns.to_string(),
        "durationNs": s.duration_ns(),
        "status": {"code": s.status.as_str(), "message": s.status_message},
        "attributes": attrs_json(&s.attributes),
        "resource": attrs_json(&s.origin.resource),
        "scope": {"name": s.origin.scope_name, "version": s.origin.scope_version},
        "events": s.events.iter().map(|e| json!({
            "timeUnixNano": e.time_ns.to_string(),
            "name": e.name,
            "attributes": attrs_json(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({
            "traceId": l.trace_id.to_hex(),
            "spanId": l.span_id.to_hex(),
            "traceState": l.trace_state,
            "attributes": attrs_json(&l.attributes),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn log_json(l: &LogRecord) -> Value {
    json!({
        "timeUnixNano": l.time_ns.to_string(),
        "observedTimeUnixNano": l.observed_ns.to_string(),
        "severityNumber": l.severity_number,
        "severityText": if l.severity_text.is_empty() {
            sonde_model::records::severity_name(l.severity_number).to_string()
        } else {
            l.severity_text.clone()
        },
        "body": l.body,
        "eventName": l.event_name,
        "traceId": l.trace_id.map(|t| t.to_hex()).unwrap_or_default(),
        "spanId": l.span_id.map(|s| s.to_hex()).unwrap_or_default(),
        "flags": l.flags,
        "service": l.origin.service,
        "host": l.origin.host,
        "attributes": attrs_json(&l.attributes),
        "resource": attrs_json(&l.origin.resource),
        "scope": {"name": l.origin.scope_name, "version": l.origin.scope_version},
    })
}

fn summary_json(s: &TraceSummary) -> Value {
    json!({
        "traceId": s.trace_id.to_hex(),
        "rootService": s.root_service,
        "rootName": s.root_name,
        "startTimeUnixNano": s.start_ns.to_string(),
        "durationNs": s.duration_ns,
        "spanCount": s.span_count,
        "errorCount": s.error_count,
        "services": s.services,
    })
}

pub(crate) use sonde_model::time::parse_duration_ns;

fn attr_filters(p: &Params) -> Result<Vec<(String, String)>, String> {
    p.all("attr")
        .into_iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("invalid attr {a:?}: expected key=value"))
        })
        .collect()
}

fn time_range_ns(p: &Params, lo: i64, hi: i64) -> Result<(i64, i64), String> {
    let ms_to_ns = |ms: i64| ms.saturating_mul(1_000_000);
    let end = match p.get("end") {
        Some(_) => ms_to_ns(p.time("end", 0).map_err(|e| e.message)?),
        None => hi,
    };
    let start = match p.get("start") {
        Some(_) => ms_to_ns(p.time("start", 0).map_err(|e| e.message)?),
        None => lo,
    };
    if start > end {
        return Err("start is after end".into());
    }
    Ok((start, end))
}

fn duration_param(p: &Params, key: &str) -> Result<Option<i64>, String> {
    p.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            parse_duration_ns(v)
                .ok_or_else(|| format!("invalid {key} {v:?}: expected a duration like 250ms, 1.5s"))
        })
        .transpose()
}

fn limit_param(p: &Params, default: usize, max: usize) -> Result<usize, String> {
    match p.get("limit") {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.clamp(1, max))
            .map_err(|_| format!("invalid limit {v:?}")),
    }
}

/// A trace search from query parameters; `lo`/`hi` are the default window.
pub(crate) fn parse_trace_query(p: &Params, lo: i64, hi: i64) -> Result<TraceQuery, String> {
    let (start, end) = time_range_ns(p, lo, hi)?;
    let mut q = TraceQuery::new(start, end);
    q.service = p
        .get("service")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    q.name = p
        .get("name")
        .or_else(|| p.get("operation"))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    q.min_duration_ns = duration_param(p, "minDuration")?;
    q.max_duration_ns = duration_param(p, "maxDuration")?;
    q.errors_only = match p.get("status") {
        None | Some("") | Some("any") => false,
        Some("error") => true,
        Some(other) => return Err(format!("invalid status {other:?}: use error or any")),
    };
    q.attributes = attr_filters(p)?;
    q.limit = limit_param(p, 20, MAX_TRACE_LIMIT)?;
    Ok(q)
}

pub(crate) fn parse_log_query(
    p: &Params,
    lo: i64,
    hi: i64,
    events: EventFilter,
) -> Result<LogQuery, String> {
    let (start, end) = time_range_ns(p, lo, hi)?;
    let mut q = LogQuery::new(start, end);
    q.service = p
        .get("service")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    q.host = p.get("host").filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(sev) = p.get("severity").filter(|s| !s.is_empty()) {
        q.min_severity = parse_severity(sev).ok_or_else(|| {
            format!("invalid severity {sev:?}: use trace, debug, info, warn, error, fatal or 0-24")
        })?;
    }
    q.contains = p
        .get("contains")
        .or_else(|| p.get("q"))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    q.attributes = attr_filters(p)?;
    q.trace_id = p
        .get("traceId")
        .filter(|s| !s.is_empty())
        .map(TraceId::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    q.span_id = p
        .get("spanId")
        .filter(|s| !s.is_empty())
        .map(SpanId::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    q.events = match p.get("event") {
        Some("*") => EventFilter::Events,
        Some(n) if !n.is_empty() => EventFilter::Named(n.to_string()),
        _ => events,
    };
    q.limit = limit_param(p, 100, MAX_LOG_LIMIT)?;
    q.cursor = p
        .get("cursor")
        .filter(|s| !s.is_empty())
        .map(|c| Cursor::parse(c).ok_or_else(|| format!("invalid cursor {c:?}")))
        .transpose()?;
    Ok(q)
}

fn params(query: Option<String>) -> Result<Params, ApiError> {
    Params::parse(query, &HeaderMap::new(), &[])
}

fn now_ns(state: &AppState) -> i64 {
    state.clock.now_ms().saturating_mul(1_000_000)
}

fn internal(e: sonde_records::Error) -> ApiError {
    ApiError::new("internal", e.to_string())
}

/// `GET /api/v1/traces/{traceId}`: every span of the trace and the logs
/// that carry its id.
pub async fn get_trace(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    off_thread(&state, "trace", move |st| {
        let id = TraceId::parse(&id).map_err(|e| ApiError::bad_data(e.to_string()))?;
        let spans = st.records.trace(&id).map_err(internal)?;
        if spans.is_empty() {
            return Err(ApiError::new("not_found", format!("trace {id} not found")));
        }
        let logs = st.records.trace_logs(&id).map_err(internal)?;
        let data = json!({
            "traceId": id.to_hex(),
            "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
            "logs": logs.iter().map(log_json).collect::<Vec<_>>(),
        });
        Ok(success(&data.to_string()))
    })
    .await
}

/// `GET /api/v1/traces?service=&name=&minDuration=&maxDuration=&status=error&attr=k=v&start=&end=&limit=`
pub async fn search_traces(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    off_thread(&state, "trace_search", move |st| {
        let p = params(query)?;
        let now = now_ns(st);
        let q =
            parse_trace_query(&p, now - DEFAULT_LOOKBACK_NS, now).map_err(ApiError::bad_data)?;
        let found = st.records.search_traces(&q).map_err(internal)?;
        let data: Vec<Value> = found.iter().map(summary_json).collect();
        Ok(success(&Value::Array(data).to_string()))
    })
    .await
}

async fn logs_page(state: AppState, query: Option<String>, events: EventFilter) -> Response {
    off_thread(&state, "log_search", move |st| {
        let p = params(query)?;
        let now = now_ns(st);
        let mut events = events;
        if events == EventFilter::Events {
            if let Some(n) = p.get("name").filter(|n| !n.is_empty()) {
                events = EventFilter::Named(n.to_string());
            }
        }
        let q = parse_log_query(&p, now - DEFAULT_LOOKBACK_NS, now, events)
            .map_err(ApiError::bad_data)?;
        let page = st.records.search_logs(&q).map_err(internal)?;
        let data = json!({
            "logs": page.logs.iter().map(log_json).collect::<Vec<_>>(),
            "nextCursor": page.next.map(|c| c.to_string()),
        });
        Ok(success(&data.to_string()))
    })
    .await
}

/// `GET /api/v1/logs?start=&end=&service=&host=&severity=&contains=&attr=k=v&traceId=&event=&limit=&cursor=`
pub async fn search_logs(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    logs_page(state, query, EventFilter::Any).await
}

/// `GET /api/v1/events`: log records with an event name (`name=` for one).
pub async fn search_events(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    logs_page(state, query, EventFilter::Events).await
}

/// Per service or host: metric series, spans, logs, events, when first and
/// last seen, and the hosts of a service or services of a host.
#[derive(Default)]
struct Entity {
    series: usize,
    spans: u64,
    logs: u64,
    events: u64,
    first_ns: i64,
    last_ns: i64,
    related: BTreeSet<String>,
}

impl Entity {
    fn json(&self, name: &str, related_key: &str) -> Value {
        let time = |t: i64| (t != 0).then(|| t.to_string());
        json!({
            "name": name,
            "signals": {
                "metrics": {"series": self.series},
                "traces": {"spans": self.spans},
                "logs": {"records": self.logs},
                "events": {"records": self.events},
            },
            "firstSeenUnixNano": time(self.first_ns),
            "lastSeenUnixNano": time(self.last_ns),
            related_key: self.related,
        })
    }
}

/// Services and hosts across metrics (from `job` and `target_info`), spans
/// and logs.
fn entities(
    state: &AppState,
    lookback_ms: i64,
) -> (BTreeMap<String, Entity>, BTreeMap<String, Entity>) {
    let mut services: BTreeMap<String, Entity> = BTreeMap::new();
    let mut hosts: BTreeMap<String, Entity> = BTreeMap::new();
    let now = state.clock.now_ms();
    let mint = now - lookback_ms;
    // target_info ties a job/instance pair to the host it runs on.
    let info = state.store.series(
        &[vec![Matcher::equal(METRIC_NAME, "target_info")]],
        mint,
        now,
    );
    let mut host_of: BTreeMap<(String, String), String> = BTreeMap::new();
    for l in &info {
        let host = l
            .get("host_name")
            .or_else(|| l.get("host_id"))
            .unwrap_or("");
        if !host.is_empty() {
            host_of.insert(
                (
                    l.get("job").unwrap_or("").to_string(),
                    l.get("instance").unwrap_or("").to_string(),
                ),
                host.to_string(),
            );
        }
    }
    let with_job = match Matcher::new(sonde_model::MatchOp::RegexMatch, "job", ".+") {
        Ok(m) => state.store.series(&[vec![m]], mint, now),
        Err(_) => Vec::new(),
    };
    let catalog = state.records.catalog();
    // OTLP metrics name the job `namespace/name`; spans and logs use
    // `service.name` alone. Where both exist, they are one service.
    let service_of = |job: &str| -> String {
        match job.rsplit_once('/') {
            Some((_, name)) if catalog.services.contains_key(name) => name.to_string(),
            _ => job.to_string(),
        }
    };
    for l in &with_job {
        let job = l.get("job").unwrap_or("");
        let svc = services.entry(service_of(job)).or_default();
        svc.series += 1;
        let key = (job.to_string(), l.get("instance").unwrap_or("").to_string());
        if let Some(host) = host_of.get(&key) {
            svc.related.insert(host.clone());
            let h = hosts.entry(host.clone()).or_default();
            h.series += 1;
            h.related.insert(service_of(job));
        }
    }
    for (map, seen) in [
        (&mut services, &catalog.services),
        (&mut hosts, &catalog.hosts),
    ] {
        for (name, s) in seen {
            let e = map.entry(name.clone()).or_default();
            e.spans = s.spans;
            e.logs = s.logs;
            e.events = s.events;
            e.first_ns = s.first_ns;
            e.last_ns = s.last_ns;
            e.related.extend(s.related.iter().cloned());
        }
    }
    (services, hosts)
}

fn lookback_ms(p: &Params) -> Result<i64, ApiError> {
    match p.get("lookback") {
        None | Some("") => Ok(3600 * 1000),
        Some(v) => parse_duration_ns(v)
            .map(|ns| ns / 1_000_000)
            .ok_or_else(|| ApiError::bad_data(format!("invalid lookback {v:?}"))),
    }
}

/// `GET /api/v1/services`
pub async fn services(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    off_thread(&state, "services", move |st| {
        let lookback = lookback_ms(&params(query)?)?;
        let (services, _) = entities(st, lookback);
        let data: Vec<Value> = services.iter().map(|(n, e)| e.json(n, "hosts")).collect();
        Ok(success(&Value::Array(data).to_string()))
    })
    .await
}

/// `GET /api/v1/hosts`
pub async fn hosts(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    off_thread(&state, "hosts", move |st| {
        let lookback = lookback_ms(&params(query)?)?;
        let (_, hosts) = entities(st, lookback);
        let data: Vec<Value> = hosts.iter().map(|(n, e)| e.json(n, "services")).collect();
        Ok(success(&Value::Array(data).to_string()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_default_to_microseconds() {
        assert_eq!(parse_duration_ns("250ms"), Some(250_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Some(1_500_000_000));
        // A bare number is seconds, as in every other duration.
        assert_eq!(parse_duration_ns("100"), Some(100_000_000_000));
        assert_eq!(parse_duration_ns("2m"), Some(120_000_000_000));
        assert_eq!(parse_duration_ns("fast"), None);
        assert_eq!(parse_duration_ns("-1s"), None);
    }
}
