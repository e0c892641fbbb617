//! HTTP/2 downstream and RFC 8441 WebSockets (issue 11, section 2): curl (`--http2` over TLS,
//! `--http2-prior-knowledge` for h2c), an RFC 8441 client built on the h2 crate (tokio), raw
//! frames for the abuse cases, and real backends started by the tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};

use crate::backend::{After, EchoBackend, RawBackend, Reply};
use crate::harness::*;
use crate::http_backends::{HttpBackend, Then};
use crate::pki::{tls_base, vhost, LeafOpts, Pki};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An h2c (prior knowledge) client connection, its driver spawned on the runtime; waits for
/// the server's SETTINGS (extended CONNECT must be announced before it can be used).
async fn h2c(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("ready");
    let t0 = Instant::now();
    while !client.is_extended_connect_protocol_enabled() && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
        client = client.ready().await.expect("ready");
    }
    client
}

/// A masked client frame (RFC 6455 §5.3; RFC 8441 keeps the framing as it is).
fn ws_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0xA1, 0x5E, 0x07, 0x3C];
    let mut f = vec![0x80 | op];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Parses one unmasked server frame from `buf`: (opcode, payload, bytes used).
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, hl) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= hl + len).then(|| (buf[0] & 0x0F, buf[hl..hl + len].to_vec(), hl + len))
}

/// One RFC 8441 WebSocket: the request's send half and the response body.
struct H2Ws {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buf: Vec<u8>,
}

impl H2Ws {
    async fn open(
        client: &mut h2::client::SendRequest<Bytes>,
        port: u16,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<H2Ws, u16> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header("sec-websocket-version", "13");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).unwrap();
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let (resp, send) = client
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req, false)
            .expect("send_request");
        let resp = resp.await.expect("response");
        if resp.status() != 200 {
            return Err(resp.status().as_u16());
        }
        Ok(H2Ws {
            send,
            recv: resp.into_body(),
            buf: Vec::new(),
        })
    }

    fn send(&mut self, op: u8, payload: &[u8]) {
        let f = ws_frame(op, payload);
        self.send.reserve_capacity(f.len());
        self.send
            .send_data(Bytes::from(f), false)
            .expect("send_data");
    }

    /// The next frame from the server.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((op, p, n)) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                return Some((op, p));
            }
            let chunk = self.recv.data().await?.ok()?;
            let _ = self.recv.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Data frames until `want` payload bytes came.
    async fn read_bytes(&mut self, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < want {
            match self.next().await {
                Some((0x0..=0x2, p)) => got.extend_from_slice(&p),
                Some((0x9 | 0xA, _)) => {}
                other => panic!("after {} bytes: {other:?}", got.len()),
            }
        }
        got
    }
}

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

fn h2c_config(extra: &str) -> String {
    format!("{}http2 = true\n{extra}", base_config(1))
}

