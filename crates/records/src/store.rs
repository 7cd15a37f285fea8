//! The record store: WAL, live buffer, buffers being flushed, and Parquet
//! segments, queried together.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use sonde_model::records::{LogRecord, SpanRecord, TimestampNs, TraceId};

use crate::buffer::{Buffer, Snapshot};
use crate::catalog::Catalog;
use crate::dedup::{log_key, span_key, Recent};
use crate::query::{Cursor, LogPage, LogQuery, TraceQuery, TraceSummary};
use crate::segment::{self, LogSegment, ScanHints, SpanSegment};
use crate::wal::{self, Batch, RecordWal};
use crate::{Error, Result};

/// How many traces a search considers before ranking: bounds the memory of
/// a search over a broad filter.
const MAX_TRACE_CANDIDATES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    /// fsync before acknowledging each batch (`wal_fsync = "always"`).
    pub sync_each_write: bool,
    /// Flush the buffer to Parquet when it holds this many bytes...
    pub buffer_bytes: usize,
    /// ...or when its oldest data is this old.
    pub flush_after: Duration,
    /// Delete segments whose newest record is older than this (0 = keep).
    pub retention: Duration,
    /// How many recently stored records are remembered to drop their
    /// re-deliveries (`dedup.rs`); 0 turns deduplication off.
    pub dedup_window: usize,
}

impl Config {
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            sync_each_write: false,
            buffer_bytes: 128 << 20,
            flush_after: Duration::from_secs(10 * 60),
            retention: Duration::from_secs(15 * 24 * 3600),
            dedup_window: DEFAULT_DEDUP_WINDOW,
        }
    }
}

pub(crate) enum SegmentData {
    Spans(SpanSegment),
    Logs(LogSegment),
}

/// A Parquet segment in the store's list. Queries hold it by `Arc` while
/// they read; retention marks it expired and takes it off the list, and
/// the file is deleted when the last holder lets go, so a query that
/// started before retention never finds its file gone (and no descriptor
/// is kept open for it meanwhile).
pub(crate) struct Segment {
    pub(crate) data: SegmentData,
    expired: AtomicBool,
}

impl Segment {
    fn new(data: SegmentData) -> Arc<Segment> {
        Arc::new(Segment {
            data,
            expired: AtomicBool::new(false),
        })
    }

    pub(crate) fn meta(&self) -> &segment::SegmentMeta {
        match &self.data {
            SegmentData::Spans(s) => s.meta(),
            SegmentData::Logs(s) => s.meta(),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.expired.load(AtomicOrdering::Acquire) {
            let path = &self.meta().path;
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete expired segment");
            }
        }
    }
}

/// About 24 MB of keys: a minute of 15k records/s, far more than what a
/// retry or a broker's re-delivery after a restart sends again.
pub const DEFAULT_DEDUP_WINDOW: usize = 1 << 20;

struct Live {
    buffer: Buffer,
    since: Option<Instant>,
    recent: Recent,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub buffered_spans: usize,
    pub buffered_logs: usize,
    pub buffer_bytes: usize,
    pub segments: usize,
    pub segment_bytes: u64,
    pub wal_bytes: u64,
    /// Keys in the re-delivery window.
    pub dedup_keys: usize,
}

pub struct RecordStore {
    cfg: Config,
    wal: RecordWal,
    live: RwLock<Live>,
    /// Buffers cut from `live` whose Parquet files are not written yet, with
    /// the last WAL segment each covers; newest last.
    flushing: RwLock<Vec<(u64, Arc<Buffer>)>>,
    /// Oldest first.
    segments: RwLock<Vec<Arc<Segment>>>,
    catalog: Mutex<Catalog>,
    flush_lock: Mutex<()>,
}

fn segments_dir(cfg: &Config) -> PathBuf {
    cfg.dir.join("segments")
}

