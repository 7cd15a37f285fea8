//! Configuration: one TOML file, every key overridable by a `SONDE_<KEY>`
//! environment variable and by a `--<key>` flag (dashes for underscores), in
//! that order of precedence (flag over env over file over default).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use sonde_store::{FsyncPolicy, StoreOptions};

/// `SONDE_*` variables of the test and benchmark tooling, not settings.
const TOOLING_ENV: [&str; 12] = [
    "CRASH_POINT",
    "SHARED",
    "REQUIRE_SHARED",
    "REQUIRE_BROKERS",
    "TANSU",
    "TOOLS",
    "BIN",
    "TEST_CACHE",
    "SKIP_NODE",
    "SKIP_UI",
    "UI_DEMO",
    "UI_KEEP",
];

/// Every setting of `sonde serve`. See `sonde.example.toml` for each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the WAL and blocks live.
    pub data_dir: PathBuf,
    /// Prometheus-compatible HTTP API, remote write, Sonde's own endpoints.
    pub api_addr: String,
    /// OTLP over gRPC.
    pub otlp_grpc_addr: String,
    /// OTLP over HTTP (protobuf and JSON).
    pub otlp_http_addr: String,
    /// Largest accepted request body, compressed or not.
    pub max_request_bytes: usize,
    /// Ingest requests handled at once; more are refused with 429 so memory
    /// stays bounded under overload.
    pub max_inflight_writes: usize,
    /// `always` (fsync before every acknowledgement), `interval` or `never`.
    pub wal_fsync: String,
    /// Period of the fsync when `wal_fsync = "interval"`.
    pub wal_fsync_interval: String,
    /// Size past which a WAL segment is closed and a new one begun.
    pub wal_segment_size: String,
    /// Time range of a block cut from the in-memory head.
    pub block_range: String,
    /// How late a sample may arrive behind its series' newest one.
    pub out_of_order_window: String,
    /// How far ahead of the server clock a sample may be.
    pub future_tolerance: String,
    /// Age after which data is deleted (`0` keeps it forever).
    pub retention: String,
    /// Size of the data directory above which the oldest blocks are deleted
    /// (`0` for no limit), e.g. `50GiB`.
    pub retention_size: String,
    /// The share of `retention_size` that spans, logs and events get.
    pub records_retention_share: String,
    /// Spans and logs held in memory (queryable) before they are written to
    /// a Parquet segment; ingest is refused at twice this while writing lags.
    pub records_buffer_size: String,
    /// The longest spans and logs stay in memory before being written.
    pub records_flush_interval: String,
    /// Attributes kept per span, log or event; more are dropped and counted.
    pub max_record_attributes: usize,
    /// Longer attribute values are cut and end with a marker.
    pub max_attribute_value_length: usize,
    /// Exemplars kept in memory (and the WAL), across all series; 0 disables.
    pub max_exemplars: usize,
    /// Live-tail subscribers at once.
    pub max_tail_subscribers: usize,
    /// Live query streams (`/api/v1/stream/query_range`) open at once.
    pub max_live_queries: usize,
    /// Bytes of spans and logs queued for one live-tail subscriber before
    /// it counts as too slow and is disconnected.
    pub tail_subscriber_buffer: String,
    pub max_series: usize,
    pub max_series_per_metric: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// How far back an instant vector selector looks for a sample.
    pub lookback_delta: String,
    /// Samples one query may hold in memory.
    pub query_max_samples: usize,
    pub query_timeout: String,
    /// Queries evaluated at once; more wait.
    pub max_concurrent_queries: usize,
    /// Log filter, as in `RUST_LOG` (`info`, `sonde=debug`).
    pub log_level: String,
    /// Alerting and recording rule files (Prometheus format), as globs.
    pub rule_files: Vec<String>,
    /// How often rule groups are evaluated unless a group sets `interval`.
    pub rule_evaluation_interval: String,
    /// URLs receiving Alertmanager's webhook payload on alert changes.
    pub alert_webhooks: Vec<String>,
    /// Alertmanagers (base URLs) that alerts are sent to.
    pub alertmanager_urls: Vec<String>,
    /// How often a firing alert is sent again.
    pub alert_resend_delay: String,
    /// Sonde's URL as users reach it, for links in alerts (default
    /// `http://<api_addr>`).
    pub external_url: String,
    /// Built-in anomaly rules on every service's and host's key series:
    /// `auto` (events and alerts, never notified), `notify` (also sent to
    /// the receivers) or `off`.
    pub anomaly_detection: String,
    /// How often anomaly rules' detectors learn a point unless a rule sets
    /// `step` (at least the group's interval).
    pub anomaly_step: String,
    /// How long, in the data's own time, metrics derived from spans wait
    /// for late data before a second is final.
    pub pipeline_lateness: String,
    /// Derived series not updated for this long (data time) are dropped.
    pub pipeline_idle: String,
    /// A trace is final, and its critical path measured, once none of its
    /// spans arrived for this long.
    pub trace_quiet: String,
    /// Traces held open at once for the critical path.
    pub max_open_traces: usize,
    /// Recently stored spans and log records remembered to drop their
    /// re-deliveries (0: off).
    pub dedup_window_records: usize,
    /// Kafka bootstrap servers, `host:port,...`; empty: no Kafka ingest.
    pub kafka_brokers: String,
    /// The consumer group: one per Sonde deployment, shared by its nodes.
    pub kafka_group_id: String,
    /// This node's static member id in the group (empty: derived from the
    /// host name and the data directory).
    pub kafka_instance_id: String,
    /// Topics read, as `TOPIC:ENCODING[:SIGNAL]`.
    pub kafka_topics: Vec<String>,
    /// Topic that malformed messages are copied to (empty: none).
    pub kafka_dead_letter_topic: String,
    /// Message headers that become resource attributes or labels.
    pub kafka_header_attributes: Vec<String>,
    /// Attribute the message key becomes (empty: the key is ignored).
    pub kafka_key_attribute: String,
    /// Further librdkafka consumer settings, `name=value`.
    pub kafka_options: Vec<String>,
    /// MQTT broker, `mqtt://host:port`; empty: no MQTT.
    pub mqtt_url: String,
    /// `5` or `3.1.1`.
    pub mqtt_protocol: String,
    /// Client id of the persistent session: keep it stable across restarts
    /// so the broker holds messages while Sonde is down.
    pub mqtt_client_id: String,
    /// Subscriptions, as `TOPIC-TEMPLATE:ENCODING[:SIGNAL]`; `{name}` levels
    /// become labels.
    pub mqtt_subscriptions: Vec<String>,
    /// QoS of the subscriptions: 0 or 1.
    pub mqtt_qos: usize,
    /// Topic prefix under which policies are published as retained
    /// messages, one per scope (empty: not published).
    pub mqtt_policy_topic: String,
    /// JSON payloads: the field holding the time (seconds, milliseconds,
    /// microseconds or nanoseconds since the epoch, or RFC 3339); arrival
    /// time when absent.
    pub json_timestamp_field: String,
    /// JSON payloads: string fields become `labels` or a `log`.
    pub json_string_fields: String,
    /// InfluxDB line protocol timestamps: `ns`, `us`, `ms` or `s`.
    pub influx_precision: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./sonde-data"),
            api_addr: "127.0.0.1:7070".into(),
            otlp_grpc_addr: "127.0.0.1:4317".into(),
            otlp_http_addr: "127.0.0.1:4318".into(),
            max_request_bytes: 16 << 20,
            max_inflight_writes: 64,
            wal_fsync: "interval".into(),
            wal_fsync_interval: "1s".into(),
            wal_segment_size: "128MiB".into(),
            block_range: "2h".into(),
            out_of_order_window: "30m".into(),
            future_tolerance: "10m".into(),
            retention: "15d".into(),
            retention_size: "0".into(),
            records_retention_share: "0.5".into(),
            records_buffer_size: "128MiB".into(),
            records_flush_interval: "10m".into(),
            max_record_attributes: 128,
            max_attribute_value_length: 4096,
            max_exemplars: 100_000,
            max_tail_subscribers: 64,
            max_live_queries: 64,
            tail_subscriber_buffer: "4MiB".into(),
            max_series: 2_000_000,
            max_series_per_metric: 200_000,
            max_labels_per_series: 64,
            max_label_name_length: 256,
            max_label_value_length: 4096,
            lookback_delta: "5m".into(),
            query_max_samples: 50_000_000,
            query_timeout: "2m".into(),
            max_concurrent_queries: 8,
            log_level: "info".into(),
            rule_files: Vec::new(),
            rule_evaluation_interval: "1s".into(),
            alert_webhooks: Vec::new(),
            alertmanager_urls: Vec::new(),
            alert_resend_delay: "1m".into(),
            external_url: String::new(),
            anomaly_detection: "auto".into(),
            anomaly_step: "1s".into(),
            pipeline_lateness: "2s".into(),
            pipeline_idle: "15m".into(),
            trace_quiet: "5s".into(),
            max_open_traces: 50_000,
            dedup_window_records: sonde_records::DEFAULT_DEDUP_WINDOW,
            kafka_brokers: String::new(),
            kafka_group_id: "sonde".into(),
            kafka_instance_id: String::new(),
            kafka_topics: vec![
                "otlp_metrics:otlp_proto:metrics".into(),
                "otlp_spans:otlp_proto:traces".into(),
                "otlp_logs:otlp_proto:logs".into(),
            ],
            kafka_dead_letter_topic: String::new(),
            kafka_header_attributes: vec!["tenant".into(), "service.name".into()],
            kafka_key_attribute: String::new(),
            kafka_options: Vec::new(),
            mqtt_url: String::new(),
            mqtt_protocol: "5".into(),
            mqtt_client_id: "sonde".into(),
            mqtt_subscriptions: vec![
                "otlp/metrics:otlp_proto:metrics".into(),
                "otlp/traces:otlp_proto:traces".into(),
                "otlp/logs:otlp_proto:logs".into(),
            ],
            mqtt_qos: 1,
            mqtt_policy_topic: "sonde/policies".into(),
            json_timestamp_field: "timestamp".into(),
            json_string_fields: "labels".into(),
            influx_precision: "ns".into(),
        }
    }
}

