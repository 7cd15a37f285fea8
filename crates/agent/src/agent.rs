//! The agent: collectors, the tick loop, and the control handle through
//! which signals and runtime policies reach the loop.
//!
//! One thread runs the loop. Every interval it lets each enabled collector
//! write into the batch, encodes the batch once and hands the bytes to the
//! sink, which sends them from its own thread. Between ticks the loop
//! sleeps on one end of a socket pair; SIGINT/SIGTERM and policy changes
//! write a byte to the other end, so they take effect at once.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use sonde_sdk::export::{Signal, Sink};

use crate::batch::Batch;
use crate::collectors::{self, Collector, Ctx, Options};
use crate::host::Host;
use crate::procfs::{Reader, Roots};
use crate::{Config, Error, Result};

/// The collection intervals a policy (or a flag) may set.
pub use sonde_policy::{MAX_METRIC_INTERVAL as MAX_INTERVAL, MIN_METRIC_INTERVAL as MIN_INTERVAL};

/// Collects host metrics into one reusable OTLP batch.
pub struct Agent {
    opts: Options,
    /// Enabled collectors, in the order of [`collectors::ALL`].
    collectors: Vec<Box<dyn Collector>>,
    batch: Batch,
    reader: Reader,
    boot_ns: u64,
    /// The last error of each failing collector, logged once.
    errors: HashMap<&'static str, String>,
}

impl Agent {
    /// An agent reporting as `service_name` from `host`, with the given
    /// collectors enabled (unknown names are an error).
    pub fn new(config: &Config, host: &Host) -> Result<Agent> {
        let roots = Roots::new(&config.root_path);
        let stat =
            std::fs::read_to_string(roots.path("/proc/stat")).map_err(|source| Error::Io {
                path: roots.path("/proc/stat"),
                source,
            })?;
        let boot_s = collectors::cpu::parse_boot_time(&stat).unwrap_or(0);
        let resource = host.resource(&config.service_name);
        let mut agent = Agent {
            opts: Options {
                roots,
                disk_partitions: config.disk_partitions,
                disk_virtual: config.disk_virtual,
                top_processes: config.top_processes,
            },
            collectors: Vec::new(),
            batch: Batch::new(&resource, "sonde.agent", env!("CARGO_PKG_VERSION")),
            reader: Reader::default(),
            boot_ns: boot_s * 1_000_000_000,
            errors: HashMap::new(),
        };
        let unknown = agent.set_collectors(&config.collectors);
        if !unknown.is_empty() {
            return Err(Error::Usage(format!(
                "unknown collector {:?}; known: {}",
                unknown[0],
                collectors::ALL.join(",")
            )));
        }
        Ok(agent)
    }

    /// Enables exactly `names`, keeping the state of collectors that stay
    /// enabled. Returns the names that are not collectors (ignored).
    pub fn set_collectors<S: AsRef<str>>(&mut self, names: &[S]) -> Vec<String> {
        let wanted = |n: &str| names.iter().any(|w| w.as_ref() == n);
        let mut kept: Vec<Box<dyn Collector>> = Vec::new();
        let mut old = std::mem::take(&mut self.collectors);
        for name in collectors::ALL {
            if !wanted(name) {
                continue;
            }
            match old.iter().position(|c| c.name() == name) {
                Some(i) => kept.push(old.swap_remove(i)),
                None => kept.extend(collectors::make(name, &self.opts)),
            }
        }
        self.collectors = kept;
        self.errors.retain(|n, _| wanted(n));
        names
            .iter()
            .map(|n| n.as_ref())
            .filter(|n| !collectors::ALL.contains(n))
            .map(str::to_string)
            .collect()
    }

    /// The enabled collectors' names.
    pub fn enabled(&self) -> Vec<&'static str> {
        self.collectors.iter().map(|c| c.name()).collect()
    }

    /// Collects once, at `now`, into the batch. A failing collector is
    /// logged (once per distinct error) and skipped.
    pub fn tick(&mut self, now: SystemTime) -> &Batch {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.batch.begin(now_ns);
        for c in &mut self.collectors {
            let mut ctx = Ctx {
                reader: &mut self.reader,
                out: &mut self.batch,
                boot_ns: self.boot_ns,
            };
            match c.collect(&mut ctx) {
                Ok(()) => {
                    if self.errors.remove(c.name()).is_some() {
                        tracing::info!(collector = c.name(), "collector recovered");
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.errors.get(c.name()) != Some(&msg) {
                        tracing::warn!(collector = c.name(), error = %msg, "collector failed; its metrics are skipped until it recovers");
                        self.errors.insert(c.name(), msg);
                    }
                }
            }
        }
        self.batch.finish();
        &self.batch
    }

    /// The batch as last collected.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// The batch encoded as an OTLP `ExportMetricsServiceRequest`.
    pub fn encode(&self) -> Vec<u8> {
        self.batch.request().encode_to_vec()
    }
}

/// A change requested by a policy: `None` fields go back to the
/// configured defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyUpdate {
    pub version: u64,
    pub interval: Option<Duration>,
    pub collectors: Option<Vec<String>>,
}

