//! `cargo xtask bench seed | api | stack | import [RUNS]`: the benchmarks. Each compares, in
//! one invocation on this machine, the system against the ceiling of its own shape (`psql
//! \copy`, a static NGINX, the same edge in front of a static upstream), takes medians over
//! RUNS rounds, prints a summary, keeps everything under `runs/bench-<name>/<UTC time>/` and
//! writes the medians to `docs/bench/<name>.json` (`BENCH_RESULT_FILE`).
//!
//! Shared here: the `BENCH_*` variables (each benchmark lists its own, with defaults, in a
//! `VARIABLES` table that `--help` prints), the run folder, the release binaries, the result
//! files. Pure, tested parts live in [`result`] (medians, the JSON), [`wrk`] (its summary
//! line), [`flamegraph`] (top frames) and [`host`] (`/proc` parsing).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::facts::{Variable, repo_dir};

/// A progress line on stderr, `bench: ...` (stdout carries the summary).
macro_rules! note {
    ($($arg:tt)*) => { eprintln!("bench: {}", format_args!($($arg)*)) };
}

pub mod api;
pub mod flamegraph;
pub mod host;
pub mod import;
pub mod result;
pub mod seed;
pub mod servers;
pub mod stack;
pub mod stores;
pub mod wrk;

use result::{Provenance, Table};

