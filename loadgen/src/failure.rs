//! Why a request failed: the vocabulary the validator, the live metrics and the histograms share.
//! The live metrics count the [`ErrorKind`] (a bounded Prometheus label); the histograms also keep
//! what was wrong with a body, so the run summary names it.

/// Why a request failed, as counted by `loadgen_request_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection refused, reset, timed out.
    Transport,
    /// An unexpected HTTP status.
    Status,
    /// The body was not the expected one.
    Body,
}

impl ErrorKind {
    /// Every kind, in discriminant order.
    pub const ALL: [ErrorKind; 3] = [ErrorKind::Transport, ErrorKind::Status, ErrorKind::Body];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transport => "transport",
            ErrorKind::Status => "status",
            ErrorKind::Body => "body",
        }
    }
}

/// Why a response is not the one expected. The text of each kind is the error goose groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The body is not a JSON result object.
    #[error("body is not a result")]
    NotAResult,
    /// The body is a result of another student.
    #[error("wrong student in body")]
    WrongStudent,
    /// The body is not the JSON error envelope with the expected status and code.
    #[error("wrong error body")]
    WrongErrorBody,
    /// The body could not be read.
    #[error("body not read")]
    Unreadable,
}

/// One failed request: its kind and, for a body, what was wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused, reset, timed out.
    Transport,
    /// An unexpected HTTP status.
    Status,
    /// The expected status with a wrong or unreadable body.
    Body(Mismatch),
}

impl Failure {
    /// Every failure, in [`Failure::index`] order.
    pub const ALL: [Failure; 6] = [
        Failure::Transport,
        Failure::Status,
        Failure::Body(Mismatch::NotAResult),
        Failure::Body(Mismatch::WrongStudent),
        Failure::Body(Mismatch::WrongErrorBody),
        Failure::Body(Mismatch::Unreadable),
    ];

    /// Its position in [`Failure::ALL`]: counters per failure are plain arrays.
    pub fn index(self) -> usize {
        match self {
            Failure::Transport => 0,
            Failure::Status => 1,
            Failure::Body(Mismatch::NotAResult) => 2,
            Failure::Body(Mismatch::WrongStudent) => 3,
            Failure::Body(Mismatch::WrongErrorBody) => 4,
            Failure::Body(Mismatch::Unreadable) => 5,
        }
    }

    /// The kind the live metrics count it as.
    pub fn kind(self) -> ErrorKind {
        match self {
            Failure::Transport => ErrorKind::Transport,
            Failure::Status => ErrorKind::Status,
            Failure::Body(_) => ErrorKind::Body,
        }
    }

    /// What was wrong with the body, if that is why it failed.
    pub fn mismatch(self) -> Option<Mismatch> {
        match self {
            Failure::Body(mismatch) => Some(mismatch),
            Failure::Transport | Failure::Status => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_own_index() {
        for (i, failure) in Failure::ALL.into_iter().enumerate() {
            assert_eq!(failure.index(), i, "{failure:?}");
        }
        assert_eq!(Failure::Body(Mismatch::WrongStudent).kind(), ErrorKind::Body);
        assert_eq!(Failure::Status.mismatch(), None);
    }
}
