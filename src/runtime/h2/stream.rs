//! One request stream, routed like an HTTP/1.1 request on the same listener (vhost by
//! `:authority`, then the URI's route) and answered by its handler:
//!
//! - `GET`/`HEAD` on a static context: the file, streamed within the stream's flow-control
//!   window. One up to `SMALL_FILE_MAX` (or its error) is answered in the connection's task
//!   (`serve_inline`), without a task of its own.
//! - A proxy context: `proxy`.
//! - CONNECT: `connect` (extended CONNECT for WebSockets; a plain CONNECT answers 405).
//! - Errors get the same statuses as over HTTP/1.1.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderValue, Request, Response};

use super::connect::extended_connect;
use super::ctx::{finish, new_exchange, respond_status, target_of, ConnCtx, Exchange, Outcome};
use super::io::send_all;
use super::proxy::proxy;
use crate::config::Handler;
use crate::observe::metrics::HandlerKind;
use crate::policy::static_files;
use crate::protocol::http::coding::{Coding, Encoder};
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

/// Serves, in the connection's task, a stream that needs no waiting: a `GET`/`HEAD` for a
/// static file up to `SMALL_FILE_MAX` (or its error). No task is spawned for it: the common
/// static request costs one call. Anything else comes back, for a task of its own.
#[allow(clippy::result_large_err)]
pub(super) fn serve_inline(
    ctx: &Rc<ConnCtx>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Result<Outcome, (Request<RecvStream>, SendResponse<Bytes>)> {
    let method = req.method();
    if method != http::Method::GET && method != http::Method::HEAD {
        return Err((req, respond));
    }
    let shard = ctx.core.current();
    if shard.config.listeners[ctx.listener].redirect_https {
        return Err((req, respond));
    }
    let found = {
        let (authority, target) = target_of(req.uri(), req.headers());
        let path = target.split(['?', '#']).next().unwrap_or("/");
        shard
            .routes
            .vhost_at(ctx.listener, authority.map(str::as_bytes))
            .map(|(i, v)| {
                let context = v.route(path).context;
                // A static context with access rules goes the general way (checked there).
                let plain = match context {
                    None => true,
                    Some(c) => {
                        matches!(c.handler, Handler::Static)
                            && c.rules.access.is_open()
                            && c.rules.limiter.is_none()
                    }
                };
                let style = context.map_or(v.style, |c| c.rules.style.or(v.style));
                (i, plain, style)
            })
    };
    let (vhost_index, style) = match found {
        Some((i, true, style)) => (i, style),
        // Other handlers, and unknown hosts (answered by `route`), go the general way.
        _ => return Err((req, respond)),
    };
    let vhost = &shard.routes.vhosts[vhost_index];
    let (parts, _body) = req.into_parts();
    let (authority, target) = target_of(&parts.uri, &parts.headers);
    let mut ex = new_exchange(&parts, authority, target, Instant::now());
    ex.vhost = shard.ids.vhosts[vhost_index];
    ex.handler = HandlerKind::Static;
    ex.style = style.map(|i| shard.routes.styles[i].clone());
    let head_only = parts.method == http::Method::HEAD;
    let (resp, cache_control) = static_lookup(vhost, &parts, target);
    match static_head(&mut respond, &mut ex, resp, head_only, cache_control) {
        Ok(None) => Ok(finish(ctx, &shard, &ex, Ok(()))),
        Err(e) => Ok(finish(ctx, &shard, &ex, Err(e))),
        Ok(Some(big)) => {
            // A large or compressed file: its own task, within the window.
            let ctx = ctx.clone();
            ctx.active.set(ctx.active.get() + 1);
            glommio::spawn_local(async move {
                let result = big_file(big, &mut ex).await;
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

pub(super) async fn handle(
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
    let found = shard.routes.vhost_at(ctx.listener, host);
    let path = path_and_query.split(['?', '#']).next().unwrap_or("/");
    if shard.config.listeners[ctx.listener].redirect_https {
        if let Some((i, v)) = found {
            ex.vhost = shard.ids.vhosts[i];
            ex.style = v.style.map(|i| shard.routes.styles[i].clone());
        }
        ex.handler = HandlerKind::Static;
        return match found {
            Some((_, v)) if path.starts_with("/.well-known/acme-challenge/") => {
                let (resp, cache_control) = static_lookup(v, parts, path_and_query);
                match static_head(respond, ex, resp, head_only, cache_control)? {
                    None => Ok(()),
                    Some(big) => Box::pin(big_file(big, ex)).await,
                }
            }
            _ if path.starts_with("/.well-known/acme-challenge/") => {
                respond_status(respond, ex, 404, &[], head_only)
            }
            _ => match authority.filter(|a| !a.is_empty()) {
                None => respond_status(respond, ex, 400, &[], head_only),
                Some(a) => {
                    let query = crate::policy::headers::query_of(path_and_query);
                    let location = match query {
                        Some(q) => format!("https://{a}{path}?{q}"),
                        None => format!("https://{a}{path}"),
                    };
                    fixed(respond, ex, 308, Some(&location), b"", head_only)
                }
            },
        };
    }
    let Some((vhost_index, vhost)) = found else {
        let status = if ctx.tls { 421 } else { 404 };
        return respond_status(respond, ex, status, &[], head_only);
    };
    ex.vhost = shard.ids.vhosts[vhost_index];
    ex.style = vhost.style.map(|i| shard.routes.styles[i].clone());
    let route = vhost.route(path);
    if let Some(c) = route.context {
        if let Some(i) = c.rules.style {
            ex.style = Some(shard.routes.styles[i].clone());
        }
        ex.timeouts = c.rules.timeouts;
    }
    if parts.method == http::Method::CONNECT {
        return extended_connect(
            ctx,
            shard,
            parts,
            body,
            respond,
            ex,
            route,
            vhost,
            authority,
            path_and_query,
        )
        .await;
    }
    ex.handler = match route.context.map(|c| &c.handler) {
        Some(Handler::Echo) => HandlerKind::Echo,
        Some(Handler::Proxy { .. }) => HandlerKind::Proxy,
        Some(Handler::Connect { .. }) => HandlerKind::Connect,
        Some(Handler::Static | Handler::Redirect { .. } | Handler::Respond { .. }) | None => {
            HandlerKind::Static
        }
    };
    if let Some(c) = route.context {
        if super::ctx::refused(ctx, shard, parts, respond, ex, &c.rules, head_only)? {
            return Ok(());
        }
    }
    match route.context.map(|c| &c.handler) {
        Some(Handler::Redirect { to, status }) => {
            let mut location = Vec::new();
            let r = crate::policy::headers::RequestParts {
                scheme: if ctx.tls { "https" } else { "http" },
                host: authority.unwrap_or_default().as_bytes(),
                path,
                query: crate::policy::headers::query_of(path_and_query),
            };
            to.expand(&r, &mut location);
            let location = String::from_utf8_lossy(&location);
            fixed(respond, ex, *status, Some(&location), b"", head_only)
        }
        Some(Handler::Respond { status, body }) => {
            fixed(respond, ex, *status, None, body.as_bytes(), head_only)
        }
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
            // Boxed, here and below (and in `connect`): the stream's task stays small (a 3 KiB
            // future was copied on every spawn); a branch's state is allocated when it runs.
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
                [&vhost.request_headers, route_request_rules(route)],
                route.context.map(|c| &c.delivery),
            ))
            .await
        }
        Some(Handler::Static) | None => {
            let (resp, cache_control) = static_lookup(vhost, parts, path_and_query);
            match static_head(respond, ex, resp, head_only, cache_control)? {
                None => Ok(()),
                Some(big) => Box::pin(big_file(big, ex)).await,
            }
        }
    }
}

/// A fixed answer (`respond`, a redirect): `location` if any, `body` as `text/plain`.
fn fixed(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    status: u16,
    location: Option<&str>,
    body: &[u8],
    head_only: bool,
) -> Result<(), h2::Error> {
    ex.status = status;
    let bodyless = matches!(status, 204 | 304);
    let mut r = Response::builder().status(status);
    if let Some(l) = location {
        r = r.header("location", l);
    } else {
        r = r.header("content-type", "text/plain; charset=utf-8");
    }
    if !bodyless {
        r = r.header("content-length", body.len());
    }
    let resp = dressed(r, ex);
    let end = head_only || bodyless || body.is_empty();
    let mut send = respond.send_response(resp, end)?;
    if !end {
        ex.bytes.1 += body.len() as u64;
        send.send_data(Bytes::copy_from_slice(body), true)?;
    }
    Ok(())
}

/// The static answer for a request (`static_files::serve_with`, as over HTTP/1.1), with the
/// route's `cache_control`.
fn static_lookup<'v>(
    vhost: &'v crate::config::VHost,
    parts: &http::request::Parts,
    target: &str,
) -> (static_files::StaticResponse, Option<&'v str>) {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let delivery = vhost
        .route(path)
        .context
        .map_or(&vhost.delivery, |c| &c.delivery);
    let field = |name: http::header::HeaderName| parts.headers.get(name).map(HeaderValue::as_bytes);
    let conditions = static_files::Conditions {
        if_modified_since: field(http::header::IF_MODIFIED_SINCE),
        if_none_match: field(http::header::IF_NONE_MATCH),
        range: field(http::header::RANGE),
        if_range: field(http::header::IF_RANGE),
        accept_encoding: field(http::header::ACCEPT_ENCODING),
        chunked_ok: true,
    };
    let resp = static_files::serve_with(
        &vhost.doc_root,
        crate::runtime::handlers::static_serve::root_fd(&vhost.doc_root),
        parts.method.as_str().as_bytes(),
        target.as_bytes(),
        &conditions,
        delivery,
    );
    (resp, delivery.cache_control.as_deref())
}

/// A body that goes out from a task of its own: a file above `SMALL_FILE_MAX`, or one
/// compressed on the fly.
pub(super) struct BigBody {
    send: SendStream<Bytes>,
    file: std::fs::File,
    len: u64,
    compress: Option<Coding>,
}

/// Files up to this size go out in one DATA write from an exact-size buffer, without waiting
/// for window (h2 holds what the window does not take yet; bounded by this).
const SMALL_FILE_MAX: u64 = 64 * 1024;

/// Answers a static response: the head, and the body when it is small (one DATA write from an
/// exact-size buffer). A larger file comes back with its stream, for `big_file`.
fn static_head(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    resp: static_files::StaticResponse,
    head_only: bool,
    cache_control: Option<&str>,
) -> Result<Option<BigBody>, h2::Error> {
    use std::io::Read;
    let page = ex.style.as_deref().and_then(|s| s.page(resp.status));
    if resp.file.is_none() && resp.status >= 400 && page.is_some() {
        let allow: &[(&str, &str)] = if resp.allow {
            &[("allow", "GET, HEAD")]
        } else {
            &[]
        };
        respond_status(respond, ex, resp.status, allow, head_only)?;
        return Ok(None);
    }
    ex.status = resp.status;
    let body = !head_only && resp.status != 304;
    let compress = resp.compress.filter(|_| body && resp.file.is_some());
    let mut r = Response::builder()
        .status(resp.status)
        .header("content-type", HeaderValue::from_static(resp.content_type));
    if resp.status != 304 && compress.is_none() {
        r = r.header("content-length", resp.content_length);
    }
    if let Some(lm) = &resp.last_modified {
        r = r.header("last-modified", lm.as_str());
    }
    if let Some(tag) = &resp.etag {
        r = r.header("etag", tag.as_str());
    }
    if let Some(cc) = cache_control.filter(|_| matches!(resp.status, 200 | 206 | 304)) {
        r = r.header("cache-control", cc);
    }
    if let Some(coding) = resp.content_encoding.or(compress) {
        r = r.header("content-encoding", coding.token());
    }
    if resp.vary {
        r = r.header("vary", "accept-encoding");
    }
    if resp.accept_ranges {
        r = r.header("accept-ranges", "bytes");
    }
    if let Some(range) = &resp.content_range {
        r = r.header("content-range", range.as_str());
    }
    if resp.allow {
        r = r.header("allow", "GET, HEAD");
    }
    let Some(mut file) = resp.file.filter(|_| body) else {
        let text = static_files::error_body(resp.status);
        let end = !body || text.is_empty();
        let mut send = respond.send_response(dressed(r, ex), end)?;
        if !end {
            ex.bytes.1 += text.len() as u64;
            send.send_data(Bytes::from_static(text), true)?;
        }
        return Ok(None);
    };
    if let Some(coding) = compress {
        let send = respond.send_response(dressed(r, ex), false)?;
        return Ok(Some(BigBody {
            send,
            file,
            len: resp.content_length,
            compress: Some(coding),
        }));
    }
    if resp.content_length == 0 {
        respond.send_response(dressed(r, ex), true)?;
        return Ok(None);
    }
    if resp.content_length <= SMALL_FILE_MAX {
        let mut data = Vec::with_capacity(resp.content_length as usize);
        let complete = (&mut file)
            .take(resp.content_length)
            .read_to_end(&mut data)
            .is_ok_and(|n| n as u64 == resp.content_length);
        let mut send = respond.send_response(dressed(r, ex), false)?;
        if !complete {
            // The file shrank: the promised length cannot be met.
            send.send_reset(Reason::INTERNAL_ERROR);
            return Ok(None);
        }
        ex.bytes.1 += data.len() as u64;
        send.send_data(Bytes::from(data), true)?;
        return Ok(None);
    }
    let send = respond.send_response(dressed(r, ex), false)?;
    Ok(Some(BigBody {
        send,
        file,
        len: resp.content_length,
        compress: None,
    }))
}

/// A file larger than `SMALL_FILE_MAX`, or one compressed on the fly: read in pooled buffers,
/// sent within the window.
async fn big_file(big: BigBody, ex: &mut Exchange) -> Result<(), h2::Error> {
    use std::io::Read;
    let BigBody {
        mut send,
        mut file,
        len: mut left,
        compress,
    } = big;
    if let Some(coding) = compress {
        return compressed_file(send, file, left, coding, ex).await;
    }
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

/// A built response with the exchange's response header rules applied.
fn dressed(r: http::response::Builder, ex: &Exchange) -> Response<()> {
    let mut resp = r.body(()).unwrap_or_default();
    super::ctx::dress(ex, &mut resp);
    resp
}

/// A route's own `request_headers` (none without a context).
fn route_request_rules<'r>(route: crate::config::PathRoute<'r>) -> &'r crate::config::HeaderRules {
    static NONE: crate::config::HeaderRules = crate::config::HeaderRules {
        set: Vec::new(),
        add: Vec::new(),
        remove: Vec::new(),
    };
    route.context.map_or(&NONE, |c| &c.rules.request_headers)
}

/// A file compressed on the fly (`protocol::http::coding::Encoder`), one DATA piece per read.
async fn compressed_file(
    mut send: SendStream<Bytes>,
    mut file: std::fs::File,
    mut left: u64,
    coding: Coding,
    ex: &mut Exchange,
) -> Result<(), h2::Error> {
    use std::io::Read;
    let mut enc = Encoder::new(coding);
    let mut buf = pool::take();
    let result = async {
        loop {
            if left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match file.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => {
                        send.send_reset(Reason::INTERNAL_ERROR);
                        return Ok(());
                    }
                    Ok(n) => n,
                };
                left -= n as u64;
                if enc.write(&buf[..n]).is_err() {
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Ok(());
                }
            }
            if left == 0 && enc.finish().is_err() {
                send.send_reset(Reason::INTERNAL_ERROR);
                return Ok(());
            }
            if !enc.output().is_empty() {
                send_all(&mut send, enc.output()).await?;
                ex.bytes.1 += enc.output().len() as u64;
                enc.output().clear();
            }
            if left == 0 {
                return send.send_data(Bytes::new(), true);
            }
        }
    }
    .await;
    pool::give(buf);
    result
}
