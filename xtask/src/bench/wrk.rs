//! wrk, the HTTP load of `bench api` and `bench stack`: one bounded run against a base URL with
//! scripts/bench/results.lua (uniformly random IDs over the data set; wrk needs its Lua script
//! for per-request paths and for the machine-readable `BENCH` line it prints at the end), and
//! that line parsed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use results_core::generate::{DEFAULT_FIRST_ID, DEFAULT_STUDENTS};

use crate::bench::host::Children;
use crate::facts::repo_dir;

/// wrk's per-request timeout: above the API's 5 s request timeout, so a slow answer is measured,
/// not dropped.
pub const WRK_TIMEOUT: &str = "10s";

/// The first and last registration numbers of the default data set, the IDs wrk draws from.
pub fn id_range() -> (u32, u32) {
    (DEFAULT_FIRST_ID, DEFAULT_FIRST_ID + DEFAULT_STUDENTS - 1)
}

/// The wrk script (kept in Lua: wrk runs nothing else).
pub fn script() -> PathBuf {
    repo_dir().join("scripts/bench/results.lua")
}

/// How wrk loads a target.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// wrk threads.
    pub threads: u32,
    /// Keep-alive connections.
    pub connections: u32,
}

/// The figures of one wrk run, from the `BENCH` line results.lua prints.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Responses received.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles and maximum, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// Responses with a status >= 400.
    pub non2xx: u64,
    /// Socket errors (connect, read, write) and timeouts together.
    pub socket_errors: u64,
    /// Bytes received, headers included.
    pub bytes: u64,
}

/// Parses the `BENCH name=value ...` line of a wrk output; None when there is none or a field
/// is missing.
pub fn parse(output: &str) -> Option<Summary> {
    let line = output.lines().find_map(|l| l.strip_prefix("BENCH "))?;
    let field = |name: &str| -> Option<&str> {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let int = |name: &str| -> Option<u64> { field(name)?.parse().ok() };
    Some(Summary {
        requests: int("requests")?,
        rps: field("rps")?.parse().ok()?,
        p50_us: int("p50_us")?,
        p90_us: int("p90_us")?,
        p99_us: int("p99_us")?,
        max_us: int("max_us")?,
        non2xx: int("non2xx")?,
        socket_errors: int("connect")? + int("read")? + int("write")? + int("timeout")?,
        bytes: int("bytes")?,
    })
}

/// Starts one wrk run of `seconds` against `base_url`, its output to `out`; [`finish`] waits.
/// Registered with `children`, so it is stopped if we stop early.
pub fn start(children: &mut Children, base_url: &str, seconds: u64, load: Load, out: &Path) -> Result<u32> {
    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (first, last) = id_range();
    let mut c = std::process::Command::new("wrk");
    c.arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", WRK_TIMEOUT, "--latency", "-s"])
        .arg(script())
        .arg(format!("{base_url}/"))
        .args(["--", &first.to_string(), &last.to_string()])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    children.spawn("wrk", &mut c)
}

/// Waits for the wrk run `pid` (at most `seconds` + 30 s, then it is killed) and returns its
/// summary; fails when wrk failed or printed none. `what` names the target for messages.
pub fn finish(children: &mut Children, pid: u32, seconds: u64, out: &Path, what: &str) -> Result<Summary> {
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    let status = loop {
        if let Some(status) = children.try_wait(pid)? {
            break status;
        }
        if Instant::now() >= deadline {
            children.stop(pid);
            bail!("wrk ran past its {seconds} s against {what} and was stopped: see {}", out.display());
        }
        sleep(Duration::from_millis(100));
    };
    if !status.success() {
        bail!("wrk failed ({status}) against {what}: see {}", out.display());
    }
    let text = fs::read_to_string(out).unwrap_or_default();
    parse(&text).with_context(|| format!("wrk printed no summary against {what}: see {}", out.display()))
}

/// One wrk run, started and waited for.
pub fn run(
    children: &mut Children,
    base_url: &str,
    seconds: u64,
    load: Load,
    out: &Path,
    what: &str,
) -> Result<Summary> {
    let pid = start(children, base_url, seconds, load, out)?;
    finish(children, pid, seconds, out, what)
}

/// The columns `rps` .. `ratio_to_ceiling` of `bench api` and `bench stack` (the same in
/// both): req/s, p50/p90/p99/max in ms, non-2xx, socket errors, bytes per response and req/s
/// over the ceiling's of the same round.
pub const COMMON_COLUMNS: &str =
    "rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling";

/// The cells of [`COMMON_COLUMNS`] for one run.
pub fn common_cells(s: &Summary, ceiling_rps: f64) -> Vec<String> {
    let ms = |us: u64| format!("{:.3}", crate::bench::host::ratio(us, 1000));
    vec![
        format!("{:.0}", s.rps),
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.max_us),
        s.non2xx.to_string(),
        s.socket_errors.to_string(),
        format!("{:.0}", crate::bench::host::ratio(s.bytes, s.requests)),
        format!("{:.3}", if ceiling_rps > 0.0 { s.rps / ceiling_rps } else { 0.0 }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_line_is_read_with_socket_errors_summed() {
        let out = "Running 15s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n\
                   BENCH requests=300000 duration_us=15000000 rps=20000.5 p50_us=2800 p90_us=4300 \
                   p99_us=6300 max_us=18476 non2xx=0 connect=1 read=2 write=3 timeout=4 bytes=197400000\n";
        let s = parse(out).expect("a BENCH line");
        assert_eq!(s.requests, 300_000);
        assert!((s.rps - 20000.5).abs() < 1e-9);
        assert_eq!((s.p50_us, s.p90_us, s.p99_us, s.max_us), (2800, 4300, 6300, 18476));
        assert_eq!(s.socket_errors, 10);
        assert_eq!(s.bytes, 197_400_000);
    }

    #[test]
    fn common_cells_are_in_ms_and_relative_to_the_ceiling() {
        let s = Summary {
            requests: 1000,
            rps: 20000.4,
            p50_us: 2825,
            p90_us: 4308,
            p99_us: 6302,
            max_us: 18476,
            non2xx: 0,
            socket_errors: 0,
            bytes: 658_400,
        };
        assert_eq!(common_cells(&s, 40000.0), ["20000", "2.825", "4.308", "6.302", "18.476", "0", "0", "658", "0.500"]);
        assert_eq!(COMMON_COLUMNS.split(',').count(), common_cells(&s, 1.0).len());
    }

    #[test]
    fn no_bench_line_or_a_missing_field_is_no_summary() {
        assert_eq!(parse("unable to connect to 127.0.0.1:1 Connection refused\n"), None);
        assert_eq!(parse("BENCH requests=1 rps=1.0\n"), None);
    }

    #[test]
    fn the_id_range_is_the_default_data_set() {
        assert_eq!(id_range(), (1_000_000, 1_674_822));
    }
}
