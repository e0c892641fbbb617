//! A route's access checks on this core, in order: `deny_from` / `allow_from` (403),
//! `requests_per_ip` (429, the route's token buckets in `Routes::limiters`), then `auth`
//! (401). HTTP Basic credentials are checked here too for the CONNECT proxy's `auth`.
//!
//! bcrypt is slow by design (tens of milliseconds at cost 10) and would stall a serving core
//! on every request: each core keeps the verdicts of recent verifications in a small bounded
//! map keyed by a keyed hash (random per core) of user, password and stored hash, so a
//! credential is verified once per core and then costs a hash lookup. A changed users file
//! changes the stored hash and so misses the cache; the map is cleared when full.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::RouteRules;
use crate::policy::access::{basic_credentials, verify, Secret, Users};
use crate::runtime::shard::Shard;

/// Verdicts kept per core; past this the map starts again (a flood of wrong passwords cannot
/// grow it).
const VERDICTS_MAX: usize = 1024;
/// How often a core drops the full, idle entries of its `requests_per_ip` buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

thread_local! {
    static VERDICTS: RefCell<HashMap<u64, bool>> = RefCell::new(HashMap::new());
    static KEY: std::collections::hash_map::RandomState = std::collections::hash_map::RandomState::new();
    static SWEPT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Why a request may not use its route.
pub enum Refusal<'s> {
    /// 403: the client's address is denied, or not allowed.
    Forbidden,
    /// 429 with `Retry-After` (whole seconds, rounded up).
    TooMany(u64),
    /// 401 with `WWW-Authenticate: Basic realm="..."`.
    Unauthorized(&'s str),
}

/// The route's checks for a request from `ip` with this `Authorization` value.
pub fn check<'s>(
    shard: &'s Shard,
    rules: &'s RouteRules,
    ip: IpAddr,
    authorization: Option<&[u8]>,
) -> Option<Refusal<'s>> {
    if !rules.access.ip_allowed(ip) {
        return Some(Refusal::Forbidden);
    }
    if let Some(limiter) = rules.limiter.and_then(|i| shard.routes.limiters.get(i)) {
        let now = Instant::now();
        if SWEPT
            .get()
            .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
        {
            SWEPT.set(Some(now));
            for l in &shard.routes.limiters {
                l.borrow_mut().sweep(now);
            }
        }
        if let Err(wait) = limiter.borrow_mut().upgrade(ip, now) {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Some(Refusal::TooMany(secs.max(1)));
        }
    }
    if let Some(auth) = &rules.access.auth {
        if !basic_ok(authorization, &auth.users) {
            return Some(Refusal::Unauthorized(&auth.realm));
        }
    }
    None
}

/// `Basic base64(user:password)` against `users` (bcrypt verdicts cached per core).
pub fn basic_ok(header: Option<&[u8]>, users: &Users) -> bool {
    let Some((user, password)) = basic_credentials(header) else {
        return false;
    };
    match users.secret(&user) {
        None => false,
        Some(plain @ Secret::Plain(_)) => verify(plain, &password),
        Some(secret @ Secret::Bcrypt(hash)) => {
            let key = KEY.with(|k| k.hash_one((&user, &password, hash)));
            if let Some(v) = VERDICTS.with(|m| m.borrow().get(&key).copied()) {
                return v;
            }
            let verdict = verify(secret, &password);
            VERDICTS.with(|m| {
                let mut m = m.borrow_mut();
                if m.len() >= VERDICTS_MAX {
                    m.clear();
                }
                m.insert(key, verdict);
            });
            verdict
        }
    }
}
