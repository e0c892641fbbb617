//! Requests ringway must refuse: malformed heads, size limits, slow heads, ambiguous framing.

use std::time::{Duration, Instant};

use crate::harness::*;

fn config(timeouts: &[(&str, &str)], extra: &str) -> String {
    format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.context]]
uri = "/"
handler = "static"

{extra}
"#,
        base_config_timeouts(1, timeouts)
    )
}

fn start(extra: &str) -> Ringway {
    start_with(&[], extra)
}

fn start_with(timeouts: &[(&str, &str)], extra: &str) -> Ringway {
    Ringway::builder(config(timeouts, extra))
        .dir(site())
        .start()
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    format!("{text:?}")
}

#[test]
fn malformed_requests_get_400() {
    let rw = start("");
    let cases: [&[u8]; 6] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: app.test\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test\r\nNoColonHere\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test\r\nBad Name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test\r\n: empty-name\r\n\r\n",
    ];
    for raw in cases {
        let r = request(rw.port(), raw);
        assert_eq!(r.status, 400, "{}: {r}", show(raw));
    }
    // The same server still answers a good request.
    let r = request(rw.port(), Req::get("/", "app.test").bytes());
    assert_eq!(r.status, 200, "{r}");
}

#[test]
fn http11_without_host_gets_400() {
    let rw = start("");
    let r = request(rw.port(), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "{r}");
    // HTTP/1.0 may omit Host: the default vhost answers.
    let r = request(rw.port(), b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "HTTP/1.0 without Host: {r}");
}

#[test]
fn oversized_head_gets_431() {
    let rw = start("[limits]\nmax_header_bytes = \"4KiB\"\n");
    let with_headers = |n: usize| {
        let mut req = Req::get("/", "app.test");
        for i in 0..n {
            req = req.add(&format!("X-Filler-{i}"), &"x".repeat(1000));
        }
        req.bytes()
    };
    // A few large fields (so the field count is never the reason): about 3 KiB, under the limit.
    let small = with_headers(3);
    assert!(small.len() < 4096);
    let r = request(rw.port(), &small);
    assert_eq!(r.status, 200, "{} byte head: {r}", small.len());
    // About 6 KiB: over it.
    let big = with_headers(6);
    assert!(big.len() > 4096 + 1024);
    let r = request(rw.port(), &big);
    assert_eq!(r.status, 431, "{} byte head: {r}", big.len());
}

#[test]
fn long_request_line_gets_414() {
    let rw = start("");
    let line = |n: usize| {
        format!(
            "GET /index.html?q={} HTTP/1.1\r\nHost: app.test\r\n\r\n",
            "a".repeat(n)
        )
    };
    // Under 8 KiB: fine (the query does not change the file).
    let r = request(rw.port(), line(7000));
    assert_eq!(r.status, 200, "7 KB request line: {r}");
    let r = request(rw.port(), line(10_000));
    assert_eq!(r.status, 414, "10 KB request line: {r}");
}

#[test]
fn slow_head_gets_408_and_close() {
    let rw = start_with(&[("header", "500ms")], "");
    let mut c = rw.conn();
    c.send(b"GET / HTTP/1.1\r\nHost: app.test\r\n"); // no blank line: the head never ends
    let sent = Instant::now();
    let r = c
        .try_response(Duration::from_secs(5), false)
        .unwrap_or_else(|e| panic!("want a 408 after timeouts.header = 500ms: {e}"));
    let took = sent.elapsed();
    assert_eq!(r.status, 408, "{r}");
    assert!(
        took >= Duration::from_millis(400),
        "408 after {took:?}, before timeouts.header = 500ms"
    );
    c.assert_closed("after 408");
}

#[test]
fn content_length_with_transfer_encoding_gets_400_and_close() {
    let rw = start("");
    let mut c = rw.conn();
    c.send(
        b"GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 400, "{r}");
    c.assert_closed("after 400 for CL + TE");
}

#[test]
fn two_different_content_lengths_get_400_and_close() {
    let rw = start("");
    let mut c = rw.conn();
    c.send(
        b"GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\
          Content-Length: 6\r\n\r\nhello!",
    );
    let r = c.response();
    assert_eq!(r.status, 400, "{r}");
    c.assert_closed("after 400 for two Content-Lengths");
}
