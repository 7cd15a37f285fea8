//! Client commands for traces, logs, events, services and hosts.

use std::io::{BufRead, BufReader};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::client::{get, time_arg, Args};

fn ns_text(v: &Value) -> String {
    let ns: i64 = v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    format!(
        "{}.{ms:03}Z",
        sonde_model::time::datetime_text(ns.div_euclid(1_000_000_000))
    )
}

fn duration_text(ns: i64) -> String {
    match ns {
        n if n >= 1_000_000_000 => format!("{:.2}s", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}ms", n as f64 / 1e6),
        n => format!("{:.1}µs", n as f64 / 1e3),
    }
}

/// Flags passed through to the API under their API names.
fn search_params(a: &Args, names: &[(&str, &str)]) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut params: Vec<(&'static str, String)> = Vec::new();
    params.push(("start", time_arg(a.flag("since").unwrap_or("-1h"))?));
    params.push(("end", time_arg(a.flag("until").unwrap_or("now"))?));
    for (flag, api) in names {
        if let Some(v) = a.flag(flag) {
            let api: &'static str = match *api {
                "service" => "service",
                "name" => "name",
                "minDuration" => "minDuration",
                "maxDuration" => "maxDuration",
                "status" => "status",
                "severity" => "severity",
                "contains" => "contains",
                "traceId" => "traceId",
                "limit" => "limit",
                "host" => "host",
                _ => continue,
            };
            params.push((api, v.to_string()));
        }
    }
    Ok(params)
}

fn attr_params(a: &Args) -> Vec<(&'static str, String)> {
    a.flags("attr").map(|v| ("attr", v.to_string())).collect()
}

fn print_log(l: &Value) {
    let trace = l["traceId"].as_str().filter(|t| !t.is_empty());
    let event = l["eventName"].as_str().filter(|e| !e.is_empty());
    println!(
        "{} {:<5} {} {}{}{}",
        ns_text(&l["timeUnixNano"]),
        l["severityText"].as_str().unwrap_or(""),
        l["service"].as_str().unwrap_or(""),
        event.map(|e| format!("[{e}] ")).unwrap_or_default(),
        l["body"].as_str().unwrap_or(""),
        trace.map(|t| format!("  trace={t}")).unwrap_or_default(),
    );
}

fn print_tree(spans: &[Value], parent: &str, depth: usize) {
    for s in spans
        .iter()
        .filter(|s| s["parentSpanId"].as_str() == Some(parent))
    {
        let status = if s["status"]["code"] == "error" {
            " ERROR"
        } else {
            ""
        };
        println!(
            "{}{} {} ({}, {}){}",
            "  ".repeat(depth),
            s["service"].as_str().unwrap_or(""),
            s["name"].as_str().unwrap_or(""),
            s["kind"].as_str().unwrap_or(""),
            duration_text(s["durationNs"].as_i64().unwrap_or(0)),
            status
        );
        if let Some(id) = s["spanId"].as_str() {
            print_tree(spans, id, depth + 1);
        }
    }
}

