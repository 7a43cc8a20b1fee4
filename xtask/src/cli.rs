//! The command line (every command, as docs/reference/xtask.md shows it): parses, loads the
//! configuration, runs, and maps the outcome to an exit status (1 on an error, 3 when `status`
//! finds a chosen service down).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, Environment, EnvironmentWithServices};
use crate::facts::{API_DRAIN_DELAY_MS, VARIABLES};
use crate::{apt, bench, reference, stack};

/// The project's automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the native stack: our own PostgreSQL, Redis, API replicas, NGINX, Prometheus and
    /// exporters as local processes on loopback ports, data under $STACK_DIR.
    #[command(subcommand)]
    Stack(StackCommand),
    /// Install Debian packages with apt-get, keeping their maintainer scripts from starting
    /// system services (a temporary policy-rc.d). Needs root.
    Install {
        /// The packages.
        #[arg(required = true)]
        packages: Vec<String>,
    },
    /// The project's test command (scripts/test.sh runs it): the stack's PostgreSQL and Redis
    /// up, leftovers of earlier runs swept (seedtest_* databases, t-* keys, ro-* Redis users),
    /// every test built once, then the suites --jobs at a time, the longest first: each test
    /// binary (run as `cargo test` runs it), the doc tests, each scripts/tests/*_test.sh. Each
    /// suite's output is printed whole when it ends (and kept in target/test-logs/). Ends with a
    /// table of wall times and a tally; exit status 1 when a suite failed.
    Test(crate::suite::Args),
    /// Regenerate the configuration reference, docs/reference/<binary>.md, from each binary's
    /// --help (builds the debug binaries first). The binaries' tests fail while a page is stale.
    Reference,
    /// The result-day capacity model: API replicas, NGINX nodes, Redis primaries and memory
    /// from docs/bench/*.json and docs/capacity-*.csv. Prints the generated section of
    /// docs/capacity-model.md, or writes (--write) or checks (--check) it there. Exit status 1
    /// when --check finds the doc stale, 2 when an input is missing or malformed.
    CapacityModel(crate::capacity::Args),
    /// Run a benchmark: the system against the ceiling of its own shape on this machine, RUNS
    /// rounds, medians printed and written to docs/bench/<name>.json (BENCH_RESULT_FILE), every
    /// file of the run under runs/bench-<name>/<UTC time>/.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Slow clients against our own edge (loopback only): CONNECTIONS connections each send a
    /// request line and then one header line every INTERVAL s, never the blank line that ends
    /// the head. Those the server cuts are replaced (at most 20 x CONNECTIONS attempts); after
    /// DURATION s all are closed and one JSON line printed: opened, cut_by_server, answered (the
    /// status codes seen, e.g. {"408": 3}), longest_s (the longest a connection lived before the
    /// server cut it), held_at_end, errors (connects refused or reset) and oldest_held_s (the
    /// oldest of those held at the end). scripts/drill.sh's slowloris phase.
    Slowloris(crate::probe::SlowlorisArgs),
    /// Raw HTTP requests to 127.0.0.1 (curl normalises paths, methods and headers): the hostile
    /// test's rows (scripts/tests/hostile_test.sh).
    #[command(subcommand)]
    RawHttp(crate::probe::RawHttpCommand),
    /// Fuzz everything that decodes untrusted bytes (the targets in fuzz/) with libFuzzer via
    /// cargo-fuzz (installed when missing), one target after another; prints per target the
    /// runs, exec/s, coverage (cov edges, ft features), corpus and any crash with its input
    /// file. Summary and logs in runs/fuzz/<UTC time>/. Exit status 1 when a target found
    /// something, 2 on a usage or build error.
    #[command(after_long_help = crate::fuzz::variables_help())]
    Fuzz {
        /// Seconds each target runs.
        #[arg(default_value_t = crate::fuzz::DEFAULT_SECONDS, value_parser = clap::value_parser!(u32).range(1..=999_999))]
        seconds_per_target: u32,
    },
    /// Set each ?v= in web/index.html to the first 12 hex digits of the asset's SHA-256 (run it
    /// after editing web/app.js or web/style.css: NGINX lets browsers keep the assets a year).
    StampWeb {
        /// Change nothing; exit status 1 when a stamp is stale.
        #[arg(long)]
        check: bool,
    },
    /// List the dependencies a crate declares and never uses, and [workspace.dependencies] no
    /// crate inherits (cargo-machete's check; a test runs it in CI). Exit status 1 when any.
    UnusedDeps {
        /// The workspace's folder [default: this repository]
        #[arg(long, value_name = "DIR")]
        root: Option<std::path::PathBuf>,
    },
}

