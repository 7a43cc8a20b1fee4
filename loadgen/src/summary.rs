//! The end of a run: figures from goose's metrics (percentiles from the coordinated-omission
//! corrected data when goose has it), the SLO gates, and the one-screen text summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use goose::goose::GooseMethod;
use goose::metrics::{GooseMetrics, GooseRequestMetricTimingData};
use serde::Serialize;

use crate::config::Slo;

/// Latency figures of a set of requests, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// One request name's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    /// `METHOD name`, as goose's reports name it.
    pub name: String,
    /// Requests made.
    pub requests: usize,
    /// Requests that failed.
    pub failures: usize,
    /// Latency (corrected when the run is).
    pub latency: Latency,
}

/// One kind of error and how often it happened.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    /// `METHOD name: error`.
    pub error: String,
    /// Occurrences.
    pub count: usize,
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Most users running at once.
    pub users: usize,
    /// Seconds measured (after the ramp-up unless goose's --no-reset-metrics).
    pub seconds: usize,
    /// Requests made.
    pub requests: usize,
    /// Requests that failed (status, transport or body).
    pub failures: usize,
    /// failures / requests.
    pub error_ratio: f64,
    /// Requests per second over `seconds`.
    pub rps: f64,
    /// Whether `latency` includes goose's coordinated-omission backfill.
    pub co_corrected: bool,
    /// Latency of every request (corrected when `co_corrected`).
    pub latency: Latency,
    /// Latency as measured, without the backfill.
    pub raw_latency: Latency,
    /// Per request name.
    pub by_request: Vec<RequestRow>,
    /// Errors by kind, most frequent first.
    pub errors: Vec<ErrorRow>,
}

/// Merged response-time buckets.
#[derive(Default)]
struct Times {
    buckets: BTreeMap<u64, usize>,
    total: usize,
    min_us: u64,
    max_us: u64,
}

impl Times {
    fn add(&mut self, data: &GooseRequestMetricTimingData) {
        if data.counter == 0 {
            return;
        }
        for (&floor, &count) in data.times_us.iter() {
            *self.buckets.entry(floor).or_default() += count;
            self.total += count;
        }
        self.min_us = if self.min_us == 0 { data.minimum_time_us } else { self.min_us.min(data.minimum_time_us) };
        self.max_us = self.max_us.max(data.maximum_time_us);
    }

    /// goose's buckets: exact below 128 µs, then 64 per power of two; a bucket reports its middle.
    fn middle(floor: u64) -> u64 {
        if floor < 128 { floor } else { floor + ((1u64 << (63 - floor.leading_zeros() - 6)) >> 1) }
    }

    fn percentile_us(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * quantile).ceil().max(1.0) as usize;
        let mut seen = 0;
        for (&floor, &count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Self::middle(floor).clamp(self.min_us, self.max_us);
            }
        }
        self.max_us
    }

    fn latency(&self) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50_ms: ms(self.percentile_us(0.50)),
            p95_ms: ms(self.percentile_us(0.95)),
            p99_ms: ms(self.percentile_us(0.99)),
            max_ms: ms(self.max_us),
        }
    }
}

fn method_label(method: &GooseMethod) -> String {
    format!("{method}").to_uppercase()
}

