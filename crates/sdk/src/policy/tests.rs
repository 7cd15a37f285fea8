use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;

use super::*;

#[test]
fn parses_effective_policies() {
    let p = EffectivePolicy::parse(
        r#"{"version": 7, "trace_sampling_ratio": 0.25, "metric_interval_ms": 5000,
            "min_log_severity": 13, "collectors": null}"#,
    )
    .unwrap();
    assert_eq!(
        p,
        EffectivePolicy {
            version: 7,
            settings: Settings {
                trace_sampling_ratio: Some(0.25),
                metric_interval_ms: Some(5000),
                min_log_severity: Some(13),
                collectors: None,
            },
        }
    );
    let p = EffectivePolicy::parse(
        r#"{"version": 1, "trace_sampling_ratio": 7, "min_log_severity": 99,
            "metric_interval_ms": -1, "collectors": ["cpu", 3, "disk"]}"#,
    )
    .unwrap();
    assert_eq!(p.trace_sampling_ratio, None);
    assert_eq!(p.min_log_severity, None);
    assert_eq!(p.metric_interval_ms, None);
    assert_eq!(p.collectors, Some(vec!["cpu".into(), "disk".into()]));
    for bad in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"version": "7"}"#,
        "{\"version\": 1",
    ] {
        assert_eq!(EffectivePolicy::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn backoff_doubles_to_the_cap() {
    let mut d = Duration::from_secs(1);
    let mut seen = vec![d.as_secs()];
    for _ in 0..6 {
        d = next_backoff(d, Duration::from_secs(30));
        seen.push(d.as_secs());
    }
    assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30]);
}

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    watch_queries: Mutex<Vec<String>>,
    statuses: Mutex<Vec<Json>>,
    watches: AtomicUsize,
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    let request_line = head.lines().next()?.to_string();
    Some((request_line, String::from_utf8_lossy(&body).into_owned()))
}

const P1: &str = r#"{"version": 1, "trace_sampling_ratio": 0.5, "metric_interval_ms": null, "min_log_severity": null, "collectors": null}"#;
const P2: &str = r#"{"version": 2, "trace_sampling_ratio": 0.25, "metric_interval_ms": 5000, "min_log_severity": 13, "collectors": null}"#;
const P3: &str = r#"{"version": 3, "trace_sampling_ratio": 1.0, "metric_interval_ms": 5000, "min_log_severity": 9, "collectors": ["cpu"]}"#;

