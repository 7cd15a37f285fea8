//! Rule files in Prometheus's format: groups of alerting and recording
//! rules, found by glob patterns, parsed and checked as Prometheus checks
//! them (unknown fields, names, PromQL, templates).
//!
//! One extension: an alerting rule may carry `anomaly: {score_above: 0.8}`;
//! its `expr` then gives the series to watch, and the rule is active for
//! those whose anomaly score (see `sonde_analysis::Detector`) reaches the
//! threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::template::{Template, Val};
use sonde_model::time::parse_duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    #[serde(default)]
    groups: Vec<GroupYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupYaml {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RuleYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleYaml {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<String>,
    #[serde(default, rename = "for")]
    hold: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    anomaly: Option<AnomalyYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnomalyYaml {
    #[serde(default)]
    score_above: Option<f64>,
    #[serde(default)]
    min_change: Option<f64>,
    #[serde(default)]
    min_delta: Option<f64>,
    #[serde(default)]
    step: Option<String>,
}

/// The anomaly score an anomaly rule fires at when it names none.
pub const DEFAULT_ANOMALY_SCORE: f64 = 0.5;

/// A group of rules evaluated together, in order, every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    pub query_offset: Duration,
    /// Most alerts or series one rule may produce (0: no limit).
    pub limit: usize,
    pub rules: Vec<Rule>,
    /// Whether its alerts go to the receivers (not so for the built-in
    /// anomaly rules unless asked).
    pub notify: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `alert` or `record`.
    pub name: String,
    pub expr: String,
    /// The rule's labels (with the group's), sorted by name, as written.
    pub labels: Vec<(String, String)>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Recording,
    Alerting(AlertSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// `for`: how long a condition holds before the alert fires.
    pub hold: Duration,
    pub keep_firing_for: Duration,
    pub label_templates: Vec<(String, Template)>,
    pub annotations: Vec<(String, Template)>,
    /// Anomaly rules: the score at which a series counts as active.
    pub anomaly: Option<f64>,
    /// Anomaly rules: how far, relative to the expected value, the observed
    /// one must also be to count (0: any distance). The detector's score
    /// says how rare a deviation is for this series, not how large: on a
    /// very steady series a 15% drift is as rare as a fourfold jump.
    pub anomaly_min_change: f64,
    /// Anomaly rules: how far, in the series' own unit, the observed value
    /// must also be from the expected one (0: any distance): below a
    /// measurement's resolution a change is noise, however rare.
    pub anomaly_min_delta: f64,
    /// Anomaly rules: how often a detector learns a point (`None`: the
    /// group's interval, at least the `anomaly_step` setting). Evaluations in
    /// between are scored without being learnt, so the detector's memory is
    /// counted in time, not in evaluations, whatever the interval.
    pub anomaly_step: Option<Duration>,
}

impl Rule {
    /// What identifies a rule across reloads (as Prometheus: its name and
    /// labels), to carry its alerts' states over.
    pub fn identity(&self) -> (&str, &[(String, String)], bool) {
        (
            &self.name,
            &self.labels,
            matches!(self.kind, Kind::Alerting(_)),
        )
    }
}

/// Loads every file the patterns match, in pattern order. Any error fails
/// the whole load, with every problem found listed.
pub fn load(patterns: &[String], default_interval: Duration) -> Result<Vec<Group>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let found = glob(p).map_err(|e| format!("rule_files pattern {p:?}: {e}"))?;
        for f in found {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => match parse_file(&name, &text, default_interval) {
                Ok(g) => groups.extend(g),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors.join("; "))
    }
}

/// Parses and checks one rule file.
pub fn parse_file(
    file: &str,
    text: &str,
    default_interval: Duration,
) -> Result<Vec<Group>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parsed: FileYaml = serde_yaml_ng::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    for (gi, g) in parsed.groups.into_iter().enumerate() {
        let at = format!("{file}: group {:?}", g.name);
        if g.name.is_empty() {
            errors.push(format!(
                "{file}: group {}: groupname must not be empty",
                gi + 1
            ));
        } else if groups.iter().any(|o: &Group| o.name == g.name) {
            errors.push(format!("{at}: groupname is repeated in the same file"));
        }
        let dur =
            |what: &str, v: &Option<String>, default: Duration, errors: &mut Vec<String>| match v {
                None => default,
                Some(s) => parse_duration(s).unwrap_or_else(|| {
                    errors.push(format!("{at}: {what} {s:?} is not a duration"));
                    default
                }),
            };
        let mut interval = dur("interval", &g.interval, default_interval, &mut errors);
        if interval.is_zero() {
            interval = default_interval;
        }
        let query_offset = dur("query_offset", &g.query_offset, Duration::ZERO, &mut errors);
        for (k, v) in &g.labels {
            check_label(&at, "label", k, v, &mut errors);
        }
        let mut rules = Vec::new();
        for (ri, r) in g.rules.into_iter().enumerate() {
            if let Some(rule) =
                parse_rule(&format!("{at}, rule {}", ri + 1), r, &g.labels, &mut errors)
            {
                rules.push(rule);
            }
        }
        groups.push(Group {
            name: g.name,
            file: file.to_string(),
            interval,
            query_offset,
            limit: g.limit.unwrap_or(0),
            rules,
            notify: true,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors.join("; "))
    }
}

fn check_label(at: &str, what: &str, name: &str, value: &str, errors: &mut Vec<String>) {
    if !sonde_model::is_valid_label_name(name) || name == sonde_model::METRIC_NAME {
        errors.push(format!("{at}: invalid {what} name {name:?}"));
    }
    if what == "label" && value.is_empty() {
        errors.push(format!("{at}: label {name:?} has an empty value"));
    }
}

fn parse_rule(
    at: &str,
    r: RuleYaml,
    group_labels: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Option<Rule> {
    let before = errors.len();
    let (name, alerting) = match (r.record, r.alert) {
        (Some(n), None) => (n, false),
        (None, Some(n)) => (n, true),
        (Some(_), Some(_)) => {
            errors.push(format!(
                "{at}: only one of 'record' and 'alert' must be set"
            ));
            return None;
        }
        (None, None) => {
            errors.push(format!("{at}: one of 'record' or 'alert' must be set"));
            return None;
        }
    };
    let at = format!("{at} ({name})");
    let expr = r.expr.unwrap_or_default();
    if expr.trim().is_empty() {
        errors.push(format!("{at}: field 'expr' must be set in rule"));
    } else if let Err(e) = sonde_query::extract_selectors(&expr) {
        errors.push(format!("{at}: could not parse expression: {e}"));
    }
    let mut labels: BTreeMap<String, String> = group_labels.clone();
    labels.extend(r.labels);
    for (k, v) in &labels {
        check_label(&at, "label", k, v, errors);
    }
    let labels: Vec<(String, String)> = labels.into_iter().collect();
    if !alerting {
        if !sonde_model::is_valid_metric_name(&name) {
            errors.push(format!("{at}: invalid recording rule name {name:?}"));
        }
        for (field, set) in [
            ("for", r.hold.is_some()),
            ("keep_firing_for", r.keep_firing_for.is_some()),
            ("annotations", !r.annotations.is_empty()),
            ("anomaly", r.anomaly.is_some()),
        ] {
            if set {
                errors.push(format!("{at}: invalid field '{field}' in recording rule"));
            }
        }
        return (errors.len() == before).then_some(Rule {
            name,
            expr,
            labels,
            kind: Kind::Recording,
        });
    }
    if name.is_empty() {
        errors.push(format!("{at}: alert name must not be empty"));
    }
    let mut dur = |what: &str, v: Option<String>| match v {
        None => Duration::ZERO,
        Some(s) => parse_duration(&s).unwrap_or_else(|| {
            errors.push(format!("{at}: {what} {s:?} is not a duration"));
            Duration::ZERO
        }),
    };
    let hold = dur("for", r.hold);
    let keep_firing_for = dur("keep_firing_for", r.keep_firing_for);
    let anomaly_step = r
        .anomaly
        .as_ref()
        .and_then(|a| a.step.clone())
        .map(|s| dur("anomaly step", Some(s)))
        .filter(|d| !d.is_zero());
    let anomaly_min_change = r.anomaly.as_ref().and_then(|a| a.min_change).unwrap_or(0.0);
    if !(anomaly_min_change >= 0.0 && anomaly_min_change.is_finite()) {
        errors.push(format!("{at}: anomaly min_change must be 0 or more"));
    }
    let anomaly_min_delta = r.anomaly.as_ref().and_then(|a| a.min_delta).unwrap_or(0.0);
    if !(anomaly_min_delta >= 0.0 && anomaly_min_delta.is_finite()) {
        errors.push(format!("{at}: anomaly min_delta must be 0 or more"));
    }
    let anomaly = r
        .anomaly
        .map(|a| a.score_above.unwrap_or(DEFAULT_ANOMALY_SCORE));
    if anomaly.is_some_and(|s| !(s > 0.0 && s <= 1.0)) {
        errors.push(format!("{at}: anomaly score_above must be in (0, 1]"));
    }
    let mut template = |what: &str, k: &str, v: &str| match Template::parse(v) {
        Ok(t) => {
            // Undefined variables are found now, as Go's parser finds them.
            let out = t.expand(&sample_vars(anomaly.is_some()));
            if out.starts_with("<error expanding template: undefined variable") {
                errors.push(format!("{at}: {what} {k:?}: {out}"));
            }
            Some((k.to_string(), t))
        }
        Err(e) => {
            errors.push(format!("{at}: {what} {k:?}: template: {e}"));
            None
        }
    };
    let label_templates: Vec<(String, Template)> = labels
        .iter()
        .filter_map(|(k, v)| template("label", k, v))
        .collect();
    let annotations: Vec<(String, Template)> = r
        .annotations
        .iter()
        .filter_map(|(k, v)| template("annotation", k, v))
        .collect();
    for k in r.annotations.keys() {
        check_label(&at, "annotation", k, "", errors);
    }
    (errors.len() == before).then_some(Rule {
        name,
        expr,
        labels,
        kind: Kind::Alerting(AlertSpec {
            hold,
            keep_firing_for,
            label_templates,
            annotations,
            anomaly,
            anomaly_min_change,
            anomaly_min_delta,
            anomaly_step,
        }),
    })
}

/// The variables a template of an alerting rule can use, with sample values.
pub fn sample_vars(anomaly: bool) -> Vec<(&'static str, Val)> {
    let mut v = vec![
        ("labels", Val::Map(Vec::new())),
        ("value", Val::Num(0.0)),
        ("externalLabels", Val::Map(Vec::new())),
        ("externalURL", Val::Str(String::new())),
    ];
    if anomaly {
        v.extend([
            ("observed", Val::Num(0.0)),
            ("expected_low", Val::Num(0.0)),
            ("expected_high", Val::Num(0.0)),
            ("explanation", Val::Str(String::new())),
        ]);
    }
    v
}

/// The files a pattern matches, sorted, as Go's `filepath.Glob`: `*`, `?`
/// and `[...]` within one path element; a pattern without them names a
/// file that may or may not exist.
pub fn glob(pattern: &str) -> std::io::Result<Vec<PathBuf>> {
    let meta = |s: &str| s.contains(['*', '?', '[']);
    if !meta(pattern) {
        let p = PathBuf::from(pattern);
        return Ok(if p.is_file() { vec![p] } else { Vec::new() });
    }
    let mut bases: Vec<PathBuf> = vec![PathBuf::from(if pattern.starts_with('/') {
        "/"
    } else {
        ""
    })];
    for part in pattern.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let mut next = Vec::new();
        for base in &bases {
            if !meta(part) {
                next.push(base.join(part));
                continue;
            }
            let dir: &Path = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if wildcard(part.as_bytes(), name.as_bytes()) {
                    next.push(base.join(name));
                }
            }
        }
        bases = next;
    }
    bases.retain(|p| p.is_file());
    bases.sort();
    Ok(bases)
}