/// Static files, errors and the proxy context over h2c, with curl.
#[test]
fn h2c_static_files_errors_and_proxy_with_curl() {
    let app = HttpBackend::named("app");
    let config = h2c_config(&format!(
        "[[backend]]\nname = \"app\"\nservers = [\"{}\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"app\"\n\
         [[vhost.context]]\nuri = \"/echo\"\nhandler = \"echo\"\n",
        app.config_addr
    ));
    let dir = site();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("www/big.bin"), &big).unwrap();
    let rw = Ringway::builder(config).dir(dir).start();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let fmt = "%{http_code} %{http_version}";
    let (err, out) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        fmt,
        "-o",
        "/dev/null",
        &url("/index.html"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out), "200 2", "{err}");
    let (_, body) = curl(&["--http2-prior-knowledge", &url("/big.bin")]);
    assert!(body == big, "3 MB file over h2: {} bytes", body.len());
    for (path, method, want) in [
        ("/missing", "GET", "404 2"),
        ("/index.html", "POST", "405 2"),
        ("/echo", "GET", "426 2"),
        ("/api/x", "GET", "200 2"),
    ] {
        let (err, out) = curl(&[
            "--http2-prior-knowledge",
            "-X",
            method,
            "-w",
            fmt,
            "-o",
            "/dev/null",
            &url(path),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            want,
            "{method} {path}: {err}"
        );
    }
    // The backend got HTTP/1.1 with the forwarding fields.
    let seen = app.served();
    let r = seen.last().unwrap();
    assert_eq!(r.target, "/api/x");
    assert_eq!(r.get("x-forwarded-proto"), Some("http"));
    assert!(r.get("host").is_some_and(|h| h.starts_with("127.0.0.1")));
    // HTTP/1.1 still works on the same listener.
    let (_, out) = curl(&[
        "--http1.1",
        "-w",
        fmt,
        "-o",
        "/dev/null",
        &url("/index.html"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out), "200 1.1");
}

/// Request bodies stream to the backend (chunked when there is no length), responses stream
/// back with their chunked coding removed, and trailers pass both ways.
#[test]
fn h2_proxy_streams_bodies_both_ways_and_passes_trailers() {
    let app = HttpBackend::with_handler("app", |_, req, w| {
        // Echo the body back chunked, in three pieces, with a trailer.
        let b = &req.body;
        let third = b.len() / 3;
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nTrailer: X-Length\r\n\r\n".to_vec();
        for piece in [&b[..third], &b[third..2 * third], &b[2 * third..]] {
            if !piece.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(format!("0\r\nX-Length: {}\r\n\r\n", b.len()).as_bytes());
        if w.write_all(&out).is_err() {
            return Then::Close;
        }
        Then::KeepAlive
    });
    let config = h2c_config(&format!(
        "[[backend]]\nname = \"app\"\nservers = [\"{}\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"app\"\n",
        app.config_addr
    ));
    let rw = Ringway::builder(config).dir(site()).start();
    let port = rw.port();
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (got, trailer) = rt().block_on(async {
        let mut client = h2c(port).await;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://127.0.0.1:{port}/api/upload"))
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        // In pieces, within the window, then trailers of our own.
        for piece in body.chunks(100_000) {
            send.reserve_capacity(piece.len());
            send.send_data(Bytes::copy_from_slice(piece), false)
                .unwrap();
        }
        let mut t = http::HeaderMap::new();
        t.insert("x-client-sum", "42".parse().unwrap());
        send.send_trailers(t).unwrap();
        let resp = resp.await.expect("response");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("transfer-encoding").is_none());
        assert!(resp.headers().get("trailer").is_none());
        let mut recv = resp.into_body();
        let mut got = Vec::new();
        while let Some(d) = recv.data().await {
            let d = d.unwrap();
            let _ = recv.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        let trailers = recv.trailers().await.unwrap().expect("trailers");
        let t = trailers
            .get("x-length")
            .map(|v| v.to_str().unwrap().to_string());
        (got, t)
    });
    assert_eq!(got.len(), body.len());
    assert!(got == body, "echoed body differs");
    assert_eq!(trailer, Some(body.len().to_string()));
    let r = app.served().pop().unwrap();
    assert!(
        r.chunked,
        "no length from the client: chunked to the backend"
    );
    assert_eq!(r.body.len(), body.len());
    assert!(
        r.raw_head.starts_with("POST /api/upload HTTP/1.1"),
        "{}",
        r.raw_head
    );
}

/// TLS: ALPN offers h2 then http/1.1 by default; `alpn` per listener changes it.
#[test]
fn tls_listener_offers_h2_by_alpn_and_alpn_is_configurable() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let a = pki.leaf("a", 0x1001, &LeafOpts::dns(&["localhost"]));
    let mut cfg = tls_base(1)
        + "[[listener]]\nname = \"old\"\naddress = \"127.0.0.1:@PORT1@\"\ntls = true\nalpn = [\"http/1.1\"]\n";
    cfg += &vhost("a", &["localhost", "*"], &a.chain_file(), &a.key_file()).toml();
    let rw = Ringway::builder(cfg).dir(dir).start();
    let ca = pki.ca_path().display().to_string();
    for (port, want) in [(rw.port(), "200 2"), (rw.port_n(1), "200 1.1")] {
        let url = format!("https://localhost:{port}/index.html");
        let resolve = format!("localhost:{port}:127.0.0.1");
        let (err, out) = curl(&[
            "--http2",
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-w",
            "%{http_code} %{http_version}",
            "-o",
            "/dev/null",
            &url,
        ]);
        assert_eq!(String::from_utf8_lossy(&out), want, "{url}: {err}");
    }
}

/// RFC 8441: 100 WebSockets on one HTTP/2 connection, proxied to an HTTP/1.1 WebSocket
/// backend (Ringway's own key, the 101 checked), each echoing; a tunnel-mode route over the
/// same connection; a refused upgrade answers its stream with the backend's status and
/// disturbs no other stream.
#[test]
fn rfc8441_hundred_websockets_on_one_connection() {
    let echo = EchoBackend::tcp_v4();
    let refuser = RawBackend::start(
        Reply::Raw(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()),
        After::Record,
    );
    let line = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let line_port = line.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in line.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut b = [0u8; 65536];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let config = h2c_config(&format!(
        "[[backend]]\nname = \"line\"\nservers = [\"127.0.0.1:{line_port}\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/chat/\"\naddress = \"{}\"\n\
         [[vhost.websocket]]\nuri = \"/no/\"\naddress = \"{}\"\n\
         [[vhost.websocket]]\nuri = \"/feed/\"\nbackend = \"line\"\nmode = \"tunnel\"\nframe = \"binary\"\n",
        echo.config_addr,
        refuser.config_addr()
    ));
    let rw = Ringway::builder(config).dir(site()).start();
    let port = rw.port();
    rt().block_on(async {
        let mut client = h2c(port).await;
        let mut streams = Vec::new();
        for i in 0..100 {
            let ws = H2Ws::open(&mut client, port, &format!("/chat/{i}"), &[])
                .await
                .unwrap_or_else(|s| panic!("stream {i}: {s}"));
            streams.push(ws);
        }
        // A refused upgrade: the backend's status, on its stream only.
        assert_eq!(
            H2Ws::open(&mut client, port, "/no/", &[]).await.err(),
            Some(403)
        );
        // A bad version: 426, as over HTTP/1.1.
        let mut bad = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://127.0.0.1:{port}/chat/x"))
            .header("sec-websocket-version", "8")
            .body(())
            .unwrap();
        bad.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let (resp, _s) = client.send_request(bad, false).unwrap();
        assert_eq!(resp.await.unwrap().status(), 426);
        for round in 0..3u8 {
            for (i, ws) in streams.iter_mut().enumerate() {
                let msg = format!("stream {i} round {round}");
                ws.send(0x1, msg.as_bytes());
            }
            for (i, ws) in streams.iter_mut().enumerate() {
                let want = format!("stream {i} round {round}");
                assert_eq!(ws.next().await, Some((0x1, want.into_bytes())));
            }
        }
        // A large message: flow control both ways (more than the 64 KiB default window).
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
        streams[7].send(0x2, &big);
        assert_eq!(streams[7].next().await, Some((0x2, big.clone())));
        // Tunnel mode over HTTP/2: payloads to a raw TCP backend and back as frames.
        let mut feed = H2Ws::open(&mut client, port, "/feed/", &[]).await.unwrap();
        feed.send(0x2, b"raw bytes");
        assert_eq!(feed.read_bytes(9).await, b"raw bytes");
        // Close one: the close handshake completes on its stream.
        streams[0].send(0x8, &1000u16.to_be_bytes());
        assert_eq!(streams[0].next().await.map(|f| f.0), Some(0x8));
        // The others still echo.
        streams[99].send(0x1, b"still");
        assert_eq!(streams[99].next().await, Some((0x1, b"still".to_vec())));
    });
    // Each WebSocket was its own HTTP/1.1 upgrade to the backend, with Ringway's own key.
    let reqs = echo.requests();
    assert_eq!(reqs.len(), 100, "backend handshakes: {}", reqs.len());
    assert!(reqs.iter().all(|r| r.get("sec-websocket-key").is_some()));
}

/// One HTTP/2 frame: 9-byte header then payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET / request header block (HPACK: static-table entries and a literal authority).
fn get_block() -> Vec<u8> {
    // :method GET, :scheme http, :path /, :authority "site" (literal, not indexed).
    let mut b = vec![0x82, 0x86, 0x84, 0x01, 0x04];
    b.extend_from_slice(b"site");
    b
}

/// Reads frames until a GOAWAY (its error code) or EOF (`None`).
fn read_until_goaway(s: &mut TcpStream) -> Option<u32> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == 0x7 && len >= 8 {
                return Some(u32::from_be_bytes(buf[13..17].try_into().unwrap()));
            }
            buf.drain(..9 + len);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn raw_h2c(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).unwrap();
    s
}

