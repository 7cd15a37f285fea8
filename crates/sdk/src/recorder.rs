//! A [`metrics`] crate `Recorder` over Sonde instruments, so that
//! `metrics::counter!`, `gauge!` and `histogram!` are exported like the
//! SDK's own instruments: a name becomes an instrument, its labels an
//! attribute set (string values).
//!
//! `metrics` macros ask the recorder for a handle at every call unless the
//! caller keeps it; handles are cached by the `metrics::Key`'s precomputed
//! hash, so the repeated call is a read-locked map lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use metrics::{
    CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use parking_lot::{Mutex, RwLock};

use crate::attributes::KeyValue;
use crate::metrics::{BoundCounter, BoundGauge, BoundHistogram, Meter, MeterProvider};

/// Installs a [`SondeRecorder`] over `provider` as the global recorder.
pub fn install(provider: &MeterProvider) -> Result<(), RecorderAlreadySet> {
    metrics::set_global_recorder(SondeRecorder::new(provider)).map_err(|_| RecorderAlreadySet)
}

/// [`install`] failed: the process already has a global `metrics` recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderAlreadySet;

impl std::fmt::Display for RecorderAlreadySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a global metrics recorder is already installed: install the Sonde recorder first",
        )
    }
}

impl std::error::Error for RecorderAlreadySet {}

/// `metrics::Key` already carries its hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type Handles<H> = RwLock<HashMap<Key, Arc<H>, BuildHasherDefault<KeyHasher>>>;

/// Maps `metrics` counters, gauges and histograms onto a [`Meter`]'s
/// instruments.
pub struct SondeRecorder {
    meter: Meter,
    descriptions: Mutex<HashMap<String, (Option<Unit>, String)>>,
    counters: Handles<CounterHandle>,
    gauges: Handles<GaugeHandle>,
    histograms: Handles<HistogramHandle>,
}

struct CounterHandle(BoundCounter<u64>);
struct GaugeHandle(BoundGauge<f64>);
struct HistogramHandle(BoundHistogram<f64>);

impl CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.0.add(value);
    }
    fn absolute(&self, value: u64) {
        // A cumulative sum cannot be set: add what it lacks.
        let total = self.0.total();
        if value > total {
            self.0.add(value - total);
        }
    }
}

impl GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        self.0.add(value);
    }
    fn decrement(&self, value: f64) {
        self.0.add(-value);
    }
    fn set(&self, value: f64) {
        self.0.record(value);
    }
}

impl HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.0.record(value);
    }
}

/// The UCUM unit of a `metrics` unit.
fn ucum(unit: Unit) -> &'static str {
    match unit {
        Unit::Count => "1",
        Unit::Percent => "%",
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Microseconds => "us",
        Unit::Nanoseconds => "ns",
        Unit::Tebibytes => "TiBy",
        Unit::Gibibytes => "GiBy",
        Unit::Mebibytes => "MiBy",
        Unit::Kibibytes => "KiBy",
        Unit::Bytes => "By",
        Unit::TerabitsPerSecond => "Tbit/s",
        Unit::GigabitsPerSecond => "Gbit/s",
        Unit::MegabitsPerSecond => "Mbit/s",
        Unit::KilobitsPerSecond => "kbit/s",
        Unit::BitsPerSecond => "bit/s",
        Unit::CountPerSecond => "1/s",
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_string(), l.value().to_string()))
        .collect()
}

impl SondeRecorder {
    pub fn new(provider: &MeterProvider) -> SondeRecorder {
        SondeRecorder {
            meter: provider.meter(),
            descriptions: Mutex::new(HashMap::new()),
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
        }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.descriptions
            .lock()
            .insert(key.as_str().to_string(), (unit, description.to_string()));
    }

    /// Description and unit of `name`, if described before first use.
    fn description(&self, name: &str) -> (String, String) {
        match self.descriptions.lock().get(name) {
            Some((unit, d)) => (d.clone(), unit.map(ucum).unwrap_or("").to_string()),
            None => (String::new(), String::new()),
        }
    }

    fn handle<H>(&self, map: &Handles<H>, key: &Key, make: impl FnOnce() -> H) -> Arc<H> {
        if let Some(h) = map.read().get(key) {
            return h.clone();
        }
        let h = Arc::new(make());
        map.write().entry(key.clone()).or_insert(h).clone()
    }
}

impl Recorder for SondeRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Counter {
        let h = self.handle(&self.counters, key, || {
            let (description, unit) = self.description(key.name());
            let c = self
                .meter
                .u64_counter(key.name().to_string())
                .with_description(description)
                .with_unit(unit)
                .build();
            CounterHandle(c.bind(&attributes(key)))
        });
        metrics::Counter::from_arc(h)
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Gauge {
        let h = self.handle(&self.gauges, key, || {
            let (description, unit) = self.description(key.name());
            let g = self
                .meter
                .f64_gauge(key.name().to_string())
                .with_description(description)
                .with_unit(unit)
                .build();
            GaugeHandle(g.bind(&attributes(key)))
        });
        metrics::Gauge::from_arc(h)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Histogram {
        let h = self.handle(&self.histograms, key, || {
            let (description, unit) = self.description(key.name());
            let hist = self
                .meter
                .f64_histogram(key.name().to_string())
                .with_description(description)
                .with_unit(unit)
                .build();
            HistogramHandle(hist.bind(&attributes(key)))
        });
        metrics::Histogram::from_arc(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};

    #[test]
    fn macros_land_in_instruments() {
        let provider = MeterProvider::builder().build();
        let recorder = SondeRecorder::new(&provider);
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!("jobs", Unit::Count, "jobs run");
            metrics::counter!("jobs", "queue" => "a").increment(2);
            metrics::counter!("jobs", "queue" => "a").increment(3);
            metrics::counter!("jobs", "queue" => "b").absolute(7);
            metrics::counter!("jobs", "queue" => "b").absolute(5);
            metrics::gauge!("depth").set(4.0);
            metrics::gauge!("depth").increment(1.5);
            metrics::histogram!("latency", "op" => "get").record(0.25);
        });
        let req = provider.collect();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let jobs = metrics.iter().find(|m| m.name == "jobs").expect("jobs");
        assert_eq!(
            (jobs.unit.as_str(), jobs.description.as_str()),
            ("1", "jobs run")
        );
        let Some(Data::Sum(sum)) = &jobs.data else {
            panic!("not a sum")
        };
        let values: Vec<_> = sum.data_points.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![Some(Value::AsInt(5)), Some(Value::AsInt(7))]);
        assert_eq!(sum.data_points[0].attributes[0].key, "queue");
        let depth = metrics.iter().find(|m| m.name == "depth").expect("depth");
        let Some(Data::Gauge(g)) = &depth.data else {
            panic!("not a gauge")
        };
        assert_eq!(g.data_points[0].value, Some(Value::AsDouble(5.5)));
        let latency = metrics
            .iter()
            .find(|m| m.name == "latency")
            .expect("latency");
        let Some(Data::ExponentialHistogram(h)) = &latency.data else {
            panic!("not a histogram")
        };
        assert_eq!(
            (h.data_points[0].count, h.data_points[0].sum),
            (1, Some(0.25))
        );
    }
}
