//! Client commands: the HTTP API from a shell, printed for people.
//!
//! `sonde query 'rate(x[5m])'`, `sonde query-range EXPR --start -1h`,
//! `sonde series 'up{job="api"}'`, `sonde labels [NAME]`, `sonde flush`;
//! traces, logs and events are in `cli_records.rs`.

use anyhow::{bail, Context};
use serde_json::Value;

const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

pub(crate) struct Args {
    pub positional: Vec<String>,
    pub server: String,
    flags: Vec<(String, String)>,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut out = Args {
        positional: Vec::new(),
        server: std::env::var("SONDE_SERVER").unwrap_or_else(|_| DEFAULT_SERVER.into()),
        flags: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(flag) = a.strip_prefix("--") {
            let (k, v) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (
                    flag.to_string(),
                    it.next()
                        .with_context(|| format!("flag --{flag} needs a value"))?
                        .clone(),
                ),
            };
            if k == "server" {
                out.server = v.trim_end_matches('/').to_string();
            } else {
                out.flags.push((k, v));
            }
        } else {
            out.positional.push(a.clone());
        }
    }
    Ok(out)
}

impl Args {
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
        let d = crate::config::parse_duration(ago)
            .with_context(|| format!("{s:?} is not a time like -1h"))?;
        return Ok(format!("{:.3}", now - d.as_secs_f64()));
    }
    let ms = crate::api::parse_time(s)
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

/// Runs a client command; returns false if `command` is not one.
pub fn run(command: &str, args: &[String]) -> anyhow::Result<bool> {
    let a = parse(args)?;
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
        other => return crate::cli_records::run(other, &a),
    }
    Ok(true)
}

fn print_matrix(data: &Value) {
    for r in data["result"].as_array().into_iter().flatten() {
        println!("{}", labels_text(&r["metric"]));
        for p in r["values"].as_array().into_iter().flatten() {
            println!("  {} {}", p[0], p[1].as_str().unwrap_or(""));
        }
    }
}
