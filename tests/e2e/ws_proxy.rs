//! WebSocket proxying: upgrade forwarded to TCP v4 / v6 / Unix backends, header rewriting, the
//! backend's answer checked before tunnelling, failures (502, 504), the tunnel itself.

use std::time::{Duration, Instant};

use tungstenite::http::Uri;
use tungstenite::{ClientRequestBuilder, Message};

use crate::backend::{After, Blackhole, EchoBackend, RawBackend, Reply, Switch};
use crate::harness::*;

/// One vhost "*" with `/chat/` proxied to `server`, static for the rest, `timeouts` set.
fn ws_config(server: &str, timeouts: &[(&str, &str)]) -> String {
    ws_site(&base_config_timeouts(1, timeouts), server)
}

fn forbidden_403() -> Reply {
    Reply::Raw(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nforbidden"
            .to_vec(),
    )
}

#[test]
fn ws_echo_through_tcp_v4_backend() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(site())
        .start();
    let (mut ws, resp) = ws_connect(rw.port(), rw.ws_url("/chat/room"));
    assert_eq!(resp.status(), 101);
    echo_all_sizes(&mut ws);
    assert_eq!(echo.targets(), ["/chat/room"]);
}

#[test]
fn ws_echo_through_tcp_v6_backend() {
    let echo = EchoBackend::tcp_v6();
    assert!(
        echo.config_addr.starts_with("[::1]:"),
        "{}",
        echo.config_addr
    );
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(site())
        .start();
    let (mut ws, resp) = ws_connect(rw.port(), rw.ws_url("/chat/v6"));
    assert_eq!(resp.status(), 101);
    echo_all_sizes(&mut ws);
    assert_eq!(echo.targets(), ["/chat/v6"]);
}

#[test]
fn ws_echo_through_unix_socket_backend() {
    let dir = site();
    let echo = EchoBackend::unix(dir.path(), "chat.sock");
    assert!(
        echo.config_addr.starts_with("uds:///"),
        "{}",
        echo.config_addr
    );
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(dir)
        .start();
    let (mut ws, resp) = ws_connect(rw.port(), rw.ws_url("/chat/uds"));
    assert_eq!(resp.status(), 101);
    echo_all_sizes(&mut ws);
    assert_eq!(echo.targets(), ["/chat/uds"]);
}

#[test]
fn subprotocol_passes_both_ways() {
    let echo = EchoBackend::tcp_v4_with_subprotocol("chat.v2");
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(site())
        .start();
    let uri: Uri = rw.ws_url("/chat/proto").parse().unwrap();
    let req = ClientRequestBuilder::new(uri)
        .with_sub_protocol("chat.v1")
        .with_sub_protocol("chat.v2");
    let (mut ws, resp) = ws_connect(rw.port(), req);
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat.v2"),
        "the protocol the backend chose must reach the client"
    );
    let seen = echo.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].get("sec-websocket-protocol"),
        Some("chat.v1, chat.v2"),
        "the client's offer must reach the backend unchanged"
    );
    // No X-Forwarded-For from the client: the proxy's is just the client address.
    assert_eq!(seen[0].get("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen[0].get("x-forwarded-proto"), Some("http"));
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws_next(&mut ws), Message::text("hello"));
    ws_close(&mut ws);
}

