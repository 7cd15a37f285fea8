//! Collection policies as retained MQTT messages, one per scope, so that
//! devices that speak only MQTT get them: `{prefix}/all`,
//! `{prefix}/service/{name}` and `{prefix}/host/{name}`. Each carries the
//! merged settings of that scope's policies, in the JSON of the SSE watch
//! (`trace_sampling_ratio`, `metric_interval_ms`, `min_log_severity`,
//! `collectors`, `version`); a device overlays host over service over all.
//! A scope whose last policy is deleted gets an empty retained message,
//! which clears it at the broker.

use std::collections::BTreeMap;

use tokio::sync::watch;

use super::mqtt::Client;
use crate::app::AppState;
use crate::policies::{Scope, Settings};

/// Topic → payload of every scope that has policies.
pub fn scope_messages(state: &AppState, prefix: &str) -> BTreeMap<String, String> {
    let mut policies = state.policies.list();
    policies.sort_by_key(|p| p.updated_ns);
    let version = state.policies.effective("", "").0;
    let mut merged: BTreeMap<String, Settings> = BTreeMap::new();
    for p in &policies {
        let topic = match &p.scope {
            Scope::All => format!("{prefix}/all"),
            Scope::Service(s) => format!("{prefix}/service/{}", topic_level(s)),
            Scope::Host(h) => format!("{prefix}/host/{}", topic_level(h)),
        };
        merged.entry(topic).or_default().overlay(&p.settings);
    }
    merged
        .into_iter()
        .map(|(topic, s)| {
            let mut v = s.to_json();
            v["version"] = serde_json::json!(version);
            (topic, v.to_string())
        })
        .collect()
}

/// A name as one topic level: MQTT forbids wildcards in published topics,
/// and a `/` would split the level.
fn topic_level(name: &str) -> String {
    name.replace(['/', '+', '#'], "_")
}

/// Publishes the scopes' messages at each (re)connection and whenever the
/// policies change.
pub(super) async fn publish_loop(
    state: AppState,
    client: Client,
    mut connected: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
) {
    let prefix = state
        .config
        .mqtt_policy_topic
        .trim_end_matches('/')
        .to_string();
    let mut changed = state.policies.subscribe();
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    let mut reconnected = false;
    loop {
        tokio::select! {
            r = connected.changed() => {
                if r.is_err() { return }
                reconnected = true;
            }
            r = changed.changed() => if r.is_err() { return },
            _ = super::wait_stop(stop.clone()) => return,
        }
        if *connected.borrow() == 0 {
            continue;
        }
        let now = scope_messages(&state, &prefix);
        // After a reconnection everything is sent again: the broker may
        // have lost retained messages, and deletions made while it was
        // unreachable still clear their scopes.
        let resend = std::mem::take(&mut reconnected);
        let mut failed = false;
        for (topic, payload) in &now {
            if resend || published.get(topic) != Some(payload) {
                failed |= client
                    .publish_retained(topic, payload.clone().into_bytes())
                    .await
                    .is_err();
            }
        }
        for topic in published.keys().filter(|t| !now.contains_key(*t)) {
            failed |= client.publish_retained(topic, Vec::new()).await.is_err();
        }
        if failed {
            tracing::warn!("MQTT: publishing policies failed; retrying at reconnection");
        }
        published = now;
    }
}
