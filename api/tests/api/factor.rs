//! A data set that requires a second factor (`seeder load --pins`): the right PIN shows the
//! result, a wrong one is answered exactly as an unknown number (status, body, headers, and the
//! same store round trips), a missing or malformed one is a clear 400, nothing is cacheable, and
//! neither the PIN nor its hash reaches the metrics.

use std::time::Duration;

use results_core::DatasetSpec;
use results_core::factor::{FACTOR_HEADER, generated_pin};
use test_support::{FACTOR_KEY, Seeded, TestApp};

use crate::helpers::error_code;
use crate::schema::{Document, Received};

const FIRST: u32 = 1_000_000;
const STUDENTS: u32 = 500;

/// A PIN that is not `right` (same length, last digit changed).
fn wrong(right: &str) -> String {
    let mut pin = right[..right.len() - 1].to_owned();
    pin.push(if right.ends_with('0') { '1' } else { '0' });
    pin
}

async fn get(app: &TestApp, path: &str, pin: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{path}", app.base));
    if let Some(pin) = pin {
        request = request.header(FACTOR_HEADER, pin);
    }
    request.send().await.expect("a response")
}

/// Status, the headers a client or cache sees, and the body.
async fn answer(response: reqwest::Response) -> (u16, Vec<(String, String)>, bytes::Bytes) {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
        .collect();
    headers.sort();
    (status, headers, response.bytes().await.expect("body"))
}

/// Checks an answer of GET /v1/results/{id} against the OpenAPI document.
async fn documented(response: reqwest::Response) -> Result<(), String> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let document = Document::embedded();
    let expected = document.response("/v1/results/{id}", "get", status)?;
    document.check_response(expected, &Received { headers: &headers, body: &body })
}

async fn guarded() -> (Seeded, TestApp) {
    let seeded = Seeded::generated_with_pins(DatasetSpec::with_first_id(5, STUDENTS, FIRST).expect("spec")).await;
    // No background refresh after start-up: the proxies then count only what the requests send.
    let app = TestApp::spawn(&seeded, |s| {
        s.factor_key = Some(results_core::FactorKey::new(FACTOR_KEY).expect("key"));
        s.refresh = Duration::from_secs(3_600);
    })
    .await;
    app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    (seeded, app)
}

#[tokio::test]
async fn right_pin_200_wrong_pin_exactly_an_unknown_number_missing_pin_400() {
    let (seeded, app) = guarded().await;
    let id = FIRST + 17;
    let pin = generated_pin(seeded.spec.seed(), id);
    let ok = get(&app, &format!("/v1/results/{id}"), Some(&pin)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "private, no-store", "no cache may keep a guarded result");
    let body: serde_json::Value = ok.json().await.expect("JSON");
    assert_eq!(body["student_id"], id);
    // The alias route is guarded the same way.
    assert_eq!(get(&app, &format!("/student/{id}"), Some(&pin)).await.status(), 200);
    assert_eq!(get(&app, &format!("/student/{id}"), Some(&wrong(&pin))).await.status(), 404);

    // A wrong PIN for a real number, and any PIN for a number that does not exist (same digits,
    // same Redis bucket width and field, so the same bytes go to Redis): indistinguishable.
    let unknown = FIRST + 517;
    let (redis_before, pg_before) = (app.redis_proxy.bytes_to_server(), app.pg_proxy.bytes_to_server());
    let refused = answer(get(&app, &format!("/v1/results/{id}"), Some(&wrong(&pin))).await).await;
    let redis_wrong = app.redis_proxy.bytes_to_server() - redis_before;
    let absent = answer(get(&app, &format!("/v1/results/{unknown}"), Some(&pin)).await).await;
    let redis_unknown = app.redis_proxy.bytes_to_server() - redis_before - redis_wrong;
    assert_eq!(refused.0, 404);
    assert_eq!(refused, absent, "a wrong PIN answers exactly as an unknown number");
    assert!(redis_wrong > 0);
    assert_eq!(redis_wrong, redis_unknown, "the same Redis round trips either way (no timing oracle)");
    assert_eq!(app.pg_proxy.bytes_to_server(), pg_before, "neither reaches PostgreSQL");

    // Missing or malformed: a clear 400 naming what is needed, never echoing what was sent.
    let missing = get(&app, &format!("/v1/results/{id}"), None).await;
    assert_eq!(missing.headers()["cache-control"], "private, no-store");
    assert_eq!(error_code(missing).await, (400, "factor_required".to_owned()));
    let body: serde_json::Value = get(&app, &format!("/v1/results/{id}"), None).await.json().await.expect("JSON");
    assert_eq!(body["error"]["factor"], "pin", "the page labels its second field from this");
    let malformed = get(&app, &format!("/v1/results/{id}"), Some("12ab")).await;
    let text = malformed.text().await.expect("body");
    assert!(text.contains("invalid_factor") && text.contains("4 to 12 digits"), "{text}");
    assert!(!text.contains("12ab"), "the value is never echoed: {text}");
    // A malformed number is still a malformed number, whatever the PIN.
    assert_eq!(error_code(get(&app, "/v1/results/01", Some(&pin)).await).await, (400, "invalid_id".to_owned()));

    // Every answer of a guarded data set is one the OpenAPI document describes.
    for (pin, id) in [(Some(pin.as_str()), id), (Some("000000"), unknown), (None, id), (Some("12ab"), id)] {
        let answer = documented(get(&app, &format!("/v1/results/{id}"), pin).await).await;
        assert_eq!(answer, Ok(()), "{pin:?} {id}");
    }

    let metrics = app.metrics().await;
    assert!(metrics.contains("outcome=\"wrong_factor\""), "wrong factors are counted");
    assert!(!metrics.contains(&pin) && !metrics.contains(&wrong(&pin)), "no PIN in the metrics");
}

