//! Sonde's time-series engine.
//!
//! Write path, and when data becomes durable and queryable:
//! 1. [`Store::append`] validates each series (limits) and sample (time
//!    bounds), creating new series in the head; a new series is logged to the
//!    WAL before anything can refer to it.
//! 2. The batch's samples are appended to the WAL in one record. Once that
//!    `write` returns, the batch survives a crash of the process; with
//!    [`FsyncPolicy::Always`] it also survives a crash of the machine.
//! 3. The samples are appended to the head's compressed chunks, and are
//!    queryable from then on. `append` returns, and the caller acknowledges.
//!
//! [`Store::maintain`] (called periodically) moves old head data into
//! immutable blocks on disk, truncates the WAL behind them, merges small
//! blocks into larger ones and enforces retention.
//!
//! Exemplars ([`Store::append_exemplars`], after the samples of their
//! series) are logged to the WAL and then kept in a circular buffer in
//! memory (`exemplars.rs`); they are never written to blocks. WAL
//! checkpoints carry the newest of them (up to the capacity) for series
//! still in the head, so they survive restarts.

mod block;
mod chunk;
mod encoding;
mod exemplars;
mod head;
mod maintenance;
mod wal;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sonde_model::{
    Clock, Exemplar, Labels, Matcher, MetricMetadata, Sample, Series, SeriesExemplar, SeriesView,
};

pub use block::BlockMeta;
pub use chunk::{ChunkEncoder, ChunkIter};
pub use exemplars::{ExemplarOutcome, ExemplarReport};
pub use wal::FsyncPolicy;

use block::Block;
use exemplars::ExemplarStore;
use head::{AppendOutcome, Head, SeriesLimit};
use wal::{Record, RefExemplar, RefSample, Wal};

/// Exemplars kept in memory unless told otherwise, as in Prometheus.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Storage settings. Every limit protects the server: over it, the new series
/// or sample is rejected and counted, everything else goes on.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncPolicy,
    /// Time range of a block cut from the head.
    pub block_range_ms: i64,
    /// How far behind a series' newest sample a sample may still arrive.
    pub out_of_order_window_ms: i64,
    /// Samples further ahead of the wall clock than this are rejected.
    pub future_tolerance_ms: i64,
    /// Data older than this is deleted; 0 keeps it forever.
    pub retention_ms: i64,
    /// Blocks are deleted, oldest first, while the data directory is larger
    /// than this; 0 means no size limit.
    pub retention_bytes: u64,
    pub max_series: usize,
    pub max_series_per_metric: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    /// A WAL segment is closed (and a new one started) past this size.
    pub wal_segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: FsyncPolicy::IntervalMs(1000),
            block_range_ms: 2 * 3600 * 1000,
            out_of_order_window_ms: 30 * 60 * 1000,
            future_tolerance_ms: 10 * 60 * 1000,
            retention_ms: 15 * 24 * 3600 * 1000,
            retention_bytes: 0,
            wal_segment_bytes: wal::SEGMENT_MAX_BYTES,
            max_series: 2_000_000,
            max_series_per_metric: 200_000,
            max_labels_per_series: 64,
            max_label_name_len: 256,
            max_label_value_len: 4096,
        }
    }
}

/// Why a sample was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    SeriesLimit,
    SeriesPerMetricLimit,
    TooManyLabels,
    LabelNameTooLong,
    LabelValueTooLong,
    TooOld,
    TooFarInFuture,
    /// Same timestamp as a stored sample, different value.
    DuplicateTimestamp,
}

impl RejectReason {
    pub const ALL: [RejectReason; 8] = [
        RejectReason::SeriesLimit,
        RejectReason::SeriesPerMetricLimit,
        RejectReason::TooManyLabels,
        RejectReason::LabelNameTooLong,
        RejectReason::LabelValueTooLong,
        RejectReason::TooOld,
        RejectReason::TooFarInFuture,
        RejectReason::DuplicateTimestamp,
    ];

