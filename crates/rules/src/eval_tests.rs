//! Tests of rule evaluation and alert states.

use super::*;
use crate::rules::parse_file;
use parking_lot::Mutex;
use sonde_query::InstantSample;
use std::time::Duration;

/// A backend answering every query with the vector set by the test.
#[derive(Default)]
struct Fake {
    result: Mutex<Vec<(Labels, f64)>>,
    /// What range queries find, whatever the expression.
    history: Mutex<Vec<Series>>,
    appended: Mutex<Vec<Series>>,
    anomalies: Mutex<Vec<(String, Labels, i64)>>,
}

impl Backend for Fake {
    fn query(&self, _expr: &str, t: i64) -> Result<Value, String> {
        Ok(Value::Vector(
            self.result
                .lock()
                .iter()
                .map(|(l, v)| InstantSample {
                    labels: l.clone(),
                    t,
                    v: *v,
                    h: None,
                })
                .collect(),
        ))
    }
    fn query_range(&self, _expr: &str, start: i64, end: i64, _step: i64) -> Result<Value, String> {
        let mut found = self.history.lock().clone();
        for s in &mut found {
            s.samples.retain(|p| p.t >= start && p.t <= end);
        }
        Ok(Value::Matrix(found))
    }
    fn append(&self, series: &[Series]) -> Result<(), String> {
        self.appended.lock().extend_from_slice(series);
        Ok(())
    }
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for s in self.appended.lock().iter() {
            if matchers.iter().all(|m| m.matches(&s.labels)) {
                let samples = s.samples.iter().filter(|p| p.t >= mint && p.t <= maxt);
                out.entry(s.labels.clone()).or_default().extend(samples);
            }
        }
        Ok(out
            .into_iter()
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(labels, samples)| Series {
                labels,
                samples,
                histograms: Vec::new(),
            })
            .collect())
    }
    fn anomaly(&self, rule: &str, series: &Labels, _a: &sonde_analysis::Assessment, t: i64) {
        self.anomalies
            .lock()
            .push((rule.to_string(), series.clone(), t));
    }
}

fn group(rules: &str) -> Group {
    let text = format!("groups:\n  - name: g\n    rules:\n{rules}");
    parse_file("t.yml", &text, Duration::from_secs(1))
        .unwrap()
        .remove(0)
}

const SETTINGS: Settings = Settings {
    resend_delay_ms: 60_000,
    external_url: "http://sonde:7070",
    anomaly_step: Duration::from_secs(1),
};

fn states(st: &GroupState) -> Vec<&'static str> {
    st.rules[0]
        .alerts
        .values()
        .map(|a| a.state.as_str())
        .collect()
}