#[test]
fn forwarded_headers_added_and_hop_by_hop_removed() {
    let backend = RawBackend::start(
        Reply::Switch(Switch {
            extra: vec![
                ("Sec-WebSocket-Protocol".into(), "chat.v1".into()),
                ("X-Backend".into(), "yes".into()),
            ],
            ..Switch::valid()
        }),
        After::Record,
    );
    let rw = Ringway::builder(ws_config(&backend.config_addr(), &[]))
        .dir(site())
        .start();
    let req = Req::upgrade("/chat/room?x=1", "app.test:8080")
        .set("Connection", "keep-alive, Upgrade, X-Hop-Secret")
        .add("X-Hop-Secret", "must-not-pass")
        .add("Keep-Alive", "timeout=5")
        .add("Proxy-Connection", "keep-alive")
        .add("TE", "trailers")
        .add("Trailer", "X-Checksum")
        .add("X-Forwarded-For", "10.0.0.1")
        // A client must not be able to spoof what the proxy sets.
        .add("X-Forwarded-Proto", "https")
        .add("X-Forwarded-Host", "spoofed.example")
        .add("X-End-To-End", "keep-me")
        .add("User-Agent", "ringway-e2e")
        .add("Sec-WebSocket-Protocol", "chat.v1")
        .add(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        );
    let mut c = rw.conn();
    c.send(req.bytes());
    let r = c.response();
    assert_eq!(r.status, 101, "{r}");
    assert_eq!(r.header("sec-websocket-accept"), Some(WS_ACCEPT), "{r}");
    assert_eq!(r.header("sec-websocket-protocol"), Some("chat.v1"), "{r}");
    assert!(
        r.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{r}"
    );

    assert!(backend.wait_heads(1, WAIT), "backend never got the head");
    let head = backend.record(0).head();
    let shown = &head.text;
    assert_eq!(head.first_line, "GET /chat/room?x=1 HTTP/1.1", "{shown}");
    for gone in [
        "x-hop-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert!(
            head.get(gone).is_none(),
            "hop-by-hop header {gone} was forwarded:\n{shown}"
        );
    }
    let upgrade = head.get_all("upgrade");
    assert!(
        upgrade.len() == 1 && upgrade[0].eq_ignore_ascii_case("websocket"),
        "want exactly `Upgrade: websocket`:\n{shown}"
    );
    let connection = head.get_all("connection");
    assert!(
        connection.len() == 1 && connection[0].eq_ignore_ascii_case("upgrade"),
        "want exactly `Connection: Upgrade`:\n{shown}"
    );
    let xff = head.get_all("x-forwarded-for");
    assert_eq!(xff.len(), 1, "one X-Forwarded-For:\n{shown}");
    let hops: Vec<&str> = xff[0].split(',').map(str::trim).collect();
    assert_eq!(hops, ["10.0.0.1", "127.0.0.1"], "appended:\n{shown}");
    assert_eq!(head.get_all("x-forwarded-proto"), ["http"], "{shown}");
    // The original Host (with or without its port), once.
    let fwd_host = head.get_all("x-forwarded-host");
    assert!(
        fwd_host == ["app.test:8080"] || fwd_host == ["app.test"],
        "X-Forwarded-Host {fwd_host:?}:\n{shown}"
    );
    assert_eq!(head.get("sec-websocket-key"), Some(WS_KEY), "{shown}");
    assert_eq!(head.get("sec-websocket-version"), Some("13"), "{shown}");
    assert_eq!(
        head.get("sec-websocket-protocol"),
        Some("chat.v1"),
        "{shown}"
    );
    assert_eq!(
        head.get("sec-websocket-extensions"),
        Some("permessage-deflate; client_max_window_bits"),
        "{shown}"
    );
    assert_eq!(head.get("x-end-to-end"), Some("keep-me"), "{shown}");
    assert_eq!(head.get("user-agent"), Some("ringway-e2e"), "{shown}");
}

