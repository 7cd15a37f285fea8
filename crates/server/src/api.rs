//! The Prometheus HTTP API (`/api/v1/...`) with Prometheus's JSON shapes and
//! error types, so Grafana's Prometheus data source works unchanged; plus
//! health, readiness and Sonde's own metrics.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sonde_model::{Labels, Matcher, Series};
use sonde_query::{format_value, Queryable, Value};
use sonde_store::Store;

use crate::app::AppState;
use crate::body::content_type;

/// The store, as the query engine sees it.
pub struct StoreQueryable(pub Arc<Store>);

impl Queryable for StoreQueryable {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        self.0
            .select(matchers, mint, maxt)
            .map_err(|e| e.to_string())
    }
}

/// A Prometheus API error: `errorType` and message, mapped to an HTTP status
/// as Prometheus maps them.
pub struct ApiError {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_data(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "not_found" => StatusCode::NOT_FOUND,
            "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = format!(
            r#"{{"status":"error","errorType":{},"error":{}}}"#,
            json_str(self.kind),
            json_str(&self.message)
        );
        json_response(status, body)
    }
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn success(data: &str) -> Response {
    json_response(
        StatusCode::OK,
        format!(r#"{{"status":"success","data":{data}}}"#),
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Query parameters from the URL and, for POST, a form body.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(
        query: Option<String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, ApiError> {
        let mut all: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(&q)
                .map_err(|e| ApiError::bad_data(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        if !body.is_empty() && content_type(headers) == "application/x-www-form-urlencoded" {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ApiError::bad_data(format!("invalid form body: {e}")))?;
            all.extend(form);
        }
        Ok(Params(all))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn time(&self, key: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                ApiError::bad_data(format!(
                    "invalid parameter \"{key}\": cannot parse \"{v}\" to a valid timestamp"
                ))
            }),
        }
    }

    /// `start` and `end` of a metadata call; absent means unbounded.
    fn span(&self) -> Result<(i64, i64), ApiError> {
        Ok((self.time("start", MIN_TIME)?, self.time("end", MAX_TIME)?))
    }

    fn matcher_sets(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        self.all("match[]")
            .into_iter()
            .map(|s| {
                sonde_query::parse_selector(s)
                    .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))
            })
            .collect()
    }
}

/// Prometheus's minimum and maximum times for "no bound".
const MIN_TIME: i64 = -9_223_309_901_257_974;
const MAX_TIME: i64 = 9_223_309_901_257_974;

/// RFC 3339 or Unix seconds (with fraction) to milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return None;
        }
        return Some((secs * 1000.0).round() as i64);
    }
    parse_rfc3339(s)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let d = &frac[..digits];
        let padded: String = d.chars().chain(std::iter::repeat('0')).take(3).collect();
        millis = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 60 + m)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = sonde_model::time::days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60) * 1000) + millis)
}

/// A step or timeout: float seconds or a duration like `15s`.
pub(crate) fn parse_step(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite()).then(|| (secs * 1000.0).round() as i64);
    }
    sonde_model::time::parse_duration_ms(s)
}

fn render_t(out: &mut String, t: i64) {
    // Seconds with up to millisecond precision, as Prometheus renders them.
    if t % 1000 == 0 {
        let _ = write!(out, "{}", t / 1000);
    } else {
        let _ = write!(out, "{}", t as f64 / 1000.0);
    }
}

fn render_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(&l.name));
        out.push(':');
        out.push_str(&json_str(&l.value));
    }
    out.push('}');
}

fn render_point(out: &mut String, t: i64, v: &str) {
    out.push('[');
    render_t(out, t);
    out.push_str(",\"");
    out.push_str(v);
    out.push_str("\"]");
}

