//! HTTP/2 downstream (RFC 9113) with RFC 8441 WebSockets, over the `h2` crate.
//!
//! A connection is an `h2` server connection driven over the client stream (tokio-util's
//! `compat` maps glommio's futures-io traits onto the tokio ones `h2` takes). This task polls
//! the connection (which does its I/O) and spawns one task per stream. A stream is routed like
//! an HTTP/1.1 request on the same listener: vhost by `:authority`, then the URI's route.
//!
//! - `GET`/`HEAD` on a static context: the file, streamed within the stream's flow-control
//!   window.
//! - A proxy context: HTTP/1.1 to the backend (pooled keep-alive connections), request and
//!   response bodies streamed both ways (chunked coding removed and added), trailers passed.
//! - Extended CONNECT (`:protocol websocket`, RFC 8441) on a WebSocket route: proxy mode opens
//!   an HTTP/1.1 upgrade to the backend with Ringway's own key, checks the 101 and its accept
//!   value, answers `200`, then relays the stream's DATA to the backend tunnel; tunnel mode
//!   ends the WebSocket in Ringway (`wstunnel::Endpoint`). A refused upgrade answers the
//!   stream with the backend's status; other streams are not disturbed.
//! - Errors get the same statuses as over HTTP/1.1.
//!
//! Limits: `limits.max_concurrent_streams` (SETTINGS_MAX_CONCURRENT_STREAMS), header lists
//! bounded by `limits.max_header_bytes` (h2 refuses larger ones, CONTINUATION included),
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`. Rapid reset (CVE-2023-44487): h2 closes a
//! connection whose streams are reset before they are accepted faster than it allows, and
//! this module closes (GOAWAY `ENHANCE_YOUR_CALM`) one whose client resets more than
//! `RESETS_PER_SECOND_MAX` accepted streams within a second.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tracing::{debug, info, warn};

use crate::config::{Handler, WebSocketRoute};
use crate::observe::metrics::{self, HandlerKind, Rejected};
use crate::policy::balance::Tried;
use crate::policy::static_files;
use crate::protocol::http::chunked::ChunkedDecoder;
use crate::protocol::http::forward::{self, ForwardInfo};
use crate::protocol::http::h2map::{
    request_field_forwarded, response_field_forwarded, trailer_fields,
};
use crate::protocol::http::head::{self, empty_headers, parse_response, Body};
use crate::protocol::http::response;
use crate::protocol::ws;
use crate::runtime::backend::pools::Lease;
use crate::runtime::backend::upstream::Upstream;
use crate::runtime::conn::client::{log_access, AccessRequest};
use crate::runtime::net::idle;
use crate::runtime::net::io::{head_end, ReadBuf, ReadError};
use crate::runtime::net::pool;
use crate::runtime::net::stream::ClientStream;
use crate::runtime::net::tunnel::Tunnel;
use crate::runtime::shard::Core;
use crate::runtime::shard::Shard;

/// Client resets of accepted streams per connection per second before GOAWAY.
const RESETS_PER_SECOND_MAX: u32 = 200;
/// h2's own bound on streams reset before Ringway accepted them (h2's default is 20).
const PENDING_ACCEPT_RESETS_MAX: usize = 100;
/// Per-stream and per-connection receive windows: large enough for a full-speed upload.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;
/// Largest DATA payload sent at once (h2 splits it into frames of the peer's max frame size).
const SEND_CHUNK: usize = 64 * 1024;

/// What every stream of a connection shares.
struct ConnCtx {
    core: Rc<Core>,
    /// The generation the connection started with (its settings); each stream takes the
    /// generation current when it opens, as HTTP/1.1 requests do.
    shard: Rc<Shard>,
    peer: SocketAddr,
    local: SocketAddr,
    listener: usize,
    tls: bool,
    /// Streams still running (a keep-alive timeout closes only a connection without any).
    active: Cell<usize>,
    /// Client resets counted in the current one-second window.
    resets: Cell<(Instant, u32)>,
    /// Too many resets: the connection is shut with ENHANCE_YOUR_CALM.
    abuse: Cell<bool>,
    /// The connection task, to wake on `abuse`.
    waker: RefCell<Option<std::task::Waker>>,
}

impl ConnCtx {
    fn note_reset(&self) {
        let (start, n) = self.resets.get();
        let now = Instant::now();
        let (start, n) = if now.duration_since(start) >= Duration::from_secs(1) {
            (now, 1)
        } else {
            (start, n + 1)
        };
        self.resets.set((start, n));
        if n > RESETS_PER_SECOND_MAX && !self.abuse.replace(true) {
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// Serves one HTTP/2 connection (ALPN `h2`, or h2c prior knowledge) until it closes.
pub async fn serve(
    core: Rc<Core>,
    stream: ClientStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: usize,
) {
    let shard = core.current();
    let cfg = &shard.config;
    let tls = stream.is_tls();
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(cfg.limits.max_concurrent_streams)
        .max_header_list_size(cfg.limits.max_header_bytes as u32)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(256 * 1024)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS_MAX);
    let handshake = async { Some(builder.handshake::<_, Bytes>(stream.compat()).await) };
    let timer = async {
        glommio::timer::sleep(cfg.timeouts.header).await;
        None
    };
    let mut conn = match futures_lite::future::or(handshake, timer).await {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            debug!(core = shard.id, peer = %peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        None => {
            debug!(core = shard.id, peer = %peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let keepalive = cfg.timeouts.keepalive;
    let ctx = Rc::new(ConnCtx {
        core: core.clone(),
        shard: shard.clone(),
        peer,
        local,
        listener,
        tls,
        active: Cell::new(0),
        resets: Cell::new((Instant::now(), 0)),
        abuse: Cell::new(false),
        waker: RefCell::new(None),
    });
    drop(shard);
    let watch = idle::watch(keepalive);
    let mut shutting = false;
    let mut abused = false;
    loop {
        let next = futures_lite::future::poll_fn(|cx| {
            *ctx.waker.borrow_mut() = Some(cx.waker().clone());
            watch.register(cx);
            if ctx.abuse.get() && !abused {
                abused = true;
                info!(core = ctx.shard.id, peer = %ctx.peer, "HTTP/2 client resets streams too fast; GOAWAY");
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
            }
            if !shutting && idle::draining() {
                shutting = true;
                conn.graceful_shutdown();
            }
            if watch.expired() {
                if ctx.active.get() == 0 && !shutting {
                    shutting = true;
                    conn.graceful_shutdown();
                } else {
                    watch.restart(keepalive);
                }
            }
            conn.poll_accept(cx)
        })
        .await;
        match next {
            Some(Ok((req, respond))) => {
                watch.touch();
                let (req, respond) = match serve_inline(&ctx, req, respond) {
                    Ok(outcome) => {
                        if outcome.reset {
                            ctx.note_reset();
                        }
                        continue;
                    }
                    Err(back) => back,
                };
                ctx.active.set(ctx.active.get() + 1);
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    let started = Instant::now();
                    let outcome = handle(&ctx, req, respond, started).await;
                    if outcome.reset {
                        ctx.note_reset();
                    }
                    ctx.active.set(ctx.active.get() - 1);
                })
                .detach();
            }
            Some(Err(e)) => {
                if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) || e.is_go_away() {
                    info!(core = ctx.shard.id, peer = %ctx.peer, error = %e, "HTTP/2 connection closed");
                } else {
                    debug!(core = ctx.shard.id, peer = %ctx.peer, error = %e, "HTTP/2 connection error");
                }
                break;
            }
            None => break,
        }
    }
}

/// How a stream ended, for the connection's reset accounting.
#[derive(Default)]
struct Outcome {
    /// The client reset the stream while Ringway was answering it.
    reset: bool,
}

fn was_reset(e: &h2::Error) -> bool {
    e.is_reset() && e.is_remote()
}

/// What the access log and metrics need of a stream's request.
struct Exchange {
    vhost: usize,
    handler: HandlerKind,
    status: u16,
    backend: Option<(usize, usize)>,
    bytes: (u64, u64),
    access: Option<Box<AccessRequest>>,
    started: Instant,
    tunnel: bool,
}

/// `:authority` (or `Host`) and the request target of a stream, borrowed.
fn target_of<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> (Option<&'a str>, &'a str) {
    let authority = uri.authority().map(|a| a.as_str()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    (authority, target)
}

fn new_exchange(
    parts: &http::request::Parts,
    authority: Option<&str>,
    target: &str,
    started: Instant,
) -> Exchange {
    let mut ex = Exchange {
        vhost: metrics::NO_VHOST,
        handler: HandlerKind::Error,
        status: 0,
        backend: None,
        bytes: (0, 0),
        access: None,
        started,
        tunnel: false,
    };
    if access_enabled() {
        let mut headers: Vec<httparse::Header<'_>> = Vec::new();
        for name in ["referer", "user-agent"] {
            if let Some(v) = parts.headers.get(name) {
                headers.push(httparse::Header {
                    name,
                    value: v.as_bytes(),
                });
            }
        }
        let r = head::Request {
            method: parts.method.as_str(),
            target,
            minor_version: crate::observe::accesslog::HTTP2,
            headers: &headers,
            head_len: 0,
            host: authority.map(str::as_bytes),
            body: Body::None,
            keep_alive: true,
        };
        let mut a = Box::<AccessRequest>::default();
        a.fill(&r);
        a.started = Some(started);
        ex.access = Some(a);
    }
    ex
}

/// Counts and logs a finished exchange (a tunnel was logged when it ended).
fn finish(ctx: &ConnCtx, shard: &Shard, ex: &Exchange, result: Result<(), h2::Error>) -> Outcome {
    let mut outcome = Outcome::default();
    if let Err(e) = result {
        outcome.reset = was_reset(&e);
        debug!(core = shard.id, peer = %ctx.peer, error = %e, "HTTP/2 stream ended early");
    }
    if ex.status != 0 && !ex.tunnel {
        metrics::with(|m| m.request(ex.vhost, ex.handler, ex.status, ex.started.elapsed()));
        log_access(
            shard,
            ctx.peer,
            ex.access.as_deref(),
            ex.vhost,
            ex.status,
            ex.bytes,
            ex.backend,
            false,
        );
    }
    outcome
}

/// Serves, in the connection's task, a stream that needs no waiting: a `GET`/`HEAD` for a
/// static file up to `SMALL_FILE_MAX` (or its error). No task is spawned for it: the common
/// static request costs one call. Anything else comes back, for a task of its own.
#[allow(clippy::result_large_err)]
fn serve_inline(
    ctx: &Rc<ConnCtx>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Result<Outcome, (Request<RecvStream>, SendResponse<Bytes>)> {
    let method = req.method();
    if method != http::Method::GET && method != http::Method::HEAD {
        return Err((req, respond));
    }
    let shard = ctx.core.current();
    let found = {
        let (authority, target) = target_of(req.uri(), req.headers());
        let path = target.split(['?', '#']).next().unwrap_or("/");
        shard
            .routes
            .vhost_at(ctx.listener, authority.map(str::as_bytes))
            .map(|(i, v)| {
                let handler = v.route(path).context.map(|c| &c.handler);
                (i, matches!(handler, Some(Handler::Static) | None))
            })
    };
    let vhost_index = match found {
        Some((i, true)) => i,
        // Other handlers, and unknown hosts (answered by `route`), go the general way.
        _ => return Err((req, respond)),
    };
    let vhost = &shard.routes.vhosts[vhost_index];
    let (parts, _body) = req.into_parts();
    let (authority, target) = target_of(&parts.uri, &parts.headers);
    let mut ex = new_exchange(&parts, authority, target, Instant::now());
    ex.vhost = shard.ids.vhosts[vhost_index];
    ex.handler = HandlerKind::Static;
    let head_only = parts.method == http::Method::HEAD;
    let resp = static_lookup(vhost, &parts, target);
    match static_head(&mut respond, &mut ex, resp, head_only) {
        Ok(None) => Ok(finish(ctx, &shard, &ex, Ok(()))),
        Err(e) => Ok(finish(ctx, &shard, &ex, Err(e))),
        Ok(Some((send, file, len))) => {
            // A large file: its own task, within the window.
            let ctx = ctx.clone();
            ctx.active.set(ctx.active.get() + 1);
            glommio::spawn_local(async move {
                let result = big_file(send, file, len, &mut ex).await;
                let outcome = finish(&ctx, &shard, &ex, result);
                if outcome.reset {
                    ctx.note_reset();
                }
                ctx.active.set(ctx.active.get() - 1);
            })
            .detach();
            Ok(Outcome::default())
        }
    }
}

async fn handle(
    ctx: &Rc<ConnCtx>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    started: Instant,
) -> Outcome {
    let shard = ctx.core.current();
    let (parts, body) = req.into_parts();
    let (authority, target) = target_of(&parts.uri, &parts.headers);
    let mut ex = new_exchange(&parts, authority, target, started);
    let result = route(
        ctx,
        &shard,
        &parts,
        body,
        &mut respond,
        &mut ex,
        authority,
        target,
    )
    .await;
    finish(ctx, &shard, &ex, result)
}

fn access_enabled() -> bool {
    crate::runtime::conn::access::enabled()
}

/// Answers `status` with the same short text body as over HTTP/1.1 (none for HEAD).
fn respond_status(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    status: u16,
    extra: &[(&'static str, &'static str)],
    head_only: bool,
) -> Result<(), h2::Error> {
    ex.status = status;
    let body = format!("{status} {}\n", response::reason(status));
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", body.len());
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    let resp = r.body(()).unwrap_or_default();
    let mut send = respond.send_response(resp, head_only)?;
    if !head_only {
        ex.bytes.1 += body.len() as u64;
        send.send_data(Bytes::from(body), true)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn route(
    ctx: &Rc<ConnCtx>,
    shard: &Rc<Shard>,
    parts: &http::request::Parts,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    authority: Option<&str>,
    path_and_query: &str,
) -> Result<(), h2::Error> {
    let head_only = parts.method == http::Method::HEAD;
    let host = authority.map(str::as_bytes);
    let Some((vhost_index, vhost)) = shard.routes.vhost_at(ctx.listener, host) else {
        let status = if ctx.tls { 421 } else { 404 };
        return respond_status(respond, ex, status, &[], head_only);
    };
    ex.vhost = shard.ids.vhosts[vhost_index];
    let path = path_and_query.split(['?', '#']).next().unwrap_or("/");
    let route = vhost.route(path);
    let protocol = parts.extensions.get::<h2::ext::Protocol>();
    if parts.method == http::Method::CONNECT {
        ex.handler = HandlerKind::WebSocket;
        return match (protocol, route.websocket) {
            (Some(p), Some(ws_route)) if p.as_str().eq_ignore_ascii_case("websocket") => {
                // Boxed, here and below: the stream's task stays small (a 3 KiB future was
                // copied on every spawn); a branch's state is allocated when it runs.
                Box::pin(websocket(
                    ctx,
                    shard,
                    parts,
                    body,
                    respond,
                    ex,
                    ws_route,
                    authority,
                    path_and_query,
                ))
                .await
            }
            // The built-in echo endpoint over RFC 8441.
            (Some(p), None)
                if p.as_str().eq_ignore_ascii_case("websocket")
                    && matches!(route.context.map(|c| &c.handler), Some(Handler::Echo)) =>
            {
                ex.handler = HandlerKind::Echo;
                Box::pin(echo(ctx, shard, parts, body, respond, ex)).await
            }
            // Extended CONNECT for something else, or to a URI without a WebSocket route.
            (Some(_), _) => respond_status(respond, ex, 404, &[], false),
            // Plain CONNECT: Ringway is no forward proxy over HTTP/2.
            (None, _) => respond_status(respond, ex, 405, &[], false),
        };
    }
    ex.handler = match route.context.map(|c| &c.handler) {
        Some(Handler::Echo) => HandlerKind::Echo,
        Some(Handler::Proxy { .. }) => HandlerKind::Proxy,
        Some(Handler::Connect { .. }) => HandlerKind::Connect,
        Some(Handler::Static) | None => HandlerKind::Static,
    };
    match route.context.map(|c| &c.handler) {
        // A WebSocket-only endpoint without an extended CONNECT.
        Some(Handler::Echo) => respond_status(
            respond,
            ex,
            426,
            &[("sec-websocket-version", "13")],
            head_only,
        ),
        Some(Handler::Connect { .. }) => respond_status(respond, ex, 405, &[], head_only),
        Some(Handler::Proxy { backend, host }) => {
            Box::pin(proxy(
                ctx,
                shard,
                parts,
                body,
                respond,
                ex,
                *backend,
                host.as_deref(),
                authority,
                path_and_query,
            ))
            .await
        }
        Some(Handler::Static) | None => {
            let resp = static_lookup(vhost, parts, path_and_query);
            match static_head(respond, ex, resp, head_only)? {
                None => Ok(()),
                Some((send, file, len)) => Box::pin(big_file(send, file, len, ex)).await,
            }
        }
    }
}

/// The static answer for a request (`static_files::serve`, as over HTTP/1.1).
fn static_lookup(
    vhost: &crate::config::VHost,
    parts: &http::request::Parts,
    target: &str,
) -> static_files::StaticResponse {
    let ims = parts
        .headers
        .get(http::header::IF_MODIFIED_SINCE)
        .map(HeaderValue::as_bytes);
    static_files::serve(
        &vhost.doc_root,
        crate::runtime::handlers::static_serve::root_fd(&vhost.doc_root),
        parts.method.as_str().as_bytes(),
        target.as_bytes(),
        ims,
    )
}

/// Files up to this size go out in one DATA write from an exact-size buffer, without waiting
/// for window (h2 holds what the window does not take yet; bounded by this).
const SMALL_FILE_MAX: u64 = 64 * 1024;

/// Waits for room in the stream's send window; returns how many bytes may go now.
async fn capacity(send: &mut SendStream<Bytes>, want: usize) -> Result<usize, h2::Error> {
    send.reserve_capacity(want);
    loop {
        let cap = send.capacity();
        if cap > 0 {
            return Ok(cap.min(want));
        }
        match futures_lite::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        }
    }
}

/// Sends `data` in the stream's flow-control window (a slow client pauses the caller).
async fn send_all(send: &mut SendStream<Bytes>, mut data: &[u8]) -> Result<(), h2::Error> {
    while !data.is_empty() {
        let n = capacity(send, data.len().min(SEND_CHUNK)).await?;
        send.send_data(Bytes::copy_from_slice(&data[..n]), false)?;
        data = &data[n..];
    }
    Ok(())
}

/// Answers a static response: the head, and the body when it is small (one DATA write from an
/// exact-size buffer). A larger file comes back with its stream, for `big_file`.
#[allow(clippy::type_complexity)]
fn static_head(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    resp: static_files::StaticResponse,
    head_only: bool,
) -> Result<Option<(SendStream<Bytes>, std::fs::File, u64)>, h2::Error> {
    use std::io::Read;
    ex.status = resp.status;
    let body = !head_only && resp.status != 304;
    let mut r = Response::builder()
        .status(resp.status)
        .header("content-type", HeaderValue::from_static(resp.content_type));
    if resp.status != 304 {
        r = r.header("content-length", resp.content_length);
    }
    if let Some(lm) = &resp.last_modified {
        r = r.header("last-modified", lm.as_str());
    }
    if resp.allow {
        r = r.header("allow", "GET, HEAD");
    }
    let Some(mut file) = resp.file.filter(|_| body) else {
        let text = static_files::error_body(resp.status);
        let end = !body || text.is_empty();
        let mut send = respond.send_response(r.body(()).unwrap_or_default(), end)?;
        if !end {
            ex.bytes.1 += text.len() as u64;
            send.send_data(Bytes::from_static(text), true)?;
        }
        return Ok(None);
    };
    if resp.content_length == 0 {
        respond.send_response(r.body(()).unwrap_or_default(), true)?;
        return Ok(None);
    }
    if resp.content_length <= SMALL_FILE_MAX {
        let mut data = Vec::with_capacity(resp.content_length as usize);
        let complete = (&mut file)
            .take(resp.content_length)
            .read_to_end(&mut data)
            .is_ok_and(|n| n as u64 == resp.content_length);
        let mut send = respond.send_response(r.body(()).unwrap_or_default(), false)?;
        if !complete {
            // The file shrank: the promised length cannot be met.
            send.send_reset(Reason::INTERNAL_ERROR);
            return Ok(None);
        }
        ex.bytes.1 += data.len() as u64;
        send.send_data(Bytes::from(data), true)?;
        return Ok(None);
    }
    let send = respond.send_response(r.body(()).unwrap_or_default(), false)?;
    Ok(Some((send, file, resp.content_length)))
}

/// A file larger than `SMALL_FILE_MAX`: read in pooled buffers, sent within the window.
async fn big_file(
    mut send: SendStream<Bytes>,
    mut file: std::fs::File,
    mut left: u64,
    ex: &mut Exchange,
) -> Result<(), h2::Error> {
    use std::io::Read;
    let mut buf = pool::take();
    let result = async {
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    // The file shrank: the promised length cannot be met.
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Ok(());
                }
                Ok(n) => n,
            };
            send_all(&mut send, &buf[..n]).await?;
            ex.bytes.1 += n as u64;
            left -= n as u64;
        }
        send.send_data(Bytes::new(), true)
    }
    .await;
    pool::give(buf);
    result
}

#[allow(clippy::too_many_arguments)]
/// Builds the HTTP/1.1 request head for the backend from an HTTP/2 request. Cookies split
/// over several fields (RFC 9113 §8.2.3) are joined again.
fn backend_head(
    ctx: &ConnCtx,
    parts: &http::request::Parts,
    authority: Option<&str>,
    target: &str,
    extra: &[(&str, &[u8])],
    body: Body,
    upgrade: forward::Upgrade,
    host_override: Option<&str>,
) -> Vec<u8> {
    let mut cookie = Vec::new();
    for v in parts.headers.get_all(http::header::COOKIE) {
        if !cookie.is_empty() {
            cookie.extend_from_slice(b"; ");
        }
        cookie.extend_from_slice(v.as_bytes());
    }
    let mut fields: Vec<httparse::Header<'_>> = parts
        .headers
        .iter()
        .filter(|(n, _)| request_field_forwarded(n.as_str()) && *n != http::header::COOKIE)
        .map(|(n, v)| httparse::Header {
            name: n.as_str(),
            value: v.as_bytes(),
        })
        .collect();
    if !cookie.is_empty() {
        fields.push(httparse::Header {
            name: "cookie",
            value: &cookie,
        });
    }
    if let Some(a) = authority {
        fields.push(httparse::Header {
            name: "host",
            value: a.as_bytes(),
        });
    }
    let mut length = Vec::new();
    if let Body::Length(n) = body {
        if parts.headers.get(http::header::CONTENT_LENGTH).is_none() {
            crate::protocol::http::push_decimal(&mut length, n);
            fields.push(httparse::Header {
                name: "content-length",
                value: &length,
            });
        }
    }
    for (n, v) in extra {
        fields.push(httparse::Header { name: n, value: v });
    }
    let method = if upgrade == forward::Upgrade::WebSocket {
        "GET"
    } else {
        parts.method.as_str()
    };
    let req = head::Request {
        method,
        target,
        minor_version: 1,
        headers: &fields,
        head_len: 0,
        host: authority.map(str::as_bytes),
        body,
        keep_alive: true,
    };
    let info = ForwardInfo {
        client_ip: ctx.peer.ip(),
        proto: if ctx.tls { "https" } else { "http" },
        upgrade,
        host_override,
        chunked: body == Body::Chunked,
    };
    let mut out = pool::take_vec();
    forward::write_request_head(&mut out, &req, &info);
    out
}

/// Why a proxied exchange failed.
enum ProxyFail {
    /// Nothing was answered yet: this status goes to the client.
    Status(u16),
    /// The stream is gone or answered in part; it ends here.
    Stream(h2::Error),
}

impl From<h2::Error> for ProxyFail {
    fn from(e: h2::Error) -> Self {
        ProxyFail::Stream(e)
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    ctx: &Rc<ConnCtx>,
    shard: &Rc<Shard>,
    parts: &http::request::Parts,
    mut body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    backend: usize,
    host_override: Option<&str>,
    authority: Option<&str>,
    target: &str,
) -> Result<(), h2::Error> {
    let head_only = parts.method == http::Method::HEAD;
    let framing = if body.is_end_stream() {
        Body::None
    } else {
        match parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| head::parse_decimal(v.as_bytes()))
        {
            Some(n) => Body::Length(n),
            None => Body::Chunked,
        }
    };
    let backends = &shard.backends;
    let mut tried = Tried::default();
    let pooled = backends.poolable(backend);
    let mut lease = match backends
        .acquire(backend, ctx.peer.ip(), &mut tried, pooled)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(core = shard.id, backend = %backends.name(backend), status = e.status(), "no backend server for HTTP/2 request");
            return respond_status(respond, ex, e.status(), &[], head_only);
        }
    };
    if backends
        .introduce(&mut lease, ctx.peer, ctx.local)
        .await
        .is_err()
    {
        backends.release(lease, false);
        return respond_status(respond, ex, 502, &[], head_only);
    }
    ex.backend = Some((lease.backend, lease.server));
    let head = backend_head(
        ctx,
        parts,
        authority,
        target,
        &[],
        framing,
        forward::Upgrade::None,
        host_override,
    );
    let result = exchange(
        shard, &mut lease, &head, &mut body, framing, respond, ex, head_only,
    )
    .await;
    pool::give_vec(head);
    match result {
        Ok(reusable) => {
            backends.release(lease, reusable);
            Ok(())
        }
        Err(ProxyFail::Status(status)) => {
            backends.release(lease, false);
            respond_status(respond, ex, status, &[], head_only)
        }
        Err(ProxyFail::Stream(e)) => {
            backends.release(lease, false);
            Err(e)
        }
    }
}

/// One request/response with the backend; `Ok(reusable)`.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    shard: &Shard,
    lease: &mut Lease,
    head: &[u8],
    body: &mut RecvStream,
    framing: Body,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    head_only: bool,
) -> Result<bool, ProxyFail> {
    if lease.conn.write_all(head).await.is_err() {
        return Err(ProxyFail::Status(502));
    }
    if framing != Body::None {
        request_body(&mut lease.conn, body, framing == Body::Chunked, ex).await?;
    }
    let mut brb = ReadBuf::from_vec(pool::take_read_vec());
    let r = response(shard, lease, &mut brb, respond, ex, head_only).await;
    pool::give_read_vec(brb.into_vec());
    r
}

/// Streams the request body to the backend (chunked when the client gave no length), with
/// trailers when it sent any; flow-control credit goes back as the backend takes the bytes.
async fn request_body(
    backend: &mut Upstream,
    body: &mut RecvStream,
    chunked: bool,
    ex: &mut Exchange,
) -> Result<(), ProxyFail> {
    while let Some(data) = body.data().await {
        let data = data?;
        ex.bytes.0 += data.len() as u64;
        let ok = if chunked && !data.is_empty() {
            let mut line = Vec::with_capacity(20);
            line.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            backend.write_all(&line).await.is_ok()
                && backend.write_all(&data).await.is_ok()
                && backend.write_all(b"\r\n").await.is_ok()
        } else {
            backend.write_all(&data).await.is_ok()
        };
        if !ok {
            return Err(ProxyFail::Status(502));
        }
        let _ = body.flow_control().release_capacity(data.len());
    }
    if chunked {
        let mut end = b"0\r\n".to_vec();
        if let Ok(Some(trailers)) = body.trailers().await {
            for (n, v) in &trailers {
                end.extend_from_slice(n.as_str().as_bytes());
                end.extend_from_slice(b": ");
                end.extend_from_slice(v.as_bytes());
                end.extend_from_slice(b"\r\n");
            }
        }
        end.extend_from_slice(b"\r\n");
        if backend.write_all(&end).await.is_err() {
            return Err(ProxyFail::Status(502));
        }
    }
    Ok(())
}

/// Reads the backend's response head within `upstream_read` (interim 1xx skipped).
async fn response_head(
    shard: &Shard,
    conn: &mut Upstream,
    brb: &mut ReadBuf,
    limit_time: Duration,
    watch: &Rc<idle::Watch>,
) -> Result<usize, u16> {
    let limit = shard.config.limits.max_header_bytes + 1;
    watch.restart(limit_time);
    loop {
        if let Some(end) = head_end(brb.data(), 0) {
            let interim =
                brb.data().starts_with(b"HTTP/1.1 1") && !brb.data().starts_with(b"HTTP/1.1 101");
            if !interim {
                return Ok(end);
            }
            brb.consume(end);
            continue;
        }
        if brb.len() >= limit {
            return Err(502);
        }
        match brb.fill_watched(conn, limit, watch).await {
            Ok(0) | Err(ReadError::Io) => return Err(502),
            Ok(_) => {}
            Err(ReadError::TimedOut) => return Err(504),
        }
    }
}

async fn response(
    shard: &Shard,
    lease: &mut Lease,
    brb: &mut ReadBuf,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    head_only: bool,
) -> Result<bool, ProxyFail> {
    // One watch for the exchange: the head's deadline, then each silence of the body.
    let watch = idle::watch(shard.config.timeouts.upstream_read);
    let end = response_head(
        shard,
        &mut lease.conn,
        brb,
        shard.config.timeouts.upstream_read,
        &watch,
    )
    .await
    .map_err(ProxyFail::Status)?;
    // The head in one shared buffer: every field value is a slice of it (no copy per field).
    let head = Bytes::copy_from_slice(&brb.data()[..end]);
    let (resp, framing, keep_alive) = {
        let mut headers = empty_headers();
        let max = shard.config.limits.max_header_bytes;
        let Ok(Some(r)) = parse_response(&head, &mut headers, max) else {
            return Err(ProxyFail::Status(502));
        };
        let method = if head_only { "HEAD" } else { "GET" };
        let framing = r.body(method).map_err(|_| ProxyFail::Status(502))?;
        let mut connection_names: Vec<&[u8]> = Vec::new();
        if r.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("connection"))
        {
            connection_names = r
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .flat_map(|h| h.value.split(|&b| b == b',').map(|t| t.trim_ascii()))
                .collect();
        }
        let mut out = Response::new(());
        *out.status_mut() =
            http::StatusCode::from_u16(r.code).map_err(|_| ProxyFail::Status(502))?;
        let map = out.headers_mut();
        map.reserve(r.headers.len());
        for h in r.headers {
            if !response_field_forwarded(h.name, &connection_names) {
                continue;
            }
            let at = h.value.as_ptr() as usize - head.as_ptr() as usize;
            let value = head.slice(at..at + h.value.len());
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_maybe_shared(value),
            ) {
                map.append(n, v);
            }
        }
        let server = shard.ids.servers[lease.backend][lease.server];
        metrics::with(|m| m.backend_request(server, r.code));
        ex.status = r.code;
        (out, framing, r.keep_alive())
    };
    brb.consume(end);
    if framing == Body::None {
        respond.send_response(resp, true)?;
        return Ok(keep_alive && brb.is_empty());
    }
    let mut send = respond.send_response(resp, false)?;
    let limit = shard.config.timeouts.upstream_read;
    let done = response_body(&mut lease.conn, brb, framing, &mut send, limit, &watch, ex).await?;
    Ok(done && keep_alive && framing != Body::UntilClose && brb.is_empty())
}

/// Relays the response body into DATA frames, as it comes (SSE, long-poll), within the
/// stream's window; chunked coding is removed and its trailers sent as HTTP/2 trailers.
/// `Ok(true)`: the body ended where its framing said.
async fn response_body(
    conn: &mut Upstream,
    brb: &mut ReadBuf,
    framing: Body,
    send: &mut SendStream<Bytes>,
    silence: Duration,
    watch: &Rc<idle::Watch>,
    ex: &mut Exchange,
) -> Result<bool, ProxyFail> {
    let mut left = match framing {
        Body::Length(n) => n,
        _ => u64::MAX,
    };
    let mut dec = ChunkedDecoder::default();
    let mut trailers = Vec::new();
    loop {
        if brb.is_empty() {
            if left == 0 {
                break;
            }
            watch.restart(silence);
            match brb.fill_watched(conn, 64 * 1024, watch).await {
                Ok(0) => {
                    if framing == Body::UntilClose {
                        break;
                    }
                    // Cut short: the client sees the stream reset, never a wrong length.
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Ok(false);
                }
                Ok(_) => {}
                Err(_) => {
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Ok(false);
                }
            }
        }
        match framing {
            Body::Chunked => {
                let mut pieces: Vec<std::ops::Range<usize>> = Vec::new();
                let used = match dec.feed_parts(brb.data(), |r| pieces.push(r), &mut trailers) {
                    Ok(n) => n,
                    Err(_) => {
                        send.send_reset(Reason::INTERNAL_ERROR);
                        return Ok(false);
                    }
                };
                for r in pieces {
                    let data = &brb.data()[r];
                    ex.bytes.1 += data.len() as u64;
                    send_all(send, data).await?;
                }
                brb.consume(used);
                if dec.is_done() {
                    let map = trailer_map(&trailers);
                    if map.is_empty() {
                        send.send_data(Bytes::new(), true)?;
                    } else {
                        send.send_trailers(map)?;
                    }
                    return Ok(true);
                }
            }
            _ => {
                let take = (brb.len() as u64).min(left) as usize;
                ex.bytes.1 += take as u64;
                send_all(send, &brb.data()[..take]).await?;
                brb.consume(take);
                left -= take as u64;
                if left == 0 {
                    break;
                }
            }
        }
    }
    send.send_data(Bytes::new(), true)?;
    Ok(true)
}

// ---- RFC 8441 ----------------------------------------------------------------------------

/// A stream's DATA frames as a byte stream (the client's WebSocket frames, both ways): reads
/// give credit back as they are consumed, writes wait for send window. What the tunnels run
/// over.
pub struct H2Io {
    recv: RecvStream,
    send: SendStream<Bytes>,
    /// A DATA chunk read but not yet consumed.
    held: Bytes,
    eof: bool,
}

impl H2Io {
    fn new(recv: RecvStream, send: SendStream<Bytes>) -> H2Io {
        H2Io {
            recv,
            send,
            held: Bytes::new(),
            eof: false,
        }
    }
}

fn h2_io_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        while this.held.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(0));
            }
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => this.held = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.len().min(this.held.len());
        buf[..n].copy_from_slice(&this.held[..n]);
        let _ = this.held.split_to(n);
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(SEND_CHUNK);
        if this.send.capacity() == 0 {
            this.send.reserve_capacity(want);
            loop {
                match this.send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) if this.send.capacity() > 0 => break,
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                    Poll::Ready(None) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        let n = this.send.capacity().min(want);
        match this
            .send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
        {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(h2_io_error(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The end of the stream (END_STREAM), as TCP's FIN.
    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

/// RFC 8441 §5: the checks of an HTTP/1.1 upgrade, minus the key: version 13 (else 426), the
/// route's `origins` (else 403), `upgrades_per_ip` (else 429). `Ok(false)`: refused, and
/// answered.
fn upgrade_allowed(
    ctx: &ConnCtx,
    shard: &Shard,
    parts: &http::request::Parts,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    route: Option<&WebSocketRoute>,
) -> Result<bool, h2::Error> {
    let version = parts
        .headers
        .get("sec-websocket-version")
        .map(HeaderValue::as_bytes);
    if version != Some(b"13".as_slice()) {
        metrics::with(|m| m.upgrade_rejected(Rejected::Version));
        respond_status(respond, ex, 426, &[("sec-websocket-version", "13")], false)?;
        return Ok(false);
    }
    let origin = parts
        .headers
        .get(http::header::ORIGIN)
        .map(HeaderValue::as_bytes);
    if let Some(route) = route.filter(|r| !r.origins.is_empty()) {
        if !ws::origin_allowed(origin, &route.origins, route.allow_missing_origin) {
            info!(core = shard.id, peer = %ctx.peer, "websocket (HTTP/2) refused: origin not allowed");
            metrics::with(|m| m.upgrade_rejected(Rejected::Origin));
            respond_status(respond, ex, 403, &[], false)?;
            return Ok(false);
        }
    }
    if let Err(wait) = crate::runtime::conn::perip::upgrade(ctx.peer.ip()) {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).to_string();
        ex.status = 429;
        let r = Response::builder()
            .status(429)
            .header("retry-after", secs)
            .body(())
            .unwrap_or_default();
        respond.send_response(r, true)?;
        return Ok(false);
    }
    Ok(true)
}

/// The built-in echo endpoint (`handler = "echo"`) over an RFC 8441 stream: every message
/// comes back as one frame of its type; ping → pong, Close → Close; violations close with
/// their code, as tunnel mode's endpoint does (the same decoder).
async fn echo(
    ctx: &Rc<ConnCtx>,
    shard: &Rc<Shard>,
    parts: &http::request::Parts,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
) -> Result<(), h2::Error> {
    use crate::protocol::ws_endpoint::{self as wse, Decoder, Event};
    use futures_lite::io::AsyncReadExt;
    if !upgrade_allowed(ctx, shard, parts, respond, ex, None)? {
        return Ok(());
    }
    let send = respond.send_response(Response::new(()), false)?;
    ex.status = 200;
    let mut io = H2Io::new(body, send);
    let mut dec = Decoder::new(crate::config::TUNNEL_MAX_MESSAGE_DEFAULT);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let watch = idle::watch(shard.config.timeouts.tunnel_idle);
    'session: loop {
        let read = async { Some(io.read(&mut chunk).await) };
        let idle_out = futures_lite::future::poll_fn(|cx| {
            watch.register(cx);
            if watch.expired() || idle::draining() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        });
        let n = match futures_lite::future::or(read, idle_out).await {
            Some(Ok(n)) if n > 0 => n,
            // Draining or idle: Close 1001 (this endpoint is always between messages here).
            None => {
                let mut out = Vec::new();
                wse::close(&mut out, wse::code::GOING_AWAY);
                let _ = io.write_all(&out).await;
                break;
            }
            _ => break,
        };
        watch.touch();
        ex.bytes.0 += n as u64;
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut out = Vec::new();
        let mut end = false;
        loop {
            match dec.decode(&mut buf[used..]) {
                Err(v) => {
                    wse::close(&mut out, v.code());
                    end = true;
                    break;
                }
                Ok((0, None)) => break,
                Ok((n, ev)) => {
                    used += n;
                    match ev {
                        Some(Event::Message { text, payload }) => {
                            let op = if text {
                                ws::opcode::TEXT
                            } else {
                                ws::opcode::BINARY
                            };
                            let (h, hn) = wse::frame_header(op, payload.len());
                            out.extend_from_slice(&h[..hn]);
                            out.extend_from_slice(payload);
                        }
                        Some(Event::Ping(p)) => wse::control_frame(&mut out, ws::opcode::PONG, p),
                        Some(Event::Close { code, .. }) => {
                            match code {
                                Some(c) => wse::close(&mut out, c),
                                None => wse::control_frame(&mut out, ws::opcode::CLOSE, &[]),
                            }
                            end = true;
                        }
                        Some(Event::Pong(_)) | None => {}
                    }
                    dec.release();
                    if end {
                        break;
                    }
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            ex.bytes.1 += out.len() as u64;
            if io.write_all(&out).await.is_err() {
                break 'session;
            }
        }
        if end {
            break;
        }
    }
    let _ = futures_lite::future::poll_fn(|cx| Pin::new(&mut io).poll_close(cx)).await;
    Ok(())
}

/// A nonce for the backend handshake (`Sec-WebSocket-Key`: 16 bytes, base64); the clock and a
/// per-core counter make it unique, which is all the key is for.
fn backend_key() -> [u8; 24] {
    use base64::Engine;
    thread_local! {
        static COUNTER: Cell<u64> = const { Cell::new(0) };
    }
    let n = COUNTER.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&t.to_le_bytes());
    raw[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let mut out = [0u8; 24];
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(raw, &mut out);
    out
}

#[allow(clippy::too_many_arguments)]
async fn websocket(
    ctx: &Rc<ConnCtx>,
    shard: &Rc<Shard>,
    parts: &http::request::Parts,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    route: &WebSocketRoute,
    authority: Option<&str>,
    target: &str,
) -> Result<(), h2::Error> {
    if !upgrade_allowed(ctx, shard, parts, respond, ex, Some(route))? {
        return Ok(());
    }
    let backends = &shard.backends;
    let name = backends.name(route.backend);
    let mut lease = match backends
        .acquire(route.backend, ctx.peer.ip(), &mut Tried::default(), false)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(core = shard.id, peer = %ctx.peer, backend = %name, status = e.status(), "no backend server for upgrade (HTTP/2)");
            metrics::with(|m| m.upgrade_rejected(Rejected::Backend));
            return respond_status(respond, ex, e.status(), &[], false);
        }
    };
    ex.backend = Some((lease.backend, lease.server));
    if backends
        .introduce(&mut lease, ctx.peer, ctx.local)
        .await
        .is_err()
    {
        backends.release(lease, false);
        return respond_status(respond, ex, 502, &[], false);
    }
    let mut early = Vec::new();
    let mut ok = Response::builder().status(200);
    let terminate = match &route.tunnel {
        Some(mode) => {
            let requested: Vec<&[u8]> = parts
                .headers
                .get_all("sec-websocket-protocol")
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            let chosen = crate::runtime::handlers::wstunnel::choose_subprotocol(
                &mode.subprotocols,
                &requested,
            );
            if let Some(p) = chosen.and_then(|i| mode.subprotocols.get(i)) {
                ok = ok.header("sec-websocket-protocol", p.as_str());
            }
            Some(crate::runtime::conn::client::Terminate {
                text: mode.text,
                ping: mode.ping_interval,
                max_message: mode.max_message,
                early: Vec::new(),
            })
        }
        None => {
            let key = backend_key();
            let head = backend_head(
                ctx,
                parts,
                authority,
                target,
                &[("sec-websocket-key", &key)],
                Body::None,
                forward::Upgrade::WebSocket,
                None,
            );
            let sent = lease.conn.write_all(&head).await;
            pool::give_vec(head);
            if sent.is_err() {
                backends.release(lease, false);
                return respond_status(respond, ex, 502, &[], false);
            }
            let mut brb = ReadBuf::new();
            let watch = idle::watch(shard.config.timeouts.header);
            let end = match response_head(
                shard,
                &mut lease.conn,
                &mut brb,
                shard.config.timeouts.header,
                &watch,
            )
            .await
            {
                Ok(end) => end,
                Err(status) => {
                    metrics::with(|m| m.upgrade_rejected(Rejected::Backend));
                    backends.release(lease, false);
                    return respond_status(respond, ex, status, &[], false);
                }
            };
            let verdict = {
                let mut headers = empty_headers();
                let max = shard.config.limits.max_header_bytes;
                match parse_response(&brb.data()[..end], &mut headers, max) {
                    Ok(Some(r)) if r.code == 101 => match ws::check_backend_101(&r, &key) {
                        Ok(()) => {
                            for name in ["sec-websocket-protocol", "sec-websocket-extensions"] {
                                if let Some(v) = r.header(name) {
                                    if let Ok(v) = HeaderValue::from_bytes(v) {
                                        ok = ok.header(name, v);
                                    }
                                }
                            }
                            Ok(())
                        }
                        Err(reason) => Err((502, Rejected::BadAccept, reason)),
                    },
                    Ok(Some(r)) => Err((r.code, Rejected::Not101, "backend refused the upgrade")),
                    _ => Err((502, Rejected::BadAccept, "malformed backend response head")),
                }
            };
            if let Err((status, why, reason)) = verdict {
                info!(core = shard.id, backend = %name, status, reason, "websocket (HTTP/2): no tunnel");
                metrics::with(|m| m.upgrade_rejected(why));
                backends.release(lease, false);
                // The backend's own status (a 2xx is no upgrade either: 502).
                let status = if (200..300).contains(&status) || status < 100 {
                    502
                } else {
                    status
                };
                ex.status = status;
                let r = Response::builder()
                    .status(status)
                    .body(())
                    .unwrap_or_default();
                respond.send_response(r, true)?;
                return Ok(());
            }
            brb.consume(end);
            early.extend_from_slice(brb.data());
            None
        }
    };
    let send = respond.send_response(ok.body(()).unwrap_or_default(), false)?;
    ex.status = 200;
    ex.tunnel = true;
    metrics::with(|m| {
        m.request(ex.vhost, ex.handler, 200, ex.started.elapsed());
        m.tunnel_opened(shard.ids.backends[lease.backend]);
    });
    let opened = Instant::now();
    let mut io = H2Io::new(body, send);
    let watch = idle::watch(shard.config.timeouts.tunnel_idle);
    let result = async {
        if !early.is_empty() {
            io.write_all(&early).await?;
        }
        match terminate {
            None => Tunnel::new(&mut io, &mut lease.conn, &watch).await,
            Some(mut t) => crate::runtime::handlers::wstunnel::Endpoint::new(
                &mut io,
                &mut lease.conn,
                &watch,
                &mut t,
            )
            .await
            .map(|end| debug!(?end, "websocket tunnel (HTTP/2) ended")),
        }
    }
    .await;
    if let Err(e) = result {
        debug!(core = shard.id, peer = %ctx.peer, error = %e, "websocket (HTTP/2) tunnel ended");
    }
    let _ = lease.conn.close().await;
    let _ = futures_lite::future::poll_fn(|cx| Pin::new(&mut io).poll_close(cx)).await;
    metrics::with(|m| m.tunnel_closed(shard.ids.backends[lease.backend], opened.elapsed()));
    log_access(
        shard,
        ctx.peer,
        ex.access.as_deref(),
        ex.vhost,
        200,
        ex.bytes,
        ex.backend,
        true,
    );
    backends.release(lease, false);
    Ok(())
}

/// Trailer lines as HTTP/2 trailers (`h2map::trailer_fields`; invalid names or values dropped).
fn trailer_map(raw: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in trailer_fields(raw) {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}
