//! WebSocket tunnel mode (`mode = "tunnel"`): Ringway completes the client's handshake itself,
//! opens a raw TCP/UDS stream to a pool server, and from then on passes message payloads to
//! the backend and the backend's bytes to the client as frames (`frame = "text" | "binary"`).
//! The frame logic is sans-IO (`crate::protocol::ws_endpoint`); this is the glue around it.
//!
//! One future drives both directions, like the proxy-mode `Tunnel`: reads go into the core's
//! scratch buffer and are written straight on; only what a destination does not take at once
//! is kept (a spill per direction), and a direction with a spill reads nothing more
//! (backpressure). Idle tunnels hold no buffer.
//!
//! Ends:
//! - client Close: answered with a Close (its code), the backend's write side is shut, the
//!   tunnel ends;
//! - backend EOF: Close 1000 to the client, whose Close is awaited (at most `CLOSE_WAIT`);
//! - a protocol violation: Close 1002 / 1007 / 1009, logged once, the tunnel ends;
//! - `ping_interval`: a ping each interval; a client that leaves two unanswered gets Close
//!   1001 (counted in `ringway_ws_ping_timeouts_total`);
//! - a drain (SIGTERM, upgrade): Close 1001 between two messages, the client's Close awaited;
//! - a server drain reaching this tunnel's `evict::Ticket`: Close 1012 to the client between
//!   two messages, the raw backend connection closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use tracing::info;

use crate::observe::metrics;
use crate::protocol::ws::opcode;
use crate::protocol::ws_endpoint::{self as wse, code, Decoder, Event};
use crate::runtime::backend::upstream::Upstream;
use crate::runtime::conn::client::Terminate;
use crate::runtime::net::evict::Ticket;
use crate::runtime::net::idle::{self, Watch};
use crate::runtime::net::pool;
use crate::runtime::net::tunnel::write_some;

/// After Ringway sent its Close: how long the client's Close is awaited.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Frames waiting for the client beyond this: the client's input is not read (its pings would
/// queue pongs without bound).
const CLIENT_OUT_MAX: usize = 16 * 1024;
/// Room kept in front of backend bytes in the scratch buffer: a frame header and an
/// unfinished UTF-8 character carried from the last read.
const FRONT: usize = 14 + 3;
/// Turns per poll before yielding, so one busy tunnel cannot starve a core.
const TURNS_MAX: usize = 16;

/// What a tunnel-mode connection needs beyond a proxy tunnel's job.
#[derive(Debug)]
/// Bytes waiting for a destination that did not take them at once.
#[derive(Default)]
struct Spill {
    buf: Option<Vec<u8>>,
    pos: usize,
}

impl Spill {
    fn len(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len() - self.pos)
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf
            .get_or_insert_with(|| pool::take_vec_for(bytes.len()))
            .extend_from_slice(bytes);
    }

    /// Writes what is held; `Ready(Ok(()))` once empty.
    fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        while let Some(b) = &self.buf {
            if self.pos == b.len() {
                if let Some(b) = self.buf.take() {
                    pool::give_vec(b);
                }
                self.pos = 0;
                break;
            }
            match write_some(cx, w, &b[self.pos..]) {
                Poll::Ready(Ok(n)) => self.pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            pool::give_vec(b);
        }
    }
}

/// How the tunnel is winding down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    /// Ringway sent its Close (backend EOF, drain, ping timeout): waiting for the client's.
    Closing,
    /// Everything after the frames in `to_client` is over: flush them and end.
    Ending,
}

/// How the tunnel ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ClientClosed(Option<u16>),
    BackendClosed,
    Violation(u16),
    PingTimeout,
    Drained,
    ClientGone,
}