fn segment_seq(path: &Path) -> Option<(bool, u64)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".parquet")?;
    let (kind, seq) = name.split_once('-')?;
    Some((kind == "spans", seq.parse().ok()?))
}

impl RecordStore {
    pub fn open(cfg: Config) -> Result<RecordStore> {
        let seg_dir = segments_dir(&cfg);
        std::fs::create_dir_all(&seg_dir).map_err(|source| Error::Io {
            path: seg_dir.clone(),
            source,
        })?;
        let mut segments = Vec::new();
        // The last flush that finished: its number is written only once all
        // its Parquet files are durable. A higher-numbered file is the part
        // of a flush that a crash cut short; the WAL still has all of it.
        let flushed_upto = read_flushed_marker(&cfg.dir)?;
        let entries = std::fs::read_dir(&seg_dir).map_err(|source| Error::Io {
            path: seg_dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // A flush that did not finish; its data is still in the WAL.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some((is_spans, seq)) = segment_seq(&path) else {
                continue;
            };
            if seq > flushed_upto {
                tracing::warn!(segment = %path.display(),
                    "removing a segment of an unfinished flush; its data is replayed from the WAL");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let opened = if is_spans {
                SpanSegment::open(&path).map(SegmentData::Spans)
            } else {
                LogSegment::open(&path).map(SegmentData::Logs)
            };
            match opened {
                Ok(s) => segments.push((seq, Segment::new(s))),
                Err(e) => tracing::error!(segment = %path.display(), error = %e,
                    "cannot read segment; it is left in place and ignored"),
            }
        }
        segments.sort_by_key(|(seq, _)| *seq);
        let mut catalog = Catalog::load(&cfg.dir.join("catalog.json"));
        let mut buffer = Buffer::default();
        let mut recent = Recent::new(cfg.dedup_window);
        let wal = RecordWal::open(
            &cfg.dir.join("wal"),
            cfg.sync_each_write,
            flushed_upto,
            |b| match b {
                Batch::Spans(s) => {
                    catalog.add_spans(&s);
                    recent.remember(&s, span_key);
                    buffer.add_spans(s.into());
                }
                Batch::Logs(l) => {
                    catalog.add_logs(&l);
                    recent.remember(&l, log_key);
                    buffer.add_logs(l.into());
                }
            },
        )?;
        let since = (!buffer.is_empty()).then(Instant::now);
        Ok(RecordStore {
            cfg,
            wal,
            live: RwLock::new(Live {
                buffer,
                since,
                recent,
            }),
            flushing: RwLock::new(Vec::new()),
            segments: RwLock::new(segments.into_iter().map(|(_, s)| s).collect()),
            catalog: Mutex::new(catalog),
            flush_lock: Mutex::new(()),
        })
    }

    /// Refuses new data when the buffers already hold twice their budget:
    /// flushing has fallen behind, and memory must stay bounded.
    fn check_room(&self, live: &Live) -> Result<()> {
        let flushing: usize = self.flushing.read().iter().map(|(_, b)| b.bytes).sum();
        if live.buffer.bytes + flushing > self.cfg.buffer_bytes.saturating_mul(2) {
            return Err(Error::Overloaded);
        }
        Ok(())
    }

    /// Makes spans durable in the WAL, then queryable. Returns once both
    /// hold, with the spans that were new: re-deliveries of spans stored
    /// recently are dropped (`dedup.rs`), so what follows the store (live
    /// tail, the pipeline) sees each span once.
    pub fn append_spans(&self, spans: Vec<SpanRecord>) -> Result<Arc<[SpanRecord]>> {
        if spans.is_empty() {
            return Ok(Arc::from(spans));
        }
        let mut live = self.live.write();
        self.check_room(&live)?;
        let live = &mut *live;
        let (spans, admitted) = live.recent.filter(spans, span_key);
        let spans: Arc<[SpanRecord]> = spans.into();
        let written = if spans.is_empty() {
            Ok(())
        } else {
            self.wal.append_spans(&spans)
        };
        // Only a batch in the WAL counts as stored: a refused one must be
        // taken when it is sent again.
        written?;
        live.recent.commit(admitted);
        self.catalog.lock().add_spans(&spans);
        if !spans.is_empty() {
            live.since.get_or_insert_with(Instant::now);
        }
        live.buffer.add_spans(spans.clone());
        Ok(spans)
    }

    /// As [`append_spans`](Self::append_spans), for log records and events.
    pub fn append_logs(&self, logs: Vec<LogRecord>) -> Result<Arc<[LogRecord]>> {
        if logs.is_empty() {
            return Ok(Arc::from(logs));
        }
        let mut live = self.live.write();
        self.check_room(&live)?;
        let live = &mut *live;
        let (logs, admitted) = live.recent.filter(logs, log_key);
        let logs: Arc<[LogRecord]> = logs.into();
        let written = if logs.is_empty() {
            Ok(())
        } else {
            self.wal.append_logs(&logs)
        };
        // Only a batch in the WAL counts as stored: a refused one must be
        // taken when it is sent again.
        written?;
        live.recent.commit(admitted);
        self.catalog.lock().add_logs(&logs);
        if !logs.is_empty() {
            live.since.get_or_insert_with(Instant::now);
        }
        live.buffer.add_logs(logs.clone());
        Ok(logs)
    }

    pub fn sync(&self) -> Result<()> {
        self.wal.sync()
    }

    pub fn needs_flush(&self) -> bool {
        let live = self.live.read();
        live.buffer.bytes >= self.cfg.buffer_bytes
            || live
                .since
                .is_some_and(|t| t.elapsed() >= self.cfg.flush_after)
            || !self.flushing.read().is_empty()
    }

    /// Writes the live buffer (and any buffer a failed flush left behind) to
    /// Parquet segments, then drops the WAL segments they cover.
    pub fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flush_lock.lock();
        {
            let mut live = self.live.write();
            if !live.buffer.is_empty() {
                let seq = self.wal.roll()?;
                let buffer = std::mem::take(&mut live.buffer);
                live.since = None;
                self.flushing.write().push((seq, Arc::new(buffer)));
            }
        }
        let pending: Vec<(u64, Arc<Buffer>)> = self.flushing.read().clone();
        for (seq, buffer) in pending {
            let written = self.write_segments(seq, &buffer)?;
            write_flushed_marker(&self.cfg.dir, seq)?;
            {
                // Swap the buffer for its segments in one step, so a query
                // sees the data exactly once.
                let mut flushing = self.flushing.write();
                let mut segments = self.segments.write();
                segments.extend(written);
                flushing.retain(|(s, _)| *s != seq);
            }
            self.catalog
                .lock()
                .save(&self.cfg.dir.join("catalog.json"))
                .map_err(|source| Error::Io {
                    path: self.cfg.dir.join("catalog.json"),
                    source,
                })?;
            self.wal.remove_upto(seq)?;
        }
        Ok(())
    }

