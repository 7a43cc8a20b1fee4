//! The capacity model's tests, on SAMPLE inputs made here (not measured figures; nothing here is
//! committed), plus the check that the committed docs/capacity-model.md is current. Ported from
//! scripts/tests/capacity_model_test.sh: "old #N" names the check of that script (in its order)
//! each assertion carries on.
//!
//! By hand, for the sample: 1.7 M / 60 s x 1.2 lookups x 1.5 peak = 51,000 lookups/s;
//! utilization 5,000 / 8,000 = 0.625.
//! - API: 51,000 x 64 µs / 0.625 = 5.22 cores -> 6 + 1 spare = 7; 10x: 52.2 -> 53 + 6 = 59.
//! - Edge: 1.7 M / 60 x 4.2 x 1.5 = 178,500 req/s x 25 µs / 0.625 = 7.14 cores -> 1 node + 1;
//!   10x: 71.4 -> 9 + 1.
//! - Redis: 51,000 x 8 µs / 0.625 = 0.65 core -> 1 primary; 10x: 6.53 -> 7.
//! - Memory: 1.7 M x 52 B x 1.5 x 2 = 265.2 MB = 253 MiB; 10x 2.5 GiB.
//! - Pools: 7 x 8 = 56; 59 x 8 = 472 > 200.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser as _;
use serde_json::Value;
use tempfile::TempDir;

use super::inputs::{self, BENCH_COLUMNS, Fact, InputError, LISTPACK_ENTRIES, MAX_CONNECTIONS, PG_POOL_SIZE};
use super::model::{Assumptions, Measured, plan, render};
use super::{BEGIN, END, Error, Locations, Mode, execute, replace_section};

fn repo() -> PathBuf {
    crate::facts::repo_dir()
}

// --- sample inputs -----------------------------------------------------------------------------

/// What `cargo xtask bench result` writes for [`STACK_RUNS`] (the fields the model reads):
/// the medians are 64 / 25 / 8 µs per request.
const STACK_JSON: &str = r#"{
  "bench": "stack", "command": "sample", "git_commit": "0123456789ab", "machine": {"cores": 2},
  "measured_at": "2026-01-02T03:04:05Z", "rounds": 3,
  "meta": {"nginx_version": "nginx/1.22.1", "replicas": 3},
  "medians": {
    "ceiling": {"rps": 30000, "edge_cpu_us_per_request": 20.0, "upstream_cpu_us_per_request": 16.0,
                "redis_cpu_us_per_request": 0.0},
    "stack-nocache": {"rps": 14500, "edge_cpu_us_per_request": 25.0, "upstream_cpu_us_per_request": 64.0,
                      "redis_cpu_us_per_request": 8.0}
  }
}"#;
/// What `bench result` writes for [`API_RUNS`]: 29.0 µs per request, 17.5 MB.
const API_JSON: &str = r#"{
  "bench": "api", "command": "", "git_commit": "0123456789ab", "machine": {"cores": 2},
  "measured_at": "2026-01-02T03:04:05Z", "rounds": 2, "meta": {},
  "medians": {"api": {"rps": 46500, "server_cpu_us_per_request": 29.0, "rss_peak_mb": 17.5},
              "ceiling": {"rps": 75500, "server_cpu_us_per_request": 13.2, "rss_peak_mb": 5.0}}
}"#;
/// What `bench result` writes for [`SEED_RUNS`]: 52.0 bytes per result.
const SEED_JSON: &str = r#"{
  "bench": "seed", "command": "", "git_commit": null, "machine": {"cores": 2},
  "measured_at": "2026-01-02T03:04:05Z", "rounds": 3, "meta": {"students": 674823},
  "medians": {"bytes_per_result": 52.0, "copy_seconds": 8.2, "redis_bytes": 35100000}
}"#;
/// loadgen capacity.csv: the SLO holds up to 5,000 req/s, the peak is 8,000 (utilization 0.625).
const KNEE_CSV: &str = "\
users,seconds,requests,rps,failures,error_ratio,p50_ms,p95_ms,p99_ms,max_ms,co_corrected,slo_passed
250,20,20000,1000.00,0,0.000000,0.4,0.8,1.0,5,true,true
1000,20,100000,5000.00,0,0.000000,1.3,5.7,18.0,66,true,true
1500,20,120000,6000.00,0,0.000000,8.3,45.3,76.2,139,true,false
3000,20,160000,8000.00,0,0.000000,78.3,242.6,276.4,523,true,false
";
const RESULT_DAY_CSV: &str = "\
users,seconds,requests,rps,failures,error_ratio,p50_ms,p95_ms,p99_ms,max_ms,co_corrected,slo_passed
500,20,4941,247.05,0,0.000000,0.6,1.0,1.3,4.9,false,true
10000,20,101172,5058.60,0,0.000000,1.3,3.4,6.2,27.5,true,true
";

