//! When to fetch the next response and whether a staple may still be served.

use super::verify::{Staple, CLOCK_SKEW};
use std::time::{Duration, SystemTime};

/// Refresh and retry timing for one certificate's staple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// First retry delay after a failed fetch.
    pub retry_min: Duration,
    /// Upper bound of the retry delay.
    pub retry_max: Duration,
    failures: u32,
}

/// Fraction of the validity window used as the jitter amplitude.
const JITTER_FRACTION: f64 = 0.1;

/// Hard cap on any retry delay, whatever `retry_max` says (guards against overflow).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

impl Schedule {
    /// A schedule with no failures recorded.
    pub fn new(retry_min: Duration, retry_max: Duration) -> Self {
        Schedule {
            retry_min,
            retry_max,
            failures: 0,
        }
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When to refresh a freshly verified `staple`: thisUpdate + window/2 +
    /// `jitter`·10%·window, where window = [`Staple::expires_at`] − thisUpdate and
    /// `jitter` is a random number in `[-1, 1]` from the caller (clamped; NaN is 0).
    /// Never after the staple expires, never before `now`.
    pub fn next_refresh(&self, staple: &Staple, now: SystemTime, jitter: f64) -> SystemTime {
        let expires = staple.expires_at();
        let window = expires
            .duration_since(staple.this_update)
            .unwrap_or_default()
            .as_secs_f64();
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(-1.0, 1.0)
        };
        let offset = window * (0.5 + JITTER_FRACTION * jitter);
        let target = Duration::try_from_secs_f64(offset)
            .ok()
            .and_then(|d| staple.this_update.checked_add(d))
            .unwrap_or(expires);
        target.min(expires).max(now)
    }

    /// Records a failed fetch; returns when to try again:
    /// `now + min(retry_min · 2^failures, retry_max)` (failures before this one),
    /// never more than [`MAX_RETRY_DELAY`].
    pub fn on_failure(&mut self, now: SystemTime) -> SystemTime {
        let delay = 2u32
            .checked_pow(self.failures)
            .and_then(|factor| self.retry_min.checked_mul(factor))
            .map_or(self.retry_max, |d| d.min(self.retry_max))
            .min(MAX_RETRY_DELAY);
        self.failures = self.failures.saturating_add(1);
        now + delay
    }

    /// Records a successful fetch: the back-off starts over.
    pub fn on_success(&mut self) {
        self.failures = 0;
    }
}

/// Whether `staple` may be served at `now`: before its expiry
/// ([`Staple::expires_at`]) and not produced more than [`CLOCK_SKEW`] in the future.
pub fn is_servable(staple: &Staple, now: SystemTime) -> bool {
    now < staple.expires_at() && staple.this_update <= now + CLOCK_SKEW
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const T0: u64 = 1_700_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn staple(this: SystemTime, next: Option<SystemTime>) -> Staple {
        Staple {
            der: vec![],
            this_update: this,
            next_update: next,
        }
    }

    fn sched() -> Schedule {
        Schedule::new(Duration::from_secs(10), Duration::from_secs(300))
    }

    #[test]
    fn refresh_at_half_window_without_jitter() {
        let s = staple(at(T0), Some(at(T0) + 10 * HOUR));
        assert_eq!(sched().next_refresh(&s, at(T0), 0.0), at(T0) + 5 * HOUR);
        assert_eq!(
            sched().next_refresh(&s, at(T0), f64::NAN),
            at(T0) + 5 * HOUR
        );
    }

    #[test]
    fn jitter_moves_by_up_to_ten_percent_of_window() {
        let s = staple(at(T0), Some(at(T0) + 10 * HOUR));
        assert_eq!(sched().next_refresh(&s, at(T0), 1.0), at(T0) + 6 * HOUR);
        assert_eq!(sched().next_refresh(&s, at(T0), -1.0), at(T0) + 4 * HOUR);
        assert_eq!(sched().next_refresh(&s, at(T0), 7.0), at(T0) + 6 * HOUR);
        assert_eq!(sched().next_refresh(&s, at(T0), -7.0), at(T0) + 4 * HOUR);
        for i in -10..=10 {
            let t = sched().next_refresh(&s, at(T0), f64::from(i) / 10.0);
            assert!(t >= at(T0) + 4 * HOUR && t <= at(T0) + 6 * HOUR, "{i}");
        }
    }

    #[test]
    fn refresh_is_never_before_now_nor_after_expiry() {
        let s = staple(at(T0), Some(at(T0) + 10 * HOUR));
        let late = at(T0) + 8 * HOUR;
        assert_eq!(sched().next_refresh(&s, late, 0.0), late);
        // Past expiry: refresh at once (the staple itself is no longer servable).
        let after = at(T0) + 11 * HOUR;
        assert_eq!(sched().next_refresh(&s, after, 0.0), after);
        // A zero-length window clamps to nextUpdate.
        let z = staple(at(T0), Some(at(T0)));
        assert_eq!(sched().next_refresh(&z, at(T0) - HOUR, 1.0), at(T0));
    }

    #[test]
    fn no_next_update_uses_default_validity() {
        let s = staple(at(T0), None);
        assert_eq!(s.expires_at(), at(T0) + HOUR);
        assert_eq!(
            sched().next_refresh(&s, at(T0), 0.0),
            at(T0) + Duration::from_secs(1800)
        );
        assert!(is_servable(&s, at(T0) + Duration::from_secs(3599)));
        assert!(!is_servable(&s, at(T0) + HOUR));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut s = sched();
        let now = at(T0);
        let delays: Vec<u64> = (0..8)
            .map(|_| s.on_failure(now).duration_since(now).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(s.failures(), 8);
        s.on_success();
        assert_eq!(s.failures(), 0);
        assert_eq!(s.on_failure(now), now + Duration::from_secs(10));
    }

    #[test]
    fn backoff_survives_huge_failure_counts() {
        let mut s = sched();
        for _ in 0..100 {
            s.on_failure(at(T0));
        }
        assert_eq!(s.on_failure(at(T0)), at(T0) + Duration::from_secs(300));
        let mut big = Schedule::new(Duration::MAX / 2, Duration::MAX);
        big.on_failure(at(T0));
        assert_eq!(big.on_failure(at(T0)), at(T0) + MAX_RETRY_DELAY);
    }

    #[test]
    fn servable_window() {
        let s = staple(at(T0), Some(at(T0) + HOUR));
        assert!(is_servable(&s, at(T0)));
        assert!(is_servable(&s, at(T0) + HOUR - Duration::from_secs(1)));
        assert!(!is_servable(&s, at(T0) + HOUR));
        assert!(is_servable(&s, at(T0) - Duration::from_secs(300)));
        assert!(!is_servable(&s, at(T0) - Duration::from_secs(301)));
    }
}
