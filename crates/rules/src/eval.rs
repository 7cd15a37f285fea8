//! Evaluating a group: each rule in order through the PromQL engine;
//! recording rules append their results (and stale markers for series that
//! vanished) to the store; alerting rules move their alerts through
//! inactive -> pending -> firing -> resolved, as Prometheus does, and say
//! which alerts to notify.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sonde_analysis::{Assessment, Detector, DetectorConfig};
use sonde_model::{is_stale_nan, stale_nan, Labels, Matcher, Sample, Series, METRIC_NAME};
use sonde_query::Value;

use super::notify::Notice;
use super::rules::{AlertSpec, Group, Kind, Rule};
use super::template::Val;

/// How long a resolved alert is remembered (and re-sent to Alertmanager).
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// Detectors one anomaly rule keeps; series beyond are not scored.
const MAX_DETECTORS: usize = 10_000;
/// Steps of stored history an anomaly rule's detectors learn before their
/// first evaluation: well past the detector's warm-up, so after a restart
/// or when a rule is added on old series, they judge at once.
const SEED_STEPS: i64 = 600;
/// But never more than this much history: a rule with a long step learns
/// fewer points rather than reading days of data at startup.
const SEED_MAX_MS: i64 = 6 * 60 * 60 * 1000;
/// An anomalous series becomes a new episode (a new event) only after
/// this long without being anomalous: scores hovering at the threshold
/// are one episode, not one event per crossing.
const EPISODE_GAP_MS: i64 = 60_000;
/// A detector whose series has been absent this long is dropped.
const DETECTOR_IDLE_MS: i64 = 60 * 60 * 1000;
/// The configuration of every rule's detectors: the tuned defaults without
/// the damping after an alert, which exists for scoring point by point;
/// here an alert is a state that lasts while the series stays anomalous,
/// and damping would end it one evaluation after it began.
static RULE_DETECTOR: LazyLock<Arc<DetectorConfig>> = LazyLock::new(|| {
    Arc::new(DetectorConfig {
        suppress_points: 0,
        ..DetectorConfig::default()
    })
});

/// One anomaly rule's watch on one series.
struct Watched {
    detector: Detector,
    /// When the series was last seen (ms).
    seen: i64,
    /// When the detector last learnt a point (ms).
    learnt: i64,
    /// When it is due to learn the next one (ms): one step after the last
    /// due time, so evaluations off the step's grid still learn one point
    /// per step on average.
    due: i64,
}

impl Watched {
    fn new(t: i64) -> Watched {
        Watched {
            detector: Detector::shared(RULE_DETECTOR.clone()),
            seen: t,
            learnt: i64::MIN,
            due: i64::MIN,
        }
    }

    /// Scores `v` at `t`, learning it if a step has come (or the clock went
    /// back), else on a copy. An eighth of a step early still counts:
    /// evaluations run on wall-clock ticks, and one a millisecond short of
    /// the step must not wait a whole interval more.
    fn assess(&mut self, t: i64, v: f64, step: i64) -> Assessment {
        self.seen = t;
        if self.due == i64::MIN || t < self.learnt || t >= self.due - step / 8 {
            // After a pause (or a clock jump back), the grid restarts here
            // rather than learning every evaluation until it catches up.
            self.due = if self.due == i64::MIN || t < self.learnt || t - self.due > step {
                t.saturating_add(step)
            } else {
                self.due.saturating_add(step)
            };
            self.learnt = t;
            self.detector.update(t, v)
        } else {
            self.detector.clone().update(t, v)
        }
    }
}

/// The series holding each active alert's `activeAt`, read back at startup.
pub const FOR_STATE: &str = "ALERTS_FOR_STATE";
/// `for` state older than this is not restored (Prometheus's
/// `--rules.alert.for-outage-tolerance` default).
pub const OUTAGE_TOLERANCE_MS: i64 = 60 * 60 * 1000;

