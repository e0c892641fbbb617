//! `ringway-bench`: a single-threaded WebSocket load generator (echo, bulk, idle, churn).
//!
//! One mio (epoll, edge-triggered) loop drives every connection. Each connection has a fixed
//! mask and a precomputed masked frame, so sending a message is one `send` of ready bytes;
//! receiving decodes frame headers and counts payload bytes without copying them.
//!
//! `wss://` targets run the same loop with a rustls `ClientConnection` per connection: bytes read
//! from the socket go through rustls, and frames are handed to it instead of to `send`. The plain
//! path is untouched apart from one `Option` test per flush and per read.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use ringway_bench::frame::{
    encode_frame, Decoder, Event, Role, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
};
use ringway_bench::handshake::{
    accept_key, check_response, client_request, find_head_end, make_key,
};
use ringway_bench::{parse_duration, parse_ws_url, sys, tls, WsUrl};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Closed loop: each connection sends one message, waits for its echo, repeats. Latency.
    Echo,
    /// Large messages both ways with a window of messages in flight per connection. MB/s.
    Bulk,
    /// Open and hold many connections, then check each still echoes.
    Idle,
    /// Connect, handshake, one message, close; repeat. Handshakes/s.
    Churn,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Bulk => "bulk",
            Mode::Idle => "idle",
            Mode::Churn => "churn",
        }
    }
}

/// WebSocket load generator for Ringway's benchmarks.
#[derive(Parser, Debug)]
#[command(name = "ringway-bench", version)]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    mode: Mode,
    /// Target: ws://HOST:PORT/PATH, or wss://HOST:PORT/PATH for WebSocket over TLS 1.3
    /// (needs --ca).
    #[arg(long, default_value = "ws://127.0.0.1:9001/ws")]
    url: String,
    /// wss://: PEM file of the CA certificate(s) the server's certificate must chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// wss://: name to verify the certificate against and send as SNI (default: the URL's host;
    /// an IP address is matched against IP SANs and sends no SNI).
    #[arg(long)]
    sni: Option<String>,
    /// Connections (default: echo 64, bulk 4, idle 1000, churn 32 concurrent loops).
    #[arg(long)]
    conns: Option<usize>,
    /// Message payload bytes (default: 64; bulk 65536).
    #[arg(long)]
    size: Option<usize>,
    /// Measured interval (echo, bulk, churn), e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured interval before it (echo, bulk, churn).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Bulk: messages in flight per connection.
    #[arg(long, default_value_t = 4)]
    window: u32,
    /// Idle: how long to hold the connections once all are open. SIGUSR1, SIGINT or SIGTERM end
    /// the hold early (and end the measured interval in the other modes); a second one exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    hold: Duration,
    /// Idle: end the hold as soon as this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Idle: create this file once every connection is open (or has failed).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Idle: run this command (sh -c) once the connections are open; the hold lasts at least
    /// until it exits. Its stdout goes to our stderr; RINGWAY_BENCH_OPEN holds the open count.
    #[arg(long)]
    during: Option<String>,
    /// Source addresses: round-robin over 127.0.0.2 .. 127.0.0.(K+1) (bind before connect).
    /// 0 = automatic: one address per 25,000 connections, none below that.
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// Connects/handshakes in progress at once while opening connections.
    #[arg(long, default_value_t = 256)]
    max_pending: usize,
    /// Handshake timeout, and the longest wait for an echo.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Echo, bulk, churn: run this command (sh -c) right before the measured interval starts and
    /// right after it ends, with RINGWAY_BENCH_PHASE=start / end (e.g. to sample a proxy's CPU
    /// time). The event loop waits for it, so keep it short. Its stdout goes to our stderr.
    #[arg(long)]
    on_measure: Option<String>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Echo, churn: every message gets a payload of its own (derived from the connection and the
    /// message's number) and every echoed byte is compared with it; a message that differs in
    /// any byte or in length counts in `bad_echo`. For soak runs: it costs the generator a
    /// frame build per message.
    #[arg(long)]
    verify: bool,
}

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
    /// When the current connection attempt (or churn cycle) started.
    since: Instant,
}

