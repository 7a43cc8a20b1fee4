//! `loadgen timeline`: the result-day drill's timeline PNG (`scripts/drill.sh`). It reads two CSV
//! files the drill writes from Prometheus range queries and draws three panels sharing one time
//! axis: client req/s with PostgreSQL lookups/s, client p99 latency (log scale) and failed
//! requests/s, with every phase of the drill (baseline, each fault) shaded and labelled, a missed
//! expected outcome in red. Drawn as every chart here (`chart`: the bundled font).
//!
//! - series CSV: header `seconds,rps,p99_ms,failed_per_s,db_per_s` (seconds since the drill's
//!   start; an empty or `NaN` cell is a gap, e.g. p99 with no request in its window).
//! - phases CSV: header `name,start_s,end_s,passed` (`passed` `true`/`false`/`skipped`).

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::chart::{FAMILY, chart_error, register_font};
use crate::error::ReportError;

/// One sample of the series CSV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the drill's start.
    pub seconds: f64,
    /// Client requests per second (the users' load generator).
    pub rps: Option<f64>,
    /// Client p99 latency, ms.
    pub p99_ms: Option<f64>,
    /// Failed client requests per second.
    pub failed_per_s: Option<f64>,
    /// PostgreSQL lookups per second (the replicas' `result_lookups_total{tier="db"}`).
    pub db_per_s: Option<f64>,
}

/// Whether a phase met its expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Passed,
    /// Missed.
    Failed,
    /// Not run (e.g. a tool missing).
    Skipped,
}

/// One phase of the phases CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Its label.
    pub name: String,
    /// Start, seconds since the drill's start.
    pub start: f64,
    /// End, seconds since the drill's start.
    pub end: f64,
    /// Its verdict.
    pub verdict: Verdict,
}

fn parse_error(path: &Path, line: usize, what: impl std::fmt::Display) -> ReportError {
    ReportError::Input(format!("{} line {line}: {what}", path.display()))
}

/// A CSV's data rows, each with its line number.
type Rows = Vec<(usize, csv::StringRecord)>;

