//! The latency histogram buckets every binary records with, so that the API's server-side
//! histogram and the load generator's client-side one can be compared (and aggregated with
//! `histogram_quantile`) bucket for bucket.

/// Histogram bucket upper bounds, seconds: 0.25 ms to 5 s, with the SLO limits (10, 25 and
/// 50 ms) as bucket edges so the quantiles near them are exact.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
