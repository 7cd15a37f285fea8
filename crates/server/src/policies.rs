//! Runtime collection policies (see `docs/policies.md`): what SDKs and
//! agents should collect, by scope, changeable at run time, optionally for a
//! limited time; and the status those clients report back.
//!
//! Policies are few and small: they live in memory, are saved to
//! `<data_dir>/policies.json` on every change, and every change bumps one
//! version number that watchers wait on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::records_api::parse_duration_ns;

pub use sonde_policy::{Scope, Settings, COLLECTORS};

/// Clients not heard from for this long are forgotten.
const CLIENT_FORGET_NS: i64 = 3600 * 1_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: String,
    pub scope: Scope,
    pub settings: Settings,
    pub ttl_ns: Option<i64>,
    pub updated_ns: i64,
}

impl Policy {
    fn expires_ns(&self) -> Option<i64> {
        self.ttl_ns.map(|ttl| self.updated_ns.saturating_add(ttl))
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "scope": self.scope.to_json(),
            "updatedAtUnixNano": self.updated_ns.to_string(),
        });
        let s = &self.settings;
        if let Some(r) = s.trace_sampling_ratio {
            v["trace_sampling_ratio"] = json!(r);
        }
        if let Some(ms) = s.metric_interval_ms {
            v["metric_interval"] = json!(format!("{ms}ms"));
        }
        if let Some(sev) = s.min_log_severity {
            v["min_log_severity"] = json!(sev);
        }
        if let Some(c) = &s.collectors {
            v["collectors"] = json!(c);
        }
        if let Some(ttl) = self.ttl_ns {
            v["ttl"] = json!(format!("{}ms", ttl / 1_000_000));
            v["expiresAtUnixNano"] = json!(self.expires_ns().unwrap_or(0).to_string());
        }
        v
    }

    /// Parses and validates a policy body; `id` comes from the URL.
    pub fn parse(id: &str, body: &Value, now_ns: i64) -> Result<Policy, String> {
        let valid_id = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid_id {
            return Err(format!(
                "invalid policy id {id:?}: use 1-128 of [A-Za-z0-9._-]"
            ));
        }
        let obj = body.as_object().ok_or("a policy is a JSON object")?;
        for key in obj.keys() {
            if ![
                "id",
                "scope",
                "trace_sampling_ratio",
                "metric_interval",
                "min_log_severity",
                "collectors",
                "ttl",
            ]
            .contains(&key.as_str())
            {
                return Err(format!("unknown policy field {key:?}"));
            }
        }
        let scope = Scope::from_json(body.get("scope"))?;
        let present = |k: &str| body.get(k).filter(|v| !v.is_null());
        let trace_sampling_ratio = present("trace_sampling_ratio")
            .map(|v| {
                v.as_f64()
                    .ok_or("trace_sampling_ratio must be a number from 0 to 1")
            })
            .transpose()?;
        let duration = |k: &str| -> Result<Option<i64>, String> {
            present(k)
                .map(|v| {
                    v.as_str()
                        .and_then(parse_duration_ns)
                        .ok_or(format!("{k} must be a duration like \"5s\""))
                })
                .transpose()
        };
        let metric_interval_ms = duration("metric_interval")?.map(|ns| (ns / 1_000_000) as u64);
        let min_log_severity = present("min_log_severity")
            .map(|v| {
                v.as_u64()
                    .and_then(|s| u8::try_from(s).ok())
                    .ok_or("min_log_severity must be a severity number from 0 to 24")
            })
            .transpose()?;
        let collectors = present("collectors")
            .map(|v| -> Result<Vec<String>, String> {
                let list = v.as_array().ok_or("collectors must be a list of names")?;
                list.iter()
                    .map(|c| {
                        c.as_str().map(str::to_string).ok_or_else(|| {
                            format!("unknown collector {c}: use {}", COLLECTORS.join(", "))
                        })
                    })
                    .collect()
            })
            .transpose()?;
        let settings = Settings {
            trace_sampling_ratio,
            metric_interval_ms,
            min_log_severity,
            collectors,
        };
        // The protocol's own ranges, the ones every client applies.
        settings.check()?;
        let ttl_ns = duration("ttl")?.filter(|t| *t > 0);
        Ok(Policy {
            id: id.to_string(),
            scope,
            settings,
            ttl_ns,
            updated_ns: now_ns,
        })
    }
}

