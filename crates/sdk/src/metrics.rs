//! Metrics: counters, up-down counters, gauges and histograms, aggregated
//! in process (cumulative temporality) and exported as OTLP every interval.
//!
//! ```no_run
//! use sonde_sdk::attributes::KeyValue;
//! use sonde_sdk::http::{HttpSink, HttpSinkConfig};
//! use sonde_sdk::metrics::MeterProvider;
//!
//! let provider = MeterProvider::builder()
//!     .with_service_name("checkout")
//!     .with_sink(HttpSink::new(HttpSinkConfig::default()))
//!     .build();
//! let meter = provider.meter();
//! let requests = meter.u64_counter("http.server.requests").build();
//! requests.add(1, &[KeyValue::new("http.route", "/cart"), KeyValue::new("status", 200)]);
//! // The hot path: attributes resolved once.
//! let ok = requests.bind(&[KeyValue::new("http.route", "/cart"), KeyValue::new("status", 200)]);
//! ok.add(1);
//! ```
//!
//! How a measurement is recorded: the attribute list finds its aggregator
//! through a read-only lookup table (`table`), and the aggregator keeps one
//! cell per thread stripe (`stripe`), summed when collected, so threads
//! recording the same series do not share a cache line. The periodic reader
//! (`reader`) collects, encodes (`encode`) and hands the request to the
//! sink; it is the only thread that ever waits.

mod encode;
mod exponential;
mod histogram;
mod reader;
mod stripe;
mod table;

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use parking_lot::Mutex;

use crate::attributes::KeyValue;
use crate::export::Sink;

pub use exponential::{DEFAULT_MAX_SIZE, MAX_SCALE, MIN_SCALE};
pub use histogram::DEFAULT_BOUNDS;
pub use table::{DEFAULT_CARDINALITY_LIMIT, OVERFLOW_KEY};

use encode::Collect;
use histogram::HistAgg;
use stripe::Sum;
use table::Table;

/// Default time between two exports.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest export interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

mod sealed {
    use super::Sum;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;

    pub trait Sealed: Copy + Send + Sync + 'static {
        fn add_to(self, sum: &Sum);
        fn read(sum: &Sum) -> Value;
        /// Acceptable to a monotonic counter (not negative, not NaN).
        fn monotonic(self) -> bool;
        fn to_bits(self) -> u64;
        fn bits_value(bits: u64) -> Value;
    }

    impl Sealed for u64 {
        #[inline(always)]
        fn add_to(self, sum: &Sum) {
            sum.add_int(self);
        }
        fn read(sum: &Sum) -> Value {
            Value::AsInt(sum.total_int() as i64)
        }
        #[inline(always)]
        fn monotonic(self) -> bool {
            true
        }
        fn to_bits(self) -> u64 {
            self
        }
        fn bits_value(bits: u64) -> Value {
            Value::AsInt(bits as i64)
        }
    }

    impl Sealed for i64 {
        #[inline(always)]
        fn add_to(self, sum: &Sum) {
            sum.add_int(self as u64);
        }
        fn read(sum: &Sum) -> Value {
            Value::AsInt(sum.total_int() as i64)
        }
        #[inline(always)]
        fn monotonic(self) -> bool {
            self >= 0
        }
        fn to_bits(self) -> u64 {
            self as u64
        }
        fn bits_value(bits: u64) -> Value {
            Value::AsInt(bits as i64)
        }
    }

    impl Sealed for f64 {
        #[inline(always)]
        fn add_to(self, sum: &Sum) {
            sum.add_float(self);
        }
        fn read(sum: &Sum) -> Value {
            Value::AsDouble(sum.total_float())
        }
        #[inline(always)]
        fn monotonic(self) -> bool {
            self >= 0.0
        }
        fn to_bits(self) -> u64 {
            self.to_bits()
        }
        fn bits_value(bits: u64) -> Value {
            Value::AsDouble(f64::from_bits(bits))
        }
    }
}

