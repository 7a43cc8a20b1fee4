//! Metric names, the Prometheus recorder and rate-limited warnings.
//!
//! Latency buckets are chosen for the goal of a p99 well under 100 ms through NGINX: fine steps
//! from 0.25 ms to 25 ms where the API lives, coarser ones up to 5 s for outages. The same
//! explicit buckets on every replica let `histogram_quantile` aggregate across replicas.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests by `route` (template), `method` and `status`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Request latency by `route`, seconds.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
/// Requests being served.
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";
/// Lookups by `tier` (near, near_while_redis_down, redis, memory, db) and `outcome` (hit, miss, error, decode_error); the db
/// tier also by `server` (replica, primary: which answered).
pub const LOOKUPS: &str = "result_lookups_total";
/// PostgreSQL read replica reads that failed (then the next server answered or failed).
pub const DB_REPLICA_ERRORS: &str = "db_replica_errors_total";
/// PostgreSQL read replicas by `state` (up, down, lagging), from the last refresh.
pub const DB_REPLICAS: &str = "db_replicas";
/// PostgreSQL pool connections by `server` (primary, replica: all replicas) and `state` (open,
/// idle).
pub const DB_POOL: &str = "db_pool_connections";
/// 1 while the Redis client is connected, else 0. In the application's `api_` namespace: a
/// `redis_` name would read as one of redis_exporter's series, and `_up` as a count.
pub const REDIS_CONNECTED: &str = "api_redis_connected";
/// Constant 1 with the `version` label.
pub const BUILD_INFO: &str = "api_build_info";
/// Lookups refused before they were tried, by `limit` (client, number): see `failed_lookups`.
pub const FAILED_LOOKUP_REFUSALS: &str = "failed_lookup_refusals_total";
/// Lookups the near cache answered from memory, by `answer` (result, unknown, while_redis_down).
pub const NEAR_HITS: &str = "near_cache_hits_total";
/// Lookups the near cache could not answer from memory (not complete, the bucket being
/// refetched, or in bounded mode not kept).
pub const NEAR_MISSES: &str = "near_cache_misses_total";
/// Bucket keys Redis reported written (each empties a slot of the copy until refetched).
pub const NEAR_INVALIDATIONS: &str = "near_cache_invalidations_total";
/// Full rebuilds of the near cache by `outcome` (complete, failed, over_budget, bounded).
pub const NEAR_RESYNCS: &str = "near_cache_resyncs_total";
/// Memory held by the near cache's copy or bounded cache, bytes.
pub const NEAR_BYTES: &str = "near_cache_bytes";

/// Histogram buckets of [`HTTP_DURATION`], seconds (shared with the load generator).
pub use results_core::latency::LATENCY_BUCKETS;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (tests build many apps in one
/// process; they share it).
pub fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
                    }
                    describe();
                    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    describe_near_cache();
                    handle
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the metrics recorder");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// The `# HELP` line of every series above (Prometheus's exposition convention: a scrape says
/// what each series is). A series added without one fails `api/tests/api/operations.rs`.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status.");
    describe_histogram!(HTTP_DURATION, "Time from request head to response, by route template, in seconds.");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being served.");
    describe_counter!(
        LOOKUPS,
        "Result lookups by tier (near, near_while_redis_down, redis, memory, db), outcome and, for db, server."
    );
    describe_counter!(DB_REPLICA_ERRORS, "PostgreSQL read replica reads that failed.");
    describe_gauge!(DB_REPLICAS, "PostgreSQL read replicas by state (up, down, lagging) at the last refresh.");
    describe_gauge!(DB_POOL, "PostgreSQL pool connections by server (primary, replica) and state (open, idle).");
    describe_gauge!(REDIS_CONNECTED, "1 while this replica's Redis client is connected, else 0.");
    describe_gauge!(BUILD_INFO, "Constant 1, labelled with the API's version.");
    describe_counter!(
        FAILED_LOOKUP_REFUSALS,
        "Lookups answered 429 before they were tried: too many failed lookups from the client, or failed tries at the number (limit)."
    );
}

/// `# HELP` of the near cache's metrics.
fn describe_near_cache() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        NEAR_HITS,
        "Lookups answered from the near cache's memory, by answer (result, unknown, while_redis_down)."
    );
    describe_counter!(
        NEAR_MISSES,
        "Lookups the near cache could not answer from memory (copy incomplete or untrusted, the bucket being refetched, or not kept in bounded mode): Redis was asked."
    );
    describe_counter!(
        NEAR_INVALIDATIONS,
        "Bucket keys Redis reported written to the near cache's tracking connection."
    );
    describe_counter!(
        NEAR_RESYNCS,
        "Full rebuilds of the near cache from Redis, by outcome (complete, failed, over_budget: too big for the budget, bounded: an empty bounded cache started)."
    );
    describe_gauge!(
        NEAR_BYTES,
        Unit::Bytes,
        "Memory held by the near cache: its copy of the data set, or in bounded mode the buckets it keeps (within API_NEAR_CACHE_MB)."
    );
}

/// Drains the histograms' raw samples into their buckets every few seconds until `stop`.
///
/// Without this the recorder keeps every observation until the next scrape: a replica that
/// nobody scrapes grows by ~25 bytes a request (measured with `cargo xtask bench api`).
pub async fn upkeep(handle: PrometheusHandle, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
            () = stop.cancelled() => return,
        }
    }
}

/// Logs a warning at most once per interval (the count of suppressed ones goes in the next).
#[derive(Debug)]
pub struct RateLimitedWarning {
    interval: Duration,
    start: Instant,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedWarning {
    /// At most one warning per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, start: Instant::now(), last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Warns with `message` unless one was logged within the interval.
    pub fn warn(&self, message: &str, error: &dyn std::fmt::Display) {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval.as_millis() as u64;
        if due && self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(%error, suppressed, "{message}");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
