//! Timeouts without a timer per read on the data path.
//!
//! glommio's `Timer` re-registers itself (a `BTreeMap` remove and insert, plus a clock read)
//! every time it is polled, and a future racing a timer polls it on every wake-up: once per
//! forwarded message in a tunnel. Instead, each tunnel holds a `Watch` and only bumps an
//! activity counter when bytes move. One sweeper task per core visits every live watch each
//! `SWEEP_INTERVAL`; a watch whose counter has not moved for its limit is marked expired and its
//! task woken. A watch that is never touched is a deadline (`restart` starts it again): HTTP
//! connections use one for the header, keep-alive and upstream-read timeouts. A timeout fires
//! between its limit and one interval later, never early.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

/// How often the sweeper runs; also the precision of idle timeouts.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

pub struct Watch {
    limit: Cell<Duration>,
    /// Restarted since the last sweep: that sweep does not count (so expiry is never early).
    fresh: Cell<bool>,
    registered: Cell<bool>,
    activity: Cell<u64>,
    seen: Cell<u64>,
    /// A keep-alive connection waiting, with nothing buffered, for its next request: a drain
    /// closes it at once.
    between_requests: Cell<bool>,
    idle_for: Cell<Duration>,
    expired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Watch {
    /// Something happened: the idle clock starts over (one counter increment).
    pub fn touch(&self) {
        self.activity.set(self.activity.get().wrapping_add(1));
    }

    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    /// Marks the connection as idle between requests (or not); see `start_drain`.
    pub fn set_between_requests(&self, idle: bool) {
        self.between_requests.set(idle);
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Starts the clock again with a new limit (and re-arms an expired watch).
    pub fn restart(self: &Rc<Self>, limit: Duration) {
        self.limit.set(limit);
        self.idle_for.set(Duration::ZERO);
        self.seen.set(self.activity.get());
        self.fresh.set(true);
        self.expired.set(false);
        if !self.registered.replace(true) {
            WATCHES.with(|ws| ws.borrow_mut().push(Rc::downgrade(self)));
        }
    }

    /// Remembers the task to wake on expiry (a pointer comparison when it is unchanged).
    pub fn register(&self, cx: &Context<'_>) {
        let mut w = self.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }

    /// Sweeper side: returns false once the watch has expired (and wakes its task).
    fn sweep(&self, interval: Duration) -> bool {
        if self.fresh.replace(false) {
            return true;
        }
        let now = self.activity.get();
        if now != self.seen.get() {
            self.seen.set(now);
            self.idle_for.set(Duration::ZERO);
            return true;
        }
        let idle = self.idle_for.get() + interval;
        self.idle_for.set(idle);
        if idle < self.limit.get() {
            return true;
        }
        self.expired.set(true);
        self.registered.set(false);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
        false
    }
}

thread_local! {
    static WATCHES: RefCell<Vec<Weak<Watch>>> = const { RefCell::new(Vec::new()) };
    static DRAINING: Cell<bool> = const { Cell::new(false) };
    /// Draining with `timeouts.drain_spread`: tunnels close at their turn (`evict`), not at once.
    static TUNNELS_SPREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether every tunnel on this core is to close now (a drain without `drain_spread`).
pub fn tunnels_closing() -> bool {
    draining() && !TUNNELS_SPREAD.with(Cell::get)
}

/// The drain about to start closes tunnels one by one (`evict::close_spread`), not at once.
pub fn spread_tunnel_closes() {
    TUNNELS_SPREAD.with(|s| s.set(true));
}

/// Whether this core is draining (SIGTERM, upgrade): responses close their connections,
/// tunnels close with 1001.
pub fn draining() -> bool {
    DRAINING.with(Cell::get)
}

/// Starts this core's drain: wakes every watched task so that tunnels see it, and expires the
/// watches of connections idle between requests (they close).
pub fn start_drain() {
    DRAINING.with(|d| d.set(true));
    for_each_live(|w| {
        if w.between_requests.get() {
            w.expired.set(true);
        }
        w.wake();
    });
}

/// While draining: closes the connections that became idle since the last call.
pub fn wake_idle() {
    for_each_live(|w| {
        if w.between_requests.get() && !w.expired.get() {
            w.expired.set(true);
            w.wake();
        }
    });
}

fn for_each_live(f: impl Fn(&Watch)) {
    // Take the list out so a woken task that registers a new watch cannot conflict.
    let list = WATCHES.with(|ws| std::mem::take(&mut *ws.borrow_mut()));
    for w in list.iter().filter_map(Weak::upgrade) {
        f(&w);
    }
    WATCHES.with(|ws| {
        let mut ws = ws.borrow_mut();
        let mut list = list;
        list.append(&mut ws);
        *ws = list;
    });
}

/// A watch that expires after `limit` without `touch`. Dropping it unregisters it (lazily).
pub fn watch(limit: Duration) -> Rc<Watch> {
    let w = Rc::new(Watch {
        limit: Cell::new(limit),
        fresh: Cell::new(true),
        registered: Cell::new(true),
        activity: Cell::new(0),
        seen: Cell::new(0),
        between_requests: Cell::new(false),
        idle_for: Cell::new(Duration::ZERO),
        expired: Cell::new(false),
        waker: RefCell::new(None),
    });
    WATCHES.with(|ws| ws.borrow_mut().push(Rc::downgrade(&w)));
    w
}

/// Visits every live watch once; drops dead and expired ones from the registry.
pub fn sweep_once(interval: Duration) {
    // Take the list out so a woken task that registers a new watch cannot conflict.
    let mut list = WATCHES.with(|ws| std::mem::take(&mut *ws.borrow_mut()));
    list.retain(|w| w.upgrade().is_some_and(|w| w.sweep(interval)));
    WATCHES.with(|ws| {
        let mut ws = ws.borrow_mut();
        list.append(&mut ws);
        *ws = list;
    });
}

/// The per-core sweeper task. It also lets the buffer pools decay (`pool::decay`).
pub async fn sweeper() {
    let decay_every =
        (crate::runtime::net::pool::DECAY_INTERVAL.as_millis() / SWEEP_INTERVAL.as_millis()) as u32;
    let mut sweeps = 0u32;
    loop {
        glommio::timer::sleep(SWEEP_INTERVAL).await;
        sweep_once(SWEEP_INTERVAL);
        sweeps += 1;
        if sweeps == decay_every {
            sweeps = 0;
            crate::runtime::net::memory::released(crate::runtime::net::pool::decay());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn expires_after_the_limit_without_activity_and_wakes_its_task() {
        let step = Duration::from_millis(250);
        let w = watch(Duration::from_secs(1));
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        w.register(&Context::from_waker(&waker));
        // Activity keeps it alive however long it runs.
        for _ in 0..20 {
            w.touch();
            sweep_once(step);
            assert!(!w.expired());
        }
        // The sweep that saw the last touch reset the count; four idle sweeps of 250 ms = 1 s:
        // expired on the fourth, not before.
        for i in 0..3 {
            sweep_once(step);
            assert!(!w.expired(), "expired early at idle sweep {i}");
        }
        sweep_once(step);
        assert!(w.expired());
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        // Restarting re-arms it, with the new limit, as a deadline. The first sweep after a
        // restart does not count (the restart may have come just before it), so 500 ms expires
        // on the third sweep: 500 to 750 ms after the restart, never before.
        w.restart(Duration::from_millis(500));
        assert!(!w.expired());
        for _ in 0..2 {
            sweep_once(step);
        }
        assert!(!w.expired(), "skipped sweep + 250 ms < 500 ms");
        sweep_once(step);
        assert!(w.expired());
        // Expired and dropped watches leave the registry.
        drop(w);
        sweep_once(step);
        assert_eq!(WATCHES.with(|ws| ws.borrow().len()), 0);
    }
}
