//! The write-ahead log: every accepted write is appended here before it is
//! acknowledged.
//!
//! A WAL is a directory of numbered segment files plus at most one
//! checkpoint. Each record is framed as `u32 length | u32 crc32 | u8 type |
//! payload` (little endian), written with a single `write` call, so a record
//! handed to the kernel survives a crash of the process. Whether it also
//! survives a crash of the machine depends on the fsync policy.
//!
//! Truncation after a head block is persisted rewrites the old segments into a
//! checkpoint that keeps only live series and samples newer than the block
//! boundary, then deletes those segments. Exemplars of live series are kept
//! whatever their age, the newest up to the exemplar capacity, so they
//! survive restarts as long as the in-memory buffer would hold them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sonde_model::{Labels, MetricMetadata, MetricType};

use crate::{Error, Result};

pub(crate) const SEGMENT_MAX_BYTES: u64 = 128 << 20;
const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
const REC_METADATA: u8 = 3;
/// A samples record whose payload is snappy-compressed: float bits of
/// integer-valued samples and small refs are mostly zero bytes, so the WAL,
/// which holds hours of data, shrinks several-fold for little CPU.
const REC_SAMPLES_SNAPPY: u8 = 4;
/// Exemplars, each with its series ref (logged after the series' samples,
/// so the series record precedes it).
const REC_EXEMPLARS: u8 = 5;
const HEADER_LEN: usize = 9;

