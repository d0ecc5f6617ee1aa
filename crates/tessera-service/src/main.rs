//! `tessera-service`: the service a team would deploy, as a starting point to copy.
//!
//! An axum server whose `/feed` route is guarded by application tokens (each use recorded in
//! the token's per-IP log), over SQLite or PostgreSQL, with a validation cache, health checks,
//! traces and Prometheus metrics. Configuration comes from the environment (see [`config`]):
//!
//! | route | answer |
//! |---|---|
//! | `GET /feed` | 200 for an accepted application token (`Authorization: Bearer ...`), else RFC 6750 |
//! | `GET /open` | 200, unguarded: the same kind of answer as `/feed` (one line naming the client's address), so the benchmark that compares the two measures the guard |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when the store answers and the validation cache's change watch is up (PostgreSQL) or not needed (SQLite: time-to-live bounded); else 503 saying why (`TokenService::ready`) |
//! | `GET /metrics` | Prometheus text: Tessera's metrics and the process's |
//!
//! SIGTERM or Ctrl-C: stop accepting, finish the requests in flight, write the usage ledger
//! (`TokenService::flush`), close the store's pool, exit 0.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera::application::ApplicationAccess;
use tessera::{LedgerSettings, Store, TokenService, ValidationCache};
use tessera_http::{ApplicationLayer, ClientIp};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Database};

/// What the handlers share, behind one `Arc` (every request clones the router's state: one
/// reference count, not one per field).
type App = Arc<Shared>;

/// The handlers' shared state.
struct Shared {
    service: TokenService,
    metrics: PrometheusHandle,
}

/// The log filter without `RUST_LOG`: Tessera and the service at INFO; sqlx's PostgreSQL
/// notices ("schema ... already exists, skipping" at every start) only from WARN.
const DEFAULT_LOG: &str = "info,sqlx=warn";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Colours on a terminal only: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tessera-service stopped");
            eprintln!("tessera-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), config::Error> {
    let config = Config::from_env()?;
    // The recorder first: the service takes its metric handles from it.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| config::Error::Start(format!("cannot install the metrics recorder: {e}")))?;
    // A recorder installed this way keeps every histogram sample until something drains it:
    // only a scrape would, so a service nobody scrapes grew by each timed validation. The
    // upkeep the exporter's own server runs, every 5 s as its default.
    tokio::spawn(upkeep(metrics.clone()));
    let (store, backend): (Arc<dyn Store>, Backend) = match &config.database {
        Database::Sqlite(path) => {
            let store = tessera::sql::SqliteStore::open(path).await?;
            store.migrate().await?;
            (Arc::new(store.clone()), Backend::Sqlite(store))
        }
        Database::Postgres(pg) => {
            let store = tessera::sql::PostgresStore::connect_with(pg.clone()).await?;
            store.migrate().await?;
            (Arc::new(store.clone()), Backend::Postgres(store))
        }
    };
    let service = TokenService::builder_shared(store.clone(), config.peppers)
        .validation_cache(ValidationCache::new(config.cache_ttl))
        .ledger(LedgerSettings::new().interval(config.ledger_interval))
        .build();
    let app: App = Arc::new(Shared {
        service: service.clone(),
        metrics,
    });
    // Start the change watch (and check the store) before taking traffic.
    let ready = service.ready().await;
    if ready.is_ready() {
        tracing::info!(watch = ready.watch.as_str(), "{ready}");
    } else {
        tracing::warn!(watch = ready.watch.as_str(), "{ready}");
    }

    let router = Router::new()
        .route(
            "/feed",
            // The guard wraps the handler itself: per request, axum applies it (a reference
            // count) instead of cloning and boxing a guarded route.
            get(feed.layer(ApplicationLayer::new(service.clone()))),
        )
        .route("/open", get(open))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(app);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| config::Error::Start(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| config::Error::Start(e.to_string()))?;
    tracing::info!(
        listen = %local,
        backend = config.database.name(),
        cache_ttl_s = config.cache_ttl.whole_seconds(),
        "tessera-service listening"
    );
    // A line a supervisor (or a test) can wait for.
    println!("listening on {local}");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .map_err(|e| config::Error::Start(format!("serving failed: {e}")))?;
    // What the usage ledger holds (counts, last uses, audit rows of the last interval) is
    // written before the store closes.
    match service.flush().await {
        Ok(f) => tracing::info!(
            uses = f.uses,
            events = f.events,
            "requests drained; usage ledger written; closing the store"
        ),
        Err(e) => tracing::error!(error = %e,
            "usage ledger could not be written on shutdown: the last interval's counts are lost"),
    }
    drop(service);
    drop(store);
    // Whatever the pool holds is written: close it before exiting.
    match backend {
        Backend::Sqlite(s) => s.close().await,
        Backend::Postgres(p) => p.close().await,
    }
    tracing::info!("tessera-service stopped");
    Ok(())
}

/// Drain the recorder's histogram samples into their summaries, every [`UPKEEP_EVERY`].
async fn upkeep(metrics: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        metrics.run_upkeep();
    }
}

/// How often [`upkeep`] runs: the exporter's default for its own upkeep task.
const UPKEEP_EVERY: StdDuration = StdDuration::from_secs(5);

/// SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested: draining requests in flight");
}

/// The guarded route: one line naming the application and the address it came from.
///
/// The guard's outcome is read in place from the request's extensions (the `Extension`
/// extractor would clone it: two reference counts the other workers bump too).
async fn feed(request: Request) -> Result<String, StatusCode> {
    let extensions = request.extensions();
    match (
        extensions.get::<ApplicationAccess>(),
        extensions.get::<ClientIp>(),
    ) {
        (Some(access), Some(ClientIp(ip))) => Ok(format!("feed for {} at {ip}\n", access.name())),
        // Only if the route lost its guard: never answer as if it were guarded.
        _ => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The unguarded route: the same work as [`feed`] without the guard (one line naming the
/// connection's address), the baseline BENCHMARKS.md compares `/feed` with.
async fn open(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    format!(
        "open to anyone at {}\n",
        tessera::core::net::canonical(peer.ip())
    )
}

/// 200 when the store answers within two seconds and the validation cache's change watch is
/// where it should be (watching on PostgreSQL, time-to-live bounded on SQLite); else 503 saying
/// why. [`TokenService::ready`] starts the watch if it is not yet.
async fn readyz(State(app): State<App>) -> (StatusCode, String) {
    match tokio::time::timeout(StdDuration::from_secs(2), app.service.ready()).await {
        Ok(ready) if ready.is_ready() => (StatusCode::OK, format!("{ready}\n")),
        Ok(ready) => {
            tracing::warn!(watch = ready.watch.as_str(), "{ready}");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{ready}\n"))
        }
        Err(_) => {
            tracing::warn!("not ready: the store did not answer within 2 s");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "not ready: the store did not answer within 2 s ({})\n",
                    app.service.watch_state()
                ),
            )
        }
    }
}

async fn render_metrics(State(app): State<App>) -> String {
    // The cache's hits and time not caching are published lazily: bring them up to date.
    app.service.publish_metrics();
    app.metrics.render()
}

/// The store's own handle, to close its pool on shutdown.
enum Backend {
    Sqlite(tessera::sql::SqliteStore),
    Postgres(tessera::sql::PostgresStore),
}
