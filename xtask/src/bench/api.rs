//! `cargo xtask bench api [RUNS]`: the API's read throughput against a static-file ceiling,
//! side by side.
//!
//! Targets, all ours, on free 127.0.0.1 ports:
//! - `ceiling`: a private NGINX master (scripts/bench/nginx.conf.template, never the system
//!   one), worker_processes 1 (to compare with one API process), access_log off,
//!   open_file_cache, answering every GET /v1/results/<id> with one static file: a real API
//!   response body fetched first, so the body has exactly the API's size.
//! - `api`: one API replica (target/release/api) with default settings, reading the stack's
//!   Redis and PostgreSQL under the key prefix BENCH_KEY_PREFIX.
//! - `api-redis`: the same with API_NEAR_CACHE_MB=0: every lookup a Redis round trip (the read
//!   path before the near cache), side by side, so the near cache's gain is a ratio of one run.
//!
//! Load: wrk ([`crate::bench::wrk`]), each target warmed up (not measured), then the targets
//! interleaved RUNS times. Reported as medians over the rounds: req/s; p50, p90, p99 and max
//! latency (wrk's: NOT corrected for coordinated omission); the ratios to the ceiling (medians
//! of the per-round ratios); bytes per response; the server process' CPU (cores, and
//! microseconds per request, from /proc/PID/stat) and how busy the whole machine was; the peak
//! RSS of each server process (VmRSS every 0.5 s; nginx: its worker); non-2xx responses and
//! socket errors (both must be 0: the benchmark fails otherwise); and the API's lookup tiers
//! from its /metrics. Then one extra api run of BENCH_PROFILE_SECONDS + 2 s, during which the
//! admin port's /debug/pprof/profile is fetched: the flamegraph SVG is saved and its top frames
//! printed ([`crate::bench::flamegraph`]). Goals: api/ceiling >= 0.8 (0.5 before the near cache); api peak RSS < 100 MB;
//! 0 non-2xx responses (enforced).

use std::fmt::Write as _;
use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::flamegraph::{SELF_TOP, TOP, top_frames, total_samples};
use crate::bench::host::{
    Children, Ports, RssSampler, busy_pct, clock_ticks_per_second, cpu_ticks, machine_ticks, ratio, rss_kb,
};
use crate::bench::result::Table;
use crate::bench::servers::{
    ApiSpec, HOST, HttpSettings, NginxDir, Replica, check_data_set, ensure_tools, fill, get, get_ok, http_settings,
    label, metric_sum, nginx_version, nginx_workers, start_api, start_nginx, vars, wrk_version,
};
use crate::bench::stores::{Stores, ensure_data_set};
use crate::bench::wrk::{self, COMMON_COLUMNS, Load, WRK_TIMEOUT, common_cells, id_range};
use crate::bench::{RESULT_FILE_HELP, Run, Vars, binaries, build, cores, get as var, load_average, result_file};
use crate::facts::{Variable, repo_dir};

/// The variables `bench api` reads. DATABASE_URL and REDIS_URL (default: the stack's, as
/// `cargo xtask stack env` prints them; loopback only) name the stores; no API_* or SEEDER_*
/// variable of the caller reaches the replicas or the seeder.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "BENCH_KEY_PREFIX",
        default: "bench",
        help: "Redis key prefix of the data set; `seeder --key-prefix` runs first (a no-op when \
               loaded; loads Redis from PostgreSQL when only Redis lacks it).",
    },
    vars::DURATION,
    vars::WARMUP,
    vars::CONNECTIONS,
    vars::THREADS,
    Variable {
        name: "BENCH_PROFILE_SECONDS",
        default: "8",
        help: "Length of the CPU profile, 0..60 (0 skips the profile run).",
    },
    vars::BUILD,
    vars::START_TIMEOUT,
    Variable { name: "BENCH_RESULT_FILE", default: "docs/bench/api.json", help: RESULT_FILE_HELP },
    vars::STORES,
];

const TARGETS: [&str; 3] = ["ceiling", "api", "api-redis"];

pub(crate) fn header() -> String {
    format!("round,target,{COMMON_COLUMNS},server_cpu_cores,server_cpu_us_per_request,machine_busy_pct,rss_peak_mb")
}

/// The settings of one invocation.
struct Settings {
    http: HttpSettings,
    profile_seconds: u64,
}

fn settings(vars: &impl Vars) -> Result<Settings> {
    let profile_seconds = var(vars, VARIABLES, "BENCH_PROFILE_SECONDS").parse::<u64>().ok().filter(|s| *s <= 60);
    Ok(Settings {
        http: http_settings(vars, VARIABLES)?,
        profile_seconds: profile_seconds.context("BENCH_PROFILE_SECONDS must be 0..60")?,
    })
}