/// The rows of the CSV `text` (RFC 4180 quoting, cells trimmed, blank lines skipped, rows may be
/// short), each with its line number, and the columns `names` asks for, in that order.
fn read_csv(path: &Path, text: &str, names: &[&str]) -> Result<(Vec<usize>, Rows), ReportError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let line_of = |e: &csv::Error| e.position().map_or(1, |p| p.line() as usize);
    let header = reader.headers().map_err(|e| parse_error(path, line_of(&e), &e))?.clone();
    if header.is_empty() {
        return Err(parse_error(path, 1, "empty file"));
    }
    let cols = names
        .iter()
        .map(|name| {
            header.iter().position(|c| c == *name).ok_or_else(|| parse_error(path, 1, format!("no column {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| parse_error(path, line_of(&e), &e))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        rows.push((record.position().map_or(0, |p| p.line() as usize), record));
    }
    Ok((cols, rows))
}

fn cell(cells: &csv::StringRecord, index: usize) -> &str {
    cells.get(index).unwrap_or("")
}

fn optional(path: &Path, line: usize, text: &str) -> Result<Option<f64>, ReportError> {
    if text.is_empty() || text.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    let value: f64 = text.parse().map_err(|e| parse_error(path, line, format!("{text:?}: {e}")))?;
    Ok(value.is_finite().then_some(value))
}

/// Parses the series CSV `text` (read from `path`, named in errors).
///
/// # Errors
/// A missing column or a cell that is not a number.
pub fn parse_series(path: &Path, text: &str) -> Result<Vec<Sample>, ReportError> {
    let (cols, rows) = read_csv(path, text, &["seconds", "rps", "p99_ms", "failed_per_s", "db_per_s"])?;
    let mut samples = Vec::new();
    for (n, cells) in rows {
        let seconds = optional(path, n, cell(&cells, cols[0]))?
            .ok_or_else(|| parse_error(path, n, "the seconds column is empty"))?;
        samples.push(Sample {
            seconds,
            rps: optional(path, n, cell(&cells, cols[1]))?,
            p99_ms: optional(path, n, cell(&cells, cols[2]))?,
            failed_per_s: optional(path, n, cell(&cells, cols[3]))?,
            db_per_s: optional(path, n, cell(&cells, cols[4]))?,
        });
    }
    Ok(samples)
}

/// Parses the phases CSV `text` (read from `path`, named in errors). A name holding a comma or a
/// quote is quoted, as RFC 4180 (and the csv crate) write it.
///
/// # Errors
/// A missing column, a bound that is not a number or an end before its start.
pub fn parse_phases(path: &Path, text: &str) -> Result<Vec<Phase>, ReportError> {
    let (cols, rows) = read_csv(path, text, &["name", "start_s", "end_s", "passed"])?;
    let mut phases = Vec::new();
    for (n, cells) in rows {
        let bound = |index: usize| {
            optional(path, n, cell(&cells, index))?.ok_or_else(|| parse_error(path, n, "a phase bound is empty"))
        };
        let (start, end) = (bound(cols[1])?, bound(cols[2])?);
        if end < start {
            return Err(parse_error(path, n, format!("the phase ends ({end}) before it starts ({start})")));
        }
        let verdict = match cell(&cells, cols[3]) {
            "true" => Verdict::Passed,
            "false" => Verdict::Failed,
            _ => Verdict::Skipped,
        };
        phases.push(Phase { name: cell(&cells, cols[0]).to_owned(), start, end, verdict });
    }
    Ok(phases)
}

/// Reads the series and phases CSVs and draws the PNG `out` titled `title`.
///
/// # Errors
/// An unreadable or malformed CSV, no sample, or a PNG that cannot be drawn.
pub fn run(series: &Path, phases: &Path, out: &Path, title: &str) -> Result<(), ReportError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| ReportError::Input(format!("reading {}: {e}", path.display())))
    };
    let samples = parse_series(series, &read(series)?)?;
    let phases = parse_phases(phases, &read(phases)?)?;
    draw(out, title, &samples, &phases)
}

/// A light fill per phase, alternating so neighbours differ; a missed outcome is red.
fn phase_fill(index: usize, verdict: Verdict) -> RGBAColor {
    match verdict {
        Verdict::Failed => RGBColor(230, 60, 60).mix(0.25),
        Verdict::Skipped => RGBColor(150, 150, 150).mix(0.15),
        Verdict::Passed if index.is_multiple_of(2) => RGBColor(70, 130, 220).mix(0.12),
        Verdict::Passed => RGBColor(60, 170, 110).mix(0.12),
    }
}

fn shade<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    phases: &[Phase],
    y: Range<f64>,
) -> Result<(), ReportError> {
    chart
        .draw_series(
            phases
                .iter()
                .enumerate()
                .map(|(i, p)| Rectangle::new([(p.start, y.start), (p.end, y.end)], phase_fill(i, p.verdict).filled())),
        )
        .map_err(chart_error)?;
    Ok(())
}

