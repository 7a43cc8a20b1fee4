//! The public routes: results (and the reference design's alias), health, readiness and the
//! OpenAPI document, JSON errors for everything else, and the per-request metrics.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use results_core::StudentId;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::lookup::LookupError;
use crate::openapi;
use crate::pg_servers::ReplicaState;
use crate::state::AppState;
use crate::telemetry::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS};
use crate::view::RenderedResult;

/// The main results route.
pub const RESULTS_ROUTE: &str = "/v1/results/{id}";
/// The reference design's path, answered identically.
pub const ALIAS_ROUTE: &str = "/student/{id}";
/// Liveness.
pub const HEALTH_ROUTE: &str = "/healthz";
/// Readiness.
pub const READY_ROUTE: &str = "/readyz";
/// The OpenAPI document of these routes.
pub const OPENAPI_ROUTE: &str = "/openapi.json";
/// Request bodies above this are refused (no public route reads a body).
pub const MAX_BODY_BYTES: u64 = 1024;

/// Every public route and what answers it. The router is built from this one table, so
/// [`PUBLIC_ROUTES`] (the metrics' route labels, and what `api/openapi.json` must document:
/// `api/tests/api/openapi.rs`) cannot miss a route.
fn routes() -> [(&'static str, MethodRouter<AppState>); 5] {
    [
        (RESULTS_ROUTE, get(result)),
        (ALIAS_ROUTE, get(result)),
        (HEALTH_ROUTE, get(healthz)),
        (READY_ROUTE, get(readyz)),
        (OPENAPI_ROUTE, get(openapi::document)),
    ]
}

/// The template of every public route, in the router's order.
pub static PUBLIC_ROUTES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| routes().into_iter().map(|(template, _)| template).collect());

/// The public router.
pub fn public_router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (template, handler)| router.route(template, handler))
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn(refuse_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), close_when_draining))
        .layer(middleware::from_fn(track))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .with_state(state)
}

async fn result(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    // The last segment of the raw path, still percent-encoded (axum's path extractors decode):
    // "%31000000" is not a registration number.
    let raw = uri.path().rsplit('/').next().unwrap_or_default();
    let id = match StudentId::parse(raw) {
        Ok(id) => id,
        Err(e) => return ApiError::invalid_id(e.to_string()).into_response(),
    };
    match tokio::time::timeout(state.settings.request_timeout, state.lookup.find(id)).await {
        Ok(Ok(rendered)) => respond(&rendered, &headers, &state.cache_control),
        Ok(Err(LookupError::NotFound)) => ApiError::unknown_id().into_response(),
        Ok(Err(LookupError::Unavailable)) => ApiError::unavailable().into_response(),
        Err(_) => {
            // No registration number (personal data), and one line a second at most: when a
            // store is slow every request times out, and a line each would flood the log.
            if first_in_its_second(&LAST_TIMEOUT_LOG, unix_seconds()) {
                tracing::warn!("lookups exceed the request timeout (logged at most once a second)");
            }
            ApiError::unavailable().into_response()
        }
    }
}

/// The second (Unix time) of the last request-timeout log line.
static LAST_TIMEOUT_LOG: AtomicU64 = AtomicU64::new(0);

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether `now` (in seconds) is a later second than the last one recorded in `last`, which
/// then records it: the first caller of each second gets true, its others false.
fn first_in_its_second(last: &AtomicU64, now: u64) -> bool {
    last.fetch_max(now, Ordering::Relaxed) < now
}

/// Whether an `If-None-Match` header matches `etag` (a list, `*`, or weak forms compare equal).
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|candidate| {
            let candidate = candidate.trim_ascii();
            candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == ours
        })
    })
}

fn respond(rendered: &RenderedResult, headers: &HeaderMap, cache_control: &HeaderValue) -> Response {
    let mut response = if matches_etag(headers, &rendered.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut ok = rendered.body.clone().into_response();
        ok.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ok
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, rendered.etag.clone());
    out.insert(header::CACHE_CONTROL, cache_control.clone());
    response
}

#[derive(Serialize)]
struct Alive {
    status: &'static str,
}

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Json(Alive { status: "alive" }))
}

/// The readiness report.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Ready to take traffic: not draining, and at least one store (or read replica) reachable.
    pub ready: bool,
    /// Shutting down.
    pub draining: bool,
    /// `up` or `down`.
    pub redis: &'static str,
    /// `up` or `down` (the primary).
    pub postgres: &'static str,
    /// Each read replica, in the order of `DATABASE_REPLICA_URLS`: `up`, `down` or `lagging`
    /// (empty without replicas; never their URLs, which carry passwords).
    pub postgres_replicas: Vec<&'static str>,
    /// Redis holds the complete data set (its misses are authoritative).
    pub complete_data_set: bool,
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let health = &state.directory.health;
    let redis = health.redis_up.load(Ordering::Relaxed);
    let postgres = health.postgres_up.load(Ordering::Relaxed);
    let draining = health.draining.load(Ordering::Relaxed);
    let replicas = state.pg.replica_states();
    let replica_up = replicas.contains(&ReplicaState::Up);
    let report = Readiness {
        ready: !draining && (redis || postgres || replica_up),
        draining,
        redis: if redis { "up" } else { "down" },
        postgres: if postgres { "up" } else { "down" },
        postgres_replicas: replicas.iter().map(|s| s.label()).collect(),
        complete_data_set: state.directory.snapshot().marker.is_some(),
    };
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(report))
}

/// While draining, every response asks the client (NGINX) to close its keep-alive connection,
/// so connections retire one by one before the listener closes, instead of a request racing the
/// close of an idle connection at shutdown (NGINX would log "upstream prematurely closed").
async fn close_when_draining(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if state.directory.health.draining.load(Ordering::Relaxed) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn refuse_bodies(request: Request, next: Next) -> Response {
    let length =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return ApiError::body_too_large().into_response();
    }
    next.run(request).await
}

/// Route label: the matched template, never the raw path (bounded cardinality).
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|matched| PUBLIC_ROUTES.iter().find(|template| **template == matched.as_str()))
        .copied()
        .unwrap_or("unmatched")
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 400 => "other_success",
        s if s < 500 => "other_client_error",
        _ => "other_server_error",
    }
}

async fn track(request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = match *request.method() {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let in_flight = metrics::gauge!(HTTP_IN_FLIGHT);
    in_flight.increment(1.0);
    let started = Instant::now();
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status_label(response.status()))
        .increment(1);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_star_and_weak_forms() {
        let etag = HeaderValue::from_static("\"abc\"");
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
            matches_etag(&headers, &etag)
        };
        assert!(with("\"abc\""));
        assert!(with("\"x\", \"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("*"));
        assert!(!with("\"abd\""));
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }

    #[test]
    fn the_timeout_line_is_written_once_a_second_at_most() {
        let last = AtomicU64::new(0);
        assert!(first_in_its_second(&last, 100));
        assert!(!first_in_its_second(&last, 100), "a second line within the same second");
        assert!(!first_in_its_second(&last, 99), "a clock that went back does not log again");
        assert!(first_in_its_second(&last, 101));
    }
}
