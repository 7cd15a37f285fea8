//! Runs the rules of `sonde-rules` in the server: each group on a timer of
//! its own, evaluated on a blocking thread through the server's PromQL
//! engine and stores (`Backend`), notifications posted over HTTP
//! (`Transport`), and SIGHUP reloads.

use std::sync::Arc;

use sonde_model::Series;
use sonde_query::Value;
use sonde_rules::eval::Backend;
use sonde_rules::notify::{Failure, Transport, TIMEOUT};
use sonde_rules::{stopped, LiveGroup, RulesConfig};
use tokio::sync::watch;

use crate::api::StoreQueryable;
use crate::app::{App, AppState};
use crate::config::{parse_duration, Config};

/// The rules' settings from the server's configuration.
pub fn rules_config(config: &Config) -> anyhow::Result<RulesConfig> {
    use anyhow::Context;
    let d = |name: &str, v: &str| {
        parse_duration(v).with_context(|| format!("setting {name}: {v:?} is not a duration"))
    };
    Ok(RulesConfig {
        rule_files: config.rule_files.clone(),
        default_interval: d("rule_evaluation_interval", &config.rule_evaluation_interval)?,
        resend_delay: d("alert_resend_delay", &config.alert_resend_delay)?,
        anomaly_step: d("anomaly_step", &config.anomaly_step)?,
        anomaly_detection: sonde_rules::builtin::Mode::parse(&config.anomaly_detection)
            .map_err(anyhow::Error::msg)?,
        external_url: if config.external_url.is_empty() {
            format!("http://{}", config.api_addr)
        } else {
            config.external_url.clone()
        },
        webhooks: config.alert_webhooks.clone(),
        alertmanagers: config.alertmanager_urls.clone(),
    })
}

/// Notifications as HTTP POSTs of JSON.
struct Http(ureq::Agent);

impl Transport for Http {
    fn post(&self, url: &str, body: &str) -> Result<(), Failure> {
        match self
            .0
            .post(url)
            .set("Content-Type", "application/json")
            .send_string(body)
        {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                Err(Failure {
                    retryable: code >= 500 || code == 429,
                    message: format!("HTTP {code}: {text}"),
                })
            }
            Err(e) => Err(Failure {
                retryable: true,
                message: e.to_string(),
            }),
        }
    }
}

fn http() -> Arc<dyn Transport> {
    Arc::new(Http(
        ureq::AgentBuilder::new()
            .timeout(TIMEOUT)
            .user_agent(concat!("Sonde/", env!("CARGO_PKG_VERSION")))
            .build(),
    ))
}

impl Backend for App {
    fn query(&self, expr: &str, t: i64) -> Result<Value, String> {
        self.engine
            .instant(&StoreQueryable(self.store.clone()), expr, t)
            .map_err(|e| e.to_string())
    }

    fn query_range(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Value, String> {
        self.engine
            .range(&StoreQueryable(self.store.clone()), expr, start, end, step)
            .map_err(|e| e.to_string())
    }

    fn select(
        &self,
        matchers: &[sonde_model::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, String> {
        self.store
            .select(matchers, mint, maxt)
            .map_err(|e| e.to_string())
    }

    fn append(&self, series: &[Series]) -> Result<(), String> {
        let report = self.store.append(series).map_err(|e| e.to_string())?;
        match report.first_error {
            Some((_, detail)) if report.accepted == 0 && report.duplicates == 0 => Err(detail),
            _ => Ok(()),
        }
    }

    /// An `anomaly.detected` event: listed by `/api/v1/events`, streamed by
    /// the live tail, attributed to the series' service when it names one.
    fn anomaly(
        &self,
        rule: &str,
        series: &sonde_model::Labels,
        a: &sonde_analysis::Assessment,
        t: i64,
    ) {
        use sonde_model::records::{AttrValue, LogRecord, Origin};
        let service = ["service_name", "job", "service"]
            .iter()
            .find_map(|k| series.get(k))
            .unwrap_or("sonde")
            .to_string();
        let mut attributes = vec![
            ("alert.rule".to_string(), AttrValue::Str(rule.to_string())),
            ("anomaly.score".to_string(), AttrValue::Double(a.score)),
            (
                "anomaly.observed".to_string(),
                AttrValue::Double(a.observed),
            ),
            (
                "anomaly.expected_low".to_string(),
                AttrValue::Double(a.expected_low),
            ),
            (
                "anomaly.expected_high".to_string(),
                AttrValue::Double(a.expected_high),
            ),
            (
                "anomaly.series".to_string(),
                AttrValue::Str(series.to_string()),
            ),
        ];
        attributes.extend(series.iter().map(|l| {
            (
                format!("series.{}", l.name),
                AttrValue::Str(l.value.clone()),
            )
        }));
        let t_ns = t.saturating_mul(1_000_000);
        let event = LogRecord {
            time_ns: t_ns,
            observed_ns: t_ns,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: a.describe(),
            event_name: "anomaly.detected".into(),
            trace_id: None,
            span_id: None,
            flags: 0,
            origin: std::sync::Arc::new(Origin {
                service,
                host: series.get("host_name").unwrap_or_default().to_string(),
                scope_name: "sonde.alerting".into(),
                ..Origin::default()
            }),
            attributes,
        };
        match self.records.append_logs(vec![event]) {
            Ok(stored) if self.tail.has_subscribers() => {
                self.tail.publish(crate::tail::TailBatch::Logs(stored));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot store an anomaly event: {e}"),
        }
    }
}

/// Runs the rules until `stop`: the notifiers, a task per group, and the
/// SIGHUP handler that reloads.
pub fn spawn(state: AppState, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let senders = state.alerting.notifier.spawn(http(), stop.clone());
    let hup = {
        let (state, mut stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        "cannot install the SIGHUP handler; reload with POST /-/reload: {e}"
                    );
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading rules");
                        let st = state.clone();
                        let _ = tokio::task::spawn_blocking(move || st.alerting.reload(st.clock.now_ms())).await;
                    }
                    _ = stopped(&mut stop) => return,
                }
            }
        })
    };
    let mut stop = stop;
    tokio::spawn(async move {
        let mut generation = state.alerting.generations();
        loop {
            generation.borrow_and_update();
            let tasks: Vec<_> = state
                .alerting
                .groups()
                .into_iter()
                .map(|g| tokio::spawn(run_group(state.clone(), g)))
                .collect();
            let stopped = tokio::select! {
                _ = generation.changed() => false,
                _ = stopped(&mut stop) => true,
            };
            for t in &tasks {
                t.abort();
            }
            if stopped {
                break;
            }
        }
        let _ = hup.await;
        for s in senders {
            let _ = s.await;
        }
    })
}

async fn run_group(state: AppState, group: Arc<LiveGroup>) {
    let mut tick = tokio::time::interval(group.def.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if group.retired() {
            return;
        }
        let (st, g) = (state.clone(), group.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let now = st.clock.now_ms();
            st.alerting.evaluate(st.as_ref(), &g, now);
        })
        .await;
    }
}
