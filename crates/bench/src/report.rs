//! The markdown report: per workload, a table of the headline numbers, the
//! ratios Sonde/peer against the targets, raw measurements and the result of
//! comparing query answers.

use std::fmt::Write;
use std::time::Duration;

use crate::load::IngestOutcome;
use crate::procfs::{DiskUsage, Memory};
use crate::query::{compare, QuerySpec, Timing};
use crate::server::SystemKind;
use crate::workload::Workload;

/// Everything measured for one system on one workload.
pub struct SystemResult {
    pub kind: SystemKind,
    pub ingest: IngestOutcome,
    pub cpu_ingest: f64,
    pub cpu_flush: f64,
    pub mem_ingest: Memory,
    pub mem_flush: Memory,
    pub disk: DiskUsage,
    /// One per query of the workload; Err holds why it failed.
    pub queries: Vec<Result<Timing, String>>,
    /// Anomalies worth a warning line in the report.
    pub notes: Vec<String>,
    /// The server's own metrics after ingest (name, value).
    pub details: Vec<(String, f64)>,
    /// 1-minute load average right after ingest (server and client included).
    pub load_after_ingest: f64,
}

impl SystemResult {
    pub fn samples_per_cpu_s(&self) -> f64 {
        self.ingest.samples_ok as f64 / self.cpu_ingest.max(1e-9)
    }

    /// Counting the flush too: a system that defers work (Sonde cuts blocks
    /// once a minute, so a fast backfill leaves it all to the flush) must
    /// not look cheaper for it.
    pub fn samples_per_cpu_s_with_flush(&self) -> f64 {
        self.ingest.samples_ok as f64 / (self.cpu_ingest + self.cpu_flush).max(1e-9)
    }

    pub fn bytes_per_sample(&self) -> f64 {
        self.disk.apparent as f64 / self.ingest.samples_ok.max(1) as f64
    }

    pub fn rss_per_series(&self, series: usize) -> f64 {
        self.mem_ingest.rss as f64 / series.max(1) as f64
    }

    fn latency(&self, q: usize) -> Option<Duration> {
        self.queries
            .get(q)
            .and_then(|r| r.as_ref().ok())
            .map(|t| t.median)
    }
}

/// A system that could not be measured, and why.
pub struct Failure {
    pub kind: SystemKind,
    pub error: String,
}

pub fn render_workload(
    w: &Workload,
    queries: &[QuerySpec],
    results: &[SystemResult],
    failures: &[Failure],
) -> String {
    let mut s = String::new();
    let hours = (w.end_ms() - w.start_ms) as f64 / 3_600_000.0;
    let _ = writeln!(
        s,
        "### {}: {} hosts, {} series, {hours} h at {} s = {} samples\n",
        w.kind.name(),
        w.hosts,
        w.series.len(),
        w.interval_ms / 1000,
        w.num_samples()
    );
    headline_table(&mut s, w, queries, results);
    ratio_table(&mut s, w, queries, results);
    raw_table(&mut s, results);
    correctness(&mut s, queries, results);
    for f in failures {
        let _ = writeln!(
            s,
            "\n**{} failed:** {}",
            f.kind.name(),
            f.error.replace('\n', " ")
        );
    }
    s
}

