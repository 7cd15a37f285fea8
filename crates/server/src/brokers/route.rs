//! Which topics carry what: `TOPIC:ENCODING[:SIGNAL]`, one string per
//! route so a route fits a flag or an environment variable.

use anyhow::bail;

/// How a message's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// An OTLP export request in protobuf: what the OpenTelemetry
    /// Collector's Kafka exporter writes with `encoding: otlp_proto`.
    OtlpProto,
    /// The same in OTLP's JSON mapping (`encoding: otlp_json`).
    OtlpJson,
    /// A Prometheus remote-write `WriteRequest`, snappy-compressed or not.
    RemoteWrite,
    /// Device JSON: every numeric field a metric.
    Json,
    /// InfluxDB line protocol.
    Influx,
    /// Sparkplug B (MQTT only: its topics carry the node identity).
    Sparkplug,
}

impl Encoding {
    pub const NAMES: &'static str = "otlp_proto, otlp_json, remote_write, json, influx, sparkplug";

    fn parse(s: &str) -> Option<Encoding> {
        Some(match s {
            "otlp_proto" | "otlp" => Encoding::OtlpProto,
            "otlp_json" => Encoding::OtlpJson,
            "remote_write" | "prometheus" => Encoding::RemoteWrite,
            "json" => Encoding::Json,
            "influx" | "influx_line" => Encoding::Influx,
            "sparkplug" | "sparkplug_b" => Encoding::Sparkplug,
            _ => return None,
        })
    }
}

/// The signal an OTLP route carries; the other encodings are metrics (JSON
/// may also give logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSignal {
    Metrics,
    Traces,
    Logs,
}

impl RouteSignal {
    fn parse(s: &str) -> Option<RouteSignal> {
        Some(match s {
            "metrics" => RouteSignal::Metrics,
            "traces" | "spans" => RouteSignal::Traces,
            "logs" => RouteSignal::Logs,
            _ => return None,
        })
    }
}

/// One topic (Kafka) or topic template (MQTT) and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub topic: String,
    pub encoding: Encoding,
    pub signal: RouteSignal,
}

impl Route {
    /// Parses `TOPIC:ENCODING[:SIGNAL]`, e.g. `otlp_spans:otlp_proto:traces`
    /// or `plant/{site}/{device}/telemetry:json`. The signal defaults to
    /// metrics and matters only for OTLP.
    pub fn parse(spec: &str) -> anyhow::Result<Route> {
        let spec = spec.trim();
        let mut parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        parts.reverse();
        let (topic, encoding, signal) = match parts.as_slice() {
            [topic, enc, sig] if RouteSignal::parse(sig).is_some() => (*topic, *enc, Some(*sig)),
            [head, last] => (*head, *last, None),
            [a, b, c] => {
                // A topic with a colon in it: only the last part is the encoding.
                return Route::finish(spec, &format!("{a}:{b}"), c, None);
            }
            _ => bail!(
                "route {spec:?} is not TOPIC:ENCODING[:SIGNAL] (encodings: {})",
                Encoding::NAMES
            ),
        };
        Route::finish(spec, topic, encoding, signal)
    }

    fn finish(spec: &str, topic: &str, enc: &str, signal: Option<&str>) -> anyhow::Result<Route> {
        if topic.is_empty() {
            bail!("route {spec:?} has no topic");
        }
        let Some(encoding) = Encoding::parse(enc) else {
            bail!(
                "route {spec:?}: unknown encoding {enc:?} (one of {})",
                Encoding::NAMES
            );
        };
        let signal = signal
            .and_then(RouteSignal::parse)
            .unwrap_or(RouteSignal::Metrics);
        if signal != RouteSignal::Metrics
            && !matches!(encoding, Encoding::OtlpProto | Encoding::OtlpJson)
        {
            bail!("route {spec:?}: only OTLP encodings carry traces or logs");
        }
        Ok(Route {
            topic: topic.to_string(),
            encoding,
            signal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes() {
        let r = Route::parse("otlp_spans:otlp_proto:traces").unwrap();
        assert_eq!(
            (r.topic.as_str(), r.encoding, r.signal),
            ("otlp_spans", Encoding::OtlpProto, RouteSignal::Traces)
        );
        let r = Route::parse("plant/{site}/{device}/telemetry:json").unwrap();
        assert_eq!(r.topic, "plant/{site}/{device}/telemetry");
        assert_eq!(
            (r.encoding, r.signal),
            (Encoding::Json, RouteSignal::Metrics)
        );
        let r = Route::parse("a:b:influx").unwrap();
        assert_eq!((r.topic.as_str(), r.encoding), ("a:b", Encoding::Influx));
    }

    #[test]
    fn rejects_bad_routes() {
        for bad in [
            "",
            "topic",
            ":json",
            "t:yaml",
            "t:json:traces",
            "t:otlp_proto:bogus",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
