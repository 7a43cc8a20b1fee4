//! Command line and environment: goose's own flags (flattened, so `--users`, `--run-time`,
//! `--report-file`, `--co-mitigation`, `--throttle-requests`… work as goose documents them) plus
//! this project's options, each with a `LOADGEN_…` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use goose::config::GooseConfiguration;
use results_core::env::{SHARED_STUDENTS, shared_or};
use results_core::{DEFAULT_FIRST_ID, DEFAULT_SEED, DEFAULT_STUDENTS, DatasetSpec};

use loadgen_report::summary::Slo;

use crate::error::LoadgenError;
use crate::ids::IdSpace;

/// Where a bare `cargo run -p loadgen` sends its requests: the native stack's NGINX.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:8080";
/// Client addresses of the default run: 10,000 users (the capacity tests' top) make ~40 per
/// address, a school's NAT, at 1-3 s think time ~20 lookups/s: within NGINX's default
/// per-address limit (50/s, docs/edge.md).
pub const DEFAULT_SOURCE_ADDRESSES: u32 = 256;
/// At most 127.1.0.1 .. 127.1.255.255.
pub const MAX_SOURCE_ADDRESSES: i64 = 65_535;
/// Users of the default run.
pub const DEFAULT_USERS: usize = 300;
/// Users started per second by default (the default run ramps up in 3 s).
pub const DEFAULT_INCREASE_RATE: &str = "100";
/// How long the default run holds all its users, seconds.
pub const DEFAULT_RUN_TIME_S: usize = 20;
/// Per-request timeout, seconds: far beyond any SLO, short enough that a hung server shows.
pub const DEFAULT_TIMEOUT_S: &str = "10";
/// The most users a debug build runs without --allow-debug-build: the tests' and the short
/// drill's sizes. Above it an unoptimised generator's own CPU skews what it measures (3,000 users:
/// 5.2x release's CPU per request, p95 doubled; issue 17).
pub const DEBUG_BUILD_MAX_USERS: usize = 200;

/// goose's defaults this load generator changes (its own help shows goose's).
const AFTER_HELP: &str = "Defaults changed from goose's: --host http://127.0.0.1:8080, --users 300, \
--increase-rate 100, --run-time 20, --timeout 10, --co-mitigation average, -q (goose's per-user \
log lines; -v brings them back), --report-file and --error-log into the run folder \
(report.html, report.json, errors.json), telnet controller off (--telnet), --version prints \
loadgen's version. A debug build (cargo run without --release) refuses more than 200 users \
unless --allow-debug-build: type cargo run --release -p loadgen -- ... Exit status: 0 every \
SLO gate met, 1 a gate or goose --threshold missed, 2 the run could not happen.";

/// Result-day load tests against the results API, built on goose.
///
/// A bare `loadgen` runs a short result-day test (300 users, 20 s) against the native stack's
/// NGINX at http://127.0.0.1:8080, checks every response, prints a one-screen summary, writes
/// goose's HTML and JSON reports under runs/loadgen/<time>/ and exits non-zero when an SLO gate
/// (p95, p99, error ratio) is missed. The summary and its gates read the run's own latency
/// histograms (HdrHistogram, latency.hlog), as `loadgen merge` does, so the merge of a run
/// reports that run's figures exactly. Percentiles are corrected for coordinated omission at
/// goose's per-user cadence (--co-mitigation average) unless `--co-mitigation disabled` is given.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to run instead of one load test.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The load test's options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per process: boxing buys nothing")]
pub enum Command {
    /// Capacity curve: steps of growing user counts, each bounded in time; CSV and PNG.
    ///
    /// Runs one load test per step (each with its own goose reports in a step folder), records
    /// throughput, coordinated-omission-corrected percentiles and errors to capacity.csv, and
    /// draws capacity.png: latency percentiles against offered load, the SLO limits as lines and
    /// the knee (the first step that misses an SLO gate) marked. Goose's --users, --run-time and
    /// --increase-rate are set per step. Exits 0 even when steps miss the SLO (finding the knee
    /// is the point), non-zero only when a step could not run.
    Capacity(CapacityArgs),
    /// Merge runs of several load generators (one machine or many) into one exact report.
    ///
    /// Every run writes its latency histograms (HdrHistogram, µs, 3 significant digits) into its
    /// folder as latency.hlog with latency.json. merge adds them into exact percentiles, prints the
    /// one-screen summary of the whole, and writes it with merge.json, merge.md, percentiles.png
    /// and the merged histograms (so merges merge again) into --out. Throughput is all requests over
    /// the union of the runs' measured windows. Latency is given raw (every measured request once)
    /// and corrected (plus HdrHistogram's coordinated-omission backfill at goose's per-user
    /// cadence); the gates judge the corrected one, as a run's do. Runs against another data set,
    /// with another --co-mitigation or other histogram settings are refused. Exit status: 0 every
    /// SLO gate met, 1 a gate missed, 2 an input refused.
    Merge(MergeArgs),
    /// The result-day drill's timeline PNG from its CSVs (scripts/drill.sh writes them).
    ///
    /// Three panels on one time axis: client req/s with PostgreSQL lookups/s, client p99
    /// (log scale) and failed requests/s, each drill phase shaded and labelled (a missed expected
    /// outcome in red). Sends no request.
    Timeline(TimelineArgs),
}

