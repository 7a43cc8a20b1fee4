//! Process supervision: messages, waiting with a deadline, pid files checked against `/proc`
//! (a recycled pid is never taken for ours), detached launches, SIGTERM-then-SIGKILL, log
//! tails, and running helper programs. No service knowledge here.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};

use crate::facts::{KILL_GRACE_SECS, LAUNCH_GRACE_SECS, LOG_TAIL_LINES};

/// A progress line on stderr, `stack: ...` (stdout is kept for what callers parse).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("stack: {}", format_args!($($arg)*)) };
}

/// A warning line on stderr.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { eprintln!("stack: warning: {}", format_args!($($arg)*)) };
}

/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(200);

/// Retries `ok` until it holds (true) or `within` has passed (false).
pub fn wait_for(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL);
    }
}

/// Whether we run as root (then PostgreSQL runs as the `postgres` system user).
pub fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// State letter of a process from `/proc/PID/stat` (R, S, Z, ...), None when there is none.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the state follows the last ')'.
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
}

/// Alive and not a zombie: a killed daemon whose parent left stays a zombie until init reaps it,
/// and in a container nobody may ever reap it.
pub fn pid_alive(pid: u32) -> bool {
    pid > 0 && proc_state(pid).is_some_and(|s| s != 'Z')
}

/// No such process at all: exited and reaped (a zombie still counts as present).
pub fn pid_gone(pid: u32) -> bool {
    i32::try_from(pid).ok().and_then(Pid::from_raw).is_none_or(|pid| rustix::process::test_kill_process(pid).is_err())
}

/// `/proc/PID/comm`, the program name (15 bytes at most).
pub fn proc_comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_owned()
}

/// `/proc/PID/cmdline`, arguments joined by spaces.
pub fn proc_cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}

/// Whether the process works in `dir` (daemons chdir to their data folder).
pub fn proc_cwd_is(pid: u32, dir: &Path) -> bool {
    match (fs::canonicalize(format!("/proc/{pid}/cwd")), fs::canonicalize(dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The value of `var` in the environment the process started with.
pub fn proc_env(pid: u32, var: &str) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    environ.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&prefix).map(str::to_owned)
    })
}

/// The pid written in `pidfile` (first line), if any.
pub fn read_pid(pidfile: &Path) -> Option<u32> {
    fs::read_to_string(pidfile).ok()?.lines().next()?.trim().parse().ok()
}

/// The pid in `pidfile` when that process is alive and carries the pid file's own path in its
/// environment variable `var` (set at launch), so a recycled pid is never taken for ours.
pub fn our_pid(pidfile: &Path, var: &str) -> Option<u32> {
    let pid = read_pid(pidfile)?;
    (pid_alive(pid) && proc_env(pid, var).as_deref() == pidfile.to_str()).then_some(pid)
}

/// Sends `sig`; a process already gone is not an error.
pub fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // ESRCH (already gone) is what we wanted anyway.
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Removes a file that may not exist.
pub fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}

/// The last lines of a log, on stderr, when it has any.
pub fn show_log_tail(log: &Path) {
    let Ok(mut file) = File::open(log) else { return };
    // Enough for 15 lines of even a chatty log without reading a big one whole.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return;
    }
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    say!("last lines of {}:", log.display());
    for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
        eprintln!("    {line}");
    }
}

/// Opens `path` for appending (created if missing): a launched process's stdout and stderr.
pub fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))
}

/// A process started detached by [`launch`].
pub struct Launched {
    /// Its pid (also in its pid file).
    pub pid: u32,
    child: Child,
}

