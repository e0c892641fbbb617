//! Idle timeouts without a timer per connection on the data path.
//!
//! glommio's `Timer` re-registers itself (a `BTreeMap` remove and insert, plus a clock read)
//! every time it is polled, and a future racing a timer polls it on every wake-up: once per
//! forwarded message in a tunnel. Instead, each tunnel holds a `Watch` and only bumps an
//! activity counter when bytes move. One sweeper task per core visits every live watch each
//! `SWEEP_INTERVAL`; a watch whose counter has not moved for its limit is marked expired and its
//! task woken. Precision is one interval, which is plenty for idle timeouts of seconds to hours.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

/// How often the sweeper runs; also the precision of idle timeouts.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

pub struct Watch {
    limit: Duration,
    activity: Cell<u64>,
    seen: Cell<u64>,
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

    /// Remembers the task to wake on expiry (a pointer comparison when it is unchanged).
    pub fn register(&self, cx: &Context<'_>) {
        let mut w = self.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }

    /// Sweeper side: returns false once the watch has expired (and wakes its task).
    fn sweep(&self, interval: Duration) -> bool {
        let now = self.activity.get();
        if now != self.seen.get() {
            self.seen.set(now);
            self.idle_for.set(Duration::ZERO);
            return true;
        }
        let idle = self.idle_for.get() + interval;
        self.idle_for.set(idle);
        if idle < self.limit {
            return true;
        }
        self.expired.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
        false
    }
}

thread_local! {
    static WATCHES: RefCell<Vec<Weak<Watch>>> = const { RefCell::new(Vec::new()) };
}

/// A watch that expires after `limit` without `touch`. Dropping it unregisters it (lazily).
pub fn watch(limit: Duration) -> Rc<Watch> {
    let w = Rc::new(Watch {
        limit,
        activity: Cell::new(0),
        seen: Cell::new(0),
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

/// The per-core sweeper task.
pub async fn sweeper() {
    loop {
        glommio::timer::sleep(SWEEP_INTERVAL).await;
        sweep_once(SWEEP_INTERVAL);
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
        // Four idle sweeps of 250 ms = 1 s: expired on the fourth, not before.
        for i in 0..3 {
            sweep_once(step);
            assert!(!w.expired(), "expired early at idle sweep {i}");
        }
        sweep_once(step);
        assert!(w.expired());
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        // Expired and dropped watches leave the registry.
        drop(w);
        sweep_once(step);
        assert_eq!(WATCHES.with(|ws| ws.borrow().len()), 0);
    }
}
