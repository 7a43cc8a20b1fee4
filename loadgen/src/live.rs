//! What a run shows while it runs: the client-side Prometheus metrics on a local `/metrics` port
//! (scraped as job `loadgen`, beside the replicas' server-side latency) and a progress line.
//!
//! Metrics (names per Prometheus conventions; `request` is the request's route-template name):
//! - `loadgen_request_duration_seconds{request,outcome}`: histogram of client-observed latency,
//!   request sent to body read; buckets [`LATENCY_BUCKETS`] (the API's, so panels compare).
//! - `loadgen_requests_total{request,outcome}`: completed requests, `outcome` `ok` or `error`.
//! - `loadgen_request_errors_total{request,kind}`: failures by kind (status, transport, body).
//! - `loadgen_users`: users running.
//!
//! The recorder is not installed globally: handles are registered once per label set at start,
//! so recording a request is a few atomic additions, and tests can run many loads in a process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::LoadgenError;
use crate::failure::ErrorKind;
use crate::request::Request;

/// Client latency histogram name.
pub const DURATION: &str = "loadgen_request_duration_seconds";
/// Completed requests counter name.
pub const REQUESTS: &str = "loadgen_requests_total";
/// Failures by kind counter name.
pub const ERRORS: &str = "loadgen_request_errors_total";
/// Running users gauge name.
pub const USERS: &str = "loadgen_users";

/// Histogram buckets, seconds: the API's (one list in results-core), so client- and server-side
/// latency compare bucket for bucket.
pub use results_core::latency::LATENCY_BUCKETS;

struct RequestHandles {
    ok_duration: Histogram,
    error_duration: Histogram,
    ok: Counter,
    error: Counter,
    kinds: [Counter; 3],
}

/// Progress latency buckets: 8 per power of two of microseconds, up to 2^27 µs (134 s).
const SUB: u32 = 3;
const SLOTS: usize = 28 << SUB;

fn slot(us: u64) -> usize {
    let us = us.max(1);
    let exp = 63 - us.leading_zeros();
    let index = if exp < SUB {
        us as usize
    } else {
        ((exp - SUB + 1) << SUB) as usize + ((us >> (exp - SUB)) as usize & ((1 << SUB) - 1))
    };
    index.min(SLOTS - 1)
}

fn slot_upper_us(index: usize) -> u64 {
    let index = index as u64;
    if index < 1 << SUB {
        return index + 1;
    }
    let exp = (index >> SUB) + u64::from(SUB) - 1;
    let mantissa = (index & ((1 << SUB) - 1)) + (1 << SUB);
    (mantissa + 1) << (exp - u64::from(SUB))
}

/// The live state of a load generator process: Prometheus handles and progress counters.
pub struct Live {
    handle: PrometheusHandle,
    requests: Vec<RequestHandles>,
    users_gauge: Gauge,
    users: AtomicI64,
    total: AtomicU64,
    errors: AtomicU64,
    window: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("total", &self.total).field("errors", &self.errors).finish_non_exhaustive()
    }
}

