//! Immutable Parquet segments of spans or logs: what the record store writes
//! when it flushes its in-memory buffer, and reads for everything older.
//!
//! The files are plain Parquet with proper logical types (strings, unsigned
//! flags, nanosecond timestamps, `MAP<string,string>` attributes), so DuckDB,
//! pandas or Spark read them as they are. What plain Parquet cannot say (the
//! kind of each typed attribute, the segment's time range and services) is in
//! the footer's key-value metadata, so [`SpanSegment::open`] needs nothing but
//! the footer and the small bloom filters.
//!
//! Spans are sorted by trace id, so a trace lives in one row group of about
//! [`SPAN_GROUP_ROWS`] rows, found by a bloom filter and min/max statistics on
//! `trace_id`; looking a trace up decodes that one group. Logs are sorted by
//! time, so a time range maps to a few row groups and newest-first paging
//! reads the file backwards.

mod columns;
mod json;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::path::{Path, PathBuf};

use parquet::errors::ParquetError;
use rustc_hash::FxHashMap;
use sonde_model::records::{
    AttrKind, Attributes, LogRecord, Origin, SpanRecord, TimestampNs, TraceId,
};

use self::read::Segment;
use crate::{Error, Result};

/// Spans per row group: small enough that a trace lookup decodes little,
/// large enough for dictionaries and compression to pay off.
pub const SPAN_GROUP_ROWS: usize = 8192;
/// A row group only ends between traces, unless one trace alone grows it
/// this far: memory for writing and reading a group stays bounded.
const MAX_SPAN_GROUP_ROWS: usize = 4 * SPAN_GROUP_ROWS;
/// Logs per row group: the unit newest-first paging decodes at once.
pub const LOG_GROUP_ROWS: usize = 8192;
/// zstd's default level: most of its ratio at a fraction of higher levels' cost.
const ZSTD_LEVEL: i32 = 3;
/// One false "maybe" per hundred absent ids, for about 10 bits per trace id.
const BLOOM_FPP: f64 = 0.01;
/// Sizing hint for the service-name filter; folding shrinks it to what the
/// group really holds.
const MAX_SERVICES_PER_GROUP: u64 = 1024;

const KEY_FORMAT: &str = "sonde.format";
const KEY_MIN_TIME: &str = "sonde.min_time_ns";
const KEY_MAX_TIME: &str = "sonde.max_time_ns";
const KEY_SERVICES: &str = "sonde.services";
const KEY_KINDS: &str = "sonde.attribute_kinds";

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Spans,
    Logs,
}

impl SegmentKind {
    /// The `sonde.format` footer value: names the kind and the layout version,
    /// so a later layout can still read (or at least refuse) older files.
    fn format(self) -> &'static str {
        match self {
            SegmentKind::Spans => "spans/1",
            SegmentKind::Logs => "logs/1",
        }
    }

    fn schema(self) -> &'static str {
        match self {
            SegmentKind::Spans => columns::SPAN_SCHEMA,
            SegmentKind::Logs => columns::LOG_SCHEMA,
        }
    }
}

/// What the store needs to know about a segment without reading its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentMeta {
    pub path: PathBuf,
    pub kind: SegmentKind,
    /// Spans: the earliest start; logs: the earliest `time_ns` (0 when empty).
    pub min_time_ns: TimestampNs,
    /// Spans: the latest end (or start, if later); logs: the latest `time_ns`.
    /// Retention compares against this, so a segment goes only once all of
    /// it is old.
    pub max_time_ns: TimestampNs,
    pub rows: u64,
    /// Size of the file.
    pub bytes: u64,
    /// The distinct service names, sorted.
    pub services: Vec<String>,
}

/// What a scan may skip. Pruning hints only: rows that fail them are not
/// visited, but the caller still applies its full filter to what it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanHints {
    /// Inclusive bounds. A span passes when it overlaps them
    /// (`span.start_ns <= hints.end_ns && span.end_ns >= hints.start_ns`), a
    /// log when its `time_ns` lies within them.
    pub start_ns: TimestampNs,
    pub end_ns: TimestampNs,
    pub service: Option<String>,
    pub trace_id: Option<TraceId>,
}

impl ScanHints {
    /// Hints that let everything through.
    pub fn all() -> ScanHints {
        ScanHints {
            start_ns: TimestampNs::MIN,
            end_ns: TimestampNs::MAX,
            service: None,
            trace_id: None,
        }
    }

    fn overlaps(&self, lo: TimestampNs, hi: TimestampNs) -> bool {
        lo <= self.end_ns && hi >= self.start_ns
    }
}

impl Default for ScanHints {
    fn default() -> ScanHints {
        ScanHints::all()
    }
}

/// Writes spans sorted by (trace_id, start_ns) so that a trace sits in one row
/// group; atomically (write to `path.tmp`, fsync, rename, fsync dir).
///
/// The slice is sorted in place, which saves copying a whole buffer.
pub fn write_spans(path: &Path, spans: &mut [SpanRecord]) -> Result<SegmentMeta> {
    write::spans(path, spans)
}

