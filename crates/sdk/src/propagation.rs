//! W3C Trace Context: the `traceparent` and `tracestate` headers.
//!
//! `inject` writes the current span's context into outgoing headers;
//! `extract` reads an incoming request's, rejecting anything the
//! specification calls invalid (a bad `traceparent` means no parent at all;
//! a bad `tracestate` is dropped and the `traceparent` kept). Parsing never
//! panics and never allocates for the ids.

use crate::trace::{SpanContext, TraceState, FLAG_RANDOM, FLAG_SAMPLED};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Writes `traceparent` (and `tracestate` when not empty) through `set`.
/// An invalid context writes nothing.
pub fn inject(cx: &SpanContext, set: &mut impl FnMut(&str, &str)) {
    if !cx.is_valid() {
        return;
    }
    set(TRACEPARENT, &traceparent(cx));
    if !cx.trace_state.is_empty() {
        set(TRACESTATE, cx.trace_state.as_str());
    }
}

/// Injects the current span's context, if there is one.
pub fn inject_current(set: &mut impl FnMut(&str, &str)) {
    if let Some(cx) = crate::trace::current() {
        inject(&cx, set);
    }
}

/// The `traceparent` value of a context (version 00). Only the flags this
/// version defines (`sampled`, and Level 2's `random`) are sent.
pub fn traceparent(cx: &SpanContext) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    s.push_str(&cx.trace_id_hex());
    s.push('-');
    s.push_str(&cx.span_id_hex());
    s.push('-');
    s.push_str(&crate::trace::hex(&[
        cx.flags & (FLAG_SAMPLED | FLAG_RANDOM)
    ]));
    s
}

/// Reads a remote parent from `get` (a header lookup by lowercase name):
/// `None` when `traceparent` is missing or invalid.
pub fn extract<'h>(get: impl Fn(&str) -> Option<&'h str>) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = parse_traceparent(get(TRACEPARENT)?)?;
    let trace_state = get(TRACESTATE)
        .and_then(TraceState::parse)
        .unwrap_or_default();
    Some(SpanContext {
        trace_id,
        span_id,
        flags,
        trace_state,
        is_remote: true,
    })
}

/// Parses a `traceparent` value into trace id, parent id and flags.
pub fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = value.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(v[0], v[1])?;
    match version {
        0xff => return None,
        // Version 00 is exactly 55 characters.
        0 if v.len() != 55 => return None,
        // A later version may append fields after a '-'.
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(v[3 + 2 * i], v[4 + 2 * i])?;
    }
    let mut span_id = [0u8; 8];
    for (i, b) in span_id.iter_mut().enumerate() {
        *b = hex_byte(v[36 + 2 * i], v[37 + 2 * i])?;
    }
    let flags = hex_byte(v[53], v[54])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags))
}

/// Two lowercase hex digits.
fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(hi)? << 4 | nibble(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn extract_from(h: &HashMap<String, String>) -> Option<SpanContext> {
        extract(|k| h.get(k).map(String::as_str))
    }

    #[test]
    fn spec_examples() {
        // W3C Trace Context, section 3.2.2.
        let h = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ]);
        let cx = extract_from(&h).unwrap();
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id_hex(), "00f067aa0ba902b7");
        assert!(cx.is_sampled());
        assert!(cx.is_remote);
        assert_eq!(cx.trace_state.get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(cx.trace_state.get("congo"), Some("t61rcWkgMzE"));

        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        let cx = extract_from(&h).unwrap();
        assert!(!cx.is_sampled());
        assert!(cx.trace_state.is_empty());
    }

    #[test]
    fn round_trip() {
        let cx = SpanContext {
            trace_id: crate::trace::new_trace_id(),
            span_id: crate::trace::new_span_id(),
            flags: FLAG_SAMPLED | FLAG_RANDOM,
            trace_state: TraceState::parse("ot=th:c,vendor=a@b").unwrap(),
            is_remote: false,
        };
        let mut h = HashMap::new();
        inject(&cx, &mut |k: &str, v: &str| {
            h.insert(k.to_string(), v.to_string());
        });
        assert_eq!(h["traceparent"].len(), 55);
        assert!(h["traceparent"].ends_with("-03"));
        let back = extract_from(&h).unwrap();
        assert_eq!(
            back,
            SpanContext {
                is_remote: true,
                ..cx
            }
        );
        // Nothing for an invalid context.
        let mut n = 0;
        inject(&SpanContext::default(), &mut |_: &str, _: &str| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn rejects_invalid_traceparent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(parse_traceparent(good).is_some());
        for bad in [
            "",
            "00",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00 too long
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // short flags
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // future, no '-'
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
        // A future version may carry more fields; surrounding blanks are
        // tolerated.
        assert!(parse_traceparent(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"
        )
        .is_some());
        assert!(parse_traceparent(&format!(" \t{good} ")).is_some());
    }

    #[test]
    fn bad_tracestate_is_dropped_traceparent_kept() {
        let h = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "foo=1,foo=2"),
        ]);
        let cx = extract_from(&h).unwrap();
        assert!(cx.trace_state.is_empty());
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"0123456789abcdefABCDEF-=,@ \t\xff\x00xyz";
        for i in 0..20_000 {
            let len = (next() % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let s = String::from_utf8_lossy(&bytes).into_owned();
            // Mutate a valid header too, to reach the deeper checks.
            let mut mutated = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec();
            let at = (next() % mutated.len() as u64) as usize;
            mutated[at] = alphabet[i % alphabet.len()];
            let m = String::from_utf8_lossy(&mutated).into_owned();
            for tp in [s.as_str(), m.as_str()] {
                let _ = extract(|k| match k {
                    TRACEPARENT => Some(tp),
                    _ => Some(s.as_str()),
                });
            }
            let _ = TraceState::parse(&s);
        }
        // Multi-byte characters at the fixed positions.
        let _ = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01");
        let _ = parse_traceparent(&"é".repeat(40));
    }
}
