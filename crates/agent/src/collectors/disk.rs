//! `disk`: /proc/diskstats, whole disks only unless configured (a
//! partition's I/O is also counted on its disk), without `loop*`, `ram*`
//! and `zram*` devices unless configured.
//!
//! - `system.disk.io{device,direction}` (By): sectors × 512 (the kernel's
//!   unit, whatever the device's sector size).
//! - `system.disk.operations{device,direction}` ({operations}): completed.
//! - `system.disk.merged{device,direction}` ({operations}).
//! - `system.disk.operation_time{device,direction}` (s).
//! - `system.disk.io_time{device}` (s): time the device was busy.
//! - `system.disk.weighted_io_time{device}` (s).
//! - `system.disk.pending_operations{device}` ({operations}, up-down).

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Collector, Ctx};
use crate::batch::{Attr, Desc, Kind, MetricWriter, Value};
use crate::procfs::Roots;

const IO: Desc = Desc {
    name: "system.disk.io",
    unit: "By",
    kind: Kind::Counter,
    description: "Bytes read from and written to each disk.",
};
const OPERATIONS: Desc = Desc {
    name: "system.disk.operations",
    unit: "{operations}",
    kind: Kind::Counter,
    description: "Completed reads and writes of each disk.",
};
const MERGED: Desc = Desc {
    name: "system.disk.merged",
    unit: "{operations}",
    kind: Kind::Counter,
    description: "Reads and writes merged with adjacent ones before being issued.",
};
const OPERATION_TIME: Desc = Desc {
    name: "system.disk.operation_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Seconds spent by reads and by writes, summed over all of them.",
};
const IO_TIME: Desc = Desc {
    name: "system.disk.io_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Seconds each disk had I/O in flight.",
};
const WEIGHTED_IO_TIME: Desc = Desc {
    name: "system.disk.weighted_io_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Seconds of I/O in flight weighted by the number of operations in flight.",
};
const PENDING: Desc = Desc {
    name: "system.disk.pending_operations",
    unit: "{operations}",
    kind: Kind::UpDown,
    description: "Operations in flight on each disk.",
};

/// The bytes of one /proc/diskstats sector.
const SECTOR: u64 = 512;

/// One line of /proc/diskstats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat<'a> {
    pub device: &'a str,
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_flight: u64,
    pub io_ms: u64,
    pub weighted_ms: u64,
}

/// The lines of /proc/diskstats (14 fields, or more on newer kernels).
pub fn parse_diskstats(text: &str) -> impl Iterator<Item = DiskStat<'_>> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let _major = f.next()?;
        let _minor = f.next()?;
        let device = f.next()?;
        let mut v = [0u64; 11];
        for x in v.iter_mut() {
            *x = f.next()?.parse().ok()?;
        }
        Some(DiskStat {
            device,
            reads: v[0],
            reads_merged: v[1],
            sectors_read: v[2],
            read_ms: v[3],
            writes: v[4],
            writes_merged: v[5],
            sectors_written: v[6],
            write_ms: v[7],
            in_flight: v[8],
            io_ms: v[9],
            weighted_ms: v[10],
        })
    })
}

