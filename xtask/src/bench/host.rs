//! The processes a benchmark starts and what `/proc` says about them: the [`Children`] guard
//! (every server, sampler and wrk run stopped when the benchmark ends, fails or is
//! interrupted), CPU time of processes and of the whole machine, resident memory, and free
//! loopback ports. Parsing is pure and tested; reading `/proc` is a thin shell around it.

use std::collections::HashSet;
use std::fs;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rustix::process::Signal;

use crate::net::port_in_use;
use crate::supervise::{pid_alive, signal};

/// How long a child has between SIGTERM and SIGKILL when a benchmark stops it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Pids of every child any [`Children`] holds, for the interrupt handler.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT, SIGTERM or SIGHUP: SIGTERM to every child we started (the API drains, NGINX and
/// wrk stop), then exit 130. Without it a `kill` of the benchmark would leave its servers behind.
pub fn stop_children_on_signal() -> Result<()> {
    ctrlc::set_handler(|| {
        let pids = LIVE.lock().unwrap_or_else(PoisonError::into_inner).clone();
        eprintln!("bench: interrupted; stopping {} process(es) we started", pids.len());
        for pid in pids.iter().rev() {
            signal(*pid, Signal::TERM);
        }
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while pids.iter().any(|p| pid_alive(*p)) && std::time::Instant::now() < deadline {
            sleep(Duration::from_millis(100));
        }
        for pid in pids.iter().filter(|p| pid_alive(**p)) {
            signal(*pid, Signal::KILL);
        }
        std::process::exit(130);
    })
    .context("cannot install the interrupt handler")
}

/// The processes a benchmark started, stopped in reverse order (SIGTERM, then SIGKILL after
/// 10 s) when dropped: on success, on an error's early return, and (through
/// [`stop_children_on_signal`]) on an interrupt.
#[derive(Default)]
pub struct Children {
    list: Vec<(String, Child)>,
}

impl Children {
    /// Spawns `c` (its stdio already set) and keeps it; returns its pid.
    pub fn spawn(&mut self, name: &str, c: &mut Command) -> Result<u32> {
        let child = c.spawn().with_context(|| format!("cannot start {name} ({:?})", c.get_program()))?;
        let pid = child.id();
        LIVE.lock().unwrap_or_else(PoisonError::into_inner).push(pid);
        self.list.push((name.to_owned(), child));
        Ok(pid)
    }

    /// Whether child `pid` has exited: its status (it is then forgotten), or None while it runs.
    pub fn try_wait(&mut self, pid: u32) -> Result<Option<ExitStatus>> {
        let Some(i) = self.list.iter().position(|(_, c)| c.id() == pid) else {
            bail!("pid {pid} is not one of ours");
        };
        let status = self.list[i].1.try_wait()?;
        if status.is_some() {
            self.forget(i);
        }
        Ok(status)
    }

    /// Whether child `pid` still runs (false once it exited or was stopped).
    pub fn running(&mut self, pid: u32) -> bool {
        matches!(self.try_wait(pid), Ok(None))
    }

    /// Stops child `pid` now (SIGTERM, then SIGKILL) and forgets it.
    pub fn stop(&mut self, pid: u32) {
        if let Some(i) = self.list.iter().position(|(_, c)| c.id() == pid) {
            stop_child(&mut self.list[i].1);
            self.forget(i);
        }
    }

    fn forget(&mut self, i: usize) {
        let (_, child) = self.list.remove(i);
        LIVE.lock().unwrap_or_else(PoisonError::into_inner).retain(|p| *p != child.id());
    }
}

fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child.id(), Signal::TERM);
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while matches!(child.try_wait(), Ok(None)) {
        if std::time::Instant::now() >= deadline {
            eprintln!("bench: pid {} did not stop on SIGTERM within 10 s; sending SIGKILL", child.id());
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        sleep(Duration::from_millis(100));
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.list.pop() {
            stop_child(&mut child);
            LIVE.lock().unwrap_or_else(PoisonError::into_inner).retain(|p| *p != child.id());
        }
    }
}

