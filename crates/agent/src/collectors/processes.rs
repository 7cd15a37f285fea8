//! `processes` (off by default): the top processes by CPU and by memory,
//! from /proc/[pid]/stat.
//!
//! Each tick reads every process's stat file, ranks the processes by CPU
//! time used since the previous tick (on the first tick, since they
//! started) and by resident memory, and reports the union of the top N of
//! each:
//!
//! - `process.cpu.time{process.pid,process.executable.name,state}` (s,
//!   cumulative from the process's start): `user`, `system`.
//! - `process.memory.usage{process.pid,process.executable.name}` (By): the
//!   resident set (the `rss` of stat, the same count as statm's resident).
//!
//! The hostmetrics receiver puts `process.pid` and the name on a resource
//! per process; Sonde keeps resource attributes other than the service's
//! only on `target_info`, so here they are data point attributes, which
//! keeps each process its own series.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{clock_ticks, ticks_to_seconds, Collector, Ctx};
use crate::batch::{Attr, Desc, Kind};
use crate::procfs::Roots;

const CPU_TIME: Desc = Desc {
    name: "process.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    description: "CPU seconds of the top processes, user and system.",
};
const MEMORY: Desc = Desc {
    name: "process.memory.usage",
    unit: "By",
    kind: Kind::UpDown,
    description: "Resident memory of the top processes.",
};

/// The fields of /proc/[pid]/stat the collector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat<'a> {
    pub pid: u32,
    /// The command name (at most 15 bytes, may hold spaces and parens).
    pub comm: &'a str,
    pub utime: u64,
    pub stime: u64,
    /// Clock ticks after boot when the process started.
    pub starttime: u64,
    pub rss_pages: u64,
}

/// One /proc/[pid]/stat line.
pub fn parse_pid_stat(text: &str) -> Option<PidStat<'_>> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?;
    // Fields from the state (field 3) on; utime is field 14.
    let mut f = text[close + 1..].split_ascii_whitespace();
    let mut field = |n: usize| -> Option<&str> { f.nth(n) };
    let utime = field(11)?.parse().ok()?;
    let stime = field(0)?.parse().ok()?;
    let starttime = field(6)?.parse().ok()?;
    let _vsize = field(0)?;
    let rss: i64 = field(0)?.parse().ok()?;
    Some(PidStat {
        pid,
        comm,
        utime,
        stime,
        starttime,
        rss_pages: rss.max(0) as u64,
    })
}

/// The processes worth reporting: indices of the top `n` by `cpu` and the
/// top `n` by `rss`, without repeats, in the order of `items`.
pub fn top(items: &[(u64, u64)], n: usize, chosen: &mut Vec<usize>) {
    chosen.clear();
    if n == 0 || items.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    let k = n.min(items.len());
    for key in [|t: &(u64, u64)| t.0, |t: &(u64, u64)| t.1] {
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, |a, b| key(&items[*b]).cmp(&key(&items[*a])));
        }
        chosen.extend_from_slice(&order[..k]);
    }
    chosen.sort_unstable();
    chosen.dedup();
}

struct Proc {
    pid: u32,
    name: Range<usize>,
    utime: u64,
    stime: u64,
    start_ns: u64,
    rss: u64,
}

pub struct ProcessCollector {
    proc_dir: PathBuf,
    n: usize,
    page_size: u64,
    path: String,
    /// This tick's processes, their names in `names`.
    procs: Vec<Proc>,
    names: String,
    /// CPU ticks of each process at the previous tick, and this tick's.
    prev: HashMap<u32, u64>,
    cur: HashMap<u32, u64>,
    first: bool,
    ranks: Vec<(u64, u64)>,
    chosen: Vec<usize>,
}

impl ProcessCollector {
    pub fn new(roots: Roots, n: usize) -> Self {
        ProcessCollector {
            proc_dir: roots.path("/proc"),
            n: if n == 0 { 10 } else { n },
            page_size: rustix::param::page_size() as u64,
            path: String::new(),
            procs: Vec::new(),
            names: String::new(),
            prev: HashMap::new(),
            cur: HashMap::new(),
            first: true,
            ranks: Vec::new(),
            chosen: Vec::new(),
        }
    }

