//! Bidirectional byte forwarding between two streams, after a verified WebSocket handshake.
//!
//! One future drives both directions. A direction borrows a pool buffer only when its source
//! has data; if the read would block, the buffer goes straight back (glommio's `poll_read`
//! arms a readiness poll and does not keep the slice), so idle tunnels hold no buffers. A
//! direction whose source reaches EOF shuts down the write side of its destination (half-close)
//! and the tunnel ends when both directions have.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::idle::Watch;
use super::pool;

/// Reads per direction per poll before yielding, so one busy tunnel cannot starve a core.
const TURNS_PER_POLL_MAX: usize = 16;

#[derive(Default)]
struct Half {
    buf: Option<Box<[u8]>>,
    pos: usize,
    len: usize,
    eof: bool,
    done: bool,
    bytes: u64,
}

pub struct Tunnel<'a, A, B> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Half,
    b_to_a: Half,
    watch: &'a Watch,
}

/// Bytes moved each way when a tunnel ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Moved {
    pub a_to_b: u64,
    pub b_to_a: u64,
}

impl<'a, A, B> Tunnel<'a, A, B> {
    pub fn new(a: &'a mut A, b: &'a mut B, watch: &'a Watch) -> Self {
        Tunnel {
            a,
            b,
            a_to_b: Half::default(),
            b_to_a: Half::default(),
            watch,
        }
    }

    pub fn moved(&self) -> Moved {
        Moved {
            a_to_b: self.a_to_b.bytes,
            b_to_a: self.b_to_a.bytes,
        }
    }
}

impl<A, B> Drop for Tunnel<'_, A, B> {
    fn drop(&mut self) {
        for half in [&mut self.a_to_b, &mut self.b_to_a] {
            if let Some(buf) = half.buf.take() {
                pool::give(buf);
            }
        }
    }
}

fn poll_half<R, W>(
    cx: &mut Context<'_>,
    src: &mut R,
    dst: &mut W,
    half: &mut Half,
    watch: &Watch,
) -> Poll<io::Result<()>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    for _ in 0..TURNS_PER_POLL_MAX {
        if half.done {
            return Poll::Ready(Ok(()));
        }
        if let Some(buf) = &half.buf {
            if half.pos < half.len {
                match Pin::new(&mut *dst).poll_write(cx, &buf[half.pos..half.len]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => half.pos += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            if let Some(buf) = half.buf.take() {
                pool::give(buf);
            }
        }
        if half.eof {
            // Propagate the half-close; glommio's close is a non-blocking shutdown(SHUT_WR).
            match Pin::new(&mut *dst).poll_close(cx) {
                Poll::Ready(_) => half.done = true,
                Poll::Pending => return Poll::Pending,
            }
            continue;
        }
        let mut buf = pool::take();
        match Pin::new(&mut *src).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(0)) => {
                pool::give(buf);
                half.eof = true;
            }
            Poll::Ready(Ok(n)) => {
                half.buf = Some(buf);
                half.pos = 0;
                half.len = n;
                half.bytes += n as u64;
                watch.touch();
            }
            Poll::Ready(Err(e)) => {
                pool::give(buf);
                return Poll::Ready(Err(e));
            }
            Poll::Pending => {
                pool::give(buf);
                return Poll::Pending;
            }
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

impl<A, B> Future for Tunnel<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<Moved>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.watch.expired() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        this.watch.register(cx);
        let ab = poll_half(cx, this.a, this.b, &mut this.a_to_b, this.watch);
        if let Poll::Ready(Err(e)) = ab {
            return Poll::Ready(Err(e));
        }
        let ba = poll_half(cx, this.b, this.a, &mut this.b_to_a, this.watch);
        if let Poll::Ready(Err(e)) = ba {
            return Poll::Ready(Err(e));
        }
        if this.a_to_b.done && this.b_to_a.done {
            return Poll::Ready(Ok(this.moved()));
        }
        Poll::Pending
    }
}
