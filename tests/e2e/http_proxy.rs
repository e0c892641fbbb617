//! The HTTP reverse proxy (`handler = "proxy"`) and backend pools: balancing (weighted round
//! robin, least_conn, ip_hash), failover, active and passive health, streaming both ways
//! (SSE, chunked and Content-Length uploads, 100-continue), upstream keep-alive, header
//! rewriting, smuggling defences on both sides, 502/503/504, WebSocket and HTTP on one URI,
//! bodiless responses, and a `wrk` smoke run.

use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::backend::{After, Blackhole, EchoBackend, RawBackend, Reply};
use crate::harness::*;
use crate::http_backends::*;

const HOST: &str = "front.test";

// ---------------------------------------------------------------------------------------------
// Config and request helpers

/// A `servers` entry for `addr`.
fn srv(addr: &str) -> String {
    format!("\"{addr}\"")
}

/// A weighted `servers` entry.
fn weighted(addr: &str, weight: u32) -> String {
    format!("{{ address = \"{addr}\", weight = {weight} }}")
}

/// Backend "api" with `servers` and `extra` keys, and one vhost "*" proxying everything to it.
fn pool_config(cores: usize, timeouts: &[(&str, &str)], servers: &[String], extra: &str) -> String {
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

fn start(config: String) -> Ringway {
    Ringway::builder(config).start()
}

/// One `GET path` on a fresh client connection (`Connection: close`).
fn get(rw: &Ringway, path: &str) -> Response {
    request(
        rw.port(),
        Req::get(path, HOST).set("Connection", "close").bytes(),
    )
}

/// Which standard backend answered.
fn by(r: &Response) -> String {
    r.header("x-backend").unwrap_or("<none>").to_string()
}

fn counts(names: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

/// A 200 answered by a standard backend, or a panic that shows the response.
fn ok_by(r: &Response, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {r}");
    by(r)
}

// ---------------------------------------------------------------------------------------------
// Balancing

#[test]
fn weighted_round_robin_exact_distribution() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[weighted(&a.config_addr, 1), weighted(&b.config_addr, 3)],
        "",
    ));
    let picks: Vec<String> = (0..40)
        .map(|i| ok_by(&get(&rw, "/rr"), &format!("request {i}")))
        .collect();
    let c = counts(&picks);
    assert_eq!(
        (c.get("a").copied(), c.get("b").copied()),
        (Some(10), Some(30)),
        "weights 1:3 over 40 requests; picks {picks:?}"
    );
    // Smooth: each aligned group of 4 picks holds exactly one "a".
    for (i, window) in picks.chunks(4).enumerate() {
        let n = window.iter().filter(|p| *p == "a").count();
        assert_eq!(
            n,
            1,
            "picks {} to {}: {window:?} (all: {picks:?})",
            i * 4,
            i * 4 + 3
        );
    }
    assert_eq!(a.served_count(), 10);
    assert_eq!(b.served_count(), 30);
}

#[test]
fn least_conn_prefers_the_idle_server() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        "balance = \"least_conn\"",
    ));
    // Hold one request open on whichever server gets it.
    let mut slow = rw.conn();
    slow.send(Req::get("/slow", HOST).bytes());
    let has_slow = |x: &HttpBackend| x.served().iter().any(|r| r.path() == "/slow");
    assert!(
        wait_until(WAIT, || has_slow(&a) || has_slow(&b)),
        "the /slow request reached no backend"
    );
    let (busy, idle) = if has_slow(&a) { (&a, &b) } else { (&b, &a) };
    for i in 0..10 {
        let who = ok_by(&get(&rw, "/fast"), &format!("request {i}"));
        assert_eq!(
            who,
            idle.name(),
            "request {i} went to {who}, which has a request in flight"
        );
    }
    assert_eq!(
        busy.served_count(),
        1,
        "only the slow request on the busy server"
    );
    busy.release();
    let r = slow.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(by(&r), busy.name());
    // Both idle again: ties are spread, both servers get requests.
    let picks: Vec<String> = (0..10)
        .map(|i| ok_by(&get(&rw, "/fast"), &format!("tie request {i}")))
        .collect();
    let c = counts(&picks);
    assert!(
        c.len() == 2,
        "ties must spread over both servers: {picks:?}"
    );
}