#[test]
fn alerts_go_pending_firing_resolved() {
    let g = group(
        "      - alert: High\n        expr: x > 1\n        for: 2s\n        labels: {severity: page}\n        annotations:\n          summary: '{{ $labels.instance }} at {{ $value }}'\n",
    );
    let fake = Fake::default();
    let mut st = GroupState::new(&g);
    let series = Labels::from_pairs([("__name__", "x"), ("instance", "a")]);
    *fake.result.lock() = vec![(series.clone(), 5.0)];
    let o = eval_group(&fake, &g, &mut st, 10_000, &SETTINGS);
    assert_eq!(states(&st), ["pending"]);
    assert!(o.batches.is_empty());
    assert_eq!(
        (o.transitions[0].from, o.transitions[0].to),
        ("inactive", "pending")
    );
    let a = st.rules[0].alerts.values().next().unwrap();
    assert_eq!(
        a.labels,
        Labels::from_pairs([
            ("alertname", "High"),
            ("instance", "a"),
            ("severity", "page")
        ])
    );
    assert_eq!(a.annotations, vec![("summary".into(), "a at 5".into())]);

    let o = eval_group(&fake, &g, &mut st, 11_000, &SETTINGS);
    assert_eq!(states(&st), ["pending"]);
    assert!(o.transitions.is_empty());
    let o = eval_group(&fake, &g, &mut st, 12_000, &SETTINGS);
    assert_eq!(states(&st), ["firing"]);
    assert_eq!(o.transitions[0].to, "firing");
    assert_eq!(o.batches[0].webhook.len(), 1);
    assert_eq!(o.batches[0].webhook[0].starts_at, 12_000);
    assert_eq!(o.batches[0].webhook[0].ends_at, 12_000 + 240_000);
    // Not re-sent before the resend delay.
    let o = eval_group(&fake, &g, &mut st, 13_000, &SETTINGS);
    assert!(o.batches.is_empty());
    let o = eval_group(&fake, &g, &mut st, 72_001, &SETTINGS);
    assert_eq!(o.batches[0].webhook.len(), 1);

    fake.result.lock().clear();
    let o = eval_group(&fake, &g, &mut st, 73_000, &SETTINGS);
    assert_eq!(states(&st), ["inactive"]);
    assert_eq!(
        (o.transitions[0].from, o.transitions[0].to),
        ("firing", "resolved")
    );
    let n = &o.batches[0].webhook[0];
    assert!(n.resolved);
    assert_eq!(n.ends_at, 73_000);
    // Resolved goes to the webhook once, to Alertmanager again later.
    let o = eval_group(&fake, &g, &mut st, 74_000, &SETTINGS);
    assert!(o.batches.is_empty());
    let o = eval_group(&fake, &g, &mut st, 134_000, &SETTINGS);
    assert!(o.batches[0].webhook.is_empty());
    assert_eq!(o.batches[0].alertmanager.len(), 1);
    // Forgotten after the retention.
    eval_group(
        &fake,
        &g,
        &mut st,
        73_000 + RESOLVED_RETENTION_MS + 1,
        &SETTINGS,
    );
    assert!(st.rules[0].alerts.is_empty());
    // ALERTS series were written, then marked stale.
    let appended = fake.appended.lock();
    assert!(appended
        .iter()
        .any(|s| s.labels.get("alertstate") == Some("firing")));
    assert!(appended
        .iter()
        .any(|s| s.samples[0].v.to_bits() == stale_nan().to_bits()));
}

#[test]
fn pending_alerts_that_clear_never_fire_and_keep_firing_for_holds() {
    let g = group(
        "      - alert: A\n        expr: x\n        for: 5s\n      - alert: B\n        expr: x\n        keep_firing_for: 3s\n",
    );
    let fake = Fake::default();
    let mut st = GroupState::new(&g);
    *fake.result.lock() = vec![(Labels::from_pairs([("i", "1")]), 1.0)];
    let o = eval_group(&fake, &g, &mut st, 1_000, &SETTINGS);
    // B has no `for`: it fires in its first evaluation.
    assert_eq!(
        st.rules[1].alerts.values().next().unwrap().state,
        State::Firing
    );
    assert!(o
        .transitions
        .iter()
        .any(|t| t.rule == "B" && t.from == "inactive" && t.to == "firing"));
    fake.result.lock().clear();
    let o = eval_group(&fake, &g, &mut st, 2_000, &SETTINGS);
    assert!(st.rules[0].alerts.is_empty());
    assert!(o
        .transitions
        .iter()
        .any(|t| t.rule == "A" && t.to == "inactive"));
    assert_eq!(
        st.rules[1].alerts.values().next().unwrap().state,
        State::Firing
    );
    eval_group(&fake, &g, &mut st, 4_000, &SETTINGS);
    assert_eq!(
        st.rules[1].alerts.values().next().unwrap().state,
        State::Firing
    );
    let o = eval_group(&fake, &g, &mut st, 5_000, &SETTINGS);
    assert_eq!(
        st.rules[1].alerts.values().next().unwrap().state,
        State::Inactive
    );
    assert!(o.batches[0].webhook[0].resolved);
}

