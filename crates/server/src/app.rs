//! The server's shared state, its three listeners, background upkeep and
//! ordered shutdown.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use sonde_ingest::otlp::MetricsConverter;
use sonde_ingest::otlp_records::RecordLimits;
use sonde_model::{Clock, SystemClock};
use sonde_query::{Engine, EngineOptions};
use sonde_records::RecordStore;
use sonde_store::{FsyncPolicy, Store};
use tokio::sync::{watch, Semaphore};

use crate::config::Config;
use crate::policies::Policies;
use crate::self_metrics::SelfMetrics;
use crate::tail::Tail;
use crate::{
    api, graph_api, grpc, jaeger, policies_api, records_api, stream_api, tail, tasks, write,
    write_records,
};

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub records: Arc<RecordStore>,
    pub record_limits: RecordLimits,
    pub tail: Arc<Tail>,
    pub policies: Policies,
    pub pipeline: sonde_pipeline::Pipeline,
    pub engine: Engine,
    pub converter: MetricsConverter,
    pub metrics: SelfMetrics,
    pub clock: Arc<dyn Clock>,
    pub alerting: sonde_rules::Alerting,
    pub write_permits: Semaphore,
    /// Live query streams open (`stream_api.rs`).
    pub live_queries: Arc<std::sync::atomic::AtomicUsize>,
    pub query_permits: Semaphore,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let store_opts = config.store_options()?;
        let store = Store::open_with_exemplars(
            &config.data_dir,
            store_opts,
            clock.clone(),
            config.max_exemplars,
        )
        .with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
        let records_cfg = config.records_config()?;
        let records = RecordStore::open(records_cfg).with_context(|| {
            format!(
                "cannot open the span and log store in {}",
                config.data_dir.join("records").display()
            )
        })?;
        let record_limits = RecordLimits {
            max_attributes: config.max_record_attributes.max(1),
            max_attribute_value_bytes: config.max_attribute_value_length.max(16),
            ..RecordLimits::default()
        };
        let (lookback, timeout) = config.durations()?;
        let engine = Engine::new(EngineOptions {
            lookback_delta_ms: lookback.as_millis() as i64,
            max_samples: config.query_max_samples,
            timeout,
        });
        let alerting = sonde_rules::Alerting::new(
            &crate::rules_runner::rules_config(&config)?,
            clock.now_ms(),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(App {
            write_permits: Semaphore::new(config.max_inflight_writes.max(1)),
            live_queries: Arc::default(),
            query_permits: Semaphore::new(config.max_concurrent_queries.max(1)),
            tail: Arc::new(Tail::new(
                config.max_tail_subscribers,
                config.tail_buffer_bytes()?,
            )),
            pipeline: sonde_pipeline::Pipeline::standard(&config.pipeline_options()?),
            policies: Policies::open(
                config.data_dir.join("policies.json"),
                clock.now_ms().saturating_mul(1_000_000),
            ),
            config,
            store: Arc::new(store),
            records: Arc::new(records),
            record_limits,
            engine,
            converter: MetricsConverter::new(),
            metrics: SelfMetrics::new(),
            alerting,
            clock,
        })
    }
}

/// The API port: Prometheus HTTP API, remote write, health and metrics.
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(api::health))
        .route("/ready", get(api::ready))
        .route("/metrics", get(api::self_metrics))
        .route("/api/v1/write", post(write::remote_write))
        .route("/api/v1/otlp/v1/metrics", post(write::otlp_http_metrics))
        .route("/api/v1/query", get(api::query).post(api::query))
        .route(
            "/api/v1/query_range",
            get(api::query_range).post(api::query_range),
        )
        .route("/api/v1/series", get(api::series).post(api::series))
        .route("/api/v1/labels", get(api::labels).post(api::labels))
        .route("/api/v1/label/{name}/values", get(api::label_values))
        .route("/api/v1/metadata", get(api::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(api::exemplars).post(api::exemplars),
        )
        .route("/api/v1/rules", get(api::rules))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/status/buildinfo", get(api::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(api::runtimeinfo))
        .route("/api/v1/admin/flush", post(api::flush))
        .route(
            "/api/v1/otlp/v1/traces",
            post(write_records::otlp_http_traces),
        )
        .route("/api/v1/otlp/v1/logs", post(write_records::otlp_http_logs))
        .route("/api/v1/traces", get(records_api::search_traces))
        .route("/api/v1/traces/{id}", get(records_api::get_trace))
        .route("/api/v1/logs", get(records_api::search_logs))
        .route("/api/v1/events", get(records_api::search_events))
        .route("/api/v1/tail", get(tail::tail))
        .route("/api/v1/stream/query_range", get(stream_api::query_range))
        .route("/api/v1/services", get(records_api::services))
        .route("/api/v1/service_graph", get(graph_api::service_graph))
        .route("/api/v1/hosts", get(records_api::hosts))
        .route("/api/v1/policies", get(policies_api::list))
        .route("/api/v1/policies/effective", get(policies_api::effective))
        .route("/api/v1/policies/watch", get(policies_api::watch))
        .route(
            "/api/v1/policies/{id}",
            axum::routing::put(policies_api::put).delete(policies_api::delete),
        )
        .route("/api/v1/clients", get(policies_api::clients))
        .route("/api/v1/clients/status", post(policies_api::report_status))
        // The Jaeger query API, for Grafana's Jaeger data source.
        .route("/api/services", get(jaeger::services))
        .route(
            "/api/services/{service}/operations",
            get(jaeger::service_operations),
        )
        .route("/api/operations", get(jaeger::operations))
        .route("/api/traces", get(jaeger::find_traces))
        .route("/api/traces/{id}", get(jaeger::trace))
        // The web UI at `/` and its own routes (ui.rs).
        .merge(crate::ui::router())
        .merge(crate::alerting_api::router())
        .fallback(api::not_found)
        .with_state(state)
}

