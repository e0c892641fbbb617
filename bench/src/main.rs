//! `ringway-bench`: a single-threaded WebSocket load generator (echo, bulk, idle, churn).
//!
//! One mio (epoll, edge-triggered) loop drives every connection. Each connection has a fixed
//! mask and a precomputed masked frame, so sending a message is one `send` of ready bytes;
//! receiving decodes frame headers and counts payload bytes without copying them.
//!
//! `wss://` targets run the same loop with a rustls `ClientConnection` per connection: bytes read
//! from the socket go through rustls, and frames are handed to it instead of to `send`. The plain
//! path is untouched apart from one `Option` test per flush and per read.
//!
//! The binary's own modules (the library's are `frame`, `handshake`, `sys`, `tls`): `cli` (the
//! arguments), `send` (opening, closing and the send path), `recv` (readiness events and the
//! receive path), `modes` (the event loop and the four modes), `report` (the table or JSON line).
//! The connection and generator state is defined here, so those modules share its fields.

mod cli;
mod modes;
mod recv;
mod report;
mod send;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::Poll;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use ringway_bench::frame::{encode_frame, Decoder, Role, OP_BINARY};
use ringway_bench::handshake::{accept_key, client_request, make_key};
use ringway_bench::{parse_ws_url, sys, tls, WsUrl};

use crate::cli::{Args, Mode};
use crate::report::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Unused,
    Connecting,
    Handshaking,
    Open,
    /// We sent a close frame and wait for the server's.
    Closing,
    /// Close frames exchanged; waiting for the server to close TCP.
    Draining,
    Done,
    Failed,
}

struct Conn {
    stream: Option<TcpStream>,
    /// wss://: the TLS session over `stream` (a fresh one per connection: no resumption).
    tls: Option<Box<ClientConnection>>,
    st: St,
    /// Upgrade request and the accept value the 101 must carry.
    req: Rc<[u8]>,
    accept: Rc<str>,
    /// The precomputed masked data frame, and its mask.
    frame: Rc<[u8]>,
    mask: [u8; 4],
    src: Option<Ipv4Addr>,
    /// Response head bytes while handshaking.
    hs: Vec<u8>,
    dec: Decoder,
    /// Control bytes to send (request, pong, close), before any further data frame.
    out: Vec<u8>,
    out_pos: usize,
    /// Data frames still to send, and how far into the current one we are.
    data_pending: u32,
    data_off: usize,
    in_flight: u32,
    msg_len: u64,
    /// --verify: this connection's id (a fresh one per churn cycle), messages sent and echoes
    /// checked, and whether the echo being received has differed so far.
    uid: u64,
    sent_seq: u64,
    recv_seq: u64,
    differs: bool,
    sent_at: Instant,
    /// --rate: the scheduled send times of the messages in flight, oldest first.
    sched: VecDeque<Instant>,
    /// When the current connection attempt (or churn cycle) started.
    since: Instant,
}

/// A wss:// target: the client config and the name the certificate is verified against.
struct TlsTarget {
    /// One config for every connection, or (`--resume`) one per connection slot: each slot is
    /// a client of its own with its own session store, as in a real reconnect storm. (One store
    /// shared by all slots holds at most 8 TLS 1.3 tickets per server, each used once, so more
    /// than 8 concurrent slots would find it empty and fall back to full handshakes.)
    configs: Vec<Arc<ClientConfig>>,
    name: ServerName<'static>,
}

struct Gen {
    poll: Poll,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    /// wss://: plaintext out of rustls (empty for ws://).
    plain: Vec<u8>,
    tls: Option<TlsTarget>,
    /// What the first finished TLS handshake negotiated (version, suite, group).
    tls_info: Option<String>,
    url: WsUrl,
    mode: Mode,
    size: usize,
    timeout: Duration,
    /// After a received message, send the next one.
    running: bool,
    /// Count what completes.
    measuring: bool,
    hist: Histogram<u64>,
    messages: u64,
    bytes: u64,
    cycles: u64,
    hs_ok: u64,
    /// Handshakes that resumed a TLS session.
    hs_resumed: u64,
    hs_failed: u64,
    /// Connections lost after their handshake.
    dropped: u64,
    bad_echo: u64,
    verify: bool,
    next_uid: u64,
    final_ok: u64,
    pending: usize,
    errors: BTreeMap<String, u64>,
    last_sweep: Instant,
    /// --rate: the open-loop schedule.
    pace: Option<Pace>,
}

