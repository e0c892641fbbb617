//! One client connection: read a head, route it, act, repeat (keep-alive, pipelining in order).
//!
//! The head is parsed once, when its blank line has arrived (`io::head_end` finds it without
//! parsing); `plan` turns the borrowed request into an owned `Action`, then the head's bytes
//! are consumed and the action runs. Anything after the head stays in the read buffer: the
//! next pipelined request, or the early bytes of a WebSocket client.

use std::rc::Rc;
use std::time::Instant;

use crate::runtime::conn::chosen::{request_rules, Chosen};
use crate::runtime::conn::client::{
    log_access, respond_error, respond_fixed, respond_with, too_many, Client, Next, Terminate,
    TunnelJob,
};
use crate::runtime::conn::gate::{self, Refusal};
use futures_lite::io::AsyncWriteExt;
use tracing::{debug, info};

use crate::config::{Handler, RouteRules, RouteTimeouts, VHost, WebSocketRoute};
use crate::observe::loglimit::Kind;
use crate::observe::metrics::{self, HandlerKind, Rejected};
use crate::policy::static_files;
use crate::protocol::http::forward::{self, ForwardInfo};
use crate::protocol::http::head::{self, empty_headers, Body, HeadError, Request};
use crate::protocol::http::response;
use crate::protocol::ws;
use crate::runtime::backend::pools::Lease;
use crate::runtime::conn::{access, errlog};
use crate::runtime::handlers::admin;
use crate::runtime::handlers::echo;
use crate::runtime::handlers::proxy::{self, ProxyPlan};
use crate::runtime::handlers::static_serve;
use crate::runtime::handlers::wsproxy;
use crate::runtime::net::idle;
use crate::runtime::net::io::{self, head_end, ReadError};
use crate::runtime::net::pool;
use crate::runtime::shard::Core;
use crate::runtime::shard::Shard;

