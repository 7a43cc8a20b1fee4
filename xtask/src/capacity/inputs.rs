//! Reading the model's inputs into [`Measured`]: the benchmarks' results (docs/bench/*.json,
//! written by `cargo xtask bench`), the load generator's
//! capacity curves (docs/capacity-*.csv), and the facts of the project's own configuration
//! (redis/redis.conf, postgres/postgresql.conf, deploy/k8s/base/api.yaml; `BUCKET_SIZE` straight
//! from results-core). Nothing is typed in here: a missing or malformed file is an [`InputError`]
//! that names it and the command that writes it.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use regex::Regex;
use serde_json::Value;

use super::model::Measured;

/// A missing or malformed input, in words that name the file (and, for a measured one, the
/// command that writes it). `cargo xtask capacity-model` exits 2 on one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A measured input: its path under the inputs folder and the command that writes it.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    /// The path under the inputs folder (docs/ by default).
    pub name: &'static str,
    /// The command that writes it, as the error message says it.
    pub producer: &'static str,
}

const LOADGEN_CAPACITY: &str = "loadgen capacity, as docs/README.md shows (then copy its capacity.csv here)";
/// NGINX -> 3 replicas, micro-cache off, and the static ceiling on the same box.
pub const STACK: Input = Input {
    name: "bench/stack.json",
    producer: "cargo xtask bench stack (the native stack's stores up with the full data set)",
};
/// One replica alone.
pub const API: Input = Input { name: "bench/api.json", producer: "cargo xtask bench api (the native stack up)" };
/// The seeder and Redis memory.
pub const SEED: Input = Input { name: "bench/seed.json", producer: "cargo xtask bench seed" };
/// The capacity curve of impatient users: where the SLO stops holding.
pub const KNEE: Input = Input { name: "capacity-knee.csv", producer: LOADGEN_CAPACITY };
/// The capacity curve of paced result-day users, shown for reference.
pub const RESULT_DAY: Input = Input { name: "capacity-result-day.csv", producer: LOADGEN_CAPACITY };

