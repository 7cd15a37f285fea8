//! Head sampling: consistent probability sampling by trace id, parent-based.
//!
//! A new root trace is sampled when the randomness of its id, the low 56
//! bits, is at least the rejection threshold `T = (1 - ratio) * 2^56`
//! (OpenTelemetry's `TraceIdRatioBased`, defined over W3C Level 2
//! randomness). Every service using the same ratio decides the same way for
//! the same trace, and a service with a higher ratio samples a superset of
//! what a lower ratio samples. The threshold is written into the root's
//! `tracestate` as `ot=th:<hex>`, so whoever counts spans downstream (RED
//! metrics) weights each by `2^56 / (2^56 - T)`.
//!
//! A span with a parent follows it: a sampled parent's children are
//! sampled (and inherit its `tracestate`, threshold included), an unsampled
//! parent's are not. The ratio lives in one `AtomicU64` (as the threshold),
//! so a policy changes it at run time without a lock.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::trace::{SpanContext, TraceState};

/// `2^56`: randomness values are below it, so as a threshold it samples
/// nothing.
pub const NEVER: u64 = 1 << 56;
const MASK_56: u64 = NEVER - 1;

/// The rejection threshold of a sampling ratio: 0 for 1.0 (everything),
/// [`NEVER`] for 0.0, NaN or anything below `2^-56`.
pub fn ratio_to_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return NEVER;
    }
    if ratio >= 1.0 {
        return 0;
    }
    // `ratio * 2^56` is exact (a power-of-two scaling); round to the nearest
    // representable threshold.
    let kept = (ratio * NEVER as f64).round() as u64;
    NEVER - kept.min(NEVER)
}

/// The sampling ratio a threshold stands for.
pub fn threshold_to_ratio(threshold: u64) -> f64 {
    (NEVER - threshold.min(NEVER)) as f64 / NEVER as f64
}

/// The `th` encoding of a threshold: 14 hex digits with trailing zeros
/// removed, `"0"` for zero. `NEVER` has no encoding (nothing is sampled, so
/// nothing carries it); it encodes as the largest threshold.
pub fn encode_threshold(threshold: u64) -> String {
    if threshold == 0 {
        return "0".to_string();
    }
    let s = format!("{:014x}", threshold.min(MASK_56));
    s.trim_end_matches('0').to_string()
}

/// Parses a `th` value: 1 to 14 lowercase hex digits, padded on the right
/// with zeros to 56 bits.
pub fn parse_threshold(th: &str) -> Option<u64> {
    let b = th.as_bytes();
    if b.is_empty() || b.len() > 14 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let v = u64::from_str_radix(th, 16).ok()?;
    Some(v << (4 * (14 - b.len())))
}

/// The randomness value of a trace id: its low 56 bits.
#[inline]
pub fn randomness(trace_id: &[u8; 16]) -> u64 {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    u64::from_be_bytes(low) & MASK_56
}

/// Whether a trace with this id is sampled at this threshold.
#[inline]
pub fn ratio_samples(threshold: u64, trace_id: &[u8; 16]) -> bool {
    randomness(trace_id) >= threshold
}

/// Parent-based sampling with a trace-id-ratio root sampler whose ratio
/// can change at any time.
#[derive(Debug)]
pub struct Sampler {
    threshold: AtomicU64,
}

/// A sampling decision: whether to record and export, and the trace state
/// the new span carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub sampled: bool,
    pub trace_state: TraceState,
}

impl Sampler {
    pub fn new(ratio: f64) -> Sampler {
        Sampler {
            threshold: AtomicU64::new(ratio_to_threshold(ratio)),
        }
    }

    /// Changes the ratio of new root traces; clamped to 0..=1, NaN is 0.
    pub fn set_ratio(&self, ratio: f64) {
        self.threshold
            .store(ratio_to_threshold(ratio), Ordering::Relaxed);
    }

    /// The ratio in force (as represented by the threshold).
    pub fn ratio(&self) -> f64 {
        threshold_to_ratio(self.threshold())
    }

    /// The rejection threshold in force.
    #[inline]
    pub fn threshold(&self) -> u64 {
        self.threshold.load(Ordering::Relaxed)
    }

    /// Decides for a span with this parent (or a root when `None`) in the
    /// trace `trace_id`.
    #[inline]
    pub fn decide(&self, parent: Option<&SpanContext>, trace_id: &[u8; 16]) -> Decision {
        match parent {
            Some(p) => Decision {
                sampled: p.is_sampled(),
                trace_state: p.trace_state.clone(),
            },
            None => {
                let t = self.threshold();
                if ratio_samples(t, trace_id) {
                    Decision {
                        sampled: true,
                        trace_state: root_trace_state(t),
                    }
                } else {
                    Decision {
                        sampled: false,
                        trace_state: TraceState::EMPTY,
                    }
                }
            }
        }
    }
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler::new(1.0)
    }
}

thread_local! {
    /// The `ot=th:..` state of the last threshold this thread sampled at,
    /// so a sampled root costs a reference count, not a format.
    static ROOT_STATE: RefCell<Option<(u64, TraceState)>> = const { RefCell::new(None) };
}

