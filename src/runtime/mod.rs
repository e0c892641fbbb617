//! The glommio layer: one pinned `LocalExecutor` per configured core, each with its own
//! `SO_REUSEPORT` listener per listen address, its own routes, buffer pool and connection cap.
//! Connections live and die on the core that accepted them; cores share nothing mutable.
//!
//! A core (`Core`) outlives configurations: what one configuration compiles to on one core is
//! a `Shard` (routes, backend pools, TLS configs). A reload swaps the core's current shard;
//! connections pick the current one up at their next request, while tunnels and requests in
//! flight keep the shard they started with. The process's main thread only handles signals
//! (`signals`), talking to the cores over `control` mailboxes.

mod access;
mod admin;
mod backends;
mod conn;
pub mod control;
mod echo;
mod forward;
mod h2srv;
mod idle;
mod io;
mod l4;
mod memory;
mod ocsp_core;
mod perip;
pub mod pool;
mod proxy;
mod relay;
mod signals;
mod static_serve;
mod stream;
pub mod tunnel;
mod upstream;
mod wsproxy;
mod wstunnel;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::observe::metrics;
use crate::config::Routes;
use crate::config::tls::CertSlot;
use control::{Generation, Hub, Msg};

pub use signals::{send_signal, Inherited};

/// io_uring registered memory per shard. glommio's default (10 MiB) exceeds a common
/// RLIMIT_MEMLOCK of 8 MiB for two shards; network shards do not use registered buffers.
const IO_MEMORY_BYTES: usize = 1 << 20;

/// How often a draining core looks whether its connections are all gone.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// One configuration generation compiled for one core.
pub struct Shard {
    pub id: usize,
    pub generation: u64,
    pub config: Arc<Config>,
    pub routes: Routes,
    pub backends: backends::Backends,
    /// Per listener: its TLS config, if it terminates TLS.
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// This core's metric ids for the generation's names.
    pub ids: metrics::Ids,
    pub hub: Arc<Hub>,
    health: Arc<backends::HealthTable>,
    slots: Arc<Vec<Option<Arc<CertSlot>>>>,
}

/// A listener this core accepts on; dropping `task` stops accepting and closes the socket.
/// (Dropping cancels an accept in flight: a connection the kernel handed to that accept just
/// then is lost. A drain for an upgrade sets `stop` instead; see `accept_loop`.)
struct Bound {
    name: String,
    address: SocketAddr,
    fd: RawFd,
    stop: Rc<std::cell::Cell<bool>>,
    task: glommio::Task<()>,
}

/// Everything one core owns across configurations.
pub struct Core {
    pub id: usize,
    current: RefCell<Rc<Shard>>,
    /// Connection slots; an accept loop waits for a slot before accepting.
    slots: Rc<Semaphore>,
    max_conns: usize,
    listeners: RefCell<Vec<Bound>>,
    /// Accept loops told to stop (upgrade drain): true while the loop still runs.
    #[allow(clippy::type_complexity)]
    stopping: RefCell<Vec<(Rc<std::cell::Cell<bool>>, glommio::Task<()>)>>,
    /// Accept loops holding a connection slot while they wait in `accept`.
    accepting: std::cell::Cell<usize>,
    /// The health-check task (core 0 only), replaced on reload.
    checks: RefCell<Option<glommio::Task<()>>>,
}

impl Core {
    /// Connections this core serves now (slots taken, less those accept loops hold).
    fn open_connections(&self) -> usize {
        self.max_conns - self.slots.available() as usize - self.accepting.get()
    }

    /// The shard new connections and requests use now.
    pub fn current(&self) -> Rc<Shard> {
        self.current.borrow().clone()
    }
}

/// What a started core reports to `run`: its id and its listening sockets (for `upgrade`).
type Ready = Result<(usize, Vec<(String, SocketAddr, RawFd)>), String>;

