//! The `[admin]` listener: `GET /metrics` (Prometheus text), `GET /` (the live dashboard, one
//! self-contained page) and `GET /live` (a WebSocket sending one JSON snapshot a second).
//! Only peers in `[admin] allow` are served (others get 403), except `GET /healthz` (`200 ok`,
//! or `503 draining` once a SIGTERM or an upgrade hand-off has begun), which a balancer's
//! health check reaches from anywhere. Every core answers admin requests; each answer asks
//! every core for its metrics (`control::Hub::snapshots`).
//!
//! The control API under `/api/` is not served here: the request (and its body, read here up
//! to `API_BODY_MAX`) is handed to the control plane (`Hub::api_request`), and the core awaits
//! the answer without blocking.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::io::AsyncWriteExt;
use tracing::debug;

use crate::observe::metrics::{self, Global, ServerState, StapleState};
use crate::protocol::http::head::{Body, Request as HttpRequest};
use crate::protocol::http::response;
use crate::protocol::ws::{self, close_frame, opcode, FrameHeader};
use crate::runtime::conn::client::{respond_error, respond_with, Client, Next};
use crate::runtime::net::idle;
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

/// The dashboard page (inline CSS and script, no external asset).
const DASHBOARD_HTML: &str = include_str!("dashboard.html");
/// One `/live` snapshot this often.
const LIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A core that does not answer a snapshot request within this is left out (it is draining
/// or stopping).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(1);
/// Client frames on `/live` are read into a buffer this large at most.
const LIVE_READ_BYTES: usize = 4096;
/// A control API request body larger than this is refused (413).
const API_BODY_MAX: usize = 64 * 1024;
/// A control API answer that takes longer than this (a reload waits for every core) is 504.
const API_WAIT: Duration = Duration::from_secs(150);

pub enum Request {
    Metrics,
    Dashboard,
    Live {
        accept: [u8; 28],
    },
    Error(u16),
    /// 405 with this `Allow`.
    NotAllowed(&'static str),
    Healthz {
        head: bool,
    },
    /// `/api/...`, for the control plane; `length`: the body's.
    Api {
        method: String,
        target: String,
        length: usize,
    },
}

pub fn plan(shard: &Shard, c: &Client, req: &HttpRequest<'_, '_>) -> Request {
    let get = matches!(req.method, "GET" | "HEAD");
    if req.path() == "/healthz" {
        return if get {
            Request::Healthz {
                head: req.method == "HEAD",
            }
        } else {
            Request::NotAllowed("GET, HEAD")
        };
    }
    let allowed = shard
        .config
        .admin
        .as_ref()
        .is_some_and(|a| a.allow.iter().any(|cidr| cidr.contains(c.peer.ip())));
    if !allowed {
        return Request::Error(403);
    }
    if req.path().starts_with("/api/") {
        return match req.body {
            Body::None => api(req, 0),
            Body::Length(n) if n > API_BODY_MAX as u64 => Request::Error(413),
            Body::Length(n) => api(req, n as usize),
            Body::Chunked | Body::UntilClose => Request::Error(411),
        };
    }
    let upgrade = ws::classify(req);
    match (req.path(), upgrade) {
        (_, ws::Upgrade::Invalid { status, .. }) => Request::Error(status),
        ("/live", ws::Upgrade::WebSocket { key }) => Request::Live {
            accept: ws::accept_key(key),
        },
        ("/live", ws::Upgrade::None) => Request::Error(426),
        ("/metrics" | "/", _) if !get => Request::NotAllowed("GET, HEAD"),
        ("/metrics", _) => Request::Metrics,
        ("/", _) => Request::Dashboard,
        _ => Request::Error(404),
    }
}

fn api(req: &HttpRequest<'_, '_>, length: usize) -> Request {
    Request::Api {
        method: req.method.to_string(),
        target: req.target.to_string(),
        length,
    }
}

pub async fn serve(shard: &Shard, c: &mut Client, req: Request, close: bool) -> Next {
    match req {
        Request::Error(status) => respond_error(c, status, close).await,
        Request::NotAllowed(allow) => {
            respond_with(c, 405, &[("Allow", allow.as_bytes())], close).await
        }
        Request::Healthz { head } => {
            let (status, body) = if shard.hub.is_leaving() {
                (503, "draining")
            } else {
                (200, "ok")
            };
            let kind = b"text/plain; charset=utf-8";
            let sent = if head { &b""[..] } else { body.as_bytes() };
            send_sized(c, status, kind, sent, body.len(), &[], close).await
        }
        Request::Api {
            method,
            target,
            length,
        } => {
            let Some(body) = read_body(shard, c, length).await else {
                return Next::Close;
            };
            let ask = async { Some(shard.hub.api_request(&method, &target, body).await) };
            let timer = async {
                glommio::timer::sleep(API_WAIT).await;
                None
            };
            let Some(a) = futures_lite::future::or(ask, timer).await else {
                return respond_error(c, 504, true).await;
            };
            let allow: Vec<(&str, &[u8])> = a
                .allow
                .map(|v| ("Allow", v.as_bytes()))
                .into_iter()
                .collect();
            let body = if method == "HEAD" {
                &[][..]
            } else {
                &a.body[..]
            };
            send_sized(
                c,
                a.status,
                a.content_type.as_bytes(),
                body,
                a.body.len(),
                &allow,
                close,
            )
            .await
        }
        Request::Metrics => {
            let cores = snapshots(shard).await;
            let mut text = metrics::render(&cores, &global(shard, &cores));
            // Discovery and server states, as the directory last rendered them.
            text.push_str(&shard.hub.directory.metrics_text());
            let kind = b"text/plain; version=0.0.4; charset=utf-8";
            send(c, 200, kind, text.as_bytes(), close).await
        }
        Request::Dashboard => {
            let kind = b"text/html; charset=utf-8";
            send(c, 200, kind, DASHBOARD_HTML.as_bytes(), close).await
        }
        Request::Live { accept } => live(shard, c, &accept).await,
    }
}

async fn send(c: &mut Client, status: u16, kind: &[u8], body: &[u8], close: bool) -> Next {
    send_sized(c, status, kind, body, body.len(), &[], close).await
}

/// The request body of a control API call (`length` bytes, after the head), within
/// `timeouts.header`. `None`: the client closed or was too slow.
async fn read_body(shard: &Shard, c: &mut Client, length: usize) -> Option<Vec<u8>> {
    c.watch.restart(shard.config.timeouts.header);
    while c.rb.len() < length {
        match c.rb.fill_watched(&mut c.stream, length, &c.watch).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    let body = c.rb.data()[..length].to_vec();
    c.rb.consume(length);
    Some(body)
}

/// `content_length` may differ from `body.len()` (HEAD).
async fn send_sized(
    c: &mut Client,
    status: u16,
    kind: &[u8],
    body: &[u8],
    content_length: usize,
    extra: &[(&str, &[u8])],
    close: bool,
) -> Next {
    c.status = status;
    let mut out = pool::take_vec_for(body.len() + 256);
    let mut fields: Vec<(&str, &[u8])> =
        vec![("Content-Type", kind), ("Cache-Control", b"no-store")];
    fields.extend_from_slice(extra);
    response::write_head(
        &mut out,
        status,
        &fields,
        Some(content_length as u64),
        close,
    );
    c.head_written(out.len());
    out.extend_from_slice(body);
    let ok = c.stream.write_all(&out).await.is_ok();
    pool::give_vec(out);
    if ok && !close {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

async fn snapshots(shard: &Shard) -> Vec<metrics::CoreSnapshot> {
    let all = async { Some(shard.hub.snapshots().await) };
    let timer = async {
        glommio::timer::sleep(SNAPSHOT_WAIT).await;
        None
    };
    futures_lite::future::or(all, timer)
        .await
        .unwrap_or_default()
}

/// What lives outside the cores: reloads, health as core 0's checks see it (and passive
/// health as every core's snapshot says), staples, certificates, the process.
fn global(shard: &Shard, cores: &[metrics::CoreSnapshot]) -> Global {
    let hub = &shard.hub;
    let config = &shard.config;
    let sets = hub.directory.published();
    let backends = config
        .backends
        .iter()
        .filter(|b| !b.implicit)
        .filter_map(|b| Some((b, sets.backend(&b.name)?)))
        .flat_map(|(b, set)| {
            set.servers.iter().map(move |s| {
                let key = (set.name.clone(), s.key.to_string());
                ServerState {
                    passive_out: cores
                        .iter()
                        .filter(|c| c.passive_out.contains(&key))
                        .count(),
                    backend: key.0,
                    server: key.1,
                    checked: b.health.is_some().then(|| s.is_up()),
                }
            })
        })
        .collect();
    let certificates = shard
        .slots
        .iter()
        .flatten()
        .filter_map(|slot| {
            let t = crate::protocol::ocsp::not_after_unix(&slot.leaf())?;
            Some((slot.vhost.clone(), t))
        })
        .collect();
    let staples = config
        .vhosts
        .iter()
        .zip(shard.slots.iter())
        .filter_map(|(v, slot)| Some((v, slot.as_ref()?)))
        .map(|(v, slot)| {
            let expiry = slot.expiry_s.load(Ordering::Relaxed);
            StapleState {
                vhost: slot.vhost.clone(),
                configured: v.tls.as_ref().is_some_and(|t| t.ocsp.is_some()),
                valid: slot.staple().is_some(),
                expiry_s: (expiry > 0).then_some(expiry),
                fetches: vec![
                    ("ok", slot.fetch_ok.load(Ordering::Relaxed)),
                    ("error", slot.fetch_error.load(Ordering::Relaxed)),
                ],
            }
        })
        .collect();
    Global {
        version: env!("CARGO_PKG_VERSION").to_string(),
        generation: hub.generation.load(Ordering::Relaxed),
        uptime_s: hub.started.elapsed().as_secs_f64(),
        time_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        reloads_ok: hub.reloads_ok.load(Ordering::Relaxed),
        reloads_error: hub.reloads_error.load(Ordering::Relaxed),
        clock_s: metrics::clock_s(),
        backends,
        staples,
        certificates,
        memory: crate::runtime::net::memory::read(),
        process: crate::runtime::net::process::read(),
    }
}

/// `/live`: after the handshake, one text frame with a JSON snapshot each second until the
/// client closes (its Close is answered) or the core drains (Close 1001).
async fn live(shard: &Shard, c: &mut Client, accept: &[u8; 28]) -> Next {
    let mut head = pool::take_vec();
    let fields: [(&str, &[u8]); 3] = [
        ("Upgrade", b"websocket"),
        ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Accept", accept),
    ];
    response::write_head(&mut head, 101, &fields, None, false);
    c.head_written(head.len());
    let ok = c.stream.write_all(&head).await.is_ok();
    pool::give_vec(head);
    if !ok {
        return Next::Close;
    }
    c.status = 101;
    loop {
        if idle::draining() {
            let (frame, n) = close_frame(1001, None);
            let _ = c.stream.write_all(&frame[..n]).await;
            break;
        }
        let cores = snapshots(shard).await;
        let json = metrics::live_json(&cores, &global(shard, &cores));
        let mut hdr = [0u8; 14];
        let n = FrameHeader::write_unmasked(&mut hdr, true, opcode::TEXT, json.len() as u64);
        if c.stream.write_all(&hdr[..n]).await.is_err()
            || c.stream.write_all(json.as_bytes()).await.is_err()
        {
            break;
        }
        let input = async {
            match c.rb.fill(&mut c.stream, LIVE_READ_BYTES).await {
                Ok(0) | Err(_) => Some(false),
                Ok(_) => Some(true),
            }
        };
        let tick = async {
            glommio::timer::sleep(LIVE_INTERVAL).await;
            None
        };
        match futures_lite::future::or(input, tick).await {
            Some(false) => break,
            Some(true) if client_closed(&mut c.rb) => {
                let (frame, n) = close_frame(1000, None);
                let _ = c.stream.write_all(&frame[..n]).await;
                break;
            }
            _ => {}
        }
    }
    debug!(core = shard.id, peer = %c.peer, "live feed ended");
    Next::Close
}

/// Drops complete client frames from `rb`; true once a Close (or a protocol error, or more
/// than the buffer holds) was seen.
fn client_closed(rb: &mut crate::runtime::net::io::ReadBuf) -> bool {
    loop {
        match FrameHeader::parse(rb.data()) {
            Err(_) => return true,
            Ok(None) => return rb.len() >= LIVE_READ_BYTES,
            Ok(Some(h)) => {
                let total = h.header_len as u64 + h.payload_len;
                if h.opcode == opcode::CLOSE {
                    return true;
                }
                if total > rb.len() as u64 {
                    return total > LIVE_READ_BYTES as u64;
                }
                rb.consume(total as usize);
            }
        }
    }
}