/// What a client last reported.
#[derive(Debug, Clone)]
struct Client {
    status: Value,
    last_seen_ns: i64,
    /// Open watch streams of this client.
    watching: usize,
}

#[derive(Default)]
struct State {
    policies: BTreeMap<String, Policy>,
    clients: BTreeMap<String, Client>,
    version: u64,
}

pub struct Policies {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    path: PathBuf,
}

impl Policies {
    /// Loads saved policies; an unreadable file is reported and ignored
    /// rather than keeping the server from starting.
    pub fn open(path: PathBuf, now_ns: i64) -> Policies {
        let mut state = State::default();
        if let Ok(text) = std::fs::read_to_string(&path) {
            match serde_json::from_str::<Value>(&text) {
                Ok(doc) => {
                    state.version = doc["version"].as_u64().unwrap_or(0);
                    for p in doc["policies"].as_array().into_iter().flatten() {
                        let id = p["id"].as_str().unwrap_or("");
                        let updated = p["updatedAtUnixNano"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(now_ns);
                        match Policy::parse(id, &strip_read_only(p), updated) {
                            Ok(policy) => {
                                state.policies.insert(policy.id.clone(), policy);
                            }
                            Err(e) => tracing::warn!("skipping saved policy {id:?}: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), "unreadable policies file: {e}"),
            }
        }
        let version = state.version;
        Policies {
            state: Mutex::new(state),
            changed: watch::channel(version).0,
            path,
        }
    }

    fn save_and_notify(&self, state: &mut State) {
        state.version += 1;
        let doc = json!({
            "version": state.version,
            "policies": state.policies.values().map(Policy::json).collect::<Vec<_>>(),
        });
        let tmp = self.path.with_extension("tmp");
        let saved =
            std::fs::write(&tmp, doc.to_string()).and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = saved {
            tracing::error!(path = %self.path.display(), "cannot save policies: {e}");
        }
        self.changed.send_replace(state.version);
    }

    pub fn list(&self) -> Vec<Policy> {
        self.state.lock().policies.values().cloned().collect()
    }

    pub fn put(&self, policy: Policy) -> Policy {
        let mut st = self.state.lock();
        st.policies.insert(policy.id.clone(), policy.clone());
        self.save_and_notify(&mut st);
        policy
    }

    pub fn delete(&self, id: &str) -> bool {
        let mut st = self.state.lock();
        let removed = st.policies.remove(id).is_some();
        if removed {
            self.save_and_notify(&mut st);
        }
        removed
    }

    /// Drops policies whose TTL has passed; true if any did.
    pub fn expire(&self, now_ns: i64) -> bool {
        let mut st = self.state.lock();
        let before = st.policies.len();
        st.policies
            .retain(|_, p| p.expires_ns().is_none_or(|e| e > now_ns));
        st.clients
            .retain(|_, c| c.watching > 0 || now_ns - c.last_seen_ns < CLIENT_FORGET_NS);
        let expired = st.policies.len() != before;
        if expired {
            self.save_and_notify(&mut st);
        }
        expired
    }

    /// The merged settings for a client, and the current version.
    pub fn effective(&self, service: &str, host: &str) -> (u64, Settings) {
        let st = self.state.lock();
        let mut applicable: Vec<&Policy> = st
            .policies
            .values()
            .filter(|p| p.scope.applies(service, host))
            .collect();
        applicable.sort_by_key(|p| (p.scope.rank(), p.updated_ns));
        let mut merged = Settings::default();
        for p in applicable {
            merged.overlay(&p.settings);
        }
        (st.version, merged)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn report_status(&self, status: Value, now_ns: i64) -> Result<(), String> {
        let id = status["client_id"]
            .as_str()
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or("status needs a client_id")?
            .to_string();
        let mut st = self.state.lock();
        if !st.clients.contains_key(&id) && st.clients.len() >= 10_000 {
            return Err("too many clients".into());
        }
        let c = st.clients.entry(id).or_insert(Client {
            status: Value::Null,
            last_seen_ns: now_ns,
            watching: 0,
        });
        c.status = status;
        c.last_seen_ns = now_ns;
        Ok(())
    }

    /// Marks a client as watching (or no longer) and records when.
    pub fn watching(&self, client_id: &str, delta: isize, now_ns: i64) {
        let mut st = self.state.lock();
        let c = st.clients.entry(client_id.to_string()).or_insert(Client {
            status: Value::Null,
            last_seen_ns: now_ns,
            watching: 0,
        });
        c.watching = c.watching.saturating_add_signed(delta);
        c.last_seen_ns = now_ns;
    }

    pub fn clients(&self) -> Vec<Value> {
        let st = self.state.lock();
        st.clients
            .iter()
            .map(|(id, c)| {
                let mut v = if c.status.is_object() {
                    c.status.clone()
                } else {
                    json!({})
                };
                v["client_id"] = json!(id);
                v["lastSeenUnixNano"] = json!(c.last_seen_ns.to_string());
                v["connected"] = json!(c.watching > 0);
                v
            })
            .collect()
    }
}

/// Saved policies carry read-only fields the parser refuses.
fn strip_read_only(p: &Value) -> Value {
    let mut p = p.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("updatedAtUnixNano");
        o.remove("expiresAtUnixNano");
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: &Policies, id: &str, body: Value, now: i64) {
        p.put(Policy::parse(id, &body, now).unwrap());
    }

    #[test]
    fn the_most_specific_scope_wins_field_by_field_and_ttls_expire() {
        let dir = tempfile::tempdir().unwrap();
        let p = Policies::open(dir.path().join("policies.json"), 0);
        put(
            &p,
            "base",
            json!({"trace_sampling_ratio": 0.5, "metric_interval": "10s"}),
            1,
        );
        put(
            &p,
            "svc",
            json!({"scope": {"kind": "service", "name": "api"}, "trace_sampling_ratio": 0.1}),
            2,
        );
        put(
            &p,
            "host",
            json!({"scope": {"kind": "host", "name": "h1"}, "min_log_severity": 13, "ttl": "1s"}),
            3,
        );
        let (v, s) = p.effective("api", "h1");
        assert_eq!(v, 3);
        assert_eq!(s.trace_sampling_ratio, Some(0.1));
        assert_eq!(s.metric_interval_ms, Some(10_000));
        assert_eq!(s.min_log_severity, Some(13));
        assert_eq!(p.effective("web", "h2").1.trace_sampling_ratio, Some(0.5));
        assert!(!p.expire(500_000_000));
        assert!(p.expire(1_000_000_004));
        assert_eq!(p.effective("api", "h1").1.min_log_severity, None);

        // Saved and loaded back.
        let again = Policies::open(dir.path().join("policies.json"), 0);
        assert_eq!(again.list(), p.list());
        assert_eq!(again.effective("api", "x").0, 4);
    }

    #[test]
    fn bad_policies_are_explained() {
        let err = |id: &str, body: Value| Policy::parse(id, &body, 0).unwrap_err();
        assert!(err("a", json!({"trace_sampling_ratio": 2})).contains("0 to 1"));
        assert!(err("a", json!({"metric_interval": "5ms"})).contains("between"));
        assert!(err("a", json!({"collectors": ["gpu"]})).contains("unknown collector"));
        assert!(err("a", json!({"scope": {"kind": "service"}})).contains("needs a name"));
        assert!(err("a b", json!({})).contains("invalid policy id"));
        assert!(err("a", json!({"sampling": 1})).contains("unknown policy field"));
    }
}
