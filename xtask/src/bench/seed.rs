//! `cargo xtask bench seed [RUNS]`: the seeder against `psql \copy` of the same rows, side by
//! side. Per run: a fresh database gets the schema (`seeder migrate`), then `psql \copy` loads
//! the exported CSV rows (the baseline: PostgreSQL only); another fresh database and a fresh
//! Redis prefix get a full `seeder --force` (generate + PostgreSQL + Redis), checked by `seeder
//! verify`. Reported as medians: both times, the ratio seeder / `\copy` (goal <= 2.0, for
//! PostgreSQL plus Redis together) and the Redis memory the results take (`used_memory` after
//! minus before; goal < 64 MB for the full set). The stack's PostgreSQL and Redis are started
//! (`STACK_SERVICES="pg redis"`) if they are not running; the machine's cores are shared by the
//! seeder, PostgreSQL and Redis, as in production on one box.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bench::stores::{Addr, db_url, drop_db, drop_prefix, fresh_db, psql, redis_info, stack_up};
use crate::bench::{RESULT_FILE_HELP, Run, Vars, build, fixed, get, positive, release_bin, result_file};
use crate::facts::Variable;

/// The variables `bench seed` reads (SEEDER_PG_CONNECTIONS and the STACK_* ones pass through).
pub const VARIABLES: &[Variable] = &[
    Variable { name: "BENCH_STUDENTS", default: DEFAULT_STUDENTS_TEXT, help: "Students generated and loaded." },
    Variable { name: "BENCH_SEED", default: DEFAULT_SEED_TEXT, help: "The generator's seed." },
    Variable { name: "BENCH_RESULT_FILE", default: "docs/bench/seed.json", help: RESULT_FILE_HELP },
];

/// The seeder's defaults as text, checked against results-core by a test.
const DEFAULT_STUDENTS_TEXT: &str = "674823";
const DEFAULT_SEED_TEXT: &str = "2026";

const HEADER: &str = "run,copy_seconds,seeder_seconds,ratio,redis_bytes,bytes_per_result";

/// The columns of runs.csv (the capacity model reads bytes_per_result).
pub(crate) fn header() -> String {
    HEADER.to_owned()
}

