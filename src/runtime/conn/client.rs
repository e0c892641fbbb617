//! The HTTP/1.1 connection's session types, shared by the dispatcher (`dispatch`) and every
//! handler: the `Client` (stream, read buffer, timeouts, what the exchange in progress has
//! answered), `Next` (what the connection does after an exchange), the `TunnelJob` a
//! connection becomes, the access-log record of a request, and the error responders.
//!
//! Handlers import this module, never `dispatch`: dispatch imports the handlers, so the
//! dependency runs one way.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::runtime::net::stream::ClientStream;
use futures_lite::io::AsyncWriteExt;

use crate::config::Style;
use crate::observe::metrics::{self, HandlerKind};
use crate::protocol::http::head::Request;
use crate::protocol::http::response;
use crate::runtime::backend::pools::Lease;
use crate::runtime::conn::access;
use crate::runtime::net::idle;
use crate::runtime::net::idle::Watch;
use crate::runtime::net::io::ReadBuf;
use crate::runtime::net::pool;
use crate::runtime::shard::Core;
use crate::runtime::shard::Shard;

/// What the connection does after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// A verified WebSocket upgrade: the connection becomes a tunnel to this backend lease.
    Tunnel(Lease),
    /// A tunnel-mode route (`mode = "tunnel"`): Ringway answered the handshake itself and
    /// frames the bytes of this raw backend lease.
    Terminate(Lease, Box<Terminate>),
}

/// A connection handed over to a tunnel: it runs in a task of its own, so a tunnel holds only
/// what tunnelling needs (not the larger state of the HTTP connection task).
pub struct TunnelJob {
    pub stream: ClientStream,
    pub peer: SocketAddr,
    pub lease: Lease,
    /// The generation the tunnel was opened under (its backend pools own the lease).
    pub shard: Rc<Shard>,
    /// The upgrade request, for the tunnel's access log line when it ends.
    pub request: Option<Box<AccessRequest>>,
    pub vhost: usize,
    /// Tunnel mode: Ringway ends the WebSocket (`None`: bytes pass through).
    pub terminate: Option<Box<Terminate>>,
    /// The route's `timeouts.tunnel_idle` (`None`: the global one).
    pub tunnel_idle: Option<Duration>,
}

/// What the access log needs of a request head, copied only when the log is on.
#[derive(Default)]
pub struct AccessRequest {
    buf: Vec<u8>,
    /// Ends of method, target, referer and user agent in `buf`.
    ends: [usize; 4],
    pub minor: u8,
    pub started: Option<Instant>,
    pub bytes_in_start: u64,
    pub bytes_out_start: u64,
    /// Bytes of response heads written for this request (a 101 included): `bytes_out` in the
    /// access log is the body bytes, as the combined format's `%b`, so they are taken off.
    pub head_out: u64,
}

impl AccessRequest {
    pub(crate) fn fill(&mut self, req: &Request<'_, '_>) {
        self.buf.clear();
        let parts: [&[u8]; 4] = [
            req.method.as_bytes(),
            req.target.as_bytes(),
            req.header("referer").unwrap_or_default(),
            req.header("user-agent").unwrap_or_default(),
        ];
        for (i, p) in parts.iter().enumerate() {
            // Bounded: a line stays readable whatever a client sends.
            self.buf.extend_from_slice(&p[..p.len().min(2048)]);
            self.ends[i] = self.buf.len();
        }
        self.minor = req.minor_version;
    }