impl Live {
    /// Builds the recorder and registers every metric.
    ///
    /// # Errors
    /// When the bucket list is refused (it is not).
    pub fn new() -> Result<Arc<Self>, LoadgenError> {
        let recorder: PrometheusRecorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), &LATENCY_BUCKETS)
            .map_err(|e| LoadgenError::Metrics(e.to_string()))?
            .build_recorder();
        recorder.describe_histogram(
            DURATION.into(),
            Some(Unit::Seconds),
            "Client-observed request latency, request sent to body read.".into(),
        );
        recorder.describe_counter(REQUESTS.into(), None, "Requests completed by the load generator.".into());
        recorder.describe_counter(ERRORS.into(), None, "Failed requests by kind: transport, status, body.".into());
        recorder.describe_gauge(USERS.into(), None, "Load generator users running.".into());
        let meta = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        let requests = Request::ALL
            .iter()
            .map(|request| {
                let name = request.name();
                let key = |metric: &'static str, label: &'static str, value: &'static str| {
                    Key::from_parts(metric, vec![Label::new("request", name), Label::new(label, value)])
                };
                RequestHandles {
                    ok_duration: recorder.register_histogram(&key(DURATION, "outcome", "ok"), &meta),
                    error_duration: recorder.register_histogram(&key(DURATION, "outcome", "error"), &meta),
                    ok: recorder.register_counter(&key(REQUESTS, "outcome", "ok"), &meta),
                    error: recorder.register_counter(&key(REQUESTS, "outcome", "error"), &meta),
                    kinds: ErrorKind::ALL
                        .map(|kind| recorder.register_counter(&key(ERRORS, "kind", kind.as_str()), &meta)),
                }
            })
            .collect();
        let users_gauge = recorder.register_gauge(&Key::from_static_name(USERS), &meta);
        Ok(Arc::new(Self {
            handle: recorder.handle(),
            requests,
            users_gauge,
            users: AtomicI64::new(0),
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            window: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }))
    }

    /// Records one completed request.
    pub fn record(&self, request: Request, elapsed: Duration, error: Option<ErrorKind>) {
        let handles = &self.requests[request as usize];
        let seconds = elapsed.as_secs_f64();
        self.total.fetch_add(1, Ordering::Relaxed);
        match error {
            None => {
                handles.ok_duration.record(seconds);
                handles.ok.increment(1);
            }
            Some(kind) => {
                handles.error_duration.record(seconds);
                handles.error.increment(1);
                handles.kinds[kind as usize].increment(1);
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.window[slot(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// A user started (`delta` 1) or stopped (-1).
    pub fn user(&self, delta: i64) {
        let now = self.users.fetch_add(delta, Ordering::Relaxed) + delta;
        self.users_gauge.set(now.max(0) as f64);
    }

    /// Forgets the running users (between runs).
    pub fn reset_users(&self) {
        self.users.store(0, Ordering::Relaxed);
        self.users_gauge.set(0.0);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The progress line since the previous one, `interval` ago: users, req/s, p99, errors.
    fn progress_line(&self, started: Instant, interval: Duration, last: &mut (u64, u64)) -> String {
        let total = self.total.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        let counts: Vec<u64> = self.window.iter().map(|slot| slot.swap(0, Ordering::Relaxed)).collect();
        let in_window: u64 = counts.iter().sum();
        let p99 = percentile_us(&counts, in_window, 0.99);
        let rate = (total - last.0) as f64 / interval.as_secs_f64().max(0.001);
        let line = format!(
            "loadgen: {:>4}s  users {:>6}  {:>8.0} req/s  p99 {:>8}  errors {} ({} new)",
            started.elapsed().as_secs(),
            self.users.load(Ordering::Relaxed).max(0),
            rate,
            if in_window == 0 { "-".to_owned() } else { format!("{:.1} ms", p99 as f64 / 1000.0) },
            errors,
            errors - last.1,
        );
        *last = (total, errors);
        line
    }

    /// Prints a progress line every `every` until `stop`, and keeps the histograms drained.
    pub async fn progress(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let started = Instant::now();
        let mut last = (self.total.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed));
        for slot in self.window.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        let tick = if every.is_zero() { Duration::from_secs(5) } else { every };
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {
                    self.handle.run_upkeep();
                    let line = self.progress_line(started, tick, &mut last);
                    if !every.is_zero() {
                        eprintln!("{line}");
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }

    /// Serves `GET /metrics` on `listener` until `stop`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) -> std::io::Result<()> {
        let live = self;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let live = Arc::clone(&live);
                async move { ([("content-type", "text/plain; version=0.0.4")], live.render()) }
            }),
        );
        axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await
    }
}

/// Binds the metrics address; a busy port is a warning, not a failed test.
pub async fn bind(addr: SocketAddr) -> Option<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            eprintln!("loadgen: warning: live metrics off, cannot listen on {addr}: {e} (set LOADGEN_METRICS_LISTEN)");
            None
        }
    }
}

fn percentile_us(counts: &[u64], total: u64, quantile: f64) -> u64 {
    let rank = ((total as f64) * quantile).ceil() as u64;
    let mut seen = 0;
    for (index, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank.max(1) {
            return slot_upper_us(index);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_slots_bound_their_values() {
        for us in [1u64, 2, 7, 8, 9, 15, 16, 100, 999, 1_000, 12_345, 1_000_000, 60_000_000] {
            let index = slot(us);
            assert!(slot_upper_us(index) >= us, "{us} within slot {index}");
            assert!(slot_upper_us(index) as f64 <= us as f64 * 1.25 + 1.0, "{us}: slot {index} is tight");
            assert!(index == 0 || slot_upper_us(index - 1) <= us, "{us}: previous slot below");
        }
    }

    #[test]
    fn metrics_render_with_prometheus_names() {
        let live = Live::new().expect("live");
        live.record(Request::Result, Duration::from_millis(3), None);
        live.record(Request::Alias, Duration::from_millis(3), Some(ErrorKind::Body));
        live.user(1);
        let text = live.render();
        assert!(
            text.contains(
                "loadgen_request_duration_seconds_bucket{request=\"/v1/results/{id}\",outcome=\"ok\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("loadgen_request_errors_total{request=\"/student/{id}\",kind=\"body\"} 1"), "{text}");
        assert!(text.contains("loadgen_users 1"), "{text}");
    }
}