#[test]
fn ip_hash_is_sticky_and_rehashes_when_the_server_dies() {
    let servers = [
        HttpBackend::named("a"),
        HttpBackend::named("b"),
        HttpBackend::named("c"),
    ];
    let addrs: Vec<String> = servers.iter().map(|s| srv(&s.config_addr)).collect();
    let rw = start(pool_config(2, &[], &addrs, "balance = \"ip_hash\""));
    let picks: Vec<String> = (0..30)
        .map(|i| ok_by(&get(&rw, "/sticky"), &format!("request {i}")))
        .collect();
    let c = counts(&picks);
    assert_eq!(c.len(), 1, "one client IP must stick to one server: {c:?}");
    let first = picks[0].clone();
    let dead = servers.iter().find(|s| s.name() == first).unwrap();
    dead.stop();
    let picks: Vec<String> = (0..30)
        .map(|i| {
            ok_by(
                &get(&rw, "/sticky"),
                &format!("request {i} after {first} died"),
            )
        })
        .collect();
    let c = counts(&picks);
    assert_eq!(
        c.len(),
        1,
        "after {first} died the client must stick to one other server: {c:?}"
    );
    assert_ne!(
        picks[0], first,
        "requests still answered by the dead server?"
    );
    assert_eq!(dead.served_count(), 30);
}

#[test]
fn failover_when_a_server_is_killed_mid_run() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        2,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        "",
    ));
    let mut bad = Vec::new();
    let mut after_kill = Vec::new();
    // Half the requests on fresh connections, half on one keep-alive connection.
    let mut keep = rw.conn();
    for i in 0..200 {
        if i == 50 {
            a.stop();
        }
        let r = if i % 2 == 0 {
            get(&rw, "/loop")
        } else {
            keep.send(Req::get("/loop", HOST).bytes());
            keep.response()
        };
        if r.status / 100 != 2 {
            bad.push(format!("request {i}: {}", r.head.first_line));
        }
        if i >= 50 {
            after_kill.push(by(&r));
        }
        thread::sleep(Duration::from_millis(8));
    }
    assert!(bad.is_empty(), "non-2xx responses during failover: {bad:?}");
    assert!(a.served_count() > 0, "a got nothing before it was killed");
    let c = counts(&after_kill);
    assert_eq!(
        c.get("b").copied(),
        Some(150),
        "after the kill every request must be answered by b: {c:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Health

const HEALTH: &str = r#"health = { interval = "100ms", timeout = "500ms", rise = 2, fall = 2, http_path = "/healthz" }"#;

/// Waits until `b` answered `n` more probes with `healthy` after `from` probes.
fn wait_probes(b: &HttpBackend, from: usize, healthy: bool, n: usize) {
    let ok = wait_until(WAIT, || {
        b.probes()
            .iter()
            .skip(from)
            .filter(|p| **p == healthy)
            .count()
            >= n
    });
    assert!(
        ok,
        "backend {}: {n} probes answered {} never came (probes: {:?})",
        b.name(),
        if healthy { "200" } else { "500" },
        b.probes()
    );
}

#[test]
fn active_health_check_takes_a_server_out_and_back_in() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        HEALTH,
    ));
    wait_probes(&a, 0, true, 1);
    let probe = a
        .requests()
        .into_iter()
        .find(|r| r.path() == "/healthz")
        .unwrap();
    assert_eq!(probe.method, "GET", "health probe: {}", probe.raw_head);

    let picks: Vec<String> = (0..10)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    assert_eq!(
        counts(&picks).len(),
        2,
        "both servers up at first: {picks:?}"
    );

    // a turns unhealthy: after `fall` failed probes (and one more interval) it gets nothing.
    a.set_healthy(false);
    let from = a.probes().len();
    wait_probes(&a, from, false, 3);
    let before = a.served_count();
    let picks: Vec<String> = (0..20)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    assert_eq!(
        counts(&picks).get("b").copied(),
        Some(20),
        "a failed its health checks but still got requests: {picks:?}"
    );
    assert_eq!(a.served_count(), before);

    // Healthy again: after `rise` good probes it takes requests again.
    a.set_healthy(true);
    let from = a.probes().len();
    wait_probes(&a, from, true, 3);
    let picks: Vec<String> = (0..20)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    let got_a = counts(&picks).get("a").copied().unwrap_or(0);
    assert!(
        got_a >= 5,
        "a is healthy again but got {got_a} of 20: {picks:?}"
    );
}

