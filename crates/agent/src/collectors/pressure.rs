//! `pressure`: Linux pressure stall information, /proc/pressure/{cpu,memory,io}
//! (kernels from 4.20 with PSI enabled; nothing is reported without them).
//!
//! PSI is not in the OpenTelemetry conventions yet; the names follow their
//! style, with `resource` (`cpu`, `memory`, `io`) and `stall` (`some`: at
//! least one task stalled, `full`: all non-idle tasks stalled):
//!
//! - `system.pressure.stall_time{resource,stall}` (s, cumulative).
//! - `system.pressure.avg10{resource,stall}` (1, gauge): the share of the
//!   last 10 seconds spent stalled (the kernel's `avg10` / 100).

use std::path::PathBuf;

use super::{Collector, Ctx};
use crate::batch::{Attr, Desc, Kind};
use crate::procfs::Roots;

const STALL_TIME: Desc = Desc {
    name: "system.pressure.stall_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Seconds tasks were stalled waiting for each resource.",
};
const AVG10: Desc = Desc {
    name: "system.pressure.avg10",
    unit: "1",
    kind: Kind::Gauge,
    description: "Share of the last 10 seconds tasks were stalled waiting for each resource.",
};

const RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

/// One line of a /proc/pressure file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure<'a> {
    /// `some` or `full`.
    pub stall: &'a str,
    /// avg10 as a share (0 to 1).
    pub avg10: f64,
    /// Total stall time in seconds.
    pub total_seconds: f64,
}

/// The `some` and `full` lines of a /proc/pressure file.
pub fn parse_pressure(text: &str) -> impl Iterator<Item = Pressure<'_>> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let stall = f.next()?;
        let (mut avg10, mut total) = (None, None);
        for kv in f {
            match kv.split_once('=') {
                Some(("avg10", v)) => avg10 = v.parse::<f64>().ok(),
                Some(("total", v)) => total = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        Some(Pressure {
            stall,
            avg10: avg10? / 100.0,
            total_seconds: total? as f64 / 1e6,
        })
    })
}

pub struct PressureCollector {
    paths: [PathBuf; 3],
    /// This tick's lines (reused): resource index, stall, total seconds,
    /// avg10.
    lines: Vec<(usize, &'static str, f64, f64)>,
}

impl PressureCollector {
    pub fn new(roots: Roots) -> Self {
        PressureCollector {
            paths: RESOURCES.map(|r| roots.path(&format!("/proc/pressure/{r}"))),
            lines: Vec::new(),
        }
    }
}

impl Collector for PressureCollector {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        self.lines.clear();
        for (i, path) in self.paths.iter().enumerate() {
            // Absent without PSI; EOPNOTSUPP when disabled at boot.
            let Ok(text) = ctx.reader.read(path) else {
                continue;
            };
            for p in parse_pressure(text) {
                let stall = match p.stall {
                    "some" => "some",
                    "full" => "full",
                    _ => continue,
                };
                self.lines.push((i, stall, p.total_seconds, p.avg10));
            }
        }
        {
            let mut m = ctx.out.metric(&STALL_TIME);
            for &(i, stall, total, _) in &self.lines {
                let attrs = [
                    ("resource", Attr::Str(RESOURCES[i])),
                    ("stall", Attr::Str(stall)),
                ];
                m.point(&attrs, total, ctx.boot_ns);
            }
        }
        let mut m = ctx.out.metric(&AVG10);
        for &(i, stall, _, avg10) in &self.lines {
            let attrs = [
                ("resource", Attr::Str(RESOURCES[i])),
                ("stall", Attr::Str(stall)),
            ];
            m.point(&attrs, avg10, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let text = "some avg10=0.53 avg60=3.36 avg300=11.63 total=1788693633\n\
                    full avg10=12.50 avg60=0.00 avg300=0.00 total=250000\n";
        let p: Vec<_> = parse_pressure(text).collect();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].stall, "some");
        assert_eq!(p[0].avg10, 0.0053);
        assert_eq!(p[0].total_seconds, 1788.693633);
        assert_eq!(p[1].stall, "full");
        assert_eq!(p[1].avg10, 0.125);
        assert_eq!(p[1].total_seconds, 0.25);
    }

    #[test]
    fn skips_lines_without_the_fields() {
        assert_eq!(parse_pressure("some avg60=1.00\n\n").count(), 0);
    }
}
