//! The model itself, pure: from the measured figures ([`Measured`]) and the assumptions
//! ([`Assumptions`], the command's options), what one scenario needs ([`plan`]) and the
//! generated Markdown section of docs/capacity-model.md ([`render`]). No I/O: `inputs` reads the
//! figures, the parent module writes the doc.
//!
//! The arithmetic keeps the Python model's order of operations and its number formats
//! (`pyfmt`), so the section is byte for byte what the Python wrote for the same inputs.

use super::pyfmt::{fixed, general, grouped, grouped_int, percent};

/// Every figure the model uses, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// CPU µs per request of an API replica behind NGINX (docs/bench/stack.json, three
    /// replicas, micro-cache off).
    pub replica_us: f64,
    /// NGINX CPU µs per proxied request (same run).
    pub edge_us: f64,
    /// Redis CPU µs per lookup (same run).
    pub redis_us: f64,
    /// Requests per second of that run.
    pub stack_rps: f64,
    /// Requests per second of NGINX serving static upstreams on the same box.
    pub ceiling_rps: f64,
    /// Cores of the benchmark box.
    pub stack_cores: f64,
    /// When and at which commit stack.json was measured.
    pub stack_at: String,
    /// CPU µs per request of one replica alone (docs/bench/api.json), the cross-check.
    pub single_replica_us: f64,
    /// Peak RSS of one replica, MB.
    pub replica_rss_mb: f64,
    /// When and at which commit api.json was measured.
    pub api_at: String,
    /// Redis memory per result, bytes (docs/bench/seed.json).
    pub bytes_per_result: f64,
    /// Results seeded in that measurement.
    pub seed_students: f64,
    /// When and at which commit seed.json was measured.
    pub seed_at: String,
    /// The utilization up to which the SLO held (last step within it / peak throughput), or
    /// None when every step of the knee curve met the SLO.
    pub slo_util: Option<f64>,
    /// Where `slo_util` came from, in words.
    pub slo_note: String,
    /// Highest throughput of the paced result-day curve within the SLO (0 when none was).
    pub day_max_pass_rps: f64,
    /// Most users of that curve within the SLO.
    pub day_max_pass_users: i64,
    /// The paced curve's file, as shown.
    pub day_path: String,
    /// Results per Redis hash (results-core's `BUCKET_SIZE`).
    pub bucket_size: f64,
    /// Redis' `hash-max-listpack-entries` (redis/redis.conf).
    pub listpack_entries: f64,
    /// PostgreSQL's `max_connections` (postgres/postgresql.conf).
    pub max_connections: f64,
    /// Connections per API replica's pool (`API_PG_POOL_SIZE` in deploy/k8s/base/api.yaml).
    pub pg_pool: f64,
}

/// The assumptions of a result day: the traffic's shape, headroom and spares. Each is an option
/// of `cargo xtask capacity-model`, and printed in its output.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Assumptions {
    /// Candidates on result day.
    #[arg(long, default_value_t = 1_700_000.0, value_parser = positive)]
    pub candidates: f64,
    /// Seconds in which they all look up.
    #[arg(long, default_value_t = 60.0, value_parser = positive)]
    pub window_s: f64,
    /// Scenarios, as multiples of that traffic.
    #[arg(long, num_args = 1.., default_values_t = [1.0, 10.0], value_parser = positive)]
    pub scales: Vec<f64>,
    /// API lookups per candidate.
    #[arg(long, default_value_t = 1.2, value_parser = positive)]
    pub lookups_per_candidate: f64,
    /// Page requests per candidate at the edge.
    #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
    pub page_requests_per_candidate: f64,
    /// Busiest second / mean of the window.
    #[arg(long, default_value_t = 1.5, value_parser = positive)]
    pub peak_factor: f64,
    /// Cap on the measured SLO-safe utilization (above 0, at most 1).
    #[arg(long, default_value_t = 0.7, value_parser = utilization)]
    pub max_utilization: f64,
    /// Extra API replicas and NGINX nodes (at least 1).
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub spare_fraction: f64,
    /// Cores of one NGINX node.
    #[arg(long, default_value_t = 8.0, value_parser = positive)]
    pub nginx_node_cores: f64,
    /// Replicas per Redis primary.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub redis_replicas: f64,
    /// Redis memory factor over the measured data.
    #[arg(long, default_value_t = 1.5, value_parser = positive)]
    pub redis_overhead: f64,
}

