//! The capacity curve: one bounded load test per step of growing user counts, each step's
//! throughput, corrected percentiles and errors in `capacity.csv`, and `capacity.png` (see
//! [`crate::chart`]) with the knee, the first step that misses an SLO gate, marked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::LoadgenError;
use crate::attack::{self, fresh_run_dir};
use crate::config::{CapacityArgs, Slo};
use crate::live::Live;
use crate::summary::RunSummary;

/// The CSV header, one column per [`Step`] field.
pub const CSV_HEADER: &str =
    "users,seconds,requests,rps,failures,error_ratio,p50_ms,p95_ms,p99_ms,max_ms,co_corrected,slo_passed,run_dir";

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Users of the step (the offered load).
    pub users: usize,
    /// Seconds measured.
    pub seconds: usize,
    /// Requests made.
    pub requests: usize,
    /// Requests per second.
    pub rps: f64,
    /// Failed requests.
    pub failures: usize,
    /// failures / requests.
    pub error_ratio: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Percentiles include goose's coordinated-omission backfill.
    pub co_corrected: bool,
    /// Every SLO gate passed.
    pub slo_passed: bool,
    /// The step's run folder (goose's reports).
    pub run_dir: PathBuf,
}

impl Step {
    fn of(users: usize, summary: &RunSummary) -> Self {
        let s = &summary.stats;
        Self {
            users,
            seconds: s.seconds,
            requests: s.requests,
            rps: s.rps,
            failures: s.failures,
            error_ratio: s.error_ratio,
            p50_ms: s.latency.p50_ms,
            p95_ms: s.latency.p95_ms,
            p99_ms: s.latency.p99_ms,
            max_ms: s.latency.max_ms,
            co_corrected: s.co_corrected,
            slo_passed: summary.verdict.passed(),
            run_dir: summary.dir.clone(),
        }
    }

    fn csv_row(&self) -> String {
        format!(
            "{},{},{},{:.2},{},{:.6},{:.3},{:.3},{:.3},{:.3},{},{},{}",
            self.users,
            self.seconds,
            self.requests,
            self.rps,
            self.failures,
            self.error_ratio,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms,
            self.co_corrected,
            self.slo_passed,
            self.run_dir.display()
        )
    }
}

/// A finished capacity curve.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// The steps run, in order.
    pub steps: Vec<Step>,
    /// The SLO the steps were judged by.
    pub slo: Slo,
    /// Index in `steps` of the first step that missed an SLO gate.
    pub knee: Option<usize>,
    /// The folder holding the CSV, the PNG and one folder per step.
    pub dir: PathBuf,
    /// `capacity.csv`.
    pub csv: PathBuf,
    /// `capacity.png`.
    pub png: PathBuf,
}

impl Curve {
    /// The table printed at the end.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "── loadgen capacity curve ──────────────────────────────────────────────────────");
        let _ = writeln!(
            out,
            "{:>7}{:>11}{:>10}{:>10}{:>10}{:>10}{:>10}  SLO (p95 <= {} ms, p99 <= {} ms, errors <= {}%)",
            "users",
            "req/s",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            self.slo.p95_ms,
            self.slo.p99_ms,
            self.slo.error_ratio * 100.0
        );
        for (i, step) in self.steps.iter().enumerate() {
            let mark = match (step.slo_passed, Some(i) == self.knee) {
                (true, _) => "pass",
                (false, true) => "FAIL  <- knee",
                (false, false) => "FAIL",
            };
            let _ = writeln!(
                out,
                "{:>7}{:>11.1}{:>10}{:>10.2}{:>10.2}{:>10.2}{:>10.1}  {mark}",
                step.users, step.rps, step.failures, step.p50_ms, step.p95_ms, step.p99_ms, step.max_ms
            );
        }
        match self.knee {
            Some(i) => {
                let _ = writeln!(out, "knee: the SLO is first missed at {} users", self.steps[i].users);
            }
            None => {
                let _ = writeln!(out, "knee: not reached; every step met the SLO");
            }
        }
        let _ = writeln!(out, "csv: {}\npng: {}", self.csv.display(), self.png.display());
        out
    }
}

/// Writes `steps` as CSV to `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_csv(path: &Path, steps: &[Step]) -> std::io::Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for step in steps {
        text.push_str(&step.csv_row());
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Index of the first step that missed the SLO.
pub fn knee(steps: &[Step]) -> Option<usize> {
    steps.iter().position(|s| !s.slo_passed)
}

/// Runs the capacity curve `args` describe.
///
/// # Errors
/// An empty step list, a step that could not run, or a CSV or PNG that could not be written.
pub async fn run(args: &CapacityArgs, live: &Arc<Live>) -> Result<Curve, LoadgenError> {
    if args.steps.is_empty() || args.steps.contains(&0) {
        return Err(LoadgenError::Config(
            "LOADGEN_CAPACITY_STEPS: give user counts above 0, e.g. 500,1000,2000".into(),
        ));
    }
    let options = &args.run.options;
    let dir = match args.run.goose.output_dir.as_deref() {
        Some(given) => PathBuf::from(given),
        None => {
            let base = fresh_run_dir(&options.runs_dir);
            let name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            base.with_file_name(format!("capacity-{name}"))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| LoadgenError::Io(format!("creating {}: {e}", dir.display())))?;
    let csv = dir.join("capacity.csv");
    let png = dir.join("capacity.png");
    let slo = options.slo();
    let mut steps = Vec::new();
    for (i, &users) in args.steps.iter().enumerate() {
        let mut step_args = args.run.clone();
        step_args.goose.users = Some(users);
        step_args.goose.run_time = Some(args.step_secs.to_string());
        step_args.goose.increase_rate = Some(args.ramp_rate.max(1).to_string());
        step_args.goose.increase_time = None;
        step_args.goose.output_dir = None;
        eprintln!("loadgen capacity: step {}/{}: {users} users for {} s", i + 1, args.steps.len(), args.step_secs);
        let step_dir = dir.join(format!("step-{:02}-{users}-users", i + 1));
        let summary = attack::run(&step_args, live, Some(step_dir)).await?;
        let step = Step::of(users, &summary);
        eprintln!(
            "loadgen capacity: {users} users: {:.1} req/s, p95 {:.2} ms, p99 {:.2} ms, {} failures: {}",
            step.rps,
            step.p95_ms,
            step.p99_ms,
            step.failures,
            if step.slo_passed { "SLO met" } else { "SLO missed" }
        );
        let passed = step.slo_passed;
        steps.push(step);
        // After every step, so an interrupted curve keeps what it measured.
        write_csv(&csv, &steps).map_err(|e| LoadgenError::Io(format!("writing {}: {e}", csv.display())))?;
        if !passed && args.stop_at_knee {
            break;
        }
    }
    let knee = knee(&steps);
    crate::chart::draw(&png, &steps, &slo, knee)?;
    Ok(Curve { steps, slo, knee, dir, csv, png })
}
