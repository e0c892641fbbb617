//! Issue 23 §3: a fleet of Ringways tested in network namespaces. One run builds a small data
//! centre (`harness::netns`, addresses from 198.18.0.0/15): a client namespace; an L4 balancer
//! namespace with HAProxy in `mode tcp` (`balance roundrobin`, `send-proxy-v2`, `/healthz`
//! checks); three Ringway instances, each in its namespace, with the same config
//! (`proxy_protocol = true`, shared `ticket_keys`); backends in their own namespaces, found by
//! name through dnsmasq. Load: WebSocket clients (2,000 by default) sending numbered messages
//! that the backends echo, reconnecting with jitter on 1001/1012, and long-poll clients with a
//! `sid` and the sticky cookie. Scenario: a rolling deploy of the backends (DNS records added
//! and removed: the old servers drained with 1012 spread over 10 s), a binary upgrade of one
//! instance, a rolling restart of the three (SIGTERM with `lameduck`). It prints the figures
//! and fails on a refused connection, a reset, a close without a Close frame, an echo out of
//! order, a long-poll session that moved off a server that was not drained, or a reconnect
//! rate above twice the spread's. The clients and backends are tokio tasks on threads that
//! entered their namespaces (`setns`); Ringway, HAProxy and dnsmasq are real processes.
//!
//! `bench/fleet.sh` runs the same test longer: `RINGWAY_FLEET_ROUNDS` (scenarios in a row,
//! default 1), `RINGWAY_FLEET_CLIENTS` (default 2000), `RINGWAY_FLEET_POLLS` (default 40).

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::netns::{enter, Lab};
use crate::harness::{bin, dns_answers, strip_ansi, temp_dir, wait_until};
use crate::pki::{LeafOpts, Pki};

const LB: &str = "198.18.0.2";
const DNS: &str = "198.18.0.3";
const CLIENT: &str = "198.18.0.10";
const RINGWAYS: [(&str, &str); 3] = [
    ("rw1", "198.18.0.11"),
    ("rw2", "198.18.0.12"),
    ("rw3", "198.18.0.13"),
];
/// Two generations of backends: a deploy replaces one set with the other, one server at a time.
const BACKENDS: [(&str, &str); 6] = [
    ("be1", "198.18.0.21"),
    ("be2", "198.18.0.22"),
    ("be3", "198.18.0.23"),
    ("be4", "198.18.0.24"),
    ("be5", "198.18.0.25"),
    ("be6", "198.18.0.26"),
];
const APP_NAME: &str = "app.fleet.test";
const BACKEND_PORT: u16 = 9000;
/// `drain_spread` of the backends and of Ringway's own drain.
const SPREAD: Duration = Duration::from_secs(10);
/// `timeouts.lameduck`: longer than HAProxy needs to see `/healthz` fail (2 checks × 500 ms).
const LAMEDUCK: Duration = Duration::from_secs(3);
/// How long a long poll is held by the backend.
const POLL_HOLD: Duration = Duration::from_millis(300);
/// Generous bound for any one wait of the scenario (the machine is shared).
const LONG: Duration = Duration::from_secs(90);

struct Settings {
    clients: usize,
    polls: usize,
    rounds: usize,
    /// Each WebSocket client sends a message this often.
    every: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Settings {
            clients: num("RINGWAY_FLEET_CLIENTS", 2000),
            polls: num("RINGWAY_FLEET_POLLS", 40),
            rounds: num("RINGWAY_FLEET_ROUNDS", 1).max(1),
            every: Duration::from_millis(num("RINGWAY_FLEET_EVERY_MS", 4000) as u64),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the clients and backends saw

/// The clients' figures, shared by the client thread and the scenario.
/// One long poll: (when it was sent, when its answer came, which backend answered).
type Poll = (Duration, Duration, String);

#[derive(Default)]
struct Stats {
    stop: AtomicBool,
    /// WebSocket clients with an open, upgraded connection now.
    connected: AtomicUsize,
    upgrades: AtomicU64,
    reconnects: AtomicU64,
    sent: AtomicU64,
    echoed: AtomicU64,
    /// Sent, but no echo yet when the Close came (the drain drops what follows its Close).
    unanswered: AtomicU64,
    close_1001: AtomicU64,
    close_1012: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    no_close_frame: AtomicU64,
    bad_echo: AtomicU64,
    /// Anything else: an upgrade not answered 101, a Close with another code, a timeout.
    other: AtomicU64,
    /// The first few failures, described.
    failures: Mutex<Vec<String>>,
    /// Reconnect attempts per second since the start.
    reconnect_secs: Mutex<BTreeMap<u64, u64>>,
    /// Closes (1001, 1012) received per second since the start.
    close_secs: Mutex<BTreeMap<u64, u64>>,
    /// The client thread's worst lateness (ms) per second: how far behind a busy machine let
    /// it fall (a 100 ms timer that fired late), to read the per-second figures by.
    lag_secs: Mutex<BTreeMap<u64, u64>>,
    polls: AtomicU64,
    /// Per long-poll session: (when the request was sent, when its answer came, which backend
    /// answered).
    poll_log: Mutex<BTreeMap<usize, Vec<Poll>>>,
}

enum Fail {
    Refused(String),
    Reset(String),
    NoCloseFrame(String),
    BadEcho(String),
    Other(String),
}

impl Stats {
    fn fail(&self, f: Fail) {
        if self.stop.load(Relaxed) {
            return; // the load is being taken down: not part of the scenario
        }
        let (counter, kind, text) = match &f {
            Fail::Refused(t) => (&self.refused, "refused", t),
            Fail::Reset(t) => (&self.reset, "reset", t),
            Fail::NoCloseFrame(t) => (&self.no_close_frame, "no Close frame", t),
            Fail::BadEcho(t) => (&self.bad_echo, "bad echo", t),
            Fail::Other(t) => (&self.other, "other", t),
        };
        counter.fetch_add(1, Relaxed);
        let mut list = self.failures.lock().unwrap();
        if list.len() < 20 {
            list.push(format!("{kind}: {text}"));
        }
    }
}

/// Stops the clients when dropped (the scenario's end, or a panic in it).
struct StopOnDrop(Arc<Stats>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Relaxed);
    }
}