/// The number types instruments take: `u64`, `i64`, `f64`.
pub trait Number: sealed::Sealed {}
impl Number for u64 {}
impl Number for i64 {}
impl Number for f64 {}

/// Name, description and unit of an instrument.
#[derive(Debug, Clone)]
pub(crate) struct Descriptor {
    pub name: String,
    pub description: String,
    pub unit: String,
    pub limit: usize,
    pub start: u64,
}

/// A monotonic cumulative sum.
pub struct Counter<T: Number>(Arc<SumState<T>>);

/// A cumulative sum that may go down.
pub struct UpDownCounter<T: Number>(Arc<SumState<T>>);

/// A counter bound to one attribute set: `add` is a thread-local atomic
/// store.
pub struct BoundCounter<T: Number> {
    sum: Arc<Sum>,
    _t: PhantomData<fn(T)>,
}

/// An up-down counter bound to one attribute set.
pub struct BoundUpDownCounter<T: Number> {
    sum: Arc<Sum>,
    _t: PhantomData<fn(T)>,
}

pub(crate) struct SumState<T> {
    desc: Descriptor,
    monotonic: bool,
    table: Table<Sum>,
    _t: PhantomData<fn(T)>,
}

impl<T: Number> Clone for Counter<T> {
    fn clone(&self) -> Self {
        Counter(self.0.clone())
    }
}

impl<T: Number> Clone for UpDownCounter<T> {
    fn clone(&self) -> Self {
        UpDownCounter(self.0.clone())
    }
}

impl<T: Number> Clone for BoundCounter<T> {
    fn clone(&self) -> Self {
        BoundCounter {
            sum: self.sum.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Number> Counter<T> {
    /// Adds `value` (negative and NaN values are ignored) to the series of
    /// `attributes` (in any order; a repeated key keeps its last value).
    #[inline(always)]
    pub fn add(&self, value: T, attributes: &[KeyValue]) {
        if value.monotonic() {
            self.0.table.with(attributes, |s| value.add_to(s));
        }
    }

    /// The series of `attributes`, resolved once for repeated adds.
    pub fn bind(&self, attributes: &[KeyValue]) -> BoundCounter<T> {
        BoundCounter {
            sum: self.0.table.get(attributes),
            _t: PhantomData,
        }
    }
}

impl<T: Number> BoundCounter<T> {
    #[inline(always)]
    pub fn add(&self, value: T) {
        if value.monotonic() {
            value.add_to(&self.sum);
        }
    }

    /// The series' current total (summed over threads).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn total(&self) -> u64 {
        self.sum.total_int()
    }
}

impl<T: Number> UpDownCounter<T> {
    #[inline]
    pub fn add(&self, value: T, attributes: &[KeyValue]) {
        self.0.table.with(attributes, |s| value.add_to(s));
    }

    pub fn bind(&self, attributes: &[KeyValue]) -> BoundUpDownCounter<T> {
        BoundUpDownCounter {
            sum: self.0.table.get(attributes),
            _t: PhantomData,
        }
    }
}

impl<T: Number> BoundUpDownCounter<T> {
    #[inline(always)]
    pub fn add(&self, value: T) {
        value.add_to(&self.sum);
    }
}

/// The last value recorded, per attribute set.
pub struct Gauge<T: Number>(Arc<GaugeState<T>>);

/// A gauge bound to one attribute set.
pub struct BoundGauge<T: Number> {
    cell: Arc<AtomicU64>,
    _t: PhantomData<fn(T)>,
}

pub(crate) struct GaugeState<T> {
    desc: Descriptor,
    table: Table<AtomicU64>,
    _t: PhantomData<fn(T)>,
}

impl<T: Number> Clone for Gauge<T> {
    fn clone(&self) -> Self {
        Gauge(self.0.clone())
    }
}

impl<T: Number> Gauge<T> {
    #[inline]
    pub fn record(&self, value: T, attributes: &[KeyValue]) {
        self.0
            .table
            .with(attributes, |c| c.store(value.to_bits(), Ordering::Relaxed));
    }

    pub fn bind(&self, attributes: &[KeyValue]) -> BoundGauge<T> {
        BoundGauge {
            cell: self.0.table.get(attributes),
            _t: PhantomData,
        }
    }
}

impl<T: Number> BoundGauge<T> {
    #[inline(always)]
    pub fn record(&self, value: T) {
        self.cell.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl BoundGauge<f64> {
    /// Adds to the gauge's value (for `metrics` crate gauges).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn add(&self, delta: f64) {
        let _ = self
            .cell
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + delta).to_bits())
            });
    }
}

