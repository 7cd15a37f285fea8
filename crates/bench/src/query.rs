//! The queries, timed through each system's Prometheus HTTP API, and the
//! comparison of their answers.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::workload::{Workload, WorkloadKind};

#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Short column name for the report.
    pub name: &'static str,
    pub expr: String,
    /// Range queries: (start, end, step) in ms; instant queries: None.
    pub range: Option<(i64, i64, i64)>,
    /// Evaluation time of an instant query, in ms.
    pub at: i64,
    /// Uses `rate`'s extrapolation. VictoriaMetrics does not extrapolate,
    /// so only the shape of its answer (series and timestamps) is compared;
    /// Prometheus 2.42 clamps to a counter's zero point before the 110%
    /// threshold where Prometheus 3 (and Sonde) clamp after it, which
    /// changes a few values near counter resets.
    pub extrapolates: bool,
}

const HOUR_MS: i64 = 3_600_000;
const STEP_MS: i64 = 15_000;

/// The queries for a workload, all evaluated at the workload's end (aligned
/// to a minute, so 15 s and 60 s steps fall on sample timestamps).
pub fn queries_for(w: &Workload) -> Vec<QuerySpec> {
    let end = w.end_ms();
    let last_hour = Some((end - HOUR_MS, end, STEP_MS));
    let q = |name, expr: &str, range, extrapolates| QuerySpec {
        name,
        expr: expr.to_string(),
        range,
        at: end,
        extrapolates,
    };
    match w.kind {
        WorkloadKind::Tsbs => vec![
            // At most 1000 series (host_0 .. host_999) whatever --hosts is.
            q(
                "rate 1000 series, 1h",
                r#"rate(cpu_usage_user{hostname=~"host_[0-9]{1,3}"}[5m])"#,
                last_hour,
                true,
            ),
            q(
                "sum by region, instant",
                "sum by (region) (cpu_usage_user)",
                None,
                false,
            ),
            q(
                "sum by region, 1h",
                "sum by (region) (cpu_usage_user)",
                last_hour,
                false,
            ),
            q(
                "last point per host",
                "last_over_time(cpu_usage_user[1h])",
                None,
                false,
            ),
            // TSBS single-groupby-1-1-12: one host, 1 min max, whole range.
            q(
                "1 host 1m max, all",
                r#"max_over_time(cpu_usage_user{hostname="host_7"}[1m])"#,
                Some((w.start_ms + 60_000, end, 60_000)),
                false,
            ),
        ],
        WorkloadKind::Node => vec![
            q(
                "cpu busy by host, 1h",
                r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
                last_hour,
                true,
            ),
            q(
                "net rx rate, 1h",
                "rate(node_network_receive_bytes_total[5m])",
                last_hour,
                true,
            ),
            q(
                "mem avail ratio, instant",
                "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                None,
                false,
            ),
            q("max load1, 1h", "max(node_load1)", last_hour, false),
        ],
    }
}

/// A query answer, normalised for comparison: label set -> points.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub series: BTreeMap<String, Vec<(i64, f64)>>,
}

impl Answer {
    /// The answer with `__name__` removed from every label set:
    /// VictoriaMetrics keeps the name where Prometheus drops it (e.g. on
    /// `max_over_time`), which is not what the comparison is about.
    pub fn without_names(&self) -> Answer {
        let series = self
            .series
            .iter()
            .map(|(k, v)| {
                let inner = k.trim_start_matches('{').trim_end_matches('}');
                let kept: Vec<&str> = inner
                    .split(',')
                    .filter(|p| !p.starts_with("__name__="))
                    .collect();
                (format!("{{{}}}", kept.join(",")), v.clone())
            })
            .collect();
        Answer { series }
    }