/// When the WAL calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement: survives power loss, costs throughput.
    Always,
    /// Every N milliseconds from a background task: acknowledged writes
    /// survive a process crash; a power loss may lose the last interval.
    IntervalMs(u64),
    /// Left to the kernel.
    Never,
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series { series_ref: u64, labels: Labels },
    Samples(Vec<RefSample>),
    Metadata(MetricMetadata),
    Exemplars(Vec<RefExemplar>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefExemplar {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
    pub labels: Labels,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
}

struct Active {
    file: File,
    seq: u64,
    size: u64,
    dirty: bool,
    /// Set when a failed write could not be cut off again: appending after
    /// garbage would make later records unreadable, so writes stop.
    poisoned: bool,
}

pub struct Wal {
    dir: PathBuf,
    policy: FsyncPolicy,
    /// A segment is closed past this size (`StoreOptions::wal_segment_bytes`).
    pub(crate) segment_bytes: u64,
    active: Mutex<Active>,
    /// Bytes of all segments and the checkpoint, for `/metrics` and retention.
    bytes: AtomicU64,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:010}")
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(seq) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The newest checkpoint (`checkpoint.<last segment it covers>`), if any.
fn find_checkpoint(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint."))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| seq > *b) {
            best = Some((seq, entry.path()));
        }
    }
    Ok(best)
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl Wal {
    /// Opens the WAL in `dir`, replaying every valid record through `apply`
    /// first (checkpoint, then segments in order). A torn record at the end of
    /// the last segment, left by a crash mid-write, is cut off; it was never
    /// acknowledged.
    pub fn open(dir: &Path, policy: FsyncPolicy, mut apply: impl FnMut(Record)) -> Result<Wal> {
        fs::create_dir_all(dir)?;
        let checkpoint = find_checkpoint(dir)?;
        let mut first_seq = 1;
        if let Some((seq, path)) = &checkpoint {
            let (_, err) = decode_file(path, &mut apply)?;
            if let Some(err) = err {
                tracing::error!(path = %path.display(), "wal checkpoint corrupt, data after it is lost: {err}");
            }
            first_seq = seq + 1;
        }
        let seqs: Vec<u64> = list_segments(dir)?
            .into_iter()
            .filter(|s| *s >= first_seq)
            .collect();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_name(seq));
            let (valid, err) = decode_file(&path, &mut apply)?;
            if let Some(err) = err {
                if i + 1 == seqs.len() {
                    tracing::warn!(path = %path.display(), valid, "cutting torn wal tail: {err}");
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(valid as u64)?;
                } else {
                    tracing::error!(path = %path.display(), valid, "wal segment corrupt, skipping its rest: {err}");
                }
            }
        }
        let seq = seqs.last().copied().unwrap_or(first_seq);
        let path = dir.join(segment_name(seq));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            policy,
            segment_bytes: SEGMENT_MAX_BYTES,
            active: Mutex::new(Active {
                file,
                seq,
                size,
                dirty: false,
                poisoned: false,
            }),
            bytes: AtomicU64::new(dir_size(dir)),
        })
    }

    pub fn log_series(&self, series_ref: u64, labels: &Labels) -> Result<()> {
        let mut buf = Vec::with_capacity(64);
        encode_series(&mut buf, series_ref, labels);
        // Called under the head's index lock: no fsync of its own (the
        // samples record that follows is synced, which covers this one) and
        // no rotation (which fsyncs the old segment and the directory); a
        // segment may end a few series records past its size for it.
        self.write(&buf, false, false)
    }

    pub fn log_samples(&self, samples: &[RefSample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + samples.len() * 14);
        encode_samples(&mut buf, samples);
        self.write(&buf, true, true)
    }

    pub fn log_exemplars(&self, exemplars: &[RefExemplar]) -> Result<()> {
        if exemplars.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + exemplars.len() * 100);
        encode_exemplars(&mut buf, exemplars);
        self.write(&buf, true, true)
    }

    pub fn log_metadata(&self, meta: &MetricMetadata) -> Result<()> {
        let mut buf = Vec::new();
        encode_metadata(&mut buf, meta);
        self.write(&buf, true, true)
    }

    fn write(&self, framed: &[u8], sync: bool, may_rotate: bool) -> Result<()> {
        let mut active = self.active.lock();
        if active.poisoned {
            return Err(std::io::Error::other(
                "the WAL failed earlier and accepts no writes until restart",
            )
            .into());
        }
        if may_rotate && active.size > 0 && active.size + framed.len() as u64 > self.segment_bytes {
            self.rotate(&mut active)?;
        }
        if let Err(e) = active.file.write_all(framed) {
            // A short write leaves a torn record; cut it off so the records
            // written after it stay readable, or stop writing altogether.
            let size = active.size;
            if active.file.set_len(size).is_err() {
                active.poisoned = true;
            }
            return Err(e.into());
        }
        active.size += framed.len() as u64;
        self.bytes.fetch_add(framed.len() as u64, Ordering::Relaxed);
        if sync && self.policy == FsyncPolicy::Always {
            if let Err(e) = active.file.sync_data() {
                // After a failed fsync the kernel may have dropped the dirty
                // pages: nothing written since can be trusted to be durable.
                active.poisoned = true;
                return Err(e.into());
            }
        } else {
            active.dirty = true;
        }
        Ok(())
    }

    fn rotate(&self, active: &mut Active) -> Result<()> {
        active.file.sync_data()?;
        let seq = active.seq + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(segment_name(seq)))?;
        sync_dir(&self.dir)?;
        crate::crash_point("wal-rotate");
        *active = Active {
            file,
            seq,
            size: 0,
            dirty: false,
            poisoned: false,
        };
        Ok(())
    }

    /// Flushes to stable storage if anything was written since the last sync.
    /// Flushes to stable storage if anything was written since the last
    /// sync. The fsync runs on a second handle, outside the append lock, so
    /// writers do not stall behind it.
    pub fn sync(&self) -> Result<()> {
        let file = {
            let mut active = self.active.lock();
            if !active.dirty {
                return Ok(());
            }
            active.dirty = false;
            active.file.try_clone()?
        };
        if let Err(e) = file.sync_data() {
            self.active.lock().poisoned = true;
            return Err(e.into());
        }
        Ok(())
    }

    pub fn size_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Drops what is persisted elsewhere: rewrites every closed segment (and
    /// the old checkpoint) into a new checkpoint keeping only series for which
    /// `keep_series` holds and samples at or after `min_t`, then deletes them.
    /// Of the exemplars of kept series, the newest `max_exemplars` are kept
    /// whatever their time (written at the checkpoint's end, after every
    /// series record).
    pub fn truncate(
        &self,
        keep_series: &dyn Fn(u64) -> bool,
        min_t: i64,
        max_exemplars: usize,
    ) -> Result<()> {
        let last_closed = {
            let mut active = self.active.lock();
            let seq = active.seq;
            self.rotate(&mut active)?;
            seq
        };
        let old_checkpoint = find_checkpoint(&self.dir)?;
        let tmp = self.dir.join("checkpoint.tmp");
        // The checkpoint can hold hours of head samples: it is written as it
        // is decoded, through a bounded buffer, never assembled in memory.
        let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut out = Vec::with_capacity(1 << 16);
        let mut write_error: Option<std::io::Error> = None;
        let mut metadata: std::collections::BTreeMap<String, MetricMetadata> = Default::default();
        let mut exemplars: std::collections::VecDeque<RefExemplar> = Default::default();
        let mut keep = |rec: Record| {
            match rec {
                Record::Series { series_ref, labels } if keep_series(series_ref) => {
                    encode_series(&mut out, series_ref, &labels)
                }
                Record::Samples(samples) => {
                    let kept: Vec<RefSample> = samples
                        .into_iter()
                        .filter(|s| s.t >= min_t && keep_series(s.series_ref))
                        .collect();
                    if !kept.is_empty() {
                        encode_samples(&mut out, &kept);
                    }
                }
                // Only the latest metadata of each metric is carried forward.
                Record::Metadata(m) => {
                    metadata.insert(m.metric.clone(), m);
                }
                Record::Exemplars(ex) => {
                    for e in ex {
                        if max_exemplars > 0 && keep_series(e.series_ref) {
                            if exemplars.len() == max_exemplars {
                                exemplars.pop_front();
                            }
                            exemplars.push_back(e);
                        }
                    }
                }
                Record::Series { .. } => {}
            }
            if write_error.is_none() {
                if let Err(e) = file.write_all(&out) {
                    write_error = Some(e);
                }
            }
            out.clear();
        };
        if let Some((_, path)) = &old_checkpoint {
            if let (_, Some(err)) = decode_file(path, &mut keep)? {
                return Err(Error::Corrupt(format!(
                    "wal checkpoint {}: {err}; not truncating",
                    path.display()
                )));
            }
        }
        let segments: Vec<u64> = list_segments(&self.dir)?
            .into_iter()
            .filter(|s| *s <= last_closed)
            .collect();
        for &seq in &segments {
            let path = self.dir.join(segment_name(seq));
            if let (_, Some(err)) = decode_file(&path, &mut keep)? {
                return Err(Error::Corrupt(format!(
                    "wal segment {}: {err}; not truncating",
                    path.display()
                )));
            }
        }
        if let Some(e) = write_error {
            return Err(e.into());
        }
        let mut tail = Vec::new();
        for m in metadata.values() {
            encode_metadata(&mut tail, m);
        }
        let exemplars: Vec<RefExemplar> = exemplars.into();
        for chunk in exemplars.chunks(1024) {
            encode_exemplars(&mut tail, chunk);
        }
        file.write_all(&tail)?;
        let f = file.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.dir.join(format!("checkpoint.{last_closed}")))?;
        sync_dir(&self.dir)?;
        // The checkpoint and the segments it replaces are both on disk.
        crate::crash_point("checkpoint");
        for seq in segments {
            fs::remove_file(self.dir.join(segment_name(seq)))?;
        }
        if let Some((seq, path)) = old_checkpoint {
            if seq != last_closed {
                fs::remove_file(path)?;
            }
        }
        self.bytes.store(dir_size(&self.dir), Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN - 1]);
    out.push(kind);
    payload(out);
    let body = &out[start + HEADER_LEN - 1..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_metadata(out: &mut Vec<u8>, meta: &MetricMetadata) {
    frame(out, REC_METADATA, |p| {
        put_str(p, &meta.metric);
        put_str(p, meta.kind.as_str());
        put_str(p, &meta.help);
        put_str(p, &meta.unit);
    });
}

fn encode_series(out: &mut Vec<u8>, series_ref: u64, labels: &Labels) {
    frame(out, REC_SERIES, |p| {
        put_uvarint(p, series_ref);
        put_uvarint(p, labels.len() as u64);
        for l in labels.iter() {
            put_str(p, &l.name);
            put_str(p, &l.value);
        }
    });
}

fn encode_samples(out: &mut Vec<u8>, samples: &[RefSample]) {
    let mut raw = Vec::with_capacity(samples.len() * 12 + 16);
    put_uvarint(&mut raw, samples.len() as u64);
    // Timestamps are delta-coded against the first: batches share a time.
    let base = samples[0].t;
    put_uvarint(&mut raw, zigzag(base));
    for s in samples {
        put_uvarint(&mut raw, s.series_ref);
        put_uvarint(&mut raw, zigzag(s.t.wrapping_sub(base)));
        raw.extend_from_slice(&s.v.to_bits().to_le_bytes());
    }
    match snap::raw::Encoder::new().compress_vec(&raw) {
        Ok(compressed) if compressed.len() < raw.len() => frame(out, REC_SAMPLES_SNAPPY, |p| {
            p.extend_from_slice(&compressed)
        }),
        _ => frame(out, REC_SAMPLES, |p| p.extend_from_slice(&raw)),
    }
}

fn encode_exemplars(out: &mut Vec<u8>, exemplars: &[RefExemplar]) {
    frame(out, REC_EXEMPLARS, |p| {
        put_uvarint(p, exemplars.len() as u64);
        let base = exemplars[0].t;
        put_uvarint(p, zigzag(base));
        for e in exemplars {
            put_uvarint(p, e.series_ref);
            put_uvarint(p, zigzag(e.t.wrapping_sub(base)));
            p.extend_from_slice(&e.v.to_bits().to_le_bytes());
            put_uvarint(p, e.labels.len() as u64);
            for l in e.labels.iter() {
                put_str(p, &l.name);
                put_str(p, &l.value);
            }
        }
    });
}

fn decode_exemplars(p: &[u8]) -> Option<Vec<RefExemplar>> {
    let mut r = Reader { p, pos: 0 };
    let n = r.uvarint()? as usize;
    let base = unzigzag(r.uvarint()?);
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let series_ref = r.uvarint()?;
        let t = base.wrapping_add(unzigzag(r.uvarint()?));
        let v = f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().ok()?));
        let k = r.uvarint()? as usize;
        let mut pairs = Vec::with_capacity(k.min(64));
        for _ in 0..k {
            pairs.push((r.string()?, r.string()?));
        }
        out.push(RefExemplar {
            series_ref,
            t,
            v,
            labels: Labels::from_pairs(pairs),
        });
    }
    Some(out)
}