/// `cargo xtask bench ...`: each takes the rounds as its argument (default 3).
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The seeder (generate + PostgreSQL + Redis) against `psql \copy` of the same rows
    /// (PostgreSQL only), and the Redis memory the results take. Starts the stack's pg and
    /// redis if needed; fresh databases and key prefixes per run, checked by `seeder verify`.
    Seed(Runs),
    /// One API replica (and one with API_NEAR_CACHE_MB=0) against a private NGINX serving a
    /// static file of the same size, wrk over random valid IDs; then a CPU flamegraph from the
    /// admin port. Needs the stack's PostgreSQL and Redis up.
    Api(Runs),
    /// An NGINX edge (nginx/render.sh) in front of three API replicas, micro-cache off and on,
    /// against the same edge in front of a static upstream. Needs the stack's PostgreSQL and
    /// Redis up.
    Stack(Runs),
    /// `seeder import` of a results file against `psql \copy` of the same file into a
    /// staging table, and the import's peak RSS (/usr/bin/time) as the file grows; a private
    /// redis-server on a free port.
    Import(Runs),
    /// Write a benchmark's result JSON (medians per target, as the benchmarks write it) from a
    /// runs.csv: an earlier run's, or sample figures in a test.
    Result {
        /// The benchmark's name, e.g. stack.
        #[arg(long)]
        bench: String,
        /// The runs.csv.
        #[arg(long)]
        csv: std::path::PathBuf,
        /// The JSON file to write (whole or not at all).
        #[arg(long)]
        out: std::path::PathBuf,
        /// The command that measured it.
        #[arg(long, default_value = "")]
        command: String,
        /// KEY=VALUE, repeatable; values that read as numbers are written as numbers.
        #[arg(long)]
        meta: Vec<String>,
    },
}

/// The rounds of a benchmark.
#[derive(Debug, clap::Args)]
pub struct Runs {
    /// Rounds (medians are taken over them).
    #[arg(default_value_t = bench::DEFAULT_RUNS, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
}

/// `cargo xtask stack ...`.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Start the services chosen by STACK_SERVICES (default: all but the opt-in ones).
    /// Installs missing Debian packages (needs root), creates the PostgreSQL cluster on first
    /// use, creates the application role and database, starts the API replicas after the
    /// stores, waits until everything answers and prints where it runs. Idempotent: whatever
    /// already runs is left alone (NGINX is reloaded when its settings changed, Prometheus
    /// re-reads its configuration).
    Up,
    /// Stop everything of ours that runs, in reverse order: Prometheus and the exporters,
    /// NGINX (graceful quit), the API replicas (SIGTERM, they drain; SIGKILL after
    /// STACK_TIMEOUT), Redis (it saves its snapshot) and PostgreSQL (fast shutdown). Data is
    /// kept. Ignores STACK_SERVICES. Idempotent.
    Down {
        /// Then delete $STACK_DIR entirely (only a folder this tool created).
        #[arg(long)]
        purge: bool,
    },
    /// Stop only these services (names as in STACK_SERVICES: pg, redis, api, apiN, nginx,
    /// exporters, prometheus ...), the same way as down, in reverse start order; the rest
    /// keeps running. `up` with STACK_SERVICES=SERVICE starts one again (scripts/drill.sh).
    Stop {
        /// The services to stop.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// One line per service: running/stopped, pid, address and what it reports. Exit status 0
    /// when every service chosen by STACK_SERVICES runs, 3 otherwise.
    Status,
    /// Print the last lines of the services' logs ($STACK_DIR/log): the named services, or
    /// those STACK_SERVICES chooses.
    Logs {
        /// Lines per log file.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// The services (names as in STACK_SERVICES).
        services: Vec<String>,
    },
    /// Print `export KEY='value'` lines for DATABASE_URL, REDIS_URL, DATABASE_REPLICA_URLS
    /// (while the read replica runs), API_URLS, PUBLIC_URL and PROMETHEUS_URL, whether or not
    /// the stack is up: eval "$(cargo xtask stack env)".
    Env,
}