/// A wss:// target: the client config and the name the certificate is verified against.
struct TlsTarget {
    config: Arc<ClientConfig>,
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
    let tls_target = match (url.tls, &args.ca) {
        (true, Some(ca)) => Some(TlsTarget {
            config: tls::client_config(ca)?,
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

/// Runs `cmd` (if any) through sh -c with RINGWAY_BENCH_PHASE=phase and waits for it.
fn hook(cmd: &Option<String>, phase: &str) {
    let Some(cmd) = cmd else { return };
    let r = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("RINGWAY_BENCH_PHASE", phase)
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .status();
    match r {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("ringway-bench: --on-measure ({phase}) exited with {st}"),
        Err(e) => eprintln!("ringway-bench: --on-measure ({phase}): {e}"),
    }
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

impl Gen {
    // ---- connection lifecycle -------------------------------------------------------------

    fn open(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        c.hs.clear();
        c.dec = Decoder::new(Role::Client);
        c.out.clear();
        c.out_pos = 0;
        c.data_pending = 0;
        c.data_off = 0;
        c.in_flight = 0;
        c.msg_len = 0;
        c.uid = self.next_uid;
        self.next_uid += 1;
        c.sent_seq = 0;
        c.recv_seq = 0;
        c.differs = false;
        c.since = now;
        c.tls = None;
        if let Some(t) = &self.tls {
            match ClientConnection::new(t.config.clone(), t.name.clone()) {
                Ok(tc) => c.tls = Some(Box::new(tc)),
                Err(e) => {
                    c.st = St::Failed;
                    self.hs_failed += 1;
                    *self.errors.entry(format!("tls: {e}")).or_default() += 1;
                    return;
                }
            }
        }
        match sys::connect_nonblocking(self.url.addr, c.src) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    c.st = St::Failed;
                    self.hs_failed += 1;
                    *self.errors.entry(format!("register: {e}")).or_default() += 1;
                    return;
                }
                c.stream = Some(s);
                c.st = St::Connecting;
                self.pending += 1;
            }
            Err(e) => {
                c.st = St::Failed;
                self.hs_failed += 1;
                *self.errors.entry(format!("connect: {e}")).or_default() += 1;
            }
        }
    }

    /// Closes connection `i`; counts a failure unless the close is a clean end.
    fn close(&mut self, i: usize, failure: Option<String>) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.tls = None;
        let was = c.st;
        if matches!(was, St::Connecting | St::Handshaking) {
            self.pending -= 1;
        }
        match failure {
            Some(why) => {
                c.st = St::Failed;
                if matches!(was, St::Connecting | St::Handshaking) {
                    self.hs_failed += 1;
                } else {
                    self.dropped += 1;
                }
                *self.errors.entry(why).or_default() += 1;
            }
            None => c.st = St::Done,
        }
    }

    fn send_msg(&mut self, i: usize) {
        let size = self.size;
        let c = &mut self.conns[i];
        if self.verify {
            // One message in flight (echo, churn): the previous frame is out, so this
            // connection's frame can be replaced.
            let payload: Vec<u8> = (0..size as u64)
                .map(|o| verify_byte(c.uid, c.sent_seq, o))
                .collect();
            let mut f = Vec::with_capacity(size + 14);
            encode_frame(&mut f, true, OP_BINARY, &payload, Some(c.mask));
            c.frame = Rc::from(f);
            c.sent_seq += 1;
        }
        if c.in_flight == 0 {
            c.sent_at = Instant::now();
        }
        c.data_pending += 1;
        c.in_flight += 1;
    }

    fn flush(&mut self, i: usize) {
        if self.conns[i].tls.is_some() {
            return self.flush_tls(i);
        }
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else { return };
        let r: io::Result<()> = loop {
            if c.data_off > 0 || (c.out_pos == c.out.len() && c.data_pending > 0) {
                match s.write(&c.frame[c.data_off..]) {
                    Ok(n) => {
                        c.data_off += n;
                        if c.data_off == c.frame.len() {
                            c.data_off = 0;
                            c.data_pending -= 1;
                        }
                    }
                    Err(e) if is_wouldblock(&e) => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            } else if c.out_pos < c.out.len() {
                match s.write(&c.out[c.out_pos..]) {
                    Ok(n) => {
                        c.out_pos += n;
                        if c.out_pos == c.out.len() {
                            c.out.clear();
                            c.out_pos = 0;
                        }
                    }
                    Err(e) if is_wouldblock(&e) => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            } else {
                break Ok(());
            }
        };
        if let Err(e) = r {
            self.close(i, Some(format!("send: {e}")));
        }
    }

    /// `flush` over TLS: sends what rustls holds, then hands it the next bytes in the order the
    /// plain path would send them, while the socket takes them.
    fn flush_tls(&mut self, i: usize) {
        let c = &mut self.conns[i];
        // A fresh session always has its ClientHello to send, but not before the connect is
        // seen to complete: a churn slot reopened inside `read` would otherwise send it early,
        // and the `Connecting` branch of `handle` would then swallow the readable edge of the
        // server's answer.
        if c.st == St::Connecting {
            return;
        }
        let (Some(s), Some(tls)) = (c.stream.as_mut(), c.tls.as_mut()) else {
            return;
        };
        let r: io::Result<()> = loop {
            if tls.wants_write() {
                match tls.write_tls(s) {
                    Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => continue,
                    Err(e) if is_wouldblock(&e) => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            }
            let n = if c.data_off > 0 || (c.out_pos == c.out.len() && c.data_pending > 0) {
                match tls.writer().write(&c.frame[c.data_off..]) {
                    Ok(n) => {
                        c.data_off += n;
                        if c.data_off == c.frame.len() {
                            c.data_off = 0;
                            c.data_pending -= 1;
                        }
                        n
                    }
                    Err(e) => break Err(e),
                }
            } else if c.out_pos < c.out.len() {
                match tls.writer().write(&c.out[c.out_pos..]) {
                    Ok(n) => {
                        c.out_pos += n;
                        if c.out_pos == c.out.len() {
                            c.out.clear();
                            c.out_pos = 0;
                        }
                        n
                    }
                    Err(e) => break Err(e),
                }
            } else {
                break Ok(());
            };
            // rustls's buffer is full (its limit, or plaintext held until the handshake ends).
            if n == 0 && !tls.wants_write() {
                break Ok(());
            }
        };
        if let Err(e) = r {
            self.close(i, Some(format!("send: {e}")));
        }
    }

    fn handle(&mut self, i: usize, ev: &mio::event::Event) {
        match self.conns[i].st {
            St::Connecting => {
                let c = &mut self.conns[i];
                let Some(s) = c.stream.as_mut() else { return };
                match s.take_error() {
                    Ok(Some(e)) | Err(e) => return self.close(i, Some(format!("connect: {e}"))),
                    Ok(None) => {}
                }
                match s.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        if ev.is_error() || ev.is_write_closed() {
                            return self.close(i, Some("connect: failed".into()));
                        }
                        return;
                    }
                    Err(e) => return self.close(i, Some(format!("connect: {e}"))),
                }
                c.st = St::Handshaking;
                c.out.extend_from_slice(&c.req);
                self.flush(i);
            }
            St::Unused | St::Done | St::Failed => {}
            _ => {
                if ev.is_writable() {
                    self.flush(i);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    // A FIN that came with the data raises no further edge: read to EOF then.
                    self.read(i, ev.is_read_closed() || ev.is_error());
                }
            }
        }
    }

    /// Reads until the socket is drained. A short read means drained (a later arrival raises a
    /// new edge), unless `to_eof`, when only EOF or EAGAIN ends it.
    fn read(&mut self, i: usize, to_eof: bool) {
        if self.conns[i].tls.is_some() {
            // Each socket read goes through rustls. The end of the connection is the TCP FIN,
            // with or without a close_notify before it.
            let mut plain = std::mem::take(&mut self.plain);
            self.read_socket(i, to_eof, |me, i, bytes| {
                me.on_ciphertext(i, bytes, &mut plain)
            });
            self.plain = plain;
        } else {
            self.read_socket(i, to_eof, |me, i, bytes| {
                me.on_bytes(i, bytes);
                true
            });
        }
        if self.conns[i].stream.is_some() {
            // Over TLS also: handshake messages, the request held back until the handshake
            // ended, alerts.
            self.flush(i);
        }
    }

    /// The socket read loop of `read`: each read's bytes go to `deliver`, which returns false
    /// once the connection is closed.
    fn read_socket(
        &mut self,
        i: usize,
        to_eof: bool,
        mut deliver: impl FnMut(&mut Self, usize, &mut [u8]) -> bool,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(s) = self.conns[i].stream.as_mut() {
            match s.read(&mut scratch) {
                Ok(0) => {
                    self.on_eof(i);
                    break;
                }
                Ok(n) => {
                    if !deliver(self, i, &mut scratch[..n]) {
                        break;
                    }
                    if n < scratch.len() && !to_eof {
                        break;
                    }
                }
                Err(e) if is_wouldblock(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(i, Some(format!("recv: {e}")));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Passes received TLS bytes through rustls and the plaintext out of it to `on_bytes`.
    /// Returns false once the connection is closed.
    fn on_ciphertext(&mut self, i: usize, mut input: &[u8], plain: &mut [u8]) -> bool {
        while !input.is_empty() {
            let Some(tls) = self.conns[i].tls.as_mut() else {
                return false;
            };
            match tls.read_tls(&mut input) {
                // After the peer's close_notify rustls takes nothing more: wait for the FIN.
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    self.close(i, Some(format!("tls: {e}")));
                    return false;
                }
            }
            if let Err(e) = tls.process_new_packets() {
                // Best effort: the alert rustls queued for the peer.
                let c = &mut self.conns[i];
                if let (Some(s), Some(tls)) = (c.stream.as_mut(), c.tls.as_mut()) {
                    let _ = tls.write_tls(s);
                }
                self.close(i, Some(format!("tls: {e}")));
                return false;
            }
            loop {
                let Some(tls) = self.conns[i].tls.as_mut() else {
                    return false;
                };
                match tls.reader().read(plain) {
                    // close_notify: nothing more will come; the FIN ends the connection.
                    Ok(0) => break,
                    Ok(n) => {
                        self.on_bytes(i, &mut plain[..n]);
                        if self.conns[i].stream.is_none() {
                            return false;
                        }
                    }
                    Err(e) if is_wouldblock(&e) => break,
                    Err(e) => {
                        self.close(i, Some(format!("tls: {e}")));
                        return false;
                    }
                }
            }
        }
        true
    }

    fn on_eof(&mut self, i: usize) {
        match self.conns[i].st {
            St::Draining | St::Closing if self.mode == Mode::Churn => {
                let since = self.conns[i].since;
                self.close(i, None);
                if self.measuring {
                    self.cycles += 1;
                    let ns = since.elapsed().as_nanos() as u64;
                    let _ = self.hist.record(ns.max(1));
                }
                if self.running {
                    self.open(i);
                }
            }
            St::Handshaking => self.close(i, Some("handshake: closed before a response".into())),
            _ => self.close(i, Some("closed by peer".into())),
        }
    }

    fn on_bytes(&mut self, i: usize, data: &mut [u8]) {
        let mut data = data;
        if self.conns[i].st == St::Handshaking {
            let c = &mut self.conns[i];
            c.hs.extend_from_slice(data);
            let Some(end) = find_head_end(&c.hs) else {
                if c.hs.len() > 16 * 1024 {
                    self.close(i, Some("handshake: response head over 16 KiB".into()));
                }
                return;
            };
            if let Err(e) = check_response(&c.hs[..end], &c.accept) {
                let first =
                    String::from_utf8_lossy(c.hs.split(|&b| b == b'\r').next().unwrap_or(b""))
                        .into_owned();
                return self.close(i, Some(format!("handshake: {e} ({first})")));
            }
            let extra = c.hs.len() - end;
            let skip = data.len() - extra;
            data = &mut data[skip..];
            c.hs = Vec::new();
            c.st = St::Open;
            if self.tls_info.is_none() {
                self.tls_info = c.tls.as_deref().map(tls::describe);
            }
            self.pending -= 1;
            self.hs_ok += 1;
            if self.mode == Mode::Churn {
                self.send_msg(i);
            }
            if data.is_empty() {
                return;
            }
        }
        let size = self.size as u64;
        let c = &mut self.conns[i];
        let verify = self.verify;
        let Conn {
            dec,
            out,
            msg_len,
            mask,
            uid,
            recv_seq,
            differs,
            ..
        } = c;
        let mut completed = 0u32;
        let mut bad = 0u64;
        let mut close_seen = false;
        let r = dec.feed(data, |ev| match ev {
            Event::FrameStart(_) => {}
            Event::Payload(p) => {
                if verify && !*differs {
                    *differs = p
                        .iter()
                        .zip(*msg_len..)
                        .any(|(&b, o)| b != verify_byte(*uid, *recv_seq, o));
                }
                *msg_len += p.len() as u64
            }
            Event::FrameEnd(h) => {
                if h.fin {
                    if *msg_len != size || *differs {
                        bad += 1;
                    }
                    *differs = false;
                    *recv_seq += 1;
                    completed += 1;
                    *msg_len = 0;
                }
            }
            Event::Control(OP_PING, p) => encode_frame(out, true, OP_PONG, p, Some(*mask)),
            Event::Control(OP_CLOSE, _) => close_seen = true,
            Event::Control(..) => {}
        });
        self.bad_echo += bad;
        if let Err(e) = r {
            return self.close(i, Some(format!("protocol: {e}")));
        }
        for _ in 0..completed {
            self.on_message(i);
        }
        if close_seen {
            let c = &mut self.conns[i];
            if c.st == St::Closing {
                c.st = St::Draining;
            } else {
                self.close(i, Some("close frame from server".into()));
            }
        }
    }

    fn on_message(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.in_flight == 0 {
            *self.errors.entry("unexpected message".into()).or_default() += 1;
            return;
        }
        c.in_flight -= 1;
        let sent_at = c.sent_at;
        if c.in_flight > 0 {
            c.sent_at = Instant::now();
        }
        match self.mode {
            Mode::Echo => {
                if self.measuring {
                    self.messages += 1;
                    let _ = self
                        .hist
                        .record((sent_at.elapsed().as_nanos() as u64).max(1));
                }
                if self.running {
                    self.send_msg(i);
                }
            }
            Mode::Bulk => {
                if self.measuring {
                    self.messages += 1;
                    self.bytes += self.size as u64;
                }
                if self.running {
                    self.send_msg(i);
                }
            }
            Mode::Idle => {
                self.final_ok += 1;
                let _ = self
                    .hist
                    .record((sent_at.elapsed().as_nanos() as u64).max(1));
            }
            Mode::Churn => {
                if self.measuring {
                    self.messages += 1;
                }
                let c = &mut self.conns[i];
                encode_frame(
                    &mut c.out,
                    true,
                    OP_CLOSE,
                    &1000u16.to_be_bytes(),
                    Some(c.mask),
                );
                c.st = St::Closing;
            }
        }
    }

    // ---- loop -----------------------------------------------------------------------------

    fn poll_once(&mut self, events: &mut Events, timeout: Duration) {
        if sys::abort_requested() {
            eprintln!("ringway-bench: interrupted twice, exiting");
            std::process::exit(130);
        }
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("ringway-bench: epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        for ev in events.iter() {
            self.handle(ev.token().0, ev);
        }
        if self.last_sweep.elapsed() >= Duration::from_millis(100) {
            self.sweep();
        }
    }

    /// Timeouts: handshakes, echoes, churn cycles. Churn also reopens failed slots.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.last_sweep = now;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            match c.st {
                St::Connecting | St::Handshaking if now - c.since > self.timeout => {
                    self.close(i, Some("handshake: timeout".into()));
                }
                St::Open if c.in_flight > 0 && now - c.sent_at > self.timeout => {
                    self.close(i, Some("echo: timeout".into()));
                }
                St::Closing | St::Draining if now - c.since > self.timeout => {
                    self.close(i, Some("close: timeout".into()));
                }
                _ => {}
            }
            if self.mode == Mode::Churn && self.running && self.conns[i].st == St::Failed {
                self.open(i);
            }
        }
    }

    /// Opens every connection, at most `max_pending` in progress at once.
    fn connect_all(&mut self, events: &mut Events, max_pending: usize, progress: bool) {
        let n = self.conns.len();
        let mut next = 0;
        let mut last_print = Instant::now();
        while (next < n || self.pending > 0) && !sys::stop_requested() {
            while next < n && self.pending < max_pending.max(1) {
                self.open(next);
                next += 1;
            }
            self.poll_once(events, Duration::from_millis(20));
            if progress && last_print.elapsed() >= Duration::from_secs(2) {
                last_print = Instant::now();
                eprintln!(
                    "ringway-bench: {} open, {} failed, {} in progress",
                    self.hs_ok, self.hs_failed, self.pending
                );
            }
        }
    }

    fn run_for(&mut self, events: &mut Events, d: Duration) -> Duration {
        let start = Instant::now();
        let end = start + d;
        loop {
            let now = Instant::now();
            if now >= end || sys::stop_requested() {
                return now - start;
            }
            self.poll_once(events, (end - now).min(Duration::from_millis(50)));
        }
    }

    fn open_count(&self) -> usize {
        self.conns.iter().filter(|c| c.st == St::Open).count()
    }

    // ---- modes ----------------------------------------------------------------------------

    fn run_traffic(&mut self, args: &Args, rep: &mut Report) {
        let mut events = Events::with_capacity(1024);
        self.connect_all(&mut events, args.max_pending, false);
        self.running = true;
        let per_conn = if self.mode == Mode::Bulk {
            args.window.max(1)
        } else {
            1
        };
        for i in 0..self.conns.len() {
            if self.conns[i].st == St::Open {
                for _ in 0..per_conn {
                    self.send_msg(i);
                }
                self.flush(i);
            }
        }
        self.run_for(&mut events, args.warmup);
        hook(&args.on_measure, "start");
        self.measuring = true;
        self.hist.reset();
        let elapsed = self.run_for(&mut events, args.duration).as_secs_f64();
        self.measuring = false;
        hook(&args.on_measure, "end");
        self.running = false;
        let secs = elapsed.max(1e-9);
        rep.f("duration_s", elapsed, 3);
        rep.i("messages", self.messages);
        rep.f("msgs_per_s", self.messages as f64 / secs, 1);
        if self.mode == Mode::Echo {
            self.latency(rep);
        } else {
            rep.i("window", per_conn as u64);
            rep.f("mb_per_s", self.bytes as f64 / secs / 1e6, 1);
        }
        rep.i("ok", self.open_count() as u64);
        rep.i("failed", self.hs_failed + self.dropped);
        rep.i("handshake_failed", self.hs_failed);
        rep.i("bad_echo", self.bad_echo);
    }

    fn run_idle(&mut self, args: &Args, rep: &mut Report, sources: usize) -> Result<(), String> {
        let mut events = Events::with_capacity(4096);
        let t0 = Instant::now();
        self.connect_all(&mut events, args.max_pending, true);
        let connect_s = t0.elapsed().as_secs_f64();
        let open = self.open_count();
        eprintln!(
            "ringway-bench: idle: {open} open, {} failed, in {connect_s:.2}s",
            self.hs_failed
        );
        if let Some(p) = &args.ready_file {
            std::fs::write(p, format!("{open}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let mut child: Option<Child> = match &args.during {
            Some(cmd) => Some(
                Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .env("RINGWAY_BENCH_OPEN", open.to_string())
                    .stdin(Stdio::null())
                    .stdout(io::stderr())
                    .spawn()
                    .map_err(|e| format!("--during: {e}"))?,
            ),
            None => None,
        };
        let mut during_rc = None;
        let hold_start = Instant::now();
        let mut last_check = Instant::now();
        let mut stop_file_seen = false;
        loop {
            if let Some(ch) = child.as_mut() {
                if let Ok(Some(st)) = ch.try_wait() {
                    during_rc = Some(st.code().unwrap_or(-1));
                    child = None;
                }
            }
            if last_check.elapsed() >= Duration::from_millis(200) {
                last_check = Instant::now();
                if let Some(p) = &args.stop_file {
                    stop_file_seen |= p.exists();
                }
            }
            let hold_over =
                hold_start.elapsed() >= args.hold || stop_file_seen || sys::stop_requested();
            if hold_over && child.is_none() {
                break;
            }
            self.poll_once(&mut events, Duration::from_millis(100));
        }
        let held = hold_start.elapsed().as_secs_f64();
        let dropped_in_hold = self.dropped;
        // Every connection still open echoes one message.
        self.hist.reset();
        for i in 0..self.conns.len() {
            if self.conns[i].st == St::Open {
                self.send_msg(i);
                self.flush(i);
            }
        }
        let t_final = Instant::now();
        while self
            .conns
            .iter()
            .any(|c| c.st == St::Open && c.in_flight > 0)
            && t_final.elapsed() < self.timeout + Duration::from_secs(1)
        {
            self.poll_once(&mut events, Duration::from_millis(50));
        }
        let n = self.conns.len() as u64;
        rep.i("ok", self.final_ok);
        rep.i("failed", n - self.final_ok);
        rep.i("handshake_failed", self.hs_failed);
        rep.i("dropped_during_hold", dropped_in_hold);
        rep.f("connect_s", connect_s, 3);
        rep.f(
            "handshakes_per_s",
            self.hs_ok as f64 / connect_s.max(1e-9),
            1,
        );
        rep.f("hold_s", held, 3);
        rep.i("sources", sources.max(1) as u64);
        if let Some(rc) = during_rc {
            rep.i("during_rc", rc as u64);
        }
        rep.f("final_echo_s", t_final.elapsed().as_secs_f64(), 3);
        rep.i("bad_echo", self.bad_echo);
        Ok(())
    }

    fn run_churn(&mut self, args: &Args, rep: &mut Report) {
        let mut events = Events::with_capacity(1024);
        self.running = true;
        for i in 0..self.conns.len() {
            self.open(i);
        }
        self.run_for(&mut events, args.warmup);
        hook(&args.on_measure, "start");
        self.measuring = true;
        self.hist.reset();
        let hs0 = self.hs_ok;
        let (hf0, dr0) = (self.hs_failed, self.dropped);
        let elapsed = self.run_for(&mut events, args.duration).as_secs_f64();
        self.measuring = false;
        let hs1 = self.hs_ok;
        hook(&args.on_measure, "end");
        self.running = false;
        let secs = elapsed.max(1e-9);
        let hs = hs1 - hs0;
        rep.f("duration_s", elapsed, 3);
        rep.i("handshakes", hs);
        rep.f("handshakes_per_s", hs as f64 / secs, 1);
        rep.i("cycles", self.cycles);
        rep.f("cycles_per_s", self.cycles as f64 / secs, 1);
        rep.i("messages", self.messages);
        self.latency(rep);
        rep.i("failed", (self.hs_failed - hf0) + (self.dropped - dr0));
        rep.i("handshake_failed", self.hs_failed - hf0);
        rep.i("bad_echo", self.bad_echo);
    }

    fn latency(&self, rep: &mut Report) {
        let us = |ns: u64| ns as f64 / 1000.0;
        if self.hist.is_empty() {
            return;
        }
        rep.f("p50_us", us(self.hist.value_at_quantile(0.50)), 1);
        rep.f("p99_us", us(self.hist.value_at_quantile(0.99)), 1);
        rep.f("p999_us", us(self.hist.value_at_quantile(0.999)), 1);
        rep.f("max_us", us(self.hist.max()), 1);
        rep.f("mean_us", self.hist.mean() / 1000.0, 1);
    }
}

// ---- output -------------------------------------------------------------------------------

enum Val {
    S(String),
    I(u64),
    F(f64, usize),
}

#[derive(Default)]
struct Report {
    fields: Vec<(&'static str, Val)>,
}

impl Report {
    fn s(&mut self, k: &'static str, v: &str) {
        self.fields.push((k, Val::S(v.to_string())));
    }
    fn i(&mut self, k: &'static str, v: u64) {
        self.fields.push((k, Val::I(v)));
    }
    fn f(&mut self, k: &'static str, v: f64, prec: usize) {
        self.fields.push((k, Val::F(v, prec)));
    }

    fn json(&self) -> String {
        let mut s = String::from("{");
        for (n, (k, v)) in self.fields.iter().enumerate() {
            if n > 0 {
                s.push(',');
            }
            s.push('"');
            s.push_str(k);
            s.push_str("\":");
            match v {
                Val::S(x) => s.push_str(&json_str(x)),
                Val::I(x) => s.push_str(&x.to_string()),
                Val::F(x, p) if x.is_finite() => s.push_str(&format!("{x:.p$}")),
                Val::F(..) => s.push_str("null"),
            }
        }
        s.push('}');
        s
    }

    fn table(&self) -> String {
        let w = self.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (k, v) in &self.fields {
            let v = match v {
                Val::S(x) => x.clone(),
                Val::I(x) => x.to_string(),
                Val::F(x, p) => format!("{x:.p$}"),
            };
            s.push_str(&format!("{k:<w$}  {v}\n"));
        }
        s
    }
}

fn json_str(x: &str) -> String {
    let mut s = String::with_capacity(x.len() + 2);
    s.push('"');
    for ch in x.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
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
    fn json_line_escapes_and_formats() {
        let mut r = Report::default();
        r.s("mode", "ec\"ho");
        r.i("conns", 64);
        r.f("msgs_per_s", 1234.5678, 1);
        r.f("nan", f64::NAN, 1);
        assert_eq!(
            r.json(),
            r#"{"mode":"ec\"ho","conns":64,"msgs_per_s":1234.6,"nan":null}"#
        );
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
