use std::sync::Arc;

use sonde_model::records::{
    AttrValue, LogRecord, Origin, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord, StatusCode,
    TraceId,
};
use tempfile::TempDir;

use super::*;

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.next() as u8;
        }
        out
    }
}

fn attr(k: &str, v: AttrValue) -> (String, AttrValue) {
    (k.to_string(), v)
}

fn origin(service: &str, host: &str) -> Arc<Origin> {
    Arc::new(Origin {
        service: service.into(),
        host: host.into(),
        resource: vec![
            attr("service.name", AttrValue::Str(service.into())),
            attr("host.name", AttrValue::Str(host.into())),
            attr("process.pid", AttrValue::Int(4242)),
            attr("telemetry.sdk.language", AttrValue::Str("rust".into())),
        ],
        scope_name: "io.opentelemetry.http".into(),
        scope_version: "1.2.3".into(),
    })
}

fn span(trace: u8, id: u8, origin: &Arc<Origin>) -> SpanRecord {
    SpanRecord {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: None,
        trace_state: String::new(),
        flags: 0,
        name: String::new(),
        kind: SpanKind::Unspecified,
        start_ns: i64::from(id) * 1000,
        end_ns: i64::from(id) * 1000 + 500,
        status: StatusCode::Unset,
        status_message: String::new(),
        origin: origin.clone(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
    }
}

/// Spans exercising every field: typed attributes, events, links, unicode,
/// empty strings, a missing parent, extreme values.
fn varied_spans() -> Vec<SpanRecord> {
    let api = origin("checkout-api", "node-1");
    let bare = Arc::new(Origin::default());
    let full = SpanRecord {
        parent_span_id: Some(SpanId([9; 8])),
        trace_state: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
        flags: u32::MAX,
        name: "GET /api/v1/ürün/{id} ✓".into(),
        kind: SpanKind::Server,
        start_ns: -1_000,
        end_ns: i64::MAX,
        status: StatusCode::Error,
        status_message: "boom: «kaputt» \"quoted\"\n".into(),
        attributes: vec![
            attr("http.status_code", AttrValue::Int(503)),
            attr("http.method", AttrValue::Str("GET".into())),
            attr("retry", AttrValue::Bool(true)),
            attr("ratio", AttrValue::Double(0.1)),
            attr("payload", AttrValue::Bytes(vec![0, 1, 254, 255])),
            attr("tags", AttrValue::Json("[\"a\",{\"b\":1}]".into())),
            attr("", AttrValue::Str(String::new())),
            attr("emoji 😀", AttrValue::Str("ok 👍".into())),
        ],
        events: vec![
            SpanEvent {
                time_ns: 123,
                name: "exception".into(),
                attributes: vec![
                    attr("exception.type", AttrValue::Str("IOError".into())),
                    attr("exception.escaped", AttrValue::Bool(false)),
                    attr("attempt", AttrValue::Int(-3)),
                    attr("weight", AttrValue::Double(f64::INFINITY)),
                    attr("raw", AttrValue::Bytes(vec![7])),
                ],
            },
            SpanEvent {
                time_ns: 124,
                name: String::new(),
                attributes: Vec::new(),
            },
        ],
        links: vec![SpanLink {
            trace_id: TraceId([0xab; 16]),
            span_id: SpanId([0; 8]),
            trace_state: String::new(),
            attributes: vec![attr("link.kind", AttrValue::Str("follows".into()))],
        }],
        ..span(2, 1, &api)
    };
    let root = span(2, 9, &api);
    let mut other = span(1, 5, &bare);
    other.attributes = vec![
        attr("http.status_code", AttrValue::Int(200)),
        attr("ratio", AttrValue::Double(-0.0)),
    ];
    vec![full, span(3, 7, &api), root, other]
}

fn sorted_spans(mut spans: Vec<SpanRecord>) -> Vec<SpanRecord> {
    spans.sort_by_key(|s| (s.trace_id, s.start_ns, s.span_id));
    spans
}

fn scan_spans(seg: &SpanSegment, hints: &ScanHints) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    seg.scan(hints, &mut |s| {
        out.push(s);
        true
    })
    .unwrap();
    out
}

fn scan_logs(seg: &LogSegment, hints: &ScanHints) -> Vec<LogRecord> {
    let mut out = Vec::new();
    seg.scan(hints, &mut |l| {
        out.push(l);
        true
    })
    .unwrap();
    out
}

