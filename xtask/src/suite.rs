//! `cargo xtask test` (what scripts/test.sh runs): the project's one test command. Brings the
//! stack's PostgreSQL and Redis up, sweeps what earlier runs left behind (a full run only), builds every test once
//! (`cargo test --no-run`), then runs the suites side by side in `--jobs` lanes: each test binary
//! cargo built (in its package's folder, as `cargo test` runs it), the doc tests, and each script
//! test (scripts/tests/*_test.sh). Each suite's output is printed whole when it ends; a table of
//! wall times and one tally line close the run.
//!
//! Why lanes: most of a script test's wall time is waiting (a throw-away stack starting, a load
//! of fixed duration, a failover's timeout), not CPU, and the Rust tests that take long wait on
//! PostgreSQL and on the seeder processes they start, so on two cores the suites overlap well.
//! Each script test runs on its own ports and folder, and the Rust tests make their own
//! databases and key prefixes, so they cannot see each other. The longest suites start first,
//! so the run ends when the longest one does rather than behind a late long one.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::config::{Config, EnvironmentWithServices};
use crate::{apt, facts, net, stack, supervise};

/// `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suites run at the same time (a suite: one test binary, the doc tests, or one script
    /// test). 1 runs them one after another.
    #[arg(long, env = "TEST_JOBS", default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub jobs: u32,
    /// Arguments for `cargo test` (e.g. `-p seeder killed`); with any, `cargo test` runs with
    /// them, its output live, and nothing else (no sweep: another run may be using the stores).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_args: Vec<String>,
}

/// Three lanes on a two-core machine: measured best (see docs/operations.md#the-test-command).
pub const DEFAULT_JOBS: u32 = 3;

/// The suites' usual wall time in seconds on a quiet two-core machine, only to start the long
/// ones first (a suite missing here counts as [`UNKNOWN_SECONDS`]). Test binaries are named
/// PACKAGE/KIND/TARGET, script tests by their file.
const USUAL_SECONDS: &[(&str, u64)] = &[
    ("seeder/test/it", 95),
    ("loadgen/test/loadgen", 50),
    ("api/test/api", 48),
    ("xtask/test/stack", 16),
    ("drill_test", 95),
    ("redis_cluster_test", 60),
    ("edge_test", 43),
    ("hostile_test", 38),
    ("monitoring_test", 35),
    ("page_test", 25),
    ("pg_replica_test", 22),
    ("openapi_test", 21),
    ("correction_test", 18),
];
const UNKNOWN_SECONDS: u64 = 5;

/// Suites that run with nothing beside them. The drill's restart-redis phase wants zero failed
/// requests while the debug replicas answer every lookup from PostgreSQL: with two other suites
/// beside it they were starved of CPU and answered 503 (1 and 170 of ~600 requests in two runs
/// with three lanes), where alone they lose none.
const ALONE: &[&str] = &["drill_test"];

fn usual_seconds(name: &str) -> u64 {
    USUAL_SECONDS.iter().find(|(n, _)| *n == name).map_or(UNKNOWN_SECONDS, |(_, s)| *s)
}

/// One suite: a name for the table and the command that runs it.
struct Suite {
    name: String,
    command: Command,
    weight: u64,
    /// Runs with no other suite beside it ([`ALONE`]).
    alone: bool,
}

/// How a suite ended.
struct Outcome {
    name: String,
    secs: u64,
    ok: bool,
    passed: u64,
    failed: u64,
}

