//! The HTTP side of alerting: `/api/v1/rules` and `/api/v1/alerts` in
//! Prometheus's shapes, Sonde's `/api/v1/alerts/history`, and rule reloads
//! (`POST /-/reload`, `POST /api/v1/admin/reload_rules`).

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use sonde_model::{Labels, Matcher};

use crate::api::{success, ApiError, Params};
use crate::app::AppState;
use sonde_rules::eval::{Alert, RuleState, State as AlertState};
use sonde_rules::format::go_float;
use sonde_rules::rules::{Kind, Rule};
use sonde_rules::{rfc3339, LiveGroup};

/// Go's zero time, which Prometheus shows for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts/history", get(history))
        .route("/metrics/alerting", get(metrics))
        .route("/-/reload", post(reload))
        .route("/api/v1/admin/reload_rules", post(reload))
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

fn pairs_json(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn time_json(ms: Option<i64>) -> Value {
    Value::String(ms.map_or_else(|| ZERO_TIME.to_string(), rfc3339))
}

/// Prometheus formats alert values with Go's `%e`-style shortest form.
fn value_json(v: f64) -> Value {
    Value::String(go_float(v, 'e', None))
}

fn alert_json(a: &Alert) -> Value {
    let mut o = json!({
        "labels": labels_json(&a.labels),
        "annotations": pairs_json(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": value_json(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        o["keepFiringSince"] = Value::String(rfc3339(k));
    }
    o
}

fn active(rs: &RuleState) -> impl Iterator<Item = &Alert> {
    rs.alerts
        .values()
        .filter(|a| a.state != AlertState::Inactive)
}

fn rule_json(rule: &Rule, rs: &RuleState, with_alerts: bool) -> Value {
    let labels: Vec<(String, String)> = rule.labels.clone();
    let mut o = match &rule.kind {
        Kind::Alerting(spec) => {
            let state = active(rs)
                .map(|a| a.state)
                .max_by_key(|s| *s as u8)
                .unwrap_or(AlertState::Inactive);
            let alerts: Vec<Value> = if with_alerts {
                active(rs).map(alert_json).collect()
            } else {
                Vec::new()
            };
            let annotations: Vec<(String, String)> = spec
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), t.source().to_string()))
                .collect();
            let mut o = json!({
                "state": state.as_str(),
                "name": rule.name,
                "query": rule.expr,
                "duration": spec.hold.as_secs_f64(),
                "keepFiringFor": spec.keep_firing_for.as_secs_f64(),
                "labels": pairs_json(&labels),
                "annotations": pairs_json(&annotations),
                "alerts": alerts,
            });
            if let Some(score) = spec.anomaly {
                o["anomaly"] = json!({ "scoreAbove": score });
            }
            o
        }
        Kind::Recording => {
            let mut o = json!({ "name": rule.name, "query": rule.expr });
            if !labels.is_empty() {
                o["labels"] = pairs_json(&labels);
            }
            o
        }
    };
    o["health"] = json!(rs.health.as_str());
    if !rs.last_error.is_empty() {
        o["lastError"] = json!(rs.last_error);
    }
    o["evaluationTime"] = json!(rs.eval_seconds);
    o["lastEvaluation"] = time_json(rs.last_eval);
    o["type"] = json!(match rule.kind {
        Kind::Alerting(_) => "alerting",
        Kind::Recording => "recording",
    });
    o
}

struct RuleFilter {
    alerting: Option<bool>,
    names: Vec<String>,
    groups: Vec<String>,
    files: Vec<String>,
    matchers: Vec<Vec<Matcher>>,
    exclude_alerts: bool,
}

impl RuleFilter {
    fn parse(q: Option<String>) -> Result<RuleFilter, ApiError> {
        let p = Params::parse(q, &HeaderMap::new(), &[])?;
        let alerting = match p.get("type").unwrap_or("") {
            "" => None,
            "alert" => Some(true),
            "record" => Some(false),
            other => {
                return Err(ApiError::bad_data(format!(
                    "unsupported type {other:?}: use \"alert\" or \"record\""
                )))
            }
        };
        let matchers = p
            .all("match[]")
            .into_iter()
            .map(|s| {
                sonde_query::parse_selector(s)
                    .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))
            })
            .collect::<Result<_, _>>()?;
        let exclude_alerts = match p.get("exclude_alerts").unwrap_or("false") {
            "" | "false" | "0" => false,
            "true" | "1" => true,
            other => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"exclude_alerts\": {other:?}"
                )))
            }
        };
        let own = |k: &str| p.all(k).into_iter().map(String::from).collect();
        Ok(RuleFilter {
            alerting,
            names: own("rule_name[]"),
            groups: own("rule_group[]"),
            files: own("file[]"),
            matchers,
            exclude_alerts,
        })
    }

    fn group(&self, g: &LiveGroup) -> bool {
        (self.groups.is_empty() || self.groups.contains(&g.def.name))
            && (self.files.is_empty() || self.files.contains(&g.def.file))
    }

    fn rule(&self, r: &Rule) -> bool {
        let is_alerting = matches!(r.kind, Kind::Alerting(_));
        let labels = Labels::from_pairs(r.labels.iter().cloned());
        self.alerting.is_none_or(|a| a == is_alerting)
            && (self.names.is_empty() || self.names.contains(&r.name))
            && (self.matchers.is_empty()
                || self
                    .matchers
                    .iter()
                    .any(|set| set.iter().all(|m| m.matches(&labels))))
    }
}