#[test]
fn recording_rules_write_series_and_errors_are_kept() {
    let g = group("      - record: job:x:sum\n        expr: sum(x)\n        labels: {src: rule}\n");
    let fake = Fake::default();
    let mut st = GroupState::new(&g);
    *fake.result.lock() = vec![(Labels::from_pairs([("job", "a"), ("__name__", "x")]), 3.0)];
    eval_group(&fake, &g, &mut st, 1_000, &SETTINGS);
    let s = fake.appended.lock()[0].clone();
    assert_eq!(
        s.labels,
        Labels::from_pairs([("__name__", "job:x:sum"), ("job", "a"), ("src", "rule")])
    );
    assert_eq!(s.samples, vec![Sample { t: 1_000, v: 3.0 }]);
    assert_eq!(st.rules[0].health, Health::Ok);
    // Two series that differ only by name collide once it is replaced.
    *fake.result.lock() = vec![
        (Labels::from_pairs([("__name__", "x")]), 1.0),
        (Labels::from_pairs([("__name__", "y")]), 2.0),
    ];
    let o = eval_group(&fake, &g, &mut st, 2_000, &SETTINGS);
    assert_eq!(o.failures, 1);
    assert_eq!(st.rules[0].health, Health::Err);
    assert!(st.rules[0].last_error.contains("same labelset"));
}

#[test]
fn states_survive_a_reload_of_unchanged_rules() {
    let old = group("      - alert: A\n        expr: x\n      - alert: B\n        expr: x\n");
    let fake = Fake::default();
    *fake.result.lock() = vec![(Labels::empty(), 1.0)];
    let mut old_st = GroupState::new(&old);
    eval_group(&fake, &old, &mut old_st, 1_000, &SETTINGS);
    let new = group("      - alert: C\n        expr: x\n      - alert: B\n        expr: x > 0\n");
    let mut st = GroupState::new(&new);
    st.carry_over(&new, &old, &mut old_st);
    assert!(st.rules[0].alerts.is_empty());
    assert_eq!(st.rules[1].alerts.values().next().unwrap().active_at, 1_000);
    // A was removed: its firing alert is resolved, once.
    let o = resolve_removed(&old, &mut old_st, 5_000, "http://s");
    assert_eq!(o.batches.len(), 1);
    assert_eq!(o.batches[0].rule, "A");
    assert!(o.batches[0].webhook[0].resolved);
    assert_eq!(o.batches[0].webhook[0].ends_at, 5_000);
    assert_eq!(
        (o.transitions[0].from, o.transitions[0].to),
        ("firing", "resolved")
    );
    assert!(resolve_removed(&old, &mut old_st, 6_000, "http://s")
        .batches
        .is_empty());
}

#[test]
fn anomaly_rules_alert_on_anomalous_series() {
    let g = group(
        "      - alert: Odd\n        expr: x\n        anomaly: {score_above: 0.5}\n        annotations:\n          d: '{{ $explanation }}'\n",
    );
    let fake = Fake::default();
    let mut st = GroupState::new(&g);
    let l = Labels::from_pairs([("service", "checkout")]);
    let mut fired = None;
    for i in 0..700i64 {
        let v = if i < 600 {
            100.0 + (i % 7) as f64
        } else {
            5_000.0
        };
        *fake.result.lock() = vec![(l.clone(), v)];
        let o = eval_group(&fake, &g, &mut st, 1_000 * i, &SETTINGS);
        if i < 600 {
            assert!(st.rules[0].alerts.is_empty(), "alert at {i}");
        }
        if fired.is_none() && !o.batches.is_empty() {
            fired = Some(o.batches[0].webhook[0].clone());
        }
    }
    let n = fired.expect("the level shift raises an alert");
    // One event when the series turned anomalous, not one per evaluation.
    let events = fake.anomalies.lock();
    assert!(!events.is_empty(), "no anomaly event");
    assert!(events.iter().all(|(r, series, t)| r == "Odd"
        && series.get("service") == Some("checkout")
        && *t >= 600_000));
    let episodes = events.len();
    assert!(episodes <= 3, "{episodes} events for one level shift");
    drop(events);
    assert_eq!(n.labels.get("service"), Some("checkout"));
    assert!(
        n.annotations[0].1.contains("observed 5000"),
        "{:?}",
        n.annotations
    );
}

