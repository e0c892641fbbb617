//! On-the-fly compression over HTTP/1.1 (`compress = ["br", "gzip"]`): the decision and head
//! for a proxied response (`proxy::stream_compressed` streams its body), and a static file
//! through `protocol::http::coding::Encoder`, out as chunks.
//!
//! Memory per response is bounded: the encoder's state (fixed by the level and window, whatever
//! the body's size), one pooled read buffer and the compressed output of one read. Nothing
//! buffers a whole body. A proxied body is flushed (sync flush) whenever the backend pauses, so
//! a streamed response reaches the client piece by piece; a static file is flushed only at its
//! end.

use std::io::Read;

use futures_lite::io::AsyncWriteExt;
use httparse::Header;

use crate::policy::delivery::{Decision, Delivery, ResponseFacts};
use crate::protocol::http::coding::{push_chunk, Accept, Coding, Encoder, LAST_CHUNK};
use crate::protocol::http::conditional::weaken;
use crate::protocol::http::forward::{write_response_head, ResponseRewrite};
use crate::protocol::http::has_token;
use crate::protocol::http::head::{parse_decimal, Body, Response};
use crate::runtime::conn::client::Client;
use crate::runtime::net::pool;

/// What a proxied request's route and client allow (built when the request is planned).
pub struct Negotiated<'s> {
    pub delivery: &'s Delivery,
    pub accept: Accept,
    /// HTTP/1.1: a compressed body can go out chunked.
    pub chunked_ok: bool,
}

impl Negotiated<'_> {
    /// The decision for a backend's response.
    pub fn decide(&self, resp: &Response<'_, '_>, head: bool) -> Decision {
        let facts = ResponseFacts {
            status: resp.code,
            content_type: resp.header("content-type"),
            content_encoding: resp.header("content-encoding"),
            cache_control: resp.header("cache-control"),
            content_length: resp.header("content-length").and_then(parse_decimal),
        };
        self.delivery
            .compress_for(&self.accept, head, self.chunked_ok, &facts)
    }
}

/// Writes the client's head for a backend response under `decision`: with `Vary:
/// Accept-Encoding` added to any `Vary` there is, and when compressing, `Content-Encoding`,
/// `Transfer-Encoding: chunked`, a weakened `ETag`, and no `Content-Length` or `Accept-Ranges`.
/// Returns the body framing the client gets.
pub fn write_head(
    out: &mut Vec<u8>,
    resp: &Response<'_, '_>,
    body: Body,
    rw: &ResponseRewrite<'_>,
    decision: Decision,
) -> Body {
    let compress = decision.coding.filter(|_| body != Body::None);
    let mut vary_values: Vec<&[u8]> = Vec::new();
    let mut etag = None;
    let mut headers: Vec<Header<'_>> = Vec::with_capacity(resp.headers.len() + 4);
    for h in resp.headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("vary") {
            vary_values.push(h.value);
            continue;
        }
        if compress.is_some() {
            let framing = ["content-length", "transfer-encoding", "accept-ranges"];
            if framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
                continue;
            }
            if name.eq_ignore_ascii_case("etag") {
                etag = Some(weaken(h.value));
                continue;
            }
        }
        headers.push(*h);
    }
    let covered = vary_values
        .iter()
        .any(|v| has_token(v, b"accept-encoding") || has_token(v, b"*"));
    let mut vary = Vec::new();
    for v in &vary_values {
        if !vary.is_empty() {
            vary.extend_from_slice(b", ");
        }
        vary.extend_from_slice(v);
    }
    if decision.vary && !covered {
        if !vary.is_empty() {
            vary.extend_from_slice(b", ");
        }
        vary.extend_from_slice(b"Accept-Encoding");
    }
    if !vary.is_empty() {
        headers.push(Header {
            name: "Vary",
            value: &vary,
        });
    }
    if let Some(tag) = &etag {
        headers.push(Header {
            name: "ETag",
            value: tag,
        });
    }
    let body = match compress {
        Some(coding) => {
            headers.push(Header {
                name: "Content-Encoding",
                value: coding.token().as_bytes(),
            });
            headers.push(Header {
                name: "Transfer-Encoding",
                value: b"chunked",
            });
            Body::Chunked
        }
        None => body,
    };
    let rewritten = Response {
        code: resp.code,
        reason: resp.reason,
        minor_version: resp.minor_version,
        headers: &headers,
        head_len: resp.head_len,
    };
    write_response_head(out, &rewritten, body, rw);
    body
}

/// Sends `head`, then `length` bytes of `file` compressed with `coding`, as chunks. False when
/// the client is gone or the file shrank (the connection then ends without the last chunk, so
/// the client sees the body cut short).
pub async fn send_file(
    c: &mut Client,
    head: &[u8],
    mut file: std::fs::File,
    length: u64,
    coding: Coding,
) -> bool {
    let mut enc = Encoder::new(coding);
    let mut buf = pool::take();
    let mut out = pool::take_vec();
    out.extend_from_slice(head);
    let mut left = length;
    let ok = loop {
        if left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break false,
                Ok(n) => n,
            };
            left -= n as u64;
            if enc.write(&buf[..n]).is_err() {
                break false;
            }
        }
        if left == 0 && enc.finish().is_err() {
            break false;
        }
        push_chunk(&mut out, enc.output());
        enc.output().clear();
        if left == 0 {
            out.extend_from_slice(LAST_CHUNK);
        }
        if !out.is_empty() && c.stream.write_all(&out).await.is_err() {
            break false;
        }
        out.clear();
        if left == 0 {
            break true;
        }
    };
    pool::give(buf);
    pool::give_vec(out);
    ok
}
