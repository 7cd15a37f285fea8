//! Store-level exemplar tests: the write path, the WAL, restart and
//! checkpoints.

use sonde_model::{Exemplar, Labels, Matcher, SeriesExemplar};

use crate::tests::{clock, series, HOUR, NOW};
use crate::{ExemplarReport, Store, StoreOptions};

fn ex(host: &str, t: i64, v: f64, trace: &str) -> SeriesExemplar {
    (
        Labels::from_pairs([("__name__", "lat"), ("host", host)]),
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: v,
            t,
        },
    )
}

fn lat(store: &Store) -> Vec<(Labels, Vec<Exemplar>)> {
    store.exemplars(
        &[vec![Matcher::equal("__name__", "lat")]],
        i64::MIN,
        i64::MAX,
    )
}

fn report(accepted: u64, duplicates: u64, out_of_order: u64, rejected: u64) -> ExemplarReport {
    ExemplarReport {
        accepted,
        duplicates,
        out_of_order,
        rejected,
    }
}

#[test]
fn exemplars_survive_restart_and_wal_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock(NOW);
    let first = ex("a", NOW - 4 * HOUR, 0.3, "t1");
    let last = ex("a", NOW - 1000, 0.7, "t2");
    {
        let store = Store::open(dir.path(), StoreOptions::default(), c.clone()).unwrap();
        // Four hours of samples, an exemplar at each end.
        let mut t = NOW - 4 * HOUR;
        store.append(&[series("lat", "a", &[(t, 1.0)])]).unwrap();
        assert_eq!(
            store
                .append_exemplars(std::slice::from_ref(&first))
                .unwrap(),
            report(1, 0, 0, 0)
        );
        while t < NOW {
            t += 60_000;
            store.append(&[series("lat", "a", &[(t, 1.0)])]).unwrap();
        }
        store.append_exemplars(std::slice::from_ref(&last)).unwrap();
        // Cuts a block and truncates the WAL into a checkpoint.
        store.maintain().unwrap();
        assert!(!store.blocks().is_empty());
        let checkpoints = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("checkpoint.")
            })
            .count();
        assert_eq!(checkpoints, 1);
    }
    let store = Store::open(dir.path(), StoreOptions::default(), c).unwrap();
    // The first is older than the checkpoint's samples, kept all the same.
    assert_eq!(lat(&store), vec![(first.0, vec![first.1, last.1])]);
    assert_eq!(store.num_exemplars(), 2);
}

#[test]
fn capacity_evicts_the_oldest_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock(NOW);
    let open = || Store::open_with_exemplars(dir.path(), StoreOptions::default(), c.clone(), 2);
    {
        let store = open().unwrap();
        store
            .append(&[
                series("lat", "a", &[(NOW, 1.0)]),
                series("lat", "b", &[(NOW, 1.0)]),
            ])
            .unwrap();
        let r = store
            .append_exemplars(&[
                ex("a", NOW - 3, 1.0, "a1"),
                ex("b", NOW - 2, 2.0, "b1"),
                ex("a", NOW - 1, 3.0, "a2"),
            ])
            .unwrap();
        assert_eq!(r, report(3, 0, 0, 0));
        assert_eq!(store.num_exemplars(), 2);
    }
    let store = open().unwrap();
    let (a, b) = (ex("a", NOW - 1, 3.0, "a2"), ex("b", NOW - 2, 2.0, "b1"));
    assert_eq!(lat(&store), vec![(a.0, vec![a.1]), (b.0, vec![b.1])]);
}

#[test]
fn retries_are_no_ops_and_bad_exemplars_are_counted_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default(), clock(NOW)).unwrap();
    store.append(&[series("lat", "a", &[(NOW, 1.0)])]).unwrap();
    let e = ex("a", NOW, 0.5, "x");
    assert_eq!(
        store.append_exemplars(std::slice::from_ref(&e)).unwrap(),
        report(1, 0, 0, 0)
    );
    let wal = store.wal_bytes();
    assert_eq!(
        store.append_exemplars(std::slice::from_ref(&e)).unwrap(),
        report(0, 1, 0, 0)
    );
    assert_eq!(store.wal_bytes(), wal, "a retry writes nothing");
    let older = ex("a", NOW - 1, 0.5, "y");
    let long = ex("a", NOW + 1, 0.5, &"f".repeat(200));
    let unknown = ex("nope", NOW, 0.5, "z");
    assert_eq!(
        store.append_exemplars(&[older, long, unknown]).unwrap(),
        report(0, 0, 1, 2)
    );
    assert_eq!(store.wal_bytes(), wal);
    assert_eq!(lat(&store), vec![(e.0, vec![e.1])]);
    // Selected by time too.
    assert!(store
        .exemplars(&[vec![Matcher::equal("host", "a")]], NOW + 1, NOW + 10)
        .is_empty());

    let dir = tempfile::tempdir().unwrap();
    let off =
        Store::open_with_exemplars(dir.path(), StoreOptions::default(), clock(NOW), 0).unwrap();
    off.append(&[series("lat", "a", &[(NOW, 1.0)])]).unwrap();
    let wal = off.wal_bytes();
    assert_eq!(
        off.append_exemplars(&[ex("a", NOW, 0.5, "x")]).unwrap(),
        report(0, 0, 0, 1)
    );
    assert_eq!((off.wal_bytes(), off.num_exemplars()), (wal, 0));
}
