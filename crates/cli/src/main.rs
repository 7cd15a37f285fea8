//! `sonde`: the one binary. `sonde serve` runs the server, `sonde demo`
//! the server with a simulated shop and the host agent, `sonde agent` the
//! host agent alone, `sonde detect` the anomaly detector over NAB files;
//! the client commands talk to a running server's HTTP API.

mod client;
mod demo;
mod detect;
mod policies;
mod records;

use std::ffi::OsString;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};

// Ingest allocates many small label strings; mimalloc handles that pattern
// several times faster than glibc's allocator (measured: store append went
// from 215k to 765k samples/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "Sonde: real-time telemetry. Metrics, traces, logs and events over OTLP, \
Prometheus remote write, Kafka and MQTT; PromQL, the Jaeger API, alerts, anomaly \
detection and a live web UI, in one binary.";

fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).is_some_and(|c| c == "agent") {
        sonde_agent::lean_process();
    }
    // Errors are for people: one line with its causes, no backtrace.
    match run(std::env::args_os().collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sonde: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A `--key value` flag.
fn opt(name: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .value_name(value)
        .help(help)
        .action(ArgAction::Set)
}

/// Arguments handed as they are to a subcommand's own parser (which
/// answers `--help` itself).
fn passthrough(cmd: Command) -> Command {
    cmd.disable_help_flag(true).arg(
        Arg::new("args")
            .num_args(0..)
            .trailing_var_arg(true)
            .allow_hyphen_values(true)
            .action(ArgAction::Append),
    )
}

/// Every server setting as a flag, documented from `sonde.example.toml`.
fn with_settings(mut cmd: Command) -> Command {
    cmd = cmd.arg(
        Arg::new("config")
            .long("config")
            .value_name("FILE")
            .help("TOML file of settings (see sonde.example.toml); SONDE_CONFIG")
            .help_heading("Settings"),
    );
    for s in sonde_server::config::settings() {
        let key: &'static str = Box::leak(s.key.clone().into_boxed_str());
        let long: &'static str = Box::leak(s.key.replace('_', "-").into_boxed_str());
        let env = format!("SONDE_{}", s.key.to_ascii_uppercase());
        let help = if s.help.is_empty() {
            format!("[{env}]")
        } else {
            format!("{} [{env}]", s.help)
        };
        let mut arg = Arg::new(key)
            .long(long)
            .value_name("VALUE")
            .help(help)
            .help_heading("Settings")
            .action(ArgAction::Set);
        if long != key {
            arg = arg.alias(key);
        }
        if !s.default.is_empty() {
            arg = arg
                .default_value(Box::leak(s.default.into_boxed_str()) as &'static str)
                .hide_default_value(false);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The settings given on the command line, as `--key value` for
/// `Config::load` (defaults are not passed: environment and file come
/// first).
fn given_settings(m: &ArgMatches) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = m.get_one::<String>("config") {
        out.extend(["--config".to_string(), c.clone()]);
    }
    for s in sonde_server::config::settings() {
        if m.value_source(&s.key) == Some(clap::parser::ValueSource::CommandLine) {
            if let Some(v) = m.get_one::<String>(&s.key) {
                out.extend([format!("--{}", s.key), v.clone()]);
            }
        }
    }
    out
}

fn client(cmd: Command) -> Command {
    cmd.arg(
        Arg::new("server")
            .long("server")
            .value_name("URL")
            .env("SONDE_SERVER")
            .default_value(client::DEFAULT_SERVER)
            .help("the Sonde server's API"),
    )
}

fn since_until(cmd: Command) -> Command {
    cmd.arg(opt(
        "since",
        "TIME",
        "from (now, -1h, RFC 3339 or Unix seconds; default -1h)",
    ))
    .arg(opt("until", "TIME", "to (default now)"))
    .arg(
        Arg::new("attr")
            .long("attr")
            .value_name("K=V")
            .help("attribute equals value; repeatable")
            .action(ArgAction::Append),
    )
    .arg(opt("limit", "N", "at most this many"))
}

pub fn command() -> Command {
    let serve = with_settings(Command::new("serve").about(
        "Run the server: API and UI on :7070, OTLP gRPC :4317, OTLP HTTP :4318 (the default command)",
    ));
    let demo = with_settings(
        Command::new("demo")
            .about("The server plus a simulated shop and the host agent sending to it")
            .arg(opt(
                "rate",
                "N",
                "the shop's requests per second (default 20)",
            ))
            .arg(opt("workers", "N", "simulated users at once (default 12)"))
            .arg(opt(
                "incident-period",
                "DURATION",
                "time between injected incidents (default 10m, at least 10s)",
            ))
            .arg(
                Arg::new("no-agent")
                    .long("no-agent")
                    .help("without the host agent")
                    .action(ArgAction::SetTrue),
            ),
    );
    let logs = |name: &'static str, about: &'static str| {
        since_until(client(Command::new(name).about(about)))
            .arg(opt("service", "NAME", "from this service"))
            .arg(opt("host", "NAME", "from this host"))
            .arg(opt(
                "severity",
                "LEVEL",
                "at least (trace, debug, info, warn, error, fatal)",
            ))
            .arg(opt("contains", "TEXT", "body contains"))
            .arg(opt("trace-id", "ID", "carrying this trace id"))
            .arg(opt("name", "EVENT", "event name"))
            .arg(opt("follow", "true|false", "stream new ones live"))
    };
    Command::new("sonde")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(
            "Client commands talk to --server URL (default http://127.0.0.1:7070, or SONDE_SERVER).\n\
             Settings of serve and demo: --config FILE, a --key flag, or SONDE_KEY in the environment.",
        )
        .subcommand(serve)
        .subcommand(demo)
        .subcommand(passthrough(Command::new("agent").about(
            "Collect host metrics and send them over OTLP/HTTP, Kafka or MQTT (`sonde agent --help`)",
        )))
        .subcommand(passthrough(Command::new("detect").about(
            "Run the anomaly detector over NAB-format CSVs (`sonde detect --help`)",
        )))
        .subcommand(
            client(Command::new("query").about("Evaluate PromQL at one time"))
                .arg(Arg::new("expr").value_name("EXPR").required(true))
                .arg(opt("time", "TIME", "evaluation time (default now)")),
        )
        .subcommand(
            client(Command::new("query-range").about("Evaluate PromQL over a time range"))
                .arg(Arg::new("expr").value_name("EXPR").required(true))
                .arg(opt("start", "TIME", "default -1h"))
                .arg(opt("end", "TIME", "default now"))
                .arg(opt("step", "DURATION", "default 60s")),
        )
        .subcommand(
            client(Command::new("series").about("List the series matching a selector"))
                .arg(Arg::new("selector").value_name("SELECTOR").required(true)),
        )
        .subcommand(
            client(Command::new("labels").about("List label names, or the values of one label"))
                .arg(Arg::new("label").value_name("NAME")),
        )
        .subcommand(client(Command::new("flush").about(
            "Persist the in-memory head as blocks, spans and logs as Parquet",
        )))
        .subcommand(
            client(Command::new("trace").about("Print one trace as a tree, with its logs"))
                .arg(Arg::new("id").value_name("TRACE_ID").required(true)),
        )
        .subcommand(
            since_until(client(Command::new("traces").about("Search traces, newest first")))
                .arg(opt("service", "NAME", "with a span of this service"))
                .arg(opt("name", "OPERATION", "with a span of this name"))
                .arg(opt("min-duration", "DURATION", "at least this long (250ms)"))
                .arg(opt("max-duration", "DURATION", "at most this long"))
                .arg(opt("errors", "true|false", "only traces with an error")),
        )
        .subcommand(logs("logs", "Search logs and events, newest first"))
        .subcommand(logs("events", "Search events, newest first"))
        .subcommand(client(Command::new("services").about(
            "Each service seen, with its series, spans, logs and events",
        )))
        .subcommand(client(Command::new("hosts").about(
            "Each host seen, with its series, spans, logs and events",
        )))
        .subcommand(
            Command::new("policy")
                .about("Runtime collection policies")
                .subcommand(client(Command::new("list").about("List the policies")))
                .subcommand(
                    client(Command::new("set").about("Create or replace a policy"))
                        .arg(Arg::new("id").value_name("ID").required(true))
                        .arg(opt("scope", "SCOPE", "all, service:NAME or host:NAME (default all)"))
                        .arg(opt("sampling", "RATIO", "trace sampling ratio, 0 to 1"))
                        .arg(opt("interval", "DURATION", "metric export interval"))
                        .arg(opt("min-severity", "LEVEL", "lowest log severity exported"))
                        .arg(opt("collectors", "LIST", "agent collectors, comma-separated"))
                        .arg(opt("ttl", "DURATION", "expires after (10m)")),
                )
                .subcommand(
                    client(Command::new("delete").about("Delete a policy"))
                        .arg(Arg::new("id").value_name("ID").required(true)),
                ),
        )
        .subcommand(client(Command::new("clients").about(
            "SDKs and agents following the policies, with their status",
        )))
        .subcommand(
            Command::new("completions")
                .about("Print shell completions: sonde completions bash > /etc/bash_completion.d/sonde")
                .arg(
                    Arg::new("shell")
                        .value_name("SHELL")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell)),
                ),
        )
        .subcommand(Command::new("version").about("Print the version"))
}

fn run(argv: Vec<OsString>) -> anyhow::Result<()> {
    let matches = match command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) if e.use_stderr() => {
            return Err(anyhow::anyhow!(
                "{}",
                e.render()
                    .to_string()
                    .trim_end()
                    .trim_start_matches("error: ")
            ))
        }
        Err(e) => {
            // --help and --version.
            e.print().context("cannot print the help")?;
            return Ok(());
        }
    };
    let Some((name, m)) = matches.subcommand() else {
        return serve(&[]);
    };
    match name {
        "serve" => serve(&given_settings(m)),
        "demo" => {
            let mut demo_args = Vec::new();
            for flag in ["rate", "workers", "incident-period"] {
                if let Some(v) = m.get_one::<String>(flag) {
                    demo_args.extend([format!("--{flag}"), v.clone()]);
                }
            }
            if m.get_flag("no-agent") {
                demo_args.push("--no-agent".into());
            }
            demo_args.extend(given_settings(m));
            demo::run(&demo_args, init_logging)
        }
        "agent" => match sonde_agent::parse_args(&raw(m))? {
            None => {
                println!("{}", sonde_agent::cli::USAGE);
                Ok(())
            }
            Some(config) => {
                init_logging(&config.log_level)?;
                sonde_agent::run(config).map_err(Into::into)
            }
        },
        "detect" => detect::run(&raw(m)),
        "completions" => {
            let shell = *m
                .get_one::<clap_complete::Shell>("shell")
                .context("a shell is required")?;
            clap_complete::generate(shell, &mut command(), "sonde", &mut std::io::stdout());
            Ok(())
        }
        "version" => {
            println!("sonde {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "policy" => match m.subcommand() {
            Some((sub, sm)) => policies::run("policy", &client::Args::from_matches(sm, Some(sub))),
            None => {
                let args = client::Args {
                    positional: vec!["list".into()],
                    server: client::server_from_env(),
                    flags: Vec::new(),
                };
                policies::run("policy", &args)
            }
        },
        other => client::run(other, &client::Args::from_matches(m, None)),
    }
}

/// The passthrough arguments of `agent` and `detect`.
fn raw(m: &ArgMatches) -> Vec<String> {
    m.get_many::<String>("args")
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

fn serve(settings: &[String]) -> anyhow::Result<()> {
    let config = sonde_server::Config::load(settings, std::env::vars())?;
    init_logging(&config.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sonde")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(sonde_server::serve(config))
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("log_level {filter:?} is not a valid filter"))?;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ArgMatches, clap::Error> {
        command().try_get_matches_from(std::iter::once("sonde").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_subcommand_answers_help() {
        for sub in command().get_subcommands() {
            let name = sub.get_name();
            if matches!(name, "agent" | "detect") {
                // Their own parsers answer --help (tested in their crates
                // and by `passthrough_help_reaches_the_subcommand`).
                continue;
            }
            let e = parse(&[name, "--help"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
        }
        let e = parse(&["policy", "set", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn passthrough_help_reaches_the_subcommand() {
        let m = parse(&["agent", "--help"]).unwrap();
        assert_eq!(raw(m.subcommand().unwrap().1), vec!["--help".to_string()]);
    }

    #[test]
    fn errors_name_the_flag() {
        let e = parse(&["query", "up", "--tim", "5"]).unwrap_err();
        assert!(e.to_string().contains("--tim"), "{e}");
        let e = parse(&["serve", "--data-dri", "x"]).unwrap_err();
        assert!(e.to_string().contains("--data-dri"), "{e}");
        let e = parse(&["query"]).unwrap_err();
        assert!(e.to_string().contains("EXPR"), "{e}");
    }

    #[test]
    fn settings_are_flags_with_dashes_or_underscores_and_only_given_ones_pass() {
        let m = parse(&["serve", "--data-dir", "/tmp/x", "--retention_size", "1GiB"]).unwrap();
        let given = given_settings(m.subcommand().unwrap().1);
        assert_eq!(
            given,
            vec!["--data_dir", "/tmp/x", "--retention_size", "1GiB"]
        );
        let cfg = sonde_server::Config::load(&given, std::iter::empty()).unwrap();
        assert_eq!(cfg.data_dir, std::path::PathBuf::from("/tmp/x"));
    }

    #[test]
    fn client_flags_reach_the_commands() {
        let m = parse(&["logs", "--service", "api", "--attr", "a=1", "--attr", "b=2"]).unwrap();
        let a = client::Args::from_matches(m.subcommand().unwrap().1, None);
        assert_eq!(a.flag("service"), Some("api"));
        let attrs: Vec<&str> = a.flags("attr").collect();
        assert_eq!(attrs, vec!["a=1", "b=2"]);
    }

    #[test]
    fn completions_are_printed_for_each_shell() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "sonde", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("query-range"), "{shell}");
        }
    }
}
