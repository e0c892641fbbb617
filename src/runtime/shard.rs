//! A core and what one configuration compiles to on it.
//!
//! A core (`Core`) outlives configurations: what one configuration compiles to on one core is
//! a `Shard` (routes, backend pools, TLS configs). A reload swaps the core's current shard;
//! connections pick the current one up at their next request, while tunnels and requests in
//! flight keep the shard they started with.
//!
//! May import: `net`, `backend`, `control::hub` (the mailboxes a shard reaches other cores by).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;

use crate::config::tls::CertSlot;
use crate::config::Config;
use crate::config::Routes;
use crate::observe::metrics;
use crate::runtime::backend::pools as backends;
use crate::runtime::control::hub::{Generation, Hub};

/// One configuration generation compiled for one core.
pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    pub routes: Routes,
    pub backends: backends::Backends,
    /// Per listener: its TLS config, if it terminates TLS.
    pub(crate) tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// This core's metric ids for the generation's names.
    pub ids: metrics::Ids,
    pub hub: Arc<Hub>,
    pub(crate) slots: Arc<Vec<Option<Arc<CertSlot>>>>,
}

/// A listener this core accepts on; dropping `task` stops accepting and closes the socket.
/// (Dropping cancels an accept in flight: a connection the kernel handed to that accept just
/// then is lost. A drain for an upgrade sets `stop` instead; see `accept_loop`.)
pub(crate) struct Bound {
    pub(crate) name: String,
    pub(crate) address: SocketAddr,
    pub(crate) fd: RawFd,
    pub(crate) stop: Rc<std::cell::Cell<bool>>,
    pub(crate) task: glommio::Task<()>,
}

/// Everything one core owns across configurations.
pub struct Core {
    pub id: usize,
    pub(crate) current: RefCell<Rc<Shard>>,
    /// Connection slots; an accept loop waits for a slot before accepting.
    pub(crate) slots: Rc<Semaphore>,
    pub(crate) max_conns: usize,
    pub(crate) listeners: RefCell<Vec<Bound>>,
    /// Accept loops told to stop (upgrade drain): true while the loop still runs.
    #[allow(clippy::type_complexity)]
    pub(crate) stopping: RefCell<Vec<(Rc<std::cell::Cell<bool>>, glommio::Task<()>)>>,
    /// Accept loops holding a connection slot while they wait in `accept`.
    pub(crate) accepting: std::cell::Cell<usize>,
    /// The active health checks (core 0 only): restarted on reload, following the servers.
    pub(crate) checks: RefCell<backends::Checks>,
    /// What `[[runtime.core]]` made of this core at start (a change needs a restart).
    pub(crate) settings: crate::config::cores::CoreSettings,
}

impl Core {
    /// Connections this core serves now (slots taken, less those accept loops hold).
    pub(crate) fn open_connections(&self) -> usize {
        self.max_conns - self.slots.available() as usize - self.accepting.get()
    }

    /// The shard new connections and requests use now.
    pub fn current(&self) -> Rc<Shard> {
        self.current.borrow().clone()
    }
}

/// Compiles `gen` for core `id`.
pub(crate) fn build_shard(id: usize, gen: &Generation, hub: &Arc<Hub>) -> Result<Shard, String> {
    let config = gen.config.clone();
    let mut routes = Routes::compile(&config);
    for v in &mut routes.vhosts {
        // The loader checked that doc_root exists; canonical form makes containment checks exact.
        if let Ok(root) = crate::policy::static_files::canonical_root(&v.doc_root) {
            v.doc_root = root;
        }
    }
    // One rustls config per TLS listener per core; session tickets and the session-ID cache
    // are the generation's, shared by every core (a client resumes on any core).
    let mut tls = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let built = l
            .tls
            .then(|| {
                crate::config::tls::server_config(
                    routes.hosts_by_listener[i].clone(),
                    gen.slots.to_vec(),
                    &l.alpn,
                    &gen.resumption,
                )
            })
            .transpose()
            .map_err(|e| format!("core {id}: TLS on listener {}: {e}", l.name))?;
        tls.push(built);
    }
    let sets = hub.directory.published();
    let backends = backends::Backends::new(config.clone(), &sets, 0x5EED ^ id as u64)
        .map_err(|e| format!("core {id}: {e}"))?;
    let ids = metrics::with(|m| {
        m.ids(
            config.listeners.iter().map(|l| l.name.as_str()),
            // Servers are interned as they join the pools (`Backends::apply`).
            config
                .backends
                .iter()
                .map(|b| (b.name.as_str(), Vec::new())),
            config.vhosts.iter().map(|v| v.name.as_str()),
        )
    });
    Ok(Shard {
        id,
        config,
        routes,
        tls,
        backends,
        ids,
        hub: hub.clone(),
        slots: gen.slots.clone(),
    })
}