#[test]
fn backend_403_relayed_then_closed_and_later_bytes_never_forwarded() {
    let backend = RawBackend::start(forbidden_403(), After::Record);
    let rw = Ringway::builder(ws_config(&backend.config_addr(), &[]))
        .dir(site())
        .start();
    let mut c = rw.conn();
    c.send(Req::upgrade("/chat/private", "app.test").bytes());
    let r = c.response();
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(r.body_text(), "forbidden", "{r}");
    c.send_lossy(b"LATE-CLIENT-BYTES\r\n\r\n");
    c.assert_closed("after the backend's 403");
    assert!(backend.wait_heads(1, WAIT));
    // Give stray bytes time to arrive (returns at once when ringway closes its side).
    backend.wait_closed(0, Duration::from_secs(1));
    let rec = backend.record(0);
    assert!(
        rec.rest.is_empty(),
        "backend received bytes after the head: {:?}",
        String::from_utf8_lossy(&rec.rest)
    );
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn backend_403_early_data_never_forwarded() {
    let backend = RawBackend::start(forbidden_403(), After::Record);
    let rw = Ringway::builder(ws_config(&backend.config_addr(), &[]))
        .dir(site())
        .start();
    let mut c = rw.conn();
    let mut bytes = Req::upgrade("/chat/private", "app.test").bytes();
    bytes.extend_from_slice(b"EARLY-CLIENT-BYTES");
    c.send(bytes);
    let r = c.response();
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(r.body_text(), "forbidden", "{r}");
    c.assert_closed("after the backend's 403");
    assert!(backend.wait_heads(1, WAIT));
    backend.wait_closed(0, Duration::from_secs(1));
    let rec = backend.record(0);
    assert!(
        rec.rest.is_empty(),
        "bytes sent after the head reached the backend although it refused: {:?}",
        String::from_utf8_lossy(&rec.rest)
    );
}

#[test]
fn backend_101_with_wrong_accept_gives_502() {
    let backend = RawBackend::start(
        Reply::Switch(Switch {
            correct_accept: false,
            ..Switch::valid()
        }),
        After::SendThenRecord(b"LEAKED-FROM-BACKEND".to_vec()),
    );
    let rw = Ringway::builder(ws_config(&backend.config_addr(), &[]))
        .dir(site())
        .start();
    let mut c = rw.conn();
    c.send(Req::upgrade("/chat/x", "app.test").bytes());
    let r = c.response();
    assert_eq!(r.status, 502, "{r}");
    assert!(!r.body_text().contains("LEAKED"), "{r}");
    c.send_lossy(b"LATE-CLIENT-BYTES\r\n\r\n");
    c.assert_closed("after a 502 for a bad 101");
    assert!(backend.wait_heads(1, WAIT));
    backend.wait_closed(0, Duration::from_secs(1));
    let rec = backend.record(0);
    assert!(
        rec.rest.is_empty(),
        "backend received bytes after a rejected 101: {:?}",
        String::from_utf8_lossy(&rec.rest)
    );
}

#[test]
fn backend_101_without_websocket_upgrade_or_connection_gives_502() {
    let no_upgrade = RawBackend::start(
        Reply::Switch(Switch {
            upgrade: None,
            ..Switch::valid()
        }),
        After::Record,
    );
    let h2c_upgrade = RawBackend::start(
        Reply::Switch(Switch {
            upgrade: Some("h2c".into()),
            ..Switch::valid()
        }),
        After::Record,
    );
    let no_connection = RawBackend::start(
        Reply::Switch(Switch {
            connection: None,
            ..Switch::valid()
        }),
        After::Record,
    );
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.websocket]]
uri = "/a/"
address = "{}"

[[vhost.websocket]]
uri = "/b/"
address = "{}"

[[vhost.websocket]]
uri = "/c/"
address = "{}"
"#,
        base_config(1),
        no_upgrade.config_addr(),
        h2c_upgrade.config_addr(),
        no_connection.config_addr()
    );
    let rw = Ringway::builder(config).dir(site()).start();
    for (path, backend) in [
        ("/a/x", &no_upgrade),
        ("/b/x", &h2c_upgrade),
        ("/c/x", &no_connection),
    ] {
        let mut c = rw.conn();
        c.send(Req::upgrade(path, "app.test").bytes());
        let r = c.response();
        assert_eq!(r.status, 502, "{path}: {r}");
        c.send_lossy(b"LATE-CLIENT-BYTES\r\n\r\n");
        c.assert_closed(path);
        assert!(backend.wait_heads(1, WAIT), "{path}: backend not asked");
        backend.wait_closed(0, Duration::from_millis(500));
        let rec = backend.record(0);
        assert!(rec.rest.is_empty(), "{path}: {:?}", rec.rest);
    }
}

