//! The HTTP reverse proxy context (`handler = "proxy"`): one request/response exchange with a
//! pooled backend connection, both bodies streamed as they come (SSE and long-poll reach the
//! client event by event), with retries on other servers only while that is safe.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use crate::observe::metrics;
use crate::policy::balance::{Sticky, Tried};
use crate::protocol::http::chunked::ChunkedDecoder;
use crate::protocol::http::coding::{push_chunk, Coding, Encoder, LAST_CHUNK};
use crate::protocol::http::forward::{write_response_head, ResponseRewrite};
use crate::protocol::http::head::{empty_headers, parse_response, Body};
use crate::runtime::backend::pools::Lease;
use crate::runtime::conn::client::{respond_error, respond_no_server, Client, Next};
use crate::runtime::handlers::compress;
use crate::runtime::net::idle;
use crate::runtime::net::idle::Watch;
use crate::runtime::net::io::{head_end, write_all_two, ReadBuf, ReadError};
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

/// Everything the exchange needs, taken from the request head before it is consumed.
pub struct ProxyPlan<'s> {
    pub backend: usize,
    /// The forwarded request head.
    pub head: Vec<u8>,
    pub method_head: bool,
    /// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 §9.2.2): may be retried elsewhere.
    pub idempotent: bool,
    pub body: Body,
    pub expect_continue: bool,
    pub client_keep_alive: bool,
    /// The client's Host (for Location rewriting), copied out of the read buffer into a pooled
    /// `Vec` (`pool::take_vec`; empty when the request had none).
    pub client_host: Vec<u8>,
    pub host_override: Option<&'s str>,
    /// The route compresses (`compress`): what the client accepts.
    pub compress: Option<crate::runtime::handlers::compress::Negotiated<'s>>,
    /// What the request brings to a sticky backend's choice.
    pub sticky: Sticky,
}

/// How an exchange failed.
enum Fail {
    /// Nothing reached the client. `retry_ok`: the backend may simply be gone (reset, EOF before
    /// any response byte) and the request can go elsewhere; `status` is for the client otherwise.
    Backend { status: u16, stale: bool },
    /// The client's request body is malformed (bad chunk framing): answer this status and
    /// close; the backend is not to blame.
    Client(u16),
    /// The response started, or the client went away: the connection just ends.
    Abort,
}

pub async fn run(shard: &Rc<Shard>, c: &mut Client, mut plan: ProxyPlan<'_>) -> Next {
    let backends = &shard.backends;
    let b = &shard.config.backends[plan.backend];
    let mut tried = Tried::default();
    let mut body_sent = false;
    let mut continue_sent = false;
    // The status of the last failed attempt: what the client gets when no server is left.
    let mut last_status = None;
    let next = loop {
        let pooled = backends.poolable(plan.backend);
        let connect = c.timeouts.connect.unwrap_or(shard.config.timeouts.connect);
        let mut lease = match backends
            .acquire_within(
                plan.backend,
                c.peer.ip(),
                plan.sticky,
                &mut tried,
                pooled,
                connect,
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                let status = last_status.unwrap_or(e.status());
                warn!(core = shard.id, backend = %b.name, status, "no backend server for request");
                let close = !plan.client_keep_alive || plan.body != Body::None;
                if last_status.is_none() {
                    break respond_no_server(c, e, close).await;
                }
                break respond_error(c, status, close).await;
            }
        };
        if backends
            .introduce(&mut lease, c.peer, c.local)
            .await
            .is_err()
        {
            warn!(core = shard.id, backend = %b.name, "backend write failed (PROXY header)");
            backends.failed(lease.backend, lease.server);
            backends.release(lease, false);
            last_status = Some(502);
            if tried.attempts() <= b.retries as usize {
                continue;
            }
            break respond_error(c, 502, true).await;
        }
        let mut result = exchange(
            shard,
            c,
            &mut lease,
            &plan,
            &mut body_sent,
            &mut continue_sent,
        )
        .await;
        // A pooled connection the backend had closed: discard it, retry once on a fresh one.
        if let Err(Fail::Backend { stale: true, .. }) = result {
            if lease.reused && !body_sent {
                debug!(core = shard.id, backend = %b.name, "stale pooled connection; reconnecting");
                let fresh = backends.reconnect(&mut lease).await.is_ok()
                    && backends
                        .introduce(&mut lease, c.peer, c.local)
                        .await
                        .is_ok();
                if fresh {
                    result = exchange(
                        shard,
                        c,
                        &mut lease,
                        &plan,
                        &mut body_sent,
                        &mut continue_sent,
                    )
                    .await;
                }
            }
        }
        match result {
            Ok((reusable, next)) => {
                backends.succeeded(lease.backend, lease.server);
                backends.release(lease, reusable);
                break next;
            }
            Err(Fail::Abort) => {
                backends.release(lease, false);
                break Next::Close;
            }
            Err(Fail::Client(status)) => {
                backends.release(lease, false);
                break respond_error(c, status, true).await;
            }
            Err(Fail::Backend { status, .. }) => {
                warn!(core = shard.id, backend = %b.name, server = %backends.key(lease.backend, lease.server), status, "backend exchange failed");
                backends.failed(lease.backend, lease.server);
                backends.release(lease, false);
                last_status = Some(status);
                let retry = plan.idempotent && !body_sent && tried.attempts() <= b.retries as usize;
                if !retry {
                    break respond_error(c, status, true).await;
                }
            }
        }
    };
    pool::give_vec(std::mem::take(&mut plan.head));
    pool::give_vec(std::mem::take(&mut plan.client_host));
    next
}