#[test]
fn spans_round_trip_exactly() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("spans-1.parquet");
    let input = varied_spans();
    let meta = write_spans(&path, &mut input.clone()).unwrap();
    let expected = sorted_spans(input);

    let seg = SpanSegment::open(&path).unwrap();
    assert_eq!(seg.meta(), &meta);
    assert_eq!(meta.kind, SegmentKind::Spans);
    assert_eq!(meta.rows, 4);
    assert_eq!(meta.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(
        meta.services,
        vec!["".to_string(), "checkout-api".to_string()]
    );
    assert_eq!((meta.min_time_ns, meta.max_time_ns), (-1_000, i64::MAX));
    assert!(!dir.path().join("spans-1.parquet.tmp").exists());

    let got = scan_spans(&seg, &ScanHints::all());
    assert_eq!(got, expected);
    // One shared origin per distinct origin, as in memory.
    let api: Vec<_> = got
        .iter()
        .filter(|s| s.origin.service == "checkout-api")
        .collect();
    assert_eq!(api.len(), 3);
    assert!(api.iter().all(|s| Arc::ptr_eq(&s.origin, &api[0].origin)));

    let trace = TraceId([2; 16]);
    assert!(seg.may_contain_trace(&trace));
    let want: Vec<_> = expected
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect();
    assert_eq!(seg.read_trace(&trace).unwrap(), want);
    assert_eq!(seg.read_trace(&TraceId([4; 16])).unwrap(), Vec::new());
}

#[test]
fn a_key_with_two_kinds_in_one_file_reads_back_as_text() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.parquet");
    let o = origin("a", "h");
    let mut one = span(1, 1, &o);
    one.attributes = vec![
        attr("code", AttrValue::Int(7)),
        attr("n", AttrValue::Int(1)),
    ];
    let mut two = span(1, 2, &o);
    two.attributes = vec![attr("code", AttrValue::Str("E7".into()))];
    write_spans(&path, &mut [one, two]).unwrap();
    let got = scan_spans(&SpanSegment::open(&path).unwrap(), &ScanHints::all());
    assert_eq!(
        got[0].attributes,
        vec![
            attr("code", AttrValue::Str("7".into())),
            attr("n", AttrValue::Int(1))
        ]
    );
    assert_eq!(
        got[1].attributes,
        vec![attr("code", AttrValue::Str("E7".into()))]
    );
}

fn log(rng: &mut Rng, time_ns: i64, origins: &[Arc<Origin>]) -> LogRecord {
    let with_trace = rng.below(2) == 0;
    LogRecord {
        time_ns,
        observed_ns: time_ns + rng.below(1000) as i64,
        severity_number: rng.below(25) as u8,
        severity_text: rng.pick(&["INFO", "WARN", "", "Ошибка"]).to_string(),
        body: format!("request {} handled in {}ms ✓", rng.next(), rng.below(900)),
        event_name: rng.pick(&["", "", "deployment", "page_view"]).to_string(),
        trace_id: with_trace.then(|| TraceId(rng.bytes())),
        span_id: with_trace.then(|| SpanId(rng.bytes())),
        flags: rng.below(2) as u32 * 0x8000_0001,
        origin: rng.pick(origins).clone(),
        attributes: vec![
            attr(
                "http.status_code",
                AttrValue::Int(*rng.pick(&[200, 404, 500])),
            ),
            attr("user", AttrValue::Str(format!("u{}", rng.below(100)))),
            attr("latency", AttrValue::Double(rng.below(10_000) as f64 / 7.0)),
        ],
    }
}

#[test]
fn logs_round_trip_newest_first() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("logs-1.parquet");
    let mut rng = Rng(7);
    let origins = [
        origin("web", "h1"),
        origin("db", "h2"),
        Arc::new(Origin::default()),
    ];
    // Shuffled times with ties, across three row groups.
    let input: Vec<LogRecord> = (0..20_000)
        .map(|_| {
            let t = rng.below(5_000) as i64;
            log(&mut rng, t, &origins)
        })
        .collect();
    let meta = write_logs(&path, &mut input.clone()).unwrap();
    assert_eq!((meta.rows, meta.kind), (20_000, SegmentKind::Logs));
    assert_eq!(meta.services, vec!["", "db", "web"]);

    let mut expected = input.clone();
    expected.sort_by_key(|l| l.time_ns);
    expected.reverse();
    let seg = LogSegment::open(&path).unwrap();
    assert_eq!(seg.meta(), &meta);
    let got = scan_logs(&seg, &ScanHints::all());
    assert!(got.windows(2).all(|w| w[0].time_ns >= w[1].time_ns));
    assert_eq!(got, expected);

    // A trace id hint finds that trace's logs, and only those.
    let id = input.iter().find_map(|l| l.trace_id).unwrap();
    let hints = ScanHints {
        trace_id: Some(id),
        ..ScanHints::all()
    };
    let want: Vec<_> = expected
        .iter()
        .filter(|l| l.trace_id == Some(id))
        .cloned()
        .collect();
    assert_eq!(scan_logs(&seg, &hints), want);
}

