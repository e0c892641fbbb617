//! What a connection's streams share, and what each stream records.
//!
//! `ConnCtx` is the connection as its streams see it (core, starting generation, addresses,
//! how many streams still run) with its rapid-reset count (CVE-2023-44487): a client that
//! resets more than `RESETS_PER_SECOND_MAX` accepted streams within a second is flagged, and
//! the driver closes its connection (GOAWAY `ENHANCE_YOUR_CALM`). `Exchange` is one stream's
//! record for the access log and metrics, from `new_exchange` to `finish`; `respond_status`
//! answers an error with the same short text as over HTTP/1.1. A leaf: it imports no other
//! HTTP/2 module.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderMap, Response};
use tracing::debug;

use crate::observe::metrics::{self, HandlerKind};
use crate::protocol::http::head::{self, Body};
use crate::protocol::http::response;
use crate::runtime::conn::client::{log_access, AccessRequest};
use crate::runtime::shard::Core;
use crate::runtime::shard::Shard;

/// Client resets of accepted streams per connection per second before GOAWAY.
const RESETS_PER_SECOND_MAX: u32 = 200;

/// What every stream of a connection shares.
pub(super) struct ConnCtx {
    pub(super) core: Rc<Core>,
    /// The generation the connection started with (its settings); each stream takes the
    /// generation current when it opens, as HTTP/1.1 requests do.
    pub(super) shard: Rc<Shard>,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) listener: usize,
    pub(super) tls: bool,
    /// Streams still running (a keep-alive timeout closes only a connection without any).
    pub(super) active: Cell<usize>,
    /// Client resets counted in the current one-second window.
    pub(super) resets: Cell<(Instant, u32)>,
    /// Too many resets: the connection is shut with ENHANCE_YOUR_CALM.
    pub(super) abuse: Cell<bool>,
    /// The connection task, to wake on `abuse`.
    pub(super) waker: RefCell<Option<std::task::Waker>>,
}

