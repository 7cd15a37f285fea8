//! End-to-end tests: a real `sonde serve` process, talked to the way users
//! do (HTTP, remote write, OTLP/HTTP), including bad input, kill -9 and
//! restart.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use serde_json::Value;
use sonde_ingest::otlp::collector::ExportMetricsServiceRequest;
use sonde_model::{Labels, Sample, Series};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Server {
    child: Child,
    dir: PathBuf,
    extra: Vec<String>,
    api: String,
    otlp_http: String,
    ports: [u16; 3],
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let ports = [free_port(), free_port(), free_port()];
        Self::start_on(dir, extra.iter().map(|s| s.to_string()).collect(), ports)
    }

    fn start_on(dir: &Path, extra: Vec<String>, ports: [u16; 3]) -> Server {
        Self::start_env(dir, extra, ports, &[])
    }

    fn start_env(dir: &Path, extra: Vec<String>, ports: [u16; 3], env: &[(&str, &str)]) -> Server {
        let log = dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sonde"))
            .arg("serve")
            .args(["--data-dir", dir.to_str().unwrap()])
            .args(["--api-addr", &format!("127.0.0.1:{}", ports[0])])
            .args(["--otlp-grpc-addr", &format!("127.0.0.1:{}", ports[1])])
            .args(["--otlp-http-addr", &format!("127.0.0.1:{}", ports[2])])
            .args(&extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start sonde");
        let s = Server {
            child,
            dir: dir.to_path_buf(),
            extra,
            api: format!("http://127.0.0.1:{}", ports[0]),
            otlp_http: format!("http://127.0.0.1:{}", ports[2]),
            ports,
            log,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ureq::get(&format!("{}/ready", self.api)).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "sonde did not become ready; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Waits for the server to end by itself (a crash point); its status.
    fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, PathBuf, [u16; 3]) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let parts = (status, self.dir.clone(), self.ports);
                std::mem::forget(self);
                return parts;
            }
            assert!(
                Instant::now() < deadline,
                "sonde did not stop at its crash point"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stored sample of `name` up to `last` (ms): (t, v), in order.
    fn raw(&self, name: &str, from: i64, last: i64) -> Vec<(i64, f64)> {
        let v = self.query(&format!("{name}[{}ms]", last - from + 1), last);
        assert_eq!(v["status"], "success", "{v}");
        let mut out: Vec<(i64, f64)> = Vec::new();
        for r in v["data"]["result"].as_array().unwrap() {
            for p in r["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                out.push((t, parse_value(&p[1])));
            }
        }
        out.sort_by_key(|p| p.0);
        out
    }

    fn kill9(mut self) -> (PathBuf, Vec<String>, [u16; 3]) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let parts = (
            self.dir.clone(),
            std::mem::take(&mut self.extra),
            self.ports,
        );
        std::mem::forget(self);
        parts
    }

    /// SIGTERM and wait: the orderly shutdown path.
    fn terminate(mut self) -> std::process::ExitStatus {
        send_signal(self.child.id() as i32, 15);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::mem::forget(self);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sonde did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn query(&self, expr: &str, time_ms: i64) -> Value {
        let url = format!("{}/api/v1/query", self.api);
        let resp = ureq::get(&url)
            .query("query", expr)
            .query("time", &format!("{}", time_ms as f64 / 1000.0))
            .call();
        json_of(resp)
    }

    /// (labels as string, value) of an instant vector result.
    fn vector(&self, expr: &str, time_ms: i64) -> Vec<(String, f64)> {
        let v = self.query(expr, time_ms);
        assert_eq!(v["status"], "success", "{expr}: {v}");
        let mut out: Vec<(String, f64)> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut labels: Vec<String> = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                    .collect();
                labels.sort();
                (labels.join(","), parse_value(&r["value"][1]))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn remote_write(&self, series: &[Series]) -> (u16, String) {
        let body = sonde_ingest::remote_write::encode(series);
        post(
            &format!("{}/api/v1/write", self.api),
            "application/x-protobuf",
            &[
                ("content-encoding", "snappy"),
                ("x-prometheus-remote-write-version", "0.1.0"),
            ],
            &body,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace forbids `unsafe`, so signals go through kill(1).
fn send_signal(pid: i32, sig: i32) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str().unwrap() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s.parse().unwrap(),
    }
}

fn json_of(resp: Result<ureq::Response, ureq::Error>) -> Value {
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    serde_json::from_str(&resp.into_string().unwrap()).unwrap()
}

fn status_of(resp: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match resp {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("request failed: {e}"),
    }
}

fn post(url: &str, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut req = ureq::post(url).set("content-type", content_type);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    status_of(req.send_bytes(body))
}

fn series(name: &str, extra: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    let mut pairs = vec![("__name__", name)];
    pairs.extend_from_slice(extra);
    Series {
        labels: Labels::from_pairs(pairs),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        histograms: Vec::new(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn otlp_gauge_json(name: &str, service: &str, t_ms: i64, value: f64) -> String {
    serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "service.instance.id", "value": {"stringValue": "i-1"}},
                {"key": "host.name", "value": {"stringValue": "box"}}
            ]},
            "scopeMetrics": [{
                "scope": {"name": "e2e", "version": "1"},
                "metrics": [{
                    "name": name,
                    "unit": "By",
                    "gauge": {"dataPoints": [{
                        "timeUnixNano": (t_ms * 1_000_000).to_string(),
                        "asDouble": value,
                        "attributes": [{"key": "disk.device", "value": {"stringValue": "sda"}}]
                    }]}
                }]
            }]
        }]
    })
    .to_string()
}

