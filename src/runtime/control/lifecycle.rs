//! A core's side of the control plane: its mailbox loop (metrics snapshots, reload, log
//! reopening, drain), the graceful drain, and swapping in a new configuration generation.
//!
//! May import: `shard`, `net`, `backend`, `conn::accept` (a reload binds new listeners),
//! `control::hub`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::observe::metrics;
use crate::runtime::backend::servers::Count;
use crate::runtime::conn::accept::bind_listeners;
use crate::runtime::conn::{access, perip};
use crate::runtime::control::hub::{Generation, Hub, Msg};
use crate::runtime::control::signals::Inherited;
use crate::runtime::net::{evict, idle, pool};
use crate::runtime::shard::{build_shard, Core};

/// How often a draining core looks whether its connections are all gone.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Serves control messages until a drain has finished.
pub(crate) async fn control_loop(core: &Rc<Core>, hub: &Arc<Hub>) {
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
                snap.passive_out = core.current().backends.passive_out();
                snap.settings = Some(core.settings.clone());
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
            Some(Msg::Servers(sets)) => {
                core.current().backends.apply(&sets);
                if core.id == 0 {
                    core.checks.borrow_mut().sync(&sets);
                }
            }
            Some(Msg::DrainServer {
                backend,
                server,
                spread,
            }) => {
                info!(core = core.id, backend = %backend, server = %server, ?spread, "draining a server: its tunnels close with 1012");
                evict::close_spread(
                    Some((backend, server)),
                    spread,
                    evict::CLOSE_SERVICE_RESTART,
                );
            }
            Some(Msg::Counts(reply)) => reply.send(counts(core)),
        }
    }
}

/// This core's per-server figures: leases of the current shard, open tunnels of any.
fn counts(core: &Core) -> Vec<Count> {
    let mut out: Vec<Count> = core
        .current()
        .backends
        .active()
        .into_iter()
        .map(|(backend, server, active)| Count {
            backend,
            server,
            active,
            tunnels: 0,
        })
        .collect();
    for (backend, server, tunnels) in evict::counts() {
        match out
            .iter_mut()
            .find(|c| *c.backend == *backend && c.server == server)
        {
            Some(c) => c.tunnels += tunnels,
            None => out.push(Count {
                backend: backend.to_string(),
                server,
                active: 0,
                tunnels,
            }),
        }
    }
    out
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
    let spread = core.current().config.timeouts.drain_spread;
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
    if !spread.is_zero() {
        // `timeouts.drain_spread`: tunnels get their 1001 one by one, in random order.
        idle::spread_tunnel_closes();
    }
    idle::start_drain();
    if !spread.is_zero() {
        evict::close_spread(None, spread, 1001);
    }
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
pub(crate) fn start_checks(core: &Core, gen: &Generation) {
    let sets = core.current().hub.directory.published();
    core.checks.borrow_mut().restart(&gen.config, &sets);
}