/// --rate's schedule: message k (counted from `start`) is due at start + k / rate, on
/// connection k mod conns.
struct Pace {
    rate: f64,
    start: Instant,
    next: u64,
    /// Scheduled messages not sent (connection not open, or 64 already in flight on it).
    skipped: u64,
    /// The interval timer (timerfd) that wakes the loop to send what is due.
    timer: std::os::fd::OwnedFd,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("ringway-bench: {e}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    let url = parse_ws_url(&args.url)?;
    let mut tls_target = match (url.tls, &args.ca) {
        (true, Some(ca)) => Some(TlsTarget {
            configs: vec![tls::client_config(ca, args.resume)?],
            name: tls::server_name(args.sni.as_deref().unwrap_or(&url.hostname))?,
        }),
        (true, None) => {
            return Err(
                "wss:// needs --ca FILE (the CA that signed the server's certificate)".into(),
            )
        }
        (false, _) if args.ca.is_some() || args.sni.is_some() => {
            return Err("--ca and --sni apply to wss:// URLs only".into())
        }
        (false, _) => None,
    };
    if args.resume && tls_target.is_none() {
        return Err("--resume applies to wss:// URLs only".into());
    }
    let nofile = sys::raise_nofile_limit();
    sys::install_stop_signals();
    let mode = args.mode;
    if args.verify && !matches!(mode, Mode::Echo | Mode::Churn) {
        return Err("--verify applies to echo and churn".into());
    }
    let conns = args.conns.unwrap_or(match mode {
        Mode::Echo => 64,
        Mode::Bulk => 4,
        Mode::Idle => 1000,
        Mode::Churn => 32,
    });
    let size = args
        .size
        .unwrap_or(if mode == Mode::Bulk { 65536 } else { 64 });
    if conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    // --resume: a session store per connection slot (see `TlsTarget::configs`).
    if let (Some(t), Some(ca), true) = (tls_target.as_mut(), &args.ca, args.resume) {
        while t.configs.len() < conns {
            t.configs.push(tls::client_config(ca, true)?);
        }
    }
    if let Some(r) = args.rate {
        if mode != Mode::Echo {
            return Err("--rate applies to echo only".into());
        }
        if !(r.is_finite() && r > 0.0) {
            return Err("--rate wants a positive number of messages per second".into());
        }
        if args.verify {
            return Err(
                "--rate and --verify do not mix (several messages in flight share a frame)".into(),
            );
        }
    }
    if conns as u64 + 64 > nofile {
        eprintln!("ringway-bench: warning: {conns} connections but the fd limit is {nofile}");
    }
    let sources = pick_sources(&url, conns, args.sources)?;

    // Precompute frames: a few distinct masks shared round-robin, bounded to ~64 MiB in all.
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let frame_len = size + 14;
    let distinct = (64 << 20) / frame_len.max(1);
    let distinct = distinct.clamp(1, 256).min(conns);
    let mut frames = Vec::with_capacity(distinct);
    for k in 0..distinct {
        let mask = mask_for(k as u64);
        let mut f = Vec::with_capacity(frame_len);
        encode_frame(&mut f, true, OP_BINARY, &payload, Some(mask));
        frames.push((Rc::<[u8]>::from(f), mask));
    }
    let now = Instant::now();
    let mut cs = Vec::with_capacity(conns);
    for i in 0..conns {
        let key = make_key(0x5EED_0000 + i as u64);
        let (frame, mask) = frames[i % distinct].clone();
        cs.push(Conn {
            stream: None,
            tls: None,
            st: St::Unused,
            req: Rc::from(client_request(&url.host, &url.path, &key)),
            accept: Rc::from(accept_key(key.as_bytes())),
            frame,
            mask,
            src: if sources.is_empty() {
                None
            } else {
                Some(sources[i % sources.len()])
            },
            hs: Vec::new(),
            dec: Decoder::new(Role::Client),
            out: Vec::new(),
            out_pos: 0,
            data_pending: 0,
            data_off: 0,
            in_flight: 0,
            msg_len: 0,
            uid: 0,
            sent_seq: 0,
            recv_seq: 0,
            differs: false,
            sent_at: now,
            sched: VecDeque::new(),
            since: now,
        });
    }
    let mut g = Gen {
        poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
        conns: cs,
        scratch: vec![0u8; 256 * 1024],
        plain: if tls_target.is_some() {
            vec![0u8; 64 * 1024]
        } else {
            Vec::new()
        },
        tls: tls_target,
        tls_info: None,
        hs_resumed: 0,
        url,
        mode,
        size,
        timeout: args.timeout,
        running: false,
        measuring: false,
        hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
        messages: 0,
        bytes: 0,
        cycles: 0,
        hs_ok: 0,
        hs_failed: 0,
        dropped: 0,
        bad_echo: 0,
        verify: args.verify,
        next_uid: 0,
        final_ok: 0,
        pending: 0,
        errors: BTreeMap::new(),
        last_sweep: now,
        pace: None,
    };
    let mut rep = Report::default();
    rep.s("mode", mode.name());
    rep.s("url", &args.url);
    rep.i("conns", conns as u64);
    rep.i("size", size as u64);
    let cpu0 = sys::cpu_seconds();
    match mode {
        Mode::Echo | Mode::Bulk => g.run_traffic(&args, &mut rep),
        Mode::Idle => g.run_idle(&args, &mut rep, sources.len())?,
        Mode::Churn => g.run_churn(&args, &mut rep),
    }
    if let Some(t) = &g.tls_info {
        rep.s("tls", t);
    }
    rep.f("gen_cpu_s", sys::cpu_seconds() - cpu0, 3);
    if !g.errors.is_empty() {
        for (e, n) in &g.errors {
            eprintln!("ringway-bench: {n} × {e}");
        }
    }
    if args.json {
        println!("{}", rep.json());
    } else {
        print!("{}", rep.table());
    }
    Ok(())
}

fn mask_for(k: u64) -> [u8; 4] {
    let mut z = k
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x1234_5678);
    z ^= z >> 29;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 32;
    let m = (z as u32).to_le_bytes();
    // Avoid a zero mask byte pattern that would leave the payload readable.
    if m == [0; 4] {
        [1, 2, 3, 4]
    } else {
        m
    }
}

