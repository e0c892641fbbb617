//! The HTTP reverse proxy (`handler = "proxy"`): upstream keep-alive, header rewriting,
//! WebSocket and HTTP on one URI, bodiless responses, other server kinds and a `wrk` smoke run;
//! and the pool-config and request helpers the other `http_*` test modules share. Balancing and
//! health are in `http_balancing`, streaming in `http_streaming`, smuggling defences in
//! `http_smuggling`, 502/504 and retries in `http_upstream_errors`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;
use crate::http_backends::*;

pub const HOST: &str = "front.test";

// ---------------------------------------------------------------------------------------------
// Config and request helpers

/// A `servers` entry for `addr`.
pub fn srv(addr: &str) -> String {
    format!("\"{addr}\"")
}

/// Backend "api" with `servers` and `extra` keys, and one vhost "*" proxying everything to it.
pub fn pool_config(
    cores: usize,
    timeouts: &[(&str, &str)],
    servers: &[String],
    extra: &str,
) -> String {
    format!(
        r#"{}
[[backend]]
name = "api"
servers = [{}]
{extra}

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "proxy"
backend = "api"
"#,
        base_config_timeouts(cores, timeouts),
        servers.join(", ")
    )
}

pub fn start(config: String) -> Ringway {
    Ringway::builder(config).start()
}

/// One `GET path` on a fresh client connection (`Connection: close`).
pub fn get(rw: &Ringway, path: &str) -> Response {
    request(
        rw.port(),
        Req::get(path, HOST).set("Connection", "close").bytes(),
    )
}

/// Which standard backend answered.
pub fn by(r: &Response) -> String {
    r.header("x-backend").unwrap_or("<none>").to_string()
}

pub fn counts(names: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

/// A 200 answered by a standard backend, or a panic that shows the response.
pub fn ok_by(r: &Response, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {r}");
    by(r)
}

// ---------------------------------------------------------------------------------------------
// Upstream keep-alive

#[test]
fn upstream_connections_are_reused() {
    let be = HttpBackend::named("a");
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    for i in 0..20 {
        c.send(Req::get(&format!("/ka/{i}"), HOST).bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}: {r}");
    }
    for conn in 0..4 {
        let mut c = rw.conn();
        for i in 0..5 {
            c.send(Req::get(&format!("/ka/{conn}/{i}"), HOST).bytes());
            let r = c.response();
            assert_eq!(r.status, 200, "client connection {conn} request {i}: {r}");
        }
    }
    assert_eq!(be.served_count(), 40);
    assert_eq!(
        be.accepted(),
        1,
        "40 sequential requests on one core must share one backend connection"
    );
    assert!(be.served().iter().all(|r| r.conn == 0));
}

#[test]
fn idle_upstream_connections_expire_and_the_pool_is_capped() {
    // upstream_keepalive = 1s: the idle pooled connection is closed by the proxy.
    let be = HttpBackend::named("a");
    let rw = start(pool_config(
        1,
        &[("upstream_keepalive", "1s")],
        &[srv(&be.config_addr)],
        "",
    ));
    let r = get(&rw, "/one");
    assert_eq!(ok_by(&r, "first"), "a");
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || be.closed() == 1),
        "the idle upstream connection was not closed within 5 s (upstream_keepalive = 1s)"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before upstream_keepalive",
        t.elapsed()
    );
    let r = get(&rw, "/two");
    assert_eq!(ok_by(&r, "after expiry"), "a");
    assert_eq!(
        be.accepted(),
        2,
        "a new connection after the idle one expired"
    );
    drop(rw);

    // keepalive_per_server = 0: nothing is pooled, every request opens a connection.
    let be = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&be.config_addr)],
        "keepalive_per_server = 0",
    ));
    let mut c = rw.conn();
    for i in 0..5 {
        c.send(Req::get("/n", HOST).bytes());
        assert_eq!(c.response().status, 200, "request {i}");
    }
    assert_eq!(be.accepted(), 5, "keepalive_per_server = 0 must not pool");
}

