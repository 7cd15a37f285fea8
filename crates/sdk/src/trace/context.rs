//! What identifies a span across processes, and which span is current on
//! this thread.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// The W3C `sampled` flag.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The W3C Trace Context Level 2 `random` flag: the trace id's low 56 bits
/// are random, so probability sampling may read them.
pub const FLAG_RANDOM: u8 = 0x02;

/// The most list members a `tracestate` may have.
pub const MAX_TRACE_STATE_MEMBERS: usize = 32;

/// A W3C `tracestate`: a validated list of `key=value` members, kept as its
/// header form. Cloning shares it; the empty state allocates nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TraceState(Option<Arc<str>>);

impl TraceState {
    /// The empty trace state.
    pub const EMPTY: TraceState = TraceState(None);

    /// Parses a `tracestate` header; `None` if it breaks any rule of the
    /// W3C list (a bad key or value, a duplicated key, more than 32
    /// members), in which case the whole header is to be discarded. Empty
    /// members and optional whitespace around members are allowed.
    pub fn parse(header: &str) -> Option<TraceState> {
        let mut members: Vec<(&str, &str)> = Vec::new();
        for raw in header.split(',') {
            let m = raw.trim_matches(|c| c == ' ' || c == '\t');
            if m.is_empty() {
                continue;
            }
            let (k, v) = m.split_once('=')?;
            if !valid_key(k) || !valid_value(v) || members.iter().any(|(mk, _)| *mk == k) {
                return None;
            }
            members.push((k, v));
            if members.len() > MAX_TRACE_STATE_MEMBERS {
                return None;
            }
        }
        Some(TraceState::from_members(members.into_iter()))
    }

    fn from_members<'a>(mut members: impl Iterator<Item = (&'a str, &'a str)>) -> TraceState {
        let Some((k, v)) = members.next() else {
            return TraceState::EMPTY;
        };
        let mut s = format!("{k}={v}");
        for (k, v) in members {
            s.push(',');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        TraceState(Some(s.into()))
    }

    /// A state already known valid (`ot=th:8`).
    pub(crate) fn from_valid(header: Arc<str>) -> TraceState {
        TraceState(Some(header))
    }