/// A benchmark's name, its runs.csv header, the input it becomes, the columns the model reads.
pub type BenchColumns = (&'static str, fn() -> String, Input, &'static [&'static str]);

/// The runs.csv columns the model reads, by the benchmark that writes them: its name, its
/// runs.csv header, the input it becomes (the tests check each header still has its columns
/// and each benchmark writes the file the model reads).
pub const BENCH_COLUMNS: &[BenchColumns] = &[
    ("stack", crate::bench::stack::header, STACK, &[EDGE_CPU, UPSTREAM_CPU, REDIS_CPU]),
    ("api", crate::bench::api::header, API, &[SERVER_CPU, RSS_PEAK]),
    ("seed", crate::bench::seed::header, SEED, &[BYTES_PER_RESULT]),
];
const EDGE_CPU: &str = "edge_cpu_us_per_request";
const UPSTREAM_CPU: &str = "upstream_cpu_us_per_request";
const REDIS_CPU: &str = "redis_cpu_us_per_request";
const SERVER_CPU: &str = "server_cpu_us_per_request";
const RSS_PEAK: &str = "rss_peak_mb";
const BYTES_PER_RESULT: &str = "bytes_per_result";

/// Reads every figure the model uses: the measured ones from `inputs`, the configured ones from
/// the repository at `repo`. Paths under `repo` are shown relative to it.
pub fn read(repo: &Path, inputs: &Path) -> Result<Measured, InputError> {
    let load = |input: Input| -> Result<(String, Vec<u8>), InputError> {
        let path = inputs.join(input.name);
        let shown = shown(repo, &path);
        match fs::read(&path) {
            Ok(bytes) => Ok((shown, bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(InputError(format!(
                "missing input {shown}: run {} on a quiet machine; it writes that file",
                input.producer
            ))),
            Err(e) => Err(InputError(format!("cannot read {shown} ({e}): run {} again", input.producer))),
        }
    };
    let json = |input: Input| -> Result<Bench, InputError> {
        let (shown, bytes) = load(input)?;
        match serde_json::from_slice(&bytes) {
            Ok(data) => Ok(Bench { shown, data }),
            Err(e) => Err(InputError(format!("{shown} is not valid JSON ({e}): run {} again", input.producer))),
        }
    };
    let curve = |input: Input| -> Result<(String, Vec<Step>), InputError> {
        let (shown, bytes) = load(input)?;
        let steps = parse_steps(&bytes, &shown)?;
        Ok((shown, steps))
    };
    // In the Python model's order, so the first problem reported is the same one.
    let stack = json(STACK)?;
    let api = json(API)?;
    let seed = json(SEED)?;
    let (knee_shown, knee) = curve(KNEE)?;
    let (day_shown, day) = curve(RESULT_DAY)?;
    let (slo_util, slo_note) = knee_utilization(&knee, &knee_shown)?;
    let day_pass = day.iter().filter(|s| s.passed);

    // The target of `bench stack` that the model reads: three replicas, micro-cache off.
    const STACK_TARGET: &str = "stack-nocache";
    Ok(Measured {
        replica_us: stack.field(&["medians", STACK_TARGET, UPSTREAM_CPU])?,
        edge_us: stack.field(&["medians", STACK_TARGET, EDGE_CPU])?,
        redis_us: stack.field(&["medians", STACK_TARGET, REDIS_CPU])?,
        stack_rps: stack.field(&["medians", STACK_TARGET, "rps"])?,
        ceiling_rps: stack.field(&["medians", "ceiling", "rps"])?,
        stack_cores: stack.field(&["machine", "cores"])?,
        stack_at: stack.provenance(),
        single_replica_us: api.field(&["medians", "api", SERVER_CPU])?,
        replica_rss_mb: api.field(&["medians", "api", RSS_PEAK])?,
        api_at: api.provenance(),
        bytes_per_result: seed.field(&["medians", BYTES_PER_RESULT])?,
        seed_students: seed.field(&["meta", "students"])?,
        seed_at: seed.provenance(),
        slo_util,
        slo_note,
        day_max_pass_rps: day_pass.clone().map(|s| s.rps).reduce(f64::max).unwrap_or(0.0),
        day_max_pass_users: day_pass.map(|s| s.users).max().unwrap_or(0),
        day_path: day_shown,
        bucket_size: f64::from(results_core::keys::BUCKET_SIZE),
        listpack_entries: LISTPACK_ENTRIES.read(repo)?,
        max_connections: MAX_CONNECTIONS.read(repo)?,
        pg_pool: PG_POOL_SIZE.read(repo)?,
    })
}

/// `path` relative to `repo` when it lies under it, else as given.
pub fn shown(repo: &Path, path: &Path) -> String {
    path.strip_prefix(repo).unwrap_or(path).display().to_string()
}

/// A benchmark's result file: where it is (as shown) and its JSON.
struct Bench {
    shown: String,
    data: Value,
}

impl Bench {
    /// The positive number at `keys` (e.g. medians.api.rss_peak_mb).
    fn field(&self, keys: &[&str]) -> Result<f64, InputError> {
        let path = keys.join(".");
        let mut value = &self.data;
        for key in keys {
            value = value.get(key).ok_or_else(|| {
                InputError(format!("{} has no {path}: it predates this model; rerun the benchmark", self.shown))
            })?;
        }
        match value.as_f64() {
            Some(x) if x > 0.0 => Ok(x),
            _ => Err(InputError(format!("{}: {path} = {value} is not a positive number", self.shown))),
        }
    }

    /// "TIME, commit COMMIT" of the measurement, "?" for what the file does not say.
    fn provenance(&self) -> String {
        let text = |key: &str| match self.data.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let at = text("measured_at").unwrap_or_else(|| "?".into());
        let commit = text("git_commit").unwrap_or_else(|| "?".into());
        format!("{at}, commit {commit}")
    }
}

/// One step of a loadgen capacity curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Users of the step.
    pub users: i64,
    /// Requests per second it carried.
    pub rps: f64,
    /// Whether it met the SLO.
    pub passed: bool,
}

/// The steps of a loadgen capacity.csv (its users, rps and slo_passed columns; the others are
/// ignored), in order of users.
pub fn parse_steps(bytes: &[u8], shown: &str) -> Result<Vec<Step>, InputError> {
    let malformed = |why: String| {
        InputError(format!("{shown} is not a loadgen capacity.csv (users, rps, slo_passed columns): {why}"))
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = reader.headers().map_err(|e| malformed(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let mut steps = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| malformed(e.to_string()))?;
        let cell = |name: &str| {
            column(name)
                .and_then(|i| record.get(i))
                .ok_or_else(|| malformed(format!("no {name} in line {}", line(&record))))
        };
        let users = cell("users")?;
        let users =
            users.trim().parse::<i64>().map_err(|_| malformed(format!("users = {users:?} is not a whole number")))?;
        let rps = cell("rps")?;
        let rps = match rps.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => x,
            _ => return Err(malformed(format!("rps = {rps:?} is not a number"))),
        };
        let passed = cell("slo_passed")?.trim() == "true";
        steps.push(Step { users, rps, passed });
    }
    if steps.is_empty() {
        return Err(InputError(format!("{shown} has no steps")));
    }
    // Stable, as Python's sorted: steps of equal users keep the file's order.
    steps.sort_by_key(|s| s.users);
    Ok(steps)
}

fn line(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, csv::Position::line)
}

/// The utilization within the SLO read from the knee curve: the last step before the first one
/// that missed the SLO, over the peak throughput (None when no step missed it), and the note
/// that says so.
pub fn knee_utilization(steps: &[Step], shown: &str) -> Result<(Option<f64>, String), InputError> {
    // The first of equal peaks, as Python's max() picks.
    let Some(peak) = steps.iter().fold(None::<&Step>, |best, s| match best {
        Some(b) if b.rps >= s.rps => Some(b),
        _ => Some(s),
    }) else {
        return Err(InputError(format!("{shown} has no steps")));
    };
    match steps.iter().position(|s| !s.passed) {
        None => Ok((None, format!("no knee in `{shown}`: every step met the SLO"))),
        Some(0) => Err(InputError(format!("{shown}: the first step already missed the SLO; no utilization to read"))),
        Some(_) if peak.rps <= 0.0 => Err(InputError(format!("{shown}: no step carried any requests"))),
        Some(first_fail) => {
            let last = &steps[first_fail - 1];
            let note = format!(
                "`{shown}`: {} req/s at {} users (last step within the SLO) / {} req/s (peak, {} users)",
                super::pyfmt::grouped(last.rps, 0),
                super::pyfmt::grouped_int(last.users),
                super::pyfmt::grouped(peak.rps, 0),
                super::pyfmt::grouped_int(peak.users),
            );
            Ok((Some(last.rps / peak.rps), note))
        }
    }
}

/// A number the model reads from the project's configuration rather than measures: the first
/// capture of `pattern` in the repository's file `path`.
#[derive(Debug, Clone, Copy)]
pub struct Fact {
    /// The file, relative to the repository.
    pub path: &'static str,
    /// A regular expression whose first group is the number.
    pub pattern: &'static str,
    /// What the number is, as an error names it.
    pub what: &'static str,
}

/// Fields a Redis hash may hold and still be one compact listpack (the buckets must fit).
pub const LISTPACK_ENTRIES: Fact = Fact {
    path: "redis/redis.conf",
    pattern: r"(?m)^hash-max-listpack-entries\s+(\d+)",
    what: "hash-max-listpack-entries",
};
/// PostgreSQL's connection limit.
pub const MAX_CONNECTIONS: Fact =
    Fact { path: "postgres/postgresql.conf", pattern: r"(?m)^\s*max_connections\s*=\s*(\d+)", what: "max_connections" };
/// The pool size each API replica runs with in the Kubernetes manifests.
pub const PG_POOL_SIZE: Fact = Fact {
    path: "deploy/k8s/base/api.yaml",
    pattern: r#"name: API_PG_POOL_SIZE\s*\n\s*value: "?(\d+)"#,
    what: "API_PG_POOL_SIZE",
};

impl Fact {
    /// The number in the repository at `repo`, or an error naming the file.
    pub fn read(&self, repo: &Path) -> Result<f64, InputError> {
        let path = self.path;
        let text =
            fs::read_to_string(repo.join(path)).map_err(|e| InputError(format!("{path}: cannot read it ({e})")))?;
        self.find(&text).ok_or_else(|| InputError(format!("{path}: cannot find {}", self.what)))
    }

    /// The number in `text`, the file's contents.
    pub fn find(&self, text: &str) -> Option<f64> {
        // The patterns are the constants above; one that did not compile would find nothing,
        // which the tests on the real files show.
        let re = Regex::new(self.pattern).ok()?;
        re.captures(text)?.get(1)?.as_str().parse().ok()
    }
}
