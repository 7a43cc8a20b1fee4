//! `cargo xtask fuzz [SECONDS_PER_TARGET]`: coverage-guided fuzzing (cargo-fuzz / libFuzzer) of
//! everything that decodes untrusted bytes. The targets live in fuzz/ (its own crate, not a
//! workspace member; fuzz/fuzz_targets/*.rs say what each checks beyond "never panics").
//!
//! Installs cargo-fuzz when `cargo fuzz` is missing, builds every chosen target once, then runs
//! each for SECONDS_PER_TARGET in a single libFuzzer process (no -jobs/-fork, which would move
//! the output into fuzz-N.log files) from the committed seeds plus the corpus earlier runs grew,
//! and prints per target the runs, exec/s, coverage (cov, ft), corpus size and any crash with
//! the input that caused it. The summary goes to stdout and `runs/fuzz/<UTC time>/summary.txt`,
//! each target's full log beside it. Exit status 0 when nothing was found, 1 when a target found
//! something, 2 on a usage or build error. Not part of CI: fuzzing for minutes is deliberate.
//!
//! The parsing of libFuzzer's output is [`parse_log`], a pure function tested on captured logs.

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};

use crate::bench::{Vars, stamps};
use crate::facts::repo_dir;

/// Exit status on a usage or build error (1 means a target found something).
pub const EXIT_ERROR: u8 = 2;

/// The default seconds per target.
pub const DEFAULT_SECONDS: u32 = 60;

/// The environment variables `cargo xtask fuzz` reads: (name, default, help).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("FUZZ_TARGETS", "", "Space-separated subset of the targets to run [every target in fuzz/Cargo.toml]."),
    ("FUZZ_SANITIZER", "address", "address or none (none: faster, catches only panics and aborts)."),
    ("FUZZ_TIMEOUT", "10", "Seconds one input may take before libFuzzer reports it as a hang."),
    ("FUZZ_RSS_MB", "2048", "Memory limit of the fuzzing process, MB (exceeding it is a finding)."),
];

/// The `--help` text after the options: the variables, reproduction and output.
pub fn variables_help() -> String {
    let mut text = String::from("Environment variables [default]:\n");
    for (name, default, help) in VARIABLES {
        let default = if default.is_empty() { String::new() } else { format!("[{default}] ") };
        text.push_str(&format!("  {name}\n      {default}{help}\n"));
    }
    text.push_str(
        "\ncargo-fuzz passes nightly-only compiler flags; on the stable toolchain this command sets \
         RUSTC_BOOTSTRAP=1 for cargo fuzz alone. Targets are built in release with debug assertions. \
         Seeds: fuzz/seeds/<target>/ (committed); the grown corpus: fuzz/corpus/<target>/; crash \
         inputs: fuzz/artifacts/<target>/ (both git-ignored). Reproduce a crash with \
         `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>`.\n",
    );
    text
}

/// The settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `FUZZ_TARGETS` split on whitespace; `None` when unset or empty (every target).
    pub targets: Option<Vec<String>>,
    /// `address` or `none`.
    pub sanitizer: String,
    /// libFuzzer's `-timeout`, seconds.
    pub input_timeout: u64,
    /// libFuzzer's `-rss_limit_mb`.
    pub rss_mb: u64,
}

