//! Bidirectional byte forwarding between two streams, after a verified WebSocket handshake.
//!
//! One future drives both directions. Within one poll, a direction reads into the core's
//! scratch buffer and writes the bytes straight on (glommio's `poll_read` does not keep the
//! slice when it returns `Pending`, so one buffer serves every tunnel of the core). Only bytes
//! the destination does not take at once are copied into a spill buffer, held until drained:
//! idle tunnels hold no buffers. A direction whose source reaches EOF shuts down the write side
//! of its destination (half-close); the tunnel ends when both directions have.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::idle::Watch;
use super::pool;

/// Reads per direction per poll before yielding, so one busy tunnel cannot starve a core.
const TURNS_PER_POLL_MAX: usize = 16;

/// One direction. `spill` holds bytes read but not yet written (only while the destination
/// pushes back); otherwise a direction holds no memory at all.
#[derive(Default)]
struct Half {
    spill: Option<Vec<u8>>,
    pos: usize,
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
            if let Some(spill) = half.spill.take() {
                pool::give_vec(spill);
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
        if let Some(spill) = &half.spill {
            match write_some(cx, dst, &spill[half.pos..]) {
                Poll::Ready(Ok(n)) => half.pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if half.pos < spill.len() {
                continue;
            }
            if let Some(spill) = half.spill.take() {
                pool::give_vec(spill);
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
        match pool::with_scratch(|buf| read_then_write(cx, src, dst, buf, half)) {
            Poll::Ready(Ok(true)) => watch.touch(),
            Poll::Ready(Ok(false)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Reads into the core's scratch buffer and writes what it got straight on; what the destination
/// does not take now is copied into a spill buffer. `Ok(true)`: bytes moved.
fn read_then_write<R, W>(
    cx: &mut Context<'_>,
    src: &mut R,
    dst: &mut W,
    buf: &mut [u8],
    half: &mut Half,
) -> Poll<io::Result<bool>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let n = match Pin::new(&mut *src).poll_read(cx, buf) {
        Poll::Ready(Ok(0)) => {
            half.eof = true;
            return Poll::Ready(Ok(false));
        }
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Pending => return Poll::Pending,
    };
    half.bytes += n as u64;
    let mut sent = 0;
    while sent < n {
        match write_some(cx, dst, &buf[sent..n]) {
            Poll::Ready(Ok(k)) => sent += k,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    if sent < n {
        let mut spill = pool::take_vec();
        spill.extend_from_slice(&buf[sent..n]);
        half.spill = Some(spill);
        half.pos = 0;
    }
    Poll::Ready(Ok(true))
}

fn write_some<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dst: &mut W,
    bytes: &[u8],
) -> Poll<io::Result<usize>> {
    match Pin::new(dst).poll_write(cx, bytes) {
        Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        other => other,
    }
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
