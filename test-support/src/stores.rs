//! One test's private stores on the stack's shared PostgreSQL and Redis: a database created for
//! it and a Redis key prefix of its own, empty ([`TestStores`]) or with a data set loaded by the
//! seeder's library ([`Seeded`]).
//!
//! The names are the ones `scripts/test.sh` sweeps at the start of a run, so whatever a failed
//! test leaves behind is gone by the next one: databases `seedtest_<random>`, Redis keys under
//! `t-<random>:`, Redis users `ro-<random>`. Keep the two in step.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use fred::prelude::*;
use futures_util::TryStreamExt;
use results_core::{DatasetSpec, KeyLayout};
use seeder::Stores;
use seeder::load::LoadSettings;
use seeder::progress::ProgressMode;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::urls::{with_credentials, with_database};

/// The seed of the data sets tests generate (the load generator's tests derive IDs from it).
pub const SEED: u64 = 7;

/// The `FACTOR_KEY` of the tests' data sets with a second factor: a test value, never a real key
/// (production's comes from a secret setting that is never committed).
pub const FACTOR_KEY: &str = "test-only second-factor key, not a secret";

/// The swept name prefixes (`scripts/test.sh`): test databases, Redis key prefixes, Redis users.
const DATABASE_PREFIX: &str = "seedtest_";
const KEY_PREFIX: &str = "t-";
const USER_PREFIX: &str = "ro-";

/// A random lowercase hex word, unique enough to isolate concurrent tests.
pub fn random_word() -> String {
    format!("{:016x}", RandomState::new().build_hasher().finish())
}

/// A setting `scripts/test.sh` exports; the tests cannot run without it.
fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL and Redis")
    })
}

/// A connection to `url`, its connection task running in the current runtime.
async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// One test's stores: a fresh database and a fresh Redis key prefix on the stack's servers.
///
/// It holds only their URLs, so it may outlive the test's runtime (see [`Seeded::shared`]);
/// every client it hands out is a new connection in the caller's runtime.
#[derive(Debug, Clone)]
pub struct TestStores {
    /// Where the stores are, as the seeder and the API take them.
    pub stores: Stores,
    /// The server's own URL (`DATABASE_URL`), to create and drop the test database.
    admin_url: String,
    database: String,
}

impl TestStores {
    /// Creates an empty database `seedtest_<random>` and picks the Redis prefix `t-<random>`.
    pub async fn new() -> Self {
        let admin_url = required_env("DATABASE_URL");
        let word = random_word();
        let database = format!("{DATABASE_PREFIX}{word}");
        let admin = pg_connect(&admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("create the test database");
        let stores = Stores {
            database_url: with_database(&admin_url, &database),
            redis_url: required_env("REDIS_URL"),
            layout: KeyLayout::new(&format!("{KEY_PREFIX}{word}")).expect("a valid key prefix"),
        };
        Self { stores, admin_url, database }
    }

    /// The seeder's settings to load the generated data set `spec` into these stores.
    pub fn load_settings(&self, spec: DatasetSpec) -> LoadSettings {
        LoadSettings {
            stores: self.stores.clone(),
            spec,
            force: false,
            pg_connections: 2,
            progress: ProgressMode::Quiet,
            pins: None,
        }
    }

    /// A new client of the test database.
    pub async fn pg(&self) -> tokio_postgres::Client {
        pg_connect(&self.stores.database_url).await
    }

    /// A new, connected Redis client (the whole server: keys outside the prefix are visible).
    pub async fn redis(&self) -> Client {
        let config = Config::from_url(&self.stores.redis_url).expect("a valid REDIS_URL");
        let client = Builder::from_config(config).build().expect("a Redis client");
        client.init().await.expect("connect to Redis");
        client
    }

    /// Creates a Redis user `ro-<random>` with the ACL `rules` (beyond `on` and its password):
    /// a real refusal for the code under test, swept by the next run if the test fails before
    /// [`TestStores::delete_redis_user`].
    pub async fn redis_user(&self, rules: &[&str]) -> RedisUser {
        let name = format!("{USER_PREFIX}{}", random_word());
        let password = random_word();
        let mut acl = vec!["on".to_owned(), format!(">{password}")];
        acl.extend(rules.iter().map(|rule| (*rule).to_owned()));
        self.redis().await.acl_setuser(name.as_str(), acl).await.expect("create the Redis user");
        let url = with_credentials(&self.stores.redis_url, &name, &password);
        RedisUser { name, url }
    }

    /// Deletes a user made by [`TestStores::redis_user`].
    pub async fn delete_redis_user(&self, user: RedisUser) {
        let _: i64 = self.redis().await.acl_deluser(user.name.as_str()).await.expect("delete the Redis user");
    }

    /// Deletes the test's Redis keys and drops its database.
    pub async fn cleanup(self) {
        let redis = self.redis().await;
        let keys: Vec<Key> = redis
            .scan_buffered(format!("{}:*", self.stores.layout.prefix()), Some(1_000), None)
            .try_collect()
            .await
            .expect("scan the test's keys");
        for key in keys {
            let _: i64 = redis.del(key).await.expect("delete a test key");
        }
        let admin = pg_connect(&self.admin_url).await;
        // Not WITH (FORCE): it would also have to end autovacuum workers, which only a superuser
        // may; a plain DROP cancels those itself. This test's own sessions are ended first.
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = current_user",
                &[&self.database],
            )
            .await
            .expect("end the test's sessions");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.database))
            .await
            .expect("drop the test database");
    }
}