/// Runs `f` on a blocking thread: reading states waits for an evaluation
/// that holds them.
async fn blocking(
    state: AppState,
    f: impl FnOnce(&AppState) -> Response + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&state)).await {
        Ok(r) => r,
        Err(e) => ApiError::new("internal", format!("task failed: {e}")).into_response(),
    }
}

/// `GET /api/v1/rules`, with Prometheus's filters (`type`, `rule_name[]`,
/// `rule_group[]`, `file[]`, `match[]`, `exclude_alerts`). When the last
/// reload failed, `data.lastReloadError` says why (the old rules run on).
pub async fn rules(state: AppState, q: Option<String>) -> Response {
    let filter = match RuleFilter::parse(q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    blocking(state, move |state| {
        let mut groups = Vec::new();
        for g in state.alerting.groups() {
            if !filter.group(&g) {
                continue;
            }
            let st = g.state.lock();
            let rules: Vec<Value> = g
                .def
                .rules
                .iter()
                .zip(&st.rules)
                .filter(|(r, _)| filter.rule(r))
                .map(|(r, rs)| rule_json(r, rs, !filter.exclude_alerts))
                .collect();
            if rules.is_empty()
                && (filter.alerting.is_some()
                    || !filter.names.is_empty()
                    || !filter.matchers.is_empty())
            {
                continue;
            }
            groups.push(json!({
                "name": g.def.name,
                "file": g.def.file,
                "rules": rules,
                "interval": g.def.interval.as_secs_f64(),
                "limit": g.def.limit,
                "evaluationTime": st.eval_seconds,
                "lastEvaluation": time_json(st.last_eval),
            }));
        }
        let mut data = json!({ "groups": groups });
        let status = state.alerting.status();
        if let Some(e) = status.last_error {
            data["lastReloadError"] = json!(e);
        }
        data["lastReloadSuccess"] = json!(rfc3339(status.last_success));
        success(&data.to_string())
    })
    .await
}

/// `GET /api/v1/alerts`: every pending and firing alert.
pub async fn alerts(state: AppState) -> Response {
    blocking(state, |state| {
        let mut alerts = Vec::new();
        for g in state.alerting.groups() {
            let st = g.state.lock();
            for rs in &st.rules {
                alerts.extend(active(rs).map(alert_json));
            }
        }
        success(&json!({ "alerts": alerts }).to_string())
    })
    .await
}

/// `GET /api/v1/alerts/history?rule=&limit=`: the last state transitions
/// (up to 1000 kept), newest first.
async fn history(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match Params::parse(q, &HeaderMap::new(), &[]) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let rule = p.get("rule").filter(|r| !r.is_empty()).map(String::from);
    let limit = match p.get("limit").filter(|l| !l.is_empty()) {
        None => usize::MAX,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                return ApiError::bad_data(format!("invalid parameter \"limit\": {l:?}"))
                    .into_response()
            }
        },
    };
    let transitions: Vec<Value> = state
        .alerting
        .history()
        .into_iter()
        .filter(|t| rule.as_ref().is_none_or(|r| *r == t.rule))
        .take(limit)
        .map(|t| {
            json!({
                "group": t.group,
                "rule": t.rule,
                "labels": labels_json(&t.labels),
                "from": t.from,
                "to": t.to,
                "at": rfc3339(t.at),
                "value": value_json(t.value),
            })
        })
        .collect();
    success(&json!({ "transitions": transitions }).to_string())
}

/// `GET /metrics/alerting`: rule evaluations and notifications in the
/// Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    state.alerting.render_metrics(&mut text);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Reloads the rule files; on error the running rules stay.
async fn reload(State(state): State<AppState>) -> Response {
    blocking(state, |state| {
        match state.alerting.reload(state.clock.now_ms()) {
            Ok((groups, rules)) => {
                success(&json!({ "groups": groups, "rules": rules }).to_string())
            }
            Err(e) => {
                ApiError::new("internal", format!("reloading rules failed: {e}")).into_response()
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_values_render_like_prometheus() {
        assert_eq!(value_json(2.7), json!("2.7e+00"));
        assert_eq!(value_json(1.0), json!("1e+00"));
        assert_eq!(value_json(1234.5), json!("1.2345e+03"));
        assert_eq!(value_json(f64::NAN), json!("NaN"));
        assert_eq!(time_json(None), json!(ZERO_TIME));
    }
}
