//! Connecting to backends (TCP or Unix socket) with `timeouts.connect`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpStream, UnixStream};

use crate::upstream::Address;

/// A connected backend stream.
pub enum Upstream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Why a connect failed; decides between 502 and 504.
#[derive(Debug)]
pub enum ConnectError {
    TimedOut,
    Failed(io::Error),
}

impl ConnectError {
    pub fn status(&self) -> u16 {
        match self {
            ConnectError::TimedOut => 504,
            ConnectError::Failed(_) => 502,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => f.write_str("connect timed out"),
            ConnectError::Failed(e) => write!(f, "{e}"),
        }
    }
}

pub async fn connect(address: &Address, timeout: Duration) -> Result<Upstream, ConnectError> {
    match address {
        Address::Tcp(addr) => match TcpStream::connect_timeout(*addr, timeout).await {
            Ok(s) => {
                // Small WebSocket messages must not wait for Nagle.
                let _ = s.set_nodelay(true);
                Ok(Upstream::Tcp(s))
            }
            Err(e) => {
                let e = io::Error::from(e);
                if e.kind() == io::ErrorKind::TimedOut {
                    Err(ConnectError::TimedOut)
                } else {
                    Err(ConnectError::Failed(e))
                }
            }
        },
        Address::Unix(path) => {
            let connect = async { Some(UnixStream::connect(path).await) };
            let timer = async {
                glommio::timer::sleep(timeout).await;
                None
            };
            match future::or(connect, timer).await {
                Some(Ok(s)) => Ok(Upstream::Unix(s)),
                Some(Err(e)) => Err(ConnectError::Failed(e.into())),
                None => Err(ConnectError::TimedOut),
            }
        }
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Upstream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Upstream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Upstream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_close(cx),
            Upstream::Unix(s) => Pin::new(s).poll_close(cx),
        }
    }
}
