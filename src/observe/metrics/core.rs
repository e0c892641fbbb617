//! The per-core registry: what each core counts and how the data path reaches it.
//!
//! One `CoreMetrics` per thread (`with`), updated with plain `Cell` and `RefCell` arithmetic:
//! no atomics, no locks, nothing shared per request or message. Names that label series
//! (listeners, vhosts, backends, servers) are interned into ids that never change (`Ids`), so a
//! config reload keeps counting into the same series. The label sets (`HandlerKind`,
//! `Rejected`, status classes, close codes) live here too: the counters are indexed by them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use crate::observe::loglimit::{Kind, KINDS};

use super::histogram::{clock_s, Histograms, Latency, Window};

/// Handler labels of `ringway_requests_total` and `ringway_request_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    Static = 0,
    Proxy,
    Echo,
    WebSocket,
    Admin,
    /// Answered before a handler was chosen: bad heads, unknown hosts.
    Error,
    /// CONNECT forward proxy (counted when its tunnel ends).
    Connect,
}

pub const HANDLERS: [&str; 7] = [
    "static",
    "proxy",
    "echo",
    "websocket",
    "admin",
    "error",
    "connect",
];

/// Why an upgrade was refused (`ringway_upgrade_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The backend's `Sec-WebSocket-Accept` was wrong or its 101 lacked the upgrade fields.
    BadAccept = 0,
    /// The backend answered something other than 101.
    Not101,
    /// `Upgrade: h2c` (not a WebSocket upgrade Ringway performs).
    H2c,
    /// Unsupported `Sec-WebSocket-Version` (426).
    Version,
    /// Malformed client handshake: method, HTTP version, `Connection`, key.
    BadRequest,
    /// No backend server could be reached, or its handshake timed out.
    Backend,
    /// `Origin` missing or not in the route's `origins` (403).
    Origin,
}

pub const REJECT_REASONS: [&str; 7] = [
    "bad_accept",
    "not_101",
    "h2c",
    "version",
    "bad_request",
    "backend",
    "origin",
];

/// Results of `ringway_tls_handshakes_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Ok = 0,
    /// The handshake failed (an alert was sent or the client gave up).
    Failed,
    /// Not complete within `timeouts.header`.
    Timeout,
    /// Plain HTTP sent to the TLS listener (answered 400).
    PlainHttp,
}

pub const HANDSHAKE_RESULTS: [&str; 4] = ["ok", "failed", "timeout", "plain_http"];

/// Status classes `1xx`..`5xx`, by index `status / 100 - 1`.
pub(super) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

/// Names to small ids, in first-seen order; ids never change.
#[derive(Clone, Default)]
pub(super) struct Interner {
    pub(super) names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Interner {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }
}

/// Server names one core interns before new ones share their backend's `(other)` entry.
pub const SERVER_NAMES_MAX: usize = 16_384;

/// Grows `v` so that index `id` exists.
fn slot<T: Default + Clone>(v: &mut Vec<T>, id: usize) -> &mut T {
    if v.len() <= id {
        v.resize(id + 1, T::default());
    }
    &mut v[id]
}

/// Everything one core counts, by interned id.
#[derive(Clone, Default)]
pub(super) struct Tables {
    pub(super) listeners: Interner,
    pub(super) conns_active: Vec<i64>,
    pub(super) conns_total: Vec<u64>,
    pub(super) backends: Interner,
    pub(super) tunnels_active: Vec<i64>,
    pub(super) tunnels_total: Vec<u64>,
    /// `backend\0server`.
    pub(super) servers: Interner,
    pub(super) backend_requests: Vec<[u64; 5]>,
    /// Id 0 is `-` (no vhost matched).
    pub(super) vhosts: Interner,
    pub(super) requests: Vec<[[u64; 5]; HANDLERS.len()]>,
    pub(super) bad_requests: Vec<(u16, u64)>,
    pub(super) upgrade_rejected: [u64; 7],
    /// Per listener, per `Handshake` result, [not resumed, resumed].
    pub(super) tls_handshakes: Vec<[[u64; 2]; HANDSHAKE_RESULTS.len()]>,
}

/// Close codes Ringway sends (`ringway_ws_closes_sent_total{code}`): tunnel mode's, and 1012
/// (Service Restart) when a server is drained.
pub const WS_CLOSE_CODES: [u16; 7] = [1000, 1001, 1002, 1007, 1009, 1011, 1012];

