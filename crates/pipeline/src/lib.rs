//! Stream processing after the WAL.
//!
//! Every analysis that runs on arriving data is a [`Processor`]: it is
//! shown spans, log records and samples once each, after the store made
//! them durable and dropped re-deliveries, and at each [`tick`] it emits
//! what it derived (series, events) into a [`Sink`]. A processor's state is
//! bounded (a cap on its keys, idle expiry) and its output is stamped with
//! the data's own time, through the event-time [`window::Windows`], so late
//! or replayed data lands in its own time window.
//!
//! This crate knows nothing of the store, HTTP or the transports: the
//! server feeds it and implements the sink.
//!
//! [`tick`]: Processor::tick

use parking_lot::Mutex;
use sonde_model::records::{LogRecord, SpanRecord};
use sonde_model::Series;

pub mod critical_path;
pub mod histogram;
pub mod names;
pub mod servicegraph;
pub mod spanmetrics;
pub mod window;

/// Where processors put what they derive. The server's sink appends series
/// to the time-series store and events to the record store.
pub trait Sink {
    fn series(&mut self, series: Vec<Series>);
    fn event(&mut self, event: LogRecord);
}

/// The signals a processor reads; the pipeline skips the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    pub spans: bool,
    pub logs: bool,
    pub samples: bool,
}

/// What a processor holds, for `/metrics` and the bounds' tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Keys (series, pending halves, sessions...) held now.
    pub entries: usize,
    /// The most it will ever hold.
    pub cap: usize,
}

/// One stream processor. Calls come with the wall-clock time in
/// milliseconds, so tests drive time and processors never read a clock.
pub trait Processor: Send {
    fn name(&self) -> &'static str;
    fn signals(&self) -> Signals;
    fn on_spans(&mut self, _spans: &[SpanRecord], _now_ms: i64) {}
    fn on_logs(&mut self, _logs: &[LogRecord], _now_ms: i64) {}
    fn on_samples(&mut self, _series: &[Series], _now_ms: i64) {}
    /// Emits what is complete (closed windows, expired keys' stale markers).
    fn tick(&mut self, now_ms: i64, sink: &mut dyn Sink);
    fn state(&self) -> StateSize;
}

/// The processors, each behind its own lock: a slow one delays only itself.
pub struct Pipeline {
    processors: Vec<(Signals, Mutex<Box<dyn Processor>>)>,
}

/// Settings shared by the built-in processors.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long after a window's end data for it is still awaited, in event
    /// time; later data is counted in the oldest open window.
    pub lateness_ms: i64,
    /// Keys not updated for this long (event time) are dropped.
    pub idle_ms: i64,
    /// A trace is final once none of its spans arrived for this long.
    pub trace_quiet_ms: i64,
    /// Traces held open at once for the critical path; past it, the one
    /// quiet the longest is finalised early.
    pub max_open_traces: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lateness_ms: 2_000,
            idle_ms: 15 * 60_000,
            trace_quiet_ms: 5_000,
            max_open_traces: 50_000,
        }
    }
}

impl Pipeline {
    pub fn new(processors: Vec<Box<dyn Processor>>) -> Pipeline {
        Pipeline {
            processors: processors
                .into_iter()
                .map(|p| (p.signals(), Mutex::new(p)))
                .collect(),
        }
    }

    /// The processors every server runs: RED metrics, the service graph
    /// and the critical path.
    pub fn standard(opts: &Options) -> Pipeline {
        Pipeline::new(vec![
            Box::new(spanmetrics::SpanMetrics::new(opts)),
            Box::new(servicegraph::ServiceGraph::new(opts)),
            Box::new(critical_path::CriticalPath::new(opts)),
        ])
    }

    pub fn on_spans(&self, spans: &[SpanRecord], now_ms: i64) {
        if spans.is_empty() {
            return;
        }
        for (signals, p) in &self.processors {
            if signals.spans {
                p.lock().on_spans(spans, now_ms);
            }
        }
    }

    pub fn on_logs(&self, logs: &[LogRecord], now_ms: i64) {
        if logs.is_empty() {
            return;
        }
        for (signals, p) in &self.processors {
            if signals.logs {
                p.lock().on_logs(logs, now_ms);
            }
        }
    }

    pub fn wants_samples(&self) -> bool {
        self.processors.iter().any(|(s, _)| s.samples)
    }

    pub fn on_samples(&self, series: &[Series], now_ms: i64) {
        for (signals, p) in &self.processors {
            if signals.samples {
                p.lock().on_samples(series, now_ms);
            }
        }
    }

    pub fn tick(&self, now_ms: i64, sink: &mut dyn Sink) {
        for (_, p) in &self.processors {
            p.lock().tick(now_ms, sink);
        }
    }

    /// Each processor's name and state size.
    pub fn states(&self) -> Vec<(&'static str, StateSize)> {
        self.processors
            .iter()
            .map(|(_, p)| {
                let p = p.lock();
                (p.name(), p.state())
            })
            .collect()
    }
}

/// How many spans a span stands for: the inverse of its sampling
/// probability, from OpenTelemetry's consistent threshold (`ot=th:` in
/// W3C `tracestate`) or a `sampling.probability` attribute; 1 without.
/// Every count the pipeline derives is weighted by it, so counts estimate
/// the real traffic under head sampling.
pub fn sampling_weight(s: &SpanRecord) -> f64 {
    use sonde_model::records::{attribute, AttrValue};
    let from_threshold = s.trace_state.split(',').find_map(|member| {
        let ot = member.trim().strip_prefix("ot=")?;
        let th = ot.split(';').find_map(|kv| kv.strip_prefix("th:"))?;
        if th.is_empty() || th.len() > 14 {
            return None;
        }
        // The threshold is the rejected share of 2^56, hex with trailing
        // zeros dropped.
        let padded = format!("{th:0<14}");
        let rejected = u64::from_str_radix(&padded, 16).ok()? as f64;
        let p = 1.0 - rejected / (1u64 << 56) as f64;
        (p > 0.0).then(|| 1.0 / p)
    });
    let from_attribute = || match attribute(&s.attributes, "sampling.probability") {
        Some(AttrValue::Double(p)) if *p > 0.0 && *p <= 1.0 => Some(1.0 / p),
        _ => None,
    };
    from_threshold.or_else(from_attribute).unwrap_or(1.0)
}

/// A span's end in milliseconds: the event time of what it measured.
pub fn end_ms(s: &SpanRecord) -> i64 {
    s.end_ns.div_euclid(1_000_000)
}

/// A sink that keeps everything, for tests and tools.
#[derive(Default)]
pub struct Collect {
    pub series: Vec<Series>,
    pub events: Vec<LogRecord>,
}

impl Sink for Collect {
    fn series(&mut self, mut series: Vec<Series>) {
        self.series.append(&mut series);
    }

    fn event(&mut self, event: LogRecord) {
        self.events.push(event);
    }
}

impl Collect {
    /// The samples (t, v) of the series named `name` whose labels include
    /// `labels`, in time order.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(i64, f64)> {
        let mut out: Vec<(i64, f64)> = self
            .series
            .iter()
            .filter(|s| {
                s.labels.get(sonde_model::METRIC_NAME) == Some(name)
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .flat_map(|s| s.samples.iter().map(|x| (x.t, x.v)))
            .collect();
        out.sort_by_key(|x| x.0);
        out
    }

    /// The newest value of that series.
    pub fn last(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name, labels).last().map(|x| x.1)
    }
}