/// Where a request goes, decided while the head is borrowed; owns everything it needs.
// The proxy plan carries the client's Host inline (255 bytes) so a request allocates nothing;
// an `Action` lives on the stack for one request, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Action<'s> {
    Error {
        status: u16,
        close: bool,
    },
    /// 429 with `Retry-After` (whole seconds, rounded up).
    TooMany {
        retry_after_s: u64,
    },
    /// 407 with `Proxy-Authenticate` (CONNECT without valid credentials).
    ProxyAuth,
    /// 401 with `WWW-Authenticate: Basic realm="..."` (a route's `auth`).
    Unauthorized {
        realm: &'s str,
        close: bool,
    },
    /// `handler = "redirect"`, `redirect_https`: `status` with `Location` (a pooled `Vec`).
    Redirect {
        status: u16,
        location: Vec<u8>,
    },
    /// `handler = "respond"`.
    Respond {
        status: u16,
        body: &'s str,
    },
    /// A CONNECT tunnel to `target`, which `rules` allowed (checked again after DNS).
    Connect {
        target: crate::policy::connect::Target,
        rules: &'s [crate::policy::connect::Rule],
    },
    /// The answer, whether the request was `HEAD`, and the route's `cache_control`.
    Static(static_files::StaticResponse, bool, Option<&'s str>),
    EchoUpgrade {
        accept: [u8; 28],
    },
    WsProxy {
        route: &'s WebSocketRoute,
        key: [u8; 24],
        head: Vec<u8>,
        sticky: crate::policy::balance::Sticky,
    },
    /// A tunnel-mode route: Ringway answers the handshake (with the route's subprotocol
    /// `protocol`, an index, when the client asked for one it offers).
    WsTunnel {
        route: &'s WebSocketRoute,
        accept: [u8; 28],
        protocol: Option<usize>,
        sticky: crate::policy::balance::Sticky,
    },
    Proxy(ProxyPlan<'s>),
    /// A request on the `[admin]` listener.
    Admin(admin::Request),
}

/// Serves a connection until it closes or becomes a tunnel (returned, for its own task).
/// Each request uses the configuration current when its head arrived.
pub async fn serve(core: Rc<Core>, client: Client) -> Option<TunnelJob> {
    let mut client = client;
    let mut first = true;
    // Ringway ends the connection (after an error, or a response that closes it): the client
    // may still be sending, so the close lingers (see `io::linger_close`).
    let mut linger = false;
    loop {
        let shard = core.current();
        match read_head(&shard, &mut client, first).await {
            Ok(Some(end)) => {
                let next = handle(&shard, &mut client, end).await;
                let tunnel = matches!(next, Next::Tunnel(_) | Next::Terminate(..));
                finish_exchange(&shard, &mut client, tunnel);
                match next {
                    Next::KeepAlive => first = false,
                    Next::Close => {
                        linger = true;
                        break;
                    }
                    Next::Tunnel(lease) => return Some(tunnel_job(client, shard, lease, None)),
                    Next::Terminate(lease, t) => {
                        return Some(tunnel_job(client, shard, lease, Some(t)))
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let close_with = e.status();
                if let Some(status) = close_with {
                    if let Some(more) = errlog::event(Kind::BadRequest) {
                        info!(core = shard.id, peer = %client.peer, status, "bad request head{more}");
                    }
                    metrics::with(|m| {
                        m.bad_request(status);
                        m.request(
                            metrics::NO_VHOST,
                            HandlerKind::Error,
                            status,
                            client.started.elapsed(),
                        )
                    });
                    let mut out = pool::take_vec();
                    response::write_error(&mut out, status, &[], true);
                    linger = client.stream.write_all(&out).await.is_ok();
                    pool::give_vec(out);
                }
                break;
            }
        }
    }
    if client.stream.send_timed_out() {
        info!(peer = %client.peer, "client accepted no data within timeouts.send: closed");
    } else if linger {
        io::linger_close(&mut client.stream, &mut client.rb, &client.watch).await;
    } else {
        let _ = client.stream.close().await;
    }
    None
}

/// The connection, become a tunnel, for a task of its own.
fn tunnel_job(
    mut client: Client,
    shard: Rc<Shard>,
    lease: Lease,
    terminate: Option<Box<Terminate>>,
) -> TunnelJob {
    TunnelJob {
        request: client.access.take(),
        stream: client.stream,
        peer: client.peer,
        lease,
        shard,
        vhost: client.vhost,
        terminate,
        tunnel_idle: client.timeouts.tunnel_idle,
    }
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
        if idle::draining() && c.rb.is_empty() {
            return Ok(None);
        }
        c.watch.restart(t.keepalive);
        c.watch.set_between_requests(c.rb.is_empty());
    }
    let mut scanned = 0;
    loop {
        if !c.rb.is_empty() {
            if !header_running {
                header_running = true;
                c.watch.set_between_requests(false);
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
    // Durations run from the complete head (a pipelined one too) to the end of the answer.
    c.started = Instant::now();
    c.status = 0;
    if let Some(a) = c.access.as_mut() {
        // Filled again below only if this head parses.
        a.started = None;
    }
    c.vhost = metrics::NO_VHOST;
    c.handler = HandlerKind::Error;
    c.backend = None;
    let had_timeouts = c.timeouts != RouteTimeouts::default();
    c.style = None;
    c.timeouts = RouteTimeouts::default();
    let (action, head_len, body, keep_alive, is_head) = {
        let mut headers = empty_headers();
        let max = shard.config.limits.max_header_bytes;
        match head::parse_request(&c.rb.data()[..end], &mut headers, max) {
            Ok(Some(req)) => {
                if access::enabled() {
                    let a = c.access.get_or_insert_with(Default::default);
                    a.fill(&req);
                    a.started = Some(c.started);
                    a.bytes_in_start = c.stream.bytes_in - c.rb.len() as u64;
                    a.bytes_out_start = c.stream.bytes_out;
                    a.head_out = 0;
                }
                let mut tags = (c.vhost, c.handler);
                let mut chosen = Chosen::default();
                let action = plan(shard, c, &mut tags, &mut chosen, &req);
                (c.vhost, c.handler) = tags;
                c.style = chosen.style;
                c.timeouts = chosen.timeouts;
                (
                    action,
                    req.head_len,
                    req.body,
                    req.keep_alive,
                    req.method == "HEAD",
                )
            }
            Ok(None) => (
                Action::Error {
                    status: 400,
                    close: true,
                },
                end,
                Body::None,
                false,
                false,
            ),
            Err(e) => {
                if let Some(more) = errlog::event(Kind::BadRequest) {
                    info!(core = shard.id, peer = %c.peer, status = e.status(), error = ?e, "bad request{more}");
                }
                metrics::with(|m| m.bad_request(e.status()));
                (
                    Action::Error {
                        status: e.status(),
                        close: true,
                    },
                    end,
                    Body::None,
                    false,
                    false,
                )
            }
        }
    };
    c.rb.consume(head_len);
    if had_timeouts || c.timeouts.send.is_some() {
        let send = c.timeouts.send.unwrap_or(shard.config.timeouts.send);
        c.stream.set_send_limit(send);
    }
    // Ringway's own handlers take no request bodies; rather than read and discard one, answer
    // and close, so no body byte is ever taken for a request.
    // A draining core closes every connection after its current response.
    let close = !keep_alive
        || idle::draining()
        || (body != Body::None && !matches!(action, Action::Proxy(_)));
    match action {
        Action::Error { status, close: c2 } => respond_error(c, status, close || c2).await,
        Action::TooMany { retry_after_s } => too_many(c, retry_after_s, close).await,
        Action::ProxyAuth => {
            let challenge: &[(&str, &[u8])] = &[("Proxy-Authenticate", b"Basic realm=\"ringway\"")];
            respond_with(c, 407, challenge, close).await
        }
        Action::Unauthorized { realm, close: c2 } => {
            let mut value = pool::take_vec();
            value.extend_from_slice(b"Basic realm=\"");
            value.extend_from_slice(realm.as_bytes());
            value.push(b'"');
            let challenge: &[(&str, &[u8])] = &[("WWW-Authenticate", &value)];
            let next = respond_with(c, 401, challenge, close || c2).await;
            pool::give_vec(value);
            next
        }
        Action::Redirect { status, location } => {
            let fields: &[(&str, &[u8])] = &[("Location", &location)];
            let next = respond_fixed(c, status, fields, b"", false, close).await;
            pool::give_vec(location);
            next
        }
        Action::Respond { status, body } => {
            let fields: &[(&str, &[u8])] = &[("Content-Type", b"text/plain; charset=utf-8")];
            let head_only = is_head;
            respond_fixed(c, status, fields, body.as_bytes(), head_only, close).await
        }
        Action::Connect { target, rules } => {
            crate::runtime::handlers::forward::run(shard, c, target, rules).await
        }
        // A static error (no file) with an error page for its status: the page answers.
        Action::Static(resp, _, _)
            if resp.file.is_none()
                && resp.status >= 400
                && c.style
                    .as_deref()
                    .and_then(|s| s.page(resp.status))
                    .is_some() =>
        {
            let allow: &[(&str, &[u8])] = if resp.allow {
                &[("Allow", b"GET, HEAD")]
            } else {
                &[]
            };
            respond_with(c, resp.status, allow, close).await
        }
        Action::Static(resp, is_head, cache_control) => {
            static_serve::send(c, resp, is_head, close, cache_control).await
        }
        Action::EchoUpgrade { accept } => echo::run(shard, c, &accept).await,
        Action::WsProxy {
            route,
            key,
            head,
            sticky,
        } => wsproxy::run(shard, c, route, &key, head, sticky).await,
        Action::WsTunnel {
            route,
            accept,
            protocol,
            sticky,
        } => {
            crate::runtime::handlers::wstunnel::open(shard, c, route, &accept, protocol, sticky)
                .await
        }
        Action::Proxy(plan) => proxy::run(shard, c, plan).await,
        Action::Admin(req) => admin::serve(shard, c, req, close).await,
    }
}

/// Counts the exchange that just ended and logs it (a tunnel is logged when it ends).
fn finish_exchange(shard: &Shard, c: &mut Client, tunnel: bool) {
    if c.status == 0 {
        return;
    }
    let took = c.started.elapsed();
    metrics::with(|m| match (c.status, tunnel, c.handler) {
        // A tunnel (proxied WebSocket, tunnel mode) records its lifetime when it ends.
        (101, true, _) | (101, false, HandlerKind::Admin) => {
            m.upgraded(c.vhost, c.handler, c.status)
        }
        // The echo endpoint's session ended here: its lifetime is a tunnel's, not a request's.
        (101, false, _) => m.session(c.vhost, c.handler, c.status, took),
        _ => m.request(c.vhost, c.handler, c.status, took),
    });
    if !tunnel {
        let bytes = (c.stream.bytes_in - c.rb.len() as u64, c.stream.bytes_out);
        log_access(
            shard,
            c.peer,
            c.access.as_deref(),
            c.vhost,
            c.status,
            bytes,
            c.backend,
            false,
        );
    }
}

/// Over `upgrades_per_ip`: the 429 to answer instead of upgrading.
fn upgrade_limited(c: &Client) -> Option<Action<'static>> {
    crate::runtime::conn::perip::upgrade(c.peer.ip())
        .err()
        .map(|wait| Action::TooMany {
            retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        })
}

/// A route's access checks (`gate`): the refusal to answer instead, if any.
fn refused<'s>(
    shard: &'s Shard,
    c: &Client,
    req: &Request<'_, '_>,
    rules: &'s RouteRules,
    close: bool,
) -> Option<Action<'s>> {
    if rules.access.is_open() && rules.limiter.is_none() {
        return None;
    }
    let refusal = gate::check(shard, rules, c.peer.ip(), req.header("authorization"))?;
    Some(match refusal {
        Refusal::Forbidden => {
            info!(core = shard.id, peer = %c.peer, "client address not allowed on this route: 403");
            Action::Error { status: 403, close }
        }
        Refusal::TooMany(retry_after_s) => Action::TooMany { retry_after_s },
        Refusal::Unauthorized(realm) => Action::Unauthorized { realm, close },
    })
}

/// `redirect_https = true`: a 308 to `https://{host}{uri}`, except the ACME challenge path,
/// served from the vhost's doc root.
fn plan_https_redirect<'s>(
    shard: &'s Shard,
    c: &Client,
    tags: &mut (usize, HandlerKind),
    chosen: &mut Chosen,
    req: &Request<'_, '_>,
) -> Action<'s> {
    let vhost = shard.routes.vhost_at(c.listener, req.host);
    if let Some((i, v)) = vhost {
        tags.0 = shard.ids.vhosts[i];
        chosen.vhost(shard, v);
    }
    tags.1 = HandlerKind::Static;
    let path = req.path();
    if path.starts_with("/.well-known/acme-challenge/") {
        let Some((_, v)) = vhost else {
            return Action::Error {
                status: 404,
                close: false,
            };
        };
        return static_action(v, &v.delivery, req);
    }
    let Some(host) = req.host.filter(|h| !h.is_empty()) else {
        return Action::Error {
            status: 400,
            close: false,
        };
    };
    let mut location = pool::take_vec();
    location.extend_from_slice(b"https://");
    location.extend_from_slice(host);
    location.extend_from_slice(path.as_bytes());
    if let Some(q) = crate::policy::headers::query_of(req.target) {
        location.push(b'?');
        location.extend_from_slice(q.as_bytes());
    }
    Action::Redirect {
        status: 308,
        location,
    }
}

