//! One call to set everything up: [`init`] builds the sink (OTLP/HTTP,
//! Kafka or MQTT, by [`Config::endpoint`] or [`Config::export`]), the
//! tracer, logger and meter providers over it, and the policy watcher (over
//! Server-Sent Events or MQTT) that retunes them at run time.
//!
//! A policy field set by the server overrides the configured value; a
//! field the server leaves `null` (or a policy that goes away) brings the
//! configured value back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attributes::KeyValue;
use crate::export::{Export, FailedSink, Sink};
use crate::logs::{LogConfig, Logger, LoggerProvider};
use crate::metrics::{Meter, MeterProvider};
use crate::policy::{ClientIdentity, EffectivePolicy, Health, PolicySource, PolicySubscription};
use crate::trace::{host_name, new_span_id, Resource, TraceConfig, Tracer, TracerProvider};

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `service.name`.
    pub service_name: String,
    /// Where telemetry goes, as a URL: an OTLP/HTTP endpoint
    /// (`http://host:4318`; `/v1/traces` etc. are appended),
    /// `kafka://host:port[,host:port]` or `mqtt://host:port`, with the
    /// query parameters of [`Export::from_url`]. Unused when `export` is
    /// set.
    pub endpoint: String,
    /// The exporter with every setting; overrides `endpoint`.
    pub export: Option<Export>,
    /// Where collection policies come from, as a URL: Sonde's API
    /// (`http://host:7070`, Server-Sent Events) or `mqtt://host:port`
    /// (retained messages, see [`PolicySource::from_url`]); `None` disables
    /// them. Unused when `policies` is set.
    pub api: Option<String>,
    /// The policy source with every setting; overrides `api`.
    pub policies: Option<PolicySource>,
    /// More resource attributes (`service.version`, `deployment.environment`,
    /// a `host.name` other than the system's, ...).
    pub resource: Vec<KeyValue>,
    /// Head sampling ratio of new root traces unless a policy sets one.
    pub trace_sampling_ratio: f64,
    /// Metric export interval unless a policy sets one.
    pub metric_interval: Duration,
    /// Minimum log severity unless a policy sets one (0: all).
    pub min_log_severity: u8,
    /// The id this process reports to the server; `service-<random>` if
    /// `None`.
    pub client_id: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            service_name: "unknown_service".to_string(),
            endpoint: "http://127.0.0.1:4318".to_string(),
            export: None,
            api: Some("http://127.0.0.1:7070".to_string()),
            policies: None,
            resource: Vec::new(),
            trace_sampling_ratio: 1.0,
            metric_interval: crate::metrics::DEFAULT_INTERVAL,
            min_log_severity: 0,
            client_id: None,
        }
    }
}

/// The configured values a policy falls back to.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    ratio: f64,
    interval: Duration,
    min_severity: u8,
}

/// The providers and the sink they export through.
pub struct Sdk {
    traces: TracerProvider,
    logs: LoggerProvider,
    metrics: MeterProvider,
    sink: Arc<dyn Sink>,
    watcher: Option<PolicySubscription>,
    /// Why the policy source in the configuration is not followed.
    setup_error: Option<String>,
    shut_down: bool,
}

