//! The glommio layer: one pinned `LocalExecutor` per configured core ("shard"), each with its
//! own `SO_REUSEPORT` listener per listen address, its own routes, buffer pool and connection
//! cap. Connections live and die on the shard that accepted them; shards share nothing mutable.

mod backends;
mod conn;
mod echo;
mod idle;
mod io;
mod ocsp_core;
pub mod pool;
mod proxy;
mod relay;
mod static_serve;
mod stream;
pub mod tunnel;
mod upstream;
mod wsproxy;

use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::route::Routes;

/// io_uring registered memory per shard. glommio's default (10 MiB) exceeds a common
/// RLIMIT_MEMLOCK of 8 MiB for two shards; network shards do not use registered buffers.
const IO_MEMORY_BYTES: usize = 1 << 20;

/// Everything one core owns.
pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    pub routes: Routes,
    pub backends: backends::Backends,
    /// Per listener: its TLS config, if it terminates TLS.
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Connection slots; an accept loop waits for a slot before accepting.
    slots: Rc<Semaphore>,
}

/// Starts every shard and blocks until they exit. Returns an error if any shard fails to start
/// (a listener that cannot bind, an executor that cannot be created).
pub fn run(config: Config) -> Result<(), String> {
    let config = Arc::new(config);
    let health = Arc::new(backends::HealthTable::new(&config));
    let slots = Arc::new(crate::tls::load_slots(&config)?);
    // Staples first: listeners open only after the first OCSP fetches (or their time-out).
    ocsp_core::start(&config, &slots)?;
    let cpus = allowed_cpus();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mut handles = Vec::new();
    for id in 0..config.runtime.cores {
        let cpu = config.runtime.pin.then(|| cpus[id % cpus.len()]);
        let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
        let config = config.clone();
        let health = health.clone();
        let slots = slots.clone();
        let ready = ready_tx.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("ringway-core-{id}"))
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move { shard_main(id, cpu, config, health, slots, ready).await })
            .map_err(|e| format!("core {id}: cannot start executor: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..config.runtime.cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a core exited during start-up".into()),
        }
    }
    info!(cores = config.runtime.cores, "ringway ready");
    for h in handles {
        if let Err(e) = h.join() {
            return Err(format!("core exited: {e}"));
        }
    }
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

async fn shard_main(
    id: usize,
    cpu: Option<usize>,
    config: Arc<Config>,
    health: Arc<backends::HealthTable>,
    slots: Arc<Vec<Option<Arc<crate::tls::CertSlot>>>>,
    ready: mpsc::Sender<Result<usize, String>>,
) {
    let mut listeners = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        match TcpListener::bind(l.address) {
            Ok(listener) => listeners.push((i, listener)),
            Err(e) => {
                let msg = format!(
                    "core {id}: cannot bind listener {} on {}: {e}",
                    l.name, l.address
                );
                error!("{msg}");
                let _ = ready.send(Err(msg));
                return;
            }
        }
    }
    let mut routes = Routes::compile(&config);
    for v in &mut routes.vhosts {
        // The loader checked that doc_root exists; canonical form makes containment checks exact.
        if let Ok(root) = crate::static_files::canonical_root(&v.doc_root) {
            v.doc_root = root;
        }
    }
    let max_conns = max_connections(&config, id);
    // One rustls config per TLS listener per core: session caches stay core-local.
    let mut tls = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let built = l
            .tls
            .then(|| crate::tls::server_config(routes.hosts_by_listener[i].clone(), slots.to_vec()))
            .transpose();
        match built {
            Ok(t) => tls.push(t),
            Err(e) => {
                let _ = ready.send(Err(format!("core {id}: TLS on listener {}: {e}", l.name)));
                return;
            }
        }
    }
    let backends = match backends::Backends::new(config.clone(), health.clone(), 0x5EED ^ id as u64)
    {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(format!("core {id}: {e}")));
            return;
        }
    };
    let shard = Rc::new(Shard {
        id,
        config: config.clone(),
        routes,
        tls,
        backends,
        slots: Rc::new(Semaphore::new(max_conns as u64)),
    });
    // Core 0 runs the active health checks for everyone (they publish through atomics).
    if id == 0 {
        glommio::spawn_local(backends::run_checks(config.clone(), health)).detach();
    }
    glommio::spawn_local(idle::sweeper()).detach();
    let sweeper = shard.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(backends::SWEEP_INTERVAL).await;
            sweeper.backends.sweep_idle();
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
    let _ = ready.send(Ok(id));
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|(i, l)| glommio::spawn_local(accept_loop(shard.clone(), i, l)))
        .collect();
    for t in tasks {
        t.await;
    }
}

async fn accept_loop(shard: Rc<Shard>, listener_index: usize, listener: TcpListener) {
    let mut warned_full = false;
    loop {
        // Wait for a free slot first: at the cap, connections queue in the kernel's backlog.
        if shard.slots.available() == 0 && !warned_full {
            warn!(core = shard.id, "max_connections reached; pausing accepts");
            warned_full = true;
        }
        let Ok(permit) = shard.slots.acquire_static_permit(1).await else {
            return;
        };
        if shard.slots.available() > 0 {
            warned_full = false;
        }
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                warn!(core = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracing::debug!("core={} accepted peer={peer}", shard.id);
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let stream = match shard.tls[listener_index].clone() {
                None => Some(stream::ClientStream::Plain(stream)),
                Some(tls) => handshake(&shard, tls, stream, peer).await,
            };
            if let Some(stream) = stream {
                let client = conn::Client {
                    stream,
                    peer,
                    listener: listener_index,
                    rb: io::ReadBuf::new(),
                    // The first head must arrive within `header` of the accept.
                    watch: idle::watch(shard.config.timeouts.header),
                };
                if let Some(job) = conn::serve(shard.clone(), client).await {
                    // The tunnel gets a small task of its own; this larger one ends here.
                    glommio::spawn_local(wsproxy::run_tunnel(shard, job, permit)).detach();
                    return;
                }
            }
            drop(permit);
        })
        .detach();
    }
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
        Some(Ok(s)) => Some(stream::ClientStream::Tls(Box::new(s))),
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