impl Config {
    /// Builds the configuration from `--config FILE`, the environment and
    /// the remaining `--key value` / `--key=value` flags.
    pub fn load(
        args: &[String],
        env: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut file: Option<PathBuf> = None;
        let mut overrides: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in env {
            if let Some(key) = k.strip_prefix("SONDE_") {
                if key == "CONFIG" {
                    file = Some(PathBuf::from(v));
                } else if !TOOLING_ENV.contains(&key) {
                    overrides.insert(key.to_ascii_lowercase(), v);
                }
            }
        }
        let mut flags = args.iter();
        while let Some(arg) = flags.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?}: settings are given as --key value");
            };
            let (key, value) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = flags
                        .next()
                        .with_context(|| format!("flag --{flag} needs a value"))?;
                    (flag.to_string(), v.clone())
                }
            };
            if key == "config" {
                file = Some(PathBuf::from(value));
            } else {
                overrides.insert(key.replace('-', "_"), value);
            }
        }
        let mut table: toml::Table = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                text.parse()
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        let defaults = toml::Table::try_from_defaults();
        for (key, value) in overrides {
            let typed = match defaults.get(&key) {
                // Lists: comma-separated values.
                Some(toml::Value::Array(_)) => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_string()))
                        .collect(),
                ),
                Some(toml::Value::Integer(_)) => {
                    toml::Value::Integer(value.parse().with_context(|| {
                        format!("setting {key} needs a whole number, got {value:?}")
                    })?)
                }
                Some(_) => toml::Value::String(value),
                None => bail!("unknown setting {key:?}; see sonde.example.toml for the list"),
            };
            table.insert(key, typed);
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("invalid configuration: {}", e.message())
                })?;
        config.store_options()?;
        config.records_config()?;
        config.durations()?;
        config.broker_routes()?;
        config.decode_options()?;
        Ok(config)
    }

    pub fn store_options(&self) -> anyhow::Result<StoreOptions> {
        let ms = |name: &str, v: &str| -> anyhow::Result<i64> {
            Ok(parse_duration(v)
                .with_context(|| {
                    format!("setting {name}: {v:?} is not a duration like 30s, 5m, 2h, 15d")
                })?
                .as_millis() as i64)
        };
        let fsync = match self.wal_fsync.as_str() {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::IntervalMs(
                ms("wal_fsync_interval", &self.wal_fsync_interval)?.max(1) as u64,
            ),
            "never" => FsyncPolicy::Never,
            other => bail!("setting wal_fsync: {other:?} is not one of always, interval, never"),
        };
        Ok(StoreOptions {
            fsync,
            block_range_ms: ms("block_range", &self.block_range)?.max(60_000),
            out_of_order_window_ms: ms("out_of_order_window", &self.out_of_order_window)?,
            future_tolerance_ms: ms("future_tolerance", &self.future_tolerance)?,
            retention_ms: ms("retention", &self.retention)?,
            retention_bytes: self.retention_budgets()?.0,
            wal_segment_bytes: parse_size(&self.wal_segment_size).with_context(|| {
                format!(
                    "setting wal_segment_size: {:?} is not a size like 128MiB",
                    self.wal_segment_size
                )
            })?,
            max_series: self.max_series,
            max_series_per_metric: self.max_series_per_metric,
            max_labels_per_series: self.max_labels_per_series,
            max_label_name_len: self.max_label_name_length,
            max_label_value_len: self.max_label_value_length,
        })
    }

    /// The record store's settings. Retention by age is the metrics'
    /// `retention`; the size limit is shared at run time (see `app.rs`).
    pub fn records_config(&self) -> anyhow::Result<sonde_records::Config> {
        let mut c = sonde_records::Config::new(self.data_dir.join("records"));
        c.sync_each_write = self.wal_fsync == "always";
        c.buffer_bytes = parse_size(&self.records_buffer_size)
            .with_context(|| {
                format!(
                    "setting records_buffer_size: {:?} is not a size like 128MiB",
                    self.records_buffer_size
                )
            })?
            .max(1 << 20) as usize;
        c.flush_after = parse_duration(&self.records_flush_interval).with_context(|| {
            format!(
                "setting records_flush_interval: {:?} is not a duration",
                self.records_flush_interval
            )
        })?;
        c.retention = parse_duration(&self.retention).with_context(|| {
            format!("setting retention: {:?} is not a duration", self.retention)
        })?;
        c.dedup_window = self.dedup_window_records;
        Ok(c)
    }

    /// This node's stable member id in the consumer group: the setting, or
    /// one derived from the host name and the data directory, which are what
    /// a restarted node keeps (two nodes on one host have two directories);
    /// `None` for `kafka_instance_id = "none"` (dynamic membership).
    pub fn kafka_member_id(&self) -> Option<String> {
        let cfg = self;
        match cfg.kafka_instance_id.as_str() {
            "none" => return None,
            "" => {}
            id => return Some(id.to_string()),
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = dir
            .to_string_lossy()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        Some(format!("sonde-{host}-{hash:016x}"))
    }

    /// `retention_size` split into the metrics' budget (TSDB blocks and
    /// WAL) and the spans' and logs' (Parquet segments), by
    /// `records_retention_share`; 0 means no limit. Each signal is held to
    /// its own budget, so a burst of one (a WAL spike, say) never deletes
    /// the other's data.
    pub fn retention_budgets(&self) -> anyhow::Result<(u64, u64)> {
        let total = parse_size(&self.retention_size).with_context(|| {
            format!(
                "setting retention_size: {:?} is not a size like 0, 500MiB, 20GB",
                self.retention_size
            )
        })?;
        let share = self
            .records_retention_share
            .parse::<f64>()
            .ok()
            .filter(|s| (0.0..=1.0).contains(s))
            .with_context(|| {
                format!(
                    "setting records_retention_share: {:?} is not a share from 0 to 1, like 0.5",
                    self.records_retention_share
                )
            })?;
        if total == 0 {
            return Ok((0, 0));
        }
        let records = ((total as f64 * share) as u64).max(1);
        let metrics = total.saturating_sub(records).max(1);
        Ok((metrics, records))
    }

    /// `tail_subscriber_buffer` in bytes.
    pub fn tail_buffer_bytes(&self) -> anyhow::Result<usize> {
        Ok(parse_size(&self.tail_subscriber_buffer).with_context(|| {
            format!(
                "setting tail_subscriber_buffer: {:?} is not a size like 4MiB",
                self.tail_subscriber_buffer
            )
        })? as usize)
    }

    /// The stream processors' settings.
    pub fn pipeline_options(&self) -> anyhow::Result<sonde_pipeline::Options> {
        let ms = |name: &str, v: &str| {
            parse_duration(v)
                .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
                .with_context(|| format!("setting {name}: {v:?} is not a duration"))
        };
        Ok(sonde_pipeline::Options {
            lateness_ms: ms("pipeline_lateness", &self.pipeline_lateness)?,
            idle_ms: ms("pipeline_idle", &self.pipeline_idle)?.max(1_000),
            trace_quiet_ms: ms("trace_quiet", &self.trace_quiet)?,
            max_open_traces: self.max_open_traces.max(1),
        })
    }

    /// (lookback delta, query timeout).
    pub fn durations(&self) -> anyhow::Result<(Duration, Duration)> {
        let d = |name: &str, v: &str| {
            parse_duration(v).with_context(|| format!("setting {name}: {v:?} is not a duration"))
        };
        Ok((
            d("lookback_delta", &self.lookback_delta)?,
            d("query_timeout", &self.query_timeout)?,
        ))
    }
}

