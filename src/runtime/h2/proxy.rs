//! A stream proxied to an HTTP/1.1 backend (pooled keep-alive connections): the backend's
//! request head built from the HTTP/2 request (cookies joined again, forwarding fields added),
//! the request and response bodies streamed both ways (chunked coding removed and added),
//! trailers passed as HTTP/2 trailers. `backend_head` and `response_head` also serve the
//! WebSocket handshake of `connect`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use tracing::warn;

use super::ctx::{respond_no_server, respond_status, ConnCtx, Exchange};
use super::io::send_all;
use crate::observe::metrics;
use crate::policy::balance::Tried;
use crate::policy::delivery::{Delivery, ResponseFacts};
use crate::protocol::http::chunked::ChunkedDecoder;
use crate::protocol::http::coding::{Accept, Coding, Encoder};
use crate::protocol::http::conditional::weaken;
use crate::protocol::http::forward::{self, ForwardInfo};
use crate::protocol::http::h2map::{
    request_field_forwarded, response_field_forwarded, trailer_fields,
};
use crate::protocol::http::has_token;
use crate::protocol::http::head::{self, empty_headers, parse_response, Body};
use crate::runtime::backend::pools::Lease;
use crate::runtime::backend::upstream::Upstream;
use crate::runtime::net::idle;
use crate::runtime::net::io::{head_end, ReadBuf, ReadError};
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