#[test]
fn log_scans_prune_by_time_and_stop_early() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("logs.parquet");
    let mut rng = Rng(11);
    let origins = [origin("web", "h1"), origin("db", "h2")];
    let mut input: Vec<LogRecord> = (0..4 * LOG_GROUP_ROWS as i64)
        .map(|t| log(&mut rng, t * 10, &origins))
        .collect();
    write_logs(&path, &mut input).unwrap();
    let seg = LogSegment::open(&path).unwrap();

    // The newest 100 logs: one row group of four is decoded.
    let end = input.last().unwrap().time_ns;
    let hints = ScanHints {
        start_ns: end - 999,
        end_ns: end,
        ..ScanHints::all()
    };
    let before = seg.groups_read();
    let got = scan_logs(&seg, &hints);
    assert_eq!(seg.groups_read() - before, 1);
    let times: Vec<i64> = got.iter().map(|l| l.time_ns).collect();
    assert_eq!(times, (0..100).map(|i| end - i * 10).collect::<Vec<_>>());

    // Early stop: the visitor's `false` ends the scan at once.
    let mut seen = Vec::new();
    seg.scan(&ScanHints::all(), &mut |l| {
        seen.push(l.time_ns);
        seen.len() < 3
    })
    .unwrap();
    assert_eq!(seen, vec![end, end - 10, end - 20]);

    // A service hint: rows of other services are not visited.
    let hints = ScanHints {
        service: Some("db".into()),
        ..ScanHints::all()
    };
    let got = scan_logs(&seg, &hints);
    assert_eq!(
        got.len(),
        input.iter().filter(|l| l.origin.service == "db").count()
    );
    assert!(got.iter().all(|l| l.origin.service == "db"));
    let absent = ScanHints {
        service: Some("nope".into()),
        ..ScanHints::all()
    };
    assert!(scan_logs(&seg, &absent).is_empty());
}

