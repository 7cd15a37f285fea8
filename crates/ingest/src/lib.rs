//! Ingest: turns what arrives on the wire into Sonde's model.
//!
//! Each wire format has its own module (`otlp`, `remote_write`, `influx`,
//! `json_telemetry`, `sparkplug`); all of them produce a [`MetricsBatch`],
//! and `topic` turns MQTT topics into labels. OTLP traces and logs
//! (`otlp_records`) become batches of spans and log records instead. This
//! crate decodes, normalises and validates; it never stores anything: the
//! server hands the batch to the store, and acknowledges only once the store
//! says it is in the WAL.

pub mod influx;
pub mod json_telemetry;
pub mod otlp;
mod otlp_exemplars;
pub mod otlp_records;
pub mod remote_write;
pub mod sparkplug;
pub mod topic;

use sonde_model::{MetricMetadata, Series, SeriesExemplar};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("malformed protobuf: {0}")]
    Protobuf(String),
    #[error("malformed json: {0}")]
    Json(String),
    #[error("malformed snappy compression: {0}")]
    Snappy(String),
    #[error("invalid metric name {0:?}: names must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    #[error("invalid label name {0:?}: names must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName(String),
    #[error("series without a metric name")]
    MissingMetricName,
    #[error("decompressed body would be larger than the limit of {0} bytes; send smaller batches")]
    TooLarge(usize),
    #[error("duplicate label name {0:?} in one series")]
    DuplicateLabel(String),
    #[error("malformed line protocol: {0}")]
    LineProtocol(String),
    #[error("malformed sparkplug message: {0}")]
    Sparkplug(String),
    #[error("invalid mqtt topic template {template:?}: {reason}")]
    InvalidTopicTemplate { template: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decoded metrics, ready for the store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricsBatch {
    pub series: Vec<Series>,
    pub metadata: Vec<MetricMetadata>,
    /// Exemplars with the labels of their series. The store takes them
    /// after the series' samples, which create the series if need be.
    pub exemplars: Vec<SeriesExemplar>,
    /// Data points dropped while decoding (invalid, duplicate deltas).
    pub rejected_points: u64,
    /// Why the first of them was dropped.
    pub first_rejection: Option<String>,
}

impl MetricsBatch {
    pub fn reject(&mut self, why: impl FnOnce() -> String) {
        self.rejected_points += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(why());
        }
    }

    pub fn num_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}
