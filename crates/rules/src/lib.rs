//! Alerting and recording rules, Prometheus-compatible: rule files
//! (`rules.rs`), evaluation and alert states (`eval.rs`), notifications to
//! webhooks and Alertmanagers (`notify.rs`, delivered through the
//! [`notify::Transport`] the server gives), annotation templates
//! (`template.rs`). The server runs each group on a timer and serves the
//! HTTP side; this crate knows neither HTTP nor the stores: it reads and
//! writes series through [`eval::Backend`].
//!
//! A reload (SIGHUP, `POST /-/reload`) parses every file first: on any
//! error the running rules stay and the error is reported; otherwise the
//! new groups take over the states of the rules they keep.
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

use parking_lot::Mutex;
use tokio::sync::watch;

use builtin::Mode;
use eval::{Backend, GroupState, Transition};
use notify::Notifier;
use rules::Group;

/// The rules' settings, parsed by the server's configuration.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Rule file globs.
    pub rule_files: Vec<String>,
    /// A group's interval when it sets none.
    pub default_interval: Duration,
    /// How often a firing alert is sent again.
    pub resend_delay: Duration,
    /// How often anomaly detectors learn a point unless a rule sets `step`.
    pub anomaly_step: Duration,
    pub anomaly_detection: Mode,
    /// Sonde's URL as people reach it, for links in alerts.
    pub external_url: String,
    pub webhooks: Vec<String>,
    pub alertmanagers: Vec<String>,
}

impl Default for RulesConfig {
    fn default() -> RulesConfig {
        RulesConfig {
            rule_files: Vec::new(),
            default_interval: Duration::from_secs(1),
            resend_delay: Duration::from_secs(60),
            anomaly_step: Duration::from_secs(1),
            anomaly_detection: Mode::Auto,
            external_url: "http://127.0.0.1:7070".into(),
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
        }
    }
}

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
    /// Loads the rule files; a bad file is an error at startup.
    pub fn new(config: &RulesConfig, now_ms: i64) -> Result<Alerting, String> {
        let default_interval = config.default_interval.max(Duration::from_millis(10));
        let anomaly_step = config.anomaly_step.max(Duration::from_millis(10));
        let resend_delay = config.resend_delay;
        let anomaly_detection = config.anomaly_detection;
        let external_url = config.external_url.trim_end_matches('/').to_string();
        for url in config.webhooks.iter().chain(&config.alertmanagers) {
            if !url.starts_with("http://") {
                return Err(format!(
                    "alert receiver {url:?}: only http:// URLs are supported"
                ));
            }
        }
        let mut groups = rules::load(&config.rule_files, default_interval)
            .map_err(|e| format!("cannot load rule files: {e}"))?;
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
            notifier: Notifier::new(&config.webhooks, &config.alertmanagers, &external_url),
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

    /// Changes at every successful reload: the runner restarts its groups.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Evaluates one group now (blocking) and dispatches what came of it.
    pub fn evaluate(&self, backend: &dyn Backend, group: &LiveGroup, now_ms: i64) {
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

impl LiveGroup {
    /// Whether a reload replaced this group (its runner stops).
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
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
        assert_eq!(rfc3339(1_234_567_890_123), "2009-02-13T23:31:30.123Z");
    }

    #[test]
    fn reload_keeps_the_old_rules_on_error_and_states_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n");
        let config = RulesConfig {
            rule_files: vec![format!("{}/*.yml", dir.path().display())],
            ..RulesConfig::default()
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
