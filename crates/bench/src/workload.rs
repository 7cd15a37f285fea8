//! Deterministic workloads and their remote-write request bodies.
//!
//! Every series owns its own PRNG derived from the run seed and its index, so
//! its values are the same however the series are split into requests and
//! however many threads encode them.

use sonde_model::{Labels, Sample, Series};

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// TSBS "cpu-only": 10 tagged CPU gauges per host, every 10 s.
    Tsbs,
    /// node_exporter-like: a few hundred counters and gauges per host, every 15 s.
    Node,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Tsbs => "tsbs-cpu-only",
            WorkloadKind::Node => "node-exporter",
        }
    }

    pub fn interval_ms(self) -> i64 {
        match self {
            WorkloadKind::Tsbs => 10_000,
            WorkloadKind::Node => 15_000,
        }
    }
}

/// How a series' values evolve from one point to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// TSBS's CPU field: a random walk with N(0, 1) steps clamped to
    /// [0, 100], reported truncated to an integer (TSBS's `ToPointAllInt64`).
    CpuWalk,
    /// A monotonic counter growing by `mean_step` per point on average, in
    /// multiples of `quantum`. A `mean_step` below `quantum` makes a sparse
    /// counter (errors, drops) that mostly stays flat.
    Counter { mean_step: f64, quantum: f64 },
    /// A gauge doing a random walk of steps up to `step` within [min, max],
    /// rounded to `quantum`; `step` 0 makes it constant.
    Gauge {
        start: f64,
        step: f64,
        quantum: f64,
        min: f64,
        max: f64,
    },
}

#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub labels: Labels,
    pub shape: Shape,
    /// Offset of this series' points from the interval grid, in ms: its
    /// host's scrape phase, as Prometheus spreads scrapes over the interval.
    /// Never a whole second, so no point falls exactly on a query window's
    /// edge (where Prometheus 2 and 3 disagree about inclusion).
    pub phase_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub hosts: usize,
    pub series: Vec<SeriesSpec>,
    /// Timestamp of the first point, aligned to a minute.
    pub start_ms: i64,
    pub interval_ms: i64,
    /// Points per series.
    pub ticks: usize,
    pub seed: u64,
}

impl Workload {
    /// A workload of `hosts` hosts over `[start_ms, end_ms)`.
    pub fn new(
        kind: WorkloadKind,
        hosts: usize,
        start_ms: i64,
        end_ms: i64,
        seed: u64,
    ) -> Workload {
        let interval_ms = kind.interval_ms();
        let ticks = ((end_ms - start_ms) / interval_ms).max(1) as usize;
        let series = match kind {
            WorkloadKind::Tsbs => tsbs_series(hosts, seed),
            WorkloadKind::Node => node_series(hosts, seed),
        };
        Workload {
            kind,
            hosts,
            series,
            start_ms,
            interval_ms,
            ticks,
            seed,
        }
    }

    pub fn num_samples(&self) -> u64 {
        self.series.len() as u64 * self.ticks as u64
    }

    /// One past the last point's timestamp.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.ticks as i64 * self.interval_ms
    }

    fn generator(&self, index: usize) -> SeriesGen {
        let spec = &self.series[index];
        let mut rng = Rng::derive(self.seed, index as u64);
        let value = match spec.shape {
            Shape::CpuWalk => rng.f64() * 100.0,
            // Counters start at different points, as on hosts with different uptimes.
            Shape::Counter { mean_step, quantum } => {
                round_to(mean_step * rng.f64() * 100_000.0, quantum)
            }
            Shape::Gauge { start, .. } => start,
        };
        SeriesGen {
            rng,
            value,
            shape: spec.shape,
        }
    }
}

/// The state of one series' value sequence.
struct SeriesGen {
    rng: Rng,
    value: f64,
    shape: Shape,
}

impl SeriesGen {
    /// The next point's value.
    fn next(&mut self) -> f64 {
        match self.shape {
            Shape::CpuWalk => {
                let out = self.value.trunc();
                self.value = (self.value + self.rng.normal()).clamp(0.0, 100.0);
                out
            }
            Shape::Counter { mean_step, quantum } => {
                let out = self.value;
                let step = if mean_step < quantum {
                    if self.rng.f64() < mean_step / quantum {
                        quantum
                    } else {
                        0.0
                    }
                } else {
                    round_to(mean_step * (0.5 + self.rng.f64()), quantum)
                };
                // Re-round: adding decimals in binary drifts (0.1 + 0.2), while
                // node_exporter's values are exact decimals (ticks / 100).
                self.value = round_to(self.value + step, quantum);
                out
            }
            Shape::Gauge {
                step,
                quantum,
                min,
                max,
                ..
            } => {
                let out = self.value;
                if step > 0.0 {
                    let delta = (self.rng.f64() * 2.0 - 1.0) * step;
                    self.value = round_to((self.value + delta).clamp(min, max), quantum);
                }
                out
            }
        }
    }
}