/// Reads (and drops) what the server sends until it closes the connection: the types of the
/// whole frames seen, and when it closed (`None`: still open after `limit`).
fn frames_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut kinds = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            kinds.push(buf[3]);
            buf.drain(..9 + len);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (kinds, None);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return (kinds, Some(Instant::now())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (kinds, Some(Instant::now())),
        }
    }
}

const MAGIC: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2c_config_timeouts(timeouts: &[(&str, &str)]) -> String {
    format!(
        "{}http2 = true\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
        base_config_timeouts(1, timeouts)
    )
}

/// The client's preface is the magic **and** a SETTINGS frame (RFC 9113 §3.4); h2's handshake
/// ends with the magic. A client that stops after the magic, or inside its SETTINGS, is closed
/// about `timeouts.header` after it connected; one whose first frame is not SETTINGS at once.
/// A complete preface followed by silence is a connection in keep-alive, not closed then.
#[test]
fn h2c_preface_must_be_complete_within_timeouts_header() {
    let rw = Ringway::builder(h2c_config_timeouts(&[("header", "1s")]))
        .dir(site())
        .start();
    let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let cases: [(&str, Vec<u8>); 3] = [
        ("the magic alone", MAGIC.to_vec()),
        (
            "the magic and part of a SETTINGS frame",
            [MAGIC, &settings[..11]].concat(),
        ),
        (
            "the magic and a SETTINGS header without its payload",
            [MAGIC, &settings[..9]].concat(),
        ),
    ];
    for (what, wire) in &cases {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
        s.write_all(wire).unwrap();
        let (_, closed) = frames_until_closed(&mut s, Duration::from_secs(8));
        let took = closed.map(|t| t - t0);
        assert!(
            took.is_some_and(|d| d >= Duration::from_millis(900) && d < Duration::from_secs(3)),
            "{what}: closed after {took:?}, want about timeouts.header = 1s"
        );
    }
    // HEADERS where SETTINGS must be: a connection error, closed well before the deadline.
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
    s.write_all(&[MAGIC, &frame(0x1, 0x5, 1, &get_block())].concat())
        .unwrap();
    let (_, closed) = frames_until_closed(&mut s, Duration::from_secs(8));
    let took = closed.map(|t| t - t0);
    assert!(
        took.is_some_and(|d| d < Duration::from_millis(800)),
        "first frame not SETTINGS: closed after {took:?}"
    );
    // The whole preface, then silence past `header`: still open (keep-alive is 60 s), served.
    let mut s = raw_h2c(rw.port());
    let (_, closed) = frames_until_closed(&mut s, Duration::from_millis(2500));
    assert_eq!(
        closed, None,
        "a connection with a complete preface was closed"
    );
    s.write_all(&frame(0x1, 0x5, 1, &get_block())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let answered = 'read: loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == 0x1 && buf[5..9] == [0, 0, 0, 1] {
                // HPACK: `:status 200` is static-table entry 8.
                break 'read len > 0 && buf[9] == 0x88;
            }
            buf.drain(..9 + len);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    assert!(
        answered,
        "no 200 HEADERS on stream 1 after the quiet period"
    );
}

