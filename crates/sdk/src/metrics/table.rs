//! The attribute sets of one instrument and their aggregators.
//!
//! Two levels. The canonical sets (sorted, duplicate keys removed) live in a
//! mutex-guarded map that enforces the cardinality limit; it is touched
//! once per new attribute list. In front of it, a fixed open-addressed table
//! of *aliases* maps an attribute list exactly as the caller wrote it (order
//! and string identity included, see `attributes::identity_hash`) to its
//! canonical aggregator. Slots are `OnceLock`s that are filled once and
//! never emptied, so a lookup is a few loads and no writes: readers on
//! different cores share nothing but read-only lines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::attributes::{canonicalize, content_hash, identity_hash, same_list, KeyValue};

/// Default most attribute sets per instrument, the overflow set included.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;
/// The attribute of the set that takes measurements beyond the limit.
pub const OVERFLOW_KEY: &str = "otel.metric.overflow";

const CHUNK: usize = 64;
const CHUNKS: usize = 64;
const SLOTS: usize = CHUNK * CHUNKS;
/// Aliases kept at most, so that probes stay short.
const MAX_ALIASES: usize = SLOTS / 2;
const MAX_PROBE: usize = 32;

struct Alias<A> {
    hash: u64,
    attributes: Box<[KeyValue]>,
    agg: Arc<A>,
}

type Chunk<A> = [OnceLock<Box<Alias<A>>>; CHUNK];

pub(crate) struct Table<A> {
    chunks: [OnceLock<Box<Chunk<A>>>; CHUNKS],
    aliases: AtomicUsize,
    empty: OnceLock<Arc<A>>,
    sets: Mutex<Sets<A>>,
    limit: usize,
    new_agg: Box<dyn Fn() -> A + Send + Sync>,
}

struct Sets<A> {
    /// Content hash of a canonical set to its positions in `list`.
    index: HashMap<u64, Vec<usize>>,
    list: Vec<(Arc<[KeyValue]>, Arc<A>)>,
    regular: usize,
    overflow: Option<Arc<A>>,
}

impl<A> Table<A> {
    pub(crate) fn new(limit: usize, new_agg: Box<dyn Fn() -> A + Send + Sync>) -> Self {
        Table {
            chunks: std::array::from_fn(|_| OnceLock::new()),
            aliases: AtomicUsize::new(0),
            empty: OnceLock::new(),
            sets: Mutex::new(Sets {
                index: HashMap::new(),
                list: Vec::new(),
                regular: 0,
                overflow: None,
            }),
            limit: limit.max(1),
            new_agg,
        }
    }

    /// Calls `f` with the aggregator of `attributes`, creating it if needed.
    /// Inlined into the caller, where attribute lists written as literals
    /// let the compiler fold most of the hashing away.
    #[inline(always)]
    pub(crate) fn with<R>(&self, attributes: &[KeyValue], f: impl FnOnce(&A) -> R) -> R {
        if attributes.is_empty() {
            if let Some(a) = self.empty.get() {
                return f(a);
            }
        } else {
            let h = identity_hash(attributes);
            let mut i = h as usize;
            for _ in 0..MAX_PROBE {
                let Some(alias) = self.slot(i) else { break };
                if alias.hash == h && same_list(&alias.attributes, attributes) {
                    return f(&alias.agg);
                }
                i = i.wrapping_add(1);
            }
        }
        let agg = self.slow(attributes);
        f(&agg)
    }

