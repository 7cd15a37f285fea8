//! Command-line options, parsed by hand (the bench has few, and clap would
//! cost more compile time than the whole crate).

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::server::{Binaries, SystemKind};
use crate::workload::WorkloadKind;

pub const USAGE: &str = "\
usage: sonde-bench [options]

Feeds the same remote-write workload to Sonde, VictoriaMetrics and Prometheus
(each started here on loopback with a temporary data directory, one after the
other) and prints a markdown table with ratios Sonde/peer.

options:
  --workload tsbs|node|both   workload (default both)
  --hosts N                   TSBS cpu-only hosts, 10 series each (default 1000)
  --node-hosts N              node_exporter-like hosts, ~280 series each (default 100)
  --hours H                   time span of the data, ending a few minutes ago (default 6)
  --systems LIST              comma-separated: sonde,vm,prom (default all three)
  --sonde-bin PATH            sonde binary (default: `sonde` next to this binary)
  --vm-bin PATH               default /usr/bin/victoria-metrics
  --prom-bin PATH             default /usr/bin/prometheus
  --concurrency N             client threads sending requests (default 4)
  --batch N                   most series per request (default 10000)
  --query-runs N              timed runs per query; the median is reported (default 5)
  --seed N                    workload seed (default 1)
  --out FILE                  also write the report to FILE
  --keep-data                 leave each system's data directory behind (path printed)
";

#[derive(Debug, Clone)]
pub struct Options {
    pub workloads: Vec<WorkloadKind>,
    pub hosts: usize,
    pub node_hosts: usize,
    pub hours: f64,
    pub systems: Vec<SystemKind>,
    pub bins: Binaries,
    pub concurrency: usize,
    pub batch: usize,
    pub query_runs: usize,
    pub seed: u64,
    pub out: Option<PathBuf>,
    pub keep_data: bool,
}

impl Options {
    fn defaults() -> Options {
        let sonde = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("sonde")))
            .unwrap_or_else(|| PathBuf::from("target/release/sonde"));
        Options {
            workloads: vec![WorkloadKind::Tsbs, WorkloadKind::Node],
            hosts: 1000,
            node_hosts: 100,
            hours: 6.0,
            systems: vec![SystemKind::Sonde, SystemKind::Vm, SystemKind::Prom],
            bins: Binaries {
                sonde,
                vm: PathBuf::from("/usr/bin/victoria-metrics"),
                prom: PathBuf::from("/usr/bin/prometheus"),
            },
            concurrency: 4,
            batch: 10_000,
            query_runs: 5,
            seed: 1,
            out: None,
            keep_data: false,
        }
    }

    /// Parses `--key value` and `--key=value`; Ok(None) means help was asked.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Options>> {
        let mut o = Options::defaults();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            if arg == "--keep-data" {
                o.keep_data = true;
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?}\n\n{USAGE}");
            };
            let (key, value) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = args
                        .next()
                        .with_context(|| format!("--{flag} needs a value"))?;
                    (flag.to_string(), v)
                }
            };
            o.set(&key, &value)
                .with_context(|| format!("--{key} {value:?}"))?;
        }
        Ok(Some(o))
    }

    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match key {
            "workload" => {
                self.workloads = match value {
                    "tsbs" => vec![WorkloadKind::Tsbs],
                    "node" => vec![WorkloadKind::Node],
                    "both" => vec![WorkloadKind::Tsbs, WorkloadKind::Node],
                    _ => bail!("expected tsbs, node or both"),
                }
            }
            "hosts" => self.hosts = positive(value)?,
            "node-hosts" => self.node_hosts = positive(value)?,
            "hours" => {
                self.hours = value.parse()?;
                if !(self.hours > 0.0 && self.hours <= 24.0 * 365.0) {
                    bail!("expected a number of hours above 0");
                }
            }
            "systems" => {
                self.systems = value
                    .split(',')
                    .map(|s| SystemKind::parse(s.trim()))
                    .collect::<anyhow::Result<_>>()?;
            }
            "sonde-bin" => self.bins.sonde = PathBuf::from(value),
            "vm-bin" => self.bins.vm = PathBuf::from(value),
            "prom-bin" => self.bins.prom = PathBuf::from(value),
            "concurrency" => self.concurrency = positive(value)?,
            "batch" => self.batch = positive(value)?,
            "query-runs" => self.query_runs = positive(value)?,
            "seed" => self.seed = value.parse()?,
            "out" => self.out = Some(PathBuf::from(value)),
            _ => bail!("unknown option\n\n{USAGE}"),
        }
        Ok(())
    }

    pub fn hosts_for(&self, kind: WorkloadKind) -> usize {
        match kind {
            WorkloadKind::Tsbs => self.hosts,
            WorkloadKind::Node => self.node_hosts,
        }
    }
}

fn positive(value: &str) -> anyhow::Result<usize> {
    let n: usize = value.parse()?;
    if n == 0 {
        bail!("expected a number above 0");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Options>> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags_in_both_forms() {
        let o = parse(&[
            "--hosts",
            "10",
            "--workload=both",
            "--systems",
            "sonde,prom",
            "--hours",
            "0.5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.hosts, 10);
        assert_eq!(o.workloads, vec![WorkloadKind::Tsbs, WorkloadKind::Node]);
        assert_eq!(o.systems, vec![SystemKind::Sonde, SystemKind::Prom]);
        assert_eq!(o.hours, 0.5);
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--hosts", "0"]).is_err());
        assert!(parse(&["--systems", "influx"]).is_err());
        assert!(parse(&["--bogus", "1"]).is_err());
    }
}