fn round_to(v: f64, quantum: f64) -> f64 {
    if quantum >= 1.0 {
        (v / quantum).round() * quantum
    } else {
        // Decimal quanta (0.01) are rounded in decimal so values print like
        // node_exporter's ("123.45"), not as 123.45000000000002.
        let scale = (1.0 / quantum).round();
        (v * scale).round() / scale
    }
}

const TSBS_REGIONS: [(&str, &[&str]); 9] = [
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];

pub const TSBS_METRICS: [&str; 10] = [
    "cpu_usage_user",
    "cpu_usage_system",
    "cpu_usage_idle",
    "cpu_usage_nice",
    "cpu_usage_iowait",
    "cpu_usage_irq",
    "cpu_usage_softirq",
    "cpu_usage_steal",
    "cpu_usage_guest",
    "cpu_usage_guest_nice",
];

/// TSBS's host tags, drawn from TSBS's choice lists.
fn tsbs_host_tags(host: usize, seed: u64) -> Vec<(&'static str, String)> {
    let mut r = Rng::derive(seed ^ 0x7475_6273, host as u64);
    let (region, dcs) = *r.choose(&TSBS_REGIONS);
    vec![
        ("hostname", format!("host_{host}")),
        ("region", region.to_string()),
        ("datacenter", r.choose(dcs).to_string()),
        ("rack", r.below(100).to_string()),
        (
            "os",
            r.choose(&["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"])
                .to_string(),
        ),
        ("arch", r.choose(&["x64", "x86"]).to_string()),
        ("team", r.choose(&["SF", "NYC", "LON", "CHI"]).to_string()),
        ("service", r.below(20).to_string()),
        ("service_version", r.below(2).to_string()),
        (
            "service_environment",
            r.choose(&["production", "staging", "test"]).to_string(),
        ),
    ]
}

fn tsbs_series(hosts: usize, seed: u64) -> Vec<SeriesSpec> {
    let mut out = Vec::with_capacity(hosts * TSBS_METRICS.len());
    for host in 0..hosts {
        let tags = tsbs_host_tags(host, seed);
        let phase_ms = scrape_phase(seed, host, WorkloadKind::Tsbs.interval_ms());
        for metric in TSBS_METRICS {
            let pairs =
                std::iter::once(("__name__", metric.to_string())).chain(tags.iter().cloned());
            out.push(SeriesSpec {
                labels: Labels::from_pairs(pairs),
                shape: Shape::CpuWalk,
                phase_ms,
            });
        }
    }
    out
}