    /// The aggregator of `attributes`, to keep (bound instruments).
    pub(crate) fn get(&self, attributes: &[KeyValue]) -> Arc<A> {
        self.slow(attributes)
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> Option<&Alias<A>> {
        let i = i % SLOTS;
        let chunk = self.chunks[i / CHUNK].get()?;
        chunk[i % CHUNK].get().map(|b| &**b)
    }

    #[cold]
    #[inline(never)]
    fn slow(&self, attributes: &[KeyValue]) -> Arc<A> {
        let agg = self.resolve(attributes);
        if attributes.is_empty() {
            let _ = self.empty.set(agg.clone());
        } else {
            self.insert_alias(attributes, &agg);
        }
        agg
    }

    fn insert_alias(&self, attributes: &[KeyValue], agg: &Arc<A>) {
        if self.aliases.load(Ordering::Relaxed) >= MAX_ALIASES {
            return;
        }
        let h = identity_hash(attributes);
        let mut pending = Some(Box::new(Alias {
            hash: h,
            attributes: attributes.into(),
            agg: agg.clone(),
        }));
        let mut i = h as usize;
        for _ in 0..MAX_PROBE {
            let at = i % SLOTS;
            let chunk = self.chunks[at / CHUNK]
                .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
            let slot = &chunk[at % CHUNK];
            if slot.get().is_none() {
                let Some(alias) = pending.take() else { return };
                match slot.set(alias) {
                    Ok(()) => {
                        self.aliases.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(alias) => pending = Some(alias),
                }
            }
            if let Some(other) = slot.get() {
                if other.hash == h && same_list(&other.attributes, attributes) {
                    return;
                }
            }
            i = i.wrapping_add(1);
        }
    }

    /// The canonical aggregator of `attributes`, under the limit.
    fn resolve(&self, attributes: &[KeyValue]) -> Arc<A> {
        let canon = canonicalize(attributes);
        let ch = content_hash(&canon);
        let mut sets = self.sets.lock();
        let sets = &mut *sets;
        if let Some(positions) = sets.index.get(&ch) {
            for &p in positions {
                if same_list(&sets.list[p].0, &canon) {
                    return sets.list[p].1.clone();
                }
            }
        }
        if sets.regular + 1 >= self.limit {
            if let Some(o) = &sets.overflow {
                return o.clone();
            }
            let o = Arc::new((self.new_agg)());
            let attrs: Arc<[KeyValue]> = Arc::new([KeyValue::new(OVERFLOW_KEY, true)]);
            sets.list.push((attrs, o.clone()));
            sets.overflow = Some(o.clone());
            return o;
        }
        let agg = Arc::new((self.new_agg)());
        sets.index.entry(ch).or_default().push(sets.list.len());
        sets.list.push((canon.into(), agg.clone()));
        sets.regular += 1;
        agg
    }

    /// Every attribute set with its aggregator, in order of creation.
    pub(crate) fn sets(&self) -> Vec<(Arc<[KeyValue]>, Arc<A>)> {
        self.sets.lock().list.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn table(limit: usize) -> Table<AtomicU64> {
        Table::new(limit, Box::new(|| AtomicU64::new(0)))
    }

    fn add(t: &Table<AtomicU64>, attrs: &[KeyValue]) {
        t.with(attrs, |a| a.fetch_add(1, Ordering::Relaxed));
    }

    #[test]
    fn order_and_ownership_do_not_matter() {
        let t = table(100);
        add(&t, &[KeyValue::new("a", 1i64), KeyValue::new("b", "x")]);
        add(&t, &[KeyValue::new("b", "x"), KeyValue::new("a", 1i64)]);
        add(
            &t,
            &[
                KeyValue::new(String::from("b"), String::from("x")),
                KeyValue::new("a", 1i64),
            ],
        );
        add(
            &t,
            &[
                KeyValue::new("a", 1i64),
                KeyValue::new("b", "x"),
                KeyValue::new("a", 1i64),
            ],
        );
        let sets = t.sets();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].1.load(Ordering::Relaxed), 4);
        assert_eq!(sets[0].0[0].key.as_str(), "a");
    }

    #[test]
    fn overflow_beyond_the_limit() {
        let t = table(3);
        for i in 0..10i64 {
            add(&t, &[KeyValue::new("i", i)]);
            add(&t, &[KeyValue::new("i", i)]);
        }
        let sets = t.sets();
        assert_eq!(sets.len(), 3);
        assert_eq!(sets[2].0[0], KeyValue::new(OVERFLOW_KEY, true));
        assert_eq!(sets[2].1.load(Ordering::Relaxed), 16);
        assert_eq!(sets[0].1.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn many_sets_past_the_alias_table() {
        let t = table(10_000);
        for round in 0..2 {
            for i in 0..(MAX_ALIASES as i64 + 500) {
                add(&t, &[KeyValue::new("i", i)]);
            }
            assert_eq!(t.sets().len(), MAX_ALIASES + 500, "round {round}");
        }
        assert!(t.sets().iter().all(|(_, a)| a.load(Ordering::Relaxed) == 2));
        add(&t, &[]);
        add(&t, &[]);
        assert_eq!(t.get(&[]).load(Ordering::Relaxed), 2);
    }
}