/// A native histogram point as Prometheus renders it: `[t, {"count",
/// "sum", "buckets": [[boundary_rule, lower, upper, count], ...]}]`, empty
/// buckets left out. Boundary rules: 0 upper inclusive, 1 lower inclusive,
/// 3 both (the zero bucket).
fn render_histogram(out: &mut String, t: i64, h: &sonde_model::FloatHistogram) {
    out.push('[');
    render_t(out, t);
    let _ = write!(
        out,
        r#",{{"count":"{}","sum":"{}""#,
        format_value(h.count),
        format_value(h.sum)
    );
    let mut first = true;
    for b in h.all_buckets().iter().filter(|b| b.count != 0.0) {
        out.push_str(if first { r#","buckets":["# } else { "," });
        first = false;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (true, true) => 3,
            (true, false) => 1,
            (false, false) => 2,
            (false, true) => 0,
        };
        let _ = write!(
            out,
            r#"[{rule},"{}","{}","{}"]"#,
            format_value(b.lower),
            format_value(b.upper),
            format_value(b.count)
        );
    }
    if !first {
        out.push(']');
    }
    out.push_str("}]");
}

pub(crate) fn render_value(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, r#"{{"resultType":"{}","result":"#, v.type_name());
    match v {
        Value::Scalar { t, v } => render_point(&mut out, *t, &format_value(*v)),
        Value::String { t, v } => {
            out.push('[');
            render_t(&mut out, *t);
            out.push(',');
            out.push_str(&json_str(v));
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                render_labels(&mut out, &s.labels);
                match &s.h {
                    Some(h) => {
                        out.push_str(r#","histogram":"#);
                        render_histogram(&mut out, s.t, h);
                    }
                    None => {
                        out.push_str(r#","value":"#);
                        render_point(&mut out, s.t, &format_value(s.v));
                    }
                }
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                render_labels(&mut out, &s.labels);
                // Like Prometheus, a series of only histograms has no
                // "values" and one of only floats no "histograms".
                if !s.samples.is_empty() || s.histograms.is_empty() {
                    out.push_str(r#","values":["#);
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        render_point(&mut out, p.t, &format_value(p.v));
                    }
                    out.push(']');
                }
                if !s.histograms.is_empty() {
                    out.push_str(r#","histograms":["#);
                    for (j, p) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        render_histogram(&mut out, p.t, &p.h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

pub(crate) fn query_error(e: sonde_query::Error) -> ApiError {
    ApiError {
        kind: e.error_type(),
        message: e.to_string(),
    }
}

async fn run_query(
    state: &AppState,
    endpoint: &'static str,
    eval: impl FnOnce(&AppState) -> sonde_query::Result<Value> + Send + 'static,
) -> Result<Response, ApiError> {
    let _permit = state.query_permits.acquire().await.map_err(|_| ApiError {
        kind: "unavailable",
        message: "server is shutting down".into(),
    })?;
    let started = Instant::now();
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || eval(&st).map(|v| render_value(&v)))
        .await
        .map_err(|e| ApiError {
            kind: "internal",
            message: format!("query task failed: {e}"),
        })?;
    state.metrics.query(endpoint, started.elapsed());
    Ok(success(&result.map_err(query_error)?))
}

pub async fn query(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let p = Params::parse(q, &headers, &body)?;
        let expr = p
            .get("query")
            .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing query"))?
            .to_string();
        let t = p.time("time", state.clock.now_ms())?;
        run_query(&state, "query", move |st| {
            st.engine
                .instant(&StoreQueryable(st.store.clone()), &expr, t)
        })
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn query_range(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let p = Params::parse(q, &headers, &body)?;
        let expr = p.get("query").ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing query"))?.to_string();
        let start = p.get("start").and_then(parse_time).ok_or_else(|| ApiError::bad_data("invalid parameter \"start\": cannot parse to a valid timestamp"))?;
        let end = p.get("end").and_then(parse_time).ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": cannot parse to a valid timestamp"))?;
        if end < start {
            return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
        }
        let step = p.get("step").and_then(parse_step).ok_or_else(|| ApiError::bad_data("invalid parameter \"step\": cannot parse to a valid duration"))?;
        if step <= 0 {
            return Err(ApiError::bad_data("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        if end.saturating_sub(start) / step > 11_000 {
            return Err(ApiError::bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
        }
        run_query(&state, "query_range", move |st| st.engine.range(&StoreQueryable(st.store.clone()), &expr, start, end, step)).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn series(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    off_thread(
        &state.clone(),
        "series",
        move |state| -> Result<Response, ApiError> {
            let p = Params::parse(q, &headers, &body)?;
            let sets = p.matcher_sets()?;
            if sets.is_empty() {
                return Err(ApiError::bad_data("no match[] parameter provided"));
            }
            let (start, end) = p.span()?;
            let mut out = String::from("[");
            for (i, labels) in state.store.series(&sets, start, end).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render_labels(&mut out, labels);
            }
            out.push(']');
            Ok(success(&out))
        },
    )
    .await
}

/// Runs a metadata call on a blocking thread under a query permit: listing
/// series walks the index, which must not stall the async workers.
pub(crate) async fn off_thread(
    state: &AppState,
    endpoint: &'static str,
    f: impl FnOnce(&AppState) -> Result<Response, ApiError> + Send + 'static,
) -> Response {
    let Ok(_permit) = state.query_permits.acquire().await else {
        return ApiError {
            kind: "unavailable",
            message: "server is shutting down".into(),
        }
        .into_response();
    };
    let started = Instant::now();
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || f(&st)).await;
    state.metrics.query(endpoint, started.elapsed());
    match result {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError {
            kind: "internal",
            message: format!("task failed: {e}"),
        }
        .into_response(),
    }
}

fn string_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub async fn labels(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    off_thread(
        &state.clone(),
        "labels",
        move |state| -> Result<Response, ApiError> {
            let p = Params::parse(q, &headers, &body)?;
            let sets = p.matcher_sets()?;
            let (start, end) = p.span()?;
            Ok(success(&string_list(
                &state.store.label_names(&sets, start, end),
            )))
        },
    )
    .await
}

pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    off_thread(
        &state.clone(),
        "label_values",
        move |state| -> Result<Response, ApiError> {
            if !sonde_model::is_valid_label_name(&name) && name != sonde_model::METRIC_NAME {
                return Err(ApiError::bad_data(format!(
                    "invalid label name: \"{name}\""
                )));
            }
            let p = Params::parse(q, &headers, &[])?;
            let sets = p.matcher_sets()?;
            let (start, end) = p.span()?;
            Ok(success(&string_list(
                &state.store.label_values(&name, &sets, start, end),
            )))
        },
    )
    .await
}

pub async fn metadata(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    off_thread(
        &state.clone(),
        "metadata",
        move |state| -> Result<Response, ApiError> {
            let p = Params::parse(q, &headers, &[])?;
            let metric = p.get("metric").filter(|m| !m.is_empty());
            let limit: usize = p
                .get("limit")
                .and_then(|l| l.parse::<i64>().ok())
                .filter(|l| *l > 0)
                .map_or(usize::MAX, |l| l as usize);
            let mut map = serde_json::Map::new();
            for m in state.store.metadata() {
                if metric.is_some_and(|want| want != m.metric) || map.len() >= limit {
                    continue;
                }
                map.insert(
                    m.metric.clone(),
                    serde_json::json!([{"type": m.kind.as_str(), "help": m.help, "unit": m.unit}]),
                );
            }
            Ok(success(&serde_json::Value::Object(map).to_string()))
        },
    )
    .await
}

/// `/api/v1/query_exemplars`: the exemplars in `[start, end]` of the series
/// selected by any vector selector of the PromQL `query`, as Prometheus
/// answers it (`data` is null when the query has no selector).
pub async fn exemplars(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    off_thread(
        &state.clone(),
        "query_exemplars",
        move |state| -> Result<Response, ApiError> {
            let p = Params::parse(q, &headers, &body)?;
            let (start, end) = p.span()?;
            if end < start {
                return Err(ApiError::bad_data(
                    "end timestamp must not be before start timestamp",
                ));
            }
            let sets = sonde_query::extract_selectors(p.get("query").unwrap_or(""))
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
            if sets.is_empty() {
                return Ok(success("null"));
            }
            let mut out = String::from("[");
            for (i, (series, exemplars)) in
                state.store.exemplars(&sets, start, end).iter().enumerate()
            {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"seriesLabels":"#);
                render_labels(&mut out, series);
                out.push_str(r#","exemplars":["#);
                for (j, e) in exemplars.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push_str(r#"{"labels":"#);
                    render_labels(&mut out, &e.labels);
                    out.push_str(r#","value":""#);
                    out.push_str(&format_value(e.value));
                    out.push_str(r#"","timestamp":"#);
                    render_t(&mut out, e.t);
                    out.push('}');
                }
                out.push_str("]}");
            }
            out.push(']');
            Ok(success(&out))
        },
    )
    .await
}

pub async fn rules(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    crate::alerting_api::rules(state, q).await
}

pub async fn alerts(State(state): State<AppState>) -> Response {
    crate::alerting_api::alerts(state).await
}

pub async fn buildinfo() -> Response {
    success(
        &serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        })
        .to_string(),
    )
}

pub async fn runtimeinfo(State(state): State<AppState>) -> Response {
    success(
        &serde_json::json!({
            "storageRetention": state.config.retention,
            "timeSeriesCount": state.store.num_series(),
        })
        .to_string(),
    )
}

pub async fn health() -> &'static str {
    "Sonde is healthy.\n"
}

/// Ready once the store is open, which is before the listeners serve.
pub async fn ready() -> &'static str {
    "Sonde is ready.\n"
}

pub async fn self_metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render(&state.store);
    state
        .metrics
        .render_records(&mut text, &state.records, &state.tail);
    state.alerting.render_metrics(&mut text);
    render_pipeline(&mut text, &state);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The stream processors' bounded state and the background tasks' panics.
fn render_pipeline(w: &mut String, state: &crate::app::App) {
    use std::fmt::Write;
    let _ = writeln!(
        w,
        "# HELP sonde_pipeline_state_entries Keys a stream processor holds."
    );
    let _ = writeln!(w, "# TYPE sonde_pipeline_state_entries gauge");
    let states = state.pipeline.states();
    for (name, size) in &states {
        let _ = writeln!(
            w,
            "sonde_pipeline_state_entries{{processor=\"{name}\"}} {}",
            size.entries
        );
    }
    let _ = writeln!(
        w,
        "# HELP sonde_pipeline_state_cap The most keys a stream processor holds."
    );
    let _ = writeln!(w, "# TYPE sonde_pipeline_state_cap gauge");
    for (name, size) in &states {
        let _ = writeln!(
            w,
            "sonde_pipeline_state_cap{{processor=\"{name}\"}} {}",
            size.cap
        );
    }
    let _ = writeln!(w, "# HELP sonde_background_task_panics_total Background tasks that panicked and were restarted.");
    let _ = writeln!(w, "# TYPE sonde_background_task_panics_total counter");
    let _ = writeln!(
        w,
        "sonde_background_task_panics_total {}",
        crate::tasks::PANICS.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(w, "# HELP sonde_records_dedup_keys Recently stored spans and logs remembered to drop re-deliveries.");
    let _ = writeln!(w, "# TYPE sonde_records_dedup_keys gauge");
    let _ = writeln!(
        w,
        "sonde_records_dedup_keys {}",
        state.records.stats().dedup_keys
    );
}

/// Persists the whole in-memory head as blocks (for measuring footprint and
/// before backups).
pub async fn flush(State(state): State<AppState>) -> Response {
    let st = state.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        st.store.flush_head().map_err(|e| e.to_string())?;
        st.records.flush().map_err(|e| e.to_string())
    });
    match flushed.await {
        Ok(Ok(())) => success("null"),
        Ok(Err(e)) => ApiError {
            kind: "internal",
            message: e.to_string(),
        }
        .into_response(),
        Err(e) => ApiError {
            kind: "internal",
            message: e.to_string(),
        }
        .into_response(),
    }
}

pub async fn not_found() -> Response {
    ApiError {
        kind: "not_found",
        message: "no such endpoint; see the README for the API".into(),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Some(1_700_000_000_250)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_step("15s"), Some(15_000));
        assert_eq!(parse_step("0.5"), Some(500));
    }
}
