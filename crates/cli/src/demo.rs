//! `sonde demo`: the server with its embedded defaults, plus a simulated
//! shop instrumented with Sonde's SDK and the host agent, all sending to it,
//! so a fresh install has live data in every view.

use std::time::Duration;

use anyhow::Context;
use sonde_demo::{Demo, DemoConfig};

use sonde_server::config::{parse_duration, Config};
use sonde_server::Companion;

struct Running {
    demo: Demo,
    agent: Option<sonde_agent::Handle>,
}

impl Companion for Running {
    fn stop(self: Box<Self>) {
        tracing::info!("stopping the demo's services and agent");
        if let Some(agent) = self.agent {
            agent.stop();
        }
        self.demo.stop();
    }
}

/// A listen address as a URL clients on this machine can use.
fn local_url(addr: &str) -> String {
    let addr = addr
        .strip_prefix("0.0.0.0:")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| addr.to_string());
    format!("http://{addr}")
}

/// Splits the demo's own flags from the server's.
fn demo_flags(args: &[String]) -> anyhow::Result<(DemoConfig, bool, Vec<String>)> {
    let mut demo = DemoConfig::default();
    let mut agent = true;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .with_context(|| format!("flag {name} needs a value")),
            }
        };
        match key {
            "--rate" => {
                demo.rate = value(key)?
                    .parse()
                    .context("--rate is requests per second, like 20")?
            }
            "--workers" => demo.workers = value(key)?.parse().context("--workers is a number")?,
            "--incident-period" => {
                let v = value(key)?;
                demo.incident_period = parse_duration(&v)
                    .filter(|d| *d >= Duration::from_secs(10))
                    .with_context(|| {
                        format!("--incident-period {v:?}: a duration of 10s or more")
                    })?
            }
            "--no-agent" => agent = false,
            _ => {
                rest.push(a.clone());
            }
        }
    }
    Ok((demo, agent, rest))
}

/// The demo's alerts, used when no `rule_files` are configured: the
/// incidents the simulation injects should be caught. Anomalies in every
/// service's latency, errors and traffic need no rule here: the built-in
/// anomaly rules (`anomaly_detection`) watch them; this adds the alert
/// that pages.
const DEMO_RULES: &str = r#"groups:
  - name: shop
    rules:
      - record: service:server_errors:ratio_rate1m
        expr: |
          sum by (service_name) (rate(traces_span_metrics_calls_total{span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER",status_code="STATUS_CODE_ERROR"}[1m]))
          / sum by (service_name) (rate(traces_span_metrics_calls_total{span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"}[1m]))
      - alert: HighErrorRate
        expr: service:server_errors:ratio_rate1m > 0.05
        for: 10s
        keep_firing_for: 30s
        labels: {severity: page}
        annotations:
          summary: '{{ $labels.service_name }}: {{ $value | humanizePercentage }} of requests fail'
"#;

pub fn run(
    args: &[String],
    init_logging: impl FnOnce(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (mut demo, with_agent, rest) = demo_flags(args)?;
    let mut config = Config::load(&rest, std::env::vars())?;
    init_logging(&config.log_level)?;
    if config.rule_files.is_empty() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let path = config.data_dir.join("demo-rules.yml");
        std::fs::write(&path, DEMO_RULES)
            .with_context(|| format!("cannot write {}", path.display()))?;
        config.rule_files = vec![path.to_string_lossy().into_owned()];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sonde")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(sonde_server::serve_with(config, move |cfg| {
        let api = local_url(&cfg.api_addr);
        demo.endpoint = local_url(&cfg.otlp_http_addr);
        demo.api = Some(api.clone());
        let agent = if with_agent {
            let agent_cfg = sonde_agent::Config {
                endpoint: demo.endpoint.clone(),
                api: Some(api.clone()),
                ..sonde_agent::Config::default()
            };
            match sonde_agent::spawn(agent_cfg) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!("the demo runs without the host agent: {e}");
                    None
                }
            }
        } else {
            None
        };
        let rate = demo.rate;
        let demo = Demo::start(demo);
        eprintln!(
            "\n  Sonde demo: a simulated shop sends traces, logs, events and metrics ({rate} requests/s),\n  \
             and the agent sends this host's metrics.\n\n  \
             UI:       {api}/\n  \
             PromQL:   sonde query 'sum by (job) (rate(http_server_requests_total[1m]))'\n  \
             Traces:   sonde traces --service checkout --errors true\n  \
             Logs:     sonde logs --service checkout --follow true\n  \
             Jaeger:   {api}/api/services (Grafana's Jaeger data source)\n  \
             Policies: sonde policy set debug --scope service:payments --sampling 0.1 --ttl 5m\n  \
             Alerts:   {api}/api/v1/alerts (rules in the data dir's demo-rules.yml)\n  \
             Anomaly:  {api}/anomalies (built-in detection on every service and host)\n\n  \
             Ctrl-C stops it.\n"
        );
        Ok(Box::new(Running { demo, agent }) as Box<dyn Companion>)
    }))
}

#[cfg(test)]
mod tests {
    use sonde_pipeline::names;

    #[test]
    fn the_demo_rules_count_requests_as_the_pipeline_defines_them() {
        let requests = names::requests(names::SPAN_CALLS, &[]);
        let errors = names::requests(names::SPAN_CALLS, &[names::ERROR_MATCHER]);
        assert!(super::DEMO_RULES.contains(&format!("rate({requests}[1m])")));
        assert!(super::DEMO_RULES.contains(&format!("rate({errors}[1m])")));
    }
}
