//! Store-level tests: the whole write path, restart, cuts, compaction,
//! retention and limits, with an injected clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use sonde_model::{Clock, Labels, Matcher, Sample, Series};

use crate::{RejectReason, Store, StoreOptions};

pub(crate) struct TestClock(pub AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) const HOUR: i64 = 3600 * 1000;
pub(crate) const NOW: i64 = 1_700_000_000_000;

pub(crate) fn clock(t: i64) -> Arc<TestClock> {
    Arc::new(TestClock(AtomicI64::new(t)))
}

pub(crate) fn series(name: &str, host: &str, samples: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name), ("host", host)]),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        histograms: Vec::new(),
    }
}

fn all(store: &Store, name: &str) -> Vec<Series> {
    store
        .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
}

#[test]
fn appended_samples_are_queryable_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock(NOW);
    {
        let store = Store::open(dir.path(), StoreOptions::default(), c.clone()).unwrap();
        let r = store
            .append(&[
                series("cpu", "a", &[(NOW - 2000, 1.0), (NOW - 1000, 2.0)]),
                series("cpu", "b", &[(NOW, 3.0)]),
            ])
            .unwrap();
        assert_eq!(r.accepted, 3);
        assert_eq!(all(&store, "cpu").len(), 2);
        // No sync, no close: only what `append` wrote to the WAL.
    }
    let store = Store::open(dir.path(), StoreOptions::default(), c).unwrap();
    let got = all(&store, "cpu");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].samples,
        vec![
            Sample {
                t: NOW - 2000,
                v: 1.0
            },
            Sample {
                t: NOW - 1000,
                v: 2.0
            }
        ]
    );
    // Series refs continue after the replayed ones.
    store.append(&[series("cpu", "c", &[(NOW, 1.0)])]).unwrap();
    assert_eq!(all(&store, "cpu").len(), 3);
}

#[test]
fn duplicates_are_idempotent_and_conflicts_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    let batch = [series("up", "a", &[(NOW - 10, 1.0), (NOW, 1.0)])];
    store.append(&batch).unwrap();
    let r = store.append(&batch).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected), (0, 2, 0));
    let r = store.append(&[series("up", "a", &[(NOW, 5.0)])]).unwrap();
    assert_eq!(r.rejected, 1);
    assert_eq!(r.first_error.unwrap().0, RejectReason::DuplicateTimestamp);
    assert_eq!(all(&store, "up")[0].samples.len(), 2);
}

#[test]
fn time_bounds_and_out_of_order_window() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        out_of_order_window_ms: 60_000,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts, clock(NOW)).unwrap();
    store.append(&[series("m", "a", &[(NOW, 1.0)])]).unwrap();
    let r = store
        .append(&[series("m", "a", &[(NOW - 30_000, 2.0)])])
        .unwrap();
    assert_eq!(r.accepted, 1, "inside the out-of-order window");
    let r = store
        .append(&[series("m", "a", &[(NOW - 120_000, 3.0)])])
        .unwrap();
    assert_eq!(r.first_error.unwrap().0, RejectReason::TooOld);
    let r = store
        .append(&[series("m", "a", &[(NOW + 3_600_000, 3.0)])])
        .unwrap();
    assert_eq!(r.first_error.unwrap().0, RejectReason::TooFarInFuture);
    let r = store
        .append(&[series("m", "b", &[(NOW - 30 * 24 * HOUR, 3.0)])])
        .unwrap();
    assert_eq!(r.first_error.unwrap().0, RejectReason::TooOld);
    let got = all(&store, "m");
    assert_eq!(
        got[0].samples,
        vec![
            Sample {
                t: NOW - 30_000,
                v: 2.0
            },
            Sample { t: NOW, v: 1.0 }
        ]
    );
}

