//! [`HttpSink`]: OTLP/HTTP with protobuf bodies.
//!
//! `send` puts the batch in a bounded queue and returns; one background
//! thread takes batches in order, gzips them and POSTs them to
//! `{endpoint}/v1/{metrics,traces,logs}`. Connection errors and 429, 502,
//! 503, 504 are retried with exponential backoff and jitter (or after the
//! server's `Retry-After`), up to `max_retries` times; then the batch is
//! dropped and counted. A full queue drops its oldest batch. Nothing here
//! blocks or panics in the caller.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::export::{QueuedSink, Signal};
use crate::queue::{BatchQueue, Jitter, Take, DROP_FLUSH};

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

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Sends OTLP export requests over HTTP from a background thread.
pub type HttpSink = QueuedSink<HttpSinkConfig>;

/// What the thread works with.
struct Shared {
    cfg: HttpSinkConfig,
    queue: Arc<BatchQueue>,
}

impl QueuedSink<HttpSinkConfig> {
    /// Starts the sink and its thread. If the thread cannot be started,
    /// every batch is dropped and `last_error` says why.
    pub fn new(cfg: HttpSinkConfig) -> Arc<HttpSink> {
        let queue = Arc::new(BatchQueue::new(cfg.max_queued_batches, None));
        let shared = Shared {
            cfg: cfg.clone(),
            queue: Arc::clone(&queue),
        };
        let worker = std::thread::Builder::new()
            .name("sonde-sdk-http".to_string())
            .spawn(move || shared.run());
        if let Err(e) = worker {
            queue.fail(format!("cannot start the export thread: {e}"));
        }
        // On drop, queued batches get one request timeout (at most
        // DROP_FLUSH) to leave.
        let drop_flush = cfg.timeout.min(DROP_FLUSH);
        QueuedSink::with_queue(queue, cfg, drop_flush)
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
        // One request at a time keeps the batches in order.
        while let Take::Batch((signal, body)) = self.queue.take(1, None) {
            let url = format!("{base}{}", signal.path());
            let sent = self.deliver(&agent, &url, signal, &body, &mut rng);
            self.queue.finish(signal, sent);
        }
        // What the flush before stopping did not send.
        self.queue.drain();
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
                    self.queue
                        .record_failure(Some(signal), format!("gzip failed: {e}"));
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
                    self.queue.record_failure(Some(signal), error);
                    return false;
                }
                Attempt::Retry { after, error } => (after, error),
            };
            self.queue.record_failure(Some(signal), error);
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
            if !self.queue.sleep(wait) {
                return false;
            }
        }
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

pub(crate) fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

#[cfg(test)]
mod tests;
