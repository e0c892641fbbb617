//! Metrics: plain per-core counters and hdrhistogram latency histograms (sans-IO).
//!
//! Each core owns one `CoreMetrics` (a thread-local: one executor per thread) and updates it
//! with plain `Cell` arithmetic: no atomics, no locks, nothing shared per request or message.
//! Names that label series (listeners, vhosts, backends, servers) are interned per core into
//! ids that never change, so a config reload keeps counting into the same series. On demand
//! (an admin request) every core copies its state into a `CoreSnapshot`, which crosses to the
//! asking core; `render` merges snapshots into Prometheus text format 0.0.4 and `live_json`
//! into the dashboard's JSON.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

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

/// Status classes `1xx`..`5xx`, by index `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

/// Bucket bounds (seconds) of the Prometheus histograms, read from the hdrhistograms.
pub const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Microseconds, 1 µs to one hour at 2 significant digits (1% resolution, plenty for buckets
/// and percentiles): about 26 KiB per histogram, 8 histograms per core. (3 digits cost about
/// 370 KiB each: measured as +0.32 KiB per idle connection in bench/compare.sh's idle test,
/// which allocates them during its measurement.)
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant histogram bounds are valid")
}

#[cfg(test)]
#[test]
fn a_histogram_stays_small() {
    // Counts array of u64: the memory a histogram holds.
    let bytes = histogram().distinct_values() * 8;
    assert!(bytes <= 32 * 1024, "{bytes} bytes");
}

/// A latency histogram with its exact sum (Prometheus `_sum`).
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
    sum_us: u64,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            hist: histogram(),
            sum_us: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn add(&mut self, other: &Latency) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Values at or below `le_s` seconds.
    fn count_le(&self, le_s: f64) -> u64 {
        let le_us = (le_s * 1e6) as u64;
        self.hist.count_between(0, le_us)
    }

    /// The value at `q` (0..1), in seconds; 0 when empty.
    pub fn quantile_s(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1e6
    }
}

