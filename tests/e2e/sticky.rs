//! Session stickiness (issue 23 §1) against the real binary and real backends: `balance =
//! "hash"` on `?sid=` (the socket.io recipe) and `balance = "cookie"`, each with two Ringway
//! processes sharing one config, a long-poll session over both, a drain through the control
//! API that moves only the drained server's keys, and the sticky cookie kept from backends.

use std::collections::BTreeMap;

use crate::harness::*;
use crate::http_backends::*;
use crate::http_proxy::{by, HOST};

/// Backend "api" (`servers`, `extra` keys) behind vhost "*" on `main` (@PORT@); the admin
/// listener on @PORT1@.
fn sticky_config(servers: &[&HttpBackend], extra: &str) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|s| format!("\"{}\"", s.config_addr))
        .collect();
    format!(
        r#"{}
[[listener]]
name = "admin"
address = "127.0.0.1:@PORT1@"

[admin]
listener = "admin"

[[backend]]
name = "api"
servers = [{}]
{extra}

[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]

[[vhost.context]]
uri = "/"
handler = "proxy"
backend = "api"
"#,
        base_config(2),
        servers.join(", ")
    )
}

/// One request on a fresh connection (`Connection: close`), with `headers`; a POST carries a
/// small body.
fn send(rw: &Ringway, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = Req::get(path, HOST).set("Connection", "close");
    req.request_line = format!("{method} {path} HTTP/1.1");
    for (n, v) in headers {
        req = req.add(n, v);
    }
    let mut bytes = if method == "POST" {
        req.set("Content-Length", "5").bytes()
    } else {
        req.bytes()
    };
    if method == "POST" {
        bytes.extend_from_slice(b"hello");
    }
    let r = request(rw.port(), bytes);
    assert_eq!(r.status, 200, "{method} {path}: {r}");
    r
}

fn who(rw: &Ringway, path: &str) -> String {
    by(&send(rw, "GET", path, &[]))
}

/// Drains `server` of backend "api" through the control API on the admin listener.
fn drain(rw: &Ringway, server: &str) {
    let body = r#"{"state":"drain"}"#;
    let req = format!(
        "POST /api/backends/api/servers/{} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.replace(':', "%3A"),
        body.len()
    );
    let resp = request(rw.port_n(1), req);
    assert_eq!(resp.status, 200, "{}", resp.body_text());
}

#[test]
fn hash_on_sid_is_the_same_on_two_instances_keeps_a_long_poll_and_a_drain_moves_only_its_keys() {
    let backends: Vec<HttpBackend> = ["a", "b", "c"].map(HttpBackend::named).into();
    let refs: Vec<&HttpBackend> = backends.iter().collect();
    let config = sticky_config(&refs, "balance = \"hash\"\nhash_key = \"query:sid\"");
    let rw1 = Ringway::builder(config.clone()).start();
    let rw2 = Ringway::builder(config).start();
    // Every sid goes to the same server on both instances.
    let sids: Vec<String> = (0..30).map(|n| format!("sess-{n}-x{}", n * 7919)).collect();
    let mut owner = BTreeMap::new();
    for sid in &sids {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        let (one, two) = (who(&rw1, &path), who(&rw2, &path));
        assert_eq!(
            one, two,
            "sid {sid}: instance 1 chose {one}, instance 2 {two}"
        );
        owner.insert(sid.clone(), one);
    }
    let used: std::collections::BTreeSet<&String> = owner.values().collect();
    assert!(used.len() >= 2, "30 sids all on one server: {owner:?}");
    // A long-poll session: GET and POST alternate, over both instances, 100 requests.
    let sid = &sids[0];
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for i in 0..100 {
        let rw = if i % 2 == 0 { &rw1 } else { &rw2 };
        let method = if i % 4 < 2 { "GET" } else { "POST" };
        let got = by(&send(rw, method, &path, &[]));
        assert_eq!(got, owner[sid], "request {i} ({method}) of sid {sid}");
    }
    // Without the key: round robin.
    let plain: std::collections::BTreeSet<String> =
        (0..6).map(|_| who(&rw1, "/socket.io/?EIO=4")).collect();
    assert!(plain.len() >= 2, "no sid, one server: {plain:?}");
    // Drain the server of sid 0 on instance 1: its sids move, every other sid stays.
    let drained_name = owner[sid].clone();
    let drained = backends.iter().find(|b| b.name() == drained_name).unwrap();
    drain(&rw1, &drained.config_addr);
    assert!(
        wait_until(WAIT, || who(&rw1, &path) != drained_name),
        "sid {sid} stayed on drained {drained_name}"
    );
    for sid in &sids {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        if owner[sid] == drained_name {
            // Each core applies the drain as it hears of it: wait for both.
            let moved = || (0..4).all(|_| who(&rw1, &path) != drained_name);
            assert!(
                wait_until(WAIT, moved),
                "sid {sid} still on the drained server"
            );
        } else {
            let now = who(&rw1, &path);
            assert_eq!(
                now, owner[sid],
                "sid {sid} moved though its server was not drained"
            );
        }
        // Instance 2 was not told: everything where it was.
        assert_eq!(who(&rw2, &path), owner[sid], "sid {sid} on instance 2");
    }
}

