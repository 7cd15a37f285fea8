use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use parking_lot::Mutex;
use prost::Message;

use super::*;
use crate::export::Sink;

/// A request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server: answers each request with the next scripted
/// status (200 when the script runs out) and records what it got.
struct TestServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    fn start(script: Vec<(u16, Option<&'static str>)>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (seen, script) = (seen2.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &seen, &script));
            }
        });
        TestServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

type Script = Mutex<VecDeque<(u16, Option<&'static str>)>>;

fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, script: &Script) {
    let mut out = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock().push(Seen {
            path,
            headers,
            body,
        });
        let (status, retry_after) = script.lock().pop_front().unwrap_or((200, None));
        let extra = retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}\r\n");
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn request(name: &str) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_string(),
                    ..Metric::default()
                }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn config(url: &str) -> HttpSinkConfig {
    HttpSinkConfig {
        endpoint: url.to_string(),
        timeout: Duration::from_secs(2),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_retries: 3,
        ..HttpSinkConfig::default()
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("gzip body");
    out
}

#[test]
fn gzip_body_decodes_to_the_request() {
    let server = TestServer::start(vec![]);
    let sink = HttpSink::new(HttpSinkConfig {
        headers: vec![("x-tenant".to_string(), "t1".to_string())],
        ..config(&server.url)
    });
    let req = request("m1");
    sink.send(Signal::Metrics, req.encode_to_vec());
    assert!(sink.flush(Duration::from_secs(5)));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path, "/v1/metrics");
    assert_eq!(s.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(s.header("content-encoding"), Some("gzip"));
    assert_eq!(s.header("x-tenant"), Some("t1"));
    let decoded =
        ExportMetricsServiceRequest::decode(gunzip(&s.body).as_slice()).expect("protobuf");
    assert_eq!(decoded, req);
    let stats = sink.stats();
    assert_eq!((stats.sent_batches, stats.dropped_batches), (1, 0));
    assert_eq!(
        sink.signal_stats(Signal::Metrics).map(|s| s.sent_batches),
        Some(1)
    );
    assert_eq!(
        sink.signal_stats(Signal::Traces).map(|s| s.sent_batches),
        Some(0)
    );
}

#[test]
fn retries_on_503_then_succeeds() {
    let server = TestServer::start(vec![(503, None), (503, Some("0")), (200, None)]);
    let sink = HttpSink::new(config(&server.url));
    sink.send(Signal::Traces, vec![1, 2, 3]);
    assert!(sink.flush(Duration::from_secs(5)));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.path == "/v1/traces"));
    assert!(seen.iter().all(|s| gunzip(&s.body) == [1, 2, 3]));
    let stats = sink.stats();
    assert_eq!(stats.sent_batches, 1);
    assert_eq!(stats.failed_attempts, 2);
    assert_eq!(stats.dropped_batches, 0);
    assert!(stats.last_error.unwrap_or_default().contains("503"));
}

#[test]
fn gives_up_after_max_retries_and_on_client_errors() {
    let server = TestServer::start(
        vec![(503, None); 4]
            .into_iter()
            .chain([(400, None)])
            .collect(),
    );
    let sink = HttpSink::new(config(&server.url));
    sink.send(Signal::Logs, vec![1]);
    sink.send(Signal::Logs, vec![2]);
    assert!(sink.flush(Duration::from_secs(5)));
    // 1 try + 3 retries for the first, one try for the 400.
    assert_eq!(server.seen().len(), 5);
    let stats = sink.stats();
    assert_eq!((stats.sent_batches, stats.dropped_batches), (0, 2));
    assert_eq!(stats.failed_attempts, 5);
    assert!(stats.last_error.unwrap_or_default().contains("400"));
}

#[test]
fn queue_overflow_drops_the_oldest_and_counts() {
    // A server that never answers keeps the first batch in flight.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sink = HttpSink::new(HttpSinkConfig {
        max_queued_batches: 3,
        max_retries: 0,
        timeout: Duration::from_millis(300),
        ..config(&url)
    });
    sink.send(Signal::Metrics, vec![0]);
    // Wait until the worker has taken batch 0.
    let start = Instant::now();
    while sink.stats().queued_batches > 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 1..=5u8 {
        sink.send(Signal::Metrics, vec![i]);
    }
    let st = sink.stats();
    assert_eq!(st.queued_batches, 3);
    assert_eq!(st.dropped_batches, 2, "batches 1 and 2 dropped");
    assert_eq!(sink.queue.first_bytes(), vec![3, 4, 5]);
    drop(listener);
}

#[test]
fn never_blocks_when_the_server_is_down() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("addr")
        .port();
    let sink = HttpSink::new(HttpSinkConfig {
        max_queued_batches: 8,
        ..config(&format!("http://127.0.0.1:{port}"))
    });
    let start = Instant::now();
    for i in 0..10_000u32 {
        sink.send(Signal::Metrics, i.to_le_bytes().to_vec());
    }
    assert!(start.elapsed() < Duration::from_millis(500), "send blocked");
    let st = sink.stats();
    assert!(st.dropped_batches >= 10_000 - 9, "{st:?}");
    assert!(!sink.flush(Duration::from_millis(50)));
    let start = Instant::now();
    drop(sink);
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_bad_endpoint_fails_without_panicking() {
    let sink = HttpSink::new(config("not a url"));
    sink.send(Signal::Metrics, vec![1]);
    assert!(sink.flush(Duration::from_secs(2)));
    let st = sink.stats();
    assert_eq!(st.dropped_batches, 1);
    assert!(st.last_error.is_some());
}
