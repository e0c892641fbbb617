//! One client connection: read a head, route it, act, repeat (keep-alive, pipelining in order).
//!
//! The head is parsed once, when its blank line has arrived (`io::head_end` finds it without
//! parsing); `plan` turns the borrowed request into an owned `Action`, then the head's bytes
//! are consumed and the action runs. Anything after the head stays in the read buffer: the
//! next pipelined request, or the early bytes of a WebSocket client.

use std::net::SocketAddr;
use std::rc::Rc;

use super::stream::ClientStream;
use futures_lite::io::AsyncWriteExt;
use tracing::{debug, info};

use super::backends::Lease;
use super::idle::Watch;
use super::io::{self, head_end, ReadBuf, ReadError};
use super::proxy::{self, ProxyPlan};
use super::{echo, pool, static_serve, wsproxy, Shard};
use crate::config::{Handler, WebSocketRoute};
use crate::http::forward::{self, ForwardInfo};
use crate::http::head::{self, empty_headers, Body, HeadError, Request};
use crate::http::response;
use crate::static_files;
use crate::ws;

/// Where a request goes, decided while the head is borrowed; owns everything it needs.
// The proxy plan carries the client's Host inline (255 bytes) so a request allocates nothing;
// an `Action` lives on the stack for one request, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Action<'s> {
    Error {
        status: u16,
        close: bool,
    },
    Static(static_files::StaticResponse, bool),
    EchoUpgrade {
        accept: [u8; 28],
    },
    WsProxy {
        route: &'s WebSocketRoute,
        key: [u8; 24],
        head: Vec<u8>,
    },
    Proxy(ProxyPlan<'s>),
}

/// What the connection does after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// A verified WebSocket upgrade: the connection becomes a tunnel to this backend lease.
    Tunnel(Lease),
}

/// A connection handed over to a tunnel: it runs in a task of its own, so a tunnel holds only
/// what tunnelling needs (not the larger state of the HTTP connection task).
pub struct TunnelJob {
    pub stream: ClientStream,
    pub peer: SocketAddr,
    pub lease: Lease,
}

pub struct Client {
    pub stream: ClientStream,
    pub peer: SocketAddr,
    pub listener: usize,
    pub rb: ReadBuf,
    /// The connection's timeouts (header, keep-alive, upstream read), swept per core.
    pub watch: Rc<Watch>,
}

impl Client {
    /// The scheme the client used, for `X-Forwarded-Proto` and `Forwarded`.
    pub fn proto(&self) -> &'static str {
        if self.stream.is_tls() {
            "https"
        } else {
            "http"
        }
    }
}

/// Serves a connection until it closes or becomes a tunnel (returned, for its own task).
pub async fn serve(shard: Rc<Shard>, client: Client) -> Option<TunnelJob> {
    let mut client = client;
    let mut first = true;
    // Ringway ends the connection (after an error, or a response that closes it): the client
    // may still be sending, so the close lingers (see `io::linger_close`).
    let mut linger = false;
    loop {
        match read_head(&shard, &mut client, first).await {
            Ok(Some(end)) => match handle(&shard, &mut client, end).await {
                Next::KeepAlive => first = false,
                Next::Close => {
                    linger = true;
                    break;
                }
                Next::Tunnel(lease) => {
                    return Some(TunnelJob {
                        stream: client.stream,
                        peer: client.peer,
                        lease,
                    })
                }
            },
            Ok(None) => break,
            Err(e) => {
                let close_with = e.status();
                if let Some(status) = close_with {
                    info!(core = shard.id, peer = %client.peer, status, "bad request head");
                    let mut out = pool::take_vec();
                    response::write_error(&mut out, status, &[], true);
                    linger = client.stream.write_all(&out).await.is_ok();
                    pool::give_vec(out);
                }
                break;
            }
        }
    }
    if linger {
        io::linger_close(&mut client.stream, &mut client.rb, &client.watch).await;
    } else {
        let _ = client.stream.close().await;
    }
    None
}

