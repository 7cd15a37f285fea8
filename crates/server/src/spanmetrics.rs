//! Metrics derived from spans as they arrive: RED metrics per service and
//! operation, and the service graph, queryable with PromQL like any metric.
//!
//! Names and labels follow the OpenTelemetry Collector's `spanmetrics` and
//! `servicegraph` connectors, so dashboards built for them work:
//! `traces_span_metrics_calls_total` and
//! `traces_span_metrics_duration_seconds` by `service_name`, `span_name`,
//! `span_kind`, `status_code`; `traces_service_graph_request_total`,
//! `traces_service_graph_request_failed_total` and
//! `traces_service_graph_request_{client,server}_seconds` by `client`,
//! `server`, `connection_type`.
//!
//! Counts are weighted by the inverse of each span's sampling probability
//! (W3C `tracestate` `ot=th:`, or a `sampling.probability` attribute), so
//! they estimate the real traffic under head sampling.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sonde_model::records::{attribute, AttrValue, SpanKind, SpanRecord, StatusCode};
use sonde_model::{Labels, Sample, Series, METRIC_NAME};

/// The connector's default buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];
/// Distinct (service, operation, kind, status) series kept; beyond, the
/// operation is folded into `_other_` so cardinality stays bounded.
const MAX_RED_KEYS: usize = 20_000;
const MAX_EDGES: usize = 5_000;
/// How long a client or server span waits for its other half.
const PAIR_WAIT: Duration = Duration::from_secs(10);
const MAX_PENDING: usize = 100_000;

#[derive(Default, Clone)]
struct Histo {
    count: f64,
    sum: f64,
    buckets: [f64; BUCKETS.len()],
}

impl Histo {
    fn observe(&mut self, seconds: f64, weight: f64) {
        self.count += weight;
        self.sum += seconds * weight;
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *b += weight;
            }
        }
    }

    fn series(&self, name: &str, labels: &[(&str, &str)], t: i64, out: &mut Vec<Series>) {
        let mut le_text = String::new();
        for (i, le) in BUCKETS.iter().enumerate() {
            le_text.clear();
            le_text.push_str(&sonde_query_format(*le));
            out.push(point(
                &format!("{name}_bucket"),
                labels,
                Some(&le_text),
                t,
                self.buckets[i],
            ));
        }
        out.push(point(
            &format!("{name}_bucket"),
            labels,
            Some("+Inf"),
            t,
            self.count,
        ));
        out.push(point(&format!("{name}_sum"), labels, None, t, self.sum));
        out.push(point(&format!("{name}_count"), labels, None, t, self.count));
    }
}

/// Prometheus formats `le` like Go's `strconv.FormatFloat(f, 'f', -1, 64)`,
/// which for these bounds is Rust's shortest `Display`.
fn sonde_query_format(v: f64) -> String {
    format!("{v}")
}

