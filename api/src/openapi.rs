//! The OpenAPI 3.1 document of the public API. It is hand-written (`api/openapi.json`) and
//! embedded at compile time: no generator dependency, and `api/tests/api/openapi.rs` keeps it
//! true against the real router (every route documented, every documented operation routed,
//! real responses of every documented status valid against its schemas).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as served at [`crate::routes::OPENAPI_ROUTE`].
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// Serves [`DOCUMENT`]. It changes only with a new binary; a minute of caching is harmless.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=60")], DOCUMENT)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_document_is_openapi_3_1_json() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("api/openapi.json is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert!(document["paths"].as_object().is_some_and(|paths| !paths.is_empty()));
    }
}
