//! Maintenance: moving old head data into blocks, truncating the WAL behind
//! them, merging blocks, and retention. Runs under `Store::maintenance`, so
//! at most one of these at a time.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sonde_model::Labels;

use crate::block::{Block, BlockWriter};
use crate::head;
use crate::{Result, Store};

impl Store {
    /// Periodic upkeep: persists old head data as blocks, truncates the WAL,
    /// merges blocks and applies retention.
    /// Does the head span enough time that [`Store::maintain`] would cut a
    /// block? Cheap: callers may ask every second.
    pub fn needs_maintenance(&self) -> bool {
        let min = self
            .seen_min
            .load(Ordering::Relaxed)
            .max(self.head.min_valid_t());
        let max = self.seen_max.load(Ordering::Relaxed);
        let range = self.opts.block_range_ms;
        max > min && max.saturating_sub(min) > range + range / 2
    }

    pub fn maintain(&self) -> Result<()> {
        let _guard = self.maintenance.lock();
        let range = self.opts.block_range_ms;
        let mut cut = false;
        let mut head_min = i64::MAX;
        while let Some((min, max)) = self.head.time_range() {
            head_min = min;
            // Keep half a block of recent data in the head so out-of-order
            // samples still have somewhere to land.
            if max.saturating_sub(min) <= range + range / 2 {
                break;
            }
            let start = min.div_euclid(range) * range;
            self.cut_block(start, start + range)?;
            cut = true;
        }
        if cut {
            self.after_cut()?;
        } else {
            self.truncate_wal_if_due(false)?;
        }
        // What the head now spans; appends racing with this only lower it.
        let _ = self
            .seen_min
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(m.max(head_min))
            });
        self.compact()?;
        self.apply_retention()?;
        Ok(())
    }

    /// Persists the whole head as blocks (used on demand, e.g. before
    /// measuring disk usage). Samples older than the head's newest sample can
    /// no longer be written afterwards.
    pub fn flush_head(&self) -> Result<()> {
        let _guard = self.maintenance.lock();
        let range = self.opts.block_range_ms;
        let Some((min, max)) = self.head.time_range() else {
            return Ok(());
        };
        let mut start = min.div_euclid(range) * range;
        while start <= max {
            let end = (start + range).min(max + 1);
            self.cut_block(start, end)?;
            start += range;
        }
        self.after_cut()?;
        self.truncate_wal_if_due(true)?;
        self.compact()
    }

    fn after_cut(&self) -> Result<()> {
        self.head.gc_empty();
        *self.truncate_pending.lock() = true;
        self.truncate_wal_if_due(false)
    }

    /// Truncation rewrites the head's samples into a checkpoint, so during a
    /// burst of cuts (a backfill) it runs at most once a minute; the WAL
    /// only grows meanwhile.
    fn truncate_wal_if_due(&self, force: bool) -> Result<()> {
        let mut pending = self.truncate_pending.lock();
        let mut last = self.last_truncate.lock();
        let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60));
        if !*pending || !(due || force) {
            return Ok(());
        }
        let min_valid = self.head.min_valid_t();
        let head = &self.head;
        self.wal.truncate(
            &|r| head.contains_ref(r),
            min_valid,
            self.exemplars.capacity(),
        )?;
        *pending = false;
        *last = Some(std::time::Instant::now());
        Ok(())
    }

    fn cut_block(&self, start: i64, end: i64) -> Result<()> {
        self.head.set_min_valid_t(end);
        let mut series: Vec<(Labels, Arc<head::MemSeries>)> = self
            .head
            .all_series()
            .into_iter()
            .map(|s| (s.labels.to_labels(), s))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut w = BlockWriter::create(&self.dir.join("blocks"), start, end, 1, Vec::new())?;
        for (labels, s) in &series {
            let samples = s.data.lock().samples(start, end - 1);
            w.add_series(labels, &samples)?;
        }
        if let Some(block) = w.finish()? {
            self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
            let mut blocks = self.blocks.write();
            blocks.push(Arc::new(block));
            blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
        }
        // The block is durable and the head and WAL still hold its data.
        crate::crash_point("block-cut");
        for (_, s) in &series {
            s.data.lock().split_off_before(end);
        }
        Ok(())
    }

    /// Merges blocks that fall into one aligned range of the next level
    /// (3 and then 12 head blocks), once that range is complete.
    fn compact(&self) -> Result<()> {
        let base = self.opts.block_range_ms;
        for factor in [3i64, 12] {
            let span = base * factor;
            let min_valid = self.head.min_valid_t();
            let blocks: Vec<Arc<Block>> = self.blocks.read().clone();
            let mut groups: HashMap<i64, Vec<Arc<Block>>> = HashMap::new();
            for b in blocks {
                let start = b.meta.min_t.div_euclid(span) * span;
                if b.meta.max_t <= start + span && b.meta.max_t - b.meta.min_t < span {
                    groups.entry(start).or_default().push(b);
                }
            }
            for (start, group) in groups {
                let complete = min_valid >= start + span;
                if group.len() < 2 || !complete {
                    continue;
                }
                self.merge(&group, start, start + span)?;
            }
        }
        Ok(())
    }

    fn merge(&self, group: &[Arc<Block>], start: i64, end: i64) -> Result<()> {
        let level = group.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
        let labels_per_block: Vec<Vec<Labels>> = group.iter().map(|b| b.all_labels()).collect();
        let mut all_labels: BTreeSet<&Labels> = BTreeSet::new();
        let indexes: Vec<HashMap<&Labels, usize>> = labels_per_block
            .iter()
            .map(|labels| {
                all_labels.extend(labels.iter());
                labels.iter().enumerate().map(|(i, l)| (l, i)).collect()
            })
            .collect();
        let sources = group.iter().map(|b| b.name()).collect();
        let mut w = BlockWriter::create(&self.dir.join("blocks"), start, end, level, sources)?;
        for labels in all_labels {
            let mut samples = Vec::new();
            for (b, idx) in group.iter().zip(&indexes) {
                if let Some(&i) = idx.get(labels) {
                    samples.extend(b.samples_of(i)?);
                }
            }
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
            w.add_series(labels, &samples)?;
        }
        let merged = w.finish()?;
        let mut blocks = self.blocks.write();
        blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
        if let Some(m) = merged {
            blocks.push(Arc::new(m));
        }
        blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
        drop(blocks);
        for b in group {
            fs::remove_dir_all(&b.dir)?;
        }
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn apply_retention(&self) -> Result<()> {
        let now = self.clock.now_ms();
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let blocks = self.blocks.read();
            if self.opts.retention_ms > 0 {
                let cutoff = now - self.opts.retention_ms;
                doomed.extend(blocks.iter().filter(|b| b.meta.max_t <= cutoff).cloned());
            }
            if self.opts.retention_bytes > 0 {
                let mut total: u64 =
                    blocks.iter().map(|b| b.bytes).sum::<u64>() + self.wal.size_bytes();
                for b in blocks.iter() {
                    if total <= self.opts.retention_bytes {
                        break;
                    }
                    if !doomed.iter().any(|d| Arc::ptr_eq(d, b)) {
                        doomed.push(b.clone());
                    }
                    total = total.saturating_sub(b.bytes);
                }
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.blocks
            .write()
            .retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(b, d)));
        for b in doomed {
            tracing::info!(block = %b.dir.display(), "deleting block past retention");
            fs::remove_dir_all(&b.dir)?;
        }
        Ok(())
    }
}

/// A crash between writing a merged block and deleting its sources leaves
/// both; the merged block, which names its sources, wins.
pub(crate) fn drop_overlapped_sources(blocks: &mut Vec<Arc<Block>>) {
    let replaced: std::collections::HashSet<String> = blocks
        .iter()
        .flat_map(|b| b.sources.iter().cloned())
        .collect();
    blocks.retain(|b| {
        let gone = replaced.contains(&b.name());
        if gone {
            let _ = fs::remove_dir_all(&b.dir);
        }
        !gone
    });
}