fn decode_samples(p: &[u8]) -> Option<Vec<RefSample>> {
    let mut r = Reader { p, pos: 0 };
    let n = r.uvarint()? as usize;
    let base = unzigzag(r.uvarint()?);
    let mut samples = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let series_ref = r.uvarint()?;
        let t = base.wrapping_add(unzigzag(r.uvarint()?));
        let v = f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().ok()?));
        samples.push(RefSample { series_ref, t, v });
    }
    Some(samples)
}

/// Decodes the records of a file until it ends or a record is invalid,
/// reading a record at a time: segments are large, and replaying or
/// truncating them must not hold one in memory. Returns the length of the
/// valid prefix and, if decoding stopped early, why.
fn decode_file(path: &Path, apply: &mut impl FnMut(Record)) -> Result<(usize, Option<String>)> {
    let file = File::open(path)?;
    let total = file.metadata()?.len() as usize;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut pos = 0usize;
    let mut header = [0u8; HEADER_LEN - 1];
    let mut body = Vec::new();
    while pos < total {
        if total - pos < HEADER_LEN {
            return Ok((pos, Some("truncated record header".into())));
        }
        r.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || total - pos - (HEADER_LEN - 1) < len {
            return Ok((pos, Some("truncated record".into())));
        }
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            return Ok((pos, Some("record checksum mismatch".into())));
        }
        match decode_record(body[0], &body[1..]) {
            Some(rec) => apply(rec),
            None => return Ok((pos, Some(format!("undecodable record of type {}", body[0])))),
        }
        pos += HEADER_LEN - 1 + len;
    }
    Ok((pos, None))
}

