//! PromQL evaluation. The engine is ours; parsing is `promql-parser`'s.
//!
//! The engine reads data only through [`Queryable`], which the server
//! implements on top of `sonde-store`; this crate never knows how or where
//! samples are stored.
//!
//! Semantics follow Prometheus 3 (including delayed `__name__` removal);
//! native histograms (exponential and custom buckets) and classic `le`
//! buckets are both supported.

mod aggregate;
mod binary;
mod engine;
mod functions;
mod histogram;
mod native;
mod over_time;
mod selectors;
mod utf8;
mod value;
mod window;

#[cfg(test)]
mod engine_tests;

pub use engine::{parse_selector, Engine, EngineOptions};
pub use selectors::extract_selectors;
pub use value::{format_value, Error, InstantSample, Result, Value};

use sonde_model::{Labels, Matcher, Series, TimestampMs};

/// What the engine needs from storage.
pub trait Queryable: Send + Sync {
    /// Every series matching all `matchers` that has at least one sample in
    /// `[mint, maxt]` (both inclusive), with just those samples, sorted by
    /// time: floats in `samples`, native histograms in `histograms`. Stale
    /// markers are returned as stored (see `sonde_model::is_stale_nan`; a
    /// stale histogram has a stale-NaN `sum`).
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> std::result::Result<Vec<Series>, String>;
}

/// A series label set with no samples, for the metadata APIs.
pub type SeriesLabels = Labels;
