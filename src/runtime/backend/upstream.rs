//! Connecting to backends (TCP or Unix socket) with `timeouts.connect`.

use std::io;
use std::time::Duration;

use futures_lite::future;
use glommio::net::{TcpStream, UnixStream};

use rustls_pki_types::ServerName;

use crate::config::tls::Connector;
use crate::policy::upstream::Address;

/// A connected backend stream.
pub enum Upstream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
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

/// Connects to a server within `timeout` (for `tls://`, the TLS handshake included; a
/// certificate that does not verify is a failure: 502).
pub async fn connect(
    address: &Address,
    timeout: Duration,
    tls: Option<&Connector>,
) -> Result<Upstream, ConnectError> {
    match address {
        Address::Tls(addr) => {
            let Some(tls) = tls else {
                return Err(ConnectError::Failed(io::Error::other(
                    "no TLS settings for tls:// server",
                )));
            };
            let handshake = async {
                let tcp = connect_tcp(*addr, timeout).await?;
                let name = tls
                    .name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                futures_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, tcp)
                    .await
                    .map(|s| Upstream::Tls(Box::new(s)))
                    .map_err(ConnectError::Failed)
            };
            let timer = async {
                glommio::timer::sleep(timeout).await;
                Err(ConnectError::TimedOut)
            };
            future::or(handshake, timer).await
        }
        Address::Tcp(addr) => connect_tcp(*addr, timeout).await.map(Upstream::Tcp),
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
        // The directory publishes resolved addresses only.
        Address::Name { .. } | Address::Srv(_) => Err(ConnectError::Failed(io::Error::other(
            format!("{address} is a name that was not resolved"),
        ))),
    }
}

/// A TCP connect within `timeout`: `TimedOut` when it expires (glommio reports the linked
/// timeout as an `io::Error` of kind `TimedOut`, not as `GlommioError::TimedOut`).
pub async fn connect_tcp(
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    match TcpStream::connect_timeout(addr, timeout).await {
        Ok(s) => {
            // Small WebSocket messages must not wait for Nagle.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(e) => {
            let e = io::Error::from(e);
            if e.kind() == io::ErrorKind::TimedOut {
                Err(ConnectError::TimedOut)
            } else {
                Err(ConnectError::Failed(e))
            }
        }
    }
}

crate::runtime::net::stream::delegate_stream_io!(Upstream { Tcp, Unix, Tls });

impl Upstream {
    /// Drops the waker the last waiting read left on the socket's readiness polls: a pooled
    /// connection must not keep the finished exchange's task allocated.
    pub fn forget_read_wakers(&self) {
        match self {
            Upstream::Tcp(s) => s.forget_read_wakers(),
            Upstream::Unix(s) => s.forget_read_wakers(),
            Upstream::Tls(s) => s.get_ref().0.forget_read_wakers(),
        }
    }
}

/// Plain TCP splices; Unix sockets and TLS do not.
impl crate::runtime::net::splice::Splice for Upstream {
    fn can_splice(&self) -> bool {
        matches!(self, Upstream::Tcp(_))
    }

    fn poll_splice_in(
        &mut self,
        cx: &mut std::task::Context<'_>,
        pipe_w: std::os::unix::io::RawFd,
        len: usize,
    ) -> std::task::Poll<io::Result<usize>> {
        match self {
            Upstream::Tcp(tcp) => tcp.poll_splice_in(cx, pipe_w, len),
            _ => std::task::Poll::Ready(Err(io::ErrorKind::Unsupported.into())),
        }
    }

    fn poll_splice_out(
        &mut self,
        cx: &mut std::task::Context<'_>,
        pipe_r: std::os::unix::io::RawFd,
        len: usize,
    ) -> std::task::Poll<io::Result<usize>> {
        match self {
            Upstream::Tcp(tcp) => tcp.poll_splice_out(cx, pipe_r, len),
            _ => std::task::Poll::Ready(Err(io::ErrorKind::Unsupported.into())),
        }
    }

    fn poll_write_more(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self {
            Upstream::Tcp(tcp) => tcp.poll_write_more(cx, buf),
            _ => futures_lite::io::AsyncWrite::poll_write(std::pin::Pin::new(self), cx, buf),
        }
    }
}

/// Plain TCP: glommio's answer; Unix sockets and TLS: false (not known).
impl crate::runtime::net::tunnel::QuietRead for Upstream {
    fn read_would_pend(&self, waker: &std::task::Waker) -> bool {
        match self {
            Upstream::Tcp(tcp) => tcp.read_would_pend(waker),
            Upstream::Unix(_) | Upstream::Tls(_) => false,
        }
    }
}