#[test]
fn limits_reject_new_series_but_existing_ones_keep_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_series: 2,
        max_labels_per_series: 3,
        max_label_value_len: 10,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts, clock(NOW)).unwrap();
    store
        .append(&[
            series("a", "1", &[(NOW, 1.0)]),
            series("a", "2", &[(NOW, 1.0)]),
        ])
        .unwrap();
    let r = store
        .append(&[
            series("a", "3", &[(NOW, 1.0)]),
            series("a", "1", &[(NOW + 1, 2.0)]),
        ])
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(r.first_error.as_ref().unwrap().0, RejectReason::SeriesLimit);
    assert!(r.first_error.unwrap().1.contains("maximum of 2 series"));
    let long = Series {
        labels: Labels::from_pairs([("__name__", "a"), ("x", "0123456789abc")]),
        samples: vec![Sample { t: NOW, v: 1.0 }],
        histograms: Vec::new(),
    };
    assert_eq!(
        store.append(&[long]).unwrap().first_error.unwrap().0,
        RejectReason::LabelValueTooLong
    );
    let many = Series {
        labels: Labels::from_pairs([("__name__", "a"), ("x", "1"), ("y", "1"), ("z", "1")]),
        samples: vec![Sample { t: NOW, v: 1.0 }],
        histograms: Vec::new(),
    };
    assert_eq!(
        store.append(&[many]).unwrap().first_error.unwrap().0,
        RejectReason::TooManyLabels
    );
    assert_eq!(store.rejected_count(RejectReason::SeriesLimit), 1);
    assert_eq!(store.num_series(), 2);
}

#[test]
fn head_is_cut_into_blocks_compacted_and_retained() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock(NOW);
    let opts = StoreOptions {
        retention_ms: 48 * HOUR,
        ..StoreOptions::default()
    };
    let start = (NOW - 30 * HOUR) / HOUR * HOUR;
    {
        let store = Store::open(dir.path(), opts.clone(), c.clone()).unwrap();
        // 30 hours of one sample a minute for two series, written in order.
        let mut t = start;
        let mut written = 0i64;
        while t < NOW {
            written += 1;
            let batch: Vec<Series> = ["a", "b"]
                .iter()
                .map(|h| series("load", h, &[(t, (t / 60_000 % 100) as f64)]))
                .collect();
            store.append(&batch).unwrap();
            t += 60_000;
            if t % (4 * HOUR) == 0 {
                store.maintain().unwrap();
            }
        }
        store.maintain().unwrap();
        let blocks = store.blocks();
        assert!(blocks.len() >= 2, "{blocks:?}");
        assert!(
            blocks.iter().any(|b| b.level > 1),
            "compaction merged some blocks: {blocks:?}"
        );
        let got = all(&store, "load");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].samples.len() as i64, written);
    }
    let written = (NOW - start + 59_999) / 60_000;
    // Restart: blocks plus the truncated WAL give back every sample.
    let store = Store::open(dir.path(), opts, c.clone()).unwrap();
    let got = all(&store, "load");
    assert_eq!(got[0].samples.len() as i64, written);
    assert!(got[0].samples.windows(2).all(|w| w[0].t < w[1].t));
    // Two days later the old blocks are gone.
    c.0.store(NOW + 40 * HOUR, Ordering::Relaxed);
    store.maintain().unwrap();
    let got = all(&store, "load");
    let oldest = got.first().map(|s| s.samples[0].t).unwrap_or(i64::MAX);
    assert!(
        oldest >= NOW + 40 * HOUR - 48 * HOUR - 24 * HOUR,
        "oldest {oldest}"
    );
    assert!(got.is_empty() || (got[0].samples.len() as i64) < written);
}

#[test]
fn flush_head_persists_everything_and_keeps_it_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    let samples: Vec<(i64, f64)> = (0..1000)
        .map(|i| (NOW - 5 * HOUR + i * 15_000, i as f64))
        .collect();
    store.append(&[series("x", "a", &samples)]).unwrap();
    store.flush_head().unwrap();
    assert_eq!(store.num_series(), 0);
    let got = all(&store, "x");
    assert_eq!(got[0].samples.len(), 1000);
    assert!(store.blocks_bytes() > 0);
}

#[test]
fn size_retention_deletes_oldest_blocks_first() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        retention_ms: 0,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts.clone(), clock(NOW)).unwrap();
    // Ten hours of a noisy series, persisted as blocks of two hours each.
    let start = (NOW - 10 * HOUR) / (2 * HOUR) * (2 * HOUR);
    let samples: Vec<(i64, f64)> = (0..(10 * 360))
        .map(|i| (start + i * 10_000, (i * 7919 % 1000) as f64 / 7.0))
        .collect();
    store.append(&[series("noise", "a", &samples)]).unwrap();
    store.flush_head().unwrap();
    let blocks = store.blocks();
    assert!(blocks.len() >= 2, "{blocks:?}");
    let total = store.blocks_bytes();
    drop(store);

    // Reopen with a size limit that fits about half of the data.
    let limited = StoreOptions {
        retention_bytes: total / 2,
        ..opts
    };
    let store = Store::open(dir.path(), limited, clock(NOW)).unwrap();
    store.maintain().unwrap();
    assert!(
        store.blocks_bytes() + store.wal_bytes() <= total / 2,
        "{} > {}",
        store.blocks_bytes(),
        total / 2
    );
    let kept = all(&store, "noise");
    let first = kept[0].samples[0].t;
    let last = kept[0].samples.last().unwrap().t;
    assert!(first > start, "the oldest data went first");
    assert_eq!(last, samples.last().unwrap().0, "the newest data stayed");
}

