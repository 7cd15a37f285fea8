//! The record store as a whole: buffer, flush, reopen, search, retention.

use std::sync::Arc;
use std::time::Duration;

use sonde_model::records::{
    AttrValue, LogRecord, Origin, SpanId, SpanKind, SpanRecord, StatusCode, TraceId,
};

use crate::{Config, Cursor, Error, EventFilter, LogQuery, RecordStore, TraceQuery};

const T0: i64 = 1_700_000_000_000_000_000;

fn origin(service: &str) -> Arc<Origin> {
    Arc::new(Origin {
        service: service.into(),
        host: "host-1".into(),
        resource: vec![("service.name".into(), AttrValue::Str(service.into()))],
        scope_name: "test".into(),
        scope_version: String::new(),
    })
}

fn trace_id(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&(n + 1).to_be_bytes());
    TraceId(b)
}

/// A trace of `n` spans: a root and its children, `ms` long.
fn trace(id: u64, service: &str, n: usize, ms: i64, error: bool) -> Vec<SpanRecord> {
    let o = origin(service);
    let start = T0 + id as i64 * 1_000_000_000;
    (0..n)
        .map(|i| SpanRecord {
            trace_id: trace_id(id),
            span_id: SpanId((i as u64 + 1).to_be_bytes()),
            parent_span_id: (i > 0).then(|| SpanId(1u64.to_be_bytes())),
            trace_state: String::new(),
            flags: 1,
            name: if i == 0 {
                "GET /".into()
            } else {
                format!("child-{i}")
            },
            kind: if i == 0 {
                SpanKind::Server
            } else {
                SpanKind::Internal
            },
            start_ns: start + i as i64 * 1000,
            end_ns: start + ms * 1_000_000,
            status: if error && i == n - 1 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: String::new(),
            origin: o.clone(),
            attributes: vec![("n".into(), AttrValue::Int(i as i64))],
            events: vec![],
            links: vec![],
        })
        .collect()
}

fn log(i: i64, t: i64, service: &str, severity: u8) -> LogRecord {
    LogRecord {
        time_ns: t,
        observed_ns: t,
        severity_number: severity,
        severity_text: String::new(),
        body: format!("log line {i}"),
        event_name: if i % 5 == 0 {
            "deploy".into()
        } else {
            String::new()
        },
        trace_id: (i % 3 == 0).then(|| trace_id(i as u64)),
        span_id: None,
        flags: 0,
        origin: origin(service),
        attributes: vec![("i".into(), AttrValue::Int(i))],
    }
}

fn open(dir: &std::path::Path) -> RecordStore {
    let mut cfg = Config::new(dir);
    cfg.retention = Duration::ZERO;
    RecordStore::open(cfg).unwrap()
}

#[test]
fn spans_are_found_in_the_buffer_in_segments_and_after_reopen_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_spans(trace(1, "api", 3, 20, false)).unwrap();
    // A retried batch must not show twice.
    store.append_spans(trace(1, "api", 3, 20, false)).unwrap();
    assert_eq!(store.trace(&trace_id(1)).unwrap().len(), 3);
    store.flush().unwrap();
    assert_eq!(store.stats().buffered_spans, 0);
    store.append_spans(trace(2, "db", 2, 5, true)).unwrap();
    assert_eq!(store.trace(&trace_id(1)).unwrap().len(), 3);
    drop(store);

    let store = open(dir.path());
    let t1 = store.trace(&trace_id(1)).unwrap();
    assert_eq!(t1.len(), 3);
    assert_eq!(t1[0].name, "GET /");
    assert_eq!(store.trace(&trace_id(2)).unwrap().len(), 2);
    assert!(store.trace(&trace_id(99)).unwrap().is_empty());
    let cat = store.catalog();
    assert_eq!(
        cat.services["api"].spans, 3,
        "a re-delivery is stored and counted once"
    );
    assert!(cat.operations["db"].contains_key("child-1"));
}