fn headline_table(s: &mut String, w: &Workload, queries: &[QuerySpec], results: &[SystemResult]) {
    let _ = write!(
        s,
        "| system | samples/CPU-s | bytes/sample | RSS bytes/series |"
    );
    for q in queries {
        let _ = write!(s, " {} |", q.name);
    }
    let _ = write!(s, "\n|---|---:|---:|---:|");
    for _ in queries {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    for r in results {
        let _ = write!(
            s,
            "| {} | {} | {:.2} | {} |",
            r.kind.name(),
            thousands(r.samples_per_cpu_s()),
            r.bytes_per_sample(),
            thousands(r.rss_per_series(w.series.len()))
        );
        for i in 0..queries.len() {
            let _ = write!(
                s,
                " {} |",
                r.latency(i).map(ms).unwrap_or_else(|| "failed".into())
            );
        }
        s.push('\n');
    }
    s.push('\n');
}

/// Ratios Sonde/peer; the targets are stated against VictoriaMetrics.
fn ratio_table(s: &mut String, w: &Workload, queries: &[QuerySpec], results: &[SystemResult]) {
    let Some(sonde) = results.iter().find(|r| r.kind == SystemKind::Sonde) else {
        return;
    };
    let peers: Vec<&SystemResult> = results
        .iter()
        .filter(|r| r.kind != SystemKind::Sonde)
        .collect();
    if peers.is_empty() {
        return;
    }
    let _ = write!(s, "| Sonde / peer | target (vs VictoriaMetrics) |");
    for p in &peers {
        let _ = write!(s, " / {} |", p.kind.name());
    }
    let _ = write!(s, " target met |\n|---|---|");
    for _ in &peers {
        let _ = write!(s, "---:|");
    }
    s.push_str("---|\n");
    let n = w.series.len();
    let mut row = |name: &str,
                   target: &str,
                   f: &dyn Fn(&SystemResult) -> Option<f64>,
                   higher_better: bool,
                   goal: f64| {
        let _ = write!(s, "| {name} | {target} |");
        let mut met = "n/a (no VictoriaMetrics run)".to_string();
        for p in &peers {
            let ratio = match (f(sonde), f(p)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let _ = write!(
                s,
                " {} |",
                ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "n/a".into())
            );
            if p.kind == SystemKind::Vm {
                met = match ratio {
                    Some(r) if (higher_better && r >= goal) || (!higher_better && r <= goal) => {
                        "yes".into()
                    }
                    Some(_) => "**no**".into(),
                    None => "n/a".into(),
                };
            }
        }
        let _ = writeln!(s, " {met} |");
    };
    row(
        "ingest samples/CPU-s (higher is better)",
        ">= 2",
        &|r| Some(r.samples_per_cpu_s()),
        true,
        2.0,
    );
    row(
        "ingest + flush samples/CPU-s (higher is better)",
        ">= 2",
        &|r| Some(r.samples_per_cpu_s_with_flush()),
        true,
        2.0,
    );
    row(
        "bytes/sample (lower is better)",
        "<= 1",
        &|r| Some(r.bytes_per_sample()),
        false,
        1.0,
    );
    row(
        "RSS bytes/series (lower is better)",
        "<= 1",
        &|r| Some(r.rss_per_series(n)),
        false,
        1.0,
    );
    for (i, q) in queries.iter().enumerate() {
        let name = format!("latency: {} (lower is better)", q.name);
        row(
            &name,
            "<= 1",
            &|r| r.latency(i).map(|d| d.as_secs_f64()),
            false,
            1.0,
        );
    }
    s.push('\n');
}

fn raw_table(s: &mut String, results: &[SystemResult]) {
    s.push_str(
        "| system | samples accepted | failed requests | ingest wall s | samples/s (wall) | server CPU s, ingest | server CPU s, flush | disk, files | disk, du | RSS after ingest | RSS after flush | peak RSS | load avg after ingest |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let wall = r.ingest.wall.as_secs_f64();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.2} |",
            r.kind.name(),
            r.ingest.samples_ok,
            r.ingest.requests_failed,
            wall,
            thousands(r.ingest.samples_ok as f64 / wall.max(1e-9)),
            r.cpu_ingest,
            r.cpu_flush,
            mib(r.disk.apparent),
            mib(r.disk.allocated),
            mib(r.mem_ingest.rss),
            mib(r.mem_flush.rss),
            mib(r.mem_flush.peak.max(r.mem_ingest.peak)),
            r.load_after_ingest,
        );
    }
    for r in results.iter().filter(|r| !r.details.is_empty()) {
        let list: Vec<String> = r.details.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "\n{} after ingest, from its /metrics: {}",
            r.kind.name(),
            list.join(", ")
        );
    }
    for r in results {
        for note in &r.notes {
            let _ = writeln!(s, "\nWARNING: {} {note}", r.kind.name());
        }
    }
    for r in results.iter().filter(|r| r.ingest.first_error.is_some()) {
        let _ = writeln!(
            s,
            "\nWARNING: {} rejected {} requests; first error: {}",
            r.kind.name(),
            r.ingest.requests_failed,
            r.ingest.first_error.as_deref().unwrap_or("")
        );
    }
    s.push('\n');
}

/// Sonde's answers against each peer's.
fn correctness(s: &mut String, queries: &[QuerySpec], results: &[SystemResult]) {
    let Some(sonde) = results.iter().find(|r| r.kind == SystemKind::Sonde) else {
        return;
    };
    s.push_str("Query answers, Sonde against each peer:\n\n");
    for (i, q) in queries.iter().enumerate() {
        for peer in results.iter().filter(|r| r.kind != SystemKind::Sonde) {
            let line = match (sonde.queries.get(i), peer.queries.get(i)) {
                (Some(Ok(a)), Some(Ok(b))) => agreement(q, peer.kind, a, b),
                _ => format!("WARNING: no answer to compare with {}", peer.kind.name()),
            };
            let _ = writeln!(s, "- `{}`: {line}", q.expr);
        }
    }
}

/// One line on how Sonde's answer `a` compares with a peer's `b`.
fn agreement(q: &QuerySpec, peer: SystemKind, a: &Timing, b: &Timing) -> String {
    let name = peer.name();
    let values = !(peer == SystemKind::Vm && q.extrapolates);
    let note = if values {
        ""
    } else {
        " (series and timestamps only: VictoriaMetrics' rate does not extrapolate)"
    };
    let diff = if peer == SystemKind::Vm {
        compare(&a.answer.without_names(), &b.answer.without_names(), values)
    } else {
        compare(&a.answer, &b.answer, values)
    };
    match diff {
        None => format!(
            "agrees with {name}: {} series, {} points{note}",
            a.answer.series.len(),
            a.answer.points()
        ),
        // A few rate values near the data's start: see QuerySpec::extrapolates.
        Some(d) if q.extrapolates && !d.structural && d.value_diffs * 100 < d.points => format!(
            "agrees with {name} except {} of {} values (Prometheus 2.42's older counter-zero \
             extrapolation); e.g. {}",
            d.value_diffs,
            d.points,
            d.value_example.unwrap_or_default()
        ),
        Some(d) => format!("WARNING: Sonde and {name} differ: {}{note}", d.message),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// 1234567.8 -> "1,234,568": big rates read better grouped.
fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
