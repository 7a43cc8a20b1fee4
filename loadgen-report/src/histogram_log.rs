//! A run's latency histograms as files: every measured request's latency once, exactly
//! (HdrHistogram, microseconds, 3 significant digits, auto-resizing), per request name, outcome
//! and correction, in the run folder as `latency.hlog` (HdrHistogram interval log: one tagged
//! interval per series, V2 deflate, base64) beside `latency.json` (the run's metadata). The load
//! generator writes them (its recorder); a run's summary ([`crate::summary`]) and `loadgen merge`
//! ([`crate::merge`]) read their figures from them, so both judge the same numbers.
//!
//! Coordinated omission: every series exists twice. `raw` holds each measured latency once;
//! `corrected` holds the same plus HdrHistogram's at-recording correction (`record_correct`): a
//! request slower than twice the user's expected cadence adds the requests it held up, at
//! latency − k × cadence. The expected cadence is goose's own per-user figure under
//! `--co-mitigation` (the average, minimum or maximum of the user's loop time, think time
//! excluded); it is 0, so nothing is added, when mitigation is disabled and for a user's first
//! loops. goose's own backfill (its `report.html`) uses the same cadence but anchors its synthetic
//! times on the request after the stall, so goose's corrected tails differ slightly from these.
//!
//! The measured window follows goose: when goose resets its metrics after the ramp-up (a plain
//! `--users` run without `--no-reset-metrics`), the window starts when the last user arrives, and
//! it ends when the last request completed.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// The histograms file in a run folder.
pub const LOG_FILE: &str = "latency.hlog";
/// The metadata file in a run folder.
pub const META_FILE: &str = "latency.json";
/// The metadata format this version writes and reads.
pub const FORMAT: &str = "loadgen-latency/1";
/// Unit of every recorded value.
pub const UNIT: &str = "microseconds";
/// Significant decimal digits kept: values within 0.1% of each other may share a bucket.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Smallest value told apart from 0, µs.
pub const LOWEST_DISCERNIBLE_US: u64 = 1;
/// Highest value a fresh histogram holds without growing, µs (60 s; it grows beyond).
pub const HIGHEST_INITIAL_US: u64 = 60_000_000;

/// A fresh histogram with this module's settings (auto-resizing).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that HdrHistogram accepts (1 <= low, 2 × low <= high, 3 digits).
    let mut histogram = Histogram::new_with_bounds(LOWEST_DISCERNIBLE_US, HIGHEST_INITIAL_US, SIGNIFICANT_DIGITS)
        .unwrap_or_else(|_| Histogram::new(SIGNIFICANT_DIGITS).unwrap_or_else(|_| unreachable!("3 digits")));
    histogram.auto(true);
    histogram
}

/// Whether a request succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The expected status and body.
    Ok,
    /// A transport error, an unexpected status or a wrong body.
    Error,
}

/// Which latencies a series holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Measured latencies, one per request.
    Raw,
    /// Measured latencies plus the coordinated-omission correction (see the module docs).
    Corrected,
}

/// One histogram's identity: request name, outcome, correction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// `METHOD name`, as the run summary names requests (`GET /v1/results/{id}`).
    pub request: String,
    /// Success or failure.
    pub outcome: Outcome,
    /// Raw or corrected.
    pub latency: Correction,
}

impl SeriesKey {
    /// The interval log tag: the request name with `_` for spaces, then outcome and correction
    /// (`GET_/v1/results/{id}.ok.raw`); tags may not hold spaces or commas.
    pub fn tag(&self) -> String {
        let request: String =
            self.request.chars().map(|c| if matches!(c, ' ' | ',' | '\r' | '\n') { '_' } else { c }).collect();
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        };
        let latency = match self.latency {
            Correction::Raw => "raw",
            Correction::Corrected => "corrected",
        };
        format!("{request}.{outcome}.{latency}")
    }
}

