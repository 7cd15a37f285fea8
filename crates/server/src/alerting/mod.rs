//! Alerting and recording rules, Prometheus-compatible: rule files
//! (`rules.rs`), evaluation and alert states (`eval.rs`), notifications to
//! webhooks and Alertmanagers (`notify.rs`), annotation templates
//! (`template.rs`). The HTTP side is `alerting_api.rs`.
//!
//! Each group runs as a task of its own, evaluating on a blocking thread
//! every `interval` (one second by default, not Prometheus's minute). A
//! reload (SIGHUP, `POST /-/reload`) parses every file first: on any error
//! the running rules stay and the error is reported; otherwise the new
//! groups take over the states of the rules they keep.
//!
//! Besides the files' groups, `builtin.rs` adds anomaly rules on every
//! service's and host's key series unless `anomaly_detection = "off"`.
//! Alert `for` timers survive a restart through `ALERTS_FOR_STATE`.

pub mod builtin;
pub mod eval;
pub mod format;
pub mod notify;
pub mod rules;
pub mod template;

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use sonde_model::Series;
use sonde_query::Value;
use tokio::sync::watch;

use crate::api::StoreQueryable;
use crate::app::{App, AppState};
use crate::config::{parse_duration, Config};
use builtin::Mode;
use eval::{Backend, GroupState, Transition};
use notify::Notifier;
use rules::Group;

/// State transitions kept for `/api/v1/alerts/history`.
pub const HISTORY_SIZE: usize = 1000;

/// A loaded group and its mutable state. A reload replaces the whole
/// value; `retired` stops an old one that is still evaluating.
pub struct LiveGroup {
    pub def: Group,
    pub state: Mutex<GroupState>,
    retired: AtomicBool,
}

#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// The error of the last reload, if it failed (the old rules run on).
    pub last_error: Option<String>,
    /// Wall time (ms) of the last successful load.
    pub last_success: i64,
}

