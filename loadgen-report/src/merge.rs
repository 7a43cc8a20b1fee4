//! `loadgen merge`: the runs of several load generators (on one machine or many) as one exact
//! result. goose 0.19 has no distributed mode, so each generator runs on its own and writes its
//! latency histograms into its run folder ([`crate::histogram_log`]); merging adds them, which is
//! exact: HdrHistogram buckets of the same settings add count for count, so the merged percentiles
//! are those of one histogram fed every sample of every run. The merged summary is made as a
//! run's is ([`RunSummary::of`]): the merge of one run reports that run's figures and verdict.
//!
//! - Inputs must agree on the data set, `--co-mitigation` and the histogram settings, and hold no
//!   run twice (a merge's output is an input like a run's folder); anything else is refused with
//!   the folders and the difference named.
//! - Throughput is all requests over the union of the runs' measured windows: overlapping
//!   windows (parallel generators) count once, gaps between windows not at all. The span, first
//!   start to last end, is reported beside it.
//! - The SLO gates judge the corrected latency, as a run's do.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::chart::{FAMILY, chart_error, dashed, register_font};
use crate::error::ReportError;
use crate::figures::{Figures, count, figures, ms, total};
use crate::folder::{fresh_run_dir, list_files};
use crate::histogram_log::{Correction, HistogramSettings, KindCount, LatencyLog, Outcome, RunInfo, add};
use crate::summary::{RunSummary, SUMMARY_JSON, SUMMARY_TXT, Slo, THROUGHPUT, Window};

/// Where merges go without `--out`.
pub const DEFAULT_MERGED_PARENT: &str = "runs/loadgen/merged";
/// The merged report, JSON.
pub const REPORT_JSON: &str = "merge.json";
/// The merged report, markdown.
pub const REPORT_MD: &str = "merge.md";
/// The percentile chart.
pub const CHART_PNG: &str = "percentiles.png";

/// How the corrected series are made, as reports say it.
pub const CORRECTION: &str = "corrected = every measured latency plus HdrHistogram's record_correct at goose's \
per-user expected cadence (--co-mitigation); raw = every measured latency once";

/// One request name's merged figures.
#[derive(Debug, Clone, Serialize)]
pub struct RequestFigures {
    /// `METHOD name`.
    pub request: String,
    /// Requests measured.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Latency of all of them, successes and failures.
    pub latency: Figures,
}

/// What `loadgen merge` reports (`merge.json`).
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    /// The folders merged.
    pub inputs: Vec<PathBuf>,
    /// The generator runs inside them, earliest first.
    pub runs: Vec<RunInfo>,
    /// Their windows.
    pub window: Window,
    /// Requests measured.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// failures / requests.
    pub error_ratio: f64,
    /// requests / union seconds.
    pub rps: f64,
    /// goose's `--co-mitigation` mode of every run.
    pub co_mitigation: String,
    /// [`CORRECTION`].
    pub correction: &'static str,
    /// Every request.
    pub all: Figures,
    /// Per request name.
    pub by_request: Vec<RequestFigures>,
    /// Failures by request and kind.
    pub failures_by_kind: Vec<KindCount>,
    /// The one-screen summary's figures and the SLO verdict (corrected latency), as a run's.
    pub summary: RunSummary,
}

fn refused(detail: String) -> ReportError {
    ReportError::Merge(detail)
}

