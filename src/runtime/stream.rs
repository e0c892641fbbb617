//! A client connection's byte stream: plain TCP, or TLS over TCP (rustls via futures-rustls).

use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
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

delegate_stream_io!(ClientStream { Plain, Tls });
