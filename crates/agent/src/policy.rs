//! Runtime policies: the agent subscribes through the SDK's
//! [`PolicySubscription`] (kind `agent`, its service name, host = the host
//! name), over Server-Sent Events from Sonde's API or retained MQTT
//! messages, and hands each effective policy to the loop as a
//! [`PolicyUpdate`], which the loop applies at once. The status reports
//! (API source only) carry the sink's counters as the agent's health.

use std::sync::Arc;
use std::time::Duration;

use sonde_sdk::export::Sink;
use sonde_sdk::policy::{
    ClientIdentity, EffectivePolicy, Health, PolicySource, PolicySubscription,
};

use crate::agent::{Control, PolicyUpdate};
use crate::host::Host;
use crate::Config;

/// Keeps the subscription alive; dropping it unsubscribes.
pub type Subscription = PolicySubscription;

/// The id this agent reports as (and, with `-otlp` and `-policies`, its
/// MQTT client ids).
pub fn client_id(host: &Host) -> String {
    format!("{}-agent-{}", host.name, std::process::id())
}

/// The loop's view of an effective policy.
pub fn update_from(p: &EffectivePolicy) -> PolicyUpdate {
    PolicyUpdate {
        version: p.version,
        interval: p.metric_interval_ms.map(Duration::from_millis),
        collectors: p.collectors.clone(),
    }
}

/// The agent's health: its sink's counters.
pub fn health(sink: &dyn Sink) -> Health {
    let s = sink.stats();
    Health {
        healthy: s.last_error.is_none() && s.dropped_batches == 0,
        exported_batches: s.sent_batches,
        dropped_batches: s.dropped_batches,
        last_error: s.last_error,
    }
}

/// Subscribes to the policies of `source`.
pub fn subscribe(
    source: &PolicySource,
    host: &Host,
    config: &Config,
    control: Arc<Control>,
    sink: Arc<dyn Sink>,
) -> Subscription {
    let identity = ClientIdentity {
        client_id: client_id(host),
        kind: "agent".into(),
        service: config.service_name.clone(),
        host: host.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    PolicySubscription::start(
        source,
        identity,
        Box::new(move |p: &EffectivePolicy| control.apply(update_from(p))),
        Box::new(move || health(sink.as_ref())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_fall_back_to_the_defaults() {
        let p = EffectivePolicy {
            version: 7,
            settings: sonde_policy::Settings {
                metric_interval_ms: Some(500),
                collectors: Some(vec!["cpu".into()]),
                ..Default::default()
            },
        };
        assert_eq!(
            update_from(&p),
            PolicyUpdate {
                version: 7,
                interval: Some(Duration::from_millis(500)),
                collectors: Some(vec!["cpu".into()]),
            }
        );
        let none = update_from(&EffectivePolicy {
            version: 8,
            ..Default::default()
        });
        assert_eq!((none.interval, none.collectors), (None, None));
    }

    #[test]
    fn health_is_the_sinks_counters() {
        let sink = sonde_sdk::export::MemorySink::new();
        sink.send(sonde_sdk::export::Signal::Metrics, vec![1]);
        assert_eq!(
            health(sink.as_ref()),
            Health {
                healthy: true,
                exported_batches: 1,
                dropped_batches: 0,
                last_error: None,
            }
        );
    }
}
