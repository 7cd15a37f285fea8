//! The flags of `sonde agent`.

use sonde_sdk::export::Export;
use sonde_sdk::policy::PolicySource;

use crate::{collectors, parse_duration, Config, Error, Result};

pub const USAGE: &str = "usage: sonde agent [--key value ...]

Collects host metrics from /proc and /sys and sends them over OTLP/HTTP,
Kafka or MQTT.

  --export URL           where metrics go (--endpoint is the same flag):
                           http://host:4318   OTLP/HTTP (the default, on
                                              127.0.0.1)
                           kafka://host:9092[,host:port...]
                                              topic otlp_metrics, as the
                                              OpenTelemetry Collector writes
                                              (builds with feature kafka)
                           mqtt://host:1883   topic otlp/metrics, QoS 1,
                                              MQTT 5, gzip from 1 KiB
                         settings as ?key=value&...: for kafka topic_prefix
                         (otlp), compression (lz4|gzip|snappy|none),
                         linger_ms (100); for mqtt topic_prefix (otlp),
                         protocol (5|3.1.1), qos (1|0), client_id,
                         gzip_min_bytes (1024|never)
  --policies URL|none    where runtime collection policies come from (--api
                         is the same flag): Sonde's API (default
                         http://127.0.0.1:7070), or mqtt://host:1883 for the
                         retained messages under sonde/policies (settings
                         topic_prefix, protocol, client_id); none: no
                         policies
  --interval D           collection interval (default 1s; 100ms to 1h)
  --collectors LIST      comma-separated, from cpu,load,memory,disk,filesystem,
                         network,pressure,processes (default all but processes)
  --top-processes N      processes reported by CPU and by memory (default 0:
                         N > 0 enables the processes collector; enabled
                         without N, it reports 10)
  --service-name NAME    service.name of the resource (default sonde-agent)
  --root-path DIR        where the host's /proc, /sys, /etc are (default /)
  --disk-partitions B    report partitions too (default false)
  --disk-virtual B       report loop, ram and zram devices (default false)
  --log-level FILTER     default info
  --once                 collect once, print the metrics as text, exit

SIGINT or SIGTERM flushes what is queued and exits.";

