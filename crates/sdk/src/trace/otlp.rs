//! Finished spans to an OTLP `ExportTraceServiceRequest` body.

use super::clock::to_unix_nano;
use super::span::{keep_last_of_each_key, superseded, SpanData, Status};
use super::wire;
use super::Scope;

/// OTLP span flags: the W3C flags, and whether the parent was remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Encodes a batch of finished spans, grouped by instrumentation scope.
/// `resource` is an encoded `Resource` message body.
pub(crate) fn encode_spans(resource: &[u8], spans: &mut [Box<SpanData>]) -> Vec<u8> {
    for s in spans.iter_mut().filter(|s| s.attributes.len() > 16) {
        keep_last_of_each_key(&mut s.attributes);
    }
    let spans: &[Box<SpanData>] = spans;
    let mut scopes: Vec<&'static Scope> = Vec::new();
    for s in spans.iter() {
        if !scopes.iter().any(|sc| std::ptr::eq(*sc, s.scope)) {
            scopes.push(s.scope);
        }
    }
    let mut buf = Vec::with_capacity(256 * spans.len() + resource.len() + 64);
    // ExportTraceServiceRequest.resource_spans
    wire::message(&mut buf, 1, |b| {
        // ResourceSpans.resource
        wire::message(b, 1, |b| b.extend_from_slice(resource));
        for scope in scopes {
            // ResourceSpans.scope_spans
            wire::message(b, 2, |b| {
                encode_scope(b, scope);
                for s in spans.iter().filter(|s| std::ptr::eq(s.scope, scope)) {
                    // ScopeSpans.spans
                    wire::message(b, 2, |b| encode_span(b, s));
                }
            });
        }
    });
    buf
}

/// `ScopeSpans.scope` / `ScopeLogs.scope` (both field 1).
pub(crate) fn encode_scope(b: &mut Vec<u8>, scope: &Scope) {
    wire::message(b, 1, |b| {
        wire::string(b, 1, &scope.name);
        wire::string(b, 2, &scope.version);
    });
}

fn encode_span(b: &mut Vec<u8>, s: &SpanData) {
    let cx = &s.context;
    wire::bytes(b, 1, &cx.trace_id);
    wire::bytes(b, 2, &cx.span_id);
    wire::string(b, 3, cx.trace_state.as_str());
    if s.parent_span_id != [0; 8] {
        wire::bytes(b, 4, &s.parent_span_id);
    }
    wire::string(b, 5, &s.name);
    wire::uint(b, 6, s.kind.to_otlp() as u64);
    let start = to_unix_nano(s.start);
    let end = start + s.end.saturating_duration_since(s.start).as_nanos() as u64;
    wire::fixed64(b, 7, start);
    wire::fixed64(b, 8, end);
    // A key set twice counts once: the last value.
    for (i, kv) in s.attributes.iter().enumerate() {
        if !superseded(&s.attributes, i) {
            wire::attribute(b, 9, kv);
        }
    }
    wire::uint(b, 10, u64::from(s.dropped_attributes));
    for e in &s.events {
        wire::message(b, 11, |b| {
            wire::fixed64(b, 1, e.time_unix_nano);
            wire::string(b, 2, &e.name);
            wire::attributes(b, 3, &e.attributes);
        });
    }
    wire::uint(b, 12, u64::from(s.dropped_events));
    for l in &s.links {
        wire::message(b, 13, |b| {
            wire::bytes(b, 1, &l.context.trace_id);
            wire::bytes(b, 2, &l.context.span_id);
            wire::string(b, 3, l.context.trace_state.as_str());
            wire::attributes(b, 4, &l.attributes);
            let remote = if l.context.is_remote { IS_REMOTE } else { 0 };
            wire::fixed32(b, 6, u32::from(l.context.flags) | HAS_IS_REMOTE | remote);
        });
    }
    wire::uint(b, 14, u64::from(s.dropped_links));
    let (code, message) = match &s.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error(m) => (2, m.as_ref()),
    };
    if code != 0 {
        wire::message(b, 15, |b| {
            wire::string(b, 2, message);
            wire::uint(b, 3, code);
        });
    }
    let remote = if s.parent_is_remote { IS_REMOTE } else { 0 };
    wire::fixed32(b, 16, u32::from(cx.flags) | HAS_IS_REMOTE | remote);
}