/// About 50k spans that look like a day at a small shop: a dozen services,
/// HTTP and database spans, a few errors with exception events.
fn realistic_spans(rng: &mut Rng, traces: usize) -> Vec<SpanRecord> {
    let services = [
        "frontend",
        "checkout",
        "cart",
        "payment",
        "shipping",
        "email",
        "currency",
        "ads",
        "recommendation",
        "quote",
        "catalog",
        "auth",
    ];
    let origins: Vec<Arc<Origin>> = services
        .iter()
        .map(|s| {
            let mut o = (*origin(
                s,
                &format!("ip-10-0-{}-{}.ec2.internal", rng.below(4), rng.below(250)),
            ))
            .clone();
            o.resource.push(attr(
                "k8s.pod.name",
                AttrValue::Str(format!("{s}-7d9f8c6b5-{:x}", rng.next() & 0xfffff)),
            ));
            o.resource
                .push(attr("service.version", AttrValue::Str("2.14.0".into())));
            Arc::new(o)
        })
        .collect();
    let routes = [
        "/api/cart",
        "/api/checkout",
        "/api/products/{id}",
        "/api/users/{id}/orders",
        "/health",
        "/api/quote",
    ];
    let t0: i64 = 1_750_000_000_000_000_000;
    let mut spans = Vec::new();
    for _ in 0..traces {
        let trace_id = TraceId(rng.bytes());
        let start = t0 + rng.below(3_600_000_000_000) as i64;
        let mut parents = vec![SpanId(rng.bytes())];
        for i in 0..rng.below(16) + 3 {
            let span_id = if i == 0 {
                parents[0]
            } else {
                SpanId(rng.bytes())
            };
            let origin = rng.pick(&origins).clone();
            let route = *rng.pick(&routes);
            let db = rng.below(4) == 0;
            let error = rng.below(30) == 0;
            let s0 = start + rng.below(50_000_000) as i64;
            let mut attributes = vec![
                attr(
                    "http.request.method",
                    AttrValue::Str(rng.pick(&["GET", "POST"]).to_string()),
                ),
                attr("http.route", AttrValue::Str(route.into())),
                attr(
                    "url.path",
                    AttrValue::Str(route.replace("{id}", &rng.below(100_000).to_string())),
                ),
                attr(
                    "http.response.status_code",
                    AttrValue::Int(if error { 500 } else { 200 }),
                ),
                attr(
                    "server.address",
                    AttrValue::Str(format!("{}.svc.cluster.local", origin.service)),
                ),
            ];
            if db {
                attributes.push(attr("db.system", AttrValue::Str("postgresql".into())));
                attributes.push(attr(
                    "db.statement",
                    AttrValue::Str(format!(
                        "SELECT * FROM orders WHERE user_id = {} LIMIT 50",
                        rng.below(10_000)
                    )),
                ));
            }
            let events = if error {
                vec![SpanEvent {
                    time_ns: s0 + 1000,
                    name: "exception".into(),
                    attributes: vec![
                        attr("exception.type", AttrValue::Str("TimeoutError".into())),
                        attr(
                            "exception.message",
                            AttrValue::Str(format!(
                                "upstream timed out after {}ms",
                                rng.below(5000)
                            )),
                        ),
                    ],
                }]
            } else {
                Vec::new()
            };
            spans.push(SpanRecord {
                trace_id,
                span_id,
                parent_span_id: (i > 0).then(|| *rng.pick(&parents)),
                trace_state: String::new(),
                flags: 1,
                name: format!("{} {route}", if db { "SELECT" } else { "GET" }),
                kind: if i == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                start_ns: s0,
                end_ns: s0 + rng.below(200_000_000) as i64,
                status: if error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: if error {
                    "timeout".into()
                } else {
                    String::new()
                },
                origin,
                attributes,
                events,
                links: Vec::new(),
            });
            parents.push(span_id);
        }
    }
    spans
}

#[test]
fn trace_lookups_decode_one_row_group_of_many() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("spans.parquet");
    let mut rng = Rng(42);
    let input = realistic_spans(&mut rng, 4_800);
    let meta = write_spans(&path, &mut input.clone()).unwrap();
    println!(
        "{} spans, {} bytes: {:.1} bytes per span",
        meta.rows,
        meta.bytes,
        meta.bytes as f64 / meta.rows as f64
    );
    let seg = SpanSegment::open(&path).unwrap();
    assert!(
        seg.seg.groups.len() >= 5,
        "{} row groups",
        seg.seg.groups.len()
    );
    assert!(seg
        .seg
        .groups
        .iter()
        .all(|g| g.trace.bloom.is_some() && g.trace.range.is_some()));

    let expected = sorted_spans(input);
    for pick in 0..25 {
        let id = expected[pick * expected.len() / 25].trace_id;
        let want: Vec<_> = expected
            .iter()
            .filter(|s| s.trace_id == id)
            .cloned()
            .collect();
        let before = seg.groups_read();
        assert!(seg.may_contain_trace(&id));
        assert_eq!(seg.read_trace(&id).unwrap(), want);
        assert_eq!(seg.groups_read() - before, 1, "trace {id}");
    }

    // Absent ids: the min/max ranges leave one filter to ask, at ~1% each.
    let false_positives = (0..2000)
        .filter(|_| seg.may_contain_trace(&TraceId(rng.bytes())))
        .count();
    assert!(false_positives < 60, "{false_positives} of 2000");

    // Time hints: exactly the spans overlapping the window, nothing else.
    let t = expected[expected.len() / 2].start_ns;
    let hints = ScanHints {
        start_ns: t,
        end_ns: t + 60_000_000_000,
        ..ScanHints::all()
    };
    let want: Vec<_> = expected
        .iter()
        .filter(|s| s.start_ns <= hints.end_ns && s.end_ns >= t)
        .cloned()
        .collect();
    assert!(!want.is_empty() && want.len() < expected.len() / 10);
    assert_eq!(scan_spans(&seg, &hints), want);

    // Service and time hints together; and outside the segment's time, nothing read.
    let hints = ScanHints {
        service: Some("payment".into()),
        ..hints
    };
    let want: Vec<_> = want
        .into_iter()
        .filter(|s| s.origin.service == "payment")
        .collect();
    assert_eq!(scan_spans(&seg, &hints), want);
    let before = seg.groups_read();
    let later = ScanHints {
        start_ns: meta.max_time_ns + 1,
        ..ScanHints::all()
    };
    assert!(scan_spans(&seg, &later).is_empty());
    assert_eq!(seg.groups_read(), before);

    // Early stop.
    let mut n = 0;
    seg.scan(&ScanHints::all(), &mut |_| {
        n += 1;
        n < 5
    })
    .unwrap();
    assert_eq!(n, 5);
}