/// A Redis user of one test (see [`TestStores::redis_user`]).
#[derive(Debug)]
pub struct RedisUser {
    /// The user name, `ro-<random>`.
    pub name: String,
    /// The stores' Redis URL logging in as this user.
    pub url: String,
}

/// Test stores holding a known data set; derefs to its [`TestStores`].
#[derive(Debug, Clone)]
pub struct Seeded {
    inner: TestStores,
    /// The generated data set the stores hold (for an imported file: the one it was exported from).
    pub spec: DatasetSpec,
}

impl Deref for Seeded {
    type Target = TestStores;

    fn deref(&self) -> &TestStores {
        &self.inner
    }
}

impl Seeded {
    /// `students` students generated from [`SEED`], in fresh stores.
    pub async fn new(students: u32) -> Self {
        Self::generated(DatasetSpec::new(SEED, students).expect("a valid data set spec")).await
    }

    /// The generated data set `spec`, loaded by the seeder into fresh stores.
    pub async fn generated(spec: DatasetSpec) -> Self {
        let inner = TestStores::new().await;
        seeder::load::run(&inner.load_settings(spec)).await.expect("seed the test data");
        Self { inner, spec }
    }

    /// The generated data set `spec` with PINs required (`seeder load --pins`, keyed with
    /// [`FACTOR_KEY`]), in fresh stores; a student's PIN is
    /// `results_core::factor::generated_pin(spec.seed(), id)`.
    pub async fn generated_with_pins(spec: DatasetSpec) -> Self {
        let inner = TestStores::new().await;
        let mut settings = inner.load_settings(spec);
        settings.pins = Some(results_core::FactorKey::new(FACTOR_KEY).expect("the test key is long enough"));
        seeder::load::run(&settings).await.expect("seed the test data");
        Self { inner, spec }
    }

    /// The results file `file` imported into fresh stores; `spec` is the generated data set it
    /// was exported from (what the test expects to find).
    pub async fn imported(file: &Path, spec: DatasetSpec) -> Self {
        let inner = TestStores::new().await;
        let settings = seeder::import::ImportSettings {
            stores: inner.stores.clone(),
            input: seeder::import::Input::Path(file.to_owned()),
            force: false,
            discard_corrections: false,
            pg_connections: 2,
            progress: ProgressMode::Quiet,
            factor_key: None,
        };
        seeder::import::run(&settings).await.expect("import the test data");
        Self { inner, spec }
    }

    /// `students` students from [`SEED`], seeded once per test binary and shared by every test
    /// that only reads them (never cleaned up by the tests: the next run's sweep drops them).
    pub async fn shared(students: u32) -> Self {
        // One cell per size, each initialised once; tests asking for the same size wait for it.
        static SHARED: Mutex<Vec<(u32, Arc<OnceCell<Seeded>>)>> = Mutex::new(Vec::new());
        let cell = {
            let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
            match shared.iter().find(|(size, _)| *size == students) {
                Some((_, cell)) => Arc::clone(cell),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    shared.push((students, Arc::clone(&cell)));
                    cell
                }
            }
        };
        cell.get_or_init(|| Self::new(students)).await.clone()
    }
}