    fn write_segments(&self, seq: u64, buffer: &Buffer) -> Result<Vec<Arc<Segment>>> {
        let dir = segments_dir(&self.cfg);
        let mut out = Vec::new();
        if buffer.span_count > 0 {
            let path = dir.join(format!("spans-{seq:08}.parquet"));
            segment::write_spans(&path, &mut buffer.spans().cloned().collect::<Vec<_>>())?;
            out.push(Segment::new(SegmentData::Spans(SpanSegment::open(&path)?)));
        }
        if buffer.log_count > 0 {
            let path = dir.join(format!("logs-{seq:08}.parquet"));
            segment::write_logs(&path, &mut buffer.logs().cloned().collect::<Vec<_>>())?;
            out.push(Segment::new(SegmentData::Logs(LogSegment::open(&path)?)));
        }
        wal::sync_dir(&dir)?;
        Ok(out)
    }

    /// Deletes segments past the retention age, then the oldest while all
    /// segments take more than `max_bytes`.
    pub fn apply_retention(&self, now_ns: TimestampNs, max_bytes: Option<u64>) -> Result<usize> {
        let mut segments = self.segments.write();
        let age_ns = self.cfg.retention.as_nanos().min(i64::MAX as u128) as i64;
        let mut doomed: Vec<usize> = Vec::new();
        if age_ns > 0 {
            let cutoff = now_ns.saturating_sub(age_ns);
            doomed.extend((0..segments.len()).filter(|&i| segments[i].meta().max_time_ns < cutoff));
            self.catalog.lock().expire(cutoff);
        }
        if let Some(max_bytes) = max_bytes {
            let mut total: u64 = segments.iter().map(|s| s.meta().bytes).sum();
            for (i, s) in segments.iter().enumerate() {
                if total <= max_bytes {
                    break;
                }
                total -= s.meta().bytes;
                doomed.push(i);
            }
        }
        doomed.sort_unstable();
        doomed.dedup();
        for &i in doomed.iter().rev() {
            // Deleted now, or when the last query reading it is done.
            segments
                .remove(i)
                .expired
                .store(true, AtomicOrdering::Release);
        }
        Ok(doomed.len())
    }