fn decode_record(kind: u8, p: &[u8]) -> Option<Record> {
    let mut r = Reader { p, pos: 0 };
    match kind {
        REC_SERIES => {
            let series_ref = r.uvarint()?;
            let n = r.uvarint()? as usize;
            let mut pairs = Vec::with_capacity(n.min(256));
            for _ in 0..n {
                pairs.push((r.string()?, r.string()?));
            }
            Some(Record::Series {
                series_ref,
                labels: Labels::from_pairs(pairs),
            })
        }
        REC_SAMPLES => decode_samples(p).map(Record::Samples),
        REC_SAMPLES_SNAPPY => {
            let raw = snap::raw::Decoder::new().decompress_vec(p).ok()?;
            decode_samples(&raw).map(Record::Samples)
        }
        REC_EXEMPLARS => decode_exemplars(p).map(Record::Exemplars),
        REC_METADATA => Some(Record::Metadata(MetricMetadata {
            metric: r.string()?,
            kind: MetricType::parse(&r.string()?),
            help: r.string()?,
            unit: r.string()?,
        })),
        _ => None,
    }
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A bounds-checked cursor: corrupt input yields `None`, never a panic.
pub(crate) struct Reader<'a> {
    pub p: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.p.get(self.pos)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.p.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    pub fn string(&mut self) -> Option<String> {
        let n = self.uvarint()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(dir: &Path) -> Vec<Record> {
        let mut recs = Vec::new();
        let _wal = Wal::open(dir, FsyncPolicy::Never, |r| recs.push(r)).unwrap();
        recs
    }

    fn s(series_ref: u64, t: i64, v: f64) -> RefSample {
        RefSample { series_ref, t, v }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        wal.log_series(7, &labels).unwrap();
        wal.log_samples(&[s(7, 1000, 1.0), s(7, 900, -2.5)])
            .unwrap();
        drop(wal);
        let recs = replay(dir.path());
        assert_eq!(
            recs,
            vec![
                Record::Series {
                    series_ref: 7,
                    labels
                },
                Record::Samples(vec![s(7, 1000, 1.0), s(7, 900, -2.5)]),
            ]
        );
    }

    #[test]
    fn creating_a_series_never_rotates_or_syncs_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        wal.log_samples(&[s(1, 1, 1.0)]).unwrap();
        // The segment is full: the next series record still goes into it
        // (the head's index lock is held), the samples record rotates.
        wal.active.lock().size = wal.segment_bytes - 1;
        let seq = wal.active.lock().seq;
        wal.log_series(7, &labels).unwrap();
        assert_eq!(wal.active.lock().seq, seq);
        assert!(
            wal.active.lock().dirty,
            "the series record waits for a sync"
        );
        wal.log_samples(&[s(7, 2, 2.0)]).unwrap();
        assert_eq!(wal.active.lock().seq, seq + 1);
        drop(wal);
        let recs = replay(dir.path());
        assert_eq!(recs.len(), 3);
        assert!(matches!(recs[1], Record::Series { series_ref: 7, .. }));
    }

    #[test]
    fn large_sample_records_are_compressed_and_replay_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
        let batch: Vec<RefSample> = (0..1000)
            .map(|i| s(i % 100, 1_700_000_000_000 + i as i64, (i % 7) as f64))
            .collect();
        wal.log_samples(&batch).unwrap();
        // Uncompressed this is about 12 bytes per sample.
        assert!(wal.size_bytes() < 8000, "{} bytes", wal.size_bytes());
        drop(wal);
        assert_eq!(replay(dir.path()), vec![Record::Samples(batch)]);
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
        wal.log_samples(&[s(1, 1, 1.0)]).unwrap();
        wal.log_samples(&[s(1, 2, 2.0)]).unwrap();
        drop(wal);
        let seg = dir.path().join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        {
            let mut n = 0;
            let wal = Wal::open(dir.path(), FsyncPolicy::Never, |_| n += 1).unwrap();
            assert_eq!(n, 1);
            wal.log_samples(&[s(1, 3, 3.0)]).unwrap();
        }
        assert_eq!(
            replay(dir.path()),
            vec![
                Record::Samples(vec![s(1, 1, 1.0)]),
                Record::Samples(vec![s(1, 3, 3.0)])
            ]
        );
    }

    fn ex(series_ref: u64, t: i64, trace: &str) -> RefExemplar {
        RefExemplar {
            series_ref,
            t,
            v: 0.5,
            labels: Labels::from_pairs([("trace_id", trace)]),
        }
    }

    #[test]
    fn exemplars_replay_and_checkpoints_keep_the_newest_of_live_series() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        wal.log_series(1, &a).unwrap();
        wal.log_series(2, &b).unwrap();
        wal.log_samples(&[s(1, 10, 1.0), s(2, 10, 1.0)]).unwrap();
        wal.log_exemplars(&[ex(1, 10, "a1"), ex(2, 10, "b1")])
            .unwrap();
        wal.log_exemplars(&[ex(1, 11, "a2"), ex(1, -5, "a0")])
            .unwrap();
        wal.log_exemplars(&[ex(1, 12, "a3")]).unwrap();
        drop(wal);
        let recs = replay(dir.path());
        assert_eq!(
            recs[3],
            Record::Exemplars(vec![ex(1, 10, "a1"), ex(2, 10, "b1")])
        );
        assert_eq!(
            recs[4],
            Record::Exemplars(vec![ex(1, 11, "a2"), ex(1, -5, "a0")])
        );
        // Series 2 is gone; of series 1's four exemplars the newest three
        // are kept, even those older than the samples' boundary.
        let wal = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
        wal.truncate(&|r| r == 1, 1000, 3).unwrap();
        drop(wal);
        assert_eq!(
            replay(dir.path()),
            vec![
                Record::Series {
                    series_ref: 1,
                    labels: a
                },
                Record::Exemplars(vec![ex(1, 11, "a2"), ex(1, -5, "a0"), ex(1, 12, "a3")]),
            ]
        );
    }

    #[test]
    fn truncate_keeps_live_series_and_recent_samples() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        wal.log_series(1, &a).unwrap();
        wal.log_series(2, &b).unwrap();
        wal.log_samples(&[s(1, 10, 1.0), s(1, 20, 2.0), s(2, 10, 3.0)])
            .unwrap();
        wal.truncate(&|r| r == 1, 15, 0).unwrap();
        wal.log_samples(&[s(1, 30, 4.0)]).unwrap();
        drop(wal);
        assert_eq!(
            replay(dir.path()),
            vec![
                Record::Series {
                    series_ref: 1,
                    labels: a
                },
                Record::Samples(vec![s(1, 20, 2.0)]),
                Record::Samples(vec![s(1, 30, 4.0)]),
            ]
        );
    }
}
