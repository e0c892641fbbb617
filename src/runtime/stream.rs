//! A client connection's byte stream: plain TCP, or TLS over TCP (rustls via futures-rustls).

use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

pub enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The client's stream, counting the bytes it moves (for the access log and, per core, for
/// `ringway_bytes_total`): two additions per read or write.
pub struct ClientStream {
    inner: Inner,
    /// Bytes read from and written to the client so far (TLS: plaintext).
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl ClientStream {
    pub fn plain(s: TcpStream) -> ClientStream {
        ClientStream::new(Inner::Plain(s))
    }

    pub fn tls(s: Box<TlsStream<TcpStream>>) -> ClientStream {
        ClientStream::new(Inner::Tls(s))
    }

    fn new(inner: Inner) -> ClientStream {
        ClientStream {
            inner,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }
}

fn counted(
    r: std::task::Poll<std::io::Result<usize>>,
    mine: &mut u64,
    core: fn(&crate::metrics::CoreMetrics) -> &std::cell::Cell<u64>,
) -> std::task::Poll<std::io::Result<usize>> {
    if let std::task::Poll::Ready(Ok(n)) = r {
        *mine += n as u64;
        crate::metrics::with(|m| core(m).set(core(m).get() + n as u64));
    }
    r
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
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        counted(r, &mut this.bytes_out, |m| &m.bytes_out)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        counted(r, &mut this.bytes_out, |m| &m.bytes_out)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_close(cx)
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