/// First watch: P1, a comment, garbage, P2, then the connection drops.
/// Second watch: P2 again (not re-applied), then P3, then stays open.
fn serve(stream: &mut TcpStream, seen: &Seen) {
    let Some((line, body)) = read_request(stream) else {
        return;
    };
    if line.starts_with("POST /api/v1/clients/status") {
        seen.statuses
            .lock()
            .push(serde_json::from_str(&body).unwrap_or(Json::Null));
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 34\r\nConnection: close\r\n\r\n{\"status\":\"success\",\"data\":null}\r\n",
        );
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("");
    seen.watch_queries.lock().push(path.to_string());
    let n = seen.watches.fetch_add(1, Ordering::SeqCst);
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    );
    let events: Vec<String> = if n == 0 {
        vec![
            format!("event: policy\ndata: {P1}\n\n"),
            ": keep-alive\n\n".into(),
            "event: policy\ndata: {not json\n\n".into(),
            "event: other\ndata: {\"version\": 99}\n\n".into(),
            format!("event: policy\r\ndata: {P2}\r\n\r\n"),
        ]
    } else {
        vec![
            format!("event: policy\ndata: {P2}\n\n"),
            format!("event: policy\ndata: {P3}\n\n"),
        ]
    };
    for e in events {
        if stream.write_all(e.as_bytes()).is_err() {
            return;
        }
        let _ = stream.flush();
        std::thread::sleep(Duration::from_millis(30));
    }
    if n > 0 {
        // Stay connected a while, as a server does between changes.
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[test]
fn follows_the_stream_reconnects_and_reports_status() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { continue };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || serve(&mut stream, &seen));
            }
        });
    }
    let applied = Arc::new(Mutex::new(Vec::<EffectivePolicy>::new()));
    let a = Arc::clone(&applied);
    let identity = ClientIdentity {
        client_id: "checkout-7f3a".into(),
        kind: "sdk".into(),
        service: "check out".into(),
        host: "web-1".into(),
        version: "0.1.0".into(),
    };
    let watcher = PolicyWatcher::start_with(
        &format!("http://{addr}/"),
        identity,
        Box::new(move |p| a.lock().push(p.clone())),
        Box::new(|| Health {
            healthy: true,
            exported_batches: 120,
            dropped_batches: 0,
            last_error: None,
        }),
        WatcherOptions {
            status_interval: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(200),
            ..WatcherOptions::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied.lock().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give the status thread time for the report after P3 and a periodic one.
    std::thread::sleep(Duration::from_millis(700));

    let applied = applied.lock().clone();
    let versions: Vec<u64> = applied.iter().map(|p| p.version).collect();
    assert_eq!(
        versions,
        [1, 2, 3],
        "each new version once, P2 not re-applied"
    );
    assert_eq!(applied[0].trace_sampling_ratio, Some(0.5));
    assert_eq!(applied[1].metric_interval_ms, Some(5000));
    assert_eq!(applied[1].min_log_severity, Some(13));
    assert_eq!(applied[2].collectors, Some(vec!["cpu".to_string()]));
    assert_eq!(watcher.current().unwrap().version, 3);
    assert!(watcher.connected());

    assert_eq!(seen.watches.load(Ordering::SeqCst), 2, "reconnected once");
    let q = seen.watch_queries.lock()[0].clone();
    assert!(q.starts_with("/api/v1/policies/watch?"), "{q}");
    for part in [
        "service=check+out",
        "host=web-1",
        "client_id=checkout-7f3a",
        "kind=sdk",
    ] {
        assert!(q.contains(part), "{q} lacks {part}");
    }

    let statuses = seen.statuses.lock().clone();
    let versions: Vec<Option<u64>> = statuses
        .iter()
        .map(|s| s["policy_version"].as_u64())
        .collect();
    for v in [1, 2, 3] {
        assert!(
            versions.contains(&Some(v)),
            "no status for version {v}: {versions:?}"
        );
    }
    // Reports come in applied order, and the last repeats the latest.
    let first_three: Vec<u64> = versions.iter().flatten().copied().collect();
    assert!(first_three.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    assert!(
        versions.iter().filter(|v| **v == Some(3)).count() >= 2,
        "periodic report"
    );
    let last = statuses.last().unwrap();
    assert_eq!(last["client_id"], "checkout-7f3a");
    assert_eq!(last["kind"], "sdk");
    assert_eq!(last["service"], "check out");
    assert_eq!(last["host"], "web-1");
    assert_eq!(last["version"], "0.1.0");
    assert_eq!(last["effective"]["trace_sampling_ratio"], 1.0);
    assert_eq!(last["effective"]["metric_interval_ms"], 5000);
    assert_eq!(last["effective"]["min_log_severity"], 9);
    assert_eq!(last["effective"]["collectors"], json!(["cpu"]));
    assert_eq!(last["health"]["healthy"], true);
    assert_eq!(last["health"]["exported_batches"], 120);
    assert_eq!(last["health"]["last_error"], Json::Null);
    drop(watcher);
}

#[test]
fn keeps_trying_an_absent_server_and_stops_promptly() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let mut watcher = PolicyWatcher::start_with(
        &format!("http://127.0.0.1:{port}"),
        ClientIdentity::default(),
        Box::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        }),
        Box::new(Health::default),
        WatcherOptions {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            ..WatcherOptions::default()
        },
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(!watcher.connected());
    assert_eq!(watcher.current(), None);
    let t = Instant::now();
    watcher.stop();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_callback_is_contained() {
    let s = Shared {
        base: String::new(),
        identity: ClientIdentity::default(),
        options: WatcherOptions::default(),
        on_change: Box::new(|p| assert!(p.version != 2, "boom")),
        health: Box::new(Health::default),
        state: Mutex::new(State {
            applied: None,
            connected: false,
            report_now: false,
            stop: false,
        }),
        wake: Condvar::new(),
        stopped: AtomicBool::new(false),
        agent: ureq::Agent::new(),
    };
    let stream = format!(
        "event: policy\ndata: {P1}\n\nevent: policy\ndata: {P2}\n\nid: 5\nretry: 10\nevent: policy\ndata: {{\"version\":\ndata: 3}}\n\n"
    );
    read_events(&s, stream.as_bytes());
    // P2 panicked and was not applied; the multi-line data of 3 was (the
    // fields other than event and data are ignored).
    assert_eq!(s.state.lock().applied.as_ref().map(|p| p.version), Some(3));
}
