//! The client's connection preface, watched as h2 reads it.
//!
//! h2's server handshake future completes once the 24-octet magic is read: it does not wait
//! for the client's SETTINGS frame, which RFC 9113 §3.4 makes part of the preface (and h2 does
//! not check that the first frame is SETTINGS at all). So a client that sends the magic and
//! then nothing would sit in `poll_accept` with no deadline. `Prefaced` wraps the client stream
//! under h2 and feeds what h2 reads to `protocol::http::h2map::PrefaceScan`; the driver reads
//! the shared state (`PrefaceFlag`) and closes a connection whose preface is not complete
//! within `timeouts.header`. A first frame that is not SETTINGS fails the read (h2 then ends
//! the connection). Once the preface is complete the wrapper costs one test per read.
//! A leaf: it imports no other HTTP/2 module.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::protocol::http::h2map::{PrefaceScan, PrefaceState};

/// The preface's state, shared between the stream under h2 and the driver.
pub type PrefaceFlag = Rc<Cell<PrefaceState>>;

/// A stream whose first bytes read are scanned for the end of the client's preface.
pub struct Prefaced<S> {
    inner: S,
    /// `None` once the preface is complete (or failed).
    scan: Option<PrefaceScan>,
    flag: PrefaceFlag,
}

impl<S> Prefaced<S> {
    pub fn new(inner: S) -> (Prefaced<S>, PrefaceFlag) {
        let flag = Rc::new(Cell::new(PrefaceState::Pending));
        let s = Prefaced {
            inner,
            scan: Some(PrefaceScan::new()),
            flag: flag.clone(),
        };
        (s, flag)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefaced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(scan) = this.scan.as_mut() else {
            return r;
        };
        if let Poll::Ready(Ok(n)) = r {
            let state = scan.feed(&buf[..n]);
            this.flag.set(state);
            match state {
                PrefaceState::Pending => {}
                PrefaceState::Complete => this.scan = None,
                PrefaceState::NotSettings => {
                    this.scan = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the first HTTP/2 frame is not SETTINGS (RFC 9113 §3.4)",
                    )));
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefaced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
