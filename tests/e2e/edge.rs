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

// ---------------------------------------------------------------------------------------------
// PROXY protocol

/// Ringway on `address` (a template with @PORT@) with `proxy_protocol = true`, proxying
/// everything to the HTTP backend `api`.
fn proxy_protocol_config(address: &str, api: &str, header_timeout: &str) -> String {
    format!(
        r#"[runtime]
cores = 1
pin = false

[timeouts]
header = "{header_timeout}"

[[listener]]
name = "edge"
address = "{address}"
proxy_protocol = true

[[backend]]
name = "api"
servers = ["{api}"]

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "proxy"
backend = "api"
"#
    )
}

fn v2_header(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_listener_takes_the_client_address_from_v1_and_v2_headers() {
    use crate::http_backends::HttpBackend;
    let api = HttpBackend::named("api");
    let rw = Ringway::builder(proxy_protocol_config(
        "127.0.0.1:@PORT@",
        &api.config_addr,
        "1s",
    ))
    .start();
    let port = rw.port();
    let get = "GET /x HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n";
    // v1, then a request: the backend sees the header's client (a documentation address
    // written in the header; no traffic goes there).
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 {port}\r\n{get}");
    assert_eq!(request(port, v1).status, 200);
    // v2, with the request in the same segment.
    let mut v2 = v2_header([198, 51, 100, 9], 1234, [127, 0, 0, 1], port);
    v2.extend_from_slice(get.as_bytes());
    assert_eq!(request(port, v2).status, 200);
    // v2 LOCAL (a health check by the balancer): the socket's address.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    local.extend_from_slice(get.as_bytes());
    assert_eq!(request(port, local).status, 200);
    let seen: Vec<String> = api
        .served()
        .iter()
        .map(|r| r.get("x-forwarded-for").unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen, ["203.0.113.7", "198.51.100.9", "127.0.0.1"]);

    // Refused without an answer: no header, a bad one, an oversized v1, a truncated one
    // (closed after timeouts.header).
    let oversized = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
    for (what, raw) in [
        ("no header", get.to_string()),
        ("bad header", "PROXY TCP4 1.2.3.4 nonsense\r\n".to_string()),
        ("oversized", oversized),
        ("truncated", "PROXY TCP4 203.0.113.7 127".to_string()),
    ] {
        let mut c = rw.conn();
        c.send_lossy(raw.as_bytes());
        let t0 = std::time::Instant::now();
        let got = c.read_until_closed(WAIT);
        assert!(
            got.as_ref().map_or(true, |b| b.is_empty()),
            "{what}: answered {got:?}"
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{what}: not closed"
        );
    }
    assert_eq!(api.served().len(), 3, "nothing else reached the backend");
    let log = rw.log();
    for why in [
        "missing",
        "malformed",
        "too long",
        "not complete within timeouts.header",
    ] {
        assert!(
            log.contains(&format!("PROXY protocol header {why}; closed")),
            "{why}: {log}"
        );
    }
}

/// HAProxy in front (send-proxy and send-proxy-v2 over IPv6 to Ringway on [::1]): the
/// backend sees the client's IPv4 address, not the balancer's ::1.
#[test]
fn haproxy_send_proxy_v1_and_v2_in_front_of_ringway() {
    use crate::http_backends::HttpBackend;
    let api = HttpBackend::named("api");
    let rw = Ringway::builder(proxy_protocol_config(
        "[::1]:@PORT@",
        &api.config_addr,
        "10s",
    ))
    .start();
    let dir = temp_dir();
    let (f1, f2) = (free_port(), free_port());
    let cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend v1\n  bind 127.0.0.1:{f1}\n  default_backend r1\n\
         backend r1\n  server r [::1]:{p} send-proxy\n\
         frontend v2\n  bind 127.0.0.1:{f2}\n  default_backend r2\n\
         backend r2\n  server r [::1]:{p} send-proxy-v2\n",
        p = rw.port()
    );
    let path = write_file(dir.path(), "haproxy.cfg", cfg);
    let mut haproxy = std::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("haproxy (apt-get install haproxy)");
    let up = wait_until(WAIT, || {
        [f1, f2]
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
    });
    let get = "GET /x HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n";
    let statuses = up.then(|| (request(f1, get).status, request(f2, get).status));
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    assert_eq!(statuses, Some((200, 200)));
    let seen: Vec<String> = api
        .served()
        .iter()
        .map(|r| r.get("x-forwarded-for").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        seen,
        ["127.0.0.1", "127.0.0.1"],
        "the client's address, not ::1"
    );
}