/// How the histograms were recorded; merged inputs must agree on all but `highest_initial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSettings {
    /// [`UNIT`].
    pub unit: String,
    /// [`LOWEST_DISCERNIBLE_US`].
    pub lowest_discernible: u64,
    /// [`HIGHEST_INITIAL_US`] (histograms grow beyond it).
    pub highest_initial: u64,
    /// [`SIGNIFICANT_DIGITS`].
    pub significant_digits: u8,
    /// Histograms grow to hold any value.
    pub auto_resize: bool,
    /// The histograms file, [`LOG_FILE`].
    pub file: String,
    /// How that file is written.
    pub encoding: String,
}

impl Default for HistogramSettings {
    fn default() -> Self {
        Self {
            unit: UNIT.to_owned(),
            lowest_discernible: LOWEST_DISCERNIBLE_US,
            highest_initial: HIGHEST_INITIAL_US,
            significant_digits: SIGNIFICANT_DIGITS,
            auto_resize: true,
            file: LOG_FILE.to_owned(),
            encoding: "HdrHistogram interval log, one interval per series, tag = series, V2 deflate + base64"
                .to_owned(),
        }
    }
}

/// The data set a run asked for (runs against different data sets do not merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSet {
    /// `--students`.
    pub students: u32,
    /// `--seed`.
    pub seed: u64,
}

/// One generator run inside a log: who, against what, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Random identifier of the run (a merge refuses the same run twice).
    pub run_id: String,
    /// The generator's label (`--generator-label`, the machine's host name by default).
    pub generator: String,
    /// goose's `--host`.
    pub target: String,
    /// Users the run was configured with.
    pub users: usize,
    /// Start of the measured window (RFC 3339, UTC).
    pub start: String,
    /// End of the measured window (RFC 3339, UTC).
    pub end: String,
    /// Start of the measured window, µs since the Unix epoch.
    pub start_unix_us: u64,
    /// End of the measured window, µs since the Unix epoch.
    pub end_unix_us: u64,
    /// The window starts after the ramp-up (goose reset its metrics there).
    pub ramp_up_excluded: bool,
    /// Requests measured in the window.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
}

/// One series as `latency.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesMeta {
    /// Its tag in `latency.hlog`.
    pub tag: String,
    /// Its identity.
    #[serde(flatten)]
    pub key: SeriesKey,
    /// Values recorded (a check against the file).
    pub count: u64,
}

/// Failures of one kind of one request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KindCount {
    /// `METHOD name`.
    pub request: String,
    /// `transport`, `status` or `body`.
    pub kind: String,
    /// What was wrong with a `body` (`wrong student in body`, …); absent otherwise, and in logs
    /// written before loadgen recorded it (they read as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Occurrences.
    pub count: u64,
}

/// `latency.json`: what the histograms are and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT`].
    pub format: String,
    /// The generator runs inside (one for a run, several for a merge).
    pub runs: Vec<RunInfo>,
    /// The data set.
    pub data_set: DataSet,
    /// goose's `--co-mitigation` mode: `average`, `minimum`, `maximum` or `disabled`.
    pub co_mitigation: String,
    /// How the histograms were recorded.
    pub histograms: HistogramSettings,
    /// Requests measured (raw values of every series).
    pub requests: u64,
    /// Of which failed (raw values of the error series).
    pub failures: u64,
    /// Failures by request and kind.
    pub failures_by_kind: Vec<KindCount>,
    /// The series in `latency.hlog`.
    pub series: Vec<SeriesMeta>,
}

/// A run folder's histograms and metadata.
#[derive(Debug, Clone)]
pub struct LatencyLog {
    /// The metadata (`series`, `requests` and `failures` are rewritten from the histograms on write).
    pub meta: Meta,
    /// The histograms.
    pub series: BTreeMap<SeriesKey, Histogram<u64>>,
}

/// A latency file that cannot be read or written; the message names the file and the fault.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct LogError {
    /// The file (or folder) at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
}

fn log_error(path: &Path, detail: impl Into<String>) -> LogError {
    LogError { path: path.to_owned(), detail: detail.into() }
}

