//! Every public route and status, the JSON shape, HTTP caching, and bad input that must never
//! reach a store.

use std::time::Duration;

use results_core::record::PASS_MARK;
use results_core::{Dataset, StudentId};

use crate::helpers::{Seeded, TestApp, error_code};

#[tokio::test]
async fn a_result_has_every_field_the_student_needs() {
    let seeded = Seeded::shared().await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let dataset = Dataset::new(seeded.spec);
    let records = dataset.generate();
    let record = &records[4_321];
    let school = dataset.schools().iter().find(|s| s.id == record.school_id).expect("school");
    let response = app.get(&format!("/v1/results/{}", record.id)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["student_id"], record.id.get());
    assert_eq!(body["name"], record.name.as_str());
    assert_eq!(body["school"]["id"], school.id);
    assert_eq!(body["school"]["name"], school.name.as_str());
    assert_eq!(body["school"]["region"], school.region.name);
    assert_eq!(body["stream"], record.stream.as_str());
    let subjects = body["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 6);
    for ((json, subject), score) in subjects.iter().zip(record.stream.subjects()).zip(record.scores) {
        assert_eq!(json["subject"], subject.as_str());
        assert_eq!(json["score"], score);
    }
    assert_eq!(body["total"], record.total());
    assert_eq!(body["max_total"], 600);
    assert_eq!(body["pass_mark"], PASS_MARK);
    assert_eq!(body["passed"], record.passed());
    assert_eq!(body["rank"]["in_stream"], record.rank);
    let stream_size = records.iter().filter(|r| r.stream == record.stream).count();
    assert_eq!(body["rank"]["stream_size"], stream_size);
    assert_eq!(body.as_object().map(|o| o.len()), Some(10), "no unexpected fields: {body}");
}

#[tokio::test]
async fn the_alias_path_answers_exactly_like_the_main_path_and_head_works() {
    let seeded = Seeded::shared().await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    for id in [1_000_000, 1_005_555, 1_009_999] {
        let main = app.get(&format!("/v1/results/{id}")).await;
        let alias = app.get(&format!("/student/{id}")).await;
        assert_eq!(main.status(), 200);
        assert_eq!(alias.status(), 200);
        assert_eq!(main.headers()["etag"], alias.headers()["etag"]);
        assert_eq!(main.bytes().await.expect("body"), alias.bytes().await.expect("body"));
    }
    let head = app.client.head(format!("{}/v1/results/1000001", app.base)).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("etag"));
    assert!(head.bytes().await.expect("body").is_empty());
    for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response =
            app.client.request(method.clone(), format!("{}/v1/results/1000001", app.base)).send().await.expect("send");
        assert_eq!(error_code(response).await, (405, "method_not_allowed".to_owned()), "{method}");
    }
    assert_eq!(error_code(app.get("/nope").await).await, (404, "not_found".to_owned()));
}

#[tokio::test]
async fn an_unknown_id_is_a_404_and_never_reaches_postgres() {
    let seeded = Seeded::shared().await;
    // Refresh rarely, so the only PostgreSQL traffic would come from the requests themselves.
    let app = TestApp::spawn(&seeded, |s| s.refresh = Duration::from_secs(3_600)).await;
    let ready = app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    assert_eq!(ready["complete_data_set"], true, "{ready}");
    let before = app.pg_proxy.bytes_to_server();
    for id in (1_010_000..1_010_200).chain([9_999_999, 5_000_000]) {
        let (status, code) = error_code(app.get(&format!("/v1/results/{id}")).await).await;
        assert_eq!((status, code.as_str()), (404, "unknown_id"), "{id}");
    }
    assert_eq!(app.pg_proxy.bytes_to_server(), before, "not one byte went to PostgreSQL");
}

