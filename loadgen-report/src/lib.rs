//! The load generator's reports, apart from its load engine: what a run leaves in its folder and
//! everything read from there. The `loadgen` binary's run, `capacity`, `merge` and `timeline`
//! commands call it; it knows nothing of goose.
//!
//! - [`histogram_log`]: a run's latency histograms as files (`latency.hlog` + `latency.json`).
//! - [`figures`]: the one percentile engine (HdrHistogram) behind every latency a report shows.
//! - [`summary`]: a run's figures, SLO gates and one-screen summary, from its histograms.
//! - [`merge`]: `loadgen merge`: several generators' runs as one exact report.
//! - [`capacity`]: the capacity curve's CSV and PNG, from each step's summary.
//! - [`timeline`]: the result-day drill's timeline PNG (`loadgen timeline`, `scripts/drill.sh`).
//! - [`folder`]: run folders: a fresh one per run, the files one holds.
//! - `chart`: what every chart shares (the bundled font, dashed lines).
//! - [`error`]: [`ReportError`], what stops a report.
//!
//! Module graph (no cycles; shared vocabulary at the bottom): `error`, `folder`, `histogram_log`
//! ← `figures` ← `summary` ← `capacity`, `merge`; `chart` ← `capacity`, `merge`, `timeline`.

pub mod capacity;
mod chart;
pub mod error;
pub mod figures;
pub mod folder;
pub mod histogram_log;
pub mod merge;
pub mod summary;
pub mod timeline;

pub use error::ReportError;
