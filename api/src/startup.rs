//! Building the application and running it until shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::admin_router;
use crate::config::Settings;
use crate::directory::Directory;
use crate::lookup::Lookup;
use crate::pg_servers::PgServers;
use crate::routes::public_router;
use crate::server::serve;
use crate::stores::RedisTier;
use crate::telemetry;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// Settings.
    pub settings: Settings,
    /// The read path.
    pub lookup: Lookup,
    /// Marker, schools, stream sizes, store health.
    pub directory: Arc<Directory>,
    /// Redis.
    pub redis: RedisTier,
    /// PostgreSQL: the primary and its read replicas.
    pub pg: PgServers,
    /// The metrics registry.
    pub metrics: PrometheusHandle,
    /// `Cache-Control` of result responses.
    pub cache_control: HeaderValue,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Connects the stores (lazily: neither needs to be up) and builds the read path.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let redis = RedisTier::connect(&settings)?;
        let pg = PgServers::connect(&settings)?;
        let directory = Arc::new(Directory::default());
        let lookup = Lookup::new(&settings, redis.clone(), pg.clone(), Arc::clone(&directory));
        let cache_control = HeaderValue::from_str(&format!("public, max-age={}", settings.http_max_age_s))?;
        Ok(Self(Arc::new(Inner {
            settings,
            lookup,
            directory,
            redis,
            pg,
            metrics: telemetry::recorder(),
            cache_control,
        })))
    }
}

/// Runs the API on the two listeners until `shutdown` resolves, then drains: readiness turns
/// false at once, the listener closes after the drain delay, in-flight requests finish.
pub async fn run(
    settings: Settings,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::build(settings)?;
    let stop = CancellationToken::new();
    // One refresh before serving, so the first requests know whether Redis is complete. Both
    // stores answer or fail within their timeouts, so this cannot hang start-up.
    state.directory.refresh(&state.redis, &state.pg).await;
    let refresher = tokio::spawn(Arc::clone(&state.directory).keep_fresh(
        state.redis.clone(),
        state.pg.clone(),
        state.settings.refresh,
        stop.clone(),
    ));

    let upkeep = tokio::spawn(telemetry::upkeep(state.metrics.clone(), stop.clone()));

    let admin_stop = stop.clone();
    let admin_task = tokio::spawn(serve(
        admin,
        admin_router(state.clone()),
        async move { admin_stop.cancelled().await },
        state.settings.shutdown_grace,
    ));

    let draining = state.clone();
    let public_shutdown = async move {
        shutdown.await;
        draining.directory.health.draining.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: not ready any more, draining");
        tokio::time::sleep(draining.settings.drain_delay).await;
    };
    serve(public, public_router(state.clone()), public_shutdown, state.settings.shutdown_grace).await;

    stop.cancel();
    let _ = refresher.await;
    let _ = upkeep.await;
    let _ = admin_task.await;
    state.redis.quit().await;
    state.pg.close().await;
    tracing::info!("stopped");
    Ok(())
}
