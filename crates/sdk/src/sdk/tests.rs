use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use prost::Message;

use super::*;
use crate::export::MemorySink;
use crate::logs::Severity;

#[test]
fn policy_fields_override_and_nulls_restore_defaults() {
    let sink = MemorySink::new();
    let traces = TracerProvider::new(sink.clone(), TraceConfig::default());
    let logs = LoggerProvider::new(sink.clone(), LogConfig::default());
    let metrics = MeterProvider::builder()
        .with_sink(sink.clone())
        .with_interval(Duration::from_secs(10))
        .build();
    let d = Defaults {
        ratio: 0.5,
        interval: Duration::from_secs(10),
        min_severity: 5,
    };
    apply_policy(
        &EffectivePolicy {
            version: 7,
            settings: crate::policy::Settings {
                trace_sampling_ratio: Some(0.25),
                metric_interval_ms: Some(5000),
                min_log_severity: Some(13),
                collectors: None,
            },
        },
        d,
        &traces,
        &logs,
        &metrics,
    );
    assert!((traces.sampling_ratio() - 0.25).abs() < 1e-12);
    assert_eq!(metrics.interval(), Duration::from_secs(5));
    assert_eq!(logs.min_severity(), 13);

    apply_policy(
        &EffectivePolicy {
            version: 8,
            ..EffectivePolicy::default()
        },
        d,
        &traces,
        &logs,
        &metrics,
    );
    assert!((traces.sampling_ratio() - 0.5).abs() < 1e-12);
    assert_eq!(metrics.interval(), Duration::from_secs(10));
    assert_eq!(logs.min_severity(), 5);
    metrics.shutdown(Duration::from_millis(100));
}

#[derive(Default)]
struct Received {
    posts: Mutex<Vec<(String, Vec<u8>)>>,
}

/// Request line, lowercased headers, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP request.
fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((line, headers, body))
}

fn handle(mut s: TcpStream, got: &Received) {
    while let Some((line, headers, body)) = read_request(&mut s) {
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        if path.starts_with("/api/v1/policies/watch") {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                  event: policy\ndata: {\"version\": 4, \"trace_sampling_ratio\": 1.0, \"metric_interval_ms\": null, \"min_log_severity\": 13, \"collectors\": null}\n\n",
            );
            std::thread::sleep(Duration::from_secs(5));
            return;
        }
        let body = if headers
            .iter()
            .any(|(k, v)| k == "content-encoding" && v == "gzip")
        {
            let mut out = Vec::new();
            let _ = flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut out);
            out
        } else {
            body
        };
        got.posts.lock().push((path, body));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
}

#[test]
fn init_exports_over_http_and_follows_policies() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Received::default());
    {
        let got = Arc::clone(&got);
        std::thread::spawn(move || {
            for s in listener.incoming().take(64).flatten() {
                let got = Arc::clone(&got);
                std::thread::spawn(move || handle(s, &got));
            }
        });
    }
    let sdk = init(Config {
        service_name: "checkout".into(),
        endpoint: format!("http://{addr}"),
        api: Some(format!("http://{addr}")),
        resource: vec![KeyValue::new("deployment.environment", "test")],
        trace_sampling_ratio: 0.0,
        ..Config::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while sdk.policy().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sdk.policy().map(|p| p.version), Some(4));
    // The policy's ratio 1.0 replaced the configured 0.0.
    let tracer = sdk.tracer("checkout.http");
    let logger = sdk.logger("checkout.http");
    tracer.in_span("GET /cart", |span| {
        assert!(span.is_recording());
        logger.emit(Severity::INFO, "below the policy's minimum", []);
        logger.emit(Severity::WARN, "slow", []);
    });
    assert!(sdk.shutdown(Duration::from_secs(10)));

    let posts = got.posts.lock();
    let traces: Vec<ExportTraceServiceRequest> = posts
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .map(|(_, b)| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
        .collect();
    let spans: Vec<_> = traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "GET /cart");
    let res = traces[0].resource_spans[0].resource.as_ref().unwrap();
    let keys: Vec<&str> = res.attributes.iter().map(|a| a.key.as_str()).collect();
    for k in ["service.name", "host.name", "deployment.environment"] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    let logs: Vec<_> = posts
        .iter()
        .filter(|(p, _)| p == "/v1/logs")
        .map(|(_, b)| ExportLogsServiceRequest::decode(b.as_slice()).unwrap())
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    assert_eq!(logs.len(), 1, "the INFO record was filtered by the policy");
    assert_eq!(logs[0].severity_number, 13);
    assert_eq!(logs[0].span_id, spans[0].span_id);
    assert!(posts.iter().any(|(p, _)| p == "/v1/metrics"));
    assert!(posts.iter().any(|(p, _)| p == "/api/v1/clients/status"));
}

#[test]
fn a_transport_or_policy_source_that_cannot_be_set_up_is_reported() {
    let sdk = init(Config {
        endpoint: "localhost:4318".into(),
        api: Some("ftp://policies".into()),
        ..Config::default()
    });
    sdk.tracer("t").start("lost").end();
    assert!(sdk.tracer_provider().force_flush(Duration::from_secs(5)));
    let h = sdk.health();
    assert!(!h.healthy);
    assert_eq!(h.dropped_batches, 1, "{h:?}");
    assert!(h.last_error.unwrap_or_default().contains("localhost:4318"));
    assert!(sdk.policy().is_none());

    // A sink that has sent nothing has no error of its own to report.
    let sdk = init(Config {
        export: Some(Export::Http(crate::http::HttpSinkConfig {
            endpoint: "http://127.0.0.1:1".into(),
            timeout: Duration::from_millis(100),
            ..Default::default()
        })),
        api: Some("ftp://policies".into()),
        ..Config::default()
    });
    let h = sdk.health();
    let e = h.last_error.unwrap_or_default();
    assert!(
        e.starts_with("policies not followed") && e.contains("ftp"),
        "{e}"
    );
    sdk.shutdown(Duration::from_millis(10));
}