/// Adds the logs of `inputs` (folder, log) into one.
///
/// # Errors
/// No input, or inputs that do not merge exactly: another data set, `--co-mitigation` mode or
/// histogram settings, or a run present twice.
pub fn merge(inputs: &[(PathBuf, LatencyLog)]) -> Result<LatencyLog, ReportError> {
    let Some((first_dir, first)) = inputs.first() else {
        return Err(refused("no run folder to merge".into()));
    };
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (dir, log) in inputs {
        let (a, b) = (&first.meta, &log.meta);
        let (here, there) = (first_dir.display(), dir.display());
        let settings = |s: &HistogramSettings| (s.unit.clone(), s.lowest_discernible, s.significant_digits);
        if settings(&a.histograms) != settings(&b.histograms) {
            return Err(refused(format!(
                "{here} and {there} were recorded with other histogram settings ({} {} µs lowest, {} significant \
                 digits against {} {} µs lowest, {} significant digits): their percentiles do not add exactly",
                a.histograms.unit,
                a.histograms.lowest_discernible,
                a.histograms.significant_digits,
                b.histograms.unit,
                b.histograms.lowest_discernible,
                b.histograms.significant_digits
            )));
        }
        if a.data_set != b.data_set {
            return Err(refused(format!(
                "{here} ran against --students {} --seed {}, {there} against --students {} --seed {}: another data set",
                a.data_set.students, a.data_set.seed, b.data_set.students, b.data_set.seed
            )));
        }
        if a.co_mitigation != b.co_mitigation {
            return Err(refused(format!(
                "{here} ran with --co-mitigation {}, {there} with {}: their corrected latencies do not add up",
                a.co_mitigation, b.co_mitigation
            )));
        }
        for run in &b.runs {
            if let Some(other) = seen.insert(run.run_id.as_str(), dir) {
                return Err(refused(format!(
                    "run {} ({} at {}) is in both {} and {there}: it would count twice",
                    run.run_id,
                    run.generator,
                    run.start,
                    other.display()
                )));
            }
        }
    }
    let mut merged = LatencyLog::new(first.meta.clone());
    merged.meta.runs = inputs.iter().flat_map(|(_, log)| log.meta.runs.iter().cloned()).collect();
    merged.meta.runs.sort_by(|a, b| (a.start_unix_us, &a.run_id).cmp(&(b.start_unix_us, &b.run_id)));
    let mut kinds: BTreeMap<(String, String, Option<String>), u64> = BTreeMap::new();
    for (_, log) in inputs {
        for (key, histogram) in &log.series {
            add(merged.series_mut(key.clone()), histogram);
        }
        for kind in &log.meta.failures_by_kind {
            *kinds.entry((kind.request.clone(), kind.kind.clone(), kind.detail.clone())).or_default() += kind.count;
        }
    }
    merged.meta.failures_by_kind =
        kinds.into_iter().map(|((request, kind, detail), count)| KindCount { request, kind, detail, count }).collect();
    merged.refresh_meta();
    Ok(merged)
}

/// The report of `merged` (read from `inputs`), judged against `slo`, to be written into `out`.
pub fn report(inputs: &[PathBuf], merged: &LatencyLog, slo: &Slo, out: &Path) -> MergeReport {
    let meta = &merged.meta;
    let summary = RunSummary::of(merged, slo, Vec::new(), out.to_owned());
    let mut names: Vec<&str> = merged.series.keys().map(|k| k.request.as_str()).collect();
    names.dedup();
    let by_request = names
        .into_iter()
        .map(|name| RequestFigures {
            request: name.to_owned(),
            requests: count(merged, Some(name), None),
            failures: count(merged, Some(name), Some(Outcome::Error)),
            latency: figures(merged, Some(name)),
        })
        .collect();
    MergeReport {
        inputs: inputs.to_vec(),
        runs: meta.runs.clone(),
        window: Window::of(&meta.runs),
        requests: summary.stats.requests as u64,
        failures: summary.stats.failures as u64,
        error_ratio: summary.stats.error_ratio,
        rps: summary.stats.rps,
        co_mitigation: meta.co_mitigation.clone(),
        correction: CORRECTION,
        all: figures(merged, None),
        by_request,
        failures_by_kind: meta.failures_by_kind.clone(),
        summary,
    }
}

fn pct(ratio: f64) -> String {
    format!("{:.3}%", ratio * 100.0)
}

