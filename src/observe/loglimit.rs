//! Rate limits for client-caused error-log lines (sans-IO: the time is passed in).
//!
//! A scanner or a broken client causes one log line per connection; a flood of them would
//! flood the log. Each kind of client-caused event (`Kind`) may log at most `LINES_PER_WINDOW`
//! lines per `WINDOW_MS`; further events in that window are counted, not logged. The count is
//! said once: on the kind's first line of a later window (`Verdict::Log { suppressed }`), or
//! by `flush` once the window is over (a per-core timer calls it), as
//! `(N similar suppressed)`. The events themselves are always counted in the metrics
//! (`ringway_client_errors_total{kind}`); only the lines are limited. One `Limiter` per core:
//! nothing is shared.

/// A kind of client-caused event, each with its own budget of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request head that does not parse, or breaks a limit of the head.
    BadRequest = 0,
    /// A TLS handshake that failed or timed out.
    TlsHandshake,
    /// A PROXY protocol header missing, malformed or late.
    ProxyHeader,
    /// A per-IP or per-connection limit hit.
    Limit,
    /// Plain HTTP sent to a TLS listener (answered 400).
    PlainHttp,
}

/// `Kind` names, by index: the `kind` label of `ringway_client_errors_total`.
pub const KINDS: [&str; 5] = [
    "bad_request",
    "tls_handshake",
    "proxy_header",
    "limit",
    "plain_http",
];

const ALL: [Kind; 5] = [
    Kind::BadRequest,
    Kind::TlsHandshake,
    Kind::ProxyHeader,
    Kind::Limit,
    Kind::PlainHttp,
];

/// Lines per kind per window.
pub const LINES_PER_WINDOW: u32 = 5;
/// The window: one second.
pub const WINDOW_MS: u64 = 1000;

/// Whether to write an event's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `suppressed` lines of this kind were left out before it (say so when > 0).
    Log { suppressed: u64 },
    /// Leave it out (it is counted).
    Suppress,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    window: u64,
    lines: u32,
    suppressed: u64,
}

/// One core's budgets, one per kind.
#[derive(Debug, Default)]
pub struct Limiter {
    kinds: [State; 5],
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// An event of `kind` at `now_ms` (milliseconds on any monotonic clock).
    pub fn admit(&mut self, kind: Kind, now_ms: u64) -> Verdict {
        let window = now_ms / WINDOW_MS;
        let st = &mut self.kinds[kind as usize];
        let mut carried = 0;
        if window != st.window {
            carried = st.suppressed;
            *st = State {
                window,
                lines: 0,
                suppressed: 0,
            };
        }
        if st.lines < LINES_PER_WINDOW {
            st.lines += 1;
            Verdict::Log {
                suppressed: carried,
            }
        } else {
            st.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Kinds whose window is over with lines left out, and how many: each said once.
    pub fn flush(&mut self, now_ms: u64) -> Vec<(Kind, u64)> {
        let window = now_ms / WINDOW_MS;
        let mut out = Vec::new();
        for (kind, st) in ALL.iter().zip(self.kinds.iter_mut()) {
            if st.window != window && st.suppressed > 0 {
                out.push((*kind, st.suppressed));
                st.suppressed = 0;
            }
        }
        out
    }
}

/// ` (N similar suppressed)` when `n > 0`, else empty: the suffix of a line.
pub fn suffix(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_few_lines_a_second_and_says_how_many_it_left_out() {
        let mut l = Limiter::new();
        let mut logged = 0;
        for i in 0..100 {
            if l.admit(Kind::TlsHandshake, 10_000 + i) != Verdict::Suppress {
                logged += 1;
            }
        }
        assert_eq!(logged, LINES_PER_WINDOW);
        // Another kind has its own budget.
        assert_eq!(
            l.admit(Kind::BadRequest, 10_050),
            Verdict::Log { suppressed: 0 }
        );
        // Next window: the first line carries the count, once.
        assert_eq!(
            l.admit(Kind::TlsHandshake, 11_000),
            Verdict::Log { suppressed: 95 }
        );
        assert_eq!(
            l.admit(Kind::TlsHandshake, 11_001),
            Verdict::Log { suppressed: 0 }
        );
        assert!(l.flush(12_500).is_empty());
    }

    #[test]
    fn flush_says_the_count_once_after_the_window() {
        let mut l = Limiter::new();
        for i in 0..8 {
            l.admit(Kind::ProxyHeader, 5_000 + i);
        }
        // Still inside the window: nothing to say yet.
        assert!(l.flush(5_900).is_empty());
        assert_eq!(l.flush(6_000), vec![(Kind::ProxyHeader, 3)]);
        assert!(l.flush(7_000).is_empty());
        // The count was said: the next line carries none.
        assert_eq!(
            l.admit(Kind::ProxyHeader, 9_000),
            Verdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn suffix_text() {
        assert_eq!(suffix(0), "");
        assert_eq!(suffix(7), " (7 similar suppressed)");
    }
}
