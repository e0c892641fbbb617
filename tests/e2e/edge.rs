//! Edge features: the WebSocket Origin allow-list.

use crate::backend::EchoBackend;
use crate::harness::*;

fn origin_config(server: &str) -> String {
    format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
doc_root = "www"

[[vhost.websocket]]
uri = "/app/"
address = "{server}"
origins = ["https://app.example.com", "https://*.example.com"]

[[vhost.websocket]]
uri = "/tools/"
address = "{server}"
origins = ["https://app.example.com"]
allow_missing_origin = true

[[vhost.websocket]]
uri = "/open/"
address = "{server}"
"#,
        base_config(1)
    )
}

#[test]
fn origin_allow_list_refuses_cross_site_upgrades_before_the_backend() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(origin_config(&echo.config_addr))
        .dir(site())
        .start();
    let upgrade = |path: &str, origin: Option<&str>| {
        let mut req = Req::upgrade(path, "site");
        if let Some(o) = origin {
            req = req.set("Origin", o);
        }
        request(rw.port(), req.bytes()).status
    };
    let cases: &[(&str, Option<&str>, u16)] = &[
        ("/app/a", Some("https://app.example.com"), 101),
        ("/app/a", Some("https://chat.eu.example.com"), 101),
        ("/app/a", Some("https://APP.example.com"), 101),
        ("/app/a", Some("https://evil.test"), 403),
        ("/app/a", Some("https://example.com.evil.test"), 403),
        ("/app/a", Some("http://app.example.com"), 403),
        ("/app/a", Some("null"), 403),
        ("/app/a", None, 403),
        ("/tools/a", None, 101),
        ("/tools/a", Some("https://other.example.com"), 403),
        ("/open/a", Some("https://anything.test"), 101),
        ("/open/a", None, 101),
    ];
    let mut allowed = 0;
    for (path, origin, status) in cases {
        assert_eq!(
            upgrade(path, *origin),
            *status,
            "{path} with Origin {origin:?}"
        );
        allowed += usize::from(*status == 101);
    }
    // Refused upgrades never reached the backend.
    assert!(wait_until(WAIT, || echo.requests().len() == allowed));
    assert_eq!(echo.requests().len(), allowed);
    assert!(rw.log().contains("origin not allowed"));
}

#[test]
fn per_ip_limits_close_extra_connections_and_answer_429_to_extra_upgrades() {
    let config = |limits: &str| {
        format!(
            r#"{}
[limits]
{limits}

[[vhost]]
name = "site"
domains = ["*"]
doc_root = "www"

[[vhost.context]]
uri = "/echo"
handler = "echo"
"#,
            base_config(1)
        )
    };
    let rw = Ringway::builder(config("max_connections_per_ip = 3"))
        .dir(site())
        .start();
    // Three keep-alive connections, each answered: they count.
    let mut held: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = rw.conn();
            c.send("GET /index.html HTTP/1.1\r\nHost: site\r\n\r\n");
            assert_eq!(c.response().status, 200);
            c
        })
        .collect();
    // A fourth from the same IP is closed at once, without an answer.
    let mut fourth = rw.conn();
    fourth.send_lossy("GET /index.html HTTP/1.1\r\nHost: site\r\n\r\n");
    let t0 = std::time::Instant::now();
    let got = fourth.read_until_closed(WAIT);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(3),
        "not closed at once: {got:?}"
    );
    assert!(
        got.map_or(true, |rest| rest.is_empty()),
        "the fourth got an answer"
    );
    // One closes: a new one is served again.
    held.pop();
    let served = || {
        let mut c = rw.conn();
        c.send_lossy("GET /index.html HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n");
        c.try_response(WAIT, false).is_ok_and(|r| r.status == 200)
    };
    assert!(wait_until(WAIT, served));
    drop(held);
    assert!(rw.log().contains("max_connections_per_ip reached"));

    // Upgrades (another Ringway): three in the window, then 429 with Retry-After.
    let rw = Ringway::builder(config("upgrades_per_ip = \"3/10s\""))
        .dir(site())
        .start();
    let upgrade = || {
        let mut c = rw.conn();
        c.send(Req::upgrade("/echo", "site").bytes());
        c.head_response()
    };
    for i in 0..3 {
        assert_eq!(upgrade().status, 101, "upgrade {i}");
    }
    let refused = upgrade();
    assert_eq!(refused.status, 429);
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=4).contains(&retry), "Retry-After {retry}");
}
