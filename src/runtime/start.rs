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

use crate::config::cores::{allowed_cpus, show_size, CoreSettings};
use crate::config::Config;
use crate::runtime::backend::pools as backends;
use crate::runtime::conn::accept::{bind_listeners, listening_socket};
use crate::runtime::conn::{access, perip};
use crate::runtime::control::hub::{Generation, Hub};
use crate::runtime::control::lifecycle::{control_loop, start_checks};
use crate::runtime::control::ocsp as ocsp_core;
use crate::runtime::control::signals::{self, Inherited};
use crate::runtime::control::{api, socket};
use crate::runtime::net::{idle, pool};
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
            // One socket per core that accepts on it (`[[runtime.core]] listeners`).
            for _ in 0..config.runtime.cores_accepting(&l.name) {
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
        let settings = config.runtime.settings(id, &config.listeners, &cpus);
        let placement = settings.cpu.map_or(Placement::Unbound, Placement::Fixed);
        let (hub, gen, ready) = (hub.clone(), gen.clone(), ready_tx.clone());
        let inherited = inherited.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("ringway-core-{id}"))
            .io_memory(IO_MEMORY_BYTES)
            .ring_depth(settings.ring_entries)
            .spawn(move || async move {
                core_main(id, settings, hub.clone(), gen, inherited, ready).await;
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

async fn core_main(
    id: usize,
    settings: CoreSettings,
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
    let max_conns = settings.max_connections;
    // Before any tunnel reads: the core's read buffer has this core's size.
    pool::set_scratch_bytes(settings.read_buffer);
    let core = Rc::new(Core {
        id,
        current: RefCell::new(shard),
        slots: Rc::new(Semaphore::new(max_conns as u64)),
        max_conns,
        listeners: RefCell::new(Vec::new()),
        stopping: RefCell::new(Vec::new()),
        accepting: std::cell::Cell::new(0),
        checks: RefCell::new(backends::Checks::default()),
        settings,
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
    info!("{}", startup_line(id, &core.settings, &config));
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

/// The start-up line of core `id`: `core=0 cpu=0 listeners=main@127.0.0.1:8080
/// ring_entries=128 read_buffer=256KiB max_connections=50000`.
fn startup_line(id: usize, s: &CoreSettings, config: &Config) -> String {
    let bound: Vec<String> = config
        .listeners
        .iter()
        .filter(|l| s.listeners.contains(&l.name))
        .map(|l| format!("{}@{}", l.name, l.address))
        .collect();
    format!(
        "core={id} cpu={} listeners={} ring_entries={} read_buffer={} max_connections={}",
        s.cpu.map_or("any".to_string(), |c| c.to_string()),
        bound.join(","),
        s.ring_entries,
        show_size(s.read_buffer),
        s.max_connections
    )
}