impl Default for Assumptions {
    /// The command line's defaults, as written once in the attributes above.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            assumptions: Assumptions,
        }
        <Defaults as clap::Parser>::parse_from(["capacity-model"]).assumptions
    }
}

/// A number above zero (and finite), for the options that divide or scale.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err("must be positive".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A utilization: above zero, at most 1.
fn utilization(text: &str) -> Result<f64, String> {
    positive(text).and_then(|x| if x <= 1.0 { Ok(x) } else { Err("must be at most 1".into()) })
}

/// What one scenario needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The utilization every tier is planned at.
    pub util: f64,
    /// Candidates of this scenario.
    pub candidates: f64,
    /// Candidates per second over the window.
    pub mean_rate: f64,
    /// API lookups per second in the busiest second.
    pub api_rps: f64,
    /// Requests per second at the edge in the busiest second (lookups and the page).
    pub edge_rps: f64,
    /// Cores the API replicas are busy with at `util`.
    pub api_cores: f64,
    /// API replicas without spares (one core each).
    pub replicas: u64,
    /// API replicas with spares.
    pub replicas_total: u64,
    /// Cores NGINX is busy with at `util`.
    pub edge_cores: f64,
    /// NGINX nodes without spares.
    pub nginx_nodes: u64,
    /// NGINX nodes with spares.
    pub nginx_total: u64,
    /// Cores Redis is busy with at `util`.
    pub redis_cores: f64,
    /// Redis primaries (one core each: Redis runs commands on one thread).
    pub primaries: u64,
    /// Lookups per second each primary takes.
    pub ops_per_primary: f64,
    /// Bytes of results in Redis.
    pub data_bytes: f64,
    /// Bytes per primary with the overhead.
    pub per_primary_bytes: f64,
    /// Bytes of all primaries and their replicas.
    pub redis_total_bytes: f64,
    /// Redis keys (buckets of results).
    pub buckets: u64,
    /// PostgreSQL connections when every replica's pool fills.
    pub pg_connections: f64,
    /// MB of all API replicas.
    pub api_memory_mb: f64,
}

/// Python's `math.ceil` to a count; the figures here are finite and far below 2^53.
fn ceil(x: f64) -> u64 {
    x.ceil() as u64
}

/// One scenario: the traffic `scale` times the national one.
pub fn plan(m: &Measured, a: &Assumptions, scale: f64) -> Plan {
    // A measured utilization of 0 (the last passing step carried nothing) falls back to the cap,
    // as the Python model's `or` did.
    let measured = m.slo_util.filter(|u| *u != 0.0).unwrap_or(a.max_utilization);
    let util = a.max_utilization.min(measured);
    let candidates = a.candidates * scale;
    let mean_rate = candidates / a.window_s;
    let api_rps = mean_rate * a.lookups_per_candidate * a.peak_factor;
    let edge_rps = mean_rate * (a.lookups_per_candidate + a.page_requests_per_candidate) * a.peak_factor;
    let spare = |n: u64| ceil(n as f64 * a.spare_fraction).max(1);

    let api_cores = api_rps * m.replica_us / 1e6 / util;
    let replicas = ceil(api_cores).max(1);
    let edge_cores = edge_rps * m.edge_us / 1e6 / util;
    let nginx_nodes = ceil(edge_cores / a.nginx_node_cores).max(1);
    let redis_cores = api_rps * m.redis_us / 1e6 / util;
    let primaries = ceil(redis_cores).max(1);
    let data_bytes = candidates * m.bytes_per_result;
    let per_primary_bytes = data_bytes * a.redis_overhead / primaries as f64;
    let replicas_total = replicas + spare(replicas);
    Plan {
        util,
        candidates,
        mean_rate,
        api_rps,
        edge_rps,
        api_cores,
        replicas,
        replicas_total,
        edge_cores,
        nginx_nodes,
        nginx_total: nginx_nodes + spare(nginx_nodes),
        redis_cores,
        primaries,
        ops_per_primary: api_rps / primaries as f64,
        data_bytes,
        per_primary_bytes,
        redis_total_bytes: per_primary_bytes * primaries as f64 * (1.0 + a.redis_replicas),
        buckets: ceil(candidates / m.bucket_size),
        pg_connections: replicas_total as f64 * m.pg_pool,
        api_memory_mb: replicas_total as f64 * m.replica_rss_mb,
    }
}

