//! The one error type of the HTTP API. Every error answers with the same JSON envelope:
//! `{"error": {"status": 404, "code": "unknown_id", "message": "…"}}`. A 5xx never carries
//! internals: the cause is logged once where it happens, the client gets a fixed message.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use results_core::FactorKind;
use serde::Serialize;

use crate::failed_lookups::Limit;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message, safe to show to a student.
    pub message: String,
    /// The second factor the data set asks for, on the errors about it (`pin`, `date_of_birth`):
    /// what the students' page labels its second field with.
    pub factor: Option<FactorKind>,
    /// How long the client should wait before asking again (`Retry-After`, whole seconds
    /// rounded up): a 503's short pause, a 429's remaining window.
    pub retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor: Option<&'static str>,
}

impl ApiError {
    /// 400: the registration number is malformed.
    pub fn invalid_id(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_id",
            message: message.into(),
            factor: None,
            retry_after: None,
        }
    }

    /// 404: no result for this registration number.
    pub fn unknown_id() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "unknown_id",
            message: "no result was published for this registration number".to_owned(),
            factor: None,
            retry_after: None,
        }
    }

    /// 400: the data set requires a second factor and the request has none.
    pub fn factor_required(kind: FactorKind) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "factor_required",
            message: format!("{} from the admission slip is needed besides the registration number", phrase(kind)),
            factor: Some(kind),
            retry_after: None,
        }
    }

    /// 400: the second factor is not of the data set's form (says the form, never echoes the value).
    pub fn invalid_factor(kind: FactorKind) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_factor",
            message: format!("the second detail must be {}", kind.expected()),
            factor: Some(kind),
            retry_after: None,
        }
    }

    /// 429: a failed-lookup limit refuses lookups for `retry_after` (the response's `Retry-After`).
    pub fn failed_lookups_refused(limit: Limit, retry_after: Duration) -> Self {
        let minutes = retry_after.as_secs().div_ceil(60).max(1);
        let when = if minutes == 1 { "a minute".to_owned() } else { format!("{minutes} minutes") };
        let (code, message) = match limit {
            Limit::Client => (
                "too_many_failed_lookups",
                format!("too many lookups from your network found no result; try again in {when}"),
            ),
            Limit::Number => (
                "too_many_tries",
                format!(
                    "too many tries for this registration number found no result; it can be looked up again in \
                     {when}: check the number and the second detail on the admission slip"
                ),
            ),
        };
        Self { status: StatusCode::TOO_MANY_REQUESTS, code, message, factor: None, retry_after: Some(retry_after) }
    }

    /// 404: no such route.
    pub fn no_route() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no such page".to_owned(),
            factor: None,
            retry_after: None,
        }
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "only GET and HEAD are allowed here".to_owned(),
            factor: None,
            retry_after: None,
        }
    }

    /// 413: a request body where none belongs.
    pub fn body_too_large() -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            message: "request body too large".to_owned(),
            factor: None,
            retry_after: None,
        }
    }

    /// 503: no store can answer right now (or the answer took too long).
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "results are temporarily unavailable; please retry shortly".to_owned(),
            factor: None,
            retry_after: Some(Duration::from_secs(RETRY_AFTER_SECONDS)),
        }
    }

    /// 500: a bug; the details are in the log.
    pub fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "something went wrong on our side".to_owned(),
            factor: None,
            retry_after: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let envelope = Envelope {
            error: Body {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
                factor: self.factor.map(FactorKind::as_str),
            },
        };
        serde_json::to_string(&envelope).unwrap_or_else(|_| String::from("{\"error\":{}}"))
    }
}

/// How messages name a factor.
fn phrase(kind: FactorKind) -> &'static str {
    match kind {
        FactorKind::Pin => "the PIN",
        FactorKind::DateOfBirth => "the date of birth",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let cache = match self.status {
            // A malformed ID stays malformed; an unknown one may be published by a correction.
            StatusCode::BAD_REQUEST => HeaderValue::from_static("public, max-age=3600"),
            StatusCode::NOT_FOUND => HeaderValue::from_static("public, max-age=5"),
            _ => HeaderValue::from_static("no-store"),
        };
        headers.insert(header::CACHE_CONTROL, cache);
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
