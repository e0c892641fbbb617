//! Routing: WebSocket uri forms (regex, prefix, exact), the same URI without upgrade, the
//! built-in echo context, virtual hosts by Host, and connections spread over cores.

use std::collections::BTreeMap;

use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;

fn ws_roundtrip(port: u16, url: &str, text: &str) {
    let (mut ws, resp) = ws_connect(port, url);
    assert_eq!(resp.status(), 101, "{url}");
    ws.send(Message::text(text)).unwrap();
    assert_eq!(ws_next(&mut ws), Message::text(text), "{url}");
    ws_close(&mut ws);
}

#[test]
fn websocket_routes_regex_prefix_exact() {
    let regex_b = EchoBackend::tcp_v4();
    let prefix_b = EchoBackend::tcp_v4();
    let exact_b = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}
[[backend]]
name = "rooms"
servers = ["{}"]

[[backend]]
name = "chat"
servers = ["{}"]

[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.websocket]]
uri = "exp:^/room/[0-9]+$"
backend = "rooms"

[[vhost.websocket]]
uri = "/chat/"
backend = "chat"

[[vhost.websocket]]
uri = "/exact"
address = "{}"

[[vhost.context]]
uri = "/"
handler = "static"
"#,
        base_config(1),
        regex_b.config_addr,
        prefix_b.config_addr,
        exact_b.config_addr
    );
    let rw = Ringway::builder(config).dir(site()).start();
    for path in ["/room/42", "/room/7?x=1", "/chat/", "/chat/a/b", "/exact"] {
        ws_roundtrip(rw.port(), &rw.ws_url(path), path);
    }
    assert_eq!(regex_b.targets(), ["/room/42", "/room/7?x=1"]);
    assert_eq!(prefix_b.targets(), ["/chat/", "/chat/a/b"]);
    assert_eq!(exact_b.targets(), ["/exact"]);

    // Not matching any websocket entry: ordinary HTTP, and no such file → 404.
    for path in [
        "/room/x",
        "/room/42/x",
        "/chatter",
        "/chat",
        "/exact/x",
        "/exactly",
    ] {
        let r = request(rw.port(), Req::upgrade(path, "app.test").bytes());
        assert_eq!(r.status, 404, "{path} must not be tunnelled: {r}");
    }
    assert_eq!(regex_b.targets().len(), 2);
    assert_eq!(prefix_b.targets().len(), 2);
    assert_eq!(exact_b.targets().len(), 1);
}

#[test]
fn same_uri_without_upgrade_served_by_its_context() {
    let echo = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.websocket]]
uri = "/live"
address = "{}"

[[vhost.context]]
uri = "/live"
handler = "echo"

[[vhost.context]]
uri = "/"
handler = "static"
"#,
        base_config(1),
        echo.config_addr
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let mut c = rw.conn();
    c.send(Req::get("/live", "app.test").bytes());
    let r = c.response();
    assert!(
        (400..500).contains(&r.status),
        "plain GET on the echo context: want a 4xx, got {r}"
    );
    assert!(
        echo.requests().is_empty(),
        "a plain GET reached the backend"
    );
    // With an upgrade the websocket entry wins over the context.
    ws_roundtrip(rw.port(), &rw.ws_url("/live"), "to the backend");
    assert_eq!(echo.targets(), ["/live"]);
}

#[test]
fn same_uri_without_upgrade_served_by_static_fallback() {
    let echo = EchoBackend::tcp_v4();
    let dir = site();
    write_file(dir.path(), "www/chat/hello.txt", "hello from doc_root\n");
    let config = chat_site(&base_config(1), &[&echo.config_addr], "", "");
    let rw = Ringway::builder(config).dir(dir).start();
    let r = request(rw.port(), Req::get("/chat/hello.txt", "app.test").bytes());
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "hello from doc_root\n");
    assert!(echo.requests().is_empty());
    ws_roundtrip(rw.port(), &rw.ws_url("/chat/hello.txt"), "upgraded");
    assert_eq!(echo.targets(), ["/chat/hello.txt"]);
}

/// One vhost with `/chat/` proxied, an echo context at `/echo`, static for the rest.
fn echo_context_config(backend: &str) -> String {
    chat_site(
        &base_config(1),
        &[backend],
        "",
        "\n[[vhost.context]]\nuri = \"/echo\"\nhandler = \"echo\"\n\n\
         [[vhost.context]]\nuri = \"/\"\nhandler = \"static\"\n",
    )
}

