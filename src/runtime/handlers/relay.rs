//! Relaying a backend's HTTP response to the client as a normal response, then closing the
//! connection (used when a backend refuses a WebSocket upgrade).

use futures_lite::io::AsyncRead;
use tracing::debug;

use crate::protocol::http::forward::{write_response_head, ResponseRewrite};
use crate::protocol::http::head::{empty_headers, parse_response};
use crate::runtime::conn::client::Client;
use crate::runtime::handlers::proxy::stream_body;
use crate::runtime::net::io::ReadBuf;
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

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
        let parsed = parse_response(&brb.data()[..head_end], &mut headers, usize::MAX);
        let Some((resp, body)) = parsed
            .ok()
            .flatten()
            .and_then(|r| r.body(method).ok().map(|b| (r, b)))
        else {
            pool::give_vec(out);
            return;
        };
        let rw = ResponseRewrite {
            backend_authorities: [None, None],
            client_host: None,
            client_scheme: c.proto(),
            close: true,
        };
        write_response_head(&mut out, &resp, body, &rw);
        crate::runtime::conn::client::dress(c, &mut out);
        c.head_written(out.len());
        c.status = resp.code;
        body
    };
    brb.consume(head_end);
    let idle = c
        .timeouts
        .upstream_read
        .unwrap_or(shard.config.timeouts.upstream_read);
    let streamed = stream_body(
        backend,
        &mut c.stream,
        brb,
        body,
        &c.watch,
        idle,
        &mut &out[..],
    )
    .await;
    pool::give_vec(out);
    if let Err(e) = streamed {
        debug!(core = shard.id, error = %e, "relayed body cut short");
    }
}
