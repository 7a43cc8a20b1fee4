//! `capacity.png`: latency percentiles (log scale) against offered load (users), the SLO limits
//! as dashed lines and the knee marked; below, throughput and failures. Drawn with plotters'
//! bitmap backend and a bundled font (DejaVu Sans Mono, `assets/`), so no system font is needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::LoadgenError;
use crate::capacity::Step;
use crate::config::Slo;

/// The bundled font (its licence is `assets/DejaVu-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
/// The font family the charts register the bundled font under.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the bundled font once (every chart calls it before drawing).
pub(crate) fn register_font() -> Result<(), LoadgenError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold]
            .iter()
            .all(|style| plotters::style::register_font(FAMILY, *style, FONT).is_ok())
    });
    if ok { Ok(()) } else { Err(LoadgenError::Chart("the bundled font is not readable".into())) }
}

/// A plotters error as a [`LoadgenError::Chart`].
pub(crate) fn chart_error(e: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Chart(e.to_string())
}

/// Draws the capacity curve of `steps` into `path` (PNG, 1200 × 900).
///
/// # Errors
/// When there is no step, or drawing or writing fails.
pub fn draw(path: &Path, steps: &[Step], slo: &Slo, knee: Option<usize>) -> Result<(), LoadgenError> {
    if steps.is_empty() {
        return Err(LoadgenError::Chart("no step to draw".into()));
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

/// A horizontal dashed line at `y` from `x0` to `x1`, as segments.
pub(crate) fn dashed(x0: f64, x1: f64, y: f64) -> Vec<Vec<(f64, f64)>> {
    let step = (x1 - x0) / 60.0;
    (0..60).step_by(2).map(|i| vec![(x0 + step * f64::from(i), y), (x0 + step * f64::from(i + 1), y)]).collect()
}