/// Draws the timeline of `samples` with `phases` shaded into `path` (PNG, 1400 × 1000).
///
/// # Errors
/// When there is no sample, or drawing or writing fails.
pub fn draw(path: &Path, title: &str, samples: &[Sample], phases: &[Phase]) -> Result<(), ReportError> {
    if samples.is_empty() {
        return Err(ReportError::Chart("no sample to draw (is the series CSV empty?)".into()));
    }
    register_font()?;
    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let panels = root.split_evenly((3, 1));
    let end = samples.iter().map(|s| s.seconds).chain(phases.iter().map(|p| p.end)).fold(1.0_f64, f64::max);
    let x = 0.0..end;
    let series = |value: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        samples.iter().filter_map(|s| value(s).map(|v| (s.seconds, v))).collect()
    };

    // 1. Throughput, with PostgreSQL lookups on the right axis, and the phase labels.
    let rps = series(|s| s.rps);
    let db = series(|s| s.db_per_s);
    let rps_max = rps.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.35;
    let db_max = db.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.35;
    let mut top = panel(&panels[0], title, x.clone(), 0.0..rps_max)?.set_secondary_coord(x.clone(), 0.0..db_max);
    mesh(&mut top, "req/s")?;
    top.configure_secondary_axes()
        .y_desc("PostgreSQL lookups/s")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(chart_error)?;
    shade(&mut top, phases, 0.0..rps_max)?;
    let green = RGBColor(0, 140, 60);
    top.draw_series(LineSeries::new(rps, green.stroke_width(2)))
        .map_err(chart_error)?
        .label("client req/s (users)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2)));
    top.draw_secondary_series(LineSeries::new(db, MAGENTA.stroke_width(1)))
        .map_err(chart_error)?
        .label("PostgreSQL lookups/s (right)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    // Labels at the top of each phase, on two alternating rows so short phases do not collide.
    top.draw_series(phases.iter().enumerate().map(|(i, p)| {
        let row = if i % 2 == 0 { 0.97 } else { 0.89 };
        let mark = match p.verdict {
            Verdict::Passed => "",
            Verdict::Failed => " (MISSED)",
            Verdict::Skipped => " (skipped)",
        };
        Text::new(format!("{}{mark}", p.name), (p.start, rps_max * row), (FAMILY, 13).into_font())
    }))
    .map_err(chart_error)?;
    legend!(top, SeriesLabelPosition::LowerRight)?; // the phase labels are on top

    // 2. p99 latency on a log scale (outages reach seconds, the steady state is under a ms).
    let p99 = series(|s| s.p99_ms.filter(|v| *v > 0.0));
    let p99_max = p99.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 2.0;
    let p99_min = p99.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).clamp(0.01, 1.0) / 2.0;
    let mut middle = ChartBuilder::on(&panels[1])
        .caption("Client p99 latency (bucket resolution)", (FAMILY, 18).into_font())
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(x.clone(), (p99_min..p99_max).log_scale())
        .map_err(chart_error)?;
    middle
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .y_desc("p99, ms (log)")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(chart_error)?;
    middle
        .draw_series(
            phases.iter().enumerate().map(|(i, p)| {
                Rectangle::new([(p.start, p99_min), (p.end, p99_max)], phase_fill(i, p.verdict).filled())
            }),
        )
        .map_err(chart_error)?;
    middle
        .draw_series(LineSeries::new(p99, RED.stroke_width(2)))
        .map_err(chart_error)?
        .label("client p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    legend!(middle, SeriesLabelPosition::UpperRight)?;

    // 3. Failed client requests.
    let failed = series(|s| s.failed_per_s);
    let failed_max = failed.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.2;
    let mut bottom = panel(&panels[2], "Failed client requests/s (goal: none)", x, 0.0..failed_max)?;
    mesh(&mut bottom, "failed/s")?;
    shade(&mut bottom, phases, 0.0..failed_max)?;
    bottom
        .draw_series(LineSeries::new(failed, BLACK.stroke_width(2)))
        .map_err(chart_error)?
        .label("failed req/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    legend!(bottom, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(chart_error)?;
    Ok(())
}

fn panel<'a>(
    area: &DrawingArea<BitMapBackend<'a>, Shift>,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, ReportError> {
    ChartBuilder::on(area)
        .caption(caption, (FAMILY, 18).into_font())
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(chart_error)
}

fn mesh<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    y_desc: &str,
) -> Result<(), ReportError> {
    chart
        .configure_mesh()
        .x_desc("seconds since the drill started")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

/// The legend box of a panel (one macro: plotters' single and dual-axis charts
/// have the same method but no common trait).
macro_rules! legend {
    ($chart:expr, $position:expr) => {
        $chart
            .configure_series_labels()
            .position($position)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .draw()
            .map_err(chart_error)
    };
}
use legend;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_parse_by_header_with_gaps() {
        let path = Path::new("series.csv");
        let text = "seconds,rps,p99_ms,failed_per_s,db_per_s\n0,100.5,1.2,0,0\n1,,NaN,0,3\n";
        let samples = parse_series(path, text).expect("parses");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].rps, Some(100.5));
        assert_eq!(samples[1].rps, None);
        assert_eq!(samples[1].p99_ms, None);
        assert_eq!(samples[1].db_per_s, Some(3.0));
    }

    #[test]
    fn bad_series_and_phases_are_refused_with_the_line() {
        let path = Path::new("x.csv");
        let missing = parse_series(path, "seconds,rps\n0,1\n").expect_err("no p99 column");
        assert!(missing.to_string().contains("p99_ms"), "{missing}");
        let bad = parse_series(path, "seconds,rps,p99_ms,failed_per_s,db_per_s\n0,abc,1,0,0\n").expect_err("abc");
        assert!(bad.to_string().contains("line 2"), "{bad}");
        let backwards = parse_phases(path, "name,start_s,end_s,passed\nkill,10,5,true\n").expect_err("end < start");
        assert!(backwards.to_string().contains("before it starts"), "{backwards}");
    }

    #[test]
    fn quoted_phase_names_keep_their_commas_and_quotes() {
        let text = "name,start_s,end_s,passed\n\"ramp-up, then hold\",0,10,true\n\"say \"\"hi\"\"\",10,12,false\n";
        let phases = parse_phases(Path::new("p.csv"), text).expect("parses");
        assert_eq!(phases.len(), 2);
        assert_eq!(
            phases[0],
            Phase { name: "ramp-up, then hold".into(), start: 0.0, end: 10.0, verdict: Verdict::Passed }
        );
        assert_eq!(phases[1].name, "say \"hi\"");
        let unclosed = parse_phases(Path::new("p.csv"), "name,start_s,end_s,passed\nkill,1,2,true\n\"x,1,2,true\n");
        let unclosed = unclosed.expect_err("an unclosed quote swallows the rest of the file: no bounds");
        assert!(unclosed.to_string().contains("line 3"), "{unclosed}");
        let empty = parse_phases(Path::new("p.csv"), "").expect_err("empty");
        assert!(empty.to_string().contains("line 1"), "{empty}");
    }

    #[test]
    fn phases_parse_with_verdicts() {
        let text = "name,start_s,end_s,passed\nbaseline,0,10,true\nflood,10,20,false\ncorrection,20,21,skipped\n";
        let phases = parse_phases(Path::new("p.csv"), text).expect("parses");
        assert_eq!(phases.len(), 3);
        assert_eq!(phases[1], Phase { name: "flood".into(), start: 10.0, end: 20.0, verdict: Verdict::Failed });
        assert_eq!(phases[2].verdict, Verdict::Skipped);
    }

    #[test]
    fn a_timeline_png_is_drawn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("timeline.png");
        let samples: Vec<Sample> = (0..60)
            .map(|i| Sample {
                seconds: f64::from(i),
                rps: Some(1000.0),
                p99_ms: (i != 30).then_some(2.0 + f64::from(i % 7)),
                failed_per_s: Some(if i == 40 { 3.0 } else { 0.0 }),
                db_per_s: Some(0.0),
            })
            .collect();
        let phases = vec![
            Phase { name: "baseline".into(), start: 0.0, end: 20.0, verdict: Verdict::Passed },
            Phase { name: "kill api2".into(), start: 20.0, end: 40.0, verdict: Verdict::Passed },
            Phase { name: "restart redis".into(), start: 40.0, end: 60.0, verdict: Verdict::Failed },
        ];
        draw(&out, "test", &samples, &phases).expect("draws");
        let png = std::fs::read(&out).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a PNG of {} bytes", png.len());
        assert!(draw(&out, "test", &[], &phases).is_err(), "no sample: an error");
    }
}
