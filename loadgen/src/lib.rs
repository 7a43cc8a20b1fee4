//! The load generator: result-day load tests against the results API, built on goose.
//! `main.rs` parses the command line and calls [`run`]; tests drive [`attack::run`] and
//! [`capacity::run`] directly against an API spawned in-process.
//!
//! - [`config`]: goose's flags plus this project's `LOADGEN_…` options (data set, mix, SLO, output).
//! - [`ids`]: which IDs users ask for, from the data set's specification alone (no database).
//! - [`scenarios`]: the kinds of users, one file each, and the checked request they share.
//! - [`validate`]: cheap checks of every response body (the requested student, the error envelope).
//! - [`attack`]: one load test: goose's defaults, the users' clients, execute, summarise.
//! - [`client`]: the users' HTTP clients (one shared pool, idle connections closed before the server does).
//! - [`summary`]: figures (coordinated-omission corrected), SLO gates, the one-screen summary.
//! - [`live`]: the client-side Prometheus `/metrics` endpoint and the progress line.
//! - [`histogram_log`]: every request's latency in HdrHistogram form, written into the run folder.
//! - [`merge`]: `loadgen merge`: several generators' runs as one exact report.
//! - [`capacity`]: steps of growing user counts, recorded to CSV.
//! - [`chart`]: the capacity curve PNG (plotters, bundled font) with the SLO knee marked.
//! - [`limits`]: the open-file limit thousands of users need.
//! - [`timeline`]: the result-day drill's timeline PNG (`loadgen timeline`, `scripts/drill.sh`).

pub mod attack;
pub mod capacity;
pub mod chart;
pub mod client;
pub mod config;
pub mod histogram_log;
pub mod ids;
pub mod limits;
pub mod live;
pub mod merge;
pub mod scenarios;
pub mod summary;
pub mod timeline;
pub mod validate;

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Cli, Command, Listen, Options};
use crate::live::Live;

/// Exit status of a run that missed an SLO gate or a goose threshold.
pub const EXIT_SLO_MISSED: u8 = 1;
/// Exit status of a run that could not happen (configuration, I/O).
pub const EXIT_FAILED: u8 = 2;

/// Everything that stops the load generator before or instead of a verdict.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A refused option.
    #[error("configuration: {0}")]
    Config(String),
    /// goose refused the configuration or could not run.
    #[error("goose: {0}")]
    Goose(String),
    /// The metrics recorder could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A file could not be written.
    #[error("{0}")]
    Io(String),
    /// The capacity chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// Run folders that cannot be read or do not merge exactly.
    #[error("merge: {0}")]
    Merge(String),
}

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
    let live = Live::new()?;
    let stop = CancellationToken::new();
    let result = match cli.command {
        None => {
            let args = cli.run;
            limits::raise_open_files(args.goose.users.unwrap_or(config::DEFAULT_USERS));
            if let Some(addr) = start_metrics(&args.options, &live, &stop).await {
                eprintln!("loadgen: live metrics on http://{addr}/metrics");
            }
            let summary = attack::run(&args, &live, None).await?;
            print!("{}", summary.render());
            if summary.verdict.passed() || args.options.no_slo_exit {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_SLO_MISSED)
            }
        }
        Some(Command::Capacity(args)) => {
            limits::raise_open_files(args.steps.iter().copied().max().unwrap_or(0));
            if let Some(addr) = start_metrics(&args.run.options, &live, &stop).await {
                eprintln!("loadgen: live metrics on http://{addr}/metrics");
            }
            let curve = capacity::run(&args, &live).await?;
            print!("{}", curve.render());
            ExitCode::SUCCESS
        }
        Some(Command::Merge(args)) => {
            let report = merge::run(&args)?;
            print!("{}", report.render());
            if report.summary.verdict.passed() || args.no_slo_exit {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_SLO_MISSED)
            }
        }
        Some(Command::Timeline(args)) => {
            println!("timeline: {}", timeline::run(&args)?.display());
            ExitCode::SUCCESS
        }
    };
    stop.cancel();
    Ok(result)
}