/// What evaluation needs from the server, so tests can stand in for it.
pub trait Backend {
    fn query(&self, expr: &str, t: i64) -> Result<Value, String>;
    /// A range query over `[start, end]` every `step` (ms): a matrix.
    fn query_range(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Value, String>;
    fn append(&self, series: &[Series]) -> Result<(), String>;
    /// Raw samples, stale markers included, as the store holds them.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String>;
    /// Records that an anomaly rule started to find `series` anomalous.
    fn anomaly(&self, _rule: &str, _series: &Labels, _assessment: &Assessment, _t: i64) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub state: State,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

/// The mutable part of one rule: health and, for alerting rules, alerts.
#[derive(Default)]
pub struct RuleState {
    pub health: Health,
    pub last_error: String,
    /// Wall time of the last evaluation (ms).
    pub last_eval: Option<i64>,
    pub eval_seconds: f64,
    pub alerts: BTreeMap<Labels, Alert>,
    /// Series written at the last evaluation (recording rules: results;
    /// alerting rules: `ALERTS`), to mark the vanished ones stale.
    written: HashSet<Labels>,
    /// Anomaly rules: one detector per watched series.
    detectors: HashMap<Labels, Watched>,
    /// Anomaly rules: whether the detectors have learnt the stored history.
    seeded: bool,
    /// Anomaly rules: the series in an anomalous episode, with when each
    /// was last found anomalous.
    anomalous: HashMap<Labels, i64>,
}

pub struct GroupState {
    pub rules: Vec<RuleState>,
    pub last_eval: Option<i64>,
    pub eval_seconds: f64,
    /// Set for the groups loaded at startup: their first evaluation
    /// restores the `for` timers of the previous process's alerts.
    pub restore: bool,
}

impl GroupState {
    pub fn new(group: &Group) -> GroupState {
        GroupState {
            rules: group.rules.iter().map(|_| RuleState::default()).collect(),
            last_eval: None,
            eval_seconds: 0.0,
            restore: false,
        }
    }

    /// Takes over the states of `old`'s rules that are still there (same
    /// name and labels, in order), as Prometheus does on reload. A changed
    /// expression keeps alerts (the next evaluation settles them) but not
    /// anomaly detectors, which learnt another series.
    pub fn carry_over(&mut self, new: &Group, old_group: &Group, old: &mut GroupState) {
        let mut used = vec![false; old_group.rules.len()];
        for (i, rule) in new.rules.iter().enumerate() {
            let found = old_group
                .rules
                .iter()
                .enumerate()
                .position(|(j, r)| !used[j] && r.identity() == rule.identity());
            if let Some(j) = found {
                used[j] = true;
                let mut st = std::mem::take(&mut old.rules[j]);
                if old_group.rules[j].expr != rule.expr {
                    st.detectors.clear();
                    st.seeded = false;
                }
                self.rules[i] = st;
            }
        }
        self.last_eval = old.last_eval;
        self.eval_seconds = old.eval_seconds;
        // A reload before the first evaluation must not skip the restore.
        self.restore = old.restore;
    }
}

/// One state change of one alert, for the history.
#[derive(Debug, Clone)]
pub struct Transition {
    pub group: String,
    pub rule: String,
    pub labels: Labels,
    pub from: &'static str,
    pub to: &'static str,
    pub at: i64,
    pub value: f64,
}

/// What one alerting rule's evaluation asks to send.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub rule: String,
    pub alertmanager: Vec<Notice>,
    pub webhook: Vec<Notice>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub evaluations: u64,
    pub failures: u64,
    pub transitions: Vec<Transition>,
    pub batches: Vec<Batch>,
    /// (rule, error) of the rules that failed.
    pub errors: Vec<(String, String)>,
}

pub struct Settings<'a> {
    pub resend_delay_ms: i64,
    pub external_url: &'a str,
    /// How often anomaly detectors learn unless a rule says (at least the
    /// group's interval).
    pub anomaly_step: Duration,
}

/// Evaluates every rule of `group` at wall time `now` (ms).
pub fn eval_group(
    backend: &dyn Backend,
    group: &Group,
    state: &mut GroupState,
    now: i64,
    settings: &Settings,
) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::default();
    let t = now - group.query_offset.as_millis() as i64;
    let restore = std::mem::take(&mut state.restore);
    for (rule, rs) in group.rules.iter().zip(state.rules.iter_mut()) {
        let rule_started = Instant::now();
        let result = match &rule.kind {
            Kind::Recording => eval_recording(backend, group, rule, rs, t),
            Kind::Alerting(spec) => {
                let ctx = Ctx {
                    t,
                    now,
                    restore,
                    settings,
                };
                eval_alerting(backend, group, rule, spec, rs, &ctx, &mut out)
            }
        };
        out.evaluations += 1;
        rs.eval_seconds = rule_started.elapsed().as_secs_f64();
        rs.last_eval = Some(now);
        match result {
            Ok(()) => {
                rs.health = Health::Ok;
                rs.last_error.clear();
            }
            Err(e) => {
                out.failures += 1;
                rs.health = Health::Err;
                out.errors.push((rule.name.clone(), e.clone()));
                rs.last_error = e;
            }
        }
    }
    state.last_eval = Some(now);
    state.eval_seconds = started.elapsed().as_secs_f64();
    out
}

