//! RED metrics per service and operation, derived from spans: calls and a
//! duration histogram by `service_name`, `span_name`, `span_kind` and
//! `status_code` (the Collector's `spanmetrics` connector's names, see
//! [`names`]), weighted by each span's sampling probability and stamped
//! with the spans' end times.

use std::sync::Arc;

use sonde_model::records::{SpanKind, SpanRecord, StatusCode};
use sonde_model::{stale_nan, Series};

use crate::histogram::{point, Histo, BUCKETS};
use crate::names::{self, kind_label, status_label};
use crate::window::{Delta, Emit, Windows};
use crate::{end_ms, sampling_weight, Options, Processor, Signals, Sink, StateSize};

/// Distinct (service, operation, kind, status) keys kept; beyond, a new
/// operation is folded into [`OTHER`] so cardinality stays bounded.
pub const MAX_KEYS: usize = 20_000;
/// The operation name new keys get past [`MAX_KEYS`].
pub const OTHER: &str = "_other_";
/// Room for the folded keys (one per service, kind and status) past the cap.
const FOLDED_ROOM: usize = 1_000;
/// One sample per key per second of event time.
const WINDOW_MS: i64 = 1_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    service: Arc<str>,
    name: Arc<str>,
    kind: SpanKind,
    status: StatusCode,
}

#[derive(Default)]
struct Red {
    calls: f64,
    duration: Histo,
}

impl Delta for Red {
    fn merge(&mut self, other: &Red) {
        self.calls += other.calls;
        self.duration.add(&other.duration);
    }
}

pub struct SpanMetrics {
    windows: Windows<Key, Red>,
    max_keys: usize,
    folded: u64,
}

impl SpanMetrics {
    pub fn new(opts: &Options) -> SpanMetrics {
        SpanMetrics::with_cap(opts, MAX_KEYS)
    }

    pub fn with_cap(opts: &Options, max_keys: usize) -> SpanMetrics {
        SpanMetrics {
            windows: Windows::new(WINDOW_MS, opts.lateness_ms, opts.idle_ms),
            max_keys,
            folded: 0,
        }
    }

    /// Spans counted under [`OTHER`] because of the key cap.
    pub fn folded(&self) -> u64 {
        self.folded
    }
}

fn series(k: &Key, red: Option<&Red>, t: i64, out: &mut Vec<Series>) {
    let labels = [
        ("job", &*k.service),
        (names::LABEL_SERVICE, &*k.service),
        (names::LABEL_SPAN_NAME, &*k.name),
        (names::LABEL_SPAN_KIND, kind_label(k.kind)),
        (names::LABEL_STATUS, status_label(k.status)),
    ];
    let stale;
    let (calls, duration) = match red {
        Some(r) => (r.calls, &r.duration),
        None => {
            stale = Histo {
                count: stale_nan(),
                sum: stale_nan(),
                buckets: [stale_nan(); BUCKETS.len()],
            };
            (stale_nan(), &stale)
        }
    };
    out.push(point(names::SPAN_CALLS, &labels, None, t, calls));
    duration.series(names::SPAN_DURATION, &labels, t, out);
}

