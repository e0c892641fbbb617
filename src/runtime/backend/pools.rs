//! Per-core backend state: balancing (`balance::Pool`), idle keep-alive connections, and each
//! server's identity, address and active-health flag, reconciled with the server sets the
//! control plane publishes (`servers::ServerSets`, DNS discovery and admin states) by `apply`.
//! Active health is one `AtomicBool` per server, written by the health-checking core (`Checks`)
//! and read lock-free by every core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use crate::config::tls::Connector;
use crate::config::{Config, Health, SendProxy};
use crate::policy::balance::{Balance, Pool, Sticky, Tried};
use crate::policy::sticky;
use crate::policy::upstream::Address;
use crate::runtime::backend::servers::{Published, ServerSets};
use crate::runtime::backend::upstream::{connect, Upstream};

/// A backend connection handed to one exchange.
pub struct Lease {
    pub backend: usize,
    pub server: usize,
    pub conn: Upstream,
    /// Taken from the keep-alive pool (it may have been closed by the backend meanwhile).
    pub reused: bool,
}

/// One server in a core's pool: what the published set says of it, and its idle connections.
struct Slot {
    key: Arc<str>,
    /// `sticky::server_id` of `key` under the backend's `sticky_secret` (its cookie value).
    id: Rc<str>,
    address: Address,
    /// `IP:port` as a backend writes it in `Location`.
    authority: Rc<str>,
    /// Its name in the access log: `IP:port`, or `uds:///path` for a Unix-socket server.
    log_name: Rc<str>,
    up: Arc<AtomicBool>,
    /// This core's metric id for `backend\0key`.
    metric: usize,
    /// Idle keep-alive connections, with when each went idle; newest last.
    idle: Vec<(Upstream, Instant)>,
}

/// One backend on one core: the balancer and its servers, slot for slot.
struct Side {
    pool: Pool,
    slots: Vec<Slot>,
}

pub struct Backends {
    config: Arc<Config>,
    sides: Vec<RefCell<Side>>,
    /// Per backend: how to reach its `tls://` servers.
    connectors: Vec<Option<Connector>>,
}

/// Why no backend connection could be had; maps to the client's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// Every server is down (active or passive health) or out of balancing: 503.
    AllDown,
    /// The backend has no servers at all (a name that has not resolved): 503 `no servers`.
    Empty,
    /// Every attempt failed: 502 (refused/unreachable) or 504 (timed out).
    Failed(u16),
}

impl NoServer {
    pub fn status(self) -> u16 {
        match self {
            NoServer::AllDown | NoServer::Empty => 503,
            NoServer::Failed(s) => s,
        }
    }

    /// The response body's text, where it says more than the status line.
    pub fn text(self) -> Option<&'static str> {
        (self == NoServer::Empty).then_some("no servers")
    }
}

