//! Starting, flushing and stopping the systems under test. Each runs on
//! loopback with its own temporary data directory; dropping a [`Server`]
//! kills it and deletes its directory, also when the bench fails.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    Sonde,
    Vm,
    Prom,
}

impl SystemKind {
    pub fn parse(s: &str) -> anyhow::Result<SystemKind> {
        match s {
            "sonde" => Ok(SystemKind::Sonde),
            "vm" | "victoriametrics" => Ok(SystemKind::Vm),
            "prom" | "prometheus" => Ok(SystemKind::Prom),
            _ => bail!("unknown system {s:?}: expected sonde, vm or prom"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Sonde => "Sonde",
            SystemKind::Vm => "VictoriaMetrics",
            SystemKind::Prom => "Prometheus",
        }
    }

    fn ready_path(self) -> &'static str {
        match self {
            SystemKind::Sonde => "/ready",
            SystemKind::Vm => "/health",
            SystemKind::Prom => "/-/ready",
        }
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub sonde: PathBuf,
    pub vm: PathBuf,
    pub prom: PathBuf,
}

pub struct Server {
    pub kind: SystemKind,
    pub base_url: String,
    child: Child,
    /// The run's temporary directory: data, config, log.
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Leave the directory behind for inspection (`--keep-data`).
    keep: bool,
}

impl Server {
    /// `run` names the directory, e.g. after the workload, so that kept
    /// directories of several workloads do not collide.
    pub fn start(
        kind: SystemKind,
        bins: &Binaries,
        run: &str,
        keep: bool,
    ) -> anyhow::Result<Server> {
        let root = std::env::temp_dir().join(format!(
            "sonde-bench-{}-{run}-{}",
            std::process::id(),
            kind_slug(kind)
        ));
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        let server = Self::launch(kind, bins, root.clone(), keep);
        if server.is_err() {
            // A server that started is cleaned up by its Drop; this covers
            // failures before the process existed.
            let _ = std::fs::remove_dir_all(&root);
        }
        let server = server?;
        server.wait_ready()?;
        Ok(server)
    }

    fn launch(
        kind: SystemKind,
        bins: &Binaries,
        root: PathBuf,
        keep: bool,
    ) -> anyhow::Result<Server> {
        let data = root.join("data");
        std::fs::create_dir_all(&data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let log = root.join("server.log");
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut cmd = match kind {
            SystemKind::Sonde => sonde_command(&bins.sonde, &data, &addr)?,
            SystemKind::Vm => Command::new(alias(&bins.vm, &root, "bench-vm")?),
            SystemKind::Prom => Command::new(alias(&bins.prom, &root, "bench-prom")?),
        };
        match kind {
            SystemKind::Sonde => {}
            SystemKind::Vm => vm_args(&mut cmd, &data, &addr),
            SystemKind::Prom => prom_args(&mut cmd, &root, &data, &addr)?,
        }
        let out = File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}: {cmd:?}", kind.name()))?;
        Ok(Server {
            kind,
            base_url: format!("http://{addr}"),
            child,
            root,
            data,
            log,
            keep,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base_url)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let url = format!("{}{}", self.base_url, self.kind.ready_path());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if agent.get(&url).call().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{} did not become ready in 60 s; its log ends with:\n{}",
            self.kind.name(),
            self.log_tail()
        )
    }

    /// Persists in-memory data so the data directory shows the real
    /// footprint. Prometheus has no such call: its head stays in the WAL and
    /// head chunks, and is measured as it is.
    pub fn flush(&self, agent: &ureq::Agent) -> anyhow::Result<()> {
        match self.kind {
            SystemKind::Sonde => {
                agent
                    .post(&format!("{}/api/v1/admin/flush", self.base_url))
                    .call()?;
            }
            SystemKind::Vm => {
                agent
                    .get(&format!("{}/internal/force_flush", self.base_url))
                    .call()?;
                // force_merge only starts the merge; wait until none runs.
                agent
                    .get(&format!("{}/internal/force_merge", self.base_url))
                    .call()?;
                self.wait_vm_merges(agent)?;
            }
            SystemKind::Prom => {}
        }
        Ok(())
    }

    /// Waits until VictoriaMetrics runs no merge (forced or background) and
    /// its data directory stopped changing: force_merge returns before the
    /// merge starts, and background merges still shrink the data after it.
    fn wait_vm_merges(&self, agent: &ureq::Agent) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut last_size = u64::MAX;
        let mut quiet_polls = 0;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let page = agent
                .get(&format!("{}/metrics", self.base_url))
                .call()?
                .into_string()?;
            let merging: f64 = page
                .lines()
                .filter(|l| {
                    l.starts_with("vm_active_force_merges") || l.starts_with("vm_active_merges")
                })
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum();
            let size = crate::procfs::dir_size(&self.data).apparent;
            quiet_polls = if merging == 0.0 && size == last_size {
                quiet_polls + 1
            } else {
                0
            };
            last_size = size;
            if quiet_polls >= 4 {
                return Ok(());
            }
        }
        bail!("VictoriaMetrics was still merging after 10 minutes")
    }

    /// Values of the named unlabelled metrics on the server's /metrics page
    /// (empty when it cannot be read: this is extra information only).
    pub fn scrape(&self, agent: &ureq::Agent, names: &[&str]) -> Vec<(String, f64)> {
        let page = agent
            .get(&format!("{}/metrics", self.base_url))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        page.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| names.contains(k))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Is the process still running? (It may have crashed under load.)
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.kind.name(),
                self.log_tail()
            );
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.keep {
            eprintln!("    kept {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn kind_slug(kind: SystemKind) -> &'static str {
    match kind {
        SystemKind::Sonde => "sonde",
        SystemKind::Vm => "vm",
        SystemKind::Prom => "prom",
    }
}

/// A port the OS says is free now (a small race with other programs is
/// acceptable for a bench).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a peer under another process name through a symlink: other tools on
/// a shared machine stop stray `prometheus`/`victoria-metrics` processes by
/// name, and must not kill the bench's instances mid-run.
fn alias(bin: &Path, root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let bin = bin.canonicalize().with_context(|| {
        format!(
            "{} not found; install it with apt-get install prometheus victoria-metrics",
            bin.display()
        )
    })?;
    let link = root.join(name);
    std::os::unix::fs::symlink(&bin, &link)?;
    Ok(link)
}

fn sonde_command(bin: &Path, data: &Path, addr: &str) -> anyhow::Result<Command> {
    if !bin.exists() {
        bail!(
            "{} not found; build it with cargo build --release -p sonde-cli, or pass --sonde-bin",
            bin.display()
        );
    }
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--api-addr", addr])
        .args(["--otlp-grpc-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--otlp-http-addr", &format!("127.0.0.1:{}", free_port()?)])
        // Keep everything: the workload's timestamps lie in the past.
        .args(["--retention", "0", "--future-tolerance", "10m"])
        .args(["--log-level", "warn"]);
    Ok(cmd)
}

fn vm_args(cmd: &mut Command, data: &Path, addr: &str) {
    cmd.arg(format!("-httpListenAddr={addr}"))
        .arg(format!("-storageDataPath={}", data.display()))
        .arg("-retentionPeriod=100y")
        // Repeated queries would otherwise be answered from its result cache.
        .arg("-search.disableCache")
        .arg("-loggerLevel=WARN");
}

fn prom_args(cmd: &mut Command, root: &Path, data: &Path, addr: &str) -> anyhow::Result<()> {
    let config = root.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
    )?;
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--log.level=warn");
    Ok(())
}