#[test]
fn remote_write_then_promql() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let t0 = (now_ms() - 60_000) / 10_000 * 10_000;
    let samples: Vec<(i64, f64)> = (0..5).map(|i| (t0 + i * 10_000, (i * 10) as f64)).collect();
    let (code, body) = s.remote_write(&[
        series(
            "http_requests_total",
            &[("job", "api"), ("code", "200")],
            &samples,
        ),
        series(
            "http_requests_total",
            &[("job", "api"), ("code", "500")],
            &samples[..3],
        ),
    ]);
    assert_eq!(code, 204, "{body}");
    let at = t0 + 40_000;
    assert_eq!(
        s.vector("http_requests_total", at),
        vec![
            (
                "__name__=http_requests_total,code=200,job=api".to_string(),
                40.0
            ),
            (
                "__name__=http_requests_total,code=500,job=api".to_string(),
                20.0
            ),
        ]
    );
    assert_eq!(
        s.vector("sum by (job) (http_requests_total)", at),
        vec![("job=api".to_string(), 60.0)]
    );
    let rate = s.vector(r#"rate(http_requests_total{code="200"}[1m])"#, at);
    assert_eq!(rate.len(), 1);
    // Prometheus's extrapolation: 40 over the 40 s the samples cover, not
    // extrapolated below zero at the start, divided by the 60 s window.
    assert!((rate[0].1 - 40.0 / 60.0).abs() < 1e-9, "{rate:?}");

    let series_resp = json_of(
        ureq::get(&format!("{}/api/v1/series", s.api))
            .query("match[]", "http_requests_total")
            .call(),
    );
    assert_eq!(
        series_resp["data"].as_array().unwrap().len(),
        2,
        "{series_resp}"
    );
    let labels = json_of(ureq::get(&format!("{}/api/v1/labels", s.api)).call());
    assert_eq!(
        labels["data"],
        serde_json::json!(["__name__", "code", "job"])
    );
    let values = json_of(ureq::get(&format!("{}/api/v1/label/code/values", s.api)).call());
    assert_eq!(values["data"], serde_json::json!(["200", "500"]));
    let range = json_of(
        ureq::get(&format!("{}/api/v1/query_range", s.api))
            .query("query", r#"http_requests_total{code="500"}"#)
            .query("start", &format!("{}", t0 / 1000))
            .query("end", &format!("{}", (t0 + 40_000) / 1000))
            .query("step", "10s")
            .call(),
    );
    assert_eq!(range["data"]["resultType"], "matrix");
    // Three samples, then the lookback keeps the last one visible.
    let values = range["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 5, "{range}");
    let build = json_of(ureq::get(&format!("{}/api/v1/status/buildinfo", s.api)).call());
    assert_eq!(build["status"], "success");
}

#[test]
fn otlp_http_json_protobuf_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let t = now_ms() - 5_000;
    let url = format!("{}/v1/metrics", s.otlp_http);
    let json = otlp_gauge_json("system.disk.free", "db", t, 123.5);
    let (code, body) = post(&url, "application/json", &[], json.as_bytes());
    assert_eq!(code, 200, "{body}");
    let want = "__name__=system_disk_free_bytes,disk_device=sda,instance=i-1,job=db,otel_scope_name=e2e,otel_scope_version=1";
    assert_eq!(
        s.vector("system_disk_free_bytes", t),
        vec![(want.to_string(), 123.5)]
    );
    let info = s.vector("target_info", t);
    assert_eq!(
        info,
        vec![(
            "__name__=target_info,host_name=box,instance=i-1,job=db".to_string(),
            1.0
        )]
    );

    // The same request as gzip'd protobuf, a second later and another value.
    let req: ExportMetricsServiceRequest =
        serde_json::from_str(&otlp_gauge_json("system.disk.free", "db", t + 1000, 99.0)).unwrap();
    let (code, body) = post(
        &url,
        "application/x-protobuf",
        &[("content-encoding", "gzip")],
        &gzip(&req.encode_to_vec()),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.vector("system_disk_free_bytes", t + 1000)[0].1, 99.0);
    let meta = json_of(ureq::get(&format!("{}/api/v1/metadata", s.api)).call());
    assert_eq!(
        meta["data"]["system_disk_free_bytes"][0]["type"], "gauge",
        "{meta}"
    );
    assert_eq!(
        meta["data"]["system_disk_free_bytes"][0]["unit"], "bytes",
        "{meta}"
    );
}

#[test]
fn delta_counters_read_correctly_with_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let t0 = now_ms() - 120_000;
    let url = format!("{}/v1/metrics", s.otlp_http);
    // Each export carries the increase since the previous one: 6 per 10 s.
    for i in 0..12 {
        let body = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": "jobs.done", "unit": "{job}",
            "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [{
                "startTimeUnixNano": ((t0 + (i - 1) * 10_000) * 1_000_000).to_string(),
                "timeUnixNano": ((t0 + i * 10_000) * 1_000_000).to_string(),
                "asInt": "6"
            }]}
        }]}]}]});
        let (code, resp) = post(&url, "application/json", &[], body.to_string().as_bytes());
        assert_eq!(code, 200, "{resp}");
    }
    let at = t0 + 110_000;
    assert_eq!(s.vector("jobs_done_total", at)[0].1, 72.0);
    let rate = s.vector("rate(jobs_done_total[1m])", at);
    assert!((rate[0].1 - 0.6).abs() < 1e-9, "{rate:?}");
}