/// Runs the test command and returns its exit status: 0 when every suite passed.
pub fn main(args: &Args) -> Result<ExitCode> {
    let repo = facts::repo_dir();
    let stores = Config::load(&EnvironmentWithServices("pg redis".into()), &std::env::current_dir()?)?;
    stack::up(&stores)?;
    // wrk drives the edge test's loads under chaos; the stack installs the rest.
    if !supervise::have("wrk") {
        apt::install(&["wrk".to_owned()])?;
    }
    let env = stack::env_pairs(&stores);

    if !args.cargo_args.is_empty() {
        // A chosen part: cargo test alone, its output live, as cargo prints it. No sweep: a
        // part may run beside another run on the same stores (another checkout's), whose test
        // databases and keys the sweep would drop mid-test.
        let run = Instant::now();
        let ok = cargo(&repo, &env, &["test", "--locked"], &args.cargo_args).status()?.success();
        print_table(&[("cargo test".to_owned(), run.elapsed().as_secs())]);
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    sweep(&stores, &env)?;
    let build = Instant::now();
    say("building the tests");
    let binaries = build_test_binaries(&repo, &env)?;
    let mut timings = vec![("cargo build (tests)".to_owned(), build.elapsed().as_secs())];
    let mut suites = test_binaries(binaries, &env);
    // rustdoc's tests are not binaries cargo can hand over: cargo runs them.
    suites.push(Suite {
        name: "doc tests".into(),
        command: cargo(&repo, &env, &["test", "--locked", "--workspace", "--doc"], &[]),
        weight: 0,
        alone: false,
    });
    suites.extend(script_tests(&repo, &env)?);
    suites = in_running_order(suites);
    let logs = repo.join("target").join("test-logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let outcomes = run_in_lanes(suites, args.jobs as usize, &logs);
    timings.extend(outcomes.iter().map(|o| (o.name.clone(), o.secs)));
    print_table(&timings);
    let passed: u64 = outcomes.iter().map(|o| o.passed).sum();
    let failed: u64 = outcomes.iter().map(|o| o.failed).sum();
    println!("tests: {passed} passed, {failed} failed");
    let failing: Vec<&str> = outcomes.iter().filter(|o| !o.ok).map(|o| o.name.as_str()).collect();
    if failing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    say(&format!("failed: {} (whole logs in {})", failing.join(", "), logs.display()));
    Ok(ExitCode::FAILURE)
}

fn say(line: &str) {
    eprintln!("test: {line}");
}

/// `cargo SUBCOMMAND... ARGS...` in the repository with the stores' URLs in its environment.
fn cargo(repo: &Path, env: &[(&str, String)], subcommand: &[&str], args: &[String]) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo).args(subcommand).args(args);
    with_env(&mut c, env);
    c
}

fn with_env(c: &mut Command, env: &[(&str, String)]) {
    for (k, v) in env {
        c.env(k, v);
    }
    // No "skipping" notices from the scripts' psql.
    c.env("PGOPTIONS", "-c client_min_messages=warning");
}

/// The order the suites start in: those that run alone first (nothing runs yet, so they start at
/// once; queued behind others, one would hold back every lane while it waits), then the longest
/// first.
fn in_running_order(mut suites: Vec<Suite>) -> Vec<Suite> {
    suites.sort_by_key(|s| (!s.alone, std::cmp::Reverse(s.weight)));
    suites
}

/// A test binary cargo built: where it is, and the package it tests.
#[derive(Debug, PartialEq)]
pub struct TestBinary {
    /// PACKAGE/KIND/TARGET, e.g. seeder/test/it or api/lib/api.
    pub name: String,
    /// The binary.
    pub executable: PathBuf,
    /// The package's folder: cargo runs a test binary there, and so do we.
    pub package_dir: PathBuf,
}

/// `cargo test --workspace --no-run`, its human diagnostics on stderr, and the test binaries it
/// reports.
fn build_test_binaries(repo: &Path, env: &[(&str, String)]) -> Result<Vec<TestBinary>> {
    let mut build = cargo(
        repo,
        env,
        &["test", "--locked", "--no-run", "--workspace", "--message-format=json-render-diagnostics"],
        &[],
    );
    let out = build.stderr(Stdio::inherit()).output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("the tests did not build");
    }
    let binaries = test_binaries_in(&String::from_utf8_lossy(&out.stdout));
    if binaries.is_empty() {
        bail!("cargo built no test binary");
    }
    Ok(binaries)
}

/// The test binaries among cargo's JSON messages (one per line; other lines are skipped).
pub fn test_binaries_in(messages: &str) -> Vec<TestBinary> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            let executable = PathBuf::from(m["executable"].as_str()?);
            let package_dir = Path::new(m["manifest_path"].as_str()?).parent()?.to_path_buf();
            let package = package_dir.file_name()?.to_string_lossy().into_owned();
            let kind = m["target"]["kind"].get(0)?.as_str()?;
            let kind = if kind == "test" {
                "test"
            } else if kind == "bin" {
                "bin"
            } else {
                "lib"
            };
            let name = format!("{package}/{kind}/{}", m["target"]["name"].as_str()?);
            Some(TestBinary { name, executable, package_dir })
        })
        .collect()
}