fn io_fail(what: &str, e: std::io::Error) -> Fail {
    use std::io::ErrorKind::*;
    let text = format!("{what}: {e}");
    match e.kind() {
        ConnectionRefused => Fail::Refused(text),
        ConnectionReset | ConnectionAborted | BrokenPipe => Fail::Reset(text),
        UnexpectedEof => Fail::NoCloseFrame(text),
        _ => Fail::Other(text),
    }
}

/// One backend's figures.
#[derive(Default)]
struct BackendStats {
    open_ws: AtomicUsize,
    ws_accepted: AtomicU64,
    polls: AtomicU64,
    /// Close codes the backend received from Ringway.
    closes: Mutex<BTreeMap<u16, u64>>,
}

/// A small xorshift generator: jitter and masks need no more.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket framing (RFC 6455), just what the clients and backends need

/// One frame: FIN set; masked with `mask` when given (client to server).
fn frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | op);
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Takes one complete frame off the front of `buf`: (fin, opcode, unmasked payload).
fn parse_frame(buf: &mut Vec<u8>) -> Result<Option<(bool, u8, Vec<u8>)>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (fin, op) = (buf[0] & 0x80 != 0, buf[0] & 0x0F);
    if buf[0] & 0x70 != 0 {
        return Err(format!("reserved bits set: {:#x}", buf[0]));
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > 1 << 20 {
        return Err(format!("frame of {len} bytes"));
    }
    let key = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let k = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(k)
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    let mut payload: Vec<u8> = buf[at..at + len].to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    buf.drain(..at + len);
    Ok(Some((fin, op, payload)))
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Reads until the end of a head (`\r\n\r\n`); returns the head, leaves the rest in `buf`.
async fn read_head(
    rd: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Ok(Some(head));
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("head over 16 KiB"));
        }
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------------------------------------
// Backends

/// This thread enters namespace `ns`, and gets a current-thread tokio runtime for its sockets.
fn runtime_in(ns: &str) -> tokio::runtime::Runtime {
    enter(ns);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A backend server on `ip`:9000 in its namespace: WebSocket echo, and long polls answered
/// after `POLL_HOLD` with the server's name.
fn spawn_backend(ns: String, name: &'static str, ip: &'static str, stats: Arc<BackendStats>) {
    thread::spawn(move || {
        let rt = runtime_in(&ns);
        rt.block_on(async move {
            let listener = TcpListener::bind((ip, BACKEND_PORT))
                .await
                .unwrap_or_else(|e| panic!("backend {name}: bind {ip}: {e}"));
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let stats = stats.clone();
                tokio::spawn(async move {
                    let _ = serve_backend(sock, name, &stats).await;
                });
            }
        });
    });
}