    /// The header form (`""` when empty).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_str().split(',').filter_map(|m| m.split_once('='))
    }

    /// The value of one member.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The state with `key` set to `value`, moved to the front as the W3C
    /// rules ask of a modified member; the last member is dropped if the list
    /// would exceed 32. `None` if the key or value is invalid.
    pub fn insert(&self, key: &str, value: &str) -> Option<TraceState> {
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        let rest: Vec<(&str, &str)> = self.members().filter(|(k, _)| *k != key).collect();
        let keep = rest.len().min(MAX_TRACE_STATE_MEMBERS - 1);
        Some(TraceState::from_members(
            std::iter::once((key, value)).chain(rest.into_iter().take(keep)),
        ))
    }

    /// The OpenTelemetry rejection threshold (`ot=th:<hex>`), if present
    /// and valid.
    pub fn ot_threshold(&self) -> Option<u64> {
        let ot = self.get("ot")?;
        let th = ot.split(';').find_map(|kv| kv.strip_prefix("th:"))?;
        crate::sampling::parse_threshold(th)
    }

    /// The state with the OpenTelemetry threshold set in the `ot` member,
    /// other `ot` sub-keys kept.
    pub fn with_ot_threshold(&self, threshold: u64) -> TraceState {
        let th = format!("th:{}", crate::sampling::encode_threshold(threshold));
        let ot = match self.get("ot") {
            Some(old) => std::iter::once(th.as_str())
                .chain(
                    old.split(';')
                        .filter(|kv| !kv.starts_with("th:") && !kv.is_empty()),
                )
                .collect::<Vec<_>>()
                .join(";"),
            None => th,
        };
        self.insert("ot", &ot).unwrap_or_else(|| self.clone())
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` or `tenant-id@system-id`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| key_char(c))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| key_char(c))
        }
    }
}

/// 1 to 256 printable ASCII characters other than `,` and `=`, not ending
/// in a space.
fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// What identifies a span: its trace, itself, its flags and trace state.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// W3C trace flags: [`FLAG_SAMPLED`], [`FLAG_RANDOM`].
    pub flags: u8,
    pub trace_state: TraceState,
    /// Whether this context came from another process (by propagation).
    pub is_remote: bool,
}

impl SpanContext {
    /// Neither id is zero.
    pub fn is_valid(&self) -> bool {
        self.trace_id != [0; 16] && self.span_id != [0; 8]
    }

    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Debug for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanContext")
            .field("trace_id", &self.trace_id_hex())
            .field("span_id", &self.span_id_hex())
            .field("flags", &self.flags)
            .field("trace_state", &self.trace_state)
            .field("is_remote", &self.is_remote)
            .finish()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

thread_local! {
    static CURRENT: RefCell<Vec<SpanContext>> = const { RefCell::new(Vec::new()) };
    /// How many spans are entered on this thread: a root span checks this
    /// plain cell instead of borrowing the stack.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Whether any span is current on this thread.
#[inline]
pub(crate) fn has_current() -> bool {
    DEPTH.with(Cell::get) != 0
}

/// The span current on this thread (the innermost entered one).
pub fn current() -> Option<SpanContext> {
    with_current(|cx| cx.cloned())
}

/// Runs `f` with the current span's context without cloning it.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&SpanContext>) -> R) -> R {
    // Never panics: during thread teardown, or re-entered, there is none.
    let mut f = Some(f);
    let r = CURRENT.try_with(|c| match c.try_borrow() {
        Ok(stack) => f.take().map(|f| f(stack.last())),
        Err(_) => None,
    });
    match (r, f) {
        (Ok(Some(r)), _) => r,
        (_, Some(f)) => f(None),
        (_, None) => unreachable!("the closure ran but returned nothing"),
    }
}

/// Makes `cx` current on this thread until the guard is dropped.
pub fn enter(cx: SpanContext) -> EnterGuard {
    let span_id = cx.span_id;
    push(cx);
    EnterGuard {
        span_id,
        _not_send: PhantomData,
    }
}

/// Makes `cx` current until [`exit`] with its span id.
pub(crate) fn push(cx: SpanContext) {
    let _ = CURRENT.try_with(|c| {
        if let Ok(mut stack) = c.try_borrow_mut() {
            stack.push(cx);
            DEPTH.with(|d| d.set(stack.len()));
        }
    });
}

/// Removes the innermost entry of `span_id` from this thread's stack; also
/// correct when entries are left out of order.
pub(crate) fn exit(span_id: [u8; 8]) {
    let _ = CURRENT.try_with(|c| {
        let Ok(mut stack) = c.try_borrow_mut() else {
            return;
        };
        if let Some(i) = stack.iter().rposition(|cx| cx.span_id == span_id) {
            stack.remove(i);
        }
        DEPTH.with(|d| d.set(stack.len()));
    });
}

/// Keeps a span current on this thread; leaving it restores the previous
/// one. Not `Send`: it belongs to the thread that entered.
#[must_use = "the span is current only while the guard lives"]
pub struct EnterGuard {
    span_id: [u8; 8],
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        exit(self.span_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_state_parses_and_rejects() {
        let ts = TraceState::parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ,,").unwrap();
        assert_eq!(ts.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(TraceState::parse("").unwrap(), TraceState::EMPTY);
        assert!(TraceState::parse("fw529a3039@dt=x,1tenant@sys-2=y").is_some());
        for bad in [
            "Rojo=1",        // uppercase key
            "rojo",          // no '='
            "rojo=1,rojo=2", // duplicate
            "rojo=a,b",      // value then bare member
            "rojo=a=b",      // '=' in value
            "rojo=end ",     // value ends in a space... trimmed, so see below
            "1abc=x",        // simple key must start with a letter
            "a@toolongsystemid=x",
            "a@=x",
            "=x",
            "k=\u{e9}",
        ] {
            let parsed = TraceState::parse(bad);
            if bad == "rojo=end " {
                // Trailing whitespace belongs to the list, not the value.
                assert_eq!(parsed.unwrap().get("rojo"), Some("end"));
            } else {
                assert!(parsed.is_none(), "{bad:?} accepted");
            }
        }
        let max: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(TraceState::parse(&max.join(",")).is_some());
        let over: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(TraceState::parse(&over.join(",")).is_none());
        assert!(TraceState::parse(&format!("k={}", "v".repeat(256))).is_some());
        assert!(TraceState::parse(&format!("k={}", "v".repeat(257))).is_none());
    }

    #[test]
    fn insert_moves_to_front_and_caps() {
        let ts = TraceState::parse("a=1,b=2,c=3").unwrap();
        assert_eq!(ts.insert("b", "9").unwrap().as_str(), "b=9,a=1,c=3");
        let full: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let ts = TraceState::parse(&full.join(",")).unwrap();
        let ts = ts.insert("new", "x").unwrap();
        assert!(ts.as_str().starts_with("new=x,k0=v"));
        assert_eq!(ts.members().count(), 32);
        assert_eq!(ts.get("k31"), None);
        assert!(TraceState::EMPTY.insert("Bad", "x").is_none());
    }

    #[test]
    fn ot_threshold_round_trip() {
        let ts = TraceState::parse("vendor=x,ot=rv:abcdef01234567;th:c").unwrap();
        assert_eq!(ts.ot_threshold(), Some(0xc0_0000_0000_0000));
        let ts = ts.with_ot_threshold(0x80_0000_0000_0000);
        assert_eq!(ts.as_str(), "ot=th:8;rv:abcdef01234567,vendor=x");
        assert_eq!(ts.ot_threshold(), Some(0x80_0000_0000_0000));
        assert_eq!(TraceState::EMPTY.with_ot_threshold(0).as_str(), "ot=th:0");
    }

    #[test]
    fn current_stack_survives_out_of_order_exit() {
        let cx = |n: u8| SpanContext {
            trace_id: [1; 16],
            span_id: [n; 8],
            flags: FLAG_SAMPLED,
            ..Default::default()
        };
        assert!(current().is_none());
        let a = enter(cx(1));
        let b = enter(cx(2));
        assert_eq!(current().unwrap().span_id, [2; 8]);
        drop(a);
        assert_eq!(current().unwrap().span_id, [2; 8]);
        drop(b);
        assert!(current().is_none());
    }
}
