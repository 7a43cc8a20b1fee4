//! The capacity curve's outputs: one row per step of growing user counts (throughput,
//! corrected percentiles and errors, from each step's run summary) in `capacity.csv`, and
//! `capacity.png`: latency percentiles (log scale) against offered load (users), the SLO limits
//! as dashed lines and the knee, the first step that misses an SLO gate, marked; below,
//! throughput and failures. The load generator runs the steps; this module writes what they gave.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::chart::{FAMILY, chart_error, dashed, register_font};
use crate::error::ReportError;
use crate::summary::{RunSummary, Slo};

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
    /// The percentiles hold a coordinated-omission correction (a stall was corrected).
    pub co_corrected: bool,
    /// Every SLO gate passed.
    pub slo_passed: bool,
    /// The step's run folder (goose's reports).
    pub run_dir: PathBuf,
}

impl Step {
    /// The step of `users` users whose run `summary` describes.
    pub fn of(users: usize, summary: &RunSummary) -> Self {
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

    /// The row's cells, in [`CSV_HEADER`]'s order (the csv crate quotes a run folder holding a
    /// comma, quote or line break).
    fn csv_record(&self) -> [String; 13] {
        [
            self.users.to_string(),
            self.seconds.to_string(),
            self.requests.to_string(),
            format!("{:.2}", self.rps),
            self.failures.to_string(),
            format!("{:.6}", self.error_ratio),
            format!("{:.3}", self.p50_ms),
            format!("{:.3}", self.p95_ms),
            format!("{:.3}", self.p99_ms),
            format!("{:.3}", self.max_ms),
            self.co_corrected.to_string(),
            self.slo_passed.to_string(),
            self.run_dir.display().to_string(),
        ]
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
    let mut out = csv::Writer::from_path(path)?;
    out.write_record(CSV_HEADER.split(','))?;
    for step in steps {
        out.write_record(step.csv_record())?;
    }
    out.flush()
}

/// Index of the first step that missed the SLO.
pub fn knee(steps: &[Step]) -> Option<usize> {
    steps.iter().position(|s| !s.slo_passed)
}

/// Draws the capacity curve of `steps` into `path` (PNG, 1200 × 900).
///
/// # Errors
/// When there is no step, or drawing or writing fails.
pub fn draw(path: &Path, steps: &[Step], slo: &Slo, knee: Option<usize>) -> Result<(), ReportError> {
    if steps.is_empty() {
        return Err(ReportError::Chart("no step to draw".into()));
    }
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (top, bottom) = root.split_vertically(560);

    let max_users = steps.iter().map(|s| s.users).max().unwrap_or(1) as f64;
    let x_range = 0.0..max_users * 1.05;
    let latencies = steps.iter().flat_map(|s| [s.p50_ms, s.p95_ms, s.p99_ms]).chain([slo.p95_ms, slo.p99_ms]);
    let y_max = latencies.clone().fold(1.0_f64, f64::max) * 2.0;
    let y_min = latencies.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min).clamp(0.01, 1.0) / 2.0;

    let mut chart = ChartBuilder::on(&top)
        .caption("Capacity curve: client latency against offered load", (FAMILY, 26).into_font())
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70) // the same plot width as the chart below
        .build_cartesian_2d(x_range.clone(), (y_min..y_max).log_scale())
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("users")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc("latency, ms (log)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(chart_error)?;

    let series: [Series; 3] =
        [("p50", BLUE, |s| s.p50_ms), ("p95", RGBColor(230, 140, 0), |s| s.p95_ms), ("p99", RED, |s| s.p99_ms)];
    for (name, color, value) in series {
        let points: Vec<(f64, f64)> = steps.iter().map(|s| (s.users as f64, value(s).max(y_min))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(chart_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(chart_error)?;
    }
    for (name, limit, color) in [("SLO p95", slo.p95_ms, RGBColor(230, 140, 0)), ("SLO p99", slo.p99_ms, RED)] {
        let dashes = dashed(x_range.start, x_range.end, limit);
        chart
            .draw_series(dashes.into_iter().map(|segment| PathElement::new(segment, color.mix(0.6).stroke_width(1))))
            .map_err(chart_error)?
            .label(format!("{name} <= {limit} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.6)));
    }
    if let Some(step) = knee.and_then(|i| steps.get(i)) {
        let x = step.users as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x, y_min), (x, y_max)], BLACK.stroke_width(2))))
            .map_err(chart_error)?
            .label(format!("knee: SLO first missed at {} users", step.users))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" knee: {} users", step.users),
                (x, y_min * 1.3),
                (FAMILY, 16).into_font(),
            )))
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(chart_error)?;

    let rps_max = steps.iter().map(|s| s.rps).fold(1.0_f64, f64::max) * 1.15;
    let mut lower = ChartBuilder::on(&bottom)
        .caption("Throughput (req/s) and failed requests", (FAMILY, 20).into_font())
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), 0.0..rps_max)
        .map_err(chart_error)?
        .set_secondary_coord(x_range, 0.0..steps.iter().map(|s| s.failures as f64).fold(1.0_f64, f64::max) * 1.15);
    lower
        .configure_mesh()
        .x_desc("users")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc("req/s")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(chart_error)?;
    lower
        .configure_secondary_axes()
        .y_desc("failed requests")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(chart_error)?;
    let green = RGBColor(0, 140, 60);
    lower
        .draw_series(LineSeries::new(steps.iter().map(|s| (s.users as f64, s.rps)), green.stroke_width(2)))
        .map_err(chart_error)?
        .label("req/s")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2)));
    lower
        .draw_secondary_series(LineSeries::new(steps.iter().map(|s| (s.users as f64, s.failures as f64)), MAGENTA))
        .map_err(chart_error)?
        .label("failed requests")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    lower
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

/// A percentile line: its name, colour and value of a step.
type Series = (&'static str, RGBColor, fn(&Step) -> f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_quotes_a_run_folder_with_a_comma_or_quote_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capacity.csv");
        let step = |users: usize, run_dir: &str| Step {
            users,
            seconds: 20,
            requests: 1000,
            rps: 50.0,
            failures: 1,
            error_ratio: 0.001,
            p50_ms: 1.0,
            p95_ms: 2.5,
            p99_ms: 4.0,
            max_ms: 9.0,
            co_corrected: false,
            slo_passed: true,
            run_dir: PathBuf::from(run_dir),
        };
        let steps = [step(500, "runs/plain"), step(1000, "runs/a,b \"c\"")];
        write_csv(&path, &steps).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(CSV_HEADER), "{text}");
        assert!(text.contains("\"runs/a,b \"\"c\"\"\""), "the path is quoted, its quotes doubled: {text}");
        let mut reader = csv::Reader::from_path(&path).expect("open");
        let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("parses");
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.len() == CSV_HEADER.split(',').count()));
        assert_eq!(&rows[1][12], "runs/a,b \"c\"");
        assert_eq!(&rows[0][3], "50.00");
    }
}
