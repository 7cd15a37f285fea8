//! `sonde agent`: a host-metrics agent.
//!
//! Collectors read /proc and /sys directly (`collectors/`, one small parser
//! per file format), write OpenTelemetry hostmetrics-style metrics into one
//! OTLP batch that is rewritten in place every tick (`batch.rs`), and the
//! batch goes out through the SDK's [`Sink`](sonde_sdk::export::Sink):
//! OTLP/HTTP, or Kafka or MQTT (features `kafka`, `mqtt`), as the
//! `--export` URL says. The host's identity becomes the resource
//! (`host.rs`).
//!
//! The collection interval and the enabled collectors follow the server's
//! runtime policies (`policy.rs`, through the SDK's policy watcher, over
//! Server-Sent Events or retained MQTT messages); a change is applied
//! within a second, without restarting (`agent.rs`).
//!
//! It knows nothing of the server, the store or the transports beyond the
//! SDK.

pub mod agent;
pub mod batch;
pub mod cli;
pub mod collectors;
pub mod host;
pub mod policy;
pub mod procfs;
mod spawn;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use agent::{Agent, Control, PolicyUpdate};
pub use cli::parse_args;
pub use spawn::{spawn, Handle};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the agent's wake-up channel or signal handlers: {0}")]
    Wake(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the agent runs; see [`cli::USAGE`] for each setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where metrics go: an OTLP/HTTP base URL (to `{endpoint}/v1/metrics`),
    /// `kafka://host:port[,host:port]` or `mqtt://host:port`, with the query
    /// parameters of [`Export::from_url`](sonde_sdk::export::Export::from_url).
    pub endpoint: String,
    /// Where runtime policies come from: Sonde's API (`http://host:7070`)
    /// or `mqtt://host:port`; `None` runs without them.
    pub api: Option<String>,
    /// Collection interval, unless a policy sets another.
    pub interval: Duration,
    /// Enabled collectors, unless a policy sets others.
    pub collectors: Vec<String>,
    /// Processes reported by `processes`, top by CPU and top by memory.
    pub top_processes: usize,
    /// `service.name` of the resource (Sonde's `job`).
    pub service_name: String,
    /// Where the host's `/proc`, `/sys` and `/etc` are (`/`, or a bind
    /// mount of the host's root in a container).
    pub root_path: PathBuf,
    /// Report disk partitions as well as whole disks.
    pub disk_partitions: bool,
    /// Report `loop`, `ram` and `zram` devices.
    pub disk_virtual: bool,
    /// Collect one tick, print it as text and return.
    pub once: bool,
    /// Log filter (`info`, `debug`, `sonde_agent=debug`).
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "http://127.0.0.1:4318".into(),
            api: Some("http://127.0.0.1:7070".into()),
            interval: Duration::from_secs(1),
            collectors: collectors::DEFAULT.iter().map(|s| s.to_string()).collect(),
            top_processes: 0,
            service_name: "sonde-agent".into(),
            root_path: PathBuf::from("/"),
            disk_partitions: false,
            disk_virtual: false,
            once: false,
            log_level: "info".into(),
        }
    }
}

/// Runs the agent as configured: one tick printed to stdout with `once`,
/// else the export loop until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<()> {
    lean_process();
    let host = host::Host::detect(&procfs::Roots::new(&config.root_path));
    let mut agent = Agent::new(&config, &host)?;
    if config.once {
        let text = agent.tick(std::time::SystemTime::now()).to_text();
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
        return Ok(());
    }
    let control = Control::new()?;
    control.handle_signals()?;
    run_with(agent, host, config, control)
}

/// The export loop, with policies when `config.api` is set.
pub(crate) fn run_with(
    agent: Agent,
    host: host::Host,
    config: Config,
    control: Arc<Control>,
) -> Result<()> {
    let client_id = policy::client_id(&host);
    let export = sonde_sdk::export::Export::from_url(&config.endpoint)
        .map_err(|e| Error::Usage(format!("--export: {e}")))?
        .for_client(&client_id, &config.service_name);
    let source = config
        .api
        .as_deref()
        .map(sonde_sdk::policy::PolicySource::from_url)
        .transpose()
        .map_err(|e| Error::Usage(format!("--policies: {e}")))?;
    let endpoint = export.describe();
    let sink = export.start();
    // Dropped (unsubscribed) when the loop has returned.
    let _watcher = source
        .as_ref()
        .map(|source| policy::subscribe(source, &host, &config, control.clone(), sink.clone()));
    tracing::info!(
        endpoint = %endpoint,
        interval = ?config.interval,
        collectors = %agent.enabled().join(","),
        host = %host.name,
        "sonde agent started"
    );
    agent::run_loop(agent, &config, sink, control)
}

/// Keeps a process that is only the agent small. The allocator backs its
/// arenas with transparent huge pages where it may; for an agent whose heap
/// is a few hundred KiB that is 2 MiB of resident memory per touched page.
/// Call it first thing in `main` (allocations before it keep their pages);
/// only this process is affected.
pub fn lean_process() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot opt out of transparent huge pages");
    }
}

/// Durations have one grammar everywhere (`sonde_model::time`).
pub use sonde_model::time::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("s"), None);
    }
}
