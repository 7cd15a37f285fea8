//! `memory`: /proc/meminfo and /proc/swaps.
//!
//! - `system.memory.usage{state}` (By): `used`, `free`, `buffered`,
//!   `cached`, which add up to the total. As in the hostmetrics receiver
//!   (and psutil), `cached` includes reclaimable slab, and `used` is the
//!   rest: total - free - buffers - cached.
//! - `system.memory.limit` (By): MemTotal.
//! - `system.linux.memory.available` (By): MemAvailable, the kernel's
//!   estimate of what can be allocated without swapping.
//! - `system.paging.usage{device,state}` (By): `used` and `free` per swap
//!   device.

use super::{Collector, Ctx};
use crate::batch::{Attr, Desc, Kind};
use crate::procfs::Roots;

const USAGE: Desc = Desc {
    name: "system.memory.usage",
    unit: "By",
    kind: Kind::UpDown,
    description: "Bytes of memory in use, by state.",
};
const LIMIT: Desc = Desc {
    name: "system.memory.limit",
    unit: "By",
    kind: Kind::UpDown,
    description: "Total bytes of memory.",
};
const AVAILABLE: Desc = Desc {
    name: "system.linux.memory.available",
    unit: "By",
    kind: Kind::UpDown,
    description: "Bytes of memory available for new allocations without swapping.",
};
const PAGING: Desc = Desc {
    name: "system.paging.usage",
    unit: "By",
    kind: Kind::UpDown,
    description: "Bytes of swap space, by device and state.",
};

/// The fields of /proc/meminfo the collector uses, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: Option<u64>,
    pub buffers: u64,
    pub cached: u64,
    pub s_reclaimable: u64,
}

impl MemInfo {
    /// Page cache plus reclaimable slab, as `cached` is reported.
    pub fn cached_total(&self) -> u64 {
        self.cached + self.s_reclaimable
    }

    /// What is neither free, nor buffers, nor cache. Where that comes out
    /// negative (some containers), total - free.
    pub fn used(&self) -> u64 {
        let rest = self.free + self.buffers + self.cached_total();
        if rest > self.total {
            self.total.saturating_sub(self.free)
        } else {
            self.total - rest
        }
    }

    /// MemAvailable, or on kernels before 3.14 free + buffers + cache.
    pub fn available(&self) -> u64 {
        self.available
            .unwrap_or(self.free + self.buffers + self.cached_total())
    }
}

/// /proc/meminfo; `None` without MemTotal.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut m = MemInfo::default();
    let mut has_total = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut f = rest.split_ascii_whitespace();
        let Some(Ok(v)) = f.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = if f.next() == Some("kB") { v * 1024 } else { v };
        match key {
            "MemTotal" => {
                m.total = bytes;
                has_total = true;
            }
            "MemFree" => m.free = bytes,
            "MemAvailable" => m.available = Some(bytes),
            "Buffers" => m.buffers = bytes,
            "Cached" => m.cached = bytes,
            "SReclaimable" => m.s_reclaimable = bytes,
            _ => {}
        }
    }
    has_total.then_some(m)
}

/// One swap device of /proc/swaps: name, size and used bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap<'a> {
    pub device: &'a str,
    pub size: u64,
    pub used: u64,
}

/// The swap devices of /proc/swaps (sizes there are in KiB).
pub fn parse_swaps(text: &str) -> impl Iterator<Item = Swap<'_>> {
    text.lines().skip(1).filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let device = f.next()?;
        let _kind = f.next()?;
        let size: u64 = f.next()?.parse().ok()?;
        let used: u64 = f.next()?.parse().ok()?;
        Some(Swap {
            device,
            size: size * 1024,
            used: used * 1024,
        })
    })
}

pub struct MemoryCollector {
    meminfo: std::path::PathBuf,
    swaps: std::path::PathBuf,
}

impl MemoryCollector {
    pub fn new(roots: Roots) -> Self {
        MemoryCollector {
            meminfo: roots.path("/proc/meminfo"),
            swaps: roots.path("/proc/swaps"),
        }
    }
}

impl Collector for MemoryCollector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        let text = ctx.reader.read(&self.meminfo)?;
        let m = parse_meminfo(text).ok_or_else(|| super::load::bad_data("/proc/meminfo"))?;
        {
            let mut w = ctx.out.metric(&USAGE);
            for (state, v) in [
                ("used", m.used()),
                ("free", m.free),
                ("buffered", m.buffers),
                ("cached", m.cached_total()),
            ] {
                w.point(&[("state", Attr::Str(state))], v, 0);
            }
        }
        ctx.out.metric(&LIMIT).point(&[], m.total, 0);
        ctx.out.metric(&AVAILABLE).point(&[], m.available(), 0);
        // No /proc/swaps (a kernel without swap support) is no swap.
        if let Ok(text) = ctx.reader.read(&self.swaps) {
            let mut w = ctx.out.metric(&PAGING);
            for s in parse_swaps(text) {
                let free = s.size.saturating_sub(s.used);
                for (state, v) in [("used", s.used), ("free", free)] {
                    w.point(
                        &[("device", Attr::Str(s.device)), ("state", Attr::Str(state))],
                        v,
                        0,
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "\
MemTotal:       24669048 kB
MemFree:        13066632 kB
MemAvailable:   21557868 kB
Buffers:          432168 kB
Cached:          7609028 kB
SwapCached:            0 kB
Active:          4093388 kB
SReclaimable:     548880 kB
SUnreclaim:       111008 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn parses_meminfo_in_bytes() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total, 24669048 * 1024);
        assert_eq!(m.available(), 21557868 * 1024);
        assert_eq!(m.cached_total(), (7609028 + 548880) * 1024);
        assert_eq!(
            m.used(),
            (24669048 - 13066632 - 432168 - 7609028 - 548880) * 1024
        );
        // The states add up to the total.
        assert_eq!(m.used() + m.free + m.buffers + m.cached_total(), m.total);
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn old_kernels_and_odd_containers() {
        let m = parse_meminfo("MemTotal: 100 kB\nMemFree: 90 kB\nBuffers: 20 kB\nCached: 30 kB\n")
            .unwrap();
        assert_eq!(m.available(), 140 * 1024, "no MemAvailable: free + cache");
        assert_eq!(m.used(), 10 * 1024, "negative rest: total - free");
    }

    #[test]
    fn parses_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/zram0                              partition\t4194300\t\t1024\t\t100\n\
                    /swap\\040file                            file\t\t1000\t\t0\t\t-2\n";
        let swaps: Vec<_> = parse_swaps(text).collect();
        assert_eq!(
            swaps,
            [
                Swap {
                    device: "/dev/zram0",
                    size: 4194300 * 1024,
                    used: 1024 * 1024
                },
                Swap {
                    device: "/swap\\040file",
                    size: 1000 * 1024,
                    used: 0
                },
            ]
        );
        assert_eq!(parse_swaps("Filename Type Size Used Priority\n").count(), 0);
    }
}