/// After the keep-alive GOAWAY (and h2's PING), a client that answers nothing, not even the
/// SETTINGS ACK or the PING, is closed `timeouts.header` later (README, HTTP/2).
#[test]
fn h2c_client_silent_after_keepalive_goaway_is_closed() {
    let rw = Ringway::builder(h2c_config_timeouts(&[
        ("header", "1s"),
        ("keepalive", "1s"),
    ]))
    .dir(site())
    .start();
    let t0 = Instant::now();
    let mut s = raw_h2c(rw.port());
    let (kinds, closed) = frames_until_closed(&mut s, Duration::from_secs(8));
    let took = closed.map(|t| t - t0);
    assert!(
        kinds.contains(&0x7),
        "no GOAWAY before the close: {kinds:?}"
    );
    // keep-alive 1 s + header 1 s, each swept every 250 ms.
    assert!(
        took.is_some_and(|d| d >= Duration::from_millis(1800) && d < Duration::from_secs(4)),
        "closed after {took:?}, want about keepalive + header = 2s"
    );
}

/// Rapid reset (CVE-2023-44487) and a CONTINUATION flood each get GOAWAY and a closed
/// connection; a well-behaved client beside them is served throughout.
#[test]
fn rapid_reset_and_continuation_flood_get_goaway() {
    let rw = Ringway::builder(h2c_config(
        "[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
    ))
    .dir(site())
    .start();
    // Rapid reset: HEADERS then RST_STREAM(CANCEL), thousands of times.
    let mut s = raw_h2c(rw.port());
    let mut burst = Vec::new();
    for i in 0..5000u32 {
        let id = 1 + 2 * i;
        burst.extend(frame(0x1, 0x5, id, &get_block()));
        burst.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
    }
    let _ = s.write_all(&burst);
    let code = read_until_goaway(&mut s);
    assert_eq!(code, Some(0xB), "rapid reset: GOAWAY ENHANCE_YOUR_CALM");
    // CONTINUATION flood: a header block that never ends.
    let mut s = raw_h2c(rw.port());
    let _ = s.write_all(&frame(0x1, 0x1, 1, &get_block()));
    let junk = vec![0x40u8; 16_000];
    let mut sent_all = true;
    for _ in 0..200 {
        if s.write_all(&frame(0x9, 0, 1, &junk)).is_err() {
            sent_all = false;
            break;
        }
    }
    let code = read_until_goaway(&mut s);
    assert!(
        code.is_some() || !sent_all,
        "CONTINUATION flood: neither GOAWAY nor a closed connection"
    );
    // Others unaffected.
    let (err, out) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{}/index.html", rw.port()),
    ]);
    assert_eq!(String::from_utf8_lossy(&out), "200", "{err}");
}

