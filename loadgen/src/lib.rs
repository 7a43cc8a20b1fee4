//! The load generator's engine: result-day load tests against the results API, built on goose.
//! `main.rs` parses the command line and calls [`run`]; tests drive [`attack::run`] and
//! [`capacity::run`] directly against an API spawned in-process. What a run leaves behind (its
//! latency histograms, summary and gates, merges, charts) is made by the `loadgen-report` crate.
//!
//! - [`config`]: the command line: goose's flags plus this project's `LOADGEN_…` options.
//! - [`request`]: the requests made, named by route template (shared vocabulary).
//! - [`failure`]: why a request failed: kinds and body mismatches (shared vocabulary).
//! - [`ids`]: which IDs users ask for, from the data set's specification alone (no database).
//! - [`validate`]: cheap checks of every response body (the requested student, the error envelope).
//! - [`scenarios`]: the kinds of users, one file each, and the checked request they share.
//! - [`client`]: the users' HTTP clients (one shared pool, idle connections closed before the server does).
//! - [`recorder`]: every request's latency into HdrHistograms per worker shard, for the run folder.
//! - [`live`]: the client-side Prometheus `/metrics` endpoint and the progress line.
//! - [`attack`]: one load test: goose's defaults, the users' clients, execute, summarise.
//! - [`capacity`]: steps of growing user counts, each a load test.
//! - [`limits`]: the open-file limit thousands of users need.
//! - [`error`]: [`LoadgenError`] and the exit statuses.
//!
//! Module graph (no cycles): the leaves `error`, `request`, `failure`, `ids`, `limits`; then
//! `validate`, `config`, `live`, `recorder`, `client`; `scenarios` on those; `attack` on
//! `scenarios`; `capacity` on `attack`; [`run`], here, at the top.

pub mod attack;
pub mod capacity;
pub mod client;
pub mod config;
pub mod error;
pub mod failure;
pub mod ids;
pub mod limits;
pub mod live;
pub mod recorder;
pub mod request;
pub mod scenarios;
pub mod validate;

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Cli, Command, Listen, Options};
pub use crate::error::{EXIT_FAILED, EXIT_SLO_MISSED, LoadgenError};
use crate::live::Live;

/// Starts the live `/metrics` endpoint when `options` ask for one; returns its address.
pub async fn start_metrics(
    options: &Options,
    live: &Arc<Live>,
    stop: &CancellationToken,
) -> Option<std::net::SocketAddr> {
    let Listen::At(addr) = options.metrics_listen else { return None };
    let listener = live::bind(addr).await?;
    let bound = listener.local_addr().ok();
    let server = Arc::clone(live).serve(listener, stop.clone());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            eprintln!("loadgen: warning: the metrics endpoint stopped: {e}");
        }
    });
    bound
}

/// Runs what the command line asks for and returns the process's exit status.
///
/// # Errors
/// What stops a run before its verdict ([`LoadgenError`]).
pub async fn run(cli: Cli) -> Result<ExitCode, LoadgenError> {
    if cli.run.goose.version {
        println!("{}", config::version_line());
        return Ok(ExitCode::SUCCESS);
    }
    let live = Live::new()?;
    let stop = CancellationToken::new();
    let result = match cli.command {
        None => {
            let args = cli.run;
            let users = args.goose.users.unwrap_or(config::DEFAULT_USERS);
            config::refuse_debug_load(cfg!(debug_assertions), users, args.options.allow_debug_build)?;
            limits::raise_open_files(users);
            if let Some(addr) = start_metrics(&args.options, &live, &stop).await {
                eprintln!("loadgen: live metrics on http://{addr}/metrics");
            }
            let summary = attack::run(&args, &live, None).await?;
            print!("{}", summary.render());
            if summary.verdict.passed() || args.options.gates.no_slo_exit {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_SLO_MISSED)
            }
        }
        Some(Command::Capacity(args)) => {
            let most_users = args.steps.iter().copied().max().unwrap_or(0);
            config::refuse_debug_load(cfg!(debug_assertions), most_users, args.run.options.allow_debug_build)?;
            limits::raise_open_files(most_users);
            if let Some(addr) = start_metrics(&args.run.options, &live, &stop).await {
                eprintln!("loadgen: live metrics on http://{addr}/metrics");
            }
            let curve = capacity::run(&args, &live).await?;
            print!("{}", curve.render());
            ExitCode::SUCCESS
        }
        Some(Command::Merge(args)) => {
            let report = loadgen_report::merge::run(&args.dirs, args.out.as_deref(), &args.gates.slo())?;
            print!("{}", report.render());
            if report.summary.verdict.passed() || args.gates.no_slo_exit {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_SLO_MISSED)
            }
        }
        Some(Command::Timeline(args)) => {
            loadgen_report::timeline::run(&args.series, &args.phases, &args.out, &args.title)?;
            println!("timeline: {}", args.out.display());
            ExitCode::SUCCESS
        }
    };
    stop.cancel();
    Ok(result)
}