/// Runs the benchmark.
#[expect(clippy::too_many_lines, reason = "one benchmark read top to bottom, as its summary reads")]
pub fn run(vars: &impl Vars, runs: u32) -> Result<()> {
    let Settings { http: s, profile_seconds } = settings(vars)?;
    let result = result_file(vars, "api");
    ensure_tools(&[])?;
    let stores = Stores::find()?;
    if s.build {
        build(&["api", "seeder"])?;
    }
    let bins = binaries(&["api", "seeder"])?;
    let (api_bin, seeder_bin) = (&bins[0], &bins[1]);
    let wrk_v = wrk_version();
    let mut run = Run::create("api", runs, &header())?;
    fs::create_dir_all(run.file("wrk"))?;
    let seeder_said = ensure_data_set(seeder_bin, &stores, &s.prefix, &run.out)?;

    // The folder outlives the processes: NGINX is stopped (children dropped) before it goes.
    let mut dirs: Vec<NginxDir> = Vec::new();
    let mut children = Children::default();
    let mut ports = Ports::new(HOST);
    let spec = ApiSpec { bin: api_bin, stores: &stores, prefix: &s.prefix, start_timeout: s.start_timeout };
    let api = start_api(&mut children, &run, &spec, "api", (ports.free()?, ports.free()?), &[])?;
    let redis_only = start_api(
        &mut children,
        &run,
        &spec,
        "api-redis",
        (ports.free()?, ports.free()?),
        &[("API_NEAR_CACHE_MB", "0".into())],
    )?;
    let (first, last) = id_range();
    check_data_set(api.port, (first, last))?;

    let dir = NginxDir::create("bench-api-nginx", run.file("nginx-error.log"))?;
    let body =
        get_ok(api.port, &format!("/v1/results/{first}")).context("fetching a result body from the API failed")?;
    dir.put_body(&body)?;
    fs::write(run.file("result.json"), &body)?;
    let nginx_port = ports.free()?;
    let template = fs::read_to_string(repo_dir().join("scripts/bench/nginx.conf.template"))?;
    let dir_text = dir.path.display().to_string();
    fs::write(
        dir.path.join("nginx.conf"),
        fill(&template, &[("DIR", &dir_text), ("LISTEN", &format!("{HOST}:{nginx_port}"))]),
    )?;
    let master = start_nginx(&mut children, &run, "nginx", &dir.path)?;
    dirs.push(dir);
    let answers = crate::supervise::wait_for(Duration::from_secs(s.start_timeout), || {
        get_ok(nginx_port, &format!("/v1/results/{last}")).is_some()
    });
    if !answers {
        bail!(
            "our nginx did not answer on http://{HOST}:{nginx_port}; see {}",
            dirs[0].path.join("error.log").display()
        );
    }
    if get_ok(nginx_port, "/v1/results/1234567").as_deref() != Some(body.as_str()) {
        bail!("our nginx does not serve result.json for /v1/results/<id>");
    }
    let worker =
        *nginx_workers(master).first().with_context(|| format!("our nginx master {master} has no worker process"))?;
    note!("ceiling: nginx master {master} (worker {worker}) on http://{HOST}:{nginx_port}, body {} bytes", body.len());

    let targets: [(&str, u32, u16); 3] =
        [("ceiling", worker, nginx_port), ("api", api.pid, api.port), ("api-redis", redis_only.pid, redis_only.port)];
    let url = |port: u16| format!("http://{HOST}:{port}");
    let hz = clock_ticks_per_second();
    let rss_start: Vec<u64> = targets.iter().map(|t| rss_kb(t.1).unwrap_or(0)).collect();
    let load_before = load_average();

    for (name, _, port) in targets {
        note!("warm-up: {name}, {}s (not measured)", s.warmup);
        wrk::run(&mut children, &url(port), s.warmup, s.load, &run.file(&format!("wrk/warmup-{name}.txt")), name)?;
    }
    for round in 1..=runs {
        let mut ceiling_rps = 0.0;
        for (name, pid, port) in targets {
            note!("round {round}/{runs}: {name}, {}s", s.duration);
            let out = run.file(&format!("wrk/run{round}-{name}.txt"));
            let sampler = RssSampler::start(pid);
            let m0 = machine_ticks();
            let (cpu0, t0) = (cpu_ticks(&[pid]), Instant::now());
            let summary = wrk::run(&mut children, &url(port), s.duration, s.load, &out, name);
            let (cpu1, wall) = (cpu_ticks(&[pid]), t0.elapsed().as_secs_f64());
            let m1 = machine_ticks();
            let peak = sampler.peak_kb();
            let summary = summary?;
            if !crate::supervise::pid_alive(pid) {
                bail!("the {name} server process (pid {pid}) died during the run");
            }
            if name == "ceiling" {
                ceiling_rps = summary.rps;
            }
            let cpu_s = ratio(cpu1 - cpu0, hz);
            let mut row = vec![round.to_string(), name.to_owned()];
            row.extend(common_cells(&summary, ceiling_rps));
            row.extend([
                format!("{:.2}", cpu_s / wall),
                format!("{:.1}", per_request_us(cpu_s, summary.requests)),
                format!("{:.0}", busy_pct(m0, m1)),
                format!("{:.1}", ratio(peak, 1024)),
            ]);
            run.record(row)?;
            if summary.non2xx != 0 {
                bail!(
                    "{name} answered {} non-2xx responses in round {round} (must be 0): see {}",
                    summary.non2xx,
                    out.display()
                );
            }
            if summary.socket_errors != 0 {
                bail!(
                    "{name} had {} socket errors/timeouts in round {round} (must be 0): see {}",
                    summary.socket_errors,
                    out.display()
                );
            }
        }
    }
    let rss_end: Vec<u64> = targets.iter().map(|t| rss_kb(t.1).unwrap_or(0)).collect();
    let lookups_api = lookups(&api);
    let lookups_redis = lookups(&redis_only);
    let profile =
        if profile_seconds > 0 { Some(profile(&mut children, &run, &api, s.load, profile_seconds, hz)?) } else { None };

    let t = &run.table;
    let mut text = String::new();
    let w = &mut text;
    let _ = writeln!(
        w,
        "API benchmark (cargo xtask bench api), {}: {runs} interleaved round(s), medians over the rounds",
        run.stamp
    );
    let _ = writeln!(
        w,
        "machine: {} cores, SHARED by wrk, the measured server, Redis and PostgreSQL (nothing pinned): the",
        cores()
    );
    let _ = writeln!(
        w,
        "         absolute figures are this box's, the ratios are the point. Load average before: {load_before}"
    );
    let _ = writeln!(
        w,
        "load:    {wrk_v}, {} thread, {} keep-alive connections, {}s per run after {}s of",
        s.load.threads, s.load.connections, s.duration, s.warmup
    );
    let _ = writeln!(
        w,
        "         warm-up per target (not measured); GET /v1/results/<id>, id uniform in {first}..{last} (seed 42);"
    );
    let _ = writeln!(
        w,
        "         body {} bytes. Latencies are wrk's, which does NOT correct for coordinated omission.",
        body.len()
    );
    let _ = writeln!(
        w,
        "targets: ceiling     = {}, worker_processes 1 (vs one API process), static result.json",
        nginx_version()
    );
    let _ = writeln!(w, "                       (a real API body), access_log off, open_file_cache");
    let _ = writeln!(w, "         api         = target/release/api, default settings, Redis key prefix '{}'", s.prefix);
    let _ = writeln!(
        w,
        "         api-redis   = the same with API_NEAR_CACHE_MB=0 (no near cache: a Redis round trip per lookup)"
    );
    let _ = writeln!(w, "data:    seeder --key-prefix {}: {seeder_said}", s.prefix);
    let _ = writeln!(w);
    latency_table(w, t, &TARGETS, 12);
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "{:<12} {:>7} {:>12} {:>12} {:>10} {:>13}",
        "target", "B/resp", "server cores", "CPU us/req", "busy %", "peak RSS MB"
    );
    for name in TARGETS {
        let m = |c: &str| t.median_of(name, c);
        let _ = writeln!(
            w,
            "{name:<12} {:>7.0} {:>12.2} {:>12.1} {:>10.0} {:>13.1}",
            m("bytes_per_response"),
            m("server_cpu_cores"),
            m("server_cpu_us_per_request"),
            m("machine_busy_pct"),
            t.max_of(name, "rss_peak_mb")
        );
    }
    let _ =
        writeln!(w, "(/ceiling: median of the per-round ratios of req/s; max ms: median of the runs' maximum latency;");
    let _ = writeln!(
        w,
        " worst ms: the largest of all runs; non-2xx, errors (socket errors + timeouts > {WRK_TIMEOUT}): totals over"
    );
    let _ =
        writeln!(w, " all rounds; B/resp: bytes per response, headers included; server cores: CPU time of the server");
    let _ = writeln!(
        w,
        " process (nginx: its worker) / wall time; busy %: all cores, everything on the machine; peak RSS:"
    );
    let _ = writeln!(w, " VmRSS of the server process sampled every 0.5 s during its runs)");
    let _ = writeln!(w);
    let api_ratio = t.median_of("api", "ratio_to_ceiling");
    let api_rss = t.max_of("api", "rss_peak_mb");
    let _ = writeln!(
        w,
        "goals:   api/ceiling >= 0.8: {api_ratio:.3} ({}); api peak RSS < 100 MB: {api_rss:.1} MB ({}); non-2xx = 0: met",
        verdict(api_ratio >= 0.8),
        verdict(api_rss < 100.0)
    );
    let _ = writeln!(
        w,
        "         api-redis/ceiling: {:.3} (without the near cache)",
        t.median_of("api-redis", "ratio_to_ceiling")
    );
    let mb = |kb: u64| ratio(kb, 1024);
    let _ = writeln!(
        w,
        "RSS:     api {:.1} MB when ready -> {:.1} MB after the rounds; api-redis {:.1} -> {:.1} MB",
        mb(rss_start[1]),
        mb(rss_end[1]),
        mb(rss_start[2]),
        mb(rss_end[2])
    );
    let _ = writeln!(w, "lookups: api:         {lookups_api}");
    let _ = writeln!(w, "         api-redis:   {lookups_redis}");
    let _ = writeln!(w);
    match &profile {
        None => {
            let _ = writeln!(w, "profile: skipped (BENCH_PROFILE_SECONDS=0)");
        }
        Some((line, frames)) => {
            let _ = writeln!(w, "{line}");
            let _ = writeln!(
                w,
                "top frames of flamegraph-api.svg: top {TOP} by INCLUSIVE share (a frame's samples include its callees';"
            );
            let _ = writeln!(
                w,
                "all-inclusive frames >= 95% - root, thread, thread start-up, runtime worker loop - left out; a chain of"
            );
            let _ = writeln!(
                w,
                "wrappers keeping >= 95% of its first frame is shown once, [+N] = frames folded into it), then top {SELF_TOP} by self:"
            );
            let _ = write!(w, "{frames}");
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "files:   {}/: summary.txt runs.csv api.json flamegraph-api.svg wrk/ *.log", run.shown());
    run.summary(&text)?;

    let meta = vec![
        ("wrk_connections".to_owned(), s.load.connections.to_string()),
        ("duration_s".to_owned(), s.duration.to_string()),
        ("body_bytes".to_owned(), body.len().to_string()),
        ("load_before".to_owned(), load_before),
    ];
    let written = run.write_result(meta, result.as_deref());
    drop(children);
    drop(dirs);
    written
}