async fn serve_backend(
    mut sock: TcpStream,
    name: &str,
    stats: &BackendStats,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(head) = read_head(&mut sock, &mut buf).await? else {
            return Ok(());
        };
        if header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            let key = header(&head, "sec-websocket-key").unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key)
            );
            sock.write_all(answer.as_bytes()).await?;
            stats.ws_accepted.fetch_add(1, Relaxed);
            stats.open_ws.fetch_add(1, Relaxed);
            let r = echo(&mut sock, &mut buf, stats).await;
            stats.open_ws.fetch_sub(1, Relaxed);
            return r;
        }
        // A long poll: held, then answered with the server's name.
        tokio::time::sleep(POLL_HOLD).await;
        stats.polls.fetch_add(1, Relaxed);
        let close = header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{name}",
            name.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        sock.write_all(answer.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Echoes data frames; answers a Close with the same code and ends.
async fn echo(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    stats: &BackendStats,
) -> std::io::Result<()> {
    loop {
        while let Some((_, op, payload)) = parse_frame(buf).map_err(std::io::Error::other)? {
            match op {
                0..=2 => sock.write_all(&frame(op, &payload, None)).await?,
                8 => {
                    let code = close_code(&payload).unwrap_or(1005);
                    *stats.closes.lock().unwrap().entry(code).or_default() += 1;
                    sock.write_all(&frame(8, &payload, None)).await?;
                    return Ok(());
                }
                9 => sock.write_all(&frame(10, &payload, None)).await?,
                _ => {}
            }
        }
        if sock.read_buf(buf).await? == 0 {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// The client namespace's thread: every WebSocket and long-poll client as a tokio task.
fn spawn_clients(
    ns: String,
    set: &Settings,
    stats: Arc<Stats>,
    t0: Instant,
) -> thread::JoinHandle<()> {
    let (clients, polls, every) = (set.clients, set.polls, set.every);
    thread::spawn(move || {
        let rt = runtime_in(&ns);
        rt.block_on(async move {
            let mut tasks = Vec::new();
            // Started over 10 s, so that the first connections are no storm either.
            let ramp = Duration::from_secs(10);
            for id in 0..clients {
                let start = ramp.mul_f64(id as f64 / clients as f64);
                tasks.push(tokio::spawn(ws_client(id, start, every, stats.clone(), t0)));
            }
            for sid in 0..polls {
                let start = ramp.mul_f64(sid as f64 / polls.max(1) as f64);
                tasks.push(tokio::spawn(poll_client(sid, start, stats.clone(), t0)));
            }
            let probe = stats.clone();
            tasks.push(tokio::spawn(async move {
                while !probe.stop.load(Relaxed) {
                    let t = Instant::now();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let late = t.elapsed().saturating_sub(Duration::from_millis(100));
                    let sec = t0.elapsed().as_secs();
                    let mut lag = probe.lag_secs.lock().unwrap();
                    let e = lag.entry(sec).or_default();
                    *e = (*e).max(late.as_millis() as u64);
                }
            }));
            for t in tasks {
                let _ = t.await;
            }
        });
    })
}

async fn ws_client(id: usize, start: Duration, every: Duration, stats: Arc<Stats>, t0: Instant) {
    let mut rng = Rng::new(id as u64 + 7);
    tokio::time::sleep(start).await;
    let mut seq = 0u64;
    let mut first = true;
    while !stats.stop.load(Relaxed) {
        if !first {
            stats.reconnects.fetch_add(1, Relaxed);
            let sec = t0.elapsed().as_secs();
            *stats.reconnect_secs.lock().unwrap().entry(sec).or_default() += 1;
        }
        first = false;
        match ws_session(id, &mut seq, every, &stats, &mut rng, t0).await {
            // Closed with 1001 or 1012: back after a jitter of up to a second.
            Ok(()) => tokio::time::sleep(Duration::from_millis(rng.below(1000))).await,
            Err(f) => {
                stats.fail(f);
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1000))).await;
            }
        }
    }
}

/// The text of message `seq` of client `id`: its length varies, so framing is exercised.
fn message(id: usize, seq: u64) -> String {
    let pad = (b'a' + (seq % 26) as u8) as char;
    format!(
        "{id}:{seq}:{}",
        pad.to_string().repeat((seq * 37 % 300) as usize)
    )
}

/// One connection of a WebSocket client: upgrade, numbered messages checked as they come back,
/// until the server closes with 1001 or 1012 (`Ok`) or something goes wrong.
async fn ws_session(
    id: usize,
    seq: &mut u64,
    every: Duration,
    stats: &Stats,
    rng: &mut Rng,
    t0: Instant,
) -> Result<(), Fail> {
    let sock = TcpStream::connect((LB, 80))
        .await
        .map_err(|e| io_fail("connect", e))?;
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(rng.next().to_le_bytes().repeat(2))
    };
    let req = format!(
        "GET /chat/{id} HTTP/1.1\r\nHost: fleet.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    wr.write_all(req.as_bytes())
        .await
        .map_err(|e| io_fail("upgrade request", e))?;
    let mut buf = Vec::with_capacity(4096);
    let head = match tokio::time::timeout(LONG, read_head(&mut rd, &mut buf)).await {
        Err(_) => return Err(Fail::Other("no upgrade answer".into())),
        Ok(Err(e)) => return Err(io_fail("upgrade answer", e)),
        Ok(Ok(None)) => {
            return Err(Fail::NoCloseFrame(
                "closed before the upgrade answer".into(),
            ))
        }
        Ok(Ok(Some(h))) => h,
    };
    if !head.starts_with("HTTP/1.1 101") {
        return Err(Fail::Other(format!(
            "upgrade answered {}",
            head.lines().next().unwrap_or_default()
        )));
    }
    stats.upgrades.fetch_add(1, Relaxed);
    stats.connected.fetch_add(1, Relaxed);
    let r = ws_talk(id, seq, every, stats, rng, t0, &mut rd, &mut wr, &mut buf).await;
    stats.connected.fetch_sub(1, Relaxed);
    r
}

#[allow(clippy::too_many_arguments)]
async fn ws_talk(
    id: usize,
    seq: &mut u64,
    every: Duration,
    stats: &Stats,
    rng: &mut Rng,
    t0: Instant,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    buf: &mut Vec<u8>,
) -> Result<(), Fail> {
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut next =
        tokio::time::Instant::now() + Duration::from_millis(rng.below(every.as_millis() as u64));
    let mask = |rng: &mut Rng| Some((rng.next() as u32).to_le_bytes());
    loop {
        while let Some((fin, op, payload)) = parse_frame(buf).map_err(Fail::Other)? {
            if !fin {
                return Err(Fail::Other("a fragmented frame".into()));
            }
            match op {
                1 => {
                    let got = String::from_utf8_lossy(&payload);
                    match pending.pop_front() {
                        Some(want) if want == got => {
                            stats.echoed.fetch_add(1, Relaxed);
                        }
                        want => {
                            return Err(Fail::BadEcho(format!(
                                "client {id}: got {:.40}, want {:.40?}",
                                got, want
                            )))
                        }
                    }
                }
                8 => {
                    let code = close_code(&payload);
                    let sec = t0.elapsed().as_secs();
                    *stats.close_secs.lock().unwrap().entry(sec).or_default() += 1;
                    stats.unanswered.fetch_add(pending.len() as u64, Relaxed);
                    let _ = wr.write_all(&frame(8, &payload, mask(rng))).await;
                    // The server closes the connection after our answer.
                    let _ = tokio::time::timeout(Duration::from_secs(10), async {
                        let mut sink = [0u8; 1024];
                        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                    return match code {
                        Some(1001) => {
                            stats.close_1001.fetch_add(1, Relaxed);
                            Ok(())
                        }
                        Some(1012) => {
                            stats.close_1012.fetch_add(1, Relaxed);
                            Ok(())
                        }
                        other => Err(Fail::Other(format!("client {id}: Close {other:?}"))),
                    };
                }
                9 => wr
                    .write_all(&frame(10, &payload, mask(rng)))
                    .await
                    .map_err(|e| io_fail("pong", e))?,
                _ => {}
            }
        }
        if stats.stop.load(Relaxed) {
            let _ = wr
                .write_all(&frame(8, &1000u16.to_be_bytes(), mask(rng)))
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let mut sink = [0u8; 1024];
                while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                *seq += 1;
                let text = message(id, *seq);
                wr.write_all(&frame(1, text.as_bytes(), mask(rng)))
                    .await
                    .map_err(|e| io_fail("send", e))?;
                stats.sent.fetch_add(1, Relaxed);
                pending.push_back(text);
                next += every;
            }
            r = rd.read_buf(buf) => match r {
                Ok(0) => return Err(Fail::NoCloseFrame(format!("client {id}: EOF without a Close frame"))),
                Ok(_) => {}
                Err(e) => return Err(io_fail("read", e)),
            }
        }
    }
}

/// A long-poll session: `GET /poll/?sid=N` on a new connection each time, carrying the sticky
/// cookie it was given.
async fn poll_client(sid: usize, start: Duration, stats: Arc<Stats>, t0: Instant) {
    let mut rng = Rng::new(sid as u64 + 100_003);
    tokio::time::sleep(start).await;
    let mut cookie: Option<String> = None;
    while !stats.stop.load(Relaxed) {
        let sent = t0.elapsed();
        match poll_once(sid, cookie.as_deref()).await {
            Ok((who, set)) => {
                if set.is_some() {
                    cookie = set;
                }
                stats.polls.fetch_add(1, Relaxed);
                stats
                    .poll_log
                    .lock()
                    .unwrap()
                    .entry(sid)
                    .or_default()
                    .push((sent, t0.elapsed(), who));
            }
            Err(f) => stats.fail(f),
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
    }
}

/// One long poll: (the backend that answered, the sticky cookie if one was set).
async fn poll_once(sid: usize, cookie: Option<&str>) -> Result<(String, Option<String>), Fail> {
    let mut sock = TcpStream::connect((LB, 80))
        .await
        .map_err(|e| io_fail("poll connect", e))?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /poll/?sid=s{sid} HTTP/1.1\r\nHost: fleet.test\r\n{cookie}Connection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .await
        .map_err(|e| io_fail("poll request", e))?;
    let mut all = Vec::new();
    match tokio::time::timeout(LONG, sock.read_to_end(&mut all)).await {
        Err(_) => return Err(Fail::Other(format!("poll {sid}: no answer"))),
        Ok(Err(e)) => return Err(io_fail("poll answer", e)),
        Ok(Ok(_)) => {}
    }
    let text = String::from_utf8_lossy(&all);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Fail::NoCloseFrame(format!(
            "poll {sid}: closed without a complete answer ({} bytes)",
            all.len()
        )));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(Fail::Other(format!(
            "poll {sid}: {}",
            head.lines().next().unwrap_or_default()
        )));
    }
    let set = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, v)| {
            n.trim().eq_ignore_ascii_case("set-cookie") && v.trim().starts_with("rw_srv=")
        })
        .map(|(_, v)| v.trim().split(';').next().unwrap_or_default().to_string());
    if !body.starts_with("be") {
        return Err(Fail::Other(format!("poll {sid}: body {body:.40}")));
    }
    Ok((body.to_string(), set))
}

