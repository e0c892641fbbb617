//! A client connection's byte stream: plain TCP, or TLS over TCP (rustls via futures-rustls).

use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

pub enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The client's stream, counting the bytes it moves (for the access log and, per core, for
/// `ringway_bytes_total`): two additions per read or write.
///
/// It also enforces `timeouts.send` on every write to the client, whoever makes it (responses,
/// static files, streamed bodies, tunnels, TLS flushes): a write that stays pending without
/// progress for the limit fails with `TimedOut`, and the caller closes the connection. A write
/// that completes at once (the common case) costs one flag test; the sweeper's `Watch` is made
/// the first time a write on this connection has to wait, so a client that always reads holds
/// none.
pub struct ClientStream {
    inner: Inner,
    /// Bytes read from and written to the client so far (TLS: plaintext).
    pub bytes_in: u64,
    pub bytes_out: u64,
    send: SendClock,
}

/// `timeouts.send` for one stream (see `ClientStream`).
struct SendClock {
    /// Milliseconds (16 bytes less than a `Duration` in every tunnel's future).
    limit_ms: u32,
    /// Made on the first write that has to wait.
    watch: Option<std::rc::Rc<crate::runtime::net::idle::Watch>>,
    /// A write is pending and the clock runs.
    waiting: bool,
    /// The limit passed: every later write, flush or close fails at once (a TLS close_notify
    /// must not wait another full limit).
    timed_out: bool,
}

fn timed_out<T>() -> std::task::Poll<std::io::Result<T>> {
    std::task::Poll::Ready(Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "client accepted no data within timeouts.send",
    )))
}

impl SendClock {
    /// Returns the write's result, or `TimedOut` once the client has accepted nothing for the
    /// limit.
    fn check<T>(
        &mut self,
        cx: &std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if r.is_ready() {
            self.waiting = false;
            return r;
        }
        let limit = std::time::Duration::from_millis(u64::from(self.limit_ms));
        let watch = self
            .watch
            .get_or_insert_with(|| crate::runtime::net::idle::watch(limit));
        if !self.waiting {
            self.waiting = true;
            watch.restart(limit);
        } else if watch.expired() {
            self.waiting = false;
            self.timed_out = true;
            crate::observe::metrics::with(|m| m.send_timeouts.set(m.send_timeouts.get() + 1));
            return timed_out();
        }
        watch.register(cx);
        Poll::Pending
    }
}

impl ClientStream {
    pub fn plain(s: TcpStream, send_timeout: std::time::Duration) -> ClientStream {
        ClientStream::new(Inner::Plain(s), send_timeout)
    }

    pub fn tls(s: Box<TlsStream<TcpStream>>, send_timeout: std::time::Duration) -> ClientStream {
        ClientStream::new(Inner::Tls(s), send_timeout)
    }

    fn new(inner: Inner, limit: std::time::Duration) -> ClientStream {
        ClientStream {
            inner,
            bytes_in: 0,
            bytes_out: 0,
            send: SendClock {
                limit_ms: u32::try_from(limit.as_millis()).unwrap_or(u32::MAX),
                watch: None,
                waiting: false,
                timed_out: false,
            },
        }
    }

    /// `timeouts.send` for the writes from here on (a route's own `timeouts.send`).
    pub fn set_send_limit(&mut self, limit: std::time::Duration) {
        self.send.limit_ms = u32::try_from(limit.as_millis()).unwrap_or(u32::MAX);
    }

    /// Plain TCP only (`None` for TLS): sends up to `count` bytes of `file` from `*offset` with
    /// `sendfile(2)`, so a client that reads slowly pins no buffer of Ringway's. Counted and
    /// bounded by `timeouts.send` like a write.
    pub fn poll_sendfile(
        &mut self,
        cx: &mut std::task::Context<'_>,
        file: std::os::unix::io::RawFd,
        offset: &mut i64,
        count: usize,
    ) -> Option<std::task::Poll<std::io::Result<usize>>> {
        let Inner::Plain(tcp) = &mut self.inner else {
            return None;
        };
        if self.send.timed_out {
            return Some(timed_out());
        }
        let r = tcp.poll_sendfile(cx, file, offset, count);
        let r = self.send.check(cx, r);
        Some(counted(r, &mut self.bytes_out, |m| &m.bytes_out))
    }

