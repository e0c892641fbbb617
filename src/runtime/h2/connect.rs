//! Extended CONNECT (`:protocol websocket`, RFC 8441) on a WebSocket route. Proxy mode opens an
//! HTTP/1.1 upgrade to the backend with Ringway's own key, checks the 101 and its accept
//! value, answers `200`, then relays the stream's DATA to the backend tunnel; tunnel mode ends
//! the WebSocket in Ringway (`wstunnel::Endpoint`); `handler = "echo"` answers it itself. The
//! checks of an HTTP/1.1 upgrade apply, minus the key (`upgrade_allowed`). A refused upgrade
//! answers the stream with the backend's status; other streams are not disturbed.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{response, HeaderValue, Response};
use tracing::{debug, info, warn};

use super::ctx::{respond_no_server, respond_status, ConnCtx, Exchange};
use super::io::H2Io;
use super::proxy::{backend_head, response_head};
use crate::config::{Handler, PathRoute, TunnelMode, WebSocketRoute};
use crate::observe::metrics::{self, HandlerKind, Rejected};
use crate::policy::balance::Tried;
use crate::protocol::http::forward;
use crate::protocol::http::head::{empty_headers, parse_response, Body};
use crate::protocol::ws;
use crate::protocol::ws_endpoint::{self as wse, Decoder, Event};
use crate::runtime::backend::pools::Lease;
use crate::runtime::conn::client::{log_access, Terminate};
use crate::runtime::net::idle;
use crate::runtime::net::io::ReadBuf;
use crate::runtime::net::pool;
use crate::runtime::net::tunnel::Tunnel;
use crate::runtime::shard::Shard;