/// One attempt. `Ok((backend connection reusable, what the client connection does next))`.
async fn exchange(
    shard: &Shard,
    c: &mut Client,
    lease: &mut Lease,
    plan: &ProxyPlan<'_>,
    body_sent: &mut bool,
    continue_sent: &mut bool,
) -> Result<(bool, Next), Fail> {
    let stale = lease.reused;
    if lease.conn.write_all(&plan.head).await.is_err() {
        return Err(Fail::Backend { status: 502, stale });
    }
    if plan.body != Body::None {
        if plan.expect_continue && !*continue_sent {
            *continue_sent = true;
            c.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| Fail::Abort)?;
        }
        *body_sent = true;
        request_body(shard, c, lease, plan.body).await?;
    }
    let mut brb = ReadBuf::from_vec(pool::take_read_vec());
    let result = respond(shard, c, lease, plan, &mut brb, stale).await;
    pool::give_read_vec(brb.into_vec());
    result
}

/// Reads the backend's response, writes it to the client, streams its body.
async fn respond(
    shard: &Shard,
    c: &mut Client,
    lease: &mut Lease,
    plan: &ProxyPlan<'_>,
    brb: &mut ReadBuf,
    stale: bool,
) -> Result<(bool, Next), Fail> {
    let read = c
        .timeouts
        .upstream_read
        .unwrap_or(shard.config.timeouts.upstream_read);
    // The backend's response head: the route's `timeouts.header` if it has one.
    let answer = c.timeouts.header.unwrap_or(read);
    let end = response_head(shard, lease, brb, &c.watch, stale, answer).await?;
    let (out, body, backend_keep_alive, coding) = {
        let mut headers = empty_headers();
        let max = shard.config.limits.max_header_bytes;
        let resp = match parse_response(&brb.data()[..end], &mut headers, max) {
            Ok(Some(r)) => r,
            _ => {
                return Err(Fail::Backend {
                    status: 502,
                    stale: false,
                })
            }
        };
        let method = if plan.method_head { "HEAD" } else { "GET" };
        let body = resp.body(method).map_err(|_| Fail::Backend {
            status: 502,
            stale: false,
        })?;
        let close = !plan.client_keep_alive || body == Body::UntilClose || idle::draining();
        c.status = resp.code;
        c.backend = Some((lease.backend, lease.server));
        let server = shard.backends.metric(lease.backend, lease.server);
        let authority = shard.backends.authority(lease.backend, lease.server);
        metrics::with(|m| m.backend_request(server, resp.code));
        let rw = ResponseRewrite {
            backend_authorities: [
                Some(&*authority).filter(|a| !a.is_empty()),
                plan.host_override,
            ],
            client_host: Some(plan.client_host.as_slice()).filter(|h| !h.is_empty()),
            client_scheme: c.proto(),
            close,
        };
        let mut out = pool::take_vec();
        let decision = plan
            .compress
            .as_ref()
            .map(|n| n.decide(&resp, plan.method_head))
            .unwrap_or_default();
        let coding = decision.coding.filter(|_| body != Body::None);
        if decision.vary || coding.is_some() {
            compress::write_head(&mut out, &resp, body, &rw, decision);
        } else {
            write_response_head(&mut out, &resp, body, &rw);
        }
        let secure = c.stream.is_tls();
        if let Some(v) = shard
            .backends
            .set_cookie(lease.backend, lease.server, plan.sticky, secure)
        {
            crate::protocol::http::forward::insert_header(&mut out, "Set-Cookie", v.as_bytes());
        }
        crate::runtime::conn::client::dress(c, &mut out);
        (out, body, resp.keep_alive(), coding)
    };
    c.head_written(out.len());
    brb.consume(end);
    let timeout = read;
    // The head goes out with the first body bytes (one send when they came in one read).
    let mut head: &[u8] = &out;
    let streamed = match coding {
        Some(coding) => {
            let r = stream_compressed(
                &mut lease.conn,
                &mut c.stream,
                brb,
                body,
                &c.watch,
                timeout,
                head,
                coding,
            )
            .await;
            head = &[];
            r
        }
        None => {
            stream_body(
                &mut lease.conn,
                &mut c.stream,
                brb,
                body,
                &c.watch,
                timeout,
                &mut head,
            )
            .await
        }
    };
    let head_sent = head.is_empty();
    pool::give_vec(out);
    streamed.map_err(|e| {
        debug!(core = shard.id, error = %e, "response body cut short");
        // Bad framing in the bytes that came with the head: nothing reached the client yet,
        // so it gets a 502 like any other malformed response.
        if e == BodyError::Framing && !head_sent {
            Fail::Backend {
                status: 502,
                stale: false,
            }
        } else {
            Fail::Abort
        }
    })?;
    let reusable = backend_keep_alive && body != Body::UntilClose && brb.is_empty();
    let next = if plan.client_keep_alive && body != Body::UntilClose && !idle::draining() {
        Next::KeepAlive
    } else {
        Next::Close
    };
    Ok((reusable, next))
}

