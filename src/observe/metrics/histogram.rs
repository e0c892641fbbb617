//! Latency histograms: hdrhistogram in microseconds with an exact sum, and the per-core set
//! of them (`Histograms`), plus the bucket bounds the Prometheus histograms read.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Bucket bounds (seconds) of the Prometheus histograms, read from the hdrhistograms.
pub const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Microseconds, 1 µs to one hour at 2 significant digits (1% resolution, plenty for buckets
/// and percentiles): about 26 KiB per histogram, 8 histograms per core. (3 digits cost about
/// 370 KiB each: measured as +0.32 KiB per idle connection in bench/compare.sh's idle test,
/// which allocates them during its measurement.)
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant histogram bounds are valid")
}

#[cfg(test)]
#[test]
fn a_histogram_stays_small() {
    // Counts array of u64: the memory a histogram holds.
    let bytes = histogram().distinct_values() * 8;
    assert!(bytes <= 32 * 1024, "{bytes} bytes");
}

/// A latency histogram with its exact sum (Prometheus `_sum`).
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
    pub(super) sum_us: u64,
}

impl Latency {
    pub(super) fn new() -> Latency {
        Latency {
            hist: histogram(),
            sum_us: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub(super) fn add(&mut self, other: &Latency) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Values at or below `le_s` seconds.
    pub(super) fn count_le(&self, le_s: f64) -> u64 {
        let le_us = (le_s * 1e6) as u64;
        self.hist.count_between(0, le_us)
    }

    /// The value at `q` (0..1), in seconds; 0 when empty.
    pub fn quantile_s(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1e6
    }
}

#[derive(Clone)]
pub(super) struct Histograms {
    pub(super) request: Vec<Latency>,
    pub(super) backend_connect: Latency,
    pub(super) tunnel: Latency,
}