/// A series of one node_exporter host: name, labels besides the host's, shape.
type HostSeries = (String, Vec<(&'static str, String)>, Shape);

/// Series of one node_exporter-like host, without the host labels.
/// Counter steps are per 15 s scrape.
fn node_host_series() -> Vec<HostSeries> {
    let counter = |mean_step: f64, quantum: f64| Shape::Counter { mean_step, quantum };
    let constant = |v: f64| Shape::Gauge {
        start: v,
        step: 0.0,
        quantum: 1.0,
        min: v,
        max: v,
    };
    let gib = 1024.0 * 1024.0 * 1024.0;
    let mut out = Vec::new();
    let mut add = |name: &str, labels: Vec<(&'static str, String)>, shape: Shape| {
        out.push((name.to_string(), labels, shape));
    };
    // CPU seconds in USER_HZ ticks (0.01 s), 8 CPUs, shares of 15 s.
    let modes = [
        ("idle", 0.70),
        ("iowait", 0.03),
        ("irq", 0.01),
        ("nice", 0.005),
        ("softirq", 0.02),
        ("steal", 0.005),
        ("system", 0.08),
        ("user", 0.15),
    ];
    for cpu in 0..8 {
        for (mode, share) in modes {
            add(
                "node_cpu_seconds_total",
                vec![("cpu", cpu.to_string()), ("mode", mode.into())],
                counter(15.0 * share, 0.01),
            );
        }
        for mode in ["nice", "user"] {
            add(
                "node_cpu_guest_seconds_total",
                vec![("cpu", cpu.to_string()), ("mode", mode.into())],
                constant(0.0),
            );
        }
    }
    for (device, scale) in [("eth0", 1.0), ("eth1", 0.2), ("lo", 0.05), ("docker0", 0.1)] {
        let d = || vec![("device", device.to_string())];
        add(
            "node_network_receive_bytes_total",
            d(),
            counter(15.0 * 2e6 * scale, 1.0),
        );
        add(
            "node_network_transmit_bytes_total",
            d(),
            counter(15.0 * 1e6 * scale, 1.0),
        );
        add(
            "node_network_receive_packets_total",
            d(),
            counter(15.0 * 2e3 * scale, 1.0),
        );
        add(
            "node_network_transmit_packets_total",
            d(),
            counter(15.0 * 1.5e3 * scale, 1.0),
        );
        add("node_network_receive_errs_total", d(), counter(0.01, 1.0));
        add("node_network_transmit_errs_total", d(), counter(0.005, 1.0));
        add("node_network_receive_drop_total", d(), counter(0.05, 1.0));
        add("node_network_transmit_drop_total", d(), counter(0.0, 1.0));
        add("node_network_up", d(), constant(1.0));
        add(
            "node_network_mtu_bytes",
            d(),
            constant(if device == "lo" { 65536.0 } else { 1500.0 }),
        );
    }
    for (device, scale) in [("nvme0n1", 1.0), ("sda", 0.3), ("sdb", 0.05)] {
        let d = || vec![("device", device.to_string())];
        add(
            "node_disk_reads_completed_total",
            d(),
            counter(15.0 * 50.0 * scale, 1.0),
        );
        add(
            "node_disk_writes_completed_total",
            d(),
            counter(15.0 * 120.0 * scale, 1.0),
        );
        add(
            "node_disk_read_bytes_total",
            d(),
            counter(15.0 * 50.0 * 16384.0 * scale, 512.0),
        );
        add(
            "node_disk_written_bytes_total",
            d(),
            counter(15.0 * 120.0 * 8192.0 * scale, 512.0),
        );
        add(
            "node_disk_reads_merged_total",
            d(),
            counter(15.0 * 2.0 * scale, 1.0),
        );
        add(
            "node_disk_writes_merged_total",
            d(),
            counter(15.0 * 30.0 * scale, 1.0),
        );
        add(
            "node_disk_read_time_seconds_total",
            d(),
            counter(15.0 * 0.02 * scale, 0.001),
        );
        add(
            "node_disk_write_time_seconds_total",
            d(),
            counter(15.0 * 0.08 * scale, 0.001),
        );
        add(
            "node_disk_io_time_seconds_total",
            d(),
            counter(15.0 * 0.05 * scale, 0.001),
        );
        add(
            "node_disk_io_time_weighted_seconds_total",
            d(),
            counter(15.0 * 0.1 * scale, 0.001),
        );
        add(
            "node_disk_io_now",
            d(),
            Shape::Gauge {
                start: 0.0,
                step: 2.0,
                quantum: 1.0,
                min: 0.0,
                max: 8.0,
            },
        );
    }
    let filesystems = [
        ("/", "/dev/nvme0n1p2", "ext4", 200.0),
        ("/boot", "/dev/nvme0n1p1", "vfat", 0.5),
        ("/var", "/dev/sda1", "xfs", 500.0),
        ("/home", "/dev/sdb1", "ext4", 1000.0),
        ("/run", "tmpfs", "tmpfs", 3.2),
    ];
    for (mount, device, fstype, size_gib) in filesystems {
        let l = || {
            vec![
                ("device", device.to_string()),
                ("fstype", fstype.to_string()),
                ("mountpoint", mount.to_string()),
            ]
        };
        let size = size_gib * gib;
        let avail = Shape::Gauge {
            start: size * 0.4,
            step: 1e6,
            quantum: 4096.0,
            min: 0.0,
            max: size,
        };
        add("node_filesystem_size_bytes", l(), constant(size));
        add("node_filesystem_avail_bytes", l(), avail);
        add("node_filesystem_free_bytes", l(), avail);
        add(
            "node_filesystem_files",
            l(),
            constant((size / 16384.0).round()),
        );
        add(
            "node_filesystem_files_free",
            l(),
            Shape::Gauge {
                start: size / 32768.0,
                step: 20.0,
                quantum: 1.0,
                min: 0.0,
                max: size / 16384.0,
            },
        );
        add("node_filesystem_readonly", l(), constant(0.0));
    }
    let total = 32.0 * gib;
    for (i, field) in [
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SwapCached",
        "Active",
        "Inactive",
        "Active_anon",
        "Inactive_anon",
        "Active_file",
        "Inactive_file",
        "Unevictable",
        "Mlocked",
        "SwapTotal",
        "SwapFree",
        "Dirty",
        "Writeback",
        "AnonPages",
        "Mapped",
        "Shmem",
        "KReclaimable",
        "Slab",
        "SReclaimable",
        "SUnreclaim",
        "KernelStack",
        "PageTables",
        "NFS_Unstable",
        "Bounce",
        "WritebackTmp",
        "CommitLimit",
        "Committed_AS",
        "VmallocTotal",
        "VmallocUsed",
        "VmallocChunk",
        "Percpu",
        "HardwareCorrupted",
        "AnonHugePages",
        "HugePages_Total",
        "Hugepagesize",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("node_memory_{field}_bytes");
        let shape = match *field {
            "MemTotal" | "SwapTotal" | "VmallocTotal" | "CommitLimit" | "Hugepagesize" => {
                constant(total)
            }
            "HardwareCorrupted" | "Bounce" | "NFS_Unstable" | "HugePages_Total" => constant(0.0),
            _ => {
                let start = total / (2.0 + i as f64);
                Shape::Gauge {
                    start,
                    step: start / 500.0,
                    quantum: 4096.0,
                    min: 0.0,
                    max: total,
                }
            }
        };
        add(&name, vec![], shape);
    }
    for (i, field) in [
        "pgfault",
        "pgmajfault",
        "pgpgin",
        "pgpgout",
        "pswpin",
        "pswpout",
        "oom_kill",
        "pgsteal_kswapd",
        "pgsteal_direct",
        "pgscan_kswapd",
        "pgscan_direct",
        "pgrefill",
        "pgactivate",
        "pgdeactivate",
        "pgfree",
        "pgalloc_normal",
        "numa_hit",
        "numa_miss",
        "thp_fault_alloc",
        "workingset_refault_file",
    ]
    .iter()
    .enumerate()
    {
        let mean = if !(4..=11).contains(&i) {
            15.0 * 1e4 / (1.0 + i as f64)
        } else {
            0.2
        };
        add(&format!("node_vmstat_{field}"), vec![], counter(mean, 1.0));
    }
    for (i, field) in [
        "Tcp_ActiveOpens",
        "Tcp_PassiveOpens",
        "Tcp_AttemptFails",
        "Tcp_EstabResets",
        "Tcp_InErrs",
        "Tcp_InSegs",
        "Tcp_OutSegs",
        "Tcp_RetransSegs",
        "Tcp_OutRsts",
        "Udp_InDatagrams",
        "Udp_OutDatagrams",
        "Udp_InErrors",
        "Udp_NoPorts",
        "Udp_RcvbufErrors",
        "Udp_SndbufErrors",
        "Icmp_InMsgs",
        "Icmp_OutMsgs",
        "Icmp_InErrors",
        "TcpExt_ListenOverflows",
        "TcpExt_SyncookiesSent",
    ]
    .iter()
    .enumerate()
    {
        let mean = if field.contains("Err") || field.contains("Fail") || field.starts_with("TcpExt")
        {
            0.05
        } else {
            15.0 * 500.0 / (1.0 + i as f64)
        };
        add(&format!("node_netstat_{field}"), vec![], counter(mean, 1.0));
    }
    let load = |start: f64| Shape::Gauge {
        start,
        step: 0.2,
        quantum: 0.01,
        min: 0.0,
        max: 16.0,
    };
    add("node_load1", vec![], load(1.5));
    add("node_load5", vec![], load(1.2));
    add("node_load15", vec![], load(1.0));
    add(
        "node_context_switches_total",
        vec![],
        counter(15.0 * 8000.0, 1.0),
    );
    add("node_intr_total", vec![], counter(15.0 * 5000.0, 1.0));
    add("node_forks_total", vec![], counter(15.0 * 10.0, 1.0));
    add(
        "node_procs_running",
        vec![],
        Shape::Gauge {
            start: 3.0,
            step: 2.0,
            quantum: 1.0,
            min: 1.0,
            max: 16.0,
        },
    );
    add(
        "node_procs_blocked",
        vec![],
        Shape::Gauge {
            start: 0.0,
            step: 1.0,
            quantum: 1.0,
            min: 0.0,
            max: 4.0,
        },
    );
    add("node_boot_time_seconds", vec![], constant(1.7e9));
    add("node_time_seconds", vec![], counter(15.0, 0.001));
    add(
        "node_entropy_available_bits",
        vec![],
        Shape::Gauge {
            start: 3000.0,
            step: 50.0,
            quantum: 1.0,
            min: 256.0,
            max: 4096.0,
        },
    );
    add(
        "node_filefd_allocated",
        vec![],
        Shape::Gauge {
            start: 5000.0,
            step: 30.0,
            quantum: 1.0,
            min: 1000.0,
            max: 20000.0,
        },
    );
    add(
        "node_sockstat_TCP_inuse",
        vec![],
        Shape::Gauge {
            start: 200.0,
            step: 5.0,
            quantum: 1.0,
            min: 0.0,
            max: 2000.0,
        },
    );
    out
}

fn node_series(hosts: usize, seed: u64) -> Vec<SeriesSpec> {
    let template = node_host_series();
    let mut out = Vec::with_capacity(hosts * template.len());
    for host in 0..hosts {
        // Addresses like a scrape target list: 10.<a>.<b>.<c>:9100.
        let instance = format!(
            "10.{}.{}.{}:9100",
            host / 65536 % 256,
            host / 256 % 256,
            host % 256
        );
        let phase_ms = scrape_phase(seed, host, WorkloadKind::Node.interval_ms());
        for (name, labels, shape) in &template {
            let pairs = [
                ("__name__", name.clone()),
                ("instance", instance.clone()),
                ("job", "node".into()),
            ]
            .into_iter()
            .chain(labels.iter().cloned());
            out.push(SeriesSpec {
                labels: Labels::from_pairs(pairs),
                shape: *shape,
                phase_ms,
            });
        }
    }
    out
}

/// A host's scrape phase in (0, interval), never a whole second.
fn scrape_phase(seed: u64, host: usize, interval_ms: i64) -> i64 {
    let phase =
        1 + Rng::derive(seed ^ 0x7068_6173, host as u64).below(interval_ms as usize - 1) as i64;
    if phase % 1000 == 0 {
        phase + 1
    } else {
        phase
    }
}

/// One pre-encoded remote-write body.
pub struct Request {
    pub body: Vec<u8>,
    pub samples: usize,
}

/// The whole workload as request bodies, split into lanes (one per client
/// thread). A series always travels in the same lane, and each lane is in
/// time order, so every system receives every series in order, as from
/// Prometheus' or vmagent's sharded remote write.
pub struct Plan {
    pub lanes: Vec<Vec<Request>>,
    pub samples: u64,
    pub body_bytes: u64,
}

/// Encodes the workload. Each request carries one point of each series of a
/// chunk (like a real remote-write shard, which sends one sample per series
/// per request); chunks hold at most `batch` series and their number is a
/// multiple of `lanes` so the lanes get equal work.
pub fn encode_plan(w: &Workload, lanes: usize, batch: usize, threads: usize) -> Plan {
    let lanes = lanes.max(1);
    let n = w.series.len();
    let per_lane = n.div_ceil(lanes * batch.max(1)).max(1);
    let chunks = lanes * per_lane;
    let chunk_size = n.div_ceil(chunks).max(1);
    let ranges: Vec<(usize, usize)> = (0..chunks)
        .map(|c| ((c * chunk_size).min(n), ((c + 1) * chunk_size).min(n)))
        .collect();
    let encoded = encode_chunks(w, &ranges, threads.max(1));
    let mut iters: Vec<_> = encoded.into_iter().map(|reqs| reqs.into_iter()).collect();
    let mut plan = Plan {
        lanes: (0..lanes).map(|_| Vec::new()).collect(),
        samples: 0,
        body_bytes: 0,
    };
    for _tick in 0..w.ticks {
        for (c, it) in iters.iter_mut().enumerate() {
            if let Some(req) = it.next() {
                plan.samples += req.samples as u64;
                plan.body_bytes += req.body.len() as u64;
                plan.lanes[c % lanes].push(req);
            }
        }
    }
    plan
}

/// Encodes each chunk's requests (one per tick), chunks spread over threads.
fn encode_chunks(w: &Workload, ranges: &[(usize, usize)], threads: usize) -> Vec<Vec<Request>> {
    let mut out: Vec<Vec<Request>> = (0..ranges.len()).map(|_| Vec::new()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..ranges.len())
                        .step_by(threads)
                        .map(|c| (c, encode_chunk(w, ranges[c])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (c, reqs) in h.join().expect("encoder thread panicked") {
                out[c] = reqs;
            }
        }
    });
    out
}

fn encode_chunk(w: &Workload, (from, to): (usize, usize)) -> Vec<Request> {
    if from == to {
        return Vec::new();
    }
    let mut gens: Vec<SeriesGen> = (from..to).map(|i| w.generator(i)).collect();
    let mut batch: Vec<Series> = (from..to)
        .map(|i| Series {
            labels: w.series[i].labels.clone(),
            samples: vec![Sample { t: 0, v: 0.0 }],
            histograms: Vec::new(),
        })
        .collect();
    (0..w.ticks)
        .map(|tick| {
            let t = w.start_ms + tick as i64 * w.interval_ms;
            for ((s, g), spec) in batch
                .iter_mut()
                .zip(gens.iter_mut())
                .zip(&w.series[from..to])
            {
                s.samples[0] = Sample {
                    t: t + spec.phase_ms,
                    v: g.next(),
                };
            }
            Request {
                body: sonde_ingest::remote_write::encode(&batch),
                samples: batch.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(plan: &Plan) -> Vec<Series> {
        plan.lanes
            .iter()
            .flatten()
            .flat_map(|r| sonde_ingest::remote_write::decode(&r.body).unwrap().series)
            .collect()
    }

    #[test]
    fn tsbs_counts_and_tags() {
        let w = Workload::new(WorkloadKind::Tsbs, 7, 0, 60_000, 42);
        assert_eq!(w.series.len(), 70);
        assert_eq!(w.ticks, 6);
        assert_eq!(w.num_samples(), 420);
        for s in &w.series {
            // __name__ plus TSBS's ten host tags.
            assert_eq!(s.labels.len(), 11, "{}", s.labels);
        }
        let plan = encode_plan(&w, 3, 10, 2);
        assert_eq!(plan.lanes.len(), 3);
        assert_eq!(plan.samples, 420);
        let series = decode_all(&plan);
        assert_eq!(series.iter().map(|s| s.samples.len()).sum::<usize>(), 420);
        for s in &series {
            let v = s.samples[0].v;
            assert!((0.0..=100.0).contains(&v) && v.fract() == 0.0, "{v}");
        }
    }

    #[test]
    fn same_seed_same_bodies_whatever_the_split() {
        let w = Workload::new(WorkloadKind::Node, 2, 0, 150_000, 7);
        let a = decode_all(&encode_plan(&w, 1, 1000, 1));
        let b = decode_all(&encode_plan(&w, 4, 50, 3));
        let key = |mut v: Vec<Series>| {
            v.sort_by(|x, y| (&x.labels, x.samples[0].t).cmp(&(&y.labels, y.samples[0].t)));
            v
        };
        assert_eq!(key(a), key(b));
        let other_seed = Workload::new(WorkloadKind::Node, 2, 0, 150_000, 8);
        assert_ne!(
            decode_all(&encode_plan(&w, 1, 1000, 1)),
            decode_all(&encode_plan(&other_seed, 1, 1000, 1))
        );
    }

    #[test]
    fn node_counters_only_grow_and_lanes_are_in_time_order() {
        let w = Workload::new(WorkloadKind::Node, 3, 0, 300_000, 1);
        let per_host = w.series.len() / 3;
        assert!((200..400).contains(&per_host), "{per_host} series per host");
        let plan = encode_plan(&w, 2, 100, 2);
        assert_eq!(plan.samples, w.num_samples());
        let mut last: std::collections::HashMap<Labels, Sample> = Default::default();
        for lane in &plan.lanes {
            for req in lane {
                for s in sonde_ingest::remote_write::decode(&req.body)
                    .unwrap()
                    .series
                {
                    let now = s.samples[0];
                    if let Some(prev) = last.insert(s.labels.clone(), now) {
                        assert!(now.t > prev.t, "{} out of order", s.labels);
                        if s.labels.metric_name().unwrap().ends_with("_total") {
                            assert!(now.v >= prev.v, "{} decreased", s.labels);
                        }
                    }
                }
            }
        }
        assert_eq!(last.len(), w.series.len());
        // CPU seconds are exact hundredths, as node_exporter reports them.
        for s in last
            .iter()
            .filter(|(l, _)| l.metric_name() == Some("node_cpu_seconds_total"))
        {
            let v = s.1.v;
            assert_eq!((v * 100.0).round() / 100.0, v, "{v}");
        }
    }
}