/// `bench stack`'s runs.csv header, three rounds.
const STACK_RUNS: &str = "\
round,target,rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling,edge_cpu_cores,upstream_cpu_cores,machine_busy_pct,replica_requests,upstream_share,replica1_requests,replica2_requests,replica3_requests,edge_cpu_us_per_request,upstream_cpu_us_per_request,redis_cpu_us_per_request
1,ceiling,30000,1,2,3,9,0,0,420,1.000,0.60,0.50,99,,,,,,20.00,16.00,0.00
1,stack-nocache,14000,1,2,12,30,0,0,420,0.467,0.35,0.90,99,210000,1.000,70000,70000,70000,26.00,70.00,9.00
2,ceiling,29000,1,2,3,9,0,0,420,1.000,0.60,0.50,99,,,,,,21.00,17.00,0.00
2,stack-nocache,15000,1,2,12,30,0,0,420,0.517,0.35,0.90,99,225000,1.000,75000,75000,75000,25.00,64.00,8.00
3,ceiling,31000,1,2,3,9,0,0,420,1.000,0.60,0.50,99,,,,,,19.00,15.00,0.00
3,stack-nocache,14500,1,2,12,30,0,0,420,0.468,0.35,0.90,99,217500,1.000,72500,72500,72500,24.00,60.00,7.00
";
/// `bench api`'s runs.csv, two rounds.
const API_RUNS: &str = "\
round,target,rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling,server_cpu_cores,server_cpu_us_per_request,machine_busy_pct,rss_peak_mb
1,ceiling,75000,1,2,3,9,0,0,420,1.000,1.00,13.3,99,5.0
1,api,46000,1,2,3,9,0,0,420,0.613,1.30,28.0,99,17.0
2,ceiling,76000,1,2,3,9,0,0,420,1.000,1.00,13.1,99,5.0
2,api,47000,1,2,3,9,0,0,420,0.618,1.30,30.0,99,18.0
";
/// `bench seed`'s runs.csv, three runs, no target column.
const SEED_RUNS: &str = "\
run,copy_seconds,seeder_seconds,ratio,redis_bytes,bytes_per_result
1,8.2,3.2,0.39,35000000,51.9
2,8.1,3.3,0.41,35100000,52.0
3,8.3,3.1,0.37,35200000,52.1
";

/// A temporary folder with the sample inputs in `inputs/` and a copy of the committed doc at
/// `doc.md`; the repository's own configuration files are the configured facts.
struct Sample {
    dir: TempDir,
}

impl Sample {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("capacity-model-test.").tempdir().expect("temp dir");
        let inputs = dir.path().join("inputs");
        fs::create_dir_all(inputs.join("bench")).expect("mkdir");
        for (name, text) in [
            ("bench/stack.json", STACK_JSON),
            ("bench/api.json", API_JSON),
            ("bench/seed.json", SEED_JSON),
            ("capacity-knee.csv", KNEE_CSV),
            ("capacity-result-day.csv", RESULT_DAY_CSV),
        ] {
            fs::write(inputs.join(name), text).expect("write sample input");
        }
        fs::copy(repo().join("docs/capacity-model.md"), dir.path().join("doc.md")).expect("copy the doc");
        Self { dir }
    }

    fn inputs(&self) -> PathBuf {
        self.dir.path().join("inputs")
    }

    fn doc(&self) -> PathBuf {
        self.dir.path().join("doc.md")
    }

    fn at(&self) -> Locations {
        Locations { repo: repo(), inputs: self.inputs(), doc: self.doc() }
    }

    fn run(&self, mode: Mode) -> Result<String, Error> {
        execute(mode, &self.at(), &Assumptions::default())
    }

    /// The message and exit status of a run expected to fail.
    fn failure(&self, mode: Mode) -> (u8, String) {
        match self.run(mode) {
            Ok(out) => panic!("expected a failure, got: {out}"),
            Err(e) => (e.exit_code(), e.to_string()),
        }
    }
}

/// The figures of the sample inputs, as [`inputs::read`] should give them; the configured facts
/// are this repository's at the time of writing (bucket 100, listpack 512, 200 connections, pools
/// of 8), so the pure tests do not depend on the files.
fn sample_measured() -> Measured {
    Measured {
        replica_us: 64.0,
        edge_us: 25.0,
        redis_us: 8.0,
        stack_rps: 14500.0,
        ceiling_rps: 30000.0,
        stack_cores: 2.0,
        stack_at: "2026-01-02T03:04:05Z, commit 0123456789ab".into(),
        single_replica_us: 29.0,
        replica_rss_mb: 17.5,
        api_at: "2026-01-02T03:04:05Z, commit 0123456789ab".into(),
        bytes_per_result: 52.0,
        seed_students: 674_823.0,
        seed_at: "2026-01-02T03:04:05Z, commit ?".into(),
        slo_util: Some(0.625),
        slo_note: "`KNEE`: 5,000 req/s at 1,000 users (last step within the SLO) / 8,000 req/s (peak, 3,000 users)"
            .into(),
        day_max_pass_rps: 5058.6,
        day_max_pass_users: 10_000,
        day_path: "DAY".into(),
        bucket_size: 100.0,
        listpack_entries: 512.0,
        max_connections: 200.0,
        pg_pool: 8.0,
    }
}

