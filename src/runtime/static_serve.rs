//! Sends a `static_files::StaticResponse` on a client connection.

use std::io::Read;

use futures_lite::io::AsyncWriteExt;

use super::conn::{Client, Next};
use super::pool;
use crate::http::response;
use crate::static_files::{self, StaticResponse};

pub async fn send(c: &mut Client, resp: StaticResponse, is_head: bool, close: bool) -> Next {
    let mut head = pool::take_vec();
    let mut fields: Vec<(&str, &[u8])> = Vec::with_capacity(3);
    fields.push(("Content-Type", resp.content_type.as_bytes()));
    if let Some(lm) = &resp.last_modified {
        fields.push(("Last-Modified", lm.as_bytes()));
    }
    if resp.allow {
        fields.push(("Allow", b"GET, HEAD"));
    }
    // A 304 carries no Content-Length (RFC 9110 §15.4.5 allows omitting it).
    let length = (resp.status != 304).then_some(resp.content_length);
    response::write_head(&mut head, resp.status, &fields, length, close);
    let mut ok = c.stream.write_all(&head).await.is_ok();
    pool::give_vec(head);
    if ok && !is_head && resp.status != 304 {
        ok = match resp.file {
            Some(file) => send_file(c, file, resp.content_length).await,
            None => c
                .stream
                .write_all(static_files::error_body(resp.status))
                .await
                .is_ok(),
        };
    }
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Copies `length` bytes of the file. Reads are plain blocking reads: static files are the
/// demo page and small assets, served from the page cache. A file that shrinks under us ends
/// the connection (the promised Content-Length cannot be met).
async fn send_file(c: &mut Client, mut file: std::fs::File, length: u64) -> bool {
    let mut buf = pool::take();
    let mut left = length;
    let mut ok = true;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                ok = false;
                break;
            }
            Ok(n) => n,
        };
        if c.stream.write_all(&buf[..n]).await.is_err() {
            ok = false;
            break;
        }
        left -= n as u64;
    }
    pool::give(buf);
    ok
}