#[test]
fn all_servers_failing_health_checks_gives_503() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    a.set_healthy(false);
    b.set_healthy(false);
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        HEALTH,
    ));
    wait_probes(&a, 0, false, 3);
    wait_probes(&b, 0, false, 3);
    let r = get(&rw, "/");
    assert_eq!(r.status, 503, "all servers down by health checks: {r}");
    assert_eq!(a.served_count() + b.served_count(), 0);
    // One comes back: requests go to it.
    b.set_healthy(true);
    let from = b.probes().len();
    wait_probes(&b, from, true, 3);
    let r = get(&rw, "/");
    assert_eq!(ok_by(&r, "after b recovered"), "b");
}

#[test]
fn all_servers_refused_gives_502_then_503_once_max_fails_is_reached() {
    // Ports nobody listens on: every connect is refused.
    let (p1, p2) = (free_port(), free_port());
    let rw = start(pool_config(
        1,
        &[],
        &[
            srv(&format!("127.0.0.1:{p1}")),
            srv(&format!("127.0.0.1:{p2}")),
        ],
        "max_fails = 1\nfail_timeout = \"30s\"",
    ));
    let r = get(&rw, "/");
    assert_eq!(r.status, 502, "every connect refused: {r}");
    let r = get(&rw, "/");
    assert_eq!(
        r.status, 503,
        "both servers taken out by max_fails = 1: {r}"
    );
    let log = rw.log();
    assert!(log.contains("taken out"), "log:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[test]
fn sse_events_reach_the_client_as_the_backend_writes_them() {
    let sse = HttpBackend::with_handler("sse", |_, _, w| {
        let mut out = head(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("Transfer-Encoding", "chunked"),
            ],
        );
        out.extend_from_slice(b"\r\n");
        let event = |data: &str| {
            let e = format!("data: {data}\n\n");
            format!("{:x}\r\n{e}\r\n", e.len())
        };
        out.extend_from_slice(event("one").as_bytes());
        let _ = w.write_all(&out);
        let _ = w.flush();
        thread::sleep(Duration::from_secs(1));
        let _ = w.write_all(format!("{}0\r\n\r\n", event("two")).as_bytes());
        Then::KeepAlive
    });
    let rw = start(pool_config(1, &[], &[srv(&sse.config_addr)], ""));
    let mut c = rw.conn();
    let sent = Instant::now();
    c.send(Req::get("/events", HOST).bytes());
    let h = c.try_head(WAIT).unwrap();
    assert_eq!(parse_status(&h.first_line), Some(200), "{}", h.text);
    assert_eq!(h.get("content-type"), Some("text/event-stream"));
    let first = b"b\r\ndata: one\n\n\r\n";
    let got = c.read_exact(first.len());
    let elapsed = sent.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(first)
    );
    assert!(
        elapsed < Duration::from_millis(600),
        "event 1 took {elapsed:?}: it was held until the backend's next write"
    );
    let rest = b"b\r\ndata: two\n\n\r\n0\r\n\r\n";
    let got = c.read_exact(rest.len());
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(rest));
    assert!(sent.elapsed() >= Duration::from_millis(900));
    // The connection goes on.
    c.send(Req::get("/again", HOST).bytes());
    let r = c.try_response(WAIT, false).unwrap();
    assert_eq!(r.status, 200, "{r}");
}

/// A body of `n` bytes that is not all one byte.
fn payload(n: usize) -> Vec<u8> {
    binary_payload(n)
}

#[test]
fn chunked_upload_is_forwarded_intact() {
    let be = HttpBackend::with_handler("digest", digest);
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let body = payload(300_000);
    let mut wire = Vec::new();
    let sizes = [1usize, 7, 4096, 65536, 100_000];
    let mut at = 0;
    for (i, n) in sizes.iter().chain(std::iter::once(&usize::MAX)).enumerate() {
        let n = (*n).min(body.len() - at);
        if n == 0 {
            break;
        }
        let ext = if i == 1 { ";name=value" } else { "" };
        wire.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
        wire.extend_from_slice(&body[at..at + n]);
        wire.extend_from_slice(b"\r\n");
        at += n;
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut c = rw.conn();
    c.send(
        Req {
            request_line: "POST /upload HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), HOST.into()),
                ("Transfer-Encoding".into(), "chunked".into()),
            ],
        }
        .bytes(),
    );
    // The body in pieces, as a streaming client sends it.
    for piece in wire.chunks(50_000) {
        c.send(piece);
        thread::sleep(Duration::from_millis(5));
    }
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), digest_line(&body));
    assert_eq!(r.header("x-framing"), Some("chunked"));
    let seen = be.served();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].has("content-length"), "{}", seen[0].raw_head);
    // The connection goes on after the body.
    c.send(Req::get("/next", HOST).bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), digest_line(b""));
}

