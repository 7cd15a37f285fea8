//! The server's shared state, its three listeners, background upkeep and
//! ordered shutdown.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use sonde_ingest::otlp::MetricsConverter;
use sonde_model::{Clock, SystemClock};
use sonde_query::{Engine, EngineOptions};
use sonde_store::{FsyncPolicy, Store};
use tokio::sync::{watch, Semaphore};

use crate::config::Config;
use crate::self_metrics::SelfMetrics;
use crate::{api, grpc, write};

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub engine: Engine,
    pub converter: MetricsConverter,
    pub metrics: SelfMetrics,
    pub clock: Arc<dyn Clock>,
    pub write_permits: Semaphore,
    pub query_permits: Semaphore,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let store_opts = config.store_options()?;
        let store =
            Store::open(&config.data_dir, store_opts, clock.clone()).with_context(|| {
                format!(
                    "cannot open the data directory {}",
                    config.data_dir.display()
                )
            })?;
        let (lookback, timeout) = config.durations()?;
        let engine = Engine::new(EngineOptions {
            lookback_delta_ms: lookback.as_millis() as i64,
            max_samples: config.query_max_samples,
            timeout,
        });
        Ok(App {
            write_permits: Semaphore::new(config.max_inflight_writes.max(1)),
            query_permits: Semaphore::new(config.max_concurrent_queries.max(1)),
            config,
            store: Arc::new(store),
            engine,
            converter: MetricsConverter::new(),
            metrics: SelfMetrics::new(),
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
        .fallback(api::not_found)
        .with_state(state)
}

/// The OTLP/HTTP port.
pub fn otlp_http_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/metrics", post(write::otlp_http_metrics))
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
        .fallback(grpc::unimplemented)
        .with_state(state)
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
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
    signal.await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    for s in servers {
        match tokio::time::timeout(Duration::from_secs(10), s).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("listener ended with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("listener task failed: {e}"),
            Err(_) => tracing::warn!("requests still running after 10s; closing anyway"),
        }
    }
    let _ = upkeep.await;
    tokio::task::block_in_place(|| state.store.sync()).context("final WAL flush failed")?;
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

/// Periodic fsync (for the interval policy) and storage maintenance, as two
/// tasks: a long maintenance run must not stretch the fsync interval, which
/// bounds what a power loss can take.
fn spawn_upkeep(state: AppState, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let fsync = match state.store.options().fsync {
        FsyncPolicy::IntervalMs(ms) => Some(Duration::from_millis(ms)),
        _ => None,
    };
    let sync_task = fsync.map(|every| {
        let (state, mut stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let store = state.store.clone();
                        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.sync()).await {
                            tracing::error!("WAL fsync failed: {e}");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        })
    });
    let mut stop = stop;
    tokio::spawn(async move {
        // Every minute, or at once when a burst (a backfill, say) has
        // stretched the head past what a cut would leave: the head's memory
        // is bounded by time, not only by the clock of this loop.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if last.elapsed() < Duration::from_secs(60) && !state.store.needs_maintenance() {
                        continue;
                    }
                    last = tokio::time::Instant::now();
                    let store = state.store.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.maintain()).await {
                        tracing::error!("storage maintenance failed: {e}");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        if let Some(t) = sync_task {
            let _ = t.await;
        }
    })
}
