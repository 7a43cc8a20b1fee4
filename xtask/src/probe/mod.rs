//! Raw-socket clients that attack our own edge, on loopback only, bounded in count and time:
//! `cargo xtask slowloris` (the drill's slow clients, scripts/drill.sh) and `cargo xtask
//! raw-http send | idle` (the hostile test's raw requests, scripts/tests/hostile_test.sh; curl
//! and most clients normalise paths, methods and headers, so these speak raw TCP).
//!
//! - [`wire`]: the pure parts (targets, request bytes, answers, printed lines), unit-tested.
//! - [`socket`]: the socket work.

pub mod socket;
pub mod wire;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

fn run_seconds(value: &str) -> Result<f64, String> {
    wire::seconds_up_to(value, wire::MAX_SECONDS)
}

fn interval_seconds(value: &str) -> Result<f64, String> {
    wire::seconds_up_to(value, wire::MAX_INTERVAL)
}

/// `cargo xtask slowloris`.
#[derive(Debug, clap::Args)]
pub struct SlowlorisArgs {
    /// The target's address: a loopback IP only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The target's port (the edge's public port in the drill).
    #[arg(long)]
    pub port: u16,
    /// Connections held at once (1..2000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=wire::MAX_CONNECTIONS))]
    pub connections: u16,
    /// Seconds between two header lines of a connection (0 < S <= 60).
    #[arg(long, default_value = "2", value_parser = interval_seconds)]
    pub interval: f64,
    /// Seconds the run lasts (0 < S <= 600).
    #[arg(long, default_value = "10", value_parser = run_seconds)]
    pub duration: f64,
    /// The request's path.
    #[arg(long, default_value = "/v1/results/1000000")]
    pub path: String,
}

/// `cargo xtask raw-http ...`: the target is always 127.0.0.1.
#[derive(Debug, Subcommand)]
pub enum RawHttpCommand {
    /// Send the request on stdin (Python bytes escapes decoded: \r \n \x00 ..., so rows stay
    /// printable) and print the status code of the first response (or `closed` when the server
    /// closed without answering, `timeout` when a read waited TIMEOUT s, `noline` when bytes
    /// came without an HTTP/1.x status line, e.g. an HTTP/0.9 body), a tab, the seconds until
    /// that answer. Exit status 1 when the connection cannot be made.
    Send {
        /// The port on 127.0.0.1.
        port: u16,
        /// Seconds a read may wait (0 < S <= 600).
        #[arg(value_parser = run_seconds)]
        timeout: f64,
    },
    /// Open COUNT connections that send nothing and print how many the server closed within
    /// TIMEOUT s, a tab, the seconds until the last one was closed.
    Idle {
        /// The port on 127.0.0.1.
        port: u16,
        /// Connections (1..1000).
        #[arg(value_parser = clap::value_parser!(u16).range(1..=wire::MAX_IDLE))]
        count: u16,
        /// Seconds to wait for them all (0 < S <= 600).
        #[arg(value_parser = run_seconds)]
        timeout: f64,
    },
}

/// Runs `slowloris` and prints its one JSON line; exit status 1 (and the error on stderr) when
/// the target is refused or the sockets fail.
pub fn slowloris(args: &SlowlorisArgs) -> ExitCode {
    report("slowloris", run_slowloris(args))
}

/// Runs `raw-http send` or `raw-http idle` and prints its line; exit status 1 (and the error on
/// stderr) when the connections cannot be made.
pub fn raw_http(command: &RawHttpCommand) -> ExitCode {
    report("raw-http", run_raw_http(command))
}

fn report(who: &str, outcome: Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{who}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_slowloris(args: &SlowlorisArgs) -> Result<()> {
    if !wire::is_loopback(&args.host) {
        bail!("--host {} is not a loopback address: this tool only attacks our own stack", args.host);
    }
    let ip: IpAddr = args.host.parse().with_context(|| format!("--host {}", args.host))?;
    let plan = socket::SlowPlan {
        addr: SocketAddr::new(ip, args.port),
        connections: usize::from(args.connections),
        interval: Duration::from_secs_f64(args.interval),
        duration: Duration::from_secs_f64(args.duration),
        path: args.path.clone(),
    };
    let stats = socket::slowloris(&plan).context("slowloris")?;
    println!("{}", stats.to_json());
    Ok(())
}

fn run_raw_http(command: &RawHttpCommand) -> Result<()> {
    let line = match *command {
        RawHttpCommand::Send { port, timeout } => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).context("reading the request from stdin")?;
            let raw = wire::unescape(&input).map_err(|e| anyhow::anyhow!("the request on stdin has {e}"))?;
            socket::send(port, timeout, &raw).with_context(|| format!("connecting to 127.0.0.1:{port}"))?
        }
        RawHttpCommand::Idle { port, count, timeout } => socket::idle(port, usize::from(count), timeout)
            .with_context(|| format!("opening {count} connections to 127.0.0.1:{port}"))?,
    };
    println!("{line}");
    Ok(())
}