/// Parses the arguments after `agent`; `None` for `--help`.
pub fn parse_args(args: &[String]) -> Result<Option<Config>> {
    let mut c = Config::default();
    let mut collectors_given = false;
    let mut i = 0;
    let usage = |msg: String| Error::Usage(format!("{msg}\n\n{USAGE}"));
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if matches!(arg, "--help" | "-h" | "help") {
            return Ok(None);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(usage(format!("unexpected argument {arg:?}")));
        };
        let (key, inline) = match flag.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (flag, None),
        };
        // `--once` alone is `--once true`.
        let is_bool = matches!(key, "once" | "disk-partitions" | "disk-virtual");
        let value = match inline {
            Some(v) => v,
            None if is_bool
                && !matches!(args.get(i).map(String::as_str), Some("true" | "false")) =>
            {
                "true".to_string()
            }
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| usage(format!("--{key} needs a value")))?;
                i += 1;
                v.clone()
            }
        };
        let bool_value = || match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(usage(format!("--{key} takes true or false, not {v:?}"))),
        };
        match key {
            "export" | "endpoint" => {
                Export::from_url(&value).map_err(|e| usage(format!("--{key}: {e}")))?;
                c.endpoint = value;
            }
            "policies" | "api" => {
                c.api = match value.as_str() {
                    "none" | "" => None,
                    _ => {
                        PolicySource::from_url(&value)
                            .map_err(|e| usage(format!("--{key}: {e}")))?;
                        Some(value.trim_end_matches('/').to_string())
                    }
                }
            }
            "interval" => {
                c.interval = parse_duration(&value)
                    .filter(|d| {
                        (crate::agent::MIN_INTERVAL..=crate::agent::MAX_INTERVAL).contains(d)
                    })
                    .ok_or_else(|| {
                        usage(format!(
                            "--interval {value:?}: give a duration from 100ms to 1h, such as 1s"
                        ))
                    })?;
            }
            "collectors" => {
                let names: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = names
                    .iter()
                    .find(|n| !collectors::ALL.contains(&n.as_str()))
                {
                    return Err(usage(format!(
                        "unknown collector {bad:?}; known: {}",
                        collectors::ALL.join(",")
                    )));
                }
                c.collectors = names;
                collectors_given = true;
            }
            "top-processes" => {
                c.top_processes = value
                    .parse()
                    .map_err(|_| usage(format!("--top-processes {value:?}: give a count")))?;
            }
            "service-name" => c.service_name = value,
            "root-path" => c.root_path = value.into(),
            "disk-partitions" => c.disk_partitions = bool_value()?,
            "disk-virtual" => c.disk_virtual = bool_value()?,
            "once" => c.once = bool_value()?,
            "log-level" => c.log_level = value,
            _ => return Err(usage(format!("unknown flag --{key}"))),
        }
    }
    if c.top_processes > 0 && !collectors_given {
        c.collectors.push("processes".into());
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Option<Config>> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap().unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.collectors.len(), 7);
        assert!(!c.collectors.contains(&"processes".to_string()));
    }

    #[test]
    fn flags() {
        let c = parse(&[
            "--endpoint",
            "http://h:4318",
            "--api",
            "none",
            "--interval=250ms",
            "--collectors",
            "cpu,memory",
            "--top-processes",
            "3",
            "--once",
            "--service-name",
            "edge",
            "--disk-partitions",
            "true",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://h:4318");
        assert_eq!(c.api, None);
        assert_eq!(c.interval, Duration::from_millis(250));
        assert_eq!(c.collectors, ["cpu", "memory"], "explicit collectors win");
        assert_eq!(c.top_processes, 3);
        assert!(c.once && c.disk_partitions && !c.disk_virtual);
        assert_eq!(c.service_name, "edge");
        let c = parse(&["--top-processes", "5"]).unwrap().unwrap();
        assert!(c.collectors.contains(&"processes".to_string()));
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn export_and_policy_urls() {
        let c = parse(&["--export", "http://h:4318", "--api", "http://h:7070/"])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://h:4318");
        assert_eq!(c.api.as_deref(), Some("http://h:7070"));
        let err = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(err(&["--export", "h:4318"]).starts_with("--export: "));
        assert!(err(&["--policies", "kafka://h"]).contains("unknown scheme"));
        let kafka = parse(&["--export", "kafka://k1:9092,k2:9092"]);
        assert_eq!(kafka.is_ok(), cfg!(feature = "kafka"), "{kafka:?}");
        if cfg!(feature = "mqtt") {
            let c = parse(&[
                "--export",
                "mqtt://broker:1884?protocol=3.1.1",
                "--policies",
                "mqtt://broker:1884?topic_prefix=fleet/policies",
            ])
            .unwrap()
            .unwrap();
            assert_eq!(c.endpoint, "mqtt://broker:1884?protocol=3.1.1");
            assert_eq!(
                c.api.as_deref(),
                Some("mqtt://broker:1884?topic_prefix=fleet/policies")
            );
            assert!(err(&["--export", "mqtt://h?qos=2"]).contains("give 0 or 1"));
        } else {
            assert!(err(&["--export", "mqtt://h"]).contains("`mqtt` feature"));
        }
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(err(&["--collectors", "cpu,gpu"]).starts_with("unknown collector \"gpu\""));
        assert!(err(&["--interval", "10ms"]).contains("100ms to 1h"));
        assert!(err(&["--interval"]).starts_with("--interval needs a value"));
        assert!(err(&["--bogus", "1"]).starts_with("unknown flag --bogus"));
        assert!(err(&["stray"]).starts_with("unexpected argument"));
    }
}
