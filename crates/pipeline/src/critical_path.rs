//! The critical path of a trace, and its share per service and operation
//! over many traces.
//!
//! The critical path is the chain of work that determines how long the
//! trace's root took: shorten anything on it and the request gets faster;
//! shorten anything off it and nothing changes. It is found backwards from
//! the root's end, as Jaeger's UI and Uber's CRISP do, with these rules:
//!
//! 1. A span's time runs from its start to its end; a child counts only
//!    within its parent's interval. A child that starts before its parent
//!    or ends after it (clock skew between hosts) is clipped to the parent;
//!    a child that starts after its parent ended (fire-and-forget work, a
//!    consumer reading a message later) is not on the parent's critical
//!    path at all: the parent did not wait for it.
//! 2. Walking back from a point in time (the cursor, first the parent's
//!    end), the parent is blocked by the child that was running latest
//!    before the cursor: the one with the largest `min(end, cursor)` among
//!    children started before the cursor. Jaeger considers only children
//!    that end before the cursor, so with overlapping children A [5, 10]
//!    and B [0, 7] it charges [0, 5] to the parent's own time although the
//!    parent was waiting on B then; here B's [0, 5] is on the path.
//! 3. Time between the blocking child's end (clipped at the cursor) and the
//!    cursor is the parent's own time on the path; the blocking child's
//!    part is its own critical path, found the same way within
//!    [its start, min(its end, cursor)]; then the cursor moves to the
//!    child's start. Children started at or after the cursor ran in a
//!    stretch already accounted for.
//! 4. Missing spans: a span whose parent never arrived is a root of its
//!    own; the trace's root is the span without a parent (the earliest of
//!    several), else the earliest orphan. Spans not under that root are
//!    not on its path.
//! 5. What remains before the first child (or in a span without children)
//!    is the span's own time. The parts sum to the root's duration.
//!
//! Costs: each span's children are sorted once by end; the walk is linear
//! in the spans after that, with the recursion depth bounded (deeper
//! subtrees count as their top span's own time).

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use sonde_model::records::{SpanRecord, TraceId};
use sonde_model::{stale_nan, Series};

use crate::histogram::point;
use crate::names;
use crate::window::{Delta, Emit, Windows};
use crate::{sampling_weight, Options, Processor, Signals, Sink, StateSize};

/// A span as the critical path needs it.
#[derive(Debug, Clone)]
pub struct PathSpan {
    pub id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub service: Arc<str>,
    pub operation: Arc<str>,
}

impl PathSpan {
    pub fn of(s: &SpanRecord) -> PathSpan {
        PathSpan {
            id: s.span_id.0,
            parent: s.parent_span_id.map(|p| p.0),
            start_ns: s.start_ns,
            end_ns: s.end_ns.max(s.start_ns),
            service: Arc::from(s.origin.service.as_str()),
            operation: Arc::from(s.name.as_str()),
        }
    }
}

/// One stretch of the critical path: which span's own time it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Stretch {
    pub span: usize,
    pub start_ns: i64,
    pub end_ns: i64,
}

const MAX_DEPTH: usize = 200;

/// The critical path of the trace `spans` (indexes into it), latest
/// stretch first, and the index of the root it is of; `None` for no spans.
pub fn critical_path(spans: &[PathSpan]) -> Option<(usize, Vec<Stretch>)> {
    let index: HashMap<[u8; 8], usize> = spans.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut orphans = Vec::new();
    let mut true_roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent.and_then(|p| index.get(&p)) {
            Some(&p) if p != i => children[p].push(i),
            _ if s.parent.is_none() => true_roots.push(i),
            _ => orphans.push(i),
        }
    }
    let root = true_roots
        .into_iter()
        .chain(orphans)
        .min_by_key(|&i| (spans[i].parent.is_some(), spans[i].start_ns))?;
    // Latest-ending children first.
    for c in &mut children {
        c.sort_by_key(|&i| std::cmp::Reverse(spans[i].end_ns));
    }
    let mut out = Vec::new();
    let r = &spans[root];
    walk(spans, &children, root, r.start_ns, r.end_ns, 0, &mut out);
    Some((root, out))
}