    /// The value of the `reason` label on Sonde's own metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::SeriesLimit => "series_limit",
            RejectReason::SeriesPerMetricLimit => "series_per_metric_limit",
            RejectReason::TooManyLabels => "too_many_labels",
            RejectReason::LabelNameTooLong => "label_name_too_long",
            RejectReason::LabelValueTooLong => "label_value_too_long",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
        }
    }

    /// Is this a rejection of the whole series (a limit), rather than of
    /// individual samples?
    pub fn is_series_limit(self) -> bool {
        matches!(
            self,
            RejectReason::SeriesLimit
                | RejectReason::SeriesPerMetricLimit
                | RejectReason::TooManyLabels
                | RejectReason::LabelNameTooLong
                | RejectReason::LabelValueTooLong
        )
    }
}

/// What happened to a batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppendReport {
    pub accepted: u64,
    /// Samples identical to stored ones: accepted, nothing changed.
    pub duplicates: u64,
    pub rejected: u64,
    /// The first rejection, described for the client.
    pub first_error: Option<(RejectReason, String)>,
}

impl AppendReport {
    fn reject(&mut self, reason: RejectReason, n: u64, detail: impl FnOnce() -> String) {
        self.rejected += n;
        if self.first_error.is_none() {
            self.first_error = Some((reason, detail()));
        }
    }
}

/// Counters for Sonde's own `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub samples_appended: AtomicU64,
    pub rejected: [AtomicU64; 8],
    pub blocks_written: AtomicU64,
    pub compactions: AtomicU64,
}