/// A distribution of values: count, sum, min, max and buckets.
pub struct Histogram<T: Number>(Arc<HistState<T>>);

/// A histogram bound to one attribute set.
pub struct BoundHistogram<T: Number> {
    agg: Arc<HistAgg>,
    _t: PhantomData<fn(T)>,
}

pub(crate) struct HistState<T> {
    desc: Descriptor,
    table: Table<HistAgg>,
    _t: PhantomData<fn(T)>,
}

impl<T: Number> Clone for Histogram<T> {
    fn clone(&self) -> Self {
        Histogram(self.0.clone())
    }
}

impl Histogram<f64> {
    /// Records `value` (NaN and infinities are ignored; negative values go
    /// to the negative buckets, or the first explicit bucket).
    #[inline]
    pub fn record(&self, value: f64, attributes: &[KeyValue]) {
        self.0.table.with(attributes, |h| h.record(value));
    }

    pub fn bind(&self, attributes: &[KeyValue]) -> BoundHistogram<f64> {
        BoundHistogram {
            agg: self.0.table.get(attributes),
            _t: PhantomData,
        }
    }
}

impl BoundHistogram<f64> {
    #[inline(always)]
    pub fn record(&self, value: f64) {
        self.agg.record(value);
    }
}

/// Which buckets a histogram has.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Buckets {
    /// Base-2 exponential buckets, at most `max_size` per sign, scale at
    /// most `max_scale` (OTLP ExponentialHistogram).
    Exponential { max_size: usize, max_scale: i32 },
    /// Fixed upper bounds, sorted (OTLP Histogram).
    Explicit(Vec<f64>),
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Exponential {
            max_size: DEFAULT_MAX_SIZE,
            max_scale: MAX_SCALE,
        }
    }
}

/// Configures an instrument before creating it.
pub struct InstrumentBuilder<I> {
    meter: Meter,
    desc: Descriptor,
    buckets: Buckets,
    _i: PhantomData<fn() -> I>,
}

impl<I> InstrumentBuilder<I> {
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.desc.description = description.into();
        self
    }

    /// The unit, in UCUM (`s`, `ms`, `By`, `{request}`).
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.desc.unit = unit.into();
        self
    }

    /// Most attribute sets, the overflow set included.
    pub fn with_cardinality_limit(mut self, limit: usize) -> Self {
        self.desc.limit = limit.max(1);
        self
    }
}

impl<T: Number> InstrumentBuilder<Histogram<T>> {
    /// Explicit bucket bounds instead of exponential buckets.
    pub fn with_explicit_buckets(mut self, mut bounds: Vec<f64>) -> Self {
        bounds.retain(|b| b.is_finite());
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        self.buckets = Buckets::Explicit(bounds);
        self
    }

    /// Exponential buckets with at most `max_size` buckets per sign
    /// (4 to 256) and a finest scale of `max_scale` (-10 to 20).
    pub fn with_exponential_buckets(mut self, max_size: usize, max_scale: i32) -> Self {
        self.buckets = Buckets::Exponential {
            max_size: max_size.clamp(4, exponential::SLOTS),
            max_scale: max_scale.clamp(MIN_SCALE, MAX_SCALE),
        };
        self
    }
}

macro_rules! build {
    ($ty:ident, $state:ident, $kind:literal, |$desc:ident, $buckets:ident| $make:expr) => {
        impl<T: Number> InstrumentBuilder<$ty<T>> {
            pub fn build(self) -> $ty<T> {
                let InstrumentBuilder {
                    meter,
                    desc: $desc,
                    buckets: $buckets,
                    ..
                } = self;
                let key = ($desc.name.clone(), $kind, std::any::type_name::<T>());
                $ty(meter.registry.get_or_insert(key, || Arc::new($make)))
            }
        }
    };
}