/// Options of `loadgen merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Run folders to merge, each holding latency.hlog and latency.json (a merge's --out folder is
    /// one too)
    #[arg(required = true, value_name = "RUN_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Folder of the merged report and histograms [default: a fresh runs/loadgen/merged/<UTC time>/]
    #[arg(long, env = "LOADGEN_MERGE_OUT", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The SLO gates, as for a run.
    #[command(flatten)]
    pub gates: SloArgs,
}

/// Options of `loadgen timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The series CSV: seconds,rps,p99_ms,failed_per_s,db_per_s (one row per sample)
    #[arg(long, value_name = "FILE")]
    pub series: PathBuf,
    /// The phases CSV: name,start_s,end_s,passed (one row per phase)
    #[arg(long, value_name = "FILE")]
    pub phases: PathBuf,
    /// The PNG to write
    #[arg(long, value_name = "FILE", default_value = "timeline.png")]
    pub out: PathBuf,
    /// The title above the first panel
    #[arg(long, default_value = "Result-day drill: load through NGINX while faults play out")]
    pub title: String,
}

/// Options of `loadgen capacity`.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Users of each step, in order
    #[arg(
        long,
        env = "LOADGEN_CAPACITY_STEPS",
        value_delimiter = ',',
        default_value = "500,1000,2000,3000,5000,7500,10000",
        help_heading = "Capacity curve"
    )]
    pub steps: Vec<usize>,
    /// Seconds each step holds its users, after its ramp
    #[arg(long, env = "LOADGEN_CAPACITY_STEP_SECS", default_value_t = 20, help_heading = "Capacity curve")]
    pub step_secs: usize,
    /// Users started per second within a step
    #[arg(long, env = "LOADGEN_CAPACITY_RAMP_RATE", default_value_t = 500, help_heading = "Capacity curve")]
    pub ramp_rate: usize,
    /// Stop after the first step that misses an SLO gate
    #[arg(long, env = "LOADGEN_CAPACITY_STOP_AT_KNEE", help_heading = "Capacity curve")]
    pub stop_at_knee: bool,
    /// The load test's options, as for a single run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// One load test's options: this project's and goose's.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// This project's options.
    #[command(flatten)]
    pub options: Options,
    /// goose's own options (see goose's documentation; defaults adjusted in [`crate::attack`]).
    #[command(flatten)]
    pub goose: GooseConfiguration,
}

