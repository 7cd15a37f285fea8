//! The agent on a thread of another program (`sonde demo`): no signal
//! handlers of its own; its handle stops it.

use std::sync::Arc;
use std::thread::JoinHandle;

use sonde_sdk::export::{HttpSink, HttpSinkConfig};

use crate::agent::{run_loop, Agent, Control};
use crate::{host, policy, procfs, Config, Result};

pub struct Handle {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// Stops the loop, which flushes what it collected, and waits for it.
    pub fn stop(mut self) {
        self.control.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.control.stop();
    }
}

/// Starts collecting and exporting on a new thread.
pub fn spawn(config: Config) -> Result<Handle> {
    let host = host::Host::detect(&procfs::Roots::new(&config.root_path));
    let agent = Agent::new(&config, &host)?;
    let sink = HttpSink::new(HttpSinkConfig {
        endpoint: config.endpoint.trim_end_matches('/').to_string(),
        ..Default::default()
    });
    let control = Control::new()?;
    let watcher = config
        .api
        .as_ref()
        .map(|api| policy::subscribe(api, &host, &config, control.clone(), sink.clone()));
    let loop_control = control.clone();
    let thread = std::thread::Builder::new()
        .name("sonde-agent".into())
        .spawn(move || {
            let _watcher = watcher;
            if let Err(e) = run_loop(agent, &config, sink, loop_control) {
                tracing::error!("the agent stopped: {e}");
            }
        })
        .map_err(crate::Error::Wake)?;
    Ok(Handle {
        control,
        thread: Some(thread),
    })
}