pub struct Endpoint<'a, C> {
    client: &'a mut C,
    backend: &'a mut Upstream,
    watch: &'a Rc<Watch>,
    ping: Option<(Rc<Watch>, Duration)>,
    pings_unanswered: u8,
    text: bool,
    dec: Decoder,
    /// Client bytes not decoded yet (an unfinished frame header or control frame).
    pending_in: Vec<u8>,
    to_client: Spill,
    to_backend: Spill,
    /// An unfinished UTF-8 character from the backend (text frames).
    carry: [u8; 3],
    carry_len: u8,
    stage: Stage,
    /// Shut the backend's write side once `to_backend` is out.
    shut_backend: bool,
    backend_eof: bool,
    end: Option<End>,
    ticket: Option<&'a Ticket>,
}

impl<'a, C: AsyncRead + AsyncWrite + Unpin> Endpoint<'a, C> {
    pub fn new(
        client: &'a mut C,
        backend: &'a mut Upstream,
        watch: &'a Rc<Watch>,
        t: &mut Terminate,
    ) -> Self {
        Endpoint {
            client,
            backend,
            watch,
            ping: t.ping.map(|d| (idle::watch(d), d)),
            pings_unanswered: 0,
            text: t.text,
            dec: Decoder::new(t.max_message),
            pending_in: std::mem::take(&mut t.early),
            to_client: Spill::default(),
            to_backend: Spill::default(),
            carry: [0; 3],
            carry_len: 0,
            stage: Stage::Open,
            shut_backend: false,
            backend_eof: false,
            end: None,
            ticket: None,
        }
    }

    /// Registered for server drains: its ticket's close code ends it (the client gets that
    /// code, the backend connection is closed).
    pub fn evictable(mut self, ticket: &'a Ticket) -> Self {
        self.ticket = Some(ticket);
        self
    }

    /// Queues Ringway's Close with `code` and stops taking data.
    fn send_close(&mut self, close: u16, end: End, wait_for_client: bool) {
        let mut f = Vec::with_capacity(4);
        wse::close(&mut f, close);
        self.to_client.push(&f);
        metrics::with(|m| m.ws_close_sent(close));
        self.end.get_or_insert(end);
        if wait_for_client {
            self.stage = Stage::Closing;
            self.watch.restart(CLOSE_WAIT);
        } else {
            self.stage = Stage::Ending;
        }
    }

