//! Immutable on-disk blocks: the samples of a time range, persisted from the
//! head or merged by compaction.
//!
//! A block is a directory with three files, written to a temporary name and
//! renamed into place, so a block either exists completely or not at all:
//! - `chunks`: compressed chunks back to back, each followed by its crc32;
//! - `index`: every series' labels and chunk references, with a crc32;
//! - `meta`: the time range and counts, as `key=value` lines.
//!
//! Opening a block reads its index into memory (labels and postings); chunk
//! bytes stay on disk and are read on demand.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sonde_model::{Labels, Matcher, Sample};

use crate::encoding;
use crate::head::select_postings;
use crate::wal::{put_str, put_uvarint, sync_dir, unzigzag, zigzag, Reader};
use crate::{Error, Result};

const INDEX_MAGIC: &[u8] = b"SONDEIX3";

/// Samples per chunk in a block: larger than in the head, because blocks are
/// written once and bigger frames compress better.
const BLOCK_CHUNK_SAMPLES: usize = 480;

#[derive(Debug, Clone, Copy)]
struct ChunkRef {
    min_t: i64,
    max_t: i64,
    offset: u64,
    len: u32,
}

/// A series of an open block: its labels as symbol ids (name, value,
/// name, value, ...), so a block holds each distinct string once.
struct BlockSeries {
    label_ids: Box<[u32]>,
    chunks: Box<[ChunkRef]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    pub min_t: i64,
    /// Exclusive.
    pub max_t: i64,
    pub num_series: u64,
    pub num_samples: u64,
    /// 1 for a block cut from the head; merged blocks have the highest level
    /// of their sources plus one.
    pub level: u32,
}

pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub bytes: u64,
    /// Directory names of the blocks merged into this one.
    pub sources: Vec<String>,
    symbols: Vec<Box<str>>,
    series: Vec<BlockSeries>,
    postings: HashMap<String, BTreeMap<String, Vec<u64>>>,
    chunks: File,
}

/// Writes a block; series must be added in label order, each once.
pub struct BlockWriter {
    tmp: PathBuf,
    final_dir: PathBuf,
    chunks: BufWriter<File>,
    offset: u64,
    /// The series section of the index; the symbol table goes before it.
    series_index: Vec<u8>,
    symbols: HashMap<String, u32>,
    symbol_list: Vec<String>,
    meta: BlockMeta,
    sources: Vec<String>,
}

/// A name no other block has or had: two blocks may cover the same range
/// (a flush, then a later cut), and an existing block is never replaced.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}{n:04x}")
}