/// Names to small ids, in first-seen order; ids never change.
#[derive(Clone, Default)]
struct Interner {
    names: Vec<String>,
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

/// Grows `v` so that index `id` exists.
fn slot<T: Default + Clone>(v: &mut Vec<T>, id: usize) -> &mut T {
    if v.len() <= id {
        v.resize(id + 1, T::default());
    }
    &mut v[id]
}

/// Everything one core counts, by interned id.
#[derive(Clone, Default)]
struct Tables {
    listeners: Interner,
    conns_active: Vec<i64>,
    conns_total: Vec<u64>,
    backends: Interner,
    tunnels_active: Vec<i64>,
    tunnels_total: Vec<u64>,
    /// `backend\0server`.
    servers: Interner,
    backend_requests: Vec<[u64; 5]>,
    /// Id 0 is `-` (no vhost matched).
    vhosts: Interner,
    requests: Vec<[[u64; 5]; HANDLERS.len()]>,
    bad_requests: Vec<(u16, u64)>,
    upgrade_rejected: [u64; 7],
}

#[derive(Clone)]
struct Histograms {
    request: Vec<Latency>,
    backend_connect: Latency,
    tunnel: Latency,
}

/// Close codes Ringway sends in tunnel mode (`ringway_ws_closes_sent_total{code}`).
pub const WS_CLOSE_CODES: [u16; 6] = [1000, 1001, 1002, 1007, 1009, 1011];

/// One core's metrics. Reach it with `with`.
pub struct CoreMetrics {
    /// Client-side bytes, read and written (TLS: ciphertext is not counted, plaintext is).
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    /// WebSocket frames that ended a message, client → backend and backend → client.
    pub messages_in: Cell<u64>,
    pub messages_out: Cell<u64>,
    /// Refused by the per-IP limits: connections closed, upgrades answered 429.
    pub limited_connections: Cell<u64>,
    pub limited_upgrades: Cell<u64>,
    /// Client connections closed because a write made no progress within `timeouts.send`.
    pub send_timeouts: Cell<u64>,
    /// Tunnel mode: clients closed for leaving two pings unanswered.
    pub ws_ping_timeouts: Cell<u64>,
    /// Tunnel mode: Close frames Ringway sent, by code (`WS_CLOSE_CODES`).
    ws_closes: [Cell<u64>; WS_CLOSE_CODES.len()],
    tables: RefCell<Tables>,
    hists: RefCell<Option<Histograms>>,
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
    fn new() -> CoreMetrics {
        CoreMetrics {
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            messages_in: Cell::new(0),
            messages_out: Cell::new(0),
            limited_connections: Cell::new(0),
            limited_upgrades: Cell::new(0),
            send_timeouts: Cell::new(0),
            ws_ping_timeouts: Cell::new(0),
            ws_closes: Default::default(),
            tables: RefCell::new(Tables::default()),
            hists: RefCell::new(None),
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

    /// One finished HTTP exchange (an upgrade counts when it is answered).
    pub fn request(&self, vhost: usize, handler: HandlerKind, status: u16, took: Duration) {
        slot(&mut self.tables.borrow_mut().requests, vhost)[handler as usize][class(status)] += 1;
        self.hists(|h| h.request[handler as usize].record(took));
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

    pub fn snapshot(&self, core: usize) -> CoreSnapshot {
        CoreSnapshot {
            core,
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            messages_in: self.messages_in.get(),
            messages_out: self.messages_out.get(),
            limited: [self.limited_connections.get(), self.limited_upgrades.get()],
            send_timeouts: self.send_timeouts.get(),
            pooled_bytes: 0,
            ws_ping_timeouts: self.ws_ping_timeouts.get(),
            ws_closes: std::array::from_fn(|i| self.ws_closes[i].get()),
            tables: self.tables.borrow().clone(),
            hists: self.hists.borrow().clone(),
        }
    }
}

/// One core's metrics at one moment; sent to the core that renders them.
#[derive(Clone)]
pub struct CoreSnapshot {
    pub core: usize,
    bytes_in: u64,
    bytes_out: u64,
    messages_in: u64,
    messages_out: u64,
    limited: [u64; 2],
    send_timeouts: u64,
    /// Set by the runtime when it takes the snapshot (`ringway_buffer_pool_bytes`).
    pub pooled_bytes: u64,
    ws_ping_timeouts: u64,
    ws_closes: [u64; WS_CLOSE_CODES.len()],
    tables: Tables,
    hists: Option<Histograms>,
}

impl CoreSnapshot {
    pub fn connections_active(&self) -> i64 {
        self.tables.conns_active.iter().sum()
    }

    pub fn tunnels_active(&self) -> i64 {
        self.tables.tunnels_active.iter().sum()
    }

    /// Requests answered, the admin listener's own excepted (the dashboard shows the site).
    pub fn requests_total(&self) -> u64 {
        let admin = HandlerKind::Admin as usize;
        self.tables
            .requests
            .iter()
            .flat_map(|by_handler| {
                by_handler
                    .iter()
                    .enumerate()
                    .filter(move |(h, _)| *h != admin)
                    .flat_map(|(_, by_class)| by_class.iter())
            })
            .sum()
    }

    pub fn messages_total(&self) -> u64 {
        self.messages_in + self.messages_out
    }
}

/// State kept outside the cores (health, staples, reloads), filled in by the runtime.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub version: String,
    pub generation: u64,
    pub uptime_s: f64,
    /// Unix seconds now.
    pub time_s: f64,
    pub reloads_ok: u64,
    pub reloads_error: u64,
    /// (backend, server, up) as core 0's health checks see it.
    pub backends: Vec<(String, String, bool)>,
    pub staples: Vec<StapleState>,
    /// The process's memory, read when the snapshot is taken.
    pub memory: MemoryState,
}

/// Process memory as the kernel and the allocator see it (`ringway_memory_bytes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryState {
    /// VmRSS.
    pub resident: u64,
    /// Bytes the allocator has handed out and not had back (glibc: uordblks + hblkhd).
    pub heap_in_use: u64,
    /// Bytes the allocator holds free for reuse (glibc: fordblks); resident where touched.
    pub heap_free: u64,
}

#[derive(Debug, Clone, Default)]
pub struct StapleState {
    pub vhost: String,
    pub valid: bool,
    /// Unix seconds of the staple's nextUpdate, when one is held.
    pub expiry_s: Option<u64>,
    /// (result, count): `ok`, `error`, ...
    pub fetches: Vec<(&'static str, u64)>,
}

/// Writes `# HELP` and `# TYPE` for one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped as Prometheus text needs (backslash, quote, newline).
fn esc(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn merged<'a>(cores: &'a [CoreSnapshot], pick: impl Fn(&'a Histograms) -> &'a Latency) -> Latency {
    let mut all = Latency::new();
    for h in cores.iter().filter_map(|c| c.hists.as_ref()) {
        all.add(pick(h));
    }
    all
}

/// Merges the request-duration histograms of every core and handler (the dashboard's view).
pub fn request_latency(cores: &[CoreSnapshot]) -> Latency {
    let mut all = Latency::new();
    for h in cores.iter().filter_map(|c| c.hists.as_ref()) {
        for l in &h.request {
            all.add(l);
        }
    }
    all
}

fn histogram_lines(out: &mut String, name: &str, labels: &str, l: &Latency) {
    let sep = if labels.is_empty() { "" } else { "," };
    for le in BUCKETS_S {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {}",
            l.count_le(le)
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        l.count()
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", l.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {}", l.count());
}

/// Prometheus text (format 0.0.4) of every core's snapshot and the global state.
pub fn render(cores: &[CoreSnapshot], g: &Global) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    family(
        o,
        "ringway_connections_active",
        "gauge",
        "Open client connections.",
    );
    for c in cores {
        for (id, n) in c.tables.conns_active.iter().enumerate() {
            let l = esc(&c.tables.listeners.names[id]);
            let _ = writeln!(
                o,
                "ringway_connections_active{{core=\"{}\",listener=\"{l}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_connections_total",
        "counter",
        "Client connections accepted.",
    );
    for c in cores {
        for (id, n) in c.tables.conns_total.iter().enumerate() {
            let l = esc(&c.tables.listeners.names[id]);
            let _ = writeln!(
                o,
                "ringway_connections_total{{core=\"{}\",listener=\"{l}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_tunnels_active",
        "gauge",
        "Open WebSocket tunnels.",
    );
    for c in cores {
        for (id, n) in c.tables.tunnels_active.iter().enumerate() {
            let b = esc(&c.tables.backends.names[id]);
            let _ = writeln!(
                o,
                "ringway_tunnels_active{{core=\"{}\",backend=\"{b}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_tunnels_total",
        "counter",
        "WebSocket tunnels opened.",
    );
    for c in cores {
        for (id, n) in c.tables.tunnels_total.iter().enumerate() {
            let b = esc(&c.tables.backends.names[id]);
            let _ = writeln!(
                o,
                "ringway_tunnels_total{{core=\"{}\",backend=\"{b}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_requests_total",
        "counter",
        "HTTP requests answered, by status class.",
    );
    for c in cores {
        for (vid, by_handler) in c.tables.requests.iter().enumerate() {
            let v = esc(&c.tables.vhosts.names[vid]);
            for (h, by_class) in by_handler.iter().enumerate() {
                for (k, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let _ = writeln!(
                        o,
                        "ringway_requests_total{{core=\"{}\",vhost=\"{v}\",handler=\"{}\",code=\"{}\"}} {n}",
                        c.core, HANDLERS[h], CLASSES[k]
                    );
                }
            }
        }
    }
    family(
        o,
        "ringway_bytes_total",
        "counter",
        "Client-side bytes, in (read) and out (written).",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_bytes_total{{core=\"{}\",direction=\"in\"}} {}",
            c.core, c.bytes_in
        );
        let _ = writeln!(
            o,
            "ringway_bytes_total{{core=\"{}\",direction=\"out\"}} {}",
            c.core, c.bytes_out
        );
    }
    family(
        o,
        "ringway_ws_messages_total",
        "counter",
        "WebSocket messages through tunnels (in: client to backend).",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_ws_messages_total{{core=\"{}\",direction=\"in\"}} {}",
            c.core, c.messages_in
        );
        let _ = writeln!(
            o,
            "ringway_ws_messages_total{{core=\"{}\",direction=\"out\"}} {}",
            c.core, c.messages_out
        );
    }
    family(
        o,
        "ringway_limited_total",
        "counter",
        "Refused by the per-IP limits: connections closed, upgrades answered 429.",
    );
    for c in cores {
        for (kind, n) in ["connections", "upgrades"].iter().zip(c.limited) {
            let _ = writeln!(
                o,
                "ringway_limited_total{{core=\"{}\",kind=\"{kind}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_send_timeouts_total",
        "counter",
        "Client connections closed because they accepted no data within timeouts.send.",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_send_timeouts_total{{core=\"{}\"}} {}",
            c.core, c.send_timeouts
        );
    }
    family(
        o,
        "ringway_buffer_pool_bytes",
        "gauge",
        "Bytes a core's buffer pools keep for reuse.",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_buffer_pool_bytes{{core=\"{}\"}} {}",
            c.core, c.pooled_bytes
        );
    }
    family(
        o,
        "ringway_ws_closes_sent_total",
        "counter",
        "Tunnel mode: Close frames Ringway sent to clients, by code.",
    );
    for c in cores {
        for (code, n) in WS_CLOSE_CODES.iter().zip(c.ws_closes) {
            let _ = writeln!(
                o,
                "ringway_ws_closes_sent_total{{core=\"{}\",code=\"{code}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_ws_ping_timeouts_total",
        "counter",
        "Tunnel mode: clients closed (1001) for leaving two pings unanswered.",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_ws_ping_timeouts_total{{core=\"{}\"}} {}",
            c.core, c.ws_ping_timeouts
        );
    }
    family(
        o,
        "ringway_upgrade_rejected_total",
        "counter",
        "WebSocket upgrades refused, by reason.",
    );
    for c in cores {
        for (r, n) in c.tables.upgrade_rejected.iter().enumerate() {
            let _ = writeln!(
                o,
                "ringway_upgrade_rejected_total{{core=\"{}\",reason=\"{}\"}} {n}",
                c.core, REJECT_REASONS[r]
            );
        }
    }
    family(
        o,
        "ringway_bad_requests_total",
        "counter",
        "Requests refused as malformed, by status.",
    );
    for c in cores {
        for (status, n) in &c.tables.bad_requests {
            let _ = writeln!(
                o,
                "ringway_bad_requests_total{{core=\"{}\",status=\"{status}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_backend_up",
        "gauge",
        "1 when core 0's health checks see the server up.",
    );
    for (b, s, up) in &g.backends {
        let _ = writeln!(
            o,
            "ringway_backend_up{{backend=\"{}\",server=\"{}\"}} {}",
            esc(b),
            esc(s),
            u8::from(*up)
        );
    }
    family(
        o,
        "ringway_backend_requests_total",
        "counter",
        "HTTP responses from backend servers, by status class.",
    );
    let mut by_server: Vec<(String, [u64; 5])> = Vec::new();
    for c in cores {
        for (sid, by_class) in c.tables.backend_requests.iter().enumerate() {
            let key = &c.tables.servers.names[sid];
            match by_server.iter_mut().find(|(k, _)| k == key) {
                Some((_, sum)) => sum.iter_mut().zip(by_class).for_each(|(a, b)| *a += b),
                None => by_server.push((key.clone(), *by_class)),
            }
        }
    }
    for (key, by_class) in &by_server {
        let (b, s) = key.split_once('\0').unwrap_or((key, ""));
        for (k, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = writeln!(
                o,
                "ringway_backend_requests_total{{backend=\"{}\",server=\"{}\",code=\"{}\"}} {n}",
                esc(b),
                esc(s),
                CLASSES[k]
            );
        }
    }
    family(
        o,
        "ringway_backend_connect_seconds",
        "histogram",
        "Time to connect to a backend server.",
    );
    histogram_lines(
        o,
        "ringway_backend_connect_seconds",
        "",
        &merged(cores, |h| &h.backend_connect),
    );
    family(
        o,
        "ringway_request_duration_seconds",
        "histogram",
        "From a request head to the end of its response.",
    );
    for (i, name) in HANDLERS.iter().enumerate() {
        let l = merged(cores, |h| &h.request[i]);
        histogram_lines(
            o,
            "ringway_request_duration_seconds",
            &format!("handler=\"{name}\""),
            &l,
        );
    }
    family(
        o,
        "ringway_tunnel_duration_seconds",
        "histogram",
        "Lifetime of closed WebSocket tunnels.",
    );
    histogram_lines(
        o,
        "ringway_tunnel_duration_seconds",
        "",
        &merged(cores, |h| &h.tunnel),
    );
    family(
        o,
        "ringway_ocsp_staple_valid",
        "gauge",
        "1 when a valid OCSP staple is served.",
    );
    for s in &g.staples {
        let _ = writeln!(
            o,
            "ringway_ocsp_staple_valid{{vhost=\"{}\"}} {}",
            esc(&s.vhost),
            u8::from(s.valid)
        );
    }
    family(
        o,
        "ringway_ocsp_staple_expiry_timestamp_seconds",
        "gauge",
        "nextUpdate of the served staple (unix seconds).",
    );
    for s in &g.staples {
        if let Some(t) = s.expiry_s {
            let _ = writeln!(
                o,
                "ringway_ocsp_staple_expiry_timestamp_seconds{{vhost=\"{}\"}} {t}",
                esc(&s.vhost)
            );
        }
    }
    family(
        o,
        "ringway_ocsp_fetch_total",
        "counter",
        "OCSP fetches, by result.",
    );
    for s in &g.staples {
        for (result, n) in &s.fetches {
            let _ = writeln!(
                o,
                "ringway_ocsp_fetch_total{{vhost=\"{}\",result=\"{result}\"}} {n}",
                esc(&s.vhost)
            );
        }
    }
    family(
        o,
        "ringway_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    let _ = writeln!(
        o,
        "ringway_config_reloads_total{{result=\"ok\"}} {}",
        g.reloads_ok
    );
    let _ = writeln!(
        o,
        "ringway_config_reloads_total{{result=\"error\"}} {}",
        g.reloads_error
    );
    family(
        o,
        "ringway_config_generation",
        "gauge",
        "The serving configuration's generation (1 at start).",
    );
    let _ = writeln!(o, "ringway_config_generation {}", g.generation);
    family(
        o,
        "ringway_memory_bytes",
        "gauge",
        "Process memory: resident (VmRSS), heap_in_use (allocated and live), heap_free (kept by the allocator for reuse).",
    );
    let m = &g.memory;
    for (kind, n) in [
        ("resident", m.resident),
        ("heap_in_use", m.heap_in_use),
        ("heap_free", m.heap_free),
    ] {
        let _ = writeln!(o, "ringway_memory_bytes{{kind=\"{kind}\"}} {n}");
    }
    family(
        o,
        "ringway_build_info",
        "gauge",
        "Always 1; the version is the label.",
    );
    let _ = writeln!(o, "ringway_build_info{{version=\"{}\"}} 1", esc(&g.version));
    out
}

/// A JSON string literal.
fn json_str(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The dashboard's snapshot (see `src/admin/dashboard.html`).
pub fn live_json(cores: &[CoreSnapshot], g: &Global) -> String {
    let mut o = String::with_capacity(2048);
    let _ = write!(
        o,
        "{{\"version\":{},\"generation\":{},\"time\":{:.3},\"uptime_s\":{:.1},\"cores\":[",
        json_str(&g.version),
        g.generation,
        g.time_s,
        g.uptime_s
    );
    for (i, c) in cores.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"core\":{},\"connections_active\":{},\"tunnels_active\":{},\"requests_total\":{},\"messages_total\":{}}}",
            if i > 0 { "," } else { "" },
            c.core,
            c.connections_active(),
            c.tunnels_active(),
            c.requests_total(),
            c.messages_total()
        );
    }
    let l = request_latency(cores);
    let _ = write!(
        o,
        "],\"latency\":{{\"count\":{},\"p50_s\":{},\"p90_s\":{},\"p99_s\":{},\"histogram\":[",
        l.count(),
        l.quantile_s(0.5),
        l.quantile_s(0.9),
        l.quantile_s(0.99)
    );
    for le in BUCKETS_S {
        let _ = write!(o, "{{\"le\":{le},\"count\":{}}},", l.count_le(le));
    }
    let _ = write!(
        o,
        "{{\"le\":\"+Inf\",\"count\":{}}}]}},\"backends\":[",
        l.count()
    );
    for (i, (b, s, up)) in g.backends.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"backend\":{},\"server\":{},\"up\":{up}}}",
            if i > 0 { "," } else { "" },
            json_str(b),
            json_str(s)
        );
    }
    o.push_str("],\"staples\":[");
    for (i, s) in g.staples.iter().enumerate() {
        let expiry = s.expiry_s.map_or("null".to_string(), |t| t.to_string());
        let _ = write!(
            o,
            "{}{{\"vhost\":{},\"valid\":{},\"expiry\":{expiry}}}",
            if i > 0 { "," } else { "" },
            json_str(&s.vhost),
            s.valid
        );
    }
    o.push_str("]}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `name{labels} value` lines into (series, value), checking every family has
    /// HELP and TYPE before its samples.
    fn samples(text: &str) -> Vec<(String, f64)> {
        let mut typed: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| typed.iter().any(|t| t == b))
                })
                .unwrap_or(name);
            assert!(typed.iter().any(|t| t == base), "{name} has no TYPE line");
            out.push((series.to_string(), value.parse().unwrap()));
        }
        out
    }

    fn value(s: &[(String, f64)], series: &str) -> f64 {
        s.iter()
            .find(|(k, _)| k == series)
            .unwrap_or_else(|| panic!("no {series}"))
            .1
    }

    #[test]
    fn counts_render_per_core_and_histograms_merge() {
        let m = CoreMetrics::new();
        let ids = m.ids(
            ["main", "admin"].into_iter(),
            [("chat", vec!["127.0.0.1:9001".to_string()])].into_iter(),
            ["site"].into_iter(),
        );
        // A second generation renames nothing: the same ids come back.
        let again = m.ids(
            ["admin"].into_iter(),
            std::iter::empty(),
            ["site"].into_iter(),
        );
        assert_eq!(again.listeners, vec![ids.listeners[1]]);
        m.connection_opened(ids.listeners[0]);
        m.connection_opened(ids.listeners[0]);
        m.connection_closed(ids.listeners[0]);
        m.request(
            ids.vhosts[0],
            HandlerKind::Proxy,
            200,
            Duration::from_micros(300),
        );
        m.request(
            ids.vhosts[0],
            HandlerKind::Proxy,
            503,
            Duration::from_millis(3),
        );
        m.request(NO_VHOST, HandlerKind::Error, 404, Duration::from_micros(10));
        m.backend_request(ids.servers[0][0], 200);
        m.tunnel_opened(ids.backends[0]);
        m.bad_request(400);
        m.bad_request(400);
        m.upgrade_rejected(Rejected::BadAccept);
        m.bytes_in.set(100);
        let a = m.snapshot(0);
        let mut b = a.clone();
        b.core = 1;
        let g = Global {
            version: "0.1.0".into(),
            generation: 2,
            backends: vec![("chat".into(), "127.0.0.1:9001".into(), false)],
            ..Global::default()
        };
        let text = render(&[a, b], &g);
        let s = samples(&text);
        assert_eq!(
            value(
                &s,
                "ringway_connections_active{core=\"0\",listener=\"main\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_connections_total{core=\"1\",listener=\"main\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_requests_total{core=\"0\",vhost=\"site\",handler=\"proxy\",code=\"5xx\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_requests_total{core=\"0\",vhost=\"-\",handler=\"error\",code=\"4xx\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&s, "ringway_bytes_total{core=\"0\",direction=\"in\"}"),
            100.0
        );
        assert_eq!(
            value(&s, "ringway_tunnels_active{core=\"0\",backend=\"chat\"}"),
            1.0
        );
        assert_eq!(
            value(&s, "ringway_bad_requests_total{core=\"1\",status=\"400\"}"),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_upgrade_rejected_total{core=\"0\",reason=\"bad_accept\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_backend_up{backend=\"chat\",server=\"127.0.0.1:9001\"}"
            ),
            0.0
        );
        // Backend requests merge over cores (no core label).
        assert_eq!(
            value(&s, "ringway_backend_requests_total{backend=\"chat\",server=\"127.0.0.1:9001\",code=\"2xx\"}"),
            2.0
        );
        // Histograms: two cores' 300 µs and 3 ms requests.
        let h = "ringway_request_duration_seconds";
        assert_eq!(
            value(
                &s,
                &format!("{h}_bucket{{handler=\"proxy\",le=\"0.0005\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                &s,
                &format!("{h}_bucket{{handler=\"proxy\",le=\"0.0025\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(&s, &format!("{h}_bucket{{handler=\"proxy\",le=\"0.005\"}}")),
            4.0
        );
        assert_eq!(
            value(&s, &format!("{h}_bucket{{handler=\"proxy\",le=\"+Inf\"}}")),
            4.0
        );
        assert_eq!(value(&s, &format!("{h}_count{{handler=\"proxy\"}}")), 4.0);
        assert!((value(&s, &format!("{h}_sum{{handler=\"proxy\"}}")) - 0.0066).abs() < 1e-9);
        assert_eq!(value(&s, "ringway_config_generation"), 2.0);
        assert_eq!(value(&s, "ringway_build_info{version=\"0.1.0\"}"), 1.0);
        // Buckets never decrease.
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(k, _)| {
                k.starts_with("ringway_request_duration_seconds_bucket{handler=\"proxy\"")
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn labels_and_json_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(json_str("x\"y\u{1}"), "\"x\\\"y\\u0001\"");
        let g = Global {
            staples: vec![StapleState {
                vhost: "v".into(),
                valid: true,
                expiry_s: Some(5),
                fetches: vec![("ok", 1)],
            }],
            ..Global::default()
        };
        let j = live_json(&[], &g);
        assert!(
            j.contains("\"staples\":[{\"vhost\":\"v\",\"valid\":true,\"expiry\":5}]"),
            "{j}"
        );
        assert!(j.starts_with('{') && j.ends_with('}'));
    }
}
