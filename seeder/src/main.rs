//! The seeder binary: parses the command line, runs the chosen command, prints its report.
//! See `seeder --help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use seeder::cli::LOG_VAR;
use seeder::cli::{Cli, Command, EXIT_DIFFERENT, EXIT_INTERRUPTED, EXIT_INVALID_FILE, EXIT_UNPUBLISHED};
use seeder::correct::CorrectError;
use seeder::import::ImportError;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(results_core::env::log_filter(LOG_VAR))
                .unwrap_or_else(|_| EnvFilter::new(results_core::env::DEFAULT_LOG_FILTER)),
        )
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
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "interrupted; nothing half-done is trusted: run the same command again to finish (a load, or a correction: it publishes what PostgreSQL committed)"
                );
                Ok(ExitCode::from(EXIT_INTERRUPTED))
            }
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
        Some(Command::Correct(args)) => match seeder::correct::run(&args.settings()?).await {
            Ok(corrected) => {
                print!("{}", corrected.render());
                Ok(ExitCode::SUCCESS)
            }
            Err(invalid @ CorrectError::Invalid { .. }) => {
                eprintln!("error: {invalid}");
                Ok(ExitCode::from(EXIT_INVALID_FILE))
            }
            Err(CorrectError::Unpublished { applied, unpublished }) => {
                print!("{applied}");
                eprintln!("error: {unpublished}");
                Ok(ExitCode::from(EXIT_UNPUBLISHED))
            }
            Err(CorrectError::Other(e)) => Err(e),
        },
        Some(Command::Publish(args)) => match seeder::publish::run_command(&args.stores()?).await? {
            Ok(published) => {
                print!("{published}");
                Ok(ExitCode::SUCCESS)
            }
            Err(unpublished) => {
                eprintln!("error: {unpublished}");
                Ok(ExitCode::from(EXIT_UNPUBLISHED))
            }
        },
        Some(Command::Migrate { database_url }) => {
            let pg = seeder::pg::Pg::connect(&database_url, 1).await?;
            pg.migrate(&database_url).await?;
            println!("migrations applied to {}", pg.target());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Import(args)) => match seeder::import::run(&args.settings()?).await {
            Ok(outcome) => {
                print!("{}", outcome.render());
                Ok(ExitCode::SUCCESS)
            }
            Err(ImportError::Invalid(invalid)) => {
                eprintln!("{invalid}");
                Ok(ExitCode::from(EXIT_INVALID_FILE))
            }
            Err(ImportError::Other(e)) => Err(e),
        },
        Some(Command::Export(args)) => {
            if let Some(dir) = &args.dir {
                let rows = seeder::export::run(args.data.spec()?, dir)?;
                println!("wrote {rows} rows and copy.psql to {}", dir.display());
            } else if args.generated {
                let spec = args.data.spec()?;
                let written = tokio::task::spawn_blocking(move || {
                    seeder::export::generated(spec, args.file.as_deref(), args.ids_file.as_deref())
                })
                .await??;
                println!("{written}");
            } else {
                let written =
                    seeder::export::results(&args.stores.stores()?, args.file.as_deref(), args.ids_file.as_deref())
                        .await?;
                println!("{written}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn load(args: &seeder::cli::LoadArgs) -> anyhow::Result<ExitCode> {
    let outcome = seeder::load::run_with(&args.settings()?, args.how.discard_corrections).await?;
    print!("{}", outcome.render());
    Ok(ExitCode::SUCCESS)
}