impl BlockWriter {
    /// `sources` names the blocks this one replaces (for compaction), so a
    /// crash between writing it and deleting them is repaired on open.
    pub fn create(
        blocks_dir: &Path,
        min_t: i64,
        max_t: i64,
        level: u32,
        sources: Vec<String>,
    ) -> Result<BlockWriter> {
        let name = format!("{min_t:020}-{max_t:020}-l{level}-{}", unique_suffix());
        let tmp = blocks_dir.join(format!("{name}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let chunks = BufWriter::with_capacity(1 << 20, File::create(tmp.join("chunks"))?);
        Ok(BlockWriter {
            tmp,
            final_dir: blocks_dir.join(name),
            chunks,
            offset: 0,
            series_index: Vec::with_capacity(1 << 16),
            symbols: HashMap::new(),
            symbol_list: Vec::new(),
            meta: BlockMeta {
                min_t,
                max_t,
                num_series: 0,
                num_samples: 0,
                level,
            },
            sources,
        })
    }

    /// Adds a series with its samples (sorted, unique timestamps, all inside
    /// the block's range). Series without samples are skipped.
    pub fn add_series(&mut self, labels: &Labels, samples: &[Sample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut refs = Vec::with_capacity(samples.len() / BLOCK_CHUNK_SAMPLES + 1);
        for part in samples.chunks(BLOCK_CHUNK_SAMPLES) {
            let bytes = encoding::encode(part);
            self.chunks.write_all(&bytes)?;
            self.chunks
                .write_all(&crc32fast::hash(&bytes).to_le_bytes())?;
            refs.push(ChunkRef {
                min_t: part[0].t,
                max_t: part[part.len() - 1].t,
                offset: self.offset,
                len: bytes.len() as u32,
            });
            self.offset += bytes.len() as u64 + 4;
        }
        put_uvarint(&mut self.series_index, labels.len() as u64);
        for l in labels.iter() {
            for text in [&l.name, &l.value] {
                let id = self.symbol(text);
                put_uvarint(&mut self.series_index, id as u64);
            }
        }
        put_uvarint(&mut self.series_index, refs.len() as u64);
        for r in &refs {
            put_uvarint(&mut self.series_index, zigzag(r.min_t));
            put_uvarint(&mut self.series_index, (r.max_t - r.min_t) as u64);
            put_uvarint(&mut self.series_index, r.offset);
            put_uvarint(&mut self.series_index, r.len as u64);
        }
        self.meta.num_series += 1;
        self.meta.num_samples += samples.len() as u64;
        Ok(())
    }

    fn symbol(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.symbols.get(text) {
            return id;
        }
        let id = self.symbol_list.len() as u32;
        self.symbols.insert(text.to_string(), id);
        self.symbol_list.push(text.to_string());
        id
    }

    /// Makes the block durable and visible. Returns `None` if it is empty.
    pub fn finish(mut self) -> Result<Option<Block>> {
        if self.meta.num_series == 0 {
            drop(self.chunks);
            fs::remove_dir_all(&self.tmp)?;
            return Ok(None);
        }
        self.chunks.flush()?;
        self.chunks.get_ref().sync_all()?;
        let mut index = Vec::with_capacity(self.series_index.len() + self.symbol_list.len() * 16);
        index.extend_from_slice(INDEX_MAGIC);
        put_uvarint(&mut index, self.symbol_list.len() as u64);
        for sym in &self.symbol_list {
            put_str(&mut index, sym);
        }
        index.extend_from_slice(&self.series_index);
        let crc = crc32fast::hash(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        write_synced(&self.tmp.join("index"), &index)?;
        let m = &self.meta;
        let meta = format!(
            "min_t={}\nmax_t={}\nnum_series={}\nnum_samples={}\nlevel={}\nsources={}\n",
            m.min_t,
            m.max_t,
            m.num_series,
            m.num_samples,
            m.level,
            self.sources.join(",")
        );
        write_synced(&self.tmp.join("meta"), meta.as_bytes())?;
        sync_dir(&self.tmp)?;
        fs::rename(&self.tmp, &self.final_dir)?;
        if let Some(parent) = self.final_dir.parent() {
            sync_dir(parent)?;
        }
        Block::open(&self.final_dir).map(Some)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

impl Block {
    /// The block's directory name, as other blocks' `sources` list it.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn open(dir: &Path) -> Result<Block> {
        let corrupt = |what: &str| Error::Corrupt(format!("block {}: {what}", dir.display()));
        let meta_text = fs::read_to_string(dir.join("meta"))?;
        let (meta, sources) = parse_meta(&meta_text).ok_or_else(|| corrupt("bad meta"))?;
        let index = fs::read(dir.join("index"))?;
        if index.len() < INDEX_MAGIC.len() + 4 || !index.starts_with(INDEX_MAGIC) {
            return Err(corrupt("bad index header"));
        }
        let (body, crc) = index.split_at(index.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
            return Err(corrupt("index checksum mismatch"));
        }
        let mut r = Reader {
            p: body,
            pos: INDEX_MAGIC.len(),
        };
        let n_symbols = r.uvarint().ok_or_else(|| corrupt("bad symbol table"))? as usize;
        let mut symbols: Vec<Box<str>> = Vec::with_capacity(n_symbols.min(1 << 20));
        for _ in 0..n_symbols {
            let sym = r.string().ok_or_else(|| corrupt("bad symbol"))?;
            symbols.push(sym.into_boxed_str());
        }
        // The meta file has no checksum: its count is a hint, capped.
        let mut series = Vec::with_capacity((meta.num_series as usize).min(1 << 20));
        let mut postings: HashMap<String, BTreeMap<String, Vec<u64>>> = HashMap::new();
        while r.pos < body.len() {
            let s =
                read_series(&mut r, symbols.len()).ok_or_else(|| corrupt("bad series entry"))?;
            let id = series.len() as u64;
            for pair in s.label_ids.chunks_exact(2) {
                let (name, value) = (&symbols[pair[0] as usize], &symbols[pair[1] as usize]);
                let values = match postings.get_mut(&**name) {
                    Some(v) => v,
                    None => postings.entry(name.to_string()).or_default(),
                };
                match values.get_mut(&**value) {
                    Some(ids) => ids.push(id),
                    None => {
                        values.insert(value.to_string(), vec![id]);
                    }
                }
            }
            series.push(s);
        }
        let chunks = File::open(dir.join("chunks"))?;
        let bytes = fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            bytes,
            sources,
            symbols,
            series,
            postings,
            chunks,
        })
    }

    fn pairs<'a>(&'a self, s: &'a BlockSeries) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        s.label_ids.chunks_exact(2).map(|p| {
            let sym = |id: u32| self.symbols.get(id as usize).map_or("", |x| &**x);
            (sym(p[0]), sym(p[1]))
        })
    }

    fn labels_of(&self, s: &BlockSeries) -> Labels {
        Labels::from_pairs(self.pairs(s))
    }

    fn matches(&self, s: &BlockSeries, matchers: &[Matcher]) -> bool {
        matchers.iter().all(|m| {
            let value = self
                .pairs(s)
                .find(|(n, _)| *n == m.name)
                .map_or("", |(_, v)| v);
            m.matches_value(value)
        })
    }

