//! Accepting connections: binding (or inheriting) each listener's `SO_REUSEPORT` socket, the
//! accept loop with its connection cap, the PROXY protocol header and the TLS handshake, then
//! handing the connection to its protocol: HTTP/1.1 (`dispatch`), HTTP/2 (`h2`), or an L4
//! route (`handlers::l4`). Plain HTTP sent to a TLS listener is answered `400` here.
//!
//! May import: `shard`, `net`, `conn::dispatch`, `h2`, `handlers`, `control::signals`
//! (inherited sockets).

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::config::Config;
use crate::observe::loglimit::Kind;
use crate::observe::metrics::{self, Handshake};
use crate::runtime::conn::{client, dispatch, errlog, perip};
use crate::runtime::control::signals::Inherited;
use crate::runtime::h2;
use crate::runtime::handlers::{l4, wsproxy};
use crate::runtime::net::{idle, io, pool, stream};
use crate::runtime::shard::{Bound, Core, Shard};

/// Binds (or takes over from an upgrading parent) every listener of `config` this core accepts
/// on (`[[runtime.core]] listeners`) and does not have yet.
pub(crate) fn bind_listeners(
    core: &Rc<Core>,
    config: &Config,
    inherited: &Inherited,
) -> Result<(), String> {
    for l in &config.listeners {
        if !config.runtime.accepts(core.id, &l.name)
            || core.listeners.borrow().iter().any(|b| b.name == l.name)
        {
            continue;
        }
        let (listener, fd) = match inherited.take(&l.name, l.address) {
            // SAFETY: the fd is a listening TCP socket handed over by the parent process and
            // owned by nobody else in this process (`take` hands each one out once).
            Some(fd) => (unsafe { TcpListener::from_raw_fd(fd) }, fd),
            None => listen(l.address).map_err(|e| {
                format!(
                    "core {}: cannot bind listener {} on {}: {e}",
                    core.id, l.name, l.address
                )
            })?,
        };
        let stop = Rc::new(std::cell::Cell::new(false));
        let task = glommio::spawn_local(accept_loop(
            core.clone(),
            l.name.clone(),
            listener,
            stop.clone(),
        ));
        core.listeners.borrow_mut().push(Bound {
            name: l.name.clone(),
            address: l.address,
            fd,
            stop,
            task,
        });
    }
    Ok(())
}

/// Kernel queue of connections not yet accepted, per core and listener (glommio's own bind
/// uses the same).
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket on `address` with `SO_REUSEPORT` (every core binds its own), and its
/// descriptor, which the listener owns.
fn listen(address: SocketAddr) -> std::io::Result<(TcpListener, RawFd)> {
    let fd = std::os::fd::IntoRawFd::into_raw_fd(listening_socket(address)?);
    // SAFETY: a bound, listening TCP socket that nothing else owns.
    Ok((unsafe { TcpListener::from_raw_fd(fd) }, fd))
}

/// A bound, listening TCP socket on `address` with `SO_REUSEPORT` (every core binds its own)
/// and `SO_REUSEADDR` (connections of an earlier run left in TIME_WAIT do not block the
/// start-up probe, `preflight::probe_listeners`).
pub(crate) fn listening_socket(address: SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if address.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sk = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&address.into())?;
    sk.listen(LISTEN_BACKLOG)?;
    let fd = std::os::fd::IntoRawFd::into_raw_fd(sk);
    // SAFETY: a socket just created, owned by nothing else.
    Ok(unsafe { <std::os::fd::OwnedFd as FromRawFd>::from_raw_fd(fd) })
}

/// Counts one accept loop holding a connection slot while it waits in `accept`.
struct Accepting<'a>(&'a std::cell::Cell<usize>);