#[test]
fn bad_input_gets_precise_errors_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        &tmp.path().join("d"),
        &[
            "--max-request-bytes",
            "100000",
            "--max-series-per-metric",
            "3",
            "--query-max-samples",
            "50",
        ],
    );
    let t = now_ms() - 1000;
    assert_eq!(s.remote_write(&[series("kept", &[], &[(t, 1.0)])]).0, 204);
    let write = format!("{}/api/v1/write", s.api);
    let otlp = format!("{}/v1/metrics", s.otlp_http);

    let (code, body) = post(&write, "application/x-protobuf", &[], b"\x00garbage");
    assert_eq!(code, 400);
    assert!(body.contains("snappy"), "{body}");
    let bad_proto = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff\xff\xff")
        .unwrap();
    let (code, body) = post(&write, "application/x-protobuf", &[], &bad_proto);
    assert_eq!((code, body.contains("protobuf")), (400, true), "{body}");
    let (code, body) = post(&otlp, "application/json", &[], b"{\"resourceMetrics\": [");
    assert_eq!(
        (code, body.contains("malformed json")),
        (400, true),
        "{body}"
    );
    let (code, body) = post(&otlp, "application/x-protobuf", &[], b"\xff\xff\xff");
    assert_eq!(
        (code, body.contains("malformed protobuf")),
        (400, true),
        "{body}"
    );
    let (code, body) = post(&otlp, "text/plain", &[], b"hello");
    assert_eq!(
        (code, body.contains("unsupported content type")),
        (415, true),
        "{body}"
    );
    let (code, body) = post(
        &otlp,
        "application/json",
        &[("content-encoding", "br")],
        b"{}",
    );
    assert_eq!(code, 415, "{body}");
    let (code, body) = post(&otlp, "application/json", &[], &vec![b' '; 200_000]);
    assert_eq!(
        (code, body.contains("larger than the limit")),
        (413, true),
        "{body}"
    );
    // A small gzip body that inflates past the limit is refused too.
    let (code, _) = post(
        &otlp,
        "application/json",
        &[("content-encoding", "gzip")],
        &gzip(&vec![b' '; 1_000_000]),
    );
    assert_eq!(code, 413);

    let (code, body) = s.remote_write(&[series("bad-name", &[], &[(t, 1.0)])]);
    assert_eq!(
        (code, body.contains("invalid metric name")),
        (400, true),
        "{body}"
    );
    let (code, body) = s.remote_write(&[series("ok_name", &[("bad.label", "x")], &[(t, 1.0)])]);
    assert_eq!(
        (code, body.contains("invalid label name")),
        (400, true),
        "{body}"
    );
    let (code, body) = s.remote_write(&[series("future", &[], &[(t + 86_400_000, 1.0)])]);
    assert_eq!(
        (code, body.contains("ahead of the server clock")),
        (400, true),
        "{body}"
    );
    let (code, body) = s.remote_write(&[series("past", &[], &[(t - 400 * 86_400_000, 1.0)])]);
    assert_eq!(
        (code, body.contains("older than the retention")),
        (400, true),
        "{body}"
    );

    // Series over the per-metric limit: the new one is rejected, existing
    // ones keep ingesting.
    let hosts: Vec<Series> = (0..3)
        .map(|i| series("per_host", &[("h", &i.to_string())], &[(t, 1.0)]))
        .collect();
    assert_eq!(s.remote_write(&hosts).0, 204);
    let (code, body) = s.remote_write(&[
        series("per_host", &[("h", "3")], &[(t, 1.0)]),
        series("per_host", &[("h", "0")], &[(t + 1, 2.0)]),
    ]);
    assert_eq!(
        (code, body.contains("series_per_metric_limit")),
        (400, true),
        "{body}"
    );
    assert_eq!(s.vector("per_host", t + 1).len(), 3);
    assert_eq!(s.vector(r#"per_host{h="0"}"#, t + 1)[0].1, 2.0);

    // NaN and infinities are valid sample values in Prometheus and OTLP;
    // they are stored and returned as such.
    assert_eq!(
        s.remote_write(&[
            series("odd_values", &[("k", "nan")], &[(t, f64::NAN)]),
            series("odd_values", &[("k", "inf")], &[(t, f64::INFINITY)])
        ])
        .0,
        204
    );
    let odd = s.vector("odd_values", t);
    assert!(odd[0].1.is_infinite() && odd[1].1.is_nan(), "{odd:?}");

    let v = s.query("sum(rate(kept[5m]", t);
    assert_eq!(
        (v["status"].as_str(), v["errorType"].as_str()),
        (Some("error"), Some("bad_data")),
        "{v}"
    );
    let (code, _) = status_of(
        ureq::get(&format!("{}/api/v1/query", s.api))
            .query("query", "sum(")
            .call(),
    );
    assert_eq!(code, 400);
    let (code, body) = status_of(
        ureq::get(&format!("{}/api/v1/query_range", s.api))
            .query("query", "per_host")
            .query("start", &format!("{}", (t - 3_600_000) / 1000))
            .query("end", &format!("{}", t / 1000 + 60))
            .query("step", "1")
            .call(),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("too many samples"), "{body}");

    // After all that: still serving, nothing accepted was lost.
    assert_eq!(
        s.vector("kept", t),
        vec![("__name__=kept".to_string(), 1.0)]
    );
    let metrics = ureq::get(&format!("{}/metrics", s.api))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(r#"sonde_rejected_samples_total{reason="series_per_metric_limit"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"sonde_rejected_requests_total{protocol="otlp_http",reason="too_large"} 2"#
        ),
        "{metrics}"
    );
}