/// The result as (labels, value) pairs: a scalar is one series without labels.
fn vector(v: Value) -> Result<Vec<(Labels, f64)>, String> {
    match v {
        Value::Vector(samples) => Ok(samples
            .into_iter()
            .map(|s| {
                let v = s.h.as_ref().map_or(s.v, |h| h.count);
                (s.labels, v)
            })
            .collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        other => Err(format!(
            "rule result is not a vector or scalar but a {}",
            other.type_name()
        )),
    }
}

/// Appends `current` and stale markers for what `rs` wrote last time but
/// not now.
fn write_series(
    backend: &dyn Backend,
    rs: &mut RuleState,
    mut current: Vec<Series>,
    t: i64,
) -> Result<(), String> {
    let now: HashSet<Labels> = current.iter().map(|s| s.labels.clone()).collect();
    for gone in rs.written.difference(&now) {
        current.push(Series {
            labels: gone.clone(),
            samples: vec![Sample { t, v: stale_nan() }],
            histograms: Vec::new(),
        });
    }
    rs.written = now;
    if current.is_empty() {
        return Ok(());
    }
    backend.append(&current)
}

fn eval_recording(
    backend: &dyn Backend,
    group: &Group,
    rule: &Rule,
    rs: &mut RuleState,
    t: i64,
) -> Result<(), String> {
    let samples = vector(backend.query(&rule.expr, t)?)?;
    if group.limit > 0 && samples.len() > group.limit {
        return Err(format!(
            "exceeded limit of {} with {} series",
            group.limit,
            samples.len()
        ));
    }
    let mut seen = HashSet::with_capacity(samples.len());
    let mut series = Vec::with_capacity(samples.len());
    for (labels, v) in samples {
        let mut b = labels.into_builder();
        b.set(METRIC_NAME, rule.name.as_str());
        for (k, val) in &rule.labels {
            b.set(k.as_str(), val.as_str());
        }
        let labels = b.build();
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        series.push(Series {
            labels,
            samples: vec![Sample { t, v }],
            histograms: Vec::new(),
        });
    }
    write_series(backend, rs, series, t)
}

fn label_map(labels: &Labels) -> Val {
    Val::Map(
        labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
    )
}

/// Teaches the detectors of the series in `current` (the rule's present
/// result) the stored history of its expression, one point per step, as if
/// they had been running: a restarted server (or a rule newly added on old
/// series) needs no warm-up. Series with no history start from nothing.
/// The range query is bounded like any (`query_max_samples`), and runs
/// once per rule and process.
fn seed_detectors(
    backend: &dyn Backend,
    rule: &Rule,
    rs: &mut RuleState,
    current: &[(Labels, f64)],
    t: i64,
    step: i64,
) {
    rs.seeded = true;
    let wanted: HashSet<&Labels> = current.iter().map(|(l, _)| l).collect();
    let span = SEED_STEPS.saturating_mul(step).min(SEED_MAX_MS);
    let found = match backend.query_range(&rule.expr, t - span, t - step, step) {
        Ok(Value::Matrix(found)) => found,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(rule = %rule.name, "anomaly detectors start without history: {e}");
            return;
        }
    };
    let mut seeded = 0;
    for s in found {
        if !wanted.contains(&s.labels) || rs.detectors.len() >= MAX_DETECTORS {
            continue;
        }
        let mut w = Watched::new(t);
        for p in &s.samples {
            w.assess(p.t, p.v, step);
        }
        rs.detectors.insert(s.labels, w);
        seeded += 1;
    }
    tracing::debug!(rule = %rule.name, seeded, "anomaly detectors learnt the stored history");
}

