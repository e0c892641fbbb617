//! Server selection and passive health for one backend on one core, sans-IO: time is passed
//! in, randomness comes from a seeded generator, health from a caller's predicate.
//!
//! - `round_robin`: smooth weighted round robin (nginx's algorithm: every pick adds each
//!   server's weight to its current score, takes the highest, subtracts the total).
//! - `least_conn`: fewest active connections relative to weight; ties go round robin.
//! - `ip_hash`: weighted rendezvous hashing of the client IP, so a client keeps its server while
//!   it is up, and only the clients of a server that goes down move.
//! - `random_two`: two random available servers, the one with fewer active connections wins.
//!
//! Passive health: `max_fails` failed attempts within `fail_window` take a server out for
//! `fail_timeout`.
//!
//! The server set changes at run time (DNS discovery, admin states): `add` takes a slot (a
//! vacant one whose last connection has ended, else a new one), `remove` vacates one, and
//! `set_usable` / `set_weight` apply a server's admin state and weight. A slot index stays the
//! same server while any connection holds it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How a backend picks its servers (`balance = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's algorithm).
    RoundRobin,
    /// Fewest active connections on this core, relative to weight.
    LeastConn,
    /// Sticky by client IP (rendezvous hashing: a server's clients move only when it is down).
    IpHash,
    /// Power of two random choices by active connections.
    RandomTwo,
    /// `balance = "cookie"`: a cookie naming a ready server goes there; others round robin
    /// (and the response sets the cookie).
    Cookie,
    /// `balance = "hash"`: weighted rendezvous hashing of the request's `hash_key`; round robin
    /// without one.
    Hash,
}

/// What a request brings to a sticky backend's choice, carried without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sticky {
    /// Not a sticky backend (or nothing to go by): the backend's own balancing.
    #[default]
    None,
    /// `balance = "hash"`: the key's hash (`sticky::key_hash`); `None`: the request has no key.
    Key(Option<u64>),
    /// `balance = "cookie"`: the hash (`sticky::id_hash`) of the sticky cookie's value;
    /// `None`: no cookie.
    Cookie(Option<u64>),
}

/// A backend's balancing and passive-health settings, as its config states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub balance: Balance,
    /// Failed attempts within `fail_window` (on one core) that take a server out...
    pub max_fails: u32,
    pub fail_window: Duration,
    /// ...for this long.
    pub fail_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
struct ServerState {
    /// In the published set (a vacant slot is reused once `active` is 0).
    present: bool,
    /// May take new connections (present, and its admin state is `ready`).
    usable: bool,
    weight: i64,
    current: i64,
    active: u32,
    /// `sticky::id_hash` of the server's id (rendezvous and cookie matching).
    id_hash: u64,
    fails: u32,
    window_start: Option<Instant>,
    down_until: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    balance: Balance,
    max_fails: u32,
    fail_window: Duration,
    fail_timeout: Duration,
    servers: Vec<ServerState>,
    rng: u64,
}