/// `time` as µs since the Unix epoch.
pub fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// µs since the Unix epoch as RFC 3339 (UTC, microseconds).
pub fn rfc3339(unix_us: u64) -> String {
    let micros = i64::try_from(unix_us).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// A random run identifier.
pub fn new_run_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_us(SystemTime::now()));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Adds `source` into `into`; the histograms of this module always add (auto-resizing).
pub fn add(into: &mut Histogram<u64>, source: &Histogram<u64>) {
    if into.add(source).is_err() {
        // Only a histogram that cannot resize refuses; copy value by value, clamped.
        for value in source.iter_recorded() {
            into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }
}

impl LatencyLog {
    /// An empty log for `meta` (its series and totals are filled from the histograms).
    pub fn new(meta: Meta) -> Self {
        Self { meta, series: BTreeMap::new() }
    }

    /// The histogram of `key`, created empty when new.
    pub fn series_mut(&mut self, key: SeriesKey) -> &mut Histogram<u64> {
        self.series.entry(key).or_insert_with(new_histogram)
    }

    /// Rewrites the metadata's series list and totals from the histograms.
    pub fn refresh_meta(&mut self) {
        self.meta.series = self
            .series
            .iter()
            .map(|(key, histogram)| SeriesMeta { tag: key.tag(), key: key.clone(), count: histogram.len() })
            .collect();
        let raw = |outcome: Option<Outcome>| -> u64 {
            self.series
                .iter()
                .filter(|(k, _)| k.latency == Correction::Raw && outcome.is_none_or(|o| k.outcome == o))
                .map(|(_, h)| h.len())
                .sum()
        };
        self.meta.requests = raw(None);
        self.meta.failures = raw(Some(Outcome::Error));
    }

    /// Writes `latency.hlog` and `latency.json` into `dir` (created when missing).
    ///
    /// # Errors
    /// When the folder or a file cannot be written.
    pub fn write(&mut self, dir: &Path) -> Result<(), LogError> {
        self.refresh_meta();
        std::fs::create_dir_all(dir).map_err(|e| log_error(dir, e.to_string()))?;
        let base_us = self.meta.runs.iter().map(|r| r.start_unix_us).min().unwrap_or(0);
        let end_us = self.meta.runs.iter().map(|r| r.end_unix_us).max().unwrap_or(base_us);
        let base = UNIX_EPOCH + Duration::from_micros(base_us);
        let span = Duration::from_micros(end_us.saturating_sub(base_us));
        let log_path = dir.join(LOG_FILE);
        let mut text = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        {
            let mut writer = IntervalLogWriterBuilder::new()
                .add_comment("loadgen latency histograms: values in microseconds, one interval per series")
                .add_comment("tag = <METHOD_name>.<ok|error>.<raw|corrected>; metadata in latency.json")
                .with_start_time(base)
                .with_base_time(base)
                .with_max_value_divisor(1000.0)
                .begin_log_with(&mut text, &mut serializer)
                .map_err(|e| log_error(&log_path, e.to_string()))?;
            for (key, histogram) in &self.series {
                let tag = key.tag();
                let tag = Tag::new(&tag).ok_or_else(|| log_error(&log_path, format!("tag {tag:?} is not valid")))?;
                writer
                    .write_histogram(histogram, Duration::ZERO, span, Some(tag))
                    .map_err(|e| log_error(&log_path, format!("{e:?}")))?;
            }
        }
        std::fs::write(&log_path, text).map_err(|e| log_error(&log_path, e.to_string()))?;
        let meta_path = dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(&self.meta).map_err(|e| log_error(&meta_path, e.to_string()))?;
        std::fs::write(&meta_path, json).map_err(|e| log_error(&meta_path, e.to_string()))
    }

    /// Reads the log of run folder `dir`, checking every histogram against the metadata.
    ///
    /// # Errors
    /// A missing folder or file, a format this version does not read, a corrupt histogram, or a
    /// histogram that disagrees with `latency.json` (count, settings, tag).
    pub fn read(dir: &Path) -> Result<Self, LogError> {
        if !dir.is_dir() {
            return Err(log_error(dir, "not a folder"));
        }
        let meta_path = dir.join(META_FILE);
        let bytes = std::fs::read(&meta_path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "missing: not a loadgen run folder, or a run from before loadgen wrote latency histograms".to_owned()
            } else {
                e.to_string()
            };
            log_error(&meta_path, hint)
        })?;
        let format = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| log_error(&meta_path, format!("not JSON: {e}")))?
            .get("format")
            .and_then(|f| f.as_str().map(str::to_owned));
        if format.as_deref() != Some(FORMAT) {
            return Err(log_error(&meta_path, format!("format {format:?}, this loadgen reads {FORMAT:?}")));
        }
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| log_error(&meta_path, format!("corrupt: {e}")))?;
        let log_path = dir.join(LOG_FILE);
        let text = std::fs::read(&log_path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!("missing (latency.json lists {} series)", meta.series.len())
            } else {
                e.to_string()
            };
            log_error(&log_path, hint)
        })?;
        let mut wanted: BTreeMap<&str, &SeriesMeta> = BTreeMap::new();
        for series in &meta.series {
            if wanted.insert(series.tag.as_str(), series).is_some() {
                return Err(log_error(&meta_path, format!("series {} listed twice", series.tag)));
            }
        }
        let mut series = BTreeMap::new();
        let mut deserializer = Deserializer::new();
        for entry in IntervalLogIterator::new(&text) {
            let interval = match entry {
                Ok(LogEntry::Interval(interval)) => interval,
                Ok(LogEntry::StartTime(_) | LogEntry::BaseTime(_)) => continue,
                Err(e) => return Err(log_error(&log_path, format!("corrupt: not an interval log ({e:?})"))),
            };
            let tag = interval.tag().map(|t| t.as_str().to_owned()).unwrap_or_default();
            let listed = wanted.remove(tag.as_str()).ok_or_else(|| {
                log_error(&log_path, format!("series {tag:?} is not listed in {META_FILE}, or appears twice"))
            })?;
            let encoded = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .map_err(|e| log_error(&log_path, format!("corrupt histogram {tag}: {e}")))?;
            let mut histogram: Histogram<u64> = deserializer
                .deserialize(&mut encoded.as_slice())
                .map_err(|e| log_error(&log_path, format!("corrupt histogram {tag}: {e:?}")))?;
            histogram.auto(true);
            if histogram.sigfig() != meta.histograms.significant_digits
                || histogram.low() != meta.histograms.lowest_discernible
            {
                return Err(log_error(
                    &log_path,
                    format!(
                        "histogram {tag} has {} significant digits and lowest value {}; {META_FILE} says {} and {}",
                        histogram.sigfig(),
                        histogram.low(),
                        meta.histograms.significant_digits,
                        meta.histograms.lowest_discernible
                    ),
                ));
            }
            if histogram.len() != listed.count {
                return Err(log_error(
                    &log_path,
                    format!(
                        "corrupt: histogram {tag} holds {} values, {META_FILE} says {}",
                        histogram.len(),
                        listed.count
                    ),
                ));
            }
            series.insert(listed.key.clone(), histogram);
        }
        if let Some(missing) = wanted.keys().next() {
            return Err(log_error(&log_path, format!("corrupt: series {missing} listed in {META_FILE} is missing")));
        }
        Ok(Self { meta, series })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_details_are_optional_so_older_logs_read_as_before() {
        let old: KindCount =
            serde_json::from_str(r#"{"request":"GET /x","kind":"status","count":2}"#).expect("an older entry reads");
        assert_eq!(old.detail, None);
        let new = KindCount { detail: Some("wrong student in body".into()), ..old.clone() };
        let text = serde_json::to_string(&new).expect("JSON");
        assert!(text.contains(r#""detail":"wrong student in body""#), "{text}");
        assert!(!serde_json::to_string(&old).expect("JSON").contains("detail"), "no detail, no field");
    }

    #[test]
    fn tags_have_no_spaces_or_commas() {
        let key = SeriesKey { request: "GET a, b".into(), outcome: Outcome::Error, latency: Correction::Corrected };
        assert_eq!(key.tag(), "GET_a__b.error.corrected");
        assert!(Tag::new(&key.tag()).is_some());
    }
}