impl Stats {
    /// The figures of `metrics`.
    pub fn from_metrics(metrics: &GooseMetrics) -> Self {
        let mut all = Times::default();
        let mut all_raw = Times::default();
        let mut co_corrected = false;
        let mut requests = 0;
        let mut failures = 0;
        let mut by_request = Vec::new();
        // goose counts its coordinated-omission backfill as requests (successes, when the
        // original's body check had not failed it yet): real requests are the measured times,
        // and real failures the error summary's occurrences, which never include the backfill.
        let mut failed_by_request: BTreeMap<String, usize> = BTreeMap::new();
        for error in metrics.errors.values() {
            *failed_by_request.entry(format!("{} {}", method_label(&error.method), error.name)).or_default() +=
                error.occurrences;
        }
        let errors_summarised = !metrics.errors.is_empty() || metrics.requests.values().all(|a| a.fail_count == 0);
        let mut names: Vec<_> = metrics.requests.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        for (key, aggregate) in names {
            let data = aggregate.coordinated_omission_data.as_ref().unwrap_or(&aggregate.raw_data);
            co_corrected |= aggregate.coordinated_omission_data.is_some();
            let mut one = Times::default();
            one.add(data);
            all.add(data);
            all_raw.add(&aggregate.raw_data);
            let name = if key.is_empty() {
                format!("{} {}", method_label(&aggregate.method), aggregate.path)
            } else {
                key.clone()
            };
            let made = aggregate.raw_data.counter;
            let failed = if errors_summarised {
                failed_by_request.get(&name).copied().unwrap_or(0)
            } else {
                aggregate.fail_count.min(made)
            };
            requests += made;
            failures += failed;
            by_request.push(RequestRow { name, requests: made, failures: failed, latency: one.latency() });
        }
        let mut errors: Vec<ErrorRow> = metrics
            .errors
            .values()
            .map(|e| ErrorRow {
                error: format!("{} {}: {}", method_label(&e.method), e.name, e.error),
                count: e.occurrences,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.error.cmp(&b.error)));
        let seconds = metrics.duration.max(1);
        Stats {
            users: metrics.maximum_users,
            seconds: metrics.duration,
            requests,
            failures,
            error_ratio: if requests == 0 { 0.0 } else { failures as f64 / requests as f64 },
            rps: requests as f64 / seconds as f64,
            co_corrected,
            latency: all.latency(),
            raw_latency: all_raw.latency(),
            by_request,
            errors,
        }
    }
}

/// One SLO gate, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// `p95`, `p99` or `error ratio`.
    pub name: &'static str,
    /// What was observed (ms, or a ratio).
    pub observed: f64,
    /// The limit (ms, or a ratio).
    pub limit: f64,
    /// observed <= limit.
    pub passed: bool,
}

/// The SLO gates and goose's own `--threshold` rules, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// This project's gates.
    pub gates: Vec<Gate>,
    /// goose `--threshold` rules that failed, as goose words them.
    pub failed_thresholds: Vec<String>,
    /// No request completed: nothing was measured, which never passes.
    pub no_requests: bool,
}

impl Verdict {
    /// Judges `stats` against `slo` (goose's failed `--threshold` rules added).
    pub fn judge(stats: &Stats, slo: &Slo, failed_thresholds: Vec<String>) -> Self {
        let gate = |name, observed: f64, limit: f64| Gate { name, observed, limit, passed: observed <= limit };
        Self {
            gates: vec![
                gate("p95", stats.latency.p95_ms, slo.p95_ms),
                gate("p99", stats.latency.p99_ms, slo.p99_ms),
                gate("error ratio", stats.error_ratio, slo.error_ratio),
            ],
            failed_thresholds,
            no_requests: stats.requests == 0,
        }
    }

    /// Every gate and rule passed, and something was measured.
    pub fn passed(&self) -> bool {
        !self.no_requests && self.failed_thresholds.is_empty() && self.gates.iter().all(|g| g.passed)
    }
}

/// What a finished run leaves behind.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The target.
    pub host: String,
    /// goose's coordinated-omission mitigation mode (`average`, …, or `disabled`).
    pub co_mitigation: String,
    /// The figures.
    pub stats: Stats,
    /// The SLO gates.
    pub slo: Slo,
    /// The judgement.
    pub verdict: Verdict,
    /// The run folder.
    pub dir: PathBuf,
    /// Files in the run folder (reports, logs, this summary).
    pub files: Vec<String>,
}

fn ms(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0} ms") } else { format!("{value:.1} ms") }
}

fn pct(ratio: f64) -> String {
    format!("{:.3}%", ratio * 100.0)
}

