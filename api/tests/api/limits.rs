//! The failed-lookup limits (api/src/failed_lookups.rs): a client past its failed lookups, and a
//! registration number past its failed tries, are refused with 429 before the lookup is tried
//! (a right factor included), across replicas, while Redis is down too; the client is NGINX's
//! `X-Real-IP` only from a trusted proxy.

use std::time::Duration;

use results_core::DatasetSpec;
use results_core::factor::{FACTOR_HEADER, generated_pin};
use test_support::{FACTOR_KEY, Seeded, TestApp};

use crate::helpers::error_code;

const FIRST: u32 = 1_000_000;
const STUDENTS: u32 = 300;

async fn get_as(app: &TestApp, client: &str, id: u32, pin: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}/v1/results/{id}", app.base)).header("x-real-ip", client);
    if let Some(pin) = pin {
        request = request.header(FACTOR_HEADER, pin);
    }
    request.send().await.expect("a response")
}

/// Status and error code of a lookup by `client`.
async fn outcome(app: &TestApp, client: &str, id: u32, pin: Option<&str>) -> (u16, String) {
    let response = get_as(app, client, id, pin).await;
    if response.status() == 200 {
        return (200, String::new());
    }
    error_code(response).await
}

fn refusals(metrics: &str, limit: &str) -> f64 {
    let series = format!("failed_lookup_refusals_total{{limit=\"{limit}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_client_past_its_failed_lookups_is_refused_whatever_it_asks_and_other_clients_are_not() {
    let seeded = Seeded::new(STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.failed_lookups_per_client = 5).await;
    app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    let first = seeded.spec.first_id();
    let (prober, student, busy) = ("192.0.2.10", "192.0.2.20", "2001:db8:7:7::1");
    // Successful lookups do not count: a school's busy address stays admitted.
    for id in first..first + 30 {
        assert_eq!(outcome(&app, busy, id, None).await.0, 200);
    }
    for n in 0..5 {
        assert_eq!(outcome(&app, prober, first + STUDENTS + n, None).await, (404, "unknown_id".to_owned()));
    }
    let refused = get_as(&app, prober, first, None).await;
    assert_eq!(refused.status(), 429, "refused before the lookup, a published number too");
    let retry: u64 = refused.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "until the minute is over: {retry}");
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_failed_lookups");
    assert!(body["error"]["message"].as_str().expect("message").contains("try again in a minute"), "{body}");
    // Another address, and another address of the prober's IPv6 /64 is the same client.
    assert_eq!(outcome(&app, student, first + 1, None).await.0, 200);
    assert_eq!(outcome(&app, student, first + STUDENTS, None).await.0, 404);
    for n in 0..5 {
        outcome(&app, "2001:db8:7:7::2", first + STUDENTS + n, None).await;
    }
    assert_eq!(outcome(&app, "2001:db8:7:7:ffff::9", first, None).await.1, "too_many_failed_lookups");

    let metrics = app.metrics().await;
    assert!(refusals(&metrics, "client") >= 2.0, "refusals are counted");
    assert!(!metrics.contains("192.0.2.10") && !metrics.contains("2001:db8"), "no address in the metrics");
}