    fn matching_ids(&self, matchers: &[Matcher]) -> Vec<u64> {
        select_postings(&self.postings, matchers, || {
            (0..self.series.len() as u64).collect()
        })
        .into_iter()
        .filter(|&id| {
            self.series
                .get(id as usize)
                .is_some_and(|s| self.matches(s, matchers))
        })
        .collect()
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>> {
        let mut out = Vec::new();
        for id in self.matching_ids(matchers) {
            let s = &self.series[id as usize];
            let samples = self.read_samples(s, mint, maxt)?;
            if !samples.is_empty() {
                out.push((self.labels_of(s), samples));
            }
        }
        Ok(out)
    }

    /// Label sets of series matching `matchers` (no sample reads).
    pub fn series_labels(&self, matchers: &[Matcher]) -> Vec<Labels> {
        self.matching_ids(matchers)
            .into_iter()
            .map(|id| self.labels_of(&self.series[id as usize]))
            .collect()
    }

    fn read_samples(&self, s: &BlockSeries, mint: i64, maxt: i64) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for c in s
            .chunks
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
        {
            let mut buf = vec![0u8; c.len as usize + 4];
            self.chunks.read_exact_at(&mut buf, c.offset)?;
            let (bytes, crc) = buf.split_at(c.len as usize);
            if crc32fast::hash(bytes) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
                return Err(Error::Corrupt(format!(
                    "block {}: chunk at offset {} fails its checksum",
                    self.dir.display(),
                    c.offset
                )));
            }
            out.extend(
                encoding::decode(bytes)
                    .into_iter()
                    .filter(|x| x.t >= mint && x.t <= maxt),
            );
        }
        Ok(out)
    }

    /// Every series' labels, in block order (the order `samples_of` takes).
    pub fn all_labels(&self) -> Vec<Labels> {
        self.series.iter().map(|s| self.labels_of(s)).collect()
    }

    /// All samples of the series at position `i`, for compaction.
    pub fn samples_of(&self, i: usize) -> Result<Vec<Sample>> {
        match self.series.get(i) {
            Some(s) => self.read_samples(s, i64::MIN, i64::MAX),
            None => Ok(Vec::new()),
        }
    }
}

fn read_series(r: &mut Reader<'_>, n_symbols: usize) -> Option<BlockSeries> {
    let n = r.uvarint()? as usize;
    let mut label_ids = Vec::with_capacity(n.min(256) * 2);
    for _ in 0..n * 2 {
        let id = u32::try_from(r.uvarint()?).ok()?;
        if id as usize >= n_symbols {
            return None;
        }
        label_ids.push(id);
    }
    let nc = r.uvarint()? as usize;
    let mut chunks = Vec::with_capacity(nc.min(1 << 16));
    for _ in 0..nc {
        let min_t = unzigzag(r.uvarint()?);
        let span = r.uvarint()? as i64;
        chunks.push(ChunkRef {
            min_t,
            max_t: min_t.wrapping_add(span),
            offset: r.uvarint()?,
            len: u32::try_from(r.uvarint()?).ok()?,
        });
    }
    Some(BlockSeries {
        label_ids: label_ids.into_boxed_slice(),
        chunks: chunks.into_boxed_slice(),
    })
}

fn parse_meta(text: &str) -> Option<(BlockMeta, Vec<String>)> {
    let mut kv = HashMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        kv.insert(k.trim(), v.trim());
    }
    let sources = kv
        .get("sources")
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let meta = BlockMeta {
        min_t: kv.get("min_t")?.parse().ok()?,
        max_t: kv.get("max_t")?.parse().ok()?,
        num_series: kv.get("num_series")?.parse().ok()?,
        num_samples: kv.get("num_samples")?.parse().ok()?,
        level: kv.get("level")?.parse().ok()?,
    };
    Some((meta, sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_roundtrips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(dir.path(), 0, 1_000_000, 1, Vec::new()).unwrap();
        let a = Labels::from_pairs([("__name__", "cpu"), ("host", "a")]);
        let b = Labels::from_pairs([("__name__", "cpu"), ("host", "b")]);
        let samples: Vec<Sample> = (0..500)
            .map(|i| Sample {
                t: i * 1000,
                v: i as f64 / 3.0,
            })
            .collect();
        w.add_series(&a, &samples).unwrap();
        w.add_series(&b, &samples[..10]).unwrap();
        let block = w.finish().unwrap().unwrap();
        assert_eq!(block.meta.num_samples, 510);
        let got = block
            .select(&[Matcher::equal("host", "a")], 100_000, 199_000)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, samples[100..200].to_vec());
        let reopened = Block::open(&block.dir).unwrap();
        assert_eq!(
            reopened
                .select(&[Matcher::equal("__name__", "cpu")], 0, 5000)
                .unwrap()
                .len(),
            2
        );

        let chunks = block.dir.join("chunks");
        let mut data = fs::read(&chunks).unwrap();
        data[10] ^= 0xff;
        fs::write(&chunks, data).unwrap();
        let err = Block::open(&block.dir)
            .unwrap()
            .select(&[Matcher::equal("host", "a")], 0, 1000)
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