    /// The live buffer's rows as they are now, for a scan that holds no lock.
    fn live_snapshot(&self) -> Snapshot {
        self.live.read().buffer.snapshot()
    }

    /// Every source of data, newest data first: the live buffer, buffers being
    /// flushed, then segments.
    fn buffers(&self) -> Vec<Arc<Buffer>> {
        self.flushing
            .read()
            .iter()
            .rev()
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub(crate) fn segments_newest_first(&self) -> Vec<Arc<Segment>> {
        let mut segs: Vec<_> = self.segments.read().clone();
        segs.sort_by_key(|s| std::cmp::Reverse(s.meta().max_time_ns));
        segs
    }

    /// All spans of a trace, by start time, each span once even if it was
    /// delivered more than once.
    pub fn trace(&self, id: &TraceId) -> Result<Vec<SpanRecord>> {
        let mut spans: Vec<SpanRecord> = self.live.read().buffer.trace(id).cloned().collect();
        for b in self.buffers() {
            spans.extend(b.trace(id).cloned());
        }
        for seg in self.segments_newest_first() {
            if let SegmentData::Spans(s) = &seg.data {
                if s.may_contain_trace(id) {
                    spans.extend(s.read_trace(id)?);
                }
            }
        }
        let mut seen = HashSet::new();
        spans.retain(|s| seen.insert(s.span_id));
        spans.sort_by_key(|s| (s.start_ns, s.end_ns));
        Ok(spans)
    }

    /// The logs that carry this trace id, oldest first.
    pub fn trace_logs(&self, id: &TraceId) -> Result<Vec<LogRecord>> {
        let mut logs: Vec<LogRecord> = self.live.read().buffer.trace_logs(id).cloned().collect();
        for b in self.buffers() {
            logs.extend(b.trace_logs(id).cloned());
        }
        let hints = ScanHints {
            start_ns: i64::MIN,
            end_ns: i64::MAX,
            service: None,
            trace_id: Some(*id),
        };
        for seg in self.segments_newest_first() {
            if let SegmentData::Logs(s) = &seg.data {
                s.scan(&hints, &mut |l| {
                    if l.trace_id == Some(*id) {
                        logs.push(l);
                    }
                    true
                })?;
            }
        }
        logs.sort_by_key(|l| l.time_ns);
        Ok(logs)
    }

    /// Traces with at least one span matching `q`, newest first.
    pub fn search_traces(&self, q: &TraceQuery) -> Result<Vec<TraceSummary>> {
        self.search_traces_watched(q, &mut || {})
    }

    /// `search_traces`, calling `scanned` for each live span it looks at
    /// (a test holds the search there to show that appends go on).
    pub(crate) fn search_traces_watched(
        &self,
        q: &TraceQuery,
        scanned: &mut dyn FnMut(),
    ) -> Result<Vec<TraceSummary>> {
        // Trace id → the latest start of a matching span, for ranking.
        let mut candidates: FxHashMap<TraceId, TimestampNs> = FxHashMap::default();
        let mut consider = |s: &SpanRecord| {
            if q.matches(s)
                && (candidates.len() < MAX_TRACE_CANDIDATES || candidates.contains_key(&s.trace_id))
            {
                let e = candidates.entry(s.trace_id).or_insert(s.start_ns);
                *e = (*e).max(s.start_ns);
            }
        };
        // The lock is held only to copy the list of batches.
        let live = self.live_snapshot();
        live.spans().for_each(|s| {
            scanned();
            consider(s)
        });
        for b in self.buffers() {
            b.spans().for_each(&mut consider);
        }
        let hints = ScanHints {
            start_ns: q.start_ns,
            end_ns: q.end_ns,
            service: q.service.clone(),
            trace_id: None,
        };
        for seg in self.segments_newest_first() {
            let m = seg.meta();
            if m.max_time_ns < q.start_ns.saturating_sub(MAX_SPAN_NS) || m.min_time_ns > q.end_ns {
                continue;
            }
            if let SegmentData::Spans(s) = &seg.data {
                s.scan(&hints, &mut |span| {
                    consider(&span);
                    true
                })?;
            }
        }
        let mut ranked: Vec<(TraceId, TimestampNs)> = candidates.into_iter().collect();
        ranked.sort_by_key(|&(id, t)| (std::cmp::Reverse(t), id));
        ranked.truncate(q.limit);
        let mut out = Vec::with_capacity(ranked.len());
        for (id, _) in ranked {
            if let Some(summary) = TraceSummary::of(id, &self.trace(&id)?) {
                out.push(summary);
            }
        }
        out.sort_by_key(|s| (std::cmp::Reverse(s.start_ns), s.trace_id));
        Ok(out)
    }

    /// One page of logs matching `q`, newest first: ordered by time, then
    /// by record key, so a page after a cursor reads no more than a first
    /// page does.
    pub fn search_logs(&self, q: &LogQuery) -> Result<LogPage> {
        let want = q.limit.saturating_add(1);
        let upper = q.upper_ns();
        let cursor = q.cursor;
        // Records at the cursor's (time, key) that earlier pages returned.
        let mut at_cursor = 0usize;
        let mut after_cursor = |l: &LogRecord| -> bool {
            let Some(c) = cursor else {
                return true;
            };
            match (l.time_ns, log_key(l)).cmp(&(c.time_ns, c.key)) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => {
                    at_cursor += 1;
                    at_cursor > c.copies
                }
            }
        };
        // Each source contributes its newest `want` matches after the
        // cursor; merged, the newest `want` overall are exact.
        let mut found: Vec<(i64, u64, LogRecord)> = Vec::new();
        let mut take_newest =
            |found: &mut Vec<(i64, u64, LogRecord)>, logs: &mut dyn Iterator<Item = &LogRecord>| {
                let mut matched: Vec<(i64, u64, &LogRecord)> = logs
                    .filter(|l| q.matches(l))
                    .map(|l| (l.time_ns, log_key(l), l))
                    .collect();
                matched.sort_by_key(|x| std::cmp::Reverse((x.0, x.1)));
                found.extend(
                    matched
                        .into_iter()
                        .filter(|(_, _, l)| after_cursor(l))
                        .take(want)
                        .map(|(t, k, l)| (t, k, l.clone())),
                );
            };
        let live = self.live_snapshot();
        take_newest(&mut found, &mut live.logs());
        for b in self.buffers() {
            take_newest(&mut found, &mut b.logs());
        }
        let hints = ScanHints {
            start_ns: q.start_ns,
            end_ns: upper,
            service: q.service.clone(),
            trace_id: q.trace_id,
        };
        let newest_first = |f: &mut Vec<(i64, u64, LogRecord)>| {
            f.sort_by_key(|x| std::cmp::Reverse((x.0, x.1)));
        };
        for seg in self.segments_newest_first() {
            let m = seg.meta();
            if m.max_time_ns < q.start_ns || m.min_time_ns > upper {
                continue;
            }
            // Enough results newer than anything this segment holds: it and
            // every older one can be skipped.
            newest_first(&mut found);
            if found.len() >= want && found[want - 1].0 > m.max_time_ns {
                break;
            }
            if let SegmentData::Logs(s) = &seg.data {
                // The scan runs newest first: once `want` matches after the
                // cursor are in, only records at the same time (ordered by
                // key) may still belong.
                let mut matched: Vec<LogRecord> = Vec::new();
                let mut boundary: Option<i64> = None;
                s.scan(&hints, &mut |l| {
                    if boundary.is_some_and(|b| l.time_ns < b) {
                        return false;
                    }
                    if q.matches(&l) && after_cursor(&l) {
                        matched.push(l);
                        if matched.len() == want {
                            boundary = Some(matched[want - 1].time_ns);
                        }
                    }
                    true
                })?;
                found.extend(matched.into_iter().map(|l| (l.time_ns, log_key(&l), l)));
            }
        }
        newest_first(&mut found);
        let more = found.len() > q.limit;
        found.truncate(q.limit);
        let next = match (more, found.last()) {
            (true, Some(&(time_ns, key, _))) => {
                let here = found
                    .iter()
                    .filter(|(t, k, _)| (*t, *k) == (time_ns, key))
                    .count();
                let carried = match cursor {
                    Some(c) if (c.time_ns, c.key) == (time_ns, key) => c.copies,
                    _ => 0,
                };
                Some(Cursor {
                    time_ns,
                    key,
                    copies: here + carried,
                })
            }
            _ => None,
        };
        Ok(LogPage {
            logs: found.into_iter().map(|(_, _, l)| l).collect(),
            next,
        })
    }

