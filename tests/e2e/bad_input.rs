//! Requests ringway must refuse: malformed heads, size limits, slow heads, ambiguous framing.

use std::io::{Read, Write};
use std::thread;
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

/// Sends `head`, reads the response, then sends `more` bytes, as a client still sending its
/// request when the answer arrives would. Ringway must take that input in (read and drop it)
/// and end with a clean EOF; a socket closed with input unread answers it with a RST, which
/// can also wipe a response the client has not read yet.
fn answer_while_sending(rw: &Ringway, head: &[u8], more: usize, what: &str) -> Response {
    let mut c = rw.conn();
    c.send(head);
    let r = c
        .try_response(WAIT, false)
        .unwrap_or_else(|e| panic!("{what}: the response was lost: {e}"));
    thread::sleep(Duration::from_millis(50));
    let mut w = c.writer();
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    while sent < more {
        if let Err(e) = w.write_all(&chunk) {
            panic!("{what}: input after the response refused after {sent} bytes: {e}");
        }
        sent += chunk.len();
    }
    expect_eof(&c, what);
    r
}

/// The next read is a clean EOF (not a reset, not more bytes).
fn expect_eof(c: &Conn, what: &str) {
    let mut raw = c.writer();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut one = [0u8; 1];
    match raw.read(&mut one) {
        Ok(0) => {}
        Ok(_) => panic!("{what}: bytes after the response"),
        Err(e) => panic!("{what}: want EOF after the response, got {e}"),
    }
}

#[test]
fn error_response_reaches_a_client_still_sending() {
    // Ringway answers 431 after 4 KiB of a head the client is still sending. Closing with
    // that input unread would make the kernel send a RST, which can wipe the 431 from the
    // client's receive queue before it is read: the close must linger.
    let rw = start("[limits]\nmax_header_bytes = \"4KiB\"\n");
    for round in 0..20 {
        let mut head = b"GET / HTTP/1.1\r\nHost: app.test\r\n".to_vec();
        while head.len() < 64 * 1024 {
            head.extend_from_slice(b"X-Filler: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
        }
        let r = answer_while_sending(&rw, &head, 256 * 1024, &format!("round {round}: 431"));
        assert_eq!(r.status, 431, "round {round}: {r}");
    }
}

#[test]
fn response_to_a_body_ringway_does_not_read_reaches_the_client() {
    // A static context takes no request body: Ringway answers and closes without reading it.
    let rw = start("");
    for round in 0..20 {
        let len = 512 * 1024;
        let head =
            format!("POST /index.html HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\n\r\n")
                .into_bytes();
        let r = answer_while_sending(&rw, &head, len, &format!("round {round}: POST"));
        assert_eq!(r.status, 405, "round {round}: {r}");
    }
}

#[test]
fn a_closing_response_is_not_cut_by_input_ringway_does_not_read() {
    // `Connection: close`, then (once the answer has started) input Ringway will never read.
    // When Ringway has written the last of the 4 MiB answer, much of it still sits in its
    // send buffer, because this client has not read yet. Closing now, with that input unread,
    // would make the kernel send a RST and drop the unsent tail: the close must linger.
    let dir = site();
    let file: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    write_file(dir.path(), "www/big.bin", &file);
    let rw = Ringway::builder(config(&[], "")).dir(dir).start();
    let mut c = rw.conn();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let head = c
        .try_head(WAIT)
        .unwrap_or_else(|e| panic!("response head: {e}"));
    assert!(head.first_line.contains(" 200 "), "{}", head.first_line);
    c.send(b"GET /index.html HTTP/1.1\r\nHost: app.test\r\n\r\n");
    thread::sleep(Duration::from_millis(300)); // Ringway writes until the buffers are full
    let body = c
        .try_read_exact(file.len(), WAIT)
        .unwrap_or_else(|e| panic!("the 4 MiB body was cut: {e}"));
    assert!(body == file, "the body differs from the file");
    expect_eof(&c, "after the 4 MiB response");
}
