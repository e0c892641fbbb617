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
fn hash_on_sid_is_the_same_on_two_instances_keeps_a_long_poll_and_a_drain_moves_only_its_keys()
{
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
        assert_eq!(one, two, "sid {sid}: instance 1 chose {one}, instance 2 {two}");
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
    let drained = backends
        .iter()
        .find(|b| b.name() == drained_name)
        .unwrap();
    drain(&rw1, &drained.config_addr);
    assert!(
        wait_until(WAIT, || who(&rw1, &path) != drained_name),
        "sid {sid} stayed on drained {drained_name}"
    );
    for sid in &sids {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        let now = who(&rw1, &path);
        if owner[sid] == drained_name {
            assert_ne!(now, drained_name, "sid {sid} still on the drained server");
        } else {
            assert_eq!(now, owner[sid], "sid {sid} moved though its server was not drained");
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
    let id = value.strip_prefix("rw_srv=").unwrap_or_else(|| panic!("{set}"));
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
    // Two clients without cookies: round robin, and each is told its server.
    let first = send(&rw1, "GET", "/app", &[]);
    let second = send(&rw1, "GET", "/app", &[]);
    let (id1, id2) = (pinned(&first), pinned(&second));
    assert_ne!(by(&first), by(&second), "round robin for new clients");
    assert_ne!(id1, id2);
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
    let r = send(&rw2, "GET", "/only", &[("Cookie", &format!("rw_srv={id2}"))]);
    assert_eq!(by(&r), by(&second));
    let only: Vec<HttpRequest> = [&a, &b]
        .iter()
        .flat_map(|s| s.requests())
        .filter(|r| r.path() == "/only")
        .collect();
    assert_eq!(only.len(), 1);
    assert!(!only[0].has("cookie"), "{:?}", only[0].get_all("cookie"));
    // An unknown id: balanced and re-pinned.
    let r = send(&rw1, "GET", "/app", &[("Cookie", "rw_srv=0000000000000000")]);
    let id = pinned(&r);
    assert!(id == id1 || id == id2);
    // Drain client 1's server on instance 1: it is re-balanced and gets a new cookie there;
    // instance 2 still honours the old one.
    let server1 = if by(&first) == "a" { &a } else { &b };
    drain(&rw1, &server1.config_addr);
    assert!(
        wait_until(WAIT, || by(&send(
            &rw1,
            "GET",
            "/app",
            &[("Cookie", &cookie1)]
        )) != by(&first)),
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
