//! RFC 8441 WebSockets over HTTP/2 (issue 11, section 2): an RFC 8441 client built on the h2
//! crate (tokio) against real backends, headless Chromium opening `wss://` over h2, drain,
//! flow control toward a slow client, and the built-in echo endpoint.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};

use crate::backend::{After, EchoBackend, RawBackend, Reply};
use crate::h2::{h2c, h2c_config, raw_h2c, rt};
use crate::harness::*;
use crate::http_backends::{HttpBackend, Then};
use crate::pki::{tls_base, vhost, LeafOpts, Pki};

/// A masked client frame (RFC 6455 §5.3; RFC 8441 keeps the framing as it is).
fn ws_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(true, op, payload)
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
pub(crate) struct H2Ws {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buf: Vec<u8>,
}

impl H2Ws {
    pub(crate) async fn open(
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

    pub(crate) fn send(&mut self, op: u8, payload: &[u8]) {
        let f = ws_frame(op, payload);
        self.send.reserve_capacity(f.len());
        self.send
            .send_data(Bytes::from(f), false)
            .expect("send_data");
    }

    /// The next frame from the server.
    pub(crate) async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
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
         const done = () => fetch('/done/');\n\
         ws.onmessage = e => { document.getElementById('r').textContent = 'echo:' + e.data; ws.close(1000); done(); };\n\
         ws.onerror = () => { document.getElementById('r').textContent = 'error'; done(); };\n\
         fetch('/hold/').then(r => r.text());\n\
         </script></body></html>\n",
    )
    .unwrap();
    // Chromium's virtual time stands still while a fetch is pending: `/hold/` is answered only
    // once the page has its echo (it then fetches `/done/`), or after 20 s of real time. So
    // the DOM is dumped when the condition holds, however loaded the machine is, and the
    // virtual-time budget never decides the outcome.
    let page_done = Arc::new(AtomicBool::new(false));
    let flag = page_done.clone();
    let hold = HttpBackend::with_handler("hold", move |_, req, w| {
        if req.target.starts_with("/done/") {
            flag.store(true, Ordering::SeqCst);
        } else {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
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
            .context_proxy("/done/", "hold")
            .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();
    // A page that never gets its WebSocket open (seen now and then on a browser's cold start:
    // neither `onopen` nor `onerror` fires) is loaded again, at most three times; each try
    // waits on the page's own signal, up to the hold's deadline.
    let mut dom = String::new();
    for _ in 0..3 {
        let profile = temp_dir();
        dom = chromium_dump_dom(
            profile.path(),
            &format!("https://localhost:{}/ws.html", rw.port()),
            &[
                // The test CA is not in Chromium's store; the TLS is real all the same.
                "--ignore-certificate-errors",
                "--virtual-time-budget=10000",
                "--host-resolver-rules=MAP localhost 127.0.0.1",
            ],
        );
        if page_done.load(Ordering::SeqCst) {
            break;
        }
    }
    assert!(
        page_done.load(Ordering::SeqCst),
        "the page never finished: {dom}\naccess log:\n{}\nlog:\n{}",
        std::fs::read_to_string(rw.dir_path().join("access.log")).unwrap_or_default(),
        rw.log()
    );
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
