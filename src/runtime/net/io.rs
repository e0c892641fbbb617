//! Small I/O helpers: the connection's read buffer and deadline-bounded reads.
//! (glommio's `set_read_timeout` is not used: a dropped read leaves its timer armed.)

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::task::Poll;

use futures_lite::io::{AsyncRead, AsyncReadExt};

use crate::runtime::net::idle::Watch;
use crate::runtime::net::pool;

/// A connection's read buffer: bytes `[start, end)` are received and not yet consumed. It grows
/// on demand up to a limit (the head limit while reading heads).
///
/// Its memory comes from the core's pool (`pool::take_read_vec`) at the first read and goes
/// back there when it is released or dropped, so a connection does not allocate and zero a
/// fresh 4 KiB per request head (the WebSocket churn profile: 13 % of all instructions were
/// that memset, two buffers per connection).
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// First allocation for a connection's read buffer; most request heads fit.
pub const READ_BUF_BYTES_INITIAL: usize = 4096;

#[derive(Debug)]
pub enum ReadError {
    TimedOut,
    Io,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// A read buffer over a reused `Vec` (see `pool::take_read_vec`): its initialized length is
    /// kept as read space, so it is not zeroed again.
    pub fn from_vec(buf: Vec<u8>) -> ReadBuf {
        ReadBuf {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// The underlying `Vec`, to return to the pool.
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the buffer back to the core's pool (e.g. once a tunnel takes over) if nothing is
    /// pending.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.start = 0;
            self.end = 0;
            pool::give_read_vec(std::mem::take(&mut self.buf));
        }
    }

    /// Reads once into free space, growing the buffer up to `limit` bytes of pending data.
    /// Returns the bytes read; 0 means EOF, or that `limit` bytes are already pending.
    pub async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        limit: usize,
    ) -> io::Result<usize> {
        if self.buf.is_empty() {
            // First read (or first since `release`): a pooled buffer, cut to the size a fresh
            // one starts at so that the limits behave as with a fresh one; only a buffer new
            // to the pool is zeroed.
            let mut v = pool::take_read_vec();
            v.truncate(READ_BUF_BYTES_INITIAL);
            v.resize(READ_BUF_BYTES_INITIAL.min(limit.max(1)), 0);
            self.buf = v;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < limit {
                let grown = (self.buf.len() * 2).clamp(READ_BUF_BYTES_INITIAL, limit);
                self.buf.resize(grown, 0);
            } else {
                return Ok(0);
            }
        }
        let n = s.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// `fill`, ended by `watch` expiring (see `idle`): no timer per read.
    pub async fn fill_watched<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        limit: usize,
        watch: &Watch,
    ) -> Result<usize, ReadError> {
        let mut fill = std::pin::pin!(self.fill(s, limit));
        std::future::poll_fn(|cx| {
            if watch.expired() {
                return Poll::Ready(Err(ReadError::TimedOut));
            }
            watch.register(cx);
            fill.as_mut().poll(cx).map_err(|_| ReadError::Io)
        })
        .await
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if self.buf.capacity() > 0 {
            pool::give_read_vec(std::mem::take(&mut self.buf));
        }
    }
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf::new()
    }
}