/// Starts every core and blocks until they exit (after a drain). Returns an error if any core
/// fails to start (a listener that cannot bind, an executor that cannot be created).
pub fn run(config: Config, config_path: std::path::PathBuf) -> Result<(), String> {
    let inherited = signals::inherited_listeners();
    let config = Arc::new(config);
    let hub = Hub::new(config.runtime.cores);
    let gen = Arc::new(Generation {
        number: 1,
        health: Arc::new(backends::HealthTable::new(&config)),
        slots: Arc::new(crate::config::tls::load_slots(&config)?),
        config: config.clone(),
    });
    access::check_target(&config.log)?;
    // Signals go to the control thread (this one) only: block them before any thread starts.
    signals::block();
    // Staples first: listeners open only after the first OCSP fetches (or their time-out).
    ocsp_core::start(&config, &gen.slots)?;
    let cpus = allowed_cpus();
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let mut handles = Vec::new();
    for id in 0..config.runtime.cores {
        let cpu = config.runtime.pin.then(|| cpus[id % cpus.len()]);
        let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
        let (hub, gen, ready) = (hub.clone(), gen.clone(), ready_tx.clone());
        let inherited = inherited.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("ringway-core-{id}"))
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move {
                core_main(id, cpu, hub.clone(), gen, inherited, ready).await;
                hub.stopped
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
            })
            .map_err(|e| format!("core {id}: cannot start executor: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut sockets = Vec::new();
    for _ in 0..config.runtime.cores {
        match ready_rx.recv() {
            Ok(Ok((_, fds))) => sockets.extend(fds),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a core exited during start-up".into()),
        }
    }
    signals::close_unused_inherited(&inherited, &sockets);
    info!(cores = config.runtime.cores, "ringway ready");
    let mut control = signals::Control::new(hub, gen, config_path, sockets, &inherited);
    control.write_pid_file();
    control.notify_upgrade_parent();
    control.notify_systemd_ready();
    control.serve();
    for h in handles {
        if let Err(e) = h.join() {
            return Err(format!("core exited: {e}"));
        }
    }
    control.remove_pid_file();
    info!("ringway stopped");
    Ok(())
}

/// CPUs this process may run on (its affinity mask), in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    let cpus: Vec<usize> = if ok {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

fn max_connections(config: &Config, id: usize) -> usize {
    config
        .runtime
        .core_overrides
        .iter()
        .find(|o| o.id == id)
        .and_then(|o| o.max_connections)
        .unwrap_or(config.runtime.max_connections)
}

/// Compiles `gen` for core `id`.
fn build_shard(id: usize, gen: &Generation, hub: &Arc<Hub>) -> Result<Shard, String> {
    let config = gen.config.clone();
    let mut routes = Routes::compile(&config);
    for v in &mut routes.vhosts {
        // The loader checked that doc_root exists; canonical form makes containment checks exact.
        if let Ok(root) = crate::policy::static_files::canonical_root(&v.doc_root) {
            v.doc_root = root;
        }
    }
    // One rustls config per TLS listener per core: session caches stay core-local.
    let mut tls = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let built = l
            .tls
            .then(|| {
                crate::config::tls::server_config(
                    routes.hosts_by_listener[i].clone(),
                    gen.slots.to_vec(),
                    &l.alpn,
                )
            })
            .transpose()
            .map_err(|e| format!("core {id}: TLS on listener {}: {e}", l.name))?;
        tls.push(built);
    }
    let backends = backends::Backends::new(config.clone(), gen.health.clone(), 0x5EED ^ id as u64)
        .map_err(|e| format!("core {id}: {e}"))?;
    let ids = metrics::with(|m| {
        m.ids(
            config.listeners.iter().map(|l| l.name.as_str()),
            config.backends.iter().map(|b| {
                let servers = b.servers.iter().map(|s| s.address.to_string()).collect();
                (b.name.as_str(), servers)
            }),
            config.vhosts.iter().map(|v| v.name.as_str()),
        )
    });
    Ok(Shard {
        id,
        generation: gen.number,
        config,
        routes,
        tls,
        backends,
        ids,
        hub: hub.clone(),
        health: gen.health.clone(),
        slots: gen.slots.clone(),
    })
}

