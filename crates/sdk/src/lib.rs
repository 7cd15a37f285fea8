//! Sonde's SDK: instrument a Rust program with metrics, spans, logs and
//! events, exported over OTLP/HTTP (protobuf, gzip) to Sonde or any OTLP
//! backend, never blocking or panicking in the caller.
//!
//! The export transport is chosen by configuration ([`export::Export`]):
//! OTLP/HTTP by default, or, with the `kafka` and `mqtt` features, a Kafka
//! producer (the OpenTelemetry Collector's Kafka exporter topics and
//! protobuf payloads) or an MQTT client (`otlp/metrics`, `otlp/traces`,
//! `otlp/logs`). Every transport queues batches in a bounded queue that
//! drops the oldest batch when full and counts it, and reconnects with
//! exponential backoff and jitter.
//!
//! Collection (trace sampling ratio, metric export interval, minimum log
//! severity) follows the server's runtime policies (`policy`): over
//! Server-Sent Events from Sonde's API, or, with `mqtt`, from retained MQTT
//! messages per scope.

pub mod attributes;
pub mod export;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "tracing")]
pub mod layer;
pub mod logs;
pub mod metrics;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod policy;
pub mod propagation;
mod queue;
#[cfg(feature = "metrics")]
pub mod recorder;
pub mod sampling;
pub mod sdk;
pub mod trace;
mod url;

pub use sdk::{init, Config, Sdk};

/// What setting up an exporter or a policy source can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("{url:?} needs sonde-sdk built with its `{feature}` feature")]
    NotBuilt { url: String, feature: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
