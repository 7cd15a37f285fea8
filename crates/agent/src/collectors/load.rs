//! `load`: /proc/loadavg.
//!
//! `system.cpu.load_average.1m`, `.5m` and `.15m` ({thread}, gauges): the
//! kernel's exponentially damped run-queue length.

use super::{Collector, Ctx};
use crate::batch::{Desc, Kind};
use crate::procfs::Roots;

const LOADS: [Desc; 3] = [
    Desc {
        name: "system.cpu.load_average.1m",
        unit: "{thread}",
        kind: Kind::Gauge,
        description: "Average run-queue length over the last minute.",
    },
    Desc {
        name: "system.cpu.load_average.5m",
        unit: "{thread}",
        kind: Kind::Gauge,
        description: "Average run-queue length over the last 5 minutes.",
    },
    Desc {
        name: "system.cpu.load_average.15m",
        unit: "{thread}",
        kind: Kind::Gauge,
        description: "Average run-queue length over the last 15 minutes.",
    },
];

/// The three load averages of /proc/loadavg.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_ascii_whitespace();
    let mut out = [0.0; 3];
    for v in out.iter_mut() {
        *v = f.next()?.parse().ok()?;
    }
    Some(out)
}

pub struct LoadCollector {
    path: std::path::PathBuf,
}

impl LoadCollector {
    pub fn new(roots: Roots) -> Self {
        LoadCollector {
            path: roots.path("/proc/loadavg"),
        }
    }
}

impl Collector for LoadCollector {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        let text = ctx.reader.read(&self.path)?;
        let loads = parse_loadavg(text).ok_or_else(|| bad_data("/proc/loadavg"))?;
        for (desc, v) in LOADS.iter().zip(loads) {
            ctx.out.metric(desc).point(&[], v, 0);
        }
        Ok(())
    }
}

/// The error of a file whose text is not what the kernel writes.
pub(crate) fn bad_data(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{what} is not in the expected format"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_averages() {
        assert_eq!(
            parse_loadavg("1.23 1.50 1.44 1/85 4806\n"),
            Some([1.23, 1.50, 1.44])
        );
        assert_eq!(parse_loadavg("1.23 x 1.44 1/85 4806\n"), None);
        assert_eq!(parse_loadavg(""), None);
    }
}
