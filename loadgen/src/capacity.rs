//! The capacity curve: one bounded load test per step of growing user counts, each step's
//! figures written to `capacity.csv` as it ends and `capacity.png` drawn at the end (both by
//! `loadgen_report::capacity`), with the knee, the first step that misses an SLO gate, marked.

use std::path::PathBuf;
use std::sync::Arc;

use loadgen_report::capacity::{Curve, Step, draw, knee, write_csv};
use loadgen_report::folder::fresh_run_dir;

use crate::attack;
use crate::config::CapacityArgs;
use crate::error::LoadgenError;
use crate::live::Live;

/// Runs the capacity curve `args` describe.
///
/// # Errors
/// An empty step list, a step that could not run, or a CSV or PNG that could not be written.
pub async fn run(args: &CapacityArgs, live: &Arc<Live>) -> Result<Curve, LoadgenError> {
    if args.steps.is_empty() || args.steps.contains(&0) {
        return Err(LoadgenError::Config(
            "LOADGEN_CAPACITY_STEPS: give user counts above 0, e.g. 500,1000,2000".into(),
        ));
    }
    let options = &args.run.options;
    let dir = match args.run.goose.output_dir.as_deref() {
        Some(given) => PathBuf::from(given),
        None => {
            let base = fresh_run_dir(&options.runs_dir);
            let name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            base.with_file_name(format!("capacity-{name}"))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| LoadgenError::Io(format!("creating {}: {e}", dir.display())))?;
    let csv = dir.join("capacity.csv");
    let png = dir.join("capacity.png");
    let slo = options.slo();
    let mut steps = Vec::new();
    for (i, &users) in args.steps.iter().enumerate() {
        let mut step_args = args.run.clone();
        step_args.goose.users = Some(users);
        step_args.goose.run_time = Some(args.step_secs.to_string());
        step_args.goose.increase_rate = Some(args.ramp_rate.max(1).to_string());
        step_args.goose.increase_time = None;
        step_args.goose.output_dir = None;
        eprintln!("loadgen capacity: step {}/{}: {users} users for {} s", i + 1, args.steps.len(), args.step_secs);
        let step_dir = dir.join(format!("step-{:02}-{users}-users", i + 1));
        let summary = attack::run(&step_args, live, Some(step_dir)).await?;
        let step = Step::of(users, &summary);
        eprintln!(
            "loadgen capacity: {users} users: {:.1} req/s, p95 {:.2} ms, p99 {:.2} ms, {} failures: {}",
            step.rps,
            step.p95_ms,
            step.p99_ms,
            step.failures,
            if step.slo_passed { "SLO met" } else { "SLO missed" }
        );
        let passed = step.slo_passed;
        steps.push(step);
        // After every step, so an interrupted curve keeps what it measured.
        write_csv(&csv, &steps).map_err(|e| LoadgenError::Io(format!("writing {}: {e}", csv.display())))?;
        if !passed && args.stop_at_knee {
            break;
        }
    }
    let knee = knee(&steps);
    draw(&png, &steps, &slo, knee)?;
    Ok(Curve { steps, slo, knee, dir, csv, png })
}