#[test]
fn upgrade_on_uri_without_websocket_entry_is_plain_http() {
    let echo = EchoBackend::tcp_v4();
    let dir = site();
    write_file(dir.path(), "www/plain.txt", "just a file\n");
    let rw = Ringway::builder(echo_context_config(&echo.config_addr))
        .dir(dir)
        .start();
    let r = request(rw.port(), Req::upgrade("/plain.txt", "app.test").bytes());
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "just a file\n");
    assert!(echo.requests().is_empty());
}

#[test]
fn builtin_echo_context_answers_websocket() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(echo_context_config(&echo.config_addr))
        .dir(site())
        .start();
    let (mut ws, resp) = ws_connect(rw.port(), rw.ws_url("/echo"));
    assert_eq!(resp.status(), 101);
    echo_all_sizes(&mut ws);
    assert!(
        echo.requests().is_empty(),
        "/echo is ringway's own endpoint"
    );
    let r = request(rw.port(), Req::get("/echo", "app.test").bytes());
    assert!(
        (400..500).contains(&r.status),
        "plain GET on the echo context: want a 4xx, got {r}"
    );
}

#[test]
fn host_routing_exact_wildcard_default_and_unknown() {
    let dir = temp_dir();
    for name in ["exact", "wild", "default"] {
        write_file(dir.path(), &format!("{name}/index.html"), name);
    }
    let config = format!(
        r#"{}
[[listener]]
name = "strict"
address = "127.0.0.1:@PORT1@"

[[vhost]]
name = "exact"
domains = ["example.com"]
listeners = ["main", "strict"]
doc_root = "exact"

[[vhost]]
name = "wild"
domains = ["*.example.com"]
listeners = ["main", "strict"]
doc_root = "wild"

[[vhost]]
name = "default"
domains = ["*"]
listeners = ["main"]
doc_root = "default"
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let cases = [
        // (listener, Host, expected vhost or None = 404)
        (0, "example.com", Some("exact")),
        (0, "EXAMPLE.com:8080", Some("exact")),
        (0, "a.example.com", Some("wild")),
        (0, "A.b.Example.COM:81", Some("wild")),
        (0, "other.org", Some("default")),
        (0, "badexample.com", Some("default")),
        (1, "example.com", Some("exact")),
        (1, "x.example.com", Some("wild")),
        (1, "other.org", None),
        (1, "example.org:8080", None),
    ];
    for (listener, host, want) in cases {
        let r = request(rw.port_n(listener), Req::get("/", host).bytes());
        match want {
            Some(vhost) => {
                assert_eq!(r.status, 200, "Host {host} on listener {listener}: {r}");
                assert_eq!(r.body_text(), vhost, "Host {host} on listener {listener}");
            }
            None => assert_eq!(r.status, 404, "Host {host} on listener {listener}: {r}"),
        }
    }
}

/// Core ids named as `core=<id>` in the log lines that satisfy `filter`, with counts.
fn cores_in_log(log: &str, filter: impl Fn(&str) -> bool) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for line in log.lines().filter(|l| filter(l)) {
        if let Some(at) = line.find("core=") {
            let digits: String = line[at + 5..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(id) = digits.parse() {
                *seen.entry(id).or_insert(0) += 1;
            }
        }
    }
    seen
}

#[test]
fn two_cores_both_accept_connections() {
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"
"#,
        base_config(2)
    );
    let rw = Ringway::builder(config)
        .dir(site())
        .log_level("debug")
        .start();
    let started = wait_until(WAIT, || {
        let cores = cores_in_log(&rw.log(), |l| !l.contains("accepted"));
        cores.contains_key(&0) && cores.contains_key(&1)
    });
    assert!(
        started,
        "want one start-up line per core with core=0 and core=1:\n{}",
        rw.log()
    );
    // 64 connections, each from a fresh source port; SO_REUSEPORT spreads them by hash.
    for i in 0..64 {
        let r = request(rw.port(), Req::get("/", "app.test").bytes());
        assert_eq!(r.status, 200, "connection {i}: {r}");
    }
    let mut accepted = BTreeMap::new();
    let both = wait_until(WAIT, || {
        accepted = cores_in_log(&rw.log(), |l| l.contains("accepted"));
        accepted.values().sum::<usize>() >= 64
    }) && accepted.contains_key(&0)
        && accepted.contains_key(&1);
    assert!(
        both,
        "want `accepted` lines from core=0 and core=1, got per core {accepted:?}\n{}",
        rw.log()
    );
}
