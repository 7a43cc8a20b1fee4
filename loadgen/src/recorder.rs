//! Where a run records every measured request's latency while it runs, for its latency
//! histograms (`loadgen_report::histogram_log`): raw and corrected HdrHistograms per request,
//! outcome and correction, and the failures by kind. The run's summary, gates and any later
//! `loadgen merge` all read their figures from what is recorded here.
//!
//! The corrected series use HdrHistogram's `record_correct` at the user's expected cadence, which
//! goose hands back on every request under `--co-mitigation` (0, so nothing is added, when
//! mitigation is disabled and for a user's first loops).
//!
//! The measured window follows goose: when goose resets its metrics after the ramp-up (a plain
//! `--users` run without `--no-reset-metrics`), the histograms are reset when the last user
//! arrives, and the window starts there.
//!
//! Recording is cheap, as the generator's CPU is part of what a load test measures: one shard of
//! histograms per worker thread (a thread-local index into a few mutexes, so locks are
//! uncontended), each histogram allocated on its shard's first sample, no allocation per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use loadgen_report::histogram_log::{
    Correction, DataSet, FORMAT, HistogramSettings, KindCount, LatencyLog, Meta, Outcome, RunInfo, SeriesKey, add,
    new_histogram, new_run_id, rfc3339, unix_us,
};

use crate::failure::Failure;
use crate::request::Request;

/// Where every latency of a run is recorded while it runs (see the module docs).
#[derive(Debug)]
pub struct Recorder {
    shards: Box<[Mutex<Shard>]>,
    window: Mutex<(SystemTime, bool)>,
    arrivals: AtomicUsize,
    reset_after: Option<usize>,
}

/// Series per shard: request × outcome × correction.
const SERIES: usize = Request::ALL.len() * 2 * 2;

#[derive(Debug)]
struct Shard {
    histograms: [Option<Histogram<u64>>; SERIES],
    /// Failures per request and [`Failure::index`].
    kinds: Kinds,
    /// When the shard's latest request completed: the window ends at the last of them, not after
    /// goose has stopped its users and written its reports.
    last: Option<Instant>,
}

impl Shard {
    fn new() -> Self {
        Self { histograms: std::array::from_fn(|_| None), kinds: NO_KINDS, last: None }
    }
}

fn series_index(request: Request, outcome: Outcome, latency: Correction) -> usize {
    (request as usize) * 4 + (outcome as usize) * 2 + latency as usize
}

/// Failures of a shard or a run: per request, per [`Failure::index`].
type Kinds = [[u64; Failure::ALL.len()]; Request::ALL.len()];
const NO_KINDS: Kinds = [[0; Failure::ALL.len()]; Request::ALL.len()];

/// The shard a thread records into: threads take indices in turn, so each worker thread of a
/// runtime has a shard of its own while there are at least as many shards as workers.
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|shard| *shard)
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while recording leaves counts that are still counts.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a run's log says about the run, besides the histograms.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The generator's label.
    pub generator: String,
    /// goose's `--host`.
    pub target: String,
    /// Configured users.
    pub users: usize,
    /// The data set.
    pub data_set: DataSet,
    /// goose's `--co-mitigation` mode.
    pub co_mitigation: String,
}