impl<'a> Accepting<'a> {
    fn new(count: &'a std::cell::Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Accepting(count)
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn accept_loop(
    core: Rc<Core>,
    name: String,
    listener: TcpListener,
    stop: Rc<std::cell::Cell<bool>>,
) {
    let mut warned_full = false;
    let mut warned_at: Option<Instant> = None;
    // A listener bound to one address accepts only connections to it: their local address is
    // the listener's, known without a getsockname per connection. A wildcard listener asks.
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    while !stop.get() {
        // Wait for a free slot first: at the cap, connections queue in the kernel's backlog.
        if core.slots.available() == 0 && !warned_full {
            warn!(core = core.id, "max_connections reached; pausing accepts");
            warned_full = true;
        }
        let Ok(permit) = core.slots.acquire_static_permit(1).await else {
            return;
        };
        if core.slots.available() > 0 {
            warned_full = false;
        }
        let accepted = {
            // Counted while waiting, also when the loop is dropped mid-accept.
            let _waiting = Accepting::new(&core.accepting);
            listener.accept().await
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning; say it at
                // most once a second.
                if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(core = core.id, error = %e, "accept failed");
                    warned_at = Some(Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = match bound {
            Some(a) => Ok(a),
            None => stream.local_addr(),
        };
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), local) else {
            continue;
        };
        let shard = core.current();
        // The listener's place in the current generation (a reload may have moved it).
        let Some(listener_index) = shard.config.listeners.iter().position(|l| l.name == name)
        else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracing::debug!("core={} accepted peer={peer}", core.id);
        let core = core.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            let (mut peer, mut local) = (peer, local);
            if shard.config.listeners[listener_index].proxy_protocol {
                // The balancer's header names the client: it is the peer from here on.
                match read_proxy_header(&mut stream, shard.config.timeouts.header).await {
                    Ok((source, dest)) => {
                        peer = source.unwrap_or(peer);
                        local = dest.unwrap_or(local);
                    }
                    Err(why) => {
                        if let Some(more) = errlog::event(Kind::ProxyHeader) {
                            info!(core = shard.id, peer = %peer, "PROXY protocol header {why}; closed{more}");
                        }
                        return;
                    }
                }
            }
            // Over `max_connections_per_ip`: closed at once (the stream drops here).
            let Ok(ip_guard) = perip::open(peer.ip()) else {
                return;
            };
            let metric_id = shard.ids.listeners[listener_index];
            metrics::with(|m| m.connection_opened(metric_id));
            // Raw bytes: a `mode = "tcp"` listener, or a ClientHello whose SNI passes through.
            let l4 = match shard
                .config
                .tcp_routes
                .iter()
                .find(|r| r.listener == listener_index)
            {
                Some(route) => Ok(Some(route.backend)),
                None => l4::passthrough_backend(&shard, &stream, listener_index, peer).await,
            };
            let stream = match l4 {
                Ok(None) => stream,
                Ok(Some(backend)) => {
                    // A task of its own, holding only what forwarding needs.
                    let ends = l4::Ends {
                        peer,
                        local,
                        backend,
                        listener_metric: metric_id,
                    };
                    let slot = (permit, ip_guard);
                    glommio::spawn_local(l4::forward(shard, stream, ends, slot)).detach();
                    return;
                }
                Err(()) => {
                    metrics::with(|m| m.connection_closed(metric_id));
                    drop((permit, ip_guard));
                    return;
                }
            };
            // h2c prior knowledge on an `http2 = true` listener: the preface decides.
            let mut h2 = false;
            if shard.config.listeners[listener_index].http2 && shard.tls[listener_index].is_none() {
                let mut buf = [0u8; 24];
                match io::peek_until(
                    &stream,
                    shard.config.timeouts.header,
                    &mut buf,
                    crate::protocol::http::h2map::judge_preface,
                )
                .await
                {
                    Ok(is_h2) => h2 = is_h2,
                    Err(_) => {
                        metrics::with(|m| m.connection_closed(metric_id));
                        drop((permit, ip_guard));
                        return;
                    }
                }
            }
            let stream = match shard.tls[listener_index].clone() {
                None => Some(stream::ClientStream::plain(
                    stream,
                    shard.config.timeouts.send,
                )),
                Some(tls) => match first_byte(&stream, shard.config.timeouts.header).await {
                    First::Tls => handshake(&shard, tls, stream, peer, metric_id).await,
                    First::PlainHttp => {
                        plain_http_to_tls(&shard, stream, peer, metric_id).await;
                        None
                    }
                    // Closed before a byte: a port probe, or Ringway's own wake-up connection
                    // during an upgrade (`lifecycle::drain`). No handshake was tried: not logged.
                    First::Gone => None,
                    First::TimedOut => {
                        metrics::with(|m| {
                            m.tls_handshake(metric_id, Handshake::Timeout, false)
                        });
                        if let Some(more) = errlog::event(Kind::TlsHandshake) {
                            info!(core = shard.id, peer = %peer, "TLS handshake timed out (no byte){more}");
                        }
                        None
                    }
                },
            };
            drop(shard);
            let (h2_stream, stream) = match stream {
                Some(s) if h2 || s.alpn_h2() => (Some(s), None),
                other => (None, other),
            };
            if let Some(s) = h2_stream {
                h2::serve(core.clone(), s, peer, local, listener_index).await;
            }
            if let Some(stream) = stream {
                let client = client::Client::new(stream, peer, local, listener_index, &core);
                if let Some(job) = dispatch::serve(core.clone(), client).await {
                    // The tunnel gets a small task of its own; this larger one ends here.
                    let slot = (permit, ip_guard);
                    glommio::spawn_local(wsproxy::run_tunnel(job, slot, metric_id)).detach();
                    return;
                }
            }
            metrics::with(|m| m.connection_closed(metric_id));
            drop((permit, ip_guard));
        })
        .detach();
    }
    // Told to stop, and no accept in flight any more: the drain may end (see `drain`).
    stop.set(false);
}