/// This project's options.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Students in the data set under test (IDs --first-id..--first-id+N-1), as given to the seeder.
    /// Unset: the shared RESULTS_STUDENTS (the seeder reads it too), else the default
    #[arg(long, env = "LOADGEN_STUDENTS", default_value = shared_or(SHARED_STUDENTS, &DEFAULT_STUDENTS.to_string()), help_heading = "Data set")]
    pub students: u32,
    /// The first registration number of the data set under test, as given to the seeder
    #[arg(long, env = "LOADGEN_FIRST_ID", default_value_t = DEFAULT_FIRST_ID, help_heading = "Data set")]
    pub first_id: u32,
    /// An imported data set's registration numbers, one a line, as `seeder export --ids-file`
    /// writes them; replaces --students, --first-id and --seed (hot schools are runs of
    /// consecutive IDs)
    #[arg(long, env = "LOADGEN_IDS_FILE", help_heading = "Data set")]
    pub ids_file: Option<PathBuf>,
    /// Generator seed of the data set, as given to the seeder (chooses the hot schools)
    #[arg(long, env = "LOADGEN_SEED", default_value_t = DEFAULT_SEED, help_heading = "Data set")]
    pub seed: u64,
    /// The data set requires PINs (seeder load --pins): send each student's, derived from --seed
    /// and the registration number, in the X-Second-Factor header
    #[arg(long, env = "LOADGEN_PINS", conflicts_with = "ids_file", help_heading = "Data set")]
    pub pins: bool,

    /// Weight of students looking up their own result (uniform over the seeded IDs)
    #[arg(long, env = "LOADGEN_WEIGHT_STUDENT", default_value_t = 70, help_heading = "Scenario mix")]
    pub weight_student: usize,
    /// Weight of the hot-spot mix (students of a few schools checking first)
    #[arg(long, env = "LOADGEN_WEIGHT_HOT_SPOT", default_value_t = 20, help_heading = "Scenario mix")]
    pub weight_hot_spot: usize,
    /// Weight of wrong IDs (malformed: 400 expected; unknown: 404 expected)
    #[arg(long, env = "LOADGEN_WEIGHT_WRONG_ID", default_value_t = 5, help_heading = "Scenario mix")]
    pub weight_wrong_id: usize,
    /// Weight of a harvester walking the seeded IDs in order, each once (0 by default; the
    /// drill's harvest phase runs it alone, with no think time, from one address)
    #[arg(long, env = "LOADGEN_WEIGHT_HARVEST", default_value_t = 0, help_heading = "Scenario mix")]
    pub weight_harvest: usize,
    /// Count a limit's 429 (NGINX's `rate_limited`, the API's `too_many_failed_lookups` and
    /// `too_many_tries`) as expected, not a failure (the drill's flood from one address)
    #[arg(long, env = "LOADGEN_RATE_LIMITED_OK", help_heading = "Scenario mix")]
    pub rate_limited_ok: bool,
    /// Weight of the reference design's alias path /student/{id}
    #[arg(long, env = "LOADGEN_WEIGHT_ALIAS", default_value_t = 5, help_heading = "Scenario mix")]
    pub weight_alias: usize,
    /// Percent of a student's lookups that refresh the same result instead of a new student's
    #[arg(long, env = "LOADGEN_REFRESH_PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100), help_heading = "Scenario mix")]
    pub refresh_percent: u8,
    /// Schools that check first in the hot-spot mix
    #[arg(long, env = "LOADGEN_HOT_SCHOOLS", default_value_t = 20, help_heading = "Scenario mix")]
    pub hot_schools: usize,
    /// Percent of hot-spot lookups that go to the hot schools (the rest are uniform)
    #[arg(long, env = "LOADGEN_HOT_PERCENT", default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100), help_heading = "Scenario mix")]
    pub hot_percent: u8,
    /// Shortest pause between a user's requests, ms (0 with --think-max-ms 0: no pause)
    #[arg(long, env = "LOADGEN_THINK_MIN_MS", default_value_t = 1000, help_heading = "Scenario mix")]
    pub think_min_ms: u64,
    /// Longest pause between a user's requests, ms (default pacing: one request every ~2 s)
    #[arg(long, env = "LOADGEN_THINK_MAX_MS", default_value_t = 3000, help_heading = "Scenario mix")]
    pub think_max_ms: u64,

    /// The SLO gates.
    #[command(flatten)]
    pub gates: SloArgs,

    /// Parent folder of the run folders (each run writes <dir>/<UTC time>/) unless --output-dir
    #[arg(long, env = "LOADGEN_RUNS_DIR", default_value = "runs/loadgen", help_heading = "Output")]
    pub runs_dir: PathBuf,
    /// Address of the live Prometheus /metrics endpoint, or "off"
    #[arg(long, env = "LOADGEN_METRICS_LISTEN", default_value = "127.0.0.1:9400", value_parser = parse_listen, help_heading = "Output")]
    pub metrics_listen: Listen,
    /// Seconds between live progress lines (users, req/s, p99, errors); 0 turns them off
    #[arg(long, env = "LOADGEN_PROGRESS_SECS", default_value_t = 2, help_heading = "Output")]
    pub progress_secs: u64,
    /// Label of this generator in its latency histograms (latency.json), as merged reports show it
    #[arg(long, env = "LOADGEN_GENERATOR_LABEL", default_value_t = host_name(), help_heading = "Output")]
    pub generator_label: String,
    /// Also print goose's own metric tables at the end
    #[arg(long, env = "LOADGEN_GOOSE_TABLES", help_heading = "Output")]
    pub goose_tables: bool,

    /// Give every user its own HTTP client and connection pool (like separate browsers) instead of
    /// one shared pool
    #[arg(long, env = "LOADGEN_CLIENT_PER_USER", help_heading = "HTTP client")]
    pub client_per_user: bool,
    /// Spread the users over this many client addresses, 127.1.0.1 upwards (each address its own
    /// connection pool; Linux routes all of 127.0.0.0/8 to the loopback device), so NGINX's
    /// per-address limits see a town of schools, not one huge NAT. 0: the system's choice (one
    /// address, 127.0.0.1 against a loopback host). Only for a loopback --host
    #[arg(long, env = "LOADGEN_SOURCE_ADDRESSES", default_value_t = DEFAULT_SOURCE_ADDRESSES, value_parser = clap::value_parser!(u32).range(0..=MAX_SOURCE_ADDRESSES), help_heading = "HTTP client")]
    pub source_addresses: u32,
    /// Close a pooled connection after this many idle seconds. Keep it below the server's
    /// keep-alive timeout (NGINX here: 30 s): a request sent on a connection the server is closing
    /// at that moment is reset
    #[arg(long, env = "LOADGEN_POOL_IDLE_SECS", default_value_t = 20.0, value_parser = parse_pool_idle, help_heading = "HTTP client")]
    pub pool_idle_secs: f64,
    /// Enable goose's telnet controller (off by default; it takes commands without authentication)
    #[arg(long, env = "LOADGEN_TELNET", help_heading = "Controllers")]
    pub telnet: bool,
    /// Let a debug build (`cargo run` without --release) run more than 200 users. Its figures
    /// then include the unoptimised generator's own slowness (several times release's CPU per
    /// request); `cargo run --release -p loadgen -- ...` measures the system instead
    #[arg(long, env = "LOADGEN_ALLOW_DEBUG_BUILD", help_heading = "Controllers")]
    pub allow_debug_build: bool,
}

