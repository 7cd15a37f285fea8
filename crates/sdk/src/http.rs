//! [`HttpSink`]: OTLP/HTTP with protobuf bodies.
//!
//! `send` puts the batch in a bounded queue and returns; one background
//! thread takes batches in order, gzips them and POSTs them to
//! `{endpoint}/v1/{metrics,traces,logs}`. Connection errors and 429, 502,
//! 503, 504 are retried with exponential backoff and jitter (or after the
//! server's `Retry-After`), up to `max_retries` times; then the batch is
//! dropped and counted. A full queue drops its oldest batch. Nothing here
//! blocks or panics in the caller.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::export::{Signal, Sink, SinkStats};

/// Configuration of an [`HttpSink`].
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// Base URL; the signal's path (`/v1/metrics`, ...) is appended.
    pub endpoint: String,
    /// Extra request headers (authentication, tenant).
    pub headers: Vec<(String, String)>,
    /// Time limit of one request, connection included.
    pub timeout: Duration,
    /// Batches waiting to be sent; beyond it the oldest is dropped.
    pub max_queued_batches: usize,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Retries of a batch after its first attempt failed retryably.
    pub max_retries: u32,
    /// Wait before the first retry; doubled at each further one.
    pub initial_backoff: Duration,
    /// Longest wait between retries (unless the server asks for longer).
    pub max_backoff: Duration,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            endpoint: "http://127.0.0.1:4318".to_string(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            max_queued_batches: 256,
            gzip: true,
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Longest wait for queued batches when the sink is dropped.
const DROP_FLUSH: Duration = Duration::from_secs(5);

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Sends OTLP export requests over HTTP from a background thread.
pub struct HttpSink {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    cfg: HttpSinkConfig,
    state: Mutex<State>,
    /// Signalled when a batch is queued or the sink stops.
    work: Condvar,
    /// Signalled when a batch is done with or the worker waits for work.
    done: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(Signal, Vec<u8>)>,
    in_flight: bool,
    stop: bool,
    counts: [Counts; 3],
    last_error: Option<String>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    sent: u64,
    dropped: u64,
    failed_attempts: u64,
}

impl HttpSink {
    /// Starts the sink and its thread. If the thread cannot be started,
    /// every batch is dropped and `last_error` says why.
    pub fn new(cfg: HttpSinkConfig) -> Arc<HttpSink> {
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("sonde-sdk-http".to_string())
            .spawn(move || worker_shared.run());
        let worker = match worker {
            Ok(handle) => Some(handle),
            Err(e) => {
                let mut st = shared.state.lock();
                st.stop = true;
                st.last_error = Some(format!("cannot start the export thread: {e}"));
                None
            }
        };
        Arc::new(HttpSink {
            shared,
            worker: Mutex::new(worker),
        })
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &HttpSinkConfig {
        &self.shared.cfg
    }

    fn stats_of(&self, signal: Option<Signal>) -> SinkStats {
        let st = self.shared.state.lock();
        let mut out = SinkStats {
            last_error: st.last_error.clone(),
            ..SinkStats::default()
        };
        for s in Signal::ALL {
            if signal.is_some_and(|want| want != s) {
                continue;
            }
            let c = st.counts[s.index()];
            out.sent_batches += c.sent;
            out.dropped_batches += c.dropped;
            out.failed_attempts += c.failed_attempts;
        }
        out.queued_batches = st
            .queue
            .iter()
            .filter(|(s, _)| signal.is_none_or(|want| want == *s))
            .count() as u64;
        out
    }
}

impl Sink for HttpSink {
    fn send(&self, signal: Signal, body: Vec<u8>) {
        let mut st = self.shared.state.lock();
        if st.stop {
            st.counts[signal.index()].dropped += 1;
            return;
        }
        if st.queue.len() >= self.shared.cfg.max_queued_batches.max(1) {
            if let Some((old, _)) = st.queue.pop_front() {
                st.counts[old.index()].dropped += 1;
            }
        }
        st.queue.push_back((signal, body));
        drop(st);
        self.shared.work.notify_one();
    }

    fn stats(&self) -> SinkStats {
        self.stats_of(None)
    }

    fn signal_stats(&self, signal: Signal) -> Option<SinkStats> {
        Some(self.stats_of(Some(signal)))
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = later(timeout);
        let mut st = self.shared.state.lock();
        while !st.queue.is_empty() || st.in_flight {
            if st.stop && self.worker.lock().is_none() {
                return false;
            }
            if self.shared.done.wait_until(&mut st, deadline).timed_out() {
                return st.queue.is_empty() && !st.in_flight;
            }
        }
        true
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        // Best effort: give queued batches one request timeout (at most
        // DROP_FLUSH) to leave, then stop. The thread is not joined: a hung
        // request must not hang the program's exit.
        self.flush(self.shared.cfg.timeout.min(DROP_FLUSH));
        self.shared.state.lock().stop = true;
        self.shared.work.notify_all();
        self.worker.lock().take();
    }
}

enum Attempt {
    Sent,
    Retry {
        after: Option<Duration>,
        error: String,
    },
    Fail(String),
}

impl Shared {
    fn run(&self) {
        let agent = ureq::AgentBuilder::new()
            .timeout(self.cfg.timeout)
            .timeout_connect(self.cfg.timeout)
            .build();
        let base = self.cfg.endpoint.trim_end_matches('/').to_string();
        let mut rng = Jitter::new();
        loop {
            let (signal, body) = {
                let mut st = self.state.lock();
                loop {
                    if st.stop {
                        // What the flush before stopping did not send.
                        while let Some((s, _)) = st.queue.pop_front() {
                            st.counts[s.index()].dropped += 1;
                        }
                        drop(st);
                        self.done.notify_all();
                        return;
                    }
                    if let Some(batch) = st.queue.pop_front() {
                        st.in_flight = true;
                        break batch;
                    }
                    self.done.notify_all();
                    self.work.wait(&mut st);
                }
            };
            let url = format!("{base}{}", signal.path());
            let sent = self.deliver(&agent, &url, signal, &body, &mut rng);
            let mut st = self.state.lock();
            st.in_flight = false;
            let c = &mut st.counts[signal.index()];
            if sent {
                c.sent += 1;
            } else {
                c.dropped += 1;
            }
            drop(st);
            self.done.notify_all();
        }
    }

    /// Sends one batch, retrying; true if the server accepted it.
    fn deliver(
        &self,
        agent: &ureq::Agent,
        url: &str,
        signal: Signal,
        body: &[u8],
        rng: &mut Jitter,
    ) -> bool {
        let payload = if self.cfg.gzip {
            match gzip(body) {
                Ok(z) => z,
                Err(e) => {
                    self.state.lock().last_error = Some(format!("gzip failed: {e}"));
                    return false;
                }
            }
        } else {
            body.to_vec()
        };
        let mut backoff = self.cfg.initial_backoff;
        let mut attempt = 0u32;
        loop {
            let (after, error) = match self.post(agent, url, &payload) {
                Attempt::Sent => return true,
                Attempt::Fail(error) => {
                    self.record_failure(signal, error);
                    return false;
                }
                Attempt::Retry { after, error } => (after, error),
            };
            self.record_failure(signal, error);
            if attempt >= self.cfg.max_retries {
                return false;
            }
            attempt += 1;
            let wait = match after {
                Some(server_says) => server_says.min(MAX_RETRY_AFTER),
                None => rng.jitter(backoff),
            };
            backoff = backoff.saturating_mul(2).min(self.cfg.max_backoff);
            // Sleep, but wake up to give up when the sink stops.
            let deadline = later(wait);
            let mut st = self.state.lock();
            while !st.stop {
                if self.work.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
            if st.stop {
                return false;
            }
        }
    }

    fn record_failure(&self, signal: Signal, error: String) {
        let mut st = self.state.lock();
        st.counts[signal.index()].failed_attempts += 1;
        st.last_error = Some(error);
    }

    fn post(&self, agent: &ureq::Agent, url: &str, payload: &[u8]) -> Attempt {
        let mut req = agent
            .post(url)
            .set("content-type", "application/x-protobuf");
        if self.cfg.gzip {
            req = req.set("content-encoding", "gzip");
        }
        for (k, v) in &self.cfg.headers {
            req = req.set(k, v);
        }
        match req.send_bytes(payload) {
            Ok(resp) => {
                // Read the (small) response so the connection can be reused.
                let _ = resp
                    .into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut Vec::new());
                Attempt::Sent
            }
            Err(ureq::Error::Status(code, resp)) => {
                let after = resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let error = format!("{url}: HTTP {code}");
                let _ = resp
                    .into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut Vec::new());
                if matches!(code, 429 | 502 | 503 | 504) {
                    Attempt::Retry { after, error }
                } else {
                    Attempt::Fail(error)
                }
            }
            Err(ureq::Error::Transport(t)) => {
                let error = format!("{url}: {t}");
                match t.kind() {
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                        Attempt::Fail(error)
                    }
                    _ => Attempt::Retry { after: None, error },
                }
            }
        }
    }
}

/// Now plus `d`, or far in the future if that overflows.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// Full-ish jitter: a wait uniformly between half the backoff and all of it.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Jitter(t | 1)
    }

    fn jitter(&mut self, backoff: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let half = backoff / 2;
        let frac = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests;
