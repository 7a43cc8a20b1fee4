//! One load test: goose configured with this project's defaults, the scenarios registered, one
//! shared HTTP client, the run executed, its latency histograms written and summarised from them
//! (goose's own metrics decide only its `--threshold` rules and its `report.html`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use goose::GooseError;
use goose::client::GooseClientBuilder;
use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType, RUN_FOLDER};
use goose::metrics::{GooseCoordinatedOmissionMitigation, GooseMetrics};
use goose::prelude::GooseAttack;
use loadgen_report::folder::fresh_run_dir;
use loadgen_report::histogram_log::DataSet;
use loadgen_report::summary::RunSummary;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientSettings, USER_AGENT, UserClients};
use crate::config::{
    DEFAULT_HOST, DEFAULT_INCREASE_RATE, DEFAULT_RUN_TIME_S, DEFAULT_TIMEOUT_S, DEFAULT_USERS, RunArgs,
};
use crate::error::LoadgenError;
use crate::live::Live;
use crate::recorder::{Recorder, RunContext};
use crate::scenarios::{self, Plan};

fn co_mode_name(mode: Option<&GooseCoordinatedOmissionMitigation>) -> &'static str {
    match mode {
        Some(GooseCoordinatedOmissionMitigation::Average) | None => "average",
        Some(GooseCoordinatedOmissionMitigation::Maximum) => "maximum",
        Some(GooseCoordinatedOmissionMitigation::Minimum) => "minimum",
        Some(GooseCoordinatedOmissionMitigation::Disabled) => "disabled",
    }
}

fn goose(e: GooseError) -> LoadgenError {
    match e {
        GooseError::InvalidOption { option, value, detail } => {
            LoadgenError::Goose(format!("{option} {value}: {detail}"))
        }
        GooseError::InvalidHost { host, detail, .. } => LoadgenError::Goose(format!("--host {host}: {detail}")),
        other => LoadgenError::Goose(format!("{other} ({other:?})")),
    }
}

