//! The resource: who emits (service, host, SDK), sent once per request.

use opentelemetry_proto::tonic::resource::v1 as otlp;

use crate::attributes::{self, KeyValue};

/// The attributes describing the emitting process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    /// `service.name`, `host.name` (from the system unless `extra` sets
    /// it), the `telemetry.sdk.*` attributes, then `extra`; a key given in
    /// `extra` replaces the default.
    pub fn new(
        service_name: impl Into<String>,
        extra: impl IntoIterator<Item = KeyValue>,
    ) -> Resource {
        let mut r = Resource {
            attributes: vec![
                KeyValue::new("service.name", service_name.into()),
                KeyValue::new("host.name", host_name()),
                KeyValue::new("telemetry.sdk.name", "sonde-sdk"),
                KeyValue::new("telemetry.sdk.language", "rust"),
                KeyValue::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
            ],
        };
        for kv in extra {
            r.set(kv);
        }
        r
    }

    /// Sets one attribute, replacing the one with the same key.
    pub fn set(&mut self, kv: KeyValue) {
        match self.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(a) => *a = kv,
            None => self.attributes.push(kv),
        }
    }

    pub fn get(&self, key: &str) -> Option<&crate::attributes::Value> {
        self.attributes
            .iter()
            .find(|a| a.key.as_str() == key)
            .map(|a| &a.value)
    }

    /// The OTLP form.
    pub fn to_otlp(&self) -> otlp::Resource {
        otlp::Resource {
            attributes: attributes::to_otlp(&self.attributes),
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        }
    }
}

/// This machine's host name: the kernel's, `/etc/hostname`, `$HOSTNAME`, or
/// `"unknown"`.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::Value;

    #[test]
    fn defaults_and_overrides() {
        let r = Resource::new(
            "checkout",
            [
                KeyValue::new("host.name", "web-1"),
                KeyValue::new("deployment.environment", "prod"),
            ],
        );
        assert_eq!(r.get("service.name"), Some(&Value::from("checkout")));
        assert_eq!(r.get("host.name"), Some(&Value::from("web-1")));
        assert_eq!(r.get("telemetry.sdk.language"), Some(&Value::from("rust")));
        assert_eq!(r.attributes.len(), 6);
        assert!(!host_name().is_empty());
        assert_eq!(r.to_otlp().attributes[0].key, "service.name");
    }
}