pub struct Alerting {
    patterns: Vec<String>,
    default_interval: Duration,
    anomaly_detection: Mode,
    resend_delay: Duration,
    anomaly_step: Duration,
    pub external_url: String,
    groups: Mutex<Vec<Arc<LiveGroup>>>,
    /// Bumped at every successful reload; the scheduler restarts groups.
    generation: watch::Sender<u64>,
    status: Mutex<ReloadStatus>,
    history: Mutex<VecDeque<Transition>>,
    pub notifier: Notifier,
    pub evaluations: AtomicU64,
    pub failures: AtomicU64,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl Alerting {
    /// Reads the settings and loads the rule files; a bad file is an error
    /// at startup.
    pub fn new(config: &Config, now_ms: i64) -> anyhow::Result<Alerting> {
        let d = |name: &str, v: &str| {
            parse_duration(v).with_context(|| format!("setting {name}: {v:?} is not a duration"))
        };
        let default_interval = d("rule_evaluation_interval", &config.rule_evaluation_interval)?
            .max(Duration::from_millis(10));
        let resend_delay = d("alert_resend_delay", &config.alert_resend_delay)?;
        let anomaly_step = d("anomaly_step", &config.anomaly_step)?.max(Duration::from_millis(10));
        let external_url = if config.external_url.is_empty() {
            format!("http://{}", config.api_addr)
        } else {
            config.external_url.trim_end_matches('/').to_string()
        };
        for url in config
            .alert_webhooks
            .iter()
            .chain(&config.alertmanager_urls)
        {
            if !url.starts_with("http://") {
                anyhow::bail!("alert receiver {url:?}: only http:// URLs are supported");
            }
        }
        let anomaly_detection =
            Mode::parse(&config.anomaly_detection).map_err(anyhow::Error::msg)?;
        let mut groups = rules::load(&config.rule_files, default_interval)
            .map_err(|e| anyhow::anyhow!("cannot load rule files: {e}"))?;
        groups.extend(builtin::group(anomaly_detection, default_interval));
        let live = groups
            .into_iter()
            .map(|g| {
                let g = live(g);
                g.state.lock().restore = true;
                g
            })
            .collect::<Vec<_>>();
        Ok(Alerting {
            patterns: config.rule_files.clone(),
            default_interval,
            anomaly_detection,
            resend_delay,
            anomaly_step,
            notifier: Notifier::new(
                &config.alert_webhooks,
                &config.alertmanager_urls,
                &external_url,
            ),
            external_url,
            groups: Mutex::new(live),
            generation: watch::channel(0).0,
            status: Mutex::new(ReloadStatus {
                last_error: None,
                last_success: now_ms,
            }),
            history: Mutex::new(VecDeque::new()),
            evaluations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            reloading: Mutex::new(()),
        })
    }

    pub fn groups(&self) -> Vec<Arc<LiveGroup>> {
        self.groups.lock().clone()
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().clone()
    }

    /// Transitions, newest first.
    pub fn history(&self) -> Vec<Transition> {
        self.history.lock().iter().rev().cloned().collect()
    }

    /// Reads the rule files again (blocking). On error nothing changes but
    /// the reported status.
    pub fn reload(&self, now_ms: i64) -> Result<(usize, usize), String> {
        let _one = self.reloading.lock();
        let mut loaded = match rules::load(&self.patterns, self.default_interval) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("reloading rules failed, keeping the running rules: {e}");
                self.status.lock().last_error = Some(e.clone());
                return Err(e);
            }
        };
        // The answer counts what the files hold.
        let counts = (
            loaded.len(),
            loaded.iter().map(|g| g.rules.len()).sum::<usize>(),
        );
        loaded.extend(builtin::group(
            self.anomaly_detection,
            self.default_interval,
        ));
        let old = self.groups();
        let new: Vec<Arc<LiveGroup>> = loaded.into_iter().map(live).collect();
        let mut removed = Vec::new();
        for o in &old {
            // Waits for an evaluation in flight, then stops the group.
            let mut old_state = o.state.lock();
            o.retired.store(true, Ordering::Release);
            if let Some(n) = new
                .iter()
                .find(|n| n.def.name == o.def.name && n.def.file == o.def.file)
            {
                n.state.lock().carry_over(&n.def, &o.def, &mut old_state);
            }
            let ended = eval::resolve_removed(&o.def, &mut old_state, now_ms, &self.external_url);
            removed.push((o.def.name.clone(), ended));
        }
        *self.groups.lock() = new;
        *self.status.lock() = ReloadStatus {
            last_error: None,
            last_success: now_ms,
        };
        self.generation.send_modify(|g| *g += 1);
        for (group, ended) in removed {
            self.dispatch(&group, ended);
        }
        tracing::info!(groups = counts.0, rules = counts.1, "rules reloaded");
        Ok(counts)
    }

    /// Evaluates one group now (blocking) and dispatches what came of it.
    fn evaluate(&self, backend: &dyn Backend, group: &LiveGroup, now_ms: i64) {
        let mut state = group.state.lock();
        if group.retired.load(Ordering::Acquire) {
            return;
        }
        let settings = eval::Settings {
            resend_delay_ms: self.resend_delay.as_millis() as i64,
            anomaly_step: self.anomaly_step,
            external_url: &self.external_url,
        };
        let outcome = eval::eval_group(backend, &group.def, &mut state, now_ms, &settings);
        drop(state);
        self.dispatch(&group.def.name, outcome);
    }

    /// Counts, logs, records and sends what evaluation decided.
    fn dispatch(&self, group: &str, outcome: eval::Outcome) {
        self.evaluations
            .fetch_add(outcome.evaluations, Ordering::Relaxed);
        self.failures.fetch_add(outcome.failures, Ordering::Relaxed);
        for (rule, e) in &outcome.errors {
            tracing::debug!(group = %group, rule = %rule, "rule evaluation failed: {e}");
        }
        if !outcome.transitions.is_empty() {
            let mut h = self.history.lock();
            for t in outcome.transitions {
                tracing::info!(rule = %t.rule, labels = %t.labels, from = t.from, to = t.to, "alert state changed");
                if h.len() == HISTORY_SIZE {
                    h.pop_front();
                }
                h.push_back(t);
            }
        }
        for b in &outcome.batches {
            self.notifier.send(&b.rule, &b.webhook, &b.alertmanager);
        }
    }

    /// Sonde's own alerting metrics, in the Prometheus text format.
    pub fn render_metrics(&self, w: &mut String) {
        let _ = writeln!(w, "# TYPE sonde_rule_evaluations_total counter");
        let _ = writeln!(
            w,
            "sonde_rule_evaluations_total {}",
            self.evaluations.load(Ordering::Relaxed)
        );
        let _ = writeln!(w, "# TYPE sonde_rule_evaluation_failures_total counter");
        let _ = writeln!(
            w,
            "sonde_rule_evaluation_failures_total {}",
            self.failures.load(Ordering::Relaxed)
        );
        for (name, pick) in [("sent", 0usize), ("failed", 1), ("dropped", 2)] {
            let _ = writeln!(w, "# TYPE sonde_alert_notifications_{name}_total counter");
            for d in &self.notifier.destinations {
                let c = [&d.counts.sent, &d.counts.failed, &d.counts.dropped][pick];
                let _ = writeln!(
                    w,
                    "sonde_alert_notifications_{name}_total{{kind=\"{}\",url={:?}}} {}",
                    d.kind.as_str(),
                    d.url,
                    c.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(w, "# TYPE sonde_alert_notifications_queued gauge");
        for d in &self.notifier.destinations {
            let _ = writeln!(
                w,
                "sonde_alert_notifications_queued{{kind=\"{}\",url={:?}}} {}",
                d.kind.as_str(),
                d.url,
                d.queued()
            );
        }
    }
}

fn live(def: Group) -> Arc<LiveGroup> {
    Arc::new(LiveGroup {
        state: Mutex::new(GroupState::new(&def)),
        def,
        retired: AtomicBool::new(false),
    })
}

impl Backend for App {
    fn query(&self, expr: &str, t: i64) -> Result<Value, String> {
        self.engine
            .instant(&StoreQueryable(self.store.clone()), expr, t)
            .map_err(|e| e.to_string())
    }

    fn query_range(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Value, String> {
        self.engine
            .range(&StoreQueryable(self.store.clone()), expr, start, end, step)
            .map_err(|e| e.to_string())
    }

    fn select(
        &self,
        matchers: &[sonde_model::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, String> {
        self.store
            .select(matchers, mint, maxt)
            .map_err(|e| e.to_string())
    }

    fn append(&self, series: &[Series]) -> Result<(), String> {
        let report = self.store.append(series).map_err(|e| e.to_string())?;
        match report.first_error {
            Some((_, detail)) if report.accepted == 0 && report.duplicates == 0 => Err(detail),
            _ => Ok(()),
        }
    }

    /// An `anomaly.detected` event: listed by `/api/v1/events`, streamed by
    /// the live tail, attributed to the series' service when it names one.
    fn anomaly(
        &self,
        rule: &str,
        series: &sonde_model::Labels,
        a: &sonde_analysis::Assessment,
        t: i64,
    ) {
        use sonde_model::records::{AttrValue, LogRecord, Origin};
        let service = ["service_name", "job", "service"]
            .iter()
            .find_map(|k| series.get(k))
            .unwrap_or("sonde")
            .to_string();
        let mut attributes = vec![
            ("alert.rule".to_string(), AttrValue::Str(rule.to_string())),
            ("anomaly.score".to_string(), AttrValue::Double(a.score)),
            (
                "anomaly.observed".to_string(),
                AttrValue::Double(a.observed),
            ),
            (
                "anomaly.expected_low".to_string(),
                AttrValue::Double(a.expected_low),
            ),
            (
                "anomaly.expected_high".to_string(),
                AttrValue::Double(a.expected_high),
            ),
            (
                "anomaly.series".to_string(),
                AttrValue::Str(series.to_string()),
            ),
        ];
        attributes.extend(series.iter().map(|l| {
            (
                format!("series.{}", l.name),
                AttrValue::Str(l.value.clone()),
            )
        }));
        let t_ns = t.saturating_mul(1_000_000);
        let event = LogRecord {
            time_ns: t_ns,
            observed_ns: t_ns,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: a.describe(),
            event_name: "anomaly.detected".into(),
            trace_id: None,
            span_id: None,
            flags: 0,
            origin: std::sync::Arc::new(Origin {
                service,
                host: series.get("host_name").unwrap_or_default().to_string(),
                scope_name: "sonde.alerting".into(),
                ..Origin::default()
            }),
            attributes,
        };
        match self.records.append_logs(vec![event]) {
            Ok(stored) if self.tail.has_subscribers() => {
                self.tail.publish(crate::tail::TailBatch::Logs(stored));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot store an anomaly event: {e}"),
        }
    }
}

/// Runs the rules until `stop`: the notifiers, a task per group, and the
/// SIGHUP handler that reloads.
pub fn spawn(state: AppState, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let senders = state.alerting.notifier.spawn(stop.clone());
    let hup = {
        let (state, mut stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        "cannot install the SIGHUP handler; reload with POST /-/reload: {e}"
                    );
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading rules");
                        let st = state.clone();
                        let _ = tokio::task::spawn_blocking(move || st.alerting.reload(st.clock.now_ms())).await;
                    }
                    _ = stopped(&mut stop) => return,
                }
            }
        })
    };
    let mut stop = stop;
    tokio::spawn(async move {
        let mut generation = state.alerting.generation.subscribe();
        loop {
            generation.borrow_and_update();
            let tasks: Vec<_> = state
                .alerting
                .groups()
                .into_iter()
                .map(|g| tokio::spawn(run_group(state.clone(), g)))
                .collect();
            let stopped = tokio::select! {
                _ = generation.changed() => false,
                _ = stopped(&mut stop) => true,
            };
            for t in &tasks {
                t.abort();
            }
            if stopped {
                break;
            }
        }
        let _ = hup.await;
        for s in senders {
            let _ = s.await;
        }
    })
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run_group(state: AppState, group: Arc<LiveGroup>) {
    let mut tick = tokio::time::interval(group.def.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if group.retired.load(Ordering::Acquire) {
            return;
        }
        let (st, g) = (state.clone(), group.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let now = st.clock.now_ms();
            st.alerting.evaluate(st.as_ref(), &g, now);
        })
        .await;
    }
}

/// RFC 3339 in UTC with milliseconds when not whole, as Go prints times.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let mut s = sonde_model::time::datetime_text(secs);
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_go() {
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            crate::api::parse_time(&rfc3339(1_234_567_890_123)),
            Some(1_234_567_890_123)
        );
    }

    #[test]
    fn reload_keeps_the_old_rules_on_error_and_states_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n");
        let config = Config {
            rule_files: vec![format!("{}/*.yml", dir.path().display())],
            ..Config::default()
        };
        let a = Alerting::new(&config, 0).unwrap();
        a.groups()[0].state.lock().rules[0].last_error = "kept".into();
        write("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1) >\n");
        assert!(a.reload(1).unwrap_err().contains("could not parse"));
        assert!(a.status().last_error.is_some());
        assert_eq!(a.groups()[0].def.rules.len(), 1);
        write("groups:\n- name: g\n  rules:\n  - alert: B\n    expr: vector(2)\n  - alert: A\n    expr: vector(1)\n");
        assert_eq!(a.reload(2).unwrap(), (1, 2));
        assert!(a.status().last_error.is_none());
        let g = &a.groups()[0];
        assert_eq!(g.state.lock().rules[1].last_error, "kept");
        assert_eq!(*a.generation.borrow(), 1);
    }
}
