//! Per-client-IP limits (sans-IO; time is passed in): concurrent connections, and a token
//! bucket for WebSocket upgrades. One `PerIp` per core: limits are per core, as everything
//! else is (documented as such).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// `upgrades_per_ip = "100/10s"`: at most `count` upgrades per `window`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl Rate {
    /// `N/DURATION` with a duration parsed by `duration` (the config's own parser).
    pub fn parse(
        text: &str,
        duration: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<Rate, String> {
        let (n, d) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not COUNT/DURATION, e.g. \"100/10s\""))?;
        let count: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| format!("{text:?}: the count must be a whole number above 0"))?;
        let window = duration(d.trim())?;
        if window.is_zero() {
            return Err(format!("{text:?}: the window must be longer than 0"));
        }
        Ok(Rate { count, window })
    }
}

/// Entries kept at most; past this, idle ones are dropped first (`sweep`), and a full table
/// admits (fails open) rather than growing without bound.
const TRACKED_IPS_MAX: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Entry {
    connections: u32,
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug, Default)]
pub struct PerIp {
    max_connections: Option<u32>,
    upgrades: Option<Rate>,
    table: HashMap<IpAddr, Entry>,
}

impl PerIp {
    pub fn new(max_connections: Option<u32>, upgrades: Option<Rate>) -> PerIp {
        PerIp {
            max_connections,
            upgrades,
            table: HashMap::new(),
        }
    }

    /// New limits (a reload); counts of open connections are kept.
    pub fn configure(&mut self, max_connections: Option<u32>, upgrades: Option<Rate>) {
        self.max_connections = max_connections;
        self.upgrades = upgrades;
    }

    pub fn is_active(&self) -> bool {
        self.max_connections.is_some() || self.upgrades.is_some()
    }

    fn entry(&mut self, ip: IpAddr, now: Instant) -> Option<&mut Entry> {
        if !self.table.contains_key(&ip) && self.table.len() >= TRACKED_IPS_MAX {
            return None;
        }
        let burst = self.upgrades.map_or(0.0, |r| f64::from(r.count));
        Some(self.table.entry(ip).or_insert(Entry {
            connections: 0,
            tokens: burst,
            refilled: now,
        }))
    }

    /// A new connection from `ip`: false when it is over `max_connections_per_ip` (close it).
    /// An accepted one must be given back with `close`.
    pub fn open(&mut self, ip: IpAddr, now: Instant) -> bool {
        let Some(max) = self.max_connections else {
            return true;
        };
        let Some(e) = self.entry(ip, now) else {
            return true;
        };
        if e.connections >= max {
            return false;
        }
        e.connections += 1;
        true
    }

    pub fn close(&mut self, ip: IpAddr) {
        if let Some(e) = self.table.get_mut(&ip) {
            e.connections = e.connections.saturating_sub(1);
        }
    }

    /// One upgrade from `ip`: `Err(retry_after)` when its bucket is empty.
    pub fn upgrade(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.upgrades else {
            return Ok(());
        };
        let Some(e) = self.entry(ip, now) else {
            return Ok(());
        };
        let per_token = rate.window.as_secs_f64() / f64::from(rate.count);
        let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
        e.tokens = (e.tokens + elapsed / per_token).min(f64::from(rate.count));
        e.refilled = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - e.tokens) * per_token))
        }
    }

    /// Drops entries with no open connection whose bucket is full again.
    pub fn sweep(&mut self, now: Instant) {
        let rate = self.upgrades;
        self.table.retain(|_, e| {
            let full_at = rate.map_or(Duration::ZERO, |r| {
                let missing = f64::from(r.count) - e.tokens;
                Duration::from_secs_f64(
                    missing.max(0.0) * r.window.as_secs_f64() / f64::from(r.count),
                )
            });
            e.connections > 0 || now.saturating_duration_since(e.refilled) < full_at
        });
    }

    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Result<Duration, String> {
        text.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| "bad".to_string())
    }

    #[test]
    fn rate_syntax() {
        assert_eq!(
            Rate::parse("100/10s", secs),
            Ok(Rate {
                count: 100,
                window: Duration::from_secs(10)
            })
        );
        for bad in ["100", "0/10s", "x/10s", "10/0s", "10/ten"] {
            assert!(Rate::parse(bad, secs).is_err(), "{bad}");
        }
    }

    #[test]
    fn connections_per_ip() {
        let t = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut l = PerIp::new(Some(2), None);
        assert!(l.open(a, t) && l.open(a, t));
        assert!(!l.open(a, t), "third from the same IP");
        assert!(l.open(b, t), "another IP has its own count");
        l.close(a);
        assert!(l.open(a, t));
        // Nothing limits without the setting.
        let mut off = PerIp::new(None, None);
        assert!((0..100).all(|_| off.open(a, t)));
        assert!(!off.is_active());
    }

    #[test]
    fn upgrade_bucket_refills_evenly() {
        let t = Instant::now();
        let a: IpAddr = "::1".parse().unwrap();
        let mut l = PerIp::new(
            None,
            Some(Rate {
                count: 4,
                window: Duration::from_secs(2),
            }),
        );
        for _ in 0..4 {
            assert_eq!(l.upgrade(a, t), Ok(()));
        }
        let wait = l.upgrade(a, t).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Half a second later one token is back, and only one.
        let later = t + Duration::from_millis(500);
        assert_eq!(l.upgrade(a, later), Ok(()));
        assert!(l.upgrade(a, later).is_err());
        // Entries leave once their bucket is full and nothing is open.
        l.sweep(later + Duration::from_millis(1900));
        assert_eq!(l.tracked(), 1);
        l.sweep(later + Duration::from_millis(2001));
        assert_eq!(l.tracked(), 0);
    }
}