/// The value of `rw_srv` in a response's `Set-Cookie`, after checking its attributes.
fn pinned(r: &Response) -> String {
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {r}"));
    let (value, attrs) = set.split_once(';').unwrap_or((set, ""));
    assert_eq!(attrs, " Path=/; HttpOnly; SameSite=Lax", "{set}");
    let id = value
        .strip_prefix("rw_srv=")
        .unwrap_or_else(|| panic!("{set}"));
    assert_eq!(id.len(), 16, "{set}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{set}");
    assert!(!id.contains("127.0.0.1"));
    id.to_string()
}

#[test]
fn cookie_pins_a_client_on_both_instances_is_never_forwarded_and_a_drain_re_pins() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let config = sticky_config(&[&a, &b], "balance = \"cookie\"");
    let rw1 = Ringway::builder(config.clone()).start();
    let rw2 = Ringway::builder(config).start();
    // Clients without cookies: round robin (per core: two cores may each pick their first
    // server), and each is told its server.
    let first = send(&rw1, "GET", "/app", &[]);
    let id1 = pinned(&first);
    let second = (0..20)
        .map(|_| send(&rw1, "GET", "/app", &[]))
        .find(|r| {
            let id = pinned(r);
            assert_eq!(id == id1, by(r) == by(&first), "one id per server");
            by(r) != by(&first)
        })
        .expect("round robin for new clients");
    let id2 = pinned(&second);
    // With the cookie, both instances send the client to its server and set nothing.
    let cookie1 = format!("theme=dark; rw_srv={id1}; lang=en");
    for i in 0..20 {
        let rw = if i % 2 == 0 { &rw1 } else { &rw2 };
        let method = if i % 3 == 0 { "POST" } else { "GET" };
        let r = send(rw, method, "/app/poll", &[("Cookie", &cookie1)]);
        assert_eq!(by(&r), by(&first), "request {i}");
        assert_eq!(r.header("set-cookie"), None, "request {i}: {r}");
    }
    // The backends never see rw_srv; the other cookies pass as they were.
    for server in [&a, &b] {
        for req in server.requests() {
            for c in req.get_all("cookie") {
                assert!(!c.contains("rw_srv"), "backend saw {c:?}");
            }
        }
    }
    let seen: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|s| s.requests())
        .filter(|r| r.path() == "/app/poll")
        .map(|r| r.get_all("cookie").join("|"))
        .collect();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|c| c == "theme=dark; lang=en"), "{seen:?}");
    // A cookie that is only rw_srv leaves no Cookie field at all.
    let r = send(
        &rw2,
        "GET",
        "/only",
        &[("Cookie", &format!("rw_srv={id2}"))],
    );
    assert_eq!(by(&r), by(&second));
    let only: Vec<HttpRequest> = [&a, &b]
        .iter()
        .flat_map(|s| s.requests())
        .filter(|r| r.path() == "/only")
        .collect();
    assert_eq!(only.len(), 1);
    assert!(!only[0].has("cookie"), "{:?}", only[0].get_all("cookie"));
    // An unknown id: balanced and re-pinned.
    let r = send(
        &rw1,
        "GET",
        "/app",
        &[("Cookie", "rw_srv=0000000000000000")],
    );
    let id = pinned(&r);
    assert!(id == id1 || id == id2);
    // Drain client 1's server on instance 1: it is re-balanced and gets a new cookie there;
    // instance 2 still honours the old one.
    let server1 = if by(&first) == "a" { &a } else { &b };
    drain(&rw1, &server1.config_addr);
    // Each core applies the drain as it hears of it: wait for both.
    let moved =
        || (0..4).all(|_| by(&send(&rw1, "GET", "/app", &[("Cookie", &cookie1)])) != by(&first));
    assert!(
        wait_until(WAIT, moved),
        "the cookie still reaches the drained server"
    );
    let r = send(&rw1, "GET", "/app", &[("Cookie", &cookie1)]);
    assert_eq!(by(&r), by(&second));
    assert_eq!(pinned(&r), id2, "re-pinned to the server that took over");
    let r = send(&rw2, "GET", "/app", &[("Cookie", &cookie1)]);
    assert_eq!(by(&r), by(&first));
    assert_eq!(r.header("set-cookie"), None);
    // Client 2's cookie is untouched by the drain.
    let r = send(&rw1, "GET", "/app", &[("Cookie", &format!("rw_srv={id2}"))]);
    assert_eq!((by(&r), r.header("set-cookie")), (by(&second), None));
}