impl ConnCtx {
    pub(super) fn note_reset(&self) {
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

/// How a stream ended, for the connection's reset accounting.
#[derive(Default)]
pub(super) struct Outcome {
    /// The client reset the stream while Ringway was answering it.
    pub(super) reset: bool,
}

fn was_reset(e: &h2::Error) -> bool {
    e.is_reset() && e.is_remote()
}

/// What the access log and metrics need of a stream's request.
pub(super) struct Exchange {
    pub(super) vhost: usize,
    pub(super) handler: HandlerKind,
    pub(super) status: u16,
    pub(super) backend: Option<(usize, usize)>,
    pub(super) bytes: (u64, u64),
    pub(super) access: Option<Box<AccessRequest>>,
    pub(super) started: Instant,
    pub(super) tunnel: bool,
    /// The route's style (header rules, error pages), as over HTTP/1.1.
    pub(super) style: Option<Rc<crate::config::Style>>,
    /// The route's own `timeouts`.
    pub(super) timeouts: crate::config::RouteTimeouts,
}

/// Applies the exchange's response header rules to a response's fields (`set` replaces,
/// `add` appends, `remove` drops; the vhost's rules, then the route's).
pub(super) fn dress(ex: &Exchange, resp: &mut Response<()>) {
    let Some(style) = ex.style.as_deref() else {
        return;
    };
    let headers = resp.headers_mut();
    for rules in &style.response {
        for name in rules.remove.iter().chain(rules.set.iter().map(|(n, _)| n)) {
            if let Ok(name) = http::HeaderName::try_from(name.as_str()) {
                headers.remove(name);
            }
        }
        for (name, value) in rules.set.iter().chain(&rules.add) {
            let name = http::HeaderName::try_from(name.as_str());
            let value = http::HeaderValue::try_from(value.as_str());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
    }
}

/// `:authority` (or `Host`) and the request target of a stream, borrowed.
pub(super) fn target_of<'a>(
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
) -> (Option<&'a str>, &'a str) {
    let authority = uri.authority().map(|a| a.as_str()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    (authority, target)
}

pub(super) fn new_exchange(
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
        style: None,
        timeouts: crate::config::RouteTimeouts::default(),
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
pub(super) fn finish(
    ctx: &ConnCtx,
    shard: &Shard,
    ex: &Exchange,
    result: Result<(), h2::Error>,
) -> Outcome {
    let mut outcome = Outcome::default();
    if let Err(e) = result {
        outcome.reset = was_reset(&e);
        debug!(core = shard.id, peer = %ctx.peer, error = %e, "HTTP/2 stream ended early");
    }
    if ex.status != 0 && !ex.tunnel {
        let took = ex.started.elapsed();
        metrics::with(|m| match (ex.handler, ex.status) {
            // The echo endpoint over RFC 8441: its session's lifetime is a tunnel's.
            (crate::observe::metrics::HandlerKind::Echo, 200) => {
                m.session(ex.vhost, ex.handler, ex.status, took)
            }
            _ => m.request(ex.vhost, ex.handler, ex.status, took),
        });
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

fn access_enabled() -> bool {
    crate::runtime::conn::access::enabled()
}

/// Answers `status` with the same short text body as over HTTP/1.1 (none for HEAD).
pub(super) fn respond_status(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    status: u16,
    extra: &[(&str, &str)],
    head_only: bool,
) -> Result<(), h2::Error> {
    let page = ex.style.as_deref().and_then(|s| s.page(status));
    let (body, content_type) = match page {
        Some(page) => (Bytes::copy_from_slice(page), "text/html"),
        None => (
            Bytes::from(format!("{status} {}\n", response::reason(status))),
            "text/plain; charset=utf-8",
        ),
    };
    respond_body(respond, ex, status, extra, (body, content_type), head_only)
}

/// No backend server for the stream: its status, and `no servers` in the body for a backend
/// whose set is empty (as on HTTP/1.1).
pub(super) fn respond_no_server(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    e: crate::runtime::backend::pools::NoServer,
    head_only: bool,
) -> Result<(), h2::Error> {
    match e.text() {
        Some(text) => {
            let body = Bytes::from(format!("{text}\n"));
            let typed = (body, "text/plain; charset=utf-8");
            respond_body(respond, ex, e.status(), &[], typed, head_only)
        }
        None => respond_status(respond, ex, e.status(), &[], head_only),
    }
}

/// A response with `body` of its content type, dressed by the route's header rules.
fn respond_body(
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    status: u16,
    extra: &[(&str, &str)],
    (body, content_type): (Bytes, &str),
    head_only: bool,
) -> Result<(), h2::Error> {
    ex.status = status;
    let mut r = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len());
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    let mut resp = r.body(()).unwrap_or_default();
    dress(ex, &mut resp);
    let mut send = respond.send_response(resp, head_only)?;
    if !head_only {
        ex.bytes.1 += body.len() as u64;
        send.send_data(body, true)?;
    }
    Ok(())
}

/// A route's access checks (`conn::gate`, as over HTTP/1.1): `Ok(true)` when refused (and
/// answered: 403, 429 with `retry-after`, 401 with `www-authenticate`).
pub(super) fn refused(
    ctx: &ConnCtx,
    shard: &Shard,
    parts: &http::request::Parts,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    rules: &crate::config::RouteRules,
    head_only: bool,
) -> Result<bool, h2::Error> {
    use crate::runtime::conn::gate::{check, Refusal};
    if rules.access.is_open() && rules.limiter.is_none() {
        return Ok(false);
    }
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .map(http::HeaderValue::as_bytes);
    match check(shard, rules, ctx.peer.ip(), authorization) {
        None => return Ok(false),
        Some(Refusal::Forbidden) => respond_status(respond, ex, 403, &[], head_only)?,
        Some(Refusal::TooMany(secs)) => {
            let secs = secs.to_string();
            respond_status(respond, ex, 429, &[("retry-after", &secs)], head_only)?
        }
        Some(Refusal::Unauthorized(realm)) => {
            let challenge = format!("Basic realm=\"{realm}\"");
            respond_status(
                respond,
                ex,
                401,
                &[("www-authenticate", &challenge)],
                head_only,
            )?
        }
    }
    Ok(true)
}
