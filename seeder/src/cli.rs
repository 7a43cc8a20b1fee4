//! The command line. Every flag can also be set from the environment variable named in its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use results_core::keys::DEFAULT_PREFIX;
use results_core::{DEFAULT_SEED, DEFAULT_STUDENTS, DatasetSpec, KeyLayout, StudentId};

use crate::Stores;
use crate::load::LoadSettings;
use crate::progress::ProgressMode;

/// Exit status when `verify` finds a difference (errors exit with 1, usage errors with 2).
pub const EXIT_DIFFERENT: u8 = 3;

/// Loads the national exam results into PostgreSQL (the source of truth) and Redis (what the API
/// serves from), and checks that the two agree.
///
/// Without a subcommand it loads: it generates the deterministic data set (same seed, same data),
/// copies it into PostgreSQL with parallel binary COPY, then writes every result into Redis and
/// a completeness marker last. It is idempotent and safe to interrupt: a second run on a seeded
/// store does nothing and says so, and a run killed at any point is finished by the next one.
#[derive(Debug, Parser)]
#[command(
    name = "seeder",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 success, 1 error (one line on stderr says what), 2 usage error, \
                  3 `verify` found a difference.\n\nWith the native stack: eval \"$(scripts/stack.sh env)\" \
                  sets DATABASE_URL and REDIS_URL."
)]
pub struct Cli {
    /// What to do; `load` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default `load` command.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the data set and load PostgreSQL, then Redis (the default).
    Load(LoadArgs),
    /// Compare PostgreSQL and Redis (counts and content checksum); exit 3 on any difference.
    Verify(StoreArgs),
    /// Apply the database migrations only.
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Write the generated rows as CSV files plus a `copy.psql` of `\copy` commands (the
    /// benchmark baseline loads exactly these rows with psql).
    Export {
        /// Folder to write into (created if missing).
        #[arg(long, env = "SEEDER_EXPORT_DIR")]
        dir: PathBuf,
        /// Which data set.
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Where the stores are.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:55432/results.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:56379 (redis-cluster://host:port for a cluster).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (letters, digits, '_' and '-'); tests use a random one.
    #[arg(long, env = "SEEDER_KEY_PREFIX", default_value = DEFAULT_PREFIX)]
    pub key_prefix: String,
}

/// Which data set.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Number of students; they get registration numbers 1000000 upwards.
    #[arg(long, env = "SEEDER_STUDENTS", default_value_t = DEFAULT_STUDENTS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(StudentId::CAPACITY)))]
    pub students: u32,
    /// Seed value of the generator: the same seed gives the same data, byte for byte.
    #[arg(long, env = "SEEDER_SEED", default_value_t = DEFAULT_SEED,
          value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub seed: u64,
}

/// Options of `load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Where the stores are.
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Which data set.
    #[command(flatten)]
    pub data: DataArgs,
    /// Reload both stores even if they already hold this data set, and replace another data set.
    #[arg(long, env = "SEEDER_FORCE")]
    pub force: bool,
    /// PostgreSQL connections used in parallel for COPY and index builds.
    #[arg(long, env = "SEEDER_PG_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pg_connections: u16,
    /// Progress display: bars on a terminal and log lines otherwise (auto), or forced.
    #[arg(long, env = "SEEDER_PROGRESS", value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

impl StoreArgs {
    /// The stores, or an error naming the missing variable.
    pub fn stores(&self) -> anyhow::Result<Stores> {
        let database_url = self
            .database_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL URL: set DATABASE_URL or pass --database-url"))?;
        let redis_url =
            self.redis_url.clone().ok_or_else(|| anyhow::anyhow!("no Redis URL: set REDIS_URL or pass --redis-url"))?;
        let layout = KeyLayout::new(&self.key_prefix).map_err(|e| anyhow::anyhow!("SEEDER_KEY_PREFIX: {e}"))?;
        Ok(Stores { database_url, redis_url, layout })
    }
}

impl DataArgs {
    /// The data-set specification.
    pub fn spec(&self) -> anyhow::Result<DatasetSpec> {
        DatasetSpec::new(self.seed, self.students).map_err(|e| anyhow::anyhow!("SEEDER_STUDENTS: {e}"))
    }
}

impl LoadArgs {
    /// The load settings.
    pub fn settings(&self) -> anyhow::Result<LoadSettings> {
        Ok(LoadSettings {
            stores: self.stores.stores()?,
            spec: self.data.spec()?,
            force: self.force,
            pg_connections: usize::from(self.pg_connections),
            progress: self.progress,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_flags_mean_load() {
        let cli = Cli::try_parse_from(["seeder", "--students", "10000", "--force"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.load.data.students, 10_000);
        assert!(cli.load.force);
        assert!(Cli::try_parse_from(["seeder", "--students", "0"]).is_err());
        assert!(Cli::try_parse_from(["seeder", "--students", "9000001"]).is_err());
    }
}
