//! Request smuggling defences of the HTTP proxy on both sides: faulty client request framing
//! and chunk sizes get 400 and a closed connection; faulty backend response framing gives 502
//! or cuts the client connection.

use std::thread;
use std::time::Duration;

use crate::backend::{After, RawBackend, Reply};
use crate::harness::*;
use crate::http_backends::*;
use crate::http_proxy::{get, pool_config, srv, start, HOST};

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
