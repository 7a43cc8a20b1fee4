//! The API binary: parses the configuration, binds both listeners, runs until SIGTERM or SIGINT.
//! See `api --help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use api::config::Args;
use api::config::LOG_VAR;
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(results_core::env::log_filter(LOG_VAR))
                .unwrap_or_else(|_| EnvFilter::new(results_core::env::DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let public =
        TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on API_LISTEN={}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on API_ADMIN_LISTEN={}", args.admin_listen))?;
    tracing::info!(public = %args.listen, admin = %args.admin_listen, "listening");
    api::startup::run(settings, public, admin, shutdown_signal()).await
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the API");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