/// What the loop runs with now.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub interval: Duration,
    pub collectors: Vec<String>,
    pub policy_version: u64,
}

/// The handle through which signals and policies reach a running loop.
pub struct Control {
    stop: Arc<AtomicBool>,
    pending: std::sync::Mutex<Option<PolicyUpdate>>,
    applied: std::sync::Mutex<Option<Applied>>,
    wake_tx: UnixStream,
    wake_rx: std::sync::Mutex<Option<UnixStream>>,
}

impl Control {
    pub fn new() -> Result<Arc<Control>> {
        let (tx, rx) = UnixStream::pair().map_err(Error::Wake)?;
        tx.set_nonblocking(true).map_err(Error::Wake)?;
        Ok(Arc::new(Control {
            stop: Arc::new(AtomicBool::new(false)),
            pending: std::sync::Mutex::new(None),
            applied: std::sync::Mutex::new(None),
            wake_tx: tx,
            wake_rx: std::sync::Mutex::new(Some(rx)),
        }))
    }

    /// Makes SIGINT and SIGTERM stop the loop (a second one exits at once).
    pub fn handle_signals(&self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            let wake = self.wake_tx.try_clone().map_err(Error::Wake)?;
            signal_hook::flag::register_conditional_shutdown(sig, 1, self.stop.clone())
                .map_err(Error::Wake)?;
            signal_hook::flag::register(sig, self.stop.clone()).map_err(Error::Wake)?;
            signal_hook::low_level::pipe::register(sig, wake).map_err(Error::Wake)?;
        }
        Ok(())
    }

    /// Asks the loop to flush and return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Hands a policy change to the loop, which applies it at once.
    pub fn apply(&self, update: PolicyUpdate) {
        *lock(&self.pending) = Some(update);
        self.wake();
    }

    /// What the loop runs with (after it started).
    pub fn applied(&self) -> Option<Applied> {
        lock(&self.applied).clone()
    }

    fn wake(&self) {
        // Nonblocking: a full socket already holds a wake-up.
        let _ = std::io::Write::write(&mut &self.wake_tx, &[1]);
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the loop until `control.stop()` (or a signal, once
/// `control.handle_signals()` was called); then flushes the sink.
pub fn run_loop(
    mut agent: Agent,
    config: &Config,
    sink: Arc<dyn Sink>,
    control: Arc<Control>,
) -> Result<()> {
    let mut rx = lock(&control.wake_rx)
        .take()
        .ok_or_else(|| Error::Usage("the agent loop is already running".into()))?;
    let defaults = Applied {
        interval: config.interval,
        collectors: agent.enabled().iter().map(|s| s.to_string()).collect(),
        policy_version: 0,
    };
    let mut applied = defaults.clone();
    *lock(&control.applied) = Some(applied.clone());
    let mut last_tick: Option<Instant> = None;
    let mut next = Instant::now();
    let mut drain = [0u8; 64];
    while !control.stopping() {
        if let Some(update) = lock(&control.pending).take() {
            let before = applied.clone();
            applied = apply_policy(&mut agent, &defaults, &update);
            if applied != before {
                tracing::info!(
                    version = update.version,
                    interval = ?applied.interval,
                    collectors = %applied.collectors.join(","),
                    "policy applied"
                );
            }
            *lock(&control.applied) = Some(applied.clone());
            if let Some(last) = last_tick {
                next = last + applied.interval;
            }
        }
        let now = Instant::now();
        if now >= next {
            let batch = agent.tick(SystemTime::now());
            if batch.point_count() > 0 {
                sink.send(Signal::Metrics, agent.encode());
            }
            last_tick = Some(now);
            next += applied.interval;
            if next <= now {
                // Fell behind (a suspended machine, a slow tick): skip
                // the missed ticks rather than bursting.
                next = now + applied.interval;
            }
            continue;
        }
        rx.set_read_timeout(Some((next - now).max(Duration::from_millis(1))))
            .map_err(Error::Wake)?;
        match rx.read(&mut drain) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Error::Wake(e)),
        }
    }
    tracing::info!("stopping: flushing what is queued");
    if !sink.flush(Duration::from_secs(5)) {
        tracing::warn!("not everything queued was sent within 5s");
    }
    Ok(())
}

/// Applies `update` over the configured `defaults`; returns what now runs.
pub fn apply_policy(agent: &mut Agent, defaults: &Applied, update: &PolicyUpdate) -> Applied {
    let interval = match update.interval {
        Some(i) => i.clamp(MIN_INTERVAL, MAX_INTERVAL),
        None => defaults.interval,
    };
    let collectors = update.collectors.as_ref().unwrap_or(&defaults.collectors);
    let unknown = agent.set_collectors(collectors);
    if !unknown.is_empty() {
        tracing::warn!(unknown = %unknown.join(","), "policy names collectors this agent does not have; ignored");
    }
    Applied {
        interval,
        collectors: agent.enabled().iter().map(|s| s.to_string()).collect(),
        policy_version: update.version,
    }
}