/// Reads a PROXY protocol header (v1 or v2) within `limit`, consuming exactly its bytes (what
/// follows, a TLS ClientHello or a request, stays in the socket). `Err`: why the connection is
/// closed without an answer.
async fn read_proxy_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), &'static str> {
    use crate::protocol::proxy_protocol::{parse, Parsed, ProxyError, V2_BYTES_MAX};
    use futures_lite::io::AsyncReadExt;
    let mut buf = pool::take_vec_for(V2_BYTES_MAX);
    buf.resize(V2_BYTES_MAX, 0);
    let judged = io::peek_until(stream, limit, &mut buf, |b| match parse(b) {
        Ok(Parsed::Incomplete { .. }) => None,
        Ok(Parsed::Complete { len, source, dest }) => Some(Ok((len, source, dest))),
        Err(ProxyError::Missing) => Some(Err("missing")),
        Err(ProxyError::TooLong) => Some(Err("too long")),
        Err(ProxyError::Malformed) => Some(Err("malformed")),
    })
    .await;
    let result = match judged {
        Ok(Ok((len, source, dest))) => {
            buf.truncate(len);
            let read = stream.read_exact(&mut buf).await;
            read.map(|()| (source, dest)).map_err(|_| "unreadable")
        }
        Ok(Err(why)) => Err(why),
        Err(io::PeekEnd::TimedOut) => Err("not complete within timeouts.header"),
        Err(io::PeekEnd::Closed) => Err("missing (connection closed)"),
        Err(io::PeekEnd::Full) => Err("too long"),
    };
    pool::give_vec(buf);
    result
}

/// What a TLS listener's client sent first.
enum First {
    /// A byte that may start a TLS record: the handshake goes on.
    Tls,
    /// An ASCII capital letter, the start of an HTTP method: no TLS record starts so (content
    /// types are 20..=24, an SSLv2 hello has the high bit set).
    PlainHttp,
    /// Closed (or reset) before sending a byte.
    Gone,
    /// Nothing within `timeouts.header`.
    TimedOut,
}

async fn first_byte(stream: &TcpStream, limit: Duration) -> First {
    let mut b = [0u8; 1];
    match io::peek_until(stream, limit, &mut b, |b| b.first().copied()).await {
        Ok(c) if c.is_ascii_uppercase() => First::PlainHttp,
        Ok(_) => First::Tls,
        Err(io::PeekEnd::TimedOut) => First::TimedOut,
        Err(_) => First::Gone,
    }
}

/// The body of the `400` a plain HTTP request to a TLS listener gets.
pub const PLAIN_HTTP_BODY: &str =
    "400 Bad Request: a plain HTTP request was sent to a TLS port; use https://\n";

/// Plain HTTP on a TLS listener: `400` with a short body saying so, then a (lingering) close,
/// as nginx does. Counted as a handshake with result `plain_http`; its log line is rate-limited.
async fn plain_http_to_tls(shard: &Shard, mut tcp: TcpStream, peer: SocketAddr, listener: usize) {
    use futures_lite::io::AsyncWriteExt;
    metrics::with(|m| m.tls_handshake(listener, Handshake::PlainHttp, false));
    if let Some(more) = errlog::event(Kind::PlainHttp) {
        info!(core = shard.id, peer = %peer, "plain HTTP request on a TLS listener: 400{more}");
    }
    let mut out = pool::take_vec();
    let fields: [(&str, &[u8]); 1] = [("Content-Type", b"text/plain; charset=utf-8")];
    crate::protocol::http::response::write_head(
        &mut out,
        400,
        &fields,
        Some(PLAIN_HTTP_BODY.len() as u64),
        true,
    );
    out.extend_from_slice(PLAIN_HTTP_BODY.as_bytes());
    let written = tcp.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if written {
        // The request may still be arriving: drain it so the 400 is not lost to a reset.
        let watch = idle::watch(io::LINGER_IDLE);
        io::linger_close(&mut tcp, &mut io::ReadBuf::new(), &watch).await;
    }
}

/// Completes a TLS handshake within `timeouts.header`; a failure closes this connection only.
/// Every handshake is counted (`ringway_tls_handshakes_total`); failures are logged a few lines
/// a second at most (`errlog`).
async fn handshake(
    shard: &Shard,
    tls: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    listener: usize,
) -> Option<stream::ClientStream> {
    let accept = async {
        Some(
            futures_rustls::TlsAcceptor::from(tls)
                .accept(tcp)
                .into_fallible()
                .await,
        )
    };
    let timer = async {
        glommio::timer::sleep(shard.config.timeouts.header).await;
        None
    };
    match futures_lite::future::or(accept, timer).await {
        Some(Ok(s)) => {
            let resumed = s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            metrics::with(|m| m.tls_handshake(listener, Handshake::Ok, resumed));
            Some(stream::ClientStream::tls(
                Box::new(s),
                shard.config.timeouts.send,
            ))
        }
        Some(Err((e, mut tcp))) => {
            metrics::with(|m| m.tls_handshake(listener, Handshake::Failed, false));
            if let Some(more) = errlog::event(Kind::TlsHandshake) {
                info!(core = shard.id, peer = %peer, error = %e, "TLS handshake failed{more}");
            }
            // The alert is out; the client may still be sending its first flight.
            let watch = idle::watch(io::LINGER_IDLE);
            io::linger_close(&mut tcp, &mut io::ReadBuf::new(), &watch).await;
            None
        }
        None => {
            metrics::with(|m| m.tls_handshake(listener, Handshake::Timeout, false));
            if let Some(more) = errlog::event(Kind::TlsHandshake) {
                info!(core = shard.id, peer = %peer, "TLS handshake timed out{more}");
            }
            None
        }
    }
}