    fn part(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

/// Writes one access log line (`status` 0: nothing was answered, nothing is logged).
#[allow(clippy::too_many_arguments)]
pub fn log_access(
    shard: &Shard,
    peer: SocketAddr,
    req: Option<&AccessRequest>,
    vhost: usize,
    status: u16,
    bytes: (u64, u64),
    backend: Option<(usize, usize)>,
    upgrade: bool,
) {
    let Some(req) = req.filter(|r| status != 0 && r.started.is_some()) else {
        return;
    };
    let vhost_name = shard
        .ids
        .vhosts
        .iter()
        .position(|&id| id == vhost)
        .map_or("-", |i| shard.config.vhosts[i].name.as_str());
    let log_name = backend.map(|(b, s)| shard.backends.log_name(b, s));
    let entry = crate::observe::accesslog::Entry {
        time: SystemTime::now(),
        client: peer.ip(),
        vhost: vhost_name,
        method: req.part(0),
        target: req.part(1),
        minor: req.minor,
        status,
        bytes_in: bytes.0.saturating_sub(req.bytes_in_start),
        bytes_out: bytes
            .1
            .saturating_sub(req.bytes_out_start)
            .saturating_sub(req.head_out),
        duration: req.started.map(|t| t.elapsed()).unwrap_or_default(),
        backend: log_name.as_deref(),
        upgrade,
        referer: req.part(2),
        user_agent: req.part(3),
    };
    access::record(&entry);
}

pub struct Client {
    pub stream: ClientStream,
    /// The client's address (from the PROXY header on a `proxy_protocol` listener), and the
    /// address it connected to.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: usize,
    pub rb: ReadBuf,
    /// The connection's timeouts (header, keep-alive, upstream read), swept per core.
    pub watch: Rc<Watch>,
    /// The exchange in progress: its answer's status (0 until one is written), vhost and
    /// handler (metric ids), the backend server that answered, and when its head was read.
    pub status: u16,
    pub vhost: usize,
    pub handler: HandlerKind,
    pub backend: Option<(usize, usize)>,
    pub started: Instant,
    /// The request as the access log needs it; `None` while the log is off.
    pub access: Option<Box<AccessRequest>>,
    /// How this exchange's answers look (header rules, error pages), when its route has a
    /// style (`config::routes::Style`).
    pub style: Option<Rc<Style>>,
    /// The route's own `timeouts` (each `None`: the global one).
    pub timeouts: crate::config::RouteTimeouts,
}

impl Client {
    /// `n` bytes of a response head were written (taken off the access log's `bytes_out`).
    pub fn head_written(&mut self, n: usize) {
        if let Some(a) = self.access.as_deref_mut() {
            a.head_out += n as u64;
        }
    }

    pub fn new(
        stream: ClientStream,
        peer: SocketAddr,
        local: SocketAddr,
        listener: usize,
        core: &Core,
    ) -> Client {
        Client {
            stream,
            peer,
            local,
            listener,
            rb: ReadBuf::new(),
            // The first head must arrive within `header` of the accept.
            watch: idle::watch(core.current().config.timeouts.header),
            status: 0,
            vhost: metrics::NO_VHOST,
            handler: HandlerKind::Error,
            backend: None,
            started: Instant::now(),
            access: None,
            style: None,
            timeouts: crate::config::RouteTimeouts::default(),
        }
    }

    /// The scheme the client used, for `X-Forwarded-Proto` and `Forwarded`.
    pub fn proto(&self) -> &'static str {
        if self.stream.is_tls() {
            "https"
        } else {
            "http"
        }
    }
}

/// Tunnel mode's settings for one connection: Ringway ends the client's WebSocket and passes
/// message payloads to the backend (`handlers::wstunnel` runs it).
pub struct Terminate {
    pub text: bool,
    pub ping: Option<Duration>,
    pub max_message: usize,
    /// Bytes the client sent after its upgrade request (already read).
    pub early: Vec<u8>,
}

pub async fn too_many(c: &mut Client, retry_after_s: u64, close: bool) -> Next {
    let mut secs = Vec::with_capacity(20);
    crate::protocol::http::push_decimal(&mut secs, retry_after_s);
    respond_with(c, 429, &[("Retry-After", &secs)], close).await
}

pub async fn respond_error(c: &mut Client, status: u16, close: bool) -> Next {
    let extra: &[(&str, &[u8])] = match status {
        426 => &[("Sec-WebSocket-Version", b"13"), ("Upgrade", b"websocket")],
        _ => &[],
    };
    respond_with(c, status, extra, close).await
}

/// No backend server for the request: its status, and `no servers` in the body for a backend
/// whose set is empty.
pub async fn respond_no_server(
    c: &mut Client,
    e: crate::runtime::backend::pools::NoServer,
    close: bool,
) -> Next {
    let Some(text) = e.text() else {
        return respond_error(c, e.status(), close).await;
    };
    c.status = e.status();
    let mut out = pool::take_vec();
    response::write_text(&mut out, e.status(), text, close);
    dress(c, &mut out);
    c.head_written(out.len().saturating_sub(text.len() + 1));
    let ok = c.stream.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// A short error response with `extra` fields (the route's error page, if it has one for
/// `status`, as `text/html`), dressed by the route's header rules.
pub async fn respond_with(
    c: &mut Client,
    status: u16,
    extra: &[(&str, &[u8])],
    close: bool,
) -> Next {
    c.status = status;
    let mut out = pool::take_vec();
    match c.style.as_deref().and_then(|s| s.page(status)) {
        Some(page) => {
            let mut fields: [(&str, &[u8]); 4] = [("", b""); 4];
            fields[0] = ("Content-Type", b"text/html");
            let n = extra.len().min(3);
            fields[1..=n].copy_from_slice(&extra[..n]);
            response::write_head(
                &mut out,
                status,
                &fields[..=n],
                Some(page.len() as u64),
                close,
            );
            out.extend_from_slice(page);
        }
        None => response::write_error(&mut out, status, extra, close),
    }
    dress(c, &mut out);
    // Only the body counts in the access log's bytes_out: the page, or `STATUS REASON\n`.
    let body_len = match c.style.as_deref().and_then(|s| s.page(status)) {
        Some(page) => page.len(),
        None => 5 + response::reason(status).len(),
    };
    c.head_written(out.len().saturating_sub(body_len));
    let ok = c.stream.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Applies the exchange's response header rules (vhost's, then route's) to the head that
/// starts `buf` (what follows the head is kept). Nothing to do without a style.
pub fn dress(c: &Client, buf: &mut Vec<u8>) {
    if let Some(style) = c.style.as_deref().filter(|s| !s.response.is_empty()) {
        let mut scratch = pool::take_vec();
        crate::policy::headers::rewrite(buf, &style.response, &mut scratch);
        pool::give_vec(scratch);
    }
}

/// A fixed answer Ringway makes itself (`handler = "respond"`, a redirect): `fields`, then
/// `body`, dressed by the route's header rules.
pub async fn respond_fixed(
    c: &mut Client,
    status: u16,
    fields: &[(&str, &[u8])],
    body: &[u8],
    head_only: bool,
    close: bool,
) -> Next {
    c.status = status;
    let mut out = pool::take_vec();
    let length = (!matches!(status, 204 | 304)).then_some(body.len() as u64);
    response::write_head(&mut out, status, fields, length, close);
    dress(c, &mut out);
    c.head_written(out.len());
    if !head_only && length.is_some() {
        out.extend_from_slice(body);
    }
    let ok = c.stream.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}