#[tokio::test]
async fn with_redis_down_postgresql_checks_the_pin_and_without_the_key_nothing_is_served() {
    let (seeded, app) = guarded().await;
    let id = FIRST + 42;
    let pin = generated_pin(seeded.spec.seed(), id);
    app.redis_proxy.cut();
    assert_eq!(get(&app, &format!("/v1/results/{id}"), Some(&pin)).await.status(), 200);
    // Twice: the second answer comes from the in-process cache, which must check it too.
    for _ in 0..2 {
        let refused = get(&app, &format!("/v1/results/{id}"), Some(&wrong(&pin))).await;
        assert_eq!(error_code(refused).await, (404, "unknown_id".to_owned()));
    }
    assert_eq!(error_code(get(&app, &format!("/v1/results/{id}"), None).await).await.0, 400);

    // A replica without FACTOR_KEY cannot check a factor: it serves nothing, never the open result.
    let keyless = TestApp::spawn(&seeded, |_| {}).await;
    keyless.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    let response = get(&keyless, &format!("/v1/results/{id}"), Some(&pin)).await;
    assert_eq!(error_code(response).await, (503, "unavailable".to_owned()));
}

#[test]
fn nginx_neither_caches_nor_logs_a_request_that_carries_the_factor() {
    let template = include_str!("../../../nginx/nginx.conf.template");
    let variable = format!("$http_{}", FACTOR_HEADER.replace('-', "_"));
    assert!(template.contains(&format!("map {variable} $second_factor_sent")), "the template reads {FACTOR_HEADER}");
    for directive in ["proxy_cache_bypass", "proxy_no_cache"] {
        let line = template.lines().find(|l| l.trim_start().starts_with(directive)).expect(directive);
        assert!(line.contains("$second_factor_sent"), "{line}");
    }
    // No access log at all, and no log format that could name the header.
    assert!(template.contains("access_log off;"));
    assert!(!template.contains("log_format"));
}

