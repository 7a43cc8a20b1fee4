//! The seeder binary: parses the command line, runs the chosen command, prints its report.
//! See `seeder --help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use seeder::cli::{Cli, Command, EXIT_DIFFERENT};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // sqlx logs server notices ("relation already exists, skipping") at info: not news.
        .with_env_filter(EnvFilter::try_from_env("SEEDER_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(cli) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
                "interrupted; nothing half-done is trusted: run the seeder again to finish the load"
            )),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => load(&cli.load).await,
        Some(Command::Load(args)) => load(&args).await,
        Some(Command::Verify(args)) => {
            let report = seeder::verify::run(&args.stores()?).await?;
            print!("{}", report.render());
            Ok(if report.agrees() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_DIFFERENT) })
        }
        Some(Command::Migrate { database_url }) => {
            let pg = seeder::pg::Pg::connect(&database_url, 1).await?;
            pg.migrate(&database_url).await?;
            println!("migrations applied to {}", pg.target());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Export { dir, data }) => {
            let rows = seeder::export::run(data.spec()?, &dir)?;
            println!("wrote {rows} rows and copy.psql to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn load(args: &seeder::cli::LoadArgs) -> anyhow::Result<ExitCode> {
    let outcome = seeder::load::run(&args.settings()?).await?;
    print!("{}", outcome.render());
    Ok(ExitCode::SUCCESS)
}