/// Scores each series with its detector; keeps those at or above `threshold`,
/// valued by their score. A detector learns at most one point per `step`;
/// evaluations in between are scored on a copy, so they answer at once
/// without crowding its memory with near-repeats of one point.
fn score_anomalies(
    rs: &mut RuleState,
    samples: Vec<(Labels, f64)>,
    t: i64,
    threshold: f64,
    (min_change, min_delta): (f64, f64),
    step: Duration,
) -> Vec<(Labels, f64, Option<Assessment>)> {
    let step = step.as_millis() as i64;
    let mut out = Vec::new();
    for (labels, v) in samples {
        if !rs.detectors.contains_key(&labels) && rs.detectors.len() >= MAX_DETECTORS {
            continue;
        }
        let w = rs
            .detectors
            .entry(labels.clone())
            .or_insert_with(|| Watched::new(t));
        let a = w.assess(t, v, step);
        let expected = (a.expected_low + a.expected_high) / 2.0;
        let delta = (a.observed - expected).abs();
        let change = delta / expected.abs().max(1e-9);
        if a.score >= threshold && change >= min_change && delta >= min_delta {
            out.push((labels, a.score, Some(a)));
        }
    }
    rs.detectors.retain(|_, w| t - w.seen < DETECTOR_IDLE_MS);
    out
}

/// When an alerting rule is evaluated, and how.
struct Ctx<'a> {
    /// Query time (`now` less the group's `query_offset`).
    t: i64,
    now: i64,
    /// The first evaluation since startup: restore `for` timers.
    restore: bool,
    settings: &'a Settings<'a>,
}

/// Gives the alerts that have just gone pending the `activeAt` they had
/// before a restart, read from the last `ALERTS_FOR_STATE` sample within
/// the outage tolerance, as Prometheus restores them. An alert that had
/// already fired keeps its `activeAt` (and fires at once); one still
/// pending resumes with the time it had left, the outage not counting.
/// Unlike Prometheus, no 10m grace period is added, which would make
/// every `for` shorter than it wait 10m after a restart.
fn restore_for_state(
    backend: &dyn Backend,
    rule: &Rule,
    spec: &AlertSpec,
    rs: &mut RuleState,
    now: i64,
) {
    let hold = spec.hold.as_millis() as i64;
    if hold == 0 || rs.alerts.is_empty() {
        return;
    }
    let matchers = [
        Matcher::equal(METRIC_NAME, FOR_STATE),
        Matcher::equal("alertname", rule.name.as_str()),
    ];
    let found = match backend.select(&matchers, now - OUTAGE_TOLERANCE_MS, now) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(rule = %rule.name, "cannot restore alert states: {e}");
            return;
        }
    };
    for series in found {
        let Some(last) = series.samples.last() else {
            continue;
        };
        // A stale marker: the alert had ended.
        if is_stale_nan(last.v) || !last.v.is_finite() {
            continue;
        }
        let labels = series.labels.without(&[METRIC_NAME]);
        let Some(a) = rs.alerts.get_mut(&labels) else {
            continue;
        };
        if a.state != State::Pending || a.active_at != now {
            continue;
        }
        let active_at = (last.v * 1000.0).round() as i64;
        let down_at = last.t;
        a.active_at = if down_at - active_at >= hold {
            active_at
        } else {
            (active_at + (now - down_at)).min(now)
        };
        tracing::info!(rule = %rule.name, labels = %labels, active_at = a.active_at, "alert state restored");
    }
}