#[test]
fn a_crash_between_parquet_and_wal_deletion_replays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_spans(trace(7, "api", 4, 10, false)).unwrap();
    store
        .append_logs((0..10).map(|i| log(i, T0 + i, "api", 9)).collect())
        .unwrap();
    let wal = dir.path().join("wal");
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    store.flush().unwrap();
    drop(store);
    // Put the flushed WAL segments back, as if the crash came before their
    // deletion.
    for (p, data) in saved {
        std::fs::write(p, data).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.trace(&trace_id(7)).unwrap().len(), 4);
    let mut q = LogQuery::new(0, i64::MAX);
    q.limit = 100;
    assert_eq!(store.search_logs(&q).unwrap().logs.len(), 10);
    assert_eq!(store.stats().buffered_logs, 0);
}

#[test]
fn a_crash_in_the_middle_of_a_flush_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_spans(trace(1, "api", 2, 10, false)).unwrap();
    store.flush().unwrap();
    store.append_spans(trace(2, "api", 3, 10, false)).unwrap();
    store
        .append_logs((0..7).map(|i| log(i, T0 + i, "api", 9)).collect())
        .unwrap();
    let wal = dir.path().join("wal");
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    store.flush().unwrap();
    drop(store);
    // The second flush wrote its span file, then the process died: no log
    // file, no marker, the WAL segments still there.
    for (p, data) in saved {
        std::fs::write(p, data).unwrap();
    }
    let seg = dir.path().join("segments");
    for e in std::fs::read_dir(&seg).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("logs-")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::write(dir.path().join("flushed"), "1").unwrap();
    let store = open(dir.path());
    assert_eq!(store.trace(&trace_id(1)).unwrap().len(), 2);
    assert_eq!(store.trace(&trace_id(2)).unwrap().len(), 3);
    let mut q = LogQuery::new(0, i64::MAX);
    q.limit = 100;
    assert_eq!(store.search_logs(&q).unwrap().logs.len(), 7);
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.trace(&trace_id(2)).unwrap().len(), 3);
    assert_eq!(store.search_logs(&q).unwrap().logs.len(), 7);
}

#[test]
fn log_pages_walk_every_record_once_across_buffer_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Equal timestamps straddle page boundaries and sources.
    store
        .append_logs(
            (0..30)
                .map(|i| log(i, T0 + i / 3, "api", 9 + (i % 12) as u8))
                .collect(),
        )
        .unwrap();
    store.flush().unwrap();
    store
        .append_logs((30..45).map(|i| log(i, T0 + i / 3, "api", 9)).collect())
        .unwrap();
    store
        .append_logs(vec![log(99, T0 + 5, "other", 9)])
        .unwrap();

    let mut q = LogQuery::new(0, i64::MAX);
    q.service = Some("api".into());
    q.limit = 4;
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..20 {
        q.cursor = cursor;
        let page = store.search_logs(&q).unwrap();
        assert!(page.logs.len() <= 4);
        seen.extend(page.logs.iter().map(|l| (l.time_ns, l.body.clone())));
        match page.next {
            Some(c) => cursor = Some(Cursor::parse(&c.to_string()).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 45, "{seen:?}");
    let mut bodies: Vec<&String> = seen.iter().map(|(_, b)| b).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 45, "no record twice");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    // Filters: severity, text, events, trace id.
    let mut q = LogQuery::new(0, i64::MAX);
    q.min_severity = 17;
    let sev = store.search_logs(&q).unwrap().logs;
    assert!(!sev.is_empty() && sev.iter().all(|l| l.severity_number >= 17));
    q = LogQuery::new(0, i64::MAX);
    q.contains = Some("line 42".into());
    assert_eq!(store.search_logs(&q).unwrap().logs.len(), 1);
    q = LogQuery::new(0, i64::MAX);
    q.events = EventFilter::Named("deploy".into());
    assert_eq!(store.search_logs(&q).unwrap().logs.len(), 9);
    assert_eq!(store.trace_logs(&trace_id(3)).unwrap().len(), 1);
    assert_eq!(store.trace_logs(&trace_id(33)).unwrap().len(), 1);
}

