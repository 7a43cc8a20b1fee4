//! The OpenAPI document (`api/openapi.json`, served at /openapi.json) kept true against the real
//! router: every route is documented and every documented operation routed, real responses of
//! every documented status (503 from stores that are down) are valid against the document, and
//! its ID pattern and enums are the API's own.

use std::collections::BTreeSet;
use std::time::Duration;

use api::routes::{OPENAPI_ROUTE, PUBLIC_ROUTES};
use reqwest::Method;
use results_core::StudentId;
use results_core::record::{PASS_MARK, Region, SUBJECTS_PER_STREAM, Stream, Subject};
use serde_json::{Value, json};

use test_support::{Seeded, TestApp};

use crate::helpers::SHARED_STUDENTS;
use crate::schema::{Document, Received};

/// The OpenAPI operation methods; a route must answer exactly its documented ones.
const METHODS: [&str; 8] = ["get", "head", "post", "put", "delete", "patch", "options", "trace"];
/// Seeded in the shared data set.
const KNOWN_ID: &str = "1000001";
/// Well-formed, never seeded.
const UNKNOWN_ID: &str = "9999999";

/// A response, read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn received(&self) -> Received<'_> {
        Received { headers: &self.headers, body: &self.body }
    }

    fn error_code(&self) -> Option<String> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body["error"]["code"].as_str().map(str::to_owned)
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    tweak: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Answer {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let response = tweak(app.client.request(method, format!("{}{path}", app.base))).send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Answer { status, headers, body }
}

