//! Sends a pre-encoded plan to one system, one client thread per lane.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::workload::{Plan, Request};

#[derive(Debug, Default)]
pub struct IngestOutcome {
    /// Samples in requests the server acknowledged with 2xx.
    pub samples_ok: u64,
    pub requests_failed: u64,
    pub first_error: Option<String>,
    pub wall: Duration,
}

/// Attempts per request: 429 and 503 mean "busy, retry", as in remote write.
const MAX_ATTEMPTS: u32 = 10;

/// Does the server take the `Content-Encoding: snappy` header that the
/// remote-write spec requires senders to set? Probed with an empty request.
pub fn accepts_snappy_header(agent: &ureq::Agent, url: &str) -> Result<bool, String> {
    let empty = sonde_ingest::remote_write::encode(&[]);
    match post(agent, url, &empty, true) {
        Sent::Ok => Ok(true),
        Sent::Rejected(415, _) => Ok(false),
        Sent::Rejected(code, body) => Err(format!("HTTP {code}: {body}")),
        Sent::Busy => Err("server busy".into()),
        Sent::Failed(e) => Err(e),
    }
}

/// Sends every lane concurrently. `snappy_header` sets `Content-Encoding:
/// snappy`; without it the bodies are still snappy, as the protocol says.
pub fn send_plan(
    agent: &ureq::Agent,
    url: &str,
    plan: &Plan,
    snappy_header: bool,
) -> IngestOutcome {
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for lane in &plan.lanes {
            let (ok, failed, first_error) = (&ok, &failed, &first_error);
            scope.spawn(move || {
                for req in lane {
                    match send(agent, url, req, snappy_header) {
                        Ok(()) => {
                            ok.fetch_add(req.samples as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    IngestOutcome {
        samples_ok: ok.into_inner(),
        requests_failed: failed.into_inner(),
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
        wall: started.elapsed(),
    }
}

/// What became of one POST.
enum Sent {
    Ok,
    /// 429 or 503: the server asks to retry later.
    Busy,
    Rejected(u16, String),
    Failed(String),
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8], snappy_header: bool) -> Sent {
    let mut req = agent
        .post(url)
        .set("Content-Type", "application/x-protobuf")
        .set("X-Prometheus-Remote-Write-Version", "0.1.0");
    if snappy_header {
        req = req.set("Content-Encoding", "snappy");
    }
    match req.send_bytes(body) {
        Ok(_) => Sent::Ok,
        Err(ureq::Error::Status(429 | 503, _)) => Sent::Busy,
        Err(ureq::Error::Status(code, resp)) => Sent::Rejected(
            code,
            resp.into_string().unwrap_or_default().trim().to_string(),
        ),
        Err(e) => Sent::Failed(e.to_string()),
    }
}

fn send(agent: &ureq::Agent, url: &str, req: &Request, snappy_header: bool) -> Result<(), String> {
    let mut backoff = Duration::from_millis(50);
    for _ in 0..MAX_ATTEMPTS {
        match post(agent, url, &req.body, snappy_header) {
            Sent::Ok => return Ok(()),
            Sent::Busy => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Sent::Rejected(code, body) => return Err(format!("HTTP {code}: {body}")),
            Sent::Failed(e) => return Err(e),
        }
    }
    Err(format!("still busy after {MAX_ATTEMPTS} attempts"))
}
