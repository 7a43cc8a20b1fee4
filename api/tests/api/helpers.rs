//! What only the API's tests need beyond the workspace's `test-support` crate (seeded stores, the
//! API on port 0 behind chaos proxies): the shared data set's size and the error envelope check.

/// Students in the data set shared by the tests that only read ([`test_support::Seeded::shared`]).
pub const SHARED_STUDENTS: u32 = 10_000;

/// The error envelope of a response, checked for shape.
pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "errors are JSON"
    );
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["status"], status, "envelope carries the status");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "envelope has a message");
    (status, body["error"]["code"].as_str().expect("code").to_owned())
}