build!(Counter, SumState, "counter", |desc, _b| SumState {
    table: Table::new(desc.limit, Box::new(Sum::new)),
    desc,
    monotonic: true,
    _t: PhantomData,
});
build!(UpDownCounter, SumState, "updown", |desc, _b| SumState {
    table: Table::new(desc.limit, Box::new(Sum::new)),
    desc,
    monotonic: false,
    _t: PhantomData,
});
build!(Gauge, GaugeState, "gauge", |desc, _b| GaugeState {
    table: Table::new(desc.limit, Box::new(|| AtomicU64::new(0))),
    desc,
    _t: PhantomData,
});
build!(Histogram, HistState, "histogram", |desc, b| HistState {
    table: Table::new(
        desc.limit,
        match b {
            Buckets::Exponential {
                max_size,
                max_scale,
            } => Box::new(move || HistAgg::exponential(max_size, max_scale)),
            Buckets::Explicit(bounds) => {
                let bounds: Arc<[f64]> = bounds.into();
                Box::new(move || HistAgg::explicit(bounds.clone()))
            }
        }
    ),
    desc,
    _t: PhantomData,
});

type InstrumentKey = (String, &'static str, &'static str);

/// The instruments of a provider.
#[derive(Default)]
pub(crate) struct Registry {
    instruments: Mutex<Vec<Registered>>,
}

struct Registered {
    key: InstrumentKey,
    any: Arc<dyn Any + Send + Sync>,
    collect: Arc<dyn Collect>,
}

impl Registry {
    /// The instrument of that name, kind and number type, made by `make` if
    /// there is none yet.
    fn get_or_insert<S: Collect + Any>(
        &self,
        key: InstrumentKey,
        make: impl FnOnce() -> Arc<S>,
    ) -> Arc<S> {
        let mut list = self.instruments.lock();
        for r in list.iter() {
            if r.key == key {
                if let Ok(s) = r.any.clone().downcast::<S>() {
                    return s;
                }
            }
        }
        let s = make();
        list.push(Registered {
            key,
            any: s.clone(),
            collect: s.clone(),
        });
        s
    }

    pub(crate) fn collectors(&self) -> Vec<Arc<dyn Collect>> {
        self.instruments
            .lock()
            .iter()
            .map(|r| r.collect.clone())
            .collect()
    }
}

/// Creates instruments. Cheap to clone; instruments of the same name, kind
/// and number type are the same instrument.
#[derive(Clone)]
pub struct Meter {
    registry: Arc<Registry>,
    limit: usize,
}

impl Meter {
    fn builder<I>(&self, name: impl Into<String>) -> InstrumentBuilder<I> {
        InstrumentBuilder {
            meter: self.clone(),
            desc: Descriptor {
                name: name.into(),
                description: String::new(),
                unit: String::new(),
                limit: self.limit,
                start: unix_nanos(SystemTime::now()),
            },
            buckets: Buckets::default(),
            _i: PhantomData,
        }
    }

    pub fn u64_counter(&self, name: impl Into<String>) -> InstrumentBuilder<Counter<u64>> {
        self.builder(name)
    }

    pub fn f64_counter(&self, name: impl Into<String>) -> InstrumentBuilder<Counter<f64>> {
        self.builder(name)
    }

    pub fn i64_up_down_counter(
        &self,
        name: impl Into<String>,
    ) -> InstrumentBuilder<UpDownCounter<i64>> {
        self.builder(name)
    }

    pub fn f64_up_down_counter(
        &self,
        name: impl Into<String>,
    ) -> InstrumentBuilder<UpDownCounter<f64>> {
        self.builder(name)
    }

    pub fn f64_gauge(&self, name: impl Into<String>) -> InstrumentBuilder<Gauge<f64>> {
        self.builder(name)
    }

