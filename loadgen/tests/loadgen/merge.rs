//! `loadgen merge`: several generators' histograms merge into exactly one generator's, two real
//! runs merge into their sum, and inputs that would not merge exactly are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use loadgen::config::Cli;
use loadgen::failure::{Failure, Mismatch};
use loadgen::live::Live;
use loadgen::recorder::{Recorder, RunContext};
use loadgen::request::Request;
use loadgen_report::histogram_log::{self, Correction, DataSet, LOG_FILE, LatencyLog, META_FILE};

use crate::helpers::{SEED, STUDENTS, one_load_at_a_time, run_args, spawn_api};

fn context(generator: &str) -> RunContext {
    RunContext {
        generator: generator.into(),
        target: "http://127.0.0.1:1".into(),
        users: 3,
        data_set: DataSet { students: STUDENTS, seed: SEED },
        co_mitigation: "average".into(),
    }
}

/// A known sample: request, latency µs, the user's cadence ms, failure.
type Sample = (Request, u64, u64, Option<Failure>);

/// 30,000 samples from 40 µs to 30 s, mostly around a few ms, with failures and cadences.
fn samples() -> Vec<Sample> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..30_000)
        .map(|i| {
            let r = next();
            let request = Request::ALL[(r % 4) as usize];
            // A log-uniform latency from 40 µs to ~30 s: every bucket size of the histogram.
            let exponent = 1.6 + (r >> 8) as f64 / (1u64 << 56) as f64 * 5.9;
            let us = 10f64.powf(exponent) as u64;
            let cadence = if i % 3 == 0 { 0 } else { 1 + (r >> 50) % 20 };
            let error = match (r >> 40) % 50 {
                0 => Some(Failure::Status),
                1 => Some(Failure::Body(Mismatch::WrongStudent)),
                2 => Some(Failure::Transport),
                _ => None,
            };
            (request, us, cadence, error)
        })
        .collect()
}

/// A run folder holding `samples`, recorded as a generator records them.
fn recorded_run(dir: &Path, generator: &str, samples: &[Sample]) {
    let recorder = Recorder::new(None);
    for &(request, us, cadence, error) in samples {
        recorder.record(request, Duration::from_micros(us), cadence, error);
    }
    recorder.finish(&context(generator)).write(dir).expect("the run's histograms are written");
}

