//! A span being recorded, and what it becomes when it ends.

use std::borrow::Cow;
use std::cell::RefCell;

use parking_lot::Mutex;

use super::batch::Queue;
use super::clock::{anchor_instant, now_unix_nano, Instant};
use super::context::{self, EnterGuard, SpanContext};
use super::Scope;
use crate::attributes::KeyValue;

/// Attributes, events and links kept per span; more are counted as dropped.
pub const MAX_ATTRIBUTES: usize = 128;
pub const MAX_EVENTS: usize = 128;
pub const MAX_LINKS: usize = 128;

/// The role of a span in a request (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanKind {
    #[default]
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// The OTLP enum value.
    pub fn to_otlp(self) -> i32 {
        match self {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// Parses `server`, `client`, `producer`, `consumer`, `internal`
    /// (any case), as the `otel.kind` field of `tracing` spans gives it.
    pub fn parse(s: &str) -> Option<SpanKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }
}

/// The outcome of a span's operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Unset,
    Ok,
    Error(Cow<'static, str>),
}

/// A timestamped event within a span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanEvent {
    pub(crate) time_unix_nano: u64,
    pub(crate) name: Cow<'static, str>,
    pub(crate) attributes: Vec<KeyValue>,
}

/// A link to another span (of this trace or another).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanLink {
    pub(crate) context: SpanContext,
    pub(crate) attributes: Vec<KeyValue>,
}

/// Everything recorded about a sampled span; what the export thread
/// receives when it ends.
#[derive(Debug)]
pub(crate) struct SpanData {
    pub(crate) scope: &'static Scope,
    /// Where the span goes when it ends (see `take_queue`).
    queue: Option<SpanQueue>,
    pub(crate) context: SpanContext,
    /// Zero for a root span.
    pub(crate) parent_span_id: [u8; 8],
    pub(crate) parent_is_remote: bool,
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: SpanKind,
    /// Monotonic readings, converted to Unix time by the export thread.
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// In the order set; a key set twice is in twice until the export
    /// keeps the last (setting stays a push).
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) dropped_attributes: u32,
    pub(crate) events: Vec<SpanEvent>,
    pub(crate) dropped_events: u32,
    pub(crate) links: Vec<SpanLink>,
    pub(crate) dropped_links: u32,
    pub(crate) status: Status,
}

/// A span: recording (sampled) or not. Both carry a valid [`SpanContext`]
/// to propagate; a non-recording span allocates nothing and ignores every
/// setter. It ends at [`Span::end`] or when dropped.
pub struct Span {
    cx: SpanContext,
    rec: Option<Box<SpanData>>,
}

impl Span {
    #[inline(always)]
    pub(crate) fn non_recording(cx: SpanContext) -> Span {
        Span { cx, rec: None }
    }

    pub(crate) fn recording(
        cx: SpanContext,
        name: Cow<'static, str>,
        parent: Option<&SpanContext>,
        scope: &'static Scope,
        queue: &SpanQueue,
    ) -> Span {
        // The clock first: its fence would otherwise wait for the recycled
        // box's cache lines.
        let start = Instant::now();
        let mut data = spare_data();
        data.scope = scope;
        data.queue = Some(take_queue(queue));
        data.parent_span_id = parent.map_or([0; 8], |p| p.span_id);
        data.parent_is_remote = parent.is_some_and(|p| p.is_remote);
        data.name = name;
        data.start = start;
        Span {
            cx,
            rec: Some(data),
        }
    }

    /// This span's context, to propagate or to parent other spans with.
    pub fn context(&self) -> &SpanContext {
        &self.cx
    }