impl Config {
    /// (Kafka routes, MQTT routes), checked.
    pub fn broker_routes(
        &self,
    ) -> anyhow::Result<(Vec<crate::brokers::Route>, Vec<crate::brokers::Route>)> {
        use crate::brokers::{Encoding, Route};
        let parse = |key: &str, specs: &[String]| -> anyhow::Result<Vec<Route>> {
            specs
                .iter()
                .map(|s| Route::parse(s).with_context(|| format!("setting {key}")))
                .collect()
        };
        let kafka = parse("kafka_topics", &self.kafka_topics)?;
        if let Some(r) = kafka.iter().find(|r| r.encoding == Encoding::Sparkplug) {
            bail!(
                "setting kafka_topics: {}: Sparkplug B is read from MQTT only",
                r.topic
            );
        }
        let mqtt = parse("mqtt_subscriptions", &self.mqtt_subscriptions)?;
        if !matches!(self.mqtt_protocol.as_str(), "5" | "3.1.1") {
            bail!(
                "setting mqtt_protocol: {:?} is not 5 or 3.1.1",
                self.mqtt_protocol
            );
        }
        if self.mqtt_qos > 1 {
            bail!("setting mqtt_qos: {} is not 0 or 1", self.mqtt_qos);
        }
        if !self.mqtt_url.is_empty() {
            crate::brokers::mqtt::parse_url(&self.mqtt_url).context("setting mqtt_url")?;
        }
        Ok((kafka, mqtt))
    }