/// The first line of `section` that starts with `| label`.
fn row(section: &str, label: &str) -> String {
    let prefix = format!("| {label}");
    let line = section.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no row {label:?} in:\n{section}")).to_string()
}

/// The measured figures of `m`, its configured facts and provenance blanked (compared apart).
fn measured_only(m: &Measured) -> Measured {
    Measured {
        stack_at: String::new(),
        api_at: String::new(),
        seed_at: String::new(),
        slo_note: m.slo_note.rsplit_once("`:").map_or_else(String::new, |(_, rest)| rest.to_string()),
        day_path: String::new(),
        bucket_size: 0.0,
        listpack_entries: 0.0,
        max_connections: 0.0,
        pg_pool: 0.0,
        ..m.clone()
    }
}

// --- reading the inputs ------------------------------------------------------------------------

#[test]
fn the_model_runs_on_the_sample_inputs() {
    // old #10
    let sample = Sample::new();
    let got = inputs::read(&repo(), &sample.inputs()).expect("the sample inputs are read");
    assert_eq!(measured_only(&got), measured_only(&sample_measured()));
    let knee = sample.inputs().join("capacity-knee.csv").display().to_string();
    assert!(got.slo_note.starts_with(&format!("`{knee}`: ")), "{}", got.slo_note);
    assert_eq!(got.day_path, sample.inputs().join("capacity-result-day.csv").display().to_string());
    assert_eq!(got.stack_at, "2026-01-02T03:04:05Z, commit 0123456789ab");
    assert_eq!(got.seed_at, "2026-01-02T03:04:05Z, commit ?", "a null git_commit is shown as ?");
    assert!(sample.run(Mode::Print).is_ok());
}

#[test]
fn numbers_are_read_correctly_rounded_as_python_reads_them() {
    // serde_json's default parser reads this one a unit in the last place high (...257), which
    // showed as 040.5 instead of 040.4 in a table cell of a comparison with the Python model.
    let sample = Sample::new();
    let stack = STACK_JSON
        .replace("\"upstream_cpu_us_per_request\": 64.0", "\"upstream_cpu_us_per_request\": 9610208.711482255");
    fs::write(sample.inputs().join("bench/stack.json"), stack).expect("write");
    let got = inputs::read(&repo(), &sample.inputs()).expect("read").replica_us;
    assert_eq!(got.to_bits(), "9610208.711482255".parse::<f64>().expect("a number").to_bits());
}

#[test]
fn configured_facts_come_from_the_repository_files() {
    let got = inputs::read(&repo(), &Sample::new().inputs()).expect("read");
    assert_eq!(got.bucket_size, f64::from(results_core::keys::BUCKET_SIZE));
    for (fact, value) in
        [(LISTPACK_ENTRIES, got.listpack_entries), (MAX_CONNECTIONS, got.max_connections), (PG_POOL_SIZE, got.pg_pool)]
    {
        let text = fs::read_to_string(repo().join(fact.path)).expect("the file is in the repository");
        assert_eq!(fact.find(&text), Some(value), "{}", fact.what);
        assert!(value > 0.0, "{} found in {}", fact.what, fact.path);
    }
}

#[test]
fn facts_are_found_in_the_shapes_the_files_use() {
    let find = |fact: Fact, text: &str| fact.find(text);
    assert_eq!(find(LISTPACK_ENTRIES, "# x\nhash-max-listpack-entries 512\n"), Some(512.0));
    assert_eq!(find(LISTPACK_ENTRIES, "# hash-max-listpack-entries 512\n"), None, "a comment is not a setting");
    assert_eq!(find(MAX_CONNECTIONS, "  max_connections = 200   # x\n"), Some(200.0));
    assert_eq!(find(PG_POOL_SIZE, "- name: API_PG_POOL_SIZE\n  value: \"8\"\n"), Some(8.0));
    assert_eq!(find(PG_POOL_SIZE, "- name: API_PG_POOL_SIZE\n  value: 12\n"), Some(12.0));
    assert_eq!(find(PG_POOL_SIZE, "- name: API_OTHER\n  value: 8\n"), None);
}