/// Headless Chromium loads a page from Ringway over h2 (TLS, ALPN) and opens `wss://` to the
/// same origin: Chromium uses RFC 8441 on the existing HTTP/2 connection (the server announced
/// SETTINGS_ENABLE_CONNECT_PROTOCOL). The page shows the echo; the access log shows the
/// WebSocket as an extended CONNECT over HTTP/2.
#[test]
fn chromium_opens_wss_over_http2_with_rfc_8441() {
    let echo = EchoBackend::tcp_v4();
    let dir = site();
    std::fs::write(
        dir.path().join("www/ws.html"),
        "<!doctype html><html><body><p id=\"r\">pending</p><script>\n\
         const ws = new WebSocket('wss://' + location.host + '/chat/x');\n\
         ws.onopen = () => ws.send('hello over h2');\n\
         ws.onmessage = e => { document.getElementById('r').textContent = 'echo:' + e.data; ws.close(1000); };\n\
         ws.onerror = () => { document.getElementById('r').textContent = 'error'; };\n\
         fetch('/hold/').then(r => r.text());\n\
         </script></body></html>\n",
    )
    .unwrap();
    // Chromium's virtual time stands still while a fetch is pending: this one holds it for
    // two real seconds, plenty for the WebSocket however loaded the machine is.
    let hold = HttpBackend::with_handler("hold", |_, _, w| {
        std::thread::sleep(Duration::from_secs(2));
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Then::KeepAlive
    });
    let pki = Pki::new(dir.path());
    let a = pki.leaf("a", 0x1001, &LeafOpts::dns(&["localhost"]));
    let cfg = tls_base(1)
        + "[log]\naccess = \"access.log\"\n"
        + &format!(
            "[[backend]]\nname = \"hold\"\nservers = [\"{}\"]\n",
            hold.config_addr
        )
        + &vhost("a", &["localhost", "*"], &a.chain_file(), &a.key_file())
            .websocket("/chat/", &echo.config_addr)
            .context_proxy("/hold/", "hold")
            .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();
    // Virtual time can run out before the WebSocket answers on a loaded machine: a few tries.
    let mut dom = String::new();
    for _ in 0..3 {
        let profile = temp_dir();
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                // The test CA is not in Chromium's store; the TLS is real all the same.
                "--ignore-certificate-errors",
                "--virtual-time-budget=10000",
                "--host-resolver-rules=MAP localhost 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("https://localhost:{}/ws.html", rw.port()))
            .output()
            .expect("chromium (apt-get install chromium)");
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("echo:") {
            break;
        }
    }
    assert!(dom.contains("echo:hello over h2"), "{dom}");
    let log = rw.dir_path().join("access.log");
    let over_h2 = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.contains("\"GET /ws.html HTTP/2.0\" 200")
                && l.contains("\"CONNECT /chat/x HTTP/2.0\" 200")
        })
    });
    assert!(
        over_h2,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// A drain (SIGTERM) reaches WebSockets over HTTP/2: each gets Close 1001 on its stream, and
/// once they have answered, Ringway exits 0.
#[test]
fn drain_sends_close_1001_to_websockets_over_http2() {
    let echo = EchoBackend::tcp_v4();
    let config = h2c_config(&format!(
        "[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/chat/\"\naddress = \"{}\"\n",
        echo.config_addr
    ));
    let mut rw = Ringway::builder(config).dir(site()).start();
    let port = rw.port();
    let pid = rw.pid();
    let codes = rt().block_on(async {
        let mut client = h2c(port).await;
        let mut streams = Vec::new();
        for i in 0..5 {
            let mut ws = H2Ws::open(&mut client, port, &format!("/chat/{i}"), &[])
                .await
                .unwrap();
            ws.send(0x1, b"before");
            assert_eq!(ws.next().await, Some((0x1, b"before".to_vec())));
            streams.push(ws);
        }
        // SAFETY: signalling the Ringway child this test started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let mut codes = Vec::new();
        for ws in &mut streams {
            let (op, p) = ws.next().await.expect("a frame after SIGTERM");
            assert_eq!(op, 0x8);
            codes.push(u16::from_be_bytes([p[0], p[1]]));
            ws.send(0x8, &1001u16.to_be_bytes());
        }
        codes
    });
    assert_eq!(codes, vec![1001; 5]);
    let status = rw.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}");
}

