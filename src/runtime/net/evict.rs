//! Per-core registry of open WebSocket tunnels by backend server, so that a server drain (or a
//! SIGTERM drain with `timeouts.drain_spread`) can close them one by one, spread evenly over a
//! time in random order (`policy::discovery::spread`), each at its next frame boundary.
//!
//! A tunnel holds a `Ticket` while it runs; `close_spread` sets the close code of the chosen
//! tickets at their scheduled times and wakes their tasks, and the tunnel's pump does the rest
//! (`tunnel`, `handlers::wstunnel`, `h2::connect`). Nothing here runs per message: a tunnel
//! reads its ticket's code when it is polled anyway.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// Close 1012 (Service Restart, RFC 6455 §7.4.1 as registered by IANA): the client's side of a
/// server drain.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;

/// One open tunnel's entry.
pub struct Ticket {
    backend: Rc<str>,
    server: Arc<str>,
    /// 0: keep going; else the code of the Close the client is to get.
    code: Cell<u16>,
    waker: RefCell<Option<Waker>>,
}

impl Ticket {
    /// The close code asked for this tunnel, if a drain reached it.
    pub fn close_code(&self) -> Option<u16> {
        Some(self.code.get()).filter(|&c| c != 0)
    }

    /// Remembers the task to wake when a drain reaches this tunnel.
    pub fn register(&self, cx: &Context<'_>) {
        let mut w = self.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }

    fn close(&self, code: u16) {
        if self.code.get() == 0 {
            self.code.set(code);
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

thread_local! {
    static TICKETS: RefCell<Vec<Weak<Ticket>>> = const { RefCell::new(Vec::new()) };
    /// Backend names as tickets share them: one `Rc<str>` per name and core instead of a copy
    /// per tunnel (an allocation per connection, and 32 bytes held by every idle tunnel).
    static NAMES: RefCell<Vec<Rc<str>>> = const { RefCell::new(Vec::new()) };
}

/// Most backend names kept in `NAMES` (a reload may rename backends; past this the list
/// starts over, so it never grows without bound).
const NAMES_MAX: usize = 256;

/// This core's shared copy of the backend name `backend`.
fn shared_name(backend: &str) -> Rc<str> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(n) = names.iter().find(|n| ***n == *backend) {
            return n.clone();
        }
        if names.len() >= NAMES_MAX {
            names.clear();
        }
        let n: Rc<str> = backend.into();
        names.push(n.clone());
        n
    })
}

/// Registers a tunnel to `server` of `backend`; it leaves the registry when dropped.
pub fn ticket(backend: &str, server: Arc<str>) -> Rc<Ticket> {
    let t = Rc::new(Ticket {
        backend: shared_name(backend),
        server,
        code: Cell::new(0),
        waker: RefCell::new(None),
    });
    TICKETS.with(|ts| {
        let mut ts = ts.borrow_mut();
        // Dead entries go whenever the list has doubled since the last pruning.
        if ts.len() >= 64 && ts.len().is_power_of_two() {
            ts.retain(|w| w.strong_count() > 0);
        }
        ts.push(Rc::downgrade(&t));
    });
    t
}

fn live(matches: impl Fn(&Ticket) -> bool) -> Vec<Rc<Ticket>> {
    TICKETS.with(|ts| {
        let mut ts = ts.borrow_mut();
        ts.retain(|w| w.strong_count() > 0);
        ts.iter()
            .filter_map(Weak::upgrade)
            .filter(|t| matches(t))
            .collect()
    })
}

/// Open tunnels on this core, per (backend, server).
pub fn counts() -> Vec<(Rc<str>, Arc<str>, u32)> {
    let mut out: Vec<(Rc<str>, Arc<str>, u32)> = Vec::new();
    for t in live(|_| true) {
        match out
            .iter_mut()
            .find(|(b, s, _)| *b == t.backend && *s == t.server)
        {
            Some(e) => e.2 += 1,
            None => out.push((t.backend.clone(), t.server.clone(), 1)),
        }
    }
    out
}

/// Closes the open tunnels to `server` of `backend` (every tunnel: `None`) with `code` to the
/// client, spread evenly over `spread` in random order. Runs as its own task on this core.
pub fn close_spread(target: Option<(String, Arc<str>)>, spread: Duration, code: u16) {
    let chosen = live(|t| {
        target
            .as_ref()
            .is_none_or(|(b, s)| *t.backend == **b && t.server == *s)
    });
    if chosen.is_empty() {
        return;
    }
    // A fresh order for every drain (cores drawing the same clock still shuffle their own
    // different tunnels).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let plan = crate::policy::discovery::spread(chosen.len(), spread, seed);
    // The tunnels are held weakly: one that ends before its turn is simply skipped.
    let order: Vec<(Weak<Ticket>, Duration)> = plan
        .into_iter()
        .map(|(i, at)| (Rc::downgrade(&chosen[i]), at))
        .collect();
    drop(chosen);
    glommio::spawn_local(async move {
        let start = Instant::now();
        for (t, at) in order {
            let wait = (start + at).saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                glommio::timer::sleep(wait).await;
            }
            if let Some(t) = t.upgrade() {
                t.close(code);
            }
        }
    })
    .detach();
}