#[test]
fn anomaly_detectors_learn_once_per_step_and_score_every_evaluation() {
    // Evaluated four times a second, learnt once a second (the default step
    // is the group's interval, here 1 s): the detector's memory counts
    // time, not evaluations, yet every evaluation is scored.
    let g = group("      - alert: Odd\n        expr: x\n        anomaly: {score_above: 0.5}\n");
    let fake = Fake::default();
    let mut st = GroupState::new(&g);
    let l = Labels::from_pairs([("service", "checkout")]);
    let mut first_alert = None;
    for i in 0..1_000i64 {
        let v = if i < 901 {
            100.0 + (i % 7) as f64
        } else {
            5_000.0
        };
        *fake.result.lock() = vec![(l.clone(), v)];
        eval_group(&fake, &g, &mut st, 250 * i, &SETTINGS);
        if first_alert.is_none() && !st.rules[0].alerts.is_empty() {
            first_alert = Some(i);
        }
    }
    let w = &st.rules[0].detectors[&l];
    assert_eq!(w.detector.points(), 250, "one point learnt per second");
    // The jump, between two steps, is found at the evaluation it appears.
    assert_eq!(first_alert, Some(901));

    let stepped = group(
        "      - alert: Odd\n        expr: x\n        anomaly: {score_above: 0.5, step: 5s}\n",
    );
    let mut st = GroupState::new(&stepped);
    for i in 0..100i64 {
        eval_group(&fake, &stepped, &mut st, 1_000 * i, &SETTINGS);
    }
    assert_eq!(st.rules[0].detectors[&l].detector.points(), 20);

    // Evaluations on wall-clock ticks, a little early or late: still one
    // point learnt per evaluation when the step is the interval.
    let mut st = GroupState::new(&g);
    for i in 0..200i64 {
        let jitter = [0, -3, 4, -1][i as usize % 4];
        eval_group(&fake, &g, &mut st, 1_000 * i + jitter, &SETTINGS);
    }
    assert_eq!(st.rules[0].detectors[&l].detector.points(), 200);
}

#[test]
fn anomaly_detectors_learn_the_stored_history_before_judging() {
    // As after a restart: ten minutes of the series are in the store when
    // the rule first runs, and the very first evaluation sees a jump.
    let g = group("      - alert: Odd\n        expr: x\n        anomaly: {score_above: 0.5}\n");
    let l = Labels::from_pairs([("service", "checkout")]);
    let steady = |i: i64| 100.0 + (i % 7) as f64;
    let fake = Fake::default();
    let history = |labels: &Labels| Series {
        labels: labels.clone(),
        samples: (0..600)
            .map(|i| Sample {
                t: 1_000 * i,
                v: steady(i),
            })
            .collect(),
        histograms: Vec::new(),
    };
    // A series gone since is not given a detector it would hold for an hour.
    let gone = Labels::from_pairs([("service", "legacy")]);
    *fake.history.lock() = vec![history(&l), history(&gone)];
    *fake.result.lock() = vec![(l.clone(), 5_000.0)];
    let mut st = GroupState::new(&g);
    eval_group(&fake, &g, &mut st, 600_000, &SETTINGS);
    assert_eq!(states(&st), ["firing"], "the first evaluation judges");
    assert_eq!(st.rules[0].detectors[&l].detector.points(), 601);
    assert_eq!(st.rules[0].detectors.len(), 1);

    // Without history the detector is still learning.
    let fresh = Fake::default();
    *fresh.result.lock() = vec![(l.clone(), 5_000.0)];
    let mut st = GroupState::new(&g);
    eval_group(&fresh, &g, &mut st, 600_000, &SETTINGS);
    assert!(st.rules[0].alerts.is_empty());
}

#[test]
fn generator_urls_link_the_expression() {
    assert_eq!(
        generator_url("http://h:1/", "up == 0"),
        "http://h:1/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
    );
}