/// A suite per test binary, run in its package's folder as cargo would.
fn test_binaries(binaries: Vec<TestBinary>, env: &[(&str, String)]) -> Vec<Suite> {
    binaries
        .into_iter()
        .map(|b| {
            let mut command = Command::new(&b.executable);
            command.current_dir(&b.package_dir).env("CARGO_MANIFEST_DIR", &b.package_dir);
            with_env(&mut command, env);
            Suite { weight: usual_seconds(&b.name), alone: ALONE.contains(&b.name.as_str()), name: b.name, command }
        })
        .collect()
}

/// scripts/tests/*_test.sh, each run by bash with XTASK naming this very binary (the scripts'
/// many stack up/downs then skip cargo's lock and freshness checks).
fn script_tests(repo: &Path, env: &[(&str, String)]) -> Result<Vec<Suite>> {
    let dir = repo.join("scripts").join("tests");
    let mut scripts: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_test.sh")))
        .collect();
    scripts.sort();
    let me = std::env::current_exe().context("finding the xtask binary")?;
    Ok(scripts
        .into_iter()
        .map(|path| {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let weight = usual_seconds(&name);
            let mut command = Command::new("bash");
            command.arg(&path).current_dir(repo).env("XTASK", &me);
            with_env(&mut command, env);
            Suite { alone: ALONE.contains(&name.as_str()), name, command, weight }
        })
        .collect())
}

/// Runs the suites, at most `jobs` at a time, in the order given, a suite marked `alone` with
/// no other beside it (it waits for the running ones to end, and the next wait for it); each
/// one's output goes to LOGS/<name>.log and is printed whole when it ends. The outcomes come in
/// the order the suites ended.
fn run_in_lanes(suites: Vec<Suite>, jobs: usize, logs: &Path) -> Vec<Outcome> {
    let lanes = Lanes { state: Mutex::new((suites.into_iter().collect(), 0, false)), changed: Condvar::new() };
    let outcomes = Mutex::new(Vec::new());
    let print = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                while let Some(suite) = lanes.take() {
                    let alone = suite.alone;
                    let outcome = run_one(suite, logs, &print);
                    if let Ok(mut all) = outcomes.lock() {
                        all.push(outcome);
                    }
                    lanes.done(alone);
                }
            });
        }
    });
    outcomes.into_inner().unwrap_or_default()
}

/// The queue and what runs: (suites not started, suites running, whether one running is alone).
struct Lanes {
    state: Mutex<(VecDeque<Suite>, usize, bool)>,
    changed: Condvar,
}

impl Lanes {
    /// The next suite to start, once it may; None when none is left.
    fn take(&self) -> Option<Suite> {
        let mut state = self.state.lock().ok()?;
        loop {
            let (queue, running, alone_running) = &mut *state;
            let next_alone = queue.front()?.alone;
            let may_start = !*alone_running && (!next_alone || *running == 0);
            if may_start {
                *running += 1;
                *alone_running = next_alone;
                return queue.pop_front();
            }
            state = self.changed.wait(state).ok()?;
        }
    }

    fn done(&self, alone: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.1 -= 1;
            if alone {
                state.2 = false;
            }
        }
        self.changed.notify_all();
    }
}

fn run_one(mut suite: Suite, logs: &Path, print: &Mutex<()>) -> Outcome {
    let log = logs.join(format!("{}.log", suite.name.replace([' ', '/'], "-")));
    say(&format!("started {}", suite.name));
    let start = Instant::now();
    let ok = match fs::File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((out, err)) => {
            suite.command.stdin(Stdio::null()).stdout(out).stderr(err);
            suite.command.status().map(|s| s.success()).unwrap_or_else(|e| {
                say(&format!("{} could not start: {e}", suite.name));
                false
            })
        }
        Err(e) => {
            say(&format!("{}: cannot write {}: {e}", suite.name, log.display()));
            false
        }
    };
    let secs = start.elapsed().as_secs();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let (passed, failed) = tally(&text);
    let _one_at_a_time = print.lock();
    // print!, not a locked stdout: the test harness captures it in this module's own tests.
    print!("===== {} ({secs} s, {}) =====\n{text}", suite.name, if ok { "ok" } else { "FAILED" });
    say(&format!(
        "{} {} in {secs} s: {passed} passed, {failed} failed",
        suite.name,
        if ok { "passed" } else { "FAILED" }
    ));
    Outcome { name: suite.name, secs, ok, passed, failed }
}