    /// Options of the JSON and line-protocol decoders.
    pub fn decode_options(&self) -> anyhow::Result<crate::brokers::DecodeOptions> {
        use sonde_ingest::influx::Precision;
        use sonde_ingest::json_telemetry::StringFields;
        let Some(influx_precision) = Precision::parse(&self.influx_precision) else {
            bail!(
                "setting influx_precision: {:?} is not ns, us, ms or s",
                self.influx_precision
            );
        };
        let string_fields = match self.json_string_fields.as_str() {
            "labels" => StringFields::Labels,
            "log" => StringFields::Log,
            other => bail!("setting json_string_fields: {other:?} is not labels or log"),
        };
        let json = sonde_ingest::json_telemetry::JsonOptions {
            timestamp_field: self.json_timestamp_field.clone(),
            string_fields,
            ..Default::default()
        };
        Ok(crate::brokers::DecodeOptions {
            json,
            influx_precision,
        })
    }
}

/// One setting for `sonde serve --help`: its key, its default as a flag
/// value, and the comment above it in `sonde.example.toml`.
#[derive(Debug, Clone)]
pub struct SettingDoc {
    pub key: String,
    pub default: String,
    pub help: String,
}

/// The example configuration, the settings' documentation.
pub const EXAMPLE_TOML: &str = include_str!("../../../sonde.example.toml");

