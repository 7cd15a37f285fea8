//! The service graph: calls between services, from pairs of a client (or
//! producer) span and the server (or consumer) span it caused, with the
//! Collector's `servicegraph` connector's names (see [`names`]). A client
//! span that no server answers within [`PAIR_WAIT`] of event time is a call
//! to a database (`db.name`, `db.namespace`, `db.system`) or to an
//! external service (`peer.service`, `server.address`) when it says so.
//! Calls are stamped with the client span's end and weighted by its
//! sampling probability.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use sonde_model::records::{attribute, SpanKind, SpanRecord, StatusCode};
use sonde_model::{stale_nan, Series};

use crate::histogram::{point, Histo, BUCKETS};
use crate::names;
use crate::window::{Delta, Emit, Windows};
use crate::{end_ms, sampling_weight, Options, Processor, Signals, Sink, StateSize};

pub const MAX_EDGES: usize = 5_000;
/// Halves waiting for their other half.
pub const MAX_PENDING: usize = 100_000;
/// How long, in event time, a half waits for the other.
pub const PAIR_WAIT_MS: i64 = 10_000;
const WINDOW_MS: i64 = 1_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct EdgeKey {
    client: Arc<str>,
    server: Arc<str>,
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

impl Delta for Edge {
    fn merge(&mut self, o: &Edge) {
        self.total += o.total;
        self.failed += o.failed;
        self.client.add(&o.client);
        self.server.add(&o.server);
    }
}

/// One half of a call, waiting for the other.
struct Half {
    service: Arc<str>,
    seconds: f64,
    failed: bool,
    weight: f64,
    end_ms: i64,
    /// For a client span: the node to use if no server half ever comes.
    virtual_node: Option<(Arc<str>, &'static str)>,
}

pub struct ServiceGraph {
    windows: Windows<EdgeKey, Edge>,
    /// Client spans by their span id; server spans by their parent's.
    clients: FxHashMap<[u8; 8], Half>,
    servers: FxHashMap<[u8; 8], Half>,
    max_edges: usize,
    dropped: u64,
}

/// Where a client span goes when no server span answers it.
fn virtual_node(s: &SpanRecord) -> Option<(Arc<str>, &'static str)> {
    let text = |k: &str| attribute(&s.attributes, k).map(|v| Arc::<str>::from(v.as_text()));
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

impl ServiceGraph {
    pub fn new(opts: &Options) -> ServiceGraph {
        ServiceGraph {
            // Calls are complete only once their halves had time to pair.
            windows: Windows::new(WINDOW_MS, opts.lateness_ms + PAIR_WAIT_MS, opts.idle_ms),
            clients: FxHashMap::default(),
            servers: FxHashMap::default(),
            max_edges: MAX_EDGES,
            dropped: 0,
        }
    }

    fn add(&mut self, key: EdgeKey, t_ms: i64, now_ms: i64, update: impl FnOnce(&mut Edge)) {
        if !self.windows.knows(&key) && self.windows.len() >= self.max_edges {
            self.dropped += 1;
            return;
        }
        self.windows.add(key, t_ms, now_ms, update);
    }

    fn pair(&mut self, client: Half, server: Half, now_ms: i64) {
        let key = EdgeKey {
            client: client.service.clone(),
            server: server.service.clone(),
            connection_type: "",
        };
        self.add(key, client.end_ms.max(server.end_ms), now_ms, |e| {
            e.total += client.weight;
            if client.failed || server.failed {
                e.failed += client.weight;
            }
            e.client.observe(client.seconds, client.weight);
            e.server.observe(server.seconds, server.weight);
        });
    }

    /// Settles the halves whose other half did not come in time.
    fn expire(&mut self, now_ms: i64) {
        let Some(event_now) = self.windows.event_now(now_ms) else {
            return;
        };
        let cutoff = event_now - PAIR_WAIT_MS;
        let expired: Vec<[u8; 8]> = self
            .clients
            .iter()
            .filter(|(_, h)| h.end_ms < cutoff)
            .map(|(k, _)| *k)
            .collect();
        for id in expired {
            let Some(client) = self.clients.remove(&id) else {
                continue;
            };
            if let Some((node, kind)) = client.virtual_node.clone() {
                let key = EdgeKey {
                    client: client.service.clone(),
                    server: node,
                    connection_type: kind,
                };
                self.add(key, client.end_ms, now_ms, |e| {
                    e.total += client.weight;
                    if client.failed {
                        e.failed += client.weight;
                    }
                    e.client.observe(client.seconds, client.weight);
                });
            }
        }
        self.servers.retain(|_, h| h.end_ms >= cutoff);
    }
}

fn series(k: &EdgeKey, edge: Option<&Edge>, t: i64, out: &mut Vec<Series>) {
    let mut labels = vec![("client", &*k.client), ("server", &*k.server)];
    if !k.connection_type.is_empty() {
        labels.push(("connection_type", k.connection_type));
    }
    let stale = Edge {
        total: stale_nan(),
        failed: stale_nan(),
        client: Histo {
            count: stale_nan(),
            sum: stale_nan(),
            buckets: [stale_nan(); BUCKETS.len()],
        },
        server: Histo {
            count: stale_nan(),
            sum: stale_nan(),
            buckets: [stale_nan(); BUCKETS.len()],
        },
    };
    let e = edge.unwrap_or(&stale);
    out.push(point(names::GRAPH_REQUESTS, &labels, None, t, e.total));
    out.push(point(
        names::GRAPH_REQUESTS_FAILED,
        &labels,
        None,
        t,
        e.failed,
    ));
    e.client
        .series(names::GRAPH_CLIENT_SECONDS, &labels, t, out);
    e.server
        .series(names::GRAPH_SERVER_SECONDS, &labels, t, out);
}

impl Processor for ServiceGraph {
    fn name(&self) -> &'static str {
        "servicegraph"
    }

    fn signals(&self) -> Signals {
        Signals {
            spans: true,
            ..Signals::default()
        }
    }

    fn on_spans(&mut self, spans: &[SpanRecord], now_ms: i64) {
        for s in spans {
            let end = self.windows.observe(end_ms(s), now_ms);
            let half = |virtual_node| Half {
                service: Arc::from(s.origin.service.as_str()),
                seconds: s.duration_ns() as f64 / 1e9,
                failed: s.status == StatusCode::Error,
                weight: sampling_weight(s),
                end_ms: end,
                virtual_node,
            };
            match s.kind {
                SpanKind::Client | SpanKind::Producer => {
                    let client = half(virtual_node(s));
                    match self.servers.remove(&s.span_id.0) {
                        Some(server) => self.pair(client, server, now_ms),
                        None if self.clients.len() < MAX_PENDING => {
                            self.clients.insert(s.span_id.0, client);
                        }
                        None => self.dropped += 1,
                    }
                }
                SpanKind::Server | SpanKind::Consumer => {
                    let Some(parent) = s.parent_span_id else {
                        continue;
                    };
                    let server = half(None);
                    match self.clients.remove(&parent.0) {
                        Some(client) => self.pair(client, server, now_ms),
                        None if self.servers.len() < MAX_PENDING => {
                            self.servers.insert(parent.0, server);
                        }
                        None => self.dropped += 1,
                    }
                }
                _ => {}
            }
        }
    }

    fn tick(&mut self, now_ms: i64, sink: &mut dyn Sink) {
        self.expire(now_ms);
        let mut out = Vec::new();
        self.windows.close(now_ms, |t, e| match e {
            Emit::Total(k, edge) => series(k, Some(edge), t, &mut out),
            Emit::Stale(k) => series(k, None, t, &mut out),
        });
        if !out.is_empty() {
            sink.series(out);
        }
    }

    fn state(&self) -> StateSize {
        StateSize {
            entries: self.windows.len() + self.clients.len() + self.servers.len(),
            cap: self.max_edges + 2 * MAX_PENDING,
        }
    }
}

#[cfg(test)]
mod tests {
    use sonde_model::records::AttrValue;

    use super::*;
    use crate::spanmetrics::tests::{span, span_at, NOW};
    use crate::Collect;

    const LATER: i64 = NOW + PAIR_WAIT_MS + 10_000;

    #[test]
    fn client_and_server_halves_make_an_edge_in_either_order() {
        let mut g = ServiceGraph::new(&Options::default());
        g.on_spans(
            &[span("checkout", 9, Some(1), SpanKind::Server, 20, true)],
            NOW,
        );
        g.on_spans(
            &[span("frontend", 1, Some(0), SpanKind::Client, 25, false)],
            NOW,
        );
        g.on_spans(
            &[span("frontend", 3, None, SpanKind::Client, 5, false)],
            NOW,
        );
        g.on_spans(
            &[span("checkout", 4, Some(3), SpanKind::Server, 4, false)],
            NOW,
        );
        let mut out = Collect::default();
        g.tick(LATER, &mut out);
        let e = [("client", "frontend"), ("server", "checkout")];
        assert_eq!(out.last(names::GRAPH_REQUESTS, &e), Some(2.0));
        assert_eq!(out.last(names::GRAPH_REQUESTS_FAILED, &e), Some(1.0));
        // Stamped at the calls' own time, not at the tick.
        let first = out.samples(names::GRAPH_REQUESTS, &e)[0];
        assert_eq!(first, (NOW - 4_000, 2.0));
    }

    #[test]
    fn unanswered_database_calls_become_database_nodes_at_their_own_time() {
        let mut g = ServiceGraph::new(&Options::default());
        let mut db = span_at(
            "catalog",
            5,
            Some(2),
            SpanKind::Client,
            NOW - 60_000,
            3,
            false,
        );
        db.attributes = vec![("db.system".into(), AttrValue::Str("postgresql".into()))];
        g.on_spans(&[db], NOW);
        let mut out = Collect::default();
        g.tick(LATER, &mut out);
        let e = [
            ("client", "catalog"),
            ("server", "postgresql"),
            ("connection_type", "database"),
        ];
        assert_eq!(
            out.samples(names::GRAPH_REQUESTS, &e)[0],
            (NOW - 59_000, 1.0)
        );
        assert_eq!(g.state().entries, 1, "the half is settled");
    }
}