async fn core_main(
    id: usize,
    cpu: Option<usize>,
    hub: Arc<Hub>,
    gen: Arc<Generation>,
    inherited: Arc<Inherited>,
    ready: mpsc::Sender<Ready>,
) {
    let shard = match build_shard(id, &gen, &hub) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let config = gen.config.clone();
    let max_conns = max_connections(&config, id);
    let core = Rc::new(Core {
        id,
        current: RefCell::new(shard),
        slots: Rc::new(Semaphore::new(max_conns as u64)),
        max_conns,
        listeners: RefCell::new(Vec::new()),
        stopping: RefCell::new(Vec::new()),
        accepting: std::cell::Cell::new(0),
        checks: RefCell::new(None),
    });
    if let Err(e) = bind_listeners(&core, &config, &inherited) {
        error!("{e}");
        let _ = ready.send(Err(e));
        return;
    }
    if id == 0 {
        start_checks(&core, &gen);
    }
    access::configure(&config.log);
    perip::configure(&config.limits);
    glommio::spawn_local(idle::sweeper()).detach();
    glommio::spawn_local(access::flusher()).detach();
    let sweeper = core.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(backends::SWEEP_INTERVAL).await;
            sweeper.current().backends.sweep_idle();
            perip::sweep();
        }
    })
    .detach();
    let bound: Vec<String> = config
        .listeners
        .iter()
        .map(|l| format!("{}@{}", l.name, l.address))
        .collect();
    info!(
        "core={id} cpu={} listeners={} max_connections={max_conns}",
        cpu.map_or("any".to_string(), |c| c.to_string()),
        bound.join(",")
    );
    let fds = core
        .listeners
        .borrow()
        .iter()
        .map(|b| (b.name.clone(), b.address, b.fd))
        .collect();
    let _ = ready.send(Ok((id, fds)));
    control_loop(&core, &hub).await;
    access::flush();
}

/// Serves control messages until a drain has finished.
async fn control_loop(core: &Rc<Core>, hub: &Arc<Hub>) {
    let mailbox = hub.cores[core.id].clone();
    let (done_tx, done_rx) = async_done();
    let mut draining = false;
    loop {
        let msg = futures_lite::future::or(async { Some(mailbox.recv().await) }, async {
            done_rx.wait().await;
            None
        })
        .await;
        match msg {
            None => return,
            Some(Msg::Snapshot(reply)) => reply.send(metrics::with(|m| {
                let mut snap = m.snapshot(core.id);
                snap.pooled_bytes = pool::pooled_bytes();
                snap
            })),
            Some(Msg::Reload(gen, ack)) => {
                reload(core, &gen);
                ack.send(core.id);
            }
            Some(Msg::ReopenLog) => access::reopen(),
            Some(Msg::Drain { handover }) if !draining => {
                draining = true;
                glommio::spawn_local(drain(core.clone(), handover, done_tx.clone())).detach();
            }
            Some(Msg::Drain { .. }) => {}
        }
    }
}

/// A one-shot "done" signal within one core.
#[derive(Clone)]
struct Done(
    Rc<std::cell::Cell<bool>>,
    Rc<RefCell<Option<std::task::Waker>>>,
);

fn async_done() -> (Done, Done) {
    let d = Done(Rc::default(), Rc::default());
    (d.clone(), d)
}