#[test]
fn a_missing_fact_names_its_file() {
    let dir = TempDir::new().expect("temp dir");
    let err = MAX_CONNECTIONS.read(dir.path()).expect_err("no file");
    assert!(err.0.starts_with("postgres/postgresql.conf: cannot read it"), "{err}");
    fs::create_dir_all(dir.path().join("postgres")).expect("mkdir");
    fs::write(dir.path().join("postgres/postgresql.conf"), "shared_buffers = 1GB\n").expect("write");
    assert_eq!(
        MAX_CONNECTIONS.read(dir.path()),
        Err(InputError("postgres/postgresql.conf: cannot find max_connections".into()))
    );
}

#[test]
fn the_knee_is_the_last_step_before_the_first_that_missed_the_slo() {
    let steps = inputs::parse_steps(KNEE_CSV.as_bytes(), "KNEE").expect("steps");
    let (util, note) = inputs::knee_utilization(&steps, "KNEE").expect("a knee");
    assert_eq!(util, Some(0.625));
    assert_eq!(note, sample_measured().slo_note);

    let all_pass = inputs::parse_steps(RESULT_DAY_CSV.as_bytes(), "DAY").expect("steps");
    assert_eq!(
        inputs::knee_utilization(&all_pass, "DAY").expect("no knee"),
        (None, "no knee in `DAY`: every step met the SLO".into())
    );
    // Of equal peaks the first (fewest users) is named, as the Python model's max() did.
    let ties = inputs::parse_steps(b"users,rps,slo_passed\n1,5,true\n2,8,false\n3,8,false\n", "T").expect("steps");
    assert!(inputs::knee_utilization(&ties, "T").expect("a knee").1.ends_with("/ 8 req/s (peak, 2 users)"));
    let first_fails = inputs::parse_steps(b"users,rps,slo_passed\n20,10,true\n10,5,false\n", "K").expect("steps");
    assert_eq!(first_fails[0].users, 10, "steps are sorted by users");
    let err = inputs::knee_utilization(&first_fails, "K").expect_err("first step missed the SLO");
    assert_eq!(err.0, "K: the first step already missed the SLO; no utilization to read");
}

#[test]
fn a_file_that_is_not_a_capacity_csv_is_refused() {
    for (text, why) in [
        ("users,seconds\n10,20\n", "no rps in line 2"),
        ("users,rps,slo_passed\nten,5,true\n", "users = \"ten\" is not a whole number"),
        ("users,rps,slo_passed\n10,fast,true\n", "rps = \"fast\" is not a number"),
    ] {
        let err = inputs::parse_steps(text.as_bytes(), "C").expect_err(text);
        assert_eq!(err.0, format!("C is not a loadgen capacity.csv (users, rps, slo_passed columns): {why}"));
    }
    assert_eq!(inputs::parse_steps(b"users,rps,slo_passed\n", "C"), Err(InputError("C has no steps".into())));
}

#[test]
fn a_field_that_is_not_a_positive_number_is_refused() {
    let sample = Sample::new();
    let stack = sample.inputs().join("bench/stack.json");
    fs::write(
        &stack,
        STACK_JSON.replace("\"upstream_cpu_us_per_request\": 64.0", "\"upstream_cpu_us_per_request\": 0"),
    )
    .expect("write");
    let (code, message) = sample.failure(Mode::Print);
    assert_eq!(code, 2);
    assert_eq!(
        message,
        format!("{}: medians.stack-nocache.upstream_cpu_us_per_request = 0 is not a positive number", stack.display())
    );
}

// --- the model on the sample figures (pure) ----------------------------------------------------

#[test]
fn utilization_is_read_from_the_knee_and_shown_with_two_decimals() {
    // old #11: 0.625 -> 0.62 shown
    let section = render(&sample_measured(), &Assumptions::default());
    assert!(section.contains("| utilization within the SLO | 0.62 |"), "{section}");
    assert_eq!(plan(&sample_measured(), &Assumptions::default(), 1.0).util, 0.625);
}

#[test]
fn peak_api_lookups_are_51_000_and_510_000_per_second() {
    // old #12
    let section = render(&sample_measured(), &Assumptions::default());
    assert_eq!(row(&section, "peak API lookups"), "| peak API lookups | 51,000 req/s | 510,000 req/s |");
}

#[test]
fn api_replicas_are_7_and_59() {
    // old #13
    let (m, a) = (sample_measured(), Assumptions::default());
    let (one, ten) = (plan(&m, &a, 1.0), plan(&m, &a, 10.0));
    assert_eq!((one.replicas, one.replicas_total, ten.replicas, ten.replicas_total), (6, 7, 53, 59));
    let r = row(&render(&m, &a), "**API replicas**");
    assert!(r.contains("| **7** (5.2 cores busy at 0.62 → 6 + spares) |"), "{r}");
    assert!(r.contains("| **59** (52.2 cores busy at 0.62 → 53 + spares) |"), "{r}");
}