/// Appends the critical path of `span` within [lo, hi] (the part of it
/// its parent waited for), latest first.
fn walk(
    spans: &[PathSpan],
    children: &[Vec<usize>],
    span: usize,
    lo: i64,
    hi: i64,
    depth: usize,
    out: &mut Vec<Stretch>,
) {
    let s = &spans[span];
    let lo = lo.max(s.start_ns);
    let hi = hi.min(s.end_ns).max(lo);
    let mut cursor = hi;
    if depth < MAX_DEPTH {
        loop {
            // The child blocking the span just before the cursor (rule 2),
            // clipped to the span's interval (rule 1).
            let mut best: Option<(i64, usize)> = None;
            for &c in &children[span] {
                let child = &spans[c];
                let start = child.start_ns.max(lo);
                if start >= cursor {
                    continue;
                }
                let end = child.end_ns.min(cursor);
                if end <= lo {
                    continue;
                }
                if best.is_none_or(|(e, b)| {
                    end > e || (end == e && spans[c].start_ns > spans[b].start_ns)
                }) {
                    best = Some((end, c));
                }
            }
            let Some((end, c)) = best else { break };
            if end < cursor {
                out.push(Stretch {
                    span,
                    start_ns: end,
                    end_ns: cursor,
                });
            }
            let start = spans[c].start_ns.max(lo);
            walk(spans, children, c, start, end, depth + 1, out);
            cursor = start;
            if cursor <= lo {
                break;
            }
        }
    }
    if cursor > lo {
        out.push(Stretch {
            span,
            start_ns: lo,
            end_ns: cursor,
        });
    }
}

/// Critical-path seconds per (root service, root operation, service,
/// operation), and traces per root.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    root_service: Arc<str>,
    root_operation: Arc<str>,
    /// `None`: the traces counter of the root.
    on_path: Option<(Arc<str>, Arc<str>)>,
}

#[derive(Default)]
struct Total(f64);

impl Delta for Total {
    fn merge(&mut self, other: &Total) {
        self.0 += other.0;
    }
}

struct OpenTrace {
    spans: Vec<PathSpan>,
    /// The sampling weight of the trace (of its spans; the root's when seen).
    weight: f64,
    root_weight: Option<f64>,
    last_seen_ms: i64,
}

/// Streams traces into critical-path series: a trace is final once no span
/// of it arrived for `trace_quiet_ms` (wall time); open traces are capped
/// (`max_open_traces`, the oldest finalised early) as are spans per trace.
pub struct CriticalPath {
    open: FxHashMap<TraceId, OpenTrace>,
    /// Spans held in open traces, capped at `max_open_spans`.
    open_spans: usize,
    max_open_spans: usize,
    /// Service and operation names, shared by the spans that carry them.
    names: FxHashMap<Box<str>, Arc<str>>,
    windows: Windows<Key, Total>,
    quiet_ms: i64,
    max_open: usize,
    max_keys: usize,
    finalised: u64,
}

pub const MAX_SPANS_PER_TRACE: usize = 10_000;
/// Spans held per open trace on average before the oldest are finalised.
const SPANS_PER_OPEN_TRACE: usize = 20;
/// Distinct names interned before the table starts over.
const MAX_NAMES: usize = 100_000;
pub const MAX_KEYS: usize = 20_000;
const WINDOW_MS: i64 = 1_000;

impl CriticalPath {
    pub fn new(opts: &Options) -> CriticalPath {
        CriticalPath {
            open: FxHashMap::default(),
            open_spans: 0,
            max_open_spans: opts.max_open_traces.max(1) * SPANS_PER_OPEN_TRACE,
            names: FxHashMap::default(),
            // A trace's series land at its root's end, once it is final.
            windows: Windows::new(
                WINDOW_MS,
                opts.lateness_ms + opts.trace_quiet_ms,
                opts.idle_ms,
            ),
            quiet_ms: opts.trace_quiet_ms,
            max_open: opts.max_open_traces.max(1),
            max_keys: MAX_KEYS,
            finalised: 0,
        }
    }

    /// Traces finalised since start.
    pub fn finalised(&self) -> u64 {
        self.finalised
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(s.into(), a.clone());
        a
    }

