//! What stops a report: one error type for the crate's boundary.

/// A report that could not be made; the message names the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Run folders that cannot be read or do not merge exactly.
    #[error("merge: {0}")]
    Merge(String),
    /// An input file (a CSV) that cannot be read or parsed.
    #[error("{0}")]
    Input(String),
    /// A file could not be written.
    #[error("{0}")]
    Io(String),
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}