/// `send_proxy`: Ringway writes the client's address first on every backend connection.
#[test]
fn send_proxy_v1_and_v2_to_a_backend_that_parses_the_header() {
    use std::io::{Read, Write};
    // A backend that reads the header (v1 line or v2 block), then a request head, and answers
    // with the header's bytes as the body.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                // v2: a 16-byte block and its length; v1: a line.
                let mut header = vec![0u8; 16];
                if s.read_exact(&mut header).is_err() {
                    return;
                }
                if header.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
                    let len = u16::from_be_bytes([header[14], header[15]]) as usize;
                    let mut rest = vec![0u8; len];
                    let _ = s.read_exact(&mut rest);
                    header.extend_from_slice(&rest);
                } else {
                    let mut b = [0u8; 1];
                    while !header.ends_with(b"\r\n") && s.read(&mut b).is_ok_and(|n| n == 1) {
                        header.push(b[0]);
                    }
                }
                // Then the request head.
                let mut got = Vec::new();
                let mut b = [0u8; 1];
                while find(&got, b"\r\n\r\n").is_none() && s.read(&mut b).is_ok_and(|n| n == 1) {
                    got.push(b[0]);
                }
                let header = &header[..];
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    header.len()
                )
                .into_bytes();
                out.extend_from_slice(header);
                let _ = s.write_all(&out);
            });
        }
    });
    for version in ["v1", "v2"] {
        let config = format!(
            "{}\n[[backend]]\nname = \"api\"\nservers = [\"{addr}\"]\nsend_proxy = \"{version}\"\n\n\
             [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\n[[vhost.context]]\nuri = \"/\"\n\
             handler = \"proxy\"\nbackend = \"api\"\n",
            base_config(1)
        );
        let rw = Ringway::builder(config).start();
        for _ in 0..2 {
            let mut c = rw.conn();
            let client_port = c.writer().local_addr().unwrap().port();
            c.send("GET /x HTTP/1.1\r\nHost: site\r\n\r\n");
            let resp = c.response();
            assert_eq!(resp.status, 200);
            let body = resp.body.clone();
            if version == "v1" {
                let want = format!(
                    "PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {}\r\n",
                    rw.port()
                );
                assert_eq!(String::from_utf8_lossy(&body), want);
            } else {
                let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
                want.extend_from_slice(&[0x21, 0x11, 0x00, 12, 127, 0, 0, 1, 127, 0, 0, 1]);
                want.extend_from_slice(&client_port.to_be_bytes());
                want.extend_from_slice(&rw.port().to_be_bytes());
                assert_eq!(body, want);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// L4 routes and TLS passthrough

/// A raw TCP backend: echoes what it reads as it reads it; at the client's EOF it shuts down
/// its write side (a half-close passed back). Shared with `splice`.
pub(crate) fn tcp_echo_backend() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn tcp_route_forwards_1_mib_both_ways_with_half_close() {
    use std::io::{Read, Write};
    let backend = tcp_echo_backend();
    let config = format!(
        r#"[runtime]
cores = 2
pin = false

[[listener]]
name = "raw"
address = "127.0.0.1:@PORT@"
mode = "tcp"

[[backend]]
name = "echo"
servers = ["{backend}"]

[[tcp_route]]
listener = "raw"
backend = "echo"
"#
    );
    let rw = Ringway::builder(config).start();
    for round in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let data: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(31) ^ round) as u8)
            .collect();
        let mut writer = s.try_clone().unwrap();
        let sent = data.clone();
        let w = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            // Half-close: the backend sees EOF, answers everything, then closes its side.
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("everything back, then EOF");
        w.join().unwrap();
        assert_eq!(back.len(), data.len(), "round {round}");
        assert!(back == data, "round {round}: bytes differ");
    }
    // The checker refuses a tcp listener without a route, one with tls, and a route on an
    // HTTP listener.
    let dir = temp_dir();
    for (text, problem) in [
        ("[[listener]]\nname = \"raw\"\naddress = \"127.0.0.1:1\"\nmode = \"tcp\"\n", "has mode = \"tcp\" but no [[tcp_route]]"),
        (
            "[[listener]]\nname = \"raw\"\naddress = \"127.0.0.1:1\"\nmode = \"tcp\"\ntls = true\n[[backend]]\nname = \"b\"\nservers = [\"127.0.0.1:2\"]\n[[tcp_route]]\nlistener = \"raw\"\nbackend = \"b\"\n",
            "cannot have tls = true",
        ),
        (
            "[[listener]]\nname = \"web\"\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"b\"\nservers = [\"127.0.0.1:2\"]\n[[tcp_route]]\nlistener = \"web\"\nbackend = \"b\"\n",
            "needs mode = \"tcp\"",
        ),
    ] {
        let path = write_file(dir.path(), "bad.toml", text);
        let (status, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!status.success(), "{text}");
        assert!(format!("{out}{err}").contains(problem), "{problem}: {out}{err}");
    }
}

