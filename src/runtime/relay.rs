//! Relaying a backend's HTTP response to the client as-is, body framed per RFC 9112 §6.3, with
//! the connection then closed (used when a backend refuses a WebSocket upgrade).

use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWriteExt};
use httparse::Header;
use tracing::debug;

use super::conn::Client;
use super::io::{ReadBuf, ReadError};
use super::{pool, Shard};
use crate::http::chunked::ChunkedDecoder;
use crate::http::head::{empty_headers, parse_response, Body};

/// Hop-by-hop response fields not relayed; `Connection: close` is added instead.
fn is_hop_by_hop(h: &Header<'_>) -> bool {
    ["connection", "keep-alive", "proxy-connection", "upgrade"]
        .iter()
        .any(|n| h.name.eq_ignore_ascii_case(n))
}

/// Writes the response whose head ends at `head_end` in `brb`, then its body.
pub async fn response<B: AsyncRead + Unpin>(
    shard: &Shard,
    c: &mut Client,
    backend: &mut B,
    brb: &mut ReadBuf,
    head_end: usize,
    method: &str,
) {
    let mut out = pool::take_vec();
    let body = {
        let mut headers = empty_headers();
        let Ok(Some(resp)) = parse_response(&brb.data()[..head_end], &mut headers, usize::MAX)
        else {
            pool::give_vec(out);
            return;
        };
        let Ok(body) = resp.body(method) else {
            pool::give_vec(out);
            return;
        };
        // The status line as the backend wrote it, then its fields minus hop-by-hop ones.
        let line_end = brb.data().iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
        out.extend_from_slice(&brb.data()[..line_end]);
        for h in resp.headers.iter().filter(|h| !is_hop_by_hop(h)) {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        body
    };
    brb.consume(head_end);
    let ok = c.stream.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if ok {
        if let Err(e) = body_bytes(shard, c, backend, brb, body).await {
            debug!(core = shard.id, error = e, "relayed body cut short");
        }
    }
}

async fn body_bytes<B: AsyncRead + Unpin>(
    shard: &Shard,
    c: &mut Client,
    backend: &mut B,
    brb: &mut ReadBuf,
    body: Body,
) -> Result<(), &'static str> {
    let mut left = match body {
        Body::None => return Ok(()),
        Body::Length(n) => n,
        Body::Chunked | Body::UntilClose => u64::MAX,
    };
    let mut chunked = (body == Body::Chunked).then(ChunkedDecoder::default);
    loop {
        if brb.is_empty() {
            let deadline = Instant::now() + shard.config.timeouts.header;
            match brb.fill_until(backend, 16 * 1024, deadline).await {
                Ok(0) if body == Body::UntilClose => return Ok(()),
                Ok(0) => return Err("backend closed mid-body"),
                Ok(_) => {}
                Err(ReadError::TimedOut) => return Err("backend body timed out"),
                Err(ReadError::Io) => return Err("backend read failed"),
            }
        }
        let mut take = (brb.len() as u64).min(left) as usize;
        if let Some(d) = chunked.as_mut() {
            take = d
                .feed(&brb.data()[..take])
                .map_err(|_| "bad chunked body from backend")?;
        }
        c.stream
            .write_all(&brb.data()[..take])
            .await
            .map_err(|_| "client write failed")?;
        brb.consume(take);
        left -= take as u64;
        if left == 0 || chunked.as_ref().is_some_and(ChunkedDecoder::is_done) {
            return Ok(());
        }
    }
}