/// Every setting, in the example file's order, with its help.
pub fn settings() -> Vec<SettingDoc> {
    let defaults = toml::Table::try_from_defaults();
    let mut docs: Vec<SettingDoc> = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in EXAMPLE_TOML.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim());
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if let Some(v) = defaults.get(key) {
            let text = |v: &toml::Value| match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => String::new(),
            };
            let default = match v {
                toml::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
                other => text(other),
            };
            docs.push(SettingDoc {
                key: key.to_string(),
                default,
                help: comment.join(" "),
            });
        }
        comment.clear();
    }
    // A key the example does not list still gets a flag.
    for key in defaults.keys() {
        if !docs.iter().any(|d| &d.key == key) {
            docs.push(SettingDoc {
                key: key.clone(),
                default: String::new(),
                help: String::new(),
            });
        }
    }
    docs
}

trait Defaults {
    fn try_from_defaults() -> toml::Table;
}

impl Defaults for toml::Table {
    /// The default config as a table, to learn each key's type.
    fn try_from_defaults() -> toml::Table {
        let d = Config::default();
        let mut t = toml::Table::new();
        let s = |v: &str| toml::Value::String(v.to_string());
        let i = |v: usize| toml::Value::Integer(v as i64);
        t.insert("data_dir".into(), s(&d.data_dir.to_string_lossy()));
        for (k, v) in [
            ("api_addr", &d.api_addr),
            ("otlp_grpc_addr", &d.otlp_grpc_addr),
            ("otlp_http_addr", &d.otlp_http_addr),
            ("wal_fsync", &d.wal_fsync),
            ("wal_fsync_interval", &d.wal_fsync_interval),
            ("wal_segment_size", &d.wal_segment_size),
            ("block_range", &d.block_range),
            ("out_of_order_window", &d.out_of_order_window),
            ("future_tolerance", &d.future_tolerance),
            ("retention", &d.retention),
            ("retention_size", &d.retention_size),
            ("tail_subscriber_buffer", &d.tail_subscriber_buffer),
            ("records_retention_share", &d.records_retention_share),
            ("records_buffer_size", &d.records_buffer_size),
            ("records_flush_interval", &d.records_flush_interval),
            ("lookback_delta", &d.lookback_delta),
            ("query_timeout", &d.query_timeout),
            ("log_level", &d.log_level),
            ("rule_evaluation_interval", &d.rule_evaluation_interval),
            ("alert_resend_delay", &d.alert_resend_delay),
            ("external_url", &d.external_url),
            ("anomaly_detection", &d.anomaly_detection),
            ("anomaly_step", &d.anomaly_step),
            ("pipeline_lateness", &d.pipeline_lateness),
            ("pipeline_idle", &d.pipeline_idle),
            ("trace_quiet", &d.trace_quiet),
            ("kafka_brokers", &d.kafka_brokers),
            ("kafka_group_id", &d.kafka_group_id),
            ("kafka_instance_id", &d.kafka_instance_id),
            ("kafka_dead_letter_topic", &d.kafka_dead_letter_topic),
            ("kafka_key_attribute", &d.kafka_key_attribute),
            ("mqtt_url", &d.mqtt_url),
            ("mqtt_protocol", &d.mqtt_protocol),
            ("mqtt_client_id", &d.mqtt_client_id),
            ("mqtt_policy_topic", &d.mqtt_policy_topic),
            ("json_timestamp_field", &d.json_timestamp_field),
            ("json_string_fields", &d.json_string_fields),
            ("influx_precision", &d.influx_precision),
        ] {
            t.insert(k.into(), s(v));
        }
        for (k, v) in [
            ("max_request_bytes", d.max_request_bytes),
            ("max_inflight_writes", d.max_inflight_writes),
            ("max_series", d.max_series),
            ("max_record_attributes", d.max_record_attributes),
            ("dedup_window_records", d.dedup_window_records),
            ("max_open_traces", d.max_open_traces),
            ("max_attribute_value_length", d.max_attribute_value_length),
            ("max_exemplars", d.max_exemplars),
            ("max_tail_subscribers", d.max_tail_subscribers),
            ("max_live_queries", d.max_live_queries),
            ("max_series_per_metric", d.max_series_per_metric),
            ("max_labels_per_series", d.max_labels_per_series),
            ("max_label_name_length", d.max_label_name_length),
            ("max_label_value_length", d.max_label_value_length),
            ("query_max_samples", d.query_max_samples),
            ("max_concurrent_queries", d.max_concurrent_queries),
            ("mqtt_qos", d.mqtt_qos),
        ] {
            t.insert(k.into(), i(v));
        }
        for (k, v) in [
            ("rule_files", &d.rule_files),
            ("alert_webhooks", &d.alert_webhooks),
            ("alertmanager_urls", &d.alertmanager_urls),
            ("kafka_topics", &d.kafka_topics),
            ("kafka_header_attributes", &d.kafka_header_attributes),
            ("kafka_options", &d.kafka_options),
            ("mqtt_subscriptions", &d.mqtt_subscriptions),
        ] {
            t.insert(
                k.into(),
                v.iter().map(|s| s.as_str()).collect::<Vec<_>>().into(),
            );
        }
        t
    }
}

