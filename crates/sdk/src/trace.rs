//! Spans: a [`TracerProvider`] hands out [`Tracer`]s, which start [`Span`]s.
//!
//! A span is sampled when it starts (see `sampling`): a sampled span records
//! its attributes, events, links and status and, when it ends, goes into a
//! bounded queue that a background thread exports every second, or at 512
//! spans, as one OTLP `ExportTraceServiceRequest` through a [`Sink`]. An
//! unsampled span only carries its context for propagation: no allocation,
//! no clock read.
//!
//! Parent and child within a thread: [`Span::enter`] (or
//! [`Tracer::in_span`]) makes a span current, and spans started while it is
//! current are its children. Across threads and processes pass the
//! [`SpanContext`] ([`Tracer::start_with_parent`], `propagation`).

mod batch;
mod clock;
mod context;
mod id;
mod otlp;
mod resource;
mod span;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub(crate) use batch::Batcher;
pub use batch::{BatchConfig, BatchStats};
pub(crate) use clock::now_unix_nano;
pub use context::{
    current, enter, EnterGuard, SpanContext, TraceState, FLAG_RANDOM, FLAG_SAMPLED,
    MAX_TRACE_STATE_MEMBERS,
};
#[cfg(feature = "tracing")]
pub(crate) use context::{exit, push};
pub(crate) use context::{has_current, hex, with_current};
pub use id::{new_span_id, new_trace_id};
pub(crate) use otlp::encode_scope;
pub use resource::{host_name, Resource};
use span::SpanData;
pub use span::{Span, SpanKind, Status, MAX_ATTRIBUTES, MAX_EVENTS, MAX_LINKS};

use crate::export::{Signal, Sink};
use crate::sampling::{self, Sampler};

/// The instrumentation scope of a tracer or logger (the library that
/// emits). Interned for the life of the process, so spans refer to it with
/// a plain reference.
#[derive(Debug, PartialEq, Eq)]
pub struct Scope {
    pub name: String,
    pub version: String,
}

/// Distinct scopes kept; beyond it new names share one `"other"` scope, so
/// that tracers created from unbounded names cannot grow memory.
const MAX_SCOPES: usize = 1024;

/// The interned scope `name`/`version`.
pub(crate) fn intern_scope(name: &str, version: &str) -> &'static Scope {
    static SCOPES: OnceLock<Mutex<HashMap<(String, String), &'static Scope>>> = OnceLock::new();
    let mut scopes = SCOPES.get_or_init(Default::default).lock();
    let key = (name.to_string(), version.to_string());
    if let Some(s) = scopes.get(&key) {
        return s;
    }
    let key = if scopes.len() >= MAX_SCOPES {
        ("other".to_string(), String::new())
    } else {
        key
    };
    scopes.entry(key.clone()).or_insert_with(|| {
        Box::leak(Box::new(Scope {
            name: key.0,
            version: key.1,
        }))
    })
}

/// How a [`TracerProvider`] samples and batches.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    pub resource: Resource,
    /// Head sampling ratio of new root traces, 0.0 to 1.0 (default 1.0).
    pub sampling_ratio: f64,
    pub batch: BatchConfig,
}

impl Default for TraceConfig {
    fn default() -> TraceConfig {
        TraceConfig {
            resource: Resource::new("unknown_service", []),
            sampling_ratio: 1.0,
            batch: BatchConfig::default(),
        }
    }
}

pub(crate) struct ProviderShared {
    sampler: Sampler,
    pub(crate) spans: Batcher<Box<SpanData>>,
    sink: Arc<dyn Sink>,
}

impl std::fmt::Debug for ProviderShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderShared").finish_non_exhaustive()
    }
}

/// The source of tracers; cheap to clone. Spans still queued are exported
/// when the last clone (and the last tracer and span) is dropped, or at
/// [`TracerProvider::shutdown`].
#[derive(Clone)]
pub struct TracerProvider {
    shared: Arc<ProviderShared>,
}

impl TracerProvider {
    pub fn new(sink: Arc<dyn Sink>, config: TraceConfig) -> TracerProvider {
        // Anchor the clock before the first span reads it.
        clock::now_unix_nano();
        let resource = prost::Message::encode_to_vec(&config.resource.to_otlp());
        let export_sink = Arc::clone(&sink);
        let spans = Batcher::new(
            &config.batch,
            "sonde-spans",
            move |batch: &mut Vec<Box<SpanData>>| {
                let body = otlp::encode_spans(&resource, batch);
                export_sink.send(Signal::Traces, body);
                span::recycle(batch);
            },
        );
        TracerProvider {
            shared: Arc::new(ProviderShared {
                sampler: Sampler::new(config.sampling_ratio),
                spans,
                sink,
            }),
        }
    }