/// Bytes as MB below a GiB, as GB (one decimal) from there.
fn mb(bytes: f64) -> String {
    const GIB: f64 = 1_073_741_824.0;
    if bytes < GIB {
        format!("{} MB", grouped(bytes / 1_048_576.0, 0))
    } else {
        format!("{} GB", grouped(bytes / GIB, 1))
    }
}

/// The generated section of docs/capacity-model.md (without its markers): the inputs, the
/// assumptions, and one column per scenario of `a.scales`.
pub fn render(m: &Measured, a: &Assumptions) -> String {
    let plans: Vec<(f64, Plan)> = a.scales.iter().map(|&s| (s, plan(m, a, s))).collect();
    // The utilization does not depend on the scale; an empty `scales` (the CLI refuses one)
    // would still print the cap.
    let util = plans.first().map_or(a.max_utilization, |(_, p)| p.util);
    let mut lines: Vec<String> = Vec::new();
    let mut out = |line: String| lines.push(line);

    out("### Inputs (read from the benchmark outputs)".into());
    out(String::new());
    out("| figure | value | from |".into());
    out("|---|---|---|".into());
    out(format!(
        "| API replica CPU per request | {} µs ({} req/s per core at 100%) | `docs/bench/stack.json`: NGINX → 3 \
         replicas (1 thread each), `upstream_cpu_us_per_request`; {} |",
        fixed(m.replica_us, 1),
        grouped(1e6 / m.replica_us, 0),
        m.stack_at
    ));
    out(format!(
        "| one replica alone (cross-check) | {} µs | `docs/bench/api.json`: `api` `server_cpu_us_per_request`; {} |",
        fixed(m.single_replica_us, 1),
        m.api_at
    ));
    out(format!(
        "| NGINX CPU per proxied request | {} µs ({} req/s per core) | `docs/bench/stack.json`: \
         `edge_cpu_us_per_request` |",
        fixed(m.edge_us, 1),
        grouped(1e6 / m.edge_us, 0)
    ));
    out(format!(
        "| Redis CPU per lookup | {} µs ({} lookups/s per core) | `docs/bench/stack.json`: `redis_cpu_us_per_request` |",
        fixed(m.redis_us, 1),
        grouped(1e6 / m.redis_us, 0)
    ));
    out(format!(
        "| the stack on the benchmark box | {} req/s (ceiling {}) on {} shared cores | `docs/bench/stack.json` |",
        grouped(m.stack_rps, 0),
        grouped(m.ceiling_rps, 0),
        fixed(m.stack_cores, 0)
    ));
    out(format!(
        "| Redis memory per result | {} bytes | `docs/bench/seed.json` ({} results in hashes of {}); {} |",
        fixed(m.bytes_per_result, 1),
        grouped(m.seed_students, 0),
        fixed(m.bucket_size, 0),
        m.seed_at
    ));
    out(format!(
        "| API replica memory | {} MB peak RSS | `docs/bench/api.json`: `rss_peak_mb` |",
        fixed(m.replica_rss_mb, 1)
    ));
    let slo = m.slo_util.map_or_else(|| "none measured".to_string(), |u| fixed(u, 2));
    out(format!("| utilization within the SLO | {slo} | {} |", m.slo_note));
    out(format!(
        "| paced result-day users, one box | {} req/s within the SLO at {} users | `{}` |",
        grouped(m.day_max_pass_rps, 0),
        grouped_int(m.day_max_pass_users),
        m.day_path
    ));
    out(format!(
        "| PostgreSQL | max_connections {}, API_PG_POOL_SIZE {} | `postgres/postgresql.conf`, \
         `deploy/k8s/base/api.yaml` |",
        fixed(m.max_connections, 0),
        fixed(m.pg_pool, 0)
    ));
    out(String::new());
    // "options of the script": the heading is inside the generated section, kept as the Python
    // model wrote it so the committed doc stays current without regenerating.
    out("### Assumptions (options of the script)".into());
    out(String::new());
    let scales: Vec<String> = a.scales.iter().map(|s| format!("{}x", general(*s))).collect();
    out(format!(
        "- {} candidates look their result up within {} s; scenarios at {} that (candidates and traffic both scaled).",
        grouped(a.candidates, 0),
        general(a.window_s),
        scales.join(", ")
    ));
    out(format!(
        "- {} API lookups per candidate (a refresh now and then: loadgen's 20%); {} page requests per candidate at \
         the edge (`/`, `app.js`, `style.css`), costed like a proxied request (conservative: static files are \
         cheaper, and a CDN removes them).",
        general(a.lookups_per_candidate),
        general(a.page_requests_per_candidate)
    ));
    out(format!(
        "- Peak factor {}: the busiest second carries {}x the minute's mean rate.",
        general(a.peak_factor),
        general(a.peak_factor)
    ));
    out(format!(
        "- Every tier runs at utilization {} at that peak: the measured SLO-safe utilization, capped at {}. CPU per \
         request is the benchmark's (loopback, no TLS).",
        fixed(util, 2),
        general(a.max_utilization)
    ));
    out(format!(
        "- Spares: {} more API replicas and NGINX nodes (at least one each) for a lost node or a rollout; NGINX \
         nodes of {} cores.",
        percent(a.spare_fraction),
        general(a.nginx_node_cores)
    ));
    out(format!(
        "- Redis: one core per primary (commands run on one thread), {} replica(s) per primary for failover (not \
         for reads), memory x{} for fragmentation and replication buffers.",
        general(a.redis_replicas),
        general(a.redis_overhead)
    ));
    out(String::new());
    out("### What a result day needs".into());
    out(String::new());
    let heads: Vec<String> = plans
        .iter()
        .map(|(s, p)| {
            format!("{}x: {} M candidates in {} s", general(*s), general(p.candidates / 1e6), general(a.window_s))
        })
        .collect();
    out(format!("| | {} |", heads.join(" | ")));
    out(format!("|---|{}", "---|".repeat(plans.len())));

    let mut row = |label: &str, cell: &dyn Fn(&Plan) -> String| {
        let cells: Vec<String> = plans.iter().map(|(_, p)| cell(p)).collect();
        out(format!("| {label} | {} |", cells.join(" | ")));
    };
    row("mean lookup rate", &|p| format!("{} req/s", grouped(p.mean_rate * a.lookups_per_candidate, 0)));
    row("peak API lookups", &|p| format!("{} req/s", grouped(p.api_rps, 0)));
    row("peak edge requests (lookups + page)", &|p| format!("{} req/s", grouped(p.edge_rps, 0)));
    row("**API replicas** (1 core, 1 thread each)", &|p| {
        format!(
            "**{}** ({} cores busy at {} → {} + spares)",
            p.replicas_total,
            fixed(p.api_cores, 1),
            fixed(p.util, 2),
            p.replicas
        )
    });
    row("**NGINX nodes**", &|p| {
        format!(
            "**{}** x {} cores ({} cores → {} + spares)",
            p.nginx_total,
            general(a.nginx_node_cores),
            fixed(p.edge_cores, 1),
            p.nginx_nodes
        )
    });
    row("**Redis primaries**", &|p| {
        format!(
            "**{}** ({} cores; {} lookups/s each)",
            p.primaries,
            fixed(p.redis_cores, 2),
            grouped(p.ops_per_primary, 0)
        )
    });
    row("**Redis memory**", &|p| {
        format!(
            "**{}** in all ({} of results, {} per primary, {} keys)",
            mb(p.redis_total_bytes),
            mb(p.data_bytes),
            mb(p.per_primary_bytes),
            grouped_int(p.buckets)
        )
    });
    row("PostgreSQL connections if every pool fills", &|p| {
        let flag = if p.pg_connections > m.max_connections { " (**needs a pooler or smaller pools**)" } else { "" };
        format!("{} of {}{flag}", grouped(p.pg_connections, 0), fixed(m.max_connections, 0))
    });
    row("API memory", &|p| {
        format!("{} MB ({} x {} MB)", grouped(p.api_memory_mb, 0), p.replicas_total, fixed(m.replica_rss_mb, 0))
    });
    out(String::new());
    if m.bucket_size > m.listpack_entries {
        out(format!(
            "**Warning:** BUCKET_SIZE {} > hash-max-listpack-entries {}: buckets are not listpacks and take far more \
             memory than measured.",
            fixed(m.bucket_size, 0),
            fixed(m.listpack_entries, 0)
        ));
        out(String::new());
    }
    lines.join("\n")
}
