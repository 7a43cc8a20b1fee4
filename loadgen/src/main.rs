//! `loadgen`: parses the command line (goose's flags and `LOADGEN_…` options) and runs the load
//! test or capacity curve it asks for. Exit status: 0 all SLO gates met, 1 a gate missed, 2 the
//! run could not happen.

use std::process::ExitCode;

use clap::FromArgMatches;
use loadgen::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&loadgen::config::command().get_matches()).unwrap_or_else(|e| e.exit());
    match loadgen::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::from(loadgen::EXIT_FAILED)
        }
    }
}
