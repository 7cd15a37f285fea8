//! The periodic reader: one thread that collects every instrument, encodes
//! an OTLP export request and hands it to the sink, every interval. The
//! interval can change at run time (collection policies); a change wakes
//! the thread at once.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use parking_lot::{Condvar, Mutex};
use prost::Message;

use super::{encode, unix_nanos, Registry, MIN_INTERVAL};
use crate::attributes::KeyValue;
use crate::export::{Signal, Sink};

/// What the reader thread and the provider handles share.
pub(crate) struct Shared {
    pub resource: Vec<KeyValue>,
    pub registry: Arc<Registry>,
    pub sink: Option<Arc<dyn Sink>>,
    pub self_metrics: bool,
    pub start: u64,
    pub limit: usize,
}

impl Shared {
    pub(crate) fn collect(&self) -> ExportMetricsServiceRequest {
        let now = unix_nanos(SystemTime::now());
        let mut metrics: Vec<_> = self
            .registry
            .collectors()
            .iter()
            .filter_map(|c| c.collect(now))
            .collect();
        if self.self_metrics {
            if let Some(sink) = &self.sink {
                metrics.extend(encode::self_metrics(&**sink, self.start, now));
            }
        }
        encode::request(&self.resource, metrics)
    }

    pub(crate) fn export(&self) {
        if let Some(sink) = &self.sink {
            let req = self.collect();
            sink.send(Signal::Metrics, req.encode_to_vec());
        }
    }
}

struct Control {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    interval: Duration,
    stop: bool,
}

pub(crate) struct Provider {
    pub shared: Arc<Shared>,
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Provider {
    pub(crate) fn start(shared: Arc<Shared>, interval: Duration) -> Provider {
        let control = Arc::new(Control {
            state: Mutex::new(State {
                interval: interval.max(MIN_INTERVAL),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let thread = if shared.sink.is_some() {
            let (s, c) = (shared.clone(), control.clone());
            std::thread::Builder::new()
                .name("sonde-sdk-metrics".to_string())
                .spawn(move || run(&s, &c))
                .ok()
        } else {
            None
        };
        Provider {
            shared,
            control,
            thread: Mutex::new(thread),
        }
    }

    pub(crate) fn set_interval(&self, interval: Duration) {
        self.control.state.lock().interval = interval.max(MIN_INTERVAL);
        self.control.wake.notify_all();
    }

    pub(crate) fn interval(&self) -> Duration {
        self.control.state.lock().interval
    }

    /// Stops the reader thread; false if it was already stopped.
    pub(crate) fn stop(&self) -> bool {
        let was_running = !std::mem::replace(&mut self.control.state.lock().stop, true);
        self.control.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            // The thread only encodes and enqueues: it ends promptly.
            let _ = t.join();
        }
        was_running
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if self.stop() {
            self.shared.export();
        }
    }
}

fn run(shared: &Shared, control: &Control) {
    let mut last = Instant::now();
    loop {
        {
            let mut st = control.state.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = Instant::now();
                let left = st
                    .interval
                    .saturating_sub(now.saturating_duration_since(last));
                if left.is_zero() {
                    break;
                }
                // Also wake every second, whatever happens to notifications.
                control
                    .wake
                    .wait_for(&mut st, left.min(Duration::from_secs(1)));
            }
        }
        last = Instant::now();
        shared.export();
    }
}