/// Runs one load test as `args` say, writing goose's reports and the summary into `dir` (a
/// fresh folder under `--runs-dir` when `None` and goose's `--output-dir` is not given).
///
/// # Errors
/// A configuration goose or this crate refuses, or a run that could not start. Missed SLO gates
/// are not errors: see [`RunSummary::verdict`].
pub async fn run(args: &RunArgs, live: &Arc<Live>, dir: Option<PathBuf>) -> Result<RunSummary, LoadgenError> {
    let options = &args.options;
    let ids = options.ids()?;

    let mut configuration: GooseConfiguration = args.goose.clone();
    let dir = match (dir, configuration.output_dir.as_deref()) {
        (Some(dir), _) => dir,
        (None, Some(given)) => PathBuf::from(given),
        (None, None) => fresh_run_dir(&options.runs_dir),
    };
    configuration.output_dir = Some(dir.to_string_lossy().into_owned());
    configuration.no_telnet |= !options.telnet;
    configuration.no_print_metrics |= !options.goose_tables;
    if configuration.verbose == 0 && configuration.quiet == 0 {
        // goose logs a line per user starting and stopping: thousands of users bury the progress
        // lines. -v brings them back.
        configuration.quiet = 1;
    }
    let host = configuration.host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let co_mitigation = co_mode_name(configuration.co_mitigation.as_ref()).to_owned();

    // goose refuses a default that conflicts with an option given (a test plan sets its own
    // users and times; --increase-time replaces the rate; --iterations replaces the run time).
    // The test plan is private to goose's configuration but serialised with it.
    let test_plan = serde_json::to_value(&configuration)
        .ok()
        .and_then(|value| value.get("test_plan").map(|plan| !plan.is_null()))
        .unwrap_or(false);
    let shape_given = test_plan;
    let rate_given = test_plan || configuration.increase_time.is_some();
    let run_time_given = test_plan || configuration.iterations.is_some();
    // goose resets its metrics once every user of a plain --users ramp is launched: the
    // histograms start over at the same moment.
    let resets = !test_plan && configuration.iterations.is_none() && !configuration.no_reset_metrics;
    let reset_after = resets.then(|| configuration.users.unwrap_or(DEFAULT_USERS));
    let plan = Arc::new(Plan {
        ids,
        live: Arc::clone(live),
        refresh_percent: options.refresh_percent,
        latency: Recorder::new(reset_after),
        clients: UserClients::new(
            ClientSettings::new(&configuration, options)?,
            options.client_per_user,
            configuration.users.unwrap_or(DEFAULT_USERS),
        )?,
        pins: options.pins.then_some(options.seed),
        rate_limited_ok: options.rate_limited_ok,
        harvest_next: std::sync::atomic::AtomicU32::new(0),
    });

    let mut attack = GooseAttack::initialize_with_config(configuration).map_err(goose)?;
    attack = *attack.set_default(GooseDefault::Host, DEFAULT_HOST).map_err(goose)?;
    if !shape_given {
        attack = *attack.set_default(GooseDefault::Users, DEFAULT_USERS).map_err(goose)?;
    }
    if !rate_given {
        attack = *attack.set_default(GooseDefault::IncreaseRate, DEFAULT_INCREASE_RATE).map_err(goose)?;
    }
    if !run_time_given {
        attack = *attack.set_default(GooseDefault::RunTime, DEFAULT_RUN_TIME_S).map_err(goose)?;
    }
    attack = *attack.set_default(GooseDefault::Timeout, DEFAULT_TIMEOUT_S).map_err(goose)?;
    attack = *attack
        .set_default(GooseDefault::CoordinatedOmissionMitigation, GooseCoordinatedOmissionMitigation::Average)
        .map_err(goose)?;
    attack = *attack.set_default(GooseDefault::ReportFile, RUN_FOLDER).map_err(goose)?;
    attack = *attack.set_default(GooseDefault::ErrorLog, RUN_FOLDER).map_err(goose)?;
    // Every user is handed its client from `plan.clients` as it arrives (client.rs says why). goose
    // still makes one for each user first: the shared kind, a cheap clone, not thousands of pools.
    let builder = GooseClientBuilder::new().without_cookies().user_agent(USER_AGENT);
    attack = attack.set_client_builder_without_cookies(builder).map_err(goose)?;
    for scenario in scenarios::build(&plan, options)? {
        attack = attack.register_scenario(scenario);
    }

    let stop = CancellationToken::new();
    let progress = tokio::spawn(Arc::clone(live).progress(Duration::from_secs(options.progress_secs), stop.clone()));
    let result = attack.execute().await;
    stop.cancel();
    let _ = progress.await;
    live.reset_users();

    let (metrics, failed): (GooseMetrics, Vec<String>) = match result {
        Ok(metrics) => (metrics, Vec::new()),
        Err(GooseError::ThresholdsFailed { failed, metrics }) => {
            let failed = failed.into_iter().map(|r| format!("{} (observed {})", r.rule, r.observed)).collect();
            (*metrics.0, failed)
        }
        Err(e) => return Err(goose(e)),
    };
    let context = RunContext {
        generator: options.generator_label.clone(),
        target: host,
        users: metrics.maximum_users,
        data_set: DataSet { students: options.students, seed: options.seed },
        co_mitigation,
    };
    let mut log = plan.latency.finish(&context);
    log.write(&dir).map_err(|e| LoadgenError::Io(format!("writing the latency histograms: {e}")))?;
    // The summary and its gates read the histograms just written, as `loadgen merge` reads them.
    let mut summary = RunSummary::of(&log, &options.slo(), failed, dir);
    summary
        .write()
        .map_err(|e| LoadgenError::Io(format!("writing the summary into {}: {e}", summary.dir.display())))?;
    Ok(summary)
}
