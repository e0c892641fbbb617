//! This core's per-client-IP limits (`crate::policy::limits::PerIp`), with the clock and the log.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::Limits;
use crate::observe::loglimit::Kind;
use crate::observe::metrics;
use crate::policy::limits::PerIp;
use crate::runtime::conn::errlog;

thread_local! {
    static PER_IP: RefCell<PerIp> = RefCell::new(PerIp::default());
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Applies `[limits]` (start and reload).
pub fn configure(limits: &Limits) {
    PER_IP.with(|p| {
        let mut p = p.borrow_mut();
        p.configure(limits.max_connections_per_ip, limits.upgrades_per_ip);
        ACTIVE.with(|a| a.set(p.is_active()));
    });
}

/// Gives a connection's count back when the connection ends.
pub struct IpGuard(IpAddr);

impl Drop for IpGuard {
    fn drop(&mut self) {
        PER_IP.with(|p| p.borrow_mut().close(self.0));
    }
}

/// A new connection from `ip`: `Err` when it is over `max_connections_per_ip` (close it);
/// `Ok(None)` when no limit is set.
pub fn open(ip: IpAddr) -> Result<Option<IpGuard>, ()> {
    if !ACTIVE.with(Cell::get) {
        return Ok(None);
    }
    if PER_IP.with(|p| p.borrow_mut().open(ip, Instant::now())) {
        return Ok(Some(IpGuard(ip)));
    }
    metrics::with(|m| m.limited_connections.set(m.limited_connections.get() + 1));
    say_limited(ip, "max_connections_per_ip reached: connection closed");
    Err(())
}

/// An upgrade from `ip`: `Err(retry_after)` when its bucket is empty.
pub fn upgrade(ip: IpAddr) -> Result<(), Duration> {
    if !ACTIVE.with(Cell::get) {
        return Ok(());
    }
    let result = PER_IP.with(|p| p.borrow_mut().upgrade(ip, Instant::now()));
    if result.is_err() {
        metrics::with(|m| m.limited_upgrades.set(m.limited_upgrades.get() + 1));
        say_limited(ip, "upgrades_per_ip exceeded: 429");
    }
    result
}

pub fn sweep() {
    if ACTIVE.with(Cell::get) {
        PER_IP.with(|p| p.borrow_mut().sweep(Instant::now()));
    }
}

/// A flood must not flood the log too: counted always, a few lines a second.
fn say_limited(ip: IpAddr, what: &str) {
    if let Some(suppressed) = errlog::event(Kind::Limit) {
        warn!(peer = %ip, "{what}{suppressed}");
    }
}