fn alert_of(st: &GroupState, rule: usize) -> (State, i64) {
    let a = st.rules[rule].alerts.values().next().expect("an alert");
    (a.state, a.active_at)
}

#[test]
fn for_state_is_written_and_restores_timers_after_a_restart() {
    let g = group(
        "      - alert: Short\n        expr: x\n        for: 5s\n      - alert: Long\n        expr: x\n        for: 60s\n",
    );
    let fake = Fake::default();
    *fake.result.lock() = vec![(Labels::from_pairs([("i", "1")]), 1.0)];
    let mut st = GroupState::new(&g);
    eval_group(&fake, &g, &mut st, 10_250, &SETTINGS);
    eval_group(&fake, &g, &mut st, 15_250, &SETTINGS);
    assert_eq!(alert_of(&st, 0), (State::Firing, 10_250));
    assert_eq!(alert_of(&st, 1), (State::Pending, 10_250));
    let written = fake.select(&[Matcher::equal(METRIC_NAME, FOR_STATE)], 0, i64::MAX);
    let written = written.unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(
        written[0].labels,
        Labels::from_pairs([("__name__", FOR_STATE), ("alertname", "Long"), ("i", "1")])
    );
    assert_eq!(
        written[0].samples,
        vec![
            Sample {
                t: 10_250,
                v: 10.25
            },
            Sample {
                t: 15_250,
                v: 10.25
            }
        ]
    );

    // A new process, down for 10s: the alert that fired fires at once with
    // its old activeAt; the pending one keeps the 5s it had spent pending.
    let mut restarted = GroupState::new(&g);
    restarted.restore = true;
    let o = eval_group(&fake, &g, &mut restarted, 25_250, &SETTINGS);
    assert_eq!(alert_of(&restarted, 0), (State::Firing, 10_250));
    assert_eq!(alert_of(&restarted, 1), (State::Pending, 20_250));
    assert!(o
        .transitions
        .iter()
        .any(|t| t.rule == "Short" && t.to == "firing"));
    assert!(!restarted.restore, "restored more than once");
    eval_group(&fake, &g, &mut restarted, 75_250, &SETTINGS);
    assert_eq!(alert_of(&restarted, 1), (State::Pending, 20_250));
    eval_group(&fake, &g, &mut restarted, 80_250, &SETTINGS);
    assert_eq!(alert_of(&restarted, 1), (State::Firing, 20_250));

    // Without the restore flag (a reload's new group), alerts start afresh.
    let mut fresh = GroupState::new(&g);
    eval_group(&fake, &g, &mut fresh, 81_000, &SETTINGS);
    assert_eq!(alert_of(&fresh, 0), (State::Pending, 81_000));
}

#[test]
fn ended_or_too_old_alert_states_are_not_restored() {
    let g = group("      - alert: A\n        expr: x\n        for: 5s\n");
    let fake = Fake::default();
    *fake.result.lock() = vec![(Labels::empty(), 1.0)];
    let mut st = GroupState::new(&g);
    eval_group(&fake, &g, &mut st, 1_000, &SETTINGS);
    eval_group(&fake, &g, &mut st, 7_000, &SETTINGS);
    assert_eq!(alert_of(&st, 0), (State::Firing, 1_000));
    // The outage began more than the tolerance ago.
    let mut late = GroupState::new(&g);
    late.restore = true;
    let now = 7_000 + OUTAGE_TOLERANCE_MS + 1;
    eval_group(&fake, &g, &mut late, now, &SETTINGS);
    assert_eq!(alert_of(&late, 0), (State::Pending, now));
    // The alert resolved before the restart: its stale marker ends it.
    fake.result.lock().clear();
    eval_group(&fake, &g, &mut st, 8_000, &SETTINGS);
    *fake.result.lock() = vec![(Labels::empty(), 1.0)];
    let mut after = GroupState::new(&g);
    after.restore = true;
    eval_group(&fake, &g, &mut after, 9_000, &SETTINGS);
    assert_eq!(alert_of(&after, 0), (State::Pending, 9_000));
}
