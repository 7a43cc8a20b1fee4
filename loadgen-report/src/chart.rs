//! What every chart shares: plotters' bitmap backend with a bundled font (DejaVu Sans Mono,
//! `assets/`), so no system font is needed, and a few drawing helpers.

use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::error::ReportError;

/// The bundled font (its licence is `assets/DejaVu-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
/// The font family the charts register the bundled font under.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the bundled font once (every chart calls it before drawing).
pub(crate) fn register_font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold]
            .iter()
            .all(|style| plotters::style::register_font(FAMILY, *style, FONT).is_ok())
    });
    if ok { Ok(()) } else { Err(ReportError::Chart("the bundled font is not readable".into())) }
}

/// A plotters error as a [`ReportError::Chart`].
pub(crate) fn chart_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// A horizontal dashed line at `y` from `x0` to `x1`, as segments.
pub(crate) fn dashed(x0: f64, x1: f64, y: f64) -> Vec<Vec<(f64, f64)>> {
    let step = (x1 - x0) / 60.0;
    (0..60).step_by(2).map(|i| vec![(x0 + step * f64::from(i), y), (x0 + step * f64::from(i + 1), y)]).collect()
}