#[allow(clippy::too_many_arguments)]
/// Builds the HTTP/1.1 request head for the backend from an HTTP/2 request. Cookies split
/// over several fields (RFC 9113 §8.2.3) are joined again.
pub(super) fn backend_head(
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

/// What an HTTP/2 request brings to a sticky backend's choice (nothing is looked at for other
/// backends). `target` is the path and query.
pub(super) fn sticky_of(
    shard: &Shard,
    backend: usize,
    parts: &http::request::Parts,
    target: &str,
) -> crate::policy::balance::Sticky {
    use crate::policy::balance::{Balance, Sticky};
    if !matches!(
        shard.config.backends[backend].balance,
        Balance::Hash | Balance::Cookie
    ) {
        return Sticky::None;
    }
    let headers: Vec<(&[u8], &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts = crate::policy::sticky::RequestParts {
        path: path.as_bytes(),
        query: query.as_bytes(),
        headers: &headers,
    };
    shard.backends.sticky_of(backend, &parts)
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
pub(super) async fn proxy(
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
    rules: [&crate::config::HeaderRules; 2],
    delivery: Option<&Delivery>,
) -> Result<(), h2::Error> {
    let head_only = parts.method == http::Method::HEAD;
    let accept = parts
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes);
    let compress = delivery
        .filter(|d| !d.compress.is_empty())
        .map(|d| (d, Accept::parse(accept)));
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
    let connect = ex.timeouts.connect.unwrap_or(shard.config.timeouts.connect);
    let mut lease = match backends
        .acquire_within(
            backend,
            ctx.peer.ip(),
            sticky_of(shard, backend, parts, target),
            &mut tried,
            pooled,
            connect,
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(core = shard.id, backend = %backends.name(backend), status = e.status(), "no backend server for HTTP/2 request");
            return respond_no_server(respond, ex, e, head_only);
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
    let had = sticky_of(shard, backend, parts, target);
    let cookie = backends.set_cookie(lease.backend, lease.server, had, ctx.tls);
    let mut head = backend_head(
        ctx,
        parts,
        authority,
        target,
        &[],
        framing,
        forward::Upgrade::None,
        host_override,
    );
    if let Some(name) = backends.sticky_cookie(backend) {
        crate::policy::sticky::strip_cookie_from_head(&mut head, name.as_bytes());
    }
    if rules.iter().any(|r| !r.is_empty()) {
        let mut scratch = pool::take_vec();
        crate::policy::headers::rewrite(&mut head, rules, &mut scratch);
        pool::give_vec(scratch);
    }
    let result = exchange(
        shard, &mut lease, &head, &mut body, framing, respond, ex, head_only, compress, cookie,
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
    compress: Option<(&Delivery, Accept)>,
    cookie: Option<String>,
) -> Result<bool, ProxyFail> {
    if lease.conn.write_all(head).await.is_err() {
        return Err(ProxyFail::Status(502));
    }
    if framing != Body::None {
        request_body(&mut lease.conn, body, framing == Body::Chunked, ex).await?;
    }
    let mut brb = ReadBuf::from_vec(pool::take_read_vec());
    let r = response(
        shard, lease, &mut brb, respond, ex, head_only, compress, cookie,
    )
    .await;
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
pub(super) async fn response_head(
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

#[allow(clippy::too_many_arguments)]
async fn response(
    shard: &Shard,
    lease: &mut Lease,
    brb: &mut ReadBuf,
    respond: &mut SendResponse<Bytes>,
    ex: &mut Exchange,
    head_only: bool,
    compress: Option<(&Delivery, Accept)>,
    cookie: Option<String>,
) -> Result<bool, ProxyFail> {
    // One watch for the exchange: the head's deadline, then each silence of the body.
    let read = ex
        .timeouts
        .upstream_read
        .unwrap_or(shard.config.timeouts.upstream_read);
    let answer = ex.timeouts.header.unwrap_or(read);
    let watch = idle::watch(answer);
    let end = response_head(shard, &mut lease.conn, brb, answer, &watch)
        .await
        .map_err(ProxyFail::Status)?;
    // The head in one shared buffer: every field value is a slice of it (no copy per field).
    let head = Bytes::copy_from_slice(&brb.data()[..end]);
    let (mut resp, framing, keep_alive) = response_parts(shard, lease, &head, head_only, ex)?;
    if let Some(v) = cookie.and_then(|v| http::HeaderValue::try_from(v).ok()) {
        resp.headers_mut().append(http::header::SET_COOKIE, v);
    }
    super::ctx::dress(ex, &mut resp);
    brb.consume(end);
    let mut enc = compress
        .and_then(|(d, accept)| compress_head(d, &accept, &mut resp, head_only, framing))
        .map(Encoder::new);
    if framing == Body::None {
        respond.send_response(resp, true)?;
        return Ok(keep_alive && brb.is_empty());
    }
    let mut send = respond.send_response(resp, false)?;
    let limit = read;
    let done = response_body(
        &mut lease.conn,
        brb,
        framing,
        &mut send,
        limit,
        &watch,
        ex,
        &mut enc,
    )
    .await?;
    Ok(done && keep_alive && framing != Body::UntilClose && brb.is_empty())
}

/// The backend's response head (`head`) as the stream's response: the status and the fields
/// HTTP/2 carries, each value a slice of `head`; with the body's framing and whether the
/// backend keeps the connection.
fn response_parts(
    shard: &Shard,
    lease: &Lease,
    head: &Bytes,
    head_only: bool,
    ex: &mut Exchange,
) -> Result<(Response<()>, Body, bool), ProxyFail> {
    let mut headers = empty_headers();
    let max = shard.config.limits.max_header_bytes;
    let Ok(Some(r)) = parse_response(head, &mut headers, max) else {
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
    *out.status_mut() = http::StatusCode::from_u16(r.code).map_err(|_| ProxyFail::Status(502))?;
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
    let server = shard.backends.metric(lease.backend, lease.server);
    metrics::with(|m| m.backend_request(server, r.code));
    ex.status = r.code;
    Ok((out, framing, r.keep_alive()))
}

/// Relays the response body into DATA frames, as it comes (SSE, long-poll), within the
/// stream's window; chunked coding is removed and its trailers sent as HTTP/2 trailers.
/// `Ok(true)`: the body ended where its framing said.
#[allow(clippy::too_many_arguments)]
async fn response_body(
    conn: &mut Upstream,
    brb: &mut ReadBuf,
    framing: Body,
    send: &mut SendStream<Bytes>,
    silence: Duration,
    watch: &Rc<idle::Watch>,
    ex: &mut Exchange,
    enc: &mut Option<Encoder>,
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
                    send_piece(send, enc, data, ex).await?;
                }
                brb.consume(used);
                if dec.is_done() {
                    finish_pieces(send, enc, ex).await?;
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
                send_piece(send, enc, &brb.data()[..take], ex).await?;
                brb.consume(take);
                left -= take as u64;
                if left == 0 {
                    break;
                }
            }
        }
        // The backend paused: what it sent so far goes to the client now.
        if brb.is_empty() {
            if let Some(e) = enc.as_mut() {
                e.flush().map_err(|_| ProxyFail::Status(502))?;
                send_piece(send, &mut None, e.output(), ex).await?;
                e.output().clear();
            }
        }
    }
    finish_pieces(send, enc, ex).await?;
    send.send_data(Bytes::new(), true)?;
    Ok(true)
}

/// Sends `data`, through the encoder when compressing.
async fn send_piece(
    send: &mut SendStream<Bytes>,
    enc: &mut Option<Encoder>,
    data: &[u8],
    ex: &mut Exchange,
) -> Result<(), ProxyFail> {
    let Some(e) = enc.as_mut() else {
        ex.bytes.1 += data.len() as u64;
        send_all(send, data).await?;
        return Ok(());
    };
    e.write(data).map_err(|_| ProxyFail::Status(502))?;
    if !e.output().is_empty() {
        ex.bytes.1 += e.output().len() as u64;
        send_all(send, e.output()).await?;
        e.output().clear();
    }
    Ok(())
}

/// Ends the compressed stream (its last bytes); nothing when not compressing.
async fn finish_pieces(
    send: &mut SendStream<Bytes>,
    enc: &mut Option<Encoder>,
    ex: &mut Exchange,
) -> Result<(), ProxyFail> {
    if let Some(mut e) = enc.take() {
        e.finish().map_err(|_| ProxyFail::Status(502))?;
        ex.bytes.1 += e.output().len() as u64;
        send_all(send, e.output()).await?;
    }
    Ok(())
}

/// Applies `compress` to a proxied response's fields (`policy::delivery`): `Vary:
/// Accept-Encoding` added when the answer varies; when compressing, `content-encoding`, a weak
/// `etag`, and no `content-length` or `accept-ranges`. Returns the coding to compress with.
fn compress_head(
    delivery: &Delivery,
    accept: &Accept,
    resp: &mut Response<()>,
    head_only: bool,
    framing: Body,
) -> Option<Coding> {
    let map = resp.headers();
    let field = |name: http::header::HeaderName| map.get(name).map(HeaderValue::as_bytes);
    let facts = ResponseFacts {
        status: resp.status().as_u16(),
        content_type: field(http::header::CONTENT_TYPE),
        content_encoding: field(http::header::CONTENT_ENCODING),
        cache_control: field(http::header::CACHE_CONTROL),
        content_length: field(http::header::CONTENT_LENGTH).and_then(head::parse_decimal),
    };
    let decision = delivery.compress_for(accept, head_only, true, &facts);
    let coding = decision.coding.filter(|_| framing != Body::None);
    let map = resp.headers_mut();
    if decision.vary {
        let covered = map
            .get_all(http::header::VARY)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"accept-encoding") || has_token(v.as_bytes(), b"*"));
        if !covered {
            map.append(
                http::header::VARY,
                HeaderValue::from_static("accept-encoding"),
            );
        }
    }
    let coding = coding?;
    map.remove(http::header::CONTENT_LENGTH);
    map.remove(http::header::ACCEPT_RANGES);
    if let Some(tag) = map.get(http::header::ETAG) {
        if let Ok(weak) = HeaderValue::from_bytes(&weaken(tag.as_bytes())) {
            map.insert(http::header::ETAG, weak);
        }
    }
    map.insert(
        http::header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    Some(coding)
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
