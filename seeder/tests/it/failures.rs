//! What users get wrong: unreachable servers, wrong passwords, a Redis that refuses writes, a
//! schema from another version, missing or malformed settings. Each ends with one clear error
//! line and exit status 1, never a panic.

use test_support::TestStores;
use test_support::urls::with_password;

use crate::helpers::{RunSeeder as _, assert_one_clear_error, seeder_command};

#[tokio::test]
async fn unreachable_postgres_is_one_clear_line() {
    let t = TestStores::new().await;
    let out = seeder_command("postgres://results:x@127.0.0.1:1/results", &t.stores.redis_url, "unused", &[])
        .output()
        .await
        .expect("run");
    assert_one_clear_error(&out, "cannot connect to PostgreSQL at 127.0.0.1:1/results");
    t.cleanup().await;
}

#[tokio::test]
async fn wrong_password_is_one_clear_line_without_the_password() {
    let t = TestStores::new().await;
    let url = with_password(&t.stores.database_url, "not-the-password");
    let out = seeder_command(&url, &t.stores.redis_url, t.stores.layout.prefix(), &[]).output().await.expect("run");
    assert_one_clear_error(&out, "password authentication failed");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not-the-password"));
    t.cleanup().await;
}

#[tokio::test]
async fn unreachable_redis_is_one_clear_line() {
    let t = TestStores::new().await;
    let out = seeder_command(&t.stores.database_url, "redis://127.0.0.1:1", "unused", &[]).output().await.expect("run");
    assert_one_clear_error(&out, "cannot connect to Redis at 127.0.0.1:1");
    t.cleanup().await;
}

#[tokio::test]
async fn redis_that_refuses_writes_stops_the_load_before_postgres_is_touched() {
    let t = TestStores::new().await;
    // A real refusal: a Redis user allowed to read but not to write.
    let user = t.redis_user(&["~*", "&*", "+@read", "+@connection", "-@write"]).await;
    let out = seeder_command(&t.stores.database_url, &user.url, t.stores.layout.prefix(), &["--students", "1000"])
        .output()
        .await
        .expect("run");
    t.delete_redis_user(user).await;
    assert_one_clear_error(&out, "refuses writes");
    let pg = t.pg().await;
    let loaded: i64 =
        pg.query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'students'", &[]).await.expect("count").get(0);
    assert_eq!(loaded, 0, "nothing was migrated or loaded");
    t.cleanup().await;
}

#[tokio::test]
async fn schema_from_another_version_is_refused() {
    let t = TestStores::new().await;
    let migrate = t.seeder(&["migrate"]).await;
    assert!(migrate.status.success(), "{migrate:?}");
    let pg = t.pg().await;
    pg.batch_execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101, 'from the future', true, '\\x00', 1)",
    )
    .await
    .expect("pretend a newer version migrated this database");
    let out = t.seeder(&["--students", "1000"]).await;
    assert_one_clear_error(&out, "from another version of this project: migration 99990101");
    t.cleanup().await;
}

#[tokio::test]
async fn missing_or_malformed_settings_name_the_variable() {
    let missing = tokio::process::Command::new(env!("CARGO_BIN_EXE_seeder")).env_clear().output().await.expect("run");
    assert_one_clear_error(&missing, "set DATABASE_URL or pass --database-url");

    let t = TestStores::new().await;
    let malformed = seeder_command("postgres://[::1", &t.stores.redis_url, "x", &[]).output().await.expect("run");
    assert_one_clear_error(&malformed, "DATABASE_URL is not a valid PostgreSQL URL");
    let bad_redis = seeder_command(&t.stores.database_url, "http://nope", "x", &[]).output().await.expect("run");
    assert_one_clear_error(&bad_redis, "REDIS_URL is not a valid Redis URL");
    let bad_prefix =
        seeder_command(&t.stores.database_url, &t.stores.redis_url, "a:b", &[]).output().await.expect("run");
    assert_one_clear_error(&bad_prefix, "SEEDER_KEY_PREFIX");
    let usage = t.seeder(&["--students", "0"]).await;
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    t.cleanup().await;
}