/// A load smoke run with h2load (Debian's nghttp2-client): thousands of multiplexed requests,
/// static and proxied, every one answered 2xx.
#[test]
fn h2load_smoke_run_answers_every_request() {
    let app = HttpBackend::named("app");
    let config = h2c_config(&format!(
        "[[backend]]\nname = \"app\"\nservers = [\"{}\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"app\"\n",
        app.config_addr
    ));
    let rw = Ringway::builder(config).dir(site()).start();
    for path in ["/index.html", "/api/load"] {
        let out = Command::new("h2load")
            .args(["-n", "4000", "-c", "4", "-m", "16", "-t", "1"])
            .arg(format!("http://127.0.0.1:{}{path}", rw.port()))
            .output()
            .expect("h2load (apt-get install nghttp2-client)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored"),
            "{path}: {text}"
        );
        assert!(text.contains("status codes: 4000 2xx"), "{path}: {text}");
    }
}

/// Flow control over RFC 8441: a client that stops reading its stream pauses Ringway's reads
/// from the backend (the backend's writes block); Ringway holds no more than a window and a
/// read, and the stream resumes when the client reads again.
#[test]
fn a_slow_http2_websocket_client_pauses_the_backend() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A raw backend that pushes 64 KiB writes for as long as it is let, counting what the
    // kernel took.
    let pushed = Arc::new(AtomicUsize::new(0));
    let line = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let line_port = line.local_addr().unwrap().port();
    let counter = pushed.clone();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = line.accept() {
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).is_ok() {
                counter.fetch_add(chunk.len(), Ordering::SeqCst);
                if counter.load(Ordering::SeqCst) >= 256 << 20 {
                    break;
                }
            }
        }
    });
    let config = h2c_config(&format!(
        "[[backend]]\nname = \"line\"\nservers = [\"127.0.0.1:{line_port}\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/feed/\"\nbackend = \"line\"\nmode = \"tunnel\"\nframe = \"binary\"\n"
    ));
    let rw = Ringway::builder(config).dir(site()).start();
    let port = rw.port();
    let rss_before = rw.rss_kib();
    let (stalled, rss_stalled, resumed) = rt().block_on(async {
        let mut client = h2c(port).await;
        let mut ws = H2Ws::open(&mut client, port, "/feed/", &[]).await.unwrap();
        // Read nothing for two seconds.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stalled = pushed.load(Ordering::SeqCst);
        let rss_stalled = rw.rss_kib();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            pushed.load(Ordering::SeqCst),
            stalled,
            "the backend kept writing while the client read nothing"
        );
        // Read again: 8 MiB arrive, and the backend moves on.
        let got = ws.read_bytes(8 << 20).await;
        assert!(got.iter().all(|&b| b == b'x'));
        (stalled, rss_stalled, pushed.load(Ordering::SeqCst))
    });
    eprintln!(
        "slow h2 client: backend stalled after {} KiB; Ringway RSS +{} KiB",
        stalled / 1024,
        rss_stalled.saturating_sub(rss_before)
    );
    // The kernel's socket buffers take some megabytes; Ringway itself adds little.
    assert!(
        stalled < 64 << 20,
        "backend pushed {stalled} bytes unhindered"
    );
    assert!(
        rss_stalled.saturating_sub(rss_before) < 8 * 1024,
        "Ringway grew {} KiB",
        rss_stalled - rss_before
    );
    assert!(resumed > stalled, "the backend did not resume");
}