    pub fn catalog(&self) -> Catalog {
        self.catalog.lock().clone()
    }

    pub fn stats(&self) -> Stats {
        let live = self.live.read();
        let flushing = self.flushing.read();
        let segments = self.segments.read();
        Stats {
            buffered_spans: live.buffer.span_count
                + flushing.iter().map(|(_, b)| b.span_count).sum::<usize>(),
            buffered_logs: live.buffer.log_count
                + flushing.iter().map(|(_, b)| b.log_count).sum::<usize>(),
            dedup_keys: live.recent.len(),
            buffer_bytes: live.buffer.bytes + flushing.iter().map(|(_, b)| b.bytes).sum::<usize>(),
            segments: segments.len(),
            segment_bytes: segments.iter().map(|s| s.meta().bytes).sum(),
            wal_bytes: self.wal.size_bytes(),
        }
    }
}

const FLUSHED_MARKER: &str = "flushed";

/// The number of the last finished flush; 0 for a store that never flushed.
fn read_flushed_marker(dir: &Path) -> Result<u64> {
    let path = dir.join(FLUSHED_MARKER);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| Error::Corrupt {
            path,
            reason: format!("expected the number of the last flush, found {text:?}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn write_flushed_marker(dir: &Path, seq: u64) -> Result<()> {
    let path = dir.join(FLUSHED_MARKER);
    let tmp = dir.join("flushed.tmp");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, seq.to_string()).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    wal::sync_dir(dir)
}

/// Segments are pruned by span start time; a span that started this long
/// before the search window may still overlap it.
const MAX_SPAN_NS: i64 = 3600 * 1_000_000_000;