#[test]
fn trace_search_filters_and_ranks_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_spans(trace(1, "api", 3, 50, false)).unwrap();
    store.append_spans(trace(2, "api", 2, 500, true)).unwrap();
    store.flush().unwrap();
    store.append_spans(trace(3, "web", 2, 900, false)).unwrap();
    store.append_spans(trace(4, "api", 1, 5, false)).unwrap();

    let ids = |q: &TraceQuery| -> Vec<TraceId> {
        store
            .search_traces(q)
            .unwrap()
            .iter()
            .map(|s| s.trace_id)
            .collect()
    };
    let all = TraceQuery::new(0, i64::MAX);
    assert_eq!(
        ids(&all),
        vec![trace_id(4), trace_id(3), trace_id(2), trace_id(1)]
    );
    let mut q = all.clone();
    q.service = Some("api".into());
    q.min_duration_ns = Some(40_000_000);
    assert_eq!(ids(&q), vec![trace_id(2), trace_id(1)]);
    let mut q = all.clone();
    q.errors_only = true;
    assert_eq!(ids(&q), vec![trace_id(2)]);
    let mut q = all.clone();
    q.name = Some("child-2".into());
    assert_eq!(ids(&q), vec![trace_id(1)]);
    let mut q = all.clone();
    q.attributes = vec![("service.name".into(), "web".into())];
    assert_eq!(ids(&q), vec![trace_id(3)]);
    let mut q = all;
    q.limit = 2;
    let found = store.search_traces(&q).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].span_count, 2);
    assert_eq!(found[1].root_name, "GET /");
    assert_eq!(found[1].duration_ns, 900_000_000);
}

#[test]
fn full_buffers_refuse_writes_until_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path());
    cfg.buffer_bytes = 20_000;
    let store = RecordStore::open(cfg).unwrap();
    let mut refused = false;
    for i in 0..200 {
        match store.append_spans(trace(i, "api", 5, 1, false)) {
            Ok(_) => {}
            Err(Error::Overloaded) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused, "the buffer grew without bound");
    assert!(store.needs_flush());
    store.flush().unwrap();
    store.append_spans(trace(500, "api", 5, 1, false)).unwrap();
}

#[test]
fn retention_deletes_old_segments_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path());
    cfg.retention = Duration::from_secs(3600);
    let store = RecordStore::open(cfg).unwrap();
    for i in 0..3 {
        store
            .append_spans(trace(i * 10_000, "api", 20, 1, false))
            .unwrap();
        store.flush().unwrap();
    }
    assert_eq!(store.stats().segments, 3);
    // Trace 0 is at T0; the others 10_000 s and 20_000 s later.
    let now = T0 + 10_000 * 1_000_000_000 + 1800 * 1_000_000_000;
    assert_eq!(store.apply_retention(now, None).unwrap(), 1);
    assert!(store.trace(&trace_id(0)).unwrap().is_empty());
    assert_eq!(store.trace(&trace_id(10_000)).unwrap().len(), 20);
    assert_eq!(store.apply_retention(now, Some(1)).unwrap(), 2);
    assert_eq!(store.stats().segments, 0);
    let files = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .count();
    assert_eq!(files, 0);
}

#[test]
fn redelivered_spans_and_logs_are_stored_once_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        assert_eq!(
            store
                .append_spans(trace(1, "api", 3, 20, false))
                .unwrap()
                .len(),
            3
        );
        // A retry, and a re-delivery overlapping it with one new span.
        assert!(store
            .append_spans(trace(1, "api", 3, 20, false))
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .append_spans(trace(1, "api", 4, 20, false))
                .unwrap()
                .len(),
            1
        );
        // Two identical lines in one batch are two lines; the batch again is none.
        let twice = vec![log(1, T0, "api", 9), log(1, T0, "api", 9)];
        assert_eq!(store.append_logs(twice.clone()).unwrap().len(), 2);
        assert!(store.append_logs(twice).unwrap().is_empty());
        assert_eq!(store.stats().buffered_spans, 4);
        assert_eq!(store.stats().buffered_logs, 2);
    }
    // After a crash the WAL is replayed: a broker re-delivers what it had
    // not seen committed, and it is still stored once.
    let store = open(dir.path());
    assert!(store
        .append_spans(trace(1, "api", 4, 20, false))
        .unwrap()
        .is_empty());
    assert!(store
        .append_logs(vec![log(1, T0, "api", 9), log(1, T0, "api", 9)])
        .unwrap()
        .is_empty());
    assert_eq!(store.stats().buffered_spans, 4);
    assert_eq!(store.stats().buffered_logs, 2);
    // A different record at the same time is new.
    assert_eq!(
        store.append_logs(vec![log(2, T0, "api", 9)]).unwrap().len(),
        1
    );
}