    /// Decodes what `buf` holds; returns the bytes used. Messages go to the backend (what it
    /// does not take now goes to `to_backend`), control frames are answered.
    fn decode(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> io::Result<usize> {
        let mut used = 0;
        while used < buf.len() && self.stage != Stage::Ending && self.to_backend.len() == 0 {
            let (n, ev) = match self.dec.decode(&mut buf[used..]) {
                Ok(r) => r,
                Err(v) => {
                    info!(code = v.code(), error = ?v, "websocket tunnel: client broke the protocol; closing");
                    self.send_close(v.code(), End::Violation(v.code()), false);
                    return Ok(buf.len());
                }
            };
            if n == 0 && ev.is_none() {
                break;
            }
            match ev {
                None => {}
                Some(Event::Message { payload, .. }) => {
                    metrics::with(|m| m.messages_in.set(m.messages_in.get() + 1));
                    // After Ringway's Close the backend is gone or going: drop data.
                    if self.stage == Stage::Open && !self.backend_eof {
                        let mut sent = 0;
                        while sent < payload.len() {
                            match write_some(cx, self.backend, &payload[sent..]) {
                                Poll::Ready(Ok(k)) => sent += k,
                                Poll::Ready(Err(e)) => return Err(e),
                                Poll::Pending => break,
                            }
                        }
                        if sent < payload.len() {
                            self.to_backend.push(&payload[sent..]);
                        }
                    }
                }
                Some(Event::Ping(p)) if self.stage == Stage::Open => {
                    let mut f = Vec::with_capacity(2 + p.len());
                    wse::control_frame(&mut f, opcode::PONG, p);
                    self.to_client.push(&f);
                }
                Some(Event::Ping(_)) => {}
                Some(Event::Pong(_)) => self.pings_unanswered = 0,
                Some(Event::Close { code: c, .. }) => {
                    if self.stage == Stage::Open {
                        // Answer with the client's code (an empty Close gets an empty one).
                        let mut f = Vec::with_capacity(4);
                        match c {
                            Some(c) => wse::close(&mut f, c),
                            None => wse::control_frame(&mut f, opcode::CLOSE, &[]),
                        }
                        self.to_client.push(&f);
                    }
                    self.end.get_or_insert(End::ClientClosed(c));
                    self.stage = Stage::Ending;
                    self.shut_backend = true;
                }
            }
            used += n;
            self.dec.release();
        }
        Ok(used)
    }

    /// Reads the client and decodes. `Ready(Ok(true))`: progress.
    fn poll_client(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if !self.pending_in.is_empty() {
            // Decode what is held first (early bytes, an unfinished frame).
            let mut held = std::mem::take(&mut self.pending_in);
            let used = self.decode(cx, &mut held)?;
            if used > 0 {
                held.drain(..used);
                self.pending_in = held;
                return Poll::Ready(Ok(true));
            }
            self.pending_in = held;
        }
        let r = pool::with_scratch(|scratch| {
            // With bytes held, read only what completes a control frame or header.
            let room = if self.pending_in.is_empty() {
                scratch.len()
            } else {
                scratch.len().min(256)
            };
            let n = match Pin::new(&mut *self.client).poll_read(cx, &mut scratch[..room]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if !self.pending_in.is_empty() {
                self.pending_in.extend_from_slice(&scratch[..n]);
                return Poll::Ready(Ok(Some(())));
            }
            let used = self.decode(cx, &mut scratch[..n])?;
            self.pending_in.extend_from_slice(&scratch[used..n]);
            Poll::Ready(Ok(Some(())))
        });
        match r {
            Poll::Ready(Ok(Some(()))) => {
                if self.stage == Stage::Open {
                    self.watch.touch();
                }
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Ok(None)) => {
                // EOF without a Close.
                self.end.get_or_insert(End::ClientGone);
                self.stage = Stage::Ending;
                self.to_client = Spill::default();
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads the backend and frames its bytes for the client. `Ready(Ok(true))`: progress.
    fn poll_backend(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let carry_len = self.carry_len as usize;
        let carry = self.carry;
        let text = self.text;
        let r = pool::with_scratch(|scratch| {
            let n = match Pin::new(&mut *self.backend).poll_read(cx, &mut scratch[FRONT..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let start = FRONT - carry_len;
            scratch[start..FRONT].copy_from_slice(&carry[..carry_len]);
            let data = &scratch[start..FRONT + n];
            let len = if text {
                match wse::utf8_prefix(data) {
                    Ok(k) => k,
                    Err(wse::NotUtf8) => return Poll::Ready(Ok(Some(Err(())))),
                }
            } else {
                data.len()
            };
            let rest = data.len() - len;
            let mut kept = [0u8; 3];
            kept[..rest].copy_from_slice(&data[len..]);
            self.carry = kept;
            self.carry_len = rest as u8;
            if len == 0 {
                return Poll::Ready(Ok(Some(Ok(()))));
            }
            let op = if text { opcode::TEXT } else { opcode::BINARY };
            let (h, hn) = wse::frame_header(op, len);
            scratch[start - hn..start].copy_from_slice(&h[..hn]);
            let frame = &scratch[start - hn..start + len];
            let mut sent = 0;
            while sent < frame.len() {
                match write_some(cx, &mut *self.client, &frame[sent..]) {
                    Poll::Ready(Ok(k)) => sent += k,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if sent < frame.len() {
                self.to_client.push(&frame[sent..]);
            }
            metrics::with(|m| m.messages_out.set(m.messages_out.get() + 1));
            Poll::Ready(Ok(Some(Ok(()))))
        });
        match r {
            Poll::Ready(Ok(Some(Ok(())))) => {
                self.watch.touch();
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Ok(Some(Err(())))) => {
                info!("websocket tunnel: backend sent bytes that are not UTF-8 on a text route; closing with 1011");
                self.send_close(code::INTERNAL, End::Violation(code::INTERNAL), false);
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Ok(None)) => {
                self.backend_eof = true;
                self.send_close(code::NORMAL, End::BackendClosed, true);
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Err(e)) => {
                // A reset backend (or a client write that failed: the Close will fail too).
                info!(error = %e, "websocket tunnel: backend connection failed; closing with 1011");
                self.backend_eof = true;
                self.send_close(code::INTERNAL, End::BackendClosed, false);
                Poll::Ready(Ok(true))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Pings and drains: may queue a ping or Ringway's Close.
    fn timers(&mut self) {
        if self.stage != Stage::Open {
            return;
        }
        let evicted = self.ticket.and_then(Ticket::close_code);
        let closing = evicted.is_some() || idle::tunnels_closing();
        if closing && !self.dec.in_message() && self.to_backend.len() == 0 {
            self.send_close(evicted.unwrap_or(code::GOING_AWAY), End::Drained, true);
            self.shut_backend = true;
            return;
        }
        let Some((ping, every)) = &self.ping else {
            return;
        };
        if !ping.expired() {
            return;
        }
        let every = *every;
        ping.restart(every);
        if self.pings_unanswered >= 2 {
            metrics::with(|m| m.ws_ping_timeouts.set(m.ws_ping_timeouts.get() + 1));
            info!("websocket tunnel: two pings unanswered; closing with 1001");
            self.send_close(code::GOING_AWAY, End::PingTimeout, false);
            return;
        }
        self.pings_unanswered += 1;
        let mut f = Vec::with_capacity(9);
        wse::control_frame(&mut f, opcode::PING, b"ringway");
        self.to_client.push(&f);
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> Future for Endpoint<'_, C> {
    type Output = io::Result<End>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.watch.expired() {
            return Poll::Ready(match this.stage {
                // The client did not answer Ringway's Close in time: the end stands.
                Stage::Closing => Ok(this.end.unwrap_or(End::ClientGone)),
                _ => Err(io::ErrorKind::TimedOut.into()),
            });
        }
        this.watch.register(cx);
        if let Some(t) = this.ticket {
            t.register(cx);
        }
        if let Some((ping, _)) = &this.ping {
            ping.register(cx);
        }
        for _ in 0..TURNS_MAX {
            let mut progress = false;
            this.timers();
            let client_out = this.to_client.flush(cx, &mut *this.client)?;
            let backend_out = this.to_backend.flush(cx, &mut *this.backend)?;
            if backend_out.is_ready() && this.shut_backend {
                // glommio's close is a non-blocking shutdown(SHUT_WR).
                let _ = Pin::new(&mut *this.backend).poll_close(cx);
                this.shut_backend = false;
            }
            if this.stage == Stage::Ending {
                if client_out.is_ready() {
                    return Poll::Ready(Ok(this.end.unwrap_or(End::ClientGone)));
                }
                return Poll::Pending;
            }
            // The client: while its output is small and the backend takes what it sends.
            if backend_out.is_ready() && this.to_client.len() < CLIENT_OUT_MAX {
                match this.poll_client(cx)? {
                    Poll::Ready(p) => progress |= p,
                    Poll::Pending => {}
                }
            }
            // The backend: while the client takes what it is sent.
            if this.stage == Stage::Open && client_out.is_ready() && !this.backend_eof {
                match this.poll_backend(cx)? {
                    Poll::Ready(p) => progress |= p,
                    Poll::Pending => {}
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Completes the client's handshake for a tunnel-mode route: a pool server is connected first
/// (none reachable: 502/503/504 as for a proxied upgrade), then `101` with the accept value and
/// the chosen subprotocol. The connection then becomes a tunnel of its own task.
pub async fn open(
    shard: &Rc<crate::runtime::shard::Shard>,
    c: &mut crate::runtime::conn::client::Client,
    route: &crate::config::WebSocketRoute,
    accept: &[u8; 28],
    protocol: Option<usize>,
    sticky: crate::policy::balance::Sticky,
) -> crate::runtime::conn::client::Next {
    use crate::runtime::conn::client::{respond_error, Next};
    use futures_lite::io::AsyncWriteExt;
    let Some(mode) = &route.tunnel else {
        return respond_error(c, 500, true).await;
    };
    let backends = &shard.backends;
    let name = backends.name(route.backend);
    let connect = c.timeouts.connect.unwrap_or(shard.config.timeouts.connect);
    let lease = match backends
        .acquire_within(
            route.backend,
            c.peer.ip(),
            sticky,
            &mut crate::policy::balance::Tried::default(),
            false,
            connect,
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(core = shard.id, peer = %c.peer, backend = %name, status = e.status(), "no backend server for tunnel");
            metrics::with(|m| m.upgrade_rejected(metrics::Rejected::Backend));
            return crate::runtime::conn::client::respond_no_server(c, e, true).await;
        }
    };
    let mut lease = lease;
    c.backend = Some((lease.backend, lease.server));
    if backends
        .introduce(&mut lease, c.peer, c.local)
        .await
        .is_err()
    {
        tracing::warn!(core = shard.id, backend = %name, "backend write failed (PROXY header)");
        backends.release(lease, false);
        return respond_error(c, 502, true).await;
    }
    let mut head = pool::take_vec();
    head.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    head.extend_from_slice(accept);
    if let Some(p) = protocol.and_then(|i| mode.subprotocols.get(i)) {
        head.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        head.extend_from_slice(p.as_bytes());
    }
    if let Some(v) = backends.set_cookie(lease.backend, lease.server, sticky, c.stream.is_tls()) {
        head.extend_from_slice(b"\r\nSet-Cookie: ");
        head.extend_from_slice(v.as_bytes());
    }
    head.extend_from_slice(b"\r\n\r\n");
    crate::runtime::conn::client::dress(c, &mut head);
    c.head_written(head.len());
    let sent = c.stream.write_all(&head).await;
    pool::give_vec(head);
    if sent.is_err() {
        backends.release(lease, false);
        return Next::Close;
    }
    c.status = 101;
    let early = c.rb.data().to_vec();
    c.rb.consume(early.len());
    Next::Terminate(
        lease,
        Box::new(Terminate {
            text: mode.text,
            ping: mode.ping_interval,
            max_message: mode.max_message,
            early,
        }),
    )
}

/// The subprotocol to answer with: the first the client lists (`Sec-WebSocket-Protocol`, one
/// or more headers, comma-separated) that the route offers; its index in the route's list.
pub fn choose_subprotocol(offered: &[String], requested: &[&[u8]]) -> Option<usize> {
    requested
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .find_map(|t| offered.iter().position(|o| o.as_bytes() == t))
}

#[cfg(test)]
mod tests {
    use super::choose_subprotocol;

    #[test]
    fn subprotocol_is_the_first_the_client_asks_for_that_the_route_offers() {
        let offered = vec!["chat.v2".to_string(), "chat.v1".to_string()];
        assert_eq!(
            choose_subprotocol(&offered, &[b"chat.v1, chat.v2"]),
            Some(1)
        );
        assert_eq!(choose_subprotocol(&offered, &[b"x", b" chat.v2 "]), Some(0));
        assert_eq!(choose_subprotocol(&offered, &[b"soap"]), None);
        assert_eq!(choose_subprotocol(&offered, &[]), None);
        assert_eq!(choose_subprotocol(&[], &[b"chat.v1"]), None);
        // Tokens compare exactly (RFC 6455 §4.1: case-sensitive).
        assert_eq!(choose_subprotocol(&offered, &[b"CHAT.V1"]), None);
    }
}
