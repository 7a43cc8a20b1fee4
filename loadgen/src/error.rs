//! What stops the load generator before or instead of a verdict, and the process's exit statuses.

use loadgen_report::ReportError;

/// Exit status of a run that missed an SLO gate or a goose threshold.
pub const EXIT_SLO_MISSED: u8 = 1;
/// Exit status of a run that could not happen (configuration, I/O).
pub const EXIT_FAILED: u8 = 2;

/// Everything that stops the load generator before or instead of a verdict.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A refused option.
    #[error("configuration: {0}")]
    Config(String),
    /// goose refused the configuration or could not run.
    #[error("goose: {0}")]
    Goose(String),
    /// The metrics recorder could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A file could not be written.
    #[error("{0}")]
    Io(String),
    /// A report, chart or merge could not be made (its message names the file at fault).
    #[error(transparent)]
    Report(#[from] ReportError),
}
