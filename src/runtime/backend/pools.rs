//! Per-core backend state: balancing (`balance::Pool`), idle keep-alive connections, and the
//! health table that one core's active checks publish to all (atomics: no locks on the request
//! path, and the cache line changes only when a server changes state).

use std::cell::RefCell;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use crate::config::tls::Connector;
use crate::config::{Backend, Config, Health, SendProxy};
use crate::policy::balance::{Pool, Tried};
use crate::runtime::backend::upstream::{connect, Upstream};

/// Up/down per server per backend, written by the health-checking core only.
pub struct HealthTable {
    up: Vec<Vec<AtomicBool>>,
}

impl HealthTable {
    pub fn new(config: &Config) -> HealthTable {
        HealthTable {
            up: config
                .backends
                .iter()
                .map(|b| b.servers.iter().map(|_| AtomicBool::new(true)).collect())
                .collect(),
        }
    }

    pub fn is_up(&self, backend: usize, server: usize) -> bool {
        self.up[backend][server].load(Ordering::Relaxed)
    }
}

/// A backend connection handed to one exchange.
pub struct Lease {
    pub backend: usize,
    pub server: usize,
    pub conn: Upstream,
    /// Taken from the keep-alive pool (it may have been closed by the backend meanwhile).
    pub reused: bool,
}

/// Idle keep-alive connections to one server, with when each went idle; newest last.
type IdleList = RefCell<Vec<(Upstream, Instant)>>;

pub struct Backends {
    config: Arc<Config>,
    health: Arc<HealthTable>,
    pools: Vec<RefCell<Pool>>,
    /// Per backend: how to reach its `tls://` servers.
    connectors: Vec<Option<Connector>>,
    /// Per backend, per server: `IP:port` as a backend writes it in `Location`.
    authorities: Vec<Vec<String>>,
    /// Idle keep-alive connections, per backend, per server.
    idle: Vec<Vec<IdleList>>,
}

/// Why no backend connection could be had; maps to the client's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// Every server is down (active or passive health): 503.
    AllDown,
    /// Every attempt failed: 502 (refused/unreachable) or 504 (timed out).
    Failed(u16),
}

impl NoServer {
    pub fn status(self) -> u16 {
        match self {
            NoServer::AllDown => 503,
            NoServer::Failed(s) => s,
        }
    }
}