#[tokio::test]
async fn guesses_at_one_number_are_bounded_across_clients_and_replicas_and_say_nothing_about_existence() {
    let seeded = Seeded::generated_with_pins(DatasetSpec::with_first_id(7, STUDENTS, FIRST).expect("spec")).await;
    let replica = |_: ()| {
        TestApp::spawn(&seeded, |s| {
            s.factor_key = Some(results_core::FactorKey::new(FACTOR_KEY).expect("key"));
            s.factor_tries_per_number = 4;
        })
    };
    let (a, b) = (replica(()).await, replica(()).await);
    for app in [&a, &b] {
        app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    }
    let target = FIRST + 12;
    let pin = generated_pin(seeded.spec.seed(), target);
    let wrong =
        if pin.ends_with('0') { format!("{}1", &pin[..pin.len() - 1]) } else { format!("{}0", &pin[..pin.len() - 1]) };
    // Four wrong guesses from four addresses, two through each replica: the limit, in all.
    for (n, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        let client = format!("198.51.100.{n}");
        assert_eq!(outcome(app, &client, target, Some(&wrong)).await, (404, "unknown_id".to_owned()));
    }
    // The replica whose failure reached the limit refuses the number, the right PIN included.
    assert_eq!(outcome(&b, "198.51.100.50", target, Some(&pin)).await.1, "too_many_tries");
    // The other learns at its next failure for it: one try more in all, never a second.
    assert_eq!(outcome(&a, "198.51.100.51", target, Some(&wrong)).await.0, 404);
    let refused = get_as(&a, "198.51.100.52", target, Some(&pin)).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!(retry > 3_000 && retry <= 3_600, "until the hour is over: {retry}");
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert!(body["error"]["message"].as_str().expect("message").contains("admission slip"), "{body}");
    // Another student is not affected.
    let other = FIRST + 13;
    assert_eq!(outcome(&a, "198.51.100.53", other, Some(&generated_pin(seeded.spec.seed(), other))).await.0, 200);

    // An unknown number is counted as a wrong PIN is, and refused with the same answer: the 429
    // tells a harvester nothing about which numbers exist.
    let unknown = FIRST + STUDENTS + 7;
    for n in 0..4 {
        assert_eq!(outcome(&a, &format!("203.0.113.{n}"), unknown, Some(&pin)).await.0, 404);
    }
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        (status, response.headers()["cache-control"].clone(), response.text().await.expect("body"))
    };
    let on_unknown = answer(get_as(&a, "203.0.113.9", unknown, Some(&pin)).await).await;
    let on_target = answer(get_as(&a, "203.0.113.9", target, Some(&pin)).await).await;
    assert_eq!(on_unknown.0, 429);
    assert_eq!(on_unknown, on_target, "the same refusal for a number that exists and one that does not");
    assert!(refusals(&a.metrics().await, "number") >= 2.0);

    // Without a second factor the number limit does not apply: a typo costs the client only.
    let open = Seeded::new(STUDENTS).await;
    let plain = TestApp::spawn(&open, |s| s.factor_tries_per_number = 1).await;
    plain.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    let missing = open.spec.first_id() + STUDENTS;
    for n in 0..3 {
        assert_eq!(outcome(&plain, &format!("192.0.2.{n}"), missing, None).await.0, 404);
    }
}

#[tokio::test]
async fn with_redis_down_each_replica_still_counts_on_its_own() {
    let seeded = Seeded::new(STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.failed_lookups_per_client = 3).await;
    app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    app.redis_proxy.cut();
    let unknown = seeded.spec.first_id() + STUDENTS;
    // PostgreSQL answers the unknown number; the count stays in this replica.
    for _ in 0..3 {
        assert_eq!(outcome(&app, "192.0.2.30", unknown, None).await, (404, "unknown_id".to_owned()));
    }
    assert_eq!(outcome(&app, "192.0.2.30", seeded.spec.first_id(), None).await.1, "too_many_failed_lookups");
    assert_eq!(outcome(&app, "192.0.2.31", seeded.spec.first_id(), None).await.0, 200, "others still served");
}

#[tokio::test]
async fn x_real_ip_names_the_client_only_from_a_trusted_proxy() {
    let seeded = Seeded::new(STUDENTS).await;
    // Trusting nobody: every request here comes from 127.0.0.1, whatever X-Real-IP it claims.
    let app = TestApp::spawn(&seeded, |s| {
        s.failed_lookups_per_client = 3;
        s.trusted_proxies = Vec::new();
    })
    .await;
    app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    let unknown = seeded.spec.first_id() + STUDENTS;
    for n in 0..3 {
        assert_eq!(outcome(&app, &format!("192.0.2.{n}"), unknown, None).await.0, 404);
    }
    let spoofed = outcome(&app, "192.0.2.99", seeded.spec.first_id(), None).await;
    assert_eq!(spoofed.1, "too_many_failed_lookups", "a made-up X-Real-IP does not reset the count");
}

#[test]
fn the_documented_limits_are_the_defaults() {
    let doc = include_str!("../../../docs/second-factor.md");
    let client = api::config::DEFAULT_FAILED_LOOKUPS_PER_CLIENT;
    let number = api::config::DEFAULT_FACTOR_TRIES_PER_NUMBER;
    assert!(
        doc.contains(&format!("| {client} a minute (`API_FAILED_LOOKUPS_PER_CLIENT`)")),
        "docs/second-factor.md: {client}"
    );
    assert!(
        doc.contains(&format!("| {number} an hour (`API_FACTOR_TRIES_PER_NUMBER`)")),
        "docs/second-factor.md: {number}"
    );
    assert_eq!(api::failed_lookups::CLIENT_WINDOW, Duration::from_secs(60), "the doc says a minute");
    assert_eq!(api::failed_lookups::NUMBER_WINDOW, Duration::from_secs(3_600), "the doc says an hour");
}
