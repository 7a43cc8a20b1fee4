//! Test fixtures: a fresh database and Redis prefix per test, and helpers to run the real
//! seeder binary.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::Output;

use fred::prelude::*;
use futures_util::TryStreamExt;
use results_core::{DatasetSpec, KeyLayout};
use seeder::Stores;
use seeder::load::LoadSettings;
use seeder::progress::ProgressMode;
use tokio_postgres::NoTls;

/// A random lowercase hex word, unique enough to isolate concurrent tests.
pub fn random_word() -> String {
    format!("{:016x}", RandomState::new().build_hasher().finish())
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL and Redis")
    })
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    if query.is_empty() { format!("{base}/{database}") } else { format!("{base}/{database}?{query}") }
}

/// `url` with its password replaced.
pub fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let (userinfo, host) = rest.split_once('@').expect("URL has credentials");
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    format!("{scheme}://{user}:{password}@{host}")
}

/// One test's private stores: a database created for it and a Redis key prefix of its own.
pub struct TestStores {
    pub stores: Stores,
    admin_url: String,
    database: String,
    redis: Client,
}

impl TestStores {
    /// Creates a fresh database (swept by scripts/test.sh if a failing test leaves it behind).
    pub async fn new() -> Self {
        let admin_url = required_env("DATABASE_URL");
        let redis_url = required_env("REDIS_URL");
        let word = random_word();
        let database = format!("seedtest_{word}");
        let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.expect("connect to PostgreSQL");
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("create test database");
        let redis = Builder::from_config(Config::from_url(&redis_url).expect("REDIS_URL")).build().expect("client");
        redis.init().await.expect("connect to Redis");
        let layout = KeyLayout::new(&format!("t-{word}")).expect("valid prefix");
        Self {
            stores: Stores { database_url: with_database(&admin_url, &database), redis_url, layout },
            admin_url,
            database,
            redis,
        }
    }

    /// Load settings for `students` students from `seed`.
    pub fn settings(&self, seed: u64, students: u32) -> LoadSettings {
        LoadSettings {
            stores: self.stores.clone(),
            spec: DatasetSpec::new(seed, students).expect("valid spec"),
            force: false,
            pg_connections: 2,
            progress: ProgressMode::Quiet,
        }
    }

    /// A direct client of the test database.
    pub async fn pg(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.stores.database_url, NoTls).await.expect("connect to test database");
        tokio::spawn(connection);
        client
    }

    /// The Redis client of the test.
    pub fn redis(&self) -> &Client {
        &self.redis
    }

    /// Runs the seeder binary against these stores with `args` and a clean environment.
    pub async fn seeder(&self, args: &[&str]) -> Output {
        self.seeder_command(args).output().await.expect("run the seeder binary")
    }

    /// The seeder command against these stores, not yet started.
    pub fn seeder_command(&self, args: &[&str]) -> tokio::process::Command {
        seeder_command(&self.stores.database_url, &self.stores.redis_url, self.stores.layout.prefix(), args)
    }

    /// Drops the database and deletes the Redis keys.
    pub async fn cleanup(self) {
        let keys: Vec<Key> = self
            .redis
            .scan_buffered(format!("{}:*", self.stores.layout.prefix()), Some(1_000), None)
            .try_collect()
            .await
            .expect("scan test keys");
        for key in keys {
            let _: i64 = self.redis.del(key).await.expect("delete test key");
        }
        let (client, connection) = tokio_postgres::connect(&self.admin_url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        // Not WITH (FORCE): it would also have to end autovacuum workers, which only a superuser
        // may; a plain DROP cancels those itself. This test's own sessions are ended first.
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = current_user",
                &[&self.database],
            )
            .await
            .expect("end the test's sessions");
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.database)).await.expect("drop test database");
    }
}

/// The seeder binary with a clean environment (nothing from the developer's shell leaks in).
pub fn seeder_command(database_url: &str, redis_url: &str, prefix: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_seeder"));
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("SEEDER_KEY_PREFIX", prefix)
        .env("SEEDER_PROGRESS", "lines")
        .args(args)
        .kill_on_drop(true);
    command
}

/// Starts `command` and kills it (SIGKILL) as soon as its stderr shows `line`; returns stderr so
/// far. Fails the test if the line never comes or the command finished on its own.
pub async fn kill_when(mut command: tokio::process::Command, line: &str) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the seeder");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut seen = String::new();
    let reading = async {
        while let Some(l) = lines.next_line().await.expect("read stderr") {
            seen.push_str(&l);
            seen.push('\n');
            if l.contains(line) {
                return true;
            }
        }
        false
    };
    let found = tokio::time::timeout(std::time::Duration::from_secs(180), reading).await;
    child.start_kill().expect("SIGKILL the seeder");
    let status = child.wait().await.expect("reap");
    assert!(matches!(found, Ok(true)), "never saw {line:?}; stderr:\n{seen}");
    assert!(!status.success(), "the seeder was killed, not finished");
    seen
}

/// Starts `command` with standard input, output and error piped.
pub fn spawn_piped(mut command: tokio::process::Command) -> tokio::process::Child {
    use std::process::Stdio;
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the seeder")
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the seeder failed with exactly one `error:` line naming `expected`, and no panic.
pub fn assert_one_clear_error(output: &Output, expected: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "exit status; stderr:\n{err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line; stderr:\n{err}");
    assert!(error_lines[0].contains(expected), "error line {:?} should mention {expected:?}", error_lines[0]);
    assert!(!err.contains("panicked"), "no panic; stderr:\n{err}");
}
