//! The agent on a thread of another program (`sonde demo`): no signal
//! handlers of its own; its handle stops it.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::agent::{Agent, Control};
use crate::{host, procfs, Config, Result};

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
    let control = Control::new()?;
    let loop_control = control.clone();
    let thread = std::thread::Builder::new()
        .name("sonde-agent".into())
        .spawn(move || {
            if let Err(e) = crate::run_with(agent, host, config, loop_control) {
                tracing::error!("the agent stopped: {e}");
            }
        })
        .map_err(crate::Error::Wake)?;
    Ok(Handle {
        control,
        thread: Some(thread),
    })
}