#[test]
fn backend_down_gives_502() {
    let dead_port = free_port(); // bound and released: nothing listens there
    let config = format!(
        r#"{}
[[backend]]
name = "down"
servers = ["127.0.0.1:{dead_port}"]

[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.websocket]]
uri = "/tcp/"
backend = "down"

[[vhost.websocket]]
uri = "/uds/"
address = "uds://@DIR@/nobody-listens.sock"
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(site()).start();
    for path in ["/tcp/x", "/uds/x"] {
        let r = request(rw.port(), Req::upgrade(path, "app.test").bytes());
        assert_eq!(r.status, 502, "{path}: {r}");
        assert!(r.body.len() < 4096, "{path}: short body expected, {r}");
    }
}

#[test]
fn backend_connect_timeout_gives_504() {
    let hole = Blackhole::start();
    let config = ws_config(&hole.addr.to_string(), &[("connect", "500ms")]);
    let rw = Ringway::builder(config).dir(site()).start();
    let started = Instant::now();
    let r = request(rw.port(), Req::upgrade("/chat/x", "app.test").bytes());
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "504 after {took:?}, expected about timeouts.connect = 500ms"
    );
}

#[test]
fn early_data_after_upgrade_request_is_not_lost() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(site())
        .start();
    let mut c = rw.conn();
    let mut bytes = Req::upgrade("/chat/early", "app.test").bytes();
    bytes.extend(masked_frame(0x1, b"early bird"));
    c.send(bytes); // one write: head + first frame
    let head = c.try_head(WAIT).unwrap();
    assert_eq!(parse_status(&head.first_line), Some(101), "{}", head.text);
    assert_eq!(head.get("sec-websocket-accept"), Some(WS_ACCEPT));
    let want = server_frame(0x1, b"early bird");
    assert_eq!(c.read_exact(want.len()), want, "the early frame's echo");
    // The tunnel keeps working after that.
    c.send(masked_frame(0x2, b"\x00\x01\x02"));
    let want = server_frame(0x2, b"\x00\x01\x02");
    assert_eq!(c.read_exact(want.len()), want);
}

#[test]
fn half_close_is_propagated_both_ways() {
    let backend = RawBackend::start(
        Reply::Switch(Switch::valid()),
        After::ByeAfterEof(b"bye-from-backend".to_vec()),
    );
    let rw = Ringway::builder(ws_config(&backend.config_addr(), &[]))
        .dir(site())
        .start();
    let mut c = rw.conn();
    c.send(Req::upgrade("/chat/half", "app.test").bytes());
    let r = c.response();
    assert_eq!(r.status, 101, "{r}");
    c.send(b"client-data-then-shutdown");
    c.shutdown_write();
    // The backend answers only after it saw EOF; then it closes.
    let rest = c
        .read_until_closed(WAIT)
        .unwrap_or_else(|e| panic!("backend's reply after the client's FIN: {e}"));
    assert_eq!(String::from_utf8_lossy(&rest), "bye-from-backend");
    assert!(backend.wait_closed(0, WAIT));
    assert_eq!(
        String::from_utf8_lossy(&backend.record(0).rest),
        "client-data-then-shutdown"
    );
}

#[test]
fn idle_tunnel_closed_after_tunnel_idle() {
    let echo = EchoBackend::tcp_v4();
    let config = ws_config(&echo.config_addr, &[("tunnel_idle", "1s")]);
    let rw = Ringway::builder(config).dir(site()).start();
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/idle"));
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws_next(&mut ws), Message::text("still here"));
    let idle_since = Instant::now();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(6)))
        .unwrap();
    let outcome = loop {
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            other => break other,
        }
    };
    let idle = idle_since.elapsed();
    match outcome {
        Ok(Message::Close(_)) => {}
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("idle tunnel still open after {idle:?} (tunnel_idle = 1s)")
        }
        Err(_) => {} // EOF / reset: closed
        Ok(m) => panic!("unexpected message on an idle tunnel: {m:?}"),
    }
    assert!(
        idle >= Duration::from_millis(800),
        "tunnel closed after {idle:?}, before tunnel_idle = 1s"
    );
    assert!(idle < Duration::from_secs(5), "closed only after {idle:?}");
}

