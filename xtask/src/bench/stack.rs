//! `cargo xtask bench stack [RUNS]`: the whole read path (NGINX edge -> three API replicas ->
//! Redis) against the ceiling of the same shape, with the edge's micro-cache off and on.
//!
//! Targets, all ours, on free 127.0.0.1 ports (the stack's own replicas and NGINX, if running,
//! are not touched):
//! - `stack-nocache`: an edge rendered from nginx/nginx.conf.template by nginx/render.sh (the
//!   one renderer the stack, compose and k8s use; micro-cache off, rate limit off), proxying to
//!   three API replicas (target/release/api, default settings but API_WORKER_THREADS =
//!   BENCH_API_THREADS) that read the stack's Redis and PostgreSQL under BENCH_KEY_PREFIX.
//! - `stack-cache`: a second edge with the micro-cache on (1 s), in front of the same replicas.
//! - `ceiling`: the SAME edge configuration as stack-nocache (checked: the rendered files
//!   differ only in ports, folders and upstreams) proxying to a static upstream that costs
//!   almost nothing: ONE private NGINX master with worker_processes 3 listening on three ports,
//!   answering every /v1/results/<id> with a real API body
//!   (scripts/bench/static-upstream.conf.template). So ceiling = the proxy hop + an upstream
//!   doing no work: the best this shape can do on this machine.
//!
//! Load as in `bench api`. Reported as medians: req/s, latencies, the ratios to the ceiling,
//! bytes per response, CPU of the edge's workers and cache manager and of the upstream
//! processes (cores, and microseconds per request, with Redis' from INFO cpu: what
//! docs/capacity-model.md is computed from), how busy the machine was, the requests each
//! replica answered per run (their /metrics) and, for stack-cache, the share that reached a
//! replica. Enforced: 0 non-2xx responses and 0 socket errors, X-Cache-Status BYPASS with the
//! cache off and a HIT with it on. Goal (reported): stack-nocache/ceiling >= 0.7.

use std::fmt::Write as _;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::api::{latency_table, per_request_us, verdict};
use crate::bench::host::{Children, Ports, busy_pct, clock_ticks_per_second, cpu_ticks, machine_ticks, ratio};
use crate::bench::servers::{
    ApiSpec, HOST, HttpSettings, NginxDir, Replica, check_data_set, ensure_tools, fill, get, get_ok, http_settings,
    label, metric_sum, nginx_version, nginx_workers, start_api, start_nginx, vars, wrk_version,
};
use crate::bench::stores::{Stores, ensure_data_set, redis_info};
use crate::bench::wrk::{self, COMMON_COLUMNS, WRK_TIMEOUT, common_cells, id_range};
use crate::bench::{RESULT_FILE_HELP, Run, Vars, binaries, build, cores, get as var, load_average, result_file};
use crate::facts::{Variable, repo_dir};
use crate::supervise::{pid_alive, wait_for};

/// The variables `bench stack` reads. DATABASE_URL and REDIS_URL as for `bench api`; no API_*,
/// SEEDER_* or NGINX_* variable of the caller reaches the replicas, the seeder or render.sh.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "BENCH_KEY_PREFIX",
        default: "full",
        help: "Redis key prefix of the data set; `seeder --key-prefix` runs first (a no-op when loaded).",
    },
    vars::DURATION,
    vars::WARMUP,
    vars::CONNECTIONS,
    vars::THREADS,
    vars::BUILD,
    vars::START_TIMEOUT,
    Variable {
        name: "BENCH_API_THREADS",
        default: crate::facts::API_WORKER_THREADS,
        help: "API_WORKER_THREADS of each replica, as the stack and compose run them; set but \
               empty: the API's default, one per core.",
    },
    Variable {
        name: "TMPDIR",
        default: "/tmp",
        help: "Where the NGINX folders (temp paths, the micro-cache) are made. Every micro-cache \
               miss writes a file, so tmpfs (TMPDIR=/dev/shm) is far cheaper than a disk; the \
               summary names the file system.",
    },
    Variable { name: "BENCH_RESULT_FILE", default: "docs/bench/stack.json", help: RESULT_FILE_HELP },
    vars::STORES,
];