/// A static file answer with the route's delivery keys (validators, ranges, compression,
/// `cache_control`).
fn static_action<'s>(
    vhost: &VHost,
    delivery: &'s crate::policy::delivery::Delivery,
    req: &Request<'_, '_>,
) -> Action<'s> {
    let conditions = static_files::Conditions {
        if_modified_since: req.header("if-modified-since"),
        if_none_match: req.header("if-none-match"),
        range: req.header("range"),
        if_range: req.header("if-range"),
        accept_encoding: req.header("accept-encoding"),
        chunked_ok: req.minor_version == 1,
    };
    let resp = static_files::serve_with(
        &vhost.doc_root,
        crate::runtime::handlers::static_serve::root_fd(&vhost.doc_root),
        req.method.as_bytes(),
        req.target.as_bytes(),
        &conditions,
        delivery,
    );
    let cache_control = delivery.cache_control.as_deref();
    Action::Static(resp, req.method == "HEAD", cache_control)
}

/// Routing decisions (sans-IO apart from the static file open).
/// `tags`: the request's vhost and handler, for metrics and the access log.
fn plan<'s>(
    shard: &'s Shard,
    c: &Client,
    tags: &mut (usize, HandlerKind),
    chosen: &mut Chosen,
    req: &Request<'_, '_>,
) -> Action<'s> {
    if shard
        .config
        .admin
        .as_ref()
        .is_some_and(|a| a.listener == Some(c.listener))
    {
        tags.1 = HandlerKind::Admin;
        return Action::Admin(admin::plan(shard, c, req));
    }
    if req.method == "CONNECT" && shard.config.listeners[c.listener].forward_proxy {
        tags.1 = HandlerKind::Connect;
        return plan_connect(shard, c, tags, req);
    }
    if shard.config.listeners[c.listener].redirect_https {
        return plan_https_redirect(shard, c, tags, chosen, req);
    }
    let Some((vhost_index, vhost)) = shard.routes.vhost_at(c.listener, req.host) else {
        // Over TLS the connection was set up for another name (RFC 9110 §15.5.20).
        let status = if c.stream.is_tls() { 421 } else { 404 };
        return Action::Error {
            status,
            close: false,
        };
    };
    tags.0 = shard.ids.vhosts[vhost_index];
    chosen.vhost(shard, vhost);
    let path = req.path();
    let route = vhost.route(path);
    let upgrade = ws::classify(req);
    if let ws::Upgrade::Invalid { status, .. } = upgrade {
        let reason = match status {
            426 => Rejected::Version,
            _ => Rejected::BadRequest,
        };
        metrics::with(|m| m.upgrade_rejected(reason));
    }
    if let (Some(ws_route), ws::Upgrade::WebSocket { .. } | ws::Upgrade::Invalid { .. }) =
        (route.websocket, upgrade)
    {
        tags.1 = HandlerKind::WebSocket;
        chosen.route(shard, &ws_route.rules);
        if let Some(refusal) = refused(shard, c, req, &ws_route.rules, true) {
            return refusal;
        }
        return plan_ws_proxy(shard, c, req, vhost, ws_route, upgrade);
    }
    if upgrade == ws::Upgrade::None && is_h2c(req) {
        metrics::with(|m| m.upgrade_rejected(Rejected::H2c));
    }
    tags.1 = match route.context.map(|ctx| &ctx.handler) {
        Some(Handler::Echo) => HandlerKind::Echo,
        Some(Handler::Proxy { .. }) => HandlerKind::Proxy,
        Some(Handler::Connect { .. }) => HandlerKind::Connect,
        Some(Handler::Static | Handler::Redirect { .. } | Handler::Respond { .. }) | None => {
            HandlerKind::Static
        }
    };
    if let Some(ctx) = route.context {
        chosen.route(shard, &ctx.rules);
        let close = upgrade != ws::Upgrade::None;
        if let Some(refusal) = refused(shard, c, req, &ctx.rules, close) {
            return refusal;
        }
    }
    match route.context.map(|ctx| (&ctx.handler, &ctx.rules)) {
        Some((Handler::Echo, _)) => match upgrade {
            ws::Upgrade::WebSocket { key } => match upgrade_limited(c) {
                Some(refusal) => refusal,
                None => Action::EchoUpgrade {
                    accept: ws::accept_key(key),
                },
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
        Some((Handler::Proxy { backend, host }, rules)) => {
            let mut plan = plan_proxy(
                c,
                req,
                *backend,
                host.as_deref(),
                [&vhost.request_headers, &rules.request_headers],
                route.context.map(|ctx| &ctx.delivery),
            );
            plan.sticky = sticky_of(shard, *backend, req, &mut plan.head);
            Action::Proxy(plan)
        }
        // A CONNECT context answers only CONNECT (on a forward_proxy listener, above).
        Some((Handler::Connect { .. }, _)) => Action::Error {
            status: 405,
            close: false,
        },
        Some((Handler::Redirect { to, status }, _)) => {
            let mut location = pool::take_vec();
            let parts = crate::policy::headers::RequestParts {
                scheme: c.proto(),
                host: req.host.unwrap_or_default(),
                path,
                query: crate::policy::headers::query_of(req.target),
            };
            to.expand(&parts, &mut location);
            Action::Redirect {
                status: *status,
                location,
            }
        }
        Some((Handler::Respond { status, body }, _)) => Action::Respond {
            status: *status,
            body,
        },
        Some((Handler::Static, _)) | None => {
            let delivery = route.context.map_or(&vhost.delivery, |ctx| &ctx.delivery);
            static_action(vhost, delivery, req)
        }
    }
}

/// `CONNECT host:port` on a `forward_proxy` listener: the vhost's `handler = "connect"`
/// context decides (auth: 407; a target no rule allows: 403; a malformed one: 400).
fn plan_connect<'s>(
    shard: &'s Shard,
    c: &Client,
    tags: &mut (usize, HandlerKind),
    req: &Request<'_, '_>,
) -> Action<'s> {
    let refuse = |status| Action::Error {
        status,
        close: true,
    };
    let Some((vhost_index, vhost)) = shard.routes.vhost_at(c.listener, req.host) else {
        return refuse(403);
    };
    tags.0 = shard.ids.vhosts[vhost_index];
    let Some((allow, users, rules)) = vhost.contexts.iter().find_map(|ctx| match &ctx.handler {
        Handler::Connect { allow, users } => Some((allow, users, &ctx.rules)),
        _ => None,
    }) else {
        return refuse(405);
    };
    // `allow_from`, `deny_from`, `requests_per_ip` of the connect context.
    if let Some(refusal) = refused(shard, c, req, rules, true) {
        return refusal;
    }
    if let Some(users) = users {
        if !gate::basic_ok(req.header("proxy-authorization"), users) {
            info!(core = shard.id, peer = %c.peer, "CONNECT without valid credentials: 407");
            return Action::ProxyAuth;
        }
    }
    let Some(target) = crate::policy::connect::parse_target(req.target) else {
        return refuse(400);
    };
    if !crate::policy::connect::allowed(allow, &target) {
        info!(core = shard.id, peer = %c.peer, target = req.target, "CONNECT to a target no rule allows: 403");
        return refuse(403);
    }
    Action::Connect {
        target,
        rules: allow,
    }
}