fn concrete(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

fn documented_paths(document: &Document) -> BTreeSet<String> {
    document.root()["paths"].as_object().expect("paths").keys().cloned().collect()
}

#[tokio::test]
async fn the_document_is_served_on_the_public_port_as_embedded() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let document = Document::embedded();
    let answer = send(&app, "get", OPENAPI_ROUTE, |r| r).await;
    assert_eq!(answer.status, 200);
    let served: Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(&served, document.root(), "the served document is the embedded api/openapi.json");
    let response = document.response(OPENAPI_ROUTE, "get", 200).expect("documented");
    document.check_response(response, &answer.received()).expect("valid against itself");
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let document = Document::embedded();
    let routes: BTreeSet<String> = PUBLIC_ROUTES.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(documented_paths(&document), routes, "the document's paths are exactly the router's routes");
    let not_allowed = &document.root()["components"]["responses"]["MethodNotAllowed"];
    let mut problems = Vec::new();
    for path in &routes {
        let url = concrete(path, KNOWN_ID);
        for method in METHODS {
            let answer = send(&app, method, &url, |r| r).await;
            let routed =
                !(answer.status == 405 || answer.status == 404 && answer.error_code().as_deref() != Some("unknown_id"));
            let documented = document.operation(path, method).is_some();
            if routed != documented {
                problems.push(format!("{method} {url}: {} but documented: {documented}", answer.status));
            }
            if !documented && let Err(e) = document.check_response(not_allowed, &answer.received()) {
                problems.push(format!("{method} {url}: not the documented 405: {e}"));
            }
        }
    }
    // Anything else is the JSON 404 `not_found`.
    let not_found = &document.root()["components"]["responses"]["NotFound"];
    for path in ["/", "/v1/results", "/v1/results/", "/student", "/openapi.yaml", "/metrics", "/readyz/x"] {
        let answer = send(&app, "get", path, |r| r).await;
        if answer.status != 404 || answer.error_code().as_deref() != Some("not_found") {
            problems.push(format!("GET {path}: {} {:?}, not the JSON 404", answer.status, answer.error_code()));
        } else if let Err(e) = document.check_response(not_found, &answer.received()) {
            problems.push(format!("GET {path}: {e}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Only NGINX answers these (checked through NGINX by scripts/tests/openapi_test.sh): a replica's
/// 429 is the result routes' failed-lookup limit.
fn answered_by_nginx_only(path: &str, status: u16) -> bool {
    let result_route = path == api::routes::RESULTS_ROUTE || path == api::routes::ALIAS_ROUTE;
    (status == 429 && !result_route) || (path == OPENAPI_ROUTE && status == 503)
}

#[tokio::test]
async fn real_responses_of_every_documented_status_are_valid_against_the_document() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let up = TestApp::spawn(&seeded, |_| {}).await;
    let down = TestApp::spawn_with_stores(&seeded, false, |s| s.pg_timeout = Duration::from_millis(300)).await;
    // One failed lookup a minute: the second lookup is the documented 429.
    let limited = TestApp::spawn(&seeded, |s| s.failed_lookups_per_client = 1).await;
    let not_ready = down.wait_ready(Duration::from_secs(5), |r| r["ready"] == false).await;
    assert_eq!(not_ready["ready"], false, "{not_ready}");
    let document = Document::embedded();
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in documented_paths(&document) {
        for method in METHODS {
            let Some(operation) = document.operation(&path, method) else { continue };
            let statuses = operation["responses"].as_object().expect("responses").keys();
            for status in statuses.map(|s| s.parse::<u16>().expect("numeric status")) {
                if answered_by_nginx_only(&path, status) {
                    continue;
                }
                let known = concrete(&path, KNOWN_ID);
                let answer = match status {
                    200 => send(&up, method, &known, |r| r).await,
                    304 => {
                        let first = send(&up, "get", &known, |r| r).await;
                        let etag = first.headers.get("etag").cloned().expect("an ETag to revalidate");
                        send(&up, method, &known, |r| r.header("if-none-match", etag)).await
                    }
                    400 => send(&up, method, &concrete(&path, "abc"), |r| r).await,
                    404 => send(&up, method, &concrete(&path, UNKNOWN_ID), |r| r).await,
                    413 => send(&up, method, &known, |r| r.body(vec![b'x'; 4_096])).await,
                    431 => {
                        // More headers than the API accepts (64): refused before routing.
                        send(&up, method, &known, |mut r| {
                            for i in 0..80 {
                                r = r.header(format!("x-extra-{i}"), "1");
                            }
                            r
                        })
                        .await
                    }
                    429 => {
                        let failed = send(&limited, "get", &concrete(&path, UNKNOWN_ID), |r| r).await;
                        assert!(matches!(failed.status, 404 | 429), "{}", failed.status);
                        send(&limited, method, &known, |r| r).await
                    }
                    503 => send(&down, method, &known, |r| r).await,
                    other => {
                        problems.push(format!("{method} {path}: no way to provoke the documented {other}"));
                        continue;
                    }
                };
                checked += 1;
                let response = document.response(&path, method, status).expect("documented");
                if answer.status != status {
                    problems.push(format!("{method} {path}: provoked {status}, got {}", answer.status));
                } else if let Err(e) = document.check_response(response, &answer.received()) {
                    problems.push(format!("{method} {path} {status}: {e}"));
                }
            }
        }
    }
    // 5 routes x GET/HEAD: 200 each, 304/400/404/429 on the two result routes, 413 and 431 each,
    // 503 on the result routes and readiness.
    assert!(checked >= 44, "only {checked} responses checked");
    // The 405 of every route (not an operation: a component every path shares).
    let not_allowed = &document.root()["components"]["responses"]["MethodNotAllowed"];
    for path in PUBLIC_ROUTES.iter() {
        let answer = send(&up, "post", &concrete(path, KNOWN_ID), |r| r).await;
        if answer.status != 405 {
            problems.push(format!("POST {path}: {}", answer.status));
        } else if let Err(e) = document.check_response(not_allowed, &answer.received()) {
            problems.push(format!("POST {path} 405: {e}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn schema<'a>(document: &'a Document, name: &str) -> &'a Value {
    &document.root()["components"]["schemas"][name]
}

fn strings(value: &Value) -> BTreeSet<String> {
    value.as_array().expect("an array").iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
}

#[test]
fn the_documented_id_format_and_enums_are_the_apis_own() {
    let document = Document::embedded();
    let parameter = &document.root()["components"]["parameters"]["StudentId"];
    let pattern = regex::Regex::new(parameter["schema"]["pattern"].as_str().expect("pattern")).expect("regex");
    let mut candidates: Vec<String> =
        ["", "0", "1", "0999999", "1000000", "9999999", "10000000", "999999999", "1000000000", "01", "+1000000"]
            .map(str::to_owned)
            .into();
    // A deterministic spread of digit strings of lengths 1 to 11 and a few with other characters.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let digits = format!("{:011}", x % 100_000_000_000);
        let text = &digits[..1 + (x % 11) as usize];
        candidates.push(text.to_owned());
        candidates.push(format!("{text}a"));
    }
    for text in &candidates {
        assert_eq!(pattern.is_match(text), StudentId::parse(text).is_ok(), "{text:?}");
    }
    // NGINX sends exactly the well-formed IDs through its micro-cache: the same pattern.
    let nginx = include_str!("../../../nginx/nginx.conf.template");
    let documented = parameter["schema"]["pattern"].as_str().expect("pattern").trim_start_matches('^');
    assert!(
        nginx.contains(&format!("location ~ \"^/(v1/results|student)/{documented}\"")),
        "nginx/nginx.conf.template's well-formed ID location must use {documented}"
    );
    // The students' page checks the same pattern before it sends anything.
    let page = include_str!("../../../web/app.js");
    assert!(
        page.contains(&format!("var ID_PATTERN = /^{documented}/;")),
        "web/app.js's ID_PATTERN must be /^{documented}/"
    );
    let id = &schema(&document, "Result")["properties"]["student_id"];
    assert_eq!(
        (id["minimum"].as_u64(), id["maximum"].as_u64()),
        (Some(u64::from(StudentId::MIN)), Some(u64::from(StudentId::MAX)))
    );

    let streams: BTreeSet<String> = Stream::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(strings(&schema(&document, "Stream")["enum"]), streams);
    let subjects: BTreeSet<String> =
        Stream::ALL.iter().flat_map(|s| s.subjects()).map(|s| s.as_str().to_owned()).collect();
    let score = &schema(&document, "SubjectScore")["properties"];
    assert_eq!(strings(&score["subject"]["enum"]), subjects);
    assert_eq!(score["score"]["maximum"], u64::from(Subject::MAX_SCORE));
    let regions: BTreeSet<String> = Region::ALL.iter().map(|r| r.name.to_owned()).collect();
    assert_eq!(strings(&schema(&document, "Region")["enum"]), regions);
    let result = &schema(&document, "Result")["properties"];
    assert_eq!(result["pass_mark"]["const"], PASS_MARK);
    assert_eq!(result["max_total"]["const"], SUBJECTS_PER_STREAM as u64 * u64::from(Subject::MAX_SCORE));
    assert_eq!(result["subjects"]["minItems"], SUBJECTS_PER_STREAM);
    assert_eq!(result["subjects"]["maxItems"], SUBJECTS_PER_STREAM);
    let retry_after = api::error::RETRY_AFTER_SECONDS;
    assert!(retry_after >= 1, "Retry-After is documented as at least 1");
}

/// Makes a valid result invalid in one way.
type Break = fn(&mut Value);

#[tokio::test]
async fn the_checker_rejects_what_the_document_forbids() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let document = Document::embedded();
    let answer = send(&app, "get", &concrete(api::routes::RESULTS_ROUTE, KNOWN_ID), |r| r).await;
    let ok = document.response(api::routes::RESULTS_ROUTE, "get", 200).expect("documented");
    document.check_response(ok, &answer.received()).expect("the real answer is valid");
    let result: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let result_schema = schema(&document, "Result");
    let broken: [(&str, Break); 7] = [
        ("a missing field", |v| drop(v.as_object_mut().map(|o| o.remove("rank")))),
        ("an extra field", |v| v["extra"] = json!(1)),
        ("a score over 100", |v| v["subjects"][0]["score"] = json!(101)),
        ("an unknown stream", |v| v["stream"] = json!("arts")),
        ("a string ID", |v| v["student_id"] = json!("1000001")),
        ("five subjects", |v| drop(v["subjects"].as_array_mut().map(|s| s.pop()))),
        ("a wrong max_total", |v| v["max_total"] = json!(500)),
    ];
    for (what, breaks) in broken {
        let mut body = result.clone();
        breaks(&mut body);
        assert!(document.validate(result_schema, &body, "body").is_err(), "{what} was accepted");
    }
    // A missing required header, and a body where none is documented.
    let mut headers = answer.headers.clone();
    headers.remove("etag");
    let without_etag = Received { headers: &headers, body: &answer.body };
    assert!(document.check_response(ok, &without_etag).is_err(), "a 200 without ETag was accepted");
    let not_modified = document.response(api::routes::RESULTS_ROUTE, "get", 304).expect("documented");
    assert!(document.check_response(not_modified, &answer.received()).is_err(), "a 304 with a body was accepted");
    // A keyword the checker does not know is an error, never silently skipped.
    let unknown = json!({"type": "integer", "multipleOf": 7});
    assert!(document.validate(&unknown, &json!(3), "x").is_err_and(|e| e.contains("multipleOf")));
}
