//! This core's rate limiter for client-caused error-log lines (`observe::loglimit`, sans-IO),
//! with the clock, the counters and the summary timer: every event is counted
//! (`ringway_client_errors_total{kind}`), at most a few lines per second per kind are written,
//! and what was left out is said as `(N similar suppressed)`.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::info;

use crate::observe::loglimit::{suffix, Kind, Limiter, Verdict, KINDS};
use crate::observe::metrics;

thread_local! {
    static LIMITER: RefCell<Limiter> = RefCell::new(Limiter::new());
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Counts a client-caused event of `kind`. `Some(suffix)`: write its line, ending with
/// `suffix` (` (N similar suppressed)` or nothing); `None`: leave the line out.
pub fn event(kind: Kind) -> Option<String> {
    metrics::with(|m| m.client_error(kind));
    match LIMITER.with(|l| l.borrow_mut().admit(kind, now_ms())) {
        Verdict::Log { suppressed } => Some(suffix(suppressed)),
        Verdict::Suppress => None,
    }
}

/// Once a second: the counts of lines left out in windows that are over (one task per core).
pub async fn flusher() {
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        for (kind, n) in LIMITER.with(|l| l.borrow_mut().flush(now_ms())) {
            info!(kind = KINDS[kind as usize], "({n} similar suppressed)");
        }
    }
}