#[test]
fn tls_passthrough_by_sni_reaches_the_backends_own_certificate() {
    use crate::pki::{LeafOpts, Pki};
    use crate::tls_clients::s_client;
    let dir = site();
    let pki = Pki::new(dir.path());
    // The backend: openssl s_server with a certificate Ringway does not have.
    let db = pki.leaf("db", 0x2002, &LeafOpts::dns(&["db.example.com"]));
    let db_port = free_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-accept", &db_port.to_string(), "-cert"])
        .arg(db.chain_path())
        .arg("-key")
        .arg(db.key_path())
        .args(["-www", "-quiet"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let own = pki.leaf("own", 0x1001, &LeafOpts::dns(&["a.example"]));
    let config = format!(
        r#"[runtime]
cores = 1
pin = false

[[listener]]
name = "tls"
address = "127.0.0.1:@PORT@"
tls = true

[[backend]]
name = "db"
servers = ["127.0.0.1:{db_port}"]

[[tls_passthrough]]
listener = "tls"
sni = ["db.example.com", "*.internal"]
backend = "db"

[[vhost]]
name = "a"
domains = ["a.example", "*"]
doc_root = "www"

[vhost.tls]
cert = "{}"
key = "{}"
"#,
        own.chain_file(),
        own.key_file()
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let up = wait_until(WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", db_port)).is_ok()
    });
    let ca = pki.ca_path();
    let through = up.then(|| {
        s_client(
            rw.port(),
            Some("db.example.com"),
            &["-CAfile", ca.to_str().unwrap()],
        )
    });
    let other = s_client(rw.port(), Some("a.example"), &[]);
    let wildcard = s_client(rw.port(), Some("x.internal"), &[]);
    let _ = server.kill();
    let _ = server.wait();
    let through = through.expect("s_server listening");
    assert!(through.handshake_ok(), "{}", through.text());
    assert!(
        through.out.contains("CN = db.example.com") || through.out.contains("CN=db.example.com"),
        "{}",
        through.text()
    );
    assert!(
        through.out.contains("Verify return code: 0 (ok)"),
        "{}",
        through.text()
    );
    // Another name is terminated by Ringway with its own certificate.
    assert!(other.handshake_ok(), "{}", other.text());
    assert!(
        other.out.contains("CN = a.example") || other.out.contains("CN=a.example"),
        "{}",
        other.text()
    );
    // `*.internal` passes through too.
    assert!(wildcard.handshake_ok(), "{}", wildcard.text());
    assert!(
        wildcard.out.contains("db.example.com"),
        "{}",
        wildcard.text()
    );
}

// ---------------------------------------------------------------------------------------------
// CONNECT forward proxy

fn connect_config(allow: &str, auth: &str) -> String {
    format!(
        r#"[runtime]
cores = 1
pin = false

[[listener]]
name = "fwd"
address = "127.0.0.1:@PORT@"
forward_proxy = true

[[vhost]]
name = "proxy"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "connect"
allow = [{allow}]
{auth}
"#
    )
}

/// curl through the proxy with CONNECT (`-p`): (status of the CONNECT, body of the GET).
fn curl_via(proxy: u16, url: &str, user: Option<&str>) -> (String, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-p", "-x"])
        .arg(format!("http://127.0.0.1:{proxy}"))
        .args(["-w", "\n%{http_connect}"]);
    if let Some(u) = user {
        cmd.args(["--proxy-user", u]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn connect_forward_proxy_tunnels_allowed_targets_only() {
    use crate::http_backends::HttpBackend;
    let api = HttpBackend::named("api");
    let port = api.config_addr.rsplit_once(':').unwrap().1.to_string();
    let url = |host: &str| format!("http://{host}:{port}/x");
    // An address rule: the tunnel carries the request to the backend.
    let rw = Ringway::builder(connect_config("\"127.0.0.1/32:*\"", "")).start();
    assert_eq!(
        curl_via(rw.port(), &url("127.0.0.1"), None),
        ("200".into(), "api".into())
    );
    // A name rule alone: localhost resolves into loopback, a denied range.
    let rw2 = Ringway::builder(connect_config("\"localhost:*\"", "")).start();
    assert_eq!(curl_via(rw2.port(), &url("localhost"), None).0, "403");
    assert!(rw2.log().contains("resolves only into denied ranges"));
    // A name rule with the range listed: allowed.
    let rw3 = Ringway::builder(connect_config("\"localhost:*\", \"127.0.0.0/8:*\"", "")).start();
    assert_eq!(
        curl_via(rw3.port(), &url("localhost"), None),
        ("200".into(), "api".into())
    );
    // A port no rule allows, and an address outside every rule: 403 before any connect.
    let rw4 = Ringway::builder(connect_config("\"127.0.0.1/32:443\"", "")).start();
    assert_eq!(curl_via(rw4.port(), &url("127.0.0.1"), None).0, "403");
    assert_eq!(
        api.served().len(),
        2,
        "refused CONNECTs never reached the backend"
    );
    // A plain GET to the proxy listener's connect context: 405.
    assert_eq!(
        request(
            rw.port(),
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .status,
        405
    );
}

#[test]
fn connect_forward_proxy_with_basic_auth() {
    use crate::http_backends::HttpBackend;
    let api = HttpBackend::named("api");
    let url = format!("http://{}/x", api.config_addr);
    let dir = temp_dir();
    write_file(dir.path(), "users", "# proxy users\nalice:s3cret\n");
    let config = connect_config("\"127.0.0.1/32:*\"", "auth = { users_file = \"users\" }");
    let rw = Ringway::builder(config).dir(dir).start();
    assert_eq!(curl_via(rw.port(), &url, None).0, "407");
    assert_eq!(curl_via(rw.port(), &url, Some("alice:wrong")).0, "407");
    assert_eq!(
        curl_via(rw.port(), &url, Some("alice:s3cret")),
        ("200".into(), "api".into())
    );
    // The challenge names Basic.
    let mut c = rw.conn();
    c.send(format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        api.config_addr, api.config_addr
    ));
    let resp = c.head_response();
    assert_eq!(resp.status, 407);
    assert_eq!(
        resp.header("proxy-authenticate"),
        Some("Basic realm=\"ringway\"")
    );
}

/// A CONNECT whose target never answers the TCP handshake gets 504 once `timeouts.connect`
/// runs out; a refused one gets 502 at once (README, forward proxy).
#[test]
fn connect_forward_proxy_answers_504_on_connect_timeout_and_502_when_refused() {
    use std::time::{Duration, Instant};
    let hole = crate::backend::Blackhole::start();
    let config = connect_config("\"127.0.0.1/32:*\"", "").replace(
        "[[listener]]",
        "[timeouts]\nconnect = \"1s\"\n\n[[listener]]",
    );
    let rw = Ringway::builder(config).start();
    let connect = |target: &str| {
        let mut c = rw.conn();
        c.send(format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        ));
        let t0 = Instant::now();
        let r = c.head_response();
        (r.status, t0.elapsed())
    };
    let (status, took) = connect(&hole.addr.to_string());
    assert_eq!(status, 504, "a target that never answers");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}, want about timeouts.connect = 1s"
    );
    // Nothing listens on a port just released: refused, 502 at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (status, took) = connect(&addr.to_string());
    assert_eq!(status, 502, "a refused target");
    assert!(took < Duration::from_millis(900), "502 after {took:?}");
}