/// `Upgrade: h2c` (RFC 7540 §3.2, removed in RFC 9113): Ringway does not switch; the request
/// is served as HTTP/1.1 and the refusal counted.
fn is_h2c(req: &Request<'_, '_>) -> bool {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
        .any(|h| h.value.trim_ascii().eq_ignore_ascii_case(b"h2c"))
}

fn plan_ws_proxy<'s>(
    shard: &'s Shard,
    c: &Client,
    req: &Request<'_, '_>,
    vhost: &VHost,
    route: &'s WebSocketRoute,
    upgrade: ws::Upgrade<'_>,
) -> Action<'s> {
    match upgrade {
        ws::Upgrade::WebSocket { .. }
            if !route.origins.is_empty()
                && !ws::origin_allowed(
                    req.header("origin"),
                    &route.origins,
                    route.allow_missing_origin,
                ) =>
        {
            let origin = req.header("origin").map(String::from_utf8_lossy);
            info!(core = shard.id, peer = %c.peer, origin = ?origin, "websocket upgrade refused: origin not allowed");
            metrics::with(|m| m.upgrade_rejected(Rejected::Origin));
            Action::Error {
                status: 403,
                close: true,
            }
        }
        ws::Upgrade::WebSocket { key } => {
            if let Some(refusal) = upgrade_limited(c) {
                return refusal;
            }
            if let Some(mode) = &route.tunnel {
                let requested: Vec<&[u8]> = req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
                    .map(|h| h.value)
                    .collect();
                return Action::WsTunnel {
                    route,
                    accept: ws::accept_key(key),
                    protocol: crate::runtime::handlers::wstunnel::choose_subprotocol(
                        &mode.subprotocols,
                        &requested,
                    ),
                    // No request reaches the backend: nothing to take the cookie out of.
                    sticky: sticky_of(shard, route.backend, req, &mut Vec::new()),
                };
            }
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
            request_rules(
                &mut head,
                [&vhost.request_headers, &route.rules.request_headers],
            );
            let sticky = sticky_of(shard, route.backend, req, &mut head);
            Action::WsProxy {
                route,
                key: k,
                head,
                sticky,
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

/// What the request brings to a sticky backend's choice (`balance = "hash"` / `"cookie"`), and
/// the sticky cookie taken out of the forwarded `head`. Nothing is looked at or allocated for
/// other backends.
fn sticky_of(
    shard: &Shard,
    backend: usize,
    req: &Request<'_, '_>,
    head: &mut Vec<u8>,
) -> crate::policy::balance::Sticky {
    use crate::policy::balance::{Balance, Sticky};
    if !matches!(
        shard.config.backends[backend].balance,
        Balance::Hash | Balance::Cookie
    ) {
        return Sticky::None;
    }
    let headers: Vec<(&[u8], &[u8])> = req
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), h.value))
        .collect();
    let query = req.target.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let parts = crate::policy::sticky::RequestParts {
        path: req.path().as_bytes(),
        query: query.as_bytes(),
        headers: &headers,
    };
    let sticky = shard.backends.sticky_of(backend, &parts);
    if let Some(name) = shard.backends.sticky_cookie(backend) {
        crate::policy::sticky::strip_cookie_from_head(head, name.as_bytes());
    }
    sticky
}

fn plan_proxy<'s>(
    c: &Client,
    req: &Request<'_, '_>,
    backend: usize,
    host: Option<&'s str>,
    rules: [&crate::config::HeaderRules; 2],
    delivery: Option<&'s crate::policy::delivery::Delivery>,
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
    request_rules(&mut head, rules);
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
        compress: delivery.filter(|d| !d.compress.is_empty()).map(|d| {
            crate::runtime::handlers::compress::Negotiated {
                delivery: d,
                accept: crate::protocol::http::coding::Accept::parse(req.header("accept-encoding")),
                chunked_ok: req.minor_version == 1,
            }
        }),
        sticky: crate::policy::balance::Sticky::None,
    }
}
