//! The admin port: `/metrics` for Prometheus and, when API_PPROF is on, `/debug/pprof/profile`
//! for CPU profiles. It is served on its own listener, which NGINX never proxies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::error::ApiError;
use crate::pg_servers::ReplicaState;
use crate::state::AppState;
use crate::telemetry::{DB_POOL, DB_REPLICAS, REDIS_CONNECTED};

/// The longest profile one request may ask for, in seconds.
pub const MAX_PROFILE_SECONDS: u64 = 60;

/// The Prometheus text exposition format's media type, with its charset (the format is UTF-8).
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Only one profile at a time: the profiler is process-wide (one SIGPROF timer).
static PROFILING: AtomicBool = AtomicBool::new(false);

/// The admin router.
pub fn admin_router(state: AppState) -> Router {
    let router = Router::new().route("/metrics", get(metrics));
    // Off: the same 404 as any unknown admin path, so a scan learns nothing.
    let router = if state.settings.pprof { router.route("/debug/pprof/profile", get(profile)) } else { router };
    router.fallback(|| async { ApiError::no_route() }).with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    for (server, open, idle) in state.pg.pool_usage() {
        metrics::gauge!(DB_POOL, "state" => "open", "server" => server.label()).set(f64::from(open));
        metrics::gauge!(DB_POOL, "state" => "idle", "server" => server.label()).set(idle as f64);
    }
    let replicas = state.pg.replica_states();
    if !replicas.is_empty() {
        for mark in [ReplicaState::Up, ReplicaState::Down, ReplicaState::Lagging] {
            let n = replicas.iter().filter(|&&s| s == mark).count();
            metrics::gauge!(DB_REPLICAS, "state" => mark.label()).set(n as f64);
        }
    }
    metrics::gauge!(REDIS_CONNECTED).set(if state.redis.is_connected() { 1.0 } else { 0.0 });
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, HeaderValue::from_static(EXPOSITION_CONTENT_TYPE))], body).into_response()
}

/// Query of the profile endpoint.
#[derive(Debug, Deserialize)]
pub struct ProfileQuery {
    /// Duration in seconds (default 10, at most [`MAX_PROFILE_SECONDS`]).
    seconds: Option<u64>,
    /// `svg` (flamegraph, default) or `pb` (pprof protobuf).
    format: Option<String>,
}

struct Busy;

impl Drop for Busy {
    fn drop(&mut self) {
        PROFILING.store(false, Ordering::Release);
    }
}

async fn profile(Query(query): Query<ProfileQuery>) -> Response {
    let seconds = query.seconds.unwrap_or(10);
    if !(1..=MAX_PROFILE_SECONDS).contains(&seconds) {
        return ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_seconds",
            message: format!("seconds must be between 1 and {MAX_PROFILE_SECONDS}"),
            factor: None,
            retry_after: None,
        }
        .into_response();
    }
    let protobuf = match query.format.as_deref() {
        None | Some("svg") => false,
        Some("pb") => true,
        Some(_) => {
            return ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_format",
                message: "format must be svg or pb".into(),
                factor: None,
                retry_after: None,
            }
            .into_response();
        }
    };
    if PROFILING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return ApiError {
            status: StatusCode::CONFLICT,
            code: "profile_running",
            message: "a profile is already running".into(),
            factor: None,
            retry_after: None,
        }
        .into_response();
    }
    let busy = Busy;
    // The profiler guard is not Send; it lives on a blocking thread for the whole profile.
    let outcome = tokio::task::spawn_blocking(move || {
        let _busy = busy;
        collect(Duration::from_secs(seconds), protobuf)
    })
    .await;
    match outcome {
        Ok(Ok((content_type, body))) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "profiling failed");
            ApiError::internal().into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "the profiling task failed");
            ApiError::internal().into_response()
        }
    }
}

fn collect(duration: Duration, protobuf: bool) -> anyhow::Result<(&'static str, Vec<u8>)> {
    // Unwinding from a signal handler is not async-signal-safe: a sample landing inside libc,
    // libgcc's unwinder, pthread or the vDSO can deadlock or crash. Those frames are skipped.
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?;
    std::thread::sleep(duration);
    let report = guard.report().build()?;
    drop(guard);
    let mut body = Vec::new();
    if protobuf {
        use pprof::protos::Message;
        let profile = report.pprof()?;
        profile.write_to_vec(&mut body)?;
        Ok(("application/octet-stream", body))
    } else if report.data.is_empty() {
        // An idle replica gives no sample, and the flamegraph renderer then writes no SVG at all
        // (an empty 200 that a browser shows as a broken image): say so in a picture instead.
        Ok(("image/svg+xml", idle_flamegraph(duration).into_bytes()))
    } else {
        report.flamegraph(&mut body)?;
        Ok(("image/svg+xml", body))
    }
}

/// The flamegraph of a profile without samples: one line of text saying why.
fn idle_flamegraph(duration: Duration) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
         <text x=\"10\" y=\"25\" font-family=\"monospace\" font-size=\"14\">\
         No CPU samples in {} s: the replica was idle.</text></svg>\n",
        duration.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::idle_flamegraph;

    #[test]
    fn an_idle_profile_is_an_svg_that_says_so() {
        let svg = idle_flamegraph(Duration::from_secs(2));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("No CPU samples in 2 s"), "{svg}");
    }
}