/// Runs the benchmark.
pub fn run(vars: &impl Vars, runs: u32) -> Result<()> {
    let students = positive(vars, VARIABLES, "BENCH_STUDENTS")?;
    let seed: u64 = get(vars, VARIABLES, "BENCH_SEED").parse().context("BENCH_SEED must be a number")?;
    let result = result_file(vars, "seed");

    let c = stack_up("pg redis")?;
    let admin = c.database_url();
    let redis = Addr { host: c.host.clone(), port: c.redis_port };
    build(&["seeder"])?;
    // The seeder reads the stores from the environment, as after `eval "$(cargo xtask stack env)"`.
    let seeder_bin = release_bin("seeder");
    let (database_url, redis_url) = (c.database_url(), c.redis_url());
    let seeder = || {
        let mut cmd = Command::new(&seeder_bin);
        cmd.env("DATABASE_URL", &database_url).env("REDIS_URL", &redis_url).stdin(Stdio::null());
        cmd
    };

    let mut run = Run::create("seed", runs, HEADER)?;
    let csv_dir = run.file("csv");
    note!("exporting {students} students (seed {seed}) as CSV for the baseline");
    let status = seeder()
        .arg("export")
        .arg("--dir")
        .arg(&csv_dir)
        .args(["--students", &students.to_string(), "--seed", &seed.to_string()])
        // Its progress goes to stderr: our stdout is only the summary.
        .stdout(std::io::stderr())
        .status()
        .context("cannot run seeder export")?;
    if !status.success() {
        bail!("seeder export failed");
    }
    let used_memory = || -> Result<i64> {
        redis_info(&redis, "memory", "used_memory")
            .and_then(|v| v.trim().parse().ok())
            .context("Redis INFO memory failed")
    };
    let migrate = |db: &str| -> Result<()> {
        let ok = seeder()
            .args(["migrate", "--database-url", &db_url(&admin, db)])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok { Ok(()) } else { bail!("seeder migrate failed on {db}") }
    };

    for n in 1..=runs {
        fresh_db(&admin, "bench_copy")?;
        migrate("bench_copy")?;
        let start = Instant::now();
        psql(&db_url(&admin, "bench_copy"), &["-f", &csv_dir.join("copy.psql").to_string_lossy()])?;
        let copy = fixed(start.elapsed().as_secs_f64(), 3);
        drop_db(&admin, "bench_copy")?;

        let prefix = format!("bench-{n}-{}", std::process::id());
        fresh_db(&admin, "bench_seed")?;
        migrate("bench_seed")?;
        let before = used_memory()?;
        let start = Instant::now();
        let status = seeder()
            .args(["--database-url", &db_url(&admin, "bench_seed"), "--key-prefix", &prefix])
            .args(["--students", &students.to_string(), "--seed", &seed.to_string(), "--force", "--progress", "quiet"])
            .stdout(fs::File::create(run.file(&format!("seeder-{n}.txt")))?)
            .stderr(fs::File::create(run.file(&format!("seeder-{n}.log")))?)
            .status()
            .context("cannot run the seeder")?;
        let seeded = fixed(start.elapsed().as_secs_f64(), 3);
        if !status.success() {
            bail!("the seeder failed in run {n}: see {}", run.file(&format!("seeder-{n}.log")).display());
        }
        let after = used_memory()?;
        let verify = run.file(&format!("verify-{n}.txt"));
        let ok = seeder()
            .args(["verify", "--database-url", &db_url(&admin, "bench_seed"), "--key-prefix", &prefix])
            .stdout(fs::File::create(&verify)?)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("verify failed after run {n}: see {}", verify.display());
        }
        drop_prefix(&redis, &prefix)?;
        drop_db(&admin, "bench_seed")?;
        run.record(row(n, &copy, &seeded, after - before, students))?;
    }

    let t = &run.table;
    let m = |col: &str| t.median_of("", col);
    let phases = fs::read_to_string(run.file(&format!("seeder-{runs}.txt"))).unwrap_or_default();
    let text = format!(
        "seeder benchmark: {students} students, seed {seed}, {runs} run(s), medians; {} cores shared by all processes\n\
         {:<44} {:>10}\n{:<44} {:>10}\n{:<44} {:>10}   goal <= 2.0\n\
         {:<44} {:>7.1} MB   goal < 64 MB\n{:<44} {:>10.1}\nseeder phases (last run):\n{phases}",
        crate::bench::cores(),
        "psql \\copy (PostgreSQL only)",
        format!("{:.3} s", m("copy_seconds")),
        "seeder (generate + PostgreSQL + Redis)",
        format!("{:.3} s", m("seeder_seconds")),
        "ratio seeder / \\copy",
        format!("{:.2}", m("ratio")),
        "Redis used_memory for the results",
        m("redis_bytes") / 1_048_576.0,
        "Redis bytes per result",
        m("bytes_per_result"),
    );
    run.summary(&text)?;
    fs::remove_dir_all(&csv_dir).ok();

    let version = redis_info(&redis, "server", "redis_version").unwrap_or_default();
    let meta = vec![
        ("students".to_owned(), students.to_string()),
        ("seed".to_owned(), seed.to_string()),
        ("redis_version".to_owned(), version.trim().to_owned()),
    ];
    run.write_result(meta, result.as_deref())
}

/// One row of runs.csv: the ratio from the rounded times, as the script computed it.
fn row(n: u32, copy: &str, seeder: &str, redis_bytes: i64, students: u64) -> Vec<String> {
    let c: f64 = copy.parse().unwrap_or(0.0);
    let s: f64 = seeder.parse().unwrap_or(0.0);
    #[expect(clippy::cast_precision_loss, reason = "byte and student counts are far below 2^53")]
    let per = redis_bytes as f64 / students as f64;
    vec![
        n.to_string(),
        copy.to_owned(),
        seeder.to_owned(),
        fixed(if c > 0.0 { s / c } else { 0.0 }, 2),
        redis_bytes.to_string(),
        fixed(per, 1),
    ]
}

#[cfg(test)]
mod tests {
    use results_core::generate::{DEFAULT_SEED, DEFAULT_STUDENTS};

    use super::*;

    #[test]
    fn defaults_are_the_seeders() {
        assert_eq!(DEFAULT_STUDENTS_TEXT, DEFAULT_STUDENTS.to_string());
        assert_eq!(DEFAULT_SEED_TEXT, DEFAULT_SEED.to_string());
    }

    #[test]
    fn a_row_holds_the_ratio_and_bytes_per_result() {
        assert_eq!(
            row(1, "12.520", "5.614", 35_069_792, 674_823),
            ["1", "12.520", "5.614", "0.45", "35069792", "52.0"]
        );
    }
}