impl Done {
    fn set(&self) {
        self.0.set(true);
        if let Some(w) = self.1.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.0.get() {
                return std::task::Poll::Ready(());
            }
            *self.1.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

/// Graceful drain: stop accepting, close idle keep-alive connections, let requests in flight
/// finish (their responses close the connection), close tunnels with 1001 at a frame boundary
/// (`tunnel`), and after `timeouts.drain` give up on what is left.
///
/// `handover`: a new process serves the same sockets (upgrade). Then an accept in flight is
/// not cancelled (the connection the kernel may be handing it would be lost): each accept
/// loop ends after its next connection, and the new process takes the rest.
async fn drain(core: Rc<Core>, handover: bool, done: Done) {
    let limit = core.current().config.timeouts.drain;
    info!(core = core.id, open = core.open_connections(), "draining");
    let bound = std::mem::take(&mut *core.listeners.borrow_mut());
    let mut nudge = Vec::new();
    if handover {
        for b in bound {
            b.stop.set(true);
            nudge.push(b.address);
            core.stopping.borrow_mut().push((b.stop, b.task));
        }
    } else {
        // Closing the sockets: new connections are refused from now on.
        drop(bound);
    }
    idle::start_drain();
    let deadline = Instant::now() + limit;
    loop {
        // Accept loops still waiting in `accept`: their sockets now belong to the new process
        // as well, which may win every connection. A connection to ourselves (sent nothing,
        // closed at once: either process drops it silently) wakes one of them.
        core.stopping
            .borrow_mut()
            .retain(|(running, _)| running.get());
        let waiting = core.stopping.borrow().len();
        if waiting > 0 {
            for addr in &nudge {
                let _ = glommio::net::TcpStream::connect(loopback(*addr)).await;
            }
        }
        if core.open_connections() == 0 && waiting == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let left = core.open_connections();
            warn!(
                core = core.id,
                left, "drain time-out: closing the connections left"
            );
            break;
        }
        glommio::timer::sleep(DRAIN_POLL).await;
        // Connections that finished a response since the last look and now wait idle.
        idle::wake_idle();
    }
    info!(core = core.id, "drained");
    done.set();
}

/// Where to connect to reach a listener bound to `address` (a wildcard means this host).
fn loopback(address: SocketAddr) -> SocketAddr {
    let mut a = address;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

/// Swaps in a new generation: routes, pools, TLS, listeners (added ones bound, removed ones
/// closed, unchanged ones kept: no accept gap), health checks.
fn reload(core: &Rc<Core>, gen: &Arc<Generation>) {
    let shard = match build_shard(core.id, gen, &core.current().hub) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            // The control thread built the same generation before sending it; a core-local
            // failure keeps the old generation on this core.
            error!(core = core.id, error = %e, "reload failed on this core; old config kept");
            return;
        }
    };
    *core.current.borrow_mut() = shard;
    let config = &gen.config;
    let none = Inherited::default();
    // Keep listeners whose name and address are unchanged; close the rest; bind new ones.
    core.listeners.borrow_mut().retain(|b| {
        config
            .listeners
            .iter()
            .any(|l| l.name == b.name && l.address == b.address)
    });
    if let Err(e) = bind_listeners(core, config, &none) {
        error!(core = core.id, error = %e, "reload: a new listener could not be bound");
    }
    if core.id == 0 {
        start_checks(core, gen);
    }
    access::configure(&config.log);
    perip::configure(&config.limits);
    info!(
        core = core.id,
        generation = gen.number,
        "configuration reloaded"
    );
}

/// Runs the generation's active health checks on this core (core 0), ending the old ones.
fn start_checks(core: &Core, gen: &Generation) {
    let task = glommio::spawn_local(backends::run_checks(gen.config.clone(), gen.health.clone()));
    *core.checks.borrow_mut() = Some(task);
}

/// Binds (or takes over from an upgrading parent) every listener of `config` this core does
/// not have yet.
fn bind_listeners(core: &Rc<Core>, config: &Config, inherited: &Inherited) -> Result<(), String> {
    for l in &config.listeners {
        if core.listeners.borrow().iter().any(|b| b.name == l.name) {
            continue;
        }
        let (listener, fd) = match inherited.take(&l.name, l.address) {
            // SAFETY: the fd is a listening TCP socket handed over by the parent process and
            // owned by nobody else in this process (`take` hands each one out once).
            Some(fd) => (unsafe { TcpListener::from_raw_fd(fd) }, fd),
            None => listen(l.address).map_err(|e| {
                format!(
                    "core {}: cannot bind listener {} on {}: {e}",
                    core.id, l.name, l.address
                )
            })?,
        };
        let stop = Rc::new(std::cell::Cell::new(false));
        let task = glommio::spawn_local(accept_loop(
            core.clone(),
            l.name.clone(),
            listener,
            stop.clone(),
        ));
        core.listeners.borrow_mut().push(Bound {
            name: l.name.clone(),
            address: l.address,
            fd,
            stop,
            task,
        });
    }
    Ok(())
}

