//! `sonde-bench`: feeds the same remote-write workload to Sonde,
//! VictoriaMetrics and Prometheus, one after the other on this machine, and
//! reports ingest CPU, disk and memory footprint and query latency, with
//! ratios Sonde/peer. See `--help` and BENCHMARKS.md.
//!
//! Per system and workload: start it on a fresh data directory, send the
//! pre-encoded requests (server CPU measured over this phase), read its RSS,
//! flush, measure the data directory, time the queries, stop it.

mod args;
mod load;
mod procfs;
mod query;
mod report;
mod rng;
mod server;
mod workload;

use std::fmt::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use args::{Options, USAGE};
use query::QuerySpec;
use report::{Failure, SystemResult};
use server::{Server, SystemKind};
use workload::{Plan, Workload};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sonde-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Some(opts) = Options::parse(std::env::args().skip(1))? else {
        print!("{USAGE}");
        return Ok(());
    };
    let (start_ms, end_ms) = time_range(opts.hours);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Command: `sonde-bench {}`\n\nMachine: {}; load average before the run: {:.2}\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        procfs::machine(),
        procfs::load_average()
    );
    for &kind in &opts.workloads {
        let w = Workload::new(kind, opts.hosts_for(kind), start_ms, end_ms, opts.seed);
        let section = bench_workload(&w, &opts)?;
        println!("{section}");
        out.push_str(&section);
        out.push('\n');
    }
    if let Some(path) = &opts.out {
        std::fs::write(path, &out).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// The data ends 5 minutes ago, on a minute boundary, so that 10 s and 15 s
/// points and 15 s query steps line up, and every system accepts it.
fn time_range(hours: f64) -> (i64, i64) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let end = (now_ms - 5 * 60_000) / 60_000 * 60_000;
    let start = end - (hours * 3_600_000.0) as i64 / 60_000 * 60_000;
    (start, end)
}

fn bench_workload(w: &Workload, opts: &Options) -> anyhow::Result<String> {
    eprintln!(
        "{}: {} series x {} points = {} samples; encoding...",
        w.kind.name(),
        w.series.len(),
        w.ticks,
        w.num_samples()
    );
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let plan = workload::encode_plan(w, opts.concurrency, opts.batch, threads);
    let requests: usize = plan.lanes.iter().map(Vec::len).sum();
    eprintln!(
        "  {requests} requests, {:.1} MiB of snappy bodies ({:.1} bytes/sample on the wire)",
        plan.body_bytes as f64 / 1048576.0,
        plan.body_bytes as f64 / plan.samples.max(1) as f64
    );
    let queries = query::queries_for(w);
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &kind in &opts.systems {
        eprintln!("  {}...", kind.name());
        match bench_system(kind, w, &plan, &queries, opts) {
            Ok(r) => {
                eprintln!(
                    "    {} samples in {:.1} s, {:.1} CPU-s",
                    r.ingest.samples_ok,
                    r.ingest.wall.as_secs_f64(),
                    r.cpu_ingest
                );
                results.push(r)
            }
            Err(e) => {
                eprintln!("    failed: {e:#}");
                failures.push(Failure {
                    kind,
                    error: format!("{e:#}"),
                });
            }
        }
    }
    Ok(report::render_workload(w, &queries, &results, &failures))
}

fn bench_system(
    kind: SystemKind,
    w: &Workload,
    plan: &Plan,
    queries: &[QuerySpec],
    opts: &Options,
) -> anyhow::Result<SystemResult> {
    let mut server = Server::start(kind, &opts.bins, w.kind.name(), opts.keep_data)?;
    let pid = server.pid();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .max_idle_connections_per_host(opts.concurrency * 2)
        .build();
    let mut notes = Vec::new();
    let snappy_header = probe_snappy_header(&agent, &server, &mut notes)?;

    let cpu0 = procfs::cpu_seconds(pid)?;
    let ingest = load::send_plan(&agent, &server.write_url(), plan, snappy_header);
    let cpu1 = procfs::cpu_seconds(pid)?;
    let mem_ingest = procfs::memory(pid)?;
    let load_after_ingest = procfs::load_average();
    server.check_alive()?;
    let details = self_report(&agent, &server, w, &mut notes);

    server
        .flush(&agent)
        .with_context(|| format!("flushing {}", kind.name()))?;
    let cpu2 = procfs::cpu_seconds(pid)?;
    let mem_flush = procfs::memory(pid)?;
    let disk = procfs::dir_size(server.data_dir());

    let query_results = queries
        .iter()
        .map(|q| {
            query::time_query(&agent, &server.base_url, q, opts.query_runs)
                .map_err(|e| format!("{e:#}"))
        })
        .collect();
    server.check_alive()?;
    Ok(SystemResult {
        kind,
        ingest,
        cpu_ingest: cpu1 - cpu0,
        cpu_flush: cpu2 - cpu1,
        mem_ingest,
        mem_flush,
        disk,
        queries: query_results,
        notes,
        details,
        load_after_ingest,
    })
}

/// Remote write requires `Content-Encoding: snappy`; a server that refuses
/// it is noted, and then sent the same bodies without the header so the
/// rest of the bench still measures it.
fn probe_snappy_header(
    agent: &ureq::Agent,
    server: &Server,
    notes: &mut Vec<String>,
) -> anyhow::Result<bool> {
    let ok = load::accepts_snappy_header(agent, &server.write_url())
        .map_err(|e| anyhow::anyhow!("an empty remote-write request failed: {e}"))?;
    if !ok {
        notes.push(
            "rejects `Content-Encoding: snappy` (HTTP 415), which the remote-write spec requires \
             senders to set; the bench sent the same bodies without that header"
                .to_string(),
        );
    }
    Ok(ok)
}

/// What the server says about itself after ingest (Sonde only): its own
/// view of memory use, to explain RSS, and its series count, to check that
/// nothing was silently dropped.
fn self_report(
    agent: &ureq::Agent,
    server: &Server,
    w: &Workload,
    notes: &mut Vec<String>,
) -> Vec<(String, f64)> {
    if server.kind != SystemKind::Sonde {
        return Vec::new();
    }
    let wanted = ["sonde_active_series", "sonde_head_bytes", "sonde_wal_bytes"];
    let metrics = server.scrape(agent, &wanted);
    let series = metrics.iter().find(|(k, _)| k == "sonde_active_series");
    if let Some((_, n)) = series {
        if *n as usize != w.series.len() {
            notes.push(format!(
                "reports {n} active series after ingest; the workload has {}",
                w.series.len()
            ));
        }
    }
    metrics
}