impl Pool {
    /// A pool of servers with these `weights` (in the backend's server order).
    pub fn new(settings: Settings, weights: impl IntoIterator<Item = u32>, seed: u64) -> Pool {
        Pool {
            balance: settings.balance,
            max_fails: settings.max_fails,
            fail_window: settings.fail_window,
            fail_timeout: settings.fail_timeout,
            servers: weights
                .into_iter()
                .map(|w| ServerState {
                    present: true,
                    usable: true,
                    weight: i64::from(w.max(1)),
                    ..ServerState::default()
                })
                .collect(),
            rng: seed | 1,
        }
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    pub fn active(&self, i: usize) -> u32 {
        self.servers[i].active
    }

    /// A new server with `weight`: a vacant slot whose connections have all ended, else a new
    /// slot at the end. Returns its index.
    pub fn add(&mut self, weight: u32) -> usize {
        let fresh = ServerState {
            present: true,
            usable: true,
            weight: i64::from(weight.max(1)),
            ..ServerState::default()
        };
        match self
            .servers
            .iter()
            .position(|s| !s.present && s.active == 0)
        {
            Some(i) => {
                self.servers[i] = fresh;
                i
            }
            None => {
                self.servers.push(fresh);
                self.servers.len() - 1
            }
        }
    }

    /// Server `i` left the set: no new connections; its slot is reused once none is left.
    pub fn remove(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.present = false;
        s.usable = false;
    }

    /// Whether slot `i` holds a server of the set.
    pub fn present(&self, i: usize) -> bool {
        self.servers[i].present
    }

    /// Whether server `i` takes new connections (present, admin state `ready`).
    pub fn usable(&self, i: usize) -> bool {
        self.servers[i].usable
    }

    /// Whether server `i` may take new connections (its admin state).
    pub fn set_usable(&mut self, i: usize, usable: bool) {
        let s = &mut self.servers[i];
        s.usable = usable && s.present;
    }

    pub fn set_weight(&mut self, i: usize, weight: u32) {
        self.servers[i].weight = i64::from(weight.max(1));
    }

    /// Server `i`'s id hash (`sticky::id_hash(sticky::server_id(..))`), for `cookie`/`hash`.
    pub fn set_id_hash(&mut self, i: usize, id_hash: u64) {
        self.servers[i].id_hash = id_hash;
    }

    pub fn id_hash(&self, i: usize) -> u64 {
        self.servers[i].id_hash
    }

    /// Whether passive health lets server `i` take requests at `now`.
    pub fn passively_up(&self, i: usize, now: Instant) -> bool {
        self.servers[i].down_until.is_none_or(|t| now >= t)
    }

    /// Picks a server that is not in `tried`, is up by `healthy` (active checks) and not taken
    /// out by passive health. `None`: no server can take the request.
    pub fn pick(
        &mut self,
        client: IpAddr,
        sticky: Sticky,
        tried: &[usize],
        healthy: impl Fn(usize) -> bool,
        now: Instant,
    ) -> Option<usize> {
        let ok = |p: &Pool, i: usize| {
            p.servers[i].usable && !tried.contains(&i) && healthy(i) && p.passively_up(i, now)
        };
        match self.balance {
            Balance::RoundRobin => self.round_robin(|p, i| ok(p, i)),
            Balance::LeastConn => self.least_conn(|p, i| ok(p, i)),
            Balance::IpHash => self.ip_hash(client, |p, i| ok(p, i)),
            Balance::RandomTwo => self.random_two(|p, i| ok(p, i)),
            Balance::Hash => match sticky {
                Sticky::Key(Some(k)) => {
                    let servers = self.servers.iter().map(|s| (s.id_hash, s.weight as u32));
                    crate::policy::sticky::rendezvous_hashed(k, servers, |i| ok(self, i))
                }
                _ => self.round_robin(|p, i| ok(p, i)),
            },
            Balance::Cookie => {
                let named = match sticky {
                    Sticky::Cookie(Some(id)) => (0..self.servers.len())
                        .find(|&i| self.servers[i].id_hash == id && ok(self, i)),
                    _ => None,
                };
                named.or_else(|| self.round_robin(|p, i| ok(p, i)))
            }
        }
    }

    fn round_robin(&mut self, ok: impl Fn(&Pool, usize) -> bool) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.servers.len() {
            if !ok(self, i) {
                continue;
            }
            let s = &mut self.servers[i];
            s.current += s.weight;
            total += s.weight;
            let current = s.current;
            if best.is_none_or(|b| current > self.servers[b].current) {
                best = Some(i);
            }
        }
        let b = best?;
        self.servers[b].current -= total;
        Some(b)
    }

    fn least_conn(&mut self, ok: impl Fn(&Pool, usize) -> bool) -> Option<usize> {
        // Compare active/weight without division: a.active * b.weight < b.active * a.weight.
        let load = |s: &ServerState, o: &ServerState| {
            (i64::from(s.active) * o.weight).cmp(&(i64::from(o.active) * s.weight))
        };
        let mut best: Option<usize> = None;
        for i in 0..self.servers.len() {
            if !ok(self, i) {
                continue;
            }
            let better = best.is_none_or(|b| load(&self.servers[i], &self.servers[b]).is_lt());
            if better {
                best = Some(i);
            }
        }
        let least = best?;
        // Among the equally least loaded, rotate with round robin so ties spread.
        let tie = |p: &Pool, i: usize| ok(p, i) && load(&p.servers[i], &p.servers[least]).is_eq();
        self.round_robin(tie)
    }