impl Processor for SpanMetrics {
    fn name(&self) -> &'static str {
        "spanmetrics"
    }

    fn signals(&self) -> Signals {
        Signals {
            spans: true,
            ..Signals::default()
        }
    }

    fn on_spans(&mut self, spans: &[SpanRecord], now_ms: i64) {
        for s in spans {
            let weight = sampling_weight(s);
            let seconds = s.duration_ns() as f64 / 1e9;
            let mut key = Key {
                service: Arc::from(s.origin.service.as_str()),
                name: Arc::from(s.name.as_str()),
                kind: s.kind,
                status: s.status,
            };
            if !self.windows.knows(&key) && self.windows.len() >= self.max_keys {
                key.name = Arc::from(OTHER);
                self.folded += 1;
                if !self.windows.knows(&key) && self.windows.len() >= self.max_keys + FOLDED_ROOM {
                    continue;
                }
            }
            self.windows.add(key, end_ms(s), now_ms, |red| {
                red.calls += weight;
                red.duration.observe(seconds, weight);
            });
        }
    }

    fn tick(&mut self, now_ms: i64, sink: &mut dyn Sink) {
        let mut out = Vec::new();
        self.windows.close(now_ms, |t, e| match e {
            Emit::Total(k, red) => series(k, Some(red), t, &mut out),
            Emit::Stale(k) => series(k, None, t, &mut out),
        });
        if !out.is_empty() {
            sink.series(out);
        }
    }

    fn state(&self) -> StateSize {
        StateSize {
            entries: self.windows.len(),
            cap: self.max_keys + FOLDED_ROOM,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use sonde_model::records::{Origin, SpanId, TraceId};

    use super::*;
    use crate::Collect;

    pub(crate) const NOW: i64 = 1_700_000_000_000;

    /// A span of `service` ending at `end_ms`, `ms` long.
    pub(crate) fn span(
        service: &str,
        id: u8,
        parent: Option<u8>,
        kind: SpanKind,
        ms: i64,
        error: bool,
    ) -> SpanRecord {
        span_at(service, id, parent, kind, NOW - 5_000, ms, error)
    }

    pub(crate) fn span_at(
        service: &str,
        id: u8,
        parent: Option<u8>,
        kind: SpanKind,
        end_ms: i64,
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
            start_ns: (end_ms - ms) * 1_000_000,
            end_ns: end_ms * 1_000_000,
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

    #[test]
    fn red_metrics_are_weighted_by_the_sampling_threshold() {
        let mut m = SpanMetrics::new(&Options::default());
        let mut sampled = span("api", 1, None, SpanKind::Server, 30, false);
        // th:c = reject 3/4: each kept span stands for 4.
        sampled.trace_state = "ot=th:c".into();
        m.on_spans(
            &[sampled, span("api", 2, None, SpanKind::Server, 3, true)],
            NOW,
        );
        let mut out = Collect::default();
        m.tick(NOW + 10_000, &mut out);
        let ok = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_UNSET"),
        ];
        assert_eq!(out.last(names::SPAN_CALLS, &ok), Some(4.0));
        let err = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_ERROR"),
        ];
        assert_eq!(out.last(names::SPAN_CALLS, &err), Some(1.0));
        let bucket = names::bucket(names::SPAN_DURATION);
        let le = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_UNSET"),
            ("le", "0.05"),
        ];
        assert_eq!(out.last(&bucket, &le), Some(4.0));
        let le = [
            ("service_name", "api"),
            ("status_code", "STATUS_CODE_UNSET"),
            ("le", "0.01"),
        ];
        assert_eq!(out.last(&bucket, &le), Some(0.0));
    }

    #[test]
    fn a_replayed_hour_lands_in_its_own_time() {
        let mut m = SpanMetrics::new(&Options::default());
        let hour_ago = NOW - 3_600_000;
        // Ten minutes of traffic from an hour ago, 1 request a second,
        // replayed in one burst now.
        let spans: Vec<SpanRecord> = (0..600)
            .map(|i| {
                span_at(
                    "api",
                    1,
                    None,
                    SpanKind::Server,
                    hour_ago + i * 1_000 + 500,
                    10,
                    false,
                )
            })
            .collect();
        m.on_spans(&spans, NOW);
        let mut out = Collect::default();
        m.tick(NOW + 3_000, &mut out);
        let calls = out.samples(names::SPAN_CALLS, &[("service_name", "api")]);
        // The counter rises one a second through that hour's ten minutes.
        let at = |t: i64| calls.iter().find(|x| x.0 == t).map(|x| x.1);
        assert_eq!(at(hour_ago + 1_000), Some(1.0));
        assert_eq!(at(hour_ago + 300_000), Some(300.0));
        assert_eq!(at(hour_ago + 600_000), Some(600.0));
        assert!(
            calls.iter().all(|(t, _)| *t >= hour_ago),
            "nothing stamped before the data"
        );
    }

    #[test]
    fn keys_are_capped_and_folded_into_other() {
        let mut m = SpanMetrics::with_cap(&Options::default(), 3);
        let spans: Vec<SpanRecord> = (0..10)
            .map(|i| {
                let mut s = span("api", i, None, SpanKind::Server, 5, false);
                s.name = format!("op-{i}");
                s
            })
            .collect();
        m.on_spans(&spans, NOW);
        assert!(m.state().entries <= m.state().cap);
        let mut out = Collect::default();
        m.tick(NOW + 10_000, &mut out);
        assert!(out
            .last(names::SPAN_CALLS, &[("span_name", OTHER)])
            .is_some());
    }

    #[test]
    fn idle_keys_expire_with_a_stale_marker() {
        let opts = Options {
            lateness_ms: 0,
            idle_ms: 60_000,
            ..Options::default()
        };
        let mut m = SpanMetrics::new(&opts);
        m.on_spans(&[span("api", 1, None, SpanKind::Server, 5, false)], NOW);
        let mut out = Collect::default();
        m.tick(NOW + 120_000, &mut out);
        assert_eq!(m.state().entries, 0);
        let last = out
            .last(names::SPAN_CALLS, &[("service_name", "api")])
            .unwrap();
        assert!(sonde_model::is_stale_nan(last));
    }
}
