//! The built-in anomaly rules: every service's request rate, error ratio
//! and p95 latency (from the span-derived RED metrics of the pipeline's `spanmetrics`)
//! and every host's CPU, memory and network (from `sonde agent`'s
//! hostmetrics names) are watched without any rule file, as one more
//! group evaluated like the user's.
//!
//! They are ordinary anomaly rules written in the rule file format and
//! parsed by `rules.rs`, so they are checked like a user's rule and appear
//! in `/api/v1/rules`; only the source is different.

use std::time::Duration;

use sonde_pipeline::names;

use super::rules::{self, Group};

/// The group's name in `/api/v1/rules`.
pub const GROUP: &str = "sonde-builtin-anomalies";
/// The group's `file`: no file holds it.
pub const FILE: &str = "(built-in)";
/// Scores from this up count: the detector's own alert level (its
/// `alert_score`, tuned on NAB with one threshold for every series). Its scores are tail
/// probabilities on a log scale, so a slow 4x rise of a noisy series
/// scores about 0.3, far below 0.8.
pub const SCORE_ABOVE: f64 = 0.25;
/// And the observed value at least this far from the expected one,
/// relative to it: what someone would call a change worth looking at.
pub const MIN_CHANGE: f64 = 0.5;
/// The same for the share of failed requests: a doubling. In a service
/// with little traffic a few more failures in a minute move the share by
/// half, which is chance, not an incident.
pub const MIN_CHANGE_ERRORS: f64 = 1.0;

/// The least change of p95 latency, in seconds, that counts: the width of
/// the span-duration histogram's first bucket.
pub const LATENCY_MIN_DELTA: f64 = sonde_pipeline::histogram::BUCKETS[0];

/// How long an alert stays firing after its series stops being anomalous:
/// a score hovering at the threshold is one alert, not a flapping one (and
/// one event, as an episode lasts until a minute without anomaly).
pub const KEEP_FIRING_FOR: &str = "1m";

/// The `anomaly_detection` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// Events and alerts, never sent to receivers: detection on every
    /// series would otherwise page people who never asked for it.
    Auto,
    /// As `Auto`, and the alerts go to the webhooks and Alertmanagers.
    Notify,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "off" => Ok(Mode::Off),
            "auto" => Ok(Mode::Auto),
            "notify" => Ok(Mode::Notify),
            other => Err(format!(
                "setting anomaly_detection: {other:?} is not auto, notify or off"
            )),
        }
    }
}

/// (alert name, expression, summary, min_change) of each rule.
fn specs() -> Vec<(&'static str, String, &'static str, f64)> {
    // Requests as the pipeline defines them (`names::is_request`).
    let calls = |more: &[&str]| {
        format!(
            "sum by (service_name) (rate({}[1m]))",
            names::requests(names::SPAN_CALLS, more)
        )
    };
    // The agent names the host in `instance`; `host_name` lets the event
    // be filed under its host.
    let host =
        |expr: String| format!(r#"label_replace({expr}, "host_name", "$1", "instance", "(.*)")"#);
    vec![
        (
            "ServiceRequestRate",
            calls(&[]),
            "{{ $labels.service_name }}: unusual request rate",
            MIN_CHANGE,
        ),
        (
            "ServiceErrorRate",
            // `or 0 * ...`: a service without errors scores 0 from the
            // start, so the detector knows its normal before the first error.
            format!(
                "({errors} or 0 * {all}) / {all}",
                errors = calls(&[names::ERROR_MATCHER]),
                all = calls(&[]),
            ),
            "{{ $labels.service_name }}: unusual share of failed requests",
            MIN_CHANGE_ERRORS,
        ),
        (
            "ServiceLatencyP95",
            format!(
                "histogram_quantile(0.95, sum by (service_name, le) (rate({}[1m])))",
                names::requests(&names::bucket(names::SPAN_DURATION), &[])
            ),
            "{{ $labels.service_name }}: unusual p95 latency",
            MIN_CHANGE,
        ),
        (
            "HostCpuUtilization",
            host(r#"1 - max by (job, instance) (system_cpu_utilization_ratio{state="idle"})"#.into()),
            "{{ $labels.instance }}: unusual CPU utilisation",
            MIN_CHANGE,
        ),
        (
            "HostMemoryUtilization",
            host(r#"sum by (job, instance) (system_memory_usage_bytes{state="used"}) / sum by (job, instance) (system_memory_limit_bytes)"#.into()),
            "{{ $labels.instance }}: unusual memory utilisation",
            MIN_CHANGE,
        ),
        (
            "HostNetworkBytes",
            host(r#"sum by (job, instance, direction) (rate(system_network_io_bytes_total{device!="lo"}[1m]))"#.into()),
            "{{ $labels.instance }}: unusual network {{ $labels.direction }} bytes/s",
            MIN_CHANGE,
        ),
    ]
}

/// The rule file text of the group, for reading and for the parser.
pub fn text() -> String {
    let mut out = format!("groups:\n  - name: {GROUP}\n    rules:\n");
    for (name, expr, summary, min_change) in specs() {
        // p95 latency within the span-duration histogram's first bucket is
        // interpolation, not measurement: a change smaller than that bucket
        // is noise however rare it looks.
        let min_delta = if name == "ServiceLatencyP95" {
            LATENCY_MIN_DELTA
        } else {
            0.0
        };
        out.push_str(&format!(
            "      - alert: {name}\n        expr: '{}'\n        anomaly: {{score_above: {SCORE_ABOVE}, min_change: {min_change}, min_delta: {min_delta}}}\n        keep_firing_for: {KEEP_FIRING_FOR}\n        labels: {{severity: info}}\n        annotations:\n          summary: '{summary}'\n          description: '{{{{ $explanation }}}}'\n",
            expr.replace('\'', "''"),
        ));
    }
    out
}

/// The group for `mode`, evaluated every `interval`; none when off.
pub fn group(mode: Mode, interval: Duration) -> Option<Group> {
    if mode == Mode::Off {
        return None;
    }
    let mut groups = rules::parse_file(FILE, &text(), interval)
        .unwrap_or_else(|e| panic!("the built-in anomaly rules do not parse: {e}"));
    let mut g = groups.remove(0);
    g.notify = mode == Mode::Notify;
    Some(g)
}

#[cfg(test)]
#[path = "builtin_tests.rs"]
mod tests;
