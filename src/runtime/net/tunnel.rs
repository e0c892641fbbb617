//! Bidirectional byte forwarding between two streams, after a verified WebSocket handshake.
//!
//! One future drives both directions. Within one poll, a direction reads into the core's
//! scratch buffer and writes the bytes straight on (glommio's `poll_read` does not keep the
//! slice when it returns `Pending`, so one buffer serves every tunnel of the core). Only bytes
//! the destination does not take at once are copied into a spill buffer, held until drained:
//! idle tunnels hold no buffers. A direction whose source reaches EOF shuts down the write side
//! of its destination (half-close); the tunnel ends when both directions have.
//!
//! Each direction follows the WebSocket frame structure (`ws::FrameTracker`: headers only,
//! payloads untouched) to count messages and to know where frames end. When the core drains
//! (SIGTERM, upgrade), each direction reads only up to the end of the frame in flight, then
//! sends its destination a Close with code 1001 (going away) — between two frames, never
//! inside one — and from then on drops what its source sends until the source's own Close
//! (the other half of the handshake) or EOF. The tunnel ends when both handshakes are done.
//!
//! Bulk directions (large reads in a row, plain TCP both sides) move bytes with `splice(2)`
//! through a pipe instead (`net::splice`): raw tunnels splice everything; WebSocket tunnels read
//! each frame header (buffered, so the tracker sees it) and splice only its payload, never past
//! its end, so the drain above still finds every boundary.
//!
//! A tunnel with an `evict::Ticket` is closed the same way when a drain reaches its ticket: a
//! server drain sends the client 1012 (Service Restart) and the backend 1001; a SIGTERM drain
//! with `timeouts.drain_spread` sends both 1001, each tunnel at its turn.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::observe::metrics;
use crate::protocol::ws::{close_frame, FrameTracker};
use crate::runtime::net::evict::{Ticket, CLOSE_SERVICE_RESTART};
use crate::runtime::net::idle::{self, Watch};
use crate::runtime::net::pool;
use crate::runtime::net::splice::{self, Pipe, Splice};

/// A stream that can tell, without reading, that a read now would only wait: the last read
/// drained it, nothing has been reported since, and `waker` is the one a report will wake
/// (glommio patch 15). A tunnel wakes once for both directions and skips the read of the side
/// that has nothing; the answer is false whenever that is not known (TLS: rustls may hold
/// plaintext; HTTP/2 streams).
pub trait QuietRead {
    fn read_would_pend(&self, _waker: &std::task::Waker) -> bool {
        false
    }
}

impl QuietRead for glommio::net::TcpStream {
    fn read_would_pend(&self, waker: &std::task::Waker) -> bool {
        glommio::net::TcpStream::read_would_pend(self, waker)
    }
}

/// Close status 1001, "going away" (RFC 6455 §7.4.1): the server is shutting down.
const CLOSE_GOING_AWAY: u16 = 1001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    #[default]
    Forwarding,
    /// A Close went to the destination: the source's bytes are read and dropped until its
    /// Close or EOF.
    Closing,
}

/// Reads per direction per poll before yielding, so one busy tunnel cannot starve a core.
const TURNS_PER_POLL_MAX: usize = 16;

/// What a direction holds between polls: nothing (an idle tunnel), a spill of bytes read but not
/// yet written, or (bulk, while bytes flow) the pipe they pass through. One field for both, so
/// that splicing adds nothing to an idle tunnel's size (a spill and a pipe never hold bytes at
/// the same time: neither is filled again before it is drained).
#[derive(Default)]
enum Held {
    #[default]
    Nothing,
    Spill(Vec<u8>),
    Pipe(Box<Pipe>),
}