/// Where a benchmark reads its settings: the environment, or a map in tests. Unlike the stack's
/// settings an empty value is kept (`BENCH_RESULT_FILE=` means "write no result file").
pub trait Vars {
    /// The raw value of `name`, if set.
    fn raw(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn raw(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for HashMap<String, String> {
    fn raw(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The value of `name`: set and non-empty, else its default in `table`.
pub fn get(vars: &impl Vars, table: &[Variable], name: &str) -> String {
    vars.raw(name).filter(|v| !v.is_empty()).unwrap_or_else(|| default_in(table, name).to_owned())
}

fn default_in(table: &[Variable], name: &str) -> &'static str {
    table.iter().find(|v| v.name == name).map_or("", |v| v.default)
}

/// `name` as a positive integer (its default when unset); the error names the variable.
pub fn positive(vars: &impl Vars, table: &[Variable], name: &str) -> Result<u64> {
    let text = get(vars, table, name);
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{name} must be a positive integer (got '{text}')"),
    }
}

/// `BENCH_BUILD`: 0 or 1.
pub fn flag(vars: &impl Vars, table: &[Variable], name: &str) -> Result<bool> {
    match get(vars, table, name).as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => bail!("{name} must be 0 or 1 (got '{other}')"),
    }
}

/// `BENCH_RESULT_FILE`: unset, the committed `docs/bench/<bench>.json`; empty, none; a relative
/// path is taken from the repository, as the scripts did.
pub fn result_file(vars: &impl Vars, bench: &str) -> Option<PathBuf> {
    let value = vars.raw("BENCH_RESULT_FILE").unwrap_or_else(|| format!("docs/bench/{bench}.json"));
    (!value.is_empty()).then(|| repo_dir().join(value))
}

/// The help of `BENCH_RESULT_FILE` for benchmark `bench`, shared by every table.
pub const RESULT_FILE_HELP: &str = "The machine-readable result (medians, per target where \
     there are targets) read by the capacity model and the docs; empty: not written (it is \
     always in the run folder). A relative path is taken from the repository.";

/// `RUNS`: the rounds; 3 unless given.
pub const DEFAULT_RUNS: u32 = 3;

/// The `--help` text of a benchmark's variables.
pub fn variables_help(table: &[Variable]) -> String {
    let mut text = String::from("Environment variables [default]:\n");
    for v in table {
        let default = if v.default.is_empty() { String::new() } else { format!("[{}] ", v.default) };
        let _ = writeln!(text, "  {}\n      {default}{}", v.name, v.help);
    }
    text
}

/// Calendar date and time `(year, month, day, hour, minute, second)` of a Unix time, UTC.
pub fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The run folder's name, `20261203T100000Z`, and the JSON's time, `2026-12-03T10:00:00Z`.
pub fn stamps(secs: u64) -> (String, String) {
    let (y, mo, d, h, mi, s) = civil(secs);
    (format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"), format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One benchmark invocation: its name, rounds, folder and per-run table.
pub struct Run {
    /// `seed`, `api`, `stack` or `import`.
    pub bench: &'static str,
    /// Rounds asked for.
    pub runs: u32,
    /// `runs/bench-<name>/<stamp>`.
    pub out: PathBuf,
    /// The folder's stamp.
    pub stamp: String,
    /// The per-run figures, written to `runs.csv` after every row.
    pub table: Table,
}

impl Run {
    /// Creates `runs/bench-<bench>/<UTC time>/` with the table's header.
    pub fn create(bench: &'static str, runs: u32, header: &str) -> Result<Run> {
        let (stamp, _) = stamps(now_secs());
        let out = repo_dir().join("runs").join(format!("bench-{bench}")).join(&stamp);
        fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        note!("output in {}", out.strip_prefix(repo_dir()).unwrap_or(&out).display());
        let run = Run { bench, runs, out, stamp, table: Table::new(header) };
        run.save_csv()?;
        Ok(run)
    }

    /// Adds a row, logs it and rewrites runs.csv (so a failed run leaves what it measured).
    pub fn record(&mut self, row: Vec<String>) -> Result<()> {
        note!("  {}", row.join(","));
        self.table.push(row)?;
        self.save_csv()
    }

    fn save_csv(&self) -> Result<()> {
        fs::write(self.out.join("runs.csv"), self.table.csv()).context("cannot write runs.csv")
    }

    /// A file of the run folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// The run folder relative to the repository, for messages.
    pub fn shown(&self) -> String {
        self.out.strip_prefix(repo_dir()).unwrap_or(&self.out).display().to_string()
    }

    /// Prints the summary and keeps it as summary.txt.
    pub fn summary(&self, text: &str) -> Result<()> {
        print!("{text}");
        fs::write(self.file("summary.txt"), text).context("cannot write summary.txt")
    }

    /// Writes `<bench>.json` into the run folder and copies it to `result_file`.
    pub fn write_result(&self, meta: Vec<(String, String)>, result_file: Option<&Path>) -> Result<()> {
        let (_, measured_at) = stamps(now_secs());
        let provenance = Provenance {
            bench: self.bench.to_owned(),
            command: format!("cargo xtask bench {} {}", self.bench, self.runs),
            measured_at,
            git_commit: git_commit(),
            cores: cores(),
            meta,
        };
        let text = result::to_text(&result::document(&self.table, &provenance)?)?;
        result::write_atomically(&self.file(&format!("{}.json", self.bench)), &text)?;
        if let Some(path) = result_file {
            result::write_atomically(path, &text)?;
            note!("wrote {}", path.display());
        }
        Ok(())
    }
}

/// `cargo xtask bench result`: the result JSON of `bench` from a runs.csv (of an earlier run, or
/// sample figures in a test), with `meta` as `KEY=VALUE` items.
pub fn result_from_csv(bench: &str, csv: &Path, out: &Path, command: &str, meta: &[String]) -> Result<()> {
    let text = fs::read_to_string(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let table = Table::parse(&text).with_context(|| format!("{} is not a runs.csv", csv.display()))?;
    let meta = meta
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--meta {item:?} is not KEY=VALUE"),
        })
        .collect::<Result<Vec<_>>>()?;
    let provenance = Provenance {
        bench: bench.to_owned(),
        command: command.to_owned(),
        measured_at: stamps(now_secs()).1,
        git_commit: git_commit(),
        cores: cores(),
        meta,
    };
    result::write_atomically(out, &result::to_text(&result::document(&table, &provenance)?)?)
}

/// `git rev-parse --short=12 HEAD` of the repository.
pub fn git_commit() -> Option<String> {
    let out = Command::new("git").arg("-C").arg(repo_dir()).args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The cores we may use (`nproc`).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The first three fields of /proc/loadavg.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A release binary of the workspace: `$CARGO_TARGET_DIR/release/<name>` (default `target/`).
pub fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_dir().join("target"), PathBuf::from);
    target.join("release").join(name)
}

/// `cargo build --release --locked -p PACKAGE...`, its output on our stderr.
pub fn build(packages: &[&str]) -> Result<()> {
    note!("building the release {}", packages.join(" and "));
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo_dir()).args(["build", "--release", "--locked"]);
    for p in packages {
        c.args(["-p", p]);
    }
    let status = c.stdout(Stdio::inherit()).stderr(Stdio::inherit()).status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(())
}

/// The release binaries, which must exist.
pub fn binaries(names: &[&str]) -> Result<Vec<PathBuf>> {
    names
        .iter()
        .map(|n| {
            let p = release_bin(n);
            if p.is_file() { Ok(p) } else { bail!("missing {} (run with BENCH_BUILD=1)", p.display()) }
        })
        .collect()
}

/// `f` with `digits` decimals, as awk's printf did.
pub fn fixed(f: f64, digits: usize) -> String {
    format!("{f:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const TABLE: &[Variable] = &[Variable { name: "BENCH_DURATION", default: "15", help: "seconds" }];

    #[test]
    fn settings_fall_back_to_their_defaults_and_errors_name_the_variable() {
        assert_eq!(positive(&vars(&[]), TABLE, "BENCH_DURATION").expect("default"), 15);
        assert_eq!(positive(&vars(&[("BENCH_DURATION", "")]), TABLE, "BENCH_DURATION").expect("default"), 15);
        assert_eq!(positive(&vars(&[("BENCH_DURATION", "2")]), TABLE, "BENCH_DURATION").expect("set"), 2);
        let err = positive(&vars(&[("BENCH_DURATION", "0")]), TABLE, "BENCH_DURATION").expect_err("zero");
        assert!(err.to_string().contains("BENCH_DURATION"), "{err}");
        assert!(flag(&vars(&[("BENCH_BUILD", "2")]), TABLE, "BENCH_BUILD").is_err());
    }

    #[test]
    fn an_empty_result_file_means_none_and_unset_the_committed_one() {
        assert_eq!(result_file(&vars(&[("BENCH_RESULT_FILE", "")]), "seed"), None);
        assert_eq!(result_file(&vars(&[]), "seed"), Some(repo_dir().join("docs/bench/seed.json")));
        assert_eq!(
            result_file(&vars(&[("BENCH_RESULT_FILE", "/tmp/x.json")]), "seed"),
            Some(PathBuf::from("/tmp/x.json"))
        );
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(stamps(0), ("19700101T000000Z".into(), "1970-01-01T00:00:00Z".into()));
        // 2026-12-03T10:34:21Z; 2024-02-29 checks a leap day.
        assert_eq!(stamps(1_796_294_061).1, "2026-12-03T10:34:21Z");
        assert_eq!(stamps(1_709_164_800).1, "2024-02-29T00:00:00Z");
    }
}
