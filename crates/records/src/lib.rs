//! Spans, log records and events: accepted into a write-ahead log, kept
//! queryable in memory while recent, then written as Apache Parquet segments
//! that other tools (DuckDB, pandas, Spark) can read as they are.

mod buffer;
mod catalog;
mod codec;
mod dedup;
mod query;
pub mod segment;
mod store;
#[cfg(test)]
mod store_tests;
mod wal;

pub use catalog::{Catalog, Seen};
pub use query::{Cursor, EventFilter, LogPage, LogQuery, TraceQuery, TraceSummary};
pub use store::{Config, RecordStore, Stats, DEFAULT_DEDUP_WINDOW};

/// Everything that can go wrong in the record store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("parquet error in {path}: {source}")]
    Parquet {
        path: std::path::PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("corrupt segment {path}: {reason}")]
    Corrupt {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "the span and log buffers are full while earlier data is still being written; retry later"
    )]
    Overloaded,
    #[error("the WAL failed earlier and refuses writes until restart: {0}")]
    WalPoisoned(String),
}

pub type Result<T> = std::result::Result<T, Error>;