#[tokio::test]
async fn malformed_ids_are_400s_that_touch_no_store() {
    let seeded = Seeded::shared().await;
    let app = TestApp::spawn(&seeded, |s| s.refresh = Duration::from_secs(3_600)).await;
    app.wait_ready(Duration::from_secs(5), |r| r["ready"] == true).await;
    let (redis_before, pg_before) = (app.redis_proxy.bytes_to_server(), app.pg_proxy.bytes_to_server());
    let long = "1".repeat(5_000);
    let bad = [
        "abc",
        "-1000000",
        "%2B1000000",
        "%31000000",
        "0999999",
        "10000000",
        "1e6",
        "1000000%20",
        "%00",
        "１２３",
        "1000000.0",
        "0x10",
        "%27%20OR%201=1",
        long.as_str(),
    ];
    for id in bad {
        let response = app.get(&format!("/v1/results/{id}")).await;
        let (status, code) = error_code(response).await;
        assert_eq!((status, code.as_str()), (400, "invalid_id"), "{id:?}");
    }
    assert_eq!(app.redis_proxy.bytes_to_server(), redis_before, "no byte went to Redis");
    assert_eq!(app.pg_proxy.bytes_to_server(), pg_before, "no byte went to PostgreSQL");
}

#[tokio::test]
async fn a_matching_etag_gets_304_and_cache_headers_are_sent() {
    let seeded = Seeded::shared().await;
    let app = TestApp::spawn(&seeded, |s| s.http_max_age_s = 7).await;
    let first = app.get("/v1/results/1002000").await;
    assert_eq!(first.headers()["cache-control"], "public, max-age=7");
    let etag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"), "strong ETag {etag}");
    let again = app
        .client
        .get(format!("{}/v1/results/1002000", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.expect("body").is_empty());
    let other = app
        .client
        .get(format!("{}/v1/results/1002001", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 200, "another student's ETag does not match");
}

#[tokio::test]
async fn a_corrected_value_is_served_within_the_cache_ttl() {
    use fred::prelude::*;
    let seeded = Seeded::new(500).await;
    let ttl = Duration::from_millis(400);
    let app = TestApp::spawn(&seeded, |s| s.cache_ttl = ttl).await;
    let id = StudentId::new(1_000_042).expect("id");
    let before: serde_json::Value = app.get("/v1/results/1000042").await.json().await.expect("JSON");
    let mut corrected = Dataset::new(seeded.spec).generate()[id.index() as usize].clone();
    corrected.scores[0] = if corrected.scores[0] >= 50 { corrected.scores[0] - 10 } else { corrected.scores[0] + 10 };
    let (key, field) = seeded.stores.layout.result_location(id);
    let redis = seeded.redis().await;
    let _: i64 = redis.hset(key, (field, results_core::codec::encode_result(&corrected))).await.expect("correct");
    let changed_at = tokio::time::Instant::now();
    let expected = serde_json::json!(corrected.scores[0]);
    let after = loop {
        let body: serde_json::Value = app.get("/v1/results/1000042").await.json().await.expect("JSON");
        if body["subjects"][0]["score"] == expected || changed_at.elapsed() > ttl * 3 {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_ne!(before["subjects"][0]["score"], expected);
    assert_eq!(after["subjects"][0]["score"], expected, "corrected value visible");
    assert!(changed_at.elapsed() <= ttl + Duration::from_millis(300), "within the TTL: {:?}", changed_at.elapsed());
}

#[tokio::test]
async fn a_request_body_is_refused_and_an_oversized_head_is_rejected() {
    let seeded = Seeded::shared().await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let big =
        app.client.get(format!("{}/v1/results/1000001", app.base)).body(vec![b'x'; 4_096]).send().await.expect("send");
    assert_eq!(error_code(big).await, (413, "body_too_large".to_owned()));
    let huge_header = "y".repeat(32 * 1024);
    let response = app.client.get(format!("{}/v1/results/1000001", app.base)).header("x-big", huge_header).send().await;
    match response {
        Ok(r) => assert_eq!(r.status(), 431, "header too large"),
        Err(e) => assert!(e.is_request() || e.is_connect(), "connection dropped: {e}"),
    }
    assert_eq!(app.get("/healthz").await.status(), 200, "the replica is unharmed");
}
