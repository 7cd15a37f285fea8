//! Sonde's SDK: instrument a Rust program with metrics, spans, logs and
//! events, exported over OTLP/HTTP (protobuf, gzip) to Sonde or any OTLP
//! backend, never blocking or panicking in the caller.
//!
//! Collection (trace sampling ratio, metric export interval, minimum log
//! severity) follows the server's runtime policies (`policy`).

pub mod attributes;
pub mod export;
pub mod http;
#[cfg(feature = "tracing")]
pub mod layer;
pub mod logs;
pub mod metrics;
pub mod policy;
pub mod propagation;
#[cfg(feature = "metrics")]
pub mod recorder;
pub mod sampling;
pub mod sdk;
pub mod trace;

pub use sdk::{init, Config, Sdk};
