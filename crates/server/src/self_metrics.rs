//! Sonde's own metrics, served at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sonde_store::{RejectReason, Store};

const QUERY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Default)]
struct QueryLatency {
    buckets: [u64; QUERY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// (signal, protocol).
type SignalProtocol = (&'static str, &'static str);

pub struct SelfMetrics {
    started: Instant,
    /// (protocol, HTTP status) -> requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (protocol, reason) -> refused requests.
    rejected_requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// protocol -> samples accepted.
    samples: Mutex<BTreeMap<&'static str, u64>>,
    /// (signal, protocol) -> (accepted, rejected) spans or log records.
    records: Mutex<BTreeMap<SignalProtocol, (u64, u64)>>,
    /// endpoint -> latency histogram.
    queries: Mutex<BTreeMap<&'static str, QueryLatency>>,
    /// (transport, topic or subscription, outcome) -> broker messages.
    broker_messages: Mutex<BTreeMap<(&'static str, String, &'static str), u64>>,
    /// transport -> connected to its broker.
    broker_up: Mutex<BTreeMap<&'static str, bool>>,
}

impl SelfMetrics {
    pub fn new() -> SelfMetrics {
        SelfMetrics {
            started: Instant::now(),
            requests: Mutex::new(BTreeMap::new()),
            rejected_requests: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(BTreeMap::new()),
            records: Mutex::new(BTreeMap::new()),
            queries: Mutex::new(BTreeMap::new()),
            broker_messages: Mutex::new(BTreeMap::new()),
            broker_up: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn request(&self, protocol: &'static str, status: u16) {
        *self.requests.lock().entry((protocol, status)).or_default() += 1;
    }

    pub fn rejected_request(&self, protocol: &'static str, reason: &'static str) {
        *self
            .rejected_requests
            .lock()
            .entry((protocol, reason))
            .or_default() += 1;
    }

    /// One message read off a broker: `stored`, `malformed` or
    /// `dead_lettered`.
    pub fn broker_message(&self, transport: &'static str, topic: &str, outcome: &'static str) {
        *self
            .broker_messages
            .lock()
            .entry((transport, topic.to_string(), outcome))
            .or_default() += 1;
    }

    pub fn broker_connected(&self, transport: &'static str, up: bool) {
        self.broker_up.lock().insert(transport, up);
    }

    fn render_brokers(&self, w: &mut String) {
        header(
            w,
            "sonde_broker_messages_total",
            "counter",
            "Messages read from Kafka and MQTT, by topic (or subscription) and outcome.",
        );
        for ((t, topic, outcome), n) in self.broker_messages.lock().iter() {
            let topic = topic.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                w,
                "sonde_broker_messages_total{{transport=\"{t}\",topic=\"{topic}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        header(
            w,
            "sonde_broker_connected",
            "gauge",
            "1 while the connection to the broker is up.",
        );
        for (t, up) in self.broker_up.lock().iter() {
            let _ = writeln!(
                w,
                "sonde_broker_connected{{transport=\"{t}\"}} {}",
                *up as u8
            );
        }
    }

    pub fn samples(&self, protocol: &'static str, n: u64) {
        *self.samples.lock().entry(protocol).or_default() += n;
    }

    pub fn records(
        &self,
        signal: &'static str,
        protocol: &'static str,
        accepted: u64,
        rejected: u64,
    ) {
        let mut r = self.records.lock();
        let e = r.entry((signal, protocol)).or_default();
        e.0 += accepted;
        e.1 += rejected;
    }

    /// Spans, logs and live tail.
    pub fn render_records(
        &self,
        w: &mut String,
        records: &sonde_records::RecordStore,
        tail: &crate::tail::Tail,
    ) {
        header(
            w,
            "sonde_ingest_records_total",
            "counter",
            "Spans and log records accepted, by signal and protocol.",
        );
        let r = self.records.lock();
        for ((signal, p), (n, _)) in r.iter() {
            let _ = writeln!(
                w,
                "sonde_ingest_records_total{{signal=\"{signal}\",protocol=\"{p}\"}} {n}"
            );
        }
        header(
            w,
            "sonde_ingest_records_rejected_total",
            "counter",
            "Spans and log records rejected at conversion (bad ids, bad times), by signal and protocol.",
        );
        for ((signal, p), (_, n)) in r.iter() {
            let _ = writeln!(
                w,
                "sonde_ingest_records_rejected_total{{signal=\"{signal}\",protocol=\"{p}\"}} {n}"
            );
        }
        drop(r);
        let st = records.stats();
        gauge(
            w,
            "sonde_records_buffered_spans",
            "Spans held in memory, not yet in Parquet.",
            st.buffered_spans as f64,
        );
        gauge(
            w,
            "sonde_records_buffered_logs",
            "Log records held in memory, not yet in Parquet.",
            st.buffered_logs as f64,
        );
        gauge(
            w,
            "sonde_records_buffer_bytes",
            "Estimated memory of the span and log buffers.",
            st.buffer_bytes as f64,
        );
        gauge(
            w,
            "sonde_records_segments",
            "Parquet segments of spans and logs.",
            st.segments as f64,
        );
        gauge(
            w,
            "sonde_records_segment_bytes",
            "Bytes of Parquet segments.",
            st.segment_bytes as f64,
        );
        gauge(
            w,
            "sonde_records_wal_bytes",
            "Bytes of the span and log WAL.",
            st.wal_bytes as f64,
        );
        gauge(
            w,
            "sonde_tail_subscribers",
            "Live-tail subscribers connected.",
            tail.subscribers() as f64,
        );
        gauge(
            w,
            "sonde_tail_queued_bytes",
            "Bytes of spans and logs queued for live-tail subscribers.",
            tail.queued_bytes() as f64,
        );
        header(
            w,
            "sonde_tail_dropped_subscribers_total",
            "counter",
            "Live-tail subscribers disconnected for being too slow.",
        );
        let _ = writeln!(w, "sonde_tail_dropped_subscribers_total {}", tail.dropped());
    }

    pub fn query(&self, endpoint: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut q = self.queries.lock();
        let h = q.entry(endpoint).or_default();
        for (i, b) in QUERY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn render(&self, store: &Store) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        header(
            w,
            "sonde_ingest_requests_total",
            "counter",
            "Write requests by protocol and HTTP status.",
        );
        for ((p, code), n) in self.requests.lock().iter() {
            let _ = writeln!(
                w,
                "sonde_ingest_requests_total{{protocol=\"{p}\",code=\"{code}\"}} {n}"
            );
        }
        header(
            w,
            "sonde_rejected_requests_total",
            "counter",
            "Write requests refused, by protocol and reason.",
        );
        for ((p, r), n) in self.rejected_requests.lock().iter() {
            let _ = writeln!(
                w,
                "sonde_rejected_requests_total{{protocol=\"{p}\",reason=\"{r}\"}} {n}"
            );
        }
        header(
            w,
            "sonde_ingested_samples_total",
            "counter",
            "Samples accepted, by protocol.",
        );
        for (p, n) in self.samples.lock().iter() {
            let _ = writeln!(w, "sonde_ingested_samples_total{{protocol=\"{p}\"}} {n}");
        }
        header(
            w,
            "sonde_rejected_samples_total",
            "counter",
            "Samples rejected by the store, by reason.",
        );
        for r in RejectReason::ALL {
            let _ = writeln!(
                w,
                "sonde_rejected_samples_total{{reason=\"{}\"}} {}",
                r.as_str(),
                store.rejected_count(r)
            );
        }
        gauge(
            w,
            "sonde_active_series",
            "Series in the in-memory head.",
            store.num_series() as f64,
        );
        gauge(
            w,
            "sonde_head_bytes",
            "Approximate memory held by the head.",
            store.head_bytes() as f64,
        );
        gauge(
            w,
            "sonde_wal_bytes",
            "Bytes in the write-ahead log.",
            store.wal_bytes() as f64,
        );
        gauge(
            w,
            "sonde_blocks",
            "Persisted blocks.",
            store.blocks().len() as f64,
        );
        gauge(
            w,
            "sonde_blocks_bytes",
            "Bytes in persisted blocks.",
            store.blocks_bytes() as f64,
        );
        header(
            w,
            "sonde_query_duration_seconds",
            "histogram",
            "Query latency by endpoint.",
        );
        for (endpoint, h) in self.queries.lock().iter() {
            for (i, b) in QUERY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    w,
                    "sonde_query_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{b}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                w,
                "sonde_query_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                w,
                "sonde_query_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                w,
                "sonde_query_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count
            );
        }
        if let Some((rss, cpu)) = process_stats() {
            gauge(
                w,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            );
            header(
                w,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent in seconds.",
            );
            let _ = writeln!(w, "process_cpu_seconds_total {cpu}");
        }
        gauge(
            w,
            "sonde_uptime_seconds",
            "Seconds since start.",
            self.started.elapsed().as_secs_f64(),
        );
        self.render_brokers(&mut out);
        out
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(w: &mut String, name: &str, help: &str, v: f64) {
    header(w, name, "gauge", help);
    let _ = writeln!(w, "{name} {v}");
}

/// (resident bytes, CPU seconds) from /proc/self.
fn process_stats() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((pages * 4096.0, (utime + stime) / 100.0))
}