/// Writes batches of 50 samples `step` ms apart in a loop, remembering
/// what was acknowledged and what was sent, until the server stops
/// answering.
fn write_until_killed(api: &str, log: &Mutex<WriteLog>, t0: i64, step: i64) {
    for i in 0i64.. {
        let batch: Vec<(i64, f64)> = (0..50)
            .map(|j| (t0 + (i * 50 + j) * step, (i * 50 + j) as f64))
            .collect();
        if batch[49].0 > now_ms() - 60_000 {
            // Data time has caught up with the clock: the server should
            // have stopped long before.
            return;
        }
        log.lock().unwrap().sent.extend(batch.iter().copied());
        let body =
            sonde_ingest::remote_write::encode(&[series("crash_test", &[("w", "1")], &batch)]);
        match ureq::post(&format!("{api}/api/v1/write"))
            .set("content-type", "application/x-protobuf")
            .send_bytes(&body)
        {
            Ok(r) if r.status() == 204 => log.lock().unwrap().acked.extend(batch),
            _ => return,
        }
    }
}

#[derive(Default)]
struct WriteLog {
    acked: Vec<(i64, f64)>,
    sent: Vec<(i64, f64)>,
}

/// After a restart: every acknowledged sample is there, exactly (time and
/// value), and nothing is there that was never sent.
fn assert_exact(s: &Server, log: &WriteLog, t0: i64) {
    assert!(!log.acked.is_empty(), "nothing was acknowledged");
    let last = log.sent.last().unwrap().0;
    let stored = s.raw("crash_test", t0, last);
    let stored_set: std::collections::BTreeSet<(i64, u64)> =
        stored.iter().map(|(t, v)| (*t, v.to_bits())).collect();
    let sent_set: std::collections::BTreeSet<(i64, u64)> =
        log.sent.iter().map(|(t, v)| (*t, v.to_bits())).collect();
    let lost: Vec<&(i64, f64)> = log
        .acked
        .iter()
        .filter(|(t, v)| !stored_set.contains(&(*t, v.to_bits())))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged samples lost, first {:?}",
        lost.len(),
        log.acked.len(),
        &lost[..lost.len().min(3)]
    );
    let invented: Vec<&(i64, f64)> = stored
        .iter()
        .filter(|(t, v)| !sent_set.contains(&(*t, v.to_bits())))
        .collect();
    assert!(invented.is_empty(), "stored but never sent: {invented:?}");
    assert_eq!(stored.len(), stored_set.len(), "a sample stored twice");
}