/// One direction. `held` holds bytes read but not yet written (only while the destination
/// pushes back); otherwise a direction holds no memory at all.
#[derive(Default)]
struct Half {
    held: Held,
    pos: usize,
    eof: bool,
    done: bool,
    frames: FrameTracker,
    stage: Stage,
    /// The destination is the client (server frames are unmasked) or the backend (masked).
    to_client: bool,
    /// Raw bytes (L4 routes, TLS passthrough): no frames followed, nothing injected.
    raw: bool,
    /// Reads of at least `splice::BULK_READ_BYTES` in a row; `splice::BULK_STREAK` and more:
    /// bulk (splicing); `NO_SPLICE`: an end cannot splice (TLS, HTTP/2, Unix socket).
    streak: u8,
}

/// `Half::streak` of a direction that never splices.
const NO_SPLICE: u8 = u8::MAX;

impl Half {
    fn bulk(&self) -> bool {
        self.streak >= splice::BULK_STREAK && self.streak != NO_SPLICE
    }

    /// Back to copying (the pipe, empty, goes back to the pool).
    fn unbulk(&mut self) {
        self.streak = 0;
        self.give_pipe();
    }

    /// Lets go of what the direction holds: a spill goes back to the buffer pool, a pipe to
    /// the pipe pool (closed if it still holds bytes).
    fn give_held(&mut self) {
        match std::mem::take(&mut self.held) {
            Held::Nothing => {}
            Held::Spill(v) => pool::give_vec(v),
            Held::Pipe(p) => splice::give(p),
        }
    }

    /// Bulk, the source quiet: the (empty) pipe goes back to the pool.
    fn give_pipe(&mut self) {
        if matches!(self.held, Held::Pipe(_)) {
            self.give_held();
        }
    }

    /// Bytes the destination did not take, to be written first.
    fn set_spill(&mut self, spill: Vec<u8>) {
        self.give_held();
        self.held = Held::Spill(spill);
        self.pos = 0;
    }
}

pub struct Tunnel<'a, A, B> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Half,
    b_to_a: Half,
    watch: &'a Watch,
    ticket: Option<&'a Ticket>,
}

impl<'a, A, B> Tunnel<'a, A, B> {
    /// A WebSocket tunnel: `a` is the client, `b` the backend.
    pub fn new(a: &'a mut A, b: &'a mut B, watch: &'a Watch) -> Self {
        Tunnel {
            a,
            b,
            a_to_b: Half::default(),
            b_to_a: Half {
                to_client: true,
                ..Half::default()
            },
            watch,
            ticket: None,
        }
    }

    /// Registered for server drains: its ticket's close code ends it.
    pub fn evictable(mut self, ticket: &'a Ticket) -> Self {
        self.ticket = Some(ticket);
        self
    }

    /// A byte tunnel that knows no framing (L4): a drain lets it run until it ends or the
    /// drain times out.
    pub fn raw(a: &'a mut A, b: &'a mut B, watch: &'a Watch) -> Self {
        let mut t = Tunnel::new(a, b, watch);
        t.a_to_b.raw = true;
        t.b_to_a.raw = true;
        t
    }
}

impl<A, B> Drop for Tunnel<'_, A, B> {
    fn drop(&mut self) {
        for half in [&mut self.a_to_b, &mut self.b_to_a] {
            half.give_held();
        }
    }
}