/// The trace state of a root sampled at threshold `t`: `ot=th:<hex>`.
#[inline]
pub(crate) fn root_trace_state(t: u64) -> TraceState {
    ROOT_STATE.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((cached, ts)) if *cached == t => ts.clone(),
            _ => {
                let header: Arc<str> = format!("ot=th:{}", encode_threshold(t)).into();
                let ts = TraceState::from_valid(header);
                *c = Some((t, ts.clone()));
                ts
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{new_trace_id, FLAG_SAMPLED};

    #[test]
    fn thresholds_of_the_spec_examples() {
        // Examples from the OpenTelemetry tracestate probability sampling spec.
        assert_eq!(encode_threshold(ratio_to_threshold(1.0)), "0");
        assert_eq!(encode_threshold(ratio_to_threshold(0.5)), "8");
        assert_eq!(encode_threshold(ratio_to_threshold(0.25)), "c");
        assert_eq!(encode_threshold(ratio_to_threshold(0.75)), "4");
        assert_eq!(encode_threshold(ratio_to_threshold(1.0 / 16.0)), "f");
        assert_eq!(encode_threshold(ratio_to_threshold(1.0 / 256.0)), "ff");
        assert_eq!(encode_threshold(ratio_to_threshold(0.1)), "e6666666666666");
        assert_eq!(ratio_to_threshold(0.0), NEVER);
        assert_eq!(ratio_to_threshold(f64::NAN), NEVER);
        assert_eq!(ratio_to_threshold(-1.0), NEVER);
        assert_eq!(ratio_to_threshold(2.0), 0);
        assert_eq!(ratio_to_threshold(1e-30), NEVER);
        for r in [0.5, 0.25, 0.1, 0.001] {
            assert!((threshold_to_ratio(ratio_to_threshold(r)) - r).abs() < 1e-12);
        }
    }

    #[test]
    fn parse_threshold_pads_and_validates() {
        assert_eq!(parse_threshold("0"), Some(0));
        assert_eq!(parse_threshold("8"), Some(0x80_0000_0000_0000));
        assert_eq!(parse_threshold("c"), Some(0xc0_0000_0000_0000));
        assert_eq!(parse_threshold("ffffffffffffff"), Some(MASK_56));
        for bad in ["", "fffffffffffffff", "C", "x", "-1", "+1", " 8"] {
            assert_eq!(parse_threshold(bad), None, "{bad:?}");
        }
        for t in [0, 1, 0x12_3400_0000_0000, MASK_56, ratio_to_threshold(0.1)] {
            assert_eq!(parse_threshold(&encode_threshold(t)), Some(t));
        }
    }

    #[test]
    fn randomness_is_the_low_56_bits() {
        let mut id = [0xffu8; 16];
        assert_eq!(randomness(&id), MASK_56);
        id[9] = 0x7f;
        id[8] = 0;
        assert_eq!(randomness(&id), 0x7f_ffff_ffff_ffff);
        // The spec's example: threshold 8 (50%) keeps randomness >= 2^55.
        assert!(ratio_samples(0x80_0000_0000_0000, &id) == (0x7f_ffff_ffff_ffff >= 1u64 << 55));
    }

    #[test]
    fn sampled_fraction_matches_ratio_over_100k_ids() {
        let ids: Vec<[u8; 16]> = (0..100_000).map(|_| new_trace_id()).collect();
        for ratio in [0.01, 0.1, 0.25, 0.5, 0.9] {
            let s = Sampler::new(ratio);
            let n = ids.iter().filter(|id| s.decide(None, id).sampled).count();
            let frac = n as f64 / ids.len() as f64;
            // Five standard deviations.
            let tol = 5.0 * (ratio * (1.0 - ratio) / ids.len() as f64).sqrt();
            assert!((frac - ratio).abs() < tol, "ratio {ratio}: sampled {frac}");
        }
        let all = Sampler::new(1.0);
        assert!(ids.iter().all(|id| all.decide(None, id).sampled));
        let none = Sampler::new(0.0);
        assert!(!ids.iter().any(|id| none.decide(None, id).sampled));
    }

    #[test]
    fn decisions_are_consistent_across_samplers() {
        // Two services at the same ratio agree; a higher ratio samples a
        // superset of a lower one.
        let (a, b, high) = (Sampler::new(0.3), Sampler::new(0.3), Sampler::new(0.6));
        for _ in 0..10_000 {
            let id = new_trace_id();
            let da = a.decide(None, &id).sampled;
            assert_eq!(da, b.decide(None, &id).sampled);
            if da {
                assert!(high.decide(None, &id).sampled);
            }
        }
    }

    #[test]
    fn roots_carry_the_threshold_and_children_follow_the_parent() {
        let s = Sampler::new(1.0);
        let d = s.decide(None, &new_trace_id());
        assert!(d.sampled);
        assert_eq!(d.trace_state.as_str(), "ot=th:0");
        s.set_ratio(0.25);
        assert!((s.ratio() - 0.25).abs() < 1e-15);
        let id = [0xff; 16];
        let d = s.decide(None, &id);
        assert_eq!(d.trace_state.as_str(), "ot=th:c");
        assert_eq!(d.trace_state.ot_threshold(), Some(0xc0_0000_0000_0000));

        let parent = SpanContext {
            trace_id: [0; 16], // randomness 0: a ratio sampler would drop it
            span_id: [1; 8],
            flags: FLAG_SAMPLED,
            trace_state: TraceState::parse("ot=th:8,x=y").unwrap(),
            is_remote: true,
        };
        let d = s.decide(Some(&parent), &parent.trace_id);
        assert!(d.sampled);
        assert_eq!(d.trace_state.as_str(), "ot=th:8,x=y");
        let unsampled = SpanContext {
            flags: 0,
            trace_id: [0xff; 16],
            ..parent
        };
        assert!(!s.decide(Some(&unsampled), &unsampled.trace_id).sampled);
        s.set_ratio(0.0);
        assert!(!s.decide(None, &[0xff; 16]).sampled);
    }
}