fn pick_sources(url: &WsUrl, conns: usize, asked: usize) -> Result<Vec<Ipv4Addr>, String> {
    let k = if asked > 0 {
        asked
    } else {
        conns.div_ceil(25_000)
    };
    if asked == 0 && k <= 1 {
        return Ok(Vec::new());
    }
    match url.addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {}
        _ => {
            return Err(
                "--sources needs an IPv4 loopback target (sources are 127.0.0.2 and up)".into(),
            )
        }
    }
    if k > 250 {
        return Err("at most 250 source addresses".into());
    }
    Ok((0..k)
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
        .collect())
}

/// --verify: byte `off` of message `seq` on connection `uid` (differs between messages and
/// connections, so a duplicated, reordered, shifted or crossed payload does not match).
fn verify_byte(uid: u64, seq: u64, off: u64) -> u8 {
    let x = uid.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ seq.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ off.wrapping_mul(0x1656_67B1_9E37_79F9);
    (x >> 56) as u8 ^ (x >> 24) as u8
}

fn is_wouldblock(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;

    /// --verify's payloads: a message differs from its neighbours, from the same message on
    /// other connections, and from itself shifted by a byte, so a duplicated, crossed or shifted
    /// echo is caught even in 64 bytes.
    #[test]
    fn verify_payloads_differ_between_messages_connections_and_offsets() {
        let msg = |uid, seq, from: u64| {
            (from..from + 64)
                .map(|o| verify_byte(uid, seq, o))
                .collect::<Vec<u8>>()
        };
        let m = msg(3, 7, 0);
        for other in [
            msg(3, 6, 0),
            msg(3, 8, 0),
            msg(2, 7, 0),
            msg(4, 7, 0),
            msg(3, 7, 1),
        ] {
            let same = m.iter().zip(&other).filter(|(a, b)| a == b).count();
            assert!(same < 8, "{same} of 64 bytes equal");
        }
    }

    #[test]
    fn sources_are_picked_per_25k() {
        let u = parse_ws_url("ws://127.0.0.1:9001/ws").unwrap();
        assert!(pick_sources(&u, 10_000, 0).unwrap().is_empty());
        assert_eq!(pick_sources(&u, 60_000, 0).unwrap().len(), 3);
        assert_eq!(
            pick_sources(&u, 10, 2).unwrap(),
            vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)]
        );
        let v6 = parse_ws_url("ws://[::1]:9001/ws").unwrap();
        assert!(pick_sources(&v6, 10, 2).is_err());
    }

    #[test]
    fn masks_are_nonzero_and_vary() {
        let a = mask_for(0);
        assert_ne!(a, [0; 4]);
        assert_ne!(mask_for(1), a);
    }
}