fn poll_half<R, W>(
    cx: &mut Context<'_>,
    src: &mut R,
    dst: &mut W,
    half: &mut Half,
    watch: &Watch,
    closing: Option<u16>,
) -> Poll<io::Result<()>>
where
    R: AsyncRead + QuietRead + Splice + Unpin,
    W: AsyncWrite + Splice + Unpin,
{
    for _ in 0..TURNS_PER_POLL_MAX {
        if half.done {
            return Poll::Ready(Ok(()));
        }
        if let Held::Spill(spill) = &half.held {
            match write_some(cx, dst, &spill[half.pos..]) {
                Poll::Ready(Ok(n)) => half.pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if half.pos < spill.len() {
                continue;
            }
            half.give_held();
        }
        if let Held::Pipe(p) = &mut half.held {
            if p.held > 0 {
                match dst.poll_splice_out(cx, p.read_fd(), p.held) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(k)) => {
                        p.held -= k;
                        metrics::with(|m| m.spliced_bytes.set(m.spliced_bytes.get() + k as u64));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
        }
        if half.eof && half.stage == Stage::Closing {
            half.done = true;
            continue;
        }
        if half.eof {
            // Propagate the half-close; glommio's close is a non-blocking shutdown(SHUT_WR).
            match Pin::new(&mut *dst).poll_close(cx) {
                Poll::Ready(_) => half.done = true,
                Poll::Pending => return Poll::Pending,
            }
            continue;
        }
        let mut limit = usize::MAX;
        if let Some(code) = closing.filter(|_| !half.raw) {
            match half.stage {
                Stage::Forwarding if half.frames.at_boundary() => {
                    half.stage = Stage::Closing;
                    if half.frames.close_seen {
                        // The source closed first and its Close went on: the destination's
                        // answer completes the handshake; nothing to inject here.
                        half.done = true;
                    } else {
                        let mask = (!half.to_client).then(mask_key);
                        // The backend always hears "going away"; the client hears the code.
                        let code = if half.to_client {
                            code
                        } else {
                            CLOSE_GOING_AWAY
                        };
                        if code == CLOSE_SERVICE_RESTART {
                            metrics::with(|m| m.ws_close_sent(code));
                        }
                        let (frame, n) = close_frame(code, mask);
                        let mut spill = pool::take_vec();
                        spill.extend_from_slice(&frame[..n]);
                        half.set_spill(spill);
                    }
                    continue;
                }
                Stage::Forwarding => limit = half.frames.to_boundary(),
                Stage::Closing if half.frames.close_seen && half.frames.at_boundary() => {
                    half.done = true;
                    continue;
                }
                Stage::Closing => {
                    match pool::with_scratch(|buf| read_discard(cx, src, buf, half)) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
        if src.read_would_pend(cx.waker()) {
            half.give_pipe();
            return Poll::Pending;
        }
        if half.bulk() {
            let left = if half.raw {
                usize::MAX
            } else {
                usize::try_from(half.frames.payload_left()).unwrap_or(usize::MAX)
            };
            if left > 0 {
                match splice_in(cx, src, half, left.min(limit)) {
                    Poll::Ready(Ok(true)) => watch.touch(),
                    Poll::Ready(Ok(false)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        half.give_pipe();
                        return Poll::Pending;
                    }
                }
                continue;
            }
            // A WebSocket frame header comes: read it alone (buffered), so the tracker sees it.
            limit = limit.min(match half.frames.to_boundary() {
                0 => splice::HEADER_READ_BYTES,
                n => n,
            });
        } else {
            half.give_pipe();
        }
        match pool::with_scratch(|buf| {
            let n = buf.len().min(limit);
            read_then_write(cx, src, dst, &mut buf[..n], half)
        }) {
            Poll::Ready(Ok(true)) => watch.touch(),
            Poll::Ready(Ok(false)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Bulk: splices up to `len` bytes (`len` > 0) from `src` into the direction's pipe (taken
/// from the core's pool if it has none); `poll_half` splices them on to the destination next.
/// `Ok(true)`: bytes moved.
fn splice_in<R: Splice>(
    cx: &mut Context<'_>,
    src: &mut R,
    half: &mut Half,
    len: usize,
) -> Poll<io::Result<bool>> {
    if !matches!(half.held, Held::Pipe(_)) {
        // Nothing is held here (a spill is written out before any read).
        half.give_held();
        half.held = Held::Pipe(splice::take()?);
    }
    let Held::Pipe(pipe) = &mut half.held else {
        return Poll::Ready(Err(io::ErrorKind::Other.into()));
    };
    let n = match src.poll_splice_in(cx, pipe.write_fd(), len.min(pipe.cap)) {
        Poll::Ready(Ok(0)) => {
            half.eof = true;
            return Poll::Ready(Ok(false));
        }
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Pending => return Poll::Pending,
    };
    pipe.held = n;
    if half.raw {
        if n < splice::SPLICE_RAW_MIN {
            // Small pieces: copying costs no more system calls. (The pipe is let go once
            // these bytes are out: `unbulk` keeps a pipe that holds bytes.)
            half.streak = 0;
        }
    } else {
        half.frames.skip_payload(n as u64);
    }
    Poll::Ready(Ok(true))
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
    R: AsyncRead + Splice + Unpin,
    W: AsyncWrite + Splice + Unpin,
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
    if !half.raw {
        follow_frames(half, &buf[..n]);
    }
    // The header of a frame whose payload is spliced next leaves with it (`MSG_MORE`).
    let mut more = false;
    if half.bulk() {
        if half.frames.payload_left() >= splice::SPLICE_PAYLOAD_MIN {
            more = true;
        } else if half.frames.at_boundary() || half.frames.payload_left() > 0 {
            // A small frame: back to copying.
            half.unbulk();
        }
    } else if half.streak != NO_SPLICE {
        if n >= splice::BULK_READ_BYTES {
            half.streak += 1;
            if half.streak == splice::BULK_STREAK && !(src.can_splice() && dst.can_splice()) {
                half.streak = NO_SPLICE;
            }
        } else {
            half.streak = 0;
        }
    }
    let mut sent = 0;
    while sent < n {
        let r = if more {
            dst.poll_write_more(cx, &buf[sent..n])
        } else {
            write_some(cx, dst, &buf[sent..n])
        };
        match r {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(k)) => sent += k,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    if sent < n {
        let mut spill = pool::take_vec_for(n - sent);
        spill.extend_from_slice(&buf[sent..n]);
        half.set_spill(spill);
    }
    Poll::Ready(Ok(true))
}

/// Follows the frames in `bytes`; counts the messages that ended.
fn follow_frames(half: &mut Half, bytes: &[u8]) {
    let ended = half.frames.feed(bytes);
    if ended > 0 {
        metrics::with(|m| {
            let counter = if half.to_client {
                &m.messages_out
            } else {
                &m.messages_in
            };
            counter.set(counter.get() + ended);
        });
    }
}

/// Closing: reads what the source still sends and drops it, following frames to see its
/// Close.
fn read_discard<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    src: &mut R,
    buf: &mut [u8],
    half: &mut Half,
) -> Poll<io::Result<()>> {
    match Pin::new(&mut *src).poll_read(cx, buf) {
        Poll::Ready(Ok(0)) => {
            half.eof = true;
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Ok(n)) => {
            half.frames.feed(&buf[..n]);
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// A masking key for a Close frame to a backend (RFC 6455 §5.3 wants it unpredictable to
/// the page's script; for a frame Ringway writes itself, the clock's nanoseconds serve).
fn mask_key() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    nanos.wrapping_mul(0x9E37_79B9).to_le_bytes()
}

pub(crate) fn write_some<W: AsyncWrite + Unpin>(
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
    A: AsyncRead + AsyncWrite + QuietRead + Splice + Unpin,
    B: AsyncRead + AsyncWrite + QuietRead + Splice + Unpin,
{
    /// Ends when both directions are done (byte counts live in the client stream).
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.watch.expired() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        this.watch.register(cx);
        let evicted = this.ticket.and_then(|t| {
            t.register(cx);
            t.close_code()
        });
        let closing = evicted.or(idle::tunnels_closing().then_some(CLOSE_GOING_AWAY));
        let ab = poll_half(cx, this.a, this.b, &mut this.a_to_b, this.watch, closing);
        if let Poll::Ready(Err(e)) = ab {
            return Poll::Ready(Err(e));
        }
        let ba = poll_half(cx, this.b, this.a, &mut this.b_to_a, this.watch, closing);
        if let Poll::Ready(Err(e)) = ba {
            return Poll::Ready(Err(e));
        }
        if this.a_to_b.done && this.b_to_a.done {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    /// Splicing adds nothing to an idle tunnel: a direction is 64 bytes, as before bulk
    /// tunnels could splice (the pipe shares the spill's field).
    #[test]
    fn a_direction_is_no_larger_than_before_splicing() {
        assert_eq!(std::mem::size_of::<super::Held>(), 24);
        assert!(std::mem::size_of::<super::Half>() <= 64);
    }
}