/// Streams `/api/v1/tail` and prints each record until interrupted.
fn follow(a: &Args, signal: &str, params: &[(&'static str, String)]) -> anyhow::Result<()> {
    let mut req = ureq::get(&format!("{}/api/v1/tail", a.server)).query("signal", signal);
    for (k, v) in params
        .iter()
        .filter(|(k, _)| *k != "start" && *k != "end" && *k != "limit")
    {
        req = req.query(k, v);
    }
    let resp = req
        .call()
        .with_context(|| format!("cannot follow {}/api/v1/tail", a.server))?;
    let mut event = String::new();
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.context("the live stream ended")?;
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
            match event.as_str() {
                "log" | "event" => print_log(&v),
                "dropped" => bail!("the server dropped this stream: {}", v["reason"]),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Runs a record command, or passes it on to the policy commands.
pub(crate) fn run(command: &str, a: &Args) -> anyhow::Result<()> {
    match command {
        "trace" => {
            let id = a.one("trace id")?;
            let data = get(&a.server, &format!("/api/v1/traces/{id}"), &[])?;
            let spans = data["spans"].as_array().cloned().unwrap_or_default();
            let ids: Vec<&str> = spans.iter().filter_map(|s| s["spanId"].as_str()).collect();
            // Roots, and orphans whose parent has not arrived.
            let roots: Vec<Value> = spans
                .iter()
                .filter(|s| {
                    let p = s["parentSpanId"].as_str().unwrap_or("");
                    p.is_empty() || !ids.contains(&p)
                })
                .cloned()
                .collect();
            for r in &roots {
                let mut r = r.clone();
                r["parentSpanId"] = Value::String(String::new());
                print_tree(&[r.clone()], "", 0);
                if let Some(id) = r["spanId"].as_str() {
                    print_tree(&spans, id, 1);
                }
            }
            let logs = data["logs"].as_array().cloned().unwrap_or_default();
            if !logs.is_empty() {
                println!("logs:");
                logs.iter().for_each(print_log);
            }
        }
        "traces" => {
            let mut params = search_params(
                a,
                &[
                    ("service", "service"),
                    ("name", "name"),
                    ("min-duration", "minDuration"),
                    ("max-duration", "maxDuration"),
                    ("limit", "limit"),
                ],
            )?;
            if a.flag("errors").is_some_and(|v| v == "true") {
                params.push(("status", "error".into()));
            }
            params.extend(attr_params(a));
            for t in get(&a.server, "/api/v1/traces", &params)?
                .as_array()
                .into_iter()
                .flatten()
            {
                println!(
                    "{} {} {} {} {} spans{}",
                    t["traceId"].as_str().unwrap_or(""),
                    ns_text(&t["startTimeUnixNano"]),
                    duration_text(t["durationNs"].as_i64().unwrap_or(0)),
                    format_args!(
                        "{}: {}",
                        t["rootService"].as_str().unwrap_or(""),
                        t["rootName"].as_str().unwrap_or("")
                    ),
                    t["spanCount"],
                    if t["errorCount"].as_u64().unwrap_or(0) > 0 {
                        " ERROR"
                    } else {
                        ""
                    },
                );
            }
        }
        "logs" | "events" => {
            let mut params = search_params(
                a,
                &[
                    ("service", "service"),
                    ("host", "host"),
                    ("severity", "severity"),
                    ("contains", "contains"),
                    ("trace-id", "traceId"),
                    ("limit", "limit"),
                ],
            )?;
            params.extend(attr_params(a));
            if let Some(n) = a.flag("name") {
                params.push(("name", n.to_string()));
            }
            if a.flag("follow").is_some_and(|v| v == "true") {
                follow(a, command, &params)?;
                return Ok(());
            }
            let data = get(&a.server, &format!("/api/v1/{command}"), &params)?;
            let mut logs = data["logs"].as_array().cloned().unwrap_or_default();
            // Newest first from the API; oldest first reads like a log.
            logs.reverse();
            logs.iter().for_each(print_log);
        }
        "services" | "hosts" => {
            let related = if command == "services" {
                "hosts"
            } else {
                "services"
            };
            for e in get(&a.server, &format!("/api/v1/{command}"), &[])?
                .as_array()
                .into_iter()
                .flatten()
            {
                let sig = &e["signals"];
                let list: Vec<&str> = e[related]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{}  series={} spans={} logs={} events={}  {related}: {}",
                    e["name"].as_str().unwrap_or(""),
                    sig["metrics"]["series"],
                    sig["traces"]["spans"],
                    sig["logs"]["records"],
                    sig["events"]["records"],
                    list.join(", ")
                );
            }
        }
        other => return crate::policies::run(other, a),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_print_as_utc() {
        assert_eq!(
            ns_text(&Value::String("1544712660300000000".into())),
            "2018-12-13T14:51:00.300Z"
        );
        assert_eq!(
            ns_text(&Value::String("0".into())),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
