//! The requests the load generator makes, named by route template so every report groups them
//! the same way: goose's, the live metrics' `request` label and the histograms' series.

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `GET /v1/results/{id}` of a seeded student.
    Result = 0,
    /// `GET /student/{id}` of a seeded student.
    Alias = 1,
    /// `GET /v1/results/{id}` of a well-formed unknown ID.
    Unknown = 2,
    /// `GET /v1/results/{id}` of a malformed ID.
    Malformed = 3,
}

impl Request {
    /// Every request, in discriminant order.
    pub const ALL: [Request; 4] = [Request::Result, Request::Alias, Request::Unknown, Request::Malformed];

    /// The name in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Request::Result => "/v1/results/{id}",
            Request::Alias => "/student/{id}",
            Request::Unknown => "/v1/results/{id} unknown",
            Request::Malformed => "/v1/results/{id} malformed",
        }
    }

    /// `METHOD name`, as the run summary and the histograms name it (`GET /v1/results/{id}`).
    pub fn label(self) -> String {
        format!("GET {}", self.name())
    }

    /// The path before the ID.
    pub fn prefix(self) -> &'static str {
        match self {
            Request::Alias => "/student/",
            Request::Result | Request::Unknown | Request::Malformed => "/v1/results/",
        }
    }
}