/// Kernel queue of connections not yet accepted, per core and listener (glommio's own bind
/// uses the same).
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket on `address` with `SO_REUSEPORT` (every core binds its own), and its
/// descriptor, which the listener owns.
fn listen(address: SocketAddr) -> std::io::Result<(TcpListener, RawFd)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if address.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sk = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    sk.set_reuse_port(true)?;
    sk.bind(&address.into())?;
    sk.listen(LISTEN_BACKLOG)?;
    let fd = std::os::fd::IntoRawFd::into_raw_fd(sk);
    // SAFETY: a bound, listening TCP socket that nothing else owns.
    Ok((unsafe { TcpListener::from_raw_fd(fd) }, fd))
}

/// Counts one accept loop holding a connection slot while it waits in `accept`.
struct Accepting<'a>(&'a std::cell::Cell<usize>);

impl<'a> Accepting<'a> {
    fn new(count: &'a std::cell::Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Accepting(count)
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn accept_loop(
    core: Rc<Core>,
    name: String,
    listener: TcpListener,
    stop: Rc<std::cell::Cell<bool>>,
) {
    let mut warned_full = false;
    let mut warned_at: Option<Instant> = None;
    while !stop.get() {
        // Wait for a free slot first: at the cap, connections queue in the kernel's backlog.
        if core.slots.available() == 0 && !warned_full {
            warn!(core = core.id, "max_connections reached; pausing accepts");
            warned_full = true;
        }
        let Ok(permit) = core.slots.acquire_static_permit(1).await else {
            return;
        };
        if core.slots.available() > 0 {
            warned_full = false;
        }
        let accepted = {
            // Counted while waiting, also when the loop is dropped mid-accept.
            let _waiting = Accepting::new(&core.accepting);
            listener.accept().await
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning; say it at
                // most once a second.
                if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(core = core.id, error = %e, "accept failed");
                    warned_at = Some(Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            continue;
        };
        let shard = core.current();
        // The listener's place in the current generation (a reload may have moved it).
        let Some(listener_index) = shard.config.listeners.iter().position(|l| l.name == name)
        else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracing::debug!("core={} accepted peer={peer}", core.id);
        let core = core.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            let (mut peer, mut local) = (peer, local);
            if shard.config.listeners[listener_index].proxy_protocol {
                // The balancer's header names the client: it is the peer from here on.
                match read_proxy_header(&mut stream, shard.config.timeouts.header).await {
                    Ok((source, dest)) => {
                        peer = source.unwrap_or(peer);
                        local = dest.unwrap_or(local);
                    }
                    Err(why) => {
                        info!(core = shard.id, peer = %peer, "PROXY protocol header {why}; closed");
                        return;
                    }
                }
            }
            // Over `max_connections_per_ip`: closed at once (the stream drops here).
            let Ok(ip_guard) = perip::open(peer.ip()) else {
                return;
            };
            let metric_id = shard.ids.listeners[listener_index];
            metrics::with(|m| m.connection_opened(metric_id));
            // Raw bytes: a `mode = "tcp"` listener, or a ClientHello whose SNI passes through.
            let l4 = match shard
                .config
                .tcp_routes
                .iter()
                .find(|r| r.listener == listener_index)
            {
                Some(route) => Ok(Some(route.backend)),
                None => l4::passthrough_backend(&shard, &stream, listener_index, peer).await,
            };
            let stream = match l4 {
                Ok(None) => stream,
                Ok(Some(backend)) => {
                    // A task of its own, holding only what forwarding needs.
                    let ends = l4::Ends {
                        peer,
                        local,
                        backend,
                        listener_metric: metric_id,
                    };
                    let slot = (permit, ip_guard);
                    glommio::spawn_local(l4::forward(shard, stream, ends, slot)).detach();
                    return;
                }
                Err(()) => {
                    metrics::with(|m| m.connection_closed(metric_id));
                    drop((permit, ip_guard));
                    return;
                }
            };
            // h2c prior knowledge on an `http2 = true` listener: the preface decides.
            let mut h2 = false;
            if shard.config.listeners[listener_index].http2 && shard.tls[listener_index].is_none() {
                let mut buf = [0u8; 24];
                match io::peek_until(
                    &stream,
                    shard.config.timeouts.header,
                    &mut buf,
                    crate::protocol::http::h2map::judge_preface,
                )
                .await
                {
                    Ok(is_h2) => h2 = is_h2,
                    Err(_) => {
                        metrics::with(|m| m.connection_closed(metric_id));
                        drop((permit, ip_guard));
                        return;
                    }
                }
            }
            let stream = match shard.tls[listener_index].clone() {
                None => Some(stream::ClientStream::plain(
                    stream,
                    shard.config.timeouts.send,
                )),
                Some(tls) => handshake(&shard, tls, stream, peer).await,
            };
            drop(shard);
            let (h2_stream, stream) = match stream {
                Some(s) if h2 || s.alpn_h2() => (Some(s), None),
                other => (None, other),
            };
            if let Some(s) = h2_stream {
                h2srv::serve(core.clone(), s, peer, local, listener_index).await;
            }
            if let Some(stream) = stream {
                let client = conn::Client::new(stream, peer, local, listener_index, &core);
                if let Some(job) = conn::serve(core.clone(), client).await {
                    // The tunnel gets a small task of its own; this larger one ends here.
                    let slot = (permit, ip_guard);
                    glommio::spawn_local(wsproxy::run_tunnel(job, slot, metric_id)).detach();
                    return;
                }
            }
            metrics::with(|m| m.connection_closed(metric_id));
            drop((permit, ip_guard));
        })
        .detach();
    }
    // Told to stop, and no accept in flight any more: the drain may end (see `drain`).
    stop.set(false);
}

/// Reads a PROXY protocol header (v1 or v2) within `limit`, consuming exactly its bytes (what
/// follows, a TLS ClientHello or a request, stays in the socket). `Err`: why the connection is
/// closed without an answer.
async fn read_proxy_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), &'static str> {
    use crate::protocol::proxy_protocol::{parse, Parsed, ProxyError, V2_BYTES_MAX};
    use futures_lite::io::AsyncReadExt;
    let mut buf = pool::take_vec_for(V2_BYTES_MAX);
    buf.resize(V2_BYTES_MAX, 0);
    let judged = io::peek_until(stream, limit, &mut buf, |b| match parse(b) {
        Ok(Parsed::Incomplete { .. }) => None,
        Ok(Parsed::Complete { len, source, dest }) => Some(Ok((len, source, dest))),
        Err(ProxyError::Missing) => Some(Err("missing")),
        Err(ProxyError::TooLong) => Some(Err("too long")),
        Err(ProxyError::Malformed) => Some(Err("malformed")),
    })
    .await;
    let result = match judged {
        Ok(Ok((len, source, dest))) => {
            buf.truncate(len);
            let read = stream.read_exact(&mut buf).await;
            read.map(|()| (source, dest)).map_err(|_| "unreadable")
        }
        Ok(Err(why)) => Err(why),
        Err(io::PeekEnd::TimedOut) => Err("not complete within timeouts.header"),
        Err(io::PeekEnd::Closed) => Err("missing (connection closed)"),
        Err(io::PeekEnd::Full) => Err("too long"),
    };
    pool::give_vec(buf);
    result
}

/// Completes a TLS handshake within `timeouts.header`; a failure closes this connection only,
/// with one log line.
async fn handshake(
    shard: &Shard,
    tls: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
) -> Option<stream::ClientStream> {
    let accept = async {
        Some(
            futures_rustls::TlsAcceptor::from(tls)
                .accept(tcp)
                .into_fallible()
                .await,
        )
    };
    let timer = async {
        glommio::timer::sleep(shard.config.timeouts.header).await;
        None
    };
    match futures_lite::future::or(accept, timer).await {
        Some(Ok(s)) => Some(stream::ClientStream::tls(
            Box::new(s),
            shard.config.timeouts.send,
        )),
        Some(Err((e, mut tcp))) => {
            info!(core = shard.id, peer = %peer, error = %e, "TLS handshake failed");
            // The alert is out; the client may still be sending its first flight.
            let watch = idle::watch(io::LINGER_IDLE);
            io::linger_close(&mut tcp, &mut io::ReadBuf::new(), &watch).await;
            None
        }
        None => {
            info!(core = shard.id, peer = %peer, "TLS handshake timed out");
            None
        }
    }
}