/// CPU microseconds per request.
pub fn per_request_us(cpu_seconds: f64, requests: u64) -> f64 {
    if requests == 0 { 0.0 } else { cpu_seconds * 1e6 / ratio(requests, 1) }
}

/// "met" or "NOT MET".
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// The latency table, one line per target, `width` wide in its first column (api and stack).
pub fn latency_table(w: &mut String, t: &Table, targets: &[&str], width: usize) {
    let _ = writeln!(
        w,
        "{:<width$} {:>8} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>8} {:>7}",
        "target", "req/s", "/ceiling", "p50 ms", "p90 ms", "p99 ms", "max ms", "worst ms", "non-2xx", "errors"
    );
    for name in targets {
        latency_row(w, t, name, width);
    }
}

/// One line of the latency table: medians, the worst maximum, and the error totals.
fn latency_row(w: &mut String, t: &Table, name: &str, width: usize) {
    let m = |c: &str| t.median_of(name, c);
    let _ = writeln!(
        w,
        "{name:<width$} {:>8.0} {:>9.2} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>9.2} {:>8.0} {:>7.0}",
        m("rps"),
        m("ratio_to_ceiling"),
        m("p50_ms"),
        m("p90_ms"),
        m("p99_ms"),
        m("max_ms"),
        t.max_of(name, "max_ms"),
        t.sum_of(name, "non2xx"),
        t.sum_of(name, "socket_errors"),
    );
}

