//! WebSocket proxying: connect, forward the head, verify the backend's `101`, then tunnel.
//!
//! Nothing the client sent after its request head reaches the backend unless the backend
//! completed the handshake correctly (`ws::check_backend_101`); any other answer is relayed
//! (or turned into a 502) and the client connection is closed.

use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use glommio::sync::StaticPermit;
use tracing::{debug, info, warn};

use crate::config::WebSocketRoute;
use crate::observe::metrics::{self, Rejected};
use crate::policy::balance::Tried;
use crate::protocol::http::head::{empty_headers, parse_response};
use crate::protocol::ws;
use crate::runtime::backend::upstream::Upstream;
use crate::runtime::conn::client::{respond_error, Client, Next, TunnelJob};
use crate::runtime::handlers::relay;
use crate::runtime::net::io::{ReadBuf, ReadError};
use crate::runtime::net::pool;
use crate::runtime::net::tunnel::Tunnel;
use crate::runtime::shard::Shard;

pub async fn run(
    shard: &Rc<Shard>,
    c: &mut Client,
    route: &WebSocketRoute,
    key: &[u8; 24],
    head: Vec<u8>,
    sticky: crate::policy::balance::Sticky,
) -> Next {
    let backends = &shard.backends;
    let name = backends.name(route.backend);
    // WebSocket connections are long-lived and never pooled: always a fresh connect.
    let connect = c.timeouts.connect.unwrap_or(shard.config.timeouts.connect);
    let mut lease = match backends
        .acquire_within(
            route.backend,
            c.peer.ip(),
            sticky,
            &mut Tried::default(),
            false,
            connect,
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(core = shard.id, peer = %c.peer, backend = %name, status = e.status(), "no backend server for upgrade");
            metrics::with(|m| m.upgrade_rejected(Rejected::Backend));
            pool::give_vec(head);
            return crate::runtime::conn::client::respond_no_server(c, e, true).await;
        }
    };
    c.backend = Some((lease.backend, lease.server));
    if backends
        .introduce(&mut lease, c.peer, c.local)
        .await
        .is_err()
    {
        warn!(core = shard.id, backend = %name, "backend write failed (PROXY header)");
        backends.release(lease, false);
        return respond_error(c, 502, true).await;
    }
    let cookie = backends.set_cookie(lease.backend, lease.server, sticky, c.stream.is_tls());
    match handshake(shard, c, &mut lease.conn, name, key, head, cookie).await {
        Handshake::Done => {
            c.status = 101;
            Next::Tunnel(lease)
        }
        Handshake::Failed(next) => {
            backends.release(lease, false);
            next
        }
    }
}

/// How a handshake with the backend ended.
enum Handshake {
    /// Verified 101, early bytes exchanged: tunnel from here.
    Done,
    /// No tunnel; the client connection continues as this says.
    Failed(Next),
}

async fn handshake(
    shard: &Rc<Shard>,
    c: &mut Client,
    backend: &mut Upstream,
    name: &str,
    key: &[u8; 24],
    head: Vec<u8>,
    cookie: Option<String>,
) -> Handshake {
    let sent = backend.write_all(&head).await;
    pool::give_vec(head);
    if let Err(e) = sent {
        warn!(core = shard.id, backend = %name, error = %e, "backend write failed");
        return Handshake::Failed(respond_error(c, 502, true).await);
    }
    let mut brb = ReadBuf::new();
    let answer = c.timeouts.header.unwrap_or(shard.config.timeouts.header);
    let resp_end = match read_response_head(shard, backend, &mut brb, &c.watch, answer).await {
        Ok(end) => end,
        Err(status) => {
            warn!(core = shard.id, backend = %name, status, "no valid response head from backend");
            metrics::with(|m| m.upgrade_rejected(Rejected::Backend));
            return Handshake::Failed(respond_error(c, status, true).await);
        }
    };
    let verdict = {
        let mut headers = empty_headers();
        let max = shard.config.limits.max_header_bytes;
        match parse_response(&brb.data()[..resp_end], &mut headers, max) {
            Ok(Some(resp)) if resp.code == 101 => ws::check_backend_101(&resp, key).map(|()| 101),
            Ok(Some(resp)) => Ok(resp.code),
            _ => Err("malformed backend response head"),
        }
    };
    match verdict {
        Ok(101) => early_bytes(c, backend, brb, resp_end, cookie).await,
        Ok(code) => {
            info!(core = shard.id, backend = %name, code, "backend refused the upgrade; relayed, no tunnel");
            metrics::with(|m| m.upgrade_rejected(Rejected::Not101));
            relay::response(shard, c, backend, &mut brb, resp_end, "GET").await;
            Handshake::Failed(Next::Close)
        }
        Err(reason) => {
            warn!(core = shard.id, backend = %name, reason, "bad backend handshake; 502, no tunnel");
            metrics::with(|m| m.upgrade_rejected(Rejected::BadAccept));
            Handshake::Failed(respond_error(c, 502, true).await)
        }
    }
}

