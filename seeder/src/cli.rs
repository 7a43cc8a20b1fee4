//! The command line. Every flag can also be set from the environment variable named in its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use results_core::env::{SHARED_KEY_PREFIX, SHARED_STUDENTS, shared_or};
use results_core::keys::DEFAULT_PREFIX;
use results_core::{DEFAULT_FIRST_ID, DEFAULT_SEED, DEFAULT_STUDENTS, DatasetSpec, FactorKey, KeyLayout, StudentId};

use crate::Stores;
use crate::correct::CorrectSettings;
use crate::import::{ImportSettings, Input};
use crate::load::LoadSettings;
use crate::progress::ProgressMode;

/// The variable of the log filter (tracing's EnvFilter directives); `RUST_LOG` when it is unset.
pub const LOG_VAR: &str = "SEEDER_LOG";
/// Exit status when interrupted (Ctrl-C, SIGINT): 128 + the signal's number, as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Exit status when `verify` finds a difference (errors exit with 1, usage errors with 2).
pub const EXIT_DIFFERENT: u8 = 3;
/// Exit status when a correction or results file has bad lines (each is reported; nothing was
/// applied or written).
pub const EXIT_INVALID_FILE: u8 = 4;
/// Exit status when PostgreSQL holds a correction that Redis did not fully get (retry with
/// `seeder publish`).
pub const EXIT_UNPUBLISHED: u8 = 5;

/// The end of `seeder correct --help`: exit statuses and the staleness bound of a corrected result
/// (docs/ARCHITECTURE.md states the same bound).
const STALENESS_BOUND: &str = "Exit status: 0 applied and published (or nothing to change), 1 error \
(one line on stderr; nothing applied), 2 usage error, 4 the file has bad lines (each reported; nothing \
applied), 5 PostgreSQL holds the correction but Redis did not get all of it (stderr says how much did; \
retry with `seeder publish`).\n\nStaleness bound: when `seeder correct` exits 0 the corrected results are in Redis, \
which every API replica reads first on every request, so every replica serves them at once. Through NGINX \
with its micro-cache on, within 2 s more (an entry lives 1 s, counted by NGINX in whole seconds; off by default: at once). A browser or other \
HTTP cache may keep a previous answer for Cache-Control max-age (API_HTTP_MAX_AGE_S, 5 s) and gets the new \
one on revalidation (the ETag changes with the content): at most 7 s end to end. When Redis is down (exit \
5), replicas serve the new value from PostgreSQL within API_CACHE_TTL_MS (2 s) of the commit, but once Redis \
is back it serves the previous value until `seeder publish` succeeds.";

