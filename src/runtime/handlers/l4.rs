//! Layer 4: `mode = "tcp"` listeners (`[[tcp_route]]`) and TLS passthrough by SNI
//! (`[[tls_passthrough]]`). Bytes go to a backend pool untouched (balancing, health and
//! `send_proxy` as for HTTP backends; connections are never pooled), bounded by
//! `timeouts.tunnel_idle`; half-closes pass through.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::sync::StaticPermit;
use tracing::{debug, info, warn};

use crate::observe::metrics;
use crate::policy::balance::Tried;
use crate::protocol::tls_hello::{sni, Hello, HELLO_BYTES_MAX};
use crate::runtime::net::idle;
use crate::runtime::net::io::PeekEnd;
use crate::runtime::net::pool;
use crate::runtime::net::tunnel::Tunnel;
use crate::runtime::shard::Shard;

/// Who a forwarded connection is between, and where it goes.
pub struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub backend: usize,
    /// The listener's metric id (the connection is counted closed at the end).
    pub listener_metric: usize,
}

/// Forwards `client` to a server of `ends.backend` until both sides are done; `slot` (the
/// connection's slot and per-IP count) is held until then.
pub async fn forward(
    shard: Rc<Shard>,
    client: TcpStream,
    ends: Ends,
    slot: (StaticPermit, Option<crate::runtime::conn::perip::IpGuard>),
) {
    forward_bytes(&shard, client, &ends).await;
    metrics::with(|m| m.connection_closed(ends.listener_metric));
    drop(slot);
}

async fn forward_bytes(shard: &Shard, mut client: TcpStream, ends: &Ends) {
    let (peer, local, backend) = (ends.peer, ends.local, ends.backend);
    let backends = &shard.backends;
    let mut lease = match backends
        .acquire(backend, peer.ip(), &mut Tried::default(), false)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(core = shard.id, peer = %peer, backend = %backends.name(backend), status = e.status(), "L4: no backend server; closed");
            return;
        }
    };
    if backends.introduce(&mut lease, peer, local).await.is_err() {
        backends.release(lease, false);
        return;
    }
    let backend_id = shard.ids.backends[backend];
    metrics::with(|m| m.tunnel_opened(backend_id));
    let opened = Instant::now();
    let watch = idle::watch(shard.config.timeouts.tunnel_idle);
    let result = Tunnel::raw(&mut client, &mut lease.conn, &watch).await;
    debug!(core = shard.id, peer = %peer, result = ?result.err(), "L4 connection ended");
    let _ = lease.conn.close().await;
    let _ = client.close().await;
    metrics::with(|m| m.tunnel_closed(backend_id, opened.elapsed()));
    backends.release(lease, false);
}

/// On a TLS listener with `[[tls_passthrough]]` rules: peeks at the ClientHello (nothing is
/// consumed) and returns the backend whose `sni` list names its server name, if any.
/// `Err`: the connection is closed (no hello within `timeouts.header`, or an oversized one).
pub async fn passthrough_backend(
    shard: &Shard,
    stream: &TcpStream,
    listener: usize,
    peer: SocketAddr,
) -> Result<Option<usize>, ()> {
    let rules: Vec<_> = shard
        .config
        .tls_passthrough
        .iter()
        .filter(|r| r.listener == listener)
        .collect();
    if rules.is_empty() {
        return Ok(None);
    }
    let mut buf = pool::take_vec_for(HELLO_BYTES_MAX + 64);
    buf.resize(HELLO_BYTES_MAX + 64, 0);
    let limit = shard.config.timeouts.header;
    let result = crate::runtime::net::io::peek_until(stream, limit, &mut buf, |b| match sni(b) {
        Ok(Hello::Incomplete) => None,
        Ok(Hello::Complete(name)) => Some(name),
        // Not a ClientHello Ringway can read: rustls answers it (with an alert).
        Err(_) => Some(None),
    })
    .await
    .map_err(|end| match end {
        PeekEnd::TimedOut => "no complete ClientHello within timeouts.header",
        PeekEnd::Closed => "closed before its ClientHello",
        PeekEnd::Full => "ClientHello too long",
    });
    pool::give_vec(buf);
    match result {
        Ok(Some(name)) => Ok(rules.iter().find(|r| r.matches(&name)).map(|r| r.backend)),
        Ok(None) => Ok(None),
        Err(why) => {
            info!(core = shard.id, peer = %peer, "TLS passthrough: {why}; closed");
            Err(())
        }
    }
}
