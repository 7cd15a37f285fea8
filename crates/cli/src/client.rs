//! Client commands: the HTTP API from a shell, printed for people.
//!
//! `sonde query 'rate(x[5m])'`, `sonde query-range EXPR --start -1h`,
//! `sonde series 'up{job="api"}'`, `sonde labels [NAME]`, `sonde flush`;
//! traces, logs and events are in `records.rs`, policies in `policies.rs`.

use anyhow::{bail, Context};
use serde_json::Value;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// A client command's arguments: its positional values in order, the
/// server, and the flags given (a repeated flag once per value).
pub(crate) struct Args {
    pub positional: Vec<String>,
    pub server: String,
    pub flags: Vec<(String, String)>,
}

/// The ids of positional arguments in `command()`; all others are flags.
pub(crate) const POSITIONAL: [&str; 4] = ["expr", "selector", "label", "id"];

pub(crate) fn server_from_env() -> String {
    std::env::var("SONDE_SERVER")
        .unwrap_or_else(|_| DEFAULT_SERVER.into())
        .trim_end_matches('/')
        .to_string()
}

impl Args {
    /// From clap's matches; `first` goes before the positional values
    /// (the subcommand of `policy`).
    pub(crate) fn from_matches(m: &clap::ArgMatches, first: Option<&str>) -> Args {
        let mut out = Args {
            positional: first.map(str::to_string).into_iter().collect(),
            server: m
                .try_get_one::<String>("server")
                .ok()
                .flatten()
                .map(|s| s.trim_end_matches('/').to_string())
                .unwrap_or_else(server_from_env),
            flags: Vec::new(),
        };
        for id in m.ids() {
            let id = id.as_str();
            if id == "server" {
                continue;
            }
            let values: Vec<String> = m
                .get_many::<String>(id)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            if POSITIONAL.contains(&id) {
                out.positional.extend(values);
            } else {
                out.flags
                    .extend(values.into_iter().map(|v| (id.to_string(), v)));
            }
        }
        out
    }
}

impl Args {
    /// Every value of a repeated flag, in order.
    pub(crate) fn flags<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn flag(&self, k: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn one(&self, what: &str) -> anyhow::Result<&str> {
        match self.positional.as_slice() {
            [one] => Ok(one),
            _ => bail!("expected exactly one {what}"),
        }
    }
}

/// `now`, `-1h` (relative to now), RFC 3339 or Unix seconds, to Unix seconds.
pub(crate) fn time_arg(s: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if s == "now" {
        return Ok(format!("{now:.3}"));
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d = sonde_server::config::parse_duration(ago)
            .with_context(|| format!("{s:?} is not a time like -1h"))?;
        return Ok(format!("{:.3}", now - d.as_secs_f64()));
    }
    let ms = sonde_server::parse_time(s)
        .with_context(|| format!("{s:?} is not a time (now, -1h, RFC 3339 or Unix seconds)"))?;
    Ok(format!("{:.3}", ms as f64 / 1000.0))
}

pub(crate) fn get(server: &str, path: &str, params: &[(&str, String)]) -> anyhow::Result<Value> {
    let mut req = ureq::get(&format!("{server}{path}"));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => bail!("cannot reach the Sonde server at {server}: {e}; is `sonde serve` running? (set --server or SONDE_SERVER)"),
    };
    let body: Value =
        serde_json::from_str(&resp.into_string()?).context("the server's answer is not JSON")?;
    if body["status"] == "error" {
        bail!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("")
        );
    }
    Ok(body["data"].clone())
}

fn labels_text(metric: &Value) -> String {
    let Some(obj) = metric.as_object() else {
        return "{}".into();
    };
    let name = obj.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = obj
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", v))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// Runs a client command.
pub(crate) fn run(command: &str, a: &Args) -> anyhow::Result<()> {
    match command {
        "query" => {
            let mut params = vec![("query", a.one("PromQL expression")?.to_string())];
            if let Some(t) = a.flag("time") {
                params.push(("time", time_arg(t)?));
            }
            let data = get(&a.server, "/api/v1/query", &params)?;
            match data["resultType"].as_str() {
                Some("vector") => {
                    for r in data["result"].as_array().into_iter().flatten() {
                        println!(
                            "{} {}",
                            labels_text(&r["metric"]),
                            r["value"][1].as_str().unwrap_or("")
                        );
                    }
                }
                Some("matrix") => print_matrix(&data),
                _ => println!("{}", data["result"][1].as_str().unwrap_or("")),
            }
        }
        "query-range" => {
            let params = vec![
                ("query", a.one("PromQL expression")?.to_string()),
                ("start", time_arg(a.flag("start").unwrap_or("-1h"))?),
                ("end", time_arg(a.flag("end").unwrap_or("now"))?),
                ("step", a.flag("step").unwrap_or("60s").to_string()),
            ];
            print_matrix(&get(&a.server, "/api/v1/query_range", &params)?);
        }
        "series" => {
            let data = get(
                &a.server,
                "/api/v1/series",
                &[("match[]", a.one("series selector")?.to_string())],
            )?;
            for s in data.as_array().into_iter().flatten() {
                println!("{}", labels_text(s));
            }
        }
        "labels" => {
            let path = match a.positional.as_slice() {
                [] => "/api/v1/labels".to_string(),
                [name] => format!("/api/v1/label/{name}/values"),
                _ => bail!("expected at most one label name"),
            };
            for v in get(&a.server, &path, &[])?.as_array().into_iter().flatten() {
                println!("{}", v.as_str().unwrap_or(""));
            }
        }
        "flush" => match ureq::post(&format!("{}/api/v1/admin/flush", a.server)).call() {
            Ok(_) => println!("head persisted as blocks; spans and logs written to Parquet"),
            Err(e) => bail!("flush failed: {e}"),
        },
        other => return crate::records::run(other, a),
    }
    Ok(())
}

fn print_matrix(data: &Value) {
    for r in data["result"].as_array().into_iter().flatten() {
        println!("{}", labels_text(&r["metric"]));
        for p in r["values"].as_array().into_iter().flatten() {
            println!("  {} {}", p[0], p[1].as_str().unwrap_or(""));
        }
    }
}