    fn ip_hash(&mut self, client: IpAddr, ok: impl Fn(&Pool, usize) -> bool) -> Option<usize> {
        let key = match client {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let mut best: Option<(usize, f64)> = None;
        for i in 0..self.servers.len() {
            if !ok(self, i) {
                continue;
            }
            // Weighted rendezvous: score = -w / ln(u), u uniform in (0, 1) from hash(key, i).
            let h =
                mix(key as u64 ^ mix((key >> 64) as u64 ^ (i as u64).wrapping_mul(0x9E37_79B9)));
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -(self.servers[i].weight as f64) / u.ln();
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    fn random_two(&mut self, ok: impl Fn(&Pool, usize) -> bool) -> Option<usize> {
        let candidates = (0..self.servers.len()).filter(|&i| ok(self, i)).count();
        let nth = |p: &Pool, n: usize| (0..p.servers.len()).filter(|&i| ok(p, i)).nth(n);
        if candidates == 0 {
            return None;
        }
        let (ra, rb) = (self.next_random(), self.next_random());
        let a = nth(self, (ra % candidates as u64) as usize)?;
        let b = nth(self, (rb % candidates as u64) as usize)?;
        let (sa, sb) = (&self.servers[a], &self.servers[b]);
        let a_lighter = i64::from(sa.active) * sb.weight <= i64::from(sb.active) * sa.weight;
        Some(if a_lighter { a } else { b })
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: fast, and plenty for picking servers.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A connection to server `i` opened / closed (for least_conn and random_two).
    pub fn begin(&mut self, i: usize) {
        self.servers[i].active += 1;
    }

    pub fn end(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.active = s.active.saturating_sub(1);
    }

    /// A failed attempt on server `i`. Returns true when this takes the server out.
    pub fn failed(&mut self, i: usize, now: Instant) -> bool {
        let (max_fails, window, timeout) = (self.max_fails, self.fail_window, self.fail_timeout);
        let s = &mut self.servers[i];
        if s.window_start
            .is_none_or(|t| now.duration_since(t) > window)
        {
            s.window_start = Some(now);
            s.fails = 0;
        }
        s.fails += 1;
        if s.fails >= max_fails {
            s.fails = 0;
            s.window_start = None;
            s.down_until = Some(now + timeout);
            return true;
        }
        false
    }

    /// A successful exchange with server `i`: its failure count starts over.
    pub fn succeeded(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.fails = 0;
        s.window_start = None;
    }
}

/// The servers one request has tried, without allocating: attempts are bounded by
/// `retries + 1`, and more than `TRIED_INLINE` of them are simply not remembered (a server may
/// then be tried twice, which is harmless).
#[derive(Debug, Default, Clone)]
pub struct Tried {
    servers: [usize; TRIED_INLINE],
    len: usize,
    attempts: usize,
}

const TRIED_INLINE: usize = 8;

impl Tried {
    pub fn push(&mut self, server: usize) {
        if self.len < TRIED_INLINE {
            self.servers[self.len] = server;
            self.len += 1;
        }
        self.attempts += 1;
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.servers[..self.len]
    }

    /// Attempts made so far (including ones no longer remembered).
    pub fn attempts(&self) -> usize {
        self.attempts
    }
}

/// SplitMix64 finaliser: a good 64-bit mixer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config's defaults: 3 fails within 10 s take a server out for 10 s.
    fn settings(balance: Balance) -> Settings {
        Settings {
            balance,
            max_fails: 3,
            fail_window: Duration::from_secs(10),
            fail_timeout: Duration::from_secs(10),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn weighted_round_robin_is_exact_and_smooth() {
        let mut p = Pool::new(settings(Balance::RoundRobin), [5, 1, 1], 1);
        let now = Instant::now();
        let picks: Vec<usize> = (0..7)
            .map(|_| p.pick(IP, Sticky::None, &[], |_| true, now).unwrap())
            .collect();
        // nginx's documented sequence for weights 5,1,1.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[p.pick(IP, Sticky::None, &[], |_| true, now).unwrap()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn unavailable_servers_are_skipped() {
        let mut p = Pool::new(settings(Balance::RoundRobin), [1, 1, 1], 1);
        let now = Instant::now();
        for _ in 0..10 {
            let i = p.pick(IP, Sticky::None, &[0], |i| i != 2, now).unwrap();
            assert_eq!(i, 1);
        }
        assert_eq!(p.pick(IP, Sticky::None, &[0, 1], |i| i != 2, now), None);
    }

    #[test]
    fn least_conn_prefers_the_idle_server() {
        let mut p = Pool::new(settings(Balance::LeastConn), [1, 1], 1);
        let now = Instant::now();
        p.begin(0);
        p.begin(0);
        p.begin(1);
        for _ in 0..5 {
            assert_eq!(p.pick(IP, Sticky::None, &[], |_| true, now), Some(1));
        }
        p.end(0);
        p.end(0);
        assert_eq!(p.pick(IP, Sticky::None, &[], |_| true, now), Some(0));
        // Ties alternate.
        let mut q = Pool::new(settings(Balance::LeastConn), [1, 1], 1);
        let a = q.pick(IP, Sticky::None, &[], |_| true, now).unwrap();
        let b = q.pick(IP, Sticky::None, &[], |_| true, now).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn ip_hash_is_sticky_and_moves_only_the_dead_servers_clients() {
        let mut p = Pool::new(settings(Balance::IpHash), [1, 1, 1, 1], 1);
        let now = Instant::now();
        let ips: Vec<IpAddr> = (1..=200u8)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, i, 7)))
            .collect();
        let before: Vec<usize> = ips
            .iter()
            .map(|&ip| p.pick(ip, Sticky::None, &[], |_| true, now).unwrap())
            .collect();
        let again: Vec<usize> = ips
            .iter()
            .map(|&ip| p.pick(ip, Sticky::None, &[], |_| true, now).unwrap())
            .collect();
        assert_eq!(before, again);
        let mut used = [0; 4];
        before.iter().for_each(|&i| used[i] += 1);
        assert!(used.iter().all(|&n| n > 20), "spread: {used:?}");
        let after: Vec<usize> = ips
            .iter()
            .map(|&ip| p.pick(ip, Sticky::None, &[], |i| i != 2, now).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b == 2 {
                assert_ne!(*a, 2);
            } else {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn random_two_prefers_the_lighter() {
        let mut p = Pool::new(settings(Balance::RandomTwo), [1, 1], 7);
        let now = Instant::now();
        for _ in 0..50 {
            p.begin(0);
        }
        let picks: Vec<usize> = (0..100)
            .map(|_| p.pick(IP, Sticky::None, &[], |_| true, now).unwrap())
            .collect();
        // Server 0 wins only when both draws land on it (about a quarter).
        let zeros = picks.iter().filter(|&&i| i == 0).count();
        assert!(zeros < 45, "{zeros}");
        assert!(picks.contains(&1));
    }

    #[test]
    fn servers_come_and_go_and_slots_are_reused_only_when_idle() {
        let mut p = Pool::new(settings(Balance::RoundRobin), [1, 1], 1);
        let now = Instant::now();
        p.begin(0);
        p.remove(0);
        for _ in 0..4 {
            assert_eq!(p.pick(IP, Sticky::None, &[], |_| true, now), Some(1));
        }
        // Slot 0 still has a connection: a new server gets a new slot.
        assert_eq!(p.add(3), 2);
        let mut counts = [0; 3];
        for _ in 0..40 {
            counts[p.pick(IP, Sticky::None, &[], |_| true, now).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 10, 30]);
        p.end(0);
        assert!(!p.present(0));
        assert_eq!(p.add(1), 0);
        assert!(p.present(0));
        // Not usable (drain, maint): skipped; a weight change takes effect at once.
        p.set_usable(2, false);
        p.set_weight(0, 2);
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[p.pick(IP, Sticky::None, &[], |_| true, now).unwrap()] += 1;
        }
        assert_eq!(counts, [20, 10, 0]);
        p.set_usable(0, false);
        p.set_usable(1, false);
        assert_eq!(p.pick(IP, Sticky::None, &[], |_| true, now), None);
    }

    /// A pool of `n` servers with the ids `s0`, `s1`, ... as a config would give them.
    fn sticky_pool(balance: Balance, n: usize) -> Pool {
        let mut p = Pool::new(settings(balance), vec![1; n], 1);
        for i in 0..n {
            let id =
                crate::policy::sticky::server_id(b"secret", &format!("127.0.0.1:{}", 9000 + i));
            p.set_id_hash(i, crate::policy::sticky::id_hash(&id));
        }
        p
    }

    #[test]
    fn hash_keeps_a_key_on_its_server_and_moves_only_a_drained_servers_keys() {
        let now = Instant::now();
        let key = |n: u32| {
            Sticky::Key(Some(crate::policy::sticky::key_hash(
                format!("sid{n}").as_bytes(),
            )))
        };
        let mut a = sticky_pool(Balance::Hash, 4);
        // Another instance (another pool, another seed) with the same config picks the same.
        let mut b = sticky_pool(Balance::Hash, 4);
        let before: Vec<usize> = (0..400)
            .map(|n| a.pick(IP, key(n), &[], |_| true, now).unwrap())
            .collect();
        for n in 0..400 {
            assert_eq!(
                b.pick(IP, key(n), &[], |_| true, now),
                Some(before[n as usize])
            );
            assert_eq!(
                a.pick(IP, key(n), &[], |_| true, now),
                Some(before[n as usize])
            );
        }
        let mut used = [0; 4];
        before.iter().for_each(|&i| used[i] += 1);
        assert!(used.iter().all(|&c| c > 50), "spread: {used:?}");
        // Draining server 1: only its keys move.
        a.set_usable(1, false);
        for n in 0..400 {
            let now_on = a.pick(IP, key(n), &[], |_| true, now).unwrap();
            if before[n as usize] == 1 {
                assert_ne!(now_on, 1);
            } else {
                assert_eq!(now_on, before[n as usize]);
            }
        }
        // No key: round robin over the rest.
        let picks: Vec<usize> = (0..6)
            .map(|_| a.pick(IP, Sticky::Key(None), &[], |_| true, now).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        assert!(picks.contains(&0) && picks.contains(&2) && picks.contains(&3));
        // A down server (active health) is skipped too, and its keys come back with it.
        a.set_usable(1, true);
        for n in 0..400 {
            let on = a.pick(IP, key(n), &[], |i| i != 2, now).unwrap();
            assert_eq!(on == before[n as usize], before[n as usize] != 2);
        }
    }

    #[test]
    fn cookie_goes_to_a_ready_named_server_else_round_robin() {
        let now = Instant::now();
        let mut p = sticky_pool(Balance::Cookie, 3);
        let id = |i: usize| Sticky::Cookie(Some(p_id(i)));
        fn p_id(i: usize) -> u64 {
            let id =
                crate::policy::sticky::server_id(b"secret", &format!("127.0.0.1:{}", 9000 + i));
            crate::policy::sticky::id_hash(&id)
        }
        for _ in 0..5 {
            assert_eq!(p.pick(IP, id(2), &[], |_| true, now), Some(2));
        }
        // No cookie or an unknown one: round robin.
        let rr: Vec<usize> = (0..3)
            .map(|_| {
                p.pick(IP, Sticky::Cookie(None), &[], |_| true, now)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            {
                let mut s = rr.clone();
                s.sort();
                s
            },
            [0, 1, 2]
        );
        assert!(p
            .pick(IP, Sticky::Cookie(Some(7)), &[], |_| true, now)
            .is_some());
        // Draining, down, or passively out: the cookie is not honoured.
        p.set_usable(2, false);
        assert_ne!(p.pick(IP, id(2), &[], |_| true, now), Some(2));
        p.set_usable(2, true);
        assert_ne!(p.pick(IP, id(2), &[], |i| i != 2, now), Some(2));
        for k in 0..3 {
            p.failed(2, now + Duration::from_millis(k));
        }
        assert_ne!(p.pick(IP, id(2), &[], |_| true, now), Some(2));
        assert_eq!(p.pick(IP, id(1), &[], |_| true, now), Some(1));
    }

    #[test]
    fn tried_keeps_the_first_servers_and_counts_every_attempt() {
        let mut t = Tried::default();
        for i in 0..10 {
            t.push(i);
        }
        assert_eq!(t.as_slice(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(t.attempts(), 10);
    }

    #[test]
    fn passive_health_takes_out_and_brings_back() {
        let mut p = Pool::new(settings(Balance::RoundRobin), [1, 1], 1);
        let t0 = Instant::now();
        assert!(!p.failed(0, t0));
        assert!(!p.failed(0, t0 + Duration::from_secs(1)));
        assert!(p.failed(0, t0 + Duration::from_secs(2)));
        let t = t0 + Duration::from_secs(3);
        for _ in 0..4 {
            assert_eq!(p.pick(IP, Sticky::None, &[], |_| true, t), Some(1));
        }
        let back = t0 + Duration::from_secs(12);
        assert!(p.passively_up(0, back));
        // Failures spread wider than the window never add up.
        let mut q = Pool::new(settings(Balance::RoundRobin), [1], 1);
        for k in 0..10 {
            assert!(!q.failed(0, t0 + Duration::from_secs(11 * k)));
        }
        // A success resets the count.
        q.failed(0, back);
        q.failed(0, back);
        q.succeeded(0);
        assert!(!q.failed(0, back));
    }
}