/// Passed and failed tests in a suite's output: cargo's `test result:` lines and the script
/// tests' closing `NAME: N passed, M failed` line.
pub fn tally(output: &str) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for line in output.lines() {
        let counts = if let Some(rest) = line.strip_prefix("test result: ") {
            // test result: ok. 12 passed; 0 failed; 1 ignored; ...
            let words: Vec<&str> = rest.split([' ', ';']).filter(|w| !w.is_empty()).collect();
            count_before(&words, "passed").zip(count_before(&words, "failed"))
        } else if let Some((name, rest)) = line.split_once(": ") {
            let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let script = name.ends_with("_test") && !name.contains(' ') && words.len() == 4;
            if script { count_before(&words, "passed").zip(count_before(&words, "failed")) } else { None }
        } else {
            None
        };
        if let Some((p, f)) = counts {
            passed += p;
            failed += f;
        }
    }
    (passed, failed)
}

fn count_before(words: &[&str], label: &str) -> Option<u64> {
    let at = words.iter().position(|w| *w == label)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

fn print_table(timings: &[(String, u64)]) {
    let mut text = String::from("wall time per suite:\n");
    for (name, secs) in timings {
        let _ = writeln!(text, "{secs:6} s  {name}");
    }
    eprint!("{text}");
}

/// Drops what earlier runs may have left behind: test databases (seedtest_*), test keys (t-*)
/// and test Redis users (ro-*), which a failed or killed test does not clean up.
fn sweep(c: &Config, env: &[(&str, String)]) -> Result<()> {
    say("sweeping leftovers of earlier test runs");
    let url = env.iter().find(|(k, _)| *k == "DATABASE_URL").map(|(_, v)| v.clone()).unwrap_or_default();
    let psql = |sql: &str| {
        let mut p = supervise::cmd("psql");
        p.args([url.as_str(), "-Atq", "-c", sql]).env("PGOPTIONS", "-c client_min_messages=warning");
        supervise::output(&mut p)
    };
    let list = psql("SELECT datname FROM pg_database WHERE datname LIKE 'seedtest\\_%'")?;
    for db in String::from_utf8_lossy(&list.stdout).lines().filter(|l| !l.is_empty()) {
        // Not WITH (FORCE): it would have to end autovacuum workers, which only a superuser
        // may; a plain DROP cancels them itself.
        psql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND usename = current_user"
        ))?;
        psql(&format!("DROP DATABASE IF EXISTS \"{db}\""))?;
    }
    let (host, port) = (c.host.as_str(), c.redis_port);
    let mut cursor = "0".to_owned();
    loop {
        let reply = net::redis(host, port, &["SCAN", &cursor, "MATCH", "t-*", "COUNT", "1000"])?;
        let net::Reply::Array(Some(parts)) = reply else { bail!("SCAN answered {reply:?}") };
        let [net::Reply::Bulk(Some(next)), net::Reply::Array(Some(keys))] = parts.as_slice() else {
            bail!("SCAN answered {parts:?}")
        };
        let keys: Vec<&str> = keys.iter().filter_map(net::Reply::text).collect();
        if !keys.is_empty() {
            let mut unlink = vec!["UNLINK"];
            unlink.extend(keys);
            net::redis(host, port, &unlink)?;
        }
        if next == "0" {
            break;
        }
        cursor.clone_from(next);
    }
    if let Ok(net::Reply::Array(Some(users))) = net::redis(host, port, &["ACL", "USERS"]) {
        for user in users.iter().filter_map(net::Reply::text).filter(|u| u.starts_with("ro-")) {
            net::redis(host, port, &["ACL", "DELUSER", user])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::{Suite, run_in_lanes, tally};

    fn sh(name: &str, script: &str) -> Suite {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Suite { name: name.into(), command, weight: 0, alone: false }
    }

    #[test]
    fn every_suite_runs_once_and_a_failing_one_is_reported_with_its_counts() {
        let logs = tempfile::tempdir().expect("a temporary folder");
        let suites = vec![
            // A name with a slash, as a test binary's: its log is still one file in LOGS.
            sh("a/test", "echo 'a_test: 2 passed, 0 failed'"),
            sh("b_test", "echo 'b_test: 1 passed, 1 failed'; echo to-stderr >&2; exit 1"),
            sh("c_test", "echo 'c_test: 5 passed, 0 failed'"),
        ];
        let mut outcomes = run_in_lanes(suites, 2, logs.path());
        outcomes.sort_by(|x, y| x.name.cmp(&y.name));
        let seen: Vec<(&str, bool, u64, u64)> =
            outcomes.iter().map(|o| (o.name.as_str(), o.ok, o.passed, o.failed)).collect();
        assert_eq!(seen, [("a/test", true, 2, 0), ("b_test", false, 1, 1), ("c_test", true, 5, 0)]);
        assert!(logs.path().join("a-test.log").is_file());
        let b_log = std::fs::read_to_string(logs.path().join("b_test.log")).expect("b_test's log");
        assert!(b_log.contains("b_test: 1 passed, 1 failed") && b_log.contains("to-stderr"), "{b_log}");
    }

    #[test]
    fn test_binaries_are_read_from_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///r/seeder#0.1.0","manifest_path":"/r/seeder/Cargo.toml","target":{"kind":["test"],"name":"it"},"profile":{"test":true},"executable":"/r/target/debug/deps/it-1"}
{"reason":"compiler-artifact","manifest_path":"/r/api/Cargo.toml","target":{"kind":["lib"],"name":"api"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","manifest_path":"/r/api/Cargo.toml","target":{"kind":["bin"],"name":"api"},"profile":{"test":true},"executable":"/r/target/debug/deps/api-2"}
{"reason":"compiler-artifact","manifest_path":"/r/results-core/Cargo.toml","target":{"kind":["lib"],"name":"results_core"},"profile":{"test":true},"executable":"/r/target/debug/deps/results_core-3"}
{"reason":"build-finished","success":true}
not json at all"#;
        let found = super::test_binaries_in(messages);
        let names: Vec<&str> = found.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["seeder/test/it", "api/bin/api", "results-core/lib/results_core"]);
        assert_eq!(found[0].executable, std::path::Path::new("/r/target/debug/deps/it-1"));
        assert_eq!(found[0].package_dir, std::path::Path::new("/r/seeder"));
    }

    #[test]
    fn a_suite_marked_alone_never_runs_beside_another() {
        // Each suite appends "start NAME" and "end NAME" to one file: a suite alone must have
        // its start and its end next to each other, with every other suite before or after.
        let logs = tempfile::tempdir().expect("a temporary folder");
        let trace = logs.path().join("trace");
        let step = |name: &str| {
            let t = trace.display();
            sh(name, &format!("echo 'start {name}' >> {t}; sleep 0.2; echo 'end {name}' >> {t}"))
        };
        let mut lonely = step("lonely");
        lonely.alone = true;
        let suites = vec![step("one"), step("two"), lonely, step("three"), step("four")];
        let outcomes = run_in_lanes(suites, 3, logs.path());
        assert_eq!(outcomes.len(), 5);
        let lines: Vec<String> =
            std::fs::read_to_string(&trace).expect("the trace").lines().map(str::to_owned).collect();
        let at = lines.iter().position(|l| l == "start lonely").expect("lonely started");
        assert_eq!(lines.get(at + 1).map(String::as_str), Some("end lonely"), "{lines:?}");
        // Before it, the suites queued ahead of it all ended; after it, the rest started.
        let ended_before = lines[..at].iter().filter(|l| l.starts_with("end ")).count();
        assert_eq!(ended_before, 2, "{lines:?}");
    }

    #[test]
    fn suites_alone_start_first_then_the_longest() {
        let mut lonely = sh("lonely", "true");
        lonely.alone = true;
        let weighed = |name: &str, weight| Suite { weight, ..sh(name, "true") };
        let order = super::in_running_order(vec![weighed("short", 5), weighed("long", 95), lonely, weighed("mid", 40)]);
        let names: Vec<&str> = order.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["lonely", "long", "mid", "short"]);
    }

    #[test]
    fn a_suite_that_cannot_start_fails() {
        let logs = tempfile::tempdir().expect("a temporary folder");
        let missing =
            Suite { name: "gone".into(), command: Command::new("/nonexistent/program"), weight: 0, alone: false };
        let outcomes = run_in_lanes(vec![missing], 3, logs.path());
        assert!(outcomes.len() == 1 && !outcomes[0].ok);
    }

    #[test]
    fn tally_sums_cargo_and_script_lines_and_ignores_the_rest() {
        let out = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.2s\n\
                   test result: FAILED. 3 passed; 2 failed; 0 ignored\n\
                   edge_test: 40 passed, 1 failed\n\
                   edge_test: FAILED: a check with 3 passed, 4 failed in its words\n\
                   running 12 tests\n";
        assert_eq!(tally(out), (55, 3));
    }

    #[test]
    fn tally_of_no_result_line_is_zero() {
        assert_eq!(tally("error: could not compile `api`\n"), (0, 0));
    }
}
