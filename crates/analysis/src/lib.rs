//! `sonde-analysis`: streaming analysis of series.
//!
//! [`Detector`] is the online anomaly detector run on every key series: fed
//! one point at a time, it returns an [`Assessment`] (a score in [0, 1],
//! the expected range and the observed value, and a sentence for people)
//! using only the points seen so far, in well under a microsecond and a
//! kilobyte of state per series. [`nab`] runs it over the Numenta Anomaly
//! Benchmark, the labelled data its quality is measured on.
//!
//! This crate knows nothing of storage, HTTP or PromQL: callers feed it
//! `(time, value)` pairs and decide what to do with the verdicts.

mod detector;
pub mod nab;
mod seasonal;
mod stats;

use std::path::{Path, PathBuf};

pub use detector::{Assessment, Basis, Detector, DetectorConfig};

/// Errors of this crate (the NAB pipeline's I/O and parsing).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("no <folder>/<name>.csv files under {0}: pass NAB's data folder (the one holding realKnownCause/)")]
    NoSeries(PathBuf),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