fn eval_alerting(
    backend: &dyn Backend,
    group: &Group,
    rule: &Rule,
    spec: &AlertSpec,
    rs: &mut RuleState,
    ctx: &Ctx,
    out: &mut Outcome,
) -> Result<(), String> {
    let (t, now, settings) = (ctx.t, ctx.now, ctx.settings);
    let samples = vector(backend.query(&rule.expr, t)?)?;
    let samples = match spec.anomaly {
        Some(threshold) => {
            let step = spec
                .anomaly_step
                .unwrap_or(group.interval.max(ctx.settings.anomaly_step));
            if !rs.seeded {
                seed_detectors(backend, rule, rs, &samples, t, step.as_millis() as i64);
            }
            let min = (spec.anomaly_min_change, spec.anomaly_min_delta);
            score_anomalies(rs, samples, t, threshold, min, step)
        }
        None => samples.into_iter().map(|(l, v)| (l, v, None)).collect(),
    };
    // A series newly found anomalous becomes an event, once per episode.
    for (series, _, assessment) in &samples {
        if let Some(a) = assessment {
            if rs.anomalous.insert(series.clone(), t).is_none() {
                backend.anomaly(&rule.name, series, a, t);
            }
        }
    }
    if spec.anomaly.is_some() {
        rs.anomalous.retain(|_, last| t - *last <= EPISODE_GAP_MS);
    }
    let mut results: BTreeMap<Labels, (f64, Vec<(String, String)>)> = BTreeMap::new();
    for (series, value, assessment) in samples {
        let mut vars = vec![
            ("labels", label_map(&series)),
            ("value", Val::Num(value)),
            ("externalLabels", Val::Map(Vec::new())),
            ("externalURL", Val::Str(settings.external_url.to_string())),
        ];
        if let Some(a) = &assessment {
            vars.extend([
                ("observed", Val::Num(a.observed)),
                ("expected_low", Val::Num(a.expected_low)),
                ("expected_high", Val::Num(a.expected_high)),
                ("explanation", Val::Str(a.describe())),
            ]);
        }
        let mut b = series.into_builder();
        b.remove(METRIC_NAME);
        for (k, tpl) in &spec.label_templates {
            b.set(k.as_str(), tpl.expand(&vars));
        }
        b.set("alertname", rule.name.as_str());
        let annotations = spec
            .annotations
            .iter()
            .map(|(k, tpl)| (k.clone(), tpl.expand(&vars)))
            .collect();
        if results.insert(b.build(), (value, annotations)).is_some() {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
    }
    if group.limit > 0 && results.len() > group.limit {
        rs.alerts.clear();
        return Err(format!(
            "exceeded limit of {} with {} alerts",
            group.limit,
            results.len()
        ));
    }

    let before: HashMap<Labels, (State, f64)> = rs
        .alerts
        .iter()
        .filter(|(_, a)| a.state != State::Inactive)
        .map(|(l, a)| (l.clone(), (a.state, a.value)))
        .collect();
    for (labels, (value, annotations)) in &results {
        match rs.alerts.get_mut(labels) {
            Some(a) if a.state != State::Inactive => {
                a.value = *value;
                a.annotations = annotations.clone();
                a.keep_firing_since = None;
            }
            _ => {
                rs.alerts.insert(
                    labels.clone(),
                    Alert {
                        labels: labels.clone(),
                        annotations: annotations.clone(),
                        state: State::Pending,
                        value: *value,
                        active_at: now,
                        fired_at: None,
                        resolved_at: None,
                        last_sent: None,
                        valid_until: 0,
                        keep_firing_since: None,
                    },
                );
            }
        }
    }
    if ctx.restore {
        restore_for_state(backend, rule, spec, rs, now);
    }
    let hold = spec.hold.as_millis() as i64;
    let keep_for = spec.keep_firing_for.as_millis() as i64;
    rs.alerts.retain(|labels, a| {
        if !results.contains_key(labels) {
            let mut keep_firing = false;
            if a.state == State::Firing && keep_for > 0 {
                let since = *a.keep_firing_since.get_or_insert(now);
                keep_firing = now - since < keep_for;
            }
            if a.state == State::Pending
                || a.resolved_at
                    .is_some_and(|r| now - r > RESOLVED_RETENTION_MS)
            {
                return false;
            }
            if !keep_firing {
                if a.state != State::Inactive {
                    a.state = State::Inactive;
                    a.resolved_at = Some(now);
                }
                return true;
            }
        }
        if a.state == State::Pending && now - a.active_at >= hold {
            a.state = State::Firing;
            a.fired_at = Some(now);
        }
        true
    });

    // History: compare each alert's state with the one it had.
    for (labels, (from, value)) in &before {
        let to = match rs.alerts.get(labels) {
            Some(a) if a.state != State::Inactive => continue,
            _ => State::Inactive,
        };
        out.transitions
            .push(transition(group, rule, labels, *from, to, now, *value));
    }
    for (labels, a) in &rs.alerts {
        let from = before.get(labels).map_or(State::Inactive, |b| b.0);
        if a.state != State::Inactive && a.state != from {
            out.transitions
                .push(transition(group, rule, labels, from, a.state, now, a.value));
        }
    }

    // The `ALERTS` and `ALERTS_FOR_STATE` series, as Prometheus writes
    // them; the latter's value is `activeAt` in unix seconds, here with
    // its milliseconds, so a restored `activeAt` is the same instant.
    let mut alerts_series: Vec<Series> = Vec::new();
    for a in rs.alerts.values().filter(|a| a.state != State::Inactive) {
        let mut b = a.labels.clone().into_builder();
        b.set(METRIC_NAME, "ALERTS");
        b.set("alertstate", a.state.as_str());
        alerts_series.push(Series {
            labels: b.build(),
            samples: vec![Sample { t: now, v: 1.0 }],
            histograms: Vec::new(),
        });
        let mut b = a.labels.clone().into_builder();
        b.set(METRIC_NAME, FOR_STATE);
        alerts_series.push(Series {
            labels: b.build(),
            samples: vec![Sample {
                t: now,
                v: a.active_at as f64 / 1000.0,
            }],
            histograms: Vec::new(),
        });
    }
    if let Err(e) = write_series(backend, rs, alerts_series, now) {
        tracing::debug!(rule = %rule.name, "writing ALERTS series failed: {e}");
    }

    // Notifications, as Prometheus decides them: firing alerts when new and
    // every resend delay; resolved ones when they resolve (Alertmanager
    // also hears them again every resend delay while they are remembered).
    let valid_for = 4 * settings
        .resend_delay_ms
        .max(group.interval.as_millis() as i64);
    let generator_url = generator_url(settings.external_url, &rule.expr);
    let mut batch = Batch {
        rule: rule.name.clone(),
        ..Batch::default()
    };
    for a in rs.alerts.values_mut() {
        if a.state == State::Pending {
            continue;
        }
        let newly_resolved = a
            .resolved_at
            .is_some_and(|r| a.last_sent.is_none_or(|s| r > s));
        let due = newly_resolved
            || a.last_sent
                .is_none_or(|s| s + settings.resend_delay_ms < now);
        if !due {
            continue;
        }
        a.last_sent = Some(now);
        a.valid_until = now + valid_for;
        let notice = Notice {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.fired_at.unwrap_or(a.active_at),
            ends_at: a.resolved_at.unwrap_or(a.valid_until),
            resolved: a.state == State::Inactive,
            generator_url: generator_url.clone(),
        };
        if a.state == State::Firing || newly_resolved {
            batch.webhook.push(notice.clone());
        }
        batch.alertmanager.push(notice);
    }
    if !batch.alertmanager.is_empty() && group.notify {
        out.batches.push(batch);
    }
    Ok(())
}

/// Resolves the firing alerts left in `state` (rules a reload removed): a
/// last resolved notification, as their receivers would otherwise never
/// hear the end of them.
pub fn resolve_removed(
    group: &Group,
    state: &mut GroupState,
    now: i64,
    external_url: &str,
) -> Outcome {
    let mut out = Outcome::default();
    for (rule, rs) in group.rules.iter().zip(state.rules.iter_mut()) {
        let mut notices = Vec::new();
        for a in std::mem::take(&mut rs.alerts).into_values() {
            if a.state != State::Firing {
                continue;
            }
            out.transitions.push(transition(
                group,
                rule,
                &a.labels,
                State::Firing,
                State::Inactive,
                now,
                a.value,
            ));
            notices.push(Notice {
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: now,
                resolved: true,
                generator_url: generator_url(external_url, &rule.expr),
                labels: a.labels,
                annotations: a.annotations,
            });
        }
        if !notices.is_empty() && group.notify {
            out.batches.push(Batch {
                rule: rule.name.clone(),
                alertmanager: notices.clone(),
                webhook: notices,
            });
        }
    }
    out
}

fn transition(
    group: &Group,
    rule: &Rule,
    labels: &Labels,
    from: State,
    to: State,
    at: i64,
    value: f64,
) -> Transition {
    Transition {
        group: group.name.clone(),
        rule: rule.name.clone(),
        labels: labels.clone(),
        from: from.as_str(),
        to: if from == State::Firing && to == State::Inactive {
            "resolved"
        } else {
            to.as_str()
        },
        at,
        value,
    }
}

/// Prometheus's link to the expression in its table view.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let q = serde_urlencoded::to_string([("g0.expr", expr), ("g0.tab", "1")]).unwrap_or_default();
    format!("{}/graph?{q}", external_url.trim_end_matches('/'))
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
