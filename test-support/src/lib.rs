//! Fixtures for the workspace's integration tests, written once: the seeder's, the API's and the
//! load generator's tests all run against the real PostgreSQL and Redis of the native stack
//! (`scripts/test.sh` starts them and exports `DATABASE_URL` and `REDIS_URL`). A dev-dependency
//! only, in the spirit of crates.io's `crates_io_test_db`.
//!
//! Every test gets stores of its own, named so `scripts/test.sh` sweeps what a failed test leaves
//! behind: a database `seedtest_<random>`, Redis keys under `t-<random>:`, Redis users
//! `ro-<random>`. Tests therefore run in parallel and leave the developer's own data alone.
//!
//! - [`urls`]: the server address in a URL, and a URL pointed at another server, database or
//!   password.
//! - [`stores`]: [`TestStores`], one test's fresh database and Redis prefix (clients, Redis users,
//!   clean-up), and [`Seeded`], the same with a data set loaded, once per test or once per binary.
//! - [`chaos`]: [`ChaosProxy`], a TCP proxy in front of a real server that a test cuts, slows
//!   down and restores, counting the bytes it forwards.
//! - [`app`] (feature `api`): [`app::TestApp`], the real API spawned in-process on
//!   port 0 over seeded stores, each store behind a chaos proxy, with request helpers.

#[cfg(feature = "api")]
pub mod app;
pub mod chaos;
pub mod stores;
pub mod urls;

#[cfg(feature = "api")]
pub use app::TestApp;
pub use chaos::ChaosProxy;
pub use stores::{FACTOR_KEY, SEED, Seeded, TestStores};
