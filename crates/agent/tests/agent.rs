//! The agent end to end, without a server: a whole tick on this machine and
//! on a fake root, the Prometheus names Sonde's ingest gives its metrics,
//! and the loop applying policies and stopping.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use sonde_agent::agent::{apply_policy, run_loop, Applied};
use sonde_agent::host::Host;
use sonde_agent::procfs::Roots;
use sonde_agent::{Agent, Config, Control, PolicyUpdate};
use sonde_ingest::otlp::{collector::ExportMetricsServiceRequest, MetricsConverter};
use sonde_sdk::export::MemorySink;

fn config(collectors: &[&str]) -> Config {
    Config {
        collectors: collectors.iter().map(|s| s.to_string()).collect(),
        top_processes: 3,
        ..Config::default()
    }
}

fn host() -> Host {
    Host::detect(&Roots::new("/"))
}

/// The Prometheus series names Sonde stores for one encoded batch.
fn prometheus_names(body: &[u8]) -> BTreeSet<String> {
    let req = ExportMetricsServiceRequest::decode(body).unwrap();
    let batch = MetricsConverter::new().convert(&req, 0);
    assert_eq!(batch.rejected_points, 0, "{:?}", batch.first_rejection);
    batch
        .series
        .iter()
        .map(|s| s.labels.metric_name().unwrap().to_string())
        .collect()
}

#[test]
fn every_collector_on_this_machine_maps_to_the_expected_names() {
    let all = sonde_agent::collectors::ALL;
    let mut agent = Agent::new(&config(&all), &host()).unwrap();
    agent.tick(SystemTime::now());
    std::thread::sleep(Duration::from_millis(50));
    agent.tick(SystemTime::now());
    let names = prometheus_names(&agent.encode());
    let mut expected = vec![
        "target_info",
        "system_cpu_time_seconds_total",
        "system_cpu_logical_count",
        "system_cpu_load_average_1m",
        "system_cpu_load_average_5m",
        "system_cpu_load_average_15m",
        "system_memory_usage_bytes",
        "system_memory_limit_bytes",
        "system_linux_memory_available_bytes",
        "system_filesystem_usage_bytes",
        "system_filesystem_limit_bytes",
        "system_filesystem_inodes_usage",
        "system_network_io_bytes_total",
        "system_network_packets_total",
        "system_network_errors_total",
        "system_network_dropped_total",
        "process_cpu_time_seconds_total",
        "process_memory_usage_bytes",
    ];
    if Path::new("/proc/pressure/cpu").exists() {
        expected.extend([
            "system_pressure_stall_time_seconds_total",
            "system_pressure_avg10_ratio",
        ]);
    }
    // Utilization needs two ticks with CPU time between them.
    if names.contains("system_cpu_utilization_ratio") {
        expected.push("system_cpu_utilization_ratio");
    }
    let has_disks = std::fs::read_to_string("/proc/diskstats")
        .unwrap()
        .lines()
        .any(|l| !l.contains(" loop") && !l.contains(" ram") && !l.contains(" zram"));
    if has_disks {
        expected.extend([
            "system_disk_io_bytes_total",
            "system_disk_operations_total",
            "system_disk_merged_total",
            "system_disk_operation_time_seconds_total",
            "system_disk_io_time_seconds_total",
            "system_disk_weighted_io_time_seconds_total",
            "system_disk_pending_operations",
        ]);
    }
    let expected: BTreeSet<String> = expected.into_iter().map(String::from).collect();
    assert_eq!(names, expected);
}