    pub fn i64_gauge(&self, name: impl Into<String>) -> InstrumentBuilder<Gauge<i64>> {
        self.builder(name)
    }

    pub fn u64_gauge(&self, name: impl Into<String>) -> InstrumentBuilder<Gauge<u64>> {
        self.builder(name)
    }

    pub fn f64_histogram(&self, name: impl Into<String>) -> InstrumentBuilder<Histogram<f64>> {
        self.builder(name)
    }
}

/// Owns the instruments, the resource and the periodic reader. Cheap to
/// clone; when the last clone is dropped the reader stops and the metrics
/// are exported one last time (queued in the sink, not waited for).
#[derive(Clone)]
pub struct MeterProvider {
    inner: Arc<reader::Provider>,
}

/// Configures a [`MeterProvider`].
pub struct MeterProviderBuilder {
    resource: Vec<KeyValue>,
    sink: Option<Arc<dyn Sink>>,
    interval: Duration,
    self_metrics: bool,
    limit: usize,
}

impl MeterProviderBuilder {
    /// Resource attributes (`service.name`, `host.name`, ...); these replace
    /// the defaults of the same key.
    pub fn with_resource(mut self, attributes: impl IntoIterator<Item = KeyValue>) -> Self {
        for kv in attributes {
            self.resource.retain(|r| r.key != kv.key);
            self.resource.push(kv);
        }
        self
    }

    pub fn with_service_name(self, name: impl Into<String>) -> Self {
        self.with_resource([KeyValue::new("service.name", name.into())])
    }

    /// Where exports go; without a sink nothing is exported periodically
    /// (see [`MeterProvider::collect`]).
    pub fn with_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Export `sonde_sdk_exported_batches` and `sonde_sdk_dropped_batches`
    /// (per signal, from the sink's counters). On by default.
    pub fn with_self_metrics(mut self, enabled: bool) -> Self {
        self.self_metrics = enabled;
        self
    }

    /// Default cardinality limit of the instruments.
    pub fn with_cardinality_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    pub fn build(self) -> MeterProvider {
        let shared = Arc::new(reader::Shared {
            resource: self.resource,
            registry: Arc::new(Registry::default()),
            sink: self.sink,
            self_metrics: self.self_metrics,
            start: unix_nanos(SystemTime::now()),
            limit: self.limit,
        });
        MeterProvider {
            inner: Arc::new(reader::Provider::start(shared, self.interval)),
        }
    }
}

impl MeterProvider {
    pub fn builder() -> MeterProviderBuilder {
        MeterProviderBuilder {
            resource: vec![
                KeyValue::new("service.name", "unknown_service"),
                KeyValue::new("telemetry.sdk.name", "sonde-sdk"),
                KeyValue::new("telemetry.sdk.language", "rust"),
                KeyValue::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
            ],
            sink: None,
            interval: DEFAULT_INTERVAL,
            self_metrics: true,
            limit: DEFAULT_CARDINALITY_LIMIT,
        }
    }

    pub fn meter(&self) -> Meter {
        let s = &self.inner.shared;
        Meter {
            registry: s.registry.clone(),
            limit: s.limit,
        }
    }

    /// Changes the export interval; the reader picks it up at once.
    pub fn set_interval(&self, interval: Duration) {
        self.inner.set_interval(interval);
    }

    pub fn interval(&self) -> Duration {
        self.inner.interval()
    }

    /// The export request the next export would send.
    pub fn collect(&self) -> ExportMetricsServiceRequest {
        self.inner.shared.collect()
    }

    /// Exports now (queued in the sink; returns at once).
    pub fn force_flush(&self) {
        self.inner.shared.export();
    }

    /// Stops the reader, exports a last time and waits up to `timeout` for
    /// the sink to send what it holds. True if everything left.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.stop();
        self.inner.shared.export();
        self.inner
            .shared
            .sink
            .as_ref()
            .is_none_or(|s| s.flush(timeout))
    }
}

#[cfg(test)]
mod tests;
