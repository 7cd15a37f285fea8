use super::*;

fn log_index(v: f64, scale: i32) -> i32 {
    (v.log2() * 2f64.powi(scale)).ceil() as i32 - 1
}

#[test]
fn indexes_by_hand() {
    // Scale 0: (2^i, 2^(i+1)].
    for (v, i) in [
        (1.0, -1),
        (2.0, 0),
        (3.0, 1),
        (4.0, 1),
        (5.0, 2),
        (0.5, -2),
        (0.75, -1),
    ] {
        assert_eq!(map_to_index(v, 0), i, "scale 0, {v}");
    }
    // Scale 1: (sqrt2^i, sqrt2^(i+1)]; sqrt2 = 1.414, 2^1.5 = 2.828.
    for (v, i) in [
        (1.0, -1),
        (1.2, 0),
        (1.5, 1),
        (2.0, 1),
        (2.5, 2),
        (3.0, 3),
        (4.0, 3),
    ] {
        assert_eq!(map_to_index(v, 1), i, "scale 1, {v}");
    }
    // Scale -1: (4^i, 4^(i+1)].
    for (v, i) in [
        (1.0, -1),
        (3.0, 0),
        (4.0, 0),
        (5.0, 1),
        (16.0, 1),
        (17.0, 2),
        (0.25, -2),
    ] {
        assert_eq!(map_to_index(v, -1), i, "scale -1, {v}");
    }
    // Scale 3: base 2^(1/8) = 1.0905; 10 = 2^3.3219 -> ceil(26.58) - 1 = 26.
    assert_eq!(map_to_index(10.0, 3), 26);
    assert_eq!(map_to_index(-10.0, 3), 26, "sign is ignored");
    // Scale 20, powers of two: 2^e closes bucket (e << 20) - 1.
    assert_eq!(map_to_index(1.0, 20), -1);
    assert_eq!(map_to_index(2.0, 20), (1 << 20) - 1);
    assert_eq!(map_to_index(0.5, 20), -(1 << 20) - 1);
    // Extremes.
    assert_eq!(map_to_index(f64::MAX, 0), 1023);
    assert_eq!(map_to_index(f64::MIN_POSITIVE, 0), -1023);
    assert_eq!(
        map_to_index(5e-324, 0),
        -1075,
        "smallest subnormal = 2^-1074"
    );
    assert_eq!(map_to_index(f64::MAX, MIN_SCALE), 0);
    assert_eq!(map_to_index(5e-324, MIN_SCALE), -2);
}

#[test]
fn lookup_table_agrees_with_the_logarithm() {
    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = f64::from_bits((x >> 12) | (1023u64 << 52)) * 2f64.powi((x % 40) as i32 - 20);
        for scale in 1..=TABLE_MAX_SCALE {
            let exact = map_to_index(v, scale);
            let approx = log_index(v, scale);
            // The logarithm may be off by one right at a bound.
            assert!(
                (exact - approx).abs() <= 1,
                "{v} at {scale}: {exact} vs {approx}"
            );
            let lower = 2f64.powf(f64::from(exact) / 2f64.powi(scale));
            let upper = 2f64.powf(f64::from(exact + 1) / 2f64.powi(scale));
            assert!(
                v > lower * (1.0 - 1e-12) && v <= upper * (1.0 + 1e-12),
                "{v} at {scale}"
            );
        }
    }
}

fn record_all(values: &[f64], max_size: usize, max_scale: i32) -> ExpPoint {
    let s = ExpStripe::new(max_scale);
    for &v in values {
        s.record(v, max_size);
    }
    s.read()
}

#[test]
fn downscales_as_the_range_grows() {
    // Scale 0: 1, 2, 4, 8 are buckets -1, 0, 1, 2: four buckets fit.
    let p = record_all(&[1.0, 2.0, 4.0, 8.0], 4, 0);
    assert_eq!((p.scale, p.positive.offset), (0, -1));
    assert_eq!(p.positive.counts, vec![1, 1, 1, 1]);
    // 16 (bucket 3) makes five: scale -1, base 4: (1/4,1], (1,4], (4,16].
    let p = record_all(&[1.0, 2.0, 4.0, 8.0, 16.0], 4, 0);
    assert_eq!((p.scale, p.positive.offset), (-1, -1));
    assert_eq!(p.positive.counts, vec![1, 2, 2]);
    assert_eq!((p.count, p.sum, p.min, p.max), (5, 31.0, 1.0, 16.0));
}

#[test]
fn starts_at_scale_20() {
    let p = record_all(&[1.5], DEFAULT_MAX_SIZE, MAX_SCALE);
    assert_eq!(p.scale, 20);
    assert_eq!(p.positive.counts, vec![1]);
    assert_eq!(p.positive.offset, log_index(1.5, 20));
    // 1 and 2 are 2^20 + 1 buckets apart at scale 20: (2^(20-c) + 1) <= 160
    // needs c = 13, scale 7: buckets -1 and 127.
    let p = record_all(&[1.0, 2.0], DEFAULT_MAX_SIZE, MAX_SCALE);
    assert_eq!((p.scale, p.positive.offset), (7, -1));
    assert_eq!(p.positive.counts.len(), 129);
    assert_eq!((p.positive.counts[0], p.positive.counts[128]), (1, 1));
    assert_eq!(p.positive.counts.iter().sum::<u64>(), 2);
}

#[test]
fn zero_and_negative_values() {
    let p = record_all(&[0.0, -0.0, -1.0, -3.0, 3.0], 4, 0);
    assert_eq!(p.zero_count, 2);
    assert_eq!(
        (p.negative.offset, p.negative.counts.clone()),
        (-1, vec![1, 0, 1])
    );
    assert_eq!((p.positive.offset, p.positive.counts.clone()), (1, vec![1]));
    assert_eq!((p.count, p.sum, p.min, p.max), (5, -1.0, -3.0, 3.0));
    // A wide negative range downscales the positive side too.
    let p = record_all(&[3.0, -1.0, -4.0, -16.0, -64.0], 4, 0);
    assert_eq!(p.scale, -1);
    assert_eq!((p.positive.offset, p.positive.counts.clone()), (0, vec![1]));
    assert_eq!(
        (p.negative.offset, p.negative.counts.clone()),
        (-1, vec![1, 1, 1, 1])
    );
}

#[test]
fn merge_takes_the_coarser_scale() {
    let a = record_all(&[1.0, 2.0, 4.0, 8.0], 4, 0); // scale 0, -1..=2
    let b = record_all(&[3.0], 4, 2); // scale 2
    let mut m = a.clone();
    m.merge(&b, 4);
    assert_eq!(m.scale, 0);
    assert_eq!(
        (m.positive.offset, m.positive.counts.clone()),
        (-1, vec![1, 1, 2, 1])
    );
    // Disjoint ranges that only fit coarser.
    let c = record_all(&[64.0], 4, 0); // bucket 5
    m.merge(&c, 4);
    assert_eq!(m.scale, -1);
    // Scale -1: 1 -> -1; 2, 3, 4 -> 0; 8 -> 1; 64 -> 2.
    assert_eq!(
        (m.positive.offset, m.positive.counts.clone()),
        (-1, vec![1, 3, 1, 1])
    );
    assert_eq!(m.count, 6);
    let mut empty = ExpPoint::default();
    empty.merge(&m, 4);
    assert_eq!(empty, m);
}