// ---------------------------------------------------------------------------------------------
// Processes: Ringway instances, HAProxy, dnsmasq

/// One Ringway instance: its namespace and directory (the same config in each), the process
/// this test started last (an upgrade's new process is found by the pid file).
struct Instance {
    name: &'static str,
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn log_path(&self) -> PathBuf {
        self.dir.join("ringway.log")
    }

    fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(self.log_path()).unwrap_or_default(),
        ))
    }

    fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.join("ringway.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts the binary in the namespace and waits for its `ringway ready` line.
    fn start(&mut self, lab: &Lab) {
        let before = self.log().matches("ringway ready").count();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = lab
            .command(&self.ns, bin())
            .arg("--config")
            .arg(self.dir.join("ringway.toml"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ringway");
        self.child = Some(child);
        wait_until(LONG, || {
            self.log().matches("ringway ready").count() > before
                || self
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
        });
        assert!(
            self.log().matches("ringway ready").count() > before,
            "{} not ready:\n{}",
            self.name,
            self.log()
        );
    }

    /// Reaps the process this test started, if it has exited.
    fn reap(&mut self) {
        if let Some(c) = &mut self.child {
            if c.try_wait().ok().flatten().is_some() {
                self.child = None;
            }
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill on a Ringway pid this test started (or its upgrade's successor).
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Whether `pid` is still running (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The Ringway config every instance runs.
fn ringway_config(keys: &Path, leaf: &crate::pki::Leaf) -> String {
    format!(
        r#"[runtime]
cores = 1
pin = false
pid_file = "ringway.pid"

[timeouts]
header = "60s"
keepalive = "60s"
lameduck = "{lameduck}s"
drain = "30s"
drain_spread = "{spread}s"

[tls]
ticket_keys = {keys:?}

[[listener]]
name = "main"
address = "0.0.0.0:8080"
proxy_protocol = true

[[listener]]
name = "tls"
address = "0.0.0.0:8443"
tls = true
proxy_protocol = true

[[listener]]
name = "admin"
address = "0.0.0.0:9090"
proxy_protocol = true

[admin]
listener = "admin"

[dns]
servers = ["{DNS}:53"]
min_ttl = "1s"
max_ttl = "1s"

[[backend]]
name = "chat"
servers = ["{APP_NAME}:{BACKEND_PORT}"]
drain_spread = "{spread}s"

[[backend]]
name = "poll"
servers = ["{APP_NAME}:{BACKEND_PORT}"]
balance = "cookie"
sticky_secret = "fleet-test-secret"
drain_spread = "{spread}s"

[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main", "tls"]

[vhost.tls]
cert = {cert:?}
key = {key:?}

[[vhost.websocket]]
uri = "/chat/"
backend = "chat"

[[vhost.context]]
uri = "/poll/"
handler = "proxy"
backend = "poll"
"#,
        lameduck = LAMEDUCK.as_secs(),
        spread = SPREAD.as_secs(),
        keys = keys.to_str().unwrap(),
        cert = leaf.chain_path().to_str().unwrap(),
        key = leaf.key_path().to_str().unwrap(),
    )
}

fn haproxy_config(dir: &Path) -> String {
    let servers: String = RINGWAYS
        .iter()
        .map(|(n, ip)| format!("    server {n} {ip}:8080\n"))
        .collect();
    let tls_servers: String = RINGWAYS
        .iter()
        .map(|(n, ip)| format!("    server {n} {ip}:8443 track ringways/{n}\n"))
        .collect();
    format!(
        r#"global
    maxconn 8000
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s
    retries 3
    option redispatch 1

frontend fleet
    bind {LB}:80
    default_backend ringways

frontend fleet_tls
    bind {LB}:443
    default_backend ringways_tls

backend ringways
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host fleet.test
    http-check expect status 200
    default-server send-proxy-v2 check check-send-proxy port 9090 inter 500ms fall 2 rise 2
{servers}
backend ringways_tls
    balance roundrobin
    default-server send-proxy-v2
{tls_servers}"#,
        sock = dir.join("haproxy.sock").display(),
    )
}

/// HAProxy's view of server `name` of backend `ringways` (`UP`, `DOWN`, ...), from its stats
/// socket (a Unix socket: reachable from any network namespace).
fn haproxy_status(sock: &Path, name: &str) -> String {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"show stat\n").is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let mut lines = text.lines();
    let Some(cols) = lines.next() else {
        return String::new();
    };
    let cols: Vec<&str> = cols.trim_start_matches("# ").split(',').collect();
    let Some(at) = cols.iter().position(|c| *c == "status") else {
        return String::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.len() > at && f[0] == "ringways" && f[1] == name)
        .map(|f| f[at].to_string())
        .unwrap_or_default()
}

fn write_hosts(path: &Path, live: &[usize]) {
    let text: String = live
        .iter()
        .map(|&i| format!("{} {APP_NAME}\n", BACKENDS[i].1))
        .collect();
    fs::write(path, text).unwrap();
}

/// `openssl s_client` through the balancer from the client namespace: whether each of `n`
/// reconnects resumed the first session (the balancer sends each to another instance).
fn tls_resumptions(lab: &Lab, dir: &Path, n: usize) -> (usize, usize) {
    let session = dir.join("session.pem");
    let _ = fs::remove_file(&session);
    let mut resumed = 0;
    let mut full = 0;
    for i in 0..=n {
        let mut cmd = lab.command(&lab.ns("client"), "openssl");
        cmd.args(["s_client", "-connect", &format!("{LB}:443")])
            .args(["-servername", "fleet.test", "-tls1_3", "-ign_eof"])
            .arg("-sess_out")
            .arg(&session);
        if i > 0 {
            cmd.arg("-sess_in").arg(&session);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl");
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(
            b"GET /poll/?sid=tls HTTP/1.1\r\nHost: fleet.test\r\nConnection: close\r\n\r\n",
        );
        drop(stdin);
        let mut out = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        if !wait_until(Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        }) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let text = reader.join().unwrap();
        if i > 0 {
            if text.contains("Reused, TLSv1") {
                resumed += 1;
            } else if text.contains("New, TLSv1") {
                full += 1;
            }
        }
    }
    (resumed, full)
}

// ---------------------------------------------------------------------------------------------
// The scenario

/// What one step of the scenario did, for the figures.
struct Event {
    what: String,
    at: Duration,
    /// Tunnels closed by it with 1001 and with 1012, as the clients counted.
    closes: (u64, u64),
    /// The most reconnects in one second while it ran.
    peak: u64,
    /// The same, each second's count divided by (1 + the client thread's worst lateness in it
    /// or the second before, in seconds): when the machine stalls the clients for 2 s, the
    /// reconnects of 3 s come in one.
    peak_adjusted: f64,
    /// The most closes received in one second while it ran.
    peak_closes: u64,
    /// The client thread's worst lateness while it ran (ms).
    lag_ms: u64,
}

impl Event {
    /// The rate of closes its spread makes: tunnels closed / `SPREAD`.
    fn rate(&self) -> f64 {
        (self.closes.0 + self.closes.1) as f64 / SPREAD.as_secs_f64()
    }
}

/// Ignored by a plain `cargo test`: it loads the whole machine for about 2 minutes (three
/// Ringways, HAProxy, dnsmasq, 2,000 clients), which would make the suite's timing-sensitive
/// tests beside it fail. `scripts/test.sh` (the README's test command, run by `.ci/run`) runs
/// it alone after the suite; `bench/fleet.sh` runs it longer.
#[test]
#[ignore = "run alone: scripts/test.sh runs it after the suite"]
fn fleet_short() {
    run_fleet(Settings::from_env());
}

fn run_fleet(set: Settings) {
    let t0 = Instant::now();
    let mut lab = Lab::new("rwfleet");
    let dir = temp_dir();
    let client_ns = lab.node("client", CLIENT);
    let lb_ns = lab.node("lb", LB);
    let dns_ns = lab.node("dns", DNS);
    let rw_ns: Vec<String> = RINGWAYS.iter().map(|(n, ip)| lab.node(n, ip)).collect();
    let be_ns: Vec<String> = BACKENDS.iter().map(|(n, ip)| lab.node(n, ip)).collect();

    // Backends: all six listen; DNS names three at a time.
    let be_stats: Vec<Arc<BackendStats>> = (0..BACKENDS.len()).map(|_| Arc::default()).collect();
    for (i, (name, ip)) in BACKENDS.iter().enumerate() {
        spawn_backend(be_ns[i].clone(), name, ip, be_stats[i].clone());
    }
    let hosts = dir.path().join("hosts");
    let mut live: Vec<usize> = vec![0, 1, 2];
    write_hosts(&hosts, &live);
    let mut dnsmasq = lab
        .command(&dns_ns, "dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local-ttl=1",
            "--domain-needed",
            "--local=/test/",
            "--port=53",
        ])
        .arg(format!("--listen-address={DNS}"))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian: dnsmasq-base)");
    let probe_ns = client_ns.clone();
    let dns_up = thread::spawn(move || {
        enter(&probe_ns);
        wait_until(LONG, || dns_answers(DNS, 53))
    })
    .join()
    .unwrap();
    assert!(dns_up, "dnsmasq did not answer on {DNS}:53");

    // Three Ringways, one config (certificate and ticket keys shared by path).
    let pki = Pki::new(dir.path());
    let leaf = pki.leaf("fleet", 0x2301, &LeafOpts::dns(&["fleet.test"]));
    let keys = dir.path().join("ticket.keys");
    {
        use base64::Engine;
        let mut rng = Rng::new(t0.elapsed().as_nanos() as u64 ^ std::process::id() as u64);
        let bytes: Vec<u8> = (0..80).map(|_| rng.next() as u8).collect();
        let line = base64::engine::general_purpose::STANDARD.encode(bytes);
        fs::write(&keys, format!("# shared by the fleet\n{line}\n")).unwrap();
    }
    let config = ringway_config(&keys, &leaf);
    let mut rws: Vec<Instance> = RINGWAYS
        .iter()
        .zip(&rw_ns)
        .map(|((name, _), ns)| {
            let d = dir.path().join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("ringway.toml"), &config).unwrap();
            Instance {
                name,
                ns: ns.clone(),
                dir: d,
                child: None,
            }
        })
        .collect();
    for rw in &mut rws {
        rw.start(&lab);
    }

    // The balancer.
    let hcfg = dir.path().join("haproxy.cfg");
    fs::write(&hcfg, haproxy_config(dir.path())).unwrap();
    let hlog = fs::File::create(dir.path().join("haproxy.log")).unwrap();
    let mut haproxy = lab
        .command(&lb_ns, "haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&hcfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(hlog)
        .spawn()
        .expect("haproxy");
    let hsock = dir.path().join("haproxy.sock");
    for (n, _) in RINGWAYS {
        wait_until(LONG, || {
            haproxy_status(&hsock, n) == "UP" || haproxy.try_wait().ok().flatten().is_some()
        });
        assert!(
            haproxy_status(&hsock, n) == "UP",
            "HAProxy never saw {n} up (status {:?}, exited: {:?})\nhaproxy log:\n{}",
            haproxy_status(&hsock, n),
            haproxy.try_wait().ok().flatten(),
            fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default()
        );
    }

    // TLS sessions resume on every instance (shared ticket_keys), through the balancer.
    let (tls_resumed, tls_full) = tls_resumptions(&lab, dir.path(), 6);

    // The load.
    let stats = Arc::new(Stats::default());
    let clients = spawn_clients(client_ns.clone(), &set, stats.clone(), t0);
    // A failed assertion below must not leave 2,000 clients retrying for the rest of the suite.
    let _stop = StopOnDrop(stats.clone());
    let all_connected =
        |stats: &Stats| wait_until(LONG, || stats.connected.load(Relaxed) == set.clients);
    assert!(
        all_connected(&stats),
        "only {} of {} clients connected; failures: {:?}",
        stats.connected.load(Relaxed),
        set.clients,
        stats.failures.lock().unwrap()
    );
    let load_started = t0.elapsed();

    let mut events: Vec<Event> = Vec::new();
    let mut removed_at: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut lb_out_after: Vec<Duration> = Vec::new();
    let counts = |s: &Stats| (s.close_1001.load(Relaxed), s.close_1012.load(Relaxed));
    let step = |events: &mut Vec<Event>, what: String, before: (u64, u64), at: Duration| {
        let now = counts(&stats);
        events.push(Event {
            what,
            at,
            closes: (now.0 - before.0, now.1 - before.1),
            peak: 0,
            peak_adjusted: 0.0,
            peak_closes: 0,
            lag_ms: 0,
        });
    };
    for round in 0..set.rounds {
        // 1. A rolling deploy of the backends: one new server joins DNS, one old one leaves
        //    (Ringway drains it: 1012 spread over 10 s); then the next.
        let (old, new): (Vec<usize>, Vec<usize>) = if round % 2 == 0 {
            (vec![0, 1, 2], vec![3, 4, 5])
        } else {
            (vec![3, 4, 5], vec![0, 1, 2])
        };
        for (o, n) in old.into_iter().zip(new) {
            let before = counts(&stats);
            let at = t0.elapsed();
            live.push(n);
            write_hosts(&hosts, &live);
            signal(dnsmasq.id() as i32, libc::SIGHUP);
            // Every instance has asked DNS again (TTL 1 s) before the old server leaves.
            thread::sleep(Duration::from_secs(3));
            live.retain(|&x| x != o);
            write_hosts(&hosts, &live);
            signal(dnsmasq.id() as i32, libc::SIGHUP);
            removed_at
                .entry(BACKENDS[o].0)
                .or_default()
                .push(t0.elapsed());
            assert!(
                wait_until(LONG, || be_stats[o].open_ws.load(Relaxed) == 0),
                "{} still has {} tunnels after it left DNS",
                BACKENDS[o].0,
                be_stats[o].open_ws.load(Relaxed)
            );
            assert!(
                all_connected(&stats),
                "clients did not come back after the drain of {}",
                BACKENDS[o].0
            );
            step(
                &mut events,
                format!("deploy: {} replaces {}", BACKENDS[n].0, BACKENDS[o].0),
                before,
                at,
            );
        }

        // 2. A binary upgrade of one instance (SIGUSR2: the new process takes the sockets,
        //    the old one drains with 1001).
        let before = counts(&stats);
        let at = t0.elapsed();
        let rw = &mut rws[round % 3];
        let old_pid = rw.pid().expect("pid file");
        signal(old_pid, libc::SIGUSR2);
        assert!(
            wait_until(LONG, || rw.pid().is_some_and(|p| p != old_pid && alive(p))),
            "{}: no new process after SIGUSR2\n{}",
            rw.name,
            rw.log()
        );
        assert!(
            wait_until(LONG, || !alive(old_pid)),
            "{}: the old process did not exit",
            rw.name
        );
        rw.reap();
        assert!(
            all_connected(&stats),
            "clients did not come back after the upgrade"
        );
        step(&mut events, format!("upgrade of {}", rw.name), before, at);

        // 3. A rolling restart: SIGTERM (lame duck: /healthz 503, the balancer takes it out),
        //    drain (1001 spread), exit; started again, back in the balancer.
        for (i, rw) in rws.iter_mut().enumerate() {
            let before = counts(&stats);
            let at = t0.elapsed();
            let pid = rw.pid().expect("pid file");
            let term = Instant::now();
            signal(pid, libc::SIGTERM);
            let name = RINGWAYS[i].0;
            assert!(
                wait_until(LONG, || haproxy_status(&hsock, name).starts_with("DOWN")),
                "HAProxy did not take {name} out"
            );
            lb_out_after.push(term.elapsed());
            // Out of the balancer before the drain began: no 1001 yet.
            assert_eq!(
                counts(&stats).0,
                before.0,
                "{name}: its tunnels got 1001 before the balancer took it out"
            );
            assert!(
                wait_until(LONG, || !alive(pid)),
                "{name} did not exit after SIGTERM"
            );
            rw.reap();
            rw.start(&lab);
            assert!(
                wait_until(LONG, || haproxy_status(&hsock, name) == "UP"),
                "HAProxy did not take {name} back"
            );
            assert!(
                all_connected(&stats),
                "clients did not come back after the restart of {name}"
            );
            step(&mut events, format!("restart of {name}"), before, at);
        }
    }
    // A last look before the load stops: every echo back, nothing pending.
    thread::sleep(set.every + Duration::from_secs(1));
    stats.stop.store(true, Relaxed);
    let _ = clients.join();

    // ------------------------------------------------------------------ figures
    let ran = t0.elapsed();
    let g = |a: &AtomicU64| a.load(Relaxed);
    // Reconnects per second, each second counted for the step that ran then.
    let secs = stats.reconnect_secs.lock().unwrap().clone();
    let close_secs = stats.close_secs.lock().unwrap().clone();
    let lag_secs = stats.lag_secs.lock().unwrap().clone();
    let ends: Vec<u64> = events
        .iter()
        .skip(1)
        .map(|e| e.at.as_secs())
        .chain([u64::MAX])
        .collect();
    for (e, end) in events.iter_mut().zip(ends) {
        let most = |bins: &BTreeMap<u64, u64>| {
            bins.range(e.at.as_secs()..end)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0)
        };
        e.peak = most(&secs);
        e.peak_adjusted = secs
            .range(e.at.as_secs()..end)
            .map(|(sec, n)| {
                // A stall that began in the second before may end in this one.
                let lag = lag_secs
                    .range(sec.saturating_sub(1)..=*sec)
                    .map(|(_, ms)| *ms)
                    .max()
                    .unwrap_or(0) as f64
                    / 1000.0;
                *n as f64 / (1.0 + lag)
            })
            .fold(0.0, f64::max);
        e.peak_closes = most(&close_secs);
        e.lag_ms = most(&lag_secs);
    }
    let outside: u64 = secs
        .range(..events.first().map_or(u64::MAX, |e| e.at.as_secs()))
        .map(|(_, n)| *n)
        .sum();
    let storms: Vec<&Event> = events
        .iter()
        .filter(|e| e.peak_adjusted > 2.0 * e.rate())
        .collect();
    // Long polls: a session may move only off a server that left DNS meanwhile.
    let polls = stats.poll_log.lock().unwrap().clone();
    let mut moves = 0;
    let mut bounces = 0;
    let mut bad_moves = Vec::new();
    for (sid, log) in &polls {
        for w in log.windows(2) {
            let ((t_prev, _, from), (t_now, t_answer, to)) = (&w[0], &w[1]);
            if from == to {
                continue;
            }
            moves += 1;
            // A move off a server that left DNS (between the previous request and this one's
            // answer: a busy machine may delay a request past the removal) is the drain. The
            // instances learn of a change within a TTL and a resolution, so for 3 s after a
            // removal a session may still be sent back to the drained server once.
            let left = |server: &str, lo: Duration| {
                removed_at
                    .get(server)
                    .is_some_and(|ts| ts.iter().any(|r| *r >= lo && r <= t_answer))
            };
            let drained = left(from, t_prev.saturating_sub(Duration::from_secs(1)));
            let bounce = !drained && left(to, t_now.saturating_sub(Duration::from_secs(3)));
            if bounce {
                bounces += 1;
            }
            if !drained && !bounce {
                bad_moves.push(format!("sid {sid}: {from} -> {to} at {t_now:?}"));
            }
        }
    }
    let mut be_closes = BTreeMap::new();
    for s in &be_stats {
        for (code, n) in s.closes.lock().unwrap().iter() {
            *be_closes.entry(*code).or_insert(0u64) += n;
        }
    }
    println!(
        "fleet: {} rounds in {:.1} s (load from {:.1} s)",
        set.rounds,
        ran.as_secs_f64(),
        load_started.as_secs_f64()
    );
    println!(
        "fleet: WebSocket clients {}, upgrades {}, reconnects {}",
        set.clients,
        g(&stats.upgrades),
        g(&stats.reconnects)
    );
    println!(
        "fleet: messages sent {}, echoed intact and in order {}, unanswered at a drain's Close {}",
        g(&stats.sent),
        g(&stats.echoed),
        g(&stats.unanswered)
    );
    println!(
        "fleet: closes received: 1001 {}, 1012 {}; backends received {:?}",
        g(&stats.close_1001),
        g(&stats.close_1012),
        be_closes
    );
    println!(
        "fleet: each step: tunnels closed with 1001 / 1012, the spread's rate (closed / {} s), the most reconnects in one second, and that divided by (1 + the client thread's lateness then, s): at most 2x the rate",
        SPREAD.as_secs()
    );
    for e in &events {
        println!(
            "fleet:   at {:6.1} s  {:<28} closed {:4} / {:4}  rate {:5.1}/s  max reconnects {:4}/s, for the lag {:5.1}/s  (max closes {:4}/s, client lag {:5} ms)",
            e.at.as_secs_f64(),
            e.what,
            e.closes.0,
            e.closes.1,
            e.rate(),
            e.peak,
            e.peak_adjusted,
            e.peak_closes,
            e.lag_ms
        );
    }
    println!("fleet: reconnects before the first step: {outside}");
    println!(
        "fleet: long-poll sessions {}, polls {}, moves {} (off a drained server, or back to it within 3 s of its removal: {}), moves off a live server {}",
        polls.len(),
        g(&stats.polls),
        moves,
        bounces,
        bad_moves.len()
    );
    println!(
        "fleet: balancer took an instance out {:?} after SIGTERM (lameduck {:?})",
        lb_out_after, LAMEDUCK
    );
    println!("fleet: TLS through the balancer: {tls_resumed} of 6 reconnects resumed ({tls_full} full handshakes)");
    println!(
        "fleet: refused {}, reset {}, closed without a Close frame {}, bad echoes {}, other failures {}",
        g(&stats.refused),
        g(&stats.reset),
        g(&stats.no_close_frame),
        g(&stats.bad_echo),
        g(&stats.other)
    );
    let failures = stats.failures.lock().unwrap().clone();
    for f in &failures {
        println!("fleet:   {f}");
    }

    // ------------------------------------------------------------------ verdict
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    assert!(failures.is_empty(), "clients saw failures: {failures:?}");
    assert!(
        bad_moves.is_empty(),
        "long-poll sessions moved off live servers: {bad_moves:?}"
    );
    assert!(g(&stats.echoed) > 0, "no message came back");
    assert!(
        g(&stats.close_1012) > 0,
        "no drain reached a client with 1012"
    );
    assert!(
        g(&stats.close_1001) > 0,
        "no restart reached a client with 1001"
    );
    assert!(
        storms.is_empty(),
        "reconnect storms (over 2x the spread's rate) in: {:?}",
        storms.iter().map(|e| &e.what).collect::<Vec<_>>()
    );
    assert_eq!(outside, 0, "reconnects before the scenario began");
    // A backend deploy closes with 1012 only, an upgrade or a restart with 1001 only.
    for e in &events {
        let deploy = e.what.starts_with("deploy");
        let (want, other) = if deploy {
            (e.closes.1, e.closes.0)
        } else {
            (e.closes.0, e.closes.1)
        };
        assert!(
            want > 0 && other == 0,
            "{}: closes 1001/1012 = {:?}",
            e.what,
            e.closes
        );
    }
    // Every server a session started on was drained, so every session moved at least once.
    assert_eq!(
        polls.len(),
        set.polls,
        "long-poll sessions that got an answer"
    );
    assert!(
        moves >= set.polls,
        "long polls: {} sessions, {moves} moves",
        polls.len()
    );
    assert!(
        lb_out_after.iter().all(|d| *d < LAMEDUCK),
        "the balancer took an instance out only after the lame duck: {lb_out_after:?}"
    );
    assert_eq!(
        tls_resumed, 6,
        "TLS sessions did not resume across the instances"
    );
    drop(rws);
    drop(lab);
}
