//! The runtime collection policy protocol (`docs/policies.md`), in one
//! place for the three parties that speak it: the server validates and
//! merges policies, the SDK and the agent read and overlay them. The same
//! types and the same ranges on every side, so a policy the server accepts
//! is one every client applies.
//!
//! A policy has a [`Scope`] and [`Settings`]; the settings that apply to a
//! client are the overlay of every scope that covers it, widest first
//! ([`Scope::rank`]), each field from the narrowest scope that sets it.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde_json::{json, Value};

/// The host agent's collectors, in collection order.
pub const COLLECTORS: [&str; 8] = [
    "cpu",
    "load",
    "memory",
    "disk",
    "filesystem",
    "network",
    "pressure",
    "processes",
];

/// The shortest metric export interval a policy may set.
pub const MIN_METRIC_INTERVAL: Duration = Duration::from_millis(100);
/// The longest.
pub const MAX_METRIC_INTERVAL: Duration = Duration::from_secs(3600);
/// Log severities are OpenTelemetry's numbers, 0 (unspecified) to 24.
pub const MAX_SEVERITY: u8 = 24;

/// Which clients a policy is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Service(String),
    Host(String),
}

impl Scope {
    /// Merge order: broader scopes first, so narrower ones override them.
    pub fn rank(&self) -> u8 {
        match self {
            Scope::All => 0,
            Scope::Service(_) => 1,
            Scope::Host(_) => 2,
        }
    }

    pub fn applies(&self, service: &str, host: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Service(s) => s == service,
            Scope::Host(h) => h == host,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Scope::All => json!({"kind": "all"}),
            Scope::Service(n) => json!({"kind": "service", "name": n}),
            Scope::Host(n) => json!({"kind": "host", "name": n}),
        }
    }

    /// `{"kind": "all"|"service"|"host", "name": ...}`; absent is `All`.
    pub fn from_json(v: Option<&Value>) -> Result<Scope, String> {
        let Some(s) = v.filter(|v| !v.is_null()) else {
            return Ok(Scope::All);
        };
        let name = || -> Result<String, String> {
            s.get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .ok_or_else(|| "scope of kind service or host needs a name".to_string())
        };
        match s.get("kind").and_then(Value::as_str) {
            Some("all") | None => Ok(Scope::All),
            Some("service") => Ok(Scope::Service(name()?)),
            Some("host") => Ok(Scope::Host(name()?)),
            Some(k) => Err(format!(
                "unknown scope kind {k:?}: use all, service or host"
            )),
        }
    }
}

/// What a policy can set; `None` leaves the client's own default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub trace_sampling_ratio: Option<f64>,
    pub metric_interval_ms: Option<u64>,
    pub min_log_severity: Option<u8>,
    pub collectors: Option<Vec<String>>,
}

impl Settings {
    /// Takes every field `narrower` sets.
    pub fn overlay(&mut self, narrower: &Settings) {
        if narrower.trace_sampling_ratio.is_some() {
            self.trace_sampling_ratio = narrower.trace_sampling_ratio;
        }
        if narrower.metric_interval_ms.is_some() {
            self.metric_interval_ms = narrower.metric_interval_ms;
        }
        if narrower.min_log_severity.is_some() {
            self.min_log_severity = narrower.min_log_severity;
        }
        if narrower.collectors.is_some() {
            self.collectors.clone_from(&narrower.collectors);
        }
    }

    /// Checks every set field against the protocol's ranges; the error
    /// names the field and its range.
    pub fn check(&self) -> Result<(), String> {
        if let Some(r) = self.trace_sampling_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err("trace_sampling_ratio must be a number from 0 to 1".into());
            }
        }
        if let Some(ms) = self.metric_interval_ms {
            let range =
                MIN_METRIC_INTERVAL.as_millis() as u64..=MAX_METRIC_INTERVAL.as_millis() as u64;
            if !range.contains(&ms) {
                return Err("metric_interval must be between 100ms and 1h".into());
            }
        }
        if let Some(s) = self.min_log_severity {
            if s > MAX_SEVERITY {
                return Err("min_log_severity must be a severity number from 0 to 24".into());
            }
        }
        for c in self.collectors.iter().flatten() {
            if !COLLECTORS.contains(&c.as_str()) {
                return Err(format!(
                    "unknown collector {c:?}: use {}",
                    COLLECTORS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The wire form clients receive: every field, `null` when unset.
    pub fn to_json(&self) -> Value {
        json!({
            "trace_sampling_ratio": self.trace_sampling_ratio,
            "metric_interval_ms": self.metric_interval_ms,
            "min_log_severity": self.min_log_severity,
            "collectors": self.collectors,
        })
    }

    /// Reads the wire form as a client does: a field out of range or of
    /// the wrong type is unset (the client keeps its default), and
    /// collectors it does not know are dropped.
    pub fn from_json(v: &Value) -> Settings {
        let mut s = Settings {
            trace_sampling_ratio: v["trace_sampling_ratio"].as_f64(),
            metric_interval_ms: v["metric_interval_ms"].as_u64(),
            min_log_severity: v["min_log_severity"]
                .as_u64()
                .and_then(|s| u8::try_from(s).ok()),
            collectors: v["collectors"].as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|c| COLLECTORS.contains(c))
                    .map(str::to_string)
                    .collect()
            }),
        };
        let alone = |f: fn(&mut Settings, &Settings), s: &Settings| {
            let mut one = Settings::default();
            f(&mut one, s);
            one.check().is_ok()
        };
        if !alone(|o, s| o.trace_sampling_ratio = s.trace_sampling_ratio, &s) {
            s.trace_sampling_ratio = None;
        }
        if !alone(|o, s| o.metric_interval_ms = s.metric_interval_ms, &s) {
            s.metric_interval_ms = None;
        }
        if !alone(|o, s| o.min_log_severity = s.min_log_severity, &s) {
            s.min_log_severity = None;
        }
        s
    }
}