    /// Whether this span records anything (it is sampled).
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.rec.is_some()
    }

    #[inline(always)]
    fn data(&mut self) -> Option<&mut SpanData> {
        self.rec.as_deref_mut()
    }

    /// Sets an attribute; a later value for the same key replaces it.
    #[inline(always)]
    pub fn set_attribute(&mut self, kv: KeyValue) {
        if let Some(d) = self.data() {
            if d.attributes.len() < MAX_ATTRIBUTES {
                d.attributes.push(kv);
            } else {
                set_attribute_when_full(d, kv);
            }
        }
    }

    /// Sets several attributes.
    pub fn set_attributes(&mut self, kvs: impl IntoIterator<Item = KeyValue>) {
        for kv in kvs {
            self.set_attribute(kv);
        }
    }

    /// Renames the span.
    pub fn set_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(d) = self.data() {
            d.name = name.into();
        }
    }

    pub fn set_kind(&mut self, kind: SpanKind) {
        if let Some(d) = self.data() {
            d.kind = kind;
        }
    }

    /// Sets the status. `Ok` is final; `Unset` changes nothing.
    pub fn set_status(&mut self, status: Status) {
        if let Some(d) = self.data() {
            match (&d.status, status) {
                (Status::Ok, _) | (_, Status::Unset) => {}
                (_, s) => d.status = s,
            }
        }
    }

    /// Adds an event now.
    pub fn add_event(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) {
        if let Some(d) = self.data() {
            if d.events.len() >= MAX_EVENTS {
                d.dropped_events += 1;
                return;
            }
            d.events.push(SpanEvent {
                time_unix_nano: now_unix_nano(),
                name: name.into(),
                attributes: capped(attributes),
            });
        }
    }

    /// Links this span to another.
    pub fn add_link(
        &mut self,
        context: SpanContext,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) {
        if let Some(d) = self.data() {
            if !context.is_valid() {
                return;
            }
            if d.links.len() >= MAX_LINKS {
                d.dropped_links += 1;
                return;
            }
            d.links.push(SpanLink {
                context,
                attributes: capped(attributes),
            });
        }
    }

    /// Records an error: an `exception` event (`exception.type`,
    /// `exception.message`) and the status `Error(message)`.
    pub fn record_error<E: std::error::Error + ?Sized>(&mut self, err: &E) {
        if !self.is_recording() {
            return;
        }
        let message = err.to_string();
        self.add_event(
            "exception",
            [
                KeyValue::new("exception.type", std::any::type_name::<E>()),
                KeyValue::new("exception.message", message.clone()),
            ],
        );
        self.set_status(Status::Error(message.into()));
    }

    /// Makes this span the current one on this thread (the parent of spans
    /// started there, the source of log records' ids) until the guard is
    /// dropped.
    pub fn enter(&self) -> EnterGuard {
        context::enter(self.cx.clone())
    }

    /// Ends the span now.
    #[inline(always)]
    pub fn end(mut self) {
        self.finish();
        // Nothing is left to drop but the trace state: skipping the drop
        // glue lets the compiler keep a non-recording span in registers.
        let trace_state = std::mem::take(&mut self.cx.trace_state);
        std::mem::forget(self);
        drop(trace_state);
    }

    #[inline(always)]
    fn finish(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.submit(rec);
        }
    }

    /// Stamps the end and queues the span for export.
    #[inline(never)]
    fn submit(&mut self, mut data: Box<SpanData>) {
        data.end = Instant::now();
        data.context = std::mem::take(&mut self.cx);
        if let Some(queue) = data.queue.take() {
            queue.push(data);
            stash_queue(queue);
        }
    }
}

impl Drop for Span {
    #[inline(always)]
    fn drop(&mut self) {
        self.finish();
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.cx)
            .field("recording", &self.is_recording())
            .finish()
    }
}

/// At the limit: drop superseded values, then replace or drop.
#[cold]
fn set_attribute_when_full(d: &mut SpanData, kv: KeyValue) {
    keep_last_of_each_key(&mut d.attributes);
    if let Some(a) = d.attributes.iter_mut().find(|a| a.key == kv.key) {
        a.value = kv.value;
    } else if d.attributes.len() < MAX_ATTRIBUTES {
        d.attributes.push(kv);
    } else {
        d.dropped_attributes += 1;
    }
}

