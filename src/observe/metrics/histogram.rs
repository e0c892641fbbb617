//! Latency histograms: hdrhistogram in microseconds with an exact sum, and the per-core set
//! of them (`Histograms`), plus the bucket bounds the Prometheus histograms read; the sliding
//! window of request latency the dashboard shows (`Window`: a ring of 10-second histograms,
//! merged on demand), and the clock it is indexed by (`clock_s`).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Bucket bounds (seconds) of the Prometheus histograms, read from the hdrhistograms.
pub const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Microseconds, 1 µs to one hour at 2 significant digits (1% resolution, plenty for buckets
/// and percentiles): about 26 KiB per histogram, 8 histograms per core and the 6 of the
/// dashboard's window (`Window`), each made when the core first records. (3 digits cost about
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

    /// Empties it, keeping its memory.
    pub(super) fn reset(&mut self) {
        self.hist.reset();
        self.sum_us = 0;
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

/// Seconds per slot of a `Window`.
pub const WINDOW_SLOT_S: u64 = 10;
/// Slots of a `Window`: the last 60 s (the newest slot still filling).
pub const WINDOW_SLOTS: usize = 6;

/// Seconds since this process first asked: the clock every core's `Window` is indexed by
/// (one epoch for all cores, so their slots merge).
pub fn clock_s() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
}

/// Request latency over the last minute: a ring of `WINDOW_SLOTS` histograms of
/// `WINDOW_SLOT_S` seconds each; a slot is reused (emptied) when its time comes round again.
/// All slots are made at once (the first record), so recording never allocates after that.
/// The time is passed in (`clock_s` in the runtime), so this is tested without a clock.
#[derive(Clone)]
pub struct Window {
    /// (slot number = seconds / `WINDOW_SLOT_S`, its histogram); `u64::MAX`: never used.
    slots: [(u64, Latency); WINDOW_SLOTS],
}

impl Default for Window {
    fn default() -> Window {
        Window {
            slots: std::array::from_fn(|_| (u64::MAX, Latency::new())),
        }
    }
}

impl Window {
    pub fn record(&mut self, now_s: u64, d: Duration) {
        let tick = now_s / WINDOW_SLOT_S;
        let (t, l) = &mut self.slots[(tick % WINDOW_SLOTS as u64) as usize];
        if *t != tick {
            l.reset();
            *t = tick;
        }
        l.record(d);
    }

    /// Adds the slots of the last minute (as of `now_s`) to `into`.
    pub fn add_to(&self, now_s: u64, into: &mut Latency) {
        let tick = now_s / WINDOW_SLOT_S;
        for (t, l) in &self.slots {
            if *t <= tick && tick - *t < WINDOW_SLOTS as u64 {
                into.add(l);
            }
        }
    }
}

#[cfg(test)]
#[test]
fn the_window_forgets_what_is_older_than_a_minute() {
    let mut w = Window::default();
    for _ in 0..10 {
        w.record(5, Duration::from_secs(2));
    }
    w.record(30, Duration::from_millis(1));
    fn at_of(w: &Window, now: u64) -> Latency {
        let mut l = Latency::new();
        w.add_to(now, &mut l);
        l
    }
    let at = |now| at_of(&w, now);
    assert_eq!(at(30).count(), 11);
    assert!(at(30).quantile_s(0.5) > 1.0);
    // At 60 s the slot of 0..10 s is out of the window: only the 1 ms request is left.
    let later = at(60);
    assert_eq!(later.count(), 1);
    assert!(later.quantile_s(0.99) < 0.01);
    // The slot comes round again and is emptied before it is reused.
    w.record(65, Duration::from_millis(3));
    assert_eq!(at_of(&w, 65).count(), 2);
    assert_eq!(at_of(&w, 200).count(), 0);
}