    fn scan(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        self.procs.clear();
        self.names.clear();
        self.cur.clear();
        let ticks = clock_ticks();
        // One small allocation per entry (its name): the optional collector
        // is the one place a tick allocates in proportion to the machine.
        for entry in std::fs::read_dir(&self.proc_dir)? {
            let Ok(entry) = entry else { break };
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            self.path.clear();
            let _ = write!(self.path, "{}/{pid}/stat", self.proc_dir.display());
            // A process may exit between the listing and the read.
            let Ok(text) = ctx.reader.read(Path::new(&self.path)) else {
                continue;
            };
            let Some(s) = parse_pid_stat(text) else {
                continue;
            };
            let start = self.names.len();
            self.names.push_str(s.comm);
            self.cur.insert(pid, s.utime + s.stime);
            self.procs.push(Proc {
                pid,
                name: start..self.names.len(),
                utime: s.utime,
                stime: s.stime,
                start_ns: ctx.boot_ns + s.starttime * (1_000_000_000 / ticks.max(1)),
                rss: s.rss_pages * self.page_size,
            });
        }
        Ok(())
    }
}

impl Collector for ProcessCollector {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        self.scan(ctx)?;
        self.ranks.clear();
        for p in &self.procs {
            let total = p.utime + p.stime;
            let used = match self.prev.get(&p.pid) {
                Some(before) if !self.first => total.saturating_sub(*before),
                _ => total,
            };
            self.ranks.push((used, p.rss));
        }
        top(&self.ranks, self.n, &mut self.chosen);
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.first = false;
        {
            let mut m = ctx.out.metric(&CPU_TIME);
            for &i in &self.chosen {
                let p = &self.procs[i];
                let name = &self.names[p.name.clone()];
                for (state, t) in [("user", p.utime), ("system", p.stime)] {
                    let attrs = [
                        ("process.pid", Attr::Int(p.pid.into())),
                        ("process.executable.name", Attr::Str(name)),
                        ("state", Attr::Str(state)),
                    ];
                    m.point(&attrs, ticks_to_seconds(t), p.start_ns);
                }
            }
        }
        let mut m = ctx.out.metric(&MEMORY);
        for &i in &self.chosen {
            let p = &self.procs[i];
            let attrs = [
                ("process.pid", Attr::Int(p.pid.into())),
                (
                    "process.executable.name",
                    Attr::Str(&self.names[p.name.clone()]),
                ),
            ];
            m.point(&attrs, p.rss, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4806 (tmux: server) S 1 4806 4806 0 -1 4194560 2215 0 0 0 152 341 0 0 20 0 1 0 9034 10027008 1117 18446744073709551615 1 1 0 0 0 0 0 4096 134365187 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let s = parse_pid_stat(STAT).unwrap();
        assert_eq!(
            s,
            PidStat {
                pid: 4806,
                comm: "tmux: server",
                utime: 152,
                stime: 341,
                starttime: 9034,
                rss_pages: 1117,
            }
        );
        let odd = STAT.replace("(tmux: server)", "(a) b (c))");
        assert_eq!(parse_pid_stat(&odd).unwrap().comm, "a) b (c)");
        assert_eq!(parse_pid_stat("12 (short) S 1 2 3"), None);
    }

    #[test]
    fn top_takes_the_union_of_both_rankings() {
        // (cpu, rss)
        let items = [(5, 100), (50, 1), (0, 900), (7, 0), (1, 1)];
        let mut chosen = Vec::new();
        top(&items, 1, &mut chosen);
        assert_eq!(chosen, [1, 2]);
        top(&items, 2, &mut chosen);
        assert_eq!(chosen, [0, 1, 2, 3]);
        top(&items, 10, &mut chosen);
        assert_eq!(chosen, [0, 1, 2, 3, 4]);
        top(&items, 0, &mut chosen);
        assert!(chosen.is_empty());
    }

    #[test]
    fn scans_this_process() {
        let mut c = ProcessCollector::new(Roots::new("/"), 3);
        let mut reader = crate::procfs::Reader::default();
        let mut out = crate::batch::Batch::new(&[], "s", "v");
        out.begin(1);
        let mut ctx = Ctx {
            reader: &mut reader,
            out: &mut out,
            boot_ns: 0,
        };
        c.scan(&mut ctx).unwrap();
        let me = std::process::id();
        assert!(c.procs.iter().any(|p| p.pid == me && p.rss > 0));
    }
}