/// Why reading a head ended without one.
enum HeadFail {
    Head(HeadError),
    /// `timeouts.header` passed with part of a head received.
    TimedOut,
    /// Silent close: EOF, idle keep-alive, or a connection that never sent a byte.
    Quiet,
}

impl HeadFail {
    fn status(&self) -> Option<u16> {
        match self {
            HeadFail::Head(e) => Some(e.status()),
            HeadFail::TimedOut => Some(408),
            HeadFail::Quiet => None,
        }
    }
}

/// Reads until a complete head is buffered; returns its end. `Ok(None)`: peer closed cleanly.
async fn read_head(shard: &Shard, c: &mut Client, first: bool) -> Result<Option<usize>, HeadFail> {
    let t = &shard.config.timeouts;
    let limit = shard.config.limits.max_header_bytes + 1;
    // First request: `header` runs from accept (the watch was started then). Later ones:
    // `keepalive` while idle, then `header` from the first byte of the next request.
    let mut header_running = first;
    if !first {
        c.watch.restart(t.keepalive);
    }
    let mut scanned = 0;
    loop {
        if !c.rb.is_empty() {
            if !header_running {
                header_running = true;
                c.watch.restart(t.header);
            }
            if let Some(end) = head_end(c.rb.data(), scanned) {
                return Ok(Some(end));
            }
            scanned = c.rb.len();
            head::check_request_line(c.rb.data()).map_err(HeadFail::Head)?;
            if c.rb.len() > shard.config.limits.max_header_bytes {
                return Err(HeadFail::Head(HeadError::TooLarge));
            }
        }
        match c.rb.fill_watched(&mut c.stream, limit, &c.watch).await {
            Ok(0) if c.rb.is_empty() => return Ok(None),
            Ok(0) => return Err(HeadFail::Quiet),
            Ok(_) => {}
            Err(ReadError::TimedOut) if c.rb.is_empty() => return Err(HeadFail::Quiet),
            Err(ReadError::TimedOut) => return Err(HeadFail::TimedOut),
            Err(ReadError::Io) => return Err(HeadFail::Quiet),
        }
    }
}

/// Handles one request whose head ends at `end` in the read buffer.
async fn handle(shard: &Rc<Shard>, c: &mut Client, end: usize) -> Next {
    let (action, head_len, body, keep_alive) = {
        let mut headers = empty_headers();
        let max = shard.config.limits.max_header_bytes;
        match head::parse_request(&c.rb.data()[..end], &mut headers, max) {
            Ok(Some(req)) => {
                let action = plan(shard, c, &req);
                (action, req.head_len, req.body, req.keep_alive)
            }
            Ok(None) => (
                Action::Error {
                    status: 400,
                    close: true,
                },
                end,
                Body::None,
                false,
            ),
            Err(e) => {
                info!(core = shard.id, peer = %c.peer, status = e.status(), error = ?e, "bad request");
                (
                    Action::Error {
                        status: e.status(),
                        close: true,
                    },
                    end,
                    Body::None,
                    false,
                )
            }
        }
    };
    c.rb.consume(head_len);
    // Ringway's own handlers take no request bodies; rather than read and discard one, answer
    // and close, so no body byte is ever taken for a request.
    let close = !keep_alive || (body != Body::None && !matches!(action, Action::Proxy(_)));
    match action {
        Action::Error { status, close: c2 } => respond_error(c, status, close || c2).await,
        Action::Static(resp, is_head) => static_serve::send(c, resp, is_head, close).await,
        Action::EchoUpgrade { accept } => echo::run(shard, c, &accept).await,
        Action::WsProxy { route, key, head } => wsproxy::run(shard, c, route, &key, head).await,
        Action::Proxy(plan) => proxy::run(shard, c, plan).await,
    }
}

