//! Client commands for runtime collection policies and the clients that
//! follow them.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::{get, Args};

fn send(method: &str, url: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let req = ureq::request(method, url);
    let resp = match body {
        Some(b) => req
            .set("content-type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => bail!("cannot reach the Sonde server: {e}"),
    };
    let v: Value =
        serde_json::from_str(&resp.into_string()?).context("the server's answer is not JSON")?;
    if v["status"] == "error" {
        bail!("{}", v["error"].as_str().unwrap_or("error"));
    }
    Ok(v["data"].clone())
}

fn print_policy(p: &Value) {
    let scope = match p["scope"]["name"].as_str() {
        Some(n) => format!("{}:{n}", p["scope"]["kind"].as_str().unwrap_or("")),
        None => "all".into(),
    };
    let mut parts = vec![format!(
        "{:<20} {:<24}",
        p["id"].as_str().unwrap_or(""),
        scope
    )];
    for (k, label) in [
        ("trace_sampling_ratio", "sampling"),
        ("metric_interval", "interval"),
        ("min_log_severity", "min-severity"),
        ("collectors", "collectors"),
        ("ttl", "ttl"),
    ] {
        if !p[k].is_null() {
            parts.push(format!("{label}={}", p[k]));
        }
    }
    println!("{}", parts.join(" "));
}

/// `sonde policy list | set ID [--scope all|service:NAME|host:NAME] [--sampling R]
/// [--interval 5s] [--min-severity warn] [--collectors cpu,memory] [--ttl 10m] | delete ID`
/// and `sonde clients`.
pub(crate) fn run(command: &str, a: &Args) -> anyhow::Result<()> {
    match command {
        "policy" | "policies" => match a.positional.first().map(String::as_str) {
            None | Some("list") => {
                for p in get(&a.server, "/api/v1/policies", &[])?
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    print_policy(p);
                }
            }
            Some("set") => {
                let id = a
                    .positional
                    .get(1)
                    .context("usage: sonde policy set ID [--sampling 0.1 ...]")?;
                let mut body = json!({});
                match a.flag("scope").unwrap_or("all") {
                    "all" => body["scope"] = json!({"kind": "all"}),
                    s => {
                        let (kind, name) = s
                            .split_once(':')
                            .context("--scope is all, service:NAME or host:NAME")?;
                        body["scope"] = json!({"kind": kind, "name": name});
                    }
                }
                if let Some(r) = a.flag("sampling") {
                    body["trace_sampling_ratio"] = json!(r
                        .parse::<f64>()
                        .context("--sampling is a ratio from 0 to 1")?);
                }
                if let Some(i) = a.flag("interval") {
                    body["metric_interval"] = json!(i);
                }
                if let Some(s) = a.flag("min-severity") {
                    let n = sonde_model::records::parse_severity(s).context(
                        "--min-severity is trace, debug, info, warn, error, fatal or 0-24",
                    )?;
                    body["min_log_severity"] = json!(n);
                }
                if let Some(c) = a.flag("collectors") {
                    body["collectors"] = json!(c.split(',').map(str::trim).collect::<Vec<_>>());
                }
                if let Some(t) = a.flag("ttl") {
                    body["ttl"] = json!(t);
                }
                let url = format!("{}/api/v1/policies/{id}", a.server);
                print_policy(&send("PUT", &url, Some(&body))?);
            }
            Some("delete") => {
                let id = a
                    .positional
                    .get(1)
                    .context("usage: sonde policy delete ID")?;
                send(
                    "DELETE",
                    &format!("{}/api/v1/policies/{id}", a.server),
                    None,
                )?;
                println!("deleted {id}");
            }
            Some(other) => bail!("unknown policy command {other:?}: use list, set or delete"),
        },
        "clients" => {
            for c in get(&a.server, "/api/v1/clients", &[])?
                .as_array()
                .into_iter()
                .flatten()
            {
                println!(
                    "{:<28} {:<6} {:<20} {:<16} {} policy v{} {}",
                    c["client_id"].as_str().unwrap_or(""),
                    c["kind"].as_str().unwrap_or("?"),
                    c["service"].as_str().unwrap_or(""),
                    c["host"].as_str().unwrap_or(""),
                    if c["connected"] == true {
                        "connected"
                    } else {
                        "gone"
                    },
                    c["policy_version"],
                    c["effective"],
                );
            }
        }
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}
