//! A seeder killed with SIGKILL part-way through a phase, then run again, ends with exactly the
//! right data: no duplicates, nothing missing, both stores agreeing.

use seeder::verify;

use test_support::TestStores;

use crate::helpers::{self, RunSeeder as _, stdout};

/// Big enough that each phase lasts well beyond the moment the kill lands, even in release.
const STUDENTS: &str = "300000";

/// Starts a load and kills it (SIGKILL) as soon as stderr shows `line`.
async fn kill_when(t: &TestStores, line: &str) -> String {
    helpers::kill_when(t.seeder_command(&["--students", STUDENTS]), line).await
}

async fn rerun_ends_exact(t: &TestStores) -> String {
    let rerun = t.seeder(&["--students", STUDENTS]).await;
    assert!(rerun.status.success(), "{rerun:?}");
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    assert_eq!(report.postgres.results, 300_000);
    let pg = t.pg().await;
    let row =
        pg.query_one("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM students", &[]).await.expect("count");
    assert_eq!(row.get::<_, i64>(0), 300_000, "no duplicates");
    assert_eq!(row.get::<_, i64>(1), 300_000);
    assert_eq!((row.get::<_, i32>(2), row.get::<_, i32>(3)), (1_000_000, 1_299_999));
    stdout(&rerun)
}

#[tokio::test]
async fn killed_while_copying_into_postgres_then_rerun_ends_exact() {
    let t = TestStores::new().await;
    kill_when(&t, "postgres: 10%").await;
    let pg = t.pg().await;
    let state: String = pg.query_one("SELECT state FROM dataset", &[]).await.expect("dataset row").get(0);
    assert_eq!(state, "loading", "the kill landed mid-load");
    let parked: i64 = pg.query_one("SELECT count(*) FROM seeder_deferred_constraints", &[]).await.expect("n").get(0);
    assert!(parked > 0, "keys were set aside when the kill landed");
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.differences.iter().any(|d| d.contains("unfinished load")), "{}", report.render());

    let out = rerun_ends_exact(&t).await;
    assert!(out.contains("into PostgreSQL and Redis"), "{out}");
    t.cleanup().await;
}

#[tokio::test]
async fn killed_while_loading_redis_then_rerun_loads_redis_from_postgres() {
    let t = TestStores::new().await;
    kill_when(&t, "redis: 10%").await;
    let marker = seeder::redis_store::RedisStore::connect(&t.stores.redis_url, t.stores.layout.clone())
        .await
        .expect("connect")
        .marker()
        .await
        .expect("read marker");
    assert_eq!(marker, None, "no completeness marker after a killed Redis load");
    let pg = t.pg().await;
    let state: String = pg.query_one("SELECT state FROM dataset", &[]).await.expect("dataset row").get(0);
    assert_eq!(state, "complete", "PostgreSQL had committed before Redis was touched");

    let out = rerun_ends_exact(&t).await;
    assert!(out.contains("into Redis (from PostgreSQL)"), "{out}");
    t.cleanup().await;
}

/// Ctrl-C (a real SIGINT) exits 130, the shell's convention for "interrupted", and says how to
/// finish. The stores are a listener that accepts and never answers, so the seeder is certainly
/// mid-run (waiting on a store) when the signal lands.
#[tokio::test]
async fn sigint_exits_130_and_says_to_run_again() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("address");
    let mut command =
        helpers::seeder_command(&format!("postgres://u:p@{addr}/none"), &format!("redis://{addr}"), "sigint", &[]);
    let child = command.stderr(std::process::Stdio::piped()).spawn().expect("start the seeder");
    let pid = child.id().expect("a running seeder").to_string();
    let (_held, _) = tokio::time::timeout(std::time::Duration::from_secs(60), silent.accept())
        .await
        .expect("the seeder connects to a store")
        .expect("accept");
    let kill = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("run kill");
    assert!(kill.success());
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the seeder stops on SIGINT")
        .expect("reap");
    let err = helpers::stderr(&output);
    assert_eq!(output.status.code(), Some(i32::from(seeder::cli::EXIT_INTERRUPTED)), "stderr:\n{err}");
    assert_eq!(seeder::cli::EXIT_INTERRUPTED, 130);
    assert!(err.contains("interrupted") && err.contains("run the same command again"), "{err}");
}