#[test]
fn content_length_upload_and_large_download() {
    let be = HttpBackend::with_handler("digest", |b, req, w| {
        if req.path() == "/big" {
            let body = payload(1 << 20);
            return match respond(w, 200, &[], &body) {
                Ok(()) => Then::KeepAlive,
                Err(_) => Then::Close,
            };
        }
        digest(b, req, w)
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let body = payload((1 << 20) + 1);
    let mut c = rw.conn();
    c.send(
        Req {
            request_line: "PUT /upload HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), HOST.into()),
                ("Content-Length".into(), body.len().to_string()),
            ],
        }
        .bytes(),
    );
    c.send(&body);
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), digest_line(&body));
    assert_eq!(r.header("x-framing"), Some("length"));
    let seen = be.served();
    assert_eq!(seen[0].get("content-length"), Some("1048577"));
    // Same connection: a 1 MiB download, byte for byte.
    c.send(Req::get("/big", HOST).bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(r.body == payload(1 << 20), "download differs");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let be = HttpBackend::with_handler("digest", digest);
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let body = b"hello world".to_vec();
    let mut c = rw.conn();
    c.send(
        Req {
            request_line: "POST /form HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), HOST.into()),
                ("Content-Length".into(), body.len().to_string()),
                ("Expect".into(), "100-continue".into()),
            ],
        }
        .bytes(),
    );
    let interim = c
        .try_head(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("no interim response before the body was sent: {e}"));
    assert_eq!(
        interim.first_line, "HTTP/1.1 100 Continue",
        "{}",
        interim.text
    );
    c.send(&body);
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), digest_line(&body));
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
// Smuggling defences