/// User plus system CPU time, in clock ticks, from the text of `/proc/PID/stat` (all threads).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (1), ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime (12), stime (13).
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks used so far by the processes `pids` (a vanished one counts 0).
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| parse_stat_ticks(&s))
        .sum()
}

/// `(total, idle)` clock ticks of all cores since boot from `/proc/stat`'s `cpu` line (idle
/// includes iowait).
pub fn parse_machine_ticks(proc_stat: &str) -> Option<(u64, u64)> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    if v.len() < 8 {
        return None;
    }
    Some((v.iter().sum(), v[3] + v[4]))
}

/// The machine's `(total, idle)` ticks now.
pub fn machine_ticks() -> (u64, u64) {
    fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_machine_ticks).unwrap_or((0, 0))
}

/// Percent of the machine busy between two [`machine_ticks`] readings.
pub fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.0.saturating_sub(before.0);
    let idle = after.1.saturating_sub(before.1);
    if total == 0 { 0.0 } else { 100.0 * ratio(total.saturating_sub(idle), total) }
}

/// `a / b` as a float (0 when b is 0).
#[expect(clippy::cast_precision_loss, reason = "tick and request counts are far below 2^53")]
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// VmRSS in kB from the text of `/proc/PID/status`.
pub fn parse_rss_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// The resident memory of `pid` in kB, None when it is gone.
pub fn rss_kb(pid: u32) -> Option<u64> {
    parse_rss_kb(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Samples the resident memory of a process every 0.5 s on a thread until [`RssSampler::peak_kb`].
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<u64>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_kb(pid).unwrap_or(0));
                sleep(Duration::from_millis(500));
            }
            peak
        });
        RssSampler { stop, handle }
    }

    /// Stops sampling; the largest VmRSS seen, kB.
    pub fn peak_kb(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// Hands out `host` ports nothing listens on, each once, from 20000..32000: below the usual
/// ephemeral range, where wrk's and the replicas' own connections take their local ports.
pub struct Ports {
    host: String,
    used: HashSet<u16>,
    state: u64,
}

impl Ports {
    /// A fresh allocator for `host`.
    pub fn new(host: &str) -> Ports {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        #[expect(clippy::cast_possible_truncation, reason = "any bits of the clock make a seed")]
        let state = (nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1;
        Ports { host: host.to_owned(), used: HashSet::new(), state }
    }

    /// A free port.
    pub fn free(&mut self) -> Result<u16> {
        for _ in 0..500 {
            // xorshift64: enough spread for picking ports.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let port = 20_000 + u16::try_from(self.state % 12_000).unwrap_or(0);
            if self.used.contains(&port) || port_in_use(&self.host, port) {
                continue;
            }
            self.used.insert(port);
            return Ok(port);
        }
        bail!("found no free port on {}", self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_is_user_plus_system_ticks_even_with_spaces_in_the_name() {
        let stat = "1234 (tokio rt (1)) S 1 1234 1234 0 -1 4194560 500 0 0 0 170 30 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(200));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn machine_ticks_count_iowait_as_idle() {
        let proc_stat = "cpu  10 1 5 100 4 0 2 0 0 0\ncpu0 5 0 2 50 2 0 1 0 0 0\n";
        assert_eq!(parse_machine_ticks(proc_stat), Some((122, 104)));
        assert!((busy_pct((0, 0), (200, 50)) - 75.0).abs() < 1e-9);
        assert!(busy_pct((10, 5), (10, 5)).abs() < 1e-9);
    }

    #[test]
    fn rss_is_read_from_vmrss() {
        assert_eq!(parse_rss_kb("Name:\tapi\nVmPeak:\t 999 kB\nVmRSS:\t   15976 kB\n"), Some(15976));
        assert_eq!(parse_rss_kb("Name:\tzombie\n"), None);
    }

    #[test]
    fn ports_are_handed_out_once_and_in_range() {
        let mut ports = Ports::new("127.0.0.1");
        let a = ports.free().expect("a free port");
        let b = ports.free().expect("another");
        assert_ne!(a, b);
        assert!((20_000..32_000).contains(&a));
    }
}
