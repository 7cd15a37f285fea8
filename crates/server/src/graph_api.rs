//! `GET /api/v1/service_graph?start=&end=`: the services, databases and
//! external systems that talked in a time range, and each edge's traffic,
//! errors and latency, read from the span-derived metrics (`spanmetrics.rs`).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use sonde_query::Value as QValue;

use sonde_pipeline::names;

use crate::api::{off_thread, success, ApiError, Params, StoreQueryable};
use crate::app::AppState;

type Labelled = Vec<(BTreeMap<String, String>, f64)>;

/// (labels, value) of an instant PromQL query.
fn vector(state: &AppState, expr: &str, at_ms: i64) -> Result<Labelled, ApiError> {
    let v = state
        .engine
        .instant(&StoreQueryable(state.store.clone()), expr, at_ms)
        .map_err(|e| ApiError::new("execution", e.to_string()))?;
    let QValue::Vector(samples) = v else {
        return Ok(Vec::new());
    };
    Ok(samples
        .into_iter()
        .filter(|s| s.v.is_finite())
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            (labels, s.v)
        })
        .collect())
}

fn key(labels: &BTreeMap<String, String>) -> (String, String) {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    (get("client"), get("server"))
}

pub async fn service_graph(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    off_thread(&state, "service_graph", move |st| {
        let p = Params::parse(query, &HeaderMap::new(), &[])?;
        let now = st.clock.now_ms();
        let end = p.time("end", now)?;
        let start = p.time("start", end - 15 * 60 * 1000)?;
        if start >= end {
            return Err(ApiError::bad_data("start must be before end"));
        }
        let secs = ((end - start) / 1000).max(1);
        let range = format!("{secs}s");
        let total = vector(st, &format!("sum by (client, server, connection_type) (increase({}[{range}]))", names::GRAPH_REQUESTS), end)?;
        let failed: BTreeMap<_, f64> = vector(st, &format!("sum by (client, server) (increase({}[{range}]))", names::GRAPH_REQUESTS_FAILED), end)?
            .into_iter()
            .map(|(l, v)| (key(&l), v))
            .collect();
        let quantile = |q: f64, histogram: &str| -> Result<BTreeMap<(String, String), f64>, ApiError> {
            Ok(vector(st, &format!(
                "histogram_quantile({q}, sum by (client, server, le) (increase({}[{range}])))",
                names::bucket(histogram)
            ), end)?
            .into_iter()
            .map(|(l, v)| (key(&l), v))
            .collect())
        };
        let (p50, p95) = (
            quantile(0.5, names::GRAPH_CLIENT_SECONDS)?,
            quantile(0.95, names::GRAPH_CLIENT_SECONDS)?,
        );
        let served: BTreeMap<String, f64> = vector(st, &format!(
            "sum by (service_name) (increase({}[{range}]))",
            names::requests(names::SPAN_CALLS, &[])
        ), end)?
        .into_iter()
        .map(|(l, v)| (l.get("service_name").cloned().unwrap_or_default(), v))
        .collect();
        let served_errors: BTreeMap<String, f64> = vector(st, &format!(
            "sum by (service_name) (increase({}[{range}]))",
            names::requests(names::SPAN_CALLS, &[names::ERROR_MATCHER])
        ), end)?
        .into_iter()
        .map(|(l, v)| (l.get("service_name").cloned().unwrap_or_default(), v))
        .collect();

        let mut nodes: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut edges = Vec::new();
        for (labels, requests) in &total {
            if *requests <= 0.0 {
                continue;
            }
            let k = key(labels);
            let kind = match labels.get("connection_type").map(String::as_str) {
                Some("database") => "database",
                Some("virtual_node") | Some("messaging_system") => "external",
                _ => "service",
            };
            nodes.entry(k.0.clone()).or_insert("service");
            nodes.insert(k.1.clone(), kind);
            let errors = failed.get(&k).copied().unwrap_or(0.0);
            edges.push(json!({
                "source": k.0, "target": k.1,
                "connectionType": labels.get("connection_type").cloned().unwrap_or_default(),
                "requests": requests,
                "ratePerSecond": requests / secs as f64,
                "errorRate": errors / requests,
                "p50Ms": p50.get(&k).map(|s| s * 1000.0),
                "p95Ms": p95.get(&k).map(|s| s * 1000.0),
            }));
        }
        for svc in served.keys() {
            nodes.entry(svc.clone()).or_insert("service");
        }
        let nodes: Vec<Value> = nodes
            .iter()
            .map(|(id, kind)| {
                let requests = served.get(id).copied();
                json!({
                    "id": id, "type": kind,
                    "requests": requests,
                    "errorRate": requests.filter(|r| *r > 0.0).map(|r| served_errors.get(id).copied().unwrap_or(0.0) / r),
                })
            })
            .collect();
        Ok(success(&json!({"nodes": nodes, "edges": edges, "start": start, "end": end}).to_string()))
    })
    .await
}
