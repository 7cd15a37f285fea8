//! What was seen of each service and host in spans and logs.
//!
//! Kept in memory, fed by every accepted batch, and saved next to the
//! segments at each flush so it survives restarts without rescanning Parquet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};
use sonde_model::records::{LogRecord, SpanKind, SpanRecord, TimestampNs};

/// Span names kept per service: enough for any real operation list, bounded
/// against a service that puts ids in its span names.
const MAX_OPERATIONS: usize = 2000;
const MAX_RELATED: usize = 1000;
/// Services (and hosts) kept; past it, the one seen least recently goes.
pub const MAX_ENTRIES: usize = 10_000;

/// The entry for `key`, making room by dropping the least recently seen
/// entry when the map is full.
fn entry<'a>(map: &'a mut BTreeMap<String, Seen>, key: &str) -> &'a mut Seen {
    if !map.contains_key(key) && map.len() >= MAX_ENTRIES {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, s)| s.last_ns)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    map.entry(key.to_string()).or_default()
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub spans: u64,
    pub logs: u64,
    pub events: u64,
    pub first_ns: TimestampNs,
    pub last_ns: TimestampNs,
    /// Hosts of a service, or services of a host.
    pub related: BTreeSet<String>,
}

impl Seen {
    fn touch(&mut self, t: TimestampNs) {
        if self.first_ns == 0 || t < self.first_ns {
            self.first_ns = t;
        }
        self.last_ns = self.last_ns.max(t);
    }

    fn relate(&mut self, other: &str) {
        if !other.is_empty() && self.related.len() < MAX_RELATED {
            self.related.insert(other.to_string());
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "spans": self.spans, "logs": self.logs, "events": self.events,
            "first_ns": self.first_ns, "last_ns": self.last_ns,
            "related": self.related,
        })
    }

    fn from_json(v: &Value) -> Seen {
        let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        Seen {
            spans: n("spans") as u64,
            logs: n("logs") as u64,
            events: n("events") as u64,
            first_ns: n("first_ns"),
            last_ns: n("last_ns"),
            related: v
                .get("related")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub services: BTreeMap<String, Seen>,
    pub hosts: BTreeMap<String, Seen>,
    /// Span name → kind, per service (what Jaeger calls operations).
    pub operations: BTreeMap<String, BTreeMap<String, SpanKind>>,
}

impl Catalog {
    pub fn add_spans(&mut self, spans: &[SpanRecord]) {
        for s in spans {
            let o = &s.origin;
            let svc = entry(&mut self.services, &o.service);
            svc.spans += 1;
            svc.touch(s.start_ns);
            svc.relate(&o.host);
            if !self.operations.contains_key(&o.service) {
                let services = &self.services;
                self.operations.retain(|svc, _| services.contains_key(svc));
            }
            let ops = self.operations.entry(o.service.clone()).or_default();
            if ops.len() < MAX_OPERATIONS || ops.contains_key(&s.name) {
                ops.insert(s.name.clone(), s.kind);
            }
            if !o.host.is_empty() {
                let host = entry(&mut self.hosts, &o.host);
                host.spans += 1;
                host.touch(s.start_ns);
                host.relate(&o.service);
            }
        }
    }

    pub fn add_logs(&mut self, logs: &[LogRecord]) {
        for l in logs {
            let o = &l.origin;
            let is_event = !l.event_name.is_empty();
            for (map, key, other) in [
                (&mut self.services, &o.service, &o.host),
                (&mut self.hosts, &o.host, &o.service),
            ] {
                if key.is_empty() {
                    continue;
                }
                let seen = entry(map, key);
                if is_event {
                    seen.events += 1;
                } else {
                    seen.logs += 1;
                }
                seen.touch(l.time_ns);
                seen.relate(other);
            }
        }
    }

    /// Forgets services and hosts not seen since `cutoff_ns` (retention:
    /// their data is gone), with their operations.
    pub fn expire(&mut self, cutoff_ns: TimestampNs) {
        self.services.retain(|_, s| s.last_ns >= cutoff_ns);
        self.hosts.retain(|_, s| s.last_ns >= cutoff_ns);
        let services = &self.services;
        self.operations.retain(|svc, _| services.contains_key(svc));
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let map = |m: &BTreeMap<String, Seen>| -> Value {
            m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
        };
        let ops: Value = self
            .operations
            .iter()
            .map(|(svc, ops)| {
                let o: Value = ops
                    .iter()
                    .map(|(n, k)| (n.clone(), json!(k.as_str())))
                    .collect();
                (svc.clone(), o)
            })
            .collect();
        let doc =
            json!({"services": map(&self.services), "hosts": map(&self.hosts), "operations": ops});
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, doc.to_string())?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Loads a saved catalog; a missing or unreadable file is an empty one
    /// (the catalog is a summary, never the only copy of any data).
    pub fn load(path: &Path) -> Catalog {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Catalog::default();
        };
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!(path = %path.display(), "unreadable catalog, starting empty");
            return Catalog::default();
        };
        let map = |k: &str| -> BTreeMap<String, Seen> {
            doc.get(k)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), Seen::from_json(v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let operations = doc
            .get("operations")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(svc, ops)| {
                        let ops = ops
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(n, k)| {
                                        let kind = k.as_str().and_then(SpanKind::parse);
                                        (n.clone(), kind.unwrap_or_default())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        (svc.clone(), ops)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Catalog {
            services: map("services"),
            hosts: map("hosts"),
            operations,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sonde_model::records::Origin;

    use super::*;

    fn log(service: &str, t: TimestampNs) -> LogRecord {
        LogRecord {
            time_ns: t,
            observed_ns: t,
            severity_number: 9,
            severity_text: String::new(),
            body: String::new(),
            event_name: String::new(),
            trace_id: None,
            span_id: None,
            flags: 0,
            origin: Arc::new(Origin {
                service: service.into(),
                host: format!("host-of-{service}"),
                ..Origin::default()
            }),
            attributes: vec![],
        }
    }

    #[test]
    fn services_and_hosts_are_capped_and_expire_with_retention() {
        let mut c = Catalog::default();
        let logs: Vec<LogRecord> = (0..MAX_ENTRIES as i64 + 5)
            .map(|i| log(&format!("svc-{i}"), 1_000 + i))
            .collect();
        c.add_logs(&logs);
        assert_eq!(c.services.len(), MAX_ENTRIES);
        assert_eq!(c.hosts.len(), MAX_ENTRIES);
        // The least recently seen went first.
        assert!(!c.services.contains_key("svc-0"));
        assert!(c.services.contains_key(&format!("svc-{}", MAX_ENTRIES + 4)));
        c.expire(1_000 + MAX_ENTRIES as i64);
        assert_eq!(c.services.len(), 5);
        assert_eq!(c.hosts.len(), 5);
    }
}