/// The OTLP/HTTP port.
pub fn otlp_http_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/metrics", post(write::otlp_http_metrics))
        .route("/v1/traces", post(write_records::otlp_http_traces))
        .route("/v1/logs", post(write_records::otlp_http_logs))
        .fallback(api::not_found)
        .with_state(state)
}

/// The OTLP/gRPC port (gRPC is HTTP/2 with length-prefixed messages).
pub fn otlp_grpc_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            post(grpc::export_metrics),
        )
        .route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            post(grpc::export_traces),
        )
        .route(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            post(grpc::export_logs),
        )
        .fallback(grpc::unimplemented)
        .with_state(state)
}

/// Something that runs beside the server (the demo's simulated services
/// and agent) and must stop, and flush into it, before the server does.
pub trait Companion: Send {
    fn stop(self: Box<Self>);
}

struct Alone;

impl Companion for Alone {
    fn stop(self: Box<Self>) {}
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    serve_with(config, |_| Ok(Box::new(Alone))).await
}

/// Serves, starting `companion` once the listeners accept connections.
pub async fn serve_with(
    config: Config,
    companion: impl FnOnce(&Config) -> anyhow::Result<Box<dyn Companion>>,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bind = |addr: &str, what: &str| {
        let addr = addr.to_string();
        let what = what.to_string();
        async move {
            tokio::net::TcpListener::bind(&addr).await.with_context(|| {
                format!("cannot listen on {addr} for {what}; is another server using it?")
            })
        }
    };
    let signal = shutdown_signal()?;
    // Bind first so a busy port fails fast, before the WAL replay.
    let api_listener = bind(&config.api_addr, "the API").await?;
    let grpc_listener = bind(&config.otlp_grpc_addr, "OTLP/gRPC").await?;
    let http_listener = bind(&config.otlp_http_addr, "OTLP/HTTP").await?;
    let state: AppState = Arc::new(tokio::task::block_in_place(|| App::new(config, clock))?);
    tracing::info!(
        api = %state.config.api_addr,
        otlp_grpc = %state.config.otlp_grpc_addr,
        otlp_http = %state.config.otlp_http_addr,
        data_dir = %state.config.data_dir.display(),
        "sonde is serving"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let upkeep = spawn_upkeep(state.clone(), stop_rx.clone());
    let alerting = crate::rules_runner::spawn(state.clone(), stop_rx.clone());
    let mqtt = crate::brokers::mqtt::spawn(state.clone(), stop_rx.clone())?;
    #[cfg(feature = "kafka")]
    let kafka = crate::brokers::kafka::spawn(state.clone(), stop_rx.clone())?;
    #[cfg(not(feature = "kafka"))]
    let kafka: Option<tokio::task::JoinHandle<()>> = if state.config.kafka_brokers.is_empty() {
        None
    } else {
        anyhow::bail!("kafka_brokers is set, but this sonde was built without Kafka; build with `--features kafka`")
    };
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let servers = [
        tokio::spawn(
            axum::serve(api_listener, api_router(state.clone()))
                .with_graceful_shutdown(shutdown(stop_rx.clone()))
                .into_future(),
        ),
        tokio::spawn(
            axum::serve(grpc_listener, otlp_grpc_router(state.clone()))
                .with_graceful_shutdown(shutdown(stop_rx.clone()))
                .into_future(),
        ),
        tokio::spawn(
            axum::serve(http_listener, otlp_http_router(state.clone()))
                .with_graceful_shutdown(shutdown(stop_rx.clone()))
                .into_future(),
        ),
    ];
    let companion = tokio::task::block_in_place(|| companion(&state.config))?;
    signal.await;
    tokio::task::block_in_place(|| companion.stop());
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    state.tail.close();
    for s in servers {
        match tokio::time::timeout(Duration::from_secs(10), s).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("listener ended with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("listener task failed: {e}"),
            Err(_) => tracing::warn!("requests still running after 10s; closing anyway"),
        }
    }
    for task in upkeep {
        let _ = task.await;
    }
    let _ = alerting.await;
    for broker in [mqtt, kafka].into_iter().flatten() {
        let _ = broker.await;
    }
    tokio::task::block_in_place(|| state.store.sync()).context("final WAL flush failed")?;
    tokio::task::block_in_place(|| state.records.sync())
        .context("final record WAL flush failed")?;
    tracing::info!("WAL flushed; bye");
    Ok(())
}

/// SIGINT or SIGTERM. Handlers are installed when this is created, before
/// the listeners serve, so a signal can never hit the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// The upkeep, as independent supervised tasks (`tasks.rs`): WAL fsync (for
/// the interval policy), the pipeline's tick and policy expiry, the
/// Parquet flush, TSDB maintenance and span/log retention. None waits for
/// another: a long compaction must not stretch the fsync interval (which
/// bounds what a power loss can take) nor delay a flush or derived metrics.
fn spawn_upkeep(state: AppState, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    if let FsyncPolicy::IntervalMs(ms) = state.store.options().fsync {
        let (st, stop2) = (state.clone(), stop.clone());
        handles.push(tasks::supervise("wal-fsync", stop.clone(), move || {
            let (st, stop) = (st.clone(), stop2.clone());
            tasks::every(Duration::from_millis(ms), stop, move || {
                let st = st.clone();
                async move {
                    let synced = tasks::blocking(move || {
                        st.store.sync().map_err(|e| e.to_string())?;
                        st.records.sync().map_err(|e| e.to_string())
                    });
                    if let Err(e) = synced.await {
                        tracing::error!("WAL fsync failed: {e}");
                    }
                }
            })
        }));
    }
    let (st, stop2) = (state.clone(), stop.clone());
    handles.push(tasks::supervise("pipeline", stop.clone(), move || {
        let (st, stop) = (st.clone(), stop2.clone());
        tasks::every(Duration::from_secs(1), stop, move || {
            let st = st.clone();
            async move {
                st.policies
                    .expire(st.clock.now_ms().saturating_mul(1_000_000));
                tasks::blocking(move || {
                    let mut sink = StoreSink { st: &st };
                    st.pipeline.tick(st.clock.now_ms(), &mut sink);
                })
                .await
            }
        })
    }));
    let (st, stop2) = (state.clone(), stop.clone());
    handles.push(tasks::supervise("parquet-flush", stop.clone(), move || {
        let (st, stop) = (st.clone(), stop2.clone());
        tasks::every(Duration::from_secs(1), stop, move || {
            let st = st.clone();
            async move {
                if st.records.needs_flush() {
                    if let Err(e) = tasks::blocking(move || st.records.flush()).await {
                        tracing::error!("writing spans and logs to Parquet failed: {e}");
                    }
                }
            }
        })
    }));
    let (st, stop2) = (state.clone(), stop.clone());
    handles.push(tasks::supervise(
        "tsdb-maintenance",
        stop.clone(),
        move || {
            let (st, stop) = (st.clone(), stop2.clone());
            // Every minute, or at once when a burst (a backfill, say) has
            // stretched the head past what a cut would leave: the head's memory
            // is bounded by time, not only by the clock of this loop.
            let mut last = tokio::time::Instant::now();
            tasks::every(Duration::from_secs(1), stop, move || {
                let st = st.clone();
                let due = last.elapsed() >= Duration::from_secs(60) || st.store.needs_maintenance();
                if due {
                    last = tokio::time::Instant::now();
                }
                async move {
                    if due {
                        if let Err(e) = tasks::blocking(move || st.store.maintain()).await {
                            tracing::error!("storage maintenance failed: {e}");
                        }
                    }
                }
            })
        },
    ));
    let (st, stop2) = (state.clone(), stop.clone());
    handles.push(tasks::supervise(
        "records-retention",
        stop.clone(),
        move || {
            let (st, stop) = (st.clone(), stop2.clone());
            tasks::every(Duration::from_secs(60), stop, move || {
                let st = st.clone();
                async move {
                    if let Err(e) = tasks::blocking(move || apply_records_retention(&st)).await {
                        tracing::error!("span and log retention failed: {e}");
                    }
                }
            })
        },
    ));
    handles
}

/// Where the pipeline's derived series and events go: the stores, as if
/// they had been written to the API.
struct StoreSink<'a> {
    st: &'a App,
}

impl sonde_pipeline::Sink for StoreSink<'_> {
    fn series(&mut self, series: Vec<sonde_model::Series>) {
        if let Err(e) = self.st.store.append(&series) {
            tracing::error!("storing derived series failed: {e}");
        }
    }

    fn event(&mut self, event: sonde_model::records::LogRecord) {
        if let Err(e) = crate::write_records::store_logs(self.st, vec![event]) {
            tracing::error!("storing a derived event failed: {e:?}");
        }
    }
}

/// Age retention is the metrics' `retention`; by size, spans and logs are
/// held to their own share of `retention_size` (`Config::retention_budgets`),
/// whatever the metrics' WAL and blocks take.
fn apply_records_retention(state: &AppState) -> Result<usize, sonde_records::Error> {
    let budget = match state.config.retention_budgets() {
        Ok((_, records)) if records > 0 => Some(records),
        _ => None,
    };
    let now_ns = state.clock.now_ms().saturating_mul(1_000_000);
    state.records.apply_retention(now_ns, budget)
}
