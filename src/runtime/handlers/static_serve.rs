//! Sends a `static_files::StaticResponse` on a client connection.

use std::cell::RefCell;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use futures_lite::io::AsyncWriteExt;

use crate::policy::static_files::{self, StaticResponse};
use crate::protocol::http::response;
use crate::runtime::conn::client::{Client, Next};
use crate::runtime::handlers::compress;
use crate::runtime::net::io::write_all_two;
use crate::runtime::net::pool;

thread_local! {
    /// Each doc root opened once per core (`static_files::open_root`); `None` when it cannot
    /// be opened, and the canonicalizing path serves it.
    static ROOTS: RefCell<Vec<(PathBuf, Option<OwnedFd>)>> = const { RefCell::new(Vec::new()) };
}

/// This core's descriptor for `doc_root`, opened on first use. The descriptor lives as long as
/// the core's thread (roots come from the configuration: a handful).
pub fn root_fd(doc_root: &Path) -> Option<BorrowedFd<'static>> {
    ROOTS.with(|roots| {
        let mut roots = roots.borrow_mut();
        let i = match roots.iter().position(|(p, _)| p == doc_root) {
            Some(i) => i,
            None => {
                roots.push((
                    doc_root.to_path_buf(),
                    static_files::open_root(doc_root).ok(),
                ));
                roots.len() - 1
            }
        };
        // SAFETY: entries are never removed, and the thread-local outlives every request the
        // core serves, so the descriptor stays open while the borrow is in use.
        roots[i]
            .1
            .as_ref()
            .map(|fd| unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) })
    })
}

pub async fn send(
    c: &mut Client,
    resp: StaticResponse,
    is_head: bool,
    close: bool,
    cache_control: Option<&str>,
) -> Next {
    c.status = resp.status;
    let mut head = pool::take_vec();
    let body = !is_head && resp.status != 304;
    let compress = resp.compress.filter(|_| body && resp.file.is_some());
    let mut fields: Vec<(&str, &[u8])> = Vec::with_capacity(10);
    fields.push(("Content-Type", resp.content_type.as_bytes()));
    if let Some(lm) = &resp.last_modified {
        fields.push(("Last-Modified", lm.as_bytes()));
    }
    if let Some(tag) = &resp.etag {
        fields.push(("ETag", tag.as_bytes()));
    }
    if let Some(cc) = cache_control.filter(|_| matches!(resp.status, 200 | 206 | 304)) {
        fields.push(("Cache-Control", cc.as_bytes()));
    }
    if let Some(coding) = resp.content_encoding.or(compress) {
        fields.push(("Content-Encoding", coding.token().as_bytes()));
    }
    if resp.vary {
        fields.push(("Vary", b"Accept-Encoding"));
    }
    if resp.accept_ranges {
        fields.push(("Accept-Ranges", b"bytes"));
    }
    if let Some(range) = &resp.content_range {
        fields.push(("Content-Range", range.as_bytes()));
    }
    if resp.allow {
        fields.push(("Allow", b"GET, HEAD"));
    }
    if compress.is_some() {
        fields.push(("Transfer-Encoding", b"chunked"));
    }
    // A 304 carries no Content-Length (RFC 9110 §15.4.5 allows omitting it); a body compressed
    // on the fly has none to tell.
    let length = (resp.status != 304 && compress.is_none()).then_some(resp.content_length);
    response::write_head(&mut head, resp.status, &fields, length, close);
    crate::runtime::conn::client::dress(c, &mut head);
    c.head_written(head.len());
    let ok = match (resp.file, compress) {
        (Some(file), Some(coding)) if body => {
            compress::send_file(c, &head, file, resp.content_length, coding).await
        }
        // The head goes out with the file's first bytes, in one write.
        (Some(file), None) if body => {
            send_file(c, &head, file, resp.offset, resp.content_length).await
        }
        _ => {
            let text = if body {
                static_files::error_body(resp.status)
            } else {
                b""
            };
            write_all_two(&mut c.stream, &head, text).await.is_ok()
        }
    };
    pool::give_vec(head);
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Files of at least this many bytes go out by `sendfile(2)` on plain TCP; smaller ones by one
/// `read` and one `sendmsg` with the head. Both take two system calls; `sendfile` copies nothing
/// through user space (the socket takes the page cache's pages). Measured on loopback
/// (perf/RESULTS.md, 2026-12-07 issue 21): a 13 KB file cost less CPU by `sendfile` in 9 of 10
/// paired runs, a 5 KB one was even within the noise.
pub const SENDFILE_MIN: u64 = 8 * 1024;

/// Writes `head`, then `length` bytes of the file (the first read goes out with the head).
/// Reads are plain blocking reads: static files are the demo page and small assets, served from
/// the page cache. A file that shrinks under us ends the connection (the promised
/// Content-Length cannot be met).
///
/// On plain TCP a file of [`SENDFILE_MIN`] bytes or more goes out with `sendfile(2)` after the
/// head: no copy through user space, and a client that stops reading holds no buffer of
/// Ringway's while `timeouts.send` runs (a pooled 64 KiB buffer per slow reader otherwise).
/// `offset` is where the body starts in `file` (where the file stands).
async fn send_file(
    c: &mut Client,
    mut head: &[u8],
    mut file: std::fs::File,
    offset: u64,
    length: u64,
) -> bool {
    if length >= SENDFILE_MIN && !c.stream.is_tls() {
        return sendfile(c, head, &file, offset, length).await;
    }
    let mut buf = pool::take();
    let mut left = length;
    let mut ok = true;
    if left == 0 {
        ok = c.stream.write_all(head).await.is_ok();
    }
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                ok = false;
                break;
            }
            Ok(n) => n,
        };
        if write_all_two(&mut c.stream, head, &buf[..n]).await.is_err() {
            ok = false;
            break;
        }
        head = &[];
        left -= n as u64;
    }
    pool::give(buf);
    ok
}

/// `send_file` for plain TCP: the head with `MSG_MORE` (it leaves with the file's first bytes,
/// in one segment), then `length` bytes of the file from `offset` by `sendfile(2)` (which
/// takes the offset itself: no `lseek`).
async fn sendfile(
    c: &mut Client,
    mut head: &[u8],
    file: &std::fs::File,
    offset: u64,
    length: u64,
) -> bool {
    use std::os::unix::io::AsRawFd;
    let unsupported = || std::task::Poll::Ready(Err(std::io::ErrorKind::Unsupported.into()));
    while !head.is_empty() {
        let sent = futures_lite::future::poll_fn(|cx| {
            c.stream
                .poll_write_more(cx, head)
                .unwrap_or_else(unsupported)
        })
        .await;
        match sent {
            Ok(0) | Err(_) => return false,
            Ok(n) => head = &head[n.min(head.len())..],
        }
    }
    let fd = file.as_raw_fd();
    let Ok(mut offset) = i64::try_from(offset) else {
        return false;
    };
    let mut left = length;
    while left > 0 {
        let count = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        let sent = futures_lite::future::poll_fn(|cx| {
            c.stream
                .poll_sendfile(cx, fd, &mut offset, count)
                .unwrap_or_else(unsupported)
        })
        .await;
        match sent {
            // Ok(0): the file shrank under us; the promised length cannot be met.
            Ok(0) | Err(_) => return false,
            Ok(n) => left = left.saturating_sub(n as u64),
        }
    }
    true
}