/// A data set with PINs and a replica whose near cache has `budget` bytes. The failed-lookup
/// limits are off: they count each 404 in Redis, the same for a wrong PIN and an unknown number
/// (tests/api/limits.rs); the read path itself does no I/O.
async fn guarded_with_near_cache(budget: u64) -> (Seeded, TestApp) {
    let seeded = Seeded::generated_with_pins(DatasetSpec::with_first_id(6, STUDENTS, FIRST).expect("spec")).await;
    let app = TestApp::spawn(&seeded, |s| {
        s.factor_key = Some(results_core::FactorKey::new(FACTOR_KEY).expect("key"));
        s.refresh = Duration::from_secs(3_600);
        s.near_cache_budget = budget;
        s.failed_lookups_per_client = 0;
        s.factor_tries_per_number = 0;
    })
    .await;
    (seeded, app)
}

#[tokio::test]
async fn the_near_cache_checks_the_factor_with_no_io_for_a_wrong_one_or_an_unknown_number() {
    let (seeded, app) = guarded_with_near_cache(64 << 20).await;
    let ready = app.wait_ready(Duration::from_secs(10), |r| r["near_cache"] == "complete").await;
    assert_eq!(ready["near_cache"], "complete", "{ready}");
    let id = FIRST + 99;
    let pin = generated_pin(seeded.spec.seed(), id);
    let (redis_before, pg_before) = (app.redis_proxy.bytes_to_server(), app.pg_proxy.bytes_to_server());
    assert_eq!(get(&app, &format!("/v1/results/{id}"), Some(&pin)).await.status(), 200);
    let refused = answer(get(&app, &format!("/v1/results/{id}"), Some(&wrong(&pin))).await).await;
    let absent = answer(get(&app, &format!("/v1/results/{}", FIRST + 517), Some(&pin)).await).await;
    assert_eq!(refused.0, 404);
    assert_eq!(refused, absent, "a wrong PIN answers exactly as an unknown number");
    assert_eq!(error_code(get(&app, &format!("/v1/results/{id}"), None).await).await.0, 400);
    let io = (app.redis_proxy.bytes_to_server() - redis_before, app.pg_proxy.bytes_to_server() - pg_before);
    assert_eq!(io, (0, 0), "the copy answered all of it from memory");
    assert!(app.metrics().await.contains("tier=\"near\",outcome=\"wrong_factor\""), "counted in the near tier");
}

#[tokio::test]
async fn a_bounded_near_cache_checks_the_factor_on_a_kept_bucket_with_no_io() {
    // Under the five buckets' size: a couple of them are kept.
    let (seeded, app) = guarded_with_near_cache(24 << 10).await;
    let ready = app.wait_ready(Duration::from_secs(10), |r| r["near_cache"] == "bounded").await;
    assert_eq!(ready["near_cache"], "bounded", "{ready}");
    // A bucket not kept yet: read through Redis, the factor checked all the same.
    let other = FIRST + 450;
    let other_pin = generated_pin(seeded.spec.seed(), other);
    assert_eq!(get(&app, &format!("/v1/results/{other}"), Some(&wrong(&other_pin))).await.status(), 404);
    assert_eq!(get(&app, &format!("/v1/results/{other}"), Some(&other_pin)).await.status(), 200);

    let id = FIRST + 99;
    let pin = generated_pin(seeded.spec.seed(), id);
    assert_eq!(get(&app, &format!("/v1/results/{id}"), Some(&pin)).await.status(), 200, "its bucket is kept");
    let (redis_before, pg_before) = (app.redis_proxy.bytes_to_server(), app.pg_proxy.bytes_to_server());
    assert_eq!(get(&app, &format!("/v1/results/{id}"), Some(&pin)).await.status(), 200);
    let refused = answer(get(&app, &format!("/v1/results/{id}"), Some(&wrong(&pin))).await).await;
    let absent = answer(get(&app, &format!("/v1/results/{}", FIRST + STUDENTS + 17), Some(&pin)).await).await;
    assert_eq!(refused.0, 404);
    assert_eq!(refused, absent, "a wrong PIN answers exactly as an unknown number");
    let io = (app.redis_proxy.bytes_to_server() - redis_before, app.pg_proxy.bytes_to_server() - pg_before);
    assert_eq!(io, (0, 0), "the kept bucket answered all of it from memory");
    assert!(app.metrics().await.contains("tier=\"near\",outcome=\"wrong_factor\""), "counted in the near tier");
}