/// Loads the national exam results into PostgreSQL (the source of truth) and Redis (what the API
/// serves from), and checks that the two agree.
///
/// Without a subcommand it loads: it generates the deterministic data set (same seed, same data),
/// copies it into PostgreSQL with parallel binary COPY, then writes every result into Redis and
/// a completeness marker last. It is idempotent and safe to interrupt: a second run on a seeded
/// store does nothing and says so, and a run killed at any point is finished by the next one.
/// `seeder import` loads an exam authority's results file the same way.
#[derive(Debug, Parser)]
#[command(
    name = "seeder",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 success, 1 error (one line on stderr says what), 2 usage error, \
                  3 `verify` found a difference, 4 a correction or results file has bad lines (nothing applied), \
                  5 a correction is in PostgreSQL but not (all) in Redis (retry: `seeder publish`), 130 interrupted \
                  (Ctrl-C: run the same command again to finish).\n\nLogging: SEEDER_LOG, else RUST_LOG, holds \
                  the log filter (tracing's directives) [default: info,sqlx=warn]. A flag wins over its variable; \
                  --key-prefix's and --students' variables over the shared RESULTS_KEY_PREFIX and RESULTS_STUDENTS, \
                  which the API and the load generator read too.\n\nWith the native stack: eval \"$(cargo xtask stack env)\" \
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
    /// Publish an exam authority's results file (CSV): check every line, then load PostgreSQL,
    /// then Redis, with the same guarantees as `load`.
    #[command(
        long_about = "Publish an exam authority's results file (CSV): check every line first, then load PostgreSQL, \
                      then Redis, with the same guarantees as `load`: the same file again changes nothing (\"already \
                      seeded\"), a run killed at any point is finished by the next, another data set is only replaced \
                      with --force (and corrections only dropped with --discard-corrections), PostgreSQL commits \
                      before Redis is written, the completeness marker is written last, `seeder verify` checks the \
                      fingerprint and `seeder correct` applies on top.\n\n\
                      Every bad line is reported as FILE:LINE: what is wrong (the first 50, then a count), the exit \
                      status is 4, and neither store changes.",
        after_long_help = crate::results_file::FORMAT_HELP
    )]
    Import(ImportArgs),
    /// Compare PostgreSQL and Redis (counts and content checksum); exit 3 on any difference.
    Verify(StoreArgs),
    /// Apply corrected subject scores from a CSV file (after appeals), recompute the ranks they
    /// move, and publish the changed results to Redis.
    #[command(
        long_about = "Apply corrected subject scores from a CSV file (after appeals), recompute the ranks they move, \
                      and publish every changed result to Redis.\n\n\
                      The file: the header `student_id,subject,score`, then one row per changed subject score, e.g. \
                      `1000042,mathematics,71`. `subject` is the subject's name as the API's JSON shows it in \
                      subjects[].subject (english, mathematics, physics, chemistry, biology for natural science; \
                      english, mathematics, geography, history, economics for social science; aptitude for both); \
                      `score` a whole number 0-100. Blank lines, spaces around fields, CRLF and a UTF-8 BOM are \
                      accepted.\n\n\
                      The whole file is checked first (format, range, duplicates, then against PostgreSQL: the \
                      student exists, the subject is in the student's stream); every bad line is reported and \
                      nothing is applied (exit 4). Then ONE PostgreSQL transaction updates the scores, rewrites \
                      every stored rank the new totals change (RANK() by total within the stream, ties share a \
                      rank), records the changed students as pending publication and journals the correction \
                      (tables corrections, correction_changes). Then Redis gets every pending result and the \
                      completeness marker its new fingerprint.\n\n\
                      Scores that already have their value change nothing: applying a file twice changes nothing \
                      the second time and says so. If Redis is down or fails midway, PostgreSQL keeps the \
                      correction and the command says how many results reached Redis (exit 5); `seeder publish`, \
                      or the same command again, publishes whatever is pending. `seeder verify` reports pending \
                      results as a difference. A plain `seeder load` keeps corrections; `seeder load --force` \
                      regenerates the data set and refuses while corrections exist unless \
                      --discard-corrections is given.",
        after_long_help = STALENESS_BOUND
    )]
    Correct(CorrectArgs),
    /// Publish to Redis the corrected results PostgreSQL holds but Redis does not yet (after a
    /// `correct` that exited 5); exit 5 if some still could not be published.
    Publish(StoreArgs),
    /// Apply the database migrations only.
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Write what PostgreSQL holds as a results file (`--file`, the format `import` reads) and/or
    /// its registration numbers (`--ids-file`, one a line, for `loadgen --ids-file`); or, with
    /// `--dir`, the generated rows as per-table CSV plus a `copy.psql` of `\copy` commands (the
    /// benchmark baseline loads exactly these rows with psql).
    Export(ExportArgs),
}

/// Options of `correct`.
#[derive(Debug, Clone, Args)]
pub struct CorrectArgs {
    /// Where the stores are.
    #[command(flatten)]
    pub stores: StoreArgs,
    /// The correction file (CSV: `student_id,subject,score`).
    #[arg(long, env = "SEEDER_CORRECTION_FILE")]
    pub file: PathBuf,
    /// Check the file and show what would change (scores, students affected), then roll back:
    /// nothing is applied or published.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Where the stores are.
    #[command(flatten)]
    pub stores: StoreArgs,
    /// The results file (CSV, see below); `-` reads standard input.
    #[arg(long, env = "SEEDER_RESULTS_FILE")]
    pub file: PathBuf,
    /// How to load.
    #[command(flatten)]
    pub how: LoadOptions,
}

