//! `cpu`: /proc/stat.
//!
//! - `system.cpu.time{cpu,state}` (s, cumulative): per logical CPU, states
//!   `user`, `nice`, `system`, `idle`, `wait` (iowait), `interrupt` (irq),
//!   `softirq`, `steal`. Guest time is already inside `user`/`nice`.
//! - `system.cpu.utilization{state}` (1, gauge): the whole machine's share
//!   of each state between the last two ticks (from the second tick on).
//! - `system.cpu.logical.count` ({cpu}, gauge).

use super::{ticks_to_seconds, Collector, Ctx};
use crate::batch::{Attr, Desc, Kind};
use crate::procfs::Roots;

const TIME: Desc = Desc {
    name: "system.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    description: "Seconds each logical CPU spent in each mode.",
};
const UTILIZATION: Desc = Desc {
    name: "system.cpu.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "Share of CPU time in each mode since the previous collection, all CPUs together.",
};
const COUNT: Desc = Desc {
    name: "system.cpu.logical.count",
    unit: "{cpu}",
    kind: Kind::Gauge,
    description: "Number of logical CPUs.",
};

/// The states of /proc/stat's columns, in column order.
pub const STATES: [&str; 8] = [
    "user",
    "nice",
    "system",
    "idle",
    "wait",
    "interrupt",
    "softirq",
    "steal",
];

/// One `cpu…` line of /proc/stat: its name (`cpu` for the total) and the
/// ticks of the eight states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLine<'a> {
    pub name: &'a str,
    pub ticks: [u64; 8],
}

/// The `cpu` lines of /proc/stat, the total first.
pub fn parse_cpu_lines(text: &str) -> impl Iterator<Item = CpuLine<'_>> {
    text.lines()
        .take_while(|l| l.starts_with("cpu"))
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let name = fields.next()?;
            let mut ticks = [0u64; 8];
            for t in ticks.iter_mut() {
                // Old kernels have fewer columns; missing ones are zero.
                *t = match fields.next() {
                    Some(f) => f.parse().ok()?,
                    None => 0,
                };
            }
            Some(CpuLine { name, ticks })
        })
}

/// `btime` of /proc/stat: when the machine booted, in Unix seconds.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Each state's share of the ticks between `prev` and `now`.
pub fn utilization(prev: &[u64; 8], now: &[u64; 8]) -> Option<[f64; 8]> {
    let mut delta = [0u64; 8];
    for i in 0..8 {
        delta[i] = now[i].saturating_sub(prev[i]);
    }
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    Some(delta.map(|d| d as f64 / total as f64))
}

pub struct CpuCollector {
    path: std::path::PathBuf,
    prev_total: Option<[u64; 8]>,
}

impl CpuCollector {
    pub fn new(roots: Roots) -> Self {
        CpuCollector {
            path: roots.path("/proc/stat"),
            prev_total: None,
        }
    }
}

impl Collector for CpuCollector {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        let text = ctx.reader.read(&self.path)?;
        let start = ctx.boot_ns;
        let mut total = None;
        let mut count = 0u64;
        {
            let mut m = ctx.out.metric(&TIME);
            for line in parse_cpu_lines(text) {
                if line.name == "cpu" {
                    total = Some(line.ticks);
                    continue;
                }
                count += 1;
                for (state, ticks) in STATES.iter().zip(line.ticks) {
                    m.point(
                        &[("cpu", Attr::Str(line.name)), ("state", Attr::Str(state))],
                        ticks_to_seconds(ticks),
                        start,
                    );
                }
            }
        }
        if let (Some(prev), Some(now)) = (self.prev_total, total) {
            if let Some(shares) = utilization(&prev, &now) {
                let mut m = ctx.out.metric(&UTILIZATION);
                for (state, share) in STATES.iter().zip(shares) {
                    m.point(&[("state", Attr::Str(state))], share, 0);
                }
            }
        }
        self.prev_total = total.or(self.prev_total);
        ctx.out.metric(&COUNT).point(&[], count, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
cpu  1041682 65095 121137 800233 14994 0 3669 1052 0 0
cpu0 508733 31508 58527 418971 4047 0 1614 535 0 0
cpu1 532948 33586 62610 381261 10946 7 2055 517 0 0
intr 75380042 0 9 0 0 0 0 0 0 0 0 0 0 0
ctxt 148234592
btime 1763957916
processes 412930
procs_running 2
procs_blocked 0
softirq 33097372 2 9339287 3 4297 0 0 1364 12135019 0 11355004
";

    #[test]
    fn parses_the_total_and_each_cpu() {
        let lines: Vec<_> = parse_cpu_lines(SAMPLE).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].name, "cpu");
        assert_eq!(
            lines[0].ticks,
            [1041682, 65095, 121137, 800233, 14994, 0, 3669, 1052]
        );
        assert_eq!(lines[2].name, "cpu1");
        assert_eq!(lines[2].ticks[5], 7, "irq is the sixth column");
        assert_eq!(parse_boot_time(SAMPLE), Some(1763957916));
    }

    #[test]
    fn short_lines_of_old_kernels_pad_with_zeros() {
        let lines: Vec<_> = parse_cpu_lines("cpu 1 2 3 4\ncpu0 1 2 3 4\n").collect();
        assert_eq!(lines[1].ticks, [1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(parse_cpu_lines("cpu0 1 x 3\n").count(), 0);
    }

    #[test]
    fn utilization_is_each_states_share_of_the_interval() {
        let prev = [100, 0, 50, 800, 0, 0, 0, 0];
        let now = [150, 0, 75, 900, 0, 0, 0, 0];
        let u = utilization(&prev, &now).unwrap();
        assert_eq!(u[0], 50.0 / 175.0);
        assert_eq!(u[3], 100.0 / 175.0);
        assert!((u.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(utilization(&now, &now), None);
    }
}
