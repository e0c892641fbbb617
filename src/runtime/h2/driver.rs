//! The HTTP/2 connection: the handshake with Ringway's SETTINGS, the client's whole preface
//! (magic and SETTINGS, `preface`) within `timeouts.header`, then the accept loop. Each
//! accepted stream goes to `stream`: answered inline when it needs no waiting, else in a task
//! of its own. The loop closes the connection gracefully (GOAWAY) on drain and after
//! `timeouts.keepalive` without a running stream, and abruptly (`ENHANCE_YOUR_CALM`) when
//! `ctx::ConnCtx` flags rapid reset. After a GOAWAY, a connection with no stream running is
//! dropped `timeouts.header` later if the client has not closed it by then (one that never
//! answers h2's PING would otherwise hold it forever).
//!
//! Limits: `limits.max_concurrent_streams` (SETTINGS_MAX_CONCURRENT_STREAMS), header lists
//! bounded by `limits.max_header_bytes` (h2 refuses larger ones, CONTINUATION included),
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`, receive windows sized for full-speed uploads. Rapid
//! reset (CVE-2023-44487): h2 closes a connection whose streams are reset before they are
//! accepted faster than `PENDING_ACCEPT_RESETS_MAX` allows; resets of accepted streams are
//! counted in `ctx::ConnCtx`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use h2::server::{Connection, SendResponse};
use h2::{Reason, RecvStream};
use http::Request;
use tracing::{debug, info};

use crate::protocol::http::h2map::PrefaceState;

use super::ctx::ConnCtx;
use super::io::Wire;
use super::preface::Prefaced;
use super::stream::{handle, serve_inline};
use crate::observe::loglimit::Kind;
use crate::runtime::conn::errlog;
use crate::runtime::net::idle;
use crate::runtime::net::stream::ClientStream;
use crate::runtime::shard::{Core, Shard};

/// h2's own bound on streams reset before Ringway accepted them (h2's default is 20).
const PENDING_ACCEPT_RESETS_MAX: usize = 100;

/// Per-stream and per-connection receive windows: large enough for a full-speed upload.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;

/// What the connection's one deadline (`idle::Watch`) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The client's preface (magic and first SETTINGS) is not complete: the deadline is
    /// `timeouts.header` from the start.
    Preface,
    /// Serving: `timeouts.keepalive` without a running stream sends GOAWAY.
    Open,
    /// GOAWAY sent (keep-alive, drain, abuse): once no stream runs, the client has
    /// `timeouts.header` to finish (the PING answer, its own close), then the connection is
    /// dropped.
    Closing,
}

/// Serves one HTTP/2 connection (ALPN `h2`, or h2c prior knowledge) until it closes.
///
/// Nothing here waits without a deadline: the preface within `timeouts.header`, the
/// keep-alive, and after a GOAWAY `timeouts.header` once no stream runs (streams have their own
/// timeouts).
pub async fn serve(
    core: Rc<Core>,
    stream: ClientStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: usize,
) {
    let shard = core.current();
    let tls = stream.is_tls();
    let header = shard.config.timeouts.header;
    let preface_by = Instant::now() + header;
    // h2's handshake ends with the magic; `Prefaced` tells when the SETTINGS frame that ends
    // the preface has been read too (see `preface`).
    let (stream, preface) = Prefaced::new(stream);
    let Some(mut conn) = handshake(stream, &shard, peer).await else {
        return;
    };
    let keepalive = shard.config.timeouts.keepalive;
    let ctx = Rc::new(ConnCtx {
        core: core.clone(),
        shard: shard.clone(),
        peer,
        local,
        listener,
        tls,
        active: Cell::new(0),
        resets: Cell::new((Instant::now(), 0)),
        abuse: Cell::new(false),
        waker: RefCell::new(None),
    });
    drop(shard);
    let watch = idle::watch(preface_by.saturating_duration_since(Instant::now()));
    let mut phase = Phase::Preface;
    let mut abused = false;
    loop {
        let next = futures_lite::future::poll_fn(|cx| {
            *ctx.waker.borrow_mut() = Some(cx.waker().clone());
            watch.register(cx);
            let close = |phase: &mut Phase, conn: &mut Connection<_, _>| {
                if *phase != Phase::Closing {
                    *phase = Phase::Closing;
                    conn.graceful_shutdown();
                    watch.restart(header);
                }
            };
            if ctx.abuse.get() && !abused {
                abused = true;
                if let Some(more) = errlog::event(Kind::Limit) {
                    info!(core = ctx.shard.id, peer = %ctx.peer, "HTTP/2 client resets streams too fast; GOAWAY{more}");
                }
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                phase = Phase::Closing;
                watch.restart(header);
            }
            if idle::draining() {
                close(&mut phase, &mut conn);
            }
            if watch.expired() {
                match phase {
                    Phase::Preface => return Poll::Ready(Err(phase)),
                    Phase::Open if ctx.active.get() == 0 => close(&mut phase, &mut conn),
                    Phase::Closing if ctx.active.get() == 0 => return Poll::Ready(Err(phase)),
                    Phase::Open => watch.restart(keepalive),
                    Phase::Closing => watch.restart(header),
                }
            }
            let r = conn.poll_accept(cx);
            // Only `poll_accept` reads the socket: the preface can complete only in there.
            if phase == Phase::Preface && preface.get() == PrefaceState::Complete {
                phase = Phase::Open;
                watch.restart(keepalive);
            }
            r.map(Ok)
        })
        .await;
        match next {
            Ok(Some(Ok((req, respond)))) => {
                watch.touch();
                start_stream(&ctx, req, respond);
            }
            Ok(Some(Err(e))) => {
                if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) || e.is_go_away() {
                    info!(core = ctx.shard.id, peer = %ctx.peer, error = %e, "HTTP/2 connection closed");
                } else {
                    debug!(core = ctx.shard.id, peer = %ctx.peer, error = %e, "HTTP/2 connection error");
                }
                break;
            }
            Ok(None) => break,
            Err(Phase::Preface) => {
                debug!(core = ctx.shard.id, peer = %ctx.peer, "HTTP/2 preface (SETTINGS) not complete within timeouts.header; closed");
                break;
            }
            Err(_) => {
                debug!(core = ctx.shard.id, peer = %ctx.peer, "HTTP/2 client did not finish within timeouts.header after GOAWAY; closed");
                break;
            }
        }
    }
}

/// The handshake, within `timeouts.header`, with Ringway's SETTINGS.
async fn handshake(
    stream: Prefaced<ClientStream>,
    shard: &Shard,
    peer: SocketAddr,
) -> Option<Connection<Wire<Prefaced<ClientStream>>, Bytes>> {
    let cfg = &shard.config;
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(cfg.limits.max_concurrent_streams)
        .max_header_list_size(cfg.limits.max_header_bytes as u32)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(256 * 1024)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS_MAX);
    let handshake = async { Some(builder.handshake::<_, Bytes>(Wire::new(stream)).await) };
    let timer = async {
        glommio::timer::sleep(cfg.timeouts.header).await;
        None
    };
    match futures_lite::future::or(handshake, timer).await {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            debug!(core = shard.id, peer = %peer, error = %e, "HTTP/2 handshake failed");
            None
        }
        None => {
            debug!(core = shard.id, peer = %peer, "HTTP/2 handshake timed out");
            None
        }
    }
}

/// An accepted stream: answered here when it needs no waiting (`serve_inline`), else in a task
/// of its own.
fn start_stream(ctx: &Rc<ConnCtx>, req: Request<RecvStream>, respond: SendResponse<Bytes>) {
    let (req, respond) = match serve_inline(ctx, req, respond) {
        Ok(outcome) => {
            if outcome.reset {
                ctx.note_reset();
            }
            return;
        }
        Err(back) => back,
    };
    ctx.active.set(ctx.active.get() + 1);
    let ctx = ctx.clone();
    glommio::spawn_local(async move {
        let started = Instant::now();
        let outcome = handle(&ctx, req, respond, started).await;
        if outcome.reset {
            ctx.note_reset();
        }
        ctx.active.set(ctx.active.get() - 1);
    })
    .detach();
}