#[test]
fn nginx_nodes_are_2_and_10() {
    // old #14
    let (m, a) = (sample_measured(), Assumptions::default());
    assert_eq!((plan(&m, &a, 1.0).nginx_total, plan(&m, &a, 10.0).nginx_total), (2, 10));
    let r = row(&render(&m, &a), "**NGINX nodes**");
    assert!(r.contains("| **2** x 8 cores (7.1 cores → 1 + spares) |"), "{r}");
    assert!(r.contains("| **10** x 8 cores (71.4 cores → 9 + spares) |"), "{r}");
}

#[test]
fn redis_primaries_are_1_and_7() {
    // old #15
    let (m, a) = (sample_measured(), Assumptions::default());
    assert_eq!((plan(&m, &a, 1.0).primaries, plan(&m, &a, 10.0).primaries), (1, 7));
    let r = row(&render(&m, &a), "**Redis primaries**");
    assert!(r.contains("| **1** (0.65 cores; 51,000 lookups/s each) |"), "{r}");
    assert!(r.contains("| **7** (6.53 cores; 72,857 lookups/s each) |"), "{r}");
}

#[test]
fn redis_memory_is_253_mb_and_2_5_gb() {
    // old #16
    let r = row(&render(&sample_measured(), &Assumptions::default()), "**Redis memory**");
    assert!(r.contains("| **253 MB** in all (84 MB of results, 126 MB per primary, 17,000 keys) |"), "{r}");
    assert!(r.contains("| **2.5 GB** in all (843 MB of results, 181 MB per primary, 170,000 keys) |"), "{r}");
}

#[test]
fn postgresql_pools_are_56_and_472_of_200_the_second_flagged() {
    // old #17
    let r = row(&render(&sample_measured(), &Assumptions::default()), "PostgreSQL connections");
    assert_eq!(
        r,
        "| PostgreSQL connections if every pool fills | 56 of 200 | 472 of 200 (**needs a pooler or smaller pools**) |"
    );
}

#[test]
fn the_single_replica_cross_check_is_shown() {
    // old #18
    let section = render(&sample_measured(), &Assumptions::default());
    assert!(section.contains("| one replica alone (cross-check) | 29.0 µs |"), "{section}");
}

#[test]
fn the_assumptions_are_stated() {
    // old #19
    let section = render(&sample_measured(), &Assumptions::default());
    assert!(section.contains("Peak factor 1.5"), "{section}");
    assert!(section.contains("1,700,000 candidates"), "{section}");
}

#[test]
fn an_assumption_is_an_option_twice_the_candidates_twice_the_lookups() {
    // old #20: the option as the command line takes it
    let a = parse(&["--candidates", "3400000"]).expect("valid options");
    let section = render(&sample_measured(), &a);
    assert_eq!(row(&section, "peak API lookups"), "| peak API lookups | 102,000 req/s | 1,020,000 req/s |");
}

#[test]
fn there_is_at_least_one_spare_of_each_even_with_no_spare_fraction() {
    let a = Assumptions { spare_fraction: 0.0, ..Assumptions::default() };
    let p = plan(&sample_measured(), &a, 1.0);
    assert_eq!((p.replicas, p.replicas_total, p.nginx_nodes, p.nginx_total), (6, 7, 1, 2));
}

#[test]
fn no_measured_knee_plans_at_the_cap() {
    let m = Measured { slo_util: None, slo_note: "no knee".into(), ..sample_measured() };
    let section = render(&m, &Assumptions::default());
    assert!(section.contains("| utilization within the SLO | none measured | no knee |"), "{section}");
    assert!(section.contains("Every tier runs at utilization 0.70 at that peak"), "{section}");
}

#[test]
fn buckets_larger_than_a_listpack_are_warned_about() {
    let quiet = render(&sample_measured(), &Assumptions::default());
    assert!(!quiet.contains("**Warning:**"));
    assert!(quiet.ends_with("|\n"), "the section ends with the tables' blank line");
    let m = Measured { listpack_entries: 64.0, ..sample_measured() };
    let warned = render(&m, &Assumptions::default());
    assert!(
        warned.ends_with(
            "\n**Warning:** BUCKET_SIZE 100 > hash-max-listpack-entries 64: buckets are not listpacks and take far \
             more memory than measured.\n"
        ),
        "{warned}"
    );
}

#[test]
fn scenarios_follow_the_scales_option() {
    let a = parse(&["--scales", "0.5", "2", "1000"]).expect("valid options");
    let section = render(&sample_measured(), &a);
    assert!(section.contains("scenarios at 0.5x, 2x, 1000x that"), "{section}");
    assert!(section.contains(
        "| | 0.5x: 0.85 M candidates in 60 s | 2x: 3.4 M candidates in 60 s | 1000x: 1700 M candidates in 60 s |"
    ));
    assert!(section.contains("\n|---|---|---|---|\n"), "{section}");
}

// --- the command line --------------------------------------------------------------------------