#[test]
fn hash_without_a_hash_key_is_a_check_error() {
    let a = HttpBackend::named("a");
    let dir = temp_dir();
    let path = write_file(
        dir.path(),
        "ringway.toml",
        sticky_config(&[&a], "balance = \"hash\"")
            .replace("@PORT@", &free_port().to_string())
            .replace("@PORT1@", &free_port().to_string()),
    );
    let (status, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!status.success(), "{out}{err}");
    assert!(
        err.contains("balance = \"hash\" needs hash_key"),
        "{out}{err}"
    );
}

#[test]
fn the_101_of_an_upgrade_pins_and_the_backend_never_sees_the_cookie() {
    use crate::backend::EchoBackend;
    use tungstenite::client::IntoClientRequest;
    let (e1, e2) = (EchoBackend::tcp_v4(), EchoBackend::tcp_v4());
    let config = format!(
        "{}\n[[backend]]\nname = \"chat\"\nservers = [\"{}\", \"{}\"]\nbalance = \"cookie\"\n\
         sticky_cookie = \"pin\"\n\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\n\
         [[vhost.websocket]]\nuri = \"/chat/\"\nbackend = \"chat\"\n",
        base_config(1),
        e1.config_addr,
        e2.config_addr
    );
    let rw = Ringway::builder(config).start();
    let (mut ws, resp) = ws_connect(rw.port(), rw.ws_url("/chat/first"));
    let set = resp
        .headers()
        .get("set-cookie")
        .expect("the 101 pins the client")
        .to_str()
        .unwrap()
        .to_string();
    ws_close(&mut ws);
    let (value, attrs) = set.split_once(';').unwrap();
    assert_eq!(attrs, " Path=/; HttpOnly; SameSite=Lax");
    let id = value
        .strip_prefix("pin=")
        .expect("sticky_cookie names the cookie");
    let first_on = |e: &EchoBackend| e.targets().iter().any(|t| t == "/chat/first");
    let pinned_to = if first_on(&e1) { &e1 } else { &e2 };
    for i in 0..6 {
        let target = format!("/chat/again{i}");
        let mut req = rw.ws_url(&target).into_client_request().unwrap();
        req.headers_mut()
            .insert("cookie", format!("x=1; pin={id}").parse().unwrap());
        let (mut ws, resp) = ws_connect(rw.port(), req);
        assert!(resp.headers().get("set-cookie").is_none(), "upgrade {i}");
        ws_close(&mut ws);
        assert!(
            pinned_to.targets().contains(&target),
            "upgrade {i} left its server"
        );
    }
    for e in [&e1, &e2] {
        for r in e.requests() {
            assert!(
                !r.get("cookie").unwrap_or("").contains("pin="),
                "{:?}",
                r.headers
            );
        }
    }
}

#[test]
fn tls_listeners_add_secure_over_http1_and_http2() {
    use crate::pki::{tls_base, vhost, LeafOpts, Pki};
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let dir = site();
    let pki = Pki::new(dir.path());
    let leaf = pki.leaf("site", 0x2001, &LeafOpts::dns(&["localhost"]));
    let config = format!(
        "{}\n[[backend]]\nname = \"api\"\nservers = [\"{}\", \"{}\"]\nbalance = \"cookie\"\n{}",
        tls_base(1),
        a.config_addr,
        b.config_addr,
        vhost(
            "site",
            &["localhost", "*"],
            &leaf.chain_file(),
            &leaf.key_file()
        )
        .context_proxy("/", "api")
        .toml()
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let ca = pki.ca_path().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", rw.port());
    let url = format!("https://localhost:{}/app", rw.port());
    let curl = |version: &str, cookie: Option<&str>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            version,
            "--cacert",
            &ca,
            "--resolve",
        ])
        .args([&resolve, "-D", "-", "-o", "/dev/null", &url]);
        if let Some(c) = cookie {
            cmd.args(["-H", &format!("Cookie: {c}")]);
        }
        let out = cmd.output().expect("curl");
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    for version in ["--http1.1", "--http2"] {
        let head = curl(version, None);
        let want = if version == "--http2" {
            "http/2 200"
        } else {
            "http/1.1 200"
        };
        assert!(head.starts_with(want), "{version}: {head}");
        let line = head
            .lines()
            .find(|l| l.starts_with("set-cookie:"))
            .unwrap_or_else(|| panic!("{version}: no set-cookie in {head}"));
        assert!(
            line.trim_end()
                .ends_with("; path=/; httponly; samesite=lax; secure"),
            "{version}: {line}"
        );
        let id = line["set-cookie: rw_srv=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        // With the cookie: no new one, the same server, and the backend sees the rest only.
        let before = a.served_count() + b.served_count();
        let again = curl(version, Some(&format!("k=v; rw_srv={id}")));
        assert!(!again.contains("set-cookie"), "{version}: {again}");
        assert!(
            wait_until(WAIT, || a.served_count() + b.served_count() > before),
            "{version}: nothing served"
        );
        let seen: Vec<String> = [&a, &b]
            .iter()
            .flat_map(|s| s.requests())
            .flat_map(|r| {
                r.get_all("cookie")
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(seen.iter().all(|c| c == "k=v"), "{version}: {seen:?}");
    }
}

/// A TCP server that counts the connections it accepts and keeps each open (reading) until the
/// peer closes: a tunnel-mode backend that says which server a tunnel reached.
fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            });
        }
    });
    (addr, count)
}

