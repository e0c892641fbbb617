//! Upstream failures behind the HTTP proxy: 502 when a backend closes without an answer (after
//! retries), no retry once a request body was sent, 504 on connect and read timeouts, and a slow
//! body that keeps flowing is not cut.

use std::thread;
use std::time::{Duration, Instant};

use crate::backend::Blackhole;
use crate::http_backends::*;
use crate::http_proxy::{get, ok_by, pool_config, srv, start};

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