/// Refuses a load above [`DEBUG_BUILD_MAX_USERS`] users from a debug build unless `allowed`,
/// naming the command that builds the release one. `debug_build` is `cfg!(debug_assertions)` in
/// the binary (a parameter so tests can judge both builds).
///
/// # Errors
/// [`LoadgenError::Config`] with the command to type.
pub fn refuse_debug_load(debug_build: bool, users: usize, allowed: bool) -> Result<(), LoadgenError> {
    if !debug_build || allowed || users <= DEBUG_BUILD_MAX_USERS {
        return Ok(());
    }
    Err(LoadgenError::Config(format!(
        "this is a debug build: {users} users would measure the unoptimised load generator as much as \
the system (debug builds run at most {DEBUG_BUILD_MAX_USERS} users). Type \
`cargo run --release -p loadgen -- ...` with the same options, or add --allow-debug-build \
(LOADGEN_ALLOW_DEBUG_BUILD=true) to run it anyway"
    )))
}

/// The command line: [`Cli`]'s, with goose's `--version` saying what it does here (loadgen's
/// version, not goose's: goose's flag is flattened in and [`crate::run`] answers it).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().mut_arg("version", |arg| {
        arg.help("Print loadgen's version").long_help("Prints loadgen's version, then exits.")
    })
}