fn merge_cli(dirs: &[&Path], out: &Path, extra: &[&str]) -> Cli {
    let mut line: Vec<String> = vec!["loadgen".into(), "merge".into()];
    line.extend(dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    line.extend(["--out".into(), out.to_string_lossy().into_owned()]);
    line.extend(extra.iter().map(|s| (*s).to_owned()));
    Cli::try_parse_from(line).expect("the merge command line parses")
}

/// Lenient gates: tests check the arithmetic, not the speed of a debug build.
const LENIENT: [&str; 6] = ["--slo-p95-ms", "100000", "--slo-p99-ms", "100000", "--slo-error-ratio", "1"];

fn sum(log: &LatencyLog, latency: Correction) -> Histogram<u64> {
    loadgen_report::figures::total(log, |_, _, c| c == latency)
}

/// Every percentile (0 to 100 in steps of 0.01, and the far tail), min, max, mean and count agree.
fn assert_same_percentiles(a: &Histogram<u64>, b: &Histogram<u64>, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: count");
    assert_eq!(a.min(), b.min(), "{what}: min");
    assert_eq!(a.max(), b.max(), "{what}: max");
    assert_eq!(a.mean().to_bits(), b.mean().to_bits(), "{what}: mean");
    // Ascending, as value_at_quantiles wants: 0 to 100% in steps of 0.01%, and the far tail.
    let quantiles = || (0..10_000).map(|i| f64::from(i) / 10_000.0).chain([0.99999, 0.999999, 1.0]);
    // One pass over each histogram for all of them (a scan per quantile is slow in a debug build).
    let (at_a, at_b): (Vec<u64>, Vec<u64>) =
        (a.value_at_quantiles(quantiles()).collect(), b.value_at_quantiles(quantiles()).collect());
    assert_eq!(at_a.len(), 10_003, "{what}: every quantile");
    for ((q, x), y) in quantiles().zip(at_a).zip(at_b) {
        assert_eq!(x, y, "{what}: quantile {q}");
    }
}

#[tokio::test]
async fn two_generators_merged_equal_one_generator_given_the_same_samples() {
    let samples = samples();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, one) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("one"));
    // Unequal halves, interleaved: the split must not matter.
    let (first, second): (Vec<_>, Vec<_>) = samples.iter().enumerate().partition(|(i, _)| i % 3 == 0);
    let first: Vec<Sample> = first.into_iter().map(|(_, s)| *s).collect();
    let second: Vec<Sample> = second.into_iter().map(|(_, s)| *s).collect();
    recorded_run(&a, "gen-a", &first);
    recorded_run(&b, "gen-b", &second);
    recorded_run(&one, "gen-one", &samples);

    let (two_out, one_out) = (tmp.path().join("merged-two"), tmp.path().join("merged-one"));
    let code = loadgen::run(merge_cli(&[&a, &b], &two_out, &LENIENT)).await.expect("the merge happens");
    assert_eq!(code, ExitCode::SUCCESS);
    let code = loadgen::run(merge_cli(&[&one], &one_out, &LENIENT)).await.expect("the merge happens");
    assert_eq!(code, ExitCode::SUCCESS);

    let two = LatencyLog::read(&two_out).expect("merged histograms");
    let single = LatencyLog::read(&one_out).expect("merged histograms");
    // Every series (request × outcome × raw/corrected) is the same histogram, bucket for bucket.
    assert_eq!(two.series.keys().collect::<Vec<_>>(), single.series.keys().collect::<Vec<_>>());
    assert_eq!(two.series.len(), 4 * 2 * 2, "every request, both outcomes, raw and corrected");
    for (key, histogram) in &two.series {
        assert!(*histogram == single.series[key], "{key:?} differs");
        assert_same_percentiles(histogram, &single.series[key], &key.tag());
    }
    for latency in [Correction::Raw, Correction::Corrected] {
        assert_same_percentiles(&sum(&two, latency), &sum(&single, latency), &format!("all {latency:?}"));
    }
    assert_eq!(two.meta.requests, samples.len() as u64);
    let failures = samples.iter().filter(|s| s.3.is_some()).count() as u64;
    assert_eq!((two.meta.failures, single.meta.failures), (failures, failures));
    assert_eq!(two.meta.failures_by_kind, single.meta.failures_by_kind);
    assert_eq!(two.meta.runs.len(), 2);

    // The merged raw percentiles are the samples' own, to HdrHistogram's 3 digits: the value of
    // rank ceil(q × n) in sorted order, reported as the top of its bucket.
    let raw = sum(&two, Correction::Raw);
    let mut sorted: Vec<u64> = samples.iter().map(|s| s.1).collect();
    sorted.sort_unstable();
    for i in 1..=1000 {
        let q = f64::from(i) / 1000.0;
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        let truth = sorted[rank - 1];
        assert_eq!(raw.value_at_quantile(q), raw.highest_equivalent(truth), "quantile {q}");
        assert!(raw.value_at_quantile(q) - truth <= truth / 1000, "within 0.1% at {q}");
    }
    assert_eq!(raw.min(), sorted[0]);

    // The reports say the same figures.
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("merge.json")).expect("merge.json")).expect("JSON")
    };
    let (two_report, one_report) = (report(&two_out), report(&one_out));
    assert_eq!(two_report["all"], one_report["all"]);
    assert_eq!(two_report["by_request"], one_report["by_request"]);
    assert_eq!(two_report["requests"], samples.len());
    let text = std::fs::read_to_string(two_out.join("summary.txt")).expect("summary.txt");
    assert!(text.contains("merged      2 runs from 2 folders; generators gen-a, gen-b"), "{text}");
    assert!(text.contains("── loadgen summary") && text.contains("SLO gates"), "{text}");

    // A merge is an input like a run: (a + b) + one holds every sample twice.
    let again = tmp.path().join("again");
    let code = loadgen::run(merge_cli(&[&two_out, &one], &again, &LENIENT)).await.expect("merges again");
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(LatencyLog::read(&again).expect("read").meta.requests, 2 * samples.len() as u64);
    // … but not with a run it already holds.
    let error = loadgen::run(merge_cli(&[&two_out, &a], &tmp.path().join("twice"), &LENIENT))
        .await
        .expect_err("a run counted twice is refused")
        .to_string();
    assert!(error.contains("count twice"), "{error}");
}