/// A point where the crash tests kill the server (`SONDE_CRASH_POINT`,
/// debug builds only): the process aborts there, as a `kill -9` landing
/// at that instant would stop it, so recovery from each of the storage's
/// multi-step operations is tested, not only from steady ingest. Release
/// builds compile it to nothing.
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    {
        static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let point = POINT.get_or_init(|| std::env::var("SONDE_CRASH_POINT").ok());
        if point.as_deref() == Some(name) {
            eprintln!("SONDE_CRASH_POINT: aborting at {name}");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Metrics that keep metadata (type, help, unit).
pub const MAX_METADATA: usize = 100_000;

pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    clock: Arc<dyn Clock>,
    wal: Wal,
    head: Head,
    blocks: RwLock<Vec<Arc<Block>>>,
    metadata: RwLock<HashMap<String, MetricMetadata>>,
    exemplars: ExemplarStore,
    /// Serialises maintenance (cuts, compaction, retention).
    maintenance: Mutex<()>,
    /// Oldest and newest sample time written to the head since the last cut,
    /// kept on every append (cheaply) so a burst of data, such as a
    /// backfill, triggers a cut at once instead of at the next periodic run.
    seen_min: AtomicI64,
    seen_max: AtomicI64,
    /// A cut happened whose WAL truncation is still to do, and when the
    /// last truncation ran.
    truncate_pending: Mutex<bool>,
    last_truncate: Mutex<Option<std::time::Instant>>,
    pub stats: StoreStats,
}

impl Store {
    /// Opens (or creates) the store in `dir`: loads blocks, then replays the
    /// WAL into the head. Keeps [`DEFAULT_MAX_EXEMPLARS`] exemplars.
    pub fn open(dir: &Path, opts: StoreOptions, clock: Arc<dyn Clock>) -> Result<Store> {
        Store::open_with_exemplars(dir, opts, clock, DEFAULT_MAX_EXEMPLARS)
    }

    /// [`Store::open`] keeping at most `max_exemplars` exemplars in memory
    /// (0 disables exemplar storage).
    pub fn open_with_exemplars(
        dir: &Path,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        max_exemplars: usize,
    ) -> Result<Store> {
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir)?;
        let mut blocks = Vec::new();
        for entry in fs::read_dir(&blocks_dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                // A block whose write did not finish: its data is still in
                // the WAL or in the blocks it was merged from.
                fs::remove_dir_all(&path)?;
                continue;
            }
            match Block::open(&path) {
                Ok(b) => blocks.push(Arc::new(b)),
                Err(e) => tracing::error!(path = %path.display(), "skipping unreadable block: {e}"),
            }
        }
        blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
        maintenance::drop_overlapped_sources(&mut blocks);
        let head = Head::new();
        if let Some(max) = blocks.iter().map(|b| b.meta.max_t).max() {
            head.set_min_valid_t(max);
        }
        let mut metadata = HashMap::new();
        let window = opts.out_of_order_window_ms;
        let mut replayed = 0u64;
        // A series dropped by maintenance and created again has two refs in
        // the WAL; samples of the newer ref go to the series of the older.
        let mut aliases: HashMap<u64, u64> = HashMap::new();
        let exemplars = ExemplarStore::new(max_exemplars);
        let mut wal = Wal::open(&dir.join("wal"), opts.fsync, |rec| match rec {
            Record::Series { series_ref, labels } => {
                if let Some(existing) = head.restore(series_ref, labels) {
                    aliases.insert(series_ref, existing);
                }
            }
            Record::Samples(samples) => {
                let min_valid = head.min_valid_t();
                for s in samples {
                    let series_ref = aliases.get(&s.series_ref).copied().unwrap_or(s.series_ref);
                    if let Some(series) = head.get_by_ref(series_ref) {
                        let mut d = series.data.lock();
                        if d.append(s.t, s.v, window, min_valid) == AppendOutcome::Appended {
                            replayed += 1;
                        }
                    }
                }
            }
            Record::Metadata(m) => {
                metadata.insert(m.metric.clone(), m);
            }
            Record::Exemplars(ex) => {
                for e in ex {
                    let series_ref = aliases.get(&e.series_ref).copied().unwrap_or(e.series_ref);
                    if let Some(series) = head.get_by_ref(series_ref) {
                        let exemplar = Exemplar {
                            labels: e.labels,
                            value: e.v,
                            t: e.t,
                        };
                        exemplars.add(&series.labels.to_labels(), exemplar);
                    }
                }
            }
        })?;
        wal.segment_bytes = opts.wal_segment_bytes.max(1);
        let head_range = head.time_range();
        tracing::info!(
            blocks = blocks.len(),
            series = head.num_series(),
            samples = replayed,
            exemplars = exemplars.len(),
            "store opened"
        );
        Ok(Store {
            dir: dir.to_path_buf(),
            opts,
            clock,
            wal,
            head,
            blocks: RwLock::new(blocks),
            metadata: RwLock::new(metadata),
            exemplars,
            maintenance: Mutex::new(()),
            seen_min: AtomicI64::new(head_range.map_or(i64::MAX, |r| r.0)),
            seen_max: AtomicI64::new(head_range.map_or(i64::MIN, |r| r.1)),
            truncate_pending: Mutex::new(false),
            last_truncate: Mutex::new(None),
            stats: StoreStats::default(),
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    fn check_labels(&self, series: &SeriesView<'_>) -> Option<(RejectReason, String)> {
        if series.labels.len() > self.opts.max_labels_per_series {
            return Some((
                RejectReason::TooManyLabels,
                format!(
                    "series {} has {} labels, more than the limit of {}",
                    series.to_labels(),
                    series.labels.len(),
                    self.opts.max_labels_per_series
                ),
            ));
        }
        for &(name, value) in &series.labels {
            if name.len() > self.opts.max_label_name_len {
                return Some((
                    RejectReason::LabelNameTooLong,
                    format!(
                        "label name {:?} is {} bytes long, more than the limit of {}",
                        truncate(name, 64),
                        name.len(),
                        self.opts.max_label_name_len
                    ),
                ));
            }
            if value.len() > self.opts.max_label_value_len {
                return Some((
                    RejectReason::LabelValueTooLong,
                    format!(
                        "value of label {:?} is {} bytes long, more than the limit of {}",
                        name,
                        value.len(),
                        self.opts.max_label_value_len
                    ),
                ));
            }
        }
        None
    }

    /// Stores a batch; returns once it is in the WAL and the head.
    pub fn append(&self, batch: &[Series]) -> Result<AppendReport> {
        let views: Vec<SeriesView<'_>> = batch.iter().map(SeriesView::of).collect();
        self.append_views(&views)
    }

    /// [`Store::append`] for series borrowed from a decode buffer.
    pub fn append_views(&self, batch: &[SeriesView<'_>]) -> Result<AppendReport> {
        let mut report = AppendReport::default();
        let now = self.clock.now_ms();
        let max_t = now.saturating_add(self.opts.future_tolerance_ms);
        // Without retention, still refuse absurd times (beyond ±140,000
        // years), so time arithmetic in maintenance cannot overflow.
        let min_t = if self.opts.retention_ms > 0 {
            now.saturating_sub(self.opts.retention_ms)
        } else {
            -(1i64 << 52)
        };
        let (mut batch_min, mut batch_max) = (i64::MAX, i64::MIN);
        let mut wal_samples = Vec::with_capacity(batch.iter().map(|s| s.samples.len()).sum());
        let mut targets = Vec::with_capacity(batch.len());
        for (i, series) in batch.iter().enumerate() {
            if series.samples.is_empty() {
                continue;
            }
            let n = series.samples.len() as u64;
            if let Some((reason, msg)) = self.check_labels(series) {
                self.count_rejected(reason, n);
                report.reject(reason, n, || msg);
                continue;
            }
            let created = self.head.get_or_create(
                &series.labels,
                self.opts.max_series,
                self.opts.max_series_per_metric,
                |series_ref, labels| self.wal.log_series(series_ref, labels),
            )?;
            let mem = match created {
                Ok(mem) => mem,
                Err(limit) => {
                    let (reason, msg) = match limit {
                        SeriesLimit::Total => (
                            RejectReason::SeriesLimit,
                            format!(
                                "new series {} rejected: the store holds the maximum of {} series",
                                series.to_labels(),
                                self.opts.max_series
                            ),
                        ),
                        SeriesLimit::PerMetric => (
                            RejectReason::SeriesPerMetricLimit,
                            format!(
                                "new series {} rejected: metric has the maximum of {} series",
                                series.to_labels(),
                                self.opts.max_series_per_metric
                            ),
                        ),
                    };
                    self.count_rejected(reason, n);
                    report.reject(reason, n, || msg);
                    continue;
                }
            };
            let mut valid = Vec::with_capacity(series.samples.len());
            for s in &series.samples {
                if s.t > max_t {
                    self.count_rejected(RejectReason::TooFarInFuture, 1);
                    report.reject(RejectReason::TooFarInFuture, 1, || {
                        format!(
                            "sample of {} at {} is more than {}s ahead of the server clock",
                            mem.labels,
                            s.t,
                            self.opts.future_tolerance_ms / 1000
                        )
                    });
                } else if s.t < min_t {
                    self.count_rejected(RejectReason::TooOld, 1);
                    report.reject(RejectReason::TooOld, 1, || {
                        format!(
                            "sample of {} at {} is older than the retention period",
                            mem.labels, s.t
                        )
                    });
                } else {
                    wal_samples.push(RefSample {
                        series_ref: mem.series_ref,
                        t: s.t,
                        v: s.v,
                    });
                    valid.push(*s);
                    batch_min = batch_min.min(s.t);
                    batch_max = batch_max.max(s.t);
                }
            }
            targets.push((mem, valid, i));
        }
        self.wal.log_samples(&wal_samples)?;
        if batch_min <= batch_max {
            self.seen_min.fetch_min(batch_min, Ordering::Relaxed);
            self.seen_max.fetch_max(batch_max, Ordering::Relaxed);
        }
        for (mut mem, samples, i) in targets {
            loop {
                let mut d = mem.data.lock();
                if !d.removed {
                    self.apply(&mem, &mut d, &samples, &mut report);
                    break;
                }
                drop(d);
                // Maintenance dropped this (empty) series between our lookup
                // and now: create it again, and log the samples under its
                // new ref, since the WAL may no longer know the old one.
                mem = match self.head.get_or_create(
                    &batch[i].labels,
                    usize::MAX,
                    usize::MAX,
                    |series_ref, labels| self.wal.log_series(series_ref, labels),
                )? {
                    Ok(mem) => mem,
                    Err(_) => break,
                };
                let again: Vec<RefSample> = samples
                    .iter()
                    .map(|s| RefSample {
                        series_ref: mem.series_ref,
                        t: s.t,
                        v: s.v,
                    })
                    .collect();
                self.wal.log_samples(&again)?;
            }
        }
        self.stats
            .samples_appended
            .fetch_add(report.accepted, Ordering::Relaxed);
        Ok(report)
    }

    /// Appends one series' samples under its lock.
    fn apply(
        &self,
        mem: &head::MemSeries,
        d: &mut head::SeriesData,
        samples: &[Sample],
        report: &mut AppendReport,
    ) {
        let window = self.opts.out_of_order_window_ms;
        for s in samples {
            // Read under the series lock: a block cut raises it first and
            // then takes this lock, so nothing slips behind a cut.
            let min_valid = self.head.min_valid_t();
            match d.append(s.t, s.v, window, min_valid) {
                AppendOutcome::Appended => report.accepted += 1,
                AppendOutcome::Duplicate => report.duplicates += 1,
                AppendOutcome::Conflict => {
                    self.count_rejected(RejectReason::DuplicateTimestamp, 1);
                    report.reject(RejectReason::DuplicateTimestamp, 1, || {
                        format!(
                            "sample of {} at {} has the timestamp of a stored sample with another value",
                            mem.labels, s.t
                        )
                    });
                }
                AppendOutcome::TooOld => {
                    self.count_rejected(RejectReason::TooOld, 1);
                    report.reject(RejectReason::TooOld, 1, || {
                        format!(
                            "sample of {} at {} is older than the head accepts (out-of-order window {}s, or already persisted)",
                            mem.labels,
                            s.t,
                            window / 1000
                        )
                    });
                }
            }
        }
    }

    fn count_rejected(&self, reason: RejectReason, n: u64) {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.stats.rejected[i].fetch_add(n, Ordering::Relaxed);
    }

    pub fn rejected_count(&self, reason: RejectReason) -> u64 {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.stats.rejected[i].load(Ordering::Relaxed)
    }

    /// Records metric metadata (type, help, unit); logged when it changes.
    /// At most [`MAX_METADATA`] metrics keep metadata: when full, those
    /// whose metric has no series any more are forgotten first, and if none
    /// is, the new metric's metadata is not kept (its samples are).
    pub fn set_metadata(&self, meta: MetricMetadata) -> Result<()> {
        let known = {
            let m = self.metadata.read();
            if m.get(&meta.metric) == Some(&meta) {
                return Ok(());
            }
            m.contains_key(&meta.metric)
        };
        if !known && self.metadata.read().len() >= MAX_METADATA && !self.forget_idle_metadata() {
            return Ok(());
        }
        self.wal.log_metadata(&meta)?;
        self.metadata.write().insert(meta.metric.clone(), meta);
        Ok(())
    }

    /// Forgets the metadata of metrics without series; true if any went.
    fn forget_idle_metadata(&self) -> bool {
        let names: Vec<String> = self.metadata.read().keys().cloned().collect();
        let idle: Vec<String> = names
            .into_iter()
            .filter(|name| {
                let m = vec![Matcher::equal(sonde_model::METRIC_NAME, name)];
                self.series(&[m], i64::MIN, i64::MAX).is_empty()
            })
            .collect();
        let mut metadata = self.metadata.write();
        for name in &idle {
            metadata.remove(name);
        }
        !idle.is_empty()
    }

    pub fn metadata(&self) -> Vec<MetricMetadata> {
        let mut v: Vec<MetricMetadata> = self.metadata.read().values().cloned().collect();
        v.sort_by(|a, b| a.metric.cmp(&b.metric));
        v
    }

    /// Stores exemplars of series that exist: call it after appending the
    /// series' samples, which creates them and logs them to the WAL. The
    /// exemplars are in the WAL when this returns. An exemplar identical to
    /// its series' newest is a no-op (a retry); one not newer than it is
    /// dropped, as is one whose labels exceed 128 characters. None of these
    /// is an error: they are only counted in the report.
    pub fn append_exemplars(&self, exemplars: &[SeriesExemplar]) -> Result<ExemplarReport> {
        let mut report = ExemplarReport::default();
        let mut logged = Vec::new();
        let mut pending = Vec::new();
        for (series, e) in exemplars {
            let outcome = self.exemplars.check(series, e);
            if outcome != ExemplarOutcome::Added {
                report.count(outcome);
                continue;
            }
            let pairs: Vec<(&str, &str)> = series
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            let Some(mem) = self.head.get(&pairs) else {
                report.count(ExemplarOutcome::UnknownSeries);
                continue;
            };
            logged.push(RefExemplar {
                series_ref: mem.series_ref,
                t: e.t,
                v: e.value,
                labels: e.labels.clone(),
            });
            pending.push((series, e));
        }
        self.wal.log_exemplars(&logged)?;
        for (series, e) in pending {
            report.count(self.exemplars.add(series, e.clone()));
        }
        Ok(report)
    }

    /// Exemplars in `[mint, maxt]` of the series matching any of the matcher
    /// sets, sorted by series labels, each series' in time order.
    pub fn exemplars(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        self.exemplars.select(matcher_sets, mint, maxt)
    }

    /// Exemplars held in memory.
    pub fn num_exemplars(&self) -> usize {
        self.exemplars.len()
    }

    /// Series matching all matchers with their samples in `[mint, maxt]`,
    /// sorted by labels; series without samples there are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let mut merged: HashMap<Labels, Vec<Sample>> = HashMap::new();
        let mut sources: HashMap<Labels, u32> = HashMap::new();
        // Head first, then blocks: a cut that runs in between moves data from
        // the head into a new block, which the second read then sees (the
        // merge below removes what both returned). The other order could
        // miss the cut range entirely.
        for s in self.head.matching(matchers) {
            let samples = s.data.lock().samples(mint, maxt);
            if samples.is_empty() {
                continue;
            }
            let labels = s.labels.to_labels();
            *sources.entry(labels.clone()).or_default() += 1;
            merged.entry(labels).or_default().extend(samples);
        }
        let blocks: Vec<Arc<Block>> = self.blocks.read().clone();
        for b in blocks
            .iter()
            .filter(|b| b.meta.max_t > mint && b.meta.min_t <= maxt)
        {
            for (labels, samples) in b.select(matchers, mint, maxt)? {
                *sources.entry(labels.clone()).or_default() += 1;
                merged.entry(labels).or_default().extend(samples);
            }
        }
        let mut out: Vec<Series> = merged
            .into_iter()
            .map(|(labels, mut samples)| {
                if sources.get(&labels).copied().unwrap_or(0) > 1 {
                    samples.sort_by_key(|s| s.t);
                    samples.dedup_by_key(|s| s.t);
                }
                Series {
                    labels,
                    samples,
                    histograms: Vec::new(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label sets of series matching any of the matcher sets with data in
    /// `[mint, maxt]` (block granularity for persisted data).
    pub fn series(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<Labels> {
        let mut out = BTreeSet::new();
        let blocks: Vec<Arc<Block>> = self.blocks.read().clone();
        for matchers in matcher_sets {
            for b in blocks
                .iter()
                .filter(|b| b.meta.max_t > mint && b.meta.min_t <= maxt)
            {
                out.extend(b.series_labels(matchers));
            }
            for s in self.head.matching(matchers) {
                let d = s.data.lock();
                if let (Some(a), Some(b)) = (d.min_t(), d.max_t()) {
                    if a <= maxt && b >= mint {
                        out.insert(s.labels.to_labels());
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// Label names, optionally restricted to series matching matcher sets.
    pub fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut names = BTreeSet::new();
        for labels in self.series(&self.default_sets(matcher_sets), mint, maxt) {
            names.extend(labels.iter().map(|l| l.name.clone()));
        }
        names.into_iter().collect()
    }

    pub fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let mut values = BTreeSet::new();
        if matcher_sets.is_empty() {
            let m = vec![Matcher::new(sonde_model::MatchOp::RegexMatch, name, ".+")
                .unwrap_or_else(|_| Matcher::equal(name, ""))];
            for labels in self.series(&[m], mint, maxt) {
                if let Some(v) = labels.get(name) {
                    values.insert(v.to_string());
                }
            }
        } else {
            for labels in self.series(matcher_sets, mint, maxt) {
                if let Some(v) = labels.get(name) {
                    values.insert(v.to_string());
                }
            }
        }
        values.into_iter().collect()
    }

    fn default_sets(&self, matcher_sets: &[Vec<Matcher>]) -> Vec<Vec<Matcher>> {
        if matcher_sets.is_empty() {
            vec![vec![]]
        } else {
            matcher_sets.to_vec()
        }
    }

    pub fn num_series(&self) -> usize {
        self.head.num_series()
    }

    pub fn head_bytes(&self) -> usize {
        self.head.heap_size()
    }

    pub fn wal_bytes(&self) -> u64 {
        self.wal.size_bytes()
    }

    pub fn blocks(&self) -> Vec<BlockMeta> {
        self.blocks.read().iter().map(|b| b.meta).collect()
    }

    pub fn blocks_bytes(&self) -> u64 {
        self.blocks.read().iter().map(|b| b.bytes).sum()
    }

    /// Makes everything written so far durable, whatever the fsync policy.
    pub fn sync(&self) -> Result<()> {
        self.wal.sync()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod exemplar_tests;
#[cfg(test)]
mod tests;