/// Index just past the blank line that ends a head in `buf`, if there is one. `from` lets a
/// caller skip bytes already scanned. Accepts CRLF and bare LF line ends, as httparse does.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(3);
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Writes `head` then `body` with as few system calls as the stream allows: one `sendmsg` for
/// both on a plain socket (a proxied response's rewritten head and the first body bytes that
/// arrived with it), continuing after short writes.
pub async fn write_all_two<W: futures_lite::io::AsyncWrite + Unpin>(
    w: &mut W,
    mut head: &[u8],
    mut body: &[u8],
) -> io::Result<()> {
    use futures_lite::io::AsyncWriteExt;
    while !head.is_empty() {
        let bufs = [io::IoSlice::new(head), io::IoSlice::new(body)];
        let n = std::future::poll_fn(|cx| {
            futures_lite::io::AsyncWrite::poll_write_vectored(
                std::pin::Pin::new(&mut *w),
                cx,
                &bufs,
            )
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    w.write_all(body).await
}

/// How long a lingering close waits for the next byte from the client (nginx's
/// `lingering_timeout` default).
pub const LINGER_IDLE: Duration = Duration::from_secs(5);
/// The most a lingering close lasts in all (nginx's `lingering_time` default).
pub const LINGER_MAX: Duration = Duration::from_secs(30);
/// The most a lingering close reads and drops before it gives up on the client.
pub const LINGER_BYTES: usize = 1 << 20;

/// Lingering close, the model of nginx's `lingering_close` and Apache's `lingering_close()`:
/// shut the write side (the client reads the response, then EOF), then read and drop whatever
/// the client still sends (the rest of an oversized head, a body Ringway did not take,
/// pipelined requests) until it closes too, `LINGER_IDLE` passes without a byte, `LINGER_MAX`
/// passes or `LINGER_BYTES` were dropped. Closing with input still unread would make the
/// kernel answer with a RST, and a RST can discard the response from the client's receive
/// queue before the client has read it. A client that closes at once costs one more read.
pub async fn linger_close<S: AsyncRead + futures_lite::io::AsyncWrite + Unpin>(
    s: &mut S,
    rb: &mut ReadBuf,
    watch: &Rc<Watch>,
) {
    use futures_lite::io::AsyncWriteExt;
    if s.close().await.is_err() {
        return;
    }
    let started = Instant::now();
    let mut dropped = rb.len();
    rb.consume(rb.len());
    watch.restart(LINGER_IDLE);
    while dropped <= LINGER_BYTES && started.elapsed() < LINGER_MAX {
        match rb.fill_watched(s, READ_BUF_BYTES_INITIAL, watch).await {
            Ok(n) if n > 0 => {
                dropped += n;
                rb.consume(n);
                watch.touch();
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::head_end;
    use super::ReadBuf;

    #[test]
    fn head_end_forms() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nxx", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nxx", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for from in 0..full.len() {
            assert_eq!(head_end(full, from), Some(full.len()), "from {from}");
        }
    }

    #[test]
    fn a_released_buffer_goes_back_to_the_pool_and_serves_the_next_connection() {
        let mut src: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        let mut first = ReadBuf::new();
        futures_lite::future::block_on(first.fill(&mut src, 8192)).unwrap();
        let ptr = first.data().as_ptr();
        // Pending bytes keep the buffer; once consumed, release gives it back.
        first.release();
        assert_eq!(first.data().as_ptr(), ptr);
        first.consume(first.len());
        first.release();
        let mut next = ReadBuf::new();
        let mut src: &[u8] = b"xy";
        futures_lite::future::block_on(next.fill(&mut src, 8192)).unwrap();
        assert_eq!(next.data(), b"xy");
        assert_eq!(next.data().as_ptr(), ptr, "the pooled buffer was reused");
        // A dropped one goes back as well, cut to the initial size when it is taken again.
        drop(next);
        let mut third = ReadBuf::new();
        let mut src: &[u8] = b"z";
        futures_lite::future::block_on(third.fill(&mut src, 8192)).unwrap();
        assert_eq!(third.data().as_ptr(), ptr);
        assert_eq!(third.into_vec().len(), super::READ_BUF_BYTES_INITIAL);
    }

    #[test]
    fn a_reused_vec_reads_into_its_initialized_bytes() {
        // A Vec from the pool keeps its length: the stale bytes are read space, never data.
        let mut rb = ReadBuf::from_vec(vec![b'x'; 4096]);
        assert!(rb.is_empty());
        let mut src: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";
        let n = futures_lite::future::block_on(rb.fill(&mut src, 8192)).unwrap();
        assert_eq!(n, 19);
        assert_eq!(rb.data(), b"HTTP/1.1 200 OK\r\n\r\n");
        rb.consume(n);
        assert!(rb.is_empty());
        assert_eq!(
            rb.into_vec().len(),
            4096,
            "the length (initialized bytes) is kept"
        );
    }
}

/// Why `peek_until` gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekEnd {
    /// `limit` passed before `judge` decided.
    TimedOut,
    /// The peer closed (or the socket failed) first.
    Closed,
    /// `buf` is full and `judge` still wants more.
    Full,
}

/// How long to wait before peeking again at bytes that arrived in parts (peeking at the same
/// bytes returns at once, so the wait is a sleep).
const PEEK_POLL: Duration = Duration::from_millis(5);

/// Peeks at what `stream` has received (consuming nothing) until `judge` decides: it returns
/// `None` while it needs more bytes. Bounded by `limit` and by `buf`'s length. For what must
/// be read before deciding how to read the rest (a PROXY header, a TLS ClientHello).
pub async fn peek_until<T>(
    stream: &glommio::net::TcpStream,
    limit: Duration,
    buf: &mut [u8],
    mut judge: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, PeekEnd> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PeekEnd::TimedOut);
        }
        let peek = async { Some(stream.peek(buf).await) };
        let timer = async {
            glommio::timer::sleep(left).await;
            None
        };
        let n = match futures_lite::future::or(peek, timer).await {
            None => return Err(PeekEnd::TimedOut),
            Some(Err(_)) | Some(Ok(0)) => return Err(PeekEnd::Closed),
            Some(Ok(n)) => n,
        };
        if let Some(decided) = judge(&buf[..n]) {
            return Ok(decided);
        }
        if n >= buf.len() {
            return Err(PeekEnd::Full);
        }
        glommio::timer::sleep(PEEK_POLL).await;
    }
}