/// Reads the backend's response head; `Err` is the status to answer the client with.
async fn read_response_head(
    shard: &Shard,
    b: &mut Upstream,
    brb: &mut ReadBuf,
    watch: &Rc<crate::runtime::net::idle::Watch>,
    answer: std::time::Duration,
) -> Result<usize, u16> {
    let limit = shard.config.limits.max_header_bytes + 1;
    watch.restart(answer);
    loop {
        if let Some(end) = crate::runtime::net::io::head_end(brb.data(), 0) {
            return Ok(end);
        }
        if brb.len() >= limit {
            return Err(502);
        }
        match brb.fill_watched(b, limit, watch).await {
            Ok(0) | Err(ReadError::Io) => return Err(502),
            Ok(_) => {}
            Err(ReadError::TimedOut) => return Err(504),
        }
    }
}

/// After a verified 101: the backend's head and early bytes go to the client, the client's
/// early bytes to the backend. The tunnel itself runs in its own task (`run_tunnel`).
async fn early_bytes(
    c: &mut Client,
    backend: &mut Upstream,
    brb: ReadBuf,
    head_end: usize,
    cookie: Option<String>,
) -> Handshake {
    let dressed = c.style.as_deref().is_some_and(|s| !s.response.is_empty());
    let written = if dressed || cookie.is_some() {
        // The route's response rules apply to the 101 (the bytes after it pass as they came),
        // and a sticky backend's cookie joins it.
        let mut out = pool::take_vec();
        out.extend_from_slice(&brb.data()[..head_end]);
        if let Some(v) = &cookie {
            crate::protocol::http::forward::insert_header(&mut out, "Set-Cookie", v.as_bytes());
        }
        crate::runtime::conn::client::dress(c, &mut out);
        // The 101 head is not body bytes in the access log.
        c.head_written(out.len());
        out.extend_from_slice(&brb.data()[head_end..]);
        let r = c.stream.write_all(&out).await;
        pool::give_vec(out);
        r
    } else {
        c.head_written(head_end);
        c.stream.write_all(brb.data()).await
    };
    if written.is_err() {
        return Handshake::Failed(Next::Close);
    }
    drop(brb);
    if !c.rb.is_empty() && backend.write_all(c.rb.data()).await.is_err() {
        return Handshake::Failed(Next::Close);
    }
    c.rb.consume(c.rb.len());
    c.rb.release();
    Handshake::Done
}

/// Bytes flow both ways until both sides close or the tunnel idles out. Spawned as its own
/// task (holding the connection's slot, `permit`), so an idle tunnel costs only this future.
///
/// A plain `fn` returning an `async move` block: an `async fn` would copy its arguments into
/// locals and keep both copies in the future, doubling what every idle tunnel holds (measured:
/// 816 bytes as an `async fn`, 488 like this).
#[allow(clippy::manual_async_fn)]
pub fn run_tunnel(
    mut job: TunnelJob,
    slot: (StaticPermit, Option<crate::runtime::conn::perip::IpGuard>),
    listener_id: usize,
) -> impl std::future::Future<Output = ()> {
    async move {
        metrics::with(|m| m.tunnel_opened(job.shard.ids.backends[job.lease.backend]));
        let opened = std::time::Instant::now();
        // Idle timeout from the per-core sweeper: no timer is polled per message.
        let idle = job
            .tunnel_idle
            .unwrap_or(job.shard.config.timeouts.tunnel_idle);
        let watch = crate::runtime::net::idle::watch(idle);
        // A server drain finds the tunnel by its server (`evict`).
        let ticket = crate::runtime::net::evict::ticket(
            job.shard.backends.name(job.lease.backend),
            job.shard.backends.key(job.lease.backend, job.lease.server),
        );
        let result = match job.terminate.as_deref_mut() {
            None => {
                Tunnel::new(&mut job.stream, &mut job.lease.conn, &watch)
                    .evictable(&ticket)
                    .await
            }
            Some(t) => {
                // Boxed: tunnel mode's endpoint is larger than a plain tunnel, and inline it
                // would size every proxied tunnel's future to it.
                let end = Box::pin(
                    crate::runtime::handlers::wstunnel::Endpoint::new(
                        &mut job.stream,
                        &mut job.lease.conn,
                        &watch,
                        t,
                    )
                    .evictable(&ticket),
                )
                .await;
                end.map(|end| debug!(core = job.shard.id, peer = %job.peer, ?end, "websocket tunnel ended"))
            }
        };
        drop(watch);
        drop(ticket);
        let (core, peer) = (job.shard.id, job.peer);
        let (up, down) = (job.stream.bytes_in, job.stream.bytes_out);
        match result {
            Ok(()) => debug!(core, peer = %peer, up, down, "tunnel closed"),
            Err(_) if job.stream.send_timed_out() => {
                info!(core, peer = %peer, up, down, "client accepted no data within timeouts.send: tunnel closed")
            }
            Err(e) => debug!(core, peer = %peer, up, down, error = %e, "tunnel ended"),
        }
        let _ = job.lease.conn.close().await;
        let _ = job.stream.close().await;
        let shard = job.shard.clone();
        metrics::with(|m| {
            m.tunnel_closed(shard.ids.backends[job.lease.backend], opened.elapsed());
            m.connection_closed(listener_id);
        });
        let server = Some((job.lease.backend, job.lease.server));
        let bytes = (job.stream.bytes_in, job.stream.bytes_out);
        crate::runtime::conn::client::log_access(
            &shard,
            job.peer,
            job.request.as_deref(),
            job.vhost,
            101,
            bytes,
            server,
            true,
        );
        shard.backends.release(job.lease, false);
        drop(slot);
    }
}