const TARGETS: [&str; 3] = ["ceiling", "stack-nocache", "stack-cache"];
/// Replicas behind the edge, and static stand-ins (NGINX workers) behind the ceiling's.
const REPLICAS: usize = 3;

pub(crate) fn header() -> String {
    format!(
        "round,target,{COMMON_COLUMNS},edge_cpu_cores,upstream_cpu_cores,machine_busy_pct,replica_requests,\
         upstream_share,replica1_requests,replica2_requests,replica3_requests,edge_cpu_us_per_request,\
         upstream_cpu_us_per_request,redis_cpu_us_per_request"
    )
}

/// An edge we started.
struct Edge {
    port: u16,
    workers: Vec<u32>,
    conf: String,
    dir: String,
}

/// The rendered edge configuration with ports, its folder and the upstream server lines taken
/// out: what must be equal between the ceiling's edge and stack-nocache's.
pub fn normalize(conf: &str, dir: &str) -> String {
    let mut out = String::new();
    for line in conf.replace(dir, "DIR").lines() {
        let mut l = String::new();
        let mut rest = line;
        while let Some(at) = rest.find("127.0.0.1:") {
            l.push_str(&rest[..at]);
            let after = &rest[at + 10..];
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                l.push_str("127.0.0.1:");
            } else {
                l.push_str("ADDR");
            }
            rest = &after[digits..];
        }
        l.push_str(rest);
        if l.trim_start().starts_with("server ADDR max_fails") {
            continue;
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Runs the benchmark.
#[expect(clippy::too_many_lines, reason = "one benchmark read top to bottom, as its summary reads")]
pub fn run(vars: &impl Vars, runs: u32) -> Result<()> {
    let HttpSettings { prefix, duration, warmup, load, build: build_first, start_timeout } =
        http_settings(vars, VARIABLES)?;
    let api_threads = vars.raw("BENCH_API_THREADS").unwrap_or_else(|| crate::facts::API_WORKER_THREADS.to_owned());
    if !api_threads.is_empty() && !api_threads.parse::<u32>().is_ok_and(|n| n > 0) {
        bail!("BENCH_API_THREADS must be empty or a positive integer");
    }
    let tmpdir = var(vars, VARIABLES, "TMPDIR");
    let result = result_file(vars, "stack");

    ensure_tools(&[("gettext-base", "envsubst")])?;
    let stores = Stores::find()?;
    if build_first {
        build(&["api", "seeder"])?;
    }
    let bins = binaries(&["api", "seeder"])?;
    let wrk_v = wrk_version();
    let mut run = Run::create("stack", runs, &header())?;
    fs::create_dir_all(run.file("wrk"))?;
    let seeder_said = ensure_data_set(&bins[1], &stores, &prefix, &run.out)?;

    // Folders first, so our NGINX masters (children) stop before their folders go.
    let mut dirs: Vec<NginxDir> = Vec::new();
    let mut children = Children::default();
    let mut ports = Ports::new(HOST);
    let spec = ApiSpec { bin: &bins[0], stores: &stores, prefix: &prefix, start_timeout };
    let extra: Vec<(&str, String)> =
        if api_threads.is_empty() { Vec::new() } else { vec![("API_WORKER_THREADS", api_threads.clone())] };
    let mut replicas: Vec<Replica> = Vec::new();
    for n in 1..=REPLICAS {
        replicas.push(start_api(
            &mut children,
            &run,
            &spec,
            &format!("api{n}"),
            (ports.free()?, ports.free()?),
            &extra,
        )?);
    }
    let (first, last) = id_range();
    check_data_set(replicas[0].port, (first, last))?;

    // The static upstream: three stand-in replicas.
    let stat = NginxDir::create("bench-stack-static-upstream", run.file("static-upstream.error.log"))?;
    let body =
        get_ok(replicas[0].port, &format!("/v1/results/{first}")).context("fetching a result body from api1 failed")?;
    stat.put_body(&body)?;
    fs::write(run.file("result.json"), &body)?;
    let static_ports: Vec<u16> = (0..REPLICAS).map(|_| ports.free()).collect::<Result<_>>()?;
    let listens: String = static_ports.iter().map(|p| format!("listen {HOST}:{p}; ")).collect();
    let template = fs::read_to_string(repo_dir().join("scripts/bench/static-upstream.conf.template"))?;
    let stat_path = stat.path.display().to_string();
    let conf = fill(&template, &[("DIR", &stat_path), ("LISTENS", &listens), ("WORKERS", &REPLICAS.to_string())]);
    fs::write(stat.path.join("nginx.conf"), &conf)?;
    fs::write(run.file("static-upstream.nginx.conf"), &conf)?;
    let static_master = start_nginx(&mut children, &run, "static-upstream.nginx", &stat.path)?;
    dirs.push(stat);
    for p in &static_ports {
        if !wait_for(Duration::from_secs(start_timeout), || get_ok(*p, &format!("/v1/results/{last}")).is_some()) {
            bail!(
                "the static upstream does not answer on {HOST}:{p}; see {}",
                dirs[0].path.join("error.log").display()
            );
        }
    }
    let static_workers = nginx_workers(static_master);
    note!(
        "static upstream: nginx master {static_master} (workers {static_workers:?}) on {static_ports:?}, body {} bytes",
        body.len()
    );

    let static_addrs: Vec<String> = static_ports.iter().map(|p| format!("{HOST}:{p}")).collect();
    let api_addrs: Vec<String> = replicas.iter().map(Replica::addr).collect();
    let mut edges = Vec::new();
    for (name, cache, upstreams) in
        [("ceiling", "off", &static_addrs), ("stack-nocache", "off", &api_addrs), ("stack-cache", "on", &api_addrs)]
    {
        let (edge, dir) = start_edge(&mut children, &run, &mut ports, name, cache, upstreams, &tmpdir, start_timeout)?;
        dirs.push(dir);
        edges.push(edge);
    }
    if normalize(&edges[0].conf, &edges[0].dir) != normalize(&edges[1].conf, &edges[1].dir) {
        bail!(
            "the ceiling and stack-nocache edge configurations differ beyond ports/dirs/upstreams: diff {} {}",
            run.file("ceiling.nginx.conf").display(),
            run.file("stack-nocache.nginx.conf").display()
        );
    }
    let api_pids: Vec<u32> = replicas.iter().map(|r| r.pid).collect();
    let upstream_pids = [static_workers.clone(), api_pids.clone(), api_pids];

    // Sanity: bodies and X-Cache-Status.
    if get_ok(edges[0].port, "/v1/results/1234567").as_deref() != Some(body.as_str()) {
        bail!("the ceiling edge does not serve result.json for /v1/results/<id>");
    }
    if get_ok(edges[1].port, &format!("/v1/results/{first}")).as_deref() != Some(body.as_str()) {
        bail!("stack-nocache does not serve the API's body for /v1/results/{first}");
    }
    let probe = format!("/v1/results/{}", first + 4242);
    let x_cache = |port: u16| -> String {
        get(port, &probe, Duration::from_secs(5))
            .and_then(|r| r.header("X-Cache-Status").map(str::to_owned))
            .unwrap_or_default()
    };
    let (x_ceiling, x_nocache) = (x_cache(edges[0].port), x_cache(edges[1].port));
    let x_first = x_cache(edges[2].port);
    x_cache(edges[2].port); // stored now (proxy_cache_min_uses 2)
    let x_second = x_cache(edges[2].port);
    if x_ceiling != "BYPASS" || x_nocache != "BYPASS" {
        bail!(
            "X-Cache-Status with the micro-cache off: ceiling '{x_ceiling}', stack-nocache '{x_nocache}' (want BYPASS)"
        );
    }
    if x_second != "HIT" {
        bail!(
            "X-Cache-Status with the micro-cache on: '{x_first}' then '{x_second}' for one id within 1 s (want a HIT)"
        );
    }
    note!("X-Cache-Status: ceiling {x_ceiling}, stack-nocache {x_nocache}, stack-cache {x_first} then {x_second}");

    let load_before = load_average();
    let url = |port: u16| format!("http://{HOST}:{port}");
    for (name, edge) in TARGETS.iter().zip(&edges) {
        note!("warm-up: {name}, {warmup}s (not measured)");
        wrk::run(&mut children, &url(edge.port), warmup, load, &run.file(&format!("wrk/warmup-{name}.txt")), name)?;
    }
    let hz = clock_ticks_per_second();
    for round in 1..=runs {
        let mut ceiling_rps = 0.0;
        for (i, name) in TARGETS.iter().enumerate() {
            note!("round {round}/{runs}: {name}, {duration}s");
            let out = run.file(&format!("wrk/run{round}-{name}.txt"));
            let (edge, upstream) = (&edges[i].workers, &upstream_pids[i]);
            let req0 = replica_requests(&replicas)?;
            let m0 = machine_ticks();
            let redis0 = redis_cpu_seconds(&stores)?;
            let (e0, u0, t0) = (cpu_ticks(edge), cpu_ticks(upstream), Instant::now());
            let summary = wrk::run(&mut children, &url(edges[i].port), duration, load, &out, name)?;
            let (e1, u1, wall) = (cpu_ticks(edge), cpu_ticks(upstream), t0.elapsed().as_secs_f64());
            let redis1 = redis_cpu_seconds(&stores)?;
            let m1 = machine_ticks();
            let req1 = replica_requests(&replicas)?;
            if let Some(pid) = edge.iter().chain(upstream).find(|p| !pid_alive(**p)) {
                bail!("a {name} server process (pid {pid}) died during the run");
            }
            if *name == "ceiling" {
                ceiling_rps = summary.rps;
            }
            let d: Vec<u64> = req1.iter().zip(&req0).map(|(a, b)| a.saturating_sub(*b)).collect();
            let up: u64 = d.iter().sum();
            let stack = *name != "ceiling";
            let (ecpu, ucpu) = (ratio(e1.saturating_sub(e0), hz), ratio(u1.saturating_sub(u0), hz));
            let q = summary.requests;
            let if_stack = |v: String| if stack { v } else { String::new() };
            let mut row = vec![round.to_string(), (*name).to_owned()];
            row.extend(common_cells(&summary, ceiling_rps));
            row.extend([
                format!("{:.2}", ecpu / wall),
                format!("{:.2}", ucpu / wall),
                format!("{:.0}", busy_pct(m0, m1)),
                if_stack(up.to_string()),
                if stack && q > 0 { format!("{:.3}", ratio(up, q)) } else { String::new() },
            ]);
            row.extend(d.iter().map(|n| if_stack(n.to_string())));
            row.extend([
                format!("{:.2}", per_request_us(ecpu, q)),
                format!("{:.2}", per_request_us(ucpu, q)),
                format!("{:.2}", per_request_us(redis1 - redis0, q)),
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
            if stack && up == 0 {
                bail!("no replica counted a request during the {name} run: the edge does not reach our replicas?");
            }
        }
    }

    let t = &run.table;
    let fs_type = Command::new("stat")
        .args(["-f", "-c", "%T", &tmpdir])
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let nginx_v = nginx_version();
    let threads_shown = if api_threads.is_empty() { "one per core".to_owned() } else { api_threads.clone() };
    let mut text = String::new();
    let w = &mut text;
    let _ = writeln!(
        w,
        "stack benchmark (cargo xtask bench stack), {}: {runs} interleaved round(s), medians over the rounds",
        run.stamp
    );
    let _ = writeln!(
        w,
        "machine: {} cores, SHARED by wrk, the edge NGINX, the upstreams (3 API replicas or the static NGINX),",
        cores()
    );
    let _ = writeln!(
        w,
        "         Redis and PostgreSQL (nothing pinned): absolute figures are this box's, the ratios are the point."
    );
    let _ = writeln!(w, "         Load average before: {load_before}");
    let _ = writeln!(
        w,
        "load:    {wrk_v}, {} thread, {} keep-alive connections, {duration}s per run after {warmup}s of",
        load.threads, load.connections
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
    let _ = writeln!(w, "targets: every edge = {nginx_v}, nginx/nginx.conf.template rendered by nginx/render.sh");
    let _ = writeln!(
        w,
        "                      (worker_processes auto = {}, rate limit off), our own master on a free port",
        cores()
    );
    let _ = writeln!(
        w,
        "         ceiling       = edge, micro-cache OFF -> static upstream: ONE nginx master, worker_processes {REPLICAS},"
    );
    let _ = writeln!(
        w,
        "                         listening on {REPLICAS} ports (the edge's {REPLICAS} upstream servers), every id -> result.json"
    );
    let _ = writeln!(
        w,
        "                         (a real API body), access_log off, open_file_cache: the proxy hop + a no-cost upstream"
    );
    let _ = writeln!(
        w,
        "         stack-nocache = edge, micro-cache OFF -> {REPLICAS} target/release/api replicas (default settings, worker threads {threads_shown},"
    );
    let _ = writeln!(w, "                         Redis key prefix '{prefix}')");
    let _ = writeln!(w, "         stack-cache   = edge, micro-cache ON (1 s) -> the same {REPLICAS} replicas");
    let _ = writeln!(w, "         NGINX dirs (micro-cache files) in {tmpdir}: file system {fs_type}");
    let _ = writeln!(w, "data:    seeder --key-prefix {prefix}: {seeder_said}");
    let _ = writeln!(
        w,
        "X-Cache-Status (one id, fetched twice on stack-cache): ceiling {x_ceiling}, stack-nocache {x_nocache},"
    );
    let _ = writeln!(w, "         stack-cache {x_first} then {x_second} (a HIT seen: met)");
    let _ = writeln!(w);
    latency_table(w, t, &TARGETS, 14);
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "{:<14} {:>7} {:>11} {:>15} {:>8} {:>16}",
        "target", "B/resp", "edge cores", "upstream cores", "busy %", "to replicas"
    );
    for name in TARGETS {
        let m = |c: &str| t.median_of(name, c);
        let share = if name == "ceiling" { "-".to_owned() } else { format!("{:.3}", m("upstream_share")) };
        let _ = writeln!(
            w,
            "{name:<14} {:>7.0} {:>11.2} {:>15.2} {:>8.0} {share:>16}",
            m("bytes_per_response"),
            m("edge_cpu_cores"),
            m("upstream_cpu_cores"),
            m("machine_busy_pct")
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "{:<14} {:>12} {:>16} {:>13}", "target", "edge us/req", "upstream us/req", "Redis us/req");
    for name in TARGETS {
        let m = |c: &str| t.median_of(name, c);
        let _ = writeln!(
            w,
            "{name:<14} {:>12.1} {:>16.1} {:>13.1}",
            m("edge_cpu_us_per_request"),
            m("upstream_cpu_us_per_request"),
            m("redis_cpu_us_per_request")
        );
    }
    let _ =
        writeln!(w, "(/ceiling: median of the per-round ratios of req/s; max ms: median of the runs' maximum latency;");
    let _ = writeln!(
        w,
        " worst ms: the largest of all runs; non-2xx, errors (socket errors + timeouts > {WRK_TIMEOUT}): totals over"
    );
    let _ =
        writeln!(w, " all rounds; B/resp: bytes per response, headers included; edge cores: CPU time of the edge's");
    let _ = writeln!(
        w,
        " workers and cache manager / wall time; upstream cores: the same for the 3 replicas (ceiling: the static nginx's workers);"
    );
    let _ = writeln!(
        w,
        " busy %: all cores, everything on the machine; to replicas: replicas' requests / client requests;"
    );
    let _ = writeln!(
        w,
        " us/req: CPU microseconds per client request of the edge's workers, the upstream processes, Redis)"
    );
    let _ = writeln!(w);
    let _ =
        writeln!(w, "replicas' results requests during the measured runs (api1 / api2 / api3, from their /metrics):");
    let _ = writeln!(w, "         stack-nocache: {}", spread(t, "stack-nocache"));
    let _ = writeln!(w, "         stack-cache:   {}", spread(t, "stack-cache"));
    let _ = writeln!(w);
    let nocache_ratio = t.median_of("stack-nocache", "ratio_to_ceiling");
    let _ = writeln!(
        w,
        "goals:   stack-nocache/ceiling >= 0.7: {nocache_ratio:.3} ({}); non-2xx = 0 and socket",
        verdict(nocache_ratio >= 0.7)
    );
    let _ = writeln!(w, "         errors = 0: met (enforced); micro-cache HIT seen: met (enforced)");
    let _ = writeln!(
        w,
        "         stack-cache/ceiling: {:.3} (ids uniform over 674,823: the 1 s micro-cache rarely hits)",
        t.median_of("stack-cache", "ratio_to_ceiling")
    );
    let _ = writeln!(w);
    let _ =
        writeln!(w, "files:   {}/: summary.txt runs.csv stack.json result.json *.nginx.conf wrk/ *.log", run.shown());
    run.summary(&text)?;

    let meta = vec![
        ("replicas".to_owned(), REPLICAS.to_string()),
        ("api_worker_threads".to_owned(), if api_threads.is_empty() { "auto".to_owned() } else { api_threads }),
        ("wrk_connections".to_owned(), load.connections.to_string()),
        ("duration_s".to_owned(), duration.to_string()),
        ("body_bytes".to_owned(), body.len().to_string()),
        ("nginx_version".to_owned(), nginx_v),
        ("load_before".to_owned(), load_before),
    ];
    let written = run.write_result(meta, result.as_deref());
    drop(children);
    drop(dirs);
    written
}

/// Starts edge `name`: the repository's edge configuration rendered by nginx/render.sh (no
/// NGINX_* variable of ours), rate limit off, on free ports, in its own folder under `tmpdir`.
#[expect(clippy::too_many_arguments, reason = "the edge's few facts, each named at the call")]
fn start_edge(
    children: &mut Children,
    run: &Run,
    ports: &mut Ports,
    name: &str,
    cache: &str,
    upstreams: &[String],
    tmpdir: &str,
    start_timeout: u64,
) -> Result<(Edge, NginxDir)> {
    let dir = NginxDir::create(&format!("bench-stack-{name}"), run.file(&format!("{name}.error.log")))?;
    let (port, status) = (ports.free()?, ports.free()?);
    let mut c = Command::new("sh");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NGINX_")) {
        c.env_remove(k);
    }
    let out = c
        .arg(repo_dir().join("nginx/render.sh"))
        .arg(repo_dir().join("nginx/nginx.conf.template"))
        .env("TMPDIR", tmpdir)
        .env("NGINX_UPSTREAMS", upstreams.join(" "))
        .env("NGINX_DIR", &dir.path)
        .env("NGINX_ERROR_LOG", dir.path.join("error.log"))
        .env("NGINX_LISTEN", format!("{HOST}:{port}"))
        .env("NGINX_STATUS_LISTEN", format!("{HOST}:{status}"))
        .env("NGINX_MICROCACHE", cache)
        .env("NGINX_RATE_LIMIT", "off")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run nginx/render.sh")?;
    if !out.status.success() {
        bail!("nginx/render.sh failed for {name}");
    }
    let conf = String::from_utf8_lossy(&out.stdout).into_owned();
    fs::write(dir.path.join("nginx.conf"), &conf)?;
    fs::write(run.file(&format!("{name}.nginx.conf")), &conf)?;
    let master = start_nginx(children, run, &format!("{name}.nginx"), &dir.path)?;
    let answers = wait_for(Duration::from_secs(start_timeout), || {
        get_ok(port, &format!("/v1/results/{}", id_range().1)).is_some()
    });
    if !answers {
        bail!(
            "{name} (our edge nginx on http://{HOST}:{port}) does not answer; see {}",
            dir.path.join("error.log").display()
        );
    }
    let workers = nginx_workers(master);
    if workers.is_empty() {
        bail!("{name}: nginx master {master} has no worker");
    }
    note!(
        "{name}: edge nginx master {master} (workers {workers:?}) on http://{HOST}:{port}, micro-cache {cache}, upstreams {}",
        upstreams.join(" ")
    );
    let dir_text = dir.path.display().to_string();
    Ok((Edge { port, workers, conf, dir: dir_text }, dir))
}

/// The results requests each replica has answered so far (http_requests_total of the
/// /v1/results and /student routes, all methods and statuses).
fn replica_requests(replicas: &[Replica]) -> Result<Vec<u64>> {
    replicas
        .iter()
        .map(|r| {
            let text = get_ok(r.admin, "/metrics").with_context(|| format!("reading {}'s /metrics failed", r.name))?;
            Ok(results_requests(&text))
        })
        .collect()
}

/// The sum of http_requests_total over the results routes of a /metrics text.
pub fn results_requests(metrics: &str) -> u64 {
    let results =
        |l: &str| label(l, "route").is_some_and(|r| r.starts_with("/v1/results/") || r.starts_with("/student/"));
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a counter: whole and non-negative")]
    let n = metric_sum(metrics, "http_requests_total", results) as u64;
    n
}

/// The CPU time Redis has used since its start (INFO cpu: used_cpu_user + used_cpu_sys).
fn redis_cpu_seconds(stores: &Stores) -> Result<f64> {
    let field = |f: &str| redis_info(&stores.redis, "cpu", f).and_then(|v| v.trim().parse::<f64>().ok());
    Ok(field("used_cpu_user").context("Redis INFO cpu failed")? + field("used_cpu_sys").unwrap_or(0.0))
}

/// The replicas' requests summed over the rounds of `target`, and max/min.
pub fn spread(t: &crate::bench::result::Table, target: &str) -> String {
    let sums: Vec<f64> = (1..=REPLICAS).map(|n| t.sum_of(target, &format!("replica{n}_requests"))).collect();
    let (min, max) = sums.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let parts: Vec<String> = sums.iter().map(|v| format!("{v:.0}")).collect();
    format!("{} (max/min {:.3})", parts.join(" / "), if min > 0.0 && min.is_finite() { max / min } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::result::Table;

    #[test]
    fn edge_configurations_compare_without_ports_folders_and_upstream_servers() {
        let a = "pid /tmp/bench-stack-ceiling.1a/nginx.pid;\nupstream api {\n    server 127.0.0.1:20001 max_fails=0;\n    server 127.0.0.1:20002 max_fails=0;\n}\nlisten 127.0.0.1:20003;\n";
        let b = "pid /tmp/bench-stack-stack-nocache.2b/nginx.pid;\nupstream api {\n    server 127.0.0.1:30001 max_fails=0;\n}\nlisten 127.0.0.1:30002;\n";
        assert_eq!(normalize(a, "/tmp/bench-stack-ceiling.1a"), normalize(b, "/tmp/bench-stack-stack-nocache.2b"));
        assert_eq!(
            normalize(a, "/tmp/bench-stack-ceiling.1a"),
            "pid DIR/nginx.pid;\nupstream api {\n}\nlisten ADDR;\n"
        );
        let cached = b.replace("listen", "proxy_cache on; listen");
        assert_ne!(
            normalize(a, "/tmp/bench-stack-ceiling.1a"),
            normalize(&cached, "/tmp/bench-stack-stack-nocache.2b")
        );
    }

    #[test]
    fn replica_requests_count_the_results_routes_only() {
        let m = "http_requests_total{method=\"GET\",route=\"/v1/results/{id}\",status=\"200\"} 40\n\
                 http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 7\n";
        assert_eq!(results_requests(m), 40);
    }

    #[test]
    fn the_spread_sums_rounds_per_replica() {
        let t = Table::parse(
            "round,target,replica1_requests,replica2_requests,replica3_requests\n1,s,10,10,8\n2,s,10,10,8\n",
        )
        .expect("valid");
        assert_eq!(spread(&t, "s"), "20 / 20 / 16 (max/min 1.250)");
    }
}