impl Settings {
    /// Reads and validates the `FUZZ_*` variables; an empty value means its default.
    pub fn load(vars: &impl Vars) -> Result<Settings> {
        let get = |name: &str| {
            let default = VARIABLES.iter().find(|v| v.0 == name).map_or("", |v| v.1);
            vars.raw(name).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        let positive = |name: &str| -> Result<u64> {
            let text = get(name);
            match text.parse::<u64>() {
                Ok(n) if n > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => bail!("{name} must be a positive whole number, got '{text}'"),
            }
        };
        let sanitizer = get("FUZZ_SANITIZER");
        if sanitizer != "address" && sanitizer != "none" {
            bail!("FUZZ_SANITIZER must be 'address' or 'none', got '{sanitizer}'");
        }
        let targets = get("FUZZ_TARGETS");
        let targets = (!targets.trim().is_empty()).then(|| targets.split_whitespace().map(str::to_owned).collect());
        Ok(Settings { targets, sanitizer, input_timeout: positive("FUZZ_TIMEOUT")?, rss_mb: positive("FUZZ_RSS_MB")? })
    }
}

/// What one target's libFuzzer log says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `stat::number_of_executed_units` (the last one printed).
    pub runs: Option<String>,
    /// `stat::average_exec_per_sec`.
    pub exec_per_sec: Option<String>,
    /// `cov:` of the last status line: covered code edges.
    pub cov: Option<String>,
    /// `ft:` of the last status line: features.
    pub ft: Option<String>,
    /// `corp:` of the last status line, `units/size` (e.g. `310/9kb`).
    pub corpus: Option<String>,
    /// Every input libFuzzer wrote ("Test unit written to PATH").
    pub artifacts: Vec<String>,
    /// Why it stopped, when it found something: the panic with its message (on the line after
    /// "panicked at"), or the first libFuzzer/sanitizer `ERROR:` line.
    pub reason: Option<String>,
}

/// The value after `key` in a libFuzzer status line (`#101739 DONE cov: 412 ft: 1620 ...`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|w| *w == key)?;
    words.next()
}

/// Reads a libFuzzer log (cargo fuzz run's stdout and stderr): the final stats
/// (`-print_final_stats=1`), the last status line, the written test units and, if it crashed,
/// why. Pure, so it is tested on captured output.
pub fn parse_log(log: &str) -> Outcome {
    let mut outcome = Outcome::default();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.runs = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            outcome.exec_per_sec = Some(v.trim().to_owned());
        }
        // A status line starts with '#' and the input count; only those with coverage count.
        let status = line.strip_prefix('#').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        if status && line.contains("cov:") {
            let numeric = |key| field(line, key).filter(|v| v.bytes().all(|b| b.is_ascii_digit())).map(str::to_owned);
            outcome.cov = numeric("cov:");
            outcome.ft = numeric("ft:");
            outcome.corpus = field(line, "corp:").map(str::to_owned);
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            outcome.artifacts.push(path.to_owned());
        }
        if outcome.reason.is_none() {
            if line.contains("panicked at") {
                // The panic's message is on the next line.
                outcome.reason = Some(match lines.clone().next() {
                    Some(message) => format!("{line} {message}"),
                    None => format!("{line} "),
                });
            } else if ["libFuzzer", "AddressSanitizer", "LeakSanitizer"]
                .iter()
                .any(|tool| line.contains(&format!("ERROR: {tool}")))
            {
                outcome.reason = Some(line.to_owned());
            }
        }
    }
    outcome
}

/// One target's summary line, and whether it found something: a failed exit or a written
/// test unit.
pub fn summary_line(target: &str, outcome: &Outcome, status: Option<i32>, log: &Path) -> (String, bool) {
    let q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let mut line = format!(
        "{target}: {} runs, {} exec/s, cov {}, ft {}, corpus {} (units/bytes)",
        q(&outcome.runs),
        q(&outcome.exec_per_sec),
        q(&outcome.cov),
        q(&outcome.ft),
        q(&outcome.corpus)
    );
    let found = status != Some(0) || !outcome.artifacts.is_empty();
    if found {
        let reason = outcome.reason.clone().unwrap_or_else(|| match status {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".into(),
        });
        let input = if outcome.artifacts.is_empty() {
            format!("none written, see {}", log.display())
        } else {
            outcome.artifacts.join(" ")
        };
        line.push_str(&format!(" - FOUND: {reason}; input: {input}"));
    } else {
        line.push_str(" - nothing found");
    }
    (line, found)
}

