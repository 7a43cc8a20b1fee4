//! `cargo xtask bench import [RUNS]`: `seeder import` of a results file against `psql \copy`
//! of the same file, side by side, and the import's peak RSS as the file grows.
//!
//! For each size (`BENCH_SIZES`: 674,823 rows, then 10x that) the generator's data set is
//! written as a results file (`seeder export --generated`, the same bytes `seeder export` writes
//! from PostgreSQL). Then, per run: a fresh database gets a staging table of the file's columns
//! and `psql \copy` loads the file into it (the baseline: parsing and PostgreSQL only); another
//! fresh database and a throw-away Redis get `seeder import --file` (whole-file check, ranks,
//! PostgreSQL with keys, the fingerprint, Redis), timed with its peak RSS (`/usr/bin/time`),
//! then `seeder verify`. Goals (issue 13): import <= 2x `\copy`; peak RSS under 300 MB at 10x,
//! growing far less than the file. Redis: a private `redis-server` on a free loopback port with
//! the project's redis.conf but no memory cap and no persistence (10x the results need ~0.5 GB;
//! the stack's is capped at 512 MB), stopped at the end. PostgreSQL: DATABASE_URL (a user that
//! may create databases), else the stack's, started (`STACK_SERVICES=pg`) if needed.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::host::{Children, Ports};
use crate::bench::stores::{Addr, db_url, drop_db, drop_prefix, fresh_db, psql, stack_up};
use crate::bench::{RESULT_FILE_HELP, Run, Vars, build, cores, fixed, get, positive, release_bin, result_file};
use crate::facts::{Variable, repo_dir};
use crate::net::redis_text;
use crate::supervise::wait_for;

/// The variables `bench import` reads (SEEDER_PG_CONNECTIONS passes through to the seeder).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "BENCH_SIZES",
        default: "674823 6748230",
        help: "Rows of the results files, separated by spaces; RUNS runs each, BENCH_RUNS_10X for \
               sizes above 1,000,000.",
    },
    Variable { name: "BENCH_RUNS_10X", default: "1", help: "Runs of each size above 1,000,000 rows." },
    Variable { name: "BENCH_RESULT_FILE", default: "docs/bench/import.json", help: RESULT_FILE_HELP },
    Variable {
        name: "DATABASE_URL",
        default: "",
        help: "[the stack's, started if needed] A PostgreSQL whose user may create databases.",
    },
];

const HEADER: &str = "target,run,file_mb,copy_seconds,import_seconds,ratio,import_peak_rss_mb";

/// The staging table: the results file's columns, typed as the schema types them.
const STAGING: &str = "CREATE TABLE staging (registration_number integer, full_name text, school_code integer, \
    school text, region text, stream text, english smallint, mathematics smallint, physics smallint, \
    chemistry smallint, biology smallint, geography smallint, history smallint, economics smallint, \
    aptitude smallint)";

/// Sizes above this many rows run BENCH_RUNS_10X times.
const LARGE: u64 = 1_000_000;

/// `BENCH_SIZES` as row counts.
pub fn sizes(text: &str) -> Result<Vec<u64>> {
    let sizes: Vec<u64> = text
        .split_whitespace()
        .map(|s| {
            s.parse().ok().filter(|n| *n > 0).with_context(|| format!("BENCH_SIZES: '{s}' is not a positive number"))
        })
        .collect::<Result<_>>()?;
    if sizes.is_empty() {
        bail!("BENCH_SIZES names no size");
    }
    Ok(sizes)
}