#[test]
fn a_fake_root_gives_exact_values() {
    let dir = std::env::temp_dir().join(format!("sonde-agent-root-{}", std::process::id()));
    let file = |p: &str, text: &str| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    file(
        "proc/stat",
        "cpu 200 0 100 700 0 0 0 0\ncpu0 200 0 100 700 0 0 0 0\nbtime 1000\n",
    );
    file("proc/loadavg", "0.50 0.25 0.10 1/100 42\n");
    file(
        "proc/meminfo",
        "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 300 kB\nSReclaimable: 50 kB\n",
    );
    file(
        "proc/swaps",
        "Filename Type Size Used Priority\n/dev/sdb2 partition 2048 1024 -2\n",
    );
    file("proc/sys/kernel/hostname", "fake-host\n");
    let cfg = Config {
        root_path: dir.clone(),
        collectors: vec!["cpu".into(), "load".into(), "memory".into()],
        ..Config::default()
    };
    let h = Host::detect(&Roots::new(&dir));
    assert_eq!(h.name, "fake-host");
    let mut agent = Agent::new(&cfg, &h).unwrap();
    let text = agent
        .tick(SystemTime::UNIX_EPOCH + Duration::from_secs(2000))
        .to_text();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            format!(
                "system.cpu.time{{cpu=\"cpu0\",state=\"user\"}} {} s",
                200.0 / ticks
            )
            .as_str(),
            "system.cpu.time{cpu=\"cpu0\",state=\"nice\"} 0 s",
            &format!(
                "system.cpu.time{{cpu=\"cpu0\",state=\"system\"}} {} s",
                100.0 / ticks
            ),
            &format!(
                "system.cpu.time{{cpu=\"cpu0\",state=\"idle\"}} {} s",
                700.0 / ticks
            ),
            "system.cpu.time{cpu=\"cpu0\",state=\"wait\"} 0 s",
            "system.cpu.time{cpu=\"cpu0\",state=\"interrupt\"} 0 s",
            "system.cpu.time{cpu=\"cpu0\",state=\"softirq\"} 0 s",
            "system.cpu.time{cpu=\"cpu0\",state=\"steal\"} 0 s",
            "system.cpu.logical.count 1 {cpu}",
            "system.cpu.load_average.1m 0.5 {thread}",
            "system.cpu.load_average.5m 0.25 {thread}",
            "system.cpu.load_average.15m 0.1 {thread}",
            "system.memory.usage{state=\"used\"} 512000 By",
            "system.memory.usage{state=\"free\"} 102400 By",
            "system.memory.usage{state=\"buffered\"} 51200 By",
            "system.memory.usage{state=\"cached\"} 358400 By",
            "system.memory.limit 1024000 By",
            "system.linux.memory.available 614400 By",
            "system.paging.usage{device=\"/dev/sdb2\",state=\"used\"} 1048576 By",
            "system.paging.usage{device=\"/dev/sdb2\",state=\"free\"} 1048576 By",
        ]
    );
    assert!(text.contains("# resource service.instance.id=fake-host\n"));
    // Counters start at boot.
    let req = ExportMetricsServiceRequest::decode(agent.encode().as_slice()).unwrap();
    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) = &m.data else {
        panic!("system.cpu.time is a sum");
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 1000 * 1_000_000_000);
    assert_eq!(s.data_points[0].time_unix_nano, 2000 * 1_000_000_000);

    // A file the collector cannot parse skips that collector only.
    file("proc/loadavg", "garbage\n");
    let text = agent.tick(SystemTime::now()).to_text();
    assert!(!text.contains("load_average") && text.contains("system.memory.limit"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policies_override_and_fall_back_to_the_defaults() {
    let mut agent = Agent::new(&config(&["cpu", "memory"]), &host()).unwrap();
    let defaults = Applied {
        interval: Duration::from_secs(1),
        collectors: vec!["cpu".into(), "memory".into()],
        policy_version: 0,
    };
    let a = apply_policy(
        &mut agent,
        &defaults,
        &PolicyUpdate {
            version: 3,
            interval: Some(Duration::from_millis(10)),
            collectors: Some(vec!["load".into(), "gpu".into()]),
        },
    );
    assert_eq!(a.interval, Duration::from_millis(100), "clamped");
    assert_eq!(a.collectors, ["load"], "unknown names ignored");
    assert_eq!(agent.enabled(), ["load"]);
    let a = apply_policy(
        &mut agent,
        &defaults,
        &PolicyUpdate {
            version: 4,
            ..Default::default()
        },
    );
    assert_eq!(a.interval, Duration::from_secs(1));
    assert_eq!(a.collectors, ["cpu", "memory"]);
}

#[test]
fn the_loop_applies_a_policy_at_once_and_stops_on_request() {
    let cfg = Config {
        interval: Duration::from_secs(30),
        ..config(&["cpu", "load"])
    };
    let agent = Agent::new(&cfg, &host()).unwrap();
    let sink = MemorySink::new();
    let control = Control::new().unwrap();
    let loop_thread = {
        let (sink, control, cfg) = (sink.clone(), control.clone(), cfg.clone());
        std::thread::spawn(move || run_loop(agent, &cfg, sink, control))
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.metrics().len() < n {
            assert!(Instant::now() < deadline, "no batch {n} within 5s");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(1);
    let started = Instant::now();
    control.apply(PolicyUpdate {
        version: 1,
        interval: Some(Duration::from_millis(100)),
        collectors: Some(vec!["load".into()]),
    });
    // The first tick after a 30 s one: the new interval applies at once.
    wait_for(3);
    assert!(started.elapsed() < Duration::from_secs(2));
    let last = sink.metrics().pop().unwrap();
    let names: Vec<&str> = last.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "system.cpu.load_average.1m",
            "system.cpu.load_average.5m",
            "system.cpu.load_average.15m"
        ]
    );
    let applied = control.applied().unwrap();
    assert_eq!(
        (applied.policy_version, applied.interval),
        (1, Duration::from_millis(100))
    );
    let stop = Instant::now();
    control.stop();
    loop_thread.join().unwrap().unwrap();
    assert!(stop.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_steady_tick_reuses_the_batch() {
    // Collectors whose metrics are there every tick (cpu's utilization
    // needs CPU time to pass between ticks).
    let mut agent = Agent::new(
        &config(&["load", "memory", "disk", "filesystem", "network"]),
        &host(),
    )
    .unwrap();
    agent.tick(SystemTime::now());
    let first = agent.batch().written().as_ptr();
    for _ in 0..5 {
        agent.tick(SystemTime::now());
    }
    assert_eq!(agent.batch().written().as_ptr(), first);
}
