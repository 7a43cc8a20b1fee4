//! The happy paths: load, verify, idempotent rerun, forced reload, replacing a data set.

use results_core::record::Stream;
use results_core::{ContentChecksum, Dataset, DatasetSpec, StudentId, codec};
use seeder::load::{self, LoadOutcome};
use seeder::pg::results_table;
use seeder::verify;

use test_support::TestStores;

use crate::helpers::{RunSeeder as _, assert_one_clear_error, stdout};

#[tokio::test]
async fn ten_thousand_students_load_and_both_stores_agree_with_the_generator() {
    let t = TestStores::new().await;
    let outcome =
        load::run(&t.load_settings(DatasetSpec::new(42, 10_000).expect("spec"))).await.expect("load succeeds");
    let LoadOutcome::Loaded { postgres: true, marker, .. } = outcome else {
        panic!("expected a full load, got {outcome:?}")
    };
    assert_eq!(marker.count, 10_000);
    assert_eq!(marker.seed, 42);

    // The fingerprint is the generator's own checksum of the data set.
    let dataset = Dataset::new(DatasetSpec::new(42, 10_000).expect("spec"));
    let generated = dataset.generate();
    let mut sum = ContentChecksum::new();
    dataset.schools().iter().for_each(|s| sum.add_school(s));
    generated.iter().for_each(|r| sum.add_result(r));
    assert_eq!(marker.fingerprint, sum.finish());
    assert_eq!(marker.streams.natural_science + marker.streams.social_science, 10_000);

    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    assert_eq!(report.postgres.results, 10_000);
    assert_eq!(report.redis.checksum, marker.fingerprint);

    // A value read straight from Redis decodes to the generated record.
    let probe = &generated[7_777];
    let (key, field) = t.stores.layout.result_location(probe.id);
    let bytes: bytes::Bytes = fred::prelude::HashesInterface::hget(&t.redis().await, key, field).await.expect("hget");
    assert_eq!(codec::decode_result(probe.id, &bytes).expect("decodes"), *probe);

    // The database derives total and pass/fail itself: it must agree with the shared crate.
    let pg = t.pg().await;
    for stream in Stream::ALL {
        let rows = pg
            .query(&format!("SELECT student_id, total, passed FROM {}", results_table(stream)), &[])
            .await
            .expect("query results");
        assert!(!rows.is_empty());
        for row in rows {
            let id = StudentId::new(row.get::<_, i32>(0) as u32).expect("valid id");
            let record = &generated[dataset.spec().index_of(id).expect("in the data set") as usize];
            assert_eq!(record.stream, stream);
            assert_eq!(row.get::<_, i16>(1) as u16, record.total(), "total of {id}");
            assert_eq!(row.get::<_, bool>(2), record.passed(), "passed of {id}");
        }
    }
    // Keys were rebuilt after the load: the constraints are all back.
    let keys: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE contype IN ('p','u','f') \
             AND conrelid = ANY('{students,natural_science_results,social_science_results}'::regclass[])",
            &[],
        )
        .await
        .expect("count keys")
        .get(0);
    assert_eq!(keys, 7, "3 primary keys, 1 unique, 3 foreign keys");
    let parked: i64 =
        pg.query_one("SELECT count(*) FROM seeder_deferred_constraints", &[]).await.expect("count").get(0);
    assert_eq!(parked, 0);
    t.cleanup().await;
}

#[tokio::test]
async fn a_second_run_does_nothing_and_says_so_and_force_reloads() {
    let t = TestStores::new().await;
    let first = t.seeder(&["--students", "3000", "--seed", "9"]).await;
    assert!(first.status.success(), "{first:?}");
    let pg = t.pg().await;
    let updated_at = pg.query_one("SELECT updated_at::text FROM dataset", &[]).await.expect("row").get::<_, String>(0);

    let second = t.seeder(&["--students", "3000", "--seed", "9"]).await;
    assert!(second.status.success(), "{second:?}");
    assert!(stdout(&second).contains("already seeded"), "{}", stdout(&second));
    let unchanged = pg.query_one("SELECT updated_at::text FROM dataset", &[]).await.expect("row").get::<_, String>(0);
    assert_eq!(updated_at, unchanged, "nothing was rewritten");

    let forced = t.seeder(&["--students", "3000", "--seed", "9", "--force"]).await;
    assert!(forced.status.success(), "{forced:?}");
    assert!(stdout(&forced).contains("seeded 3000 students"), "{}", stdout(&forced));
    let reloaded = pg.query_one("SELECT updated_at::text FROM dataset", &[]).await.expect("row").get::<_, String>(0);
    assert_ne!(updated_at, reloaded);
    let verify = t.seeder(&["verify"]).await;
    assert!(verify.status.success(), "{}", stdout(&verify));
    t.cleanup().await;
}

#[tokio::test]
async fn another_data_set_is_only_replaced_with_force() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", "2000", "--seed", "1"]).await.status.success());
    let refused = t.seeder(&["--students", "2500", "--seed", "2"]).await;
    assert_one_clear_error(&refused, "already holds another data set");

    let replaced = t.seeder(&["--students", "2500", "--seed", "2", "--force"]).await;
    assert!(replaced.status.success(), "{replaced:?}");
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    assert_eq!(report.redis.results, 2_500, "no result of the old data set is left in Redis");
    t.cleanup().await;
}

#[tokio::test]
async fn redis_alone_is_reloaded_from_postgres_when_its_data_is_gone() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", "4000"]).await.status.success());
    // Simulate a Redis restart without persistence: every key of the prefix disappears.
    let redis_store =
        seeder::redis_store::RedisStore::connect(&t.stores.redis_url, t.stores.layout.clone()).await.expect("connect");
    assert!(redis_store.clear().await.expect("clear") > 40);
    let gone = verify::run(&t.stores).await.expect("verify runs");
    assert!(!gone.agrees());

    let rerun = t.seeder(&["--students", "4000"]).await;
    assert!(rerun.status.success(), "{rerun:?}");
    assert!(stdout(&rerun).contains("into Redis (from PostgreSQL)"), "{}", stdout(&rerun));
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    t.cleanup().await;
}

#[tokio::test]
async fn verify_reports_a_changed_and_a_missing_result_and_exits_3() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", "1500"]).await.status.success());
    let changed = StudentId::new(1_000_123).expect("id");
    let (key, field) = t.stores.layout.result_location(changed);
    let spec = DatasetSpec::new(results_core::DEFAULT_SEED, 1_500).expect("spec");
    let mut record = Dataset::new(spec).generate()[spec.index_of(changed).expect("in the data set") as usize].clone();
    record.scores[0] = if record.scores[0] == 100 { 99 } else { record.scores[0] + 1 };
    let _: i64 = fred::prelude::HashesInterface::hset(&t.redis().await, &key, (field, codec::encode_result(&record)))
        .await
        .expect("tamper");
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.differences.iter().any(|d| d.contains("content checksums differ")), "{}", report.render());

    let _: i64 =
        fred::prelude::HashesInterface::hdel(&t.redis().await, &key, (field + 1).to_string()).await.expect("hdel");
    let output = t.seeder(&["verify"]).await;
    assert_eq!(output.status.code(), Some(3), "{}", stdout(&output));
    assert!(stdout(&output).contains("PostgreSQL has 1500 results, Redis 1499"), "{}", stdout(&output));
    t.cleanup().await;
}