impl RunSummary {
    /// The one-screen text summary.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let _ = writeln!(out, "── loadgen summary ─────────────────────────────────────────────────────────────");
        let _ = writeln!(out, "target      {}   users {}   measured {} s", self.host, s.users, s.seconds);
        let _ = writeln!(
            out,
            "throughput  {} requests, {:.1} req/s   failures {} ({})",
            s.requests,
            s.rps,
            s.failures,
            pct(s.error_ratio)
        );
        let _ = writeln!(
            out,
            "latency     p50 {}  p95 {}  p99 {}  max {}",
            ms(s.latency.p50_ms),
            ms(s.latency.p95_ms),
            ms(s.latency.p99_ms),
            ms(s.latency.max_ms)
        );
        if s.co_corrected {
            let _ = writeln!(
                out,
                "            corrected for coordinated omission (goose --co-mitigation {}); as measured: p95 {} p99 {}",
                self.co_mitigation,
                ms(s.raw_latency.p95_ms),
                ms(s.raw_latency.p99_ms)
            );
        } else if self.co_mitigation == "disabled" {
            let _ = writeln!(out, "            NOT corrected for coordinated omission (--co-mitigation disabled)");
        } else {
            let _ = writeln!(
                out,
                "            coordinated-omission mitigation on ({}); no stall needed a correction",
                self.co_mitigation
            );
        }
        let _ =
            writeln!(out, "{:<38}{:>9}{:>7}{:>10}{:>10}{:>10}", "by request", "requests", "fail", "p50", "p95", "p99");
        for row in &s.by_request {
            let _ = writeln!(
                out,
                "  {:<36}{:>9}{:>7}{:>10}{:>10}{:>10}",
                row.name,
                row.requests,
                row.failures,
                ms(row.latency.p50_ms),
                ms(row.latency.p95_ms),
                ms(row.latency.p99_ms)
            );
        }
        if s.errors.is_empty() {
            let _ = writeln!(out, "errors      none");
        } else {
            let _ = writeln!(out, "errors by kind");
            for row in s.errors.iter().take(6) {
                let _ = writeln!(out, "  {:>8} × {}", row.count, row.error);
            }
            if s.errors.len() > 6 {
                let _ = writeln!(out, "  … {} more kinds (report.html)", s.errors.len() - 6);
            }
        }
        let _ = writeln!(out, "SLO gates");
        for gate in &self.verdict.gates {
            let (observed, limit) = if gate.name == "error ratio" {
                (pct(gate.observed), pct(gate.limit))
            } else {
                (ms(gate.observed), ms(gate.limit))
            };
            let verdict = if gate.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "  {verdict}  {:<12}{observed:>12} <= {limit}", gate.name);
        }
        for rule in &self.verdict.failed_thresholds {
            let _ = writeln!(out, "  FAIL  goose --threshold {rule}");
        }
        if self.verdict.no_requests {
            let _ = writeln!(out, "  FAIL  no request completed");
        }
        let _ = writeln!(out, "reports     {}/ ({})", self.dir.display(), self.files.join(", "));
        let _ = writeln!(out, "verdict     {}", if self.verdict.passed() { "PASS" } else { "FAIL" });
        out
    }

    /// Writes `summary.txt` and `summary.json` into the run folder.
    ///
    /// # Errors
    /// When the folder cannot be written.
    pub fn write(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        self.files = list_files(&self.dir);
        for name in ["summary.txt", "summary.json"] {
            if !self.files.iter().any(|f| f == name) {
                self.files.push(name.to_owned());
            }
        }
        std::fs::write(self.dir.join("summary.txt"), self.render())?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join("summary.json"), json)
    }
}

/// The file names in `dir`, sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_middles_follow_goose() {
        assert_eq!(Times::middle(100), 100);
        assert_eq!(Times::middle(128), 129);
        assert_eq!(Times::middle(1024), 1032);
    }

    #[test]
    fn gates_pass_at_the_limit_and_fail_beyond() {
        let stats = Stats {
            users: 1,
            seconds: 1,
            requests: 1000,
            failures: 1,
            error_ratio: 0.001,
            rps: 1000.0,
            co_corrected: true,
            latency: Latency { p50_ms: 1.0, p95_ms: 25.0, p99_ms: 50.1, max_ms: 60.0 },
            raw_latency: Latency::default(),
            by_request: vec![],
            errors: vec![],
        };
        let verdict = Verdict::judge(&stats, &Slo { p95_ms: 25.0, p99_ms: 50.0, error_ratio: 0.001 }, vec![]);
        let passed: Vec<bool> = verdict.gates.iter().map(|g| g.passed).collect();
        assert_eq!(passed, [true, false, true]);
        assert!(!verdict.passed());
    }
}