/// The built-in echo endpoint over RFC 8441, and `limits.max_concurrent_streams` as the
/// connection's SETTINGS announce it.
#[test]
fn echo_endpoint_over_http2_and_max_concurrent_streams() {
    let config = h2c_config(
        "[limits]\nmax_concurrent_streams = 7\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/echo\"\nhandler = \"echo\"\n",
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let port = rw.port();
    // The server's SETTINGS: MAX_CONCURRENT_STREAMS (0x3) and ENABLE_CONNECT_PROTOCOL (0x8).
    let mut s = raw_h2c(port);
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[3], 0x4, "the server's first frame is SETTINGS");
    let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
    s.read_exact(&mut payload).unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(settings.contains(&(0x3, 7)), "{settings:?}");
    assert!(settings.contains(&(0x8, 1)), "{settings:?}");
    rt().block_on(async {
        let mut client = h2c(port).await;
        let mut ws = H2Ws::open(&mut client, port, "/echo", &[]).await.unwrap();
        ws.send(0x1, "κόσμε".as_bytes());
        assert_eq!(ws.next().await, Some((0x1, "κόσμε".as_bytes().to_vec())));
        let big = vec![9u8; 200_000];
        ws.send(0x2, &big);
        assert_eq!(ws.next().await, Some((0x2, big)));
        // Larger than tunnel mode's default `max_message` (1 MiB): the echo takes up to 16 MiB.
        let huge = vec![3u8; 3 << 20];
        ws.send(0x2, &huge);
        assert_eq!(ws.next().await, Some((0x2, huge)));
        ws.send(0x9, b"p");
        assert_eq!(ws.next().await, Some((0xA, b"p".to_vec())));
        // Not UTF-8: 1007, as over HTTP/1.1 tunnel mode.
        ws.send(0x1, &[0xFF]);
        assert_eq!(ws.next().await, Some((0x8, 1007u16.to_be_bytes().to_vec())));
        let mut ws = H2Ws::open(&mut client, port, "/echo", &[]).await.unwrap();
        ws.send(0x8, &1000u16.to_be_bytes());
        assert_eq!(ws.next().await, Some((0x8, 1000u16.to_be_bytes().to_vec())));
    });
}

