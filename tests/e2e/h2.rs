//! HTTP/2 downstream (issue 11, section 2): curl (`--http2` over TLS, `--http2-prior-knowledge`
//! for h2c), the h2 crate's client (tokio) and raw frames for the abuse cases, an h2load smoke
//! run, and buffer pools shrinking after a burst; with the h2c client, curl and raw-frame helpers
//! that `h2_websockets` shares.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};

use crate::harness::*;
use crate::http_backends::{HttpBackend, Then};
use crate::pki::{tls_base, vhost, LeafOpts, Pki};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An h2c (prior knowledge) client connection, its driver spawned on the runtime; waits for
/// the server's SETTINGS (extended CONNECT must be announced before it can be used).
pub async fn h2c(port: u16) -> h2::client::SendRequest<Bytes> {
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

pub fn h2c_config(extra: &str) -> String {
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

pub fn raw_h2c(port: u16) -> TcpStream {
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