/// Streams the request body (already-buffered bytes first) to the backend.
async fn request_body(
    shard: &Shard,
    c: &mut Client,
    lease: &mut Lease,
    body: Body,
) -> Result<(), Fail> {
    let timeout = shard.config.timeouts.header;
    let mut rb = std::mem::take(&mut c.rb);
    let r = stream_body(
        &mut c.stream,
        &mut lease.conn,
        &mut rb,
        body,
        &c.watch,
        timeout,
        &mut &[][..],
    )
    .await;
    c.rb = rb;
    r.map_err(|e| {
        debug!(core = shard.id, error = %e, "request body not forwarded");
        match e {
            // Smuggling defence: a bad chunk size is the client's fault.
            BodyError::Framing => Fail::Client(400),
            BodyError::PeerClosed | BodyError::ReadTimedOut | BodyError::Read => Fail::Abort,
            // The body may be half-sent: the request cannot be retried.
            BodyError::Write => Fail::Backend {
                status: 502,
                stale: false,
            },
        }
    })
}

/// Reads the backend's response head, skipping interim 1xx responses (other than 101).
async fn response_head(
    shard: &Shard,
    lease: &mut Lease,
    brb: &mut ReadBuf,
    watch: &Rc<Watch>,
    stale: bool,
    answer: Duration,
) -> Result<usize, Fail> {
    let limit = shard.config.limits.max_header_bytes + 1;
    watch.restart(answer);
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
            return Err(Fail::Backend {
                status: 502,
                stale: false,
            });
        }
        match brb.fill_watched(&mut lease.conn, limit, watch).await {
            Ok(0) | Err(ReadError::Io) => {
                let nothing = brb.is_empty();
                return Err(Fail::Backend {
                    status: 502,
                    stale: stale && nothing,
                });
            }
            Ok(_) => {}
            Err(ReadError::TimedOut) => {
                return Err(Fail::Backend {
                    status: 504,
                    stale: false,
                })
            }
        }
    }
}

/// Why a streamed body stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Bad chunked framing from the sender.
    Framing,
    /// The sender closed before the body ended.
    PeerClosed,
    /// No bytes for longer than the idle limit.
    ReadTimedOut,
    Read,
    /// The receiver is gone.
    Write,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyError::Framing => "bad chunked framing",
            BodyError::PeerClosed => "peer closed mid-body",
            BodyError::ReadTimedOut => "body read timed out",
            BodyError::Read => "body read failed",
            BodyError::Write => "body write failed",
        })
    }
}

