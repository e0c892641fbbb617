//! WebSocket tunnel mode (issue 11, section 1): Ringway ends the WebSocket and passes message
//! payloads to a raw TCP backend started by the test; real clients (tungstenite, and a raw
//! frame writer for what tungstenite will not send: fragments, violations).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::harness::*;

/// What the raw TCP backend does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Echoes every byte.
    Echo,
    /// Writes these chunks (a pause between them), then closes.
    Say(Vec<Vec<u8>>),
}

/// A raw TCP server; reports, per connection, the bytes it received once the client side of
/// that connection ended (EOF).
struct LineServer {
    port: u16,
    ended: mpsc::Receiver<Vec<u8>>,
}

impl LineServer {
    fn start(b: Behaviour) -> LineServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, ended) = mpsc::channel();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let (b, tx) = (b.clone(), tx.clone());
                thread::spawn(move || {
                    let mut got = Vec::new();
                    match b {
                        Behaviour::Echo => {
                            let mut buf = [0u8; 65536];
                            loop {
                                match s.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        got.extend_from_slice(&buf[..n]);
                                        if s.write_all(&buf[..n]).is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                        }
                        Behaviour::Say(chunks) => {
                            for c in chunks {
                                let _ = s.write_all(&c);
                                thread::sleep(Duration::from_millis(50));
                            }
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            let _ = s.read_to_end(&mut got);
                        }
                    }
                    let _ = tx.send(got);
                });
            }
        });
        LineServer { port, ended }
    }
}

fn config(backend_port: u16, options: &str) -> String {
    format!(
        "{}\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n[admin]\nlistener = \"admin\"\n\
         [[backend]]\nname = \"line\"\nservers = [\"127.0.0.1:{backend_port}\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\nlisteners = [\"main\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/feed/\"\nbackend = \"line\"\nmode = \"tunnel\"\n{options}\n",
        base_config(1)
    )
}