/// What `--version` prints.
pub fn version_line() -> String {
    format!("loadgen {}", env!("CARGO_PKG_VERSION"))
}

impl Options {
    /// The data set under test.
    ///
    /// # Errors
    /// When the student count is zero or does not fit the ID range.
    pub fn spec(&self) -> Result<DatasetSpec, LoadgenError> {
        DatasetSpec::with_first_id(self.seed, self.students, self.first_id)
            .map_err(|e| LoadgenError::Config(format!("LOADGEN_STUDENTS, LOADGEN_FIRST_ID: {e}")))
    }

    /// The IDs to ask for: from --ids-file when given, else from the generated data set.
    ///
    /// # Errors
    /// An unreadable or invalid IDs file, or a data set that does not fit the ID range.
    pub fn ids(&self) -> Result<IdSpace, LoadgenError> {
        match &self.ids_file {
            Some(path) => IdSpace::read_list(path)
                .and_then(|ids| IdSpace::from_list(ids, self.hot_schools, self.hot_percent))
                .map_err(|e| LoadgenError::Config(format!("LOADGEN_IDS_FILE: {e}"))),
            None => Ok(IdSpace::new(self.spec()?, self.hot_schools, self.hot_percent)),
        }
    }

    /// The think time range between a user's requests.
    pub fn think_time(&self) -> (Duration, Duration) {
        let min = Duration::from_millis(self.think_min_ms);
        let max = Duration::from_millis(self.think_max_ms.max(self.think_min_ms));
        (min, max)
    }

    /// The SLO gates.
    pub fn slo(&self) -> Slo {
        self.gates.slo()
    }
}

/// The SLO gates' options, the same for a run, a capacity curve and a merge.
#[derive(Debug, Clone, Args)]
pub struct SloArgs {
    /// SLO gate: highest acceptable p95 latency, ms (coordinated-omission corrected)
    #[arg(long, env = "LOADGEN_SLO_P95_MS", default_value_t = 25.0, help_heading = "SLO gates")]
    pub slo_p95_ms: f64,
    /// SLO gate: highest acceptable p99 latency, ms (coordinated-omission corrected)
    #[arg(long, env = "LOADGEN_SLO_P99_MS", default_value_t = 50.0, help_heading = "SLO gates")]
    pub slo_p99_ms: f64,
    /// SLO gate: highest acceptable ratio of failed requests (0.001 = 0.1%; 0 = none)
    #[arg(long, env = "LOADGEN_SLO_ERROR_RATIO", default_value_t = 0.001, help_heading = "SLO gates")]
    pub slo_error_ratio: f64,
    /// Report the SLO gates but exit 0 even when one is missed
    #[arg(long, env = "LOADGEN_NO_SLO_EXIT", help_heading = "SLO gates")]
    pub no_slo_exit: bool,
}

impl SloArgs {
    /// The SLO gates.
    pub fn slo(&self) -> Slo {
        Slo { p95_ms: self.slo_p95_ms, p99_ms: self.slo_p99_ms, error_ratio: self.slo_error_ratio }
    }
}

/// This machine's host name, the default generator label.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Where the live `/metrics` endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// No endpoint.
    Off,
    /// This address (port 0: any free port).
    At(SocketAddr),
}

