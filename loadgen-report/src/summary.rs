//! A run's figures, its SLO gates and the one-screen text summary, all read from the run's
//! latency histograms ([`crate::histogram_log`]) through the one percentile engine
//! ([`crate::figures`]). A run and `loadgen merge` build their summaries with the same
//! [`RunSummary::of`], so a run and the merge of that one run print the same figures and reach
//! the same verdict.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::figures::{Latency, count, figures};
use crate::folder::list_files;
use crate::histogram_log::{LatencyLog, Outcome, RunInfo, rfc3339};

/// The one-screen summary in a run (or merge) folder, text.
pub const SUMMARY_TXT: &str = "summary.txt";
/// The summary in a run (or merge) folder, JSON.
pub const SUMMARY_JSON: &str = "summary.json";

/// The SLO gates a run is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// Highest acceptable p95, milliseconds.
    pub p95_ms: f64,
    /// Highest acceptable p99, milliseconds.
    pub p99_ms: f64,
    /// Highest acceptable failed/total ratio.
    pub error_ratio: f64,
}

/// One request name's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRow {
    /// `METHOD name` (`GET /v1/results/{id}`).
    pub name: String,
    /// Requests made.
    pub requests: usize,
    /// Requests that failed.
    pub failures: usize,
    /// Latency (corrected for coordinated omission, as the gates judge it).
    pub latency: Latency,
}

/// One kind of error and how often it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRow {
    /// `METHOD name: kind` (`…: body (wrong student in body)`).
    pub error: String,
    /// Occurrences.
    pub count: usize,
}

/// How throughput is computed, as reports say it.
pub const THROUGHPUT: &str =
    "throughput = all requests / union of the runs' measured windows (overlaps once, gaps not at all)";

/// Length of the union of `[start, end)` windows, µs.
pub fn union_us(windows: &[(u64, u64)]) -> u64 {
    let mut windows: Vec<(u64, u64)> = windows.iter().map(|&(start, end)| (start, end.max(start))).collect();
    windows.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in windows {
        current = match current {
            Some((from, to)) if start <= to => Some((from, to.max(end))),
            Some((from, to)) => {
                total += to - from;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0, |(from, to)| to - from)
}

/// The measured windows of one run or of merged runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Earliest start (RFC 3339).
    pub start: String,
    /// Latest end (RFC 3339).
    pub end: String,
    /// First start to last end, seconds.
    pub span_seconds: f64,
    /// Union of the windows, seconds: the throughput's denominator.
    pub union_seconds: f64,
    /// [`THROUGHPUT`].
    pub throughput: &'static str,
}

impl Window {
    /// The windows of `runs`.
    pub fn of(runs: &[RunInfo]) -> Self {
        let windows: Vec<(u64, u64)> = runs.iter().map(|r| (r.start_unix_us, r.end_unix_us)).collect();
        let start = windows.iter().map(|w| w.0).min().unwrap_or(0);
        let end = windows.iter().map(|w| w.1).max().unwrap_or(start);
        Self {
            start: rfc3339(start),
            end: rfc3339(end),
            span_seconds: end.saturating_sub(start) as f64 / 1e6,
            union_seconds: union_us(&windows) as f64 / 1e6,
            throughput: THROUGHPUT,
        }
    }
}

/// The figures of a run (or of merged runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Users the runs were configured with, added up.
    pub users: usize,
    /// Seconds measured (the union of the measured windows, rounded).
    pub seconds: usize,
    /// Requests made.
    pub requests: usize,
    /// Requests that failed (status, transport or body).
    pub failures: usize,
    /// failures / requests.
    pub error_ratio: f64,
    /// Requests per second over the union of the measured windows.
    pub rps: f64,
    /// Whether `latency` holds a coordinated-omission correction (a stall was corrected).
    pub co_corrected: bool,
    /// Latency of every request, corrected for coordinated omission (what the gates judge).
    pub latency: Latency,
    /// Latency as measured, every request once.
    pub raw_latency: Latency,
    /// Per request name.
    pub by_request: Vec<RequestRow>,
    /// Errors by kind, most frequent first.
    pub errors: Vec<ErrorRow>,
}

impl Stats {
    /// The figures of `log`: counts of its raw series (the backfill is never a request), latency
    /// of its corrected and raw series, throughput over the union of its runs' windows.
    pub fn of(log: &LatencyLog) -> Self {
        let meta = &log.meta;
        let union_seconds = Window::of(&meta.runs).union_seconds;
        let requests = count(log, None, None);
        let failures = count(log, None, Some(Outcome::Error));
        let all = figures(log, None);
        let mut names: Vec<&str> = log.series.keys().map(|k| k.request.as_str()).collect();
        names.dedup();
        let by_request = names
            .into_iter()
            .map(|name| RequestRow {
                name: name.to_owned(),
                requests: count(log, Some(name), None) as usize,
                failures: count(log, Some(name), Some(Outcome::Error)) as usize,
                latency: figures(log, Some(name)).corrected.latency(),
            })
            .collect();
        let mut errors: Vec<ErrorRow> = meta
            .failures_by_kind
            .iter()
            .map(|k| {
                let error = match &k.detail {
                    Some(detail) => format!("{}: {} ({detail})", k.request, k.kind),
                    None => format!("{}: {}", k.request, k.kind),
                };
                ErrorRow { error, count: k.count as usize }
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.error.cmp(&b.error)));
        Stats {
            users: meta.runs.iter().map(|r| r.users).sum(),
            seconds: union_seconds.round() as usize,
            requests: requests as usize,
            failures: failures as usize,
            error_ratio: if requests == 0 { 0.0 } else { failures as f64 / requests as f64 },
            rps: if union_seconds > 0.0 { requests as f64 / union_seconds } else { 0.0 },
            co_corrected: all.corrected.count > all.raw.count,
            latency: all.corrected.latency(),
            raw_latency: all.raw.latency(),
            by_request,
            errors,
        }
    }
}

/// One SLO gate, judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// What a finished run (or a merge) leaves behind.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The target (the targets of merged runs, comma-separated).
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
    /// The summary of `log` judged against `slo` (goose's failed `--threshold` rules added, for a
    /// run), to be written into `dir`; `files` is filled on [`RunSummary::write`].
    pub fn of(log: &LatencyLog, slo: &Slo, failed_thresholds: Vec<String>, dir: PathBuf) -> Self {
        let stats = Stats::of(log);
        let verdict = Verdict::judge(&stats, slo, failed_thresholds);
        let mut targets: Vec<&str> = log.meta.runs.iter().map(|r| r.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        Self {
            host: targets.join(", "),
            co_mitigation: log.meta.co_mitigation.clone(),
            stats,
            slo: *slo,
            verdict,
            dir,
            files: Vec::new(),
        }
    }

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
                "            corrected for coordinated omission (--co-mitigation {}); as measured: p95 {} p99 {}",
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
                let _ = writeln!(
                    out,
                    "  … {} more kinds (summary.json; every failed request in errors.json)",
                    s.errors.len() - 6
                );
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
        for name in [SUMMARY_TXT, SUMMARY_JSON] {
            if !self.files.iter().any(|f| f == name) {
                self.files.push(name.to_owned());
            }
        }
        std::fs::write(self.dir.join(SUMMARY_TXT), self.render())?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join(SUMMARY_JSON), json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