/// Runs the command, maps the outcome to the exit status, and prints an error (status 2).
pub fn main(seconds: u32) -> ExitCode {
    match Settings::load(&crate::bench::ProcessEnv).and_then(|settings| run(seconds, &settings)) {
        Ok(true) => ExitCode::FAILURE,
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fuzz: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `cargo fuzz ARGS` from the repository, with RUSTC_BOOTSTRAP=1: cargo-fuzz passes
/// nightly-only flags (-Zsanitizer, sanitizer-coverage passes) that stable rustc accepts with
/// it. Nothing else of the project is built that way.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut command = Command::new("cargo");
    command.arg("fuzz").args(args).current_dir(repo_dir()).env("RUSTC_BOOTSTRAP", "1");
    command
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo").args(["fuzz", "--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if have.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    // Its output goes to stderr: stdout is the summary.
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .context("cannot run cargo (is it on PATH?)")?;
    if !status.success() {
        bail!("could not install cargo-fuzz");
    }
    Ok(())
}

/// Fuzzes; `Ok(true)` when a target found something.
fn run(seconds: u32, settings: &Settings) -> Result<bool> {
    ensure_cargo_fuzz()?;
    let listed = cargo_fuzz(&["list"]).stderr(Stdio::inherit()).output().context("cannot run cargo fuzz list")?;
    if !listed.status.success() {
        bail!("cargo fuzz list failed (is fuzz/Cargo.toml intact?)");
    }
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_owned).collect();
    let targets = settings.targets.clone().unwrap_or_else(|| all.clone());
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        bail!("FUZZ_TARGETS: unknown target '{unknown}' (known: {})", all.join(" "));
    }

    let sanitizer = settings.sanitizer.as_str();
    eprintln!("fuzz: building {} targets (sanitizer: {sanitizer})", targets.len());
    // cargo fuzz build takes one target or all of them.
    let builds: Vec<Vec<&str>> = if settings.targets.is_none() {
        vec![vec!["build", "--sanitizer", sanitizer]]
    } else {
        targets.iter().map(|t| vec!["build", "--sanitizer", sanitizer, t.as_str()]).collect()
    };
    for args in builds {
        let status =
            cargo_fuzz(&args).stdout(Stdio::from(std::io::stderr())).status().context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!("cargo fuzz {} failed", args.join(" "));
        }
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (folder, when) = stamps(now);
    let out = repo_dir().join("runs/fuzz").join(folder);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut summary = Vec::new();
    let mut found = 0;
    for target in &targets {
        let corpus = format!("fuzz/corpus/{target}");
        let seeds = format!("fuzz/seeds/{target}");
        for dir in [&corpus, &seeds] {
            std::fs::create_dir_all(repo_dir().join(dir)).with_context(|| format!("cannot create {dir}"))?;
        }
        let log = out.join(format!("{target}.log"));
        eprintln!("fuzz: running {target} for {seconds}s (log: {})", log.display());
        let flags = [
            format!("-max_total_time={seconds}"),
            format!("-timeout={}", settings.input_timeout),
            format!("-rss_limit_mb={}", settings.rss_mb),
            "-print_final_stats=1".to_owned(),
        ];
        let mut args = vec!["run", "--sanitizer", sanitizer, target, &corpus, &seeds, "--"];
        args.extend(flags.iter().map(String::as_str));
        let status = run_logged(&mut cargo_fuzz(&args), &log, Duration::from_secs(u64::from(seconds) + 120))?;
        let text = std::fs::read(&log).with_context(|| format!("cannot read {}", log.display()))?;
        let (line, hit) = summary_line(target, &parse_log(&String::from_utf8_lossy(&text)), status.code(), &log);
        found += usize::from(hit);
        eprintln!("fuzz: {line}");
        summary.push(line);
    }

    let shown = out.strip_prefix(repo_dir()).unwrap_or(&out).display().to_string();
    let mut text = format!("fuzz: {seconds}s per target, sanitizer {sanitizer}, {when}, logs in {shown}\n");
    for line in &summary {
        text.push_str(&format!("fuzz: {line}\n"));
    }
    text.push_str(&format!("fuzz: {} targets, {found} with findings\n", targets.len()));
    print!("{text}");
    std::fs::write(out.join("summary.txt"), &text).context("cannot write summary.txt")?;
    Ok(found > 0)
}