    /// Finalises the trace quiet the longest.
    fn finalise_oldest(&mut self, now_ms: i64) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, t)| t.last_seen_ms)
            .map(|(id, _)| *id);
        if let Some(t) = oldest.and_then(|id| self.open.remove(&id)) {
            self.open_spans -= t.spans.len();
            self.finalise(t, now_ms);
        }
    }

    fn finalise(&mut self, trace: OpenTrace, now_ms: i64) {
        self.finalised += 1;
        let Some((root, path)) = critical_path(&trace.spans) else {
            return;
        };
        let r = &trace.spans[root];
        let weight = trace.root_weight.unwrap_or(trace.weight);
        let at_ms = r.end_ns.div_euclid(1_000_000);
        let mut per: FxHashMap<(Arc<str>, Arc<str>), i64> = FxHashMap::default();
        for st in &path {
            let s = &trace.spans[st.span];
            *per.entry((s.service.clone(), s.operation.clone()))
                .or_default() += st.end_ns - st.start_ns;
        }
        let root_key = |on_path| Key {
            root_service: r.service.clone(),
            root_operation: r.operation.clone(),
            on_path,
        };
        if !self.windows.knows(&root_key(None)) && self.windows.len() >= self.max_keys {
            return;
        }
        self.windows
            .add(root_key(None), at_ms, now_ms, |t| t.0 += weight);
        for ((service, operation), ns) in per {
            let mut key = root_key(Some((service.clone(), operation)));
            if !self.windows.knows(&key) && self.windows.len() >= self.max_keys {
                key = root_key(Some((service, Arc::from(crate::spanmetrics::OTHER))));
            }
            self.windows
                .add(key, at_ms, now_ms, |t| t.0 += ns as f64 / 1e9 * weight);
        }
    }
}

fn series(k: &Key, v: f64, t: i64, out: &mut Vec<Series>) {
    match &k.on_path {
        None => out.push(point(
            names::CRITICAL_PATH_TRACES,
            &[
                (names::LABEL_ROOT_SERVICE, &*k.root_service),
                (names::LABEL_ROOT_OPERATION, &*k.root_operation),
            ],
            None,
            t,
            v,
        )),
        Some((service, operation)) => out.push(point(
            names::CRITICAL_PATH_SECONDS,
            &[
                (names::LABEL_ROOT_SERVICE, &*k.root_service),
                (names::LABEL_ROOT_OPERATION, &*k.root_operation),
                ("service", &**service),
                ("operation", &**operation),
            ],
            None,
            t,
            v,
        )),
    }
}