#[test]
fn tunnel_mode_upgrades_are_pinned_by_the_101_and_http2_websockets_hash_on_the_query() {
    use crate::backend::EchoBackend;
    use std::sync::atomic::Ordering;
    use tungstenite::client::IntoClientRequest;
    let ((l1, c1), (l2, c2)) = (counting_server(), counting_server());
    let (e1, e2) = (EchoBackend::tcp_v4(), EchoBackend::tcp_v4());
    let config = format!(
        "{}http2 = true\n\n[[backend]]\nname = \"lines\"\nservers = [\"{l1}\", \"{l2}\"]\n\
         balance = \"cookie\"\n\n[[backend]]\nname = \"rooms\"\nservers = [\"{}\", \"{}\"]\n\
         balance = \"hash\"\nhash_key = \"query:room\"\n\n[[vhost]]\nname = \"site\"\n\
         domains = [\"*\"]\n\n[[vhost.websocket]]\nuri = \"/feed/\"\nbackend = \"lines\"\n\
         mode = \"tunnel\"\n\n[[vhost.websocket]]\nuri = \"/room/\"\nbackend = \"rooms\"\n",
        base_config(1),
        e1.config_addr,
        e2.config_addr
    );
    let rw = Ringway::builder(config).start();
    // Tunnel mode (HTTP/1.1): the 101 pins, the cookie keeps later tunnels on that server.
    let (_ws, resp) = ws_connect(rw.port(), rw.ws_url("/feed/a"));
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("rw_srv="), "{set}");
    assert!(wait_until(WAIT, || c1.load(Ordering::SeqCst)
        + c2.load(Ordering::SeqCst)
        == 1));
    let pinned = if c1.load(Ordering::SeqCst) == 1 {
        &c1
    } else {
        &c2
    };
    let mut open = Vec::new();
    for i in 0..5 {
        let mut req = rw.ws_url("/feed/b").into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (ws, resp) = ws_connect(rw.port(), req);
        assert!(resp.headers().get("set-cookie").is_none(), "tunnel {i}");
        open.push(ws);
    }
    assert!(
        wait_until(WAIT, || pinned.load(Ordering::SeqCst) == 6),
        "the cookie's tunnels left their server: {} {}",
        c1.load(Ordering::SeqCst),
        c2.load(Ordering::SeqCst)
    );
    // RFC 8441 over h2c: a room's streams all reach one server.
    let port = rw.port();
    crate::h2::rt().block_on(async {
        let client = crate::h2::h2c(port).await;
        for room in ["lobby", "kitchen", "attic"] {
            for i in 0..4 {
                let mut req = http::Request::builder()
                    .method(http::Method::CONNECT)
                    .uri(format!("http://127.0.0.1:{port}/room/{i}?room={room}"))
                    .header("sec-websocket-version", "13")
                    .body(())
                    .unwrap();
                req.extensions_mut()
                    .insert(h2::ext::Protocol::from_static("websocket"));
                let (resp, _send) = client
                    .clone()
                    .ready()
                    .await
                    .unwrap()
                    .send_request(req, false)
                    .unwrap();
                let resp = resp.await.unwrap();
                assert_eq!(resp.status(), 200, "{room} {i}");
            }
        }
    });
    for room in ["lobby", "kitchen", "attic"] {
        let on = |e: &EchoBackend| {
            e.targets()
                .iter()
                .filter(|t| t.ends_with(&format!("?room={room}")))
                .count()
        };
        assert!(
            wait_until(WAIT, || on(&e1) + on(&e2) == 4),
            "{room}: {} + {}",
            on(&e1),
            on(&e2)
        );
        assert!(
            on(&e1) == 0 || on(&e2) == 0,
            "room {room} split over both servers"
        );
    }
}