/// One core's metrics. Reach it with `with`.
pub struct CoreMetrics {
    /// Client-side bytes, read and written (TLS: ciphertext is not counted, plaintext is).
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    /// WebSocket frames that ended a message, client → backend and backend → client.
    pub messages_in: Cell<u64>,
    pub messages_out: Cell<u64>,
    /// Tunnel bytes moved socket → pipe → socket with `splice(2)`, counted once when they leave
    /// the pipe (bulk tunnels, `net::splice`).
    pub spliced_bytes: Cell<u64>,
    /// Refused by the per-IP limits: connections closed, upgrades answered 429.
    pub limited_connections: Cell<u64>,
    pub limited_upgrades: Cell<u64>,
    /// Client connections closed because a write made no progress within `timeouts.send`.
    pub send_timeouts: Cell<u64>,
    /// Tunnel mode: clients closed for leaving two pings unanswered.
    pub ws_ping_timeouts: Cell<u64>,
    /// Tunnel mode: Close frames Ringway sent, by code (`WS_CLOSE_CODES`).
    pub(super) ws_closes: [Cell<u64>; WS_CLOSE_CODES.len()],
    /// Client-caused events, by `observe::loglimit::Kind` (counted even when not logged).
    pub(super) client_errors: [Cell<u64>; KINDS.len()],
    pub(super) tables: RefCell<Tables>,
    pub(super) hists: RefCell<Option<Histograms>>,
    /// Request latency over the last minute (the dashboard's), WebSocket sessions, echo
    /// sessions and admin requests excepted.
    pub(super) window: RefCell<Option<Window>>,
}

thread_local! {
    static CORE: CoreMetrics = CoreMetrics::new();
}

/// Runs `f` with this core's metrics.
pub fn with<R>(f: impl FnOnce(&CoreMetrics) -> R) -> R {
    CORE.with(f)
}

/// Ids of a config generation's names on this core (see `CoreMetrics::ids`).
#[derive(Debug, Clone, Default)]
pub struct Ids {
    pub listeners: Vec<usize>,
    pub backends: Vec<usize>,
    /// Per backend, per server.
    pub servers: Vec<Vec<usize>>,
    /// Per vhost; `NO_VHOST` is the id of "no vhost".
    pub vhosts: Vec<usize>,
}

pub const NO_VHOST: usize = 0;

impl CoreMetrics {
    pub(super) fn new() -> CoreMetrics {
        CoreMetrics {
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            messages_in: Cell::new(0),
            messages_out: Cell::new(0),
            spliced_bytes: Cell::new(0),
            limited_connections: Cell::new(0),
            limited_upgrades: Cell::new(0),
            send_timeouts: Cell::new(0),
            ws_ping_timeouts: Cell::new(0),
            ws_closes: Default::default(),
            client_errors: Default::default(),
            tables: RefCell::new(Tables::default()),
            hists: RefCell::new(None),
            window: RefCell::new(None),
        }
    }

    /// Interns a config's names: `listeners`, `backends` with their servers, `vhosts`.
    pub fn ids<'a>(
        &self,
        listeners: impl Iterator<Item = &'a str>,
        backends: impl Iterator<Item = (&'a str, Vec<String>)>,
        vhosts: impl Iterator<Item = &'a str>,
    ) -> Ids {
        let mut t = self.tables.borrow_mut();
        let t = &mut *t;
        t.vhosts.id("-");
        let mut ids = Ids {
            listeners: listeners.map(|l| t.listeners.id(l)).collect(),
            vhosts: vhosts.map(|v| t.vhosts.id(v)).collect(),
            ..Ids::default()
        };
        for (name, servers) in backends {
            ids.backends.push(t.backends.id(name));
            let s = servers
                .iter()
                .map(|s| t.servers.id(&format!("{name}\0{s}")))
                .collect();
            ids.servers.push(s);
        }
        ids
    }

    /// Interns one server of a backend (servers found at run time, by DNS). Addresses come and go
    /// with every deploy, and an interned name is kept (its counters stay meaningful across
    /// reloads): past `SERVER_NAMES_MAX` names, a new server is counted under its backend's
    /// `(other)` entry instead, so the table stays bounded however long the process runs.
    pub fn server_id(&self, backend: &str, server: &str) -> usize {
        let mut t = self.tables.borrow_mut();
        let name = format!("{backend}\0{server}");
        if t.servers.names.len() >= SERVER_NAMES_MAX && !t.servers.index.contains_key(&name) {
            return t.servers.id(&format!("{backend}\0(other)"));
        }
        t.servers.id(&name)
    }

    pub fn connection_opened(&self, listener: usize) {
        let mut t = self.tables.borrow_mut();
        *slot(&mut t.conns_active, listener) += 1;
        *slot(&mut t.conns_total, listener) += 1;
    }

    pub fn connection_closed(&self, listener: usize) {
        *slot(&mut self.tables.borrow_mut().conns_active, listener) -= 1;
    }

