//! The one percentile engine: every latency figure a report shows or a gate judges (a run's
//! summary, `loadgen merge`, the capacity curve) is read here from HdrHistogram series of a
//! [`LatencyLog`], so a run and the merge of that run agree to the microsecond.
//!
//! HdrHistogram reports a quantile as the highest value of the bucket holding the sample of rank
//! ⌈q × n⌉, within 0.1% of that sample (3 significant digits).

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::histogram_log::{Correction, LatencyLog, Outcome, add, new_histogram};

/// Latency figures of a set of requests, milliseconds: the summary's and the gates' subset of
/// [`Percentiles`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Exact figures of one histogram, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values.
    pub count: u64,
    /// Smallest.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p99_9_ms: f64,
    /// 99.99th percentile.
    pub p99_99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Percentiles {
    /// The figures of `histogram` (zeros when empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self {
                count: 0,
                min_ms: 0.0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                p99_9_ms: 0.0,
                p99_99_ms: 0.0,
                max_ms: 0.0,
            };
        }
        let q = |quantile: f64| ms(histogram.value_at_quantile(quantile));
        Self {
            count: histogram.len(),
            min_ms: ms(histogram.min()),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p99_9_ms: q(0.999),
            p99_99_ms: q(0.9999),
            max_ms: ms(histogram.max()),
        }
    }

    /// The summary's subset.
    pub fn latency(&self) -> Latency {
        Latency { p50_ms: self.p50_ms, p95_ms: self.p95_ms, p99_ms: self.p99_ms, max_ms: self.max_ms }
    }
}

/// Raw and corrected figures of a set of series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// Every measured latency once.
    pub raw: Percentiles,
    /// With the coordinated-omission correction.
    pub corrected: Percentiles,
}

/// The sum of the series of `log` that `keep` selects (request name, outcome, correction).
pub fn total(log: &LatencyLog, keep: impl Fn(&str, Outcome, Correction) -> bool) -> Histogram<u64> {
    let mut sum = new_histogram();
    for (key, histogram) in &log.series {
        if keep(&key.request, key.outcome, key.latency) {
            add(&mut sum, histogram);
        }
    }
    sum
}

/// Raw and corrected figures of every request of `log` (`None`), or of one request name, both
/// outcomes.
pub fn figures(log: &LatencyLog, request: Option<&str>) -> Figures {
    let of = |latency: Correction| {
        Percentiles::of(&total(log, |r, _, c| c == latency && request.is_none_or(|name| name == r)))
    };
    Figures { raw: of(Correction::Raw), corrected: of(Correction::Corrected) }
}

/// Requests of one name (`None`: all) and outcome (`None`: both) in `log`: their raw count.
pub fn count(log: &LatencyLog, request: Option<&str>, outcome: Option<Outcome>) -> u64 {
    log.series
        .iter()
        .filter(|(k, _)| {
            k.latency == Correction::Raw
                && request.is_none_or(|name| name == k.request)
                && outcome.is_none_or(|o| o == k.outcome)
        })
        .map(|(_, h)| h.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram_log::{DataSet, FORMAT, HistogramSettings, Meta, SeriesKey};

    #[test]
    fn quantiles_are_the_samples_of_their_rank_within_a_tenth_of_a_percent() {
        let mut log = LatencyLog::new(Meta {
            format: FORMAT.into(),
            runs: vec![],
            data_set: DataSet { students: 1, seed: 1 },
            co_mitigation: "average".into(),
            histograms: HistogramSettings::default(),
            requests: 0,
            failures: 0,
            failures_by_kind: vec![],
            series: vec![],
        });
        // 1..=1000 ms, one each, in two request names; 10 s backfill in the corrected series only.
        for ms in 1..=1000u64 {
            let request = if ms % 2 == 0 { "GET /a" } else { "GET /b" };
            for latency in [Correction::Raw, Correction::Corrected] {
                let key = SeriesKey { request: request.into(), outcome: Outcome::Ok, latency };
                log.series_mut(key).record(ms * 1000).expect("in range");
            }
        }
        let key = SeriesKey { request: "GET /a".into(), outcome: Outcome::Error, latency: Correction::Corrected };
        log.series_mut(key).record_n(10_000_000, 100).expect("in range");
        let all = figures(&log, None);
        assert_eq!(all.raw.count, 1000);
        assert_eq!(all.corrected.count, 1100);
        assert!((all.raw.p50_ms - 500.0).abs() <= 0.5, "{:?}", all.raw);
        assert!((all.raw.p95_ms - 950.0).abs() <= 0.95, "{:?}", all.raw);
        assert!((all.raw.p99_ms - 990.0).abs() <= 0.99, "{:?}", all.raw);
        assert_eq!(all.raw.min_ms, 1.0);
        // Rank ⌈0.95 × 1100⌉ = 1045 falls in the backfill.
        assert!(all.corrected.p95_ms >= 10_000.0, "{:?}", all.corrected);
        let a = figures(&log, Some("GET /a"));
        assert_eq!((a.raw.count, a.corrected.count), (500, 600));
        assert_eq!(a.raw.latency().max_ms, a.raw.max_ms);
        assert_eq!(count(&log, None, None), 1000);
        assert_eq!(count(&log, Some("GET /b"), Some(Outcome::Ok)), 500);
        assert_eq!(count(&log, None, Some(Outcome::Error)), 0, "raw counts only: backfill is not a request");
    }
}