/// `text` as a positive, finite number of seconds (goose's `--timeout`, `--pool-idle-secs`).
pub(crate) fn positive_secs(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_pool_idle(text: &str) -> Result<f64, String> {
    positive_secs(text)
        .filter(|idle| *idle <= Duration::from_secs(3600))
        .map(|idle| idle.as_secs_f64())
        .ok_or_else(|| format!("expected seconds above 0 and at most 3600, got {text:?}"))
}

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text.eq_ignore_ascii_case("off") || text.is_empty() {
        return Ok(Listen::Off);
    }
    text.parse().map(Listen::At).map_err(|e| format!("expected host:port or \"off\": {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_positive_and_finite() {
        assert_eq!(positive_secs("10"), Some(Duration::from_secs(10)));
        assert_eq!(positive_secs(" 0.5 "), Some(Duration::from_millis(500)));
        for bad in ["0", "-1", "inf", "NaN", "ten", ""] {
            assert_eq!(positive_secs(bad), None, "{bad:?}");
        }
        assert_eq!(parse_pool_idle("3600"), Ok(3600.0));
        assert!(parse_pool_idle("3600.5").is_err());
    }

    #[test]
    fn goose_flags_and_project_flags_parse_together() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--host",
            "http://127.0.0.1:1",
            "--users",
            "3000",
            "--students",
            "2000",
            "--metrics-listen",
            "off",
        ])
        .expect("parses");
        assert_eq!(cli.run.goose.users, Some(3000));
        assert_eq!(cli.run.options.students, 2000);
        assert_eq!(cli.run.options.metrics_listen, Listen::Off);
        let cli = Cli::try_parse_from(["loadgen", "capacity", "--steps", "10,20", "--step-secs", "1"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Capacity(ref c)) if c.steps == [10, 20]));
    }

    #[test]
    fn only_a_debug_build_above_the_toy_size_without_the_flag_is_refused() {
        let toy = DEBUG_BUILD_MAX_USERS;
        assert!(refuse_debug_load(true, toy, false).is_ok());
        assert!(refuse_debug_load(true, toy + 1, true).is_ok());
        assert!(refuse_debug_load(false, 100_000, false).is_ok());
        let Err(LoadgenError::Config(why)) = refuse_debug_load(true, toy + 1, false) else { panic!("refused") };
        assert!(why.contains("cargo run --release -p loadgen -- ...") && why.contains("--allow-debug-build"), "{why}");
        let cli = Cli::try_parse_from(["loadgen", "--allow-debug-build"]).expect("parses");
        assert!(cli.run.options.allow_debug_build);
    }

    #[test]
    fn version_flag_is_answered_with_loadgens_version() {
        let help = command().render_long_help().to_string();
        assert!(help.contains("Prints loadgen's version"), "{help}");
        // The bound is written in the help text too (clap's doc comments take no constants).
        let bound = format!("more than {DEBUG_BUILD_MAX_USERS} users");
        assert_eq!(help.matches(&bound).count(), 2, "--allow-debug-build and the after-help say {bound}: {help}");
        let matches = command().try_get_matches_from(["loadgen", "--version"]).expect("parses");
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).expect("parses");
        assert!(cli.run.goose.version);
        assert_eq!(version_line(), format!("loadgen {}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn merge_gates_default_to_a_runs_and_parse_the_same_flags() {
        let run = Cli::try_parse_from(["loadgen"]).expect("parses").run.options.slo();
        let merge = Cli::try_parse_from(["loadgen", "merge", "x"]).expect("parses");
        let Some(Command::Merge(args)) = merge.command else { panic!("merge parses") };
        assert_eq!(args.gates.slo(), run);
        let strict = ["--slo-p95-ms", "1", "--slo-p99-ms", "2", "--slo-error-ratio", "0", "--no-slo-exit"];
        let run = Cli::try_parse_from(["loadgen"].into_iter().chain(strict)).expect("parses").run.options.gates;
        let merge = Cli::try_parse_from(["loadgen", "merge", "x"].into_iter().chain(strict)).expect("parses");
        let Some(Command::Merge(args)) = merge.command else { panic!("merge parses") };
        assert_eq!(args.gates.slo(), run.slo());
        assert_eq!(run.slo(), Slo { p95_ms: 1.0, p99_ms: 2.0, error_ratio: 0.0 });
        assert!(run.no_slo_exit && args.gates.no_slo_exit);
    }
}
