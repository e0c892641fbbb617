//! Streaming through the HTTP proxy both ways: SSE events as the backend writes them, chunked
//! and Content-Length uploads, a large download, and `Expect: 100-continue`.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::http_backends::*;
use crate::http_proxy::{pool_config, srv, start, HOST};

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