/// Runs the benchmark.
pub fn run(vars: &impl Vars, runs: u32) -> Result<()> {
    let sizes = sizes(&get(vars, VARIABLES, "BENCH_SIZES"))?;
    let runs_10x =
        u32::try_from(positive(vars, VARIABLES, "BENCH_RUNS_10X")?).context("BENCH_RUNS_10X is too large")?;
    let result = result_file(vars, "import");
    let admin = match vars.raw("DATABASE_URL").filter(|v| !v.is_empty()) {
        Some(url) => url,
        None => stack_up("pg")?.database_url(),
    };

    let mut run = Run::create("import", runs, HEADER)?;
    let mut children = Children::default();
    let redis = start_redis(&mut children, &run)?;
    let redis_url = format!("redis://{}:{}", redis.host, redis.port);
    build(&["seeder"])?;
    let seeder = release_bin("seeder");
    let result_files = Cleanup(run.out.clone());

    for &rows in &sizes {
        let file = run.file(&format!("results-{rows}.csv"));
        note!("writing the results file of {rows} students");
        let ok = Command::new(&seeder)
            .args(["export", "--generated", "--students", &rows.to_string(), "--file"])
            .arg(&file)
            .stdout(std::io::stderr())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("seeder export --generated failed");
        }
        #[expect(clippy::cast_precision_loss, reason = "file sizes are far below 2^53")]
        let file_mb = fixed(fs::metadata(&file)?.len() as f64 / 1_048_576.0, 1);
        let n_runs = if rows > LARGE { runs_10x } else { runs };
        for n in 1..=n_runs {
            fresh_db(&admin, "bench_copy")?;
            psql(&db_url(&admin, "bench_copy"), &["-c", STAGING])?;
            let start = Instant::now();
            let copy = format!("\\copy staging FROM '{}' WITH (FORMAT csv, HEADER true)", file.display());
            psql(&db_url(&admin, "bench_copy"), &["-c", &copy])?;
            let copy_s = fixed(start.elapsed().as_secs_f64(), 3);
            drop_db(&admin, "bench_copy")?;

            let prefix = format!("bench-import-{n}-{}", std::process::id());
            fresh_db(&admin, "bench_import")?;
            let rss_file = run.file(&format!("rss-{rows}-{n}.txt"));
            let start = Instant::now();
            let status = Command::new("/usr/bin/time")
                .args(["-f", "%M", "-o"])
                .arg(&rss_file)
                .arg(&seeder)
                .arg("import")
                .arg("--file")
                .arg(&file)
                .args([
                    "--database-url",
                    &db_url(&admin, "bench_import"),
                    "--key-prefix",
                    &prefix,
                    "--progress",
                    "quiet",
                ])
                .env("REDIS_URL", &redis_url)
                .stdin(Stdio::null())
                .stdout(fs::File::create(run.file(&format!("import-{rows}-{n}.txt")))?)
                .stderr(fs::File::create(run.file(&format!("import-{rows}-{n}.log")))?)
                .status()
                .context("cannot run /usr/bin/time seeder import")?;
            let import_s = fixed(start.elapsed().as_secs_f64(), 3);
            if !status.success() {
                bail!("seeder import failed: see {}", run.file(&format!("import-{rows}-{n}.log")).display());
            }
            let verify = run.file(&format!("verify-{rows}-{n}.txt"));
            let ok = Command::new(&seeder)
                .args(["verify", "--database-url", &db_url(&admin, "bench_import"), "--key-prefix", &prefix])
                .env("REDIS_URL", &redis_url)
                .stdout(fs::File::create(&verify)?)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                bail!("verify failed: see {}", verify.display());
            }
            drop_prefix(&redis, &prefix)?;
            drop_db(&admin, "bench_import")?;
            let rss_kb = peak_rss_kb(&fs::read_to_string(&rss_file).unwrap_or_default())
                .with_context(|| format!("no peak RSS in {}", rss_file.display()))?;
            run.record(row(rows, n, &file_mb, &copy_s, &import_s, rss_kb))?;
        }
        fs::remove_file(&file).ok();
    }
    drop(result_files);

    let mut text = format!(
        "import benchmark: {} cores shared by the seeder, PostgreSQL and Redis; medians per size\n\
         {:>10} {:>9} {:>12} {:>14} {:>8} {:>16}\n",
        cores(),
        "rows",
        "file MB",
        "\\copy s",
        "import s",
        "ratio",
        "peak RSS MB"
    );
    for rows in &sizes {
        let target = format!("rows_{rows}");
        let m = |c: &str| run.table.median_of(&target, c);
        text += &format!(
            "{rows:>10} {:>9.1} {:>12.3} {:>14.3} {:>8.2} {:>16.1}\n",
            m("file_mb"),
            m("copy_seconds"),
            m("import_seconds"),
            m("ratio"),
            m("import_peak_rss_mb")
        );
    }
    text += "goals: import <= 2.0 x \\copy (check, ranks, keys and Redis included); peak RSS < 300 MB at 10x\n";
    text += "import phases (last run of the first size):\n";
    let first_runs = if sizes[0] > LARGE { runs_10x } else { runs };
    text += &fs::read_to_string(run.file(&format!("import-{}-{first_runs}.txt", sizes[0]))).unwrap_or_default();
    run.summary(&text)?;
    run.write_result(Vec::new(), result.as_deref())
}