#[test]
fn kill_9_during_ingest_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let log = Arc::new(Mutex::new(WriteLog::default()));
    let t0 = now_ms() - 600_000;
    let writer = {
        let (api, log) = (s.api.clone(), log.clone());
        std::thread::spawn(move || write_until_killed(&api, &log, t0, 10))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let (dir, extra, ports) = s.kill9();
    writer.join().unwrap();
    let log = log.lock().unwrap();
    assert!(
        log.acked.len() > 500,
        "the writer got only {} samples acknowledged",
        log.acked.len()
    );
    let s = Server::start_on(&dir, extra, ports);
    assert_exact(&s, &log, t0);
}

/// The storage's multi-step operations, each stopped dead in the middle:
/// a WAL segment rotation, a block cut (the block durable, the head and
/// WAL not yet trimmed) and a WAL checkpoint (written, the segments it
/// replaces not yet deleted). Small WAL segments and a one-minute block
/// range, with data a second apart, make each happen within moments.
#[test]
fn a_crash_in_a_rotation_a_block_cut_or_a_checkpoint_loses_nothing_acknowledged() {
    for point in ["wal-rotate", "block-cut", "checkpoint"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let extra: Vec<String> = ["--wal-segment-size", "64KiB", "--block-range", "1m"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ports = [free_port(), free_port(), free_port()];
        let s = Server::start_env(&dir, extra.clone(), ports, &[("SONDE_CRASH_POINT", point)]);
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let t0 = now_ms() - 6 * 3_600_000;
        let writer = {
            let (api, log) = (s.api.clone(), log.clone());
            std::thread::spawn(move || write_until_killed(&api, &log, t0, 1000))
        };
        let server_log = s.log.clone();
        let (status, dir, ports) = s.wait_exit(Duration::from_secs(60));
        writer.join().unwrap();
        let text = std::fs::read_to_string(&server_log).unwrap_or_default();
        assert!(
            !status.success() && text.contains(&format!("aborting at {point}")),
            "{point}: the server did not stop there ({status}):\n{text}"
        );
        let s = Server::start_on(&dir, extra, ports);
        let log = log.lock().unwrap();
        assert_exact(&s, &log, t0);
        // Still writable and readable after the recovery.
        let t = log.acked.last().unwrap().0 + 1000;
        let (code, body) = s.remote_write(&[series("after_crash", &[], &[(t, 1.0)])]);
        assert_eq!(code, 204, "{point}: {body}");
    }
}

#[test]
fn sigterm_shuts_down_in_order_and_restart_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &["--wal-fsync", "never"]);
    let t = now_ms() - 1000;
    assert_eq!(
        s.remote_write(&[series("before_restart", &[], &[(t, 42.0)])])
            .0,
        204
    );
    let (dir, ports) = (s.dir.clone(), s.ports);
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(log.contains("WAL flushed"), "{log}");
    let s = Server::start_on(&dir, vec![], ports);
    assert_eq!(
        s.vector("before_restart", t),
        vec![("__name__=before_restart".to_string(), 42.0)]
    );
    let mut buf = String::new();
    std::fs::File::open(&s.log)
        .unwrap()
        .read_to_string(&mut buf)
        .unwrap();
    assert!(buf.contains("store opened"));
}