impl Backends {
    pub fn new(
        config: Arc<Config>,
        health: Arc<HealthTable>,
        seed: u64,
    ) -> Result<Backends, String> {
        let connectors = connectors(&config)?;
        let pools = config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let weights = b.servers.iter().map(|s| s.weight);
                let seed = seed ^ (i as u64).wrapping_mul(0x9E37);
                RefCell::new(Pool::new(b.balance_settings(), weights, seed))
            })
            .collect();
        let idle = config
            .backends
            .iter()
            .map(|b| b.servers.iter().map(|_| RefCell::new(Vec::new())).collect())
            .collect();
        let authorities = config
            .backends
            .iter()
            .map(|b| b.servers.iter().map(|s| authority(&s.address)).collect())
            .collect();
        Ok(Backends {
            config,
            health,
            pools,
            connectors,
            authorities,
            idle,
        })
    }

    /// How server `server` of `backend` names itself (`127.0.0.1:9001`, `[::1]:9002`).
    pub fn authority(&self, backend: usize, server: usize) -> &str {
        &self.authorities[backend][server]
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
        self.acquire_within(backend, client, tried, pooled, limit)
            .await
    }

    /// `acquire` with a connect timeout of its own (a route's `timeouts.connect`).
    pub async fn acquire_within(
        &self,
        backend: usize,
        client: IpAddr,
        tried: &mut Tried,
        pooled: bool,
        connect_timeout: std::time::Duration,
    ) -> Result<Lease, NoServer> {
        let b = &self.config.backends[backend];
        let mut status = None;
        while tried.attempts() <= b.retries as usize {
            let now = Instant::now();
            let picked = self.pools[backend].borrow_mut().pick(
                client,
                tried.as_slice(),
                |s| self.health.is_up(backend, s),
                now,
            );
            let Some(server) = picked else { break };
            tried.push(server);
            if pooled {
                if let Some(conn) = self.take_idle(backend, server) {
                    self.pools[backend].borrow_mut().begin(server);
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
            match connect(&b.servers[server].address, connect_timeout, tls).await {
                Ok(conn) => {
                    crate::observe::metrics::with(|m| m.backend_connected(started.elapsed()));
                    self.pools[backend].borrow_mut().begin(server);
                    return Ok(Lease {
                        backend,
                        server,
                        conn,
                        reused: false,
                    });
                }
                Err(e) => {
                    warn!(backend = %b.name, server = %b.servers[server].address, error = %e, "backend connect failed");
                    status = Some(e.status());
                    self.failed(backend, server);
                }
            }
        }
        Err(status.map_or(NoServer::AllDown, NoServer::Failed))
    }

    /// A fresh connection to the same server as a lease whose pooled connection was stale.
    pub async fn reconnect(&self, lease: &mut Lease) -> Result<(), u16> {
        let b = &self.config.backends[lease.backend];
        let started = Instant::now();
        match connect(
            &b.servers[lease.server].address,
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
        let mut idle = self.idle[backend][server].borrow_mut();
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

    /// Ends a lease; a connection that can carry another request goes back to the pool.
    pub fn release(&self, lease: Lease, reusable: bool) {
        self.pools[lease.backend].borrow_mut().end(lease.server);
        let cap = self.config.backends[lease.backend].keepalive_per_server;
        if reusable && cap > 0 && self.poolable(lease.backend) {
            let mut idle = self.idle[lease.backend][lease.server].borrow_mut();
            if idle.len() >= cap {
                idle.remove(0);
            }
            // The finished exchange's task must not stay referenced by the idle connection.
            lease.conn.forget_read_wakers();
            idle.push((lease.conn, Instant::now()));
        }
    }

    pub fn failed(&self, backend: usize, server: usize) {
        if self.pools[backend]
            .borrow_mut()
            .failed(server, Instant::now())
        {
            let b = &self.config.backends[backend];
            warn!(backend = %b.name, server = %b.servers[server].address, fail_timeout = ?b.fail_timeout, "server taken out after repeated failures");
        }
    }

    pub fn succeeded(&self, backend: usize, server: usize) {
        self.pools[backend].borrow_mut().succeeded(server);
    }

    /// Closes idle pooled connections older than `timeouts.upstream_keepalive`.
    pub fn sweep_idle(&self) {
        let max_age = self.config.timeouts.upstream_keepalive;
        for servers in &self.idle {
            for idle in servers {
                idle.borrow_mut()
                    .retain(|(_, since)| since.elapsed() < max_age);
            }
        }
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

fn authority(address: &crate::policy::upstream::Address) -> String {
    use crate::policy::upstream::Address;
    match address {
        Address::Tcp(a) | Address::Tls(a) => a.to_string(),
        // A Unix-socket backend has no authority a client could be sent to.
        Address::Unix(_) => String::new(),
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

/// Runs active health checks for every backend that has them (on the health core).
pub async fn run_checks(config: Arc<Config>, health: Arc<HealthTable>) {
    let Ok(connectors) = connectors(&config) else {
        return;
    };
    let tasks: Vec<_> = config
        .backends
        .iter()
        .enumerate()
        .filter_map(|(bi, b)| b.health.clone().map(|h| (bi, b, h)))
        .flat_map(|(bi, b, h)| (0..b.servers.len()).map(move |si| (bi, si, b.clone(), h.clone())))
        .map(|(bi, si, b, h)| {
            let tls = connectors[bi].clone();
            glommio::spawn_local(check_server(health.clone(), bi, si, b, h, tls))
        })
        .collect();
    for t in tasks {
        t.await;
    }
}

async fn check_server(
    health: Arc<HealthTable>,
    bi: usize,
    si: usize,
    b: Backend,
    h: Health,
    tls: Option<Connector>,
) {
    let address = &b.servers[si].address;
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    loop {
        let ok = future::or(probe(address, &h, tls.as_ref()), async {
            glommio::timer::sleep(h.timeout).await;
            false
        })
        .await;
        let up = health.is_up(bi, si);
        if ok {
            ok_run += 1;
            fail_run = 0;
        } else {
            fail_run += 1;
            ok_run = 0;
        }
        if up && fail_run >= h.fall {
            health.up[bi][si].store(false, Ordering::Relaxed);
            warn!(backend = %b.name, server = %address, "health check: server down");
        } else if !up && ok_run >= h.rise {
            health.up[bi][si].store(true, Ordering::Relaxed);
            info!(backend = %b.name, server = %address, "health check: server up");
        }
        glommio::timer::sleep(h.interval).await;
    }
}

/// One probe: TCP connect, and with `http_path` a GET answered 2xx or 3xx.
async fn probe(
    address: &crate::policy::upstream::Address,
    h: &Health,
    tls: Option<&Connector>,
) -> bool {
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