/// Regression: maintenance once dropped series that a concurrent write had
/// just created (still empty), so acknowledged samples vanished.
#[test]
fn concurrent_flushes_never_lose_acknowledged_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flusher = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.flush_head().unwrap();
            }
        })
    };
    let mut acknowledged = Vec::new();
    for batch_no in 0..60i64 {
        let t = NOW - HOUR + batch_no * 1000;
        let batch: Vec<Series> = (0..300)
            .map(|i| series("churn", &format!("{batch_no}-{i}"), &[(t, i as f64)]))
            .collect();
        let r = store.append(&batch).unwrap();
        // Samples behind a flush are rejected as too old: fine, they were
        // not acknowledged. Whatever was accepted must stay.
        if r.rejected == 0 {
            acknowledged.push((batch_no, t));
        }
    }
    stop.store(true, Ordering::Relaxed);
    flusher.join().unwrap();
    assert!(!acknowledged.is_empty());
    let check = |store: &Store| {
        for &(batch_no, t) in &acknowledged {
            let m = sonde_model::Matcher::new(
                sonde_model::MatchOp::RegexMatch,
                "host",
                format!("{batch_no}-.*"),
            )
            .unwrap();
            let got = store.select(&[m], t, t).unwrap();
            assert_eq!(
                got.len(),
                300,
                "batch {batch_no}: {} of 300 series readable",
                got.len()
            );
        }
    };
    check(&store);
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    check(&store);
}

/// Regression: a new series accepted a sample older than the head's lower
/// bound, and the next cut then replaced an existing block.
#[test]
fn samples_behind_a_cut_are_rejected_and_blocks_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    let old = NOW - 5 * HOUR;
    store
        .append(&[series("cpu", "a", &[(old, 0.5), (NOW, 1.0)])])
        .unwrap();
    store.flush_head().unwrap();
    let r = store
        .append(&[series("cpu", "late", &[(old + 1, 7.0)])])
        .unwrap();
    assert_eq!(r.first_error.map(|e| e.0), Some(RejectReason::TooOld));
    store
        .append(&[series("cpu", "b", &[(NOW + 1000, 2.0)])])
        .unwrap();
    store.flush_head().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    let got = all(&store, "cpu");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0].samples,
        vec![Sample { t: old, v: 0.5 }, Sample { t: NOW, v: 1.0 }]
    );
}

#[test]
fn a_backfill_burst_asks_for_maintenance_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    store
        .append(&[series("m", "a", &[(NOW - HOUR, 1.0)])])
        .unwrap();
    assert!(!store.needs_maintenance());
    store.append(&[series("m", "a", &[(NOW, 2.0)])]).unwrap();
    store
        .append(&[series("m", "b", &[(NOW - 5 * HOUR, 1.0)])])
        .unwrap();
    assert!(store.needs_maintenance(), "five hours in the head");
    store.maintain().unwrap();
    assert!(!store.needs_maintenance(), "cut down to the recent part");
    assert!(!store.blocks().is_empty());
}

#[test]
fn metadata_is_bounded_and_forgets_metrics_without_series_first() {
    use sonde_model::{MetricMetadata, MetricType};
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        fsync: crate::FsyncPolicy::Never,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts, clock(NOW)).unwrap();
    let meta = |name: &str| MetricMetadata {
        metric: name.to_string(),
        kind: MetricType::Gauge,
        help: String::new(),
        unit: String::new(),
    };
    store.append(&[series("kept", "a", &[(NOW, 1.0)])]).unwrap();
    store.set_metadata(meta("kept")).unwrap();
    for i in 1..crate::MAX_METADATA {
        store.set_metadata(meta(&format!("gone_{i}"))).unwrap();
    }
    assert_eq!(store.metadata().len(), crate::MAX_METADATA);
    // Full: the metrics without series make room for the new one.
    store.set_metadata(meta("new")).unwrap();
    let names: Vec<String> = store.metadata().into_iter().map(|m| m.metric).collect();
    assert_eq!(names, vec!["kept".to_string(), "new".to_string()]);
}