impl Recorder {
    /// A recorder whose window starts now; with `reset_after`, it starts over when that many
    /// users have arrived (goose's metrics reset after the ramp-up).
    pub fn new(reset_after: Option<usize>) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let shards = (threads * 2).clamp(4, 64);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            window: Mutex::new((SystemTime::now(), false)),
            arrivals: AtomicUsize::new(0),
            reset_after,
        }
    }

    /// Records one request completed now: its latency, the user's expected cadence (goose's
    /// `user_cadence`, ms; 0 for none) and why it failed, if it did.
    pub fn record(&self, request: Request, elapsed: Duration, cadence_ms: u64, error: Option<Failure>) {
        self.record_at(Instant::now(), request, elapsed, cadence_ms, error);
    }

    /// [`Recorder::record`] of a request completed at `finished` (the caller's clock reading, so
    /// recording reads no clock).
    pub fn record_at(
        &self,
        finished: Instant,
        request: Request,
        elapsed: Duration,
        cadence_ms: u64,
        error: Option<Failure>,
    ) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let outcome = if error.is_some() { Outcome::Error } else { Outcome::Ok };
        let mut shard = locked(&self.shards[thread_shard() % self.shards.len()]);
        let raw = shard.histograms[series_index(request, outcome, Correction::Raw)].get_or_insert_with(new_histogram);
        if raw.record(us).is_err() {
            raw.saturating_record(us);
        }
        let corrected =
            shard.histograms[series_index(request, outcome, Correction::Corrected)].get_or_insert_with(new_histogram);
        if corrected.record_correct(us, cadence_ms.saturating_mul(1000)).is_err() {
            corrected.saturating_record(us);
        }
        if let Some(failure) = error {
            shard.kinds[request as usize][failure.index()] += 1;
        }
        shard.last = shard.last.max(Some(finished));
    }

    /// A user arrived; the last of the ramp-up starts the window over.
    pub fn arrived(&self) {
        let arrived = self.arrivals.fetch_add(1, Ordering::Relaxed) + 1;
        if Some(arrived) == self.reset_after {
            for shard in self.shards.iter() {
                let mut shard = locked(shard);
                for histogram in shard.histograms.iter_mut().flatten() {
                    histogram.reset();
                }
                shard.kinds = NO_KINDS;
                shard.last = None;
            }
            *locked(&self.window) = (SystemTime::now(), true);
        }
    }

    /// The log of everything recorded so far; the window ends when the last request completed
    /// (now, when none did).
    pub fn finish(&self, context: &RunContext) -> LatencyLog {
        let (start, ramp_up_excluded) = *locked(&self.window);
        let last = self.shards.iter().filter_map(|shard| locked(shard).last).max();
        let end = match last {
            Some(last) => SystemTime::now().checked_sub(last.elapsed()).unwrap_or(start).max(start),
            None => SystemTime::now(),
        };
        let mut log = LatencyLog::new(Meta {
            format: FORMAT.to_owned(),
            runs: Vec::new(),
            data_set: context.data_set,
            co_mitigation: context.co_mitigation.clone(),
            histograms: HistogramSettings::default(),
            requests: 0,
            failures: 0,
            failures_by_kind: Vec::new(),
            series: Vec::new(),
        });
        let mut kinds = NO_KINDS;
        for shard in self.shards.iter() {
            let shard = locked(shard);
            for request in Request::ALL {
                for outcome in [Outcome::Ok, Outcome::Error] {
                    for latency in [Correction::Raw, Correction::Corrected] {
                        let Some(histogram) = &shard.histograms[series_index(request, outcome, latency)] else {
                            continue;
                        };
                        if histogram.is_empty() {
                            continue;
                        }
                        let key = SeriesKey { request: request.label(), outcome, latency };
                        add(log.series_mut(key), histogram);
                    }
                }
                for (sum, count) in kinds[request as usize].iter_mut().zip(shard.kinds[request as usize]) {
                    *sum += count;
                }
            }
        }
        for request in Request::ALL {
            for failure in Failure::ALL {
                let count = kinds[request as usize][failure.index()];
                if count > 0 {
                    log.meta.failures_by_kind.push(KindCount {
                        request: request.label(),
                        kind: failure.kind().as_str().to_owned(),
                        detail: failure.mismatch().map(|mismatch| mismatch.to_string()),
                        count,
                    });
                }
            }
        }
        log.refresh_meta();
        let (start_unix_us, end_unix_us) = (unix_us(start), unix_us(end));
        log.meta.runs.push(RunInfo {
            run_id: new_run_id(),
            generator: context.generator.clone(),
            target: context.target.clone(),
            users: context.users,
            start: rfc3339(start_unix_us),
            end: rfc3339(end_unix_us),
            start_unix_us,
            end_unix_us,
            ramp_up_excluded,
            requests: log.meta.requests,
            failures: log.meta.failures,
        });
        log
    }
}

#[cfg(test)]
mod tests {
    use loadgen_report::histogram_log::LOG_FILE;

    use super::*;
    use crate::failure::Mismatch;

    fn context() -> RunContext {
        RunContext {
            generator: "test".into(),
            target: "http://127.0.0.1:1".into(),
            users: 2,
            data_set: DataSet { students: 10, seed: 1 },
            co_mitigation: "average".into(),
        }
    }