/// The environment variables, their defaults and what they set: generated from `facts`.
pub fn variables_help() -> String {
    let mut text = String::from("Environment variables [default]:\n");
    for v in VARIABLES {
        let default = if v.default.is_empty() { String::new() } else { format!("[{}] ", v.default) };
        let _ = writeln!(text, "  {}\n      {default}{}", v.name, v.help);
    }
    let _ = write!(
        text,
        "\nEach API replica gets DATABASE_URL and REDIS_URL as 'env' prints them (and \
         DATABASE_REPLICA_URLS while the read replica runs), API_LISTEN and API_ADMIN_LISTEN on \
         STACK_HOST, API_KEY_PREFIX, API_DRAIN_DELAY_MS={API_DRAIN_DELAY_MS} and \
         API_WORKER_THREADS (1 unless set); other API_* variables of the environment of 'up' \
         pass through.\n\nFiles: settings in redis/redis.conf, postgres/postgresql.conf, \
         nginx/nginx.conf.template (rendered by nginx/render.sh) and prometheus/ of the \
         repository. Logs in $STACK_DIR/log (postgres.log, postgres-replica.log, redis.log, \
         redis-cluster-PORT.log, apiN.log, nginx.log, <exporter>.log, prometheus.log), pid \
         files in $STACK_DIR/run. As root, PostgreSQL runs as the 'postgres' system user. Only \
         processes found through our own pid files and data folders are ever stopped. To run a \
         second stack side by side, give it its own STACK_DIR and ports, and pass the same \
         variables to its 'down'.\n"
    );
    text
}

fn command() -> clap::Command {
    Cli::command().mut_subcommand("stack", |s| s.after_long_help(variables_help())).mut_subcommand("bench", |b| {
        b.mut_subcommand("seed", |s| s.after_long_help(bench::variables_help(bench::seed::VARIABLES)))
            .mut_subcommand("api", |s| s.after_long_help(bench::variables_help(bench::api::VARIABLES)))
            .mut_subcommand("stack", |s| s.after_long_help(bench::variables_help(bench::stack::VARIABLES)))
            .mut_subcommand("import", |s| s.after_long_help(bench::variables_help(bench::import::VARIABLES)))
    })
}

/// Parses the arguments, runs the command, and returns the process' exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let who = match cli.command {
        Command::Bench(_) => "bench",
        Command::Test(_) => "test",
        _ => "stack",
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{who}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(services: Option<&[String]>) -> Result<Config> {
    let cwd = std::env::current_dir()?;
    match services {
        None => Config::load(&Environment, &cwd),
        Some(names) => Config::load(&EnvironmentWithServices(names.join(" ")), &cwd),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::CapacityModel(args) => return Ok(crate::capacity::main(args)),
        Command::Slowloris(args) => return Ok(crate::probe::slowloris(&args)),
        Command::RawHttp(command) => return Ok(crate::probe::raw_http(&command)),
        Command::Fuzz { seconds_per_target } => return Ok(crate::fuzz::main(seconds_per_target)),
        Command::StampWeb { check } => return Ok(crate::stamp_web::main(check)),
        Command::UnusedDeps { root } => return Ok(crate::deps::main(root.as_deref())),
        Command::Install { packages } => {
            let missing: Vec<String> = packages.into_iter().filter(|p| !crate::supervise::have(p)).collect();
            apt::install(&missing)?;
        }
        Command::Test(args) => return crate::suite::main(&args),
        Command::Reference => reference::write_all()?,
        Command::Bench(which) => {
            bench::host::stop_children_on_signal()?;
            let vars = bench::ProcessEnv;
            match which {
                BenchCommand::Seed(r) => bench::seed::run(&vars, r.runs)?,
                BenchCommand::Api(r) => bench::api::run(&vars, r.runs)?,
                BenchCommand::Stack(r) => bench::stack::run(&vars, r.runs)?,
                BenchCommand::Import(r) => bench::import::run(&vars, r.runs)?,
                BenchCommand::Result { bench: name, csv, out, command, meta } => {
                    bench::result_from_csv(&name, &csv, &out, &command, &meta)?;
                }
            }
        }
        Command::Stack(StackCommand::Up) => stack::up(&load(None)?)?,
        Command::Stack(StackCommand::Down { purge }) => stack::down(&load(None)?, purge)?,
        Command::Stack(StackCommand::Stop { services }) => stack::stop_selected(&load(Some(&services))?)?,
        Command::Stack(StackCommand::Logs { lines, services }) => {
            let named = (!services.is_empty()).then_some(services.as_slice());
            stack::logs(&load(named)?, lines)?;
        }
        Command::Stack(StackCommand::Env) => stack::env(&load(None)?)?,
        Command::Stack(StackCommand::Status) => {
            if !stack::status(&load(None)?)? {
                return Ok(ExitCode::from(stack::STATUS_NOT_RUNNING));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