/// The capacity-model options as a command line parses them (`cargo xtask capacity-model`
/// flattens the same [`super::Args`]; naming the CLI here would make capacity and cli a cycle).
#[derive(Debug, clap::Parser)]
struct CapacityModelCli {
    #[command(flatten)]
    args: super::Args,
}

fn parse(args: &[&str]) -> Result<Assumptions, clap::Error> {
    let argv = ["capacity-model"].into_iter().chain(args.iter().copied());
    Ok(CapacityModelCli::try_parse_from(argv)?.args.assumptions)
}

#[test]
fn the_defaults_are_the_documented_assumptions() {
    let a = Assumptions::default();
    assert_eq!(a, parse(&[]).expect("no options"));
    assert_eq!(
        (a.candidates, a.window_s, a.scales.clone(), a.lookups_per_candidate, a.page_requests_per_candidate),
        (1_700_000.0, 60.0, vec![1.0, 10.0], 1.2, 3.0)
    );
    assert_eq!(
        (a.peak_factor, a.max_utilization, a.spare_fraction, a.nginx_node_cores, a.redis_replicas, a.redis_overhead),
        (1.5, 0.7, 0.1, 8.0, 1.0, 1.5)
    );
}

#[test]
fn options_out_of_range_are_usage_errors() {
    for args in [
        &["--candidates", "0"][..],
        &["--window-s", "-1"],
        &["--max-utilization", "1.5"],
        &["--scales", "1", "0"],
        &["--peak-factor", "fast"],
        &["--write", "--check"],
    ] {
        let err = parse(args).expect_err(&format!("{args:?} is refused"));
        assert_eq!(err.exit_code(), 2, "{args:?}: argparse's status for a usage error, kept");
    }
    assert_eq!(parse(&["--spare-fraction", "0"]).expect("zero spares is allowed").spare_fraction, 0.0);
}

// --- --write and --check on a copy of the doc --------------------------------------------------

#[test]
fn write_fills_the_doc_and_check_then_passes_until_an_input_changes() {
    let sample = Sample::new();
    let doc = sample.doc().display().to_string();
    // old #21
    assert_eq!(sample.run(Mode::Write).expect("--write"), format!("wrote {doc}"));
    let written = fs::read_to_string(sample.doc()).expect("read the doc");
    // old #22: the section written is the printed one (the sample's figures, not the committed)
    let printed = sample.run(Mode::Print).expect("print");
    assert!(written.contains(&format!("{BEGIN}\n{printed}\n{END}")), "{written}");
    assert!(written.contains("| **API replicas**") && !written.contains("Not generated yet"));
    // old #23: the text around the markers is kept
    assert!(written.lines().any(|l| l == "## The model"), "{written}");
    assert!(written.contains("capacity-model:end"));
    let committed = fs::read_to_string(repo().join("docs/capacity-model.md")).expect("read");
    let before = |doc: &str| doc.split_once(BEGIN).map(|(head, _)| head.to_string());
    let after = |doc: &str| doc.split_once(END).map(|(_, tail)| tail.to_string());
    assert_eq!((before(&written), after(&written)), (before(&committed), after(&committed)));
    // old #24
    assert_eq!(sample.run(Mode::Check).expect("--check right after --write"), format!("{doc} is up to date"));

    let stack = sample.inputs().join("bench/stack.json");
    let changed = STACK_JSON.replace("\"upstream_cpu_us_per_request\": 64.0", "\"upstream_cpu_us_per_request\": 90.0");
    assert_ne!(changed, STACK_JSON);
    fs::write(stack, changed).expect("write");
    let (code, message) = sample.failure(Mode::Check);
    // old #25
    assert_eq!(code, 1, "--check once an input changed: {message}");
    // old #26
    assert!(message.contains("cargo xtask capacity-model --write"), "{message}");
    assert_eq!(fs::read_to_string(sample.doc()).expect("read"), written, "--check does not write");
}

// --- inputs missing or malformed ---------------------------------------------------------------

#[test]
fn a_missing_input_stops_it_naming_the_file_and_its_command() {
    let sample = Sample::new();
    let seed = sample.inputs().join("bench/seed.json");
    fs::remove_file(&seed).expect("rm");
    let (code, message) = sample.failure(Mode::Print);
    // old #27
    assert_eq!(code, 2);
    // old #28
    assert!(message.contains(&format!("missing input {}: run cargo xtask bench seed", seed.display())), "{message}");
}

#[test]
fn a_stack_json_from_before_the_redis_column_stops_it() {
    let sample = Sample::new();
    let stack = sample.inputs().join("bench/stack.json");
    let mut data: Value = serde_json::from_str(STACK_JSON).expect("sample JSON");
    let nocache = data["medians"]["stack-nocache"].as_object_mut().expect("an object");
    assert!(nocache.remove("redis_cpu_us_per_request").is_some());
    fs::write(&stack, data.to_string()).expect("write");
    let (code, message) = sample.failure(Mode::Print);
    // old #29
    assert_eq!(code, 2);
    // old #30
    assert!(message.contains("has no medians.stack-nocache.redis_cpu_us_per_request"), "{message}");
}

