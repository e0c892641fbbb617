//! Snapshots and merging: a core copies its state into a `CoreSnapshot` (on demand, for an
//! admin request) which crosses to the asking core; the state kept outside the cores
//! (`Global`) comes with it; histograms of several cores merge into one `Latency`.

use super::core::{CoreMetrics, HandlerKind, Tables, WS_CLOSE_CODES};
use super::histogram::{Histograms, Latency, Window};
use crate::observe::loglimit::KINDS;

impl CoreMetrics {
    pub fn snapshot(&self, core: usize) -> CoreSnapshot {
        CoreSnapshot {
            core,
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            messages_in: self.messages_in.get(),
            messages_out: self.messages_out.get(),
            spliced_bytes: self.spliced_bytes.get(),
            limited: [self.limited_connections.get(), self.limited_upgrades.get()],
            send_timeouts: self.send_timeouts.get(),
            pooled_bytes: 0,
            passive_out: Vec::new(),
            settings: None,
            ws_ping_timeouts: self.ws_ping_timeouts.get(),
            ws_closes: std::array::from_fn(|i| self.ws_closes[i].get()),
            client_errors: std::array::from_fn(|i| self.client_errors[i].get()),
            tables: self.tables.borrow().clone(),
            hists: self.hists.borrow().clone(),
            window: self.window.borrow().clone(),
        }
    }
}

/// One core's metrics at one moment; sent to the core that renders them.
#[derive(Clone)]
pub struct CoreSnapshot {
    pub core: usize,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) messages_in: u64,
    pub(super) messages_out: u64,
    pub(super) spliced_bytes: u64,
    pub(super) limited: [u64; 2],
    pub(super) send_timeouts: u64,
    /// Set by the runtime when it takes the snapshot (`ringway_buffer_pool_bytes`).
    pub pooled_bytes: u64,
    /// Set by the runtime: (backend, server key) pairs of the core's current configuration
    /// that its passive health has taken out now.
    pub passive_out: Vec<(String, String)>,
    /// Set by the runtime: the core's `[[runtime.core]]` settings (the dashboard shows them).
    pub settings: Option<crate::config::cores::CoreSettings>,
    pub(super) ws_ping_timeouts: u64,
    pub(super) ws_closes: [u64; WS_CLOSE_CODES.len()],
    pub(super) client_errors: [u64; KINDS.len()],
    pub(super) tables: Tables,
    pub(super) hists: Option<Histograms>,
    pub(super) window: Option<Window>,
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
    /// `histogram::clock_s` now: the end of the dashboard's latency window.
    pub clock_s: u64,
    /// Every server as the health checks see it.
    pub backends: Vec<ServerState>,
    pub staples: Vec<StapleState>,
    /// (vhost, notAfter of its certificate in unix seconds), every TLS vhost.
    pub certificates: Vec<(String, u64)>,
    /// The process as /proc says (`process_*`), read when the snapshot is taken.
    pub process: ProcessState,
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

/// One server's health as Ringway knows it.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    /// `Some(up)` from active health checks (core 0's); `None`: the backend has none.
    pub checked: Option<bool>,
    /// Cores on which passive checks (failed requests) have taken the server out now.
    pub passive_out: usize,
}

impl ServerState {
    /// The dashboard's word: `up`, `down` (active checks), or `unchecked` (no active checks;
    /// passive checks may still have taken it out, `passive_out`).
    pub fn state(&self) -> &'static str {
        match self.checked {
            Some(true) => "up",
            Some(false) => "down",
            None => "unchecked",
        }
    }
}

/// `process_*` figures (the Prometheus client libraries' standard family).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessState {
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_s: f64,
    pub threads: u64,
}

#[derive(Debug, Clone, Default)]
pub struct StapleState {
    pub vhost: String,
    /// The vhost has `[vhost.tls.ocsp]`; without it nothing is said of its staple.
    pub configured: bool,
    pub valid: bool,
    /// Unix seconds of the staple's nextUpdate, when one is held.
    pub expiry_s: Option<u64>,
    /// (result, count): `ok`, `error`, ...
    pub fetches: Vec<(&'static str, u64)>,
}

pub(super) fn merged<'a>(
    cores: &'a [CoreSnapshot],
    pick: impl Fn(&'a Histograms) -> &'a Latency,
) -> Latency {
    let mut all = Latency::new();
    for h in cores.iter().filter_map(|c| c.hists.as_ref()) {
        all.add(pick(h));
    }
    all
}

/// The dashboard's request latency: every core's last minute (as of `now_s` on
/// `histogram::clock_s`), WebSocket and echo sessions and admin requests excepted.
pub fn request_latency(cores: &[CoreSnapshot], now_s: u64) -> Latency {
    let mut all = Latency::new();
    for w in cores.iter().filter_map(|c| c.window.as_ref()) {
        w.add_to(now_s, &mut all);
    }
    all
}
