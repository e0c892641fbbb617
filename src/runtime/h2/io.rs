//! The client stream as h2 reads and writes it (`Wire`), flow control on a stream's send side,
//! and a stream as a byte stream.
//!
//! `Wire` maps the client stream's futures-io traits onto the tokio ones h2 takes, without
//! tokio-util's `Compat` zeroing the whole unfilled read buffer on every read (h2's codec hands
//! it a fresh, uninitialised 8 KiB+ spare capacity each time: that memset was 12.8 % of
//! Ringway's instructions per proxied HTTP/2 request), and with vectored writes (h2 then sends
//! a frame head and its payload in one `writev`).
//!
//! `capacity` waits for room in a stream's send window and `send_all` sends within it (a slow
//! client pauses the sender), at most `SEND_CHUNK` at once. `H2Io` is a stream's DATA frames as
//! futures-io `AsyncRead`/`AsyncWrite`: reads give flow-control credit back as they are
//! consumed, writes wait for window. What the WebSocket tunnels of `connect` run over. A leaf:
//! it imports no other HTTP/2 module.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use h2::{Reason, RecvStream, SendStream};

/// The client stream under h2 (see the module's doc).
pub struct Wire<S> {
    inner: S,
}

impl<S> Wire<S> {
    pub fn new(inner: S) -> Wire<S> {
        Wire { inner }
    }
}

/// Bytes `Wire` reads at most at once into the core's scratch buffer.
const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    /// One read buffer per core, shared by its HTTP/2 connections (a read does not wait, so
    /// it is back before the next one; a read that finds it taken makes its own).
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

impl<S: AsyncRead + Unpin> tokio::io::AsyncRead for Wire<S> {
    /// Reads into the part of `buf` that is already initialised when there is one; else into
    /// the core's scratch buffer, copying only the bytes read (far fewer than the unfilled
    /// capacity a `Compat` would zero first).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().inner;
        let filled = buf.filled().len();
        if buf.initialized().len() > filled {
            let r = Pin::new(inner).poll_read(cx, &mut buf.initialized_mut()[filled..]);
            if let Poll::Ready(Ok(n)) = r {
                buf.advance(n);
            }
            return r.map_ok(|_| ());
        }
        let want = buf.remaining().min(SCRATCH_LEN);
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = SCRATCH
            .take()
            .unwrap_or_else(|| vec![0u8; SCRATCH_LEN].into_boxed_slice());
        let r = Pin::new(inner).poll_read(cx, &mut scratch[..want]);
        if let Poll::Ready(Ok(n)) = r {
            buf.put_slice(&scratch[..n]);
        }
        SCRATCH.set(Some(scratch));
        r.map_ok(|_| ())
    }
}

impl<S: AsyncWrite + Unpin> tokio::io::AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Largest DATA payload sent at once (h2 splits it into frames of the peer's max frame size).
const SEND_CHUNK: usize = 64 * 1024;

/// Waits for room in the stream's send window; returns how many bytes may go now.
async fn capacity(send: &mut SendStream<Bytes>, want: usize) -> Result<usize, h2::Error> {
    send.reserve_capacity(want);
    loop {
        let cap = send.capacity();
        if cap > 0 {
            return Ok(cap.min(want));
        }
        match futures_lite::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        }
    }
}

/// Sends `data` in the stream's flow-control window (a slow client pauses the caller).
pub(super) async fn send_all(
    send: &mut SendStream<Bytes>,
    mut data: &[u8],
) -> Result<(), h2::Error> {
    while !data.is_empty() {
        let n = capacity(send, data.len().min(SEND_CHUNK)).await?;
        send.send_data(Bytes::copy_from_slice(&data[..n]), false)?;
        data = &data[n..];
    }
    Ok(())
}

/// A stream's DATA frames as a byte stream (the client's WebSocket frames, both ways): reads
/// give credit back as they are consumed, writes wait for send window. What the tunnels run
/// over.
pub struct H2Io {
    recv: RecvStream,
    send: SendStream<Bytes>,
    /// A DATA chunk read but not yet consumed.
    held: Bytes,
    eof: bool,
    /// DATA payload bytes read from and written to the client (the tunnel's access-log line).
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
}

impl H2Io {
    pub(super) fn new(recv: RecvStream, send: SendStream<Bytes>) -> H2Io {
        H2Io {
            recv,
            send,
            held: Bytes::new(),
            eof: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }
}

fn h2_io_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

/// Not known without polling the h2 stream: always read.
impl crate::runtime::net::tunnel::QuietRead for H2Io {}

/// An HTTP/2 stream cannot splice.
impl crate::runtime::net::splice::Splice for H2Io {}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        while this.held.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(0));
            }
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => this.held = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.len().min(this.held.len());
        buf[..n].copy_from_slice(&this.held[..n]);
        let _ = this.held.split_to(n);
        let _ = this.recv.flow_control().release_capacity(n);
        this.bytes_in += n as u64;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(SEND_CHUNK);
        if this.send.capacity() == 0 {
            this.send.reserve_capacity(want);
            loop {
                match this.send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) if this.send.capacity() > 0 => break,
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                    Poll::Ready(None) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        let n = this.send.capacity().min(want);
        match this
            .send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
        {
            Ok(()) => {
                this.bytes_out += n as u64;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(h2_io_error(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The end of the stream (END_STREAM), as TCP's FIN.
    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
