//! What can be asked of the record store, and how a row is matched.

use std::collections::BTreeMap;

use sonde_model::records::{
    Attributes, LogRecord, SpanId, SpanRecord, StatusCode, TimestampNs, TraceId,
};

/// Trace search: spans matching every given condition select their trace.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    pub service: Option<String>,
    /// Span name (operation), exact.
    pub name: Option<String>,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    /// Only spans with error status.
    pub errors_only: bool,
    /// Equality on span attributes, falling back to resource attributes.
    pub attributes: Vec<(String, String)>,
    pub start_ns: TimestampNs,
    pub end_ns: TimestampNs,
    pub limit: usize,
}

impl TraceQuery {
    pub fn new(start_ns: TimestampNs, end_ns: TimestampNs) -> TraceQuery {
        TraceQuery {
            service: None,
            name: None,
            min_duration_ns: None,
            max_duration_ns: None,
            errors_only: false,
            attributes: Vec::new(),
            start_ns,
            end_ns,
            limit: 20,
        }
    }

    pub fn matches(&self, s: &SpanRecord) -> bool {
        let d = s.duration_ns();
        s.start_ns <= self.end_ns
            && s.end_ns >= self.start_ns
            && self
                .service
                .as_deref()
                .is_none_or(|v| s.origin.service == v)
            && self.name.as_deref().is_none_or(|v| s.name == v)
            && self.min_duration_ns.is_none_or(|m| d >= m)
            && self.max_duration_ns.is_none_or(|m| d <= m)
            && (!self.errors_only || s.status == StatusCode::Error)
            && attributes_match(&self.attributes, &s.attributes, &s.origin.resource)
    }
}

fn attributes_match(
    wanted: &[(String, String)],
    attrs: &Attributes,
    resource: &Attributes,
) -> bool {
    wanted.iter().all(|(k, v)| {
        attrs
            .iter()
            .chain(resource.iter())
            .find(|(key, _)| key == k)
            .is_some_and(|(_, value)| value.as_text() == v.as_str())
    })
}

/// What one trace looks like in a list of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    /// The root span's service and name; when the root has not arrived, the
    /// earliest span's, so a partial trace still has a title.
    pub root_service: String,
    pub root_name: String,
    pub start_ns: TimestampNs,
    pub duration_ns: i64,
    pub span_count: usize,
    pub error_count: usize,
    /// Spans per service.
    pub services: BTreeMap<String, usize>,
}

impl TraceSummary {
    pub fn of(trace_id: TraceId, spans: &[SpanRecord]) -> Option<TraceSummary> {
        let start = spans.iter().map(|s| s.start_ns).min()?;
        let end = spans.iter().map(|s| s.end_ns).max()?;
        let root = spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .min_by_key(|s| s.start_ns)
            .or_else(|| spans.iter().min_by_key(|s| s.start_ns))?;
        let mut services = BTreeMap::new();
        for s in spans {
            *services.entry(s.origin.service.clone()).or_insert(0) += 1;
        }
        Some(TraceSummary {
            trace_id,
            root_service: root.origin.service.clone(),
            root_name: root.name.clone(),
            start_ns: start,
            duration_ns: end - start,
            span_count: spans.len(),
            error_count: spans
                .iter()
                .filter(|s| s.status == StatusCode::Error)
                .count(),
            services,
        })
    }
}

/// Which log records a log search returns, by event-ness.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum EventFilter {
    /// Plain logs and events alike.
    #[default]
    Any,
    /// Only records with an event name.
    Events,
    /// Only events with this name.
    Named(String),
}

/// Where a page of newest-first results ends: the next page holds records
/// older than `time_ns`, or at `time_ns` after the first `skip` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last record returned: its time and its key (`dedup::log_key`).
    /// Results are ordered by (time, key), newest first, so the next page
    /// starts strictly after it and costs the same whatever page it is,
    /// even when a million logs share one timestamp.
    pub time_ns: TimestampNs,
    pub key: u64,
    /// How many identical records (same time and key) the previous pages
    /// returned; bounded by how many copies of one record a batch held.
    pub copies: usize,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let mut parts = s.split('-');
        let time_ns = parts.next()?.parse().ok()?;
        let key = u64::from_str_radix(parts.next()?, 16).ok()?;
        let copies = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Cursor {
            time_ns,
            key,
            copies,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:x}-{}", self.time_ns, self.key, self.copies)
    }
}

#[derive(Debug, Clone)]
pub struct LogQuery {
    pub start_ns: TimestampNs,
    pub end_ns: TimestampNs,
    pub service: Option<String>,
    pub host: Option<String>,
    pub min_severity: u8,
    /// Case-sensitive substring of the body.
    pub contains: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub events: EventFilter,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl LogQuery {
    pub fn new(start_ns: TimestampNs, end_ns: TimestampNs) -> LogQuery {
        LogQuery {
            start_ns,
            end_ns,
            service: None,
            host: None,
            min_severity: 0,
            contains: None,
            attributes: Vec::new(),
            trace_id: None,
            span_id: None,
            events: EventFilter::Any,
            limit: 100,
            cursor: None,
        }
    }

    /// The newest time a result may have, after the cursor.
    pub(crate) fn upper_ns(&self) -> TimestampNs {
        match self.cursor {
            Some(c) => c.time_ns.min(self.end_ns),
            None => self.end_ns,
        }
    }

    pub fn matches(&self, l: &LogRecord) -> bool {
        l.time_ns >= self.start_ns
            && l.time_ns <= self.upper_ns()
            && l.severity_number >= self.min_severity
            && self
                .service
                .as_deref()
                .is_none_or(|v| l.origin.service == v)
            && self.host.as_deref().is_none_or(|v| l.origin.host == v)
            && self.trace_id.is_none_or(|t| l.trace_id == Some(t))
            && self.span_id.is_none_or(|s| l.span_id == Some(s))
            && match &self.events {
                EventFilter::Any => true,
                EventFilter::Events => !l.event_name.is_empty(),
                EventFilter::Named(n) => &l.event_name == n,
            }
            && self.contains.as_deref().is_none_or(|c| l.body.contains(c))
            && attributes_match(&self.attributes, &l.attributes, &l.origin.resource)
    }
}

/// One page of log search results, newest first.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    pub logs: Vec<LogRecord>,
    /// Present when more results may follow.
    pub next: Option<Cursor>,
}