/// The sum of the samples of `metric` (with `labels` a prefix of its label set, if given) in
/// Ringway's `/metrics` on the admin port.
fn metric_sum(admin: u16, metric: &str, labels: &str) -> f64 {
    let text = request(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .body_text();
    let prefix = format!("{metric}{{{labels}");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The buffer pools give memory back once the demand that filled them is gone. 48 streams on
/// one connection each fetch a 1 MiB file while the client reads nothing: each stream's task
/// holds a 64 KiB buffer, waiting for window. When the client has read everything, the pool
/// holds those buffers; within a few decay intervals (10 s) it is empty again, and the
/// allocator's live bytes (`ringway_memory_bytes{kind="heap_in_use"}`) have fallen with it.
#[test]
fn buffer_pools_shrink_after_a_burst_and_memory_metrics_show_it() {
    const STREAMS: usize = 48;
    const FILE: usize = 1 << 20;
    let config = format!(
        "{}http2 = true\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n\
         [admin]\nlistener = \"admin\"\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\nlisteners = [\"main\"]\ndoc_root = \"www\"\n",
        base_config(1)
    );
    let dir = site();
    std::fs::write(dir.path().join("www/big.bin"), vec![b'b'; FILE]).unwrap();
    let rw = Ringway::builder(config).dir(dir).start();
    let admin = rw.port_n(1);
    let resident = metric_sum(admin, "ringway_memory_bytes", "kind=\"resident\"");
    let rss = rw.rss_kib() as f64 * 1024.0;
    assert!(
        resident > 1e6 && (resident - rss).abs() < 4e6,
        "resident {resident} vs VmRSS {rss}"
    );
    let in_use_before = metric_sum(admin, "ringway_memory_bytes", "kind=\"heap_in_use\"");
    assert!(in_use_before > 0.0);
    let rt = rt();
    rt.block_on(async {
        let client = h2c(rw.port()).await;
        let mut bodies = Vec::new();
        for _ in 0..STREAMS {
            let req = Request::get(format!("http://127.0.0.1:{}/big.bin", rw.port()))
                .body(())
                .unwrap();
            let mut c = client.clone().ready().await.expect("ready");
            let (resp, _) = c.send_request(req, true).expect("request");
            bodies.push(resp);
        }
        let mut heads = Vec::new();
        for resp in bodies {
            let resp = resp.await.expect("response");
            assert_eq!(resp.status(), 200);
            heads.push(resp.into_body());
        }
        // Every stream has its head; the windows are full and nothing is read yet.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Then all are read at once (one at a time would deadlock: the connection window
        // freed by one stream may go to another that is not being read).
        let readers: Vec<_> = heads
            .into_iter()
            .map(|mut body| {
                tokio::spawn(async move {
                    let mut n = 0;
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.expect("data");
                        n += chunk.len();
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    n
                })
            })
            .collect();
        for r in readers {
            assert_eq!(r.await.expect("reader"), FILE);
        }
    });
    let pooled = metric_sum(admin, "ringway_buffer_pool_bytes", "");
    let in_use_after = metric_sum(admin, "ringway_memory_bytes", "kind=\"heap_in_use\"");
    eprintln!(
        "heap in use {:.0} KiB before the burst, {:.0} KiB after it with {:.0} KiB pooled",
        in_use_before / 1024.0,
        in_use_after / 1024.0,
        pooled / 1024.0
    );
    assert!(
        pooled >= (STREAMS as f64 / 2.0) * 65536.0,
        "the stalled streams' buffers went back to the pool: {pooled}"
    );
    // Nothing needs them now: the pool decays (a scrape uses a few small Vecs of its own).
    let t0 = Instant::now();
    let (left, in_use) = loop {
        std::thread::sleep(Duration::from_secs(2));
        let left = metric_sum(admin, "ringway_buffer_pool_bytes", "");
        let in_use = metric_sum(admin, "ringway_memory_bytes", "kind=\"heap_in_use\"");
        if left < 256.0 * 1024.0 || t0.elapsed() > Duration::from_secs(40) {
            break (left, in_use);
        }
    };
    eprintln!(
        "pools {:.0} KiB and heap in use {:.0} KiB after {:.0?}",
        left / 1024.0,
        in_use / 1024.0,
        t0.elapsed()
    );
    assert!(left < 256.0 * 1024.0, "pools still hold {left} bytes");
    assert!(
        in_use < in_use_after - 0.8 * (pooled - left),
        "heap in use {in_use} did not fall with the pools (from {in_use_after})"
    );
}