/// Removes every attribute whose key is set again later, keeping the order
/// of the rest.
pub(crate) fn keep_last_of_each_key(attrs: &mut Vec<KeyValue>) {
    if attrs.len() < 2 {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(attrs.len());
    let mut keep = vec![false; attrs.len()];
    for (i, kv) in attrs.iter().enumerate().rev() {
        keep[i] = seen.insert(kv.key.as_str());
    }
    let mut i = 0;
    attrs.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

/// Whether the attribute at `i` is superseded by a later one (a quadratic
/// check, for the short lists spans usually have).
#[inline]
pub(crate) fn superseded(attrs: &[KeyValue], i: usize) -> bool {
    let key = &attrs[i].key;
    attrs[i + 1..].iter().any(|a| a.key == *key)
}

fn capped(attributes: impl IntoIterator<Item = KeyValue>) -> Vec<KeyValue> {
    attributes.into_iter().take(MAX_ATTRIBUTES).collect()
}

// ---- recycling ---------------------------------------------------------
//
// A finished span's `SpanData` (and its attribute vector) goes back to a
// pool once exported, so that in a steady state starting a sampled span
// allocates nothing: the export thread returns boxes to `POOL`, each thread
// takes them from there `REFILL` at a time into its own `SPARE`.

/// Boxes kept in the shared pool; more are freed.
const POOL_MAX: usize = 2048;
/// Boxes a thread takes from the pool at once.
const REFILL: usize = 32;
/// Capacity a recycled attribute vector may keep.
const KEEP_ATTRIBUTES: usize = 16;

// Boxes on purpose (here and below): a finished span moves through the
// queue and the pool as one pointer, and its box is what is recycled.
#[allow(clippy::vec_box)]
static POOL: Mutex<Vec<Box<SpanData>>> = Mutex::new(Vec::new());

thread_local! {
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<SpanData>>> = const { RefCell::new(Vec::new()) };
}

static EMPTY_SCOPE: Scope = Scope {
    name: String::new(),
    version: String::new(),
};

impl SpanData {
    fn empty() -> SpanData {
        SpanData {
            scope: &EMPTY_SCOPE,
            queue: None,
            context: SpanContext::default(),
            parent_span_id: [0; 8],
            parent_is_remote: false,
            name: Cow::Borrowed(""),
            kind: SpanKind::Internal,
            start: anchor_instant(),
            end: anchor_instant(),
            attributes: Vec::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            status: Status::Unset,
        }
    }

    /// Back to `empty()`, keeping a small attribute vector's capacity.
    fn reset(&mut self) {
        let mut attributes = std::mem::take(&mut self.attributes);
        attributes.clear();
        if attributes.capacity() > KEEP_ATTRIBUTES {
            attributes = Vec::new();
        }
        *self = SpanData {
            attributes,
            ..SpanData::empty()
        };
    }
}

/// The queue of a provider's finished spans.
pub(crate) type SpanQueue = Queue<Box<SpanData>>;

thread_local! {
    /// The handle of the queue this thread last ended a span into.
    static STASH: RefCell<Option<SpanQueue>> = const { RefCell::new(None) };
}

/// A handle on `queue` for a new span: the one this thread stashed when
/// it ended its last span, if it is the same queue, else a new clone. A
/// handle thus moves from span to span, and a span costs no reference
/// count on the queue.
#[inline]
fn take_queue(queue: &SpanQueue) -> SpanQueue {
    STASH
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            match s.take() {
                Some(q) if q.same(queue) => Some(q),
                other => {
                    *s = other;
                    None
                }
            }
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| queue.clone())
}

#[inline]
fn stash_queue(queue: SpanQueue) {
    let _ = STASH.try_with(move |s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = Some(queue);
        }
    });
}

/// A cleared `SpanData`, recycled when one is at hand.
#[inline]
fn spare_data() -> Box<SpanData> {
    SPARE
        .try_with(|spare| {
            let mut spare = spare.try_borrow_mut().ok()?;
            if spare.is_empty() {
                let mut pool = POOL.lock();
                let at = pool.len().saturating_sub(REFILL);
                spare.extend(pool.drain(at..));
            }
            spare.pop()
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(SpanData::empty()))
}

/// Returns exported spans to the pool (emptying `spans`).
#[allow(clippy::vec_box)]
pub(crate) fn recycle(spans: &mut Vec<Box<SpanData>>) {
    let room = POOL_MAX.saturating_sub(POOL.lock().len());
    spans.truncate(room);
    for s in spans.iter_mut() {
        s.reset();
    }
    let mut pool = POOL.lock();
    let room = POOL_MAX.saturating_sub(pool.len());
    pool.extend(spans.drain(..).take(room));
}