fn point(name: &str, labels: &[(&str, &str)], le: Option<&str>, t: i64, v: f64) -> Series {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 2);
    pairs.push((METRIC_NAME, name));
    pairs.extend_from_slice(labels);
    if let Some(le) = le {
        pairs.push(("le", le));
    }
    Series {
        labels: Labels::from_pairs(pairs),
        samples: vec![Sample { t, v }],
        histograms: Vec::new(),
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RedKey {
    service: String,
    name: String,
    kind: SpanKind,
    status: StatusCode,
}

#[derive(Default)]
struct Red {
    calls: f64,
    duration: Histo,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct EdgeKey {
    client: String,
    server: String,
    /// Empty, `database` or `virtual_node` (an external call).
    connection_type: &'static str,
}

#[derive(Default)]
struct Edge {
    total: f64,
    failed: f64,
    client: Histo,
    server: Histo,
}

/// One half of a call, waiting for the other.
struct Half {
    service: String,
    seconds: f64,
    failed: bool,
    weight: f64,
    /// For a client span: the node to use if no server half ever comes.
    virtual_node: Option<(String, &'static str)>,
    seen: Instant,
}

#[derive(Default)]
struct State {
    red: HashMap<RedKey, Red>,
    edges: HashMap<EdgeKey, Edge>,
    /// Client spans by their span id; server spans by their parent id.
    clients: HashMap<[u8; 8], Half>,
    servers: HashMap<[u8; 8], Half>,
}

#[derive(Default)]
pub struct SpanMetrics {
    state: Mutex<State>,
}

/// The inverse of the span's sampling probability: how many spans it
/// stands for.
fn weight(s: &SpanRecord) -> f64 {
    let from_threshold = s.trace_state.split(',').find_map(|member| {
        let ot = member.trim().strip_prefix("ot=")?;
        let th = ot.split(';').find_map(|kv| kv.strip_prefix("th:"))?;
        if th.is_empty() || th.len() > 14 {
            return None;
        }
        // The threshold is the rejected share of 2^56, hex with trailing
        // zeros dropped.
        let padded = format!("{th:0<14}");
        let rejected = u64::from_str_radix(&padded, 16).ok()? as f64;
        let p = 1.0 - rejected / (1u64 << 56) as f64;
        (p > 0.0).then(|| 1.0 / p)
    });
    let from_attribute = || match attribute(&s.attributes, "sampling.probability") {
        Some(AttrValue::Double(p)) if *p > 0.0 && *p <= 1.0 => Some(1.0 / p),
        _ => None,
    };
    from_threshold.or_else(from_attribute).unwrap_or(1.0)
}

/// Where a client span goes when no server span answers it: a database
/// (`db.system`, `db.name`) or an external service (`peer.service`,
/// `server.address`).
fn virtual_node(s: &SpanRecord) -> Option<(String, &'static str)> {
    let text = |k: &str| attribute(&s.attributes, k).map(|v| v.as_text().into_owned());
    if let Some(db) = text("db.name")
        .or_else(|| text("db.namespace"))
        .or_else(|| text("db.system"))
    {
        return Some((db, "database"));
    }
    text("peer.service")
        .or_else(|| text("server.address"))
        .map(|p| (p, "virtual_node"))
}

impl SpanMetrics {
    pub fn observe(&self, spans: &[SpanRecord]) {
        let mut st = self.state.lock();
        let now = Instant::now();
        for s in spans {
            let w = weight(s);
            let seconds = s.duration_ns() as f64 / 1e9;
            let mut key = RedKey {
                service: s.origin.service.clone(),
                name: s.name.clone(),
                kind: s.kind,
                status: s.status,
            };
            if !st.red.contains_key(&key) && st.red.len() >= MAX_RED_KEYS {
                key.name = "_other_".into();
            }
            let red = st.red.entry(key).or_default();
            red.calls += w;
            red.duration.observe(seconds, w);

            let failed = s.status == StatusCode::Error;
            match s.kind {
                SpanKind::Client | SpanKind::Producer => {
                    let half = Half {
                        service: s.origin.service.clone(),
                        seconds,
                        failed,
                        weight: w,
                        virtual_node: virtual_node(s),
                        seen: now,
                    };
                    match st.servers.remove(&s.span_id.0) {
                        Some(server) => st.pair(half, server),
                        None if st.clients.len() < MAX_PENDING => {
                            st.clients.insert(s.span_id.0, half);
                        }
                        None => {}
                    }
                }
                SpanKind::Server | SpanKind::Consumer => {
                    let Some(parent) = s.parent_span_id else {
                        continue;
                    };
                    let half = Half {
                        service: s.origin.service.clone(),
                        seconds,
                        failed,
                        weight: w,
                        virtual_node: None,
                        seen: now,
                    };
                    match st.clients.remove(&parent.0) {
                        Some(client) => st.pair(client, half),
                        None if st.servers.len() < MAX_PENDING => {
                            st.servers.insert(parent.0, half);
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Current values of every derived series at `t_ms`; also settles
    /// calls whose other half did not come in time.
    pub fn collect(&self, t_ms: i64) -> Vec<Series> {
        let mut st = self.state.lock();
        st.expire(Instant::now());
        let mut out = Vec::new();
        for (k, red) in &st.red {
            let labels = [
                ("job", k.service.as_str()),
                ("service_name", k.service.as_str()),
                ("span_name", k.name.as_str()),
                ("span_kind", kind_label(k.kind)),
                ("status_code", status_label(k.status)),
            ];
            out.push(point(
                "traces_span_metrics_calls_total",
                &labels,
                None,
                t_ms,
                red.calls,
            ));
            red.duration.series(
                "traces_span_metrics_duration_seconds",
                &labels,
                t_ms,
                &mut out,
            );
        }
        for (k, e) in &st.edges {
            let mut labels = vec![("client", k.client.as_str()), ("server", k.server.as_str())];
            if !k.connection_type.is_empty() {
                labels.push(("connection_type", k.connection_type));
            }
            out.push(point(
                "traces_service_graph_request_total",
                &labels,
                None,
                t_ms,
                e.total,
            ));
            out.push(point(
                "traces_service_graph_request_failed_total",
                &labels,
                None,
                t_ms,
                e.failed,
            ));
            e.client.series(
                "traces_service_graph_request_client_seconds",
                &labels,
                t_ms,
                &mut out,
            );
            e.server.series(
                "traces_service_graph_request_server_seconds",
                &labels,
                t_ms,
                &mut out,
            );
        }
        out
    }
}

impl State {
    fn edge(&mut self, key: EdgeKey) -> Option<&mut Edge> {
        if !self.edges.contains_key(&key) && self.edges.len() >= MAX_EDGES {
            return None;
        }
        Some(self.edges.entry(key).or_default())
    }

    fn pair(&mut self, client: Half, server: Half) {
        let key = EdgeKey {
            client: client.service.clone(),
            server: server.service.clone(),
            connection_type: "",
        };
        if let Some(e) = self.edge(key) {
            e.total += client.weight;
            if client.failed || server.failed {
                e.failed += client.weight;
            }
            e.client.observe(client.seconds, client.weight);
            e.server.observe(server.seconds, server.weight);
        }
    }

    fn expire(&mut self, now: Instant) {
        let old = |h: &Half| now.duration_since(h.seen) > PAIR_WAIT;
        let expired: Vec<[u8; 8]> = self
            .clients
            .iter()
            .filter(|(_, h)| old(h))
            .map(|(k, _)| *k)
            .collect();
        for id in expired {
            let Some(client) = self.clients.remove(&id) else {
                continue;
            };
            // No server answered: a database or external call, if the span
            // says where it went.
            if let Some((node, kind)) = client.virtual_node.clone() {
                let key = EdgeKey {
                    client: client.service.clone(),
                    server: node,
                    connection_type: kind,
                };
                if let Some(e) = self.edge(key) {
                    e.total += client.weight;
                    if client.failed {
                        e.failed += client.weight;
                    }
                    e.client.observe(client.seconds, client.weight);
                }
            }
        }
        self.servers.retain(|_, h| !old(h));
    }
}

fn kind_label(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

fn status_label(s: StatusCode) -> &'static str {
    match s {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use sonde_model::records::{Origin, SpanId, TraceId};

    use super::*;

    pub(crate) fn span(
        service: &str,
        id: u8,
        parent: Option<u8>,
        kind: SpanKind,
        ms: i64,
        error: bool,
    ) -> SpanRecord {
        SpanRecord {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            trace_state: String::new(),
            flags: 1,
            name: "GET /x".into(),
            kind,
            start_ns: 0,
            end_ns: ms * 1_000_000,
            status: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: String::new(),
            origin: Arc::new(Origin {
                service: service.into(),
                ..Origin::default()
            }),
            attributes: vec![],
            events: vec![],
            links: vec![],
        }
    }

    fn value(series: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        series
            .iter()
            .find(|s| {
                s.labels.get(METRIC_NAME) == Some(name)
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| s.samples[0].v)
    }

    #[test]
    fn red_metrics_are_weighted_by_the_sampling_threshold() {
        let m = SpanMetrics::default();
        let mut sampled = span("api", 1, None, SpanKind::Server, 30, false);
        // th:c = reject 3/4: each kept span stands for 4.
        sampled.trace_state = "ot=th:c".into();
        m.observe(&[sampled, span("api", 2, None, SpanKind::Server, 3, true)]);
        let out = m.collect(1000);
        let ok = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_UNSET"),
        ];
        assert_eq!(
            value(&out, "traces_span_metrics_calls_total", &ok),
            Some(4.0)
        );
        let err = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_ERROR"),
        ];
        assert_eq!(
            value(&out, "traces_span_metrics_calls_total", &err),
            Some(1.0)
        );
        let le = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_UNSET"),
            ("le", "0.05"),
        ];
        assert_eq!(
            value(&out, "traces_span_metrics_duration_seconds_bucket", &le),
            Some(4.0)
        );
        let le = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_UNSET"),
            ("le", "0.01"),
        ];
        assert_eq!(
            value(&out, "traces_span_metrics_duration_seconds_bucket", &le),
            Some(0.0)
        );
    }

    #[test]
    fn client_and_server_halves_make_an_edge_in_either_order() {
        let m = SpanMetrics::default();
        m.observe(&[span("checkout", 9, Some(1), SpanKind::Server, 20, true)]);
        m.observe(&[span("frontend", 1, Some(0), SpanKind::Client, 25, false)]);
        m.observe(&[span("frontend", 3, None, SpanKind::Client, 5, false)]);
        m.observe(&[span("checkout", 4, Some(3), SpanKind::Server, 4, false)]);
        let out = m.collect(1000);
        let e = [("client", "frontend"), ("server", "checkout")];
        assert_eq!(
            value(&out, "traces_service_graph_request_total", &e),
            Some(2.0)
        );
        assert_eq!(
            value(&out, "traces_service_graph_request_failed_total", &e),
            Some(1.0)
        );
    }

    #[test]
    fn unanswered_database_calls_become_database_nodes() {
        let m = SpanMetrics::default();
        let mut db = span("catalog", 5, Some(2), SpanKind::Client, 3, false);
        db.attributes = vec![("db.system".into(), AttrValue::Str("postgresql".into()))];
        m.observe(&[db]);
        {
            let mut st = m.state.lock();
            for h in st.clients.values_mut() {
                h.seen -= PAIR_WAIT * 2;
            }
        }
        let out = m.collect(1000);
        let e = [
            ("client", "catalog"),
            ("server", "postgresql"),
            ("connection_type", "database"),
        ];
        assert_eq!(
            value(&out, "traces_service_graph_request_total", &e),
            Some(1.0)
        );
    }

    #[test]
    fn bucket_bounds_print_as_prometheus_does() {
        assert_eq!(sonde_query_format(0.002), "0.002");
        assert_eq!(sonde_query_format(1.0), "1");
        assert_eq!(sonde_query_format(15.0), "15");
    }
}