impl Processor for CriticalPath {
    fn name(&self) -> &'static str {
        "critical_path"
    }

    fn signals(&self) -> Signals {
        Signals {
            spans: true,
            ..Signals::default()
        }
    }

    fn on_spans(&mut self, spans: &[SpanRecord], now_ms: i64) {
        for s in spans {
            self.windows.observe(s.end_ns.div_euclid(1_000_000), now_ms);
            // Full: the traces quiet the longest are final now.
            if !self.open.contains_key(&s.trace_id) && self.open.len() >= self.max_open {
                self.finalise_oldest(now_ms);
            }
            while self.open_spans >= self.max_open_spans && !self.open.is_empty() {
                self.finalise_oldest(now_ms);
            }
            let span = PathSpan {
                id: s.span_id.0,
                parent: s.parent_span_id.map(|p| p.0),
                start_ns: s.start_ns,
                end_ns: s.end_ns.max(s.start_ns),
                service: self.intern(&s.origin.service),
                operation: self.intern(&s.name),
            };
            let t = self.open.entry(s.trace_id).or_insert_with(|| OpenTrace {
                spans: Vec::new(),
                weight: 1.0,
                root_weight: None,
                last_seen_ms: now_ms,
            });
            t.last_seen_ms = now_ms;
            let w = sampling_weight(s);
            t.weight = w;
            if s.parent_span_id.is_none() {
                t.root_weight = Some(w);
            }
            if t.spans.len() < MAX_SPANS_PER_TRACE {
                t.spans.push(span);
                self.open_spans += 1;
            }
        }
    }

    fn tick(&mut self, now_ms: i64, sink: &mut dyn Sink) {
        let quiet: Vec<TraceId> = self
            .open
            .iter()
            .filter(|(_, t)| now_ms - t.last_seen_ms >= self.quiet_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in quiet {
            if let Some(t) = self.open.remove(&id) {
                self.open_spans -= t.spans.len();
                self.finalise(t, now_ms);
            }
        }
        let mut out = Vec::new();
        self.windows.close(now_ms, |t, e| match e {
            Emit::Total(k, v) => series(k, v.0, t, &mut out),
            Emit::Stale(k) => series(k, stale_nan(), t, &mut out),
        });
        if !out.is_empty() {
            sink.series(out);
        }
    }

    fn state(&self) -> StateSize {
        StateSize {
            entries: self.open_spans + self.windows.len(),
            cap: self.max_open_spans + self.max_keys + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans as (id, parent, service, start ms, end ms).
    fn trace(spec: &[(u8, Option<u8>, &str, i64, i64)]) -> Vec<PathSpan> {
        spec.iter()
            .map(|&(id, parent, svc, start, end)| PathSpan {
                id: [id; 8],
                parent: parent.map(|p| [p; 8]),
                start_ns: start * 1_000_000,
                end_ns: end * 1_000_000,
                service: Arc::from(svc),
                operation: Arc::from("op"),
            })
            .collect()
    }

    /// Milliseconds of own critical-path time per service.
    fn shares(spans: &[PathSpan]) -> Vec<(String, i64)> {
        let (_, path) = critical_path(spans).unwrap();
        let mut per: HashMap<String, i64> = HashMap::new();
        for st in &path {
            *per.entry(spans[st.span].service.to_string()).or_default() +=
                (st.end_ns - st.start_ns) / 1_000_000;
        }
        let total: i64 = per.values().sum();
        let root = critical_path(spans).unwrap().0;
        assert_eq!(
            total,
            (spans[root].end_ns - spans[root].start_ns) / 1_000_000,
            "the parts sum to the root"
        );
        let mut v: Vec<(String, i64)> = per.into_iter().filter(|(_, ms)| *ms > 0).collect();
        v.sort();
        v
    }

    fn ms(v: &[(&str, i64)]) -> Vec<(String, i64)> {
        v.iter().map(|(s, m)| (s.to_string(), *m)).collect()
    }

    #[test]
    fn a_slow_callee_is_blamed_not_the_caller_waiting_on_it() {
        // api [0, 100] calls db [10, 90].
        let t = trace(&[(1, None, "api", 0, 100), (2, Some(1), "db", 10, 90)]);
        assert_eq!(shares(&t), ms(&[("api", 20), ("db", 80)]));
    }

    #[test]
    fn parallel_children_only_the_longest_is_on_the_path() {
        // api fans out to a [10, 60] and b [10, 90] in parallel.
        let t = trace(&[
            (1, None, "api", 0, 100),
            (2, Some(1), "a", 10, 60),
            (3, Some(1), "b", 10, 90),
        ]);
        assert_eq!(shares(&t), ms(&[("api", 20), ("b", 80)]));
    }

    #[test]
    fn overlapping_children_the_parent_waits_on_each_in_turn() {
        // b [0, 70] and a [50, 100]: after a started, the parent waits on a;
        // before it, on b (Jaeger would charge [0, 50] to the parent).
        let t = trace(&[
            (1, None, "api", 0, 100),
            (2, Some(1), "a", 50, 100),
            (3, Some(1), "b", 0, 70),
        ]);
        assert_eq!(shares(&t), ms(&[("a", 50), ("b", 50)]));
    }

    #[test]
    fn sequential_children_and_gaps_add_up() {
        let t = trace(&[
            (1, None, "api", 0, 100),
            (2, Some(1), "auth", 5, 25),
            (3, Some(1), "db", 30, 60),
            (4, Some(3), "disk", 35, 55),
            (5, Some(1), "cache", 70, 80),
        ]);
        assert_eq!(
            shares(&t),
            ms(&[
                ("api", 40),
                ("auth", 20),
                ("cache", 10),
                ("db", 10),
                ("disk", 20)
            ])
        );
    }

    #[test]
    fn async_children_that_outlive_or_follow_the_parent_are_cut_at_its_end() {
        // A producer span [60, 200] outlives the request; a consumer starts
        // after the request ended: neither delays the response past 100.
        let t = trace(&[
            (1, None, "api", 0, 100),
            (2, Some(1), "queue", 60, 200),
            (3, Some(2), "worker", 150, 400),
        ]);
        assert_eq!(shares(&t), ms(&[("api", 60), ("queue", 40)]));
    }

    #[test]
    fn clock_skew_is_clipped_to_the_parent() {
        // The child's host runs 30 ms early: it appears to start before
        // its parent and end before the parent even called.
        let t = trace(&[(1, None, "api", 100, 200), (2, Some(1), "db", 80, 190)]);
        assert_eq!(shares(&t), ms(&[("api", 10), ("db", 90)]));
    }

    #[test]
    fn missing_spans_orphans_are_not_on_the_roots_path() {
        // Span 9's parent never arrived; the root is the span without one.
        let t = trace(&[
            (1, None, "api", 0, 100),
            (2, Some(1), "db", 10, 50),
            (3, Some(9), "lost", 0, 500),
        ]);
        assert_eq!(shares(&t), ms(&[("api", 60), ("db", 40)]));
        // Without the root, the earliest orphan stands in for it.
        let t = trace(&[(2, Some(1), "db", 10, 50), (3, Some(2), "disk", 20, 30)]);
        assert_eq!(shares(&t), ms(&[("db", 30), ("disk", 10)]));
    }

    #[test]
    fn a_thousand_span_trace_is_fast() {
        let mut spans = trace(&[(0, None, "root", 0, 100_000)]);
        let id_of = |n: u32| {
            let mut id = [0u8; 8];
            id[..4].copy_from_slice(&n.to_be_bytes());
            id
        };
        // Ten children of the root, each with ten children, and so on.
        for i in 0..1000u32 {
            let id = id_of(i + 1);
            let parent = if i < 10 { [0u8; 8] } else { id_of(i / 10) };
            spans.push(PathSpan {
                id,
                parent: Some(parent),
                start_ns: (i as i64 % 97) * 1_000_000,
                end_ns: (i as i64 % 97 + 3) * 1_000_000,
                service: Arc::from("svc"),
                operation: Arc::from("op"),
            });
        }
        let started = std::time::Instant::now();
        for _ in 0..10 {
            critical_path(&spans).unwrap();
        }
        // A sanity bound only (timing is for the benchmark): 10 runs well
        // under a second even in a debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn the_processor_emits_shares_per_root_operation_at_the_traces_end() {
        use crate::spanmetrics::tests::span_at;
        use crate::Collect;
        use sonde_model::records::SpanKind;
        let opts = Options::default();
        let mut p = CriticalPath::new(&opts);
        let now = 1_700_000_000_000;
        let mut root = span_at("api", 1, None, SpanKind::Server, now - 60_000, 100, false);
        root.name = "GET /buy".into();
        let mut db = span_at("db", 2, Some(1), SpanKind::Server, now - 60_010, 80, false);
        db.name = "SELECT".into();
        // th:8: half sampled, each trace stands for 2.
        root.trace_state = "ot=th:8".into();
        p.on_spans(&[db, root], now);
        let mut out = Collect::default();
        p.tick(
            now + opts.trace_quiet_ms + opts.lateness_ms + 2_000,
            &mut out,
        );
        let db_s = out
            .last(
                names::CRITICAL_PATH_SECONDS,
                &[("root_operation", "GET /buy"), ("service", "db")],
            )
            .unwrap();
        let api_s = out
            .last(
                names::CRITICAL_PATH_SECONDS,
                &[("service", "api"), ("operation", "GET /buy")],
            )
            .unwrap();
        assert!((db_s - 0.16).abs() < 1e-9, "{db_s}");
        assert!((api_s - 0.04).abs() < 1e-9, "{api_s}");
        assert_eq!(
            out.last(names::CRITICAL_PATH_TRACES, &[("root_service", "api")]),
            Some(2.0)
        );
        // Stamped at the trace's end, not when it was finalised.
        let first = out.samples(names::CRITICAL_PATH_TRACES, &[])[0].0;
        assert_eq!(
            first,
            now - 60_000 + 1_000 - (now - 60_000).rem_euclid(1_000)
        );
        assert_eq!(p.state().entries, p.windows.len(), "no trace left open");
    }

    #[test]
    fn open_traces_are_capped_and_the_oldest_measured_early() {
        use crate::spanmetrics::tests::span_at;
        use sonde_model::records::SpanKind;
        let opts = Options {
            max_open_traces: 3,
            ..Options::default()
        };
        let mut p = CriticalPath::new(&opts);
        let now = 1_700_000_000_000;
        for i in 0..10u8 {
            let mut s = span_at("api", 1, None, SpanKind::Server, now - 1_000, 10, false);
            s.trace_id = TraceId([i; 16]);
            p.on_spans(&[s], now + i as i64);
        }
        assert_eq!(p.open.len(), 3);
        assert_eq!(p.finalised(), 7, "measured early, not dropped");
        assert!(p.state().entries <= p.state().cap);
    }
}