    pub fn points(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

pub struct Timing {
    pub median: Duration,
    pub answer: Answer,
}

/// Runs a query once to warm up (and keep its answer), then `runs` times,
/// and returns the median latency (request sent to body fully read).
pub fn time_query(
    agent: &ureq::Agent,
    base_url: &str,
    q: &QuerySpec,
    runs: usize,
) -> anyhow::Result<Timing> {
    let answer =
        parse_answer(&fetch(agent, base_url, q)?).with_context(|| format!("query {:?}", q.expr))?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        fetch(agent, base_url, q)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(Timing {
        median: times[times.len() / 2],
        answer,
    })
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn fetch(agent: &ureq::Agent, base_url: &str, q: &QuerySpec) -> anyhow::Result<Vec<u8>> {
    let req = match q.range {
        Some((start, end, step)) => agent
            .get(&format!("{base_url}/api/v1/query_range"))
            .query("query", &q.expr)
            .query("start", &secs(start))
            .query("end", &secs(end))
            .query("step", &secs(step)),
        None => agent
            .get(&format!("{base_url}/api/v1/query"))
            .query("query", &q.expr)
            .query("time", &secs(q.at)),
    };
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            bail!(
                "query {:?} failed: HTTP {code}: {}",
                q.expr,
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => bail!("query {:?} failed: {e}", q.expr),
    };
    // Read it all: ureq's into_string stops at 10 MB.
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body)?;
    Ok(body)
}

fn parse_answer(body: &[u8]) -> anyhow::Result<Answer> {
    let v: Value = serde_json::from_slice(body).context("answer is not JSON")?;
    if v["status"] != "success" {
        bail!("answer is an error: {}", String::from_utf8_lossy(body));
    }
    let mut answer = Answer::default();
    let data = &v["data"];
    let results = data["result"]
        .as_array()
        .context("answer has no data.result array")?;
    for r in results {
        let key = label_key(&r["metric"]);
        let points = match data["resultType"].as_str() {
            Some("vector") => vec![point(&r["value"])?],
            Some("matrix") => r["values"]
                .as_array()
                .context("matrix series without values")?
                .iter()
                .map(point)
                .collect::<anyhow::Result<_>>()?,
            other => bail!("unexpected resultType {other:?}"),
        };
        answer.series.insert(key, points);
    }
    Ok(answer)
}

/// `{a="1",b="2"}` with names sorted, so answers from all systems key alike.
fn label_key(metric: &Value) -> String {
    let mut pairs: Vec<(String, String)> = metric
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

fn point(p: &Value) -> anyhow::Result<(i64, f64)> {
    let t = p[0].as_f64().context("point without a timestamp")?;
    let v = p[1].as_str().context("point value is not a string")?;
    let v: f64 = match v {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().with_context(|| format!("bad value {s:?}"))?,
    };
    Ok(((t * 1000.0).round() as i64, v))
}

/// Relative tolerance for values: sums may add in another order.
const TOLERANCE: f64 = 1e-9;

/// How two answers differ.
#[derive(Debug)]
pub struct Diff {
    /// Series or timestamps differ, not only values.
    pub structural: bool,
    pub value_diffs: usize,
    pub points: usize,
    /// The first differing value, described.
    pub value_example: Option<String>,
    pub message: String,
}

/// Describes how `b` differs from `a`, or None when they agree. With
/// `values` false only series and timestamps are compared.
pub fn compare(a: &Answer, b: &Answer, values: bool) -> Option<Diff> {
    let only_a = a
        .series
        .keys()
        .filter(|k| !b.series.contains_key(*k))
        .count();
    let only_b = b
        .series
        .keys()
        .filter(|k| !a.series.contains_key(*k))
        .count();
    let mut point_diffs = 0usize;
    let mut value_diffs = 0usize;
    let mut example = None;
    for (key, pa) in &a.series {
        let Some(pb) = b.series.get(key) else {
            continue;
        };
        let tb: BTreeMap<i64, f64> = pb.iter().copied().collect();
        point_diffs += pa.len().abs_diff(pb.len());
        for &(t, va) in pa {
            match tb.get(&t) {
                None => point_diffs += 1,
                Some(&vb) if values && !close(va, vb) => {
                    value_diffs += 1;
                    example.get_or_insert_with(|| format!("{key} at {}: {va} vs {vb}", secs(t)));
                }
                Some(_) => {}
            }
        }
    }
    if only_a == 0 && only_b == 0 && point_diffs == 0 && value_diffs == 0 {
        return None;
    }
    let mut msg = format!(
        "{} vs {} series ({only_a} only in the first, {only_b} only in the second), {} vs {} points",
        a.series.len(),
        b.series.len(),
        a.points(),
        b.points()
    );
    if only_a > 0 {
        let k = a.series.keys().find(|k| !b.series.contains_key(*k));
        msg += &format!("; e.g. only first: {}", k.map(String::as_str).unwrap_or(""));
    }
    if only_b > 0 {
        let k = b.series.keys().find(|k| !a.series.contains_key(*k));
        msg += &format!(
            "; e.g. only second: {}",
            k.map(String::as_str).unwrap_or("")
        );
    }
    if let Some(e) = &example {
        msg += &format!("; {value_diffs} values differ, e.g. {e}");
    }
    Some(Diff {
        structural: only_a + only_b + point_diffs > 0,
        value_diffs,
        points: a.points(),
        value_example: example,
        message: msg,
    })
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares_answers() {
        let a = parse_answer(
            br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"region":"eu","x":"1"},"values":[[1.5,"2"],[3,"NaN"]]}]}}"#,
        )
        .unwrap();
        let b = parse_answer(
            br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"x":"1","region":"eu"},"values":[[1.5,"2.0000000000001"],[3,"NaN"]]}]}}"#,
        )
        .unwrap();
        let points = &a.series[r#"{region="eu",x="1"}"#];
        assert_eq!(points[0], (1500, 2.0));
        assert!(points[1].0 == 3000 && points[1].1.is_nan());
        assert!(compare(&a, &b, true).is_none());
        let c = parse_answer(br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"3"]}]}}"#).unwrap();
        assert!(compare(&a, &c, false)
            .unwrap()
            .message
            .contains("1 only in the first"));
    }
}
