//! The Sonde server: listeners (API, OTLP/HTTP, OTLP/gRPC), brokers,
//! request handling, rules, the pipeline's wiring and ordered shutdown.
//! The `sonde` command (`crates/cli`) runs it with `serve` and `demo`.

mod alerting_api;
mod api;
mod app;
mod body;
mod brokers;
pub mod config;
mod graph_api;
mod grpc;
mod jaeger;
mod policies;
mod policies_api;
mod records_api;
mod rules_runner;
mod self_metrics;
mod stream_api;
mod tail;
mod tasks;
mod ui;
mod write;
mod write_records;

pub use api::parse_time;
pub use app::{serve, serve_with, Companion};
pub use config::Config;
