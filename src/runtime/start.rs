//! Process start: one pinned `LocalExecutor` per configured core, each binding its own
//! `SO_REUSEPORT` listeners, then the control thread (signals) on the main thread until the
//! cores have drained.
//!
//! May import: every other runtime room (this is the top).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::info;

use crate::config::Config;
use crate::runtime::backend::pools as backends;
use crate::runtime::conn::accept::{bind_listeners, listening_socket};
use crate::runtime::conn::{access, perip};
use crate::runtime::control::hub::{Generation, Hub};
use crate::runtime::control::lifecycle::{control_loop, start_checks};
use crate::runtime::control::ocsp as ocsp_core;
use crate::runtime::control::signals::{self, Inherited};
use crate::runtime::control::{api, socket};
use crate::runtime::net::idle;
use crate::runtime::shard::{build_shard, Core};
use crate::runtime::{preflight, privdrop};

/// io_uring registered memory per shard. glommio's default (10 MiB) exceeds a common
/// RLIMIT_MEMLOCK of 8 MiB for two shards; network shards do not use registered buffers.
const IO_MEMORY_BYTES: usize = 1 << 20;

/// What a started core reports to `run`: its id and its listening sockets (for `upgrade`).
type Ready = Result<(usize, Vec<(String, SocketAddr, RawFd)>), String>;

/// Starts every core and blocks until they exit (after a drain). Returns an error if any core
/// fails to start (a listener that cannot bind, an executor that cannot be created).
pub fn run(config: Config, config_path: std::path::PathBuf) -> Result<(), String> {
    let inherited = signals::inherited_listeners();
    // A second Ringway on the same address stops here, before binding a shared socket or
    // touching the pid file.
    preflight::probe_listeners(&config, |name, address| inherited.has(name, address))?;
    preflight::raise_nofile(&config);
    // Certificates and keys are read now, before any privilege is dropped.
    let slots = preflight::files(&config)?;
    if let Some(user) = &config.runtime.user {
        // Every core's listening sockets are bound now, as root; each core takes its own as
        // it takes an upgrading parent's. Only then is root dropped (no other thread yet).
        for l in &config.listeners {
            if inherited.has(&l.name, l.address) {
                continue;
            }
            for _ in 0..config.runtime.cores {
                let fd = listening_socket(l.address).map_err(|e| {
                    format!("listener {}: cannot listen on {}: {e}", l.name, l.address)
                })?;
                inherited.add(&l.name, l.address, fd);
            }
        }
        privdrop::drop_to(user)?;
        info!(user = %user.user, uid = user.uid, gid = user.gid, "running as user");
    }
    let config = Arc::new(config);
    let hub = Hub::new(config.runtime.cores);
    // Server names are resolved before the cores start (one that does not resolve leaves its
    // backend without servers for now); then the DNS thread follows them.
    hub.directory.configure(&config);
    hub.directory.start()?;
    let gen = Arc::new(Generation {
        number: 1,
        slots: Arc::new(slots),
        resumption: crate::config::tickets::Resumption::new(
            config.tls.ticket_keys.as_ref().map(|(_, k)| k),
            config.tls.session_cache,
        )?,
        config: config.clone(),
    });
    // As the user Ringway serves as: it writes the log.
    access::check_target(&config.log)?;
    // Signals are blocked here before any thread starts; only the signal thread unblocks them
    // and forwards them to the control thread (this one).
    let incoming = signals::start()?;
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
    api::start_worker(&hub)?;
    // The control socket, if any, lives until the process ends (a change needs a restart).
    let _control_socket = match config.admin.as_ref().and_then(|a| a.socket.as_deref()) {
        Some(path) => Some(socket::start(&hub, path)?),
        None => None,
    };
    info!(cores = config.runtime.cores, "ringway ready");
    let mut control = signals::Control::new(hub, gen, config_path, sockets, &inherited, incoming);
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
        checks: RefCell::new(backends::Checks::default()),
    });
    if let Err(e) = bind_listeners(&core, &config, &inherited) {
        // Said once, by `main` (the first core's error ends the start).
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
    glommio::spawn_local(crate::runtime::conn::errlog::flusher()).detach();
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