/// The merged settings for one client, with the version that changes
/// whenever any policy does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EffectivePolicy {
    pub version: u64,
    pub settings: Settings,
}

impl Deref for EffectivePolicy {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.settings
    }
}

impl DerefMut for EffectivePolicy {
    fn deref_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

impl EffectivePolicy {
    /// Parses the JSON of a `policy` event (or a retained MQTT message);
    /// `None` if it is not an object with a numeric `version`.
    pub fn parse(data: &str) -> Option<EffectivePolicy> {
        let v: Value = serde_json::from_str(data).ok()?;
        Some(EffectivePolicy {
            version: v.get("version")?.as_u64()?,
            settings: Settings::from_json(&v),
        })
    }

    /// The wire form: the settings and the version.
    pub fn to_json(&self) -> Value {
        let mut v = self.settings.to_json();
        v["version"] = json!(self.version);
        v
    }
}

/// The policies of several scopes, widest first, merged: each field from
/// the narrowest scope that sets it; the version is the highest.
pub fn overlay(scopes: &[Option<EffectivePolicy>]) -> EffectivePolicy {
    let mut out = EffectivePolicy::default();
    for p in scopes.iter().flatten() {
        out.version = out.version.max(p.version);
        out.settings.overlay(&p.settings);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrower_scopes_win_field_by_field() {
        let all = EffectivePolicy {
            version: 3,
            settings: Settings {
                trace_sampling_ratio: Some(0.1),
                metric_interval_ms: Some(10_000),
                ..Settings::default()
            },
        };
        let service = EffectivePolicy {
            version: 5,
            settings: Settings {
                trace_sampling_ratio: Some(1.0),
                ..Settings::default()
            },
        };
        let merged = overlay(&[Some(all), None, Some(service)]);
        assert_eq!(merged.version, 5);
        assert_eq!(merged.trace_sampling_ratio, Some(1.0));
        assert_eq!(merged.metric_interval_ms, Some(10_000));
        assert!(Scope::All.rank() < Scope::Service("a".into()).rank());
        assert!(Scope::Service("a".into()).rank() < Scope::Host("h".into()).rank());
    }

    #[test]
    fn the_server_refuses_and_clients_ignore_the_same_out_of_range_values() {
        let wire = json!({
            "version": 9,
            "trace_sampling_ratio": 7.0,
            "metric_interval_ms": 50,
            "min_log_severity": 30,
            "collectors": ["cpu", "gpu"],
        });
        let client = EffectivePolicy::parse(&wire.to_string()).unwrap();
        assert_eq!(client.version, 9);
        assert_eq!(client.trace_sampling_ratio, None);
        assert_eq!(client.metric_interval_ms, None);
        assert_eq!(client.min_log_severity, None);
        assert_eq!(client.collectors, Some(vec!["cpu".to_string()]));
        for bad in [
            Settings {
                trace_sampling_ratio: Some(7.0),
                ..Settings::default()
            },
            Settings {
                metric_interval_ms: Some(50),
                ..Settings::default()
            },
            Settings {
                min_log_severity: Some(30),
                ..Settings::default()
            },
            Settings {
                collectors: Some(vec!["gpu".into()]),
                ..Settings::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let good =
            Settings::from_json(&json!({"trace_sampling_ratio": 0.5, "metric_interval_ms": 100}));
        assert!(good.check().is_ok());
        assert_eq!(
            Scope::from_json(Some(&json!({"kind": "service"}))).unwrap_err(),
            "scope of kind service or host needs a name"
        );
    }
}