/// Options of `export`.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("output").required(true).multiple(true).args(["file", "ids_file", "dir"]))]
pub struct ExportArgs {
    /// Where the stores are (`--file` and `--ids-file` read PostgreSQL).
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Write the results file of what PostgreSQL holds (corrections included) here.
    #[arg(long, env = "SEEDER_EXPORT_FILE")]
    pub file: Option<PathBuf>,
    /// Write the registration numbers PostgreSQL holds here, one a line, ascending.
    #[arg(long, env = "SEEDER_EXPORT_IDS_FILE")]
    pub ids_file: Option<PathBuf>,
    /// Write the generated data set as per-table CSV and `copy.psql` into this folder (created if
    /// missing); no store is read.
    #[arg(long, env = "SEEDER_EXPORT_DIR", conflicts_with_all = ["file", "ids_file"])]
    pub dir: Option<PathBuf>,
    /// With --file and --ids-file: write the generated data set (--students, --seed, --first-id)
    /// instead of what PostgreSQL holds; no store is read (benchmarks, trying the import path).
    #[arg(long, conflicts_with = "dir")]
    pub generated: bool,
    /// Which data set (with --dir or --generated).
    #[command(flatten)]
    pub data: DataArgs,
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
    /// Prefix of every Redis key (letters, digits, '_' and '-'); tests use a random one. Unset:
    /// the shared RESULTS_KEY_PREFIX, else the default
    #[arg(long, env = "SEEDER_KEY_PREFIX", default_value = shared_or(SHARED_KEY_PREFIX, DEFAULT_PREFIX))]
    pub key_prefix: String,
}

/// Which data set.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Number of students; they get registration numbers --first-id upwards. Unset: the shared
    /// RESULTS_STUDENTS, else the default
    #[arg(long, env = "SEEDER_STUDENTS", default_value = shared_or(SHARED_STUDENTS, &DEFAULT_STUDENTS.to_string()),
          value_parser = clap::value_parser!(u32).range(1..=i64::from(StudentId::MAX)))]
    pub students: u32,
    /// The first student's registration number; the others follow without gaps. With 1, the
    /// default data set holds 1..674823, the reference design's range.
    #[arg(long, env = "SEEDER_FIRST_ID", default_value_t = DEFAULT_FIRST_ID,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(StudentId::MAX)))]
    pub first_id: u32,
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
    /// How to load.
    #[command(flatten)]
    pub how: LoadOptions,
    /// Give every generated student a six-digit PIN and require it at lookup (the demo data set
    /// stays open without this). The PINs derive from --seed and the registration number, so the
    /// load generator can send them (loadgen --pins); needs FACTOR_KEY.
    #[arg(long, env = "SEEDER_PINS")]
    pub pins: bool,
}

/// How `load` and `import` load, whatever the data set.
#[derive(Debug, Clone, Args)]
pub struct LoadOptions {
    /// Reload both stores even if they already hold this data set (or file), and replace another
    /// data set. Refused while corrections exist (they would be lost) unless --discard-corrections.
    #[arg(long, env = "SEEDER_FORCE")]
    pub force: bool,
    /// With --force: reload the data set even though corrections were applied to it since it was
    /// loaded; they are dropped (the journal keeps them, marked discarded).
    #[arg(long, env = "SEEDER_DISCARD_CORRECTIONS", requires = "force")]
    pub discard_corrections: bool,
    /// PostgreSQL connections used in parallel for COPY and index builds.
    #[arg(long, env = "SEEDER_PG_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pg_connections: u16,
    /// Progress display: bars on a terminal and log lines otherwise (auto), or forced.
    #[arg(long, env = "SEEDER_PROGRESS", value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// The secret the second factor's hash is keyed with (at least 32 bytes; the API must be given
    /// the same). Needed only for a data set with a second factor; never commit it.
    #[arg(long, env = "FACTOR_KEY", hide_env_values = true)]
    pub factor_key: Option<String>,
}

impl LoadOptions {
    /// The factor key, checked, if one was given.
    pub fn factor_key(&self) -> anyhow::Result<Option<FactorKey>> {
        self.factor_key.as_deref().map(FactorKey::new).transpose().map_err(anyhow::Error::from)
    }
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
        let layout = KeyLayout::new(&self.key_prefix)
            .map_err(|e| anyhow::anyhow!("SEEDER_KEY_PREFIX (or {SHARED_KEY_PREFIX}): {e}"))?;
        Ok(Stores { database_url, redis_url, layout })
    }
}

impl CorrectArgs {
    /// The correction settings.
    pub fn settings(&self) -> anyhow::Result<CorrectSettings> {
        Ok(CorrectSettings { stores: self.stores.stores()?, file: self.file.clone(), dry_run: self.dry_run })
    }
}