    pub fn tunnel_opened(&self, backend: usize) {
        let mut t = self.tables.borrow_mut();
        *slot(&mut t.tunnels_active, backend) += 1;
        *slot(&mut t.tunnels_total, backend) += 1;
    }

    pub fn tunnel_closed(&self, backend: usize, lasted: Duration) {
        *slot(&mut self.tables.borrow_mut().tunnels_active, backend) -= 1;
        self.hists(|h| h.tunnel.record(lasted));
    }

    /// One finished HTTP exchange. An upgrade (101) is counted but its time is no request
    /// latency: a session's lifetime goes to the tunnel histogram (`session`, `tunnel_closed`).
    pub fn request(&self, vhost: usize, handler: HandlerKind, status: u16, took: Duration) {
        slot(&mut self.tables.borrow_mut().requests, vhost)[handler as usize][class(status)] += 1;
        if status == 101 {
            return;
        }
        self.hists(|h| h.request[handler as usize].record(took));
        if handler != HandlerKind::Admin {
            self.window
                .borrow_mut()
                .get_or_insert_with(Window::default)
                .record(clock_s(), took);
        }
    }

    /// An upgraded exchange counted when it is answered (its tunnel records its lifetime).
    pub fn upgraded(&self, vhost: usize, handler: HandlerKind, status: u16) {
        slot(&mut self.tables.borrow_mut().requests, vhost)[handler as usize][class(status)] += 1;
    }

    /// A WebSocket session Ringway ends itself (echo endpoint, HTTP/2 echo) that just ended:
    /// counted as a request, its lifetime recorded as a tunnel's.
    pub fn session(&self, vhost: usize, handler: HandlerKind, status: u16, lasted: Duration) {
        self.upgraded(vhost, handler, status);
        self.hists(|h| h.tunnel.record(lasted));
    }

    /// A message through the echo endpoint: one in, one out.
    pub fn echo_message(&self) {
        self.messages_in.set(self.messages_in.get() + 1);
        self.messages_out.set(self.messages_out.get() + 1);
    }

    /// A client-caused event (always counted; its log line may be rate-limited).
    pub fn client_error(&self, kind: Kind) {
        let c = &self.client_errors[kind as usize];
        c.set(c.get() + 1);
    }

    /// A TLS handshake on `listener` ended with `result`.
    pub fn tls_handshake(&self, listener: usize, result: Handshake, resumed: bool) {
        let mut t = self.tables.borrow_mut();
        slot(&mut t.tls_handshakes, listener)[result as usize][usize::from(resumed)] += 1;
    }

    pub fn backend_request(&self, server: usize, status: u16) {
        slot(&mut self.tables.borrow_mut().backend_requests, server)[class(status)] += 1;
    }

    pub fn backend_connected(&self, took: Duration) {
        self.hists(|h| h.backend_connect.record(took));
    }

    pub fn bad_request(&self, status: u16) {
        let mut t = self.tables.borrow_mut();
        match t.bad_requests.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => t.bad_requests.push((status, 1)),
        }
    }

    pub fn upgrade_rejected(&self, reason: Rejected) {
        self.tables.borrow_mut().upgrade_rejected[reason as usize] += 1;
    }

    /// Histograms are made on first use (a core that never records holds none).
    fn hists(&self, f: impl FnOnce(&mut Histograms)) {
        let mut h = self.hists.borrow_mut();
        let h = h.get_or_insert_with(|| Histograms {
            request: (0..HANDLERS.len()).map(|_| Latency::new()).collect(),
            backend_connect: Latency::new(),
            tunnel: Latency::new(),
        });
        f(h);
    }

    /// Tunnel mode: Ringway sent a Close with `code`.
    pub fn ws_close_sent(&self, code: u16) {
        if let Some(i) = WS_CLOSE_CODES.iter().position(|&c| c == code) {
            self.ws_closes[i].set(self.ws_closes[i].get() + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_stay_bounded_as_addresses_come_and_go() {
        // A fresh thread: its own core metrics.
        std::thread::spawn(|| {
            with(|m| {
                let first = m.server_id("chat", "10.0.0.1:9001");
                assert_eq!(m.server_id("chat", "10.0.0.1:9001"), first, "interned once");
                for i in 0..SERVER_NAMES_MAX + 100 {
                    m.server_id("chat", &format!("pod-{i}:9001"));
                }
                let other = m.server_id("chat", "one-more:9001");
                assert_eq!(m.server_id("chat", "and-another:9001"), other);
                assert_eq!(
                    m.server_id("chat", "10.0.0.1:9001"),
                    first,
                    "known names keep theirs"
                );
                assert!(m.tables.borrow().servers.names.len() <= SERVER_NAMES_MAX + 1);
            })
        })
        .join()
        .unwrap();
    }
}