#[test]
fn an_api_json_that_is_not_json_stops_it() {
    let sample = Sample::new();
    fs::write(sample.inputs().join("bench/api.json"), "not json\n").expect("write");
    let (code, message) = sample.failure(Mode::Print);
    // old #31
    assert_eq!(code, 2);
    // old #32
    assert!(message.contains("is not valid JSON"), "{message}");
    assert!(message.ends_with("run cargo xtask bench api (the native stack up) again"), "{message}");
}

#[test]
fn a_doc_without_markers_stops_it_and_is_left_alone() {
    let sample = Sample::new();
    fs::write(sample.doc(), "# no markers\n").expect("write");
    let (code, message) = sample.failure(Mode::Write);
    // old #33
    assert_eq!(code, 2);
    // old #34
    assert!(message.contains("the doc must hold the markers"), "{message}");
    // old #35
    assert_eq!(fs::read_to_string(sample.doc()).expect("read"), "# no markers\n");
}

#[test]
fn markers_must_appear_once_each_in_order() {
    let ok = format!("a\n{BEGIN}\nold\n{END}\nb\n");
    assert_eq!(replace_section(&ok, "new").expect("markers"), format!("a\n{BEGIN}\nnew\n{END}\nb\n"));
    for bad in [format!("{END}\n{BEGIN}\n"), format!("{BEGIN}\n{BEGIN}\n{END}\n"), format!("{BEGIN}\n")] {
        assert!(replace_section(&bad, "new").is_err(), "{bad}");
    }
}

// --- the benchmarks write what the model reads -------------------------------------------------

