//! Tests of the built-in anomaly rules: their shape, and their expressions
//! run through the real PromQL engine over what the pipeline's `spanmetrics` derives
//! from spans and the agent's metric names.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use sonde_model::records::{SpanKind, SpanRecord};
use sonde_model::{Labels, Matcher, Sample, Series, METRIC_NAME};
use sonde_query::{Engine, Queryable, Value};

use super::*;
use crate::eval::{eval_group, Backend, GroupState, Settings};
use crate::rules::{Kind, DEFAULT_ANOMALY_SCORE};
use sonde_pipeline::spanmetrics::SpanMetrics;
use sonde_pipeline::{Collect, Options, Processor};

#[test]
fn the_group_follows_the_setting() {
    assert_eq!(Mode::parse("auto"), Ok(Mode::Auto));
    assert_eq!(Mode::parse("notify"), Ok(Mode::Notify));
    assert_eq!(Mode::parse("off"), Ok(Mode::Off));
    assert!(Mode::parse("on").unwrap_err().contains("anomaly_detection"));
    assert!(group(Mode::Off, Duration::from_secs(1)).is_none());

    let g = group(Mode::Auto, Duration::from_secs(2)).unwrap();
    assert_eq!((g.name.as_str(), g.file.as_str()), (GROUP, FILE));
    assert_eq!(g.interval, Duration::from_secs(2));
    assert!(!g.notify, "auto-detection must not page anyone");
    assert!(group(Mode::Notify, Duration::from_secs(1)).unwrap().notify);
    let names: Vec<&str> = g.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ServiceRequestRate",
            "ServiceErrorRate",
            "ServiceLatencyP95",
            "HostCpuUtilization",
            "HostMemoryUtilization",
            "HostNetworkBytes"
        ]
    );
    for r in &g.rules {
        let Kind::Alerting(spec) = &r.kind else {
            panic!("{} is not an alerting rule", r.name)
        };
        assert_eq!(spec.anomaly, Some(SCORE_ABOVE), "{}", r.name);
        assert_ne!(spec.anomaly, Some(DEFAULT_ANOMALY_SCORE));
        let min_change = if r.name == "ServiceErrorRate" {
            MIN_CHANGE_ERRORS
        } else {
            MIN_CHANGE
        };
        assert_eq!(spec.anomaly_min_change, min_change, "{}", r.name);
        let min_delta = if r.name == "ServiceLatencyP95" {
            LATENCY_MIN_DELTA
        } else {
            0.0
        };
        assert_eq!(spec.anomaly_min_delta, min_delta, "{}", r.name);
        assert!(spec.hold.is_zero());
        assert_eq!(spec.keep_firing_for, Duration::from_secs(60));
        assert_eq!(r.labels, vec![("severity".into(), "info".into())]);
        let summary = &spec
            .annotations
            .iter()
            .find(|(k, _)| k == "summary")
            .unwrap()
            .1;
        let vars = crate::rules::sample_vars(true);
        assert!(summary.expand(&vars).contains("unusual"), "{}", r.name);
    }
}

/// The store and engine of a server, in memory.
#[derive(Default)]
struct Server {
    series: Mutex<HashMap<Labels, Vec<Sample>>>,
    engine: Engine,
    events: Mutex<Vec<(String, Labels, i64)>>,
}