#[test]
fn client_request_framing_faults_get_400_and_close() {
    let be = HttpBackend::named("a");
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let cases: &[(&str, &[u8])] = &[
        (
            "Content-Length with Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding with Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Length fields",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "two different Content-Length values in one field",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
        ("Content-Length not a number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"),
        ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
        ("Content-Length with a sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
        ("Content-Length with junk", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello"),
        ("hex Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n  two\r\n\r\n"),
        ("obs-fold with a tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n"),
        ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: o\0ne\r\n\r\n"),
        ("bare CR in a header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: o\rne\r\n\r\n"),
        ("bare CR as a line end", b"GET / HTTP/1.1\r\nHost: a\rX-A: one\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for (what, raw) in cases {
        let mut c = rw.conn();
        c.send_lossy(raw);
        match c.try_response(WAIT, false) {
            Ok(r) if r.status == 400 => {
                if let Err(e) = c.read_until_closed(WAIT) {
                    failures.push(format!("{what}: 400 but the connection stayed open: {e}"));
                }
            }
            Ok(r) => failures.push(format!("{what}: got {} instead of 400", r.head.first_line)),
            Err(e) => failures.push(format!("{what}: no response: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        be.served_count(),
        0,
        "a malformed request reached the backend: {:?}",
        be.served().iter().map(|r| &r.raw_head).collect::<Vec<_>>()
    );
}

#[test]
fn client_bad_chunk_sizes_get_400_and_close() {
    let be = HttpBackend::with_handler("digest", digest);
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let bodies: &[(&str, &[u8])] = &[
        ("non-hex chunk size", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("negative chunk size", b"-5\r\nhello\r\n0\r\n\r\n"),
        ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
        (
            "overflowing chunk size",
            b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("empty chunk size", b"\r\nhello\r\n0\r\n\r\n"),
        ("chunk longer than its size", b"3\r\nhello\r\n0\r\n\r\n"),
        (
            "bad size after a good chunk",
            b"5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    let mut failures = Vec::new();
    for (what, body) in bodies {
        let mut c = rw.conn();
        let mut raw =
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        c.send_lossy(&raw);
        match c.try_response(WAIT, false) {
            Ok(r) if r.status == 400 => {
                if let Err(e) = c.read_until_closed(WAIT) {
                    failures.push(format!("{what}: 400 but the connection stayed open: {e}"));
                }
            }
            Ok(r) => failures.push(format!(
                "{what}: got {:?} instead of 400 (body {:?})",
                r.head.first_line,
                r.body_text()
            )),
            Err(e) => failures.push(format!("{what}: no response: {e}")),
        }
    }
    // A client's bad body says nothing about the backend: the server must still take requests.
    let r = get(&rw, "/after");
    if r.status != 200 {
        failures.push(format!(
            "a valid GET after the bad bodies got {:?}: the client's faults were held against the server",
            r.head.first_line
        ));
    }
    // Whatever the proxy forwarded, the backend must never have accepted a complete request.
    let answered: Vec<String> = be
        .served()
        .iter()
        .filter(|r| r.path() != "/after")
        .map(|r| r.raw_head.clone())
        .collect();
    assert!(
        failures.is_empty(),
        "{failures:#?}\nbackend answered: {answered:?}\nlog:\n{}",
        rw.log()
    );
    assert!(
        answered.is_empty(),
        "the backend got a complete request: {answered:?}"
    );
}

/// A raw backend per faulty response, one ringway with a context for each.
#[test]
fn backend_response_framing_faults_give_502() {
    let cases: &[(&str, &[u8])] = &[
        (
            "clte",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "twocl",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "fold",
            b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "badcl",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
        ),
    ];
    let backends: Vec<RawBackend> = cases
        .iter()
        .map(|(_, raw)| RawBackend::start(Reply::Raw(raw.to_vec()), After::Record))
        .collect();
    let mut config = base_config(1);
    for ((name, _), b) in cases.iter().zip(&backends) {
        config.push_str(&format!(
            "\n[[backend]]\nname = \"{name}\"\nservers = [\"{}\"]\n",
            b.config_addr()
        ));
    }
    config.push_str("\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n");
    for (name, _) in cases {
        config.push_str(&format!(
            "\n[[vhost.context]]\nuri = \"/{name}/\"\nhandler = \"proxy\"\nbackend = \"{name}\"\n"
        ));
    }
    let rw = start(config);
    let mut failures = Vec::new();
    for (name, _) in cases {
        let mut c = rw.conn();
        c.send(Req::get(&format!("/{name}/x"), HOST).bytes());
        match c.try_response(WAIT, false) {
            Ok(r) if r.status == 502 => {}
            Ok(r) => failures.push(format!("{name}: got {} instead of 502: {r}", r.status)),
            Err(e) => failures.push(format!("{name}: no response: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn backend_bad_chunk_size_with_the_head_gives_502() {
    // The whole response arrives in one write: the bad chunk size is seen before anything
    // reached the client, which gets a 502 (a malformed backend response) and no body bytes.
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nsmuggled\r\n0\r\n\r\n";
    let be = RawBackend::start(Reply::Raw(raw.to_vec()), After::Record);
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr())], ""));
    let mut c = rw.conn();
    c.send(Req::get("/chunks", HOST).bytes());
    let r = c.try_response(WAIT, false).unwrap();
    assert_eq!(r.status, 502, "{r}");
    assert!(
        !r.to_string().contains("smuggled"),
        "bad bytes passed on: {r}"
    );
}

#[test]
fn backend_bad_chunk_size_mid_body_cuts_the_client_connection() {
    // The head and a good chunk go out first; the bad chunk size comes later, after the
    // response started: the client connection is cut, and the body must not look complete.
    let be = HttpBackend::with_handler("badchunk", |_, _, w| {
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        let _ = w.flush();
        thread::sleep(Duration::from_millis(300));
        let _ = w.write_all(b"zz\r\nsmuggled\r\n0\r\n\r\n");
        Then::KeepAlive
    });
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let mut c = rw.conn();
    c.send(Req::get("/chunks", HOST).bytes());
    let h = c.try_head(WAIT).unwrap();
    assert_eq!(parse_status(&h.first_line), Some(200), "{}", h.text);
    let rest = c
        .read_until_closed(WAIT)
        .unwrap_or_else(|e| panic!("the client connection must be cut: {e}"));
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("hello"),
        "the good chunk was not passed on: {text:?}"
    );
    assert!(
        !text.contains("zz") && !text.contains("smuggled"),
        "bad bytes passed on: {text:?}"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut body must not look complete: {text:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 502 / 504 / no retry after a body

/// Reads the request, then closes without a byte of response.
fn hang_up(_: &Backend, _: &HttpRequest, _: &mut dyn Wire) -> Then {
    Then::Close
}

#[test]
fn backend_closing_without_an_answer_gives_502() {
    // One server (retries left at the default 2): nothing else to try, so 502.
    let be = HttpBackend::with_handler("hangup", hang_up);
    let rw = start(pool_config(1, &[], &[srv(&be.config_addr)], ""));
    let r = get(&rw, "/x");
    assert_eq!(r.status, 502, "one server, it hangs up: {r}");
    assert_eq!(be.served_count(), 1);
}

#[test]
fn backend_closing_without_an_answer_gives_502_once_retries_are_exhausted() {
    // Three servers, retries = 2: each tried once, then 502.
    let all: Vec<HttpBackend> = (0..3)
        .map(|i| HttpBackend::with_handler(&format!("h{i}"), hang_up))
        .collect();
    let addrs: Vec<String> = all.iter().map(|b| srv(&b.config_addr)).collect();
    let rw = start(pool_config(1, &[], &addrs, "retries = 2"));
    let r = get(&rw, "/x");
    assert_eq!(r.status, 502, "every server hangs up: {r}");
    for b in &all {
        assert_eq!(
            b.served_count(),
            1,
            "{} must be tried exactly once",
            b.name()
        );
    }
}

#[test]
fn failure_before_the_response_is_retried_but_a_sent_post_is_not() {
    let dead = HttpBackend::with_handler("dead", hang_up);
    let good = HttpBackend::with_handler("good", |b, req, w| {
        if req.method == "POST" {
            return Then::Close;
        }
        answer_named(b, req, w)
    });
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&dead.config_addr), srv(&good.config_addr)],
        "max_fails = 100",
    ));
    for i in 0..4 {
        let r = get(&rw, "/idempotent");
        assert_eq!(ok_by(&r, &format!("GET {i}")), "good", "{r}");
    }
    assert!(dead.served_count() >= 1, "the dead server was never tried");
    let mut c = rw.conn();
    c.send(b"POST /once HTTP/1.1\r\nHost: front.test\r\nContent-Length: 4\r\n\r\nbody");
    let r = c.response();
    assert_eq!(r.status, 502, "{r}");
    let posts = dead.served().iter().filter(|r| r.method == "POST").count()
        + good.served().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "a POST whose body was sent must not be retried");
}

#[test]
fn connect_timeout_gives_504() {
    let hole = Blackhole::start();
    let rw = start(pool_config(
        1,
        &[("connect", "300ms")],
        &[srv(&hole.addr.to_string())],
        "",
    ));
    let t = Instant::now();
    let r = get(&rw, "/x");
    assert_eq!(r.status, 504, "{r}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn no_response_head_within_upstream_read_gives_504() {
    // Reads the request and then says nothing until the proxy goes away.
    let silent = HttpBackend::with_handler("silent", |_, _, w| {
        let mut b = [0u8; 1];
        let _ = w.read(&mut b);
        Then::Close
    });
    let rw = start(pool_config(
        1,
        &[("upstream_read", "500ms")],
        &[srv(&silent.config_addr)],
        "",
    ));
    let t = Instant::now();
    let r = get(&rw, "/x");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(4),
        "504 after {took:?}"
    );
}

#[test]
fn slow_body_with_data_flowing_is_not_cut_by_upstream_read() {
    // 10 pieces 150 ms apart (1.5 s in all) with upstream_read = 500ms.
    let be = HttpBackend::with_handler("drip", |_, _, w| {
        let mut out = head(200, &[("Content-Length", "10")]);
        out.extend_from_slice(b"\r\n");
        let _ = w.write_all(&out);
        for i in 0..10 {
            thread::sleep(Duration::from_millis(150));
            if w.write_all(format!("{i}").as_bytes()).is_err() {
                return Then::Close;
            }
        }
        Then::KeepAlive
    });
    let rw = start(pool_config(
        1,
        &[("upstream_read", "500ms")],
        &[srv(&be.config_addr)],
        "",
    ));
    let r = get(&rw, "/drip");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "0123456789");
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