/// Shell-style matching of one path element.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| wildcard(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && wildcard(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(c) = s.first() else { return false };
            let Some(end) = p.iter().skip(2).position(|&b| b == b']').map(|i| i + 2) else {
                return false;
            };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some(b'!' | b'^'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= (class[i]..=class[i + 2]).contains(c);
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && wildcard(&p[end + 1..], &s[1..])
        }
        Some(&b) => s.first() == Some(&b) && wildcard(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
groups:
  - name: api
    interval: 5s
    labels:
      team: core
    rules:
      - record: job:requests:rate1m
        expr: sum by (job) (rate(requests_total[1m]))
      - alert: HighLatency
        expr: latency_seconds > 0.5
        for: 30s
        keep_firing_for: 1m
        labels:
          severity: page
          port: 8080
        annotations:
          summary: "{{ $labels.job }} is slow: {{ $value | humanize }}s"
  - name: anomalies
    rules:
      - alert: TrafficAnomalous
        expr: sum by (service) (rate(requests_total[1m]))
        anomaly:
          score_above: 0.8
          min_change: 0.5
          min_delta: 0.25
          step: 10s
        annotations:
          description: "{{ $explanation }}"
"#;

    #[test]
    fn parses_prometheus_rule_files() {
        let groups = parse_file("r.yml", GOOD, Duration::from_secs(1)).unwrap();
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(
            (g.name.as_str(), g.interval),
            ("api", Duration::from_secs(5))
        );
        assert_eq!(g.rules[0].kind, Kind::Recording);
        assert_eq!(g.rules[0].labels, vec![("team".into(), "core".into())]);
        let Kind::Alerting(a) = &g.rules[1].kind else {
            panic!()
        };
        assert_eq!(a.hold, Duration::from_secs(30));
        assert_eq!(a.keep_firing_for, Duration::from_secs(60));
        assert_eq!(a.anomaly, None);
        assert!(g.rules[1].labels.contains(&("port".into(), "8080".into())));
        assert_eq!(groups[1].interval, Duration::from_secs(1));
        let Kind::Alerting(a) = &groups[1].rules[0].kind else {
            panic!()
        };
        assert_eq!(a.anomaly, Some(0.8));
        assert_eq!(a.anomaly_min_change, 0.5);
        assert_eq!(a.anomaly_min_delta, 0.25);
        assert_eq!(a.anomaly_step, Some(Duration::from_secs(10)));
        let negative = GOOD.replace("min_change: 0.5", "min_change: -1");
        let err = parse_file("r.yml", &negative, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("min_change"), "{err}");
        let negative = GOOD.replace("min_delta: 0.25", "min_delta: -1");
        let err = parse_file("r.yml", &negative, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("min_delta"), "{err}");
    }

    #[test]
    fn bad_files_are_explained() {
        let err = |text: &str| parse_file("r.yml", text, Duration::from_secs(1)).unwrap_err();
        assert!(
            err("groups:\n - name: a\n   rules:\n    - alert: X\n      expr: up ==\n")
                .contains("could not parse expression")
        );
        assert!(err(
            "groups:\n - name: a\n   rules:\n    - record: X\n      expr: up\n      for: 1m\n"
        )
        .contains("invalid field 'for'"));
        assert!(err(
            "groups:\n - name: a\n   rules:\n    - alert: X\n      expr: up\n      bogus: 1\n"
        )
        .contains("unknown field"));
        assert!(err("groups:\n - name: a\n   rules:\n    - expr: up\n").contains("must be set"));
        assert!(err("groups:\n - name: a\n - name: a\n").contains("repeated"));
        assert!(
            err("groups:\n - name: a\n   rules:\n    - record: 'bad name'\n      expr: up\n")
                .contains("invalid recording rule name")
        );
        assert!(err("groups:\n - name: a\n   rules:\n    - alert: X\n      expr: up\n      annotations:\n        s: '{{ $nope }}'\n")
            .contains("undefined variable"));
        assert!(err("groups:\n - name: a\n   rules:\n    - alert: X\n      expr: up\n      annotations:\n        s: '{{ $value'\n")
            .contains("template"));
        assert!(err("groups: [").contains("r.yml"));
        assert!(parse_file("e.yml", "\n", Duration::from_secs(1))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn globs_match_like_go() {
        assert!(wildcard(b"*.yml", b"a.yml"));
        assert!(!wildcard(b"*.yml", b"a.yaml"));
        assert!(wildcard(b"r?[0-9].y*", b"ra7.yaml"));
        assert!(!wildcard(b"[!a]*", b"abc"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for f in ["sub/b.yml", "sub/a.yml", "sub/c.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let found = glob(&format!("{}/s*/*.yml", dir.path().display())).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        let groups = load(
            &[format!("{}/sub/*.yml", dir.path().display())],
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(groups.is_empty());
    }
}