impl DataArgs {
    /// The data-set specification.
    pub fn spec(&self) -> anyhow::Result<DatasetSpec> {
        DatasetSpec::with_first_id(self.seed, self.students, self.first_id)
            .map_err(|e| anyhow::anyhow!("SEEDER_STUDENTS, SEEDER_FIRST_ID: {e}"))
    }
}

impl ImportArgs {
    /// The import settings.
    pub fn settings(&self) -> anyhow::Result<ImportSettings> {
        Ok(ImportSettings {
            stores: self.stores.stores()?,
            input: Input::from_arg(&self.file),
            force: self.how.force,
            discard_corrections: self.how.discard_corrections,
            pg_connections: usize::from(self.how.pg_connections),
            progress: self.how.progress,
            factor_key: self.how.factor_key()?,
        })
    }
}

impl LoadArgs {
    /// The load settings.
    pub fn settings(&self) -> anyhow::Result<LoadSettings> {
        Ok(LoadSettings {
            stores: self.stores.stores()?,
            spec: self.data.spec()?,
            force: self.how.force,
            pg_connections: usize::from(self.how.pg_connections),
            progress: self.how.progress,
            pins: match (self.pins, self.how.factor_key()?) {
                (false, _) => None,
                (true, Some(key)) => Some(key),
                (true, None) => {
                    anyhow::bail!("--pins (SEEDER_PINS) needs FACTOR_KEY: the stores hold only keyed hashes")
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_names_the_log_variables_the_shared_ones_and_the_interrupted_status() {
        let help = Cli::command().render_long_help().to_string();
        for fact in [
            LOG_VAR,
            results_core::env::RUST_LOG,
            results_core::env::DEFAULT_LOG_FILTER,
            SHARED_KEY_PREFIX,
            SHARED_STUDENTS,
            &format!("{EXIT_INTERRUPTED} interrupted"),
        ] {
            assert!(help.contains(fact), "seeder --help names {fact}:\n{help}");
        }
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_flags_mean_load() {
        let cli = Cli::try_parse_from(["seeder", "--students", "10000", "--force"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.load.data.students, 10_000);
        assert!(cli.load.how.force);
        assert!(Cli::try_parse_from(["seeder", "--students", "0"]).is_err());
        assert!(Cli::try_parse_from(["seeder", "--students", "1000000000"]).is_err());
        let cli = Cli::try_parse_from(["seeder", "--first-id", "1"]).expect("parses");
        assert_eq!(cli.load.data.spec().expect("valid").ids(), 1..=DEFAULT_STUDENTS);
        assert!(Cli::try_parse_from(["seeder", "--first-id", "0"]).is_err());
        let cli = Cli::try_parse_from(["seeder", "--first-id", "999999999", "--students", "2"]).expect("parses");
        assert!(cli.load.data.spec().is_err(), "past the largest registration number");
        assert!(Cli::try_parse_from(["seeder", "--discard-corrections"]).is_err(), "only with --force");
    }

    #[test]
    fn import_takes_a_file_or_stdin_and_export_needs_an_output() {
        let cli = Cli::try_parse_from(["seeder", "import", "--file", "-"]).expect("parses");
        let Some(Command::Import(args)) = cli.command else { panic!("expected import") };
        assert_eq!(Input::from_arg(&args.file), Input::Stdin);
        assert!(Cli::try_parse_from(["seeder", "import"]).is_err(), "--file is required");
        assert!(Cli::try_parse_from(["seeder", "import", "--file", "a", "--discard-corrections"]).is_err());
        assert!(Cli::try_parse_from(["seeder", "export"]).is_err(), "an output is required");
        assert!(Cli::try_parse_from(["seeder", "export", "--file", "a", "--ids-file", "b"]).is_ok());
        assert!(Cli::try_parse_from(["seeder", "export", "--dir", "d", "--file", "a"]).is_err());
    }

    #[test]
    fn correct_takes_a_file() {
        let cli = Cli::try_parse_from(["seeder", "correct", "--file", "fix.csv", "--dry-run"]).expect("parses");
        let Some(Command::Correct(args)) = cli.command else { panic!("expected correct") };
        assert_eq!(args.file, PathBuf::from("fix.csv"));
        assert!(args.dry_run);
        assert!(Cli::try_parse_from(["seeder", "correct"]).is_err(), "--file is required");
    }
}