#[test]
fn a_search_in_the_middle_of_its_scan_never_blocks_appends() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    for i in 0..10 {
        store.append_spans(trace(i, "api", 3, 20, false)).unwrap();
    }
    let (paused_tx, paused_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let searcher = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut first = true;
            let mut q = TraceQuery::new(i64::MIN, i64::MAX);
            q.limit = 100;
            store
                .search_traces_watched(&q, &mut || {
                    if std::mem::take(&mut first) {
                        paused_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                    }
                })
                .unwrap()
        })
    };
    paused_rx.recv().unwrap();
    // The search is paused inside its scan of the live buffer.
    let (done_tx, done_rx) = mpsc::channel();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 100..150 {
                store.append_spans(trace(i, "api", 3, 20, false)).unwrap();
            }
            done_tx.send(()).unwrap();
        })
    };
    let appended = done_rx.recv_timeout(Duration::from_secs(10));
    release_tx.send(()).unwrap();
    assert!(appended.is_ok(), "appends waited for a search to finish");
    writer.join().unwrap();
    // The search saw the buffer as it was when it started.
    assert_eq!(searcher.join().unwrap().len(), 10);
    assert_eq!(store.stats().buffered_spans, 180);
}

#[test]
fn pages_through_thousands_of_logs_at_one_timestamp_stay_small_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A bulk import stamped with one time: no cursor may need to skip
    // the pages before it.
    store
        .append_logs((0..1000).map(|i| log(i, T0, "api", 9)).collect())
        .unwrap();
    store.flush().unwrap();
    store
        .append_logs((1000..2000).map(|i| log(i, T0, "api", 9)).collect())
        .unwrap();
    // Two identical records, split across a page boundary below.
    let twin = log(5000, T0 - 1, "api", 9);
    store.append_logs(vec![twin.clone(), twin]).unwrap();
    let mut q = LogQuery::new(0, i64::MAX);
    // 2,001 = 69 pages of 29: the first twin ends page 69, the second
    // starts page 70.
    q.limit = 29;
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        q.cursor = cursor;
        let page = store.search_logs(&q).unwrap();
        seen.extend(page.logs.iter().map(|l| l.body.clone()));
        match page.next {
            Some(c) => {
                assert!(c.copies <= 2, "a cursor carries only identical copies");
                cursor = Some(Cursor::parse(&c.to_string()).unwrap());
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 2002);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 2001, "each record once, the twins twice");
}

#[test]
fn a_segment_expired_by_retention_stays_readable_for_a_query_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_spans(trace(1, "api", 3, 20, false)).unwrap();
    store.flush().unwrap();
    // A query has taken its list of segments and is about to read.
    let held = store.segments_newest_first();
    assert_eq!(held.len(), 1);
    let path = held[0].meta().path.clone();
    assert_eq!(store.apply_retention(i64::MAX, Some(1)).unwrap(), 1);
    assert!(
        store.trace(&trace_id(1)).unwrap().is_empty(),
        "gone for new queries"
    );
    assert!(path.exists(), "deleted under a running query");
    let crate::store::SegmentData::Spans(s) = &held[0].data else {
        panic!("a span segment");
    };
    assert_eq!(s.read_trace(&trace_id(1)).unwrap().len(), 3);
    drop(held);
    assert!(!path.exists(), "deleted once the last reader is done");
}
