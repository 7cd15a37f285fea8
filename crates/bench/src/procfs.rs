//! What the bench measures about a server process and its data directory,
//! read from /proc and the file system (Linux only).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context};

/// CPU time (user + system, all threads, live and exited) of a process.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    if fields.len() < 13 {
        bail!("unexpected /proc/{pid}/stat: {stat}");
    }
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// The kernel's USER_HZ; 100 nearly everywhere, asked once from getconf.
fn clock_ticks_per_second() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The 1-minute load average: a high one during a run means other work
/// competed for the cores and the numbers are noisier.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A one-line description of the machine: cores, memory, CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    format!(
        "{cores} cores ({model}), {:.1} GiB memory",
        mem_kib as f64 / 1048576.0
    )
}

/// Resident and peak resident memory of a process, in bytes.
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(Memory {
        rss: kib("VmRSS:"),
        peak: kib("VmHWM:"),
    })
}

/// Sizes of all files under a directory.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskUsage {
    /// Sum of file lengths: what a backup or an object store would hold.
    pub apparent: u64,
    /// Blocks allocated on disk (`du`): differs when files are preallocated
    /// or sparse.
    pub allocated: u64,
}

pub fn dir_size(dir: &Path) -> DiskUsage {
    let mut total = DiskUsage::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                let sub = dir_size(&e.path());
                total.apparent += sub.apparent;
                total.allocated += sub.allocated;
            }
            Ok(t) if t.is_file() => {
                if let Ok(m) = e.metadata() {
                    total.apparent += m.len();
                    total.allocated += m.blocks() * 512;
                }
            }
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let m = memory(pid).unwrap();
        assert!(m.rss > 0 && m.peak >= m.rss);
    }
}