/// Regression tests from review: retried delta points must not double-count,
/// remote write 2.0 is refused so Prometheus falls back, a snappy header
/// declaring a huge body is refused before allocating, and a point with an
/// absurd number of attributes is dropped, not converted for minutes.
#[test]
fn retries_protocol_versions_and_hostile_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let t = now_ms() - 10_000;
    let url = format!("{}/v1/metrics", s.otlp_http);
    let delta = |t_ms: i64, v: i64| {
        serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": "retried", "sum": {"aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [{"timeUnixNano": (t_ms * 1_000_000).to_string(), "asInt": v.to_string()}]}
        }]}]}]})
        .to_string()
    };
    assert_eq!(
        post(&url, "application/json", &[], delta(t, 5).as_bytes()).0,
        200
    );
    let (code, body) = post(&url, "application/json", &[], delta(t, 5).as_bytes());
    assert_eq!(code, 200);
    assert!(body.contains("rejectedDataPoints"), "{body}");
    assert_eq!(
        post(&url, "application/json", &[], delta(t + 1000, 2).as_bytes()).0,
        200
    );
    assert_eq!(s.vector("retried_total", t + 1000)[0].1, 7.0);

    let write = format!("{}/api/v1/write", s.api);
    let body = sonde_ingest::remote_write::encode(&[series("v2", &[], &[(t, 1.0)])]);
    let (code, msg) = post(
        &write,
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        &[],
        &body,
    );
    assert_eq!(
        (code, msg.contains("remote write 1.0")),
        (415, true),
        "{msg}"
    );
    // A snappy stream whose header declares 1 GiB.
    let (code, msg) = post(
        &write,
        "application/x-protobuf",
        &[],
        &[0x80, 0x80, 0x80, 0x80, 0x04, 0x00],
    );
    assert_eq!(code, 413, "{msg}");

    let attrs: Vec<serde_json::Value> = (0..5000)
        .map(|i| serde_json::json!({"key": format!("k{i}"), "value": {"stringValue": "v"}}))
        .collect();
    let wide = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "wide", "gauge": {"dataPoints": [{"timeUnixNano": (t * 1_000_000).to_string(), "asDouble": 1.0, "attributes": attrs}]}
    }]}]}]});
    let started = Instant::now();
    let (code, body) = post(&url, "application/json", &[], wide.to_string().as_bytes());
    assert_eq!(code, 200);
    assert!(body.contains("more than 256 attributes"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(s.vector("wide", t).is_empty());
}

#[test]
fn cli_client_commands_talk_to_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let t = now_ms() - 1000;
    assert_eq!(
        s.remote_write(&[series("cli_metric", &[("job", "a")], &[(t, 7.5)])])
            .0,
        204
    );
    let sonde = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
            .args(args)
            .args(["--server", &s.api])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = sonde(&["query", "cli_metric"]);
    assert!(ok);
    assert_eq!(out.trim(), r#"cli_metric{job="a"} 7.5"#);
    let (ok, out, _) = sonde(&["labels", "job"]);
    assert!(ok && out.lines().any(|l| l == "a"), "{out}");
    let (ok, out, _) = sonde(&["series", "cli_metric"]);
    assert!(ok && out.contains("cli_metric"), "{out}");
    let (ok, _, err) = sonde(&["query", "sum("]);
    assert!(!ok);
    assert!(err.starts_with("sonde: bad_data:"), "{err}");
}

#[test]
fn exemplars_from_otlp_and_remote_write_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("d"), &[]);
    let t = now_ms() / 1000 * 1000 - 60_000;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // An OTLP histogram whose exemplar (0.25) falls in the `le="0.5"` bucket.
    let otlp = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeMetrics": [{"metrics": [{"name": "rpc.duration", "unit": "s", "histogram": {
            "aggregationTemporality": 2,
            "dataPoints": [{
                "timeUnixNano": (t * 1_000_000).to_string(),
                "count": "3", "sum": 0.9, "bucketCounts": ["1", "2", "0"],
                "explicitBounds": [0.1, 0.5],
                "exemplars": [{
                    "timeUnixNano": ((t - 877) * 1_000_000).to_string(),
                    "asDouble": 0.25, "traceId": trace, "spanId": "00f067aa0ba902b7",
                    "filteredAttributes": [{"key": "user.id", "value": {"stringValue": "u7"}}]
                }]
            }]
        }}]}]
    }]});
    let url = format!("{}/v1/metrics", s.otlp_http);
    let (code, body) = post(&url, "application/json", &[], otlp.to_string().as_bytes());
    assert_eq!(code, 200, "{body}");
    // A remote-write counter with an exemplar.
    let jobs = series("jobs_total", &[("job", "w")], &[(t, 5.0)]);
    let ex = sonde_model::Exemplar {
        labels: Labels::from_pairs([("trace_id", "00000000000000000000000000000abc")]),
        value: 1.0,
        t: t + 5,
    };
    let body = sonde_ingest::remote_write::encode_with_exemplars(
        std::slice::from_ref(&jobs),
        &[(jobs.labels.clone(), ex)],
    );
    let headers = [("content-encoding", "snappy")];
    let rw = format!("{}/api/v1/write", s.api);
    let (code, body) = post(&rw, "application/x-protobuf", &headers, &body);
    assert_eq!(code, 204, "{body}");

    let check = |s: &Server| {
        let get = |query: &str| {
            let v = json_of(
                ureq::get(&format!("{}/api/v1/query_exemplars", s.api))
                    .query("query", query)
                    .query("start", &((t - 3_600_000) / 1000).to_string())
                    .query("end", &((t + 60_000) / 1000).to_string())
                    .call(),
            );
            assert_eq!(v["status"], "success", "{v}");
            v["data"].clone()
        };
        let hist =
            get(r#"histogram_quantile(0.9, rate(rpc_duration_seconds_bucket{job="api"}[5m]))"#);
        assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
        assert_eq!(hist[0]["seriesLabels"]["le"], "0.5", "{hist}");
        assert_eq!(hist[0]["exemplars"].as_array().unwrap().len(), 1, "{hist}");
        let e = &hist[0]["exemplars"][0];
        assert_eq!(e["labels"]["trace_id"], trace);
        assert_eq!(e["labels"]["span_id"], "00f067aa0ba902b7");
        assert_eq!(e["labels"]["user_id"], "u7");
        assert_eq!(e["value"], "0.25");
        assert_eq!(e["timestamp"].as_f64().unwrap(), (t - 877) as f64 / 1000.0);
        let jobs = get("jobs_total");
        assert_eq!(jobs[0]["seriesLabels"]["job"], "w", "{jobs}");
        let e = &jobs[0]["exemplars"][0];
        assert_eq!(e["labels"]["trace_id"], "00000000000000000000000000000abc");
        assert_eq!(
            (e["value"].as_str(), e["timestamp"].as_f64()),
            (Some("1"), Some((t + 5) as f64 / 1000.0))
        );
        // Both at once, POST form; outside the range nothing; no selector: null.
        let (code, body) = post(
            &format!("{}/api/v1/query_exemplars", s.api),
            "application/x-www-form-urlencoded",
            &[],
            b"query=jobs_total+or+rpc_duration_seconds_bucket",
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, v["data"].as_array().map(Vec::len)),
            (200, Some(2)),
            "{v}"
        );
        let none = json_of(
            ureq::get(&format!("{}/api/v1/query_exemplars", s.api))
                .query("query", "jobs_total")
                .query("start", &((t + 10_000) / 1000).to_string())
                .call(),
        );
        assert_eq!(none["data"], serde_json::json!([]), "{none}");
        assert_eq!(get("1 + 1"), Value::Null);
    };
    check(&s);
    // A retry stores nothing twice.
    let (code, _) = post(&url, "application/json", &[], otlp.to_string().as_bytes());
    assert_eq!(code, 200);
    check(&s);
    let (dir, extra, ports) = s.kill9();
    let s = Server::start_on(&dir, extra, ports);
    check(&s);
}