impl MergeReport {
    /// The one-screen summary of a run, headed by what was merged and how.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut generators: Vec<&str> = self.runs.iter().map(|r| r.generator.as_str()).collect();
        generators.sort_unstable();
        generators.dedup();
        let _ = writeln!(
            out,
            "merged      {} runs from {} folders; generators {}",
            self.runs.len(),
            self.inputs.len(),
            generators.join(", ")
        );
        let _ = writeln!(
            out,
            "window      {:.1} s union of the runs' windows ({:.1} s span); throughput = requests / union",
            self.window.union_seconds, self.window.span_seconds
        );
        out.push_str(&self.summary.render());
        out
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# loadgen merge\n");
        let _ = writeln!(
            md,
            "{} runs from {} folders, `--co-mitigation {}`. Latency in ms from HdrHistogram (µs, 3 significant \
             digits), added exactly. {}.\n",
            self.runs.len(),
            self.inputs.len(),
            self.co_mitigation,
            CORRECTION
        );
        let _ = writeln!(md, "| run | generator | target | users | window (UTC) | s | requests | failures | ramp-up |");
        let _ = writeln!(md, "|---|---|---|---:|---|---:|---:|---:|---|");
        for run in &self.runs {
            let seconds = run.end_unix_us.saturating_sub(run.start_unix_us) as f64 / 1e6;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} → {} | {seconds:.1} | {} | {} | {} |",
                run.run_id,
                run.generator,
                run.target,
                run.users,
                run.start,
                run.end,
                run.requests,
                run.failures,
                if run.ramp_up_excluded { "excluded" } else { "included" }
            );
        }
        let _ = writeln!(
            md,
            "\n**{} requests, {} failed ({}), {:.1} req/s** over {:.2} s ({} → {}, span {:.2} s): {}.\n",
            self.requests,
            self.failures,
            pct(self.error_ratio),
            self.rps,
            self.window.union_seconds,
            self.window.start,
            self.window.end,
            self.window.span_seconds,
            THROUGHPUT
        );
        let _ = writeln!(md, "## Latency, ms\n");
        let _ = writeln!(md, "| requests | latency | count | min | p50 | p90 | p95 | p99 | p99.9 | p99.99 | max |");
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let rows =
            std::iter::once(("all", &self.all)).chain(self.by_request.iter().map(|r| (r.request.as_str(), &r.latency)));
        for (name, figures) in rows {
            for (label, p) in [("corrected", &figures.corrected), ("raw", &figures.raw)] {
                let _ = writeln!(
                    md,
                    "| {name} | {label} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    p.count, p.min_ms, p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms, p.p99_9_ms, p.p99_99_ms, p.max_ms
                );
            }
        }
        let _ = writeln!(md, "\n## Failures by kind\n");
        if self.failures_by_kind.is_empty() {
            let _ = writeln!(md, "None.");
        } else {
            let _ = writeln!(md, "| request | kind | count |\n|---|---|---:|");
            for kind in &self.failures_by_kind {
                let _ = writeln!(md, "| {} | {} | {} |", kind.request, kind.kind, kind.count);
            }
        }
        let _ = writeln!(md, "\n## SLO gates (corrected latency)\n");
        let _ = writeln!(md, "| gate | observed | limit | verdict |\n|---|---:|---:|---|");
        for gate in &self.summary.verdict.gates {
            let (observed, limit) = if gate.name == "error ratio" {
                (pct(gate.observed), pct(gate.limit))
            } else {
                (format!("{:.3} ms", gate.observed), format!("{:.3} ms", gate.limit))
            };
            let _ = writeln!(
                md,
                "| {} | {observed} | {limit} | {} |",
                gate.name,
                if gate.passed { "PASS" } else { "FAIL" }
            );
        }
        let _ = writeln!(md, "\nVerdict: **{}**", if self.summary.verdict.passed() { "PASS" } else { "FAIL" });
        md
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReportError + '_ {
    move |e| ReportError::Io(format!("writing {}: {e}", path.display()))
}

/// Reads the run folders `dirs`, merges them, writes the merged histograms, reports and chart into
/// `out` (a fresh folder under [`DEFAULT_MERGED_PARENT`] when `None`), and returns the report
/// judged against `slo` (its verdict decides the exit status).
///
/// # Errors
/// An input that cannot be read or does not merge ([`ReportError::Merge`]), an output that
/// cannot be written.
pub fn run(dirs: &[PathBuf], out: Option<&Path>, slo: &Slo) -> Result<MergeReport, ReportError> {
    let out = out.map_or_else(|| fresh_run_dir(Path::new(DEFAULT_MERGED_PARENT)), Path::to_path_buf);
    let mut inputs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        if same_folder(dir, &out) {
            return Err(refused(format!(
                "--out {} is one of the inputs: the merge would overwrite its histograms",
                out.display()
            )));
        }
        let log = LatencyLog::read(dir).map_err(|e| refused(e.to_string()))?;
        inputs.push((dir.clone(), log));
    }
    let mut merged = merge(&inputs)?;
    merged.write(&out).map_err(|e| ReportError::Io(e.to_string()))?;
    let dirs: Vec<PathBuf> = inputs.iter().map(|(dir, _)| dir.clone()).collect();
    let mut report = report(&dirs, &merged, slo, &out);
    let lines: Vec<(String, Histogram<u64>)> = inputs
        .iter()
        .flat_map(|(_, log)| {
            log.meta.runs.first().map(|run| (run.generator.clone(), total(log, |_, _, c| c == Correction::Corrected)))
        })
        .collect();
    draw(&out.join(CHART_PNG), &merged, &lines, slo)?;
    let mut files = list_files(&out);
    for name in [REPORT_JSON, REPORT_MD, SUMMARY_JSON, SUMMARY_TXT] {
        if !files.iter().any(|f| f == name) {
            files.push(name.to_owned());
        }
    }
    files.sort();
    report.summary.files = files;
    let write = |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).map_err(io(&out));
    write(SUMMARY_TXT, report.render().as_bytes())?;
    let json = |e: serde_json::Error| ReportError::Io(format!("JSON: {e}"));
    write(SUMMARY_JSON, &serde_json::to_vec_pretty(&report.summary).map_err(json)?)?;
    write(REPORT_JSON, &serde_json::to_vec_pretty(&report).map_err(json)?)?;
    write(REPORT_MD, report.markdown().as_bytes())?;
    Ok(report)
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// x of quantile `q` on the chart: its "nines" (0.9 → 1, 0.99 → 2, 0.999 → 3).
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-9).log10()
}

fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{percent:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Draws `percentiles.png`: latency by percentile (log scale, nines on x) of the merged corrected
/// and raw histograms, each run's corrected line in grey, and the SLO limits dashed.
///
/// # Errors
/// When drawing or writing fails.
pub fn draw(path: &Path, merged: &LatencyLog, runs: &[(String, Histogram<u64>)], slo: &Slo) -> Result<(), ReportError> {
    register_font()?;
    let corrected = total(merged, |_, _, c| c == Correction::Corrected);
    let raw = total(merged, |_, _, c| c == Correction::Raw);
    let count = corrected.len().max(1) as f64;
    let x_max = count.log10().ceil().clamp(2.0, 6.0);
    let curve = |h: &Histogram<u64>| -> Vec<(f64, f64)> {
        (0..=240)
            .map(|i| {
                let x = x_max * f64::from(i) / 240.0;
                let q = 1.0 - 10f64.powf(-x);
                (x, ms(h.value_at_quantile(q)).max(0.001))
            })
            .collect()
    };
    let y_max = [ms(corrected.max()), slo.p95_ms, slo.p99_ms].into_iter().fold(1.0_f64, f64::max) * 2.0;
    let y_min = (ms(raw.min()).max(0.001) / 2.0).min(y_max / 10.0);
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Merged client latency by percentile: {} runs, {} requests",
                merged.meta.runs.len(),
                merged.meta.requests
            ),
            (FAMILY, 24).into_font(),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc("latency, ms (log)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(chart_error)?;
    let grey = RGBColor(170, 170, 170);
    for (i, (_, histogram)) in runs.iter().enumerate() {
        let series = chart.draw_series(LineSeries::new(curve(histogram), grey.stroke_width(1))).map_err(chart_error)?;
        if i == 0 {
            series
                .label("each run, corrected")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
        }
    }
    for (name, color, histogram) in [("merged, raw", BLUE, &raw), ("merged, corrected", RED, &corrected)] {
        chart
            .draw_series(LineSeries::new(curve(histogram), color.stroke_width(2)))
            .map_err(chart_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    for (name, quantile, limit, color) in
        [("SLO p95", 0.95, slo.p95_ms, RGBColor(230, 140, 0)), ("SLO p99", 0.99, slo.p99_ms, MAGENTA)]
    {
        let dashes = dashed(0.0, x_max, limit);
        chart
            .draw_series(dashes.into_iter().map(|segment| PathElement::new(segment, color.mix(0.6).stroke_width(1))))
            .map_err(chart_error)?
            .label(format!("{name} <= {limit} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.6)));
        let x = nines(quantile);
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x, y_min), (x, y_max)], color.mix(0.3))))
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(chart_error)?;
    root.present().map_err(chart_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram_log::{DataSet, FORMAT, HistogramSettings, Meta, SeriesKey, rfc3339};
    use crate::summary::union_us;

    fn log(run_id: &str, start_s: u64, end_s: u64, samples: &[(Outcome, u64)]) -> LatencyLog {
        let mut log = LatencyLog::new(Meta {
            format: FORMAT.into(),
            runs: vec![RunInfo {
                run_id: run_id.into(),
                generator: format!("gen-{run_id}"),
                target: "http://127.0.0.1:1".into(),
                users: 10,
                start: rfc3339(start_s * 1_000_000),
                end: rfc3339(end_s * 1_000_000),
                start_unix_us: start_s * 1_000_000,
                end_unix_us: end_s * 1_000_000,
                ramp_up_excluded: true,
                requests: 0,
                failures: 0,
            }],
            data_set: DataSet { students: 100, seed: 1 },
            co_mitigation: "average".into(),
            histograms: HistogramSettings::default(),
            requests: 0,
            failures: 0,
            failures_by_kind: vec![],
            series: vec![],
        });
        for &(outcome, us) in samples {
            for latency in [Correction::Raw, Correction::Corrected] {
                let key = SeriesKey { request: "GET /x".into(), outcome, latency };
                log.series_mut(key).record(us).expect("in range");
            }
        }
        log.refresh_meta();
        log
    }

    #[test]
    fn the_union_counts_overlaps_once_and_gaps_not_at_all() {
        assert_eq!(union_us(&[]), 0);
        assert_eq!(union_us(&[(10, 20)]), 10);
        assert_eq!(union_us(&[(10, 20), (15, 30)]), 20, "overlapping");
        assert_eq!(union_us(&[(15, 30), (10, 20), (12, 14)]), 20, "nested, unordered");
        assert_eq!(union_us(&[(10, 20), (30, 40)]), 20, "a gap");
        assert_eq!(union_us(&[(10, 20), (20, 25)]), 15, "touching");
        assert_eq!(union_us(&[(10, 5)]), 0, "an end before its start is empty");
    }

    #[test]
    fn counts_failures_and_throughput_add_up() {
        let a = log("a", 100, 110, &[(Outcome::Ok, 1_000), (Outcome::Ok, 3_000), (Outcome::Error, 50_000)]);
        let b = log("b", 105, 115, &[(Outcome::Ok, 2_000)]);
        let merged = merge(&[(PathBuf::from("a"), a), (PathBuf::from("b"), b)]).expect("merges");
        assert_eq!((merged.meta.requests, merged.meta.failures), (4, 1));
        let report = report(&[], &merged, &Slo { p95_ms: 25.0, p99_ms: 50.0, error_ratio: 0.001 }, Path::new("out"));
        assert_eq!(report.window.union_seconds, 15.0);
        assert_eq!(report.window.span_seconds, 15.0);
        assert!((report.rps - 4.0 / 15.0).abs() < 1e-12);
        assert_eq!(report.error_ratio, 0.25);
        assert_eq!(report.summary.stats.users, 20);
        assert_eq!(report.all.raw.count, 4);
        assert_eq!(report.all.raw.min_ms, 1.0);
        assert_eq!(report.all.raw.p50_ms, 2.0, "the 2nd of 4 values");
        assert!((report.all.raw.max_ms - 50.0).abs() < 0.05);
        assert!(!report.summary.verdict.passed(), "a 25% error ratio misses its gate");
        assert_eq!(report.by_request.len(), 1);
        assert_eq!((report.by_request[0].requests, report.by_request[0].failures), (4, 1));
    }

    #[test]
    fn the_merge_of_one_run_reports_that_runs_figures_and_verdict() {
        let mut one = log("a", 100, 110, &[(Outcome::Ok, 1_000), (Outcome::Ok, 3_000), (Outcome::Error, 45_000)]);
        one.meta.failures_by_kind = vec![KindCount {
            request: "GET /x".into(),
            kind: "body".into(),
            detail: Some("wrong student in body".into()),
            count: 1,
        }];
        // The p99 gate sits between the run's p95 and p99: a different engine would flip it.
        let slo = Slo { p95_ms: 50.0, p99_ms: 44.0, error_ratio: 0.5 };
        let run = RunSummary::of(&one, &slo, Vec::new(), PathBuf::from("run"));
        let merged = merge(&[(PathBuf::from("run"), one)]).expect("merges");
        let merge = report(&[PathBuf::from("run")], &merged, &slo, Path::new("out"));
        assert_eq!(merge.summary.stats, run.stats);
        assert_eq!(merge.summary.verdict, run.verdict);
        assert_eq!(run.verdict.gates.iter().map(|g| g.passed).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(run.stats.errors[0].error, "GET /x: body (wrong student in body)");
        assert_eq!(run.host, "http://127.0.0.1:1");
    }

    #[test]
    fn incompatible_inputs_are_refused_with_the_difference_named() {
        let a = || log("a", 0, 1, &[(Outcome::Ok, 1_000)]);
        let mut other_set = log("b", 0, 1, &[(Outcome::Ok, 1_000)]);
        other_set.meta.data_set.students = 200;
        let mut other_mode = log("c", 0, 1, &[(Outcome::Ok, 1_000)]);
        other_mode.meta.co_mitigation = "disabled".into();
        let mut other_digits = log("d", 0, 1, &[(Outcome::Ok, 1_000)]);
        other_digits.meta.histograms.significant_digits = 2;
        let cases = [
            (other_set, "another data set"),
            (other_mode, "--co-mitigation average"),
            (other_digits, "other histogram settings"),
            (a(), "count twice"),
        ];
        for (other, expected) in cases {
            let error = merge(&[(PathBuf::from("first"), a()), (PathBuf::from("second"), other)])
                .expect_err("refused")
                .to_string();
            assert!(error.contains(expected) && error.contains("second"), "{error}");
        }
        assert!(merge(&[]).is_err());
    }

    #[test]
    fn percentile_labels_read_as_nines() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
    }
}