/// Copies a body framed as `body` from `src` (bytes in `buf` first) to `dst`, writing each read
/// as it arrives. Chunked bodies pass through unchanged and are validated; `idle` bounds each
/// silence (through `watch`: data flowing is never cut). `head` (may be empty) is written first,
/// together with the first body bytes (one vectored write); it is left empty once written.
pub async fn stream_body<R, W>(
    src: &mut R,
    dst: &mut W,
    buf: &mut ReadBuf,
    body: Body,
    watch: &Rc<Watch>,
    idle: Duration,
    head: &mut &[u8],
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = match body {
        Body::None | Body::Length(0) => {
            dst.write_all(head).await.map_err(|_| BodyError::Write)?;
            *head = &[];
            return Ok(());
        }
        Body::Length(n) => n,
        Body::Chunked | Body::UntilClose => u64::MAX,
    };
    // Nothing buffered yet: the head goes out now rather than wait for the body's first read.
    if buf.is_empty() && !head.is_empty() {
        dst.write_all(head).await.map_err(|_| BodyError::Write)?;
        *head = &[];
    }
    let mut chunked = (body == Body::Chunked).then(ChunkedDecoder::default);
    watch.restart(idle);
    loop {
        if buf.is_empty() {
            match buf.fill_watched(src, pool::BUF_BYTES, watch).await {
                Ok(0) if body == Body::UntilClose => return Ok(()),
                Ok(0) => return Err(BodyError::PeerClosed),
                Ok(_) => watch.touch(),
                Err(ReadError::TimedOut) => return Err(BodyError::ReadTimedOut),
                Err(ReadError::Io) => return Err(BodyError::Read),
            }
        }
        let mut take = (buf.len() as u64).min(left) as usize;
        if let Some(d) = chunked.as_mut() {
            take = d
                .feed(&buf.data()[..take])
                .map_err(|_| BodyError::Framing)?;
        }
        write_all_two(dst, head, &buf.data()[..take])
            .await
            .map_err(|_| BodyError::Write)?;
        *head = &[];
        buf.consume(take);
        left -= take as u64;
        if left == 0 || chunked.as_ref().is_some_and(ChunkedDecoder::is_done) {
            return Ok(());
        }
    }
}

/// `proxy::stream_body` for a compressed response: the backend's body, framed as `body`,
/// decoded from its chunks if chunked (trailers are dropped), compressed with `coding` and
/// written to `dst` as chunks. `head` is written first, at once.
#[allow(clippy::too_many_arguments)]
pub async fn stream_compressed<R, W>(
    src: &mut R,
    dst: &mut W,
    buf: &mut ReadBuf,
    body: Body,
    watch: &Rc<Watch>,
    idle: Duration,
    head: &[u8],
    coding: Coding,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    dst.write_all(head).await.map_err(|_| BodyError::Write)?;
    let mut out = pool::take_vec();
    let result = compress_body(src, dst, buf, body, watch, idle, coding, &mut out).await;
    pool::give_vec(out);
    result
}

#[allow(clippy::too_many_arguments)]
async fn compress_body<R, W>(
    src: &mut R,
    dst: &mut W,
    buf: &mut ReadBuf,
    body: Body,
    watch: &Rc<Watch>,
    idle: Duration,
    coding: Coding,
    out: &mut Vec<u8>,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut enc = Encoder::new(coding);
    let mut left = match body {
        Body::None | Body::Length(0) => 0,
        Body::Length(n) => n,
        Body::Chunked | Body::UntilClose => u64::MAX,
    };
    let mut chunked = (body == Body::Chunked).then(ChunkedDecoder::default);
    let mut trailers = Vec::new();
    watch.restart(idle);
    loop {
        let done = left == 0 || chunked.as_ref().is_some_and(ChunkedDecoder::is_done);
        let mut ended = done;
        if !done && buf.is_empty() {
            match buf.fill_watched(src, pool::BUF_BYTES, watch).await {
                Ok(0) if body == Body::UntilClose => ended = true,
                Ok(0) => return Err(BodyError::PeerClosed),
                Ok(_) => watch.touch(),
                Err(ReadError::TimedOut) => return Err(BodyError::ReadTimedOut),
                Err(ReadError::Io) => return Err(BodyError::Read),
            }
        }
        if ended {
            enc.finish().map_err(|_| BodyError::Write)?;
            push_chunk(out, enc.output());
            out.extend_from_slice(LAST_CHUNK);
            return dst.write_all(out).await.map_err(|_| BodyError::Write);
        }
        let take = (buf.len() as u64).min(left) as usize;
        let data = &buf.data()[..take];
        let mut failed = false;
        let used = match chunked.as_mut() {
            Some(d) => {
                // Trailers are dropped (bounded by `feed_parts`).
                d.feed_parts(
                    data,
                    |r| failed |= enc.write(&data[r]).is_err(),
                    &mut trailers,
                )
                .map_err(|_| BodyError::Framing)?
            }
            None => {
                failed = enc.write(data).is_err();
                take
            }
        };
        if failed {
            return Err(BodyError::Write);
        }
        buf.consume(used);
        if body != Body::Chunked {
            left -= used as u64;
        }
        let more = left > 0 && !chunked.as_ref().is_some_and(ChunkedDecoder::is_done);
        // The backend paused: what it sent so far goes to the client now.
        if more && buf.is_empty() {
            enc.flush().map_err(|_| BodyError::Write)?;
        }
        push_chunk(out, enc.output());
        enc.output().clear();
        if !out.is_empty() {
            dst.write_all(out).await.map_err(|_| BodyError::Write)?;
            out.clear();
        }
    }
}