/// Extended CONNECT on a stream: a WebSocket (RFC 8441) to a WebSocket route (proxy or tunnel
/// mode) or to the echo handler; anything else is refused (404, or 405 for a plain CONNECT).
#[allow(clippy::too_many_arguments)]
pub(super) async fn extended_connect(
    ctx: &Rc<ConnCtx>,
    shard: &Rc<Shard>,
    parts: &http::request::Parts,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    route: PathRoute<'_>,
    vhost: &crate::config::VHost,
    authority: Option<&str>,
    path_and_query: &str,
) -> Result<(), h2::Error> {
    let protocol = parts.extensions.get::<h2::ext::Protocol>();
    ex.handler = HandlerKind::WebSocket;
    match (protocol, route.websocket) {
        (Some(p), Some(ws_route)) if p.as_str().eq_ignore_ascii_case("websocket") => {
            // Boxed, here and below, as `stream::route`'s branches are: the stream's task stays
            // small; a branch's state is allocated when it runs.
            Box::pin(websocket(
                ctx,
                shard,
                parts,
                body,
                respond,
                ex,
                ws_route,
                vhost,
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
            if let Some(c) = route.context {
                if super::ctx::refused(ctx, shard, parts, respond, ex, &c.rules, false)? {
                    return Ok(());
                }
            }
            Box::pin(echo(ctx, shard, parts, body, respond, ex)).await
        }
        // Extended CONNECT for something else, or to a URI without a WebSocket route.
        (Some(_), _) => respond_status(respond, ex, 404, &[], false),
        // Plain CONNECT: Ringway is no forward proxy over HTTP/2.
        (None, _) => respond_status(respond, ex, 405, &[], false),
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
        let mut r = Response::builder()
            .status(429)
            .header("retry-after", secs)
            .body(())
            .unwrap_or_default();
        super::ctx::dress(ex, &mut r);
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
    use futures_lite::io::AsyncReadExt;
    if !upgrade_allowed(ctx, shard, parts, respond, ex, None)? {
        return Ok(());
    }
    let send = respond.send_response(Response::new(()), false)?;
    ex.status = 200;
    let mut io = H2Io::new(body, send);
    let mut dec = Decoder::new(crate::runtime::handlers::echo::MAX_MESSAGE);
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
        let mut out = Vec::new();
        let (used, end) = echo_frames(&mut dec, &mut buf, &mut out);
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

/// Answers the whole frames `buf` holds into `out` (echo): a message comes back as one frame of
/// its type, ping → pong, Close → Close, a violation → Close with its code. Returns how much
/// of `buf` was used, and whether the session ends.
fn echo_frames(dec: &mut Decoder, buf: &mut [u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut used = 0;
    let mut end = false;
    loop {
        match dec.decode(&mut buf[used..]) {
            Err(v) => {
                wse::close(out, v.code());
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
                        metrics::with(|m| m.echo_message());
                    }
                    Some(Event::Ping(p)) => wse::control_frame(out, ws::opcode::PONG, p),
                    Some(Event::Close { code, .. }) => {
                        match code {
                            Some(c) => wse::close(out, c),
                            None => wse::control_frame(out, ws::opcode::CLOSE, &[]),
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
    (used, end)
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
    vhost: &crate::config::VHost,
    authority: Option<&str>,
    target: &str,
) -> Result<(), h2::Error> {
    if let Some(i) = route.rules.style {
        ex.style = Some(shard.routes.styles[i].clone());
    }
    ex.timeouts = route.rules.timeouts;
    if super::ctx::refused(ctx, shard, parts, respond, ex, &route.rules, false)? {
        return Ok(());
    }
    if !upgrade_allowed(ctx, shard, parts, respond, ex, Some(route))? {
        return Ok(());
    }
    let backends = &shard.backends;
    let name = backends.name(route.backend);
    let connect = ex.timeouts.connect.unwrap_or(shard.config.timeouts.connect);
    let sticky = super::proxy::sticky_of(shard, route.backend, parts, target);
    let mut lease = match backends
        .acquire_within(
            route.backend,
            ctx.peer.ip(),
            sticky,
            &mut Tried::default(),
            false,
            connect,
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(core = shard.id, peer = %ctx.peer, backend = %name, status = e.status(), "no backend server for upgrade (HTTP/2)");
            metrics::with(|m| m.upgrade_rejected(Rejected::Backend));
            return respond_no_server(respond, ex, e, false);
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
    if let Some(v) = backends.set_cookie(lease.backend, lease.server, sticky, ctx.tls) {
        ok = ok.header(http::header::SET_COOKIE, v);
    }
    let terminate = match &route.tunnel {
        Some(mode) => {
            let (with_protocol, terminate) = tunnel_mode(mode, parts, ok);
            ok = with_protocol;
            Some(terminate)
        }
        None => {
            let key = backend_key();
            let mut head = backend_head(
                ctx,
                parts,
                authority,
                target,
                &[("sec-websocket-key", &key)],
                Body::None,
                forward::Upgrade::WebSocket,
                None,
            );
            if let Some(name) = backends.sticky_cookie(route.backend) {
                crate::policy::sticky::strip_cookie_from_head(&mut head, name.as_bytes());
            }
            let rules = [&vhost.request_headers, &route.rules.request_headers];
            if rules.iter().any(|r| !r.is_empty()) {
                let mut scratch = pool::take_vec();
                crate::policy::headers::rewrite(&mut head, rules, &mut scratch);
                pool::give_vec(scratch);
            }
            let sent = lease.conn.write_all(&head).await;
            pool::give_vec(head);
            if sent.is_err() {
                backends.release(lease, false);
                return respond_status(respond, ex, 502, &[], false);
            }
            let mut brb = ReadBuf::new();
            let answer = ex.timeouts.header.unwrap_or(shard.config.timeouts.header);
            let watch = idle::watch(answer);
            let end = match response_head(shard, &mut lease.conn, &mut brb, answer, &watch).await {
                Ok(end) => end,
                Err(status) => {
                    metrics::with(|m| m.upgrade_rejected(Rejected::Backend));
                    backends.release(lease, false);
                    return respond_status(respond, ex, status, &[], false);
                }
            };
            let (checked, verdict) = backend_101(shard, &brb.data()[..end], &key, ok);
            ok = checked;
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
                let mut r = Response::builder()
                    .status(status)
                    .body(())
                    .unwrap_or_default();
                super::ctx::dress(ex, &mut r);
                respond.send_response(r, true)?;
                return Ok(());
            }
            brb.consume(end);
            early.extend_from_slice(brb.data());
            None
        }
    };
    let mut ok = ok.body(()).unwrap_or_default();
    super::ctx::dress(ex, &mut ok);
    let send = respond.send_response(ok, false)?;
    ex.status = 200;
    ex.tunnel = true;
    metrics::with(|m| {
        m.upgraded(ex.vhost, ex.handler, 200);
        m.tunnel_opened(shard.ids.backends[lease.backend]);
    });
    let io = H2Io::new(body, send);
    relay(ctx, shard, ex, lease, io, early, terminate).await;
    Ok(())
}

/// Tunnel mode: the subprotocol offered back (on `ok`, the `200`), and how Ringway ends the
/// WebSocket.
fn tunnel_mode(
    mode: &TunnelMode,
    parts: &http::request::Parts,
    mut ok: response::Builder,
) -> (response::Builder, Terminate) {
    let requested: Vec<&[u8]> = parts
        .headers
        .get_all("sec-websocket-protocol")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let chosen =
        crate::runtime::handlers::wstunnel::choose_subprotocol(&mode.subprotocols, &requested);
    if let Some(p) = chosen.and_then(|i| mode.subprotocols.get(i)) {
        ok = ok.header("sec-websocket-protocol", p.as_str());
    }
    let terminate = Terminate {
        text: mode.text,
        ping: mode.ping_interval,
        max_message: mode.max_message,
        early: Vec::new(),
    };
    (ok, terminate)
}

/// Proxy mode: the backend's answer to the upgrade (`head`) checked, a 101 with the accept
/// value of `key`; its subprotocol and extensions go on `ok`, the `200`. A refusal: the status,
/// why (for metrics), and the reason (for the log).
#[allow(clippy::type_complexity)]
fn backend_101(
    shard: &Shard,
    head: &[u8],
    key: &[u8; 24],
    mut ok: response::Builder,
) -> (response::Builder, Result<(), (u16, Rejected, &'static str)>) {
    let mut headers = empty_headers();
    let max = shard.config.limits.max_header_bytes;
    let verdict = match parse_response(head, &mut headers, max) {
        Ok(Some(r)) if r.code == 101 => match ws::check_backend_101(&r, key) {
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
    };
    (ok, verdict)
}

/// The open WebSocket: the stream's DATA relayed to the backend (proxy mode) or ended in
/// Ringway (tunnel mode) until either side closes or it idles out; then counted and logged.
async fn relay(
    ctx: &ConnCtx,
    shard: &Shard,
    ex: &Exchange,
    mut lease: Lease,
    mut io: H2Io,
    early: Vec<u8>,
    terminate: Option<Terminate>,
) {
    let backends = &shard.backends;
    let opened = Instant::now();
    let idle_limit = ex
        .timeouts
        .tunnel_idle
        .unwrap_or(shard.config.timeouts.tunnel_idle);
    let watch = idle::watch(idle_limit);
    let ticket = crate::runtime::net::evict::ticket(
        backends.name(lease.backend),
        backends.key(lease.backend, lease.server),
    );
    let result = async {
        if !early.is_empty() {
            io.write_all(&early).await?;
        }
        match terminate {
            None => {
                Tunnel::new(&mut io, &mut lease.conn, &watch)
                    .evictable(&ticket)
                    .await
            }
            Some(mut t) => crate::runtime::handlers::wstunnel::Endpoint::new(
                &mut io,
                &mut lease.conn,
                &watch,
                &mut t,
            )
            .evictable(&ticket)
            .await
            .map(|end| debug!(?end, "websocket tunnel (HTTP/2) ended")),
        }
    }
    .await;
    drop(ticket);
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
        (ex.bytes.0 + io.bytes_in, ex.bytes.1 + io.bytes_out),
        ex.backend,
        true,
    );
    backends.release(lease, false);
}