impl Backends {
    pub fn new(config: Arc<Config>, sets: &ServerSets, seed: u64) -> Result<Backends, String> {
        let connectors = connectors(&config)?;
        let sides = config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let seed = seed ^ (i as u64).wrapping_mul(0x9E37);
                RefCell::new(Side {
                    pool: Pool::new(b.balance_settings(), [], seed),
                    slots: Vec::new(),
                })
            })
            .collect();
        let backends = Backends {
            config,
            sides,
            connectors,
        };
        backends.apply(sets);
        Ok(backends)
    }

    /// Reconciles every backend with a published set: servers that remain keep their state
    /// (connections, passive health), new ones join, removed ones take no new connections and
    /// lose their idle ones; their slots are reused once their last lease ends.
    pub fn apply(&self, sets: &ServerSets) {
        for (bi, b) in self.config.backends.iter().enumerate() {
            let empty = Vec::new();
            let published = sets.backend(&b.name).map_or(&empty, |s| &s.servers);
            let mut side = self.sides[bi].borrow_mut();
            let side = &mut *side;
            for i in 0..side.slots.len() {
                let keep =
                    side.pool.present(i) && published.iter().any(|p| p.key == side.slots[i].key);
                if !keep && side.pool.present(i) {
                    side.pool.remove(i);
                    side.slots[i].idle.clear();
                }
            }
            for p in published {
                let found = (0..side.slots.len())
                    .find(|&i| side.pool.present(i) && side.slots[i].key == p.key);
                let i = match found {
                    Some(i) => {
                        side.pool.set_weight(i, p.weight);
                        i
                    }
                    None => {
                        let i = side.pool.add(p.weight);
                        let mut slot = slot(&b.name, p);
                        if matches!(b.balance, Balance::Cookie | Balance::Hash) {
                            let id = sticky::server_id(b.sticky_secret.as_bytes(), &p.key);
                            side.pool.set_id_hash(i, sticky::id_hash(&id));
                            slot.id = id.into();
                        }
                        if i == side.slots.len() {
                            side.slots.push(slot);
                        } else {
                            side.slots[i] = slot;
                        }
                        i
                    }
                };
                side.pool.set_usable(i, p.usable);
                if !p.usable {
                    side.slots[i].idle.clear();
                }
            }
        }
    }

    /// Per backend, per server in the set: (backend name, server key, active connections).
    pub fn active(&self) -> Vec<(String, Arc<str>, u32)> {
        let mut out = Vec::new();
        for (bi, b) in self.config.backends.iter().enumerate() {
            let side = self.sides[bi].borrow();
            for (i, slot) in side.slots.iter().enumerate() {
                if side.pool.present(i) {
                    out.push((b.name.clone(), slot.key.clone(), side.pool.active(i)));
                }
            }
        }
        out
    }

    /// How server `server` of `backend` names itself (`127.0.0.1:9001`, `[::1]:9002`).
    pub fn authority(&self, backend: usize, server: usize) -> Rc<str> {
        self.sides[backend].borrow().slots[server].authority.clone()
    }

    /// How the access log names the server: `IP:port`, or `uds:///path` for a Unix-socket
    /// server (which has no authority).
    pub fn log_name(&self, backend: usize, server: usize) -> Rc<str> {
        self.sides[backend].borrow().slots[server].log_name.clone()
    }

    /// (backend, server key) pairs this core's passive health has taken out now (for
    /// `/metrics` and the dashboard).
    pub fn passive_out(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (bi, b) in self.config.backends.iter().enumerate() {
            let side = self.sides[bi].borrow();
            for (i, slot) in side.slots.iter().enumerate() {
                if side.pool.present(i) && !side.pool.passively_up(i, now) {
                    out.push((b.name.clone(), slot.key.to_string()));
                }
            }
        }
        out
    }

    /// What a request brings to `backend`'s choice: its `hash_key` (`balance = "hash"`) or its
    /// sticky cookie (`balance = "cookie"`); `Sticky::None` for other backends, without
    /// looking at the request.
    pub fn sticky_of(&self, backend: usize, req: &sticky::RequestParts<'_>) -> Sticky {
        let b = &self.config.backends[backend];
        match b.balance {
            Balance::Hash => Sticky::Key(
                b.hash_key
                    .as_ref()
                    .and_then(|k| sticky::key_of(k, req))
                    .map(sticky::key_hash),
            ),
            Balance::Cookie => Sticky::Cookie(
                sticky::cookie_value(req.headers, b.sticky_cookie.as_bytes())
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(sticky::id_hash),
            ),
            _ => Sticky::None,
        }
    }

    /// The sticky cookie's name when `backend` is `balance = "cookie"` (it is removed from
    /// what the backend sees).
    pub fn sticky_cookie(&self, backend: usize) -> Option<&str> {
        let b = &self.config.backends[backend];
        (b.balance == Balance::Cookie).then_some(b.sticky_cookie.as_str())
    }

    /// The `Set-Cookie` value for a response from `server` when the request did not already
    /// carry its cookie (`balance = "cookie"` only).
    pub fn set_cookie(
        &self,
        backend: usize,
        server: usize,
        had: Sticky,
        secure: bool,
    ) -> Option<String> {
        let b = &self.config.backends[backend];
        if b.balance != Balance::Cookie {
            return None;
        }
        let side = self.sides[backend].borrow();
        if had == Sticky::Cookie(Some(side.pool.id_hash(server))) {
            return None;
        }
        Some(sticky::set_cookie(
            &b.sticky_cookie,
            &side.slots[server].id,
            secure,
        ))
    }

    /// The server's identity: its literal address, or `name:port (address)`.
    pub fn key(&self, backend: usize, server: usize) -> Arc<str> {
        self.sides[backend].borrow().slots[server].key.clone()
    }

    /// This core's metric id for the server.
    pub fn metric(&self, backend: usize, server: usize) -> usize {
        self.sides[backend].borrow().slots[server].metric
    }

    fn connector(&self, backend: usize) -> Option<&Connector> {
        self.connectors[backend].as_ref()
    }

    pub fn name(&self, backend: usize) -> &str {
        &self.config.backends[backend].name
    }

    /// A connection to a server of `backend`: an idle pooled one if `pooled` allows and one
    /// exists, else a new connect. Connect failures count against the server (passive health)
    /// and move on to another server, at most `retries` more times; `tried` collects the
    /// servers attempted (the caller passes it back for its own retries).
    pub async fn acquire(
        &self,
        backend: usize,
        client: IpAddr,
        tried: &mut Tried,
        pooled: bool,
    ) -> Result<Lease, NoServer> {
        let limit = self.config.timeouts.connect;
        self.acquire_within(backend, client, Sticky::None, tried, pooled, limit)
            .await
    }

    /// `acquire` with a connect timeout of its own (a route's `timeouts.connect`).
    pub async fn acquire_within(
        &self,
        backend: usize,
        client: IpAddr,
        sticky: Sticky,
        tried: &mut Tried,
        pooled: bool,
        connect_timeout: std::time::Duration,
    ) -> Result<Lease, NoServer> {
        let b = &self.config.backends[backend];
        let mut status = None;
        while tried.attempts() <= b.retries as usize {
            let now = Instant::now();
            let picked = {
                let mut side = self.sides[backend].borrow_mut();
                let side = &mut *side;
                let slots = &side.slots;
                side.pool.pick(
                    client,
                    sticky,
                    tried.as_slice(),
                    |s| slots[s].up.load(Ordering::Relaxed),
                    now,
                )
            };
            let Some(server) = picked else { break };
            tried.push(server);
            if pooled {
                if let Some(conn) = self.take_idle(backend, server) {
                    self.sides[backend].borrow_mut().pool.begin(server);
                    return Ok(Lease {
                        backend,
                        server,
                        conn,
                        reused: true,
                    });
                }
            }
            let tls = self.connector(backend);
            let started = Instant::now();
            let address = self.sides[backend].borrow().slots[server].address.clone();
            // Counted from now: a server that leaves the set while this connect is in flight
            // keeps its slot (slots are reused only once nothing holds them).
            self.sides[backend].borrow_mut().pool.begin(server);
            match connect(&address, connect_timeout, tls).await {
                Ok(conn) => {
                    crate::observe::metrics::with(|m| m.backend_connected(started.elapsed()));
                    return Ok(Lease {
                        backend,
                        server,
                        conn,
                        reused: false,
                    });
                }
                Err(e) => {
                    self.sides[backend].borrow_mut().pool.end(server);
                    warn!(backend = %b.name, server = %self.key(backend, server), error = %e, "backend connect failed");
                    status = Some(e.status());
                    self.failed(backend, server);
                }
            }
        }
        if status.is_none() && !self.has_servers(backend) {
            return Err(NoServer::Empty);
        }
        Err(status.map_or(NoServer::AllDown, NoServer::Failed))
    }

    /// Whether the backend's set has any server (in any state).
    fn has_servers(&self, backend: usize) -> bool {
        let side = self.sides[backend].borrow();
        (0..side.slots.len()).any(|i| side.pool.present(i))
    }

    /// A fresh connection to the same server as a lease whose pooled connection was stale.
    pub async fn reconnect(&self, lease: &mut Lease) -> Result<(), u16> {
        let started = Instant::now();
        let address = self.sides[lease.backend].borrow().slots[lease.server]
            .address
            .clone();
        match connect(
            &address,
            self.config.timeouts.connect,
            self.connector(lease.backend),
        )
        .await
        {
            Ok(conn) => {
                crate::observe::metrics::with(|m| m.backend_connected(started.elapsed()));
                lease.conn = conn;
                lease.reused = false;
                Ok(())
            }
            Err(e) => Err(e.status()),
        }
    }

    fn take_idle(&self, backend: usize, server: usize) -> Option<Upstream> {
        let max_age = self.config.timeouts.upstream_keepalive;
        let mut side = self.sides[backend].borrow_mut();
        let idle = &mut side.slots[server].idle;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < max_age && still_open(&conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Whether connections to `backend` may be pooled: not with `send_proxy` (a connection
    /// carries one client's address).
    pub fn poolable(&self, backend: usize) -> bool {
        self.config.backends[backend].send_proxy.is_none()
    }

    /// `send_proxy`: writes the PROXY header first on a fresh connection (before the request).
    pub async fn introduce(
        &self,
        lease: &mut Lease,
        client: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> std::io::Result<()> {
        let Some(version) = self.config.backends[lease.backend].send_proxy else {
            return Ok(());
        };
        if lease.reused {
            return Ok(());
        }
        let mut header = Vec::with_capacity(64);
        match version {
            SendProxy::V1 => crate::protocol::proxy_protocol::write_v1(&mut header, client, local),
            SendProxy::V2 => crate::protocol::proxy_protocol::write_v2(&mut header, client, local),
        }
        lease.conn.write_all(&header).await
    }

    /// Ends a lease; a connection that can carry another request goes back to the pool (not
    /// when its server left the set or stopped taking connections).
    pub fn release(&self, lease: Lease, reusable: bool) {
        let mut side = self.sides[lease.backend].borrow_mut();
        let side = &mut *side;
        side.pool.end(lease.server);
        let cap = self.config.backends[lease.backend].keepalive_per_server;
        let open = side.pool.usable(lease.server);
        if reusable && open && cap > 0 && self.poolable(lease.backend) {
            let idle = &mut side.slots[lease.server].idle;
            if idle.len() >= cap {
                idle.remove(0);
            }
            // The finished exchange's task must not stay referenced by the idle connection.
            lease.conn.forget_read_wakers();
            idle.push((lease.conn, Instant::now()));
        }
    }

    pub fn failed(&self, backend: usize, server: usize) {
        let out = self.sides[backend]
            .borrow_mut()
            .pool
            .failed(server, Instant::now());
        if out {
            let b = &self.config.backends[backend];
            warn!(backend = %b.name, server = %self.key(backend, server), fail_timeout = ?b.fail_timeout, "server taken out after repeated failures");
        }
    }

    pub fn succeeded(&self, backend: usize, server: usize) {
        self.sides[backend].borrow_mut().pool.succeeded(server);
    }

    /// Closes idle pooled connections older than `timeouts.upstream_keepalive`.
    pub fn sweep_idle(&self) {
        let max_age = self.config.timeouts.upstream_keepalive;
        for side in &self.sides {
            for slot in &mut side.borrow_mut().slots {
                slot.idle.retain(|(_, since)| since.elapsed() < max_age);
            }
        }
    }
}

fn slot(backend: &str, p: &Published) -> Slot {
    Slot {
        key: p.key.clone(),
        id: Rc::from(""),
        address: p.address.clone(),
        authority: authority(&p.address).into(),
        log_name: match &p.address {
            Address::Unix(_) => p.address.to_string().into(),
            _ => authority(&p.address).into(),
        },
        up: p.up.clone(),
        metric: crate::observe::metrics::with(|m| m.server_id(backend, &p.key)),
        idle: Vec::new(),
    }
}

/// A non-blocking peek: a pooled TCP connection whose backend closed it reads EOF (or an
/// error) at once, and is dropped instead of being handed out.
fn still_open(conn: &Upstream) -> bool {
    let Upstream::Tcp(s) = conn else { return true };
    // Its readiness poll has reported nothing since the response was read to the end: the probe
    // would find it quiet too (a FIN whose completion the reactor has not reaped yet is caught
    // as a stale connection by the exchange, and retried).
    if s.is_read_quiet() {
        return true;
    }
    let mut byte = [0u8; 1];
    // SAFETY: the fd is open for the lifetime of `s`, and the buffer is valid for 1 byte.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    // -1 with EAGAIN: open and quiet (the only good answer). 0: EOF. >0: unsolicited bytes.
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

fn authority(address: &Address) -> String {
    match address {
        Address::Tcp(a) | Address::Tls(a) => a.to_string(),
        // A Unix-socket backend has no authority a client could be sent to (and a name is
        // never published unresolved).
        Address::Unix(_) | Address::Name { .. } | Address::Srv(_) => String::new(),
    }
}

/// One TLS connector per backend with `tls` settings.
fn connectors(config: &Config) -> Result<Vec<Option<Connector>>, String> {
    config
        .backends
        .iter()
        .map(|b| {
            b.tls
                .as_ref()
                .map(|t| {
                    crate::config::tls::connector(t).map_err(|e| format!("backend {}: {e}", b.name))
                })
                .transpose()
        })
        .collect()
}

/// The active health checks of the health-checking core (core 0): one task per published
/// server of every backend with `health`, started when the server joins, ended when it leaves;
/// all started again when the configuration changes.
#[derive(Default)]
pub struct Checks {
    config: Option<Arc<Config>>,
    connectors: Vec<Option<Connector>>,
    tasks: HashMap<(String, Arc<str>), glommio::Task<()>>,
}

impl Checks {
    /// A new configuration: every check starts again under its settings.
    pub fn restart(&mut self, config: &Arc<Config>, sets: &ServerSets) {
        self.tasks.clear();
        self.connectors = connectors(config).unwrap_or_default();
        self.config = Some(config.clone());
        self.sync(sets);
    }

    /// Starts checks for servers that joined, ends those of servers that left.
    pub fn sync(&mut self, sets: &ServerSets) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let mut wanted = Vec::new();
        for (bi, b) in config.backends.iter().enumerate() {
            let (Some(h), Some(set)) = (&b.health, sets.backend(&b.name)) else {
                continue;
            };
            for p in &set.servers {
                wanted.push((b.name.clone(), p.key.clone()));
                let id = (b.name.clone(), p.key.clone());
                if self.tasks.contains_key(&id) {
                    continue;
                }
                let tls = self.connectors.get(bi).cloned().flatten();
                let task =
                    glommio::spawn_local(check_server(b.name.clone(), p.clone(), h.clone(), tls));
                self.tasks.insert(id, task);
            }
        }
        self.tasks.retain(|id, _| wanted.contains(id));
    }
}

async fn check_server(backend: String, server: Published, h: Health, tls: Option<Connector>) {
    let address = &server.address;
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    loop {
        let ok = future::or(probe(address, &h, tls.as_ref()), async {
            glommio::timer::sleep(h.timeout).await;
            false
        })
        .await;
        let up = server.is_up();
        if ok {
            ok_run += 1;
            fail_run = 0;
        } else {
            fail_run += 1;
            ok_run = 0;
        }
        if up && fail_run >= h.fall {
            server.up.store(false, Ordering::Relaxed);
            warn!(backend = %backend, server = %server.key, "health check: server down");
        } else if !up && ok_run >= h.rise {
            server.up.store(true, Ordering::Relaxed);
            info!(backend = %backend, server = %server.key, "health check: server up");
        }
        glommio::timer::sleep(h.interval).await;
    }
}

/// One probe: TCP connect, and with `http_path` a GET answered 2xx or 3xx.
async fn probe(address: &Address, h: &Health, tls: Option<&Connector>) -> bool {
    let Ok(mut conn) = connect(address, h.timeout, tls).await else {
        return false;
    };
    let Some(path) = &h.http_path else {
        return true;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: ringway-health\r\nConnection: close\r\n\r\n");
    if conn.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 32];
    let mut got = 0;
    while got < 12 {
        match conn.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    // "HTTP/1.x 2xx" or "HTTP/1.x 3xx".
    buf.starts_with(b"HTTP/1.") && matches!(buf[9], b'2' | b'3')
}

/// How often each core closes expired idle pooled connections.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