/// Writes logs sorted by time_ns ascending (stable: equal times keep their
/// arrival order), atomically like [`write_spans`].
pub fn write_logs(path: &Path, logs: &mut [LogRecord]) -> Result<SegmentMeta> {
    write::logs(path, logs)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parquet_error(path: &Path) -> impl Fn(ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The kind of each typed attribute key in one file (string is the default
/// and not listed): the map columns hold text, and `AttrValue::from_text`
/// needs the kind to give back an `Int` rather than `"42"`.
///
/// A key seen with two kinds in one file is listed as string, so its values
/// read back as `Str` of their text: the price of a flat, queryable map.
#[derive(Debug, Default, PartialEq)]
struct Kinds {
    resource: FxHashMap<String, AttrKind>,
    attributes: FxHashMap<String, AttrKind>,
}

impl Kinds {
    fn collect<'a>(rows: impl Iterator<Item = (&'a Origin, &'a Attributes)>) -> Kinds {
        fn note<'a>(seen: &mut FxHashMap<&'a str, AttrKind>, attrs: &'a Attributes) {
            for (k, v) in attrs {
                let kind = seen.entry(k).or_insert(v.kind());
                if *kind != v.kind() {
                    *kind = AttrKind::Str;
                }
            }
        }
        let (mut resource, mut attributes) = (FxHashMap::default(), FxHashMap::default());
        let mut last: Option<&Origin> = None;
        for (origin, attrs) in rows {
            if !last.is_some_and(|l| std::ptr::eq(l, origin)) {
                note(&mut resource, &origin.resource);
                last = Some(origin);
            }
            note(&mut attributes, attrs);
        }
        let typed = |seen: FxHashMap<&str, AttrKind>| -> FxHashMap<String, AttrKind> {
            seen.into_iter()
                .filter(|&(_, kind)| kind != AttrKind::Str)
                .map(|(k, kind)| (k.to_string(), kind))
                .collect()
        };
        Kinds {
            resource: typed(resource),
            attributes: typed(attributes),
        }
    }

    /// `{"resource":{"host.cpus":"int64"},"attributes":{"http.status_code":"int64"}}`
    fn to_json(&self) -> String {
        let map = |m: &FxHashMap<String, AttrKind>| -> serde_json::Value {
            m.iter()
                .map(|(k, kind)| (k.clone(), serde_json::Value::from(kind.as_str())))
                .collect()
        };
        serde_json::json!({"resource": map(&self.resource), "attributes": map(&self.attributes)})
            .to_string()
    }

    /// Unknown kind names (from a newer writer) read as string: the text is
    /// still right.
    fn from_json(text: &str) -> Option<Kinds> {
        let doc: serde_json::Value = serde_json::from_str(text).ok()?;
        let map = |v: &serde_json::Value| -> Option<FxHashMap<String, AttrKind>> {
            v.as_object()?
                .iter()
                .map(|(k, v)| {
                    Some((
                        k.clone(),
                        AttrKind::parse(v.as_str()?).unwrap_or(AttrKind::Str),
                    ))
                })
                .collect()
        };
        Some(Kinds {
            resource: map(doc.get("resource")?)?,
            attributes: map(doc.get("attributes")?)?,
        })
    }
}

/// A segment of spans, open for lookups by trace id and for scans.
pub struct SpanSegment {
    seg: Segment,
}

impl SpanSegment {
    /// Reads the footer and the bloom filters once and keeps them in memory
    /// (the filters take about 10 bits per trace, 1 KiB per row group of
    /// 8192 spans); rows are read on demand.
    pub fn open(path: &Path) -> Result<SpanSegment> {
        Segment::open(path, SegmentKind::Spans).map(|seg| SpanSegment { seg })
    }

    pub fn meta(&self) -> &SegmentMeta {
        self.seg.meta()
    }

    /// Whether the trace may have spans here: bloom filters and min/max of
    /// `trace_id`, no data read. False positives are rare (about 1%).
    pub fn may_contain_trace(&self, id: &TraceId) -> bool {
        self.seg.may_contain_trace(id)
    }

    /// The trace's spans here, by start time; reads only the row groups that
    /// may hold it (normally one).
    pub fn read_trace(&self, id: &TraceId) -> Result<Vec<SpanRecord>> {
        let hints = ScanHints {
            trace_id: Some(*id),
            ..ScanHints::all()
        };
        let mut spans = Vec::new();
        self.scan(&hints, &mut |s| {
            spans.push(s);
            true
        })?;
        Ok(spans)
    }

    /// Visits rows that pass the hints; `visit` returns false to stop early.
    /// Rows come in file order: by trace id, then start time.
    pub fn scan(&self, hints: &ScanHints, visit: &mut dyn FnMut(SpanRecord) -> bool) -> Result<()> {
        read::spans(&self.seg, hints, visit)
    }

    /// Row groups decoded by this segment's reads so far.
    #[cfg(test)]
    fn groups_read(&self) -> u64 {
        self.seg.groups_read()
    }
}

/// A segment of logs, open for newest-first scans.
pub struct LogSegment {
    seg: Segment,
}

impl LogSegment {
    /// Reads the footer and the bloom filters once and keeps them in memory.
    pub fn open(path: &Path) -> Result<LogSegment> {
        Segment::open(path, SegmentKind::Logs).map(|seg| LogSegment { seg })
    }

    pub fn meta(&self) -> &SegmentMeta {
        self.seg.meta()
    }

    /// Visits rows that pass the hints, newest first (descending time_ns);
    /// `visit` returns false to stop early.
    pub fn scan(&self, hints: &ScanHints, visit: &mut dyn FnMut(LogRecord) -> bool) -> Result<()> {
        read::logs(&self.seg, hints, visit)
    }

    #[cfg(test)]
    fn groups_read(&self) -> u64 {
        self.seg.groups_read()
    }
}