#[test]
fn the_benchmark_scripts_write_the_columns_the_model_reads() {
    // old #36-#41: stack's edge/upstream/redis CPU per request, api's server CPU per request and
    // peak RSS, seed's bytes per result (the lists are the ones inputs::read uses)
    let mut checked = 0;
    for (bench, header, _, columns) in BENCH_COLUMNS {
        let header = header();
        let names: Vec<&str> = header.split(',').collect();
        for column in *columns {
            assert!(names.contains(column), "bench {bench}'s runs.csv has the column {column}: {header}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn the_benchmarks_write_the_files_the_model_reads() {
    // old #42-#47: for stack, api and seed, the benchmark writes docs/bench/NAME.json by default
    // (the scripts' `bash -n` check has no Rust counterpart: the compiler is it)
    for (bench, _, input, _) in BENCH_COLUMNS {
        let default = crate::bench::result_file(&std::collections::HashMap::<String, String>::new(), bench);
        assert_eq!(default, Some(repo().join("docs").join(input.name)), "bench {bench}");
    }
}

// --- `cargo xtask bench result`, which writes the model's JSON inputs --------------------------

/// `cargo xtask bench result ARGS` (what the benchmarks call to write their JSON), through the
/// same function: `--bench`, `--csv`, `--out`, `--command`, `--meta` (repeatable).
fn result_json(args: &[&str]) -> anyhow::Result<()> {
    let value = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied();
    let meta: Vec<String> = args.windows(2).filter(|w| w[0] == "--meta").map(|w| w[1].to_owned()).collect();
    crate::bench::result_from_csv(
        value("--bench").unwrap_or_default(),
        Path::new(value("--csv").unwrap_or_default()),
        Path::new(value("--out").unwrap_or_default()),
        value("--command").unwrap_or_default(),
        &meta,
    )
}

/// `bench result`'s outputs for the sample runs (as the old test made them) beside the sample
/// capacity curves, in a temporary folder.
fn result_json_inputs() -> (TempDir, [anyhow::Result<()>; 3]) {
    let dir = TempDir::new().expect("temp dir");
    let p = |name: &str| dir.path().join(name).display().to_string();
    fs::create_dir_all(dir.path().join("bench")).expect("mkdir");
    for (name, text) in [
        ("stack-runs.csv", STACK_RUNS),
        ("api-runs.csv", API_RUNS),
        ("seed-runs.csv", SEED_RUNS),
        ("capacity-knee.csv", KNEE_CSV),
        ("capacity-result-day.csv", RESULT_DAY_CSV),
    ] {
        fs::write(dir.path().join(name), text).expect("write");
    }
    let outputs = [
        result_json(&[
            "--bench",
            "stack",
            "--csv",
            &p("stack-runs.csv"),
            "--out",
            &p("bench/stack.json"),
            "--command",
            "sample",
            "--meta",
            "replicas=3",
            "--meta",
            "nginx_version=nginx/1.22.1",
        ]),
        result_json(&["--bench", "api", "--csv", &p("api-runs.csv"), "--out", &p("bench/api.json")]),
        result_json(&[
            "--bench",
            "seed",
            "--csv",
            &p("seed-runs.csv"),
            "--out",
            &p("bench/seed.json"),
            "--meta",
            "students=674823",
        ]),
    ];
    (dir, outputs)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("JSON")
}

#[test]
fn result_json_writes_stack_api_and_seed_json() {
    let (dir, [stack, api, seed]) = result_json_inputs();
    for (name, out) in [("stack", stack), ("api", api), ("seed", seed)] {
        // old #1, #2, #3
        assert!(out.is_ok(), "bench result writes {name}.json: {out:?}");
        assert!(dir.path().join(format!("bench/{name}.json")).is_file());
    }
}

#[test]
fn result_json_writes_the_median_of_the_rounds_per_target() {
    let (dir, _) = result_json_inputs();
    let stack = json(&dir.path().join("bench/stack.json"));
    // old #4: upstream 70, 64, 60 -> 64
    assert_eq!(stack["medians"]["stack-nocache"]["upstream_cpu_us_per_request"], 64.0);
    // old #5
    assert_eq!(stack["medians"]["ceiling"]["rps"], 30000);
    // old #6: columns with empty cells are left out for that target
    assert!(stack["medians"]["ceiling"].get("replica_requests").is_none(), "{stack}");
    assert!(stack["medians"]["stack-nocache"].get("replica_requests").is_some(), "{stack}");
    // old #7: rounds counted, --meta kept with numbers as numbers
    assert_eq!(
        (&stack["rounds"], &stack["meta"]["replicas"], &stack["meta"]["nginx_version"]),
        (&Value::from(3), &Value::from(3), &Value::from("nginx/1.22.1"))
    );
    // old #8: medians without a target column
    assert_eq!(json(&dir.path().join("bench/seed.json"))["medians"]["bytes_per_result"], 52.0);
}

#[test]
fn result_json_refuses_a_meta_that_is_not_key_value() {
    // old #9
    let dir = TempDir::new().expect("temp dir");
    let csv = dir.path().join("seed-runs.csv");
    fs::write(&csv, SEED_RUNS).expect("write");
    let out = dir.path().join("x.json");
    let run = result_json(&[
        "--bench",
        "x",
        "--csv",
        &csv.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--meta",
        "novalue",
    ]);
    assert!(run.is_err(), "a --meta without = is refused");
    assert!(!out.exists());
}

#[test]
fn the_model_reads_what_result_json_writes() {
    // The sample JSON above stands for `bench result`'s output: the figures read from both agree
    // (the machine's cores and the provenance are this machine's and this moment's).
    let (dir, _) = result_json_inputs();
    let got = inputs::read(&repo(), dir.path()).expect("the model reads bench result's files");
    let want = Measured { stack_cores: got.stack_cores, ..sample_measured() };
    assert_eq!(measured_only(&got), measured_only(&want));
}

// --- the committed doc -------------------------------------------------------------------------

#[test]
fn the_committed_doc_is_current() {
    // old #48. This is CI's `cargo xtask capacity-model --check`: scripts/test.sh runs the
    // workspace's tests.
    let at = Locations::committed(&repo());
    let measured = ["stack", "api", "seed"].iter().all(|b| at.inputs.join(format!("bench/{b}.json")).is_file());
    let result = execute(Mode::Check, &at, &Assumptions::default());
    if measured {
        match result {
            Ok(_) => {}
            Err(e) => panic!("{e} (after a new benchmark or a change to the model)"),
        }
    } else {
        // Without the measured inputs the doc says so, and the command names the missing file.
        let doc = fs::read_to_string(&at.doc).expect("the doc");
        assert!(doc.contains("Not generated yet"), "docs/capacity-model.md says it is not generated yet");
        let err = result.expect_err("no measured inputs");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("missing input docs/bench/"), "{err}");
    }
}

// --- the process' exit status ------------------------------------------------------------------

#[test]
fn the_exit_status_is_the_errors() {
    // What `cargo xtask capacity-model` returns to the shell: 0, 1 for a stale doc, 2 for an input.
    let sample = Sample::new();
    let args = |extra: &[&str]| {
        let inputs = sample.inputs().display().to_string();
        let doc = sample.doc().display().to_string();
        let argv = ["capacity-model", "--inputs", &inputs, "--doc", &doc];
        CapacityModelCli::try_parse_from(argv.iter().chain(extra)).expect("valid options").args
    };
    assert_eq!(super::main(args(&["--write"])), ExitCode::SUCCESS);
    assert_eq!(super::main(args(&["--check"])), ExitCode::SUCCESS);
    assert_eq!(super::main(args(&["--check", "--candidates", "1"])), ExitCode::from(1));
    fs::remove_file(sample.inputs().join("capacity-knee.csv")).expect("rm");
    assert_eq!(super::main(args(&[])), ExitCode::from(2));
}
