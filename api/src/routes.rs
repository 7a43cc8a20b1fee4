//! The public routes: results (and the reference design's alias), health, readiness and the
//! OpenAPI document, JSON errors for everything else, and the per-request metrics.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Json, Router};
use results_core::factor::FACTOR_HEADER;
use results_core::{FactorHash, StudentId};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::directory::FactorMode;
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
    let router =
        routes().into_iter().fold(Router::new(), |router, (template, handler)| router.route(template, handler));
    with_request_layers(router, state)
}

/// The fallbacks and the layers every public request goes through (the last added is the
/// outermost). A panic is caught innermost, inside `track`: its 500 is counted and timed like
/// any response, and the in-flight gauge released.
fn with_request_layers(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(middleware::from_fn(refuse_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), close_when_draining))
        .layer(middleware::from_fn(track))
        .with_state(state)
}

async fn result(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // The last segment of the raw path, still percent-encoded (axum's path extractors decode):
    // "%31000000" is not a registration number.
    let raw = uri.path().rsplit('/').next().unwrap_or_default();
    let id = match StudentId::parse(raw) {
        Ok(id) => id,
        Err(e) => return ApiError::invalid_id(e.to_string()).into_response(),
    };
    let mode = state.directory.snapshot().factor;
    let factor_required = matches!(mode, FactorMode::Required(_));
    let peer = peer.map(|Extension(ConnectInfo(peer))| peer);
    let client = || state.failed_lookups.client(peer, &headers);
    let presented = presented_factor(&state, mode, &headers).and_then(|presented| {
        // Decided from memory: a lookup within the limits costs nothing here.
        match state.failed_lookups.refusal(client, id, factor_required) {
            Some(refusal) => Err(ApiError::failed_lookups_refused(refusal.limit, refusal.retry_after)),
            None => Ok(presented),
        }
    });
    let mut response = match presented {
        Err(refusal) => refusal.into_response(),
        Ok(presented) => {
            match tokio::time::timeout(state.settings.request_timeout, state.lookup.find(id, presented.as_ref())).await
            {
                Ok(Ok(rendered)) => respond(&rendered, &headers, &state.cache_control),
                Ok(Err(LookupError::NotFound)) => {
                    // Counted before answering, so a client that waits for each answer cannot
                    // get past the limit by one.
                    state.failed_lookups.count_failure(client(), id, factor_required).await;
                    ApiError::unknown_id().into_response()
                }
                Ok(Err(LookupError::Unavailable)) => ApiError::unavailable().into_response(),
                Err(_) => {
                    // No registration number (personal data), and one line a second at most: when
                    // a store is slow every request times out, and a line each would flood the log.
                    if first_in_its_second(&LAST_TIMEOUT_LOG, unix_seconds()) {
                        tracing::warn!("lookups exceed the request timeout (logged at most once a second)");
                    }
                    ApiError::unavailable().into_response()
                }
            }
        }
    };
    if factor_required {
        // An answer that depends on a header no cache keys on must not be stored by any: NGINX's
        // micro-cache would hand one student's result (or one wrong guess's 404) to the next.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    response
}

/// The keyed hash of the second factor the request presents, when the data set requires one. It
/// is computed before the lookup, whether or not the number exists, so that an unknown number
/// and a wrong factor do the same work. The header's value is personal data: never logged.
fn presented_factor(state: &AppState, mode: FactorMode, headers: &HeaderMap) -> Result<Option<FactorHash>, ApiError> {
    let FactorMode::Required(kind) = mode else { return Ok(None) };
    let value = headers.get(FACTOR_HEADER).ok_or_else(|| ApiError::factor_required(kind))?;
    let canonical =
        value.to_str().ok().and_then(|text| kind.canonical(text)).ok_or_else(|| ApiError::invalid_factor(kind))?;
    let Some(key) = &state.settings.factor_key else {
        state.factor_key_warning.warn(
            "the data set requires a second factor but this replica has no FACTOR_KEY; answering 503",
            &"FACTOR_KEY is not set",
        );
        return Err(ApiError::unavailable());
    };
    Ok(Some(key.hash(kind, &canonical)))
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
    /// The near cache: `complete` (answers every lookup from memory), `warming` (no copy yet),
    /// `resyncing` (a copy it does not trust: Redis answers, the copy only while Redis cannot),
    /// `bounded` (the data set does not fit its budget: it keeps the buckets lookups read) or
    /// `off`.
    pub near_cache: &'static str,
    /// The near cache holds a copy and Redis is down: lookups are answered from that copy.
    pub serving_from_near_cache: bool,
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let health = &state.directory.health;
    let redis = health.redis_up.load(Ordering::Relaxed);
    let postgres = health.postgres_up.load(Ordering::Relaxed);
    let draining = health.draining.load(Ordering::Relaxed);
    let replicas = state.pg.replica_states();
    let replica_up = replicas.contains(&ReplicaState::Up);
    // With Redis down, nothing can be published: a copy taken from it still answers.
    let copy_answers = !redis && state.near.has_copy();
    let report = Readiness {
        ready: !draining && (redis || postgres || replica_up || copy_answers),
        draining,
        redis: if redis { "up" } else { "down" },
        postgres: if postgres { "up" } else { "down" },
        postgres_replicas: replicas.iter().map(|s| s.label()).collect(),
        complete_data_set: state.directory.snapshot().marker.is_some(),
        near_cache: state.near.state().label(),
        serving_from_near_cache: copy_answers,
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

/// One request in [`HTTP_IN_FLIGHT`] until dropped: also when the client goes away and the
/// request's future is dropped mid-way (a decrement after the `await` would never run).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn start() -> Self {
        let gauge = metrics::gauge!(HTTP_IN_FLIGHT);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

async fn track(request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = match *request.method() {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let in_flight = InFlight::start();
    let started = Instant::now();
    let response = next.run(request).await;
    drop(in_flight);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status_label(response.status()))
        .increment(1);
    response
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;
    use crate::config::Settings;

    /// The value of the series `series` (name and labels, as rendered) in `text`, 0 when absent.
    fn value(text: &str, series: &str) -> f64 {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500_that_releases_the_in_flight_gauge() {
        // Stores are connected lazily: nothing listens on port 1, and nothing here reads them.
        let settings = Settings::new("postgres://127.0.0.1:1/none", "redis://127.0.0.1:1", Default::default());
        let state = AppState::build(settings).expect("the state");
        let router: Router<AppState> = Router::new().route(
            "/panics",
            get(|| async {
                if true {
                    panic!("a handler bug");
                }
                StatusCode::OK
            }),
        );
        let app = with_request_layers(router, state.clone());
        let counted = "http_requests_total{route=\"unmatched\",method=\"GET\",status=\"500\"}";
        let before = state.metrics.render();
        let request = Request::builder().uri("/panics").body(axum::body::Body::empty()).expect("a request");
        let response = app.oneshot(request).await.expect("a response, not a dropped connection");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let after = state.metrics.render();
        assert_eq!(value(&after, counted), value(&before, counted) + 1.0, "the panic's 500 is counted:\n{after}");
        // No other test of this binary sends requests through `track`: nothing else moves the gauge.
        assert_eq!(value(&after, HTTP_IN_FLIGHT), 0.0, "the in-flight gauge is released:\n{after}");
    }

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