#[test]
fn a_huge_trace_spans_several_row_groups_and_is_still_found_whole() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.parquet");
    let o = origin("a", "h");
    let mut rng = Rng(3);
    let mut spans: Vec<SpanRecord> = (0..MAX_SPAN_GROUP_ROWS + 10)
        .map(|i| SpanRecord {
            span_id: SpanId(rng.bytes()),
            start_ns: i as i64,
            ..span(5, 0, &o)
        })
        .collect();
    spans.push(span(1, 1, &o));
    spans.push(span(9, 1, &o));
    write_spans(&path, &mut spans.clone()).unwrap();
    let seg = SpanSegment::open(&path).unwrap();
    assert_eq!(seg.seg.groups.len(), 2);
    let got = seg.read_trace(&TraceId([5; 16])).unwrap();
    assert_eq!(got.len(), MAX_SPAN_GROUP_ROWS + 10);
    assert_eq!(seg.read_trace(&TraceId([9; 16])).unwrap().len(), 1);
}

#[test]
fn empty_segments_are_valid() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("empty.parquet");
    let meta = write_spans(&path, &mut []).unwrap();
    assert_eq!((meta.rows, meta.min_time_ns, meta.max_time_ns), (0, 0, 0));
    let seg = SpanSegment::open(&path).unwrap();
    assert!(!seg.may_contain_trace(&TraceId([1; 16])));
    assert!(scan_spans(&seg, &ScanHints::all()).is_empty());
    let logs = dir.path().join("empty-logs.parquet");
    write_logs(&logs, &mut []).unwrap();
    assert!(scan_logs(&LogSegment::open(&logs).unwrap(), &ScanHints::all()).is_empty());
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("missing-dir").join("s.parquet");
    assert!(matches!(
        write_spans(&path, &mut varied_spans()),
        Err(Error::Io { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

const FLIPS: usize = 300;

#[test]
fn damaged_files_give_errors_not_panics() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.parquet");
    let mut rng = Rng(5);
    let mut spans = realistic_spans(&mut rng, 300);
    spans.extend(varied_spans());
    write_spans(&path, &mut spans).unwrap();
    let good = std::fs::read(&path).unwrap();
    let broken = dir.path().join("broken.parquet");

    let len = good.len();
    for cut in [0, 4, 8, 100, len / 2, len - 9, len - 1] {
        std::fs::write(&broken, &good[..cut]).unwrap();
        assert!(SpanSegment::open(&broken).is_err(), "cut at {cut}");
    }

    // Flipped bytes anywhere: open or scan fails, or (where the byte did not
    // matter) succeeds; nothing panics.
    let mut failures = 0;
    for i in 0..FLIPS {
        let mut bad = good.clone();
        let at = rng.below(len as u64) as usize;
        bad[at] ^= 1 << (i % 8);
        std::fs::write(&broken, &bad).unwrap();
        let outcome =
            SpanSegment::open(&broken).and_then(|seg| seg.scan(&ScanHints::all(), &mut |_| true));
        failures += usize::from(outcome.is_err());
    }
    assert!(failures > 0);

    // Not a spans segment at all.
    let logs = dir.path().join("logs.parquet");
    write_logs(&logs, &mut []).unwrap();
    assert!(matches!(
        SpanSegment::open(&logs),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        LogSegment::open(&path),
        Err(Error::Corrupt { .. })
    ));
    std::fs::write(&broken, b"PAR1 certainly not parquet PAR1").unwrap();
    assert!(LogSegment::open(&broken).is_err());
}

#[test]
fn segments_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<SpanSegment>();
    shared::<LogSegment>();
}

#[test]
fn decoder_panics_become_corruption_errors() {
    let outcome: Result<()> = columns::guard(Path::new("x.parquet"), || {
        panic!("assertion failed: size <= src.len()")
    });
    match outcome {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains("size <= src.len()"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
