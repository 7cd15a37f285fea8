//! The write-ahead log of spans and logs.
//!
//! A directory of numbered segment files. Each record is `u32 length | u32
//! crc32 | u8 type | payload`, written with one `write` call before the batch
//! is acknowledged. A process always starts a fresh segment, so a torn tail
//! left by a crash is never appended to: replay reads each segment up to its
//! first bad record and moves on.
//!
//! When the in-memory buffer is written to Parquet, the WAL is rolled first;
//! the segments before the roll are deleted once the Parquet files are
//! durable. Their numbers are recorded in the Parquet file names, so a crash
//! between the two steps never replays data twice.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use sonde_model::records::{LogRecord, SpanRecord};

use crate::codec::{Reader, Writer};
use crate::{Error, Result};

const REC_SPANS: u8 = 1;
const REC_LOGS: u8 = 2;
const HEADER_LEN: usize = 9;
const SEGMENT_MAX_BYTES: u64 = 64 << 20;

pub(crate) enum Batch {
    Spans(Vec<SpanRecord>),
    Logs(Vec<LogRecord>),
}

struct Active {
    file: File,
    seq: u64,
    size: u64,
}

pub(crate) struct RecordWal {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Set by a failed write: what reached the file may be partial, so no
    /// later record may follow it.
    poisoned: Mutex<Option<String>>,
    sync_each_write: bool,
    total_bytes: std::sync::atomic::AtomicU64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:08}.log"))
}

/// The sequence numbers of the segments in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl RecordWal {
    /// Opens the WAL in `dir`, replaying every segment numbered above
    /// `flushed_upto` (older ones are already in Parquet and are deleted).
    pub fn open(
        dir: &Path,
        sync_each_write: bool,
        flushed_upto: u64,
        mut apply: impl FnMut(Batch),
    ) -> Result<RecordWal> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let seqs = list_segments(dir)?;
        let mut total = 0;
        for &seq in &seqs {
            let path = segment_path(dir, seq);
            if seq <= flushed_upto {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let data = fs::read(&path).map_err(io_err(&path))?;
            total += data.len() as u64;
            let valid = replay_segment(&data, &mut apply);
            if valid < data.len() {
                tracing::warn!(
                    segment = %path.display(),
                    valid_bytes = valid,
                    total_bytes = data.len(),
                    "record WAL segment ends with a torn or corrupt record; the rest is ignored"
                );
            }
        }
        let seq = seqs.last().copied().unwrap_or(0).max(flushed_upto) + 1;
        let file = create_segment(dir, seq)?;
        Ok(RecordWal {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active { file, seq, size: 0 }),
            poisoned: Mutex::new(None),
            sync_each_write,
            total_bytes: total.into(),
        })
    }

    pub fn append_spans(&self, spans: &[SpanRecord]) -> Result<()> {
        let mut w = Writer::new();
        w.spans(spans);
        self.append(REC_SPANS, &w.out)
    }

    pub fn append_logs(&self, logs: &[LogRecord]) -> Result<()> {
        let mut w = Writer::new();
        w.logs(logs);
        self.append(REC_LOGS, &w.out)
    }

    fn append(&self, kind: u8, payload: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(payload);
        frame.extend_from_slice(&crc.finalize().to_le_bytes());
        frame.push(kind);
        frame.extend_from_slice(payload);

        let mut active = self.active.lock();
        if let Some(reason) = self.poisoned.lock().as_ref() {
            return Err(Error::WalPoisoned(reason.clone()));
        }
        if active.size > 0 && active.size + frame.len() as u64 > SEGMENT_MAX_BYTES {
            self.roll_locked(&mut active)?;
        }
        let path = segment_path(&self.dir, active.seq);
        let written = active.file.write_all(&frame).and_then(|_| {
            if self.sync_each_write {
                active.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            *self.poisoned.lock() = Some(e.to_string());
            return Err(io_err(&path)(e));
        }
        active.size += frame.len() as u64;
        self.total_bytes
            .fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn roll_locked(&self, active: &mut Active) -> Result<()> {
        let path = segment_path(&self.dir, active.seq);
        active.file.sync_data().map_err(io_err(&path))?;
        let seq = active.seq + 1;
        active.file = create_segment(&self.dir, seq)?;
        active.seq = seq;
        active.size = 0;
        Ok(())
    }

    /// Closes the active segment and starts a new one. Returns the number of
    /// the last closed segment: everything appended before the call is in
    /// segments up to it.
    pub fn roll(&self) -> Result<u64> {
        let mut active = self.active.lock();
        let closed = active.seq;
        self.roll_locked(&mut active)?;
        Ok(closed)
    }

    /// Deletes segments up to `seq`, whose data is durable elsewhere.
    pub fn remove_upto(&self, seq: u64) -> Result<()> {
        for s in list_segments(&self.dir)? {
            if s > seq {
                break;
            }
            let path = segment_path(&self.dir, s);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.total_bytes.fetch_sub(
                len.min(self.size_bytes()),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        // Syncing a clone of the handle keeps appends flowing meanwhile.
        let (file, seq) = {
            let active = self.active.lock();
            (active.file.try_clone(), active.seq)
        };
        let path = segment_path(&self.dir, seq);
        let result = file.and_then(|f| f.sync_data());
        if let Err(e) = result {
            *self.poisoned.lock() = Some(e.to_string());
            return Err(io_err(&path)(e));
        }
        Ok(())
    }

    pub fn size_bytes(&self) -> u64 {
        self.total_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<File> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Applies the valid records of one segment; returns how many bytes were valid.
fn replay_segment(data: &[u8], apply: &mut impl FnMut(Batch)) -> usize {
    let mut pos = 0;
    while data.len() - pos >= HEADER_LEN {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
        let kind = data[pos + 8];
        let Some(payload) = data.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(payload);
        if h.finalize() != crc {
            break;
        }
        let batch = match kind {
            REC_SPANS => Reader::new(payload).spans().map(Batch::Spans),
            REC_LOGS => Reader::new(payload).logs().map(Batch::Logs),
            _ => None,
        };
        match batch {
            Some(b) => apply(b),
            None => break,
        }
        pos += HEADER_LEN + len;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::sample_spans;

    fn replay(dir: &Path, flushed: u64) -> (RecordWal, Vec<SpanRecord>) {
        let mut spans = Vec::new();
        let wal = RecordWal::open(dir, false, flushed, |b| {
            if let Batch::Spans(s) = b {
                spans.extend(s)
            }
        })
        .unwrap();
        (wal, spans)
    }

    #[test]
    fn replays_after_reopen_skips_flushed_segments_and_ignores_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, none) = replay(dir.path(), 0);
        assert!(none.is_empty());
        wal.append_spans(&sample_spans()).unwrap();
        let closed = wal.roll().unwrap();
        wal.append_spans(&sample_spans()[..1]).unwrap();
        drop(wal);

        let (_, all) = replay(dir.path(), 0);
        assert_eq!(all.len(), 3);
        let (wal, after) = replay(dir.path(), closed);
        assert_eq!(after, sample_spans()[..1].to_vec());
        wal.append_spans(&sample_spans()).unwrap();
        drop(wal);

        // Tear the last record of the newest segment in half.
        let last = *list_segments(dir.path()).unwrap().last().unwrap();
        let path = segment_path(dir.path(), last);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (_, torn) = replay(dir.path(), closed);
        assert_eq!(torn, sample_spans()[..1].to_vec());
    }
}