    /// A tracer for the instrumentation scope `name`.
    pub fn tracer(&self, name: &str) -> Tracer {
        self.versioned_tracer(name, "")
    }

    /// A tracer for the instrumentation scope `name` at `version`.
    pub fn versioned_tracer(&self, name: &str, version: &str) -> Tracer {
        Tracer {
            scope: intern_scope(name, version),
            provider: Arc::clone(&self.shared),
        }
    }

    /// Changes the head sampling ratio of new root traces at once.
    pub fn set_sampling_ratio(&self, ratio: f64) {
        self.shared.sampler.set_ratio(ratio);
    }

    pub fn sampling_ratio(&self) -> f64 {
        self.shared.sampler.ratio()
    }

    /// Queue and export counters of the span processor.
    pub fn stats(&self) -> BatchStats {
        self.shared.spans.stats()
    }

    /// Exports every finished span and waits, at most `timeout`, until the
    /// sink has sent them.
    pub fn force_flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let queued = self.shared.spans.flush(timeout);
        queued
            && self
                .shared
                .sink
                .flush(deadline.saturating_duration_since(Instant::now()))
    }

    /// Exports what is queued, stops the processor (later spans are
    /// dropped) and waits, at most `timeout`, for the sink to send it.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.shared.spans.shutdown();
        self.shared.sink.flush(timeout)
    }
}

impl std::fmt::Debug for TracerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracerProvider")
            .field("sampling_ratio", &self.sampling_ratio())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Starts spans of one instrumentation scope; cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    scope: &'static Scope,
    provider: Arc<ProviderShared>,
}

impl Tracer {
    /// Starts a span, the child of the current span of this thread if there
    /// is one, else the root of a new trace.
    #[inline]
    pub fn start(&self, name: impl Into<Cow<'static, str>>) -> Span {
        if has_current() {
            with_current(|parent| self.build(name.into(), parent))
        } else {
            self.build(name.into(), None)
        }
    }

    /// Starts a child of `parent` (from another thread, or extracted from
    /// a request). An invalid parent starts a new trace.
    #[inline]
    pub fn start_with_parent(
        &self,
        name: impl Into<Cow<'static, str>>,
        parent: &SpanContext,
    ) -> Span {
        self.build(name.into(), Some(parent))
    }

    /// Starts the root of a new trace, whatever is current.
    #[inline]
    pub fn start_root(&self, name: impl Into<Cow<'static, str>>) -> Span {
        self.build(name.into(), None)
    }

    /// Runs `f` inside a new span (current for its duration), then ends it.
    pub fn in_span<R>(
        &self,
        name: impl Into<Cow<'static, str>>,
        f: impl FnOnce(&mut Span) -> R,
    ) -> R {
        let mut span = self.start(name);
        let guard = span.enter();
        let r = f(&mut span);
        drop(guard);
        span.end();
        r
    }

    /// The sampler's threshold decides roots; children follow their parent.
    /// The non-recording path is inlined into the caller; recording is not.
    #[inline(always)]
    fn build(&self, name: Cow<'static, str>, parent: Option<&SpanContext>) -> Span {
        match parent {
            Some(p) if p.is_valid() => {
                if p.is_sampled() {
                    return self.record(name, p.trace_id, p.flags, p.trace_state.clone(), Some(p));
                }
                Span::non_recording(SpanContext {
                    trace_id: p.trace_id,
                    span_id: new_span_id(),
                    flags: p.flags & FLAG_RANDOM,
                    trace_state: p.trace_state.clone(),
                    is_remote: false,
                })
            }
            _ => {
                let trace_id = new_trace_id();
                let threshold = self.provider.sampler.threshold();
                if sampling::ratio_samples(threshold, &trace_id) {
                    return self.record_root(name, trace_id, threshold);
                }
                Span::non_recording(SpanContext {
                    trace_id,
                    span_id: new_span_id(),
                    flags: FLAG_RANDOM,
                    trace_state: TraceState::EMPTY,
                    is_remote: false,
                })
            }
        }
    }

    #[inline(never)]
    fn record_root(&self, name: Cow<'static, str>, trace_id: [u8; 16], threshold: u64) -> Span {
        let state = sampling::root_trace_state(threshold);
        self.record(name, trace_id, FLAG_SAMPLED | FLAG_RANDOM, state, None)
    }

    #[inline(never)]
    fn record(
        &self,
        name: Cow<'static, str>,
        trace_id: [u8; 16],
        flags: u8,
        trace_state: TraceState,
        parent: Option<&SpanContext>,
    ) -> Span {
        let cx = SpanContext {
            trace_id,
            span_id: new_span_id(),
            flags: flags & (FLAG_SAMPLED | FLAG_RANDOM),
            trace_state,
            is_remote: false,
        };
        Span::recording(cx, name, parent, self.scope, self.provider.spans.queue())
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("scope", &self.scope)
            .finish()
    }
}