/// Memory- and file-backed block devices.
pub fn is_virtual(device: &str) -> bool {
    ["loop", "ram", "zram"].iter().any(|p| {
        device
            .strip_prefix(p)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Without /sys: a device is a partition when another device's name plus
/// digits (or `p` and digits, as `nvme0n1p1`) is its name.
pub fn looks_like_partition(device: &str, all: &[&str]) -> bool {
    all.iter().any(|disk| {
        device.len() > disk.len()
            && device.starts_with(disk)
            && disk.ends_with(|c: char| c.is_ascii_alphabetic() || c.is_ascii_digit())
            && {
                let rest = &device[disk.len()..];
                let digits = rest.strip_prefix('p').unwrap_or(rest);
                !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (rest.starts_with('p') || !disk.ends_with(|c: char| c.is_ascii_digit()))
            }
    })
}

pub struct DiskCollector {
    path: PathBuf,
    sys_block: PathBuf,
    partitions: bool,
    virtual_devices: bool,
    /// Whether each device seen is reported.
    include: HashMap<String, bool>,
}

impl DiskCollector {
    pub fn new(roots: Roots, partitions: bool, virtual_devices: bool) -> Self {
        DiskCollector {
            path: roots.path("/proc/diskstats"),
            sys_block: roots.path("/sys/class/block"),
            partitions,
            virtual_devices,
            include: HashMap::new(),
        }
    }

    fn decide(&self, device: &str, text: &str) -> bool {
        if !self.virtual_devices && is_virtual(device) {
            return false;
        }
        if self.partitions {
            return true;
        }
        // sysfs spells `cciss/c0d0` as `cciss!c0d0`.
        let dir = self.sys_block.join(device.replace('/', "!"));
        if dir.exists() {
            return !dir.join("partition").exists();
        }
        let all: Vec<&str> = parse_diskstats(text).map(|d| d.device).collect();
        !looks_like_partition(device, &all)
    }
}

impl Collector for DiskCollector {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        let text = ctx.reader.read(&self.path)?;
        for d in parse_diskstats(text) {
            if !self.include.contains_key(d.device) {
                let yes = self.decide(d.device, text);
                self.include.insert(d.device.to_string(), yes);
            }
        }
        let start = ctx.boot_ns;
        let disks = || {
            parse_diskstats(text).filter(|d| self.include.get(d.device).copied().unwrap_or(false))
        };
        let rw = |m: &mut MetricWriter<'_>, device: &str, r: Value, w: Value| {
            for (direction, v) in [("read", r), ("write", w)] {
                let attrs = [
                    ("device", Attr::Str(device)),
                    ("direction", Attr::Str(direction)),
                ];
                m.point(&attrs, v, start);
            }
        };
        let int = |v: u64| Value::from(v);
        let secs = |v: u64| Value::F64(ms(v));
        {
            let mut m = ctx.out.metric(&IO);
            for d in disks() {
                let (r, w) = (d.sectors_read * SECTOR, d.sectors_written * SECTOR);
                rw(&mut m, d.device, int(r), int(w));
            }
        }
        {
            let mut m = ctx.out.metric(&OPERATIONS);
            for d in disks() {
                rw(&mut m, d.device, int(d.reads), int(d.writes));
            }
        }
        {
            let mut m = ctx.out.metric(&MERGED);
            for d in disks() {
                rw(&mut m, d.device, int(d.reads_merged), int(d.writes_merged));
            }
        }
        {
            let mut m = ctx.out.metric(&OPERATION_TIME);
            for d in disks() {
                rw(&mut m, d.device, secs(d.read_ms), secs(d.write_ms));
            }
        }
        for (desc, field) in [
            (
                &IO_TIME,
                (|d: &DiskStat<'_>| d.io_ms) as fn(&DiskStat<'_>) -> u64,
            ),
            (&WEIGHTED_IO_TIME, |d| d.weighted_ms),
        ] {
            let mut m = ctx.out.metric(desc);
            for d in disks() {
                m.point(&[("device", Attr::Str(d.device))], ms(field(&d)), start);
            }
        }
        let mut m = ctx.out.metric(&PENDING);
        for d in disks() {
            m.point(&[("device", Attr::Str(d.device))], d.in_flight, 0);
        }
        Ok(())
    }
}

fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 131474 19260 11398386 75297 2741338 1713466 68542696 1787462 0 1312720 1977085 0 0 0 0 193580 114325
 254       1 vda1 1000 0 8000 10 20 0 160 5 0 12 15
 259       0 nvme0n1 10 0 80 1 0 0 0 0 2 3 4 0 0 0 0
 259       1 nvme0n1p1 5 0 40 1 0 0 0 0 0 1 1 0 0 0 0
 253       0 zram0 4 0 32 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sda broken line
";

    #[test]
    fn parses_the_first_eleven_counters() {
        let d: Vec<_> = parse_diskstats(SAMPLE).collect();
        assert_eq!(d.len(), 6, "the broken line is skipped");
        let vda = d[1];
        assert_eq!(vda.device, "vda");
        assert_eq!(vda.reads, 131474);
        assert_eq!(vda.reads_merged, 19260);
        assert_eq!(vda.sectors_read, 11398386);
        assert_eq!(vda.read_ms, 75297);
        assert_eq!(vda.writes, 2741338);
        assert_eq!(vda.writes_merged, 1713466);
        assert_eq!(vda.sectors_written, 68542696);
        assert_eq!(vda.write_ms, 1787462);
        assert_eq!(vda.in_flight, 0);
        assert_eq!(vda.io_ms, 1312720);
        assert_eq!(vda.weighted_ms, 1977085);
        assert_eq!(d[2].device, "vda1", "old kernels: 14 fields");
        assert_eq!(d[2].weighted_ms, 15);
    }

    #[test]
    fn virtual_devices_and_partitions() {
        assert!(is_virtual("loop0"));
        assert!(is_virtual("ram15"));
        assert!(is_virtual("zram0"));
        assert!(!is_virtual("loopback"));
        assert!(!is_virtual("vda"));
        let all = [
            "vda",
            "vda1",
            "nvme0n1",
            "nvme0n1p1",
            "nbd1",
            "nbd10",
            "sda",
            "sdaa",
        ];
        assert!(looks_like_partition("vda1", &all));
        assert!(looks_like_partition("nvme0n1p1", &all));
        assert!(!looks_like_partition("nvme0n1", &all));
        assert!(!looks_like_partition("nbd10", &all), "nbd10 is a disk");
        assert!(!looks_like_partition("sdaa", &all));
        assert!(!looks_like_partition("vda", &all));
    }
}