/// The API's own view of where its answers came from (result_lookups_total, since its start).
fn lookups(r: &Replica) -> String {
    match get_ok(r.admin, "/metrics") {
        Some(text) => lookups_line(&text),
        None => "(metrics unavailable)".into(),
    }
}

/// `in-process cache hits X% of N lookups; tier/outcome=n ...` from a /metrics text.
pub fn lookups_line(metrics: &str) -> String {
    let mut by: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("result_lookups_total{")) {
        let key = format!("{}/{}", label(line, "tier").unwrap_or(""), label(line, "outcome").unwrap_or(""));
        *by.entry(key).or_default() += metric_sum(line, "result_lookups_total", |_| true);
    }
    let total = by.values().fold(0.0, |a, b| a + b);
    let hits = by.get("memory/hit").copied().unwrap_or(0.0);
    let mut line = format!(
        "in-process cache hits {:.1}% of {total:.0} lookups;",
        if total > 0.0 { 100.0 * hits / total } else { 0.0 }
    );
    for (k, n) in by.iter().filter(|(k, _)| *k != "memory/hit") {
        let _ = write!(line, " {k}={n:.0}");
    }
    line
}

/// The profile run: api under load for BENCH_PROFILE_SECONDS + 2 s, the flamegraph fetched
/// meanwhile. Returns the summary's profile line and the top frames.
fn profile(
    children: &mut Children,
    run: &Run,
    api: &Replica,
    load: Load,
    secs: u64,
    hz: u64,
) -> Result<(String, String)> {
    note!("profile: api under load for {}s, CPU profile of {secs}s", secs + 2);
    let out = run.file("wrk/profile-api.txt");
    let wrk_pid = wrk::start(children, &format!("http://{HOST}:{}", api.port), secs + 2, load, &out)?;
    sleep(Duration::from_secs(1));
    let cpu0 = cpu_ticks(&[api.pid]);
    let svg = get(api.admin, &format!("/debug/pprof/profile?seconds={secs}"), Duration::from_secs(secs + 20))
        .filter(|r| r.status == 200)
        .with_context(|| format!("fetching the profile from http://{HOST}:{} failed", api.admin))?
        .body;
    let cpu1 = cpu_ticks(&[api.pid]);
    fs::write(run.file("flamegraph-api.svg"), &svg)?;
    let summary = wrk::finish(children, wrk_pid, secs + 2, &out, "api (profile run)")?;
    if summary.non2xx != 0 {
        bail!("api answered non-2xx responses during the profile run: see {}", out.display());
    }
    let samples = total_samples(&svg);
    let cpu_s = ratio(cpu1 - cpu0, hz);
    #[expect(clippy::cast_precision_loss, reason = "sample counts are small")]
    let cover = if cpu_s > 0.0 { 100.0 * samples as f64 / (99.0 * cpu_s) } else { 0.0 };
    let line = format!(
        "profile run: {:.0} req/s, p99 {:.2} ms while sampled at 99 Hz for {secs} s; the {samples} samples cover\n\
         ~{cover:.0}% of the API's {cpu_s:.1} CPU-seconds (pprof-rs drops samples in libc, libgcc, pthread and\n\
         the vDSO: system calls, malloc/free and memcpy are missing from the flamegraph)",
        summary.rps,
        ratio(summary.p99_us, 1000),
    );
    Ok((line, top_frames(&svg, TOP, SELF_TOP)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_line_shows_the_cache_share_and_the_other_tiers() {
        let m = "result_lookups_total{tier=\"memory\",outcome=\"hit\"} 25\n\
                 result_lookups_total{tier=\"redis\",outcome=\"hit\"} 70\n\
                 result_lookups_total{tier=\"redis\",outcome=\"miss\"} 5\n";
        assert_eq!(lookups_line(m), "in-process cache hits 25.0% of 100 lookups; redis/hit=70 redis/miss=5");
        assert_eq!(lookups_line(""), "in-process cache hits 0.0% of 0 lookups;");
    }

    #[test]
    fn settings_are_checked() {
        let vars = |k: &str, v: &str| std::collections::HashMap::from([(k.to_owned(), v.to_owned())]);
        assert!(settings(&vars("BENCH_PROFILE_SECONDS", "61")).is_err());
        assert_eq!(settings(&vars("BENCH_PROFILE_SECONDS", "0")).expect("valid").profile_seconds, 0);
        assert!(settings(&vars("BENCH_KEY_PREFIX", "a:b")).is_err());
        let d = settings(&vars("X", "")).expect("defaults").http;
        assert_eq!((d.duration, d.warmup, d.load.connections, d.load.threads, d.start_timeout), (15, 5, 64, 1, 60));
        assert_eq!(d.prefix, "bench");
        assert!(d.build);
    }

    #[test]
    fn cpu_per_request_is_in_microseconds() {
        assert!((per_request_us(1.5, 30_000) - 50.0).abs() < 1e-9);
        assert!(per_request_us(1.0, 0).abs() < 1e-9);
    }
}