impl Queryable for Server {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        Ok(self
            .series
            .lock()
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.matches(l)))
            .map(|(l, s)| Series {
                labels: l.clone(),
                samples: s
                    .iter()
                    .copied()
                    .filter(|p| p.t >= mint && p.t <= maxt)
                    .collect(),
                histograms: Vec::new(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
}

impl Backend for Server {
    fn query(&self, expr: &str, t: i64) -> Result<Value, String> {
        self.engine
            .instant(self, expr, t)
            .map_err(|e| e.to_string())
    }
    fn query_range(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Value, String> {
        self.engine
            .range(self, expr, start, end, step)
            .map_err(|e| e.to_string())
    }
    fn append(&self, series: &[Series]) -> Result<(), String> {
        let mut all = self.series.lock();
        for s in series {
            all.entry(s.labels.clone())
                .or_default()
                .extend_from_slice(&s.samples);
        }
        Ok(())
    }
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        Queryable::select(self, matchers, mint, maxt)
    }
    fn anomaly(&self, rule: &str, series: &Labels, _a: &sonde_analysis::Assessment, t: i64) {
        self.events
            .lock()
            .push((rule.to_string(), series.clone(), t));
    }
}

/// A span with the given service, kind and duration, ending at `end_ms`.
fn span(service: &str, kind: SpanKind, ms: i64, error: bool, end_ms: i64) -> SpanRecord {
    use sonde_model::records::{Origin, SpanId, StatusCode, TraceId};
    SpanRecord {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([2; 8]),
        parent_span_id: None,
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
        origin: std::sync::Arc::new(Origin {
            service: service.into(),
            ..Origin::default()
        }),
        attributes: vec![],
        events: vec![],
        links: vec![],
    }
}

fn gauge(name: &str, labels: &[(&str, &str)], t: i64, v: f64) -> Series {
    let mut pairs = vec![
        (METRIC_NAME, name),
        ("job", "sonde-agent"),
        ("instance", "web-1"),
    ];
    pairs.extend_from_slice(labels);
    Series {
        labels: Labels::from_pairs(pairs),
        samples: vec![Sample { t, v }],
        histograms: Vec::new(),
    }
}

/// (labels without the name, value) of each series `expr` gives at `t`.
fn values(server: &Server, expr: &str, t: i64) -> Vec<(Labels, f64)> {
    let Value::Vector(v) = server.query(expr, t).unwrap() else {
        panic!("{expr} is not a vector")
    };
    let mut out: Vec<(Labels, f64)> = v.into_iter().map(|s| (s.labels, s.v)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn builtin_rules_watch_services_and_hosts_and_catch_an_error_spike() {
    let g = group(Mode::Auto, Duration::from_secs(1)).unwrap();
    let server = Server::default();
    let mut red = SpanMetrics::new(&Options {
        lateness_ms: 0,
        ..Options::default()
    });
    let mut state = GroupState::new(&g);
    let settings = Settings {
        resend_delay_ms: 60_000,
        external_url: "http://sonde",
        anomaly_step: Duration::from_secs(1),
    };
    let t0 = 1_700_000_000_000i64;
    let spike_at = 330;
    let expr = |name: &str| {
        g.rules
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .expr
            .clone()
    };
    for i in 0..360i64 {
        let t = t0 + i * 1000;
        let mut spans = Vec::new();
        // shop: 9 to 11 requests a second, each calling the database (client
        // spans, which are not requests); failures only from `spike_at`.
        for n in 0..(9 + i % 3) {
            let error = i >= spike_at && n % 2 == 0;
            spans.push(span("shop", SpanKind::Server, 20 + n % 5, error, t - 1));
            spans.push(span("shop", SpanKind::Client, 5, false, t - 1));
        }
        // cart: 5 consumed messages a second, steady throughout.
        for _ in 0..5 {
            spans.push(span("cart", SpanKind::Consumer, 300, false, t - 1));
        }
        // The second ending at t is complete: it is derived at t.
        red.on_spans(&spans, t - 1);
        let mut derived = Collect::default();
        red.tick(t, &mut derived);
        let mut batch = derived.series;
        let busy = 0.25 + 0.01 * (i % 2) as f64;
        batch.extend([
            gauge(
                "system_cpu_utilization_ratio",
                &[("state", "idle")],
                t,
                1.0 - busy,
            ),
            gauge(
                "system_cpu_utilization_ratio",
                &[("state", "user")],
                t,
                busy,
            ),
            gauge("system_memory_usage_bytes", &[("state", "used")], t, 4e9),
            gauge("system_memory_usage_bytes", &[("state", "free")], t, 3e9),
            gauge("system_memory_limit_bytes", &[], t, 8e9),
        ]);
        for (device, direction, per_s) in [
            ("eth0", "receive", 1000.0),
            ("eth0", "transmit", 500.0),
            ("lo", "receive", 1e6),
        ] {
            let labels = [("device", device), ("direction", direction)];
            let v = per_s * i as f64;
            batch.push(gauge("system_network_io_bytes_total", &labels, t, v));
        }
        server.append(&batch).unwrap();
        eval_group(&server, &g, &mut state, t, &settings);
        if i == spike_at - 1 {
            // Every rule yields its series, and their values are what was sent.
            let t = t0 + i * 1000;
            let rate = values(&server, &expr("ServiceRequestRate"), t);
            let svc = |s| Labels::from_pairs([("service_name", s)]);
            assert_eq!(rate.len(), 2, "{rate:?}");
            assert_eq!(rate[0].0, svc("cart"));
            assert!((rate[0].1 - 5.0).abs() < 1e-9, "{rate:?}");
            assert!((rate[1].1 - 10.0).abs() < 0.2, "{rate:?}");
            let errors = values(&server, &expr("ServiceErrorRate"), t);
            assert_eq!(errors, vec![(svc("cart"), 0.0), (svc("shop"), 0.0)]);
            let p95 = values(&server, &expr("ServiceLatencyP95"), t);
            assert!(p95[0].1 > 0.2 && p95[0].1 <= 0.4, "{p95:?}");
            assert!(p95[1].1 > 0.01 && p95[1].1 <= 0.05, "{p95:?}");
            let host = Labels::from_pairs([
                ("host_name", "web-1"),
                ("instance", "web-1"),
                ("job", "sonde-agent"),
            ]);
            let cpu = values(&server, &expr("HostCpuUtilization"), t);
            assert_eq!(cpu.len(), 1);
            assert_eq!(cpu[0].0, host);
            assert!((cpu[0].1 - 0.25).abs() < 0.011, "{cpu:?}");
            let mem = values(&server, &expr("HostMemoryUtilization"), t);
            assert_eq!(mem, vec![(host.clone(), 0.5)]);
            let net = values(&server, &expr("HostNetworkBytes"), t);
            assert_eq!(net.len(), 2, "the loopback is left out: {net:?}");
            assert_eq!(net[0].0.get("direction"), Some("receive"));
            assert!((net[0].1 - 1000.0).abs() < 1e-6, "{net:?}");
            assert!((net[1].1 - 500.0).abs() < 1e-6, "{net:?}");
            assert!(
                server.events.lock().is_empty(),
                "anomalies in steady traffic: {:?}",
                server.events.lock()
            );
            assert!(state.rules.iter().all(|r| r.last_error.is_empty()));
        }
    }
    let events = server.events.lock();
    assert!(
        events
            .iter()
            .any(|(rule, series, t)| rule == "ServiceErrorRate"
                && series.get("service_name") == Some("shop")
                && *t >= t0 + spike_at * 1000),
        "{events:?}"
    );
    // Nothing changed for cart or the host.
    assert!(
        events
            .iter()
            .all(|(_, series, _)| series.get("service_name") == Some("shop")),
        "{events:?}"
    );
}

#[test]
fn the_threshold_is_the_detectors_own_alert_level() {
    assert_eq!(
        SCORE_ABOVE,
        sonde_analysis::DetectorConfig::default().alert_score
    );
}