/// The histograms of a run folder, decoded without the crate's reader: tag → histogram.
fn decode_independently(dir: &Path) -> BTreeMap<String, Histogram<u64>> {
    let text = std::fs::read_to_string(dir.join(LOG_FILE)).expect("latency.hlog");
    let mut series = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("Tag=")) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 5, "Tag=tag,start,duration,max,histogram: {line}");
        let tag = fields[0].trim_start_matches("Tag=").to_owned();
        let bytes = base64::engine::general_purpose::STANDARD.decode(fields[4]).expect("base64");
        let histogram: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).expect("V2 histogram");
        series.insert(tag, histogram);
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_runs_merge_into_their_sum() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Run a measures after the ramp-up, as goose does by default; run b measures everything, so
    // its live Prometheus counters (a fresh Live) count exactly what its histograms hold.
    let live_a = Live::new().expect("live");
    let run_a = run_args(&api.base, &a, 6, &["--generator-label", "gen-a"]);
    let summary_a = loadgen::attack::run(&run_a, &live_a, None).await.expect("run a happens");
    let live_b = Live::new().expect("live");
    let run_b = run_args(&api.base, &b, 4, &["--generator-label", "gen-b", "--no-reset-metrics"]);
    let summary_b = loadgen::attack::run(&run_b, &live_b, None).await.expect("run b happens");
    assert!(summary_a.files.iter().any(|f| f == LOG_FILE) && summary_a.files.iter().any(|f| f == META_FILE));

    let meta = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).expect("latency.json")).expect("JSON")
    };
    let (meta_a, meta_b) = (meta(&a), meta(&b));
    let count = |m: &serde_json::Value, field: &str| m[field].as_u64().expect("a count");
    assert!(count(&meta_a, "requests") > 20 && count(&meta_b, "requests") > 20, "{meta_a} {meta_b}");
    assert_eq!(meta_a["runs"][0]["ramp_up_excluded"], true, "{meta_a}");
    assert_eq!(meta_b["runs"][0]["ramp_up_excluded"], false, "{meta_b}");
    assert_eq!(meta_a["runs"][0]["generator"], "gen-a");
    assert_eq!(meta_a["co_mitigation"], "average");
    // Run b's histograms hold every request its live counters saw, once.
    let live_total: f64 = live_b
        .render()
        .lines()
        .filter(|l| l.starts_with("loadgen_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(live_total as u64, count(&meta_b, "requests"), "live counters and histograms agree");
    // And the run's summary counts exactly what its histograms hold.
    assert_eq!(summary_b.stats.requests as u64, count(&meta_b, "requests"), "{meta_b}");

    let out = tmp.path().join("merged");
    let code = loadgen::run(merge_cli(&[&a, &b], &out, &LENIENT)).await.expect("the merge happens");
    assert_eq!(code, ExitCode::SUCCESS);
    let merged_meta = meta(&out);
    assert_eq!(count(&merged_meta, "requests"), count(&meta_a, "requests") + count(&meta_b, "requests"));
    assert_eq!(count(&merged_meta, "failures"), count(&meta_a, "failures") + count(&meta_b, "failures"));

    // The merged histograms are the sum of both runs' recorded histograms, decoded independently.
    let (mut expected, merged) = (decode_independently(&a), decode_independently(&out));
    for (tag, histogram) in decode_independently(&b) {
        expected.entry(tag).or_insert_with(histogram_log::new_histogram).add(&histogram).expect("adds");
    }
    assert_eq!(expected.keys().collect::<Vec<_>>(), merged.keys().collect::<Vec<_>>());
    let mut all_raw = histogram_log::new_histogram();
    for (tag, histogram) in &expected {
        assert_same_percentiles(histogram, &merged[tag], tag);
        if tag.ends_with(".raw") {
            all_raw.add(histogram).expect("adds");
        }
    }
    assert_eq!(all_raw.len(), count(&merged_meta, "requests"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("merge.json")).expect("merge.json")).expect("JSON");
    let ms = |us: u64| us as f64 / 1000.0;
    assert_eq!(report["all"]["raw"]["count"], all_raw.len());
    assert_eq!(report["all"]["raw"]["p50_ms"], ms(all_raw.value_at_quantile(0.5)));
    assert_eq!(report["all"]["raw"]["p99_ms"], ms(all_raw.value_at_quantile(0.99)));
    assert_eq!(report["all"]["raw"]["max_ms"], ms(all_raw.max()));
    // One run after the other: the union of their windows leaves out the gap between them.
    let seconds = |m: &serde_json::Value| {
        let run = &m["runs"][0];
        (run["end_unix_us"].as_u64().expect("end") - run["start_unix_us"].as_u64().expect("start")) as f64 / 1e6
    };
    let union = report["window"]["union_seconds"].as_f64().expect("union");
    assert!((union - (seconds(&meta_a) + seconds(&meta_b))).abs() < 1e-6, "{}", report["window"]);
    assert!(union <= report["window"]["span_seconds"].as_f64().expect("span"));
    let rps = report["rps"].as_f64().expect("rps");
    assert!((rps - count(&merged_meta, "requests") as f64 / union).abs() < 1e-6);

    for file in ["summary.txt", "summary.json", "merge.md", "percentiles.png", LOG_FILE, META_FILE] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let png = std::fs::read(out.join("percentiles.png")).expect("png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a PNG of {} bytes", png.len());
    let markdown = std::fs::read_to_string(out.join("merge.md")).expect("merge.md");
    assert!(markdown.contains("gen-a") && markdown.contains("gen-b") && markdown.contains("| p95 |"), "{markdown}");

    // The same gates as a run: an impossible p99 exits 1, unless told otherwise.
    let strict = ["--slo-p99-ms", "0.001"];
    let code = loadgen::run(merge_cli(&[&a, &b], &tmp.path().join("strict"), &strict)).await.expect("merges");
    assert_eq!(code, ExitCode::from(loadgen::EXIT_SLO_MISSED));
    let lenient = ["--slo-p99-ms", "0.001", "--no-slo-exit"];
    let code = loadgen::run(merge_cli(&[&a, &b], &tmp.path().join("lenient"), &lenient)).await.expect("merges");
    assert_eq!(code, ExitCode::SUCCESS);
}

/// One percentile engine: a run's own summary and gates, and `loadgen merge` of that one run,
/// read the same histograms the same way, so they agree exactly, down to a gate set at the
/// observed p99 itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_and_the_merge_of_that_run_agree_exactly() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    let live = Live::new().expect("live");
    // Some users pause (so goose has a cadence and corrects stalls), on one shared pool.
    let paced = ["--think-min-ms", "0", "--think-max-ms", "20", "--generator-label", "gen-one"];
    let summary = loadgen::attack::run(&run_args(&api.base, &run, 6, &paced), &live, None).await.expect("run");
    assert!(summary.stats.requests > 20, "{}", summary.render());
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .expect("JSON")
    };
    let ran = json(run.join("summary.json"));
    let p99 = summary.stats.latency.p99_ms;
    // The run's gates at its defaults; then a p99 gate exactly at the observed p99 (passes: the
    // limit is inclusive), and one a microsecond below it (fails).
    let limit = format!("{p99}");
    let below = format!("{}", p99 - 0.001);
    for (name, p99_limit, exit) in [
        ("default", None, ExitCode::SUCCESS),
        ("at", Some(&limit), ExitCode::SUCCESS),
        ("below", Some(&below), ExitCode::from(loadgen::EXIT_SLO_MISSED)),
    ] {
        let out = tmp.path().join(name);
        let mut extra = vec!["--slo-p95-ms", "2000", "--slo-p99-ms", "4000"];
        if let Some(p99_limit) = p99_limit {
            extra[3] = p99_limit;
        }
        let code = loadgen::run(merge_cli(&[&run], &out, &extra)).await.expect("the merge happens");
        assert_eq!(code, exit, "{name}: p99 {p99} ms");
        let merged = json(out.join("summary.json"));
        assert_eq!(merged["stats"], ran["stats"], "{name}: every figure, count and error row");
        if p99_limit.is_none() {
            assert_eq!(merged["verdict"], ran["verdict"], "the same gates, the same verdict");
        }
    }
    let text = std::fs::read_to_string(tmp.path().join("at").join("summary.txt")).expect("summary.txt");
    let latency_line = summary.render().lines().find(|l| l.starts_with("latency ")).map(str::to_owned);
    assert!(latency_line.is_some_and(|line| text.contains(&line)), "the same latency line: {text}");
    assert!(text.contains("PASS  p99"), "{text}");
}