/// Runs `command` with its output in `log`, in its own process group. libFuzzer stops itself
/// after -max_total_time; `limit` only guards against a process that does not: then the group
/// gets SIGINT (libFuzzer prints its stats on it) and, 30 s later, SIGKILL. The group, not just
/// cargo, because libFuzzer is cargo-fuzz's child.
fn run_logged(command: &mut Command, log: &Path, limit: Duration) -> Result<ExitStatus> {
    use std::os::unix::process::CommandExt as _;
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child =
        command.stdout(file.try_clone()?).stderr(file).process_group(0).spawn().context("cannot run cargo fuzz run")?;
    let group = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    let started = Instant::now();
    let mut sent = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let elapsed = started.elapsed();
        let signal = match sent {
            None if elapsed >= limit => Some(Signal::INT),
            Some(s) if s == Signal::INT && elapsed >= limit + Duration::from_secs(30) => Some(Signal::KILL),
            _ => None,
        };
        if let (Some(signal), Some(group)) = (signal, group) {
            eprintln!("fuzz: still running after {}s, sending {signal:?}", elapsed.as_secs());
            // The group may be gone already (it exits between the check and the kill).
            let _ = rustix::process::kill_process_group(group, signal);
            sent = Some(signal);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A clean run's tail: `cargo xtask fuzz 5`'s redis_key log (libfuzzer-sys 0.4.13), status
    /// lines cut to the first and last two.
    const CLEAN: &str = "\
INFO: Seed: 3379105633
INFO:      211 files found in fuzz/corpus/redis_key
#212\tINITED cov: 190 ft: 301 corp: 98/2690b exec/s: 0 rss: 35Mb
#793406\tREDUCE cov: 208 ft: 345 corp: 129/3361b lim: 4096 exec/s: 158681 rss: 206Mb L: 32/152 MS: 1 EraseBytes-
#802336\tDONE   cov: 208 ft: 345 corp: 129/3361b lim: 4096 exec/s: 133722 rss: 208Mb
###### Recommended dictionary. ######
###### End of recommended dictionary. ######
Done 802336 runs in 6 second(s)
stat::number_of_executed_units: 802336
stat::average_exec_per_sec:     133722
stat::new_units_added:          483
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              208
";

    /// A panic, captured from a throw-away target that asserted `data.len() < 4` (the backtraces
    /// cut: their `    #0 0x...` frames must not count as status lines).
    const PANIC: &str = "\
#2\tINITED cov: 18 ft: 18 corp: 1/1b exec/s: 0 rss: 33Mb
thread '<unnamed>' (27771) panicked at fuzz_targets/crash_demo.rs:3:5:
demo: an input of 4 bytes
stack backtrace:
   0: __rustc::rust_begin_unwind
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
==27771== ERROR: libFuzzer: deadly signal
    #0 0x5596dc43e5f1 in __sanitizer_print_stack_trace asan_stack.cpp:87:3 cov: 1 ft: 1
NOTE: libFuzzer has rudimentary signal handlers.
SUMMARY: libFuzzer: deadly signal
MS: 4 ChangeBit-CrossOver-InsertByte-CopyPart-; base unit: adc83b19e793491b1c6ea0fd8b46cd9f32e592fc
artifact_prefix='/w/fuzz/artifacts/crash_demo/'; Test unit written to /w/fuzz/artifacts/crash_demo/crash-43ed2a04
Base64: igoKlA==
stat::number_of_executed_units: 41
stat::average_exec_per_sec:     0
";

    #[test]
    fn a_clean_run_gives_the_final_stats_and_the_last_status_line() {
        let o = parse_log(CLEAN);
        assert_eq!(o.runs.as_deref(), Some("802336"));
        assert_eq!(o.exec_per_sec.as_deref(), Some("133722"));
        assert_eq!(
            (o.cov.as_deref(), o.ft.as_deref(), o.corpus.as_deref()),
            (Some("208"), Some("345"), Some("129/3361b"))
        );
        assert!(o.artifacts.is_empty() && o.reason.is_none());
        let (line, found) = summary_line("redis_key", &o, Some(0), Path::new("x.log"));
        assert!(!found);
        assert_eq!(
            line,
            "redis_key: 802336 runs, 133722 exec/s, cov 208, ft 345, corpus 129/3361b (units/bytes) - nothing found"
        );
    }

    #[test]
    fn a_panic_gives_its_message_and_the_input() {
        let o = parse_log(PANIC);
        let reason = "thread '<unnamed>' (27771) panicked at fuzz_targets/crash_demo.rs:3:5: demo: an input of 4 bytes";
        assert_eq!(o.reason.as_deref(), Some(reason));
        assert_eq!(o.artifacts, ["/w/fuzz/artifacts/crash_demo/crash-43ed2a04"]);
        assert_eq!((o.runs.as_deref(), o.cov.as_deref(), o.corpus.as_deref()), (Some("41"), Some("18"), Some("1/1b")));
        // A written unit is a finding whatever the exit status cargo fuzz ended with.
        for status in [Some(77), Some(0)] {
            let (line, found) = summary_line("crash_demo", &o, status, Path::new("x.log"));
            assert!(found);
            assert_eq!(
                line,
                format!(
                    "crash_demo: 41 runs, 0 exec/s, cov 18, ft 18, corpus 1/1b (units/bytes) - FOUND: {reason}; \
                     input: /w/fuzz/artifacts/crash_demo/crash-43ed2a04"
                )
            );
        }
    }

    #[test]
    fn a_sanitizer_error_is_the_reason() {
        let log = "#5\tINITED cov: 3 ft: 3 corp: 1/1b\n==1== ERROR: AddressSanitizer: heap-buffer-overflow on address\n\
                   Test unit written to ./crash-1\n";
        assert_eq!(
            parse_log(log).reason.as_deref(),
            Some("==1== ERROR: AddressSanitizer: heap-buffer-overflow on address")
        );
    }

    #[test]
    fn a_failure_without_a_log_says_where_to_look() {
        let o = parse_log("error: could not compile `results-core`\n");
        assert_eq!(o, Outcome::default());
        let (line, found) = summary_line("t", &o, Some(101), Path::new("runs/fuzz/x/t.log"));
        assert!(found);
        assert_eq!(
            line,
            "t: ? runs, ? exec/s, cov ?, ft ?, corpus ? (units/bytes) - FOUND: exit status 101; input: none written, \
             see runs/fuzz/x/t.log"
        );
        assert!(summary_line("t", &o, None, Path::new("l")).0.contains("FOUND: killed by a signal"));
    }

    #[test]
    fn lines_that_only_look_like_status_lines_are_ignored() {
        // '#' without a count, and a count line without coverage (libFuzzer's "#0 READ units").
        let o = parse_log("# cov: 9 ft: 9 corp: 9/9b\n#0\tREAD units: 42\n");
        assert_eq!((o.cov, o.ft, o.corpus), (None, None, None));
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn settings_default_and_validate() {
        let s = Settings::load(&vars(&[])).expect("defaults are valid");
        assert_eq!(s, Settings { targets: None, sanitizer: "address".into(), input_timeout: 10, rss_mb: 2048 });
        let s = Settings::load(&vars(&[("FUZZ_TARGETS", " a  b "), ("FUZZ_SANITIZER", "none"), ("FUZZ_RSS_MB", "")]))
            .expect("valid");
        assert_eq!(s.targets, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!((s.sanitizer.as_str(), s.rss_mb), ("none", 2048));
        for (name, bad) in
            [("FUZZ_SANITIZER", "memory"), ("FUZZ_TIMEOUT", "0"), ("FUZZ_RSS_MB", "+5"), ("FUZZ_TIMEOUT", "1s")]
        {
            let e = Settings::load(&vars(&[(name, bad)])).expect_err(bad);
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}
