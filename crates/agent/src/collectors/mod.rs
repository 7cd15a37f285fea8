//! The collectors: one module per source of host metrics, each a small
//! parser of a /proc or /sys text format (tested on captured samples) and a
//! `Collector` that writes what it parsed into the tick's [`Batch`].
//!
//! Names, units and attributes follow the OpenTelemetry hostmetrics
//! receiver's semantic conventions, so Sonde's OTel-to-Prometheus rules give
//! `system_cpu_time_seconds_total{cpu,state}`,
//! `system_memory_usage_bytes{state}` and so on.

pub mod cpu;
pub mod disk;
pub mod filesystem;
pub mod load;
pub mod memory;
pub mod network;
pub mod pressure;
pub mod processes;

use crate::batch::Batch;
use crate::procfs::{Reader, Roots};

/// Every collector's name, in collection order: the policy protocol's list.
pub use sonde_policy::COLLECTORS as ALL;

/// The collectors enabled when neither flags nor a policy say otherwise:
/// all but `processes`, the last.
pub const DEFAULT: &[&str] = ALL.split_at(ALL.len() - 1).0;

/// What every collector may use during a tick.
pub struct Ctx<'a> {
    pub reader: &'a mut Reader,
    pub out: &'a mut Batch,
    /// When the machine booted: the start of every kernel counter.
    pub boot_ns: u64,
}

/// One source of metrics. `collect` is called once per tick while the
/// collector is enabled; a collector keeps what it needs between ticks
/// (previous counters, a parsed mount table) and is dropped when disabled.
pub trait Collector: Send {
    fn name(&self) -> &'static str;
    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()>;
}

/// Options that shape collectors.
#[derive(Debug, Clone)]
pub struct Options {
    pub roots: Roots,
    /// Disk partitions too, not only whole disks.
    pub disk_partitions: bool,
    /// `loop*`, `ram*` and `zram*` devices too.
    pub disk_virtual: bool,
    /// How many processes the `processes` collector reports, by CPU and by
    /// memory each.
    pub top_processes: usize,
}

/// The collector called `name`, or `None` for an unknown name.
pub fn make(name: &str, opts: &Options) -> Option<Box<dyn Collector>> {
    let roots = opts.roots.clone();
    Some(match name {
        "cpu" => Box::new(cpu::CpuCollector::new(roots)),
        "load" => Box::new(load::LoadCollector::new(roots)),
        "memory" => Box::new(memory::MemoryCollector::new(roots)),
        "disk" => Box::new(disk::DiskCollector::new(
            roots,
            opts.disk_partitions,
            opts.disk_virtual,
        )),
        "filesystem" => Box::new(filesystem::FilesystemCollector::new(roots)),
        "network" => Box::new(network::NetworkCollector::new(roots)),
        "pressure" => Box::new(pressure::PressureCollector::new(roots)),
        "processes" => Box::new(processes::ProcessCollector::new(roots, opts.top_processes)),
        _ => return None,
    })
}

/// Seconds from clock ticks (USER_HZ) as /proc reports them.
pub fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / clock_ticks() as f64
}

/// USER_HZ, the unit of /proc/stat and /proc/[pid]/stat times.
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| match rustix::param::clock_ticks_per_second() {
        0 => 100,
        t => t,
    })
}