    /// Plain TCP only (`None` for TLS): writes what fits of `buf` with `MSG_MORE`, so that it
    /// leaves with the next send (a head before [`Self::poll_sendfile`]: one segment, not two).
    /// Counted and bounded by `timeouts.send` like a write.
    pub fn poll_write_more(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Option<std::task::Poll<std::io::Result<usize>>> {
        let Inner::Plain(tcp) = &mut self.inner else {
            return None;
        };
        if self.send.timed_out {
            return Some(timed_out());
        }
        let r = tcp.poll_write_more(cx, buf);
        let r = self.send.check(cx, r);
        Some(counted(r, &mut self.bytes_out, |m| &m.bytes_out))
    }

    /// Whether the last write to the client failed by `timeouts.send`.
    pub fn send_timed_out(&self) -> bool {
        self.send.timed_out
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// TLS with `h2` chosen by ALPN.
    pub fn alpn_h2(&self) -> bool {
        match &self.inner {
            Inner::Tls(t) => t.get_ref().1.alpn_protocol() == Some(b"h2"),
            Inner::Plain(_) => false,
        }
    }
}

fn counted(
    r: std::task::Poll<std::io::Result<usize>>,
    mine: &mut u64,
    core: fn(&crate::observe::metrics::CoreMetrics) -> &std::cell::Cell<u64>,
) -> std::task::Poll<std::io::Result<usize>> {
    if let std::task::Poll::Ready(Ok(n)) = r {
        *mine += n as u64;
        crate::observe::metrics::with(|m| core(m).set(core(m).get() + n as u64));
    }
    r
}

/// Plain TCP: glommio's answer; TLS: false (rustls may hold plaintext already).
impl crate::runtime::net::tunnel::QuietRead for ClientStream {
    fn read_would_pend(&self, waker: &std::task::Waker) -> bool {
        match &self.inner {
            Inner::Plain(tcp) => tcp.read_would_pend(waker),
            Inner::Tls(_) => false,
        }
    }
}

/// Plain TCP splices (counted, and bounded by `timeouts.send` on the way out, like reads and
/// writes); TLS cannot.
impl crate::runtime::net::splice::Splice for ClientStream {
    fn can_splice(&self) -> bool {
        matches!(self.inner, Inner::Plain(_))
    }

    fn poll_splice_in(
        &mut self,
        cx: &mut std::task::Context<'_>,
        pipe_w: std::os::unix::io::RawFd,
        len: usize,
    ) -> std::task::Poll<std::io::Result<usize>> {
        let Inner::Plain(tcp) = &mut self.inner else {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::Unsupported.into()));
        };
        let r = tcp.poll_splice_in(cx, pipe_w, len);
        counted(r, &mut self.bytes_in, |m| &m.bytes_in)
    }

    fn poll_splice_out(
        &mut self,
        cx: &mut std::task::Context<'_>,
        pipe_r: std::os::unix::io::RawFd,
        len: usize,
    ) -> std::task::Poll<std::io::Result<usize>> {
        let Inner::Plain(tcp) = &mut self.inner else {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::Unsupported.into()));
        };
        if self.send.timed_out {
            return timed_out();
        }
        let r = tcp.poll_splice_out(cx, pipe_r, len);
        let r = self.send.check(cx, r);
        counted(r, &mut self.bytes_out, |m| &m.bytes_out)
    }

    fn poll_write_more(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match ClientStream::poll_write_more(self, cx, buf) {
            Some(r) => r,
            None => futures_lite::io::AsyncWrite::poll_write(std::pin::Pin::new(self), cx, buf),
        }
    }
}

impl futures_lite::io::AsyncRead for ClientStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        counted(r, &mut this.bytes_in, |m| &m.bytes_in)
    }
}

impl futures_lite::io::AsyncWrite for ClientStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.send.timed_out {
            return timed_out();
        }
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        let r = this.send.check(cx, r);
        counted(r, &mut this.bytes_out, |m| &m.bytes_out)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.send.timed_out {
            return timed_out();
        }
        let r = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let r = this.send.check(cx, r);
        counted(r, &mut this.bytes_out, |m| &m.bytes_out)
    }

    /// TLS: writes out what rustls holds; bounded by `timeouts.send` like a write.
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.send.timed_out {
            return timed_out();
        }
        let r = std::pin::Pin::new(&mut this.inner).poll_flush(cx);
        this.send.check(cx, r)
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.send.timed_out {
            return timed_out();
        }
        let r = std::pin::Pin::new(&mut this.inner).poll_close(cx);
        this.send.check(cx, r)
    }
}

/// Implements `AsyncRead` and `AsyncWrite` for an enum of streams by delegating to the variant
/// in hand (boxed variants too: futures-io implements the traits for `Box<T>`).
macro_rules! delegate_stream_io {
    ($ty:ident { $($variant:ident),+ $(,)? }) => {
        impl futures_lite::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => futures_lite::io::AsyncRead::poll_read(std::pin::Pin::new(s), cx, buf),)+
                }
            }
        }

        impl futures_lite::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => futures_lite::io::AsyncWrite::poll_write(std::pin::Pin::new(s), cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => futures_lite::io::AsyncWrite::poll_write_vectored(std::pin::Pin::new(s), cx, bufs),)+
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => futures_lite::io::AsyncWrite::poll_flush(std::pin::Pin::new(s), cx),)+
                }
            }

            /// Plain sockets: shutdown(SHUT_WR). TLS: close_notify, then the TCP write side.
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => futures_lite::io::AsyncWrite::poll_close(std::pin::Pin::new(s), cx),)+
                }
            }
        }
    };
}
pub(crate) use delegate_stream_io;

delegate_stream_io!(Inner { Plain, Tls });