#[test]
fn a_pooled_connection_the_backend_closed_is_replaced() {
    // The backend answers the first request on a connection and closes on the second one
    // without answering: each reuse meets a closed connection and must be retried on a new one.
    let be = HttpBackend::with_handler("once", |b, req, w| {
        if req.nth_on_conn > 0 {
            return Then::Close;
        }
        answer_named(b, req, w)
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    for i in 0..10 {
        c.send(Req::get(&format!("/r/{i}"), HOST).bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}: {r}");
        assert_eq!(by(&r), "once");
    }
    let dropped = be.served().iter().filter(|r| r.nth_on_conn > 0).count();
    assert_eq!(be.accepted(), 10, "one fresh connection per request");
    assert_eq!(
        dropped, 9,
        "requests 2..10 first went out on the pooled connection"
    );

    // A backend that closes right after each response (without saying so).
    let be = HttpBackend::with_handler("closer", |b, req, w| {
        answer_named(b, req, w);
        Then::Close
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    for i in 0..10 {
        c.send(Req::get(&format!("/c/{i}"), HOST).bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}: {r}");
    }
    assert_eq!(be.served_count(), 10);
    assert_eq!(be.accepted(), 10);
}

// ---------------------------------------------------------------------------------------------
// Header rewriting

#[test]
fn location_headers_pointing_at_the_backend_are_rewritten() {
    let be = HttpBackend::with_handler("loc", |_, req, w| {
        let me = req.get("x-me").unwrap_or_default().to_string();
        let r = match req.path() {
            "/redirect" => respond(
                w,
                302,
                &[("Location", &format!("http://{me}/login?next=%2F"))],
                b"moved",
            ),
            "/content" => respond(
                w,
                200,
                &[("Content-Location", &format!("http://{me}/doc/1"))],
                b"doc",
            ),
            _ => respond(
                w,
                302,
                &[("Location", "http://elsewhere.example/x")],
                b"moved",
            ),
        };
        if r.is_ok() {
            Then::KeepAlive
        } else {
            Then::Close
        }
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let front = "front.example:8080";
    let mut c = rw.conn();
    let mut ask = |path: &str| {
        c.send(Req::get(path, front).set("X-Me", &be.config_addr).bytes());
        c.response()
    };
    let r = ask("/redirect");
    assert_eq!(r.status, 302, "{r}");
    assert_eq!(
        r.header("location"),
        Some("http://front.example:8080/login?next=%2F"),
        "{r}"
    );
    let r = ask("/content");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.header("content-location"),
        Some("http://front.example:8080/doc/1"),
        "{r}"
    );
    let r = ask("/foreign");
    assert_eq!(
        r.header("location"),
        Some("http://elsewhere.example/x"),
        "a Location elsewhere is left alone: {r}"
    );
}

#[test]
fn host_override_replaces_host_for_the_backend() {
    let be = HttpBackend::named("a");
    let config = format!(
        r#"{}
[[backend]]
name = "api"
servers = ["{}"]

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "proxy"
backend = "api"
host = "internal.example"
"#,
        base_config(1),
        be.config_addr
    );
    let rw = start(config);
    let r = request(rw.port(), Req::get("/h", "public.example").bytes());
    assert_eq!(r.status, 200, "{r}");
    let seen = be.served();
    assert_eq!(
        seen[0].get_all("host"),
        ["internal.example"],
        "{}",
        seen[0].raw_head
    );
    assert_eq!(seen[0].get("x-forwarded-host"), Some("public.example"));
}

#[test]
fn forwarded_headers_added_and_hop_by_hop_headers_removed() {
    let be = HttpBackend::with_handler("hdr", |b, _, w| {
        let r = respond(
            w,
            200,
            &[
                ("X-Backend", &b.name),
                ("Connection", "keep-alive, X-Resp-Hop"),
                ("X-Resp-Hop", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("X-Resp-End", "kept"),
            ],
            b"ok",
        );
        if r.is_ok() {
            Then::KeepAlive
        } else {
            Then::Close
        }
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let req = Req::get("/h?q=1", "Front.Example:8080")
        .set("Connection", "keep-alive, X-Hop")
        .set("X-Hop", "hidden")
        .set("Keep-Alive", "timeout=5")
        .set("TE", "trailers")
        .set("Proxy-Connection", "keep-alive")
        .set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .set("Upgrade", "h2c")
        .set("X-Forwarded-For", "203.0.113.7")
        .set("X-Forwarded-Proto", "https")
        .set("X-Forwarded-Host", "spoofed.example")
        .set("Forwarded", "for=203.0.113.7")
        .set("X-Custom", "passes");
    let mut c = rw.conn();
    c.send(req.bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    let seen = &be.served()[0];
    let h = &seen.raw_head;
    assert_eq!(seen.target, "/h?q=1");
    assert_eq!(seen.get_all("host"), ["Front.Example:8080"], "{h}");
    for gone in [
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(!seen.has(gone), "{gone} must not be forwarded:\n{h}");
    }
    assert_eq!(seen.get("x-custom"), Some("passes"), "{h}");
    assert_eq!(
        seen.get_all("x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"],
        "{h}"
    );
    assert_eq!(seen.get_all("x-forwarded-proto"), ["http"], "{h}");
    assert_eq!(
        seen.get_all("x-forwarded-host"),
        ["Front.Example:8080"],
        "{h}"
    );
    assert_eq!(
        seen.get_all("forwarded"),
        ["for=203.0.113.7, for=127.0.0.1;proto=http;host=\"Front.Example:8080\""],
        "{h}"
    );
    // And towards the client: the response's hop-by-hop fields are not passed on.
    assert_eq!(r.header("x-resp-end"), Some("kept"), "{r}");
    assert!(r.header("x-resp-hop").is_none(), "{r}");
    assert!(r.header("keep-alive").is_none(), "{r}");
    // Without any from the client: just the client's address.
    c.send(Req::get("/plain", HOST).bytes());
    assert_eq!(c.response().status, 200);
    let seen = &be.served()[1];
    assert_eq!(
        seen.get_all("x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        seen.raw_head
    );
    assert_eq!(
        seen.get_all("forwarded"),
        [format!("for=127.0.0.1;proto=http;host=\"{HOST}\"")],
        "{}",
        seen.raw_head
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket and HTTP on one URI; bodiless responses; other server kinds

#[test]
fn websocket_and_http_on_the_same_uri_go_to_different_pools() {
    let ws = EchoBackend::tcp_v4();
    let http = HttpBackend::named("http");
    let config = format!(
        r#"{}
[[backend]]
name = "ws"
servers = ["{}"]

[[backend]]
name = "api"
servers = ["{}"]

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.websocket]]
uri = "/app/"
backend = "ws"

[[vhost.context]]
uri = "/app/"
handler = "proxy"
backend = "api"
"#,
        base_config(1),
        ws.config_addr,
        http.config_addr
    );
    let rw = start(config);
    let (mut sock, resp) = ws_connect(rw.port(), rw.ws_url("/app/socket"));
    assert_eq!(resp.status(), 101);
    sock.send(Message::text("ping over ws")).unwrap();
    assert_eq!(ws_next(&mut sock), Message::text("ping over ws"));
    ws_close(&mut sock);
    let r = request(rw.port(), Req::get("/app/page", HOST).bytes());
    assert_eq!(ok_by(&r, "plain GET on the same uri"), "http");
    assert_eq!(ws.targets(), ["/app/socket"]);
    let paths: Vec<String> = http.served().iter().map(|r| r.target.clone()).collect();
    assert_eq!(paths, ["/app/page"]);
}

#[test]
fn head_204_and_304_responses_keep_the_connection_usable() {
    let be = HttpBackend::with_handler("nb", |b, req, w| {
        let r = match req.path() {
            "/nocontent" => w.write_all(b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n"),
            "/notmodified" => {
                w.write_all(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nX-Kind: 304\r\n\r\n")
            }
            "/head" => {
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Kind: head\r\n\r\n")
            }
            _ => return answer_named(b, req, w),
        };
        if r.is_ok() {
            Then::KeepAlive
        } else {
            Then::Close
        }
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    let check_next = |c: &mut Conn, after: &str| {
        c.send(Req::get("/next", HOST).bytes());
        let r = c
            .try_response(WAIT, false)
            .unwrap_or_else(|e| panic!("request after {after}: {e}"));
        assert_eq!(r.status, 200, "after {after}: {r}");
        assert_eq!(r.body_text(), "nb", "after {after}: {r}");
    };
    c.send(
        Req {
            request_line: "HEAD /head HTTP/1.1".into(),
            headers: vec![("Host".into(), HOST.into())],
        }
        .bytes(),
    );
    let r = c.head_response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-length"), Some("1000"), "{r}");
    check_next(&mut c, "HEAD");
    c.send(Req::get("/nocontent", HOST).bytes());
    let r = c.response();
    assert_eq!((r.status, r.header("x-kind")), (204, Some("204")), "{r}");
    check_next(&mut c, "204");
    c.send(
        Req::get("/notmodified", HOST)
            .set("If-None-Match", "\"v1\"")
            .bytes(),
    );
    let r = c.response();
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v1\"")), "{r}");
    check_next(&mut c, "304");
    assert_eq!(
        be.accepted(),
        1,
        "the backend connection is reused across them all"
    );
}

#[test]
fn close_delimited_response_body_reaches_the_client() {
    let be = HttpBackend::with_handler("eof", |_, _, w| {
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
        Then::Close
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    c.send(Req::get("/eof", HOST).bytes());
    // Framed by the close (or re-framed by the proxy): either way the whole body arrives.
    let r = c
        .try_response(WAIT, false)
        .unwrap_or_else(|e| panic!("close-delimited body: {e}"));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "until the end", "{r}");
}

#[test]
fn empty_content_length_response_keeps_the_connection_usable() {
    let be = HttpBackend::with_handler("empty", |b, req, w| {
        if req.path() == "/empty" {
            return match respond(w, 200, &[("X-Kind", "empty")], b"") {
                Ok(()) => Then::KeepAlive,
                Err(_) => Then::Close,
            };
        }
        answer_named(b, req, w)
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    c.send(Req::get("/empty", HOST).bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-length"), Some("0"), "{r}");
    let t = Instant::now();
    c.send(Req::get("/next", HOST).bytes());
    let r = c
        .try_response(Duration::from_secs(3), false)
        .unwrap_or_else(|e| {
            panic!("the request after a `Content-Length: 0` response got no answer: {e}")
        });
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "empty");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn ipv6_and_unix_socket_servers() {
    let dir = temp_dir();
    let v6 = HttpBackend::named_v6("v6");
    let uds = HttpBackend::named_unix(dir.path(), "api.sock", "uds");
    assert!(v6.config_addr.starts_with("[::1]:"), "{}", v6.config_addr);
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&v6.config_addr), srv(&uds.config_addr)],
        "",
    ));
    let picks: Vec<String> = (0..6)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    let c = counts(&picks);
    assert_eq!(
        (c.get("v6").copied(), c.get("uds").copied()),
        (Some(3), Some(3)),
        "{picks:?}"
    );
    assert_eq!(uds.served()[0].get("x-forwarded-for"), Some("127.0.0.1"));
}

// ---------------------------------------------------------------------------------------------
// wrk smoke run

#[test]
fn wrk_smoke_run_has_no_errors() {
    if Command::new("wrk").arg("--version").output().is_err() {
        panic!(
            "`wrk` is not on PATH: this test needs it (apt-get install -y wrk; .ci/run installs it)"
        );
    }
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        2,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        "",
    ));
    let out = Command::new("timeout")
        .args(["20", "wrk", "-t2", "-c16", "-d2s"])
        .arg(format!("http://127.0.0.1:{}/wrk", rw.port()))
        .output()
        .expect("run wrk");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wrk failed ({}):\n{text}", out.status);
    assert!(
        !text.contains("Non-2xx"),
        "non-2xx responses through the proxy:\n{text}"
    );
    assert!(
        !text.contains("Socket errors"),
        "socket errors through the proxy:\n{text}"
    );
    let requests: u64 = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find(|(_, next)| *next == "requests")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    assert!(requests >= 100, "only {requests} requests in 2 s:\n{text}");
    let served = (a.served_count() + b.served_count()) as u64;
    assert!(served >= requests, "backends served {served} of {requests}");
    assert!(
        a.served_count() > 0 && b.served_count() > 0,
        "both servers must take load"
    );
}