/// Durations have one grammar everywhere (`sonde_model::time`).
pub use sonde_model::time::parse_duration;

/// Sizes: a byte count or a number with KB/MB/GB/TB or KiB/MiB/GiB/TiB.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..split].parse().ok()?;
    let mult: f64 = match s[split..].trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_env_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sonde.toml");
        std::fs::write(
            &file,
            "retention = \"30d\"\nmax_series = 10\napi_addr = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let args: Vec<String> = [
            "--config",
            file.to_str().unwrap(),
            "--max-series",
            "20",
            "--data-dir=/tmp/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let env = vec![
            ("SONDE_API_ADDR".to_string(), "127.0.0.1:2".to_string()),
            ("SONDE_MAX_SERIES".into(), "15".into()),
        ];
        let c = Config::load(&args, env.into_iter()).unwrap();
        assert_eq!(c.retention, "30d");
        assert_eq!(c.max_series, 20);
        assert_eq!(c.api_addr, "127.0.0.1:2");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn lists_are_comma_separated_in_flags_and_env() {
        let args: Vec<String> = ["--rule-files", "rules/*.yml, more/*.yaml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = vec![(
            "SONDE_ALERT_WEBHOOKS".to_string(),
            "http://a/hook".to_string(),
        )];
        let c = Config::load(&args, env.into_iter()).unwrap();
        assert_eq!(c.rule_files, ["rules/*.yml", "more/*.yaml"]);
        assert_eq!(c.alert_webhooks, ["http://a/hook"]);
        assert!(c.alertmanager_urls.is_empty());
    }

    #[test]
    fn bad_settings_are_explained() {
        let err = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            Config::load(&args, std::iter::empty())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["--no-such-key", "1"]).contains("unknown setting"));
        assert!(err(&["--max-series", "lots"]).contains("whole number"));
        assert!(err(&["--wal-fsync", "sometimes"]).contains("not one of"));
        assert!(err(&["--retention", "forever"]).contains("not a duration"));
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sonde.example.toml");
        let args = vec!["--config".to_string(), path.to_string()];
        let c = Config::load(&args, std::iter::empty()).unwrap();
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn the_kafka_member_id_is_stable_per_host_and_data_directory() {
        let a = Config {
            data_dir: "/tmp/sonde-a".into(),
            ..Config::default()
        };
        let mut b = a.clone();
        assert_eq!(a.kafka_member_id(), b.kafka_member_id());
        b.data_dir = "/tmp/sonde-b".into();
        assert_ne!(a.kafka_member_id(), b.kafka_member_id());
        b.kafka_instance_id = "node-7".into();
        assert_eq!(b.kafka_member_id().as_deref(), Some("node-7"));
        b.kafka_instance_id = "none".into();
        assert_eq!(b.kafka_member_id(), None);
    }

    #[test]
    fn each_signal_has_its_own_share_of_retention_size() {
        let c = Config {
            retention_size: "1000".into(),
            records_retention_share: "0.3".into(),
            ..Config::default()
        };
        assert_eq!(c.retention_budgets().unwrap(), (700, 300));
        assert_eq!(c.store_options().unwrap().retention_bytes, 700);
        let unlimited = Config::default();
        assert_eq!(unlimited.retention_budgets().unwrap(), (0, 0));
        let bad = Config {
            records_retention_share: "2".into(),
            ..Config::default()
        };
        assert!(bad
            .retention_budgets()
            .unwrap_err()
            .to_string()
            .contains("records_retention_share"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("15"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("0"), Some(0));
    }
}
