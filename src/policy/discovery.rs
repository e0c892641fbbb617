//! DNS discovery's decisions, sans-IO: how long a resolved set is trusted (`refresh_after`, a
//! TTL clamped to `[dns] min_ttl..=max_ttl`), which SRV records are in use (`srv_in_use`: the
//! lowest priority value while any of its servers is up), and when each of a drained server's
//! tunnels is closed (`spread`: evenly over the spread, in random order). Time and randomness
//! are passed in.

use std::time::Duration;

/// The TTL a resolution's answer had, clamped to `min..=max`.
pub fn refresh_after(ttl: Duration, min: Duration, max: Duration) -> Duration {
    ttl.clamp(min, max.max(min))
}

/// One SRV record's priority (lower is preferred) and whether any server it names is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvGroup {
    pub priority: u16,
    pub up: bool,
}

/// The priority value in use: the lowest one with a server up; with none up, the lowest of
/// all (so that a set whose health is not known yet is still used). `None` for no records.
pub fn srv_in_use(records: &[SrvGroup]) -> Option<u16> {
    let up = records.iter().filter(|r| r.up).map(|r| r.priority).min();
    up.or_else(|| records.iter().map(|r| r.priority).min())
}

/// When each of `n` tunnels is closed, as offsets from the drain's start: evenly over `spread`
/// (the k-th close at `spread * k / n`), the tunnels in a random order drawn from `seed`.
/// Returns `(tunnel index, offset)` in time order.
pub fn spread(n: usize, spread: Duration, seed: u64) -> Vec<(usize, Duration)> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = seed | 1;
    // Fisher–Yates with xorshift64*.
    for i in (1..n).rev() {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        let r = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        order.swap(i, (r % (i as u64 + 1)) as usize);
    }
    order
        .into_iter()
        .enumerate()
        .map(|(k, tunnel)| (tunnel, spread.mul_f64(k as f64 / n as f64)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped() {
        let s = Duration::from_secs;
        assert_eq!(refresh_after(s(0), s(1), s(300)), s(1));
        assert_eq!(refresh_after(s(60), s(1), s(300)), s(60));
        assert_eq!(refresh_after(s(86400), s(1), s(300)), s(300));
        // A max below the min: the min wins.
        assert_eq!(refresh_after(s(7), s(5), s(2)), s(5));
    }

    #[test]
    fn srv_uses_the_lowest_priority_with_a_server_up() {
        let g = |priority, up| SrvGroup { priority, up };
        assert_eq!(srv_in_use(&[]), None);
        assert_eq!(
            srv_in_use(&[g(20, true), g(10, true), g(10, false)]),
            Some(10)
        );
        assert_eq!(
            srv_in_use(&[g(20, true), g(10, false), g(30, true)]),
            Some(20)
        );
        assert_eq!(srv_in_use(&[g(20, false), g(10, false)]), Some(10));
    }

    #[test]
    fn spread_is_even_and_shuffled() {
        let d = Duration::from_secs(6);
        let plan = spread(600, d, 42);
        assert_eq!(plan.len(), 600);
        let mut seen: Vec<usize> = plan.iter().map(|&(t, _)| t).collect();
        assert_ne!(seen, (0..600).collect::<Vec<_>>(), "not shuffled");
        seen.sort_unstable();
        assert_eq!(seen, (0..600).collect::<Vec<_>>(), "each tunnel once");
        // In time order, none after the spread, at most 10 % in any 0.5 s.
        assert!(plan.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(plan.iter().all(|&(_, at)| at < d));
        let half = Duration::from_millis(500);
        for &(_, start) in &plan {
            let within = plan
                .iter()
                .filter(|&&(_, at)| at >= start && at < start + half)
                .count();
            assert!(within <= 60, "{within} closes within 0.5 s of {start:?}");
        }
        assert_eq!(spread(1, d, 1), [(0, Duration::ZERO)]);
        assert!(spread(0, d, 1).is_empty());
        // Another seed, another order.
        assert_ne!(
            spread(50, d, 1).iter().map(|p| p.0).collect::<Vec<_>>(),
            spread(50, d, 2).iter().map(|p| p.0).collect::<Vec<_>>()
        );
    }
}