#[test]
fn websocket_version_8_gives_426() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(site())
        .start();
    let r = request(
        rw.port(),
        Req::upgrade("/chat/x", "app.test")
            .set("Sec-WebSocket-Version", "8")
            .bytes(),
    );
    assert_eq!(r.status, 426, "{r}");
    assert_eq!(r.header("sec-websocket-version"), Some("13"), "{r}");
    assert!(
        echo.requests().is_empty(),
        "an invalid upgrade reached the backend"
    );
}

#[test]
fn bad_websocket_key_gives_400() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ws_config(&echo.config_addr, &[]))
        .dir(site())
        .start();
    for key in [
        "abc",
        "AAAAAAAAAAAAAAAAAAAA",         // base64 of 15 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", // base64 of 20 bytes
        "!!!!not*base64*at*all!!!",     // 24 chars, not base64
    ] {
        let r = request(
            rw.port(),
            Req::upgrade("/chat/x", "app.test")
                .set("Sec-WebSocket-Key", key)
                .bytes(),
        );
        assert_eq!(r.status, 400, "key {key:?}: {r}");
    }
    let r = request(
        rw.port(),
        Req::upgrade("/chat/x", "app.test")
            .remove("Sec-WebSocket-Key")
            .bytes(),
    );
    assert_eq!(r.status, 400, "no key: {r}");
    assert!(
        echo.requests().is_empty(),
        "an invalid upgrade reached the backend"
    );
}

#[test]
fn h2c_upgrade_is_not_tunnelled() {
    let backend = RawBackend::start(Reply::Switch(Switch::valid()), After::Record);
    let dir = site();
    write_file(dir.path(), "www/chat/page.txt", "page under chat\n");
    let rw = Ringway::builder(ws_config(&backend.config_addr(), &[]))
        .dir(dir)
        .start();
    let r = request(
        rw.port(),
        Req::get("/chat/page.txt", "app.test")
            .set("Connection", "Upgrade, HTTP2-Settings")
            .set("Upgrade", "h2c")
            .set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
            .bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "page under chat\n");
    assert_eq!(backend.accepted(), 0, "an h2c upgrade reached the backend");
}

#[test]
fn backend_close_reaches_every_client_under_churn() {
    // Regression test: an edge-triggered (multishot) readiness poll once lost the backend's FIN
    // when it came right behind the Close frame, about once per thousand cycles at 32
    // concurrent loops; the client then waited for a TCP close that never came. 16 loops × 300
    // cycles: each must see the echo, the Close, and then the connection end.
    close_churn(&[]);
}

#[test]
fn backend_close_reaches_every_client_under_churn_with_one_shot_polls() {
    // The same on the fallback for kernels without multishot polls (before 5.13): one-shot
    // readiness polls re-armed after each completion, forced by RINGWAY_NO_MULTISHOT_POLL.
    close_churn(&[("RINGWAY_NO_MULTISHOT_POLL", "1")]);
}

#[test]
fn backend_close_reaches_every_client_under_churn_without_deferred_task_work() {
    // The same on the fallback for kernels without IORING_SETUP_DEFER_TASKRUN (before 6.1):
    // completions' task work runs on the way back from any system call (COOP_TASKRUN),
    // forced by RINGWAY_NO_DEFER_TASKRUN.
    close_churn(&[("RINGWAY_NO_DEFER_TASKRUN", "1")]);
}

