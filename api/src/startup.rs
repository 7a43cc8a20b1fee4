//! Building the application and running it until shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::admin_router;
use crate::config::Settings;
use crate::routes::public_router;
use crate::server::serve;
use crate::state::AppState;
use crate::telemetry;

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

    let near = tokio::spawn(Arc::clone(&state.near).keep(state.settings.refresh, stop.clone()));
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
    let _ = near.await;
    let _ = admin_task.await;
    state.redis.quit().await;
    state.pg.close().await;
    tracing::info!("stopped");
    Ok(())
}