/// How long dropping an [`Sdk`] that was not shut down waits for the last
/// export.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the sink, the three providers and (when `api` or `policies` is
/// set) the policy watcher. Never fails: an exporter that cannot be set up
/// (a bad URL, a transport this build lacks) drops every batch and says
/// why in [`Sdk::health`], as does a policy source that cannot be.
pub fn init(config: Config) -> Sdk {
    let resource = Resource::new(config.service_name.clone(), config.resource.clone());
    let client_id = config.client_id.clone().unwrap_or_else(|| {
        let r = u64::from_be_bytes(new_span_id());
        format!("{}-{:08x}", config.service_name, r as u32)
    });
    let export = match config.export.clone() {
        Some(export) => Ok(export),
        None => Export::from_url(&config.endpoint),
    };
    let sink: Arc<dyn Sink> = match export {
        Ok(export) => export.for_client(&client_id, &config.service_name).start(),
        Err(e) => FailedSink::new(e.to_string()),
    };
    let dyn_sink = Arc::clone(&sink);
    let traces = TracerProvider::new(
        Arc::clone(&dyn_sink),
        TraceConfig {
            resource: resource.clone(),
            sampling_ratio: config.trace_sampling_ratio,
            ..TraceConfig::default()
        },
    );
    let logs = LoggerProvider::new(
        Arc::clone(&dyn_sink),
        LogConfig {
            resource: resource.clone(),
            min_severity: config.min_log_severity,
            ..LogConfig::default()
        },
    );
    let metrics = MeterProvider::builder()
        .with_resource(resource.attributes.clone())
        .with_sink(Arc::clone(&dyn_sink))
        .with_interval(config.metric_interval)
        .build();
    let defaults = Defaults {
        ratio: config.trace_sampling_ratio,
        interval: config.metric_interval,
        min_severity: config.min_log_severity,
    };
    let source = match (&config.policies, &config.api) {
        (Some(source), _) => Some(Ok(source.clone())),
        (None, Some(api)) => Some(PolicySource::from_url(api)),
        (None, None) => None,
    };
    let setup_error = match &source {
        Some(Err(e)) => Some(format!("policies not followed: {e}")),
        _ => None,
    };
    let watcher = source.and_then(Result::ok).map(|source| {
        let host = match resource.get("host.name") {
            Some(h) => h.as_str().into_owned(),
            None => host_name(),
        };
        let identity = ClientIdentity {
            client_id: client_id.clone(),
            kind: "sdk".to_string(),
            service: config.service_name.clone(),
            host,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let (t, l, m) = (traces.clone(), logs.clone(), metrics.clone());
        let health_sink = sink.clone();
        let (t2, l2) = (traces.clone(), logs.clone());
        PolicySubscription::start(
            &source,
            identity,
            Box::new(move |p| apply_policy(p, defaults, &t, &l, &m)),
            Box::new(move || health(&*health_sink, &t2, &l2)),
        )
    });
    Sdk {
        traces,
        logs,
        metrics,
        sink,
        watcher,
        setup_error,
        shut_down: false,
    }
}

/// Applies a policy: each field it sets, else the configured default.
fn apply_policy(
    p: &EffectivePolicy,
    d: Defaults,
    traces: &TracerProvider,
    logs: &LoggerProvider,
    metrics: &MeterProvider,
) {
    traces.set_sampling_ratio(p.trace_sampling_ratio.unwrap_or(d.ratio));
    logs.set_min_severity(p.min_log_severity.unwrap_or(d.min_severity));
    let interval = p
        .metric_interval_ms
        .map_or(d.interval, Duration::from_millis);
    if metrics.interval() != interval {
        metrics.set_interval(interval);
    }
}

/// The SDK's health for status reports: the sink's counters, plus the
/// spans and records the processors dropped (counted as batches of one).
fn health(sink: &dyn Sink, traces: &TracerProvider, logs: &LoggerProvider) -> Health {
    let s = sink.stats();
    let dropped_items = traces.stats().dropped + logs.stats().dropped;
    Health {
        healthy: s.last_error.is_none() && s.dropped_batches == 0 && dropped_items == 0,
        exported_batches: s.sent_batches,
        dropped_batches: s.dropped_batches + dropped_items,
        last_error: s.last_error,
    }
}

impl Sdk {
    /// A tracer for the instrumentation scope `name`.
    pub fn tracer(&self, name: &str) -> Tracer {
        self.traces.tracer(name)
    }

    /// A logger for the instrumentation scope `name`.
    pub fn logger(&self, name: &str) -> Logger {
        self.logs.logger(name)
    }

    pub fn meter(&self) -> Meter {
        self.metrics.meter()
    }

    pub fn tracer_provider(&self) -> &TracerProvider {
        &self.traces
    }

    pub fn logger_provider(&self) -> &LoggerProvider {
        &self.logs
    }

    pub fn meter_provider(&self) -> &MeterProvider {
        &self.metrics
    }

    /// A `tracing` layer over this SDK's tracer and logger providers.
    #[cfg(feature = "tracing")]
    pub fn layer(&self) -> crate::layer::SondeLayer {
        crate::layer::SondeLayer::new(&self.traces, &self.logs)
    }

    /// The policy in force, if the server sent one.
    pub fn policy(&self) -> Option<EffectivePolicy> {
        self.watcher.as_ref().and_then(PolicySubscription::current)
    }

    /// What the status reports say: the sink's counters, with the spans and
    /// records the processors dropped counted as dropped batches of one;
    /// and a policy source that could not be set up.
    pub fn health(&self) -> Health {
        let mut h = health(&*self.sink, &self.traces, &self.logs);
        if let (None, Some(e)) = (&h.last_error, &self.setup_error) {
            h.healthy = false;
            h.last_error = Some(e.clone());
        }
        h
    }

    /// Stops following policies, exports everything still held and waits,
    /// at most `timeout` in all, for it to be sent. True if all was sent.
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        self.shutdown_now(timeout)
    }

    fn shutdown_now(&mut self, timeout: Duration) -> bool {
        self.shut_down = true;
        if let Some(mut w) = self.watcher.take() {
            w.stop();
        }
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let t = self.traces.shutdown(left());
        let l = self.logs.shutdown(left());
        let m = self.metrics.shutdown(left());
        t && l && m && self.sink.flush(left())
    }
}

impl Drop for Sdk {
    /// Shuts down (waiting at most 5 s) unless [`Sdk::shutdown`] did.
    fn drop(&mut self) {
        if !self.shut_down {
            self.shutdown_now(DROP_TIMEOUT);
        }
    }
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk")
            .field("traces", &self.traces)
            .field("logs", &self.logs)
            .field("policy", &self.policy())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