#[test]
fn echoes_arrive_on_every_connection_of_a_burst() {
    // 600 tunnels whose echoes come back at about the same time: up to 600 readiness
    // completions at once, more than the main ring's completion queue holds (256). In deferred
    // task-work mode they are posted in the executor's own io_uring_enter, and what does not
    // fit waits in the kernel's overflow list for the next one; every echo must still arrive.
    let (_echo, rw) = echo_proxy(&[]);
    let url = rw.ws_url("/chat/burst");
    let mut conns: Vec<_> = (0..600)
        .map(|_| ws_connect(rw.port(), url.as_str()).0)
        .collect();
    for (i, ws) in conns.iter_mut().enumerate() {
        ws.send(Message::text(format!("m{i}"))).expect("send");
    }
    for (i, ws) in conns.iter_mut().enumerate() {
        assert_eq!(
            ws_next(ws),
            Message::text(format!("m{i}")),
            "connection {i}"
        );
    }
}

#[test]
fn idle_after_load_does_not_spin() {
    // Regression test: with a main ring in IORING_SETUP_DEFER_TASKRUN mode, re-arming glommio's
    // preemption timers on every reactor pass (cancelling the previous ones) once kept a
    // cancellation completion pending forever, so the executor never slept: 100% of a CPU
    // with no traffic at all. After some load and with connections held open, an idle Ringway
    // must use next to no CPU (a spin shows as about 2 s of CPU here).
    idle_cpu(&[]);
}

#[test]
fn idle_after_load_does_not_spin_without_deferred_task_work() {
    idle_cpu(&[("RINGWAY_NO_DEFER_TASKRUN", "1")]);
}

fn idle_cpu(env: &[(&str, &str)]) {
    let (_echo, rw) = echo_proxy(env);
    let url = rw.ws_url("/chat/idle");
    let mut held = Vec::new();
    for i in 0..40 {
        let (mut ws, _) = ws_connect(rw.port(), url.as_str());
        ws.send(Message::text("x")).expect("send");
        assert_eq!(ws_next(&mut ws), Message::text("x"), "echo {i}");
        if i % 5 == 0 {
            held.push(ws);
        } else {
            ws_close(&mut ws);
        }
    }
    // Past the closes and the first periodic sweeps, then 2 s of nothing.
    std::thread::sleep(Duration::from_millis(600));
    let before = rw.cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let used = rw.cpu_time() - before;
    assert!(
        used < Duration::from_millis(400),
        "idle Ringway used {used:?} of CPU in 2 s"
    );
    // The held connections still work.
    for ws in &mut held {
        ws.send(Message::text("y")).expect("send");
        assert_eq!(ws_next(ws), Message::text("y"));
    }
}

/// An echo backend and Ringway (started with `env`) proxying `/chat/` to it.
fn echo_proxy(env: &[(&str, &str)]) -> (EchoBackend, Ringway) {
    let echo = EchoBackend::tcp_v4();
    let rw = env
        .iter()
        .fold(
            Ringway::builder(ws_config(&echo.config_addr, &[])).dir(site()),
            |b, (k, v)| b.env(k, v),
        )
        .start();
    (echo, rw)
}

/// Ringway (with `env`) in front of an echo backend; 16 loops × 300 connect, echo, close.
fn close_churn(env: &[(&str, &str)]) {
    use std::io::Read;
    let (_echo, rw) = echo_proxy(env);
    let loops: Vec<_> = (0..16)
        .map(|t| {
            let port = rw.port();
            let url = rw.ws_url(&format!("/chat/churn{t}"));
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0..300 {
                    let (mut ws, _) = ws_connect(port, url.as_str());
                    ws.send(Message::text("x")).map_err(|e| e.to_string())?;
                    if ws_next(&mut ws) != Message::text("x") {
                        return Err(format!("loop {t} cycle {i}: wrong echo"));
                    }
                    ws_close(&mut ws);
                    let s = ws.get_mut();
                    s.set_read_timeout(Some(Duration::from_secs(3)))
                        .map_err(|e| e.to_string())?;
                    let mut b = [0u8; 16];
                    match s.read(&mut b) {
                        Ok(0) => {}
                        Ok(n) => return Err(format!("loop {t} cycle {i}: {n} stray bytes")),
                        Err(e) => {
                            return Err(format!("loop {t} cycle {i}: no TCP close in 3 s: {e}"))
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = loops
        .into_iter()
        .filter_map(|h| h.join().expect("loop panicked").err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
