//! The detector on synthetic series with one injected anomaly each: the
//! anomaly must score highest, near where it was injected, and the rest of
//! the series must score low.

use sonde_analysis::{Detector, DetectorConfig};

const STEP_MS: i64 = 300_000; // five minutes
const T0: i64 = 1_700_006_400_000; // a UTC midnight

/// A small deterministic noise source (xorshift), roughly uniform in [-1, 1].
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Runs the default detector; returns the scores.
fn scores(values: &[f64]) -> Vec<f64> {
    let mut d = Detector::new(DetectorConfig::default());
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| d.update(T0 + i as i64 * STEP_MS, v).score)
        .collect()
}

/// The highest score must fall within `near` of `at` (at or after it: the
/// detector is causal) and raise an alert; outside `[at - 5, at + settle)`
/// no score after the learning period may reach the alert level.
fn check(name: &str, values: &[f64], at: usize, near: usize, settle: usize) {
    let alert = DetectorConfig::default().alert_score;
    let s = scores(values);
    let (argmax, max) = s
        .iter()
        .enumerate()
        .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    assert!(
        argmax >= at && argmax <= at + near,
        "{name}: highest score {max:.3} at {argmax}, injected at {at}"
    );
    assert!(max >= alert, "{name}: the anomaly scored only {max:.3}");
    let learn = 600;
    for (i, &v) in s.iter().enumerate().skip(learn) {
        if i + 5 >= at && i < at + settle {
            continue;
        }
        assert!(
            v < alert,
            "{name}: score {v:.3} at {i}, away from the anomaly at {at}"
        );
    }
}

#[test]
fn daily_sine_with_noise_and_a_spike() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let day = 288.0;
    let mut v: Vec<f64> = (0..4032)
        .map(|i| {
            50.0 + 20.0 * (2.0 * std::f64::consts::PI * i as f64 / day).sin() + 2.0 * noise.next()
        })
        .collect();
    v[3000] += 25.0;
    check("sine + spike", &v, 3000, 2, 300);
}

#[test]
fn level_shift() {
    let mut noise = Noise(42);
    let v: Vec<f64> = (0..3000)
        .map(|i| if i < 2000 { 10.0 } else { 16.0 } + noise.next())
        .collect();
    check("level shift", &v, 2000, 10, 400);
}

#[test]
fn flat_line_with_one_drop() {
    let mut v = vec![5.0; 2500];
    v[1800] = 0.0;
    check("flat line + drop", &v, 1800, 0, 300);
}

#[test]
fn explanation_says_what_was_expected() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut last = None;
    for i in 0..1200 {
        let v = if i == 1100 {
            100.0
        } else {
            10.0 + (i % 5) as f64 * 0.1
        };
        let a = d.update(T0 + i * STEP_MS, v);
        if i == 1100 {
            last = Some(a);
        } else if a.score < DetectorConfig::default().explain_above {
            assert!(
                a.explanation.is_empty(),
                "no explanation is built for ordinary points"
            );
        }
    }
    let a = last.unwrap();
    println!("{}", a.explanation);
    assert!(
        a.score >= DetectorConfig::default().explain_above,
        "score {}",
        a.score
    );
    assert!(a.expected_high < 20.0 && a.expected_low > 0.0, "{a:?}");
    assert!(
        a.explanation
            .starts_with("observed 100 above the expected range"),
        "{}",
        a.explanation
    );
}

#[test]
fn non_finite_values_are_ignored() {
    let mut d = Detector::new(DetectorConfig::default());
    for i in 0..500 {
        let v = if i % 50 == 0 { f64::NAN } else { 1.0 };
        let a = d.update(T0 + i * STEP_MS, v);
        assert!((0.0..=1.0).contains(&a.score));
    }
}

#[test]
fn absurd_values_do_not_break_the_detector() {
    // A garbage value (a division by almost zero upstream) among steady
    // ones: ignored, so the detector still finds a later jump.
    let mut d = Detector::new(DetectorConfig::default());
    let mut top = 0.0f64;
    for i in 0..1_000i64 {
        let v = match i {
            300 => 1e300,
            301 => -1e38,
            900.. => 50.0,
            _ => 10.0 + (i % 5) as f64 * 0.1,
        };
        let a = d.update(T0 + i * STEP_MS, v);
        assert!((0.0..=1.0).contains(&a.score), "score {} at {i}", a.score);
        if i == 900 {
            top = a.score;
        }
    }
    assert!(
        top >= DetectorConfig::default().alert_score,
        "the jump scored {top}"
    );
}

#[test]
fn state_fits_the_per_series_budget() {
    // Every watched series pays this, so the budget is a hard limit.
    let size = std::mem::size_of::<Detector>();
    assert!(size <= 1024, "detector state is {size} bytes");
}

#[test]
fn ramp_to_four_times_the_level() {
    // A noisy latency (mean 0.18, 15% noise) ramps to 0.74 over 60 points
    // and stays there: a sustained shift, each step small against the
    // noise. It must alert within 30 points of the ramp's start, and not
    // before it.
    let mut noise = Noise(7);
    let start = 400;
    let v: Vec<f64> = (0..600)
        .map(|i| {
            let level = if i < start {
                0.18
            } else {
                0.18 + 0.56 * ((i - start + 1) as f64 / 60.0).min(1.0)
            };
            level * (1.0 + 0.15 * noise.next() * 1.7)
        })
        .collect();
    let alert = DetectorConfig::default().alert_score;
    let s = scores(&v);
    let first = s.iter().position(|&x| x >= alert);
    assert!(
        matches!(first, Some(i) if i >= start && i < start + 30),
        "first alert at {first:?}, ramp from {start}"
    );
}