pub async fn respond_error(c: &mut Client, status: u16, close: bool) -> Next {
    let mut out = pool::take_vec();
    let extra: &[(&str, &[u8])] = match status {
        426 => &[("Sec-WebSocket-Version", b"13"), ("Upgrade", b"websocket")],
        _ => &[],
    };
    response::write_error(&mut out, status, extra, close);
    let ok = c.stream.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Routing decisions (sans-IO apart from the static file open).
fn plan<'s>(shard: &'s Shard, c: &Client, req: &Request<'_, '_>) -> Action<'s> {
    let Some(vhost) = shard.routes.vhost(c.listener, req.host) else {
        // Over TLS the connection was set up for another name (RFC 9110 §15.5.20).
        let status = if c.stream.is_tls() { 421 } else { 404 };
        return Action::Error {
            status,
            close: false,
        };
    };
    let path = req.path();
    let route = vhost.route(path);
    let upgrade = ws::classify(req);
    if let (Some(ws_route), ws::Upgrade::WebSocket { .. } | ws::Upgrade::Invalid { .. }) =
        (route.websocket, upgrade)
    {
        return plan_ws_proxy(shard, c, req, ws_route, upgrade);
    }
    match route.context.map(|ctx| &ctx.handler) {
        Some(Handler::Echo) => match upgrade {
            ws::Upgrade::WebSocket { key } => Action::EchoUpgrade {
                accept: ws::accept_key(key),
            },
            ws::Upgrade::Invalid { status, .. } => Action::Error {
                status,
                close: true,
            },
            // A plain request to a WebSocket-only endpoint.
            ws::Upgrade::None => Action::Error {
                status: 426,
                close: false,
            },
        },
        Some(Handler::Proxy { backend, host }) => {
            Action::Proxy(plan_proxy(c, req, *backend, host.as_deref()))
        }
        Some(Handler::Static) | None => {
            let ims = req.header("if-modified-since");
            let resp = static_files::serve(
                &vhost.doc_root,
                super::static_serve::root_fd(&vhost.doc_root),
                req.method.as_bytes(),
                req.target.as_bytes(),
                ims,
            );
            Action::Static(resp, req.method == "HEAD")
        }
    }
}

fn plan_ws_proxy<'s>(
    shard: &'s Shard,
    c: &Client,
    req: &Request<'_, '_>,
    route: &'s WebSocketRoute,
    upgrade: ws::Upgrade<'_>,
) -> Action<'s> {
    match upgrade {
        ws::Upgrade::WebSocket { key } => {
            let mut k = [0u8; 24];
            k.copy_from_slice(key);
            let mut head = pool::take_vec();
            let info = ForwardInfo {
                client_ip: c.peer.ip(),
                proto: c.proto(),
                upgrade: forward::Upgrade::WebSocket,
                host_override: None,
                chunked: false,
            };
            forward::write_request_head(&mut head, req, &info);
            Action::WsProxy {
                route,
                key: k,
                head,
            }
        }
        ws::Upgrade::Invalid { status, reason } => {
            info!(core = shard.id, peer = %c.peer, status, reason, "websocket upgrade refused");
            Action::Error {
                status,
                close: true,
            }
        }
        ws::Upgrade::None => {
            debug!("unreachable: plain request planned as websocket");
            Action::Error {
                status: 500,
                close: true,
            }
        }
    }
}

fn plan_proxy<'s>(
    c: &Client,
    req: &Request<'_, '_>,
    backend: usize,
    host: Option<&'s str>,
) -> ProxyPlan<'s> {
    let mut head = pool::take_vec();
    let info = ForwardInfo {
        client_ip: c.peer.ip(),
        proto: c.proto(),
        upgrade: forward::Upgrade::None,
        host_override: host,
        chunked: req.body == Body::Chunked,
    };
    forward::write_request_head(&mut head, req, &info);
    let expect_continue = req
        .header("expect")
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    ProxyPlan {
        backend,
        head,
        method_head: req.method == "HEAD",
        idempotent: matches!(
            req.method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
        body: req.body,
        expect_continue: expect_continue && req.minor_version == 1,
        client_keep_alive: req.keep_alive,
        client_host: {
            let mut h = pool::take_vec();
            h.extend_from_slice(req.host.unwrap_or_default());
            h
        },
        host_override: host,
    }
}
