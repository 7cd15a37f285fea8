//! `sonde demo`: a small online shop, simulated and instrumented with
//! Sonde's own SDK, so a fresh install has live, realistic telemetry to look
//! at: traces across five services with W3C context propagation, logs inside
//! spans, RED metrics, user events, deployments, and incidents that come and
//! go so anomalies and alerts have something to find.
//!
//! Requests take real time (workers sleep through simulated latency), so
//! span timestamps, rates and durations are what a real system would show.

mod shop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use shop::Shop;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// OTLP/HTTP base URL of the server.
    pub endpoint: String,
    /// API base URL (collection policies); `None` disables them.
    pub api: Option<String>,
    /// Front-end requests per second, on average.
    pub rate: f64,
    /// Concurrent simulated users (worker threads).
    pub workers: usize,
    /// Period of the incident cycle: each period has one incident window.
    pub incident_period: Duration,
    /// Metric export interval of the simulated services.
    pub metric_interval: Duration,
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig {
            endpoint: "http://127.0.0.1:4318".into(),
            api: Some("http://127.0.0.1:7070".into()),
            rate: 20.0,
            workers: 12,
            incident_period: Duration::from_secs(600),
            metric_interval: Duration::from_secs(5),
        }
    }
}

/// The running simulation; dropping it stops the workers and flushes.
pub struct Demo {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    shop: Arc<Shop>,
}

impl Demo {
    pub fn start(cfg: DemoConfig) -> Demo {
        let stop = Arc::new(AtomicBool::new(false));
        let shop = Arc::new(Shop::new(&cfg));
        let started = Instant::now();
        let per_worker = Duration::from_secs_f64(cfg.workers.max(1) as f64 / cfg.rate.max(0.1));
        let mut workers = Vec::new();
        for w in 0..cfg.workers.max(1) {
            let (stop, shop) = (stop.clone(), shop.clone());
            let period = cfg.incident_period;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("demo-user-{w}"))
                    .spawn(move || {
                        let mut rng = shop::Rng::new(w as u64 + 1);
                        while !stop.load(Ordering::Relaxed) {
                            let phase = started.elapsed().as_secs_f64() / period.as_secs_f64();
                            shop.visit(&mut rng, phase.fract());
                            // Think time: exponential around the per-worker pace.
                            let think = per_worker.mul_f64(rng.exp());
                            sleep_until_stopped(&stop, think.min(Duration::from_secs(5)));
                        }
                    })
                    .expect("spawning a demo thread"),
            );
        }
        let (stop2, shop2) = (stop.clone(), shop.clone());
        let period = cfg.incident_period;
        workers.push(
            std::thread::Builder::new()
                .name("demo-ops".into())
                .spawn(move || shop2.operations(&stop2, started, period))
                .expect("spawning a demo thread"),
        );
        Demo {
            stop,
            workers,
            shop,
        }
    }

    /// Stops the simulation and flushes what the services hold.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.shop.flush(Duration::from_secs(3));
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.stop_inner();
        }
    }
}

pub(crate) fn sleep_until_stopped(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}
