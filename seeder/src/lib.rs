//! The seeder: generates the deterministic data set, loads PostgreSQL (the source of truth) with
//! parallel binary COPY, then Redis with pipelined hash writes, and checks that they agree.
//! `main.rs` only parses the command line; everything here can be driven by tests.
//!
//! - [`cli`]: command-line flags and environment variables (clap), turned into settings.
//! - [`origin`]: where a data set comes from (generated, or an imported file) and its ID range.
//! - [`load`]: the load plan: what is already there, what to (re)do, in which order.
//! - [`import`]: `seeder import`: validates an authority's results file, then loads it.
//! - [`results_file`]: the results file format (CSV columns), shared by import and export.
//! - [`pg`]: PostgreSQL: connection pool, migrations, bulk COPY, constraints, reading back.
//! - [`redis_store`]: Redis: connection, write check, bucketed writes, completeness marker.
//! - [`correct`]: `seeder correct`: checks a CSV of corrected scores, applies it in one transaction.
//! - [`publish`]: writes the corrected results PostgreSQL lists as pending to Redis.
//! - [`verify`]: compares PostgreSQL and Redis (counts, content checksum, pending corrections).
//! - [`export`]: writes the results file of what PostgreSQL holds (and an IDs file), or the
//!   generated rows as per-table CSV for the `psql \copy` benchmark baseline.
//! - [`progress`]: progress bars on a terminal, plain log lines otherwise; per-phase rates.

pub mod cli;
pub mod correct;
pub mod export;
pub mod import;
pub mod load;
pub mod origin;
pub mod pg;
pub mod progress;
pub mod publish;
pub mod redis_store;
pub mod results_file;
pub mod verify;

use results_core::KeyLayout;

/// Where the two stores are.
#[derive(Debug, Clone)]
pub struct Stores {
    /// PostgreSQL connection URL (`postgres://user:password@host:port/database`).
    pub database_url: String,
    /// Redis connection URL (`redis://host:port`, or `redis-cluster://…`).
    pub redis_url: String,
    /// The Redis key layout, with its prefix.
    pub layout: KeyLayout,
}