    #[test]
    fn raw_holds_each_request_once_and_corrected_adds_the_held_up_ones() {
        let recorder = Recorder::new(None);
        recorder.record(Request::Result, Duration::from_micros(1_234), 0, None);
        // 10 ms against a 2 ms cadence: 4 held-up requests at 8, 6, 4 and 2 ms.
        recorder.record(Request::Result, Duration::from_millis(10), 2, None);
        recorder.record(Request::Alias, Duration::from_micros(700), 0, Some(Failure::Status));
        let log = recorder.finish(&context());
        let key = |latency| SeriesKey { request: "GET /v1/results/{id}".into(), outcome: Outcome::Ok, latency };
        let raw = &log.series[&key(Correction::Raw)];
        assert_eq!(raw.len(), 2);
        assert_eq!(raw.min(), 1_234);
        assert!(raw.equivalent(raw.max(), 10_000));
        let corrected = &log.series[&key(Correction::Corrected)];
        assert_eq!(corrected.len(), 6);
        for value in [2_000, 4_000, 6_000, 8_000] {
            assert_eq!(corrected.count_at(value), 1, "{value} µs backfilled");
        }
        assert_eq!((log.meta.requests, log.meta.failures), (3, 1));
        assert_eq!(
            log.meta.failures_by_kind,
            [KindCount { request: "GET /student/{id}".into(), kind: "status".into(), detail: None, count: 1 }]
        );
        assert_eq!(log.meta.runs.len(), 1);
        assert!(!log.meta.runs[0].ramp_up_excluded);
    }

    #[test]
    fn the_last_arrival_starts_the_window_over() {
        let recorder = Recorder::new(Some(2));
        recorder.record(Request::Result, Duration::from_millis(1), 0, None);
        recorder.arrived();
        recorder.record(Request::Result, Duration::from_millis(2), 0, None);
        recorder.arrived();
        recorder.record(Request::Result, Duration::from_millis(3), 0, Some(Failure::Body(Mismatch::WrongStudent)));
        let log = recorder.finish(&context());
        assert_eq!((log.meta.requests, log.meta.failures), (1, 1), "{:?}", log.meta);
        assert!(log.meta.runs[0].ramp_up_excluded);
    }

    #[test]
    fn the_window_ends_at_the_last_completed_request() {
        let recorder = Recorder::new(None);
        recorder.record(Request::Result, Duration::from_millis(1), 0, None);
        std::thread::sleep(Duration::from_millis(300));
        let log = recorder.finish(&context());
        let run = &log.meta.runs[0];
        let now = unix_us(SystemTime::now());
        assert!(now - run.end_unix_us >= 250_000, "the end is the request's, not the finish's: {run:?}");
        assert!(run.end_unix_us >= run.start_unix_us, "never before the start: {run:?}");
        // A request completed before the window (before a reset) does not end it before its start.
        let recorder = Recorder::new(None);
        let long_ago = Instant::now().checked_sub(Duration::from_secs(5)).expect("an instant 5 s ago");
        recorder.record_at(long_ago, Request::Result, Duration::from_millis(1), 0, None);
        let run = &recorder.finish(&context()).meta.runs[0];
        assert_eq!(run.end_unix_us, run.start_unix_us, "{run:?}");
    }

    #[test]
    fn a_log_reads_back_as_written() {
        let recorder = Recorder::new(None);
        for us in [1u64, 17, 999, 1_000, 123_456, 7_000_000_000] {
            recorder.record(Request::Unknown, Duration::from_micros(us), 0, None);
        }
        recorder.record(Request::Result, Duration::from_millis(2), 0, Some(Failure::Body(Mismatch::WrongStudent)));
        let mut log = recorder.finish(&context());
        assert_eq!(
            log.meta.failures_by_kind,
            [KindCount {
                request: "GET /v1/results/{id}".into(),
                kind: "body".into(),
                detail: Some("wrong student in body".into()),
                count: 1
            }]
        );
        let dir = tempfile::tempdir().expect("tempdir");
        log.write(dir.path()).expect("written");
        let back = LatencyLog::read(dir.path()).expect("read");
        assert_eq!(back.meta, log.meta);
        assert_eq!(back.series, log.series);
        let raw = &back.series[&SeriesKey {
            request: "GET /v1/results/{id} unknown".into(),
            outcome: Outcome::Ok,
            latency: Correction::Raw,
        }];
        assert!(raw.equivalent(raw.max(), 7_000_000_000), "beyond the initial 60 s: {}", raw.max());
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).expect("log");
        assert!(text.contains("Tag=GET_/v1/results/{id}_unknown.ok.raw,"), "{text}");
    }
}