impl Launched {
    /// Whether it has exited (reaps it if so: we are its parent while we run).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// Starts `program args` detached: `setsid` gives it its own session and no controlling
/// terminal, so it outlives us and the terminal; it execs in place (we are not a process group
/// leader's child), so the pid we record is the program's own. Runs in `/` with `envs` added,
/// stdin from /dev/null, output appended to `log`; its pid goes to `pidfile`.
pub fn launch(
    pidfile: &Path,
    log: &Path,
    envs: &[(String, String)],
    program: &Path,
    args: &[String],
) -> Result<Launched> {
    let out = append(log)?;
    let err = out.try_clone()?;
    let child = Command::new("setsid")
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start setsid {}", program.display()))?;
    let pid = child.id();
    fs::write(pidfile, format!("{pid}\n")).with_context(|| format!("cannot write {}", pidfile.display()))?;
    Ok(Launched { pid, child })
}

/// Waits until `healthy` holds; fails (with the log's tail) when the process exits first or
/// `timeout` passes. `what` names what was asked, e.g. a URL.
pub fn await_healthy(
    name: &str,
    launched: &mut Launched,
    log: &Path,
    what: &str,
    timeout: Duration,
    mut healthy: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if healthy() {
            return Ok(());
        }
        if launched.exited() || !pid_alive(launched.pid) {
            show_log_tail(log);
            bail!("{name} exited during start-up. Read {}.", log.display());
        }
        if Instant::now() >= deadline {
            show_log_tail(log);
            bail!(
                "{name} (pid {}) does not answer {what} after {}s. Read {}; 'cargo xtask stack \
                 down' stops it.",
                launched.pid,
                timeout.as_secs(),
                log.display()
            );
        }
        sleep(POLL);
    }
}

/// Stops `pid` with `first` (SIGTERM, or nginx's graceful SIGQUIT), then `then` (SIGKILL, or
/// SIGTERM) when it has not exited within `timeout`. `doing` says what the first signal makes it
/// do, for the log line.
pub fn terminate(
    name: &str,
    pid: u32,
    log: &Path,
    doing: &str,
    timeout: Duration,
    (first, then): (Signal, Signal),
) -> Result<()> {
    let doing = if doing.is_empty() { String::new() } else { format!("; {doing}") };
    say!("{name}: stopping (pid {pid}{doing})");
    signal(pid, first);
    if !wait_for(timeout, || !pid_alive(pid)) {
        warn!(
            "{name} (pid {pid}) did not exit within {}s of {}; sending {}. Read {}.",
            timeout.as_secs(),
            signal_name(first),
            signal_name(then),
            log.display()
        );
        signal(pid, then);
        if !wait_for(Duration::from_secs(KILL_GRACE_SECS), || !pid_alive(pid)) {
            bail!(
                "{name} (pid {pid}) survived {}; is it stuck in the kernel? Retry 'cargo xtask \
                 stack down'.",
                signal_name(then)
            );
        }
    }
    Ok(())
}

fn signal_name(sig: Signal) -> &'static str {
    if sig == Signal::TERM {
        "SIGTERM"
    } else if sig == Signal::KILL {
        "SIGKILL"
    } else if sig == Signal::QUIT {
        "SIGQUIT"
    } else {
        "a signal"
    }
}

/// Waits up to [`LAUNCH_GRACE_SECS`] for a daemon to write its pid file.
pub fn await_pidfile(pidfile: &Path) -> Option<u32> {
    let mut pid = None;
    wait_for(Duration::from_secs(LAUNCH_GRACE_SECS), || {
        pid = read_pid(pidfile);
        pid.is_some()
    });
    pid
}

/// Finds `program` on PATH, or in /usr/sbin and /usr/bin (root's PATH may lack sbin).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether `program` is installed.
pub fn have(program: &str) -> bool {
    find_program(program).is_some()
}

/// A program to run as a helper: its output captured, our lock not inherited.
pub fn cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null());
    c
}

/// Runs `c`, capturing its output; fails with its stderr when it cannot be started.
pub fn output(c: &mut Command) -> Result<Output> {
    c.output().with_context(|| format!("cannot run {:?}", c.get_program()))
}

/// Runs `c` and returns its trimmed stdout when it succeeds.
pub fn stdout_of(c: &mut Command) -> Option<String> {
    let out = c.stdin(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The lines of a text file (empty when it cannot be read).
pub fn read_lines(path: &Path) -> Vec<String> {
    File::open(path).map(|f| BufReader::new(f).lines().map_while(std::io::Result::ok).collect()).unwrap_or_default()
}