/// Deletes the results files (hundreds of MB) however the benchmark ends.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for entry in fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("results-") && name.ends_with(".csv") {
                fs::remove_file(entry.path()).ok();
            }
        }
    }
}

/// The private Redis: the project's redis.conf, no memory cap, no persistence, a free port.
fn start_redis(children: &mut Children, run: &Run) -> Result<Addr> {
    let dir = run.file("redis");
    fs::create_dir_all(&dir)?;
    let port = Ports::new("127.0.0.1").free()?;
    let log = fs::File::create(dir.join("redis.log"))?;
    let mut c = Command::new("redis-server");
    c.arg(repo_dir().join("redis/redis.conf"))
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
        .arg(&dir)
        .args(["--save", "", "--maxmemory", "0", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    children.spawn("redis-server", &mut c)?;
    let addr = Addr { host: "127.0.0.1".into(), port };
    if !wait_for(Duration::from_secs(10), || redis_text(&addr.host, port, &["PING"]).is_some()) {
        bail!("our redis-server does not answer on port {port}: see {}", dir.join("redis.log").display());
    }
    Ok(addr)
}

/// `/usr/bin/time -f %M`'s figure: its last line (a failing command adds a line above it).
fn peak_rss_kb(text: &str) -> Option<u64> {
    text.lines().rev().find(|l| !l.trim().is_empty())?.trim().parse().ok()
}

fn row(rows: u64, n: u32, file_mb: &str, copy: &str, import: &str, rss_kb: u64) -> Vec<String> {
    let c: f64 = copy.parse().unwrap_or(0.0);
    let i: f64 = import.parse().unwrap_or(0.0);
    #[expect(clippy::cast_precision_loss, reason = "kB figures are far below 2^53")]
    let rss_mb = rss_kb as f64 / 1024.0;
    vec![
        format!("rows_{rows}"),
        n.to_string(),
        file_mb.to_owned(),
        copy.to_owned(),
        import.to_owned(),
        fixed(if c > 0.0 { i / c } else { 0.0 }, 2),
        fixed(rss_mb, 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_positive_numbers() {
        assert_eq!(sizes("674823 6748230").expect("two"), [674_823, 6_748_230]);
        assert!(sizes("").is_err());
        assert!(sizes("10 x").is_err());
        assert!(sizes("0").is_err());
    }

    #[test]
    fn rows_are_named_by_size_and_peak_rss_is_time_s_last_line() {
        assert_eq!(
            row(674_823, 2, "73.2", "1.092", "8.439", 33_075),
            ["rows_674823", "2", "73.2", "1.092", "8.439", "7.73", "32.3"]
        );
        assert_eq!(peak_rss_kb("Command exited with non-zero status 1\n33075\n"), Some(33_075));
        assert_eq!(peak_rss_kb(""), None);
    }
}