async fn refusal(dirs: &[&Path], out: &Path) -> String {
    loadgen::run(merge_cli(dirs, out, &LENIENT)).await.expect_err("the merge is refused").to_string()
}

fn edit(path: PathBuf, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, edit(text)).expect("write");
}

#[tokio::test]
async fn inputs_that_do_not_merge_exactly_are_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let good = tmp.path().join("good");
    let few: Vec<Sample> = samples().into_iter().take(500).collect();
    recorded_run(&good, "good", &few);

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let error = refusal(&[&good, &empty], &out).await;
    assert!(error.contains("empty/latency.json: missing: not a loadgen run folder"), "{error}");

    let error = refusal(&[&tmp.path().join("nowhere")], &out).await;
    assert!(error.contains("nowhere: not a folder"), "{error}");

    let no_log = tmp.path().join("no-log");
    recorded_run(&no_log, "no-log", &few);
    std::fs::remove_file(no_log.join(LOG_FILE)).expect("rm");
    let error = refusal(&[&good, &no_log], &out).await;
    assert!(error.contains("no-log/latency.hlog: missing"), "{error}");

    // A damaged histogram: characters of its base64 replaced.
    let corrupt = tmp.path().join("corrupt");
    recorded_run(&corrupt, "corrupt", &few);
    edit(corrupt.join(LOG_FILE), |text| {
        let at = text.find("Tag=").expect("an interval") + 200;
        format!("{}AAAAAAAAAAAAAAAA{}", &text[..at], &text[at + 16..])
    });
    let error = refusal(&[&good, &corrupt], &out).await;
    assert!(error.contains("corrupt/latency.hlog: corrupt histogram"), "{error}");

    // A truncated file: the last histogram's line is cut.
    let truncated = tmp.path().join("truncated");
    recorded_run(&truncated, "truncated", &few);
    edit(truncated.join(LOG_FILE), |text| text[..text.len() - 40].to_owned());
    let error = refusal(&[&truncated], &out).await;
    assert!(error.contains("truncated/latency.hlog: corrupt"), "{error}");

    // A histogram that does not hold what latency.json says.
    let miscounted = tmp.path().join("miscounted");
    recorded_run(&miscounted, "miscounted", &few);
    edit(miscounted.join(META_FILE), |text| {
        let mut meta: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let listed = meta["series"][0]["count"].as_u64().expect("a count");
        meta["series"][0]["count"] = (listed + 1).into();
        meta.to_string()
    });
    let error = refusal(&[&miscounted], &out).await;
    assert!(
        error.contains("miscounted/latency.hlog: corrupt: histogram") && error.contains("latency.json says"),
        "{error}"
    );

    // Histograms of other settings: 2 significant digits.
    let coarse = tmp.path().join("coarse");
    let mut log = LatencyLog::read(&good).expect("read");
    log.meta.runs[0].run_id = "coarse".into();
    log.meta.histograms.significant_digits = 2;
    for histogram in log.series.values_mut() {
        let mut two_digits = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("bounds");
        two_digits.auto(true);
        two_digits.add(&*histogram).expect("adds");
        *histogram = two_digits;
    }
    log.write(&coarse).expect("written");
    let error = refusal(&[&good, &coarse], &out).await;
    assert!(error.contains("other histogram settings") && error.contains("2 significant digits"), "{error}");
    // … and a latency.json that misstates its histograms' settings.
    edit(coarse.join(META_FILE), |text| text.replace("\"significant_digits\": 2", "\"significant_digits\": 3"));
    let error = refusal(&[&coarse], &out).await;
    assert!(error.contains("has 2 significant digits and lowest value 1; latency.json says 3"), "{error}");

    // Another data set, another --co-mitigation.
    for (name, from, to, expected) in [
        ("other-set", format!("\"students\": {STUDENTS}"), "\"students\": 674000".to_owned(), "another data set"),
        (
            "other-mode",
            "\"co_mitigation\": \"average\"".to_owned(),
            "\"co_mitigation\": \"disabled\"".to_owned(),
            "--co-mitigation",
        ),
    ] {
        let dir = tmp.path().join(name);
        recorded_run(&dir, name, &few);
        edit(dir.join(META_FILE), |text| text.replace(&from, &to));
        let error = refusal(&[&good, &dir], &out).await;
        assert!(error.contains(expected) && error.contains(name), "{error}");
    }

    // The same run twice, and an output folder that is an input.
    let error = refusal(&[&good, &good], &out).await;
    assert!(error.contains("count twice"), "{error}");
    let error = refusal(&[&good], &good).await;
    assert!(error.contains("is one of the inputs"), "{error}");
    assert!(!out.exists(), "nothing is written when an input is refused");

    // The binary: refused inputs exit 2 with the reason on stderr.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["merge", &good.to_string_lossy(), &corrupt.to_string_lossy(), "--out"])
        .arg(&out)
        .output()
        .expect("loadgen runs");
    assert_eq!(output.status.code(), Some(i32::from(loadgen::EXIT_FAILED)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loadgen: error: merge: ") && stderr.contains("corrupt histogram"), "{stderr}");
}