/// Reads data messages until `want` payload bytes came (the backend's byte stream is framed
/// as it arrives, so one message sent may come back as several).
fn read_bytes(ws: &mut Ws, want: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut all_text = true;
    while got.len() < want {
        match ws_next(ws) {
            Message::Text(t) => got.extend_from_slice(t.as_bytes()),
            Message::Binary(b) => {
                all_text = false;
                got.extend_from_slice(&b)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (got, all_text)
}

#[test]
fn messages_from_1_byte_to_1_mib_reach_a_raw_backend_and_come_back_as_frames() {
    let line = LineServer::start(Behaviour::Echo);
    for (frame, text) in [("binary", false), ("text", true)] {
        let rw = Ringway::builder(config(line.port, &format!("frame = \"{frame}\"")))
            .dir(site())
            .start();
        let (mut ws, resp) = ws_connect(rw.port(), rw.ws_url("/feed/x").as_str());
        assert_eq!(resp.status(), 101);
        assert!(resp.headers().get("sec-websocket-protocol").is_none());
        for n in [1usize, 125, 126, 65535, 65536, 1 << 20] {
            let payload = text_payload(n);
            let m = if n % 2 == 0 {
                Message::text(payload.clone())
            } else {
                Message::binary(payload.clone().into_bytes())
            };
            ws.send(m).unwrap();
            let (got, all_text) = read_bytes(&mut ws, n);
            assert_eq!(got.len(), n, "{frame}: {n} bytes");
            assert!(got == payload.as_bytes(), "{frame}: {n} bytes differ");
            assert_eq!(all_text, text, "{frame}: frame type");
        }
        ws.close(None).unwrap();
        // The close handshake completes, and the backend sees EOF (its write side was shut).
        loop {
            match ws.read() {
                Ok(Message::Close(f)) => {
                    assert_eq!(f.map(|f| f.code), None);
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("{frame}: {e}"),
            }
        }
        let seen = line.ended.recv_timeout(WAIT).expect("backend saw no EOF");
        assert_eq!(
            seen.len(),
            2 * 65536 + 1 + 125 + 126 + 65535 + (1 << 20) - 65536
        );
    }
}

/// A client speaking raw frames (tungstenite sends neither fragments nor violations); also
/// used by `echo`.
pub(crate) struct Raw {
    pub(crate) s: TcpStream,
    buf: Vec<u8>,
}

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

impl Raw {
    pub(crate) fn connect(port: u16, path: &str, extra: &str) -> (Raw, String) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: site\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .unwrap();
        let mut raw = Raw { s, buf: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            raw.fill();
        };
        let head = String::from_utf8(raw.buf.drain(..end).collect()).unwrap();
        (raw, head)
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    pub(crate) fn frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = vec![b0];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xFFFF => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&MASK);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    pub(crate) fn send(&mut self, b0: u8, payload: &[u8]) {
        self.s.write_all(&Raw::frame(b0, payload, true)).unwrap();
    }

    /// The next frame: (opcode, payload); `None` at EOF.
    pub(crate) fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (op, len7) = (self.buf[0] & 0x0F, (self.buf[1] & 0x7F) as usize);
                let (len, hl) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if hl > 0 && self.buf.len() >= hl + len {
                    assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
                    let p = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    return Some((op, p));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Frames until a Close: the data received, the Close code.
    pub(crate) fn until_close(&mut self) -> (Vec<u8>, Option<u16>) {
        let mut data = Vec::new();
        while let Some((op, p)) = self.next() {
            match op {
                0x8 => {
                    return (
                        data,
                        (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])),
                    )
                }
                0x0..=0x2 => data.extend_from_slice(&p),
                _ => {}
            }
        }
        panic!("EOF without a Close (data so far: {} bytes)", data.len());
    }

    pub(crate) fn at_eof(&mut self) -> bool {
        self.buf.clear();
        !self.fill()
    }
}

#[test]
fn fragments_with_interleaved_pings_are_reassembled_and_pings_answered() {
    let line = LineServer::start(Behaviour::Echo);
    let rw = Ringway::builder(config(line.port, "frame = \"binary\""))
        .dir(site())
        .start();
    let mut c = fragments_around_control_frames(rw.port(), "/feed/");
    // The pong comes first (the message is not complete before it), then the echo.
    assert_eq!(c.next(), Some((0xA, b"p1".to_vec())));
    let mut echoed = Vec::new();
    while echoed.len() < "fragmenté".len() {
        let (op, p) = c.next().expect("echo");
        assert_eq!(op, 0x2);
        echoed.extend_from_slice(&p);
    }
    assert_eq!(echoed, "fragmenté".as_bytes());
    c.send(0x88, &1000u16.to_be_bytes());
    assert_eq!(c.until_close(), (vec![], Some(1000)));
    assert!(c.at_eof());
    assert_eq!(
        line.ended.recv_timeout(WAIT).unwrap(),
        "fragmenté".as_bytes()
    );
}

/// Upgrades on `path` (checking the 101 and its accept key), then sends "fragmenté" as three
/// text fragments with a ping and an unsolicited pong between them. A conforming server end
/// answers the ping ("p1") first, then delivers the message whole.
pub(crate) fn fragments_around_control_frames(port: u16, path: &str) -> Raw {
    let (mut c, head) = Raw::connect(port, path, "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    c.send(0x01, "frag".as_bytes());
    c.send(0x89, b"p1");
    c.send(0x00, "me".as_bytes());
    c.send(0x8A, b"unsolicited pong");
    c.send(0x80, "nté".as_bytes());
    c
}

/// The RFC 6455 violations every server end of a WebSocket must fail, each with the Close code
/// it must send (tunnel mode and the echo endpoint share them; each test adds its own limits).
pub(crate) fn rfc6455_violations() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        ("unmasked frame", Raw::frame(0x81, b"hi", false), 1002),
        ("reserved bit", Raw::frame(0xC1, b"hi", true), 1002),
        ("opcode 3", Raw::frame(0x83, b"", true), 1002),
        ("opcode 0xB", Raw::frame(0x8B, b"", true), 1002),
        (
            "fragmented ping",
            [Raw::frame(0x09, b"a", true), Raw::frame(0x80, b"b", true)].concat(),
            1002,
        ),
        ("ping of 126 bytes", Raw::frame(0x89, &[0; 126], true), 1002),
        ("continuation first", Raw::frame(0x80, b"x", true), 1002),
        (
            "text inside a fragmented message",
            [Raw::frame(0x01, b"a", true), Raw::frame(0x81, b"b", true)].concat(),
            1002,
        ),
        ("close with one byte", Raw::frame(0x88, &[3], true), 1002),
        (
            "close code 1005",
            Raw::frame(0x88, &1005u16.to_be_bytes(), true),
            1002,
        ),
        (
            "text not UTF-8",
            Raw::frame(0x81, &[0xCE, 0xBA, 0xFF], true),
            1007,
        ),
    ]
}

/// Every protocol violation gets its Close code, then the connection ends; none of the bad
/// message reaches the backend.
#[test]
fn protocol_violations_close_with_the_rfc_6455_codes() {
    let line = LineServer::start(Behaviour::Echo);
    let rw = Ringway::builder(config(line.port, "max_message = \"1KiB\""))
        .dir(site())
        .start();
    let mut cases = rfc6455_violations();
    cases.extend([
        (
            "UTF-8 broken in the first fragment",
            [Raw::frame(0x01, &[0xF4, 0x90], true)].concat(),
            1007,
        ),
        (
            "message over max_message",
            Raw::frame(0x82, &[0; 1025], true),
            1009,
        ),
        (
            "fragments over max_message",
            [
                Raw::frame(0x02, &[0; 600], true),
                Raw::frame(0x80, &[0; 600], true),
            ]
            .concat(),
            1009,
        ),
    ]);
    for (name, wire, code) in &cases {
        let (mut c, _) = Raw::connect(rw.port(), "/feed/", "");
        c.s.write_all(wire).unwrap();
        let (data, got) = c.until_close();
        assert!(data.is_empty(), "{name}: data came back");
        assert_eq!(got, Some(*code), "{name}");
        assert!(c.at_eof(), "{name}: still open after the Close");
        let seen = line.ended.recv_timeout(WAIT).expect("backend closed");
        assert!(
            seen.is_empty(),
            "{name}: {} bytes reached the backend",
            seen.len()
        );
    }
    // A message of exactly max_message passes.
    let (mut c, _) = Raw::connect(rw.port(), "/feed/", "");
    c.send(0x82, &[7; 1024]);
    let mut got = Vec::new();
    while got.len() < 1024 {
        got.extend(c.next().unwrap().1);
    }
    assert_eq!(got, vec![7; 1024]);
    // Counted by code.
    let m = request(
        rw.port_n(1),
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .body_text();
    assert!(
        m.contains("ringway_ws_closes_sent_total{core=\"0\",code=\"1002\"} 10"),
        "{m}"
    );
    assert!(m.contains("ringway_ws_closes_sent_total{core=\"0\",code=\"1007\"} 2"));
    assert!(m.contains("ringway_ws_closes_sent_total{core=\"0\",code=\"1009\"} 2"));
    // The pools kept the buffers those messages used (a gauge, in bytes).
    let pooled = m
        .lines()
        .find_map(|l| l.strip_prefix("ringway_buffer_pool_bytes{core=\"0\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("ringway_buffer_pool_bytes");
    assert!(pooled > 0 && pooled < 64 << 20, "{pooled}");
}

#[test]
fn subprotocol_is_offered_back_only_when_asked_for() {
    let line = LineServer::start(Behaviour::Echo);
    let rw = Ringway::builder(config(
        line.port,
        "subprotocols = [\"chat.v2\", \"chat.v1\"]",
    ))
    .dir(site())
    .start();
    let ask = |p: Option<&str>| {
        let mut req = rw.ws_url("/feed/").into_client_request().unwrap();
        if let Some(p) = p {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
        }
        let (_ws, resp) = ws_connect(rw.port(), req);
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(ask(Some("chat.v1")), Some("chat.v1".into()));
    assert_eq!(ask(Some("soap, chat.v2")), Some("chat.v2".into()));
    assert_eq!(ask(None), None);
    // Nothing it offers: no header (tungstenite accepts that; the client decides).
    let (_, head) = Raw::connect(rw.port(), "/feed/", "Sec-WebSocket-Protocol: soap\r\n");
    assert!(head.starts_with("HTTP/1.1 101"));
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
}

#[test]
fn backend_eof_closes_with_1000_and_text_frames_keep_characters_whole() {
    // "é€" split inside both characters, across three writes.
    let s = "aé€b".as_bytes().to_vec();
    let chunks = vec![s[..2].to_vec(), s[2..5].to_vec(), s[5..].to_vec()];
    let line = LineServer::start(Behaviour::Say(chunks));
    let rw = Ringway::builder(config(line.port, "")).dir(site()).start();
    let (mut c, _) = Raw::connect(rw.port(), "/feed/", "");
    let mut data = Vec::new();
    let code = loop {
        let (op, p) = c.next().expect("frame");
        match op {
            0x1 => {
                assert!(
                    std::str::from_utf8(&p).is_ok(),
                    "a text frame that is not UTF-8: {p:?}"
                );
                data.extend_from_slice(&p);
            }
            0x8 => break u16::from_be_bytes([p[0], p[1]]),
            other => panic!("opcode {other}"),
        }
    };
    assert_eq!(data, s);
    assert_eq!(code, 1000);
    c.send(0x88, &1000u16.to_be_bytes());
    assert!(c.at_eof());
}

/// `ping_interval`: a client that answers stays; one that does not is closed with 1001 after
/// two unanswered pings, and counted.
#[test]
fn clients_that_miss_two_pongs_are_closed_with_1001() {
    let line = LineServer::start(Behaviour::Echo);
    let rw = Ringway::builder(config(line.port, "ping_interval = \"1s\""))
        .dir(site())
        .start();
    let (mut deaf, _) = Raw::connect(rw.port(), "/feed/", "");
    let (mut alive, _) = ws_connect(rw.port(), rw.ws_url("/feed/").as_str());
    // tungstenite answers pings while it reads: one message every 200 ms for 5 s.
    let alive = thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            alive.send(Message::text("still")).unwrap();
            assert_eq!(ws_next(&mut alive), Message::text("still"));
            thread::sleep(Duration::from_millis(200));
        }
    });
    let t0 = Instant::now();
    let mut pings = 0;
    let code = loop {
        let (op, p) = deaf.next().expect("frame");
        match op {
            0x9 => pings += 1,
            0x8 => break u16::from_be_bytes([p[0], p[1]]),
            other => panic!("opcode {other}"),
        }
    };
    assert_eq!((pings, code), (2, 1001));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(deaf.at_eof());
    alive
        .join()
        .expect("the client that answers pings was closed");
    let m = request(
        rw.port_n(1),
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .body_text();
    assert!(
        m.contains("ringway_ws_ping_timeouts_total{core=\"0\"} 1"),
        "{m}"
    );
}
